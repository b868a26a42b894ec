"""faults.py - the one Python wrapper of tests/tools/fault_broker (librdkafka's mock cluster with error injection): start it, create topics, push request errors, take brokers down, delay responses."""
import os
import signal
import subprocess
import tempfile

from helpers import DEFAULT_TIMEOUT, read_line, wait_for

# The mock cluster has one broker unless asked for more; its id is 1.
BROKER = 1


def tool_path():
    """Where `make integration` built the tool: env VEIL_FAULT_BROKER, else
    beside the veil binary (build/tools or build/san/tools)."""
    path = os.environ.get("VEIL_FAULT_BROKER")
    if not path and os.environ.get("VEIL"):
        path = os.path.join(os.path.dirname(os.environ["VEIL"]), "tools", "fault_broker")
    return path


class FaultBroker:
    """A mock cluster under the test's control. Every command waits for the
    tool's answer, so an injection is in place when the call returns."""

    def __init__(self, path, brokers=1):
        self.argv = [path, "--brokers", str(brokers)]
        self.proc = None
        self.log = None
        self.bootstrap = None

    def start(self, timeout=DEFAULT_TIMEOUT):
        # stderr (the mock's own warnings) goes to a file: a pipe nobody
        # reads would fill up and stall the mock's threads.
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.bootstrap = read_line(self.proc.stdout, timeout, "the fault broker's bootstrap")
        return self.bootstrap

    def command(self, line, timeout=DEFAULT_TIMEOUT):
        """Sends one command; returns the text after "ok", fails on "error"."""
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        answer = read_line(self.proc.stdout, timeout, f"the answer to {line!r}")
        if not answer.startswith("ok"):
            raise AssertionError(f"fault broker: {line!r}: {answer}")
        return answer[2:].strip()

    # -- what the tests call -------------------------------------------------

    def create_topic(self, name, partitions=1):
        self.command(f"topic {name} {partitions}")

    def push_errors(self, api, *codes):
        """The next len(codes) requests of `api` on any broker fail with
        these codes in order ("CODE*N" repeats one)."""
        self.command(f"errors {api} {' '.join(codes)}")

    def push_broker_errors(self, api, *codes, broker=BROKER):
        """The same on one broker, each code optionally "CODE@RTT_MS";
        these can be counted with pending()."""
        self.command(f"broker-errors {broker} {api} {' '.join(codes)}")

    def pending(self, api, broker=BROKER):
        """How many errors pushed with push_broker_errors are not yet
        returned to a client."""
        return int(self.command(f"stack {broker} {api}"))

    def wait_consumed(self, api, timeout=60, broker=BROKER):
        """Waits until every error queued for `api` went to a client: the
        injected fault really happened."""
        wait_for(lambda: self.pending(api, broker) == 0, timeout=timeout,
                 what=f"the injected {api} errors to be returned")

    def clear(self, api):
        self.command(f"clear {api}")

    def down(self, broker=-1):
        self.command(f"down {broker}")

    def up(self, broker=-1):
        self.command(f"up {broker}")

    def rtt(self, ms, broker=-1):
        self.command(f"rtt {broker} {ms}")

    def stop(self, timeout=DEFAULT_TIMEOUT):
        """Ends the cluster (SIGTERM if it does not take `quit`)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.log.close()
        self.proc = None
