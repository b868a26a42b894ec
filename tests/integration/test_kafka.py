"""test_kafka.py - the real single-node Apache Kafka the suite runs against: what the mock cannot do (transactions, compaction)."""
import time

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import consume_all, kcat_consume, kcat_produce, unique, wait_for


def create_topic(bootstrap, name, partitions=1, config=None, timeout=30):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})],
                              request_timeout=timeout, operation_timeout=timeout)[name]
    fut.result(timeout=timeout)

    # The metadata of a fresh topic reaches the broker's cache a moment
    # after CreateTopics returns.
    def ready():
        md = admin.list_topics(name, timeout=5)
        t = md.topics.get(name)
        return t is not None and t.error is None and len(t.partitions) == partitions

    wait_for(ready, timeout=timeout, what=f"topic {name} in metadata")


def produce_checked(producer, topic, records, timeout=30):
    """Produces (key, value) pairs and fails on any delivery error."""
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for k, v in records:
        producer.produce(topic, key=k, value=v, on_delivery=on_delivery)
    assert producer.flush(timeout) == 0, "records left unsent"
    assert errors == [], errors


def test_kcat_produce_and_consume(kafka):
    topic = unique("kcat")
    create_topic(kafka, topic, partitions=3)
    pairs = [(f"key{i % 7}", f"value{i}") for i in range(30)]
    kcat_produce(kafka, topic, pairs)
    rows = kcat_consume(kafka, topic)
    assert sorted((k, v) for _, k, v in rows) == sorted(pairs)
    for key in {k for k, _ in pairs}:
        assert len({p for p, k, _ in rows if k == key}) == 1


def test_confluent_kafka_round_trip_with_group(kafka):
    topic = unique("ck")
    create_topic(kafka, topic, partitions=2)
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(25)]
    produce_checked(ck.Producer({"bootstrap.servers": kafka, "enable.idempotence": True}),
                    topic, records)

    group = unique("group")
    c = ck.Consumer({"bootstrap.servers": kafka, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 45
        while len(got) < len(records) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append((m.key(), m.value()))
        assert sorted(got) == sorted(records)
        # A synchronous commit of the group's position: the coordinator works.
        committed = c.commit(asynchronous=False)
        assert sum(tp.offset for tp in committed) == len(records)
    finally:
        c.close()


def test_transactions_hide_aborted_records_from_read_committed(kafka):
    topic = unique("txn")
    create_topic(kafka, topic, partitions=2)
    p = ck.Producer({"bootstrap.servers": kafka, "transactional.id": unique("txid")})
    p.init_transactions(30)

    committed = [(f"c{i}".encode(), f"committed-{i}".encode()) for i in range(6)]
    aborted = [(f"a{i}".encode(), f"aborted-{i}".encode()) for i in range(4)]

    p.begin_transaction()
    for k, v in committed[:3]:
        p.produce(topic, key=k, value=v)
    p.commit_transaction(30)

    p.begin_transaction()
    for k, v in aborted:
        p.produce(topic, key=k, value=v)
    # Flushed to the log before the abort, so the broker holds them and only
    # the transaction markers can hide them.
    assert p.flush(30) == 0
    p.abort_transaction(30)

    p.begin_transaction()
    for k, v in committed[3:]:
        p.produce(topic, key=k, value=v)
    p.commit_transaction(30)

    rc = [(m.key(), m.value()) for m in consume_all(kafka, topic, "read_committed")]
    assert sorted(rc) == sorted(committed)

    ru = [(m.key(), m.value()) for m in consume_all(kafka, topic, "read_uncommitted")]
    assert sorted(ru) == sorted(committed + aborted)


def test_compaction_drops_tombstoned_key(kafka):
    topic = unique("compact")
    create_topic(kafka, topic, partitions=1, config={
        "cleanup.policy": "compact",
        "segment.ms": "1000",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "0",
        "min.compaction.lag.ms": "0",
    })
    p = ck.Producer({"bootstrap.servers": kafka, "linger.ms": 0})
    produce_checked(p, topic, [(b"k", b"v1"), (b"keep", b"kept")])
    produce_checked(p, topic, [(b"k", None)])

    filler = [0]

    def compacted():
        # Segments roll only when a record arrives after segment.ms, and
        # the cleaner never touches the active segment: keep appending.
        produce_checked(p, topic, [(f"filler{filler[0] % 5}".encode(), b"f")])
        filler[0] += 1
        msgs = consume_all(kafka, topic, "read_uncommitted")
        k_values = [m.value() for m in msgs if m.key() == b"k" and m.value() is not None]
        return (msgs,) if not k_values else None

    (msgs,) = wait_for(compacted, timeout=90, interval=0.5,
                       what="the cleaner to drop the tombstoned key's value")
    kept = [m.value() for m in msgs if m.key() == b"keep"]
    assert kept == [b"kept"]
    # The log really was compacted, not truncated: offset 0 (k=v1) is gone
    # while later offsets remain.
    assert msgs and msgs[0].offset() > 0
