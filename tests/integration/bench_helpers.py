"""Helpers for test_bench.py: a private Mosquitto on a free port, and starling-bench runs.

starling-bench is found at $STARLING_BENCH, else <repo>/build/tools/starling-bench.
These tests check the load generator, not the broker, so they run against
Mosquitto (the reference broker) whatever STARLING_TEST_BROKER says.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time

import pytest

import authmode

REPO = pathlib.Path(__file__).resolve().parents[2]
BENCH = os.environ.get("STARLING_BENCH", str(REPO / "build" / "tools" / "starling-bench"))
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
SANITIZER_MARKERS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def bench_binary():
    """Imported by the starling-bench test modules: fails them early when
    starling-bench is not built."""
    if not os.access(BENCH, os.X_OK):
        pytest.fail(f"starling-bench not built at {BENCH} (meson compile -C build "
                    "starling-bench, or set STARLING_BENCH)")


def stop_process(proc, timeout=10):
    """SIGTERM, then SIGKILL after timeout seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def auth_lines(directory, lines):
    """The suites' authentication mode (authmode.py): config lines for its
    password_file, acl_file and allow_anonymous false, unless the lines
    configure authentication themselves, or [] when off."""
    if not authmode.applies({l.split()[0]: 1 for l in lines if l.split()}):
        return []
    return ["%s %s" % kv for kv in authmode.broker_settings(directory).items()]


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Mosquitto:
    def __init__(self, tmp_path, extra=()):
        self.port = free_port()
        self.conf = tmp_path / f"mosquitto-{self.port}.conf"
        self.conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr",
            "log_type error", *extra, *auth_lines(tmp_path / f"auth-{self.port}", extra)]) + "\n")
        self.log = open(tmp_path / f"mosquitto-{self.port}.log", "wb")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not wait_port(self.port, self.proc):
            self.stop()
            raise RuntimeError("mosquitto did not start: " + self.conf.read_text())

    def stop(self):
        stop_process(self.proc)
        self.log.close()


STARLINGD = os.environ.get("STARLINGD", str(REPO / "build" / "broker" / "starlingd"))


class Starlingd:
    """A one-node starlingd from config lines (listeners included) on loopback.
    unsupported is set (and the process gone) when it refused the config or a
    transport at start: its one-line reason."""

    def __init__(self, tmp_path, lines):
        self.dir = tmp_path / f"starlingd-{free_port()}"
        self.dir.mkdir()
        conf = self.dir / "starling.conf"
        lines = list(lines) + auth_lines(self.dir / "auth", lines)
        conf.write_text("\n".join(list(lines) + [f"cluster_bind 127.0.0.1:{free_port()}", "admin_listen off"]) + "\n")
        self.log = open(self.dir / "stderr.log", "wb")
        self.proc = subprocess.Popen([STARLINGD, "-c", str(conf), "--data-dir", str(self.dir / "data")],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.unsupported = None

    def wait(self, port):
        if wait_port(port, self.proc, timeout=20):
            return True
        self.stop()
        text = (self.dir / "stderr.log").read_text(errors="replace")
        self.unsupported = ([l for l in text.splitlines() if l.startswith("starlingd:")] or [text[-300:]])[0]
        return False

    def stop(self):
        stop_process(self.proc)
        self.log.close()


class Bench:
    """A running starling-bench; stderr is read as it comes, so a test can wait
    for the connection phase to end instead of sleeping."""

    def __init__(self, *args, preexec_fn=None):
        args = [str(a) for a in args]
        if args and not args[0].startswith("-") and not {"-u", "--username", "-P", "--password"} & set(args):
            args[1:1] = authmode.cli_args()  # the suites' authentication mode, after the subcommand
        self.cmd = [BENCH] + args
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, preexec_fn=preexec_fn)
        self.stderr_lines = []
        self.stdout_lines = []
        self.ready = threading.Event()
        # Progress goes to stdout, or to stderr with --json: watch both.
        self._t_out = threading.Thread(target=self._watch,
                                       args=(self.proc.stdout, self.stdout_lines), daemon=True)
        self._t_err = threading.Thread(target=self._watch,
                                       args=(self.proc.stderr, self.stderr_lines), daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _watch(self, stream, lines):
        for line in stream:
            lines.append(line)
            if "connection phase done" in line:
                self.ready.set()
        self.ready.set()

    def wait_ready(self, timeout=30):
        assert self.ready.wait(timeout), "no end of connection phase: " + self.stderr
        assert self.proc.poll() is None, "exited early: " + self.stderr

    def finish(self, timeout=60):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.cmd} did not stop within {timeout} s: {self.stderr}")
        self._t_out.join()
        self._t_err.join()
        for marker in SANITIZER_MARKERS:
            assert marker not in self.stderr, f"{self.cmd}: {self.stderr}"
        return self

    @property
    def returncode(self):
        return self.proc.returncode

    @property
    def stdout(self):
        return "".join(self.stdout_lines)

    @property
    def stderr(self):
        return "".join(self.stderr_lines)

    def json(self):
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"no JSON from {self.cmd}: {self.stdout!r} {self.stderr}")


def run(*args, timeout=60, preexec_fn=None):
    return Bench(*args, preexec_fn=preexec_fn).finish(timeout)


class FakeBroker:
    """A loopback listener that answers each connection with a script: a list of
    byte strings to send after reading the client's first packet (None: say
    nothing). For the failure modes a real broker does not produce on demand."""

    def __init__(self, replies):
        self.replies = replies
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.received = []
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _handle(self, c):
        try:
            for reply in self.replies:
                data = c.recv(65536)
                if not data:
                    return
                self.received.append(data)
                if reply:
                    c.sendall(reply)
            while c.recv(65536):
                pass
        except OSError:
            pass

    def close(self):
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()
