/* cluster: proposals, batching per loop turn, commit and apply in log order.
 *
 * Happy path: cluster_propose encodes the command into the current batch and
 * arms an idle handle (an active idle handle also keeps the next poll from
 * blocking, so a proposal made from a callback never waits for I/O); at the
 * next iteration the idle callback turns the
 * batch into one log entry, commits it (in this version: a one-voter in-memory
 * log, so at once), decodes and applies each command in order, then runs each
 * proposer's done callback with the apply result.
 * Failure modes: a command that cannot be encoded is refused by cluster_propose;
 * closing the cluster completes every queued proposal with CLUSTER_ESHUTDOWN. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

struct cluster_waiter {
    cluster_done_cb done;
    void *arg;
};

static void flush_batch(struct cluster *c, int status)
{
    struct proto_wbuf entry = c->batch;
    struct cluster_waiter *waiters = c->waiters;
    uint32_t count = c->waiter_count;
    memset(&c->batch, 0, sizeof(c->batch));
    c->waiters = NULL;
    c->waiter_count = c->waiter_cap = 0;
    c->batch_count = 0;

    if (status == 0)
        c->last_index++;
    size_t pos = 0;
    for (uint32_t i = 0; i < count; i++) {
        int result = 0, st = status;
        if (st == 0) {
            struct cluster_cmd cmd;
            st = cluster_cmd_decode(entry.data, entry.len, &pos, &cmd);
            if (st == 0) {
                result = c->apply(c->apply_ctx, &cmd, c->last_index);
                if (result < 0) {
                    st = result;
                    result = 0;
                }
            }
        }
        if (waiters[i].done)
            waiters[i].done(waiters[i].arg, st, result);
    }
    free(waiters);
    free(entry.data);
}

static void on_idle(uv_idle_t *h)
{
    struct cluster *c = h->data;
    uv_idle_stop(&c->flush);
    if (c->batch_count)
        flush_batch(c, 0);
}

int cluster_init(struct cluster *c, uv_loop_t *loop, uint32_t node_id, cluster_apply_cb apply,
                 void *apply_ctx)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->node_id = node_id;
    c->apply = apply;
    c->apply_ctx = apply_ctx;
    int rc = uv_idle_init(loop, &c->flush);
    if (rc)
        return rc;
    c->flush.data = c;
    return 0;
}

int cluster_propose(struct cluster *c, const struct cluster_cmd *cmd, cluster_done_cb done,
                    void *arg)
{
    if (c->closing)
        return CLUSTER_ESHUTDOWN;
    if (c->waiter_count == c->waiter_cap) {
        uint32_t cap = c->waiter_cap ? c->waiter_cap * 2 : 16;
        struct cluster_waiter *w = realloc(c->waiters, cap * sizeof(*w));
        if (!w)
            return -ENOMEM;
        c->waiters = w;
        c->waiter_cap = cap;
    }
    size_t before = c->batch.len;
    int rc = cluster_cmd_encode(cmd, &c->batch);
    if (rc) {
        c->batch.len = before;
        return rc;
    }
    c->waiters[c->waiter_count++] = (struct cluster_waiter){done, arg};
    c->batch_count++;
    if (!uv_is_active((uv_handle_t *)&c->flush))
        uv_idle_start(&c->flush, on_idle);
    return 0;
}

uint64_t cluster_generation_next(struct cluster *c)
{
    /* node id in the top 16 bits keeps generations of different nodes apart */
    return ((uint64_t)(c->node_id & 0xFFFF) << 48) | (++c->generation_seq & 0xFFFFFFFFFFFFull);
}

static void on_closed(uv_handle_t *h)
{
    struct cluster *c = h->data;
    if (c->close_cb)
        c->close_cb(c);
}

void cluster_close(struct cluster *c, void (*close_cb)(struct cluster *))
{
    c->closing = true;
    c->close_cb = close_cb;
    /* even with nothing queued: a refused proposal leaves the waiter array allocated */
    flush_batch(c, CLUSTER_ESHUTDOWN);
    uv_close((uv_handle_t *)&c->flush, on_closed);
}
