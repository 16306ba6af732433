"""starlingctl users / acl and the admin API's /api/v1/users and /api/v1/acl
on a one-node starlingd: exit codes (0 done, 1 refused, 2 usage, 3
unreachable) and messages, the password from standard input, the token, the
log line with the caller's address (never the password), the limits on a
request, and real clients (mosquitto_pub, raw v5) checking what a change
did. Changes across nodes are tested in tests/cluster/test_users.py."""

import json
import os
import pty
import select
import subprocess
import time

import pytest

from clients import uid
from conftest import free_port
pytestmark = pytest.mark.own_auth  # users and rules of its own (authmode.py)

from test_admin import STARLINGCTL, ctl, node, request, wait_until  # noqa: F401 (node: test_admin's fixture)


def pub(b, user, password, version="mqttv5"):
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-V", version, "-q", "1", "-t", "t/x", "-m", "x",
            "-i", uid("p")]
    if user is not None:
        args += ["-u", user, "-P", password]
    return subprocess.run(args, capture_output=True, text=True, timeout=20)


def test_usage_errors_exit_2(node):
    b = node()
    cases = [
        (["users"], "users needs one of list, add, passwd, del, import"),
        (["users", "frob"], "unknown users command \"frob\""),
        (["users", "add"], "need a NAME"),
        (["users", "add", "a", "b"], "take one NAME"),
        (["users", "list", "--password", "x"], "--password goes with users add"),
        (["users", "import"], "users import needs one FILE"),
        (["acl"], "acl needs one of list, add, del, import"),
        (["acl", "add", "read"], "acl add needs ACCESS TOPIC"),
        (["acl", "add", "sometimes", "a/b"], "access \"sometimes\" is not one of"),
        (["acl", "add", "--user", "u", "--pattern", "read", "a"], "give one of --user USER, --pattern"),
        (["acl", "list", "--anonymous"], "go with acl add and acl del"),
        (["sessions", "--user", "u"], "go with acl add and acl del"),
        (["users", "del", "x", "--limit", "2"], "--limit goes with users list"),
        (["acl", "add", "read", "x", "--limit", "2"], "--limit goes with acl list"),
    ]
    for args, message in cases:
        p = ctl(b, *args)
        assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
        assert message in p.stderr, (args, p.stderr)


def test_unreachable_exits_3(node):
    b = node()
    p = subprocess.run([STARLINGCTL, "--url", "http://127.0.0.1:%d" % free_port(), "users", "list"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 3, (p.returncode, p.stderr)


def test_add_passwd_del_and_refusals(node, raw):
    b = node()
    assert pub(b, None, None).returncode == 0  # no user yet: anonymous on loopback
    p = ctl(b, "users", "add", "alice", "--password", "s3cret-pw")
    assert p.returncode == 0 and p.stdout.strip() == "user alice added", (p.stdout, p.stderr)
    assert pub(b, "alice", "s3cret-pw").returncode == 0
    assert pub(b, None, None).returncode != 0  # a user exists: anonymous refused
    raw(b, version=5).connect(uid("c"), username="alice", password="nope", expect_reason=0x86)

    p = ctl(b, "users", "add", "alice", "--password", "x")
    assert p.returncode == 1 and "the user exists" in p.stderr, p.stderr
    p = ctl(b, "users", "passwd", "nobody", "--password", "x")
    assert p.returncode == 1 and "no such user" in p.stderr, p.stderr
    p = ctl(b, "users", "del", "nobody")
    assert p.returncode == 1 and "no such user" in p.stderr, p.stderr

    # the password from standard input
    p = subprocess.run([STARLINGCTL, "--url", b.admin_url, "users", "passwd", "alice"], input="from stdin\n",
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert pub(b, "alice", "from stdin").returncode == 0
    assert pub(b, "alice", "s3cret-pw").returncode != 0
    p = subprocess.run([STARLINGCTL, "--url", b.admin_url, "users", "add", "bob"], input="",
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "no password given" in p.stderr, p.stderr

    p = ctl(b, "users", "list")
    assert p.returncode == 0 and "alice" in p.stdout and "cluster" in p.stdout and "1 user\n" in p.stdout, p.stdout
    p = ctl(b, "--json", "users", "list")
    assert json.loads(p.stdout) == {"count": 1, "users": [{"name": "alice", "source": "cluster", "scram": True}]}

    # every change is logged with the caller's address, never with the password
    wait_until(lambda: 'users add "alice": 200' in b.log(), "the log line of the add")
    assert "admin 127.0.0.1:" in b.log()
    assert "s3cret-pw" not in b.log() and "from stdin" not in b.log()

    p = ctl(b, "users", "del", "alice")
    assert p.returncode == 0 and p.stdout.strip() == "user alice deleted"
    raw(b, version=5).connect(uid("c"), username="alice", password="from stdin")  # no user left: not checked


def test_acl_commands_and_refusals(node, raw):
    b = node()
    assert ctl(b, "users", "add", "alice", "--password", "pw").returncode == 0
    p = ctl(b, "acl", "add", "--user", "alice", "readwrite", "a/#")
    assert p.returncode == 0 and "rule added" in p.stdout, p.stderr
    assert ctl(b, "acl", "add", "--pattern", "read", "in/%u/#").returncode == 0
    assert ctl(b, "acl", "add", "write", "anon/+").returncode == 0  # --anonymous is the default
    c = raw(b, version=5)
    c.connect(uid("s"), username="alice", password="pw")
    assert c.subscribe(1, [("a/b", 0), ("in/alice/x", 0), ("in/bob/x", 0), ("z", 0)]).codes == [0, 0, 0x87, 0x87]
    p = ctl(b, "--json", "acl", "list")
    rules = json.loads(p.stdout)["rules"]
    assert [(r["kind"], r.get("user"), r["access"], r["topic"]) for r in rules] == [
        ("anonymous", None, "write", "anon/+"), ("user", "alice", "readwrite", "a/#"),
        ("pattern", None, "read", "in/%u/#")]
    p = ctl(b, "acl", "list", "--limit", "2")
    assert p.returncode == 0 and p.stdout.endswith("2 of 3 rules (--limit to see more)\n"), p.stdout
    assert json.loads(request(b, "GET", "/api/v1/acl?limit=1")[2])["count"] == 3
    assert request(b, "GET", "/api/v1/users?limit=x")[0] == 400
    metrics = request(b, "GET", "/metrics")[2].decode()
    assert "\nstarling_users 1\n" in metrics and "\nstarling_acl_rules 3\n" in metrics, metrics
    p = ctl(b, "acl", "add", "read", "a/#/b")
    assert p.returncode == 1 and "valid topic filter" in p.stderr, p.stderr
    p = ctl(b, "acl", "del", "--user", "alice", "nothing/here")
    assert p.returncode == 1 and "no such rule" in p.stderr, p.stderr
    assert ctl(b, "acl", "del", "--user", "alice", "a/#").returncode == 0
    assert ctl(b, "acl", "del", "--pattern", "read", "in/%u/#").returncode == 0  # ACCESS TOPIC is accepted too
    c = raw(b, version=5)
    c.connect(uid("s"), username="alice", password="pw")
    assert c.subscribe(1, [("a/b", 0)]).codes == [0x87]  # the anonymous rule still makes an ACL
    assert ctl(b, "acl", "del", "anon/+").returncode == 0
    c = raw(b, version=5)
    c.connect(uid("s"), username="alice", password="pw")
    assert c.subscribe(1, [("a/b", 0)]).codes == [0]  # no rule left: no ACL


ALICE = ("$7$101$6ZVZAeVaU8hZ7r13$UuJMmgApXqR6Sn1Sqsaq1W2Q4z3PH7I73V9x0WhHxolx5bWNFKRRLGFD7R56lwdJEy6MK0Xgra4mzTmyvw"
         "uP7A==")  # mosquitto_passwd 2.0.11: "secret"


def test_imports_and_their_limits(node, tmp_path, raw):
    b = node()
    missing = tmp_path / "missing"
    p = ctl(b, "users", "import", missing)
    assert p.returncode == 1 and "No such file" in p.stderr, p.stderr
    # the API refuses a request beyond 64 KiB by itself
    status, _, body = request(b, "POST", "/api/v1/acl/import", body=b"# x\n" * 20000)
    assert status == 413, (status, body)
    plain = tmp_path / "plain"
    plain.write_text("# users\nalice:plaintext\n")
    p = ctl(b, "users", "import", plain)
    assert p.returncode == 1 and "line 2" in p.stderr, p.stderr
    status, _, body = request(b, "POST", "/api/v1/users/import", body=b"bob:$6$eA==$eA==\n")
    assert status == 400 and b"line 1" in body
    # ?check=1 parses and imports nothing
    status, _, body = request(b, "POST", "/api/v1/users/import?check=1", body=("x:%s\n" % ALICE).encode())
    assert status == 200 and json.loads(body) == {"result": "checked", "count": 1}
    assert json.loads(request(b, "GET", "/api/v1/users")[2])["count"] == 0

    # a file larger than one request goes in parts, each checked before any is imported
    big = tmp_path / "passwd"
    lines = ["u%04d:%s" % (i, ALICE) for i in range(1200)]
    big.write_text("\n".join(lines[:1100] + ["u1100:plaintext"] + lines[1101:]) + "\n")
    assert 2 * 60000 < big.stat().st_size < 3 * 60000
    p = ctl(b, "users", "import", big)
    assert p.returncode == 1 and "line 1101: user u1100: not a password hash" in p.stderr, p.stderr
    assert json.loads(request(b, "GET", "/api/v1/users")[2])["count"] == 0
    big.write_text("\n".join(lines) + "\n")
    p = ctl(b, "users", "import", big)
    assert p.returncode == 0 and "1200 new, 0 replaced (in 3 parts)" in p.stdout, (p.stdout, p.stderr)
    raw(b, version=5).connect(uid("c"), username="u1199", password="secret")

    # an acl_file whose user section runs across parts keeps its user
    acl = tmp_path / "acl"
    rules = ["topic read public/#", "user u0001"] + ["topic read t/%05d/#" % i for i in range(4000)]
    acl.write_text("\n".join(rules) + "\n")
    assert acl.stat().st_size > 60000
    p = ctl(b, "acl", "import", acl)
    assert p.returncode == 0 and "4001 new" in p.stdout, (p.stdout, p.stderr)
    c = raw(b, version=5)
    c.connect(uid("s"), username="u0001", password="secret")
    assert c.subscribe(1, [("t/03999/x", 0), ("t/00000/x", 0), ("other", 0)]).codes == [0, 0, 0x87]
    c = raw(b, version=5)
    c.connect(uid("s"), username="u0002", password="secret")
    assert c.subscribe(1, [("t/03999/x", 0)]).codes == [0x87]
    bad = tmp_path / "bad-acl"
    bad.write_text("\n".join(rules + ["topic sometimes x"]) + "\n")
    p = ctl(b, "acl", "import", bad)
    assert p.returncode == 1 and "line 4003: access \"sometimes\"" in p.stderr, p.stderr


def test_token_protects_the_endpoints(node):
    b = node(admin_token="0123456789abcdef-tok")
    p = ctl(b, "users", "add", "alice", "--password", "pw")
    assert p.returncode == 1, p.stderr
    p = ctl(b, "--token", "0123456789abcdef-tok", "users", "add", "alice", "--password", "pw")
    assert p.returncode == 0, p.stderr
    status, _, _ = request(b, "GET", "/api/v1/users")
    assert status == 401


def _on_terminal(argv, answers, timeout=20):
    """Runs argv on a pseudo-terminal, typing each answer after its prompt
    ("Password: ", "Password again: "); returns (exit code, everything the
    terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    shown, typed, deadline = b"", 0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            if typed < len(answers) and shown.count(b"Password") > typed:
                os.write(fd, answers[typed].encode() + b"\n")
                typed += 1
        done, status = os.waitpid(pid, os.WNOHANG)
        while not done and time.monotonic() < deadline:
            time.sleep(0.05)
            done, status = os.waitpid(pid, os.WNOHANG)
        if not done:  # stuck: never hang the suite
            os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_password_asked_on_the_terminal(node, raw):
    b = node()
    code, shown = _on_terminal([STARLINGCTL, "--url", b.admin_url, "users", "add", "tty"], ["t-pw", "t-pw"])
    assert code == 0 and "user tty added" in shown, shown
    assert "t-pw" not in shown  # not echoed
    raw(b, version=5).connect(uid("c"), username="tty", password="t-pw")
    code, shown = _on_terminal([STARLINGCTL, "--url", b.admin_url, "users", "passwd", "tty"], ["one", "two"])
    assert code == 1 and "the passwords differ" in shown, shown
    raw(b, version=5).connect(uid("c"), username="tty", password="t-pw")
