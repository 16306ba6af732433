/* link: the data links between members. Each node dials every other member of
 * the Raft configuration on channel DATA and keeps that stream (its outgoing
 * link) for what it sends; what others send arrives on the streams they dialed
 * (incoming links), and is acknowledged there.
 *
 * Frames (frame.c; integers little-endian):
 *   HELLO    dialer -> acceptor  u64 the dialer's incarnation (random per start; first frame)
 *   MSG      dialer -> acceptor  u64 sequence, payload (cluster_send)
 *   ACK      acceptor -> dialer  u64 highest sequence handed up
 *   STATUS   dialer -> acceptor  u8 raft state, u64 term, commit index, applied index
 *   CONTROL  both ways           membership requests and answers (member.c)
 *
 * Happy path: cluster_send numbers the message (per destination, from 1),
 * keeps it until acknowledged, and the messages of one loop turn go out in one
 * write. The receiver hands each message up once, in order, and acknowledges
 * the highest sequence after each read.
 * Failure modes: the outgoing stream breaks: it is redialled every
 * LINK_REDIAL_MS and every unacknowledged message is written again, in order;
 * the HELLO carries the sender's incarnation (random at every start), so the
 * receiver knows a sequence it already handed up from a resend (skipped) from
 * a restarted sender (counted anew). No link for node_timeout_ms: the node is
 * given up on (also when its link is up but nothing came from it for that
 * long: it sends STATUS every LINK_STATUS_MS), its unacknowledged messages
 * complete with CLUSTER_EUNAVAILABLE (they are kept for LINK_KEEP_MS and
 * resent if it comes back) and new ones are refused until a link is up again. A receiver that
 * restarted has forgotten what it handed up: messages resent to it are handed
 * up again (its sessions were lost with the restart). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LINK_REDIAL_MS 200
#define LINK_STATUS_MS 500
#define LINK_MAX_UNACKED (256u << 20) /* bytes waiting for one node's acknowledgement */
#define LINK_MAX_IOV 512
#define LINK_KEEP_MS 30000 /* messages for a node given up on are kept this long for a resend */

struct link_msg {
    struct list link;         /* in l->msgs */
    uint64_t seq;
    cluster_sent_cb done;
    void *arg;
    int writes;               /* writes in flight that point into data */
    bool acked;               /* completed: freed when writes reaches 0 */
    uint32_t len;             /* of data, a whole frame */
    uint8_t data[];
};

struct link_out {
    struct frames f;
    struct link *l;           /* NULL once the link is gone */
    struct cluster *c;
};

/* What was handed up from one sender incarnation (kept apart from struct
 * link: messages may arrive before this node's tick made the sender's link,
 * and from a node no longer in the configuration). */
struct link_src {
    struct list link;         /* in c->link_srcs */
    uint32_t node;
    uint64_t epoch;           /* the sender's incarnation (random per start) */
    uint64_t seq;             /* highest sequence handed up */
};

struct link_in {
    struct frames f;
    struct list link;         /* in c->link_ins */
    struct cluster *c;
    uint32_t node;
    bool hello;
    bool ack_due;
    bool told_removed;
    struct link_src *src;     /* the sender's, from its HELLO */
};

struct link {
    struct list link;         /* in c->links */
    struct cluster *c;
    uint32_t node;
    char address[128];
    bool member;              /* in the current configuration */
    bool removed;             /* was a member, is not any more */
    struct link_out *out;
    struct peer_hs *dialing;
    uint64_t next_dial;
    uint64_t down_since;      /* loop ms the outgoing link went (or was first missing); 0 while up */
    uint64_t up_since;        /* loop ms the outgoing link came up */
    bool alive;
    uint64_t next_seq;
    struct list msgs;         /* struct link_msg not yet acknowledged, in sequence order */
    struct link_msg *unsent;  /* first one not yet written on the current stream, or NULL */
    size_t unacked_bytes;
    uint64_t next_status;
    /* what arrives from this node */
    uint64_t last_heard;
    bool has_status;
    int state;
    uint64_t term, commit, applied;
};

struct link_write {
    unsigned n;
    struct link_msg *msgs[LINK_MAX_IOV];
};

#define link_of(it) list_entry(it, struct link, link)

struct link *cluster__link_find(struct cluster *c, uint32_t node)
{
    list_foreach(it, &c->links)
        if (link_of(it)->node == node)
            return link_of(it);
    return NULL;
}

/* The message after m on l, or NULL. */
static struct link_msg *msg_next(struct link *l, struct link_msg *m)
{
    return m->link.next == &l->msgs ? NULL : list_entry(m->link.next, struct link_msg, link);
}

/* The oldest message not acknowledged, or NULL. */
static struct link_msg *msg_first(struct link *l)
{
    struct list *it = list_first(&l->msgs);
    return it ? list_entry(it, struct link_msg, link) : NULL;
}

static void msg_free_if_done(struct link_msg *m)
{
    if (m->acked && m->writes == 0)
        free(m);
}

/* Completes the callbacks of every message waiting on l with status; the
 * messages stay (and are resent if the node comes back) until purged. */
static void complete_all(struct link *l, int status)
{
    list_foreach(it, &l->msgs) {
        struct link_msg *m = list_entry(it, struct link_msg, link);
        if (m->done) {
            cluster_sent_cb done = m->done;
            m->done = NULL;
            done(m->arg, status);
        }
    }
}

/* Completes and frees every message still waiting on l. */
static void fail_all(struct link *l, int status)
{
    struct list gone;
    list_init(&gone);
    list_splice_back(&gone, &l->msgs);
    l->unsent = NULL;
    l->unacked_bytes = 0;
    list_foreach_safe(it, &gone) {
        struct link_msg *m = list_entry(it, struct link_msg, link);
        list_remove(it);
        m->acked = true;
        if (m->done)
            m->done(m->arg, status);
        msg_free_if_done(m);
    }
}

static void on_acked(struct link *l, uint64_t seq)
{
    struct link_msg *m;
    while ((m = msg_first(l)) && m->seq <= seq) {
        if (l->unsent == m)
            l->unsent = msg_next(l, m);
        list_remove(&m->link);
        l->unacked_bytes -= m->len;
        m->acked = true;
        if (m->done)
            m->done(m->arg, 0);
        msg_free_if_done(m);
    }
}

/* --- writing ------------------------------------------------------------------- */

static void on_link_written(void *arg)
{
    struct link_write *w = arg;
    for (unsigned i = 0; i < w->n; i++) {
        w->msgs[i]->writes--;
        msg_free_if_done(w->msgs[i]);
    }
    free(w);
}

static void flush_link(struct link *l)
{
    while (l->out && !l->out->f.closed && l->unsent) {
        struct link_write *w = malloc(sizeof(*w));
        uv_buf_t bufs[LINK_MAX_IOV];
        if (!w)
            return; /* the next flush tries again */
        w->n = 0;
        struct link_msg *m = l->unsent;
        while (m && w->n < LINK_MAX_IOV) {
            bufs[w->n] = uv_buf_init((char *)m->data, m->len);
            w->msgs[w->n++] = m;
            m->writes++;
            m = msg_next(l, m);
        }
        if (cluster__frames_write(&l->out->f, bufs, w->n, on_link_written, w) != 0) {
            on_link_written(w); /* the stream is closing: everything is resent on the next one */
            return;
        }
        l->unsent = m;
    }
}

static void on_flush(uv_idle_t *h)
{
    struct cluster *c = h->data;
    uv_idle_stop(h);
    c->link_flush_active = false;
    list_foreach(it, &c->links)
        flush_link(link_of(it));
}

static void flush_soon(struct cluster *c)
{
    if (!c->link_flush_active && !c->closing) {
        c->link_flush_active = true;
        uv_idle_start(&c->link_flush, on_flush);
    }
}

int cluster_send(struct cluster *c, uint32_t node, const struct iovec *parts, int nparts, cluster_sent_cb done,
                 void *arg)
{
    if (c->closing || c->draining)
        return CLUSTER_ESHUTDOWN;
    struct link *l = cluster__link_find(c, node);
    if (!l || !l->member)
        return CLUSTER_ENOTFOUND;
    if (!l->alive)
        return CLUSTER_EUNAVAILABLE;
    size_t len = 0;
    for (int i = 0; i < nparts; i++)
        len += parts[i].iov_len;
    if (1 + 8 + len > FWD_MAX_FRAME || l->unacked_bytes + len > LINK_MAX_UNACKED)
        return -ENOBUFS;
    struct link_msg *m = malloc(sizeof(*m) + 4 + 1 + 8 + len);
    if (!m)
        return -ENOMEM;
    m->seq = ++l->next_seq;
    m->done = done;
    m->arg = arg;
    m->writes = 0;
    m->acked = false;
    m->len = (uint32_t)(4 + 1 + 8 + len);
    uint8_t *p = bytes_put_u32le(m->data, (uint32_t)(1 + 8 + len));
    p = bytes_put_u8(p, LINK_MSG);
    p = bytes_put_u64le(p, m->seq);
    for (int i = 0; i < nparts; i++)
        p = bytes_put_mem(p, parts[i].iov_base, parts[i].iov_len);
    list_push_back(&l->msgs, &m->link);
    if (!l->unsent)
        l->unsent = m;
    l->unacked_bytes += m->len;
    if (l->out)
        flush_soon(c);
    return 0;
}

size_t cluster_backlog(struct cluster *c, uint32_t node)
{
    struct link *l = cluster__link_find(c, node);
    return l ? l->unacked_bytes : 0;
}

bool cluster_node_member(struct cluster *c, uint32_t node)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == node)
            return true;
    return false;
}

bool cluster_node_alive(struct cluster *c, uint32_t node)
{
    if (node == c->cfg.node_id)
        return true;
    struct link *l = cluster__link_find(c, node);
    return l && l->member && l->alive;
}

/* --- the outgoing link ------------------------------------------------------------ */

static void out_frame(struct frames *f, uint8_t type, const uint8_t *body, size_t len)
{
    struct link_out *o = container_of(f, struct link_out, f);
    struct link *l = o->l;
    if (!l)
        return;
    if (type == LINK_ACK && len == 8) {
        l->last_heard = uv_now(o->c->loop);
        on_acked(l, bytes_get_u64le(body));
    } else if (type == LINK_CONTROL) {
        cluster__member_control(o->c, l->node, f, body, len);
    } else {
        cluster__frames_close(f, "unexpected frame on a data link");
    }
}

static void out_close(struct frames *f, const char *why)
{
    struct link_out *o = container_of(f, struct link_out, f);
    struct link *l = o->l;
    if (!l)
        return;
    o->l = NULL;
    l->out = NULL;
    l->unsent = msg_first(l); /* everything not acknowledged goes again on the next link */
    l->down_since = uv_now(o->c->loop);
    l->next_dial = l->down_since + LINK_REDIAL_MS;
    if (why)
        CLOG(o->c, CLUSTER_LOG_INFO, "cluster: data link to node %u closed: %s", l->node, why);
}

static void out_free(struct frames *f)
{
    struct link_out *o = container_of(f, struct link_out, f);
    cluster__frames_free(f, o, o->c);
}

static void send_status(struct link *l)
{
    struct cluster *c = l->c;
    struct cluster_status st;
    cluster_status_get(c, &st);
    uint8_t body[25];
    uint8_t *p = bytes_put_u8(body, (uint8_t)st.role);
    p = bytes_put_u64le(p, st.term);
    p = bytes_put_u64le(p, st.commit_index);
    bytes_put_u64le(p, st.applied_index);
    cluster__frames_send(&l->out->f, LINK_STATUS, body, sizeof(body), NULL, 0);
    /* at least three per node_timeout, so that an idle member is never silent that long */
    uint64_t every = c->cfg.node_timeout_ms / 3 < LINK_STATUS_MS ? c->cfg.node_timeout_ms / 3 : LINK_STATUS_MS;
    l->next_status = uv_now(c->loop) + (every ? every : 1);
}

static void on_dialed(void *arg, uv_stream_t *stream, int status)
{
    struct link *l = arg;
    struct cluster *c = l->c;
    l->dialing = NULL;
    if (status) {
        l->next_dial = uv_now(c->loop) + LINK_REDIAL_MS;
        return;
    }
    if (c->closing || !l->member) {
        uv_close((uv_handle_t *)stream, cluster__close_free);
        return;
    }
    struct link_out *o = calloc(1, sizeof(*o));
    if (!o) {
        uv_close((uv_handle_t *)stream, cluster__close_free);
        l->next_dial = uv_now(c->loop) + LINK_REDIAL_MS;
        return;
    }
    o->c = c;
    o->l = l;
    o->f.on_frame = out_frame;
    o->f.on_close = out_close;
    o->f.on_free = out_free;
    c->open_handles++;
    l->out = o;
    if (cluster__frames_start(&o->f, stream) != 0)
        return; /* out_close ran */
    uint8_t hello[8];
    bytes_put_u64le(hello, c->incarnation);
    cluster__frames_send(&o->f, LINK_HELLO, hello, sizeof(hello), NULL, 0);
    if (!l->out)
        return;
    send_status(l);
    l->down_since = 0;
    l->up_since = uv_now(c->loop);
    l->unsent = msg_first(l);
    CLOG(c, CLUSTER_LOG_DEBUG, "cluster: data link to node %u up", l->node);
    if (!l->alive) {
        l->alive = true;
        CLOG(c, CLUSTER_LOG_INFO, "cluster: node %u is reachable again", l->node);
        if (c->cfg.node_event)
            c->cfg.node_event(c->cfg.ctx, l->node, true);
    }
    flush_soon(c);
}

/* --- incoming links ------------------------------------------------------------------ */

/* What was handed up from node so far (a new record when there is none);
 * NULL when memory is short. */
static struct link_src *src_get(struct cluster *c, uint32_t node, uint64_t epoch)
{
    list_foreach(it, &c->link_srcs) {
        struct link_src *src = list_entry(it, struct link_src, link);
        if (src->node == node)
            return src;
    }
    struct link_src *src = calloc(1, sizeof(*src));
    if (!src)
        return NULL;
    src->node = node;
    src->epoch = epoch;
    list_push_front(&c->link_srcs, &src->link);
    return src;
}

/* The first frame of an incoming link: the sender's incarnation. */
static void in_hello(struct link_in *in, uint8_t type, const uint8_t *body, size_t len)
{
    if (type != LINK_HELLO || len != 8) {
        cluster__frames_close(&in->f, "data link without HELLO");
        return;
    }
    in->hello = true;
    uint64_t epoch = bytes_get_u64le(body);
    in->src = src_get(in->c, in->node, epoch);
    if (!in->src) {
        cluster__frames_close(&in->f, "out of memory");
        return;
    }
    if (in->src->epoch != epoch) {
        in->src->epoch = epoch; /* the sender restarted: its sequences start anew */
        in->src->seq = 0;
    }
    in->ack_due = true; /* tells the sender what it need not resend */
}

static void in_msg(struct link_in *in, const uint8_t *body, size_t len)
{
    struct cluster *c = in->c;
    if (len < 8) {
        cluster__frames_close(&in->f, "malformed MSG");
        return;
    }
    uint64_t seq = bytes_get_u64le(body);
    if (c->closing || c->draining)
        return; /* not handed up: not acknowledged, resent to whoever serves next */
    in->ack_due = true;
    if (seq <= in->src->seq)
        return; /* a resend of what was handed up already */
    in->src->seq = seq;
    if (c->cfg.receive)
        c->cfg.receive(c->cfg.ctx, in->node, body + 8, len - 8);
}

/* The sender's raft state, for cluster_members_get; l is its link, if any. */
static void in_status(struct link_in *in, struct link *l, const uint8_t *body, size_t len)
{
    struct cluster *c = in->c;
    if (len != 25) {
        cluster__frames_close(&in->f, "malformed STATUS");
        return;
    }
    if ((!l || !l->member) && !in->told_removed && raft_state(&c->raft) == RAFT_LEADER &&
        c->raft.configuration.n) {
        /* a node that is no member (removed while it was away) still
         * talks to us: the leader tells it */
        in->told_removed = true;
        cluster__member_tell_removed(c, &in->f);
    }
    if (l && l->member) {
        l->has_status = true;
        l->state = body[0];
        l->term = bytes_get_u64le(body + 1);
        l->commit = bytes_get_u64le(body + 9);
        l->applied = bytes_get_u64le(body + 17);
    }
}

static void in_frame(struct frames *f, uint8_t type, const uint8_t *body, size_t len)
{
    struct link_in *in = container_of(f, struct link_in, f);
    struct cluster *c = in->c;
    struct link *l = cluster__link_find(c, in->node);
    if (l)
        l->last_heard = uv_now(c->loop);
    if (!in->hello) {
        in_hello(in, type, body, len);
        return;
    }
    switch (type) {
    case LINK_MSG:
        in_msg(in, body, len);
        return;
    case LINK_STATUS:
        in_status(in, l, body, len);
        return;
    case LINK_CONTROL:
        cluster__member_control(c, in->node, f, body, len);
        return;
    default:
        cluster__frames_close(f, "unexpected frame on a data link");
    }
}

static void in_batch_end(struct frames *f)
{
    struct link_in *in = container_of(f, struct link_in, f);
    if (!in->ack_due)
        return;
    in->ack_due = false;
    uint8_t body[8];
    bytes_put_u64le(body, in->src->seq);
    cluster__frames_send(f, LINK_ACK, body, sizeof(body), NULL, 0);
}

static void in_close(struct frames *f, const char *why)
{
    struct link_in *in = container_of(f, struct link_in, f);
    (void)why;
    list_remove(&in->link);
}

static void in_free(struct frames *f)
{
    struct link_in *in = container_of(f, struct link_in, f);
    cluster__frames_free(f, in, in->c);
}

struct frames *cluster__link_accept(struct cluster *c, uint32_t node_id, uv_stream_t *stream)
{
    struct link_in *in = calloc(1, sizeof(*in));
    if (!in) {
        if (stream)
            uv_close((uv_handle_t *)stream, cluster__close_free);
        return NULL;
    }
    in->c = c;
    in->node = node_id;
    in->f.on_frame = in_frame;
    in->f.on_batch_end = in_batch_end;
    in->f.on_close = in_close;
    in->f.on_free = in_free;
    c->open_handles++;
    list_push_front(&c->link_ins, &in->link);
    return cluster__frames_start(&in->f, stream) == 0 ? &in->f : NULL;
}

/* --- following the configuration, liveness ------------------------------------------ */

static struct link *link_new(struct cluster *c, uint32_t node)
{
    struct link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->c = c;
    l->node = node;
    l->alive = true;
    l->down_since = uv_now(c->loop);
    l->state = -1;
    list_init(&l->msgs);
    list_push_front(&c->links, &l->link);
    return l;
}

static void link_drop(struct link *l, int status)
{
    l->member = false;
    if (l->dialing) {
        cluster__peer_cancel(l->dialing); /* on_dialed runs now */
        l->dialing = NULL;
    }
    if (l->out)
        cluster__frames_close(&l->out->f, NULL);
    fail_all(l, status);
}

/* The node is given up on: what waits for it completes now (the messages are
 * kept for LINK_KEEP_MS and resent should it come back). */
static void give_up(struct link *l, const char *how)
{
    struct cluster *c = l->c;
    l->alive = false;
    CLOG(c, CLUSTER_LOG_WARN, "cluster: node %u %s for %u ms: given up on", l->node, how, c->cfg.node_timeout_ms);
    complete_all(l, CLUSTER_EUNAVAILABLE);
    if (c->cfg.node_event)
        c->cfg.node_event(c->cfg.ctx, l->node, false);
}

void cluster__link_tick(struct cluster *c)
{
    uint64_t now = uv_now(c->loop);
    const struct raft_configuration *conf = &c->raft.configuration;
    list_foreach(it, &c->links)
        link_of(it)->member = false;
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *srv = &conf->servers[i];
        if (srv->id == c->cfg.node_id)
            continue;
        struct link *l = cluster__link_find(c, (uint32_t)srv->id);
        if (!l && !(l = link_new(c, (uint32_t)srv->id)))
            continue;
        if (l->removed) {
            /* added again: reported alive (node_event) once its link is up */
            l->removed = false;
            l->down_since = now;
        }
        if (strcmp(l->address, srv->address) != 0) {
            snprintf(l->address, sizeof(l->address), "%s", srv->address);
            if (l->out)
                cluster__frames_close(&l->out->f, "its address changed");
        }
        l->member = true;
    }
    uint32_t timeout = c->cfg.node_timeout_ms;
    list_foreach(it, &c->links) {
        struct link *l = link_of(it);
        if (!l->member) {
            if (l->out || l->dialing || !list_empty(&l->msgs))
                link_drop(l, CLUSTER_EUNAVAILABLE);
            if (!l->removed) {
                /* removed from the configuration: lost for good */
                l->removed = true;
                l->alive = false;
                if (c->cfg.node_event)
                    c->cfg.node_event(c->cfg.ctx, l->node, false);
            }
            continue;
        }
        if (!l->out && !l->dialing && now >= l->next_dial)
            l->dialing = cluster__peer_dial(c, l->address, PEER_CH_DATA, on_dialed, l);
        if (l->out && now >= l->next_status)
            send_status(l);
        uint64_t heard = l->last_heard > l->up_since ? l->last_heard : l->up_since;
        if (l->out && l->alive && now - heard >= timeout) {
            /* connected but silent (stopped, overloaded, a one-way cut) */
            cluster__frames_close(&l->out->f, "nothing heard from it");
            give_up(l, "silent");
        } else if (!l->out && l->alive && l->down_since && now - l->down_since >= timeout) {
            give_up(l, "unreachable");
        }
        if (!l->alive && !list_empty(&l->msgs) && l->down_since && now - l->down_since >= LINK_KEEP_MS)
            fail_all(l, CLUSTER_EUNAVAILABLE);
    }
}

int cluster__link_control(struct cluster *c, uint32_t node, const void *body, size_t len)
{
    struct link *l = cluster__link_find(c, node);
    if (!l || !l->out)
        return CLUSTER_EUNAVAILABLE;
    return cluster__frames_send(&l->out->f, LINK_CONTROL, body, len, NULL, 0);
}

int cluster__link_reply(struct frames *f, const void *body, size_t len)
{
    return cluster__frames_send(f, LINK_CONTROL, body, len, NULL, 0);
}

void cluster__link_close_all(struct cluster *c)
{
    list_foreach(it, &c->links)
        link_drop(link_of(it), CLUSTER_ESHUTDOWN);
    while (!list_empty(&c->link_ins))
        cluster__frames_close(&list_entry(list_first(&c->link_ins), struct link_in, link)->f, NULL);
    list_foreach_safe(it, &c->link_srcs)
        free(list_entry(it, struct link_src, link));
    list_init(&c->link_srcs);
    list_foreach_safe(it, &c->links)
        free(link_of(it));
    list_init(&c->links);
}

int cluster_members_get(struct cluster *c, struct cluster_member *out, int max)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    uint64_t now = uv_now(c->loop);
    struct cluster_status st;
    cluster_status_get(c, &st);
    int n = 0;
    for (unsigned i = 0; i < conf->n; i++, n++) {
        if (n >= max)
            continue;
        const struct raft_server *srv = &conf->servers[i];
        struct cluster_member *m = &out[n];
        memset(m, 0, sizeof(*m));
        m->id = (uint32_t)srv->id;
        snprintf(m->address, sizeof(m->address), "%s", srv->address);
        m->role = srv->role == RAFT_VOTER ? 0 : srv->role == RAFT_STANDBY ? 1 : 2;
        if (srv->id == c->cfg.node_id) {
            m->self = true;
            m->alive = true;
            m->state = st.role;
            m->term = st.term;
            m->commit_index = st.commit_index;
            m->applied_index = st.applied_index;
            continue;
        }
        struct link *l = cluster__link_find(c, m->id);
        m->state = -1;
        if (!l)
            continue;
        m->alive = l->alive && l->member;
        m->last_seen_ms = l->last_heard ? now - l->last_heard : UINT64_MAX;
        if (l->has_status) {
            m->state = l->state;
            m->term = l->term;
            m->commit_index = l->commit;
            m->applied_index = l->applied;
        }
    }
    return n;
}
