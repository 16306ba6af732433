/* publish: an incoming PUBLISH (topic alias, checks, QoS 1/2 receive flow,
 * retained messages) and the acknowledgements of both directions.
 *
 * QoS 2 inbound is delivered on PUBLISH and its packet id remembered until
 * PUBREL, so a resent PUBLISH (DUP) is acknowledged but not delivered twice.
 * A retained PUBLISH is routed at once, its retain_set is proposed, and its
 * acknowledgement waits for the commit; the connection is paused meanwhile so
 * that the client's later packets keep their order. */
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "internal.h"

static void send_ack(struct conn *c, uint8_t type, uint16_t pid, uint8_t reason)
{
    struct proto_packet p = {.type = type};
    p.u.ack.packet_id = pid;
    p.u.ack.reason = c->version == PROTO_V5 ? reason : 0;
    broker__conn_send(c, &p);
}

/* The acknowledgement a received QoS 1/2 PUBLISH gets (none for QoS 0). */
static void ack_publish(struct conn *c, uint8_t qos, uint16_t pid, uint8_t reason)
{
    if (qos == 1) {
        send_ack(c, PROTO_PUBACK, pid, reason);
        c->in_unacked--;
    } else if (qos == 2) {
        send_ack(c, PROTO_PUBREC, pid, reason);
        if (reason >= 0x80) {
            c->in_unacked--;
            if (c->session && broker__qos2_in_del(c->session, pid))
                broker__durable_inbound(c->session, pid, false);
        }
    }
}

/* --- acknowledgements that wait ------------------------------------------------- */

static struct pub_ack *ack_new(struct conn *c, uint8_t qos, uint16_t pid)
{
    struct pub_ack *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->conn = c;
    a->qos = qos;
    a->pid = pid;
    a->holds = 1; /* the PUBLISH being handled */
    broker__conn_hold(c);
    list_push_back(&c->acks, &a->link);
    return a;
}

void broker__ack_hold(struct pub_ack *a) { a->holds++; }

/* Sends the acknowledgements at the head of the connection's list that
 * nothing holds any more [MQTT-4.6.0-2, 4.6.0-3: in PUBLISH order]. */
void broker__ack_release(struct pub_ack *a)
{
    struct conn *c = a->conn;
    if (--a->holds > 0 || list_first(&c->acks) != &a->link)
        return;
    struct list *first;
    while ((first = list_first(&c->acks)) && (a = list_entry(first, struct pub_ack, link))->holds == 0) {
        list_remove(&a->link);
        if (c->state == CONN_ACTIVE) {
            if (a->close) {
                LOG(c->b, LOG_WARN, c, "message not committed: closing (a v3 client resends)");
                broker__conn_close(c, 0xFF);
            } else {
                ack_publish(c, a->qos, a->pid, a->reason);
            }
        }
        free(a);
        bool more = !list_empty(&c->acks); /* they hold c too */
        broker__conn_release(c);     /* frees c when nothing else holds it */
        if (!more)
            break;
    }
}

/* Acknowledges now, or after the acknowledgements still waiting. */
static void ack_in_order(struct conn *c, uint8_t qos, uint16_t pid, uint8_t reason)
{
    struct pub_ack *a = qos && !list_empty(&c->acks) ? ack_new(c, qos, pid) : NULL;
    if (!a) {
        ack_publish(c, qos, pid, reason);
        return;
    }
    a->reason = reason;
    broker__ack_release(a);
}

struct retain_wait {
    struct conn *conn;
    struct pub_ack *ack;      /* NULL for QoS 0 */
};

static void retain_done(void *arg, int status, int result)
{
    struct retain_wait *w = arg;
    struct conn *c = w->conn;
    (void)result;
    if (status != 0 && w->ack) {
        /* not committed: a v5 client learns it; a v3 client gets no ack and
         * will resend (there is no failure code for it) */
        if (c->version == PROTO_V5)
            w->ack->reason = PROTO_RC_UNSPECIFIED;
        else
            w->ack->close = true;
    }
    if (w->ack)
        broker__ack_release(w->ack);
    if (c->state == CONN_ACTIVE)
        broker__conn_resume(c);
    free(w);
    broker__conn_release(c);
}

/* Resolves the topic alias of an incoming PUBLISH. Returns 0 or a v5 reason
 * code to disconnect with. */
static uint8_t resolve_alias(struct conn *c, struct proto_publish *pub)
{
    struct broker *b = c->b;
    if (!(pub->props.has & PROTO_HAS_TOPIC_ALIAS)) {
        return pub->topic.len ? 0 : PROTO_RC_PROTOCOL_ERROR;
    }
    uint16_t alias = pub->props.topic_alias;
    if (alias == 0 || alias > b->cfg.topic_alias_maximum)
        return PROTO_RC_TOPIC_ALIAS_INVALID; /* [MQTT-3.3.2-9, 3.3.2-10] */
    if (!c->in_alias) {
        c->in_alias = calloc((size_t)b->cfg.topic_alias_maximum + 1, sizeof(char *));
        if (!c->in_alias)
            return PROTO_RC_UNSPECIFIED;
    }
    if (pub->topic.len) {
        char *t = str_dup_len((const char *)pub->topic.p, pub->topic.len);
        if (!t)
            return PROTO_RC_UNSPECIFIED;
        free(c->in_alias[alias]);
        c->in_alias[alias] = t;
        return 0;
    }
    if (!c->in_alias[alias])
        return PROTO_RC_PROTOCOL_ERROR; /* an alias never set */
    pub->topic = proto_cstr(c->in_alias[alias]);
    return 0;
}

/* Checks that end the connection: the v5 reason code to disconnect with, or
 * 0 (the topic alias is resolved on the way). */
static uint8_t publish_violation(struct conn *c, struct proto_publish *pub)
{
    const struct config *cfg = &c->b->cfg;
    if (pub->qos > cfg->max_qos)
        return PROTO_RC_QOS_NOT_SUPPORTED; /* [MQTT-3.2.2-11] */
    if (pub->retain && !cfg->retain_available)
        return PROTO_RC_RETAIN_NOT_SUPPORTED; /* [MQTT-3.2.2-14] */
    if (pub->props.sub_id_count)
        return PROTO_RC_PROTOCOL_ERROR; /* [MQTT-3.3.4-6] */
    if (c->version == PROTO_V5)
        return resolve_alias(c, pub);
    return pub->topic.len ? 0 : PROTO_RC_PROTOCOL_ERROR;
}

/* The QoS 1/2 receive flow: false when the PUBLISH was dealt with here (a
 * resent QoS 2 acknowledged again, or the connection closed). */
static bool receive_qos(struct conn *c, const struct proto_publish *pub)
{
    struct session *s = c->session;
    if (pub->qos == 2 && broker__qos2_in_has(s, pub->packet_id)) {
        /* a resent QoS 2 PUBLISH we already have: acknowledge only */
        send_ack(c, PROTO_PUBREC, pub->packet_id, 0);
        return false;
    }
    if (++c->in_unacked > c->b->cfg.receive_maximum) {
        broker__conn_close(c, PROTO_RC_RECEIVE_MAX_EXCEEDED); /* [MQTT-3.3.4-9] */
        return false;
    }
    if (pub->qos == 2 && broker__qos2_in_add(s, pub->packet_id) != 0) {
        broker__conn_close(c, PROTO_RC_UNSPECIFIED);
        return false;
    }
    if (pub->qos == 2)
        broker__durable_inbound(s, pub->packet_id, true);
    return true;
}

/* Checks whose failure is reported in the acknowledgement (v5): the reason
 * code, or PROTO_RC_SUCCESS. */
static uint8_t publish_refusal(const struct broker *b, const struct proto_publish *pub)
{
    if (b->cfg.max_topic_levels && broker__topic_levels(pub->topic) > b->cfg.max_topic_levels)
        return PROTO_RC_TOPIC_NAME_INVALID;
    if ((pub->props.has & PROTO_HAS_PAYLOAD_FORMAT) && pub->props.payload_format == 1 &&
        proto_utf8_check(pub->payload.p, pub->payload.len) != 0)
        return PROTO_RC_PAYLOAD_FORMAT_INVALID;
    return PROTO_RC_SUCCESS;
}

static bool is_sys_topic(struct proto_str t)
{
    return t.len >= 4 && memcmp(t.p, "$SYS", 4) == 0 && (t.len == 4 || t.p[4] == '/');
}

/* Proposes m as its topic's retained message; the acknowledgement and the
 * connection's later packets wait for the commit. false when it could not
 * be proposed. */
static bool retain_start(struct conn *c, struct msg *m, struct pub_ack *ack)
{
    struct retain_wait *w = malloc(sizeof(*w));
    if (!w)
        return false;
    *w = (struct retain_wait){c, ack};
    if (broker__retain_propose(c->b, m, retain_done, w) != 0) {
        free(w);
        return false;
    }
    broker__conn_hold(c);
    c->paused = true;
    if (ack)
        broker__ack_hold(ack);
    return true;
}

/* How often the "retained quota" line may be logged. */
#define RETAIN_QUOTA_LOG_MS 10000

/* A retained PUBLISH the retained quota refuses: not retained, not
 * delivered. v5 learns it from the acknowledgement (0x97 Quota exceeded);
 * v3 has no code for it and is acknowledged as Mosquitto does for a PUBLISH
 * it will not deliver, the log line and the counter telling the operator. */
static void retain_refuse(struct conn *c, const struct proto_publish *pub)
{
    struct broker *b = c->b;
    uint64_t now = broker__now(b);
    b->stats.retained_refused++;
    if (!b->retain_refused_logged_at || now - b->retain_refused_logged_at >= RETAIN_QUOTA_LOG_MS) {
        b->retain_refused_logged_at = now ? now : 1;
        LOG(b, LOG_WARN, c,
            "retained quota reached (%u messages, %llu bytes; max_retained %u, bytes at most %llu: "
            "max_retained_bytes, capped at a quarter of store_max_mb): retained PUBLISH on %.*s refused "
            "(%llu so far)",
            b->retained_repl, (unsigned long long)b->retained_bytes, b->cfg.max_retained,
            (unsigned long long)broker__retain_bytes_max(b), (int)pub->topic.len, (const char *)pub->topic.p,
            (unsigned long long)b->stats.retained_refused);
    }
    ack_in_order(c, pub->qos, pub->packet_id, PROTO_RC_QUOTA_EXCEEDED);
}

/* Builds the message, routes it, and for a retained one proposes it. */
static void publish_route(struct conn *c, const struct proto_publish *pub)
{
    struct broker *b = c->b;
    uint64_t expire_at = 0;
    if (pub->props.has & PROTO_HAS_MESSAGE_EXPIRY)
        expire_at = broker__now(b) + (uint64_t)pub->props.message_expiry * 1000;
    struct msg *m = broker__msg_new(pub->topic, pub->payload, c->version == PROTO_V5 ? &pub->props : NULL,
                                    pub->qos, pub->retain, expire_at, c->session->client_id);
    if (!m) {
        broker__conn_close(c, PROTO_RC_UNSPECIFIED);
        return;
    }
    if (pub->retain && !broker__retain_quota_ok(b, m)) {
        broker__msg_unref(m);
        retain_refuse(c, pub);
        return;
    }
    struct pub_ack *ack = pub->qos ? ack_new(c, pub->qos, pub->packet_id) : NULL;
    if (pub->qos && !ack) {
        broker__msg_unref(m);
        broker__conn_close(c, PROTO_RC_UNSPECIFIED);
        return;
    }
    /* persistent sessions get it through the replicated log: the
     * acknowledgement also waits for the put to commit */
    if (ack && broker__durable_wanted(b, m)) {
        m->durable = true;
        if (broker__durable_propose(c, m, ack) != 0) {
            broker__msg_unref(m);
            ack->reason = PROTO_RC_UNSPECIFIED;
            ack->close = c->version != PROTO_V5;
            broker__ack_release(ack);
            return;
        }
    }
    b->routing_from = c; /* its reading may wait for a congested subscriber */
    uint32_t matched = broker__route(b, m, ack);
    b->routing_from = NULL;
    if (ack && ack->reason == PROTO_RC_SUCCESS)
        ack->reason = matched || m->durable ? PROTO_RC_SUCCESS : PROTO_RC_NO_MATCHING_SUBSCRIBERS;
    if (pub->retain && !retain_start(c, m, ack) && ack)
        ack->reason = PROTO_RC_UNSPECIFIED;
    broker__msg_unref(m);
    if (ack)
        broker__ack_release(ack);
}

void broker__on_publish(struct conn *c, struct proto_packet *p)
{
    struct broker *b = c->b;
    struct proto_publish *pub = &p->u.publish;
    uint8_t rc = publish_violation(c, pub);
    if (rc) {
        broker__conn_close(c, rc);
        return;
    }
    if (pub->qos && !receive_qos(c, pub))
        return;
    b->stats.msgs_received++;

    uint8_t reason = publish_refusal(b, pub);
    if (reason) {
        LOG(b, LOG_DEBUG, c, "PUBLISH refused: 0x%02X", reason);
        if (c->version != PROTO_V5)
            broker__conn_close(c, 0xFF);
        else
            ack_in_order(c, pub->qos, pub->packet_id, reason);
        return;
    }
    if (!broker__access_publish(c, (const char *)pub->topic.p, pub->topic.len)) {
        /* the ACL denies it: v5 learns it from the acknowledgement (0x87);
         * QoS 0 and v3 have no code for it: dropped (and acknowledged, as
         * Mosquitto does), or the connection closed (acl_deny_disconnect) */
        LOG(b, LOG_INFO, c, "PUBLISH on %.*s denied by the ACL", (int)pub->topic.len, (const char *)pub->topic.p);
        if (b->cfg.acl_deny_disconnect)
            broker__conn_close(c, PROTO_RC_NOT_AUTHORIZED);
        else
            ack_in_order(c, pub->qos, pub->packet_id,
                         c->version == PROTO_V5 ? PROTO_RC_NOT_AUTHORIZED : PROTO_RC_SUCCESS);
        return;
    }
    if (is_sys_topic(pub->topic)) {
        /* $SYS belongs to the broker: accepted, not delivered */
        ack_in_order(c, pub->qos, pub->packet_id, PROTO_RC_SUCCESS);
        return;
    }
    publish_route(c, pub);
}

void broker__on_ack(struct conn *c, struct proto_packet *p)
{
    struct session *s = c->session;
    const struct proto_ack *a = &p->u.ack;
    struct outmsg *o;
    switch (p->type) {
    case PROTO_PUBACK:
        if ((o = broker__inflight_find(s, a->packet_id, OUT_WAIT_PUBACK)))
            broker__inflight_done(s, o);
        break;
    case PROTO_PUBREC:
        o = broker__inflight_find(s, a->packet_id, OUT_WAIT_PUBREC);
        if (!o && (o = broker__inflight_find(s, a->packet_id, OUT_WAIT_PUBCOMP)) != NULL) {
            if (o->committing)
                return; /* the PUBREL goes out once the first PUBREC committed */
            /* a PUBREC again (the client did not see our PUBREL): the flow
             * goes on (4.3.3); 0x92 would tell it the id is unknown */
            send_ack(c, PROTO_PUBREL, a->packet_id, 0);
            return;
        }
        if (!o) {
            /* [MQTT-4.3.3] answer an unknown id so the client can finish */
            send_ack(c, PROTO_PUBREL, a->packet_id, PROTO_RC_PACKET_ID_NOT_FOUND);
            break;
        }
        if (c->version == PROTO_V5 && a->reason >= 0x80) {
            broker__inflight_done(s, o); /* refused by the receiver: the flow ends */
            break;
        }
        broker__inflight_released(s, o);
        if (!o->committing) /* a durable one's PUBREL waits for its PUBREC to commit */
            send_ack(c, PROTO_PUBREL, a->packet_id, 0);
        return;
    case PROTO_PUBCOMP:
        if ((o = broker__inflight_find(s, a->packet_id, OUT_WAIT_PUBCOMP)))
            broker__inflight_done(s, o);
        break;
    case PROTO_PUBREL: {
        bool known = broker__qos2_in_has(s, a->packet_id);
        /* an id from an earlier connection never counted on this one */
        if (known && broker__qos2_in_del(s, a->packet_id)) {
            broker__durable_inbound(s, a->packet_id, false);
            if (c->in_unacked)
                c->in_unacked--;
        }
        send_ack(c, PROTO_PUBCOMP, a->packet_id, known ? 0 : PROTO_RC_PACKET_ID_NOT_FOUND);
        return;
    }
    }
    broker__session_drain(s);
}
