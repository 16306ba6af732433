/* Tests for broker/admin/request.c: percent-decoding and query strings
 * (empty, truncated escapes, boundaries, too many parameters), strict
 * numbers, request bodies and bearer tokens. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "../check_leaks.h"

/* ---- percent-decoding ------------------------------------------------------ */

static const struct {
    const char *in, *out; /* out NULL: -EINVAL */
} pct_table[] = {
    {"", ""},
    {"abc", "abc"},
    {"a%20b", "a b"},
    {"%2F%2f", "//"},
    {"a+b", "a+b"},
    {"%E2%82%ac", "\xe2\x82\xac"},
    {"%25", "%"},
    {"%", NULL},
    {"%2", NULL},
    {"a%", NULL},
    {"%zz", NULL},
    {"%2g", NULL},
    {"%00", NULL},
    {"x%0", NULL},
};

Test(request, pct_decode_table)
{
    for (size_t i = 0; i < sizeof(pct_table) / sizeof(pct_table[0]); i++) {
        const char *in = pct_table[i].in;
        char out[64];
        size_t n = 99;
        int rc = broker__admin_pct_decode(in, strlen(in), out, &n);
        if (!pct_table[i].out) {
            cr_expect_eq(rc, -EINVAL, "\"%s\": rc %d", in, rc);
            continue;
        }
        cr_expect_eq(rc, 0, "\"%s\": rc %d", in, rc);
        cr_expect_eq(n, strlen(pct_table[i].out), "\"%s\": length %zu", in, n);
        cr_expect_str_eq(out, pct_table[i].out, "\"%s\"", in);
    }
}

Test(request, pct_decode_refuses_a_raw_nul)
{
    char out[8];
    size_t n;
    cr_expect_eq(broker__admin_pct_decode("a\0b", 3, out, &n), -EINVAL);
}

/* ---- query strings ------------------------------------------------------------ */

static int parse(const char *q, struct admin_query *out) { return broker__admin_query_parse(q, strlen(q), out); }

Test(request, query_parse_finds_decoded_parameters)
{
    struct admin_query q;
    cr_assert_eq(parse("client_id=a%2Fb%20c&limit=10&flag&=v&client_id=second", &q), 0);
    cr_expect_eq(q.count, 5);
    cr_expect_str_eq(broker__admin_query_find(&q, "client_id"), "a/b c", "the first one counts");
    cr_expect_str_eq(broker__admin_query_find(&q, "limit"), "10");
    cr_expect_str_eq(broker__admin_query_find(&q, "flag"), "");
    cr_expect_str_eq(broker__admin_query_find(&q, ""), "v");
    cr_expect_null(broker__admin_query_find(&q, "topic"));
    cr_expect_null(broker__admin_query_find(&q, "Limit"), "names are case-sensitive");
    broker__admin_query_free(&q);
    check_leaks();
}

Test(request, query_parse_empty_and_empty_segments)
{
    struct admin_query q;
    cr_assert_eq(parse("", &q), 0);
    cr_expect_eq(q.count, 0);
    cr_expect_null(broker__admin_query_find(&q, "limit"));
    cr_assert_eq(parse("&&a=1&", &q), 0);
    cr_expect_eq(q.count, 1);
    cr_expect_str_eq(broker__admin_query_find(&q, "a"), "1");
    broker__admin_query_free(&q);
    cr_expect_eq(parse("a=", &q), 0);
    cr_expect_str_eq(broker__admin_query_find(&q, "a"), "");
    broker__admin_query_free(&q);
    check_leaks();
}

Test(request, query_parse_refuses_bad_escapes_anywhere)
{
    static const char *const bad[] = {"a=%zz", "%zz=1", "limit=1&x=%", "ok=1&%4", "id=%00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct admin_query q;
        cr_expect_eq(parse(bad[i], &q), -EINVAL, "%s", bad[i]);
        cr_expect_eq(q.count, 0, "%s: nothing left to free", bad[i]);
    }
    check_leaks();
}

Test(request, query_parse_boundary_of_parameter_count)
{
    char q16[256] = "", q17[256];
    for (int i = 0; i < BROKER_ADMIN_MAX_PARAMS; i++)
        snprintf(q16 + strlen(q16), sizeof(q16) - strlen(q16), "%sp%d=%d", i ? "&" : "", i, i);
    snprintf(q17, sizeof(q17), "%s&one=more", q16);
    struct admin_query q;
    cr_assert_eq(parse(q16, &q), 0);
    cr_expect_eq(q.count, BROKER_ADMIN_MAX_PARAMS);
    cr_expect_str_eq(broker__admin_query_find(&q, "p15"), "15");
    broker__admin_query_free(&q);
    cr_expect_eq(parse(q17, &q), -E2BIG);
    cr_expect_eq(q.count, 0);
    check_leaks();
}

/* ---- numbers ---------------------------------------------------------------------- */

static const struct {
    const char *in;
    uint64_t max;
    int rc;
    uint64_t out;
} uint_table[] = {
    {"0", 10, 0, 0},
    {"10", 10, 0, 10},
    {"11", 10, -ERANGE, 0},
    {"1000000", 1000000, 0, 1000000},
    {"007", 10, 0, 7},
    {"18446744073709551615", UINT64_MAX, 0, UINT64_MAX},
    {"18446744073709551616", UINT64_MAX, -ERANGE, 0},
    {"99999999999999999999", UINT64_MAX, -ERANGE, 0},
    {"000000000000000000001", UINT64_MAX, -EINVAL, 0},
    {"", 10, -EINVAL, 0},
    {"-1", 10, -EINVAL, 0},
    {"+1", 10, -EINVAL, 0},
    {" 1", 10, -EINVAL, 0},
    {"1 ", 10, -EINVAL, 0},
    {"1e3", 10000, -EINVAL, 0},
    {"0x10", 100, -EINVAL, 0},
    {"ten", 100, -EINVAL, 0},
};

Test(request, uint_parse_table)
{
    for (size_t i = 0; i < sizeof(uint_table) / sizeof(uint_table[0]); i++) {
        uint64_t v = 12345;
        int rc = broker__admin_uint_parse(uint_table[i].in, uint_table[i].max, &v);
        cr_expect_eq(rc, uint_table[i].rc, "\"%s\": rc %d", uint_table[i].in, rc);
        cr_expect_eq(v, rc ? 12345 : uint_table[i].out, "\"%s\": value %llu", uint_table[i].in,
                     (unsigned long long)v);
    }
}

/* ---- request bodies ------------------------------------------------------------------ */

static const struct {
    const char *body;
    bool optional;
    int rc;
    uint32_t node;
} node_table[] = {
    {"{\"node\": 2}", false, 0, 2},
    {" {\"node\":65535}\r\n", false, 0, 65535},
    {"{\"node\":1, \"other\": true}", false, 0, 1},
    {"", true, 0, 0},
    {" \n", true, 0, 0},
    {"{}", true, 0, 0},
    {"", false, -EINVAL, 0},
    {"{}", false, -EINVAL, 0},
    {"{\"node\":0}", true, -EINVAL, 0},
    {"{\"node\":65536}", false, -EINVAL, 0},
    {"{\"node\":-1}", false, -EINVAL, 0},
    {"{\"node\":1.5}", false, -EINVAL, 0},
    {"{\"node\":\"2\"}", false, -EINVAL, 0},
    {"{\"node\":null}", true, -EINVAL, 0},
    {"{\"node\":2", false, -EINVAL, 0},
    {"{\"node\":2} x", false, -EINVAL, 0},
    {"[2]", false, -EINVAL, 0},
    {"null", true, -EINVAL, 0},
    {"node=2", false, -EINVAL, 0},
};

Test(request, body_node_table)
{
    for (size_t i = 0; i < sizeof(node_table) / sizeof(node_table[0]); i++) {
        uint32_t node = 777;
        const char *why = NULL;
        const char *body = node_table[i].body;
        int rc = broker__admin_body_node(body, strlen(body), node_table[i].optional, &node, &why);
        cr_expect_eq(rc, node_table[i].rc, "'%s': rc %d", body, rc);
        if (rc == 0)
            cr_expect_eq(node, node_table[i].node, "'%s': node %u", body, node);
        else
            cr_expect_not_null(why, "'%s': a reason", body);
    }
    check_leaks();
}

Test(request, body_node_length_is_respected)
{
    /* the bytes after len are not part of the body */
    uint32_t node = 0;
    const char *why;
    cr_expect_eq(broker__admin_body_node("{\"node\":3}garbage", 10, false, &node, &why), 0);
    cr_expect_eq(node, 3);
    cr_expect_eq(broker__admin_body_node("{\"node\":3}", 9, false, &node, &why), -EINVAL);
}

Test(request, body_peer)
{
    char peer[32];
    const char *why = NULL;
    const char *ok = "{\"peer\":\"10.0.0.1:4370\"}";
    cr_expect_eq(broker__admin_body_peer(ok, strlen(ok), peer, sizeof(peer), &why), 0);
    cr_expect_str_eq(peer, "10.0.0.1:4370");
    static const char *const bad[] = {"", "{}", "{\"peer\":4370}", "{\"peer\":\"\"}", "{\"peer\":\"nocolon\"}",
                                      "{\"peer\":\"a-very-long-host-name-beyond-32:4370\"}", "\"10.0.0.1:4370\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        cr_expect_eq(broker__admin_body_peer(bad[i], strlen(bad[i]), peer, sizeof(peer), &why), -EINVAL, "'%s'",
                     bad[i]);
        cr_expect_not_null(why, "'%s'", bad[i]);
    }
    check_leaks();
}

/* ---- bearer tokens ----------------------------------------------------------------------- */

Test(request, bearer_token)
{
    static const struct {
        const char *header;
        bool ok;
    } t[] = {
        {"Bearer s3cret", true},   {"bearer s3cret", true},  {"BEARER   s3cret", true}, {"Bearer s3cre", false},
        {"Bearer s3cret2", false}, {"Bearer S3cret", false}, {"Basic s3cret", false},    {"Bearer", false},
        {"Bearer ", false},        {"", false},              {"s3cret", false},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        cr_expect_eq(broker__admin_bearer_ok(t[i].header, strlen(t[i].header), "s3cret"), t[i].ok, "'%s'",
                     t[i].header);
    cr_expect_not(broker__admin_bearer_ok("Bearer ", 7, ""), "an empty token never matches");
    cr_expect_not(broker__admin_bearer_ok("Bearer s3cret", 12, "s3cret"), "the length given counts");
}

/* ---- where admin_listen reaches ------------------------------------------------------------ */

Test(request, listen_loopback)
{
    static const struct {
        const char *listen;
        bool loopback;
    } t[] = {
        {"off", true},
        {"127.0.0.1:18083", true},
        {"127.0.0.3:1", true},
        {"127.255.255.254:18083", true},
        {"[::1]:18083", true},
        {"[::ffff:127.0.0.2]:18083", true},
        {"0.0.0.0:18083", false},
        {"[::]:18083", false},
        {"128.0.0.1:18083", false},
        {"126.255.255.255:18083", false},
        {"10.0.0.1:18083", false},
        {"192.168.1.20:18083", false},
        {"[::2]:18083", false},
        {"[fe80::1]:18083", false},
        {"[::ffff:10.0.0.1]:18083", false},
        {"[::1:18083", false},
        {"127.0.0.1", false}, /* no port: does not parse */
        {"", false},
        {"localhost:18083", false},
        {"127.0.0.1.5:18083", false},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        cr_expect_eq(broker__admin_listen_loopback(t[i].listen), t[i].loopback, "'%s'", t[i].listen);
}

Test(request, body_user_table)
{
    static const struct {
        const char *body;
        bool want_password;
        int rc;
        const char *name, *password;
    } t[] = {
        {"{\"name\":\"alice\",\"password\":\"pw\"}", true, 0, "alice", "pw"},
        {"{\"name\":\"alice\"}", false, 0, "alice", NULL},
        {"{\"name\":\"alice\",\"password\":\"pw\"}", false, 0, "alice", NULL}, /* not wanted: ignored */
        {"{\"name\":\"alice\"}", true, -EINVAL, NULL, NULL},                  /* no password */
        {"{\"name\":\"alice\",\"password\":\"\"}", true, -EINVAL, NULL, NULL},
        {"{\"name\":\"alice\",\"password\":7}", true, -EINVAL, NULL, NULL},
        {"{\"password\":\"pw\"}", true, -EINVAL, NULL, NULL},
        {"{\"name\":\"\"}", false, -EINVAL, NULL, NULL},
        {"{\"name\":\" alice\"}", false, -EINVAL, NULL, NULL},
        {"{\"name\":\"alice \"}", false, -EINVAL, NULL, NULL},
        {"{\"name\":\"al\\nice\"}", false, -EINVAL, NULL, NULL},
        {"{\"name\":\"a l:i\"}", false, 0, "a l:i", NULL},
        {"", false, -EINVAL, NULL, NULL},
        {"[\"alice\"]", false, -EINVAL, NULL, NULL},
        {"{\"name\":\"alice\"", false, -EINVAL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct admin_user_req u;
        const char *why = NULL;
        int rc = broker__admin_body_user(t[i].body, strlen(t[i].body), t[i].want_password, &u, &why);
        cr_expect_eq(rc, t[i].rc, "'%s': %d", t[i].body, rc);
        if (rc == 0) {
            cr_expect_str_eq(u.name, t[i].name);
            if (t[i].password)
                cr_expect_str_eq(u.password, t[i].password);
            else
                cr_expect_null(u.password);
            broker__admin_user_req_free(&u);
        } else {
            cr_expect_not_null(why, "'%s': no reason", t[i].body);
            cr_expect_null(u.name);
        }
    }
    /* a name of 1024 bytes passes, 1025 does not */
    char body[1100], name[1026];
    memset(name, 'n', sizeof(name));
    name[1024] = '\0';
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
    struct admin_user_req u;
    const char *why;
    cr_expect_eq(broker__admin_body_user(body, strlen(body), false, &u, &why), 0);
    broker__admin_user_req_free(&u);
    name[1024] = 'n';
    name[1025] = '\0';
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
    cr_expect_eq(broker__admin_body_user(body, strlen(body), false, &u, &why), -EINVAL);
}

Test(request, body_rule_table)
{
    static const struct {
        const char *body;
        bool want_access;
        int rc, kind, access;
        const char *user;
    } t[] = {
        {"{\"kind\":\"user\",\"user\":\"alice\",\"access\":\"read\",\"topic\":\"a/#\"}", true, 0, 1, 1, "alice"},
        {"{\"user\":\"alice\",\"access\":\"readwrite\",\"topic\":\"a/#\"}", true, 0, 1, 3, "alice"},
        {"{\"access\":\"write\",\"topic\":\"a/+\"}", true, 0, 0, 2, NULL},
        {"{\"kind\":\"pattern\",\"access\":\"deny\",\"topic\":\"c/%c/#\"}", true, 0, 2, 0, NULL},
        {"{\"kind\":\"anonymous\",\"topic\":\"a\"}", false, 0, 0, -1, NULL},
        {"{\"kind\":\"anonymous\",\"topic\":\"a\"}", true, -EINVAL, 0, 0, NULL}, /* no access */
        {"{\"kind\":\"other\",\"access\":\"read\",\"topic\":\"a\"}", true, -EINVAL, 0, 0, NULL},
        {"{\"kind\":\"user\",\"access\":\"read\",\"topic\":\"a\"}", true, -EINVAL, 0, 0, NULL},
        {"{\"kind\":\"pattern\",\"user\":\"u\",\"access\":\"read\",\"topic\":\"a\"}", true, -EINVAL, 0, 0, NULL},
        {"{\"access\":\"sometimes\",\"topic\":\"a\"}", true, -EINVAL, 0, 0, NULL},
        {"{\"access\":\"read\",\"topic\":\"a/#/b\"}", true, -EINVAL, 0, 0, NULL},
        {"{\"access\":\"read\",\"topic\":\"a\\nuser b\"}", true, -EINVAL, 0, 0, NULL},
        {"{\"access\":\"read\",\"topic\":\" a\"}", true, -EINVAL, 0, 0, NULL},
        {"{\"access\":\"read\",\"topic\":\"\"}", true, -EINVAL, 0, 0, NULL},
        {"{\"access\":\"read\"}", true, -EINVAL, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct admin_rule_req r;
        const char *why = NULL;
        int rc = broker__admin_body_rule(t[i].body, strlen(t[i].body), t[i].want_access, &r, &why);
        cr_expect_eq(rc, t[i].rc, "'%s': %d", t[i].body, rc);
        if (rc == 0) {
            cr_expect_eq(r.kind, t[i].kind, "'%s'", t[i].body);
            cr_expect_eq(r.access, t[i].access, "'%s'", t[i].body);
            if (t[i].user)
                cr_expect_str_eq(r.user, t[i].user);
            else
                cr_expect_null(r.user);
            broker__admin_rule_req_free(&r);
        } else {
            cr_expect_not_null(why);
        }
    }
    cr_expect_eq(broker__admin_access_parse("readwrite"), 3);
    cr_expect_eq(broker__admin_access_parse("Read"), -1);
    cr_expect_str_eq(broker__admin_access_name(0), "deny");
}
