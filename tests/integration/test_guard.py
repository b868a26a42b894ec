"""test_guard.py - licence conditions in the stream (issue 13): source
validation (`accept:`) and the consent gate (`requires:`), end to end
against `veil broker` with records produced by confluent_kafka."""
import json
import random
import subprocess

import pytest
from confluent_kafka.admin import AdminClient

import test_worker
from helpers import VeilBroker, consume_all, wait_for
from sr_double import SchemaRegistryDouble
from test_worker import Pipeline, demo_produce, headers, stderr_text, stop


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


def run_until(pl, broker, counts, timeout=90):
    """`veil run` until each topic of `counts` ({topic: n}) holds at least n
    records, then SIGTERM (the open batch is committed); returns the log."""
    w = pl.start()
    try:
        for t, n in counts.items():
            wait_for(lambda t=t, n=n: len(consume_all(broker, t)) >= n,
                     timeout=timeout, what=f"{n} records on {t}")
    except AssertionError:
        stop(w)
        raise AssertionError(stderr_text(w)[-3000:])
    rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    return stderr_text(w)


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
    for t in pl.topics.values():
        got = consume_all(broker, t)
        assert len(got) == good
        for m in got:
            _, part, off = headers(m)["veil.source"].rsplit("/", 2)
            assert where[(int(part), int(off))] % 3 != 0
    dlq = consume_all(broker, pl.dlq)
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
        got = consume_all(broker, t)
        assert len(got) == 5, sorted(headers(m)["veil.source"] for m in got)


def test_accept_config_errors_name_file_line_col(veil, tmp_path):
    cfg = tmp_path / "v.yaml"
    base = open(demo_produce.SCHEMA_PATH.replace("schemas/customers-value.avsc",
                                                 "config/veil.yaml")).read()
    cfg.write_text(base.replace("    key_class: customer_id\n",
                                "    key_class: customer_id\n"
                                "    accept: { records: [com.example..Bad] }\n"))
    r = subprocess.run([veil, "check", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{cfg}:" in r.stderr
    assert "routes[0].accept.records[0]: 'com.example..Bad' is not an Avro full name" \
        in r.stderr, r.stderr
