/* durable: applying the durable-session commands to the store (msg_put matched
 * against the stored subscriptions of persistent sessions, queue acks and
 * states, inbound QoS 2 ids), and reading a session's queue back for the
 * broker. Everything is decided from the store alone, so every node reaches
 * the same queues at the same log index.
 *
 * msg_put: one message record (id = cmd->msg_id), then one queue entry per
 * persistent session (Session Expiry > 0) with a non-shared subscription that
 * matches the topic with a granted QoS >= 1 (No Local honoured; overlapping
 * subscriptions give one entry: the highest QoS, every identifier, the retain
 * flag kept when one of them has Retain As Published). A session whose queue
 * is full (the command's max_queued / max_queued_bytes) refuses the message
 * (policy 0) or drops its oldest entries (policy 1). A message no session
 * took is not kept. Result: how many sessions got it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_SUB_IDS 64u

/* Whether an MQTT topic filter matches a topic name ('+', '#', and the rule
 * that wildcards at the first level do not match topics starting with '$'). */
bool cluster__topic_match(const uint8_t *f, size_t fl, const uint8_t *t, size_t tl)
{
    if (tl > 0 && t[0] == '$' && fl > 0 && (f[0] == '+' || f[0] == '#'))
        return false;
    size_t i = 0, j = 0;
    for (;;) {
        if (i < fl && f[i] == '#')
            return i + 1 == fl && (i == 0 || f[i - 1] == '/');
        if (i < fl && f[i] == '+') {
            while (j < tl && t[j] != '/')
                j++;
            i++;
        } else {
            while (i < fl && j < tl && f[i] != '/' && t[j] != '/') {
                if (f[i] != t[j])
                    return false;
                i++;
                j++;
            }
            if ((i < fl && f[i] != '/') || (j < tl && t[j] != '/'))
                return false;
        }
        if (i == fl && j == tl)
            return true;
        if (i == fl)
            return false;
        /* f[i] == '/' */
        if (j == tl)
            /* "a/#" matches "a" */
            return fl - i == 2 && f[i + 1] == '#';
        i++;
        j++;
    }
}

/* One session's match, gathered over its subscriptions (which come in client
 * id order). */
struct target {
    uint8_t *id; /* copied: writes to other tables may move map pages */
    size_t id_len;
    bool persistent; /* its session has Session Expiry > 0 */
    uint8_t qos;     /* highest granted, 0 = none yet */
    bool retain;
    uint32_t nsub;
    uint8_t sub_ids[MAX_SUB_IDS * 4];
};

struct put_ctx {
    struct store_txn *txn;
    const struct cluster_cmd *cmd;
    uint32_t size; /* counted against max_queued_bytes */
    struct target cur;
    int queued;
    int dropped;      /* entries refused (drop newest) or dropped (drop oldest) */
};

/* Drops a session's oldest entry; STORE_ENOTFOUND when it has none. */
static int first_entry(void *arg, const struct store_qentry *e)
{
    *(uint64_t *)arg = e->msg_id;
    return 1;
}

static int drop_oldest(struct store_txn *txn, const uint8_t *id, size_t id_len)
{
    uint64_t msg_id;
    int rc = store_queue_foreach(txn, id, id_len, first_entry, &msg_id);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return STORE_ENOTFOUND;
    rc = store_queue_del(txn, id, id_len, msg_id);
    return rc < 0 ? rc : 0;
}

/* Whether the queue has room for one more entry of x->size bytes, after
 * dropping the oldest ones under policy 1. */
static int make_room(struct put_ctx *x)
{
    const struct cluster_cmd *cmd = x->cmd;
    for (;;) {
        struct store_qstat st;
        int rc = store_queue_stat(x->txn, x->cur.id, x->cur.id_len, &st);
        if (rc)
            return rc;
        bool full = (cmd->max_queued && st.count >= cmd->max_queued) ||
                    (cmd->max_queued_bytes && st.bytes + x->size > cmd->max_queued_bytes);
        if (!full)
            return 1;
        x->dropped++;
        if (cmd->queue_policy != 1 || st.count == 0)
            return 0;
        if ((rc = drop_oldest(x->txn, x->cur.id, x->cur.id_len)) != 0)
            return rc == STORE_ENOTFOUND ? 0 : rc;
    }
}

/* Queues the message for the gathered session, if it matched. */
static int flush(struct put_ctx *x)
{
    struct target *t = &x->cur;
    int rc = 0;
    if (t->id && t->qos > 0) {
        rc = make_room(x);
        if (rc == 1) {
            struct store_qentry e = {
                .client_id = {t->id, t->id_len},
                .msg_id = x->cmd->msg_id,
                .qos = t->qos,
                .retain = t->retain,
                .size = x->size,
                .nsub_ids = t->nsub,
                .sub_ids = {t->sub_ids, (size_t)t->nsub * 4},
            };
            rc = store_queue_add(x->txn, &e);
            if (rc >= 0) {
                x->queued++;
                rc = 0;
            }
        }
    }
    free(t->id);
    memset(t, 0, sizeof(*t));
    return rc < 0 ? rc : 0;
}

static bool same_bytes(struct store_bytes a, struct proto_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static int match_sub(void *arg, const struct store_sub *s)
{
    struct put_ctx *x = arg;
    const struct cluster_cmd *cmd = x->cmd;
    int rc;
    if (!x->cur.id || x->cur.id_len != s->client_id.len || memcmp(x->cur.id, s->client_id.p, s->client_id.len)) {
        if ((rc = flush(x)) != 0)
            return rc;
        x->cur.id = malloc(s->client_id.len);
        if (!x->cur.id)
            return -ENOMEM;
        memcpy(x->cur.id, s->client_id.p, s->client_id.len);
        x->cur.id_len = s->client_id.len;
        struct store_session sess;
        rc = store_session_get(x->txn, s->client_id.p, s->client_id.len, &sess);
        if (rc && rc != STORE_ENOTFOUND)
            return rc;
        x->cur.persistent = rc == 0 && sess.expiry > 0;
    }
    if (!x->cur.persistent)
        return 0;
    if (s->filter.len >= 7 && memcmp(s->filter.p, "$share/", 7) == 0)
        return 0; /* shared groups keep the direct path */
    if (s->no_local && same_bytes(s->client_id, cmd->client_id))
        return 0;
    uint8_t qos = s->qos < cmd->qos ? s->qos : cmd->qos;
    if (qos == 0 || !cluster__topic_match(s->filter.p, s->filter.len, cmd->topic.p, cmd->topic.len))
        return 0;
    struct target *t = &x->cur;
    if (qos > t->qos)
        t->qos = qos;
    if (s->retain_as_published && cmd->retain)
        t->retain = true;
    if (s->sub_id && t->nsub < MAX_SUB_IDS)
        bytes_put_u32le(t->sub_ids + 4 * t->nsub++, s->sub_id);
    return 0;
}

static int apply_put(struct store_txn *txn, const struct cluster_cmd *cmd)
{
    if (cmd->qos == 0 || cmd->topic.len == 0)
        return -EINVAL;
    struct store_msg m = {
        .id = cmd->msg_id,
        .qos = cmd->qos,
        .retain = cmd->retain,
        .origin = cmd->node,
        .expire_at_ms = cmd->msg_expire_at_ms,
        .topic = {cmd->topic.p, cmd->topic.len},
        .props = {cmd->props.p, cmd->props.len},
        .publisher = {cmd->client_id.p, cmd->client_id.len},
        .payload = {cmd->payload.p, cmd->payload.len},
    };
    int rc = store_msg_put(txn, &m);
    if (rc)
        return rc;
    uint64_t size = (uint64_t)cmd->topic.len + cmd->payload.len + cmd->props.len;
    struct put_ctx x = {.txn = txn, .cmd = cmd, .size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size};
    rc = store_subs_foreach(txn, match_sub, &x);
    if (rc == 0)
        rc = flush(&x);
    else
        free(x.cur.id);
    if (rc == 0)
        rc = store_msg_gc(txn, cmd->msg_id);
    if (rc < 0)
        return rc;
    return CLUSTER_PUT_RESULT(x.queued, x.dropped);
}

int cluster__durable_apply(struct store_txn *txn, const struct cluster_cmd *cmd)
{
    const uint8_t *id = cmd->client_id.p;
    size_t len = cmd->client_id.len;
    switch (cmd->type) {
    case CLUSTER_MSG_PUT:
        return apply_put(txn, cmd);
    case CLUSTER_QUEUE_ACK:
        return store_queue_del(txn, id, len, cmd->msg_id);
    case CLUSTER_QUEUE_SENT:
        return store_queue_set_state(txn, id, len, cmd->msg_id, STORE_Q_SENT, cmd->pid);
    case CLUSTER_QUEUE_PUBREC:
        return store_queue_set_state(txn, id, len, cmd->msg_id, STORE_Q_PUBREC, cmd->pid);
    case CLUSTER_INBOUND_ADD:
        return store_inbound_put(txn, id, len, cmd->pid);
    case CLUSTER_INBOUND_DEL:
        return store_inbound_del(txn, id, len, cmd->pid);
    default:
        return -EINVAL;
    }
}

/* --- reading a session's queue ---------------------------------------------------- */

struct read_ctx {
    struct store_txn *txn;
    uint64_t after;
    int (*cb)(void *arg, const struct cluster_qmsg *m);
    void *arg;
};

static int visit_entry(void *arg, const struct store_qentry *e)
{
    struct read_ctx *x = arg;
    if (e->msg_id <= x->after)
        return 0;
    struct store_msg m;
    int rc = store_msg_get(x->txn, e->msg_id, &m);
    if (rc == STORE_ENOTFOUND)
        return 0; /* cannot happen: an entry holds a reference */
    if (rc)
        return rc;
    struct cluster_qmsg q = {
        .msg_id = e->msg_id,
        .qos = e->qos,
        .state = e->state,
        .pid = e->pid,
        .retain = e->retain,
        .nsub_ids = e->nsub_ids,
        .sub_ids = e->sub_ids.p,
        .topic = {m.topic.p, (uint32_t)m.topic.len},
        .payload = {m.payload.p, (uint32_t)m.payload.len},
        .props = {m.props.p, (uint32_t)m.props.len},
        .expire_at_ms = m.expire_at_ms,
    };
    return x->cb(x->arg, &q);
}

int cluster__queue_read(struct store *s, const uint8_t *id, size_t id_len, uint64_t after,
                        int (*cb)(void *arg, const struct cluster_qmsg *m), void *arg)
{
    struct store_txn *txn;
    int rc = store_read_begin(s, &txn);
    if (rc)
        return rc;
    struct read_ctx x = {txn, after, cb, arg};
    rc = store_queue_foreach(txn, id, id_len, visit_entry, &x);
    store_txn_end(txn);
    return rc;
}

struct inbound_ctx {
    int (*cb)(void *arg, uint16_t pid);
    void *arg;
};

static int visit_inbound(void *arg, struct store_bytes id, uint16_t pid)
{
    (void)id;
    struct inbound_ctx *x = arg;
    return x->cb(x->arg, pid);
}

int cluster__inbound_read(struct store *s, const uint8_t *id, size_t id_len, int (*cb)(void *arg, uint16_t pid),
                          void *arg)
{
    struct store_txn *txn;
    int rc = store_read_begin(s, &txn);
    if (rc)
        return rc;
    struct inbound_ctx x = {cb, arg};
    rc = store_inbound_foreach(txn, id, id_len, visit_inbound, &x);
    store_txn_end(txn);
    return rc;
}
