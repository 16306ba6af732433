/* transport: the generic filter stack of transport.h. Input runs bottom up
 * (the socket's bytes through f[0], then through f[1] when there is one, by
 * way of the stack's mid buffer), output top down; bytes a filter sends back
 * towards the socket (handshake records, a pong, an upgrade response) go
 * through the filters below it, so a wss upgrade response is encrypted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"

/* Records "name: why" of filter i for the log and returns rc. */
static int failed(struct transport *t, int i, int rc)
{
    const struct filter *f = t->f[i];
    const char *why = f->ops->why ? f->ops->why(f) : NULL;
    snprintf(t->why, sizeof(t->why), "%s: %s", f->ops->name, why && *why ? why : (rc == -ENOMEM ? "out of memory" : "error"));
    return rc;
}

/* Bytes filter i sends down (p, n, borrowed) -> wire, through the filters
 * below it. */
static int send_down(struct transport *t, int i, const uint8_t *p, size_t n, struct buf *wire)
{
    if (!n)
        return 0;
    if (i == 0)
        return buf_append(wire, p, n);
    struct buf tmp = {0};
    int rc = 0;
    for (int k = i - 1; k >= 0 && !rc; k--) {
        struct buf out = {0};
        rc = t->f[k]->ops->output(t->f[k], p, n, &out);
        if (rc)
            rc = failed(t, k, rc);
        buf_free(&tmp);
        tmp = out;
        p = tmp.data;
        n = tmp.len;
    }
    if (!rc)
        rc = buf_append(wire, p, n);
    buf_free(&tmp);
    return rc;
}

int transport_input(struct transport *t, const uint8_t *in, size_t n, struct buf *rbuf, struct buf *wire)
{
    if (t->why[0])
        return -EPROTO; /* failed before: nothing more goes up */
    if (t->n == 1) {
        int rc = t->f[0]->ops->input(t->f[0], in, n, rbuf, wire);
        return rc < 0 ? failed(t, 0, rc) : rc;
    }
    /* two filters: f[0]'s output for f[1] passes through mid */
    struct buf down = {0};
    int rc = t->f[0]->ops->input(t->f[0], in, n, &t->mid, wire);
    if (rc < 0)
        return failed(t, 0, rc);
    int eof = rc;
    if (t->mid.len) {
        rc = t->f[1]->ops->input(t->f[1], t->mid.data, t->mid.len, rbuf, &down);
        t->mid.len = 0;
        buf_shrink(&t->mid, 64 * 1024);
        int sent = send_down(t, 1, down.data, down.len, wire);
        buf_free(&down);
        if (rc < 0)
            return failed(t, 1, rc);
        if (sent)
            return sent;
        if (rc == TRANSPORT_EOF)
            return rc;
    }
    return eof;
}

int transport_output(struct transport *t, const uint8_t *p, size_t n, struct buf *wire)
{
    if (t->why[0])
        return -EPROTO;
    int top = t->n - 1;
    struct buf out = {0};
    int rc = t->f[top]->ops->output(t->f[top], p, n, top == 0 ? wire : &out);
    if (rc) {
        buf_free(&out);
        return failed(t, top, rc);
    }
    if (top > 0)
        rc = send_down(t, top, out.data, out.len, wire);
    buf_free(&out);
    return rc;
}

void transport_close(struct transport *t, struct buf *wire)
{
    if (t->why[0])
        return; /* a failed filter already put its goodbye (an alert) in wire */
    for (int i = t->n - 1; i >= 0; i--) {
        struct buf down = {0};
        if (!t->f[i]->ops->close)
            continue;
        t->f[i]->ops->close(t->f[i], &down);
        if (send_down(t, i, down.data, down.len, wire) != 0) {
            buf_free(&down);
            return;
        }
        buf_free(&down);
    }
}

const char *transport_why(const struct transport *t) { return t->why[0] ? t->why : "closed"; }

int transport_identity(const struct transport *t, char *out, size_t outlen)
{
    for (int i = 0; i < t->n; i++)
        if (t->f[i]->ops->identity && t->f[i]->ops->identity(t->f[i], out, outlen) == 0)
            return 0;
    return -ENOENT;
}

void transport_free(struct transport *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n; i++)
        t->f[i]->ops->free(t->f[i]);
    buf_free(&t->mid);
    free(t);
}

int transport_new(const char *name, struct transport **out)
{
    struct transport *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->name = name;
    *out = t;
    return 0;
}

int transport_push(struct transport *t, struct filter *f)
{
    if (t->n >= TRANSPORT_MAX_FILTERS)
        return -ENOSPC;
    t->f[t->n++] = f;
    return 0;
}
