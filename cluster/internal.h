/* cluster/internal.h: private declarations of the cluster module (the Raft
 * node, the peer links, the state machine glue). Only cluster/ includes raft.h. */
#ifndef STARLING_CLUSTER_INTERNAL_H
#define STARLING_CLUSTER_INTERNAL_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "acceptor.h"
#include "buf.h"
#include "bytes.h"
#include "cluster.h"
#include "list.h"
#include "store.h"

#define CLUSTER_LOG_ERROR 0
#define CLUSTER_LOG_WARN 1
#define CLUSTER_LOG_INFO 2
#define CLUSTER_LOG_DEBUG 3

#define CLOG(c, level, ...) ((c)->cfg.log ? (c)->cfg.log((c)->cfg.ctx, level, __VA_ARGS__) : (void)0)

/* --- the handshake MAC (peer.c, OpenSSL) ---------------------------------- */

/* HMAC-SHA-256 of the concatenation of parts (borrowed). */
void cluster__hmac_sha256(const void *key, size_t key_len, const struct iovec *parts, size_t nparts,
                          uint8_t out[32]);
/* Constant-time comparison of two MACs. */
bool cluster__mac_equal(const uint8_t a[32], const uint8_t b[32]);

/* --- log entries ------------------------------------------------------------ */

/* Every log entry starts with this header (24 bytes, little-endian): "STLE",
 * u16 version, u16 command count, u32 origin node, u32 reserved, u64 batch
 * sequence of the origin node. The origin recognises its own batch when it
 * applies the entry and completes the proposers' callbacks. */
#define CLUSTER_ENTRY_MAGIC 0x454c5453u /* "STLE" */
#define CLUSTER_ENTRY_VERSION 1
#define CLUSTER_ENTRY_HEADER 24

/* --- peer links (peer.c) ------------------------------------------------------ */

enum peer_channel {
    PEER_CH_RAFT = 1,    /* handed to libraft's uv backend */
    PEER_CH_FORWARD = 2, /* proposals from a follower to the leader */
    PEER_CH_DATA = 3,    /* the data link of the dialer to the acceptor (link.c) */
};

/* --- framed streams (frame.c) ------------------------------------------------ */

struct frames {
    uv_stream_t *stream;      /* raft_malloc'd, freed when closed */
    struct buf rbuf;          /* bytes read, not yet a whole frame */
    bool closed;
    int refs;                 /* the stream, writes in flight, the owner's own */
    void (*on_frame)(struct frames *f, uint8_t type, const uint8_t *body, size_t len);
    void (*on_batch_end)(struct frames *f);        /* may be NULL: after the frames of one read */
    void (*on_close)(struct frames *f, const char *why); /* may be NULL */
    void (*on_free)(struct frames *f);             /* the last reference is gone */
};
/* stream NULL: a connection without a socket (the fuzzer's), fed with
 * cluster__frames_feed; what it writes is dropped. */
int cluster__frames_start(struct frames *f, uv_stream_t *stream);
/* What a read of data (borrowed) would do on a stream with no socket. */
void cluster__frames_feed(struct frames *f, const uint8_t *data, size_t len);
/* Copies the frame (type, head, body) and writes it. */
int cluster__frames_send(struct frames *f, uint8_t type, const void *head, size_t head_len, const void *body,
                         size_t body_len);
/* Writes bufs (borrowed until done runs; they hold whole frames). */
int cluster__frames_write(struct frames *f, const uv_buf_t *bufs, unsigned n, void (*done)(void *arg), void *arg);
void cluster__frames_close(struct frames *f, const char *why);
void cluster__frames_unref(struct frames *f);
/* From on_free: frees the read buffer and owner (the struct that embeds f),
 * and counts one handle of c closed. */
void cluster__frames_free(struct frames *f, void *owner, struct cluster *c);

/* --- data links (link.c) ------------------------------------------------------ */

struct link;
/* An incoming, authenticated data-link stream (NULL: one with no socket, see
 * cluster__frames_start); returns its frames, or NULL when out of memory
 * (the stream is then closed). */
struct frames *cluster__link_accept(struct cluster *c, uint32_t node_id, uv_stream_t *stream);
/* Follows the Raft configuration: links to new members, none to removed ones;
 * redials, liveness, status reports. */
void cluster__link_tick(struct cluster *c);
void cluster__link_close_all(struct cluster *c);
struct link *cluster__link_find(struct cluster *c, uint32_t node);
/* Sends a cluster-internal frame (membership requests) on node's outgoing link. */
int cluster__link_control(struct cluster *c, uint32_t node, const void *body, size_t len);
/* Answers a control frame on the stream it came on. */
int cluster__link_reply(struct frames *f, const void *body, size_t len);
/* A control frame from node, on stream f (member.c). */
void cluster__member_control(struct cluster *c, uint32_t from, struct frames *f, const uint8_t *body, size_t len);
/* Tells the node at the other end of f that it is no member (member.c). */
void cluster__member_tell_removed(struct cluster *c, struct frames *f);
/* Membership housekeeping, every tick (member.c). */
void cluster__member_tick(struct cluster *c);
/* Runs the next tick on the next turn of the loop rather than up to a tick
 * later (cluster.c): a member operation finished, and the tick tells its
 * local asker (the admin API). Only then: an early tick on a leader that
 * answers a peer's removal of itself (member.c's then_remove) broke that
 * hand-over (test_member's a_follower_removes_the_leader). */
void cluster__tick_soon(struct cluster *c);
void cluster__member_close_all(struct cluster *c);
/* At start, before the store and the log open (DIR/removed, DIR/join). */
int cluster__member_prepare(struct cluster *c, char *err, size_t errlen);

/* frame types of the data links (link.c) */
#define LINK_HELLO 1
#define LINK_MSG 2
#define LINK_ACK 3
#define LINK_STATUS 4
#define LINK_CONTROL 5

struct peer_hs;

/* Completion of an outgoing handshake: status 0 and an authenticated stream
 * (allocated with raft_malloc; the receiver closes it and frees it with
 * raft_free in the close callback), or a negative error and stream NULL. */
typedef void (*peer_dial_cb)(void *arg, uv_stream_t *stream, int status);

int cluster__peer_listen(struct cluster *c, char *err, size_t errlen);
/* Dials address for channel; cb runs exactly once (also with UV_ECANCELED when
 * the cluster closes). Returns the handshake (to cancel) or NULL on failure
 * (then cb does not run). */
struct peer_hs *cluster__peer_dial(struct cluster *c, const char *address, uint8_t channel, peer_dial_cb cb,
                                   void *arg);
void cluster__peer_cancel(struct peer_hs *hs);
void cluster__peer_close_all(struct cluster *c);
/* The TLS contexts of the peer links from cfg (none when no cluster_certfile):
 * 0, or a negative error with one line naming the key, the file and the reason. */
int cluster__peer_tls_setup(struct cluster *c, char *err, size_t errlen);

/* --- TLS on the peer links (tunnel.c) ------------------------------------------- */

struct tunnel;

/* The one buffer all tunnels of a node read into: a read is consumed within
 * its callback, and libuv runs a stream's allocation and read callbacks back
 * to back. */
#define CLUSTER_TUNNEL_READ 65536

/* How a tunnel reports to the handshake that started it: once with inner (a
 * raft_malloc'd uv_pipe_t carrying the plaintext, transferred to the callee)
 * when the TLS handshake finished, or with inner NULL and why (borrowed, for
 * the log) when the link failed, whichever comes first and while attached. */
typedef void (*tunnel_cb)(void *arg, uv_stream_t *inner, const char *why);

/* Runs TLS (server side when server) on tcp (raft_malloc'd, transferred: the
 * tunnel closes and frees it) and pumps between it and the plaintext end it
 * hands to cb. where (copied) names the peer in log lines. Returns the
 * tunnel, or NULL (tcp closed, cb not called) with *rc set. */
struct tunnel *cluster__tunnel_start(struct cluster *c, uv_tcp_t *tcp, bool server, const char *where, tunnel_cb cb,
                                     void *arg, int *rc);
/* No more callbacks. A tunnel whose handshake has not finished closes; an
 * established one lives until either end closes. */
void cluster__tunnel_detach(struct tunnel *t);
/* The raft_uv_transport implementation over the authenticated links. */
void cluster__transport_setup(struct cluster *c);
/* An incoming, authenticated forward-channel stream; as cluster__link_accept.
 * On a stream of NULL proposals are checked, and their commands applied in a
 * store transaction that is rolled back (cluster__fsm_dry_run), but never
 * appended. */
struct frames *cluster__forward_accept(struct cluster *c, uint32_t node_id, uv_stream_t *stream);

/* --- forwarding of proposals (forward.c) --------------------------------------- */

struct batch;
struct fwd_conn;

/* Frames on a forward link: u32 length of what follows, u8 type, body.
 *   PROPOSE  u64 batch sequence, then the whole log entry
 *   REFUSED  u64 batch sequence, i32 reason (the leader could not append it) */
#define FWD_PROPOSE 1
#define FWD_REFUSED 2
#define FWD_MAX_FRAME (64u << 20)

void cluster__forward_tick(struct cluster *c);
int cluster__forward_send(struct cluster *c, struct batch *bt);
void cluster__forward_close_all(struct cluster *c);

/* --- the node (cluster.c) and its proposals (batch.c) ---------------------------- */

struct batch {
    struct list item;        /* in c->pending */
    uint64_t seq;
    uint64_t deadline;       /* loop time (ms) after which it fails */
    uint8_t *entry;          /* the encoded entry while not yet handed to raft/the leader */
    size_t entry_len;
    uint32_t count;          /* commands, and waiters */
    struct cluster_waiter *waiters;
    int state;               /* enum batch_state */
    struct fwd_conn *link;   /* when sent to the leader */
    struct apply_req *areq;  /* when appended here */
    uint64_t closed_ns;      /* uv_hrtime when it was sealed, for the commit latency */
};

enum batch_state { BATCH_QUEUED, BATCH_APPENDING, BATCH_FORWARDED };

struct cluster_waiter {
    cluster_done_cb done;
    void *arg;
};

struct apply_req {
    struct raft_apply req;
    struct cluster *c;
    struct batch *batch;      /* local batch, NULL if it timed out or was forwarded to us */
};

struct cluster {
    uv_loop_t *loop;
    struct cluster_config cfg;
    char address[128];         /* this node's raft address */
    int lock_fd;               /* flock on DIR/lock, held while the node runs */
    uint32_t epoch;            /* from node.id, raised at every start */
    uint32_t batch_seq;        /* batch sequences of this epoch */
    uint32_t gen_seq;          /* generations of this epoch */

    struct store *store;
    struct raft raft;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft_uv_transport transport;
    raft_uv_accept_cb raft_accept;
    bool io_inited, raft_inited;
    bool raft_started;
    struct store_snap *snap;   /* the snapshot being written */
    bool closing;
    bool draining;             /* closing, after what was proposed commits (or a second) */
    uint64_t drain_deadline;
    bool fatal;
    char fatal_msg[768];       /* why it stopped: cluster_run's error when it happened at start */

    /* proposals */
    uv_idle_t flush;           /* turns the commands of a loop turn into one entry */
    struct buf batch;   /* encoded commands (after the entry header room) */
    uint32_t batch_count;
    struct cluster_waiter *waiters;
    uint32_t waiter_count, waiter_cap;
    struct list pending;       /* sent or queued batches (struct batch), oldest first */
    uint32_t appending;        /* batches of pending in BATCH_APPENDING (group commit, batch.c) */
    uint64_t commits;          /* batches of this node committed and applied (cluster_status) */
    uint64_t commit_us_total;  /* ... and the microseconds they took from sealed to applied */
    int results_cap;
    int *results;              /* per-command results of the entry being applied */
    struct cluster_cmd *cmds;  /* its decoded commands (views into the entry) */

    uv_timer_t tick;           /* leader watch, forward link, timeouts */
    uint32_t leader_seen;      /* last leader logged */
    uint64_t term_seen;
    bool barrier_pending;
    struct raft_apply barrier; /* the new leader's no-op entry */
    bool push_pending;         /* a no-op entry that carries a new commit index to the followers */
    struct raft_apply push;
    uint64_t commit_seen;      /* commit index at commit_moved_ms (watch_commit) */
    uint64_t own_seen;         /* the leader's own match index then */
    uint64_t commit_moved_ms;
    uint64_t refused_logged_ms; /* last "raft refused" warning (cluster__raft_check) */
    uint64_t refusing_since_ms; /* libraft refuses entries (not as "not the leader") since, 0 = it takes them */
    int refusing_rc;

    /* peer links */
    struct acceptor listener;   /* the cluster port (peer.c) */
    bool listening;
    uint32_t hs_incoming;       /* incoming handshakes in progress */
    uint64_t accept_pauses;     /* accepting paused, since the last warning */
    uint64_t accept_logged_ms;  /* loop time of that warning */
    /* "peer rejected" lines: a misconfigured member redials every few hundred
     * ms on three channels, so each reason is logged at most once per
     * PEER_REJECT_REPORT_MS (the last few reasons are remembered) */
    struct {
        char why[48];
        uint64_t logged_ms;
        uint64_t quiet;         /* rejections for it not logged since its last line */
    } rejected[4];
    struct list handshakes;     /* in progress (struct peer_hs) */
    struct tls_ctx *tls_server; /* peer links over TLS (cluster_certfile): accepting */
    struct tls_ctx *tls_client; /* and dialing; both NULL = plaintext */
    uint8_t *tunnel_rbuf;       /* CLUSTER_TUNNEL_READ bytes every tunnel reads into (tunnel.c) */
    struct fwd_conn *fwd_out;   /* our link to the leader */
    uint32_t fwd_out_node;
    struct peer_hs *fwd_dialing;
    struct list fwd_in;         /* links from followers (struct fwd_conn; we are, or were, the leader) */

    struct list links;          /* struct link: one per other member */
    struct list link_ins;       /* struct link_in: streams other members dialed */
    struct list link_srcs;      /* struct link_src: per sender, what was handed up */
    uint64_t incarnation;       /* random, per start: tells resends from a restarted sender */
    uv_idle_t link_flush;       /* writes what cluster_send queued this loop turn */
    bool link_flush_active;
    uint64_t started_ms;
    uint64_t leader_known_ms;   /* loop time this node last knew a leader (tick) */
    struct list ops;            /* struct member_op: membership operations under way (member.c) */
    uint32_t op_seq;
    bool joining;               /* DIR/join: waiting to be made a voter */
    char join_peer[256];
    uint64_t next_join;
    bool removed;

    int open_handles;           /* closed asynchronously at cluster_close */
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* Completes every waiter of bt with status (results used when status is 0),
 * unlinks and frees it. */
void cluster__batch_finish(struct cluster *c, struct batch *bt, int status, const int *results);
/* Sends every queued batch that can go now. */
void cluster__batches_kick(struct cluster *c);
/* End of a loop turn: the open batch becomes a pending one (or fails, memory
 * being short), and what can go now goes. */
void cluster__batch_flush(struct cluster *c);
/* The pending batch of sequence seq (sequences are unique), or NULL. */
struct batch *cluster__batch_find(struct cluster *c, uint64_t seq);
/* This node's batch seq was applied with count commands and their results. */
void cluster__batch_committed(struct cluster *c, uint64_t seq, uint32_t count, const int *results);
/* Fails every batch past its deadline (the tick). */
void cluster__batches_expire(struct cluster *c);
/* Fails the open batch and every pending one with status (closing). */
void cluster__batches_fail_all(struct cluster *c, int status);
/* The leader committed a command entry: tells the followers now. */
void cluster__push_commit(struct cluster *c);

/* Logs msg (printf-style) and stops the node through the broker's fatal
 * callback, once. */
void cluster__fail_stop(struct cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After a libraft call that submits an entry (what names it), the log's last
 * index taken before it: a refusal (the entry never entered the log) is
 * returned as it is; an error after the entry entered the log means the log
 * failed and stops the node, with libraft's code and message. Returns rc. */
int cluster__raft_check(struct cluster *c, int rc, raft_index before, const char *what);
/* raft_apply of *entry (raft_malloc'd, len bytes): on success, and on a
 * failure after the entry entered the log (libraft freed it), *entry becomes
 * NULL; on a refusal it stays the caller's. Refuses (RAFT_SHUTDOWN) once the
 * node stopped. */
int cluster__raft_apply(struct cluster *c, struct raft_apply *req, uint8_t **entry, size_t len, raft_apply_cb cb,
                        const char *what);
/* Appends an entry without commands, which the state machine skips. */
int cluster__append_noop(struct cluster *c, struct raft_apply *req, raft_apply_cb cb, const char *what);
/* Arms the flush idle handle (batch flush, or the close, at the end of this
 * loop turn). */
void cluster__flush_soon(struct cluster *c);
/* During a drain: closes once nothing proposed waits any more. */
void cluster__drain_check(struct cluster *c);
void cluster__handle_closed(struct cluster *c);
/* Close callbacks: h->data is the cluster / the handle was raft_malloc'd. */
void cluster__on_handle_closed(uv_handle_t *h);
void cluster__close_free(uv_handle_t *h);

/* --- the data directory (datadir.c) ------------------------------------------- */

/* Creates and locks DIR, checks and raises its identity (node.id), lets
 * member.c handle its markers, opens the store (c->store) and creates the
 * Raft log directory, whose path goes to raft_dir. 0, or a negative error
 * with err set. */
int cluster__datadir_open(struct cluster *c, char *raft_dir, size_t raft_dir_len, char *err, size_t errlen);
/* Removes path and everything under it (a missing path is fine). */
int cluster__remove_tree(const char *path);

/* --- the Raft state machine (fsm.c) --------------------------------------------- */

/* Fills c->fsm with the callbacks that apply committed entries. */
void cluster__fsm_setup(struct cluster *c);
/* What applying entry (len bytes, borrowed) as the next committed one would
 * do, undone: the checks of its header (an entry of another format version
 * stops the node, as applying it would), then its commands decoded and
 * applied in a store transaction that is rolled back; the broker is not told.
 * For the proposals the fuzzer forwards (forward.c, a stream of NULL). */
void cluster__fsm_dry_run(struct cluster *c, const uint8_t *entry, size_t len);

/* --- committed commands applied to the store (apply.c) ------------------------- */

/* Applies one decoded command inside txn; returns the result (>= 0) or a
 * negative cluster/store error. Deterministic: depends only on the store. */
int cluster__state_apply(struct store_txn *txn, const struct cluster_cmd *cmd);
int cluster__state_load(struct store *s, int (*cb)(void *arg, const struct cluster_cmd *cmd), void *arg);
int cluster__state_dump(struct store *s, void *file);

/* --- durable sessions (durable.c) ---------------------------------------------- */

/* Applies a durable-session command (types 30..35) inside txn. */
int cluster__durable_apply(struct store_txn *txn, const struct cluster_cmd *cmd);
bool cluster__topic_match(const uint8_t *filter, size_t filter_len, const uint8_t *topic, size_t topic_len);
int cluster__queue_read(struct store *s, const uint8_t *id, size_t id_len, uint64_t after,
                        int (*cb)(void *arg, const struct cluster_qmsg *m), void *arg);
int cluster__inbound_read(struct store *s, const uint8_t *id, size_t id_len, int (*cb)(void *arg, uint16_t pid),
                          void *arg);

#endif
