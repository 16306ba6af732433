/* cluster: the one interface between the broker and replicated state.
 *
 * The broker never mutates replicated state (session ownership, subscriptions,
 * retained messages) directly. It proposes a command with cluster_propose(); the
 * command is encoded (versioned, binary, padded to 8 bytes), batched with the
 * other commands proposed in the same loop turn into one log entry, committed,
 * then applied on every node in log order through the apply callback the broker
 * registered (at the next loop iteration, before the loop polls again). The proposer's done callback runs after its command was applied
 * locally (or failed), carrying the value the apply callback returned.
 *
 * In this version the log is held in memory and a node is a one-voter cluster
 * that commits each batch on the next loop turn; the Raft issue replaces what is
 * behind cluster_propose without changing this header's contract. */
#ifndef STARLING_CLUSTER_H
#define STARLING_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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
};

/* Errors of this module (negative). */
enum cluster_error {
    CLUSTER_EUNAVAILABLE = -2000, /* no leader / cannot commit in time */
    CLUSTER_ESTALE = -2001,       /* the command refers to a superseded generation */
    CLUSTER_ECORRUPT = -2002,     /* an entry that does not decode */
    CLUSTER_ESHUTDOWN = -2003,    /* the node is stopping */
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
    bool has_will;
    struct cluster_will will;
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
};

/* Called on every node for every committed command, in log order. Returns a
 * value handed to the proposer's done callback (>= 0), or a negative error. */
typedef int (*cluster_apply_cb)(void *ctx, const struct cluster_cmd *cmd, uint64_t index);

/* status is 0 when the command was applied (result is what apply returned), or a
 * negative cluster_error when it could not be committed. */
typedef void (*cluster_done_cb)(void *arg, int status, int result);

struct cluster {
    uv_loop_t *loop;
    uv_idle_t flush;           /* commits the batch gathered during a loop turn */
    cluster_apply_cb apply;
    void *apply_ctx;
    uint32_t node_id;
    uint64_t last_index;       /* index of the last applied entry */
    uint64_t generation_seq;   /* for cluster_generation_next */
    struct proto_wbuf batch;   /* encoded commands waiting for the next entry */
    uint32_t batch_count;
    struct cluster_waiter *waiters; /* done callbacks of the batch, in order */
    uint32_t waiter_count, waiter_cap;
    bool closing;
    void (*close_cb)(struct cluster *);
};

/* loop is borrowed and must outlive the cluster. */
int cluster_init(struct cluster *c, uv_loop_t *loop, uint32_t node_id, cluster_apply_cb apply,
                 void *apply_ctx);

/* Proposes cmd (copied). done (may be NULL) runs later on the loop thread, never
 * from within this call. Returns 0, or a negative error if the command could not
 * even be queued (then done is not called). */
int cluster_propose(struct cluster *c, const struct cluster_cmd *cmd, cluster_done_cb done,
                    void *arg);

/* A generation number unique across the cluster for a new session claim. */
uint64_t cluster_generation_next(struct cluster *c);

/* Stops the cluster: pending proposals complete with CLUSTER_ESHUTDOWN; close_cb
 * runs when every handle is closed. */
void cluster_close(struct cluster *c, void (*close_cb)(struct cluster *));

/* The command codec (exposed for tests). cluster_cmd_encode appends one framed,
 * 8-byte padded command; cluster_cmd_decode reads the command at *pos of an
 * entry, advancing *pos. */
int cluster_cmd_encode(const struct cluster_cmd *cmd, struct proto_wbuf *out);
int cluster_cmd_decode(const uint8_t *buf, size_t len, size_t *pos, struct cluster_cmd *out);

#endif
