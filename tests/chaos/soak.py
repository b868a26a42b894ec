"""soak.py - the soak (`make soak`, not in CI): one `veil run` worker on a
real Kafka for SOAK_MINUTES (30) at a steady SOAK_RATE (500 records/s) with
the support purpose's retention short (60 s) so tombstones keep turning
over; the worker's RSS and open descriptors are sampled every 10 s and the
least-squares slope after the warm-up (first 20 %) is printed as
    bench: soak_rss_slope_kb_per_min N kB/min
    bench: soak_fds_slope_per_min N fds/min
Samples go to soak.csv in the work folder. Never asserts on the figures.

    soak.py --bootstrap HOST:PORT --veil BIN [--minutes M] [--rate R] [--keys K] [--tmp DIR]

Keys cycle over SOAK_KEYS (--keys, default 20000) subjects: the worker's
retention state holds one entry per live key and purpose (its deadline),
so with ever new keys it grows by design, for as long as the longest
retention; a bounded key space lets it level off, and a slope that stays is
a leak. SOAK_KEYS=0 gives every record a key of its own.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope(points):
    """Least-squares slope of [(minute, value)]."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default=os.environ.get("VEIL_KAFKA_BOOTSTRAP"))
    ap.add_argument("--veil", default=os.environ.get("VEIL"))
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 30))
    ap.add_argument("--rate", type=int, default=int(os.environ.get("SOAK_RATE") or 500))
    ap.add_argument("--keys", type=int, default=int(os.environ.get("SOAK_KEYS") or 20000))
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    if not args.bootstrap or not args.veil:
        ap.error("--bootstrap and --veil (or VEIL_KAFKA_BOOTSTRAP and VEIL) are required")
    args.tmp = args.tmp or tempfile.mkdtemp(prefix="veil-soak.")
    os.makedirs(args.tmp, exist_ok=True)
    args.seed = random.SystemRandom().randrange(1, 10**6)
    run = chaos.Run(args)
    run.create_topics()
    reg = chaos.SchemaRegistryDouble()
    with open(chaos.demo_produce.SCHEMA_PATH) as f:
        sid = reg.register(f"{run.source}-value", json.dumps(json.load(f)))
    run.write_configs(reg.url, 60)
    duration = args.minutes * 60
    count = int(args.rate * duration)
    prod = chaos.Producer(run, random.Random(args.seed), count, duration, sid)
    if args.keys > 0:
        prod.key = lambda i: b"C-%09d" % (i % args.keys)
    w = chaos.Worker(run, "w1")
    w.start()
    prod.thread.start()
    t0 = time.monotonic()
    samples = []
    with open(os.path.join(args.tmp, "soak.csv"), "w") as csv:
        csv.write("seconds,rss_kb,fds\n")
        while time.monotonic() - t0 < duration:
            if not w.alive():
                chaos.log(f"the worker exited ({w.proc.returncode}):\n{w.tail()}")
                return 1
            t = time.monotonic() - t0
            r, n = rss_kb(w.proc.pid), fds(w.proc.pid)
            samples.append((t / 60.0, r, n))
            csv.write(f"{t:.0f},{r},{n}\n")
            csv.flush()
            chaos.log(f"{t:.0f} s: rss {r} kB, {n} fds, {len(prod.where)} produced")
            time.sleep(10)
    rc = w.stop()
    reg.stop()
    warm = [s for s in samples if s[0] >= args.minutes * 0.2]
    print(f"bench: soak_rss_slope_kb_per_min {slope([(m, r) for m, r, _ in warm]):.1f} kB/min")
    print(f"bench: soak_fd_slope_per_min {slope([(m, n) for m, _, n in warm]):.2f} fds/min")
    print(f"bench: soak_rss_end_kb {samples[-1][1] if samples else 0} kB")
    print(f"bench: soak_records {len(prod.where)} records ({args.rate}/s, "
          f"{args.minutes:g} min, keys {args.keys or 'unique'})")
    chaos.log(f"worker exit {rc}; samples in {args.tmp}/soak.csv")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
