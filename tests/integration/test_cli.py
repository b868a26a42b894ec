"""The `veil` command's contract: dispatch, --help, --version, exit codes,
and `veil check` on real files (DESIGN.md §5)."""
import json
import re
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VEIL = os.environ.get("VEIL", str(ROOT / "build" / "veil"))
COMMANDS = ["run", "check", "scan", "broker", "erase", "dlq", "audit", "report",
            "reveal", "topics", "guard"]


def veil(*args, cwd=None, env=None):
    return subprocess.run([VEIL, *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60)


def test_version():
    r = veil("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("veil ")


def test_help_lists_every_command():
    r = veil("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert f"  {c} " in r.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_help(cmd):
    r = veil(cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: veil {cmd}")


def test_no_command_is_a_usage_error():
    r = veil()
    assert r.returncode == 2
    assert "usage: veil" in r.stderr


@pytest.mark.parametrize("args", [["frobnicate"], ["--frobnicate"],
                                  ["check", "--nope"], ["check"],
                                  ["check", "-c"],
                                  ["check", "-c", "x", "--format", "xml"],
                                  ["guard"], ["guard", "pause"],
                                  ["guard", "resume", "-c", "x"],
                                  ["guard", "status"]])
def test_unknown_command_or_option_exits_2_with_usage(args):
    r = veil(*args)
    assert r.returncode == 2
    assert "usage: veil" in r.stderr


def demo_copy(tmp_path):
    """The demo config and schemas, copied so tests can change them."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    return tmp_path / "config" / "veil.yaml"


def test_check_demo_config_reports_by_path(tmp_path):
    cfg = demo_copy(tmp_path)
    r = veil("check", "-c", str(cfg), "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["policy"]) == 64
    assert doc["summary"]["errors"] == sum(
        1 for f in doc["findings"] if f["severity"] == "error")
    assert (r.returncode == 1) == (doc["summary"]["errors"] > 0)
    for f in doc["findings"]:
        assert f["kind"] and f["message"]


def test_check_unclassified_field_makes_exit_1(tmp_path):
    cfg = demo_copy(tmp_path)
    schema = tmp_path / "schemas" / "customers-value.avsc"
    doc = json.loads(schema.read_text())
    doc["fields"].append({"name": "shoe_size", "type": "int"})
    schema.write_text(json.dumps(doc))
    r = veil("check", "-c", str(cfg))
    assert r.returncode == 1
    assert "shoe_size" in r.stdout and "[unclassified]" in r.stdout


def test_check_bad_config_exits_2_with_position(tmp_path):
    cfg = demo_copy(tmp_path)
    text = cfg.read_text().replace("purposes:", "purposez:", 1)
    cfg.write_text(text)
    r = veil("check", "-c", str(cfg))
    assert r.returncode == 2
    assert f"{cfg}:" in r.stderr and "purposez" in r.stderr


def test_check_registry_down_exits_2(tmp_path):
    cfg = demo_copy(tmp_path)
    text = cfg.read_text()

    text = re.sub(r"url: *\S+", "url: http://127.0.0.1:9", text, count=1)
    cfg.write_text(text)
    r = veil("check", "-c", str(cfg))
    assert r.returncode == 2, r.stdout + r.stderr
    # The registry is named once, never "registry: registry ...".
    assert re.fullmatch(
        r"veil check: registry GET http://127\.0\.0\.1:9/subjects/customers-value"
        r"/versions/latest: [^\n]*Couldn't connect to server \(\d+ attempts?\)\n",
        r.stderr), r.stderr


def test_check_file_registry_error_names_the_registry_once(tmp_path):
    cfg = demo_copy(tmp_path)
    (tmp_path / "schemas" / "customers-value.avsc").write_text("{ not json\n")
    r = veil("check", "-c", str(cfg))
    assert r.returncode == 2, r.stdout + r.stderr
    avsc = (tmp_path / "schemas" / "customers-value.avsc").resolve()
    assert re.fullmatch(rf"veil check: registry: {re.escape(str(avsc))}:1:\d+: [^\n]+\n",
                        r.stderr), r.stderr
