/* tunnel: TLS on a peer link. The owners of peer streams (libraft through our
 * raft_uv_transport, forward.c, link.c) read and write a plain uv_stream_t;
 * with cluster_certfile set, the stream they get is one end of a socketpair,
 * and the tunnel pumps between the other end and a TLS session (common/tls.h)
 * on the TCP socket. libraft reads and writes its stream itself, so this is
 * the one place where all three are encrypted alike.
 *
 * Happy path: the TLS handshake runs on the TCP socket (the acceptor requires
 * a client certificate chaining to cluster_cafile, the dialer checks the
 * acceptor's against the same CA; no host names: the CA is the cluster's
 * own); when it finished, the plaintext end goes to the peer handshake
 * (peer.c), which runs inside and hands the stream on to its owner. Bytes
 * read from the pair are encrypted and written to TCP, bytes read from TCP
 * are decrypted and written to the pair.
 * Backpressure: while one side's write queue holds more than
 * TUNNEL_MAX_QUEUED bytes the other side is not read, so a tunnel holds at
 * most that plus one read per direction, whatever the speed of either end.
 * Failure modes: a TLS error (a certificate that does not verify, a peer that
 * does not speak TLS), a read or write error or an EOF on either side close
 * both sides, which the owner sees as the end of its stream; while the peer
 * handshake is attached, the reason goes to it for its "peer rejected" line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "tls.h"

#define TUNNEL_MAX_QUEUED (1u << 20)

struct tunnel {
    struct cluster *c;
    uv_tcp_t *tcp;            /* the wire (raft_malloc'd, from peer.c) */
    uv_pipe_t pipe;           /* our end of the pair */
    uv_pipe_t *inner;         /* the owner's end (raft_malloc'd) until handed over */
    struct tls_conn tls;
    struct buf plain;         /* decrypted bytes of the current read */
    int refs;                 /* its own, tcp, pipe, inner until handed over, writes in flight */
    bool closing;
    bool finishing;           /* the peer ended: what it sent drains to the owner, then close */
    uv_shutdown_t shutdown;   /* of our end of the pair, when finishing */
    bool tcp_paused;          /* TCP not read: the pair's write queue is full */
    bool pipe_paused;         /* the pair not read: the TCP write queue is full */
    tunnel_cb cb;             /* while attached (peer.c) */
    void *arg;
    char where[192];
};

struct tunnel_write {
    uv_write_t req;
    struct tunnel *t;
    struct buf data;
};

static void tunnel_unref(struct tunnel *t)
{
    if (--t->refs == 0) {
        struct cluster *c = t->c;
        tls_conn_free(&t->tls);
        buf_free(&t->plain);
        free(t);
        cluster__handle_closed(c);
    }
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct tunnel *t = h->data;
    raft_free(h);
    tunnel_unref(t);
}

static void on_pipe_closed(uv_handle_t *h) { tunnel_unref(h->data); }

static void on_inner_closed(uv_handle_t *h)
{
    struct tunnel *t = h->data;
    raft_free(h);
    tunnel_unref(t);
}

/* Closes both sides once. why (NULL for an orderly end) goes to the attached
 * handshake, or to the log when it is a TLS failure of a running link. */
static void tunnel_close(struct tunnel *t, const char *why, bool tls_error)
{
    if (t->closing)
        return;
    t->closing = true;
    t->refs++;
    if (t->cb) {
        tunnel_cb cb = t->cb;
        t->cb = NULL;
        cb(t->arg, NULL, why ? why : "closed by the peer during the handshake");
    } else if (why && tls_error) {
        CLOG(t->c, CLUSTER_LOG_INFO, "cluster: TLS link with %s closed: %s", t->where, why);
    }
    if (t->tls.established) {
        /* a best-effort close_notify: the peer tells our end from a cut */
        tls_conn_shutdown(&t->tls);
        struct buf out;
        buf_init(&out);
        if (tls_conn_output(&t->tls, &out) == 0 && out.len) {
            uv_buf_t b = uv_buf_init((char *)out.data, (unsigned)out.len);
            uv_try_write((uv_stream_t *)t->tcp, &b, 1);
        }
        buf_free(&out);
    }
    uv_close((uv_handle_t *)t->tcp, on_tcp_closed);
    uv_close((uv_handle_t *)&t->pipe, on_pipe_closed);
    if (t->inner)
        uv_close((uv_handle_t *)t->inner, on_inner_closed);
    t->inner = NULL;
    t->refs--;       /* its own (the one taken above is still held) */
    tunnel_unref(t); /* the one taken above */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_pipe_shutdown(uv_shutdown_t *req, int status)
{
    struct tunnel *t = req->data;
    (void)status;
    tunnel_close(t, NULL, false);
    tunnel_unref(t);
}

/* The peer ended the stream (EOF, close_notify): what it sent before reaches
 * the owner, which then sees the end of its stream (as it would on TCP),
 * rather than being dropped with the queue. */
static void tunnel_finish(struct tunnel *t)
{
    if (t->closing || t->finishing)
        return;
    if (t->cb || t->pipe.write_queue_size == 0) {
        tunnel_close(t, NULL, false);
        return;
    }
    t->finishing = true;
    uv_read_stop((uv_stream_t *)t->tcp);
    t->shutdown.data = t;
    if (uv_shutdown(&t->shutdown, (uv_stream_t *)&t->pipe, on_pipe_shutdown) != 0) {
        tunnel_close(t, NULL, false);
        return;
    }
    t->refs++;
}

/* Reads again what was paused, once the queue it waited for has drained to
 * half the bound. */
static void resume(struct tunnel *t)
{
    if (t->tcp_paused && !t->finishing && t->pipe.write_queue_size <= TUNNEL_MAX_QUEUED / 2) {
        t->tcp_paused = false;
        CLOG(t->c, CLUSTER_LOG_DEBUG, "cluster: TLS link with %s: reading the peer again", t->where);
        if (uv_read_start((uv_stream_t *)t->tcp, on_alloc, on_tcp_read) != 0)
            tunnel_close(t, "cannot read", false);
    }
    if (!t->closing && t->pipe_paused && t->tcp->write_queue_size <= TUNNEL_MAX_QUEUED / 2) {
        t->pipe_paused = false;
        CLOG(t->c, CLUSTER_LOG_DEBUG, "cluster: TLS link with %s: the peer caught up, sending again", t->where);
        if (uv_read_start((uv_stream_t *)&t->pipe, on_alloc, on_pipe_read) != 0)
            tunnel_close(t, "cannot read", false);
    }
}

static void on_written(uv_write_t *req, int status)
{
    struct tunnel_write *w = container_of(req, struct tunnel_write, req);
    struct tunnel *t = w->t;
    buf_free(&w->data);
    free(w);
    if (status && !t->closing)
        tunnel_close(t, uv_strerror(status), false);
    if (!t->closing)
        resume(t);
    tunnel_unref(t);
}

/* Writes data (its memory taken over; data is left empty) to s. */
static int write_to(struct tunnel *t, uv_stream_t *s, struct buf *data)
{
    struct tunnel_write *w = malloc(sizeof(*w));
    if (!w) {
        buf_free(data);
        return UV_ENOMEM;
    }
    w->t = t;
    w->data = *data;
    buf_init(data);
    uv_buf_t b = uv_buf_init((char *)w->data.data, (unsigned)w->data.len);
    int rc = uv_write(&w->req, s, &b, 1, on_written);
    if (rc) {
        buf_free(&w->data);
        free(w);
        return rc;
    }
    t->refs++;
    return 0;
}

/* Sends what TLS has for the wire (handshake records, alerts, encrypted
 * data); stops reading the pair while TCP is behind. */
static int flush_wire(struct tunnel *t)
{
    if (!tls_conn_pending(&t->tls))
        return 0;
    struct buf out;
    buf_init(&out);
    int rc = tls_conn_output(&t->tls, &out);
    if (rc == 0)
        rc = write_to(t, (uv_stream_t *)t->tcp, &out);
    buf_free(&out);
    if (rc == 0 && !t->pipe_paused && t->tcp->write_queue_size > TUNNEL_MAX_QUEUED) {
        t->pipe_paused = true;
        uv_read_stop((uv_stream_t *)&t->pipe);
        CLOG(t->c, CLUSTER_LOG_DEBUG, "cluster: TLS link with %s: the peer is behind (%zu bytes queued), pausing",
             t->where, t->tcp->write_queue_size);
    }
    return rc;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tunnel *t = h->data;
    (void)suggested;
    buf->base = (char *)t->c->tunnel_rbuf;
    buf->len = CLUSTER_TUNNEL_READ;
}

/* The handshake finished: the plaintext end goes to the peer handshake. */
static void hand_over(struct tunnel *t)
{
    uv_pipe_t *inner = t->inner;
    t->inner = NULL;
    inner->data = NULL;
    t->refs--; /* not ours any more; ours is still held by the caller */
    char how[96];
    tls_conn_describe(&t->tls, how, sizeof(how));
    CLOG(t->c, CLUSTER_LOG_DEBUG, "cluster: TLS with %s: %s", t->where, how);
    if (t->cb)
        t->cb(t->arg, (uv_stream_t *)inner, NULL);
    else
        uv_close((uv_handle_t *)inner, cluster__close_free);
}

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct tunnel *t = s->data;
    if (n == UV_EOF) {
        tunnel_finish(t);
        return;
    }
    if (n < 0) {
        tunnel_close(t, uv_strerror((int)n), false);
        return;
    }
    if (n == 0)
        return;
    t->refs++; /* the callbacks below may close the tunnel */
    bool was = t->tls.established;
    int rc = tls_conn_input(&t->tls, (const uint8_t *)buf->base, (size_t)n, &t->plain);
    int wrc = flush_wire(t); /* the alert of a failure goes too */
    if (rc) {
        tunnel_close(t, t->tls.why, true);
    } else if (wrc) {
        tunnel_close(t, uv_strerror(wrc), false);
    } else {
        if (t->plain.len && (wrc = write_to(t, (uv_stream_t *)&t->pipe, &t->plain)) != 0)
            tunnel_close(t, uv_strerror(wrc), false);
        else if (!t->tcp_paused && t->pipe.write_queue_size > TUNNEL_MAX_QUEUED) {
            t->tcp_paused = true;
            uv_read_stop((uv_stream_t *)t->tcp);
            CLOG(t->c, CLUSTER_LOG_DEBUG, "cluster: TLS link with %s: this node is behind (%zu bytes queued), "
                 "not reading the peer", t->where, t->pipe.write_queue_size);
        }
        if (!t->closing && t->tls.peer_closed)
            tunnel_finish(t);
        else if (!t->closing && !was && t->tls.established)
            hand_over(t);
    }
    tunnel_unref(t);
}

static void on_pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct tunnel *t = s->data;
    if (n < 0) {
        tunnel_close(t, NULL, false); /* the owner closed its stream */
        return;
    }
    if (n == 0)
        return;
    int rc = tls_conn_write(&t->tls, (const uint8_t *)buf->base, (size_t)n);
    if (rc) {
        tunnel_close(t, rc == -EPROTO ? t->tls.why : "out of memory", rc == -EPROTO);
        return;
    }
    rc = flush_wire(t);
    if (rc)
        tunnel_close(t, uv_strerror(rc), false);
}

struct tunnel *cluster__tunnel_start(struct cluster *c, uv_tcp_t *tcp, bool server, const char *where, tunnel_cb cb,
                                     void *arg, int *rc)
{
    struct tunnel *t = calloc(1, sizeof(*t));
    int fds[2] = {-1, -1};
    if (!t || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        *rc = t ? -errno : UV_ENOMEM;
        free(t);
        uv_close((uv_handle_t *)tcp, cluster__close_free);
        return NULL;
    }
    t->c = c;
    t->refs = 1;
    c->open_handles++; /* until t is freed */
    snprintf(t->where, sizeof(t->where), "%s", where);
    t->tcp = tcp;
    tcp->data = t;
    t->refs++;
    uv_pipe_init(c->loop, &t->pipe, 0);
    t->pipe.data = t;
    t->refs++;
    t->inner = raft_malloc(sizeof(*t->inner));
    if (t->inner) {
        uv_pipe_init(c->loop, t->inner, 0);
        t->inner->data = t;
        t->refs++;
    }
    /* the pair's descriptors belong to the handles from here on */
    int r = uv_pipe_open(&t->pipe, fds[0]);
    if (r == 0)
        fds[0] = -1;
    if (r == 0 && t->inner && (r = uv_pipe_open(t->inner, fds[1])) == 0)
        fds[1] = -1;
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    if (!t->inner)
        r = UV_ENOMEM;
    if (r == 0)
        r = tls_conn_init(&t->tls, server ? c->tls_server : c->tls_client, NULL);
    if (r == 0 && !server)
        r = tls_conn_connect(&t->tls);
    if (r == 0)
        r = flush_wire(t);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)tcp, on_alloc, on_tcp_read);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&t->pipe, on_alloc, on_pipe_read);
    if (r) {
        *rc = r;
        tunnel_close(t, NULL, false); /* not attached yet: no callback */
        return NULL;
    }
    t->cb = cb;
    t->arg = arg;
    return t;
}

void cluster__tunnel_detach(struct tunnel *t)
{
    t->cb = NULL;
    if (t->inner)
        tunnel_close(t, NULL, false); /* the handshake never finished */
}
