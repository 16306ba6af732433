/* broker: start and stop of a node (listeners, the housekeeping tick, the
 * per-turn write flush, signals), time and logging. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "broker.h"
#include "internal.h"

uint64_t broker__now(const struct broker *b) { return uv_now(b->loop); }

uint64_t broker__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void broker__log(const struct broker *b, int level, const struct conn *c, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug", "trace"};
    char when[32];
    struct timespec ts;
    struct tm tm;
    (void)b;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char peer[BROKER_PEER_LEN];
    if (c)
        fprintf(stderr, "%s.%03ldZ %s [%s %s] %s\n", when, ts.tv_nsec / 1000000, names[level],
                c->client_id ? c->client_id : "-", broker__conn_peer(c, peer), msg);
    else
        fprintf(stderr, "%s.%03ldZ %s %s\n", when, ts.tv_nsec / 1000000, names[level], msg);
}

static void cluster_log(void *ctx, int level, const char *fmt, ...)
{
    struct broker *b = ctx;
    if (level > b->cfg.log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    broker__log(b, level, NULL, "%s", msg);
}

static void cluster_fatal(void *ctx, const char *why)
{
    struct broker *b = ctx;
    (void)why; /* logged by the cluster */
    if (!cluster_removed(b->cluster)) {
        /* A failed node exits at once, as kill -9 would, which the store and
         * the Raft log are built to survive: libraft 0.22 may free its I/O
         * twice when closed after a failed write (canonical/raft#341), and a
         * write that never finishes would hold a close for ever. Nothing that
         * was acknowledged depends on the close. */
        fflush(NULL);
        _exit(1);
    }
    b->exit_code = 0; /* removed: stopped as asked */
    broker_stop(b);
}

static void cluster_closed(void *arg)
{
    struct broker *b = arg;
    b->cluster = NULL;
}

static int start_cluster(struct broker *b, char *err, size_t errlen)
{
    const struct config *cfg = &b->cfg;
    for (int i = 0; i < cfg->peer_count; i++) {
        b->peers[i].id = cfg->peers[i].id;
        b->peers[i].address = cfg->peers[i].address;
    }
    struct cluster_config cc = {
        .node_id = cfg->node_id,
        .data_dir = cfg->data_dir,
        .cluster_name = cfg->cluster_name,
        .bind = cfg->cluster_bind,
        .secret = cfg->cluster_secret,
        .certfile = cfg->cluster_certfile,
        .keyfile = cfg->cluster_keyfile,
        .cafile = cfg->cluster_cafile,
        .crlfile = cfg->cluster_crlfile,
        .peers = b->peers,
        .peer_count = cfg->peer_count,
        .commit_timeout_ms = cfg->commit_timeout_ms,
        .election_timeout_ms = cfg->election_timeout_ms,
        .heartbeat_ms = cfg->heartbeat_ms,
        .snapshot_threshold = cfg->snapshot_threshold,
        .snapshot_trailing = cfg->snapshot_trailing,
        .store_map_size = (size_t)cfg->store_max_mb << 20,
        .apply = broker__apply,
        .reload = broker__state_reload,
        .fatal = cluster_fatal,
        .receive = broker__remote_receive,
        .node_event = broker__remote_node_event,
        .ctx = b,
        .log = cluster_log,
    };
    int rc = cluster_start(b->loop, &cc, &b->cluster, err, errlen);
    if (rc)
        return rc;
    rc = broker__state_load(b);
    if (rc) {
        snprintf(err, errlen, "loading the replicated state: %s", rc == -ENOMEM ? "out of memory" : "store error");
        return rc;
    }
    return cluster_run(b->cluster, err, errlen);
}

static int listen_on(struct broker *b, struct listener *l, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    int rc = strchr(l->cfg.bind, ':') ? uv_ip6_addr(l->cfg.bind, l->cfg.port, (struct sockaddr_in6 *)&addr)
                                      : uv_ip4_addr(l->cfg.bind, l->cfg.port, (struct sockaddr_in *)&addr);
    if (rc) {
        snprintf(err, errlen, "listener %s:%u: invalid address", l->cfg.bind, l->cfg.port);
        return rc;
    }
    l->b = b;
    rc = broker__listener_prepare(b, l, err, errlen); /* TLS: its files, or one line saying which failed */
    if (rc)
        return rc;
    snprintf(l->acc.name, sizeof(l->acc.name), "port %u", l->cfg.port);
    l->acc.take = broker__conn_accept;
    l->acc.keep_free = (b->cfg.fd_reserve + 1) / 2;
    b->listener_count++;
    rc = broker__acceptor_open(b, &l->acc, (const struct sockaddr *)&addr, 1024);
    if (rc) {
        snprintf(err, errlen, "listener %s:%u: %s", l->cfg.bind, l->cfg.port,
                 rc == UV_EADDRINUSE ? "address already in use (is another broker running?)" : uv_strerror(rc));
        return rc;
    }
    LOG(b, LOG_INFO, NULL, "listening on %s:%u (%s)", l->cfg.bind, l->cfg.port, broker__listener_describe(l));
    return 0;
}

/* A node that has seen no leader for the fence time disconnects its clients
 * (v5: 0x9C, use another server) and refuses new ones until it sees one again:
 * the majority may give their sessions to other nodes once the lease ran out,
 * and two nodes must never serve one client id. */
bool broker__fenced(const struct broker *b)
{
    struct cluster_status st;
    cluster_status_get(b->cluster, &st);
    return !st.leader_id && st.leaderless_ms >= broker__fence_ms(b);
}

static void fence_check(struct broker *b)
{
    struct cluster_status st;
    cluster_status_get(b->cluster, &st);
    if (st.leader_id) {
        if (b->fenced)
            LOG(b, LOG_INFO, NULL, "leader is node %u again: accepting clients", st.leader_id);
        b->fenced = false;
        return;
    }
    if (b->fenced || st.leaderless_ms < broker__fence_ms(b))
        return;
    b->fenced = true;
    LOG(b, LOG_WARN, NULL, "no leader for %llu ms: disconnecting %u client(s) so they can use another node",
        (unsigned long long)st.leaderless_ms, b->connected);
    list_foreach_safe(it, &b->conns) {
        struct conn *c = list_entry(it, struct conn, link);
        if (c->state == CONN_ACTIVE)
            broker__conn_close(c, PROTO_RC_USE_ANOTHER_SERVER);
    }
}

static void on_tick(uv_timer_t *t)
{
    struct broker *b = t->data;
    fence_check(b);
    broker__fds_tick(b);
    broker__partials_tick(b);
    broker__claims_tick(b);
    struct cluster_status st;
    cluster_status_get(b->cluster, &st);
    if (st.role == 2)
        broker__orphans_adopt(b);
    broker__session_tick(b);
    broker__remote_applied(b); /* those that waited too long */
    if (b->cfg.sys_interval && broker__now(b) - b->last_sys_ms >= (uint64_t)b->cfg.sys_interval * 1000) {
        b->last_sys_ms = broker__now(b);
        broker__sys_publish(b);
    }
}

static void on_flush(uv_prepare_t *h)
{
    struct broker *b = h->data;
    /* forwarded PUBLISHes that waited for the entries applied since (whole
     * entries: the in-memory indexes follow an entry command by command) */
    broker__remote_applied(b);
    /* a flush may drain a subscriber and release publishers: read them
     * before the loop polls, or they would wait for an unrelated event */
    do
        broker__flush_all(b);
    while (broker__backpressure_resume(b));
}

static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    broker__listeners_reload(s->data);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct broker *b = s->data;
    LOG(b, LOG_INFO, NULL, "signal %d: stopping", signum);
    broker_stop(b);
}

void broker__init(struct broker *b, const struct config *cfg)
{
    b->cfg = *cfg;
    list_init(&b->claims);
    list_init(&b->parked);
    list_init(&b->fwd_waiting);
    list_init(&b->conns);
    list_init(&b->partials);
    for (uint32_t i = 0; i < BROKER_WHEEL_SLOTS; i++)
        list_init(&b->wheel[i]);
    list_init(&b->sessions_timed);
    list_init(&b->retained_list);
    list_init(&b->barriers);
    list_init(&b->admin.conns);
    list_init(&b->congested);
    list_init(&b->resuming);
    map_init(&b->sessions);
    trie_init(&b->subs);
    trie_init(&b->shared);
    trie_init(&b->retained);
    auth_init(&b->access.tables);
}

int broker_start(uv_loop_t *loop, const struct config *cfg, struct broker **out, char *err, size_t errlen)
{
    struct broker *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *out = b;
    broker__init(b, cfg);
    b->loop = loop;
    b->read_chunk = malloc(BROKER_READ_CHUNK);
    if (!b->read_chunk) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    b->started_ms = uv_now(loop);
    uv_timer_init(loop, &b->tick);
    b->tick.data = b;
    uv_timer_init(loop, &b->will_timer);
    b->will_timer.data = b;
    uv_timer_init(loop, &b->slow_timer);
    b->slow_timer.data = b;
    uv_timer_init(loop, &b->wheel_timer);
    b->wheel_timer.data = b;
    uv_prepare_init(loop, &b->flush);
    b->flush.data = b;
    uv_signal_init(loop, &b->sigint);
    uv_signal_init(loop, &b->sigterm);
    uv_signal_init(loop, &b->sighup);
    b->sigint.data = b->sigterm.data = b->sighup.data = b;
    for (int i = 0; i < CONFIG_MAX_LISTENERS; i++)
        b->listeners[i].acc.fd = -1;
    b->admin.acc.fd = -1;
    int rc = broker__admin_check(cfg, err, errlen);
    if (rc)
        return rc;
    /* the password and ACL files first: one that does not load stops the
     * start before anything else happened */
    rc = broker__access_start(b, err, errlen);
    if (rc)
        return rc;
    rc = start_cluster(b, err, errlen);
    if (rc)
        return rc;
    if (b->stopping) {
        /* the cluster stopped the node while it started (its reason is logged) */
        snprintf(err, errlen, "the cluster stopped this node during start");
        return -ECANCELED;
    }
    for (int i = 0; i < cfg->listener_count; i++) {
        b->listeners[i].cfg = cfg->listeners[i];
        rc = listen_on(b, &b->listeners[i], err, errlen);
        if (rc)
            return rc;
    }
    rc = broker__admin_start(b, err, errlen);
    if (rc)
        return rc;
    broker__fds_init(b);
    uv_timer_start(&b->tick, on_tick, 1000, 1000);
    uv_timer_start(&b->wheel_timer, broker__wheel_tick, BROKER_WHEEL_MS, BROKER_WHEEL_MS);
    uv_prepare_start(&b->flush, on_flush);
    uv_signal_start(&b->sigint, on_signal, SIGINT);
    uv_signal_start(&b->sigterm, on_signal, SIGTERM);
    uv_signal_start(&b->sighup, on_sighup, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    if (cfg->sys_interval) {
        b->last_sys_ms = broker__now(b);
        broker__sys_publish(b);
    }
    LOG(b, LOG_INFO, NULL, "starlingd %s node %u ready (data dir %s)", STARLING_VERSION, cfg->node_id,
        cfg->data_dir);
    return 0;
}

static void close_if(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

void broker_stop(struct broker *b)
{
    if (b->stopping)
        return;
    b->stopping = true;
    for (int i = 0; i < b->listener_count; i++)
        acceptor_close(&b->listeners[i].acc);
    broker__admin_stop(b);
    broker__access_stop(b);
    while (!list_empty(&b->conns))
        broker__conn_close(list_entry(list_first(&b->conns), struct conn, link), PROTO_RC_SERVER_SHUTTING_DOWN);
    broker__flush_all(b);
    close_if((uv_handle_t *)&b->tick);
    close_if((uv_handle_t *)&b->will_timer);
    close_if((uv_handle_t *)&b->slow_timer);
    close_if((uv_handle_t *)&b->wheel_timer);
    close_if((uv_handle_t *)&b->flush);
    close_if((uv_handle_t *)&b->sigint);
    close_if((uv_handle_t *)&b->sigterm);
    close_if((uv_handle_t *)&b->sighup);
    if (b->cluster)
        cluster_close(b->cluster, cluster_closed, b);
}

void broker_restart(struct broker *b)
{
    b->exit_code = BROKER_EXIT_RESTART;
    broker_stop(b);
}

void broker_free(struct broker *b)
{
    if (!b)
        return;
    /* collect first: freeing a session edits the map */
    size_t k;
    struct session **all = broker__sessions_all(b, &k);
    for (size_t i = 0; all && i < k; i++)
        broker__session_free(b, all[i]);
    free(all);
    broker__retain_free_all(b);
    trie_free(&b->subs);
    trie_free(&b->shared);
    trie_free(&b->retained);
    map_free(&b->sessions);
    free(b->match);
    for (uint32_t i = 0; i < b->route_cap; i++)
        free(b->route[i].shared);
    free(b->route);
    broker__remote_free(b);
    free(b->read_chunk);
    broker__access_free(b);
    for (int i = 0; i < CONFIG_MAX_LISTENERS; i++)
        broker__listener_free(&b->listeners[i]);
    free(b);
}

int broker_exit_code(const struct broker *b) { return b->exit_code; }
