"""leakwatch.py - the no-leak check of the integration suite (issue 12, item 5).

While the suite runs, the helpers hand everything Veil says to the watch:
every line a long-running `veil` process prints (its log, at level debug in
every Pipeline), the output of every `veil` command the tests run (but
`veil reveal`, whose job is to print plaintext), every /metrics page read,
every audit event and every dead letter's headers (its sealed payload
excepted) read back from Kafka. The PII the tests produce is recorded too
(every customer demo_produce.customer() makes), and the key bytes the tests
use.

findings() then checks all of it three ways: `veil scan` (the product's own
detectors; loopback addresses excepted, they are the test's brokers), the
exact PII values, and the key bytes raw, in hex and in base64. It returns
what it found as short descriptions that name the output and the kind of
value, never the value itself. conftest.py fails the session when there is
any finding; test_noleak.py checks the watch itself and a pipeline of its
own."""
import base64
import json
import os
import re
import subprocess
import tempfile
import threading

# Values shorter than this are too common to mean anything on their own.
MIN_VALUE_LEN = 6
# veil scan findings that are the test setup, not data: loopback brokers
# and registries, and the unspecified address.
BENIGN = re.compile(r"^(127\.\d+\.\d+\.\d+|0\.0\.0\.0)$")


class Watch:
    def __init__(self):
        self.lock = threading.Lock()
        self.outputs = []      # (where, text)
        self.values = {}       # value -> kind
        self.keys = {}         # key bytes -> name

    # -- recording -------------------------------------------------------------

    def output(self, where, text):
        if text is None:
            return
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if text:
            with self.lock:
                self.outputs.append((where, text))

    def value(self, kind, v):
        if v is None:
            return
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        v = str(v)
        if len(v) >= MIN_VALUE_LEN:
            with self.lock:
                self.values.setdefault(v, kind)

    def customer(self, c):
        """The PII of one demo customer (scripts/demo_produce.customer)."""
        for k in ("customer_id", "email", "phone", "full_name", "ssn", "last_login_ip"):
            self.value(k, c.get(k))
        card = c.get("card_number")
        if card:
            self.value("card_number", card)
            self.value("card_number", card.replace(" ", ""))
        if c.get("ssn"):
            self.value("ssn", c["ssn"].replace("-", ""))
        addr = c.get("address") or {}
        self.value("street", addr.get("street"))
        for contact in c.get("contacts") or []:
            self.value("contact_email", contact.get("email"))
        return c

    def key(self, name, data):
        if isinstance(data, str):
            data = data.encode()
        if data and len(data) >= 16:
            with self.lock:
                self.keys.setdefault(bytes(data), name)

    def dead_letters_and_audit(self, topic, msgs):
        """Messages read back from a topic: audit events whole, dead letters'
        headers (their payload is sealed or, with payload: raw, the input
        as it was, by design)."""
        audit = topic.endswith(".audit") or topic == "veil.audit"
        dlq = topic.endswith(".dlq") or topic == "veil.dlq"
        if not (audit or dlq):
            return
        for m in msgs:
            hdrs = m.headers() or []
            head = "\n".join(f"{k}: {(v or b'').decode('utf-8', 'replace')}" for k, v in hdrs)
            where = f"{'audit' if audit else 'dlq'} {topic}/{m.partition()}/{m.offset()}"
            self.output(where + " headers", head)
            if audit and m.value() is not None:
                self.output(where + " value", m.value())

    # -- checking --------------------------------------------------------------

    def findings(self, veil):
        with self.lock:
            outputs = list(self.outputs)
            values = dict(self.values)
            keys = dict(self.keys)
        found = []
        found += scan_with_veil(veil, outputs)
        found += exact_values(outputs, values)
        found += key_bytes(outputs, keys)
        return found


def scan_with_veil(veil, outputs):
    """`veil scan --format json` over the outputs, one file each."""
    if not outputs:
        return []
    found = []
    with tempfile.TemporaryDirectory(prefix="veil-leakwatch.") as d:
        names = {}
        for i, (where, text) in enumerate(outputs):
            path = os.path.join(d, f"{i:06d}.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            names[path] = where
        r = subprocess.run([veil, "scan", "--format", "json", d], capture_output=True,
                           text=True, timeout=600)
        if r.returncode not in (0, 1):
            return [f"veil scan failed ({r.returncode}): {r.stderr.strip()[-300:]}"]
        for line in r.stdout.splitlines():
            f = json.loads(line)
            path = f["path"] if os.path.isabs(f["path"]) else os.path.join(d, f["path"])
            path = os.path.normpath(path)
            with open(path, encoding="utf-8") as fh:
                text_line = fh.read().split("\n")[f["line"] - 1]
            hit = text_line.encode()[f["start"]:f["end"]].decode("utf-8", "replace")
            if BENIGN.match(hit):
                continue
            found.append(f"veil scan: {f['detector']} in {names.get(path, path)} "
                         f"line {f['line']} bytes {f['start']}-{f['end']}")
    return found


def _trie_regex(words):
    """One regex matching any of the words (a trie, so the engine does not
    try each alternative at every position)."""
    trie = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = True

    def build(node):
        alts = []
        end = False
        for ch, sub in sorted(node.items()):
            if ch == "":
                end = True
                continue
            alts.append(re.escape(ch) + build(sub))
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if end else body

    return re.compile(build(trie))


def exact_values(outputs, values):
    if not values or not outputs:
        return []
    rx = _trie_regex(values)
    found = []
    for where, text in outputs:
        for m in rx.finditer(text):
            # The trie regex matches the longest prefix path; only whole
            # recorded values count.
            v = m.group(0)
            # A value inside a longer run of letters and digits is not that
            # value (a 9-digit SSN inside a 20-digit number or a hex
            # fingerprint of a multi-megabyte report).
            if (v[0].isalnum() and m.start() > 0 and text[m.start() - 1].isalnum()) or \
                    (v[-1].isalnum() and m.end() < len(text) and text[m.end()].isalnum()):
                continue
            if v in values:
                found.append(f"exact value: a {values[m.group(0)]} in {where} "
                             f"at char {m.start()}")
                break
    return found


def _forms(key):
    yield "raw", key.decode("latin-1")
    yield "hex", key.hex()
    yield "HEX", key.hex().upper()
    for shift in range(3):
        part = key[shift:]
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            s = enc(part).decode().rstrip("=")
            # The last characters depend on what follows in the output.
            if len(s) > 8:
                yield "base64", s[:-4]


def key_bytes(outputs, keys):
    found = []
    for key, name in keys.items():
        forms = list(_forms(key))
        for where, text in outputs:
            for kind, f in forms:
                if f and f in text:
                    found.append(f"key bytes: {name} ({kind}) in {where}")
                    break
    return found


WATCH = Watch()
