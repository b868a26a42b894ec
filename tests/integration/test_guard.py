"""test_guard.py - licence conditions in the stream (issue 13): source
validation (`accept:`) and the consent gate (`requires:`), end to end
against `veil broker` with records produced by confluent_kafka."""
import json
import os
import random
import subprocess

import pytest
from confluent_kafka.admin import AdminClient

import test_worker
from helpers import VeilBroker, consume_all, wait_for
from sr_double import SchemaRegistryDouble
from test_worker import Pipeline, demo_produce, headers, stderr_text, stop
from test_worker_ops import free_port, get, parse_metrics, value, with_metrics


REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def mock_create_topic(bootstrap, name, partitions=1, config=None, timeout=30):
    """The mock cluster serves no CreateTopics; a metadata request for a
    topic creates it (with 4 partitions, whatever was asked)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def ready():
        t = admin.list_topics(name, timeout=5).topics.get(name)
        return t is not None and t.error is None and len(t.partitions) > 0

    wait_for(ready, timeout=timeout, what=f"topic {name} in metadata")


@pytest.fixture(scope="module")
def broker(veil):
    """A `veil broker` of the module's own: the mock cluster does
    transactions, which is all these tests need (they never depend on
    compaction or on aborted records being hidden)."""
    b = VeilBroker(veil)
    bootstrap = b.start()
    saved = test_worker.create_topic
    test_worker.create_topic = mock_create_topic
    yield bootstrap
    test_worker.create_topic = saved
    b.stop()


def customer_schema_text():
    with open(demo_produce.SCHEMA_PATH) as f:
        return json.dumps(json.load(f))


def run_until(pl, broker, counts, timeout=90, before_stop=None):
    """`veil run` until each topic of `counts` ({topic: n}) holds at least n
    records, then SIGTERM (the open batch is committed); returns the log,
    or (log, before_stop()) when given (called while the worker runs)."""
    w = pl.start()
    got = None
    try:
        for t, n in counts.items():
            wait_for(lambda t=t, n=n: len(consume_all(broker, t)) >= n,
                     timeout=timeout, what=f"{n} records on {t}")
        if before_stop:
            got = before_stop()
    except AssertionError as e:
        stop(w)
        raise AssertionError(f"{e}\n{stderr_text(w)[-3000:]}")
    rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    return (stderr_text(w), got) if before_stop else stderr_text(w)


def by_source(msgs):
    """{source offset label: message}, one per source record (the mock
    broker's read_committed shows an aborted batch's records too; a redone
    batch writes them again with the same veil.source)."""
    out = {}
    for m in msgs:
        out[(headers(m)["veil.source"], m.value() is None)] = m
    return out


# ---- accept: source validation ----------------------------------------------

def test_accept_rejects_other_writer_schemas_to_the_dlq(broker, tmp_path):
    # The same Avro layout under another full name: only the name differs,
    # so the rejection can only come from accept:.
    text = customer_schema_text()
    other = json.loads(text)
    other["namespace"] = "com.example.intruder"
    reg = SchemaRegistryDouble()
    try:
        assert reg.register("customers-value", text) == 1
        assert reg.register("intruder-value", json.dumps(other)) == 2
        pl = Pipeline(broker, str(tmp_path), partitions=1, registry_url=reg.url,
                      edits=[("    key_class: customer_id\n",
                              "    key_class: customer_id\n"
                              "    accept: { records: [com.example.crm.Customer] }\n")])
        rng = random.Random(5)
        msgs, good, bad = [], 0, []
        for i in range(12):
            c = demo_produce.customer(rng, i)
            sid = 2 if i % 3 == 0 else 1
            msgs.append((c["customer_id"].encode(),
                         demo_produce.frame(sid, pl.schema, c)))
            if sid == 1:
                good += 1
            else:
                bad.append((c["customer_id"], c["email"]))
        where = pl.produce(msgs)
        log = run_until(pl, broker, {pl.dlq: len(bad),
                                     **{t: good for t in pl.topics.values()}})
    finally:
        reg.stop()
    # one per source record (by_source: the mock shows an aborted-and-redone
    # batch's records too)
    for t in pl.topics.values():
        got = by_source(consume_all(broker, t))
        assert len(got) == good, sorted(got)
        for m in got.values():
            _, part, off = headers(m)["veil.source"].rsplit("/", 2)
            assert where[(int(part), int(off))] % 3 != 0
    dlq = list(by_source(consume_all(broker, pl.dlq)).values())
    assert len(dlq) == len(bad)
    for m in dlq:
        h = headers(m)
        assert h["veil.error"] == "source-rejected"
        detail = h["veil.error.detail"]
        assert "schema id 2" in detail
        assert "com.example.intruder.Customer" in detail
        # positions and names only, never a value
        for cid, email in bad:
            assert cid not in detail and email not in detail
    for cid, email in bad:
        assert email not in log


def test_accept_lists_every_name_it_allows(broker, tmp_path):
    # Listing the record lets it through: the filter compares full names.
    text = customer_schema_text()
    reg = SchemaRegistryDouble()
    try:
        assert reg.register("customers-value", text) == 1
        pl = Pipeline(broker, str(tmp_path), partitions=1, registry_url=reg.url,
                      edits=[("    key_class: customer_id\n",
                              "    key_class: customer_id\n"
                              "    accept: { records: [com.example.crm.Other, "
                              "com.example.crm.Customer] }\n")])
        rng = random.Random(6)
        msgs = []
        for i in range(5):
            c = demo_produce.customer(rng, i)
            msgs.append((c["customer_id"].encode(), demo_produce.frame(1, pl.schema, c)))
        pl.produce(msgs)
        run_until(pl, broker, {t: 5 for t in pl.topics.values()})
    finally:
        reg.stop()
    assert consume_all(broker, pl.dlq) == []
    for t in pl.topics.values():
        # one per source record: the mock shows an aborted-and-redone
        # batch's records too (by_source)
        got = by_source(consume_all(broker, t))
        assert len(got) == 5, sorted(got)
        assert not any(tomb for _, tomb in got)


def test_accept_config_errors_name_file_line_col(veil, tmp_path):
    cfg = tmp_path / "v.yaml"
    base = open(f"{REPO_ROOT}/config/veil.yaml").read()
    cfg.write_text(base.replace("    key_class: customer_id\n",
                                "    key_class: customer_id\n"
                                "    accept: { records: [com.example..Bad] }\n"))
    r = subprocess.run([veil, "check", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{cfg}:" in r.stderr
    assert "routes[0].accept.records[0]: 'com.example..Bad' is not an Avro full name" \
        in r.stderr, r.stderr


# ---- requires: the consent gate -----------------------------------------------

def frame_customers(pl, rows, seed):
    """[(key, framed value)] for rows of (id, {field: value}) overrides."""
    rng = random.Random(seed)
    out = []
    for i, (cid, over) in enumerate(rows):
        c = demo_produce.customer(rng, i)
        c["customer_id"] = cid
        c.update(over)
        out.append((cid.encode(), demo_produce.frame(pl.schema_id, pl.schema, c)))
    return out


def test_consent_gate_withholds_and_tombstones_on_withdrawal(broker, tmp_path):
    port = free_port()
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[("    license: { id: LIC-MKT-2, valid_until: 2035-06-30 }\n",
                          "    license: { id: LIC-MKT-2, valid_until: 2035-06-30 }\n"
                          "    requires: { field: marketing_opt_in, equals: true }\n")])
    with_metrics(pl, port)
    # Per key, in order on its partition: A consents then withdraws; B never
    # consents; C consents; D arrives without consent.
    rows = [("C-A", {"marketing_opt_in": True}), ("C-B", {"marketing_opt_in": False}),
            ("C-C", {"marketing_opt_in": True}), ("C-A", {"marketing_opt_in": False}),
            ("C-B", {"marketing_opt_in": False}), ("C-D", {"marketing_opt_in": False})]
    msgs = frame_customers(pl, rows, 17)
    where = pl.produce(msgs)

    def scrape():
        def done():
            s, _ = parse_metrics(get(f"http://127.0.0.1:{port}/metrics")[1])
            n = sum(v for (name, labels), v in s.items()
                    if name == "veil_consent_withheld_total")
            return s if n >= 4 else None
        return wait_for(done, timeout=60, what="4 consent drops in /metrics")

    log, s = run_until(pl, broker, {pl.topics["analytics"]: 6,
                                    pl.topics["marketing"]: 3}, before_stop=scrape)
    assert consume_all(broker, pl.dlq) == []
    mk = by_source(consume_all(broker, pl.topics["marketing"]))
    idx = {k: where[tuple(int(x) for x in k[0].rsplit("/", 2)[1:])] for k in mk}
    # Records: A's grant and C; a tombstone for A on its withdrawal; nothing
    # for B and D, which the purpose never held.
    assert sorted((idx[k], k[1]) for k in mk) == [(0, False), (2, False), (3, True)]
    tomb = [m for k, m in mk.items() if k[1]][0]
    assert tomb.key() == b"C-A"
    h = headers(tomb)
    assert h["veil.reason"] == "consent-withdrawn"
    assert h["veil.purpose"] == "marketing"
    # Other purposes are not gated.
    assert len(by_source(consume_all(broker, pl.topics["analytics"]))) == 6
    # Counted by reason ...
    assert value(s, "veil_consent_withheld_total", route=pl.source,
                 purpose="marketing", reason="consent-not-given") == 4
    assert value(s, "veil_tombstones_out_total", route=pl.source,
                 purpose="marketing", reason="consent-withdrawn") == 1
    # ... and audited with the reason and the field, never a value.
    events = [json.loads(m.value()) for m in consume_all(broker, pl.audit)]
    ce = {(where[(e["source"]["partition"], e["source"]["first"])], e["tombstone"])
          for e in events if e["kind"] == "consent"}
    assert ce == {(1, None), (3, "consent-withdrawn"), (4, None), (5, None)}
    for e in events:
        if e["kind"] == "consent":
            assert e["purpose"] == "marketing"
            assert e["reason"] == "consent-not-given"
            assert e["field"] == "marketing_opt_in"


def test_consent_gate_on_nested_string_and_enum(broker, tmp_path):
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[("    license: { id: LIC-ANALYTICS-7, valid_until: 2035-12-31 }\n",
                          "    license: { id: LIC-ANALYTICS-7, valid_until: 2035-12-31 }\n"
                          "    requires: { field: address.country, equals: \"FR\" }\n"),
                         ("    license: { id: LIC-SUPPORT-1, valid_until: 2034-12-31 }\n",
                          "    license: { id: LIC-SUPPORT-1, valid_until: 2034-12-31 }\n"
                          "    requires: { field: status, equals: ACTIVE }\n")])
    rng = random.Random(23)
    rows = []
    for i in range(12):
        c = demo_produce.customer(rng, i)
        rows.append((f"K-{i}", {"address": dict(c["address"],
                                                country=["FR", "DE", "US"][i % 3]),
                                "status": ["ACTIVE", "SUSPENDED"][i % 2]}))
    msgs = frame_customers(pl, rows, 29)
    where = pl.produce(msgs)
    want_an = {i for i in range(12) if i % 3 == 0}
    want_su = {i for i in range(12) if i % 2 == 0}
    run_until(pl, broker, {pl.topics["marketing"]: 12,
                           pl.topics["analytics"]: len(want_an),
                           pl.topics["support"]: len(want_su)})

    def got(purpose):
        res = set()
        for (src, tomb), m in by_source(consume_all(broker, pl.topics[purpose])).items():
            _, part, off = src.rsplit("/", 2)
            res.add((where[(int(part), int(off))], tomb))
        return res
    # No retention ledger entry for keys never held: no tombstones either.
    assert got("analytics") == {(i, False) for i in want_an}
    assert got("support") == {(i, False) for i in want_su}
    assert got("marketing") == {(i, False) for i in range(12)}


# ---- veil check ----------------------------------------------------------------

def check_config(veil, tmp_path, edits):
    """`veil check` on the demo config with edits, against a copy of the
    file registry; returns (exit code, stdout)."""
    import shutil
    root = REPO_ROOT
    shutil.copytree(f"{root}/schemas", tmp_path / "schemas")
    key = tmp_path / "dev-hmac.key"
    shutil.copyfile(f"{root}/config/dev-hmac.key", key)
    key.chmod(0o600)
    text = open(f"{root}/config/veil.yaml").read().replace(
        "file://../schemas", "file://schemas")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    cfg = tmp_path / "v.yaml"
    cfg.write_text(text)
    r = subprocess.run([veil, "check", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


MKT = "    license: { id: LIC-MKT-2, valid_until: 2035-06-30 }\n"
SUP = "    license: { id: LIC-SUPPORT-1, valid_until: 2034-12-31 }\n"
ANA = "    license: { id: LIC-ANALYTICS-7, valid_until: 2035-12-31 }\n"


def test_check_reports_requires_fields_it_cannot_test(veil, tmp_path):
    rc, out = check_config(veil, tmp_path, [
        (MKT, MKT + "    requires: { field: consents.marketing, equals: true }\n"),
        (SUP, SUP + "    requires: { field: loyalty_points, equals: true }\n"),
        (ANA, ANA + "    requires: { field: status, equals: GONE }\n"),
        ("    key_class: customer_id\n",
         "    key_class: customer_id\n    accept: { records: [com.example.crm.Client] }\n")])
    assert rc == 1, out
    assert ("purpose marketing: consents.marketing: schema 1: requires.field "
            "consents.marketing: the record Customer has no field 'consents'") in out
    assert "[requires-missing]" in out
    assert ("purpose support: loyalty_points: schema 1: requires.field loyalty_points "
            "is an int; equals: true needs a boolean") in out
    assert ("purpose analytics: status: schema 1: requires.field status is the enum "
            "Status, which has no symbol 'GONE'") in out
    assert out.count("[requires-type]") == 2
    assert ("schema 1 is the record com.example.crm.Customer, which accept: does "
            "not list") in out


def test_check_accepts_testable_requires_fields(veil, tmp_path):
    rc, out = check_config(veil, tmp_path, [
        (MKT, MKT + "    requires: { field: marketing_opt_in, equals: true }\n"),
        (SUP, SUP + "    requires: { field: status, equals: ACTIVE }\n"),
        (ANA, ANA + "    requires: { field: address.country, equals: \"FR\" }\n"),
        ("    key_class: customer_id\n",
         "    key_class: customer_id\n    accept: { records: [com.example.crm.Customer] }\n")])
    assert "requires-" not in out and "not-accepted" not in out, out
    assert rc == 0, out


# ---- guard: the egress leak guard ------------------------------------------------

PLANTED = "call me at jane.roe@example.org please"


def guarded(broker, tmp_path, on_leak):
    guard = "    guard: {}\n" if on_leak is None else f"    guard: {{ on_leak: {on_leak} }}\n"
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[(ANA, ANA + guard)])
    # `tier` is labelled public: analytics keeps it, but gets emails only
    # hashed, so an email typed into it is a leak for analytics (and not for
    # marketing, whose licence keeps emails).
    rows = [(f"G-{i}", {"tier": PLANTED} if i in (1, 4) else {}) for i in range(6)]
    return pl, pl.produce(frame_customers(pl, rows, 31))


def test_guard_redacts_a_planted_leak_and_counts_it(broker, tmp_path):
    port = free_port()
    pl, where = guarded(broker, tmp_path, None)
    with_metrics(pl, port)

    def scrape():
        def done():
            s, _ = parse_metrics(get(f"http://127.0.0.1:{port}/metrics")[1])
            return s if value(s, "veil_leaks_total", purpose="analytics", field="tier",
                              detector="email", action="redact") == 2 else None
        return wait_for(done, timeout=60, what="2 leaks in /metrics")

    log, s = run_until(pl, broker, {t: 6 for t in pl.topics.values()},
                       before_stop=scrape)
    assert consume_all(broker, pl.dlq) == []
    # Only the planted spans, only for the purpose that may not see them.
    for (src, _), m in by_source(consume_all(broker, pl.topics["analytics"])).items():
        i = where[tuple(int(x) for x in src.rsplit("/", 2)[1:])]
        _, rec = pl.decode(m.value())
        if i in (1, 4):
            assert rec["tier"] == "call me at [email] please"
        else:
            assert rec["tier"] in ("bronze", "silver", "gold", "platinum")
    mk = [pl.decode(m.value())[1]["tier"]
          for m in by_source(consume_all(broker, pl.topics["marketing"])).values()]
    assert mk.count(PLANTED) == 2
    # Nothing else in the demo records is a leak for analytics.
    leaks = {k: v for k, v in s.items() if k[0] == "veil_leaks_total"}
    assert sum(leaks.values()) == 2, leaks
    events = [json.loads(m.value()) for m in consume_all(broker, pl.audit)]
    le = [e for e in events if e["kind"] == "leak"]
    assert sorted(where[(e["source"]["partition"], e["source"]["first"])]
                  for e in le) == [1, 4]
    assert all(e["purpose"] == "analytics" and e["field"] == "tier"
               and e["detector"] == "email" and e["action"] == "redact"
               and e["spans"] == 1 for e in le)
    # Named, never shown.
    assert "jane.roe" not in log
    assert all("jane.roe" not in m.value().decode() for m in consume_all(broker, pl.audit))


def test_guard_quarantines_a_leaking_record(broker, tmp_path):
    pl, where = guarded(broker, tmp_path, "quarantine")
    log = run_until(pl, broker, {pl.dlq: 2, **{t: 4 for t in pl.topics.values()}})
    dlq = list(by_source(consume_all(broker, pl.dlq)).values())
    assert len(dlq) == 2
    for m in dlq:
        h = headers(m)
        assert h["veil.error"] == "leak-quarantined"
        assert h["veil.error.detail"] == "purpose analytics: email found in tier"
        assert "jane.roe" not in h["veil.error.detail"]
        assert where[tuple(int(x) for x in h["veil.source"].rsplit("/", 2)[1:])] in (1, 4)
    # The quarantined records reach no purpose; the others all of them.
    for t in pl.topics.values():
        got = by_source(consume_all(broker, t))
        assert sorted(where[tuple(int(x) for x in k[0].rsplit("/", 2)[1:])]
                      for k in got) == [0, 2, 3, 5]
    assert "jane.roe" not in log


def test_guard_off_lets_the_planted_value_through(broker, tmp_path):
    # Without guard: the licence alone trusts the label (what the guard is for).
    pl = Pipeline(broker, str(tmp_path), partitions=1)
    where = pl.produce(frame_customers(pl, [("G-0", {"tier": PLANTED})], 31))
    run_until(pl, broker, {pl.topics["analytics"]: 1})
    m = consume_all(broker, pl.topics["analytics"])[0]
    assert pl.decode(m.value())[1]["tier"] == PLANTED


def test_guard_leaves_tokens_alone(broker, tmp_path):
    # A detector that matches the shape of Veil's own tokens (43 base64url
    # characters after the key id) and a class analytics may not see raw:
    # the hashed customer_id and email fields would be "leaks" if the guard
    # scanned them. It does not: a token is Veil's output, not source text,
    # and redacting one would break every join on it. The same detector
    # still finds the shape in a field the purpose receives as is.
    blob = "Q" * 44
    pl = Pipeline(broker, str(tmp_path), partitions=1, edits=[
        (ANA, ANA + "    guard: {}\n"),
        ("\nclasses:\n", "\ndetectors:\n  tokenish: { pattern: \"[A-Za-z0-9_-]{40,}\" }\n"
                         "classes:\n  blob: { tier: restricted, detector: tokenish }\n")])
    rows = [(f"T-{i}", {"tier": f"see {blob}"} if i == 2 else {}) for i in range(4)]
    where = pl.produce(frame_customers(pl, rows, 41))
    log = run_until(pl, broker, {pl.topics["analytics"]: 4})
    assert consume_all(broker, pl.dlq) == []
    got = by_source(consume_all(broker, pl.topics["analytics"]))
    assert len(got) == 4
    for (src, _), m in got.items():
        i = where[tuple(int(x) for x in src.rsplit("/", 2)[1:])]
        _, rec = pl.decode(m.value())
        for f in ("customer_id", "email"):
            assert rec[f].startswith("k1:") and len(rec[f]) == 46, (f, rec[f])
        assert rec["tier"] == ("see [tokenish]" if i == 2 else rec["tier"])
    leaks = [json.loads(m.value()) for m in consume_all(broker, pl.audit)]
    leaks = [e for e in leaks if e["kind"] == "leak"]
    assert [(e["field"], e["detector"]) for e in leaks] == [("tier", "tokenish")], leaks
    assert blob not in log


def test_redact_text_rescans_what_it_wrote(broker, tmp_path):
    # redact_text's replacement can itself be a context word: after
    # "+1 212-555-1234" becomes "[phone]", the bare number next to it reads
    # as a phone, which it did not in the source text. redact_text scans its
    # own result again, so analytics gets neither number, with the guard or
    # without it; the guard then finds nothing left to call a leak.
    note = "+1 212-555-1234; 4155550100 x"
    for guard in (True, False):
        pl = Pipeline(broker, str(tmp_path / str(guard)), partitions=1,
                      edits=[(ANA, ANA + "    guard: {}\n")] if guard else [])
        pl.produce(frame_customers(pl, [("R-0", {"notes": note})], 43))
        log = run_until(pl, broker, {pl.topics["analytics"]: 1})
        m = consume_all(broker, pl.topics["analytics"])[0]
        assert pl.decode(m.value())[1]["notes"] == "[phone]; [phone] x", guard
        if guard:  # the guard found nothing left to call a leak
            events = [json.loads(e.value()) for e in consume_all(broker, pl.audit)]
            assert [e for e in events if e["kind"] == "leak"] == []
        assert "4155550100" not in log


def test_guard_rescans_its_own_redaction(broker, tmp_path):
    # The guard's own "[phone]" is a context word as redact_text's is: the
    # bare number beside a phone typed into a field analytics keeps raw
    # reads as a phone once the first one is replaced. The guard scans what
    # it wrote again, so analytics gets neither; both spans are leaks.
    text = "+1 212-555-1234; 4155550100 x"
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[(ANA, ANA + "    guard: {}\n")])
    pl.produce(frame_customers(pl, [("P-0", {"tier": text})], 47))
    log = run_until(pl, broker, {pl.topics["analytics"]: 1})
    m = consume_all(broker, pl.topics["analytics"])[0]
    assert pl.decode(m.value())[1]["tier"] == "[phone]; [phone] x"
    leaks = [json.loads(e.value()) for e in consume_all(broker, pl.audit)]
    leaks = [(e["field"], e["detector"], e["spans"]) for e in leaks if e["kind"] == "leak"]
    assert leaks == [("tier", "phone", 2)], leaks
    assert "4155550100" not in log and "555-1234" not in log


def test_guard_empties_a_string_its_redaction_cannot_clean(broker, tmp_path):
    # A custom detector that matches the guard's own replacement: each
    # rescan finds the last round's "[bracket]". After 4 rounds of
    # redaction the string is emptied rather than delivered with a finding
    # in it (fail closed); the 5 scans' spans are all counted.
    pl = Pipeline(broker, str(tmp_path), partitions=1, edits=[
        (ANA, ANA + "    guard: {}\n"),
        ("\nclasses:\n", "\ndetectors:\n  bracket: { pattern: \"\\\\[[a-z]+\\\\]\" }\n"
                         "classes:\n  tag: { tier: restricted, detector: bracket }\n")])
    plain = "called back, all fine"
    rows = [("E-0", {"tier": "see [tag] here", "notes": plain}), ("E-1", {"notes": plain})]
    where = pl.produce(frame_customers(pl, rows, 53))
    run_until(pl, broker, {pl.topics["analytics"]: 2})
    assert consume_all(broker, pl.dlq) == []
    got = by_source(consume_all(broker, pl.topics["analytics"]))
    tiers = {where[tuple(int(x) for x in src.rsplit("/", 2)[1:])]: pl.decode(m.value())[1]["tier"]
             for (src, _), m in got.items()}
    assert tiers[0] == ""
    assert tiers[1] in ("bronze", "silver", "gold", "platinum")
    leaks = [json.loads(e.value()) for e in consume_all(broker, pl.audit)]
    leaks = [(e["field"], e["detector"], e["spans"]) for e in leaks if e["kind"] == "leak"]
    assert leaks == [("tier", "bracket", 5)], leaks
