/* member: changes of the cluster's membership asked for by an operator (join,
 * leave, remove, transfer), carried out by the leader with libraft's
 * configuration changes.
 *
 * Control frames (on the data links, link.c), little-endian:
 *   op u8, request id u32, then
 *     JOIN_CHECK / JOIN  u32 node, u16 len + cluster name, u16 len + address
 *     REMOVE / TRANSFER  u32 node
 *     REMOVED            u32 node that removed us, u16 len + cluster name
 *     ANSWER             i32 status, u16 len + message, u16 len + leader address
 * A request reaching a follower is answered with CLUSTER_EUNAVAILABLE and the
 * leader's address, which the asker tries next (a follower asks the leader
 * directly over its own data link).
 *
 * Join, on the joining node: JOIN_CHECK to the given peer (same cluster name,
 * the node id free or already ours), then the node records DIR/join (the
 * peer, and that its own state is to be discarded) and restarts; at start it
 * discards raft/ and state/, does not bootstrap, and sends JOIN to the leader
 * every second until the configuration holds it as a voter (the leader adds
 * it, libraft catches it up with a snapshot and the log, then promotes it).
 * Remove: the leader removes the node from the configuration, then tells it
 * (REMOVED); the removed node records DIR/removed and stops with the reason; it
 * refuses to start on that directory again. A leader asked to remove itself
 * hands leadership over first. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

enum ctl_op { CTL_JOIN_CHECK = 1, CTL_JOIN = 2, CTL_REMOVE = 3, CTL_TRANSFER = 4, CTL_REMOVED = 5, CTL_ANSWER = 6 };

#define OP_TIMEOUT_MS 15000
#define JOIN_RETRY_MS 1000

struct member_op {
    struct list link;         /* in c->ops */
    struct cluster *c;
    uint32_t id;              /* our request id */
    uint32_t reply_id;        /* the remote asker's request id */
    int status;               /* once finished */
    bool finished;            /* answered in the next tick */
    char msg[300];
    int redirects;
    uint8_t op;
    uint32_t node;            /* the node acted on */
    uint64_t deadline;
    cluster_op_cb cb;         /* local asker */
    void *arg;
    struct frames *reply;     /* remote asker: answer on this stream (referenced) */
    struct raft_change change;
    struct raft_transfer transfer;
    bool in_raft;             /* a raft request is under way: freed by its callback */
    bool then_remove;         /* transfer first, then ask the new leader to remove node */
    char address[256];
    struct peer_hs *dialing;  /* join check: the dial to the peer */
    struct frames *stream;    /* join check: our own link to the peer */
};

#define op_of(it) list_entry(it, struct member_op, link)

struct join_stream {
    struct frames f;
    struct member_op *op;
    struct cluster *c;
};

/* --- encoding ---------------------------------------------------------------------- */

struct wr {
    uint8_t buf[600];
    size_t len;
};

/* Appends n bytes of p; a control frame never fills buf (two strings of at
 * most 255 bytes and a few integers), so the bound is only a guard. */
static void w_mem(struct wr *w, const void *p, size_t n)
{
    if (n <= sizeof(w->buf) - w->len)
        w->len = (size_t)(bytes_put_mem(w->buf + w->len, p, n) - w->buf);
}

static void w_u8(struct wr *w, uint8_t v) { w_mem(w, &v, 1); }

static void w_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4];
    bytes_put_u32le(b, v);
    w_mem(w, b, sizeof(b));
}

static void w_str(struct wr *w, const char *s)
{
    size_t n = strlen(s);
    if (n > 255)
        n = 255;
    uint8_t b[2];
    bytes_put_u16le(b, (uint16_t)n);
    w_mem(w, b, sizeof(b));
    w_mem(w, s, n);
}

/* Reads a u16-length string into out (cap bytes, NUL included); a string
 * that does not fit is malformed. */
static int r_str(struct bytes_reader *r, char *out, size_t cap)
{
    uint16_t n;
    out[0] = '\0';
    int rc = bytes_read_u16le(r, &n);
    if (!rc && n >= cap)
        rc = -EBADMSG;
    if (!rc)
        rc = bytes_read_mem(r, out, n);
    if (rc)
        return rc;
    out[n] = '\0';
    return 0;
}

static void answer_on(struct frames *f, uint32_t id, int status, const char *msg, const char *leader)
{
    struct wr w = {.len = 0};
    w_u8(&w, CTL_ANSWER);
    w_u32(&w, id);
    w_u32(&w, (uint32_t)status);
    w_str(&w, msg);
    w_str(&w, leader ? leader : "");
    if (!f->closed)
        cluster__link_reply(f, w.buf, w.len);
}

/* --- operations -------------------------------------------------------------------- */

/* Ends op: a remote asker is answered now, a local one in the next tick
 * (never from within the call that started the operation). */
static void op_finish(struct member_op *op, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void op_finish(struct member_op *op, int status, const char *fmt, ...)
{
    struct cluster *c = op->c;
    if (op->finished)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->msg, sizeof(op->msg), fmt, ap);
    va_end(ap);
    op->finished = true;
    op->status = status;
    CLOG(c, status == 0 ? CLUSTER_LOG_INFO : CLUSTER_LOG_WARN, "cluster: %s", op->msg);
    if (op->reply) {
        answer_on(op->reply, op->reply_id, status, op->msg, NULL);
        cluster__frames_unref(op->reply);
        op->reply = NULL;
    }
    if (op->stream) {
        struct join_stream *js = container_of(op->stream, struct join_stream, f);
        js->op = NULL;
        cluster__frames_close(op->stream, NULL);
        op->stream = NULL;
    }
    if (op->dialing) {
        struct peer_hs *hs = op->dialing;
        op->dialing = NULL;
        cluster__peer_cancel(hs);
    }    if (op->cb)
        cluster__tick_soon(c); /* ops_reap tells the local asker */
}

/* Delivers what finished to local askers; frees what nothing holds. */
static void ops_reap(struct cluster *c, bool all)
{
    list_foreach_safe(it, &c->ops) {
        struct member_op *op = list_entry(it, struct member_op, link);
        if (!op->finished && !all)
            continue;
        list_remove(it);
        if (!op->finished)
            op_finish(op, CLUSTER_ESHUTDOWN, "the node is stopping");
        if (op->cb)
            op->cb(op->arg, op->status, op->msg);
        if (op->in_raft)
            op->c = NULL; /* the raft callback frees it */
        else
            free(op);
    }
}

static struct member_op *op_new(struct cluster *c, uint8_t type, uint32_t node, cluster_op_cb cb, void *arg)
{
    struct member_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->c = c;
    op->op = type;
    op->node = node;
    op->cb = cb;
    op->arg = arg;
    op->id = ++c->op_seq;
    op->deadline = uv_now(c->loop) + OP_TIMEOUT_MS;
    list_push_front(&c->ops, &op->link);
    return op;
}

static const struct raft_server *member_find(struct cluster *c, uint32_t node)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == node)
            return &conf->servers[i];
    return NULL;
}

static bool is_leader(struct cluster *c) { return c->raft_started && raft_state(&c->raft) == RAFT_LEADER; }

static const char *leader_address(struct cluster *c, uint32_t *id)
{
    raft_id leader = 0;
    const char *address = NULL;
    if (c->raft_started)
        raft_leader(&c->raft, &leader, &address);
    if (id)
        *id = (uint32_t)leader;
    return leader ? address : NULL;
}

/* Sends op to the leader, which answers with the same request id. */
static void op_forward(struct member_op *op)
{
    struct cluster *c = op->c;
    uint32_t leader = 0;
    leader_address(c, &leader);
    if (!leader || leader == c->cfg.node_id) {
        op_finish(op, CLUSTER_EUNAVAILABLE, "no leader: the cluster cannot change its membership now");
        return;
    }
    struct wr w = {.len = 0};
    w_u8(&w, op->op);
    w_u32(&w, op->id);
    w_u32(&w, op->node);
    if (cluster__link_control(c, leader, w.buf, w.len) != 0)
        op_finish(op, CLUSTER_EUNAVAILABLE, "the leader (node %u) cannot be reached", leader);
}

static void removed_notice(struct cluster *c, struct wr *w)
{
    w_u8(w, CTL_REMOVED);
    w_u32(w, 0);
    w_u32(w, c->cfg.node_id);
    w_str(w, c->cfg.cluster_name ? c->cfg.cluster_name : "");
}

static void tell_removed(struct cluster *c, uint32_t node)
{
    struct wr w = {.len = 0};
    removed_notice(c, &w);
    cluster__link_control(c, node, w.buf, w.len);
}

void cluster__member_tell_removed(struct cluster *c, struct frames *f)
{
    struct wr w = {.len = 0};
    removed_notice(c, &w);
    cluster__link_reply(f, w.buf, w.len);
}

/* The op of a configuration change libraft completed, or NULL when nothing
 * waits for it any more (freed here if the cluster let it go). */
static struct member_op *change_done(struct raft_change *req)
{
    struct member_op *op = container_of(req, struct member_op, change);
    op->in_raft = false;
    if (!op->c) {
        free(op);
        return NULL;
    }
    return op->finished ? NULL : op;
}

static void on_removed(struct raft_change *req, int status)
{
    struct member_op *op = change_done(req);
    if (!op)
        return;
    if (status != 0) {
        op_finish(op, CLUSTER_EUNAVAILABLE, "removing node %u failed: %s", op->node, raft_strerror(status));
        return;
    }
    tell_removed(op->c, op->node);
    op_finish(op, 0, "node %u removed from the cluster", op->node);
}

static void do_transfer(struct member_op *op);

/* On the leader. */
static void do_remove(struct member_op *op)
{
    struct cluster *c = op->c;
    if (!member_find(c, op->node)) {
        op_finish(op, CLUSTER_ENOTFOUND, "node %u is not a member of the cluster", op->node);
        return;
    }
    if (c->raft.configuration.n == 1) {
        op_finish(op, CLUSTER_EINVAL, "node %u is the only member: it cannot be removed", op->node);
        return;
    }
    if (op->node == c->cfg.node_id) {
        /* a leader does not remove itself: the next leader does it */
        op->then_remove = true;
        op->node = 0;
        do_transfer(op);
        return;
    }
    op->in_raft = true;
    raft_index before = raft_last_index(&c->raft);
    int rc = cluster__raft_check(c, raft_remove(&c->raft, &op->change, op->node, on_removed), before,
                                 "removing a member");
    if (rc) {
        op->in_raft = false;
        op_finish(op, rc == RAFT_NOTLEADER ? CLUSTER_EUNAVAILABLE : CLUSTER_EINVAL, "removing node %u: %s",
                  op->node, raft_strerror(rc));
    }
}

static void on_transferred(struct raft_transfer *req)
{
    struct member_op *op = container_of(req, struct member_op, transfer);
    op->in_raft = false;
    struct cluster *c = op->c;
    if (!c) {
        free(op);
        return;
    }
    if (op->finished)
        return;
    uint32_t leader = 0;
    leader_address(c, &leader);
    if (op->then_remove) {
        /* the new leader removes us */
        op->op = CTL_REMOVE;
        op->node = c->cfg.node_id;
        op->then_remove = false;
        if (leader == c->cfg.node_id) {
            op_finish(op, CLUSTER_EUNAVAILABLE, "node %u could not hand leadership over before leaving",
                      op->node);
            return;
        }
        op->deadline = uv_now(c->loop) + OP_TIMEOUT_MS;
        op_forward(op);
        return;
    }
    if (leader && leader != c->cfg.node_id && (!op->node || leader == op->node))
        op_finish(op, 0, "leadership transferred to node %u", leader);
    else
        op_finish(op, CLUSTER_EUNAVAILABLE, "leadership transfer to node %u did not complete", op->node);
}

/* On the leader. */
static void do_transfer(struct member_op *op)
{
    struct cluster *c = op->c;
    if (op->node && op->node == c->cfg.node_id) {
        op_finish(op, CLUSTER_EALREADY, "node %u is already the leader", op->node);
        return;
    }
    const struct raft_server *srv = op->node ? member_find(c, op->node) : NULL;
    if (op->node && !srv) {
        op_finish(op, CLUSTER_ENOTFOUND, "node %u is not a member of the cluster", op->node);
        return;
    }
    if (srv && srv->role != RAFT_VOTER) {
        op_finish(op, CLUSTER_EINVAL, "node %u is not a voter", op->node);
        return;
    }
    op->in_raft = true;
    raft_index before = raft_last_index(&c->raft);
    int rc = cluster__raft_check(c, raft_transfer(&c->raft, &op->transfer, op->node, on_transferred), before,
                                 "transferring leadership");
    if (rc) {
        op->in_raft = false;
        op_finish(op, rc == RAFT_NOTFOUND ? CLUSTER_EINVAL : CLUSTER_EUNAVAILABLE, "leadership transfer: %s",
                  rc == RAFT_NOTFOUND ? "there is no other voter" : raft_strerror(rc));
    }
}

static void on_assigned(struct raft_change *req, int status)
{
    struct member_op *op = change_done(req);
    if (!op)
        return;
    if (status)
        op_finish(op, CLUSTER_EUNAVAILABLE, "promoting node %u to voter failed: %s", op->node,
                  raft_strerror(status));
    else
        op_finish(op, 0, "node %u (%s) joined the cluster as a voter", op->node, op->address);
}

static void do_assign(struct member_op *op)
{
    op->in_raft = true;
    raft_index before = raft_last_index(&op->c->raft);
    int rc = cluster__raft_check(op->c, raft_assign(&op->c->raft, &op->change, op->node, RAFT_VOTER, on_assigned),
                                 before, "promoting a member");
    if (rc) {
        op->in_raft = false;
        op_finish(op, CLUSTER_EUNAVAILABLE, "promoting node %u to voter: %s", op->node, raft_strerror(rc));
    }
}

static void on_added(struct raft_change *req, int status)
{
    struct member_op *op = change_done(req);
    if (!op)
        return;
    if (status) {
        op_finish(op, CLUSTER_EUNAVAILABLE, "adding node %u failed: %s", op->node, raft_strerror(status));
        return;
    }
    do_assign(op);
}

/* JOIN_CHECK and JOIN, on the node asked. */
static void on_join_request(struct cluster *c, struct frames *f, uint8_t type, uint32_t id,
                            struct bytes_reader *r)
{
    uint32_t node;
    char name[256], address[256];
    if (bytes_read_u32le(r, &node) || r_str(r, name, sizeof(name)) || r_str(r, address, sizeof(address))) {
        cluster__frames_close(f, "malformed join request");
        return;
    }
    const char *ours = c->cfg.cluster_name ? c->cfg.cluster_name : "";
    if (strcmp(name, ours) != 0) {
        answer_on(f, id, CLUSTER_EINVAL, "the node's cluster_name differs from the cluster's", NULL);
        return;
    }
    const struct raft_server *srv = member_find(c, node);
    if (srv && strcmp(srv->address, address) != 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "node id %u is taken by the member at %s", node, srv->address);
        answer_on(f, id, CLUSTER_EINVAL, msg, NULL);
        return;
    }
    if (srv && srv->role == RAFT_VOTER) {
        char msg[400];
        snprintf(msg, sizeof(msg), "node %u is already a member of cluster %s", node, ours);
        answer_on(f, id, type == CTL_JOIN_CHECK ? CLUSTER_EALREADY : 0, msg, NULL);
        return;
    }
    if (!is_leader(c)) {
        answer_on(f, id, CLUSTER_EUNAVAILABLE, "not the leader", leader_address(c, NULL));
        return;
    }
    if (type == CTL_JOIN_CHECK) {
        answer_on(f, id, 0, "may join", c->address);
        return;
    }
    list_foreach(it, &c->ops)
        if (op_of(it)->op == CTL_JOIN && op_of(it)->node == node)
            return; /* under way: the earlier request is answered */
    struct member_op *op = op_new(c, CTL_JOIN, node, NULL, NULL);
    if (!op)
        return;
    op->reply_id = id;
    op->reply = f;
    f->refs++;
    snprintf(op->address, sizeof(op->address), "%s", address);
    if (srv) {
        do_assign(op);
        return;
    }
    op->in_raft = true;
    raft_index before = raft_last_index(&c->raft);
    int rc = cluster__raft_check(c, raft_add(&c->raft, &op->change, node, address, on_added), before,
                                 "adding a member");
    if (rc) {
        op->in_raft = false;
        op_finish(op, CLUSTER_EUNAVAILABLE, "adding node %u: %s", node, raft_strerror(rc));
    }
}

/* The leader told us we were removed. */
static void on_removed_notice(struct cluster *c, uint32_t by)
{
    if (c->removed)
        return;
    c->removed = true;
    char path[1100];
    snprintf(path, sizeof(path), "%s/removed", c->cfg.data_dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "node %u was removed from cluster %s by node %u\n", c->cfg.node_id,
                c->cfg.cluster_name ? c->cfg.cluster_name : "", by);
        fclose(f);
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "node %u was removed from cluster %s by node %u: stopping", c->cfg.node_id,
             c->cfg.cluster_name ? c->cfg.cluster_name : "", by);
    CLOG(c, CLUSTER_LOG_ERROR, "cluster: %s", msg);
    /* a leave asked for here has done what it asked for: its asker hears so
     * rather than "stopping" (the answer of the leader may never arrive) */
    list_foreach(it, &c->ops) {
        struct member_op *op = op_of(it);
        if (op->op == CTL_REMOVE && op->node == c->cfg.node_id && !op->reply)
            op_finish(op, 0, "node %u left cluster %s (removed by node %u); it stops", c->cfg.node_id,
                      c->cfg.cluster_name ? c->cfg.cluster_name : "", by);
    }
    if (c->cfg.fatal)
        c->cfg.fatal(c->cfg.ctx, msg);
}

static void join_answer(struct member_op *op, int status, const char *msg, const char *leader);

void cluster__member_control(struct cluster *c, uint32_t from, struct frames *f, const uint8_t *body, size_t len)
{
    struct bytes_reader r;
    bytes_reader_init(&r, body, len, -EBADMSG);
    uint8_t type;
    uint32_t id;
    if (bytes_read_u8(&r, &type) || bytes_read_u32le(&r, &id)) {
        cluster__frames_close(f, "malformed control frame");
        return;
    }
    switch (type) {
    case CTL_JOIN_CHECK:
    case CTL_JOIN:
        on_join_request(c, f, type, id, &r);
        return;
    case CTL_REMOVE:
    case CTL_TRANSFER: {
        uint32_t node;
        if (bytes_read_u32le(&r, &node))
            break;
        if (!is_leader(c)) {
            answer_on(f, id, CLUSTER_EUNAVAILABLE, "not the leader", leader_address(c, NULL));
            return;
        }
        struct member_op *op = op_new(c, type, node, NULL, NULL);
        if (!op)
            return;
        op->reply_id = id;
        op->reply = f;
        f->refs++;
        if (type == CTL_REMOVE)
            do_remove(op);
        else
            do_transfer(op);
        return;
    }
    case CTL_REMOVED: {
        uint32_t by;
        if (bytes_read_u32le(&r, &by) || by != from)
            break;
        /* only a member may tell us we were removed (the leader that removed
         * us is still in the configuration we know): a node that holds the
         * cluster secret but is not one of ours cannot stop us */
        if (from == c->cfg.node_id || !member_find(c, from)) {
            CLOG(c, CLUSTER_LOG_WARN, "cluster: removal notice from node %u ignored: not a member", from);
            return;
        }
        on_removed_notice(c, by);
        return;
    }
    case CTL_ANSWER: {
        uint32_t status;
        char msg[300], leader[256];
        if (bytes_read_u32le(&r, &status) || r_str(&r, msg, sizeof(msg)) || r_str(&r, leader, sizeof(leader)))
            break;
        list_foreach(it, &c->ops) {
            struct member_op *op = op_of(it);
            if (op->id == id && !op->finished) {
                if (op->op == CTL_JOIN_CHECK || op->op == CTL_JOIN)
                    join_answer(op, (int)status, msg, leader);
                else
                    op_finish(op, (int)status, "%s", msg);
                return;
            }
        }
        return; /* an answer nobody waits for any more */
    }
    }
    cluster__frames_close(f, "malformed control frame");
}

/* --- join, on the joining node -------------------------------------------------------- */

static void js_frame(struct frames *f, uint8_t type, const uint8_t *body, size_t len)
{
    struct join_stream *js = container_of(f, struct join_stream, f);
    if (type == LINK_CONTROL && js->op)
        cluster__member_control(js->c, 0, f, body, len);
}

static void js_close(struct frames *f, const char *why)
{
    struct join_stream *js = container_of(f, struct join_stream, f);
    struct member_op *op = js->op;
    if (!op)
        return;
    js->op = NULL;
    op->stream = NULL;
    if (!op->finished)
        op_finish(op, CLUSTER_EUNAVAILABLE, "%s closed the connection: %s", op->address, why ? why : "");
}

static void js_free(struct frames *f)
{
    struct join_stream *js = container_of(f, struct join_stream, f);
    cluster__frames_free(f, js, js->c);
}

static void join_send(struct member_op *op)
{
    struct cluster *c = op->c;
    struct wr w = {.len = 0};
    w_u8(&w, op->op);
    w_u32(&w, op->id);
    w_u32(&w, c->cfg.node_id);
    w_str(&w, c->cfg.cluster_name ? c->cfg.cluster_name : "");
    w_str(&w, c->address);
    cluster__link_reply(op->stream, w.buf, w.len);
}

static void on_join_dialed(void *arg, uv_stream_t *stream, int status)
{
    struct member_op *op = arg;
    struct cluster *c = op->c;
    op->dialing = NULL;
    if (op->finished) {
        if (stream)
            uv_close((uv_handle_t *)stream, cluster__close_free);
        return;
    }
    if (status) {
        op_finish(op, CLUSTER_EUNAVAILABLE, "cannot reach or authenticate with %s: %s (same cluster_secret?)",
                  op->address, uv_strerror(status));
        return;
    }
    struct join_stream *js = calloc(1, sizeof(*js));
    if (!js) {
        uv_close((uv_handle_t *)stream, cluster__close_free);
        op_finish(op, -ENOMEM, "out of memory");
        return;
    }
    js->c = c;
    js->op = op;
    js->f.on_frame = js_frame;
    js->f.on_close = js_close;
    js->f.on_free = js_free;
    c->open_handles++;
    op->stream = &js->f;
    if (cluster__frames_start(&js->f, stream) != 0)
        return;
    uint8_t hello[8];
    bytes_put_u64le(hello, c->incarnation);
    cluster__frames_send(&js->f, LINK_HELLO, hello, sizeof(hello), NULL, 0);
    join_send(op);
}

static void join_dial(struct member_op *op)
{
    op->dialing = cluster__peer_dial(op->c, op->address, PEER_CH_DATA, on_join_dialed, op);
    if (!op->dialing)
        op_finish(op, CLUSTER_EINVAL, "cannot dial %s (host:port expected)", op->address);
}

static int marker_write(struct cluster *c, const char *peer, bool wipe)
{
    char path[1100], tmp[1100];
    snprintf(path, sizeof(path), "%s/join", c->cfg.data_dir);
    snprintf(tmp, sizeof(tmp), "%s/join.tmp", c->cfg.data_dir);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "%s\n%s\n", peer, wipe ? "wipe" : "keep");
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        return -EIO;
    }
    fclose(f);
    return rename(tmp, path) == 0 ? 0 : -errno;
}

static void join_answer(struct member_op *op, int status, const char *msg, const char *leader)
{
    struct cluster *c = op->c;
    if (op->stream) {
        struct join_stream *js = container_of(op->stream, struct join_stream, f);
        js->op = NULL;
        cluster__frames_close(op->stream, NULL);
        op->stream = NULL;
    }
    if (status == CLUSTER_EUNAVAILABLE && leader[0] && op->redirects < 3 && strcmp(leader, op->address) != 0) {
        op->redirects++;
        snprintf(op->address, sizeof(op->address), "%s", leader);
        if (op->op == CTL_JOIN)
            snprintf(c->join_peer, sizeof(c->join_peer), "%s", leader);
        join_dial(op);
        return;
    }
    if (op->op == CTL_JOIN) {
        if (status)
            CLOG(c, CLUSTER_LOG_WARN, "cluster: join via %s: %s", op->address, msg);
        op_finish(op, status, "%s", msg);
        return;
    }
    if (status) {
        op_finish(op, status, "%s", msg);
        return;
    }
    int rc = marker_write(c, op->address, true);
    if (rc) {
        op_finish(op, rc, "cannot write %s/join: %s", c->cfg.data_dir, strerror(-rc));
        return;
    }
    op_finish(op, 0, "node %u joins cluster %s via %s: it restarts, discards its own state and takes the cluster's",
              c->cfg.node_id, c->cfg.cluster_name ? c->cfg.cluster_name : "", op->address);
}

static bool unroutable(const char *address)
{
    return strncmp(address, "0.0.0.0:", 8) == 0 || strncmp(address, "[::]:", 5) == 0 || strncmp(address, ":::", 3) == 0;
}

int cluster_join(struct cluster *c, const char *peer, cluster_op_cb cb, void *arg)
{
    if (!c->raft_started || c->closing || c->draining)
        return CLUSTER_EUNAVAILABLE;
    struct member_op *op = op_new(c, CTL_JOIN_CHECK, 0, cb, arg);
    if (!op)
        return -ENOMEM;
    snprintf(op->address, sizeof(op->address), "%s", peer);
    const struct raft_configuration *conf = &c->raft.configuration;
    bool listed = false;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id != c->cfg.node_id && strcmp(conf->servers[i].address, peer) == 0)
            listed = true;
    if (c->joining)
        op_finish(op, CLUSTER_EALREADY, "node %u is already joining the cluster via %s", c->cfg.node_id, c->join_peer);
    else if (strcmp(peer, c->address) == 0)
        op_finish(op, CLUSTER_EALREADY, "%s is this node's own address", peer);
    else if (listed)
        op_finish(op, CLUSTER_EALREADY, "node %u is already a member of cluster %s (%u members)", c->cfg.node_id,
                  c->cfg.cluster_name ? c->cfg.cluster_name : "", conf->n);
    else if (conf->n > 1)
        op_finish(op, CLUSTER_EINVAL,
                  "node %u is a member of a cluster of %u nodes that %s is not in: remove it from that cluster first",
                  c->cfg.node_id, conf->n, peer);
    else if ((!c->cfg.secret || !c->cfg.secret[0]) && !c->tls_server)
        op_finish(op, CLUSTER_EINVAL, "cluster_secret or cluster_certfile must be set (the cluster's) to join");
    else if (unroutable(c->address))
        op_finish(op, CLUSTER_EINVAL,
                  "this node's cluster address %s cannot be dialled: give it a peer line or a cluster_bind with its own address",
                  c->address);
    else
        join_dial(op);
    return 0;
}

bool cluster_removed(const struct cluster *c) { return c->removed; }

int cluster_leave(struct cluster *c, cluster_op_cb cb, void *arg)
{
    return cluster_remove(c, c->cfg.node_id, cb, arg);
}

static int start_op(struct cluster *c, uint8_t type, uint32_t node, cluster_op_cb cb, void *arg)
{
    if (!c->raft_started || c->closing || c->draining)
        return CLUSTER_EUNAVAILABLE;
    struct member_op *op = op_new(c, type, node, cb, arg);
    if (!op)
        return -ENOMEM;
    if (c->joining)
        op_finish(op, CLUSTER_EUNAVAILABLE, "node %u is still joining the cluster", c->cfg.node_id);
    else if (is_leader(c))
        type == CTL_REMOVE ? do_remove(op) : do_transfer(op);
    else if (type == CTL_REMOVE && !member_find(c, node))
        op_finish(op, CLUSTER_ENOTFOUND, "node %u is not a member of the cluster", node);
    else
        op_forward(op);
    return 0;
}

int cluster_remove(struct cluster *c, uint32_t node, cluster_op_cb cb, void *arg)
{
    return start_op(c, CTL_REMOVE, node, cb, arg);
}

int cluster_transfer(struct cluster *c, uint32_t node, cluster_op_cb cb, void *arg)
{
    return start_op(c, CTL_TRANSFER, node, cb, arg);
}

/* --- housekeeping ------------------------------------------------------------------------ */

/* At start: a node that was removed does not start again on this directory; a
 * joining node discards its own state once (before anything opens it). */
int cluster__member_prepare(struct cluster *c, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/removed", c->cfg.data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        char why[300] = "";
        if (!fgets(why, sizeof(why), f))
            why[0] = '\0';
        fclose(f);
        why[strcspn(why, "\n")] = '\0';
        snprintf(err, errlen, "%s: this data dir is obsolete; remove %s to use the node again (and join it)", why,
                 c->cfg.data_dir);
        return -EINVAL;
    }
    snprintf(path, sizeof(path), "%s/join", c->cfg.data_dir);
    f = fopen(path, "r");
    if (!f)
        return 0;
    char peer[256] = "", mode[16] = "";
    if (!fgets(peer, sizeof(peer), f) || !fgets(mode, sizeof(mode), f)) {
        fclose(f);
        snprintf(err, errlen, "%s: unreadable (remove it to start without joining)", path);
        return -EINVAL;
    }
    fclose(f);
    peer[strcspn(peer, "\n")] = '\0';
    snprintf(c->join_peer, sizeof(c->join_peer), "%s", peer);
    c->joining = true;
    if (strncmp(mode, "wipe", 4) == 0) {
        const char *dirs[] = {"raft", "state"};
        for (int i = 0; i < 2; i++) {
            char cmd_path[1100];
            snprintf(cmd_path, sizeof(cmd_path), "%s/%s", c->cfg.data_dir, dirs[i]);
            int rc = cluster__remove_tree(cmd_path);
            if (rc) {
                snprintf(err, errlen, "discarding %s before joining: %s", cmd_path, strerror(-rc));
                return rc;
            }
        }
        int rc = marker_write(c, peer, false);
        if (rc) {
            snprintf(err, errlen, "%s: %s", path, strerror(-rc));
            return rc;
        }
        CLOG(c, CLUSTER_LOG_INFO, "cluster: discarded this node's own state to join the cluster via %s", peer);
    }
    return 0;
}

void cluster__member_tick(struct cluster *c)
{
    uint64_t now = uv_now(c->loop);
    list_foreach(it, &c->ops) {
        struct member_op *op = op_of(it);
        if (!op->finished && !op->in_raft && now >= op->deadline)
            op_finish(op, CLUSTER_EUNAVAILABLE, "no answer in %u s", OP_TIMEOUT_MS / 1000);
    }
    ops_reap(c, false);
    if (!c->raft_started || c->removed)
        return;
    const struct raft_server *self = member_find(c, c->cfg.node_id);
    if (c->joining) {
        if (self && self->role == RAFT_VOTER) {
            char path[1100];
            snprintf(path, sizeof(path), "%s/join", c->cfg.data_dir);
            unlink(path);
            c->joining = false;
            CLOG(c, CLUSTER_LOG_INFO, "cluster: node %u joined cluster %s (%u members)", c->cfg.node_id,
                 c->cfg.cluster_name ? c->cfg.cluster_name : "", c->raft.configuration.n);
            return;
        }
        bool under_way = false;
        list_foreach(it, &c->ops)
            under_way |= op_of(it)->op == CTL_JOIN;
        if (!under_way && now >= c->next_join) {
            c->next_join = now + JOIN_RETRY_MS;
            struct member_op *op = op_new(c, CTL_JOIN, c->cfg.node_id, NULL, NULL);
            if (op) {
                snprintf(op->address, sizeof(op->address), "%s", c->join_peer);
                join_dial(op);
            }
        }
        return;
    }
    if (c->raft.configuration.n && !self) {
        on_removed_notice(c, 0);
    }
}

void cluster__member_close_all(struct cluster *c) { ops_reap(c, true); }
