/* acceptor: a listening socket that pauses instead of spinning (acceptor.h). */
#include "acceptor.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_readable(uv_poll_t *p, int status, int events);

static void on_retry(uv_timer_t *t)
{
    struct acceptor *a = t->data;
    a->paused = false;
    if (uv_poll_start(&a->poll, UV_READABLE, on_readable) != 0)
        uv_timer_start(&a->retry, on_retry, ACCEPTOR_RETRY_MS, 0);
}

static void pause_accepting(struct acceptor *a, int err, const char *why)
{
    if (a->paused)
        return;
    a->paused = true;
    uv_poll_stop(&a->poll);
    uv_timer_start(&a->retry, on_retry, ACCEPTOR_RETRY_MS, 0);
    if (a->on_pause)
        a->on_pause(a, err, why);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    struct acceptor *a = p->data;
    (void)events;
    if (status < 0) {
        pause_accepting(a, 0, uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPTOR_BATCH && !a->paused && a->fd >= 0; i++) {
        const char *why = a->check ? a->check(a) : NULL;
        if (why) {
            pause_accepting(a, 0, why);
            return;
        }
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM: what frees them is not here */
            pause_accepting(a, e, strerror(e));
            return;
        }
        a->take(a, fd);
    }
}

int acceptor_open(struct acceptor *a, uv_loop_t *loop, const struct sockaddr *addr, int backlog)
{
    a->fd = -1;
    a->paused = false;
    a->closing = 0;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int on = 1;
    socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 || bind(fd, addr, len) != 0 ||
        listen(fd, backlog) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int rc = uv_poll_init_socket(loop, &a->poll, fd);
    if (rc) {
        close(fd);
        return rc;
    }
    a->poll.data = a;
    uv_timer_init(loop, &a->retry);
    a->retry.data = a;
    a->fd = fd;
    return uv_poll_start(&a->poll, UV_READABLE, on_readable); /* on failure, open until acceptor_close */
}

static void on_handle_closed(uv_handle_t *h)
{
    struct acceptor *a = h->data;
    if (--a->closing == 0 && a->closed)
        a->closed(a);
}

void acceptor_close(struct acceptor *a)
{
    if (a->fd < 0)
        return;
    a->closing = 2;
    uv_close((uv_handle_t *)&a->poll, on_handle_closed);
    uv_close((uv_handle_t *)&a->retry, on_handle_closed);
    close(a->fd);
    a->fd = -1;
}
