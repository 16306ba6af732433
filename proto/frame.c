/* proto framing: where a packet ends in a byte stream (the fixed header's
 * Remaining Length) and the Variable Byte Integer's size, with the small
 * packet-independent helpers both directions share: string views, releasing a
 * decoded packet, error and reason-code mapping, and names for logs. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* --- framing and Variable Byte Integers ----------------------------------- */

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

/* --- packet-independent helpers -------------------------------------------- */

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
