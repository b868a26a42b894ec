"""test_security.py - the hardening of issue 11 on the real single-node Kafka:
key rotation through the keyring (old tokens still reveal, the audit chain
verifies across keys, a retired key that is still needed is named), key files
readable by others refused, two workers refused one instance, erasure
requests that are not authenticated refused, and config errors for plain
http registries and licences without an end."""
import json
import os
import re
import signal
import subprocess
import uuid

import confluent_kafka as ck

from helpers import LineCollector, consume_all, wait_for
from test_retention import customers, retention_pipeline
from test_worker import HMAC_KEY, Pipeline, stderr_text, stop

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KEY1 = "security-test-key-one-0123456789abcdef"
KEY2 = "security-test-key-two-0123456789abcdef"
KEYS_BLOCK = re.compile(r"^keys:.*\n(?:  .*\n)+", re.M)


def write_key(directory, name, value, mode=0o600):
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, mode)
    return path


def set_keys(pl, block):
    """Replaces the pipeline config's keys: section with `block`."""
    with open(pl.config) as f:
        text = f.read()
    text, n = KEYS_BLOCK.subn(block, text)
    assert n == 1, text
    with open(pl.config, "w") as f:
        f.write(text)


def env_without_key(**extra):
    env = {k: v for k, v in os.environ.items() if k != "VEIL_HMAC_KEY"}
    env.update(extra)
    return env


def veil(*args, env=None, timeout=120):
    return subprocess.run([os.environ["VEIL"], *args], capture_output=True, text=True,
                          env=env or env_without_key(), timeout=timeout)


def start(pl, *args, env=None):
    proc = subprocess.Popen([os.environ["VEIL"], "run", "-c", pl.config, *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or env_without_key())
    return LineCollector(proc)


def run_once(pl):
    w = start(pl, "--once")
    try:
        w.proc.wait(120)
    except subprocess.TimeoutExpired:
        w.proc.kill()
        raise AssertionError("veil run --once did not finish")
    w.close()
    assert w.proc.returncode == 0, stderr_text(w)[-3000:]
    return stderr_text(w)


# ---- rotation ----------------------------------------------------------------

def test_rotation_keeps_old_tokens_revealable_and_audit_verifiable(kafka, tmp_path):
    # support encrypts email (GCM: a token per record, epoch-keyed).
    pl = Pipeline(kafka, str(tmp_path), partitions=1, edits=[(
        "      phone: { mask: { keep_last: 4 } }",
        "      phone: { mask: { keep_last: 4 } }\n      email: { encrypt: { mode: gcm } }")])
    write_key(tmp_path, "k1.key", KEY1)
    write_key(tmp_path, "k2.key", KEY2)
    set_keys(pl, "keys:\n  ring:\n    k1: { file: k1.key }\n")
    batch = customers(pl, 5, 8)
    pl.produce(batch[:4])
    run_once(pl)
    # Rotate: k2 makes new tokens and MACs, k1 stays to open the old ones.
    set_keys(pl, "keys:\n  active: k2\n  ring:\n    k1: { file: k1.key }\n"
                 "    k2: { command: \"cat k2.key\" }\n")
    pl.produce(batch[4:])
    run_once(pl)

    out = consume_all(kafka, pl.topics["support"])
    tokens = [pl.decode(m.value())[1]["email"] for m in out if m.value()]
    assert len(tokens) == 8, tokens
    assert [t[:5] for t in tokens] == ["k1:e:"] * 4 + ["k2:e:"] * 4
    emails = []
    for t in tokens:
        r = veil("reveal", "-c", pl.config, t)
        assert r.returncode == 0, r.stderr
        emails.append(r.stdout.rstrip("\n"))
    market = consume_all(kafka, pl.topics["marketing"])
    plain = [pl.decode(m.value())[1]["email"] for m in market if m.value()]
    assert sorted(emails) == sorted(plain)
    # Hash tokens change with the key (joins across a rotation break).
    analytics = [pl.decode(m.value())[1]["customer_id"]
                 for m in consume_all(kafka, pl.topics["analytics"]) if m.value()]
    assert [a[:3] for a in analytics] == ["k1:"] * 4 + ["k2:"] * 4

    r = veil("audit", "verify", "-c", pl.config)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "intact" in r.stdout
    macs = {dict(m.headers())["veil.mac"].decode()[:3] for m in consume_all(kafka, pl.audit)}
    assert macs == {"k1:", "k2:"}

    # Retiring k1 while its tokens and events are kept: both say so.
    set_keys(pl, "keys:\n  ring:\n    k2: { file: k2.key }\n")
    r = veil("audit", "verify", "-c", pl.config)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "key id 'k1'" in r.stderr
    r = veil("reveal", "-c", pl.config, tokens[0])
    assert r.returncode == 1
    assert "key id 'k1', which is not in the keyring" in r.stderr
    for e in emails:
        assert e not in r.stderr


def test_forged_audit_mac_of_the_right_length_is_a_break(kafka, tmp_path):
    pl = Pipeline(kafka, str(tmp_path), partitions=1)
    write_key(tmp_path, "k1.key", KEY1)
    set_keys(pl, "keys:\n  ring:\n    k1: { file: k1.key }\n")
    pl.produce(customers(pl, 6, 2))
    run_once(pl)
    events = consume_all(kafka, pl.audit)
    last = events[-1]
    mac = dict(last.headers())["veil.mac"].decode()
    forged = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    prod = ck.Producer({"bootstrap.servers": kafka})
    prod.produce(pl.audit, key=last.key(), value=last.value(), partition=last.partition(),
                 headers=[("veil.mac", forged.encode())])
    assert prod.flush(30) == 0
    r = veil("audit", "verify", "-c", pl.config)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the MAC does not match" in r.stderr


# ---- key files and the environment ---------------------------------------------

def test_key_file_readable_by_others_is_refused(tmp_path):
    cfg = tmp_path / "veil.yaml"
    with open(os.path.join(REPO, "config", "veil.yaml")) as f:
        text = f.read()
    key = write_key(tmp_path, "k.key", KEY1, mode=0o644)
    text = text.replace("hmac_key_file: dev-hmac.key", f"hmac_key_file: {key}")
    text = text.replace("url: file://../schemas", f"url: file://{REPO}/schemas")
    cfg.write_text(text)
    for args in (["run", "-c", str(cfg), "--once"], ["reveal", "-c", str(cfg), "k1:s:AAAA"],
                 ["audit", "verify", "-c", str(cfg)], ["erase", "-c", str(cfg), "c-1"]):
        r = veil(*args, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert f"key file {key} has mode 0644" in r.stderr, r.stderr
        assert "chmod 600" in r.stderr
        assert KEY1 not in r.stderr + r.stdout
    os.chmod(key, 0o600)
    r = veil("reveal", "-c", str(cfg), "k1:s:AAAA")
    assert r.returncode == 1 and "mode" not in r.stderr, r.stderr
    # Opting in is explicit.
    os.chmod(key, 0o640)
    cfg.write_text(text.replace("  key_id: k1\n",
                                "  key_id: k1\n  allow_insecure_permissions: true\n"))
    r = veil("reveal", "-c", str(cfg), "k1:s:AAAA")
    assert r.returncode == 1 and "mode" not in r.stderr, r.stderr


# ---- one instance per host -----------------------------------------------------

def test_second_worker_with_the_same_instance_is_refused(kafka, tmp_path):
    pl = Pipeline(kafka, str(tmp_path), partitions=1)
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY, VEIL_LOCK_DIR=str(tmp_path))
    first = start(pl, env=env)
    try:
        wait_for(lambda: any("\"event\":\"assign\"" in ln
                             for ln in first.snapshot()[1]) or first.proc.poll() is not None,
                 timeout=60, what="the first worker to start")
        assert first.proc.poll() is None, stderr_text(first)
        env2 = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY, VEIL_LOCK_DIR=str(tmp_path))
        r = subprocess.run([os.environ["VEIL"], "run", "-c", pl.config], capture_output=True,
                           text=True, env=env2, timeout=60)
        assert r.returncode == 2, r.stderr
        assert "another worker on this host already runs as instance 'w1'" in r.stderr
        assert first.proc.poll() is None, "the first worker was fenced"
    finally:
        assert stop(first) == 0, stderr_text(first)[-3000:]
    # Once the first is gone, a restart with the same instance is fine.
    w = start(pl, "--once", env=env)
    w.proc.wait(120)
    w.close()
    assert w.proc.returncode == 0, stderr_text(w)[-3000:]


# ---- erasure requests -----------------------------------------------------------

def test_unauthenticated_erasure_requests_are_refused(kafka, tmp_path):
    pl = retention_pipeline(kafka, str(tmp_path))
    recs = customers(pl, 11, 3)
    pl.produce(recs)
    victim, other, third = (k.decode() for k, _ in recs)
    prod = ck.Producer({"bootstrap.servers": kafka})
    # 1. the key in clear (anyone who may write to the topic)
    prod.produce(pl.erasure, key=b"x", value=json.dumps(
        {"key": victim, "requested_at": 1, "request_id": "forged-1"}).encode())
    # 2. a real request for `other` whose id was changed: its MAC fails
    r = veil("erase", "-c", pl.config, other, env=dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY))
    assert r.returncode == 0, r.stderr
    real = [m for m in consume_all(kafka, pl.erasure) if m.key() != b"x"]
    assert len(real) == 1
    doc = json.loads(real[0].value())
    doc["request_id"] = str(uuid.uuid4())
    prod.produce(pl.erasure, key=real[0].key(), value=json.dumps(doc).encode(),
                 partition=real[0].partition())
    assert prod.flush(30) == 0

    w = pl.start()
    try:
        def rejected():
            lines = [ln for ln in w.snapshot()[1] if "erasure-rejected" in ln]
            return len(lines) >= 2 and lines
        lines = wait_for(rejected, timeout=90, what="two erasure-rejected log lines")
        text = "\n".join(lines)
        assert "allow_plaintext" in text
        assert "'mac' does not authenticate" in text
        # The genuine request was applied; a new genuine one for `third` too.
        r = veil("erase", "-c", pl.config, third, env=dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY))
        assert r.returncode == 0, r.stderr

        def completed():
            ev = [json.loads(m.value()) for m in consume_all(kafka, pl.audit)]
            done = [e for e in ev if e.get("kind") == "erasure-completed"]
            return len(done) >= 2 and done
        done = wait_for(completed, timeout=90, what="two erasure-completed events")
    finally:
        log = stderr_text(w)
        stop(w)
    assert {e["request_id"] for e in done} .isdisjoint({"forged-1", doc["request_id"]})
    for t in pl.topics.values():
        erased = {m.key() for m in consume_all(kafka, t)
                  if m.value() is None and dict(m.headers() or []).get("veil.reason") == b"erasure"}
        assert len(erased) == 2, (t, erased)
    for s in (victim, other, third):
        assert s not in log


# ---- config errors ---------------------------------------------------------------

def config_copy(tmp_path, *edits):
    with open(os.path.join(REPO, "config", "veil.yaml")) as f:
        text = f.read()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    text = text.replace("url: file://../schemas", f"url: file://{REPO}/schemas")
    path = tmp_path / "veil.yaml"
    path.write_text(text)
    return str(path)


def test_plain_http_registry_to_another_host_is_refused(tmp_path):
    cfg = config_copy(tmp_path, ("url: file://../schemas", "url: http://registry.example:8081"))
    r = veil("check", "-c", cfg)
    assert r.returncode == 2
    assert re.search(r"veil.yaml:\d+:\d+: registry.url: plain http:// to a host other than "
                     r"this one", r.stderr), r.stderr
    cfg = config_copy(tmp_path, ("url: file://../schemas",
                                 "url: http://registry.example:8081\n  allow_insecure: true"))
    r = veil("check", "-c", cfg)
    assert "registry.url: plain" not in r.stderr


def test_licence_without_valid_until_is_a_config_error(tmp_path):
    cfg = config_copy(tmp_path, ("license: { id: LIC-MKT-2, valid_until: 2035-06-30 }",
                                 "license: { id: LIC-MKT-2 }"))
    r = veil("check", "-c", cfg)
    assert r.returncode == 2
    assert re.search(r"veil.yaml:\d+:\d+: purposes.marketing.license: missing required key "
                     r"'valid_until'", r.stderr), r.stderr
    cfg = config_copy(tmp_path, ("license: { id: LIC-MKT-2, valid_until: 2035-06-30 }",
                                 "license: { id: LIC-MKT-2, valid_until: never }"))
    r = veil("check", "-c", cfg)
    assert r.returncode in (0, 1), r.stderr
