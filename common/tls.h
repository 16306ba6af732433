/* tls: TLS on memory BIOs (OpenSSL 3), for code that owns its own sockets on
 * a libuv loop: the MQTT listeners (broker/), the admin API, the links between
 * nodes (cluster/), starling-bench and starlingctl.
 *
 * The engine does no I/O and never blocks: bytes read from the socket go in
 * with tls_conn_input, which runs the handshake and appends the decrypted
 * application bytes to a struct buf; plaintext to send goes in with
 * tls_conn_write; whatever must go on the wire (handshake records, alerts,
 * encrypted records) is taken out with tls_conn_output and written by the
 * caller. Plaintext written before the handshake has finished is kept and
 * encrypted as soon as it has (a client may queue its CONNECT at once).
 *
 * Failure: a negative return is final for the connection (close it after
 * sending what tls_conn_output still gives, e.g. an alert); tls_conn_why
 * says why in words for the log ("certificate verify failed: certificate has
 * expired", "wrong version number", ...). Memory held per connection is
 * OpenSSL's record buffers plus the unread input: the caller feeds at most
 * what it read from one socket read, and OpenSSL bounds handshake messages
 * (a peer's certificate chain to 100 KiB). */
#ifndef STARLING_COMMON_TLS_H
#define STARLING_COMMON_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* What a listener, a peer link or a client asks of TLS. Strings are borrowed
 * for the call to tls_ctx_new only; NULL or "" means not set. */
struct tls_config {
    const char *certfile;     /* PEM certificate chain (required for a server) */
    const char *keyfile;      /* PEM private key of certfile */
    const char *cafile;       /* PEM CA bundle to verify the peer against */
    const char *capath;       /* directory of hashed CA certificates */
    const char *crlfile;      /* PEM CRL; when set, the peer's certificate is checked against it */
    const char *ciphers;      /* TLS 1.2 cipher list (OpenSSL syntax) */
    const char *ciphersuites; /* TLS 1.3 cipher suites */
    const char *tls_version;  /* minimum: "tlsv1.2" (default) or "tlsv1.3" */
    /* server: ask for a client certificate and refuse a client without a
     * valid one. client: always verifies the server unless insecure. */
    bool require_certificate;
    bool insecure;            /* client: do not verify the server (tests, -k) */
    const char *max_version;  /* highest: "tlsv1.2" or "tlsv1.3" (NULL, the default); a client
                               * pinning one version (starling-bench --ssl-version) */
};

struct tls_ctx; /* a configured SSL_CTX: certificates, CAs, versions, ciphers */

/* Builds a context for a server (server true) or a client. On failure returns
 * a negative error and writes one line naming the file and the reason to err
 * (errlen bytes), e.g. "keyfile /etc/x.key: no such file". */
int tls_ctx_new(const struct tls_config *cfg, bool server, struct tls_ctx **out, char *err, size_t errlen);

/* Drops the caller's reference: connections made from ctx keep it alive until
 * they are freed (so a reload can replace a listener's context at once). */
void tls_ctx_free(struct tls_ctx *ctx);

struct tls_conn {
    void *ssl;              /* SSL *, owned */
    const uint8_t *in;      /* the input of the tls_conn_input call running */
    size_t in_len;
    struct buf out;         /* records for the wire, until tls_conn_output */
    struct buf early;       /* plaintext written before the handshake finished */
    bool server;
    bool established;       /* the handshake has finished */
    bool peer_closed;       /* the peer sent close_notify */
    char why[160];          /* the reason of the last failure, for the log */
};

/* Starts a connection on ctx (borrowed; the connection takes its own
 * reference). server_name (client only, may be NULL) is sent as SNI and the
 * server's certificate must match it (a host name or an IP address). */
int tls_conn_init(struct tls_conn *t, struct tls_ctx *ctx, const char *server_name);

/* Releases everything t holds; t may be zero-initialised and never started. */
void tls_conn_free(struct tls_conn *t);

/* A client writes its ClientHello: call once after init on the dialing side,
 * then tls_conn_output. */
int tls_conn_connect(struct tls_conn *t);

/* Feeds n bytes read from the socket (copied), advances the handshake and
 * appends every decrypted application byte to plain. Returns 0 (also when
 * more input is needed), or -EPROTO with why set; when the peer closed the
 * session, 0 with peer_closed set. Call tls_conn_output afterwards: the
 * handshake and alerts produce bytes to send. */
int tls_conn_input(struct tls_conn *t, const uint8_t *in, size_t n, struct buf *plain);

/* Encrypts n plaintext bytes (copied; kept until the handshake finished).
 * 0, -ENOMEM or -EPROTO. */
int tls_conn_write(struct tls_conn *t, const uint8_t *p, size_t n);

/* Appends the bytes waiting to go on the wire to wire and returns 0, or
 * -ENOMEM. */
int tls_conn_output(struct tls_conn *t, struct buf *wire);

/* Bytes waiting to go on the wire (what tls_conn_output would append). */
size_t tls_conn_pending(const struct tls_conn *t);

/* Queues a close_notify (then tls_conn_output). */
void tls_conn_shutdown(struct tls_conn *t);

/* The peer's identity from its verified certificate: the subject's CN, else
 * the first DNS, e-mail or URI subject alternative name. 0, or -ENOENT when
 * there is no certificate or no such name, -ENOSPC when out is too small. */
int tls_conn_identity(const struct tls_conn *t, char *out, size_t outlen);

/* The negotiated protocol and cipher, for the log ("TLSv1.3 TLS_AES_256_GCM_SHA384"). */
void tls_conn_describe(const struct tls_conn *t, char *out, size_t outlen);

#endif
