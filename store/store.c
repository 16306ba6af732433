/* store: opening and closing the LMDB environment, transactions, the applied
 * index, and error codes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fs.h" /* common/: mkdir -p */
#include "internal.h"

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)

static const char *const table_names[STORE__NTABLES] = {"meta", "sessions", "subs", "retained", "users",
                                                          "acl", "msgs", "queue", "qstat", "inbound"};

int store__lmdb_err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return STORE_ENOTFOUND;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return STORE_EFULL;
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
        return STORE_ECORRUPT;
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
        return STORE_EFORMAT;
    default:
        /* LMDB's own codes lie in [MDB_KEYEXIST, MDB_LAST_ERRCODE]; anything
         * positive is an errno value. */
        return rc > 0 ? -rc : STORE_EIO;
    }
}

void store__set_hash_mask(struct store *s, uint64_t mask)
{
    s->hash_mask = mask;
}

const char *store_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case STORE_ENOTFOUND:
        return "no such record";
    case STORE_ECORRUPT:
        return "store record or snapshot does not decode";
    case STORE_EFULL:
        return "store map is full";
    case STORE_EIO:
        return "store I/O or LMDB failure";
    case STORE_EFORMAT:
        return "store written by an incompatible version";
    default:
        return err < 0 ? strerror(-err) : "unknown store error";
    }
}

static int read_meta_u(MDB_txn *t, MDB_dbi dbi, const char *name, size_t size, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(t, dbi, &k, &v);
    if (rc)
        return store__lmdb_err(rc);
    if (v.mv_size != size)
        return STORE_ECORRUPT;
    *out = size == 4 ? bytes_get_u32le(v.mv_data) : bytes_get_u64le(v.mv_data);
    return 0;
}

int store__read_applied(struct store *s, MDB_txn *t, uint64_t *out)
{
    int rc = read_meta_u(t, s->dbi[STORE__META], "applied_index", 8, out);
    if (rc == STORE_ENOTFOUND) {
        *out = 0;
        rc = 0;
    }
    return rc;
}

/* Opens the named databases in t (creating them when create), checks or (on a
 * fresh environment) writes the format, and reads the applied index. */
static int open_tables(struct store *s, MDB_txn *t, bool create)
{
    for (int i = 0; i < STORE__NTABLES; i++) {
        int rc = mdb_dbi_open(t, table_names[i], create ? MDB_CREATE : 0, &s->dbi[i]);
        if (rc == MDB_NOTFOUND && !create && i >= STORE__USERS) {
            s->absent[i] = true; /* a node of an earlier version wrote it, and still runs */
            continue;
        }
        if (rc == MDB_NOTFOUND)
            return STORE_EFORMAT; /* an LMDB environment, but not one of ours */
        if (rc)
            return store__lmdb_err(rc);
    }
    uint64_t format;
    int rc = read_meta_u(t, s->dbi[STORE__META], "format", 4, &format);
    if (rc == STORE_ENOTFOUND && create) {
        uint8_t buf[4];
        bytes_put_u32le(buf, STORE__FORMAT);
        MDB_val k = {6, "format"}, v = {4, buf};
        rc = store__lmdb_err(mdb_put(t, s->dbi[STORE__META], &k, &v, 0));
        format = STORE__FORMAT;
    } else if (rc == STORE_ENOTFOUND) {
        rc = STORE_EFORMAT;
    }
    if (rc)
        return rc;
    if (format != STORE__FORMAT)
        return STORE_EFORMAT;
    return store__read_applied(s, t, &s->applied_index);
}

static int env_open(struct store **out, const char *dir, size_t map_size, bool readonly)
{
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->hash_mask = UINT64_MAX;
    s->readonly = readonly;

    int rc = store__lmdb_err(mdb_env_create(&s->env));
    if (rc)
        goto free_store;
    rc = store__lmdb_err(mdb_env_set_maxdbs(s->env, 16));
    if (rc == 0 && !readonly)
        rc = store__lmdb_err(mdb_env_set_mapsize(s->env, map_size ? map_size : DEFAULT_MAP_SIZE));
    if (rc)
        goto close_env;
    /* NOSYNC: the Raft log is the durable record (see store.h). NOTLS: read
     * transactions are not tied to a thread, so a snapshot can be read from
     * another one. */
    unsigned flags = MDB_NOTLS | (readonly ? MDB_RDONLY : MDB_NOSYNC);
    rc = store__lmdb_err(mdb_env_open(s->env, dir, flags, 0600));
    if (rc)
        goto close_env;
    if ((unsigned)mdb_env_get_maxkeysize(s->env) < STORE__KEY_MAX) {
        rc = -ENOTSUP;
        goto close_env;
    }

    MDB_txn *t;
    rc = store__lmdb_err(mdb_txn_begin(s->env, NULL, readonly ? MDB_RDONLY : 0, &t));
    if (rc)
        goto close_env;
    rc = open_tables(s, t, !readonly);
    if (rc) {
        mdb_txn_abort(t);
        goto close_env;
    }
    /* Committing (even a read transaction) keeps the database handles open. */
    rc = store__lmdb_err(mdb_txn_commit(t));
    if (rc)
        goto close_env;
    *out = s;
    return 0;

close_env:
    mdb_env_close(s->env);
free_store:
    free(s);
    return rc;
}

int store_open(struct store **out, const char *dir, size_t map_size)
{
    /* 0700: the data directory holds every session and retained message. */
    int rc = fs_mkdir_p(dir, 0700);
    if (rc)
        return rc;
    return env_open(out, dir, map_size, false);
}

int store_open_readonly(struct store **out, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    size_t n = strlen(dir);
    char *data = malloc(n + sizeof("/data.mdb"));
    if (!data)
        return -ENOMEM;
    memcpy(data, dir, n);
    memcpy(data + n, "/data.mdb", sizeof("/data.mdb"));
    int rc = stat(data, &st) != 0 ? -errno : 0;
    free(data);
    if (rc)
        return rc;
    return env_open(out, dir, 0, true);
}

void store_close(struct store *s)
{
    if (!s)
        return;
    mdb_env_close(s->env);
    free(s);
}

uint64_t store_applied_index(struct store *s)
{
    return s->applied_index;
}

static int txn_begin(struct store *s, bool write, struct store_txn **out)
{
    struct store_txn *txn = calloc(1, sizeof(*txn));
    if (!txn)
        return -ENOMEM;
    txn->s = s;
    txn->write = write;
    int rc = store__lmdb_err(mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &txn->t));
    if (rc) {
        free(txn);
        return rc;
    }
    *out = txn;
    return 0;
}

int store_write_begin(struct store *s, struct store_txn **out)
{
    if (s->readonly)
        return -EACCES;
    /* A second write transaction on this thread would wait on LMDB's writer
     * mutex forever. */
    if (s->writing)
        return -EBUSY;
    int rc = txn_begin(s, true, out);
    if (rc == 0)
        s->writing = true;
    return rc;
}

int store_read_begin(struct store *s, struct store_txn **out)
{
    int rc = txn_begin(s, false, out);
    if (rc == 0 && s->readonly) {
        /* Another process writes: pick up its progress. */
        uint64_t idx;
        if (store__read_applied(s, (*out)->t, &idx) == 0)
            s->applied_index = idx;
    }
    return rc;
}

int store__cursor(struct store_txn *txn, enum store__table table, MDB_cursor **out)
{
    if (!txn->cur[table]) {
        int rc = mdb_cursor_open(txn->t, txn->s->dbi[table], &txn->cur[table]);
        if (rc)
            return store__lmdb_err(rc);
    }
    *out = txn->cur[table];
    return 0;
}

static void close_cursors(struct store_txn *txn)
{
    for (int i = 0; i < STORE__NTABLES; i++) {
        if (txn->cur[i])
            mdb_cursor_close(txn->cur[i]);
        txn->cur[i] = NULL;
    }
}

void store_txn_end(struct store_txn *txn)
{
    if (!txn)
        return;
    close_cursors(txn);
    mdb_txn_abort(txn->t);
    if (txn->write)
        txn->s->writing = false;
    free(txn);
}

int store_write_commit(struct store_txn *txn, uint64_t applied_index)
{
    struct store *s = txn->s;
    int rc = txn->write ? txn->err : -EINVAL;
    if (rc)
        goto abort;
    uint8_t buf[8];
    bytes_put_u64le(buf, applied_index);
    MDB_val k = {13, "applied_index"}, v = {8, buf};
    rc = store__lmdb_err(mdb_put(txn->t, s->dbi[STORE__META], &k, &v, 0));
    if (rc)
        goto abort;
    close_cursors(txn);
    /* mdb_txn_commit frees the transaction whether or not it succeeds. */
    rc = store__lmdb_err(mdb_txn_commit(txn->t));
    if (rc == 0)
        s->applied_index = applied_index;
    s->writing = false;
    free(txn);
    return rc;

abort:
    store_txn_end(txn);
    return rc;
}

int store_sync(struct store *s)
{
    return s->readonly ? 0 : store__lmdb_err(mdb_env_sync(s->env, 1));
}
