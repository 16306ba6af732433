/* frame: length-prefixed frames on an authenticated peer stream, shared by
 * the proposal forwarder (forward.c) and the data links (link.c).
 *
 * A frame is u32 length (of what follows, little-endian), u8 type, body. A
 * length of 0 or above FWD_MAX_FRAME closes the stream before anything is
 * allocated for it. The owner embeds struct frames, sets on_frame, on_close
 * and on_free, and calls cluster__frames_start; on_close runs once when the
 * stream starts closing (a read or write error, the peer's EOF, or the owner's
 * cluster__frames_close), on_free once the last reference is gone (the stream
 * closed and every write completed).
 *
 * A stream of NULL (cluster__peer_feed, for the fuzzer) is a connection with
 * no socket: cluster__frames_feed hands it the bytes a read would, writes
 * complete at once and are dropped, and closing it closes no handle. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

struct frame_write {
    uv_write_t req;
    struct frames *f;
    void (*done)(void *arg);
    void *arg;
    uint8_t data[];           /* the copied frame (cluster__frames_send) */
};

void cluster__frames_unref(struct frames *f)
{
    if (--f->refs == 0)
        f->on_free(f);
}

static void on_stream_closed(uv_handle_t *h)
{
    struct frames *f = h->data;
    raft_free(h);
    f->stream = NULL;
    cluster__frames_unref(f);
}

void cluster__frames_close(struct frames *f, const char *why)
{
    if (f->closed)
        return;
    f->closed = true;
    f->refs++;
    if (f->on_close)
        f->on_close(f, why);
    if (f->stream)
        uv_close((uv_handle_t *)f->stream, on_stream_closed);
    else
        cluster__frames_unref(f); /* the stream's reference: no handle to wait for */
    cluster__frames_unref(f);
}

static void on_written(uv_write_t *req, int status)
{
    struct frame_write *w = container_of(req, struct frame_write, req);
    struct frames *f = w->f;
    if (status && !f->closed)
        cluster__frames_close(f, uv_strerror(status));
    if (w->done)
        w->done(w->arg);
    free(w);
    cluster__frames_unref(f);
}

/* Hands w (its done fields set) to libuv; on failure frees it and closes f. */
static int submit(struct frames *f, struct frame_write *w, const uv_buf_t *bufs, unsigned n)
{
    w->f = f;
    if (!f->stream) {
        f->refs++;
        on_written(&w->req, 0); /* no socket: written (and dropped) now */
        return 0;
    }
    int rc = uv_write(&w->req, f->stream, bufs, n, on_written);
    if (rc) {
        free(w);
        cluster__frames_close(f, uv_strerror(rc));
        return rc;
    }
    f->refs++;
    return 0;
}

int cluster__frames_write(struct frames *f, const uv_buf_t *bufs, unsigned n, void (*done)(void *arg), void *arg)
{
    if (f->closed)
        return -EPIPE;
    struct frame_write *w = malloc(sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->done = done;
    w->arg = arg;
    return submit(f, w, bufs, n);
}

int cluster__frames_send(struct frames *f, uint8_t type, const void *head, size_t head_len, const void *body,
                         size_t body_len)
{
    if (f->closed)
        return -EPIPE;
    size_t len = 1 + head_len + body_len;
    if (len > FWD_MAX_FRAME)
        return -E2BIG;
    struct frame_write *w = malloc(sizeof(*w) + 4 + len);
    if (!w)
        return -ENOMEM;
    w->done = NULL;
    uint8_t *p = bytes_put_u32le(w->data, (uint32_t)len);
    p = bytes_put_u8(p, type);
    p = bytes_put_mem(p, head, head_len);
    bytes_put_mem(p, body, body_len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)(4 + len));
    return submit(f, w, &b, 1);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct frames *f = h->data;
    (void)suggested;
    if (buf_room(&f->rbuf) < 65536 && buf_reserve(&f->rbuf, 131072) != 0) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = (char *)buf_tail(&f->rbuf);
    buf->len = buf_room(&f->rbuf);
}

/* Hands up every whole frame in rbuf. */
static void frames_input(struct frames *f)
{
    size_t pos = 0;
    f->refs++; /* a handler may close the stream */
    while (!f->closed && f->rbuf.len - pos >= 4) {
        uint32_t len = bytes_get_u32le(f->rbuf.data + pos);
        if (len == 0 || len > FWD_MAX_FRAME) {
            cluster__frames_close(f, "frame too large");
            break;
        }
        if (f->rbuf.len - pos - 4 < len)
            break;
        const uint8_t *frame = f->rbuf.data + pos + 4;
        pos += 4 + (size_t)len;
        f->on_frame(f, frame[0], frame + 1, len - 1);
    }
    if (!f->closed && pos)
        buf_consume(&f->rbuf, pos);
    if (!f->closed && f->on_batch_end)
        f->on_batch_end(f);
    cluster__frames_unref(f);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct frames *f = s->data;
    if (n < 0) {
        cluster__frames_close(f, n == UV_EOF ? "closed by the peer" : uv_strerror((int)n));
        return;
    }
    if (n == 0 && !buf->base) {
        cluster__frames_close(f, "out of memory");
        return;
    }
    f->rbuf.len += (size_t)n;
    frames_input(f);
}

int cluster__frames_start(struct frames *f, uv_stream_t *stream)
{
    f->stream = stream;
    f->refs = 1;
    f->closed = false;
    if (!stream)
        return 0; /* bytes come from cluster__frames_feed */
    stream->data = f;
    if (uv_read_start(stream, on_alloc, on_read) != 0) {
        cluster__frames_close(f, "cannot read");
        return -EIO;
    }
    return 0;
}

void cluster__frames_feed(struct frames *f, const uint8_t *data, size_t len)
{
    if (f->closed)
        return;
    if (buf_append(&f->rbuf, data, len) != 0) {
        cluster__frames_close(f, "out of memory");
        return;
    }
    frames_input(f);
}

void cluster__frames_free(struct frames *f, void *owner, struct cluster *c)
{
    buf_free(&f->rbuf);
    free(owner);
    cluster__handle_closed(c);
}
