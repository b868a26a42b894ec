"""test_report.py - `veil report` (issue 13): governance figures summed from
the audit topic and the DLQ's headers equal what the test produced against
`veil broker` (records per purpose, transforms, unclassified drops, consent
drops, tombstones by reason, dead letters by code, licences); --since
keeps only the recent window; the text table names each purpose; errors
exit 2. Also: audit events tell an unclassified drop from a policy drop."""
import collections
import datetime
import hashlib
import hmac
import json
import math
import os
import random
import subprocess
import time

import confluent_kafka as ck
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

import test_worker
from helpers import VeilBroker, consume_all, wait_for
from sr_double import SchemaRegistryDouble
from test_guard import customer_schema_text, mock_create_topic
from test_worker import HMAC_KEY, Pipeline, demo_produce, headers, stderr_text, stop

SUPPORT_RETENTION_S = 3
N = 10                     # customers K-0..K-9; even ones opt in to marketing
ERASED = "K-4"
DELETED = "K-2"            # deleted upstream
LEAKY = (1, 3)             # customers with an e-mail in a public field
PLANTED = "call me at jane.roe@example.org please"


@pytest.fixture(scope="module")
def broker(veil):
    b = VeilBroker(veil)
    bootstrap = b.start()
    saved = test_worker.create_topic
    test_worker.create_topic = mock_create_topic
    yield bootstrap
    test_worker.create_topic = saved
    b.stop()


def veil_cmd(*args, timeout=120):
    return subprocess.run([os.environ["VEIL"], *args], capture_output=True,
                          text=True, timeout=timeout,
                          env=dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY))


def report(pl, *args):
    r = veil_cmd("report", "-c", pl.config, "--format", "json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def frame(pl, rng, i, cid, **over):
    c = demo_produce.customer(rng, i)
    c["customer_id"] = cid
    c.update(over)
    return cid.encode(), demo_produce.frame(1, pl.schema, c)


def tombstones_by_reason(broker, topic):
    return collections.Counter(headers(m).get("veil.reason")
                               for m in consume_all(broker, topic) if m.value() is None)


@pytest.fixture(scope="module")
def produced(broker, tmp_path_factory):
    """Phase 1: ten customers (odd ones refuse marketing), K-0 withdrawing
    consent, two records of a schema `accept:` rejects, two that are not
    Avro, one truncated, K-2 deleted upstream; support keeps data 3 s; then
    K-4 is erased. Phase 2, seconds later: three more customers."""
    intruder = json.loads(customer_schema_text())
    intruder["namespace"] = "com.example.intruder"
    reg = SchemaRegistryDouble()
    root = str(tmp_path_factory.mktemp("report"))
    try:
        assert reg.register("customers-value", customer_schema_text()) == 1
        assert reg.register("intruder-value", json.dumps(intruder)) == 2
        pl = Pipeline(broker, root, partitions=1, registry_url=reg.url, edits=[
            ("    key_class: customer_id\n",
             "    key_class: customer_id\n"
             "    accept: { records: [com.example.crm.Customer] }\n"),
            ("    license: { id: LIC-MKT-2, valid_until: 2035-06-30 }\n",
             "    license: { id: LIC-MKT-2, valid_until: 2035-06-30 }\n"
             "    requires: { field: marketing_opt_in, equals: true }\n"),
            ("    license: { id: LIC-ANALYTICS-7, valid_until: 2035-12-31 }\n",
             "    license: { id: LIC-ANALYTICS-7, valid_until: 2035-12-31 }\n"
             "    guard: { on_leak: redact }\n"),
            ("    retention: 12h\n", f"    retention: {SUPPORT_RETENTION_S}s\n"),
            # referrer loses its label: an unclassified drop everywhere.
            ("      referrer: internal\n", "")])
        pl.ledger, pl.erasure = f"{pl.prefix}.retention", f"{pl.prefix}.erasure"
        for t in (pl.ledger, pl.erasure):
            mock_create_topic(broker, t)
        with open(pl.config) as f:
            text = f.read()
        text = text.replace("ledger: veil.retention, erasure: veil.erasure",
                            f"ledger: {pl.ledger}, erasure: {pl.erasure}")
        with open(pl.config, "w") as f:
            f.write(text)

        rng = random.Random(41)
        # An e-mail typed into `tier` (labelled public) of two records: a
        # leak for analytics, whose licence gets e-mails only hashed.
        msgs = [frame(pl, rng, i, f"K-{i}", marketing_opt_in=(i % 2 == 0),
                      **({"tier": PLANTED} if i in LEAKY else {}))
                for i in range(N)]
        msgs.append(frame(pl, rng, N, "K-0", marketing_opt_in=False))
        for i in range(2):
            c = demo_produce.customer(rng, 20 + i)
            msgs.append((f"X-{i}".encode(), demo_produce.frame(2, pl.schema, c)))
        msgs += [(b"B-0", b"\x07not avro"), (b"B-1", b"\x07not avro either")]
        msgs.append((b"T-0", frame(pl, rng, 30, "T-0")[1][:9]))
        msgs.append((DELETED.encode(), None))
        pl.produce(msgs)
        support = pl.topics["support"]

        def phase1_done():
            # Every key support held (all but the deleted one) expires.
            return (len(consume_all(broker, pl.dlq)) >= 5 and
                    tombstones_by_reason(broker, support)["retention"] >= N - 1)

        def erased():
            return all(tombstones_by_reason(broker, t)["erasure"] == 1
                       for t in pl.topics.values())

        def phase2_done():
            return all(sum(1 for m in consume_all(broker, pl.topics[p])
                           if m.value() is not None) >= want
                       for p, want in (("analytics", N + 1 + 3),
                                       ("marketing", N // 2 + 3)))
        # One worker throughout: the mock cluster keeps no transactional
        # offset commits, so a restarted worker would read everything again.
        w = pl.start()
        try:
            wait_for(phase1_done, timeout=90, what="phase 1's outputs")
            r = veil_cmd("erase", "-c", pl.config, ERASED)
            assert r.returncode == 0, r.stderr
            wait_for(erased, timeout=60, what="erasure tombstones")
            t1 = time.time()
            # The second phase starts well after the first ended (--since).
            wait_for(lambda: time.time() >= t1 + 3, timeout=10, what="3 s to pass")
            t2 = time.time()
            pl.produce([frame(pl, rng, 40 + i, f"L-{i}", marketing_opt_in=True)
                        for i in range(3)])
            wait_for(phase2_done, timeout=60, what="phase 2's outputs")
        except AssertionError as e:
            stop(w)
            raise AssertionError(f"{e}\n{stderr_text(w)[-3000:]}")
        rc = stop(w)
        assert rc == 0, stderr_text(w)[-3000:]
        logs = [stderr_text(w)]
        # The derived schemas as any Confluent client reads them back.
        src = SchemaRegistryClient({"url": reg.url})
        derived = {p: json.loads(src.get_latest_version(f"{t}-value").schema.schema_str)
                   for p, t in pl.topics.items()}
    finally:
        reg.stop()
    return {"pl": pl, "derived": derived, "t1": t1, "t2": t2, "logs": logs,
            "full": report(pl), "audit": [json.loads(m.value())
                                          for m in consume_all(broker, pl.audit)]}


def test_report_records_and_consent_equal_what_was_produced(produced):
    got = produced["full"]["purposes"]
    good = N + 1 + 3                       # phase 1 customers, the withdrawal, phase 2
    assert got["analytics"]["records"] == good
    assert got["support"]["records"] == good
    assert got["marketing"]["records"] == N // 2 + 3
    cd = got["marketing"]["consent_drops"]
    assert cd == {"total": N // 2 + 1, "by_reason": {"consent-not-given": N // 2 + 1}}
    for p in ("analytics", "support"):
        assert got[p]["consent_drops"]["total"] == 0
        assert got[p]["expired"] == 0


def test_report_leaks_caught_equal_the_planted_ones(produced):
    got = produced["full"]["purposes"]
    n = len(LEAKY)
    assert got["analytics"]["leaks"] == {
        "spans": n, "findings": n, "by_detector": {"email": n},
        "by_action": {"redact": n}, "by_field": {"tier": n}}
    for p in ("marketing", "support"):     # unguarded
        assert got[p]["leaks"]["spans"] == 0


def test_report_tombstones_by_reason_equal_the_topics(produced, broker):
    pl, got = produced["pl"], produced["full"]["purposes"]
    want = {p: {"retention": 0, "erasure": 1, "consent-withdrawn": 0,
                "upstream-delete": 1, "license-expired": 0} for p in pl.topics}
    want["marketing"]["consent-withdrawn"] = 1
    on_topic = tombstones_by_reason(broker, pl.topics["support"])
    assert on_topic["retention"] >= N - 1
    want["support"]["retention"] = on_topic["retention"]
    for p, t in pl.topics.items():
        assert got[p]["tombstones"] == want[p], p
        # ... and each equals what landed on the purpose topic.
        assert {k: v for k, v in got[p]["tombstones"].items() if v} == \
            dict(tombstones_by_reason(broker, t)), p
    assert produced["full"]["erasures"] == {"requests": 1, "tombstones": 3}


def test_report_dead_letters_by_code_equal_the_dlq(produced, broker):
    pl, dlq = produced["pl"], produced["full"]["dlq"]
    codes = collections.Counter(headers(m)["veil.error"]
                                for m in consume_all(broker, pl.dlq))
    assert codes["source-rejected"] == 2 and codes["bad-magic"] == 2
    assert sum(codes.values()) == 5
    assert dlq["total"] == 5
    assert dlq["by_code"] == dict(codes)
    assert dlq["by_source"] == {pl.source: 5}
    assert dlq["topic"] == pl.dlq


def test_report_transforms_and_drops_per_field(produced):
    got = produced["full"]["purposes"]
    an = got["analytics"]
    # The report counts each record's plan: records x fields per transform.
    plan = collections.Counter(an["fields"].values())
    assert an["transforms"] == {tx: n * an["records"] for tx, n in plan.items()}
    assert an["fields"]["customer_id"] == "hash"
    assert an["fields"]["referrer"] == "drop"
    for p, v in got.items():
        # referrer is unclassified: dropped by fail closed, once per record;
        # what the licence itself drops is a policy drop.
        assert v["drops"]["unclassified"] == v["records"], p
        assert v["drops"]["policy"] > 0, p
        assert "unspecified" not in v["drops"], p
    assert got["marketing"]["fields"]["loyalty_points"] == "drop"


def test_audit_events_tell_unclassified_from_policy_drops(produced):
    recs = [e for e in produced["audit"] if e["kind"] == "record" and e["records"] == 1]
    assert recs
    for e in recs:
        drops = {p for p, tx in e["fields"].items() if tx == "drop"}
        assert set(e["dropped"]) == drops
        assert e["dropped"]["referrer"] == "unclassified"
        if e["purpose"] == "marketing":
            assert e["dropped"]["loyalty_points"] == "policy"


def field(record, path):
    """The field at a dotted path of a derived record schema."""
    head, _, rest = path.partition(".")
    f = next(f for f in record["fields"] if f["name"] == head)
    return field(f["type"], rest) if rest else f


def test_derived_schemas_say_what_was_done(produced):
    d = produced["derived"]
    want = {"analytics": {"customer_id": ("customer_id", "hash"),
                          "email": ("email", "hash"),
                          "birth_date": ("birth_date", "generalize"),
                          "card_number": ("card", "mask"),
                          "notes": ("notes", "redact_text"),
                          "status": ("public", "keep"),
                          "address.zip": ("internal", "keep")},
            "marketing": {"email": ("email", "keep"),
                          "customer_id": ("customer_id", "keep"),
                          "full_name": ("name", "keep")},
            "support": {"phone": ("phone", "mask"),
                        "ssn": ("ssn", "mask"),
                        "email": ("email", "keep")}}
    src = json.loads(customer_schema_text())
    for purpose, fields in want.items():
        for path, (cls, tx) in fields.items():
            f = field(d[purpose], path)
            assert f.get("veil.class") == cls, (purpose, path, f)
            assert f.get("veil.transform") == tx, (purpose, path, f)
            source_pii = field(src, path).get("pii")
            if tx == "keep":
                # the value is what the source said it is
                assert f.get("pii") == source_pii, (purpose, path)
            else:
                # a token is not an e-mail any more
                assert "pii" not in f and "confluent:tags" not in f, (purpose, path)
    # An unlabelled container says nothing itself; its leaves do.
    assert "veil.transform" not in field(d["analytics"], "address")
    # Every field a purpose receives is marked.
    def record_in(t):
        if isinstance(t, list):
            return next((r for r in map(record_in, t) if r), None)
        if isinstance(t, dict):
            if t.get("type") == "record":
                return t
            return record_in(t.get("items") or t.get("values"))
        return None

    def leaves(record, prefix=""):
        # An unlabelled container (record, array or map of records) is not
        # data itself: its own fields are.
        for f in record["fields"]:
            inner = record_in(f["type"])
            if inner and "veil.transform" not in f:
                yield from leaves(inner, prefix + f["name"] + ".")
            else:
                yield prefix + f["name"], f
    for purpose, record in d.items():
        for path, f in leaves(record):
            assert "veil.transform" in f, (purpose, path)


def test_report_licences(produced):
    got = produced["full"]["purposes"]
    today = datetime.datetime.now(datetime.timezone.utc).date()
    for p, lid, until in (("analytics", "LIC-ANALYTICS-7", "2035-12-31"),
                          ("marketing", "LIC-MKT-2", "2035-06-30"),
                          ("support", "LIC-SUPPORT-1", "2034-12-31")):
        left = (datetime.date.fromisoformat(until) - today).days
        assert got[p]["license"] == {"id": lid, "valid_until": until,
                                     "days_left": left, "expired": False}


def test_report_since_keeps_only_the_recent_window(produced):
    pl = produced["pl"]
    window = math.ceil(time.time() - produced["t2"]) + 1
    assert time.time() - window > produced["t1"]
    got = report(pl, "--since", f"{window}s")
    assert got["since"] is not None
    for p in ("analytics", "support", "marketing"):
        assert got["purposes"][p]["records"] == 3, p
    assert got["purposes"]["marketing"]["consent_drops"]["total"] == 0
    assert got["purposes"]["analytics"]["tombstones"]["upstream-delete"] == 0
    assert got["erasures"] == {"requests": 0, "tombstones": 0}
    assert got["dlq"]["total"] == 0
    assert got["audit"]["counted"] < produced["full"]["audit"]["counted"]
    assert produced["full"]["since"] is None


def test_report_text_names_each_purpose(produced):
    pl = produced["pl"]
    r = veil_cmd("report", "-c", pl.config)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for p, lid in (("analytics", "LIC-ANALYTICS-7"), ("marketing", "LIC-MKT-2"),
                   ("support", "LIC-SUPPORT-1")):
        assert f"\npurpose {p}\n" in out
        assert lid in out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert f"records received {N + 1 + 3}" in lines
    assert "skipped, licence expired 0" in lines
    assert "consent-not-given 6" in out
    assert "source-rejected 2" in out and "bad-magic 2" in out
    assert "erasure requests completed: 1 (3 tombstone(s))" in out


def test_report_never_prints_values(produced):
    pl = produced["pl"]
    r = veil_cmd("report", "-c", pl.config)
    j = veil_cmd("report", "-c", pl.config, "--format", "json")
    for out in (r.stdout, j.stdout):
        assert "K-4" not in out and "K-0" not in out and "@" not in out
        assert "jane.roe" not in out


def test_report_errors_exit_2(produced, tmp_path):
    pl = produced["pl"]
    for args in (["report"], ["report", "-c", pl.config, "--format", "xml"],
                 ["report", "-c", pl.config, "--since", "soon"],
                 ["report", "-c", pl.config, "extra"],
                 ["report", "-c", str(tmp_path / "missing.yaml")]):
        r = veil_cmd(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "veil report:" in r.stderr
    # An audit topic nobody can reach.
    with open(pl.config) as f:
        text = f.read()
    cfg = tmp_path / "unreachable.yaml"
    cfg.write_text(text.replace(pl.kafka, "127.0.0.1:1"))
    r = veil_cmd("report", "-c", str(cfg), "--timeout", "3")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "audit topic" in r.stderr
    assert r.stdout == ""


def test_report_help_and_command_list(veil):
    r = subprocess.run([veil, "report", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "--since DURATION" in r.stdout and "--format text|json" in r.stdout
    r = subprocess.run([veil, "--help"], capture_output=True, text=True)
    assert "report" in r.stdout


def hkdf_sha256(ikm, info, length=32):
    """RFC 5869 with no salt (as test_topics_erase, from the RFC)."""
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def test_events_before_and_after_drop_reasons_verify_and_report(broker, tmp_path):
    """An event written before "dropped" existed and one written after chain
    and verify alike; the report counts the old one's drops as unspecified."""
    pl = Pipeline(broker, str(tmp_path), partitions=1)
    audit_key = hkdf_sha256(HMAC_KEY.encode(), b"veil:audit")
    chain = f"{pl.source}/0"
    head = {"v": 1, "chain": chain, "source": {"topic": pl.source, "partition": 0},
            "purpose": "analytics", "topic": pl.topics["analytics"],
            "license": "LIC-ANALYTICS-7", "policy": "0" * 12,
            "fields": {"email": "hash", "ssn": "drop"}, "schema_in": [1],
            "schema_out": [7], "records": 1, "tombstones": 0, "expired": 0,
            "ts": int(time.time() * 1000)}
    old = dict(head, kind="record", prev="0" * 64, segment_start=True,
               segment_reason="new")
    old["source"] = dict(head["source"], first=0, last=0)
    old_bytes = json.dumps(old, sort_keys=True, separators=(",", ":")).encode()
    new = dict(head, kind="record", prev=hashlib.sha256(old_bytes).hexdigest(),
               dropped={"ssn": "unclassified"})
    new["source"] = dict(head["source"], first=1, last=1)
    new_bytes = json.dumps(new, sort_keys=True, separators=(",", ":")).encode()
    p = ck.Producer({"bootstrap.servers": broker})
    for value in (old_bytes, new_bytes):
        mac = hmac.new(audit_key, value, hashlib.sha256).hexdigest()
        p.produce(pl.audit, key=chain.encode(), value=value, partition=0,
                  headers=[("veil.mac", f"k1:{mac}".encode())])
    assert p.flush(30) == 0
    r = veil_cmd("audit", "verify", "-c", pl.config, "--timeout", "30")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 event(s)" in r.stdout and "intact" in r.stdout
    an = report(pl)["purposes"]["analytics"]
    assert an["records"] == 2
    assert an["transforms"] == {"hash": 2, "drop": 2}
    assert an["drops"] == {"unspecified": 1, "unclassified": 1}


def test_report_counts_batch_events_exactly(broker, tmp_path):
    """With `audit: batch` one event sums a transaction: its "applied" and
    "drops" counts give the same figures as per-record events would."""
    pl = Pipeline(broker, str(tmp_path), partitions=1, edits=[
        ("audit: { level: record }", "audit: { level: batch }"),
        ("      referrer: internal\n", "")])
    rng = random.Random(43)
    pl.produce([frame(pl, rng, i, f"B-{i}") for i in range(6)])
    w = pl.start()
    try:
        wait_for(lambda: all(len(consume_all(broker, t)) >= 6 for t in pl.topics.values()),
                 timeout=60, what="6 records on every purpose")
    finally:
        assert stop(w) == 0, stderr_text(w)[-3000:]
    events = [json.loads(m.value()) for m in consume_all(broker, pl.audit)]
    assert events and all(e["kind"] == "batch" for e in events)
    assert all("applied" in e for e in events)
    for p, v in report(pl)["purposes"].items():
        assert v["records"] == 6, p
        plan = collections.Counter(v["fields"].values())
        assert v["transforms"] == {tx: n * 6 for tx, n in plan.items()}, p
        assert v["drops"]["unclassified"] == 6, p
        assert sum(v["drops"].values()) == plan["drop"] * 6, p
