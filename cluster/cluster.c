/* cluster: the Raft node's life: cluster_start (a short driver over named
 * steps), cluster_run, the tick (leadership, links, timeouts), the drain and
 * the close, and the node's status.
 *
 * The module's other parts: the data directory (datadir.c), proposals
 * batched into log entries (batch.c) and forwarded to the leader
 * (forward.c), the state machine that applies committed entries (fsm.c,
 * apply.c), the peer port and its handshake (peer.c), framed streams
 * (frame.c), the data links between members (link.c), membership changes
 * (member.c), the command codec (command.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"
#include "tls.h"

#define TICK_MS 100
#define DRAIN_MS 1000

void cluster__handle_closed(struct cluster *c)
{
    if (--c->open_handles == 0 && c->closing && !c->raft_started) {
        store_close(c->store);
        c->store = NULL;
        if (c->lock_fd >= 0)
            close(c->lock_fd); /* releases the data dir */
        void (*cb)(void *) = c->close_cb;
        void *arg = c->close_arg;
        if (c->tls_server)
            tls_ctx_free(c->tls_server);
        if (c->tls_client)
            tls_ctx_free(c->tls_client);
        free(c->tunnel_rbuf);
        free(c->results);
        free(c->cmds);
        buf_free(&c->batch);
        free(c->waiters);
        free(c);
        if (cb)
            cb(arg);
    }
}

void cluster__on_handle_closed(uv_handle_t *h) { cluster__handle_closed(h->data); }

void cluster__close_free(uv_handle_t *h) { raft_free(h); }

/* --- fail-stop ------------------------------------------------------------------------- */

void cluster__fail_stop(struct cluster *c, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->fatal)
        return;
    c->fatal = true;
    snprintf(c->fatal_msg, sizeof(c->fatal_msg), "%s", msg);
    if (!c->raft_started)
        return; /* while the log replays in cluster_run: its error says it */
    CLOG(c, CLUSTER_LOG_ERROR, "cluster: %s; stopping this node", msg);
    if (c->cfg.fatal)
        c->cfg.fatal(c->cfg.ctx, msg);
}

/* Errors with which libraft refuses a request before anything entered its
 * log: the node is as it was. */
static bool raft_refusal(int rc)
{
    switch (rc) {
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
    case RAFT_BADID:
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
    case RAFT_BADROLE:
    case RAFT_CANTCHANGE:
    case RAFT_NOTFOUND:
    case RAFT_SHUTDOWN:
    case RAFT_BUSY:
        return true;
    default:
        return false;
    }
}

/* libraft 0.22.1 persists an entry inside the call that submits it: when the
 * log cannot take it (no descriptor, no space, an I/O error, no memory) the
 * call fails after its core counted the entry in (its last index moved), and
 * after it freed the entry's buffer. No later entry commits on that log: the
 * node stops. A call that fails with the last index unchanged was refused. */
int cluster__raft_check(struct cluster *c, int rc, raft_index before, const char *what)
{
    if (rc == 0 || c->closing)
        return rc;
    if (raft_last_index(&c->raft) == before) {
        uint64_t now = uv_now(c->loop);
        if (!raft_refusal(rc) && !c->refusing_since_ms) {
            c->refusing_since_ms = now; /* watch_commit stops a leader that refuses for long */
            c->refusing_rc = rc;
        }
        if (!raft_refusal(rc) && now - c->refused_logged_ms >= 1000) {
            /* at most one a second: under load every batch may be refused */
            c->refused_logged_ms = now;
            CLOG(c, CLUSTER_LOG_WARN, "cluster: raft refused %s: %s (raft error %d)", what, raft_errmsg(&c->raft),
                 rc);
        }
        return rc;
    }
    const char *detail = raft_errmsg(&c->raft);
    if (!detail || !detail[0])
        detail = raft_strerror(rc);
    if (rc == RAFT_NOSPACE || strstr(detail, "No space left"))
        cluster__fail_stop(c, "disk full: the Raft log in %s/raft cannot grow (%s: %s, raft error %d)",
                           c->cfg.data_dir, what, detail, rc);
    else
        cluster__fail_stop(c, "the Raft log in %s/raft failed (%s: %s, raft error %d: %s)", c->cfg.data_dir,
                           what, detail, rc, raft_strerror(rc));
    return rc;
}

/* --- closing ------------------------------------------------------------------------------ */

static void on_raft_closed(struct raft *r)
{
    struct cluster *c = r->data;
    raft_uv_close(&c->io);
    c->raft_started = false;
    cluster__handle_closed(c);
}

static void finish_close(struct cluster *c)
{
    /* pending proposals fail; nothing new is accepted */
    cluster__batches_fail_all(c, CLUSTER_ESHUTDOWN);
    cluster__member_close_all(c);
    cluster__forward_close_all(c);
    cluster__link_close_all(c);
    cluster__peer_close_all(c);
    uv_close((uv_handle_t *)&c->tick, cluster__on_handle_closed);
    uv_close((uv_handle_t *)&c->link_flush, cluster__on_handle_closed);
    uv_close((uv_handle_t *)&c->flush, cluster__on_handle_closed);
    if (!c->raft_inited && c->io_inited)
        raft_uv_close(&c->io);
    if (c->raft_inited) {
        c->open_handles++;
        c->raft_started = true; /* keeps the store open until raft has closed */
        c->raft.data = c;
        raft_close(&c->raft, on_raft_closed);
    }
}

/* The flush idle handle: the open batch becomes a log entry at the end of the
 * loop turn, and closing runs here rather than within a raft callback. */
static void on_idle(uv_idle_t *h)
{
    struct cluster *c = h->data;
    uv_idle_stop(&c->flush);
    if (c->closing) {
        finish_close(c);
        return;
    }
    cluster__batch_flush(c);
    cluster__drain_check(c);
}

void cluster__flush_soon(struct cluster *c) { uv_idle_start(&c->flush, on_idle); }

static void start_close(struct cluster *c)
{
    c->draining = false;
    c->closing = true;
    /* not from within a raft callback: the idle handle runs it next turn */
    cluster__flush_soon(c);
}

void cluster__drain_check(struct cluster *c)
{
    if (c->draining && list_empty(&c->pending) && !c->batch_count)
        start_close(c);
}

void cluster_close(struct cluster *c, void (*close_cb)(void *arg), void *arg)
{
    if (c->closing || c->draining)
        return;
    c->close_cb = close_cb;
    c->close_arg = arg;
    if (c->raft_started && !c->fatal && (c->batch_count || !list_empty(&c->pending))) {
        /* what the broker proposed while it closed its connections (session
         * releases) gets up to DRAIN_MS to commit before Raft stops */
        c->draining = true;
        c->drain_deadline = uv_now(c->loop) + DRAIN_MS;
        cluster__flush_soon(c);
        return;
    }
    start_close(c);
}

/* --- the tick: leadership, links, timeouts ---------------------------------------------- */

static void on_barrier(struct raft_apply *req, int status, void *result)
{
    struct cluster *c = container_of(req, struct cluster, barrier);
    (void)result;
    c->barrier_pending = false;
    if (status == 0)
        CLOG(c, CLUSTER_LOG_DEBUG, "cluster: leader barrier committed");
}

static void watch_leader(struct cluster *c)
{
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(&c->raft, &leader, &address);
    uint64_t term = raft_current_term(&c->raft);
    if (leader)
        c->leader_known_ms = uv_now(c->loop);
    if (leader != c->leader_seen || (leader && term != c->term_seen && raft_state(&c->raft) == RAFT_LEADER)) {
        if (leader)
            CLOG(c, CLUSTER_LOG_INFO, "cluster: leader is node %u (term %" PRIu64 ")", (unsigned)leader, term);
        else
            CLOG(c, CLUSTER_LOG_INFO, "cluster: no leader (term %" PRIu64 ")", term);
        c->leader_seen = (uint32_t)leader;
        c->term_seen = term;
        if (leader == c->cfg.node_id && !c->barrier_pending && !c->fatal) {
            /* commits what earlier terms left uncommitted before we rely on it */
            if (cluster__append_noop(c, &c->barrier, on_barrier, "appending the leader's no-op entry") == 0)
                c->barrier_pending = true;
        }
    }
}

/* A leader with entries past its commit index whose commit index has not
 * moved for WEDGE_ELECTIONS election timeouts, while its own log took
 * nothing either (or it is the only voter), is wedged: its log stopped
 * taking writes (libraft retries a failed write for ever) or libraft's state
 * went wrong. So is a leader whose libraft refused every entry for that long
 * with an error other than "not the leader" (after descriptors ran out,
 * libraft 0.22.1 may refuse every entry with RAFT_NOSPACE, free disk or not).
 * Followers it reaches (a leader that reaches no majority steps down after
 * one election timeout) cannot help: it stops, and another node (or a
 * restart) takes over. */
#define WEDGE_ELECTIONS 10

static void watch_commit(struct cluster *c)
{
    uint64_t now = uv_now(c->loop);
    uint64_t limit = (uint64_t)WEDGE_ELECTIONS * c->cfg.election_timeout_ms;
    if (raft_state(&c->raft) != RAFT_LEADER)
        c->refusing_since_ms = 0;
    if (c->refusing_since_ms && now - c->refusing_since_ms >= limit) {
        char dir[1100];
        struct statvfs fs;
        unsigned long long free_mb = 0;
        snprintf(dir, sizeof(dir), "%s/raft", c->cfg.data_dir);
        if (statvfs(dir, &fs) == 0)
            free_mb = (unsigned long long)((uint64_t)fs.f_bavail * fs.f_frsize >> 20);
        cluster__fail_stop(c,
                           "leader wedged: libraft refused every entry for %llu ms (%s, raft error %d; %llu MiB free "
                           "in %s)",
                           (unsigned long long)(now - c->refusing_since_ms), raft_strerror(c->refusing_rc),
                           c->refusing_rc, free_mb, dir);
        return;
    }
    raft_index commit = raft_commit_index(&c->raft), last = raft_last_index(&c->raft), own = 0;
    bool leader = raft_state(&c->raft) == RAFT_LEADER;
    if (!leader || last <= commit || raft_match_index(&c->raft, c->cfg.node_id, &own) != 0)
        own = last;
    bool own_stuck = c->raft.configuration.n == 1 || (own < last && own == c->own_seen);
    if (!leader || last <= commit || commit != c->commit_seen || !own_stuck) {
        c->commit_seen = commit;
        c->own_seen = own;
        c->commit_moved_ms = now;
        return;
    }
    uint64_t waited = now - c->commit_moved_ms;
    if (waited >= limit)
        cluster__fail_stop(c,
                           "leader wedged: entries up to %llu, nothing committed past %llu for %llu ms (the Raft log "
                           "in %s/raft stopped taking writes: look for a full disk or an I/O error there)",
                           (unsigned long long)last, (unsigned long long)commit, (unsigned long long)waited,
                           c->cfg.data_dir);
}

static void on_tick(uv_timer_t *t)
{
    struct cluster *c = t->data;
    if (c->closing || !c->raft_started)
        return;
    if (c->draining && uv_now(c->loop) >= c->drain_deadline) {
        start_close(c);
        return;
    }
    watch_leader(c);
    watch_commit(c);
    if (c->fatal)
        return;
    cluster__link_tick(c);
    cluster__member_tick(c);
    if (c->closing || c->draining)
        return;
    cluster__forward_tick(c);
    cluster__batches_kick(c);
    cluster__batches_expire(c);
}

void cluster__tick_soon(struct cluster *c)
{
    if (!c->closing && c->raft_started)
        uv_timer_start(&c->tick, on_tick, 0, TICK_MS);
}

/* --- start ----------------------------------------------------------------------------------- */

/* The node with its handles, nothing started; NULL when memory is short. */
static struct cluster *node_new(uv_loop_t *loop, const struct cluster_config *cfg)
{
    struct cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->cfg = *cfg;
    c->lock_fd = -1;
    list_init(&c->pending);
    list_init(&c->handshakes);
    list_init(&c->fwd_in);
    list_init(&c->links);
    list_init(&c->link_ins);
    list_init(&c->link_srcs);
    list_init(&c->ops);
    uv_idle_init(loop, &c->flush);
    c->flush.data = c;
    c->open_handles++;
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    c->open_handles++;
    uv_idle_init(loop, &c->link_flush);
    c->link_flush.data = c;
    c->open_handles++;
    c->started_ms = uv_now(loop);
    if (getrandom(&c->incarnation, sizeof(c->incarnation), 0) != sizeof(c->incarnation))
        c->incarnation = ((uint64_t)getpid() << 32) ^ uv_hrtime();
    return c;
}

static void config_defaults(struct cluster_config *cfg)
{
    if (!cfg->commit_timeout_ms)
        cfg->commit_timeout_ms = 5000;
    if (!cfg->election_timeout_ms)
        cfg->election_timeout_ms = 1000;
    if (!cfg->heartbeat_ms)
        cfg->heartbeat_ms = 100;
    if (!cfg->node_timeout_ms)
        cfg->node_timeout_ms = 2 * cfg->election_timeout_ms;
    if (cfg->heartbeat_ms >= cfg->election_timeout_ms)
        cfg->heartbeat_ms = cfg->election_timeout_ms / 5 ? cfg->election_timeout_ms / 5 : 1;
}

/* Checks what the configuration must hold and sets this node's raft address:
 * its peer line, or the bind address alone. */
static int config_check(struct cluster *c, char *err, size_t errlen)
{
    const struct cluster_config *cfg = &c->cfg;
    const char *self = NULL;
    for (int i = 0; i < cfg->peer_count; i++)
        if (cfg->peers[i].id == cfg->node_id)
            self = cfg->peers[i].address;
    if (cfg->node_id == 0 || cfg->node_id > 0xFFFF) {
        snprintf(err, errlen, "node_id %u is out of range 1..65535", cfg->node_id);
        return -EINVAL;
    }
    for (const char *p = cfg->cluster_name; p && *p; p++)
        if (*p == ' ' || *p == '\t') {
            snprintf(err, errlen, "cluster_name \"%s\" contains a space", cfg->cluster_name);
            return -EINVAL;
        }
    if (cfg->peer_count && !self) {
        snprintf(err, errlen, "the peer list has no line for this node (node_id %u)", cfg->node_id);
        return -EINVAL;
    }
    if (cfg->peer_count > 1 && (!cfg->secret || !cfg->secret[0]) && !c->tls_server) {
        snprintf(err, errlen, "cluster_secret (or cluster_certfile) must be set for a cluster of %d nodes",
                 cfg->peer_count);
        return -EINVAL;
    }
    snprintf(c->address, sizeof(c->address), "%s", self ? self : cfg->bind);
    return 0;
}

/* libraft on its uv backend (the log in raft_dir) and our transport and state machine. */
static int raft_setup(struct cluster *c, const char *raft_dir, char *err, size_t errlen)
{
    cluster__transport_setup(c);
    cluster__fsm_setup(c);
    int rc = raft_uv_init(&c->io, c->loop, raft_dir, &c->transport);
    if (rc) {
        snprintf(err, errlen, "raft log %s: %s", raft_dir, c->io.errmsg[0] ? c->io.errmsg : raft_strerror(rc));
        return rc;
    }
    c->io_inited = true;
    raft_uv_set_auto_recovery(&c->io, false); /* never drop entries silently */
    raft_uv_set_connect_retry_delay(&c->io, 200);
    rc = raft_init(&c->raft, &c->io, &c->fsm, c->cfg.node_id, c->address);
    if (rc) {
        snprintf(err, errlen, "raft: %s", raft_errmsg(&c->raft));
        return rc;
    }
    c->raft_inited = true;
    raft_set_election_timeout(&c->raft, c->cfg.election_timeout_ms);
    raft_set_heartbeat_timeout(&c->raft, c->cfg.heartbeat_ms);
    raft_set_pre_vote(&c->raft, true);
    if (c->cfg.snapshot_threshold)
        raft_set_snapshot_threshold(&c->raft, c->cfg.snapshot_threshold);
    if (c->cfg.snapshot_trailing)
        raft_set_snapshot_trailing(&c->raft, c->cfg.snapshot_trailing);
    return 0;
}

/* A fresh log starts with the configured voters (or this node alone); a
 * joining node waits for the leader's configuration; a log that exists is
 * left as it is. */
static int bootstrap(struct cluster *c, char *err, size_t errlen)
{
    const struct cluster_config *cfg = &c->cfg;
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rc = 0;
    if (c->joining) {
        rc = RAFT_CANTBOOTSTRAP; /* the leader sends the configuration */
    } else if (cfg->peer_count) {
        for (int i = 0; i < cfg->peer_count && rc == 0; i++)
            rc = raft_configuration_add(&conf, cfg->peers[i].id, cfg->peers[i].address, RAFT_VOTER);
    } else {
        rc = raft_configuration_add(&conf, cfg->node_id, c->address, RAFT_VOTER);
    }
    if (rc == 0 && !c->joining)
        rc = raft_bootstrap(&c->raft, &conf);
    raft_configuration_close(&conf);
    if (rc == RAFT_CANTBOOTSTRAP)
        return 0;
    if (rc) {
        snprintf(err, errlen, "raft bootstrap: %s", raft_errmsg(&c->raft)[0] ? raft_errmsg(&c->raft) : raft_strerror(rc));
        return rc;
    }
    CLOG(c, CLUSTER_LOG_INFO, "cluster: bootstrapped node %u with %d voter(s)", cfg->node_id,
         cfg->peer_count ? cfg->peer_count : 1);
    if (store_applied_index(c->store) > 0) {
        snprintf(err, errlen,
                 "data dir %s: the store has entries up to %" PRIu64
                 " but the raft log was empty (the raft/ directory was removed?): refusing to start",
                 cfg->data_dir, store_applied_index(c->store));
        return -EINVAL;
    }
    return 0;
}

/* Whether the cluster port listens on a loopback address only (then a lone
 * node's plaintext port is reachable from this host alone). */
static bool bind_is_loopback(const char *bind)
{
    return strncmp(bind, "127.", 4) == 0 || strncmp(bind, "[::1]:", 6) == 0 || strncmp(bind, "localhost:", 10) == 0;
}

int cluster_start(uv_loop_t *loop, const struct cluster_config *cfg, struct cluster **out, char *err,
                  size_t errlen)
{
    struct cluster *c = node_new(loop, cfg);
    *out = c; /* from here on, failures are closed with cluster_close */
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    config_defaults(&c->cfg);
    char raft_dir[1100];
    if (cluster__peer_tls_setup(c, err, errlen) != 0 || config_check(c, err, errlen) != 0 ||
        cluster__datadir_open(c, raft_dir, sizeof(raft_dir), err, errlen) != 0 ||
        raft_setup(c, raft_dir, err, errlen) != 0 || bootstrap(c, err, errlen) != 0)
        return -EINVAL;
    /* a single node listens too when it has a secret or a certificate: it can be joined */
    bool listen = cfg->peer_count > 1 || (cfg->secret && cfg->secret[0]) || c->tls_server || c->joining;
    if (listen && cluster__peer_listen(c, err, errlen) != 0)
        return -EINVAL;
    if (listen && !c->tls_server && (cfg->peer_count > 1 || c->joining || !bind_is_loopback(cfg->bind)))
        CLOG(c, CLUSTER_LOG_WARN, "cluster: peer links are not encrypted (no cluster_certfile): lab use only");
    return 0;
}

int cluster_run(struct cluster *c, char *err, size_t errlen)
{
    int rc = raft_start(&c->raft);
    if (rc) {
        snprintf(err, errlen, "raft log of %s: %s", c->cfg.data_dir,
                 raft_errmsg(&c->raft)[0] ? raft_errmsg(&c->raft) : raft_strerror(rc));
        return -EIO;
    }
    c->raft_started = true;
    if (c->fatal) {
        /* replaying the log failed (the store is full, the disk is full) */
        snprintf(err, errlen, "%s", c->fatal_msg);
        return -EIO;
    }
    uint64_t applied = store_applied_index(c->store);
    unsigned voters = 0;
    for (unsigned i = 0; i < c->raft.configuration.n; i++)
        voters += c->raft.configuration.servers[i].role == RAFT_VOTER;
    if (applied > raft_last_index(&c->raft) && voters > 1) {
        /* A leader counts itself towards a commit only once its own write is
         * on disk, but it commits (and we apply) as soon as a majority of the
         * others has the entry: killed then, its log may end before what it
         * applied. Those entries are on a majority; they come back from the
         * leader and the state machine skips them (fsm.c). */
        CLOG(c, CLUSTER_LOG_WARN,
             "cluster: the store is at entry %" PRIu64 " but the raft log ends at %llu: the last entries did not "
             "reach this node's disk before it stopped; they were committed by the other voters and will be "
             "replicated back",
             applied, (unsigned long long)raft_last_index(&c->raft));
    } else if (applied > raft_last_index(&c->raft)) {
        snprintf(err, errlen,
                 "data dir %s: the store is at entry %" PRIu64 " but the raft log ends at %llu (entries lost?): "
                 "refusing to start",
                 c->cfg.data_dir, applied, (unsigned long long)raft_last_index(&c->raft));
        return -EIO;
    }
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    cluster__link_tick(c); /* links to the configured members now, not at the first tick */
    return 0;
}

int cluster_load(struct cluster *c, int (*cb)(void *arg, const struct cluster_cmd *cmd), void *arg)
{
    return cluster__state_load(c->store, cb, arg);
}

int cluster_queue_read(struct cluster *c, const uint8_t *id, size_t id_len, uint64_t after,
                       int (*cb)(void *arg, const struct cluster_qmsg *m), void *arg)
{
    return cluster__queue_read(c->store, id, id_len, after, cb, arg);
}

uint32_t cluster_queue_count(struct cluster *c, const uint8_t *id, size_t id_len)
{
    struct store_txn *txn;
    if (store_read_begin(c->store, &txn) != 0)
        return 0;
    struct store_qstat st;
    int rc = store_queue_stat(txn, id, id_len, &st);
    store_txn_end(txn);
    return rc == 0 ? st.count : 0;
}

int cluster_inbound_read(struct cluster *c, const uint8_t *id, size_t id_len, int (*cb)(void *arg, uint16_t pid),
                         void *arg)
{
    return cluster__inbound_read(c->store, id, id_len, cb, arg);
}

uint64_t cluster_applied_index(struct cluster *c) { return store_applied_index(c->store); }

void cluster_status_get(struct cluster *c, struct cluster_status *out)
{
    memset(out, 0, sizeof(*out));
    out->node_id = c->cfg.node_id;
    out->applied_index = store_applied_index(c->store);
    out->commits = c->commits;
    out->commit_us_total = c->commit_us_total;
    if (!c->raft_started) {
        out->role = 3;
        return;
    }
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(&c->raft, &leader, &address);
    out->leader_id = (uint32_t)leader;
    if (!leader)
        out->leaderless_ms = uv_now(c->loop) - (c->leader_known_ms ? c->leader_known_ms : c->started_ms);
    int st = raft_state(&c->raft);
    out->role = st == RAFT_LEADER ? 2 : st == RAFT_CANDIDATE ? 1 : st == RAFT_FOLLOWER ? 0 : 3;
    out->term = raft_current_term(&c->raft);
    out->commit_index = raft_commit_index(&c->raft);
    out->last_index = raft_last_index(&c->raft);
}

