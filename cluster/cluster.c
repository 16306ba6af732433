/* cluster: the Raft node. Proposals are batched per loop turn into one log
 * entry, appended through libraft (here, or on the leader via forward.c),
 * and every committed entry is applied to the store and then to the broker.
 *
 * Happy path: cluster_propose encodes the command into the open batch and
 * arms an idle handle; at the next iteration the batch becomes a log entry
 * (header: origin node, batch sequence) and goes to raft_apply (leader) or to
 * the leader's forward link (follower). Every node applies the committed entry
 * in one LMDB write transaction that also records the entry's index; the
 * origin node then finds its batch by sequence and runs the proposers' done
 * callbacks with the store's per-command results.
 * Failure modes: no leader, a minority, a lost link, a refused append: the
 * batch fails with CLUSTER_EUNAVAILABLE after commit_timeout_ms at the latest
 * (the entry may still commit later: indeterminate, never applied twice). A
 * store that cannot apply a committed entry (disk or map full, I/O error)
 * stops the node (fail-stop: it must not diverge). Closing fails everything
 * still pending with CLUSTER_ESHUTDOWN. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "internal.h"

#define TICK_MS 100
#define BATCH_FLUSH_BYTES (8u << 20)
#define DRAIN_MS 1000

void cluster__handle_closed(struct cluster *c)
{
    if (--c->open_handles == 0 && c->closing && !c->raft_started) {
        store_close(c->store);
        c->store = NULL;
        if (c->lock_fd >= 0)
            close(c->lock_fd); /* releases the data dir */
        void (*cb)(void *) = c->close_cb;
        void *arg = c->close_arg;
        free(c->results);
        free(c->cmds);
        buf_free(&c->batch);
        free(c->waiters);
        free(c);
        if (cb)
            cb(arg);
    }
}

void cluster__on_handle_closed(uv_handle_t *h) { cluster__handle_closed(h->data); }

void cluster__close_free(uv_handle_t *h) { raft_free(h); }

/* --- the data directory's identity -------------------------------------------------- */

/* DIR/node.id names the cluster and node the directory belongs to, and the
 * node's epoch: a number raised at every start (and whenever the 24-bit
 * sequence of generations wraps) that keeps generations and batch sequences
 * unique across restarts. Written to a temporary file, synced, renamed. */
static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -errno;
}

/* Removes path and everything under it (a missing path is fine). */
int cluster__remove_tree(const char *path)
{
    int rc = nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    if (rc == -1)
        return errno == ENOENT ? 0 : -errno;
    return rc;
}

static int identity_write(struct cluster *c)
{
    char path[1100], tmp[1100];
    snprintf(path, sizeof(path), "%s/node.id", c->cfg.data_dir);
    snprintf(tmp, sizeof(tmp), "%s/node.id.tmp", c->cfg.data_dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (fd < 0)
        return -errno;
    char text[512];
    int n = snprintf(text, sizeof(text),
                     "# Starling node identity: do not edit\ncluster_name %s\nnode_id %u\nepoch %" PRIu32 "\n",
                     c->cfg.cluster_name, c->cfg.node_id, c->epoch);
    int rc = 0;
    if (write(fd, text, (size_t)n) != n || fsync(fd) != 0)
        rc = errno ? -errno : -EIO;
    close(fd);
    if (!rc && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        return rc;
    int dfd = open(c->cfg.data_dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* One process per data directory: two nodes appending to the same Raft log
 * would corrupt it. The lock (flock on DIR/lock) goes with the process, also
 * when it is killed; --dump reads without it. */
static int lock_data_dir(struct cluster *c, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/lock", c->cfg.data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK) {
            snprintf(err, errlen, "data dir %s is in use by another starlingd%s%s", c->cfg.data_dir,
                     pid[0] ? " (pid " : "", pid[0] ? pid : "");
            if (pid[0])
                strncat(err, ")", errlen - strlen(err) - 1);
            return -EBUSY;
        }
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        /* the lock holds without the pid in it */
    }
    c->lock_fd = fd;
    return 0;
}

static int identity_check(struct cluster *c, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/node.id", c->cfg.data_dir);
    FILE *f = fopen(path, "r");
    uint32_t epoch = 0;
    if (f) {
        char line[512], name[256] = "";
        unsigned long id = 0, e = 0;
        int fields = 0;
        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "cluster_name %255s", name) == 1)
                fields |= 1;
            else if (sscanf(line, "node_id %lu", &id) == 1)
                fields |= 2;
            else if (sscanf(line, "epoch %lu", &e) == 1)
                fields |= 4;
        }
        fclose(f);
        if (fields != 7 || e >= UINT32_MAX) {
            snprintf(err, errlen, "%s is corrupt (expected cluster_name, node_id and epoch lines)", path);
            return -EINVAL;
        }
        if (strcmp(name, c->cfg.cluster_name) != 0 || id != c->cfg.node_id) {
            snprintf(err, errlen,
                     "data dir %s belongs to cluster \"%s\" node %lu, not to cluster \"%s\" node %u "
                     "(use another data_dir, or check node_id and cluster_name)",
                     c->cfg.data_dir, name, id, c->cfg.cluster_name, c->cfg.node_id);
            return -EEXIST;
        }
        epoch = (uint32_t)e;
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    } else {
        /* a fresh directory must not hold a foreign raft log or store */
        char raftdir[1100];
        snprintf(raftdir, sizeof(raftdir), "%s/raft/metadata1", c->cfg.data_dir);
        if (access(raftdir, F_OK) == 0) {
            snprintf(err, errlen, "data dir %s holds a raft log but no node.id: it belongs to another setup",
                     c->cfg.data_dir);
            return -EEXIST;
        }
    }
    c->epoch = epoch + 1;
    int rc = identity_write(c);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

/* --- batches ------------------------------------------------------------------------- */

static void start_close(struct cluster *c);
static void drain_check(struct cluster *c);

void cluster__batch_finish(struct cluster *c, struct batch *bt, int status, const int *results)
{
    list_remove(&bt->item);
    if (bt->areq)
        bt->areq->batch = NULL;
    for (uint32_t i = 0; i < bt->count; i++) {
        struct cluster_waiter *w = &bt->waiters[i];
        if (!w->done)
            continue;
        int st = status, result = 0;
        if (st == 0) {
            result = results ? results[i] : 0;
            if (result < 0) {
                st = result;
                result = 0;
            }
        }
        w->done(w->arg, st, result);
    }
    free(bt->waiters);
    raft_free(bt->entry);
    free(bt);
    drain_check(c);
}

static void on_pushed(struct raft_barrier *req, int status)
{
    struct cluster *c = container_of(req, struct cluster, push);
    (void)status;
    c->push_pending = false;
}

/* libraft tells a follower that an entry committed only with the next message
 * it sends it (an append or a heartbeat), and a follower acknowledges its
 * clients only after applying the entry. Appending a barrier right after a
 * command entry committed sends that message at once; under load the barrier
 * rides along with the next entries, and at most one is in flight. */
void cluster__push_commit(struct cluster *c)
{
    if (c->push_pending || c->closing || c->cfg.peer_count < 2)
        return;
    if (raft_barrier(&c->raft, &c->push, on_pushed) == 0)
        c->push_pending = true;
}

static void on_appended(struct raft_apply *req, int status, void *result)
{
    struct apply_req *a = container_of(req, struct apply_req, req);
    (void)result;
    if (status == 0)
        cluster__push_commit(a->c);
    /* success was seen when the entry was applied; a batch still waiting here
     * was not committed by this leader */
    if (a->batch) {
        a->batch->areq = NULL;
        if (status != 0) {
            CLOG(a->c, CLUSTER_LOG_DEBUG, "cluster: append failed: %s", raft_strerror(status));
            cluster__batch_finish(a->c, a->batch, CLUSTER_EUNAVAILABLE, NULL);
        }
    }
    free(a);
}

static int batch_append(struct cluster *c, struct batch *bt)
{
    struct apply_req *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->c = c;
    a->batch = bt;
    struct raft_buffer buf = {bt->entry, bt->entry_len};
    int rc = raft_apply(&c->raft, &a->req, &buf, 1, on_appended);
    if (rc) {
        free(a);
        return rc;
    }
    bt->entry = NULL; /* raft owns it now */
    bt->state = BATCH_APPENDING;
    bt->areq = a;
    return 0;
}

void cluster__batches_kick(struct cluster *c)
{
    if (c->closing || !c->raft_started)
        return;
    bool leader = raft_state(&c->raft) == RAFT_LEADER;
    list_foreach_safe(it, &c->pending) {
        struct batch *bt = list_entry(it, struct batch, item);
        if (bt->state != BATCH_QUEUED)
            continue;
        int rc = leader ? batch_append(c, bt) : cluster__forward_send(c, bt);
        if (rc == -EAGAIN || rc == RAFT_NOTLEADER)
            break; /* no way to the leader yet: keep the order, try at the next tick */
        if (rc)
            cluster__batch_finish(c, bt, CLUSTER_EUNAVAILABLE, NULL);
    }
}

/* Turns the open batch into a pending one. Returns -ENOMEM, leaving the
 * batch open, when memory is short. */
static int batch_close(struct cluster *c)
{
    if (!c->batch_count)
        return 0;
    struct batch *bt = calloc(1, sizeof(*bt));
    uint8_t *entry = raft_malloc(c->batch.len);
    if (!bt || !entry) {
        free(bt);
        raft_free(entry);
        return -ENOMEM;
    }
    bt->seq = ((uint64_t)c->epoch << 32) | ++c->batch_seq;
    memcpy(entry, c->batch.data, c->batch.len);
    uint8_t *p = bytes_put_u32le(entry, CLUSTER_ENTRY_MAGIC);
    p = bytes_put_u16le(p, CLUSTER_ENTRY_VERSION);
    p = bytes_put_u16le(p, (uint16_t)(c->batch_count > 0xFFFF ? 0xFFFF : c->batch_count));
    p = bytes_put_u32le(p, c->cfg.node_id);
    p = bytes_put_u32le(p, 0);
    bytes_put_u64le(p, bt->seq);
    bt->entry = entry;
    bt->entry_len = c->batch.len;
    bt->count = c->waiter_count;
    bt->waiters = c->waiters;
    bt->deadline = uv_now(c->loop) + c->cfg.commit_timeout_ms;
    bt->state = BATCH_QUEUED;
    c->waiters = NULL;
    c->waiter_count = c->waiter_cap = 0;
    c->batch_count = 0;
    c->batch.len = 0;
    list_push_back(&c->pending, &bt->item);
    return 0;
}

/* Fails the open batch (out of memory): from the idle handler only, never
 * from within cluster_propose. */
static void batch_fail_open(struct cluster *c, int status)
{
    struct cluster_waiter *w = c->waiters;
    uint32_t n = c->waiter_count;
    c->waiters = NULL;
    c->waiter_count = c->waiter_cap = 0;
    c->batch_count = 0;
    c->batch.len = 0;
    for (uint32_t i = 0; i < n; i++)
        if (w[i].done)
            w[i].done(w[i].arg, status, 0);
    free(w);
}

static void finish_close(struct cluster *c);

static void on_idle(uv_idle_t *h)
{
    struct cluster *c = h->data;
    uv_idle_stop(&c->flush);
    if (c->closing) {
        finish_close(c);
        return;
    }
    if (batch_close(c) != 0)
        batch_fail_open(c, CLUSTER_EUNAVAILABLE);
    cluster__batches_kick(c);
    drain_check(c);
}

int cluster_propose(struct cluster *c, const struct cluster_cmd *cmd, cluster_done_cb done, void *arg)
{
    if (c->closing || c->draining || c->fatal)
        return CLUSTER_ESHUTDOWN;
    if (c->waiter_count == c->waiter_cap) {
        uint32_t cap = c->waiter_cap ? c->waiter_cap * 2 : 16;
        struct cluster_waiter *w = realloc(c->waiters, cap * sizeof(*w));
        if (!w)
            return -ENOMEM;
        c->waiters = w;
        c->waiter_cap = cap;
    }
    if (c->batch.len == 0) {
        /* room for the entry header, filled in by batch_close */
        if (buf_reserve(&c->batch, CLUSTER_ENTRY_HEADER) != 0)
            return -ENOMEM;
        memset(c->batch.data, 0, CLUSTER_ENTRY_HEADER);
        c->batch.len = CLUSTER_ENTRY_HEADER;
    }
    size_t before = c->batch.len;
    int rc = cluster_cmd_encode(cmd, &c->batch);
    if (rc) {
        c->batch.len = before == CLUSTER_ENTRY_HEADER && !c->batch_count ? 0 : before;
        return rc;
    }
    c->waiters[c->waiter_count++] = (struct cluster_waiter){done, arg};
    c->batch_count++;
    if (c->batch.len >= BATCH_FLUSH_BYTES || c->batch_count >= 0xFFFF)
        (void)batch_close(c); /* out of memory: the idle handler tries again */
    if (!uv_is_active((uv_handle_t *)&c->flush))
        uv_idle_start(&c->flush, on_idle);
    return 0;
}

uint64_t cluster_generation_next(struct cluster *c)
{
    /* node id (16 bits), epoch (24 bits), sequence (24 bits): unique across
     * the cluster (node ids are at most 65535) and across restarts; when the
     * sequence wraps the epoch moves on, durably, before it is used */
    if (++c->gen_seq > 0xFFFFFF) {
        c->epoch++;
        if (identity_write(c) != 0)
            CLOG(c, CLUSTER_LOG_ERROR, "cluster: cannot record the new epoch in node.id: %s", strerror(errno));
        c->gen_seq = 1;
    }
    return ((uint64_t)(c->cfg.node_id & 0xFFFF) << 48) | ((uint64_t)(c->epoch & 0xFFFFFF) << 24) | c->gen_seq;
}

/* --- the state machine ------------------------------------------------------------------ */

static void fail_stop(struct cluster *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->fatal)
        return;
    c->fatal = true;
    CLOG(c, CLUSTER_LOG_ERROR, "cluster: %s; stopping this node", msg);
    if (c->cfg.fatal)
        c->cfg.fatal(c->cfg.ctx, msg);
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct cluster *c = fsm->data;
    *result = NULL;
    uint64_t index = raft_last_applied(&c->raft) + 1;
    if (c->fatal)
        return RAFT_IOERR;
    const uint8_t *p = buf->base;
    size_t len = buf->len;
    if (len < CLUSTER_ENTRY_HEADER || bytes_get_u32le(p) != CLUSTER_ENTRY_MAGIC) {
        /* every node sees the same bytes: skipping is deterministic */
        CLOG(c, CLUSTER_LOG_ERROR, "cluster: entry %" PRIu64 " is not a Starling entry; skipped", index);
        return 0;
    }
    if (bytes_get_u16le(p + 4) != CLUSTER_ENTRY_VERSION) {
        /* written by a newer Starling: applying part of it would diverge */
        fail_stop(c, "entry %" PRIu64 " has format version %u, this node knows %u (upgrade it)", index,
                  (unsigned)bytes_get_u16le(p + 4), CLUSTER_ENTRY_VERSION);
        return RAFT_IOERR;
    }
    if (index <= store_applied_index(c->store))
        return 0; /* already in the store (a replay after restart) */
    uint32_t origin = bytes_get_u32le(p + 8);
    uint64_t seq = bytes_get_u64le(p + 16);

    struct store_txn *txn;
    int rc = store_write_begin(c->store, &txn);
    if (rc) {
        fail_stop(c, "store: cannot apply entry %" PRIu64 ": %s", index, store_strerror(rc));
        return RAFT_IOERR;
    }
    uint32_t n = 0;
    size_t pos = CLUSTER_ENTRY_HEADER;
    int err = 0;
    while (pos < len) {
        if ((int)n == c->results_cap) {
            int cap = c->results_cap ? c->results_cap * 2 : 64;
            int *r = realloc(c->results, (size_t)cap * sizeof(*r));
            struct cluster_cmd *cmds = r ? realloc(c->cmds, (size_t)cap * sizeof(*cmds)) : NULL;
            if (r)
                c->results = r;
            if (!cmds) {
                err = -ENOMEM;
                break;
            }
            c->cmds = cmds;
            c->results_cap = cap;
        }
        struct cluster_cmd *cmd = &c->cmds[n];
        if (cluster_cmd_decode(p, len, &pos, cmd) != 0) {
            CLOG(c, CLUSTER_LOG_ERROR, "cluster: entry %" PRIu64 " command %u does not decode; rest skipped",
                 index, n);
            break;
        }
        int r = cluster__state_apply(txn, cmd);
        if (r == -EINVAL || r == -E2BIG || r == STORE_ECORRUPT) {
            /* the command itself is unusable (an empty client id or topic, a
             * key the store cannot hold): the same on every node, so it fails
             * alone; the store checks before it writes anything */
            CLOG(c, CLUSTER_LOG_WARN, "cluster: entry %" PRIu64 " command %u refused by the store: %s", index, n,
                 store_strerror(r));
            r = CLUSTER_ECORRUPT;
        } else if (r < 0 && r != CLUSTER_ESTALE && r != CLUSTER_ECORRUPT) {
            err = r; /* the store itself failed: this node must stop */
            break;
        }
        c->results[n++] = r;
    }
    if (!err)
        err = store_write_commit(txn, index);
    else
        store_txn_end(txn);
    if (err) {
        fail_stop(c, "store: cannot apply entry %" PRIu64 ": %s", index, store_strerror(err));
        return RAFT_IOERR;
    }

    /* the broker's in-memory indexes follow the store (the decoded commands
     * point into buf, which stays valid during this call) */
    for (uint32_t i = 0; i < n; i++)
        if (c->results[i] >= 0 && c->cfg.apply)
            c->cfg.apply(c->cfg.ctx, &c->cmds[i], c->results[i], index);
    if (origin == c->cfg.node_id) {
        list_foreach(it, &c->pending) {
            struct batch *bt = list_entry(it, struct batch, item);
            if (bt->seq == seq) {
                if (bt->count == n)
                    cluster__batch_finish(c, bt, 0, c->results);
                else
                    cluster__batch_finish(c, bt, CLUSTER_ECORRUPT, NULL);
                break;
            }
        }
    }
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

/* --- the tick: leadership, links, timeouts ---------------------------------------------- */

static void on_barrier(struct raft_barrier *req, int status)
{
    struct cluster *c = req->data;
    c->barrier_pending = false;
    if (status == 0)
        CLOG(c, CLUSTER_LOG_DEBUG, "cluster: leader barrier committed");
}

static void watch_leader(struct cluster *c)
{
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(&c->raft, &leader, &address);
    uint64_t term = raft_current_term(&c->raft);
    if (leader)
        c->leader_known_ms = uv_now(c->loop);
    if (leader != c->leader_seen || (leader && term != c->term_seen && raft_state(&c->raft) == RAFT_LEADER)) {
        if (leader)
            CLOG(c, CLUSTER_LOG_INFO, "cluster: leader is node %u (term %" PRIu64 ")", (unsigned)leader, term);
        else
            CLOG(c, CLUSTER_LOG_INFO, "cluster: no leader (term %" PRIu64 ")", term);
        c->leader_seen = (uint32_t)leader;
        c->term_seen = term;
        if (leader == c->cfg.node_id && !c->barrier_pending) {
            /* commits what earlier terms left uncommitted before we rely on it */
            c->barrier.data = c;
            if (raft_barrier(&c->raft, &c->barrier, on_barrier) == 0)
                c->barrier_pending = true;
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    struct cluster *c = t->data;
    if (c->closing || !c->raft_started)
        return;
    if (c->draining && uv_now(c->loop) >= c->drain_deadline) {
        start_close(c);
        return;
    }
    watch_leader(c);
    cluster__link_tick(c);
    cluster__member_tick(c);
    if (c->closing || c->draining)
        return;
    cluster__forward_tick(c);
    cluster__batches_kick(c);
    uint64_t now = uv_now(c->loop);
    list_foreach_safe(it, &c->pending) {
        struct batch *bt = list_entry(it, struct batch, item);
        if (bt->deadline <= now)
            cluster__batch_finish(c, bt, CLUSTER_EUNAVAILABLE, NULL);
    }
}

/* --- start and stop -------------------------------------------------------------------------- */

int cluster_start(uv_loop_t *loop, const struct cluster_config *cfg, struct cluster **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    int rc;
    struct cluster *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->loop = loop;
    c->cfg = *cfg;
    c->lock_fd = -1;
    list_init(&c->pending);
    list_init(&c->handshakes);
    list_init(&c->fwd_in);
    list_init(&c->links);
    list_init(&c->link_ins);
    list_init(&c->link_srcs);
    list_init(&c->ops);
    uv_idle_init(loop, &c->flush);
    c->flush.data = c;
    c->open_handles++;
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    c->open_handles++;
    uv_idle_init(loop, &c->link_flush);
    c->link_flush.data = c;
    c->open_handles++;
    c->started_ms = uv_now(loop);
    if (getrandom(&c->incarnation, sizeof(c->incarnation), 0) != sizeof(c->incarnation))
        c->incarnation = ((uint64_t)getpid() << 32) ^ uv_hrtime();
    *out = c; /* from here on, failures are closed with cluster_close */
    if (!c->cfg.commit_timeout_ms)
        c->cfg.commit_timeout_ms = 5000;
    if (!c->cfg.election_timeout_ms)
        c->cfg.election_timeout_ms = 1000;
    if (!c->cfg.heartbeat_ms)
        c->cfg.heartbeat_ms = 100;
    if (!c->cfg.node_timeout_ms)
        c->cfg.node_timeout_ms = 2 * c->cfg.election_timeout_ms;
    if (c->cfg.heartbeat_ms >= c->cfg.election_timeout_ms)
        c->cfg.heartbeat_ms = c->cfg.election_timeout_ms / 5 ? c->cfg.election_timeout_ms / 5 : 1;

    /* this node's raft address: its peer line, or the bind address alone */
    const char *self = NULL;
    for (int i = 0; i < cfg->peer_count; i++)
        if (cfg->peers[i].id == cfg->node_id)
            self = cfg->peers[i].address;
    if (cfg->node_id == 0 || cfg->node_id > 0xFFFF) {
        snprintf(err, errlen, "node_id %u is out of range 1..65535", cfg->node_id);
        goto fail;
    }
    for (const char *p = cfg->cluster_name; p && *p; p++)
        if (*p == ' ' || *p == '\t') {
            snprintf(err, errlen, "cluster_name \"%s\" contains a space", cfg->cluster_name);
            goto fail;
        }
    if (cfg->peer_count && !self) {
        snprintf(err, errlen, "the peer list has no line for this node (node_id %u)", cfg->node_id);
        goto fail;
    }
    if (cfg->peer_count > 1 && (!cfg->secret || !cfg->secret[0])) {
        snprintf(err, errlen, "cluster_secret must be set for a cluster of %d nodes", cfg->peer_count);
        goto fail;
    }
    snprintf(c->address, sizeof(c->address), "%s", self ? self : cfg->bind);

    rc = fs_mkdir_p(cfg->data_dir, 0750);
    if (rc) {
        snprintf(err, errlen, "data dir %s: %s", cfg->data_dir, strerror(-rc));
        goto fail;
    }
    if (lock_data_dir(c, err, errlen) != 0 || identity_check(c, err, errlen) != 0 ||
        cluster__member_prepare(c, err, errlen) != 0)
        goto fail;

    char path[1100];
    snprintf(path, sizeof(path), "%s/state", cfg->data_dir);
    rc = store_open(&c->store, path, cfg->store_map_size);
    if (rc) {
        snprintf(err, errlen, "store %s: %s%s", path, store_strerror(rc),
                 rc == STORE_ECORRUPT || rc == STORE_EFORMAT
                     ? " (the Raft log is the durable record: move this directory away and the node rebuilds "
                       "it from the latest snapshot and the log)"
                     : "");
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/raft", cfg->data_dir);
    rc = fs_mkdir_p(path, 0750);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        goto fail;
    }

    cluster__transport_setup(c);
    c->fsm.version = 2;
    c->fsm.data = c;
    c->fsm.apply = fsm_apply;
    c->fsm.snapshot = fsm_snapshot;
    c->fsm.snapshot_finalize = fsm_snapshot_finalize;
    c->fsm.restore = fsm_restore;
    rc = raft_uv_init(&c->io, loop, path, &c->transport);
    if (rc) {
        snprintf(err, errlen, "raft log %s: %s", path, c->io.errmsg[0] ? c->io.errmsg : raft_strerror(rc));
        goto fail;
    }
    c->io_inited = true;
    raft_uv_set_auto_recovery(&c->io, false); /* never drop entries silently */
    raft_uv_set_connect_retry_delay(&c->io, 200);
    rc = raft_init(&c->raft, &c->io, &c->fsm, cfg->node_id, c->address);
    if (rc) {
        snprintf(err, errlen, "raft: %s", raft_errmsg(&c->raft));
        goto fail;
    }
    c->raft_inited = true;
    raft_set_election_timeout(&c->raft, c->cfg.election_timeout_ms);
    raft_set_heartbeat_timeout(&c->raft, c->cfg.heartbeat_ms);
    raft_set_pre_vote(&c->raft, true);
    if (c->cfg.snapshot_threshold)
        raft_set_snapshot_threshold(&c->raft, c->cfg.snapshot_threshold);
    if (c->cfg.snapshot_trailing)
        raft_set_snapshot_trailing(&c->raft, c->cfg.snapshot_trailing);

    struct raft_configuration conf;
    raft_configuration_init(&conf);
    if (c->joining) {
        rc = RAFT_CANTBOOTSTRAP; /* the leader sends the configuration */
    } else if (cfg->peer_count) {
        for (int i = 0; i < cfg->peer_count && rc == 0; i++)
            rc = raft_configuration_add(&conf, cfg->peers[i].id, cfg->peers[i].address, RAFT_VOTER);
    } else {
        rc = raft_configuration_add(&conf, cfg->node_id, c->address, RAFT_VOTER);
    }
    if (rc == 0 && !c->joining)
        rc = raft_bootstrap(&c->raft, &conf);
    raft_configuration_close(&conf);
    if (rc == 0) {
        CLOG(c, CLUSTER_LOG_INFO, "cluster: bootstrapped node %u with %d voter(s)", cfg->node_id,
             cfg->peer_count ? cfg->peer_count : 1);
        if (store_applied_index(c->store) > 0) {
            snprintf(err, errlen,
                     "data dir %s: the store has entries up to %" PRIu64
                     " but the raft log was empty (the raft/ directory was removed?): refusing to start",
                     cfg->data_dir, store_applied_index(c->store));
            goto fail;
        }
    } else if (rc != RAFT_CANTBOOTSTRAP) {
        snprintf(err, errlen, "raft bootstrap: %s", raft_errmsg(&c->raft)[0] ? raft_errmsg(&c->raft) : raft_strerror(rc));
        goto fail;
    }

    /* a single node listens too when it has a secret: it can be joined */
    if ((cfg->peer_count > 1 || (cfg->secret && cfg->secret[0]) || c->joining) &&
        cluster__peer_listen(c, err, errlen) != 0)
        goto fail;
    return 0;
fail:
    return -EINVAL;
}

int cluster_run(struct cluster *c, char *err, size_t errlen)
{
    int rc = raft_start(&c->raft);
    if (rc) {
        snprintf(err, errlen, "raft log of %s: %s", c->cfg.data_dir,
                 raft_errmsg(&c->raft)[0] ? raft_errmsg(&c->raft) : raft_strerror(rc));
        return -EIO;
    }
    c->raft_started = true;
    uint64_t applied = store_applied_index(c->store);
    if (applied > raft_last_index(&c->raft)) {
        snprintf(err, errlen,
                 "data dir %s: the store is at entry %" PRIu64 " but the raft log ends at %llu (entries lost?): "
                 "refusing to start",
                 c->cfg.data_dir, applied, (unsigned long long)raft_last_index(&c->raft));
        return -EIO;
    }
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    cluster__link_tick(c); /* links to the configured members now, not at the first tick */
    return 0;
}

int cluster_load(struct cluster *c, int (*cb)(void *arg, const struct cluster_cmd *cmd), void *arg)
{
    return cluster__state_load(c->store, cb, arg);
}

uint64_t cluster_applied_index(struct cluster *c) { return store_applied_index(c->store); }

void cluster_status_get(struct cluster *c, struct cluster_status *out)
{
    memset(out, 0, sizeof(*out));
    out->node_id = c->cfg.node_id;
    out->applied_index = store_applied_index(c->store);
    if (!c->raft_started) {
        out->role = 3;
        return;
    }
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(&c->raft, &leader, &address);
    out->leader_id = (uint32_t)leader;
    if (!leader)
        out->leaderless_ms = uv_now(c->loop) - (c->leader_known_ms ? c->leader_known_ms : c->started_ms);
    int st = raft_state(&c->raft);
    out->role = st == RAFT_LEADER ? 2 : st == RAFT_CANDIDATE ? 1 : st == RAFT_FOLLOWER ? 0 : 3;
    out->term = raft_current_term(&c->raft);
    out->commit_index = raft_commit_index(&c->raft);
    out->last_index = raft_last_index(&c->raft);
}

static void on_raft_closed(struct raft *r)
{
    struct cluster *c = r->data;
    raft_uv_close(&c->io);
    c->raft_started = false;
    cluster__handle_closed(c);
}

static void finish_close(struct cluster *c)
{
    /* pending proposals fail; nothing new is accepted */
    if (c->batch_count && batch_close(c) != 0)
        batch_fail_open(c, CLUSTER_ESHUTDOWN);
    while (!list_empty(&c->pending))
        cluster__batch_finish(c, list_entry(list_first(&c->pending), struct batch, item), CLUSTER_ESHUTDOWN, NULL);
    cluster__member_close_all(c);
    cluster__forward_close_all(c);
    cluster__link_close_all(c);
    cluster__peer_close_all(c);
    uv_close((uv_handle_t *)&c->tick, cluster__on_handle_closed);
    uv_close((uv_handle_t *)&c->link_flush, cluster__on_handle_closed);
    uv_close((uv_handle_t *)&c->flush, cluster__on_handle_closed);
    if (!c->raft_inited && c->io_inited)
        raft_uv_close(&c->io);
    if (c->raft_inited) {
        c->open_handles++;
        c->raft_started = true; /* keeps the store open until raft has closed */
        c->raft.data = c;
        raft_close(&c->raft, on_raft_closed);
    }
}

static void start_close(struct cluster *c)
{
    c->draining = false;
    c->closing = true;
    /* not from within a raft callback: the idle handle runs it next turn */
    uv_idle_start(&c->flush, on_idle);
}

/* Whether a drain is over: nothing proposed is waiting any more. */
static void drain_check(struct cluster *c)
{
    if (c->draining && list_empty(&c->pending) && !c->batch_count)
        start_close(c);
}

void cluster_close(struct cluster *c, void (*close_cb)(void *arg), void *arg)
{
    if (c->closing || c->draining)
        return;
    c->close_cb = close_cb;
    c->close_arg = arg;
    if (c->raft_started && !c->fatal && (c->batch_count || !list_empty(&c->pending))) {
        /* what the broker proposed while it closed its connections (session
         * releases) gets up to DRAIN_MS to commit before Raft stops */
        c->draining = true;
        c->drain_deadline = uv_now(c->loop) + DRAIN_MS;
        uv_idle_start(&c->flush, on_idle);
        return;
    }
    start_close(c);
}

int cluster_dump(const char *data_dir, void *file, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/state", data_dir);
    struct store *s;
    int rc = store_open_readonly(&s, path);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, rc == -ENOENT ? "no replicated state here" : store_strerror(rc));
        return rc;
    }
    rc = cluster__state_dump(s, file);
    store_close(s);
    if (rc)
        snprintf(err, errlen, "%s: %s", path, store_strerror(rc));
    return rc;
}
