"""test_worker.py - `veil run` end to end on the real single-node Kafka: records produced with confluent_kafka in Confluent framing, outputs read back read_committed and decoded with fastavro using the derived schemas Veil registered."""
import hashlib
import io
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys

import confluent_kafka as ck
import fastavro
import pytest

from helpers import (MOCK_BOOTSTRAPS, LineCollector, consume_all, private_key,
                     unique, wait_for)
from sr_double import SchemaRegistryDouble
from test_kafka import create_topic

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import demo_produce  # noqa: E402

PURPOSES = ("analytics", "marketing", "support")
HMAC_KEY = "integration-test-hmac-key-0123456789abcdef"


class Pipeline:
    """A private copy of config/veil.yaml on its own topics, group and
    file:// registry (a temp copy of schemas/, so registrations of derived
    schemas never touch the repository). On `veil broker` it runs one
    pipeline (`threads: 1`, see helpers.MOCK_BOOTSTRAPS) unless `threads`
    says otherwise."""

    def __init__(self, kafka, root, partitions=2, extra_kafka=None, edits=(),
                 registry_url=None, threads=None):
        self.kafka = kafka
        self.prefix = unique("w")
        self.root = root
        self.reg = os.path.join(root, "reg")
        shutil.copytree(os.path.join(REPO, "schemas"), self.reg)
        self.source = f"{self.prefix}.customers"
        self.topics = {p: f"{self.prefix}.customers.{p}" for p in PURPOSES}
        self.dlq = f"{self.prefix}.dlq"
        self.audit = f"{self.prefix}.audit"
        create_topic(kafka, self.source, partitions=partitions)
        for t in [*self.topics.values(), self.dlq, self.audit]:
            create_topic(kafka, t, partitions=1)
        with open(os.path.join(REPO, "config", "veil.yaml")) as f:
            text = f.read()
        kafka_lines = f"  bootstrap.servers: {kafka}\n"
        for k, v in (extra_kafka or {}).items():
            kafka_lines += f"  {k}: {v}\n"
        text = text.replace("  bootstrap.servers: 127.0.0.1:9092   # placeholder: `make demo` points it at `veil broker`\n",
                            kafka_lines)
        assert kafka in text
        text = text.replace("url: file://../schemas",
                            f"url: {registry_url or 'file://' + self.reg}")
        for old, new in edits:
            assert old in text, old
            text = text.replace(old, new)
        text = text.replace("hmac_key_file: dev-hmac.key",
                            f"hmac_key_file: {private_key(root)}")
        text = text.replace("group: veil", f"group: {self.prefix}-g\ninstance: w1")
        text = text.replace("source: customers", f"source: {self.source}")
        for p, t in self.topics.items():
            text = text.replace(f"{p}: customers.{p}", f"{p}: {t}")
        text = text.replace("dlq: veil.dlq, audit: veil.audit",
                            f"dlq: {self.dlq}, audit: {self.audit}")
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith("metrics:")) + "\n"
        # Debug: the suite's leak check (leakwatch.py) reads every line.
        text = text.replace("log: { level: info }", "log: { level: debug }")
        if threads is None and kafka in MOCK_BOOTSTRAPS:
            threads = 1
        if threads is not None:
            text += f"threads: {threads}\n"
        self.config = os.path.join(root, "veil.yaml")
        with open(self.config, "w") as f:
            f.write(text)
        self.schema = demo_produce.load_schema()
        self.schema_id = demo_produce.registry_id(self.reg)

    def produce(self, messages):
        """Produces (key, value) pairs; returns {(partition, offset): index}."""
        p = ck.Producer({"bootstrap.servers": self.kafka, "enable.idempotence": True})
        where, errors = {}, []

        def on_delivery(i):
            def cb(err, msg):
                if err is not None:
                    errors.append(err)
                else:
                    where[(msg.partition(), msg.offset())] = i
            return cb

        for i, (k, v) in enumerate(messages):
            p.produce(self.source, key=k, value=v, on_delivery=on_delivery(i))
        assert p.flush(30) == 0
        assert errors == []
        return where

    def start(self, *args):
        env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
        proc = subprocess.Popen([os.environ["VEIL"], "run", "-c", self.config, *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        return LineCollector(proc)

    def derived(self, schema_id):
        with open(os.path.join(self.reg, ".veil-registry.json")) as f:
            manifest = json.load(f)
        for s in manifest["schemas"]:
            if s["id"] == schema_id:
                return s["subject"], fastavro.parse_schema(json.loads(s["schema"]))
        raise AssertionError(f"schema id {schema_id} not in the file registry")

    def decode(self, value):
        magic, sid = struct.unpack(">bI", value[:5])
        assert magic == 0
        subject, schema = self.derived(sid)
        return subject, fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)


def headers(msg):
    return {k: (v.decode() if v is not None else None) for k, v in (msg.headers() or [])}


def thread_stacks(pid):
    """Every thread's stack of a hung process (gdb, where installed), so a
    hang is diagnosed from the failing run rather than reproduced."""
    if not shutil.which("gdb"):
        return "(no gdb: thread stacks not taken)"
    try:
        out = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx",
                              "-ex", "thread apply all bt 25"],
                             capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "(gdb timed out)"
    return "\n".join(l for l in out.stdout.splitlines()
                     if l.startswith(("Thread", "#")))


def stop(collector, sig=signal.SIGTERM, timeout=60):
    proc = collector.proc
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stacks = thread_stacks(proc.pid)
        proc.kill()
        proc.wait()
        raise AssertionError(f"veil run ignored {sig.name} for {timeout} s\n"
                             f"{stacks}\n{stderr_text(collector)[-3000:]}")
    collector.close()
    return proc.returncode


def stderr_text(collector):
    return "\n".join(collector.snapshot()[1])


N = 24


@pytest.fixture(scope="module")
def run(veil, kafka, tmp_path_factory):
    """One worker over N customers, two malformed records and an upstream
    tombstone; stopped with SIGTERM once every output is committed."""
    pl = Pipeline(kafka, str(tmp_path_factory.mktemp("worker")))
    rng = random.Random(11)
    customers = [demo_produce.customer(rng, i) for i in range(N)]
    good = [demo_produce.frame(pl.schema_id, pl.schema, c) for c in customers]
    messages = [(c["customer_id"].encode(), v) for c, v in zip(customers, good)]
    bad_magic = b"\x07" + good[0][1:]
    truncated = good[1][:len(good[1]) // 2]
    messages += [(b"C-bad-magic", bad_magic), (b"C-truncated", truncated),
                 (customers[2]["customer_id"].encode(), None)]
    where = pl.produce(messages)
    w = pl.start()
    try:
        for p, t in pl.topics.items():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= N + 1, timeout=90,
                     what=f"{N} records and a tombstone on {t}")
        wait_for(lambda: len(consume_all(kafka, pl.dlq)) >= 2, timeout=60,
                 what="two DLQ records")
    except AssertionError:
        print(stderr_text(w)[-4000:])
        raise
    rc = stop(w)
    out = {p: consume_all(kafka, t) for p, t in pl.topics.items()}
    return {"pl": pl, "customers": customers, "messages": messages, "where": where,
            "out": out, "dlq": consume_all(kafka, pl.dlq),
            "audit": consume_all(kafka, pl.audit), "rc": rc, "stderr": stderr_text(w),
            "bad": {b"C-bad-magic": bad_magic, b"C-truncated": truncated}}


def source_index(run, msg):
    src = headers(msg)["veil.source"]
    topic, part, off = src.rsplit("/", 2)
    assert topic == run["pl"].source
    return run["where"][(int(part), int(off))]


def records(run, purpose):
    """[(customer dict, decoded output, message)] for the non-tombstones."""
    rows = []
    for m in run["out"][purpose]:
        if m.value() is None:
            continue
        i = source_index(run, m)
        subject, value = run["pl"].decode(m.value())
        assert subject == f"{run['pl'].topics[purpose]}-value"
        rows.append((run["customers"][i], value, m))
    return rows


def test_sigterm_exits_zero_after_committing(run):
    assert run["rc"] == 0, run["stderr"][-3000:]


def test_every_record_exactly_once_on_every_purpose(run):
    for p in PURPOSES:
        idx = [source_index(run, m) for m in run["out"][p]]
        assert sorted(idx) == sorted(set(idx)), f"duplicates on {p}"
        assert set(idx) == set(range(N)) | {N + 2}, p


def test_headers_on_purpose_topics(run):
    pl = run["pl"]
    for p in PURPOSES:
        for m in run["out"][p]:
            h = headers(m)
            assert h["veil.purpose"] == p
            assert h["veil.license"].startswith("LIC-")
            assert len(h["veil.policy"]) == 64
            assert h["veil.source"].startswith(pl.source + "/")


def test_analytics_hashes_masks_generalizes_and_drops(run):
    rows = records(run, "analytics")
    assert len(rows) == N
    for c, v, m in rows:
        assert m.key().decode().startswith("k1:") and m.key() != c["customer_id"].encode()
        assert v["customer_id"].startswith("k1:") and len(v["customer_id"]) == 3 + 43
        assert v["email"].startswith("k1:")
        for dropped in ("full_name", "ssn", "phone", "credit_score", "last_login_ip"):
            assert dropped not in v
        assert "street" not in v["address"]
        assert v["address"]["zip"] == c["address"]["zip"]
        assert v["birth_date"] == c["birth_date"].year
        if c["card_number"] is None:
            assert v["card_number"] is None
        else:
            assert v["card_number"] == "**** **** **** " + c["card_number"][-4:]
        assert c["email"] not in v["notes"]
        assert v["loyalty_points"] == c["loyalty_points"]
    # Same input, same token: the hash is deterministic per purpose.
    tokens = {c["customer_id"]: v["customer_id"] for c, v, _ in rows}
    assert len(set(tokens.values())) == N


def test_marketing_keeps_contact_and_drops_internal(run):
    rows = records(run, "marketing")
    assert len(rows) == N
    for c, v, m in rows:
        assert m.key() == c["customer_id"].encode()
        assert v["customer_id"] == c["customer_id"]
        assert v["email"] == c["email"]
        assert v["full_name"] == c["full_name"]
        for dropped in ("loyalty_points", "ssn", "card_number", "notes", "birth_date"):
            assert dropped not in v


def test_support_masks_phone_and_ssn(run):
    rows = records(run, "support")
    assert len(rows) == N
    for c, v, _ in rows:
        if c["phone"] is not None:
            assert v["phone"] == "*" * (len(c["phone"]) - 4) + c["phone"][-4:]
        if c["ssn"] is not None:
            assert v["ssn"] == "***-**-" + c["ssn"][-4:]
        assert "card_number" not in v
        assert v["full_name"] == c["full_name"]


def test_upstream_tombstone_reaches_every_purpose(run):
    c = run["customers"][2]
    for p in PURPOSES:
        tomb = [m for m in run["out"][p] if m.value() is None]
        assert len(tomb) == 1, p
        h = headers(tomb[0])
        assert h["veil.reason"] == "upstream-delete"
        # The tombstone's key is the same transformed key as the record's.
        same = [m for m in run["out"][p] if m.value() is not None
                and source_index(run, m) == 2]
        assert tomb[0].key() == same[0].key()
        if p == "analytics":
            assert tomb[0].key() != c["customer_id"].encode()


def test_malformed_records_go_to_the_dlq_encrypted(run):
    dlq = run["dlq"]
    assert len(dlq) == 2
    codes = {}
    for m in dlq:
        h = headers(m)
        i = source_index(run, m)
        key, original = run["messages"][i]
        codes[key] = h["veil.error"]
        assert h["veil.error.detail"]
        assert h["veil.dlq.payload"] == "encrypted"
        assert h["veil.dlq.cipher"] == "aes-256-gcm+ad"
        # AES-GCM: nonce + ciphertext + tag over the header binding and the
        # original, never the original bytes.
        binding = b"\0".join(x.encode() for x in (
            "veil-dlq-2", h["veil.source"], h["veil.error"], h["veil.key_id"],
            "value")) + b"\0"
        assert len(m.value()) == len(original) + len(binding) + 28
        assert original[5:40] not in m.value()
        assert key not in m.key()
    assert codes == {b"C-bad-magic": "bad-magic", b"C-truncated": "truncated"}


def test_audit_events_are_hash_chained(run):
    events = run["audit"]
    assert events
    chains = {}
    for m in events:
        ev = json.loads(m.value())
        prev = chains.get(m.key(), "0" * 64)
        assert ev["prev"] == prev
        chains[m.key()] = hashlib.sha256(m.value()).hexdigest()
        assert ev["purpose"] in PURPOSES
        assert ev["policy"] == headers(run["out"]["analytics"][0])["veil.policy"]
        for path, tx in ev["fields"].items():
            assert tx in ("keep", "drop", "null", "hash", "mask", "generalize",
                          "encrypt", "redact_text")
    total = {p: 0 for p in PURPOSES}
    for m in events:
        ev = json.loads(m.value())
        total[ev["purpose"]] += ev["records"]
    assert total == {p: N for p in PURPOSES}
    an = [json.loads(m.value()) for m in events]
    an = [e for e in an if e["purpose"] == "analytics" and e["records"]]
    assert an[0]["fields"]["email"] == "hash"
    assert "full_name" not in json.dumps(an[0]["fields"]) or \
        an[0]["fields"]["full_name"] == "drop"


def test_logs_are_json_and_carry_no_values(run):
    lines = [line for line in run["stderr"].splitlines() if line.strip()]
    assert lines
    for line in lines:
        json.loads(line)
    for c in run["customers"]:
        assert c["email"] not in run["stderr"]
        assert c["full_name"] not in run["stderr"]


def test_kill9_and_restart_gives_exactly_once(veil, kafka, tmp_path):
    pl = Pipeline(kafka, str(tmp_path), partitions=2,
                  extra_kafka={"session.timeout.ms": 6000})
    rng = random.Random(5)
    n = 400
    msgs = []
    for i in range(n):
        c = demo_produce.customer(rng, i)
        msgs.append((c["customer_id"].encode(), demo_produce.frame(pl.schema_id, pl.schema, c)))
    where = pl.produce(msgs)
    w = pl.start()
    topic = pl.topics["marketing"]
    # Some batches committed, then the worker dies without any cleanup.
    wait_for(lambda: len(consume_all(kafka, topic)) > 0, timeout=90,
             what="a first committed batch")
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait(30)
    w.close()
    w2 = pl.start()
    try:
        for p, t in pl.topics.items():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= n, timeout=120,
                     what=f"{n} records on {t} after the restart")
    finally:
        rc = stop(w2)
    assert rc == 0, stderr_text(w2)[-3000:]
    for p, t in pl.topics.items():
        got = consume_all(kafka, t)
        idx = []
        for m in got:
            _, part, off = headers(m)["veil.source"].rsplit("/", 2)
            idx.append(where[(int(part), int(off))])
        assert len(idx) == n, f"{t}: {len(idx)} records for {n} inputs"
        assert sorted(idx) == list(range(n)), f"{t}: loss or duplicates"


def test_expired_licence_receives_nothing_and_record_audit(veil, kafka, tmp_path):
    pl = Pipeline(kafka, str(tmp_path), partitions=1,
                  edits=[("valid_until: 2035-06-30", "valid_until: 2020-01-01"),
                         ("audit: { level: record }", "audit: { level: record }")])
    rng = random.Random(3)
    n = 10
    msgs = []
    for i in range(n):
        c = demo_produce.customer(rng, i)
        msgs.append((c["customer_id"].encode(), demo_produce.frame(pl.schema_id, pl.schema, c)))
    pl.produce(msgs)
    w = pl.start("--once")
    try:
        w.proc.wait(90)
    except subprocess.TimeoutExpired:
        w.proc.kill()
        raise AssertionError("veil run --once did not finish")
    w.close()
    assert w.proc.returncode == 0, stderr_text(w)[-3000:]
    assert len(consume_all(kafka, pl.topics["analytics"])) == n
    assert len(consume_all(kafka, pl.topics["support"])) == n
    assert consume_all(kafka, pl.topics["marketing"]) == []
    # Said as what it is: the licence, by id and last day, not retention.
    log = stderr_text(w)
    assert "licence LIC-MKT-2 expired on 2020-01-01" in log, log[-3000:]
    assert "licence LIC-ANALYTICS-7" not in log
    events = [json.loads(m.value()) for m in consume_all(kafka, pl.audit)]
    # One event per record and purpose, the expired purpose included.
    assert len(events) == 3 * n
    mk = [e for e in events if e["purpose"] == "marketing"]
    assert len(mk) == n and all(e["expired"] == 1 and e["records"] == 0 for e in mk)
    assert all(e["kind"] == "record" and e["source"]["first"] == e["source"]["last"]
               for e in events)


def test_registry_down_pauses_without_dlq_then_resumes(veil, kafka, tmp_path):
    with open(demo_produce.SCHEMA_PATH) as f:
        text = json.dumps(json.load(f))
    reg = SchemaRegistryDouble(start=False)
    assert reg.register("customers-value", text) == 1
    pl = Pipeline(kafka, str(tmp_path), partitions=1, registry_url=reg.url)
    rng = random.Random(9)
    n = 12
    msgs = []
    for i in range(n):
        c = demo_produce.customer(rng, i)
        msgs.append((c["customer_id"].encode(), demo_produce.frame(1, pl.schema, c)))
    pl.produce(msgs)
    w = pl.start()
    try:
        wait_for(lambda: sum('"event":"retry"' in line for line in w.snapshot()[1]) >= 2,
                 timeout=60, what="the worker retrying while the registry is down")
        assert consume_all(kafka, pl.dlq) == []
        assert consume_all(kafka, pl.topics["analytics"]) == []
        reg.start()
        for t in pl.topics.values():
            wait_for(lambda t=t: len(consume_all(kafka, t)) >= n, timeout=90,
                     what=f"{n} records on {t} once the registry is back")
    finally:
        rc = stop(w)
        reg.stop()
    assert rc == 0, stderr_text(w)[-3000:]
    assert consume_all(kafka, pl.dlq) == []
    for t in pl.topics.values():
        got = consume_all(kafka, t)
        assert sorted(headers(m)["veil.source"] for m in got) == \
            sorted(f"{pl.source}/0/{i}" for i in range(n))
        # The derived schema was registered in the HTTP registry.
        sid = struct.unpack(">bI", got[0].value()[:5])[1]
        assert sid in reg.by_id and sid != 1


def build_plugin(tmp_path, abi=None):
    """Compiles tests/plugins/example_filter.c into a shared object."""
    out = os.path.join(str(tmp_path), f"example{abi or ''}.so")
    cflags = subprocess.run(["pkg-config", "--cflags", "avro-c", "jansson", "libhs"],
                            capture_output=True, text=True, check=True).stdout.split()
    cmd = ["cc", "-shared", "-fPIC", "-std=c11", "-Wall", "-Wextra", "-Werror",
           f"-I{REPO}/common", f"-I{REPO}/filters", *cflags, "-o", out,
           f"{REPO}/tests/plugins/example_filter.c"]
    if abi is not None:
        cmd.insert(1, f"-DEXAMPLE_ABI={abi}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_out_of_tree_plugin_diverts_records(veil, kafka, tmp_path):
    so = build_plugin(tmp_path)
    pl = Pipeline(kafka, str(tmp_path), partitions=1,
                  edits=[("max_batch_records: 10000",
                          f"max_batch_records: 10000\nplugins: [{so}]")])
    rng = random.Random(4)
    msgs = []
    for i in range(6):
        c = demo_produce.customer(rng, i)
        key = f"TEST-{i}" if i % 3 == 0 else c["customer_id"]
        msgs.append((key.encode(), demo_produce.frame(pl.schema_id, pl.schema, c)))
    pl.produce(msgs)
    w = pl.start("--once")
    try:
        w.proc.wait(90)
    except subprocess.TimeoutExpired:
        w.proc.kill()
        raise AssertionError("veil run --once did not finish")
    w.close()
    assert w.proc.returncode == 0, stderr_text(w)[-3000:]
    dlq = consume_all(kafka, pl.dlq)
    assert sorted(headers(m)["veil.source"] for m in dlq) == \
        [f"{pl.source}/0/0", f"{pl.source}/0/3"]
    assert {headers(m)["veil.error"] for m in dlq} == {"example-quarantine"}
    for t in pl.topics.values():
        assert len(consume_all(kafka, t)) == 4


def test_plugin_settings_come_from_its_config_table(veil, kafka, tmp_path):
    """`plugins: [{ path, config }]` reaches the plugin through its own
    table; a key the table does not declare is refused with file:line."""
    so = build_plugin(tmp_path)
    pl = Pipeline(kafka, str(tmp_path), partitions=1,
                  edits=[("max_batch_records: 10000",
                          "max_batch_records: 10000\nplugins:\n"
                          f"  - {{ path: {so}, config: {{ key_prefix: QA- }} }}")])
    rng = random.Random(5)
    msgs = []
    for i in range(4):
        c = demo_produce.customer(rng, i)
        key = f"QA-{i}" if i % 2 == 0 else f"TEST-{i}"
        msgs.append((key.encode(), demo_produce.frame(pl.schema_id, pl.schema, c)))
    pl.produce(msgs)
    w = pl.start("--once")
    try:
        w.proc.wait(90)
    except subprocess.TimeoutExpired:
        w.proc.kill()
        raise AssertionError("veil run --once did not finish")
    w.close()
    assert w.proc.returncode == 0, stderr_text(w)[-3000:]
    dlq = consume_all(kafka, pl.dlq)
    # QA- keys are diverted now, TEST- keys (the default prefix) are not
    assert sorted(headers(m)["veil.source"] for m in dlq) == \
        [f"{pl.source}/0/0", f"{pl.source}/0/2"]
    with open(pl.config) as f:
        text = f.read()
    with open(pl.config, "w") as f:
        f.write(text.replace("key_prefix: QA-", "key_prefx: QA-"))
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
    r = subprocess.run([veil, "run", "-c", pl.config], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{pl.config}:" in r.stderr
    assert "plugins[0].config.key_prefx" in r.stderr
    assert "did you mean 'key_prefix'" in r.stderr


def test_plugin_with_another_abi_is_refused(veil, kafka, tmp_path):
    so = build_plugin(tmp_path, abi=99)
    pl = Pipeline(kafka, str(tmp_path), partitions=1,
                  edits=[("max_batch_records: 10000",
                          f"max_batch_records: 10000\nplugins: [{so}]")])
    env = dict(os.environ, VEIL_HMAC_KEY=HMAC_KEY)
    r = subprocess.run([veil, "run", "-c", pl.config], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 2
    assert "ABI version 99" in r.stderr and "rebuild" in r.stderr


def test_sighup_rejects_a_broken_policy_and_applies_a_good_one(veil, kafka, tmp_path):
    pl = Pipeline(kafka, str(tmp_path), partitions=1)
    rng = random.Random(8)
    seen = [0]

    def batch(n):
        msgs = []
        for _ in range(n):
            c = demo_produce.customer(rng, seen[0])
            seen[0] += 1
            msgs.append((c["customer_id"].encode(),
                         demo_produce.frame(pl.schema_id, pl.schema, c)))
        pl.produce(msgs)

    def events(name):
        return sum(f'"event":"{name}"' in line for line in w.snapshot()[1])

    marketing = pl.topics["marketing"]
    with open(pl.config) as f:
        good = f.read()
    w = pl.start()
    try:
        batch(3)
        wait_for(lambda: len(consume_all(kafka, marketing)) >= 3, timeout=90,
                 what="the first batch")
        digest0 = headers(consume_all(kafka, marketing)[0])["veil.policy"]
        # A broken file: rejected, the old policy keeps running.
        with open(pl.config, "w") as f:
            f.write(good.replace("      email: keep\n", "      email: shred\n"))
        w.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: events("reload-rejected") >= 1, timeout=30,
                 what="the broken policy to be rejected")
        batch(3)
        wait_for(lambda: len(consume_all(kafka, marketing)) >= 6, timeout=60,
                 what="records after the rejected reload")
        after_bad = consume_all(kafka, marketing)[3:6]
        for m in after_bad:
            assert headers(m)["veil.policy"] == digest0
            assert "email" in pl.decode(m.value())[1]
        # A good change: marketing no longer receives email.
        with open(pl.config, "w") as f:
            f.write(good.replace("      email: keep\n", "      email: drop\n"))
        w.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: events("reload") >= 1, timeout=30, what="the reload")
        batch(3)
        wait_for(lambda: len(consume_all(kafka, marketing)) >= 9, timeout=60,
                 what="records after the reload")
        for m in consume_all(kafka, marketing)[6:9]:
            assert headers(m)["veil.policy"] != digest0
            assert "email" not in pl.decode(m.value())[1]
    finally:
        rc = stop(w)
    assert rc == 0, stderr_text(w)[-3000:]
