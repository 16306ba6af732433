/* buf: the growable byte buffer's allocating half (see buf.h). */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void buf_free(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

int buf_reserve(struct buf *b, size_t n)
{
    if (n <= b->cap - b->len)
        return 0;
    if (n > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    size_t need = b->len + n;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return -ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0; /* b->data may be NULL: NULL + 0 is undefined (an empty header value) */
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    buf_put_mem(b, p, n);
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n == 0)
        return;
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void buf_shrink(struct buf *b, size_t keep)
{
    if (b->len == 0 && b->cap > keep)
        buf_free(b);
}
