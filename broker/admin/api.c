/* admin/api: the endpoints of the admin API: node and cluster status, the
 * cluster membership operations, listings of sessions, subscriptions and
 * retained messages, and the Prometheus metrics.
 *
 * Listings are sorted (client id, filter, topic) so that output is stable,
 * count every match (of ?q= when given) and list `limit` (default 1000) of
 * them from ?offset= on. A membership
 * operation is answered when the cluster calls back; a join the cluster
 * accepted is answered with 202 and then the node restarts to take the
 * cluster's state (broker_restart). */
#include <errno.h>
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "broker.h"
#include "internal.h"

#define ADMIN_DEFAULT_LIMIT 1000
#define ADMIN_MAX_LIMIT 1000000
#define ADMIN_MAX_MEMBERS 64 /* on the stack; a larger cluster is fetched into the heap */

static const char json_type[] = "application/json";

/* Prints and frees obj; NULL obj (out of memory) drops the connection. */
static void reply_json(struct admin_conn *c, int status, cJSON *obj)
{
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    broker__admin_respond(c, status, json_type, text, text ? strlen(text) : 0, NULL);
}

static void reply_text(struct admin_conn *c, int status, char *text)
{
    broker__admin_respond(c, status, json_type, text, text ? strlen(text) : 0, NULL);
}

bool broker__admin_limit(struct admin_conn *c, const struct admin_query *q, uint64_t *limit)
{
    const char *s = broker__admin_query_find(q, "limit");
    *limit = ADMIN_DEFAULT_LIMIT;
    if (s && broker__admin_uint_parse(s, ADMIN_MAX_LIMIT, limit) != 0) {
        broker__admin_error(c, 400, "limit must be a whole number 0..1000000", NULL);
        return false;
    }
    return true;
}

/* A page of a listing: ?offset=N skips the first N matches (the dashboard
 * pages through 100,000 retained messages 50 at a time), ?q=TEXT keeps the
 * entries whose client id, filter or topic contains TEXT. */
struct page {
    uint64_t limit, offset;
    const char *q; /* NULL: everything */
};

/* Reads ?limit, ?offset and ?q; answers 400 and returns false when one is bad. */
static bool page_of(struct admin_conn *c, const struct admin_query *q, struct page *p)
{
    if (!broker__admin_limit(c, q, &p->limit))
        return false;
    const char *s = broker__admin_query_find(q, "offset");
    p->offset = 0;
    if (s && broker__admin_uint_parse(s, UINT64_MAX, &p->offset) != 0) {
        broker__admin_error(c, 400, "offset must be a whole number", NULL);
        return false;
    }
    p->q = broker__admin_query_find(q, "q");
    if (p->q && !p->q[0])
        p->q = NULL;
    return true;
}

static bool page_match(const struct page *p, const char *a, const char *b)
{
    return !p->q || strstr(a, p->q) || (b && strstr(b, p->q));
}

/* Whether match i (0-based, in listing order, from offset on) is on the page. */
static bool page_has(const struct page *p, uint64_t i)
{
    return i >= p->offset && i - p->offset < p->limit;
}

/* --- status ---------------------------------------------------------------- */

static uint64_t replicated_retained(const struct broker *b)
{
    uint64_t n = 0;
    list_foreach(it, &b->retained_list)
        n += !list_entry(it, struct retained, link)->local;
    return n;
}

/* The node's view; members is NULL (count 0) when the cluster is gone (the
 * node is stopping), else heap or the caller's stack array of
 * ADMIN_MAX_MEMBERS. Returns the member count, or -ENOMEM. */
static int cluster_view(struct broker *b, struct cluster_status *st, struct cluster_member *stack,
                        struct cluster_member **members)
{
    *members = NULL;
    if (!b->cluster) {
        memset(st, 0, sizeof(*st));
        st->node_id = b->cfg.node_id;
        st->role = 3;
        return 0;
    }
    cluster_status_get(b->cluster, st);
    int n = cluster_members_get(b->cluster, stack, ADMIN_MAX_MEMBERS);
    *members = stack;
    if (n > ADMIN_MAX_MEMBERS) {
        *members = malloc((size_t)n * sizeof(**members));
        if (!*members)
            return -ENOMEM;
        n = cluster_members_get(b->cluster, *members, n);
    }
    return n;
}

cJSON *broker__admin_status_build(struct broker *b)
{
    struct cluster_status st;
    struct cluster_member stack[ADMIN_MAX_MEMBERS], *members;
    int n = cluster_view(b, &st, stack, &members);
    struct admin_counts counts = {
        .connections = b->connected,
        .sessions = b->sessions.count,
        .subscriptions = b->sub_count,
        .retained = replicated_retained(b),
    };
    cJSON *obj = n < 0 ? NULL : broker__admin_status_json(&st, b->cfg.cluster_name, members, n, &counts);
    if (members != stack)
        free(members);
    return obj;
}

static void get_status(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                       const struct admin_query *q)
{
    reply_json(c, 200, broker__admin_status_build(b));
}

/* --- metrics ----------------------------------------------------------------- */

struct metric {
    const char *name, *type, *help;
    uint64_t value;
};

static void get_metrics(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                        const struct admin_query *q)
{
    static const char *const roles[] = {"follower", "candidate", "leader", "unavailable"};
    struct cluster_status st;
    struct cluster_member stack[ADMIN_MAX_MEMBERS], *members;
    int members_n = cluster_view(b, &st, stack, &members);
    if (members != stack)
        free(members);
    const struct broker_stats *s = &b->stats;
    uint64_t users, rules;
    broker__admin_users_count(b, &users, &rules);
    const struct metric metrics[] = {
        {"starling_uptime_seconds", "gauge", "Seconds since the node started.",
         (broker__now(b) - b->started_ms) / 1000},
        {"starling_messages_received_total", "counter", "PUBLISH packets received.", s->msgs_received},
        {"starling_messages_sent_total", "counter", "PUBLISH packets sent.", s->msgs_sent},
        {"starling_messages_dropped_total", "counter", "Messages dropped (full queues, slow consumers).",
         s->publish_dropped},
        {"starling_retained_refused_total", "counter", "Retained PUBLISHes refused by the retained quota.",
         s->retained_refused},
        {"starling_queued_bytes", "gauge", "Message bytes in the session queues of this node.", b->queued_bytes},
        {"starling_retained_bytes", "gauge", "Bytes of the retained messages (the quota's count).",
         b->retained_bytes},
        {"starling_slow_consumers_total", "counter",
         "Connections over max_write_backlog for longer than slow_consumer_timeout_ms.", s->slow_consumers},
        {"starling_publishers_held_total", "counter",
         "Times a publisher was not read while a subscriber's write backlog was over max_write_backlog.",
         s->publishers_held},
        {"starling_bytes_received_total", "counter", "Bytes received from MQTT clients.", s->bytes_received},
        {"starling_bytes_sent_total", "counter", "Bytes sent to MQTT clients.", s->bytes_sent},
        {"starling_connections_total", "counter", "MQTT connections accepted.", s->connections_total},
        {"starling_connections", "gauge", "MQTT clients connected (past CONNACK).", b->connected},
        {"starling_connections_refused_descriptors_total", "counter",
         "CONNECTs refused with 0x89/0x03 to keep fd_reserve descriptors free.", s->refused_fds},
        {"starling_auth_failures_total", "counter",
         "CONNECTs refused for a bad user name or password, or as anonymous.", s->auth_failures},
        {"starling_connections_closed_partial_total", "counter",
         "Connections closed for an incomplete packet (packet_timeout, max_partial_bytes).", s->partial_closed},
        {"starling_descriptors_open", "gauge", "Descriptors in use (estimated: counted at start and near the limit).",
         b->fds.limit ? b->fds.limit - broker__fds_free(b) : 0},
        {"starling_descriptors_limit", "gauge", "RLIMIT_NOFILE of the process (0: unlimited).", b->fds.limit},
        {"starling_partial_bytes", "gauge", "Bytes held in incomplete packets (max_partial_bytes).", b->partial_bytes},
        {"starling_sessions", "gauge", "Sessions in the replicated state.", b->sessions.count},
        {"starling_subscriptions", "gauge", "Subscriptions in the replicated state.", b->sub_count},
        {"starling_retained", "gauge", "Retained messages in the replicated state.", replicated_retained(b)},
        {"starling_cluster_term", "gauge", "Raft term.", st.term},
        {"starling_cluster_commit_index", "gauge", "Raft commit index.", st.commit_index},
        {"starling_cluster_applied_index", "gauge", "Last log index applied to the store.", st.applied_index},
        {"starling_cluster_last_index", "gauge", "Last index in the Raft log.", st.last_index},
        {"starling_cluster_leader", "gauge", "Node id of the leader (0: none known).", st.leader_id},
        {"starling_cluster_members", "gauge", "Members of the cluster configuration.",
         members_n < 0 ? 0 : (uint64_t)members_n},
        {"starling_admin_unauthorized_total", "counter",
         "Admin API requests refused with 401 (no or a wrong admin_token).", b->admin.unauthorized},
        {"starling_users", "gauge", "Users in the replicated state.", users},
        {"starling_acl_rules", "gauge", "ACL rules in the replicated state.", rules},
    };
    struct buf out = {0};
    char labels[128];
    snprintf(labels, sizeof(labels), "version=\"%s\",node=\"%u\",cluster=\"%s\"", STARLING_VERSION,
             b->cfg.node_id, b->cfg.cluster_name);
    int rc = broker__admin_metric(&out, "starling_info", "gauge", "Build and identity of this node.", labels, 1);
    for (size_t i = 0; !rc && i < sizeof(metrics) / sizeof(metrics[0]); i++)
        rc = broker__admin_metric(&out, metrics[i].name, metrics[i].type, metrics[i].help, NULL, metrics[i].value);
    for (int i = 0; !rc && i < 4; i++) {
        snprintf(labels, sizeof(labels), "role=\"%s\"", roles[i]);
        rc = broker__admin_metric(&out, "starling_cluster_role", "gauge",
                                 i ? NULL : "This node's Raft role: 1 for the current one.", labels, st.role == i);
    }
    if (rc)
        buf_free(&out); /* out of memory: the NULL body drops the connection */
    broker__admin_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", (char *)out.data, out.len, NULL);
}

/* --- listings ------------------------------------------------------------------ */

static int by_client_id(const void *x, const void *y)
{
    const struct session *a = *(struct session *const *)x, *b = *(struct session *const *)y;
    return strcmp(a->client_id, b->client_id);
}

/* The sessions ?client_id= selects (all of them without it) whose client id
 * contains `contains` (when not NULL), sorted, and the page asked for; *out
 * is malloc'd (NULL when there are none). Returns the count, -ENOMEM, or
 * -EINVAL when the page was bad (the request is answered). */
static long select_sessions(struct broker *b, struct admin_conn *c, const struct admin_query *q, struct page *p,
                            bool search, struct session ***out)
{
    const char *client_id = broker__admin_query_find(q, "client_id");
    *out = NULL;
    if (!page_of(c, q, p))
        return -EINVAL;
    const struct page *filter = search ? p : &(struct page){0};
    if (client_id) {
        struct session *s = broker__session_find(b, client_id, strlen(client_id));
        if (!s || !page_match(filter, s->client_id, NULL))
            return 0;
        if (!(*out = malloc(sizeof(**out))))
            return -ENOMEM;
        (*out)[0] = s;
        return 1;
    }
    size_t n = b->sessions.count, k = 0, pos = 0;
    if (!n)
        return 0;
    if (!(*out = malloc(n * sizeof(**out))))
        return -ENOMEM;
    struct map_slot *slot;
    while (k < n && (slot = map_next(&b->sessions, &pos)))
        if (page_match(filter, ((struct session *)slot->value)->client_id, NULL))
            (*out)[k++] = slot->value;
    qsort(*out, k, sizeof(**out), by_client_id);
    return (long)k;
}

/* {"count": count, name: []}: returns the array to fill, NULL when out of memory. */
static cJSON *listing(cJSON **obj, uint64_t count, const char *name)
{
    *obj = cJSON_CreateObject();
    cJSON *list = NULL;
    if (!cJSON_AddNumberToObject(*obj, "count", (double)count) || !(list = cJSON_AddArrayToObject(*obj, name))) {
        cJSON_Delete(*obj);
        *obj = NULL;
    }
    return list;
}

/* Answers with a listing, or drops the connection when building it ran out of memory. */
static void reply_listing(struct admin_conn *c, cJSON *obj, bool ok)
{
    if (!ok) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    reply_json(c, 200, obj);
}

/* Adds item to list; false (and item freed) when out of memory. */
static bool append(cJSON *list, cJSON *item, bool ok)
{
    if (!ok || !item || !cJSON_AddItemToArray(list, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

static void get_sessions(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                         const struct admin_query *q)
{
    struct page p;
    struct session **all;
    long n = select_sessions(b, c, q, &p, true, &all);
    if (n == -EINVAL)
        return;
    cJSON *obj = NULL, *list = n < 0 ? NULL : listing(&obj, (uint64_t)n, "sessions");
    bool ok = list != NULL;
    for (uint64_t i = p.offset; ok && n > 0 && i < (uint64_t)n && page_has(&p, i); i++) {
        const struct session *s = all[i];
        cJSON *item = cJSON_CreateObject();
        bool connected = s->owner == b->cfg.node_id ? s->conn != NULL : !s->released;
        ok = cJSON_AddStringToObject(item, "client_id", s->client_id) &&
             cJSON_AddNumberToObject(item, "node", s->owner) &&
             cJSON_AddBoolToObject(item, "connected", connected) &&
             (s->expiry == UINT32_MAX ? cJSON_AddNullToObject(item, "expiry")
                                      : cJSON_AddNumberToObject(item, "expiry", s->expiry)) &&
             cJSON_AddNumberToObject(item, "subscriptions", s->sub_count) &&
             cJSON_AddNumberToObject(item, "queued", s->queue.count) &&
             cJSON_AddNumberToObject(item, "inflight", s->inflight.count) &&
             (!b->cluster || cJSON_AddNumberToObject(item, "durable_queued",
                                                     cluster_queue_count(b->cluster, (const uint8_t *)s->client_id,
                                                                         s->id_len)) != NULL) &&
             /* the connection's (here): CONNECT's, or its certificate's */
             (s->owner == b->cfg.node_id && s->conn && s->conn->username
                  ? cJSON_AddStringToObject(item, "username", s->conn->username) != NULL
                  : true);
        ok = append(list, item, ok);
    }
    free(all);
    reply_listing(c, obj, ok);
}

static int by_session_filter(const void *x, const void *y)
{
    const struct sub *a = *(struct sub *const *)x, *b = *(struct sub *const *)y;
    int d = strcmp(a->session->client_id, b->session->client_id);
    return d ? d : strcmp(a->filter, b->filter);
}

static void get_subscriptions(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                              const struct admin_query *q)
{
    struct page p;
    struct session **sessions;
    long ns = select_sessions(b, c, q, &p, false, &sessions);
    if (ns == -EINVAL)
        return;
    size_t n = 0;
    for (long i = 0; i < ns; i++)
        n += sessions[i]->sub_count;
    struct sub **subs = n ? malloc(n * sizeof(*subs)) : NULL;
    cJSON *obj = NULL, *list = NULL;
    if (ns >= 0 && (subs || !n)) {
        size_t k = 0;
        for (long i = 0; i < ns; i++)
            list_foreach(it, &sessions[i]->subs) {
                struct sub *sub = list_entry(it, struct sub, link);
                if (k < n && page_match(&p, sub->session->client_id, sub->filter))
                    subs[k++] = sub;
            }
        n = k;
        if (n)
            qsort(subs, n, sizeof(*subs), by_session_filter);
        list = listing(&obj, n, "subscriptions");
    }
    bool ok = list != NULL;
    for (uint64_t i = p.offset; ok && i < n && page_has(&p, i); i++) {
        const struct sub *sub = subs[i];
        cJSON *item = cJSON_CreateObject();
        ok = cJSON_AddStringToObject(item, "client_id", sub->session->client_id) &&
             cJSON_AddStringToObject(item, "filter", sub->filter) && cJSON_AddNumberToObject(item, "qos", sub->qos) &&
             cJSON_AddBoolToObject(item, "no_local", sub->no_local) &&
             cJSON_AddBoolToObject(item, "retain_as_published", sub->rap) &&
             cJSON_AddNumberToObject(item, "retain_handling", sub->rh) &&
             (sub->sub_id ? cJSON_AddNumberToObject(item, "subscription_id", sub->sub_id)
                          : cJSON_AddNullToObject(item, "subscription_id")) &&
             cJSON_AddNumberToObject(item, "node", sub->session->owner);
        ok = append(list, item, ok);
    }
    free(subs);
    free(sessions);
    reply_listing(c, obj, ok);
}

struct retained_pick {
    const struct broker *b;
    const struct page *page;
    bool sys;
    struct retained **all;
    size_t n, cap;
    bool failed;
};

static int pick_retained(struct trie_item *item, void *arg)
{
    struct retained_pick *x = arg;
    struct retained *r = container_of(item, struct retained, item);
    if ((r->local && !x->sys) || (r->msg->expire_at && r->msg->expire_at <= broker__now(x->b)) ||
        !page_match(x->page, r->msg->topic, NULL))
        return 0;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        struct retained **p = realloc(x->all, cap * sizeof(*p));
        if (!p) {
            x->failed = true;
            return 1;
        }
        x->all = p;
        x->cap = cap;
    }
    x->all[x->n++] = r;
    return 0;
}

static int by_topic(const void *x, const void *y)
{
    const struct retained *a = *(struct retained *const *)x, *b = *(struct retained *const *)y;
    return strcmp(a->msg->topic, b->msg->topic);
}

static cJSON *retained_json(const struct msg *m)
{
    cJSON *item = cJSON_CreateObject();
    char *text = NULL, *b64 = broker__admin_base64(m->payload, m->payload_len);
    if (proto_utf8_check(m->payload, m->payload_len) == 0 && (text = malloc((size_t)m->payload_len + 1))) {
        memcpy(text, m->payload, m->payload_len);
        text[m->payload_len] = '\0';
    }
    bool ok = b64 && cJSON_AddStringToObject(item, "topic", m->topic) &&
              cJSON_AddNumberToObject(item, "qos", m->qos) &&
              cJSON_AddNumberToObject(item, "payload_bytes", m->payload_len) &&
              (text ? cJSON_AddStringToObject(item, "payload", text) : cJSON_AddNullToObject(item, "payload")) &&
              cJSON_AddStringToObject(item, "payload_base64", b64);
    free(text);
    free(b64);
    if (!ok) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

static void get_retained(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                         const struct admin_query *q)
{
    uint64_t sys = 0;
    struct page p;
    if (!page_of(c, q, &p))
        return;
    const char *s = broker__admin_query_find(q, "sys"), *topic = broker__admin_query_find(q, "topic");
    if (s && broker__admin_uint_parse(s, 1, &sys) != 0) {
        broker__admin_error(c, 400, "sys must be 0 or 1", NULL);
        return;
    }
    if (topic && proto_topic_filter_check((const uint8_t *)topic, strlen(topic)) != 0) {
        broker__admin_error(c, 400, "topic must be a topic name or filter", NULL);
        return;
    }
    struct retained_pick x = {.b = b, .page = &p, .sys = sys};
    if (topic)
        trie_match_filter(&b->retained, topic, strlen(topic), pick_retained, &x);
    else
        list_foreach(it, &b->retained_list)
            if (!x.failed)
                pick_retained(&list_entry(it, struct retained, link)->item, &x);
    cJSON *obj = NULL, *list = x.failed ? NULL : listing(&obj, x.n, "retained");
    bool ok = list != NULL;
    if (ok && x.n)
        qsort(x.all, x.n, sizeof(*x.all), by_topic);
    for (uint64_t i = p.offset; ok && i < x.n && page_has(&p, i); i++)
        ok = append(list, retained_json(x.all[i]->msg), true);
    free(x.all);
    reply_listing(c, obj, ok);
}

/* --- cluster membership ------------------------------------------------------------ */

enum admin_op_kind { OP_JOIN, OP_LEAVE, OP_REMOVE, OP_TRANSFER };

static const char *const op_names[] = {"join", "leave", "remove", "transfer"};

/* A membership operation changes the cluster (a remove stops a node): each
 * one is logged at info with the caller's address, when asked and with its
 * outcome, whether it was carried out, refused or malformed. */
struct admin_op {
    struct broker *b;
    struct admin_conn *c; /* held until the operation calls back */
    enum admin_op_kind kind;
    char peer[64];        /* the caller, copied: the request is gone by the callback */
    char what[160];       /* " node N", " HOST:PORT" or "" */
};

static void op_log(struct broker *b, const char *peer, enum admin_op_kind kind, const char *what, int http,
                   const char *outcome)
{
    LOG(b, LOG_INFO, NULL, "admin %s: cluster %s%s: %d %s", peer, op_names[kind], what, http, outcome);
}

/* Refuses a membership request before it starts, with its log line. */
static void op_refuse(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                      enum admin_op_kind kind, int http, const char *why)
{
    op_log(b, r->peer, kind, "", http, why);
    broker__admin_error(c, http, why, NULL);
}

/* The outcome for the log: "ok", "noop", or the cluster's message. */
static const char *op_outcome(int status, const char *msg)
{
    if (status == 0)
        return "ok";
    if (status == CLUSTER_EALREADY)
        return "noop";
    return msg && msg[0] ? msg : "failed";
}

static void on_op_done(void *arg, int status, const char *msg)
{
    struct admin_op *op = arg;
    struct admin_conn *c = op->c;
    char *body;
    int http = broker__admin_op_reply(status, op->kind == OP_JOIN, msg, &body);
    op_log(op->b, op->peer, op->kind, op->what, http, op_outcome(status, msg));
    if (op->kind == OP_JOIN && status == 0)
        broker__admin_restart_after(c);
    reply_text(c, http, body);
    broker__admin_release(c);
    free(op);
}

static void start_op(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                     enum admin_op_kind kind, uint32_t node, const char *peer)
{
    if (!b->cluster || b->stopping) {
        op_refuse(b, c, r, kind, 503, "the node is stopping");
        return;
    }
    struct admin_op *op = malloc(sizeof(*op));
    if (!op) {
        op_log(b, r->peer, kind, "", 500, "out of memory");
        broker__admin_respond(c, 500, json_type, NULL, 0, NULL);
        return;
    }
    op->b = b;
    op->c = c;
    op->kind = kind;
    snprintf(op->peer, sizeof(op->peer), "%s", r->peer);
    op->what[0] = '\0';
    if (kind == OP_JOIN)
        snprintf(op->what, sizeof(op->what), " %s", peer);
    else if (node)
        snprintf(op->what, sizeof(op->what), " node %u", node);
    LOG(b, LOG_INFO, NULL, "admin %s: cluster %s%s: requested", op->peer, op_names[kind], op->what);
    int rc;
    switch (kind) {
    case OP_JOIN:
        rc = cluster_join(b->cluster, peer, on_op_done, op);
        break;
    case OP_LEAVE:
        rc = cluster_leave(b->cluster, on_op_done, op);
        break;
    case OP_REMOVE:
        rc = cluster_remove(b->cluster, node, on_op_done, op);
        break;
    default:
        rc = cluster_transfer(b->cluster, node, on_op_done, op);
        break;
    }
    if (rc) {
        /* did not start: the callback will not run */
        const char *why = rc == -ENOMEM ? "out of memory" : "the cluster cannot take operations now";
        char *body;
        int http = broker__admin_op_reply(rc, false, why, &body);
        op_log(b, op->peer, kind, op->what, http, why);
        free(op);
        reply_text(c, http, body);
        return;
    }
    broker__admin_hold(c);
}

static void post_join(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                      const struct admin_query *q)
{
    char peer[128];
    const char *why;
    if (broker__admin_body_peer(r->body, r->body_len, peer, sizeof(peer), &why) != 0) {
        op_refuse(b, c, r, OP_JOIN, 400, why);
        return;
    }
    start_op(b, c, r, OP_JOIN, 0, peer);
}

static void post_leave(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                       const struct admin_query *q)
{
    uint32_t node;
    const char *why;
    if (broker__admin_body_node(r->body, r->body_len, true, &node, &why) != 0) {
        op_refuse(b, c, r, OP_LEAVE, 400, why);
        return;
    }
    start_op(b, c, r, OP_LEAVE, 0, NULL);
}

static void post_node_op(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                         enum admin_op_kind kind)
{
    uint32_t node;
    const char *why;
    if (broker__admin_body_node(r->body, r->body_len, kind == OP_TRANSFER, &node, &why) != 0) {
        op_refuse(b, c, r, kind, 400, why);
        return;
    }
    start_op(b, c, r, kind, node, NULL);
}

static void post_remove(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                        const struct admin_query *q)
{
    post_node_op(b, c, r, OP_REMOVE);
}

static void post_transfer(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                          const struct admin_query *q)
{
    post_node_op(b, c, r, OP_TRANSFER);
}

/* --- routing --------------------------------------------------------------------------- */

typedef void (*admin_handler)(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                              const struct admin_query *q);

static const struct admin_route {
    const char *path;
    int method;
    admin_handler fn;
} routes[] = {
    {"/api/v1/status", HTTP_GET, get_status},
    {"/api/v1/events", HTTP_GET, broker__admin_events_get},
    {"/api/v1/sessions", HTTP_GET, get_sessions},
    {"/api/v1/subscriptions", HTTP_GET, get_subscriptions},
    {"/api/v1/retained", HTTP_GET, get_retained},
    {"/metrics", HTTP_GET, get_metrics},
    {"/api/v1/cluster/join", HTTP_POST, post_join},
    {"/api/v1/cluster/leave", HTTP_POST, post_leave},
    {"/api/v1/cluster/remove", HTTP_POST, post_remove},
    {"/api/v1/cluster/transfer", HTTP_POST, post_transfer},
    {"/api/v1/sessions/disconnect", HTTP_POST, broker__admin_post_disconnect},
    {"/api/v1/retained/delete", HTTP_POST, broker__admin_post_retained_delete},
    {"/api/v1/users", HTTP_GET, broker__admin_users_get},
    {"/api/v1/users/add", HTTP_POST, broker__admin_users_add},
    {"/api/v1/users/passwd", HTTP_POST, broker__admin_users_passwd},
    {"/api/v1/users/delete", HTTP_POST, broker__admin_users_delete},
    {"/api/v1/users/import", HTTP_POST, broker__admin_users_import},
    {"/api/v1/acl", HTTP_GET, broker__admin_acl_get},
    {"/api/v1/acl/add", HTTP_POST, broker__admin_acl_add},
    {"/api/v1/acl/delete", HTTP_POST, broker__admin_acl_delete},
    {"/api/v1/acl/import", HTTP_POST, broker__admin_acl_import},
};

void broker__admin_route(struct broker *b, struct admin_conn *c, const struct admin_request *r)
{
    const struct admin_route *route = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strlen(routes[i].path) == r->path_len && memcmp(routes[i].path, r->path, r->path_len) == 0)
            route = &routes[i];
    if (!route) {
        broker__admin_error(c, 404, "no such endpoint (see README: Admin API)", NULL);
        return;
    }
    if (route->method != r->method) {
        char msg[64];
        snprintf(msg, sizeof(msg), "%s only", http_method_str((enum http_method)route->method));
        broker__admin_error(c, 405, msg, route->method == HTTP_GET ? "Allow: GET\r\n" : "Allow: POST\r\n");
        return;
    }
    struct admin_query q;
    int rc = broker__admin_query_parse(r->query ? r->query : "", r->query_len, &q);
    if (rc) {
        broker__admin_error(c, rc == -ENOMEM ? 500 : 400,
                            rc == -E2BIG ? "too many query parameters" : "the query string is not percent-encoded",
                            NULL);
        return;
    }
    route->fn(b, c, r, &q);
    broker__admin_query_free(&q);
}
