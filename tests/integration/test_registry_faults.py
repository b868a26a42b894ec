"""test_registry_faults.py - the worker against a schema registry that fails
(issue 12, item 3), on the real Kafka: HTTP 500s for a while and slow
answers. The worker waits and retries; a good record never lands in the DLQ
for an outside failure, and every record reaches every purpose once. (The
registry down at start is test_worker.py's
test_registry_down_pauses_without_dlq_then_resumes.)"""
import json
import random
import struct

from helpers import consume_all, wait_for
from sr_double import SchemaRegistryDouble
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
