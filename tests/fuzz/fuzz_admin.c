/* libFuzzer target for the admin API's HTTP request path: the input is what
 * one client sends on one connection to admin_listen of a real broker in this
 * process (harness.c): http-parser driven by broker/admin/server.c, the
 * bearer check, the URL split, the router and the endpoints (api.c) with
 * their query and body readers (request.c). The first byte of the input
 * picks a request line from the table below (so that the fuzzer reaches
 * every endpoint quickly) unless it is 0, when the rest is sent as it is.
 * The bytes go, with no socket, into a connection object of server.c
 * (broker__admin_feed_open: the same per-connection parser and router as a
 * socket's read callback, responses appended to a buffer), then the
 * client's end of stream, and one turn of the node's loop (harness_poll), in
 * which a cluster operation that finished at once is answered. Many times as many inputs a
 * second as over loopback; STARLING_FUZZ_SOCKET=1 sends them over a loopback
 * connection instead (accept, the read callback, writes, close, and every
 * answer waited for). A crash, a sanitizer report or a node that stopped is
 * a finding, and over a socket a connection still open 10 s after the
 * client's end of stream.
 * Requests that would join or leave a cluster are not sent: they change
 * the node's membership on purpose (the cluster tests cover them) and would
 * leave the next inputs a node that is not serving.
 * Before the HTTP path, the pure readers of request.c are called on the
 * input directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "harness.h"

static const char *const lines[] = {
    "GET /api/v1/status",
    "GET /metrics",
    "GET /api/v1/sessions",
    "GET /api/v1/subscriptions",
    "GET /api/v1/retained",
    "POST /api/v1/cluster/remove",
    "POST /api/v1/cluster/transfer",
    "PUT /api/v1/status",
    "GET /api/v1/",
    /* the dashboard's (docs/dashboard.md) */
    "GET /api/v1/events",
    "POST /api/v1/retained/delete",
    "POST /api/v1/sessions/disconnect",
    "GET /",
    "GET /app.js",
};

static void pure_readers(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char *out = malloc(size + 1);
    size_t outlen;
    if (broker__admin_pct_decode(s, size, out, &outlen) == 0 && (outlen > size || out[outlen] != '\0'))
        abort();
    free(out);
    struct admin_query q;
    if (broker__admin_query_parse(s, size, &q) == 0) {
        (void)broker__admin_query_find(&q, "node");
        broker__admin_query_free(&q);
    }
    uint32_t node;
    const char *why;
    (void)broker__admin_body_node(s, size, size & 1, &node, &why);
    char peer[80];
    (void)broker__admin_body_peer(s, size, peer, sizeof(peer), &why);
    (void)broker__admin_bearer_ok(s, size, "token");
    char *z = strndup(s, size); /* the uint reader wants a C string */
    uint64_t v;
    (void)broker__admin_uint_parse(z, UINT32_MAX, &v);
    free(z);
}

/* One connection's bytes without a socket. */
static void feed(const uint8_t *data, size_t size)
{
    struct buf out = {0};
    struct admin_conn *c = broker__admin_feed_open(harness_broker(), &out);
    if (!c)
        return;
    broker__admin_feed(c, data, size);
    broker__admin_feed_eof(c);
    /* a cluster operation that finished at once (a refusal) is answered on
     * the loop's next turn; one still under way when the connection is
     * closed answers a closed connection later, as for a client gone */
    harness_poll();
    broker__admin_feed_close(c);
    buf_free(&out);
}

static void send_request(const uint8_t *data, size_t size)
{
    if (harness_socket())
        harness_exchange(harness_admin_port(), data, size, 10000);
    else
        feed(data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    pure_readers(data + 1, size - 1);
    if (memmem(data, size, "join", 4) || memmem(data, size, "leave", 5))
        return -1; /* not sent: nor kept in the corpus (libFuzzer) */
    uint8_t pick = data[0];
    if (pick == 0) {
        send_request(data + 1, size - 1);
    } else {
        /* a request line from the table, then the input as the rest of the
         * line (path suffix, query, version), headers and body */
        const char *line = lines[pick % (sizeof(lines) / sizeof(lines[0]))];
        size_t n = strlen(line);
        uint8_t *req = malloc(n + size - 1);
        memcpy(req, line, n);
        memcpy(req + n, data + 1, size - 1);
        send_request(req, n + size - 1);
        free(req);
    }
    if (harness_stopped()) {
        fprintf(stderr, "fuzz_admin: a request stopped the node\n");
        abort();
    }
    return 0;
}
