"""test_retention.py - retention and erasure on the real single-node Kafka: tombstones after each key's deadline (never before), renewal, restarts (SIGTERM and kill -9) restoring from the ledger, erasure on every purpose, the licence-expiry purge and a compacted purpose topic losing an expired key's values. Everything is read read_committed."""
import json
import os
import random
import signal
import subprocess

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource)

from helpers import consume_all, wait_for
from test_kafka import create_topic
from test_topics_erase import expected_record_key
from test_worker import HMAC_KEY, Pipeline, demo_produce, headers, stderr_text, stop

RETENTION_S = 15
COMPACT = {"cleanup.policy": "compact", "segment.ms": "1000",
           "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
           "delete.retention.ms": "60000"}


def retention_pipeline(kafka, root, edits=(), compact_support=False):
    """A test_worker Pipeline with its own ledger and erasure topics (two
    partitions, like the source), optionally a compacted support topic."""
    # A killed worker's partitions move on after its session times out.
    # One pipeline per worker: these tests are about what moves between
    # workers (deadlines on rebalance, which worker clears an erased key),
    # and each worker must own a partition.
    pl = Pipeline(kafka, root, partitions=2, edits=edits, threads=1,
                  extra_kafka={"session.timeout.ms": 6000})
    pl.ledger = f"{pl.prefix}.retention"
    pl.erasure = f"{pl.prefix}.erasure"
    create_topic(kafka, pl.ledger, partitions=2, config={"cleanup.policy": "compact"})
    create_topic(kafka, pl.erasure, partitions=2)
    with open(pl.config) as f:
        text = f.read()
    old = "ledger: veil.retention, erasure: veil.erasure"
    assert old in text
    text = text.replace(old, f"ledger: {pl.ledger}, erasure: {pl.erasure}")
    with open(pl.config, "w") as f:
        f.write(text)
    if compact_support:
        admin = AdminClient({"bootstrap.servers": kafka})
        res = ConfigResource("topic", pl.topics["support"], incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in COMPACT.items()])
        for fut in admin.incremental_alter_configs([res]).values():
            fut.result(30)
    return pl


def customers(pl, seed, n, start=0):
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        c = demo_produce.customer(rng, i)
        out.append((c["customer_id"].encode(), demo_produce.frame(pl.schema_id, pl.schema, c)))
    return out


def source_ts(kafka, pl):
    """{key: timestamp of its newest source record}."""
    ts = {}
    for m in consume_all(kafka, pl.source):
        ts[m.key()] = max(ts.get(m.key(), 0), m.timestamp()[1])
    return ts


def tombstones(msgs, reason=None):
    return [m for m in msgs if m.value() is None and
            (reason is None or headers(m).get("veil.reason") == reason)]


def values(msgs):
    return [m for m in msgs if m.value() is not None]


def output(kafka, topic, src):
    """The committed output of the source record at src ("topic/p/o")."""
    got = [m for m in values(consume_all(kafka, topic))
           if headers(m)["veil.source"] == src]
    return got[0] if got else None


def veil_erase(pl, *keys):
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
    r = subprocess.run([os.environ["VEIL"], "erase", "-c", pl.config, *keys],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return [line.split(":", 1)[0] for line in r.stdout.splitlines()
            if ": delivered" in line]


@pytest.fixture(scope="module")
def expiry(veil, kafka, tmp_path_factory):
    """Support keeps data RETENTION_S seconds on a compacted topic. Worker 1
    processes six keys, the last one deleted upstream, and stops with
    SIGTERM; worker 2 processes a newer
    record of the first key and is killed with -9; worker 3 restores from
    the ledger and emits the tombstones; then a key present on every
    purpose is erased (twice)."""
    pl = retention_pipeline(kafka, str(tmp_path_factory.mktemp("retention")),
                            edits=[("retention: 12h", f"retention: {RETENTION_S}s")],
                            compact_support=True)
    support = pl.topics["support"]
    first = customers(pl, 21, 6)
    keys = [k for k, _ in first]
    log = []

    pl.produce(first + [(keys[5], None)])
    w = pl.start()
    wait_for(lambda: len(consume_all(kafka, support)) >= 7, timeout=90,
             what="six records and a tombstone on support")
    rc1 = stop(w)
    log.append(stderr_text(w))

    # A newer record for the first key: its deadline moves later.
    renew = customers(pl, 22, 1)
    (part, off), = pl.produce([(keys[0], renew[0][1])])
    w = pl.start()
    try:
        # (Compaction may already have removed older values: look for this
        # record by its source position.)
        wait_for(lambda: output(kafka, support, f"{pl.source}/{part}/{off}"), timeout=90,
                 what="the renewed record on support")
    except AssertionError:
        w.close()
        print("\n".join(log)[-4000:], stderr_text(w)[-6000:])
        raise
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait(30)
    w.close()
    log.append(stderr_text(w))
    written = source_ts(kafka, pl)

    w = pl.start()
    try:
        wait_for(lambda: len(tombstones(consume_all(kafka, support), "retention")) >= 5,
                 timeout=RETENTION_S + 90, what="five retention tombstones on support")
        support_after = consume_all(kafka, support)

        # Erasure of a key on every purpose, requested twice.
        erased = customers(pl, 23, 1, start=100)
        ekey = erased[0][0]
        (part, off), = pl.produce(erased)
        src = f"{pl.source}/{part}/{off}"
        outputs = {p: wait_for(lambda t=t: output(kafka, t, src), timeout=60,
                               what=f"the record to erase on {t}")
                   for p, t in pl.topics.items()}
        ids = veil_erase(pl, ekey.decode(), ekey.decode())
        assert len(ids) == 2

        def erasure_done():
            ev = [json.loads(m.value()) for m in consume_all(kafka, pl.audit)]
            done = [e for e in ev if e.get("kind") == "erasure-completed"]
            return len(done) >= 2 and done

        wait_for(erasure_done, timeout=60, what="two erasure-completed events")
    except AssertionError:
        print("\n".join(log)[-4000:], stderr_text(w)[-4000:])
        raise
    rc3 = stop(w)
    log.append(stderr_text(w))
    return {"pl": pl, "keys": keys, "written": written, "rc": (rc1, rc3),
            "support": support_after, "ekey": ekey, "ids": ids, "outputs": outputs,
            "log": "\n".join(log),
            "out": {p: consume_all(kafka, t) for p, t in pl.topics.items()},
            "audit": [json.loads(m.value()) for m in consume_all(kafka, pl.audit)]}


def test_workers_exit_cleanly(expiry):
    assert expiry["rc"] == (0, 0), expiry["log"][-3000:]


def test_one_retention_tombstone_per_key_never_early(expiry):
    pl = expiry["pl"]
    got = tombstones(expiry["support"], "retention")
    by_key = {}
    for m in got:
        by_key.setdefault(m.key(), []).append(m)
    # Support keys are kept as they are (customer_id: keep on support).
    # The key deleted upstream is no longer retained: no tombstone of ours.
    assert sorted(by_key) == sorted(expiry["keys"][:5])
    deleted = [m for m in tombstones(expiry["support"]) if m.key() == expiry["keys"][5]]
    assert [headers(m)["veil.reason"] for m in deleted] == ["upstream-delete"]
    lateness = []
    for k, ms in by_key.items():
        assert len(ms) == 1, f"{len(ms)} tombstones for one key"
        h = headers(ms[0])
        assert h["veil.purpose"] == "support"
        assert h["veil.license"] == "LIC-SUPPORT-1"
        deadline = expiry["written"][k] + RETENTION_S * 1000
        assert ms[0].timestamp()[1] >= deadline, "tombstone before the deadline"
        lateness.append(ms[0].timestamp()[1] - deadline)
    print(f"retention tombstone lateness ms: max {max(lateness)}, "
          f"min {min(lateness)} (includes the kill -9 downtime)")
    print("\n".join(line for line in expiry["log"].splitlines()
                    if '"restore"' in line or '"retention-revoke"' in line))
    # The long-retention purposes got no retention tombstones.
    for p in ("analytics", "marketing"):
        assert tombstones(expiry["out"][p], "retention") == [], p


def test_renewed_key_expires_after_its_newer_record(expiry):
    k = expiry["keys"][0]
    srcs = [m for m in consume_all(os.environ["VEIL_KAFKA_BOOTSTRAP"],
                                   expiry["pl"].source) if m.key() == k]
    assert len(srcs) == 2
    newest = max(m.timestamp()[1] for m in srcs)
    oldest = min(m.timestamp()[1] for m in srcs)
    (t,) = [m for m in tombstones(expiry["support"], "retention") if m.key() == k]
    assert t.timestamp()[1] >= newest + RETENTION_S * 1000
    assert newest > oldest


def test_erasure_tombstones_every_purpose_and_audits_a_hash(expiry):
    ekey, ids = expiry["ekey"], expiry["ids"]
    for p, m in expiry["outputs"].items():
        er = [t for t in tombstones(expiry["out"][p], "erasure") if t.key() == m.key()]
        # Two requests, two tombstones: idempotent for a reader.
        assert len(er) == 2, p
        assert headers(er[0])["veil.purpose"] == p
        assert headers(er[0])["veil.license"].startswith("LIC-")
    assert expiry["outputs"]["marketing"].key() == ekey
    assert expiry["outputs"]["analytics"].key() != ekey
    done = [e for e in expiry["audit"] if e.get("kind") == "erasure-completed"]
    assert sorted(e["request_id"] for e in done) == sorted(ids)
    want = expected_record_key(HMAC_KEY, "k1", ekey.decode())
    assert all(e["key_hash"] == want for e in done)
    assert sorted(e["tombstones"] for e in done) == [3, 3]
    # The first request cleared the three tracked keys, the second nothing.
    assert sorted(e["cleared"] for e in done) == [0, 3]
    raw = json.dumps(expiry["audit"])
    assert ekey.decode() not in raw
    assert ekey.decode() not in expiry["log"]


def test_compaction_removes_expired_values(expiry, kafka):
    """Once the cleaner has run, a reader from the beginning of the
    compacted support topic finds no value for an expired key. The active
    segment is never cleaned, so small records on another key keep rolling
    it."""
    support = expiry["pl"].topics["support"]
    # Expired, deleted upstream, erased: none may keep a value.
    expired = set(expiry["keys"]) | {expiry["ekey"]}
    nudge = ck.Producer({"bootstrap.servers": kafka})

    def clean():
        nudge.produce(support, key=b"nudge", value=b"x")
        nudge.flush(10)
        left = [m for m in values(consume_all(kafka, support)) if m.key() in expired]
        return not left

    wait_for(clean, timeout=120, interval=1.0,
             what="compaction to remove the expired keys' values")
    # The tombstones themselves are still there for consumers' tables.
    keys = {m.key() for m in tombstones(consume_all(kafka, support))}
    assert keys == expired


def test_license_expiry_purges_every_key(veil, kafka, tmp_path):
    pl = retention_pipeline(kafka, str(tmp_path))
    msgs = customers(pl, 31, 3)
    pl.produce(msgs)
    w = pl.start("--once")
    try:
        w.proc.wait(90)
    except subprocess.TimeoutExpired:
        w.proc.kill()
        raise AssertionError("veil run --once did not finish")
    w.close()
    assert w.proc.returncode == 0, stderr_text(w)[-3000:]
    support = pl.topics["support"]
    assert len(values(consume_all(kafka, support))) == 3
    # The support licence ends (the config says so now); its keys are
    # purged from the ledger state on restart.
    with open(pl.config) as f:
        text = f.read()
    assert "valid_until: 2034-12-31" in text
    with open(pl.config, "w") as f:
        f.write(text.replace("valid_until: 2034-12-31", "valid_until: 2020-01-01"))
    w = pl.start()
    try:
        wait_for(lambda: len(tombstones(consume_all(kafka, support))) >= 3, timeout=90,
                 what="three licence-expiry tombstones")
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    got = tombstones(consume_all(kafka, support))
    assert sorted(m.key() for m in got) == sorted(k for k, _ in msgs)
    assert {headers(m)["veil.reason"] for m in got} == {"license-expired"}
    for p in ("analytics", "marketing"):
        assert tombstones(consume_all(kafka, pl.topics[p])) == [], p
    ev = [json.loads(m.value()) for m in consume_all(kafka, pl.audit)]
    purge = [e for e in ev if e.get("kind") == "retention"]
    assert sum(e["tombstones"] for e in purge) == 3
    assert {e["reason"] for e in purge} == {"license-expired"}


def test_audit_verifies_with_retention_events(expiry):
    """The worker's retention and erasure events form their own chain
    (retention/<transactional.id>), one segment per run, that `veil audit
    verify` accepts."""
    kinds = {e.get("kind") for e in expiry["audit"]}
    assert {"retention", "erasure-completed"} <= kinds
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
    r = subprocess.run([os.environ["VEIL"], "audit", "verify", "-c", expiry["pl"].config],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rebalance_between_two_workers_keeps_every_deadline(veil, kafka, tmp_path):
    """Worker 1 holds both source partitions; worker 2 joins, takes one over
    and restores it from the ledger. Every key still gets exactly one
    tombstone, after its deadline."""
    pl = retention_pipeline(kafka, str(tmp_path),
                            edits=[("retention: 12h", f"retention: {RETENTION_S}s")])
    support = pl.topics["support"]
    msgs = customers(pl, 41, 8)
    pl.produce(msgs)
    w1 = pl.start()
    second = os.path.join(str(tmp_path), "veil-w2.yaml")
    with open(pl.config) as f:
        text = f.read()
    assert "instance: w1" in text
    with open(second, "w") as f:
        f.write(text.replace("instance: w1", "instance: w2"))
    w2 = None
    try:
        wait_for(lambda: len(values(consume_all(kafka, support))) >= 8, timeout=90,
                 what="eight records on support")
        env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
        proc = subprocess.Popen([os.environ["VEIL"], "run", "-c", second],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        from helpers import LineCollector
        w2 = LineCollector(proc)

        def took_over():
            return any('"restore"' in line and "0 record(s)" not in line
                       for line in w2.snapshot()[1])

        wait_for(took_over, timeout=60, what="worker 2 restoring a partition")
        written = source_ts(kafka, pl)
        wait_for(lambda: len(tombstones(consume_all(kafka, support))) >= 8,
                 timeout=RETENTION_S + 60, what="eight tombstones on support")
    except AssertionError:
        print(stderr_text(w1)[-3000:], w2 and stderr_text(w2)[-3000:])
        raise
    finally:
        rcs = [stop(w) for w in (w1, w2) if w]
    assert rcs == [0, 0]
    got = tombstones(consume_all(kafka, support))
    assert sorted(m.key() for m in got) == sorted(k for k, _ in msgs)
    for m in got:
        assert headers(m)["veil.reason"] == "retention"
        assert m.timestamp()[1] >= written[m.key()] + RETENTION_S * 1000
    # Both workers emitted some of them: the state really moved.
    ev = [json.loads(m.value()) for m in consume_all(kafka, pl.audit)]
    chains = {e["chain"] for e in ev if e.get("kind") == "retention"}
    assert len(chains) == 2, chains
