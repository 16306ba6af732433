/* store: the LMDB state machine of the replicated log (sessions, subscriptions,
 * retained messages, users and ACL rules, applied_index).
 *
 * The store knows nothing of MQTT or Raft: records are plain byte strings and
 * numbers. cluster/ applies each committed log entry in one write transaction
 * that also records applied_index, so an entry at or below the stored index is
 * skipped on replay (apply is idempotent). The environment is opened with
 * MDB_NOSYNC: the Raft log is the durable record; store_snapshot_open() syncs
 * before a snapshot lets Raft drop entries.
 *
 * Tables (LMDB named databases):
 *   meta      "applied_index" -> u64 LE, "format" -> u32 LE
 *   sessions  client id -> session record (owner, generation, expiry, will)
 *   subs      client id, 0x00, filter -> subscription options
 *   retained  topic -> retained message (qos, expiry, properties, payload)
 *   users     user name -> password hash and SCRAM credentials (opaque bytes)
 *   acl       kind, user name, 0x00, topic -> access (a topic rule)
 *   msgs      u64 BE message id -> durable message with a reference count
 *   queue     client id, 0x00, u64 BE message id -> a session's queue entry
 *   qstat     client id -> the session's queued count and bytes
 *   inbound   client id, 0x00, u16 BE packet id -> (inbound QoS 2 awaiting PUBREL)
 *
 * Ownership: every pointer passed in is borrowed and copied by LMDB before the
 * call returns. Every view handed out (struct store_bytes in a record filled by
 * a get or foreach) points into LMDB's map and is valid only until the
 * transaction it came from ends (in a write transaction, only until its next
 * put or del): copy what must outlive it. Such a view may itself be passed to
 * a put of the same transaction (get, modify, put).
 *
 * Threads: everything runs on the loop thread except that a snapshot's buffers
 * may be read from another thread until store_snapshot_close(). */
#ifndef STARLING_STORE_H
#define STARLING_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Errors of this module (negative, apart from errno values). */
enum store_error {
    STORE_ENOTFOUND = -3000, /* no such record */
    STORE_ECORRUPT = -3001,  /* a record or snapshot that does not decode */
    STORE_EFULL = -3002,     /* the map is full (disk or map size) */
    STORE_EIO = -3003,       /* any other LMDB failure */
    STORE_EFORMAT = -3004,   /* written by an incompatible version */
};

struct store;      /* an open environment */
struct store_txn;  /* a read or write transaction */
struct store_snap; /* a consistent read view being written out as a snapshot */

struct store_bytes {
    const uint8_t *p;
    size_t len;
};

struct store_session {
    struct store_bytes client_id;
    uint32_t owner;       /* node id that serves (or last served) the client */
    uint64_t generation;  /* unique per claim, cluster-wide */
    uint32_t expiry;      /* Session Expiry Interval, seconds (0xFFFFFFFF = never) */
    uint64_t expire_at_ms;/* wall clock when a released session ends, 0 = connected/never */
    bool connected;       /* claimed and not released */
    bool has_will;
    uint8_t will_qos;
    bool will_retain;
    uint32_t will_delay;  /* seconds */
    struct store_bytes will_topic, will_payload, will_props;
    /* the user that connected (has_user false: anonymous) and whether the
     * session belongs to it (records written before hold neither) */
    bool has_user;
    bool owned;
    struct store_bytes user;
};

struct store_sub {
    struct store_bytes client_id;
    struct store_bytes filter; /* full filter, including a $share/group/ prefix */
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling;
    uint32_t sub_id; /* 0 = none */
};

struct store_retained {
    struct store_bytes topic;
    struct store_bytes payload;
    struct store_bytes props; /* MQTT 5 property block body, opaque here */
    uint8_t qos;
    uint64_t expire_at_ms;    /* wall clock, 0 = never */
};

/* A user of the replicated state. The store keeps its credentials as bytes
 * it does not interpret (the broker writes and reads them). */
struct store_user {
    struct store_bytes name;  /* 1..65535 bytes, no 0x00 */
    struct store_bytes hash;  /* the password verifier as a password file writes it ("$7$..."), at most 1024 bytes */
    struct store_bytes scram; /* SCRAM credentials, at most 1024 bytes; empty = none */
};

/* A topic rule of the replicated ACL. One rule per (kind, user, topic): a put
 * with another access replaces it. */
struct store_acl_rule {
    uint8_t kind;             /* 0 anonymous section, 1 a user's, 2 pattern (0..255, ordered by it) */
    struct store_bytes user;  /* kind 1: 1..65535 bytes, no 0x00; empty otherwise */
    struct store_bytes topic; /* 1..65535 bytes, no 0x00 */
    uint8_t access;
};

/* Opens (creating if missing) the environment in directory dir (created if
 * missing, mode 0700). map_size 0 means the default (1 GiB; grows are not
 * automatic). Returns 0, STORE_EFORMAT, STORE_ECORRUPT, or -errno. */
int store_open(struct store **out, const char *dir, size_t map_size);
/* Opens an existing environment read-only (for --dump while a node runs). */
int store_open_readonly(struct store **out, const char *dir);
void store_close(struct store *s);

/* Last applied log index recorded by a committed write transaction (0 = none). */
uint64_t store_applied_index(struct store *s);

/* One write transaction per applied log entry. commit stores applied_index in
 * the same transaction; abort discards everything. At most one write
 * transaction at a time (-EBUSY). commit ends the transaction whether or not
 * it succeeds; it refuses (aborts and returns that error) when a put or del in
 * the transaction failed part-way. */
int store_write_begin(struct store *s, struct store_txn **out);
int store_write_commit(struct store_txn *txn, uint64_t applied_index);
/* A read transaction: a consistent view until store_txn_end. */
int store_read_begin(struct store *s, struct store_txn **out);
/* Ends a read transaction, or aborts a write transaction. */
void store_txn_end(struct store_txn *txn);

/* Sessions. get fills *out (views into the map) or returns STORE_ENOTFOUND.
 * del also deletes every subscription of the client id (even when there is no
 * session); it returns 0 when the session existed, STORE_ENOTFOUND otherwise.
 * A client id is 1 or more bytes without 0x00 (-EINVAL), here and below. */
int store_session_get(struct store_txn *txn, const uint8_t *id, size_t id_len,
                      struct store_session *out);
int store_session_put(struct store_txn *txn, const struct store_session *rec);
int store_session_del(struct store_txn *txn, const uint8_t *id, size_t id_len);

/* Subscriptions. put returns 1 when it replaced an existing one, 0 when new.
 * del returns 1 when one was deleted, 0 when there was none.
 * del_all deletes every subscription of a client id and returns how many. */
int store_sub_put(struct store_txn *txn, const struct store_sub *rec);
int store_sub_get(struct store_txn *txn, const uint8_t *id, size_t id_len, const uint8_t *filter,
                  size_t filter_len, struct store_sub *out);
int store_sub_del(struct store_txn *txn, const uint8_t *id, size_t id_len, const uint8_t *filter,
                  size_t filter_len);
int store_sub_del_all(struct store_txn *txn, const uint8_t *id, size_t id_len);

/* Retained messages. del returns 1 when one was deleted, 0 when none. */
int store_retain_put(struct store_txn *txn, const struct store_retained *rec);
int store_retain_get(struct store_txn *txn, const uint8_t *topic, size_t topic_len,
                     struct store_retained *out);
int store_retain_del(struct store_txn *txn, const uint8_t *topic, size_t topic_len);

/* Users and ACL rules. put returns 1 when it replaced a record, 0 when new;
 * del 1 when it deleted one, 0 when there was none; -EINVAL for a name or
 * topic out of the bounds above. count gives the table's size. */
int store_user_put(struct store_txn *txn, const struct store_user *rec);
int store_user_get(struct store_txn *txn, const uint8_t *name, size_t len, struct store_user *out);
int store_user_del(struct store_txn *txn, const uint8_t *name, size_t len);
int store_users_count(struct store_txn *txn, size_t *out);
int store_users_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_user *), void *arg);
int store_acl_put(struct store_txn *txn, const struct store_acl_rule *rec);
int store_acl_del(struct store_txn *txn, const struct store_acl_rule *rec); /* access ignored */
int store_acl_count(struct store_txn *txn, size_t *out);
int store_acl_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_acl_rule *), void *arg);

/* Iteration in key order (sessions by client id, subs by client id then
 * filter, retained by topic). The callback returns 0 to go on, non-zero to
 * stop; that value is then returned. The record's views are valid during the
 * callback only, and the callback must not write to the table being iterated.
 * Errors are negative. The order is exact for keys shorter than 502 bytes
 * (a sub's key is id, 0x00, filter); keys that share their first 502 bytes
 * come in an unspecified order among themselves. */
int store_sessions_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_session *),
                           void *arg);
int store_subs_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_sub *),
                       void *arg);
/* Only the subscriptions of one client id. */
int store_client_subs_foreach(struct store_txn *txn, const uint8_t *id, size_t id_len,
                              int (*cb)(void *arg, const struct store_sub *), void *arg);
int store_retained_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_retained *),
                           void *arg);

/* --- durable sessions (queue.c) -------------------------------------------
 *
 * One message record per durable message, referenced by one queue entry per
 * session that must get it. store_queue_add takes a reference, store_queue_del
 * (and a session's end, store_session_del) drops it; a message is deleted when
 * its last reference goes. qstat keeps each session's entry count and bytes
 * for the queue limits. */

struct store_msg {
    uint64_t id;             /* log index << 16 | position in the entry */
    uint32_t refs;           /* queue entries referencing it (maintained here) */
    uint8_t qos;
    bool retain;
    uint32_t origin;         /* node the publisher was connected to */
    uint64_t expire_at_ms;   /* wall clock, 0 = never */
    struct store_bytes topic, props, publisher, payload; /* publisher: client id (No Local) */
};

enum store_qstate {
    STORE_Q_QUEUED = 0, /* not sent, or sent as QoS 1 (resent with DUP) */
    STORE_Q_SENT = 1,   /* QoS 2 PUBLISH sent with pid */
    STORE_Q_PUBREC = 2, /* QoS 2 PUBREC received: PUBREL (pid) is what is owed */
};

struct store_qentry {
    struct store_bytes client_id;
    uint64_t msg_id;
    uint8_t qos;             /* granted */
    uint8_t state;           /* enum store_qstate */
    uint16_t pid;            /* packet id once sent (0 = none) */
    bool retain;             /* retain flag as delivered (Retain As Published) */
    uint32_t size;           /* bytes counted against max_queued_bytes */
    uint32_t nsub_ids;
    struct store_bytes sub_ids; /* nsub_ids u32 LE */
};

struct store_qstat {
    uint32_t count;
    uint64_t bytes;
};

/* Creates or replaces a message record (rec->refs is written as given; a new
 * message starts at 0 and store_queue_add counts). get: STORE_ENOTFOUND. */
int store_msg_put(struct store_txn *txn, const struct store_msg *rec);
int store_msg_get(struct store_txn *txn, uint64_t id, struct store_msg *out);
/* Deletes the message if no entry references it: 1 deleted, 0 kept or none. */
int store_msg_gc(struct store_txn *txn, uint64_t id);

/* Adds (or, same key, replaces without counting twice) a queue entry; the
 * message must exist (STORE_ENOTFOUND). Returns 0 new, 1 replaced. */
int store_queue_add(struct store_txn *txn, const struct store_qentry *e);
int store_queue_get(struct store_txn *txn, const uint8_t *id, size_t id_len, uint64_t msg_id,
                    struct store_qentry *out);
/* Sets state and pid of an entry: 1 updated, 0 no such entry. */
int store_queue_set_state(struct store_txn *txn, const uint8_t *id, size_t id_len, uint64_t msg_id,
                          uint8_t state, uint16_t pid);
/* Deletes an entry, releasing its message: 1 deleted, 0 no such entry. */
int store_queue_del(struct store_txn *txn, const uint8_t *id, size_t id_len, uint64_t msg_id);
/* Every entry of a client id; returns how many. */
int store_queue_del_all(struct store_txn *txn, const uint8_t *id, size_t id_len);
/* The client id's counters (zero when it has no entry). */
int store_queue_stat(struct store_txn *txn, const uint8_t *id, size_t id_len, struct store_qstat *out);
/* A client id's entries in message id order (exact for ids shorter than 490
 * bytes), or every entry of every client (id NULL). Callback as above. */
int store_queue_foreach(struct store_txn *txn, const uint8_t *id, size_t id_len,
                        int (*cb)(void *arg, const struct store_qentry *), void *arg);
int store_msgs_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_msg *), void *arg);

/* Inbound QoS 2 packet ids awaiting PUBREL. put: 1 when it was there already;
 * del: 1 deleted, 0 none. foreach: id NULL for every client. */
int store_inbound_put(struct store_txn *txn, const uint8_t *id, size_t id_len, uint16_t pid);
int store_inbound_del(struct store_txn *txn, const uint8_t *id, size_t id_len, uint16_t pid);
int store_inbound_foreach(struct store_txn *txn, const uint8_t *id, size_t id_len,
                          int (*cb)(void *arg, struct store_bytes client_id, uint16_t pid), void *arg);

/* Snapshots.
 *
 * store_snapshot_open syncs the environment to disk, opens a read view and
 * describes the whole state at that view as a list of buffers (iov) in the
 * snapshot format; the buffers point into the map (no copy of records) and stay
 * valid, readable from any thread, until store_snapshot_close. The view's
 * applied index is *applied_index.
 *
 * The snapshot format is a compacted copy of the tables: a 32-byte header
 * ("STARSNAP", u32 format, u32 flags, u64 applied_index, u64 record count), then
 * per record u32 table, u32 key length, u32 value length, key, value, with no
 * padding; integers little-endian.
 *
 * store_snapshot_restore replaces the whole state with a snapshot (buf
 * borrowed) in one write transaction (applied_index becomes the snapshot's),
 * after validating every length: a snapshot that does not decode returns
 * STORE_ECORRUPT and leaves the state untouched. store_snapshot_peek reads the
 * applied index of a snapshot without restoring it. */
int store_snapshot_open(struct store *s, struct store_snap **out, const struct iovec **iov,
                        size_t *iov_count, uint64_t *applied_index);
void store_snapshot_close(struct store_snap *snap);
int store_snapshot_peek(const void *buf, size_t len, uint64_t *applied_index);
int store_snapshot_restore(struct store *s, const void *buf, size_t len);

/* Flushes the environment to disk (mdb_env_sync; thread-safe). A background
 * sync once a second was tried and dropped: on ext4 it slowed the Raft log's
 * own fsyncs enough to cut commit throughput by half. */
int store_sync(struct store *s);

/* A human-readable description of a store error or -errno. */
const char *store_strerror(int err);

#endif
