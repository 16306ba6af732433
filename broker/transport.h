/* transport: what lies between a client's socket and its MQTT bytes. A tcp
 * listener has no transport (conn.tr is NULL: conn.c reads into rbuf and
 * writes conn.out straight to the socket, the fast path). A tls, ws or wss
 * listener gives each connection a stack of filters, lowest first:
 *     tls: [tls]      ws: [ws]      wss: [tls, ws]
 * Every filter turns bytes from below into bytes for above (input) and
 * bytes from above into bytes for below (output), with no I/O of its own: the
 * connection (conn.c) reads the socket, runs input up the stack into rbuf,
 * runs conn.out down the stack into the wire buffer and writes that. Nothing
 * above the transport (connect.c, publish.c, ...) knows which one it is; the
 * only thing it may ask is the peer's identity (a verified client
 * certificate's name, for use_identity_as_username).
 *
 * Failure: a negative return from a filter closes the connection; the filter
 * has put the reason in words in its why() for the log line, and may have
 * put bytes in down that should still be sent first (a TLS alert, a
 * WebSocket close frame or an HTTP 400). TRANSPORT_EOF from input means the
 * peer ended the session in the transport's own way (close_notify, a close
 * frame): treated as the end of the stream. Memory: a filter holds at most a
 * bounded amount of input it cannot yet pass up (a TLS record, a WebSocket
 * frame header, an upgrade request up to its limit). */
#ifndef STARLING_BROKER_TRANSPORT_H
#define STARLING_BROKER_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define TRANSPORT_EOF 1
#define TRANSPORT_MAX_FILTERS 2

struct filter;

struct filter_ops {
    const char *name; /* "tls", "ws": in log lines */
    /* n bytes from below (borrowed): the bytes for the layer above are
     * appended to up, bytes to send back down (handshake, pong, upgrade
     * response) to down. 0, TRANSPORT_EOF or a negative error. */
    int (*input)(struct filter *f, const uint8_t *in, size_t n, struct buf *up, struct buf *down);
    /* n bytes from above (borrowed) -> appended to down. 0 or negative. */
    int (*output)(struct filter *f, const uint8_t *p, size_t n, struct buf *down);
    /* The connection is closing: append the goodbye (close_notify, a close
     * frame with a status code) to down. May be called before the handshake
     * or upgrade finished. */
    void (*close)(struct filter *f, struct buf *down);
    /* The reason of the last failure, for the log. */
    const char *(*why)(const struct filter *f);
    /* The peer's verified identity (tls only; NULL elsewhere): 0, -ENOENT. */
    int (*identity)(const struct filter *f, char *out, size_t outlen);
    /* Releases f and what it holds. */
    void (*free)(struct filter *f);
};

struct filter {
    const struct filter_ops *ops;
};

/* One connection's stack, owned by the conn (conn.tr). */
struct transport {
    const char *name;                          /* the listener's: "tls", "ws", "wss" */
    struct filter *f[TRANSPORT_MAX_FILTERS];   /* f[0] is next to the socket */
    int n;
    struct buf mid;                            /* between f[0] and f[1] (wss) */
    char why[200];                             /* "tls: ..." after a failure */
};

/* Bytes read from the socket (borrowed) -> MQTT bytes appended to rbuf, wire
 * bytes to send appended to wire. 0, TRANSPORT_EOF or negative (why: the
 * failing filter's reason in transport_why). */
int transport_input(struct transport *t, const uint8_t *in, size_t n, struct buf *rbuf, struct buf *wire);

/* MQTT bytes (borrowed) -> wire bytes appended to wire. 0 or negative. */
int transport_output(struct transport *t, const uint8_t *p, size_t n, struct buf *wire);

/* The goodbye of every filter, top first, appended to wire. */
void transport_close(struct transport *t, struct buf *wire);

/* "tls: certificate verify failed: ..." for the last failure. */
const char *transport_why(const struct transport *t);

/* The identity a filter of the stack has verified; 0 or -ENOENT. */
int transport_identity(const struct transport *t, char *out, size_t outlen);

/* Frees the filters and t itself. */
void transport_free(struct transport *t);

/* An empty stack named name (a static string: the listener's transport) for
 * transport_push; 0 or -ENOMEM. */
int transport_new(const char *name, struct transport **out);

/* Puts f (transferred on success) on top of the stack: the first push is
 * next to the socket. 0, or -ENOSPC beyond TRANSPORT_MAX_FILTERS. */
int transport_push(struct transport *t, struct filter *f);

/* transport_tls.c: a server-side tls filter on ctx (borrowed; the filter's
 * connection takes its own reference, so the listener may replace ctx on a
 * reload). 0 or -ENOMEM. */
struct tls_ctx;
int transport_tls_filter_new(struct tls_ctx *ctx, struct filter **out);

/* The negotiated protocol and cipher of the stack's tls filter, for the log
 * ("TLSv1.3 TLS_AES_256_GCM_SHA384"); false when there is none. */
bool transport_tls_describe(const struct transport *t, char *out, size_t outlen);

#endif
