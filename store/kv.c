/* store long-key layer: maps full keys of any length onto LMDB keys of at most
 * STORE__KEY_MAX bytes, for every table.
 *
 * A key shorter than STORE__KEY_MAX is the LMDB key, and its value is
 * [u8 version][body]. A longer key is stored under prefix + 0x01 + u64 slot
 * (see internal.h) with the value [u8 version | STORE__HASHED][u32 key length]
 * [full key][body], so every lookup compares the full key and iteration
 * returns it. The slot is the FNV-1a hash of the full key (the home slot),
 * moved forward by linear probing past slots that hold other keys with the
 * same prefix. Invariant: between a record's home slot and its slot every
 * slot is occupied, so a lookup stops at the first free slot. A delete keeps
 * the invariant by shifting later records of the run back into the hole
 * (backward-shift deletion; slots never wrap, the u64 space is not filled).
 *
 * Everything a write is given (keys, body parts) is copied into a buffer of
 * our own before LMDB is touched, so callers may pass views into the map from
 * the same transaction (get, modify, put). */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

/* Values up to this size are assembled on the stack. */
#define STACK_VALUE 1024u

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool is_hashed(size_t key_len)
{
    return key_len >= STORE__KEY_MAX;
}

/* Big-endian, so that LMDB's byte order keeps a probe run's slots in order. */
static void set_slot(uint8_t *kb, uint64_t slot)
{
    bytes_put_u64be(kb + STORE__KEY_PREFIX + 1, slot);
}

static uint64_t get_slot(const uint8_t *kb)
{
    return bytes_get_u64be(kb + STORE__KEY_PREFIX + 1);
}

static uint64_t home_slot(const struct store_txn *txn, const uint8_t *key, size_t key_len)
{
    return fnv1a(key, key_len) & txn->s->hash_mask;
}

static bool has_prefix(const struct store_bytes *key, const uint8_t *prefix, size_t prefix_len)
{
    return key->len >= prefix_len && (prefix_len == 0 || memcmp(key->p, prefix, prefix_len) == 0);
}

int store__kv_decode(const MDB_val *k, const MDB_val *v, struct store__kv *out)
{
    struct bytes_reader r;
    bytes_reader_init(&r, v->mv_data, v->mv_size, STORE_ECORRUPT);
    uint8_t head;
    int rc = bytes_read_u8(&r, &head);
    if (rc)
        return rc;
    if ((head & ~STORE__HASHED) != STORE__RECORD_VERSION)
        return STORE_ECORRUPT;
    struct store_bytes key;
    if (!(head & STORE__HASHED)) {
        if (k->mv_size == 0 || is_hashed(k->mv_size))
            return STORE_ECORRUPT;
        key.p = k->mv_data;
        key.len = k->mv_size;
    } else {
        const uint8_t *kb = k->mv_data;
        uint32_t len;
        if (k->mv_size != STORE__KEY_MAX || (rc = bytes_read_u32le(&r, &len)) != 0 ||
            !is_hashed(len) || (rc = store__read_view(&r, len, &key)) != 0 ||
            memcmp(kb, key.p, STORE__KEY_PREFIX) != 0 || kb[STORE__KEY_PREFIX] != 0x01)
            return STORE_ECORRUPT;
    }
    out->key = key;
    store__read_view(&r, bytes_left(&r), &out->body);
    return 0;
}

/* Positions the table's cached cursor on the record of key: 0 (with *mk and
 * *mv the record as stored), STORE_ENOTFOUND, or an error. For a long key, kb
 * (STORE__KEY_MAX bytes) is left holding the LMDB key of the record or, when
 * not found, of the free slot where it belongs. */
static int find(struct store_txn *txn, enum store__table table, const uint8_t *key,
                size_t key_len, uint8_t *kb, MDB_val *mk, MDB_val *mv, MDB_cursor **cur)
{
    if (key_len == 0 || key_len > UINT32_MAX)
        return -EINVAL;
    int rc = store__cursor(txn, table, cur);
    if (rc)
        return rc;
    if (!is_hashed(key_len)) {
        *mk = (MDB_val){key_len, (void *)key};
        return store__lmdb_err(mdb_cursor_get(*cur, mk, mv, MDB_SET_KEY));
    }
    uint64_t slot = home_slot(txn, key, key_len);
    memcpy(kb, key, STORE__KEY_PREFIX);
    kb[STORE__KEY_PREFIX] = 0x01;
    for (;;) {
        set_slot(kb, slot);
        *mk = (MDB_val){STORE__KEY_MAX, kb};
        rc = store__lmdb_err(mdb_cursor_get(*cur, mk, mv, MDB_SET_KEY));
        if (rc)
            return rc;
        struct store__kv kv;
        rc = store__kv_decode(mk, mv, &kv);
        if (rc)
            return rc;
        if (kv.key.len == key_len && memcmp(kv.key.p, key, key_len) == 0)
            return 0;
        if (slot == UINT64_MAX)
            return STORE_EFULL;
        slot++;
    }
}

int store__kv_get(struct store_txn *txn, enum store__table table, const uint8_t *key,
                  size_t key_len, struct store__kv *out)
{
    uint8_t kb[STORE__KEY_MAX];
    MDB_val mk, mv;
    MDB_cursor *c;
    int rc = find(txn, table, key, key_len, kb, &mk, &mv, &c);
    if (rc)
        return rc;
    return store__kv_decode(&mk, &mv, out);
}

int store__kv_put(struct store_txn *txn, enum store__table table, const uint8_t *key,
                  size_t key_len, const struct store_bytes *parts, size_t nparts)
{
    if (!txn->write)
        return -EACCES;
    uint8_t kb[STORE__KEY_MAX];
    MDB_val mk, mv;
    MDB_cursor *c;
    int rc = find(txn, table, key, key_len, kb, &mk, &mv, &c);
    if (rc != 0 && rc != STORE_ENOTFOUND)
        return rc;
    int replaced = rc == 0;
    bool hashed = is_hashed(key_len);
    if (!hashed)
        memcpy(kb, key, key_len); /* key may be a view into the page we write */

    size_t size = 1 + (hashed ? 4 + key_len : 0);
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i].len > SIZE_MAX - size)
            return -EINVAL;
        size += parts[i].len;
    }
    uint8_t stack[STACK_VALUE];
    uint8_t *buf = size <= sizeof(stack) ? stack : malloc(size);
    if (!buf)
        return -ENOMEM;
    uint8_t *p = bytes_put_u8(buf, STORE__RECORD_VERSION | (hashed ? STORE__HASHED : 0));
    if (hashed) {
        p = bytes_put_u32le(p, (uint32_t)key_len);
        p = bytes_put_mem(p, key, key_len);
    }
    for (size_t i = 0; i < nparts; i++)
        p = bytes_put_mem(p, parts[i].p, parts[i].len);

    MDB_val k = {hashed ? STORE__KEY_MAX : key_len, kb}, v = {size, buf};
    rc = mdb_put(txn->t, txn->s->dbi[table], &k, &v, 0);
    if (buf != stack)
        free(buf);
    if (rc)
        return store__fail(txn, store__lmdb_err(rc));
    return replaced;
}

/* After the record at hole (an LMDB key of a long key) was deleted, moves back
 * each later record of the run whose home slot is at or before the hole. */
static int backshift(struct store_txn *txn, enum store__table table, const uint8_t *hole_key)
{
    MDB_dbi dbi = txn->s->dbi[table];
    uint8_t hole_kb[STORE__KEY_MAX], next_kb[STORE__KEY_MAX];
    memcpy(hole_kb, hole_key, STORE__KEY_MAX);
    memcpy(next_kb, hole_key, STORE__KEY_MAX);
    uint64_t hole = get_slot(hole_kb);
    for (uint64_t i = hole; i != UINT64_MAX;) {
        set_slot(next_kb, ++i);
        MDB_val k = {STORE__KEY_MAX, next_kb}, v;
        int rc = mdb_get(txn->t, dbi, &k, &v);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc)
            return store__fail(txn, store__lmdb_err(rc));
        struct store__kv kv;
        rc = store__kv_decode(&k, &v, &kv);
        if (rc)
            return store__fail(txn, rc);
        if (home_slot(txn, kv.key.p, kv.key.len) > hole)
            continue;
        /* The value lives in a page the put below may rewrite. */
        void *copy = malloc(v.mv_size);
        if (!copy)
            return store__fail(txn, -ENOMEM);
        memcpy(copy, v.mv_data, v.mv_size);
        set_slot(hole_kb, hole);
        MDB_val hk = {STORE__KEY_MAX, hole_kb}, hv = {v.mv_size, copy};
        rc = mdb_put(txn->t, dbi, &hk, &hv, 0);
        free(copy);
        k = (MDB_val){STORE__KEY_MAX, next_kb};
        if (rc == 0)
            rc = mdb_del(txn->t, dbi, &k, NULL);
        if (rc)
            return store__fail(txn, store__lmdb_err(rc));
        hole = i;
    }
    return 0;
}

/* Deletes the record the cursor is on, whose LMDB key is key (a copy). */
static int del_current(struct store_txn *txn, enum store__table table, MDB_cursor *c,
                       const uint8_t *key, size_t key_len)
{
    int rc = mdb_cursor_del(c, 0);
    if (rc)
        return store__fail(txn, store__lmdb_err(rc));
    return key_len == STORE__KEY_MAX ? backshift(txn, table, key) : 0;
}

int store__kv_del(struct store_txn *txn, enum store__table table, const uint8_t *key,
                  size_t key_len)
{
    if (!txn->write)
        return -EACCES;
    uint8_t kb[STORE__KEY_MAX];
    MDB_val mk, mv;
    MDB_cursor *c;
    int rc = find(txn, table, key, key_len, kb, &mk, &mv, &c);
    if (rc)
        return rc;
    if (!is_hashed(key_len))
        memcpy(kb, key, key_len);
    return del_current(txn, table, c, kb, is_hashed(key_len) ? STORE__KEY_MAX : key_len);
}

int store__kv_del_prefix(struct store_txn *txn, enum store__table table, const uint8_t *prefix,
                         size_t prefix_len)
{
    if (!txn->write)
        return -EACCES;
    MDB_cursor *c;
    int rc = store__cursor(txn, table, &c);
    if (rc)
        return rc;
    /* Every LMDB key of a matching record starts with scan: a hashed key keeps
     * the first STORE__KEY_PREFIX bytes of its full key. */
    size_t scan = prefix_len < STORE__KEY_PREFIX ? prefix_len : STORE__KEY_PREFIX;
    uint8_t pos[STORE__KEY_MAX];
    if (scan)
        memcpy(pos, prefix, scan);
    MDB_val k = {scan, pos}, v;
    rc = mdb_cursor_get(c, &k, &v, scan ? MDB_SET_RANGE : MDB_FIRST);
    int count = 0;
    for (;;) {
        if (rc == MDB_NOTFOUND)
            break;
        if (rc)
            return store__fail(txn, store__lmdb_err(rc));
        if (k.mv_size < scan || (scan && memcmp(k.mv_data, prefix, scan) != 0))
            break;
        struct store__kv kv;
        rc = store__kv_decode(&k, &v, &kv);
        if (rc)
            return store__fail(txn, rc);
        if (!has_prefix(&kv.key, prefix, prefix_len)) {
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
            continue;
        }
        size_t len = k.mv_size;
        memcpy(pos, k.mv_data, len);
        rc = del_current(txn, table, c, pos, len);
        if (rc)
            return rc;
        if (count < INT32_MAX)
            count++;
        /* A backward shift may have moved a later record into this very key;
         * records only move back as far as the deleted one, so seeking to it
         * again visits everything not yet seen. */
        k = (MDB_val){len, pos};
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    }
    return count;
}

int store__iter_open(struct store_txn *txn, enum store__table table, const uint8_t *prefix,
                     size_t prefix_len, struct store__iter *it)
{
    it->prefix = prefix;
    it->prefix_len = prefix_len;
    it->scan_len = prefix_len < STORE__KEY_PREFIX ? prefix_len : STORE__KEY_PREFIX;
    it->started = false;
    it->c = NULL;
    /* A cursor of its own: the callback may do lookups with the cached one. */
    return store__lmdb_err(mdb_cursor_open(txn->t, txn->s->dbi[table], &it->c));
}

int store__iter_next(struct store__iter *it, struct store__kv *out)
{
    MDB_val k = {it->scan_len, (void *)it->prefix}, v;
    int rc;
    if (it->started)
        rc = mdb_cursor_get(it->c, &k, &v, MDB_NEXT);
    else
        rc = mdb_cursor_get(it->c, &k, &v, it->scan_len ? MDB_SET_RANGE : MDB_FIRST);
    it->started = true;
    for (;;) {
        if (rc)
            return store__lmdb_err(rc);
        if (k.mv_size < it->scan_len ||
            (it->scan_len && memcmp(k.mv_data, it->prefix, it->scan_len) != 0))
            return STORE_ENOTFOUND;
        rc = store__kv_decode(&k, &v, out);
        if (rc)
            return rc;
        if (has_prefix(&out->key, it->prefix, it->prefix_len))
            return 0;
        rc = mdb_cursor_get(it->c, &k, &v, MDB_NEXT);
    }
}

void store__iter_close(struct store__iter *it)
{
    if (it->c)
        mdb_cursor_close(it->c);
    it->c = NULL;
}
