/* Tests for broker/map.c: put/get/del, replacement, growth, backward-shift
 * deletion in every order, iteration, binary keys and colliding hashes. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"

#include "../check_leaks.h"

struct key {
    char *p;
    size_t len;
};

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: deterministic, so a failure replays */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void shuffle(size_t *a, size_t n, uint64_t *seed)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(seed) % i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* The hash the map stores for a key, read back through a one-entry map so the
 * test does not duplicate the hash function. */
static uint64_t key_hash(const char *k, size_t len)
{
    struct map m;
    map_init(&m);
    cr_assert_eq(map_put(&m, k, len, (void *)1), 0);
    size_t pos = 0;
    struct map_slot *s = map_next(&m, &pos);
    cr_assert_not_null(s);
    uint64_t h = s->hash;
    map_free(&m);
    return h;
}

/* Structure of a linear-probing table without tombstones: every entry is
 * reachable from its home slot through occupied slots only, count is right and
 * the load stays at most 3/4. */
static void check_invariants(const struct map *m)
{
    if (m->cap == 0) {
        cr_assert_eq(m->count, 0);
        return;
    }
    cr_assert_eq(m->cap & (m->cap - 1), 0, "capacity %zu not a power of two", m->cap);
    cr_assert_leq(m->count * 4, m->cap * 3, "load above 3/4");
    size_t mask = m->cap - 1, n = 0;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        n++;
        for (size_t j = m->slots[i].hash & mask; j != i; j = (j + 1) & mask)
            cr_assert_not_null(m->slots[j].key, "slot %zu: gap at %zu between home and entry", i,
                               j);
    }
    cr_assert_eq(n, m->count);
}

static void *val(size_t i) { return (void *)(uintptr_t)(i + 1); }

static struct key *make_keys(size_t n, const char *fmt)
{
    struct key *k = calloc(n, sizeof *k);
    cr_assert_not_null(k);
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, fmt, i);
        k[i].p = malloc((size_t)len);
        memcpy(k[i].p, buf, (size_t)len); /* not NUL-terminated on purpose */
        k[i].len = (size_t)len;
    }
    return k;
}

static void free_keys(struct key *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(k[i].p);
    free(k);
}

TestSuite(broker_map);

Test(broker_map, empty_map)
{
    struct map m;
    map_init(&m);
    cr_assert_null(map_get(&m, "a", 1));
    cr_assert_null(map_del(&m, "a", 1));
    cr_assert_null(map_get(&m, "", 0));
    size_t pos = 0;
    cr_assert_null(map_next(&m, &pos));
    check_invariants(&m);
    map_free(&m);
    map_free(&m); /* freeing twice is harmless: map_free resets */
    check_leaks();
}

Test(broker_map, put_get_del)
{
    struct map m;
    map_init(&m);
    int a, b, c;
    cr_assert_eq(map_put(&m, "alpha", 5, &a), 0);
    cr_assert_eq(map_put(&m, "beta", 4, &b), 0);
    cr_assert_eq(map_put(&m, "gamma", 5, &c), 0);
    cr_assert_eq(m.count, 3);
    cr_assert_eq(map_get(&m, "alpha", 5), &a);
    cr_assert_eq(map_get(&m, "beta", 4), &b);
    cr_assert_eq(map_get(&m, "gamma", 5), &c);
    cr_assert_null(map_get(&m, "alph", 4), "a prefix is another key");
    cr_assert_null(map_get(&m, "alphab", 6));
    cr_assert_null(map_get(&m, "delta", 5));
    cr_assert_null(map_del(&m, "delta", 5));
    cr_assert_eq(m.count, 3);

    cr_assert_eq(map_del(&m, "beta", 4), &b);
    cr_assert_eq(m.count, 2);
    cr_assert_null(map_get(&m, "beta", 4));
    cr_assert_null(map_del(&m, "beta", 4), "deleted twice");
    cr_assert_eq(map_get(&m, "alpha", 5), &a);
    cr_assert_eq(map_get(&m, "gamma", 5), &c);
    check_invariants(&m);

    /* the key and the value are the caller's: a NULL value is stored as such */
    cr_assert_eq(map_put(&m, "beta", 4, NULL), 0);
    cr_assert_eq(m.count, 3);
    cr_assert_null(map_get(&m, "beta", 4));
    size_t pos = 0, seen = 0;
    struct map_slot *s;
    while ((s = map_next(&m, &pos)))
        seen++;
    cr_assert_eq(seen, 3);
    map_free(&m);
    cr_assert_eq(m.count, 0);
    cr_assert_null(map_get(&m, "alpha", 5));

    /* usable again after map_free */
    cr_assert_eq(map_put(&m, "alpha", 5, &a), 0);
    cr_assert_eq(map_get(&m, "alpha", 5), &a);
    map_free(&m);
    check_leaks();
}

Test(broker_map, replace_keeps_count_and_takes_new_key)
{
    struct map m;
    map_init(&m);
    char k1[] = "client-1", k2[] = "client-1";
    int a, b;
    cr_assert_eq(map_put(&m, k1, 8, &a), 0);
    cr_assert_eq(map_put(&m, k2, 8, &b), 0);
    cr_assert_eq(m.count, 1);
    cr_assert_eq(map_get(&m, "client-1", 8), &b);
    /* the entry now borrows the new owner's key, so the old one may go away */
    size_t pos = 0;
    struct map_slot *s = map_next(&m, &pos);
    cr_assert_eq(s->key, k2);
    memset(k1, 0, sizeof k1);
    cr_assert_eq(map_get(&m, "client-1", 8), &b);
    cr_assert_eq(map_del(&m, "client-1", 8), &b);
    cr_assert_eq(m.count, 0);
    map_free(&m);
    check_leaks();
}

Test(broker_map, growth_to_100k_keys)
{
    enum { N = 100000 };
    struct key *k = make_keys(N, "key/%zu");
    struct map m;
    map_init(&m);
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(map_put(&m, k[i].p, k[i].len, val(i)), 0);
        cr_assert_eq(m.count, i + 1);
        if ((i & (i + 1)) == 0) /* at powers of two: around each growth */
            check_invariants(&m);
    }
    check_invariants(&m);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(map_get(&m, k[i].p, k[i].len), val(i), "key %zu lost", i);
    /* absent keys, including ones sharing prefixes with present ones */
    struct key *absent = make_keys(1000, "key/%zu/x");
    for (size_t i = 0; i < 1000; i++)
        cr_assert_null(map_get(&m, absent[i].p, absent[i].len));
    cr_assert_null(map_get(&m, "key/100000", 10));
    /* replacing every value changes nothing else */
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(map_put(&m, k[i].p, k[i].len, val(i + N)), 0);
    cr_assert_eq(m.count, N);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(map_get(&m, k[i].p, k[i].len), val(i + N));
    map_free(&m);
    free_keys(absent, 1000);
    free_keys(k, N);
    check_leaks();
}

/* Deletes every key of k in a random order, checking every remaining key (and
 * the table structure) after each batch of `batch` deletions. */
static void delete_all_randomly(struct key *k, size_t n, size_t batch, uint64_t seed)
{
    struct map m;
    map_init(&m);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(map_put(&m, k[i].p, k[i].len, val(i)), 0);
    size_t *order = malloc(n * sizeof *order);
    bool *gone = calloc(n, sizeof *gone);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    shuffle(order, n, &seed);
    for (size_t d = 0; d < n; d++) {
        size_t i = order[d];
        cr_assert_eq(map_del(&m, k[i].p, k[i].len), val(i), "seed %llu: delete of key %zu",
                     (unsigned long long)seed, i);
        gone[i] = true;
        cr_assert_eq(m.count, n - d - 1);
        if ((d + 1) % batch == 0 || d + 1 == n) {
            check_invariants(&m);
            for (size_t j = 0; j < n; j++) {
                void *got = map_get(&m, k[j].p, k[j].len);
                if (gone[j])
                    cr_assert_null(got, "deleted key %zu still found", j);
                else
                    cr_assert_eq(got, val(j), "key %zu lost after %zu deletions", j, d + 1);
            }
        }
    }
    size_t pos = 0;
    cr_assert_null(map_next(&m, &pos), "an entry survived deleting every key");
    free(gone);
    free(order);
    map_free(&m);
}

Test(broker_map, delete_100k_keys_in_random_order)
{
    enum { N = 100000 };
    struct key *k = make_keys(N, "session/%zx");
    delete_all_randomly(k, N, 1000, 0x5EED5EED5EEDull);
    free_keys(k, N);
    check_leaks();
}

Test(broker_map, delete_small_maps_one_at_a_time)
{
    /* small tables wrap around their end often; every size up to two growths */
    struct key *k = make_keys(48, "%zu");
    uint64_t seed = 1;
    for (size_t n = 1; n <= 48; n++)
        for (int round = 0; round < 40; round++)
            delete_all_randomly(k, n, 1, seed++ * 0x9E3779B97F4A7C15ull);
    free_keys(k, 48);
    check_leaks();
}

Test(broker_map, interleaved_puts_and_deletes)
{
    /* a churn like sessions coming and going: the map must match a shadow array */
    enum { N = 2000 };
    struct key *k = make_keys(N, "c%zu");
    bool *in = calloc(N, sizeof *in);
    size_t count = 0;
    uint64_t seed = 42;
    struct map m;
    map_init(&m);
    for (int step = 0; step < 200000; step++) {
        size_t i = (size_t)(rng_next(&seed) % N);
        if (in[i]) {
            cr_assert_eq(map_del(&m, k[i].p, k[i].len), val(i));
            in[i] = false;
            count--;
        } else {
            cr_assert_eq(map_put(&m, k[i].p, k[i].len, val(i)), 0);
            in[i] = true;
            count++;
        }
        cr_assert_eq(m.count, count);
        if (step % 10000 == 0) {
            check_invariants(&m);
            for (size_t j = 0; j < N; j++)
                cr_assert_eq(map_get(&m, k[j].p, k[j].len), in[j] ? val(j) : NULL);
        }
    }
    check_invariants(&m);
    map_free(&m);
    free(in);
    free_keys(k, N);
    check_leaks();
}

/* Visits the map, checking each present key is seen exactly once. */
static void check_iteration(const struct map *m, struct key *k, size_t n, const bool *present)
{
    unsigned *seen = calloc(n, sizeof *seen);
    size_t pos = 0, total = 0, last = 0;
    struct map_slot *s;
    while ((s = map_next(m, &pos))) {
        cr_assert_gt(pos, last, "iteration does not advance");
        last = pos;
        size_t i = (size_t)(uintptr_t)s->value - 1;
        cr_assert_lt(i, n);
        cr_assert(present[i], "deleted key %zu visited", i);
        cr_assert_eq(s->len, k[i].len);
        cr_assert(memcmp(s->key, k[i].p, k[i].len) == 0);
        seen[i]++;
        total++;
    }
    cr_assert_null(map_next(m, &pos), "iteration restarts after the end");
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(seen[i], present[i] ? 1u : 0u, "key %zu visited %u times", i, seen[i]);
    cr_assert_eq(total, m->count);
    free(seen);
}

Test(broker_map, iteration_visits_every_key_once)
{
    enum { N = 5000 };
    struct key *k = make_keys(N, "it-%zu");
    bool *present = calloc(N, sizeof *present);
    struct map m;
    map_init(&m);
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(map_put(&m, k[i].p, k[i].len, val(i)), 0);
        present[i] = true;
    }
    check_iteration(&m, k, N, present);
    uint64_t seed = 7;
    for (size_t i = 0; i < N; i++)
        if (rng_next(&seed) % 3 == 0) {
            cr_assert_eq(map_del(&m, k[i].p, k[i].len), val(i));
            present[i] = false;
        }
    check_iteration(&m, k, N, present);
    map_free(&m);
    free(present);
    free_keys(k, N);
    check_leaks();
}

Test(broker_map, keys_with_embedded_nul_bytes)
{
    /* keys are byte strings: a NUL is an ordinary byte and length is part of
     * identity */
    static const struct {
        const char *p;
        size_t len;
    } keys[] = {
        {"", 0},       {"\0", 1},        {"\0\0", 2},     {"a", 1},
        {"a\0", 2},    {"a\0b", 3},      {"a\0c", 3},     {"a\0b\0", 4},
        {"\0a", 2},    {"ab", 2},        {"b\0a", 3},     {"\0\0\0\0\0\0\0\0", 8},
        {"\0\0\0\0\0\0\0", 7},
    };
    enum { N = sizeof keys / sizeof keys[0] };
    struct map m;
    map_init(&m);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(map_put(&m, keys[i].p, keys[i].len, val(i)), 0);
    cr_assert_eq(m.count, N, "distinct binary keys merged");
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(map_get(&m, keys[i].p, keys[i].len), val(i), "key %zu", i);
    for (size_t i = 0; i < N; i += 2)
        cr_assert_eq(map_del(&m, keys[i].p, keys[i].len), val(i));
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(map_get(&m, keys[i].p, keys[i].len), i % 2 ? val(i) : NULL, "key %zu", i);
    check_invariants(&m);
    map_free(&m);
    check_leaks();
}

/* Pairs of distinct keys with the same 64-bit hash, found offline with Pollard's
 * rho over the map's hash (FNV-1a, then h ^ h >> 29). The second pair starts
 * with a NUL byte, so a comparison that stops at NUL would merge them. */
static const struct {
    uint8_t a[9], b[9];
    size_t len;
} collisions[] = {
    {{0xfa, 0x04, 0x4f, 0x2f, 0xd2, 0xf9, 0x88, 0xab},
     {0x9d, 0x82, 0xb7, 0x6f, 0x1a, 0x83, 0x95, 0x41}, 8},
    {{0x00, 0xf1, 0x5a, 0x5d, 0x89, 0x66, 0xc1, 0x8f, 0x9f},
     {0x00, 0x6a, 0xc4, 0xa7, 0x01, 0x89, 0x48, 0xf1, 0xbc}, 9},
};

Test(broker_map, keys_with_equal_hashes)
{
    for (size_t i = 0; i < sizeof collisions / sizeof collisions[0]; i++) {
        const char *a = (const char *)collisions[i].a, *b = (const char *)collisions[i].b;
        size_t len = collisions[i].len;
        cr_assert(memcmp(a, b, len) != 0);
        cr_assert_eq(key_hash(a, len), key_hash(b, len),
                     "pair %zu no longer collides: the hash changed, find a new pair", i);
        struct map m;
        map_init(&m);
        int va, vb;
        cr_assert_eq(map_put(&m, a, len, &va), 0);
        cr_assert_null(map_get(&m, b, len), "pair %zu: equal hash taken for equal key", i);
        cr_assert_null(map_del(&m, b, len));
        cr_assert_eq(m.count, 1);
        cr_assert_eq(map_put(&m, b, len, &vb), 0);
        cr_assert_eq(m.count, 2);
        cr_assert_eq(map_get(&m, a, len), &va);
        cr_assert_eq(map_get(&m, b, len), &vb);
        check_invariants(&m);
        cr_assert_eq(map_del(&m, a, len), &va);
        cr_assert_eq(map_get(&m, b, len), &vb);
        cr_assert_null(map_get(&m, a, len));
        cr_assert_eq(map_put(&m, a, len, &va), 0);
        cr_assert_eq(map_del(&m, b, len), &vb);
        cr_assert_eq(map_get(&m, a, len), &va);
        cr_assert_eq(m.count, 1);
        check_invariants(&m);
        map_free(&m);
    }
    check_leaks();
}

Test(broker_map, colliding_home_slots_with_wraparound)
{
    /* 12 keys (the most a 16-slot table holds) whose home slots are 14, 15 and
     * 0, so their probe runs cross the end of the table; delete them in many
     * orders. */
    static const size_t homes[] = {15, 15, 15, 15, 15, 14, 14, 14, 0, 0, 0, 15};
    enum { N = sizeof homes / sizeof homes[0] };
    struct key k[N];
    size_t want[16] = {0};
    for (size_t i = 0; i < N; i++)
        want[homes[i]]++;
    size_t have[16] = {0}, found = 0;
    char buf[32];
    for (uint64_t x = 0; found < N; x++) {
        int len = snprintf(buf, sizeof buf, "home-%llu", (unsigned long long)x);
        size_t h = (size_t)(key_hash(buf, (size_t)len) & 15);
        if (have[h] == want[h])
            continue;
        have[h]++;
        k[found].p = malloc((size_t)len);
        memcpy(k[found].p, buf, (size_t)len);
        k[found].len = (size_t)len;
        found++;
    }
    struct map m;
    map_init(&m);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(map_put(&m, k[i].p, k[i].len, val(i)), 0);
    cr_assert_eq(m.cap, 16, "the test needs the 16-slot table");
    cr_assert_not_null(m.slots[0].key);
    cr_assert_not_null(m.slots[15].key);
    check_invariants(&m);
    map_free(&m);
    for (uint64_t seed = 1; seed <= 2000; seed++)
        delete_all_randomly(k, N, 1, seed);
    for (size_t i = 0; i < N; i++)
        free(k[i].p);
    check_leaks();
}
