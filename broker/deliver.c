/* deliver: routing a message to the matching sessions and the outgoing path to
 * one session (QoS downgrade, inflight window, queue, packet ids, topic alias,
 * remaining message expiry, receiver's maximum packet size).
 *
 * Overlapping subscriptions of one session give one copy, at the highest
 * granted QoS, carrying every matching subscription identifier
 * [MQTT-3.3.4-2, 3.3.4-4]. Each shared subscription gives one copy to one of its
 * members, round robin, preferring members that are connected. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "internal.h"

/* --- routing ------------------------------------------------------------------ */

static int push_match(struct broker *b, struct session *s)
{
    if (b->match_count == b->match_cap) {
        uint32_t cap = b->match_cap ? b->match_cap * 2 : 64;
        struct session **p = realloc(b->match, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        b->match = p;
        b->match_cap = cap;
    }
    b->match[b->match_count++] = s;
    return 0;
}

static void push_id(struct session *s, uint32_t id)
{
    /* subscriptions sharing an identifier give it once */
    for (uint32_t i = 0; i < s->m_nids; i++)
        if (s->m_ids[i] == id)
            return;
    if (s->m_nids == s->m_cap) {
        uint32_t cap = s->m_cap ? s->m_cap * 2 : 4;
        uint32_t *p = realloc(s->m_ids, cap * sizeof(*p));
        if (!p)
            return; /* the copy goes without this identifier */
        s->m_ids = p;
        s->m_cap = cap;
    }
    s->m_ids[s->m_nids++] = id;
}

struct route_ctx {
    struct broker *b;
    struct msg *m;
    uint32_t matched;
    bool forward;             /* sessions of other nodes count (their nodes get the message) */
    bool follow;              /* a forwarded message: sessions handed over since follow it */
    uint64_t origin_applied;  /* the log index the sender had applied when it routed it */
};

/* The scratch entry of node for the message being routed (added if new). */
static struct route_node *route_node(struct broker *b, uint32_t node)
{
    for (uint32_t i = 0; i < b->route_count; i++)
        if (b->route[i].node == node)
            return &b->route[i];
    if (b->route_count == b->route_cap) {
        uint32_t cap = b->route_cap ? b->route_cap * 2 : 8;
        struct route_node *p = realloc(b->route, cap * sizeof(*p));
        if (!p)
            return NULL;
        memset(p + b->route_cap, 0, (cap - b->route_cap) * sizeof(*p));
        b->route = p;
        b->route_cap = cap;
    }
    struct route_node *r = &b->route[b->route_count++];
    r->node = node;
    r->nshared = 0;
    r->alive = cluster_node_alive(b->cluster, node); /* once per node and message */
    return r;
}

/* A shared subscription member on another node was picked: that node gets
 * the message for it. */
static void route_shared(struct broker *b, struct sub *sub)
{
    struct route_node *r = route_node(b, sub->session->owner);
    if (!r)
        return;
    if (r->nshared == r->shared_cap) {
        uint32_t cap = r->shared_cap ? r->shared_cap * 2 : 4;
        struct sub **p = realloc(r->shared, cap * sizeof(*p));
        if (!p)
            return;
        r->shared = p;
        r->shared_cap = cap;
    }
    r->shared[r->nshared++] = sub;
}

static bool is_origin(const struct session *s, const struct msg *m)
{
    return m->origin && strcmp(s->client_id, m->origin) == 0;
}

static int match_cb(struct trie_item *item, void *arg)
{
    struct route_ctx *x = arg;
    struct sub *sub = container_of(item, struct sub, item);
    struct session *s = sub->session;
    struct broker *b = x->b;
    if (sub->no_local && is_origin(s, x->m))
        return 0; /* [MQTT-3.8.3-3] */
    if (s->owner != b->cfg.node_id) {
        /* served by another node: that node gets the message once, and
         * matches it against its own sessions; a session handed over after
         * the sender routed the message (its claim is later than what the
         * sender had applied) is sent on */
        bool follow = x->follow && s->moved && x->origin_applied < s->claim_index;
        if (!(x->forward || follow) || s->match_epoch == b->match_epoch)
            return 0;
        s->match_epoch = b->match_epoch;
        struct route_node *r = route_node(b, s->owner);
        if (r && r->alive)
            x->matched++;
        return 0;
    }
    if (s->match_epoch != x->b->match_epoch) {
        if (push_match(x->b, s) != 0)
            return 0;
        s->match_epoch = x->b->match_epoch;
        s->m_qos = sub->qos;
        s->m_rap = sub->rap;
        s->m_nids = 0;
    } else {
        if (sub->qos > s->m_qos)
            s->m_qos = sub->qos;
        s->m_rap |= sub->rap;
    }
    if (sub->sub_id)
        push_id(s, sub->sub_id);
    return 0;
}

static int group_cb(struct trie_item *item, void *arg)
{
    struct route_ctx *x = arg;
    struct share_group *g = container_of(item, struct share_group, item);
    if (!g->count)
        return 0;
    /* first connected member from the round-robin position, else the next
     * member that can take it; members on other nodes count when the message
     * may be forwarded (every node holds the whole group, so the pick is
     * made once, by the node the message arrived at) */
    struct broker *b = x->b;
    uint32_t pick = UINT32_MAX;
    for (uint32_t i = 0; i < g->count; i++) {
        uint32_t k = (g->next + i) % g->count;
        const struct session *ms = g->members[k]->session;
        bool local = ms->owner == b->cfg.node_id;
        if (!local && (!x->forward || !cluster_node_alive(b->cluster, ms->owner)))
            continue;
        if (pick == UINT32_MAX)
            pick = k;
        if (local ? ms->conn && ms->conn->state == CONN_ACTIVE : !ms->released) {
            pick = k;
            break;
        }
    }
    if (pick == UINT32_MAX)
        return 0; /* no member can take it here */
    g->next = pick + 1;
    struct sub *sub = g->members[pick];
    x->matched++;
    if (sub->session->owner != b->cfg.node_id) {
        route_shared(b, sub);
        return 0;
    }
    broker__deliver_shared(sub, x->m);
    return 0;
}

void broker__deliver_shared(struct sub *sub, struct msg *m)
{
    uint8_t qos = m->qos < sub->qos ? m->qos : sub->qos;
    uint32_t id = sub->sub_id;
    broker__deliver(sub->session, m, qos, sub->rap ? m->retain : false, id ? &id : NULL, id ? 1 : 0);
}

static uint32_t route(struct broker *b, struct msg *m, bool forward, bool follow, uint64_t origin_applied,
                      struct pub_ack *ack)
{
    struct route_ctx x = {b, m, 0, forward && b->cluster, follow && b->cluster, origin_applied};
    b->match_epoch++;
    b->match_count = 0;
    b->route_count = 0;
    trie_match_topic(&b->subs, m->topic, m->topic_len, match_cb, &x);
    for (uint32_t i = 0; i < b->match_count; i++) {
        struct session *s = b->match[i];
        uint8_t qos = m->qos < s->m_qos ? m->qos : s->m_qos;
        if (broker__durable_target(s, m, qos))
            continue; /* its copy comes from the durable queue */
        broker__deliver(s, m, qos, s->m_rap ? m->retain : false, s->m_ids, s->m_nids);
    }
    x.matched += b->match_count;
    b->match_count = 0;
    if (b->shared.items && !x.follow) /* a forwarded message names its shared members itself */
        trie_match_topic(&b->shared, m->topic, m->topic_len, group_cb, &x);
    for (uint32_t i = 0; i < b->route_count; i++)
        if (b->route[i].alive)
            broker__remote_publish(b, &b->route[i], m, ack);
    b->route_count = 0;
    return x.matched;
}

/* Delivers m to the matching sessions of this node and forwards it once to
 * every other node that serves a matching session; ack (may be NULL) waits
 * for those nodes to accept it. Returns the number of sessions it went to. */
uint32_t broker__route(struct broker *b, struct msg *m, struct pub_ack *ack)
{
    return route(b, m, true, false, 0, ack);
}

/* Delivers m to the matching sessions of this node only (a message about this
 * node). */
uint32_t broker__route_local(struct broker *b, struct msg *m) { return route(b, m, false, false, 0, NULL); }

/* Delivers a message another node forwarded: to this node's sessions, and on
 * to the new node of a session this node handed over since. */
uint32_t broker__route_forwarded(struct broker *b, struct msg *m, uint64_t origin_applied)
{
    return route(b, m, false, true, origin_applied, NULL);
}

/* --- the outgoing path ---------------------------------------------------------- */

static bool online(const struct session *s)
{
    return s->conn && s->conn->state == CONN_ACTIVE;
}

static uint32_t window(const struct session *s)
{
    const struct conn *c = s->conn;
    uint32_t w = c->b->cfg.max_inflight;
    return c->peer_receive_max < w ? c->peer_receive_max : w;
}

void broker__outlist_concat(struct outlist *into, struct outlist *from)
{
    list_splice_back(&into->items, &from->items);
    into->count += from->count;
    into->bytes += from->bytes;
    if (into->total)
        *into->total += from->bytes;
    if (from->total)
        *from->total -= from->bytes;
    from->count = 0;
    from->bytes = 0;
}

static void outlist_append(struct outlist *l, struct outmsg *o)
{
    list_push_back(&l->items, &o->link);
    l->count++;
    o->bytes = o->msg ? broker__msg_bytes(o->msg) : 0;
    l->bytes += o->bytes;
    if (l->total)
        *l->total += o->bytes;
}

void broker__outlist_append(struct outlist *l, struct outmsg *o) { outlist_append(l, o); }

static void outlist_remove(struct outlist *l, struct outmsg *o)
{
    list_remove(&o->link);
    l->count--;
    l->bytes -= o->bytes;
    if (l->total)
        *l->total -= o->bytes;
}

void broker__outlist_remove(struct outlist *l, struct outmsg *o) { outlist_remove(l, o); }

/* The first message of l, or NULL. */
static struct outmsg *outlist_first(const struct outlist *l)
{
    struct list *first = list_first(&l->items);
    return first ? list_entry(first, struct outmsg, link) : NULL;
}

static void outmsg_free(struct outmsg *o)
{
    broker__msg_unref(o->msg);
    free(o);
}

void broker__outlist_clear(struct outlist *l)
{
    struct outmsg *o;
    while ((o = outlist_first(l))) {
        outlist_remove(l, o);
        outmsg_free(o);
    }
}

static bool expired(const struct broker *b, const struct msg *m)
{
    return m->expire_at && m->expire_at <= broker__now(b);
}

/* Writes one PUBLISH to the connection. Returns 0, or -EMSGSIZE when the
 * receiver's Maximum Packet Size forbids it (the message is then discarded as
 * if delivered [MQTT-3.1.2-25]). */
static int send_publish(struct conn *c, const struct msg *m, uint8_t qos, bool retain, uint16_t pid, bool dup,
                        const uint32_t *ids, uint32_t nids)
{
    struct broker *b = c->b;
    struct proto_publish pub = {
        .qos = qos,
        .dup = dup,
        .retain = retain,
        .topic = {(const uint8_t *)m->topic, m->topic_len},
        .packet_id = pid,
        .payload = {m->payload, m->payload_len},
    };
    if (c->version == PROTO_V5) {
        pub.props = m->props;
        if (m->expire_at) {
            uint64_t now = broker__now(b);
            uint64_t left = m->expire_at > now ? m->expire_at - now : 0;
            pub.props.has |= PROTO_HAS_MESSAGE_EXPIRY;
            /* what is left, rounded up [MQTT-3.3.2-6]; a message whose time ran
             * out in flight still completes its flow [MQTT-3.3.2-5] and gets
             * 1, never 0, which a client could read as "no time left at all" */
            pub.props.message_expiry = left ? (uint32_t)((left + 999) / 1000) : 1;
        }
        if (nids) {
            pub.props.sub_ids_ext = ids;
            pub.props.sub_id_count = nids;
        }
    }
    if (c->peer_max_packet && proto_publish_size(&pub, c->version) > c->peer_max_packet) {
        LOG(b, LOG_DEBUG, c, "PUBLISH on %s exceeds the client's maximum packet size, discarded", m->topic);
        b->stats.publish_dropped++;
        return -EMSGSIZE;
    }
    struct conn_busy *cb = c->peer_alias_max ? broker__conn_busy(c) : NULL; /* NULL: no alias this time */
    if (cb) {
        void *v = map_get(&cb->out_alias, m->topic, m->topic_len);
        if (v) {
            pub.topic.len = 0;
            pub.props.has |= PROTO_HAS_TOPIC_ALIAS;
            pub.props.topic_alias = (uint16_t)(uintptr_t)v;
        } else if (cb->out_alias_next < c->peer_alias_max) {
            char *key = str_dup_len(m->topic, m->topic_len);
            uint16_t alias = (uint16_t)(cb->out_alias_next + 1);
            if (key && map_put(&cb->out_alias, key, m->topic_len, (void *)(uintptr_t)alias) == 0) {
                cb->out_alias_next = alias;
                pub.props.has |= PROTO_HAS_TOPIC_ALIAS;
                pub.props.topic_alias = alias;
            } else {
                free(key);
            }
        }
    }
    if (broker__conn_publish(c, &pub) != 0)
        return -ENOMEM;
    b->stats.msgs_sent++;
    return 0;
}

static uint16_t next_packet_id(struct session *s)
{
    for (;;) {
        uint16_t id = s->next_packet_id++;
        if (s->next_packet_id == 0)
            s->next_packet_id = 1;
        if (id == 0)
            continue;
        bool used = false;
        list_foreach(it, &s->inflight.items)
            if (list_entry(it, struct outmsg, link)->packet_id == id) {
                used = true;
                break;
            }
        if (!used)
            return id;
    }
}

/* Moves o into the inflight window and sends it. */
static void send_inflight(struct session *s, struct outmsg *o)
{
    o->packet_id = next_packet_id(s);
    o->state = o->qos == 1 ? OUT_WAIT_PUBACK : OUT_WAIT_PUBREC;
    outlist_append(&s->inflight, o);
    o->wait = true;
    broker__durable_qos2_step(s, o, false); /* a durable QoS 2 one: sent once its packet id is committed */
    broker__inflight_send(s, NULL);
}

/* Whether queueing `bytes` more for s would pass one of the queue limits:
 * max_queued (messages), max_queued_bytes (this session),
 * max_queued_bytes_total (every session of this node). */
static bool queue_full(const struct session *s, uint32_t bytes)
{
    const struct broker *b = s->b;
    const struct config *cfg = &b->cfg;
    return (cfg->max_queued && s->queue.count >= cfg->max_queued) ||
           (cfg->max_queued_bytes && s->queue.bytes + bytes > cfg->max_queued_bytes) ||
           (cfg->max_queued_bytes_total && b->queued_bytes + bytes > cfg->max_queued_bytes_total);
}

/* How often a session's "queue full" line may be logged. */
#define QUEUE_FULL_LOG_MS 10000

/* Counts a message dropped from (or refused by) s's queue, and says so at
 * most every QUEUE_FULL_LOG_MS per session. */
static void queue_dropped(struct session *s)
{
    struct broker *b = s->b;
    uint64_t now = broker__now(b);
    b->stats.publish_dropped++;
    s->drops_unlogged++;
    if (s->drop_logged_at && now - s->drop_logged_at < QUEUE_FULL_LOG_MS)
        return;
    LOG(b, LOG_WARN, NULL,
        "queue of session %s full (%u messages, %llu bytes; node %llu bytes queued): %llu message(s) dropped (%s)",
        s->client_id, s->queue.count, (unsigned long long)s->queue.bytes, (unsigned long long)b->queued_bytes,
        (unsigned long long)s->drops_unlogged, b->cfg.queue_policy == CONFIG_QUEUE_DROP_OLDEST ? "drop_oldest" : "drop_new");
    s->drop_logged_at = now ? now : 1;
    s->drops_unlogged = 0;
}

static struct outmsg *outmsg_new(struct msg *m, uint8_t qos, bool retain, const uint32_t *ids, uint32_t nids)
{
    struct outmsg *o = malloc(sizeof(*o) + nids * sizeof(uint32_t));
    if (!o)
        return NULL;
    memset(o, 0, sizeof(*o));
    o->msg = broker__msg_ref(m);
    o->qos = qos;
    o->retain = retain;
    o->nids = nids;
    if (nids)
        memcpy(o->ids, ids, nids * sizeof(uint32_t));
    return o;
}

int broker__queue_stored(struct session *s, struct msg *m, uint8_t qos, bool retain, const uint32_t *ids,
                         uint32_t nids, uint64_t msg_id)
{
    struct outmsg *o = outmsg_new(m, qos, retain, ids, nids);
    if (!o)
        return -ENOMEM;
    o->dmsg_id = msg_id;
    outlist_append(&s->queue, o);
    return 0;
}

void broker__deliver_stored(struct session *s, struct msg *m, uint8_t qos, bool retain, const uint32_t *ids,
                            uint32_t nids, uint64_t msg_id)
{
    if (!broker__access_receive(s, m))
        return;
    if (broker__queue_stored(s, m, qos, retain, ids, nids, msg_id) == 0)
        broker__session_drain(s);
}

void broker__deliver(struct session *s, struct msg *m, uint8_t qos, bool retain, const uint32_t *ids,
                     uint32_t nids)
{
    struct conn *c = s->conn;
    if (!broker__access_receive(s, m))
        return; /* the ACL does not let this session read the topic (retained and wills too) */
    if (qos == 0) {
        if (!online(s))
            return; /* QoS 0 is not queued for an offline session */
        struct broker *b = c->b;
        /* over the backlog limit, the publisher waits instead (backpressure.c) */
        if (expired(b, m) || (broker__conn_backlog(c) > b->cfg.max_write_backlog &&
                              !broker__backpressure_hold(c, b->routing_from))) {
            b->stats.publish_dropped++;
            return;
        }
        send_publish(c, m, 0, retain, 0, false, ids, nids);
        return;
    }
    struct outmsg *o = outmsg_new(m, qos, retain, ids, nids);
    if (!o)
        return;
    if (online(s) && !s->queue.count && s->inflight.count < window(s)) {
        send_inflight(s, o);
        return;
    }
    /* a full queue drops by the configured policy (config queue_policy):
     * drop_oldest makes room from this session's own queue, drop_new (or a
     * queue with nothing left to drop) refuses the new message */
    struct broker *b = s->b;
    uint32_t bytes = broker__msg_bytes(m);
    bool oldest = b->cfg.queue_policy == CONFIG_QUEUE_DROP_OLDEST;
    while (queue_full(s, bytes)) {
        struct outmsg *old = oldest ? outlist_first(&s->queue) : NULL;
        queue_dropped(s);
        if (!old) {
            outmsg_free(o);
            return;
        }
        outlist_remove(&s->queue, old);
        outmsg_free(old);
    }
    outlist_append(&s->queue, o);
}

/* Resends what was in flight before this connection, in order: every PUBREL
 * at once, and PUBLISH (DUP) only while the client's unacknowledged ones
 * stay within the window [MQTT-3.3.4-9, 4.4.0-1]. A QoS 2 PUBLISH keeps its
 * packet id (the client may hold it already), so the ones beyond the window
 * wait in flight for acknowledgements rather than go back to the queue. A
 * message released (PUBREL) counts until its PUBCOMP. */
static void resend_window(struct session *s)
{
    if (!s->resend_pending || !online(s))
        return;
    struct conn *c = s->conn;
    uint32_t unacked = 0, w = window(s);
    list_foreach(it, &s->inflight.items) {
        const struct outmsg *o = list_entry(it, struct outmsg, link);
        unacked += !o->unsent || o->state == OUT_WAIT_PUBCOMP;
    }
    bool more = false;
    list_foreach_safe(it, &s->inflight.items) {
        struct outmsg *o = list_entry(it, struct outmsg, link);
        if (!o->unsent || o->committing)
            continue; /* a committing one is sent when its commit is done */
        o->wait = false;
        if (o->state == OUT_WAIT_PUBCOMP) {
            o->unsent = false;
            struct proto_packet p = {.type = PROTO_PUBREL};
            p.u.ack.packet_id = o->packet_id;
            broker__conn_send(c, &p);
            continue;
        }
        if (unacked >= w) {
            more = true;
            continue;
        }
        o->unsent = false;
        if (send_publish(c, o->msg, o->qos, o->retain, o->packet_id, true, o->ids, o->nids) == -EMSGSIZE) {
            broker__durable_done(s, o);
            outlist_remove(&s->inflight, o);
            outmsg_free(o);
            continue;
        }
        unacked++;
    }
    s->resend_pending = more;
}

void broker__session_drain(struct session *s)
{
    resend_window(s);
    struct outmsg *o;
    while (online(s) && !s->resend_pending && (o = outlist_first(&s->queue)) && s->inflight.count < window(s)) {
        outlist_remove(&s->queue, o);
        if (expired(s->conn->b, o->msg)) {
            s->b->stats.publish_dropped++; /* as an expired QoS 0 is */
            broker__durable_done(s, o);
            outmsg_free(o);
            continue;
        }
        send_inflight(s, o);
    }
    /* retained messages of new subscriptions follow what was queued */
    if (!list_empty(&s->retain_streams) && online(s) && !s->queue.count)
        broker__retain_stream_feed(s->b, s);
}

/* Whether s can take one more message now without queueing it: online, its
 * queue empty, room in the inflight window (QoS 1/2) or in the connection's
 * write backlog (QoS 0). */
bool broker__session_ready(const struct session *s, uint8_t qos)
{
    if (!online(s) || s->queue.count)
        return false;
    if (qos)
        return s->inflight.count < window(s);
    /* waits only on a write in progress: its callback drains again */
    const struct conn *c = s->conn;
    return !c->writing || broker__conn_backlog(c) <= c->b->cfg.max_write_backlog / 2;
}

void broker__session_resend(struct session *s)
{
    list_foreach(it, &s->inflight.items)
        list_entry(it, struct outmsg, link)->unsent = true;
    s->resend_pending = s->inflight.count > 0;
    resend_window(s);
}

/* Finds the inflight message with this packet id in the given state. */
struct outmsg *broker__inflight_find(struct session *s, uint16_t pid, int state)
{
    list_foreach(it, &s->inflight.items) {
        struct outmsg *o = list_entry(it, struct outmsg, link);
        if (o->packet_id == pid && o->state == state)
            return o;
    }
    return NULL;
}

void broker__inflight_done(struct session *s, struct outmsg *o)
{
    broker__durable_done(s, o);
    outlist_remove(&s->inflight, o);
    outmsg_free(o);
}

void broker__inflight_released(struct session *s, struct outmsg *o)
{
    o->state = OUT_WAIT_PUBCOMP;
    o->unsent = false; /* its PUBREL goes out now */
    broker__msg_unref(o->msg);
    o->msg = NULL;
    broker__durable_qos2_step(s, o, true);
}

void broker__inflight_send(struct session *s, struct outmsg *o)
{
    if (!online(s))
        return; /* the resend after a reconnect sends it (DUP) */
    if (o && o->state == OUT_WAIT_PUBCOMP && !o->unsent) {
        struct proto_packet p = {.type = PROTO_PUBREL};
        p.u.ack.packet_id = o->packet_id;
        broker__conn_send(s->conn, &p);
    }
    list_foreach_safe(it, &s->inflight.items) {
        struct outmsg *x = list_entry(it, struct outmsg, link);
        if (x->committing)
            break; /* its PUBLISH or PUBREL, and every PUBLISH after it, wait */
        if (!x->wait || x->state == OUT_WAIT_PUBCOMP)
            continue;
        x->wait = false;
        if (x->unsent)
            continue; /* the resend sends it */
        if (send_publish(s->conn, x->msg, x->qos, x->retain, x->packet_id, false, x->ids, x->nids) == -EMSGSIZE) {
            broker__durable_done(s, x); /* discarded as if delivered */
            outlist_remove(&s->inflight, x);
            outmsg_free(x);
        }
    }
}
