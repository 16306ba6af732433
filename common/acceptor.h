/* acceptor: a listening TCP socket that can stop accepting for a while.
 *
 * libuv's uv_listen cannot pause: on EMFILE its accept loop closes its one
 * spare descriptor, accepts and closes (resets) every connection waiting in
 * the backlog, and when the spare cannot be reopened it calls back with
 * UV_EMFILE and tries again at once, for ever. An acceptor is a plain
 * non-blocking socket watched with uv_poll instead. When readable, up to
 * ACCEPTOR_BATCH connections are accepted and handed to take (which owns the
 * descriptor from then on). When accept fails with EMFILE, ENFILE, ENOBUFS or
 * ENOMEM, or when check says so, polling stops and resumes after
 * ACCEPTOR_RETRY_MS: the connections not yet accepted wait in the kernel's
 * backlog (their clients see a slow answer, not a reset). The owner says why
 * it paused in its own log, rate-limited (on_pause).
 *
 * Used by the MQTT and admin listeners (broker/listen.c) and the cluster port
 * (cluster/peer.c). Lifecycle as libuv's handles: set the callbacks and name,
 * acceptor_open, acceptor_close; free only after closed ran. */
#ifndef STARLING_COMMON_ACCEPTOR_H
#define STARLING_COMMON_ACCEPTOR_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define ACCEPTOR_BATCH 128    /* connections per readable event: other handles get a turn */
#define ACCEPTOR_RETRY_MS 250

struct acceptor {
    uv_poll_t poll;           /* on fd, while accepting */
    uv_timer_t retry;         /* accepting resumes when it fires */
    int fd;                   /* -1 when closed (acceptor_open sets it first) */
    bool paused;
    int closing;              /* handles still to close */
    char name[96];            /* for the owner's logs */
    void *data;               /* the owner's */
    uint32_t keep_free;       /* the owner's, for check: descriptors to leave free */
    /* Before each accept, may be NULL: NULL to accept, or why to pause
     * (a static string, passed on to on_pause). */
    const char *(*check)(struct acceptor *a);
    /* A new connection, non-blocking and close-on-exec: fd transferred. */
    void (*take)(struct acceptor *a, int fd);
    /* Accepting paused for ACCEPTOR_RETRY_MS, may be NULL: err is accept's
     * errno, or 0 when check or the poll handle asked; why is readable. */
    void (*on_pause)(struct acceptor *a, int err, const char *why);
    void (*closed)(struct acceptor *a); /* from acceptor_close, may be NULL */
};

/* Binds addr (borrowed), listens and starts accepting. Returns 0 or a
 * negative errno / UV_* error; after a failure a->fd is -1 unless the handles
 * were made (then acceptor_close closes them as after a success). */
int acceptor_open(struct acceptor *a, uv_loop_t *loop, const struct sockaddr *addr, int backlog);
/* Stops accepting and closes the socket; a->closed runs once its handles are
 * closed. Does nothing (and closed does not run) when a is not open. */
void acceptor_close(struct acceptor *a);

#endif
