"""Development certificates for the TLS tests: deploy/make-certs.sh run once
into a directory (ca, server with the SANs localhost / 127.0.0.1 / ::1,
client, node1..3; ECDSA P-256)."""

import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MAKE_CERTS = REPO / "deploy" / "make-certs.sh"


def make(directory):
    """Makes the certificates in directory (a pathlib.Path) and returns it."""
    directory = pathlib.Path(directory)
    if not (directory / "server.crt").exists():
        subprocess.run(["bash", str(MAKE_CERTS), str(directory)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)
    return directory


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """The certificates, made once per session (import this fixture)."""
    return make(tmp_path_factory.mktemp("certs"))
