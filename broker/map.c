/* map: linear probing with backward-shift deletion (no tombstones). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"

static uint64_t hash_bytes(const char *k, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)k[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

void map_init(struct map *m) { memset(m, 0, sizeof(*m)); }

void map_free(struct map *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static struct map_slot *find(const struct map *m, const char *key, size_t len, uint64_t h)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct map_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s;
    }
}

void *map_get(const struct map *m, const char *key, size_t len)
{
    struct map_slot *s = find(m, key, len, hash_bytes(key, len));
    return s ? s->value : NULL;
}

static void insert_slot(struct map_slot *slots, size_t cap, struct map_slot e)
{
    size_t mask = cap - 1;
    size_t i = e.hash & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = e;
}

static int grow(struct map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    struct map_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            insert_slot(slots, cap, m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int map_put(struct map *m, const char *key, size_t len, void *value)
{
    uint64_t h = hash_bytes(key, len);
    struct map_slot *s = find(m, key, len, h);
    if (s) {
        s->key = key; /* the new owner's key */
        s->value = value;
        return 0;
    }
    if ((m->count + 1) * 4 > m->cap * 3) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    insert_slot(m->slots, m->cap, (struct map_slot){key, len, h, value});
    m->count++;
    return 0;
}

void *map_del(struct map *m, const char *key, size_t len)
{
    struct map_slot *s = find(m, key, len, hash_bytes(key, len));
    if (!s)
        return NULL;
    void *value = s->value;
    size_t mask = m->cap - 1;
    size_t hole = (size_t)(s - m->slots);
    /* backward shift: move later entries of the cluster into the hole when
     * their home slot is not between the hole and their position */
    for (size_t j = (hole + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    memset(&m->slots[hole], 0, sizeof(m->slots[hole]));
    m->count--;
    return value;
}

struct map_slot *map_next(const struct map *m, size_t *pos)
{
    while (*pos < m->cap) {
        struct map_slot *s = &m->slots[(*pos)++];
        if (s->key)
            return s;
    }
    return NULL;
}
