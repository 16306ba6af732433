/* indexes: applies committed commands to the node's in-memory indexes (sessions,
 * subscription trie, share groups, retained messages) and tells the broker's
 * connections what changed (an older owner of a client id is disconnected).
 * Runs on every node in log order; must be deterministic given the log. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "internal.h"

static struct will *will_from_cmd(const struct cluster_will *cw)
{
    struct will *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->topic = str_dup_len((const char *)cw->topic.p, cw->topic.len);
    w->payload = malloc(cw->payload.len ? cw->payload.len : 1);
    w->props_raw = cw->props.len ? malloc(cw->props.len) : NULL;
    if (!w->topic || !w->payload || (cw->props.len && !w->props_raw)) {
        broker__will_free(w);
        return NULL;
    }
    memcpy(w->payload, cw->payload.p, cw->payload.len);
    w->payload_len = cw->payload.len;
    if (cw->props.len)
        memcpy(w->props_raw, cw->props.p, cw->props.len);
    w->props_len = cw->props.len;
    w->qos = cw->qos;
    w->retain = cw->retain;
    w->delay = cw->delay;
    return w;
}

/* Detaches the session's connection, if any, and closes it with 0x8E: the
 * replicated state gave the session to another connection or ended it. */
static void drop_conn(struct session *s)
{
    struct conn *old = s->conn;
    if (!old)
        return;
    s->conn = NULL;
    old->session = NULL;
    broker__conn_close(old, PROTO_RC_SESSION_TAKEN_OVER);
}

/* The session as it was before a claim applied. */
struct claim_prev {
    bool existed;
    uint32_t owner;           /* node id, 0: none */
    bool connected;           /* the replicated state said its connection was up */
    bool ours;                /* a CONNECT on this node waits for this claim */
};

/* The connection the claim replaces: on this node it goes with 0x8E (its
 * will first, when due); a pending delayed will of ours is due when its
 * session ends. */
static void claim_end_previous(struct broker *b, struct session *s, const struct cluster_cmd *cmd)
{
    if (s->conn && s->conn->generation != cmd->generation) {
        /* session takeover: the older connection goes, with 0x8E */
        struct conn *old = s->conn;
        bool will_due = !old->will_suppressed && s->will && (cmd->clean_start || s->will->delay == 0);
        s->conn = NULL;
        old->session = NULL;
        LOG(b, LOG_INFO, old, "session taken over by a new connection");
        if (will_due)
            broker__will_publish(b, s);
        broker__conn_close(old, PROTO_RC_SESSION_TAKEN_OVER);
    } else if (s->will && cmd->clean_start && s->owner == b->cfg.node_id) {
        /* a pending delayed will is due when its session ends */
        broker__will_publish(b, s);
    }
}

/* Clean start: nothing of the old session survives but its id. */
static void session_reset(struct broker *b, struct session *s)
{
    broker__session_clear_subs(b, s);
    broker__outlist_clear(&s->inflight);
    broker__outlist_clear(&s->queue);
    broker__retain_streams_clear(s);
    s->qos2_in_count = 0;
    s->next_packet_id = 1;
}

/* The will of another node's connection that the claim ends, and the claim's
 * own will, which replaces it. */
static void claim_wills(struct broker *b, struct session *s, const struct cluster_cmd *cmd,
                        const struct claim_prev *prev)
{
    broker__will_free(s->lost_will);
    s->lost_will = NULL;
    bool will_due = prev->connected && prev->owner && prev->owner != b->cfg.node_id && s->will &&
                    (cmd->clean_start || s->will->delay == 0);
    if (will_due && prev->ours) {
        s->lost_will = s->will; /* due unless its node answers the takeover (and publishes it) */
        s->will = NULL;
    } else if (will_due && cmd->node == b->cfg.node_id && !cluster_node_alive(b->cluster, prev->owner)) {
        /* a claim of ours whose CONNECT gave up before it committed: no
         * takeover follows, and the old node is lost: its connection's will
         * is due here */
        broker__will_publish(b, s);
    }
    broker__will_free(s->will);
    s->will = NULL;
    if (cmd->has_will)
        s->will = will_from_cmd(&cmd->will);
}

/* The claim's node owns the session from now on, as the claim describes it. */
static void claim_own(struct broker *b, struct session *s, const struct cluster_cmd *cmd, uint64_t index,
                      uint32_t prev_owner)
{
    s->will_at = 0;
    s->expire_at = 0;
    s->expiring = false;
    s->generation = cmd->generation;
    s->owner = cmd->node;
    s->expiry = cmd->expiry;
    s->released = false;
    s->expire_wall = 0;
    s->adopted = false;
    /* the session left this node with this claim: forwarded messages routed
     * before it follow it. TAKEOVER may come before the claim is applied here
     * (the new node applies it first, e.g. as leader): the handover already
     * made cmd->node the owner, with this claim's index, and that must not
     * read as "never ours", or messages other nodes still route here (not
     * having applied the claim either) are dropped after their PUBACK
     * (issue 15) */
    bool handed_over = s->moved && prev_owner == cmd->node && s->claim_index == index;
    s->moved = (prev_owner == b->cfg.node_id || handed_over) && cmd->node != b->cfg.node_id;
    s->claim_index = index;
    if (broker__access_session_user(s, cmd->has_user, cmd->user) != 0)
        LOG(b, LOG_ERROR, NULL, "out of memory: session %s keeps its previous user for the ACL", s->client_id);
}

/* Our claim took the session from another node: serve it only once that node
 * stopped; it answers TAKEOVER with what it held, or its lease runs out. */
static void claim_await_handoff(struct broker *b, struct session *s, const struct cluster_cmd *cmd,
                                const struct claim_prev *prev)
{
    if (!prev->ours || !prev->existed || !prev->owner || prev->owner == b->cfg.node_id)
        return;
    bool alive = cluster_node_alive(b->cluster, prev->owner);
    uint64_t wait = prev->connected ? broker__lease_ms(b) : alive ? 2000 : 0;
    if (alive)
        broker__remote_takeover(b, s, prev->owner, cmd->clean_start);
    if (wait) {
        s->handoff_from = prev->owner;
        s->handoff_deadline = broker__now(b) + wait;
    }
}

static int apply_claim(struct broker *b, const struct cluster_cmd *cmd, uint64_t index)
{
    const char *id = (const char *)cmd->client_id.p;
    size_t len = cmd->client_id.len;
    struct session *s = broker__session_find(b, id, len);
    /* a session another node served (or holds offline) moves here */
    const struct claim_prev prev = {
        .existed = s != NULL,
        .owner = s ? s->owner : 0,
        .connected = s && !s->released,
        .ours = cmd->node == b->cfg.node_id && broker__claim_pending(b, cmd->generation),
    };
    if (s) {
        s->handoff_from = 0;
        if (s->parked)
            broker__session_handoff_done(b, s); /* an older claim of ours waited: it is overtaken now */
        claim_end_previous(b, s, cmd);
        if (cmd->clean_start)
            session_reset(b, s);
    } else if (!(s = broker__session_create(b, id, len))) {
        return -ENOMEM;
    }
    claim_wills(b, s, cmd, &prev);
    claim_own(b, s, cmd, index, prev.owner);
    if (cmd->node == b->cfg.node_id && !prev.ours)
        broker__session_offline(b, s);
    claim_await_handoff(b, s, cmd, &prev);
    return prev.existed && !cmd->clean_start ? 1 : 0;
}

static int apply_expire(struct broker *b, const struct cluster_cmd *cmd)
{
    struct session *s = broker__session_find(b, (const char *)cmd->client_id.p, cmd->client_id.len);
    if (!s)
        return CLUSTER_ESTALE;
    /* the store ended it: an older connection cannot keep it */
    drop_conn(s);
    if (s->will && s->owner == b->cfg.node_id)
        broker__will_publish(b, s); /* the session ends before the will delay did */
    LOG(b, LOG_DEBUG, NULL, "session %s ended", s->client_id);
    broker__session_free(b, s);
    return 0;
}

/* --- subscriptions ---------------------------------------------------------- */

struct group_find {
    const char *name;
    size_t len;
    struct share_group *found;
};

static int find_group_cb(struct trie_item *item, void *arg)
{
    struct group_find *f = arg;
    struct share_group *g = container_of(item, struct share_group, item);
    if (strlen(g->name) == f->len && memcmp(g->name, f->name, f->len) == 0) {
        f->found = g;
        return 1;
    }
    return 0;
}

static int group_join(struct broker *b, struct sub *sub, struct proto_str name, struct proto_str filter)
{
    struct group_find f = {(const char *)name.p, name.len, NULL};
    trie_exact(&b->shared, (const char *)filter.p, filter.len, find_group_cb, &f);
    struct share_group *g = f.found;
    if (!g) {
        g = calloc(1, sizeof(*g));
        if (!g || !(g->name = str_dup_len((const char *)name.p, name.len)) ||
            trie_insert(&b->shared, (const char *)filter.p, filter.len, &g->item) != 0) {
            if (g)
                free(g->name);
            free(g);
            return -ENOMEM;
        }
    }
    if (g->count == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 4;
        struct sub **m = realloc(g->members, cap * sizeof(*m));
        if (!m) {
            if (!g->count) {
                trie_remove(&b->shared, &g->item);
                free(g->name);
                free(g);
            }
            return -ENOMEM;
        }
        g->members = m;
        g->cap = cap;
    }
    g->members[g->count++] = sub;
    sub->group = g;
    return 0;
}

void broker__sub_free(struct broker *b, struct sub *sub)
{
    struct share_group *g = sub->group;
    if (g) {
        for (uint32_t i = 0; i < g->count; i++)
            if (g->members[i] == sub) {
                memmove(&g->members[i], &g->members[i + 1], (g->count - i - 1) * sizeof(*g->members));
                g->count--;
                break;
            }
        if (!g->count) {
            trie_remove(&b->shared, &g->item);
            free(g->members);
            free(g->name);
            free(g);
        }
    } else {
        trie_remove(&b->subs, &sub->item);
    }
    b->sub_count--;
    broker__retain_streams_drop(sub->session, sub->filter);
    free(sub->filter);
    free(sub);
}

struct sub *broker__sub_find(struct session *s, const char *filter, size_t len)
{
    return map_get(&s->sub_map, filter, len);
}

static void session_unlink_sub(struct session *s, struct sub *sub)
{
    list_remove(&sub->link);
    map_del(&s->sub_map, sub->filter, sub->filter_len);
    s->sub_count--;
}

/* Returns 1 when the subscription existed (its options are replaced), 0 when new. */
int broker__sub_apply_add(struct broker *b, struct session *s, const struct cluster_cmd *cmd)
{
    struct sub *sub = broker__sub_find(s, (const char *)cmd->filter.p, cmd->filter.len);
    bool existed = sub != NULL;
    if (!sub) {
        sub = calloc(1, sizeof(*sub));
        if (!sub || !(sub->filter = str_dup_len((const char *)cmd->filter.p, cmd->filter.len))) {
            free(sub);
            return -ENOMEM;
        }
        sub->filter_len = cmd->filter.len;
        if (map_put(&s->sub_map, sub->filter, sub->filter_len, sub) != 0) {
            free(sub->filter);
            free(sub);
            return -ENOMEM;
        }
        sub->session = s;
        struct proto_str group, filter;
        int rc;
        if (proto_shared_split(cmd->filter, &group, &filter))
            rc = group_join(b, sub, group, filter);
        else
            rc = trie_insert(&b->subs, (const char *)cmd->filter.p, cmd->filter.len, &sub->item);
        if (rc) {
            map_del(&s->sub_map, sub->filter, sub->filter_len);
            free(sub->filter);
            free(sub);
            return rc;
        }
        list_push_front(&s->subs, &sub->link);
        s->sub_count++;
        b->sub_count++;
    }
    sub->qos = cmd->qos;
    sub->no_local = cmd->no_local;
    sub->rap = cmd->retain_as_published;
    sub->rh = cmd->retain_handling;
    sub->sub_id = cmd->sub_id;
    return existed ? 1 : 0;
}

static int apply_sub_del(struct broker *b, struct session *s, const struct cluster_cmd *cmd)
{
    struct sub *sub = broker__sub_find(s, (const char *)cmd->filter.p, cmd->filter.len);
    if (!sub)
        return 0;
    session_unlink_sub(s, sub);
    broker__sub_free(b, sub);
    return 1;
}

/* --- retained --------------------------------------------------------------- */

static int apply_retain_set(struct broker *b, const struct cluster_cmd *cmd)
{
    struct proto_props props = {0};
    if (cmd->props.len && proto_props_decode(cmd->props.p, cmd->props.len, PROTO_PUBLISH, &props) != 0)
        return CLUSTER_ECORRUPT;
    uint64_t expire_at = 0;
    if (cmd->msg_expire_at_ms) {
        uint64_t wall = broker__wall_ms();
        if (cmd->msg_expire_at_ms <= wall)
            return 0; /* expired before it was applied */
        expire_at = broker__now(b) + (cmd->msg_expire_at_ms - wall);
    }
    struct msg *m = broker__msg_new(cmd->topic, cmd->payload, &props, cmd->qos, true, expire_at, NULL);
    if (!m)
        return -ENOMEM;
    int rc = broker__retain_put(b, m, false);
    broker__msg_unref(m);
    return rc;
}

/* The store accepted cmd (result >= 0, the same on every node): the in-memory
 * indexes follow. */
void broker__apply(void *ctx, const struct cluster_cmd *cmd, int result, uint64_t index)
{
    struct broker *b = ctx;
    int rc = 0;
    switch (cmd->type) {
    case CLUSTER_SESSION_CLAIM:
        rc = apply_claim(b, cmd, index);
        break;
    case CLUSTER_SESSION_EXPIRE:
        rc = apply_expire(b, cmd);
        break;
    case CLUSTER_SUB_ADD:
    case CLUSTER_SUB_DEL: {
        struct session *s = broker__session_find(b, (const char *)cmd->client_id.p, cmd->client_id.len);
        if (!s)
            rc = CLUSTER_ESTALE;
        else
            rc = cmd->type == CLUSTER_SUB_ADD ? broker__sub_apply_add(b, s, cmd) : apply_sub_del(b, s, cmd);
        break;
    }
    case CLUSTER_RETAIN_SET:
        rc = apply_retain_set(b, cmd);
        break;
    case CLUSTER_RETAIN_DEL:
        broker__retain_del(b, (const char *)cmd->topic.p, cmd->topic.len);
        break;
    case CLUSTER_USER_SET:
    case CLUSTER_USER_DEL:
    case CLUSTER_ACL_ADD:
    case CLUSTER_ACL_DEL:
        rc = broker__access_apply(b, cmd);
        break;
    case CLUSTER_MSG_PUT:
        broker__durable_applied(b, cmd, result);
        break;
    case CLUSTER_SESSION_RELEASE: {
        struct session *s = broker__session_find(b, (const char *)cmd->client_id.p, cmd->client_id.len);
        if (!s || s->generation != cmd->generation)
            break;
        s->released = true;
        s->expire_wall = cmd->expire_at_ms;
        if (!cmd->has_will && s->owner != b->cfg.node_id) {
            broker__will_free(s->will); /* published or suppressed by whoever released it */
            s->will = NULL;
        }
        if (s->conn && cmd->node != b->cfg.node_id) {
            /* another node (the leader) took this session on while we were
             * thought lost: the cluster's decision wins */
            LOG(b, LOG_WARN, s->conn, "session released by node %u: disconnecting", cmd->node);
            drop_conn(s);
        }
        break;
    }
    default: /* node join/leave: nothing in memory */
        break;
    }
    if (rc < 0)
        LOG(b, LOG_ERROR, NULL, "in-memory apply of command %u failed (%d): state differs from the store until restart",
            cmd->type, rc);
}

/* --- loading the replicated state ------------------------------------------------ */

/* A session of ours without a connection, found in the store at start or
 * after a snapshot. One still marked connected lost its connection when this
 * node stopped: it goes offline now (its will after its delay, its expiry
 * from now) and the store learns it. A released one keeps the expiry time
 * recorded then, and a will still pending is due now. Wills are published by
 * the next tick, once the whole state (subscriptions included) is loaded. */
static void load_offline(struct broker *b, struct session *s, const struct cluster_cmd *cmd)
{
    uint64_t now = broker__now(b);
    if (s->will)
        s->will_at = now + (cmd->released ? 0 : (uint64_t)s->will->delay * 1000);
    if (cmd->released && cmd->expire_at_ms) {
        uint64_t wall = broker__wall_ms();
        s->expire_at = now + (cmd->expire_at_ms > wall ? cmd->expire_at_ms - wall : 0);
    } else if (!cmd->released && s->expiry == 0) {
        broker__session_propose_expire(b, s); /* its will goes when the expire applies */
        return;
    } else if (!cmd->released && s->expiry != UINT32_MAX) {
        s->expire_at = now + (uint64_t)s->expiry * 1000;
    }
    if (s->will_at || s->expire_at)
        broker__session_timed_add(b, s);
    if (!cmd->released)
        broker__session_propose_release(b, s);
}

/* One record of the store, as a command (cluster_load). */
static int load_one(void *arg, const struct cluster_cmd *cmd)
{
    struct broker *b = arg;
    switch (cmd->type) {
    case CLUSTER_SESSION_CLAIM: {
        const char *id = (const char *)cmd->client_id.p;
        struct session *s = broker__session_find(b, id, cmd->client_id.len);
        if (s && s->generation != cmd->generation) {
            /* the session moved on while we were behind */
            drop_conn(s);
            broker__outlist_clear(&s->inflight);
            broker__outlist_clear(&s->queue);
            s->qos2_in_count = 0;
        }
        if (!s && !(s = broker__session_create(b, id, cmd->client_id.len)))
            return -ENOMEM;
        bool fresh = s->generation != cmd->generation;
        s->generation = cmd->generation;
        s->owner = cmd->node;
        s->expiry = cmd->expiry;
        s->released = cmd->released;
        s->loaded = true;
        if (broker__access_session_user(s, cmd->has_user, cmd->user) != 0)
            return -ENOMEM;
        if (fresh) {
            broker__will_free(s->will);
            s->will = cmd->has_will ? will_from_cmd(&cmd->will) : NULL;
            if (s->owner == b->cfg.node_id && !s->conn && !broker__claim_pending(b, s->generation))
                load_offline(b, s, cmd);
        }
        return 0;
    }
    case CLUSTER_SUB_ADD: {
        struct session *s = broker__session_find(b, (const char *)cmd->client_id.p, cmd->client_id.len);
        return s ? (broker__sub_apply_add(b, s, cmd) < 0 ? -ENOMEM : 0) : 0;
    }
    case CLUSTER_RETAIN_SET:
        return apply_retain_set(b, cmd) < 0 ? -ENOMEM : 0;
    case CLUSTER_USER_SET:
    case CLUSTER_ACL_ADD:
        return broker__access_apply(b, cmd) < 0 ? -ENOMEM : 0;
    }
    return 0;
}

/* Builds (at start) or rebuilds (after a snapshot replaced the store) the
 * in-memory sessions, subscription tries and retained index from the store.
 * Sessions whose generation did not change keep their runtime state
 * (connection, inflight and queued messages). */
int broker__state_load(struct broker *b)
{
    size_t k;
    struct session **all = broker__sessions_all(b, &k);
    if (!all)
        return -ENOMEM;
    for (size_t i = 0; i < k; i++) {
        broker__session_clear_subs(b, all[i]);
        all[i]->loaded = false;
    }
    broker__retain_free_all(b);
    broker__access_cluster_clear(b);
    int rc = cluster_load(b->cluster, load_one, b);
    for (size_t i = 0; i < k; i++) {
        struct session *s = all[i];
        if (s->loaded)
            continue;
        drop_conn(s);
        broker__session_free(b, s);
    }
    free(all);
    return rc;
}

void broker__state_reload(void *ctx)
{
    struct broker *b = ctx;
    LOG(b, LOG_INFO, NULL, "reloading the replicated state from a snapshot");
    if (broker__state_load(b) != 0)
        LOG(b, LOG_ERROR, NULL, "reload of the replicated state failed: state differs from the store until restart");
}
