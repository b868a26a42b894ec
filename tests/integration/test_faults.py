"""test_faults.py - "fatal means abort": `veil run` under injected broker faults.

On the fault broker (librdkafka's mock cluster, tests/tools/fault_broker):
retriable errors are retried and every input arrives, abortable ones abort,
rewind and redeliver, fatal ones stop the worker with a non-zero exit and
the reason in its log. The mock shows aborted records to read_committed
readers and keeps no transactional offsets, so there the tests assert what
it can show: exit codes, the logged reason, every input on every purpose at
least once. Exactly-once is proved on the real Kafka: a worker fenced by a
second producer with its transactional.id, and a record whose output is
larger than message.max.bytes (it goes to the DLQ as too-large)."""
import json
import random
import re
import shutil
import signal
import subprocess
import threading

import confluent_kafka as ck
import pytest

import test_worker
from helpers import consume_all, wait_for
from test_worker import PURPOSES, Pipeline, demo_produce, headers, stop, stderr_text
from test_worker_ops import free_port, get, parse_metrics, value, with_metrics

# --- shared ------------------------------------------------------------------


def make_records(pl, n, seed, start=0):
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        c = demo_produce.customer(rng, i)
        out.append((c["customer_id"].encode(), demo_produce.frame(pl.schema_id, pl.schema, c)))
    return out


def sources(pl, bootstrap, topic):
    """The veil.source of every record on a topic, in topic order."""
    return [headers(m)["veil.source"] for m in consume_all(bootstrap, topic)]


def src(pl, where_key):
    part, off = where_key
    return f"{pl.source}/{part}/{off}"


def log_events(collector):
    """The worker's JSON log lines (other stderr lines are skipped)."""
    events = []
    for line in collector.snapshot()[1]:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def says(collector, pattern):
    """Whether the worker itself (an error event of its JSON log, or the
    command's last line "veil run: ...") names the reason; librdkafka's own
    log lines do not count."""
    for line in collector.snapshot()[1]:
        try:
            e = json.loads(line)
        except ValueError:
            if line.startswith("veil run:") and re.search(pattern, line, re.I):
                return True
            continue
        if (isinstance(e, dict) and e.get("level") == "error" and e.get("event") != "rdkafka"
                and re.search(pattern, str(e.get("msg", "")), re.I)):
            return True
    return False


def alive(collector):
    """For wait_for predicates: a worker that exited fails the wait at once,
    with its log, instead of letting the deadline run out."""
    rc = collector.proc.poll()
    if rc is not None:
        raise AssertionError(f"veil run exited {rc}:\n{stderr_text(collector)[-3000:]}")
    return True


def wait_all_arrive(pl, bootstrap, collector, where, timeout=120):
    """Waits until every input in `where` is on every purpose topic (at
    least once), with the worker still running."""
    want = {src(pl, k) for k in where}
    for p, t in pl.topics.items():
        wait_for(lambda t=t: alive(collector) and want <= set(sources(pl, bootstrap, t)),
                 timeout=timeout, what=f"{len(want)} inputs on {t}")


def transactions(port, outcome):
    """veil_transactions_total{outcome=...} from the worker's /metrics."""
    status, body, _ = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body
    samples, _ = parse_metrics(body)
    return value(samples, "veil_transactions_total", outcome=outcome) or 0


def thread_stacks(pid):
    """Where a hung worker's threads are (gdb, where the machine has it)."""
    if not shutil.which("gdb"):
        return "(no gdb for thread stacks)"
    r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 25"],
                       capture_output=True, text=True, timeout=120)
    return "\n".join(l for l in r.stdout.splitlines() if l.startswith(("#", "Thread")))


def exit_code(collector, timeout=90):
    """Waits for a worker that should stop by itself; returns its code."""
    try:
        collector.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stacks = thread_stacks(collector.proc.pid)
        collector.proc.kill()
        collector.proc.wait()
        collector.close()
        raise AssertionError(f"veil run did not exit within {timeout} s:\n"
                             f"{stderr_text(collector)[-3000:]}\n{stacks}")
    collector.close()
    return collector.proc.returncode


# --- on the fault broker -----------------------------------------------------


@pytest.fixture
def mock_pipeline(fault_broker, tmp_path, monkeypatch):
    """A Pipeline (config/veil.yaml on private topics) on the fault broker:
    its topics are created through the tool, as the mock cannot serve
    CreateTopics."""
    monkeypatch.setattr(test_worker, "create_topic",
                        lambda _bootstrap, name, partitions=1, **_: fault_broker.create_topic(
                            name, partitions))

    def make(**kw):
        return Pipeline(fault_broker.bootstrap, str(tmp_path), **kw)
    return make


def run_through_fault(fb, pl, inject, api, n=40, seed=1):
    """Produces n inputs, injects a fault, starts the worker, waits for every
    input on every purpose and for the fault to have been served; then a
    second round of inputs proves the worker still works. Returns the
    worker (still running) and every input's position."""
    where = pl.produce(make_records(pl, n, seed))
    inject()
    w = pl.start()
    try:
        wait_all_arrive(pl, fb.bootstrap, w, where)
        fb.wait_consumed(api)
        more = pl.produce(make_records(pl, n, seed + 1, start=n))
        wait_all_arrive(pl, fb.bootstrap, w, more)
        where.update(more)
    except BaseException:
        print(stderr_text(w)[-4000:])
        stop(w)
        raise
    return w, where


# Retriable: the coordinator is busy or moved. librdkafka or the worker
# retries; the batch commits once the errors are gone.
RETRIABLE = [
    ("EndTxn", "COORDINATOR_LOAD_IN_PROGRESS"),
    ("EndTxn", "NOT_COORDINATOR"),
    ("TxnOffsetCommit", "COORDINATOR_LOAD_IN_PROGRESS"),
    ("TxnOffsetCommit", "NOT_COORDINATOR"),
    ("AddOffsetsToTxn", "CONCURRENT_TRANSACTIONS"),
    ("AddPartitionsToTxn", "CONCURRENT_TRANSACTIONS"),
    ("InitProducerId", "COORDINATOR_LOAD_IN_PROGRESS"),
    ("Produce", "NOT_ENOUGH_REPLICAS"),
]


@pytest.mark.parametrize("api,code", RETRIABLE, ids=[f"{a}-{c}" for a, c in RETRIABLE])
def test_retriable_errors_are_retried_and_every_input_arrives(fault_broker, mock_pipeline,
                                                              api, code):
    pl = mock_pipeline(partitions=2)
    w, where = run_through_fault(
        fault_broker, pl, lambda: fault_broker.push_broker_errors(api, f"{code}*3"), api)
    rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    assert not [e for e in log_events(w) if e.get("event") == "fatal"], stderr_text(w)[-3000:]


# Abortable for a transactional producer in librdkafka 2.0.2
# (rd_kafka_error_txn_requires_abort): the records of the transaction
# failed, so the worker aborts it, rewinds its consumer to the batch start
# and processes the batch again. A record whose write failed must still
# arrive: only a redelivery can bring it.
#
# Not here: Produce TOPIC_AUTHORIZATION_FAILED. librdkafka caches it as the
# topic's state, so the next produce() to that topic fails at once, in the
# call: a fault of the deployment (an ACL), not of one transaction.
ABORTABLE = [
    ("Produce", "INVALID_RECORD"),
    ("Produce", "INVALID_MSG"),
    ("AddPartitionsToTxn", "TOPIC_AUTHORIZATION_FAILED"),
    ("AddOffsetsToTxn", "GROUP_AUTHORIZATION_FAILED"),
    ("TxnOffsetCommit", "ILLEGAL_GENERATION"),
]


@pytest.mark.parametrize("api,code", ABORTABLE, ids=[f"{a}-{c}" for a, c in ABORTABLE])
def test_abortable_errors_abort_rewind_and_redeliver(fault_broker, mock_pipeline, api, code):
    pl = mock_pipeline(partitions=2)
    port = free_port()
    with_metrics(pl, port)
    w, where = run_through_fault(
        fault_broker, pl, lambda: fault_broker.push_broker_errors(api, code), api)
    try:
        # The fault cost a transaction: it was aborted, not committed with
        # a hole in it, and the batch went through again.
        wait_for(lambda: transactions(port, "aborted") >= 1, timeout=30,
                 what="an aborted transaction in /metrics")
        assert transactions(port, "committed") >= 1
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    assert not [e for e in log_events(w) if e.get("event") == "fatal"], stderr_text(w)[-3000:]


def test_an_abort_that_is_retried_still_redelivers(fault_broker, mock_pipeline):
    """A failed write makes the transaction abortable; the abort's own
    EndTxn then meets a busy coordinator twice. The abort is retried, not
    given up, and the batch still arrives."""
    pl = mock_pipeline(partitions=2)
    port = free_port()
    with_metrics(pl, port)

    def inject():
        fault_broker.push_broker_errors("Produce", "INVALID_RECORD")
        fault_broker.push_broker_errors("EndTxn", "COORDINATOR_LOAD_IN_PROGRESS*2")
    w, where = run_through_fault(fault_broker, pl, inject, "Produce")
    try:
        fault_broker.wait_consumed("EndTxn")
        wait_for(lambda: transactions(port, "aborted") >= 1, timeout=30,
                 what="an aborted transaction in /metrics")
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]


# Fatal: the producer is fenced or not allowed to be transactional. The
# worker must stop, say why, and exit non-zero.
FATAL = [
    ("InitProducerId", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", r"authori[sz]"),
    ("EndTxn", "PRODUCER_FENCED", r"fenc"),
    ("EndTxn", "INVALID_PRODUCER_EPOCH", r"fenc|epoch"),
    ("EndTxn", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", r"authori[sz]"),
    ("AddPartitionsToTxn", "PRODUCER_FENCED", r"fenc"),
    ("TxnOffsetCommit", "INVALID_PRODUCER_EPOCH", r"fenc|epoch"),
]


@pytest.mark.parametrize("api,code,reason", FATAL, ids=[f"{a}-{c}" for a, c, _ in FATAL])
def test_fatal_errors_stop_the_worker_with_the_reason(fault_broker, mock_pipeline, api, code,
                                                      reason):
    pl = mock_pipeline(partitions=2)
    where = pl.produce(make_records(pl, 20, 3))
    fault_broker.push_broker_errors(api, code)
    w = pl.start()
    rc = exit_code(w)
    log = stderr_text(w)
    assert rc != 0, log[-3000:]
    fault_broker.wait_consumed(api)
    assert says(w, reason), log[-3000:]
    # ... and never a value of a record.
    for k, _ in make_records(pl, 20, 3):
        assert k.decode() not in log
    if api == "InitProducerId":
        # Refused before its first transaction: it wrote nothing at all.
        for t in pl.topics.values():
            assert sources(pl, fault_broker.bootstrap, t) == [], t
    else:
        # The mock shows aborted writes too; all it can prove is that they
        # were of the inputs, each at most once.
        for t in pl.topics.values():
            got = sources(pl, fault_broker.bootstrap, t)
            assert set(got) <= {src(pl, k) for k in where} and len(got) == len(set(got)), t


def test_shutdown_ends_an_endless_commit_retry(fault_broker, mock_pipeline):
    """The coordinator never finishes loading: every EndTxn, commit and
    abort alike, fails retriably. SIGTERM must still end the worker (the
    retry loops honour shutdown) instead of retrying for ever."""
    pl = mock_pipeline(partitions=1)
    pl.produce(make_records(pl, 10, 4))
    # Each answer comes 200 ms late: the errors outlast the test by far.
    many = 3000
    fault_broker.push_broker_errors("EndTxn", f"COORDINATOR_LOAD_IN_PROGRESS*{many}@200")
    w = pl.start()
    try:
        wait_for(lambda: alive(w) and fault_broker.pending("EndTxn") < many - 2, timeout=90,
                 what="the worker retrying EndTxn")
    except BaseException:
        stop(w)
        raise
    w.proc.send_signal(signal.SIGTERM)
    # Without a deadline the worker would retry for as long as the errors
    # last (over ten minutes).
    exit_code(w, timeout=180)


def test_broker_down_then_up_loses_nothing(fault_broker, mock_pipeline):
    pl = mock_pipeline(partitions=2)
    where = pl.produce(make_records(pl, 30, 5))
    w = pl.start()
    try:
        wait_all_arrive(pl, fault_broker.bootstrap, w, where)

        def complaints():
            return sum(e.get("level") in ("warn", "error") for e in log_events(w))
        before = complaints()
        fault_broker.down()
        wait_for(lambda: alive(w) and complaints() > before,
                 timeout=60, what="the worker noticing the broker is down")
        fault_broker.up()
        more = pl.produce(make_records(pl, 30, 6, start=30))
        wait_all_arrive(pl, fault_broker.bootstrap, w, more)
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]


# --- record too large -------------------------------------------------------

# support's notes become much longer than the source's: each SSN (11
# characters) becomes a 30-character marker. With message.max.bytes below
# that output and above everything else the worker writes (the dead letter
# of the record included), only that one output is too large.
BIG_MARKER = "[{detector}:redacted-for-support]"
MAX_BYTES = 4000


def big_record(pl, seed=99):
    rng = random.Random(seed)
    c = demo_produce.customer(rng, 10_000)
    c["notes"] = " ".join(f"{rng.randrange(100, 900):03d}-{rng.randrange(10, 99):02d}-"
                          f"{rng.randrange(1000, 9999):04d}" for _ in range(140))
    return c["customer_id"].encode(), demo_produce.frame(pl.schema_id, pl.schema, c)


def too_large_pipeline(make, **kw):
    return make(extra_kafka={"message.max.bytes": MAX_BYTES},
                edits=[('replace: "[{detector}]"', f'replace: "{BIG_MARKER}"')], **kw)


def check_too_large(pl, bootstrap, where, big_at, exactly_once):
    """The big record is in the DLQ once, with veil.error too-large, and on
    no purpose topic partly; every other input is on every purpose (once,
    when exactly_once)."""
    dlq = [m for m in consume_all(bootstrap, pl.dlq)
           if headers(m)["veil.source"] == src(pl, big_at)]
    assert len(dlq) == (1 if exactly_once else len(dlq)) and dlq, "no dead letter"
    for m in dlq:
        h = headers(m)
        assert h["veil.error"] == "too-large"
        assert h.get("veil.error.detail")
    others = {src(pl, k) for k in where if k != big_at}
    counts = {}
    for p, t in pl.topics.items():
        got = sources(pl, bootstrap, t)
        counts[p] = got.count(src(pl, big_at))
        assert others <= set(got), f"{t}: inputs missing"
        if exactly_once:
            rest = [s for s in got if s != src(pl, big_at)]
            assert sorted(rest) == sorted(others), f"{t}: duplicates"
    # All of the record's purposes or none: never a part of it.
    assert len(set(counts.values())) == 1 and max(counts.values()) <= 1, counts


def test_too_large_output_goes_to_the_dlq_on_the_mock(fault_broker, mock_pipeline):
    pl = too_large_pipeline(mock_pipeline, partitions=1)
    records = make_records(pl, 10, 7)
    records.insert(5, big_record(pl))
    where = pl.produce(records)
    big_at = next(k for k, i in where.items() if i == 5)
    w = pl.start()
    try:
        wait_for(lambda: alive(w) and any(headers(m)["veil.source"] == src(pl, big_at)
                                          for m in consume_all(fault_broker.bootstrap, pl.dlq)),
                 timeout=90, what="the too-large record in the DLQ")
        wait_all_arrive(pl, fault_broker.bootstrap, w,
                        {k: i for k, i in where.items() if k != big_at})
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    check_too_large(pl, fault_broker.bootstrap, where, big_at, exactly_once=False)


# --- exactly once, on the real Kafka -----------------------------------------


def test_too_large_output_goes_to_the_dlq_exactly_once(kafka, tmp_path):
    pl = too_large_pipeline(lambda **kw: Pipeline(kafka, str(tmp_path), **kw), partitions=2)
    records = make_records(pl, 60, 8)
    records.insert(30, big_record(pl))
    where = pl.produce(records)
    big_at = next(k for k, i in where.items() if i == 30)
    w = pl.start()
    try:
        wait_for(lambda: w.proc.poll() is not None or consume_all(kafka, pl.dlq), timeout=120,
                 what="the too-large record in the DLQ (or the worker stopping)")
        if w.proc.poll() is not None:
            # Whatever made it stop, what it committed must hold: never a
            # part of a record, nothing twice.
            for t in pl.topics.values():
                got = sources(pl, kafka, t)
                assert len(got) == len(set(got)), f"{t}: duplicates"
            counts = {p: sources(pl, kafka, t).count(src(pl, big_at))
                      for p, t in pl.topics.items()}
            assert len(set(counts.values())) == 1, \
                f"the too-large record was committed to some purposes only: {counts}"
            raise AssertionError(f"veil run exited {w.proc.returncode} on a too-large "
                                 f"record:\n{stderr_text(w)[-3000:]}")
        wait_all_arrive(pl, kafka, w, {k: i for k, i in where.items() if k != big_at})
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    check_too_large(pl, kafka, where, big_at, exactly_once=True)


def test_fenced_worker_exits_without_committing_then_restart_is_exactly_once(kafka, tmp_path):
    """A second producer with the worker's transactional.id fences it while
    records keep coming. The worker must exit non-zero, saying so, and the
    restarted worker must leave every input exactly once on every purpose
    and in the audit totals."""
    pl = Pipeline(kafka, str(tmp_path), partitions=2)
    txn_id = f"{pl.prefix}-g-w1"  # group-instance, as the Pipeline's config sets them
    where = pl.produce(make_records(pl, 100, 9))
    w = pl.start()
    stop_feed = threading.Event()
    fed = {}

    def feed():
        i = 100
        while not stop_feed.is_set() and i < 3000:
            fed.update(pl.produce(make_records(pl, 20, 1000 + i, start=i)))
            i += 20

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        wait_for(lambda: alive(w) and consume_all(kafka, pl.topics["marketing"]),
                 timeout=120, what="a first committed batch")
        feeder.start()
        fencer = ck.Producer({"bootstrap.servers": kafka, "transactional.id": txn_id})
        fencer.init_transactions(60)
        rc = exit_code(w, timeout=120)
    finally:
        stop_feed.set()
        feeder.join(120)
        if w.proc.poll() is None:
            stop(w)
    log = stderr_text(w)
    assert rc != 0, log[-3000:]
    assert says(w, r"fenc|epoch"), log[-3000:]
    where.update(fed)
    print(f"fenced after {len(where)} inputs; the worker's last lines:\n{log[-1500:]}")

    w2 = pl.start()
    try:
        wait_all_arrive(pl, kafka, w2, where, timeout=180)
    finally:
        rc2 = stop(w2)
    assert rc2 == 0, stderr_text(w2)[-3000:]
    want = sorted(src(pl, k) for k in where)
    for p, t in pl.topics.items():
        assert sorted(sources(pl, kafka, t)) == want, f"{t}: loss or duplicates"
    totals = {p: 0 for p in PURPOSES}
    for m in consume_all(kafka, pl.audit):
        ev = json.loads(m.value())
        totals[ev["purpose"]] += ev["records"]
    assert totals == {p: len(where) for p in PURPOSES}
