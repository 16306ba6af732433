/* admin/ops: the operations on clients and retained messages the dashboard
 * offers besides the membership ones (api.c): disconnect a client
 * (POST /api/v1/sessions/disconnect) and clear a retained message
 * (POST /api/v1/retained/delete). Each is logged at info with the caller's
 * address and its outcome, as the membership operations are.
 *
 * A client is disconnected by the node it is connected to (the DISCONNECT
 * 0x98 Administrative action, then the close): another node answers 409 with
 * the owner's id. Clearing a retained message is a retain_del through the
 * replicated log, so any node can do it; it is answered once applied. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "broker.h"
#include "internal.h"

#define OPS_MAX_STRING 65535 /* an MQTT string: client ids and topics are no longer */

/* The string member name of the JSON object body (len bytes), copied into a
 * malloc'd NUL-terminated *out. 0, or -EINVAL with *why (static) said. */
static int body_string(const char *body, size_t len, const char *name, char **out, const char **why)
{
    cJSON *obj = cJSON_ParseWithLength(body, len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    int rc = -EINVAL;
    *out = NULL;
    if (!cJSON_IsObject(obj))
        *why = "the body must be a JSON object";
    else if (!cJSON_IsString(v) || !v->valuestring[0])
        *why = strcmp(name, "topic") == 0 ? "the body needs \"topic\": a topic name"
                                          : "the body needs \"client_id\": a client id";
    else if (strlen(v->valuestring) > OPS_MAX_STRING)
        *why = "longer than an MQTT string (65535 bytes)";
    else if (!(*out = strdup(v->valuestring)))
        *why = "out of memory";
    else
        rc = 0;
    cJSON_Delete(obj);
    return rc;
}

static void reply_result(struct admin_conn *c, const char *message)
{
    cJSON *obj = cJSON_CreateObject();
    char *text = NULL;
    if (cJSON_AddStringToObject(obj, "result", "ok") && cJSON_AddStringToObject(obj, "message", message))
        text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    broker__admin_respond(c, 200, "application/json", text, text ? strlen(text) : 0, NULL);
}

static void refuse(struct broker *b, struct admin_conn *c, const char *peer, const char *op, int http,
                   const char *why)
{
    LOG(b, LOG_INFO, NULL, "admin %s: %s: %d %s", peer, op, http, why);
    broker__admin_error(c, http, why, NULL);
}

void broker__admin_post_disconnect(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                   const struct admin_query *q)
{
    char *id, msg[160];
    const char *why;
    if (body_string(r->body, r->body_len, "client_id", &id, &why) != 0) {
        refuse(b, c, r->peer, "disconnect", 400, why);
        return;
    }
    struct session *s = broker__session_find(b, id, strlen(id));
    char op[96];
    snprintf(op, sizeof(op), "disconnect %.64s%s", id, strlen(id) > 64 ? "..." : "");
    if (!s) {
        refuse(b, c, r->peer, op, 404, "no session has this client id");
    } else if (s->owner != b->cfg.node_id) {
        snprintf(msg, sizeof(msg), "the client's session is on node %u: disconnect it on that node", s->owner);
        refuse(b, c, r->peer, op, 409, msg);
    } else if (!s->conn) {
        refuse(b, c, r->peer, op, 409, "the client is not connected");
    } else {
        LOG(b, LOG_INFO, NULL, "admin %s: %s: 200 ok", r->peer, op);
        broker__conn_close(s->conn, 0x98); /* Administrative action */
        reply_result(c, "disconnected");
    }
    free(id);
}

/* A retain_del on its way through the log; holds the connection. */
struct admin_clear {
    struct broker *b;
    struct admin_conn *c;
    char peer[64];
    char *topic;
};

static void on_cleared(void *arg, int status, int result)
{
    struct admin_clear *x = arg;
    if (status == 0) {
        LOG(x->b, LOG_INFO, NULL, "admin %s: clear retained %s: 200 ok", x->peer, x->topic);
        reply_result(x->c, "cleared");
    } else {
        refuse(x->b, x->c, x->peer, "clear retained", 503,
               "the cluster did not commit the change in time (no leader?): it may still apply");
    }
    broker__admin_release(x->c);
    free(x->topic);
    free(x);
}

static int match_one(struct trie_item *item, void *arg)
{
    *(bool *)arg = !container_of(item, struct retained, item)->local;
    return 1;
}

void broker__admin_post_retained_delete(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                        const struct admin_query *q)
{
    char *topic;
    const char *why;
    if (body_string(r->body, r->body_len, "topic", &topic, &why) != 0) {
        refuse(b, c, r->peer, "clear retained", 400, why);
        return;
    }
    size_t len = strlen(topic);
    bool found = false;
    if (proto_topic_name_check((const uint8_t *)topic, len) != 0) {
        refuse(b, c, r->peer, "clear retained", 400, "not a topic name (no wildcards, valid UTF-8)");
        goto out_topic;
    }
    trie_match_filter(&b->retained, topic, len, match_one, &found);
    if (!found) {
        refuse(b, c, r->peer, "clear retained", 404, "no retained message on this topic");
        goto out_topic;
    }
    struct admin_clear *x = b->cluster && !b->stopping ? malloc(sizeof(*x)) : NULL;
    if (!x) {
        refuse(b, c, r->peer, "clear retained", 503, b->stopping ? "the node is stopping" : "out of memory");
        goto out_topic;
    }
    *x = (struct admin_clear){.b = b, .c = c, .topic = topic};
    snprintf(x->peer, sizeof(x->peer), "%s", r->peer);
    struct cluster_cmd cmd = {.type = CLUSTER_RETAIN_DEL, .topic = {(const uint8_t *)topic, len}};
    if (cluster_propose(b->cluster, &cmd, on_cleared, x) != 0) {
        refuse(b, c, r->peer, "clear retained", 503, "the cluster cannot take changes now");
        free(x);
        goto out_topic;
    }
    broker__admin_hold(c);
    return;
out_topic:
    free(topic);
}
