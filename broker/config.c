/* config: the node's settings from embedded defaults, a `key value` file and
 * command-line flags (parsed in config_args.c), validated against one table
 * of keys.
 *
 * Every key is the name of the struct config field it sets, except the
 * repeatable `listener` and `peer` lines and the `port` / `bind` shorthands for
 * the first listener. Ranges (checked by config_set, the file and --set alike):
 *
 *   key                         value                                    default
 *   listener                    PORT [BIND_ADDRESS] [TRANSPORT]          1883 0.0.0.0 tcp
 *                               port 1..65535, address an IPv4/IPv6 literal,
 *                               transport tcp|tls|ws|wss, at most 8 listeners;
 *                               the first one replaces the default listener
 *   port                        1..65535 (first listener)                1883
 *   bind                        IPv4/IPv6 literal (first listener)       0.0.0.0
 *   data_dir                    path, 1..511 bytes                       ./starling-data
 *   log_level                   error|warn|info|debug|trace              info
 *   max_connections             0..4294967295, 0 = unlimited             100000
 *   fd_reserve                  0..1000000 descriptors kept free         64
 *   connect_timeout             1..3600 s to complete CONNECT            10
 *   packet_timeout              1..3600 s a started packet may take      30
 *   max_partial_bytes           0..4294967295 bytes of incomplete        67108864
 *                               packets node-wide, k/m suffix, 0 = none
 *   max_packet_size             16..268435455 bytes, k/m suffix = KiB/MiB 1048576
 *   max_inflight                1..65535                                 64
 *   receive_maximum             1..65535 (MQTT 5 forbids 0)              1024
 *   max_queued                  0..4294967295, 0 = unlimited             1000
 *   queue_policy                drop_new|drop_oldest                     drop_new
 *   max_queued_bytes            0..4294967295 bytes, k/m suffix, 0 = unlimited 16m
 *   max_queued_bytes_total      0..4294967295 bytes, k/m suffix, 0 = unlimited 256m
 *   max_retained                0..4294967295, 0 = unlimited             1000000
 *   max_retained_bytes          0..4294967295 bytes, k/m suffix, 0 = unlimited 256m
 *   max_write_backlog           4096..1073741824 bytes, k/m suffix       262144
 *   slow_consumer_timeout_ms    0..600000, 0 = drop at once, no holding  5000
 *   max_topic_levels            1..65535                                 128
 *   max_subscriptions           0..4294967295, 0 = unlimited             0
 *   max_keepalive               1..65535 seconds                         65535
 *   topic_alias_maximum         0..65535, 0 = no topic aliases           64
 *   max_session_expiry          0..4294967295 s, 4294967295 = never      4294967295
 *   retain_available            boolean                                  true
 *   allow_zero_length_clientid  boolean                                  true
 *   max_qos                     0..2                                     2
 *   durable_sessions            boolean                                  true
 *   sys_interval                0..86400 seconds, 0 = off                10
 *   node_id                     1..65535 (Raft ids are non-zero)         1
 *   cluster_bind                HOST:PORT, at most 63 bytes              0.0.0.0:4370
 *   cluster_secret              string, 0..127 bytes                     ""
 *   peer                        ID HOST:PORT, id 1..65535, unique,       (none)
 *                               at most 16 peers
 *   commit_timeout_ms           10..600000                               5000
 *   cluster_name                string, 1..63 bytes, no spaces           starling
 *   election_timeout_ms         100..60000                               1000
 *   heartbeat_ms                1..10000, below election_timeout_ms      10
 *   snapshot_threshold          16..10000000 entries                     4096
 *   snapshot_trailing           0..10000000 entries                      8192
 *   store_max_mb                1..1048576 MiB (LMDB map size)           1024
 *   admin_listen                IP:PORT of the HTTP admin API, or off    127.0.0.1:18083
 *                               (an IPv4 literal or a bracketed IPv6 one)
 *   admin_token                 string, 0..127 bytes; non-empty: every   ""
 *                               request needs Authorization: Bearer it
 *   admin_certfile              path of a PEM certificate chain; with    ""
 *                               admin_keyfile the admin API is HTTPS only
 *   admin_keyfile               path of its PEM private key              ""
 *   admin_cafile                path of PEM CAs: HTTPS clients must      ""
 *                               present a certificate signed by one
 *   admin_idle_timeout          1..3600 s between requests               10
 *   admin_request_timeout       1..3600 s for one request to arrive      10
 *   admin_max_conns_per_peer    1..128 connections from one address      8
 *   cluster_certfile            path, 0..511 bytes: TLS peer links       ""
 *   cluster_keyfile             path, 0..511 bytes                       ""
 *   cluster_cafile              path, 0..511 bytes                       ""
 *   cluster_crlfile             path, 0..511 bytes                       ""
 *   password_file               path, 0..511 bytes ("" = none)           ""
 *   acl_file                    path, 0..511 bytes ("" = none)           ""
 *   allow_anonymous             boolean, or unset: anonymous clients only (unset)
 *                               while no password_file is given and every
 *                               listener is on loopback (docs/auth.md)
 *   acl_deny_disconnect         boolean: a denied PUBLISH closes the     false
 *                               connection instead of being dropped
 *   require_clientid_username   boolean: a user's client id must be its  false
 *                               name or start with "NAME:" (docs/auth.md)
 *
 * Per listener (tls and wss), applying to the most recent `listener` line
 * (the default listener before any), with --set to the last listener:
 *   certfile, keyfile           PEM certificate chain and its key        (none)
 *   cafile, capath              CAs client certificates are checked on   (none)
 *   crlfile                     PEM CRL client certificates are checked on (none)
 *   ciphers, ciphersuites       TLS 1.2 cipher list / TLS 1.3 suites     OpenSSL's
 *   tls_version                 tlsv1.2 (1.2 and 1.3) | tlsv1.3          tlsv1.2
 *   require_certificate         boolean: refuse clients without a valid one false
 *   use_identity_as_username    boolean: the certificate's CN (or SAN)   false
 *                               becomes the username
 *   paths and cipher lists at most 255 bytes
 * Per listener (ws and wss), the same way:
 *   ws_path                     the HTTP path of the WebSocket upgrade,  /mqtt
 *                               starting with '/', at most 255 bytes
 *
 * Booleans are true/false, yes/no, on/off or 1/0. Values may not contain
 * control characters other than tab (config_print could not write them back).
 *
 * File syntax: one `key value` per line; blank lines and lines starting with
 * '#' are ignored, so is a '#' preceded by whitespace and everything after it;
 * surrounding whitespace is trimmed. A value wrapped in double quotes is taken
 * literally ('#' and spaces included) with \" and \\ as the only escapes.
 * Loading is all or nothing: on error the struct is left as it was. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_LINE 4096

enum key_kind {
    KIND_UINT,      /* unsigned integer field of 1, 2 or 4 bytes */
    KIND_SIZE,      /* as KIND_UINT, with a k/m suffix */
    KIND_BOOL,
    KIND_STRING,    /* char array; min = minimum length */
    KIND_HOSTPORT,  /* char array holding HOST:PORT */
    KIND_LISTEN,    /* char array holding IP:PORT or "off" */
    KIND_LOG_LEVEL,
    KIND_QUEUE_POLICY,
    KIND_LISTENER,
    KIND_PORT,      /* first listener's port */
    KIND_BIND,      /* first listener's address */
    KIND_PEER,
    KIND_OPT_BOOL,  /* int8_t: -1 not set, 0 false, 1 true */
    KIND_LISTENER_TEXT, /* char array of the last listener (off/size in struct config_listener) */
    KIND_LISTENER_BOOL, /* bool of the last listener */
    KIND_TLS_VERSION,   /* the last listener's tls_version */
};

struct config_key {
    const char *name;
    enum key_kind kind;
    size_t off, size;
    uint64_t min, max;
    const char *group;  /* heading config_print writes before this key */
};

#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define LFIELD(f) offsetof(struct config_listener, f), sizeof(((struct config_listener *)0)->f)
#define KEY_UINT(f, lo, hi) {#f, KIND_UINT, FIELD(f), lo, hi, NULL}

static const struct config_key config_keys[] = {
    {"listener", KIND_LISTENER, 0, 0, 0, 0, "listeners"},
    {"port", KIND_PORT, 0, 0, 1, 65535, NULL},
    {"bind", KIND_BIND, 0, 0, 0, 0, NULL},

    {"max_connections", KIND_UINT, FIELD(max_connections), 0, UINT32_MAX, "limits"},
    KEY_UINT(fd_reserve, 0, 1000000),
    KEY_UINT(connect_timeout, 1, 3600),
    KEY_UINT(packet_timeout, 1, 3600),
    {"max_partial_bytes", KIND_SIZE, FIELD(max_partial_bytes), 0, UINT32_MAX, NULL},
    {"max_packet_size", KIND_SIZE, FIELD(max_packet_size), 16, 268435455, NULL},
    KEY_UINT(max_inflight, 1, 65535),
    KEY_UINT(receive_maximum, 1, 65535),
    KEY_UINT(max_topic_levels, 1, 65535),
    KEY_UINT(max_subscriptions, 0, UINT32_MAX),
    KEY_UINT(topic_alias_maximum, 0, 65535),
    KEY_UINT(max_qos, 0, 2),
    {"retain_available", KIND_BOOL, FIELD(retain_available), 0, 0, NULL},

    {"max_keepalive", KIND_UINT, FIELD(max_keepalive), 1, 65535, "sessions"},
    KEY_UINT(max_session_expiry, 0, UINT32_MAX),
    KEY_UINT(max_queued, 0, UINT32_MAX),
    {"queue_policy", KIND_QUEUE_POLICY, FIELD(queue_policy), 0, 0, NULL},
    {"max_queued_bytes", KIND_SIZE, FIELD(max_queued_bytes), 0, UINT32_MAX, NULL},
    {"max_queued_bytes_total", KIND_SIZE, FIELD(max_queued_bytes_total), 0, UINT32_MAX, NULL},
    KEY_UINT(max_retained, 0, UINT32_MAX),
    {"max_retained_bytes", KIND_SIZE, FIELD(max_retained_bytes), 0, UINT32_MAX, NULL},
    {"max_write_backlog", KIND_SIZE, FIELD(max_write_backlog), 4096, 1073741824, NULL},
    KEY_UINT(slow_consumer_timeout_ms, 0, 600000),
    {"allow_zero_length_clientid", KIND_BOOL, FIELD(allow_zero_length_clientid), 0, 0, NULL},
    {"durable_sessions", KIND_BOOL, FIELD(durable_sessions), 0, 0, NULL},

    {"sys_interval", KIND_UINT, FIELD(sys_interval), 0, 86400, "$SYS"},

    {"log_level", KIND_LOG_LEVEL, FIELD(log_level), 0, 0, "logging"},

    {"data_dir", KIND_STRING, FIELD(data_dir), 1, 0, "storage"},

    {"node_id", KIND_UINT, FIELD(node_id), 1, 65535, "cluster"},
    {"cluster_bind", KIND_HOSTPORT, FIELD(cluster_bind), 0, 0, NULL},
    {"cluster_secret", KIND_STRING, FIELD(cluster_secret), 0, 0, NULL},
    {"peer", KIND_PEER, 0, 0, 1, 65535, NULL},
    KEY_UINT(commit_timeout_ms, 10, 600000),
    {"cluster_name", KIND_STRING, FIELD(cluster_name), 1, 0, NULL},
    KEY_UINT(election_timeout_ms, 100, 60000),
    KEY_UINT(heartbeat_ms, 1, 10000),
    KEY_UINT(snapshot_threshold, 16, 10000000),
    KEY_UINT(snapshot_trailing, 0, 10000000),
    KEY_UINT(store_max_mb, 1, 1048576),

    {"admin_listen", KIND_LISTEN, FIELD(admin_listen), 0, 0, "admin API"},
    {"admin_token", KIND_STRING, FIELD(admin_token), 0, 0, NULL},
    {"admin_certfile", KIND_STRING, FIELD(admin_certfile), 0, 0, NULL},
    {"admin_keyfile", KIND_STRING, FIELD(admin_keyfile), 0, 0, NULL},
    {"admin_cafile", KIND_STRING, FIELD(admin_cafile), 0, 0, NULL},
    KEY_UINT(admin_idle_timeout, 1, 3600),
    KEY_UINT(admin_request_timeout, 1, 3600),
    KEY_UINT(admin_max_conns_per_peer, 1, 128),

    {"cluster_certfile", KIND_STRING, FIELD(cluster_certfile), 0, 0, "cluster TLS"},
    {"cluster_keyfile", KIND_STRING, FIELD(cluster_keyfile), 0, 0, NULL},
    {"cluster_cafile", KIND_STRING, FIELD(cluster_cafile), 0, 0, NULL},
    {"cluster_crlfile", KIND_STRING, FIELD(cluster_crlfile), 0, 0, NULL},
    {"password_file", KIND_STRING, FIELD(password_file), 0, 0, "authentication"},
    {"acl_file", KIND_STRING, FIELD(acl_file), 0, 0, NULL},
    {"allow_anonymous", KIND_OPT_BOOL, FIELD(allow_anonymous), 0, 0, NULL},
    {"acl_deny_disconnect", KIND_BOOL, FIELD(acl_deny_disconnect), 0, 0, NULL},
    {"require_clientid_username", KIND_BOOL, FIELD(require_clientid_username), 0, 0, NULL},
    /* per listener: the last one (config_print writes them after its line) */
    {"certfile", KIND_LISTENER_TEXT, LFIELD(certfile), 0, 0, NULL},
    {"keyfile", KIND_LISTENER_TEXT, LFIELD(keyfile), 0, 0, NULL},
    {"cafile", KIND_LISTENER_TEXT, LFIELD(cafile), 0, 0, NULL},
    {"capath", KIND_LISTENER_TEXT, LFIELD(capath), 0, 0, NULL},
    {"crlfile", KIND_LISTENER_TEXT, LFIELD(crlfile), 0, 0, NULL},
    {"ciphers", KIND_LISTENER_TEXT, LFIELD(ciphers), 0, 0, NULL},
    {"ciphersuites", KIND_LISTENER_TEXT, LFIELD(ciphersuites), 0, 0, NULL},
    {"tls_version", KIND_TLS_VERSION, LFIELD(tls_version), 0, 0, NULL},
    {"require_certificate", KIND_LISTENER_BOOL, LFIELD(require_certificate), 0, 0, NULL},
    {"use_identity_as_username", KIND_LISTENER_BOOL, LFIELD(use_identity_as_username), 0, 0, NULL},
    {"ws_path", KIND_LISTENER_TEXT, LFIELD(ws_path), 0, 0, NULL},
};

#define N_KEYS (sizeof(config_keys) / sizeof(config_keys[0]))

static const char *const log_level_names[] = {"error", "warn", "info", "debug", "trace"};
static const char *const queue_policy_names[] = {"drop_new", "drop_oldest"};
static const char *const transports[] = {"tcp", "tls", "ws", "wss"};

/* ---- messages ------------------------------------------------------------- */

void config__msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A value as it may appear inside a one-line message: at most 64 bytes, control
 * characters and quotes replaced. */
static const char *shown(const char *v, char out[72])
{
    size_t i;
    for (i = 0; v[i] != '\0' && i < 64; i++)
        out[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f || v[i] == '"') ? '?' : v[i];
    if (v[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* ---- value parsers ------------------------------------------------------------ */

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

static bool has_control(const char *s)
{
    for (; *s != '\0'; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return true;
    return false;
}

/* Decimal, optionally (size) followed by k or m. Returns 0, -EINVAL when s is
 * not a number, -ERANGE when it is negative or does not fit in 64 bits. */
static int parse_uint(const char *s, bool size, uint64_t *out)
{
    bool negative = false;
    uint64_t v = 0;
    const char *p = s;

    if (*p == '-') {
        negative = true;
        p++;
    }
    if (*p < '0' || *p > '9')
        return -EINVAL;
    bool overflow = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    if (size && (*p == 'k' || *p == 'K' || *p == 'm' || *p == 'M')) {
        unsigned shift = (*p == 'k' || *p == 'K') ? 10 : 20;
        if (v > (UINT64_MAX >> shift))
            overflow = true;
        v <<= shift;
        p++;
    }
    if (*p != '\0')
        return -EINVAL;
    if (negative || overflow)
        return -ERANGE;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_name(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(s, names[i]) == 0)
            return (int)i;
    return -EINVAL;
}

static bool valid_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int config_hostport_split(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    uint64_t p;

    if (colon == NULL || colon == s || parse_uint(colon + 1, false, &p) != 0 || p < 1 || p > 65535)
        return -EINVAL;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']')
            return -EINVAL;
        h++;
        hlen -= 2;
    }
    if (hlen >= hostlen)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* HOST:PORT where HOST is a name, an IPv4 literal or a bracketed IPv6 literal
 * and PORT is 1..65535. */
static bool valid_hostport(const char *s, size_t maxlen)
{
    char host[64];
    uint16_t port;
    unsigned char buf[16];

    if (strlen(s) > maxlen || config_hostport_split(s, host, sizeof(host), &port) != 0)
        return false;
    if (s[0] == '[')
        return inet_pton(AF_INET6, host, buf) == 1;
    for (const char *p = host; *p != '\0'; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

/* Splits s (copied into buf) on whitespace into at most max tokens; returns the
 * count, or max + 1 when there are more or s does not fit in buf. */
static size_t split(const char *s, char *buf, size_t buflen, char **tok, size_t max)
{
    size_t n = 0;
    if (strlen(s) >= buflen)
        return max + 1;
    memcpy(buf, s, strlen(s) + 1);
    for (char *p = buf;;) {
        while (is_ws(*p))
            p++;
        if (*p == '\0')
            return n;
        if (n == max)
            return max + 1;
        tok[n++] = p;
        while (*p != '\0' && !is_ws(*p))
            p++;
        if (*p != '\0')
            *p++ = '\0';
    }
}

/* ---- setting one key ---------------------------------------------------------- */

static void set_string(char *dst, size_t size, const char *s)
{
    memset(dst, 0, size); /* whole array, so equal settings compare equal */
    memcpy(dst, s, strlen(s));
}

static void store_uint(struct config *c, const struct config_key *k, uint64_t v)
{
    char *field = (char *)c + k->off;
    if (k->size == 1) {
        uint8_t x = (uint8_t)v;
        memcpy(field, &x, 1);
    } else if (k->size == 2) {
        uint16_t x = (uint16_t)v;
        memcpy(field, &x, 2);
    } else {
        uint32_t x = (uint32_t)v;
        memcpy(field, &x, 4);
    }
}

static uint64_t load_uint(const struct config *c, const struct config_key *k)
{
    const char *field = (const char *)c + k->off;
    if (k->size == 1) {
        uint8_t x;
        memcpy(&x, field, 1);
        return x;
    }
    if (k->size == 2) {
        uint16_t x;
        memcpy(&x, field, 2);
        return x;
    }
    uint32_t x;
    memcpy(&x, field, 4);
    return x;
}

static int check_uint(const struct config_key *k, const char *label, const char *value, bool size,
                      uint64_t *out, char *err, size_t errlen)
{
    char s[72];
    int rc = parse_uint(value, size, out);
    if (rc == -EINVAL) {
        config__msg(err, errlen, "%s: \"%s\" is not a number%s", label, shown(value, s),
            size ? " (bytes, or with a k/m suffix)" : "");
        return -EINVAL;
    }
    if (rc != 0 || *out < k->min || *out > k->max) {
        config__msg(err, errlen, "%s: \"%s\" is out of range %llu..%llu", label, shown(value, s),
            (unsigned long long)k->min, (unsigned long long)k->max);
        return -ERANGE;
    }
    return 0;
}

/* The first listener, for `port` and `bind`: from then on it counts as given. */
static struct config_listener *first_listener(struct config *c)
{
    if (c->listener_count == 0) {
        memset(&c->listeners[0], 0, sizeof(c->listeners[0]));
        set_string(c->listeners[0].bind, sizeof(c->listeners[0].bind), "0.0.0.0");
        set_string(c->listeners[0].transport, sizeof(c->listeners[0].transport), "tcp");
        c->listeners[0].port = 1883;
        c->listener_count = 1;
    }
    c->listeners_explicit = true;
    return &c->listeners[0];
}

static int set_listener(struct config *c, const char *label, const char *value, char *err, size_t errlen)
{
    static const struct config_key port_range = {"port", KIND_PORT, 0, 0, 1, 65535, NULL};
    char buf[CONFIG_MAX_LINE], s[72], portlabel[64];
    char *tok[3];
    uint64_t port;
    int rc;

    size_t n = split(value, buf, sizeof(buf), tok, 3);
    if (n == 0 || n > 3) {
        config__msg(err, errlen, "%s: expected PORT [BIND_ADDRESS] [TRANSPORT], got \"%s\"", label, shown(value, s));
        return -EINVAL;
    }
    snprintf(portlabel, sizeof(portlabel), "%s: port", label);
    if ((rc = check_uint(&port_range, portlabel, tok[0], false, &port, err, errlen)) != 0)
        return rc;
    const char *bind = n > 1 ? tok[1] : "0.0.0.0";
    if (strlen(bind) >= sizeof(c->listeners[0].bind) || !valid_ip(bind)) {
        config__msg(err, errlen, "%s: \"%s\" is not an IPv4 or IPv6 address", label, shown(bind, s));
        return -EINVAL;
    }
    const char *transport = n > 2 ? tok[2] : "tcp";
    int t = parse_name(transport, transports, sizeof(transports) / sizeof(transports[0]));
    if (t < 0) {
        config__msg(err, errlen, "%s: transport \"%s\" is not one of tcp, tls, ws, wss", label, shown(transport, s));
        return -EINVAL;
    }
    if (!c->listeners_explicit) {
        memset(c->listeners, 0, sizeof(c->listeners));
        c->listener_count = 0;
        c->listeners_explicit = true;
    }
    if (c->listener_count >= CONFIG_MAX_LISTENERS) {
        config__msg(err, errlen, "%s: more than %d listeners", label, CONFIG_MAX_LISTENERS);
        return -ERANGE;
    }
    struct config_listener *l = &c->listeners[c->listener_count++];
    memset(l, 0, sizeof(*l));
    set_string(l->bind, sizeof(l->bind), bind);
    l->port = (uint16_t)port;
    set_string(l->transport, sizeof(l->transport), transports[t]);
    return 0;
}

static int set_peer(struct config *c, const struct config_key *k, const char *label, const char *value,
                    char *err, size_t errlen)
{
    char buf[CONFIG_MAX_LINE], s[72], idlabel[64];
    char *tok[2];
    uint64_t id;
    int rc;

    if (split(value, buf, sizeof(buf), tok, 2) != 2) {
        config__msg(err, errlen, "%s: expected ID HOST:PORT, got \"%s\"", label, shown(value, s));
        return -EINVAL;
    }
    snprintf(idlabel, sizeof(idlabel), "%s: id", label);
    if ((rc = check_uint(k, idlabel, tok[0], false, &id, err, errlen)) != 0)
        return rc;
    if (!valid_hostport(tok[1], sizeof(c->peers[0].address) - 1)) {
        config__msg(err, errlen, "%s: \"%s\" is not HOST:PORT", label, shown(tok[1], s));
        return -EINVAL;
    }
    for (int i = 0; i < c->peer_count; i++) {
        if (c->peers[i].id == id) {
            config__msg(err, errlen, "%s: id %llu given twice", label, (unsigned long long)id);
            return -EINVAL;
        }
    }
    if (c->peer_count >= CONFIG_MAX_PEERS) {
        config__msg(err, errlen, "%s: more than %d peers", label, CONFIG_MAX_PEERS);
        return -ERANGE;
    }
    struct config_peer *p = &c->peers[c->peer_count++];
    memset(p, 0, sizeof(*p));
    p->id = (uint32_t)id;
    set_string(p->address, sizeof(p->address), tok[1]);
    return 0;
}

/* Applies value to key k; messages start with label (the key, or a flag name).
 * Validates completely before touching c. */
/* Numbers: KIND_UINT, KIND_SIZE (with a unit suffix) and KIND_PORT (the
 * first listener's). */
static int set_number(struct config *c, const struct config_key *k, const char *label, const char *value,
                      char *err, size_t errlen)
{
    uint64_t v;
    int rc = check_uint(k, label, value, k->kind == KIND_SIZE, &v, err, errlen);
    if (rc)
        return rc;
    if (k->kind == KIND_PORT)
        first_listener(c)->port = (uint16_t)v;
    else
        store_uint(c, k, v);
    return 0;
}

/* One of a few words: KIND_BOOL, KIND_LOG_LEVEL, KIND_QUEUE_POLICY. */
static int set_choice(struct config *c, const struct config_key *k, const char *label, const char *value,
                      char *err, size_t errlen)
{
    char s[72];
    bool b;
    int i;
    switch (k->kind) {
    case KIND_BOOL:
    case KIND_OPT_BOOL:
        if (parse_bool(value, &b) != 0) {
            config__msg(err, errlen, "%s: \"%s\" is not a boolean (true/false, yes/no, on/off, 1/0)", label,
                shown(value, s));
            return -EINVAL;
        }
        if (k->kind == KIND_OPT_BOOL) {
            int8_t v = b ? 1 : 0;
            memcpy((char *)c + k->off, &v, sizeof(v));
        } else {
            memcpy((char *)c + k->off, &b, sizeof(b));
        }
        return 0;
    case KIND_LOG_LEVEL:
        i = strcasecmp(value, "warning") == 0 ? LOG_WARN : parse_name(value, log_level_names, 5);
        if (i < 0) {
            config__msg(err, errlen, "%s: \"%s\" is not one of error, warn, info, debug, trace", label,
                shown(value, s));
            return -EINVAL;
        }
        c->log_level = i;
        return 0;
    default: /* KIND_QUEUE_POLICY */
        if ((i = parse_name(value, queue_policy_names, 2)) < 0) {
            config__msg(err, errlen, "%s: \"%s\" is not one of drop_new, drop_oldest", label, shown(value, s));
            return -EINVAL;
        }
        c->queue_policy = i;
        return 0;
    }
}

/* KIND_LISTEN: an address literal and port, or off (bound as given: a name
 * could resolve to several addresses). */
static int set_listen(struct config *c, const struct config_key *k, const char *label, const char *value,
                      char *err, size_t errlen)
{
    char s[72];
    char host[64];
    uint16_t port;
    bool off = strcasecmp(value, "off") == 0;
    if (!off && (!valid_hostport(value, k->size - 1) ||
                 config_hostport_split(value, host, sizeof(host), &port) != 0 || !valid_ip(host))) {
        config__msg(err, errlen, "%s: \"%s\" is not IP:PORT ([IPv6]:PORT) or off", label, shown(value, s));
        return -EINVAL;
    }
    set_string((char *)c + k->off, k->size, off ? "off" : value);
    return 0;
}

/* Text: KIND_STRING, KIND_HOSTPORT, KIND_BIND (the first listener's). */
static int set_text(struct config *c, const struct config_key *k, const char *label, const char *value,
                    char *err, size_t errlen)
{
    char s[72];
    switch (k->kind) {
    case KIND_STRING:
        if (strlen(value) < k->min) {
            config__msg(err, errlen, "%s: value is empty", label);
            return -EINVAL;
        }
        if (strlen(value) >= k->size) {
            config__msg(err, errlen, "%s: value is longer than %zu bytes", label, k->size - 1);
            return -ERANGE;
        }
        set_string((char *)c + k->off, k->size, value);
        return 0;
    case KIND_HOSTPORT:
        if (!valid_hostport(value, k->size - 1)) {
            config__msg(err, errlen, "%s: \"%s\" is not HOST:PORT (at most %zu bytes)", label, shown(value, s),
                k->size - 1);
            return -EINVAL;
        }
        set_string((char *)c + k->off, k->size, value);
        return 0;
    default: { /* KIND_BIND */
        if (strlen(value) >= sizeof(c->listeners[0].bind) || !valid_ip(value)) {
            config__msg(err, errlen, "%s: \"%s\" is not an IPv4 or IPv6 address", label, shown(value, s));
            return -EINVAL;
        }
        struct config_listener *l = first_listener(c);
        set_string(l->bind, sizeof(l->bind), value);
        return 0;
    }
    }
}

/* A per-listener key: the most recent listener (the default one before any
 * `listener` line, as in Mosquitto). Booleans and text as the node-wide keys,
 * at the field's place inside that listener. */
static int set_listener_key(struct config *c, const struct config_key *k, const char *label, const char *value,
                            char *err, size_t errlen)
{
    char s[72];
    struct config_listener *l = &c->listeners[c->listener_count > 0 ? c->listener_count - 1 : 0];
    struct config_key at = *k;
    at.off = (size_t)((char *)l - (char *)c) + k->off;
    switch (k->kind) {
    case KIND_LISTENER_BOOL:
        at.kind = KIND_BOOL;
        return set_choice(c, &at, label, value, err, errlen);
    case KIND_TLS_VERSION:
        if (strcasecmp(value, "tlsv1.2") != 0 && strcasecmp(value, "tlsv1.3") != 0) {
            config__msg(err, errlen, "%s: \"%s\" is not one of tlsv1.2, tlsv1.3", label, shown(value, s));
            return -EINVAL;
        }
        set_string((char *)c + at.off, k->size, strcasecmp(value, "tlsv1.3") == 0 ? "tlsv1.3" : "tlsv1.2");
        return 0;
    default: /* KIND_LISTENER_TEXT */
        if (k->off == offsetof(struct config_listener, ws_path) && (value[0] != '/' || strpbrk(value, " \t?#"))) {
            config__msg(err, errlen, "%s: \"%s\" is not a path (a '/' first; no spaces, '?' or '#')", label,
                shown(value, s));
            return -EINVAL;
        }
        at.kind = KIND_STRING;
        return set_text(c, &at, label, value, err, errlen);
    }
}

static int set_key(struct config *c, const struct config_key *k, const char *label, const char *value,
                   char *err, size_t errlen)
{
    if (has_control(value)) {
        config__msg(err, errlen, "%s: value contains a control character", label);
        return -EINVAL;
    }
    switch (k->kind) {
    case KIND_UINT:
    case KIND_SIZE:
    case KIND_PORT: {
        int rc = set_number(c, k, label, value, err, errlen);
        if (rc == 0 && strcmp(k->name, "max_connections") == 0)
            c->max_connections_explicit = true; /* broker__fds_init lowers only the default */
        return rc;
    }
    case KIND_BOOL:
    case KIND_OPT_BOOL:
    case KIND_LOG_LEVEL:
    case KIND_QUEUE_POLICY:
        return set_choice(c, k, label, value, err, errlen);
    case KIND_STRING:
    case KIND_HOSTPORT:
    case KIND_BIND:
        return set_text(c, k, label, value, err, errlen);
    case KIND_LISTEN:
        return set_listen(c, k, label, value, err, errlen);
    case KIND_LISTENER:
        return set_listener(c, label, value, err, errlen);
    case KIND_PEER:
        return set_peer(c, k, label, value, err, errlen);
    case KIND_LISTENER_TEXT:
    case KIND_LISTENER_BOOL:
    case KIND_TLS_VERSION:
        return set_listener_key(c, k, label, value, err, errlen);
    }
    return -EINVAL;
}

static const struct config_key *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

int config__set_flag(struct config *c, const char *key, const char *label, const char *value, char *err,
                     size_t errlen)
{
    return set_key(c, find_key(key), label, value, err, errlen);
}

/* ---- public: defaults, set, file ----------------------------------------------- */

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    c->listener_count = 1;
    set_string(c->listeners[0].bind, sizeof(c->listeners[0].bind), "0.0.0.0");
    c->listeners[0].port = 1883;
    set_string(c->listeners[0].transport, sizeof(c->listeners[0].transport), "tcp");
    c->listeners_explicit = false;

    set_string(c->data_dir, sizeof(c->data_dir), "./starling-data");
    c->log_level = LOG_INFO;

    c->max_connections = 100000;
    c->max_connections_explicit = false;
    c->fd_reserve = 64;
    c->connect_timeout = 10;
    c->packet_timeout = 30;
    c->max_partial_bytes = 64u << 20;
    c->max_packet_size = 1048576;
    c->max_inflight = 64;
    c->receive_maximum = 1024;
    c->max_queued = 1000;
    c->queue_policy = CONFIG_QUEUE_DROP_NEW;
    c->max_queued_bytes = 16u << 20;
    c->max_queued_bytes_total = 256u << 20;
    c->max_retained = 1000000;
    c->max_retained_bytes = 256u << 20;
    c->max_write_backlog = 256 * 1024;
    c->slow_consumer_timeout_ms = 5000;
    c->max_topic_levels = 128;
    c->max_subscriptions = 0;
    c->max_keepalive = 65535;
    c->topic_alias_maximum = 64;
    c->max_session_expiry = 0xFFFFFFFFu;
    c->retain_available = true;
    c->allow_zero_length_clientid = true;
    c->max_qos = 2;
    c->durable_sessions = true;

    c->sys_interval = 10;

    c->node_id = 1;
    set_string(c->cluster_bind, sizeof(c->cluster_bind), "0.0.0.0:4370");
    c->peer_count = 0;
    c->commit_timeout_ms = 5000;
    set_string(c->cluster_name, sizeof(c->cluster_name), "starling");
    c->election_timeout_ms = 1000;
    c->heartbeat_ms = 10;
    c->snapshot_threshold = 4096;
    c->snapshot_trailing = 8192;
    c->store_max_mb = 1024;

    set_string(c->admin_listen, sizeof(c->admin_listen), "127.0.0.1:18083");
    c->admin_idle_timeout = 10;
    c->admin_request_timeout = 10;
    c->admin_max_conns_per_peer = 8;

    c->allow_anonymous = -1;
}

int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen)
{
    char s[72];
    const struct config_key *k = find_key(key);
    if (k == NULL) {
        config__msg(err, errlen, "unknown key \"%s\"", shown(key, s));
        return -EINVAL;
    }
    if (value == NULL) {
        config__msg(err, errlen, "%s: missing value", k->name);
        return -EINVAL;
    }
    return set_key(c, k, k->name, value, err, errlen);
}

/* Splits one line in place into key and value. *key is NULL for a blank or
 * comment line, *value NULL when the key has none. Returns 0 or -EINVAL with a
 * message. */
static int parse_line(char *line, char **key, char **value, char *err, size_t errlen)
{
    char *p = line;

    *key = NULL;
    *value = NULL;
    while (is_ws(*p))
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    *key = p;
    while (*p != '\0' && !is_ws(*p))
        p++;
    if (*p == '\0')
        return 0;
    *p++ = '\0';
    while (is_ws(*p))
        p++;
    if (*p == '\0' || *p == '#')
        return 0;

    if (*p == '"') {
        char *out = p, *in = p + 1;
        for (;; in++) {
            if (*in == '\0') {
                config__msg(err, errlen, "%s: unterminated quoted value", *key);
                return -EINVAL;
            }
            if (*in == '"')
                break;
            if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
                in++;
            *out++ = *in;
        }
        *out = '\0';
        for (in++; is_ws(*in); in++)
            ;
        if (*in != '\0' && *in != '#') {
            config__msg(err, errlen, "%s: unexpected text after the quoted value", *key);
            return -EINVAL;
        }
        *value = p;
        return 0;
    }

    *value = p;
    char *end = p;
    for (char *q = p; *q != '\0'; q++) {
        if (*q == '#' && is_ws(q[-1]))
            break;
        if (!is_ws(*q))
            end = q + 1;
    }
    *end = '\0';
    return 0;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
    struct config next = *c;
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    ssize_t n;
    char m[512];
    int rc = 0;

    FILE *f = fopen(path, "r");
    if (f == NULL) {
        rc = -errno;
        config__msg(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    snprintf(next.path, sizeof(next.path), "%s", path);

    while ((n = getline(&line, &cap, f)) >= 0) {
        char *key, *value;
        lineno++;
        if (n > CONFIG_MAX_LINE) {
            config__msg(err, errlen, "%s:%u: line is longer than %d bytes", path, lineno, CONFIG_MAX_LINE);
            rc = -EINVAL;
            goto close_file;
        }
        if (strlen(line) != (size_t)n) {
            config__msg(err, errlen, "%s:%u: line contains a NUL byte", path, lineno);
            rc = -EINVAL;
            goto close_file;
        }
        char *text = line;
        if (lineno == 1 && n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
            text += 3; /* UTF-8 byte order mark */
        if ((rc = parse_line(text, &key, &value, m, sizeof(m))) == 0 && key != NULL)
            rc = config_set(&next, key, value, m, sizeof(m));
        if (rc != 0) {
            config__msg(err, errlen, "%s:%u: %s", path, lineno, m);
            goto close_file;
        }
    }
    if (!feof(f)) { /* a read error, or getline out of memory */
        rc = ferror(f) ? -EIO : -ENOMEM;
        config__msg(err, errlen, "%s: %s", path, strerror(-rc));
        goto close_file;
    }
    *c = next;

close_file:
    free(line);
    fclose(f);
    return rc;
}

/* ---- printing -------------------------------------------------------------------- */

static void print_value(FILE *f, const char *v)
{
    bool quote = *v == '\0' || strpbrk(v, " \t#\"") != NULL;
    if (!quote) {
        fputs(v, f);
        return;
    }
    fputc('"', f);
    for (; *v != '\0'; v++) {
        if (*v == '"' || *v == '\\')
            fputc('\\', f);
        fputc(*v, f);
    }
    fputc('"', f);
}

/* The per-listener keys that are set, after their listener's line. */
static void print_listener_keys(FILE *f, const struct config_listener *l)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct config_key *k = &config_keys[i];
        const char *field = (const char *)l + k->off;
        if (k->kind == KIND_LISTENER_BOOL) {
            bool b;
            memcpy(&b, field, sizeof(b));
            if (b)
                fprintf(f, "%s true\n", k->name);
        } else if ((k->kind == KIND_LISTENER_TEXT || k->kind == KIND_TLS_VERSION) && field[0]) {
            fprintf(f, "%s ", k->name);
            print_value(f, field);
            fputc('\n', f);
        }
    }
}

void config_print(const struct config *c, void *file)
{
    FILE *f = file;

    fputs("# starlingd configuration; every key is described in deploy/starling.conf\n", f);
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct config_key *k = &config_keys[i];
        const char *field = (const char *)c + k->off;

        if (k->group != NULL)
            fprintf(f, "\n# %s\n", k->group);
        switch (k->kind) {
        case KIND_UINT:
        case KIND_SIZE:
            fprintf(f, "%s %llu\n", k->name, (unsigned long long)load_uint(c, k));
            break;
        case KIND_BOOL: {
            bool b;
            memcpy(&b, field, sizeof(b));
            fprintf(f, "%s %s\n", k->name, b ? "true" : "false");
            break;
        }
        case KIND_STRING:
        case KIND_HOSTPORT:
        case KIND_LISTEN:
            fprintf(f, "%s ", k->name);
            print_value(f, field);
            fputc('\n', f);
            break;
        case KIND_LOG_LEVEL: {
            int l = c->log_level < LOG_ERROR ? LOG_ERROR : c->log_level > LOG_TRACE ? LOG_TRACE : c->log_level;
            fprintf(f, "%s %s\n", k->name, log_level_names[l]);
            break;
        }
        case KIND_QUEUE_POLICY:
            fprintf(f, "%s %s\n", k->name,
                    queue_policy_names[c->queue_policy == CONFIG_QUEUE_DROP_OLDEST ? 1 : 0]);
            break;
        case KIND_LISTENER:
            for (int j = 0; j < c->listener_count && j < CONFIG_MAX_LISTENERS; j++) {
                fprintf(f, "listener %u %s %s\n", c->listeners[j].port, c->listeners[j].bind,
                        c->listeners[j].transport);
                print_listener_keys(f, &c->listeners[j]);
            }
            break;
        case KIND_PEER:
            for (int j = 0; j < c->peer_count && j < CONFIG_MAX_PEERS; j++)
                fprintf(f, "peer %u %s\n", c->peers[j].id, c->peers[j].address);
            break;
        case KIND_OPT_BOOL: {
            int8_t v;
            memcpy(&v, field, sizeof(v));
            if (v < 0)
                fprintf(f, "# %s (not set: see docs/auth.md)\n", k->name);
            else
                fprintf(f, "%s %s\n", k->name, v ? "true" : "false");
            break;
        }
        case KIND_PORT:
        case KIND_BIND:
        case KIND_LISTENER_TEXT:
        case KIND_LISTENER_BOOL:
        case KIND_TLS_VERSION:
            break; /* shorthands and per-listener keys, covered by the listener lines */
        }
    }
}
