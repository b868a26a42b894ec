"""test_halt.py - the purposes' circuit breaker (issue 13): `guard:
{ on_leak: halt }` and `halt_on:` stop routing to a purpose, the halt lives
on the control topic (it survives a restart), `veil guard resume` reopens
the purpose in a running worker, held records come back with `veil dlq
replay`; `alerts:` on /metrics; tombstones of the retention side counted
on /metrics and in the stop summary. Against `veil broker`, records
produced by confluent_kafka."""
import collections
import json
import os
import re
import subprocess

import confluent_kafka as ck
import pytest

import test_worker
from helpers import VeilBroker, consume_all, wait_for
from test_guard import ANA, PLANTED, by_source, frame_customers, mock_create_topic
from test_worker import HMAC_KEY, Pipeline, headers, stderr_text, stop
from test_worker_ops import free_port, get, parse_metrics, value, with_metrics


@pytest.fixture(scope="module")
def broker(veil):
    b = VeilBroker(veil)
    bootstrap = b.start()
    saved = test_worker.create_topic
    test_worker.create_topic = mock_create_topic
    yield bootstrap
    test_worker.create_topic = saved
    b.stop()


def with_control(pl, broker, extra=""):
    """The pipeline's own control topic (and `extra` config lines)."""
    pl.control = f"{pl.prefix}.control"
    mock_create_topic(broker, pl.control)
    with open(pl.config) as f:
        text = f.read()
    assert "erasure: veil.erasure" in text
    text = text.replace("erasure: veil.erasure",
                        f"erasure: veil.erasure, control: {pl.control}")
    with open(pl.config, "w") as f:
        f.write(text + extra)


def scrape(port):
    return parse_metrics(get(f"http://127.0.0.1:{port}/metrics")[1])[0]


def metric_is(port, want, name, **labels):
    def ok():
        try:
            return value(scrape(port), name, **labels) == want
        except OSError:
            return False
    return ok


def veil_lines(port):
    """The page's veil_ series, for a failure message."""
    try:
        return "\n".join(l for l in get(f"http://127.0.0.1:{port}/metrics")[1].splitlines()
                         if l.startswith(("veil_leaks", "veil_alert", "veil_purpose_halted",
                                          "veil_transactions")))
    except OSError as e:
        return f"(/metrics: {e})"


def src_index(where, msg):
    _, part, off = headers(msg)["veil.source"].rsplit("/", 2)
    return where[(int(part), int(off))]


def veil_cmd(*args, timeout=120):
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
    return subprocess.run([os.environ["VEIL"], *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def letters(broker, pl):
    return list(by_source(consume_all(broker, pl.dlq)).values())


def test_leak_halts_the_purpose_until_resumed(broker, tmp_path):
    port = free_port()
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[(ANA, ANA + "    guard: { on_leak: halt }\n")])
    with_control(pl, broker)
    with_metrics(pl, port)
    # One key, so one partition, in order (the mock broker makes 4
    # partitions whatever is asked): record 2 leaks an email into `tier`,
    # which analytics gets raw (it gets emails only hashed).
    rows = [("H-1", {"tier": PLANTED} if i == 2 else {}) for i in range(6)]
    where = pl.produce(frame_customers(pl, rows, 41))
    ana, mkt = pl.topics["analytics"], pl.topics["marketing"]

    # ---- 1. the leak trips analytics; the other purposes keep flowing
    w = pl.start()
    try:
        wait_for(lambda: len(by_source(consume_all(broker, mkt))) >= 6, timeout=90,
                 what="6 records on marketing")
        wait_for(lambda: len(letters(broker, pl)) >= 4, timeout=60,
                 what="4 held records in the DLQ")
        wait_for(metric_is(port, 1, "veil_purpose_halted", purpose="analytics"),
                 timeout=30, what="veil_purpose_halted{analytics} 1")
        s = scrape(port)
        assert value(s, "veil_purpose_halted", purpose="marketing") == 0
        assert value(s, "veil_purpose_halted", purpose="support") == 0
        assert value(s, "veil_leaks_total", purpose="analytics", field="tier",
                     detector="email", action="halt") == 1
        assert value(s, "veil_dlq_records_total", code="purpose-halted") == 3
        assert value(s, "veil_dlq_records_total", code="leak-quarantined") == 1
    except AssertionError as e:
        stop(w)
        raise AssertionError(f"{e}\n{stderr_text(w)[-4000:]}")
    assert stop(w) == 0, stderr_text(w)[-3000:]
    log1 = stderr_text(w)
    # analytics got only what came before the leak; the leaking record and
    # every later one are held for it alone
    assert sorted(src_index(where, m) for m in by_source(consume_all(broker, ana)).values()) \
        == [0, 1]
    for t in (mkt, pl.topics["support"]):
        assert sorted(src_index(where, m) for m in by_source(consume_all(broker, t)).values()) \
            == list(range(6))
    held = {src_index(where, m): headers(m) for m in letters(broker, pl)}
    assert sorted(held) == [2, 3, 4, 5]
    assert held[2]["veil.error"] == "leak-quarantined"
    assert held[2]["veil.purpose"] == "analytics"
    assert "email found in tier" in held[2]["veil.error.detail"]
    for i in (3, 4, 5):
        assert held[i]["veil.error"] == "purpose-halted"
        assert held[i]["veil.purpose"] == "analytics"
    # the halt is on the control topic, in the transaction of the record
    ctl = [m for m in consume_all(broker, pl.control) if m.value()]
    assert len(ctl) == 1
    assert ctl[0].key() == b"halt/analytics"
    rec = json.loads(ctl[0].value())
    assert rec["state"] == "halted" and rec["reason"] == "leak"
    (lp, lo), = [k for k, v in where.items() if v == 2]
    assert rec["source"] == f"{pl.source}/{lp}/{lo}"
    # audited, named, never shown
    events = [json.loads(m.value()) for m in consume_all(broker, pl.audit)]
    halts = [e for e in events if e["kind"] == "halt"]
    assert len(halts) == 1 and halts[0]["purpose"] == "analytics"
    assert halts[0]["reason"] == "leak"
    assert "jane.roe" not in log1
    assert "halted" in log1

    # ---- 2. a restart: still halted, from the first record
    more = pl.produce(frame_customers(pl, [("H-1", {}), ("H-1", {})], 42))
    where.update({k: v + 6 for k, v in more.items()})
    w = pl.start()
    try:
        wait_for(lambda: len(by_source(consume_all(broker, mkt))) >= 8, timeout=90,
                 what="8 records on marketing")
        wait_for(lambda: len(letters(broker, pl)) >= 6, timeout=60,
                 what="6 held records")
        assert value(scrape(port), "veil_purpose_halted", purpose="analytics") == 1
        st = veil_cmd("guard", "status", "-c", pl.config)
        assert st.returncode == 0, st.stderr
        assert "analytics halted" in st.stdout and "marketing open" in st.stdout

        # ---- 3. resume, while it runs: analytics flows again
        r = veil_cmd("guard", "resume", "-c", pl.config, "analytics")
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(metric_is(port, 0, "veil_purpose_halted", purpose="analytics"),
                 timeout=30, what="veil_purpose_halted{analytics} 0")
        after = pl.produce(frame_customers(pl, [("H-1", {}), ("H-1", {})], 43))
        where.update({k: v + 8 for k, v in after.items()})
        wait_for(lambda: len(by_source(consume_all(broker, ana))) >= 4, timeout=60,
                 what="records after the resume on analytics")
    except AssertionError as e:
        stop(w)
        raise AssertionError(f"{e}\n{stderr_text(w)[-4000:]}")
    assert sorted(src_index(where, m) for m in by_source(consume_all(broker, ana)).values()) \
        == [0, 1, 8, 9]

    # ---- 4. the held records, replayed: to analytics only
    rp = veil_cmd("dlq", "replay", "-c", pl.config, "--error", "purpose-halted")
    assert rp.returncode == 0, rp.stdout + rp.stderr
    try:
        wait_for(lambda: len(by_source(consume_all(broker, ana))) >= 9, timeout=60,
                 what="the held records on analytics")
    except AssertionError as e:
        stop(w)
        raise AssertionError(f"{e}\n{stderr_text(w)[-4000:]}")
    assert stop(w) == 0
    log2 = stderr_text(w)
    # Which held records came back (the mock broker shows a redone batch's
    # records, dead letters included, twice: count originals, not copies).
    origin = {f"{pl.dlq}/{m.partition()}/{m.offset()}": src_index(where, m)
              for m in consume_all(broker, pl.dlq) if "veil.source" in headers(m)}
    replayed = {origin[headers(m)["veil.replay.of"]]
                for m in consume_all(broker, ana) if "veil.replay.of" in headers(m)}
    # (the mock broker keeps no transactional offsets either: the restart
    # read the topic again, so 0 and 1 may have been held a second time)
    assert replayed - {0, 1} == {3, 4, 5, 6, 7}
    # the leaking record is not among them, and analytics never got it
    assert 2 not in {src_index(where, m) for m in consume_all(broker, ana)
                     if "veil.replay.of" not in headers(m)}
    # the other purposes did not get them a second time
    for t in (mkt, pl.topics["support"]):
        assert not [m for m in consume_all(broker, t) if "veil.replay.of" in headers(m)]
    # the resume is audited by the worker that applied it
    events = [json.loads(m.value()) for m in consume_all(broker, pl.audit)]
    assert [e["purpose"] for e in events if e["kind"] == "resume"] == ["analytics"]
    assert "resumed" in log2


def test_unknown_purpose_is_not_resumed(broker, tmp_path):
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[(ANA, ANA + "    guard: { on_leak: halt }\n")])
    with_control(pl, broker)
    r = veil_cmd("guard", "resume", "-c", pl.config, "nosuch")
    assert r.returncode == 2
    assert "no purpose named nosuch" in r.stderr


def test_alert_crosses_its_threshold_and_trips_halt_on(broker, tmp_path):
    port = free_port()
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[(ANA, ANA + "    guard: {}\n")])
    with_control(pl, broker, "alerts: { leaks_per_minute: 2 }\n"
                             "halt_on: [leaks_per_minute]\n")
    with_metrics(pl, port)
    # one key, in order; the two leaks come last, so the alert can only be
    # raised once all five went through
    rows = [("A-1", {"tier": PLANTED} if i in (3, 4) else {}) for i in range(5)]
    where = pl.produce(frame_customers(pl, rows, 51))
    ana, mkt = pl.topics["analytics"], pl.topics["marketing"]
    w = pl.start()
    try:
        wait_for(metric_is(port, 1, "veil_alert_active", alert="leaks_per_minute",
                           purpose="analytics", code=""),
                 timeout=60, what="veil_alert_active{leaks_per_minute,analytics} 1")
        wait_for(metric_is(port, 1, "veil_purpose_halted", purpose="analytics"),
                 timeout=30, what="veil_purpose_halted{analytics} 1")
        # redacted (the guard's mode), and then halted by the alert
        assert len(by_source(consume_all(broker, ana))) == 5
        later = pl.produce(frame_customers(pl, [("A-1", {}), ("A-1", {})], 52))
        where.update({k: v + 5 for k, v in later.items()})
        wait_for(lambda: len(by_source(consume_all(broker, mkt))) >= 7, timeout=60,
                 what="7 records on marketing")
        wait_for(lambda: len(letters(broker, pl)) >= 2, timeout=60,
                 what="2 held records")
    except AssertionError as e:
        stop(w)
        raise AssertionError(f"{e}\n{stderr_text(w)[-4000:]}")
    assert stop(w) == 0
    log = stderr_text(w)
    assert len(by_source(consume_all(broker, ana))) == 5
    held = [headers(m) for m in letters(broker, pl)]
    assert held and all(h["veil.error"] == "purpose-halted"
                        and h.get("veil.purpose") == "analytics" for h in held), held
    ctl = [json.loads(m.value()) for m in consume_all(broker, pl.control) if m.value()]
    assert [c["reason"] for c in ctl] == ["alert:leaks_per_minute"]
    raised = [json.loads(line) for line in log.splitlines()
              if '"alert-raised"' in line]
    assert len(raised) == 1 and "leaks_per_minute purpose analytics" in raised[0]["msg"]
    assert "jane.roe" not in log


def test_alert_below_threshold_stays_quiet(broker, tmp_path):
    port = free_port()
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[(ANA, ANA + "    guard: {}\n")])
    with_control(pl, broker, "alerts: { leaks_per_minute: 3 }\n"
                             "halt_on: [leaks_per_minute]\n")
    with_metrics(pl, port)
    rows = [(f"Q-{i}", {"tier": PLANTED} if i in (1, 3) else {}) for i in range(5)]
    pl.produce(frame_customers(pl, rows, 61))
    w = pl.start()
    try:
        wait_for(lambda: len(by_source(consume_all(broker, pl.topics["analytics"]))) >= 5,
                 timeout=90, what="5 records on analytics")
        wait_for(metric_is(port, 2, "veil_leaks_total", purpose="analytics", field="tier",
                           detector="email", action="redact"),
                 timeout=60, what="2 leaks counted")
        s = scrape(port)
        assert value(s, "veil_alert_active", alert="leaks_per_minute",
                     purpose="analytics", code="") == 0
        assert value(s, "veil_purpose_halted", purpose="analytics") == 0
    except AssertionError as e:
        raise AssertionError(f"{e}\n{veil_lines(port)}\n{stderr_text(w)[-4000:]}")
    finally:
        stop(w)


def test_retention_tombstones_are_counted(broker, tmp_path):
    port = free_port()
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[("retention: 12h", "retention: 2s")])
    with_metrics(pl, port)
    pl.produce(frame_customers(pl, [(f"T-{i}", {}) for i in range(3)], 71))
    w = pl.start()
    try:
        wait_for(metric_is(port, 3, "veil_tombstones_out_total", route=pl.source,
                           purpose="support", reason="retention"),
                 timeout=90, what="3 retention tombstones on /metrics")
    except AssertionError as e:
        stop(w)
        raise AssertionError(f"{e}\n{stderr_text(w)[-4000:]}")
    assert stop(w) == 0
    stops = [json.loads(line) for line in stderr_text(w).splitlines()
             if '"event":"stop"' in line]
    assert stops, stderr_text(w)[-2000:]
    n = int(re.search(r"tombstones (\d+)", stops[-1]["msg"]).group(1))
    assert n == 3, stops[-1]["msg"]


def test_topics_lists_the_control_topic_when_a_purpose_can_halt(broker, tmp_path):
    plain = Pipeline(broker, str(tmp_path / "a"), partitions=1)
    r = veil_cmd("topics", "-c", plain.config)
    assert r.returncode == 0, r.stderr
    assert "veil.control" not in r.stdout
    pl = Pipeline(broker, str(tmp_path / "b"), partitions=1,
                  edits=[(ANA, ANA + "    guard: { on_leak: halt }\n")])
    with_control(pl, broker)
    r = veil_cmd("topics", "-c", pl.config)
    assert r.returncode == 0, r.stderr
    block = r.stdout[r.stdout.index(f"--topic '{pl.control}'"):]
    assert "--partitions 1" in block.splitlines()[0]
    assert "cleanup.policy=compact" in "\n".join(block.splitlines()[:3])


def report_of(pl, fmt="json"):
    r = veil_cmd("report", "-c", pl.config, "--format", fmt)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if fmt == "json" else r.stdout


def purpose_block(text, name):
    """The lines of `purpose NAME` in the text report."""
    block = text[text.index(f"\npurpose {name}\n") + 1:]
    return block[:block.find("\n\n")] if "\n\n" in block else block


def test_report_counts_halts_and_resumes(broker, tmp_path):
    port = free_port()
    pl = Pipeline(broker, str(tmp_path), partitions=1,
                  edits=[(ANA, ANA + "    guard: { on_leak: halt }\n")])
    with_control(pl, broker)
    with_metrics(pl, port)
    # One key, in order: record 2 leaks (halt 1), record 3 is held.
    rows = [("R-1", {"tier": PLANTED} if i == 2 else {}) for i in range(4)]
    pl.produce(frame_customers(pl, rows, 81))
    ana, mkt = pl.topics["analytics"], pl.topics["marketing"]
    w = pl.start()
    try:
        wait_for(lambda: len(by_source(consume_all(broker, mkt))) >= 4, timeout=90,
                 what="4 records on marketing")
        wait_for(lambda: len(letters(broker, pl)) >= 2, timeout=60,
                 what="2 held records")
        wait_for(metric_is(port, 1, "veil_purpose_halted", purpose="analytics"),
                 timeout=30, what="veil_purpose_halted{analytics} 1")
        # mid-way: one halt, no resume, halted now
        mid = report_of(pl)["purposes"]["analytics"]
        assert mid["halts"] == {"total": 1, "by_reason": {"leak": 1}}
        assert mid["resumes"] == 0 and mid["halted"] is True
        r = veil_cmd("guard", "resume", "-c", pl.config, "analytics")
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(metric_is(port, 0, "veil_purpose_halted", purpose="analytics"),
                 timeout=30, what="veil_purpose_halted{analytics} 0")
        # resumed: open again in the report (the worker audited it)
        wait_for(lambda: report_of(pl)["purposes"]["analytics"]["resumes"] == 1,
                 timeout=30, what="the resume in the report")
        after = report_of(pl)["purposes"]["analytics"]
        assert after["halted"] is False
        assert after["halts"]["total"] == 1
        # Then record 5 leaks again (halt 2) and record 6 is held.
        more = [("R-1", {"tier": PLANTED} if i == 1 else {}) for i in range(3)]
        pl.produce(frame_customers(pl, more, 82))
        wait_for(lambda: len(by_source(consume_all(broker, mkt))) >= 7, timeout=90,
                 what="7 records on marketing")
        wait_for(lambda: len(letters(broker, pl)) >= 4, timeout=60,
                 what="4 held records")
        wait_for(metric_is(port, 1, "veil_purpose_halted", purpose="analytics"),
                 timeout=30, what="veil_purpose_halted{analytics} 1 again")
    except AssertionError as e:
        stop(w)
        raise AssertionError(f"{e}\n{stderr_text(w)[-4000:]}")
    assert stop(w) == 0, stderr_text(w)[-3000:]
    assert len(by_source(consume_all(broker, ana))) == 3

    # What the test did: two halts (both leaks), one resume, halted at the
    # end; two records quarantined, two held, all of them analytics' own.
    events = [json.loads(m.value()) for m in consume_all(broker, pl.audit)]
    assert len([e for e in events if e["kind"] == "halt"]) == 2
    assert len([e for e in events if e["kind"] == "resume"]) == 1
    held = collections.Counter((headers(m)["veil.purpose"], headers(m)["veil.error"])
                               for m in letters(broker, pl))
    assert held == {("analytics", "leak-quarantined"): 2,
                    ("analytics", "purpose-halted"): 2}
    rep = report_of(pl)
    got = rep["purposes"]["analytics"]
    assert got["halts"] == {"total": 2, "by_reason": {"leak": 2}}
    assert got["resumes"] == 1
    assert got["halted"] is True
    assert got["dlq"] == {"leak-quarantined": 2, "purpose-halted": 2}
    assert rep["dlq"]["by_code"] == {"leak-quarantined": 2, "purpose-halted": 2}
    for other in ("marketing", "support"):
        p = rep["purposes"][other]
        assert p["halts"] == {"total": 0, "by_reason": {}}, other
        assert p["resumes"] == 0 and p["halted"] is False and p["dlq"] == {}, other
    text = report_of(pl, "text")
    block = purpose_block(text, "analytics")
    lines = {line[:28].strip(): line[28:].strip() for line in block.splitlines()[1:]}
    assert lines["halts"] == "2", block
    assert lines["by reason"] == "leak 2", block
    assert lines["resumes"] == "1", block
    assert lines["halted now"] == "YES", block
    assert lines["dead letters held"] == "leak-quarantined 2, purpose-halted 2", block
    mblock = purpose_block(text, "marketing").splitlines()[1:]
    assert {line[:28].strip(): line[28:].strip() for line in mblock}["halted now"] == "no"
    assert "jane.roe" not in text

    # A second worker of the group applies the same resume and audits it
    # too (same control record: same "at" and "by"), and says it applied
    # the second halt (halt-seen): neither is another resume or halt.
    resume, = [e for e in events if e["kind"] == "resume"]
    second_halt = [e for e in events if e["kind"] == "halt"][-1]
    twin = dict(resume, applied_by="veil-other-worker")
    seen = {"kind": "halt-seen", "purpose": "analytics", "reason": "leak",
            "by": second_halt["by"], "applied_by": "veil-other-worker",
            "at": second_halt["at"], "ts": second_halt["ts"] + 5}
    prod = ck.Producer({"bootstrap.servers": broker})
    for e in (twin, seen):
        prod.produce(pl.audit, key=b"other", value=json.dumps(e).encode())
    assert prod.flush(30) == 0
    again = report_of(pl)
    assert again["audit"]["counted"] == rep["audit"]["counted"] + 2
    got = again["purposes"]["analytics"]
    assert got["halts"] == {"total": 2, "by_reason": {"leak": 2}}
    assert got["resumes"] == 1 and got["halted"] is True
