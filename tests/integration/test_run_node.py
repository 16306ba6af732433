"""deploy/run-node.sh when its MQTT port is taken (Debian's mosquitto service
on 1883, say): it says which port and who holds it and how to get around it,
and exits with 1 before setting up or building anything, without touching the
other program. Run on a copy of the script whose deploy/setup.sh only leaves
a mark, so that nothing is installed or built here."""

import os
import pathlib
import re
import shutil
import socket
import subprocess

import pytest

from conftest import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")


@pytest.fixture
def run_node(tmp_path):
    """run_node(*args) -> (completed process, whether setup.sh was reached)."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    shutil.copy(REPO / "deploy" / "run-node.sh", deploy / "run-node.sh")
    mark = tmp_path / "setup-reached"
    (deploy / "setup.sh").write_text("#!/bin/sh\ntouch '%s'\nexit 1\n" % mark)
    os.chmod(deploy / "setup.sh", 0o755)

    def run(*args):
        if mark.exists():
            mark.unlink()
        p = subprocess.run(["bash", str(deploy / "run-node.sh"), *args], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        return p, mark.exists()
    return run


def listening(family, host):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(1)
    return s


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_port_in_use_is_said_before_anything_runs(run_node, family, host):
    with listening(family, host) as s:
        port = s.getsockname()[1]
        for args in (["-p", str(port)], ["-p%d" % port], ["--port", str(port), "-v"], ["--port=%d" % port]):
            p, reached = run_node(*args)
            assert p.returncode == 1, (args, p.stderr)
            assert not reached, "setup.sh ran although port %d is taken" % port
            assert p.stderr.startswith("run-node.sh: port %d is already in use" % port), p.stderr
            assert re.search(r" by python3[.\d]* \(pid %d\)" % os.getpid(), p.stderr), p.stderr
            assert "./deploy/run-node.sh -p 1884" in p.stderr and "systemctl stop mosquitto" in p.stderr
        # the other program still listens
        with socket.create_connection((host, port), timeout=5):
            pass


def test_free_port_goes_on_to_setup(run_node):
    p, reached = run_node("-p", str(free_port()))
    assert reached and "already in use" not in p.stderr, p.stderr


def test_configured_addresses_are_left_to_starlingd(run_node):
    """With -c or --bind the listener is the configuration's: starlingd
    itself reports a port in use (its message is tested elsewhere)."""
    with listening(socket.AF_INET, "127.0.0.1") as s:
        port = s.getsockname()[1]
        for args in (["-c", "node.conf", "-p", str(port)], ["--bind", "127.0.0.2", "-p", str(port)],
                     ["--set", "listener=%d 127.0.0.2" % port]):
            p, reached = run_node(*args)
            assert reached and "already in use" not in p.stderr, (args, p.stderr)
