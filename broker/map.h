/* map: an open-addressing hash map from byte-string keys to pointers. Keys are
 * borrowed: the caller keeps each key alive while its entry is in the map (the
 * value object usually owns it). */
#ifndef STARLING_BROKER_MAP_H
#define STARLING_BROKER_MAP_H

#include <stddef.h>
#include <stdint.h>

struct map_slot {
    const char *key;   /* NULL = empty */
    size_t len;
    uint64_t hash;
    void *value;
};

struct map {
    struct map_slot *slots;
    size_t cap;        /* power of two or 0 */
    size_t count;
};

void map_init(struct map *m);
void map_free(struct map *m);                 /* frees the table, not keys/values */
void *map_get(const struct map *m, const char *key, size_t len);
int map_put(struct map *m, const char *key, size_t len, void *value); /* 0 or -ENOMEM; replaces */
void *map_del(struct map *m, const char *key, size_t len);            /* returns old value */

/* Iteration: *pos starts at 0; returns the next occupied slot or NULL. */
struct map_slot *map_next(const struct map *m, size_t *pos);

#endif
