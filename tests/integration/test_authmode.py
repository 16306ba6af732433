"""The suites' authentication mode itself (authmode.py, ./tests/run.sh --auth):
with STARLING_TEST_AUTH=1 a default broker refuses anonymous clients and
wrong passwords while every helper's client gets in; without it the broker is
open. Either way the helpers' clients (paho, raw, mosquitto_pub/sub) work."""

import subprocess

import rawmqtt
from clients import uid

import authmode


def test_default_broker_and_clients_follow_the_mode(broker, clients, raw):
    if authmode.AUTH:
        assert broker.auth == (authmode.USER, authmode.PASSWORD)
        if not broker.is_mosquitto:
            assert "password_file=" in " ".join(broker.argv) and "allow_anonymous=false" in " ".join(broker.argv)
    else:
        assert broker.auth is None
    # a CONNECT without user name or password (flags given: nothing is added)
    anon = raw(broker)
    anon.send(rawmqtt.connect(uid("anon"), flags=0x02))
    assert anon.expect(rawmqtt.CONNACK).reason == (0x05 if authmode.AUTH else 0)
    wrong = raw(broker, version=5)
    wrong.send(rawmqtt.connect(uid("wrong"), version=5, username=authmode.USER, password=b"not-it"))
    # (Mosquitto 2.0.11 answers a wrong password with 0x87, not authorized)
    refused = (0x86, 0x87) if broker.is_mosquitto else (0x86,)
    assert wrong.expect(rawmqtt.CONNACK).reason in (refused if authmode.AUTH else (0,))
    # the helpers' own clients get in either way, and see each other's messages
    sub = clients.connected(broker)
    assert sub.subscribe("am/#", qos=1) == [1]
    r = raw(broker)
    r.connect(uid("raw"))
    r.publish("am/raw", b"r", qos=1, pid=1)
    assert sub.expect_message(topic="am/raw").payload == b"r"
    p = subprocess.run(["mosquitto_pub"] + broker.cli_args() + ["-t", "am/cli", "-m", "c", "-q", "1"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert sub.expect_message(topic="am/cli").payload == b"c"
