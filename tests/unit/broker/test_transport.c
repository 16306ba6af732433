/* broker/transport.c and transport_tls.c: the filter stack with two fake
 * filters (the order bytes take up and down, mid, failures, goodbyes), then
 * the tls filter against a common/tls client pumped in memory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"
#include "transport.h"

/* A fake filter: input tags every byte going up with its mark ('a' -> "Xa"
 * for mark X), output likewise going down; input of '!' fails, of '?' answers
 * down with "<mark>pong", of '.' is the end of the stream. */
struct fake {
    struct filter f;
    char mark;
    char why[32];
    int *freed;
};

static int fake_input(struct filter *f, const uint8_t *in, size_t n, struct buf *up, struct buf *down)
{
    struct fake *k = (struct fake *)f;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '!') {
            snprintf(k->why, sizeof(k->why), "bang at %zu", i);
            buf_append(down, "alert", 5);
            return -EPROTO;
        }
        if (in[i] == '.')
            return TRANSPORT_EOF;
        if (in[i] == '?') {
            char pong[8];
            snprintf(pong, sizeof(pong), "%cpong", k->mark);
            buf_append(down, pong, strlen(pong));
            continue;
        }
        uint8_t two[2] = {(uint8_t)k->mark, in[i]};
        buf_append(up, two, 2);
    }
    return 0;
}

static int fake_output(struct filter *f, const uint8_t *p, size_t n, struct buf *down)
{
    struct fake *k = (struct fake *)f;
    for (size_t i = 0; i < n; i++) {
        uint8_t two[2] = {(uint8_t)k->mark, p[i]};
        if (buf_append(down, two, 2))
            return -ENOMEM;
    }
    return 0;
}

static void fake_close(struct filter *f, struct buf *down)
{
    struct fake *k = (struct fake *)f;
    char bye[8];
    snprintf(bye, sizeof(bye), "%cbye", k->mark);
    buf_append(down, bye, strlen(bye));
}

static const char *fake_why(const struct filter *f) { return ((const struct fake *)f)->why; }

static int fake_identity(const struct filter *f, char *out, size_t outlen)
{
    const struct fake *k = (const struct fake *)f;
    if (k->mark != 'T')
        return -ENOENT;
    snprintf(out, outlen, "cn-of-%c", k->mark);
    return 0;
}

static void fake_free(struct filter *f)
{
    struct fake *k = (struct fake *)f;
    (*k->freed)++;
    free(k);
}

static const struct filter_ops fake_ops = {
    "fake", fake_input, fake_output, fake_close, fake_why, fake_identity, fake_free,
};

static struct filter *fake_new(char mark, int *freed)
{
    struct fake *k = calloc(1, sizeof(*k));
    cr_assert_not_null(k);
    k->f.ops = &fake_ops;
    k->mark = mark;
    k->freed = freed;
    return &k->f;
}

static struct transport *stack(int n, int *freed)
{
    struct transport *t;
    cr_assert_eq(transport_new("test", &t), 0);
    cr_assert_eq(transport_push(t, fake_new('T', freed)), 0);
    if (n > 1)
        cr_assert_eq(transport_push(t, fake_new('W', freed)), 0);
    return t;
}

static void expect_buf(const struct buf *b, const char *s)
{
    cr_expect_eq(b->len, strlen(s), "got %zu bytes \"%.*s\", expected \"%s\"", b->len, (int)b->len,
                 (const char *)b->data, s);
    if (b->len == strlen(s))
        cr_expect_eq(memcmp(b->data, s, b->len), 0, "got \"%.*s\", expected \"%s\"", (int)b->len,
                     (const char *)b->data, s);
}

Test(transport, one_filter_up_and_down)
{
    int freed = 0;
    struct transport *t = stack(1, &freed);
    struct buf up = {0}, wire = {0};
    cr_expect_eq(transport_input(t, (const uint8_t *)"ab?", 3, &up, &wire), 0);
    expect_buf(&up, "TaTb");
    expect_buf(&wire, "Tpong");
    wire.len = 0;
    cr_expect_eq(transport_output(t, (const uint8_t *)"xy", 2, &wire), 0);
    expect_buf(&wire, "TxTy");
    char id[32];
    cr_expect_eq(transport_identity(t, id, sizeof(id)), 0);
    cr_expect_str_eq(id, "cn-of-T");
    buf_free(&up);
    buf_free(&wire);
    transport_free(t);
    cr_expect_eq(freed, 1);
}

Test(transport, two_filters_pass_through_mid_and_below)
{
    int freed = 0;
    struct transport *t = stack(2, &freed);
    struct buf up = {0}, wire = {0};
    /* up: through T, mid, then W; T's answer goes straight to the wire */
    cr_expect_eq(transport_input(t, (const uint8_t *)"a?", 2, &up, &wire), 0);
    expect_buf(&up, "WTWa");
    expect_buf(&wire, "Tpong");
    buf_free(&up);
    up = (struct buf){0};
    wire.len = 0;
    /* output: W first, then T */
    cr_expect_eq(transport_output(t, (const uint8_t *)"x", 1, &wire), 0);
    expect_buf(&wire, "TWTx");
    cr_expect_eq(t->mid.len, 0u);
    /* goodbyes top first, W's through T */
    wire.len = 0;
    transport_close(t, &wire);
    expect_buf(&wire, "TWTbTyTeTbye");
    buf_free(&up);
    buf_free(&wire);
    transport_free(t);
    cr_expect_eq(freed, 2);
}

Test(transport, failure_names_the_filter_and_stops_the_stack)
{
    int freed = 0;
    struct transport *t = stack(1, &freed);
    struct buf up = {0}, wire = {0};
    cr_expect_eq(transport_input(t, (const uint8_t *)"a!b", 3, &up, &wire), -EPROTO);
    cr_expect_str_eq(transport_why(t), "fake: bang at 1");
    expect_buf(&wire, "alert");
    /* nothing more goes through, and no goodbye after the alert */
    wire.len = 0;
    cr_expect_lt(transport_input(t, (const uint8_t *)"c", 1, &up, &wire), 0);
    cr_expect_lt(transport_output(t, (const uint8_t *)"c", 1, &wire), 0);
    transport_close(t, &wire);
    cr_expect_eq(wire.len, 0u);
    buf_free(&up);
    buf_free(&wire);
    transport_free(t);
}

Test(transport, end_of_stream_after_what_came_before)
{
    int freed = 0;
    struct transport *t = stack(2, &freed);
    struct buf up = {0}, wire = {0};
    cr_expect_eq(transport_input(t, (const uint8_t *)"ab", 2, &up, &wire), 0);
    cr_expect_eq(transport_input(t, (const uint8_t *)"c.", 2, &up, &wire), TRANSPORT_EOF);
    expect_buf(&up, "WTWaWTWbWTWc");
    struct filter *x = fake_new('X', &freed);
    cr_expect_eq(transport_push(t, x), -ENOSPC);
    cr_expect_eq(freed, 0, "the filter not pushed stays the caller's");
    x->ops->free(x);
    buf_free(&up);
    buf_free(&wire);
    transport_free(t);
    cr_expect_eq(freed, 3);
}

/* --- the tls filter against a common/tls client ------------------------------ */

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/starling-transport-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s '%s' >/dev/null", MAKE_CERTS, dir);
    cr_assert_eq(system(cmd), 0);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static struct tls_ctx *ctx(bool server, bool with_client_cert)
{
    char cert[128], key[128], ca[128];
    snprintf(cert, sizeof(cert), "%s/%s.crt", dir, server ? "server" : "client");
    snprintf(key, sizeof(key), "%s/%s.key", dir, server ? "server" : "client");
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    struct tls_config cfg = {.cafile = ca, .require_certificate = server};
    if (server || with_client_cert) {
        cfg.certfile = cert;
        cfg.keyfile = key;
    }
    struct tls_ctx *x;
    char err[256];
    cr_assert_eq(tls_ctx_new(&cfg, server, &x, err, sizeof(err)), 0, "%s", err);
    return x;
}

/* Pumps bytes both ways until neither side has any; returns the stack's last
 * input result. */
static int pump(struct transport *t, struct tls_conn *c, struct buf *up, struct buf *cplain)
{
    int rc = 0;
    for (int round = 0; round < 20; round++) {
        struct buf w = {0}, back = {0};
        cr_assert_eq(tls_conn_output(c, &w), 0);
        if (w.len)
            rc = transport_input(t, w.data, w.len, up, &back);
        if (back.len)
            tls_conn_input(c, back.data, back.len, cplain);
        bool idle = !w.len && !back.len;
        buf_free(&w);
        buf_free(&back);
        if (idle || rc < 0)
            break;
    }
    return rc;
}

Test(transport_tls, handshake_data_identity_and_close_notify, .init = setup, .fini = teardown)
{
    struct tls_ctx *sctx = ctx(true, false), *cctx = ctx(false, true);
    struct transport *t;
    struct filter *f;
    cr_assert_eq(transport_new("tls", &t), 0);
    cr_assert_eq(transport_tls_filter_new(sctx, &f), 0);
    cr_assert_eq(transport_push(t, f), 0);
    tls_ctx_free(sctx); /* the connection holds its own reference (a reload drops the listener's) */
    struct tls_conn c;
    cr_assert_eq(tls_conn_init(&c, cctx, "localhost"), 0);
    cr_assert_eq(tls_conn_connect(&c), 0);
    struct buf up = {0}, cplain = {0};
    char what[96];
    cr_expect_not(transport_tls_describe(t, what, sizeof(what)));
    cr_assert_eq(tls_conn_write(&c, (const uint8_t *)"CONNECT", 7), 0);
    cr_expect_eq(pump(t, &c, &up, &cplain), 0);
    expect_buf(&up, "CONNECT");
    cr_expect(transport_tls_describe(t, what, sizeof(what)));
    cr_expect_not_null(strstr(what, "TLSv1.3"), "%s", what);
    char id[64];
    cr_expect_eq(transport_identity(t, id, sizeof(id)), 0);
    cr_expect_str_eq(id, "client");

    struct buf wire = {0};
    cr_assert_eq(transport_output(t, (const uint8_t *)"CONNACK", 7, &wire), 0);
    cr_assert_eq(tls_conn_input(&c, wire.data, wire.len, &cplain), 0);
    expect_buf(&cplain, "CONNACK");
    wire.len = 0;
    transport_close(t, &wire); /* close_notify */
    cplain.len = 0;
    cr_assert_eq(tls_conn_input(&c, wire.data, wire.len, &cplain), 0);
    cr_expect(c.peer_closed);

    /* and the client's close_notify is the end of the stream */
    tls_conn_shutdown(&c);
    cr_expect_eq(pump(t, &c, &up, &cplain), TRANSPORT_EOF);
    buf_free(&wire);
    buf_free(&up);
    buf_free(&cplain);
    tls_conn_free(&c);
    tls_ctx_free(cctx);
    transport_free(t);
}

Test(transport_tls, failure_has_a_reason_and_an_alert, .init = setup, .fini = teardown)
{
    struct tls_ctx *sctx = ctx(true, false), *cctx = ctx(false, false);
    struct transport *t;
    struct filter *f;
    cr_assert_eq(transport_new("tls", &t), 0);
    cr_assert_eq(transport_tls_filter_new(sctx, &f), 0);
    transport_push(t, f);
    struct tls_conn c;
    cr_assert_eq(tls_conn_init(&c, cctx, "localhost"), 0);
    cr_assert_eq(tls_conn_connect(&c), 0);
    struct buf up = {0}, cplain = {0};
    cr_expect_lt(pump(t, &c, &up, &cplain), 0);
    cr_expect_not_null(strstr(transport_why(t), "tls: peer did not return a certificate"), "%s",
                       transport_why(t));
    cr_expect_eq(up.len, 0u);
    /* plaintext MQTT on a fresh stack */
    struct transport *t2;
    cr_assert_eq(transport_new("tls", &t2), 0);
    cr_assert_eq(transport_tls_filter_new(sctx, &f), 0);
    transport_push(t2, f);
    static const uint8_t connect[] = {0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0};
    struct buf wire = {0};
    cr_expect_lt(transport_input(t2, connect, sizeof(connect), &up, &wire), 0);
    cr_expect_not_null(strstr(transport_why(t2), "tls: "), "%s", transport_why(t2));
    buf_free(&wire);
    buf_free(&up);
    buf_free(&cplain);
    tls_conn_free(&c);
    tls_ctx_free(cctx);
    tls_ctx_free(sctx);
    transport_free(t);
    transport_free(t2);
}
