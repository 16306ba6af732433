/* admin/request: reading an admin API request, pure: percent-decoding, query
 * strings, strict numbers, the JSON bodies of the cluster operations, bearer
 * tokens, whether admin_listen stays on loopback. */
#include "admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
