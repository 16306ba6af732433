/* remote: the broker's messages to and from other nodes over the cluster's
 * data links (cluster_send: ordered, acknowledged, resent after a broken link
 * without being handed up twice).
 *
 * PUBLISH: a message routed here that matches sessions another node serves
 * goes to that node once, with the shared-subscription members picked here
 * for it; that node delivers it to its own matching sessions (its own
 * subscriptions decide QoS, No Local, identifiers) and to the picked members,
 * never forwarding it further. The publisher's PUBACK/PUBREC waits until every
 * such node accepted it, or was given up on (a node unreachable for
 * node_timeout_ms: what its sessions would have received is lost with it).
 *
 * Encodings (little-endian):
 *   PUBLISH  u8 1, u64 log index the sender had applied, u8 flags (qos | retain << 2), u32 ms left before expiry
 *            (0 = none), u16 + topic, u16 + origin client id, u32 + message
 *            properties, u16 count, count x (u16 + client id, u16 + filter)
 *            of picked shared members, u32 + payload
 *   TAKEOVER u8 2, u16 + client id, u64 generation and u64 log index of the
 *            new claim, u8 clean
 *   HANDOFF  u8 3, u16 + client id, u64 generation, u16 next packet id,
 *            u16 count x u16 QoS 2 packet ids received, u32 count x inflight,
 *            u32 count x queued; each entry u16 packet id, u8 state, u8 qos,
 *            u8 retain, u16 count x u32 subscription ids, and unless the
 *            message was released (state PUBCOMP) the message: its fields as
 *            in PUBLISH and u32 + payload
 *
 * Session takeover across nodes (state.c, connect.c): the node whose claim
 * took a session from another node asks that node for it (TAKEOVER) once the
 * claim is applied; the old node disconnects its connection (0x8E) if it
 * still has one, and answers with what the session had in flight and queued
 * (HANDOFF). The new node sends its CONNACK only then, so that two nodes never
 * serve one client id; without an answer it waits until the old node must have
 * fenced itself (BROKER_LEASE_MS) and resumes without those messages. A
 * message forwarded to the old node after it handed the session over is
 * passed on to the new owner. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum remote_type { REMOTE_PUBLISH = 1, REMOTE_TAKEOVER = 2, REMOTE_HANDOFF = 3 };

#define HANDOFF_MAX_ENTRIES 1000000

/* --- encoding ----------------------------------------------------------------------- */

struct enc {
    uint8_t *p;
    size_t len, cap;
    bool fail;
};

static void enc_put(struct enc *e, const void *data, size_t n)
{
    if (e->fail)
        return;
    if (e->cap - e->len < n) {
        size_t cap = e->cap ? e->cap : 256;
        while (cap - e->len < n)
            cap *= 2;
        uint8_t *p = realloc(e->p, cap);
        if (!p) {
            e->fail = true;
            return;
        }
        e->p = p;
        e->cap = cap;
    }
    if (n)
        memcpy(e->p + e->len, data, n);
    e->len += n;
}

static void enc_u8(struct enc *e, uint8_t v) { enc_put(e, &v, 1); }

static void enc_u16(struct enc *e, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    enc_put(e, b, 2);
}

static void enc_u32(struct enc *e, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    enc_put(e, b, 4);
}

static void enc_u64(struct enc *e, uint64_t v)
{
    enc_u32(e, (uint32_t)v);
    enc_u32(e, (uint32_t)(v >> 32));
}

static void enc_str16(struct enc *e, const void *s, size_t n)
{
    if (n > UINT16_MAX) {
        e->fail = true;
        return;
    }
    enc_u16(e, (uint16_t)n);
    enc_put(e, s, n);
}

struct dec {
    const uint8_t *p;
    size_t len, pos;
    bool bad;
};

static const uint8_t *dec_take(struct dec *d, size_t n)
{
    if (d->bad || n > d->len - d->pos) {
        d->bad = true;
        return NULL;
    }
    const uint8_t *p = d->p + d->pos;
    d->pos += n;
    return p;
}

static uint8_t dec_u8(struct dec *d)
{
    const uint8_t *p = dec_take(d, 1);
    return p ? p[0] : 0;
}

static uint16_t dec_u16(struct dec *d)
{
    const uint8_t *p = dec_take(d, 2);
    return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

static uint32_t dec_u32(struct dec *d)
{
    const uint8_t *p = dec_take(d, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24 : 0;
}

static uint64_t dec_u64(struct dec *d)
{
    uint64_t lo = dec_u32(d);
    return lo | (uint64_t)dec_u32(d) << 32;
}

static struct proto_str dec_str16(struct dec *d)
{
    uint16_t n = dec_u16(d);
    const uint8_t *p = dec_take(d, n);
    return (struct proto_str){p, p ? n : 0};
}

static struct proto_str dec_str32(struct dec *d)
{
    uint32_t n = dec_u32(d);
    const uint8_t *p = dec_take(d, n);
    return (struct proto_str){p, p ? n : 0};
}

/* --- forwarded publishes ------------------------------------------------------------- */

static void on_forwarded(void *arg, int status)
{
    /* accepted, or the node was given up on: either way nothing more to wait for */
    (void)status;
    broker__ack_release(arg);
}

/* The message fields every encoding of a message carries. */
static void enc_msg(struct enc *e, const struct broker *b, const struct msg *m, uint8_t qos, bool retain)
{
    uint32_t left = 0;
    if (m->expire_at) {
        uint64_t now = broker__now(b);
        left = m->expire_at > now ? (uint32_t)(m->expire_at - now) : 1;
    }
    enc_u8(e, (uint8_t)(qos | (retain ? 4 : 0)));
    enc_u32(e, left);
    enc_str16(e, m->topic, m->topic_len);
    enc_str16(e, m->origin ? m->origin : "", m->origin ? strlen(m->origin) : 0);
    enc_u32(e, m->props_len);
    enc_put(e, m->props_raw, m->props_len);
}

void broker__remote_publish(struct broker *b, const struct route_node *r, struct msg *m, struct pub_ack *ack)
{
    if (m->qos == 0 && cluster_backlog(b->cluster, r->node) > BROKER_MAX_FORWARD_BACKLOG) {
        b->stats.publish_dropped++;
        return;
    }
    struct enc e = {0};
    enc_u8(&e, REMOTE_PUBLISH);
    enc_u64(&e, cluster_applied_index(b->cluster));
    enc_msg(&e, b, m, m->qos, m->retain);
    enc_u16(&e, (uint16_t)(r->nshared > UINT16_MAX ? UINT16_MAX : r->nshared));
    for (uint32_t i = 0; i < r->nshared && i < UINT16_MAX; i++) {
        const struct sub *sub = r->shared[i];
        enc_str16(&e, sub->session->client_id, sub->session->id_len);
        enc_str16(&e, sub->filter, sub->filter_len);
    }
    enc_u32(&e, m->payload_len);
    if (e.fail) {
        free(e.p);
        LOG(b, LOG_WARN, NULL, "forwarding %s to node %u: out of memory", m->topic, r->node);
        b->stats.publish_dropped++;
        return;
    }
    struct iovec parts[2] = {{e.p, e.len}, {m->payload, m->payload_len}};
    int rc = cluster_send(b->cluster, r->node, parts, 2, ack ? on_forwarded : NULL, ack);
    free(e.p);
    if (rc == 0) {
        if (ack)
            broker__ack_hold(ack);
        return;
    }
    b->stats.publish_dropped++;
    if (rc == -ENOBUFS && ack && ack->conn->version == PROTO_V5)
        ack->reason = PROTO_RC_QUOTA_EXCEEDED;
    LOG(b, LOG_DEBUG, NULL, "forwarding %s to node %u: %d", m->topic, r->node, rc);
}

/* The fields enc_msg wrote (views into the received bytes). */
struct msg_head {
    uint8_t qos;
    bool retain;
    uint32_t left;
    struct proto_str topic, origin, props;
};

static void dec_msg_head(struct dec *d, struct msg_head *h)
{
    uint8_t flags = dec_u8(d);
    h->left = dec_u32(d);
    h->topic = dec_str16(d);
    h->origin = dec_str16(d);
    h->props = dec_str32(d);
    h->qos = flags & 3;
    h->retain = (flags & 4) != 0;
    if (h->qos > 2 || h->topic.len == 0)
        d->bad = true;
}

/* Builds the message (copies everything); NULL when out of memory or the
 * properties do not decode. */
static struct msg *msg_build(struct broker *b, const struct msg_head *h, struct proto_str payload)
{
    struct proto_props props = {0};
    if (h->props.len && proto_props_decode(h->props.p, h->props.len, PROTO_PUBLISH, &props) != 0)
        return NULL;
    char *origin = h->origin.len ? strndup((const char *)h->origin.p, h->origin.len) : NULL;
    if (h->origin.len && !origin)
        return NULL;
    struct msg *m = broker__msg_new(h->topic, payload, &props, h->qos, h->retain,
                                    h->left ? broker__now(b) + h->left : 0, origin);
    free(origin);
    return m;
}

static void on_publish(struct broker *b, uint32_t from, struct dec *d)
{
    uint64_t origin_applied = dec_u64(d);
    struct msg_head h;
    dec_msg_head(d, &h);
    uint16_t nshared = dec_u16(d);
    size_t targets = d->pos;
    for (uint16_t i = 0; i < nshared && !d->bad; i++) {
        dec_str16(d);
        dec_str16(d);
    }
    struct proto_str payload = dec_str32(d);
    struct msg *m = d->bad ? NULL : msg_build(b, &h, payload);
    if (!m) {
        LOG(b, LOG_WARN, NULL, "PUBLISH from node %u dropped: %s", from, d->bad ? "malformed" : "out of memory");
        b->stats.publish_dropped++;
        return;
    }
    b->stats.msgs_received++;
    broker__route_forwarded(b, m, origin_applied);
    struct dec t = {d->p, d->len, targets, false};
    for (uint16_t i = 0; i < nshared; i++) {
        struct proto_str id = dec_str16(&t);
        struct proto_str filter = dec_str16(&t);
        struct session *s = broker__session_find(b, (const char *)id.p, id.len);
        struct sub *sub = s && s->owner == b->cfg.node_id
                              ? broker__sub_find(s, (const char *)filter.p, filter.len) : NULL;
        if (sub && sub->group)
            broker__deliver_shared(sub, m);
        else
            b->stats.publish_dropped++; /* the member moved or left meanwhile */
    }
    broker__msg_unref(m);
}

/* --- session takeover ----------------------------------------------------------------- */

void broker__remote_takeover(struct broker *b, struct session *s, uint32_t node, bool clean)
{
    struct enc e = {0};
    enc_u8(&e, REMOTE_TAKEOVER);
    enc_str16(&e, s->client_id, s->id_len);
    enc_u64(&e, s->generation);
    enc_u64(&e, s->claim_index);
    enc_u8(&e, clean);
    int rc = e.fail ? -ENOMEM : cluster_send(b->cluster, node, &(struct iovec){e.p, e.len}, 1, NULL, NULL);
    free(e.p);
    if (rc)
        LOG(b, LOG_INFO, NULL, "session %s: cannot ask node %u for it (%d): waiting for its lease to run out",
            s->client_id, node, rc);
}

static void enc_outlist(struct enc *e, const struct broker *b, const struct outlist *l)
{
    enc_u32(e, l->count);
    for (const struct outmsg *o = l->head; o; o = o->next) {
        enc_u16(e, o->packet_id);
        enc_u8(e, o->state);
        enc_u8(e, o->qos);
        enc_u8(e, o->retain);
        enc_u16(e, (uint16_t)o->nids);
        for (uint32_t i = 0; i < o->nids; i++)
            enc_u32(e, o->ids[i]);
        if (o->msg) {
            enc_msg(e, b, o->msg, o->msg->qos, o->msg->retain);
            enc_u32(e, o->msg->payload_len);
            enc_put(e, o->msg->payload, o->msg->payload_len);
        }
    }
}

/* The old owner's side: stop serving the session, send what it held. */
static void on_takeover(struct broker *b, uint32_t from, struct dec *d)
{
    struct proto_str id = dec_str16(d);
    uint64_t generation = dec_u64(d);
    uint64_t index = dec_u64(d);
    bool clean = dec_u8(d) != 0;
    if (d->bad || !id.len) {
        LOG(b, LOG_WARN, NULL, "malformed TAKEOVER from node %u dropped", from);
        return;
    }
    struct session *s = broker__session_find(b, (const char *)id.p, id.len);
    struct enc e = {0};
    enc_u8(&e, REMOTE_HANDOFF);
    enc_str16(&e, id.p, id.len);
    enc_u64(&e, generation);
    /* a claim applied here after the asker's (a later index) keeps the session */
    if (s && (s->generation == generation || s->claim_index < index)) {
        broker__session_handover(b, s, from, clean, index);
        enc_u16(&e, s->next_packet_id);
        enc_u16(&e, (uint16_t)s->qos2_in_count);
        for (uint32_t i = 0; i < s->qos2_in_count; i++)
            enc_u16(&e, s->qos2_in[i]);
        enc_outlist(&e, b, &s->inflight);
        enc_outlist(&e, b, &s->queue);
        LOG(b, LOG_INFO, NULL, "session %s handed over to node %u (%u in flight, %u queued)", s->client_id, from,
            s->inflight.count, s->queue.count);
        broker__outlist_clear(&s->inflight);
        broker__outlist_clear(&s->queue);
        s->qos2_in_count = 0;
    } else {
        enc_u16(&e, 1);
        enc_u16(&e, 0);
        enc_u32(&e, 0);
        enc_u32(&e, 0);
    }
    int rc = e.fail ? -ENOMEM : cluster_send(b->cluster, from, &(struct iovec){e.p, e.len}, 1, NULL, NULL);
    free(e.p);
    if (rc)
        LOG(b, LOG_WARN, NULL, "handing session %.*s over to node %u: %d", (int)id.len, (const char *)id.p, from, rc);
}

/* Reads count entries of a HANDOFF list into l (appended in order). */
static int dec_outlist(struct broker *b, struct dec *d, struct outlist *l)
{
    uint32_t count = dec_u32(d);
    if (count > HANDOFF_MAX_ENTRIES)
        d->bad = true;
    for (uint32_t n = 0; n < count && !d->bad; n++) {
        uint16_t pid = dec_u16(d);
        uint8_t state = dec_u8(d);
        uint8_t qos = dec_u8(d);
        uint8_t retain = dec_u8(d);
        uint16_t nids = dec_u16(d);
        if (d->bad || state > OUT_WAIT_PUBCOMP || qos < 1 || qos > 2)
            return -EINVAL;
        struct outmsg *o = calloc(1, sizeof(*o) + nids * sizeof(uint32_t));
        if (!o)
            return -ENOMEM;
        o->packet_id = pid;
        o->state = state;
        o->qos = qos;
        o->retain = retain != 0;
        o->nids = nids;
        for (uint16_t i = 0; i < nids; i++)
            o->ids[i] = dec_u32(d);
        if (state != OUT_WAIT_PUBCOMP) {
            struct msg_head h;
            dec_msg_head(d, &h);
            struct proto_str payload = dec_str32(d);
            o->msg = d->bad ? NULL : msg_build(b, &h, payload);
            if (!o->msg) {
                free(o);
                return d->bad ? -EINVAL : -ENOMEM;
            }
        }
        broker__outlist_append(l, o);
    }
    return d->bad ? -EINVAL : 0;
}

/* The new owner's side: what the old owner held goes first. */
static void on_handoff(struct broker *b, uint32_t from, struct dec *d)
{
    struct proto_str id = dec_str16(d);
    uint64_t generation = dec_u64(d);
    uint16_t next_pid = dec_u16(d);
    uint16_t nq2 = dec_u16(d);
    struct session *s = d->bad ? NULL : broker__session_find(b, (const char *)id.p, id.len);
    if (!s || s->generation != generation || s->owner != b->cfg.node_id || s->handoff_from != from) {
        LOG(b, LOG_DEBUG, NULL, "HANDOFF from node %u for a session not waiting for it: dropped", from);
        return;
    }
    struct outlist inflight = {0}, queue = {0};
    for (uint16_t i = 0; i < nq2 && !d->bad; i++) {
        uint16_t pid = dec_u16(d);
        if (!d->bad && !broker__qos2_in_has(s, pid))
            broker__qos2_in_add(s, pid);
    }
    int rc = dec_outlist(b, d, &inflight);
    if (rc == 0)
        rc = dec_outlist(b, d, &queue);
    if (rc) {
        LOG(b, LOG_WARN, NULL, "session %s: HANDOFF from node %u unusable (%d): resuming without it", s->client_id,
            from, rc);
        broker__outlist_clear(&inflight);
        broker__outlist_clear(&queue);
    } else {
        LOG(b, LOG_INFO, NULL, "session %s taken over from node %u (%u in flight, %u queued)", s->client_id, from,
            inflight.count, queue.count);
        /* nothing was sent on this node yet: its own messages wait in the queue */
        broker__outlist_concat(&inflight, &s->inflight);
        s->inflight = inflight;
        broker__outlist_concat(&queue, &s->queue);
        s->queue = queue;
        if (next_pid)
            s->next_packet_id = next_pid;
    }
    s->handoff_from = 0; /* answered: its node dealt with the old connection's will */
    broker__session_handoff_done(b, s);
}

void broker__remote_receive(void *ctx, uint32_t from, const uint8_t *data, size_t len)
{
    struct broker *b = ctx;
    struct dec d = {data, len, 0, false};
    switch (dec_u8(&d)) {
    case REMOTE_PUBLISH:
        on_publish(b, from, &d);
        break;
    case REMOTE_TAKEOVER:
        on_takeover(b, from, &d);
        break;
    case REMOTE_HANDOFF:
        on_handoff(b, from, &d);
        break;
    default:
        LOG(b, LOG_WARN, NULL, "unknown message from node %u dropped", from);
    }
    /* what it queued on connections is written before the loop polls (broker.c's prepare handle) */
}

/* Remembers since when other nodes are lost: the leader takes their sessions
 * on after the lease (session.c). */
void broker__remote_node_event(void *ctx, uint32_t node, bool alive)
{
    struct broker *b = ctx;
    uint32_t i = 0;
    while (i < b->lost_count && b->lost[i].node != node)
        i++;
    if (alive) {
        if (i < b->lost_count)
            b->lost[i] = b->lost[--b->lost_count];
        return;
    }
    if (i == b->lost_count && b->lost_count < sizeof(b->lost) / sizeof(b->lost[0]))
        b->lost[b->lost_count++] = (struct lost_node){node, broker__now(b)};
}
