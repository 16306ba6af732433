/* transport_tls: the tls filter of a listener's stack (transport.h), the
 * server side of common/tls.h. Input feeds the socket's bytes to the engine
 * and hands the decrypted bytes up; what the engine has to send (handshake
 * records, alerts, encrypted records) goes down after every call, also after
 * a failure, so that the peer gets the alert naming the reason. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"
#include "transport.h"

struct tls_filter {
    struct filter f;
    struct tls_conn conn;
};

static const struct filter_ops tls_ops;

static struct tls_filter *tls_of(struct filter *f) { return (struct tls_filter *)f; }
static const struct tls_filter *tls_of_const(const struct filter *f) { return (const struct tls_filter *)f; }

static int tls_input(struct filter *f, const uint8_t *in, size_t n, struct buf *up, struct buf *down)
{
    struct tls_conn *t = &tls_of(f)->conn;
    int rc = tls_conn_input(t, in, n, up);
    int out = tls_conn_output(t, down);
    if (rc)
        return rc;
    if (out)
        return out;
    return t->peer_closed ? TRANSPORT_EOF : 0;
}

static int tls_output(struct filter *f, const uint8_t *p, size_t n, struct buf *down)
{
    struct tls_conn *t = &tls_of(f)->conn;
    int rc = tls_conn_write(t, p, n);
    if (rc)
        return rc;
    return tls_conn_output(t, down);
}

static void tls_close(struct filter *f, struct buf *down)
{
    struct tls_conn *t = &tls_of(f)->conn;
    tls_conn_shutdown(t);
    tls_conn_output(t, down); /* out of memory: the peer sees the end without close_notify */
}

static const char *tls_why(const struct filter *f) { return tls_of_const(f)->conn.why; }

static int tls_identity(const struct filter *f, char *out, size_t outlen)
{
    return tls_conn_identity(&tls_of_const(f)->conn, out, outlen);
}

static void tls_free(struct filter *f)
{
    struct tls_filter *tf = tls_of(f);
    tls_conn_free(&tf->conn);
    free(tf);
}

static const struct filter_ops tls_ops = {
    .name = "tls",
    .input = tls_input,
    .output = tls_output,
    .close = tls_close,
    .why = tls_why,
    .identity = tls_identity,
    .free = tls_free,
};

int transport_tls_filter_new(struct tls_ctx *ctx, struct filter **out)
{
    struct tls_filter *tf = calloc(1, sizeof(*tf));
    if (!tf)
        return -ENOMEM;
    tf->f.ops = &tls_ops;
    int rc = tls_conn_init(&tf->conn, ctx, NULL);
    if (rc) {
        free(tf);
        return rc;
    }
    *out = &tf->f;
    return 0;
}

bool transport_tls_describe(const struct transport *t, char *out, size_t outlen)
{
    for (int i = 0; t && i < t->n; i++) {
        if (t->f[i]->ops != &tls_ops)
            continue;
        const struct tls_conn *c = &tls_of_const(t->f[i])->conn;
        if (!c->established)
            return false;
        tls_conn_describe(c, out, outlen);
        return true;
    }
    return false;
}
