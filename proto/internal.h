/* proto internals: the bounds-checked reader, the unchecked writer that runs after
 * a size has been reserved, and the module-private proto__ functions. */
#ifndef STARLING_PROTO_INTERNAL_H
#define STARLING_PROTO_INTERNAL_H

#include <string.h>

#include "buf.h"
#include "bytes.h"
#include "proto.h"

/* --- reader --------------------------------------------------------------- */

/* The reader is common/bytes.h's, initialised to return PROTO_EMALFORMED
 * when the bytes are not there; MQTT integers are big-endian. */
static inline void proto__reader_init(struct bytes_reader *r, const uint8_t *buf, size_t len)
{
    bytes_reader_init(r, buf, len, PROTO_EMALFORMED);
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

static inline int proto__read_varint(struct bytes_reader *r, uint32_t *out)
{
    int n = proto__varint_parse(bytes_cursor(r), bytes_left(r), out);
    if (n <= 0)
        return PROTO_EMALFORMED;
    r->pos += (size_t)n;
    return 0;
}

static inline int proto__read_bytes(struct bytes_reader *r, size_t n, struct proto_str *out)
{
    const uint8_t *p;
    int rc = bytes_read_view(r, n, &p);
    if (rc)
        return rc;
    out->p = p;
    out->len = (uint32_t)n;
    return 0;
}

/* Two-byte length, then that many bytes; on failure neither is consumed. */
static inline int proto__read_binary(struct bytes_reader *r, struct proto_str *out)
{
    struct bytes_reader t = *r;
    uint16_t n;
    const uint8_t *p;
    if (bytes_read_u16be(&t, &n) || bytes_read_view(&t, n, &p))
        return PROTO_EMALFORMED;
    *r = t;
    out->p = p;
    out->len = n;
    return 0;
}

/* A binary field that must also be valid MQTT UTF-8 (PROTO_EUTF8 if not). */
static inline int proto__read_string(struct bytes_reader *r, struct proto_str *out)
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
static inline int proto__wbuf_reserve(struct buf *w, size_t n)
{
    return buf_reserve(w, n) ? PROTO_ENOMEM : 0;
}

/* v must be <= PROTO_MAX_VARINT (checked when the size was computed). */
static inline void proto__put_varint(struct buf *w, uint32_t v)
{
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        if (v)
            b |= 0x80;
        buf_put_u8(w, b);
    } while (v);
}

/* Two-byte length prefix, then the bytes (len <= 65535, checked by the sizing). */
static inline void proto__put_binary(struct buf *w, struct proto_str s)
{
    buf_put_u16be(w, (uint16_t)s.len);
    buf_put_mem(w, s.p, s.len);
}

/* --- properties (props.c) -------------------------------------------------- */

/* Size of the property block body of props, or PROTO_ETOOLARGE (a string over
 * 65535 bytes, a sub id out of range) / PROTO_EMALFORMED (bad raw user
 * properties) as a negative value. */
int64_t proto__props_size(const struct proto_props *props);

/* Writes the body after proto__props_size() succeeded and its size was reserved. */
void proto__props_write(const struct proto_props *props, struct buf *w);

/* Reads a property length and block of a packet of the given type (0 = will). */
int proto__read_props(struct bytes_reader *r, uint8_t type, struct proto_props *out);

/* --- validation (validate.c) ----------------------------------------------- */

/* 0 if reason is a code a v5 packet of this type may carry (also v3 SUBACK /
 * CONNACK return codes when version < 5), PROTO_EPROTOCOL otherwise. */
int proto__reason_check(uint8_t type, uint8_t version, uint8_t reason);

#endif
