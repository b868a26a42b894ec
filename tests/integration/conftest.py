"""conftest.py - fixtures of the integration tests: the veil binary, the dev broker, the real Kafka."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import VeilBroker  # noqa: E402
from leakwatch import WATCH  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import demo_produce  # noqa: E402

# ---- the no-leak check (leakwatch.py) ---------------------------------------
# Commands whose job is to print what they decrypt.
PLAINTEXT_COMMANDS = {"reveal"}
_run = subprocess.run
_customer = demo_produce.customer


def _watched_run(args, *a, **kw):
    """subprocess.run, handing the output of `veil` commands to the watch."""
    r = _run(args, *a, **kw)
    veil = os.environ.get("VEIL")
    if (veil and isinstance(args, (list, tuple)) and args and str(args[0]) == veil
            and len(args) > 1 and args[1] not in PLAINTEXT_COMMANDS):
        where = f"veil {args[1]}"
        WATCH.output(where + " stdout", r.stdout)
        WATCH.output(where + " stderr", r.stderr)
    return r


def pytest_configure(config):
    subprocess.run = _watched_run
    demo_produce.customer = lambda rng, i: WATCH.customer(_customer(rng, i))
    with open(os.path.join(REPO, "config", "dev-hmac.key"), "rb") as f:
        WATCH.key("config/dev-hmac.key", f.read().strip())


def pytest_unconfigure(config):
    subprocess.run = _run
    demo_produce.customer = _customer


def pytest_sessionfinish(session, exitstatus):
    """Fails the run when any output of the session held PII or key bytes."""
    veil = os.environ.get("VEIL")
    if not veil or session.config.getoption("collectonly", False):
        return
    for mod in list(sys.modules.values()):
        key = getattr(mod, "HMAC_KEY", None)
        if isinstance(key, str) and getattr(mod, "__file__", "").startswith(REPO):
            WATCH.key(f"{mod.__name__}.HMAC_KEY", key)
    found = WATCH.findings(veil)
    n = len(WATCH.outputs)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    say = reporter.write_line if reporter else print
    if found:
        say(f"leakwatch: {len(found)} leak(s) in {n} outputs:")
        for f in found[:50]:
            say(f"  {f}")
        session.exitstatus = 1
    else:
        say(f"leakwatch: {n} outputs, {len(WATCH.values)} PII values, "
            f"{len(WATCH.keys)} keys: no leak")


@pytest.fixture(scope="session")
def veil():
    """Absolute path of the veil binary under test (env VEIL, set by
    tests/integration/run.sh). Missing is a failure, never a skip."""
    path = os.environ.get("VEIL")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"VEIL must name the veil binary (got {path!r}); run `make integration`")
    return path


@pytest.fixture(scope="session")
def kafka():
    """Bootstrap of the real single-node Kafka (env VEIL_KAFKA_BOOTSTRAP,
    exported by run.sh after scripts/kafka.sh up)."""
    bootstrap = os.environ.get("VEIL_KAFKA_BOOTSTRAP")
    if not bootstrap:
        pytest.fail("VEIL_KAFKA_BOOTSTRAP is not set; run `make integration` "
                    "or export it after scripts/kafka.sh up")
    return bootstrap


@pytest.fixture
def mock_broker(veil):
    """A `veil broker --topic t1:4` of its own for one test."""
    b = VeilBroker(veil, "--topic", "t1:4")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def fault_broker():
    """tests/tools/fault_broker of its own for one test: the mock cluster
    with error injection (tests/integration/faults.py). `make integration`
    builds it; missing is a failure, never a skip."""
    from faults import FaultBroker, tool_path

    path = tool_path()
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"no fault broker at {path!r}: run `make integration` "
                    "(or build $(O)/tools/fault_broker)")
    b = FaultBroker(path)
    b.start()
    yield b
    b.stop()
