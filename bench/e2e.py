"""e2e.py - the Python side of bench/e2e.sh: topics, sample records, and
the two measures (committed throughput, end-to-end latency) read with
confluent_kafka. Never imported by tests; prints only counts and times."""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
import demo_produce  # noqa: E402


def cmd_topics(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    if a.action == "create":
        futs = admin.create_topics([NewTopic(t, a.partitions, 1) for t in a.names],
                                   operation_timeout=30)
    else:
        futs = admin.delete_topics(a.names, operation_timeout=30)
    for t, f in futs.items():
        f.result(timeout=60)
    if a.action == "create":
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = admin.list_topics(timeout=5)
            if all(t in md.topics and md.topics[t].error is None and
                   len(md.topics[t].partitions) == a.partitions for t in a.names):
                return
            time.sleep(0.1)
        raise SystemExit("e2e: topics did not appear in metadata")


def cmd_config(a):
    """config/veil.yaml as shipped (audit, DLQ, retention and metrics on),
    pointed at the benchmark's topics, with two of its purposes routed."""
    repo = os.path.join(HERE, "..")
    with open(os.path.join(repo, "config", "veil.yaml")) as f:
        text = f.read()
    pre = a.prefix
    # Veil refuses a key file others may read, and git keeps no mode: an
    # owner-only copy of the dev key.
    key = os.path.join(tempfile.mkdtemp(prefix="veil-bench-key."), "dev-hmac.key")
    shutil.copyfile(os.path.join(repo, "config", "dev-hmac.key"), key)
    os.chmod(key, 0o600)
    edits = [
        ("  bootstrap.servers: 127.0.0.1:9092", f"  bootstrap.servers: {a.bootstrap}"),
        ("url: file://../schemas", f"url: file://{a.registry}"),
        ("hmac_key_file: dev-hmac.key", f"hmac_key_file: {key}"),
        ("group: veil", f"group: {pre}-g\ninstance: bench"),
        ("source: customers", f"source: {pre}.customers"),
        ("analytics: customers.analytics", f"analytics: {pre}.analytics"),
        ("marketing: customers.marketing", f"marketing: {pre}.marketing"),
        ("      support: customers.support\n", ""),
        ("dlq: veil.dlq, audit: veil.audit, ledger: veil.retention, erasure: veil.erasure",
         f"dlq: {pre}.dlq, audit: {pre}.audit, ledger: {pre}.ledger, "
         f"erasure: {pre}.erasure"),
        ("listen: 127.0.0.1:9464", f"listen: 127.0.0.1:{a.metrics_port}"),
    ]
    for old, new in edits:
        if old not in text:
            raise SystemExit(f"e2e: config/veil.yaml changed: {old!r} not found")
        text = text.replace(old, new, 1)
    sys.stdout.write(text)


def templates(registry, n=2000, seed=7):
    """Framed customer values (the demo's generator), reused round robin so
    producing is cheap; keys stay unique per record."""
    schema = demo_produce.load_schema()
    sid = demo_produce.registry_id(registry)
    rng = random.Random(seed)
    return [demo_produce.frame(sid, schema, demo_produce.customer(rng, i)) for i in range(n)]


def cmd_produce(a):
    values = templates(a.registry)
    p = ck.Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True,
                     "linger.ms": 20, "batch.num.messages": 10000,
                     "queue.buffering.max.messages": 500000})
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(a.count):
        while True:
            try:
                p.produce(a.topic, key=b"C-%09d" % (a.key_base + i),
                          value=values[i % len(values)], on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10000 == 0:
            p.poll(0)
    if p.flush(120) != 0 or errors:
        raise SystemExit(f"e2e: producing failed ({len(errors)} errors)")


def committed_total(c, topic, parts):
    tps = c.committed([ck.TopicPartition(topic, p) for p in parts], timeout=30)
    return sum(tp.offset for tp in tps if tp.offset >= 0)


def cmd_throughput(a):
    """Watches the worker group's committed offsets (written inside its
    transactions) from the first commit until all `count` inputs are
    committed; prints records/s over that span."""
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    parts = sorted(admin.list_topics(a.topic, timeout=10).topics[a.topic].partitions)
    # read_uncommitted: OffsetFetch answers at once with what is committed
    # instead of waiting for the open transaction to finish.
    c = ck.Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                     "enable.auto.commit": False,
                     "isolation.level": "read_uncommitted"})
    deadline = time.monotonic() + a.timeout
    t0 = c0 = None
    while True:
        n = committed_total(c, a.topic, parts)
        now = time.monotonic()
        if t0 is None and n > 0:
            t0, c0 = now, n
        if n >= a.count:
            break
        if now > deadline:
            c.close()
            raise SystemExit(f"e2e: only {n} of {a.count} committed in {a.timeout} s")
        time.sleep(0.02)
    c.close()
    span = now - t0
    # 0 when everything came in one observed commit: too few to time.
    rps = (a.count - c0) / span if span > 0 else 0
    print(json.dumps({"rps": round(rps), "seconds": round(span, 3), "first_commit": c0}))


def cmd_latency(a):
    """Produces at a steady rate while reading the output read_committed;
    latency = arrival at the reader - the source record's timestamp, which
    the worker copies onto its outputs."""
    values = templates(a.registry)
    total = int(a.rate * a.seconds)
    lat, stop = [], threading.Event()
    start_wall = time.time()
    c = ck.Consumer({"bootstrap.servers": a.bootstrap, "group.id": f"lat-{os.getpid()}",
                     "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    c.subscribe([a.out])

    def produce():
        p = ck.Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True,
                         "linger.ms": 1})
        t0 = time.monotonic()
        for i in range(total):
            # Pacing a load generator is the point here, not a test wait.
            ahead = t0 + i / a.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            p.produce(a.source, key=b"L-%09d" % i, value=values[i % len(values)])
            if i % 100 == 0:
                p.poll(0)
        p.flush(60)
        stop.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    got = 0
    idle_since = None
    while True:
        msgs = c.consume(1000, 0.1)
        now_ms = time.time() * 1000
        for m in msgs:
            if m.error():
                continue
            got += 1
            ts = m.timestamp()[1]
            if ts / 1000 >= start_wall + a.warmup:
                lat.append(now_ms - ts)
        if got >= total:
            break
        if stop.is_set():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 60:
                break
    c.close()
    t.join(5)
    if not lat:
        raise SystemExit("e2e: no output records arrived")
    lat.sort()

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    print(json.dumps({"records": got, "sent": total, "measured": len(lat),
                      "p50": round(pct(0.50), 1), "p99": round(pct(0.99), 1),
                      "max": round(lat[-1], 1)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("topics")
    t.add_argument("action", choices=["create", "delete"])
    t.add_argument("--partitions", type=int, default=2)
    t.add_argument("names", nargs="+")
    p = sub.add_parser("produce")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--key-base", type=int, default=0)
    p.add_argument("--registry", required=True)
    w = sub.add_parser("throughput")
    w.add_argument("--topic", required=True)
    w.add_argument("--group", required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--timeout", type=float, default=300)
    cf = sub.add_parser("config")
    cf.add_argument("--prefix", required=True)
    cf.add_argument("--registry", required=True)
    cf.add_argument("--metrics-port", type=int, default=9464)
    lt = sub.add_parser("latency")
    lt.add_argument("--source", required=True)
    lt.add_argument("--out", required=True)
    lt.add_argument("--registry", required=True)
    lt.add_argument("--rate", type=float, default=10000)
    lt.add_argument("--seconds", type=float, default=25)
    lt.add_argument("--warmup", type=float, default=3)
    a = ap.parse_args()
    {"topics": cmd_topics, "produce": cmd_produce, "throughput": cmd_throughput,
     "latency": cmd_latency, "config": cmd_config}[a.cmd](a)


if __name__ == "__main__":
    main()
