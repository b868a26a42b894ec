"""chaos.py - the crash test (`make chaos`): two `veil run` workers in one
group on a real Kafka, one of them killed with kill -9 at seeded random
moments and restarted, while records (valid and malformed) keep arriving on
16 source partitions, erasure requests are published and one purpose's short
retention makes tombstones fall due. Between the kills, broker faults: the
Kafka broker itself stopped (SIGTERM or kill -9) and started again on its
data, and frozen (SIGSTOP) for a few seconds, so every request to it,
the transaction coordinator's included, stalls until it is thawed. Then an
independent verifier (Confluent's
Python client, isolation.level=read_committed) checks exactly-once on every
purpose topic and the DLQ, the tombstones, and `veil audit verify`.

    chaos.py --bootstrap HOST:PORT --veil BIN [--seed S] [--kills K]
             [--broker-restarts B] [--broker-freezes F] [--records N] [--tmp DIR]

Environment (each overridden by its option): CHAOS_SEED, CHAOS_KILLS (20;
3 is the short mode CI runs, with fewer records unless CHAOS_RECORDS says),
CHAOS_BROKER_RESTARTS (4; short mode 1), CHAOS_BROKER_FREEZES (4; short
mode 1), CHAOS_RECORDS (100000; short mode 12000). Broker faults need the
broker of scripts/kafka.sh (same VEIL_KAFKA_PORT and VEIL_STATE); with
another one (VEIL_KAFKA_BOOTSTRAP) set both to 0.

(A topic briefly unavailable is not done: on one broker nothing makes a
single topic unwritable and then writable again — Kafka caps
min.insync.replicas at the replica count, so raising it blocks nothing.)

Prints progress as `chaos: ...` on stderr and one summary line on stdout:
    chaos: seed=S kills=K broker_restarts=B broker_freezes=F records=N purposes=P dup=0 lost=0 dlq=D tombstones=T audit=intact
Exit 0 when everything checks out, 1 on any loss, duplicate, early or missing
tombstone or broken audit chain (each named), 2 when the run itself could not
be carried out (a worker that would not start, Kafka unreachable...). Never
prints a record value: the records are synthetic, yet the habit holds.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import demo_produce  # noqa: E402
from sr_double import SchemaRegistryDouble  # noqa: E402

KAFKA_SH = os.path.join(REPO, "scripts", "kafka.sh")
PURPOSES = ("analytics", "marketing", "support")
SHORT = "support"          # the purpose whose retention runs out during the run
PARTITIONS = 16
HMAC_KEY = "chaos-test-master-key-0123456789abcdef-not-a-secret"


def log(msg):
    print(f"chaos: {msg}", file=sys.stderr, flush=True)


class Failure(Exception):
    """The run could not be carried out (not a finding about the worker)."""


def wait_for(pred, timeout, what, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def headers(msg):
    return {k: (v.decode() if v is not None else None) for k, v in (msg.headers() or [])}


# ------------------------------------------------------------------ setup
class Run:
    def __init__(self, args):
        self.args = args
        self.kafka = args.bootstrap
        self.tmp = args.tmp
        self.prefix = f"chaos-{args.seed}-{os.getpid()}-{int(time.time())}"
        self.source = f"{self.prefix}.customers"
        self.topics = {p: f"{self.prefix}.{p}" for p in PURPOSES}
        self.dlq = f"{self.prefix}.dlq"
        self.audit = f"{self.prefix}.audit"
        self.ledger = f"{self.prefix}.retention"
        self.erasure = f"{self.prefix}.erasure"
        self.group = f"{self.prefix}-g"
        self.admin = AdminClient({"bootstrap.servers": self.kafka})

    def create_topics(self):
        keep = {"cleanup.policy": "delete", "retention.ms": "-1"}
        specs = [NewTopic(self.source, PARTITIONS, 1, config=keep)]
        # Purpose topics are not compacted here (veil topics would make them
        # so): the verifier must see every value ever committed.
        specs += [NewTopic(t, PARTITIONS, 1, config=keep) for t in self.topics.values()]
        specs += [NewTopic(self.dlq, PARTITIONS, 1, config=keep),
                  NewTopic(self.audit, PARTITIONS, 1, config=keep),
                  NewTopic(self.ledger, PARTITIONS, 1, config={"cleanup.policy": "compact"}),
                  NewTopic(self.erasure, 1, 1, config=keep)]
        for t, f in self.admin.create_topics(specs, operation_timeout=30).items():
            try:
                f.result(60)
            except Exception as e:  # noqa: BLE001
                raise Failure(f"creating topic {t}: {e}") from e

        def visible():
            md = self.admin.list_topics(timeout=10)
            return all(s.topic in md.topics and md.topics[s.topic].error is None and
                       len(md.topics[s.topic].partitions) == s.num_partitions
                       for s in specs)
        wait_for(visible, 60, "the topics in metadata")

    def write_configs(self, registry_url, retention_s):
        key = os.path.join(self.tmp, "master.key")
        with open(key, "w") as f:
            f.write(HMAC_KEY)
        os.chmod(key, 0o600)
        with open(os.path.join(REPO, "config", "veil.yaml")) as f:
            base = f.read()
        edits = [
            ("  bootstrap.servers: 127.0.0.1:9092   # placeholder: `make demo` points it at `veil broker`\n",
             f"  bootstrap.servers: {self.kafka}\n"
             # A killed worker's partitions move on once its session ends.
             "  session.timeout.ms: 6000\n"),
            ("url: file://../schemas", f"url: {registry_url}"),
            ("hmac_key_file: dev-hmac.key", f"hmac_key_file: {key}"),
            ("retention: 12h", f"retention: {retention_s}s"),
            ("source: customers", f"source: {self.source}"),
            ("dlq: veil.dlq, audit: veil.audit, ledger: veil.retention, erasure: veil.erasure",
             f"dlq: {self.dlq}, audit: {self.audit}, ledger: {self.ledger}, "
             f"erasure: {self.erasure}"),
        ]
        for p, t in self.topics.items():
            edits.append((f"{p}: customers.{p}", f"{p}: {t}"))
        for old, new in edits:
            if old not in base:
                raise Failure(f"config/veil.yaml changed: {old.strip()!r} not found")
            base = base.replace(old, new, 1)
        base = "\n".join(line for line in base.splitlines()
                         if not line.startswith("metrics:")) + "\n"
        self.configs = {}
        for inst in ("w1", "w2"):
            text = base.replace("group: veil", f"group: {self.group}\ninstance: {inst}", 1)
            path = os.path.join(self.tmp, f"veil-{inst}.yaml")
            with open(path, "w") as f:
                f.write(text)
            self.configs[inst] = path


# ------------------------------------------------------------------ workers
class Worker:
    """One `veil run` instance (w1 or w2); every start gets its own log."""

    def __init__(self, run, inst):
        self.run = run
        self.inst = inst
        self.proc = None
        self.starts = 0
        self.logs = []

    def start(self):
        self.starts += 1
        path = os.path.join(self.run.tmp, f"{self.inst}.{self.starts}.log")
        self.logs.append(path)
        env = dict(os.environ)
        env.pop("VEIL_HMAC_KEY", None)
        with open(path, "wb") as f:
            self.proc = subprocess.Popen([self.run.args.veil, "run", "-c",
                                          self.run.configs[self.inst]],
                                         stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                         env=env)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout=60):
        """SIGTERM; returns the exit code (a worker that ignores it is killed
        and reported as None)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def tail(self, n=30):
        try:
            with open(self.logs[-1], errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except (OSError, IndexError):
            return ""


# ------------------------------------------------------------------ broker faults
class Broker:
    """The broker under scripts/kafka.sh: stopped and started again on its
    data (a restart mid-stream), or frozen for a while (a stall)."""

    def __init__(self, run):
        self.run = run
        r = subprocess.run([KAFKA_SH, "status"], capture_output=True, text=True, timeout=60)
        self.ours = r.returncode == 0 and r.stdout.strip() == run.kafka

    def kafka_sh(self, *args):
        r = subprocess.run([KAFKA_SH, *args], capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise Failure(f"kafka.sh {' '.join(args)} exited {r.returncode}: "
                          f"{r.stderr.strip()[-500:]}")

    def restart(self, hard, down_s):
        self.kafka_sh("stop", *(["-9"] if hard else []))
        time.sleep(down_s)
        self.kafka_sh("start")

    def freeze(self, down_s):
        self.kafka_sh("freeze")
        try:
            time.sleep(down_s)
        finally:
            self.kafka_sh("thaw")


# ------------------------------------------------------------------ input
class Producer:
    """Produces the input on a thread at a steady pace: unique keys
    (C-000000001...), valid records from a pool of framed customers, and
    malformed ones (bad magic, truncated, unknown schema id) at a seeded ~1%.
    Records where each input landed: where[(partition, offset)] = index."""

    def __init__(self, run, rng, count, duration, schema_id):
        self.run = run
        self.count = count
        self.duration = duration
        self.where = {}
        self.ts = {}            # index -> timestamp (ms) Kafka stored
        self.kind = {}          # index -> "valid" | error kind
        self.errors = []
        self.done = threading.Event()
        schema = demo_produce.load_schema()
        pool_rng = random.Random(rng.random())
        self.pool = [demo_produce.frame(schema_id, schema, demo_produce.customer(pool_rng, i))
                     for i in range(500)]
        self.plan = []
        for i in range(count):
            r = rng.random()
            if r < 0.004:
                self.plan.append("bad-magic")
            elif r < 0.008:
                self.plan.append("truncated")
            elif r < 0.010:
                self.plan.append("unknown-schema")
            else:
                self.plan.append("valid")
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def key(i):
        return b"C-%09d" % i

    def value(self, i):
        v = self.pool[i % len(self.pool)]
        k = self.plan[i]
        if k == "bad-magic":
            return b"\x07" + v[1:]
        if k == "truncated":
            return v[:len(v) // 2]
        if k == "unknown-schema":
            return b"\x00\x00\x0f\x42\x3f" + v[5:]   # id 999999, never registered
        return v

    def _run(self):
        # Not idempotent: the Python client's bundled librdkafka has been
        # seen to stop with a fatal "Unable to reconstruct MessageSet" on a
        # busy broker. A retry may write a record twice; the verifier takes
        # its inputs from the source topic itself, so a second copy is just
        # one more input to see exactly once.
        p = ck.Producer({"bootstrap.servers": self.run.kafka, "acks": "all",
                         "linger.ms": 20, "queue.buffering.max.messages": 200000})

        def cb(i):
            def on_delivery(err, msg):
                if err is not None:
                    self.errors.append(str(err))
                else:
                    self.where[(msg.partition(), msg.offset())] = i
                    self.ts[i] = msg.timestamp()[1]
            return on_delivery

        t0 = time.monotonic()
        chunk = max(1, self.count // 200)
        try:
            for i in range(self.count):
                self.kind[i] = self.plan[i]
                while True:
                    try:
                        p.produce(self.run.source, key=self.key(i), value=self.value(i),
                                  on_delivery=cb(i))
                        break
                    except BufferError:
                        p.poll(0.05)
                if i % chunk == chunk - 1:
                    p.poll(0)
                    # Steady pace: record i is due at t0 + duration * i / count.
                    ahead = t0 + self.duration * (i + 1) / self.count - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            if p.flush(120) != 0:
                self.errors.append("flush left records undelivered")
        finally:
            self.done.set()

    def produced_by(self):
        """{index: (partition, offset)} for delivered records."""
        return {i: po for po, i in list(self.where.items())}


def committed_offsets(run):
    """The group's committed offset per source partition (-1001: none)."""
    c = ck.Consumer({"bootstrap.servers": run.kafka, "group.id": run.group,
                     "enable.auto.commit": False})
    try:
        tps = c.committed([ck.TopicPartition(run.source, p) for p in range(PARTITIONS)],
                          timeout=15)
        return {tp.partition: tp.offset for tp in tps}
    except ck.KafkaException:
        return None
    finally:
        c.close()


def end_offsets(run, topic, parts):
    c = ck.Consumer({"bootstrap.servers": run.kafka, "group.id": f"{run.prefix}-probe",
                     "isolation.level": "read_committed"})
    try:
        return {p: c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=15)[1]
                for p in parts}
    finally:
        c.close()


def veil_erase(run, keys):
    r = subprocess.run([run.args.veil, "erase", "-c", run.configs["w1"], *keys],
                       capture_output=True, text=True, timeout=90)
    if r.returncode != 0:
        raise Failure(f"veil erase exited {r.returncode}: {r.stderr.strip()[-500:]}")
    ids = [line.split(":", 1)[0] for line in r.stdout.splitlines() if ": delivered" in line]
    if len(ids) != len(keys):
        raise Failure(f"veil erase delivered {len(ids)} of {len(keys)} requests")
    return ids


# ------------------------------------------------------------------ verifier
def consume_all(run, topic, timeout=300):
    """Every committed message of a topic, read_committed, from the
    beginning to the last stable offset; in (partition, offset) order."""
    md = run.admin.list_topics(topic, timeout=15)
    parts = sorted(md.topics[topic].partitions)
    ends = end_offsets(run, topic, parts)
    c = ck.Consumer({"bootstrap.servers": run.kafka, "group.id": f"{run.prefix}-verify",
                     "isolation.level": "read_committed", "enable.auto.commit": False,
                     "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    msgs = []
    try:
        todo = {p for p in parts if ends[p] > 0}
        c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in todo])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() >= deadline:
                raise Failure(f"timed out reading {topic} ({len(todo)} partitions left)")
            batch = c.consume(10000, 0.5)
            for m in batch:
                if m.error():
                    if m.error().code() == ck.KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[m.partition()]:
                            todo.discard(m.partition())
                        continue
                    raise Failure(f"consuming {topic}: {m.error()}")
                msgs.append(m)
                if m.offset() + 1 >= ends[m.partition()]:
                    todo.discard(m.partition())
    finally:
        c.close()
    msgs.sort(key=lambda m: (m.partition(), m.offset()))
    return msgs


class Verdict:
    def __init__(self):
        self.problems = []
        self.dup = 0
        self.lost = 0

    def bad(self, what):
        self.problems.append(what)
        if len(self.problems) <= 30:
            log(f"FAIL: {what}")


def source_index(run, where, msg, verdict, topic):
    src = headers(msg).get("veil.source")
    if src is None:
        verdict.bad(f"{topic} {msg.partition()}/{msg.offset()}: no veil.source header")
        return None
    t, part, off = src.rsplit("/", 2)
    i = where.get((int(part), int(off))) if t == run.source else None
    if i is None:
        verdict.bad(f"{topic} {msg.partition()}/{msg.offset()}: veil.source {src} "
                    "is no record of this run")
    return i


def verify(run, prod, erased, retention_s, verdict):
    """Reads the source (the ground truth: every committed input, keyed by
    its position) and every output, and checks one against the other;
    returns the counts for the summary line. erased: {key number: requests}."""
    where, kind, ts, keyno = {}, {}, {}, {}
    for n, m in enumerate(consume_all(run, run.source)):
        where[(m.partition(), m.offset())] = n
        keyno[n] = int(m.key()[2:])
        kind[n] = prod.plan[keyno[n]]
        ts[n] = m.timestamp()[1]
    run.n_inputs = len(where)
    missing_inputs = prod.count - len(set(keyno.values()))
    if missing_inputs:
        verdict.bad(f"source: {missing_inputs} produced records not on the source topic")
    valid = {i for i, k in kind.items() if k == "valid"}
    malformed = {i for i, k in kind.items() if k != "valid"}
    out_key = {p: {} for p in PURPOSES}    # input -> output key, per purpose
    tomb = {p: [] for p in PURPOSES}
    for p, topic in run.topics.items():
        seen = {}
        msgs = consume_all(run, topic)
        for m in msgs:
            if m.value() is None:
                tomb[p].append(m)
                continue
            i = source_index(run, where, m, verdict, topic)
            if i is None:
                continue
            seen[i] = seen.get(i, 0) + 1
            out_key[p][i] = m.key()
            if headers(m).get("veil.purpose") != p:
                verdict.bad(f"{topic}: record of input {i} says purpose "
                            f"{headers(m).get('veil.purpose')}")
        dups = {i: n for i, n in seen.items() if n > 1}
        lost = valid - set(seen)
        extra = set(seen) - valid
        verdict.dup += sum(n - 1 for n in dups.values())
        verdict.lost += len(lost)
        if dups:
            verdict.bad(f"{p}: {len(dups)} inputs more than once "
                        f"(e.g. {sorted(dups)[:5]})")
        if lost:
            verdict.bad(f"{p}: {len(lost)} valid inputs missing (e.g. {sorted(lost)[:5]})")
        if extra:
            verdict.bad(f"{p}: {len(extra)} malformed inputs on a purpose topic "
                        f"(e.g. {sorted(extra)[:5]})")
        log(f"{p}: {len(msgs) - len(tomb[p])} records, {len(tomb[p])} tombstones")

    # Dead letters: every malformed input exactly once, nothing else.
    seen = {}
    dlq = consume_all(run, run.dlq)
    codes = {}
    for m in dlq:
        i = source_index(run, where, m, verdict, run.dlq)
        if i is None:
            continue
        seen[i] = seen.get(i, 0) + 1
        code = headers(m).get("veil.error")
        codes[code] = codes.get(code, 0) + 1
        want = kind.get(i)
        if want != "valid" and code != want:
            verdict.bad(f"dlq: input {i} ({want}) has veil.error {code}")
    dups = {i: n for i, n in seen.items() if n > 1}
    lost = malformed - set(seen)
    good = set(seen) & valid
    verdict.dup += sum(n - 1 for n in dups.values())
    verdict.lost += len(lost)
    if dups:
        verdict.bad(f"dlq: {len(dups)} inputs more than once (e.g. {sorted(dups)[:5]})")
    if lost:
        verdict.bad(f"dlq: {len(lost)} malformed inputs missing (e.g. {sorted(lost)[:5]})")
    if good:
        verdict.bad(f"dlq: {len(good)} valid inputs dead-lettered (e.g. {sorted(good)[:5]})")
    log(f"dlq: {len(dlq)} dead letters {json.dumps(codes, sort_keys=True)}")

    n_tomb = 0
    for p in PURPOSES:
        # The key each subject has on this purpose (analytics hashes it),
        # and its deadline: the newest input of the key plus the retention.
        okey, deadline = {}, {}
        for i, k in out_key[p].items():
            okey[keyno[i]] = k
            deadline[k] = max(deadline.get(k, 0), ts[i] + retention_s * 1000)
        by_key = {}
        for m in tomb[p]:
            by_key.setdefault((m.key(), headers(m).get("veil.reason")), []).append(m)
        # Erasure: one tombstone per request.
        for kn, n_req in erased.items():
            k = okey.get(kn)
            if k is None:
                continue                     # already counted as lost
            got = len(by_key.get((k, "erasure"), []))
            n_tomb += got
            if got != n_req:
                verdict.bad(f"{p}: {got} erasure tombstones for key {kn} "
                            f"({n_req} requests)")
                if got > n_req:
                    verdict.dup += got - n_req
                else:
                    verdict.lost += n_req - got
        # Retention: the short purpose tombstones every key it received once,
        # never before its deadline; the others none (their retention is long).
        rt = {k: ms for (k, reason), ms in by_key.items() if reason == "retention"}
        if p != SHORT:
            if rt:
                verdict.bad(f"{p}: {sum(map(len, rt.values()))} retention tombstones "
                            "on a long-retention purpose")
            continue
        for k, ms in rt.items():
            if k not in deadline:
                verdict.bad(f"{p}: retention tombstone for a key it never received")
                continue
            for m in ms:
                if m.timestamp()[1] < deadline[k]:
                    verdict.bad(f"{p}: retention tombstone "
                                f"{deadline[k] - m.timestamp()[1]} ms early")
            if len(ms) > 1:
                verdict.dup += len(ms) - 1
                verdict.bad(f"{p}: {len(ms)} retention tombstones for one key")
        n_tomb += sum(map(len, rt.values()))
        missing = [kn for kn, k in okey.items() if kn not in erased and k not in rt]
        if missing:
            verdict.lost += len(missing)
            verdict.bad(f"{p}: {len(missing)} due retention tombstones missing "
                        f"(e.g. keys {sorted(missing)[:5]})")
    return {"dlq": len(dlq), "tombstones": n_tomb}


def retention_done(run, prod, erased):
    """True once the short purpose holds a retention tombstone for every
    valid, non-erased key (checked cheaply: counts only)."""
    want = {prod.key(i) for i, k in enumerate(prod.plan) if k == "valid" and i not in erased}
    got = {m.key() for m in consume_all(run, run.topics[SHORT])
           if m.value() is None and headers(m).get("veil.reason") == "retention"}
    return not (want - got), len(got & want), len(want)


def erasures_done(run, erased):
    """True once every purpose holds as many erasure tombstones as requests
    were made (one per request and purpose; checked cheaply: counts only)."""
    want = sum(erased.values())
    for p in PURPOSES:
        got = sum(1 for m in consume_all(run, run.topics[p])
                  if m.value() is None and headers(m).get("veil.reason") == "erasure")
        if got < want:
            return False
    return True


def audit_verify(run):
    r = subprocess.run([run.args.veil, "audit", "verify", "-c", run.configs["w1"],
                        "--timeout", "300"], capture_output=True, text=True, timeout=600)
    return r.returncode, (r.stdout + r.stderr).strip()


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("VEIL_KAFKA_BOOTSTRAP"))
    ap.add_argument("--veil", default=os.environ.get("VEIL"))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or
                                                    random.SystemRandom().randrange(1, 10**6)))
    ap.add_argument("--kills", type=int, default=int(os.environ.get("CHAOS_KILLS") or 20))
    ap.add_argument("--broker-restarts", type=int,
                    default=os.environ.get("CHAOS_BROKER_RESTARTS"))
    ap.add_argument("--broker-freezes", type=int,
                    default=os.environ.get("CHAOS_BROKER_FREEZES"))
    ap.add_argument("--records", type=int, default=int(os.environ.get("CHAOS_RECORDS") or 0))
    ap.add_argument("--retention", type=int, default=int(os.environ.get("CHAOS_RETENTION_S")
                                                         or 20))
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    if not args.bootstrap or not args.veil:
        ap.error("--bootstrap and --veil (or VEIL_KAFKA_BOOTSTRAP and VEIL) are required")
    if args.records <= 0:
        args.records = 100000 if args.kills >= 10 else 12000
    short = args.kills < 10
    args.broker_restarts = int(args.broker_restarts if args.broker_restarts not in (None, "")
                               else (1 if short else 4))
    args.broker_freezes = int(args.broker_freezes if args.broker_freezes not in (None, "")
                              else (1 if short else 4))
    own_tmp = args.tmp is None
    args.tmp = args.tmp or tempfile.mkdtemp(prefix="veil-chaos.")
    os.makedirs(args.tmp, exist_ok=True)
    log(f"seed={args.seed} kills={args.kills} broker_restarts={args.broker_restarts} "
        f"broker_freezes={args.broker_freezes} records={args.records} "
        f"retention={args.retention}s work={args.tmp}")
    try:
        rc = chaos(args)
    except Failure as e:
        log(f"could not complete the run: {e}")
        rc = 2
    except Exception:  # noqa: BLE001 - a bug here is not a finding
        traceback.print_exc()
        rc = 2
    if own_tmp and rc == 0 and not args.keep:
        shutil.rmtree(args.tmp, ignore_errors=True)
    elif rc != 0:
        log(f"logs kept in {args.tmp}")
    return rc


def chaos(args):
    rng = random.Random(args.seed)
    run = Run(args)
    run.create_topics()
    reg = SchemaRegistryDouble()
    with open(demo_produce.SCHEMA_PATH) as f:
        schema_id = reg.register(f"{run.source}-value", json.dumps(json.load(f)))
    run.write_configs(reg.url, args.retention)

    # Kill moments: seeded gaps averaging `gap` seconds; production is paced
    # to last as long as the kills (and at least 30 s), so crashes land while
    # records, retention deadlines and erasures are all in flight.
    gap_min, gap_max = 2.0, 7.0
    faults = (["kill"] * args.kills + ["broker"] * args.broker_restarts +
              ["freeze"] * args.broker_freezes)
    rng.shuffle(faults)
    gaps = [rng.uniform(gap_min, gap_max) for _ in faults]
    victims = [rng.choice(("w1", "w2")) for _ in faults]
    downtime = [rng.uniform(0.0, 3.0) for _ in faults]
    # Broker faults: kill -9 or SIGTERM, down 1-6 s; frozen 2-8 s.
    hard = [rng.random() < 0.5 for _ in faults]
    broker_down = [rng.uniform(1.0, 6.0) for _ in faults]
    frozen = [rng.uniform(2.0, 8.0) for _ in faults]
    # A broker restart takes a while (the JVM, log recovery after kill -9):
    # production goes on through it.
    duration = max(30.0, sum(gaps) * 0.8 + 10.0 * args.broker_restarts)
    broker = Broker(run)
    if (args.broker_restarts or args.broker_freezes) and not broker.ours:
        raise Failure("broker faults need the broker of scripts/kafka.sh (VEIL_KAFKA_PORT, "
                      "VEIL_STATE); set CHAOS_BROKER_RESTARTS=0 CHAOS_BROKER_FREEZES=0")
    prod = Producer(run, random.Random(rng.random()), args.records, duration, schema_id)
    erase_at = sorted(rng.uniform(0.2, 0.9) * duration for _ in range(4))

    workers = {w: Worker(run, w) for w in ("w1", "w2")}
    for w in workers.values():
        w.start()
    t0 = time.monotonic()
    prod.thread.start()
    erased = {}               # index -> number of requests
    kills = restarts = freezes = 0
    crashed = []
    try:
        for n, fault in enumerate(faults):
            # Erasures due before this kill.
            deadline = time.monotonic() + gaps[n]
            while time.monotonic() < deadline:
                if erase_at and time.monotonic() - t0 >= erase_at[0]:
                    erase_at.pop(0)
                    erase_some(run, prod, rng, erased)
                for w in workers.values():
                    if not w.alive():
                        crashed.append((w.inst, w.proc.returncode, w.tail()))
                        log(f"{w.inst} exited by itself ({w.proc.returncode}); restarting")
                        w.start()
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            at = time.monotonic() - t0
            if fault == "broker":
                broker.restart(hard[n], broker_down[n])
                restarts += 1
                log(f"broker restart {restarts}/{args.broker_restarts} "
                    f"({'kill -9' if hard[n] else 'SIGTERM'}) at {at:.1f} s, down "
                    f"{broker_down[n]:.1f} s, back after {time.monotonic() - t0 - at:.1f} s, "
                    f"{len(prod.where)} records produced")
                continue
            if fault == "freeze":
                broker.freeze(frozen[n])
                freezes += 1
                log(f"broker freeze {freezes}/{args.broker_freezes} at {at:.1f} s for "
                    f"{frozen[n]:.1f} s, {len(prod.where)} records produced")
                continue
            v = workers[victims[n]]
            v.kill9()
            kills += 1
            time.sleep(downtime[n])
            v.start()
            log(f"kill {kills}/{args.kills}: {v.inst} at {at:.1f} s, "
                f"down {downtime[n]:.1f} s, {len(prod.where)} records produced")
        while erase_at:
            erase_at.pop(0)
            erase_some(run, prod, rng, erased)
        prod.done.wait(600)
        if prod.errors:
            raise Failure(f"producing failed: {prod.errors[:3]}")
        log(f"all {args.records} records produced in {time.monotonic() - t0:.0f} s; "
            "waiting for the workers to catch up")
        # One more erasure once everything is in, so some key is erased
        # after a crash-heavy stretch.
        wait_caught_up(run, prod, workers, timeout=600)
        erase_some(run, prod, rng, erased)
        # Every retention deadline passes; wait until each is tombstoned,
        # and until that last erasure is done (the workers are stopped next:
        # a request still unread then would count as lost).
        last = max(prod.ts.values()) / 1000.0 + args.retention
        log(f"caught up at {time.monotonic() - t0:.0f} s; waiting for the last "
            f"retention deadline (+{max(0.0, last - time.time()):.0f} s), its tombstones "
            "and the last erasure's")
        state = {}

        def tombstoned():
            ok, got, want = retention_done(run, prod, erased)
            state["got"], state["want"] = got, want
            return ok and erasures_done(run, erased)
        try:
            wait_for(tombstoned, max(0.0, last - time.time()) + 300,
                     "every retention tombstone", interval=5)
        except Failure:
            log(f"retention tombstones: {state.get('got')} of {state.get('want')}; "
                "verifying anyway")
    finally:
        rcs = {w.inst: w.stop() for w in workers.values()}
    log(f"workers stopped: {rcs}")
    verdict = Verdict()
    for inst, rc in rcs.items():
        if rc != 0:
            verdict.bad(f"{inst} exited {rc} on SIGTERM:\n{workers[inst].tail()}")
    for inst, rc, tail in crashed:
        verdict.bad(f"{inst} exited by itself with {rc} during the run:\n{tail}")
    counts = verify(run, prod, erased, args.retention, verdict)
    arc, aout = audit_verify(run)
    reg.stop()
    audit = "intact" if arc == 0 else "broken"
    if arc != 0:
        verdict.bad(f"veil audit verify exited {arc}: {aout[-1500:]}")
    else:
        log(f"audit: {aout.splitlines()[-1] if aout else 'intact'}")
    print(f"chaos: seed={args.seed} kills={kills} broker_restarts={restarts} "
          f"broker_freezes={freezes} records={run.n_inputs} "
          f"purposes={len(PURPOSES)} dup={verdict.dup} lost={verdict.lost} "
          f"dlq={counts['dlq']} tombstones={counts['tombstones']} audit={audit}",
          flush=True)
    if verdict.problems:
        log(f"{len(verdict.problems)} problems")
        return 1
    return 0


def wait_caught_up(run, prod, workers, timeout):
    """Until the group's committed offsets reach the end of every source
    partition (restarting a worker that died on its own)."""
    ends = end_offsets(run, run.source, range(PARTITIONS))

    def caught_up():
        for w in workers.values():
            if not w.alive():
                log(f"{w.inst} exited by itself ({w.proc.returncode}); restarting\n{w.tail()}")
                w.start()
        got = committed_offsets(run)
        return got is not None and all(got.get(p, -1) >= ends[p] for p in ends)
    wait_for(caught_up, timeout, "the group to commit every source record", interval=2)


def erase_some(run, prod, rng, erased):
    """Erases a few keys whose records the group has already committed (so
    the request cannot overtake the record), one of them twice."""
    got = committed_offsets(run)
    if not got:
        return
    cands = [i for (p, o), i in list(prod.where.items())
             if prod.kind.get(i) == "valid" and o < got.get(p, -1) and i not in erased]
    if not cands:
        return
    pick = rng.sample(sorted(cands), min(5, len(cands)))
    keys = [prod.key(i).decode() for i in pick] + [prod.key(pick[0]).decode()]
    veil_erase(run, keys)
    for i in pick:
        erased[i] = erased.get(i, 0) + 1
    erased[pick[0]] += 1
    log(f"erased {len(pick)} keys ({len(keys)} requests)")


if __name__ == "__main__":
    sys.exit(main())
