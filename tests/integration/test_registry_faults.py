"""test_registry_faults.py - the worker against a schema registry that fails
(issue 12, item 3), on the real Kafka: HTTP 500s for a while and slow
answers. The worker waits and retries; a good record never lands in the DLQ
for an outside failure, and every record reaches every purpose once. (The
registry down at start is test_worker.py's
test_registry_down_pauses_without_dlq_then_resumes.) Also: a SIGHUP that
changes `registry.url` moves a running worker to the new registry, and one
naming a registry that does not answer keeps the old client (against
`veil broker`)."""
import json
import random
import signal
import struct

import pytest

import test_worker
from helpers import VeilBroker, consume_all, wait_for
from sr_double import SchemaRegistryDouble
from test_guard import by_source, mock_create_topic
from test_worker import Pipeline, demo_produce, headers, stderr_text, stop


def pipeline_on(reg, kafka, tmp_path, n, seed):
    with open(demo_produce.SCHEMA_PATH) as f:
        sid = reg.register("customers-value", json.dumps(json.load(f)))
    pl = Pipeline(kafka, str(tmp_path), partitions=1, registry_url=reg.url)
    rng = random.Random(seed)
    msgs = []
    for i in range(n):
        c = demo_produce.customer(rng, i)
        msgs.append((c["customer_id"].encode(), demo_produce.frame(sid, pl.schema, c)))
    return pl, msgs, sid


def exactly_once(kafka, pl, n):
    assert consume_all(kafka, pl.dlq) == []
    for t in pl.topics.values():
        got = consume_all(kafka, t)
        assert sorted(headers(m)["veil.source"] for m in got) == \
            sorted(f"{pl.source}/0/{i}" for i in range(n)), t


def test_registry_500s_pause_without_dlq_then_resume(veil, kafka, tmp_path):
    reg = SchemaRegistryDouble()
    n = 12
    pl, msgs, sid = pipeline_on(reg, kafka, tmp_path, n, 17)
    # Far more failures than the client's own retries (3): the worker
    # itself must wait.
    reg.fail_next = 40
    pl.produce(msgs)
    w = pl.start()
    try:
        wait_for(lambda: sum('"event":"retry"' in line for line in w.snapshot()[1]) >= 2,
                 timeout=90, what="the worker retrying while the registry answers 500")
        assert consume_all(kafka, pl.dlq) == []
        reg.fail_next = 0
        for t in pl.topics.values():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= n, timeout=90,
                     what=f"{n} records on {t} once the registry answers again")
    finally:
        rc = stop(w)
        reg.stop()
    assert rc == 0, stderr_text(w)[-3000:]
    exactly_once(kafka, pl, n)
    log = stderr_text(w)
    assert "HTTP 500" in log, log[-3000:]
    # The derived schemas were registered once the registry came back.
    got = consume_all(kafka, pl.topics["analytics"])
    assert struct.unpack(">bI", got[0].value()[:5])[1] in reg.by_id


def test_slow_registry_is_waited_for_not_dead_lettered(veil, kafka, tmp_path):
    reg = SchemaRegistryDouble()
    n = 8
    pl, msgs, sid = pipeline_on(reg, kafka, tmp_path, n, 19)
    # Slower than the client's timeout (edited to 1 s) for a while, then
    # slow but within it.
    with open(pl.config) as f:
        text = f.read()
    text = text.replace(f"url: {reg.url}", f"url: {reg.url}\n  timeout: 1s\n  retries: 0")
    assert "timeout: 1s" in text
    with open(pl.config, "w") as f:
        f.write(text)
    reg.delay_s = 2.5
    pl.produce(msgs)
    w = pl.start()
    try:
        wait_for(lambda: sum('"event":"retry"' in line for line in w.snapshot()[1]) >= 2,
                 timeout=90, what="the worker retrying while the registry times out")
        assert consume_all(kafka, pl.dlq) == []
        reg.delay_s = 0.3
        for t in pl.topics.values():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= n, timeout=120,
                     what=f"{n} records on {t} once the registry answers in time")
    finally:
        rc = stop(w)
        reg.stop()
    assert rc == 0, stderr_text(w)[-3000:]
    exactly_once(kafka, pl, n)


@pytest.fixture
def broker(veil):
    b = VeilBroker(veil)
    bootstrap = b.start()
    saved = test_worker.create_topic
    test_worker.create_topic = mock_create_topic
    yield bootstrap
    test_worker.create_topic = saved
    b.stop()


def test_sighup_moves_the_worker_to_a_changed_registry(broker, tmp_path):
    with open(demo_produce.SCHEMA_PATH) as f:
        schema = json.load(f)
    old, new = SchemaRegistryDouble(), SchemaRegistryDouble()
    dead = SchemaRegistryDouble(start=False)  # nobody answers on its port
    try:
        moved_registry(broker, tmp_path, schema, old, new, dead)
    finally:
        old.stop()
        new.stop()


def moved_registry(broker, tmp_path, schema, old, new, dead):
    # The new registry holds the customer schema under id 2, which the old
    # one does not know: records framed with it resolve through the new
    # registry or not at all.
    assert old.register("customers-value", json.dumps(schema)) == 1
    assert new.register("other-value", json.dumps(dict(schema, name="Other"))) == 1
    assert new.register("customers-value", json.dumps(schema)) == 2
    pl = Pipeline(broker, str(tmp_path), partitions=1, registry_url=old.url)
    rng = random.Random(23)
    where = {}  # (partition, offset) -> index of the record sent

    def batch(sid, n):
        msgs = []
        for _ in range(n):
            c = demo_produce.customer(rng, len(where) + len(msgs))
            msgs.append((c["customer_id"].encode(), demo_produce.frame(sid, pl.schema, c)))
        first = len(where)
        where.update({k: first + i for k, i in pl.produce(msgs).items()})

    def arrived(n):
        return all(len(by_source(consume_all(broker, t))) >= n for t in pl.topics.values())

    def log_lines(event):
        return [line for line in w.snapshot()[1] if f'"event":"{event}"' in line]

    def point_at(url, was):
        with open(pl.config) as f:
            text = f.read()
        assert f"url: {was} " in text
        with open(pl.config, "w") as f:
            f.write(text.replace(f"url: {was} ", f"url: {url} "))
        w.proc.send_signal(signal.SIGHUP)

    w = pl.start()
    try:
        batch(1, 3)
        wait_for(lambda: arrived(3), timeout=90, what="3 records through the old registry")
        # A registry that does not answer: the reload is refused, the old
        # client stays and records keep flowing through it.
        point_at(dead.url, old.url)
        wait_for(lambda: log_lines("reload-rejected"), timeout=60,
                 what="the reload to a dead registry refused")
        rejected = log_lines("reload-rejected")[0]
        assert "registry client" in rejected and dead.url in rejected, rejected
        assert not log_lines("reload")
        batch(1, 2)
        wait_for(lambda: arrived(5), timeout=60, what="2 records after the refused reload")
        # The second registry: records framed with its id 2 come out.
        point_at(new.url, dead.url)
        wait_for(lambda: [line for line in log_lines("reload") if "new registry client" in line],
                 timeout=60, what="the reload onto the new registry")
        batch(2, 3)
        wait_for(lambda: arrived(8), timeout=90, what="3 records through the new registry")
    except AssertionError as e:
        stop(w)
        raise AssertionError(f"{e}\n{stderr_text(w)[-4000:]}")
    assert stop(w) == 0, stderr_text(w)[-3000:]
    assert consume_all(broker, pl.dlq) == []
    assert ("GET", "/schemas/ids/2") in new.requests
    assert ("GET", "/schemas/ids/2") not in old.requests
    # The last three came out framed with derived schemas the worker
    # registered on the new registry.
    for t in pl.topics.values():
        last = []
        for m in by_source(consume_all(broker, t)).values():
            _, part, off = headers(m)["veil.source"].rsplit("/", 2)
            if where[(int(part), int(off))] >= 5:
                last.append(struct.unpack(">bI", m.value()[:5])[1])
        assert len(last) == 3, t
        assert all(i in new.by_id for i in last), (t, last)


def test_sighup_rereads_a_rotated_bearer_token(broker, tmp_path):
    """The config text stays the same; only the token file changes (and the
    registry stops taking the old token): a SIGHUP is enough."""
    with open(demo_produce.SCHEMA_PATH) as f:
        schema = json.load(f)
    reg = SchemaRegistryDouble(bearer="token-one-0123456789")
    try:
        assert reg.register("customers-value", json.dumps(schema)) == 1
        token = tmp_path / "registry.token"
        token.write_text("token-one-0123456789\n")
        token.chmod(0o600)
        # Two pipelines, each with its own registry client to rebuild (on the
        # mock a partition that moves is read again: counts are ">=" here).
        pl = Pipeline(broker, str(tmp_path), partitions=1, registry_url=reg.url,
                      threads=2)
        with open(pl.config) as f:
            text = f.read()
        assert f"url: {reg.url} " in text
        with open(pl.config, "w") as f:
            f.write(text.replace(f"url: {reg.url} ",
                                 f"url: {reg.url}\n  bearer_token_file: {token}\n  #", 1))
        rng = random.Random(29)
        where = {}

        def batch(sid, n):
            msgs = []
            for _ in range(n):
                c = demo_produce.customer(rng, len(where) + len(msgs))
                msgs.append((c["customer_id"].encode(), demo_produce.frame(sid, pl.schema, c)))
            first = len(where)
            where.update({k: first + i for k, i in pl.produce(msgs).items()})

        def arrived(n):
            return all(len(by_source(consume_all(broker, t))) >= n for t in pl.topics.values())

        w = pl.start()
        try:
            batch(1, 2)
            wait_for(lambda: arrived(2), timeout=90, what="2 records with the first token")
            # Rotation: the registry takes only the new token from now on.
            token.write_text("token-two-9876543210\n")
            reg.bearer = "token-two-9876543210"
            w.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: sum('"event":"reload"' in line for line in w.snapshot()[1]) >= 2,
                     timeout=60, what="both pipelines reloaded")
            # A schema id the worker has not fetched yet: a lookup now.
            sid2 = reg.register("customers-value", json.dumps(dict(schema, doc="v2")))
            assert sid2 not in (None, 1)
            batch(sid2, 2)
            wait_for(lambda: arrived(4), timeout=90, what="2 records with the rotated token")
        except AssertionError as e:
            stop(w)
            raise AssertionError(f"{e}\n{stderr_text(w)[-4000:]}")
        assert stop(w) == 0, stderr_text(w)[-3000:]
        assert consume_all(broker, pl.dlq) == []
        assert ("GET", f"/schemas/ids/{sid2}") in reg.requests
        log = stderr_text(w)
        assert "token-one" not in log and "token-two" not in log
        assert "the registry settings changed: a new registry client" in log
    finally:
        reg.stop()
