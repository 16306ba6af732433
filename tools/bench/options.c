/* bench: the command line, emqtt-bench's options plus a few of starling-bench's own. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define ALL (BENCH_CONN | BENCH_PUB | BENCH_SUB)
#define PS (BENCH_PUB | BENCH_SUB)
#define P BENCH_PUB

enum opt_arg { ARG_NONE, ARG_REQ, ARG_BOOL };

enum opt_id {
    O_HELP, O_HOST, O_PORT, O_VERSION, O_COUNT, O_START, O_INTERVAL, O_CONNRATE,
    O_MAXCONN, O_PUBINT, O_TOPIC, O_QOS, O_SIZE, O_MESSAGE, O_RETAIN, O_KEEPALIVE,
    O_CLEAN, O_EXPIRY, O_LIMIT, O_LIMIT_PC, O_INFLIGHT, O_USER, O_PASS, O_PREFIX,
    O_SHORTIDS, O_IFADDR, O_WAIT, O_RETRY, O_DURATION, O_CTIMEOUT, O_CLOCK, O_JSON,
    O_QUIET, O_LOGTO, O_LOWMEM, O_SSL, O_SSLVER, O_CACERT, O_CERTFILE, O_KEYFILE, O_CIPHERS, O_WS,
    O_QUIC,
};

struct opt_def {
    int id;
    char shortc; /* 0: long form only */
    const char *name;
    const char *alias; /* a second long name, or NULL */
    unsigned modes;
    int arg;
    const char *meta;
    const char *help; /* NULL: accepted, not listed */
};

/* In the order --help lists them. Descriptions say where starling-bench differs
 * from emqtt-bench; the README repeats the differences. */
static const struct opt_def defs[] = {
    {O_HELP, 0, "help", NULL, ALL, ARG_NONE, NULL, "this help"},
    {O_HOST, 'h', "host", NULL, ALL, ARG_REQ, "HOST[,HOST..]",
     "broker host name or address; clients are spread round-robin over a list "
     "(IPv4 preferred) [default: localhost]"},
    {O_PORT, 'p', "port", NULL, ALL, ARG_REQ, "PORT", "broker port [default: 1883]"},
    {O_VERSION, 'V', "version", NULL, ALL, ARG_REQ, "3|4|5",
     "MQTT version: 3 = 3.1, 4 = 3.1.1, 5 = 5.0 [default: 5]"},
    {O_COUNT, 'c', "count", NULL, ALL, ARG_REQ, "N", "number of clients [default: 200]"},
    {O_START, 'n', "startnumber", NULL, ALL, ARG_REQ, "N",
     "sequence number of the first client is N+1 (%i) [default: 0]"},
    {O_INTERVAL, 'i', "interval", NULL, ALL, ARG_REQ, "MS",
     "milliseconds between two connection attempts, 0 = no pause [default: 10]"},
    {O_CONNRATE, 'R', "connrate", NULL, ALL, ARG_REQ, "N",
     "connection attempts per second; overrides -i when > 0 [default: 0]"},
    {O_MAXCONN, 0, "max-connecting", NULL, ALL, ARG_REQ, "N",
     "starling-bench: most handshakes in progress at once; keep it under the "
     "broker's listen backlog [default: 100]"},
    {O_PUBINT, 'I', "interval_of_msg", "interval-of-msg", P, ARG_REQ, "MS",
     "milliseconds between two messages of one publisher; 0 = as fast as TCP and the "
     "QoS 1/2 window allow [default: 1000]"},
    {O_TOPIC, 't', "topic", NULL, PS, ARG_REQ, "TOPIC",
     "topic (pub) or filter (sub, may repeat); variables %i %c %u %s %rand_N"},
    {O_QOS, 'q', "qos", NULL, PS, ARG_REQ, "0|1|2", "publish / subscribe QoS [default: 0]"},
    {O_SIZE, 's', "size", NULL, P, ARG_REQ, "BYTES",
     "payload size; the first 12 bytes carry the send time [default: 256]"},
    {O_MESSAGE, 'm', "message", NULL, P, ARG_REQ, "TEXT",
     "literal payload instead of -s bytes (no latency then)"},
    {O_RETAIN, 'r', "retain", NULL, P, ARG_BOOL, "[true|false]",
     "publish with the retain flag [default: false]"},
    {O_KEEPALIVE, 'k', "keepalive", NULL, ALL, ARG_REQ, "SECONDS",
     "keep alive [default: 300]"},
    {O_CLEAN, 'C', "clean", NULL, ALL, ARG_BOOL, "[true|false]",
     "clean session / clean start [default: true]"},
    {O_EXPIRY, 'x', "session-expiry", NULL, ALL, ARG_REQ, "SECONDS",
     "MQTT 5 session expiry interval [default: 0]"},
    {O_LIMIT, 'L', "limit", NULL, PS, ARG_REQ, "N",
     "pub: messages to publish in total over all clients, then stop; sub "
     "(starling-bench): stop after receiving N in total; 0 = no limit [default: 0]"},
    {O_LIMIT_PC, 0, "limit-per-client", NULL, P, ARG_REQ, "N",
     "starling-bench: messages each publisher sends, then stop [default: 0]"},
    {O_INFLIGHT, 'F', "inflight", NULL, P, ARG_REQ, "N",
     "QoS 1/2 messages awaiting their ack per publisher, 0 = 65535 [default: 1]"},
    {O_USER, 'u', "username", NULL, ALL, ARG_REQ, "USER", "user name"},
    {O_PASS, 'P', "password", NULL, ALL, ARG_REQ, "PASSWORD", "password"},
    {O_PREFIX, 0, "prefix", NULL, ALL, ARG_REQ, "PREFIX",
     "client ids are PREFIX_bench_MODE_N (default: HOST_bench_MODE_RANDOM_N)"},
    {O_SHORTIDS, 0, "shortids", NULL, ALL, ARG_BOOL, "[true|false]",
     "client id is N, or PREFIXN with --prefix [default: false]"},
    {O_IFADDR, 0, "ifaddr", NULL, ALL, ARG_REQ, "ADDR[,ADDR..]",
     "local source addresses, used round-robin"},
    {O_WAIT, 'w', "wait-before-publishing", NULL, P, ARG_BOOL, "[true|false]",
     "start publishing once every client has connected (or failed) [default: false]"},
    {O_RETRY, 0, "num-retry-connect", NULL, ALL, ARG_REQ, "N",
     "connection attempts to retry per client [default: 0]"},
    {O_DURATION, 'd', "duration", NULL, ALL, ARG_REQ, "SECONDS",
     "starling-bench: stop after this long (emqtt-bench's -d is --dist) "
     "[default: run until the limits or a signal]"},
    {O_CTIMEOUT, 0, "connect-timeout", NULL, ALL, ARG_REQ, "SECONDS",
     "starling-bench: give up a connection without CONNACK after this long [default: 30]"},
    {O_CLOCK, 0, "clock", NULL, P, ARG_REQ, "monotonic|realtime",
     "starling-bench: clock of the send stamp; monotonic only compares on one machine, "
     "realtime across synchronised machines [default: monotonic]"},
    {O_JSON, 0, "json", NULL, ALL, ARG_NONE, NULL,
     "starling-bench: summary as JSON on stdout; progress goes to stderr"},
    {O_QUIET, 0, "quiet", NULL, ALL, ARG_NONE, NULL,
     "starling-bench: no progress lines, only the summary"},
    {O_LOGTO, 0, "log_to", NULL, ALL, ARG_REQ, "console|null",
     "null is the same as --quiet [default: console]"},
    {O_LOWMEM, 'l', "lowmem", NULL, ALL, ARG_BOOL, NULL, NULL},
    {O_SSL, 'S', "ssl", NULL, ALL, ARG_BOOL, "[true|false]",
     "connect over TLS (MQTT over TLS, usually port 8883) [default: false]"},
    {O_SSLVER, 0, "ssl-version", NULL, ALL, ARG_REQ, "tlsv1.2|tlsv1.3",
     "TLS version to use, and only that one; implies -S (tlsv1.3_nocompat is "
     "taken as tlsv1.3; 1.0 and 1.1 are refused)"},
    {O_CACERT, 0, "cacertfile", NULL, ALL, ARG_REQ, "FILE",
     "CA certificates (PEM) the broker's certificate must chain to; the host name "
     "given with -h must match it. Without it the broker is not verified, as in "
     "emqtt-bench"},
    {O_CERTFILE, 0, "certfile", NULL, ALL, ARG_REQ, "FILE",
     "client certificate (PEM), if the broker requires one"},
    {O_KEYFILE, 0, "keyfile", NULL, ALL, ARG_REQ, "FILE", "private key (PEM) of --certfile"},
    {O_CIPHERS, 0, "ciphers", NULL, ALL, ARG_REQ, "LIST",
     "comma list of cipher suites: TLS 1.3 names (TLS_AES_128_GCM_SHA256) and "
     "OpenSSL TLS 1.2 names (ECDHE-ECDSA-AES128-GCM-SHA256)"},
    {O_WS, 0, "ws", NULL, ALL, ARG_BOOL, "[true|false]",
     "MQTT over WebSocket on " BENCH_WS_PATH " (wss with -S), subprotocol mqtt [default: false]"},
    {O_QUIC, 0, "quic", NULL, ALL, ARG_BOOL, NULL, NULL},
};

#define NDEFS (sizeof(defs) / sizeof(defs[0]))

const char *bench__mode_name(enum bench_mode mode)
{
    switch (mode) {
    case BENCH_CONN: return "conn";
    case BENCH_PUB: return "pub";
    case BENCH_SUB: return "sub";
    }
    return "?";
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const struct opt_def *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < NDEFS; i++) {
        const struct opt_def *d = &defs[i];
        if (strlen(d->name) == len && strncmp(d->name, name, len) == 0)
            return d;
        if (d->alias && strlen(d->alias) == len && strncmp(d->alias, name, len) == 0)
            return d;
    }
    return NULL;
}

static const struct opt_def *find_short(char c)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (defs[i].shortc == c)
            return &defs[i];
    return NULL;
}

/* "-c" or "--count", for messages. */
static const char *opt_label(const struct opt_def *d, char *buf, size_t len)
{
    if (d->shortc)
        snprintf(buf, len, "-%c/--%s", d->shortc, d->name);
    else
        snprintf(buf, len, "--%s", d->name);
    return buf;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") ||
        !strcasecmp(s, "on")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") ||
        !strcasecmp(s, "off")) {
        *out = false;
        return 0;
    }
    return -1;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -2;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return -2;
    *out = v;
    return 0;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < 0 || v > 1e7)
        return -1;
    *out = v;
    return 0;
}

static bool host_chars_ok(const char *h)
{
    if (!*h || strlen(h) > 253)
        return false;
    for (const char *p = h; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '_' || c == '%'))
            return false;
    }
    return true;
}

static bool ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* A copy of a comma list's argument, split in place; out[] points into it. */
struct owned_copy {
    struct list link; /* in bench_opts.owned */
    char str[];
};

/* Splits a comma list (copied, the copy kept on o->owned) into out[]. */
static int split_list(struct bench_opts *o, const char *s, const char **out, size_t max,
                      size_t *n, const char *what, char *err, size_t errlen)
{
    size_t len = strlen(s);
    struct owned_copy *copy = malloc(sizeof(*copy) + len + 1);
    if (!copy)
        return fail(err, errlen, "out of memory");
    list_push_back(&o->owned, &copy->link);
    char *str = copy->str;
    memcpy(str, s, len + 1);
    *n = 0;
    for (char *tok = str;;) {
        char *comma = strchr(tok, ',');
        if (comma)
            *comma = '\0';
        if (!*tok)
            return fail(err, errlen, "empty %s in '%s'", what, s);
        if (*n == max)
            return fail(err, errlen, "more than %zu %ss in '%s'", max, what, s);
        size_t tl = strlen(tok);
        if (tok[0] == '[' && tl > 2 && tok[tl - 1] == ']') { /* [v6] */
            tok[tl - 1] = '\0';
            tok++;
        }
        out[(*n)++] = tok;
        if (!comma)
            break;
        tok = comma + 1;
    }
    return 0;
}

static void set_defaults(struct bench_opts *o, enum bench_mode mode)
{
    memset(o, 0, sizeof(*o));
    list_init(&o->owned);
    o->mode = mode;
    o->hosts[0] = "localhost";
    o->nhosts = 1;
    o->port = 1883;
    o->version = 5;
    o->count = 200;
    o->interval_ms = 10;
    o->max_connecting = 100;
    o->pub_interval_ms = 1000;
    o->size = 256;
    o->keepalive = 300;
    o->clean = true;
    o->inflight = 1;
    o->connect_timeout_s = 30;
    o->clock = BENCH_CLOCK_MONOTONIC;
}

/* Checks the topics by expanding them for a sample client. */
static int check_topics(struct bench_opts *o, char *err, size_t errlen)
{
    uint64_t rng = 1;
    char *buf = malloc(BENCH_MAX_TOPIC_LEN + 1);
    if (!buf)
        return fail(err, errlen, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < o->ntopics && rc == 0; i++) {
        struct bench_tpl_ctx ctx = {.seq = o->start_number + 1, .client_id = "client",
                                    .user = o->username, .msg_seq = 1, .rng = &rng};
        size_t n = bench__tpl_expand(&o->topics[i], &ctx, buf, BENCH_MAX_TOPIC_LEN + 1);
        if (n > BENCH_MAX_TOPIC_LEN)
            rc = fail(err, errlen, "topic '%s' expands to more than %u bytes",
                      o->topics[i].src, BENCH_MAX_TOPIC_LEN);
        else if (o->mode == BENCH_PUB &&
                 (proto_topic_name_check((const uint8_t *)buf, n) != 0 ||
                  proto_utf8_check((const uint8_t *)buf, n) != 0))
            rc = fail(err, errlen,
                      "'%s' is not a valid topic name to publish to (no '+' or '#', not empty)",
                      o->topics[i].src);
        else if (o->mode == BENCH_SUB &&
                 (proto_topic_filter_check((const uint8_t *)buf, n) != 0 ||
                  proto_utf8_check((const uint8_t *)buf, n) != 0))
            rc = fail(err, errlen, "'%s' is not a valid topic filter", o->topics[i].src);
    }
    free(buf);
    return rc;
}

/* --- applying one option ----------------------------------------------------- */

/* The range of each numeric option. */
static const struct {
    int id;
    uint64_t min, max;
} num_ranges[] = {
    {O_PORT, 1, 65535},
    {O_VERSION, 3, 5},
    {O_COUNT, 1, BENCH_MAX_CLIENTS},
    {O_START, 0, UINT64_MAX / 2},
    {O_INTERVAL, 0, 3600000},
    {O_CONNRATE, 0, 10000000},
    {O_MAXCONN, 1, BENCH_MAX_CLIENTS},
    {O_PUBINT, 0, 3600000},
    {O_QOS, 0, 2},
    {O_SIZE, 0, BENCH_MAX_PAYLOAD},
    {O_KEEPALIVE, 0, 65535},
    {O_EXPIRY, 0, UINT32_MAX},
    {O_LIMIT, 0, UINT64_MAX / 2},
    {O_LIMIT_PC, 0, UINT64_MAX / 2},
    {O_INFLIGHT, 0, 65535},
    {O_RETRY, 0, 1000000},
};

/* Stores u (in the option's range) in its field. */
static void store_number(struct bench_opts *o, int id, uint64_t u)
{
    switch (id) {
    case O_PORT: o->port = (uint16_t)u; break;
    case O_VERSION: o->version = (uint8_t)u; break;
    case O_COUNT: o->count = (uint32_t)u; break;
    case O_START: o->start_number = u; break;
    case O_INTERVAL: o->interval_ms = (uint32_t)u; break;
    case O_CONNRATE: o->conn_rate = (uint32_t)u; break;
    case O_MAXCONN: o->max_connecting = (uint32_t)u; break;
    case O_PUBINT: o->pub_interval_ms = (uint32_t)u; break;
    case O_QOS: o->qos = (uint8_t)u; break;
    case O_SIZE: o->size = (uint32_t)u; break;
    case O_KEEPALIVE: o->keepalive = (uint16_t)u; break;
    case O_EXPIRY: o->session_expiry = (uint32_t)u; break;
    case O_LIMIT: o->limit = u; break;
    case O_LIMIT_PC: o->limit_per_client = u; break;
    case O_INFLIGHT: o->inflight = (uint32_t)u; break;
    case O_RETRY: o->num_retry_connect = (uint32_t)u; break;
    }
}

/* A numeric option: 1 when id is not one, else 0 or -EINVAL. */
static int apply_number(struct bench_opts *o, int id, const char *val, const char *label,
                        char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof(num_ranges) / sizeof(num_ranges[0]); i++) {
        if (num_ranges[i].id != id)
            continue;
        uint64_t min = num_ranges[i].min, max = num_ranges[i].max, u = 0;
        int rc = parse_u64(val, min, max, &u);
        if (rc == -1)
            return fail(err, errlen, "option %s: '%s' is not a number", label, val);
        if (rc == -2)
            return fail(err, errlen, "option %s: %s is out of range (%" PRIu64 "..%" PRIu64 ")",
                        label, val, min, max);
        store_number(o, id, u);
        return 0;
    }
    return 1;
}

/* An option that only sets a flag or keeps its argument: 1 when id is not one. */
static int apply_plain(struct bench_opts *o, int id, const char *val, bool bval)
{
    switch (id) {
    case O_HELP: o->help = true; break;
    case O_MESSAGE: o->message = val; break;
    case O_RETAIN: o->retain = bval; break;
    case O_CLEAN: o->clean = bval; break;
    case O_USER: o->username = val; break;
    case O_PASS: o->password = val; break;
    case O_PREFIX: o->prefix = val; break;
    case O_SHORTIDS: o->shortids = bval; break;
    case O_WAIT: o->wait_before_publishing = bval; break;
    case O_JSON: o->json = true; break;
    case O_QUIET: o->quiet = true; break;
    case O_LOWMEM: break; /* an Erlang memory trade-off; nothing to do here */
    default: return 1;
    }
    return 0;
}

/* -h and --ifaddr: comma lists of host names or of IP addresses. */
static int apply_list(struct bench_opts *o, int id, const char *val, const char *label,
                      char *err, size_t errlen)
{
    bool hosts = id == O_HOST;
    const char **out = hosts ? o->hosts : o->ifaddrs;
    size_t *n = hosts ? &o->nhosts : &o->nifaddrs;
    if (split_list(o, val, out, hosts ? BENCH_MAX_HOSTS : BENCH_MAX_IFADDRS, n,
                   hosts ? "host" : "address", err, errlen))
        return -EINVAL;
    for (size_t i = 0; i < *n; i++) {
        if (hosts && !host_chars_ok(out[i]))
            return fail(err, errlen, "option %s: '%s' is not a valid host name", label, out[i]);
        if (!hosts && !ip_literal(out[i]))
            return fail(err, errlen, "option %s: '%s' is not an IP address", label, out[i]);
    }
    return 0;
}

static int apply_topic(struct bench_opts *o, const char *val, const char *label, char *err,
                       size_t errlen)
{
    if (o->ntopics == BENCH_MAX_TOPICS)
        return fail(err, errlen, "more than %d topics", BENCH_MAX_TOPICS);
    if (!*val)
        return fail(err, errlen, "option %s: empty topic", label);
    if (bench__tpl_parse(&o->topics[o->ntopics], val, err, errlen))
        return -EINVAL;
    o->ntopics++;
    return 0;
}

/* -d and --connect-timeout. */
static int apply_seconds(double *dst, const char *val, const char *label, char *err,
                         size_t errlen)
{
    if (parse_seconds(val, dst) || *dst <= 0)
        return fail(err, errlen, "option %s: '%s' is not a positive number of seconds", label,
                    val);
    return 0;
}

/* --clock and --log_to: one of two words. */
static int apply_choice(struct bench_opts *o, int id, const char *val, const char *label,
                        char *err, size_t errlen)
{
    if (id == O_CLOCK) {
        if (!strcmp(val, "monotonic"))
            o->clock = BENCH_CLOCK_MONOTONIC;
        else if (!strcmp(val, "realtime"))
            o->clock = BENCH_CLOCK_REALTIME;
        else
            return fail(err, errlen, "option %s: '%s' is not monotonic or realtime", label, val);
        return 0;
    }
    if (!strcmp(val, "null"))
        o->quiet = true;
    else if (strcmp(val, "console") != 0)
        return fail(err, errlen, "option %s: '%s' is not console or null", label, val);
    return 0;
}

/* TLS options, and emqtt-bench's transports other than TCP and TLS: accepted
 * when switched off. */
static int apply_transport(struct bench_opts *o, int id, const char *val, bool bval, const char *label,
                           char *err, size_t errlen)
{
    switch (id) {
    case O_SSL:
        o->ssl = bval;
        return 0;
    case O_SSLVER:
        if (!strcmp(val, "tlsv1.3_nocompat"))
            val = "tlsv1.3";
        if (strcmp(val, "tlsv1.2") && strcmp(val, "tlsv1.3"))
            return fail(err, errlen, "option %s: '%s' is not tlsv1.2 or tlsv1.3 (older versions are not spoken)",
                        label, val);
        o->ssl_version = val;
        o->ssl = true;
        return 0;
    case O_CACERT:
        o->cacertfile = val;
        return 0;
    case O_CERTFILE:
        o->certfile = val;
        return 0;
    case O_KEYFILE:
        o->keyfile = val;
        return 0;
    case O_CIPHERS:
        o->ciphers = val;
        return 0;
    }
    if (id == O_WS) {
        o->ws = bval;
        return 0;
    }
    if (id == O_QUIC && bval)
        return fail(err, errlen, "option %s: QUIC transport is not supported", label);
    return 0;
}

static int apply(struct bench_opts *o, const struct opt_def *d, const char *val, bool bval,
                 char *err, size_t errlen)
{
    char label[64];
    opt_label(d, label, sizeof(label));
    switch (d->id) {
    case O_HOST:
    case O_IFADDR:
        return apply_list(o, d->id, val, label, err, errlen);
    case O_TOPIC:
        return apply_topic(o, val, label, err, errlen);
    case O_DURATION:
        return apply_seconds(&o->duration_s, val, label, err, errlen);
    case O_CTIMEOUT:
        return apply_seconds(&o->connect_timeout_s, val, label, err, errlen);
    case O_CLOCK:
    case O_LOGTO:
        return apply_choice(o, d->id, val, label, err, errlen);
    case O_SSL:
    case O_SSLVER:
    case O_CACERT:
    case O_CERTFILE:
    case O_KEYFILE:
    case O_CIPHERS:
    case O_WS:
    case O_QUIC:
        return apply_transport(o, d->id, val, bval, label, err, errlen);
    default:
        break;
    }
    if (apply_plain(o, d->id, val, bval) == 0)
        return 0;
    int rc = apply_number(o, d->id, val, label, err, errlen);
    return rc > 0 ? 0 : rc;
}

/* --- the command line -------------------------------------------------------- */

/* The option argument a names, and the value glued to it ("--name=VALUE",
 * "-cVALUE"), if any. */
static int find_option(const char *a, const struct opt_def **d, const char **inline_val,
                       char *err, size_t errlen)
{
    *inline_val = NULL;
    if (a[0] == '-' && a[1] == '-' && a[2]) {
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        *d = find_long(name, nlen);
        if (!*d)
            return fail(err, errlen, "unknown option '--%.*s'", (int)nlen, name);
        if (eq)
            *inline_val = eq + 1;
        return 0;
    }
    if (a[0] == '-' && a[1] && a[1] != '-') {
        *d = find_short(a[1]);
        if (!*d)
            return fail(err, errlen, "unknown option '-%c'", a[1]);
        if (a[2])
            *inline_val = a + 2;
        return 0;
    }
    return fail(err, errlen, "unexpected argument '%s'", a);
}

/* The value of option d, whose name is argv[*i]: glued to it, or the next
 * argument (consumed, *i moves on). A boolean's value is optional. */
static int option_value(const struct opt_def *d, const char *label, const char *inline_val,
                        int argc, char **argv, int *i, const char **val, bool *bval, char *err,
                        size_t errlen)
{
    *val = NULL;
    *bval = true;
    switch (d->arg) {
    case ARG_NONE:
        if (inline_val)
            return fail(err, errlen, "option %s takes no value", label);
        break;
    case ARG_REQ:
        if (inline_val)
            *val = inline_val;
        else if (*i + 1 < argc)
            *val = argv[++*i];
        else
            return fail(err, errlen, "option %s needs a value", label);
        break;
    case ARG_BOOL:
        /* "-C false", "--clean=false", or "-C" alone for true. */
        if (inline_val) {
            if (parse_bool(inline_val, bval))
                return fail(err, errlen, "option %s: '%s' is not true or false", label,
                            inline_val);
        } else if (*i + 1 < argc && parse_bool(argv[*i + 1], bval) == 0) {
            ++*i;
        }
        break;
    }
    return 0;
}

/* What no single option can check: topics the mode needs, lengths. */
static int check_opts(struct bench_opts *o, enum bench_mode mode, char *err, size_t errlen)
{
    if (mode != BENCH_CONN && o->ntopics == 0)
        return fail(err, errlen, "%s needs a topic: -t TOPIC", bench__mode_name(mode));
    if (mode == BENCH_PUB && o->ntopics > 1)
        return fail(err, errlen, "pub takes one topic (-t given %zu times)", o->ntopics);
    if (o->message && strlen(o->message) > BENCH_MAX_PAYLOAD)
        return fail(err, errlen, "message longer than %u bytes", BENCH_MAX_PAYLOAD);
    if (o->username && strlen(o->username) > 65535)
        return fail(err, errlen, "user name longer than 65535 bytes");
    if (o->password && strlen(o->password) > 65535)
        return fail(err, errlen, "password longer than 65535 bytes");
    if (o->prefix && strlen(o->prefix) > 200)
        return fail(err, errlen, "--prefix longer than 200 bytes");
    if (!o->certfile != !o->keyfile)
        return fail(err, errlen, "--certfile and --keyfile go together");
    return check_topics(o, err, errlen);
}

int bench__opts_parse(struct bench_opts *o, enum bench_mode mode, int argc, char **argv,
                      char *err, size_t errlen)
{
    set_defaults(o, mode);
    if (errlen)
        err[0] = '\0';
    for (int i = 0; i < argc; i++) {
        const struct opt_def *d;
        const char *inline_val, *val;
        bool bval;
        char label[64];
        if (find_option(argv[i], &d, &inline_val, err, errlen))
            return -EINVAL;
        opt_label(d, label, sizeof(label));
        if (!(d->modes & mode))
            return fail(err, errlen, "option %s does not apply to %s", label,
                        bench__mode_name(mode));
        if (option_value(d, label, inline_val, argc, argv, &i, &val, &bval, err, errlen) ||
            apply(o, d, val, bval, err, errlen))
            return -EINVAL;
        if (o->help)
            return 0;
    }
    return check_opts(o, mode, err, errlen);
}

void bench__opts_free(struct bench_opts *o)
{
    for (size_t i = 0; i < o->ntopics; i++)
        bench__tpl_free(&o->topics[i]);
    o->ntopics = 0;
    list_foreach_safe(it, &o->owned)
        free(list_entry(it, struct owned_copy, link));
    list_init(&o->owned);
}

void bench__usage_top(FILE *f)
{
    fprintf(f,
            "Usage: starling-bench conn|pub|sub [options]\n"
            "       starling-bench conn|pub|sub --help\n"
            "\n"
            "MQTT load generator with emqtt-bench's command line. Every client runs on one\n"
            "event loop in this process. Prints progress once a second and a summary at\n"
            "the end; sub measures end-to-end latency from the send time stamped into\n"
            "each payload by pub.\n"
            "\n"
            "  starling-bench conn -c 10000 -i 1 -d 60\n"
            "  starling-bench sub -c 1 -t 'bench/#' -q 1 -d 30\n"
            "  starling-bench pub -c 100 -I 10 -t bench/%%i -s 256 -q 1 -d 20\n"
            "\n"
            "Exit status: 0 every client connected; 1 a client could not connect or the\n"
            "host did not resolve (the summary says why); 2 bad command line.\n");
}

void bench__usage(FILE *f, enum bench_mode mode)
{
    fprintf(f, "Usage: starling-bench %s [options]\n\n", bench__mode_name(mode));
    for (size_t i = 0; i < NDEFS; i++) {
        const struct opt_def *d = &defs[i];
        if (!d->help || !(d->modes & mode))
            continue;
        char left[64];
        if (d->shortc)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", d->shortc, d->name,
                     d->meta ? " " : "", d->meta ? d->meta : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", d->name, d->meta ? " " : "",
                     d->meta ? d->meta : "");
        /* Wrap the description at 79 columns. */
        int col = fprintf(f, "  %-34s", left);
        bool first = true;
        if (col > 36) {
            fprintf(f, "\n%36s", "");
            col = 36;
        }
        for (const char *h = d->help; *h;) {
            while (*h == ' ')
                h++;
            size_t wl = strcspn(h, " ");
            if (!wl)
                break;
            if (!first && col + 1 + (int)wl > 79) {
                fprintf(f, "\n%36s", "");
                col = 36;
            } else if (!first) {
                col += fprintf(f, " ");
            }
            col += fprintf(f, "%.*s", (int)wl, h);
            h += wl;
            first = false;
        }
        fputc('\n', f);
    }
    fprintf(f,
            "\nDifferences from emqtt-bench: variables are replaced anywhere in a topic, not\n"
            "only as a whole level; -L on sub, --limit-per-client, -d/--duration, --json,\n"
            "--quiet, --clock, --connect-timeout and --max-connecting are starling-bench's\n"
            "own; --cacertfile verifies the broker (emqtt-bench never does); --quic is\n"
            "refused;\n"
            "-l/--lowmem is accepted and ignored; --shortids has no short form (-s is size).\n"
            "Latency needs a payload of at least 12 bytes and pub and sub on one machine\n"
            "(CLOCK_MONOTONIC), or --clock realtime with synchronised clocks.\n");
}
