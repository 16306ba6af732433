/* harness: a real broker on a private loop for the fuzz targets that speak to
 * it (see harness.h). Over loopback each input is one TCP connection, so the
 * bytes go through exactly the path a client's do: accept, conn.c's read
 * callback, framing, decoding, the handlers, commits of a one-node cluster,
 * writing and closing. Without a socket (harness_feed_peer, fuzz_admin's
 * broker__admin_feed) they start at the connection's parser, and the loop
 * turns once per input. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "bytes.h"
#include "internal.h"

/* cluster/internal.h: the handshake MAC (the broker's internal.h hides that file) */
void cluster__hmac_sha256(const void *key, size_t key_len, const struct iovec *parts, size_t nparts,
                          uint8_t out[32]);

#define HARNESS_SECRET "fuzz-secret"

static uv_loop_t loop;
static struct broker *b;
static char dir[64];
static int mqtt_port, admin_port, cluster_port;

struct broker *harness_broker(void) { return b; }
int harness_mqtt_port(void) { return mqtt_port; }
int harness_admin_port(void) { return admin_port; }
int harness_cluster_port(void) { return cluster_port; }

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("harness: free port");
        exit(1);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void on_wake(uv_timer_t *t) { (void)t; }

/* Runs the loop until pred() holds or timeout_ms passed; returns whether it held. */
static int run_until(int (*pred)(void *), void *arg, uint64_t timeout_ms)
{
    if (pred(arg))
        return 1; /* the common case of the socketless targets: no timer, no poll */
    uv_timer_t wake; /* keeps the loop from sleeping in poll */
    uv_timer_init(&loop, &wake);
    uv_timer_start(&wake, on_wake, 1, 1);
    uv_update_time(&loop);
    uint64_t until = uv_now(&loop) + timeout_ms;
    int ok;
    while (!(ok = pred(arg)) && uv_now(&loop) < until)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static int is_leader(void *arg)
{
    (void)arg;
    if (b->stopping)
        return 0;
    struct cluster_status st;
    cluster_status_get(b->cluster, &st);
    return st.role == 2;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void stop_all(void)
{
    if (b) {
        broker_stop(b);
        while (uv_run(&loop, UV_RUN_DEFAULT))
            ;
        broker_free(b);
        b = NULL;
        uv_walk(&loop, close_walk, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
}

/* Starts a node on fresh ports in a fresh directory; 0, or broker_start's
 * error (what it started is then stopped again). */
static int start_once(void)
{
    snprintf(dir, sizeof(dir), "%s/fuzz-broker-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir) || uv_loop_init(&loop) != 0) {
        perror("harness: setup");
        exit(1);
    }
    struct config cfg;
    config_defaults(&cfg);
    mqtt_port = free_port();
    admin_port = free_port();
    snprintf(cfg.listeners[0].bind, sizeof(cfg.listeners[0].bind), "127.0.0.1");
    cfg.listeners[0].port = (uint16_t)mqtt_port;
    cfg.listener_count = 1;
    cfg.listeners_explicit = true;
    snprintf(cfg.admin_listen, sizeof(cfg.admin_listen), "127.0.0.1:%d", admin_port);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", dir);
    cluster_port = free_port();
    snprintf(cfg.cluster_bind, sizeof(cfg.cluster_bind), "127.0.0.1:%d", cluster_port);
    snprintf(cfg.cluster_secret, sizeof(cfg.cluster_secret), "%s", HARNESS_SECRET);
    cfg.sys_interval = 0;
    /* quiet: what a fuzzed input makes the node log (at every level, errors
     * included) would cost more than handling it */
    cfg.log_level = getenv("HARNESS_VERBOSE") ? LOG_DEBUG : -1;
    cfg.election_timeout_ms = 100;
    cfg.store_max_mb = 256;
    char err[256] = "";
    int rc = broker_start(&loop, &cfg, &b, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "harness: broker_start: %d %s\n", rc, err);
        if (!b)
            exit(1);
        stop_all();
    }
    return rc;
}

void harness_start(void)
{
    if (b)
        return;
    /* a port free_port found may be taken by another process before the
     * node binds it: a fresh set then */
    for (int attempt = 1; start_once() != 0; attempt++) {
        if (attempt == 5)
            exit(1);
    }
    /* the node stops cleanly on SIGINT and SIGTERM: a fuzzer interrupted so
     * would report "stopped the node" against whatever input ran next */
    uv_signal_stop(&b->sigint);
    uv_signal_stop(&b->sigterm);
    static bool registered;
    if (!registered)
        atexit(stop_all);
    registered = true;
    if (!run_until(is_leader, NULL, 10000)) {
        fprintf(stderr, "harness: no leader within 10 s\n");
        exit(1);
    }
}

/* libFuzzer calls this once, before the first input (every target that links
 * the harness starts the node then). */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    harness_start();
    return 0;
}

struct exchange {
    int fd;
    const uint8_t *data;
    size_t size, sent;
    size_t answered;
    int closed; /* the broker closed (EOF or reset) */
};

static int step(void *arg)
{
    struct exchange *x = arg;
    if (x->fd < 0)
        return 1;
    while (x->sent < x->size) {
        ssize_t n = send(x->fd, x->data + x->sent, x->size - x->sent, MSG_NOSIGNAL);
        if (n > 0) {
            x->sent += (size_t)n;
            if (x->sent == x->size)
                shutdown(x->fd, SHUT_WR);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        x->sent = x->size; /* reset by the broker: read what is left */
        break;
    }
    for (;;) {
        char tmp[65536];
        ssize_t n = recv(x->fd, tmp, sizeof(tmp), 0);
        if (n > 0) {
            x->answered += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            x->closed = 1;
            return 1;
        }
        return 0;
    }
}

static int no_conns(void *arg)
{
    (void)arg;
    return b->conn_count == 0;
}

int harness_stopped(void) { return b->stopping; }

static int never(void *arg)
{
    (void)arg;
    return b->stopping;
}

void harness_settle(uint64_t ms) { (void)run_until(never, NULL, ms); }

void harness_poll(void) { uv_run(&loop, UV_RUN_NOWAIT); }

int harness_socket(void)
{
    static int on = -1;
    if (on < 0)
        on = getenv("STARLING_FUZZ_SOCKET") && strcmp(getenv("STARLING_FUZZ_SOCKET"), "0") != 0;
    return on;
}

void harness_reset_if_stopped(void)
{
    if (run_until(is_leader, NULL, 2000))
        return;
    fprintf(stderr, "harness: the node stopped or lost its leadership; starting a fresh one\n");
    stop_all();
    harness_start();
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS)) {
        perror("harness: connect");
        abort();
    }
    return fd;
}

/* What the exchange after a handshake reads: exactly n bytes into out. */
struct read_n {
    int fd;
    uint8_t *out;
    size_t n, have;
    int failed;
};

static int read_some(void *arg)
{
    struct read_n *r = arg;
    ssize_t n = recv(r->fd, r->out + r->have, r->n - r->have, 0);
    if (n > 0)
        r->have += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        r->failed = 1;
    return r->failed || r->have == r->n;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            uv_run(&loop, UV_RUN_NOWAIT);
            continue;
        }
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static size_t exchange_on(int fd, const uint8_t *data, size_t size, uint64_t timeout_ms);

size_t harness_exchange_peer(uint8_t channel, uint32_t node, const uint8_t *data, size_t size, uint64_t timeout_ms)
{
    int fd = dial(cluster_port);
    uint8_t hello_a[24], ok[32];
    struct read_n r = {.fd = fd, .out = hello_a, .n = sizeof(hello_a)};
    if (!run_until(read_some, &r, timeout_ms) || r.failed || memcmp(hello_a, "STRL", 4) != 0) {
        if (b->stopping) { /* what the last input committed stopped it: not this input's doing */
            close(fd);
            harness_reset_if_stopped();
            return 0;
        }
        fprintf(stderr, "harness: no HELLO from the cluster port\n");
        abort();
    }
    /* HELLO_D (cluster/peer.c): the MAC is computed with the node's own code */
    static const char addr[] = "127.0.0.1:1";
    uint8_t msg[64 + sizeof(addr) - 1], nonce_d[16], id[8];
    for (int i = 0; i < 16; i++)
        nonce_d[i] = (uint8_t)(i * 7 + 1);
    memcpy(msg, "STRL", 4);
    msg[4] = 1;
    msg[5] = channel;
    bytes_put_u16le(msg + 6, (uint16_t)(sizeof(addr) - 1));
    bytes_put_u64le(msg + 8, node);
    memcpy(msg + 16, nonce_d, 16);
    bytes_put_u64le(id, node);
    struct iovec parts[] = {
        {"dial", 4}, {hello_a + 8, 16}, {nonce_d, 16}, {&channel, 1}, {id, 8}, {(void *)addr, sizeof(addr) - 1},
    };
    cluster__hmac_sha256(HARNESS_SECRET, strlen(HARNESS_SECRET), parts, 6, msg + 32);
    memcpy(msg + 64, addr, sizeof(addr) - 1);
    if (write_all(fd, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "harness: cannot send HELLO_D\n");
        abort();
    }
    r = (struct read_n){.fd = fd, .out = ok, .n = sizeof(ok)};
    if (!run_until(read_some, &r, timeout_ms) || r.failed) {
        if (b->stopping) {
            close(fd);
            harness_reset_if_stopped();
            return 0;
        }
        fprintf(stderr, "harness: the cluster port refused the handshake\n");
        abort();
    }
    return exchange_on(fd, data, size, timeout_ms);
}

int harness_feed_peer(uint8_t channel, uint32_t node, const uint8_t *data, size_t size)
{
    int rc = cluster__peer_feed(b->cluster, channel, node, data, size);
    harness_poll();
    return rc;
}

size_t harness_exchange(int port, const uint8_t *data, size_t size, uint64_t timeout_ms)
{
    return exchange_on(dial(port), data, size, timeout_ms);
}

static size_t exchange_on(int fd, const uint8_t *data, size_t size, uint64_t timeout_ms)
{
    struct exchange x = {.fd = fd, .data = data, .size = size};
    if (size == 0)
        shutdown(x.fd, SHUT_WR);
    if (!run_until(step, &x, timeout_ms)) {
        fprintf(stderr, "harness: the broker kept the connection open %llu ms after the client's end of "
                        "stream (%zu of %zu bytes sent)\n",
                (unsigned long long)timeout_ms, x.sent, x.size);
        abort();
    }
    close(x.fd);
    if (!run_until(no_conns, NULL, timeout_ms)) {
        fprintf(stderr, "harness: %u connection(s) still open %llu ms after the client closed\n", b->conn_count,
                (unsigned long long)timeout_ms);
        abort();
    }
    return x.answered;
}
