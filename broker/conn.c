/* conn: one client connection: accept, read and frame packets, dispatch them,
 * buffer and flush writes, keep alive, close.
 *
 * Happy path: accept -> read -> proto_frame/proto_decode -> handler; handlers
 * append encoded packets to conn.out and the connection is flushed once per loop
 * turn (broker.flush prepare handle, before the loop polls), so a burst of packets costs one write.
 * A handler that must wait for a commit (CONNECT, SUBSCRIBE, a retained PUBLISH)
 * pauses the connection: later packets stay in rbuf, unprocessed, so a client's
 * packets take effect in the order it sent them; broker__conn_resume continues.
 * Failure modes: a framing or decoding error closes the connection (after a v5
 * DISCONNECT with the reason code); out of memory closes only this connection;
 * a packet that does not arrive whole within packet_timeout of its first byte
 * (a CONNECT, and an enhanced-authentication exchange after it (CONN_AUTH,
 * enhanced.c), within connect_timeout of the accept) closes it, and so does a
 * read that takes the node's bytes of incomplete packets above
 * max_partial_bytes (partial_update);
 * the struct is freed only when its handles are closed and no proposal or
 * deferred work still holds it (conn.pending).
 * Memory of an idle connection: the struct, its socket handle and nothing
 * else; reads go into the broker's shared chunk (rbuf only holds a partial
 * packet), small write buffers are freed once written, keep alive and the
 * CONNECT timeout are entries in the broker's timer wheel, and a libuv timer
 * (conn.timer) and the shutdown request exist only while closing (linger) or
 * while a refusal is delayed.
 * A tls (ws, wss) listener's connection has a transport (conn.tr): what is
 * read goes through transport_input into rbuf, conn.out through
 * transport_output into conn.wire, which is what goes to the socket; the
 * handshake is bounded by connect_timeout like the CONNECT it precedes. A
 * transport failure is logged in one line ("tls: <why>") and closes the
 * connection after the alert the filter queued. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "transport.h"

#define PAUSED_READ_LIMIT (1u << 20) /* stop reading a paused client beyond this */
#define CONN_EARLY_FLUSH (64u * 1024)  /* write at once beyond this many bytes */
#define CONN_LINGER_MS 2000           /* longest wait for a peer to close after us */
#define CONN_OUT_SMALL 4096           /* write buffers up to this size are freed once written */
#define CONN_OUT_KEEP (64u * 1024)    /* larger ones than this too (a burst's) */

static void process(struct conn *c);

/* --- lifetime -------------------------------------------------------------- */

static void maybe_free(struct conn *c)
{
    /* pending counts proposals in flight plus the two handles until closed */
    if (c->pending > 0)
        return;
    struct broker *b = c->b;
    buf_free(&c->rbuf);
    buf_free(&c->out);
    buf_free(&c->wire);
    transport_free(c->tr);
    if (c->in_alias) {
        for (uint32_t i = 0; i <= b->cfg.topic_alias_maximum; i++)
            free(c->in_alias[i]);
        free(c->in_alias);
    }
    if (c->busy) {
        size_t pos = 0;
        struct map_slot *s;
        while ((s = map_next(&c->busy->out_alias, &pos)))
            free((char *)s->key);
        map_free(&c->busy->out_alias);
        free(c->busy);
    }
    broker__enhanced_free(c);
    auth_who_free(&c->who);
    free(c->client_id);
    free(c->username);
    free(c);
}

struct conn_busy *broker__conn_busy(struct conn *c)
{
    if (c->busy)
        return c->busy;
    struct conn_busy *cb = calloc(1, sizeof(*cb));
    if (!cb)
        return NULL;
    cb->conn = c;
    list_init(&cb->held_link);
    list_init(&cb->held_pubs);
    list_init(&cb->congested_link);
    list_init(&cb->partial_link);
    list_init(&cb->barrier_link);
    map_init(&cb->out_alias);
    c->busy = cb;
    return cb;
}

void broker__conn_hold(struct conn *c) { c->pending++; }

void broker__conn_release(struct conn *c)
{
    c->pending--;
    maybe_free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    free(h);
    broker__conn_release(c);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->b->fds.sockets--;
    broker__conn_release(c);
}

static void final_close(struct conn *c)
{
    if (c->handles_closed)
        return;
    c->handles_closed = true;
    broker__keepalive_stop(c);
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    if (c->timer)
        uv_close((uv_handle_t *)c->timer, on_timer_closed);
}

uv_timer_t *broker__conn_timer(struct conn *c)
{
    if (c->timer)
        return c->timer;
    if (c->handles_closed)
        return NULL;
    uv_timer_t *t = malloc(sizeof(*t));
    if (!t)
        return NULL;
    uv_timer_init(c->b->loop, t);
    t->data = c;
    c->timer = t;
    c->pending++; /* the handle, until closed */
    return t;
}

/* --- incomplete packets ---------------------------------------------------- */

/* Keeps broker.partials (connections whose rbuf holds the start of a packet
 * the client has not finished sending, oldest first) and broker.partial_bytes
 * (their rbuf allocations) up to date after rbuf changed. progress: a packet
 * was completed, so what remains began now. A connection paused by us is not
 * waiting for its client and is left out. Returns false when the read took
 * the node above max_partial_bytes and the connection was closed. */
static bool partial_update(struct conn *c, bool progress)
{
    struct broker *b = c->b;
    bool waiting = c->state != CONN_CLOSING && c->state != CONN_CLAIMING && !c->paused && c->rbuf.len;
    struct conn_busy *cb = c->busy;
    if (cb && cb->partial_since) {
        b->partial_bytes -= cb->partial_held;
        cb->partial_held = 0;
        if (!waiting || progress) {
            list_remove(&cb->partial_link);
            cb->partial_since = 0;
        }
    }
    if (!waiting)
        return true;
    if (!cb && !(cb = broker__conn_busy(c))) {
        LOG(b, LOG_WARN, c, "out of memory for an incomplete packet: closing (%zu bytes)", c->rbuf.len);
        broker__conn_close(c, PROTO_RC_SERVER_BUSY);
        return false;
    }
    if (!cb->partial_since) {
        cb->partial_since = broker__now(b);
        list_push_back(&b->partials, &cb->partial_link);
    }
    cb->partial_held = c->rbuf.cap;
    b->partial_bytes += cb->partial_held;
    if (b->cfg.max_partial_bytes && b->partial_bytes > b->cfg.max_partial_bytes) {
        LOG(b, LOG_WARN, c, "incomplete packets hold more than max_partial_bytes (%u) on this node: closing this one "
            "(%zu bytes)", b->cfg.max_partial_bytes, c->rbuf.len);
        b->stats.partial_closed++;
        broker__conn_close(c, PROTO_RC_QUOTA_EXCEEDED);
        return false;
    }
    return true;
}

/* The 1 s tick: connections whose packet has been arriving for longer than
 * packet_timeout are closed (oldest first; the list is in that order). */
void broker__partials_tick(struct broker *b)
{
    uint64_t limit = (uint64_t)b->cfg.packet_timeout * 1000, now = broker__now(b);
    while (!list_empty(&b->partials)) {
        struct conn_busy *cb = list_entry(list_first(&b->partials), struct conn_busy, partial_link);
        struct conn *c = cb->conn;
        if (now - cb->partial_since < limit)
            return;
        LOG(b, LOG_INFO, c, "packet incomplete after %u s (%zu bytes): closing", b->cfg.packet_timeout,
            c->rbuf.len);
        b->stats.partial_closed++;
        broker__conn_close(c, PROTO_RC_KEEP_ALIVE_TIMEOUT); /* leaves the list */
    }
}

static void on_linger_end(uv_timer_t *t) { final_close(t->data); }

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    free(req); /* allocated by the close: an open connection has none */
    if (status < 0)
        final_close(c);
    /* otherwise keep reading (and discarding) until the peer closes or the
     * linger timer fires */
    broker__conn_release(c);
}

static void read_start(struct conn *c);
static int write_out(struct conn *c);

/* An emptied write buffer: a small one (a CONNACK, a PINGRESP: what an idle
 * connection last wrote) is freed, cheap to get again; one between
 * CONN_OUT_SMALL and CONN_OUT_KEEP stays for the next burst of a busy
 * connection until the keep-alive timer finds it idle (conn_idle_trim). */
static void out_drained(struct buf *w)
{
    if (w->cap <= CONN_OUT_SMALL || w->cap > CONN_OUT_KEEP)
        buf_free(w);
}

/* Bytes gathered for the socket and not yet handed to libuv. */
static size_t unsent(const struct conn *c) { return c->out.len + c->wire.len; }

/* The keep-alive timer's visit: empty write buffers kept for bursts go back. */
static void conn_idle_trim(struct conn *c)
{
    if (!c->out.len)
        buf_free(&c->out);
    if (!c->wire.len)
        buf_free(&c->wire);
}

/* A transport's connection: conn.out (MQTT bytes) through the transport into
 * conn.wire. 0, or negative after logging why (the connection is to close). */
static int tr_encode(struct conn *c)
{
    if (!c->out.len)
        return 0;
    int rc = transport_output(c->tr, c->out.data, c->out.len, &c->wire);
    c->out.len = 0;
    out_drained(&c->out);
    if (rc)
        LOG(c->b, LOG_INFO, c, "%s", transport_why(c->tr));
    return rc;
}

/* Closing: the connection leaves the broker at once (session ended, counters,
 * list). What is still to be written (a DISCONNECT with its reason code above
 * all) goes out first: the write side is shut down after the queued writes and
 * the socket is read and drained until the peer closes or CONN_LINGER_MS pass,
 * so that the peer's kernel sees FIN, not RST, and the client can read the
 * reason [MQTT-4.13]. */
void broker__conn_close(struct conn *c, uint8_t reason)
{
    if (c->state == CONN_CLOSING)
        return;
    struct broker *b = c->b;
    if (reason != 0xFF && c->version == PROTO_V5 && c->state != CONN_NEW && c->state != CONN_AUTH) {
        struct proto_packet p = {.type = PROTO_DISCONNECT};
        p.u.disconnect.reason = reason;
        broker__conn_send(c, &p);
    }
    int prev = c->state;
    c->state = CONN_CLOSING;
    partial_update(c, false);
    broker__keepalive_stop(c);
    if (c->timer)
        uv_timer_stop(c->timer);
    if (prev == CONN_ACTIVE)
        broker__conn_ended(c);
    if (c->counted) {
        b->connected--;
        c->counted = false;
    }
    if (c->fd_admitted) {
        b->fds.admitted--;
        c->fd_admitted = false;
    }
    list_remove(&c->link);
    b->conn_count--;
    broker__backlog_forget(c);
    if (c->tr && b->stopping)
        broker__transport_going_away(c->tr);
    if (c->tr && !c->read_done && tr_encode(c) == 0)
        transport_close(c->tr, &c->wire); /* after the DISCONNECT: close_notify */
    if (c->read_done || (!unsent(c) && !c->writing) || write_out(c) != 0) {
        final_close(c);
        return;
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req) {
        final_close(c);
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        final_close(c);
        return;
    }
    broker__conn_hold(c);
    read_start(c);
    uv_timer_t *t = broker__conn_timer(c);
    if (!t) {
        final_close(c); /* cannot linger: close now */
        return;
    }
    uv_timer_start(t, on_linger_end, b->stopping ? 200 : CONN_LINGER_MS, 0);
}

/* --- writing --------------------------------------------------------------- */

struct write_req {
    uv_write_t req;
    struct conn *conn;
    uint8_t *data;
    size_t len;
};

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = container_of(req, struct write_req, req);
    struct conn *c = w->conn;
    c->writing -= w->len;
    if (status == 0)
        c->b->stats.bytes_sent += w->len;
    free(w->data);
    free(w);
    if (status < 0 && status != UV_ECANCELED) {
        broker__conn_close(c, 0xFF);
    } else if (c->state == CONN_ACTIVE) {
        if (broker__conn_congested(c) || c->slow)
            broker__backlog_drained(c);
        if (c->session)
            broker__session_drain(c->session);
    }
    broker__conn_release(c);
}

static void flush_conn(struct conn *c)
{
    c->dirty = false;
    if (c->state == CONN_CLOSING)
        return;
    if (c->write_error || (unsent(c) && write_out(c) != 0))
        broker__conn_close(c, 0xFF);
    else if (broker__conn_congested(c) || c->slow)
        broker__backlog_drained(c);
}

uint64_t broker__conn_backlog(const struct conn *c) { return (uint64_t)c->writing + unsent(c); }

/* Hands conn.out (conn.wire behind a transport) to the socket: what
 * uv_try_write does not take goes in one uv_write that owns the buffer.
 * Returns 0 or a negative error. */
static int write_out(struct conn *c)
{
    struct buf *w = &c->out;
    if (c->tr) {
        int rc = tr_encode(c);
        if (rc) {
            c->wire.len = 0;
            return rc;
        }
        w = &c->wire;
        if (!w->len)
            return 0; /* held by the transport (a handshake still running) */
    }
    size_t off = 0;
    if (!c->writing) {
        uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)w->len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
        if (n > 0) {
            off = (size_t)n;
            c->b->stats.bytes_sent += (uint64_t)n;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            w->len = 0;
            return n;
        }
    }
    if (off == w->len) {
        w->len = 0;
        /* behind a transport conn.wire is refilled from the engine each
         * time: not even the handshake's buffer is kept */
        if (c->tr)
            buf_free(w);
        else
            out_drained(w);
        return 0;
    }
    struct write_req *req = malloc(sizeof(*req));
    if (!req)
        return -ENOMEM;
    /* hand the buffer over to the request: move the unwritten tail to the front */
    if (off)
        buf_consume(w, off);
    req->conn = c;
    req->data = w->data;
    req->len = w->len;
    buf_init(w);
    uv_buf_t buf = uv_buf_init((char *)req->data, (unsigned)req->len);
    int rc = uv_write(&req->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
    if (rc) {
        free(req->data);
        free(req);
        return rc;
    }
    c->writing += req->len;
    broker__conn_hold(c);
    return 0;
}

void broker__flush_all(struct broker *b)
{
    while (b->dirty) {
        struct conn *c = b->dirty;
        b->dirty = c->next_dirty;
        c->next_dirty = NULL;
        flush_conn(c);
        broker__conn_release(c);
    }
}

static void mark_dirty(struct conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    broker__conn_hold(c);
    c->next_dirty = c->b->dirty;
    c->b->dirty = c;
}

/* Errors on the delivery path are only recorded: closing a connection there
 * could publish a will while a message is being routed. The flush closes it. */
static void write_failed(struct conn *c)
{
    c->write_error = true;
    c->out.len = 0;
    mark_dirty(c);
}

/* A big burst goes to the kernel at once instead of at the end of the turn,
 * so a busy subscriber drains while publishers are still being read. */
static void flush_early(struct conn *c)
{
    if (c->out.len >= CONN_EARLY_FLUSH && !c->writing && !c->write_error && write_out(c) != 0)
        write_failed(c);
}

void broker__conn_write(struct conn *c, const void *data, size_t len)
{
    if (c->state == CONN_CLOSING || c->write_error)
        return;
    if (buf_append(&c->out, data, len) != 0) {
        write_failed(c);
        return;
    }
    mark_dirty(c);
    flush_early(c);
}

void broker__conn_send(struct conn *c, const struct proto_packet *p)
{
    if (c->state == CONN_CLOSING || c->write_error)
        return;
    size_t before = c->out.len;
    int rc = proto_encode(p, c->version ? c->version : PROTO_V311, &c->out);
    if (rc) {
        c->out.len = before;
        LOG(c->b, LOG_WARN, c, "cannot encode %s: %s", proto_type_name(p->type), proto_error_name(rc));
        write_failed(c);
        return;
    }
    mark_dirty(c);
    flush_early(c);
}

/* Encodes a PUBLISH into the connection's buffer: header, then the payload. */
int broker__conn_publish(struct conn *c, const struct proto_publish *pub)
{
    if (c->state == CONN_CLOSING || c->write_error)
        return -EPIPE;
    size_t before = c->out.len;
    if (proto_publish_encode_header(pub, c->version, &c->out) != 0) {
        c->out.len = before;
        write_failed(c);
        return -ENOMEM;
    }
    broker__conn_write(c, pub->payload.p, pub->payload.len);
    return c->write_error ? -ENOMEM : 0;
}

/* --- keep alive ------------------------------------------------------------ */

/* No libuv timer per connection: a check due at conn.wheel_due sits in the
 * broker's wheel slot of that time (slots of BROKER_WHEEL_MS), and
 * broker.wheel_timer visits the slots the time has reached, the current one at
 * every tick (a check runs at most BROKER_WHEEL_MS late). An entry due more
 * than a round (BROKER_WHEEL_SLOTS slots) ahead waits in its slot for its
 * round. */
static void wheel_set(struct conn *c, uint64_t in_ms)
{
    struct broker *b = c->b;
    if (c->wheel_due)
        list_remove(&c->wheel_link);
    c->wheel_due = broker__now(b) + in_ms;
    if (!c->wheel_due)
        c->wheel_due = 1;
    list_push_back(&b->wheel[c->wheel_due / BROKER_WHEEL_MS % BROKER_WHEEL_SLOTS], &c->wheel_link);
}

void broker__keepalive_stop(struct conn *c)
{
    if (!c->wheel_due)
        return;
    list_remove(&c->wheel_link);
    c->wheel_due = 0;
}

static void on_due(struct conn *c)
{
    struct broker *b = c->b;
    if (c->state == CONN_NEW || c->state == CONN_CLAIMING) {
        if (c->state == CONN_NEW) {
            LOG(b, LOG_INFO, c, "no CONNECT within %u s (connect_timeout), closing", b->cfg.connect_timeout);
            broker__conn_close(c, 0xFF);
        }
        return;
    }
    if (c->state == CONN_AUTH) {
        /* the whole exchange has connect_timeout from the accept */
        LOG(b, LOG_INFO, c, "authentication not completed within %u s (connect_timeout), closing",
            b->cfg.connect_timeout);
        broker__conn_close(c, 0xFF);
        return;
    }
    if (!c->keep_alive || c->state != CONN_ACTIVE)
        return;
    uint64_t limit = (uint64_t)c->keep_alive * 1500;
    if (c->held) {
        /* not read by our choice (backpressure): its packets wait unread */
        wheel_set(c, limit);
        return;
    }
    uint64_t idle = broker__now(b) - c->last_rx;
    if (idle >= limit) {
        LOG(b, LOG_INFO, c, "keep alive timeout (%u s)", c->keep_alive);
        broker__conn_close(c, PROTO_RC_KEEP_ALIVE_TIMEOUT);
        return;
    }
    conn_idle_trim(c);
    wheel_set(c, limit - idle);
}

/* Fires what is due in one slot; what is due later (the current slot's
 * later entries, a later round's) stays. */
static void wheel_visit(struct broker *b, struct list *slot, uint64_t now)
{
    /* detach the slot first: a check that re-arms may land in it again */
    struct list todo;
    list_init(&todo);
    list_splice_back(&todo, slot);
    while (!list_empty(&todo)) {
        struct conn *c = list_entry(list_pop_front(&todo), struct conn, wheel_link);
        if (c->wheel_due > now) {
            list_push_back(slot, &c->wheel_link);
            continue;
        }
        c->wheel_due = 0;
        broker__conn_hold(c);
        on_due(c);
        broker__conn_release(c);
    }
}

void broker__wheel_tick(uv_timer_t *t)
{
    struct broker *b = t->data;
    uint64_t now = broker__now(b), cur = now / BROKER_WHEEL_MS;
    if (!b->wheel_pos || cur - b->wheel_pos >= BROKER_WHEEL_SLOTS)
        b->wheel_pos = cur >= BROKER_WHEEL_SLOTS ? cur - BROKER_WHEEL_SLOTS + 1 : 0;
    for (;;) {
        wheel_visit(b, &b->wheel[b->wheel_pos % BROKER_WHEEL_SLOTS], now);
        if (b->wheel_pos == cur)
            break; /* the current slot: visited again next tick */
        b->wheel_pos++;
    }
}

void broker__keepalive_arm(struct conn *c)
{
    if (c->keep_alive)
        wheel_set(c, (uint64_t)c->keep_alive * 1500);
    else
        broker__keepalive_stop(c);
}

/* --- reading --------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    struct broker *b = c->b;
    if (c->tr) {
        /* the transport copies what it reads (the TLS engine's input BIO),
         * so the shared chunk is free again after every read */
        if (!b->read_chunk_busy) {
            b->read_chunk_busy = true;
            *buf = uv_buf_init((char *)b->read_chunk, BROKER_READ_CHUNK);
        } else {
            void *p = malloc(BROKER_READ_CHUNK);
            *buf = uv_buf_init(p, p ? BROKER_READ_CHUNK : 0);
        }
        return;
    }
    if (c->rbuf.len == 0 && !b->read_chunk_busy) {
        b->read_chunk_busy = true;
        *buf = uv_buf_init((char *)b->read_chunk, BROKER_READ_CHUNK);
        return;
    }
    if (buf_reserve(&c->rbuf, BROKER_READ_CHUNK) != 0) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init((char *)buf_tail(&c->rbuf), (unsigned)buf_room(&c->rbuf));
}

static void protocol_close(struct conn *c, int err)
{
    uint8_t reason = proto_error_reason(err);
    LOG(c->b, LOG_INFO, c, "closing: %s", proto_error_name(err));
    broker__conn_close(c, reason);
}

static void dispatch(struct conn *c, struct proto_packet *p)
{
    if (c->state == CONN_AUTH && p->type != PROTO_AUTH && p->type != PROTO_DISCONNECT) {
        /* [MQTT-3.1.2-30]: only AUTH or DISCONNECT until the CONNACK */
        LOG(c->b, LOG_INFO, c, "packet type %u during the AUTH exchange", p->type);
        broker__connect_refuse(c, PROTO_RC_PROTOCOL_ERROR);
        return;
    }
    switch (p->type) {
    case PROTO_CONNECT:
        if (c->state != CONN_NEW) {
            protocol_close(c, PROTO_EPROTOCOL); /* a second CONNECT [MQTT-3.1.0-2] */
            return;
        }
        broker__on_connect(c, p);
        return;
    case PROTO_PUBLISH:
        broker__on_publish(c, p);
        return;
    case PROTO_PUBACK:
    case PROTO_PUBREC:
    case PROTO_PUBREL:
    case PROTO_PUBCOMP:
        broker__on_ack(c, p);
        return;
    case PROTO_SUBSCRIBE:
        broker__on_subscribe(c, p);
        return;
    case PROTO_UNSUBSCRIBE:
        broker__on_unsubscribe(c, p);
        return;
    case PROTO_PINGREQ: {
        struct proto_packet r = {.type = PROTO_PINGRESP};
        broker__conn_send(c, &r);
        return;
    }
    case PROTO_DISCONNECT:
        broker__on_disconnect(c, p);
        return;
    case PROTO_AUTH:
        broker__on_auth(c, p);
        return;
    default: /* CONNACK, SUBACK, UNSUBACK, PINGRESP: not ours to receive */
        protocol_close(c, PROTO_EPROTOCOL);
        return;
    }
}

/* Handles whole packets in buf; returns how many bytes were consumed. */
static size_t consume(struct conn *c, const uint8_t *buf, size_t len)
{
    struct broker *b = c->b;
    size_t pos = 0;
    while (pos < len && !c->paused && !c->held && c->state != CONN_CLOSING && c->state != CONN_CLAIMING) {
        size_t plen;
        int rc = proto_frame(buf + pos, len - pos, b->cfg.max_packet_size, &plen);
        if (rc == PROTO_EINCOMPLETE)
            break;
        if (rc) {
            if (c->state == CONN_NEW && buf[pos] >> 4 == PROTO_CONNECT)
                broker__connect_undecodable(c, rc, buf + pos, len - pos); /* too large: CONNACK 0x95 */
            else
                protocol_close(c, rc);
            return len;
        }
        if (b->sub_proposed != b->sub_completed && c->state == CONN_ACTIVE && buf[pos] >> 4 == PROTO_PUBLISH) {
            /* a subscription read before this PUBLISH is still committing */
            broker__barrier_wait(c);
            break;
        }
        struct proto_packet p;
        uint8_t version = c->state == CONN_NEW ? 0 : c->version;
        rc = proto_decode(buf + pos, plen, version, &p);
        pos += plen;
        b->stats.bytes_received += plen;
        c->last_rx = broker__now(b);
        if (rc) {
            if (c->state == CONN_NEW && buf[pos - plen] >> 4 == PROTO_CONNECT) {
                /* a CONNACK with the reason, where the protocol has one:
                 * connect.c */
                broker__connect_undecodable(c, rc, buf + pos - plen, plen);
                return len;
            }
            protocol_close(c, rc);
            return len;
        }
        dispatch(c, &p);
        proto_packet_release(&p);
    }
    return pos;
}

/* Processes what rbuf holds (after a resume or a read into rbuf). */
static void process(struct conn *c)
{
    if (!c->rbuf.len)
        return;
    broker__conn_hold(c);
    c->consuming = true;
    size_t used = consume(c, c->rbuf.data, c->rbuf.len);
    c->consuming = false;
    if (used)
        buf_consume(&c->rbuf, used);
    buf_shrink(&c->rbuf, 2 * BROKER_READ_CHUNK);
    partial_update(c, used > 0);
    broker__conn_release(c);
}

/* What a connection with a transport read: through transport_input into
 * rbuf, then processed as a tcp connection's rbuf is. */
static void tr_read(struct conn *c, ssize_t n, const uv_buf_t *buf)
{
    struct broker *b = c->b;
    int rc = 0;
    if (n > 0 && c->state != CONN_CLOSING)
        rc = transport_input(c->tr, (const uint8_t *)buf->base, (size_t)n, &c->rbuf, &c->wire);
    if (buf->base == (char *)b->read_chunk)
        b->read_chunk_busy = false;
    else
        free(buf->base);
    if (c->state == CONN_CLOSING) {
        if (n < 0)
            final_close(c); /* lingering after a close: the peer is done */
        return;
    }
    if (n < 0) {
        c->read_done = true;
        if (n != UV_EOF)
            LOG(b, LOG_DEBUG, c, "read error: %s", uv_strerror((int)n));
        broker__conn_close(c, 0xFF);
        return;
    }
    if (rc < 0) {
        LOG(b, LOG_INFO, c, "%s", transport_why(c->tr));
        broker__conn_close(c, 0xFF); /* the alert in conn.wire goes first */
        return;
    }
    char what[96];
    if (!c->tr_described && transport_tls_describe(c->tr, what, sizeof(what))) {
        c->tr_described = true;
        LOG(b, LOG_DEBUG, c, "%s: %s", c->tr->name, what);
    }
    if (c->wire.len)
        mark_dirty(c); /* handshake records: written with this turn's flush */
    process(c);
    if (!c->rbuf.len)
        buf_shrink(&c->rbuf, 0); /* the engine reserved a record's room: an idle connection gives it back */
    if (c->state == CONN_CLOSING)
        return;
    if (rc == TRANSPORT_EOF) {
        /* close_notify, a close frame: the end of the stream, but the socket
         * still takes what the filter answered (the close frame's echo), so
         * the close goes through the write side's shutdown and linger */
        const struct filter *top = c->tr->f[c->tr->n - 1];
        LOG(b, LOG_DEBUG, c, "%s: end of stream (%s)", top->ops->name, top->ops->why ? top->ops->why(top) : "");
        broker__conn_close(c, 0xFF);
        return;
    }
    if ((c->paused || c->state == CONN_CLAIMING) && c->rbuf.len > PAUSED_READ_LIMIT)
        uv_read_stop((uv_stream_t *)&c->tcp);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct broker *b = c->b;
    if (c->tr) {
        tr_read(c, n, buf);
        return;
    }
    bool chunk = buf->base == (char *)b->read_chunk;
    if (c->state == CONN_CLOSING) {
        /* lingering after a close: discard, finish when the peer is done */
        if (chunk)
            b->read_chunk_busy = false;
        else if (n > 0)
            c->rbuf.len = 0;
        if (n < 0)
            final_close(c);
        return;
    }
    if (n < 0) {
        c->read_done = true;
        if (chunk)
            b->read_chunk_busy = false;
        if (n != UV_EOF)
            LOG(b, LOG_DEBUG, c, "read error: %s", uv_strerror((int)n));
        broker__conn_close(c, 0xFF);
        return;
    }
    if (!chunk) {
        c->rbuf.len += (size_t)n;
        process(c);
    } else {
        broker__conn_hold(c);
        c->consuming = true;
        size_t used = consume(c, b->read_chunk, (size_t)n);
        c->consuming = false;
        if (used < (size_t)n && c->state != CONN_CLOSING) {
            /* rbuf is empty: the chunk is lent only then (on_alloc) */
            if (buf_append(&c->rbuf, b->read_chunk + used, (size_t)n - used) != 0) {
                b->read_chunk_busy = false;
                broker__conn_close(c, 0xFF);
                broker__conn_release(c);
                return;
            }
        }
        b->read_chunk_busy = false;
        bool open = partial_update(c, used > 0);
        broker__conn_release(c);
        if (!open)
            return;
    }
    if (c->state != CONN_CLOSING && (c->paused || c->state == CONN_CLAIMING) &&
        c->rbuf.len > PAUSED_READ_LIMIT)
        uv_read_stop((uv_stream_t *)&c->tcp);
}

void broker__conn_resume(struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->paused = false;
    if (c->consuming)
        return; /* completed from within consume(): its loop goes on */
    process(c);
    if (c->state != CONN_CLOSING && !c->paused && !c->held)
        read_start(c);
}

/* Backpressure (backpressure.c) let go of c: what it read meanwhile is
 * processed, then it is read again (unless something else pauses it). */
void broker__conn_unhold_read(struct conn *c)
{
    c->last_rx = broker__now(c->b); /* the wait was ours, not the client's silence */
    if (c->state == CONN_CLOSING || c->paused)
        return; /* a close reads to linger; a resume reads again */
    if (c->consuming)
        return; /* its consume() loop goes on */
    process(c);
    if (c->state != CONN_CLOSING && !c->paused && !c->held)
        read_start(c);
}

static void read_start(struct conn *c)
{
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* --- accepting ------------------------------------------------------------- */

const char *broker__conn_peer(const struct conn *c, char *out)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (c->peer_family == AF_INET || c->peer_family == AF_INET6)
        inet_ntop(c->peer_family, c->peer_ip, host, sizeof(host));
    snprintf(out, BROKER_PEER_LEN, "%s:%d", host, c->peer_port);
    return out;
}

void broker__conn_accept(struct acceptor *a, int fd)
{
    struct broker *b = a->data;
    struct listener *l = container_of(a, struct listener, acc);
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    if (broker__listener_stack(l, &c->tr) != 0) {
        LOG(b, LOG_WARN, NULL, "%s: out of memory for a %s connection", a->name, l->cfg.transport);
        free(c);
        close(fd);
        return;
    }
    c->b = b;
    c->listener = l;
    int rc = uv_tcp_init(b->loop, &c->tcp);
    if (!rc)
        rc = uv_tcp_open(&c->tcp, fd);
    if (rc) {
        LOG(b, LOG_WARN, NULL, "%s: %s", a->name, uv_strerror(rc));
        close(fd);
        transport_free(c->tr);
        free(c);
        return;
    }
    b->fds.sockets++;
    c->tcp.data = c;
    c->pending = 1; /* the tcp handle */
    list_init(&c->acks);
    list_push_front(&b->conns, &c->link);
    b->conn_count++;
    b->stats.connections_total++;
    c->last_rx = broker__now(b);

    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
            memcpy(c->peer_ip, &in->sin_addr, 4);
            c->peer_port = ntohs(in->sin_port);
            c->peer_family = AF_INET;
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            memcpy(c->peer_ip, &in6->sin6_addr, 16);
            c->peer_port = ntohs(in6->sin6_port);
            c->peer_family = AF_INET6;
        }
    }
    uv_tcp_nodelay(&c->tcp, 1);

    /* sockets far beyond max_connections are refused before reading anything;
     * up to it, CONNECT gets a proper CONNACK refusal (see connect.c) */
    if (b->cfg.max_connections && b->conn_count > b->cfg.max_connections + 1024) {
        LOG(b, LOG_WARN, c, "too many sockets (%u), closing", b->conn_count);
        broker__conn_close(c, 0xFF);
        return;
    }
    wheel_set(c, (uint64_t)b->cfg.connect_timeout * 1000);
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc)
        broker__conn_close(c, 0xFF);
    LOG(b, LOG_DEBUG, c, "accepted");
}
