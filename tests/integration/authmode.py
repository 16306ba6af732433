"""The suites' authentication mode (STARLING_TEST_AUTH=1, ./tests/run.sh --auth).

With it on, every broker a test starts gets a password_file (written by
`mosquitto_passwd -b`, a $7$ hash) holding USER, an acl_file granting USER
`readwrite #`, `$SYS/#` and the other $ topics the tests use, and allow_anonymous false; every client
a test makes (paho through clients.py, rawmqtt.connect(), mosquitto_pub/sub
through Broker.cli_args(), the MQTT.js scripts, starling-bench) sends USER and
PASSWORD unless it names its own user. A test of anonymous or authentication
behaviour keeps its own brokers and clients: it carries the marker
`own_auth` (pytest.mark.own_auth), and then nothing here applies to it.
"""

import os
import pathlib
import subprocess
import tempfile

import rawmqtt

AUTH = os.environ.get("STARLING_TEST_AUTH", "") not in ("", "0")
USER = "starling-test"
PASSWORD = "t3st-pa55word"
MARKER = "own_auth"
# Settings by which a test configures authentication itself: a broker given
# one of them gets none of the suite's files.
OWN_KEYS = ("password_file", "acl_file", "allow_anonymous", "auth_delay_ms")

# `#` does not match topics beginning with $: the ones the tests use
ACL = "user %s\ntopic readwrite #\n" % USER + "".join(
    "topic readwrite %s/#\n" % t for t in ("$SYS", "$test", "$cli"))

_passwd = []


def passwd_text():
    """The password file's line, written once per process by mosquitto_passwd."""
    if not _passwd:
        with tempfile.TemporaryDirectory(prefix="starling-auth-") as d:
            path = pathlib.Path(d) / "passwd"
            subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), USER, PASSWORD], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            text = path.read_text()
        assert text.startswith(USER + ":$7$"), "mosquitto_passwd wrote %r" % text
        _passwd.append(text)
    return _passwd[0]


def applies(settings):
    """Whether the suite's credentials apply to a broker with these settings."""
    return AUTH and rawmqtt.DEFAULT_AUTH is not None and not any(k in settings for k in OWN_KEYS)


def broker_settings(directory):
    """Writes passwd and acl into directory; the settings that use them."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "passwd").write_text(passwd_text())
    (directory / "acl").write_text(ACL)
    return {"password_file": str(directory / "passwd"), "acl_file": str(directory / "acl"),
            "allow_anonymous": "false"}


def cli_args():
    """-u/-P for mosquitto_pub/sub and starling-bench, [] when off."""
    return ["-u", USER, "-P", PASSWORD] if AUTH and rawmqtt.DEFAULT_AUTH is not None else []


def begin_test(item):
    """Before each test: the default credentials of rawmqtt.connect(), unless
    the test is marked own_auth (or the mode is off)."""
    own = item.get_closest_marker(MARKER) is not None
    rawmqtt.DEFAULT_AUTH = (USER, PASSWORD.encode()) if AUTH and not own else None


def end_test():
    rawmqtt.DEFAULT_AUTH = None
