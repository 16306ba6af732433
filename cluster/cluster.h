/* cluster: the one interface between the broker and replicated state.
 *
 * The broker never mutates replicated state (session ownership, subscriptions,
 * retained messages) directly. It proposes a command with cluster_propose(); the
 * command is encoded (versioned, binary, padded to 8 bytes), batched with the
 * other commands proposed in the same loop turn into one Raft log entry,
 * committed by libraft (forwarded to the leader over the authenticated peer
 * link when this node is a follower), then applied on every node in log order:
 * first to the LMDB store (store/), which decides the command's result
 * deterministically, then to the broker's in-memory indexes through the apply
 * callback. The proposer's done callback runs after its command was applied on
 * this node (or failed), carrying the store's result.
 *
 * A single node is a one-voter cluster: the same path, the same durability. */
#ifndef STARLING_CLUSTER_H
#define STARLING_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <uv.h>

#include "proto.h"

#define CLUSTER_CMD_VERSION 1

enum cluster_cmd_type {
    CLUSTER_SESSION_CLAIM = 1,   /* client id is now owned by (node, generation) */
    CLUSTER_SESSION_RELEASE = 2, /* the owner's connection ended; session kept until expire_at */
    CLUSTER_SESSION_EXPIRE = 3,  /* the session (and its subscriptions) ends */
    CLUSTER_SUB_ADD = 4,
    CLUSTER_SUB_DEL = 5,
    CLUSTER_RETAIN_SET = 6,
    CLUSTER_RETAIN_DEL = 7,
    CLUSTER_NODE_JOIN = 8,
    CLUSTER_NODE_LEAVE = 9,
    /* users and ACL rules (docs/auth.md, "Users and rules in the cluster") */
    CLUSTER_USER_SET = 20,       /* creates or replaces a user (its hashes only) */
    CLUSTER_USER_DEL = 21,
    CLUSTER_ACL_ADD = 22,        /* adds a rule, or changes the access of the same rule */
    CLUSTER_ACL_DEL = 23,
    /* durable sessions (docs/cluster.md "Durable sessions") */
    CLUSTER_MSG_PUT = 30,      /* a QoS 1/2 message for the persistent sessions it matches */
    CLUSTER_QUEUE_ACK = 31,    /* client id's entry msg_id is done (PUBACK / PUBCOMP) */
    CLUSTER_QUEUE_SENT = 32,   /* client id's QoS 2 entry msg_id was sent with pid */
    CLUSTER_QUEUE_PUBREC = 33, /* client id's QoS 2 entry msg_id got its PUBREC */
    CLUSTER_INBOUND_ADD = 34,  /* client id received QoS 2 pid, awaiting PUBREL */
    CLUSTER_INBOUND_DEL = 35,  /* its PUBREL came */
};

/* Which part of the ACL a rule belongs to (as in an acl_file). */
enum cluster_acl_kind {
    CLUSTER_ACL_ANONYMOUS = 0,   /* `topic` lines before any `user` line */
    CLUSTER_ACL_USER = 1,        /* `topic` lines after `user NAME` */
    CLUSTER_ACL_PATTERN = 2,     /* `pattern` lines */
};

/* Bounds on the replicated users and rules: a USER_SET or ACL_ADD of a new
 * name or rule beyond them fails with CLUSTER_ELIMIT. */
#define CLUSTER_MAX_USERS 100000u
#define CLUSTER_MAX_RULES 100000u

/* The apply result of a msg_put: how many sessions queued it and how many
 * entries the queue limits refused or dropped for it (each up to 0x7FFF). */
#define CLUSTER_PUT_RESULT(queued, dropped) \
    (((queued) > 0x7FFF ? 0x7FFF : (queued)) | (((dropped) > 0x7FFF ? 0x7FFF : (dropped)) << 15))
#define CLUSTER_PUT_QUEUED(result) ((result) & 0x7FFF)
#define CLUSTER_PUT_DROPPED(result) (((result) >> 15) & 0x7FFF)

/* Errors of this module (negative). */
enum cluster_error {
    CLUSTER_EUNAVAILABLE = -2000, /* no leader / cannot commit in time */
    CLUSTER_ESTALE = -2001,       /* the command refers to a superseded generation */
    CLUSTER_ECORRUPT = -2002,     /* an entry that does not decode */
    CLUSTER_ESHUTDOWN = -2003,    /* the node is stopping */
    CLUSTER_EALREADY = -2004,     /* an operator action with nothing to do */
    CLUSTER_ENOTFOUND = -2005,    /* no such member */
    CLUSTER_EINVAL = -2006,       /* an operator action that cannot apply (bad address, last voter, ...) */
    CLUSTER_EPERM = -2007,        /* a session claim by another user than the session's owner */
    CLUSTER_ELIMIT = -2010,       /* CLUSTER_MAX_USERS / CLUSTER_MAX_RULES reached */
};

/* A will carried by a session claim. */
struct cluster_will {
    struct proto_str topic;
    struct proto_str payload;
    struct proto_str props; /* MQTT 5 property block body of the will (message props) */
    uint8_t qos;
    bool retain;
    uint32_t delay; /* Will Delay Interval, seconds */
};

/* One command. All views are borrowed: cluster_propose copies what it needs
 * before returning; during apply they point into the log entry and stay valid
 * only for the duration of the apply callback. */
struct cluster_cmd {
    uint8_t type; /* enum cluster_cmd_type */
    struct proto_str client_id;
    uint32_t node;
    uint64_t generation;
    /* session claim / release */
    bool clean_start;
    uint32_t expiry;           /* Session Expiry Interval, seconds */
    uint64_t expire_at_ms;     /* release: wall-clock time the session expires (0 = never) */
    bool has_will;             /* claim: the will; release: the will is still pending */
    struct cluster_will will;
    bool released;             /* cluster_load only: the session's connection ended */
    /* subscriptions */
    struct proto_str filter;   /* full filter, including any $share/group/ prefix */
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling;
    uint32_t sub_id;
    /* retained messages */
    struct proto_str topic;
    struct proto_str payload;
    struct proto_str props;    /* message property block body */
    uint64_t msg_expire_at_ms; /* wall-clock, 0 = never */
    /* claim (and cluster_load): who connected. user is the CONNECT's
     * username (has_user false: none, anonymous); owned: that identity was
     * authenticated and the session belongs to it: a claim by another
     * identity is refused (CLUSTER_EPERM) while the session exists. Absent
     * in commands and records written before, which are owned by nobody. */
    bool has_user;
    bool owned;
    struct proto_str user;
    /* users and ACL rules (CLUSTER_USER_SET .. CLUSTER_ACL_DEL): user names
     * the user (has_user; a rule of the anonymous section or a pattern has
     * none). USER_SET: topic is the password hash as a password file writes
     * it ("$7$..."), payload the SCRAM credentials as auth_cluster_scram_encode
     * writes them (empty: none). ACL_ADD / ACL_DEL: topic is the rule's
     * filter, acl_kind (enum cluster_acl_kind) and access (auth_access bits,
     * 0 = deny; ignored by ACL_DEL) the rest of it. */
    uint8_t acl_kind;
    uint8_t access;
    /* durable sessions. msg_put: topic, payload, props, qos, retain,
     * msg_expire_at_ms, node and client_id (the publisher, for No Local), and
     * the proposing node's queue limits, applied by every node alike
     * (max_queued, max_queued_bytes: 0 = unlimited; queue_policy 0 drop the
     * newest, 1 drop the oldest). Its msg_id is set when it is applied (log
     * index << 16 | position in the entry). queue_*: client_id, msg_id, pid;
     * inbound_*: client_id, pid. */
    bool retain;
    uint8_t queue_policy;
    uint16_t pid;
    uint32_t max_queued;
    uint64_t max_queued_bytes;
    uint64_t msg_id;
};

/* Called on every node for every committed command, in log order, after the
 * command was applied to the store (LMDB) and only when the store accepted it
 * (result >= 0: the same value on every node, handed to the proposer's done
 * callback). The broker updates its in-memory indexes here. */
typedef void (*cluster_apply_cb)(void *ctx, const struct cluster_cmd *cmd, int result, uint64_t index);

/* Called when the whole replicated state was replaced (a snapshot from the
 * leader was installed): the broker drops its in-memory copy and reloads it
 * with cluster_load(). */
typedef void (*cluster_reload_cb)(void *ctx);

/* Called when the node must stop (its store cannot apply a committed entry, or
 * it was removed): msg says why. */
typedef void (*cluster_fatal_cb)(void *ctx, const char *msg);

/* status is 0 when the command was applied (result is the store's verdict), or
 * a negative cluster_error when it could not be committed in time (the command
 * may still commit later: an operation that timed out is indeterminate). */
typedef void (*cluster_done_cb)(void *arg, int status, int result);

/* Called on this node for each message another node sent it with
 * cluster_send, in the order that node sent them, at most once per message
 * (a message resent after a broken link is recognised and not handed up
 * again). data is borrowed for the duration of the call. The sender's done
 * callback runs once this callback returned. */
typedef void (*cluster_receive_cb)(void *ctx, uint32_t from, const uint8_t *data, size_t len);

/* Called when another member becomes reachable (alive true: its data link is
 * up) or is given up on (alive false: no link for node_timeout_ms; messages
 * still unacknowledged by it completed with CLUSTER_EUNAVAILABLE). */
typedef void (*cluster_node_cb)(void *ctx, uint32_t node, bool alive);

struct cluster_peer_cfg {
    uint32_t id;
    const char *address; /* host:port of its cluster port (borrowed) */
};

/* Everything is borrowed and must outlive the cluster. */
struct cluster_config {
    uint32_t node_id;
    const char *data_dir;      /* holds raft/ (the log, snapshots), state/ (LMDB), node.id */
    const char *cluster_name;
    const char *bind;          /* host:port the cluster port listens on */
    const char *secret;        /* shared secret of the peer links (optional with TLS) */
    /* TLS on the peer links, PEM files (NULL or "" = plaintext links): this
     * node's certificate and key, the cluster's CA, an optional CRL */
    const char *certfile;
    const char *keyfile;
    const char *cafile;
    const char *crlfile;
    const struct cluster_peer_cfg *peers; /* every voter, this node included; none = one voter */
    int peer_count;
    uint32_t commit_timeout_ms;
    uint32_t election_timeout_ms;
    uint32_t heartbeat_ms;
    uint32_t snapshot_threshold;
    uint32_t snapshot_trailing;
    size_t store_map_size;     /* bytes LMDB may grow to; 0 = store default (1 GiB) */
    cluster_apply_cb apply;
    cluster_reload_cb reload;
    cluster_fatal_cb fatal;
    cluster_receive_cb receive;  /* may be NULL: messages are acknowledged and dropped */
    cluster_node_cb node_event;  /* may be NULL */
    uint32_t node_timeout_ms;    /* a member without a data link this long is given up on; 0 = 2 x election timeout */
    void *ctx;
    /* logging: level as the broker's (0 error .. 4 trace) */
    void (*log)(void *ctx, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
};

struct cluster; /* opaque: cluster/internal.h */

/* Opens the data directory (checking it belongs to this cluster and node),
 * the store and the Raft log, bootstraps a fresh node with the configured
 * voters and listens on the cluster port; Raft starts with cluster_run. On
 * failure returns a negative error with a one-line message in err; *out may
 * still be set, and must then be closed with cluster_close (and the loop run). */
int cluster_start(uv_loop_t *loop, const struct cluster_config *cfg, struct cluster **out, char *err,
                  size_t errlen);

/* Starts Raft (after the broker loaded the state with cluster_load): the log
 * is replayed from the store's applied index on. Returns 0, or a negative
 * error with a message in err (a corrupt or inconsistent log). */
int cluster_run(struct cluster *c, char *err, size_t errlen);

/* A process using this module must ignore SIGPIPE (peer links write with
 * write(2)); starlingd does.
 *
 * Proposes cmd (copied). done (may be NULL) runs later on the loop thread, never
 * from within this call: after the command was committed and applied on this
 * node, or with CLUSTER_EUNAVAILABLE after commit_timeout_ms. Returns 0, or a
 * negative error if the command could not even be queued (then done is not
 * called). */
int cluster_propose(struct cluster *c, const struct cluster_cmd *cmd, cluster_done_cb done, void *arg);

/* A generation number unique across the cluster and across restarts. */
uint64_t cluster_generation_next(struct cluster *c);

/* Calls cb for the replicated state as it is now, as the commands that would
 * recreate it: a SESSION_CLAIM per session (clean_start false; `released` and
 * expire_at_ms tell a session whose connection ended, which a replayed claim
 * alone would not), a SUB_ADD per subscription (with its session's
 * generation), a RETAIN_SET per retained message, a USER_SET per user and an
 * ACL_ADD per rule; views valid during cb. */
int cluster_load(struct cluster *c, int (*cb)(void *arg, const struct cluster_cmd *cmd), void *arg);

/* One entry of a session's durable queue, with its message (views valid
 * during the callback only). */
struct cluster_qmsg {
    uint64_t msg_id;
    uint8_t qos;      /* granted */
    uint8_t state;    /* 0 queued, 1 QoS 2 sent with pid, 2 its PUBREC came */
    uint16_t pid;
    bool retain;      /* the retain flag to deliver with */
    uint32_t nsub_ids;
    const uint8_t *sub_ids; /* nsub_ids u32 LE */
    struct proto_str topic, payload, props;
    uint64_t expire_at_ms;
};

/* Calls cb for client id's durable queue entries after message id `after`,
 * in message order, from this node's store. cb returns 0 to go on, non-zero
 * to stop (that value is returned). */
int cluster_queue_read(struct cluster *c, const uint8_t *id, size_t id_len, uint64_t after,
                       int (*cb)(void *arg, const struct cluster_qmsg *m), void *arg);
/* How many entries client id's durable queue holds in this node's store
 * (0 when none or on error). */
uint32_t cluster_queue_count(struct cluster *c, const uint8_t *id, size_t id_len);
/* Calls cb for client id's inbound QoS 2 packet ids awaiting PUBREL. */
int cluster_inbound_read(struct cluster *c, const uint8_t *id, size_t id_len, int (*cb)(void *arg, uint16_t pid),
                         void *arg);

/* --- the data path between nodes ----------------------------------------------
 *
 * Each pair of members keeps persistent, authenticated data links (one per
 * direction). cluster_send queues one message (the iovecs are copied) for
 * node; the messages of a loop turn go out as one write. done (may be NULL)
 * runs on the loop thread, never from within this call: with 0 once node's
 * receive callback ran for it, with CLUSTER_EUNAVAILABLE when node was given
 * up on first (no link for node_timeout_ms), with CLUSTER_ESHUTDOWN at
 * cluster_close. A broken link is redialled and the messages it had not
 * acknowledged are resent in order; the receiver recognises the ones it
 * already handed up. Returns 0, or a negative error (unknown node, the node
 * itself, no memory) and done is not called. */
typedef void (*cluster_sent_cb)(void *arg, int status);
int cluster_send(struct cluster *c, uint32_t node, const struct iovec *parts, int nparts, cluster_sent_cb done,
                 void *arg);

/* Bytes sent to node and not yet acknowledged by it (0 for an unknown node). */
size_t cluster_backlog(struct cluster *c, uint32_t node);

/* True for this node, and for a member whose data link is up or went down
 * less than node_timeout_ms ago. */
bool cluster_node_alive(struct cluster *c, uint32_t node);

/* --- membership --------------------------------------------------------------- */

/* Whether node is in the current configuration (this node included). */
bool cluster_node_member(struct cluster *c, uint32_t node);

struct cluster_member {
    uint32_t id;
    char address[128];        /* its cluster port, host:port */
    int role;                 /* 0 voter, 1 standby, 2 spare (libraft roles) */
    bool self;
    bool alive;               /* as cluster_node_alive */
    uint64_t last_seen_ms;    /* ms since its data link last delivered anything (0 for self) */
    /* as the node last reported over its data link (its own values for self) */
    int state;                /* 0 follower, 1 candidate, 2 leader, 3 unavailable, -1 unknown */
    uint64_t term, commit_index, applied_index;
};

/* Fills out with up to max members of the current configuration; returns how
 * many there are (which may be more than max). */
int cluster_members_get(struct cluster *c, struct cluster_member *out, int max);

/* Completion of an operator action: status 0 (done), CLUSTER_EALREADY (nothing
 * to do: msg says why), or another negative cluster error; msg (borrowed,
 * valid during the call) is a one-line explanation for the operator. */
typedef void (*cluster_op_cb)(void *arg, int status, const char *msg);

/* This node joins the cluster that the node at peer (host:port of its cluster
 * port) belongs to: its own replicated state is discarded and replaced by the
 * cluster's. Joining a cluster it already belongs to is CLUSTER_EALREADY. */
int cluster_join(struct cluster *c, const char *peer, cluster_op_cb cb, void *arg);
/* This node leaves the cluster (the others keep the replicated state); it
 * stops afterwards through the fatal callback. */
int cluster_leave(struct cluster *c, cluster_op_cb cb, void *arg);
/* Removes another member (node id); the removed node is told, and stops. */
int cluster_remove(struct cluster *c, uint32_t node, cluster_op_cb cb, void *arg);
/* Whether this node was removed from the cluster (its fatal callback then
 * ran with the reason): a deliberate stop, not a failure. */
bool cluster_removed(const struct cluster *c);
/* Hands leadership to node (0: the most up-to-date voter). */
int cluster_transfer(struct cluster *c, uint32_t node, cluster_op_cb cb, void *arg);

struct cluster_status {
    uint32_t node_id;
    uint32_t leader_id;  /* 0 = none known */
    int role;            /* 0 follower, 1 candidate, 2 leader, 3 unavailable */
    uint64_t term, commit_index, applied_index, last_index;
    uint64_t leaderless_ms;  /* since this node last knew a leader (0 while it knows one) */
    /* this node's proposals: batches committed and applied since the start, and
     * the microseconds they took in all (from sealed to applied; their
     * differences over an interval give the mean commit latency) */
    uint64_t commits, commit_us_total;
};
void cluster_status_get(struct cluster *c, struct cluster_status *out);
/* The index of the last entry applied on this node (store and broker). */
uint64_t cluster_applied_index(struct cluster *c);

/* Rebuilds the TLS contexts of the peer links from the files the
 * configuration names (SIGHUP): handshakes from now on use the new
 * certificate, key, CA and CRL; links already up keep theirs and are not
 * dropped. Returns 1 when reloaded, 0 when the links are plaintext (nothing
 * to reload), or a negative error with one line in err ("cluster_certfile
 * /x: reason"), the contexts loaded before staying in use. */
int cluster_tls_reload(struct cluster *c, char *err, size_t errlen);

/* Stops the cluster. What was proposed before gets up to a second to commit
 * (done runs as usual); what is still pending then completes with
 * CLUSTER_ESHUTDOWN, and new proposals are refused at once. close_cb runs
 * when every handle is closed and the store is closed. */
void cluster_close(struct cluster *c, void (*close_cb)(void *arg), void *arg);

/* Prints the replicated state of the store in dir/state (read-only; works while
 * a node runs) in the documented dump format. Returns 0, or a negative error
 * with a message in err. */
int cluster_dump(const char *data_dir, void *file /* FILE * */, char *err, size_t errlen);

/* For the fuzzer (tests/fuzz/fuzz_cluster.c): what a peer sends on the
 * cluster port, handled with no socket. channel 0: data starts with the
 * dialer's HELLO_D (peer.c's handshake parser; the challenge was all zero),
 * and an authenticated dialer's remaining bytes go to its channel. Channel 2
 * (forwarded proposals) or 3 (the data link): data is what node sends after
 * a valid handshake. The bytes go through the same frame decoder and handlers
 * as a socket's, what the node answers is dropped, and the stream ends (the
 * peer's end of stream) once data is used up. Forwarded proposals are never
 * appended: they are checked, and applied in a store transaction that is
 * rolled back. Returns 0 when the bytes reached a channel; -EAGAIN (a
 * handshake cut short), -EACCES (refused), -EINVAL (the Raft channel, which
 * needs a socket), -ESHUTDOWN or -ENOMEM otherwise. data is borrowed. */
int cluster__peer_feed(struct cluster *c, uint8_t channel, uint32_t node, const uint8_t *data, size_t len);

/* The command codec (exposed for tests). cluster_cmd_encode appends one framed,
 * 8-byte padded command; cluster_cmd_decode reads the command at *pos of an
 * entry, advancing *pos. */
int cluster_cmd_encode(const struct cluster_cmd *cmd, struct buf *out);
int cluster_cmd_decode(const uint8_t *buf, size_t len, size_t *pos, struct cluster_cmd *out);

#endif
