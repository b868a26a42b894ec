"""test_shred.py - crypto-shredding (issue 16) on the real single-node Kafka:
marketing encrypts email per subject (SIV); equal values of one subject give
equal tokens and of two subjects do not; the subject's wrapped key lands on
the compacted key topic under a keyed hash; a restart with a cold cache
reuses the key; an erasure tombstones the key in the worker's transaction,
`veil reveal` then says "subject erased" (exit 1), and after compaction the
wrapped key is gone from the topic."""
import base64
import json
import os
import random
import signal
import subprocess

import confluent_kafka as ck
import pytest

from helpers import consume_all, wait_for
from test_kafka import create_topic
from test_retention import COMPACT, customers, retention_pipeline, veil_erase
from test_worker import HMAC_KEY, demo_produce, stderr_text, stop

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PER_SUBJECT = ("      email: keep\n",
               "      email: { encrypt: { per_subject: true } }\n")


def reveal(pl, token):
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
    return subprocess.run([os.environ["VEIL"], "reveal", "-c", pl.config, token],
                          capture_output=True, text=True, env=env, timeout=120)


def ref_of(token):
    """The subject ref a per-subject token carries (its first 16 bytes)."""
    kid, mode, b64 = token.split(":", 2)
    assert mode == "S", token
    raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
    return raw[:16]


def marketing_emails(kafka, pl):
    """{(source partition, offset): email token} on the marketing topic."""
    out = {}
    for m in consume_all(kafka, pl.topics["marketing"]):
        if m.value() is None:
            continue
        src = dict(m.headers())["veil.source"].decode()
        _, rec = pl.decode(m.value())
        out[src] = rec["email"]
    return out


def frame(pl, c):
    return (c["customer_id"].encode(), demo_produce.frame(pl.schema_id, pl.schema, c))


def shred_pipeline(kafka, root):
    """A retention pipeline whose marketing purpose encrypts email per
    subject, with its own compacted key topic."""
    pl = retention_pipeline(kafka, root, edits=[PER_SUBJECT])
    pl.keys = f"{pl.prefix}.subject-keys"
    create_topic(kafka, pl.keys, partitions=2, config=dict(COMPACT))
    with open(pl.config) as f:
        text = f.read()
    old = f"erasure: {pl.erasure}"
    assert old in text
    text = text.replace(old, f"erasure: {pl.erasure}, subject_keys: {pl.keys}")
    with open(pl.config, "w") as f:
        f.write(text)
    return pl


@pytest.fixture(scope="module")
def shred(veil, kafka, tmp_path_factory):
    pl = shred_pipeline(kafka, str(tmp_path_factory.mktemp("shred")))
    rng = random.Random(16)
    a, b = demo_produce.customer(rng, 1), demo_produce.customer(rng, 2)
    b["email"] = a["email"]              # one value, two subjects
    a2 = dict(a, name="Second Record")   # the same subject and value again
    log = []
    w = pl.start()
    try:
        where = pl.produce([frame(pl, a), frame(pl, a2), frame(pl, b)])
        src = {i: f"{pl.source}/{p}/{o}" for (p, o), i in where.items()}
        toks = wait_for(lambda: (lambda m: len(m) >= 3 and m)(marketing_emails(kafka, pl)),
                        timeout=90, what="three marketing records")
        tokens = [toks[src[i]] for i in range(3)]
        keys_before = consume_all(kafka, pl.keys)
        revealed_before = [reveal(pl, t) for t in tokens]
    except AssertionError:
        print(stderr_text(w)[-4000:])
        raise
    rc1 = stop(w)
    log.append(stderr_text(w))

    # A restart: nothing cached; a new record of subject a reuses its key.
    w = pl.start()
    try:
        a3 = dict(a, email="after.restart@example.com")
        (p, o), = pl.produce([frame(pl, a3)])
        s3 = f"{pl.source}/{p}/{o}"
        t3 = wait_for(lambda: marketing_emails(kafka, pl).get(s3), timeout=90,
                      what="the record after the restart")
        keys_after_restart = consume_all(kafka, pl.keys)
        revealed_restart = reveal(pl, t3)

        # Erasure of subject a: its key goes in the worker's transaction.
        veil_erase(pl, a["customer_id"])

        def erased():
            ev = [json.loads(m.value()) for m in consume_all(kafka, pl.audit)]
            return [e for e in ev if e.get("kind") == "erasure-completed"]

        events = wait_for(erased, timeout=90, what="erasure-completed")
        revealed_erased = [reveal(pl, t) for t in (tokens[0], t3)]
        revealed_other = reveal(pl, tokens[2])
    except AssertionError:
        print("\n".join(log)[-3000:], stderr_text(w)[-4000:])
        raise
    rc2 = stop(w)
    log.append(stderr_text(w))
    return {"pl": pl, "a": a, "b": b, "tokens": tokens, "t3": t3, "rc": (rc1, rc2),
            "keys_before": keys_before, "keys_after_restart": keys_after_restart,
            "revealed_before": revealed_before, "revealed_restart": revealed_restart,
            "events": events, "revealed_erased": revealed_erased,
            "revealed_other": revealed_other, "log": "\n".join(log)}


def test_workers_exit_cleanly(shred):
    assert shred["rc"] == (0, 0), shred["log"][-3000:]


def test_tokens_are_per_subject_and_siv_equal_within_a_subject_only(shred):
    t = shred["tokens"]
    assert all(":S:" in x for x in t), t
    assert t[0] == t[1]              # one subject, one value: joinable
    assert t[0] != t[2]              # two subjects, one value: not
    assert ref_of(t[0]) != ref_of(t[2])
    assert shred["a"]["email"] not in t[0]


def test_tokens_reveal_with_the_subject_key(shred):
    for r, want in zip(shred["revealed_before"],
                       [shred["a"]["email"], shred["a"]["email"], shred["b"]["email"]]):
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == want


def test_key_topic_holds_one_wrapped_key_per_subject_under_a_keyed_hash(shred):
    recs = [m for m in shred["keys_before"] if m.value() is not None]
    refs = {m.key() for m in recs}
    assert refs == {ref_of(shred["tokens"][0]), ref_of(shred["tokens"][2])}
    for m in recs:
        assert len(m.key()) == 16
        for secret in (shred["a"]["customer_id"], shred["b"]["customer_id"]):
            assert secret.encode() not in m.key() + m.value()
        assert m.value()[0] == 1                      # wrap version
        assert m.value()[2:2 + m.value()[1]] == b"k1"  # wrapping key id


def test_cold_restart_reuses_the_subject_key(shred):
    assert ref_of(shred["t3"]) == ref_of(shred["tokens"][0])
    live = [m for m in shred["keys_after_restart"] if m.value() is not None]
    assert len(live) == 2, "a restart must not make a second key for a subject"
    r = shred["revealed_restart"]
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "after.restart@example.com"


def test_erasure_destroys_the_key_and_reveal_says_subject_erased(shred):
    ev = shred["events"][-1]
    assert ev["subject_key_tombstones"] >= 1
    for r in shred["revealed_erased"]:
        assert r.returncode == 1
        assert r.stderr.strip() == "veil reveal: subject erased"
        assert r.stdout == ""
    other = shred["revealed_other"]
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == shred["b"]["email"]


def test_after_compaction_the_wrapped_key_is_gone(shred, kafka):
    pl, ref = shred["pl"], ref_of(shred["tokens"][0])

    prod = ck.Producer({"bootstrap.servers": kafka})

    def gone():
        # Kafka never compacts the active segment: later writes (here
        # tombstones of random refs, which match no subject) roll it.
        for part in (0, 1):
            prod.produce(pl.keys, key=os.urandom(16), value=None, partition=part)
        prod.flush(10)
        msgs = [m for m in consume_all(kafka, pl.keys) if m.key() == ref]
        return all(m.value() is None for m in msgs)

    wait_for(gone, timeout=120, interval=1.5, what="compaction of the erased subject's key")
    r = reveal(pl, shred["tokens"][0])
    assert r.returncode == 1
    assert r.stderr.strip() == "veil reveal: subject erased"


def test_kill9_never_leaves_a_token_without_its_key(veil, kafka, tmp_path):
    pl = shred_pipeline(kafka, str(tmp_path))
    n = 3000
    pl.produce(customers(pl, 9, n))
    w = pl.start()
    try:
        wait_for(lambda: len(marketing_emails(kafka, pl)) >= 200, timeout=120,
                 what="some committed output before the kill")
    finally:
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(30)
        w.close()
    w = pl.start()
    try:
        toks = wait_for(lambda: (lambda m: len(m) >= n and m)(marketing_emails(kafka, pl)),
                        timeout=240, what="every record after the restart")
    except AssertionError:
        print(stderr_text(w)[-4000:])
        raise
    finally:
        stop(w)
    live = {}
    for m in consume_all(kafka, pl.keys):
        live[m.key()] = m.value()
    live = {k for k, v in live.items() if v is not None}
    refs = {ref_of(t) for t in toks.values()}
    assert refs <= live, f"{len(refs - live)} token(s) without a committed key"
    assert len(refs) == n           # one key per subject, none made twice


def test_topics_lists_the_key_topic_compacted_only_with_per_subject(veil, tmp_path):
    with open(os.path.join(REPO, "config", "veil.example.yaml")) as f:
        text = f.read()
    off = tmp_path / "off.yaml"
    on = tmp_path / "on.yaml"
    off.write_text(text)
    old = "          per_subject: false "
    assert old in text
    on.write_text(text.replace(old, "          per_subject: true  "))
    outs = {}
    for name, path in (("off", off), ("on", on)):
        r = subprocess.run([veil, "topics", "-c", str(path)], capture_output=True,
                           text=True, timeout=60, cwd=os.path.join(REPO, "config"))
        assert r.returncode == 0, r.stderr
        outs[name] = r.stdout
    assert "veil.subject-keys" not in outs["off"]
    block = outs["on"][outs["on"].index("--topic 'veil.subject-keys'"):]
    block = block[:block.index("\n\n")] if "\n\n" in block else block
    assert "cleanup.policy=compact" in block, block



def test_a_bounded_index_fetches_spilled_subjects_and_never_makes_a_second_key(
        veil, kafka, tmp_path, monkeypatch):
    """The index bounded at 2 subjects (and the key cache at 1): past the
    bound, subjects keep only their key-topic position and their wrapped key
    is fetched back when a record needs it. The same 12 subjects three
    times, a restart (cold), a fourth time: one key each, SIV tokens equal
    round after round, and /metrics shows the fetches."""
    from test_worker_ops import free_port, get, parse_metrics, value, with_metrics

    monkeypatch.setenv("VEIL_SHRED_INDEX_MAX", "2")
    monkeypatch.setenv("VEIL_SHRED_CACHE_MAX", "1")
    port = free_port()
    pl = shred_pipeline(kafka, str(tmp_path))
    with_metrics(pl, port)
    rng = random.Random(1616)
    cs = [demo_produce.customer(rng, i) for i in range(12)]
    msgs = [frame(pl, c) for c in cs]
    who = {}     # source offset label -> customer index

    def round_(n):
        where = pl.produce(msgs)
        who.update({f"{pl.source}/{p}/{o}": i for (p, o), i in where.items()})
        return wait_for(lambda: (lambda m: len(m) >= 12 * n and m)(marketing_emails(kafka, pl)),
                        timeout=120, what=f"round {n} on marketing")

    def fetched():
        s, _ = parse_metrics(get(f"http://127.0.0.1:{port}/metrics")[1])
        return value(s, "veil_subject_keys_fetched_total") or None

    w = pl.start()
    try:
        for n in (1, 2, 3):
            round_(n)
        n_fetched = wait_for(fetched, timeout=30, what="fetches in /metrics")
    except AssertionError:
        print(stderr_text(w)[-4000:])
        raise
    finally:
        rc1 = stop(w)
    w = pl.start()
    try:
        toks = round_(4)
    except AssertionError:
        print(stderr_text(w)[-4000:])
        raise
    finally:
        rc2 = stop(w)
    assert (rc1, rc2) == (0, 0), stderr_text(w)[-3000:]
    assert n_fetched >= 1
    by_customer = {}
    for src, t in toks.items():
        by_customer.setdefault(who[src], set()).add(t)
    assert sorted(by_customer) == list(range(12))
    for i, ts in by_customer.items():
        assert len(ts) == 1, f"customer {i}: {len(ts)} different tokens"
    live = {}
    for m in consume_all(kafka, pl.keys):
        live[m.key()] = m.value()
    live = {k for k, v in live.items() if v is not None}
    assert len(live) == 12, "one key per subject, none made twice"
    r = reveal(pl, next(iter(by_customer[5])))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == cs[5]["email"]
