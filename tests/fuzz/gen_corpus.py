#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_decode: one real packet of each type and
version, as binary files in tests/fuzz/corpus/. Run from anywhere."""
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return len(x).to_bytes(2, "big") + x


def pkt(byte0, body):
    return bytes([byte0]) + varint(len(body)) + body


def props(*items):
    body = b"".join(items)
    return varint(len(body)) + body


def u16(n):
    return n.to_bytes(2, "big")


def u32(n):
    return n.to_bytes(4, "big")


USER = b"\x26" + s("k") + s("v")

seeds = {
    "connect_v31": pkt(0x10, s("MQIsdp") + b"\x03\x02" + u16(60) + s("client")),
    "connect_v311": pkt(0x10, s("MQTT") + b"\x04\x02" + u16(60) + s("client")),
    "connect_v311_full": pkt(0x10, s("MQTT") + b"\x04\xEE" + u16(300) + s("c1") + s("will/t")
                             + s("bye") + s("user") + s("pass")),
    "connect_v5": pkt(0x10, s("MQTT") + b"\x05\x02" + u16(60)
                      + props(b"\x11" + u32(3600), b"\x21" + u16(20), b"\x27" + u32(65536),
                              b"\x22" + u16(10), b"\x17\x01", b"\x19\x01", USER)
                      + s("client")),
    "connect_v5_will_auth": pkt(0x10, s("MQTT") + b"\x05\xF6" + u16(10)
                                + props(b"\x15" + s("SCRAM-SHA-1"), b"\x16" + s(b"\x01\x02"))
                                + s("c2")
                                + props(b"\x18" + u32(5), b"\x01\x01", b"\x02" + u32(9),
                                        b"\x03" + s("text/plain"), b"\x08" + s("resp/t"),
                                        b"\x09" + s(b"\x00\xff"), USER)
                                + s("will/topic") + s("payload") + s("u") + s("p")),
    "connack_v311": pkt(0x20, b"\x01\x00"),
    "connack_v5": pkt(0x20, b"\x00\x00" + props(
        b"\x12" + s("auto-1"), b"\x13" + u16(30), b"\x21" + u16(100), b"\x22" + u16(5),
        b"\x24\x01", b"\x25\x01", b"\x27" + u32(1 << 20), b"\x28\x01", b"\x29\x01", b"\x2A\x01",
        b"\x1A" + s("info"), b"\x1C" + s("srv"), b"\x1F" + s("ok"), b"\x11" + u32(0), USER)),
    "publish_qos0": pkt(0x30, s("a/b") + b"hello"),
    "publish_qos1_retain": pkt(0x33, s("sensors/temp") + u16(1) + b"21.5"),
    "publish_qos2_dup": pkt(0x3C, s("x") + u16(65535)),
    "publish_v5": pkt(0x32, s("a/b") + u16(7) + props(
        b"\x01\x01", b"\x02" + u32(60), b"\x03" + s("json"), b"\x08" + s("reply"),
        b"\x09" + s("corr"), b"\x0B" + varint(1), b"\x0B" + varint(300), b"\x23" + u16(1), USER)
        + b'{"t":1}'),
    "publish_v5_alias": pkt(0x30, s("") + props(b"\x23" + u16(1)) + b"p"),
    "puback": pkt(0x40, u16(1)),
    "puback_v5": pkt(0x40, u16(1) + b"\x10" + props(b"\x1F" + s("none"), USER)),
    "pubrec": pkt(0x50, u16(2)),
    "pubrec_v5": pkt(0x50, u16(2) + b"\x80"),
    "pubrel": pkt(0x62, u16(3)),
    "pubrel_v5": pkt(0x62, u16(3) + b"\x92" + props()),
    "pubcomp": pkt(0x70, u16(4)),
    "subscribe": pkt(0x82, u16(5) + s("a/+/c") + b"\x01" + s("#") + b"\x02"),
    "subscribe_v5": pkt(0x82, u16(5) + props(b"\x0B" + varint(9), USER)
                        + s("$share/g/a/#") + b"\x2D" + s("b") + b"\x00"),
    "suback": pkt(0x90, u16(5) + b"\x00\x01\x80"),
    "suback_v5": pkt(0x90, u16(5) + props(b"\x1F" + s("r")) + b"\x00\x8F\xA2"),
    "unsubscribe": pkt(0xA2, u16(6) + s("a/b") + s("c/#")),
    "unsubscribe_v5": pkt(0xA2, u16(6) + props(USER) + s("a/b")),
    "unsuback": pkt(0xB0, u16(6)),
    "unsuback_v5": pkt(0xB0, u16(6) + props() + b"\x00\x11"),
    "pingreq": pkt(0xC0, b""),
    "pingresp": pkt(0xD0, b""),
    "disconnect": pkt(0xE0, b""),
    "disconnect_v5": pkt(0xE0, b"\x8E" + props(b"\x11" + u32(0), b"\x1C" + s("b:1883"),
                                               b"\x1F" + s("bye"))),
    "auth_v5": pkt(0xF0, b"\x18" + props(b"\x15" + s("SCRAM"), b"\x16" + s("data"))),
}
# A session's worth of packets in one stream.
seeds["stream_v311"] = (seeds["connect_v311"] + seeds["subscribe"] + seeds["publish_qos1_retain"]
                        + seeds["pingreq"] + seeds["disconnect"])

if __name__ == "__main__":  # gen_seeds.py imports the packets above
    os.makedirs(HERE, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {HERE}")
