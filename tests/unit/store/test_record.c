/* Tests for store/record.c: sessions, subscriptions and retained messages
 * (put, get, replace, del, del_all), refused ids, iteration order and early
 * stop, and stored values that do not decode. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(record, .init = store_test_setup, .fini = store_test_teardown);

/* --- sessions ---------------------------------------------------------------------- */

Test(record, session_put_get_replace_del)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_session a = session_rec(U("client-1"), 3), got;
    cr_assert_eq(store_session_get(t, U("client-1"), &got), STORE_ENOTFOUND);
    cr_assert_eq(store_session_put(t, &a), 0);
    cr_assert_eq(store_session_get(t, U("client-1"), &got), 0);
    assert_session_eq(&got, &a);

    struct store_session b = {.client_id = B("client-1"), .owner = 4, .expiry = 0};
    cr_assert_eq(store_session_put(t, &b), 0);
    cr_assert_eq(store_session_get(t, U("client-1"), &got), 0);
    assert_session_eq(&got, &b);
    commit(t, 1);

    t = wbegin(s);
    cr_assert_eq(store_session_del(t, U("client-1")), 0);
    cr_assert_eq(store_session_del(t, U("client-1")), STORE_ENOTFOUND);
    cr_assert_eq(store_session_get(t, U("client-1"), &got), STORE_ENOTFOUND);
    commit(t, 2);
    store_close(s);
    check_leaks();
}

Test(record, session_get_modify_put_from_its_own_views)
{
    struct store *s = open_at(env_dir);
    size_t n = 65535;
    uint8_t *id = pattern(n, 2), *payload = pattern(3000, 3);
    struct store_txn *t = wbegin(s);
    struct store_session a = session_rec(id, n, 1), got;
    a.will_payload = (struct store_bytes){payload, 3000};
    cr_assert_eq(store_session_put(t, &a), 0);
    struct store_session short_one = session_rec(U("s"), 1);
    cr_assert_eq(store_session_put(t, &short_one), 0);
    commit(t, 1);

    t = wbegin(s);
    for (int round = 0; round < 2; round++) {
        const uint8_t *ids[] = {id, (const uint8_t *)"s"};
        size_t lens[] = {n, 1};
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(store_session_get(t, ids[i], lens[i], &got), 0);
            got.owner += 10;
            got.connected = !got.connected;
            /* got's views point into the page this put rewrites. */
            cr_assert_eq(store_session_put(t, &got), 0);
        }
    }
    cr_assert_eq(store_session_get(t, id, n, &got), 0);
    a.owner += 20;
    assert_session_eq(&got, &a);
    commit(t, 2);
    store_close(s);
    free(id);
    free(payload);
    check_leaks();
}

Test(record, session_del_removes_only_its_own_subs)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    const char *ids[] = {"a", "ab", "abc"};
    for (int i = 0; i < 3; i++) {
        const uint8_t *id = (const uint8_t *)ids[i];
        size_t len = strlen(ids[i]);
        struct store_session se = session_rec(id, len, 1);
        cr_assert_eq(store_session_put(t, &se), 0);
        struct store_sub s1 = sub_rec(id, len, U("x/y"), 1), s2 = sub_rec(id, len, U("z"), 0);
        cr_assert_eq(store_sub_put(t, &s1), 0);
        cr_assert_eq(store_sub_put(t, &s2), 0);
    }
    commit(t, 1);

    t = wbegin(s);
    cr_assert_eq(store_session_del(t, U("ab")), 0);
    cr_assert_eq(client_sub_count(t, U("ab")), 0);
    cr_assert_eq(client_sub_count(t, U("a")), 2);
    cr_assert_eq(client_sub_count(t, U("abc")), 2);
    struct store_session got;
    cr_assert_eq(store_session_get(t, U("a"), &got), 0);
    cr_assert_eq(store_session_get(t, U("abc"), &got), 0);

    /* No session, but its subscriptions go anyway. */
    struct store_sub orphan = sub_rec(U("orphan"), U("o"), 0);
    cr_assert_eq(store_sub_put(t, &orphan), 0);
    cr_assert_eq(store_session_del(t, U("orphan")), STORE_ENOTFOUND);
    cr_assert_eq(client_sub_count(t, U("orphan")), 0);

    cr_assert_eq(store_session_del(t, U("a")), 0);
    cr_assert_eq(client_sub_count(t, U("a")), 0);
    cr_assert_eq(client_sub_count(t, U("abc")), 2);
    commit(t, 2);
    store_close(s);
    check_leaks();
}

Test(record, invalid_ids_and_topics_are_refused)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_session se = session_rec(U("a\0b"), 1), got;
    struct store_sub sub = sub_rec(U("a\0b"), U("f"), 0), gsub;
    struct store_retained r = {.topic = {NULL, 0}, .payload = B("x")}, gr;
    cr_assert_eq(store_session_put(t, &se), -EINVAL);
    se.client_id = (struct store_bytes){NULL, 0};
    cr_assert_eq(store_session_put(t, &se), -EINVAL);
    cr_assert_eq(store_session_get(t, U("a\0b"), &got), -EINVAL);
    cr_assert_eq(store_session_get(t, NULL, 0, &got), -EINVAL);
    cr_assert_eq(store_session_del(t, U("a\0b")), -EINVAL);
    cr_assert_eq(store_sub_put(t, &sub), -EINVAL);
    sub.client_id = (struct store_bytes){NULL, 0};
    cr_assert_eq(store_sub_put(t, &sub), -EINVAL);
    cr_assert_eq(store_sub_get(t, U("\0"), U("f"), &gsub), -EINVAL);
    cr_assert_eq(store_sub_del(t, U("x\0"), U("f")), -EINVAL);
    cr_assert_eq(store_sub_del_all(t, NULL, 0), -EINVAL);
    cr_assert_eq(store_client_subs_foreach(t, U("a\0"), count_sub, NULL), -EINVAL);
    cr_assert_eq(store_retain_put(t, &r), -EINVAL);
    cr_assert_eq(store_retain_get(t, NULL, 0, &gr), -EINVAL);
    cr_assert_eq(store_retain_del(t, NULL, 0), -EINVAL);
    /* Refused input does not spoil the transaction. */
    commit(t, 1);
    cr_assert_eq(store_applied_index(s), 1);
    store_close(s);
    check_leaks();
}

/* --- subscriptions ----------------------------------------------------------------- */

Test(record, sub_put_new_replace_get_del)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_sub a = sub_rec(U("c1"), U("a/+/b"), 1), got;
    cr_assert_eq(store_sub_get(t, U("c1"), U("a/+/b"), &got), STORE_ENOTFOUND);
    cr_assert_eq(store_sub_put(t, &a), 0);
    cr_assert_eq(store_sub_get(t, U("c1"), U("a/+/b"), &got), 0);
    assert_sub_eq(&got, &a);

    struct store_sub b = {.client_id = B("c1"), .filter = B("a/+/b"), .qos = 2,
                          .retain_as_published = true, .sub_id = 0};
    cr_assert_eq(store_sub_put(t, &b), 1);
    cr_assert_eq(store_sub_get(t, U("c1"), U("a/+/b"), &got), 0);
    assert_sub_eq(&got, &b);

    /* An empty filter is just another key. */
    struct store_sub e = sub_rec(U("c1"), NULL, 0, 0);
    cr_assert_eq(store_sub_put(t, &e), 0);
    cr_assert_eq(store_sub_get(t, U("c1"), NULL, 0, &got), 0);
    cr_assert_eq(got.filter.len, 0);
    commit(t, 1);

    t = wbegin(s);
    cr_assert_eq(store_sub_del(t, U("c1"), U("a/+/b")), 1);
    cr_assert_eq(store_sub_del(t, U("c1"), U("a/+/b")), 0);
    cr_assert_eq(store_sub_del(t, U("c2"), U("a/+/b")), 0);
    cr_assert_eq(store_sub_get(t, U("c1"), U("a/+/b"), &got), STORE_ENOTFOUND);
    cr_assert_eq(client_sub_count(t, U("c1")), 1);
    commit(t, 2);
    store_close(s);
    check_leaks();
}

Test(record, sub_del_all_counts_and_spares_neighbours)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    const char *ids[] = {"a", "ab", "abc", "b"};
    int per[] = {3, 2, 4, 1};
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < per[i]; j++) {
            char f[16];
            snprintf(f, sizeof(f), "f/%d", j);
            struct store_sub sub = sub_rec((const uint8_t *)ids[i], strlen(ids[i]),
                                           (const uint8_t *)f, strlen(f), 0);
            cr_assert_eq(store_sub_put(t, &sub), 0);
        }
    }
    cr_assert_eq(store_sub_del_all(t, U("ab")), 2);
    cr_assert_eq(store_sub_del_all(t, U("ab")), 0);
    cr_assert_eq(store_sub_del_all(t, U("zz")), 0);
    cr_assert_eq(client_sub_count(t, U("a")), 3);
    cr_assert_eq(client_sub_count(t, U("abc")), 4);
    cr_assert_eq(client_sub_count(t, U("b")), 1);
    cr_assert_eq(store_sub_del_all(t, U("abc")), 4);
    int n = 0;
    cr_assert_eq(store_subs_foreach(t, count_sub, &n), 0);
    cr_assert_eq(n, 4);
    commit(t, 1);
    store_close(s);
    check_leaks();
}

/* --- retained ---------------------------------------------------------------------- */

Test(record, retained_put_get_replace_del)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_retained a = {.topic = B("t/1"), .payload = B("pay\0load"),
                               .props = B("\x02\x00\x00\x00\x10"), .qos = 2,
                               .expire_at_ms = 1700000000999ull},
                          got;
    cr_assert_eq(store_retain_get(t, U("t/1"), &got), STORE_ENOTFOUND);
    cr_assert_eq(store_retain_put(t, &a), 0);
    cr_assert_eq(store_retain_get(t, U("t/1"), &got), 0);
    assert_retained_eq(&got, &a);

    /* Replace with an empty payload and no properties. */
    struct store_retained b = {.topic = B("t/1"), .qos = 0};
    cr_assert_eq(store_retain_put(t, &b), 0);
    cr_assert_eq(store_retain_get(t, U("t/1"), &got), 0);
    assert_retained_eq(&got, &b);
    cr_assert_eq(got.payload.len, 0);
    cr_assert_eq(got.props.len, 0);

    /* Properties but an empty payload. */
    struct store_retained c = {.topic = B("t/2"), .props = B("\x01\x01"), .qos = 1};
    cr_assert_eq(store_retain_put(t, &c), 0);
    commit(t, 1);

    t = rbegin(s);
    cr_assert_eq(store_retain_get(t, U("t/2"), &got), 0);
    assert_retained_eq(&got, &c);
    store_txn_end(t);

    t = wbegin(s);
    cr_assert_eq(store_retain_del(t, U("t/1")), 1);
    cr_assert_eq(store_retain_del(t, U("t/1")), 0);
    cr_assert_eq(store_retain_get(t, U("t/1"), &got), STORE_ENOTFOUND);
    cr_assert_eq(store_retain_get(t, U("t/2"), &got), 0);
    commit(t, 2);
    store_close(s);
    check_leaks();
}

/* --- iteration --------------------------------------------------------------------- */

struct collect {
    char names[16][16];
    int n;
    int stop_at; /* return 42 at this call (1-based), 0 = never */
};

static int collect_session(void *arg, const struct store_session *r)
{
    struct collect *c = arg;
    snprintf(c->names[c->n], sizeof(c->names[0]), "%.*s", (int)r->client_id.len,
             (const char *)r->client_id.p);
    return ++c->n == c->stop_at ? 42 : 0;
}

static int collect_sub(void *arg, const struct store_sub *r)
{
    struct collect *c = arg;
    snprintf(c->names[c->n], sizeof(c->names[0]), "%.*s|%.*s", (int)r->client_id.len,
             (const char *)r->client_id.p, (int)r->filter.len, (const char *)r->filter.p);
    return ++c->n == c->stop_at ? 42 : 0;
}

static int collect_retained(void *arg, const struct store_retained *r)
{
    struct collect *c = arg;
    snprintf(c->names[c->n], sizeof(c->names[0]), "%.*s", (int)r->topic.len,
             (const char *)r->topic.p);
    return ++c->n == c->stop_at ? 42 : 0;
}

Test(record, foreach_in_key_order_and_early_stop)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    const char *ids[] = {"m", "b", "z", "ba", "a"};
    for (int i = 0; i < 5; i++) {
        struct store_session se = session_rec((const uint8_t *)ids[i], strlen(ids[i]), 1);
        cr_assert_eq(store_session_put(t, &se), 0);
        struct store_retained r = {.topic = {(const uint8_t *)ids[i], strlen(ids[i])}};
        cr_assert_eq(store_retain_put(t, &r), 0);
    }
    struct store_sub subs[] = {sub_rec(U("ab"), U("a"), 0), sub_rec(U("a"), U("z"), 0),
                               sub_rec(U("a"), U("b"), 0), sub_rec(U("b"), U(""), 0)};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(store_sub_put(t, &subs[i]), 0);
    commit(t, 1);

    t = rbegin(s);
    const char *sorted[] = {"a", "b", "ba", "m", "z"};
    struct collect c = {0};
    cr_assert_eq(store_sessions_foreach(t, collect_session, &c), 0);
    cr_assert_eq(c.n, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(c.names[i], sorted[i]);
    c = (struct collect){0};
    cr_assert_eq(store_retained_foreach(t, collect_retained, &c), 0);
    cr_assert_eq(c.n, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(c.names[i], sorted[i]);

    /* By client id, then filter: "a" before "ab" although "a|z" > "ab|a". */
    const char *sub_sorted[] = {"a|b", "a|z", "ab|a", "b|"};
    c = (struct collect){0};
    cr_assert_eq(store_subs_foreach(t, collect_sub, &c), 0);
    cr_assert_eq(c.n, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(c.names[i], sub_sorted[i]);
    c = (struct collect){0};
    cr_assert_eq(store_client_subs_foreach(t, U("a"), collect_sub, &c), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.names[0], "a|b");
    cr_assert_str_eq(c.names[1], "a|z");

    c = (struct collect){.stop_at = 3};
    cr_assert_eq(store_sessions_foreach(t, collect_session, &c), 42);
    cr_assert_eq(c.n, 3);
    c = (struct collect){.stop_at = 2};
    cr_assert_eq(store_subs_foreach(t, collect_sub, &c), 42);
    cr_assert_eq(c.n, 2);
    c = (struct collect){.stop_at = 1};
    cr_assert_eq(store_client_subs_foreach(t, U("a"), collect_sub, &c), 42);
    cr_assert_eq(c.n, 1);
    c = (struct collect){.stop_at = 5};
    cr_assert_eq(store_retained_foreach(t, collect_retained, &c), 42);
    cr_assert_eq(c.n, 5);
    store_txn_end(t);
    store_close(s);
    check_leaks();
}

Test(record, corrupt_records_read_as_ecorrupt)
{
    struct store *s = open_at(env_dir);
    populate(s);
    store_close(s);
    const struct {
        const char *db;
        const char *key;
        size_t klen;
        size_t fixed; /* bytes before the retained payload; 0 = no truncation is valid */
    } cases[] = {
        {"sessions", "alice", 5, 0},
        {"subs", "alice\0a/+", 9, 0},
        {"retained", "a/b", 3, 16 + 2},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t vlen;
        uint8_t *good = raw_get(env_dir, cases[c].db, cases[c].key, cases[c].klen, &vlen);
        uint8_t *bad = malloc(vlen + 1);
        cr_assert_not_null(bad);
        for (size_t n = 0; n <= vlen + 1; n++) {
            if (n == vlen)
                continue;
            memcpy(bad, good, vlen);
            bad[vlen] = 0;
            raw_put(env_dir, cases[c].db, cases[c].key, cases[c].klen, bad, n);
            int want = cases[c].fixed && n >= cases[c].fixed ? 0 : STORE_ECORRUPT;
            s = open_at(env_dir);
            struct store_txn *t = rbegin(s);
            int rc;
            struct store_session gs;
            struct store_sub gsub;
            struct store_retained gr;
            int count = 0;
            if (c == 0) {
                rc = store_session_get(t, U("alice"), &gs);
                cr_assert_eq(store_sessions_foreach(t, count_session, &count), want);
            } else if (c == 1) {
                rc = store_sub_get(t, U("alice"), U("a/+"), &gsub);
                cr_assert_eq(store_client_subs_foreach(t, U("alice"), count_sub, &count), want);
            } else {
                rc = store_retain_get(t, U("a/b"), &gr);
                cr_assert_eq(store_retained_foreach(t, count_retained, &count), want);
            }
            cr_assert_eq(rc, want, "%s value of %zu bytes (good %zu): %s", cases[c].db, n, vlen,
                         store_strerror(rc));
            store_txn_end(t);
            struct store_snap *snap;
            const struct iovec *iov;
            size_t niov;
            uint64_t idx;
            rc = store_snapshot_open(s, &snap, &iov, &niov, &idx);
            cr_assert_eq(rc, want);
            if (rc == 0)
                store_snapshot_close(snap);
            store_close(s);
        }
        raw_put(env_dir, cases[c].db, cases[c].key, cases[c].klen, good, vlen);
        free(good);
        free(bad);
    }
    /* Unknown flag bits. */
    size_t vlen;
    uint8_t *v = raw_get(env_dir, "sessions", "alice", 5, &vlen);
    v[1] |= 0x80;
    raw_put(env_dir, "sessions", "alice", 5, v, vlen);
    free(v);
    s = open_at(env_dir);
    struct store_txn *t = rbegin(s);
    struct store_session gs;
    cr_assert_eq(store_session_get(t, U("alice"), &gs), STORE_ECORRUPT);
    cr_assert_eq(store_session_get(t, U("bob"), &gs), 0);
    store_txn_end(t);
    store_close(s);
    check_leaks();
}

/* The session's user and owner flag: written after the will strings only
 * when present, so records from before read as no user, not owned. */
Test(record, session_user_and_owner)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_session a = session_rec(U("client-u"), 3), got;
    a.has_user = true;
    a.owned = true;
    a.user = B("al\0ice");
    cr_assert_eq(store_session_put(t, &a), 0);
    cr_assert_eq(store_session_get(t, U("client-u"), &got), 0);
    cr_assert(got.has_user && got.owned);
    cr_assert_eq(got.user.len, 6);
    cr_assert(memcmp(got.user.p, "al\0ice", 6) == 0);
    assert_session_eq(&got, &a);

    struct store_session anon = session_rec(U("client-a"), 3);
    anon.owned = true; /* the anonymous identity owns it */
    cr_assert_eq(store_session_put(t, &anon), 0);
    cr_assert_eq(store_session_get(t, U("client-a"), &got), 0);
    cr_assert(!got.has_user && got.owned && got.user.len == 0);

    struct store_session old = session_rec(U("client-o"), 3);
    cr_assert_eq(store_session_put(t, &old), 0);
    cr_assert_eq(store_session_get(t, U("client-o"), &got), 0);
    cr_assert(!got.has_user && !got.owned);
    commit(t, 1);
    store_close(s);
    check_leaks();
}
