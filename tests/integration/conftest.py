"""conftest.py - fixtures of the integration tests: the veil binary, the dev broker, the real Kafka."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import VeilBroker  # noqa: E402


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
