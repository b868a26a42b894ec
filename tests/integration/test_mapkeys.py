"""test_mapkeys.py - map keys are data (DESIGN.md §5), end to end on `veil broker`: a map's label covers its keys, so a personal key never reaches a purpose that may not have it in clear."""
import random

import pytest

import test_worker
from helpers import VeilBroker, consume_all, wait_for
from test_worker import Pipeline, demo_produce, stderr_text, stop

ALIAS = "alias@example.net"
EDIT = ("      referrer: internal\n",
        "      referrer: internal\n      \"attributes{key}\": email\n")


@pytest.fixture(scope="module")
def outputs(veil, tmp_path_factory):
    """Four customers whose `attributes` map is keyed by an e-mail address
    (classified by the route's "attributes{key}": email), through one
    worker on a dev broker; returns the decoded outputs per purpose."""
    broker = VeilBroker(veil)
    broker.start()
    # the dev broker creates a topic the first time a client names it (it
    # has no CreateTopics)
    create_topic, test_worker.create_topic = test_worker.create_topic, \
        lambda *a, **k: None
    try:
        pl = Pipeline(broker.bootstrap, str(tmp_path_factory.mktemp("mapkeys")),
                      edits=[EDIT])
        rng = random.Random(5)
        customers = [demo_produce.customer(rng, i) for i in range(4)]
        for c in customers:
            c["attributes"] = {ALIAS: "smb", "segment": "web"}
        pl.produce([(c["customer_id"].encode(),
                     demo_produce.frame(pl.schema_id, pl.schema, c))
                    for c in customers])
        w = pl.start()
        try:
            for t in pl.topics.values():
                wait_for(lambda t=t: len(consume_all(broker.bootstrap, t)) >= 4,
                         timeout=90, what=f"4 records on {t}")
        except AssertionError:
            print(stderr_text(w)[-4000:])
            raise
        assert stop(w) == 0
        out = {}
        for p, t in pl.topics.items():
            msgs = consume_all(broker.bootstrap, t)
            out[p] = [(m.value(), pl.decode(m.value())[1]) for m in msgs]
        yield out
    finally:
        test_worker.create_topic = create_topic
        broker.stop()


def test_hashed_purpose_never_sees_the_key_in_clear(outputs):
    # analytics hashes email: the key becomes the address's token, the
    # value (internal) is kept
    for raw, rec in outputs["analytics"]:
        assert ALIAS.encode() not in raw
        keys = sorted(rec["attributes"])
        assert "segment" not in keys, "every key of the map is an email"
        assert len(keys) == 2
        for k in keys:
            assert k.startswith("k1:") and len(k) == 3 + 43
        assert sorted(rec["attributes"].values()) == ["smb", "web"]
    # the same address gives the same token in every record (joinable)
    tokens = {tuple(sorted(r["attributes"])) for _, r in outputs["analytics"]}
    assert len(tokens) == 1


def test_purpose_licensed_for_email_keeps_the_key(outputs):
    # support keeps confidential data: the keys stay as they came
    for _, rec in outputs["support"]:
        assert rec["attributes"] == {ALIAS: "smb", "segment": "web"}


def test_purpose_that_drops_the_label_drops_the_map(outputs):
    # marketing drops internal: the map and its keys are gone
    for raw, rec in outputs["marketing"]:
        assert "attributes" not in rec
        assert ALIAS.encode() not in raw
