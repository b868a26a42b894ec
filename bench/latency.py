"""latency.py - end-to-end latency at a steady rate, for bench/e2e.py.

A paced producer (its own process, so the reader's work never delays a
send) stamps each record with the wall-clock time it sent it: the record's
CreateTime timestamp, which Veil and bench/copy.c both keep on what they
write. A read_committed reader of one output topic takes, per record,
arrival time - stamp: the record's wait in the producer, the pipeline's
batch and transaction, and the broker, as an application reading the
purpose topic sees it. Prints only counts and times.

    latency.py produce --bootstrap B --topic T --registry DIR --rate R --seconds S
"""
import argparse
import json
import os
import subprocess
import sys
import time

import confluent_kafka as ck

HERE = os.path.dirname(os.path.abspath(__file__))


def paced_produce(bootstrap, topic, values, rate, seconds):
    """Sends rate*seconds records on a fixed schedule: every millisecond,
    whatever the schedule says is due (never more than a millisecond's
    worth late unless the machine stalls us)."""
    p = ck.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                     "linger.ms": 1, "queue.buffering.max.messages": 1000000})
    total = int(rate * seconds)
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    t0, i = time.monotonic(), 0
    # The schedule's start (wall clock, ms), for the reader's warm-up.
    print(f"start {time.time() * 1000:.0f}", flush=True)
    while i < total:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        while i < due:
            p.produce(topic, key=b"L-%09d" % i, value=values[i % len(values)],
                      timestamp=int(time.time() * 1000), on_delivery=cb)
            i += 1
        p.poll(0)
        # Pacing a load generator is the point here, not a wait in a test.
        time.sleep(0.001)
    if p.flush(120) != 0 or errors:
        raise SystemExit(f"latency: producing failed ({len(errors)} errors)")


def measure(bootstrap, source, out, registry, rate, seconds, warmup, tail=60):
    """Starts the paced producer on `source`, reads `out` read_committed;
    returns percentiles over the records sent after the first `warmup`
    seconds of the schedule."""
    total = int(rate * seconds)
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{os.getpid()}",
                     "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    c.subscribe([out])
    # The reader's first assignment before the first send.
    deadline = time.monotonic() + 30
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.1)
    prod = subprocess.Popen([sys.executable, os.path.abspath(__file__), "produce",
                             "--bootstrap", bootstrap, "--topic", source,
                             "--registry", registry, "--rate", str(rate),
                             "--seconds", str(seconds)], stdout=subprocess.PIPE)
    lat, got, done_at = [], 0, None
    try:
        while got < total:
            msgs = c.consume(1000, 0.05)
            now_ms = time.time() * 1000
            for m in msgs:
                if m.error():
                    continue
                got += 1
                ts = m.timestamp()[1]
                lat.append((ts, now_ms - ts))
            if done_at is None and prod.poll() is not None:
                if prod.returncode != 0:
                    raise SystemExit("latency: the producer failed")
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at > tail:
                break
    finally:
        c.close()
        if prod.poll() is None:
            prod.terminate()
        first = prod.communicate()[0].split()
    # The first `warmup` seconds of the schedule are left out.
    start_ms = float(first[1]) if len(first) == 2 else 0
    lat = sorted(d for ts, d in lat if ts >= start_ms + warmup * 1000)
    if not lat:
        raise SystemExit("latency: no output records arrived")

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    return {"records": got, "sent": total, "measured": len(lat),
            "p50": round(pct(0.50), 1), "p99": round(pct(0.99), 1),
            "max": round(lat[-1], 1)}


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--registry", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    a = ap.parse_args()
    sys.path.insert(0, HERE)
    import e2e  # noqa: E402  (the same record values as the throughput runs)
    paced_produce(a.bootstrap, a.topic, e2e.templates(a.registry), a.rate, a.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
