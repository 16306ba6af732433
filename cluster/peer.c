/* peer: the cluster port. With cluster_certfile set, every connection between
 * nodes is TLS with certificates on both sides (tunnel.c) and what follows
 * runs inside it; then comes a mutual challenge-response on the shared
 * cluster secret (an extra check with TLS, where the secret may be empty;
 * the only one on plaintext links), which also says which node dials and for
 * what. Only a stream past both reaches libraft (channel RAFT), the proposal
 * forwarder (channel FORWARD) or the data links (channel DATA). This file is
 * also the raft_uv_transport libraft dials through.
 *
 * Handshake (all integers little-endian):
 *   acceptor -> dialer  HELLO_A  "STRL" u8 version u8[3] 0  nonce_a[16]          (24 bytes)
 *   dialer -> acceptor  HELLO_D  "STRL" u8 version u8 channel u16 addr_len
 *                                u64 node id  nonce_d[16]  mac_d[32]  addr      (64 + addr_len)
 *                       mac_d = HMAC(secret, "dial" nonce_a nonce_d channel id addr)
 *   acceptor -> dialer  OK       mac_a[32] = HMAC(secret, "acpt" nonce_d nonce_a)
 * A wrong MAC, magic or version closes the connection before any byte reaches
 * the Raft decoder, and is logged as "cluster: peer rejected". Reads ask for
 * exactly the bytes the current step needs, so nothing of the stream that
 * follows is consumed here. Each step must complete within PEER_HS_TIMEOUT_MS.
 * The TLS handshake counts as one more step. Handshake messages are a few
 * hundred bytes on a fresh socket (or socketpair): they are sent with
 * uv_try_write, and a short write fails the handshake. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "internal.h"
#include "tls.h"

#define PEER_MAGIC "STRL"
#define PEER_VERSION 1
#define PEER_HS_TIMEOUT_MS 5000
#define HELLO_A_LEN 24
#define HELLO_D_FIXED 64
#define OK_LEN 32
#define MAX_ADDR 255
/* Unauthenticated incoming connections at once: each holds a descriptor for
 * up to PEER_HS_TIMEOUT_MS, so without a bound anyone reaching the cluster
 * port could take every descriptor the Raft log and the store need. Members
 * open three links each (raft, forward, data), so this leaves room for a
 * cluster of ten nodes redialling at once. */
#define PEER_HS_MAX_INCOMING 32
#define PEER_PAUSE_REPORT_MS 5000
#define PEER_REJECT_REPORT_MS 5000

enum hs_step { HS_RESOLVE, HS_CONNECT, HS_TLS, HS_HELLO_A, HS_HELLO_D, HS_ADDR, HS_OK, HS_DONE };

struct peer_hs {
    struct list link;         /* in c->handshakes until finished */
    struct cluster *c;
    uv_stream_t *stream;      /* raft_malloc'd: the TCP socket, or with TLS the
                                 plaintext end of the tunnel; passed on to its next owner */
    struct tunnel *tunnel;    /* with TLS, until the handshake ends */
    char where[192];          /* the peer's address for the log */
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    int refs;                 /* timer, tcp, pending getaddrinfo/connect */
    bool dialer;
    bool incoming;            /* counted in c->hs_incoming */
    bool finished;
    int step;
    uint8_t channel;
    uint64_t node_id;
    uint8_t nonce_a[16], nonce_d[16];
    uint8_t buf[HELLO_D_FIXED + MAX_ADDR + 1];
    size_t have, need;
    char host[128], port[8];
    char peer_addr[MAX_ADDR + 1];   /* address the dialer claims (acceptor side) */
    peer_dial_cb cb;
    void *arg;
};

/* --- the MAC (OpenSSL) and the TLS contexts ------------------------------------ */

void cluster__hmac_sha256(const void *key, size_t key_len, const struct iovec *parts, size_t nparts,
                          uint8_t out[32])
{
    /* HMAC pads its key with zeros: the empty key (no cluster_secret with
     * TLS) is the one zero byte, which OpenSSL takes where it refuses "" */
    static const uint8_t zero = 0;
    if (key_len == 0)
        key = &zero, key_len = 1;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0), OSSL_PARAM_END};
    bool ok = ctx && EVP_MAC_init(ctx, key, key_len, params) == 1;
    for (size_t i = 0; ok && i < nparts; i++)
        ok = EVP_MAC_update(ctx, parts[i].iov_base, parts[i].iov_len) == 1;
    size_t len = 0;
    ok = ok && EVP_MAC_final(ctx, out, &len, 32) == 1 && len == 32;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    if (!ok && getrandom(out, 32, 0) != 32)
        memset(out, 0xa5, 32); /* never a MAC a peer could send: the comparison fails */
}

bool cluster__mac_equal(const uint8_t a[32], const uint8_t b[32]) { return CRYPTO_memcmp(a, b, 32) == 0; }

static bool set(const char *s) { return s && *s; }

/* Both contexts of the peer links from the files cfg names: 0, or a negative
 * error with "cluster_<key> <file>: <reason>" in err and nothing built. */
static int peer_tls_build(const struct cluster_config *cfg, struct tls_ctx **server, struct tls_ctx **client,
                          char *err, size_t errlen)
{
    /* both sides verify the other against the cluster's own CA; no host
     * names: a node is whoever holds a certificate of that CA */
    struct tls_config tc = {.certfile = cfg->certfile, .keyfile = cfg->keyfile, .cafile = cfg->cafile,
                            .crlfile = cfg->crlfile, .require_certificate = true};
    char why[400];
    int rc = tls_ctx_new(&tc, true, server, why, sizeof(why));
    if (rc == 0 && (rc = tls_ctx_new(&tc, false, client, why, sizeof(why))) != 0) {
        tls_ctx_free(*server);
        *server = NULL;
    }
    if (rc)
        snprintf(err, errlen, "cluster_%s", why); /* "cluster_certfile /x: No such file or directory" */
    return rc;
}

int cluster__peer_tls_setup(struct cluster *c, char *err, size_t errlen)
{
    const struct cluster_config *cfg = &c->cfg;
    if (!set(cfg->certfile) && !set(cfg->keyfile) && !set(cfg->cafile) && !set(cfg->crlfile))
        return 0;
    if (!set(cfg->certfile) || !set(cfg->keyfile) || !set(cfg->cafile)) {
        snprintf(err, errlen, "TLS peer links need cluster_certfile, cluster_keyfile and cluster_cafile (%s missing)",
                 !set(cfg->certfile) ? "cluster_certfile" : !set(cfg->keyfile) ? "cluster_keyfile" : "cluster_cafile");
        return -EINVAL;
    }
    int rc = peer_tls_build(cfg, &c->tls_server, &c->tls_client, err, errlen);
    if (rc)
        return rc;
    if (!(c->tunnel_rbuf = malloc(CLUSTER_TUNNEL_READ))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* Tunnels running on the old contexts hold a reference to them (their SSL
 * objects): they go on undisturbed, and the old contexts go with the last. */
int cluster_tls_reload(struct cluster *c, char *err, size_t errlen)
{
    if (!c->tls_server)
        return 0;
    struct tls_ctx *server, *client;
    int rc = peer_tls_build(&c->cfg, &server, &client, err, errlen);
    if (rc)
        return rc;
    tls_ctx_free(c->tls_server);
    tls_ctx_free(c->tls_client);
    c->tls_server = server;
    c->tls_client = client;
    return 1;
}

static void hs_unref(struct peer_hs *hs)
{
    if (--hs->refs == 0) {
        struct cluster *c = hs->c;
        free(hs);
        cluster__handle_closed(c);
    }
}

static void on_timer_closed(uv_handle_t *h) { hs_unref(h->data); }

static void on_stream_closed(uv_handle_t *h)
{
    struct peer_hs *hs = h->data;
    raft_free(h);
    hs_unref(hs);
}

static void close_free(uv_handle_t *h) { raft_free(h); }

/* Ends the handshake: on success the stream goes to its owner, otherwise it is
 * closed. The dial callback (dialer side) runs once either way. */
static void hs_finish(struct peer_hs *hs, int status)
{
    if (hs->finished)
        return;
    hs->finished = true;
    list_remove(&hs->link);
    if (hs->incoming)
        hs->c->hs_incoming--;
    uv_close((uv_handle_t *)&hs->timer, on_timer_closed);
    if (hs->tunnel) {
        cluster__tunnel_detach(hs->tunnel); /* closes it unless its handshake finished */
        hs->tunnel = NULL;
    }
    uv_stream_t *stream = NULL;
    if (hs->stream) {
        uv_read_stop(hs->stream);
        if (status == 0 && hs->step == HS_DONE) {
            stream = hs->stream;
            stream->data = NULL;
            hs->stream = NULL;
            hs->refs--; /* the stream is no longer ours */
        } else {
            uv_close((uv_handle_t *)hs->stream, on_stream_closed);
            hs->stream = NULL;
        }
    }
    struct cluster *c = hs->c;
    if (hs->dialer) {
        hs->cb(hs->arg, stream, status ? status : (stream ? 0 : UV_ECONNABORTED));
    } else if (stream) {
        if (hs->channel == PEER_CH_RAFT && c->raft_accept && !c->closing) {
            c->raft_accept(&c->transport, hs->node_id, hs->peer_addr, stream);
        } else if (hs->channel == PEER_CH_FORWARD && !c->closing) {
            cluster__forward_accept(c, (uint32_t)hs->node_id, stream);
        } else if (hs->channel == PEER_CH_DATA && !c->closing) {
            cluster__link_accept(c, (uint32_t)hs->node_id, stream);
        } else {
            uv_close((uv_handle_t *)stream, close_free);
        }
    }
    /* the refs taken for the stream and the timer drop in their close callbacks */
    hs_unref(hs); /* the handshake's own reference */
}

/* "cluster: peer rejected" lines, each reason at most once per
 * PEER_REJECT_REPORT_MS, saying how many were left out since its last line;
 * a reason not among the last few remembered is logged at once. */
static void log_rejected(struct peer_hs *hs, const char *why)
{
    struct cluster *c = hs->c;
    uint64_t now = uv_now(c->loop);
    size_t n = sizeof(c->rejected) / sizeof(c->rejected[0]), slot = 0;
    for (size_t i = 0; i < n; i++) {
        if (c->rejected[i].logged_ms && strncmp(c->rejected[i].why, why, sizeof(c->rejected[i].why) - 1) == 0) {
            slot = i;
            goto found;
        }
        if (c->rejected[i].logged_ms < c->rejected[slot].logged_ms)
            slot = i; /* the oldest goes when the reason is new */
    }
    snprintf(c->rejected[slot].why, sizeof(c->rejected[slot].why), "%s", why);
    c->rejected[slot].logged_ms = 0;
    c->rejected[slot].quiet = 0;
found:
    if (c->rejected[slot].logged_ms && now - c->rejected[slot].logged_ms < PEER_REJECT_REPORT_MS) {
        c->rejected[slot].quiet++;
        return;
    }
    if (c->rejected[slot].quiet)
        CLOG(c, CLUSTER_LOG_WARN, "cluster: peer rejected: %s: %s (and %llu more for this reason since its last line)",
             hs->where, why, (unsigned long long)c->rejected[slot].quiet);
    else
        CLOG(c, CLUSTER_LOG_WARN, "cluster: peer rejected: %s: %s", hs->where, why);
    c->rejected[slot].quiet = 0;
    c->rejected[slot].logged_ms = now ? now : 1;
}

static void on_hs_timeout(uv_timer_t *t)
{
    struct peer_hs *hs = t->data;
    if (hs->step == HS_TLS && !hs->dialer) {
        /* a plaintext peer (an old node, a node without cluster_certfile)
         * waits for our hello and we for its TLS: refused, and said so */
        char why[64];
        snprintf(why, sizeof(why), "no TLS handshake within %d ms (plaintext peer?)", PEER_HS_TIMEOUT_MS);
        log_rejected(hs, why);
    } else {
        CLOG(hs->c, CLUSTER_LOG_WARN, "cluster: peer handshake with %s timed out",
             hs->dialer ? hs->host : (hs->peer_addr[0] ? hs->peer_addr : hs->where));
    }
    hs_finish(hs, UV_ETIMEDOUT);
}

static struct peer_hs *hs_new(struct cluster *c, bool dialer)
{
    struct peer_hs *hs = calloc(1, sizeof(*hs));
    if (!hs)
        return NULL;
    hs->c = c;
    hs->dialer = dialer;
    hs->refs = 1; /* released by hs_finish */
    uv_timer_init(c->loop, &hs->timer);
    hs->timer.data = hs;
    hs->refs++;
    c->open_handles++; /* until hs is freed */
    uv_timer_start(&hs->timer, on_hs_timeout, PEER_HS_TIMEOUT_MS, 0);
    list_push_front(&c->handshakes, &hs->link);
    return hs;
}

static int send_all(struct peer_hs *hs, const void *p, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    int n = uv_try_write(hs->stream, &b, 1);
    return n == (int)len ? 0 : (n < 0 ? n : UV_EAGAIN);
}

static void mac_dial(const struct cluster *c, const struct peer_hs *hs, const char *addr, size_t addr_len,
                     uint8_t out[32])
{
    uint8_t id[8];
    bytes_put_u64le(id, hs->node_id);
    struct iovec parts[] = {
        {"dial", 4}, {(void *)hs->nonce_a, 16}, {(void *)hs->nonce_d, 16},
        {(void *)&hs->channel, 1}, {id, 8}, {(void *)addr, addr_len},
    };
    cluster__hmac_sha256(c->cfg.secret, strlen(c->cfg.secret), parts, 6, out);
}

static void mac_accept(const struct cluster *c, const struct peer_hs *hs, uint8_t out[32])
{
    struct iovec parts[] = {{"acpt", 4}, {(void *)hs->nonce_d, 16}, {(void *)hs->nonce_a, 16}};
    cluster__hmac_sha256(c->cfg.secret, strlen(c->cfg.secret), parts, 3, out);
}

static void expect(struct peer_hs *hs, int step, size_t n)
{
    hs->step = step;
    hs->have = 0;
    hs->need = n;
    uv_timer_start(&hs->timer, on_hs_timeout, PEER_HS_TIMEOUT_MS, 0);
}

static void rejected(struct peer_hs *hs, const char *why)
{
    log_rejected(hs, why);
    hs_finish(hs, UV_EACCES);
}

/* Names the peer of tcp (ip:port) in hs->where for the log. */
static void name_peer(struct peer_hs *hs, uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    if (hs->dialer)
        snprintf(hs->where, sizeof(hs->where), "%s:%s", hs->host, hs->port);
    else
        snprintf(hs->where, sizeof(hs->where), strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
}

/* Dialer: the acceptor's challenge came; answers with HELLO_D. */
static void hs_hello_a(struct peer_hs *hs)
{
    struct cluster *c = hs->c;
    if (memcmp(hs->buf, PEER_MAGIC, 4) != 0 || hs->buf[4] != PEER_VERSION) {
        rejected(hs, "not a Starling cluster port (or another version)");
        return;
    }
    memcpy(hs->nonce_a, hs->buf + 8, 16);
    uint8_t msg[HELLO_D_FIXED + sizeof(c->address)];
    size_t alen = strlen(c->address);
    uint8_t *p = bytes_put_mem(msg, PEER_MAGIC, 4);
    p = bytes_put_u8(p, PEER_VERSION);
    p = bytes_put_u8(p, hs->channel);
    p = bytes_put_u16le(p, (uint16_t)alen);
    p = bytes_put_u64le(p, hs->node_id);
    p = bytes_put_mem(p, hs->nonce_d, 16);
    mac_dial(c, hs, c->address, alen, p);
    memcpy(msg + HELLO_D_FIXED, c->address, alen);
    if (send_all(hs, msg, HELLO_D_FIXED + alen) != 0) {
        hs_finish(hs, UV_EPIPE);
        return;
    }
    expect(hs, HS_OK, OK_LEN);
}

/* Acceptor: the fixed part of HELLO_D is in hs->buf. Takes its fields and
 * sets need to the whole message (the address follows); NULL, or why it is
 * refused. */
static const char *hello_d_read(struct peer_hs *hs)
{
    if (memcmp(hs->buf, PEER_MAGIC, 4) != 0 || hs->buf[4] != PEER_VERSION)
        return "bad handshake (not a Starling node, or another version)";
    hs->channel = hs->buf[5];
    size_t alen = bytes_get_u16le(hs->buf + 6);
    hs->node_id = bytes_get_u64le(hs->buf + 8);
    memcpy(hs->nonce_d, hs->buf + 16, 16);
    if ((hs->channel != PEER_CH_RAFT && hs->channel != PEER_CH_FORWARD && hs->channel != PEER_CH_DATA) ||
        alen == 0 || alen > MAX_ADDR || hs->node_id == 0 || hs->node_id > UINT32_MAX)
        return "bad handshake";
    hs->need = HELLO_D_FIXED + alen;
    return NULL;
}

/* Acceptor: the whole HELLO_D is in hs->buf. Checks the dialer's MAC and
 * takes its address; NULL, or why it is refused. */
static const char *hello_d_auth(struct peer_hs *hs)
{
    size_t alen = hs->need - HELLO_D_FIXED;
    uint8_t mac[32];
    mac_dial(hs->c, hs, (const char *)hs->buf + HELLO_D_FIXED, alen, mac);
    if (!cluster__mac_equal(mac, hs->buf + 32))
        return "authentication failed (wrong cluster_secret?)";
    memcpy(hs->peer_addr, hs->buf + HELLO_D_FIXED, alen);
    hs->peer_addr[alen] = '\0';
    return NULL;
}

/* Acceptor: the fixed part of the dialer's answer came; reads its address next. */
static void hs_hello_d(struct peer_hs *hs)
{
    const char *why = hello_d_read(hs);
    if (why) {
        rejected(hs, why);
        return;
    }
    /* keep the fixed part (its MAC) and read the address after it */
    hs->step = HS_ADDR;
}

/* Acceptor: the whole answer came; checks the dialer's MAC and proves ours. */
static void hs_addr(struct peer_hs *hs)
{
    struct cluster *c = hs->c;
    const char *why = hello_d_auth(hs);
    if (why) {
        rejected(hs, why);
        return;
    }
    uint8_t ok[OK_LEN];
    mac_accept(c, hs, ok);
    if (send_all(hs, ok, OK_LEN) != 0) {
        hs_finish(hs, UV_EPIPE);
        return;
    }
    hs->step = HS_DONE;
    CLOG(c, CLUSTER_LOG_DEBUG, "cluster: node %llu (%s) connected (channel %u)", (unsigned long long)hs->node_id,
         hs->peer_addr, hs->channel);
    hs_finish(hs, 0);
}

/* Dialer: the acceptor's proof came. */
static void hs_ok(struct peer_hs *hs)
{
    uint8_t mac[32];
    mac_accept(hs->c, hs, mac);
    if (!cluster__mac_equal(mac, hs->buf)) {
        rejected(hs, "authentication failed (wrong cluster_secret?)");
        return;
    }
    hs->step = HS_DONE;
    hs_finish(hs, 0);
}

/* A step's bytes are complete in hs->buf. */
static void hs_step(struct peer_hs *hs)
{
    switch (hs->step) {
    case HS_HELLO_A:
        hs_hello_a(hs);
        return;
    case HS_HELLO_D:
        hs_hello_d(hs);
        return;
    case HS_ADDR:
        hs_addr(hs);
        return;
    case HS_OK:
        hs_ok(hs);
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct peer_hs *hs = h->data;
    (void)suggested;
    buf->base = (char *)hs->buf + hs->have;
    buf->len = hs->need - hs->have;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct peer_hs *hs = s->data;
    (void)buf;
    if (n < 0) {
        if (hs->dialer && hs->step == HS_OK)
            rejected(hs, "closed by the peer during the handshake (wrong cluster_secret?)");
        else if (hs->dialer && hs->step == HS_HELLO_A && hs->c->tls_server)
            rejected(hs, "closed by the peer after TLS (our certificate refused?)");
        else
            hs_finish(hs, (int)n);
        return;
    }
    hs->have += (size_t)n;
    while (!hs->finished && hs->have == hs->need) {
        size_t need = hs->need;
        hs_step(hs);
        if (hs->finished || hs->need == need)
            break; /* HS_ADDR keeps what it has and waits for the rest */
    }
}

static int start_reading(struct peer_hs *hs)
{
    hs->stream->data = hs;
    return uv_read_start(hs->stream, on_alloc, on_read);
}

/* The first step of the handshake proper: the acceptor sends its challenge,
 * the dialer waits for it. */
static void hs_begin(struct peer_hs *hs)
{
    if (hs->dialer) {
        expect(hs, HS_HELLO_A, HELLO_A_LEN);
        if (start_reading(hs) != 0)
            hs_finish(hs, UV_EPIPE);
        return;
    }
    uint8_t hello[HELLO_A_LEN] = {0};
    memcpy(hello, PEER_MAGIC, 4);
    hello[4] = PEER_VERSION;
    if (getrandom(hs->nonce_a, 16, 0) != 16) {
        hs_finish(hs, UV_EIO);
        return;
    }
    memcpy(hello + 8, hs->nonce_a, 16);
    expect(hs, HS_HELLO_D, HELLO_D_FIXED);
    if (send_all(hs, hello, sizeof(hello)) != 0 || start_reading(hs) != 0)
        hs_finish(hs, UV_EPIPE);
}

/* From the tunnel: TLS is up (inner is the plaintext stream), or the link
 * failed (why). */
static void on_tunnel(void *arg, uv_stream_t *inner, const char *why)
{
    struct peer_hs *hs = arg;
    if (hs->finished) {
        if (inner)
            uv_close((uv_handle_t *)inner, cluster__close_free);
        return;
    }
    if (!inner) {
        hs->tunnel = NULL; /* it is closing */
        rejected(hs, why);
        return;
    }
    hs->stream = inner;
    inner->data = hs;
    hs->refs++; /* released in on_stream_closed, or when the stream is handed on */
    hs_begin(hs);
}

/* The TCP connection is up: the handshake starts on it, inside TLS when the
 * cluster has certificates. */
static void hs_connected(struct peer_hs *hs)
{
    uv_tcp_t *tcp = (uv_tcp_t *)hs->stream;
    uv_tcp_nodelay(tcp, 1);
    name_peer(hs, tcp);
    struct cluster *c = hs->c;
    if (!c->tls_server) {
        hs_begin(hs);
        return;
    }
    expect(hs, HS_TLS, 0); /* the TLS handshake gets a step's time of its own */
    hs->stream = NULL;
    hs->refs--; /* the tcp handle goes to the tunnel */
    tcp->data = NULL;
    int rc = 0;
    hs->tunnel = cluster__tunnel_start(c, tcp, !hs->dialer, hs->where, on_tunnel, hs, &rc);
    if (!hs->tunnel)
        hs_finish(hs, rc ? rc : UV_ENOMEM);
}

/* --- accepting ------------------------------------------------------------------ */

/* Accepting pauses (common/acceptor.h) rather than spinning or resetting the
 * connections in the backlog when descriptors run out: peers that dial
 * meanwhile get their handshake late, not refused, and links already up keep
 * working. One warning per PEER_PAUSE_REPORT_MS says so. */
static void on_accept_paused(struct acceptor *a, int err, const char *why)
{
    struct cluster *c = a->data;
    uint64_t now = uv_now(c->loop);
    if (err == 0 && c->hs_incoming >= PEER_HS_MAX_INCOMING) {
        CLOG(c, CLUSTER_LOG_DEBUG, "cluster: %u incoming handshakes in progress, pausing accepts", c->hs_incoming);
        return; /* (a flood of idle connections; each times out) */
    }
    c->accept_pauses++;
    if (c->accept_logged_ms && now - c->accept_logged_ms < PEER_PAUSE_REPORT_MS)
        return;
    if (err == EMFILE || err == ENFILE)
        CLOG(c, CLUSTER_LOG_WARN,
             "cluster: too many open files, pausing accepts on the cluster port (%llu pause(s) of %d ms%s); raise "
             "the limit (ulimit -n, LimitNOFILE=) or lower max_connections",
             (unsigned long long)c->accept_pauses, ACCEPTOR_RETRY_MS, c->accept_logged_ms ? " since the last report" : "");
    else
        CLOG(c, CLUSTER_LOG_WARN, "cluster: accept on the cluster port: %s, pausing accepts (%llu pause(s) of %d ms%s)",
             why, (unsigned long long)c->accept_pauses, ACCEPTOR_RETRY_MS,
             c->accept_logged_ms ? " since the last report" : "");
    c->accept_pauses = 0;
    c->accept_logged_ms = now;
}

static const char *accept_check(struct acceptor *a)
{
    struct cluster *c = a->data;
    return c->hs_incoming >= PEER_HS_MAX_INCOMING ? "too many handshakes in progress" : NULL;
}

static void on_peer_connection(struct acceptor *a, int fd)
{
    struct cluster *c = a->data;
    struct peer_hs *hs = c->closing ? NULL : hs_new(c, false);
    if (!hs) {
        close(fd);
        return;
    }
    hs->incoming = true;
    c->hs_incoming++;
    uv_tcp_t *tcp = raft_malloc(sizeof(*tcp));
    if (!tcp) {
        close(fd);
        hs_finish(hs, UV_ENOMEM);
        return;
    }
    uv_tcp_init(c->loop, tcp);
    tcp->data = hs;
    hs->stream = (uv_stream_t *)tcp;
    hs->refs++;
    if (uv_tcp_open(tcp, fd) != 0) {
        close(fd);
        hs_finish(hs, UV_ECONNABORTED);
        return;
    }
    hs_connected(hs);
}

static int split_hostport(const char *address, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon = strrchr(address, ':');
    if (!colon || colon == address || !colon[1])
        return -EINVAL;
    const char *h = address;
    size_t hl = (size_t)(colon - address);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hostlen || strlen(colon + 1) >= portlen)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static void on_listener_closed(struct acceptor *a) { cluster__handle_closed(a->data); }

int cluster__peer_listen(struct cluster *c, char *err, size_t errlen)
{
    char host[128], port[8];
    if (split_hostport(c->cfg.bind, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen, "cluster_bind %s: not HOST:PORT", c->cfg.bind);
        return -EINVAL;
    }
    struct sockaddr_storage ss;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)&ss)
                               : uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)&ss);
    if (rc) {
        snprintf(err, errlen, "cluster_bind %s: not an IP address and port", c->cfg.bind);
        return rc;
    }
    snprintf(c->listener.name, sizeof(c->listener.name), "cluster port %s", c->cfg.bind);
    c->listener.data = c;
    c->listener.check = accept_check;
    c->listener.take = on_peer_connection;
    c->listener.on_pause = on_accept_paused;
    c->listener.closed = on_listener_closed;
    rc = acceptor_open(&c->listener, c->loop, (const struct sockaddr *)&ss, 128);
    if (c->listener.fd >= 0) {
        c->listening = true;
        c->open_handles++; /* until on_listener_closed */
    }
    if (rc) {
        snprintf(err, errlen, "cluster port %s: %s", c->cfg.bind,
                 rc == UV_EADDRINUSE ? "address already in use" : uv_strerror(rc));
        return rc;
    }
    CLOG(c, CLUSTER_LOG_INFO, "cluster: listening on %s", c->cfg.bind);
    return 0;
}

/* --- dialing ------------------------------------------------------------------- */

static void on_connected(uv_connect_t *req, int status)
{
    struct peer_hs *hs = req->data;
    if (!hs->finished && status) {
        hs_finish(hs, status);
    } else if (!hs->finished) {
        hs_connected(hs);
    }
    hs_unref(hs); /* the connect request's reference */
}

/* Outgoing peer connections leave from the address the cluster port listens
 * on (unless that is a wildcard), so that peers, firewalls and a multi-homed
 * host see this node at the address its peers know it by. */
static int bind_source(struct cluster *c, uv_tcp_t *tcp, int family)
{
    char host[128], port[8];
    if (split_hostport(c->cfg.bind, host, sizeof(host), port, sizeof(port)) != 0)
        return 0;
    struct sockaddr_storage ss;
    if (family == AF_INET && uv_ip4_addr(host, 0, (struct sockaddr_in *)&ss) == 0) {
        if (((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY))
            return 0;
    } else if (family == AF_INET6 && uv_ip6_addr(host, 0, (struct sockaddr_in6 *)&ss) == 0) {
        if (memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr, &in6addr_any, sizeof(in6addr_any)) == 0)
            return 0;
    } else {
        return 0; /* another family than the bind address: let the kernel choose */
    }
    return uv_tcp_bind(tcp, (const struct sockaddr *)&ss, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct peer_hs *hs = req->data;
    struct cluster *c = hs->c;
    if (!hs->finished && status) {
        hs_finish(hs, status);
    } else if (!hs->finished && !(hs->stream = raft_malloc(sizeof(uv_tcp_t)))) {
        hs_finish(hs, UV_ENOMEM);
    } else if (!hs->finished) {
        uv_tcp_t *tcp = (uv_tcp_t *)hs->stream;
        uv_tcp_init(c->loop, tcp);
        tcp->data = hs;
        hs->refs++;
        hs->step = HS_CONNECT;
        hs->connect.data = hs;
        int rc = bind_source(c, tcp, res->ai_addr->sa_family);
        if (rc == 0)
            rc = uv_tcp_connect(&hs->connect, tcp, res->ai_addr, on_connected);
        if (rc)
            hs_finish(hs, rc);
        else
            hs->refs++; /* released by on_connected */
    }
    if (res)
        uv_freeaddrinfo(res);
    hs_unref(hs); /* the lookup's reference */
}

/* Abandons a dial that never started: no callback. */
static void hs_abandon(struct peer_hs *hs)
{
    hs->dialer = false;
    hs_finish(hs, UV_ECANCELED);
}

struct peer_hs *cluster__peer_dial(struct cluster *c, const char *address, uint8_t channel, peer_dial_cb cb,
                                   void *arg)
{
    if (c->closing)
        return NULL;
    struct peer_hs *hs = hs_new(c, true);
    if (!hs)
        return NULL;
    hs->channel = channel;
    hs->node_id = c->cfg.node_id;
    hs->cb = cb;
    hs->arg = arg;
    if (split_hostport(address, hs->host, sizeof(hs->host), hs->port, sizeof(hs->port)) != 0 ||
        getrandom(hs->nonce_d, 16, 0) != 16) {
        hs_abandon(hs);
        return NULL;
    }
    hs->step = HS_RESOLVE;
    hs->gai.data = hs;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (uv_getaddrinfo(c->loop, &hs->gai, on_resolved, hs->host, hs->port, &hints) != 0) {
        hs_abandon(hs);
        return NULL;
    }
    hs->refs++; /* released by on_resolved */
    return hs;
}

void cluster__peer_cancel(struct peer_hs *hs)
{
    if (hs->step == HS_RESOLVE)
        uv_cancel((uv_req_t *)&hs->gai);
    hs_finish(hs, UV_ECANCELED);
}

void cluster__peer_close_all(struct cluster *c)
{
    while (!list_empty(&c->handshakes))
        cluster__peer_cancel(list_entry(list_first(&c->handshakes), struct peer_hs, link));
    if (c->listening) {
        c->listening = false;
        acceptor_close(&c->listener);
    }
}

/* --- connections without a socket (the fuzzer's) ------------------------------------ */

int cluster__peer_feed(struct cluster *c, uint8_t channel, uint32_t node, const uint8_t *data, size_t len)
{
    if (c->closing)
        return -ESHUTDOWN;
    if (channel == 0) {
        /* the acceptor's handshake, its challenge nonce_a all zero (no
         * HELLO_A is sent: the dialer's answer is the start of data) */
        struct peer_hs *hs = calloc(1, sizeof(*hs));
        if (!hs)
            return -ENOMEM;
        hs->c = c;
        const char *why = NULL;
        int rc = -EAGAIN;
        if (len >= HELLO_D_FIXED) {
            memcpy(hs->buf, data, HELLO_D_FIXED);
            why = hello_d_read(hs);
            if (!why && len >= hs->need) {
                memcpy(hs->buf + HELLO_D_FIXED, data + HELLO_D_FIXED, hs->need - HELLO_D_FIXED);
                why = hello_d_auth(hs);
                rc = 0;
            }
        }
        if (why) {
            CLOG(c, CLUSTER_LOG_WARN, "cluster: peer rejected (no socket): %s", why);
            rc = -EACCES;
        }
        if (rc == 0) { /* authenticated: the rest is what it sends on its channel */
            channel = hs->channel;
            node = (uint32_t)hs->node_id;
            data += hs->need;
            len -= hs->need;
        }
        free(hs);
        if (rc)
            return rc;
    }
    struct frames *f;
    if (channel == PEER_CH_DATA)
        f = cluster__link_accept(c, node, NULL);
    else if (channel == PEER_CH_FORWARD)
        f = cluster__forward_accept(c, node, NULL);
    else
        return -EINVAL; /* libraft reads its channel itself: a socket is needed */
    if (!f)
        return -ENOMEM;
    f->refs++;
    cluster__frames_feed(f, data, len);
    cluster__frames_close(f, "closed by the peer");
    cluster__frames_unref(f);
    return 0;
}

/* --- the raft_uv_transport --------------------------------------------------------- */

static int tr_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    (void)t;
    (void)id;
    (void)address;
    return 0;
}

static int tr_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct cluster *c = container_of(t, struct cluster, transport); /* libraft owns t->data */
    c->raft_accept = cb;
    return 0;
}

static void tr_dialed(void *arg, uv_stream_t *stream, int status)
{
    struct raft_uv_connect *req = arg;
    req->cb(req, stream, status == 0 ? 0 : (status == UV_ECANCELED ? RAFT_CANCELED : RAFT_NOCONNECTION));
}

static int tr_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id, const char *address,
                      raft_uv_connect_cb cb)
{
    struct cluster *c = container_of(t, struct cluster, transport); /* libraft owns t->data */
    (void)id;
    req->cb = cb;
    if (!cluster__peer_dial(c, address, PEER_CH_RAFT, tr_dialed, req))
        return RAFT_NOCONNECTION;
    return 0;
}

static void tr_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct cluster *c = container_of(t, struct cluster, transport); /* libraft owns t->data */
    c->raft_accept = NULL;
    /* pending raft dials are cancelled by cluster__peer_close_all; their
     * callbacks run before raft's own close completes */
    list_foreach_safe(it, &c->handshakes) {
        struct peer_hs *hs = list_entry(it, struct peer_hs, link);
        if (hs->dialer && hs->channel == PEER_CH_RAFT)
            cluster__peer_cancel(hs);
    }
    cb(t);
}

void cluster__transport_setup(struct cluster *c)
{
    memset(&c->transport, 0, sizeof(c->transport));
    c->transport.version = 1;
    c->transport.data = c;
    c->transport.init = tr_init;
    c->transport.listen = tr_listen;
    c->transport.connect = tr_connect;
    c->transport.close = tr_close;
}
