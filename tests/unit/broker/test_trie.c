/* Tests for broker/trie.c: MQTT matching rules in both directions, removal and
 * pruning, wide and deep trees, early stop. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "list.h" /* container_of */
#include "trie.h"
#include "../check_leaks.h"

struct obj {
    struct trie_item item;
    int id;
};

/* Collects the ids reported by a walk; counts duplicates. */
struct hits {
    int *count; /* per id */
    int n;      /* total calls */
    int stop_at; /* return 42 on this call (1-based), 0 = never */
};

static int collect(struct trie_item *item, void *arg)
{
    struct hits *h = arg;
    struct obj *o = container_of(item, struct obj, item);
    if (h->count != NULL)
        h->count[o->id]++;
    h->n++;
    return h->stop_at != 0 && h->n == h->stop_at ? 42 : 0;
}

static int insert(struct trie *t, struct obj *o, const char *key)
{
    return trie_insert(t, key, strlen(key), &o->item);
}

static int count_topic(const struct trie *t, const char *topic)
{
    struct hits h = {0};
    cr_assert_eq(trie_match_topic(t, topic, strlen(topic), collect, &h), 0);
    return h.n;
}

static int count_filter(const struct trie *t, const char *filter)
{
    struct hits h = {0};
    cr_assert_eq(trie_match_filter(t, filter, strlen(filter), collect, &h), 0);
    return h.n;
}

static int count_exact(const struct trie *t, const char *key)
{
    struct hits h = {0};
    cr_assert_eq(trie_exact(t, key, strlen(key), collect, &h), 0);
    return h.n;
}

/* Straightforward MQTT 5 4.7 matcher the trie is checked against. */
static bool ref_match(const char *filter, const char *topic)
{
    const char *f = filter, *t = topic;
    size_t fl0 = strcspn(filter, "/");
    if (topic[0] == '$' && fl0 == 1 && (filter[0] == '+' || filter[0] == '#'))
        return false;
    for (;;) {
        size_t fl = strcspn(f, "/"), tl = strcspn(t, "/");
        if (fl == 1 && f[0] == '#')
            return true;
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return false;
        bool fend = f[fl] == '\0', tend = t[tl] == '\0';
        if (fend && tend)
            return true;
        if (tend)
            return strcmp(f + fl + 1, "#") == 0;
        if (fend)
            return false;
        f += fl + 1;
        t += tl + 1;
    }
}

static const struct {
    const char *filter, *topic;
    bool match;
} match_table[] = {
    /* literal levels */
    {"a", "a", true},
    {"a", "b", false},
    {"a", "a/b", false},
    {"a/b", "a", false},
    {"a/b/c", "a/b/c", true},
    {"a/b/c", "a/b/d", false},
    {"A", "a", false},
    {"abc", "ab", false},
    /* empty levels are real levels */
    {"a//b", "a//b", true},
    {"a//b", "a/b", false},
    {"a/b", "a//b", false},
    {"/a", "/a", true},
    {"/a", "a", false},
    {"a/", "a/", true},
    {"a/", "a", false},
    {"a", "a/", false},
    {"//", "//", true},
    {"/", "/", true},
    {"/", "//", false},
    /* '+' is exactly one level, possibly empty */
    {"+", "a", true},
    {"+", "a/b", false},
    {"+", "/", false},
    {"+/+", "/", true},
    {"/+", "/", true},
    {"+/", "a/", true},
    {"+/", "a", false},
    {"a/+", "a/b", true},
    {"a/+", "a", false},
    {"a/+", "a/", true},
    {"a/+", "a/b/c", false},
    {"a/+/c", "a/b/c", true},
    {"a/+/c", "a//c", true},
    {"a/+/c", "a/b/d", false},
    {"+/+/+", "a/b/c", true},
    {"+/+/+", "//", true},
    {"+/+", "//", false},
    {"+/b/+", "a/b/c", true},
    {"+/x/+", "a/b/c", false},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    /* '#' is the parent and any number of levels */
    {"#", "a", true},
    {"#", "a/b/c", true},
    {"#", "/", true},
    {"#", "/a", true},
    {"a/#", "a", true},
    {"a/#", "a/b", true},
    {"a/#", "a/b/c", true},
    {"a/#", "a/", true},
    {"a/#", "ab", false},
    {"a/#", "b/a", false},
    {"a/b/#", "a", false},
    {"a/b/#", "a/b", true},
    {"a/b/#", "a/b/c/d/e", true},
    {"+/#", "a", true},
    {"+/#", "a/b", true},
    {"+/#", "/", true},
    {"/#", "/a", true},
    {"/#", "/", true},
    {"/#", "a", false},
    {"a/+/#", "a", false},
    {"a/+/#", "a/b", true},
    {"a/+/#", "a/b/c/d", true},
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/tennis/player1/#", "sport/tennis/player2", false},
    /* '$' topics and first-level wildcards */
    {"#", "$SYS/x", false},
    {"#", "$SYS", false},
    {"+", "$SYS", false},
    {"+/x", "$SYS/x", false},
    {"+/#", "$SYS/x", false},
    {"$SYS/#", "$SYS/x", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/#", "$SYS/a/b", true},
    {"$SYS/+", "$SYS/x", true},
    {"$SYS/x", "$SYS/x", true},
    {"$x/#", "$y/z", false},
    {"a/$x", "a/$x", true},
    {"a/+", "a/$x", true},
    {"a/#", "a/$x", true},
    {"+/$x", "a/$x", true},
    {"#", "a$", true},
};

#define N_MATCH (sizeof(match_table) / sizeof(match_table[0]))

Test(trie, reference_matcher_agrees_with_table)
{
    for (size_t i = 0; i < N_MATCH; i++)
        cr_expect_eq(ref_match(match_table[i].filter, match_table[i].topic), match_table[i].match,
                     "ref_match(\"%s\", \"%s\")", match_table[i].filter, match_table[i].topic);
    check_leaks();
}

Test(trie, match_topic_table)
{
    for (size_t i = 0; i < N_MATCH; i++) {
        struct trie t;
        struct obj o = {.id = 0};
        trie_init(&t);
        cr_assert_eq(insert(&t, &o, match_table[i].filter), 0);
        cr_expect_eq(count_topic(&t, match_table[i].topic), match_table[i].match ? 1 : 0,
                     "stored filter \"%s\", topic \"%s\"", match_table[i].filter, match_table[i].topic);
        trie_remove(&t, &o.item);
        cr_expect_eq(t.nodes, 0);
        trie_free(&t);
    }
    check_leaks();
}

Test(trie, match_filter_table)
{
    for (size_t i = 0; i < N_MATCH; i++) {
        struct trie t;
        struct obj o = {.id = 0};
        trie_init(&t);
        cr_assert_eq(insert(&t, &o, match_table[i].topic), 0);
        cr_expect_eq(count_filter(&t, match_table[i].filter), match_table[i].match ? 1 : 0,
                     "stored topic \"%s\", filter \"%s\"", match_table[i].topic, match_table[i].filter);
        trie_remove(&t, &o.item);
        cr_expect_eq(t.nodes, 0);
        trie_free(&t);
    }
    check_leaks();
}

/* Every filter of the table in one trie, every topic of the table against it:
 * each filter reported exactly once when it matches, never otherwise. And the
 * reverse with all topics stored. */
Test(trie, table_all_in_one_trie)
{
    static struct obj objs[N_MATCH];
    int count[N_MATCH];
    struct trie t;

    trie_init(&t);
    for (size_t i = 0; i < N_MATCH; i++) {
        objs[i].id = (int)i;
        cr_assert_eq(insert(&t, &objs[i], match_table[i].filter), 0);
    }
    cr_assert_eq(t.items, N_MATCH);
    for (size_t j = 0; j < N_MATCH; j++) {
        const char *topic = match_table[j].topic;
        struct hits h = {.count = count};
        memset(count, 0, sizeof(count));
        cr_assert_eq(trie_match_topic(&t, topic, strlen(topic), collect, &h), 0);
        for (size_t i = 0; i < N_MATCH; i++)
            cr_expect_eq(count[i], ref_match(match_table[i].filter, topic) ? 1 : 0,
                         "filter \"%s\" topic \"%s\" reported %d times", match_table[i].filter, topic, count[i]);
    }
    trie_free(&t);
    cr_expect_eq(t.nodes, 0);

    trie_init(&t);
    for (size_t i = 0; i < N_MATCH; i++)
        cr_assert_eq(insert(&t, &objs[i], match_table[i].topic), 0);
    for (size_t j = 0; j < N_MATCH; j++) {
        const char *filter = match_table[j].filter;
        struct hits h = {.count = count};
        memset(count, 0, sizeof(count));
        cr_assert_eq(trie_match_filter(&t, filter, strlen(filter), collect, &h), 0);
        for (size_t i = 0; i < N_MATCH; i++)
            cr_expect_eq(count[i], ref_match(filter, match_table[i].topic) ? 1 : 0,
                         "topic \"%s\" filter \"%s\" reported %d times", match_table[i].topic, filter, count[i]);
    }
    trie_free(&t);
    check_leaks();
}

/* Deterministic pseudo-random keys over a tiny alphabet, so that levels collide
 * often and wildcards, empty levels and '$' meet in every combination. */
static uint32_t rng_next(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void random_key(uint32_t *s, char *buf, bool filter)
{
    static const char *const lv[] = {"a", "b", "", "$x", "+", "#"};
    int levels = 1 + (int)(rng_next(s) % 5);
    buf[0] = '\0';
    for (int i = 0; i < levels; i++) {
        int n = filter ? 5 : 4;
        const char *l = lv[rng_next(s) % (uint32_t)n];
        if (filter && i == levels - 1 && rng_next(s) % 4 == 0)
            l = "#";
        if (i > 0)
            strcat(buf, "/");
        strcat(buf, l);
    }
}

Test(trie, random_against_reference)
{
    enum { NF = 400, NT = 400 };
    static struct obj objs[NF > NT ? NF : NT];
    static char filters[NF][32], topics[NT][32];
    static int count[NF > NT ? NF : NT];
    uint32_t seed = 12345;
    struct trie t;

    for (int i = 0; i < NF; i++)
        random_key(&seed, filters[i], true);
    for (int i = 0; i < NT; i++)
        random_key(&seed, topics[i], false);

    trie_init(&t);
    for (int i = 0; i < NF; i++) {
        objs[i].id = i;
        cr_assert_eq(insert(&t, &objs[i], filters[i]), 0);
    }
    for (int j = 0; j < NT; j++) {
        struct hits h = {.count = count};
        memset(count, 0, sizeof(count));
        trie_match_topic(&t, topics[j], strlen(topics[j]), collect, &h);
        for (int i = 0; i < NF; i++)
            cr_assert_eq(count[i], ref_match(filters[i], topics[j]) ? 1 : 0, "filter \"%s\" topic \"%s\": %d",
                         filters[i], topics[j], count[i]);
    }
    trie_free(&t);

    trie_init(&t);
    for (int i = 0; i < NT; i++) {
        objs[i].id = i;
        cr_assert_eq(insert(&t, &objs[i], topics[i]), 0);
    }
    for (int j = 0; j < NF; j++) {
        struct hits h = {.count = count};
        memset(count, 0, sizeof(count));
        trie_match_filter(&t, filters[j], strlen(filters[j]), collect, &h);
        for (int i = 0; i < NT; i++)
            cr_assert_eq(count[i], ref_match(filters[j], topics[i]) ? 1 : 0, "filter \"%s\" topic \"%s\": %d",
                         filters[j], topics[i], count[i]);
    }
    trie_free(&t);
    check_leaks();
}

Test(trie, empty_trie)
{
    struct trie t;
    trie_init(&t);
    cr_expect_eq(count_topic(&t, "a"), 0);
    cr_expect_eq(count_filter(&t, "#"), 0);
    cr_expect_eq(count_exact(&t, "a"), 0);
    cr_expect_eq(t.nodes, 0);
    cr_expect_eq(t.items, 0);
    trie_free(&t);
    check_leaks();
}

Test(trie, shared_keys_and_exact)
{
    struct obj o[5];
    struct trie t;
    int count[5];

    trie_init(&t);
    for (int i = 0; i < 5; i++)
        o[i].id = i;
    cr_assert_eq(insert(&t, &o[0], "a/+"), 0);
    cr_assert_eq(insert(&t, &o[1], "a/+"), 0);
    cr_assert_eq(insert(&t, &o[2], "a/+"), 0);
    cr_assert_eq(insert(&t, &o[3], "a/b"), 0);
    cr_assert_eq(insert(&t, &o[4], "a/#"), 0);
    cr_expect_eq(t.items, 5);
    cr_expect_eq(t.nodes, 5, "root, a, +, b, #: %zu", t.nodes);

    /* exact treats wildcards as plain levels */
    cr_expect_eq(count_exact(&t, "a/+"), 3);
    cr_expect_eq(count_exact(&t, "a/b"), 1);
    cr_expect_eq(count_exact(&t, "a/#"), 1);
    cr_expect_eq(count_exact(&t, "a"), 0);
    cr_expect_eq(count_exact(&t, "a/c"), 0);
    cr_expect_eq(count_exact(&t, "a/b/c"), 0);

    /* removing the middle one keeps the others reachable (swap-remove fixes indexes) */
    trie_remove(&t, &o[1].item);
    cr_expect_null(o[1].item.node);
    cr_expect_eq(count_exact(&t, "a/+"), 2);
    struct hits h = {.count = count};
    memset(count, 0, sizeof(count));
    trie_match_topic(&t, "a/b", 3, collect, &h);
    cr_expect_eq(count[0] + count[2] + count[3] + count[4], 4);
    cr_expect_eq(count[1], 0);
    trie_remove(&t, &o[0].item);
    trie_remove(&t, &o[2].item);
    cr_expect_eq(t.nodes, 4, "the + node is pruned");
    cr_expect_eq(count_topic(&t, "a/b"), 2);

    /* removing twice is a no-op */
    trie_remove(&t, &o[2].item);
    cr_expect_eq(t.items, 2);
    trie_remove(&t, &o[3].item);
    trie_remove(&t, &o[4].item);
    cr_expect_eq(t.items, 0);
    cr_expect_eq(t.nodes, 0);
    trie_free(&t);
    check_leaks();
}

Test(trie, pruning_keeps_shared_prefixes)
{
    struct obj a = {.id = 0}, b = {.id = 1}, c = {.id = 2}, d = {.id = 3};
    struct trie t;

    trie_init(&t);
    cr_assert_eq(insert(&t, &a, "x/y/z"), 0);
    cr_expect_eq(t.nodes, 4);
    cr_assert_eq(insert(&t, &b, "x/y/w"), 0);
    cr_expect_eq(t.nodes, 5);
    cr_assert_eq(insert(&t, &c, "x"), 0);
    cr_expect_eq(t.nodes, 5);
    cr_assert_eq(insert(&t, &d, "x/+/#"), 0);
    cr_expect_eq(t.nodes, 7);

    trie_remove(&t, &a.item);
    cr_expect_eq(t.nodes, 6);
    trie_remove(&t, &d.item);
    cr_expect_eq(t.nodes, 4);
    trie_remove(&t, &b.item);
    cr_expect_eq(t.nodes, 2, "root and x, which still holds an item");
    cr_expect_eq(count_exact(&t, "x"), 1);
    trie_remove(&t, &c.item);
    cr_expect_eq(t.nodes, 0);
    cr_expect_null(t.root);
    trie_free(&t);
    check_leaks();
}

Test(trie, many_items_insert_remove)
{
    enum { N = 5000, KEYS = 97 };
    static struct obj objs[N];
    static int count[N];
    static char keys[KEYS][24];
    struct trie t;
    uint32_t seed = 7;

    trie_init(&t);
    for (int k = 0; k < KEYS; k++)
        snprintf(keys[k], sizeof(keys[k]), "k/%d/%s", k % 13, k % 2 ? "odd" : "even/x");
    for (int i = 0; i < N; i++) {
        objs[i].id = i;
        cr_assert_eq(insert(&t, &objs[i], keys[i % KEYS]), 0);
    }
    cr_assert_eq(t.items, N);

    /* remove in a shuffled order, checking the survivors of one key as we go */
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(rng_next(&seed) % (uint32_t)(i + 1));
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    for (int r = 0; r < N; r++) {
        int victim = order[r];
        trie_remove(&t, &objs[victim].item);
        cr_assert_null(objs[victim].item.node);
        if (r % 250 == 0) {
            int k = victim % KEYS;
            struct hits h = {.count = count};
            memset(count, 0, sizeof(count));
            trie_exact(&t, keys[k], strlen(keys[k]), collect, &h);
            for (int i = k; i < N; i += KEYS)
                cr_assert_eq(count[i], objs[i].item.node != NULL ? 1 : 0, "item %d", i);
        }
    }
    cr_expect_eq(t.items, 0);
    cr_expect_eq(t.nodes, 0);
    trie_free(&t);
    check_leaks();
}

Test(trie, item_key_rebuilds_keys)
{
    static const char *const keys[] = {"a", "", "/", "//", "a//b", "/a", "a/", "+/#", "$SYS/broker/uptime",
                                       "sensor/100000/temp"};
    struct trie t;
    char buf[64];

    trie_init(&t);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        struct obj o = {.id = 0};
        cr_assert_eq(insert(&t, &o, keys[i]), 0);
        memset(buf, 'X', sizeof(buf));
        cr_expect_eq(trie_item_key(&o.item, buf, sizeof(buf)), strlen(keys[i]));
        cr_expect_str_eq(buf, keys[i]);
        trie_remove(&t, &o.item);
    }

    struct obj o = {.id = 0};
    cr_assert_eq(insert(&t, &o, "abc/def/ghi"), 0);
    memset(buf, 'X', sizeof(buf));
    cr_expect_eq(trie_item_key(&o.item, buf, 6), 11, "full length even when truncated");
    cr_expect_str_eq(buf, "abc/d");
    cr_expect_eq(buf[6], 'X', "nothing written past buflen");
    cr_expect_eq(trie_item_key(&o.item, buf, 1), 11);
    cr_expect_str_eq(buf, "");
    buf[0] = 'X';
    cr_expect_eq(trie_item_key(&o.item, buf, 0), 11);
    cr_expect_eq(buf[0], 'X');
    trie_remove(&t, &o.item);
    cr_expect_eq(trie_item_key(&o.item, buf, sizeof(buf)), 0, "not in a trie");
    trie_free(&t);
    check_leaks();
}

/* A node with 100,000 children (sensor/1..sensor/100000): must work and stay
 * usable; no timing is asserted. */
Test(trie, hundred_thousand_children, .timeout = 120)
{
    enum { N = 100000 };
    struct obj *objs = calloc(N, sizeof(*objs));
    char key[32];
    struct trie t;

    cr_assert_not_null(objs);
    trie_init(&t);
    for (int i = 0; i < N; i++) {
        objs[i].id = i;
        int n = snprintf(key, sizeof(key), "sensor/%d", i + 1);
        cr_assert_eq(trie_insert(&t, key, (size_t)n, &objs[i].item), 0);
    }
    cr_expect_eq(t.items, N);
    cr_expect_eq(t.nodes, N + 2);

    for (int i = 0; i < N; i += 997) {
        int n = snprintf(key, sizeof(key), "sensor/%d", i + 1);
        struct hits h = {0};
        trie_exact(&t, key, (size_t)n, collect, &h);
        cr_expect_eq(h.n, 1, "%s", key);
        cr_expect_eq(count_topic(&t, key), 1, "%s", key);
    }
    cr_expect_eq(count_topic(&t, "sensor/0"), 0);
    cr_expect_eq(count_topic(&t, "sensor/100001"), 0);
    cr_expect_eq(count_filter(&t, "sensor/+"), N);
    cr_expect_eq(count_filter(&t, "sensor/#"), N);
    cr_expect_eq(count_filter(&t, "#"), N);
    cr_expect_eq(count_filter(&t, "+/77777"), 1);

    char out[32];
    trie_item_key(&objs[41].item, out, sizeof(out));
    cr_expect_str_eq(out, "sensor/42");

    /* Remove in a shuffled order (exercising the table's backward-shift deletion
     * and its shrinking), checking after each round that exactly the survivors
     * are still found. */
    int *order = malloc(N * sizeof(*order));
    uint32_t seed = 99;
    cr_assert_not_null(order);
    for (int i = 0; i < N; i++)
        order[i] = i;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(rng_next(&seed) % (uint32_t)(i + 1));
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    static const int rounds[] = {N / 2, N - 1000, N - 10, N};
    int removed = 0;
    for (size_t r = 0; r < sizeof(rounds) / sizeof(rounds[0]); r++) {
        for (; removed < rounds[r]; removed++)
            trie_remove(&t, &objs[order[removed]].item);
        int survivors = 0;
        for (int i = 0; i < N; i++) {
            int n = snprintf(key, sizeof(key), "sensor/%d", i + 1);
            struct hits h = {0};
            trie_exact(&t, key, (size_t)n, collect, &h);
            cr_assert_eq(h.n, objs[i].item.node != NULL ? 1 : 0, "round %zu, %s", r, key);
            survivors += h.n;
        }
        cr_expect_eq(survivors, N - rounds[r]);
        cr_expect_eq(count_filter(&t, "sensor/+"), N - rounds[r]);
        cr_expect_eq(t.nodes, rounds[r] == N ? 0 : (size_t)(N - rounds[r] + 2));
    }
    free(order);

    /* and the same wide node under trie_free */
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "sensor/%d", i + 1);
        cr_assert_eq(trie_insert(&t, key, (size_t)n, &objs[i].item), 0);
    }
    trie_free(&t);
    cr_expect_eq(t.nodes, 0);
    cr_expect_eq(t.items, 0);
    free(objs);
    check_leaks();
}

/* Thousands of levels: the walks neither recurse nor allocate per level. */
Test(trie, deep_keys)
{
    enum { LEVELS = 20000 };
    size_t len = LEVELS * 2 - 1;
    char *key = malloc(len + 1);
    char *buf = malloc(len + 1);
    struct obj exact = {.id = 0}, hash = {.id = 1}, plus = {.id = 2};
    struct trie t;

    cr_assert_not_null(key);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < len; i++)
        key[i] = i % 2 ? '/' : 'a';
    key[len] = '\0';

    trie_init(&t);
    cr_assert_eq(trie_insert(&t, key, len, &exact.item), 0);
    cr_expect_eq(t.nodes, LEVELS + 1);
    cr_assert_eq(insert(&t, &hash, "a/a/#"), 0);
    key[len - 1] = '+';
    cr_assert_eq(trie_insert(&t, key, len, &plus.item), 0);
    key[len - 1] = 'a';

    struct hits h = {0};
    cr_expect_eq(trie_match_topic(&t, key, len, collect, &h), 0);
    cr_expect_eq(h.n, 3);
    cr_expect_eq(count_filter(&t, "#"), 3);
    cr_expect_eq(count_filter(&t, "a/#"), 3);
    h.n = 0;
    cr_expect_eq(trie_match_filter(&t, key, len, collect, &h), 0);
    cr_expect_eq(h.n, 1);

    cr_expect_eq(trie_item_key(&exact.item, buf, len + 1), len);
    cr_expect_eq(memcmp(buf, key, len + 1), 0);

    trie_remove(&t, &exact.item);
    trie_remove(&t, &plus.item);
    trie_remove(&t, &hash.item);
    cr_expect_eq(t.nodes, 0);
    trie_free(&t);
    free(key);
    free(buf);
    check_leaks();
}

Test(trie, callbacks_stop_the_walk)
{
    enum { N = 10 };
    struct obj objs[3 * N];
    struct trie t;
    char key[16];

    trie_init(&t);
    for (int i = 0; i < N; i++) {
        objs[i].id = i;
        cr_assert_eq(insert(&t, &objs[i], "s/k"), 0);
        objs[N + i].id = N + i;
        snprintf(key, sizeof(key), "s/%d", i);
        cr_assert_eq(insert(&t, &objs[N + i], key), 0);
        objs[2 * N + i].id = 2 * N + i;
        snprintf(key, sizeof(key), "s/%d/x", i);
        cr_assert_eq(insert(&t, &objs[2 * N + i], key), 0);
    }

    struct hits h = {.stop_at = 3};
    cr_expect_eq(trie_exact(&t, "s/k", 3, collect, &h), 42);
    cr_expect_eq(h.n, 3);

    h = (struct hits){.stop_at = 3};
    cr_expect_eq(trie_match_filter(&t, "s/+", 3, collect, &h), 42, "'+' over many children");
    cr_expect_eq(h.n, 3);

    h = (struct hits){.stop_at = 3};
    cr_expect_eq(trie_match_filter(&t, "s/#", 3, collect, &h), 42, "'#' subtree walk");
    cr_expect_eq(h.n, 3);

    h = (struct hits){.stop_at = 12};
    cr_expect_eq(trie_match_filter(&t, "#", 1, collect, &h), 42);
    cr_expect_eq(h.n, 12);

    h = (struct hits){.stop_at = 0};
    cr_expect_eq(trie_match_filter(&t, "#", 1, collect, &h), 0);
    cr_expect_eq(h.n, 3 * N);

    /* stored filters: stop in the middle of the items of one node */
    struct trie subs;
    struct obj f[4] = {{.id = 0}, {.id = 1}, {.id = 2}, {.id = 3}};
    trie_init(&subs);
    cr_assert_eq(insert(&subs, &f[0], "#"), 0);
    cr_assert_eq(insert(&subs, &f[1], "a/+"), 0);
    cr_assert_eq(insert(&subs, &f[2], "a/b"), 0);
    cr_assert_eq(insert(&subs, &f[3], "a/b"), 0);
    for (int stop = 1; stop <= 4; stop++) {
        h = (struct hits){.stop_at = stop};
        cr_expect_eq(trie_match_topic(&subs, "a/b", 3, collect, &h), 42);
        cr_expect_eq(h.n, stop);
    }
    h = (struct hits){.stop_at = 5};
    cr_expect_eq(trie_match_topic(&subs, "a/b", 3, collect, &h), 0);
    cr_expect_eq(h.n, 4);
    trie_free(&subs);
    trie_free(&t);
    check_leaks();
}

Test(trie, free_with_items_stored)
{
    struct obj objs[50];
    struct trie t;
    char key[32];

    trie_init(&t);
    for (int i = 0; i < 50; i++) {
        objs[i].id = i;
        snprintf(key, sizeof(key), "%s/%d/%s", i % 3 ? "a" : "+", i % 7, i % 2 ? "#" : "z");
        cr_assert_eq(insert(&t, &objs[i], key), 0);
    }
    cr_expect_gt(t.nodes, 10);
    trie_free(&t);
    cr_expect_eq(t.nodes, 0);
    cr_expect_eq(t.items, 0);
    cr_expect_null(t.root);

    /* the trie is reusable after trie_free */
    struct obj o = {.id = 0};
    cr_assert_eq(insert(&t, &o, "again"), 0);
    cr_expect_eq(count_topic(&t, "again"), 1);
    trie_free(&t);
    check_leaks();
}
