#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets other than fuzz_decode, one
folder per target: tests/fuzz/corpus/<target>/<name>. Each seed is a small,
valid input of the kind the target reads (so the fuzzer starts past the first
checks), built here from the formats the code documents. Run from anywhere;
files are rewritten, regression inputs (crash-*, named by hand) are kept."""
import os
import re
import struct

from gen_corpus import pkt, props, s, seeds as mqtt, u16, u32

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- fuzz_broker: one client's stream -----------------------------------------------
def connect(version, cid, flags=0x02, keepalive=60, extra=b""):
    if version == 5:
        return pkt(0x10, s("MQTT") + bytes([5, flags]) + u16(keepalive) + props(b"\x11" + u32(60)) + s(cid) + extra)
    name = "MQIsdp" if version == 3 else "MQTT"
    return pkt(0x10, s(name) + bytes([version, flags]) + u16(keepalive) + s(cid) + extra)


broker = {
    "v311_session": connect(4, "f1") + mqtt["subscribe"] + pkt(0x30, s("a/x/c") + b"q0")
    + pkt(0x32, s("a/x/c") + u16(1) + b"q1") + pkt(0x34, s("a/x/c") + u16(2) + b"q2")
    + pkt(0x62, u16(2)) + mqtt["pingreq"] + mqtt["unsubscribe"] + mqtt["disconnect"],
    "v311_retain": connect(4, "f2", 0x00) + pkt(0x33, s("r/1") + u16(3) + b"kept")
    + pkt(0x82, u16(4) + s("r/#") + b"\x01") + pkt(0x40, u16(1)) + mqtt["disconnect"],
    "v311_will": connect(4, "f3", 0x2E, 10, s("will/t") + s("gone")) + pkt(0x31, s("r/2") + b""),
    "v31": connect(3, "f4") + mqtt["publish_qos0"],
    "v5_full": mqtt["connect_v5"] + mqtt["subscribe_v5"] + mqtt["publish_v5"] + mqtt["publish_v5_alias"]
    + mqtt["puback_v5"] + mqtt["pubrel_v5"] + mqtt["unsubscribe_v5"] + mqtt["disconnect_v5"],
    "v5_will_delay": connect(5, "f5", 0x26, 0, props(b"\x18" + u32(1)) + s("w/t") + s("p")) + mqtt["pingreq"],
    "v5_auth": mqtt["connect_v5_will_auth"],
    "second_connect": connect(4, "f6") + connect(4, "f6"),
    "no_connect": mqtt["publish_qos0"],
    "bad_version": pkt(0x10, s("MQTT") + b"\x07\x02" + u16(60) + s("c")),
    "empty_id_persistent": connect(4, "", 0x00),
}
for name, data in broker.items():
    write("fuzz_broker", name, data)

# --- fuzz_admin: first byte 0 = raw request, else an index into fuzz_admin.c's table ---
H = b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def post(path, body):
    """A raw POST request with its body."""
    return b"\x00POST " + path + b" HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body


admin = {
    "raw_status": b"\x00GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "raw_pipelined": b"\x00GET /metrics HTTP/1.1\r\n\r\nGET /api/v1/status?x=1 HTTP/1.0\r\n\r\n",
    "raw_chunked": b"\x00POST /api/v1/cluster/remove HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"b\r\n{\"node\": 2}\r\n0\r\n\r\n",
    "status": b"\x01" + H + b"Authorization: Bearer token\r\n\r\n",
    "sessions_query": b"\x03?limit=10&after=c%2Fid&flag" + H + b"\r\n",
    "retained_query": b"\x05?topic=a%2F%23&limit=1" + H + b"\r\n",
    "metrics": b"\x02" + H + b"\r\n",
    "remove": b"\x06" + H + b"Content-Length: 11\r\n\r\n{\"node\": 9}",
    "transfer": b"\x07" + H + b"Content-Length: 2\r\n\r\n{}",
    "wrong_method": b"\x08" + H + b"\r\n",
    "events": b"\x09" + H + b"Accept: text/event-stream\r\n\r\n",
    "retained_delete": b"\x0a" + H + b"Content-Length: 14\r\n\r\n{\"topic\": \"a\"}",
    "disconnect": b"\x0b" + H + b"Content-Length: 18\r\n\r\n{\"client_id\": \"c\"}",
    "page": b"\x0c" + H + b"\r\n",
    "retained_page": b"\x04?offset=2&limit=3&q=a%2F" + H + b"\r\n",
    "users_add": post(b"/api/v1/users/add", b'{"name":"alice","password":"pw"}'),
    "users_import": post(b"/api/v1/users/import", b"bob:$7$101$c2FsdA==$aGFzaA==\n"),
    "acl_add": post(b"/api/v1/acl/add", b'{"kind":"user","user":"u","access":"read","topic":"a/#"}'),
    "acl_import": post(b"/api/v1/acl/import", b"topic read p/#\nuser u\npattern read %u\n"),
    "users_list": b"\x00GET /api/v1/users HTTP/1.1\r\n\r\nGET /api/v1/acl HTTP/1.1\r\n\r\n",
}
for name, data in admin.items():
    write("fuzz_admin", name, data)


# --- fuzz_cluster_cmd: a log entry's commands (cluster/command.c) ------------------------
def cmd(ctype, client_id=b"", node=1, gen=1, expiry=0, expire_at=0, wt=b"", wp=b"", wprops=b"", delay=0,
        filt=b"", sub_id=0, topic=b"", payload=b"", mprops=b"", msg_exp=0, flags=0, qbits=0, ext=0, user=b""):
    def st(x):
        return struct.pack("<I", len(x)) + x
    body = (st(client_id) + struct.pack("<IQIQ", node, gen, expiry, expire_at) + st(wt) + st(wp) + st(wprops)
            + struct.pack("<I", delay) + st(filt) + struct.pack("<I", sub_id) + st(topic) + st(payload)
            + st(mprops) + struct.pack("<Q", msg_exp) + bytes([ext]) + st(user))
    size = 8 + len(body)
    padded = (size + 7) & ~7
    return struct.pack("<I", padded) + bytes([1, ctype, flags, qbits]) + body + b"\x00" * (padded - size)


cmds = {
    "claim_will": cmd(1, b"c1", flags=0x03, qbits=0x10, expiry=60, wt=b"w/t", wp=b"bye", wprops=b"\x01\x01",
                      delay=5),
    "release": cmd(2, b"c1", expire_at=1700000000000, flags=0x02),
    "expire": cmd(3, b"c1"),
    "sub_add": cmd(4, b"c1", filt=b"$share/g/a/#", sub_id=7, flags=0x18, qbits=0x06),
    "sub_del": cmd(5, b"c1", filt=b"a/+"),
    "retain_set": cmd(6, topic=b"r/1", payload=b"v", mprops=b"\x03\x00\x04json", msg_exp=1, qbits=1),
    "retain_del": cmd(7, topic=b"r/1"),
    "node_join_leave": cmd(8, node=2) + cmd(9, node=2),
    # users and rules: ext bit0 has_user, bits 2-3 the ACL kind, bits 4-5 the access
    "user_set": cmd(20, topic=b"$7$101$c2FsdA==$aGFzaA==", payload=b"\x00\x10\x00\x00\x01s" + b"k" * 64,
                    ext=0x01, user=b"alice"),
    "user_del": cmd(21, ext=0x01, user=b"alice"),
    "acl_add": cmd(22, topic=b"a/#", ext=0x01 | 0x04 | 0x30, user=b"alice") + cmd(22, topic=b"c/%c", ext=0x08 | 0x10),
    "acl_del": cmd(23, topic=b"pub/+"),
}
cmds["entry"] = b"".join(cmds.values())
for name, data in cmds.items():
    write("fuzz_cluster_cmd", name, data)


# --- store records (store/record.c, kv.c) -------------------------------------------------
def session_body(connected=1, will=True):
    wt, wp, wpr = (b"w/t", b"gone", b"\x01\x01") if will else (b"", b"", b"")
    flags = connected | (2 if will else 0) | 4
    return (bytes([flags, 1, 0]) + struct.pack("<IQIIQ", 1, 42, 3600, 5, 0)
            + struct.pack("<III", len(wt), len(wp), len(wpr)) + wt + wp + wpr)


def sub_body(qos=1, flags=1, rh=0, sub_id=3):
    return bytes([qos, flags, rh]) + struct.pack("<I", sub_id)


def retained_body(props_=b"\x01\x01", payload=b"21.5", qos=1):
    return bytes([qos]) + struct.pack("<HIQ", 0, len(props_), 0) + props_ + payload


records = {  # table index, key, value (version byte 1 + body)
    "session": (0, b"client-1", b"\x01" + session_body()),
    "session_nowill": (0, b"c", b"\x01" + session_body(0, False)),
    "sub": (1, b"client-1\x00a/+/c", b"\x01" + sub_body()),
    "retained": (2, b"sensors/temp", b"\x01" + retained_body()),
    "user": (3, b"alice", b"\x01" + struct.pack("<I", 5) + b"$7$1$" + b"scram"),
    "acl_rule": (4, b"\x01alice\x00a/#", b"\x01\x03"),
    "retained_hashed": (2, b"L" * 502 + b"\x01" + b"\x00" * 8,
                        b"\x81" + struct.pack("<I", 600) + b"L" * 600 + retained_body(b"", b"x")),
}
for name, (table, key, value) in records.items():
    write("fuzz_store_record", name, bytes([table]) + struct.pack(">H", len(key)) + key + value)


# --- fuzz_snapshot: "STARSNAP", u32 format, u32 flags, u64 applied index, u64 count, records ---
def snapshot(recs, index=7):
    out = b"STARSNAP" + struct.pack("<IIQQ", 1, 0, index, len(recs))
    for table, key, value in recs:
        out += struct.pack("<III", table, len(key), len(value)) + key + value
    return out


snaps = {
    "empty": snapshot([]),
    "one_of_each": snapshot([(1, b"c1", b"\x01" + session_body()), (2, b"c1\x00a/#", b"\x01" + sub_body()),
                             (3, b"r/1", b"\x01" + retained_body())]),
    "two_sessions": snapshot([(1, b"a", b"\x01" + session_body(0, False)),
                              (1, b"b", b"\x01" + session_body(1, True))], 99),
    "users_and_rules": snapshot([(4, b"alice", b"\x01" + struct.pack("<I", 5) + b"$7$1$" + b"scram"),
                                 (5, b"\x00\x00pub/#", b"\x01\x01"), (5, b"\x01alice\x00a/#", b"\x01\x03")]),
}
for name, data in snaps.items():
    write("fuzz_snapshot", name, data)

# --- fuzz_config: config files --------------------------------------------------------------
conf = {
    "listeners": b"# two listeners\nlistener 1883 0.0.0.0\nlistener 1884 ::\nmax_connections 100\n",
    "quoted": b"\xef\xbb\xbfdata_dir \"/var/lib/star ling\" # comment\nlog_level debug\n",
    "cluster": b"node_id 2\ncluster_bind 127.0.0.1:7000\npeer 1 127.0.0.1:7001\ncluster_name prod\n",
    "sizes": b"max_packet_size 1MB\nstore_max_mb 16\nmax_queued 1000\nqueue_policy drop_oldest\n",
    "admin": b"admin_listen [::1]:18083\nadmin_token \"s3cr\\\"et\"\nsys_interval 0\n",
}
for name, data in conf.items():
    write("fuzz_config", name, data)
deploy = os.path.join(os.path.dirname(HERE), "..", "..", "deploy", "starling.conf")
with open(deploy, "rb") as f:
    write("fuzz_config", "deploy_starling_conf", f.read())

# --- fuzz_cluster: byte 0 = 0 data link, 1 forward, 2 raft, else raw (no handshake) -----------
def frame(ftype, body):
    return struct.pack("<I", 1 + len(body)) + bytes([ftype]) + body


def entry(commands, origin=2, seq=1):
    return b"STLE" + struct.pack("<HHIIQ", 1, len(commands), origin, 0, seq) + b"".join(commands)


hello = frame(1, struct.pack("<Q", 12345))
cluster = {
    "data_hello_status": b"\x00" + hello + frame(4, bytes([2]) + struct.pack("<QQQ", 3, 10, 10)),
    "data_msg": b"\x00" + hello + frame(2, struct.pack("<Q", 1) + b"\x01\x00\x03a/bxyz"),
    "data_control_answer": b"\x00" + hello + frame(5, bytes([6]) + struct.pack("<II", 1, 0)
                                                  + struct.pack("<H", 2) + b"ok" + struct.pack("<H", 0)),
    "data_control_transfer": b"\x00" + hello + frame(5, bytes([4]) + struct.pack("<II", 7, 9)),
    "forward_propose": b"\x01" + frame(1, struct.pack("<Q", 1) + entry([cmds["retain_set"], cmds["sub_add"]])),
    "forward_claim": b"\x01" + frame(1, struct.pack("<Q", 2) + entry([cmds["claim_will"]], seq=2)),
    "raft_junk": b"\x02" + struct.pack("<QQ", 1, 48) + b"\x00" * 48,
    "raw_hello_d": b"\x03STRL\x01\x03\x0b\x00" + struct.pack("<Q", 2) + b"\x00" * 48 + b"127.0.0.1:1",
    "raw_http": b"\x04GET / HTTP/1.1\r\n\r\n",
}
for name, data in cluster.items():
    write("fuzz_cluster", name, data)

# --- fuzz_config.dict: every key name of broker/config.c, and value words ----------------
src = open(os.path.join(os.path.dirname(HERE), "..", "..", "broker", "config.c")).read()
keys = sorted(set(re.findall(r'\{"([a-z_]+)", KIND_', src)))
words = ["true", "false", "off", "on", "KB", "MB", "GB", "\\\"", "#", "tcp", "0.0.0.0", "[::1]:", "127.0.0.1:",
         "4294967295", "18446744073709551616", "drop_new", "drop_oldest", "error", "warn", "info", "debug", "trace"]
with open(os.path.join(os.path.dirname(HERE), "fuzz_config.dict"), "w") as f:
    f.write("# made by gen_seeds.py: the config keys of broker/config.c and value words\n")
    for k in keys:
        f.write('"%s "\n' % k)
    for w in words:
        f.write('"%s"\n' % w)
# --- fuzz_ws: byte 0 = bit 0 a good upgrade first, bits 2..7 + 1 the piece size; then requests or frames
def ws_frame(b0, payload, key=b"\x37\xfa\x21\x3d", masked=True):
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        h = bytes([b0, m | n])
    elif n < 65536:
        h = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not masked:
        return h + payload
    return h + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


WS_REQ = (b"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n"
          b"Sec-WebSocket-Version: 13\r\n\r\n")
session = connect(4, "w1") + mqtt["subscribe"] + mqtt["publish_qos0"] + mqtt["pingreq"] + mqtt["disconnect"]
ws = {
    "request": b"\xfc" + WS_REQ,
    "request_bytewise": b"\x00" + WS_REQ + ws_frame(0x82, session),
    "request_lf": b"\x40" + WS_REQ.replace(b"\r\n", b"\n"),
    "request_v8": b"\x10" + WS_REQ.replace(b"Version: 13", b"Version: 8"),
    "request_protocols": b"\x20" + WS_REQ.replace(b"Protocol: mqtt", b"Protocol: chat, mqttv3.1, mqtt"),
    "frames": b"\x01" + ws_frame(0x82, session) + ws_frame(0x89, b"ping") + ws_frame(0x88, b"\x03\xe8bye"),
    "fragments": b"\x0d" + ws_frame(0x02, session[:5]) + ws_frame(0x89, b"") + ws_frame(0x00, session[5:9])
    + ws_frame(0x80, session[9:]) + ws_frame(0x8a, b"pong"),
    "frame16": b"\x41" + ws_frame(0x82, b"\x30\xf0\x01" + b"\x00\x01t" + b"x" * 237),
    "frame64": b"\xfd" + ws_frame(0x82, b"y" * 70000)[:200],
    "unmasked": b"\x01" + ws_frame(0x82, mqtt["pingreq"], masked=False),
    "text": b"\x01" + ws_frame(0x81, b"hello"),
    "close_empty": b"\x05" + ws_frame(0x88, b""),
}
for name, data in ws.items():
    write("fuzz_ws", name, data)
with open(os.path.join(os.path.dirname(HERE), "fuzz_ws.dict"), "w") as f:
    f.write("# made by gen_seeds.py: HTTP upgrade tokens and WebSocket frame headers for fuzz_ws\n")
    for w in ["GET ", " HTTP/1.1\\x0d\\x0a", "\\x0d\\x0a", "\\x0d\\x0a\\x0d\\x0a", "/mqtt", "Upgrade: websocket",
              "Connection: Upgrade", "Sec-WebSocket-Key: ", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
              "Sec-WebSocket-Protocol: ", "mqttv3.1", "mqtt", "Host: ", "\\x82\\x80", "\\x82\\xfe", "\\x82\\xff",
              "\\x02\\x80", "\\x80\\x80", "\\x89\\x80", "\\x8a\\x80", "\\x88\\x82", "\\x03\\xe8"]:
        f.write('"%s"\n' % w)
print("wrote the seed corpora under", HERE)
