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
 *   PUBLISH  u8 1, u64 log index the sender had applied, u8 flags (qos | retain << 2 | durable << 3: persistent
 *            sessions get it from the durable queue), u32 ms left before expiry
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
 *            in PUBLISH and u32 + payload; then u64 its durable queue entry
 *            (0: none; the new node skips that entry when it reads the
 *            session's durable queue from its store)
 *
 * Session takeover across nodes (indexes.c, connect.c): the node whose claim
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

#include "str.h"
#include "internal.h"

enum remote_type { REMOTE_PUBLISH = 1, REMOTE_TAKEOVER = 2, REMOTE_HANDOFF = 3 };

#define HANDOFF_MAX_ENTRIES 1000000

/* --- encoding ----------------------------------------------------------------------- */

/* A message being encoded into out: each put reserves its bytes, and the
 * first failure (out of memory, a string longer than its u16 length) stops
 * the puts after it and stays in err, so a message is checked once, before
 * it is sent. */
struct enc {
    struct buf out;
    int err;
};

static bool enc_room(struct enc *e, size_t n)
{
    if (!e->err)
        e->err = buf_reserve(&e->out, n);
    return !e->err;
}

static void enc_put(struct enc *e, const void *data, size_t n)
{
    if (enc_room(e, n))
        buf_put_mem(&e->out, data, n);
}

static void enc_u8(struct enc *e, uint8_t v)
{
    if (enc_room(e, 1))
        buf_put_u8(&e->out, v);
}

static void enc_u16(struct enc *e, uint16_t v)
{
    if (enc_room(e, 2))
        buf_put_u16le(&e->out, v);
}

static void enc_u32(struct enc *e, uint32_t v)
{
    if (enc_room(e, 4))
        buf_put_u32le(&e->out, v);
}

static void enc_u64(struct enc *e, uint64_t v)
{
    if (enc_room(e, 8))
        buf_put_u64le(&e->out, v);
}

static void enc_str16(struct enc *e, const void *s, size_t n)
{
    if (n > UINT16_MAX && !e->err)
        e->err = -E2BIG;
    enc_u16(e, (uint16_t)n);
    enc_put(e, s, n);
}

/* --- decoding: a bytes_reader whose short reads give -EBADMSG ------------------------- */

/* The next n bytes, as a view into the message. */
static int read_view(struct bytes_reader *r, size_t n, struct proto_str *s)
{
    const uint8_t *p;
    int rc = bytes_read_view(r, n, &p);
    if (!rc)
        *s = (struct proto_str){p, (uint32_t)n};
    return rc;
}

static int read_str16(struct bytes_reader *r, struct proto_str *s)
{
    uint16_t n;
    return bytes_read_u16le(r, &n) ? -EBADMSG : read_view(r, n, s);
}

static int read_str32(struct bytes_reader *r, struct proto_str *s)
{
    uint32_t n;
    return bytes_read_u32le(r, &n) ? -EBADMSG : read_view(r, n, s);
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
    enc_u8(e, (uint8_t)(qos | (retain ? 4 : 0) | (m->durable ? 8 : 0)));
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
    if (e.err) {
        buf_free(&e.out);
        LOG(b, LOG_WARN, NULL, "forwarding %s to node %u: out of memory", m->topic, r->node);
        b->stats.publish_dropped++;
        return;
    }
    struct iovec parts[2] = {{e.out.data, e.out.len}, {m->payload, m->payload_len}};
    int rc = cluster_send(b->cluster, r->node, parts, 2, ack ? on_forwarded : NULL, ack);
    buf_free(&e.out);
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
    bool durable;
    uint32_t left;
    struct proto_str topic, origin, props;
};

static int read_msg_head(struct bytes_reader *r, struct msg_head *h)
{
    uint8_t flags;
    if (bytes_read_u8(r, &flags) || bytes_read_u32le(r, &h->left) || read_str16(r, &h->topic) ||
        read_str16(r, &h->origin) || read_str32(r, &h->props))
        return -EBADMSG;
    h->qos = flags & 3;
    h->retain = (flags & 4) != 0;
    h->durable = (flags & 8) != 0;
    return h->qos > 2 || h->topic.len == 0 ? -EBADMSG : 0;
}

/* Builds the message (copies everything); NULL when out of memory or the
 * properties do not decode. */
static struct msg *msg_build(struct broker *b, const struct msg_head *h, struct proto_str payload)
{
    struct proto_props props = {0};
    if (h->props.len && proto_props_decode(h->props.p, h->props.len, PROTO_PUBLISH, &props) != 0)
        return NULL;
    char *origin = h->origin.len ? str_dup_len((const char *)h->origin.p, h->origin.len) : NULL;
    if (h->origin.len && !origin)
        return NULL;
    struct msg *m = broker__msg_new(h->topic, payload, &props, h->qos, h->retain,
                                    h->left ? broker__now(b) + h->left : 0, origin);
    free(origin);
    if (m)
        m->durable = h->durable;
    return m;
}

static void publish_route(struct broker *b, uint32_t from, struct bytes_reader *r)
{
    uint64_t origin_applied;
    struct msg_head h;
    uint16_t nshared = 0;
    struct proto_str id, filter, payload;
    bool bad = bytes_read_u64le(r, &origin_applied) || read_msg_head(r, &h) || bytes_read_u16le(r, &nshared);
    struct bytes_reader targets = *r;
    for (uint16_t i = 0; i < nshared && !bad; i++)
        bad = read_str16(r, &id) || read_str16(r, &filter);
    bad = bad || read_str32(r, &payload);
    struct msg *m = bad ? NULL : msg_build(b, &h, payload);
    if (!m) {
        LOG(b, LOG_WARN, NULL, "PUBLISH from node %u dropped: %s", from, bad ? "malformed" : "out of memory");
        b->stats.publish_dropped++;
        return;
    }
    b->stats.msgs_received++;
    broker__route_forwarded(b, m, origin_applied);
    for (uint16_t i = 0; i < nshared; i++) {
        read_str16(&targets, &id); /* read once above: cannot fail */
        read_str16(&targets, &filter);
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

/* A forwarded PUBLISH was routed by its sender on the replicated state up to
 * the log index it had applied; this node may not have applied that much yet.
 * Routed here on an older state it can miss a session: the sender applied the
 * claim that moves a session here from node O (O itself, which then passes
 * on what reaches it, or any node that routes by the new owner) while this
 * node has not, so here the session is still O's and the message is dropped
 * (match_cb: not ours, not handed over by us), yet the sender counts it
 * accepted and its publisher got its PUBACK (issue 15: QoS 1 messages lost at
 * a takeover with no fault). Sessions come here only by the claims of this
 * node's CONNECTs, so while one is not applied yet such a message waits until
 * this node applied the sender's index, and the ones after it from the same
 * sender wait behind it (a sender's messages stay in order). One that waited
 * longer than the fence is routed as it is (this node is cut off from the
 * leader and stops serving anyway). */
struct fwd_wait {
    struct list link;
    uint32_t from;
    uint64_t need;            /* the sender's applied index */
    uint64_t since;           /* monotonic ms */
    size_t len;
    uint8_t data[];           /* the PUBLISH after its type byte */
};

#define FWD_WAIT_MAX_BYTES ((size_t)64 << 20)

static bool fwd_waiting_from(const struct broker *b, uint32_t from)
{
    if (!b->fwd_waiting_count)
        return false;
    list_foreach(it, &b->fwd_waiting)
        if (list_entry(it, struct fwd_wait, link)->from == from)
            return true;
    return false;
}

static void on_publish(struct broker *b, uint32_t from, struct bytes_reader *r)
{
    struct bytes_reader peek = *r;
    uint64_t need = 0;
    bytes_read_u64le(&peek, &need); /* malformed: publish_route says so */
    size_t len = bytes_left(r);
    bool behind = need > cluster_applied_index(b->cluster) && !list_empty(&b->claims);
    if ((behind || fwd_waiting_from(b, from)) && b->fwd_waiting_bytes + len <= FWD_WAIT_MAX_BYTES) {
        struct fwd_wait *w = malloc(sizeof(*w) + (len ? len : 1));
        if (w) {
            if (len)
                memcpy(w->data, bytes_cursor(r), len);
            w->from = from;
            w->need = need;
            w->since = broker__now(b);
            w->len = len;
            list_push_back(&b->fwd_waiting, &w->link);
            b->fwd_waiting_count++;
            b->fwd_waiting_bytes += len;
            return;
        }
    }
    publish_route(b, from, r);
}

/* Before the loop polls (the entries applied meanwhile) and every second:
 * the waiting PUBLISHes whose sender's index this node reached are routed,
 * in order per sender. */
void broker__remote_applied(struct broker *b)
{
    if (!b->fwd_waiting_count)
        return;
    uint64_t applied = cluster_applied_index(b->cluster);
    uint64_t now = broker__now(b);
    uint32_t blocked[CONFIG_MAX_PEERS * 4];
    uint32_t nblocked = 0, late = 0;
    list_foreach_safe(it, &b->fwd_waiting) {
        struct fwd_wait *w = list_entry(it, struct fwd_wait, link);
        bool held = false;
        for (uint32_t i = 0; i < nblocked && !held; i++)
            held = blocked[i] == w->from;
        if (!held && w->need > applied && now - w->since < broker__fence_ms(b)) {
            if (nblocked < sizeof(blocked) / sizeof(blocked[0]))
                blocked[nblocked++] = w->from;
            held = true;
        }
        if (held)
            continue;
        late += w->need > applied;
        list_remove(&w->link);
        b->fwd_waiting_count--;
        b->fwd_waiting_bytes -= w->len;
        struct bytes_reader r;
        bytes_reader_init(&r, w->data, w->len, -EBADMSG);
        publish_route(b, w->from, &r);
        free(w);
    }
    if (late)
        LOG(b, LOG_WARN, NULL, "%u forwarded PUBLISH(es) waited longer than %llu ms for the log: routed now", late,
            (unsigned long long)broker__fence_ms(b));
}

void broker__remote_free(struct broker *b)
{
    struct list *it;
    while (b->fwd_waiting.next && (it = list_pop_front(&b->fwd_waiting)))
        free(list_entry(it, struct fwd_wait, link));
    b->fwd_waiting_count = 0;
    b->fwd_waiting_bytes = 0;
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
    int rc = e.err ? -ENOMEM
                   : cluster_send(b->cluster, node, &(struct iovec){e.out.data, e.out.len}, 1, NULL, NULL);
    buf_free(&e.out);
    if (rc)
        LOG(b, LOG_INFO, NULL, "session %s: cannot ask node %u for it (%d): waiting for its lease to run out",
            s->client_id, node, rc);
}

static void enc_outlist(struct enc *e, const struct broker *b, const struct outlist *l)
{
    enc_u32(e, l->count);
    list_foreach(it, &l->items) {
        const struct outmsg *o = list_entry(it, struct outmsg, link);
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
        enc_u64(e, o->dmsg_id);
    }
}

/* The old owner's side: stop serving the session, send what it held. */
static void on_takeover(struct broker *b, uint32_t from, struct bytes_reader *r)
{
    struct proto_str id;
    uint64_t generation, index;
    uint8_t clean;
    if (read_str16(r, &id) || bytes_read_u64le(r, &generation) || bytes_read_u64le(r, &index) ||
        bytes_read_u8(r, &clean) || !id.len) {
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
        broker__session_handover(b, s, from, clean != 0, index);
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
    int rc = e.err ? -ENOMEM
                   : cluster_send(b->cluster, from, &(struct iovec){e.out.data, e.out.len}, 1, NULL, NULL);
    buf_free(&e.out);
    if (rc)
        LOG(b, LOG_WARN, NULL, "handing session %.*s over to node %u: %d", (int)id.len, (const char *)id.p, from, rc);
}

/* Reads one entry of a HANDOFF list; *out NULL and -EBADMSG or -ENOMEM on failure. */
static int read_outmsg(struct broker *b, struct bytes_reader *r, struct outmsg **out)
{
    uint16_t pid, nids;
    uint8_t state, qos, retain;
    *out = NULL;
    if (bytes_read_u16le(r, &pid) || bytes_read_u8(r, &state) || bytes_read_u8(r, &qos) ||
        bytes_read_u8(r, &retain) || bytes_read_u16le(r, &nids) || state > OUT_WAIT_PUBCOMP || qos < 1 || qos > 2)
        return -EBADMSG;
    struct outmsg *o = calloc(1, sizeof(*o) + nids * sizeof(uint32_t));
    if (!o)
        return -ENOMEM;
    o->packet_id = pid;
    o->state = state;
    o->qos = qos;
    o->retain = retain != 0;
    o->nids = nids;
    bool bad = false;
    for (uint16_t i = 0; i < nids && !bad; i++)
        bad = bytes_read_u32le(r, &o->ids[i]) != 0;
    if (!bad && state != OUT_WAIT_PUBCOMP) {
        struct msg_head h;
        struct proto_str payload;
        bad = read_msg_head(r, &h) || read_str32(r, &payload);
        o->msg = bad ? NULL : msg_build(b, &h, payload);
        if (!o->msg) {
            free(o);
            return bad ? -EBADMSG : -ENOMEM;
        }
    }
    if (!bad)
        bad = bytes_read_u64le(r, &o->dmsg_id) != 0;
    if (bad) {
        broker__msg_unref(o->msg);
        free(o);
        return -EBADMSG;
    }
    *out = o;
    return 0;
}

/* Reads count entries of a HANDOFF list into l (appended in order). */
static int read_outlist(struct broker *b, struct bytes_reader *r, struct outlist *l)
{
    uint32_t count;
    if (bytes_read_u32le(r, &count) || count > HANDOFF_MAX_ENTRIES)
        return -EBADMSG;
    for (uint32_t n = 0; n < count; n++) {
        struct outmsg *o;
        int rc = read_outmsg(b, r, &o);
        if (rc)
            return rc;
        broker__outlist_append(l, o);
    }
    return 0;
}

/* The new owner's side: what the old owner held goes first. */
static void on_handoff(struct broker *b, uint32_t from, struct bytes_reader *r)
{
    struct proto_str id;
    uint64_t generation;
    uint16_t next_pid, nq2;
    bool bad = read_str16(r, &id) || bytes_read_u64le(r, &generation) || bytes_read_u16le(r, &next_pid) ||
               bytes_read_u16le(r, &nq2);
    struct session *s = bad ? NULL : broker__session_find(b, (const char *)id.p, id.len);
    if (!s || s->generation != generation || s->owner != b->cfg.node_id || s->handoff_from != from) {
        LOG(b, LOG_DEBUG, NULL, "HANDOFF from node %u for a session not waiting for it: dropped", from);
        return;
    }
    struct outlist inflight, queue;
    broker__outlist_init(&inflight);
    broker__outlist_init(&queue);
    int rc = 0;
    for (uint16_t i = 0; i < nq2 && !rc; i++) {
        uint16_t pid;
        rc = bytes_read_u16le(r, &pid);
        if (!rc && !broker__qos2_in_has(s, pid))
            broker__qos2_in_add(s, pid);
    }
    if (rc == 0)
        rc = read_outlist(b, r, &inflight);
    if (rc == 0)
        rc = read_outlist(b, r, &queue);
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
        broker__outlist_concat(&s->inflight, &inflight);
        broker__outlist_concat(&queue, &s->queue);
        broker__outlist_concat(&s->queue, &queue);
        if (next_pid)
            s->next_packet_id = next_pid;
    }
    s->handoff_from = 0; /* answered: its node dealt with the old connection's will */
    broker__session_handoff_done(b, s);
}

void broker__remote_receive(void *ctx, uint32_t from, const uint8_t *data, size_t len)
{
    struct broker *b = ctx;
    struct bytes_reader r;
    uint8_t type = 0;
    bytes_reader_init(&r, data, len, -EBADMSG);
    bytes_read_u8(&r, &type);
    switch (type) {
    case REMOTE_PUBLISH:
        on_publish(b, from, &r);
        break;
    case REMOTE_TAKEOVER:
        on_takeover(b, from, &r);
        break;
    case REMOTE_HANDOFF:
        on_handoff(b, from, &r);
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
