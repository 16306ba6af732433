/* harness: one real broker per fuzzer process, for the targets that speak to
 * it as a client would (fuzz_broker: MQTT; fuzz_admin: the HTTP admin API;
 * fuzz_cluster: a peer on the cluster port). The broker runs on a private
 * loop in this thread, a one-node cluster in a temporary directory (on tmpfs
 * when there is one, so commits are quick), with an MQTT listener, the admin
 * API and the cluster port on free loopback ports. Its log is off unless
 * HARNESS_VERBOSE is set (debug level). Inputs go over loopback
 * (harness_exchange*) or, for fuzz_admin and fuzz_cluster unless
 * STARLING_FUZZ_SOCKET is set, straight into the connection code. */
#ifndef STARLING_FUZZ_HARNESS_H
#define STARLING_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

struct broker;

/* Starts the broker and waits until it leads its cluster; exits the process
 * on failure. Later calls do nothing. harness.c's LLVMFuzzerInitialize calls
 * it, so a target's own code starts with the node serving. */
void harness_start(void);
/* The broker (after harness_start). */
struct broker *harness_broker(void);
int harness_mqtt_port(void);
int harness_admin_port(void);
int harness_cluster_port(void);

/* One connection's life: connects to port, sends data (borrowed), shuts the
 * write side down, and runs the broker's loop while reading (and dropping)
 * what it answers, until it closes the connection. Then runs the loop until
 * the broker has no client connection left, so that one input starts where
 * the last one left off. Aborts (a fuzzer finding) when the broker keeps the
 * connection open for more than timeout_ms after the client's end of stream,
 * or still holds it then. Returns the number of bytes the broker answered. */
size_t harness_exchange(int port, const uint8_t *data, size_t size, uint64_t timeout_ms);

/* The same after the cluster port's handshake (cluster/peer.c) as node
 * (not a member) on channel (1 Raft, 2 forward, 3 data link), with the
 * harness's cluster secret: data is what an authenticated peer sends. */
size_t harness_exchange_peer(uint8_t channel, uint32_t node, const uint8_t *data, size_t size, uint64_t timeout_ms);

/* The same with no socket (cluster__peer_feed, cluster/cluster.h): channel 0
 * for raw bytes into the handshake parser, 2 or 3 for what an authenticated
 * node sends on that channel; then one turn of the loop (harness_poll).
 * Returns cluster__peer_feed's result. */
int harness_feed_peer(uint8_t channel, uint32_t node, const uint8_t *data, size_t size);

/* When the node stopped (a fatal error, or a peer told it it was removed) or
 * is no longer the leader 2 s later, starts a fresh one in a new directory,
 * so that the next input finds a serving node. */
void harness_reset_if_stopped(void);
/* Runs the node's loop for ms milliseconds (less if it stops), e.g. so that
 * what an input proposed is committed and applied. */
void harness_settle(uint64_t ms);
/* Whether the node stopped itself (a fatal error). */
int harness_stopped(void);

/* One turn of the node's loop that does not wait (due timers, ready I/O):
 * the socketless targets call it once per input, so that what an input
 * started (a cluster operation, a write) makes progress. */
void harness_poll(void);
/* Whether STARLING_FUZZ_SOCKET is set (not "0"): fuzz_admin and fuzz_cluster
 * then send each input over a loopback connection as before (slow, but
 * through accept, the read callbacks and, for fuzz_cluster, commits). */
int harness_socket(void);

#endif
