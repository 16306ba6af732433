/* Tests for tools/bench/template.c: topic variables, %rand_N, truncation, errors. */
#include <criterion/criterion.h>
#include <string.h>

#include "internal.h"

static uint64_t rng = 42;

static const char *expand(const char *tpl, const char *user, char *out, size_t cap)
{
    struct bench_tpl t;
    char err[200];
    cr_assert_eq(bench__tpl_parse(&t, tpl, err, sizeof(err)), 0, "%s: %s", tpl, err);
    struct bench_tpl_ctx ctx = {.seq = 17, .client_id = "host_bench_pub_9_17", .user = user,
                                .msg_seq = 1234, .rng = &rng};
    size_t n = bench__tpl_expand(&t, &ctx, out, cap);
    cr_assert_eq(n, strlen(out), "length of '%s'", out);
    bench__tpl_free(&t);
    return out;
}

struct tcase {
    const char *tpl;
    const char *user;
    const char *want;
    bool per_message;
};

Test(bench_template, variables)
{
    static const struct tcase cases[] = {
        {"bench/topic", NULL, "bench/topic", false},
        {"bench/%i", NULL, "bench/17", false},
        {"%i", NULL, "17", false},
        {"a/%c/b", NULL, "a/host_bench_pub_9_17/b", false},
        {"u/%u", "alice", "u/alice", false},
        {"u/%u", NULL, "u/%u", false}, /* no user: left as it is, like emqtt-bench */
        {"seq/%s", NULL, "seq/1234", true},
        {"dev-%i-x", NULL, "dev-17-x", false},
        {"%i%i/%i", NULL, "1717/17", false},
        {"100%", NULL, "100%", false},
        {"50%/off", NULL, "50%/off", false},
        {"%x/%", NULL, "%x/%", false},
        {"%rand/x", NULL, "%rand/x", false},
        {"", NULL, "", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        struct bench_tpl t;
        char err[200];
        cr_assert_eq(bench__tpl_parse(&t, cases[i].tpl, err, sizeof(err)), 0);
        cr_assert_eq(t.per_message, cases[i].per_message, "per_message of '%s'", cases[i].tpl);
        bench__tpl_free(&t);
        cr_assert_str_eq(expand(cases[i].tpl, cases[i].user, out, sizeof(out)), cases[i].want,
                         "template '%s'", cases[i].tpl);
    }
}

Test(bench_template, rand_n_stays_in_range_and_covers_it)
{
    struct bench_tpl t;
    char err[200];
    cr_assert_eq(bench__tpl_parse(&t, "r/%rand_5/x", err, sizeof(err)), 0);
    cr_assert(t.per_message);
    struct bench_tpl_ctx ctx = {.seq = 1, .client_id = "c", .rng = &rng};
    int seen[6] = {0};
    for (int i = 0; i < 1000; i++) {
        char out[64];
        bench__tpl_expand(&t, &ctx, out, sizeof(out));
        cr_assert_eq(strncmp(out, "r/", 2), 0);
        char *end;
        long v = strtol(out + 2, &end, 10);
        cr_assert_str_eq(end, "/x");
        cr_assert(v >= 1 && v <= 5, "got %ld", v);
        seen[v]++;
    }
    for (int v = 1; v <= 5; v++)
        cr_assert_gt(seen[v], 100, "value %d drawn %d times of 1000", v, seen[v]);
    bench__tpl_free(&t);
}

Test(bench_template, rand_1_is_always_1)
{
    char out[32];
    for (int i = 0; i < 10; i++)
        cr_assert_str_eq(expand("%rand_1", NULL, out, sizeof(out)), "1");
}

Test(bench_template, bad_rand_is_an_error)
{
    const char *bad[] = {"x/%rand_", "x/%rand_0", "x/%rand_/y", "%rand_99999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct bench_tpl t;
        char err[200] = "";
        cr_assert_neq(bench__tpl_parse(&t, bad[i], err, sizeof(err)), 0, "%s", bad[i]);
        cr_assert_neq(strstr(err, "%rand_N"), NULL, "message: %s", err);
        cr_assert_null(t.parts);
        cr_assert_null(t.src);
    }
}

Test(bench_template, truncates_like_snprintf)
{
    struct bench_tpl t;
    char err[200];
    cr_assert_eq(bench__tpl_parse(&t, "abcdef/%i", err, sizeof(err)), 0);
    struct bench_tpl_ctx ctx = {.seq = 123456, .client_id = "c", .rng = &rng};
    char out[8];
    memset(out, 'Z', sizeof(out));
    size_t n = bench__tpl_expand(&t, &ctx, out, sizeof(out));
    cr_assert_eq(n, strlen("abcdef/123456"));
    cr_assert_str_eq(out, "abcdef/");
    cr_assert_eq(bench__tpl_expand(&t, &ctx, NULL, 0), n);
    bench__tpl_free(&t);
}

Test(bench_template, rng_is_deterministic_per_seed)
{
    uint64_t a = 7, b = 7, c = 8;
    uint64_t xa = bench__rng_next(&a), xb = bench__rng_next(&b), xc = bench__rng_next(&c);
    cr_assert_eq(xa, xb);
    cr_assert_neq(xa, xc);
    uint64_t z = 0;
    cr_assert_neq(bench__rng_next(&z), 0); /* a zero seed still moves */
}
