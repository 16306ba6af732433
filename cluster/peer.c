/* peer: the cluster port. Every connection between nodes starts with a mutual
 * challenge-response on the shared cluster secret; only an authenticated
 * stream reaches libraft (channel RAFT) or the proposal forwarder (channel
 * FORWARD). This file is also the raft_uv_transport libraft dials through.
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
 * Handshake messages are a few hundred bytes on a fresh socket: they are sent
 * with uv_try_write, and a short write fails the handshake. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "internal.h"

#define PEER_MAGIC "STRL"
#define PEER_VERSION 1
#define PEER_HS_TIMEOUT_MS 5000
#define HELLO_A_LEN 24
#define HELLO_D_FIXED 64
#define OK_LEN 32
#define MAX_ADDR 255

enum hs_step { HS_RESOLVE, HS_CONNECT, HS_HELLO_A, HS_HELLO_D, HS_ADDR, HS_OK, HS_DONE };

struct peer_hs {
    struct list link;         /* in c->handshakes until finished */
    struct cluster *c;
    uv_tcp_t *tcp;            /* raft_malloc'd: passed on to its next owner */
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    int refs;                 /* timer, tcp, pending getaddrinfo/connect */
    bool dialer;
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

static void hs_unref(struct peer_hs *hs)
{
    if (--hs->refs == 0) {
        struct cluster *c = hs->c;
        free(hs);
        cluster__handle_closed(c);
    }
}

static void on_timer_closed(uv_handle_t *h) { hs_unref(h->data); }

static void on_tcp_closed(uv_handle_t *h)
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
    uv_close((uv_handle_t *)&hs->timer, on_timer_closed);
    uv_stream_t *stream = NULL;
    if (hs->tcp) {
        uv_read_stop((uv_stream_t *)hs->tcp);
        if (status == 0 && hs->step == HS_DONE) {
            stream = (uv_stream_t *)hs->tcp;
            stream->data = NULL;
            hs->tcp = NULL;
            hs->refs--; /* the tcp handle is no longer ours */
        } else {
            uv_close((uv_handle_t *)hs->tcp, on_tcp_closed);
            hs->tcp = NULL;
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
    /* the refs taken for the tcp and the timer drop in their close callbacks */
    hs_unref(hs); /* the handshake's own reference */
}

static void on_hs_timeout(uv_timer_t *t)
{
    struct peer_hs *hs = t->data;
    CLOG(hs->c, CLUSTER_LOG_WARN, "cluster: peer handshake with %s timed out",
         hs->dialer ? hs->host : (hs->peer_addr[0] ? hs->peer_addr : "an incoming peer"));
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
    int n = uv_try_write((uv_stream_t *)hs->tcp, &b, 1);
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
    char where[64] = "?";
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (hs->tcp && uv_tcp_getpeername(hs->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, where, sizeof(where));
        else
            uv_ip6_name((struct sockaddr_in6 *)&ss, where, sizeof(where));
    }
    CLOG(hs->c, CLUSTER_LOG_WARN, "cluster: peer rejected (%s%s%s): %s", where, hs->dialer ? " " : "",
         hs->dialer ? hs->host : "", why);
    hs_finish(hs, UV_EACCES);
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
    hs->tcp->data = hs;
    return uv_read_start((uv_stream_t *)hs->tcp, on_alloc, on_read);
}

/* --- accepting ------------------------------------------------------------------ */

static void on_peer_connection(uv_stream_t *server, int status)
{
    struct cluster *c = server->data;
    if (status < 0 || c->closing)
        return;
    struct peer_hs *hs = hs_new(c, false);
    if (!hs)
        return;
    hs->tcp = raft_malloc(sizeof(*hs->tcp));
    if (!hs->tcp) {
        hs_finish(hs, UV_ENOMEM);
        return;
    }
    uv_tcp_init(c->loop, hs->tcp);
    hs->tcp->data = hs;
    hs->refs++;
    if (uv_accept(server, (uv_stream_t *)hs->tcp) != 0) {
        hs_finish(hs, UV_ECONNABORTED);
        return;
    }
    uv_tcp_nodelay(hs->tcp, 1);
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
    uv_tcp_init(c->loop, &c->listener);
    c->listener.data = c;
    c->listening = true;
    c->open_handles++;
    rc = uv_tcp_bind(&c->listener, (const struct sockaddr *)&ss, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&c->listener, 128, on_peer_connection);
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
        uv_tcp_nodelay(hs->tcp, 1);
        expect(hs, HS_HELLO_A, HELLO_A_LEN);
        if (start_reading(hs) != 0)
            hs_finish(hs, UV_EPIPE);
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
    } else if (!hs->finished && !(hs->tcp = raft_malloc(sizeof(*hs->tcp)))) {
        hs_finish(hs, UV_ENOMEM);
    } else if (!hs->finished) {
        uv_tcp_init(c->loop, hs->tcp);
        hs->tcp->data = hs;
        hs->refs++;
        hs->step = HS_CONNECT;
        hs->connect.data = hs;
        int rc = bind_source(c, hs->tcp, res->ai_addr->sa_family);
        if (rc == 0)
            rc = uv_tcp_connect(&hs->connect, hs->tcp, res->ai_addr, on_connected);
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
        uv_close((uv_handle_t *)&c->listener, cluster__on_handle_closed);
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
