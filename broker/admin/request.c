/* admin/request: reading an admin API request, pure: percent-decoding, query
 * strings, strict numbers, the JSON bodies of the cluster operations and of
 * the users and ACL rules, bearer
 * tokens, whether admin_listen stays on loopback. */
#include "admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto.h"

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

int broker__admin_pct_decode(const char *s, size_t len, char *out, size_t *outlen)
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
    *rc = broker__admin_pct_decode(s, len, out, &n);
    if (*rc) {
        free(out);
        return NULL;
    }
    return out;
}

void broker__admin_query_free(struct admin_query *q)
{
    for (int i = 0; i < q->count; i++) {
        free(q->params[i].name);
        free(q->params[i].value);
    }
    q->count = 0;
}

int broker__admin_query_parse(const char *q, size_t len, struct admin_query *out)
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
        if (out->count == BROKER_ADMIN_MAX_PARAMS) {
            rc = -E2BIG;
            goto free_params;
        }
        const char *eq = memchr(seg, '=', seglen);
        size_t namelen = eq ? (size_t)(eq - seg) : seglen;
        struct admin_param *p = &out->params[out->count];
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
    broker__admin_query_free(out);
    return rc;
}

const char *broker__admin_query_find(const struct admin_query *q, const char *name)
{
    for (int i = 0; i < q->count; i++)
        if (strcmp(q->params[i].name, name) == 0)
            return q->params[i].value;
    return NULL;
}

int broker__admin_uint_parse(const char *s, uint64_t max, uint64_t *out)
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

int broker__admin_body_node(const char *body, size_t len, bool optional, uint32_t *node, const char **why)
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

int broker__admin_body_peer(const char *body, size_t len, char *peer, size_t peerlen, const char **why)
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

bool broker__admin_bearer_ok(const char *header, size_t len, const char *token)
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

/* --- where the API listens ------------------------------------------------------------ */

bool broker__admin_listen_loopback(const char *listen)
{
    char host[64];
    const char *end;
    if (strcmp(listen, "off") == 0)
        return true;
    if (listen[0] == '[') {
        listen++;
        end = strchr(listen, ']');
    } else {
        end = strrchr(listen, ':');
    }
    if (!end || (size_t)(end - listen) >= sizeof(host))
        return false;
    memcpy(host, listen, (size_t)(end - listen));
    host[end - listen] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) != 1)
        return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return true;
    /* ::ffff:127.x.y.z reaches the IPv4 loopback */
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/* --- users and ACL rules ------------------------------------------------------ */

/* A name or topic an acl_file line could hold: no control character and no
 * blank at either end. */
static bool line_safe(const char *s, size_t len)
{
    if (!len || s[0] == ' ' || s[len - 1] == ' ')
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return false;
    return true;
}

/* The string member name of obj, or NULL. */
static const char *member(const cJSON *obj, const char *name)
{
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *dup_str(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

void broker__admin_user_req_free(struct admin_user_req *u)
{
    free(u->name);
    if (u->password) {
        volatile char *p = u->password;
        for (size_t i = 0; i < u->password_len; i++)
            p[i] = 0;
        free(u->password);
    }
    memset(u, 0, sizeof(*u));
}

int broker__admin_body_user(const char *body, size_t len, bool want_password, struct admin_user_req *out,
                            const char **why)
{
    memset(out, 0, sizeof(*out));
    cJSON *obj;
    int rc = body_object(body, len, &obj, why);
    if (rc)
        return rc;
    const char *name = member(obj, "name"), *pass = member(obj, "password");
    size_t nl = name ? strlen(name) : 0, pl = pass ? strlen(pass) : 0;
    rc = -EINVAL;
    if (!name)
        *why = "\"name\" (a string) is missing";
    else if (nl > BROKER_ADMIN_MAX_NAME || !line_safe(name, nl))
        *why = "\"name\" must be 1..1024 bytes, without control characters or blanks at either end";
    else if (want_password && !pass)
        *why = "\"password\" (a string) is missing";
    else if (want_password && (pl == 0 || pl > BROKER_ADMIN_MAX_PASSWORD))
        *why = "\"password\" must be 1..65535 bytes";
    else
        rc = 0;
    if (rc == 0 && (!(out->name = dup_str(name, nl)) || (want_password && !(out->password = dup_str(pass, pl))))) {
        rc = -ENOMEM;
        *why = "out of memory";
    }
    out->password_len = want_password ? pl : 0;
    cJSON_Delete(obj);
    if (rc)
        broker__admin_user_req_free(out);
    return rc;
}

const char *broker__admin_access_name(int access)
{
    static const char *const names[] = {"deny", "read", "write", "readwrite"};
    return access >= 0 && access <= 3 ? names[access] : "?";
}

int broker__admin_access_parse(const char *word)
{
    for (int a = 0; a <= 3; a++)
        if (strcmp(word, broker__admin_access_name(a)) == 0)
            return a;
    return -1;
}

void broker__admin_rule_req_free(struct admin_rule_req *r)
{
    free(r->user);
    free(r->topic);
    memset(r, 0, sizeof(*r));
}

int broker__admin_body_rule(const char *body, size_t len, bool want_access, struct admin_rule_req *out,
                            const char **why)
{
    memset(out, 0, sizeof(*out));
    out->access = -1;
    cJSON *obj;
    int rc = body_object(body, len, &obj, why);
    if (rc)
        return rc;
    const char *kind = member(obj, "kind"), *user = member(obj, "user"), *topic = member(obj, "topic"),
               *access = member(obj, "access");
    size_t ul = user ? strlen(user) : 0, tl = topic ? strlen(topic) : 0;
    out->kind = !kind ? (user ? 1 : 0) : strcmp(kind, "anonymous") == 0 ? 0 : strcmp(kind, "user") == 0 ? 1
                                     : strcmp(kind, "pattern") == 0     ? 2
                                                                          : -1;
    rc = -EINVAL;
    if (out->kind < 0)
        *why = "\"kind\" must be \"anonymous\", \"user\" or \"pattern\"";
    else if (out->kind == 1 && !user)
        *why = "\"user\" (a string) is missing";
    else if (out->kind != 1 && user)
        *why = "\"user\" belongs to a rule of kind \"user\" only";
    else if (user && (ul > BROKER_ADMIN_MAX_NAME || !line_safe(user, ul)))
        *why = "\"user\" must be 1..1024 bytes, without control characters or blanks at either end";
    else if (!topic)
        *why = "\"topic\" (a string) is missing";
    else if (tl > 65535 || !line_safe(topic, tl) || proto_topic_filter_check((const uint8_t *)topic, tl) != 0)
        *why = "\"topic\" must be a valid topic filter, without control characters or blanks at either end";
    else if (want_access && (!access || (out->access = broker__admin_access_parse(access)) < 0))
        *why = "\"access\" must be \"read\", \"write\", \"readwrite\" or \"deny\"";
    else
        rc = 0;
    if (rc == 0 && (!(out->topic = dup_str(topic, tl)) || (user && !(out->user = dup_str(user, ul))))) {
        rc = -ENOMEM;
        *why = "out of memory";
    }
    cJSON_Delete(obj);
    if (rc)
        broker__admin_rule_req_free(out);
    return rc;
}
