"""test_shred_broker.py - crypto-shredding's basic path (issue 16) on
`veil broker`, the quick companion of test_shred.py (real Kafka): marketing
encrypts email per subject; SIV tokens are equal within a subject only; the
key topic holds one wrapped key per subject under a 16-byte keyed hash;
`veil reveal` opens a token with its subject's key; /metrics counts the keys
made and the cache's hits and misses."""
import random

import pytest

import test_worker
from helpers import VeilBroker, consume_all, wait_for
from test_guard import by_source, mock_create_topic, run_until
from test_shred import PER_SUBJECT, ref_of, reveal
from test_worker import Pipeline, demo_produce
from test_worker_ops import free_port, get, parse_metrics, value, with_metrics


@pytest.fixture(scope="module")
def broker(veil):
    """A `veil broker` of the module's own (it serves no CreateTopics: a
    metadata request creates a topic)."""
    b = VeilBroker(veil)
    bootstrap = b.start()
    saved = test_worker.create_topic
    test_worker.create_topic = mock_create_topic
    yield bootstrap
    test_worker.create_topic = saved
    b.stop()


def shred_pipeline(broker, root):
    pl = Pipeline(broker, root, partitions=1, edits=[PER_SUBJECT])
    pl.keys = f"{pl.prefix}.subject-keys"
    mock_create_topic(broker, pl.keys)
    with open(pl.config) as f:
        text = f.read()
    old = "erasure: veil.erasure"
    assert old in text
    with open(pl.config, "w") as f:
        f.write(text.replace(old, f"erasure: {pl.prefix}.erasure, "
                                  f"subject_keys: {pl.keys}"))
    return pl


def test_per_subject_tokens_keys_reveal_and_metrics(broker, tmp_path):
    port = free_port()
    pl = shred_pipeline(broker, str(tmp_path))
    with_metrics(pl, port)
    rng = random.Random(161)
    a, b = demo_produce.customer(rng, 1), demo_produce.customer(rng, 2)
    b["email"] = a["email"]              # one value, two subjects
    a2 = dict(a, name="Second Record")   # the same subject and value again
    rows = [a, a2, b]
    where = pl.produce([(c["customer_id"].encode(),
                         demo_produce.frame(pl.schema_id, pl.schema, c)) for c in rows])
    src = {i: f"{pl.source}/{p}/{o}" for (p, o), i in where.items()}

    def scrape():
        # Counters settle just after the commit that made the records
        # visible.
        def done():
            s = parse_metrics(get(f"http://127.0.0.1:{port}/metrics")[1])[0]
            return s if value(s, "veil_subject_keys_created_total") else None
        return wait_for(done, timeout=30, what="subject keys in /metrics")

    log, s = run_until(pl, broker, {pl.topics["marketing"]: 3}, before_stop=scrape)
    assert consume_all(broker, pl.dlq) == [], log[-2000:]
    mk = by_source(consume_all(broker, pl.topics["marketing"]))
    tokens = []
    for i in range(3):
        _, rec = pl.decode(mk[(src[i], False)].value())
        tokens.append(rec["email"])
    assert all(":S:" in t for t in tokens), tokens
    assert tokens[0] == tokens[1]        # one subject, one value: joinable
    assert tokens[0] != tokens[2]        # two subjects, one value: not
    assert a["email"] not in tokens[0]

    live = {}
    for m in consume_all(broker, pl.keys):
        live[m.key()] = m.value()
    live = {k: v for k, v in live.items() if v is not None}
    assert set(live) == {ref_of(tokens[0]), ref_of(tokens[2])}
    for k, v in live.items():
        assert len(k) == 16
        assert a["customer_id"].encode() not in k + v
        assert b["customer_id"].encode() not in k + v

    for t, want in ((tokens[0], a["email"]), (tokens[2], b["email"])):
        r = reveal(pl, t)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == want

    # The mock shows aborted batches' records too, so counts are at least
    # what one clean pass gives: two subjects made, the second record of
    # subject a served from the cache, nothing destroyed.
    assert value(s, "veil_subject_keys_created_total") == 2, log[-2000:]
    assert value(s, "veil_subject_keys_cache_misses_total") == 2
    assert value(s, "veil_subject_keys_cache_hits_total") >= 1
    assert value(s, "veil_subject_keys_destroyed_total") == 0
    assert value(s, "veil_subject_keys_rewrapped_total") == 0
