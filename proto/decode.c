/* proto decoder: one whole framed packet in, a struct proto_packet out. Views point
 * into the input; only the entry arrays of (UN)SUBSCRIBE / (UN)SUBACK allocate. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Returns the first error. Reader failures are PROTO_EMALFORMED; string, topic and
 * property checks return their own, more specific codes. */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

static bool str_eq(struct proto_str s, const char *lit, size_t n)
{
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* The protocol name and level are checked first: an unknown one is answered with
 * a CONNACK (0x01 / 0x84), so the level seen is left in c->version. */
static int decode_connect(struct bytes_reader *r, struct proto_connect *c)
{
    struct proto_str name;
    uint8_t level, flags;

    memset(c, 0, sizeof *c);
    TRY(proto__read_binary(r, &name));
    TRY(bytes_read_u8(r, &level));
    c->version = level;
    if (!((str_eq(name, "MQTT", 4) && (level == PROTO_V311 || level == PROTO_V5)) ||
          (str_eq(name, "MQIsdp", 6) && level == PROTO_V31)))
        return PROTO_EVERSION;
    TRY(bytes_read_u8(r, &flags));
    if (flags & 0x01)
        return PROTO_EMALFORMED;
    c->clean_start = flags & 0x02;
    c->will = flags & 0x04;
    c->will_qos = (flags >> 3) & 0x03;
    c->will_retain = flags & 0x20;
    c->has_password = flags & 0x40;
    c->has_username = flags & 0x80;
    if (!c->will && (c->will_qos || c->will_retain))
        return PROTO_EMALFORMED;
    if (c->will_qos == 3)
        return PROTO_EMALFORMED;
    if (level < PROTO_V5 && c->has_password && !c->has_username)
        return PROTO_EMALFORMED;
    TRY(bytes_read_u16be(r, &c->keep_alive));
    if (level == PROTO_V5)
        TRY(proto__read_props(r, PROTO_CONNECT, &c->props));
    TRY(proto__read_string(r, &c->client_id));
    if (c->will) {
        if (level == PROTO_V5)
            TRY(proto__read_props(r, 0, &c->will_props));
        TRY(proto__read_string(r, &c->will_topic));
        TRY(proto_topic_name_check(c->will_topic.p, c->will_topic.len));
        TRY(proto__read_binary(r, &c->will_payload));
    }
    if (c->has_username)
        TRY(proto__read_string(r, &c->username));
    if (c->has_password)
        TRY(proto__read_binary(r, &c->password));
    if (bytes_left(r))
        return PROTO_EMALFORMED;
    /* Rejections the protocol itself mandates; everything else about the client
     * id (length, characters, assigning one) is the broker's policy. */
    if (c->client_id.len == 0 && (level == PROTO_V31 || (level == PROTO_V311 && !c->clean_start)))
        return PROTO_ECLIENTID;
    return 0;
}

static int decode_connack(struct bytes_reader *r, uint8_t version, struct proto_connack *c)
{
    uint8_t flags;

    memset(c, 0, sizeof *c);
    TRY(bytes_read_u8(r, &flags));
    TRY(bytes_read_u8(r, &c->reason));
    if (version >= PROTO_V311) {
        if (flags & 0xFE)
            return PROTO_EMALFORMED;
        c->session_present = flags & 0x01;
        if (c->session_present && c->reason)
            return PROTO_EPROTOCOL;
    }
    TRY(proto__reason_check(PROTO_CONNACK, version, c->reason));
    if (version == PROTO_V5 && bytes_left(r))
        TRY(proto__read_props(r, PROTO_CONNACK, &c->props));
    return bytes_left(r) ? PROTO_EMALFORMED : 0;
}

/* The hot path: no allocation, no per-byte calls beyond the UTF-8 scan. */
static int decode_publish(struct bytes_reader *r, uint8_t flags, uint8_t version,
                          struct proto_publish *p)
{
    uint8_t qos = (flags >> 1) & 0x03;
    if (qos == 3 || (qos == 0 && (flags & 0x08)))
        return PROTO_EMALFORMED;
    p->qos = qos;
    p->dup = flags & 0x08;
    p->retain = flags & 0x01;
    TRY(proto__read_string(r, &p->topic));
    if (p->topic.len == 0) {
        if (version < PROTO_V5) /* v5: a topic alias must be present; the broker checks */
            return PROTO_ETOPIC;
    } else {
        TRY(proto_topic_name_check(p->topic.p, p->topic.len));
    }
    p->packet_id = 0;
    if (qos) {
        TRY(bytes_read_u16be(r, &p->packet_id));
        if (p->packet_id == 0)
            return PROTO_EMALFORMED;
    }
    if (version == PROTO_V5)
        TRY(proto__read_props(r, PROTO_PUBLISH, &p->props));
    else
        memset(&p->props, 0, sizeof p->props);
    p->payload.p = r->buf + r->pos;
    p->payload.len = (uint32_t)bytes_left(r);
    r->pos = r->len;
    return 0;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. v5 may omit the reason (remaining length 2) or
 * the property length (remaining length 3). */
static int decode_ack(struct bytes_reader *r, uint8_t type, uint8_t version, struct proto_ack *a)
{
    memset(a, 0, sizeof *a);
    TRY(bytes_read_u16be(r, &a->packet_id));
    if (a->packet_id == 0)
        return PROTO_EMALFORMED;
    if (version == PROTO_V5 && bytes_left(r)) {
        TRY(bytes_read_u8(r, &a->reason));
        TRY(proto__reason_check(type, version, a->reason));
        if (bytes_left(r))
            TRY(proto__read_props(r, type, &a->props));
    }
    return bytes_left(r) ? PROTO_EMALFORMED : 0;
}

static int read_packet_id(struct bytes_reader *r, uint16_t *id)
{
    TRY(bytes_read_u16be(r, id));
    return *id ? 0 : PROTO_EMALFORMED;
}

/* Topic filters are decoded if they are well-formed UTF-8, even when they are not
 * valid filters: v5 answers those per entry (SUBACK 0x8F), so the broker calls
 * proto_topic_filter_check() on each. Options are checked here. Two passes: the
 * first validates and counts, so nothing is allocated for a bad packet. */
static int decode_subscribe(struct bytes_reader *r, uint8_t version, struct proto_subscribe *s)
{
    memset(s, 0, sizeof *s);
    TRY(read_packet_id(r, &s->packet_id));
    if (version == PROTO_V5)
        TRY(proto__read_props(r, PROTO_SUBSCRIBE, &s->props));
    uint8_t reserved = version == PROTO_V5 ? 0xC0 : 0xFC;
    size_t start = r->pos;
    uint32_t count = 0;
    while (bytes_left(r)) {
        struct proto_str f;
        uint8_t opt;
        TRY(proto__read_string(r, &f));
        TRY(bytes_read_u8(r, &opt));
        if ((opt & reserved) || (opt & 0x03) == 3 || ((opt >> 4) & 0x03) == 3)
            return PROTO_EMALFORMED;
        count++;
    }
    if (count == 0)
        return PROTO_EPROTOCOL;
    struct proto_sub_entry *e = malloc(count * sizeof *e);
    if (!e)
        return PROTO_ENOMEM;
    r->pos = start;
    for (uint32_t i = 0; i < count; i++) {
        uint8_t opt = 0;
        (void)proto__read_binary(r, &e[i].filter); /* validated by the first pass */
        (void)bytes_read_u8(r, &opt);
        e[i].qos = opt & 0x03;
        e[i].no_local = opt & 0x04;
        e[i].retain_as_published = opt & 0x08;
        e[i].retain_handling = (opt >> 4) & 0x03;
    }
    s->count = count;
    s->entries = e;
    return 0;
}

static int decode_unsubscribe(struct bytes_reader *r, uint8_t version,
                              struct proto_unsubscribe *u)
{
    memset(u, 0, sizeof *u);
    TRY(read_packet_id(r, &u->packet_id));
    if (version == PROTO_V5)
        TRY(proto__read_props(r, PROTO_UNSUBSCRIBE, &u->props));
    size_t start = r->pos;
    uint32_t count = 0;
    while (bytes_left(r)) {
        struct proto_str f;
        TRY(proto__read_string(r, &f));
        count++;
    }
    if (count == 0)
        return PROTO_EPROTOCOL;
    struct proto_str *fs = malloc(count * sizeof *fs);
    if (!fs)
        return PROTO_ENOMEM;
    r->pos = start;
    for (uint32_t i = 0; i < count; i++)
        (void)proto__read_binary(r, &fs[i]);
    u->count = count;
    u->filters = fs;
    return 0;
}

/* SUBACK and UNSUBACK (v3 UNSUBACK: packet id only). */
static int decode_suback(struct bytes_reader *r, uint8_t type, uint8_t version,
                         struct proto_suback *s)
{
    memset(s, 0, sizeof *s);
    TRY(read_packet_id(r, &s->packet_id));
    if (type == PROTO_UNSUBACK && version < PROTO_V5)
        return bytes_left(r) ? PROTO_EMALFORMED : 0;
    if (version == PROTO_V5)
        TRY(proto__read_props(r, type, &s->props));
    size_t n = bytes_left(r);
    if (n == 0)
        return PROTO_EPROTOCOL;
    const uint8_t *codes = r->buf + r->pos;
    for (size_t i = 0; i < n; i++)
        TRY(proto__reason_check(type, version, codes[i]));
    s->reasons = malloc(n);
    if (!s->reasons)
        return PROTO_ENOMEM;
    memcpy(s->reasons, codes, n);
    s->count = (uint32_t)n;
    r->pos = r->len;
    return 0;
}

/* DISCONNECT and AUTH: v5 may omit the reason (remaining length 0, meaning 0x00)
 * or the property length (remaining length 1). */
static int decode_disconnect(struct bytes_reader *r, uint8_t type, uint8_t version,
                             struct proto_disconnect *d)
{
    memset(d, 0, sizeof *d);
    if (version == PROTO_V5 && bytes_left(r)) {
        TRY(bytes_read_u8(r, &d->reason));
        TRY(proto__reason_check(type, version, d->reason));
        if (bytes_left(r))
            TRY(proto__read_props(r, type, &d->props));
    }
    return bytes_left(r) ? PROTO_EMALFORMED : 0;
}

/* Required low nibble of the fixed header per type; PUBLISH is checked apart. */
static const uint8_t fixed_flags[16] = {
    [PROTO_PUBREL] = 0x02,
    [PROTO_SUBSCRIBE] = 0x02,
    [PROTO_UNSUBSCRIBE] = 0x02,
};

int proto_decode(const uint8_t *buf, size_t len, uint8_t version, struct proto_packet *out)
{
    if (len < 2)
        return PROTO_EMALFORMED;
    uint8_t type = buf[0] >> 4;
    uint8_t flags = buf[0] & 0x0F;
    uint32_t rl;
    int n = proto__varint_parse(buf + 1, len - 1, &rl);
    if (n <= 0 || (size_t)rl != len - 1 - (size_t)n)
        return PROTO_EMALFORMED;
    out->type = type;
    out->flags = flags;
    if (version == 0 && type != PROTO_CONNECT)
        return PROTO_EPROTOCOL;
    if (version != 0 && version != PROTO_V31 && version != PROTO_V311 && version != PROTO_V5)
        return PROTO_EPROTOCOL; /* a caller bug: not a level we negotiated */
    if (type == PROTO_AUTH && version != PROTO_V5)
        return PROTO_EMALFORMED;
    if (type == 0)
        return PROTO_EMALFORMED;
    if (type != PROTO_PUBLISH && flags != fixed_flags[type])
        return PROTO_EMALFORMED;

    struct bytes_reader r;
    proto__reader_init(&r, buf + 1 + n, rl);
    switch (type) {
    case PROTO_CONNECT:
        return decode_connect(&r, &out->u.connect);
    case PROTO_CONNACK:
        return decode_connack(&r, version, &out->u.connack);
    case PROTO_PUBLISH:
        return decode_publish(&r, flags, version, &out->u.publish);
    case PROTO_PUBACK:
    case PROTO_PUBREC:
    case PROTO_PUBREL:
    case PROTO_PUBCOMP:
        return decode_ack(&r, type, version, &out->u.ack);
    case PROTO_SUBSCRIBE:
        return decode_subscribe(&r, version, &out->u.subscribe);
    case PROTO_SUBACK:
    case PROTO_UNSUBACK:
        return decode_suback(&r, type, version, &out->u.suback);
    case PROTO_UNSUBSCRIBE:
        return decode_unsubscribe(&r, version, &out->u.unsubscribe);
    case PROTO_PINGREQ:
    case PROTO_PINGRESP:
        return rl ? PROTO_EMALFORMED : 0;
    case PROTO_DISCONNECT:
    case PROTO_AUTH:
        return decode_disconnect(&r, type, version, &out->u.disconnect);
    default:
        return PROTO_EMALFORMED;
    }
}
