"""e2e.py - bench/e2e.sh's driver: the worker end to end through a real
Kafka, beside an exactly-once copy measured in the same run on the same
broker. Never imported by tests; prints only counts, times and sizes (the
records are synthetic, and no value is ever printed).

    e2e.py --bootstrap B --veil BIN --copy BIN --tmp DIR [options]

See bench/README.md for what each `bench:` line means. Progress goes to
stderr as `e2e: ...`; the figures to stdout as `bench: NAME VALUE UNIT`.
"""
import argparse
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka.admin import AdminClient, NewTopic
import confluent_kafka as ck

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import demo_produce  # noqa: E402
import gen_corpus  # noqa: E402
import latency  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"e2e: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ records
def note(rng, demo_note):
    """A support agent's free text as the corpus generator writes it (mixed
    PII among look-alikes: emails, phones, SSNs, cards, IBANs, IPs), after
    the demo's own note about this customer."""
    parts = [demo_note]
    for _ in range(rng.randint(1, 3)):
        doc = gen_corpus.mixed_doc(rng) if rng.random() < 0.6 else \
            gen_corpus.positive_doc(rng, rng.choice(sorted(gen_corpus.GENERATORS)))
        parts.append(doc.text().decode("utf-8"))
    return " ".join(parts)


def templates(registry, n=2000, seed=7):
    """Framed customer values (the demo's generator, notes as above), reused
    round robin so producing is cheap; keys stay unique per record."""
    schema = demo_produce.load_schema()
    sid = demo_produce.registry_id(registry)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        c = demo_produce.customer(rng, i)
        c["notes"] = note(rng, c["notes"])
        out.append(demo_produce.frame(sid, schema, c))
    return out


def produce(bootstrap, topic, count, values):
    p = ck.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                     "linger.ms": 20, "batch.num.messages": 10000,
                     "queue.buffering.max.messages": 500000})
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(count):
        while True:
            try:
                p.produce(topic, key=b"C-%09d" % i, value=values[i % len(values)],
                          on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10000 == 0:
            p.poll(0)
    if p.flush(120) != 0 or errors:
        raise SystemExit(f"e2e: producing failed ({len(errors)} errors)")


# ------------------------------------------------------------------ topics
class Topics:
    """Topics this run created, deleted at the end whatever happens."""

    def __init__(self, bootstrap):
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.names = []

    def create(self, names, partitions, config=None):
        futs = self.admin.create_topics(
            [NewTopic(t, partitions, 1, config=config or {}) for t in names],
            operation_timeout=30)
        for f in futs.values():
            f.result(timeout=60)
        self.names.extend(names)
        self.wait(names, partitions)

    def wait(self, names, partitions=None):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = self.admin.list_topics(timeout=5)
            if all(t in md.topics and md.topics[t].error is None and
                   (partitions is None or len(md.topics[t].partitions) == partitions)
                   for t in names):
                return
            time.sleep(0.1)
        raise SystemExit("e2e: topics did not appear in metadata")

    def delete(self, names):
        names = [t for t in names if t in self.names]
        if not names:
            return
        futs = self.admin.delete_topics(names, operation_timeout=30)
        for f in futs.values():
            try:
                f.result(timeout=60)
            except Exception:  # noqa: BLE001 - cleanup is best effort
                pass
        self.names = [t for t in self.names if t not in names]

    def delete_all(self):
        self.delete(list(self.names))


# ------------------------------------------------------------------ config
def shipped_config():
    with open(os.path.join(REPO, "config", "veil.yaml")) as f:
        return f.read()


AUDIT_RE = re.compile(r"^audit:\s*\{\s*level:\s*(\w+)\s*\}\s*$", re.M)


def audit_level(text):
    """The audit level config/veil.yaml ships (absent: the default, record)."""
    m = AUDIT_RE.search(text)
    return m.group(1) if m else "record"


def private_key(directory):
    """Veil refuses a key file others may read, and git keeps no mode: an
    owner-only copy of the dev key in `directory` (the run's own, which its
    caller removes)."""
    key = os.path.join(directory, "dev-hmac.key")
    if not os.path.exists(key):
        shutil.copyfile(os.path.join(REPO, "config", "dev-hmac.key"), key)
        os.chmod(key, 0o600)
    return key


GUARD_EDITS = [
    ("    license: { id: LIC-ANALYTICS-7, valid_until: 2035-12-31 }\n",
     "    license: { id: LIC-ANALYTICS-7, valid_until: 2035-12-31 }\n    guard: {}\n"),
    ("    license: { id: LIC-MKT-2, valid_until: 2035-06-30 }\n",
     "    license: { id: LIC-MKT-2, valid_until: 2035-06-30 }\n    guard: {}\n"),
]


# Crypto-shredding's comparison: marketing encrypts email and name, keyed
# per purpose ("plain") or per subject ("subject"); nothing else changes.
SHRED_EDITS = {
    "plain": [("      email: keep\n      name: keep\n",
               "      email: { encrypt: { mode: siv } }\n"
               "      name: { encrypt: { mode: siv } }\n")],
    "subject": [("      email: keep\n      name: keep\n",
                 "      email: { encrypt: { per_subject: true, mode: siv } }\n"
                 "      name: { encrypt: { per_subject: true, mode: siv } }\n")],
}


def veil_config(text, bootstrap, registry, pre, source, metrics_port, level=None,
                guard=False, shred=None):
    """config/veil.yaml as shipped, pointed at the bench broker and this
    run's topics: the bootstrap, the registry directory, the key file's
    path (the copy lives elsewhere), the group, topic names and the metrics
    port. The analytics and marketing purposes are routed (the copy's two
    outputs). Nothing else changes: audit level, batch size, commit
    interval, DLQ, retention and metrics stay as shipped, unless `level`
    asks for the other audit level (the audit comparison), or `guard` turns
    the egress leak guard on for both routed purposes (its comparison), or
    `shred` makes marketing encrypt two fields ("plain": purpose-keyed,
    "subject": per subject, with this run's key topic)."""
    edits = [
        ("  bootstrap.servers: 127.0.0.1:9092", f"  bootstrap.servers: {bootstrap}"),
        ("url: file://../schemas", f"url: file://{registry}"),
        ("hmac_key_file: dev-hmac.key", f"hmac_key_file: {private_key(os.path.dirname(os.path.abspath(registry)))}"),
        ("group: veil", f"group: {pre}-g"),
        ("source: customers", f"source: {source}"),
        ("analytics: customers.analytics", f"analytics: {pre}.analytics"),
        ("marketing: customers.marketing", f"marketing: {pre}.marketing"),
        ("      support: customers.support\n", ""),
        ("dlq: veil.dlq, audit: veil.audit, ledger: veil.retention, erasure: veil.erasure",
         f"dlq: {pre}.dlq, audit: {pre}.audit, ledger: {pre}.ledger, "
         f"erasure: {pre}.erasure, subject_keys: {pre}.subject-keys"),
        ("listen: 127.0.0.1:9464", f"listen: 127.0.0.1:{metrics_port}"),
    ]
    for old, new in edits + (GUARD_EDITS if guard else []) + SHRED_EDITS.get(shred, []):
        if old not in text:
            raise SystemExit(f"e2e: config/veil.yaml changed: {old!r} not found")
        text = text.replace(old, new, 1)
    if level is not None and level != audit_level(text):
        if AUDIT_RE.search(text):
            text = AUDIT_RE.sub(f"audit: {{ level: {level} }}", text, count=1)
        else:
            text += f"\naudit: {{ level: {level} }}\n"
    return text


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ process
def proc_cpu_s(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_minflt(pid):
    """Minor page faults of the whole process so far: pages the kernel had
    to find (and zero) for it, as when malloc hands memory back and takes
    it again."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7])


def proc_own_cpu_s(pid):
    """utime + stime of the process's own threads, librdkafka's (rdk:*)
    left out: the part of the CPU Veil's code spends (less sensitive to
    the broker's pace and a shared machine than the whole process)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:  # the thread ended meanwhile
            continue
        if head.split("(", 1)[1].startswith("rdk:"):
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def proc_hwm_mb(pid):
    """Peak resident set (VmHWM) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Lines(threading.Thread):
    """A child's stdout, line by line, without blocking the caller."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.q = stream, queue.Queue()
        self.start()

    def run(self):
        for line in self.stream:
            self.q.put(line.decode())
        self.q.put("")

    def get(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None


# ------------------------------------------------------------------ runs
class Bench:
    def __init__(self, a):
        self.a = a
        self.topics = Topics(a.bootstrap)
        self.registry = os.path.join(a.tmp, "reg")
        shutil.copytree(os.path.join(REPO, "schemas"), self.registry)
        self.shipped = shipped_config()
        self.run_no = 0
        self.values = os.path.join(a.tmp, "values.bin")
        self.worker = None

    def prefix(self, kind):
        self.run_no += 1
        return f"vb{os.getpid()}-{self.run_no}-{kind}"

    def fill(self, source, partitions, prime, count, keys=None):
        """Creates `source` with `prime` then `count` records, each set in a
        transaction left open (bench/copy.c fill): a read_committed reader
        sees none of them until the filler is told to commit. Returns the
        waiting filler."""
        self.topics.create([source], partitions)
        t0 = time.monotonic()
        fill = subprocess.Popen([self.a.copy, "fill", self.a.bootstrap, source, str(prime),
                                 str(count), self.values, f"{source}-fill"] +
                                ([str(keys)] if keys else []),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if fill.stdout.readline() != b"filled\n":
            fill.kill()
            raise SystemExit(f"e2e: filling {source} failed")
        log(f"{prime} + {count} records in open transactions on {source} ({partitions} partitions) "
            f"in {time.monotonic() - t0:.1f} s")
        return fill

    def settle(self, group, source, partitions, proc, pre, quiet=2.0):
        """Waits until the pipeline's group is Stable with every partition
        of `source` assigned, and stays so for `quiet` seconds (a member
        that joins late would start another rebalance)."""
        deadline = time.monotonic() + 90
        stable_since = None
        while True:
            if proc.poll() is not None:
                self.fail(pre, f"the pipeline exited {proc.returncode} while joining")
            ok = False
            try:
                d = self.topics.admin.describe_consumer_groups([group])[group].result(10)
                n = sum(1 for m in d.members for tp in m.assignment.topic_partitions
                        if tp.topic == source)
                ok = d.state == ck.ConsumerGroupState.STABLE and n == partitions
            except Exception:  # noqa: BLE001 - a cold broker times out; ask again
                pass
            now = time.monotonic()
            if ok:
                stable_since = stable_since or now
                if now - stable_since >= quiet:
                    return len(d.members)
            else:
                stable_since = None
            if now > deadline:
                self.fail(pre, "the group did not settle in 90 s")
            time.sleep(0.1)

    def start(self, kind, pre, source, partitions, level=None, guard=False, shred=None,
              veil=None):
        """Creates the run's output topics, starts the pipeline (`veil`: this
        binary instead of --veil); returns (Popen, the output topic to
        count)."""
        veil = veil or self.a.veil
        logf = open(os.path.join(self.a.tmp, f"{pre}.log"), "wb")
        if kind == "veil":
            cfg = os.path.join(self.a.tmp, f"{pre}.yaml")
            with open(cfg, "w") as f:
                f.write(veil_config(self.shipped, self.a.bootstrap, self.registry, pre,
                                    source, free_port(), level, guard, shred))
            # The topics as a user creates them.
            r = subprocess.run([veil, "topics", "-c", cfg, "--apply"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            names = [f"{pre}.{t}" for t in
                     ("analytics", "marketing", "dlq", "audit", "ledger", "erasure") +
                     (("subject-keys",) if shred == "subject" else ())]
            self.topics.names.extend(names)
            if r.returncode != 0:
                raise SystemExit(f"e2e: veil topics failed: {r.stderr.decode()[-400:]}")
            self.topics.wait(names)
            cmd = [veil, "run", "-c", cfg]
        else:
            # The purpose topics' settings (compacted), as `veil topics` makes them.
            self.topics.create([f"{pre}.analytics", f"{pre}.marketing"], partitions,
                               {"cleanup.policy": "compact",
                                "max.compaction.lag.ms": "86400000",
                                "delete.retention.ms": "86400000"})
            cmd = [self.a.copy, "run", self.a.bootstrap, f"{pre}-g", f"{pre}-txn", source,
                   f"{pre}.analytics", f"{pre}.marketing"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=logf)
        logf.close()
        self.worker = proc
        return proc

    def stop(self, proc, pre):
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        self.worker = None
        if rc != 0:
            self.fail(pre, f"the pipeline exited {rc}")

    def fail(self, pre, why):
        path = os.path.join(self.a.tmp, f"{pre}.log")
        tail = ""
        if os.path.exists(path):
            with open(path, "rb") as f:
                tail = f.read()[-1500:].decode("utf-8", "replace")
        raise SystemExit(f"e2e: {pre}: {why}\n{tail}")

    def throughput(self, kind, partitions, count, level=None, perf=None, guard=False,
                   shred=None, keys=None, veil=None):
        """One run. A fresh source holds a primer and `count` records, each
        in a transaction left open; the pipeline starts with nothing to read
        and its group settles; the primer is committed and passes through
        (every member's first transaction on fresh topics is slow); then the
        `count` records are committed and the clock runs until the last of
        them is on a purpose topic, read read_committed (what a reader can
        see). Returns records/s, the worker's CPU per record (utime + stime
        over the timed span) and its peak RSS (VmHWM)."""
        pre = self.prefix(kind + (f"-{level}" if level else "") + ("-guard" if guard else "") +
                          (f"-{shred}" if shred else "") + ("-ab" if veil else ""))
        source = f"{pre}.customers"
        prime = self.a.prime
        fill = self.fill(source, partitions, prime, count, keys)
        proc = counter = None
        try:
            t_launch = time.monotonic()
            proc = self.start(kind, pre, source, partitions, level, guard, shred, veil)
            counter = subprocess.Popen([self.a.copy, "count", self.a.bootstrap,
                                        f"{pre}.analytics", str(prime + count),
                                        str(self.a.timeout), str(prime)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            lines = Lines(counter.stdout)
            members = self.settle(f"{pre}-g", source, partitions, proc, pre)
            t_ready = time.monotonic()
            fill.stdin.write(b"primer\n")
            fill.stdin.flush()
            t_primed = float(fill.stdout.readline().split()[1])
            mark = self.wait_line(lines, proc, pre, "the primer")
            t_mark = float(mark.split()[1])
            perf_proc = None
            if perf:
                perf_proc = subprocess.Popen(["perf", "record", "-g", "-q", "-o", perf,
                                              "-p", str(proc.pid)],
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
                time.sleep(1)
            cpu0 = proc_cpu_s(proc.pid)
            own0 = proc_own_cpu_s(proc.pid)
            flt0 = proc_minflt(proc.pid)
            fill.stdin.write(b"commit\n")
            fill.stdin.flush()
            t_commit = float(fill.stdout.readline().split()[1])
            res = json.loads(self.wait_line(lines, proc, pre, "the records"))
            cpu1 = proc_cpu_s(proc.pid)
            own1 = proc_own_cpu_s(proc.pid)
            flt1 = proc_minflt(proc.pid)
            hwm = proc_hwm_mb(proc.pid)
            if perf_proc:
                perf_proc.send_signal(signal.SIGINT)
                perf_proc.wait(60)
            self.stop(proc, pre)
        finally:
            for p in (fill, counter):
                if p and p.poll() is None:
                    p.kill()
                if p:
                    p.wait()
        span = res["t_last"] - t_commit
        result = {"rps": round(count / span), "span_s": round(span, 2),
                  "cpu_us": round((cpu1 - cpu0) * 1e6 / count, 1),
                  "own_cpu_us": round((own1 - own0) * 1e6 / count, 1),
                  "faults_k": round((flt1 - flt0) / 1000, 1),
                  "join_s": round(t_ready - t_launch, 1), "members": members,
                  "primer_s": round(t_mark - t_primed, 2),
                  "rss_mb": round(hwm, 1)}
        self.topics.delete([t for t in self.topics.names if t.startswith(pre + ".")])
        return result

    def wait_line(self, lines, proc, pre, what):
        """The counter's next line; fails if the pipeline dies first."""
        deadline = time.monotonic() + self.a.timeout
        while True:
            line = lines.get(0.05)
            if line is not None:
                if not line:
                    self.fail(pre, f"counting {what} failed")
                return line
            if proc.poll() is not None:
                self.fail(pre, f"the pipeline exited {proc.returncode} early")
            if time.monotonic() > deadline:
                self.fail(pre, f"{what} did not arrive in {self.a.timeout:.0f} s")

    def latency(self, kind, partitions):
        """The pipeline waits on an empty source, then a steady stream."""
        pre = self.prefix(kind + "-lat")
        source = f"{pre}.customers"
        self.topics.create([source], partitions)
        proc = self.start(kind, pre, source, partitions)
        try:
            self.settle(f"{pre}-g", source, partitions, proc, pre)
            res = latency.measure(self.a.bootstrap, source, f"{pre}.analytics", self.registry,
                                  self.a.rate, self.a.latency_s, self.a.latency_warmup)
        finally:
            if proc.poll() is None:
                self.stop(proc, pre)
        self.topics.delete([t for t in self.topics.names if t.startswith(pre + ".")])
        return res


def describe(kind, r):
    return (f"{kind} {r['rps']} rec/s ({r['span_s']} s), {r['cpu_us']} us CPU/rec "
            f"({r['own_cpu_us']} outside librdkafka's threads), "
            f"{r['faults_k']}k page faults, peak RSS {r['rss_mb']} MB; {r['members']} group member(s) settled in "
            f"{r['join_s']} s, primer through in {r['primer_s']} s")


def shred_compare(a, b):
    """Crypto-shredding against purpose-keyed encryption: the same records
    (a.shred_keys distinct subjects, each coming back, scrambled), the
    same config but for marketing's two encrypted fields, alternating runs;
    best of a.rounds each."""
    keys = a.shred_keys or max(1, a.records // 2)
    runs = {"plain": [], "subject": []}
    for r in range(a.rounds):
        for kind in ("plain", "subject"):
            runs[kind].append(b.throughput("veil", a.partitions, a.records, shred=kind,
                                           keys=keys))
        log(f"shred round {r + 1} ({a.partitions} partitions, {a.records} records over "
            f"{keys} subjects): " + describe("encrypt per purpose", runs["plain"][-1]) +
            "; " + describe("encrypt per subject", runs["subject"][-1]))
    if a.perf and a.only == "shred":
        p = b.throughput("veil", a.partitions, a.records, perf=a.perf, shred="subject",
                         keys=keys)
        log("under perf (not a figure): " + describe("encrypt per subject", p))
    return runs


def pair_compare(a, b, base, other, rounds, label, runs=None, other_first=False):
    """Back-to-back pairs of two Veil runs that differ only by `other`'s
    throughput() arguments (`base`'s are the shipped run's): each pair
    shares the machine's state of that minute, and the order alternates
    from round to round (starting with `other` when other_first): the
    second run of a pair meets the broker still busy with the first one's
    topics, and a fixed order would count that against one side. Returns
    {"base": [...], "other": [...]}, extending `runs` when given."""
    runs = runs or {"base": [], "other": []}
    for r in range(rounds):
        order = ("other", "base") if (r % 2 == 0) == other_first else ("base", "other")
        got = {}
        for side in order:
            got[side] = b.throughput("veil", a.partitions, a.records,
                                     **(other if side == "other" else base))
        runs["base"].append(got["base"])
        runs["other"].append(got["other"])
        log(f"{label} round {r + 1} ({a.partitions} partitions, {a.records} records, "
            f"{order[0]} first): " + describe("veil", got["base"]) + "; " +
            describe(f"veil {label}", got["other"]))
    return runs


def guard_compare(a, b, runs=None, guard_first=False):
    """The egress leak guard (`guard: {}` on both routed purposes) against the
    same config without it (pair_compare)."""
    return pair_compare(a, b, {}, {"guard": True}, a.guard_rounds, "guard on", runs,
                        guard_first)


def print_pairs(runs, name):
    """Median over the pairs of each pair's ratio (`other` against `base`):
    one disturbed run moves one pair, not the figure (the best of each side
    may come from different minutes of a shared machine)."""
    pairs = list(zip(runs["base"], runs["other"]))
    if not pairs:
        return
    tput = sorted(100 * (v["rps"] / g["rps"] - 1) for v, g in pairs)
    cpu = sorted(100 * (g["cpu_us"] / v["cpu_us"] - 1) for v, g in pairs)
    own = sorted(100 * (g["own_cpu_us"] / v["own_cpu_us"] - 1) for v, g in pairs)
    log(f"{name} pairs (throughput cost %): " + ", ".join(f"{x:.0f}" for x in tput))
    print(f"bench: {name}_overhead_pct {tput[len(tput) // 2]:.0f} %")
    print(f"bench: {name}_cpu_overhead_pct {cpu[len(cpu) // 2]:.0f} %")
    print(f"bench: {name}_own_cpu_overhead_pct {own[len(own) // 2]:.0f} %")


def print_guard(runs):
    if not runs["other"]:
        return  # only the perf run (VEIL_BENCH_GUARD_ROUNDS=0)
    g16 = max(runs["other"], key=lambda r: r["rps"])
    print(f"bench: e2e16_guard_rps {g16['rps']} rec/s")
    print_pairs(runs, "guard")


def print_shred(runs):
    plain = max(runs["plain"], key=lambda r: r["rps"])
    subj = max(runs["subject"], key=lambda r: r["rps"])
    print(f"bench: e2e16_encrypt_rps {plain['rps']} rec/s")
    print(f"bench: e2e16_shred_rps {subj['rps']} rec/s")
    print(f"bench: shred_overhead_pct {100 * (plain['rps'] / subj['rps'] - 1):.0f} %")
    # CPU: the median over rounds of each round's pair (same load, same
    # minute), steadier than the best runs' on a shared machine.
    ratios = sorted(s["cpu_us"] / p["cpu_us"] for p, s in zip(runs["plain"], runs["subject"]))
    print(f"bench: shred_cpu_overhead_pct {100 * (ratios[len(ratios) // 2] - 1):.0f} %")
    print(f"bench: shred_worker_rss_mb {max(r['rss_mb'] for r in runs['subject']):.0f} MB")


def bench(a):
    b = Bench(a)
    shipped_level = audit_level(b.shipped)
    # The audit comparison: the shipped level against audit off.
    other = "off"
    log(f"config/veil.yaml ships audit level '{shipped_level}'; the audit comparison "
        f"runs it against 'off'")
    if shipped_level != "record":
        log("NOTE: the shipped level is not the per-record default; the headline "
            "e2e16 figures follow the file as shipped")
    values = templates(b.registry)
    avg = sum(len(v) for v in values) / len(values)
    log(f"records: {len(values)} distinct customer values, {avg:.0f} bytes on average "
        "(free-text notes with dense PII), unique keys")
    with open(b.values, "wb") as f:
        for v in values:
            f.write(len(v).to_bytes(4, "big") + v)
    if a.only == "ab":
        # This build (the other side) against another build of veil
        # (--ab-veil, the base), config/veil.yaml as shipped on both.
        try:
            ab_runs = pair_compare(a, b, {"veil": a.ab_veil}, {}, a.guard_rounds,
                                   "this build")
        finally:
            if b.worker and b.worker.poll() is None:
                b.worker.kill()
                b.worker.wait()
            b.topics.delete_all()
        print_pairs(ab_runs, "ab")
        return
    if a.only == "guard":
        try:
            guard_runs = guard_compare(a, b)
            if a.perf:
                p = b.throughput("veil", a.partitions, a.records, perf=a.perf,
                                 guard=a.perf_guard)
                log(f"under perf (not a figure), guard {'on' if a.perf_guard else 'off'}: " +
                    describe("veil", p))
        finally:
            if b.worker and b.worker.poll() is None:
                b.worker.kill()
                b.worker.wait()
            b.topics.delete_all()
        print_guard(guard_runs)
        return
    if a.only == "shred":
        try:
            shred_runs = shred_compare(a, b)
        finally:
            if b.worker and b.worker.poll() is None:
                b.worker.kill()
                b.worker.wait()
            b.topics.delete_all()
        print_shred(shred_runs)
        return
    try:
        w_copy = b.throughput("copy", a.partitions, a.warmup_records)
        w_veil = b.throughput("veil", a.partitions, a.warmup_records)
        log("warm-up: " + describe("copy", w_copy) + "; " + describe("veil", w_veil))

        runs = {"copy16": [], "veil16": [], "veil16_other": [], "veil16_guard": []}
        for r in range(a.rounds):
            runs["copy16"].append(b.throughput("copy", a.partitions, a.records))
            runs["veil16"].append(b.throughput("veil", a.partitions, a.records))
            # The leak guard on both routed purposes, same config otherwise,
            # right after its pair (print_guard).
            runs["veil16_guard"].append(b.throughput("veil", a.partitions, a.records,
                                                     guard=True))
            runs["veil16_other"].append(b.throughput("veil", a.partitions, a.records,
                                                     level=other))
            log(f"round {r + 1} ({a.partitions} partitions, {a.records} records): " +
                describe("copy", runs["copy16"][-1]) + "; " +
                describe(f"veil audit {shipped_level}", runs["veil16"][-1]) + "; " +
                describe(f"veil audit {other}", runs["veil16_other"][-1]) + "; " +
                describe("veil guard on", runs["veil16_guard"][-1]))
        # more guard pairs (the figure is a median of pairs)
        guard_compare(a, b, {"base": runs["veil16"], "other": runs["veil16_guard"]},
                      guard_first=True)
        shred_runs = shred_compare(a, b)
        copy2 = b.throughput("copy", 2, a.records)
        veil2 = b.throughput("veil", 2, a.records)
        log("2 partitions: " + describe("copy", copy2) + "; " + describe("veil", veil2))

        lat_veil = b.latency("veil", a.partitions)
        log(f"veil latency at {a.rate} rec/s for {a.latency_s} s: {json.dumps(lat_veil)}")
        lat_copy = b.latency("copy", a.partitions)
        log(f"copy latency at {a.rate} rec/s for {a.latency_s} s: {json.dumps(lat_copy)}")

        if a.perf:
            p = b.throughput("veil", a.partitions, a.records, level=a.perf_audit,
                             perf=a.perf, guard=a.perf_guard)
            log(f"under perf (not a figure), audit {a.perf_audit or shipped_level}"
                f"{', guard on' if a.perf_guard else ''}: " + describe("veil", p))
    finally:
        if b.worker and b.worker.poll() is None:
            b.worker.kill()
            b.worker.wait()
        b.topics.delete_all()

    def best(name):
        return max(runs[name], key=lambda r: r["rps"])

    c16, v16, o16 = best("copy16"), best("veil16"), best("veil16_other")
    rec, off = v16, o16
    print(f"bench: e2e16_rps {v16['rps']} rec/s")
    print(f"bench: copy16_rps {c16['rps']} rec/s")
    print(f"bench: e2e16_ratio {v16['rps'] / c16['rps']:.2f} x")
    print(f"bench: worker_cpu_us_per_record {v16['cpu_us']} us")
    # Veil's own threads only (librdkafka's rdk:* left out), median over
    # rounds: what a change to Veil's per-record code moves.
    own = sorted(r["own_cpu_us"] for r in runs["veil16"])
    print(f"bench: worker_own_cpu_us_per_record {own[len(own) // 2]} us")
    print(f"bench: worker_rss_mb {max(r['rss_mb'] for r in runs['veil16']):.0f} MB")
    print(f"bench: copy_cpu_us_per_record {c16['cpu_us']} us")
    print(f"bench: e2e16_audit_{shipped_level}_rps {rec['rps']} rec/s")
    print(f"bench: e2e16_audit_off_rps {off['rps']} rec/s")
    # The shipped audit level against audit off (`audit: { level: off }`),
    # same run: the throughput it costs, and the CPU it adds per record
    # (throughput hides CPU while the worker waits on its commits).
    print(f"bench: audit_record_overhead_pct {100 * (off['rps'] / rec['rps'] - 1):.0f} %")
    print(f"bench: audit_record_cpu_overhead_pct "
          f"{100 * (rec['cpu_us'] / off['cpu_us'] - 1):.0f} %")
    # The egress leak guard (`guard: {}` on analytics and marketing) against
    # the same config without it, same run: the throughput it costs and the
    # CPU it adds per record (medians of back-to-back pairs).
    print_guard({"base": runs["veil16"], "other": runs["veil16_guard"]})
    print(f"bench: latency_p50_ms {lat_veil['p50']} ms")
    print(f"bench: latency_p99_ms {lat_veil['p99']} ms")
    print(f"bench: copy_latency_p50_ms {lat_copy['p50']} ms")
    print(f"bench: copy_latency_p99_ms {lat_copy['p99']} ms")
    print_shred(shred_runs)
    print(f"bench: e2e2_rps {veil2['rps']} rec/s")
    print(f"bench: copy2_rps {copy2['rps']} rec/s")
    print(f"bench: e2e2_ratio {veil2['rps'] / copy2['rps']:.2f} x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--veil", required=True)
    ap.add_argument("--copy", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--records", type=int, default=200000)
    ap.add_argument("--warmup-records", type=int, default=100000)
    ap.add_argument("--prime", type=int, default=4000,
                    help="records through each pipeline before its timed backlog")
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=10000)
    ap.add_argument("--latency-s", type=float, default=20)
    ap.add_argument("--latency-warmup", type=float, default=3)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--perf", help="also profile one extra veil run into this perf.data")
    ap.add_argument("--only", choices=["shred", "guard", "ab"],
                    help="run only this comparison (shred: per-subject vs per-purpose "
                         "encrypt; guard: the leak guard on vs off; ab: --veil against "
                         "--ab-veil, guard-rounds pairs)")
    ap.add_argument("--ab-veil", help="the other veil binary of --only ab (the base)")
    ap.add_argument("--guard-rounds", type=int, default=3,
                    help="guard pairs beyond the main rounds' (with --only guard: all)")
    ap.add_argument("--shred-keys", type=int, default=0,
                    help="distinct subjects in the shred comparison (default: records / 2)")
    ap.add_argument("--perf-audit", choices=["record", "batch"],
                    help="that run's audit level (default: as shipped)")
    ap.add_argument("--perf-guard", action="store_true",
                    help="that run with the leak guard on (as e2e16_guard_rps)")
    a = ap.parse_args()
    if (a.only == "ab") != bool(a.ab_veil):
        ap.error("--only ab and --ab-veil go together")
    bench(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
