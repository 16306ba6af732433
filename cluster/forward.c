/* forward: proposals made on a follower travel to the leader over an
 * authenticated FORWARD link (peer.c) and are appended there unchanged.
 *
 * Happy path: a follower keeps one link to the leader it knows; a batch is
 * written as a PROPOSE frame (the whole log entry); the leader appends it with
 * raft_apply; the follower learns of the commit when it applies the entry
 * itself and finds its own origin and batch sequence in the entry header
 * (fsm.c, batch.c), so no answer is needed on success.
 * Failure modes: the leader cannot append (not the leader any more, no
 * memory): it answers REFUSED and the follower fails the batch at once; the
 * link breaks or the leader changes: every batch sent on it fails (the entry
 * may still commit: indeterminate, like a timeout); no answer at all: the
 * batch's commit timeout fails it. Batches are never resent, so a command
 * cannot be applied twice. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct fwd_conn {
    struct frames f;              /* its refs also count leader-side appends in flight */
    struct list link;             /* in c->fwd_in (incoming links; unlinked when outgoing) */
    struct cluster *c;
    uint32_t node;
    bool outgoing;
    bool dry;                     /* no socket (the fuzzer's): proposals are checked, not appended */
};

struct fwd_append {
    struct raft_apply req;
    struct fwd_conn *conn;
    uint64_t seq;
};

static void on_conn_close(struct frames *f, const char *why)
{
    struct fwd_conn *fc = container_of(f, struct fwd_conn, f);
    struct cluster *c = fc->c;
    if (fc->outgoing) {
        if (c->fwd_out == fc)
            c->fwd_out = NULL;
        if (why)
            CLOG(c, CLUSTER_LOG_INFO, "cluster: link to leader node %u closed: %s", fc->node, why);
        /* what was sent on this link is now indeterminate: fail it */
        list_foreach_safe(it, &c->pending) {
            struct batch *bt = list_entry(it, struct batch, item);
            if (bt->state == BATCH_FORWARDED && bt->link == fc)
                cluster__batch_finish(c, bt, CLUSTER_EUNAVAILABLE, NULL);
        }
    } else {
        list_remove(&fc->link);
    }
}

static void on_conn_free(struct frames *f)
{
    struct fwd_conn *fc = container_of(f, struct fwd_conn, f);
    cluster__frames_free(f, fc, fc->c);
}

/* --- leader side ---------------------------------------------------------------- */

static void refuse(struct fwd_conn *fc, uint64_t seq, int reason)
{
    uint8_t head[12];
    bytes_put_u32le(bytes_put_u64le(head, seq), (uint32_t)reason);
    cluster__frames_send(&fc->f, FWD_REFUSED, head, sizeof(head), NULL, 0);
}

static void on_appended(struct raft_apply *req, int status, void *result)
{
    struct fwd_append *a = container_of(req, struct fwd_append, req);
    (void)result;
    if (status == 0)
        cluster__push_commit(a->conn->c);
    if (status != 0 && !a->conn->f.closed)
        refuse(a->conn, a->seq, status);
    cluster__frames_unref(&a->conn->f);
    free(a);
}

static void on_propose(struct fwd_conn *fc, const uint8_t *body, size_t len)
{
    struct cluster *c = fc->c;
    if (len < 8 + CLUSTER_ENTRY_HEADER || (len - 8) % 8 != 0) {
        cluster__frames_close(&fc->f, "malformed PROPOSE");
        return;
    }
    uint64_t seq = bytes_get_u64le(body);
    /* an entry of another format version would stop every node that applies it */
    if (bytes_get_u32le(body + 8) != CLUSTER_ENTRY_MAGIC || bytes_get_u16le(body + 8 + 4) != CLUSTER_ENTRY_VERSION ||
        bytes_get_u32le(body + 8 + 8) != fc->node) {
        cluster__frames_close(&fc->f, "PROPOSE with a foreign entry");
        return;
    }
    if (fc->dry) {
        cluster__fsm_dry_run(c, body + 8, len - 8);
        return;
    }
    struct fwd_append *a = malloc(sizeof(*a));
    struct raft_buffer buf = {raft_malloc(len - 8), len - 8};
    if (!a || !buf.base) {
        free(a);
        raft_free(buf.base);
        refuse(fc, seq, RAFT_NOMEM);
        return;
    }
    memcpy(buf.base, body + 8, len - 8);
    a->conn = fc;
    a->seq = seq;
    uint8_t *entry = buf.base;
    int rc = cluster__raft_apply(c, &a->req, &entry, buf.len, on_appended, "appending a forwarded batch");
    if (rc) {
        raft_free(entry); /* NULL unless refused */
        free(a);
        refuse(fc, seq, rc);
        return;
    }
    fc->f.refs++;
}

/* --- follower side ------------------------------------------------------------- */

static void on_refused(struct fwd_conn *fc, const uint8_t *body, size_t len)
{
    struct cluster *c = fc->c;
    if (len != 12) {
        cluster__frames_close(&fc->f, "malformed REFUSED");
        return;
    }
    uint64_t seq = bytes_get_u64le(body);
    int reason = (int)bytes_get_u32le(body + 8);
    struct batch *bt = cluster__batch_find(c, seq);
    if (bt && bt->state == BATCH_FORWARDED) {
        CLOG(c, CLUSTER_LOG_DEBUG, "cluster: leader refused batch %llu: %s", (unsigned long long)seq,
             raft_strerror(reason));
        cluster__batch_finish(c, bt, CLUSTER_EUNAVAILABLE, NULL);
    }
}

/* --- both sides ---------------------------------------------------------------------- */

static void on_frame(struct frames *f, uint8_t type, const uint8_t *body, size_t len)
{
    struct fwd_conn *fc = container_of(f, struct fwd_conn, f);
    if (type == FWD_PROPOSE && !fc->outgoing)
        on_propose(fc, body, len);
    else if (type == FWD_REFUSED && fc->outgoing)
        on_refused(fc, body, len);
    else
        cluster__frames_close(f, "unexpected frame");
}

static struct fwd_conn *conn_new(struct cluster *c, uv_stream_t *stream, uint32_t node, bool outgoing)
{
    struct fwd_conn *fc = calloc(1, sizeof(*fc));
    if (!fc) {
        if (stream)
            uv_close((uv_handle_t *)stream, cluster__close_free);
        return NULL;
    }
    fc->c = c;
    fc->dry = !stream;
    fc->node = node;
    fc->outgoing = outgoing;
    fc->f.on_frame = on_frame;
    fc->f.on_close = on_conn_close;
    fc->f.on_free = on_conn_free;
    c->open_handles++;
    list_init(&fc->link);
    if (!outgoing)
        list_push_front(&c->fwd_in, &fc->link);
    if (cluster__frames_start(&fc->f, stream) != 0)
        return NULL;
    return fc;
}

struct frames *cluster__forward_accept(struct cluster *c, uint32_t node_id, uv_stream_t *stream)
{
    struct fwd_conn *fc = conn_new(c, stream, node_id, false);
    return fc ? &fc->f : NULL;
}

static void on_dialed(void *arg, uv_stream_t *stream, int status)
{
    struct cluster *c = arg;
    uint32_t node = c->fwd_out_node;
    c->fwd_dialing = NULL;
    if (status) {
        CLOG(c, CLUSTER_LOG_DEBUG, "cluster: cannot reach leader node %u: %s", node, uv_strerror(status));
        return;
    }
    if (c->closing) {
        uv_close((uv_handle_t *)stream, cluster__close_free);
        return;
    }
    struct fwd_conn *fc = conn_new(c, stream, node, true);
    if (!fc)
        return;
    c->fwd_out = fc;
    CLOG(c, CLUSTER_LOG_DEBUG, "cluster: forwarding proposals to leader node %u", node);
    cluster__batches_kick(c);
}

void cluster__forward_tick(struct cluster *c)
{
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(&c->raft, &leader, &address);
    if (c->fwd_out && (leader != c->fwd_out->node || leader == c->cfg.node_id))
        cluster__frames_close(&c->fwd_out->f, "the leader changed");
    if (c->fwd_dialing && leader != c->fwd_out_node) {
        cluster__peer_cancel(c->fwd_dialing);
        c->fwd_dialing = NULL;
    }
    if (!leader || leader == c->cfg.node_id || c->fwd_out || c->fwd_dialing || !address)
        return;
    c->fwd_out_node = (uint32_t)leader;
    c->fwd_dialing = cluster__peer_dial(c, address, PEER_CH_FORWARD, on_dialed, c);
}

int cluster__forward_send(struct cluster *c, struct batch *bt)
{
    struct fwd_conn *fc = c->fwd_out;
    if (!fc || fc->f.closed)
        return -EAGAIN;
    uint8_t head[8];
    bytes_put_u64le(head, bt->seq);
    int rc = cluster__frames_send(&fc->f, FWD_PROPOSE, head, sizeof(head), bt->entry, bt->entry_len);
    if (rc)
        return rc;
    bt->state = BATCH_FORWARDED;
    bt->link = fc;
    raft_free(bt->entry);
    bt->entry = NULL;
    return 0;
}

void cluster__forward_close_all(struct cluster *c)
{
    if (c->fwd_dialing) {
        cluster__peer_cancel(c->fwd_dialing);
        c->fwd_dialing = NULL;
    }
    if (c->fwd_out)
        cluster__frames_close(&c->fwd_out->f, NULL);
    while (!list_empty(&c->fwd_in))
        cluster__frames_close(&list_entry(list_first(&c->fwd_in), struct fwd_conn, link)->f, NULL);
}
