/* retain: the retained-message index (topic -> message) and sending retained
 * messages to a new subscription. Replicated entries change only through
 * apply (indexes.c); $SYS entries are this node's own and set directly. */
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

int broker__retain_put(struct broker *b, struct msg *m, bool local)
{
    struct retained *r = find(b, m->topic, m->topic_len);
    if (r) {
        broker__msg_unref(r->msg);
        r->msg = broker__msg_ref(m);
        r->local = local;
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
    return 0;
}

static void retained_free(struct broker *b, struct retained *r)
{
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

struct send_ctx {
    struct broker *b;
    struct session *s;
    const struct sub *sub;
    struct retained **expired;
    uint32_t nexpired, cap;
};

static int send_cb(struct trie_item *item, void *arg)
{
    struct send_ctx *x = arg;
    struct retained *r = container_of(item, struct retained, item);
    struct msg *m = r->msg;
    if (m->expire_at && m->expire_at <= broker__now(x->b)) {
        if (x->nexpired == x->cap) {
            uint32_t cap = x->cap ? x->cap * 2 : 8;
            struct retained **p = realloc(x->expired, cap * sizeof(*p));
            if (!p)
                return 0;
            x->expired = p;
            x->cap = cap;
        }
        x->expired[x->nexpired++] = r;
        return 0;
    }
    uint8_t qos = m->qos < x->sub->qos ? m->qos : x->sub->qos;
    uint32_t id = x->sub->sub_id;
    broker__deliver(x->s, m, qos, true, id ? &id : NULL, id ? 1 : 0);
    return 0;
}

/* Sends the retained messages matching sub's filter to s (retain flag set). */
void broker__retain_send(struct broker *b, struct session *s, const struct sub *sub)
{
    struct proto_str group, filter = proto_cstr(sub->filter);
    if (proto_shared_split(filter, &group, &filter))
        return; /* [MQTT-3.8.4-?] retained messages are not sent for shared subscriptions */
    struct send_ctx x = {b, s, sub, NULL, 0, 0};
    trie_match_filter(&b->retained, (const char *)filter.p, filter.len, send_cb, &x);
    /* expired entries are dropped locally; a replicated delete is not needed
     * since every node drops them at the same deadline */
    for (uint32_t i = 0; i < x.nexpired; i++)
        retained_free(b, x.expired[i]);
    free(x.expired);
}

void broker__retain_free_all(struct broker *b)
{
    struct list *first;
    while ((first = list_first(&b->retained_list)))
        retained_free(b, list_entry(first, struct retained, link));
}
