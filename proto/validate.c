/* proto validation: MQTT UTF-8 strings, topic names and filters, $share syntax,
 * and the reason codes each packet type may carry. */
#include <string.h>

#include "internal.h"

#define HIGH_BITS 0x8080808080808080ull
#define LOW_BITS 0x0101010101010101ull

int proto_utf8_check(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII fast path: 8 bytes at a time while none has the high bit set and
         * none is zero (the classic has-zero-byte test). */
        while (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & HIGH_BITS) | ((w - LOW_BITS) & ~w & HIGH_BITS))
                break;
            i += 8;
        }
        if (i >= len)
            break;
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return PROTO_EUTF8;
            i++;
            continue;
        }
        size_t left = len - i;
        if (c < 0xC2) /* continuation byte, or over-long 2-byte form */
            return PROTO_EUTF8;
        if (c < 0xE0) {
            if (left < 2 || (s[i + 1] & 0xC0) != 0x80)
                return PROTO_EUTF8;
            i += 2;
        } else if (c < 0xF0) {
            if (left < 3 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
                return PROTO_EUTF8;
            if (c == 0xE0 && s[i + 1] < 0xA0) /* over-long */
                return PROTO_EUTF8;
            if (c == 0xED && s[i + 1] >= 0xA0) /* U+D800..U+DFFF */
                return PROTO_EUTF8;
            i += 3;
        } else if (c < 0xF5) {
            if (left < 4 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
                (s[i + 3] & 0xC0) != 0x80)
                return PROTO_EUTF8;
            if (c == 0xF0 && s[i + 1] < 0x90) /* over-long */
                return PROTO_EUTF8;
            if (c == 0xF4 && s[i + 1] >= 0x90) /* above U+10FFFF */
                return PROTO_EUTF8;
            i += 4;
        } else {
            return PROTO_EUTF8;
        }
    }
    return 0;
}

int proto_topic_name_check(const uint8_t *s, size_t len)
{
    if (len == 0)
        return PROTO_ETOPIC;
    if (memchr(s, '+', len) || memchr(s, '#', len))
        return PROTO_ETOPIC;
    return 0;
}

static const char share_prefix[] = "$share/";
#define SHARE_PREFIX_LEN (sizeof share_prefix - 1)

int proto_topic_filter_check(const uint8_t *s, size_t len)
{
    if (len == 0)
        return PROTO_ETOPIC;
    if (len >= SHARE_PREFIX_LEN && memcmp(s, share_prefix, SHARE_PREFIX_LEN) == 0) {
        const uint8_t *g = s + SHARE_PREFIX_LEN;
        size_t rest = len - SHARE_PREFIX_LEN;
        const uint8_t *slash = memchr(g, '/', rest);
        if (!slash || slash == g)
            return PROTO_ETOPIC;
        size_t glen = (size_t)(slash - g);
        if (memchr(g, '+', glen) || memchr(g, '#', glen))
            return PROTO_ETOPIC;
        s = slash + 1;
        len = rest - glen - 1;
        if (len == 0)
            return PROTO_ETOPIC;
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        if (c == '#') {
            if ((i > 0 && s[i - 1] != '/') || i != len - 1)
                return PROTO_ETOPIC;
        } else if (c == '+') {
            if ((i > 0 && s[i - 1] != '/') || (i + 1 < len && s[i + 1] != '/'))
                return PROTO_ETOPIC;
        }
    }
    return 0;
}

int proto_shared_split(struct proto_str s, struct proto_str *group, struct proto_str *filter)
{
    if (s.len < SHARE_PREFIX_LEN || memcmp(s.p, share_prefix, SHARE_PREFIX_LEN) != 0)
        return 0;
    const uint8_t *g = s.p + SHARE_PREFIX_LEN;
    size_t rest = s.len - SHARE_PREFIX_LEN;
    const uint8_t *slash = memchr(g, '/', rest);
    if (!slash)
        return 0;
    group->p = g;
    group->len = (uint32_t)(slash - g);
    filter->p = slash + 1;
    filter->len = (uint32_t)(rest - group->len - 1);
    return 1;
}

static bool rc_in(const uint8_t *codes, size_t n, uint8_t rc)
{
    return memchr(codes, rc, n) != NULL;
}

int proto__reason_check(uint8_t type, uint8_t version, uint8_t reason)
{
    /* The reason codes allowed per packet type (MQTT 5 section 3). */
    static const uint8_t connack[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                      0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                      0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
    static const uint8_t puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
    static const uint8_t pubrel[] = {0x00, 0x92};
    static const uint8_t suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                     0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
    static const uint8_t unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
    static const uint8_t disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89,
                                         0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
                                         0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D,
                                         0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
    static const uint8_t auth[] = {0x00, 0x18, 0x19};
    static const uint8_t v3_suback[] = {0x00, 0x01, 0x02, 0x80};
    bool ok;

    switch (type) {
    case PROTO_CONNACK:
        ok = version < PROTO_V5 ? reason <= PROTO_V3_NOT_AUTHORIZED
                                : rc_in(connack, sizeof connack, reason);
        break;
    case PROTO_PUBACK:
    case PROTO_PUBREC:
        ok = rc_in(puback, sizeof puback, reason);
        break;
    case PROTO_PUBREL:
    case PROTO_PUBCOMP:
        ok = rc_in(pubrel, sizeof pubrel, reason);
        break;
    case PROTO_SUBACK:
        ok = version < PROTO_V5 ? rc_in(v3_suback, sizeof v3_suback, reason)
                                : rc_in(suback, sizeof suback, reason);
        break;
    case PROTO_UNSUBACK:
        ok = rc_in(unsuback, sizeof unsuback, reason);
        break;
    case PROTO_DISCONNECT:
        ok = rc_in(disconnect, sizeof disconnect, reason);
        break;
    case PROTO_AUTH:
        ok = rc_in(auth, sizeof auth, reason);
        break;
    default:
        ok = false;
        break;
    }
    return ok ? 0 : PROTO_EPROTOCOL;
}
