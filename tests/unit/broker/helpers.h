/* Helpers shared by the broker core suites (publish, deliver, session;
 * definitions in helpers.c): a real broker on a private libuv loop (a one-node
 * cluster in a temporary directory, no listener, no admin API), sessions and
 * subscriptions made through the broker's own functions, and connections
 * without a socket whose output is decoded back into packets.
 *
 * Making, detaching and reading a struct conn is done here only (fx_connect,
 * fx_disconnect, fx_read); the suites set no more than what a client
 * announces in CONNECT (peer_receive_max, peer_alias_max, peer_max_packet)
 * and the bytes in writing, and look at paused. */
#ifndef STARLING_TEST_BROKER_HELPERS_H
#define STARLING_TEST_BROKER_HELPERS_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#include "../check_leaks.h"

/* The broker of the running test (NULL outside one). */
extern struct broker *fx_b;

/* Starts a broker with the embedded defaults but no listener, no admin API,
 * no $SYS, errors-only logging and the shortest election timeout; its config
 * (fx_b->cfg) may be changed afterwards (the delivery path reads it live).
 * Its per-turn flush is stopped: connections keep their output for fx_read.
 * Asserts success. */
void fx_start(void);
/* Ends a test: detaches and frees every connection, stops the broker, runs
 * the loop dry, frees it, asserts that no handle is left and (sanitized
 * builds) that nothing leaked. Assertions only count in the test body, so
 * every test ends with this. */
void fx_finish(void);
/* The suites' .fini: cleans up after a test that failed before fx_finish and
 * removes the temporary directory. */
void fx_teardown(void);

/* Runs the loop until pred(arg) holds or timeout_ms passed; returns whether
 * it held. */
bool fx_run_until(bool (*pred)(void *arg), void *arg, uint64_t timeout_ms);
/* Runs the loop until this node leads its one-node cluster (commits work). */
void fx_wait_leader(void);

/* Advances the loop's clock by at least ms milliseconds (real time passes). */
void fx_sleep(uint64_t ms);

/* --- sessions and subscriptions ---------------------------------------------------- */

/* A session of this node, offline, that never expires (broker__session_create). */
struct session *fx_session(const char *client_id);

struct fx_sub_opts {
    uint8_t qos;
    bool no_local;
    bool rap;          /* retain as published */
    uint32_t sub_id;   /* 0: none */
};
/* Applies a committed sub_add for s (broker__apply, as every node does);
 * returns the subscription made or updated. */
struct sub *fx_subscribe(struct session *s, const char *filter, struct fx_sub_opts o);
/* Applies a committed sub_del. */
void fx_unsubscribe(struct session *s, const char *filter);

/* --- messages ------------------------------------------------------------------------ */

/* A message (reference owned by the caller). expire_in_ms 0: never. */
struct msg *fx_msg(const char *topic, const char *payload, uint8_t qos, bool retain, const char *origin,
                   uint64_t expire_in_ms);
/* Routes a message as a publish from origin (NULL: none) would be; returns
 * the number of sessions it went to. */
uint32_t fx_route(const char *topic, const char *payload, uint8_t qos, bool retain, const char *origin);

/* --- connections ------------------------------------------------------------------------ */

/* A connection past CONNACK, without a socket, attached to s (what connect.c
 * does on a successful claim): protocol version (PROTO_V311 or PROTO_V5),
 * the client's Receive Maximum 65535. Nothing is resent or drained: see
 * fx_resume. */
struct conn *fx_connect(struct session *s, uint8_t version);
/* After fx_connect: the resend (session present) and drain of connect.c. */
void fx_resume(struct session *s, bool session_present);
/* The connection ends (socket gone): s goes offline with its inflight and
 * queued messages kept. Output not read is discarded. */
void fx_disconnect(struct session *s);

/* One packet the broker wrote, decoded (strings copied). */
struct fx_pkt {
    uint8_t type;
    uint8_t qos;
    bool dup, retain;
    uint16_t packet_id;
    uint8_t reason;              /* acks, DISCONNECT */
    char topic[128];             /* PUBLISH (empty when only an alias was sent) */
    char payload[256];
    uint32_t nids;               /* subscription identifiers (v5) */
    uint32_t ids[PROTO_MAX_DECODED_SUB_IDS];
    bool has_expiry;
    uint32_t expiry;             /* Message Expiry Interval left, seconds */
    uint16_t alias;              /* Topic Alias, 0: none */
};

#define FX_MAX_PKTS 64

/* Decodes (and consumes) every packet written to c since the last call into
 * out[0..max); asserts that the output is whole packets that decode. */
int fx_read(struct conn *c, struct fx_pkt *out, int max);
/* Expects that nothing was written to c since the last read. */
#define FX_EXPECT_SILENT(c)                                                                         \
    do {                                                                                            \
        struct fx_pkt fx_silent_[FX_MAX_PKTS];                                                      \
        cr_expect_eq(fx_read((c), fx_silent_, FX_MAX_PKTS), 0, "%s was sent a packet", (c)->client_id); \
    } while (0)
/* Bytes written to c and not read yet. */
size_t fx_pending(struct conn *c);

/* Feeds c a packet as if the client had sent it (broker__on_publish /
 * broker__on_ack). */
void fx_client_publish(struct conn *c, const char *topic, const char *payload, uint8_t qos, uint16_t pid,
                       bool dup);
void fx_client_ack(struct conn *c, uint8_t type, uint16_t pid, uint8_t reason);

#endif
