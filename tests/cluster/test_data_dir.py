"""A data dir is checked before a node serves from it: one written by a node of
another cluster_name or another node_id is refused fast ("belongs to"), and so
is one whose Raft files are corrupted (libraft's layout under DIR/raft:
metadata1, metadata2, open-N, START-END closed segments, snapshot-*). A
refused start leaves the data dir as it was; a corrupted one is never served."""

import re
import subprocess
import time

import pytest

import rawmqtt as r

from cluster_mqtt import PUBACK_OK, retain
from harness import FAIL_FAST_TIMEOUT, STARLINGD, Cluster, free_port

CLOSED_SEGMENT = re.compile(r"\d+-\d+")


def durable(dump):
    """The subscriptions and retained messages: what these tests wrote. (The
    sessions of their short-lived publishers may end around a restart.)"""
    return [l for l in dump.state if not l.startswith("session ")]


def restart(node):
    node.start()
    node.wait_listening()
    Cluster([node]).wait_leader()


def refused_start(node):
    """Starts node expecting it to refuse: asserts it never accepts an MQTT
    CONNECT, exits with a code != 0 within FAIL_FAST_TIMEOUT and says why on
    stderr; returns that stderr."""
    node.start()
    deadline = time.monotonic() + FAIL_FAST_TIMEOUT
    while node.running() and time.monotonic() < deadline:
        try:
            with r.RawClient(node.port, version=4, host=node.host, timeout=1) as c:
                c.send(r.connect("corrupt-probe", version=4))
                ack = c.expect(r.CONNACK, timeout=1)
                assert ack.reason != 0, "%r served (CONNACK 0) from a data dir it should refuse\n%s" % (
                    node, node.run_log()[-3000:])
        except (OSError, r.Closed, r.Timeout, r.ProtocolMismatch):
            pass
        time.sleep(0.05)
    code = node.wait_exit(max(0.1, deadline - time.monotonic()))
    err = node.run_log()
    assert code != 0, "%r exited with code 0 on a data dir it should refuse\n%s" % (node, err[-3000:])
    assert err.strip(), "%r refused the data dir without a message" % node
    return err


@pytest.mark.parametrize("key,value", [("cluster_name", "beta"), ("node_id", "2")])
def test_data_dir_of_another_node_is_refused(start_node, key, value):
    node = start_node(cluster_name="alpha")
    assert retain(node, "t7/keep", b"kept") in PUBACK_OK
    before = node.dump()
    assert node.terminate() == 0
    original = dict(node.settings)
    node.settings[key] = value
    err = refused_start(node)
    assert "belongs to" in err, "no 'belongs to' in:\n" + err[-3000:]

    # The refusal changed nothing: the right node starts on it as before.
    node.settings = original
    restart(node)
    after = node.dump()
    assert after.payload("t7/keep") == b"kept"
    assert durable(after) == durable(before), before.diff(after)


def flip(path, offset, length):
    data = bytearray(path.read_bytes())
    assert len(data) >= offset + length, "%s has only %d bytes" % (path, len(data))
    for i in range(offset, offset + length):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target", ["closed segment", "metadata1", "metadata2"])
def test_corrupted_raft_files_are_refused(start_cluster, target):
    # On a node of the three-node cluster: its elections write both metadata
    # files (a one-voter node writes only metadata1).
    cluster = start_cluster()
    n1, n2, n3 = cluster.nodes
    for i in range(20):
        assert retain(cluster.nodes[i % 3], "t7c/%d" % i, b"x" * 100) in PUBACK_OK
    before = cluster.wait_caught_up()
    for n in cluster:
        assert n.terminate() == 0
    # A second run: libraft turns the first run's open segments into closed ones.
    cluster.start()
    cluster.wait_leader()
    for n in cluster:
        assert n.terminate() == 0

    raft = n1.data_dir / "raft"
    files = sorted(p.name for p in raft.iterdir())
    if target == "closed segment":
        closed = [p for p in raft.iterdir() if CLOSED_SEGMENT.fullmatch(p.name)]
        assert closed, "no closed segment under %s: %s" % (raft, files)
        victim = max(closed, key=lambda p: p.stat().st_size)
        size = victim.stat().st_size
        flip(victim, size // 2 - 8, 16)
    else:
        victim = raft / target
        assert victim.exists(), "no %s under %s: %s" % (target, raft, files)
        # libraft's metadata has no checksum; every byte flipped (the format
        # word included) is a corruption it must notice.
        flip(victim, 0, victim.stat().st_size)

    # The two intact nodes form the cluster again; node 1 must not join it.
    n2.start()
    n3.start()
    refused_start(n1)
    cluster.wait_leader(nodes=[n2, n3])
    after = cluster.wait_caught_up([n2, n3])
    assert durable(after[0]) == durable(before[0]), before[0].diff(after[0])


def test_data_dir_in_use_by_a_running_node_is_refused(start_node):
    # Two processes appending to one Raft log would corrupt it: the second
    # start on a data dir that a running node holds fails at once, and the
    # running node goes on serving from it.
    node = start_node()
    assert retain(node, "t7u/keep", b"kept") in PUBACK_OK
    other = subprocess.run([STARLINGD, "-p", str(free_port(node.host)), "--bind", node.host,
                            "--data-dir", str(node.data_dir)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=FAIL_FAST_TIMEOUT)
    assert other.returncode != 0, "a second starlingd started on a data dir in use"
    assert "in use" in other.stderr, other.stderr
    assert retain(node, "t7u/after", b"still") in PUBACK_OK
    assert node.dump().payload("t7u/keep") == b"kept"
