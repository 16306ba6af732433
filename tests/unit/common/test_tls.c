/* common/tls.h: the memory-BIO engine, a server and a client pumped into each
 * other in memory, with certificates from deploy/make-certs.sh. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "tls.h"

static char dir[64], other[64];

static void mkcerts(char *d)
{
    strcpy(d, "/tmp/starling-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s '%s' >/dev/null", MAKE_CERTS, d);
    cr_assert_eq(system(cmd), 0, "deploy/make-certs.sh failed");
}

static void setup(void)
{
    mkcerts(dir);
    mkcerts(other);
}

static void teardown(void)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, other);
    cr_assert_eq(system(cmd), 0);
}

static char *path(const char *d, const char *f)
{
    static char p[16][128];
    static int i;
    i = (i + 1) % 16;
    snprintf(p[i], sizeof(p[i]), "%s/%s", d, f);
    return p[i];
}

struct pair {
    struct tls_ctx *sctx, *cctx;
    struct tls_conn s, c;
    struct buf splain, cplain;
    int src, crc;
};

static struct tls_ctx *ctx(const struct tls_config *cfg, bool server)
{
    struct tls_ctx *x;
    char err[256];
    int rc = tls_ctx_new(cfg, server, &x, err, sizeof(err));
    cr_assert_eq(rc, 0, "tls_ctx_new: %s", err);
    return x;
}

/* Moves wire bytes both ways until neither side has anything to send. */
static void pump(struct pair *p)
{
    for (int round = 0; round < 20; round++) {
        struct buf w = {0};
        cr_assert_eq(tls_conn_output(&p->c, &w), 0);
        if (w.len && !p->src)
            p->src = tls_conn_input(&p->s, w.data, w.len, &p->splain);
        size_t moved = w.len;
        w.len = 0;
        cr_assert_eq(tls_conn_output(&p->s, &w), 0);
        if (w.len && !p->crc)
            p->crc = tls_conn_input(&p->c, w.data, w.len, &p->cplain);
        moved += w.len;
        buf_free(&w);
        if (!moved)
            return;
    }
}

static void start(struct pair *p, const struct tls_config *scfg, const struct tls_config *ccfg, const char *name)
{
    memset(p, 0, sizeof(*p));
    p->sctx = ctx(scfg, true);
    p->cctx = ctx(ccfg, false);
    cr_assert_eq(tls_conn_init(&p->s, p->sctx, NULL), 0);
    cr_assert_eq(tls_conn_init(&p->c, p->cctx, name), 0);
    /* the connections keep their contexts: drop ours at once */
    tls_ctx_free(p->sctx);
    tls_ctx_free(p->cctx);
    cr_assert_eq(tls_conn_connect(&p->c), 0);
    pump(p);
}

static void stop(struct pair *p)
{
    tls_conn_free(&p->s);
    tls_conn_free(&p->c);
    buf_free(&p->splain);
    buf_free(&p->cplain);
}

TestSuite(tls, .init = setup, .fini = teardown);

Test(tls, data_both_ways_and_the_client_identity)
{
    struct tls_config s = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key"),
                           .cafile = path(dir, "ca.crt"), .require_certificate = true};
    struct tls_config c = {.certfile = path(dir, "client.crt"), .keyfile = path(dir, "client.key"),
                           .cafile = path(dir, "ca.crt")};
    struct pair p;
    /* written before the handshake: kept, then sent */
    memset(&p, 0, sizeof(p));
    p.sctx = ctx(&s, true);
    p.cctx = ctx(&c, false);
    cr_assert_eq(tls_conn_init(&p.s, p.sctx, NULL), 0);
    cr_assert_eq(tls_conn_init(&p.c, p.cctx, "127.0.0.1"), 0);
    tls_ctx_free(p.sctx);
    tls_ctx_free(p.cctx);
    cr_assert_eq(tls_conn_write(&p.c, (const uint8_t *)"early", 5), 0);
    cr_assert_eq(tls_conn_connect(&p.c), 0);
    pump(&p);
    cr_assert_eq(p.src, 0, "server: %s", p.s.why);
    cr_assert_eq(p.crc, 0, "client: %s", p.c.why);
    cr_assert(p.s.established && p.c.established);
    cr_assert_eq(p.splain.len, 5);
    cr_assert_arr_eq(p.splain.data, "early", 5);

    static uint8_t big[200000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    cr_assert_eq(tls_conn_write(&p.s, big, sizeof(big)), 0);
    pump(&p);
    cr_assert_eq(p.cplain.len, sizeof(big));
    cr_assert_arr_eq(p.cplain.data, big, sizeof(big));

    char id[64];
    cr_assert_eq(tls_conn_identity(&p.s, id, sizeof(id)), 0);
    cr_assert_str_eq(id, "client");
    cr_assert_eq(tls_conn_identity(&p.s, id, 3), -ENOSPC);
    char d[96];
    tls_conn_describe(&p.s, d, sizeof(d));
    cr_assert(strncmp(d, "TLSv1.", 6) == 0, "%s", d);

    tls_conn_shutdown(&p.c);
    pump(&p);
    cr_assert(p.s.peer_closed);
    stop(&p);
}

Test(tls, a_server_from_another_ca_is_refused_by_name)
{
    struct tls_config s = {.certfile = path(other, "server.crt"), .keyfile = path(other, "server.key")};
    struct tls_config c = {.cafile = path(dir, "ca.crt")};
    struct pair p;
    start(&p, &s, &c, "127.0.0.1");
    cr_assert_eq(p.crc, -EPROTO);
    cr_assert(strstr(p.c.why, "certificate verify failed"), "%s", p.c.why);
    cr_assert(!p.c.established);
    stop(&p);
}

Test(tls, a_host_name_not_in_the_certificate_is_refused)
{
    struct tls_config s = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key")};
    struct tls_config c = {.cafile = path(dir, "ca.crt")};
    struct pair p;
    start(&p, &s, &c, "broker.example");
    cr_assert_eq(p.crc, -EPROTO);
    cr_assert(strstr(p.c.why, "hostname mismatch"), "%s", p.c.why);
    stop(&p);
}

Test(tls, require_certificate_refuses_a_client_without_one)
{
    struct tls_config s = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key"),
                           .cafile = path(dir, "ca.crt"), .require_certificate = true};
    struct tls_config c = {.cafile = path(dir, "ca.crt")};
    struct pair p;
    start(&p, &s, &c, NULL);
    cr_assert_eq(p.src, -EPROTO);
    cr_assert(strstr(p.s.why, "certificate"), "%s", p.s.why);
    char id[64];
    cr_assert_eq(tls_conn_identity(&p.s, id, sizeof(id)), -ENOENT);
    stop(&p);
}

Test(tls, a_client_certificate_from_another_ca_is_refused)
{
    struct tls_config s = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key"),
                           .cafile = path(dir, "ca.crt"), .require_certificate = true};
    struct tls_config c = {.certfile = path(other, "client.crt"), .keyfile = path(other, "client.key"),
                           .cafile = path(dir, "ca.crt")};
    struct pair p;
    start(&p, &s, &c, NULL);
    cr_assert_eq(p.src, -EPROTO);
    cr_assert(strstr(p.s.why, "certificate verify failed"), "%s", p.s.why);
    stop(&p);
}

Test(tls, garbage_is_a_protocol_error_with_a_reason)
{
    struct tls_config s = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key")};
    struct tls_ctx *x = ctx(&s, true);
    struct tls_conn t;
    cr_assert_eq(tls_conn_init(&t, x, NULL), 0);
    tls_ctx_free(x);
    struct buf plain = {0};
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(tls_conn_input(&t, (const uint8_t *)http, strlen(http), &plain), -EPROTO);
    cr_assert(t.why[0]);
    cr_assert_eq(plain.len, 0);
    tls_conn_free(&t);
    buf_free(&plain);
}

Test(tls, configuration_errors_name_the_file_and_the_reason)
{
    char err[256];
    struct tls_ctx *x;
    struct tls_config c1 = {.certfile = path(dir, "server.crt"), .keyfile = "/nonexistent/k.pem"};
    cr_assert_eq(tls_ctx_new(&c1, true, &x, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "keyfile /nonexistent/k.pem: No such file"), "%s", err);
    struct tls_config c2 = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "client.key")};
    cr_assert_eq(tls_ctx_new(&c2, true, &x, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "mismatch"), "%s", err);
    struct tls_config c3 = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key"),
                            .tls_version = "tlsv1.1"};
    cr_assert_eq(tls_ctx_new(&c3, true, &x, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "tls_version tlsv1.1"), "%s", err);
    struct tls_config c4 = {0};
    cr_assert_eq(tls_ctx_new(&c4, true, &x, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "certfile"), "%s", err);
    struct tls_config c5 = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key"),
                            .require_certificate = true};
    cr_assert_eq(tls_ctx_new(&c5, true, &x, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "cafile"), "%s", err);
    struct tls_config c6 = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key"),
                            .ciphers = "NO-SUCH-CIPHER"};
    cr_assert_eq(tls_ctx_new(&c6, true, &x, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "ciphers"), "%s", err);
}

Test(tls, tlsv1_3_minimum_refuses_a_tlsv1_2_only_client)
{
    struct tls_config s = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key"),
                           .tls_version = "tlsv1.3"};
    struct tls_config c = {.cafile = path(dir, "ca.crt")};
    struct pair p;
    memset(&p, 0, sizeof(p));
    p.sctx = ctx(&s, true);
    p.cctx = ctx(&c, false);
    /* a client that stops at 1.2 */
    cr_assert_eq(tls_conn_init(&p.s, p.sctx, NULL), 0);
    cr_assert_eq(tls_conn_init(&p.c, p.cctx, NULL), 0);
    tls_ctx_free(p.sctx);
    tls_ctx_free(p.cctx);
    cr_assert(SSL_set_max_proto_version((SSL *)p.c.ssl, TLS1_2_VERSION));
    cr_assert_eq(tls_conn_connect(&p.c), 0);
    pump(&p);
    cr_assert_eq(p.src, -EPROTO);
    cr_assert(strstr(p.s.why, "protocol"), "%s", p.s.why);
    stop(&p);
}

Test(tls, max_version_pins_one_version)
{
    char err[256], how[96];
    struct tls_ctx *x;
    struct tls_config s = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key")};
    struct tls_config c12 = {.insecure = true, .tls_version = "tlsv1.2", .max_version = "tlsv1.2"};
    struct pair p;
    start(&p, &s, &c12, NULL);
    cr_assert_eq(p.src, 0);
    cr_assert_eq(p.crc, 0);
    cr_assert(p.c.established);
    tls_conn_describe(&p.c, how, sizeof(how));
    cr_assert(strncmp(how, "TLSv1.2 ", 8) == 0, "%s", how);
    stop(&p);
    /* against a server that starts at 1.3: refused */
    struct tls_config s13 = {.certfile = path(dir, "server.crt"), .keyfile = path(dir, "server.key"),
                             .tls_version = "tlsv1.3"};
    start(&p, &s13, &c12, NULL);
    cr_assert(p.src == -EPROTO || p.crc == -EPROTO);
    cr_assert(!p.c.established);
    stop(&p);
    /* a version OpenSSL has but the engine does not speak, and one below the minimum */
    struct tls_config bad = {.insecure = true, .max_version = "tlsv1.1"};
    cr_assert_eq(tls_ctx_new(&bad, false, &x, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "tlsv1.1"), "%s", err);
    struct tls_config below = {.insecure = true, .tls_version = "tlsv1.3", .max_version = "tlsv1.2"};
    cr_assert_eq(tls_ctx_new(&below, false, &x, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "not below the minimum"), "%s", err);
}
