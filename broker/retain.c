/* retain: the retained-message index (topic -> message), its quota, and
 * sending retained messages to a new subscription. Replicated entries change
 * only through apply (indexes.c); $SYS entries are this node's own and set
 * directly (they count in neither quota).
 *
 * Sending to a new subscription streams: the topics matching the filter are
 * listed when the subscription completes (topic names only, not the
 * messages), and each is looked up and sent as the session's inflight window
 * frees (QoS 1/2) or its write backlog drains (QoS 0), after what its queue
 * already holds. So any number of retained messages reaches a subscriber that
 * acknowledges, without going through the queue limits, and a topic replaced
 * or cleared meanwhile sends its current message or nothing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int exact_cb(struct trie_item *item, void *arg)
{
    *(struct retained **)arg = container_of(item, struct retained, item);
    return 1;
}

static struct retained *find(struct broker *b, const char *topic, size_t len)
{
    struct retained *r = NULL;
    trie_exact(&b->retained, topic, len, exact_cb, &r);
    return r;
}

/* Adds (sign 1) or removes (sign -1) r from the quota's figures. */
static void account(struct broker *b, const struct retained *r, int sign)
{
    if (r->local)
        return;
    b->retained_repl += (uint32_t)sign;
    b->retained_bytes += (uint64_t)(int64_t)sign * broker__msg_bytes(r->msg);
}

int broker__retain_put(struct broker *b, struct msg *m, bool local)
{
    struct retained *r = find(b, m->topic, m->topic_len);
    if (r) {
        account(b, r, -1);
        broker__msg_unref(r->msg);
        r->msg = broker__msg_ref(m);
        r->local = local;
        account(b, r, 1);
        return 0;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    if (trie_insert(&b->retained, m->topic, m->topic_len, &r->item) != 0) {
        free(r);
        return -ENOMEM;
    }
    r->msg = broker__msg_ref(m);
    r->local = local;
    list_push_front(&b->retained_list, &r->link);
    b->retained_count++;
    account(b, r, 1);
    return 0;
}

static void retained_free(struct broker *b, struct retained *r)
{
    account(b, r, -1);
    trie_remove(&b->retained, &r->item);
    list_remove(&r->link);
    broker__msg_unref(r->msg);
    free(r);
    b->retained_count--;
}

void broker__retain_del(struct broker *b, const char *topic, size_t len)
{
    struct retained *r = find(b, topic, len);
    if (r)
        retained_free(b, r);
}

/* The retained bytes the store is trusted to hold: a quarter of its map
 * (store_max_mb), the rest being room for the sessions, the subscriptions,
 * LMDB's page overhead and the pages a snapshot being read keeps alive. */
#define RETAIN_STORE_SHARE 4

uint64_t broker__retain_bytes_max(const struct broker *b)
{
    uint64_t store = ((uint64_t)b->cfg.store_max_mb << 20) / RETAIN_STORE_SHARE;
    uint64_t max = b->cfg.max_retained_bytes;
    return max && max < store ? max : store;
}

bool broker__retain_quota_ok(const struct broker *b, const struct msg *m)
{
    const struct config *cfg = &b->cfg;
    const struct retained *r = find((struct broker *)b, m->topic, m->topic_len);
    bool replaces = r && !r->local;
    uint64_t old = replaces ? broker__msg_bytes(r->msg) : 0;
    uint64_t bytes = m->payload_len ? broker__msg_bytes(m) : 0; /* an empty payload clears */
    uint64_t count = (uint64_t)b->retained_repl + (m->payload_len && !replaces) - (!m->payload_len && replaces);
    uint64_t total = b->retained_bytes - old + bytes;
    if (count <= b->retained_repl && total <= b->retained_bytes)
        return true; /* does not grow it */
    return (!cfg->max_retained || count <= cfg->max_retained) && total <= broker__retain_bytes_max(b);
}

int broker__retain_propose(struct broker *b, struct msg *m, cluster_done_cb done, void *arg)
{
    struct cluster_cmd cmd = {
        .type = m->payload_len ? CLUSTER_RETAIN_SET : CLUSTER_RETAIN_DEL,
        .topic = {(const uint8_t *)m->topic, m->topic_len},
        .payload = {m->payload, m->payload_len},
        .props = {m->props_raw, m->props_len},
        .qos = m->qos,
    };
    if (m->expire_at) {
        uint64_t now = broker__now(b);
        cmd.msg_expire_at_ms = broker__wall_ms() + (m->expire_at > now ? m->expire_at - now : 0);
    }
    return cluster_propose(b->cluster, &cmd, done, arg);
}

/* The retained messages one subscription still has to receive. */
struct retain_stream {
    struct list link;         /* in session.retain_streams */
    char *filter;             /* as subscribed (owned) */
    uint8_t qos;              /* granted */
    uint32_t sub_id;
    struct buf topics;        /* the matching topics, each NUL-terminated */
    size_t pos;               /* the next one to send */
    size_t counted;           /* topics.len, counted in broker.queued_bytes while listed */
};

static void stream_free(struct broker *b, struct retain_stream *st)
{
    b->queued_bytes -= st->counted;
    list_remove(&st->link);
    buf_free(&st->topics);
    free(st->filter);
    free(st);
}

void broker__retain_streams_clear(struct session *s)
{
    struct list *first;
    while ((first = list_first(&s->retain_streams)))
        stream_free(s->b, list_entry(first, struct retain_stream, link));
}

/* Ends the streams of s's subscription to filter (unsubscribed, replaced). */
void broker__retain_streams_drop(struct session *s, const char *filter)
{
    list_foreach_safe(it, &s->retain_streams) {
        struct retain_stream *st = list_entry(it, struct retain_stream, link);
        if (strcmp(st->filter, filter) == 0)
            stream_free(s->b, st);
    }
}

struct list_ctx {
    struct broker *b;
    struct buf *topics;
    uint64_t room;            /* topic bytes the queue limits leave for the list */
    uint64_t left_out;        /* matching messages past it */
};

static int list_cb(struct trie_item *item, void *arg)
{
    struct list_ctx *x = arg;
    const struct msg *m = container_of(item, struct retained, item)->msg;
    if (m->expire_at && m->expire_at <= broker__now(x->b))
        return 0;
    size_t len = (size_t)m->topic_len + 1;
    if (x->topics->len + len > x->room || buf_append(x->topics, m->topic, len) != 0)
        x->left_out++;
    return 0;
}

/* The topic list of a stream counts as queued bytes: what is left of
 * max_queued_bytes for the session and of max_queued_bytes_total. */
static uint64_t list_room(const struct broker *b, const struct session *s)
{
    const struct config *cfg = &b->cfg;
    uint64_t room = UINT64_MAX, held = s->queue.bytes;
    list_foreach(it, &s->retain_streams)
        held += list_entry(it, struct retain_stream, link)->counted;
    if (cfg->max_queued_bytes)
        room = cfg->max_queued_bytes > held ? cfg->max_queued_bytes - held : 0;
    if (cfg->max_queued_bytes_total) {
        uint64_t node = cfg->max_queued_bytes_total > b->queued_bytes ? cfg->max_queued_bytes_total - b->queued_bytes : 0;
        room = node < room ? node : room;
    }
    return room;
}

void broker__retain_send(struct broker *b, struct session *s, const struct sub *sub)
{
    struct proto_str group, filter = proto_cstr(sub->filter);
    if (proto_shared_split(filter, &group, &filter))
        return; /* [MQTT-3.8.4-?] retained messages are not sent for shared subscriptions */
    broker__retain_streams_drop(s, sub->filter);
    struct retain_stream *st = calloc(1, sizeof(*st));
    if (!st || !(st->filter = strdup(sub->filter))) {
        free(st);
        LOG(b, LOG_WARN, s->conn, "out of memory: retained messages for %s not sent", sub->filter);
        return;
    }
    list_init(&st->link);
    st->qos = sub->qos;
    st->sub_id = sub->sub_id;
    struct list_ctx x = {b, &st->topics, list_room(b, s), 0};
    trie_match_filter(&b->retained, (const char *)filter.p, filter.len, list_cb, &x);
    if (x.left_out) {
        /* counted as dropped, as a full queue would have */
        b->stats.publish_dropped += x.left_out;
        LOG(b, LOG_WARN, s->conn,
            "retained messages for %s: %llu not sent (the list of topics reached max_queued_bytes or "
            "max_queued_bytes_total, or memory ran out)",
            sub->filter, (unsigned long long)x.left_out);
    }
    if (!st->topics.len) {
        stream_free(b, st);
        return;
    }
    st->counted = st->topics.len;
    b->queued_bytes += st->counted;
    list_push_back(&s->retain_streams, &st->link);
    broker__retain_stream_feed(b, s);
}

bool broker__retain_stream_feed(struct broker *b, struct session *s)
{
    struct list *first;
    while ((first = list_first(&s->retain_streams))) {
        struct retain_stream *st = list_entry(first, struct retain_stream, link);
        while (st->pos < st->topics.len) {
            const char *topic = (const char *)st->topics.data + st->pos;
            size_t len = strlen(topic);
            struct retained *r = find(b, topic, len);
            struct msg *m = r ? r->msg : NULL;
            if (m && m->expire_at && m->expire_at <= broker__now(b)) {
                /* dropped locally; every node drops it at the same deadline */
                retained_free(b, r);
                m = NULL;
            }
            uint8_t qos = m && m->qos < st->qos ? m->qos : st->qos;
            if (m && !broker__session_ready(s, qos))
                return false; /* the window or the backlog frees later: drain calls again */
            st->pos += len + 1;
            if (!m)
                continue; /* cleared meanwhile */
            uint32_t id = st->sub_id;
            broker__deliver(s, m, qos, true, id ? &id : NULL, id ? 1 : 0);
        }
        stream_free(b, st);
    }
    return true;
}

void broker__retain_free_all(struct broker *b)
{
    struct list *first;
    while ((first = list_first(&b->retained_list)))
        retained_free(b, list_entry(first, struct retained, link));
}
