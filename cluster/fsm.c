/* fsm: the Raft state machine's callbacks: every committed entry is applied
 * to the store in one LMDB write transaction (which also records the entry's
 * index), then to the broker's in-memory indexes, then completes the origin
 * node's batch (batch.c); snapshots are the store's, and a snapshot received
 * from the leader replaces it.
 *
 * An entry that is not a Starling entry, or a command that does not decode or
 * that the store refuses, is skipped alike on every node (the same bytes give
 * the same result). An entry of a newer format version, or a store that
 * cannot apply a committed entry (disk or map full, I/O error), stops the
 * node (fail-stop: it must not diverge). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "internal.h"

/* What the entry header says (its length and magic already checked). */
struct entry_head {
    uint32_t origin;
    uint64_t seq;
};

enum { ENTRY_APPLY, ENTRY_SKIP, ENTRY_FAIL };

/* Whether the entry at index is applied, skipped, or stops the node. */
static int entry_check(struct cluster *c, const struct raft_buffer *buf, uint64_t index, struct entry_head *h)
{
    const uint8_t *p = buf->base;
    if (buf->len < CLUSTER_ENTRY_HEADER || bytes_get_u32le(p) != CLUSTER_ENTRY_MAGIC) {
        /* every node sees the same bytes: skipping is deterministic */
        CLOG(c, CLUSTER_LOG_ERROR, "cluster: entry %" PRIu64 " is not a Starling entry; skipped", index);
        return ENTRY_SKIP;
    }
    if (bytes_get_u16le(p + 4) != CLUSTER_ENTRY_VERSION) {
        /* written by a newer Starling: applying part of it would diverge */
        cluster__fail_stop(c, "entry %" PRIu64 " has format version %u, this node knows %u (upgrade it)", index,
                           (unsigned)bytes_get_u16le(p + 4), CLUSTER_ENTRY_VERSION);
        return ENTRY_FAIL;
    }
    if (buf->len == CLUSTER_ENTRY_HEADER)
        return ENTRY_SKIP; /* a no-op entry (a new leader's, a commit push): like a barrier */
    if (index <= store_applied_index(c->store))
        return ENTRY_SKIP; /* already in the store (a replay after restart) */
    h->origin = bytes_get_u32le(p + 8);
    h->seq = bytes_get_u64le(p + 16);
    return ENTRY_APPLY;
}

/* Room for one more decoded command and its result. */
static int results_grow(struct cluster *c)
{
    int cap = c->results_cap ? c->results_cap * 2 : 64;
    int *r = realloc(c->results, (size_t)cap * sizeof(*r));
    if (!r)
        return -ENOMEM;
    c->results = r;
    struct cluster_cmd *cmds = realloc(c->cmds, (size_t)cap * sizeof(*cmds));
    if (!cmds)
        return -ENOMEM;
    c->cmds = cmds;
    c->results_cap = cap;
    return 0;
}

/* Command n of entry index, applied inside txn: its result, or a negative
 * store error. */
static int command_apply(struct cluster *c, struct store_txn *txn, const struct cluster_cmd *cmd, uint64_t index,
                         uint32_t n)
{
    int r = cluster__state_apply(txn, cmd);
    if (r == -EINVAL || r == -E2BIG || r == STORE_ECORRUPT) {
        /* the command itself is unusable (an empty client id or topic, a
         * key the store cannot hold): the same on every node, so it fails
         * alone; the store checks before it writes anything */
        CLOG(c, CLUSTER_LOG_WARN, "cluster: entry %" PRIu64 " command %u refused by the store: %s", index, n,
             store_strerror(r));
        r = CLUSTER_ECORRUPT;
    }
    return r;
}

/* Decodes and applies the entry's commands inside txn, their results in
 * c->results and the decoded commands in c->cmds (*count of them); a store
 * failure ends it (the results so far stay counted). */
static int commands_apply(struct cluster *c, struct store_txn *txn, const struct raft_buffer *buf, uint64_t index,
                          uint32_t *count)
{
    const uint8_t *p = buf->base;
    uint32_t n = 0;
    size_t pos = CLUSTER_ENTRY_HEADER;
    int err = 0;
    while (pos < buf->len) {
        if ((int)n == c->results_cap && (err = results_grow(c)) != 0)
            break;
        struct cluster_cmd *cmd = &c->cmds[n];
        if (cluster_cmd_decode(p, buf->len, &pos, cmd) != 0) {
            CLOG(c, CLUSTER_LOG_ERROR, "cluster: entry %" PRIu64 " command %u does not decode; rest skipped",
                 index, n);
            break;
        }
        if (cmd->type == CLUSTER_MSG_PUT)
            cmd->msg_id = index << 16 | (n & 0xFFFF); /* the same on every node */
        int r = command_apply(c, txn, cmd, index, n);
        if (r < 0 && r != CLUSTER_ESTALE && r != CLUSTER_ECORRUPT && r != CLUSTER_EPERM && r != CLUSTER_ELIMIT) {
            err = r; /* the store itself failed: this node must stop */
            break;
        }
        c->results[n++] = r;
    }
    *count = n;
    return err;
}

/* The entry's commands in one write transaction that records index. */
static int entry_store(struct cluster *c, const struct raft_buffer *buf, uint64_t index, uint32_t *count)
{
    struct store_txn *txn;
    *count = 0;
    int rc = store_write_begin(c->store, &txn);
    if (rc)
        return rc;
    rc = commands_apply(c, txn, buf, index, count);
    if (rc) {
        store_txn_end(txn);
        return rc;
    }
    return store_write_commit(txn, index);
}

/* The broker's in-memory indexes follow the store (the decoded commands
 * point into the entry, which stays valid during fsm_apply). */
static void entry_announce(struct cluster *c, uint32_t count, uint64_t index)
{
    if (!c->cfg.apply)
        return;
    for (uint32_t i = 0; i < count; i++)
        if (c->results[i] >= 0)
            c->cfg.apply(c->cfg.ctx, &c->cmds[i], c->results[i], index);
}

/* Bytes of the files in dir: all of them, or (log) only the Raft log's
 * segments that hold entries after index (closed ones are named
 * FIRST-LAST, open ones open-N). */
static uint64_t dir_bytes(const char *dir, bool log, uint64_t index)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long first, last;
        if (log && strncmp(e->d_name, "open-", 5) != 0 &&
            (sscanf(e->d_name, "%llu-%llu", &first, &last) != 2 || last <= index))
            continue;
        char path[1400];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

/* The store could not take entry index: the node stops with what the
 * operator can do about it. A full map: a store_max_mb that holds the store
 * and the part of the log still to apply, with a quarter more for LMDB's
 * pages. A full file system (LMDB reports ENOSPC, or EIO from a write that
 * found no room): the disk and the directory. */
static void store_failed(struct cluster *c, uint64_t index, int rc)
{
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/state", c->cfg.data_dir);
    if (rc == STORE_EFULL) {
        char raft_dir[1100];
        snprintf(raft_dir, sizeof(raft_dir), "%s/raft", c->cfg.data_dir);
        uint64_t need = dir_bytes(dir, false, 0) + dir_bytes(raft_dir, true, index > 0 ? index - 1 : 0);
        uint64_t mb = (need + need / 4 + (1u << 20) - 1) >> 20;
        uint64_t now_mb = (c->cfg.store_map_size ? c->cfg.store_map_size : (size_t)1 << 30) >> 20;
        if (mb <= now_mb)
            mb = now_mb + now_mb / 4 + 1;
        cluster__fail_stop(c,
                           "store full: the store in %s cannot take entry %" PRIu64 " within store_max_mb=%" PRIu64
                           ": raise store_max_mb to at least %" PRIu64,
                           dir, index, now_mb, mb);
        return;
    }
    struct statvfs fs;
    if ((rc == -ENOSPC || rc == -EIO || rc == -EDQUOT) && statvfs(dir, &fs) == 0 &&
        (uint64_t)fs.f_bavail * fs.f_frsize < (16u << 20)) {
        cluster__fail_stop(c,
                           "disk full: the store in %s cannot take entry %" PRIu64
                           " (%llu KiB free on its file system; %s): free space there",
                           dir, index, (unsigned long long)((uint64_t)fs.f_bavail * fs.f_frsize >> 10),
                           store_strerror(rc));
        return;
    }
    cluster__fail_stop(c, "store: cannot apply entry %" PRIu64 " in %s: %s", index, dir, store_strerror(rc));
}

void cluster__fsm_dry_run(struct cluster *c, const uint8_t *entry, size_t len)
{
    struct raft_buffer buf = {(void *)entry, len};
    struct entry_head h;
    /* an index no store has applied yet: the entry is judged as a new one */
    if (c->fatal || entry_check(c, &buf, UINT64_MAX, &h) != ENTRY_APPLY)
        return;
    struct store_txn *txn;
    if (store_write_begin(c->store, &txn) != 0)
        return;
    uint32_t count;
    (void)commands_apply(c, txn, &buf, UINT64_MAX, &count);
    store_txn_end(txn); /* rolled back: the node's state stays as Raft made it */
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct cluster *c = fsm->data;
    *result = NULL;
    uint64_t index = raft_last_applied(&c->raft) + 1;
    if (c->fatal)
        return RAFT_IOERR;
    struct entry_head h;
    int verdict = entry_check(c, buf, index, &h);
    if (verdict != ENTRY_APPLY)
        return verdict == ENTRY_SKIP ? 0 : RAFT_IOERR;
    uint32_t count;
    int rc = entry_store(c, buf, index, &count);
    if (rc) {
        store_failed(c, index, rc);
        return RAFT_IOERR;
    }
    entry_announce(c, count, index);
    if (h.origin == c->cfg.node_id)
        cluster__batch_committed(c, h.seq, count, c->results);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct cluster *c = fsm->data;
    if (c->snap)
        return RAFT_BUSY;
    const struct iovec *iov;
    size_t count;
    uint64_t applied;
    uint64_t t0 = uv_hrtime();
    int rc = store_snapshot_open(c->store, &c->snap, &iov, &count, &applied);
    if (rc) {
        CLOG(c, CLUSTER_LOG_WARN, "cluster: snapshot: %s", store_strerror(rc));
        c->snap = NULL;
        return RAFT_IOERR;
    }
    struct raft_buffer *b = raft_malloc(count * sizeof(*b));
    if (!b) {
        store_snapshot_close(c->snap);
        c->snap = NULL;
        return RAFT_NOMEM;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < count; i++) {
        b[i].base = iov[i].iov_base;
        b[i].len = iov[i].iov_len;
        bytes += iov[i].iov_len;
    }
    *bufs = b;
    *n_bufs = (unsigned)count;
    CLOG(c, CLUSTER_LOG_INFO, "cluster: snapshot at applied index %" PRIu64 ": %zu bytes, %.1f ms on the loop",
         applied, bytes, (double)(uv_hrtime() - t0) / 1e6);
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct cluster *c = fsm->data;
    if (c->snap) {
        store_snapshot_close(c->snap);
        c->snap = NULL;
    }
    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct cluster *c = fsm->data;
    uint64_t snap_index;
    /* the buffer becomes ours only when restore succeeds: on failure libraft
     * frees it itself */
    int rc = store_snapshot_peek(buf->base, buf->len, &snap_index);
    if (rc) {
        CLOG(c, CLUSTER_LOG_ERROR, "cluster: snapshot does not decode: %s", store_strerror(rc));
        return RAFT_CORRUPT;
    }
    if (!c->raft_started && store_applied_index(c->store) >= snap_index) {
        /* at start: the store already holds this state or a later one */
        raft_free(buf->base);
        return 0;
    }
    rc = store_snapshot_restore(c->store, buf->base, buf->len);
    if (rc) {
        CLOG(c, CLUSTER_LOG_ERROR, "cluster: cannot restore snapshot: %s", store_strerror(rc));
        return rc == STORE_ECORRUPT ? RAFT_CORRUPT : RAFT_IOERR;
    }
    raft_free(buf->base);
    CLOG(c, CLUSTER_LOG_INFO, "cluster: state replaced by a snapshot at applied index %" PRIu64, snap_index);
    if (c->cfg.reload)
        c->cfg.reload(c->cfg.ctx);
    return 0;
}

void cluster__fsm_setup(struct cluster *c)
{
    c->fsm.version = 2;
    c->fsm.data = c;
    c->fsm.apply = fsm_apply;
    c->fsm.snapshot = fsm_snapshot;
    c->fsm.snapshot_finalize = fsm_snapshot_finalize;
    c->fsm.restore = fsm_restore;
}
