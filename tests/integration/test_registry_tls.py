"""test_registry_tls.py - the schema registry over HTTPS with the credentials
Veil can present (issue 12, item 6): a CA of its own (registry.ca_file), a
client certificate (mutual TLS), a bearer token (file or environment) and
basic auth, against the test registry double serving HTTPS with
certificates made here. Right credentials work; a wrong CA, a missing or
untrusted client certificate, a wrong token or password is a clear error
naming the registry, never a retry loop: `veil check` and `veil run` exit 2
within seconds, and a refusal mid-stream stops the worker with the reason
(nothing dead-lettered, nothing lost). Secrets appear in no output."""
import json
import os
import random
import re
import subprocess
import time

import pytest

from helpers import consume_all, private_key, wait_for
from sr_double import SchemaRegistryDouble
from test_worker import Pipeline, headers, stderr_text, stop
from tls_certs import make_certs

import demo_produce  # noqa: E402  (scripts/, put on the path by test_worker)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKEN = "eyJhbGciOiJIUzI1NiJ9.dmVpbC10ZXN0.c2lnbmF0dXJl"
PASSWORD = "s3cret-registry-pass"
# A refusal is not retried: far below what retries with backoff and the
# client's timeouts would take, yet roomy for a sanitizer build.
QUICK_S = 10


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("tls")))


def demo_schema():
    with open(os.path.join(REPO, "schemas", "customers-value.avsc")) as f:
        return json.dumps(json.load(f))


def registry(certs, **kw):
    reg = SchemaRegistryDouble(tls=(certs.server_cert, certs.server_key), **kw)
    reg.register("customers-value", demo_schema())
    return reg


def write_token(tmp_path, token=TOKEN, mode=0o600, name="registry.token"):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, mode)
    return path


def config(tmp_path, url, *registry_lines):
    """config/veil.yaml in tmp_path with its registry: block replaced."""
    with open(os.path.join(REPO, "config", "veil.yaml")) as f:
        text = f.read()
    block = "registry:\n  url: " + url + "\n" + "".join(f"  {line}\n" for line in registry_lines)
    text, n = re.subn(r"^registry:\n(?:  .*\n)+", block, text, flags=re.M)
    assert n == 1
    text = text.replace("hmac_key_file: dev-hmac.key",
                        f"hmac_key_file: {private_key(tmp_path)}")
    path = os.path.join(str(tmp_path), "veil.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def veil(*args, env=None, timeout=120):
    e = {k: v for k, v in os.environ.items() if k != "VEIL_HMAC_KEY"}
    e.update(env or {})
    t0 = time.monotonic()
    r = subprocess.run([os.environ["VEIL"], *args], capture_output=True, text=True,
                       env=e, timeout=timeout, stdin=subprocess.DEVNULL)
    r.seconds = time.monotonic() - t0
    return r


def check(cfg, **kw):
    return veil("check", "-c", cfg, **kw)


def run_start(cfg, tmp_path, **kw):
    """`veil run` that should be refused before it starts (no Kafka here:
    the bootstrap is the config's placeholder)."""
    env = dict(kw.pop("env", {}), VEIL_LOCK_DIR=str(tmp_path))
    return veil("run", "-c", cfg, env=env, timeout=60, **kw)


def assert_no_secrets(r):
    out = r.stdout + r.stderr
    for secret in (TOKEN, PASSWORD, "PRIVATE KEY"):
        assert secret not in out, out


def assert_refused(r, reg, *needles):
    """Exit 2, quickly, with a message that names the registry and says
    what to check; no secret in the output."""
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert r.seconds < QUICK_S, (r.seconds, r.stderr[-3000:])
    assert reg.url in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)
    assert "attempt" not in r.stderr, r.stderr  # not retried
    assert_no_secrets(r)


# ---- verifying the registry: ca_file -----------------------------------------

def test_right_ca_is_ok(certs, tmp_path):
    reg = registry(certs)
    try:
        r = check(config(tmp_path, reg.url, f"ca_file: {certs.ca}"))
    finally:
        reg.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("GET", "/subjects/customers-value/versions/latest") in reg.requests


def test_wrong_ca_is_a_clear_error_for_check_and_run(certs, tmp_path):
    reg = registry(certs)
    try:
        cfg = config(tmp_path, reg.url, f"ca_file: {certs.other_ca}", "retries: 5")
        r = check(cfg)
        assert_refused(r, reg, "TLS refused", "registry.ca_file")
        r = run_start(cfg, tmp_path)
        assert_refused(r, reg, "TLS refused", "registry.ca_file")
        # The system store does not know this CA either.
        r = check(config(tmp_path, reg.url, "retries: 5"))
        assert_refused(r, reg, "TLS refused")
    finally:
        reg.stop()
    # Nothing got past TLS, and the client did not hammer the registry.
    assert reg.requests == []
    assert reg.handshakes_failed <= 3


def test_https_to_a_port_without_tls_is_not_retried(tmp_path):
    reg = SchemaRegistryDouble()  # plain HTTP
    reg.register("customers-value", demo_schema())
    try:
        url = reg.url.replace("http://", "https://")
        r = check(config(tmp_path, url, "retries: 5"))
    finally:
        reg.stop()
    assert r.returncode == 2, r.stderr
    assert r.seconds < QUICK_S
    assert url in r.stderr and "no TLS on this port" in r.stderr, r.stderr
    assert "attempt" not in r.stderr, r.stderr


# ---- mutual TLS --------------------------------------------------------------

def test_mtls_required_and_given_is_ok(certs, tmp_path):
    reg = registry(certs, client_ca=certs.ca)
    try:
        cfg = config(tmp_path, reg.url, f"ca_file: {certs.ca}",
                     f"cert_file: {certs.client_cert}", f"key_file: {certs.client_key}")
        r = check(cfg)
    finally:
        reg.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert reg.handshakes_failed == 0
    assert_no_secrets(r)


def test_mtls_required_but_missing_is_a_clear_error(certs, tmp_path):
    reg = registry(certs, client_ca=certs.ca)
    try:
        cfg = config(tmp_path, reg.url, f"ca_file: {certs.ca}", "retries: 5")
        assert_refused(check(cfg), reg, "TLS refused", "client certificate")
        assert_refused(run_start(cfg, tmp_path), reg, "TLS refused", "client certificate")
    finally:
        reg.stop()
    assert reg.requests == []


def test_untrusted_client_cert_is_a_clear_error(certs, tmp_path):
    reg = registry(certs, client_ca=certs.ca)
    try:
        cfg = config(tmp_path, reg.url, f"ca_file: {certs.ca}", "retries: 5",
                     f"cert_file: {certs.rogue_cert}", f"key_file: {certs.rogue_key}")
        assert_refused(check(cfg), reg, "refused Veil's client certificate")
        assert_refused(run_start(cfg, tmp_path), reg, "refused Veil's client certificate")
    finally:
        reg.stop()
    assert reg.requests == []


def test_client_cert_files_are_checked_when_the_config_loads(certs, tmp_path):
    url = "https://127.0.0.1:1"  # never reached: the loader refuses first
    # A key that is not the certificate's.
    cfg = config(tmp_path, url, f"cert_file: {certs.client_cert}",
                 f"key_file: {certs.rogue_key}")
    r = check(cfg)
    assert r.returncode == 2, r.stderr
    assert re.search(r"veil\.yaml:\d+:\d+: registry\.key_file: .*does not belong", r.stderr), r.stderr
    # A key others may read.
    loose = os.path.join(str(tmp_path), "loose.key")
    with open(certs.client_key) as src, open(loose, "w") as dst:
        dst.write(src.read())
    os.chmod(loose, 0o644)
    r = check(config(tmp_path, url, f"cert_file: {certs.client_cert}", f"key_file: {loose}"))
    assert r.returncode == 2, r.stderr
    assert re.search(r"veil\.yaml:\d+:\d+: registry\.key_file: .*0644", r.stderr), r.stderr
    # A certificate without its key.
    r = check(config(tmp_path, url, f"cert_file: {certs.client_cert}"))
    assert r.returncode == 2, r.stderr
    assert re.search(r"veil\.yaml:\d+:\d+: registry\.cert_file: .*key_file", r.stderr), r.stderr
    # A CA file that holds no certificate.
    r = check(config(tmp_path, url, f"ca_file: {certs.client_key}"))
    assert r.returncode == 2, r.stderr
    assert re.search(r"veil\.yaml:\d+:\d+: registry\.ca_file: .*no PEM certificate", r.stderr), r.stderr
    for out in (r.stdout, r.stderr):
        assert "PRIVATE KEY" not in out


# ---- bearer token ------------------------------------------------------------

def test_bearer_token_from_file_right_and_wrong(certs, tmp_path):
    reg = registry(certs, bearer=TOKEN)
    try:
        cfg = config(tmp_path, reg.url, f"ca_file: {certs.ca}",
                     f"bearer_token_file: {write_token(tmp_path)}")
        r = check(cfg)
        assert r.returncode == 0, r.stdout + r.stderr
        assert_no_secrets(r)
        assert reg.refused == 0

        cfg = config(tmp_path, reg.url, f"ca_file: {certs.ca}", "retries: 5",
                     f"bearer_token_file: {write_token(tmp_path, 'not-the-token')}")
        refused = reg.refused
        assert_refused(check(cfg), reg, "HTTP 401", "bearer")
        assert reg.refused == refused + 1  # once: never retried
        assert_refused(run_start(cfg, tmp_path), reg, "HTTP 401", "bearer")
    finally:
        reg.stop()


def test_bearer_token_from_the_environment(certs, tmp_path):
    reg = registry(certs, bearer=TOKEN)
    try:
        cfg = config(tmp_path, reg.url, f"ca_file: {certs.ca}",
                     "bearer_token_env: VEIL_TEST_REGISTRY_TOKEN")
        r = check(cfg, env={"VEIL_TEST_REGISTRY_TOKEN": TOKEN})
        assert r.returncode == 0, r.stdout + r.stderr
        assert_no_secrets(r)
        r = check(cfg, env={"VEIL_TEST_REGISTRY_TOKEN": "wrong"})
        assert_refused(r, reg, "HTTP 401")
        r = check(cfg)
        assert r.returncode == 2, r.stderr
        assert re.search(r"veil\.yaml:\d+:\d+: registry\.bearer_token_env: .*"
                         r"VEIL_TEST_REGISTRY_TOKEN is not set", r.stderr), r.stderr
    finally:
        reg.stop()


def test_bearer_token_file_readable_by_others_is_refused(certs, tmp_path):
    cfg = config(tmp_path, "https://127.0.0.1:1",
                 f"bearer_token_file: {write_token(tmp_path, mode=0o644)}")
    r = check(cfg)
    assert r.returncode == 2, r.stderr
    assert re.search(r"veil\.yaml:\d+:\d+: registry\.bearer_token_file: .*0644", r.stderr), r.stderr
    assert_no_secrets(r)


def test_bearer_and_basic_together_is_a_config_error(certs, tmp_path):
    cfg = config(tmp_path, "https://127.0.0.1:1", f'basic_auth: "veil:{PASSWORD}"',
                 f"bearer_token_file: {write_token(tmp_path)}")
    r = check(cfg)
    assert r.returncode == 2, r.stderr
    assert re.search(r"veil\.yaml:\d+:\d+: registry\.bearer_token_file: ", r.stderr), r.stderr
    assert_no_secrets(r)


# ---- basic auth over TLS -----------------------------------------------------

def test_basic_auth_right_and_wrong(certs, tmp_path):
    reg = registry(certs, basic=("veil", PASSWORD))
    try:
        r = check(config(tmp_path, reg.url, f"ca_file: {certs.ca}",
                         f'basic_auth: "veil:{PASSWORD}"'))
        assert r.returncode == 0, r.stdout + r.stderr
        assert_no_secrets(r)
        cfg = config(tmp_path, reg.url, f"ca_file: {certs.ca}", "retries: 5",
                     'basic_auth: "veil:wrong-pass"')
        refused = reg.refused
        r = check(cfg)
        assert_refused(r, reg, "HTTP 401", "registry.basic_auth")
        assert "wrong-pass" not in r.stderr
        assert reg.refused == refused + 1
        r = run_start(cfg, tmp_path)
        assert_refused(r, reg, "HTTP 401", "registry.basic_auth")
        # No credentials at all.
        r = check(config(tmp_path, reg.url, f"ca_file: {certs.ca}"))
        assert_refused(r, reg, "HTTP 401", "wants credentials")
    finally:
        reg.stop()


def test_everything_at_once(certs, tmp_path):
    """mTLS and a bearer token together, as a locked-down registry asks."""
    reg = registry(certs, client_ca=certs.ca, bearer=TOKEN)
    try:
        r = check(config(tmp_path, reg.url, f"ca_file: {certs.ca}",
                         f"cert_file: {certs.client_cert}", f"key_file: {certs.client_key}",
                         f"bearer_token_file: {write_token(tmp_path)}"))
    finally:
        reg.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert reg.refused == 0 and reg.handshakes_failed == 0


# ---- the worker: a refusal mid-stream ----------------------------------------

def test_refusal_mid_stream_stops_the_worker_with_the_reason(certs, kafka, tmp_path):
    """The registry starts refusing Veil's token while records flow (rotated
    on the registry's side): the worker stops with the reason instead of
    spinning, dead-letters nothing, and a restart with the new token
    delivers every record exactly once."""
    reg = registry(certs, client_ca=certs.ca, bearer=TOKEN)
    sid = reg.latest("customers-value")[0]
    token_file = write_token(tmp_path)
    pl = Pipeline(kafka, str(tmp_path), partitions=1, registry_url=reg.url,
                  edits=[(f"url: {reg.url}",
                          f"url: {reg.url}\n  ca_file: {certs.ca}\n"
                          f"  cert_file: {certs.client_cert}\n"
                          f"  key_file: {certs.client_key}\n"
                          f"  bearer_token_file: {token_file}")])
    rng = random.Random(23)
    first = [demo_produce.frame(sid, pl.schema, demo_produce.customer(rng, i))
             for i in range(6)]
    pl.produce([(str(i).encode(), v) for i, v in enumerate(first)])
    w = pl.start()
    try:
        for t in pl.topics.values():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= 6, timeout=90,
                     what=f"the first records on {t}")
        # The registry rotates its token; then a record arrives whose
        # writer schema Veil has not seen (a new id: a lookup).
        reg.bearer = "rotated-" + TOKEN
        sid2 = reg.register("customers-value",
                            json.dumps(dict(json.loads(demo_schema()), doc="v2")))
        assert sid2 != sid
        second = [demo_produce.frame(sid2, pl.schema, demo_produce.customer(rng, i))
                  for i in range(6, 10)]
        pl.produce([(str(i).encode(), v) for i, v in enumerate(second, 6)])
        w.proc.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker kept running after the registry refused it: "
                             + stderr_text(w)[-3000:])
    finally:
        rc = stop(w)
    log = stderr_text(w)
    assert rc == 1, log[-3000:]
    assert "registry-refused" in log and "HTTP 401" in log and reg.url in log, log[-3000:]
    assert TOKEN not in log
    assert sum("registry-unavailable" in line for line in log.splitlines()) == 0, log[-3000:]
    assert consume_all(kafka, pl.dlq) == []
    for t in pl.topics.values():
        assert len(consume_all(kafka, t)) == 6, t

    # The operator installs the new token: everything arrives, once.
    with open(token_file, "w") as f:
        f.write("rotated-" + TOKEN + "\n")
    w = pl.start()
    try:
        for t in pl.topics.values():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= 10, timeout=90,
                     what=f"all records on {t} after the restart")
    finally:
        rc = stop(w)
        reg.stop()
    assert rc == 0, stderr_text(w)[-3000:]
    assert consume_all(kafka, pl.dlq) == []
    for t in pl.topics.values():
        got = consume_all(kafka, t)
        assert sorted(headers(m)["veil.source"] for m in got) == \
            sorted(f"{pl.source}/0/{i}" for i in range(10)), t
