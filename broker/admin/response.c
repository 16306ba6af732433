/* admin/response: what the admin API answers, pure: the status line and
 * headers, the JSON bodies (errors, cluster operations, status), base64 and
 * the Prometheus text, appended to a struct buf or returned as text. */
#include "admin.h"

#include <errno.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- text ------------------------------------------------------------------- */

int broker__admin_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    /* room for the NUL vsnprintf writes, not counted in len */
    if (n < 0 || buf_reserve(b, (size_t)n + 1) != 0)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf((char *)buf_tail(b), buf_room(b), fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* --- responses ------------------------------------------------------------ */

int broker__admin_head(struct buf *out, int status, const char *content_type, size_t body_len, bool keep_alive,
                      const char *extra)
{
    return broker__admin_printf(out,
                               "HTTP/1.1 %d %s\r\n"
                               "Content-Type: %s\r\n"
                               "Content-Length: %zu\r\n"
                               "Cache-Control: no-store\r\n"
                               "Connection: %s\r\n"
                               "%s\r\n",
                               status, http_status_str((enum http_status)status), content_type, body_len,
                               keep_alive ? "keep-alive" : "close", extra ? extra : "");
}

static char *print_delete(cJSON *obj)
{
    char *s = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    return s;
}

char *broker__admin_error_json(int status, const char *msg)
{
    cJSON *obj = cJSON_CreateObject();
    if (!cJSON_AddStringToObject(obj, "error", msg) || !cJSON_AddNumberToObject(obj, "status", status)) {
        cJSON_Delete(obj);
        return NULL;
    }
    return print_delete(obj);
}

int broker__admin_op_reply(int status, bool join, const char *msg, char **body)
{
    const char *result = NULL;
    int http;
    switch (status) {
    case 0:
        http = join ? 202 : 200;
        result = join ? "joining" : "ok";
        break;
    case CLUSTER_EALREADY:
        http = 200;
        result = "noop";
        break;
    case CLUSTER_ENOTFOUND:
        http = 404;
        break;
    case CLUSTER_EINVAL:
        http = 409;
        break;
    case CLUSTER_EUNAVAILABLE:
    case CLUSTER_ESHUTDOWN:
        http = 503;
        break;
    default:
        http = 500;
        break;
    }
    if (!msg)
        msg = "";
    if (!result) {
        *body = broker__admin_error_json(http, msg);
        return http;
    }
    cJSON *obj = cJSON_CreateObject();
    if (!cJSON_AddStringToObject(obj, "result", result) || !cJSON_AddStringToObject(obj, "message", msg)) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    *body = print_delete(obj);
    return http;
}

const char *broker__admin_state_name(int state)
{
    static const char *const names[] = {"follower", "candidate", "leader", "unavailable"};
    return state >= 0 && state <= 3 ? names[state] : "unknown";
}

const char *broker__admin_role_name(int role)
{
    static const char *const names[] = {"voter", "standby", "spare"};
    return role >= 0 && role <= 2 ? names[role] : "unknown";
}

char *broker__admin_base64(const uint8_t *data, size_t len)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        *o++ = digits[v >> 18 & 63];
        *o++ = digits[v >> 12 & 63];
        *o++ = i + 1 < len ? digits[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? digits[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* cJSON's Add* helpers return NULL on failure; these keep one check per object. */
static void add_num(cJSON *obj, const char *name, double v, bool *ok)
{
    *ok &= cJSON_AddNumberToObject(obj, name, v) != NULL;
}

/* A double holds integers exactly only up to 2^53 and cJSON prints 15
 * significant digits: 64-bit counters go out as raw decimal text. */
void broker__admin_json_u64(cJSON *obj, const char *name, uint64_t v, bool *ok)
{
    char text[24];
    snprintf(text, sizeof(text), "%llu", (unsigned long long)v);
    *ok &= cJSON_AddRawToObject(obj, name, text) != NULL;
}

static void add_str(cJSON *obj, const char *name, const char *v, bool *ok)
{
    *ok &= cJSON_AddStringToObject(obj, name, v) != NULL;
}

static void add_raft(cJSON *obj, uint64_t term, uint64_t commit, uint64_t applied, bool *ok)
{
    broker__admin_json_u64(obj, "term", term, ok);
    broker__admin_json_u64(obj, "commit_index", commit, ok);
    broker__admin_json_u64(obj, "applied_index", applied, ok);
}

/* obj, or NULL (obj freed) when building it failed */
static cJSON *built(cJSON *obj, bool ok)
{
    if (ok)
        return obj;
    cJSON_Delete(obj);
    return NULL;
}

cJSON *broker__admin_member_json(const struct cluster_member *m)
{
    cJSON *obj = cJSON_CreateObject();
    bool ok = obj != NULL;
    add_num(obj, "id", m->id, &ok);
    add_str(obj, "address", m->address, &ok);
    add_str(obj, "role", broker__admin_role_name(m->role), &ok);
    ok &= cJSON_AddBoolToObject(obj, "self", m->self) != NULL;
    ok &= cJSON_AddBoolToObject(obj, "alive", m->alive) != NULL;
    if (m->last_seen_ms == UINT64_MAX)
        ok &= cJSON_AddNullToObject(obj, "last_seen_ms") != NULL;
    else
        broker__admin_json_u64(obj, "last_seen_ms", m->last_seen_ms, &ok);
    add_str(obj, "state", broker__admin_state_name(m->state), &ok);
    add_raft(obj, m->term, m->commit_index, m->applied_index, &ok);
    return built(obj, ok);
}

cJSON *broker__admin_status_json(const struct cluster_status *st, const char *cluster,
                                const struct cluster_member *members, int count, const struct admin_counts *n)
{
    cJSON *obj = cJSON_CreateObject();
    bool ok = obj != NULL;
    add_num(obj, "node", st->node_id, &ok);
    add_str(obj, "cluster", cluster, &ok);
    if (st->leader_id)
        add_num(obj, "leader", st->leader_id, &ok);
    else
        ok &= cJSON_AddNullToObject(obj, "leader") != NULL;
    add_str(obj, "state", broker__admin_state_name(st->role), &ok);
    add_raft(obj, st->term, st->commit_index, st->applied_index, &ok);
    broker__admin_json_u64(obj, "last_index", st->last_index, &ok);
    cJSON *list = cJSON_AddArrayToObject(obj, "members");
    ok &= list != NULL;
    for (int i = 0; ok && i < count; i++) {
        cJSON *m = broker__admin_member_json(&members[i]);
        if (!m || !cJSON_AddItemToArray(list, m)) {
            cJSON_Delete(m);
            ok = false;
        }
    }
    broker__admin_json_u64(obj, "connections", n->connections, &ok);
    broker__admin_json_u64(obj, "sessions", n->sessions, &ok);
    broker__admin_json_u64(obj, "subscriptions", n->subscriptions, &ok);
    broker__admin_json_u64(obj, "retained", n->retained, &ok);
    return built(obj, ok);
}

int broker__admin_metric(struct buf *out, const char *name, const char *type, const char *help,
                        const char *labels, uint64_t value)
{
    int rc = help ? broker__admin_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) : 0;
    if (!rc && labels)
        rc = broker__admin_printf(out, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
    else if (!rc)
        rc = broker__admin_printf(out, "%s %llu\n", name, (unsigned long long)value);
    return rc;
}
