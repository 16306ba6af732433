/* session: the per-client-id state that outlives a connection: subscriptions,
 * messages in flight and queued, QoS 2 packet ids received, the will, expiry. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "internal.h"

struct session *broker__session_find(struct broker *b, const char *id, size_t len)
{
    return map_get(&b->sessions, id, len);
}

struct session *broker__session_create(struct broker *b, const char *id, size_t len)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->client_id = str_dup_len(id, len);
    if (!s->client_id || map_put(&b->sessions, s->client_id, len, s) != 0) {
        free(s->client_id);
        free(s);
        return NULL;
    }
    s->id_len = len;
    s->b = b;
    auth_who_set(&s->who, NULL, 0, s->client_id, len);
    s->next_packet_id = 1;
    list_init(&s->subs);
    list_init(&s->timed_link);
    broker__outlist_init(&s->inflight);
    broker__outlist_init(&s->queue);
    s->queue.total = &b->queued_bytes;
    list_init(&s->retain_streams);
    return s;
}

void broker__session_clear_subs(struct broker *b, struct session *s)
{
    struct list *first;
    while ((first = list_pop_front(&s->subs)))
        broker__sub_free(b, list_entry(first, struct sub, link));
    s->sub_count = 0;
    map_free(&s->sub_map);
    map_init(&s->sub_map);
}

void broker__will_free(struct will *w)
{
    if (!w)
        return;
    free(w->topic);
    free(w->payload);
    free(w->props_raw);
    free(w);
}

/* Frees a session that has no connection (the caller detached it). */
void broker__session_free(struct broker *b, struct session *s)
{
    if (s->parked) {
        /* a CONNECT waiting for the handoff of a session that ended meanwhile */
        struct claim *cl = s->parked;
        s->parked = NULL;
        s->generation = 0;
        broker__claim_complete(cl);
    }
    map_del(&b->sessions, s->client_id, s->id_len);
    broker__session_clear_subs(b, s);
    broker__outlist_clear(&s->inflight);
    broker__outlist_clear(&s->queue);
    broker__retain_streams_clear(s);
    broker__will_free(s->will);
    broker__will_free(s->lost_will);
    free(s->qos2_in);
    free(s->m_ids);
    list_remove(&s->timed_link);
    free(s->client_id);
    free(s->user);
    auth_who_free(&s->who);
    free(s);
}

struct session **broker__sessions_all(struct broker *b, size_t *n)
{
    size_t pos = 0, k = 0;
    struct map_slot *slot;
    *n = b->sessions.count;
    struct session **all = malloc((*n ? *n : 1) * sizeof(*all));
    while (all && (slot = map_next(&b->sessions, &pos)))
        all[k++] = slot->value;
    return all;
}

static void on_will_due(uv_timer_t *t)
{
    struct broker *b = t->data;
    b->will_due = 0;
    broker__session_tick(b);
}

/* A delayed will goes out when its delay ends, to the millisecond, not at
 * the next one-second tick: a timer runs to the earliest one. */
static void will_timer_arm(struct broker *b, uint64_t at)
{
    if (!b->will_timer.loop || b->stopping || (b->will_due && b->will_due <= at))
        return;
    uint64_t now = broker__now(b);
    b->will_due = at;
    uv_timer_start(&b->will_timer, on_will_due, at > now ? at - now : 0, 0);
}

void broker__session_timed_add(struct broker *b, struct session *s)
{
    if (!list_linked(&s->timed_link))
        list_push_front(&b->sessions_timed, &s->timed_link);
    if (s->will_at)
        will_timer_arm(b, s->will_at);
}

/* Publishes the session's will (and forgets it). A retained will is also
 * proposed as the topic's retained message. */
void broker__will_publish(struct broker *b, struct session *s)
{
    struct will *w = s->will;
    s->will = NULL;
    s->will_at = 0;
    if (!w)
        return;
    if (!auth_allowed(&b->access.tables, &s->who, w->topic, strlen(w->topic), AUTH_WRITE)) {
        /* allowed at CONNECT; the ACL was reloaded since */
        LOG(b, LOG_INFO, NULL, "will of %s on %s not published: the ACL does not allow it", s->client_id, w->topic);
        broker__will_free(w);
        return;
    }
    struct proto_props props = {0};
    if (w->props_len && proto_props_decode(w->props_raw, w->props_len, PROTO_PUBLISH, &props) != 0)
        memset(&props, 0, sizeof(props));
    uint64_t expire_at = 0;
    if (props.has & PROTO_HAS_MESSAGE_EXPIRY)
        expire_at = broker__now(b) + (uint64_t)props.message_expiry * 1000;
    struct msg *m = broker__msg_new(proto_cstr(w->topic), (struct proto_str){w->payload, w->payload_len},
                                    &props, w->qos, w->retain, expire_at, s->client_id);
    LOG(b, LOG_INFO, NULL, "publishing will of %s on %s", s->client_id, w->topic);
    broker__will_free(w);
    if (!m)
        return;
    if (m->retain && !broker__retain_quota_ok(b, m)) {
        b->stats.retained_refused++;
        LOG(b, LOG_WARN, NULL, "retained quota reached: will of %s on %s delivered but not retained", s->client_id,
            m->topic);
    } else if (m->retain) {
        broker__retain_propose(b, m, NULL, NULL);
    }
    broker__route(b, m, NULL);
    broker__msg_unref(m);
}

/* The session's connection is gone (or never came: a claim replayed after a
 * restart, or one whose proposer gave up before it committed): its will is
 * due now or after its delay, and the session ends now or after its expiry. */
void broker__session_offline(struct broker *b, struct session *s)
{
    if (s->will) {
        if (s->will->delay == 0 || s->expiry == 0)
            broker__will_publish(b, s);
        else
            s->will_at = broker__now(b) + (uint64_t)s->will->delay * 1000;
    }
    if (s->expiry == 0) {
        broker__session_propose_expire(b, s);
        return;
    }
    s->expire_at = s->expiry == UINT32_MAX ? 0 : broker__now(b) + (uint64_t)s->expiry * 1000;
    if (s->expire_at || s->will_at)
        broker__session_timed_add(b, s);
    broker__session_propose_release(b, s);
}

/* The wall-clock time an offline session ends (0 = never), from its timer. */
static uint64_t expire_wall_ms(const struct broker *b, const struct session *s)
{
    if (!s->expire_at)
        return 0;
    uint64_t now = broker__now(b);
    return broker__wall_ms() + (s->expire_at > now ? s->expire_at - now : 0);
}

/* Records in the replicated state that the session is offline, when it ends
 * and whether its will is still pending. Best effort: a node that cannot
 * commit now proposes it again when the session is loaded after a restart. */
void broker__session_propose_release(struct broker *b, struct session *s)
{
    struct cluster_cmd cmd = {
        .type = CLUSTER_SESSION_RELEASE,
        .client_id = proto_cstr(s->client_id),
        .node = b->cfg.node_id,
        .generation = s->generation,
        .expiry = s->expiry,
        .expire_at_ms = expire_wall_ms(b, s),
        .has_will = s->will != NULL,
    };
    cluster_propose(b->cluster, &cmd, NULL, NULL);
}

/* Proposes the end of an offline session (once; its subscriptions go with it). */
void broker__session_propose_expire(struct broker *b, struct session *s)
{
    if (s->expiring)
        return;
    struct cluster_cmd cmd = {.type = CLUSTER_SESSION_EXPIRE, .client_id = proto_cstr(s->client_id),
                              .node = b->cfg.node_id, .generation = s->generation};
    if (cluster_propose(b->cluster, &cmd, NULL, NULL) == 0)
        s->expiring = true;
}

/* Runs once a second, and when the earliest delayed will is due: delayed
 * wills that are due, sessions that expired. */
void broker__session_tick(struct broker *b)
{
    uint64_t now = broker__now(b);
    bool leader = false;
    if (b->cluster) {
        struct cluster_status st;
        cluster_status_get(b->cluster, &st);
        leader = st.role == 2;
    }
    uint64_t next_will = 0;
    list_foreach_safe(it, &b->sessions_timed) {
        struct session *s = list_entry(it, struct session, timed_link);
        if (s->conn || (!s->will_at && !s->expire_at) || s->expiring) {
            list_remove(&s->timed_link);
            continue;
        }
        if (s->owner != b->cfg.node_id && !(s->adopted && leader))
            continue; /* another node's; waits while this node is not the leader */
        if (s->will_at && s->will_at <= now) {
            broker__will_publish(b, s);
            broker__session_propose_release(b, s); /* the will is no longer pending */
        }
        if (s->expire_at && s->expire_at <= now)
            broker__session_propose_expire(b, s);
        if (s->will_at > now && (!next_will || s->will_at < next_will))
            next_will = s->will_at;
    }
    if (next_will)
        will_timer_arm(b, next_will);
}

bool broker__qos2_in_has(struct session *s, uint16_t id)
{
    for (uint32_t i = 0; i < s->qos2_in_count; i++)
        if (s->qos2_in[i] == id)
            return true;
    return false;
}

int broker__qos2_in_add(struct session *s, uint16_t id)
{
    if (s->qos2_in_count == s->qos2_in_cap) {
        uint32_t cap = s->qos2_in_cap ? s->qos2_in_cap * 2 : 8;
        uint16_t *p = realloc(s->qos2_in, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->qos2_in = p;
        s->qos2_in_cap = cap;
    }
    s->qos2_in[s->qos2_in_count++] = id;
    return 0;
}

bool broker__qos2_in_del(struct session *s, uint16_t id)
{
    if (s->qos2_in_old > s->qos2_in_count)
        s->qos2_in_old = s->qos2_in_count; /* the list was reset since */
    for (uint32_t i = 0; i < s->qos2_in_count; i++)
        if (s->qos2_in[i] == id) {
            /* in order: the earlier connections' ids stay in front */
            memmove(&s->qos2_in[i], &s->qos2_in[i + 1], (s->qos2_in_count - i - 1) * sizeof(*s->qos2_in));
            s->qos2_in_count--;
            if (i < s->qos2_in_old) {
                s->qos2_in_old--;
                return false;
            }
            return true;
        }
    return false;
}

void broker__qos2_in_age(struct session *s) { s->qos2_in_old = s->qos2_in_count; }

/* --- sessions moving between nodes ------------------------------------------------- */

uint64_t broker__fence_ms(const struct broker *b) { return 2 * (uint64_t)b->cfg.election_timeout_ms; }

/* A node cut off stops serving within: its election timeout runs out (up to
 * twice the configured one, randomised), then the fence, then the next
 * one-second tick that notices; plus a second of margin. */
uint64_t broker__lease_ms(const struct broker *b)
{
    return broker__fence_ms(b) + 2 * (uint64_t)b->cfg.election_timeout_ms + 2000;
}

void broker__session_handover(struct broker *b, struct session *s, uint32_t to, bool clean, uint64_t index)
{
    struct conn *old = s->conn;
    if (old) {
        bool will_due = !old->will_suppressed && s->will && (clean || s->will->delay == 0);
        s->conn = NULL;
        old->session = NULL;
        LOG(b, LOG_INFO, old, "session taken over by a connection on node %u", to);
        if (will_due)
            broker__will_publish(b, s);
        broker__conn_close(old, PROTO_RC_SESSION_TAKEN_OVER);
    }
    broker__retain_streams_clear(s); /* its new node serves it */
    if (clean) {
        broker__outlist_clear(&s->inflight);
        broker__outlist_clear(&s->queue);
        s->qos2_in_count = 0;
    }
    s->owner = to;
    s->moved = true;
    if (index > s->claim_index)
        s->claim_index = index; /* the claim that moved it, applied here or not yet */
    s->will_at = 0;
    s->expire_at = 0;
}

void broker__session_handoff_done(struct broker *b, struct session *s)
{
    struct will *lost = s->lost_will;
    s->lost_will = NULL;
    if (lost && s->handoff_from) {
        /* the old node never answered: its connection ended with it */
        struct will *mine = s->will;
        s->will = lost;
        broker__will_publish(b, s);
        s->will = mine;
    } else {
        broker__will_free(lost);
    }
    s->handoff_from = 0;
    struct claim *cl = s->parked;
    s->parked = NULL;
    if (cl)
        broker__claim_complete(cl);
}

static bool lost_long(struct broker *b, uint32_t node, uint64_t now)
{
    if (!cluster_node_member(b->cluster, node))
        return true; /* removed from the cluster */
    for (uint32_t i = 0; i < b->lost_count; i++)
        if (b->lost[i].node == node)
            return now - b->lost[i].since >= broker__lease_ms(b);
    return false;
}

/* On the leader, every tick: a session whose node was lost longer than the
 * lease (that node has fenced itself by then) is taken on here: still marked
 * connected, it goes offline now (its will due now or after its delay, its
 * expiry from now); already released, its pending will is due now and it
 * ends when its recorded expiry comes. The timed list does the rest. */
void broker__orphans_adopt(struct broker *b)
{
    uint64_t now = broker__now(b);
    bool any = ++b->adopt_ticks % 10 == 0; /* now and then: sessions of nodes removed meanwhile */
    for (uint32_t i = 0; i < b->lost_count; i++)
        any |= now - b->lost[i].since >= broker__lease_ms(b);
    if (!any)
        return;
    size_t n;
    struct session **all = broker__sessions_all(b, &n);
    for (size_t i = 0; all && i < n; i++) {
        struct session *s = all[i];
        if (s->adopted || s->owner == b->cfg.node_id || s->expiring || !lost_long(b, s->owner, now))
            continue;
        s->adopted = true;
        LOG(b, LOG_INFO, NULL, "session %s of lost node %u: taken on by this node", s->client_id, s->owner);
        if (!s->released) {
            broker__session_offline(b, s); /* may end it later (expire); s stays valid in this loop */
            continue;
        }
        if (s->will)
            s->will_at = now;
        if (s->expire_wall) {
            uint64_t wall = broker__wall_ms();
            s->expire_at = now + (s->expire_wall > wall ? s->expire_wall - wall : 0);
        }
        if (s->will_at || s->expire_at)
            broker__session_timed_add(b, s);
    }
    free(all);
}
