/* proto codec pieces shared by both directions: framing, the output buffer, the
 * MQTT 5 property block (decode and encode), error mapping and names. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* --- framing -------------------------------------------------------------- */

int proto_frame(const uint8_t *buf, size_t len, uint32_t max_packet, size_t *packet_len)
{
    if (len < 2)
        return PROTO_EINCOMPLETE;
    uint32_t rl;
    int n = proto__varint_parse(buf + 1, len - 1, &rl);
    if (n < 0)
        return n;
    if (n == 0)
        return PROTO_EINCOMPLETE;
    uint64_t total = 1 + (uint64_t)n + rl;
    /* Checked before the body is there, so a peer cannot make us buffer it. */
    if (max_packet && total > max_packet)
        return PROTO_ETOOLARGE;
    if (len < total)
        return PROTO_EINCOMPLETE;
    *packet_len = (size_t)total;
    return 0;
}

/* --- output buffer -------------------------------------------------------- */

/* --- properties ----------------------------------------------------------- */

enum prop_kind { K_NONE = 0, K_BYTE, K_U16, K_U32, K_VARINT, K_STR, K_BIN, K_PAIR };

/* Bit 0 is the will; bit n is packet type n. */
#define WILL (1u << 0)
#define PT(t) (1u << PROTO_##t)
#define ACKS (PT(PUBACK) | PT(PUBREC) | PT(PUBREL) | PT(PUBCOMP))

/* MQTT 5 table 2-4: the kind of each property and the packets it may appear in. */
static const struct {
    uint8_t kind;
    uint16_t allowed;
} prop_info[0x2B] = {
    [PROTO_PROP_PAYLOAD_FORMAT] = {K_BYTE, PT(PUBLISH) | WILL},
    [PROTO_PROP_MESSAGE_EXPIRY] = {K_U32, PT(PUBLISH) | WILL},
    [PROTO_PROP_CONTENT_TYPE] = {K_STR, PT(PUBLISH) | WILL},
    [PROTO_PROP_RESPONSE_TOPIC] = {K_STR, PT(PUBLISH) | WILL},
    [PROTO_PROP_CORRELATION_DATA] = {K_BIN, PT(PUBLISH) | WILL},
    [PROTO_PROP_SUB_ID] = {K_VARINT, PT(PUBLISH) | PT(SUBSCRIBE)},
    [PROTO_PROP_SESSION_EXPIRY] = {K_U32, PT(CONNECT) | PT(CONNACK) | PT(DISCONNECT)},
    [PROTO_PROP_ASSIGNED_CLIENT_ID] = {K_STR, PT(CONNACK)},
    [PROTO_PROP_SERVER_KEEP_ALIVE] = {K_U16, PT(CONNACK)},
    [PROTO_PROP_AUTH_METHOD] = {K_STR, PT(CONNECT) | PT(CONNACK) | PT(AUTH)},
    [PROTO_PROP_AUTH_DATA] = {K_BIN, PT(CONNECT) | PT(CONNACK) | PT(AUTH)},
    [PROTO_PROP_REQUEST_PROBLEM_INFO] = {K_BYTE, PT(CONNECT)},
    [PROTO_PROP_WILL_DELAY] = {K_U32, WILL},
    [PROTO_PROP_REQUEST_RESPONSE_INFO] = {K_BYTE, PT(CONNECT)},
    [PROTO_PROP_RESPONSE_INFO] = {K_STR, PT(CONNACK)},
    [PROTO_PROP_SERVER_REFERENCE] = {K_STR, PT(CONNACK) | PT(DISCONNECT)},
    [PROTO_PROP_REASON_STRING] = {K_STR, PT(CONNACK) | ACKS | PT(SUBACK) | PT(UNSUBACK) |
                                             PT(DISCONNECT) | PT(AUTH)},
    [PROTO_PROP_RECEIVE_MAXIMUM] = {K_U16, PT(CONNECT) | PT(CONNACK)},
    [PROTO_PROP_TOPIC_ALIAS_MAXIMUM] = {K_U16, PT(CONNECT) | PT(CONNACK)},
    [PROTO_PROP_TOPIC_ALIAS] = {K_U16, PT(PUBLISH)},
    [PROTO_PROP_MAXIMUM_QOS] = {K_BYTE, PT(CONNACK)},
    [PROTO_PROP_RETAIN_AVAILABLE] = {K_BYTE, PT(CONNACK)},
    [PROTO_PROP_USER_PROPERTY] = {K_PAIR, 0xFFFFu},
    [PROTO_PROP_MAXIMUM_PACKET_SIZE] = {K_U32, PT(CONNECT) | PT(CONNACK)},
    [PROTO_PROP_WILDCARD_SUB_AVAILABLE] = {K_BYTE, PT(CONNACK)},
    [PROTO_PROP_SUB_ID_AVAILABLE] = {K_BYTE, PT(CONNACK)},
    [PROTO_PROP_SHARED_SUB_AVAILABLE] = {K_BYTE, PT(CONNACK)},
};

static int prop_kind(uint8_t id)
{
    return id < sizeof prop_info / sizeof prop_info[0] ? prop_info[id].kind : K_NONE;
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

/* Helpers for the single-valued properties: a second occurrence is a protocol
 * error, a value out of range too. */
static int take_byte(struct bytes_reader *r, struct proto_props *o, uint32_t bit, uint8_t *dst,
                     uint8_t max)
{
    uint8_t v;
    if (o->has & bit)
        return PROTO_EPROTOCOL;
    if (bytes_read_u8(r, &v))
        return PROTO_EMALFORMED;
    if (v > max)
        return PROTO_EPROTOCOL;
    o->has |= bit;
    *dst = v;
    return 0;
}

static int take_u16(struct bytes_reader *r, struct proto_props *o, uint32_t bit, uint16_t *dst,
                    bool nonzero)
{
    uint16_t v;
    if (o->has & bit)
        return PROTO_EPROTOCOL;
    if (bytes_read_u16be(r, &v))
        return PROTO_EMALFORMED;
    if (nonzero && v == 0)
        return PROTO_EPROTOCOL;
    o->has |= bit;
    *dst = v;
    return 0;
}

static int take_u32(struct bytes_reader *r, struct proto_props *o, uint32_t bit, uint32_t *dst,
                    bool nonzero)
{
    uint32_t v;
    if (o->has & bit)
        return PROTO_EPROTOCOL;
    if (bytes_read_u32be(r, &v))
        return PROTO_EMALFORMED;
    if (nonzero && v == 0)
        return PROTO_EPROTOCOL;
    o->has |= bit;
    *dst = v;
    return 0;
}

static int take_str(struct bytes_reader *r, struct proto_str *dst, bool utf8)
{
    struct proto_str s;
    if (dst->p)
        return PROTO_EPROTOCOL;
    int rc = utf8 ? proto__read_string(r, &s) : proto__read_binary(r, &s);
    if (rc)
        return rc;
    *dst = s;
    return 0;
}

/* Parses a property block body. User properties: props.user_props is a view from
 * the first User Property to the end of the last one; other properties interleaved
 * between them stay inside the view and are skipped by proto_user_prop_next() and
 * by the encoder. */
static int props_parse(const uint8_t *buf, size_t len, uint8_t type, struct proto_props *o)
{
    struct bytes_reader r;
    proto__reader_init(&r, buf, len);
    uint16_t mask = type < 16 ? (uint16_t)(1u << type) : 0;
    if (type == 0)
        mask = WILL;
    size_t user_start = 0, user_end = 0;
    bool user_seen = false;
    int rc = 0;

    memset(o, 0, sizeof *o);
    while (r.pos < r.len) {
        size_t start = r.pos;
        uint8_t id = r.buf[r.pos++];
        if (prop_kind(id) == K_NONE)
            return PROTO_EMALFORMED;
        if (!(prop_info[id].allowed & mask))
            return PROTO_EPROTOCOL;
        switch (id) {
        case PROTO_PROP_PAYLOAD_FORMAT:
            rc = take_byte(&r, o, PROTO_HAS_PAYLOAD_FORMAT, &o->payload_format, 1);
            break;
        case PROTO_PROP_MESSAGE_EXPIRY:
            rc = take_u32(&r, o, PROTO_HAS_MESSAGE_EXPIRY, &o->message_expiry, false);
            break;
        case PROTO_PROP_CONTENT_TYPE:
            rc = take_str(&r, &o->content_type, true);
            break;
        case PROTO_PROP_RESPONSE_TOPIC:
            rc = take_str(&r, &o->response_topic, true);
            if (!rc && proto_topic_name_check(o->response_topic.p, o->response_topic.len))
                rc = PROTO_EPROTOCOL;
            break;
        case PROTO_PROP_CORRELATION_DATA:
            rc = take_str(&r, &o->correlation_data, false);
            break;
        case PROTO_PROP_SUB_ID: {
            uint32_t v;
            if (proto__read_varint(&r, &v))
                return PROTO_EMALFORMED;
            if (v == 0 || v > PROTO_MAX_SUB_ID)
                return PROTO_EPROTOCOL;
            if (type == PROTO_SUBSCRIBE && o->sub_id_count)
                return PROTO_EPROTOCOL;
            if (o->sub_id_count < PROTO_MAX_DECODED_SUB_IDS)
                o->sub_ids[o->sub_id_count++] = v;
            o->has |= PROTO_HAS_SUB_ID;
            break;
        }
        case PROTO_PROP_SESSION_EXPIRY:
            rc = take_u32(&r, o, PROTO_HAS_SESSION_EXPIRY, &o->session_expiry, false);
            break;
        case PROTO_PROP_ASSIGNED_CLIENT_ID:
            rc = take_str(&r, &o->assigned_client_id, true);
            break;
        case PROTO_PROP_SERVER_KEEP_ALIVE:
            rc = take_u16(&r, o, PROTO_HAS_SERVER_KEEP_ALIVE, &o->server_keep_alive, false);
            break;
        case PROTO_PROP_AUTH_METHOD:
            rc = take_str(&r, &o->auth_method, true);
            break;
        case PROTO_PROP_AUTH_DATA:
            rc = take_str(&r, &o->auth_data, false);
            break;
        case PROTO_PROP_REQUEST_PROBLEM_INFO:
            rc = take_byte(&r, o, PROTO_HAS_REQUEST_PROBLEM_INFO, &o->request_problem_info, 1);
            break;
        case PROTO_PROP_WILL_DELAY:
            rc = take_u32(&r, o, PROTO_HAS_WILL_DELAY, &o->will_delay, false);
            break;
        case PROTO_PROP_REQUEST_RESPONSE_INFO:
            rc = take_byte(&r, o, PROTO_HAS_REQUEST_RESPONSE_INFO, &o->request_response_info, 1);
            break;
        case PROTO_PROP_RESPONSE_INFO:
            rc = take_str(&r, &o->response_info, true);
            break;
        case PROTO_PROP_SERVER_REFERENCE:
            rc = take_str(&r, &o->server_reference, true);
            break;
        case PROTO_PROP_REASON_STRING:
            rc = take_str(&r, &o->reason_string, true);
            break;
        case PROTO_PROP_RECEIVE_MAXIMUM:
            rc = take_u16(&r, o, PROTO_HAS_RECEIVE_MAXIMUM, &o->receive_maximum, true);
            break;
        case PROTO_PROP_TOPIC_ALIAS_MAXIMUM:
            rc = take_u16(&r, o, PROTO_HAS_TOPIC_ALIAS_MAXIMUM, &o->topic_alias_maximum, false);
            break;
        case PROTO_PROP_TOPIC_ALIAS:
            /* 0 is decoded: the broker refuses it with DISCONNECT 0x94 (Topic
             * Alias invalid), which a generic protocol error would not say */
            rc = take_u16(&r, o, PROTO_HAS_TOPIC_ALIAS, &o->topic_alias, false);
            break;
        case PROTO_PROP_MAXIMUM_QOS:
            rc = take_byte(&r, o, PROTO_HAS_MAXIMUM_QOS, &o->maximum_qos, 1);
            break;
        case PROTO_PROP_RETAIN_AVAILABLE:
            rc = take_byte(&r, o, PROTO_HAS_RETAIN_AVAILABLE, &o->retain_available, 1);
            break;
        case PROTO_PROP_USER_PROPERTY: {
            struct proto_str name, value;
            rc = proto__read_string(&r, &name);
            if (!rc)
                rc = proto__read_string(&r, &value);
            if (!rc) {
                if (!user_seen)
                    user_start = start;
                user_seen = true;
                user_end = r.pos;
            }
            break;
        }
        case PROTO_PROP_MAXIMUM_PACKET_SIZE:
            rc = take_u32(&r, o, PROTO_HAS_MAXIMUM_PACKET_SIZE, &o->maximum_packet_size, true);
            break;
        case PROTO_PROP_WILDCARD_SUB_AVAILABLE:
            rc = take_byte(&r, o, PROTO_HAS_WILDCARD_SUB_AVAILABLE, &o->wildcard_sub_available, 1);
            break;
        case PROTO_PROP_SUB_ID_AVAILABLE:
            rc = take_byte(&r, o, PROTO_HAS_SUB_ID_AVAILABLE, &o->sub_id_available, 1);
            break;
        case PROTO_PROP_SHARED_SUB_AVAILABLE:
            rc = take_byte(&r, o, PROTO_HAS_SHARED_SUB_AVAILABLE, &o->shared_sub_available, 1);
            break;
        }
        if (rc)
            return rc;
    }
    if (user_seen) {
        o->user_props.p = buf + user_start;
        o->user_props.len = (uint32_t)(user_end - user_start);
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

int64_t proto__props_size(const struct proto_props *p)
{
    int64_t n = 0;
    uint32_t h = p->has;
    if (h & PROTO_HAS_PAYLOAD_FORMAT)
        n += 2;
    if (h & PROTO_HAS_MESSAGE_EXPIRY)
        n += 5;
    if (h & PROTO_HAS_SESSION_EXPIRY)
        n += 5;
    if (h & PROTO_HAS_SERVER_KEEP_ALIVE)
        n += 3;
    if (h & PROTO_HAS_REQUEST_PROBLEM_INFO)
        n += 2;
    if (h & PROTO_HAS_WILL_DELAY)
        n += 5;
    if (h & PROTO_HAS_REQUEST_RESPONSE_INFO)
        n += 2;
    if (h & PROTO_HAS_RECEIVE_MAXIMUM)
        n += 3;
    if (h & PROTO_HAS_TOPIC_ALIAS_MAXIMUM)
        n += 3;
    if (h & PROTO_HAS_TOPIC_ALIAS)
        n += 3;
    if (h & PROTO_HAS_MAXIMUM_QOS)
        n += 2;
    if (h & PROTO_HAS_RETAIN_AVAILABLE)
        n += 2;
    if (h & PROTO_HAS_MAXIMUM_PACKET_SIZE)
        n += 5;
    if (h & PROTO_HAS_WILDCARD_SUB_AVAILABLE)
        n += 2;
    if (h & PROTO_HAS_SUB_ID_AVAILABLE)
        n += 2;
    if (h & PROTO_HAS_SHARED_SUB_AVAILABLE)
        n += 2;
    const struct proto_str *strs[] = {
        &p->content_type,       &p->response_topic, &p->correlation_data,
        &p->assigned_client_id, &p->auth_method,    &p->auth_data,
        &p->response_info,      &p->server_reference, &p->reason_string,
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (!strs[i]->p)
            continue;
        if (strs[i]->len > 65535)
            return PROTO_ETOOLARGE;
        n += 3 + (int64_t)strs[i]->len;
    }
    if (!p->sub_ids_ext && p->sub_id_count > PROTO_MAX_DECODED_SUB_IDS)
        return PROTO_ETOOLARGE;
    const uint32_t *ids = sub_id_array(p);
    for (uint32_t i = 0; i < p->sub_id_count; i++) {
        int vs = proto_varint_size(ids[i]);
        if (ids[i] == 0 || vs == 0)
            return PROTO_ETOOLARGE;
        n += 1 + vs;
    }
    if (p->user_props.len) {
        int64_t u = user_props_size(p->user_props);
        if (u < 0)
            return u;
        n += u;
    }
    return n;
}

static void put_str_prop(struct buf *w, uint8_t id, struct proto_str s)
{
    if (!s.p)
        return;
    buf_put_u8(w, id);
    proto__put_binary(w, s);
}

/* Order: by identifier, sub ids after the fixed ones, user properties last. */
void proto__props_write(const struct proto_props *p, struct buf *w)
{
    uint32_t h = p->has;
    if (h & PROTO_HAS_PAYLOAD_FORMAT) {
        buf_put_u8(w, PROTO_PROP_PAYLOAD_FORMAT);
        buf_put_u8(w, p->payload_format);
    }
    if (h & PROTO_HAS_MESSAGE_EXPIRY) {
        buf_put_u8(w, PROTO_PROP_MESSAGE_EXPIRY);
        buf_put_u32be(w, p->message_expiry);
    }
    put_str_prop(w, PROTO_PROP_CONTENT_TYPE, p->content_type);
    put_str_prop(w, PROTO_PROP_RESPONSE_TOPIC, p->response_topic);
    put_str_prop(w, PROTO_PROP_CORRELATION_DATA, p->correlation_data);
    if (h & PROTO_HAS_SESSION_EXPIRY) {
        buf_put_u8(w, PROTO_PROP_SESSION_EXPIRY);
        buf_put_u32be(w, p->session_expiry);
    }
    put_str_prop(w, PROTO_PROP_ASSIGNED_CLIENT_ID, p->assigned_client_id);
    if (h & PROTO_HAS_SERVER_KEEP_ALIVE) {
        buf_put_u8(w, PROTO_PROP_SERVER_KEEP_ALIVE);
        buf_put_u16be(w, p->server_keep_alive);
    }
    put_str_prop(w, PROTO_PROP_AUTH_METHOD, p->auth_method);
    put_str_prop(w, PROTO_PROP_AUTH_DATA, p->auth_data);
    if (h & PROTO_HAS_REQUEST_PROBLEM_INFO) {
        buf_put_u8(w, PROTO_PROP_REQUEST_PROBLEM_INFO);
        buf_put_u8(w, p->request_problem_info);
    }
    if (h & PROTO_HAS_WILL_DELAY) {
        buf_put_u8(w, PROTO_PROP_WILL_DELAY);
        buf_put_u32be(w, p->will_delay);
    }
    if (h & PROTO_HAS_REQUEST_RESPONSE_INFO) {
        buf_put_u8(w, PROTO_PROP_REQUEST_RESPONSE_INFO);
        buf_put_u8(w, p->request_response_info);
    }
    put_str_prop(w, PROTO_PROP_RESPONSE_INFO, p->response_info);
    put_str_prop(w, PROTO_PROP_SERVER_REFERENCE, p->server_reference);
    put_str_prop(w, PROTO_PROP_REASON_STRING, p->reason_string);
    if (h & PROTO_HAS_RECEIVE_MAXIMUM) {
        buf_put_u8(w, PROTO_PROP_RECEIVE_MAXIMUM);
        buf_put_u16be(w, p->receive_maximum);
    }
    if (h & PROTO_HAS_TOPIC_ALIAS_MAXIMUM) {
        buf_put_u8(w, PROTO_PROP_TOPIC_ALIAS_MAXIMUM);
        buf_put_u16be(w, p->topic_alias_maximum);
    }
    if (h & PROTO_HAS_TOPIC_ALIAS) {
        buf_put_u8(w, PROTO_PROP_TOPIC_ALIAS);
        buf_put_u16be(w, p->topic_alias);
    }
    if (h & PROTO_HAS_MAXIMUM_QOS) {
        buf_put_u8(w, PROTO_PROP_MAXIMUM_QOS);
        buf_put_u8(w, p->maximum_qos);
    }
    if (h & PROTO_HAS_RETAIN_AVAILABLE) {
        buf_put_u8(w, PROTO_PROP_RETAIN_AVAILABLE);
        buf_put_u8(w, p->retain_available);
    }
    if (h & PROTO_HAS_MAXIMUM_PACKET_SIZE) {
        buf_put_u8(w, PROTO_PROP_MAXIMUM_PACKET_SIZE);
        buf_put_u32be(w, p->maximum_packet_size);
    }
    if (h & PROTO_HAS_WILDCARD_SUB_AVAILABLE) {
        buf_put_u8(w, PROTO_PROP_WILDCARD_SUB_AVAILABLE);
        buf_put_u8(w, p->wildcard_sub_available);
    }
    if (h & PROTO_HAS_SUB_ID_AVAILABLE) {
        buf_put_u8(w, PROTO_PROP_SUB_ID_AVAILABLE);
        buf_put_u8(w, p->sub_id_available);
    }
    if (h & PROTO_HAS_SHARED_SUB_AVAILABLE) {
        buf_put_u8(w, PROTO_PROP_SHARED_SUB_AVAILABLE);
        buf_put_u8(w, p->shared_sub_available);
    }
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

/* --- small helpers --------------------------------------------------------- */

int proto_varint_size(uint32_t v)
{
    if (v < 128u)
        return 1;
    if (v < 16384u)
        return 2;
    if (v < 2097152u)
        return 3;
    if (v <= PROTO_MAX_VARINT)
        return 4;
    return 0;
}

struct proto_str proto_cstr(const char *s)
{
    struct proto_str v = {(const uint8_t *)s, s ? (uint32_t)strlen(s) : 0};
    return v;
}

void proto_packet_release(struct proto_packet *p)
{
    switch (p->type) {
    case PROTO_SUBSCRIBE:
        free(p->u.subscribe.entries);
        p->u.subscribe.entries = NULL;
        p->u.subscribe.count = 0;
        break;
    case PROTO_UNSUBSCRIBE:
        free(p->u.unsubscribe.filters);
        p->u.unsubscribe.filters = NULL;
        p->u.unsubscribe.count = 0;
        break;
    case PROTO_SUBACK:
    case PROTO_UNSUBACK:
        free(p->u.suback.reasons);
        p->u.suback.reasons = NULL;
        p->u.suback.count = 0;
        break;
    default:
        break;
    }
}

uint8_t proto_error_reason(int err)
{
    switch (err) {
    case 0:
        return PROTO_RC_SUCCESS;
    case PROTO_EINCOMPLETE:
    case PROTO_EMALFORMED:
    case PROTO_EUTF8:
        return PROTO_RC_MALFORMED;
    case PROTO_EPROTOCOL:
        return PROTO_RC_PROTOCOL_ERROR;
    case PROTO_ETOOLARGE:
        return PROTO_RC_PACKET_TOO_LARGE;
    case PROTO_ETOPIC:
        return PROTO_RC_TOPIC_NAME_INVALID;
    case PROTO_EVERSION:
        return PROTO_RC_UNSUPPORTED_VERSION;
    case PROTO_ECLIENTID:
        return PROTO_RC_CLIENTID_INVALID;
    default:
        return PROTO_RC_UNSPECIFIED;
    }
}

uint8_t proto_v3_connack_code(uint8_t v5_reason)
{
    switch (v5_reason) {
    case PROTO_RC_SUCCESS:
        return PROTO_V3_ACCEPTED;
    case PROTO_RC_UNSUPPORTED_VERSION:
        return PROTO_V3_BAD_VERSION;
    case PROTO_RC_CLIENTID_INVALID:
        return PROTO_V3_ID_REJECTED;
    case PROTO_RC_SERVER_UNAVAILABLE:
    case PROTO_RC_SERVER_BUSY:
        return PROTO_V3_SERVER_UNAVAILABLE;
    case PROTO_RC_BAD_USERNAME_PASSWORD:
        return PROTO_V3_BAD_USERNAME_PASSWORD;
    case PROTO_RC_NOT_AUTHORIZED:
    case PROTO_RC_BAD_AUTH_METHOD:
        return PROTO_V3_NOT_AUTHORIZED;
    default:
        return PROTO_V3_SERVER_UNAVAILABLE;
    }
}

const char *proto_type_name(uint8_t type)
{
    static const char *const names[16] = {
        "RESERVED", "CONNECT", "CONNACK",  "PUBLISH",     "PUBACK",   "PUBREC",
        "PUBREL",   "PUBCOMP", "SUBSCRIBE", "SUBACK",     "UNSUBSCRIBE", "UNSUBACK",
        "PINGREQ",  "PINGRESP", "DISCONNECT", "AUTH",
    };
    return type < 16 ? names[type] : "INVALID";
}

const char *proto_error_name(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case PROTO_EINCOMPLETE:
        return "incomplete packet";
    case PROTO_EMALFORMED:
        return "malformed packet";
    case PROTO_EPROTOCOL:
        return "protocol error";
    case PROTO_ETOOLARGE:
        return "packet too large";
    case PROTO_EVERSION:
        return "unsupported protocol version";
    case PROTO_ETOPIC:
        return "invalid topic";
    case PROTO_EUTF8:
        return "invalid UTF-8 string";
    case PROTO_ENOMEM:
        return "out of memory";
    case PROTO_ECLIENTID:
        return "client identifier rejected";
    default:
        return "unknown error";
    }
}
