/* libFuzzer target for the proto decoder: frames the input, decodes it at every
 * protocol level, and re-encodes whatever decodes, checking that the codec agrees
 * with itself. Any disagreement aborts, so the fuzzer reports it as a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static void fail(const char *what, int rc)
{
    fprintf(stderr, "fuzz_decode: %s (%d: %s)\n", what, rc, proto_error_name(rc));
    abort();
}

static void walk_user_props(struct proto_str raw)
{
    size_t pos = 0;
    struct proto_str n, v;
    int rc;
    while ((rc = proto_user_prop_next(raw, &pos, &n, &v)) == 1) {
        if (proto_utf8_check(n.p, n.len) || proto_utf8_check(v.p, v.len))
            fail("user property not UTF-8 after decode", 0);
    }
    if (rc != 0)
        fail("user properties do not walk", rc);
}

static const struct proto_props *main_props(const struct proto_packet *p)
{
    switch (p->type) {
    case PROTO_CONNECT:
        return &p->u.connect.props;
    case PROTO_CONNACK:
        return &p->u.connack.props;
    case PROTO_PUBLISH:
        return &p->u.publish.props;
    case PROTO_PUBACK:
    case PROTO_PUBREC:
    case PROTO_PUBREL:
    case PROTO_PUBCOMP:
        return &p->u.ack.props;
    case PROTO_SUBSCRIBE:
        return &p->u.subscribe.props;
    case PROTO_UNSUBSCRIBE:
        return &p->u.unsubscribe.props;
    case PROTO_SUBACK:
    case PROTO_UNSUBACK:
        return &p->u.suback.props;
    case PROTO_DISCONNECT:
    case PROTO_AUTH:
        return &p->u.disconnect.props;
    default:
        return NULL;
    }
}

/* What the broker does with a decoded packet's strings. */
static void inspect(const struct proto_packet *p)
{
    const struct proto_props *props = main_props(p);
    if (props)
        walk_user_props(props->user_props);
    if (p->type == PROTO_CONNECT && p->u.connect.will)
        walk_user_props(p->u.connect.will_props.user_props);
    if (p->type == PROTO_SUBSCRIBE) {
        for (uint32_t i = 0; i < p->u.subscribe.count; i++) {
            struct proto_str f = p->u.subscribe.entries[i].filter, g, s;
            if (proto_topic_filter_check(f.p, f.len) == 0 && proto_shared_split(f, &g, &s) &&
                (g.len == 0 || s.len == 0))
                fail("shared split of a valid filter is empty", 0);
        }
    }
}

/* encode(decoded) must succeed, decode again, and encode to the same bytes. */
static void reencode(const struct proto_packet *p, uint8_t version)
{
    uint8_t level = p->type == PROTO_CONNECT ? p->u.connect.version : version;
    struct buf w1 = {0}, w2 = {0};
    int rc = proto_encode(p, level, &w1);
    if (rc)
        fail("re-encode of a decoded packet failed", rc);
    size_t framed = 0;
    rc = proto_frame(w1.data, w1.len, 0, &framed);
    if (rc || framed != w1.len)
        fail("re-encoded packet does not frame", rc);
    if (p->type == PROTO_PUBLISH) {
        if (proto_publish_size(&p->u.publish, level) != w1.len)
            fail("proto_publish_size disagrees with proto_encode", 0);
        struct buf h = {0};
        rc = proto_publish_encode_header(&p->u.publish, level, &h);
        if (rc || h.len + p->u.publish.payload.len != w1.len || memcmp(h.data, w1.data, h.len))
            fail("publish header differs from the encoded packet", rc);
        free(h.data);
    }
    struct proto_packet q;
    rc = proto_decode(w1.data, w1.len, version, &q);
    if (rc)
        fail("re-encoded packet does not decode", rc);
    rc = proto_encode(&q, level, &w2);
    if (rc)
        fail("second re-encode failed", rc);
    if (w1.len != w2.len || memcmp(w1.data, w2.data, w1.len))
        fail("encoding is not stable", 0);
    proto_packet_release(&q);
    free(w1.data);
    free(w2.data);
}

static void decode_all_versions(const uint8_t *buf, size_t len)
{
    static const uint8_t versions[] = {0, PROTO_V31, PROTO_V311, PROTO_V5};
    for (size_t i = 0; i < sizeof versions; i++) {
        struct proto_packet p;
        if (proto_decode(buf, len, versions[i], &p) != 0)
            continue;
        inspect(&p);
        reencode(&p, versions[i]);
        proto_packet_release(&p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    /* A stream of packets, as a connection would see it. */
    while (off < size) {
        size_t plen;
        int rc = proto_frame(data + off, size - off, 0, &plen);
        if (rc)
            break;
        size_t small;
        int rc_small = proto_frame(data + off, size - off, 64, &small);
        if (rc_small == 0 && (small != plen || plen > 64))
            fail("frame limit not applied", rc_small);
        if (rc_small == PROTO_ETOOLARGE && plen <= 64)
            fail("frame limit applied too early", rc_small);
        decode_all_versions(data + off, plen);
        off += plen;
    }
    /* The same bytes as one unframed packet (exercises the length checks). */
    decode_all_versions(data, size);
    /* The validators on raw bytes. */
    if (proto_utf8_check(data, size) == 0) {
        (void)proto_topic_name_check(data, size);
        (void)proto_topic_filter_check(data, size);
    }
    return 0;
}
