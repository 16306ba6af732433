/* bench: one MQTT client connection: connect, handshake, subscribe, publish, acks.
 *
 * Happy path: IDLE -> CONNECTING (TCP) -> HANDSHAKE (CONNECT sent) -> READY, via
 * SUBSCRIBING (SUBSCRIBE sent, waiting for SUBACK) for sub clients. A publisher
 * in READY sends whenever its pacing allows: every -I ms (drift-corrected: the
 * n-th message is due n * I after the first), or with -I 0 as fast as flow
 * control allows, which is one write in flight per connection (TCP backpressure)
 * and at most -F unacknowledged QoS 1/2 messages. Messages are encoded into
 * c->out while a write is in flight and go out together with the next one, so
 * a fast publisher writes batches of up to BATCH_BYTES.
 *
 * Failure modes: a failed TCP connect, a refused CONNACK, no CONNACK or SUBACK
 * within --connect-timeout (checked by the run's tick), EOF or a read / write error, a malformed packet or a
 * DISCONNECT from the broker all end in bench__client_close(c, code), which
 * counts the failure once, closes the handle and, for a connection that never
 * got its CONNACK, retries while --num-retry-connect allows. Stopping sends
 * DISCONNECT after whatever is queued and closes once it is written.
 *
 * TLS (-S): the TLS handshake is part of HANDSHAKE. The CONNECT is queued at
 * once and the engine (common/tls.h) keeps it until the session is up, so the
 * connect time covers TCP, TLS and CONNACK. Every flush encrypts c->out into
 * c->wbuf, which also carries the handshake's records; every read is
 * decrypted into the run's shared plaintext buffer before it is parsed. A
 * failed handshake (a broker the CA does not vouch for, a refused client
 * certificate) counts as BENCH_ERR_TLS; the first one's reason goes to stderr.
 *
 * WebSocket (--ws, over TLS with -S): HANDSHAKE begins with the upgrade
 * request on BENCH_WS_PATH; its 101 (checked by ws.c) sends the CONNECT.
 * Every flush then wraps c->out in one masked binary frame (after any pong
 * owed); what is read is unframed into the run's shared buffer, a partial
 * frame kept in c->ws_in. A refused upgrade or a frame that breaks RFC 6455
 * counts as BENCH_ERR_WS; a close frame ends the connection as an EOF.
 *
 * Memory: everything lives in the client struct (one element of the run's array,
 * freed only after the loop has ended); the only heap buffers are the outgoing
 * bytes, a partial incoming packet, the expanded topic, and under TLS the
 * session. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tls.h"

#define BATCH_BYTES (64u * 1024)

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static bool connected_state(const struct bench_client *c)
{
    return c->state == BENCH_C_SUBSCRIBING || c->state == BENCH_C_READY;
}

static uint16_t next_pid(struct bench_client *c)
{
    if (++c->next_pid == 0)
        c->next_pid = 1;
    return c->next_pid;
}

/* --- closing ----------------------------------------------------------------- */

static void release_buffers(struct bench_client *c)
{
    if (c->tls) {
        tls_conn_free(c->tls);
        free(c->tls);
        c->tls = NULL;
    }
    buf_free(&c->wbuf); /* kept between writes under TLS */
    buf_free(&c->ws_in);
    buf_free(&c->ws_ctrl);
    c->ws_upgrading = false;
    buf_free(&c->out);
    buf_free(&c->pend);
    free(c->topic);
    c->topic = NULL;
}

static void final_closed(struct bench_client *c)
{
    struct bench_run *r = c->run;
    c->state = BENCH_C_CLOSED;
    if (c->open) {
        c->open = false;
        r->open_clients--;
    }
    bench__run_client_closed(r, c);
}

static void timer_closed(uv_handle_t *h)
{
    struct bench_client *c = h->data;
    c->open_handles--;
    final_closed(c);
}

/* A connection attempt that could not even begin (no handle to close). */
static void gave_up(struct bench_client *c, int rc)
{
    struct bench_run *r = c->run;
    bench__stats_error(&r->stats, rc);
    r->stats.conn_failed++;
    if (r->opts->mode == BENCH_PUB && !c->pub_done) {
        c->pub_done = true;
        r->pub_done++;
    }
    bench__run_settle(r, c);
    if (c->open_handles > 0) {
        c->state = BENCH_C_CLOSING;
        uv_close((uv_handle_t *)&c->timer, timer_closed);
    } else {
        final_closed(c);
    }
    bench__run_check_done(r);
}

static void tcp_closed(uv_handle_t *h)
{
    struct bench_client *c = h->data;
    struct bench_run *r = c->run;
    c->open_handles--;
    release_buffers(c);
    if (c->retry && !r->stopping) {
        c->retry = false;
        c->state = BENCH_C_IDLE;
        bench__client_start(c); /* failures are handled inside */
        return;
    }
    if (c->retry) { /* stopped while waiting to retry */
        c->retry = false;
        bench__run_settle(r, c);
    }
    if (c->open_handles > 0) {
        uv_close((uv_handle_t *)&c->timer, timer_closed);
        return;
    }
    final_closed(c);
}

/* Ends the connection. fail_code is 0 for an orderly end (stopping), a negative
 * libuv error or a BENCH_ERR_* code otherwise. */
void bench__client_close(struct bench_client *c, int fail_code)
{
    struct bench_run *r = c->run;
    struct bench_stats *s = &r->stats;
    if (c->state == BENCH_C_IDLE || c->state == BENCH_C_CLOSING || c->state == BENCH_C_CLOSED)
        return;
    if (c->state == BENCH_C_CONNECTING || c->state == BENCH_C_HANDSHAKE) {
        s->connecting--;
        if (fail_code) {
            bench__stats_error(s, fail_code);
            c->attempts++;
            if (c->attempts <= r->opts->num_retry_connect && !r->stopping)
                c->retry = true;
            else
                s->conn_failed++;
        }
    } else { /* SUBSCRIBING or READY */
        s->alive--;
        if (fail_code && !r->stopping) {
            bench__stats_error(s, fail_code);
            s->lost++;
        }
    }
    c->fail_code = fail_code;
    r->inflight -= c->inflight;
    c->inflight = 0;
    c->publishing = false;
    if (r->opts->mode == BENCH_PUB && !c->pub_done && !c->retry) {
        c->pub_done = true;
        r->pub_done++;
    }
    if (c->open_handles > 1)
        uv_timer_stop(&c->timer);
    c->state = BENCH_C_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, tcp_closed);
    if (!c->retry)
        bench__run_settle(r, c);
    bench__run_check_done(r);
}

/* --- writing ----------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status);

/* Under TLS: c->out encrypted into c->wbuf (the engine's buffer, handed
 * over when wbuf is empty), with whatever the handshake has to send. */
static void flush_tls(struct bench_client *c)
{
    struct bench_run *r = c->run;
    if (c->out.len) {
        if (tls_conn_write(c->tls, c->out.data, c->out.len) != 0) {
            bench__client_close(c, BENCH_ERR_TLS);
            return;
        }
        c->out.len = 0;
    }
    if (!tls_conn_pending(c->tls))
        return;
    c->wbuf.len = 0;
    if (tls_conn_output(c->tls, &c->wbuf) != 0) {
        bench__client_close(c, UV_ENOMEM);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)c->wbuf.data, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc) {
        bench__client_close(c, rc);
        return;
    }
    c->writing = true;
    r->writing++;
    c->t_last_send = uv_now(r->loop);
}

/* --ws: c->out becomes the frames owed (pongs) followed by one binary frame
 * of what c->out held; the old buffer is kept for the next control frames. */
static int ws_wrap(struct bench_client *c)
{
    struct bench_run *r = c->run;
    if (!r->opts->ws || c->ws_upgrading || (!c->out.len && !c->ws_ctrl.len))
        return 0;
    if (c->out.len &&
        bench__ws_frame(&c->ws_ctrl, BENCH_WS_BINARY, c->out.data, c->out.len, (uint32_t)bench__rng_next(&r->rng)))
        return -1;
    struct buf framed = c->ws_ctrl;
    c->ws_ctrl = c->out;
    c->ws_ctrl.len = 0;
    c->out = framed;
    return 0;
}

static void flush(struct bench_client *c)
{
    struct bench_run *r = c->run;
    if (c->writing || !(connected_state(c) || c->state == BENCH_C_HANDSHAKE))
        return;
    if (ws_wrap(c) != 0) {
        bench__client_close(c, UV_ENOMEM);
        return;
    }
    if (c->tls) {
        flush_tls(c);
        return;
    }
    if (c->out.len == 0)
        return;
    /* The buffer goes to the write; c->out starts empty but keeps the last
     * buffer's capacity when the write completes (see on_write). */
    c->wbuf = c->out;
    buf_init(&c->out);
    uv_buf_t b = uv_buf_init((char *)c->wbuf.data, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc) {
        buf_free(&c->wbuf);
        bench__client_close(c, rc);
        return;
    }
    c->writing = true;
    r->writing++;
    c->t_last_send = uv_now(r->loop);
}

static void on_write(uv_write_t *req, int status)
{
    struct bench_client *c = req->data;
    struct bench_run *r = c->run;
    c->writing = false;
    r->writing--;
    if (c->tls) {
        c->wbuf.len = 0; /* the records went out; the buffer stays for the next ones */
    } else if (c->out.data == NULL) { /* reuse the buffer just written */
        c->out = c->wbuf;
        c->out.len = 0;
        buf_init(&c->wbuf);
    } else {
        buf_free(&c->wbuf);
    }
    if (status < 0) {
        if (status != UV_ECANCELED)
            bench__client_close(c, status);
        return;
    }
    if (c->state == BENCH_C_CLOSING || c->state == BENCH_C_CLOSED)
        return;
    if (c->disconnecting && c->out.len == 0) {
        bench__client_close(c, 0);
        return;
    }
    if (c->publishing)
        bench__client_publish(c); /* encodes more and flushes */
    else
        flush(c);
    bench__run_check_done(r);
}

static int encode(struct bench_client *c, const struct proto_packet *p)
{
    int rc = proto_encode(p, c->run->opts->version, &c->out);
    if (rc) {
        bench__client_close(c, rc == PROTO_ENOMEM ? UV_ENOMEM : BENCH_ERR_PROTOCOL);
        return -1;
    }
    return 0;
}

static int send_ack(struct bench_client *c, uint8_t type, uint16_t pid)
{
    if (c->disconnecting) /* nothing may follow the DISCONNECT */
        return 0;
    struct proto_packet p;
    memset(&p, 0, sizeof(p));
    p.type = type;
    p.flags = type == PROTO_PUBREL ? 2 : 0;
    p.u.ack.packet_id = pid;
    return encode(c, &p);
}

static void send_connect(struct bench_client *c)
{
    struct bench_run *r = c->run;
    const struct bench_opts *o = r->opts;
    char id[320];
    bench__client_id(r, c, id, sizeof(id));
    struct proto_packet p;
    memset(&p, 0, sizeof(p));
    p.type = PROTO_CONNECT;
    struct proto_connect *cn = &p.u.connect;
    cn->version = o->version;
    cn->clean_start = o->clean;
    cn->keep_alive = o->keepalive;
    cn->client_id = proto_cstr(id);
    if (o->username) {
        cn->has_username = true;
        cn->username = proto_cstr(o->username);
    }
    if (o->password) {
        cn->has_password = true;
        cn->password = proto_cstr(o->password);
    }
    if (o->version == PROTO_V5 && o->session_expiry) {
        cn->props.has |= PROTO_HAS_SESSION_EXPIRY;
        cn->props.session_expiry = o->session_expiry;
    }
    if (encode(c, &p) == 0)
        flush(c);
}

static void send_subscribe(struct bench_client *c)
{
    struct bench_run *r = c->run;
    const struct bench_opts *o = r->opts;
    struct proto_sub_entry entries[BENCH_MAX_TOPICS];
    char *topics[BENCH_MAX_TOPICS] = {0};
    char id[320];
    bench__client_id(r, c, id, sizeof(id));
    struct bench_tpl_ctx ctx = {.seq = o->start_number + c->index + 1, .client_id = id,
                                .user = o->username, .msg_seq = r->stats.sent + 1,
                                .rng = &r->rng};
    memset(entries, 0, sizeof(entries));
    int ok = 1;
    for (size_t i = 0; i < o->ntopics && ok; i++) {
        size_t n = bench__tpl_expand(&o->topics[i], &ctx, NULL, 0);
        topics[i] = malloc(n + 1);
        if (!topics[i]) {
            ok = 0;
            break;
        }
        bench__tpl_expand(&o->topics[i], &ctx, topics[i], n + 1);
        entries[i].filter = proto_cstr(topics[i]);
        entries[i].qos = o->qos;
    }
    if (ok) {
        struct proto_packet p;
        memset(&p, 0, sizeof(p));
        p.type = PROTO_SUBSCRIBE;
        p.flags = 2;
        p.u.subscribe.packet_id = next_pid(c);
        p.u.subscribe.count = (uint32_t)o->ntopics;
        p.u.subscribe.entries = entries;
        if (encode(c, &p) == 0)
            flush(c);
    }
    for (size_t i = 0; i < o->ntopics; i++)
        free(topics[i]);
    if (!ok)
        bench__client_close(c, UV_ENOMEM);
}

/* --- publishing -------------------------------------------------------------- */

static void publish_finished(struct bench_client *c)
{
    if (c->pub_done)
        return;
    c->pub_done = true;
    c->publishing = false;
    c->run->pub_done++;
    uv_timer_stop(&c->timer);
}

static int encode_publish(struct bench_client *c, uint64_t now_ns)
{
    struct bench_run *r = c->run;
    const struct bench_opts *o = r->opts;
    struct bench_stats *s = &r->stats;
    struct proto_publish pub;
    memset(&pub, 0, sizeof(pub));
    pub.qos = o->qos;
    pub.retain = o->retain;
    if (c->topic) {
        pub.topic = proto_cstr(c->topic);
    } else {
        char id[320];
        bench__client_id(r, c, id, sizeof(id));
        struct bench_tpl_ctx ctx = {.seq = o->start_number + c->index + 1, .client_id = id,
                                    .user = o->username, .msg_seq = s->sent + 1, .rng = &r->rng};
        size_t n = bench__tpl_expand(&o->topics[0], &ctx, r->tbuf, sizeof(r->tbuf));
        if (n >= sizeof(r->tbuf))
            n = sizeof(r->tbuf) - 1;
        pub.topic.p = (const uint8_t *)r->tbuf;
        pub.topic.len = (uint32_t)n;
    }
    if (o->qos)
        pub.packet_id = next_pid(c);
    pub.payload.p = r->payload;
    pub.payload.len = (uint32_t)r->payload_len;
    if (proto_publish_encode_header(&pub, o->version, &c->out) != 0 ||
        buf_reserve(&c->out, r->payload_len) != 0)
        return -1;
    uint8_t *dst = buf_tail(&c->out);
    buf_put_mem(&c->out, r->payload, r->payload_len);
    if (r->stamped)
        bench__stamp_write(dst, o->clock, bench__clock_ns(o->clock));
    c->sent++;
    if (s->sent++ == 0)
        s->t_first_pub = now_ns;
    s->t_last_pub = now_ns;
    if (o->qos) {
        c->inflight++;
        r->inflight++;
    }
    if (o->limit && --r->limit_left == 0)
        bench__run_limit_reached(r);
    return 0;
}

static void on_pub_timer(uv_timer_t *t)
{
    bench__client_publish(t->data);
}

void bench__client_publish(struct bench_client *c)
{
    struct bench_run *r = c->run;
    const struct bench_opts *o = r->opts;
    if (c->state != BENCH_C_READY || !c->publishing || c->pub_done || r->stopping ||
        c->disconnecting)
        return;
    uint64_t now_ms = uv_now(r->loop);
    uint64_t now_ns = uv_hrtime();
    uint64_t due = UINT64_MAX;
    if (o->pub_interval_ms)
        due = (now_ms - c->t_pub_start) / o->pub_interval_ms + 1;
    bool waiting_for_time = false;
    while (c->out.len < BATCH_BYTES) {
        if (o->limit_per_client && c->sent >= o->limit_per_client) {
            publish_finished(c);
            break;
        }
        if (o->limit && r->limit_left == 0) {
            publish_finished(c);
            break;
        }
        if (o->qos && c->inflight >= c->window)
            break; /* an ack calls back here */
        if (c->sent >= due) {
            waiting_for_time = true;
            break;
        }
        if (due != UINT64_MAX && due - c->sent > 1)
            r->stats.overrun++;
        if (encode_publish(c, now_ns) != 0) {
            bench__client_close(c, UV_ENOMEM);
            return;
        }
        if (c->pub_done) /* the run's -L was reached */
            break;
    }
    if (o->limit_per_client && c->sent >= o->limit_per_client)
        publish_finished(c);
    flush(c);
    if (waiting_for_time && !c->pub_done && c->state == BENCH_C_READY) {
        uint64_t next = c->t_pub_start + c->sent * (uint64_t)o->pub_interval_ms;
        uv_timer_start(&c->timer, on_pub_timer, next > now_ms ? next - now_ms : 0, 0);
    }
}

static void start_publishing(struct bench_client *c)
{
    struct bench_run *r = c->run;
    const struct bench_opts *o = r->opts;
    if (c->publishing || c->pub_done)
        return;
    if (!o->topics[0].per_message) {
        char id[320];
        bench__client_id(r, c, id, sizeof(id));
        struct bench_tpl_ctx ctx = {.seq = o->start_number + c->index + 1, .client_id = id,
                                    .user = o->username, .msg_seq = 0, .rng = &r->rng};
        size_t n = bench__tpl_expand(&o->topics[0], &ctx, NULL, 0);
        c->topic = malloc(n + 1);
        if (!c->topic) {
            bench__client_close(c, UV_ENOMEM);
            return;
        }
        bench__tpl_expand(&o->topics[0], &ctx, c->topic, n + 1);
    }
    c->publishing = true;
    c->t_pub_start = uv_now(r->loop);
    bench__client_publish(c);
}

/* Called by the run when -w held publishing back until every client connected. */
void bench__client_start_publishing(struct bench_client *c)
{
    if (c->state == BENCH_C_READY)
        start_publishing(c);
}

/* --- reading ----------------------------------------------------------------- */

static void on_connack(struct bench_client *c, const struct proto_connack *ca)
{
    struct bench_run *r = c->run;
    const struct bench_opts *o = r->opts;
    struct bench_stats *s = &r->stats;
    if (c->state != BENCH_C_HANDSHAKE) {
        bench__client_close(c, BENCH_ERR_PROTOCOL);
        return;
    }
    if (ca->reason != 0) {
        bench__client_close(c, BENCH_ERR_CONNACK + ca->reason);
        return;
    }
    uint64_t now = uv_hrtime();
    s->connecting--;
    s->connected++;
    s->alive++;
    s->t_last_conn = now;
    bench__hist_record(&r->connect, (now - c->t_start) / 1000);
    if (o->version == PROTO_V5) {
        if ((ca->props.has & PROTO_HAS_RECEIVE_MAXIMUM) && ca->props.receive_maximum &&
            ca->props.receive_maximum < c->window)
            c->window = ca->props.receive_maximum;
        if (ca->props.has & PROTO_HAS_SERVER_KEEP_ALIVE)
            c->keepalive = ca->props.server_keep_alive;
    }
    if (o->mode == BENCH_SUB) {
        c->state = BENCH_C_SUBSCRIBING;
        send_subscribe(c);
        return;
    }
    c->state = BENCH_C_READY;
    bench__run_settle(r, c);
    if (o->mode == BENCH_PUB && r->publishing_allowed && c->state == BENCH_C_READY)
        start_publishing(c);
}

static void on_suback(struct bench_client *c, const struct proto_suback *sa)
{
    struct bench_run *r = c->run;
    if (c->state != BENCH_C_SUBSCRIBING) {
        bench__client_close(c, BENCH_ERR_PROTOCOL);
        return;
    }
    for (uint32_t i = 0; i < sa->count; i++) {
        if (sa->reasons[i] < 0x80)
            r->stats.subscribed++;
        else
            r->stats.sub_failed++;
    }
    c->state = BENCH_C_READY;
    bench__run_settle(r, c);
}

static void on_publish(struct bench_client *c, const struct proto_publish *pub, uint64_t now)
{
    struct bench_run *r = c->run;
    struct bench_stats *s = &r->stats;
    if (r->stopping) /* after the end of the run (-d, -L, a signal): ack, do not count */
        goto ack;
    if (s->recv++ == 0)
        s->t_first_recv = now;
    s->t_last_recv = now;
    int clock;
    uint64_t ts;
    if (bench__stamp_read(pub->payload.p, pub->payload.len, &clock, &ts) == 0) {
        uint64_t t = clock == BENCH_CLOCK_MONOTONIC ? now : bench__clock_ns(clock);
        if (t >= ts)
            bench__hist_record(&r->latency, (t - ts) / 1000);
        else
            s->bad_stamp++;
    } else {
        s->unstamped++;
    }
    if (r->opts->limit && s->recv >= r->opts->limit)
        bench__run_stop(r);
ack:
    if (pub->qos == 1)
        send_ack(c, PROTO_PUBACK, pub->packet_id);
    else if (pub->qos == 2)
        send_ack(c, PROTO_PUBREC, pub->packet_id);
}

static void ack_done(struct bench_client *c, uint8_t reason)
{
    struct bench_run *r = c->run;
    if (c->inflight == 0)
        return; /* an ack we did not wait for: ignore */
    c->inflight--;
    r->inflight--;
    if (reason >= 0x80)
        r->stats.pub_failed++;
    else
        r->stats.acked++;
    bench__client_publish(c);
    bench__run_check_done(r);
}

static void on_packet(struct bench_client *c, const struct proto_packet *p, uint64_t now)
{
    switch (p->type) {
    case PROTO_CONNACK:
        on_connack(c, &p->u.connack);
        break;
    case PROTO_SUBACK:
        on_suback(c, &p->u.suback);
        break;
    case PROTO_PUBLISH:
        if (c->state != BENCH_C_READY && c->state != BENCH_C_SUBSCRIBING)
            bench__client_close(c, BENCH_ERR_PROTOCOL);
        else
            on_publish(c, &p->u.publish, now);
        break;
    case PROTO_PUBACK:
    case PROTO_PUBCOMP:
        ack_done(c, p->u.ack.reason);
        break;
    case PROTO_PUBREC:
        if (p->u.ack.reason >= 0x80)
            ack_done(c, p->u.ack.reason);
        else
            send_ack(c, PROTO_PUBREL, p->u.ack.packet_id);
        break;
    case PROTO_PUBREL:
        send_ack(c, PROTO_PUBCOMP, p->u.ack.packet_id);
        break;
    case PROTO_PINGRESP:
    case PROTO_UNSUBACK:
        break;
    case PROTO_DISCONNECT:
        bench__client_close(c, BENCH_ERR_DISCONNECT);
        break;
    default:
        bench__client_close(c, BENCH_ERR_PROTOCOL);
        break;
    }
}

/* Decodes the whole packets at the start of buf; returns the bytes consumed, or
 * -1 once the client has been closed. */
static ssize_t parse(struct bench_client *c, const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    uint64_t now = uv_hrtime();
    while (pos < len) {
        size_t plen;
        int rc = proto_frame(buf + pos, len - pos, BENCH_MAX_PACKET, &plen);
        if (rc == PROTO_EINCOMPLETE)
            break;
        if (rc) {
            bench__client_close(c, BENCH_ERR_PROTOCOL);
            return -1;
        }
        struct proto_packet p;
        rc = proto_decode(buf + pos, plen, c->run->opts->version, &p);
        if (rc) {
            bench__client_close(c, BENCH_ERR_PROTOCOL);
            return -1;
        }
        on_packet(c, &p, now);
        proto_packet_release(&p);
        pos += plen;
        if (c->state == BENCH_C_CLOSING || c->state == BENCH_C_CLOSED)
            return -1;
    }
    return (ssize_t)pos;
}

/* Says why the first WebSocket failure of the run happened, then ends c. */
static void ws_fail(struct bench_client *c, const char *why)
{
    struct bench_run *r = c->run;
    if (!r->ws_reported) {
        r->ws_reported = true;
        fprintf(stderr, "starling-bench: %s\n", why);
    }
    bench__client_close(c, BENCH_ERR_WS);
}

static void send_connect(struct bench_client *c);

/* --ws: the frames in data (appended to a partial one kept in c->ws_in)
 * unwrapped into r->ws_plain; pings answered, a close ends the connection.
 * Returns 0, or -1 once the client has been closed. */
static int ws_unwrap(struct bench_client *c, const uint8_t *data, size_t len)
{
    struct bench_run *r = c->run;
    r->ws_plain.len = 0;
    if (c->ws_in.len || c->ws_upgrading) {
        if (buf_append(&c->ws_in, data, len) != 0) {
            bench__client_close(c, UV_ENOMEM);
            return -1;
        }
        data = c->ws_in.data;
        len = c->ws_in.len;
    }
    size_t pos = 0;
    if (c->ws_upgrading) {
        char why[160];
        size_t head = 0;
        char key[BENCH_WS_KEY_LEN + 1];
        bench__ws_key(r->ws_seed ^ ((uint64_t)c->index << 20) ^ c->attempts, key);
        int rc = bench__ws_response(data, len, key, &head, why, sizeof(why));
        if (rc < 0) {
            ws_fail(c, why);
            return -1;
        }
        if (rc == 0)
            return 0; /* kept in c->ws_in */
        c->ws_upgrading = false;
        pos = head;
        send_connect(c);
        if (c->state != BENCH_C_HANDSHAKE)
            return -1;
    }
    while (pos < len) {
        struct bench_ws_frame f;
        long n = bench__ws_parse(data + pos, len - pos, BENCH_MAX_PACKET + 16, &f);
        if (n == 0)
            break;
        if (n < 0 || f.opcode == BENCH_WS_TEXT) {
            ws_fail(c, "WebSocket: the broker sent a frame RFC 6455 or MQTT forbids");
            return -1;
        }
        pos += (size_t)n;
        if (f.opcode == BENCH_WS_CLOSE) {
            bench__client_close(c, UV_EOF);
            return -1;
        }
        if (f.opcode == BENCH_WS_PING) {
            if (bench__ws_frame(&c->ws_ctrl, BENCH_WS_PONG, f.payload, f.len, (uint32_t)bench__rng_next(&r->rng))) {
                bench__client_close(c, UV_ENOMEM);
                return -1;
            }
            continue;
        }
        if (f.opcode == BENCH_WS_PONG)
            continue;
        if (buf_append(&r->ws_plain, f.payload, f.len) != 0) { /* binary or continuation */
            bench__client_close(c, UV_ENOMEM);
            return -1;
        }
    }
    /* keep the partial frame: bounded by the frame maximum checked above */
    if (data == c->ws_in.data) {
        buf_consume(&c->ws_in, pos);
        if (!c->ws_in.len)
            buf_free(&c->ws_in); /* idle connections hold no frame buffer */
    } else if (pos < len && buf_append(&c->ws_in, data + pos, len - pos) != 0) {
        bench__client_close(c, UV_ENOMEM);
        return -1;
    }
    return 0;
}

/* Every read lands in the run's shared buffer: it is consumed before the next
 * read callback of any client, so idle connections hold no read buffer. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct bench_client *c = h->data;
    buf->base = (char *)c->run->rbuf;
    buf->len = sizeof(c->run->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct bench_client *c = st->data;
    if (nread < 0) {
        bench__client_close(c, (int)nread);
        return;
    }
    if (nread == 0)
        return;
    const uint8_t *data = (const uint8_t *)buf->base;
    size_t len = (size_t)nread;
    if (c->tls) {
        struct bench_run *r = c->run;
        r->plain.len = 0;
        int rc = tls_conn_input(c->tls, data, len, &r->plain);
        if (rc) {
            if (rc != -ENOMEM && !r->tls_reported) {
                r->tls_reported = true;
                fprintf(stderr, "starling-bench: TLS: %s\n", c->tls->why);
            }
            bench__client_close(c, rc == -ENOMEM ? UV_ENOMEM : BENCH_ERR_TLS);
            return;
        }
        if (c->tls->peer_closed && r->plain.len == 0) {
            bench__client_close(c, UV_EOF);
            return;
        }
        data = r->plain.data;
        len = r->plain.len;
        if (len == 0) {
            flush(c); /* the handshake's next records */
            return;
        }
    }
    if (c->run->opts->ws) {
        if (ws_unwrap(c, data, len) != 0)
            return;
        data = c->run->ws_plain.data;
        len = c->run->ws_plain.len;
        if (len == 0) {
            flush(c); /* pongs */
            return;
        }
    }
    bool pending = c->pend.len > 0;
    if (pending) { /* complete the partial packet first */
        /* Bounded: proto_frame refuses a packet over BENCH_MAX_PACKET as soon as
         * its header is in, so the partial packet is at most that long. */
        if (buf_append(&c->pend, data, len) != 0) {
            bench__client_close(c, UV_ENOMEM);
            return;
        }
        data = c->pend.data;
        len = c->pend.len;
    }
    ssize_t used = parse(c, data, len);
    if (used < 0)
        return;
    size_t rest = len - (size_t)used;
    if (pending) {
        buf_consume(&c->pend, (size_t)used);
    } else if (rest && buf_append(&c->pend, data + used, rest) != 0) {
        bench__client_close(c, UV_ENOMEM);
        return;
    }
    flush(c); /* acks */
}

/* --- connecting -------------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
    struct bench_client *c = req->data;
    if (status == UV_ECANCELED || c->state != BENCH_C_CONNECTING)
        return;
    if (status < 0) {
        bench__client_close(c, status);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc) {
        bench__client_close(c, rc);
        return;
    }
    struct bench_run *r = c->run;
    if (r->tls_ctx) {
        /* -h's name (or address) for SNI and, with --cacertfile, the check */
        const char *name = r->opts->hosts[c->index % r->opts->nhosts];
        c->tls = malloc(sizeof(*c->tls));
        rc = c->tls ? tls_conn_init(c->tls, r->tls_ctx, name) : UV_ENOMEM;
        if (rc) {
            free(c->tls);
            c->tls = NULL;
            bench__client_close(c, UV_ENOMEM);
            return;
        }
        if (tls_conn_connect(c->tls) != 0) {
            bench__client_close(c, BENCH_ERR_TLS);
            return;
        }
    }
    c->state = BENCH_C_HANDSHAKE;
    if (r->opts->ws) {
        /* the CONNECT waits for the 101 (ws_unwrap) */
        char key[BENCH_WS_KEY_LEN + 1];
        const struct bench_opts *o = r->opts;
        bench__ws_key(r->ws_seed ^ ((uint64_t)c->index << 20) ^ c->attempts, key);
        c->ws_upgrading = true;
        if (bench__ws_request(&c->out, o->hosts[c->index % o->nhosts], o->port, BENCH_WS_PATH, key) != 0) {
            bench__client_close(c, UV_ENOMEM);
            return;
        }
        flush(c);
        return;
    }
    send_connect(c);
}

int bench__client_start(struct bench_client *c)
{
    struct bench_run *r = c->run;
    const struct bench_opts *o = r->opts;
    struct bench_stats *s = &r->stats;
    int rc;
    if (!c->open) {
        c->open = true;
        r->open_clients++;
    }
    if (o->mode == BENCH_PUB && c->open_handles == 0) {
        rc = uv_timer_init(r->loop, &c->timer);
        if (rc) {
            gave_up(c, rc);
            return rc;
        }
        c->timer.data = c;
        c->open_handles++;
    }
    rc = uv_tcp_init(r->loop, &c->tcp);
    if (rc) {
        gave_up(c, rc);
        return rc;
    }
    c->tcp.data = c;
    c->open_handles++;
    c->state = BENCH_C_CONNECTING;
    c->window = o->inflight ? (uint16_t)o->inflight : UINT16_MAX;
    c->keepalive = o->keepalive;
    c->inflight = 0;
    c->t_start = uv_hrtime();
    s->started++;
    s->connecting++;
    if (o->nifaddrs) {
        rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&r->ifaddrs[c->index % o->nifaddrs],
                         0);
        if (rc) {
            bench__client_close(c, rc);
            return rc;
        }
    }
    c->creq.data = c;
    rc = uv_tcp_connect(&c->creq, &c->tcp,
                        (const struct sockaddr *)&r->addrs[c->index % o->nhosts], on_connect);
    if (rc) {
        bench__client_close(c, rc);
        return rc;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    return 0;
}

/* --- stopping and the periodic tick ------------------------------------------ */

void bench__client_stop(struct bench_client *c)
{
    switch (c->state) {
    case BENCH_C_CONNECTING:
    case BENCH_C_HANDSHAKE:
        bench__client_close(c, 0);
        break;
    case BENCH_C_SUBSCRIBING:
    case BENCH_C_READY:
        c->publishing = false;
        c->disconnecting = true;
        if (c->open_handles > 1)
            uv_timer_stop(&c->timer);
        if (proto_encode_simple(PROTO_DISCONNECT, &c->out) != 0) {
            bench__client_close(c, 0);
            break;
        }
        flush(c); /* on_write closes once the DISCONNECT is written */
        break;
    default:
        break;
    }
}

void bench__client_tick(struct bench_client *c, uint64_t now_ns, uint64_t now_ms)
{
    struct bench_run *r = c->run;
    switch (c->state) {
    case BENCH_C_CONNECTING:
    case BENCH_C_HANDSHAKE:
        if (now_ns - c->t_start > r->connect_timeout_ns)
            bench__client_close(c, UV_ETIMEDOUT);
        break;
    case BENCH_C_SUBSCRIBING:
        if (now_ns - c->t_start > r->connect_timeout_ns) { /* no SUBACK */
            bench__client_close(c, UV_ETIMEDOUT);
            break;
        }
        /* fall through */
    case BENCH_C_READY:
        /* Ping after three quarters of the keep-alive without sending anything. */
        if (c->keepalive && !c->writing && !c->disconnecting &&
            now_ms - c->t_last_send >= (uint64_t)c->keepalive * 750) {
            if (proto_encode_simple(PROTO_PINGREQ, &c->out) == 0)
                flush(c);
        }
        break;
    default:
        break;
    }
}
