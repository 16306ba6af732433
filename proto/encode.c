/* proto encoder: struct proto_packet in, bytes appended to a struct buf.
 * Each encoder sizes the whole packet first, reserves once, then writes, so a
 * failure (PROTO_ENOMEM, PROTO_ETOOLARGE) leaves the buffer as it was. */
#include <string.h>

#include "internal.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

static bool version_ok(uint8_t v)
{
    return v == PROTO_V31 || v == PROTO_V311 || v == PROTO_V5;
}

/* Size of the v5 property block: *body without and *part with its length prefix.
 * Both are 0 before v5, which has no properties. */
static int props_sizes(const struct proto_props *p, uint8_t version, uint64_t *body,
                       uint64_t *part)
{
    *body = *part = 0;
    if (version != PROTO_V5)
        return 0;
    int64_t n = proto__props_size(p);
    if (n < 0)
        return (int)n;
    if ((uint64_t)n > PROTO_MAX_VARINT)
        return PROTO_ETOOLARGE;
    *body = (uint64_t)n;
    *part = (uint64_t)proto_varint_size((uint32_t)n) + (uint64_t)n;
    return 0;
}

static int add_str(struct proto_str s, uint64_t *acc)
{
    if (s.len > 65535)
        return PROTO_ETOOLARGE;
    *acc += 2 + (uint64_t)s.len;
    return 0;
}

static void put_props(struct buf *w, const struct proto_props *p, uint64_t body)
{
    proto__put_varint(w, (uint32_t)body);
    proto__props_write(p, w);
}

/* Checks the remaining length, reserves the packet minus `later` bytes the caller
 * appends itself (a shared payload), and writes the fixed header. */
static int begin(struct buf *w, uint8_t byte0, uint64_t rl, uint64_t later)
{
    if (rl > PROTO_MAX_REMAINING_LENGTH)
        return PROTO_ETOOLARGE;
    uint64_t total = 1 + (uint64_t)proto_varint_size((uint32_t)rl) + rl - later;
    TRY(proto__wbuf_reserve(w, (size_t)total));
    buf_put_u8(w, byte0);
    proto__put_varint(w, (uint32_t)rl);
    return 0;
}

static int encode_connect(const struct proto_connect *c, uint8_t version, struct buf *w)
{
    bool v31 = version == PROTO_V31;
    struct proto_str name = proto_cstr(v31 ? "MQIsdp" : "MQTT");
    uint64_t pb, pp, wb = 0, wp = 0;
    uint64_t rl = 2 + name.len + 4; /* name, level, flags, keep alive */

    if (c->will && c->will_qos > 2)
        return PROTO_EPROTOCOL;
    TRY(props_sizes(&c->props, version, &pb, &pp));
    rl += pp;
    TRY(add_str(c->client_id, &rl));
    if (c->will) {
        TRY(props_sizes(&c->will_props, version, &wb, &wp));
        rl += wp;
        TRY(add_str(c->will_topic, &rl));
        TRY(add_str(c->will_payload, &rl));
    }
    if (c->has_username)
        TRY(add_str(c->username, &rl));
    if (c->has_password)
        TRY(add_str(c->password, &rl));

    uint8_t flags = (uint8_t)((c->clean_start ? 0x02 : 0) | (c->has_password ? 0x40 : 0) |
                              (c->has_username ? 0x80 : 0));
    if (c->will)
        flags |= (uint8_t)(0x04 | (c->will_qos << 3) | (c->will_retain ? 0x20 : 0));

    TRY(begin(w, PROTO_CONNECT << 4, rl, 0));
    proto__put_binary(w, name);
    buf_put_u8(w, version);
    buf_put_u8(w, flags);
    buf_put_u16be(w, c->keep_alive);
    if (version == PROTO_V5)
        put_props(w, &c->props, pb);
    proto__put_binary(w, c->client_id);
    if (c->will) {
        if (version == PROTO_V5)
            put_props(w, &c->will_props, wb);
        proto__put_binary(w, c->will_topic);
        proto__put_binary(w, c->will_payload);
    }
    if (c->has_username)
        proto__put_binary(w, c->username);
    if (c->has_password)
        proto__put_binary(w, c->password);
    return 0;
}

static int encode_connack(const struct proto_connack *c, uint8_t version, struct buf *w)
{
    uint64_t pb, pp;
    TRY(props_sizes(&c->props, version, &pb, &pp));
    uint8_t flags = (version >= PROTO_V311 && c->session_present) ? 0x01 : 0x00;
    uint8_t reason = c->reason;
    if (version < PROTO_V5 && reason >= 0x80)
        reason = proto_v3_connack_code(reason);
    TRY(begin(w, PROTO_CONNACK << 4, 2 + pp, 0));
    buf_put_u8(w, flags);
    buf_put_u8(w, reason);
    if (version == PROTO_V5)
        put_props(w, &c->props, pb);
    return 0;
}

/* Remaining length of a PUBLISH (payload included) and its property body size. */
static int publish_layout(const struct proto_publish *pub, uint8_t version, uint64_t *rl,
                          uint64_t *pb)
{
    uint64_t pp;
    if (pub->qos > 2)
        return PROTO_EPROTOCOL;
    TRY(props_sizes(&pub->props, version, pb, &pp));
    *rl = pp + (pub->qos ? 2 : 0) + pub->payload.len;
    return add_str(pub->topic, rl);
}

static int publish_head(const struct proto_publish *pub, uint8_t version, struct buf *w,
                        bool with_payload)
{
    uint64_t rl, pb;
    if (!version_ok(version))
        return PROTO_EVERSION;
    TRY(publish_layout(pub, version, &rl, &pb));
    uint8_t byte0 = (uint8_t)((PROTO_PUBLISH << 4) | (pub->dup ? 0x08 : 0) | (pub->qos << 1) |
                              (pub->retain ? 0x01 : 0));
    TRY(begin(w, byte0, rl, with_payload ? 0 : pub->payload.len));
    proto__put_binary(w, pub->topic);
    if (pub->qos)
        buf_put_u16be(w, pub->packet_id);
    if (version == PROTO_V5)
        put_props(w, &pub->props, pb);
    return 0;
}

int proto_publish_encode_header(const struct proto_publish *pub, uint8_t version,
                                struct buf *out)
{
    return publish_head(pub, version, out, false);
}

size_t proto_publish_size(const struct proto_publish *pub, uint8_t version)
{
    uint64_t rl, pb;
    if (!version_ok(version) || publish_layout(pub, version, &rl, &pb))
        return SIZE_MAX;
    if (rl > PROTO_MAX_REMAINING_LENGTH)
        return SIZE_MAX;
    return (size_t)(1 + (uint64_t)proto_varint_size((uint32_t)rl) + rl);
}

static int encode_publish(const struct proto_publish *pub, uint8_t version, struct buf *w)
{
    TRY(publish_head(pub, version, w, true));
    buf_put_mem(w, pub->payload.p, pub->payload.len);
    return 0;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
static int encode_ack(uint8_t type, const struct proto_ack *a, uint8_t version,
                      struct buf *w)
{
    uint64_t pb, pp, rl = 2;
    TRY(props_sizes(&a->props, version, &pb, &pp));
    if (version == PROTO_V5 && (a->reason || pb))
        rl = pb ? 3 + pp : 3;
    TRY(begin(w, (uint8_t)((type << 4) | (type == PROTO_PUBREL ? 0x02 : 0)), rl, 0));
    buf_put_u16be(w, a->packet_id);
    if (rl > 2)
        buf_put_u8(w, a->reason);
    if (pb)
        put_props(w, &a->props, pb);
    return 0;
}

static int encode_subscribe(const struct proto_subscribe *s, uint8_t version,
                            struct buf *w)
{
    uint64_t pb, pp;
    TRY(props_sizes(&s->props, version, &pb, &pp));
    uint64_t rl = 2 + pp;
    for (uint32_t i = 0; i < s->count; i++) {
        TRY(add_str(s->entries[i].filter, &rl));
        rl += 1;
        if (s->entries[i].qos > 2 || s->entries[i].retain_handling > 2)
            return PROTO_EPROTOCOL;
    }
    TRY(begin(w, (PROTO_SUBSCRIBE << 4) | 0x02, rl, 0));
    buf_put_u16be(w, s->packet_id);
    if (version == PROTO_V5)
        put_props(w, &s->props, pb);
    for (uint32_t i = 0; i < s->count; i++) {
        const struct proto_sub_entry *e = &s->entries[i];
        uint8_t opt = e->qos;
        if (version == PROTO_V5)
            opt |= (uint8_t)((e->no_local ? 0x04 : 0) | (e->retain_as_published ? 0x08 : 0) |
                             (e->retain_handling << 4));
        proto__put_binary(w, e->filter);
        buf_put_u8(w, opt);
    }
    return 0;
}

static int encode_unsubscribe(const struct proto_unsubscribe *u, uint8_t version,
                              struct buf *w)
{
    uint64_t pb, pp;
    TRY(props_sizes(&u->props, version, &pb, &pp));
    uint64_t rl = 2 + pp;
    for (uint32_t i = 0; i < u->count; i++)
        TRY(add_str(u->filters[i], &rl));
    TRY(begin(w, (PROTO_UNSUBSCRIBE << 4) | 0x02, rl, 0));
    buf_put_u16be(w, u->packet_id);
    if (version == PROTO_V5)
        put_props(w, &u->props, pb);
    for (uint32_t i = 0; i < u->count; i++)
        proto__put_binary(w, u->filters[i]);
    return 0;
}

/* SUBACK and UNSUBACK. v3 SUBACK knows only 0x80 as failure; v3 UNSUBACK has no
 * payload at all. */
static int encode_suback(uint8_t type, const struct proto_suback *s, uint8_t version,
                         struct buf *w)
{
    bool v3_unsuback = type == PROTO_UNSUBACK && version < PROTO_V5;
    uint64_t pb, pp;
    TRY(props_sizes(&s->props, version, &pb, &pp));
    uint64_t rl = v3_unsuback ? 2 : 2 + pp + s->count;
    TRY(begin(w, (uint8_t)(type << 4), rl, 0));
    buf_put_u16be(w, s->packet_id);
    if (v3_unsuback)
        return 0;
    if (version == PROTO_V5) {
        put_props(w, &s->props, pb);
        buf_put_mem(w, s->reasons, s->count);
        return 0;
    }
    for (uint32_t i = 0; i < s->count; i++)
        buf_put_u8(w, s->reasons[i] >= 0x80 ? 0x80 : s->reasons[i]);
    return 0;
}

/* DISCONNECT and AUTH; v5 uses the shortest form the reason and properties allow. */
static int encode_disconnect(uint8_t type, const struct proto_disconnect *d, uint8_t version,
                             struct buf *w)
{
    if (type == PROTO_AUTH && version != PROTO_V5)
        return PROTO_EPROTOCOL;
    uint64_t pb, pp, rl = 0;
    TRY(props_sizes(&d->props, version, &pb, &pp));
    if (version == PROTO_V5 && (d->reason || pb))
        rl = pb ? 1 + pp : 1;
    TRY(begin(w, (uint8_t)(type << 4), rl, 0));
    if (rl)
        buf_put_u8(w, d->reason);
    if (pb)
        put_props(w, &d->props, pb);
    return 0;
}

int proto_encode_simple(uint8_t type, struct buf *out)
{
    if (type == 0 || type > PROTO_AUTH)
        return PROTO_EPROTOCOL;
    bool flag2 = type == PROTO_PUBREL || type == PROTO_SUBSCRIBE || type == PROTO_UNSUBSCRIBE;
    return begin(out, (uint8_t)((type << 4) | (flag2 ? 0x02 : 0)), 0, 0);
}

int proto_encode(const struct proto_packet *p, uint8_t version, struct buf *out)
{
    if (p->type == PROTO_CONNECT && version == 0)
        version = p->u.connect.version;
    if (!version_ok(version))
        return PROTO_EVERSION;
    switch (p->type) {
    case PROTO_CONNECT:
        return encode_connect(&p->u.connect, version, out);
    case PROTO_CONNACK:
        return encode_connack(&p->u.connack, version, out);
    case PROTO_PUBLISH:
        return encode_publish(&p->u.publish, version, out);
    case PROTO_PUBACK:
    case PROTO_PUBREC:
    case PROTO_PUBREL:
    case PROTO_PUBCOMP:
        return encode_ack(p->type, &p->u.ack, version, out);
    case PROTO_SUBSCRIBE:
        return encode_subscribe(&p->u.subscribe, version, out);
    case PROTO_SUBACK:
    case PROTO_UNSUBACK:
        return encode_suback(p->type, &p->u.suback, version, out);
    case PROTO_UNSUBSCRIBE:
        return encode_unsubscribe(&p->u.unsubscribe, version, out);
    case PROTO_PINGREQ:
    case PROTO_PINGRESP:
        return proto_encode_simple(p->type, out);
    case PROTO_DISCONNECT:
    case PROTO_AUTH:
        return encode_disconnect(p->type, &p->u.disconnect, version, out);
    default:
        return PROTO_EPROTOCOL;
    }
}
