/* tls: the memory-BIO TLS engine (see tls.h). OpenSSL's error queue is
 * per thread and keeps stale entries: every call clears it first, so that
 * SSL_get_error and the reason we log describe this call. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define TLS_READ_STEP 16384 /* one TLS record's plaintext */
#define TLS_OUT_KEEP 16384  /* an empty output buffer larger than this is freed */

static bool set(const char *s) { return s && *s; }

/* Puts "what: reason" in err, the reason from errno for files that cannot be
 * read, else from OpenSSL's queue. */
static int ctx_fail(char *err, size_t errlen, const char *what, const char *path)
{
    char reason[120] = "invalid";
    if (path && access(path, R_OK) != 0)
        snprintf(reason, sizeof(reason), "%s", strerror(errno));
    else {
        unsigned long e = ERR_peek_last_error();
        if (e) {
            const char *r = ERR_reason_error_string(e);
            snprintf(reason, sizeof(reason), "%s", r ? r : "error");
        }
    }
    ERR_clear_error();
    if (path)
        snprintf(err, errlen, "%s %s: %s", what, path, reason);
    else
        snprintf(err, errlen, "%s: %s", what, reason);
    return -EINVAL;
}

static int min_version(const char *v)
{
    if (!set(v) || strcmp(v, "tlsv1.2") == 0)
        return TLS1_2_VERSION;
    if (strcmp(v, "tlsv1.3") == 0)
        return TLS1_3_VERSION;
    return -1;
}

static int ctx_configure(SSL_CTX *ctx, const struct tls_config *cfg, bool server, char *err, size_t errlen)
{
    int v = min_version(cfg->tls_version);
    if (v < 0) {
        snprintf(err, errlen, "tls_version %s: not supported (tlsv1.2 or tlsv1.3)", cfg->tls_version);
        return -EINVAL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, v))
        return ctx_fail(err, errlen, "tls_version", NULL);
    if (set(cfg->max_version)) {
        int hi = min_version(cfg->max_version);
        if (hi < 0 || hi < v) {
            snprintf(err, errlen, "TLS version %s: not supported (tlsv1.2 or tlsv1.3, not below the minimum)",
                     cfg->max_version);
            return -EINVAL;
        }
        if (!SSL_CTX_set_max_proto_version(ctx, hi))
            return ctx_fail(err, errlen, "max TLS version", NULL);
    }
    /* no renegotiation (a DoS lever), no compression (CRIME); idle
     * connections give their record buffers back */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (set(cfg->ciphers) && !SSL_CTX_set_cipher_list(ctx, cfg->ciphers))
        return ctx_fail(err, errlen, "ciphers", NULL);
    if (set(cfg->ciphersuites) && !SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites))
        return ctx_fail(err, errlen, "ciphersuites", NULL);

    if (set(cfg->certfile) != set(cfg->keyfile)) {
        snprintf(err, errlen, "certfile and keyfile go together");
        return -EINVAL;
    }
    if (server && !set(cfg->certfile)) {
        snprintf(err, errlen, "a TLS listener needs certfile and keyfile");
        return -EINVAL;
    }
    if (set(cfg->certfile)) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->certfile) != 1)
            return ctx_fail(err, errlen, "certfile", cfg->certfile);
        if (SSL_CTX_use_PrivateKey_file(ctx, cfg->keyfile, SSL_FILETYPE_PEM) != 1)
            return ctx_fail(err, errlen, "keyfile", cfg->keyfile);
        if (SSL_CTX_check_private_key(ctx) != 1)
            return ctx_fail(err, errlen, "keyfile does not match certfile", cfg->keyfile);
    }

    bool cas = set(cfg->cafile) || set(cfg->capath);
    if (cas && SSL_CTX_load_verify_locations(ctx, set(cfg->cafile) ? cfg->cafile : NULL,
                                             set(cfg->capath) ? cfg->capath : NULL) != 1)
        return ctx_fail(err, errlen, set(cfg->cafile) ? "cafile" : "capath",
                        set(cfg->cafile) ? cfg->cafile : cfg->capath);
    if (set(cfg->crlfile)) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lu = X509_STORE_add_lookup(st, X509_LOOKUP_file());
        if (!lu || X509_load_crl_file(lu, cfg->crlfile, X509_FILETYPE_PEM) <= 0)
            return ctx_fail(err, errlen, "crlfile", cfg->crlfile);
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
    }

    if (server) {
        if (cfg->require_certificate) {
            if (!cas) {
                snprintf(err, errlen, "require_certificate needs cafile or capath");
                return -EINVAL;
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
            if (set(cfg->cafile)) {
                STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->cafile);
                if (names)
                    SSL_CTX_set_client_CA_list(ctx, names);
            }
        } else
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        /* resumed sessions of verified clients need a context id */
        static const unsigned char sid[] = "starling";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
        /* Resumption is by stateless tickets only: no server-side cache to
         * fill (TLS 1.2 would add every session to it, about 1 KiB each) and
         * sweep every 255 handshakes. One TLS 1.3 ticket, not OpenSSL's two:
         * an MQTT client holds one connection, and each ticket costs the
         * handshake a session copy, an encryption and a record. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 1);
    } else if (cfg->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        if (!cas && SSL_CTX_set_default_verify_paths(ctx) != 1)
            return ctx_fail(err, errlen, "default CA paths", NULL);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return 0;
}

int tls_ctx_new(const struct tls_config *cfg, bool server, struct tls_ctx **out, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx)
        return ctx_fail(err, errlen, "SSL_CTX_new", NULL);
    int rc = ctx_configure(ctx, cfg, server, err, errlen);
    if (rc) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = (struct tls_ctx *)ctx;
    return 0;
}

void tls_ctx_free(struct tls_ctx *ctx) { SSL_CTX_free((SSL_CTX *)ctx); }

/* --- connections ---------------------------------------------------------- */

static bool is_ip(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* The BIO between OpenSSL and the caller's buffers, one for both directions:
 * it reads the bytes tls_conn_input was given (t->in, no copy into a memory
 * BIO) and appends records to t->out, which tls_conn_output hands over. An
 * exhausted input is "retry later", never EOF. Two memory BIOs held two
 * buffers, two locks and a copy of every byte each way. */
static int bio_write(BIO *b, const char *p, size_t n, size_t *done)
{
    struct tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (buf_append(&t->out, p, n) != 0)
        return 0;
    *done = n;
    return 1;
}

static int bio_read(BIO *b, char *p, size_t n, size_t *done)
{
    struct tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t->in_len) {
        BIO_set_retry_read(b);
        return 0;
    }
    size_t k = n < t->in_len ? n : t->in_len;
    memcpy(p, t->in, k);
    t->in += k;
    t->in_len -= k;
    *done = k;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    const struct tls_conn *t = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return (long)t->in_len;
    case BIO_CTRL_WPENDING:
        return (long)t->out.len;
    default:
        return 0;
    }
}

static BIO_METHOD *method;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

/* Made once per process and never changed after (a constant table built at
 * run time: OpenSSL 3 has no static BIO_METHOD). */
static void method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "starling");
    if (m && BIO_meth_set_write_ex(m, bio_write) && BIO_meth_set_read_ex(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl))
        method = m;
    else
        BIO_meth_free(m);
}

static BIO_METHOD *bio_method(void)
{
    pthread_once(&method_once, method_make);
    return method;
}

int tls_conn_init(struct tls_conn *t, struct tls_ctx *ctx, const char *server_name)
{
    memset(t, 0, sizeof(*t));
    ERR_clear_error();
    SSL *ssl = SSL_new((SSL_CTX *)ctx); /* takes a reference on the context */
    if (!ssl)
        return -ENOMEM;
    BIO_METHOD *m = bio_method();
    BIO *bio = m ? BIO_new(m) : NULL;
    if (!bio) {
        SSL_free(ssl);
        return -ENOMEM;
    }
    BIO_set_data(bio, t);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio); /* one reference for both directions */
    t->ssl = ssl;
    t->server = SSL_is_server(ssl);
    if (t->server) {
        SSL_set_accept_state(ssl);
        return 0;
    }
    SSL_set_connect_state(ssl);
    if (set(server_name)) {
        int ok;
        if (is_ip(server_name))
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name);
        else
            ok = SSL_set_tlsext_host_name(ssl, server_name) && SSL_set1_host(ssl, server_name);
        if (!ok) {
            tls_conn_free(t);
            return -ENOMEM;
        }
    }
    return 0;
}

void tls_conn_free(struct tls_conn *t)
{
    if (t->ssl)
        SSL_free(t->ssl); /* frees the BIOs too */
    t->ssl = NULL;
    buf_free(&t->early);
    buf_free(&t->out);
}

/* Records why the connection failed and returns -EPROTO. */
static int conn_fail(struct tls_conn *t, int sslerr)
{
    SSL *ssl = t->ssl;
    long vr = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_error();
    if (vr != X509_V_OK && (!e || ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED))
        snprintf(t->why, sizeof(t->why), "certificate verify failed: %s", X509_verify_cert_error_string(vr));
    else if (e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(t->why, sizeof(t->why), "%s", r ? r : "TLS error");
    } else if (sslerr == SSL_ERROR_SYSCALL)
        snprintf(t->why, sizeof(t->why), "unexpected end of the TLS stream");
    else
        snprintf(t->why, sizeof(t->why), "TLS error %d", sslerr);
    ERR_clear_error();
    return -EPROTO;
}

static int write_now(struct tls_conn *t, const uint8_t *p, size_t n)
{
    while (n) {
        int chunk = n > INT32_MAX ? INT32_MAX : (int)n;
        int r = SSL_write(t->ssl, p, chunk);
        if (r <= 0)
            return conn_fail(t, SSL_get_error(t->ssl, r));
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int handshake(struct tls_conn *t)
{
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->established = true;
        if (t->early.len) {
            int rc = write_now(t, t->early.data, t->early.len);
            buf_free(&t->early);
            return rc;
        }
        buf_free(&t->early);
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    return conn_fail(t, e);
}

int tls_conn_connect(struct tls_conn *t)
{
    ERR_clear_error();
    return handshake(t);
}

static int input(struct tls_conn *t, struct buf *plain);

int tls_conn_input(struct tls_conn *t, const uint8_t *in, size_t n, struct buf *plain)
{
    ERR_clear_error();
    t->in = in; /* borrowed for this call: read by bio_read, all of it */
    t->in_len = n;
    int rc = input(t, plain);
    t->in = NULL;
    t->in_len = 0; /* what a failure or a close_notify left is not read */
    return rc;
}

static int input(struct tls_conn *t, struct buf *plain)
{
    if (!t->established) {
        int rc = handshake(t);
        if (rc || !t->established)
            return rc;
    }
    uint8_t chunk[TLS_READ_STEP];
    while (!t->peer_closed) {
        /* Straight into plain when it has room for a record; else through
         * chunk, so that plain grows by what arrived rather than by a
         * record's worth: a connection that keeps plain between reads (the
         * listeners' read buffer) then holds bytes, not 16 KiB, once idle. */
        size_t room = buf_room(plain);
        bool direct = room >= TLS_READ_STEP;
        int r = SSL_read(t->ssl, direct ? buf_tail(plain) : chunk,
                         direct ? (room > INT32_MAX ? INT32_MAX : (int)room) : (int)sizeof(chunk));
        if (r > 0) {
            if (direct)
                plain->len += (size_t)r;
            else if (buf_append(plain, chunk, (size_t)r) != 0)
                return -ENOMEM;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            t->peer_closed = true;
            break;
        }
        return conn_fail(t, e);
    }
    return 0;
}

int tls_conn_write(struct tls_conn *t, const uint8_t *p, size_t n)
{
    if (!t->established)
        return buf_append(&t->early, p, n);
    ERR_clear_error();
    return write_now(t, p, n);
}

size_t tls_conn_pending(const struct tls_conn *t) { return t->out.len; }

int tls_conn_output(struct tls_conn *t, struct buf *wire)
{
    if (!t->out.len)
        return 0;
    if (!wire->len) {
        /* the records change hands: no copy, and the engine keeps no
         * buffer between writes (an idle connection holds none) */
        buf_free(wire);
        *wire = t->out;
        buf_init(&t->out);
        return 0;
    }
    if (buf_append(wire, t->out.data, t->out.len) != 0)
        return -ENOMEM;
    t->out.len = 0;
    buf_shrink(&t->out, TLS_OUT_KEEP);
    return 0;
}

void tls_conn_shutdown(struct tls_conn *t)
{
    if (t->ssl && t->established) {
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
}

static int copy_out(const unsigned char *s, int len, char *out, size_t outlen)
{
    if (len < 0)
        return -ENOENT;
    if ((size_t)len >= outlen)
        return -ENOSPC;
    memcpy(out, s, (size_t)len);
    out[len] = '\0';
    if (strlen(out) != (size_t)len)
        return -ENOENT; /* an embedded NUL: not a name we can use */
    return 0;
}

int tls_conn_identity(const struct tls_conn *t, char *out, size_t outlen)
{
    if (!t->ssl || !t->established)
        return -ENOENT;
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    if (!x || SSL_get_verify_result(t->ssl) != X509_V_OK)
        return -ENOENT;
    X509_NAME *subject = X509_get_subject_name(x);
    int i = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
    if (i >= 0) {
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
        int rc = copy_out(utf8, len, out, outlen);
        OPENSSL_free(utf8);
        if (rc != -ENOENT)
            return rc;
    }
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = -ENOENT;
    for (int k = 0; names && k < sk_GENERAL_NAME_num(names) && rc == -ENOENT; k++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, k);
        if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI)
            rc = copy_out(ASN1_STRING_get0_data(g->d.ia5), ASN1_STRING_length(g->d.ia5), out, outlen);
    }
    GENERAL_NAMES_free(names);
    return rc;
}

void tls_conn_describe(const struct tls_conn *t, char *out, size_t outlen)
{
    if (!t->ssl || !t->established) {
        snprintf(out, outlen, "TLS (handshake not finished)");
        return;
    }
    snprintf(out, outlen, "%s %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
}
