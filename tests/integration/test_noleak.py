"""test_noleak.py - no leaks, checked (issue 12, item 5).

The whole suite feeds leakwatch.WATCH (see leakwatch.py and conftest.py,
which fails the session on any finding). Here: the watch itself finds what
it must (a recorded value, a detector's match, key bytes in every form) and
lets the test setup through; and one pipeline at log level debug, with dead
letters, an upstream delete, an erasure, the audit chain and the /metrics
page, says nothing it should not, checked at once."""
import base64
import os
import random
import subprocess

from helpers import consume_all, wait_for
from leakwatch import WATCH, Watch
from test_retention import retention_pipeline
from test_worker import HMAC_KEY, demo_produce, stderr_text, stop
from test_worker_ops import free_port, get, with_metrics

KEY = b"a-master-key-for-the-watch-self-test-0123456789"


def test_the_watch_finds_values_detectors_and_key_bytes(veil):
    w = Watch()
    c = w.customer(demo_produce.customer(random.Random(3), 1))
    w.key("self-test key", KEY)
    w.output("clean", '{"event":"dlq","msg":"bad-magic at t/0/7: byte 0"} 127.0.0.1:9092')
    assert w.findings(veil) == []

    cases = {
        "email": f"msg: sent to {c['email']}",
        "phone": f"... {c['phone'] or '+1 512 555 0199'} ...",
        "full_name": f"name={c['full_name']}",
        "veil scan": "unrecorded but detectable: 078-05-1120 and jane.doe@example.org",
        "(raw)": "key " + KEY.decode(),
        "(hex)": "key " + KEY.hex(),
        "(base64)": "key " + base64.b64encode(b"x" + KEY).decode(),
    }
    for kind, text in cases.items():
        one = Watch()
        one.customer(c)
        one.key("self-test key", KEY)
        one.output("planted", text)
        found = one.findings(veil)
        assert any(kind in f for f in found), (kind, found)
        # A finding names the output and the kind, never the value.
        for f in found:
            for v in (c["email"], c["full_name"], KEY.decode(), KEY.hex()):
                assert v not in f


def test_a_pipeline_at_debug_level_leaks_nothing(veil, kafka, tmp_path):
    # Its own erasure topic: a request on the shared one would reach the
    # pipelines of later tests, whose keys are the same demo ids.
    pl = retention_pipeline(kafka, str(tmp_path))
    port = free_port()
    with_metrics(pl, port)
    with open(pl.config) as f:
        assert "level: debug" in f.read()
    rng = random.Random(23)
    customers = [demo_produce.customer(rng, i) for i in range(30)]
    msgs = [(c["customer_id"].encode(), demo_produce.frame(pl.schema_id, pl.schema, c))
            for c in customers]
    good = msgs[0][1]
    msgs += [(customers[0]["customer_id"].encode(), b"\x09" + good[1:]),
             (customers[1]["customer_id"].encode(), good[:len(good) // 2]),
             (customers[2]["customer_id"].encode(), None)]
    pl.produce(msgs)
    before = len(WATCH.outputs)
    w = pl.start()
    try:
        for t in pl.topics.values():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= 31, timeout=120,
                     what=f"30 records and a tombstone on {t}")
        wait_for(lambda: len(consume_all(kafka, pl.dlq)) >= 2, timeout=60,
                 what="two dead letters")
        r = subprocess.run([veil, "erase", "-c", pl.config,
                            customers[3]["customer_id"], customers[4]["customer_id"]],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY))
        assert r.returncode == 0, r.stderr[-2000:]
        for t in pl.topics.values():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= 33, timeout=120,
                     what=f"the erasure tombstones on {t}")
        status, body, _ = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "veil_" in body
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
    r = subprocess.run([veil, "audit", "verify", "-c", pl.config], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY))
    assert r.returncode == 0, r.stderr[-2000:]
    audit = consume_all(kafka, pl.audit)
    assert audit, "no audit events"

    mine = WATCH.outputs[before:]
    kinds = {where.split()[0] for where, _ in mine}
    # The check saw every kind of output, so zero findings means something.
    assert {"output", "GET", "audit", "dlq", "veil"} <= kinds, kinds
    assert sum(1 for where, _ in mine if where.startswith("output of veil run")) >= 10
    for c in customers:
        assert c["email"] in WATCH.values
    assert WATCH.findings(veil) == []
