/* common/acceptor.h: a listening socket that pauses instead of spinning. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor.h"

struct fixture {
    uv_loop_t loop;
    struct acceptor a;
    uint16_t port;
    int taken;
    int taken_fds[8];
    int pauses;
    int last_err;
    const char *last_why;
    int refuse;   /* check says "busy" this many times */
    int closed;
};

static const char *check_busy(struct acceptor *a)
{
    struct fixture *f = a->data;
    if (f->refuse > 0) {
        f->refuse--;
        return "busy";
    }
    return NULL;
}

static void take(struct acceptor *a, int fd)
{
    struct fixture *f = a->data;
    if (f->taken < 8)
        f->taken_fds[f->taken] = fd;
    else
        close(fd);
    f->taken++;
}

static void on_pause(struct acceptor *a, int err, const char *why)
{
    struct fixture *f = a->data;
    f->pauses++;
    f->last_err = err;
    f->last_why = why;
}

static void on_closed(struct acceptor *a) { ((struct fixture *)a->data)->closed++; }

static void open_fixture(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    f->a.data = f;
    f->a.check = check_busy;
    f->a.take = take;
    f->a.on_pause = on_pause;
    f->a.closed = on_closed;
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", 0, &sin);
    cr_assert_eq(acceptor_open(&f->a, &f->loop, (struct sockaddr *)&sin, 16), 0);
    socklen_t len = sizeof(sin);
    cr_assert_eq(getsockname(f->a.fd, (struct sockaddr *)&sin, &len), 0);
    f->port = ntohs(sin.sin_port);
}

static void close_fixture(struct fixture *f)
{
    for (int i = 0; i < f->taken && i < 8; i++)
        close(f->taken_fds[i]);
    acceptor_close(&f->a);
    cr_expect_eq(f->a.fd, -1);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    cr_expect_eq(f->closed, 1, "closed runs once, after both handles");
    cr_expect_eq(uv_loop_close(&f->loop), 0);
}

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", port, &sin);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0, "%s", strerror(errno)); /* the backlog */
    return fd;
}

static uint64_t now_ms(uv_loop_t *loop)
{
    uv_update_time(loop);
    return uv_now(loop);
}

/* Runs the loop for ms milliseconds, or until *until reaches want. */
static void run_for(uv_loop_t *loop, uint64_t ms, const int *until, int want)
{
    uint64_t end = now_ms(loop) + ms;
    while (now_ms(loop) < end && (!until || *until < want))
        uv_run(loop, UV_RUN_NOWAIT), usleep(1000);
}

/* Still connected: nothing to read, no reset, no end of stream. */
static bool still_waiting(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

Test(acceptor, hands_each_connection_over)
{
    struct fixture f;
    open_fixture(&f);
    int c[3];
    for (int i = 0; i < 3; i++)
        c[i] = dial(f.port);
    run_for(&f.loop, 2000, &f.taken, 3);
    cr_expect_eq(f.taken, 3);
    cr_expect_eq(f.pauses, 0);
    int fl = fcntl(f.taken_fds[0], F_GETFL), fdfl = fcntl(f.taken_fds[0], F_GETFD);
    cr_expect(fl & O_NONBLOCK, "non-blocking");
    cr_expect(fdfl & FD_CLOEXEC, "close-on-exec");
    for (int i = 0; i < 3; i++)
        close(c[i]);
    close_fixture(&f);
}

Test(acceptor, pauses_at_emfile_without_spinning_or_resetting_and_resumes)
{
    struct fixture f;
    open_fixture(&f);
    int client = dial(f.port);
    /* Fill the descriptor table: the accept that follows meets EMFILE. */
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rlim_t soft = 256;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &(struct rlimit){soft, rl.rlim_max}), 0);
    int fillers[256], nf = 0;
    while (nf < 256) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            cr_assert_eq(errno, EMFILE);
            break;
        }
        fillers[nf++] = fd;
    }
    cr_assert(nf > 0 && nf < 256);
    run_for(&f.loop, 600, NULL, 0);
    cr_expect_eq(f.taken, 0);
    cr_expect_eq(f.last_err, EMFILE, "err %d (%s)", f.last_err, f.last_why ? f.last_why : "");
    /* one pause per ACCEPTOR_RETRY_MS (libuv's own loop retried at once) */
    cr_expect(f.pauses >= 1 && f.pauses <= 600 / ACCEPTOR_RETRY_MS + 1, "%d pauses in 600 ms", f.pauses);
    cr_expect(still_waiting(client), "the waiting connection was reset or closed");
    for (int i = 0; i < nf; i++)
        close(fillers[i]);
    run_for(&f.loop, 2000, &f.taken, 1);
    cr_expect_eq(f.taken, 1, "accepted once descriptors were free");
    close(client);
    close_fixture(&f);
}

Test(acceptor, check_pauses_then_accepting_resumes)
{
    struct fixture f;
    open_fixture(&f);
    f.refuse = 1;
    int client = dial(f.port);
    run_for(&f.loop, ACCEPTOR_RETRY_MS / 2, NULL, 0);
    cr_expect_eq(f.taken, 0);
    cr_expect_eq(f.pauses, 1);
    cr_expect_eq(f.last_err, 0);
    cr_expect_str_eq(f.last_why, "busy");
    run_for(&f.loop, 2000, &f.taken, 1);
    cr_expect_eq(f.taken, 1);
    cr_expect_eq(f.pauses, 1);
    close(client);
    close_fixture(&f);
}

Test(acceptor, open_fails_cleanly_and_close_of_a_closed_one_does_nothing)
{
    struct fixture f, g;
    open_fixture(&f);
    memset(&g, 0, sizeof(g));
    cr_assert_eq(uv_loop_init(&g.loop), 0);
    g.a.data = &g;
    g.a.take = take;
    g.a.closed = on_closed;
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", f.port, &sin);
    cr_expect_eq(acceptor_open(&g.a, &g.loop, (struct sockaddr *)&sin, 16), -EADDRINUSE);
    cr_expect_eq(g.a.fd, -1);
    acceptor_close(&g.a);
    uv_run(&g.loop, UV_RUN_DEFAULT);
    cr_expect_eq(g.closed, 0);
    cr_expect_eq(uv_loop_close(&g.loop), 0);
    close_fixture(&f);
}
