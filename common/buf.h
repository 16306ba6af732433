/* buf: the one growable byte buffer (encoders' output, connections' read and
 * write backlogs, command batches).
 *
 * Zero-initialise a struct buf (or call buf_init); it owns data, released with
 * buf_free. Writers reserve first (buf_reserve: room for n more bytes, or
 * -ENOMEM with the buffer unchanged), then append with the unchecked
 * buf_put_* below, or use the checked buf_append. */
#ifndef STARLING_COMMON_BUF_H
#define STARLING_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "bytes.h"

struct buf {
    uint8_t *data; /* owned; NULL while cap is 0 */
    size_t len;    /* bytes in use */
    size_t cap;    /* bytes allocated */
};

static inline void buf_init(struct buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Releases data and empties b (it may be reused). */
void buf_free(struct buf *b);

/* Makes room for n more bytes beyond len (capacity at least doubles, from 64).
 * 0, or -ENOMEM with b unchanged (also when len + n would overflow). */
int buf_reserve(struct buf *b, size_t n);

/* Reserves and copies n bytes of p (p may be NULL when n is 0). */
int buf_append(struct buf *b, const void *p, size_t n);

/* Drops the first n bytes (n <= len), moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

/* Frees the allocation when it is larger than keep bytes and b is empty: a
 * buffer that once held a large packet does not hold its memory for ever. */
void buf_shrink(struct buf *b, size_t keep);

static inline uint8_t *buf_tail(struct buf *b)
{
    return b->data + b->len;
}

static inline size_t buf_room(const struct buf *b)
{
    return b->cap - b->len;
}

/* --- unchecked appends, after buf_reserve --------------------------------- */

static inline void buf_put_u8(struct buf *b, uint8_t v)
{
    b->data[b->len++] = v;
}

static inline void buf_put_mem(struct buf *b, const void *p, size_t n)
{
    bytes_put_mem(b->data + b->len, p, n);
    b->len += n;
}

#define BUF__PUT(name, type, n)                                                                    \
    static inline void buf_put_##name(struct buf *b, type v)                                       \
    {                                                                                              \
        bytes_put_##name(b->data + b->len, v);                                                     \
        b->len += (n);                                                                             \
    }
BUF__PUT(u16le, uint16_t, 2)
BUF__PUT(u32le, uint32_t, 4)
BUF__PUT(u64le, uint64_t, 8)
BUF__PUT(u16be, uint16_t, 2)
BUF__PUT(u32be, uint32_t, 4)
BUF__PUT(u64be, uint64_t, 8)
#undef BUF__PUT

#endif
