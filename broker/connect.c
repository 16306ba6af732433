/* connect: CONNECT / CONNACK, DISCONNECT and the end of a connection.
 *
 * Happy path: CONNECT is validated, the connection pauses and proposes a
 * session_claim (client id, this node, a fresh generation, clean start, expiry,
 * will). When the claim is applied (indexes.c), any older connection of the same
 * client id is disconnected with 0x8E; then claim_done attaches this connection
 * to the session, sends CONNACK (session present when the session survived) and
 * resends what was in flight.
 * Failure modes: a refused CONNECT gets a CONNACK with the reason code and the
 * connection is closed; a claim that cannot commit gets 0x88 (server
 * unavailable); a claim overtaken by a newer claim of the same client id before
 * it completed closes this connection. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "internal.h"
#include "transport.h"

/* Whether a v3.1 / 3.1.1 CONNACK has a return code for this refusal (the
 * others would read as 0x03, server unavailable: such a client is closed
 * without a CONNACK instead, as the protocol has nothing better to say). */
static bool v3_has_code(uint8_t reason)
{
    switch (reason) {
    case PROTO_RC_UNSUPPORTED_VERSION:
    case PROTO_RC_CLIENTID_INVALID:
    case PROTO_RC_SERVER_UNAVAILABLE:
    case PROTO_RC_SERVER_BUSY:
    case PROTO_RC_BAD_USERNAME_PASSWORD:
    case PROTO_RC_NOT_AUTHORIZED:
    case PROTO_RC_BAD_AUTH_METHOD:
        return true;
    default:
        return false;
    }
}

/* Refuses the CONNECT: a CONNACK with the reason the client can act on
 * [MQTT-3.2.2-6, 4.13.1], then the close. */
static void refuse(struct conn *c, uint8_t reason)
{
    struct proto_packet r = {.type = PROTO_CONNACK};
    r.u.connack.reason = reason;
    /* refusals for descriptors are counted in one line every few seconds (listen.c) */
    int level = reason == PROTO_RC_SERVER_BUSY && broker__fds_low(c->b) ? LOG_DEBUG : LOG_INFO;
    if (c->version == PROTO_V5 || v3_has_code(reason)) {
        LOG(c->b, level, c, "CONNECT refused: 0x%02X", reason);
        broker__conn_send(c, &r);
    } else {
        LOG(c->b, level, c, "CONNECT refused: 0x%02X (no v3 return code: closed)", reason);
    }
    broker__conn_close(c, 0xFF);
}

void broker__connect_refuse(struct conn *c, uint8_t reason) { refuse(c, reason); }

/* The protocol level byte of a CONNECT that did not decode (pkt, borrowed,
 * holds the len bytes of it that arrived), or 0. */
static uint8_t connect_level(const uint8_t *pkt, size_t len)
{
    size_t i = 1;
    while (i < len && i < 5 && (pkt[i] & 0x80))
        i++;
    i++; /* last remaining-length byte */
    if (i + 2 > len)
        return 0;
    size_t name = (size_t)pkt[i] << 8 | pkt[i + 1];
    i += 2 + name;
    return i < len ? pkt[i] : 0;
}

void broker__connect_undecodable(struct conn *c, int err, const uint8_t *pkt, size_t len)
{
    /* the reply is in v5 form only to a client that spoke v5 [MQTT-3.1.2-2] */
    c->version = connect_level(pkt, len) == PROTO_V5 ? PROTO_V5 : PROTO_V311;
    LOG(c->b, LOG_INFO, c, "CONNECT not decoded: %s", proto_error_name(err));
    if (err == PROTO_ENOMEM) {
        broker__conn_close(c, 0xFF);
        return;
    }
    refuse(c, proto_error_reason(err));
}

static struct will *will_copy(const struct proto_connect *cp)
{
    struct proto_props mp = cp->will_props;
    /* the will delay belongs to the session, not to the message */
    mp.has &= ~(uint32_t)PROTO_HAS_WILL_DELAY;
    struct buf props = {0};
    if (cp->version == PROTO_V5 && proto_props_encode(&mp, &props) != 0) {
        free(props.data);
        return NULL;
    }
    struct will *w = calloc(1, sizeof(*w));
    if (!w) {
        free(props.data);
        return NULL;
    }
    w->topic = str_dup_len((const char *)cp->will_topic.p, cp->will_topic.len);
    w->payload = malloc(cp->will_payload.len ? cp->will_payload.len : 1);
    if (!w->topic || !w->payload) {
        free(props.data);
        broker__will_free(w);
        return NULL;
    }
    memcpy(w->payload, cp->will_payload.p, cp->will_payload.len);
    w->payload_len = cp->will_payload.len;
    w->props_raw = props.data;
    w->props_len = (uint32_t)props.len;
    w->qos = cp->will_qos;
    w->retain = cp->will_retain;
    w->delay = (cp->will_props.has & PROTO_HAS_WILL_DELAY) ? cp->will_props.will_delay : 0;
    return w;
}

struct claim {
    struct list link;       /* in broker.claims while committing, then broker.parked */
    struct conn *conn;
    int status, result;     /* of the commit */
    uint32_t expiry;
    bool clean_start;
    bool assigned;          /* the client id was assigned by us */
    bool keepalive_lowered;
    bool expiry_lowered;
    bool owned;             /* the session belongs to the connecting identity (access.c) */
};

bool broker__claim_pending(const struct broker *b, uint64_t generation)
{
    /* oldest first: claims commit in the order they were proposed, so the one
     * being applied is almost always the head */
    list_foreach(it, &b->claims)
        if (list_entry(it, struct claim, link)->conn->generation == generation)
            return true;
    return false;
}

static void claim_done(void *arg, int status, int result)
{
    struct claim *cl = arg;
    struct conn *c = cl->conn;
    struct broker *b = c->b;
    list_remove(&cl->link);
    cl->status = status;
    cl->result = result;
    struct session *s = status == 0 ? broker__session_find(b, c->client_id, strlen(c->client_id)) : NULL;
    if (s && s->generation == c->generation && s->handoff_from && c->state == CONN_CLAIMING) {
        /* the session comes from another node: CONNACK once it handed it over */
        LOG(b, LOG_DEBUG, c, "waiting for node %u to hand the session over", s->handoff_from);
        s->parked = cl;
        list_push_front(&b->parked, &cl->link);
        return;
    }
    broker__claim_complete(cl);
}

void broker__claims_tick(struct broker *b)
{
    uint64_t now = broker__now(b);
    list_foreach_safe(it, &b->parked) {
        struct claim *cl = list_entry(it, struct claim, link);
        struct conn *c = cl->conn;
        struct session *s = broker__session_find(b, c->client_id, strlen(c->client_id));
        if (!s || s->parked != cl) {
            broker__claim_complete(cl); /* cannot happen: the session always knows its parked claim */
            continue;
        }
        if (c->state == CONN_CLAIMING && now < s->handoff_deadline)
            continue;
        if (c->state == CONN_CLAIMING)
            LOG(b, LOG_WARN, c, "no handoff from node %u in time: resuming the session without what it held",
                s->handoff_from);
        broker__session_handoff_done(b, s);
    }
}

/* The socket went away while the claim was committing: end the session the
 * way a dropped connection would, without publishing its will. */
static void claim_abandon(struct claim *cl)
{
    struct conn *c = cl->conn;
    struct broker *b = c->b;
    struct session *s = broker__session_find(b, c->client_id, strlen(c->client_id));
    if (cl->status == 0 && s && s->generation == c->generation && !s->conn && s->expiry == 0) {
        broker__session_propose_expire(b, s);
    } else if (cl->status == 0 && s && s->generation == c->generation && !s->conn) {
        s->expire_at = s->expiry == UINT32_MAX ? 0 : broker__now(b) + (uint64_t)s->expiry * 1000;
        broker__session_timed_add(b, s);
    }
}

/* The CONNACK refusal a completed claim ends in, or 0 with *out the session
 * the connection now serves. */
static uint8_t claim_refusal(const struct claim *cl, struct session **out)
{
    struct conn *c = cl->conn;
    struct broker *b = c->b;
    if (cl->status == CLUSTER_EPERM) {
        /* decided by the store, the same on every node (cluster/apply.c) */
        LOG(b, LOG_WARN, c, "CONNECT refused: client id %s belongs to the session of another user", c->client_id);
        return PROTO_RC_NOT_AUTHORIZED;
    }
    if (cl->status != 0) {
        LOG(b, LOG_WARN, c, "session claim failed: %d", cl->status);
        return PROTO_RC_SERVER_UNAVAILABLE;
    }
    struct session *s = broker__session_find(b, c->client_id, strlen(c->client_id));
    if (!s || s->generation != c->generation) {
        LOG(b, LOG_INFO, c, "session claim overtaken by a newer connection");
        return PROTO_RC_SESSION_TAKEN_OVER;
    }
    if (b->cfg.max_connections && b->connected >= b->cfg.max_connections)
        return PROTO_RC_SERVER_BUSY;
    *out = s;
    return 0;
}

/* What a v5 CONNACK tells the client about this server and its connection. */
static void connack_props(const struct claim *cl, struct proto_props *pp)
{
    const struct conn *c = cl->conn;
    const struct config *cfg = &c->b->cfg;
    if (cl->assigned)
        pp->assigned_client_id = proto_cstr(c->client_id);
    if (cfg->receive_maximum < 65535) {
        pp->has |= PROTO_HAS_RECEIVE_MAXIMUM;
        pp->receive_maximum = cfg->receive_maximum;
    }
    pp->has |= PROTO_HAS_MAXIMUM_PACKET_SIZE;
    pp->maximum_packet_size = cfg->max_packet_size;
    if (cfg->topic_alias_maximum) {
        pp->has |= PROTO_HAS_TOPIC_ALIAS_MAXIMUM;
        pp->topic_alias_maximum = cfg->topic_alias_maximum;
    }
    if (!cfg->retain_available) {
        pp->has |= PROTO_HAS_RETAIN_AVAILABLE;
        pp->retain_available = 0;
    }
    if (cfg->max_qos < 2) {
        pp->has |= PROTO_HAS_MAXIMUM_QOS;
        pp->maximum_qos = cfg->max_qos;
    }
    if (cl->keepalive_lowered) {
        pp->has |= PROTO_HAS_SERVER_KEEP_ALIVE;
        pp->server_keep_alive = c->keep_alive;
    }
    if (cl->expiry_lowered) {
        pp->has |= PROTO_HAS_SESSION_EXPIRY;
        pp->session_expiry = cl->expiry;
    }
    /* absent means available too, but some clients only trust what is said */
    pp->has |= PROTO_HAS_WILDCARD_SUB_AVAILABLE | PROTO_HAS_SUB_ID_AVAILABLE | PROTO_HAS_SHARED_SUB_AVAILABLE;
    pp->wildcard_sub_available = 1;
    pp->sub_id_available = 1;
    pp->shared_sub_available = 1;
    broker__enhanced_connack(cl->conn, pp);
}

/* The connection serves s from now on: CONNACK, then what was in flight and
 * queued, then the packets that came after CONNECT. */
static void claim_accept(struct claim *cl, struct session *s)
{
    struct conn *c = cl->conn;
    struct broker *b = c->b;
    s->conn = c;
    s->version = c->version;
    s->expire_at = 0;
    s->will_at = 0;
    broker__qos2_in_age(s);
    c->session = s;
    c->state = CONN_ACTIVE;
    c->counted = true;
    b->connected++;

    struct proto_packet r = {.type = PROTO_CONNACK};
    struct proto_connack *ack = &r.u.connack;
    ack->session_present = cl->result == 1;
    if (c->version == PROTO_V5)
        connack_props(cl, &ack->props);
    broker__conn_send(c, &r);
    broker__enhanced_free(c); /* the server-final went with the CONNACK */
    LOG(b, LOG_INFO, c, "connected (v%u, clean=%d, expiry=%u, keepalive=%u, present=%d%s%s)",
        c->version, cl->clean_start, cl->expiry, c->keep_alive, ack->session_present,
        c->username ? ", username=" : "", c->username ? c->username : "");
    broker__keepalive_arm(c);
    if (ack->session_present) {
        broker__durable_resume(b, s);
        broker__session_resend(s);
    }
    broker__session_drain(s);
    broker__conn_resume(c);
}

void broker__claim_complete(struct claim *cl)
{
    struct conn *c = cl->conn;
    list_remove(&cl->link); /* from broker.parked, when it was parked */
    if (c->state != CONN_CLAIMING) {
        claim_abandon(cl);
    } else {
        struct session *s = NULL;
        uint8_t reason = claim_refusal(cl, &s);
        if (reason)
            refuse(c, reason);
        else
            claim_accept(cl, s);
    }
    free(cl);
    broker__conn_release(c);
}

/* Checks of a CONNECT that need no claim: the CONNACK refusal, or 0. */
static uint8_t connect_refusal(const struct broker *b, const struct proto_connect *cp)
{
    if (b->cfg.max_connections && b->connected >= b->cfg.max_connections)
        return PROTO_RC_SERVER_BUSY;
    if (broker__fds_low(b))
        return PROTO_RC_SERVER_BUSY; /* the reserve is for the store and the cluster: listen.c */
    if (broker__fenced(b))
        return PROTO_RC_SERVER_UNAVAILABLE; /* no leader for a while: broker.c */
    uint8_t method = broker__enhanced_method_refusal(cp);
    if (method)
        return method;
    if (cp->will && cp->will_qos > b->cfg.max_qos)
        return PROTO_RC_QOS_NOT_SUPPORTED;
    if (cp->will && cp->will_retain && !b->cfg.retain_available)
        return PROTO_RC_RETAIN_NOT_SUPPORTED;
    if (cp->will && (cp->will_props.has & PROTO_HAS_PAYLOAD_FORMAT) && cp->will_props.payload_format == 1 &&
        proto_utf8_check(cp->will_payload.p, cp->will_payload.len) != 0)
        return PROTO_RC_PAYLOAD_FORMAT_INVALID; /* 3.1.3.2.3: the will is checked as a PUBLISH would be */
    return 0;
}

/* The connection's client identifier: an empty one is assigned, where the
 * protocol allows. 0, -EINVAL (refused with 0x02 / 0x85) or -ENOMEM. */
static int connect_client_id(struct conn *c, struct claim *cl, const struct proto_connect *cp)
{
    struct broker *b = c->b;
    if (cp->client_id.len == 0) {
        bool allowed = b->cfg.allow_zero_length_clientid &&
                       (cp->version == PROTO_V5 || (cp->version == PROTO_V311 && cp->clean_start));
        if (!allowed)
            return -EINVAL;
        /* the claim's generation is unique across the cluster and restarts:
         * two nodes never assign the same id */
        c->generation = cluster_generation_next(b->cluster);
        char id[64];
        snprintf(id, sizeof(id), "auto-%016" PRIx64, c->generation);
        c->client_id = strdup(id);
        cl->assigned = true;
    } else {
        c->client_id = str_dup_len((const char *)cp->client_id.p, cp->client_id.len);
    }
    if (!c->client_id)
        return -ENOMEM;
    if (strlen(c->client_id) != (cl->assigned ? strlen(c->client_id) : cp->client_id.len))
        return -EINVAL; /* an embedded NUL (the decoder rejects U+0000) */
    return 0;
}

/* The connection's username: on a listener with use_identity_as_username the
 * verified client certificate's name (CN, else a SAN), whatever the CONNECT
 * says; else the CONNECT's. Kept for the logs and the admin API (and for
 * authorisation to come). 0, -EACCES (no usable name in the certificate:
 * refused as not authorised) or -ENOMEM. */
/* Keep alive, session expiry and the client's own limits, as they will be in
 * effect. */
static void connect_negotiate(struct conn *c, struct claim *cl, const struct proto_connect *cp)
{
    const struct config *cfg = &c->b->cfg;
    /* keep alive: lowered to max_keepalive for v5 (Server Keep Alive) */
    c->keep_alive = cp->keep_alive;
    if (cp->version == PROTO_V5 && (cp->keep_alive > cfg->max_keepalive ||
                                    (cp->keep_alive == 0 && cfg->max_keepalive < 65535))) {
        c->keep_alive = cfg->max_keepalive;
        cl->keepalive_lowered = true;
    }

    /* session expiry: v3 clean session means 0, persistent means never */
    if (cp->version == PROTO_V5)
        cl->expiry = (cp->props.has & PROTO_HAS_SESSION_EXPIRY) ? cp->props.session_expiry : 0;
    else
        cl->expiry = cp->clean_start ? 0 : UINT32_MAX;
    if (cl->expiry > cfg->max_session_expiry) {
        cl->expiry = cfg->max_session_expiry;
        cl->expiry_lowered = cp->version == PROTO_V5;
    }

    if (cp->version == PROTO_V5) {
        c->peer_receive_max = (cp->props.has & PROTO_HAS_RECEIVE_MAXIMUM) ? cp->props.receive_maximum : 65535;
        c->peer_max_packet = (cp->props.has & PROTO_HAS_MAXIMUM_PACKET_SIZE) ? cp->props.maximum_packet_size : 0;
        c->peer_alias_max = (cp->props.has & PROTO_HAS_TOPIC_ALIAS_MAXIMUM) ? cp->props.topic_alias_maximum : 0;
        c->request_problem_info = !(cp->props.has & PROTO_HAS_REQUEST_PROBLEM_INFO) || cp->props.request_problem_info;
    } else {
        c->peer_receive_max = 65535;
    }
}

/* Proposes the session_claim (w, borrowed, is copied into the command). */
static int claim_propose(struct conn *c, struct claim *cl, const struct proto_connect *cp, const struct will *w)
{
    struct broker *b = c->b;
    if (!c->generation)
        c->generation = cluster_generation_next(b->cluster);
    struct cluster_cmd cmd = {
        .type = CLUSTER_SESSION_CLAIM,
        .client_id = proto_cstr(c->client_id),
        .node = b->cfg.node_id,
        .generation = c->generation,
        .clean_start = cp->clean_start,
        .expiry = cl->expiry,
        .has_will = w != NULL,
        .has_user = c->username != NULL,
        .user = c->username ? proto_cstr(c->username) : (struct proto_str){NULL, 0},
        .owned = cl->owned,
    };
    if (w) {
        cmd.will.topic = proto_cstr(w->topic);
        cmd.will.payload = (struct proto_str){w->payload, w->payload_len};
        cmd.will.props = (struct proto_str){w->props_raw, w->props_len};
        cmd.will.qos = w->qos;
        cmd.will.retain = w->retain;
        cmd.will.delay = w->delay;
    }
    c->state = CONN_CLAIMING;
    return cluster_propose(b->cluster, &cmd, claim_done, cl);
}

void broker__on_connect(struct conn *c, struct proto_packet *p)
{
    struct broker *b = c->b;
    const struct proto_connect *cp = &p->u.connect;
    c->version = cp->version;

    uint8_t reason = connect_refusal(b, cp);
    if (reason) {
        if (reason == PROTO_RC_SERVER_BUSY && broker__fds_low(b)) {
            b->fds.refused++;
            b->stats.refused_fds++;
            broker__fds_report(b);
        }
        refuse(c, reason);
        return;
    }
    c->fd_admitted = true;
    b->fds.admitted++;
    struct claim *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        broker__conn_close(c, 0xFF);
        return;
    }
    list_init(&cl->link);
    cl->conn = c;
    cl->clean_start = cp->clean_start;
    int rc = connect_client_id(c, cl, cp);
    if (rc) {
        free(cl);
        if (rc == -ENOMEM)
            broker__conn_close(c, 0xFF); /* out of memory: only this connection */
        else
            refuse(c, PROTO_RC_CLIENTID_INVALID);
        return;
    }
    if (cp->version == PROTO_V5 && cp->props.auth_method.p) {
        broker__enhanced_start(c, p, cl); /* continues in broker__connect_continue */
        return;
    }
    broker__connect_continue(c, cl, cp);
}

void broker__connect_continue(struct conn *c, struct claim *cl, const struct proto_connect *cp)
{
    struct broker *b = c->b;
    int rc = broker__access_connect(c, cp, &cl->owned);
    if (rc) {
        free(cl);
        if (rc == -ENOMEM)
            broker__conn_close(c, 0xFF);
        return; /* refused (or its refusal delayed) by access.c */
    }
    if (!cl->assigned && broker__access_clientid_refused(c)) {
        free(cl);
        LOG(b, LOG_WARN, c, "CONNECT refused: require_clientid_username: the client id is not user %s's", c->username);
        refuse(c, PROTO_RC_CLIENTID_INVALID);
        return;
    }
    connect_negotiate(c, cl, cp);
    struct will *w = NULL;
    if (cp->will && !(w = will_copy(cp))) {
        free(cl);
        broker__conn_close(c, 0xFF);
        return;
    }
    rc = claim_propose(c, cl, cp, w);
    broker__will_free(w);
    if (rc) {
        c->state = CONN_NEW;
        free(cl);
        refuse(c, PROTO_RC_SERVER_UNAVAILABLE);
        return;
    }
    list_push_back(&b->claims, &cl->link);
    broker__conn_hold(c);
    broker__keepalive_stop(c);
}

void broker__on_disconnect(struct conn *c, struct proto_packet *p)
{
    const struct proto_disconnect *d = &p->u.disconnect;
    struct session *s = c->session;
    if (c->version == PROTO_V5 && s && (d->props.has & PROTO_HAS_SESSION_EXPIRY)) {
        if (s->expiry == 0 && d->props.session_expiry != 0) {
            /* [MQTT-3.14.2-2]: cannot turn a session without expiry into one with */
            broker__conn_close(c, PROTO_RC_PROTOCOL_ERROR);
            return;
        }
        s->expiry = d->props.session_expiry > c->b->cfg.max_session_expiry ? c->b->cfg.max_session_expiry
                                                                          : d->props.session_expiry;
    }
    c->will_suppressed = !(c->version == PROTO_V5 && d->reason == PROTO_RC_DISCONNECT_WITH_WILL);
    LOG(c->b, LOG_INFO, c, "DISCONNECT (0x%02X)", d->reason);
    broker__conn_close(c, 0xFF);
}

void broker__conn_ended(struct conn *c)
{
    struct broker *b = c->b;
    struct session *s = c->session;
    LOG(b, LOG_DEBUG, c, "connection ended");
    if (!s)
        return;
    s->conn = NULL;
    c->session = NULL;
    /* messages in flight go back to waiting: they are resent with DUP on resume */
    if (c->will_suppressed) {
        broker__will_free(s->will);
        s->will = NULL;
    }
    broker__session_offline(b, s);
}
