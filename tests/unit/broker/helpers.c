/* Helpers shared by the broker core suites: a broker on a private loop,
 * sessions, subscriptions and socketless connections (see helpers.h). */
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "list.h"

struct broker *fx_b;

static uv_loop_t loop;
static bool loop_open;
static char tmp_dir[64];

/* The connections made by fx_connect that are still attached to a session. */
#define FX_MAX_CONNS 32
static struct conn *conns[FX_MAX_CONNS];

/* --- the broker ---------------------------------------------------------------------- */

/* A port nothing listens on right now (bound, read back, released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s", strerror(errno));
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

void fx_start(void)
{
    strcpy(tmp_dir, "/tmp/broker-core-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp");
    cr_assert_eq(uv_loop_init(&loop), 0);
    loop_open = true;

    struct config cfg;
    config_defaults(&cfg);
    cfg.listener_count = 0;
    snprintf(cfg.admin_listen, sizeof(cfg.admin_listen), "off");
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", tmp_dir);
    snprintf(cfg.cluster_bind, sizeof(cfg.cluster_bind), "127.0.0.1:%d", free_port());
    /* the fixture applies subscriptions to the broker only, not to the store
     * msg_put is matched against: the durable path is off here */
    cfg.durable_sessions = false;
    cfg.sys_interval = 0;
    cfg.log_level = LOG_ERROR;
    cfg.election_timeout_ms = 100; /* the lowest allowed: a leader soon, for fx_wait_leader */
    char err[256] = "";
    int rc = broker_start(&loop, &cfg, &fx_b, err, sizeof(err));
    cr_assert_eq(rc, 0, "broker_start: %d %s", rc, err);
    /* the connections here have no socket: what they are sent stays in their
     * buffer for fx_read, the loop may run */
    uv_prepare_stop(&fx_b->flush);
}

static void on_wake(uv_timer_t *t) { (void)t; }

bool fx_run_until(bool (*pred)(void *arg), void *arg, uint64_t timeout_ms)
{
    uv_timer_t wake; /* keeps the loop from blocking in poll */
    uv_timer_init(&loop, &wake);
    uv_timer_start(&wake, on_wake, 5, 5);
    uv_update_time(&loop);
    uint64_t until = uv_now(&loop) + timeout_ms;
    bool ok;
    while (!(ok = pred(arg)) && uv_now(&loop) < until)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static bool is_leader(void *arg)
{
    (void)arg;
    struct cluster_status st;
    cluster_status_get(fx_b->cluster, &st);
    return st.role == 2;
}

void fx_wait_leader(void) { cr_assert(fx_run_until(is_leader, NULL, 5000), "no leader within 5 s"); }

static void close_walk(uv_handle_t *h, void *arg)
{
    (*(int *)arg)++;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Detaches every connection, stops the broker, runs the loop dry (closing
 * whatever is still open then), frees the broker. Returns the number of
 * handles that were left open after the broker stopped. */
static int shutdown_all(void)
{
    for (int i = 0; i < FX_MAX_CONNS; i++)
        if (conns[i] && conns[i]->session)
            fx_disconnect(conns[i]->session);
    memset(conns, 0, sizeof(conns));
    int open = 0;
    if (fx_b)
        broker_stop(fx_b); /* its flush lets go of the connections closed above */
    if (loop_open) {
        while (uv_run(&loop, UV_RUN_DEFAULT))
            ;
        uv_walk(&loop, close_walk, &open);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        loop_open = false;
    }
    broker_free(fx_b);
    fx_b = NULL;
    return open;
}

void fx_finish(void)
{
    int open = shutdown_all();
    cr_assert_eq(open, 0, "%d handle(s) left open on the loop", open);
    check_leaks();
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void fx_teardown(void)
{
    if (fx_b || loop_open) /* the test failed before fx_finish */
        shutdown_all();
    if (tmp_dir[0])
        nftw(tmp_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    tmp_dir[0] = '\0';
}

void fx_sleep(uint64_t ms)
{
    uint64_t until = uv_now(&loop) + ms;
    while (uv_now(&loop) < until) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
        uv_update_time(&loop);
    }
}

/* --- sessions and subscriptions ---------------------------------------------------- */

static uint64_t next_index = 100; /* log index handed to broker__apply */

struct session *fx_session(const char *client_id)
{
    struct session *s = broker__session_create(fx_b, client_id, strlen(client_id));
    cr_assert_not_null(s, "session %s", client_id);
    s->owner = fx_b->cfg.node_id;
    s->expiry = UINT32_MAX;
    s->generation = 1;
    return s;
}

struct sub *fx_subscribe(struct session *s, const char *filter, struct fx_sub_opts o)
{
    struct cluster_cmd cmd = {
        .type = CLUSTER_SUB_ADD,
        .client_id = proto_cstr(s->client_id),
        .node = fx_b->cfg.node_id,
        .generation = s->generation,
        .filter = proto_cstr(filter),
        .qos = o.qos,
        .no_local = o.no_local,
        .retain_as_published = o.rap,
        .sub_id = o.sub_id,
    };
    broker__apply(fx_b, &cmd, 0, next_index++);
    struct sub *sub = broker__sub_find(s, filter, strlen(filter));
    cr_assert_not_null(sub, "subscription %s of %s", filter, s->client_id);
    return sub;
}

void fx_unsubscribe(struct session *s, const char *filter)
{
    struct cluster_cmd cmd = {
        .type = CLUSTER_SUB_DEL,
        .client_id = proto_cstr(s->client_id),
        .node = fx_b->cfg.node_id,
        .generation = s->generation,
        .filter = proto_cstr(filter),
    };
    broker__apply(fx_b, &cmd, 0, next_index++);
}

/* --- messages ------------------------------------------------------------------------ */

struct msg *fx_msg(const char *topic, const char *payload, uint8_t qos, bool retain, const char *origin,
                   uint64_t expire_in_ms)
{
    uint64_t expire_at = expire_in_ms ? broker__now(fx_b) + expire_in_ms : 0;
    struct msg *m = broker__msg_new(proto_cstr(topic), proto_cstr(payload), NULL, qos, retain, expire_at, origin);
    cr_assert_not_null(m);
    return m;
}

uint32_t fx_route(const char *topic, const char *payload, uint8_t qos, bool retain, const char *origin)
{
    struct msg *m = fx_msg(topic, payload, qos, retain, origin, 0);
    uint32_t n = broker__route(fx_b, m, NULL);
    broker__msg_unref(m);
    return n;
}

/* --- connections ------------------------------------------------------------------------ */

struct conn *fx_connect(struct session *s, uint8_t version)
{
    cr_assert_null(s->conn, "%s is connected already", s->client_id);
    int slot = 0;
    while (slot < FX_MAX_CONNS && conns[slot])
        slot++;
    cr_assert_lt(slot, FX_MAX_CONNS, "too many connections");
    struct conn *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->b = fx_b;
    c->state = CONN_ACTIVE;
    c->version = version;
    c->peer_receive_max = 65535;
    /* the acknowledgements waiting; the other links of a connection (the
     * broker's list, the subscribe barrier) are only reached by a close or a
     * PUBLISH read from a socket, which these connections never see */
    list_init(&c->acks);
    c->client_id = strdup(s->client_id);
    broker__conn_hold(c); /* what the socket handles hold on a real one */
    c->session = s;
    s->conn = c;
    s->version = version;
    broker__qos2_in_age(s); /* as claim_accept does */
    conns[slot] = c;
    return c;
}

void fx_resume(struct session *s, bool session_present)
{
    if (session_present)
        broker__session_resend(s);
    broker__session_drain(s);
}

void fx_disconnect(struct session *s)
{
    struct conn *c = s->conn;
    cr_assert_not_null(c, "%s is not connected", s->client_id);
    for (int i = 0; i < FX_MAX_CONNS; i++)
        if (conns[i] == c)
            conns[i] = NULL;
    s->conn = NULL;
    c->session = NULL;
    /* closing: a flush of the broker's leaves it alone and lets go of it */
    c->state = CONN_CLOSING;
    broker__conn_release(c);
}

static void copy_str(char *dst, size_t cap, struct proto_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n)
        memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static void pkt_fill(struct fx_pkt *k, const struct proto_packet *p)
{
    memset(k, 0, sizeof(*k));
    k->type = p->type;
    switch (p->type) {
    case PROTO_PUBLISH: {
        const struct proto_publish *pub = &p->u.publish;
        k->qos = pub->qos;
        k->dup = pub->dup;
        k->retain = pub->retain;
        k->packet_id = pub->packet_id;
        copy_str(k->topic, sizeof(k->topic), pub->topic);
        copy_str(k->payload, sizeof(k->payload), pub->payload);
        k->nids = pub->props.sub_id_count;
        for (uint32_t i = 0; i < k->nids && i < PROTO_MAX_DECODED_SUB_IDS; i++)
            k->ids[i] = pub->props.sub_ids[i];
        k->has_expiry = pub->props.has & PROTO_HAS_MESSAGE_EXPIRY;
        k->expiry = pub->props.message_expiry;
        if (pub->props.has & PROTO_HAS_TOPIC_ALIAS)
            k->alias = pub->props.topic_alias;
        break;
    }
    case PROTO_PUBACK:
    case PROTO_PUBREC:
    case PROTO_PUBREL:
    case PROTO_PUBCOMP:
        k->packet_id = p->u.ack.packet_id;
        k->reason = p->u.ack.reason;
        break;
    case PROTO_DISCONNECT:
        k->reason = p->u.disconnect.reason;
        break;
    default:
        break;
    }
}

int fx_read(struct conn *c, struct fx_pkt *out, int max)
{
    size_t pos = 0;
    int n = 0;
    while (pos < c->out.len) {
        size_t plen;
        int rc = proto_frame(c->out.data + pos, c->out.len - pos, 0, &plen);
        cr_assert_eq(rc, 0, "output of %s: framing error %d at %zu", c->client_id, rc, pos);
        struct proto_packet p;
        rc = proto_decode(c->out.data + pos, plen, c->version, &p);
        cr_assert_eq(rc, 0, "output of %s: packet at %zu does not decode (%d)", c->client_id, pos, rc);
        cr_assert_lt(n, max, "more than %d packets written to %s", max, c->client_id);
        pkt_fill(&out[n++], &p);
        proto_packet_release(&p);
        pos += plen;
    }
    c->out.len = 0;
    return n;
}

size_t fx_pending(struct conn *c) { return c->out.len; }

void fx_client_publish(struct conn *c, const char *topic, const char *payload, uint8_t qos, uint16_t pid,
                       bool dup)
{
    struct proto_packet p = {.type = PROTO_PUBLISH};
    p.u.publish.qos = qos;
    p.u.publish.dup = dup;
    p.u.publish.topic = proto_cstr(topic);
    p.u.publish.packet_id = pid;
    p.u.publish.payload = proto_cstr(payload);
    broker__on_publish(c, &p);
}

void fx_client_ack(struct conn *c, uint8_t type, uint16_t pid, uint8_t reason)
{
    struct proto_packet p = {.type = type};
    p.u.ack.packet_id = pid;
    p.u.ack.reason = reason;
    broker__on_ack(c, &p);
}
