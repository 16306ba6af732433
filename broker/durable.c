/* durable: the broker's side of durable sessions (docs/cluster.md "Durable
 * sessions"): which publishes go through the replicated message log, the
 * publisher's acknowledgement after the msg_put committed, handing applied
 * messages to this node's connected persistent sessions, a session's queue
 * read back from the store when it resumes (on any node), and the client's
 * acknowledgements turned into queue_ack commands.
 *
 * QoS 1 to a persistent session: the packet id an entry is sent with is
 * recorded (queue_sent, not waited for), so a session resumed on another
 * node resends it with DUP under that id.
 * QoS 2 to a persistent session: the packet id of an entry is committed
 * (queue_sent) before its PUBLISH leaves, and its PUBREC (queue_pubrec) before
 * the PUBREL, so a session resumed on any node resends that PUBLISH with the
 * same id (DUP) or that PUBREL, never the message under a new id. The inbound
 * QoS 2 ids of a persistent session awaiting PUBREL are replicated too
 * (inbound_add / inbound_del), in the same batch as the message's put, so a
 * PUBLISH resent to another node after a failover is acknowledged there
 * without being delivered twice.
 *
 * A message takes this path when it is QoS 1/2 and, in this node's view of
 * the replicated subscriptions, a persistent session (Session Expiry > 0)
 * has a non-shared subscription granting it QoS >= 1 (No Local honoured): the
 * same rule apply uses (cluster/durable.c). Such a message is marked durable;
 * the direct path then leaves persistent sessions with a granted QoS >= 1 out
 * (their copy comes from the store), on this node and on the nodes it is
 * forwarded to. Everything else keeps the direct path. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "internal.h"

bool broker__durable_target(const struct session *s, const struct msg *m, uint8_t granted)
{
    return m->durable && s->expiry > 0 && granted > 0;
}

struct want_ctx {
    const struct msg *m;
    bool found;
};

static int want_cb(struct trie_item *item, void *arg)
{
    struct want_ctx *x = arg;
    const struct sub *sub = container_of(item, struct sub, item);
    const struct session *s = sub->session;
    if (s->expiry == 0 || sub->qos == 0)
        return 0;
    if (sub->no_local && x->m->origin && strcmp(s->client_id, x->m->origin) == 0)
        return 0;
    x->found = true;
    return 1; /* one is enough */
}

bool broker__durable_wanted(struct broker *b, const struct msg *m)
{
    if (!b->cluster || !b->cfg.durable_sessions || m->qos == 0)
        return false;
    struct want_ctx x = {m, false};
    trie_match_topic(&b->subs, m->topic, m->topic_len, want_cb, &x);
    return x.found;
}

/* --- the publisher's side ---------------------------------------------------------- */

struct put_wait {
    struct conn *conn;
    struct pub_ack *ack;
};

static void put_done(void *arg, int status, int result)
{
    struct put_wait *w = arg;
    struct conn *c = w->conn;
    (void)result;
    if (status != 0) {
        /* not durable: refused rather than acknowledged (a v3 client has no
         * code for it and is disconnected, so it publishes again) */
        LOG(c->b, LOG_WARN, c, "QoS %u message for persistent sessions not committed (%d)", w->ack->qos, status);
        if (c->version == PROTO_V5)
            w->ack->reason = PROTO_RC_UNSPECIFIED;
        else
            w->ack->close = true;
    }
    broker__ack_release(w->ack);
    free(w);
    broker__conn_release(c);
}

int broker__durable_propose(struct conn *c, const struct msg *m, struct pub_ack *ack)
{
    struct broker *b = c->b;
    uint64_t expire_wall = 0;
    if (m->expire_at) {
        uint64_t now = broker__now(b);
        expire_wall = broker__wall_ms() + (m->expire_at > now ? m->expire_at - now : 1);
    }
    struct cluster_cmd cmd = {
        .type = CLUSTER_MSG_PUT,
        .client_id = {(const uint8_t *)c->session->client_id, (uint32_t)c->session->id_len},
        .node = b->cfg.node_id,
        .topic = {(const uint8_t *)m->topic, m->topic_len},
        .payload = {m->payload, m->payload_len},
        .props = {m->props_raw, m->props_len},
        .qos = m->qos,
        .retain = m->retain,
        .msg_expire_at_ms = expire_wall,
        .max_queued = b->cfg.max_queued,
        .max_queued_bytes = b->cfg.max_queued_bytes,
        .queue_policy = b->cfg.queue_policy == CONFIG_QUEUE_DROP_OLDEST ? 1 : 0,
    };
    struct put_wait *w = malloc(sizeof(*w));
    if (!w)
        return -ENOMEM;
    *w = (struct put_wait){c, ack};
    int rc = cluster_propose(b->cluster, &cmd, put_done, w);
    if (rc) {
        free(w);
        return rc;
    }
    broker__conn_hold(c);
    broker__ack_hold(ack);
    return 0;
}

/* --- messages from the store --------------------------------------------------------- */

/* Builds a message from the store's fields (copied). */
static struct msg *msg_from(struct broker *b, struct proto_str topic, struct proto_str payload, struct proto_str props,
                            uint8_t qos, bool retain, uint64_t expire_wall, const char *origin)
{
    struct proto_props pp = {0};
    if (props.len && proto_props_decode(props.p, props.len, PROTO_PUBLISH, &pp) != 0)
        return NULL;
    uint64_t expire_at = 0;
    if (expire_wall) {
        uint64_t wall = broker__wall_ms();
        expire_at = broker__now(b) + (expire_wall > wall ? expire_wall - wall : 0);
        if (!expire_at)
            expire_at = 1;
    }
    return broker__msg_new(topic, payload, &pp, qos, retain, expire_at, origin);
}

static void ids_from(const uint8_t *raw, uint32_t n, uint32_t *out)
{
    for (uint32_t i = 0; i < n; i++)
        out[i] = bytes_get_u32le(raw + 4 * i);
}

/* --- applied puts: this node's connected sessions ----------------------------------- */

struct online_ctx {
    struct broker *b;
    const struct cluster_cmd *cmd;
    struct session **v;
    uint32_t n, cap;
};

static int online_cb(struct trie_item *item, void *arg)
{
    struct online_ctx *x = arg;
    const struct sub *sub = container_of(item, struct sub, item);
    struct session *s = sub->session;
    struct broker *b = x->b;
    if (s->owner != b->cfg.node_id || !s->conn || s->conn->state != CONN_ACTIVE || s->expiry == 0)
        return 0;
    uint8_t granted = sub->qos < x->cmd->qos ? sub->qos : x->cmd->qos;
    if (granted == 0)
        return 0;
    if (sub->no_local && s->id_len == x->cmd->client_id.len && memcmp(s->client_id, x->cmd->client_id.p, s->id_len) == 0)
        return 0;
    if (s->match_epoch != b->match_epoch) {
        if (x->n == x->cap) {
            uint32_t cap = x->cap ? x->cap * 2 : 16;
            struct session **v = realloc(x->v, cap * sizeof(*v));
            if (!v)
                return 0;
            x->v = v;
            x->cap = cap;
        }
        x->v[x->n++] = s;
        s->match_epoch = b->match_epoch;
        s->m_qos = granted;
        s->m_rap = sub->rap;
        s->m_nids = 0;
    } else {
        if (granted > s->m_qos)
            s->m_qos = granted;
        s->m_rap |= sub->rap;
    }
    if (sub->sub_id && s->m_nids < 64) {
        if (s->m_nids == s->m_cap) {
            uint32_t cap = s->m_cap ? s->m_cap * 2 : 4;
            uint32_t *p = realloc(s->m_ids, cap * sizeof(*p));
            if (!p)
                return 0;
            s->m_ids = p;
            s->m_cap = cap;
        }
        s->m_ids[s->m_nids++] = sub->sub_id;
    }
    return 0;
}

void broker__durable_applied(struct broker *b, const struct cluster_cmd *cmd, int result)
{
    if (result <= 0)
        return;
    uint32_t dropped = CLUSTER_PUT_DROPPED(result);
    if (dropped && cmd->node == b->cfg.node_id) {
        /* counted once, by the node the message was published on */
        b->stats.publish_dropped += dropped;
        b->durable_drops += dropped;
        uint64_t now = broker__now(b);
        if (!b->durable_drop_log_ms || now - b->durable_drop_log_ms >= 5000) {
            /* at most one line per 5 s, with what was dropped since the last */
            LOG(b, LOG_WARN, NULL,
                "durable queue of a session full (max_queued / max_queued_bytes): %llu message(s) dropped (%s)",
                (unsigned long long)b->durable_drops, cmd->queue_policy == 1 ? "drop_oldest" : "drop_newest");
            b->durable_drop_log_ms = now;
            b->durable_drops = 0;
        }
    }
    if (!CLUSTER_PUT_QUEUED(result) || !b->connected)
        return;
    struct online_ctx x = {b, cmd, NULL, 0, 0};
    b->match_epoch++;
    trie_match_topic(&b->subs, (const char *)cmd->topic.p, cmd->topic.len, online_cb, &x);
    if (!x.n)
        return;
    char *origin = str_dup_len((const char *)cmd->client_id.p, cmd->client_id.len);
    struct msg *m = origin ? msg_from(b, cmd->topic, cmd->payload, cmd->props, cmd->qos, cmd->retain,
                                      cmd->msg_expire_at_ms, origin)
                           : NULL;
    free(origin);
    if (!m) {
        LOG(b, LOG_WARN, NULL, "durable message %s: out of memory; delivered on the sessions' next resume",
            (const char *)cmd->topic.p);
        free(x.v);
        return;
    }
    m->durable = true;
    for (uint32_t i = 0; i < x.n; i++) {
        struct session *s = x.v[i];
        broker__deliver_stored(s, m, s->m_qos, s->m_rap ? cmd->retain : false, s->m_ids, s->m_nids, cmd->msg_id);
    }
    broker__msg_unref(m);
    free(x.v);
}

/* --- resuming a session from the store --------------------------------------------- */

static bool held(const struct outlist *l, uint64_t msg_id)
{
    list_foreach(it, &l->items)
        if (list_entry(it, struct outmsg, link)->dmsg_id == msg_id)
            return true;
    return false;
}

static bool holds_any(const struct outlist *l)
{
    list_foreach(it, &l->items)
        if (list_entry(it, struct outmsg, link)->dmsg_id)
            return true;
    return false;
}

struct resume_ctx {
    struct session *s;
    bool check; /* some durable entries are in memory already (same node, or a handoff) */
};

static int resume_cb(void *arg, const struct cluster_qmsg *q)
{
    struct resume_ctx *x = arg;
    struct session *s = x->s;
    struct broker *b = s->b;
    if (x->check && (held(&s->inflight, q->msg_id) || held(&s->queue, q->msg_id)))
        return 0; /* this node has it in memory already */
    struct msg *m = msg_from(b, q->topic, q->payload, q->props, q->qos, q->retain, q->expire_at_ms, NULL);
    if (!m)
        return -ENOMEM;
    m->durable = true;
    uint32_t n = q->nsub_ids > 64 ? 64 : q->nsub_ids;
    uint32_t ids[64];
    ids_from(q->sub_ids, n, ids);
    int rc = broker__queue_stored(s, m, q->qos, q->retain, ids, n, q->msg_id);
    broker__msg_unref(m);
    if (rc || q->qos == 0 || q->state == 0)
        return rc;
    /* a QoS 1/2 PUBLISH sent with a recorded packet id (or a QoS 2 one whose
     * PUBREC came): back in flight with that id, resent with DUP (or as a
     * PUBREL) by the resend that follows */
    struct outmsg *o = list_entry(s->queue.items.prev, struct outmsg, link);
    broker__outlist_remove(&s->queue, o);
    o->packet_id = q->pid;
    o->unsent = true;
    if (q->qos == 1) {
        o->state = OUT_WAIT_PUBACK;
    } else if (q->state == 2) {
        o->state = OUT_WAIT_PUBCOMP;
        broker__msg_unref(o->msg);
        o->msg = NULL;
    } else {
        o->state = OUT_WAIT_PUBREC;
    }
    broker__outlist_append(&s->inflight, o);
    return 0;
}

static int inbound_cb(void *arg, uint16_t pid)
{
    struct session *s = arg;
    if (!broker__qos2_in_has(s, pid) && broker__qos2_in_add(s, pid) != 0)
        return -ENOMEM;
    return 0;
}

void broker__durable_resume(struct broker *b, struct session *s)
{
    if (!b->cluster)
        return; /* (a session resumed with expiry 0 still gets what its store queue holds) */
    uint32_t before = s->queue.count;
    struct resume_ctx x = {s, holds_any(&s->inflight) || holds_any(&s->queue)};
    int rc = cluster_queue_read(b->cluster, (const uint8_t *)s->client_id, s->id_len, 0, resume_cb, &x);
    if (rc)
        LOG(b, LOG_WARN, s->conn, "durable queue of session %s not read completely (%d)", s->client_id, rc);
    if (s->queue.count > before)
        LOG(b, LOG_INFO, s->conn, "session %s: %u message(s) resumed from the durable queue", s->client_id,
            s->queue.count - before);
    /* the ids it had received before: they count as from an earlier connection */
    rc = cluster_inbound_read(b->cluster, (const uint8_t *)s->client_id, s->id_len, inbound_cb, s);
    if (rc)
        LOG(b, LOG_WARN, s->conn, "inbound QoS 2 ids of session %s not read completely (%d)", s->client_id, rc);
    broker__qos2_in_age(s);
}

/* --- the subscriber's acknowledgements ------------------------------------------------ */

void broker__durable_done(struct session *s, const struct outmsg *o)
{
    struct broker *b = s->b;
    if (!o->dmsg_id || !b->cluster)
        return;
    struct cluster_cmd cmd = {
        .type = CLUSTER_QUEUE_ACK,
        .client_id = {(const uint8_t *)s->client_id, (uint32_t)s->id_len},
        .msg_id = o->dmsg_id,
    };
    /* not waited for: a lost ack only means the message comes again */
    if (cluster_propose(b->cluster, &cmd, NULL, NULL) != 0)
        LOG(b, LOG_DEBUG, s->conn, "queue_ack for %s not proposed", s->client_id);
}

/* --- QoS 2 state ------------------------------------------------------------------------ */

struct step_wait {
    struct broker *b;
    uint64_t msg_id;
    size_t id_len;
    char id[];
};

static void step_done(void *arg, int status, int result)
{
    struct step_wait *w = arg;
    (void)result;
    struct session *s = broker__session_find(w->b, w->id, w->id_len);
    if (status != 0)
        LOG(w->b, LOG_WARN, NULL, "session %s: QoS 2 state not committed (%d): sent anyway", w->id, status);
    struct outmsg *o = NULL;
    if (s)
        list_foreach(it, &s->inflight.items) {
            struct outmsg *x = list_entry(it, struct outmsg, link);
            if (x->dmsg_id == w->msg_id && x->committing) {
                o = x;
                break;
            }
        }
    free(w);
    if (!o)
        return; /* acknowledged, handed over or ended meanwhile */
    o->committing = false;
    broker__inflight_send(s, o);
    broker__session_drain(s);
}

bool broker__durable_qos2_step(struct session *s, struct outmsg *o, bool released)
{
    struct broker *b = s->b;
    if (!o->dmsg_id || !b->cluster)
        return false;
    if (o->qos == 1) {
        /* a QoS 1 entry's packet id is recorded without waiting: a session
         * resumed elsewhere resends it with DUP under that id [MQTT-4.4.0-1];
         * one that died before the record committed comes again as a new
         * PUBLISH (at least once either way) */
        if (!released) {
            struct cluster_cmd sent = {
                .type = CLUSTER_QUEUE_SENT,
                .client_id = {(const uint8_t *)s->client_id, (uint32_t)s->id_len},
                .msg_id = o->dmsg_id,
                .pid = o->packet_id,
            };
            if (cluster_propose(b->cluster, &sent, NULL, NULL) != 0)
                LOG(b, LOG_DEBUG, s->conn, "queue_sent for %s not proposed", s->client_id);
        }
        return false;
    }
    if (o->qos != 2)
        return false;
    struct step_wait *w = malloc(sizeof(*w) + s->id_len + 1);
    if (!w)
        return false;
    w->b = b;
    w->msg_id = o->dmsg_id;
    w->id_len = s->id_len;
    memcpy(w->id, s->client_id, s->id_len + 1);
    struct cluster_cmd cmd = {
        .type = released ? CLUSTER_QUEUE_PUBREC : CLUSTER_QUEUE_SENT,
        .client_id = {(const uint8_t *)s->client_id, (uint32_t)s->id_len},
        .msg_id = o->dmsg_id,
        .pid = o->packet_id,
    };
    if (cluster_propose(b->cluster, &cmd, step_done, w) != 0) {
        free(w);
        return false;
    }
    o->committing = true;
    return true;
}

void broker__durable_inbound(struct session *s, uint16_t pid, bool add)
{
    struct broker *b = s->b;
    if (!b->cluster || !b->cfg.durable_sessions || s->expiry == 0)
        return;
    struct cluster_cmd cmd = {
        .type = add ? CLUSTER_INBOUND_ADD : CLUSTER_INBOUND_DEL,
        .client_id = {(const uint8_t *)s->client_id, (uint32_t)s->id_len},
        .pid = pid,
    };
    /* not waited for: an add goes in the same batch as the message's put,
     * which the PUBREC waits for */
    if (cluster_propose(b->cluster, &cmd, NULL, NULL) != 0)
        LOG(b, LOG_DEBUG, s->conn, "inbound QoS 2 id of %s not proposed", s->client_id);
}
