/* proto properties: the MQTT 5 property block, described by one table (each
 * property's kind, the packets it may appear in, and the struct proto_props
 * field that holds it) from which it is parsed, sized and written. */
#include <stddef.h>
#include <string.h>

#include "internal.h"

enum prop_kind { K_NONE = 0, K_BYTE, K_U16, K_U32, K_VARINT, K_STR, K_BIN, K_PAIR };

/* Bit 0 is the will; bit n is packet type n. */
#define WILL (1u << 0)
#define PT(t) (1u << PROTO_##t)
#define ACKS (PT(PUBACK) | PT(PUBREC) | PT(PUBREL) | PT(PUBCOMP))

struct prop_info {
    uint8_t kind;
    bool nonzero;     /* u16 / u32: 0 is a protocol error */
    uint16_t allowed; /* WILL and PT() bits */
    uint32_t has;     /* byte / u16 / u32: its PROTO_HAS_* bit */
    uint16_t field;   /* byte / u16 / u32 / string: offset in struct proto_props */
};

/* The offset of field f of struct proto_props, which must be width bytes wide
 * for its kind (a negative array size stops the build otherwise). */
#define FIELD(f, width)                                                                            \
    (offsetof(struct proto_props, f) +                                                             \
     0 * sizeof(char[sizeof(((struct proto_props *)0)->f) == (width) ? 1 : -1]))
#define BYTE_PROP(f, bit, where) {K_BYTE, false, (where), PROTO_HAS_##bit, FIELD(f, 1)}
#define U16_PROP(f, bit, nz, where) {K_U16, (nz), (where), PROTO_HAS_##bit, FIELD(f, 2)}
#define U32_PROP(f, bit, nz, where) {K_U32, (nz), (where), PROTO_HAS_##bit, FIELD(f, 4)}
#define STR_PROP(kind, f, where) {(kind), false, (where), 0, FIELD(f, sizeof(struct proto_str))}

/* MQTT 5 table 2-4: the kind of each property and the packets it may appear in.
 * Identifiers missing here are not properties. */
static const struct prop_info prop_info[0x2B] = {
    [PROTO_PROP_PAYLOAD_FORMAT] = BYTE_PROP(payload_format, PAYLOAD_FORMAT, PT(PUBLISH) | WILL),
    [PROTO_PROP_MESSAGE_EXPIRY] =
        U32_PROP(message_expiry, MESSAGE_EXPIRY, false, PT(PUBLISH) | WILL),
    [PROTO_PROP_CONTENT_TYPE] = STR_PROP(K_STR, content_type, PT(PUBLISH) | WILL),
    [PROTO_PROP_RESPONSE_TOPIC] = STR_PROP(K_STR, response_topic, PT(PUBLISH) | WILL),
    [PROTO_PROP_CORRELATION_DATA] = STR_PROP(K_BIN, correlation_data, PT(PUBLISH) | WILL),
    [PROTO_PROP_SUB_ID] = {K_VARINT, false, PT(PUBLISH) | PT(SUBSCRIBE), 0, 0},
    [PROTO_PROP_SESSION_EXPIRY] = U32_PROP(session_expiry, SESSION_EXPIRY, false,
                                           PT(CONNECT) | PT(CONNACK) | PT(DISCONNECT)),
    [PROTO_PROP_ASSIGNED_CLIENT_ID] = STR_PROP(K_STR, assigned_client_id, PT(CONNACK)),
    [PROTO_PROP_SERVER_KEEP_ALIVE] =
        U16_PROP(server_keep_alive, SERVER_KEEP_ALIVE, false, PT(CONNACK)),
    [PROTO_PROP_AUTH_METHOD] = STR_PROP(K_STR, auth_method, PT(CONNECT) | PT(CONNACK) | PT(AUTH)),
    [PROTO_PROP_AUTH_DATA] = STR_PROP(K_BIN, auth_data, PT(CONNECT) | PT(CONNACK) | PT(AUTH)),
    [PROTO_PROP_REQUEST_PROBLEM_INFO] =
        BYTE_PROP(request_problem_info, REQUEST_PROBLEM_INFO, PT(CONNECT)),
    [PROTO_PROP_WILL_DELAY] = U32_PROP(will_delay, WILL_DELAY, false, WILL),
    [PROTO_PROP_REQUEST_RESPONSE_INFO] =
        BYTE_PROP(request_response_info, REQUEST_RESPONSE_INFO, PT(CONNECT)),
    [PROTO_PROP_RESPONSE_INFO] = STR_PROP(K_STR, response_info, PT(CONNACK)),
    [PROTO_PROP_SERVER_REFERENCE] =
        STR_PROP(K_STR, server_reference, PT(CONNACK) | PT(DISCONNECT)),
    [PROTO_PROP_REASON_STRING] =
        STR_PROP(K_STR, reason_string,
                 PT(CONNACK) | ACKS | PT(SUBACK) | PT(UNSUBACK) | PT(DISCONNECT) | PT(AUTH)),
    [PROTO_PROP_RECEIVE_MAXIMUM] =
        U16_PROP(receive_maximum, RECEIVE_MAXIMUM, true, PT(CONNECT) | PT(CONNACK)),
    [PROTO_PROP_TOPIC_ALIAS_MAXIMUM] =
        U16_PROP(topic_alias_maximum, TOPIC_ALIAS_MAXIMUM, false, PT(CONNECT) | PT(CONNACK)),
    /* 0 is decoded: the broker refuses it with DISCONNECT 0x94 (Topic Alias
     * invalid), which a generic protocol error would not say */
    [PROTO_PROP_TOPIC_ALIAS] = U16_PROP(topic_alias, TOPIC_ALIAS, false, PT(PUBLISH)),
    [PROTO_PROP_MAXIMUM_QOS] = BYTE_PROP(maximum_qos, MAXIMUM_QOS, PT(CONNACK)),
    [PROTO_PROP_RETAIN_AVAILABLE] = BYTE_PROP(retain_available, RETAIN_AVAILABLE, PT(CONNACK)),
    [PROTO_PROP_USER_PROPERTY] = {K_PAIR, false, 0xFFFFu, 0, 0},
    [PROTO_PROP_MAXIMUM_PACKET_SIZE] =
        U32_PROP(maximum_packet_size, MAXIMUM_PACKET_SIZE, true, PT(CONNECT) | PT(CONNACK)),
    [PROTO_PROP_WILDCARD_SUB_AVAILABLE] =
        BYTE_PROP(wildcard_sub_available, WILDCARD_SUB_AVAILABLE, PT(CONNACK)),
    [PROTO_PROP_SUB_ID_AVAILABLE] = BYTE_PROP(sub_id_available, SUB_ID_AVAILABLE, PT(CONNACK)),
    [PROTO_PROP_SHARED_SUB_AVAILABLE] =
        BYTE_PROP(shared_sub_available, SHARED_SUB_AVAILABLE, PT(CONNACK)),
};

#define NPROPS (sizeof prop_info / sizeof prop_info[0])

static int prop_kind(uint8_t id)
{
    return id < NPROPS ? prop_info[id].kind : K_NONE;
}

/* The field of a property with a kind that has one (see FIELD). */
static void *prop_field(struct proto_props *o, const struct prop_info *pi)
{
    return (uint8_t *)o + pi->field;
}

static const void *prop_cfield(const struct proto_props *o, const struct prop_info *pi)
{
    return (const uint8_t *)o + pi->field;
}

/* Skips the value of property id (its identifier already read). Bounds only. */
static int prop_skip(struct bytes_reader *r, uint8_t id)
{
    struct proto_str s;
    uint32_t v;
    switch (prop_kind(id)) {
    case K_BYTE:
        return proto__read_bytes(r, 1, &s);
    case K_U16:
        return proto__read_bytes(r, 2, &s);
    case K_U32:
        return proto__read_bytes(r, 4, &s);
    case K_VARINT:
        return proto__read_varint(r, &v);
    case K_STR:
    case K_BIN:
        return proto__read_binary(r, &s);
    case K_PAIR: {
        int rc = proto__read_binary(r, &s);
        return rc ? rc : proto__read_binary(r, &s);
    }
    default:
        return PROTO_EMALFORMED;
    }
}

/* --- parsing ------------------------------------------------------------------ */

/* The value of a byte, u16 or u32 property. */
static int read_number(struct bytes_reader *r, uint8_t kind, uint32_t *out)
{
    uint8_t b;
    uint16_t h;
    switch (kind) {
    case K_BYTE:
        if (bytes_read_u8(r, &b))
            return PROTO_EMALFORMED;
        *out = b;
        return 0;
    case K_U16:
        if (bytes_read_u16be(r, &h))
            return PROTO_EMALFORMED;
        *out = h;
        return 0;
    default:
        return bytes_read_u32be(r, out) ? PROTO_EMALFORMED : 0;
    }
}

/* A byte, u16 or u32 property into its field. A second occurrence is a
 * protocol error, a value out of range too: every byte property is a flag or a
 * QoS of 0 or 1, and some u16 / u32 ones may not be 0. */
static int take_number(struct bytes_reader *r, const struct prop_info *pi, struct proto_props *o)
{
    uint32_t v;
    if (o->has & pi->has)
        return PROTO_EPROTOCOL;
    int rc = read_number(r, pi->kind, &v);
    if (rc)
        return rc;
    if (pi->kind == K_BYTE ? v > 1 : pi->nonzero && v == 0)
        return PROTO_EPROTOCOL;
    o->has |= pi->has;
    void *dst = prop_field(o, pi);
    if (pi->kind == K_BYTE)
        *(uint8_t *)dst = (uint8_t)v;
    else if (pi->kind == K_U16)
        *(uint16_t *)dst = (uint16_t)v;
    else
        *(uint32_t *)dst = v;
    return 0;
}

/* A string or binary property into its field. A second occurrence is a
 * protocol error, and so is a Response Topic that is not a valid topic name. */
static int take_string(struct bytes_reader *r, uint8_t id, struct proto_props *o)
{
    const struct prop_info *pi = &prop_info[id];
    struct proto_str *dst = prop_field(o, pi);
    struct proto_str s;
    if (dst->p)
        return PROTO_EPROTOCOL;
    int rc = pi->kind == K_STR ? proto__read_string(r, &s) : proto__read_binary(r, &s);
    if (rc)
        return rc;
    *dst = s;
    if (id == PROTO_PROP_RESPONSE_TOPIC && proto_topic_name_check(s.p, s.len))
        return PROTO_EPROTOCOL;
    return 0;
}

/* A Subscription Identifier: SUBSCRIBE carries one, a PUBLISH several (the
 * first PROTO_MAX_DECODED_SUB_IDS are kept). */
static int take_sub_id(struct bytes_reader *r, uint8_t type, struct proto_props *o)
{
    uint32_t v;
    if (proto__read_varint(r, &v))
        return PROTO_EMALFORMED;
    if (v == 0 || v > PROTO_MAX_SUB_ID)
        return PROTO_EPROTOCOL;
    if (type == PROTO_SUBSCRIBE && o->sub_id_count)
        return PROTO_EPROTOCOL;
    if (o->sub_id_count < PROTO_MAX_DECODED_SUB_IDS)
        o->sub_ids[o->sub_id_count++] = v;
    o->has |= PROTO_HAS_SUB_ID;
    return 0;
}

/* Where the User Properties of a block run: from the first one's identifier to
 * the end of the last one. */
struct user_span {
    size_t start, end;
    bool seen;
};

/* A User Property whose identifier starts at start: checked, and the span
 * extended over it. */
static int take_user_prop(struct bytes_reader *r, size_t start, struct user_span *user)
{
    struct proto_str name, value;
    int rc = proto__read_string(r, &name);
    if (!rc)
        rc = proto__read_string(r, &value);
    if (rc)
        return rc;
    if (!user->seen)
        user->start = start;
    user->seen = true;
    user->end = r->pos;
    return 0;
}

/* One property, its identifier (at start) already read: known, allowed in a
 * packet of this mask, then its value by kind. */
static int take_prop(struct bytes_reader *r, size_t start, uint8_t id, uint8_t type,
                     uint16_t mask, struct proto_props *o, struct user_span *user)
{
    if (prop_kind(id) == K_NONE)
        return PROTO_EMALFORMED;
    const struct prop_info *pi = &prop_info[id];
    if (!(pi->allowed & mask))
        return PROTO_EPROTOCOL;
    switch (pi->kind) {
    case K_VARINT:
        return take_sub_id(r, type, o);
    case K_PAIR:
        return take_user_prop(r, start, user);
    case K_STR:
    case K_BIN:
        return take_string(r, id, o);
    default:
        return take_number(r, pi, o);
    }
}

/* Parses a property block body. User properties: props.user_props is a view from
 * the first User Property to the end of the last one; other properties interleaved
 * between them stay inside the view and are skipped by proto_user_prop_next() and
 * by the encoder. */
static int props_parse(const uint8_t *buf, size_t len, uint8_t type, struct proto_props *o)
{
    struct bytes_reader r;
    proto__reader_init(&r, buf, len);
    /* type 0 is the will, whose bit WILL is bit 0 */
    uint16_t mask = type < 16 ? (uint16_t)(1u << type) : 0;
    struct user_span user = {0, 0, false};

    memset(o, 0, sizeof *o);
    while (r.pos < r.len) {
        size_t start = r.pos;
        uint8_t id = r.buf[r.pos++];
        int rc = take_prop(&r, start, id, type, mask, o, &user);
        if (rc)
            return rc;
    }
    if (user.seen) {
        o->user_props.p = buf + user.start;
        o->user_props.len = (uint32_t)(user.end - user.start);
    }
    return 0;
}

int proto_props_decode(const uint8_t *buf, size_t len, uint8_t type, struct proto_props *out)
{
    if (type > PROTO_AUTH)
        return PROTO_EPROTOCOL;
    return props_parse(buf, len, type, out);
}

int proto__read_props(struct bytes_reader *r, uint8_t type, struct proto_props *out)
{
    uint32_t plen;
    if (proto__read_varint(r, &plen))
        return PROTO_EMALFORMED;
    if (plen > bytes_left(r))
        return PROTO_EMALFORMED;
    const uint8_t *p = r->buf + r->pos;
    r->pos += plen;
    return props_parse(p, plen, type, out);
}

int proto_user_prop_next(struct proto_str raw, size_t *pos, struct proto_str *name,
                         struct proto_str *value)
{
    struct bytes_reader r;
    proto__reader_init(&r, raw.p, raw.len);
    if (*pos > r.len)
        return PROTO_EMALFORMED;
    r.pos = *pos;
    while (r.pos < r.len) {
        uint8_t id = r.buf[r.pos++];
        if (id == PROTO_PROP_USER_PROPERTY) {
            struct proto_str n, v;
            if (proto__read_binary(&r, &n) || proto__read_binary(&r, &v))
                return PROTO_EMALFORMED;
            *name = n;
            *value = v;
            *pos = r.pos;
            return 1;
        }
        if (prop_skip(&r, id))
            return PROTO_EMALFORMED;
    }
    *pos = r.pos;
    return 0;
}

/* --- sizing and writing ------------------------------------------------------- */

/* Bytes of the User Property entries inside raw (see props_parse), or a negative
 * error if raw cannot be walked. */
static int64_t user_props_size(struct proto_str raw)
{
    struct bytes_reader r;
    proto__reader_init(&r, raw.p, raw.len);
    int64_t n = 0;
    while (r.pos < r.len) {
        size_t start = r.pos;
        uint8_t id = r.buf[r.pos++];
        if (prop_skip(&r, id))
            return PROTO_EMALFORMED;
        if (id == PROTO_PROP_USER_PROPERTY)
            n += (int64_t)(r.pos - start);
    }
    return n;
}

static void user_props_write(struct proto_str raw, size_t size, struct buf *w)
{
    if (size == raw.len) { /* the usual case: nothing interleaved */
        buf_put_mem(w, raw.p, raw.len);
        return;
    }
    struct bytes_reader r;
    proto__reader_init(&r, raw.p, raw.len);
    while (r.pos < r.len) {
        size_t start = r.pos;
        uint8_t id = r.buf[r.pos++];
        (void)prop_skip(&r, id); /* walked successfully by user_props_size */
        if (id == PROTO_PROP_USER_PROPERTY)
            buf_put_mem(w, r.buf + start, r.pos - start);
    }
}

static const uint32_t *sub_id_array(const struct proto_props *p)
{
    return p->sub_ids_ext ? p->sub_ids_ext : p->sub_ids;
}

/* Encoded size of property id when p has it (0 when not, and for sub ids and
 * user properties, sized apart), or PROTO_ETOOLARGE for a string over 65535. */
static int64_t prop_size(const struct proto_props *p, uint8_t id)
{
    const struct prop_info *pi = &prop_info[id];
    switch (pi->kind) {
    case K_BYTE:
        return p->has & pi->has ? 2 : 0;
    case K_U16:
        return p->has & pi->has ? 3 : 0;
    case K_U32:
        return p->has & pi->has ? 5 : 0;
    case K_STR:
    case K_BIN: {
        const struct proto_str *s = prop_cfield(p, pi);
        if (!s->p)
            return 0;
        return s->len > 65535 ? PROTO_ETOOLARGE : 3 + (int64_t)s->len;
    }
    default:
        return 0;
    }
}

static int64_t sub_ids_size(const struct proto_props *p)
{
    if (!p->sub_ids_ext && p->sub_id_count > PROTO_MAX_DECODED_SUB_IDS)
        return PROTO_ETOOLARGE;
    const uint32_t *ids = sub_id_array(p);
    int64_t n = 0;
    for (uint32_t i = 0; i < p->sub_id_count; i++) {
        int vs = proto_varint_size(ids[i]);
        if (ids[i] == 0 || vs == 0)
            return PROTO_ETOOLARGE;
        n += 1 + vs;
    }
    return n;
}

int64_t proto__props_size(const struct proto_props *p)
{
    int64_t n = 0;
    for (uint8_t id = 0; id < NPROPS; id++) {
        int64_t s = prop_size(p, id);
        if (s < 0)
            return s;
        n += s;
    }
    int64_t s = sub_ids_size(p);
    if (s < 0)
        return s;
    n += s;
    if (p->user_props.len) {
        int64_t u = user_props_size(p->user_props);
        if (u < 0)
            return u;
        n += u;
    }
    return n;
}

/* Writes property id when p has it (not sub ids and user properties, written
 * apart). */
static void prop_write(const struct proto_props *p, uint8_t id, struct buf *w)
{
    const struct prop_info *pi = &prop_info[id];
    const void *f = prop_cfield(p, pi);
    if (pi->kind == K_STR || pi->kind == K_BIN) {
        const struct proto_str *s = f;
        if (s->p) {
            buf_put_u8(w, id);
            proto__put_binary(w, *s);
        }
        return;
    }
    if (pi->kind != K_BYTE && pi->kind != K_U16 && pi->kind != K_U32)
        return;
    if (!(p->has & pi->has))
        return;
    buf_put_u8(w, id);
    if (pi->kind == K_BYTE)
        buf_put_u8(w, *(const uint8_t *)f);
    else if (pi->kind == K_U16)
        buf_put_u16be(w, *(const uint16_t *)f);
    else
        buf_put_u32be(w, *(const uint32_t *)f);
}

/* Order: by identifier, sub ids after the fixed ones, user properties last. */
void proto__props_write(const struct proto_props *p, struct buf *w)
{
    for (uint8_t id = 0; id < NPROPS; id++)
        prop_write(p, id, w);
    const uint32_t *ids = sub_id_array(p);
    for (uint32_t i = 0; i < p->sub_id_count; i++) {
        buf_put_u8(w, PROTO_PROP_SUB_ID);
        proto__put_varint(w, ids[i]);
    }
    if (p->user_props.len)
        user_props_write(p->user_props, (size_t)user_props_size(p->user_props), w);
}

int proto_props_encode(const struct proto_props *props, struct buf *out)
{
    int64_t n = proto__props_size(props);
    if (n < 0)
        return (int)n;
    int rc = proto__wbuf_reserve(out, (size_t)n);
    if (rc)
        return rc;
    proto__props_write(props, out);
    return 0;
}
