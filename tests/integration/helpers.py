"""helpers.py - shared tools for the integration tests: waiting, kcat, the dev broker, consuming."""
import os
import select
import shutil
import signal
import subprocess
import threading
import time
import uuid

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient

from leakwatch import WATCH

# Every wait in the suite has a deadline; none is a fixed sleep.
DEFAULT_TIMEOUT = 30.0


def unique(name):
    """A topic or group name no earlier run of the suite has used."""
    return f"veil-it-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def private_key(directory, name="dev-hmac.key", source=None):
    """A copy of config/dev-hmac.key (or `source`) in `directory`, owner-only:
    veil refuses a key file its group or others may read, and git keeps no
    file mode, so a checkout's key is 0644. Returns the copy's path."""
    path = os.path.join(str(directory), name)
    shutil.copyfile(source or os.path.join(REPO, "config", "dev-hmac.key"), path)
    os.chmod(path, 0o600)
    with open(path, "rb") as f:
        WATCH.key(f"key file {name}", f.read().strip())
    return path


def wait_for(predicate, timeout=DEFAULT_TIMEOUT, what="condition", interval=0.1):
    """Polls predicate() until it returns a truthy value, which is returned;
    fails the test with `what` once the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def read_line(stream, timeout, what):
    """Reads one line from a pipe within a deadline (readline alone blocks
    forever on a process that hangs)."""
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"stream closed before {what} (got {buf!r})")
        buf += chunk
    return buf.split(b"\n", 1)[0].decode()


# Bootstraps of the `veil broker`s this session started. librdkafka's mock
# cluster answers TxnOffsetCommit without storing the offsets (and EndTxn
# without acting on them), so a partition that moves to another group member
# is read again from its start: a worker on the mock must stay one member.
MOCK_BOOTSTRAPS = set()


class VeilBroker:
    """`veil broker` as a subprocess: start() reads the bootstrap from the
    first line of stdout; stop() sends a signal and returns the exit code."""

    def __init__(self, veil, *args):
        self.argv = [veil, "broker", *args]
        self.proc = None
        self.bootstrap = None

    def start(self, timeout=DEFAULT_TIMEOUT):
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.bootstrap = read_line(self.proc.stdout, timeout, "the bootstrap line")
        MOCK_BOOTSTRAPS.add(self.bootstrap)
        return self.bootstrap

    def stop(self, sig=signal.SIGTERM, timeout=DEFAULT_TIMEOUT):
        """Signals the broker and waits; returns (exit code, stderr text)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"veil broker ignored {sig.name} for {timeout:.0f} s")
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, err

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def kcat(args, input_text=None, timeout=DEFAULT_TIMEOUT):
    """Runs kcat to completion; fails the test on a non-zero exit."""
    res = subprocess.run(["kcat", *args], input=input_text, capture_output=True,
                         text=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args)} exited {res.returncode}: "
                             f"{res.stderr.strip()[-2000:]}")
    return res.stdout


def kcat_produce(bootstrap, topic, pairs, timeout=DEFAULT_TIMEOUT):
    """Produces (key, value) pairs with kcat -P, key and value split by ':'."""
    text = "".join(f"{k}:{v}\n" for k, v in pairs)
    kcat(["-P", "-b", bootstrap, "-t", topic, "-K:"], input_text=text, timeout=timeout)


def kcat_consume(bootstrap, topic, extra=(), timeout=DEFAULT_TIMEOUT):
    """Consumes a topic from the beginning to its end with kcat -C -e;
    returns [(partition, key, value)]."""
    out = kcat(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                "-f", "%p\t%k\t%s\n", *extra], timeout=timeout)
    rows = []
    for line in out.splitlines():
        p, k, v = line.split("\t", 2)
        rows.append((int(p), k, v))
    return rows


class LineCollector:
    """Reads a subprocess's stdout and stderr into lists on threads, so a
    test can wait on what a long-running process has printed."""

    def __init__(self, proc):
        self.proc = proc
        self.out = []
        self.err = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._pump, args=(proc.stdout, self.out),
                                         daemon=True),
                        threading.Thread(target=self._pump, args=(proc.stderr, self.err),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    def _pump(self, stream, lines):
        where = f"output of {' '.join(os.path.basename(str(a)) for a in self.proc.args[:2])}"
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            WATCH.output(where, line)
            with self.lock:
                lines.append(line)

    def snapshot(self):
        with self.lock:
            return list(self.out), list(self.err)

    def close(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self.threads:
            t.join(timeout)


def partitions_of(bootstrap, topic, timeout=10):
    """The partition ids of a topic, from metadata."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=timeout)
    t = md.topics[topic]
    if t.error is not None:
        raise AssertionError(f"metadata for {topic}: {t.error}")
    return sorted(t.partitions)


def consume_all(bootstrap, topic, isolation="read_committed", timeout=DEFAULT_TIMEOUT):
    """Reads every partition of a topic from the beginning up to its end (the
    last stable offset under read_committed) with confluent_kafka; returns
    the messages in (partition, offset) order."""
    parts = partitions_of(bootstrap, topic)
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"),
                     "isolation.level": isolation, "enable.partition.eof": True,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in parts])
        done = set()
        msgs = []
        deadline = time.monotonic() + timeout
        while len(done) < len(parts):
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out reading {topic} to its end "
                                     f"({len(done)}/{len(parts)} partitions done)")
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == ck.KafkaError._PARTITION_EOF:
                    done.add(m.partition())
                    continue
                raise AssertionError(f"consuming {topic}: {m.error()}")
            msgs.append(m)
        msgs.sort(key=lambda m: (m.partition(), m.offset()))
        WATCH.dead_letters_and_audit(topic, msgs)
        return msgs
    finally:
        c.close()
