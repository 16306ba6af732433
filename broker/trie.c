/* trie: the topic-level tree behind subscriptions and retained messages.
 *
 * Layout. Each node stands for one topic level and owns a copy of that level's
 * bytes. Children are reached three ways: a literal level through an
 * open-addressed hash table (linear probing, power-of-two size, grown at 3/4 load
 * and shrunk below 1/8, backward-shift deletion so there are no tombstones), and
 * the '+' and '#' levels through dedicated pointers, so the subscription walk
 * never has to look them up. The root stands for "before the first level"; every
 * key has at least one level ("" is one empty level), so the root never holds
 * items. Nodes are freed as soon as they hold no item and no child, the root
 * included, so an empty trie owns no memory.
 *
 * Hashing. Topic levels come from clients (a retained message per topic is
 * enough to fill a table), so a fixed hash would let anyone who knows it pile
 * every key into one probe chain. Levels are hashed with SipHash-1-3 under a key
 * drawn from getrandom() when the root is created.
 *
 * Walks. Matching is on the publish path, so it allocates nothing and does not
 * recurse: every walk is a depth-first search that backtracks through the
 * parent pointers and recovers its position in the topic or filter by scanning
 * back to the previous '/'. A topic with 30,000 levels costs time, not stack.
 * Callbacks must not insert into or remove from the trie being walked. */
#include "trie.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct trie_node {
    struct trie_node *parent;   /* NULL for the root */
    const char *level;          /* this node's level, stored right after the node */
    size_t len;
    uint64_t hv;                /* hash of level under the trie's key */

    struct trie_node **slots;   /* literal children, NULL = free slot */
    uint32_t cap;               /* 0 or a power of two */
    uint32_t count;
    struct trie_node *plus;     /* child for the level "+" */
    struct trie_node *hash;     /* child for the level "#" */

    struct trie_item **items;   /* items stored under this exact key; item->index is the position */
    uint32_t nitems;
    uint32_t items_cap;
};

/* The root also carries the hash key: one per trie, no globals. The node is the
 * first member, so t->root points at both. */
struct trie_root {
    struct trie_node node;
    uint64_t k0, k1;
};

#define TRIE_MIN_SLOTS 4u

/* ---- SipHash-1-3 ---------------------------------------------------------- */

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline void sip_round(uint64_t v[4])
{
    v[0] += v[1]; v[1] = ROTL64(v[1], 13); v[1] ^= v[0]; v[0] = ROTL64(v[0], 32);
    v[2] += v[3]; v[3] = ROTL64(v[3], 16); v[3] ^= v[2];
    v[0] += v[3]; v[3] = ROTL64(v[3], 21); v[3] ^= v[0];
    v[2] += v[1]; v[1] = ROTL64(v[1], 17); v[1] ^= v[2]; v[2] = ROTL64(v[2], 32);
}

static inline uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t m = 0;
    for (size_t i = 0; i < n; i++)
        m |= (uint64_t)p[i] << (8 * i);
    return m;
}

static uint64_t sip13(uint64_t k0, uint64_t k1, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    uint64_t v[4] = {k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
                     k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL};
    size_t i;

    for (i = 0; len - i >= 8; i += 8) {
        uint64_t m = load_le(p + i, 8);
        v[3] ^= m;
        sip_round(v);
        v[0] ^= m;
    }
    uint64_t b = ((uint64_t)len << 56) | load_le(p + i, len - i);
    v[3] ^= b;
    sip_round(v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sip_round(v);
    sip_round(v);
    sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static inline uint64_t level_hash(const struct trie *t, const char *s, size_t len)
{
    const struct trie_root *r = (const struct trie_root *)t->root;
    return sip13(r->k0, r->k1, s, len);
}

/* ---- levels --------------------------------------------------------------- */

/* End (exclusive) of the level starting at off. */
static inline size_t level_end(const char *key, size_t len, size_t off)
{
    const char *slash = off < len ? memchr(key + off, '/', len - off) : NULL;
    return slash ? (size_t)(slash - key) : len;
}

/* Start of the level that ends just before off, where off is the start of the
 * following level, or len + 1 once every level has been consumed. */
static inline size_t level_start(const char *key, size_t off)
{
    size_t s = off - 1;
    while (s > 0 && key[s - 1] != '/')
        s--;
    return s;
}

static inline bool is_plus(const char *s, size_t len)
{
    return len == 1 && s[0] == '+';
}

static inline bool is_hash(const char *s, size_t len)
{
    return len == 1 && s[0] == '#';
}

/* ---- children ------------------------------------------------------------- */

static struct trie_node *table_find(const struct trie_node *n, const char *s, size_t len, uint64_t h)
{
    if (n->cap == 0)
        return NULL;
    uint32_t mask = n->cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        struct trie_node *c = n->slots[i];
        if (c == NULL)
            return NULL;
        if (c->hv == h && c->len == len && memcmp(c->level, s, len) == 0)
            return c;
    }
}

static void table_place(struct trie_node **slots, uint32_t cap, struct trie_node *c)
{
    uint32_t mask = cap - 1;
    uint32_t i = (uint32_t)c->hv & mask;
    while (slots[i] != NULL)
        i = (i + 1) & mask;
    slots[i] = c;
}

/* Rehashes n's literal children into a table of cap slots (a power of two
 * larger than count / load factor). Leaves n untouched on failure. */
static int table_resize(struct trie_node *n, uint32_t cap)
{
    struct trie_node **slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < n->cap; i++)
        if (n->slots[i] != NULL)
            table_place(slots, cap, n->slots[i]);
    free(n->slots);
    n->slots = slots;
    n->cap = cap;
    return 0;
}

static int table_add(struct trie_node *n, struct trie_node *c)
{
    if ((uint64_t)(n->count + 1) * 4 > (uint64_t)n->cap * 3) {
        if (n->cap > UINT32_MAX / 2)
            return -ENOMEM;
        int rc = table_resize(n, n->cap ? n->cap * 2 : TRIE_MIN_SLOTS);
        if (rc != 0)
            return rc;
    }
    table_place(n->slots, n->cap, c);
    n->count++;
    return 0;
}

static uint32_t table_slot_of(const struct trie_node *n, const struct trie_node *c)
{
    uint32_t mask = n->cap - 1;
    uint32_t i = (uint32_t)c->hv & mask;
    while (n->slots[i] != c)
        i = (i + 1) & mask;
    return i;
}

static void table_del(struct trie_node *n, struct trie_node *c)
{
    uint32_t mask = n->cap - 1;
    uint32_t hole = table_slot_of(n, c);

    /* Backward shift: pull later members of the probe run into the hole unless
     * their home slot lies cyclically in (hole, j], where they already are as
     * close to home as the run allows. */
    for (uint32_t j = (hole + 1) & mask; n->slots[j] != NULL; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)n->slots[j]->hv & mask;
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            n->slots[hole] = n->slots[j];
            hole = j;
        }
    }
    n->slots[hole] = NULL;
    n->count--;

    if (n->count == 0) {
        free(n->slots);
        n->slots = NULL;
        n->cap = 0;
    } else if (n->cap > TRIE_MIN_SLOTS * 2 && (uint64_t)n->count * 8 < n->cap) {
        uint32_t cap = n->cap;
        while (cap > TRIE_MIN_SLOTS * 2 && (uint64_t)n->count * 4 < cap)
            cap /= 2;
        (void)table_resize(n, cap); /* failing to shrink only wastes memory */
    }
}

/* Child for a level as stored: "+" and "#" are the dedicated pointers. */
static struct trie_node *child_get(const struct trie *t, const struct trie_node *n, const char *s, size_t len)
{
    if (is_plus(s, len))
        return n->plus;
    if (is_hash(s, len))
        return n->hash;
    if (n->cap == 0)
        return NULL;
    return table_find(n, s, len, level_hash(t, s, len));
}

static struct trie_node *child_add(struct trie *t, struct trie_node *n, const char *s, size_t len)
{
    if (len > SIZE_MAX - sizeof(struct trie_node) - 1)
        return NULL;
    struct trie_node *c = calloc(1, sizeof(*c) + len + 1);
    if (c == NULL)
        return NULL;
    char *level = (char *)(c + 1);
    memcpy(level, s, len);
    level[len] = '\0';
    c->level = level;
    c->len = len;
    c->parent = n;

    if (is_plus(s, len)) {
        n->plus = c;
    } else if (is_hash(s, len)) {
        n->hash = c;
    } else {
        c->hv = level_hash(t, s, len);
        if (table_add(n, c) != 0) {
            free(c);
            return NULL;
        }
    }
    t->nodes++;
    return c;
}

/* Whether the wildcard walks may enter child c of n: a filter whose first level
 * is '+' or '#' does not match topics starting with '$' (MQTT 5 4.7.2). */
static inline bool child_eligible(const struct trie_node *root, const struct trie_node *n,
                                  const struct trie_node *c)
{
    return n != root || c->len == 0 || c->level[0] != '$';
}

/* Children are enumerated over the index space [0, cap) for the table slots,
 * cap for '+', cap + 1 for '#'. */
static uint64_t child_index(const struct trie_node *n, const struct trie_node *c)
{
    if (c == n->plus)
        return n->cap;
    if (c == n->hash)
        return (uint64_t)n->cap + 1;
    return table_slot_of(n, c);
}

/* First eligible child at index idx or later, or NULL. */
static struct trie_node *child_next(const struct trie_node *root, const struct trie_node *n, uint64_t idx)
{
    for (; idx < n->cap; idx++) {
        struct trie_node *c = n->slots[idx];
        if (c != NULL && child_eligible(root, n, c))
            return c;
    }
    if (idx == n->cap && n->plus != NULL && child_eligible(root, n, n->plus))
        return n->plus;
    if (idx <= (uint64_t)n->cap + 1 && n->hash != NULL && child_eligible(root, n, n->hash))
        return n->hash;
    return NULL;
}

/* ---- nodes ---------------------------------------------------------------- */

static int root_create(struct trie *t)
{
    struct trie_root *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->node.level = "";
    uint64_t k[2];
    if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
        /* No entropy yet (early boot): the address and the clock still keep the
         * key from being a constant known in advance. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        k[0] = (uint64_t)(uintptr_t)r * 0x9E3779B97F4A7C15ULL ^ (uint64_t)ts.tv_nsec;
        k[1] = (uint64_t)ts.tv_sec * 0xC2B2AE3D27D4EB4FULL ^ (uint64_t)(uintptr_t)t;
    }
    r->k0 = k[0];
    r->k1 = k[1];
    t->root = &r->node;
    t->nodes++;
    return 0;
}

static void node_free(struct trie_node *n)
{
    free(n->slots);
    free(n->items);
    free(n); /* for the root this is the struct trie_root it begins */
}

static inline bool node_empty(const struct trie_node *n)
{
    return n->nitems == 0 && n->count == 0 && n->plus == NULL && n->hash == NULL;
}

/* Frees n and its ancestors for as long as they are empty. */
static void prune(struct trie *t, struct trie_node *n)
{
    while (n != NULL && node_empty(n)) {
        struct trie_node *p = n->parent;
        if (p == NULL)
            t->root = NULL;
        else if (p->plus == n)
            p->plus = NULL;
        else if (p->hash == n)
            p->hash = NULL;
        else
            table_del(p, n);
        node_free(n);
        t->nodes--;
        n = p;
    }
}

static int items_push(struct trie_node *n, struct trie_item *item)
{
    if (n->nitems == n->items_cap) {
        if (n->items_cap > UINT32_MAX / 2)
            return -ENOMEM;
        uint32_t cap = n->items_cap ? n->items_cap * 2 : 1;
        struct trie_item **items = realloc(n->items, (size_t)cap * sizeof(*items));
        if (items == NULL)
            return -ENOMEM;
        n->items = items;
        n->items_cap = cap;
    }
    item->node = n;
    item->index = n->nitems;
    n->items[n->nitems++] = item;
    return 0;
}

static void items_shrink(struct trie_node *n)
{
    if (n->nitems == 0) {
        free(n->items);
        n->items = NULL;
        n->items_cap = 0;
    } else if (n->items_cap >= 8 && (uint64_t)n->nitems * 4 < n->items_cap) {
        struct trie_item **items = realloc(n->items, (size_t)(n->items_cap / 2) * sizeof(*items));
        if (items != NULL) {
            n->items = items;
            n->items_cap /= 2;
        }
    }
}

static int report(const struct trie_node *n, trie_match_cb cb, void *arg)
{
    for (uint32_t i = 0; i < n->nitems; i++) {
        int rc = cb(n->items[i], arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- public --------------------------------------------------------------- */

void trie_init(struct trie *t)
{
    t->root = NULL;
    t->items = 0;
    t->nodes = 0;
}

void trie_free(struct trie *t)
{
    struct trie_node *n = t->root;

    /* Destructive post-order walk: detach one child at a time and descend into
     * it; free a node once it has none left. The table is consumed from its end
     * (cap shrinks as a cursor) so a wide node costs O(cap) in total. */
    while (n != NULL) {
        struct trie_node *c = NULL;
        while (n->cap > 0 && n->slots[n->cap - 1] == NULL)
            n->cap--;
        if (n->cap > 0) {
            c = n->slots[--n->cap];
        } else if (n->plus != NULL) {
            c = n->plus;
            n->plus = NULL;
        } else if (n->hash != NULL) {
            c = n->hash;
            n->hash = NULL;
        }
        if (c != NULL) {
            n = c;
            continue;
        }
        struct trie_node *p = n->parent;
        node_free(n);
        n = p;
    }
    trie_init(t);
}

int trie_insert(struct trie *t, const char *key, size_t len, struct trie_item *item)
{
    struct trie_node *n;
    size_t off = 0;

    item->node = NULL;
    if (t->root == NULL && root_create(t) != 0)
        return -ENOMEM;
    n = t->root;
    for (;;) {
        size_t end = level_end(key, len, off);
        struct trie_node *c = child_get(t, n, key + off, end - off);
        if (c == NULL)
            c = child_add(t, n, key + off, end - off);
        if (c == NULL)
            goto undo_nodes;
        n = c;
        if (end == len)
            break;
        off = end + 1;
    }
    if (items_push(n, item) != 0)
        goto undo_nodes;
    t->items++;
    return 0;

undo_nodes:
    prune(t, n);
    return -ENOMEM;
}

void trie_remove(struct trie *t, struct trie_item *item)
{
    struct trie_node *n = item->node;
    if (n == NULL)
        return;

    uint32_t last = --n->nitems;
    if (item->index != last) {
        struct trie_item *moved = n->items[last];
        n->items[item->index] = moved;
        moved->index = item->index;
    }
    item->node = NULL;
    item->index = 0;
    t->items--;
    items_shrink(n);
    prune(t, n);
}

int trie_exact(const struct trie *t, const char *key, size_t len, trie_match_cb cb, void *arg)
{
    const struct trie_node *n = t->root;
    size_t off = 0;

    while (n != NULL) {
        size_t end = level_end(key, len, off);
        n = child_get(t, n, key + off, end - off);
        if (end == len)
            break;
        off = end + 1;
    }
    return n != NULL ? report(n, cb, arg) : 0;
}

/* trie_match_topic backtracking: n's literal branch is done and *off is n's next
 * level (or len + 1). Returns the next node to enter, which is always the '+'
 * child of n or of an ancestor reached over a literal edge, or NULL when the
 * walk is over. */
static const struct trie_node *topic_next(const struct trie_node *root, const struct trie_node *n,
                                          size_t *off, const char *topic, size_t len, bool dollar)
{
    for (;;) {
        if (*off <= len && n->plus != NULL && !(n == root && dollar)) {
            *off = level_end(topic, len, *off) + 1;
            return n->plus;
        }
        bool via_plus;
        do {
            if (n == root)
                return NULL;
            const struct trie_node *p = n->parent;
            *off = level_start(topic, *off);
            via_plus = n == p->plus;
            n = p;
        } while (via_plus);
    }
}

int trie_match_topic(const struct trie *t, const char *topic, size_t len, trie_match_cb cb, void *arg)
{
    const struct trie_node *root = t->root;
    const struct trie_node *n = root;
    bool dollar = len > 0 && topic[0] == '$';
    size_t off = 0; /* start of the topic level below n; len + 1 once all are consumed */
    int rc;

    while (n != NULL) {
        /* '#' below n matches the remaining levels, including none ("a/#" matches "a") */
        if (n->hash != NULL && !(n == root && dollar) && (rc = report(n->hash, cb, arg)) != 0)
            return rc;
        if (off > len) {
            if ((rc = report(n, cb, arg)) != 0)
                return rc;
        } else if (n->cap > 0) {
            size_t end = level_end(topic, len, off);
            const struct trie_node *c =
                table_find(n, topic + off, end - off, level_hash(t, topic + off, end - off));
            if (c != NULL) {
                n = c;
                off = end + 1;
                continue;
            }
        }
        n = topic_next(root, n, &off, topic, len, dollar);
    }
    return 0;
}

/* Reports every item in the subtree under top, top included, without recursion. */
static int walk_subtree(const struct trie_node *root, const struct trie_node *top, trie_match_cb cb, void *arg)
{
    const struct trie_node *n = top;
    int rc;

    if ((rc = report(n, cb, arg)) != 0)
        return rc;
    for (;;) {
        const struct trie_node *c = child_next(root, n, 0);
        while (c == NULL) {
            if (n == top)
                return 0;
            const struct trie_node *p = n->parent;
            c = child_next(root, p, child_index(p, n) + 1);
            n = p;
        }
        n = c;
        if ((rc = report(n, cb, arg)) != 0)
            return rc;
    }
}

/* trie_match_filter backtracking: the filter is done with n and *off is n's next
 * filter level (or len + 1). Climbs to the nearest ancestor entered through a
 * '+' level that still has an eligible sibling of the child left, or NULL. */
static const struct trie_node *filter_next(const struct trie_node *root, const struct trie_node *n,
                                           size_t *off, const char *filter, size_t len)
{
    while (n != root) {
        const struct trie_node *p = n->parent;
        *off = level_start(filter, *off);
        size_t end = level_end(filter, len, *off);
        if (is_plus(filter + *off, end - *off)) {
            const struct trie_node *c = child_next(root, p, child_index(p, n) + 1);
            if (c != NULL) {
                *off = end + 1;
                return c;
            }
        }
        n = p;
    }
    return NULL;
}

int trie_match_filter(const struct trie *t, const char *filter, size_t len, trie_match_cb cb, void *arg)
{
    const struct trie_node *root = t->root;
    const struct trie_node *n = root;
    size_t off = 0; /* start of the filter level below n; len + 1 once all are consumed */
    int rc;

    while (n != NULL) {
        if (off > len) {
            if ((rc = report(n, cb, arg)) != 0)
                return rc;
        } else {
            size_t end = level_end(filter, len, off);
            const char *lvl = filter + off;
            const struct trie_node *c;
            if (is_hash(lvl, end - off)) {
                /* only valid as the last level; elsewhere the filter matches nothing */
                if (end == len && (rc = walk_subtree(root, n, cb, arg)) != 0)
                    return rc;
            } else if (is_plus(lvl, end - off)) {
                if ((c = child_next(root, n, 0)) != NULL) {
                    n = c;
                    off = end + 1;
                    continue;
                }
            } else if (n->cap > 0 &&
                       (c = table_find(n, lvl, end - off, level_hash(t, lvl, end - off))) != NULL) {
                n = c;
                off = end + 1;
                continue;
            }
        }
        n = filter_next(root, n, &off, filter, len);
    }
    return 0;
}

size_t trie_item_key(const struct trie_item *item, char *buf, size_t buflen)
{
    const struct trie_node *n;
    size_t total = 0;

    if (item->node == NULL) {
        if (buflen > 0)
            buf[0] = '\0';
        return 0;
    }
    for (n = item->node; n->parent != NULL; n = n->parent)
        total += n->len + 1;
    total--; /* one separator fewer than levels */

    /* Fill from the end; bytes past buflen - 1 are counted but not written. */
    size_t pos = total;
    for (n = item->node; n->parent != NULL; n = n->parent) {
        pos -= n->len;
        for (size_t i = 0; i < n->len; i++)
            if (pos + i + 1 < buflen)
                buf[pos + i] = n->level[i];
        if (pos > 0) {
            pos--;
            if (pos + 1 < buflen)
                buf[pos] = '/';
        }
    }
    if (buflen > 0)
        buf[total < buflen ? total : buflen - 1] = '\0';
    return total;
}
