/* proto internals: the bounds-checked reader, the unchecked writer that runs after
 * a size has been reserved, and the module-private proto__ functions. */
#ifndef STARLING_PROTO_INTERNAL_H
#define STARLING_PROTO_INTERNAL_H

#include <string.h>

#include "proto.h"

/* --- reader --------------------------------------------------------------- */

/* A cursor over untrusted bytes. Every read checks n > len - pos (pos <= len is an
 * invariant, so this cannot overflow), leaves its output untouched and returns
 * PROTO_EMALFORMED when the bytes are not there. */
struct proto__reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
};

static inline void proto__reader_init(struct proto__reader *r, const uint8_t *buf, size_t len)
{
    r->buf = buf;
    r->len = len;
    r->pos = 0;
}

static inline size_t proto__reader_left(const struct proto__reader *r)
{
    return r->len - r->pos;
}

static inline int proto__read_u8(struct proto__reader *r, uint8_t *out)
{
    if (1 > r->len - r->pos)
        return PROTO_EMALFORMED;
    *out = r->buf[r->pos++];
    return 0;
}

static inline int proto__read_u16(struct proto__reader *r, uint16_t *out)
{
    if (2 > r->len - r->pos)
        return PROTO_EMALFORMED;
    const uint8_t *p = r->buf + r->pos;
    *out = (uint16_t)((p[0] << 8) | p[1]);
    r->pos += 2;
    return 0;
}

static inline int proto__read_u32(struct proto__reader *r, uint32_t *out)
{
    if (4 > r->len - r->pos)
        return PROTO_EMALFORMED;
    const uint8_t *p = r->buf + r->pos;
    *out = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    r->pos += 4;
    return 0;
}

/* Decodes a Variable Byte Integer at p (avail bytes). Returns its size (1..4) and
 * sets *out; 0 when more bytes are needed; PROTO_EMALFORMED for a fifth byte or a
 * non-minimal encoding (a last byte of 0 after a continuation). */
static inline int proto__varint_parse(const uint8_t *p, size_t avail, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if ((size_t)i >= avail)
            return 0;
        uint8_t b = p[i];
        v |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0)
                return PROTO_EMALFORMED;
            *out = v;
            return i + 1;
        }
    }
    return PROTO_EMALFORMED;
}

static inline int proto__read_varint(struct proto__reader *r, uint32_t *out)
{
    int n = proto__varint_parse(r->buf + r->pos, r->len - r->pos, out);
    if (n <= 0)
        return PROTO_EMALFORMED;
    r->pos += (size_t)n;
    return 0;
}

static inline int proto__read_bytes(struct proto__reader *r, size_t n, struct proto_str *out)
{
    if (n > r->len - r->pos)
        return PROTO_EMALFORMED;
    out->p = r->buf + r->pos;
    out->len = (uint32_t)n;
    r->pos += n;
    return 0;
}

/* Two-byte length, then that many bytes. */
static inline int proto__read_binary(struct proto__reader *r, struct proto_str *out)
{
    if (2 > r->len - r->pos)
        return PROTO_EMALFORMED;
    const uint8_t *p = r->buf + r->pos;
    size_t n = ((size_t)p[0] << 8) | p[1];
    if (n > r->len - r->pos - 2)
        return PROTO_EMALFORMED;
    out->p = p + 2;
    out->len = (uint32_t)n;
    r->pos += 2 + n;
    return 0;
}

/* A binary field that must also be valid MQTT UTF-8 (PROTO_EUTF8 if not). */
static inline int proto__read_string(struct proto__reader *r, struct proto_str *out)
{
    struct proto_str s;
    int rc = proto__read_binary(r, &s);
    if (rc)
        return rc;
    rc = proto_utf8_check(s.p, s.len);
    if (rc)
        return rc;
    *out = s;
    return 0;
}

/* --- writer --------------------------------------------------------------- */

/* Makes room for n more bytes (capacity doubles). On failure returns PROTO_ENOMEM
 * and leaves the buffer as it was. Encoders compute their exact size first, call
 * this once, then write with the unchecked proto__put_* below. */
int proto__wbuf_reserve(struct proto_wbuf *w, size_t n);

static inline void proto__put_u8(struct proto_wbuf *w, uint8_t v)
{
    w->data[w->len++] = v;
}

static inline void proto__put_u16(struct proto_wbuf *w, uint16_t v)
{
    w->data[w->len++] = (uint8_t)(v >> 8);
    w->data[w->len++] = (uint8_t)v;
}

static inline void proto__put_u32(struct proto_wbuf *w, uint32_t v)
{
    w->data[w->len++] = (uint8_t)(v >> 24);
    w->data[w->len++] = (uint8_t)(v >> 16);
    w->data[w->len++] = (uint8_t)(v >> 8);
    w->data[w->len++] = (uint8_t)v;
}

/* v must be <= PROTO_MAX_VARINT (checked when the size was computed). */
static inline void proto__put_varint(struct proto_wbuf *w, uint32_t v)
{
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        if (v)
            b |= 0x80;
        w->data[w->len++] = b;
    } while (v);
}

static inline void proto__put_bytes(struct proto_wbuf *w, const uint8_t *p, size_t n)
{
    if (n) {
        memcpy(w->data + w->len, p, n);
        w->len += n;
    }
}

/* Two-byte length prefix, then the bytes (len <= 65535, checked by the sizing). */
static inline void proto__put_binary(struct proto_wbuf *w, struct proto_str s)
{
    proto__put_u16(w, (uint16_t)s.len);
    proto__put_bytes(w, s.p, s.len);
}

/* --- properties (codec.c) -------------------------------------------------- */

/* Size of the property block body of props, or PROTO_ETOOLARGE (a string over
 * 65535 bytes, a sub id out of range) / PROTO_EMALFORMED (bad raw user
 * properties) as a negative value. */
int64_t proto__props_size(const struct proto_props *props);

/* Writes the body after proto__props_size() succeeded and its size was reserved. */
void proto__props_write(const struct proto_props *props, struct proto_wbuf *w);

/* Reads a property length and block of a packet of the given type (0 = will). */
int proto__read_props(struct proto__reader *r, uint8_t type, struct proto_props *out);

/* --- validation (validate.c) ----------------------------------------------- */

/* 0 if reason is a code a v5 packet of this type may carry (also v3 SUBACK /
 * CONNACK return codes when version < 5), PROTO_EPROTOCOL otherwise. */
int proto__reason_check(uint8_t type, uint8_t version, uint8_t reason);

#endif
