"""The backends' fault plumbing without a cluster (fast, no root, no docker):
what the compose backend asks docker for a partition, what a node under
the clock nemesis is started with, the offset file libfaketime reads."""

import pathlib

import pytest

import backend
import compose


class Recorder(compose.ComposeBackend):
    """A compose backend whose docker calls are recorded, not run."""

    def __init__(self, tmp):
        super().__init__(tmp, "t")
        self.calls = []

    def docker(self, *args, check=True, timeout=None):
        self.calls.append(args)


def test_compose_cuts_whole_nodes_off_the_cluster_network(tmp_path):
    b = Recorder(tmp_path)
    b.cut([(2, 1), (2, 3)])
    assert b.calls == [("network", "disconnect", b.prefix + "-cluster", b.prefix + "-node2")]
    b.heal()
    assert b.calls[-1] == ("network", "connect", "--alias", "cluster-node2", b.prefix + "-cluster",
                           b.prefix + "-node2")
    b.heal()                                  # nothing left to heal: no call
    assert len(b.calls) == 2


def test_compose_refuses_to_cut_a_single_link(tmp_path):
    b = Recorder(tmp_path)
    with pytest.raises(NotImplementedError):
        b.cut([(1, 3)])                       # partition-bridge: 2 would still see both
    assert b.calls == []


def test_compose_copies_have_their_own_names_and_ports(tmp_path):
    a, b = Recorder(tmp_path / "a"), Recorder(tmp_path / "b")
    assert a.prefix != b.prefix
    assert len(set(a.mqtt.values()) | set(a.admin.values())) == 6
    assert a.env["STARLING_NODE3_MQTT_PORT"] == str(a.mqtt[3])
    assert a.env["COMPOSE_PROJECT_NAME"] == a.prefix
    assert a.endpoint(2) == ("127.0.0.1", a.mqtt[2])


@pytest.mark.skipif(backend.faketime_lib() is None, reason="libfaketime (apt-get install faketime)")
def test_clock_offset_file_and_preload(tmp_path):
    b = backend.ProcessBackend(tmp_path, "t", clock=True)
    n = backend.FaultNode(tmp_path / "node1", 1, "127.0.0.1", {}, [(1, "127.0.0.1", 1)])
    n.faketime = str(tmp_path / "node1" / "faketime")
    b.nodes[1] = n
    b.set_clock(1, -7200)
    assert pathlib.Path(n.faketime).read_text() == "-7200\n"
    b.set_clock(1, 0)
    assert pathlib.Path(n.faketime).read_text() == "+0\n"
    argv = n.argv()
    assert argv[0] == "env" and argv[argv.index(backend.harness.STARLINGD) + 1] == "-c"
    env = dict(a.split("=", 1) for a in argv[1:argv.index(backend.harness.STARLINGD)])
    assert env["LD_PRELOAD"] == backend.faketime_lib()
    assert env["FAKETIME_TIMESTAMP_FILE"] == n.faketime
    assert env["FAKETIME_DONT_FAKE_MONOTONIC"] == "1" and env["FAKETIME_NO_CACHE"] == "1"
    n.faketime = None
    assert n.argv()[0] == backend.harness.STARLINGD


def test_fill_disk_only_on_the_suites_tmpfs(tmp_path):
    """Never fills the real file system: only a data dir the backend mounted."""
    b = backend.ProcessBackend(tmp_path, "t")
    b.nodes[1] = backend.FaultNode(tmp_path / "node1", 1, "127.0.0.1", {}, [(1, "127.0.0.1", 1)])
    with pytest.raises(RuntimeError):
        b.fill_disk(1)
    assert not (b.nodes[1].data_dir / "filler").exists()
