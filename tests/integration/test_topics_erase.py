"""test_topics_erase.py - `veil topics` (printed kafka-topics.sh commands run against the real Kafka, --apply through the Admin API, settings checked with confluent_kafka's describe_configs) and `veil erase` (requests read back with confluent_kafka, record keys recomputed here with Python's own HMAC/HKDF, keys never printed)."""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from helpers import consume_all, private_key, unique, wait_for
from test_kafka import create_topic

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DAY = 86400000
HMAC_KEY = "topics-erase-test-master-key-0123456789abcdef"
# Purpose → (retention ms) in config/veil.yaml.
RETENTION = {"analytics": 90 * DAY, "marketing": 30 * DAY, "support": 12 * 3600000}


def veil_run(veil, *args, env=None, input_text=None, timeout=90):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([veil, *args], capture_output=True, text=True, env=e,
                          input=input_text, timeout=timeout)


def pipeline(tmp_path, kafka=None, prefix=None):
    """config/veil.yaml copied with its own topic names (a unique prefix);
    returns (config path, {role: topic})."""
    prefix = prefix or unique("te")
    with open(os.path.join(REPO, "config", "veil.yaml")) as f:
        text = f.read()
    names = {p: f"{prefix}.customers.{p}" for p in RETENTION}
    names.update(source=f"{prefix}.customers", ledger=f"{prefix}.retention",
                 audit=f"{prefix}.audit", dlq=f"{prefix}.dlq", erasure=f"{prefix}.erasure")
    text = text.replace("source: customers", f"source: {names['source']}")
    for p in RETENTION:
        text = text.replace(f"{p}: customers.{p}", f"{p}: {names[p]}")
    text = text.replace(
        "topics: { dlq: veil.dlq, audit: veil.audit, ledger: veil.retention, erasure: veil.erasure }",
        f"topics: {{ dlq: {names['dlq']}, audit: {names['audit']}, "
        f"ledger: {names['ledger']}, erasure: {names['erasure']} }}")
    text = text.replace("hmac_key_file: dev-hmac.key",
                        f"hmac_key_file: {private_key(tmp_path)}")
    text = text.replace("url: file://../schemas", f"url: file://{REPO}/schemas")
    if kafka:
        text = re.sub(r"bootstrap\.servers: \S+.*", f"bootstrap.servers: {kafka}", text)
    for t in names.values():
        assert t in text, t
    path = tmp_path / "veil.yaml"
    path.write_text(text)
    return str(path), names


def describe(kafka, topics):
    """{topic: {config name: value}} with confluent_kafka's AdminClient."""
    admin = AdminClient({"bootstrap.servers": kafka})
    futs = admin.describe_configs([ConfigResource("topic", t) for t in topics],
                                  request_timeout=30)
    out = {}
    for res, fut in futs.items():
        out[res.name] = {k: v.value for k, v in fut.result(timeout=30).items()}
    return out


def partition_count(kafka, topic):
    admin = AdminClient({"bootstrap.servers": kafka})
    md = admin.list_topics(topic, timeout=10)
    assert md.topics[topic].error is None, md.topics[topic].error
    return len(md.topics[topic].partitions)


def check_settings(kafka, names, partitions):
    """The topics exist on the real Kafka with the settings veil topics
    chose (DESIGN: compacted purpose topics matching their licence)."""
    conf = describe(kafka, [names[r] for r in
                            (*RETENTION, "ledger", "audit", "dlq", "erasure")])
    for p, ret in RETENTION.items():
        c = conf[names[p]]
        assert c["cleanup.policy"] == "compact", (p, c["cleanup.policy"])
        assert int(c["max.compaction.lag.ms"]) == min(ret, DAY), p
        assert int(c["delete.retention.ms"]) == min(ret, DAY), p
        assert partition_count(kafka, names[p]) == partitions
    assert conf[names["ledger"]]["cleanup.policy"] == "compact"
    assert partition_count(kafka, names["ledger"]) == partitions
    assert conf[names["audit"]]["cleanup.policy"] == "delete"
    assert int(conf[names["audit"]]["retention.ms"]) >= 365 * DAY
    assert conf[names["dlq"]]["cleanup.policy"] == "delete"
    assert int(conf[names["dlq"]]["retention.ms"]) == 7 * DAY
    assert conf[names["erasure"]]["cleanup.policy"] == "delete"
    assert partition_count(kafka, names["erasure"]) == 1


# A stand-in for Kafka's kafka-topics.sh: parses the options the real tool
# takes (unknown ones fail, as they do there), logs the call, and creates
# the topic on the real broker with those settings, so Kafka itself judges
# the config names and values.
FAKE_KAFKA_TOPICS = r'''#!{python}
import argparse, json, os, sys
from confluent_kafka.admin import AdminClient, NewTopic
p = argparse.ArgumentParser(prog="kafka-topics.sh", allow_abbrev=False)
p.add_argument("--bootstrap-server", required=True)
p.add_argument("--create", action="store_true", required=True)
p.add_argument("--if-not-exists", action="store_true")
p.add_argument("--topic", required=True)
p.add_argument("--partitions", type=int, required=True)
p.add_argument("--replication-factor", type=int, default=-1)
p.add_argument("--config", action="append", default=[])
a = p.parse_args()
configs = dict(c.split("=", 1) for c in a.config)
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({{"bootstrap": a.bootstrap_server, "topic": a.topic,
                        "partitions": a.partitions, "rf": a.replication_factor,
                        "if_not_exists": a.if_not_exists, "configs": configs}}) + "\n")
if os.environ.get("FAKE_CREATE"):
    admin = AdminClient({{"bootstrap.servers": a.bootstrap_server}})
    fut = admin.create_topics([NewTopic(a.topic, a.partitions, a.replication_factor,
                                        config=configs)], operation_timeout=30)[a.topic]
    fut.result(timeout=60)
'''


def fake_tools(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "kafka-topics.sh"
    tool.write_text(FAKE_KAFKA_TOPICS.format(python=sys.executable))
    tool.chmod(0o755)
    return str(bindir), str(tmp_path / "calls.jsonl")


def run_script(script, bindir, log, env):
    e = dict(os.environ)
    e["PATH"] = bindir + os.pathsep + e["PATH"]
    e["FAKE_LOG"] = log
    e.update(env)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          env=e, timeout=120)


def read_calls(log):
    with open(log) as f:
        return {c["topic"]: c for c in map(json.loads, f)}


# ---- veil topics ------------------------------------------------------------


def test_topics_prints_commands_for_the_demo_config(veil, tmp_path):
    cfg = os.path.join(REPO, "config", "veil.yaml")
    r = veil_run(veil, "topics", "-c", cfg)
    assert r.returncode == 0, r.stderr
    script = r.stdout
    assert script.startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0

    bindir, log = fake_tools(tmp_path)
    # Without the source's partition count the script refuses to run.
    res = run_script(script, bindir, log, {})
    assert res.returncode != 0
    assert "PARTITIONS_CUSTOMERS" in res.stderr
    assert not os.path.exists(log)

    res = run_script(script, bindir, log, {"PARTITIONS_CUSTOMERS": "6",
                                           "BOOTSTRAP": "broker:9092"})
    assert res.returncode == 0, res.stderr
    calls = read_calls(log)
    assert set(calls) == {"customers.analytics", "customers.marketing",
                          "customers.support", "veil.retention", "veil.audit",
                          "veil.dlq", "veil.erasure"}
    for p, ret in RETENTION.items():
        c = calls[f"customers.{p}"]
        assert c["partitions"] == 6
        assert c["bootstrap"] == "broker:9092"
        assert c["if_not_exists"]
        assert c["configs"] == {"cleanup.policy": "compact",
                                "max.compaction.lag.ms": str(min(ret, DAY)),
                                "delete.retention.ms": str(min(ret, DAY))}
    assert calls["veil.retention"]["configs"]["cleanup.policy"] == "compact"
    assert calls["veil.retention"]["partitions"] == 6
    assert calls["veil.audit"]["configs"]["cleanup.policy"] == "delete"
    assert int(calls["veil.audit"]["configs"]["retention.ms"]) >= 365 * DAY
    assert calls["veil.dlq"]["configs"] == {"cleanup.policy": "delete",
                                            "retention.ms": str(7 * DAY)}
    assert calls["veil.erasure"]["configs"]["cleanup.policy"] == "delete"
    assert calls["veil.erasure"]["partitions"] == 1
    # The default bootstrap is the config's.
    os.remove(log)
    res = run_script(script, bindir, log, {"PARTITIONS_CUSTOMERS": "2"})
    assert res.returncode == 0, res.stderr
    assert {c["bootstrap"] for c in read_calls(log).values()} == {"127.0.0.1:9092"}


def test_topics_options_partitions_and_replication(veil):
    cfg = os.path.join(REPO, "config", "veil.yaml")
    r = veil_run(veil, "topics", "-c", cfg, "--partitions", "5",
                 "--replication-factor", "3")
    assert r.returncode == 0, r.stderr
    assert "PARTITIONS_" not in r.stdout
    creates = [ln for ln in r.stdout.split("kafka-topics.sh")[1:]]
    assert len(creates) == 7
    for c in creates:
        assert "--replication-factor 3" in c
    assert sum("--partitions 5" in c for c in creates) == 6  # all but erasure


def test_printed_commands_create_the_topics_on_kafka(veil, kafka, tmp_path):
    cfg, names = pipeline(tmp_path, kafka)
    create_topic(kafka, names["source"], partitions=3)
    # --bootstrap: the partition counts come from the cluster.
    r = veil_run(veil, "topics", "-c", cfg, "--bootstrap", kafka)
    assert r.returncode == 0, r.stderr
    assert "PARTITIONS_" not in r.stdout
    assert "--partitions 3" in r.stdout
    bindir, log = fake_tools(tmp_path)
    res = run_script(r.stdout, bindir, log, {"FAKE_CREATE": "1"})
    assert res.returncode == 0, res.stderr
    assert {c["bootstrap"] for c in read_calls(log).values()} == {kafka}
    check_settings(kafka, names, 3)


def test_topics_apply_creates_compacted_purpose_topics(veil, kafka, tmp_path):
    cfg, names = pipeline(tmp_path, kafka)
    create_topic(kafka, names["source"], partitions=2)
    r = veil_run(veil, "topics", "-c", cfg, "--apply")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = dict(ln.split(": ", 1) for ln in r.stdout.splitlines())
    for role in (*RETENTION, "ledger", "audit", "dlq", "erasure"):
        assert lines[names[role]].startswith("created"), (role, lines)
    wait_for(lambda: all(t in AdminClient({"bootstrap.servers": kafka})
                         .list_topics(timeout=10).topics
                         for t in names.values()), what="topics in metadata")
    check_settings(kafka, names, 2)

    # Again: every topic already exists, with the right settings.
    r = veil_run(veil, "topics", "-c", cfg, "--apply", "--bootstrap", kafka)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(": already exists") == 7
    assert "want" not in r.stdout


def test_topics_apply_reports_a_purpose_topic_that_is_not_compacted(veil, kafka, tmp_path):
    cfg, names = pipeline(tmp_path, kafka)
    create_topic(kafka, names["source"], partitions=1)
    create_topic(kafka, names["marketing"], partitions=1,
                 config={"cleanup.policy": "delete"})
    r = veil_run(veil, "topics", "-c", cfg, "--apply", "--bootstrap", kafka)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{names['marketing']}: already exists" in r.stdout
    assert f"{names['marketing']}: cleanup.policy is delete (want compact)" in r.stdout
    assert "--alter --entity-type topics" in r.stdout
    assert f"{names['analytics']}: created" in r.stdout


def test_topics_apply_needs_the_source_or_partitions(veil, kafka, tmp_path):
    cfg, names = pipeline(tmp_path, kafka)
    r = veil_run(veil, "topics", "-c", cfg, "--apply", "--bootstrap", kafka)
    assert r.returncode == 1
    assert f"source topic {names['source']} does not exist" in r.stderr
    # Nothing was created (and asking did not auto-create the source).
    md = AdminClient({"bootstrap.servers": kafka}).list_topics(timeout=10)
    assert not any(t in md.topics for t in names.values())

    r = veil_run(veil, "topics", "-c", cfg, "--apply", "--bootstrap", kafka,
                 "--partitions", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(": created") == 7
    check_settings(kafka, names, 2)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


def test_topics_unreachable_cluster_is_exit_2(veil, tmp_path):
    cfg, _ = pipeline(tmp_path)
    r = veil_run(veil, "topics", "-c", cfg, "--apply", "--bootstrap", closed_port(),
                 "--timeout", "2")
    assert r.returncode == 2
    assert "cannot read the cluster's metadata" in r.stderr


def test_topics_usage_and_config_errors_are_exit_2(veil, tmp_path):
    assert veil_run(veil, "topics").returncode == 2
    assert veil_run(veil, "topics", "-c", str(tmp_path / "none.yaml")).returncode == 2
    assert veil_run(veil, "topics", "-c", "x", "--partitions", "0").returncode == 2
    r = veil_run(veil, "topics", "-c", "x", "--nope")
    assert r.returncode == 2 and "usage: veil topics" in r.stderr


# ---- veil erase ---------------------------------------------------------------


def hkdf_sha256(ikm, info, length=32):
    """RFC 5869 with no salt, written here from the RFC (not Veil's code)."""
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def expected_record_key(master, key_id, subject):
    k = hkdf_sha256(master.encode(), b"veil:erasure:id")
    mac = hmac.new(k, subject.encode(), hashlib.sha256).digest()
    return f"{key_id}:" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def expected_request_mac(master, key_id, doc):
    """HMAC(HKDF(master, "veil:erasure:mac"), "veil-erasure-v2\nID\nAT\nSEALED")."""
    k = hkdf_sha256(master.encode(), b"veil:erasure:mac")
    msg = f"veil-erasure-v2\n{doc['request_id']}\n{doc['requested_at']}\n{doc['key_sealed']}"
    mac = hmac.new(k, msg.encode(), hashlib.sha256).digest()
    return f"{key_id}:" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


SUBJECTS = ["customer-000042", "alice@example.com", "subject-c-7", "ünïcode-subject"]


def test_erase_writes_requests_readable_by_confluent_kafka(veil, kafka, tmp_path):
    cfg, names = pipeline(tmp_path, kafka)
    create_topic(kafka, names["erasure"], partitions=1)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{SUBJECTS[2]}\n\n{SUBJECTS[3]}\r\n")
    env = {"VEIL_HMAC_KEY": HMAC_KEY}
    r = veil_run(veil, "erase", "-c", cfg, "--file", str(keys_file),
                 SUBJECTS[0], SUBJECTS[1], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    for s in SUBJECTS:
        assert s not in r.stdout and s not in r.stderr
    ids = re.findall(r"^([0-9a-f-]{36}): delivered \(key #(\d)", r.stdout, re.M)
    assert len(ids) == 4
    assert "4 requests delivered" in r.stderr

    msgs = consume_all(kafka, names["erasure"])
    assert len(msgs) == 4
    # command-line keys first, then the file's, in order
    order = [SUBJECTS[0], SUBJECTS[1], SUBJECTS[2], SUBJECTS[3]]
    by_id = {}
    for m in msgs:
        raw = (m.key() or b"") + (m.value() or b"") + b"".join(
            v for _, v in (m.headers() or []))
        for s in SUBJECTS:
            assert s.encode() not in raw, "a key appeared in clear"
        doc = json.loads(m.value())
        assert doc["v"] == 2
        assert set(doc) == {"v", "key_sealed", "requested_at", "request_id", "mac"}
        assert doc["mac"] == expected_request_mac(HMAC_KEY, "k1", doc)
        by_id[doc["request_id"]] = (m, doc)
    assert set(by_id) == {i for i, _ in ids}
    for rid, idx in ids:
        m, doc = by_id[rid]
        subject = order[int(idx) - 1]
        # The record key is HMAC(HKDF(master, "veil:erasure:id"), key).
        assert m.key().decode() == expected_record_key(HMAC_KEY, "k1", subject)
        assert doc["key_sealed"].startswith("k1:g:")
        sealed = b64url_decode(doc["key_sealed"][5:])
        assert len(sealed) == 12 + len(subject.encode()) + 16
        assert dict(m.headers())["veil.request"] == rid.encode()
        assert abs(doc["requested_at"] - m.timestamp()[1]) < 60000

    # The same key again: a new request, the same record key (idempotent
    # and on the same partition).
    r = veil_run(veil, "erase", "-c", cfg, SUBJECTS[0], env=env)
    assert r.returncode == 0, r.stderr
    msgs = consume_all(kafka, names["erasure"])
    assert len(msgs) == 5
    same = [m for m in msgs if m.key().decode() ==
            expected_record_key(HMAC_KEY, "k1", SUBJECTS[0])]
    assert len(same) == 2
    assert len({json.loads(m.value())["request_id"] for m in same}) == 2


def test_erase_reads_keys_from_stdin(veil, kafka, tmp_path):
    cfg, names = pipeline(tmp_path, kafka)
    create_topic(kafka, names["erasure"], partitions=1)
    r = veil_run(veil, "erase", "-c", cfg, "--file", "-",
                 env={"VEIL_HMAC_KEY": HMAC_KEY}, input_text="k-1\nk-2\n")
    assert r.returncode == 0, r.stderr
    assert len(consume_all(kafka, names["erasure"])) == 2


def test_erase_delivery_failure_is_exit_1(veil, tmp_path):
    cfg, _ = pipeline(tmp_path)
    r = veil_run(veil, "erase", "-c", cfg, "--bootstrap", closed_port(),
                 "--timeout", "2", "secret-subject-1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not delivered" in r.stdout
    assert "secret-subject-1" not in r.stdout + r.stderr


def test_erase_usage_and_config_errors_are_exit_2(veil, tmp_path):
    cfg, _ = pipeline(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    for args in (["erase"], ["erase", "-c", cfg], ["erase", "k1"],
                 ["erase", "-c", cfg, "--file", str(empty)],
                 ["erase", "-c", cfg, "--file", str(tmp_path / "missing")],
                 ["erase", "-c", str(tmp_path / "none.yaml"), "subject-x"],
                 ["erase", "-c", cfg, "--timeout", "0", "subject-x"],
                 ["erase", "-c", cfg, "--bogus", "subject-x"]):
        r = veil_run(veil, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "subject-x" not in r.stdout + r.stderr
