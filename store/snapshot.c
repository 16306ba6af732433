/* store snapshots: writing the tables out as buffers that point into a read
 * view, and replacing the whole state with a validated snapshot.
 *
 * Format (store.h): a 32-byte header ("STARSNAP", u32 format, u32 flags, u64
 * applied_index, u64 record count), then per record u32 table (1 sessions,
 * 2 subs, 3 retained, 4 msgs, 5 queue, 6 qstat, 7 inbound), u32 key length, u32 value length, key, value. Keys and
 * values are the raw LMDB ones (long keys in their hashed layout), written in
 * table order and, within a table, in LMDB key order; restore insists on that
 * order, which also rules out duplicate keys. The meta table is not written:
 * the header carries the format and the applied index. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define HEADER_SIZE 32u
#define RECORD_HEADER 12u
static const char magic[8] = {'S', 'T', 'A', 'R', 'S', 'N', 'A', 'P'};

struct store_snap {
    MDB_txn *t;
    struct iovec *iov;
    uint8_t *rec_hdr; /* RECORD_HEADER bytes per record */
    uint8_t header[HEADER_SIZE];
};

/* Checks that one raw record decodes as a record of its table. */
static int check_record(enum store__table table, const MDB_val *k, const MDB_val *v)
{
    struct store__kv kv;
    int rc = store__kv_decode(k, v, &kv);
    if (rc)
        return rc;
    union {
        struct store_session session;
        struct store_sub sub;
        struct store_retained retained;
        struct store_user user;
        struct store_acl_rule rule;
    } rec;
    switch (table) {
    case STORE__SESSIONS:
        return store__session_decode(&kv, &rec.session);
    case STORE__SUBS:
        return store__sub_decode(&kv, &rec.sub);
    case STORE__RETAINED:
        return store__retained_decode(&kv, &rec.retained);
    case STORE__USERS:
        return store__user_decode(&kv, &rec.user);
    case STORE__ACL:
        return store__acl_decode(&kv, &rec.rule);
    case STORE__MSGS:
    case STORE__QUEUE:
    case STORE__QSTAT:
    case STORE__INBOUND:
        return store__queue_check(table, &kv);
    default:
        return STORE_ECORRUPT;
    }
}

/* Fills the iovecs of every record of one table; *i counts records. */
static int add_table(struct store *s, struct store_snap *snap, enum store__table table, size_t n,
                     size_t *i)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(snap->t, s->dbi[table], &c);
    if (rc)
        return store__lmdb_err(rc);
    MDB_val k, v;
    int err = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (*i == n) {
            err = STORE_EIO; /* more records than the table statistics said */
            break;
        }
        if (v.mv_size > UINT32_MAX) {
            err = STORE_ECORRUPT;
            break;
        }
        err = check_record(table, &k, &v);
        if (err)
            break;
        uint8_t *h = snap->rec_hdr + *i * RECORD_HEADER;
        uint8_t *p = bytes_put_u32le(h, (uint32_t)table);
        p = bytes_put_u32le(p, (uint32_t)k.mv_size);
        bytes_put_u32le(p, (uint32_t)v.mv_size);
        struct iovec *iov = snap->iov + 1 + *i * 3;
        iov[0] = (struct iovec){h, RECORD_HEADER};
        iov[1] = (struct iovec){k.mv_data, k.mv_size};
        iov[2] = (struct iovec){v.mv_data, v.mv_size};
        (*i)++;
    }
    mdb_cursor_close(c);
    if (err)
        return err;
    return rc == MDB_NOTFOUND ? 0 : store__lmdb_err(rc);
}

int store_snapshot_open(struct store *s, struct store_snap **out, const struct iovec **iov,
                        size_t *iov_count, uint64_t *applied_index)
{
    /* Raft drops log entries once the snapshot is taken: what it describes
     * must be on disk first. A read-only environment has nothing to sync. */
    int rc = store_sync(s);
    if (rc)
        return rc;
    struct store_snap *snap = calloc(1, sizeof(*snap));
    if (!snap)
        return -ENOMEM;
    rc = store__lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &snap->t));
    if (rc)
        goto free_snap;

    uint64_t idx;
    rc = store__read_applied(s, snap->t, &idx);
    if (rc)
        goto end_txn;
    size_t n = 0;
    for (int t = STORE__SESSIONS; t < STORE__NTABLES; t++) {
        MDB_stat st;
        rc = store__lmdb_err(mdb_stat(snap->t, s->dbi[t], &st));
        if (rc)
            goto end_txn;
        n += st.ms_entries;
    }
    if (n > (SIZE_MAX / sizeof(struct iovec) - 1) / 3) {
        rc = -ENOMEM;
        goto end_txn;
    }
    snap->iov = malloc((1 + 3 * n) * sizeof(struct iovec));
    if (!snap->iov) {
        rc = -ENOMEM;
        goto end_txn;
    }
    snap->rec_hdr = malloc(n ? n * RECORD_HEADER : 1);
    if (!snap->rec_hdr) {
        rc = -ENOMEM;
        goto free_iov;
    }

    size_t i = 0;
    for (int t = STORE__SESSIONS; t < STORE__NTABLES && rc == 0; t++)
        rc = add_table(s, snap, (enum store__table)t, n, &i);
    if (rc == 0 && i != n)
        rc = STORE_EIO;
    if (rc)
        goto free_hdr;

    uint8_t *p = bytes_put_mem(snap->header, magic, sizeof(magic));
    p = bytes_put_u32le(p, STORE__FORMAT);
    p = bytes_put_u32le(p, 0);
    p = bytes_put_u64le(p, idx);
    bytes_put_u64le(p, n);
    snap->iov[0] = (struct iovec){snap->header, HEADER_SIZE};

    *out = snap;
    *iov = snap->iov;
    *iov_count = 1 + 3 * n;
    *applied_index = idx;
    return 0;

free_hdr:
    free(snap->rec_hdr);
free_iov:
    free(snap->iov);
end_txn:
    mdb_txn_abort(snap->t);
free_snap:
    free(snap);
    return rc;
}

void store_snapshot_close(struct store_snap *snap)
{
    if (!snap)
        return;
    mdb_txn_abort(snap->t);
    free(snap->rec_hdr);
    free(snap->iov);
    free(snap);
}

static int read_header(struct bytes_reader *r, uint64_t *applied_index, uint64_t *count)
{
    struct store_bytes m;
    uint32_t format, flags;
    uint64_t idx, n;
    int rc = store__read_view(r, sizeof(magic), &m);
    if (rc == 0)
        rc = bytes_read_u32le(r, &format);
    if (rc == 0)
        rc = bytes_read_u32le(r, &flags);
    if (rc == 0)
        rc = bytes_read_u64le(r, &idx);
    if (rc == 0)
        rc = bytes_read_u64le(r, &n);
    if (rc)
        return rc;
    if (memcmp(m.p, magic, sizeof(magic)) != 0 || format != STORE__FORMAT || flags != 0)
        return STORE_ECORRUPT;
    *applied_index = idx;
    *count = n;
    return 0;
}

int store_snapshot_peek(const void *buf, size_t len, uint64_t *applied_index)
{
    struct bytes_reader r;
    bytes_reader_init(&r, buf, len, STORE_ECORRUPT);
    uint64_t n;
    return read_header(&r, applied_index, &n);
}

/* LMDB's default key order: bytes, then length. */
static int key_cmp(const struct store_bytes *a, const struct store_bytes *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->p, b->p, n) : 0;
    if (c)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

/* Walks a whole snapshot, validating every record; with t, also puts each one
 * into its table. */
static int walk(struct store *s, MDB_txn *t, const void *buf, size_t len, uint64_t *applied_index)
{
    struct bytes_reader r;
    bytes_reader_init(&r, buf, len, STORE_ECORRUPT);
    uint64_t count, seen = 0;
    int rc = read_header(&r, applied_index, &count);
    if (rc)
        return rc;
    uint32_t prev_table = 0;
    struct store_bytes prev_key = {NULL, 0};
    while (bytes_left(&r) > 0) {
        uint32_t table, klen, vlen;
        struct store_bytes key, val;
        rc = bytes_read_u32le(&r, &table);
        if (rc == 0)
            rc = bytes_read_u32le(&r, &klen);
        if (rc == 0)
            rc = bytes_read_u32le(&r, &vlen);
        if (rc == 0)
            rc = store__read_view(&r, klen, &key);
        if (rc == 0)
            rc = store__read_view(&r, vlen, &val);
        if (rc)
            return rc;
        if (table < STORE__SESSIONS || table >= STORE__NTABLES || table < prev_table ||
            klen == 0 || klen > STORE__KEY_MAX)
            return STORE_ECORRUPT;
        if (table == prev_table && key_cmp(&prev_key, &key) >= 0)
            return STORE_ECORRUPT;
        MDB_val k = {key.len, (void *)key.p}, v = {val.len, (void *)val.p};
        rc = check_record((enum store__table)table, &k, &v);
        if (rc)
            return rc;
        if (t && (rc = mdb_put(t, s->dbi[table], &k, &v, 0)) != 0)
            return store__lmdb_err(rc);
        prev_table = table;
        prev_key = key;
        seen++;
    }
    return seen == count ? 0 : STORE_ECORRUPT;
}

int store_snapshot_restore(struct store *s, const void *buf, size_t len)
{
    uint64_t idx;
    int rc = walk(s, NULL, buf, len, &idx);
    if (rc)
        return rc;
    struct store_txn *txn;
    rc = store_write_begin(s, &txn);
    if (rc)
        return rc;
    for (int t = STORE__SESSIONS; t < STORE__NTABLES && rc == 0; t++)
        rc = store__lmdb_err(mdb_drop(txn->t, s->dbi[t], 0));
    if (rc == 0)
        rc = walk(s, txn->t, buf, len, &idx);
    if (rc) {
        store_txn_end(txn);
        return rc;
    }
    return store_write_commit(txn, idx);
}
