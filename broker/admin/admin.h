/* admin: the declarations the admin API's files share: the HTTP server
 * (server.c) and its endpoints (api.c), which need the broker, and the pure
 * parts, which do not: reading a request (request.c) and writing a response
 * (response.c). The pure parts do no I/O, call no libuv and see no struct
 * broker: unit tests call them directly.
 *
 * Strings handed in are borrowed; what a function returns as char * or
 * cJSON * is the caller's to free (free() / cJSON_Delete()). */
#ifndef STARLING_BROKER_ADMIN_H
#define STARLING_BROKER_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "cluster.h"

/* Most parameters a query string may hold; more is a bad request. */
#define BROKER_ADMIN_MAX_PARAMS 16

struct broker;
struct admin_conn;

/* --- the server (server.c) and the endpoints (api.c) ------------------------ */

/* One parsed request; every pointer is borrowed from the connection and valid
 * until it is answered. */
struct admin_request {
    int method;               /* enum http_method */
    const char *path, *query, *body; /* query NULL when there is none; not NUL-terminated */
    size_t path_len, query_len, body_len;
    const char *peer;         /* client address:port, for logs */
};

/* A request is answered exactly once with broker__admin_respond (body
 * transferred: malloc'd, or NULL when out of memory, which drops the
 * connection) or broker__admin_error; an endpoint that answers later holds
 * the connection until then. */
void broker__admin_respond(struct admin_conn *c, int status, const char *type, char *body, size_t len,
                           const char *extra /* more header lines, each ending in CRLF, or NULL */);
void broker__admin_error(struct admin_conn *c, int status, const char *msg, const char *extra);
void broker__admin_restart_after(struct admin_conn *c); /* the next response ends with broker_restart */
void broker__admin_hold(struct admin_conn *c);
void broker__admin_release(struct admin_conn *c);

/* A connection with no socket, for the fuzzer (tests/fuzz/fuzz_admin.c): the
 * bytes fed to it go through the same parser, bearer check, router and
 * endpoints as a client's, and its responses are appended to sink (borrowed
 * until broker__admin_feed_close). No timers run for it. feed_eof is the
 * client's end of stream; feed_close ends the connection whatever its state
 * (an endpoint that answers later, a cluster operation, then answers a
 * closed connection: the answer is dropped). NULL when out of memory. */
struct admin_conn *broker__admin_feed_open(struct broker *b, struct buf *sink);
void broker__admin_feed(struct admin_conn *c, const void *data, size_t len); /* data borrowed */
void broker__admin_feed_eof(struct admin_conn *c);
void broker__admin_feed_close(struct admin_conn *c);

/* api.c: answers r (borrowed) on c. */
void broker__admin_route(struct broker *b, struct admin_conn *c, const struct admin_request *r);

/* users.c: the endpoints of the replicated users and ACL rules (api.c routes
 * to them). */
struct admin_query;
void broker__admin_users_get(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                             const struct admin_query *q);
void broker__admin_users_add(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                             const struct admin_query *q);
void broker__admin_users_passwd(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                const struct admin_query *q);
void broker__admin_users_delete(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                const struct admin_query *q);
void broker__admin_users_import(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                const struct admin_query *q);
void broker__admin_acl_get(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                           const struct admin_query *q);
void broker__admin_acl_add(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                           const struct admin_query *q);
void broker__admin_acl_delete(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                              const struct admin_query *q);
void broker__admin_acl_import(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                              const struct admin_query *q);
/* ?limit=N of a listing (default 1000): false, and the request answered with
 * 400, when it is not a whole number 0..1000000. */
bool broker__admin_limit(struct admin_conn *c, const struct admin_query *q, uint64_t *limit);
/* How many users and ACL rules the replicated state holds (for /metrics). */
void broker__admin_users_count(const struct broker *b, uint64_t *users, uint64_t *rules);

/* --- text (response.c) ----------------------------------------------------- */

/* Appends formatted text to b, which stays NUL-terminated after len (the NUL
 * is not counted). 0, or -ENOMEM with b unchanged. */
int broker__admin_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- reading a request (request.c) ------------------------------------------ */

/* Percent-decodes s (len bytes) into out, which must hold len + 1 bytes; the
 * result is NUL-terminated and its length stored in *outlen. '+' stays '+'
 * (client ids and topics contain it; starlingctl encodes spaces as %20).
 * Returns 0, or -EINVAL for a malformed escape or an encoded NUL (out is
 * then unspecified). */
int broker__admin_pct_decode(const char *s, size_t len, char *out, size_t *outlen);

struct admin_param {
    char *name, *value; /* decoded, NUL-terminated; value "" for "?flag" */
};

struct admin_query {
    struct admin_param params[BROKER_ADMIN_MAX_PARAMS];
    int count;
};

/* Splits a query string (without the '?') on '&' into decoded parameters.
 * Empty segments are skipped. Returns 0; -EINVAL if a name or value is not
 * properly percent-encoded; -E2BIG beyond BROKER_ADMIN_MAX_PARAMS; -ENOMEM.
 * On failure nothing is left to free; on success free with
 * broker__admin_query_free. */
int broker__admin_query_parse(const char *q, size_t len, struct admin_query *out);
void broker__admin_query_free(struct admin_query *q);
/* The value of the first parameter called name, or NULL (borrowed from q). */
const char *broker__admin_query_find(const struct admin_query *q, const char *name);

/* Decimal digits only (no sign, no space, at most 20 digits), value <= max.
 * Returns 0, -EINVAL (not a number) or -ERANGE (above max); *out is set only
 * on success. */
int broker__admin_uint_parse(const char *s, uint64_t max, uint64_t *out);

/* The bodies of POST /api/v1/cluster/... (JSON objects). node: {"node": N}
 * with N an integer 1..65535; when optional, an empty body or one without
 * "node" gives *node = 0. peer: {"peer": "host:port"}, copied into peer.
 * Return 0, or -EINVAL with *why (a static string) saying what is wrong. */
int broker__admin_body_node(const char *body, size_t len, bool optional, uint32_t *node, const char **why);
int broker__admin_body_peer(const char *body, size_t len, char *peer, size_t peerlen, const char **why);

/* The bodies of POST /api/v1/users/... and /api/v1/acl/... (JSON objects).
 * A user name or an ACL rule's user is 1..BROKER_ADMIN_MAX_NAME bytes without
 * control characters or blanks at either end (an acl_file could not hold
 * it); a password 1..BROKER_ADMIN_MAX_PASSWORD bytes; a topic a valid filter
 * of 1..65535 bytes without control characters or blanks at either end.
 * Return 0, -EINVAL with *why (a static string), or -ENOMEM; on failure
 * nothing is left to free. */
#define BROKER_ADMIN_MAX_NAME 1024u
#define BROKER_ADMIN_MAX_PASSWORD 65535u
struct admin_user_req {
    char *name;               /* malloc'd */
    char *password;           /* malloc'd, NULL when not wanted */
    size_t password_len;
};
/* {"name": N} and, with want_password, {"password": P}. */
int broker__admin_body_user(const char *body, size_t len, bool want_password, struct admin_user_req *out,
                            const char **why);
void broker__admin_user_req_free(struct admin_user_req *u); /* wipes the password */

struct admin_rule_req {
    int kind;                 /* enum auth_rule_kind: 0 anonymous, 1 a user's, 2 pattern */
    char *user;               /* malloc'd for kind 1, else NULL */
    char *topic;              /* malloc'd */
    int access;               /* enum auth_access bits (0 deny); -1 when not wanted */
};
/* {"kind": "anonymous"|"user"|"pattern" (default: "user" with a "user",
 * else "anonymous"), "user": U, "topic": T} and, with want_access,
 * {"access": "read"|"write"|"readwrite"|"deny"}. */
int broker__admin_body_rule(const char *body, size_t len, bool want_access, struct admin_rule_req *out,
                            const char **why);
void broker__admin_rule_req_free(struct admin_rule_req *r);
/* "read", "write", "readwrite" or "deny" for access bits 1, 2, 3, 0; and back
 * (-1 for another word). */
const char *broker__admin_access_name(int access);
int broker__admin_access_parse(const char *word);

/* True when header (the Authorization value, len bytes) is "Bearer <token>"
 * (scheme case-insensitive). The token is compared in constant time. */
bool broker__admin_bearer_ok(const char *header, size_t len, const char *token);

/* Whether admin_listen (IP:PORT, [IPv6]:PORT or "off") keeps the API to this
 * machine: off, 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. A wildcard (0.0.0.0,
 * ::), any other address and a value that does not parse are not loopback. */
bool broker__admin_listen_loopback(const char *listen);

/* --- writing a response (response.c) ---------------------------------------- */

/* Appends the status line and headers of a response with a body of body_len
 * bytes. extra (may be NULL) is more header lines, each ending in CRLF.
 * 0, or -ENOMEM. */
int broker__admin_head(struct buf *out, int status, const char *content_type, size_t body_len,
                       bool keep_alive, const char *extra);

/* {"error": msg, "status": status}; NULL when out of memory. */
char *broker__admin_error_json(int status, const char *msg);

/* The answer to a finished cluster operation (cluster_op_cb's status and
 * msg): sets *body to the JSON text and returns the HTTP status. 0 is 200
 * {"result":"ok"} (202 {"result":"joining"} for a join), CLUSTER_EALREADY 200
 * {"result":"noop"}, CLUSTER_ENOTFOUND 404, CLUSTER_EINVAL 409,
 * CLUSTER_EUNAVAILABLE and CLUSTER_ESHUTDOWN 503, anything else 500 (error
 * bodies as broker__admin_error_json). *body is NULL when out of memory. */
int broker__admin_op_reply(int status, bool join, const char *msg, char **body);

/* Names in the JSON: "follower", "candidate", "leader", "unavailable", or
 * "unknown" (state -1 and anything else); "voter", "standby", "spare". */
const char *broker__admin_state_name(int state);
const char *broker__admin_role_name(int role);

/* Adds name: v to obj as raw decimal text (64-bit counters do not fit a
 * double); *ok becomes false when out of memory. */
void broker__admin_json_u64(cJSON *obj, const char *name, uint64_t v, bool *ok);

/* Base64 (RFC 4648, padded) of len bytes, NUL-terminated; NULL when out of
 * memory. */
char *broker__admin_base64(const uint8_t *data, size_t len);

/* What GET /api/v1/status reports besides the cluster's own view. */
struct admin_counts {
    uint64_t connections, sessions, subscriptions, retained;
};

/* One member as GET /api/v1/status lists it; NULL when out of memory. */
cJSON *broker__admin_member_json(const struct cluster_member *m);

/* The whole GET /api/v1/status object; NULL when out of memory. */
cJSON *broker__admin_status_json(const struct cluster_status *st, const char *cluster,
                                const struct cluster_member *members, int count, const struct admin_counts *n);

/* Appends one Prometheus sample with its HELP and TYPE lines; labels (may be
 * NULL) is the text between the braces. Metrics of one name with several
 * label sets: help NULL after the first. 0, or -ENOMEM. */
int broker__admin_metric(struct buf *out, const char *name, const char *type, const char *help,
                         const char *labels, uint64_t value);

/* --- the dashboard (ui.c, events.c) and streamed responses (server.c) ------- */

/* Write backlog beyond which a stream's client counts as gone (too slow). */
#define BROKER_ADMIN_STREAM_BACKLOG (256u * 1024)

/* A response without a length that goes on until the connection closes
 * (text/event-stream): stream_begin sends the head; the connection then reads
 * no further request (what the client sends is dropped, its end closes the
 * connection) and is never idle. stream_send copies data; both return 0,
 * -ENOTSUP on a connection without a socket (the fuzzer's: answer it as
 * usual), -EPIPE once the connection is closed, -ENOBUFS while more than
 * BROKER_ADMIN_STREAM_BACKLOG is unwritten, -ENOMEM. A streaming connection
 * ends with stream_close (or when the client goes; stream_gone is then true);
 * whoever keeps it between calls holds it (broker__admin_hold). */
int broker__admin_stream_begin(struct admin_conn *c, const char *type);
int broker__admin_stream_send(struct admin_conn *c, const char *data, size_t len);
bool broker__admin_stream_gone(const struct admin_conn *c);
void broker__admin_stream_close(struct admin_conn *c);
/* The client's address (no port), for per-address limits; borrowed from c. */
const char *broker__admin_conn_ip(const struct admin_conn *c);

/* The dashboard's files, made into arrays at build time by
 * broker/admin/embed.py from broker/admin/www/ (admin_www.c): paths ("/app.js"),
 * content types, bytes and sizes, broker__admin_asset_count of each. */
extern const size_t broker__admin_asset_count;
extern const char *const broker__admin_asset_paths[];
extern const char *const broker__admin_asset_types[];
extern const unsigned char *const broker__admin_asset_data[];
extern const size_t broker__admin_asset_sizes[];

/* ui.c: answers a GET of "/" or of one of the dashboard's files (url: the
 * request target, len bytes, borrowed) on c with the page's security headers
 * and returns true; false (nothing answered) for any other target. */
bool broker__admin_ui_serve(struct admin_conn *c, const char *url, size_t len);

/* events.c: GET /api/v1/events streams a snapshot of the node (status and
 * counters) as Server-Sent Events every second, to at most
 * BROKER_ADMIN_MAX_STREAMS clients at once, and from one address at most
 * half its admin_max_conns_per_peer (the rest stays for requests).
 * events_stop ends every stream (the admin server's stop). */
#define BROKER_ADMIN_MAX_STREAMS 8
void broker__admin_events_get(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                              const struct admin_query *q);
void broker__admin_events_stop(struct broker *b);

/* ops.c: POST /api/v1/sessions/disconnect {"client_id"} and
 * POST /api/v1/retained/delete {"topic"}. */
void broker__admin_post_disconnect(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                   const struct admin_query *q);
void broker__admin_post_retained_delete(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                        const struct admin_query *q);

/* api.c: the object GET /api/v1/status answers (also each event's base);
 * NULL when out of memory. */
cJSON *broker__admin_status_build(struct broker *b);

#endif
