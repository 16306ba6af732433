/* broker internals: the structs shared by the broker's files and their private
 * functions (prefixed broker__ where not static to one file). */
#ifndef STARLING_BROKER_INTERNAL_H
#define STARLING_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "acceptor.h"
#include "auth.h"
#include "buf.h"
#include "cluster.h"
#include "config.h"
#include "list.h"
#include "map.h"
#include "proto.h"
#include "trie.h"

/* Above this many bytes not yet acknowledged by another node, QoS 0 messages
 * for it are dropped (as for a slow connection: QoS 0 must not queue without
 * bound, nor grow the latency of what follows). */
#define BROKER_MAX_FORWARD_BACKLOG (64u << 20)
/* Read buffer handed to libuv; partial packets are copied to the connection. */
#define BROKER_READ_CHUNK (64u * 1024)

/* The connections' timer wheel: BROKER_WHEEL_SLOTS slots of BROKER_WHEEL_MS
 * (a round of 64 s); a check runs at most BROKER_WHEEL_MS late. */
#define BROKER_WHEEL_MS 250u
#define BROKER_WHEEL_SLOTS 256u

/* --- logging -------------------------------------------------------------- */

struct conn;
struct broker;

void broker__log(const struct broker *b, int level, const struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG(b, level, conn, ...)                                                                   \
    do {                                                                                           \
        if ((level) <= (b)->cfg.log_level)                                                         \
            broker__log((b), (level), (conn), __VA_ARGS__);                                        \
    } while (0)

/* --- messages ------------------------------------------------------------- */

/* An application message: immutable once built, reference-counted, one buffer
 * shared by every subscriber it goes to. */
struct msg {
    uint32_t refs;
    uint8_t qos;
    bool retain;
    uint16_t topic_len;
    uint32_t payload_len;
    uint32_t props_len;
    uint64_t expire_at;  /* monotonic ms (uv_now), 0 = never */
    char *topic;         /* NUL-terminated, inside this allocation */
    uint8_t *payload;    /* inside this allocation */
    uint8_t *props_raw;  /* message properties block (no alias, no sub ids, no expiry) */
    struct proto_props props; /* views into props_raw */
    char *origin;        /* client id of the publisher (No Local), NUL-terminated */
    bool durable;        /* persistent sessions get it from the replicated log (durable.c) */
};

/* Builds a message from a publish (topic, payload and message properties are
 * copied). expire_at is absolute monotonic ms or 0. origin may be NULL. */
struct msg *broker__msg_new(const struct proto_str topic, const struct proto_str payload,
                            const struct proto_props *props, uint8_t qos, bool retain,
                            uint64_t expire_at, const char *origin);
static inline struct msg *broker__msg_ref(struct msg *m)
{
    m->refs++;
    return m;
}
void broker__msg_unref(struct msg *m);
/* What a message counts for in byte limits: topic, payload, properties. */
static inline uint32_t broker__msg_bytes(const struct msg *m)
{
    return (uint32_t)m->topic_len + m->payload_len + m->props_len;
}

/* --- sessions and subscriptions -------------------------------------------- */

struct session;

struct sub {
    struct trie_item item;    /* in broker.subs (non-shared) */
    struct session *session;
    struct share_group *group;/* non-NULL for $share subscriptions */
    struct list link;         /* in session.subs */
    char *filter;             /* as subscribed, including $share/group/ */
    size_t filter_len;
    uint32_t sub_id;
    uint8_t qos;
    bool no_local;
    bool rap;
    uint8_t rh;
};

/* All members of one shared subscription ($share/name/filter), stored in
 * broker.shared under the filter. */
struct share_group {
    struct trie_item item;
    char *name;
    struct sub **members;
    uint32_t count, cap;
    uint32_t next;            /* round-robin position */
};

enum out_state {
    OUT_QUEUED = 0,           /* waiting for a connection / inflight room */
    OUT_WAIT_PUBACK,          /* QoS 1 sent */
    OUT_WAIT_PUBREC,          /* QoS 2 sent */
    OUT_WAIT_PUBCOMP,         /* PUBREL sent (msg already released) */
};

/* One message on its way to one session. */
struct outmsg {
    struct list link;         /* in its outlist */
    struct msg *msg;          /* reference held; NULL in OUT_WAIT_PUBCOMP */
    uint16_t packet_id;
    uint8_t qos;
    uint8_t state;
    bool retain;
    bool unsent;              /* in flight before this connection, not resent on it yet */
    uint32_t bytes;           /* counted in its outlist's bytes (broker__msg_bytes when appended) */
    uint64_t dmsg_id;         /* its entry in the durable queue (0: none) */
    bool committing;          /* QoS 2 of the durable queue: its packet id (or PUBREC) is being
                                 committed; the PUBLISH (or PUBREL) goes out after that */
    bool wait;                /* in flight, its PUBLISH not sent yet: it waits for its own
                                 commit or an earlier one's, so that PUBLISHes keep their order */
    uint32_t nids;
    uint32_t ids[];           /* subscription identifiers */
};

/* Message bytes are counted per entry: a payload shared by several sessions
 * counts once in each queue that holds it (what each session holds, not what
 * the node allocated), so the node-wide sum is an upper bound of the memory. */
struct outlist {
    struct list items;        /* struct outmsg, in order */
    uint32_t count;
    uint64_t bytes;           /* sum of the entries' bytes */
    uint64_t *total;          /* also counted here (broker.queued_bytes for a session queue), or NULL */
};

static inline void broker__outlist_init(struct outlist *l)
{
    list_init(&l->items);
    l->count = 0;
    l->bytes = 0;
    l->total = NULL;
}

struct will {
    char *topic;
    uint8_t *payload;
    uint32_t payload_len;
    uint8_t *props_raw;       /* will properties block, message properties only */
    uint32_t props_len;
    uint8_t qos;
    bool retain;
    uint32_t delay;
};

struct session {
    struct broker *b;
    char *client_id;          /* NUL-terminated; key in broker.sessions */
    size_t id_len;
    uint64_t generation;      /* of the claim that owns it */
    uint64_t claim_index;     /* log index of that claim (0: loaded from the store) */
    uint32_t owner;           /* node id */
    struct conn *conn;        /* NULL while offline */
    uint8_t version;
    uint32_t expiry;          /* Session Expiry Interval, seconds (UINT32_MAX = never) */
    uint64_t expire_at;       /* monotonic ms while offline, 0 = never */
    bool expiring;            /* a session_expire proposal is under way */
    bool released;            /* the replicated state says its connection ended (whoever owns it) */
    uint64_t expire_wall;     /* released: wall-clock ms it ends, as recorded (0 = never) */
    /* moving between nodes (remote.c) */
    uint32_t handoff_from;    /* the node whose HANDOFF our claim waits for (0: none) */
    uint64_t handoff_deadline;/* monotonic ms: resume without it then */
    struct claim *parked;     /* our CONNECT, answered when the handoff is done */
    struct will *lost_will;   /* the old connection's will, published here if its node never answers */
    bool moved;               /* handed over to another node: forwarded messages follow it */
    bool adopted;             /* its node was lost: this node (the leader) publishes its will, expires it */
    bool loaded;              /* seen by broker__state_load */

    struct list subs;         /* struct sub, newest first */
    uint32_t sub_count;
    struct map sub_map;       /* filter -> struct sub * (keys are sub->filter) */

    struct outlist inflight;  /* sent, awaiting ack (in send order) */
    struct outlist queue;     /* not yet sent */
    uint16_t next_packet_id;
    uint64_t drop_logged_at;  /* monotonic ms of the last "queue full" log line (rate limit) */
    uint64_t drops_unlogged;  /* messages dropped for it since that line */
    struct list retain_streams; /* struct retain_stream: retained messages still to send, oldest first */

    uint16_t *qos2_in;        /* packet ids of received QoS 2 awaiting PUBREL, oldest first */
    uint32_t qos2_in_count, qos2_in_cap;
    uint32_t qos2_in_old;     /* the first ones, received before this connection */
    bool resend_pending;      /* some inflight messages wait for room to be resent */

    struct will *will;        /* the will of the current or last connection */
    uint64_t will_at;         /* monotonic ms a delayed will is due, 0 = none */

    struct list timed_link;   /* in broker.sessions_timed (offline with expiry or delayed will) */

    /* the user of its claim (replicated), for the ACL on each delivery */
    char *user;               /* NUL-terminated, owned; NULL with has_user false */
    size_t user_len;
    bool has_user;
    struct auth_who who;      /* user and client_id */

    /* scratch of the publish being routed (see deliver.c) */
    uint64_t match_epoch;
    uint8_t m_qos;
    bool m_rap;
    uint32_t m_nids, m_cap;
    uint32_t *m_ids;
};

/* --- connections ----------------------------------------------------------- */

enum conn_state {
    CONN_NEW = 0,             /* waiting for CONNECT */
    CONN_CLAIMING,            /* CONNECT received, session_claim under way */
    CONN_ACTIVE,              /* CONNACK sent */
    CONN_CLOSING,             /* closing the socket */
    CONN_AUTH,                /* CONNECT with an Authentication Method: AUTH exchange under way (enhanced.c) */
};

/* The parts of a connection that an idle one does not need, allocated the
 * first time one of them is (broker__conn_busy) and freed with the
 * connection: its part in backpressure (backpressure.c), an incomplete
 * packet's bookkeeping (conn.c), the wait for subscriptions (subscribe.c),
 * the outgoing topic aliases (deliver.c). */
struct conn_busy {
    struct conn *conn;        /* whose */
    /* backpressure */
    struct conn *holder;      /* the subscriber it waits for (held) */
    struct list held_link;    /* in holder->busy->held_pubs, or broker.resuming */
    struct list held_pubs;    /* struct conn_busy (held_link): publishers waiting for this one to drain */
    uint64_t congested_at;    /* monotonic ms it first held a publisher (in broker.congested), 0 = not */
    struct list congested_link; /* in broker.congested */
    /* the incomplete packet in rbuf */
    uint64_t partial_since;   /* uv_now the incomplete packet in rbuf began, 0 = none */
    size_t partial_held;      /* rbuf.cap counted in broker.partial_bytes */
    struct list partial_link; /* in broker.partials while partial_since */
    /* the subscribe -> publish barrier */
    uint64_t barrier;         /* waiting until broker.sub_completed reaches this */
    struct list barrier_link; /* in broker.barriers while waiting */
    /* outgoing topic aliases (deliver.c), once the client allows them */
    struct map out_alias;     /* topic -> alias (stored as (void*)(uintptr_t)alias) */
    uint16_t out_alias_next;
};

struct conn {
    uv_tcp_t tcp;             /* tcp.data == this; later transports wrap it */
    /* keep alive and the CONNECT timeout: a check due at this monotonic ms
     * in broker.wheel (conn.c), 0 = none; no libuv timer per connection */
    uint64_t wheel_due;
    struct list wheel_link;
    uv_timer_t *timer;        /* only when needed (broker__conn_timer): linger after close, a delayed refusal */
    struct broker *b;
    struct list link;         /* in broker.conns */
    /* broker.dirty, a push-and-pop-all stack touched on every first write of
     * a loop turn: one pointer and the flag below are all it needs */
    struct conn *next_dirty;  /* broker.dirty: has bytes in out to flush */
    bool dirty;
    int state;
    uint8_t version;          /* 0 until CONNECT */
    struct session *session;
    uint64_t generation;      /* of the claim this connection made */

    struct buf rbuf;   /* bytes of a partial packet, or unprocessed packets */
    struct buf out;    /* encoded packets not yet handed to libuv */
    size_t writing;           /* bytes handed to libuv and not yet written */

    uint16_t keep_alive;      /* seconds, as in effect (after server keep alive) */
    uint64_t last_rx;         /* uv_now of the last packet received */

    /* what the client told us in CONNECT (v5) */
    uint16_t peer_receive_max;
    uint32_t peer_max_packet;
    uint16_t peer_alias_max;
    bool request_problem_info;

    /* incoming topic aliases: alias -> topic (index 1..cfg.topic_alias_maximum) */
    char **in_alias;          /* (the outgoing ones: busy->out_alias) */

    uint32_t in_unacked;      /* incoming QoS 1/2 not yet completed (receive maximum) */
    struct list acks;         /* struct pub_ack waiting, in PUBLISH order */
    int pending;              /* proposals and deferred work holding this struct */
    bool paused;              /* packet processing waits for a proposal */
    bool consuming;           /* consume() is running: a resume from within it only unpauses */
    bool will_suppressed;     /* normal DISCONNECT received */
    bool counted;             /* counted in broker.connected */
    bool read_done;           /* EOF or read error: nothing to linger for */
    bool handles_closed;
    bool write_error;         /* a write failed on the delivery path; flush closes */
    bool fd_admitted;         /* counted in broker.fds.admitted */
    /* backpressure (deliver.c): a publisher is not read while a subscriber its
     * messages went to has more than cfg.max_write_backlog unwritten */
    bool held;                /* not read: listed in busy->holder->busy->held_pubs */
    bool slow;                /* over its backlog longer than slow_consumer_timeout_ms: QoS 0 dropped */
    struct conn_busy *busy;   /* NULL on a connection that never needed it */
    /* the peer's address (IPv4 in the first 4 bytes) and port, for logs:
     * broker__conn_peer formats them */
    uint8_t peer_ip[16];
    uint16_t peer_port;
    uint8_t peer_family;      /* AF_INET, AF_INET6, 0 = unknown */
    char *client_id;          /* for logs; owned copy */
    /* CONNECT's, or the certificate's (use_identity_as_username); owned,
     * NULL = none (anonymous) */
    char *username;
    struct auth_who who;      /* username and client_id, for the ACL (access.c) */
    uint8_t refusal;          /* a delayed CONNACK refusal's reason (access.c) */
    /* the listener's transport (transport.h); NULL for tcp: rbuf and out
     * then meet the socket directly */
    struct transport *tr;     /* owned */
    struct buf wire;          /* tr's bytes for the socket, not yet handed to libuv */
    bool tr_described;        /* the negotiated TLS version was logged */
    struct listener *listener;/* accepted on (lives as long as the broker) */
    /* MQTT 5 enhanced authentication (enhanced.c): the exchange under way
     * (owned, NULL = none), and whether CONNECT authenticated with SCRAM */
    struct enhanced *auth;
    bool scram;
};

/* --- the broker ------------------------------------------------------------ */

/* listen.c: struct acceptor (common/acceptor.h) with a->data the broker and
 * a->keep_free the descriptors it leaves free. */

struct tls_ctx;
struct listener {
    struct acceptor acc;      /* acc.name "port N" */
    struct broker *b;
    struct config_listener cfg;
    struct tls_ctx *tls;      /* tls and wss: the context new connections get (replaced on SIGHUP) */
};

/* listen.c: the node's descriptors (see the comment there). */
struct fd_budget {
    uint32_t limit;           /* RLIMIT_NOFILE; 0 = unknown (nothing refused) */
    uint32_t base;            /* held besides client and admin sockets */
    uint32_t sockets;         /* client and admin sockets open */
    uint32_t admitted;        /* clients whose CONNECT passed broker__fds_low */
    uint64_t refused, paused; /* since the last report */
    uint64_t reported_ms, recounted_ms;
};

struct broker_stats {
    uint64_t msgs_received, msgs_sent;
    uint64_t bytes_received, bytes_sent;
    uint64_t publish_dropped;
    uint64_t retained_refused;    /* retained PUBLISHes refused by the retained quota */
    uint64_t slow_consumers;  /* connections found slow (backlog held too long) */
    uint64_t publishers_held; /* publishers not read for a subscriber's backlog */
    uint64_t connections_total;
    uint64_t partial_closed;  /* closed for an incomplete packet (packet_timeout, max_partial_bytes) */
    uint64_t refused_fds;     /* CONNECTs refused to keep the descriptor reserve */
    uint64_t auth_failures;   /* CONNECTs refused for their user name, password or anonymity */
};

/* The HTTP admin API (admin/: server.c the server, api.c the endpoints). */

/* Admin connections open at most (admin/server.c). */
#define BROKER_ADMIN_MAX_CONNS 128

struct admin {
    struct acceptor acc;      /* the admin_listen socket; acc.fd is -1 when off */
    struct list conns;        /* struct admin_conn */
    uint32_t conn_count;
    uint64_t unauthorized;    /* requests refused with 401 */
    uint64_t unauth_logged_ms, unauth_unlogged; /* the last 401 logged, and those not logged since */
    struct tls_ctx *tls;      /* admin_certfile set: HTTPS only (common/tls.h); else NULL */
    struct admin_events *events; /* the dashboard's event streams (admin/events.c), NULL when none */
};

struct broker {
    uv_loop_t *loop;
    struct config cfg;
    struct cluster *cluster;
    struct cluster_peer_cfg peers[CONFIG_MAX_PEERS];
    struct list claims;       /* struct claim: CONNECTs waiting for their session_claim, oldest first */
    struct list parked;       /* struct claim: their claim committed, waiting for the session's handoff */
    struct lost_node { uint32_t node; uint64_t since; } lost[CONFIG_MAX_PEERS * 4];
    uint32_t lost_count;      /* other nodes given up on (node_event), since when (monotonic ms) */
    uint64_t durable_drops;       /* durable queue entries dropped since the last log line (durable.c) */
    uint64_t durable_drop_log_ms; /* when that line was logged */
    struct list fwd_waiting;  /* struct fwd_wait: forwarded PUBLISHes routed on a newer log than ours (remote.c) */
    uint32_t fwd_waiting_count;
    size_t fwd_waiting_bytes;
    bool fenced;              /* its clients were disconnected for it */
    uint32_t adopt_ticks;
    struct listener listeners[CONFIG_MAX_LISTENERS];
    int listener_count;
    uv_timer_t tick;          /* 1 s housekeeping: expiry, wills, $SYS */
    uv_timer_t will_timer;    /* to the earliest delayed will of this node (session.c) */
    uint64_t will_due;        /* when will_timer fires, 0 = not armed */
    uv_prepare_t flush;       /* writes what connections gathered, before the loop polls */
    uv_signal_t sigint, sigterm;
    uv_signal_t sighup;       /* reloads the listeners' certificates (listeners.c) */

    struct list conns;        /* struct conn: every open connection */
    uint32_t conn_count;      /* open sockets */
    uint32_t connected;       /* connections past CONNACK */
    struct conn *dirty;
    struct list partials;     /* struct conn_busy (partial_link) with an incomplete packet, oldest first (conn.c) */
    /* the connections' keep-alive and CONNECT timeout checks: slots of
     * BROKER_WHEEL_MS by due time, visited by wheel_timer (conn.c) */
    struct list wheel[BROKER_WHEEL_SLOTS];
    uint64_t wheel_pos;       /* the slot (absolute: ms / BROKER_WHEEL_MS) to visit next */
    uv_timer_t wheel_timer;
    uint64_t partial_bytes;   /* their read buffers */
    struct conn *routing_from;/* the client whose PUBLISH is being routed, or NULL */
    struct list congested;    /* struct conn_busy (congested_link) holding publishers, oldest first */
    uv_timer_t slow_timer;    /* ends the hold of the oldest congested connection */
    uint64_t slow_logged_ms;  /* last slow consumer log line (rate limit) */
    uint32_t slow_unlogged;   /* slow consumers found since that line */
    struct list resuming;     /* struct conn_busy (held_link): released, read again at the next flush */

    struct map sessions;      /* client id -> struct session * */
    struct list sessions_timed; /* struct session: offline with an expiry or a delayed will */
    struct trie subs;         /* non-shared subscriptions */
    struct trie shared;       /* share groups */
    struct trie retained;     /* struct retained */
    struct list retained_list; /* struct retained */
    uint32_t retained_count;
    uint32_t retained_repl;   /* the replicated ones (not $SYS): the quota's count */
    uint64_t retained_bytes;  /* their bytes (broker__msg_bytes): the quota's bytes */
    uint64_t retain_refused_logged_at; /* monotonic ms of the last quota log line */
    uint64_t queued_bytes;    /* bytes in every session queue of this node (max_queued_bytes_total) */
    uint32_t sub_count;

    /* subscribe -> publish order across clients: a PUBLISH read after a
     * SUBSCRIBE waits until that subscription is applied (see subscribe.c) */
    uint64_t sub_proposed, sub_completed;
    struct list barriers;     /* struct conn_busy (barrier_link), in the order they waited */

    uint64_t match_epoch;
    struct session **match;   /* scratch: sessions matched by the publish being routed */
    uint32_t match_count, match_cap;
    struct route_node *route; /* scratch: the other nodes it goes to */
    uint32_t route_count, route_cap;

    uint8_t *read_chunk;      /* BROKER_READ_CHUNK bytes lent to libuv reads */
    bool read_chunk_busy;

    uint64_t started_ms;
    uint64_t last_sys_ms;
    struct broker_stats stats;
    struct admin admin;
    struct fd_budget fds;
    struct broker_access {    /* access.c */
        struct auth tables;   /* users and ACL (auth.h) */
        struct auth_throttle throttle; /* failed CONNECTs per address */
        uv_signal_t sighup;   /* reloads password_file and acl_file */
        bool anonymous;       /* anonymous clients are let in */
        uint8_t scram_fake_key[32]; /* salts of users without SCRAM credentials (enhanced.c) */
    } access;
    bool stopping;
    int exit_code;
};

struct retained {
    struct trie_item item;
    struct list link;         /* in broker.retained_list */
    struct msg *msg;
    bool local;               /* $SYS: kept on this node only, not replicated */
};

/* broker.c: the in-memory parts of a zeroed broker (lists, indexes, cfg
 * copied); no loop, no sockets: socket-free unit tests start from here too. */
void broker__init(struct broker *b, const struct config *cfg);

/* time */
uint64_t broker__now(const struct broker *b);   /* monotonic ms */
uint64_t broker__wall_ms(void);                  /* wall-clock ms */

/* listen.c */
int broker__acceptor_open(struct broker *b, struct acceptor *a, const struct sockaddr *addr, int backlog);
void broker__fds_init(struct broker *b);   /* at start, after the store and cluster opened */
void broker__fds_tick(struct broker *b);
void broker__fds_report(struct broker *b); /* the rate-limited warning, when there is news */
uint32_t broker__fds_free(const struct broker *b);
bool broker__fds_low(const struct broker *b); /* below fd_reserve: new clients are refused */

/* listeners.c: what a listener's transport needs (TLS contexts from its
 * files), the stack each connection gets, the reload on SIGHUP. */
int broker__listener_prepare(struct broker *b, struct listener *l, char *err, size_t errlen);
int broker__listener_stack(struct listener *l, struct transport **out); /* *out NULL for tcp */
void broker__listeners_reload(struct broker *b);
void broker__listener_free(struct listener *l);
const char *broker__listener_describe(const struct listener *l); /* "mqtt/tls" */
void broker__transport_going_away(struct transport *t); /* the node stops: ws says 1001 in its close frame */

/* conn.c */
void broker__conn_accept(struct acceptor *a, int fd); /* an acceptor's take callback */
#define BROKER_PEER_LEN 64
/* "address:port" of c's peer into out (BROKER_PEER_LEN bytes); returns out. */
const char *broker__conn_peer(const struct conn *c, char *out);
void broker__conn_send(struct conn *c, const struct proto_packet *p);
void broker__conn_write(struct conn *c, const void *data, size_t len);
int broker__conn_publish(struct conn *c, const struct proto_publish *pub);
void broker__conn_close(struct conn *c, uint8_t reason); /* reason: v5 DISCONNECT code or 0xFF for none */
void broker__conn_resume(struct conn *c);
void broker__conn_hold(struct conn *c);
void broker__conn_release(struct conn *c);
void broker__flush_all(struct broker *b);
void broker__keepalive_arm(struct conn *c);
void broker__keepalive_stop(struct conn *c); /* no keep-alive or CONNECT timeout check */
void broker__wheel_tick(uv_timer_t *t); /* broker.wheel_timer: the checks now due */
/* The connection's libuv timer, created at first use (counted in
 * conn.pending, closed with the socket); NULL when out of memory. */
uv_timer_t *broker__conn_timer(struct conn *c);
void broker__partials_tick(struct broker *b);
uint64_t broker__conn_backlog(const struct conn *c); /* bytes not yet written */
void broker__conn_unhold_read(struct conn *c); /* read again, and what is buffered */
/* c->busy, made at first use; NULL when out of memory. */
struct conn_busy *broker__conn_busy(struct conn *c);

/* connect.c */
void broker__on_connect(struct conn *c, struct proto_packet *p);
/* A CONNECT (the first packet) that did not frame or decode (err, a PROTO_E*
 * code; pkt borrowed, the len bytes of it that arrived): CONNACK with the
 * reason where the client's protocol has one, then the close. */
void broker__connect_undecodable(struct conn *c, int err, const uint8_t *pkt, size_t len);
void broker__on_disconnect(struct conn *c, struct proto_packet *p);
void broker__conn_ended(struct conn *c); /* socket gone: will, session release */

/* publish.c */
void broker__on_publish(struct conn *c, struct proto_packet *p);
void broker__on_ack(struct conn *c, struct proto_packet *p);

/* subscribe.c */
void broker__on_subscribe(struct conn *c, struct proto_packet *p);
void broker__on_unsubscribe(struct conn *c, struct proto_packet *p);
void broker__barrier_wait(struct conn *c);
uint32_t broker__topic_levels(struct proto_str t);

/* publish.c: the acknowledgement of a received QoS 1/2 PUBLISH, sent (in the
 * order the PUBLISHes came) once nothing holds it any more: the other nodes
 * that got the message accepted it, its retain_set committed. */
struct pub_ack {
    struct list link;         /* in conn.acks */
    struct conn *conn;        /* held */
    uint16_t pid;
    uint8_t qos;
    uint8_t reason;
    int holds;
    bool close;               /* v3: the retained or durable message did not commit, close instead */
};
void broker__ack_hold(struct pub_ack *a);
void broker__ack_release(struct pub_ack *a);

/* remote.c: messages between nodes (forwarded publishes, session handoff) */
struct route_node {
    uint32_t node;
    bool alive;               /* not given up on: it gets the message */
    struct sub **shared;      /* the shared subscriptions picked on that node */
    uint32_t nshared, shared_cap;
};
void broker__remote_publish(struct broker *b, const struct route_node *r, struct msg *m, struct pub_ack *ack);
void broker__remote_receive(void *ctx, uint32_t from, const uint8_t *data, size_t len);
void broker__remote_node_event(void *ctx, uint32_t node, bool alive);
void broker__remote_takeover(struct broker *b, struct session *s, uint32_t node, bool clean);
void broker__remote_applied(struct broker *b);
void broker__remote_free(struct broker *b);

/* How long a node may go on serving after it lost the majority (it then
 * disconnects its clients: fence), and how long another node waits before it
 * serves a session that node may still serve (lease). */
uint64_t broker__fence_ms(const struct broker *b);
uint64_t broker__lease_ms(const struct broker *b);
bool broker__fenced(const struct broker *b); /* no leader for the fence time (broker.c) */

/* deliver.c: routing and the outgoing path */
uint32_t broker__route(struct broker *b, struct msg *m, struct pub_ack *ack);
uint32_t broker__route_local(struct broker *b, struct msg *m);
uint32_t broker__route_forwarded(struct broker *b, struct msg *m, uint64_t origin_applied);
void broker__deliver_shared(struct sub *sub, struct msg *m);
void broker__deliver(struct session *s, struct msg *m, uint8_t qos, bool retain, const uint32_t *ids,
                     uint32_t nids);
void broker__session_drain(struct session *s);  /* send what the window allows */
bool broker__session_ready(const struct session *s, uint8_t qos);
void broker__session_resend(struct session *s); /* after reconnect: DUP resend */
void broker__outlist_clear(struct outlist *l);
void broker__outlist_append(struct outlist *l, struct outmsg *o);
void broker__outlist_remove(struct outlist *l, struct outmsg *o);
void broker__outlist_concat(struct outlist *into, struct outlist *from); /* moves from's entries, in order */
struct outmsg *broker__inflight_find(struct session *s, uint16_t pid, int state);
void broker__inflight_done(struct session *s, struct outmsg *o);
void broker__inflight_released(struct session *s, struct outmsg *o);
/* A message of s's durable queue (entry msg_id): delivered like any other
 * (no in-memory queue limit: the store enforced it), or only queued. */
void broker__deliver_stored(struct session *s, struct msg *m, uint8_t qos, bool retain, const uint32_t *ids,
                            uint32_t nids, uint64_t msg_id);
int broker__queue_stored(struct session *s, struct msg *m, uint8_t qos, bool retain, const uint32_t *ids,
                         uint32_t nids, uint64_t msg_id);

/* durable.c: durable sessions */
bool broker__durable_target(const struct session *s, const struct msg *m, uint8_t granted);
bool broker__durable_wanted(struct broker *b, const struct msg *m);
int broker__durable_propose(struct conn *c, const struct msg *m, struct pub_ack *ack);
void broker__durable_applied(struct broker *b, const struct cluster_cmd *cmd, int queued);
void broker__durable_resume(struct broker *b, struct session *s);
void broker__durable_done(struct session *s, const struct outmsg *o);
/* A durable QoS 2 entry was given packet id o->packet_id (sent false) or got
 * its PUBREC (released true): o->committing is set and the PUBLISH / PUBREL
 * leaves once that is committed. false: not durable, send at once. */
bool broker__durable_qos2_step(struct session *s, struct outmsg *o, bool released);
/* Inbound QoS 2 packet id received (add true) or released, for a persistent
 * session: replicated so that another node knows it. */
void broker__durable_inbound(struct session *s, uint16_t pid, bool add);
/* Sends the PUBREL of o when it was released (o may be NULL), then the
 * PUBLISHes waiting, in order, up to the first message still committing
 * (deliver.c). */
void broker__inflight_send(struct session *s, struct outmsg *o);

/* backpressure.c: a subscriber's write backlog holds the publishers feeding it */
bool broker__backpressure_hold(struct conn *sub, struct conn *pub); /* false: drop the message */
static inline bool broker__conn_congested(const struct conn *c) { return c->busy && c->busy->congested_at; }
void broker__backlog_drained(struct conn *c); /* after a write: release publishers once low enough */
void broker__backlog_forget(struct conn *c);  /* closing: releases its publishers, unlists it */
bool broker__backpressure_resume(struct broker *b); /* reads released publishers again (flush) */
void broker__slow_timer_cb(uv_timer_t *t);

/* session.c */
struct session *broker__session_find(struct broker *b, const char *id, size_t len);
/* Every session, as an array (malloc'd; NULL when out of memory): for walks
 * that may end sessions. */
struct session **broker__sessions_all(struct broker *b, size_t *n);
struct session *broker__session_create(struct broker *b, const char *id, size_t len);
void broker__session_free(struct broker *b, struct session *s);
void broker__session_clear_subs(struct broker *b, struct session *s);
void broker__session_timed_add(struct broker *b, struct session *s);
void broker__session_tick(struct broker *b);
void broker__session_propose_expire(struct broker *b, struct session *s);
void broker__session_offline(struct broker *b, struct session *s);
void broker__session_propose_release(struct broker *b, struct session *s);
/* remote.c's TAKEOVER: this node stops serving s, now node `to`'s. */
void broker__session_handover(struct broker *b, struct session *s, uint32_t to, bool clean, uint64_t index);
/* The handoff our claim waited for arrived, or its time ran out. */
void broker__session_handoff_done(struct broker *b, struct session *s);
/* The leader takes on the sessions of nodes lost for longer than the lease. */
void broker__orphans_adopt(struct broker *b);
void broker__will_free(struct will *w);
void broker__will_publish(struct broker *b, struct session *s);
bool broker__qos2_in_has(struct session *s, uint16_t id);
int broker__qos2_in_add(struct session *s, uint16_t id);
/* Forgets id; true when it was received on the current connection (it
 * counted against its Receive Maximum), false when earlier or unknown. */
bool broker__qos2_in_del(struct session *s, uint16_t id);
/* A connection attaches: the ids kept so far are from earlier ones. */
void broker__qos2_in_age(struct session *s);

/* indexes.c: apply of replicated commands to the in-memory indexes, loading the replicated state */
void broker__apply(void *ctx, const struct cluster_cmd *cmd, int result, uint64_t index);
int broker__state_load(struct broker *b);
void broker__state_reload(void *ctx);
/* connect.c: a CONNECT of ours waits for the claim of this generation */
bool broker__claim_pending(const struct broker *b, uint64_t generation);
/* A claim parked until its session's handoff: CONNACK (or what ended it) now. */
void broker__claim_complete(struct claim *cl);
/* Parked claims whose handoff did not come in time. */
void broker__claims_tick(struct broker *b);
int broker__sub_apply_add(struct broker *b, struct session *s, const struct cluster_cmd *cmd);
void broker__sub_free(struct broker *b, struct sub *sub);
struct sub *broker__sub_find(struct session *s, const char *filter, size_t len);

/* retain.c */
int broker__retain_put(struct broker *b, struct msg *m, bool local);
int broker__retain_propose(struct broker *b, struct msg *m, cluster_done_cb done, void *arg);
void broker__retain_del(struct broker *b, const char *topic, size_t len);
/* false when storing m as its topic's retained message would take the
 * replicated retained index past max_retained / broker__retain_bytes_max (a
 * replacement or a delete that does not grow it always passes). */
bool broker__retain_quota_ok(const struct broker *b, const struct msg *m);
/* The byte quota in effect: max_retained_bytes, at most a quarter of the
 * store's map (store_max_mb) so that the store never fills with them. */
uint64_t broker__retain_bytes_max(const struct broker *b);
/* Starts sending the retained messages matching sub's filter to s: the
 * matching topics are listed now, each message is looked up and sent as the
 * session's window and queue allow (broker__retain_stream_feed). */
void broker__retain_send(struct broker *b, struct session *s, const struct sub *sub);
/* Sends what the window allows of s's pending retained streams; false while
 * some remain. */
bool broker__retain_stream_feed(struct broker *b, struct session *s);
void broker__retain_streams_clear(struct session *s);
void broker__retain_streams_drop(struct session *s, const char *filter);
void broker__retain_free_all(struct broker *b);

/* admin/server.c: the admin API's listener (the rest in admin/admin.h). */
int broker__admin_start(struct broker *b, char *err, size_t errlen);
/* -EPERM with err set when admin_listen reaches beyond loopback without an
 * admin_token: checked before anything starts. */
int broker__admin_check(const struct config *cfg, char *err, size_t errlen);
void broker__admin_stop(struct broker *b);

/* sys.c */
void broker__sys_publish(struct broker *b);

/* connect.c: refuses a CONNECT (CONNACK with reason where the protocol has
 * one) and closes. */
void broker__connect_refuse(struct conn *c, uint8_t reason);

/* access.c: users, passwords and the ACL (auth.c) in the broker */
int broker__access_start(struct broker *b, char *err, size_t errlen); /* loads the files, SIGHUP */
void broker__access_stop(struct broker *b);
void broker__access_free(struct broker *b);
/* The CONNECT's user name and password, anonymity and will topic: 0 (c->who
 * set; *owned: the session belongs to this identity), -EACCES (refused, or
 * its refusal delayed: nothing more to do), -ENOMEM. Needs c->client_id. */
int broker__access_connect(struct conn *c, const struct proto_connect *cp, bool *owned);
bool broker__access_publish(struct conn *c, const char *topic, size_t len);
bool broker__access_subscribe(struct conn *c, const char *filter, size_t len); /* $share/ taken off */
bool broker__access_receive(struct session *s, const struct msg *m);
/* The session's user, from its claim (user borrowed, copied). 0 or -ENOMEM. */
int broker__access_session_user(struct session *s, bool has_user, struct proto_str user);
/* A failed authentication: logged with why, counted, refused with reason
 * (at once, or later for an address that keeps failing). */
void broker__access_failed(struct conn *c, uint8_t reason, const char *why);
/* Whether require_clientid_username refuses c's client id for its user. */
bool broker__access_clientid_refused(const struct conn *c);

/* connect.c: the CONNECT once its client is authenticated (enhanced.c: after
 * the AUTH exchange); cl is transferred. */
struct claim;
void broker__connect_continue(struct conn *c, struct claim *cl, const struct proto_connect *cp);

/* enhanced.c: MQTT 5 enhanced authentication (SCRAM-SHA-256, scram.h) */
/* The CONNECT's Authentication Method, before anything else is checked:
 * 0 = none, or the CONNACK refusal (0x82 data without method, 0x8C a method
 * other than SCRAM-SHA-256). */
uint8_t broker__enhanced_method_refusal(const struct proto_connect *cp);
/* Starts the exchange of a CONNECT with a method (p borrowed, re-encoded and
 * kept; cl transferred): sends AUTH 0x18, or refuses. */
void broker__enhanced_start(struct conn *c, struct proto_packet *p, struct claim *cl);
/* An AUTH packet from the client, in CONN_AUTH or CONN_ACTIVE. */
void broker__on_auth(struct conn *c, struct proto_packet *p);
/* Adds the server-final message to a CONNACK's properties (pp borrows c's). */
void broker__enhanced_connack(struct conn *c, struct proto_props *pp);
/* Frees c's exchange, if any. */
void broker__enhanced_free(struct conn *c);
/* A user or rule command of the replicated state (applied, or loaded from the
 * store) changes the AUTH_SOURCE_CLUSTER tables. 0 or a negative error. */
int broker__access_apply(struct broker *b, const struct cluster_cmd *cmd);
/* Empties the AUTH_SOURCE_CLUSTER tables (before the state is loaded again). */
void broker__access_cluster_clear(struct broker *b);

#endif
