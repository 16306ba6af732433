/* Helpers shared by the cluster test suites (definitions in helpers.c): a
 * temporary directory per test, the leak check, commands as text, and real
 * nodes on a private libuv loop. */
#ifndef STARLING_TEST_CLUSTER_HELPERS_H
#define STARLING_TEST_CLUSTER_HELPERS_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "cluster.h"
#include "internal.h"
#include "store.h"

#include "../check_leaks.h"

/* A literal as a struct proto_str. */
#define S(lit) ((struct proto_str){(const uint8_t *)(lit), sizeof(lit) - 1})

/* Each test gets a fresh directory tmp_root from mkdtemp (removed by the
 * teardown). */
extern char tmp_root[64];
void tmp_setup(void);
void tmp_teardown(void);
/* tmp_root/name in a static ring of buffers (valid for a few calls). */
const char *tmp_path(const char *name);

/* --- text forms ------------------------------------------------------------------------ */

/* Every field of cmd on one line (strings escaped), appended to f. */
void cmd_print(FILE *f, const struct cluster_cmd *cmd);
/* cluster_load / cluster__state_load output as text, one cmd_print line each. */
int load_print_cb(void *file, const struct cluster_cmd *cmd);
char *state_load_text(struct store *s); /* malloc'd */
char *cluster_load_text(struct cluster *c);
/* cluster__state_dump / cluster_dump output (malloc'd). */
char *state_dump_text(struct store *s);
char *cluster_dump_text(const char *data_dir);

/* --- running a loop ------------------------------------------------------------------------ */

/* Runs loop one iteration at a time until pred(arg) holds or timeout_ms
 * passed; returns whether pred held. A private timer keeps the loop waking. */
bool run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, uint64_t timeout_ms);
/* Runs loop for ms milliseconds (a bounded wait for something that must NOT
 * happen). */
void run_for(uv_loop_t *loop, uint64_t ms);
/* Closes every handle still open (walk), runs the loop dry and closes it;
 * returns the number of handles that were still open. */
int loop_finish(uv_loop_t *loop);

/* --- a node ------------------------------------------------------------------------------------ */

struct applied {
    uint8_t type;
    char client_id[64];
    char topic[64];
    uint64_t generation;
    int result;
    uint64_t index;
};

struct node {
    uv_loop_t *loop;
    struct cluster_config cfg;
    struct cluster *c;
    char dir[256];
    char bind[64];
    char name[32];
    char secret[32];
    struct cluster_peer_cfg peers[8];
    char peer_addr[8][64];
    struct applied *applied;
    size_t n_applied, cap_applied;
    int reloads;
    int fatals;
    char fatal_msg[512];
    bool closed;
    bool verbose; /* log to stderr */
    int rejected_logs; /* "peer rejected" lines logged */
};

/* Fills n->cfg for node id with data dir dir (copied), one voter. */
void node_init(struct node *n, uv_loop_t *loop, uint32_t id, const char *dir);
/* cluster_start + cluster_run, asserting success. */
void node_start(struct node *n);
/* cluster_start only; returns its result, the message in err. */
int node_try_start(struct node *n, char *err, size_t errlen);
/* cluster_close and run the loop until its callback ran (asserted). */
void node_close(struct node *n);
void node_free(struct node *n);
bool node_is_leader(void *n);
struct cluster_status node_status(struct node *n);

/* A proposal's completion. */
struct done {
    int calls;
    int status;
    int result;
};
void done_cb(void *arg, int status, int result);
bool done_fired(void *d);

/* Commands with the given fields, all other fields zero (views borrowed). */
struct cluster_cmd cmd_claim(const char *id, uint32_t node, uint64_t gen, bool clean);
struct cluster_cmd cmd_sub(uint8_t type, const char *id, uint64_t gen, const char *filter);
struct cluster_cmd cmd_retain(const char *topic, const char *payload);

/* Proposes cmd and runs the loop until d (caller-owned, zeroed here) saw its
 * completion (asserted). */
void propose_wait(struct node *n, const struct cluster_cmd *cmd, struct done *d);

/* run_until predicate: DIR (a path) holds a snapshot-* file of libraft. */
bool has_snapshot(void *dir);

/* --- a group of nodes in one process -------------------------------------------------------- */

#define GROUP_MAX 8

/* Fills nodes[0..total) (node ids 1..total, data dirs tmp_root/n1...): node i
 * listens on 127.0.0.i (its own loopback address, so that a test can tell the
 * connections between two nodes apart) on a free port; the first `voters` are
 * the voters of one cluster, the others one-voter clusters of their own with
 * the same name and secret. Election timeout 500 ms, heartbeat 50 ms. Ignores
 * SIGPIPE, as starlingd does. */
void group_init(uv_loop_t *loop, struct node *nodes, int total, int voters);
/* node_start for every node in mask (bit i: nodes[i]). */
void group_start(struct node *nodes, int n, unsigned mask);
/* Exactly one leader among the nodes in mask, known to all of them: returns
 * its index (asserted within 10 s). */
int group_wait_leader(struct node *nodes, int n, unsigned mask);
/* Ends a test: closes every running node, asserts that no handle is left on
 * the loop and (sanitized builds) that nothing leaked. Assertions only count
 * in the test body, so every test ends with this. */
void group_finish(struct node *nodes, int n);
/* The suite's teardown: cleans up after a test that failed before
 * group_finish, removes tmp_root. */
void group_teardown(struct node *nodes, int n);
/* Cuts every TCP connection on loop between the nodes of index i and j (both
 * ends, Raft's and the data links: shutdown(2), as a network fault would);
 * returns how many sockets were shut down. */
int group_sever(uv_loop_t *loop, int i, int j);

/* --- raw sockets ------------------------------------------------------------------------------ */

/* A port nothing listens on right now at ip (bound, read back, released). */
int free_port(const char *ip);
int port_of(const struct node *n);
/* A blocking TCP connection to n's cluster port. */
int tcp_dial(const struct node *n);
/* run_until predicate on an int fd: the peer closed it (EOF or reset),
 * draining whatever it sent first. */
bool peer_closed(void *fd);

/* Reading exactly want bytes from a non-blocking socket while the loop runs. */
struct sock_read {
    int fd;
    uint8_t buf[512];
    size_t have, want;
    bool eof;
};
bool read_done(void *sock_read);
/* Reads n bytes (asserted within 3 s, without EOF). */
void read_exactly(uv_loop_t *loop, struct sock_read *r, size_t n);
void put_le(uint8_t *p, uint64_t v, int n);

/* Dials target as node `id` on `channel` following the handshake in peer.c
 * byte for byte, knowing `secret`; tamper makes the MAC cover another channel
 * than the hello names. Returns the socket after the node's OK (verified), or
 * -1 with *rejected set when the node closed the connection instead. */
int handshake_as_dialer(struct node *target, const char *secret, uint8_t channel, uint64_t id, bool tamper,
                        bool *rejected);

#endif
