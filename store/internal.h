/* store internals: the environment and transaction structs, reading records
 * into views, the long-key layer shared by every table, and the record
 * codecs. Only store/ (and its unit tests) include this file or lmdb.h. */
#ifndef STARLING_STORE_INTERNAL_H
#define STARLING_STORE_INTERNAL_H

#include <lmdb.h>
#include <string.h>

#include "bytes.h" /* common/: the bounds-checked reader and fixed-width writers */
#include "store.h"

/* On-disk format of the environment and of snapshots. */
#define STORE__FORMAT 1u
/* Version of every record value (low 7 bits of its first byte). */
#define STORE__RECORD_VERSION 1u
/* Set in a value's first byte when its key is a hashed long key. */
#define STORE__HASHED 0x80u

/* Longest LMDB key we write. Fixed (LMDB's default) rather than asked of the
 * environment so that files and snapshots do not depend on how liblmdb was
 * built; an LMDB whose limit is lower is refused at open. */
#define STORE__KEY_MAX 511u
/* A hashed key: the first STORE__KEY_PREFIX bytes of the full key, 0x01, and a
 * u64 big-endian slot (home slot = hash of the full key, then linear probing),
 * STORE__KEY_MAX bytes in all. Keys shorter than STORE__KEY_MAX are stored as
 * they are, so the two kinds never share an LMDB key. */
#define STORE__KEY_PREFIX (STORE__KEY_MAX - 9u)

enum store__table {
    STORE__META = 0,
    STORE__SESSIONS = 1, /* the table ids double as snapshot table ids */
    STORE__SUBS = 2,
    STORE__RETAINED = 3,
    STORE__USERS = 4,
    STORE__ACL = 5,
    STORE__MSGS = 6,    /* durable sessions (queue.c) */
    STORE__QUEUE = 7,
    STORE__QSTAT = 8,
    STORE__INBOUND = 9,
    STORE__NTABLES = 10,
};

struct store {
    MDB_env *env;
    MDB_dbi dbi[STORE__NTABLES];
    uint64_t applied_index; /* as of the last commit (or, read-only, the last read_begin) */
    uint64_t hash_mask;     /* applied to the home slot; ~0 except in collision tests */
    bool readonly;
    bool writing;           /* a write transaction is open */
    /* read-only, on an environment written before the table existed (users,
     * acl): it reads as empty */
    bool absent[STORE__NTABLES];
};

struct store_txn {
    struct store *s;
    MDB_txn *t;
    MDB_cursor *cur[STORE__NTABLES]; /* opened on first use, closed at the end */
    bool write;
    int err; /* first failure that may have left a partial change; commit refuses */
};

/* Maps an LMDB return code to a store error or -errno. */
int store__lmdb_err(int rc);
/* Records the first failure of a write operation so that commit refuses. */
static inline int store__fail(struct store_txn *txn, int err)
{
    if (txn->err == 0)
        txn->err = err;
    return err;
}
/* The cursor cached in txn for table (opened on first use). */
int store__cursor(struct store_txn *txn, enum store__table table, MDB_cursor **out);
/* Test hook: home slots are hash & mask, so a small mask forces collisions. */
void store__set_hash_mask(struct store *s, uint64_t mask);
/* Reads meta "applied_index" (0 if absent) in t. */
int store__read_applied(struct store *s, MDB_txn *t, uint64_t *out);

/* --- reading records ------------------------------------------------------ */

/* Records are read with common/bytes.h, the reader initialised with
 * bytes_reader_init(&r, buf, len, STORE_ECORRUPT) so that a short read is a
 * corrupt record, and written with its little-endian bytes_put_* after the
 * exact size has been reserved. */

/* n bytes as a view into the reader's buffer. */
static inline int store__read_view(struct bytes_reader *r, size_t n, struct store_bytes *out)
{
    const uint8_t *p;
    int rc = bytes_read_view(r, n, &p);
    if (rc == 0)
        *out = (struct store_bytes){p, n};
    return rc;
}

/* --- long-key layer (kv.c) ------------------------------------------------ */

/* One record as the tables see it: the full key and the record body (the value
 * after its first byte and, for a hashed key, after the stored full key). Views
 * into the map. */
struct store__kv {
    struct store_bytes key;
    struct store_bytes body;
};

/* Decodes one raw LMDB pair (checks version, hashed layout, key prefix). */
int store__kv_decode(const MDB_val *k, const MDB_val *v, struct store__kv *out);
/* Looks a full key up: 0 and *out, or STORE_ENOTFOUND. */
int store__kv_get(struct store_txn *txn, enum store__table table, const uint8_t *key,
                  size_t key_len, struct store__kv *out);
/* Creates or replaces the record of key with the concatenation of parts as its
 * body (key and parts are copied first, so they may be views into the map).
 * Returns 1 when it replaced a record, 0 when new. */
int store__kv_put(struct store_txn *txn, enum store__table table, const uint8_t *key,
                  size_t key_len, const struct store_bytes *parts, size_t nparts);
/* Returns 0 when deleted, STORE_ENOTFOUND when there was none. */
int store__kv_del(struct store_txn *txn, enum store__table table, const uint8_t *key,
                  size_t key_len);
/* Deletes every record whose full key starts with prefix; returns how many. */
int store__kv_del_prefix(struct store_txn *txn, enum store__table table, const uint8_t *prefix,
                         size_t prefix_len);

/* Iteration in LMDB key order over the records whose full key starts with
 * prefix (borrowed until the iterator is closed; length 0 = all). */
struct store__iter {
    MDB_cursor *c;
    const uint8_t *prefix;
    size_t prefix_len;
    size_t scan_len; /* the part of the prefix every raw LMDB key shares */
    bool started;
};
int store__iter_open(struct store_txn *txn, enum store__table table, const uint8_t *prefix,
                     size_t prefix_len, struct store__iter *it);
/* 0 and *out, STORE_ENOTFOUND at the end, or an error. */
int store__iter_next(struct store__iter *it, struct store__kv *out);
void store__iter_close(struct store__iter *it);

/* --- record codecs (record.c) --------------------------------------------- */

/* Decode a record body (struct store__kv.body); key is the full key. */
int store__session_decode(const struct store__kv *kv, struct store_session *out);
int store__sub_decode(const struct store__kv *kv, struct store_sub *out);
int store__retained_decode(const struct store__kv *kv, struct store_retained *out);
int store__user_decode(const struct store__kv *kv, struct store_user *out);
int store__acl_decode(const struct store__kv *kv, struct store_acl_rule *out);

/* Calls visit for every record of table whose full key starts with prefix
 * (length 0: all); visit returns 0 to go on. */
int store__foreach_kv(struct store_txn *txn, enum store__table table, const uint8_t *prefix, size_t prefix_len,
                      int (*visit)(void *ctx, const struct store__kv *kv), void *ctx);
/* Durable-session records (queue.c): 0 when the record decodes. */
int store__queue_check(enum store__table table, const struct store__kv *kv);
/* Deletes a client id's queue entries (releasing their messages), counters
 * and inbound packet ids; returns how many queue entries went. */
int store__queue_del_client(struct store_txn *txn, const uint8_t *id, size_t id_len);

#endif
