"""`starlingd --dump --data-dir DIR`, which every other cluster test reads:
one record a line, sessions then subs then retained, each group sorted by key
bytes, strings quoted with \\" \\\\ and \\xNN escapes; exit 1 with a message
for a missing or unreadable data dir."""

import re
import time

from clients import opts, pub_props, sub_props, uid, will_props

from cluster_mqtt import PUBACK_OK, EXPIRY, persistent, retain
from harness import Cluster, run_dump

S = r'"(?:[^"\\]|\\["\\]|\\x[0-9a-fA-F]{2})*"'
H = r"[0-9a-fA-F]*"
SHAPES = {
    "session": re.compile(r"session %s owner=\d+ generation=\d+ expiry=\d+ connected=[01] expire_at=\d+"
                          # the session's user (authentication on) and whether it is bound to it
                          r"(?: user=%s)?(?: owned=1)? "
                          r"(will=none|will=%s will_qos=[0-2] will_retain=[01] will_delay=\d+ will_payload=%s"
                          # will_props is not in the interface text; starlingd prints it (the will's
                          # MQTT 5 properties are replicated state too).
                          r"( will_props=%s)?)" % (S, S, S, H, H)),
    "sub": re.compile(r"sub %s %s qos=[0-2] no_local=[01] rap=[01] rh=[0-2] sub_id=\d+" % (S, S)),
    "retained": re.compile(r"retained %s qos=[0-2] expire_at=\d+ payload=%s props=%s" % (S, H, H)),
}
GROUPS = ["session", "sub", "retained"]


def quote(b):
    """The dump's quoting of bytes b, written independently of the parser."""
    out = []
    for byte in b:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte <= 0x7E:
            out.append(ch)
        else:
            out.append("\\x%02x" % byte)
    return '"%s"' % "".join(out)


def find_line(dump, prefix):
    """The one state line starting with prefix, ignoring the case of \\x escapes."""
    hits = [l for l in dump.state if l.lower().startswith(prefix.lower())]
    assert len(hits) == 1, "%d lines start with %r:\n%s" % (len(hits), prefix, "\n".join(dump.state))
    return hits[0]


def test_dump_records_escaping_and_order(start_node, clients):
    node = start_node()
    tag = uid("d")
    cid = 'd"q\\\u00e9-' + tag
    will = {"topic": 'w/"x"', "payload": b"\x00\x01", "qos": 1, "retain": True,
            "properties": will_props(WillDelayInterval=30)}
    c, _ = persistent(clients, node, client_id=cid, will=will)
    assert c.subscribe("z/" + tag, options=opts(2, no_local=True, retain_as_published=True, retain_handling=2),
                       properties=sub_props(SubscriptionIdentifier=7)) == [2]
    assert c.subscribe('a/"q"/\u00e9/' + tag + "/#", qos=0) == [0]
    other, _ = persistent(clients, node, client_id="a-" + tag)
    other.disconnect()
    c.publish("r/\u00e9 s/" + tag, b"\x00hi", qos=1, retain=True, properties=pub_props(ContentType="text/x"))
    now_ms = time.time() * 1000
    c.publish("r/exp/" + tag, b"E", qos=1, retain=True, properties=pub_props(MessageExpiryInterval=3600))
    assert retain(node, "r/a/" + tag, b"A") in PUBACK_OK

    d = node.dump()
    for line in d.state:
        kind = line.split(" ", 1)[0]
        assert kind in SHAPES and SHAPES[kind].fullmatch(line), "malformed dump line: %r" % line
    kinds = [k for k, _ in d.order]
    assert kinds == sorted(kinds, key=GROUPS.index), "groups out of order: %s" % kinds
    for kind in GROUPS:
        keys = [k if isinstance(k, bytes) else k[0] + b"\x00" + k[1] for g, k in d.order if g == kind]
        assert keys == sorted(keys), "%s records not sorted by key bytes" % kind

    q = quote(cid.encode())
    session = find_line(d, "session %s " % q)
    assert re.search(r" expiry=%d connected=1 " % EXPIRY, session), session
    assert re.search(r' will="w/\\"x\\"" will_qos=1 will_retain=1 will_delay=30 will_payload=0001( will_props=|$)',
                     session), session
    assert find_line(d, "session %s " % quote(("a-" + tag).encode())).endswith(" will=none")
    assert find_line(d, "sub %s %s " % (q, quote(("z/" + tag).encode()))).endswith(
        " qos=2 no_local=1 rap=1 rh=2 sub_id=7")
    assert find_line(d, "sub %s %s " % (q, quote(('a/"q"/\u00e9/' + tag + "/#").encode()))).endswith(
        " qos=0 no_local=0 rap=0 rh=0 sub_id=0")
    odd = find_line(d, "retained %s " % quote(("r/\u00e9 s/" + tag).encode()))
    assert re.search(r" qos=1 expire_at=0 payload=006869 props=[0-9a-fA-F]+$", odd), odd
    assert "text/x".encode().hex() in odd.lower(), "the ContentType is not in props: " + odd
    assert find_line(d, "retained %s " % quote(("r/a/" + tag).encode())).endswith(
        " qos=1 expire_at=0 payload=41 props=")
    expiring = d.retained[("r/exp/" + tag).encode()]
    assert now_ms + 3590e3 <= int(expiring["expire_at"]) <= now_ms + 3610e3 + 5e3, expiring

    # The parser agrees with the raw text: keys decode back to the bytes sent.
    assert cid.encode() in d.sessions
    assert d.sessions[cid.encode()]["will"] == b'w/"x"'
    assert d.payload("r/\u00e9 s/" + tag) == b"\x00hi"

    # A released session expires at wall clock + Session Expiry Interval.
    c.disconnect()
    t = time.time() * 1000

    def released(dump):
        s = dump.sessions.get(cid.encode(), {})
        return "" if s.get("connected") == "0" else "session still connected: %s" % s
    d = Cluster([node]).wait_dumps(released, nodes=[node])[0]
    expire_at = int(d.sessions[cid.encode()]["expire_at"])
    assert t + (EXPIRY - 10) * 1e3 <= expire_at <= t + (EXPIRY + 10) * 1e3, d.sessions[cid.encode()]


def test_dump_of_missing_or_unreadable_data_dir(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("not a data dir\n")
    for path in (tmp_path / "missing", not_a_dir):
        p = run_dump(path)
        assert p.returncode == 1, "--dump of %s exited %d: %r %r" % (path, p.returncode, p.stdout, p.stderr)
        assert p.stderr.strip(), "--dump of %s failed without a message" % path
        assert b"applied_index" not in p.stdout
