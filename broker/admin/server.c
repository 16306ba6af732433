/* admin/server: the HTTP/1.1 server of the node's admin API (admin_listen,
 * port 18083 by default) on the broker's loop: accept, read, parse requests
 * with http-parser, check the bearer token, write responses, time out. The
 * endpoints themselves are in api.c.
 *
 * Happy path: accept -> read -> http_parser_execute, which pauses at the end of
 * each request; the request is then answered (broker__admin_route) before the
 * next one is parsed, so a connection has one request at a time and pipelined
 * requests are answered in order; keep-alive unless the client says otherwise.
 * A request answered later (a cluster operation) stops reading until
 * broker__admin_respond; meanwhile a reference (broker__admin_hold) keeps the
 * struct alive for the callback even if the connection closes first.
 *
 * Failure modes: bytes that do not parse get 400, a request above
 * ADMIN_MAX_REQUEST 413, both ending the connection; a connection idle for
 * admin_idle_timeout closes, and so does one whose request has not arrived
 * whole admin_request_timeout after its first byte; out of memory drops the
 * one connection. Idle sockets cannot lock the API out (and /metrics with it):
 * one address may hold admin_max_conns_per_peer connections (a new one beyond
 * is closed), and at BROKER_ADMIN_MAX_CONNS a new connection takes the place
 * of the oldest idle one. A response
 * that ends the connection shuts the write side down and what the client still
 * sends is read and dropped (for up to ADMIN_LINGER_MS), so that it reads the
 * response rather than a reset. The struct is freed in the handles' close
 * callbacks once no operation holds it.
 *
 * HTTPS (admin_certfile and admin_keyfile set): the listener speaks TLS only.
 * The bytes read go through the connection's tls_conn (common/tls.h) before
 * the parser sees them, and every response is encrypted before it is
 * written; nothing else changes. The handshake counts as the start of a
 * request, so admin_request_timeout bounds it from the accept on, and a
 * connection in its handshake is not idle (admit() does not take its place).
 * A failed handshake (plain HTTP, a wrong CA, a client without a certificate
 * when admin_cafile asks for one) is logged with OpenSSL's reason, its alert
 * sent, and the connection ends as after a last response (FIN, then what
 * the client still sends is dropped until it closes or ADMIN_LINGER_MS).
 * A response that ends the connection is followed by a close_notify.
 *
 * The dashboard: a GET of one of its files (ui.c) is answered before the
 * bearer check, the files holding no data. A streamed answer
 * (broker__admin_stream_begin, the event stream of events.c) has no length
 * and ends with the connection: it keeps the connection busy, so no further
 * request is read and no idle timeout runs; the socket is still read, to
 * see the client go (what it sends is dropped), and a client that does not
 * read is dropped by its streamer (BROKER_ADMIN_STREAM_BACKLOG). */
#include <errno.h>
#include <http_parser.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "broker.h"
#include "internal.h"
#include "tls.h"

#define ADMIN_MAX_REQUEST (64u * 1024) /* request line, headers and body */
#define ADMIN_READ_CHUNK (16u * 1024)
#define ADMIN_MAX_BACKLOG (1u << 20)   /* stop reading while more is unwritten */
#define ADMIN_BUSY_MS 60000           /* re-check of a request answered later */
#define ADMIN_LINGER_MS 1000
#define ADMIN_STOP_WAIT_MS 5000
#define ADMIN_UNAUTH_LOG_MS 1000      /* at most one "401" line per second */
#define ADMIN_TOKEN_MIN 16            /* shorter admin_tokens get a warning */

enum admin_state {
    ADMIN_OPEN = 0,
    ADMIN_DRAINING, /* last response written, write side shut down */
    ADMIN_CLOSED,   /* uv_close called */
};

enum admin_header {
    HEADER_OTHER = 0,
    HEADER_AUTHORIZATION,
};

struct admin_conn {
    uv_tcp_t tcp;              /* unused (never initialised) when sink is set */
    uv_timer_t timer;          /* idle timeout, then the linger after the last response */
    uv_shutdown_t shutdown;
    struct broker *b;
    struct list link;          /* in b->admin.conns */
    http_parser parser;
    int refs;                  /* the two handles until closed, plus operations under way */
    int state;                 /* enum admin_state */
    int writes;                /* write requests not yet completed */
    bool busy;                 /* the current request is not answered yet */
    bool processing;           /* process() is on the stack */
    bool reading;
    bool eof;                  /* the client shut its side down */
    bool last;                 /* the response to the current request ends the connection
                                * (and no request after it is read) */
    bool restart;              /* ... and then the node restarts (a join was accepted) */
    bool streaming;            /* answering with a stream (broker__admin_stream_begin) */

    struct buf in;             /* bytes read (decrypted under TLS) and not yet parsed */
    struct buf raw;            /* under TLS: the bytes of one read, before decryption */
    struct tls_conn tls;       /* under TLS (b->admin.tls set); zeroed otherwise */
    bool secure;               /* this connection speaks TLS */
    struct buf *sink;          /* a connection without a socket (broker__admin_feed_open):
                                * responses are appended here, there are no handles */

    /* the request being read */
    size_t req_bytes;
    int req_error;             /* HTTP status it is refused with (413), 0 = none */
    struct buf url, body, auth;
    char field[16];            /* the header name being read (ours are short) */
    size_t field_len;
    bool in_value;
    int header;                /* enum admin_header of the value being read */
    bool has_auth;
    uint64_t req_started;      /* uv_now of the first byte of a request not yet whole, 0 = none */
    char ip[48];               /* the peer's address, for the per-address cap */
    char peer[64];             /* address:port, for logs */
};

static void process(struct admin_conn *c);
static void update_reading(struct admin_conn *c);
static int tls_flush(struct admin_conn *c);

/* --- lifetime -------------------------------------------------------------- */

void broker__admin_hold(struct admin_conn *c) { c->refs++; }

void broker__admin_release(struct admin_conn *c)
{
    if (--c->refs > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->raw);
    tls_conn_free(&c->tls);
    buf_free(&c->url);
    buf_free(&c->body);
    buf_free(&c->auth);
    free(c);
}

static void on_closed(uv_handle_t *h) { broker__admin_release(h->data); }

static void on_tcp_closed(uv_handle_t *h)
{
    struct admin_conn *c = h->data;
    c->b->fds.sockets--;
    broker__admin_release(c);
}

static void conn_close(struct admin_conn *c)
{
    if (c->state == ADMIN_CLOSED)
        return;
    c->state = ADMIN_CLOSED;
    if (c->sink)
        return; /* not listed, no handles: its opener releases it */
    list_remove(&c->link);
    c->b->admin.conn_count--;
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

static void on_timer(uv_timer_t *t)
{
    struct admin_conn *c = t->data;
    if (c->busy && c->state == ADMIN_OPEN && !c->b->stopping) {
        /* an operation under way has its own deadline */
        uv_timer_start(&c->timer, on_timer, ADMIN_BUSY_MS, 0);
        return;
    }
    if (c->state == ADMIN_OPEN)
        LOG(c->b, LOG_DEBUG, NULL, "admin %s: %s: closing", c->peer,
            c->req_started ? "request incomplete after admin_request_timeout" : "idle for admin_idle_timeout");
    conn_close(c);
}

/* Between requests the idle timeout runs; from the first byte of a request
 * to its end, the request timeout (not renewed by each byte). */
static void arm_timer(struct admin_conn *c)
{
    const struct config *cfg = &c->b->cfg;
    if (c->state != ADMIN_OPEN || c->busy || c->last || c->sink)
        return;
    uint64_t now = broker__now(c->b);
    bool partial = c->req_bytes > 0 || c->in.len > 0 || (c->secure && !c->tls.established);
    if (!partial) {
        c->req_started = 0;
        uv_timer_start(&c->timer, on_timer, (uint64_t)cfg->admin_idle_timeout * 1000, 0);
        return;
    }
    if (!c->req_started)
        c->req_started = now;
    uint64_t end = c->req_started + (uint64_t)cfg->admin_request_timeout * 1000;
    uv_timer_start(&c->timer, on_timer, end > now ? end - now : 0, 0);
}

/* Idle: open, nothing being answered or written, no part of a request read. */
static bool conn_idle(const struct admin_conn *c)
{
    return c->state == ADMIN_OPEN && !c->busy && !c->writes && !c->req_bytes && !c->in.len &&
           (!c->secure || c->tls.established);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    if (status < 0)
        conn_close(req->data);
}

/* After the last response: FIN after what is queued, then read and drop until
 * the client closes. */
static void conn_finish(struct admin_conn *c)
{
    if (c->state != ADMIN_OPEN)
        return;
    if (c->eof || c->sink) {
        conn_close(c); /* without a socket there is nothing to drain */
        return;
    }
    if (c->secure && c->tls.established) {
        tls_conn_shutdown(&c->tls); /* close_notify before the FIN */
        if (tls_flush(c) != 0) {
            conn_close(c);
            return;
        }
    }
    c->state = ADMIN_DRAINING;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timer, c->b->stopping ? ADMIN_LINGER_MS / 5 : ADMIN_LINGER_MS, 0);
    update_reading(c);
}

/* --- reading ---------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct admin_conn *c = h->data;
    struct buf *to = c->secure ? &c->raw : &c->in;
    if (buf_reserve(to, ADMIN_READ_CHUNK) != 0) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init((char *)buf_tail(to), (unsigned)buf_room(to));
}

/* Under TLS: decrypts the n bytes just read into c->raw, appending the
 * plaintext to c->in, and sends what the handshake answers. Returns 0 to go
 * on, -1 when the connection is ending (the reason logged). */
static int tls_read(struct admin_conn *c, size_t n)
{
    bool was = c->tls.established;
    c->raw.len += n;
    int rc = tls_conn_input(&c->tls, c->raw.data, c->raw.len, &c->in);
    c->raw.len = 0;
    if (tls_flush(c) != 0) {
        conn_close(c);
        return -1;
    }
    if (rc == -ENOMEM) {
        conn_close(c);
        return -1;
    }
    if (rc) {
        LOG(c->b, LOG_INFO, NULL, "admin %s: TLS %s failed: %s", c->peer, was ? "session" : "handshake",
            c->tls.why);
        c->last = true;
        conn_finish(c); /* the alert goes out before the FIN */
        return -1;
    }
    if (!was && c->tls.established) {
        char how[96];
        tls_conn_describe(&c->tls, how, sizeof(how));
        LOG(c->b, LOG_DEBUG, NULL, "admin %s: %s", c->peer, how);
    }
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct admin_conn *c = s->data;
    if (c->streaming && c->state == ADMIN_OPEN) {
        /* read only to see the client go; what it sends is dropped */
        if (n < 0)
            conn_close(c);
        return;
    }
    if (n == UV_EOF && c->state == ADMIN_OPEN && (c->busy || c->writes)) {
        /* half-closed after a request: answer it, then close */
        c->eof = true;
        c->last = true;
        uv_read_stop(s);
        c->reading = false;
        return;
    }
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (c->state == ADMIN_DRAINING)
        return; /* dropped */
    if (!c->secure)
        c->in.len += (size_t)n;
    else if (tls_read(c, (size_t)n) != 0)
        return;
    process(c);
    if (c->secure && c->tls.peer_closed && c->state == ADMIN_OPEN && c->reading) {
        /* close_notify: as an EOF, after what was read */
        if (c->busy || c->writes) {
            c->eof = true;
            c->last = true;
            uv_read_stop(s);
            c->reading = false;
        } else {
            conn_close(c);
        }
    }
}

/* Bytes written and not yet taken by the kernel. */
static size_t backlog(struct admin_conn *c)
{
    return c->sink ? 0 : uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

static void update_reading(struct admin_conn *c)
{
    if (c->sink)
        return; /* broker__admin_feed hands the bytes over */
    bool want = c->state == ADMIN_DRAINING || (c->state == ADMIN_OPEN && c->streaming) ||
                (c->state == ADMIN_OPEN && !c->busy && !c->last && !c->eof &&
                 backlog(c) < ADMIN_MAX_BACKLOG);
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            conn_close(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* --- parser callbacks ---------------------------------------------------------- */

static struct admin_conn *conn_of(http_parser *p) { return p->data; }

static int on_message_begin(http_parser *p)
{
    struct admin_conn *c = conn_of(p);
    c->url.len = c->body.len = c->auth.len = 0;
    c->field_len = 0;
    c->in_value = false;
    c->header = HEADER_OTHER;
    c->has_auth = false;
    c->req_error = 0;
    return 0;
}

/* Appends to one of the request's buffers; beyond the request limit the
 * request is refused with 413, out of memory with 400 (the parser stops). */
static int take(struct admin_conn *c, struct buf *to, const char *at, size_t len)
{
    if (to->len + len > ADMIN_MAX_REQUEST) {
        c->req_error = 413;
        return -1;
    }
    return buf_append(to, at, len) ? -1 : 0;
}

static int on_url(http_parser *p, const char *at, size_t len) { return take(conn_of(p), &conn_of(p)->url, at, len); }

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct admin_conn *c = conn_of(p);
    if (c->in_value) {
        c->in_value = false;
        c->field_len = 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (c->field_len < sizeof(c->field))
            c->field[c->field_len] = at[i];
        c->field_len++; /* counts on: a longer name matches none of ours */
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct admin_conn *c = conn_of(p);
    if (!c->in_value) {
        c->in_value = true;
        c->header = c->field_len == 13 && strncasecmp(c->field, "authorization", 13) == 0 ? HEADER_AUTHORIZATION
                                                                                             : HEADER_OTHER;
        if (c->header == HEADER_AUTHORIZATION) {
            c->auth.len = 0; /* a repeated header: the last one counts */
            c->has_auth = true;
        }
    }
    return c->header == HEADER_AUTHORIZATION ? take(c, &c->auth, at, len) : 0;
}

static int on_headers_complete(http_parser *p)
{
    struct admin_conn *c = conn_of(p);
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > ADMIN_MAX_REQUEST) {
        c->req_error = 413; /* refused before the body is read */
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) { return take(conn_of(p), &conn_of(p)->body, at, len); }

static int on_message_complete(http_parser *p)
{
    /* answered before the parser looks at the next request */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- responses ------------------------------------------------------------------- */

struct admin_write {
    uv_write_t req;
    struct admin_conn *c;
    bool last, restart;
    struct buf head;
    char *body;
};

static void on_write(uv_write_t *req, int status)
{
    struct admin_write *w = container_of(req, struct admin_write, req);
    struct admin_conn *c = w->c;
    struct broker *b = c->b;
    bool last = w->last, restart = w->restart;
    buf_free(&w->head);
    free(w->body);
    free(w);
    c->writes--;
    /* the join is decided whether or not the client read its answer */
    if (restart && !b->stopping) {
        broker_restart(b);
        return;
    }
    if (c->state != ADMIN_OPEN)
        return;
    if (status < 0)
        conn_close(c);
    else if (last || (c->eof && !c->busy && !c->writes))
        conn_finish(c);
    else
        process(c); /* reading may have stopped for the write backlog */
}

/* Queues a write of bufs (pointing into w's buffers), encrypted under TLS:
 * then w->head holds the records and w->body is freed. On failure w is left
 * for the caller to free. */
static int conn_write(struct admin_conn *c, struct admin_write *w, const uv_buf_t *bufs, unsigned n)
{
    if (!c->secure)
        return uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, on_write);
    struct buf wire;
    buf_init(&wire);
    for (unsigned i = 0; i < n; i++)
        if (bufs[i].len && tls_conn_write(&c->tls, (const uint8_t *)bufs[i].base, bufs[i].len) != 0)
            return -EPROTO;
    if (tls_conn_output(&c->tls, &wire) != 0) {
        buf_free(&wire);
        return -ENOMEM;
    }
    buf_free(&w->head);
    free(w->body);
    w->body = NULL;
    w->head = wire;
    uv_buf_t b = uv_buf_init((char *)wire.data, (unsigned)wire.len);
    return uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
}

/* Writes what the TLS engine has for the wire (handshake records, alerts,
 * close_notify). 0 or a negative error (the caller closes). */
static int tls_flush(struct admin_conn *c)
{
    if (!tls_conn_pending(&c->tls))
        return 0;
    struct admin_write *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->c = c;
    int rc = tls_conn_output(&c->tls, &w->head);
    if (!rc) {
        uv_buf_t b = uv_buf_init((char *)w->head.data, (unsigned)w->head.len);
        rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    }
    if (rc) {
        buf_free(&w->head);
        free(w);
        return rc;
    }
    c->writes++;
    return 0;
}

/* A connection without a socket: the response goes to its sink at once. */
static int sink_write(struct admin_conn *c, const uv_buf_t *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (buf_append(c->sink, bufs[i].base, bufs[i].len) != 0)
            return -ENOMEM;
    return 0;
}

void broker__admin_restart_after(struct admin_conn *c)
{
    c->restart = true;
    c->last = true;
}

void broker__admin_respond(struct admin_conn *c, int status, const char *type, char *body, size_t len,
                           const char *extra)
{
    struct broker *b = c->b;
    bool restart = c->restart;
    c->busy = false;
    c->restart = false;
    if (c->state != ADMIN_OPEN || !body) {
        free(body);
        if (c->state == ADMIN_OPEN)
            conn_close(c); /* out of memory: this connection goes */
        if (restart && !b->stopping)
            broker_restart(b);
        return;
    }
    struct admin_write *w = calloc(1, sizeof(*w));
    if (!w) {
        free(body);
        conn_close(c);
        if (restart && !b->stopping)
            broker_restart(b);
        return;
    }
    w->c = c;
    w->body = body;
    w->last = c->last;
    w->restart = restart;
    int rc = broker__admin_head(&w->head, status, type, len, !c->last, extra);
    uv_buf_t bufs[2] = {uv_buf_init((char *)w->head.data, (unsigned)w->head.len), uv_buf_init(body, (unsigned)len)};
    if (rc || (c->sink ? sink_write(c, bufs, len ? 2 : 1) : conn_write(c, w, bufs, len ? 2 : 1)) != 0) {
        buf_free(&w->head);
        free(w->body);
        free(w);
        conn_close(c);
        if (restart && !b->stopping)
            broker_restart(b);
        return;
    }
    c->writes++;
    if (c->sink) {
        on_write(&w->req, 0); /* taken whole: completes now */
        return;
    }
    if (c->last)
        uv_timer_stop(&c->timer);
    else
        arm_timer(c);
    if (!c->processing)
        process(c);
}

void broker__admin_error(struct admin_conn *c, int status, const char *msg, const char *extra)
{
    char *body = broker__admin_error_json(status, msg);
    broker__admin_respond(c, status, "application/json", body, body ? strlen(body) : 0, extra);
}

/* --- streamed responses ------------------------------------------------------------ */

int broker__admin_stream_begin(struct admin_conn *c, const char *type)
{
    if (c->sink)
        return -ENOTSUP;
    if (c->state != ADMIN_OPEN)
        return -EPIPE;
    struct buf head = {0};
    int rc = broker__admin_printf(&head,
                                  "HTTP/1.1 200 OK\r\n"
                                  "Content-Type: %s\r\n"
                                  "Cache-Control: no-store\r\n"
                                  "X-Content-Type-Options: nosniff\r\n"
                                  "Connection: close\r\n\r\n",
                                  type);
    if (!rc) {
        c->streaming = true;
        c->last = true; /* no request after it: the stream ends with the connection */
        rc = broker__admin_stream_send(c, (const char *)head.data, head.len);
    }
    buf_free(&head);
    if (!rc)
        update_reading(c);
    return rc;
}

int broker__admin_stream_send(struct admin_conn *c, const char *data, size_t len)
{
    if (c->state != ADMIN_OPEN || !c->streaming)
        return -EPIPE;
    if (backlog(c) > BROKER_ADMIN_STREAM_BACKLOG)
        return -ENOBUFS;
    struct admin_write *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->c = c;
    int rc = buf_append(&w->head, data, len);
    uv_buf_t one = uv_buf_init((char *)w->head.data, (unsigned)w->head.len);
    if (rc || (rc = conn_write(c, w, &one, 1)) != 0) {
        buf_free(&w->head);
        free(w);
        return rc;
    }
    c->writes++;
    return 0;
}

bool broker__admin_stream_gone(const struct admin_conn *c) { return c->state != ADMIN_OPEN; }

const char *broker__admin_conn_ip(const struct admin_conn *c) { return c->ip; }

void broker__admin_stream_close(struct admin_conn *c) { conn_close(c); }

/* --- requests ---------------------------------------------------------------------- */

/* Counts a request refused for its token (starling_admin_unauthorized_total)
 * and logs it with the caller's address. Someone trying tokens in a loop
 * would fill the log: at most one line per ADMIN_UNAUTH_LOG_MS, which says
 * how many went unlogged before it. */
static void unauthorized_log(struct admin_conn *c)
{
    struct broker *b = c->b;
    struct admin *a = &b->admin;
    uint64_t now = broker__now(b);
    a->unauthorized++;
    if (a->unauth_logged_ms && now - a->unauth_logged_ms < ADMIN_UNAUTH_LOG_MS) {
        a->unauth_unlogged++;
        return;
    }
    char more[64] = "";
    if (a->unauth_unlogged)
        snprintf(more, sizeof(more), " (and %" PRIu64 " more unlogged since the last line)", a->unauth_unlogged);
    LOG(b, LOG_INFO, NULL, "admin %s: %s %s token: 401%s", c->peer,
        http_method_str((enum http_method)c->parser.method), c->has_auth ? "with a wrong" : "without a", more);
    a->unauth_logged_ms = now;
    a->unauth_unlogged = 0;
}

static void dispatch(struct admin_conn *c)
{
    struct broker *b = c->b;
    c->busy = true;
    c->last = c->eof || !http_should_keep_alive(&c->parser) || c->parser.upgrade;
    if (c->req_bytes > ADMIN_MAX_REQUEST) {
        c->last = true;
        broker__admin_error(c, 413, "the request is larger than 64 KiB", NULL);
        return;
    }
    if (c->parser.http_major != 1) {
        c->last = true;
        broker__admin_error(c, 505, "only HTTP/1.0 and HTTP/1.1 are spoken here", NULL);
        return;
    }
    /* the dashboard's files hold no data: the page asks for the token */
    if (c->parser.method == HTTP_GET && broker__admin_ui_serve(c, (const char *)c->url.data, c->url.len))
        return;
    const char *token = b->cfg.admin_token;
    if (token[0] && (!c->has_auth || !broker__admin_bearer_ok((const char *)c->auth.data, c->auth.len, token))) {
        unauthorized_log(c);
        broker__admin_error(c, 401, c->has_auth ? "the bearer token is not this node's admin_token"
                                                : "this node needs Authorization: Bearer <admin_token>",
                            "WWW-Authenticate: Bearer realm=\"starling\"\r\n");
        return;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!c->url.len ||
        http_parser_parse_url((const char *)c->url.data, c->url.len, c->parser.method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1u << UF_PATH))) {
        broker__admin_error(c, 400, "the request target is not a path", NULL);
        return;
    }
    struct admin_request r = {
        .method = (int)c->parser.method,
        .path = (const char *)c->url.data + u.field_data[UF_PATH].off,
        .path_len = u.field_data[UF_PATH].len,
        .body = c->body.len ? (const char *)c->body.data : "",
        .body_len = c->body.len,
        .peer = c->peer,
    };
    if (u.field_set & (1u << UF_QUERY)) {
        r.query = (const char *)c->url.data + u.field_data[UF_QUERY].off;
        r.query_len = u.field_data[UF_QUERY].len;
    }
    LOG(b, LOG_DEBUG, NULL, "admin %s: %s %.*s", c->peer, http_method_str((enum http_method)r.method),
        (int)(c->url.len > 200 ? 200 : c->url.len), (const char *)c->url.data);
    broker__admin_route(b, c, &r);
}

/* Parses what was read, one request at a time: stops while a request is
 * being answered or the client is slow to read its answers. */
static void process(struct admin_conn *c)
{
    if (c->processing)
        return;
    c->processing = true;
    size_t pos = 0;
    while (c->state == ADMIN_OPEN && !c->busy && !c->last && pos < c->in.len && backlog(c) < ADMIN_MAX_BACKLOG) {
        size_t n = http_parser_execute(&c->parser, &parser_settings, (const char *)c->in.data + pos, c->in.len - pos);
        pos += n;
        c->req_bytes += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            c->req_started = 0;
            dispatch(c);
            c->req_bytes = 0;
        } else if (e != HPE_OK || c->req_bytes > ADMIN_MAX_REQUEST) {
            int status = c->req_error ? c->req_error : e == HPE_OK || e == HPE_HEADER_OVERFLOW ? 413 : 400;
            LOG(c->b, LOG_DEBUG, NULL, "admin %s: bad request: %s", c->peer, http_errno_description(e));
            c->busy = true;
            c->last = true;
            broker__admin_error(c, status, status == 413 ? "the request is larger than 64 KiB"
                                                         : http_errno_description(e), NULL);
            pos = c->in.len;
        }
    }
    if (c->state == ADMIN_OPEN && pos < c->in.len)
        buf_consume(&c->in, pos);
    else
        c->in.len = 0;
    if (c->state != ADMIN_CLOSED)
        update_reading(c);
    arm_timer(c);
    c->processing = false;
}

/* --- the listener -------------------------------------------------------------------- */

/* Makes room for a new connection from ip, or returns false. An address
 * that holds admin_max_conns_per_peer connections gives up its oldest idle
 * one, and at BROKER_ADMIN_MAX_CONNS the oldest idle one goes, whoever's:
 * idle sockets never lock a newcomer out. When none is idle (requests arriving,
 * each bounded by admin_request_timeout) the new connection is closed. */
static bool admit(struct broker *b, const char *ip)
{
    uint32_t same = 0;
    struct admin_conn *idle_same = NULL, *idle_any = NULL;
    /* newest first: the last idle ones seen are the oldest */
    list_foreach(it, &b->admin.conns) {
        struct admin_conn *c = list_entry(it, struct admin_conn, link);
        bool mine = strcmp(c->ip, ip) == 0;
        same += mine;
        if (conn_idle(c)) {
            idle_any = c;
            if (mine)
                idle_same = c;
        }
    }
    struct admin_conn *evict = same >= b->cfg.admin_max_conns_per_peer ? idle_same
                             : b->admin.conn_count >= BROKER_ADMIN_MAX_CONNS ? idle_any
                             : NULL;
    if (!evict && (same >= b->cfg.admin_max_conns_per_peer || b->admin.conn_count >= BROKER_ADMIN_MAX_CONNS)) {
        LOG(b, LOG_WARN, NULL, "admin: no room for a connection from %s (%u from it, %u in all, none idle): closing it",
            ip, same, b->admin.conn_count);
        return false;
    }
    if (evict) {
        LOG(b, LOG_DEBUG, NULL, "admin: closing the oldest idle connection (%s) for one from %s", evict->peer, ip);
        conn_close(evict);
    }
    return true;
}

static void on_connection(struct acceptor *a, int fd)
{
    struct broker *b = a->data;
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    char ip[48] = "?";
    uint16_t port = 0;
    bool v6 = false;
    if (getpeername(fd, (struct sockaddr *)&sa, &salen) == 0) {
        v6 = sa.ss_family == AF_INET6;
        uv_ip_name((struct sockaddr *)&sa, ip, sizeof(ip));
        port = ntohs(v6 ? ((struct sockaddr_in6 *)&sa)->sin6_port : ((struct sockaddr_in *)&sa)->sin_port);
    }
    struct admin_conn *c = admit(b, ip) ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        close(fd);
        return;
    }
    c->b = b;
    if (b->admin.tls) {
        if (tls_conn_init(&c->tls, b->admin.tls, NULL) != 0) {
            close(fd);
            free(c);
            return;
        }
        c->secure = true;
    }
    uv_tcp_init(b->loop, &c->tcp);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        tls_conn_free(&c->tls);
        free(c);
        return;
    }
    b->fds.sockets++;
    uv_timer_init(b->loop, &c->timer);
    c->tcp.data = c->timer.data = c->shutdown.data = c;
    c->refs = 2;
    list_push_front(&b->admin.conns, &c->link);
    b->admin.conn_count++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
    snprintf(c->peer, sizeof(c->peer), v6 ? "[%s]:%u" : "%s:%u", ip, port);
    arm_timer(c);
    update_reading(c);
}

int broker__admin_check(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->admin_token[0] || broker__admin_listen_loopback(cfg->admin_listen))
        return 0;
    snprintf(err, errlen,
             "admin_listen %s is reachable from other machines and admin_token is not set: "
             "set admin_token (16+ random characters) or bind admin_listen to 127.0.0.1",
             cfg->admin_listen);
    return -EPERM;
}

/* HTTPS when admin_certfile and admin_keyfile are set: their context is
 * built (and every file read) before the port opens, so a bad file stops
 * the start with one line. admin_cafile asks each client for a certificate
 * signed by one of its CAs. */
static int admin_tls_start(struct broker *b, char *err, size_t errlen)
{
    const struct config *cfg = &b->cfg;
    if (!cfg->admin_certfile[0] && !cfg->admin_keyfile[0]) {
        if (cfg->admin_cafile[0]) {
            snprintf(err, errlen, "admin_cafile needs admin_certfile and admin_keyfile (HTTPS)");
            return -EINVAL;
        }
        return 0;
    }
    if (!cfg->admin_certfile[0] || !cfg->admin_keyfile[0]) {
        snprintf(err, errlen, "admin_certfile and admin_keyfile go together");
        return -EINVAL;
    }
    struct tls_config tc = {
        .certfile = cfg->admin_certfile,
        .keyfile = cfg->admin_keyfile,
        .cafile = cfg->admin_cafile,
        .require_certificate = cfg->admin_cafile[0] != '\0',
    };
    char why[256];
    int rc = tls_ctx_new(&tc, true, &b->admin.tls, why, sizeof(why));
    if (rc)
        snprintf(err, errlen, "admin_%s", why); /* "admin_certfile PATH: reason" */
    return rc;
}

int broker__admin_start(struct broker *b, char *err, size_t errlen)
{
    const char *listen = b->cfg.admin_listen;
    char host[64];
    uint16_t port;
    struct sockaddr_storage addr;
    if (strcmp(listen, "off") == 0)
        return 0;
    size_t tlen = strlen(b->cfg.admin_token);
    if (tlen && tlen < ADMIN_TOKEN_MIN)
        LOG(b, LOG_WARN, NULL, "admin_token is %zu characters long: it can be guessed; use %d or more random ones "
            "(e.g. openssl rand -hex 16)", tlen, ADMIN_TOKEN_MIN);
    int rc = config_hostport_split(listen, host, sizeof(host), &port);
    if (!rc)
        rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                               : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc) {
        snprintf(err, errlen, "admin_listen %s: invalid address", listen);
        return rc < 0 ? rc : -EINVAL;
    }
    rc = admin_tls_start(b, err, errlen);
    if (rc)
        return rc;
    snprintf(b->admin.acc.name, sizeof(b->admin.acc.name), "admin_listen %s", listen);
    b->admin.acc.take = on_connection;
    b->admin.acc.keep_free = b->cfg.fd_reserve / 4; /* /metrics answers when clients are refused */
    rc = broker__acceptor_open(b, &b->admin.acc, (const struct sockaddr *)&addr, 64);
    if (rc) {
        snprintf(err, errlen, "admin_listen %s: %s", listen,
                 rc == UV_EADDRINUSE ? "address already in use (is another broker running?)" : uv_strerror(rc));
        tls_ctx_free(b->admin.tls);
        b->admin.tls = NULL;
        return rc;
    }
    LOG(b, LOG_INFO, NULL, "admin API on %s://%s%s", b->admin.tls ? "https" : "http", listen,
        b->cfg.admin_cafile[0] ? " (client certificates required)" : "");
    return 0;
}

/* A connection waiting for a cluster operation stays until it is answered:
 * the cluster completes every operation when it closes (the outcome, or
 * CLUSTER_ESHUTDOWN), which the client should read rather than a dropped
 * connection. ADMIN_STOP_WAIT_MS bounds the wait. */
void broker__admin_stop(struct broker *b)
{
    broker__admin_events_stop(b);
    acceptor_close(&b->admin.acc);
    tls_ctx_free(b->admin.tls); /* open connections keep their own reference */
    b->admin.tls = NULL;
    list_foreach_safe(it, &b->admin.conns) {
        struct admin_conn *c = list_entry(it, struct admin_conn, link);
        if (c->state == ADMIN_OPEN && c->busy && c->refs > 2) {
            c->last = true;
            uv_timer_start(&c->timer, on_timer, ADMIN_STOP_WAIT_MS, 0);
        } else {
            conn_close(c);
        }
    }
}

/* --- connections without a socket (the fuzzer's) ------------------------------------- */

struct admin_conn *broker__admin_feed_open(struct broker *b, struct buf *sink)
{
    struct admin_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->b = b;
    c->sink = sink;
    c->refs = 1; /* the opener's, released by broker__admin_feed_close */
    list_init(&c->link);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    snprintf(c->ip, sizeof(c->ip), "127.0.0.1");
    snprintf(c->peer, sizeof(c->peer), "127.0.0.1:0");
    return c;
}

void broker__admin_feed(struct admin_conn *c, const void *data, size_t len)
{
    if (c->state != ADMIN_OPEN)
        return; /* dropped, as a draining connection drops what it reads */
    if (buf_append(&c->in, data, len) != 0) {
        conn_close(c);
        return;
    }
    process(c);
}

/* What on_read does with the client's end of stream. */
void broker__admin_feed_eof(struct admin_conn *c)
{
    if (c->state == ADMIN_OPEN && (c->busy || c->writes)) {
        c->eof = true;
        c->last = true;
        return;
    }
    conn_close(c);
}

void broker__admin_feed_close(struct admin_conn *c)
{
    conn_close(c);
    broker__admin_release(c);
}
