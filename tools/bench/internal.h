/* bench: private declarations of starling-bench, the MQTT load generator.
 *
 * starling-bench takes emqtt-bench's command line (conn, pub, sub) and runs every
 * client on one libuv loop in one process. The pure parts (options, topic
 * templates, payload stamps, the latency histogram, report formatting) have no
 * I/O of their own, so the unit tests call them directly; run.c and client.c hold
 * the event loop side.
 *
 * Everything here is private to tools/bench, hence the bench__ prefix. */
#ifndef STARLING_BENCH_INTERNAL_H
#define STARLING_BENCH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "buf.h"  /* common/: a client's write and partial-read buffers */
struct tls_conn;  /* common/tls.h: -S */
struct tls_ctx;
#include "list.h" /* common/: the options' owned copies */
#include "proto.h"

/* Limits of the tool itself. */
#define BENCH_MAX_HOSTS 16
#define BENCH_MAX_TOPICS 16
#define BENCH_MAX_IFADDRS 64
#define BENCH_MAX_CLIENTS 1000000u
#define BENCH_MAX_PAYLOAD (8u << 20)
#define BENCH_MAX_PACKET (16u << 20) /* largest packet accepted from a broker */
#define BENCH_MAX_TOPIC_LEN 65535u
#define BENCH_MAX_ERRORS 16 /* distinct error kinds counted in a run */

/* Exit statuses. */
#define BENCH_EXIT_OK 0
#define BENCH_EXIT_FAIL 1  /* ran, but clients failed (refused, unreachable, ...) */
#define BENCH_EXIT_USAGE 2 /* bad command line */

enum bench_mode {
    BENCH_CONN = 1,
    BENCH_PUB = 2,
    BENCH_SUB = 4,
};

/* --- histogram (hist.c) ----------------------------------------------------
 * Log-linear, HDR-like: values below 64 get a bucket each; above, every power of
 * two [2^e, 2^(e+1)) is split into 64 equal sub-buckets, so a reported value is
 * within 1/64 (1.6 %) of the true one. Values above 2^41-1 are clamped. Min, max
 * and the sum are kept exactly. */
#define BENCH_HIST_SUB_BITS 6
#define BENCH_HIST_SUB (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_MAX_EXP 40
#define BENCH_HIST_BUCKETS \
    (BENCH_HIST_SUB + (BENCH_HIST_MAX_EXP - BENCH_HIST_SUB_BITS + 1) * BENCH_HIST_SUB)
#define BENCH_HIST_MAX_VALUE ((UINT64_C(1) << (BENCH_HIST_MAX_EXP + 1)) - 1)

struct bench_hist {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    double sum;
    uint64_t buckets[BENCH_HIST_BUCKETS];
};

void bench__hist_init(struct bench_hist *h);
void bench__hist_record(struct bench_hist *h, uint64_t v);
/* Adds src's samples to dst (both borrowed). */
void bench__hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* The value at percentile p (0..100): the highest value of the bucket that holds
 * the sample of rank ceil(p/100 * count), clamped to [min, max]. 0 if empty. */
uint64_t bench__hist_percentile(const struct bench_hist *h, double p);
double bench__hist_mean(const struct bench_hist *h);
unsigned bench__hist_index(uint64_t v);
uint64_t bench__hist_lowest(unsigned index);
uint64_t bench__hist_highest(unsigned index);

/* --- topic templates (template.c) -----------------------------------------
 * Variables, replaced wherever they occur: %i client sequence number, %c client
 * id, %u user name (left as it is when there is none, as emqtt-bench does), %s
 * run-wide publish sequence (1 for the first message), %rand_N a random integer
 * in [1, N], drawn anew for each expansion. Any other '%' is literal. */
enum bench_tpl_kind {
    BENCH_TPL_LIT,
    BENCH_TPL_SEQ,
    BENCH_TPL_CLIENT_ID,
    BENCH_TPL_USER,
    BENCH_TPL_MSG_SEQ,
    BENCH_TPL_RAND,
};

struct bench_tpl_part {
    uint8_t kind;
    uint32_t off, len; /* literal: a slice of the source */
    uint64_t n;        /* %rand_N bound */
};

struct bench_tpl {
    char *src; /* owned copy */
    struct bench_tpl_part *parts;
    size_t nparts;
    bool per_message; /* has %s or %rand_N: expand for every message */
};

struct bench_tpl_ctx {
    uint64_t seq;
    const char *client_id; /* borrowed */
    const char *user;      /* borrowed, may be NULL */
    uint64_t msg_seq;
    uint64_t *rng; /* borrowed state for %rand_N */
};

/* Parses s (copied). 0, or -EINVAL with a message in err. */
int bench__tpl_parse(struct bench_tpl *t, const char *s, char *err, size_t errlen);
void bench__tpl_free(struct bench_tpl *t);
/* Writes the expansion into out (NUL-terminated when cap > 0, truncated to fit)
 * and returns its full length, like snprintf. */
size_t bench__tpl_expand(const struct bench_tpl *t, const struct bench_tpl_ctx *ctx, char *out,
                         size_t cap);
/* xorshift64*: never returns the same sequence for different non-zero seeds. */
uint64_t bench__rng_next(uint64_t *state);

/* --- payload stamps (payload.c) -------------------------------------------
 * Every payload of -s >= 12 bytes starts with a stamp: "SB1", one byte naming
 * the clock ('M' CLOCK_MONOTONIC, 'R' CLOCK_REALTIME), then the send time in
 * nanoseconds, 8 bytes big-endian. The rest is filler. A monotonic stamp can
 * only be compared on the same machine (any process: Linux has one
 * CLOCK_MONOTONIC per boot); a realtime stamp works across machines whose
 * clocks are synchronised well enough for the latencies measured. */
#define BENCH_STAMP_LEN 12
enum bench_clock {
    BENCH_CLOCK_MONOTONIC = 'M',
    BENCH_CLOCK_REALTIME = 'R',
};

uint64_t bench__clock_ns(int clock);
void bench__stamp_write(uint8_t *p, int clock, uint64_t ns);
/* 0 and fills clock and ns if p (len bytes) starts with a stamp, -1 if not. */
int bench__stamp_read(const uint8_t *p, size_t len, int *clock, uint64_t *ns);
/* Fills p with the filler pattern (printable, like emqtt-bench's 'a's). */
void bench__payload_fill(uint8_t *p, size_t len);

/* --- WebSocket (ws.c) --------------------------------------------------------
 * The client side of RFC 6455 for --ws: pure, client.c does the I/O. */
#define BENCH_WS_KEY_LEN 24         /* base64 of the 16-byte nonce */
#define BENCH_WS_MAX_HEAD 8192      /* the server's 101 answer, headers included */
#define BENCH_WS_PATH "/mqtt"       /* emqtt-bench's (emqtt's) path */
enum { BENCH_WS_CONT = 0, BENCH_WS_TEXT = 1, BENCH_WS_BINARY = 2, BENCH_WS_CLOSE = 8, BENCH_WS_PING = 9,
       BENCH_WS_PONG = 10 };

struct bench_ws_frame {
    bool fin;
    uint8_t opcode;
    const uint8_t *payload; /* points into the parsed bytes */
    size_t len;
};

/* Sec-WebSocket-Key from a seed (the same seed gives the same key, so a
 * client need not keep it). */
void bench__ws_key(uint64_t seed, char out[BENCH_WS_KEY_LEN + 1]);
/* Appends the upgrade request (subprotocol mqtt). 0, or -1 out of memory. */
int bench__ws_request(struct buf *out, const char *host, uint16_t port, const char *path, const char *key);
/* Checks the server's answer in p[0..len): 1 when it is a complete, valid 101
 * for key (*used = the bytes of its head), 0 when more is needed, -1 with a
 * message in err otherwise (not 101, no Upgrade, a wrong Sec-WebSocket-Accept,
 * a head above BENCH_WS_MAX_HEAD). */
int bench__ws_response(const uint8_t *p, size_t len, const char *key, size_t *used, char *err, size_t errlen);
/* Appends one final frame of opcode with p (n bytes) masked with mask. 0 or -1. */
int bench__ws_frame(struct buf *out, uint8_t opcode, const uint8_t *p, size_t n, uint32_t mask);
/* Decodes the frame at the start of p: its length when it is whole (f filled,
 * payload pointing into p), 0 when more is needed, -1 when it breaks RFC 6455
 * for a client (masked, reserved bits or opcodes, a control frame over 125
 * bytes or fragmented) or its payload exceeds max. */
long bench__ws_parse(const uint8_t *p, size_t len, size_t max, struct bench_ws_frame *f);

/* --- options (options.c) --------------------------------------------------- */
struct bench_opts {
    enum bench_mode mode;
    const char *hosts[BENCH_MAX_HOSTS]; /* point into owned */
    size_t nhosts;
    const char *ifaddrs[BENCH_MAX_IFADDRS];
    size_t nifaddrs;
    uint16_t port;
    uint8_t version; /* 3, 4 or 5 */
    uint32_t count;
    uint64_t start_number;
    uint32_t interval_ms;     /* between connection attempts */
    uint32_t conn_rate;       /* per second; overrides interval_ms when > 0 */
    uint32_t max_connecting;  /* handshakes in progress at once */
    uint32_t pub_interval_ms; /* per client; 0 = as fast as flow control allows */
    struct bench_tpl topics[BENCH_MAX_TOPICS];
    size_t ntopics;
    uint8_t qos;
    uint32_t size;
    const char *message; /* literal payload (-m), borrowed from argv */
    bool retain;
    uint16_t keepalive;
    bool clean;
    uint32_t session_expiry;
    uint64_t limit;            /* pub: messages in total; sub: messages received */
    uint64_t limit_per_client; /* pub */
    uint32_t inflight;         /* QoS 1/2 window per publisher; 0 = 65535 */
    const char *username, *password, *prefix;
    bool shortids;
    bool wait_before_publishing;
    uint32_t num_retry_connect;
    double duration_s; /* 0 = until limits or a signal */
    double connect_timeout_s;
    int clock; /* enum bench_clock */
    bool json;
    bool quiet;
    bool help;
    /* TLS (-S): the files are borrowed from argv; NULL when not given */
    bool ssl;
    const char *ssl_version; /* "tlsv1.2" or "tlsv1.3": that version only; NULL = either */
    const char *cacertfile;  /* set: verify the broker against it (and -h as its name) */
    const char *certfile, *keyfile;
    const char *ciphers;     /* emqtt-bench's comma list */
    bool ws;                 /* --ws: MQTT over WebSocket (wss with -S) on BENCH_WS_PATH */
    struct list owned; /* copies of comma lists (hosts and ifaddrs point into them) */
};

/* Parses the arguments that follow the subcommand (argv[0] is the first option).
 * 0 on success (o->help set for --help), -EINVAL with a one-line message in err
 * otherwise. Release with bench__opts_free either way. argv is borrowed and must
 * outlive o (-u, -P, -m, --prefix point into it); host and address lists and
 * topics are copied. o is not moved until freed (its list of copies links back
 * into it). */
int bench__opts_parse(struct bench_opts *o, enum bench_mode mode, int argc, char **argv,
                      char *err, size_t errlen);
void bench__opts_free(struct bench_opts *o);
void bench__usage(FILE *f, enum bench_mode mode);
void bench__usage_top(FILE *f);
const char *bench__mode_name(enum bench_mode mode);

/* --- statistics and reports (report.c) ------------------------------------- */
struct bench_errcount {
    int code; /* libuv error (< 0), or BENCH_ERR_* below */
    uint64_t n;
};

/* Failures that are not libuv errors. CONNACK refusals are
 * BENCH_ERR_CONNACK + reason code. */
#define BENCH_ERR_PROTOCOL 1 /* malformed or unexpected packet from the broker */
#define BENCH_ERR_DISCONNECT 2 /* DISCONNECT from the broker */
#define BENCH_ERR_TLS 3 /* the TLS handshake or a record failed */
#define BENCH_ERR_WS 4  /* the WebSocket upgrade was refused, or a frame broke RFC 6455 */
#define BENCH_ERR_CONNACK 0x1000

struct bench_stats {
    uint64_t started;    /* connection attempts begun (retries included) */
    uint64_t connecting; /* handshakes in progress now */
    uint64_t connected;  /* CONNACK accepted (cumulative) */
    uint64_t conn_failed; /* clients that gave up connecting */
    uint64_t lost;       /* connections closed by the broker or the network */
    uint64_t alive;      /* connected now */
    uint64_t subscribed, sub_failed; /* SUBSCRIBE entries granted / refused */
    uint64_t sent, acked, pub_failed, overrun;
    uint64_t recv, unstamped, bad_stamp;
    uint64_t t_start, t_end; /* ns, monotonic */
    uint64_t t_first_conn, t_last_conn, t_first_pub, t_last_pub, t_first_recv, t_last_recv;
    struct bench_errcount errors[BENCH_MAX_ERRORS];
    size_t nerrors;
};

void bench__stats_error(struct bench_stats *s, int code);
/* Human-readable name of an error code counted above ("connection refused",
 * "CONNACK 0x87 not authorized", ...), and a short symbolic one for JSON. */
const char *bench__error_message(int code, char *buf, size_t len);
const char *bench__error_name(int code, char *buf, size_t len);
/* Rate of n events over [t0, t1] in ns; 0 when the window is empty. */
double bench__rate(uint64_t n, uint64_t t0, uint64_t t1);

/* Everything a report needs, borrowed. */
struct bench_report {
    const struct bench_opts *opts;
    const struct bench_stats *stats;
    const struct bench_hist *latency; /* microseconds */
    const struct bench_hist *connect; /* microseconds */
    int exit_status;
};

void bench__report_progress(FILE *f, const struct bench_opts *o, const struct bench_stats *now,
                            const struct bench_stats *prev, double elapsed_s,
                            double interval_s);
void bench__report_text(FILE *f, const struct bench_report *r);
void bench__report_json(FILE *f, const struct bench_report *r);

/* --- the run (run.c) and its clients (client.c) ---------------------------- */
enum bench_client_state {
    BENCH_C_IDLE,       /* not started yet */
    BENCH_C_CONNECTING, /* TCP connect in progress */
    BENCH_C_HANDSHAKE,  /* CONNECT sent, waiting for CONNACK */
    BENCH_C_SUBSCRIBING,
    BENCH_C_READY,
    BENCH_C_CLOSING, /* uv_close in progress */
    BENCH_C_CLOSED,
};

struct bench_run;

struct bench_client {
    uv_tcp_t tcp;     /* tcp.data = this */
    uv_timer_t timer; /* publish pacing; timer.data = this */
    struct bench_run *run;
    uint32_t index;
    uint8_t state;
    uint8_t open_handles; /* closed when this drops to 0 */
    bool writing;         /* one uv_write outstanding at a time */
    bool disconnecting;   /* stopping: DISCONNECT queued, close once written */
    bool open;            /* counted in run->open_clients */
    bool publishing;
    bool pub_done;
    bool retry; /* reconnect once the handle is closed */
    bool settled; /* counted in run->settled */
    uint16_t next_pid;
    uint16_t window; /* QoS 1/2 send window */
    uint16_t inflight;
    uint32_t attempts;
    int fail_code; /* why the connection ended, 0 if it did not fail */
    uint64_t t_start;     /* connect start, ns */
    uint64_t t_last_send; /* for keep-alive */
    uint64_t t_pub_start;
    uint64_t sent;
    uint16_t keepalive;
    uv_connect_t creq;
    uv_write_t wreq;
    struct buf wbuf; /* the bytes being written */
    struct buf out;  /* bytes waiting for the current write to finish */
    struct buf pend; /* a partial packet read from the broker */
    char *topic; /* pub: the expanded topic when it does not vary per message */
    struct tls_conn *tls; /* -S: the session on this connection (owned); NULL for TCP */
    bool ws_upgrading;    /* --ws: the upgrade request sent, its 101 not read yet */
    struct buf ws_in;     /* --ws: a partial frame (or the 101's head) read so far */
    struct buf ws_ctrl;   /* --ws: frames to send before the next data (pongs) */
};

struct bench_run {
    uv_loop_t *loop;
    const struct bench_opts *opts;
    struct bench_client *clients;
    struct sockaddr_storage addrs[BENCH_MAX_HOSTS];
    struct sockaddr_storage ifaddrs[BENCH_MAX_IFADDRS];
    char client_id_prefix[300];
    uv_timer_t pace_timer; /* starts connections */
    uv_timer_t tick_timer; /* once a second: progress, keep-alive, timeouts */
    uv_timer_t stop_timer; /* --duration, then the grace period when stopping */
    uv_signal_t sigint, sigterm;
    uint64_t next_client; /* index of the next client to start */
    uint64_t settled;     /* clients whose connection phase is over */
    uint64_t limit_left;  /* pub: messages left under -L */
    uint64_t pub_done;    /* pub: clients that finished publishing */
    uint64_t inflight;    /* all clients */
    uint64_t writing;     /* clients with a write outstanding */
    uint64_t open_clients; /* clients with an open handle */
    uint64_t pace_start;  /* ns */
    uint64_t last_tick;
    uint64_t rng;
    uint64_t connect_timeout_ns;
    bool phase_done; /* all clients connected (and subscribed) or failed */
    bool publishing_allowed;
    bool stopping;
    bool forced;
    bool resource_exhausted;
    int signals;
    uint8_t *payload; /* filler of -s bytes, or the -m message */
    size_t payload_len;
    bool stamped; /* payloads carry a send-time stamp */
    FILE *progress; /* stdout, or stderr with --json */
    struct tls_ctx *tls_ctx; /* -S: the client context (common/tls.h), owned; NULL for TCP */
    struct buf plain;        /* -S: one read decrypted, consumed inside the read callback */
    bool tls_reported;       /* the first TLS failure's reason went to stderr */
    struct buf ws_plain;     /* --ws: one read's frame payloads, consumed inside the callback */
    uint64_t ws_seed;        /* --ws: the keys' seed (run-wide, random) */
    bool ws_reported;        /* the first WebSocket failure's reason went to stderr */
    struct bench_stats stats, prev;
    struct bench_hist latency;
    struct bench_hist connect;
    uint8_t rbuf[65536]; /* shared read buffer: consumed inside each read callback */
    char tbuf[BENCH_MAX_TOPIC_LEN + 1]; /* scratch for per-message topics */
};

/* run.c. The run borrows o (which must outlive it) and owns its clients. */
int bench__run_init(struct bench_run *r, uv_loop_t *loop, const struct bench_opts *o,
                    char *err, size_t errlen);
int bench__run(struct bench_run *r);
void bench__run_close(struct bench_run *r);
void bench__run_stop(struct bench_run *r);
void bench__run_settle(struct bench_run *r, struct bench_client *c);
void bench__run_check_done(struct bench_run *r);
void bench__run_client_closed(struct bench_run *r, struct bench_client *c);
void bench__run_limit_reached(struct bench_run *r);
void bench__client_id(const struct bench_run *r, const struct bench_client *c, char *out,
                      size_t cap);

/* client.c */
int bench__client_start(struct bench_client *c);
void bench__client_publish(struct bench_client *c);
void bench__client_stop(struct bench_client *c);
void bench__client_close(struct bench_client *c, int fail_code);
void bench__client_start_publishing(struct bench_client *c);
void bench__client_tick(struct bench_client *c, uint64_t now_ns, uint64_t now_ms);

#endif
