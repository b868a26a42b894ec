"""test_worker_ops.py - operating `veil run` on the real single-node Kafka: /metrics and /healthz, `veil dlq replay` after the cause is fixed, `veil audit verify` on intact and forged chains, and a second worker joining the group while the output stays exactly once."""
import copy
import io
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import confluent_kafka as ck
import fastavro

from helpers import consume_all, wait_for
from leakwatch import WATCH
from test_worker import HMAC_KEY, PURPOSES, Pipeline, demo_produce, headers, stop, stderr_text

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_metrics(pl, port):
    """Turns the pipeline's metrics endpoint on (Pipeline strips it)."""
    with open(pl.config) as f:
        text = f.read()
    with open(pl.config, "w") as f:
        f.write(text + f"metrics: {{ listen: 127.0.0.1:{port} }}\n")


def get(url):
    """(status, body) of a GET, HTTP errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            status, body, ctype = r.status, r.read().decode(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        status, body, ctype = e.code, e.read().decode(), e.headers.get("Content-Type")
    WATCH.output(f"GET {url.split('/', 3)[-1]}", body)
    return status, body, ctype


def parse_metrics(text):
    """The exposition as {(name, ((label, value), …)): float}, checking
    that every sample line parses and every family has HELP and TYPE."""
    samples, helped, typed = {}, set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed[name] = kind
            continue
        assert line and not line.startswith("#"), line
        m = LINE.match(line)
        assert m, f"unparsable sample line: {line!r}"
        labels = tuple(sorted(LABEL.findall(m.group(3) or "")))
        samples[(m.group(1), labels)] = float(m.group(4))
    assert helped == set(typed), "every family has # HELP and # TYPE"
    for name, _ in samples:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or (base in typed and typed[base] == "histogram"), name
    return samples, typed


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def customers(pl, n, seed):
    rng = random.Random(seed)
    cs = [demo_produce.customer(rng, i) for i in range(n)]
    return cs, [(c["customer_id"].encode(), demo_produce.frame(pl.schema_id, pl.schema, c))
                for c in cs]


# ---- /metrics and /healthz --------------------------------------------------

def test_metrics_and_healthz_after_a_run(veil, kafka, tmp_path):
    port = free_port()
    pl = Pipeline(kafka, str(tmp_path), partitions=2,
                  extra_kafka={"statistics.interval.ms": 300})
    with_metrics(pl, port)
    n = 20
    cs, msgs = customers(pl, n, 21)
    msgs += [(b"C-bad", b"\x07" + msgs[0][1][1:]),
             (b"C-unknown", b"\x00" + struct.pack(">I", 4242) + msgs[1][1][5:]),
             (cs[3]["customer_id"].encode(), None)]
    pl.produce(msgs)
    w = pl.start()
    base = f"http://127.0.0.1:{port}"
    try:
        for t in pl.topics.values():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= n + 1, timeout=90,
                     what=f"{n} records and a tombstone on {t}")
        wait_for(lambda: len(consume_all(kafka, pl.dlq)) >= 2, timeout=60,
                 what="two dead letters")

        def settled():
            s, _ = parse_metrics(get(base + "/metrics")[1])
            lags = [v for (name, labels), v in s.items() if name == "veil_consumer_lag"
                    and dict(labels)["topic"] == pl.source]
            return s if len(lags) == 2 and all(v == 0 for v in lags) else None

        s = wait_for(settled, timeout=60,
                     what="consumer lag 0 on both source partitions in /metrics")
        status, body, ctype = get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        s, typed = parse_metrics(body)
        hz = get(base + "/healthz")
        assert hz[0] == 200 and hz[1].startswith("ok"), hz
        assert get(base + "/nope")[0] == 404
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]

    src = pl.source
    assert value(s, "veil_records_in_total", route=src) == n + 3
    for p in PURPOSES:
        assert value(s, "veil_records_out_total", route=src, purpose=p) == n, p
        assert value(s, "veil_tombstones_out_total", route=src, purpose=p,
                     reason="upstream-delete") == 1, p
    assert value(s, "veil_dlq_records_total", code="bad-magic") == 1
    assert value(s, "veil_dlq_records_total", code="unknown-schema") == 1
    # Each field position counts once per record and purpose; email has
    # two (email and contacts[].email).
    assert value(s, "veil_transforms_total", purpose="analytics",
                 **{"class": "customer_id"}, transform="hash") == n
    assert value(s, "veil_transforms_total", purpose="analytics", **{"class": "email"},
                 transform="hash") == 2 * n
    assert value(s, "veil_transforms_total", purpose="marketing", **{"class": "email"},
                 transform="keep") == 2 * n
    assert value(s, "veil_transforms_total", purpose="marketing",
                 **{"class": "credit_score"}, transform="drop") == n
    # One value plan per purpose is compiled; every other lookup hits.
    hits = value(s, "veil_plan_cache_hits_total")
    misses = value(s, "veil_plan_cache_misses_total")
    assert misses == len(PURPOSES) and hits + misses == len(PURPOSES) * n
    committed = value(s, "veil_transactions_total", outcome="committed")
    assert committed >= 1
    assert value(s, "veil_batch_duration_seconds_count") == committed
    assert value(s, "veil_commit_duration_seconds_count") == committed
    assert value(s, "veil_batch_duration_seconds_bucket", le="+Inf") == committed
    assert value(s, "veil_audit_events_total") == len(consume_all(kafka, pl.audit))
    assert value(s, "veil_assigned_partitions") == 2
    assert typed["veil_batch_duration_seconds"] == "histogram"
    assert typed["veil_records_in_total"] == "counter"
    assert typed["veil_consumer_lag"] == "gauge"


# ---- dlq replay --------------------------------------------------------------

def v2_schema():
    """customers-value with one more field: the schema a producer starts
    using before anyone registers it."""
    with open(demo_produce.SCHEMA_PATH) as f:
        s = json.load(f)
    s = copy.deepcopy(s)
    s["fields"].append({"name": "segment", "type": "string", "default": "none"})
    return s


def register_with_id(reg_dir, subject, schema, schema_id):
    """What an operator's fix does: the schema appears in the file registry
    under the id the producer used (written atomically, as Veil does)."""
    path = os.path.join(reg_dir, ".veil-registry.json")
    with open(path) as f:
        manifest = json.load(f)
    text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
    version = 1 + max((e["version"] for e in manifest["schemas"]
                       if e["subject"] == subject), default=0)
    import hashlib
    manifest["schemas"].append({"id": schema_id, "subject": subject, "version": version,
                                "sha256": hashlib.sha256(text.encode()).hexdigest(),
                                "schema": text})
    tmp = path + ".tmp-test"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    os.rename(tmp, path)


def replay(veil, config, *args):
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
    return subprocess.run([veil, "dlq", "replay", "-c", config, *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_dlq_replay_after_the_schema_is_registered(veil, kafka, tmp_path):
    pl = Pipeline(kafka, str(tmp_path), partitions=1)
    late_id = 4000
    schema2 = v2_schema()
    parsed2 = fastavro.parse_schema(schema2)
    rng = random.Random(31)
    good, late = [], []
    for i in range(3):
        c = demo_produce.customer(rng, i)
        good.append((c["customer_id"].encode(), demo_produce.frame(pl.schema_id, pl.schema, c)))
    late_customers = []
    for i in range(3, 7):
        c = dict(demo_produce.customer(rng, i), segment="vip")
        late_customers.append(c)
        late.append((c["customer_id"].encode(), demo_produce.frame(late_id, parsed2, c)))
    bad = [(b"C-bad", b"\x07" + good[0][1][1:])]
    pl.produce(good + late + bad)
    w = pl.start()
    marketing = pl.topics["marketing"]
    try:
        wait_for(lambda: len(consume_all(kafka, pl.dlq)) >= 5, timeout=90,
                 what="five dead letters")
        wait_for(lambda: len(consume_all(kafka, marketing)) >= 3, timeout=60,
                 what="the three good records")
        dead = consume_all(kafka, pl.dlq)
        codes = sorted(headers(m)["veil.error"] for m in dead)
        assert codes == ["bad-magic"] + ["unknown-schema"] * 4
        unknown_pos = {f"{pl.dlq}/{m.partition()}/{m.offset()}" for m in dead
                       if headers(m)["veil.error"] == "unknown-schema"}
        bad_pos = {f"{pl.dlq}/{m.partition()}/{m.offset()}" for m in dead} - unknown_pos

        # Before the fix, nothing says the cause is gone: a dry run only counts.
        r = replay(veil, pl.config, "--error", "unknown-schema", "--dry-run")
        assert r.returncode == 0, r.stderr
        assert "would replay 4" in r.stdout
        assert len(consume_all(kafka, pl.dlq)) == 5

        register_with_id(pl.reg, "customers-value", schema2, late_id)
        r = replay(veil, pl.config, "--error", "unknown-schema")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "replayed 4 (unknown-schema 4)" in r.stdout
        assert "other codes 1" in r.stdout and "failed 0" in r.stdout
        for c in late_customers:
            assert c["email"] not in r.stdout + r.stderr

        for t in pl.topics.values():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= 7, timeout=90,
                     what=f"the replayed records on {t}")
        got = consume_all(kafka, marketing)
        replayed = [m for m in got if "veil.replay.of" in headers(m)]
        assert {headers(m)["veil.replay.of"] for m in replayed} == unknown_pos
        ids = sorted(pl.decode(m.value())[1]["customer_id"] for m in replayed)
        assert ids == sorted(c["customer_id"] for c in late_customers)

        # Again: everything selected was replayed already, nothing moves.
        before = len(consume_all(kafka, pl.source))
        r = replay(veil, pl.config, "--error", "unknown-schema")
        assert r.returncode == 0, r.stderr
        assert "replayed 0" in r.stdout and "already replayed 4" in r.stdout
        assert len(consume_all(kafka, pl.source)) == before

        # The bad record is still bad: replayed, it comes back to the DLQ
        # saying where it came from.
        r = replay(veil, pl.config)
        assert r.returncode == 0, r.stderr
        assert "replayed 1 (bad-magic 1)" in r.stdout and "already replayed 4" in r.stdout
        wait_for(lambda: any(headers(m).get("veil.replay.of") in bad_pos
                             for m in consume_all(kafka, pl.dlq)), timeout=60,
                 what="the replayed bad record back on the DLQ")
        again = [m for m in consume_all(kafka, pl.dlq)
                 if headers(m).get("veil.replay.of") in bad_pos
                 and "veil.error" in headers(m)]
        assert len(again) == 1 and headers(again[0])["veil.error"] == "bad-magic"
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    for t in pl.topics.values():
        assert len(consume_all(kafka, t)) == 7


def test_dlq_replay_usage_errors(veil, kafka, tmp_path):
    pl = Pipeline(kafka, str(tmp_path), partitions=1)
    r = subprocess.run([veil, "dlq", "replay"], capture_output=True, text=True)
    assert r.returncode == 2 and "-c FILE" in r.stderr
    r = subprocess.run([veil, "dlq", "bogus", "-c", pl.config], capture_output=True, text=True)
    assert r.returncode == 2
    # A key that is not the one the letters were sealed with: counted failures, exit 1.
    prod = ck.Producer({"bootstrap.servers": kafka})
    prod.produce(pl.dlq, key=b"x" * 40, value=b"y" * 60, headers=[
        ("veil.error", b"truncated"), ("veil.source", f"{pl.source}/0/0".encode()),
        ("veil.dlq.payload", b"encrypted"), ("veil.key_id", b"k1")])
    assert prod.flush(30) == 0
    r = replay(veil, pl.config)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"cannot replay {pl.dlq}/0/0" in r.stderr and "failed 1" in r.stdout


# ---- audit verify ------------------------------------------------------------

def verify(veil, config):
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
    return subprocess.run([veil, "audit", "verify", "-c", config], capture_output=True,
                          text=True, env=env, timeout=120)


def run_once(pl):
    w = pl.start("--once")
    try:
        w.proc.wait(120)
    except subprocess.TimeoutExpired:
        w.proc.kill()
        raise AssertionError("veil run --once did not finish")
    w.close()
    assert w.proc.returncode == 0, stderr_text(w)[-3000:]
    return stderr_text(w)


def test_audit_verify_intact_across_restarts_then_forged(veil, kafka, tmp_path):
    pl = Pipeline(kafka, str(tmp_path), partitions=2)
    _, msgs = customers(pl, 12, 41)
    pl.produce(msgs[:6])
    run_once(pl)
    first = consume_all(kafka, pl.audit)
    assert first
    # A restarted worker continues each chain from its last event.
    pl.produce(msgs[6:])
    log = run_once(pl)
    assert "continues from offset" in log
    events = consume_all(kafka, pl.audit)
    assert len(events) > len(first)
    r = verify(veil, pl.config)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "intact" in r.stdout
    # Two chains (one per source partition), each one segment long.
    assert "in 2 chain(s)" in r.stdout
    assert re.search(r"segment starts: new 2\b", r.stdout), r.stdout
    starts = [json.loads(m.value()) for m in events if json.loads(m.value()).get("segment_start")]
    assert len(starts) == 2

    # Forged: a real event's text with one number changed, its MAC copied.
    last = events[-1]
    ev = json.loads(last.value())
    ev["records"] += 1
    forged = json.dumps(ev, separators=(",", ":"), sort_keys=True).encode()
    prod = ck.Producer({"bootstrap.servers": kafka})
    where = []
    prod.produce(pl.audit, key=last.key(), value=forged, partition=last.partition(),
                 headers=[("veil.mac", headers(last)["veil.mac"].encode())],
                 on_delivery=lambda err, m: where.append(m.offset()))
    assert prod.flush(30) == 0
    r = verify(veil, pl.config)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"first at {pl.audit}/{last.partition()}/{where[0]}" in r.stdout
    assert "MAC" in r.stdout


def test_audit_verify_catches_an_appended_event_with_a_correct_prev(veil, kafka, tmp_path):
    import hashlib
    pl = Pipeline(kafka, str(tmp_path), partitions=1)
    _, msgs = customers(pl, 4, 43)
    pl.produce(msgs)
    run_once(pl)
    assert verify(veil, pl.config).returncode == 0
    last = consume_all(kafka, pl.audit)[-1]
    ev = json.loads(last.value())
    ev["prev"] = hashlib.sha256(last.value()).hexdigest()
    ev["records"] = 0
    prod = ck.Producer({"bootstrap.servers": kafka})
    prod.produce(pl.audit, key=last.key(), partition=last.partition(),
                 value=json.dumps(ev, separators=(",", ":"), sort_keys=True).encode(),
                 headers=[("veil.mac", b"k1:" + b"0" * 64)])
    assert prod.flush(30) == 0
    r = verify(veil, pl.config)
    assert r.returncode == 1 and "BROKEN" in r.stdout, r.stdout + r.stderr


# ---- a second worker joins --------------------------------------------------

def test_second_worker_joins_and_output_stays_exactly_once(veil, kafka, tmp_path):
    pl = Pipeline(kafka, str(tmp_path), partitions=4,
                  extra_kafka={"session.timeout.ms": 6000})
    config2 = os.path.join(str(tmp_path), "veil-w2.yaml")
    with open(pl.config) as f:
        text = f.read()
    assert "instance: w1" in text
    with open(config2, "w") as f:
        f.write(text.replace("instance: w1", "instance: w2"))
    n = 1200
    _, msgs = customers(pl, n, 51)
    where = {}
    done = threading.Event()
    errors = []

    def producer():
        p = ck.Producer({"bootstrap.servers": kafka, "enable.idempotence": True,
                         "linger.ms": 5})

        def cb(i):
            def f(err, m):
                if err is not None:
                    errors.append(err)
                else:
                    where[(m.partition(), m.offset())] = i
            return f
        try:
            for i, (k, v) in enumerate(msgs):
                p.produce(pl.source, key=k, value=v, on_delivery=cb(i))
                if i % 40 == 39:
                    p.flush(30)
                    time.sleep(0.05)  # a steady stream, not a pacing wait
            p.flush(30)
        finally:
            done.set()

    w1 = pl.start()
    t = threading.Thread(target=producer, daemon=True)
    t.start()
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
    w2 = None
    try:
        marketing = pl.topics["marketing"]
        wait_for(lambda: len(consume_all(kafka, marketing)) > 0, timeout=90,
                 what="the first worker's first batch")
        from helpers import LineCollector
        w2 = LineCollector(subprocess.Popen([veil, "run", "-c", config2],
                                            stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, env=env))

        def assigned(w):
            got = 0
            for line in w.snapshot()[1]:
                if '"event":"assign"' in line:
                    got += int(re.search(r"(\d+) partition", line).group(1))
                if '"event":"revoke"' in line:
                    got -= int(re.search(r"(\d+) partition", line).group(1))
            return got

        wait_for(lambda: assigned(w2) > 0, timeout=90,
                 what="the second worker taking partitions")
        assert done.wait(120), "the producer did not finish"
        assert errors == []
        for tp in pl.topics.values():
            wait_for(lambda tp=tp: len(consume_all(kafka, tp)) >= n, timeout=120,
                     what=f"{n} records on {tp}")
        # Both workers hold partitions once the group is stable. Read at
        # one instant, the counts can fall inside a rebalance (the eager
        # protocol revokes every member's partitions before it assigns;
        # w2's second pipeline may join after its first): CI once read
        # (0, 1) there. So wait for the settled state, not an instant.
        last = []

        def shared():
            last[:] = [assigned(w1), assigned(w2)]
            return last[0] > 0 and last[1] > 0 and sum(last) == 4
        try:
            wait_for(shared, timeout=90,
                     what="both workers holding the 4 partitions between them")
        except AssertionError as e:
            raise AssertionError(f"{e}; last seen (w1, w2) = {last}") from None
    finally:
        rc1 = stop(w1)
        rc2 = stop(w2) if w2 else 0
    assert rc1 == 0, stderr_text(w1)[-3000:]
    assert rc2 == 0, stderr_text(w2)[-3000:]
    assert len(where) == n
    for p, tp in pl.topics.items():
        idx = []
        for m in consume_all(kafka, tp):
            _, part, off = headers(m)["veil.source"].rsplit("/", 2)
            idx.append(where[(int(part), int(off))])
        assert len(idx) == n, f"{tp}: {len(idx)} records for {n} inputs"
        assert sorted(idx) == list(range(n)), f"{tp}: loss or duplicates"
    # The chains moved between workers and continued: one segment each.
    r = verify(veil, pl.config)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"in 4 chain\(s\).*segment starts: new 4\b", r.stdout), r.stdout


def test_dlq_replay_refuses_tampered_and_planted_letters(veil, kafka, tmp_path):
    """A sealed dead letter is bound to its headers: a copy whose
    veil.source or veil.error was changed does not open, and a raw letter
    planted in a DLQ the config keeps encrypted is refused; each is listed
    by position (exit 1) and nothing of them is replayed."""
    pl = Pipeline(kafka, str(tmp_path), partitions=1)
    rng = random.Random(41)
    c = demo_produce.customer(rng, 0)
    good = demo_produce.frame(pl.schema_id, pl.schema, c)
    pl.produce([(b"C-bad", b"\x07" + good[1:])])
    w = pl.start()
    try:
        wait_for(lambda: len(consume_all(kafka, pl.dlq)) >= 1, timeout=90,
                 what="the dead letter")
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    letter = consume_all(kafka, pl.dlq)[0]
    h = [(k, v) for k, v in letter.headers()]
    moved = [(k, f"{pl.source}/0/99".encode() if k == "veil.source" else v)
             for k, v in h]
    recoded = [(k, b"unknown-schema" if k == "veil.error" else v) for k, v in h]
    raw = [(k, b"raw" if k == "veil.dlq.payload" else v) for k, v in h]
    prod = ck.Producer({"bootstrap.servers": kafka})
    for hdrs, value in ((moved, letter.value()), (recoded, letter.value()),
                        (raw, b"\x00\x00\x00\x00\x01planted")):
        prod.produce(pl.dlq, key=letter.key(), value=value, headers=hdrs)
    assert prod.flush(30) == 0
    before = len(consume_all(kafka, pl.source))
    planted = [m.offset() for m in consume_all(kafka, pl.dlq)
               if m.offset() != letter.offset()]
    assert len(planted) == 3
    r = replay(veil, pl.config)
    assert r.returncode == 1, r.stdout + r.stderr
    for off in planted:
        assert f"cannot replay {pl.dlq}/0/{off}" in r.stderr, r.stderr
    assert f"cannot replay {pl.dlq}/0/{letter.offset()}" not in r.stderr
    assert "replayed 1" in r.stdout and "failed 3" in r.stdout, r.stdout
    # Only the genuine letter went back to the source.
    src = consume_all(kafka, pl.source)
    assert len(src) == before + 1
    assert [headers(m).get("veil.replay.of") for m in src[before:]] == \
        [f"{pl.dlq}/0/{letter.offset()}"]
    assert c["email"] not in r.stdout + r.stderr
