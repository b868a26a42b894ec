"""`veil scan`: formats (text, JSON lines, SARIF 2.1.0 read back with a JSON
parser and checked against the shape the SARIF 2.1.0 schema requires),
offsets, directories, stdin, detector filters, fingerprint salts,
baselines, exit codes, and reports that do not depend on -j or on how files
are cut into pieces. Self-contained: needs only the binary (env VEIL)."""
import hashlib
import hmac
import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VEIL = os.environ.get("VEIL", str(ROOT / "build" / "veil"))

# Synthetic values (published test numbers, documentation ranges).
EMAIL = "alice@example.com"
PHONE = "+1 (415) 555-2671"
SSN = "123-45-6789"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
IPV4 = "192.0.2.10"
IPV6 = "2001:db8::1"
VALUES = {"email": EMAIL, "phone": PHONE, "us_ssn": SSN,
          "credit_card": CARD, "iban": IBAN, "ipv4": IPV4, "ipv6": IPV6}

TEXT = (
    "Customer note: please reach Zoë at " + EMAIL + " or " + PHONE + ".\n"
    "nothing here: ORD-2024-000123 550e8400-e29b-41d4-a716-446655440000\n"
    "SSN " + SSN + ", card " + CARD + "\n"
    "北京 IBAN " + IBAN + " from " + IPV4 + " and " + IPV6 + "\n"
)


SALT = "test-salt-not-a-secret"
CORPUS = ROOT / "tests" / "corpus" / "corpus.txt"


def run_scan(*args, stdin=None, env=None, salt=SALT):
    """Runs `veil scan` with the fingerprint salt `salt` (None: none)."""
    e = dict(os.environ)
    e.pop("VEIL_SCAN_SALT", None)
    if salt is not None:
        e["VEIL_SCAN_SALT"] = salt
    if env:
        e.update(env)
    return subprocess.run([VEIL, "scan", *args], capture_output=True,
                          input=stdin, env=e, timeout=120)


def lines_of(path):
    return pathlib.Path(path).read_bytes().split(b"\n")


def assert_no_values(out):
    for v in VALUES.values():
        assert v.encode() not in out, "a report leaked a matched value"


@pytest.fixture
def sample(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def parse_text(out):
    rx = re.compile(rb"^(.*):(\d+):(\d+)-(\d+): (\w+)$")
    rows = []
    for ln in out.splitlines():
        m = rx.match(ln)
        assert m, ln
        rows.append((m.group(1).decode(), int(m.group(2)), int(m.group(3)),
                     int(m.group(4)), m.group(5).decode()))
    return rows


def test_help():
    r = run_scan("--help")
    assert r.returncode == 0
    assert r.stdout.startswith(b"usage: veil scan")
    for word in (b"text", b"json", b"sarif", b"--baseline", b"--detectors",
                 b"--jobs", b"--salt-file", b"VEIL_SCAN_SALT"):
        assert word in r.stdout


def test_text_format_positions(sample):
    r = run_scan(str(sample))
    assert r.returncode == 1, r.stderr
    rows = parse_text(r.stdout)
    assert [row[4] for row in rows] == ["email", "phone", "us_ssn",
                                        "credit_card", "iban", "ipv4", "ipv6"]
    lines = lines_of(sample)
    for path, line, start, end, det in rows:
        assert path == str(sample)
        # byte offsets within the line, end exclusive
        assert lines[line - 1][start:end] == VALUES[det].encode()
    assert_no_values(r.stdout + r.stderr)


def test_json_lines(sample):
    r = run_scan("--format", "json", str(sample))
    assert r.returncode == 1, r.stderr
    objs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(objs) == 7
    lines = lines_of(sample)
    for o in objs:
        assert set(o) == {"path", "line", "start", "end", "detector",
                          "fingerprint"}
        assert o["path"] == str(sample)
        assert isinstance(o["line"], int) and o["line"] >= 1
        assert lines[o["line"] - 1][o["start"]:o["end"]] == \
            VALUES[o["detector"]].encode()
        assert re.fullmatch(r"[0-9a-f]{32}", o["fingerprint"])
    assert_no_values(r.stdout)


def check_sarif_shape(doc):
    """What the SARIF 2.1.0 schema requires of the parts veil writes (no
    schema validator is installed by scripts/deps.sh): required properties,
    types, ranges, and every reference (rule index, message id) resolved."""
    assert set(doc) <= {"$schema", "version", "runs"}
    assert doc["version"] == "2.1.0"
    assert isinstance(doc["runs"], list) and len(doc["runs"]) == 1
    run = doc["runs"][0]
    assert set(run) <= {"tool", "columnKind", "results"}
    driver = run["tool"]["driver"]
    assert isinstance(driver["name"], str) and driver["name"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", driver["semanticVersion"])
    rules = driver["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids)), "each rule declared once"
    for r in rules:
        assert isinstance(r["id"], str) and r["id"]
        assert isinstance(r["shortDescription"]["text"], str)
        assert r["defaultConfiguration"]["level"] in (
            "none", "note", "warning", "error")
        for m in r["messageStrings"].values():
            assert isinstance(m["text"], str)
    assert run["columnKind"] in ("utf16CodeUnits", "unicodeCodePoints")
    assert isinstance(run["results"], list)
    for res in run["results"]:
        assert set(res) <= {"ruleId", "ruleIndex", "message", "locations",
                            "partialFingerprints"}
        idx = res["ruleIndex"]
        assert isinstance(idx, int) and 0 <= idx < len(rules)
        assert rules[idx]["id"] == res["ruleId"]
        msg = res["message"]
        assert "text" in msg or "id" in msg  # the schema's anyOf
        if "id" in msg:
            text = rules[idx]["messageStrings"][msg["id"]]["text"]
            for k, arg in enumerate(msg.get("arguments", [])):
                assert isinstance(arg, str)
                assert "{%d}" % k in text
        assert len(res["locations"]) == 1
        loc = res["locations"][0]["physicalLocation"]
        assert isinstance(loc["artifactLocation"]["uri"], str)
        reg = loc["region"]
        assert reg["startLine"] >= 1 and reg["startColumn"] >= 1
        assert reg["endColumn"] >= reg["startColumn"]
        assert reg["byteOffset"] >= 0 and reg["byteLength"] >= 0
        for v in res.get("partialFingerprints", {}).values():
            assert isinstance(v, str)


def test_sarif(sample):
    r = run_scan("-f", "sarif", str(sample))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    check_sarif_shape(doc)
    assert "sarif" in doc["$schema"]
    run = doc["runs"][0]
    assert run["tool"]["driver"]["name"] == "veil"
    rules = run["tool"]["driver"]["rules"]
    assert set(VALUES) <= {rule["id"] for rule in rules}
    for rule in rules:  # the level and the message, once per rule
        assert rule["defaultConfiguration"]["level"] == "warning"
        assert rule["messageStrings"]["found"]["text"] == \
            rule["id"] + " found (confidence {0})"
    results = run["results"]
    assert len(results) == 7
    text_lines = TEXT.split("\n")
    for res in results:
        assert res["ruleId"] in VALUES
        assert res["message"]["id"] == "found"
        conf = float(res["message"]["arguments"][0])
        assert 0.5 <= conf <= 1.0
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == str(sample)
        reg = loc["region"]
        # 1-based columns counted in code points (columnKind), end exclusive
        line = text_lines[reg["startLine"] - 1]
        assert line[reg["startColumn"] - 1:reg["endColumn"] - 1] == \
            VALUES[res["ruleId"]]
        raw = TEXT.encode()
        assert raw[reg["byteOffset"]:reg["byteOffset"] + reg["byteLength"]] \
            == VALUES[res["ruleId"]].encode()
        assert re.fullmatch(r"[0-9a-f]{32}",
                            res["partialFingerprints"]["veilFingerprint/v1"])
    assert run["columnKind"] == "unicodeCodePoints"
    assert_no_values(r.stdout)


def test_sarif_is_compact(tmp_path):
    # size in proportion to the findings: a fixed head, then a few hundred
    # bytes per result (no indentation, no per-result level or text)
    sizes = {}
    for n in (0, 10, 1000):
        p = tmp_path / ("n%d.txt" % n)
        p.write_text("".join("ticket %d mail %s\n" % (i, EMAIL)
                             for i in range(n)) + "end\n")
        r = run_scan("-f", "sarif", str(p))
        assert r.returncode == (1 if n else 0)
        doc = json.loads(r.stdout)
        check_sarif_shape(doc)
        assert len(doc["runs"][0]["results"]) == n
        sizes[n] = len(r.stdout)
    per10 = (sizes[10] - sizes[0]) / 10
    per1000 = (sizes[1000] - sizes[0]) / 1000
    assert per1000 < 400, per1000
    assert abs(per1000 - per10) < 10  # linear: nothing grows per result
    assert b"\n  " not in r.stdout  # not indented


def test_sarif_without_findings_is_valid(tmp_path):
    p = tmp_path / "clean.txt"
    p.write_text("just words\n")
    r = run_scan("--format=sarif", str(p))
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    check_sarif_shape(doc)
    assert doc["runs"][0]["results"] == []


def test_clean_file_exit_0(tmp_path):
    p = tmp_path / "clean.txt"
    p.write_text("ORD-2024-000123 v1.2.3 2024-01-15T10:22:33Z $1,299.99\n")
    e = tmp_path / "empty.txt"
    e.write_bytes(b"")
    r = run_scan(str(p), str(e))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == b""


def test_directory_recursive_skips_binary(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "a.txt").write_text("mail " + EMAIL + "\n")
    (tmp_path / "b" / "deep" / "c.log").write_text("x\ny " + SSN + "\n")
    (tmp_path / "b" / "blob.bin").write_bytes(
        b"\x00\x01binary " + EMAIL.encode() + b"\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text(EMAIL + "\n")
    r = run_scan("-f", "json", str(tmp_path))
    assert r.returncode == 1, r.stderr
    objs = [json.loads(ln) for ln in r.stdout.splitlines()]
    got = [(o["path"], o["line"], o["detector"]) for o in objs]
    assert got == [(str(tmp_path / "a.txt"), 1, "email"),
                   (str(tmp_path / "b" / "deep" / "c.log"), 2, "us_ssn")]


def test_stdin(sample):
    r = run_scan("-f", "json", "-", stdin=TEXT.encode())
    assert r.returncode == 1
    objs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(objs) == 7
    assert {o["path"] for o in objs} == {"-"}
    r = run_scan("-", stdin=b"no personal data\n")
    assert r.returncode == 0
    assert r.stdout == b""


def test_detectors_filter(sample):
    r = run_scan("--detectors", "email,ipv6", str(sample))
    assert r.returncode == 1
    assert [row[4] for row in parse_text(r.stdout)] == ["email", "ipv6"]
    r = run_scan("-d", "iban", "-f", "json", "-", stdin=b"mail " +
                 EMAIL.encode() + b"\n")
    assert r.returncode == 0
    assert r.stdout == b""


@pytest.mark.parametrize("args,msg", [
    (["--detectors", "emial"], b"did you mean 'email'"),
    (["--detectors", ","], b"empty"),
    (["--format", "xml"], b"unknown format"),
    (["--bogus"], b"unknown option"),
    (["--format"], b"needs a value"),
    ([], b"no PATH"),
])
def test_usage_errors_exit_2(sample, args, msg):
    r = run_scan(*args, *([str(sample)] if args and args != ["--format"]
                          else []))
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert msg in r.stderr
    assert b"usage: veil scan" in r.stderr


def test_missing_file_exit_2_even_with_findings(sample, tmp_path):
    r = run_scan(str(sample), str(tmp_path / "nope.txt"))
    assert r.returncode == 2
    assert b"nope.txt" in r.stderr
    assert len(parse_text(r.stdout)) == 7  # the other file is still scanned


def test_baseline_suppresses_known_findings(sample, tmp_path):
    base = tmp_path / "baseline.json"
    r = run_scan("-f", "json", str(sample))
    base.write_bytes(r.stdout)

    r = run_scan("--baseline", str(base), str(sample))
    assert r.returncode == 0, r.stdout
    assert r.stdout == b""
    assert b"7 finding(s) in the baseline" in r.stderr

    # lines move: still suppressed (fingerprints do not hold positions)
    sample.write_text("new first line\n\n" + TEXT, encoding="utf-8")
    r = run_scan("-b", str(base), "-f", "json", str(sample))
    assert r.returncode == 0, r.stdout

    # a new leak is reported, and only it
    sample.write_text(TEXT + "also bob@example.org\n", encoding="utf-8")
    r = run_scan("-b", str(base), "-f", "json", str(sample))
    assert r.returncode == 1
    objs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(o["line"], o["detector"]) for o in objs] == [(5, "email")]

    # a changed value is a new finding
    sample.write_text(TEXT.replace(SSN, "123-45-6780"), encoding="utf-8")
    r = run_scan("-b", str(base), "-f", "json", str(sample))
    assert r.returncode == 1
    assert [json.loads(ln)["detector"] for ln in r.stdout.splitlines()] == \
        ["us_ssn"]


def test_baseline_fingerprints_depend_on_salt(sample, tmp_path):
    base = tmp_path / "baseline.json"
    base.write_bytes(run_scan("-f", "json", str(sample)).stdout)
    r = run_scan("-b", str(base), str(sample),
                 env={"VEIL_SCAN_SALT": "another-key"})
    assert r.returncode == 1
    assert len(parse_text(r.stdout)) == 7


def test_baseline_without_fingerprints_matches_positions(sample, tmp_path):
    objs = [json.loads(ln) for ln in
            run_scan("-f", "json", str(sample)).stdout.splitlines()]
    base = tmp_path / "baseline.json"
    base.write_text("\n".join(json.dumps({k: o[k] for k in (
        "path", "line", "start", "end", "detector")}) for o in objs[:3]) +
        "\n")
    r = run_scan("-b", str(base), str(sample))
    assert r.returncode == 1
    assert [row[4] for row in parse_text(r.stdout)] == [
        "credit_card", "iban", "ipv4", "ipv6"]


@pytest.mark.parametrize("content", [
    None,                         # missing file
    "not json\n",
    '{"path": "x"}\n',            # neither fingerprint nor position
    '[1, 2]\n',
])
def test_bad_baseline_exit_2(sample, tmp_path, content):
    base = tmp_path / "baseline.json"
    if content is not None:
        base.write_text(content)
    r = run_scan("--baseline", str(base), str(sample))
    assert r.returncode == 2
    assert b"baseline" in r.stderr
    assert r.stdout == b""


def test_large_file_line_numbers_across_chunks(tmp_path):
    # past the 64 MiB piece size, so the file is scanned in two pieces
    p = tmp_path / "big.txt"
    filler = b"lorem ipsum dolor sit amet, consectetur adipiscing elit\n"
    n = (70 << 20) // len(filler)
    with open(p, "wb") as f:
        f.write(b"first " + EMAIL.encode() + b"\n")
        f.write(filler * n)
        f.write(b"last  " + SSN.encode() + b" end\n")
    r = run_scan("-f", "json", str(p))
    assert r.returncode == 1, r.stderr
    objs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(o["line"], o["start"], o["end"], o["detector"]) for o in objs] \
        == [(1, 6, 6 + len(EMAIL), "email"),
            (n + 2, 6, 6 + len(SSN), "us_ssn")]


def test_national_ids_and_secrets_by_name(tmp_path):
    """The issue-17 detectors are names `--detectors` accepts; an NHS
    number's context keeps it from being a phone, valid or not."""
    f = tmp_path / "ids.txt"
    f.write_text("NHS number 943 476 5919\n"
                 "NHS number 943 476 5918\n"
                 "aws_access_key_id=AKIAIOSFODNN7EXAMPLE\n"
                 "CPF 123.456.789-09, call 415-555-2671\n")
    r = run_scan("--format", "json", str(f))
    assert r.returncode == 1, r.stderr
    got = [(j["line"], j["detector"]) for j in map(json.loads, r.stdout.decode().splitlines())]
    assert got == [(1, "uk_nhs"), (3, "aws_access_key"), (4, "br_cpf"), (4, "phone")]
    r = run_scan("--detectors", "uk_nhs,jwt", "--format", "json", str(f))
    assert r.returncode == 1, r.stderr
    assert [json.loads(x)["detector"] for x in r.stdout.decode().splitlines()] == ["uk_nhs"]
    assert b"943" not in r.stdout and b"AKIA" not in r.stdout


# ------------------------------------------------------------ salt (issue 11)
def test_no_salt_no_fingerprints(sample):
    r = run_scan("-f", "json", str(sample), salt=None)
    assert r.returncode == 1, r.stderr
    objs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(objs) == 7
    for o in objs:
        assert set(o) == {"path", "line", "start", "end", "detector"}
    assert b"no salt" in r.stderr
    r = run_scan("-f", "sarif", str(sample), salt=None)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    check_sarif_shape(doc)
    results = doc["runs"][0]["results"]
    assert len(results) == 7
    assert all("partialFingerprints" not in res for res in results)
    # an empty VEIL_SCAN_SALT is no salt either
    r = run_scan("-f", "json", str(sample), salt="")
    assert all("fingerprint" not in json.loads(ln)
               for ln in r.stdout.splitlines())


def test_fingerprint_is_hmac_of_path_detector_value(sample):
    r = run_scan("-f", "json", str(sample))
    for o in (json.loads(ln) for ln in r.stdout.splitlines()):
        msg = b"\0".join([o["path"].encode(), o["detector"].encode(),
                          VALUES[o["detector"]].encode()])
        want = hmac.new(SALT.encode(), msg, hashlib.sha256).hexdigest()[:32]
        assert o["fingerprint"] == want


@pytest.mark.parametrize("args", [["--baseline"], ["-b"]])
def test_baseline_needs_a_salt(sample, tmp_path, args):
    base = tmp_path / "baseline.json"
    base.write_bytes(run_scan("-f", "json", str(sample)).stdout)
    r = run_scan(*args, str(base), str(sample), salt=None)
    assert r.returncode == 2
    assert b"--baseline needs the secret salt" in r.stderr
    assert b"VEIL_SCAN_SALT" in r.stderr and b"--salt-file" in r.stderr
    assert r.stdout == b""


def test_salt_file(sample, tmp_path):
    env_fps = [json.loads(ln)["fingerprint"] for ln in
               run_scan("-f", "json", str(sample)).stdout.splitlines()]
    sf = tmp_path / "salt"
    sf.write_text(SALT + "\n")  # one trailing newline is not part of it
    r = run_scan("-f", "json", "--salt-file", str(sf), str(sample), salt=None)
    assert r.returncode == 1, r.stderr
    assert [json.loads(ln)["fingerprint"]
            for ln in r.stdout.splitlines()] == env_fps
    # the file wins over the environment
    r = run_scan("-f", "json", "--salt-file", str(sf), str(sample),
                 salt="other")
    assert [json.loads(ln)["fingerprint"]
            for ln in r.stdout.splitlines()] == env_fps
    # and a baseline made with it suppresses
    base = tmp_path / "baseline.json"
    base.write_bytes(r.stdout)
    r = run_scan("--salt-file", str(sf), "-b", str(base), str(sample),
                 salt=None)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_bad_salt_file_exit_2(sample, tmp_path, content):
    sf = tmp_path / "salt"
    if content is not None:
        sf.write_text(content)
    r = run_scan("-f", "json", "--salt-file", str(sf), str(sample), salt=None)
    assert r.returncode == 2
    assert b"salt" in r.stderr
    assert r.stdout == b""


# ------------------------------------------------------- threads and pieces
def scan_all_formats(paths, jobs, piece=None):
    env = {"VEIL_SCAN_PIECE_SIZE": str(piece)} if piece else None
    out = {}
    for fmt in ("text", "json", "sarif"):
        r = run_scan("-f", fmt, "-j", str(jobs), *map(str, paths), env=env)
        assert r.returncode in (0, 1), r.stderr
        out[fmt] = r.stdout
    return out


def test_report_same_for_any_jobs_and_pieces(sample, tmp_path):
    # the labelled corpus, the sample, and a tree of small files; pieces
    # of 1 GiB (each file in one scan), the default, and tiny ones (a
    # piece per line or so, each scanned with the bytes before it)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(30):
        (tree / ("f%02d.txt" % i)).write_text(TEXT * (i % 3))
        (tree / "sub" / ("g%02d.log" % i)).write_text(
            "x\n" * i + "peer " + IPV6 + " card " + CARD + "\n")
    dense = tmp_path / "dense.txt"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_corpus.py"),
                    "--bulk", "1", "--density", "dense", "--out", str(dense)],
                   check=True, capture_output=True)
    paths = [CORPUS, sample, tree, dense]
    whole = scan_all_formats(paths, 1, piece=1 << 30)
    assert whole["text"].count(b"\n") > 20000
    assert whole == scan_all_formats(paths, 1)
    assert whole == scan_all_formats(paths, 3)
    assert whole == scan_all_formats(paths, 4, piece=100)
    assert whole == scan_all_formats(paths, 1, piece=4096)
    check_sarif_shape(json.loads(whole["sarif"]))


def test_context_before_a_piece_is_seen(tmp_path):
    # a bare 9-digit SSN needs its context word, which sits on the line
    # before: a piece that starts at the number still sees it
    p = tmp_path / "ctx.txt"
    p.write_text("filler\nsocial security\n536221234 rest\n")
    for piece in (1, 1 << 20):
        r = run_scan("-j", "2", str(p), env={"VEIL_SCAN_PIECE_SIZE":
                                              str(piece)})
        assert parse_text(r.stdout) == [(str(p), 3, 0, 9, "us_ssn")], piece
    p.write_text("filler\nnothing here\n536221234 rest\n")
    assert run_scan(str(p)).stdout == b""


@pytest.mark.parametrize("jobs", ["0", "x", "257", ""])
def test_bad_jobs_exit_2(sample, jobs):
    r = run_scan("-j", jobs, str(sample))
    assert r.returncode == 2
    assert b"--jobs" in r.stderr


def test_closed_output_exit_2(tmp_path):
    # the reader went away (SIGPIPE ignored, as under some supervisors):
    # a clear error and exit 2, and the scan stops instead of running on
    p = tmp_path / "many.txt"
    p.write_text(TEXT * 20000)
    proc = subprocess.Popen(
        [VEIL, "scan", "-j", "2", str(p)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "VEIL_SCAN_SALT": SALT},
        preexec_fn=lambda: signal.signal(signal.SIGPIPE, signal.SIG_IGN))
    proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 2
    assert b"writing the report" in err
