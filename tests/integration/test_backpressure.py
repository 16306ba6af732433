"""QoS 0 under a burst: a subscriber that keeps reading gets every message
(the broker stops reading the publishers while the subscriber's write backlog
is over max_write_backlog), and a subscriber that stops reading holds the
publishers for at most slow_consumer_timeout_ms, after which it is a slow
consumer whose QoS 0 messages are dropped and counted.

The burst is 4 mosquitto_pub -l x 50,000 lines (200,000 each with
STARLING_LONG=1), as fast as they can, to one mosquitto_sub on loopback."""

import os
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

import rawmqtt
from clients import uid

PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
LONG = os.environ.get("STARLING_LONG", "") not in ("", "0")
LINES = 200000 if LONG else 50000
PUBLISHERS = 4


class CountingSub:
    """mosquitto_sub on prefix/# counting the lines it prints (readiness
    probes, payload 'ready', excluded)."""

    def __init__(self, broker, prefix):
        self.broker = broker
        self.prefix = prefix
        self.proc = subprocess.Popen([SUB] + broker.cli_args() + ["-q", "0",
                                      "-t", prefix + "/#"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.count = 0
        self.ready = 0
        self.changed = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            if line == b"ready\n":
                self.ready += 1
            else:
                self.count += 1
            self.changed.set()
        self.changed.set()

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            subprocess.run([PUB] + self.broker.cli_args() + ["-q", "0",
                            "-t", self.prefix + "/ready", "-m", "ready"], check=True, timeout=10)
            self.changed.wait(0.3)
            if self.ready:
                return
        pytest.fail("mosquitto_sub on %s/# never got its readiness probe" % self.prefix)

    def wait_count(self, want, idle=10.0):
        """Waits until want lines arrived or nothing arrived for idle seconds."""
        last, since = self.count, time.monotonic()
        while self.count < want:
            self.changed.clear()
            self.changed.wait(0.5)
            if self.count != last:
                last, since = self.count, time.monotonic()
            elif time.monotonic() - since > idle or self.proc.poll() is not None:
                break
        return self.count

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self.thread.join(timeout=10)


def lines_file(tmp_path, n, width):
    path = tmp_path / ("lines-%d-%d" % (n, width))
    pad = "x" * width
    with open(path, "w") as f:
        for i in range(n):
            f.write("%d %s\n" % (i, pad))
    return path


def publish_lines(broker, topics, path):
    """One mosquitto_pub -l per topic, all at once, as fast as they can;
    returns their exit codes once they are done."""
    procs = []
    for t in topics:
        with open(path, "rb") as f:
            procs.append(subprocess.Popen([PUB] + broker.cli_args() + ["-q", "0",
                                           "-t", t, "-l"], stdin=f, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE))
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=120))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append("still running after 120 s")
    return codes


def metrics(broker):
    with urllib.request.urlopen(broker.admin_url + "/metrics", timeout=10) as r:
        body = r.read().decode()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = int(value)
    return values


def test_qos0_burst_fan_in_all_delivered(broker, tmp_path):
    """4 publishers x LINES lines -> 1 subscriber that keeps reading: every
    message arrives (it lost 85 % at the 256 KB write backlog before)."""
    prefix = uid("burst")
    sub = CountingSub(broker, prefix)
    try:
        sub.wait_ready()
        path = lines_file(tmp_path, LINES, 80)
        codes = publish_lines(broker, ["%s/%d" % (prefix, i) for i in range(PUBLISHERS)], path)
        assert codes == [0] * PUBLISHERS, codes
        want = LINES * PUBLISHERS
        got = sub.wait_count(want)
        assert got == want, "delivered %d of %d (%.1f %%)" % (got, want, 100.0 * got / want)
    finally:
        sub.stop()


def test_stalled_subscriber_holds_others_for_bounded_time(start_broker, tmp_path, mosquitto_mode):
    """A raw subscriber that never reads: the publisher is held for at most
    slow_consumer_timeout_ms, then the stalled one is a slow consumer (its
    QoS 0 messages dropped and counted) and the reading subscriber gets
    every message."""
    if mosquitto_mode:
        pytest.skip("slow consumer handling and its metrics are Starling's")
    b = start_broker(slow_consumer_timeout_ms=2000)
    prefix = uid("stall")
    stalled = rawmqtt.RawClient(b.port)
    try:
        stalled.sock.setsockopt(rawmqtt.socket.SOL_SOCKET, rawmqtt.socket.SO_RCVBUF, 4096)
        stalled.send(rawmqtt.connect(client_id=uid("stalled"), keepalive=0))
        stalled.expect(rawmqtt.CONNACK)
        stalled.send(rawmqtt.subscribe(1, [(prefix + "/#", 0)]))
        stalled.expect(rawmqtt.SUBACK)
        sub = CountingSub(b, prefix)
        try:
            sub.wait_ready()
            # ~12 MB: more than the socket buffers of the stalled connection
            n = 60000
            path = lines_file(tmp_path, n, 200)
            codes = publish_lines(b, [prefix + "/data"], path)
            # held for ever, the publisher would never finish
            assert codes == [0], codes
            got = sub.wait_count(n)
            assert got == n, "the reading subscriber got %d of %d" % (got, n)
        finally:
            sub.stop()
        m = metrics(b)
        assert m["starling_slow_consumers_total"] >= 1, m
        assert m["starling_publishers_held_total"] >= 1, m
        assert m["starling_messages_dropped_total"] > 0, m
        assert "slow consumer" in b.log()
    finally:
        stalled.close()


def test_held_publisher_keeps_its_connection(start_broker, mosquitto_mode):
    """A publisher held for a stalled subscriber (longer than 1.5 times its
    keep alive) is not closed for keep alive: its silence was the broker's
    doing. It is read again after slow_consumer_timeout_ms and still answers
    PINGREQ."""
    if mosquitto_mode:
        pytest.skip("slow consumer handling is Starling's")
    b = start_broker(slow_consumer_timeout_ms=3000)
    topic = uid("held")
    stalled = rawmqtt.RawClient(b.port)
    publisher = rawmqtt.RawClient(b.port, timeout=30)
    try:
        stalled.sock.setsockopt(rawmqtt.socket.SOL_SOCKET, rawmqtt.socket.SO_RCVBUF, 4096)
        stalled.send(rawmqtt.connect(client_id=uid("stalled"), keepalive=0))
        stalled.expect(rawmqtt.CONNACK)
        stalled.send(rawmqtt.subscribe(1, [(topic, 0)]))
        stalled.expect(rawmqtt.SUBACK)
        publisher.send(rawmqtt.connect(client_id=uid("pub"), keepalive=1))
        publisher.expect(rawmqtt.CONNACK)
        # ~16 MB: sendall blocks while the broker does not read it
        burst = rawmqtt.publish(topic, b"x" * 1000) * 16000
        t0 = time.monotonic()
        publisher.sock.settimeout(30)  # expect() left its own, shorter one
        publisher.send(burst)
        publisher.send(rawmqtt.pingreq())
        deadline = t0 + 30
        while True:  # PINGRESP, after the broker's answers to nothing else
            p = publisher.recv(timeout=max(0.1, deadline - time.monotonic()))
            if p.type == rawmqtt.PINGRESP:
                break
        m = metrics(b)
        assert m["starling_publishers_held_total"] >= 1, m
        assert m["starling_slow_consumers_total"] >= 1, m
        assert "keep alive timeout" not in b.log()
    finally:
        publisher.close()
        stalled.close()
