/* broker configuration: the settings of one node, from embedded defaults, a
 * config file (`key value` lines, '#' comments) and command-line flags, in that
 * order of precedence (flags win). */
#ifndef STARLING_BROKER_CONFIG_H
#define STARLING_BROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_LISTENERS 8
#define CONFIG_MAX_PEERS 16

enum config_queue_policy {
    CONFIG_QUEUE_DROP_NEW = 0,    /* a full queue refuses the newest message (default) */
    CONFIG_QUEUE_DROP_OLDEST = 1, /* a full queue drops its oldest message */
};

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN = 1,
    LOG_INFO = 2,
    LOG_DEBUG = 3,
    LOG_TRACE = 4,
};

/* One listening socket: its transport ("tcp", "tls", "ws", "wss") and, for
 * tls and wss, its TLS settings (broker/listeners.c builds the context). */
struct config_listener {
    char bind[64];      /* address, "0.0.0.0" by default; "::" for IPv6 */
    uint16_t port;
    char transport[8];  /* "tcp" (default) */
    /* TLS (tls and wss listeners); "" = not set. In a file these keys apply
     * to the most recent `listener` line, with --set to the last listener. */
    char certfile[256];
    char keyfile[256];
    char cafile[256];
    char capath[256];
    char crlfile[256];
    char ciphers[256];       /* TLS 1.2 cipher list (OpenSSL syntax) */
    char ciphersuites[256];  /* TLS 1.3 suites */
    char tls_version[8];     /* minimum: "tlsv1.2" (default, 1.2 and 1.3) or "tlsv1.3" */
    bool require_certificate;
    bool use_identity_as_username;
    /* WebSocket (ws and wss listeners): the path of the upgrade; "" = "/mqtt" */
    char ws_path[256];
};

struct config_peer {
    uint32_t id;
    char address[64];   /* host:port of the cluster port */
};

struct config {
    /* where the config came from, for messages */
    char path[512];

    struct config_listener listeners[CONFIG_MAX_LISTENERS];
    int listener_count;
    /* bookkeeping: set once a `listener`, `port` or `bind` setting has replaced
     * the default listener, so that later `listener` lines add rather than replace */
    bool listeners_explicit;

    char data_dir[512];          /* "./starling-data" */
    int log_level;               /* enum log_level, LOG_INFO; -v raises it by one per v */

    /* limits (0 = unlimited where noted) */
    uint32_t max_connections;    /* 0 = unlimited; default 100000 */
    bool max_connections_explicit; /* set by the user: kept even when the descriptors do not allow it */
    uint32_t fd_reserve;         /* descriptors kept for the store, the Raft log and the cluster; default 64 */
    uint32_t connect_timeout;    /* seconds a new connection has to complete its CONNECT; default 10 */
    uint32_t packet_timeout;     /* seconds a packet may take to arrive once it began; default 30 */
    uint32_t max_partial_bytes;  /* bytes of incomplete packets held, node-wide; default 64 MiB */
    uint32_t max_packet_size;    /* bytes, incoming and announced; default 1048576 */
    uint16_t max_inflight;       /* outgoing QoS 1/2 window per client; default 64 */
    uint16_t receive_maximum;    /* incoming QoS 1/2 window announced to clients; default 1024 */
    uint32_t max_queued;         /* offline/pending queue per session, messages; 0 = unlimited; default 1000 */
    int queue_policy;            /* enum config_queue_policy */
    uint32_t max_queued_bytes;   /* the same queue in message bytes; 0 = unlimited; default 16 MiB */
    uint32_t max_queued_bytes_total; /* all sessions' queues of this node, bytes; 0 = unlimited; default 256 MiB */
    uint32_t max_retained;       /* retained messages in the cluster; 0 = unlimited; default 1000000 */
    uint32_t max_retained_bytes; /* their bytes (topic, payload, properties); 0 = unlimited; default 256 MiB */
    uint32_t max_write_backlog;  /* bytes unwritten to one connection before backpressure; default 262144 */
    uint32_t slow_consumer_timeout_ms; /* longest hold of publishers for one subscriber, 0 = none; default 5000 */
    uint32_t max_topic_levels;   /* default 128 */
    uint32_t max_subscriptions;  /* per client, 0 = unlimited; default 0 */
    uint16_t max_keepalive;      /* seconds; a larger client keep alive is lowered via Server Keep Alive (v5); default 65535 */
    uint16_t topic_alias_maximum;/* incoming topic aliases announced; default 64 */
    uint32_t max_session_expiry; /* seconds, 0xFFFFFFFF = never; default 0xFFFFFFFF */
    bool retain_available;       /* default true */
    bool allow_zero_length_clientid; /* default true */
    uint8_t max_qos;             /* default 2 */
    bool durable_sessions;       /* QoS 1/2 for persistent sessions through the replicated log; default true */

    uint32_t sys_interval;       /* seconds between $SYS updates, 0 = off; default 10 */

    /* cluster (used from the replicated-state issue on) */
    uint32_t node_id;            /* default 1 */
    char cluster_bind[64];       /* default "0.0.0.0:4370" */
    char cluster_secret[128];    /* default "" */
    struct config_peer peers[CONFIG_MAX_PEERS];
    int peer_count;
    uint32_t commit_timeout_ms;  /* default 5000 */
    char cluster_name[64];       /* default "starling"; recorded in the data dir */
    uint32_t election_timeout_ms;/* default 1000 */
    uint32_t heartbeat_ms;       /* default 10 */
    uint32_t snapshot_threshold; /* log entries between snapshots; default 4096 */
    uint32_t snapshot_trailing;  /* entries kept after a snapshot; default 8192 */
    uint32_t store_max_mb;       /* LMDB map size, MiB; default 1024 */

    /* HTTP admin API (broker/admin/) */
    char admin_listen[72];       /* IP:PORT ([IPv6]:PORT) or "off"; default "127.0.0.1:18083" */
    char admin_token[128];       /* non-empty: the bearer token every request must carry; default "" */
    char admin_certfile[512];    /* with admin_keyfile: the admin API speaks HTTPS only; default "" */
    char admin_keyfile[512];     /* PEM private key of admin_certfile; default "" */
    char admin_cafile[512];      /* set: clients must present a certificate signed by it; default "" */
    uint32_t admin_idle_timeout; /* seconds an admin connection may wait between requests; default 10 */
    uint32_t admin_request_timeout; /* seconds a request may take to arrive once it began; default 10 */
    uint32_t admin_max_conns_per_peer; /* admin connections from one address; default 8 */

    /* TLS on the cluster's peer links (PEM paths, "" = plaintext links) */
    char cluster_certfile[512];  /* this node's certificate (chain); default "" */
    char cluster_keyfile[512];   /* its private key; default "" */
    char cluster_cafile[512];    /* the cluster's CA: every peer's certificate must chain to it; default "" */
    char cluster_crlfile[512];   /* optional CRL of that CA; default "" */
    /* authentication and authorization (broker/auth.c, docs/auth.md) */
    char password_file[512];     /* mosquitto_passwd's format; "" = none (default) */
    char acl_file[512];          /* Mosquitto's ACL format; "" = none (default) */
    int8_t allow_anonymous;      /* -1 = not set (default: see docs/auth.md), 0 false, 1 true */
    bool acl_deny_disconnect;    /* a PUBLISH the ACL denies closes the connection; default false */
    bool require_clientid_username; /* a user's client id is its name or "NAME:..." (docs/auth.md); default false */
};

/* Fills c with the embedded defaults (one tcp listener on 0.0.0.0:1883). */
void config_defaults(struct config *c);

/* Reads a config file over what c holds. On error returns a negative value and
 * writes a one-line message naming the file and line number into err. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);

/* Applies one `key value` setting (the same keys as the file). Returns 0, or a
 * negative value with a message in err. */
int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen);

/* Parses argv: -c/--config FILE (loaded first, whatever its position), then
 * -p/--port N, --bind ADDR, --data-dir DIR, -v (repeatable), --set KEY=VALUE.
 * Returns 0 to run, 1 when --help or --version was printed (exit 0), or a
 * negative value after writing a message to err (exit non-zero). *dump is set
 * when --dump was given (print the node's state and exit; later issues). */
int config_parse_args(struct config *c, int argc, char **argv, bool *dump, char *err, size_t errlen);

/* Splits HOST:PORT ("[IPv6]:PORT" for an IPv6 literal) into host (brackets
 * removed, NUL-terminated, shorter than hostlen) and port. Returns 0, or
 * -EINVAL when s is not of that form with a port 1..65535 (host untouched). */
int config_hostport_split(const char *s, char *host, size_t hostlen, uint16_t *port);

/* Private to config.c and config_args.c: sets key as config_set does, naming
 * it label (the flag it came from) in messages. */
int config__set_flag(struct config *c, const char *key, const char *label, const char *value, char *err,
                     size_t errlen);
/* ... and writes a message into err (nothing when err is NULL or errlen 0). */
void config__msg(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes the effective configuration as a config file (for --help style output
 * and tests). */
void config_print(const struct config *c, void *file /* FILE * */);

#endif
