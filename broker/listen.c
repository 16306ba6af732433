/* listen: listening sockets that stop accepting when the node runs short of
 * descriptors, and the descriptor budget they and CONNECT consult.
 *
 * libuv's uv_listen cannot pause, so a node out of descriptors spun and logged
 * millions of lines. Listeners are acceptors (common/acceptor.h): on
 * EMFILE/ENFILE, or when fewer than keep_free descriptors would remain (half
 * of fd_reserve for MQTT, a quarter for the admin API, so that /metrics still
 * answers), they stop accepting for ACCEPTOR_RETRY_MS: the connections not
 * yet accepted wait in the kernel's backlog (their clients see a slow
 * CONNACK, not a reset).
 *
 * The budget: limit is RLIMIT_NOFILE; base counts the descriptors the node
 * holds besides client and admin sockets (store, Raft log, cluster links,
 * listeners), counted in /proc/self/fd at start and recounted while the node
 * is near the limit; sockets counts client and admin sockets open, admitted
 * the clients past CONNECT. A CONNECT that would leave fewer than fd_reserve
 * descriptors beside the admitted clients gets CONNACK 0x89 (v5) / 0x03 (v3),
 * so the Raft log, LMDB and the cluster keep descriptors to work with; sockets
 * not yet past CONNECT (each for connect_timeout at most) may take half the
 * reserve before accepting pauses.
 * What was refused or deferred is reported at most once per FDS_REPORT_MS. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define FDS_REPORT_MS 5000
#define FDS_RECOUNT_MS 5000

/* --- the descriptor budget ------------------------------------------------- */

/* Descriptors open in this process, or -1 (none left to open the directory). */
static int fds_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own */
}

static void fds_recount(struct broker *b)
{
    int n = fds_count();
    if (n >= 0)
        b->fds.base = (uint32_t)n > b->fds.sockets ? (uint32_t)n - b->fds.sockets : 0;
    b->fds.recounted_ms = broker__now(b);
}

uint32_t broker__fds_free(const struct broker *b)
{
    uint64_t used = (uint64_t)b->fds.base + b->fds.sockets;
    return b->fds.limit > used ? (uint32_t)(b->fds.limit - used) : 0;
}

/* Admission counts clients past CONNECT only: a burst of sockets not yet
 * CONNECTed must not get everyone refused; those are bounded by the pause. */
bool broker__fds_low(const struct broker *b)
{
    uint64_t used = (uint64_t)b->fds.base + b->fds.admitted + 1;
    return b->fds.limit && used + b->cfg.fd_reserve > b->fds.limit;
}

void broker__fds_report(struct broker *b)
{
    struct fd_budget *f = &b->fds;
    uint64_t now = broker__now(b);
    if (!f->refused && !f->paused)
        return;
    if (f->reported_ms && now - f->reported_ms < FDS_REPORT_MS)
        return;
    LOG(b, LOG_WARN, NULL,
        "descriptors low: %u of %u in use (fd_reserve %u): %llu CONNECT(s) refused with 0x89/0x03, accepting "
        "paused %llu time(s)%s; raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections",
        f->limit - broker__fds_free(b), f->limit, b->cfg.fd_reserve, (unsigned long long)f->refused,
        (unsigned long long)f->paused, f->reported_ms ? " since the last report" : "");
    f->refused = f->paused = 0;
    f->reported_ms = now;
}

void broker__fds_tick(struct broker *b)
{
    if (b->fds.limit && broker__fds_free(b) < 2u * b->cfg.fd_reserve + 16 &&
        broker__now(b) - b->fds.recounted_ms >= FDS_RECOUNT_MS)
        fds_recount(b);
    broker__fds_report(b);
}

/* The kernel grows a process's descriptor table by doubling it when a new
 * descriptor does not fit, and a process with threads (the libuv pool, which
 * libraft writes through) waits for an RCU grace period at each growth: 10 to
 * 20 ms inside accept4, with every connection in flight waiting. Growing the
 * table once at start to what the clients may use moves the waits out of the
 * connect path (a fresh node took seven of them on its way to 5,000 clients).
 * Costs 8 bytes per descriptor of kernel memory; capped at FDS_PRESIZE_MAX. */
#define FDS_PRESIZE_MAX (1u << 17)

static void fds_presize(struct broker *b)
{
    uint64_t want = (uint64_t)b->cfg.max_connections + b->cfg.fd_reserve + b->fds.base + BROKER_ADMIN_MAX_CONNS;
    if (!b->cfg.max_connections || want > b->fds.limit)
        want = b->fds.limit;
    if (want > FDS_PRESIZE_MAX)
        want = FDS_PRESIZE_MAX;
    if (want < 2)
        return;
    /* the lowest free descriptor at or above want - 1: never one in use */
    int fd = fcntl(0, F_DUPFD_CLOEXEC, (int)(want - 1));
    if (fd < 0)
        fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, (int)(want - 1));
    if (fd >= 0)
        close(fd);
    else
        LOG(b, LOG_DEBUG, NULL, "descriptor table not grown to %llu: %s", (unsigned long long)want, strerror(errno));
}

/* At start: the limit, what the node holds already, and whether
 * max_connections fits. The default (100000) is above many hosts' limit: it
 * is lowered to what fits, with an info line, rather than warned about at
 * every start. A max_connections the user set is kept, with a warning (not a
 * refusal: the reserve keeps such a node working); see docs/configuration.md. */
void broker__fds_init(struct broker *b)
{
    struct rlimit rl;
    b->fds.limit = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        b->fds.limit = rl.rlim_cur > UINT32_MAX ? UINT32_MAX : (uint32_t)rl.rlim_cur;
    fds_recount(b);
    if (!b->fds.limit)
        return;
    uint64_t need = (uint64_t)b->cfg.max_connections + b->cfg.fd_reserve + b->fds.base + BROKER_ADMIN_MAX_CONNS;
    uint32_t room = broker__fds_free(b) > b->cfg.fd_reserve ? broker__fds_free(b) - b->cfg.fd_reserve : 0;
    if (!b->cfg.max_connections) {
        LOG(b, LOG_INFO, NULL, "descriptor limit %u: about %u clients can connect (max_connections 0 = unlimited)",
            b->fds.limit, room);
    } else if (need > b->fds.limit && !b->cfg.max_connections_explicit) {
        uint32_t was = b->cfg.max_connections;
        b->cfg.max_connections = room < was ? (room ? room : 1) : was; /* 0 would mean unlimited */
        LOG(b, LOG_INFO, NULL,
            "descriptor limit %u: max_connections is %u (the default %u does not fit beside fd_reserve %u and %u "
            "descriptors in use; raise the hard limit (ulimit -Hn, LimitNOFILE=) for more)",
            b->fds.limit, b->cfg.max_connections, was, b->cfg.fd_reserve, b->fds.base);
    } else if (need > b->fds.limit) {
        LOG(b, LOG_WARN, NULL,
            "descriptor limit %u is below max_connections (%u) + fd_reserve (%u) + %u in use + %u admin: about "
            "%u clients can connect, the rest get CONNACK 0x89/0x03; raise the limit (ulimit -n and -Hn, "
            "LimitNOFILE=) or lower max_connections",
            b->fds.limit, b->cfg.max_connections, b->cfg.fd_reserve, b->fds.base, BROKER_ADMIN_MAX_CONNS, room);
    } else {
        LOG(b, LOG_DEBUG, NULL, "descriptor limit %u, %u in use", b->fds.limit, b->fds.base);
    }
    fds_presize(b);
}

/* --- listening sockets ------------------------------------------------------ */

static const char *acceptor_check(struct acceptor *a)
{
    struct broker *b = a->data;
    if (b->fds.limit && broker__fds_free(b) < a->keep_free)
        return "the descriptor reserve is reached";
    return NULL;
}

/* Counted in the rate-limited report, not a line per pause. */
static void acceptor_paused(struct acceptor *a, int err, const char *why)
{
    struct broker *b = a->data;
    /* EMFILE: we are at the limit, so what we do not count is the rest */
    if (err == EMFILE && b->fds.limit > b->fds.sockets)
        b->fds.base = b->fds.limit - b->fds.sockets;
    if (err && err != EMFILE && err != ENFILE)
        LOG(b, LOG_WARN, NULL, "%s: accept: %s", a->name, why); /* ENOBUFS, ENOMEM */
    b->fds.paused++;
    LOG(b, LOG_DEBUG, NULL, "%s: not accepting for %d ms: %s", a->name, ACCEPTOR_RETRY_MS, why);
    broker__fds_report(b);
}

int broker__acceptor_open(struct broker *b, struct acceptor *a, const struct sockaddr *addr, int backlog)
{
    a->data = b;
    a->check = acceptor_check;
    a->on_pause = acceptor_paused;
    a->closed = NULL;
    return acceptor_open(a, b->loop, addr, backlog);
}
