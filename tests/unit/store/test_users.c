/* Tests for store/users.c: the users and acl tables (put, replace, get, del,
 * count, order), refused names and topics, stored values that do not decode,
 * and both tables through a snapshot. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(users, .init = store_test_setup, .fini = store_test_teardown);

static void put_byte(struct buf *b, int ch)
{
    uint8_t c = (uint8_t)ch;
    cr_assert_eq(buf_append(b, &c, 1), 0);
}

static int collect_user(void *arg, const struct store_user *u)
{
    struct buf *b = arg;
    cr_assert_eq(buf_append(b, u->name.p, u->name.len), 0);
    put_byte(b, ':');
    cr_assert_eq(buf_append(b, u->hash.p, u->hash.len), 0);
    put_byte(b, ':');
    cr_assert_eq(buf_append(b, u->scram.p, u->scram.len), 0);
    put_byte(b, '\n');
    return 0;
}

static int collect_rule(void *arg, const struct store_acl_rule *r)
{
    struct buf *b = arg;
    put_byte(b, (uint8_t)('0' + r->kind));
    put_byte(b, ' ');
    cr_assert_eq(buf_append(b, r->user.p, r->user.len), 0);
    put_byte(b, ' ');
    cr_assert_eq(buf_append(b, r->topic.p, r->topic.len), 0);
    put_byte(b, ' ');
    put_byte(b, (uint8_t)('0' + r->access));
    put_byte(b, '\n');
    return 0;
}

/* Both tables as text, NUL-terminated (free with buf_free). */
static struct buf tables(struct store *s)
{
    struct buf b = {0};
    struct store_txn *t = rbegin(s);
    cr_assert_eq(store_users_foreach(t, collect_user, &b), 0);
    cr_assert_eq(store_acl_foreach(t, collect_rule, &b), 0);
    store_txn_end(t);
    put_byte(&b, 0);
    return b;
}

static void populate_auth(struct store *s)
{
    struct store_txn *t = wbegin(s);
    struct store_user a = {B("alice"), B("$7$101$s$h"), B("scram")};
    struct store_user b = {B("bob"), B("$6$s$h"), {NULL, 0}};
    cr_assert_eq(store_user_put(t, &b), 0);
    cr_assert_eq(store_user_put(t, &a), 0);
    struct store_acl_rule r[] = {
        {1, B("bob"), B("b/#"), 1},
        {0, {NULL, 0}, B("pub"), 2},
        {2, {NULL, 0}, B("c/%c"), 3},
        {1, B("alice"), B("a/+"), 0},
    };
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
        cr_assert_eq(store_acl_put(t, &r[i]), 0);
    commit(t, 1);
}

Test(users, put_replace_get_del_count_and_order)
{
    struct store *s = open_at(env_dir);
    populate_auth(s);
    struct buf got = tables(s);
    cr_assert_str_eq((char *)got.data, "alice:$7$101$s$h:scram\nbob:$6$s$h:\n"
                                       "0  pub 2\n1 alice a/+ 0\n1 bob b/# 1\n2  c/%c 3\n");
    buf_free(&got);

    struct store_txn *t = wbegin(s);
    struct store_user a2 = {B("alice"), B("$7$1000$t$i"), {NULL, 0}}, u;
    cr_assert_eq(store_user_put(t, &a2), 1);
    cr_assert_eq(store_user_get(t, U("alice"), &u), 0);
    cr_assert(bytes_eq(u.hash, a2.hash));
    cr_assert_eq(u.scram.len, 0);
    struct store_acl_rule r = {1, B("bob"), B("b/#"), 3};
    cr_assert_eq(store_acl_put(t, &r), 1);
    size_t n;
    cr_assert_eq(store_users_count(t, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(store_acl_count(t, &n), 0);
    cr_assert_eq(n, 4);
    cr_assert_eq(store_user_del(t, U("bob")), 1);
    cr_assert_eq(store_user_del(t, U("bob")), 0);
    cr_assert_eq(store_user_get(t, U("bob"), &u), STORE_ENOTFOUND);
    struct store_acl_rule p = {2, {NULL, 0}, B("c/%c"), 0};
    cr_assert_eq(store_acl_del(t, &p), 1);
    cr_assert_eq(store_acl_del(t, &p), 0);
    commit(t, 2);
    got = tables(s);
    cr_assert_str_eq((char *)got.data, "alice:$7$1000$t$i:\n0  pub 2\n1 alice a/+ 0\n1 bob b/# 3\n");
    buf_free(&got);
    store_close(s);
    check_leaks();
}

Test(users, invalid_names_and_topics_are_refused)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    uint8_t big[1025];
    memset(big, 'x', sizeof(big));
    struct store_user bad[] = {
        {{NULL, 0}, B("h"), {NULL, 0}},
        {B("a\0b"), B("h"), {NULL, 0}},
        {B("a"), {big, 1025}, {NULL, 0}},
        {B("a"), B("h"), {big, 1025}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(store_user_put(t, &bad[i]), -EINVAL, "case %zu", i);
    struct store_acl_rule badr[] = {
        {1, {NULL, 0}, B("a"), 1},    /* a user's rule without the user */
        {0, B("u"), B("a"), 1},       /* an anonymous rule with one */
        {0, {NULL, 0}, {NULL, 0}, 1}, /* no topic */
        {0, {NULL, 0}, B("a\0b"), 1},
    };
    for (size_t i = 0; i < sizeof(badr) / sizeof(badr[0]); i++)
        cr_assert_eq(store_acl_put(t, &badr[i]), -EINVAL, "rule case %zu", i);
    struct store_user u;
    cr_assert_eq(store_user_get(t, U("a\0b"), &u), -EINVAL);
    commit(t, 1);
    struct buf got = tables(s);
    cr_assert_str_eq((char *)got.data, "");
    buf_free(&got);
    store_close(s);
    check_leaks();
}

static int count_rule(void *arg, const struct store_acl_rule *r)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

Test(users, corrupt_records_read_as_ecorrupt)
{
    struct store *s = open_at(env_dir);
    populate_auth(s);
    store_close(s);
    /* a user value whose hash length runs past its end; a rule value of two bytes */
    uint8_t user_bad[] = {1, 0xFF, 0, 0, 0, 'h'};
    raw_put(env_dir, "users", "bob", 3, user_bad, sizeof(user_bad));
    s = open_at(env_dir);
    struct store_txn *t = rbegin(s);
    struct store_user u;
    cr_assert_eq(store_user_get(t, U("bob"), &u), STORE_ECORRUPT);
    cr_assert_eq(store_user_get(t, U("alice"), &u), 0);
    store_txn_end(t);
    store_close(s);
    uint8_t rule_bad[] = {1, 1, 1};
    raw_put(env_dir, "acl", "\x00\x00pub", 5, rule_bad, sizeof(rule_bad));
    raw_put(env_dir, "users", "bob", 3, (const uint8_t[]){1, 0, 0, 0, 0}, 5);
    s = open_at(env_dir);
    t = rbegin(s);
    int count = 0;
    cr_assert_eq(store_acl_foreach(t, count_rule, &count), STORE_ECORRUPT);
    store_txn_end(t);
    struct store_snap *snap;
    const struct iovec *iov;
    size_t niov;
    uint64_t idx;
    cr_assert_eq(store_snapshot_open(s, &snap, &iov, &niov, &idx), STORE_ECORRUPT);
    store_close(s);
    check_leaks();
}

Test(users, tables_survive_a_snapshot)
{
    struct store *a = open_at(env_dir);
    populate_auth(a);
    size_t len;
    uint64_t idx;
    uint8_t *snap = take_snapshot(a, &len, &idx);
    struct store *b = open_at(env_dir2);
    cr_assert_eq(store_snapshot_restore(b, snap, len), 0);
    struct buf x = tables(a), y = tables(b);
    cr_assert_str_eq((char *)y.data, (char *)x.data);
    buf_free(&x);
    buf_free(&y);
    free(snap);
    store_close(a);
    store_close(b);
    check_leaks();
}

/* An environment of an earlier version (no users, no acl): read-only (a dump
 * while that node runs) it reads as empty; opened to write, the tables are made. */
Test(users, an_environment_from_before_the_tables)
{
    struct store *s = open_at(env_dir);
    populate_auth(s);
    store_close(s);
    raw_drop(env_dir, "users");
    raw_drop(env_dir, "acl");
    struct store *ro = NULL;
    cr_assert_eq(store_open_readonly(&ro, env_dir), 0);
    struct buf got = tables(ro);
    cr_assert_str_eq((char *)got.data, "");
    buf_free(&got);
    struct store_txn *t = rbegin(ro);
    size_t n = 9;
    struct store_user u;
    cr_assert_eq(store_users_count(t, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(store_user_get(t, U("alice"), &u), STORE_ENOTFOUND);
    store_txn_end(t);
    store_close(ro);
    s = open_at(env_dir);
    populate_auth(s);
    got = tables(s);
    cr_assert(strstr((char *)got.data, "alice:"));
    buf_free(&got);
    store_close(s);
    check_leaks();
}
