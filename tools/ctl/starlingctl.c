/* starlingctl: the operator's command line for one Starling node, over the
 * node's HTTP admin API: cluster status and membership (join, leave, remove,
 * transfer), sessions, subscriptions, retained messages, metrics, and the
 * cluster's users and ACL rules (users.c). Tables
 * for people by default, the node's JSON as it came with --json; the exit
 * status says whether the node did it, refused, or could not be reached
 * (enum ctl_exit). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h" /* broker/: -c reads the node's own config file */
#include "ctl.h"

#define CTL_REQUEST_TIMEOUT 20.0 /* seconds, one request */
#define CTL_JOIN_TIMEOUT 60.0    /* seconds, a join until the node is a voter */
#define CTL_POLL_INTERVAL_NS 500000000L

struct opts {
    struct ctl_target target;
    const char *token;
    bool json;
    double timeout;
    bool timeout_given;
    long limit;            /* -1: the node's default */
    char token_buf[128];   /* -c: the file's admin_token */
    char cafile_buf[512];  /* -c: the file's admin_cafile */
    const char *password;  /* users add / passwd */
    const char *acl_user;  /* acl add / del */
    bool acl_pattern, acl_anonymous;
};

static const char usage_text[] =
    "Usage: starlingctl [OPTIONS] COMMAND [ARGS]\n"
    "Talks to one Starling node's admin API (its admin_listen).\n"
    "\n"
    "Commands:\n"
    "  cluster status              this node's view: leader, term, indexes, members\n"
    "  cluster join HOST:PORT      join the cluster of the member whose cluster port is\n"
    "                              HOST:PORT (the node restarts; waits until it is a voter)\n"
    "  cluster leave               this node leaves its cluster (and stops)\n"
    "  cluster remove NODE_ID      remove another member (it stops)\n"
    "  cluster transfer [NODE_ID]  hand leadership to NODE_ID (default: any voter)\n"
    "  sessions [CLIENT_ID]        sessions (one client's with CLIENT_ID)\n"
    "  subscriptions [CLIENT_ID]   subscriptions (one client's with CLIENT_ID)\n"
    "  retained [TOPIC]            retained messages (TOPIC may be a filter with + and #)\n"
    "  metrics                     the node's Prometheus metrics\n"
    "  users list                  users (of the cluster, and of this node's password_file)\n"
    "  users add NAME              add a user to the cluster (password: --password P, else\n"
    "                              asked on the terminal, else stdin's first line)\n"
    "  users passwd NAME           change a cluster user's password (the same way)\n"
    "  users del NAME              delete a cluster user\n"
    "  users import FILE           add or replace the users of a mosquitto_passwd file\n"
    "  acl list                    ACL rules (of the cluster, and of this node's acl_file)\n"
    "  acl add [--user U|--pattern|--anonymous] ACCESS TOPIC\n"
    "                              add a cluster rule (ACCESS: read, write, readwrite,\n"
    "                              deny; default --anonymous)\n"
    "  acl del [--user U|--pattern|--anonymous] TOPIC   delete a cluster rule\n"
    "  acl import FILE             add the rules of a Mosquitto acl_file\n"
    "\n"
    "Options:\n"
    "  --url http://HOST:PORT      the node's admin API (default $STARLINGCTL_URL, else\n"
    "                              " CTL_DEFAULT_URL "); https://HOST:PORT for a\n"
    "                              node with admin_certfile\n"
    "  --host HOST, --port PORT    the same, given apart (HTTPS with --cacert or -k)\n"
    "  --cacert FILE               HTTPS: the CA certificates (PEM) the node's certificate\n"
    "                              must chain to (default: the system's CAs)\n"
    "  --cert FILE, --key FILE     HTTPS: a client certificate and its key, for a node\n"
    "                              with admin_cafile\n"
    "  -k, --insecure              HTTPS without verifying the node's certificate\n"
    "  -c, --config FILE           the node's config file: its admin_listen (https when\n"
    "                              admin_certfile is set), admin_token, and admin_cafile\n"
    "                              as the default --cacert\n"
    "  --token TOKEN               the node's admin_token (default: the config file's,\n"
    "                              else $STARLINGCTL_TOKEN)\n"
    "  --json                      print the node's JSON as it came\n"
    "  --timeout SECONDS           per request (default 20); for cluster join, the whole\n"
    "                              wait until the node is a voter (default 60)\n"
    "  --limit N                   list at most N entries (default 1000)\n"
    "  -h, --help                  print this help and exit\n"
    "  -V, --version               print the version and exit\n"
    "\n"
    "Exit status: 0 done (or nothing to do), 1 the node refused, the operation\n"
    "failed or its certificate did not verify, 2 usage error, 3 the node could not\n"
    "be reached.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("starlingctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    return CTL_EXIT_USAGE;
}

static void *must(void *p)
{
    if (!p) {
        fputs("starlingctl: out of memory\n", stderr);
        exit(CTL_EXIT_FAILED);
    }
    return p;
}

/* --- output helpers ------------------------------------------------------------ */

/* s with control characters (and backslashes) written as \xNN, at most max
 * bytes of s (then "..."); malloc'd. */
static char *shown(const char *s, size_t max)
{
    size_t n = strlen(s);
    char *out = must(malloc((n < max ? n : max) * 4 + 4)), *o = out;
    size_t i;
    for (i = 0; i < n && i < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\\')
            o += sprintf(o, "\\x%02x", ch);
        else
            *o++ = (char)ch;
    }
    if (i < n)
        o += sprintf(o, "...");
    *o = '\0';
    return out;
}

struct table {
    int cols;
    char **cells;
    size_t n, cap;
};

/* Adds one row of t->cols cells (copied). */
static void table_row(struct table *t, ...)
{
    va_list ap;
    va_start(ap, t);
    for (int i = 0; i < t->cols; i++) {
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 64;
            t->cells = must(realloc(t->cells, t->cap * sizeof(*t->cells)));
        }
        t->cells[t->n++] = must(strdup(va_arg(ap, const char *)));
    }
    va_end(ap);
}

static void table_print(const struct table *t)
{
    size_t width[16] = {0};
    for (size_t i = 0; i < t->n; i++) {
        size_t len = strlen(t->cells[i]);
        if (len > width[i % (size_t)t->cols])
            width[i % (size_t)t->cols] = len;
    }
    for (size_t i = 0; i < t->n; i++) {
        size_t col = i % (size_t)t->cols;
        if (col + 1 == (size_t)t->cols)
            printf("%s\n", t->cells[i]);
        else
            printf("%-*s  ", (int)width[col], t->cells[i]);
    }
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->cells[i]);
    free(t->cells);
}

static const char *str_of(const cJSON *obj, const char *name)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, name));
    return s ? s : "";
}

/* A number, boolean or null member as text ("-" when absent or null). */
static const char *text_of(const cJSON *obj, const char *name, char buf[32])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsNumber(v))
        snprintf(buf, 32, "%.0f", v->valuedouble);
    else if (cJSON_IsBool(v))
        snprintf(buf, 32, "%s", cJSON_IsTrue(v) ? "yes" : "no");
    else if (cJSON_IsString(v))
        snprintf(buf, 32, "%s", v->valuestring);
    else
        snprintf(buf, 32, "-");
    return buf;
}

static double num_of(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void print_raw(const struct ctl_response *r)
{
    fwrite(r->body, 1, r->len, stdout);
    if (!r->len || r->body[r->len - 1] != '\n')
        putchar('\n');
}

/* --- requests --------------------------------------------------------------------- */

/* One request; 0 with the response in r, else the exit code (the reason
 * printed). */
static int call(const struct opts *o, const char *method, const char *target, const char *body, double timeout,
                struct ctl_response *r)
{
    char err[600];
    int rc = ctl_http_request(&o->target, method, target, o->token, body, timeout, r, err, sizeof(err));
    if (rc == 0)
        return 0;
    fprintf(stderr, "starlingctl: %s\n", err);
    if (rc == CTL_ETLS)
        fprintf(stderr, "starlingctl: check --cacert (the CA that signed the node's admin_certfile), "
                        "--cert/--key when the node has admin_cafile, or the URL's host name\n");
    return rc == CTL_EREACH ? CTL_EXIT_UNREACHABLE : CTL_EXIT_FAILED;
}

/* An answer other than success: the node's message on stderr. */
static int refused(const struct opts *o, const struct ctl_response *r)
{
    if (o->json)
        print_raw(r);
    cJSON *doc = cJSON_ParseWithLength(r->body, r->len);
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "error"));
    if (msg)
        fprintf(stderr, "starlingctl: %s\n", msg);
    else
        fprintf(stderr, "starlingctl: %s answered HTTP %d\n", o->target.url, r->status);
    cJSON_Delete(doc);
    return CTL_EXIT_FAILED;
}

/* GET target; on success *doc is the parsed body (or, with --json, the body
 * was printed and *doc is NULL). Returns -1 to go on, else the exit code. */
static int get_json(const struct opts *o, const char *target, cJSON **doc)
{
    struct ctl_response r;
    *doc = NULL;
    int code = call(o, "GET", target, NULL, o->timeout, &r);
    if (code)
        return code;
    if (r.status != 200) {
        code = refused(o, &r);
    } else if (o->json) {
        print_raw(&r);
        code = CTL_EXIT_OK;
    } else if (!(*doc = cJSON_ParseWithLength(r.body, r.len))) {
        fprintf(stderr, "starlingctl: %s%s: the answer is not JSON\n", o->target.url, target);
        code = CTL_EXIT_FAILED;
    } else {
        code = -1;
    }
    ctl_response_free(&r);
    return code;
}

/* --- cluster ------------------------------------------------------------------------ */

static void last_seen(const cJSON *m, char buf[32])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "last_seen_ms");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "self")))
        snprintf(buf, 32, "-");
    else if (!cJSON_IsNumber(v))
        snprintf(buf, 32, "never");
    else if (v->valuedouble < 1000)
        snprintf(buf, 32, "%.0f ms ago", v->valuedouble);
    else if (v->valuedouble < 120000)
        snprintf(buf, 32, "%.1f s ago", v->valuedouble / 1000);
    else
        snprintf(buf, 32, "%.0f min ago", v->valuedouble / 60000);
}

static int cmd_status(const struct opts *o)
{
    cJSON *doc;
    int code = get_json(o, "/api/v1/status", &doc);
    if (code >= 0)
        return code;
    char b[6][32];
    const cJSON *leader = cJSON_GetObjectItemCaseSensitive(doc, "leader");
    printf("node:           %s\n", text_of(doc, "node", b[0]));
    printf("cluster:        %s\n", str_of(doc, "cluster"));
    printf("state:          %s\n", str_of(doc, "state"));
    if (cJSON_IsNumber(leader))
        printf("leader:         node %.0f\n", leader->valuedouble);
    else
        printf("leader:         none\n");
    printf("term:           %s\n", text_of(doc, "term", b[0]));
    printf("commit index:   %s\n", text_of(doc, "commit_index", b[0]));
    printf("applied index:  %s\n", text_of(doc, "applied_index", b[0]));
    printf("clients:        %s connections, %s sessions, %s subscriptions, %s retained\n",
           text_of(doc, "connections", b[0]), text_of(doc, "sessions", b[1]), text_of(doc, "subscriptions", b[2]),
           text_of(doc, "retained", b[3]));
    struct table t = {.cols = 7};
    table_row(&t, "ID", "ADDRESS", "ROLE", "STATE", "REACHABLE", "LAST SEEN", "APPLIED");
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(doc, "members"))
    {
        bool self = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "self"));
        bool alive = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "alive"));
        snprintf(b[4], sizeof(b[4]), "%s%s", text_of(m, "id", b[0]), self ? "*" : "");
        last_seen(m, b[5]);
        table_row(&t, b[4], str_of(m, "address"), str_of(m, "role"), str_of(m, "state"),
                  self ? "self" : alive ? "alive" : "unreachable", b[5], text_of(m, "applied_index", b[1]));
    }
    putchar('\n');
    table_print(&t);
    table_free(&t);
    cJSON_Delete(doc);
    return CTL_EXIT_OK;
}

/* A finished membership operation: 200 "ok" or "noop", or a refusal. */
static int op_result(const struct opts *o, const struct ctl_response *r)
{
    if (r->status != 200 && r->status != 202)
        return refused(o, r);
    if (o->json) {
        print_raw(r);
        return CTL_EXIT_OK;
    }
    cJSON *doc = cJSON_ParseWithLength(r->body, r->len);
    const char *result = str_of(doc, "result"), *msg = str_of(doc, "message");
    if (strcmp(result, "noop") == 0)
        printf("nothing to do: %s\n", msg);
    else
        printf("%s\n", msg);
    cJSON_Delete(doc);
    return CTL_EXIT_OK;
}

static int cluster_op(const struct opts *o, const char *what, const char *body)
{
    char target[64];
    struct ctl_response r;
    snprintf(target, sizeof(target), "/api/v1/cluster/%s", what);
    int code = call(o, "POST", target, body, o->timeout, &r);
    if (code)
        return code;
    code = op_result(o, &r);
    ctl_response_free(&r);
    return code;
}

static int node_op(const struct opts *o, const char *what, unsigned long node)
{
    char body[32] = "";
    if (node)
        snprintf(body, sizeof(body), "{\"node\":%lu}", node);
    return cluster_op(o, what, body);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Joined: this node is a voter of a cluster of more than itself that has a
 * leader (before its restart it was a one-voter cluster of its own). Writes
 * a summary of what it reports into last either way. */
static bool joined(const cJSON *doc, char *last, size_t lastlen)
{
    const cJSON *m, *members = cJSON_GetObjectItemCaseSensitive(doc, "members");
    const cJSON *leader = cJSON_GetObjectItemCaseSensitive(doc, "leader");
    const char *role = "not a member";
    cJSON_ArrayForEach(m, members)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "self")))
            role = str_of(m, "role");
    int n = cJSON_GetArraySize(members);
    char lead[32] = "no leader";
    if (cJSON_IsNumber(leader))
        snprintf(lead, sizeof(lead), "leader node %.0f", leader->valuedouble);
    snprintf(last, lastlen, "node %.0f is %s, %s, %d member%s, %s", num_of(doc, "node"), role, str_of(doc, "state"),
             n, n == 1 ? "" : "s", lead);
    return n > 1 && strcmp(role, "voter") == 0 && cJSON_IsNumber(leader);
}

static int cmd_join(const struct opts *o, const char *peer)
{
    cJSON *req = must(cJSON_CreateObject());
    must(cJSON_AddStringToObject(req, "peer", peer));
    char *body = must(cJSON_PrintUnformatted(req));
    cJSON_Delete(req);
    struct ctl_response r;
    int code = call(o, "POST", "/api/v1/cluster/join", body, o->timeout_given ? o->timeout : CTL_REQUEST_TIMEOUT,
                    &r);
    free(body);
    if (code)
        return code;
    if (r.status != 202) {
        code = op_result(o, &r);
        ctl_response_free(&r);
        return code;
    }
    if (!o->json) {
        cJSON *doc = cJSON_ParseWithLength(r.body, r.len);
        printf("%s\n", str_of(doc, "message"));
        fflush(stdout);
        cJSON_Delete(doc);
    }
    ctl_response_free(&r);

    /* the node restarts: refused connections are expected for a while */
    double wait = o->timeout_given ? o->timeout : CTL_JOIN_TIMEOUT, deadline = now_s() + wait;
    char last[600] = "no answer yet", err[600];
    while (now_s() < deadline) {
        nanosleep(&(struct timespec){.tv_nsec = CTL_POLL_INTERVAL_NS}, NULL);
        double left = deadline - now_s();
        if (left <= 0)
            break;
        int rc = ctl_http_request(&o->target, "GET", "/api/v1/status", o->token, NULL,
                                  left < CTL_REQUEST_TIMEOUT ? left : CTL_REQUEST_TIMEOUT, &r, err, sizeof(err));
        if (rc) {
            snprintf(last, sizeof(last), "%s", err);
            continue;
        }
        cJSON *doc = r.status == 200 ? cJSON_ParseWithLength(r.body, r.len) : NULL;
        if (!doc)
            snprintf(last, sizeof(last), "%s answered HTTP %d", o->target.url, r.status);
        if (doc && joined(doc, last, sizeof(last))) {
            if (o->json)
                print_raw(&r);
            else
                printf("node %.0f joined cluster %s: %d members, leader node %.0f\n", num_of(doc, "node"),
                       str_of(doc, "cluster"), cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "members")),
                       num_of(doc, "leader"));
            cJSON_Delete(doc);
            ctl_response_free(&r);
            return CTL_EXIT_OK;
        }
        cJSON_Delete(doc);
        ctl_response_free(&r);
    }
    fprintf(stderr, "starlingctl: the node did not become a voter of the cluster within %g s; last: %s\n", wait,
            last);
    return CTL_EXIT_FAILED;
}

/* --- listings ----------------------------------------------------------------------- */

enum listing { LIST_SESSIONS, LIST_SUBSCRIPTIONS, LIST_RETAINED };

static void session_row(struct table *t, const cJSON *s)
{
    char b[6][32];
    char *id = shown(str_of(s, "client_id"), 200);
    const cJSON *expiry = cJSON_GetObjectItemCaseSensitive(s, "expiry");
    if (cJSON_IsNumber(expiry))
        snprintf(b[5], sizeof(b[5]), "%.0f s", expiry->valuedouble);
    else
        snprintf(b[5], sizeof(b[5]), "never");
    table_row(t, id, text_of(s, "node", b[0]), text_of(s, "connected", b[1]), b[5],
              text_of(s, "subscriptions", b[2]), text_of(s, "queued", b[3]), text_of(s, "inflight", b[4]));
    free(id);
}

static void subscription_row(struct table *t, const cJSON *s)
{
    char b[4][32], options[64];
    char *id = shown(str_of(s, "client_id"), 200), *filter = shown(str_of(s, "filter"), 200);
    snprintf(options, sizeof(options), "%s%srh=%.0f", cJSON_IsTrue(cJSON_GetObjectItem(s, "no_local")) ? "nl," : "",
             cJSON_IsTrue(cJSON_GetObjectItem(s, "retain_as_published")) ? "rap," : "",
             num_of(s, "retain_handling"));
    table_row(t, id, filter, text_of(s, "qos", b[0]), options, text_of(s, "subscription_id", b[1]),
              text_of(s, "node", b[2]));
    free(id);
    free(filter);
}

static void retained_row(struct table *t, const cJSON *s)
{
    char b[2][32];
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "payload"));
    char *topic = shown(str_of(s, "topic"), 200), *payload = text ? shown(text, 48) : must(strdup("(binary)"));
    table_row(t, topic, text_of(s, "qos", b[0]), text_of(s, "payload_bytes", b[1]), payload);
    free(topic);
    free(payload);
}

static int cmd_list(const struct opts *o, enum listing kind, const char *arg)
{
    static const char *const names[] = {"sessions", "subscriptions", "retained"};
    static const char *const params[] = {"client_id", "client_id", "topic"};
    static const char *const nouns[][2] = {
        {"session", "sessions"}, {"subscription", "subscriptions"}, {"retained message", "retained messages"}};
    char *target = must(malloc(64 + (arg ? strlen(arg) * 3 : 0)));
    const char *sep = "?";
    int len = sprintf(target, "/api/v1/%s", names[kind]);
    if (arg) {
        char *enc = must(ctl_pct_encode(arg));
        len += sprintf(target + len, "%s%s=%s", sep, params[kind], enc);
        sep = "&";
        free(enc);
    }
    if (o->limit >= 0)
        sprintf(target + len, "%slimit=%ld", sep, o->limit);
    cJSON *doc;
    int code = get_json(o, target, &doc);
    free(target);
    if (code >= 0)
        return code;
    static const int cols[] = {7, 6, 4};
    struct table t = {.cols = cols[kind]};
    if (kind == LIST_SESSIONS)
        table_row(&t, "CLIENT ID", "NODE", "CONNECTED", "EXPIRY", "SUBS", "QUEUED", "INFLIGHT");
    else if (kind == LIST_SUBSCRIPTIONS)
        table_row(&t, "CLIENT ID", "FILTER", "QOS", "OPTIONS", "SUB ID", "NODE");
    else
        table_row(&t, "TOPIC", "QOS", "BYTES", "PAYLOAD");
    const cJSON *e, *list = cJSON_GetObjectItemCaseSensitive(doc, names[kind]);
    cJSON_ArrayForEach(e, list)
    {
        if (kind == LIST_SESSIONS)
            session_row(&t, e);
        else if (kind == LIST_SUBSCRIPTIONS)
            subscription_row(&t, e);
        else
            retained_row(&t, e);
    }
    int shown_n = cJSON_GetArraySize(list);
    double count = num_of(doc, "count");
    if (shown_n)
        table_print(&t);
    table_free(&t);
    if (count < 0)
        count = 0;
    if (shown_n < count)
        printf("%d of %.0f %s (--limit to see more)\n", shown_n, count, nouns[kind][1]);
    else
        printf("%.0f %s\n", count, nouns[kind][count != 1]);
    cJSON_Delete(doc);
    return CTL_EXIT_OK;
}

static int cmd_metrics(const struct opts *o)
{
    struct ctl_response r;
    int code = call(o, "GET", "/metrics", NULL, o->timeout, &r);
    if (code)
        return code;
    if (r.status != 200)
        code = refused(o, &r);
    else
        fwrite(r.body, 1, r.len, stdout);
    ctl_response_free(&r);
    return code;
}

/* --- the command line ------------------------------------------------------------------ */

static bool node_id(const char *s, unsigned long *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || errno || v < 1 || v > 65535)
        return false;
    *out = v;
    return true;
}

enum { OPT_URL = 256, OPT_HOST, OPT_PORT, OPT_TOKEN, OPT_JSON, OPT_TIMEOUT, OPT_LIMIT, OPT_CACERT, OPT_CERT, OPT_KEY,
       OPT_PASSWORD, OPT_USER, OPT_PATTERN, OPT_ANONYMOUS };

static const struct option long_options[] = {
    {"url", required_argument, NULL, OPT_URL},         {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},       {"token", required_argument, NULL, OPT_TOKEN},
    {"json", no_argument, NULL, OPT_JSON},             {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"limit", required_argument, NULL, OPT_LIMIT},     {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},               {"cacert", required_argument, NULL, OPT_CACERT},
    {"cert", required_argument, NULL, OPT_CERT},       {"key", required_argument, NULL, OPT_KEY},
    {"insecure", no_argument, NULL, 'k'},              {"config", required_argument, NULL, 'c'},
    {"password", required_argument, NULL, OPT_PASSWORD}, {"user", required_argument, NULL, OPT_USER},
    {"pattern", no_argument, NULL, OPT_PATTERN},       {"anonymous", no_argument, NULL, OPT_ANONYMOUS},
    {NULL, 0, NULL, 0},
};

/* -c FILE: the node's admin settings from its own config file (read with
 * the broker's parser): host and port from admin_listen (a wildcard address
 * means this machine), https when admin_certfile is set, admin_token, and
 * admin_cafile (the CA of the client certificates, usually the one that
 * signed the node's too). addr_given: --url/--host/--port win over the
 * file's address. Returns -1 to go on, else the exit code. */
static int from_config(struct opts *o, const char *path, bool addr_given, char host[64], char port[8], bool *https)
{
    static struct config cfg; /* about 10 KiB: not on the stack */
    char err[600];
    config_defaults(&cfg);
    if (config_load_file(&cfg, path, err, sizeof(err)) != 0)
        return usage_error("%s", err);
    uint16_t p = 0;
    if (!addr_given) {
        if (strcmp(cfg.admin_listen, "off") == 0)
            return usage_error("%s: admin_listen is off: this node has no admin API", path);
        if (config_hostport_split(cfg.admin_listen, host, 64, &p) != 0)
            return usage_error("%s: admin_listen %s is not IP:PORT", path, cfg.admin_listen);
        if (strcmp(host, "0.0.0.0") == 0)
            snprintf(host, 64, "127.0.0.1");
        else if (strcmp(host, "::") == 0)
            snprintf(host, 64, "::1");
        snprintf(port, 8, "%u", p);
        *https = cfg.admin_certfile[0] != '\0';
    }
    if (cfg.admin_token[0]) {
        snprintf(o->token_buf, sizeof(o->token_buf), "%s", cfg.admin_token);
        o->token = o->token_buf;
    }
    snprintf(o->cafile_buf, sizeof(o->cafile_buf), "%s", cfg.admin_cafile);
    return -1;
}

/* Options anywhere on the line; what is left is the command. Returns -1 to
 * run it, else the exit code. */
static int parse_options(int argc, char **argv, struct opts *o)
{
    const char *url = NULL, *host = NULL, *port = NULL, *cacert = NULL, *cert = NULL, *key = NULL;
    const char *config = NULL, *token = NULL;
    bool insecure = false;
    char cfg_host[64], cfg_port[8];
    char err[600], *end;
    int ch;
    o->limit = -1;
    o->timeout = CTL_REQUEST_TIMEOUT;
    o->token = getenv("STARLINGCTL_TOKEN");
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":hVkc:", long_options, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case OPT_CACERT:
            cacert = optarg;
            break;
        case OPT_CERT:
            cert = optarg;
            break;
        case OPT_KEY:
            key = optarg;
            break;
        case 'k':
            insecure = true;
            break;
        case OPT_URL:
            url = optarg;
            break;
        case OPT_HOST:
            host = optarg;
            break;
        case OPT_PORT:
            port = optarg;
            break;
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_PASSWORD:
            o->password = optarg;
            break;
        case OPT_USER:
            o->acl_user = optarg;
            break;
        case OPT_PATTERN:
            o->acl_pattern = true;
            break;
        case OPT_ANONYMOUS:
            o->acl_anonymous = true;
            break;
        case OPT_TIMEOUT:
            errno = 0;
            o->timeout = strtod(optarg, &end);
            if (!*optarg || *end || errno || !(o->timeout > 0 && o->timeout <= 86400))
                return usage_error("--timeout \"%s\" is not a number of seconds above 0", optarg);
            o->timeout_given = true;
            break;
        case OPT_LIMIT:
            errno = 0;
            o->limit = strtol(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || errno || o->limit > 1000000)
                return usage_error("--limit \"%s\" is not a whole number 0..1000000", optarg);
            break;
        case 'h':
            fputs(usage_text, stdout);
            return CTL_EXIT_OK;
        case 'V':
            puts("starlingctl " STARLING_VERSION);
            return CTL_EXIT_OK;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (url && (host || port))
        return usage_error("give either --url or --host/--port");
    bool https = false;
    if (config) {
        int rc = from_config(o, config, url || host || port, cfg_host, cfg_port, &https);
        if (rc >= 0)
            return rc;
        if (!url && !host && !port) {
            host = cfg_host;
            port = cfg_port;
        }
    }
    if (token)
        o->token = token;
    if (!url && !host && !port)
        url = getenv("STARLINGCTL_URL") && *getenv("STARLINGCTL_URL") ? getenv("STARLINGCTL_URL") : CTL_DEFAULT_URL;
    bool tls_options = cacert || cert || key || insecure;
    if ((url ? ctl_url_parse(url, &o->target, err, sizeof(err))
             : ctl_target_set(&o->target, host, port, tls_options || https, err, sizeof(err))) != 0)
        return usage_error("%s", err);
    if (tls_options && !o->target.https)
        return usage_error("--cacert, --cert, --key and --insecure go with an https:// URL");
    if (o->target.https && !cacert && o->cafile_buf[0])
        cacert = o->cafile_buf; /* -c: the node's admin_cafile */
    if (!cert != !key)
        return usage_error("--cert and --key go together");
    if (o->target.https && ctl_tls_setup(&o->target, cacert, cert, key, insecure, err, sizeof(err)) != 0) {
        fprintf(stderr, "starlingctl: %s\n", err);
        return CTL_EXIT_FAILED;
    }
    return -1;
}

static int run(const struct opts *o, int argc, char **argv)
{
    if (argc == 0)
        return usage_error("no command given");
    const char *cmd = argv[0];
    int max_args = 1;
    if (o->limit >= 0 && strcmp(cmd, "sessions") && strcmp(cmd, "subscriptions") && strcmp(cmd, "retained") &&
        strcmp(cmd, "users") && strcmp(cmd, "acl"))
        return usage_error("--limit goes with sessions, subscriptions, retained, users list and acl list");
    bool users = !strcmp(cmd, "users"), acl = !strcmp(cmd, "acl");
    if (o->password && !users)
        return usage_error("--password goes with users add and users passwd");
    if ((o->acl_user || o->acl_pattern || o->acl_anonymous) && !acl)
        return usage_error("--user, --pattern and --anonymous go with acl add and acl del");
    if (users || acl) {
        struct ctl_call call = {&o->target, o->token,     o->json,        o->timeout,     o->password,
                                o->acl_user, o->acl_pattern, o->acl_anonymous, o->limit};
        return users ? ctl_users_cmd(&call, argc, argv) : ctl_acl_cmd(&call, argc, argv);
    }
    if (!strcmp(cmd, "cluster")) {
        static const struct {
            const char *name;
            int min, max; /* arguments after the name */
            const char *args;
        } subs[] = {
            {"status", 0, 0, "no argument"}, {"join", 1, 1, "HOST:PORT (a member's cluster port)"},
            {"leave", 0, 0, "no argument"},  {"remove", 1, 1, "one NODE_ID"},
            {"transfer", 0, 1, "at most one NODE_ID"},
        };
        const char *sub = argc > 1 ? argv[1] : "";
        int n = argc - 2, i = 0;
        while (i < 5 && strcmp(subs[i].name, sub))
            i++;
        if (argc < 2)
            return usage_error("cluster needs one of status, join, leave, remove, transfer");
        if (i == 5)
            return usage_error("unknown cluster command \"%s\"", sub);
        if (n < subs[i].min || n > subs[i].max)
            return usage_error("cluster %s %s %s", sub, n < subs[i].min ? "needs" : "takes", subs[i].args);
        unsigned long node = 0;
        if (!strcmp(sub, "join"))
            return strchr(argv[2], ':') ? cmd_join(o, argv[2])
                                        : usage_error("cluster join: \"%s\" is not HOST:PORT", argv[2]);
        if (n == 1 && !node_id(argv[2], &node))
            return usage_error("\"%s\" is not a node id (1..65535)", argv[2]);
        if (!strcmp(sub, "status"))
            return cmd_status(o);
        if (!strcmp(sub, "leave"))
            return cluster_op(o, "leave", "");
        return node_op(o, sub, node);
    }
    if (!strcmp(cmd, "metrics"))
        max_args = 0;
    else if (strcmp(cmd, "sessions") && strcmp(cmd, "subscriptions") && strcmp(cmd, "retained"))
        return usage_error("unknown command \"%s\"", cmd);
    if (argc - 1 > max_args)
        return usage_error("unexpected argument \"%s\"", argv[1 + max_args]);
    if (!strcmp(cmd, "metrics"))
        return cmd_metrics(o);
    enum listing kind = !strcmp(cmd, "sessions") ? LIST_SESSIONS : !strcmp(cmd, "subscriptions") ? LIST_SUBSCRIPTIONS
                                                                                                   : LIST_RETAINED;
    return cmd_list(o, kind, argc > 1 ? argv[1] : NULL);
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    int code = parse_options(argc, argv, &o);
    if (code >= 0)
        return code;
    code = run(&o, argc - optind, argv + optind);
    ctl_target_free(&o.target);
    return fflush(stdout) == 0 || code ? code : CTL_EXIT_FAILED;
}
