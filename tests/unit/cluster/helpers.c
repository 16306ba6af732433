/* Helpers shared by the cluster test suites: a temporary directory per test,
 * commands and states as text, a bounded loop runner, and real nodes whose
 * callbacks record what they saw. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "helpers.h"

/* --- fixture ----------------------------------------------------------------------- */

char tmp_root[64];

void tmp_setup(void)
{
    strcpy(tmp_root, "/tmp/cluster-test-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_root), "mkdtemp");
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tmp_teardown(void)
{
    if (tmp_root[0])
        nftw(tmp_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tmp_path(const char *name)
{
    static char ring[8][256];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, 256, "%s/%s", tmp_root, name);
    return p;
}

/* --- text forms -------------------------------------------------------------------- */

static void put_str(FILE *f, const char *name, struct proto_str s)
{
    fprintf(f, " %s=\"", name);
    for (uint32_t i = 0; i < s.len; i++) {
        uint8_t ch = s.p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            fputc(ch, f);
        else
            fprintf(f, "\\x%02x", ch);
    }
    fputc('"', f);
}

void cmd_print(FILE *f, const struct cluster_cmd *c)
{
    fprintf(f, "type=%u", c->type);
    put_str(f, "client_id", c->client_id);
    fprintf(f, " node=%u generation=%llu clean_start=%d expiry=%u expire_at=%llu has_will=%d", c->node,
            (unsigned long long)c->generation, c->clean_start, c->expiry, (unsigned long long)c->expire_at_ms,
            c->has_will);
    put_str(f, "will.topic", c->will.topic);
    put_str(f, "will.payload", c->will.payload);
    put_str(f, "will.props", c->will.props);
    fprintf(f, " will.qos=%u will.retain=%d will.delay=%u", c->will.qos, c->will.retain, c->will.delay);
    put_str(f, "filter", c->filter);
    fprintf(f, " qos=%u no_local=%d rap=%d rh=%u sub_id=%u", c->qos, c->no_local, c->retain_as_published,
            c->retain_handling, c->sub_id);
    put_str(f, "topic", c->topic);
    put_str(f, "payload", c->payload);
    put_str(f, "props", c->props);
    fprintf(f, " msg_expire_at=%llu released=%d\n", (unsigned long long)c->msg_expire_at_ms, c->released);
}

int load_print_cb(void *file, const struct cluster_cmd *cmd)
{
    cmd_print(file, cmd);
    return 0;
}

static char *text_of(int (*fn)(void *obj, FILE *f), void *obj)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    cr_assert_not_null(f);
    int rc = fn(obj, f);
    fclose(f);
    cr_assert_eq(rc, 0, "producing text: %d (%s)", rc, store_strerror(rc));
    return p;
}

static int do_state_load(void *s, FILE *f) { return cluster__state_load(s, load_print_cb, f); }
static int do_cluster_load(void *c, FILE *f) { return cluster_load(c, load_print_cb, f); }
static int do_state_dump(void *s, FILE *f) { return cluster__state_dump(s, f); }
static int do_cluster_dump(void *dir, FILE *f)
{
    char err[256] = "";
    int rc = cluster_dump(dir, f, err, sizeof(err));
    if (rc)
        fprintf(stderr, "cluster_dump: %s\n", err);
    return rc;
}

char *state_load_text(struct store *s) { return text_of(do_state_load, s); }
char *cluster_load_text(struct cluster *c) { return text_of(do_cluster_load, c); }
char *state_dump_text(struct store *s) { return text_of(do_state_dump, s); }
char *cluster_dump_text(const char *data_dir) { return text_of(do_cluster_dump, (void *)data_dir); }

/* --- running a loop ---------------------------------------------------------------- */

static void on_keepalive(uv_timer_t *t) { (void)t; }
static void free_handle(uv_handle_t *h) { free(h); }

bool run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, uint64_t timeout_ms)
{
    uv_timer_t *t = malloc(sizeof(*t));
    cr_assert_not_null(t);
    uv_timer_init(loop, t);
    uv_timer_start(t, on_keepalive, 5, 5);
    uint64_t deadline = uv_hrtime() + timeout_ms * 1000000ull;
    bool ok;
    while (!(ok = pred(arg)) && uv_hrtime() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)t, free_handle);
    uv_run(loop, UV_RUN_NOWAIT); /* the timer's close callback */
    return ok;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

void run_for(uv_loop_t *loop, uint64_t ms) { run_until(loop, never, NULL, ms); }

static void walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) {
        (*(int *)arg)++;
        fprintf(stderr, "handle of type %s still open at the end\n", uv_handle_type_name(h->type));
        uv_close(h, NULL);
    }
}

int loop_finish(uv_loop_t *loop)
{
    int open = 0;
    uv_run(loop, UV_RUN_NOWAIT);
    uv_walk(loop, walk_close, &open);
    uv_run(loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(loop);
    cr_assert_eq(rc, 0, "uv_loop_close: %s", uv_strerror(rc));
    return open;
}

/* --- a node ------------------------------------------------------------------------ */

static void on_apply(void *ctx, const struct cluster_cmd *cmd, int result, uint64_t index)
{
    struct node *n = ctx;
    if (n->n_applied == n->cap_applied) {
        n->cap_applied = n->cap_applied ? n->cap_applied * 2 : 64;
        n->applied = realloc(n->applied, n->cap_applied * sizeof(*n->applied));
        cr_assert_not_null(n->applied);
    }
    struct applied *a = &n->applied[n->n_applied++];
    memset(a, 0, sizeof(*a));
    a->type = cmd->type;
    snprintf(a->client_id, sizeof(a->client_id), "%.*s", (int)cmd->client_id.len, (const char *)cmd->client_id.p);
    snprintf(a->topic, sizeof(a->topic), "%.*s", (int)cmd->topic.len, (const char *)cmd->topic.p);
    a->generation = cmd->generation;
    a->result = result;
    a->index = index;
}

static void on_reload(void *ctx) { ((struct node *)ctx)->reloads++; }

static void on_fatal(void *ctx, const char *msg)
{
    struct node *n = ctx;
    n->fatals++;
    snprintf(n->fatal_msg, sizeof(n->fatal_msg), "%s", msg);
}

static void on_log(void *ctx, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void on_log(void *ctx, int level, const char *fmt, ...)
{
    struct node *n = ctx;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (strstr(line, "peer rejected"))
        n->rejected_logs++;
    if (n->verbose || getenv("CLUSTER_TEST_VERBOSE"))
        fprintf(stderr, "[node %u L%d] %s\n", n->cfg.node_id, level, line);
}

void node_init(struct node *n, uv_loop_t *loop, uint32_t id, const char *dir)
{
    memset(n, 0, sizeof(*n));
    n->loop = loop;
    snprintf(n->dir, sizeof(n->dir), "%s", dir);
    snprintf(n->bind, sizeof(n->bind), "127.0.0.1:0");
    snprintf(n->name, sizeof(n->name), "t");
    snprintf(n->secret, sizeof(n->secret), "test-secret");
    n->cfg = (struct cluster_config){
        .node_id = id,
        .data_dir = n->dir,
        .cluster_name = n->name,
        .bind = n->bind,
        .secret = n->secret,
        .commit_timeout_ms = 2000,
        .apply = on_apply,
        .reload = on_reload,
        .fatal = on_fatal,
        .ctx = n,
        .log = on_log,
    };
}

int node_try_start(struct node *n, char *err, size_t errlen)
{
    n->closed = false;
    err[0] = '\0';
    return cluster_start(n->loop, &n->cfg, &n->c, err, errlen);
}

void node_start(struct node *n)
{
    char err[512];
    int rc = node_try_start(n, err, sizeof(err));
    cr_assert_eq(rc, 0, "cluster_start: %d %s", rc, err);
    cr_assert_not_null(n->c);
    rc = cluster_run(n->c, err, sizeof(err));
    cr_assert_eq(rc, 0, "cluster_run: %d %s", rc, err);
}

static void on_closed(void *arg) { ((struct node *)arg)->closed = true; }

static bool is_closed(void *arg) { return ((struct node *)arg)->closed; }

void node_close(struct node *n)
{
    cr_assert_not_null(n->c);
    cluster_close(n->c, on_closed, n);
    cr_assert(run_until(n->loop, is_closed, n, 10000), "node %u: the close callback never ran",
              n->cfg.node_id);
    n->c = NULL;
}

void node_free(struct node *n)
{
    free(n->applied);
    n->applied = NULL;
    n->n_applied = n->cap_applied = 0;
}

struct cluster_status node_status(struct node *n)
{
    struct cluster_status st;
    cluster_status_get(n->c, &st);
    return st;
}

bool node_is_leader(void *arg)
{
    struct node *n = arg;
    return node_status(n).role == 2;
}

void done_cb(void *arg, int status, int result)
{
    struct done *d = arg;
    d->calls++;
    d->status = status;
    d->result = result;
}

bool done_fired(void *d) { return ((struct done *)d)->calls > 0; }

struct cluster_cmd cmd_claim(const char *id, uint32_t node, uint64_t gen, bool clean)
{
    return (struct cluster_cmd){
        .type = CLUSTER_SESSION_CLAIM,
        .client_id = {(const uint8_t *)id, (uint32_t)strlen(id)},
        .node = node,
        .generation = gen,
        .clean_start = clean,
        .expiry = 3600,
    };
}

struct cluster_cmd cmd_sub(uint8_t type, const char *id, uint64_t gen, const char *filter)
{
    return (struct cluster_cmd){
        .type = type,
        .client_id = {(const uint8_t *)id, (uint32_t)strlen(id)},
        .generation = gen,
        .filter = {(const uint8_t *)filter, (uint32_t)strlen(filter)},
        .qos = 1,
    };
}

struct cluster_cmd cmd_retain(const char *topic, const char *payload)
{
    return (struct cluster_cmd){
        .type = CLUSTER_RETAIN_SET,
        .topic = {(const uint8_t *)topic, (uint32_t)strlen(topic)},
        .payload = {(const uint8_t *)payload, (uint32_t)strlen(payload)},
        .qos = 1,
    };
}

void propose_wait(struct node *n, const struct cluster_cmd *cmd, struct done *d)
{
    memset(d, 0, sizeof(*d));
    int rc = cluster_propose(n->c, cmd, done_cb, d);
    cr_assert_eq(rc, 0, "cluster_propose: %d", rc);
    cr_assert_eq(d->calls, 0, "done ran from inside cluster_propose");
    cr_assert(run_until(n->loop, done_fired, d, 5000), "node %u: the proposal never completed",
              n->cfg.node_id);
}

bool has_snapshot(void *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "snapshot-", 9) == 0)
            found = true;
    closedir(d);
    return found;
}

/* --- a group of nodes ------------------------------------------------------------------ */

void group_init(uv_loop_t *loop, struct node *nodes, int total, int voters)
{
    cr_assert_leq(total, GROUP_MAX);
    signal(SIGPIPE, SIG_IGN); /* a write to a peer that went away is an error code */
    cr_assert_eq(uv_loop_init(loop), 0);
    int ports[GROUP_MAX];
    for (int i = 0; i < total; i++) {
        char host[16];
        snprintf(host, sizeof(host), "127.0.0.%d", i + 1);
        ports[i] = free_port(host);
    }
    for (int i = 0; i < total; i++) {
        char dir[32];
        snprintf(dir, sizeof(dir), "n%d", i + 1);
        struct node *n = &nodes[i];
        node_init(n, loop, (uint32_t)(i + 1), tmp_path(dir));
        snprintf(n->bind, sizeof(n->bind), "127.0.0.%d:%d", i + 1, ports[i]);
        if (i < voters) {
            for (int j = 0; j < voters; j++) {
                snprintf(n->peer_addr[j], sizeof(n->peer_addr[j]), "127.0.0.%d:%d", j + 1, ports[j]);
                n->peers[j] = (struct cluster_peer_cfg){(uint32_t)(j + 1), n->peer_addr[j]};
            }
            n->cfg.peers = n->peers;
            n->cfg.peer_count = voters;
        }
        n->cfg.election_timeout_ms = 500;
        n->cfg.heartbeat_ms = 50;
    }
}

void group_start(struct node *nodes, int n, unsigned mask)
{
    for (int i = 0; i < n; i++)
        if (mask & (1u << i))
            node_start(&nodes[i]);
}

struct agree {
    struct node *nodes;
    int n;
    unsigned mask;
    int leader; /* index into nodes */
};

static bool leader_agreed(void *arg)
{
    struct agree *a = arg;
    int leader = -1;
    uint32_t id = 0;
    for (int i = 0; i < a->n; i++) {
        if (!(a->mask & (1u << i)))
            continue;
        struct cluster_status st = node_status(&a->nodes[i]);
        if (st.role == 2) {
            if (leader >= 0)
                return false;
            leader = i;
        }
        if (!st.leader_id || (id && st.leader_id != id))
            return false;
        id = st.leader_id;
    }
    if (leader < 0 || id != a->nodes[leader].cfg.node_id)
        return false;
    a->leader = leader;
    return true;
}

int group_wait_leader(struct node *nodes, int n, unsigned mask)
{
    struct agree a = {nodes, n, mask, -1};
    cr_assert(run_until(nodes[0].loop, leader_agreed, &a, 10000), "no agreed leader among nodes 0x%x", mask);
    return a.leader;
}

static bool group_finished;

static void group_close(struct node *nodes, int n)
{
    for (int i = 0; i < n; i++)
        if (nodes[i].c)
            node_close(&nodes[i]);
}

void group_finish(struct node *nodes, int n)
{
    group_close(nodes, n);
    group_finished = true;
    int open = loop_finish(nodes[0].loop);
    for (int i = 0; i < n; i++)
        node_free(&nodes[i]);
    cr_assert_eq(open, 0, "%d handle(s) left open on the loop", open);
    check_leaks();
}

void group_teardown(struct node *nodes, int n)
{
    if (!group_finished) { /* the test failed part-way: clean up all the same */
        group_close(nodes, n);
        loop_finish(nodes[0].loop);
        for (int i = 0; i < n; i++)
            node_free(&nodes[i]);
    }
    group_finished = false;
    tmp_teardown();
}

struct sever {
    in_addr_t a, b;
    int count;
};

static void sever_one(uv_handle_t *h, void *arg)
{
    struct sever *s = arg;
    if (h->type != UV_TCP || uv_is_closing(h))
        return;
    struct sockaddr_in self, peer;
    int len = sizeof(self);
    if (uv_tcp_getsockname((uv_tcp_t *)h, (struct sockaddr *)&self, &len) != 0 || self.sin_family != AF_INET)
        return;
    len = sizeof(peer);
    if (uv_tcp_getpeername((uv_tcp_t *)h, (struct sockaddr *)&peer, &len) != 0)
        return;
    in_addr_t x = self.sin_addr.s_addr, y = peer.sin_addr.s_addr;
    if (!((x == s->a && y == s->b) || (x == s->b && y == s->a)))
        return;
    uv_os_fd_t fd;
    if (uv_fileno(h, &fd) == 0 && shutdown(fd, SHUT_RDWR) == 0)
        s->count++;
}

int group_sever(uv_loop_t *loop, int i, int j)
{
    char a[24], b[24];
    snprintf(a, sizeof(a), "127.0.0.%d", i + 1);
    snprintf(b, sizeof(b), "127.0.0.%d", j + 1);
    struct sever s = {inet_addr(a), inet_addr(b), 0};
    uv_walk(loop, sever_one, &s);
    return s.count;
}

/* --- raw sockets ------------------------------------------------------------------------ */

static struct sockaddr_in ip4(const char *ip, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    cr_assert_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1, "not an IPv4 address: %s", ip);
    return sa;
}

int free_port(const char *ip)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = ip4(ip, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", ip, strerror(errno));
    socklen_t len = sizeof(sa);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

int port_of(const struct node *n) { return atoi(strrchr(n->bind, ':') + 1); }

int tcp_dial(const struct node *n)
{
    char host[64];
    snprintf(host, sizeof(host), "%.*s", (int)(strrchr(n->bind, ':') - n->bind), n->bind);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = ip4(host, port_of(n));
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", n->bind, strerror(errno));
    return fd;
}

bool peer_closed(void *arg)
{
    int fd = *(int *)arg;
    char buf[256];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0)
            return true;
        if (r < 0)
            return errno != EAGAIN && errno != EWOULDBLOCK;
    }
}

bool read_done(void *arg)
{
    struct sock_read *r = arg;
    while (r->have < r->want) {
        ssize_t got = recv(r->fd, r->buf + r->have, r->want - r->have, MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            r->eof = true;
            return true;
        }
        if (got < 0)
            return false;
        r->have += (size_t)got;
    }
    return true;
}

void read_exactly(uv_loop_t *loop, struct sock_read *r, size_t n)
{
    cr_assert_leq(n, sizeof(r->buf));
    r->have = 0;
    r->want = n;
    cr_assert(run_until(loop, read_done, r, 3000), "no %zu bytes from the node", n);
    cr_assert_not(r->eof, "the node closed the connection");
}

void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void hmac(const char *secret, const struct iovec *parts, size_t n, uint8_t out[32])
{
    cluster__hmac_sha256(secret, strlen(secret), parts, n, out);
}

int handshake_as_dialer(struct node *target, const char *secret, uint8_t channel, uint64_t node_id, bool tamper,
                        bool *rejected)
{
    struct sock_read r = {.fd = tcp_dial(target)};
    read_exactly(target->loop, &r, 24);
    cr_assert(memcmp(r.buf, "STRL", 4) == 0, "HELLO_A magic");
    cr_assert_eq(r.buf[4], 1, "HELLO_A version");
    uint8_t nonce_a[16], nonce_d[16];
    memcpy(nonce_a, r.buf + 8, 16);
    for (int i = 0; i < 16; i++)
        nonce_d[i] = (uint8_t)(0xa0 + i);
    const char *addr = "127.0.0.1:9";
    uint8_t mac_channel = tamper ? (uint8_t)(channel == 1 ? 2 : 1) : channel, id[8];
    put_le(id, node_id, 8);
    struct iovec parts[] = {{"dial", 4}, {nonce_a, 16}, {nonce_d, 16}, {&mac_channel, 1}, {id, 8},
                            {(void *)addr, strlen(addr)}};
    uint8_t msg[128];
    memcpy(msg, "STRL", 4);
    msg[4] = 1;
    msg[5] = channel;
    put_le(msg + 6, strlen(addr), 2);
    memcpy(msg + 8, id, 8);
    memcpy(msg + 16, nonce_d, 16);
    hmac(secret, parts, 6, msg + 32);
    memcpy(msg + 64, addr, strlen(addr));
    size_t len = 64 + strlen(addr);
    cr_assert_eq(send(r.fd, msg, len, MSG_NOSIGNAL), (ssize_t)len);
    r.have = 0;
    r.want = 32;
    cr_assert(run_until(target->loop, read_done, &r, 3000), "no answer to HELLO_D");
    *rejected = r.eof;
    if (r.eof) {
        close(r.fd);
        return -1;
    }
    struct iovec ok_parts[] = {{"acpt", 4}, {nonce_d, 16}, {nonce_a, 16}};
    uint8_t ok[32];
    hmac(secret, ok_parts, 3, ok);
    cr_assert(memcmp(ok, r.buf, 32) == 0, "the node's OK does not prove it knows the secret");
    return r.fd;
}
