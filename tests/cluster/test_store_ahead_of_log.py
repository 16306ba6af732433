"""A node whose store is ahead of its Raft log (DIR/state applied entries that
DIR/raft does not hold) starts when it has other voters and refuses when it is
the only one.

libraft's leader counts itself towards a commit only once its own log write is
on disk, but it commits, and Starling applies, as soon as a majority of the
other voters persisted the entry. Killed then, its log ends before what its
store applied; those entries are on a majority and come back from the next
leader (fsm.c skips what the store already has). The three-node test makes
that moment last: every data dir on a tmpfs, so libraft writes from libuv's
thread pool, and the leader's pool threads stopped under ptrace (its event
loop runs on) while a session, a subscription and a retained message go
through it. A single voter cannot get there (nothing commits without its own
write), so its store is put ahead by hand: an older raft/ copied back under a
newer state/; nothing else has the entries, and it must refuse."""

import os
import re
import shutil
import time

import pytest

from clients import uid
from stall import ThreadsStopped, tmpfs_mount, tmpfs_unmount

from cluster_mqtt import PUBACK_OK, persistent, receive_topics, retain
from harness import START_TIMEOUT, settled, wait_for
from test_data_dir import refused_start, restart

AHEAD_WARNING = re.compile(r"cluster: the store is at entry (\d+) but the raft log ends at (\d+): the last entries "
                           r"did not reach this node's disk before it stopped")
AHEAD_REFUSAL = re.compile(r"the store is at entry (\d+) but the raft log ends at (\d+) \(entries lost\?\): "
                           r"refusing to start")


@pytest.fixture
def tmpfs_data(tmp_path):
    """The data dirs of nodes 1-3 (tmp_path/nodeN/data, where the cluster
    fixtures put them) on tmpfs mounts. Requested before start_cluster, so it
    unmounts after the nodes' teardown."""
    mounted = []
    try:
        for i in (1, 2, 3):
            path = tmp_path / ("node%d" % i) / "data"
            tmpfs_mount(path)
            mounted.append(path)
        yield
    finally:
        for path in mounted:
            tmpfs_unmount(path)


def raft_holds(node, needle):
    """Whether any file under node's DIR/raft contains the bytes needle."""
    raft = node.data_dir / "raft"
    return any(needle in p.read_bytes() for p in raft.iterdir() if p.is_file())


def test_leader_killed_before_its_own_log_write_restarts_and_rejoins(tmpfs_data, start_cluster, clients):
    cluster = start_cluster()
    leader, term = cluster.wait_leader()
    others = cluster.followers(leader)
    base = uid("ahead")
    # A write with nothing stalled: libuv's pool threads exist from here on.
    assert retain(leader, base + "/before", b"before") in PUBACK_OK
    cluster.wait_caught_up()

    payload = ("stalled %s" % os.urandom(8).hex()).encode()  # found again in the log files
    stopped = ThreadsStopped(leader.proc.pid)
    try:
        assert stopped.tids and set(stopped.states()) == {"t"}, stopped.states()
        threads = len(stopped.tids)
        # Through the leader whose own log takes nothing: each commits on the
        # two followers' writes alone.
        sub, sp = persistent(clients, leader)
        assert not sp
        assert sub.subscribe(base + "/s/#", qos=1) == [1]
        sub.disconnect()
        assert retain(leader, base + "/r", payload) in PUBACK_OK

        def written(d):
            problems = [settled(d)]
            if d.payload(base + "/r") != payload:
                problems.append("retained %s is %r" % (base + "/r", d.payload(base + "/r")))
            if (sub.client_id.encode(), (base + "/s/#").encode()) not in d.subs:
                problems.append("no subscription %s of %s" % (base + "/s/#", sub.client_id))
            return "; ".join(p for p in problems if p)
        # The leader applied them too: it serves the retained message, and
        # its store (on the tmpfs) has them.
        c = clients.connected(leader)
        assert c.subscribe(base + "/r", qos=1) == [1]
        receive_topics(c, {base + "/r": payload}, timeout=10)
        c.disconnect()
        cluster.wait_dumps(written)
        applied = cluster.wait_caught_up()[0].applied_index
        # The stall is real: the entries are in both followers' logs, not in
        # the leader's.
        for n in others:
            assert raft_holds(n, payload), "node %d's raft log lacks the retained message" % n.id
        assert not raft_holds(leader, payload), "the leader's log write was not stalled"
        assert stopped.tids and set(stopped.states()) == {"t"}, stopped.states()
        stopped.kill()
        leader.kill()
    finally:
        stopped.release()

    cluster.wait_leader(nodes=others, min_term=term, not_node=leader.id)
    t0 = time.monotonic()
    leader.start()

    def warned_or_exited():
        if AHEAD_WARNING.search(leader.run_log()):
            return "warned"
        if not leader.running():
            return "exited"
        return None
    outcome = wait_for(warned_or_exited, START_TIMEOUT, lambda: "node %d neither warned nor exited:\n%s" % (
        leader.id, leader.run_log()[-3000:]))
    if outcome == "exited":
        leader.killed = True  # the test's own finding, not a teardown problem
        pytest.fail("node %d, killed before its own log write, refused to start although the entries it applied "
                    "are on the other two voters (exit %s):\n%s" % (leader.id, leader.proc.returncode,
                                                                    leader.run_log()[-3000:]), pytrace=False)
    m = AHEAD_WARNING.search(leader.run_log())
    store_at, log_ends = int(m.group(1)), int(m.group(2))
    assert store_at >= applied > log_ends, m.group(0)
    assert "refusing to start" not in leader.run_log()

    leader.wait_listening()
    cluster.wait_leader()
    restarted_s = time.monotonic() - t0
    dumps = cluster.wait_caught_up(cluster.nodes)
    assert not written(dumps[0]), written(dumps[0])
    # The entries came back into its log from the new leader.
    wait_for(lambda: raft_holds(leader, payload), 10, "node %d's log never got the stalled entries back" % leader.id)

    # A new write after the restart, through it, reaches every node.
    assert retain(leader, base + "/after", b"after") in PUBACK_OK
    dumps = cluster.wait_caught_up(cluster.nodes)
    assert dumps[0].payload(base + "/after") == b"after"
    assert len({d.applied_index for d in dumps}) == 1 and dumps[0].applied_index > store_at

    # MQTT on every node: both retained messages; the session made through the
    # stalled leader resumes on it with its subscription.
    for n in cluster:
        c = clients.connected(n)
        assert c.subscribe(base + "/#", qos=1) == [1]
        receive_topics(c, {base + "/r": payload, base + "/after": b"after", base + "/before": b"before"},
                       timeout=10)
        c.disconnect()
    again, sp = persistent(clients, leader, client_id=sub.client_id)
    assert sp, "the session made through the stalled leader is gone after its restart"
    pub = clients.connected(others[0])
    pub.publish(base + "/s/x", b"to the session", qos=1)
    assert again.expect_message(timeout=10, topic=base + "/s/x").payload == b"to the session"
    print("%d threads stopped; restart to a caught-up three-node cluster: %.1f s (store at %d, log ended at %d)" % (
        threads, restarted_s, store_at, log_ends))


def test_single_voter_whose_store_is_ahead_of_its_log_refuses(start_node):
    node = start_node()
    base = uid("ahead1")
    assert retain(node, base + "/1", b"one") in PUBACK_OK
    assert node.terminate() == 0
    raft = node.data_dir / "raft"
    saved = node.workdir / "raft-first-run"
    shutil.copytree(raft, saved)

    restart(node)
    assert retain(node, base + "/2", b"two") in PUBACK_OK
    assert node.terminate() == 0
    ahead = node.dump()
    assert ahead.payload(base + "/2") == b"two"

    shutil.rmtree(raft)
    shutil.copytree(saved, raft)
    err = refused_start(node)
    m = AHEAD_REFUSAL.search(err)
    assert m, "no refusal line in:\n" + err[-3000:]
    assert int(m.group(1)) == ahead.applied_index > int(m.group(2)), m.group(0)
    assert not AHEAD_WARNING.search(err), err[-3000:]
    # The refusal changed nothing.
    assert node.dump().state == ahead.state
