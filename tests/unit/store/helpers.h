/* Helpers shared by the store test suites (definitions in helpers.c). */
#ifndef STARLING_TEST_STORE_HELPERS_H
#define STARLING_TEST_STORE_HELPERS_H

#include <criterion/criterion.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"      /* common/: the dump buffer */
#include "internal.h" /* store__set_hash_mask, STORE__KEY_MAX */
#include "store.h"

#include "../check_leaks.h"

/* A literal as a struct store_bytes, or as the (pointer, length) argument pair. */
#define B(lit) ((struct store_bytes){(const uint8_t *)(lit), sizeof(lit) - 1})
#define U(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* Each test gets a fresh directory tmp_root (removed by the teardown);
 * env_dir (tmp_root/env/a, not created: store_open must) and env_dir2
 * (tmp_root/env2) are paths inside it. */
extern char tmp_root[64];
extern char env_dir[128];
extern char env_dir2[128];
void store_test_setup(void);
void store_test_teardown(void);

/* Asserting wrappers. */
struct store *open_at(const char *dir);
struct store_txn *wbegin(struct store *s);
struct store_txn *rbegin(struct store *s);
void commit(struct store_txn *t, uint64_t idx);

/* n bytes (malloc'd), none of them 0x00, a function of position and seed. */
uint8_t *pattern(size_t n, unsigned seed);
/* Records with every field set (views borrowed from the arguments). */
struct store_session session_rec(const uint8_t *id, size_t len, uint32_t owner);
struct store_sub sub_rec(const uint8_t *id, size_t id_len, const uint8_t *f, size_t f_len,
                         uint8_t qos);
bool bytes_eq(struct store_bytes a, struct store_bytes b);
void assert_session_eq(const struct store_session *a, const struct store_session *b);
void assert_sub_eq(const struct store_sub *a, const struct store_sub *b);
void assert_retained_eq(const struct store_retained *a, const struct store_retained *b);

/* Every record of s (into a common/ struct buf, freed with buf_free), field by field, then the applied index. */
struct buf dump(struct store *s);
void assert_same_dump(struct buf *a, struct buf *b);

/* A snapshot as one malloc'd buffer. */
uint8_t *concat(const struct iovec *iov, size_t n, size_t *len);
uint8_t *take_snapshot(struct store *s, size_t *len, uint64_t *idx);

/* foreach callbacks that count into an int. */
int count_session(void *arg, const struct store_session *r);
int count_sub(void *arg, const struct store_sub *r);
int count_retained(void *arg, const struct store_retained *r);
int client_sub_count(struct store_txn *t, const uint8_t *id, size_t len);

/* 2 sessions (alice, bob), 3 subs, 2 retained; applied index 5. */
void populate(struct store *s);
/* populate() plus a 65535-byte id with a session and a sub, and a retained
 * message on a 1000-byte topic; applied index 11. */
void populate_long(struct store *s);

/* Raw access to a named database of a closed environment. */
void raw_put(const char *dir, const char *db, const void *key, size_t klen, const void *val,
             size_t vlen);
uint8_t *raw_get(const char *dir, const char *db, const void *key, size_t klen, size_t *vlen);
/* Deletes a named database of a closed environment (as one written before it existed). */
void raw_drop(const char *dir, const char *db);

#endif
