/* forward: proposals made on a follower travel to the leader over an
 * authenticated FORWARD link (peer.c) and are appended there unchanged.
 *
 * Happy path: a follower keeps one link to the leader it knows; a batch is
 * written as a PROPOSE frame (the whole log entry); the leader appends it with
 * raft_apply; the follower learns of the commit when it applies the entry
 * itself and finds its own origin and batch sequence in the entry header
 * (cluster.c), so no answer is needed on success.
 * Failure modes: the leader cannot append (not the leader any more, no
 * memory): it answers REFUSED and the follower fails the batch at once; the
 * link breaks or the leader changes: every batch sent on it fails (the entry
 * may still commit: indeterminate, like a timeout); no answer at all: the
 * batch's commit timeout fails it. Batches are never resent, so a command
 * cannot be applied twice. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct fwd_conn {
    struct fwd_conn *next, *prev; /* in c->fwd_in (incoming links) */
    struct cluster *c;
    uv_stream_t *stream;          /* raft_malloc'd, freed in the close callback */
    uint32_t node;
    bool outgoing;
    bool closed;
    int refs;                     /* the stream, and leader-side appends in flight */
    uint8_t *rbuf;
    size_t rlen, rcap;
};

struct fwd_write {
    uv_write_t req;
    size_t len;
    uint8_t data[];
};

struct fwd_append {
    struct raft_apply req;
    struct fwd_conn *conn;
    uint64_t seq;
};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static void conn_unref(struct fwd_conn *fc)
{
    if (--fc->refs == 0) {
        struct cluster *c = fc->c;
        free(fc->rbuf);
        free(fc);
        cluster__handle_closed(c);
    }
}

static void on_stream_closed(uv_handle_t *h)
{
    struct fwd_conn *fc = h->data;
    raft_free(h);
    conn_unref(fc);
}

static void conn_close(struct fwd_conn *fc, const char *why)
{
    if (fc->closed)
        return;
    fc->closed = true;
    struct cluster *c = fc->c;
    if (fc->outgoing) {
        if (c->fwd_out == fc)
            c->fwd_out = NULL;
        if (why)
            CLOG(c, CLUSTER_LOG_INFO, "cluster: link to leader node %u closed: %s", fc->node, why);
        /* what was sent on this link is now indeterminate: fail it */
        for (struct batch *bt = c->pending, *next; bt; bt = next) {
            next = bt->next;
            if (bt->state == BATCH_FORWARDED && bt->link == fc)
                cluster__batch_finish(c, bt, CLUSTER_EUNAVAILABLE, NULL);
        }
    } else {
        if (fc->prev)
            fc->prev->next = fc->next;
        else
            c->fwd_in = fc->next;
        if (fc->next)
            fc->next->prev = fc->prev;
    }
    uv_close((uv_handle_t *)fc->stream, on_stream_closed);
}

static void on_written(uv_write_t *req, int status)
{
    struct fwd_write *w = container_of(req, struct fwd_write, req);
    struct fwd_conn *fc = req->data;
    if (status && !fc->closed)
        conn_close(fc, uv_strerror(status));
    free(w);
    conn_unref(fc);
}

/* Writes one frame: type, then head (borrowed) and body (borrowed). */
static int send_frame(struct fwd_conn *fc, uint8_t type, const void *head, size_t head_len, const void *body,
                      size_t body_len)
{
    if (fc->closed)
        return -EPIPE;
    size_t len = 1 + head_len + body_len;
    if (len > FWD_MAX_FRAME)
        return -E2BIG;
    struct fwd_write *w = malloc(sizeof(*w) + 4 + len);
    if (!w)
        return -ENOMEM;
    put_u32(w->data, (uint32_t)len);
    w->data[4] = type;
    memcpy(w->data + 5, head, head_len);
    if (body_len)
        memcpy(w->data + 5 + head_len, body, body_len);
    w->len = 4 + len;
    w->req.data = fc;
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, fc->stream, &b, 1, on_written);
    if (rc) {
        free(w);
        conn_close(fc, uv_strerror(rc));
        return rc;
    }
    fc->refs++;
    return 0;
}

/* --- leader side ---------------------------------------------------------------- */

static void refuse(struct fwd_conn *fc, uint64_t seq, int reason)
{
    uint8_t head[12];
    put_u64(head, seq);
    put_u32(head + 8, (uint32_t)reason);
    send_frame(fc, FWD_REFUSED, head, sizeof(head), NULL, 0);
}

static void on_appended(struct raft_apply *req, int status, void *result)
{
    struct fwd_append *a = container_of(req, struct fwd_append, req);
    (void)result;
    if (status == 0)
        cluster__push_commit(a->conn->c);
    if (status != 0 && !a->conn->closed)
        refuse(a->conn, a->seq, status);
    conn_unref(a->conn);
    free(a);
}

static void on_propose(struct fwd_conn *fc, const uint8_t *body, size_t len)
{
    struct cluster *c = fc->c;
    if (len < 8 + CLUSTER_ENTRY_HEADER || (len - 8) % 8 != 0) {
        conn_close(fc, "malformed PROPOSE");
        return;
    }
    uint64_t seq = get_u64(body);
    if (get_u32(body + 8) != CLUSTER_ENTRY_MAGIC || get_u32(body + 8 + 8) != fc->node) {
        conn_close(fc, "PROPOSE with a foreign entry");
        return;
    }
    struct fwd_append *a = malloc(sizeof(*a));
    struct raft_buffer buf = {raft_malloc(len - 8), len - 8};
    if (!a || !buf.base) {
        free(a);
        raft_free(buf.base);
        refuse(fc, seq, RAFT_NOMEM);
        return;
    }
    memcpy(buf.base, body + 8, len - 8);
    a->conn = fc;
    a->seq = seq;
    int rc = raft_apply(&c->raft, &a->req, &buf, 1, on_appended);
    if (rc) {
        raft_free(buf.base);
        free(a);
        refuse(fc, seq, rc);
        return;
    }
    fc->refs++;
}

/* --- follower side ------------------------------------------------------------- */

static void on_refused(struct fwd_conn *fc, const uint8_t *body, size_t len)
{
    struct cluster *c = fc->c;
    if (len != 12) {
        conn_close(fc, "malformed REFUSED");
        return;
    }
    uint64_t seq = get_u64(body);
    int reason = (int)get_u32(body + 8);
    for (struct batch *bt = c->pending; bt; bt = bt->next)
        if (bt->seq == seq && bt->state == BATCH_FORWARDED) {
            CLOG(c, CLUSTER_LOG_DEBUG, "cluster: leader refused batch %llu: %s", (unsigned long long)seq,
                 raft_strerror(reason));
            cluster__batch_finish(c, bt, CLUSTER_EUNAVAILABLE, NULL);
            return;
        }
}

/* --- both sides: reading frames --------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct fwd_conn *fc = h->data;
    (void)suggested;
    if (fc->rcap - fc->rlen < 65536) {
        size_t cap = fc->rcap ? fc->rcap * 2 : 131072;
        uint8_t *p = realloc(fc->rbuf, cap);
        if (!p) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        fc->rbuf = p;
        fc->rcap = cap;
    }
    buf->base = (char *)fc->rbuf + fc->rlen;
    buf->len = fc->rcap - fc->rlen;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fwd_conn *fc = s->data;
    (void)buf;
    if (n < 0) {
        conn_close(fc, n == UV_EOF ? "closed by the peer" : uv_strerror((int)n));
        return;
    }
    if (n == 0 && !buf->base) {
        conn_close(fc, "out of memory");
        return;
    }
    fc->rlen += (size_t)n;
    size_t pos = 0;
    fc->refs++; /* a handler may close the link */
    while (!fc->closed && fc->rlen - pos >= 4) {
        uint32_t len = get_u32(fc->rbuf + pos);
        if (len == 0 || len > FWD_MAX_FRAME) {
            conn_close(fc, "frame too large");
            break;
        }
        if (fc->rlen - pos - 4 < len)
            break;
        const uint8_t *frame = fc->rbuf + pos + 4;
        pos += 4 + (size_t)len;
        if (frame[0] == FWD_PROPOSE && !fc->outgoing)
            on_propose(fc, frame + 1, len - 1);
        else if (frame[0] == FWD_REFUSED && fc->outgoing)
            on_refused(fc, frame + 1, len - 1);
        else
            conn_close(fc, "unexpected frame");
    }
    if (!fc->closed && pos) {
        memmove(fc->rbuf, fc->rbuf + pos, fc->rlen - pos);
        fc->rlen -= pos;
    }
    conn_unref(fc);
}

static struct fwd_conn *conn_new(struct cluster *c, uv_stream_t *stream, uint32_t node, bool outgoing)
{
    struct fwd_conn *fc = calloc(1, sizeof(*fc));
    if (!fc) {
        uv_close((uv_handle_t *)stream, cluster__close_free);
        return NULL;
    }
    fc->c = c;
    fc->stream = stream;
    fc->node = node;
    fc->outgoing = outgoing;
    fc->refs = 1;
    stream->data = fc;
    c->open_handles++;
    if (!outgoing) {
        fc->next = c->fwd_in;
        if (fc->next)
            fc->next->prev = fc;
        c->fwd_in = fc;
    }
    if (uv_read_start(stream, on_alloc, on_read) != 0) {
        conn_close(fc, "cannot read");
        return NULL;
    }
    return fc;
}

void cluster__forward_accept(struct cluster *c, uint32_t node_id, uv_stream_t *stream)
{
    conn_new(c, stream, node_id, false);
}

static void on_dialed(void *arg, uv_stream_t *stream, int status)
{
    struct cluster *c = arg;
    uint32_t node = c->fwd_out_node;
    c->fwd_dialing = NULL;
    if (status) {
        CLOG(c, CLUSTER_LOG_DEBUG, "cluster: cannot reach leader node %u: %s", node, uv_strerror(status));
        return;
    }
    if (c->closing) {
        uv_close((uv_handle_t *)stream, cluster__close_free);
        return;
    }
    struct fwd_conn *fc = conn_new(c, stream, node, true);
    if (!fc)
        return;
    c->fwd_out = fc;
    CLOG(c, CLUSTER_LOG_DEBUG, "cluster: forwarding proposals to leader node %u", node);
    cluster__batches_kick(c);
}

void cluster__forward_tick(struct cluster *c)
{
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(&c->raft, &leader, &address);
    if (c->fwd_out && (leader != c->fwd_out->node || leader == c->cfg.node_id))
        conn_close(c->fwd_out, "the leader changed");
    if (c->fwd_dialing && leader != c->fwd_out_node) {
        cluster__peer_cancel(c->fwd_dialing);
        c->fwd_dialing = NULL;
    }
    if (!leader || leader == c->cfg.node_id || c->fwd_out || c->fwd_dialing || !address)
        return;
    c->fwd_out_node = (uint32_t)leader;
    c->fwd_dialing = cluster__peer_dial(c, address, PEER_CH_FORWARD, on_dialed, c);
}

int cluster__forward_send(struct cluster *c, struct batch *bt)
{
    struct fwd_conn *fc = c->fwd_out;
    if (!fc || fc->closed)
        return -EAGAIN;
    uint8_t head[8];
    put_u64(head, bt->seq);
    int rc = send_frame(fc, FWD_PROPOSE, head, sizeof(head), bt->entry, bt->entry_len);
    if (rc)
        return rc;
    bt->state = BATCH_FORWARDED;
    bt->link = fc;
    raft_free(bt->entry);
    bt->entry = NULL;
    return 0;
}

void cluster__forward_close_all(struct cluster *c)
{
    if (c->fwd_dialing) {
        cluster__peer_cancel(c->fwd_dialing);
        c->fwd_dialing = NULL;
    }
    if (c->fwd_out)
        conn_close(c->fwd_out, NULL);
    while (c->fwd_in)
        conn_close(c->fwd_in, NULL);
}
