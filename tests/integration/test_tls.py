"""MQTT over TLS (`listener PORT ADDR tls` and its per-listener keys), with
real clients: mosquitto_pub/sub (--cafile, --cert/--key), paho, Python's ssl
module and `openssl s_client` for protocol versions and ciphers. Certificates
come from deploy/make-certs.sh (the session's `certs`); expired and revoked
client certificates and a CRL are made with `openssl ca` on that CA (`pki`)."""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

import rawmqtt
from clients import uid
from conftest import REPO, STARLINGD, free_port

PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

pytestmark = pytest.mark.skipif(os.environ.get("STARLING_TEST_BROKER", "starling") == "mosquitto",
                                reason="Starling's TLS listener settings")

CA_CONF = """[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.crt
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 30
policy = policy_any
unique_subject = no
x509_extensions = client_ext
[ policy_any ]
commonName = supplied
[ client_ext ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
"""


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True,
                          timeout=30, **kw)


@pytest.fixture(scope="module")
def pki(certs, tmp_path_factory):
    """The session CA run as an `openssl ca`: expired.crt (valid 2020 only),
    revoked.crt (revoked in crl.pem), good.crt (in neither), and other/, a
    second CA with its own client certificate."""
    d = tmp_path_factory.mktemp("pki")
    for f in ("ca.crt", "ca.key"):
        shutil.copy(certs / f, d / f)
    (d / "newcerts").mkdir()
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "crlnumber").write_text("1000\n")
    conf = d / "ca.cnf"
    conf.write_text(CA_CONF.format(dir=d))

    def issue(name, *dates):
        run(OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", d / (name + ".key"), "-subj", "/CN=" + name, "-out", d / (name + ".csr"))
        run(OPENSSL, "ca", "-batch", "-config", conf, "-in", d / (name + ".csr"), "-out", d / (name + ".crt"),
            *dates)

    issue("good")
    issue("expired", "-startdate", "20200101000000Z", "-enddate", "20210101000000Z")
    issue("revoked")
    run(OPENSSL, "ca", "-batch", "-config", conf, "-revoke", d / "revoked.crt")
    run(OPENSSL, "ca", "-batch", "-config", conf, "-gencrl", "-out", d / "crl.pem")
    run("bash", REPO / "deploy" / "make-certs.sh", d / "other")
    return d


def tls_broker(start_broker, certs, **settings):
    return start_broker(transport="tls", **settings)


def mtls_settings(certs, **more):
    s = {"cafile": certs / "ca.crt", "require_certificate": True}
    s.update(more)
    return s


def wait_log(b, pattern, timeout=10.0):
    """The first line of the broker's log matching pattern (a regex), waiting
    for it; fails the test when none comes."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for line in b.log().splitlines():
            if rx.search(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError("no log line matching %r; log:\n%s" % (pattern, b.log()[-4000:]))
        time.sleep(0.05)


def mqtt_over_tls(b, certfile=None, keyfile=None, username=None, client_id=None):
    """Opens TLS, sends CONNECT; the CONNACK, or the exception that ended it
    (a TLS alert, the connection closed)."""
    try:
        c = rawmqtt.RawClient(b.port, transport="tls", cafile=b.cafile, certfile=certfile, keyfile=keyfile)
    except (ssl.SSLError, OSError) as e:
        return e
    try:
        c.send(rawmqtt.connect(client_id or uid("tls"), username=username))
        return c.expect(rawmqtt.CONNACK)
    except (ssl.SSLError, OSError, rawmqtt.Closed, rawmqtt.Timeout) as e:
        return e
    finally:
        c.close()


def s_client(b, *args, cafile=None):
    """openssl s_client to the broker with stdin closed: (exit code, output)."""
    p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % b.port, "-CAfile",
                        str(cafile or b.cafile)] + list(args),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    return p.returncode, p.stdout.decode(errors="replace")


# --- pub/sub over TLS with real clients ---------------------------------------

def publish_until_received(sub, pub_argv, timeout=15.0):
    """Runs mosquitto_pub until sub (a mosquitto_sub -C 1) got it and exited:
    the subscription may not be in place yet at the first attempt."""
    deadline = time.monotonic() + timeout
    while sub.poll() is None:
        assert time.monotonic() < deadline, "mosquitto_sub never received"
        subprocess.run(pub_argv, check=True, timeout=15, stdout=subprocess.DEVNULL)
        try:
            sub.wait(0.3)
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_sub_over_tls(start_broker, certs, qos):
    b = tls_broker(start_broker, certs)
    topic = "tls/%s" % uid()
    sub = subprocess.Popen([SUB] + b.cli_args() + ["-t", topic, "-q", str(qos), "-C", "1", "-W", "15"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    publish_until_received(sub, [PUB] + b.cli_args() + ["-t", topic, "-q", str(qos), "-m", "hello over tls %d" % qos])
    out, err = sub.communicate(timeout=20)
    assert sub.returncode == 0, err
    assert out.decode().strip() == "hello over tls %d" % qos


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_with_client_certificate(start_broker, certs, qos):
    b = tls_broker(start_broker, certs, **mtls_settings(certs))
    cert = ["--cert", str(certs / "client.crt"), "--key", str(certs / "client.key")]
    topic = "mtls/%s" % uid()
    sub = subprocess.Popen([SUB] + b.cli_args() + cert + ["-t", topic, "-q", str(qos), "-C", "1", "-W", "15"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    publish_until_received(sub, [PUB] + b.cli_args() + cert + ["-t", topic, "-q", str(qos), "-m", "mutual %d" % qos])
    out, err = sub.communicate(timeout=20)
    assert sub.returncode == 0, err
    assert out.decode().strip() == "mutual %d" % qos
    # and without the certificate, mosquitto_pub cannot publish
    p = subprocess.run([PUB] + b.cli_args() + ["-t", topic, "-m", "x"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    assert p.returncode != 0


def test_paho_over_tls(start_broker, certs, clients):
    b = tls_broker(start_broker, certs)
    sub = clients.connected(b)
    sub.subscribe("paho/#", qos=2)
    pub = clients.connected(b, version=4)
    for qos in (0, 1, 2):
        pub.publish("paho/%d" % qos, b"payload %d" % qos, qos=qos)
    got = sorted((m.topic, m.payload, m.qos) for m in sub.expect_messages(3))
    assert got == [("paho/%d" % q, b"payload %d" % q, q) for q in (0, 1, 2)]
    # a 1 MB payload spans many TLS records both ways
    big = os.urandom(1000 * 1000)
    pub.publish("paho/big", big, qos=1)
    m = sub.expect_message()
    assert m.topic == "paho/big" and m.payload == big


# --- protocol versions and ciphers (openssl s_client) ------------------------

def test_tls_versions(start_broker, certs):
    b = tls_broker(start_broker, certs)
    for v, proto in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        rc, out = s_client(b, "-brief", v)
        assert rc == 0 and "Protocol version: %s" % proto in out, out
    rc, out = s_client(b, "-brief", "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert rc != 0 and "protocol version" in out, out
    wait_log(b, r"tls: unsupported protocol")


def test_tls_version_13_only(start_broker, certs):
    b = tls_broker(start_broker, certs, tls_version="tlsv1.3")
    rc, out = s_client(b, "-brief", "-tls1_2")
    assert rc != 0 and "protocol version" in out, out
    wait_log(b, r"tls: unsupported protocol")
    rc, out = s_client(b, "-brief", "-tls1_3")
    assert rc == 0 and "Protocol version: TLSv1.3" in out, out


def test_ciphers_honoured(start_broker, certs):
    b = tls_broker(start_broker, certs, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256",
                   ciphersuites="TLS_CHACHA20_POLY1305_SHA256")
    rc, out = s_client(b, "-brief", "-tls1_2")
    assert rc == 0 and "Ciphersuite: ECDHE-ECDSA-AES128-GCM-SHA256" in out, out
    rc, out = s_client(b, "-brief", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert rc != 0, out
    wait_log(b, r"tls: no shared cipher")
    rc, out = s_client(b, "-brief", "-tls1_3")
    assert rc == 0 and "Ciphersuite: TLS_CHACHA20_POLY1305_SHA256" in out, out
    rc, out = s_client(b, "-brief", "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384")
    assert rc != 0, out


# --- client certificates -------------------------------------------------------

def test_require_certificate_without_one(start_broker, certs):
    b = tls_broker(start_broker, certs, **mtls_settings(certs))
    r = mqtt_over_tls(b)
    assert isinstance(r, Exception), r
    wait_log(b, r"tls: peer did not return a certificate")


def test_client_certificate_of_another_ca(start_broker, certs, pki):
    b = tls_broker(start_broker, certs, **mtls_settings(certs))
    r = mqtt_over_tls(b, pki / "other" / "client.crt", pki / "other" / "client.key")
    assert isinstance(r, Exception), r
    line = wait_log(b, r"tls: certificate verify failed")
    assert "unable to get local issuer certificate" in line, line
    # the right CA's certificate passes on the same listener
    assert mqtt_over_tls(b, certs / "client.crt", certs / "client.key").reason == 0


def test_expired_client_certificate(start_broker, certs, pki):
    b = tls_broker(start_broker, certs, **mtls_settings(certs))
    r = mqtt_over_tls(b, pki / "expired.crt", pki / "expired.key")
    assert isinstance(r, Exception), r
    wait_log(b, r"tls: certificate verify failed: certificate has expired")
    assert mqtt_over_tls(b, pki / "good.crt", pki / "good.key").reason == 0


def test_revoked_client_certificate(start_broker, certs, pki):
    b = tls_broker(start_broker, certs, **mtls_settings(certs, crlfile=pki / "crl.pem"))
    r = mqtt_over_tls(b, pki / "revoked.crt", pki / "revoked.key")
    assert isinstance(r, Exception), r
    wait_log(b, r"tls: certificate verify failed: certificate revoked")
    assert mqtt_over_tls(b, pki / "good.crt", pki / "good.key").reason == 0


def test_use_identity_as_username(start_broker, certs):
    b = tls_broker(start_broker, certs, **mtls_settings(certs, use_identity_as_username=True))
    c = rawmqtt.RawClient(b.port, transport="tls", cafile=b.cafile, certfile=certs / "client.crt",
                          keyfile=certs / "client.key")
    try:
        c.send(rawmqtt.connect("who-am-i", username="mallory"))
        assert c.expect(rawmqtt.CONNACK).reason == 0
        line = wait_log(b, r"\[who-am-i .*connected")
        assert "username=client" in line, line
        with urllib.request.urlopen(b.admin_url + "/api/v1/sessions?client_id=who-am-i", timeout=10) as r:
            body = json.load(r)
        (s,) = body["sessions"]
        assert s["client_id"] == "who-am-i" and s["username"] == "client", body
    finally:
        c.close()


@pytest.mark.own_auth  # the user name of a broker without users
def test_username_from_connect_without_identity(start_broker, certs):
    b = tls_broker(start_broker, certs)
    c = rawmqtt.RawClient(b.port, transport="tls", cafile=b.cafile)
    try:
        c.send(rawmqtt.connect("plain-user", username="alice"))
        assert c.expect(rawmqtt.CONNACK).reason == 0
        with urllib.request.urlopen(b.admin_url + "/api/v1/sessions?client_id=plain-user", timeout=10) as r:
            (s,) = json.load(r)["sessions"]
        assert s["username"] == "alice"
    finally:
        c.close()


# --- bad input -------------------------------------------------------------------

@pytest.mark.parametrize("data", [rawmqtt.connect("plaintext"), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                                  bytes(range(256)) * 4])
def test_garbage_closed_with_a_log_line(start_broker, certs, data):
    b = tls_broker(start_broker, certs)
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        s.sendall(data)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # an alert maybe, then the end
            try:
                if not s.recv(4096):
                    break
            except ConnectionResetError:
                break
        else:
            raise AssertionError("the broker kept the connection open")
    wait_log(b, r"\[- 127\.0\.0\.1:\d+\] tls: ")
    assert mqtt_over_tls(b).reason == 0  # and it still serves


def client_hello():
    """The first flight of a TLS client, as bytes."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def rss_kib(pid):
    for line in pathlib.Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_stalled_handshake_closed_after_connect_timeout(start_broker, certs):
    b = tls_broker(start_broker, certs, connect_timeout=2)
    hello = client_hello()
    before = rss_kib(b.proc.pid)
    socks = []
    try:
        for i in range(100):
            s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
            # half a ClientHello, or a whole one and never the rest of the handshake
            s.sendall(hello[:len(hello) // 2] if i % 2 else hello)
            socks.append(s)
        wait_log(b, r"no CONNECT within 2 s")
        started = time.monotonic()
        grew = rss_kib(b.proc.pid) - before
        # a stalled handshake holds its SSL object and what it sent: tens of KiB
        # at most (not measured under AddressSanitizer, whose redzones and
        # quarantine inflate every allocation)
        if "ASAN_OPTIONS" not in os.environ:
            assert grew < 100 * 64, "100 stalled handshakes took %d KiB" % grew
        for s in socks:
            s.settimeout(max(0.1, 8 - (time.monotonic() - started)))
            while True:
                try:
                    if not s.recv(4096):
                        break
                except ConnectionResetError:
                    break
    finally:
        for s in socks:
            s.close()


def test_big_message_memory_given_back(start_broker, certs):
    """Each TLS subscriber gets a 1 MB message: once written, the engine's
    buffers are given back (OpenSSL's memory BIO kept its largest size: about
    1 MB per connection for ever)."""
    b = tls_broker(start_broker, certs, max_write_backlog="64m")
    subs = []
    for i in range(40):
        c = rawmqtt.RawClient(b.port, transport="tls", cafile=b.cafile)
        c.connect("big-%d" % i)
        c.subscribe(1, [("big/t", 0)])
        subs.append(c)
    pub = rawmqtt.RawClient(b.port, transport="tls", cafile=b.cafile)
    pub.connect("big-pub")
    before = rss_kib(b.proc.pid)
    try:
        pub.publish("big/t", b"x" * 1000000)
        for c in subs:
            assert len(c.expect(rawmqtt.PUBLISH, timeout=30).payload) == 1000000
        pub.publish("big/t", b"small")  # the flush after the big one is done
        for c in subs:
            assert c.expect(rawmqtt.PUBLISH, timeout=30).payload == b"small"
        grew = rss_kib(b.proc.pid) - before
        if "ASAN_OPTIONS" not in os.environ:
            assert grew < 40 * 256, "40 subscribers hold %d KiB after a 1 MB message" % grew
    finally:
        for c in subs + [pub]:
            c.close()


@pytest.mark.parametrize("version", ["TLSv1_3", "TLSv1_2"])
def test_session_resumed_with_a_ticket(start_broker, certs, version):
    """The listener keeps no session cache and sends one TLS 1.3 ticket: a
    client that kept the session of its first connection resumes it on the
    second (an abbreviated handshake, no certificate), over 1.3 and 1.2."""
    b = tls_broker(start_broker, certs)
    ctx = ssl.create_default_context(cafile=str(b.cafile))
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)

    def connect(session=None):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", b.port), timeout=10),
                            server_hostname="localhost", session=session)
        s.sendall(rawmqtt.connect(uid("resume")))
        assert s.recv(1) == b"\x20", "no CONNACK"   # a 1.3 ticket comes before it
        return s

    first = connect()
    session = first.session
    first.close()
    assert session is not None and session.has_ticket, "the broker sent no ticket"
    second = connect(session)
    try:
        assert second.session_reused, "the session was not resumed"
    finally:
        second.close()


# --- SIGHUP reload -----------------------------------------------------------------

def serial_of_pem(pem_text):
    p = subprocess.run([OPENSSL, "x509", "-noout", "-serial"], input=pem_text.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode().strip()


def served_serial(b):
    rc, out = s_client(b, "-tls1_3")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    assert rc == 0 and m, out
    return serial_of_pem(m.group(0))


def test_sighup_reloads_certificates(start_broker, certs, clients, tmp_path):
    d = tmp_path / "live"
    d.mkdir()
    shutil.copy(certs / "server.crt", d / "server.crt")
    shutil.copy(certs / "server.key", d / "server.key")
    b = tls_broker(start_broker, certs, certfile=d / "server.crt", keyfile=d / "server.key")
    old = served_serial(b)
    assert old == serial_of_pem((certs / "server.crt").read_text())
    sub = clients.connected(b)
    sub.subscribe("reload/#", qos=1)

    # a new server certificate, same CA and names, a serial of ours
    run(OPENSSL, "req", "-new", "-key", d / "server.key", "-subj", "/CN=starling", "-out", d / "new.csr")
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run(OPENSSL, "x509", "-req", "-in", d / "new.csr", "-CA", certs / "ca.crt", "-CAkey", certs / "ca.key",
        "-set_serial", "0x5EED1234", "-days", "30", "-sha256", "-extfile", d / "ext", "-out", d / "new.crt")
    os.replace(d / "new.crt", d / "server.crt")
    b.proc.send_signal(signal.SIGHUP)
    wait_log(b, r"SIGHUP: TLS certificates reloaded on 1 listener")
    assert served_serial(b) == "serial=5EED1234"
    pub = clients.connected(b)
    pub.publish("reload/a", b"after the reload", qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("reload/a", b"after the reload")

    # a broken file: the loaded certificate stays, one line says why
    (d / "server.crt").write_text("not a certificate\n")
    b.proc.send_signal(signal.SIGHUP)
    line = wait_log(b, r"SIGHUP: listener .*certfile .*server\.crt")
    assert "keeping the certificates loaded before" in line
    assert served_serial(b) == "serial=5EED1234"
    pub.publish("reload/b", b"still here", qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("reload/b", b"still here")
    assert sub.c.is_connected()


# --- start-up failures ---------------------------------------------------------------

def start_fails(tmp_path, *settings):
    port = free_port()
    argv = [STARLINGD, "--data-dir", str(tmp_path / "data"),
            "--set", "cluster_bind=127.0.0.1:%d" % free_port(), "--set", "admin_listen=off"]
    for s in settings:
        argv += ["--set", s % {"port": port} if "%(port)" in s else s]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode != 0, p.stderr.decode()
    lines = [l for l in p.stderr.decode().splitlines() if l.startswith("starlingd:")]
    assert len(lines) == 1, p.stderr.decode()
    return port, lines[0]


def test_bad_certfile_fails_start(tmp_path, certs):
    port, line = start_fails(tmp_path, "listener=%(port)d 127.0.0.1 tls", "certfile=/nonexistent/server.crt",
                             "keyfile=%s" % (certs / "server.key"))
    assert "listener 127.0.0.1:%d (tls)" % port in line and "/nonexistent/server.crt" in line, line
    assert "No such file or directory" in line, line


def test_key_not_matching_fails_start(tmp_path, certs):
    port, line = start_fails(tmp_path, "listener=%(port)d 127.0.0.1 tls", "certfile=%s" % (certs / "server.crt"),
                             "keyfile=%s" % (certs / "client.key"))
    assert "listener 127.0.0.1:%d (tls)" % port in line and "client.key" in line, line


def test_tls_listener_without_certificate_fails_start(tmp_path):
    port, line = start_fails(tmp_path, "listener=%(port)d 127.0.0.1 tls")
    assert "listener 127.0.0.1:%d (tls)" % port in line and "certfile" in line, line


def test_tls_keys_on_a_tcp_listener_fail_start(tmp_path, certs):
    port, line = start_fails(tmp_path, "listener=%(port)d 127.0.0.1 tcp", "certfile=%s" % (certs / "server.crt"))
    assert "listener 127.0.0.1:%d (tcp)" % port in line, line


def test_identity_without_require_certificate_fails_start(tmp_path, certs):
    port, line = start_fails(tmp_path, "listener=%(port)d 127.0.0.1 tls", "certfile=%s" % (certs / "server.crt"),
                             "keyfile=%s" % (certs / "server.key"), "use_identity_as_username=true")
    assert "require_certificate" in line, line


def test_tcp_and_tls_listeners_side_by_side(tmp_path, certs):
    """A config file with a tcp and a tls listener: the keys after the tls
    line apply to it only."""
    tcp_port, tls_port = free_port(), free_port()
    conf = tmp_path / "two.conf"
    conf.write_text("listener %d 127.0.0.1 tcp\nlistener %d 127.0.0.1 tls\ncertfile %s\nkeyfile %s\n" % (
        tcp_port, tls_port, certs / "server.crt", certs / "server.key"))
    p = subprocess.Popen([STARLINGD, "-c", str(conf), "--data-dir", str(tmp_path / "d2"), "--set",
                          "cluster_bind=127.0.0.1:%d" % free_port(), "--set", "admin_listen=off"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                c = rawmqtt.RawClient(tls_port, transport="tls", cafile=certs / "ca.crt")
                c.connect(uid("side"))
                c.close()
                break
            except (OSError, rawmqtt.Closed, rawmqtt.Timeout, AssertionError):
                assert time.monotonic() < deadline and p.poll() is None, "tls listener never ready"
                time.sleep(0.1)
        c = rawmqtt.RawClient(tcp_port, transport="tcp")
        c.connect(uid("side"))
        c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
