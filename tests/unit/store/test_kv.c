/* Tests for store/kv.c: keys around and far beyond LMDB's 511-byte limit in
 * every table, long client ids that share the hashed prefix, and forced hash
 * collisions (probing and backward-shift deletes). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(kv, .init = store_test_setup, .fini = store_test_teardown);

/* --- long keys --------------------------------------------------------------------- */

/* Lengths around the 511-byte LMDB key limit and the 502-byte hashed prefix,
 * and MQTT's maximum. */
static const size_t long_lens[] = {1, 500, 501, 502, 503, 509, 510, 511, 512, 1000, 65535};
#define N_LONG (sizeof(long_lens) / sizeof(long_lens[0]))

Test(kv, long_keys_in_every_table)
{
    struct store *s = open_at(env_dir);
    for (size_t i = 0; i < N_LONG; i++) {
        size_t n = long_lens[i];
        uint8_t *id = pattern(n, (unsigned)i), *f1 = pattern(n, 100 + (unsigned)i);
        struct store_txn *t = wbegin(s);
        struct store_session se = session_rec(id, n, (uint32_t)i), gse;
        struct store_sub s_long = sub_rec(id, n, f1, n, 1), s_short = sub_rec(id, n, U("s"), 2),
                         s_other = sub_rec(U("other"), f1, n, 0), gsub;
        struct store_retained r = {.topic = {id, n}, .payload = {f1, n}, .props = B("p"), .qos = 1},
                              gr;
        cr_assert_eq(store_session_put(t, &se), 0);
        cr_assert_eq(store_sub_put(t, &s_long), 0);
        cr_assert_eq(store_sub_put(t, &s_long), 1);
        cr_assert_eq(store_sub_put(t, &s_short), 0);
        cr_assert_eq(store_sub_put(t, &s_other), 0);
        cr_assert_eq(store_retain_put(t, &r), 0);
        commit(t, i + 1);

        t = rbegin(s);
        cr_assert_eq(store_session_get(t, id, n, &gse), 0, "len %zu", n);
        assert_session_eq(&gse, &se);
        cr_assert_eq(store_sub_get(t, id, n, f1, n, &gsub), 0, "len %zu", n);
        assert_sub_eq(&gsub, &s_long);
        cr_assert_eq(store_sub_get(t, id, n, U("s"), &gsub), 0);
        assert_sub_eq(&gsub, &s_short);
        cr_assert_eq(store_sub_get(t, U("other"), f1, n, &gsub), 0);
        assert_sub_eq(&gsub, &s_other);
        cr_assert_eq(store_retain_get(t, id, n, &gr), 0);
        assert_retained_eq(&gr, &r);
        /* A key one byte shorter is a different record. */
        cr_assert_eq(store_retain_get(t, id, n - 1 ? n - 1 : 0, &gr),
                     n - 1 ? STORE_ENOTFOUND : -EINVAL);
        cr_assert_eq(client_sub_count(t, id, n), 2, "len %zu", n);
        store_txn_end(t);

        t = wbegin(s);
        cr_assert_eq(store_session_del(t, id, n), 0);
        cr_assert_eq(client_sub_count(t, id, n), 0, "len %zu", n);
        cr_assert_eq(client_sub_count(t, U("other")), 1);
        cr_assert_eq(store_sub_del(t, U("other"), f1, n), 1);
        cr_assert_eq(store_retain_del(t, id, n), 1);
        cr_assert_eq(store_retain_get(t, id, n, &gr), STORE_ENOTFOUND);
        commit(t, 100 + i);
        free(id);
        free(f1);
    }
    struct store_txn *t = rbegin(s);
    int count = 0;
    cr_assert_eq(store_sessions_foreach(t, count_session, &count), 0);
    cr_assert_eq(store_subs_foreach(t, count_sub, &count), 0);
    cr_assert_eq(store_retained_foreach(t, count_retained, &count), 0);
    cr_assert_eq(count, 0);
    store_txn_end(t);
    store_close(s);
    check_leaks();
}

/* Long ids that differ only after the hashed prefix: each client's
 * subscriptions must stay its own. */
Test(kv, long_ids_sharing_a_prefix_keep_their_subs_apart)
{
    struct store *s = open_at(env_dir);
    const size_t lens[] = {1000, 65535};
    for (int li = 0; li < 2; li++) {
        size_t n = lens[li];
        uint8_t *a = pattern(n, 5), *b = pattern(n, 5), *c = pattern(n + 1, 5);
        b[n - 1] = a[n - 1] == 'x' ? 'y' : 'x'; /* same first n-1 bytes */
        /* c = a plus one byte: a is a prefix of c, as "ab" is of "abc". */
        struct store_txn *t = wbegin(s);
        for (int j = 0; j < 5; j++) {
            uint8_t f[4] = {'f', (uint8_t)('0' + j)};
            struct store_sub sa = sub_rec(a, n, f, 2, 0), sb = sub_rec(b, n, f, 2, 1),
                             sc = sub_rec(c, n + 1, f, 2, 2);
            cr_assert_eq(store_sub_put(t, &sa), 0);
            if (j < 3)
                cr_assert_eq(store_sub_put(t, &sb), 0);
            if (j < 4)
                cr_assert_eq(store_sub_put(t, &sc), 0);
        }
        cr_assert_eq(client_sub_count(t, a, n), 5);
        cr_assert_eq(client_sub_count(t, b, n), 3);
        cr_assert_eq(client_sub_count(t, c, n + 1), 4);
        cr_assert_eq(store_sub_del_all(t, a, n), 5);
        cr_assert_eq(client_sub_count(t, a, n), 0);
        cr_assert_eq(client_sub_count(t, b, n), 3);
        cr_assert_eq(client_sub_count(t, c, n + 1), 4);
        cr_assert_eq(store_sub_del_all(t, c, n + 1), 4);
        cr_assert_eq(store_sub_del_all(t, b, n), 3);
        int count = 0;
        cr_assert_eq(store_subs_foreach(t, count_sub, &count), 0);
        cr_assert_eq(count, 0);
        commit(t, 1);
        free(a);
        free(b);
        free(c);
    }
    store_close(s);
    check_leaks();
}

/* With the hash masked to a few slots every long key with the same prefix
 * collides: the probing and the backward-shift delete must keep every record
 * reachable, whatever the order of deletes. */
static void collision_round(uint64_t mask, unsigned seed)
{
    struct store *s = open_at(env_dir);
    store__set_hash_mask(s, mask);
    enum { N = 24 };
    size_t n = 700;
    uint8_t *topics[N];
    struct store_txn *t = wbegin(s);
    for (int i = 0; i < N; i++) {
        topics[i] = pattern(n, 1); /* same first 690 bytes */
        topics[i][690] = (uint8_t)('A' + i);
        struct store_retained r = {.topic = {topics[i], n}, .payload = {topics[i], (size_t)i},
                                   .qos = (uint8_t)(i % 3)};
        cr_assert_eq(store_retain_put(t, &r), 0);
        cr_assert_eq(store_retain_put(t, &r), 0); /* replace finds it again */
        struct store_sub sub = sub_rec(topics[i], n, U("f"), 1);
        cr_assert_eq(store_sub_put(t, &sub), 0);
        cr_assert_eq(store_sub_put(t, &sub), 1);
    }
    commit(t, 1);

    bool gone[N] = {false};
    unsigned x = seed;
    t = wbegin(s);
    for (int k = 0; k < N; k++) {
        int i;
        do {
            x = x * 1103515245u + 12345u;
            i = (int)((x >> 8) % N);
        } while (gone[i]);
        gone[i] = true;
        cr_assert_eq(store_retain_del(t, topics[i], n), 1);
        cr_assert_eq(store_sub_del_all(t, topics[i], n), 1);
        for (int j = 0; j < N; j++) {
            struct store_retained got;
            struct store_sub gsub;
            int want = gone[j] ? STORE_ENOTFOUND : 0;
            cr_assert_eq(store_retain_get(t, topics[j], n, &got), want, "mask %llu, topic %d",
                         (unsigned long long)mask, j);
            if (!gone[j])
                cr_assert_eq(got.payload.len, (size_t)j);
            cr_assert_eq(store_sub_get(t, topics[j], n, U("f"), &gsub), want);
        }
        int count = 0;
        cr_assert_eq(store_retained_foreach(t, count_retained, &count), 0);
        cr_assert_eq(count, N - 1 - k);
    }
    commit(t, 2);

    /* One long client id with many filters, all in one probe run, next to
     * another client whose id shares the run's prefix: del_all must follow
     * records that the backward shift moves into the slot just deleted. */
    t = wbegin(s);
    for (int i = 0; i < N; i++) {
        uint8_t f[8] = {'f', (uint8_t)('a' + i)};
        struct store_sub mine = sub_rec(topics[0], n, f, 2, 0),
                         theirs = sub_rec(topics[1], n, f, 2, 1);
        cr_assert_eq(store_sub_put(t, &mine), 0);
        if (i % 3 == 0)
            cr_assert_eq(store_sub_put(t, &theirs), 0);
    }
    cr_assert_eq(client_sub_count(t, topics[0], n), N);
    cr_assert_eq(store_sub_del_all(t, topics[0], n), N);
    cr_assert_eq(client_sub_count(t, topics[0], n), 0);
    cr_assert_eq(client_sub_count(t, topics[1], n), (N + 2) / 3);
    for (int i = 0; i < N; i += 3) {
        uint8_t f[8] = {'f', (uint8_t)('a' + i)};
        struct store_sub got;
        cr_assert_eq(store_sub_get(t, topics[1], n, f, 2, &got), 0);
        cr_assert_eq(got.qos, 1);
    }
    cr_assert_eq(store_session_del(t, topics[1], n), STORE_ENOTFOUND);
    int left = 0;
    cr_assert_eq(store_subs_foreach(t, count_sub, &left), 0);
    cr_assert_eq(left, 0);
    commit(t, 3);
    for (int i = 0; i < N; i++)
        free(topics[i]);
    store_close(s);
}

Test(kv, hash_collisions_keep_every_record_reachable)
{
    collision_round(0, 1);
    collision_round(0, 2);
    collision_round(3, 3);
    collision_round(7, 4);
    check_leaks();
}

/* With every home slot forced to 0 the hashed LMDB key of a long topic is its
 * first 502 bytes, 0x01 and eight 0x00 bytes: exactly the bytes of a 511-byte
 * topic a client could publish to. Keys of 511 bytes are hashed too, so the
 * two never meet. */
Test(kv, raw_and_hashed_keys_never_share_an_lmdb_key)
{
    struct store *s = open_at(env_dir);
    store__set_hash_mask(s, 0);
    uint8_t *lng = pattern(600, 1);
    uint8_t raw[STORE__KEY_MAX];
    memcpy(raw, lng, STORE__KEY_PREFIX);
    raw[STORE__KEY_PREFIX] = 0x01;
    memset(raw + STORE__KEY_PREFIX + 1, 0, 8);
    const struct {
        const uint8_t *topic;
        size_t len;
        const char *payload;
    } recs[] = {
        {lng, 600, "long"},
        {raw, STORE__KEY_MAX, "raw511"},
        {raw, STORE__KEY_MAX - 1, "raw510"},
    };
    struct store_txn *t = wbegin(s);
    for (int i = 0; i < 3; i++) {
        struct store_retained r = {.topic = {recs[i].topic, recs[i].len},
                                   .payload = {(const uint8_t *)recs[i].payload,
                                               strlen(recs[i].payload)}};
        cr_assert_eq(store_retain_put(t, &r), 0);
    }
    commit(t, 1);
    t = wbegin(s);
    for (int i = 0; i < 3; i++) {
        struct store_retained got;
        cr_assert_eq(store_retain_get(t, recs[i].topic, recs[i].len, &got), 0);
        cr_assert(bytes_eq(got.payload, (struct store_bytes){(const uint8_t *)recs[i].payload,
                                                             strlen(recs[i].payload)}),
                  "record %d", i);
    }
    int n = 0;
    cr_assert_eq(store_retained_foreach(t, count_retained, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(store_retain_del(t, raw, STORE__KEY_MAX), 1);
    struct store_retained got;
    cr_assert_eq(store_retain_get(t, lng, 600, &got), 0);
    cr_assert_eq(store_retain_del(t, lng, 600), 1);
    cr_assert_eq(store_retain_get(t, raw, STORE__KEY_MAX - 1, &got), 0);
    commit(t, 2);
    free(lng);
    store_close(s);
    check_leaks();
}
