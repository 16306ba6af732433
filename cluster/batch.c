/* batch: proposals, batched per loop turn into one log entry and appended
 * through libraft (here, on the leader) or forwarded to the leader (forward.c).
 *
 * Happy path: cluster_propose encodes the command into the open batch and
 * arms the flush idle handle; at the next iteration the batch becomes a log
 * entry (header: origin node, batch sequence) and goes to raft_apply (leader)
 * or to the leader's forward link (follower). When the entry is applied
 * (fsm.c) the origin node finds its batch by sequence and runs the proposers'
 * done callbacks with the store's per-command results.
 * Failure modes: no leader, a minority, a lost link, a refused append: the
 * batch fails with CLUSTER_EUNAVAILABLE after commit_timeout_ms at the latest
 * (the entry may still commit later: indeterminate, never applied twice).
 * Closing fails everything still pending with CLUSTER_ESHUTDOWN.
 *
 * Group commit: on the leader, while BATCH_APPENDS_IN_FLIGHT batches of this
 * node are appended and not yet applied, the open batch stays open across
 * loop turns and collects what arrives; it is sealed when one of them
 * finishes. libraft writes the entries that wait for the disk in one write
 * anyway, so this costs a proposal no time, and each such burst becomes one
 * entry (one LMDB transaction, one decode, one batch) instead of one per
 * loop turn: under 50 CONNECTs in flight, ~50 entries of one claim each
 * became one of ~50. A held batch's commit_timeout_ms starts when it is
 * sealed, so behind an append that never finishes it fails after twice that
 * at most (the one in flight expires first and releases it). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BATCH_FLUSH_BYTES (8u << 20)

/* One voter: libraft writes one entry batch at a time, more in flight only
 * wait behind it. Several voters: one more, so an entry travels to the
 * followers while the previous one's acknowledgements come back. */
#define BATCH_APPENDS_IN_FLIGHT(c) ((c)->cfg.peer_count < 2 ? 1u : 2u)

void cluster__batch_finish(struct cluster *c, struct batch *bt, int status, const int *results)
{
    list_remove(&bt->item);
    if (bt->state == BATCH_APPENDING) {
        c->appending--;
        if (c->batch_count)
            cluster__flush_soon(c); /* the batch held open behind this one */
    }
    if (status == 0 && bt->closed_ns) {
        c->commits++;
        c->commit_us_total += (uv_hrtime() - bt->closed_ns) / 1000;
    }
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
    cluster__drain_check(c);
}

int cluster__raft_apply(struct cluster *c, struct raft_apply *req, uint8_t **entry, size_t len, raft_apply_cb cb,
                        const char *what)
{
    if (c->fatal)
        return RAFT_SHUTDOWN;
    struct raft_buffer buf = {*entry, len};
    raft_index before = raft_last_index(&c->raft);
    int rc = raft_apply(&c->raft, req, &buf, 1, cb);
    if (rc == 0 || raft_last_index(&c->raft) != before)
        *entry = NULL; /* libraft's now, or freed by it when the write failed */
    if (rc == 0)
        c->refusing_since_ms = 0;
    return cluster__raft_check(c, rc, before, what);
}

int cluster__append_noop(struct cluster *c, struct raft_apply *req, raft_apply_cb cb, const char *what)
{
    uint8_t *entry = raft_malloc(CLUSTER_ENTRY_HEADER);
    if (!entry)
        return RAFT_NOMEM;
    memset(entry, 0, CLUSTER_ENTRY_HEADER);
    bytes_put_u16le(bytes_put_u32le(entry, CLUSTER_ENTRY_MAGIC), CLUSTER_ENTRY_VERSION);
    int rc = cluster__raft_apply(c, req, &entry, CLUSTER_ENTRY_HEADER, cb, what);
    raft_free(entry); /* NULL unless refused */
    return rc;
}

static void on_pushed(struct raft_apply *req, int status, void *result)
{
    struct cluster *c = container_of(req, struct cluster, push);
    (void)status;
    (void)result;
    c->push_pending = false;
}

/* libraft tells a follower that an entry committed only with the next message
 * it sends it (an append or a heartbeat), and a follower acknowledges its
 * clients only after applying the entry. Appending a no-op entry right after
 * a command entry committed sends that message at once; under load it rides
 * along with the next entries, and at most one is in flight. (Not
 * raft_barrier: libraft 0.22.1 frees a barrier's buffer twice when the log
 * cannot take it.) */
void cluster__push_commit(struct cluster *c)
{
    if (c->push_pending || c->closing || c->fatal || c->cfg.peer_count < 2)
        return;
    if (cluster__append_noop(c, &c->push, on_pushed, "appending a no-op entry") == 0)
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
            CLOG(a->c, CLUSTER_LOG_DEBUG, "cluster: append failed: %s (raft error %d)", raft_strerror(status),
                 status);
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
    int rc = cluster__raft_apply(c, &a->req, &bt->entry, bt->entry_len, on_appended, "appending a batch");
    if (rc) {
        free(a);
        return rc;
    }
    bt->state = BATCH_APPENDING;
    bt->areq = a;
    c->appending++;
    return 0;
}

void cluster__batches_kick(struct cluster *c)
{
    if (c->closing || c->fatal || !c->raft_started)
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
    bt->closed_ns = uv_hrtime();
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
void cluster__batch_flush(struct cluster *c)
{
    if (c->appending >= BATCH_APPENDS_IN_FLIGHT(c) && c->raft_started && !c->closing && !c->fatal &&
        raft_state(&c->raft) == RAFT_LEADER) {
        cluster__batches_kick(c); /* batches sealed for size still go */
        return;                   /* group commit: sealed when an append in flight finishes */
    }
    if (batch_close(c) != 0)
        batch_fail_open(c, CLUSTER_EUNAVAILABLE);
    cluster__batches_kick(c);
}

struct batch *cluster__batch_find(struct cluster *c, uint64_t seq)
{
    list_foreach(it, &c->pending) {
        struct batch *bt = list_entry(it, struct batch, item);
        if (bt->seq == seq)
            return bt;
    }
    return NULL;
}

void cluster__batch_committed(struct cluster *c, uint64_t seq, uint32_t count, const int *results)
{
    struct batch *bt = cluster__batch_find(c, seq);
    if (!bt)
        return; /* it failed already (timeout, lost link), or was proposed before a restart */
    if (bt->count == count)
        cluster__batch_finish(c, bt, 0, results);
    else
        cluster__batch_finish(c, bt, CLUSTER_ECORRUPT, NULL);
}

void cluster__batches_expire(struct cluster *c)
{
    uint64_t now = uv_now(c->loop);
    list_foreach_safe(it, &c->pending) {
        struct batch *bt = list_entry(it, struct batch, item);
        if (bt->deadline <= now)
            cluster__batch_finish(c, bt, CLUSTER_EUNAVAILABLE, NULL);
    }
}

void cluster__batches_fail_all(struct cluster *c, int status)
{
    if (c->batch_count && batch_close(c) != 0)
        batch_fail_open(c, status);
    while (!list_empty(&c->pending))
        cluster__batch_finish(c, list_entry(list_first(&c->pending), struct batch, item), status, NULL);
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
    cluster__flush_soon(c);
    return 0;
}
