/* http: the pure parts of the admin API (broker/admin.c): text appended to a
 * struct buf, query strings and percent-decoding, strict numbers, request bodies,
 * bearer tokens, and the JSON and Prometheus text the endpoints answer with.
 * No I/O, no libuv calls, no struct broker: unit tests call them directly.
 *
 * Strings handed in are borrowed; what a function returns as char * or
 * cJSON * is the caller's to free (free() / cJSON_Delete()). */
#ifndef STARLING_BROKER_HTTP_H
#define STARLING_BROKER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "cluster.h"

/* Most parameters a query string may hold; more is a bad request. */
#define BROKER_HTTP_MAX_PARAMS 16

/* --- text ------------------------------------------------------------------- */

/* Appends formatted text to b, which stays NUL-terminated after len (the NUL
 * is not counted). 0, or -ENOMEM with b unchanged. */
int broker__http_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- request parsing ------------------------------------------------------ */

/* Percent-decodes s (len bytes) into out, which must hold len + 1 bytes; the
 * result is NUL-terminated and its length stored in *outlen. '+' stays '+'
 * (client ids and topics contain it; starlingctl encodes spaces as %20).
 * Returns 0, or -EINVAL for a malformed escape or an encoded NUL (out is
 * then unspecified). */
int broker__http_pct_decode(const char *s, size_t len, char *out, size_t *outlen);

struct http_param {
    char *name, *value; /* decoded, NUL-terminated; value "" for "?flag" */
};

struct http_query {
    struct http_param params[BROKER_HTTP_MAX_PARAMS];
    int count;
};

/* Splits a query string (without the '?') on '&' into decoded parameters.
 * Empty segments are skipped. Returns 0; -EINVAL if a name or value is not
 * properly percent-encoded; -E2BIG beyond BROKER_HTTP_MAX_PARAMS; -ENOMEM.
 * On failure nothing is left to free; on success free with
 * broker__http_query_free. */
int broker__http_query_parse(const char *q, size_t len, struct http_query *out);
void broker__http_query_free(struct http_query *q);
/* The value of the first parameter called name, or NULL (borrowed from q). */
const char *broker__http_query_find(const struct http_query *q, const char *name);

/* Decimal digits only (no sign, no space, at most 20 digits), value <= max.
 * Returns 0, -EINVAL (not a number) or -ERANGE (above max); *out is set only
 * on success. */
int broker__http_uint_parse(const char *s, uint64_t max, uint64_t *out);

/* The bodies of POST /api/v1/cluster/... (JSON objects). node: {"node": N}
 * with N an integer 1..65535; when optional, an empty body or one without
 * "node" gives *node = 0. peer: {"peer": "host:port"}, copied into peer.
 * Return 0, or -EINVAL with *why (a static string) saying what is wrong. */
int broker__http_body_node(const char *body, size_t len, bool optional, uint32_t *node, const char **why);
int broker__http_body_peer(const char *body, size_t len, char *peer, size_t peerlen, const char **why);

/* True when header (the Authorization value, len bytes) is "Bearer <token>"
 * (scheme case-insensitive). The token is compared in constant time. */
bool broker__http_bearer_ok(const char *header, size_t len, const char *token);

/* --- responses ------------------------------------------------------------ */

/* Appends the status line and headers of a response with a body of body_len
 * bytes. extra (may be NULL) is more header lines, each ending in CRLF.
 * 0, or -ENOMEM. */
int broker__http_head(struct buf *out, int status, const char *content_type, size_t body_len,
                       bool keep_alive, const char *extra);

/* {"error": msg, "status": status}; NULL when out of memory. */
char *broker__http_error_json(int status, const char *msg);

/* The answer to a finished cluster operation (cluster_op_cb's status and
 * msg): sets *body to the JSON text and returns the HTTP status. 0 is 200
 * {"result":"ok"} (202 {"result":"joining"} for a join), CLUSTER_EALREADY 200
 * {"result":"noop"}, CLUSTER_ENOTFOUND 404, CLUSTER_EINVAL 409,
 * CLUSTER_EUNAVAILABLE and CLUSTER_ESHUTDOWN 503, anything else 500 (error
 * bodies as broker__http_error_json). *body is NULL when out of memory. */
int broker__http_op_reply(int status, bool join, const char *msg, char **body);

/* Names in the JSON: "follower", "candidate", "leader", "unavailable", or
 * "unknown" (state -1 and anything else); "voter", "standby", "spare". */
const char *broker__http_state_name(int state);
const char *broker__http_role_name(int role);

/* Base64 (RFC 4648, padded) of len bytes, NUL-terminated; NULL when out of
 * memory. */
char *broker__http_base64(const uint8_t *data, size_t len);

/* What GET /api/v1/status reports besides the cluster's own view. */
struct http_counts {
    uint64_t connections, sessions, subscriptions, retained;
};

/* One member as GET /api/v1/status lists it; NULL when out of memory. */
cJSON *broker__http_member_json(const struct cluster_member *m);

/* The whole GET /api/v1/status object; NULL when out of memory. */
cJSON *broker__http_status_json(const struct cluster_status *st, const char *cluster,
                                const struct cluster_member *members, int count, const struct http_counts *n);

/* Appends one Prometheus sample with its HELP and TYPE lines; labels (may be
 * NULL) is the text between the braces. Metrics of one name with several
 * label sets: help NULL after the first. 0, or -ENOMEM. */
int broker__http_metric(struct buf *out, const char *name, const char *type, const char *help,
                         const char *labels, uint64_t value);

#endif
