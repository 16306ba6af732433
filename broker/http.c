/* http: pure helpers of the admin API: text buffer, query strings, strict
 * numbers, request bodies, bearer tokens, JSON and Prometheus output. */
#include "http.h"

#include <errno.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- text ------------------------------------------------------------------- */

int broker__http_printf(struct buf *b, const char *fmt, ...)
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

/* --- request parsing ------------------------------------------------------ */

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int broker__http_pct_decode(const char *s, size_t len, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            if (s[i] == '\0')
                return -EINVAL;
            out[o++] = s[i];
            continue;
        }
        if (len - i < 3)
            return -EINVAL;
        int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -EINVAL;
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

static char *decode_dup(const char *s, size_t len, int *rc)
{
    char *out = malloc(len + 1);
    size_t n;
    if (!out) {
        *rc = -ENOMEM;
        return NULL;
    }
    *rc = broker__http_pct_decode(s, len, out, &n);
    if (*rc) {
        free(out);
        return NULL;
    }
    return out;
}

void broker__http_query_free(struct http_query *q)
{
    for (int i = 0; i < q->count; i++) {
        free(q->params[i].name);
        free(q->params[i].value);
    }
    q->count = 0;
}

int broker__http_query_parse(const char *q, size_t len, struct http_query *out)
{
    int rc = 0;
    out->count = 0;
    for (size_t pos = 0; pos < len;) {
        const char *seg = q + pos;
        const char *amp = memchr(seg, '&', len - pos);
        size_t seglen = amp ? (size_t)(amp - seg) : len - pos;
        pos += seglen + 1;
        if (seglen == 0)
            continue;
        if (out->count == BROKER_HTTP_MAX_PARAMS) {
            rc = -E2BIG;
            goto free_params;
        }
        const char *eq = memchr(seg, '=', seglen);
        size_t namelen = eq ? (size_t)(eq - seg) : seglen;
        struct http_param *p = &out->params[out->count];
        p->name = decode_dup(seg, namelen, &rc);
        if (!p->name)
            goto free_params;
        p->value = eq ? decode_dup(eq + 1, seglen - namelen - 1, &rc) : decode_dup("", 0, &rc);
        if (!p->value) {
            free(p->name);
            goto free_params;
        }
        out->count++;
    }
    return 0;

free_params:
    broker__http_query_free(out);
    return rc;
}

const char *broker__http_query_find(const struct http_query *q, const char *name)
{
    for (int i = 0; i < q->count; i++)
        if (strcmp(q->params[i].name, name) == 0)
            return q->params[i].value;
    return NULL;
}

int broker__http_uint_parse(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 20)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    if (v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

/* A JSON object body; *obj NULL for an empty body (only whitespace). */
static bool only_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static int body_object(const char *body, size_t len, cJSON **obj, const char **why)
{
    const char *end = NULL;
    *obj = NULL;
    if (only_space(body, len))
        return 0;
    *obj = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!*obj || !cJSON_IsObject(*obj) || end < body || end > body + len ||
        !only_space(end, len - (size_t)(end - body))) {
        cJSON_Delete(*obj);
        *obj = NULL;
        *why = "the body is not a JSON object";
        return -EINVAL;
    }
    return 0;
}

int broker__http_body_node(const char *body, size_t len, bool optional, uint32_t *node, const char **why)
{
    cJSON *obj;
    int rc = body_object(body, len, &obj, why);
    if (rc)
        return rc;
    const cJSON *n = obj ? cJSON_GetObjectItemCaseSensitive(obj, "node") : NULL;
    if (!n) {
        rc = optional ? 0 : -EINVAL;
        *why = "\"node\" (a node id) is missing";
        *node = 0;
    } else if (!cJSON_IsNumber(n) || n->valuedouble < 1 || n->valuedouble > 65535 ||
               n->valuedouble != (double)(uint32_t)n->valuedouble) {
        rc = -EINVAL;
        *why = "\"node\" must be a node id, an integer 1..65535";
    } else {
        *node = (uint32_t)n->valuedouble;
    }
    cJSON_Delete(obj);
    return rc;
}

int broker__http_body_peer(const char *body, size_t len, char *peer, size_t peerlen, const char **why)
{
    cJSON *obj;
    int rc = body_object(body, len, &obj, why);
    if (rc)
        return rc;
    const cJSON *p = obj ? cJSON_GetObjectItemCaseSensitive(obj, "peer") : NULL;
    const char *s = cJSON_GetStringValue(p);
    if (!s) {
        rc = -EINVAL;
        *why = "\"peer\" (host:port of a member's cluster port) is missing or not a string";
    } else if (!s[0] || strlen(s) >= peerlen || !strchr(s, ':')) {
        rc = -EINVAL;
        *why = "\"peer\" must be host:port of a member's cluster port";
    } else {
        memcpy(peer, s, strlen(s) + 1);
    }
    cJSON_Delete(obj);
    return rc;
}

bool broker__http_bearer_ok(const char *header, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    if (len < 7 || strncasecmp(header, "bearer ", 7) != 0)
        return false;
    header += 7;
    len -= 7;
    while (len && *header == ' ') {
        header++;
        len--;
    }
    /* the time taken depends on the length given, never on where bytes differ */
    unsigned char diff = len != tlen;
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)header[i] ^ (unsigned char)(i < tlen ? token[i] : 0);
    return tlen > 0 && diff == 0;
}

/* --- responses ------------------------------------------------------------ */

int broker__http_head(struct buf *out, int status, const char *content_type, size_t body_len, bool keep_alive,
                      const char *extra)
{
    return broker__http_printf(out,
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

char *broker__http_error_json(int status, const char *msg)
{
    cJSON *obj = cJSON_CreateObject();
    if (!cJSON_AddStringToObject(obj, "error", msg) || !cJSON_AddNumberToObject(obj, "status", status)) {
        cJSON_Delete(obj);
        return NULL;
    }
    return print_delete(obj);
}

int broker__http_op_reply(int status, bool join, const char *msg, char **body)
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
        *body = broker__http_error_json(http, msg);
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

const char *broker__http_state_name(int state)
{
    static const char *const names[] = {"follower", "candidate", "leader", "unavailable"};
    return state >= 0 && state <= 3 ? names[state] : "unknown";
}

const char *broker__http_role_name(int role)
{
    static const char *const names[] = {"voter", "standby", "spare"};
    return role >= 0 && role <= 2 ? names[role] : "unknown";
}

char *broker__http_base64(const uint8_t *data, size_t len)
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
static void add_u64(cJSON *obj, const char *name, uint64_t v, bool *ok)
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
    add_u64(obj, "term", term, ok);
    add_u64(obj, "commit_index", commit, ok);
    add_u64(obj, "applied_index", applied, ok);
}

/* obj, or NULL (obj freed) when building it failed */
static cJSON *built(cJSON *obj, bool ok)
{
    if (ok)
        return obj;
    cJSON_Delete(obj);
    return NULL;
}

cJSON *broker__http_member_json(const struct cluster_member *m)
{
    cJSON *obj = cJSON_CreateObject();
    bool ok = obj != NULL;
    add_num(obj, "id", m->id, &ok);
    add_str(obj, "address", m->address, &ok);
    add_str(obj, "role", broker__http_role_name(m->role), &ok);
    ok &= cJSON_AddBoolToObject(obj, "self", m->self) != NULL;
    ok &= cJSON_AddBoolToObject(obj, "alive", m->alive) != NULL;
    if (m->last_seen_ms == UINT64_MAX)
        ok &= cJSON_AddNullToObject(obj, "last_seen_ms") != NULL;
    else
        add_u64(obj, "last_seen_ms", m->last_seen_ms, &ok);
    add_str(obj, "state", broker__http_state_name(m->state), &ok);
    add_raft(obj, m->term, m->commit_index, m->applied_index, &ok);
    return built(obj, ok);
}

cJSON *broker__http_status_json(const struct cluster_status *st, const char *cluster,
                                const struct cluster_member *members, int count, const struct http_counts *n)
{
    cJSON *obj = cJSON_CreateObject();
    bool ok = obj != NULL;
    add_num(obj, "node", st->node_id, &ok);
    add_str(obj, "cluster", cluster, &ok);
    if (st->leader_id)
        add_num(obj, "leader", st->leader_id, &ok);
    else
        ok &= cJSON_AddNullToObject(obj, "leader") != NULL;
    add_str(obj, "state", broker__http_state_name(st->role), &ok);
    add_raft(obj, st->term, st->commit_index, st->applied_index, &ok);
    add_u64(obj, "last_index", st->last_index, &ok);
    cJSON *list = cJSON_AddArrayToObject(obj, "members");
    ok &= list != NULL;
    for (int i = 0; ok && i < count; i++) {
        cJSON *m = broker__http_member_json(&members[i]);
        if (!m || !cJSON_AddItemToArray(list, m)) {
            cJSON_Delete(m);
            ok = false;
        }
    }
    add_u64(obj, "connections", n->connections, &ok);
    add_u64(obj, "sessions", n->sessions, &ok);
    add_u64(obj, "subscriptions", n->subscriptions, &ok);
    add_u64(obj, "retained", n->retained, &ok);
    return built(obj, ok);
}

int broker__http_metric(struct buf *out, const char *name, const char *type, const char *help,
                        const char *labels, uint64_t value)
{
    int rc = help ? broker__http_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) : 0;
    if (!rc && labels)
        rc = broker__http_printf(out, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
    else if (!rc)
        rc = broker__http_printf(out, "%s %llu\n", name, (unsigned long long)value);
    return rc;
}
