"""demo_produce.py - Veil's own generator of realistic sample customers
(schemas/customers-value.avsc), produced in Confluent framing.

Framing is written here (0x00, 4-byte big-endian schema id, Avro binary from
fastavro's schemaless_writer) because the demo's registry is a file://
directory, which Confluent's AvroSerializer cannot talk to. The schema id is
the one Veil's file registry assigned to subject `customers-value`: read from
DIR/.veil-registry.json (run `veil check -c CONFIG` first; it asks the
registry for the latest version, which assigns the id on first sight).

Usage: demo_produce.py --bootstrap HOST:PORT --registry DIR [--topic customers]
       [--count 20] [--seed 7] [--malformed] [--tombstone]
       demo_produce.py show --bootstrap HOST:PORT --registry DIR --config FILE
The first form prints one line per produced record (key and kind). `show`
prints the demo's side-by-side view: one source record, what each purpose
received for it, the DLQ entries and the tombstones (the data is synthetic).
Also importable: customer(), frame(), registry_id(), produce().
"""
import argparse
import datetime
import decimal
import io
import json
import os
import random
import struct
import sys
import uuid

import fastavro

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_PATH = os.path.join(HERE, "..", "schemas", "customers-value.avsc")

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
         "Margaret", "Dennis", "Radia", "Linus", "Sophie", "John", "Katherine"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen",
        "Thompson", "Hamilton", "Ritchie", "Perlman", "Torvalds", "Wilson", "Backus"]
CITIES = [("Lyon", "FR", "690"), ("Berlin", "DE", "101"), ("Austin", "US", "787"),
          ("Leeds", "GB", "LS1"), ("Porto", "PT", "400"), ("Osaka", "JP", "530")]
STREETS = ["Main St", "Rue de la Paix", "Hauptstrasse", "Elm Road", "Rua Augusta"]
TIERS = ["bronze", "silver", "gold", "platinum"]
NOTES = [
    "Called about invoice; asked to use {email} from now on.",
    "Customer read card {card} over the phone, do not store!",
    "Verified identity with SSN {ssn}.",
    "Prefers SMS at {phone}.",
    "No issues.",
]


def load_schema(path=SCHEMA_PATH):
    with open(path) as f:
        return fastavro.parse_schema(json.load(f))


def luhn_card(rng):
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i:i + 4] for i in range(0, 16, 4))


def customer(rng, i):
    """One realistic customer (a dict fastavro can write)."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{first}.{last}{i}@example.com".lower()
    phone = f"+1 512 555 {rng.randrange(10000):04d}"
    ssn = f"{rng.randrange(100, 900):03d}-{rng.randrange(10, 99):02d}-{rng.randrange(1000, 9999):04d}"
    card = luhn_card(rng)
    city, country, zip_prefix = rng.choice(CITIES)
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc) + \
        datetime.timedelta(minutes=rng.randrange(500000))
    note = rng.choice(NOTES).format(email=email, card=card, ssn=ssn, phone=phone)
    return {
        "customer_id": f"C{100000 + i}",
        "email": email,
        "phone": phone if rng.random() < 0.8 else None,
        "full_name": f"{first} {last}",
        "ssn": ssn if rng.random() < 0.6 else None,
        "card_number": card if rng.random() < 0.7 else None,
        "birth_date": datetime.date(1950 + rng.randrange(55), 1 + rng.randrange(12),
                                    1 + rng.randrange(28)),
        "created_at": now,
        "updated_at": now + datetime.timedelta(days=rng.randrange(100)),
        "status": rng.choice(["ACTIVE", "ACTIVE", "ACTIVE", "SUSPENDED", "CLOSED"]),
        "tier": rng.choice(TIERS),
        "loyalty_points": rng.randrange(50000),
        "lifetime_value": round(rng.random() * 20000, 2),
        "credit_score": rng.randrange(300, 850) if rng.random() < 0.7 else None,
        "marketing_opt_in": rng.random() < 0.5,
        "account_uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "balance": decimal.Decimal(rng.randrange(-100000, 10000000)) / 100,
        "address": {"street": f"{rng.randrange(1, 200)} {rng.choice(STREETS)}",
                    "city": city, "zip": f"{zip_prefix}{rng.randrange(100):02d}",
                    "country": country},
        "contacts": [{"kind": "work", "email": f"{first.lower()}@corp.example",
                      "phone": None}] if rng.random() < 0.5 else [],
        "attributes": {"segment": rng.choice(["smb", "enterprise", "consumer"])},
        "device_fingerprint": bytes(rng.getrandbits(8) for _ in range(16)),
        "notes": note,
        "last_login_ip": f"203.0.113.{rng.randrange(1, 255)}",
        "referrer": rng.choice([None, "newsletter", "partner-42"]),
    }


def registry_id(registry_dir, subject="customers-value"):
    """The id Veil's file registry gave to the latest schema of subject."""
    with open(os.path.join(registry_dir, ".veil-registry.json")) as f:
        manifest = json.load(f)
    ids = [s["id"] for s in manifest["schemas"] if s["subject"] == subject]
    if not ids:
        raise SystemExit(f"demo_produce: subject {subject} not in {registry_dir}; "
                         "run `veil check -c CONFIG` first")
    return max(ids)


def frame(schema_id, parsed, record):
    """Confluent framing: magic 0, big-endian id, Avro binary."""
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(buf, parsed, record)
    return buf.getvalue()


def produce(bootstrap, topic, messages, timeout=30):
    """Produces (key bytes|None, value bytes|None) pairs; fails on any delivery error."""
    import confluent_kafka as ck
    p = ck.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for key, value in messages:
        p.produce(topic, key=key, value=value, on_delivery=on_delivery)
    if p.flush(timeout) != 0 or errors:
        raise SystemExit(f"demo_produce: delivery failed: {errors}")


def _consume(bootstrap, topic, timeout=15):
    """Every message of a one-partition topic, from the start to its end."""
    import time
    import confluent_kafka as ck
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "demo-show",
                     "enable.partition.eof": True, "enable.auto.commit": False,
                     "isolation.level": "read_committed"})
    c.assign([ck.TopicPartition(topic, 0, ck.OFFSET_BEGINNING)])
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == ck.KafkaError._PARTITION_EOF:
                    break
                raise SystemExit(f"demo: reading {topic}: {m.error()}")
            out.append(m)
    finally:
        c.close()
    return out


def _decode(registry_dir, value):
    magic, sid = struct.unpack(">bI", value[:5])
    with open(os.path.join(registry_dir, ".veil-registry.json")) as f:
        manifest = json.load(f)
    text = next(s["schema"] for s in manifest["schemas"] if s["id"] == sid)
    schema = fastavro.parse_schema(json.loads(text))
    return sid, fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)


def _fmt(v):
    if isinstance(v, bytes):
        return v.hex()[:16] + ("…" if len(v) > 8 else "")
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _headers(m):
    return {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}


def show(bootstrap, registry_dir, purposes, source="customers", dlq="veil.dlq"):
    """Prints the side-by-side view. purposes: {name: topic}."""
    src = _consume(bootstrap, source)
    good = [m for m in src if m.value() and m.value()[:1] == b"\x00"]
    if not good:
        raise SystemExit("demo: nothing on the source topic")
    pick = good[min(1, len(good) - 1)]
    where = f"{source}/{pick.partition()}/{pick.offset()}"
    sid, rec = _decode(registry_dir, pick.value())
    fields = list(rec.keys())
    outs = {}
    for name, topic in purposes.items():
        for m in _consume(bootstrap, topic):
            if m.value() is not None and _headers(m).get("veil.source") == where:
                outs[name] = (m, _decode(registry_dir, m.value()))
    print(f"\n=== one source record ({where}, schema id {sid}, key {pick.key().decode()})"
          f" and what each purpose received ===")
    names = list(purposes)
    width = 18
    print(f"{'field':<{width}} | {'source':<40} | " +
          " | ".join(f"{n:<28}" for n in names))
    print("-" * (width + 46 + 31 * len(names)))
    for f in fields:
        row = [_fmt(rec[f])[:40]]
        for n in names:
            if n not in outs:
                row.append("(nothing)")
                continue
            v = outs[n][1][1]
            row.append(_fmt(v[f])[:28] if f in v else "-- dropped --")
        print(f"{f:<{width}} | {row[0]:<40} | " + " | ".join(f"{x:<28}" for x in row[1:]))
    print(f"{'(key)':<{width}} | {pick.key().decode():<40} | " +
          " | ".join(f"{(outs[n][0].key() or b'').decode()[:28]:<28}" if n in outs else "(nothing)"
                     for n in names))
    for n in names:
        if n in outs:
            h = _headers(outs[n][0])
            print(f"  {n}: schema id {outs[n][1][0]}, headers veil.license={h.get('veil.license')}"
                  f" veil.policy={h.get('veil.policy', '')[:12]}… veil.source={h.get('veil.source')}")
    print("\n=== DLQ (payload AES-GCM encrypted with the Veil key) ===")
    for m in _consume(bootstrap, dlq):
        h = _headers(m)
        print(f"  {h.get('veil.source')}: veil.error={h.get('veil.error')}"
              f"  detail=\"{h.get('veil.error.detail')}\"  payload={h.get('veil.dlq.payload')}"
              f" ({len(m.value() or b'')} bytes)")
    print("\n=== tombstones (upstream deletes; retention and erasure counted) ===")
    for n, topic in purposes.items():
        counts = {}
        for m in _consume(bootstrap, topic):
            if m.value() is None:
                h = _headers(m)
                reason = h.get("veil.reason")
                if reason == "upstream-delete":
                    print(f"  {topic}: key {(m.key() or b'').decode()}  veil.reason={reason}"
                          f"  from {h.get('veil.source')}")
                else:
                    counts[reason] = counts.get(reason, 0) + 1
        for reason, k in sorted(counts.items()):
            print(f"  {topic}: {k} tombstone(s) veil.reason={reason}")


def wait_retention(bootstrap, topic, timeout):
    """Waits until every key that still has a value on the purpose topic
    got its retention tombstone; prints how many."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        live, expired = set(), set()
        for m in _consume(bootstrap, topic):
            reason = _headers(m).get("veil.reason")
            if m.value() is not None:
                live.add(m.key())
            elif reason == "upstream-delete":
                live.discard(m.key())
            elif reason == "retention":
                expired.add(m.key())
        if live and live <= expired:
            print(f"demo: {len(expired)} retention tombstones on {topic}")
            return 0
        if time.monotonic() >= deadline:
            print(f"demo: {len(live - expired)} keys of {topic} still held", file=sys.stderr)
            return 1
        time.sleep(0.5)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "show":
        sp = argparse.ArgumentParser(prog="demo_produce.py show")
        sp.add_argument("--bootstrap", required=True)
        sp.add_argument("--registry", required=True)
        sp.add_argument("--purpose", action="append", default=[],
                        help="NAME=TOPIC, once per purpose")
        a = sp.parse_args(sys.argv[2:])
        show(a.bootstrap, a.registry, dict(p.split("=", 1) for p in a.purpose))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "wait-retention":
        sp = argparse.ArgumentParser(prog="demo_produce.py wait-retention")
        sp.add_argument("--bootstrap", required=True)
        sp.add_argument("--topic", required=True)
        sp.add_argument("--timeout", type=float, default=30)
        a = sp.parse_args(sys.argv[2:])
        return wait_retention(a.bootstrap, a.topic, a.timeout)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--registry", required=True, help="the file:// registry directory")
    ap.add_argument("--topic", default="customers")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--malformed", action="store_true",
                    help="also one record with a bad magic byte and one truncated")
    ap.add_argument("--tombstone", action="store_true",
                    help="also an upstream delete of the first customer")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    parsed = load_schema()
    sid = registry_id(args.registry)
    msgs = []
    for i in range(args.count):
        c = customer(rng, i)
        msgs.append((c["customer_id"].encode(), frame(sid, parsed, c)))
        print(f"customer {c['customer_id']}")
    if args.malformed:
        good = frame(sid, parsed, customer(rng, args.count))
        msgs.append((b"C-bad-magic", b"\x07" + good[1:]))
        print("malformed C-bad-magic (bad magic byte)")
        msgs.append((b"C-truncated", good[:len(good) // 2]))
        print("malformed C-truncated (body cut in half)")
    if args.tombstone and args.count:
        msgs.append((f"C{100000}".encode(), None))
        print(f"tombstone C{100000}")
    produce(args.bootstrap, args.topic, msgs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
