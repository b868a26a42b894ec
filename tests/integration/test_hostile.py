"""test_hostile.py - hostile input through the whole worker (issue 12, item 4).

One `veil run` on `veil broker` reads a corpus of malformed and adversarial
records mixed with good ones: short and bad-magic frames, unknown schema ids,
Avro with huge or negative lengths, over-long varints, bad union and enum
indexes, booleans that are not 0/1, data nested deeper than the depth limit
through a recursive schema, schemas nested deeper than a plan may be,
invalid UTF-8 in strings, map keys and record keys, hostile framed keys,
outputs larger than message.max.bytes and a malformed record too large for
its own dead letter. Every record lands on every purpose (decodable with its
derived schema by fastavro, an independent reader) or in the DLQ with its
stable `veil.error` code and a detail, never both and never twice; the
worker neither crashes (ASan/UBSan build under `make test`) nor stalls: good
records after the hostile ones arrive and SIGTERM ends it with 0."""
import io
import json
import random
import struct

import fastavro
import pytest

import test_worker
from helpers import VeilBroker, consume_all, wait_for
from sr_double import SchemaRegistryDouble
from test_faults import BIG_MARKER, MAX_BYTES, alive, big_record
from test_worker import PURPOSES, Pipeline, demo_produce, headers, stderr_text, stop

PREFIX = "hostile"

# A flat schema whose bytes are easy to write by hand, on the same route as
# the customers: every field labelled, so every purpose reads some of it.
FLAT = {
    "type": "record", "name": "Flat", "namespace": "veil.hostile",
    "fields": [
        {"name": "id", "type": "string", "pii": "customer_id"},
        {"name": "name", "type": "string", "pii": "name"},
        {"name": "tag", "type": ["null", "string"], "pii": "public"},
        {"name": "items", "type": {"type": "array", "items": "string"}, "pii": "public"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]},
         "pii": "public"},
        {"name": "flag", "type": "boolean", "pii": "public"},
        {"name": "attrs", "type": {"type": "map", "values": "string"}, "pii": "public"},
        {"name": "note", "type": ["null", "string"], "pii": "notes"},
    ],
}

# Data nests as deep as the producer likes through a recursive schema.
NODE = {
    "type": "record", "name": "Node", "namespace": "veil.hostile",
    "fields": [
        {"name": "v", "type": "long", "pii": "public"},
        {"name": "next", "type": ["null", "Node"], "pii": "public"},
    ],
}


def nested_records(depth):
    """A schema text of `depth` records each holding the next (no recursion)."""
    inner = '{"name":"leaf","type":"long","pii":"public"}'
    for i in range(depth):
        inner = (f'{{"name":"f{i}","type":{{"type":"record","name":"R{i}",'
                 f'"fields":[{inner}]}},"pii":"public"}}')
    return ('{"type":"record","name":"Deep","namespace":"veil.hostile","fields":['
            + inner + ']}')


def nested_arrays(depth):
    """A schema text deeper than JSON parsers take (jansson stops at 2048)."""
    t = '"long"'
    for _ in range(depth):
        t = '{"type":"array","items":' + t + '}'
    return ('{"type":"record","name":"Abyss","namespace":"veil.hostile","fields":'
            '[{"name":"a","type":' + t + ',"pii":"public"}]}')


# ---- Avro by hand ------------------------------------------------------------


def varint(n):
    z = (n << 1) ^ (n >> 63)
    z &= (1 << 64) - 1
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def s(b):
    """An Avro string/bytes: length, then the raw bytes (not checked)."""
    b = b.encode() if isinstance(b, str) else b
    return varint(len(b)) + b


def flat(id_=b"F-1", name=b"Ann Example", tag=b"t", items=(b"x", b"y"), kind=1,
         flag=1, attrs=((b"k", b"v"),), note=b"No issues.", raw=None):
    """A Flat body; any part can be replaced by raw bytes through `raw`
    (a dict of field name -> bytes)."""
    raw = raw or {}
    parts = {
        "id": s(id_),
        "name": s(name),
        "tag": varint(0) if tag is None else varint(1) + s(tag),
        "items": (varint(len(items)) + b"".join(s(i) for i in items) if items else b"")
        + varint(0),
        "kind": varint(kind),
        "flag": bytes([flag]),
        "attrs": (varint(len(attrs)) + b"".join(s(k) + s(v) for k, v in attrs)
                  if attrs else b"") + varint(0),
        "note": varint(0) if note is None else varint(1) + s(note),
    }
    parts.update(raw)
    return b"".join(parts[f["name"]] for f in FLAT["fields"])


def node(depth):
    body = bytearray()
    for i in range(depth):
        body += varint(i) + varint(1)
    body += varint(depth) + varint(0)
    return bytes(body)


def framed(sid, body):
    return struct.pack(">bI", 0, sid & 0xFFFFFFFF) + body


# ---- the corpus --------------------------------------------------------------

GOOD = "good"  # lands on every purpose
BAD_UTF8 = {"bad-utf8"}


def corpus(ids, customer_schema, rng):
    """[(name, key, value, expected)] where expected is GOOD or the set of
    acceptable veil.error codes. Good records sit between the hostile ones
    and close the list, so a stall shows as a good record missing."""
    cust, fl, nd = ids["customers"], ids["flat"], ids["node"]
    n = [0]

    def good_customer():
        n[0] += 1
        c = demo_produce.customer(rng, 5000 + n[0])
        return (f"good-{n[0]}", c["customer_id"].encode(),
                demo_produce.frame(cust, customer_schema, c), GOOD)

    c0 = demo_produce.customer(rng, 4000)
    body0 = demo_produce.frame(cust, customer_schema, c0)[5:]
    long_bad = bytearray(b"\x01" + body0 * 20)  # bad magic, ~2x MAX_BYTES
    bad = [
        ("empty", b"K-empty", b"", {"too-short"}),
        ("one-byte", b"K-one", b"\x00", {"too-short"}),
        ("four-bytes", b"K-four", b"\x00\x00\x00\x00", {"too-short"}),
        ("bad-magic", b"K-magic", b"\x07" + framed(cust, body0)[1:], {"bad-magic"}),
        ("bad-magic-ascii", b"K-text", b'{"email": "x"}', {"bad-magic"}),
        ("unknown-schema", b"K-unknown", framed(424242, body0), {"unknown-schema"}),
        ("schema-id-zero", b"K-zero", framed(0, body0), {"unknown-schema"}),
        ("schema-id-negative", b"K-neg", framed(-1, body0), {"unknown-schema"}),
        ("header-only", b"K-header", framed(cust, b""), {"truncated"}),
        ("truncated", b"K-trunc", framed(cust, body0[:len(body0) // 3]), {"truncated"}),
        ("trailing-bytes", b"K-trail", framed(cust, body0 + b"\x00\x00"), {"trailing-bytes"}),
        ("huge-string-length", b"K-huge",
         framed(cust, varint(1 << 60) + body0), {"bad-length", "truncated"}),
        ("max-long-length", b"K-max",
         framed(cust, varint((1 << 63) - 1) + body0), {"bad-length", "truncated"}),
        ("negative-length", b"K-negl", framed(cust, varint(-5) + body0), {"bad-length"}),
        ("overlong-varint", b"K-varint",
         framed(cust, b"\xff" * 11 + body0), {"bad-varint"}),
        ("unterminated-varint", b"K-varint2", framed(cust, b"\x80" * 8), {"truncated",
                                                                          "bad-varint"}),
        ("flat-bad-union", b"K-u1", framed(fl, flat(raw={"tag": varint(5) + s(b"t")})),
         {"bad-union-index"}),
        ("flat-negative-union", b"K-u2", framed(fl, flat(raw={"tag": varint(-1)})),
         {"bad-union-index"}),
        ("flat-huge-union", b"K-u3", framed(fl, flat(raw={"note": varint(1 << 40)})),
         {"bad-union-index", "bad-varint"}),
        ("flat-bad-enum", b"K-enum", framed(fl, flat(kind=7)), {"bad-value"}),
        ("flat-negative-enum", b"K-enum2", framed(fl, flat(kind=-1)), {"bad-value"}),
        ("flat-bool-2", b"K-bool", framed(fl, flat(flag=2)), {"bad-value"}),
        ("flat-huge-array", b"K-arr", framed(fl, flat(raw={"items": varint(1 << 40)})),
         {"bad-length", "truncated"}),
        ("flat-negative-block-bad-size", b"K-arr2",
         framed(fl, flat(raw={"items": varint(-2) + varint(1 << 50) + s(b"a") + s(b"b")
                              + varint(0)})), {"bad-length", "truncated"}),
        ("flat-huge-map", b"K-map", framed(fl, flat(raw={"attrs": varint(1 << 33)})),
         {"bad-length", "truncated"}),
        ("flat-huge-name", b"K-name", framed(fl, flat(raw={"name": varint(1 << 31)})),
         {"bad-length", "truncated"}),
        ("node-too-deep", b"K-deep", framed(nd, node(1000)), {"too-deep"}),
        ("node-deeper", b"K-deeper", framed(nd, node(1500)), {"too-deep"}),
        ("deep-schema", b"K-dschema", framed(ids["deep"], varint(3)), {"plan-failed"}),
        ("abyss-schema", b"K-abyss", framed(ids["abyss"], varint(0)),
         {"plan-failed", "unknown-schema"}),
        ("framed-key-unknown", framed(777777, b"\x02x"), framed(cust, body0),
         {"unknown-schema"}),
        ("framed-key-truncated", framed(cust, b"\x08ab"), framed(cust, body0),
         {"truncated", "plan-failed"}),
        ("oversize-malformed", b"K-long", bytes(long_bad), {"bad-magic"}),
    ]
    good_flat = [
        ("flat-good", b"K-fg", framed(fl, flat()), GOOD),
        # Avro lets a writer give a block's byte size with a negative count.
        ("flat-negative-block", b"K-fnb",
         framed(fl, flat(raw={"items": varint(-2) + varint(4) + s(b"a") + s(b"b")
                              + varint(0)})), GOOD),
        ("flat-empty-everything", b"K-fe",
         framed(fl, flat(id_=b"", name=b"", tag=None, items=(), attrs=(), note=None)), GOOD),
        ("node-shallow", b"K-shallow", framed(nd, node(20)), GOOD),
    ]
    # Avro strings are UTF-8; these are not.
    utf8 = [
        ("utf8-id", b"K-u8id", framed(fl, flat(id_=b"F-\xff\xfe")), BAD_UTF8),
        ("utf8-name", b"K-u8name", framed(fl, flat(name=b"Ann \xc3\x28")), BAD_UTF8),
        ("utf8-note", b"K-u8note",
         framed(fl, flat(note=b"SSN 123-45-6789 \xe2\x82")), BAD_UTF8),
        ("utf8-surrogate", b"K-u8tag", framed(fl, flat(tag=b"\xed\xa0\x80")), BAD_UTF8),
        ("utf8-overlong", b"K-u8ovl", framed(fl, flat(items=(b"\xc0\xaf",))), BAD_UTF8),
        ("utf8-map-key", b"K-u8map", framed(fl, flat(attrs=((b"\xff", b"v"),))), BAD_UTF8),
        # A plain record key is bytes to Kafka, not an Avro string: it is
        # transformed as bytes (hash, keep) and the record goes through.
        ("utf8-record-key", b"K-\xff\xfe", framed(fl, flat()), GOOD),
    ]
    out = []
    rest = bad + good_flat + utf8
    for item in rest:
        out.append(good_customer())
        out.append(item)
    out.append(good_customer())
    out.append(good_customer())
    return out


@pytest.fixture(scope="module")
def hostile_run(veil, tmp_path_factory):
    """The corpus through one worker on `veil broker`, on one partition (so
    "after" means after). Returns what the verifier needs."""
    reg = SchemaRegistryDouble()
    with open(demo_produce.SCHEMA_PATH) as f:
        ids = {"customers": reg.register("customers-value", json.dumps(json.load(f)))}
    ids["flat"] = reg.register("flat-value", json.dumps(FLAT))
    ids["node"] = reg.register("node-value", json.dumps(NODE))
    ids["deep"] = reg.register("deep-value", nested_records(80))
    ids["abyss"] = reg.register("abyss-value", nested_arrays(5000))

    topics = [f"{PREFIX}.customers:1", f"{PREFIX}.dlq:2", f"{PREFIX}.audit:1"]
    topics += [f"{PREFIX}.customers.{p}:1" for p in PURPOSES]
    broker = VeilBroker(veil, *[a for t in topics for a in ("--topic", t)])
    broker.start()
    mp = pytest.MonkeyPatch()
    mp.setattr(test_worker, "unique", lambda _name: PREFIX)
    mp.setattr(test_worker, "create_topic", lambda *_a, **_kw: None)
    try:
        pl = Pipeline(broker.bootstrap, str(tmp_path_factory.mktemp("hostile")), partitions=1,
                      registry_url=reg.url, extra_kafka={"message.max.bytes": MAX_BYTES},
                      edits=[('replace: "[{detector}]"', f'replace: "{BIG_MARKER}"')])
        items = corpus(ids, pl.schema, random.Random(12))
        # An output larger than message.max.bytes (support's markers are long).
        k, v = big_record(pl)
        items.insert(len(items) // 2, ("oversize-output", k,
                                       framed(ids["customers"], v[5:]), {"too-large"}))
        where = pl.produce([(k, v) for _, k, v, _ in items])
        at = {i: w for w, i in where.items()}
        w = pl.start()
        try:
            last = f"{pl.source}/{at[len(items) - 1][0]}/{at[len(items) - 1][1]}"
            for t in pl.topics.values():
                wait_for(lambda t=t: alive(w) and last in
                         {headers(m)["veil.source"] for m in consume_all(broker.bootstrap, t)},
                         timeout=120, what=f"the last good record on {t}")
            # One partition, in order: once the last record is out, every
            # earlier one is on the purposes or in the DLQ (or lost, which
            # the test then names).
        except BaseException:
            print(stderr_text(w)[-6000:])
            stop(w)
            raise
        rc = stop(w)
        yield {"pl": pl, "reg": reg, "items": items, "at": at, "rc": rc,
               "stderr": stderr_text(w),
               "out": {p: consume_all(broker.bootstrap, t) for p, t in pl.topics.items()},
               "dlq": consume_all(broker.bootstrap, pl.dlq)}
    finally:
        mp.undo()
        broker.stop()
        reg.stop()


def decode(reg, value):
    magic, sid = struct.unpack(">bI", value[:5])
    assert magic == 0
    schema = fastavro.parse_schema(json.loads(reg.by_id[sid]))
    buf = io.BytesIO(value[5:])
    rec = fastavro.schemaless_reader(buf, schema)
    assert buf.read() == b"", "bytes left after the record"
    return rec


def test_every_hostile_record_lands_once_with_its_code(hostile_run):
    r = hostile_run
    assert r["rc"] == 0, r["stderr"][-3000:]
    src = {f"{r['pl'].source}/{p}/{o}": i for i, (p, o) in r["at"].items()}
    on = {p: {} for p in PURPOSES}
    for p, msgs in r["out"].items():
        for m in msgs:
            i = src[headers(m)["veil.source"]]
            on[p][i] = on[p].get(i, 0) + 1
            name = r["items"][i][0]
            assert m.value() is not None, f"{name}: a tombstone on {p}"
            try:
                decode(r["reg"], m.value())
            except Exception as e:  # noqa: BLE001
                sid = struct.unpack(">I", m.value()[1:5])[0]
                raise AssertionError(f"{name}: the output on {p} does not decode "
                                     f"with its derived schema: {type(e).__name__} {e}; "
                                     f"schema {r['reg'].by_id.get(sid, '?')[:1500]}")
    dead = {}
    for m in r["dlq"]:
        h = headers(m)
        i = src[h["veil.source"]]
        assert i not in dead, f"{r['items'][i][0]}: dead-lettered twice"
        dead[i] = h
        assert h.get("veil.error.detail"), f"{r['items'][i][0]}: no detail"
    problems = []
    for i, (name, _k, _v, want) in enumerate(r["items"]):
        counts = [on[p].get(i, 0) for p in PURPOSES]
        if want == GOOD:
            if i in dead:
                problems.append(f"{name}: dead-lettered as {dead[i]['veil.error']} "
                                f"({dead[i].get('veil.error.detail')})")
            elif counts != [1] * len(PURPOSES):
                problems.append(f"{name}: on the purposes {counts} times")
        else:
            if any(counts):
                problems.append(f"{name}: reached purposes {counts}")
            if i not in dead:
                problems.append(f"{name}: not in the DLQ")
            elif dead[i]["veil.error"] not in want:
                problems.append(f"{name}: {dead[i]['veil.error']} "
                                f"({dead[i].get('veil.error.detail')}), want {sorted(want)}")
    assert not problems, "\n".join(problems)


def test_a_dead_letter_too_large_for_its_payload_keeps_its_position(hostile_run):
    r = hostile_run
    i = next(i for i, it in enumerate(r["items"]) if it[0] == "oversize-malformed")
    p, o = r["at"][i]
    h = [headers(m) for m in r["dlq"]
         if headers(m)["veil.source"] == f"{r['pl'].source}/{p}/{o}"]
    assert len(h) == 1
    assert "payload omitted" in h[0]["veil.error.detail"]
