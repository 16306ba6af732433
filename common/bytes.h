/* bytes: the one bounds-checked reader of untrusted bytes and the unchecked
 * fixed-width writers and getters, little- and big-endian, used by every codec
 * (proto's MQTT framing, store's records, cluster's commands, frames and
 * handshakes, broker's forwarded publishes).
 *
 * Reading: struct bytes_reader is a cursor (buf, len, pos) with pos <= len as
 * an invariant. Every read checks n > len - pos (which cannot overflow), and on
 * failure leaves its output and the cursor untouched and returns the error code
 * the reader was initialised with, so each module keeps its own error codes
 * (PROTO_EMALFORMED, STORE_ECORRUPT, -EBADMSG) without wrapping each read.
 *
 * Writing: bytes_put_* write at p and return p advanced; they run after the
 * caller has checked or reserved the exact size. bytes_get_* read at p from
 * bytes the caller has already checked are there. */
#ifndef STARLING_COMMON_BYTES_H
#define STARLING_COMMON_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* --- unchecked getters ---------------------------------------------------- */

static inline uint16_t bytes_get_u16le(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t bytes_get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t bytes_get_u64le(const uint8_t *p)
{
    return bytes_get_u32le(p) | ((uint64_t)bytes_get_u32le(p + 4) << 32);
}

static inline uint16_t bytes_get_u16be(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t bytes_get_u32be(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t bytes_get_u64be(const uint8_t *p)
{
    return ((uint64_t)bytes_get_u32be(p) << 32) | bytes_get_u32be(p + 4);
}

/* --- unchecked writers ---------------------------------------------------- */

static inline uint8_t *bytes_put_u8(uint8_t *p, uint8_t v)
{
    p[0] = v;
    return p + 1;
}

static inline uint8_t *bytes_put_u16le(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static inline uint8_t *bytes_put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static inline uint8_t *bytes_put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

static inline uint8_t *bytes_put_u16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static inline uint8_t *bytes_put_u32be(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
    return p + 4;
}

static inline uint8_t *bytes_put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
    return p + 8;
}

/* n bytes of src (which may be NULL when n is 0). */
static inline uint8_t *bytes_put_mem(uint8_t *p, const void *src, size_t n)
{
    if (n)
        memcpy(p, src, n);
    return p + n;
}

/* --- bounds-checked reader ------------------------------------------------ */

struct bytes_reader {
    const uint8_t *buf; /* borrowed: must outlive the reader and every view it gave */
    size_t len;
    size_t pos;         /* invariant: pos <= len */
    int err;            /* returned by every read that runs out of bytes (negative) */
};

/* The error of a short read. err is negative by contract (bytes_reader_init);
 * telling the compiler so lets it see that a failed read's output is never used. */
static inline int bytes__short(const struct bytes_reader *r)
{
    if (r->err >= 0)
        __builtin_unreachable();
    return r->err;
}

/* err is what a short read returns: the module's own "malformed" code. */
static inline void bytes_reader_init(struct bytes_reader *r, const void *buf, size_t len, int err)
{
    r->buf = buf;
    r->len = len;
    r->pos = 0;
    r->err = err;
}

static inline size_t bytes_left(const struct bytes_reader *r)
{
    return r->len - r->pos;
}

/* The bytes not read yet (a view, not consumed). */
static inline const uint8_t *bytes_cursor(const struct bytes_reader *r)
{
    return r->buf + r->pos;
}

static inline int bytes_need(const struct bytes_reader *r, size_t n)
{
    return n > r->len - r->pos ? bytes__short(r) : 0;
}

static inline int bytes_skip(struct bytes_reader *r, size_t n)
{
    if (n > r->len - r->pos)
        return bytes__short(r);
    r->pos += n;
    return 0;
}

/* A view of the next n bytes in *out (into buf), consumed. */
static inline int bytes_read_view(struct bytes_reader *r, size_t n, const uint8_t **out)
{
    if (n > r->len - r->pos)
        return bytes__short(r);
    *out = r->buf + r->pos;
    r->pos += n;
    return 0;
}

/* Copies the next n bytes to dst. */
static inline int bytes_read_mem(struct bytes_reader *r, void *dst, size_t n)
{
    if (n > r->len - r->pos)
        return bytes__short(r);
    if (n)
        memcpy(dst, r->buf + r->pos, n);
    r->pos += n;
    return 0;
}

static inline int bytes_read_u8(struct bytes_reader *r, uint8_t *out)
{
    if (1 > r->len - r->pos)
        return bytes__short(r);
    *out = r->buf[r->pos++];
    return 0;
}

/* One checked fixed-width read per width and byte order. */
#define BYTES__READ(name, type, n, get)                                                            \
    static inline int bytes_read_##name(struct bytes_reader *r, type *out)                         \
    {                                                                                              \
        if ((n) > r->len - r->pos)                                                                 \
            return bytes__short(r);                                                                         \
        *out = get(r->buf + r->pos);                                                               \
        r->pos += (n);                                                                             \
        return 0;                                                                                  \
    }
BYTES__READ(u16le, uint16_t, 2, bytes_get_u16le)
BYTES__READ(u32le, uint32_t, 4, bytes_get_u32le)
BYTES__READ(u64le, uint64_t, 8, bytes_get_u64le)
BYTES__READ(u16be, uint16_t, 2, bytes_get_u16be)
BYTES__READ(u32be, uint32_t, 4, bytes_get_u32be)
BYTES__READ(u64be, uint64_t, 8, bytes_get_u64be)
#undef BYTES__READ

#endif
