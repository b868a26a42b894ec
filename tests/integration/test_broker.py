"""test_broker.py - `veil broker` (librdkafka's mock cluster) served to clients we did not write: kcat and confluent_kafka."""
import json
import signal
import subprocess

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic
import pytest

from helpers import (LineCollector, VeilBroker, consume_all, kcat, kcat_consume, kcat_produce,
                     unique, wait_for)


def run_veil(veil, *args, timeout=30):
    return subprocess.run([veil, *args], capture_output=True, text=True, timeout=timeout)


def test_help_exits_zero(veil):
    res = run_veil(veil, "broker", "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: veil broker ")
    assert "--brokers N" in res.stdout and "--topic NAME:PARTITIONS" in res.stdout


@pytest.mark.parametrize("args", [
    ["--brokers", "0"],
    ["--brokers", "two"],
    ["--brokers"],
    ["--topic", "t1"],
    ["--topic", "t1:"],
    ["--topic", "t1:0"],
    ["--topic", ":4"],
    ["--bogus"],
    ["stray"],
    ["--topic", "a:4", "--topic", "a:2"],
], ids=lambda a: " ".join(a))
def test_bad_arguments_exit_2_with_usage(veil, args):
    # A broker that started anyway would serve forever: the timeout fails it.
    res = run_veil(veil, "broker", *args, timeout=15)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    assert "usage: veil broker" in res.stderr
    assert res.stderr.startswith("veil broker: ")


def test_bootstrap_first_line_and_broker_count(veil):
    b = VeilBroker(veil, "--brokers", "3")
    try:
        bootstrap = b.start()
        hosts = bootstrap.split(",")
        assert len(hosts) == 3
        assert all(h.startswith("127.0.0.1:") for h in hosts)
        md = json.loads(kcat(["-L", "-b", bootstrap, "-J"]))
        assert sorted(x["name"] for x in md["brokers"]) == sorted(hosts)
        assert sorted(x["id"] for x in md["brokers"]) == [1, 2, 3]
    finally:
        code, err = b.stop()
    assert code == 0, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_stops_cleanly(veil, sig):
    b = VeilBroker(veil, "--topic", "t1:4")
    bootstrap = b.start()
    # Serving before the signal: metadata answers with the pre-created topic.
    md = kcat(["-L", "-b", bootstrap, "-t", "t1"])
    assert 'topic "t1" with 4 partitions' in md
    code, err = b.stop(sig)
    # Under ASan a leak at exit would turn this into a non-zero code.
    assert code == 0, err


def test_keyed_produce_and_consume_with_kcat(mock_broker):
    bootstrap = mock_broker.bootstrap
    run = unique("kv")
    pairs = [(f"key{i % 10}", f"{run}-value{i}") for i in range(60)]
    kcat_produce(bootstrap, "t1", pairs)

    rows = kcat_consume(bootstrap, "t1")
    got = sorted((k, v) for _, k, v in rows if v.startswith(run))
    assert got == sorted(pairs)
    assert len(rows) == len(pairs)
    # Same key, same partition; ten keys land on more than one of the 4.
    part_of = {}
    for p, k, _ in rows:
        assert part_of.setdefault(k, p) == p, f"{k} on two partitions"
    assert len(set(part_of.values())) > 1
    # Order within a key is production order.
    for key in {k for k, _ in pairs}:
        assert [v for _, k, v in rows if k == key] == [v for k, v in pairs if k == key]


def _assigned(err_lines):
    """The partitions kcat -G last reported as assigned (None before the
    first assignment or after a revoke)."""
    current = None
    for line in err_lines:
        if "rebalanced" not in line:
            continue
        if "): assigned: " in line:
            items = line.split("): assigned: ", 1)[1].split(", ")
            current = {int(x.split("[")[1].rstrip("]")) for x in items}
        elif "): revoked: " in line:
            current = None
    return current


def _eof_partitions(err_lines):
    return {int(line.split("[")[1].split("]")[0])
            for line in err_lines if line.startswith("% Reached end of topic")}


def test_consumer_group_of_two_kcat_members_splits_partitions(mock_broker):
    bootstrap = mock_broker.bootstrap
    group = unique("group")
    run = unique("grp")
    members = []
    try:
        for _ in range(2):
            proc = subprocess.Popen(
                ["kcat", "-u", "-b", bootstrap, "-G", group, "-o", "beginning",
                 "-X", "heartbeat.interval.ms=500", "-X", "session.timeout.ms=6000",
                 "-f", "%p\t%k\t%s\n", "t1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            members.append(LineCollector(proc))

        def settled():
            # Each member holds an assignment and has fetched to the end of
            # each of its partitions since it got them.
            sets = []
            for m in members:
                _, err = m.snapshot()
                a = _assigned(err)
                if not a:
                    return None
                last = max(i for i, line in enumerate(err) if "): assigned: " in line)
                if not a <= _eof_partitions(err[last:]):
                    return None
                sets.append(a)
            return sets

        sets = wait_for(settled, timeout=45, what="both group members to hold partitions")
        a, b = sets
        assert a and b, sets
        assert not (a & b), f"overlapping assignments {sets}"
        assert a | b == {0, 1, 2, 3}

        pairs = [(f"gkey{i}", f"{run}-{i}") for i in range(40)]
        kcat_produce(bootstrap, "t1", pairs)

        def delivered():
            rows = []
            for idx, m in enumerate(members):
                out, _ = m.snapshot()
                for line in out:
                    p, k, v = line.split("\t", 2)
                    if v.startswith(run):
                        rows.append((idx, int(p), k, v))
            return rows if len(rows) >= len(pairs) else None

        rows = wait_for(delivered, timeout=30, what="the group to consume every record")
        assert sorted((k, v) for _, _, k, v in rows) == sorted(pairs), "lost or duplicated"
        for idx, p, _, _ in rows:
            assert p in sets[idx], f"member {idx} got partition {p} outside {sets[idx]}"
        assert {idx for idx, _, _, _ in rows} == {0, 1}
    finally:
        for m in members:
            m.close()


def test_confluent_kafka_round_trip(mock_broker):
    bootstrap = mock_broker.bootstrap
    run = unique("ck")
    p = ck.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors = []
    for i in range(20):
        p.produce("t1", key=f"k{i}", value=f"{run}-{i}",
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0
    assert errors == []
    rows = kcat_consume(bootstrap, "t1")
    assert sorted(v for _, _, v in rows if v.startswith(run)) == \
        sorted(f"{run}-{i}" for i in range(20))


def test_mock_auto_creates_topics_named_in_metadata(mock_broker):
    """Documents the mock, not Veil: a metadata request naming an unknown
    topic creates it with 4 partitions even from a client that forbids
    auto-creation, and CreateTopics is not served."""
    bootstrap = mock_broker.bootstrap
    name = unique("auto")
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"),
                     "allow.auto.create.topics": False})
    try:
        md = c.list_topics(name, timeout=10)
    finally:
        c.close()
    assert md.topics[name].error is None
    assert len(md.topics[name].partitions) == 4

    admin = AdminClient({"bootstrap.servers": bootstrap})
    other = unique("created")
    fut = admin.create_topics([NewTopic(other, 2, 1)],
                              request_timeout=3, operation_timeout=3)[other]
    with pytest.raises(ck.KafkaException):
        fut.result(timeout=30)



def test_mock_shows_aborted_records_to_read_committed(mock_broker):
    """Documents the mock, not Veil: it does not hide aborted transactional
    records from read_committed consumers (test_kafka.py proves the real
    broker does), so it must never be used to prove exactly-once."""
    bootstrap = mock_broker.bootstrap
    topic = unique("txn")
    p = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("txid")})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, key=b"c", value=b"committed")
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, key=b"a", value=b"aborted")
    assert p.flush(30) == 0
    p.abort_transaction(30)
    seen = [m.value() for m in consume_all(bootstrap, topic, "read_committed")]
    assert sorted(seen) == [b"aborted", b"committed"]
