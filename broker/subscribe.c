/* subscribe: SUBSCRIBE / UNSUBSCRIBE. Each valid entry is proposed as a
 * sub_add / sub_del; SUBACK / UNSUBACK is sent when every proposal of the packet
 * has completed, then the retained messages the new subscriptions ask for.
 * The connection stays paused meanwhile (packet order is the client's). */
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "internal.h"

struct subreq {
    struct conn *conn;
    uint8_t type;            /* PROTO_SUBACK or PROTO_UNSUBACK */
    uint16_t packet_id;
    uint32_t count;
    uint32_t waiting;
    uint8_t *reasons;
    char **filters;          /* copies, for the retained messages to send */
    uint8_t *rh;
    bool *existed;
};

static void subreq_free(struct subreq *r)
{
    for (uint32_t i = 0; i < r->count; i++)
        free(r->filters[i]);
    free(r->filters);
    free(r->reasons);
    free(r->rh);
    free(r->existed);
    free(r);
}

static struct sub *session_sub(struct session *s, const char *filter)
{
    return broker__sub_find(s, filter, strlen(filter));
}

static void finish(struct subreq *r)
{
    struct conn *c = r->conn;
    bool refused = false;
    for (uint32_t i = 0; r->type == PROTO_UNSUBACK && i < r->count; i++)
        refused |= r->reasons[i] == PROTO_RC_UNSPECIFIED;
    if (c->state == CONN_ACTIVE && refused && c->version != PROTO_V5) {
        /* a v3 UNSUBACK cannot say it failed: without an ack the client
         * retries, so an unsubscribe is never lost silently */
        LOG(c->b, LOG_WARN, c, "UNSUBSCRIBE not committed: closing");
        broker__conn_close(c, 0xFF);
    } else if (c->state == CONN_ACTIVE) {
        struct proto_packet p = {.type = r->type};
        p.u.suback.packet_id = r->packet_id;
        p.u.suback.count = r->count;
        p.u.suback.reasons = r->reasons;
        broker__conn_send(c, &p);
        struct session *s = c->session;
        for (uint32_t i = 0; r->type == PROTO_SUBACK && s && i < r->count; i++) {
            if (r->reasons[i] >= 0x80 || r->rh[i] == 2 || (r->rh[i] == 1 && r->existed[i]))
                continue;
            struct sub *sub = session_sub(s, r->filters[i]);
            if (sub)
                broker__retain_send(c->b, s, sub);
        }
        broker__conn_resume(c);
    }
    subreq_free(r);
    broker__conn_release(c);
}

struct entry_wait {
    struct subreq *req;
    uint32_t index;
};

/* Parks a connection whose next packet is a PUBLISH until every subscription
 * proposed so far has completed (out of memory for that: closes it). */
void broker__barrier_wait(struct conn *c)
{
    struct broker *b = c->b;
    struct conn_busy *cb = broker__conn_busy(c);
    if (!cb) {
        LOG(b, LOG_WARN, c, "out of memory for a PUBLISH waiting for a SUBSCRIBE: closing");
        broker__conn_close(c, PROTO_RC_SERVER_BUSY);
        return;
    }
    c->paused = true;
    cb->barrier = b->sub_proposed;
    list_push_back(&b->barriers, &cb->barrier_link);
    broker__conn_hold(c);
}

static void barrier_release(struct broker *b)
{
    struct list *first;
    struct conn_busy *cb;
    while ((first = list_first(&b->barriers)) &&
           (cb = list_entry(first, struct conn_busy, barrier_link))->barrier <= b->sub_completed) {
        list_remove(&cb->barrier_link);
        broker__conn_resume(cb->conn);
        broker__conn_release(cb->conn);
    }
}

static void entry_done(void *arg, int status, int result)
{
    struct entry_wait *w = arg;
    struct subreq *r = w->req;
    if (r->type == PROTO_SUBACK) {
        r->conn->b->sub_completed++;
        barrier_release(r->conn->b);
    }
    if (status != 0)
        r->reasons[w->index] = PROTO_RC_UNSPECIFIED;
    else if (r->type == PROTO_SUBACK)
        r->existed[w->index] = result == 1;
    else if (result == 0)
        r->reasons[w->index] = PROTO_RC_NO_SUBSCRIPTION_EXISTED;
    free(w);
    if (--r->waiting == 0)
        finish(r);
}

static struct subreq *subreq_new(struct conn *c, uint8_t type, uint16_t pid, uint32_t count)
{
    struct subreq *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->conn = c;
    r->type = type;
    r->packet_id = pid;
    r->count = count;
    r->reasons = calloc(count, 1);
    r->filters = calloc(count, sizeof(char *));
    r->rh = calloc(count, 1);
    r->existed = calloc(count, sizeof(bool));
    if (!r->reasons || !r->filters || !r->rh || !r->existed) {
        subreq_free(r);
        return NULL;
    }
    return r;
}

uint32_t broker__topic_levels(struct proto_str t)
{
    uint32_t n = 1;
    for (uint32_t i = 0; i < t.len; i++)
        n += t.p[i] == '/';
    return n;
}

/* Proposes entry i; on failure to even queue it, marks it refused. */
static void propose_entry(struct subreq *r, uint32_t i, struct cluster_cmd *cmd)
{
    struct conn *c = r->conn;
    struct entry_wait *w = malloc(sizeof(*w));
    if (!w) {
        r->reasons[i] = PROTO_RC_UNSPECIFIED;
        return;
    }
    *w = (struct entry_wait){r, i};
    if (cluster_propose(c->b->cluster, cmd, entry_done, w) != 0) {
        free(w);
        r->reasons[i] = PROTO_RC_UNSPECIFIED;
        return;
    }
    r->waiting++;
    if (r->type == PROTO_SUBACK)
        c->b->sub_proposed++;
}

/* Hands the request over: pauses the connection until every entry completed,
 * or answers at once if nothing was proposed. */
static void start(struct subreq *r)
{
    struct conn *c = r->conn;
    broker__conn_hold(c);
    if (r->waiting == 0) {
        finish(r);
        return;
    }
    c->paused = true;
}

void broker__on_subscribe(struct conn *c, struct proto_packet *p)
{
    struct broker *b = c->b;
    struct session *s = c->session;
    const struct proto_subscribe *sp = &p->u.subscribe;
    uint32_t sub_id = (sp->props.has & PROTO_HAS_SUB_ID) ? sp->props.sub_ids[0] : 0;
    struct proto_str group, inner;

    for (uint32_t i = 0; i < sp->count; i++) {
        const struct proto_sub_entry *e = &sp->entries[i];
        if (e->no_local && proto_topic_filter_check(e->filter.p, e->filter.len) == 0 &&
            proto_shared_split(e->filter, &group, &inner)) {
            broker__conn_close(c, PROTO_RC_PROTOCOL_ERROR); /* [MQTT-3.8.3-4] */
            return;
        }
    }
    struct subreq *r = subreq_new(c, PROTO_SUBACK, sp->packet_id, sp->count);
    if (!r) {
        broker__conn_close(c, PROTO_RC_UNSPECIFIED);
        return;
    }
    uint32_t planned = s->sub_count;
    for (uint32_t i = 0; i < sp->count; i++) {
        const struct proto_sub_entry *e = &sp->entries[i];
        bool shared = false;
        if (proto_topic_filter_check(e->filter.p, e->filter.len) != 0 ||
            (b->cfg.max_topic_levels && broker__topic_levels(e->filter) > b->cfg.max_topic_levels)) {
            r->reasons[i] = PROTO_RC_TOPIC_FILTER_INVALID;
            continue;
        }
        if (!broker__access_subscribe(c, (const char *)e->filter.p, e->filter.len)) {
            /* v3 reads any code from 0x80 as a failure */
            LOG(b, LOG_INFO, c, "SUBSCRIBE to %.*s denied by the ACL", (int)e->filter.len, (const char *)e->filter.p);
            r->reasons[i] = PROTO_RC_NOT_AUTHORIZED;
            continue;
        }
        shared = proto_shared_split(e->filter, &group, &inner);
        r->filters[i] = str_dup_len((const char *)e->filter.p, e->filter.len);
        if (!r->filters[i]) {
            r->reasons[i] = PROTO_RC_UNSPECIFIED;
            continue;
        }
        if (b->cfg.max_subscriptions && !session_sub(s, r->filters[i]) && planned >= b->cfg.max_subscriptions) {
            r->reasons[i] = PROTO_RC_QUOTA_EXCEEDED;
            continue;
        }
        planned++;
        uint8_t qos = e->qos < b->cfg.max_qos ? e->qos : b->cfg.max_qos;
        r->reasons[i] = qos;
        r->rh[i] = shared ? 2 : e->retain_handling;
        struct cluster_cmd cmd = {
            .type = CLUSTER_SUB_ADD,
            .client_id = proto_cstr(s->client_id),
            .node = b->cfg.node_id,
            .generation = s->generation,
            .filter = e->filter,
            .qos = qos,
            .no_local = e->no_local,
            .retain_as_published = e->retain_as_published,
            .retain_handling = e->retain_handling,
            .sub_id = sub_id,
        };
        propose_entry(r, i, &cmd);
    }
    start(r);
}

void broker__on_unsubscribe(struct conn *c, struct proto_packet *p)
{
    struct broker *b = c->b;
    struct session *s = c->session;
    const struct proto_unsubscribe *up = &p->u.unsubscribe;
    struct subreq *r = subreq_new(c, PROTO_UNSUBACK, up->packet_id, up->count);
    if (!r) {
        broker__conn_close(c, PROTO_RC_UNSPECIFIED);
        return;
    }
    for (uint32_t i = 0; i < up->count; i++) {
        if (proto_topic_filter_check(up->filters[i].p, up->filters[i].len) != 0) {
            r->reasons[i] = PROTO_RC_TOPIC_FILTER_INVALID;
            continue;
        }
        struct cluster_cmd cmd = {
            .type = CLUSTER_SUB_DEL,
            .client_id = proto_cstr(s->client_id),
            .node = b->cfg.node_id,
            .generation = s->generation,
            .filter = up->filters[i],
        };
        propose_entry(r, i, &cmd);
    }
    if (c->version != PROTO_V5)
        r->count = 0; /* a v3.1.1 UNSUBACK has no payload */
    start(r);
}
