/* bench: the run: resolving hosts, pacing connections, the once-a-second tick, stopping.
 *
 * A run starts clients at the -i / -R pace (never more than --max-connecting
 * handshakes at once), then keeps them running until --duration elapses, a
 * limit is reached, every client has gone, or SIGINT / SIGTERM arrives. Stopping
 * sends DISCONNECT on every live connection and waits up to STOP_GRACE_MS for
 * those writes before closing whatever is left; the loop then runs dry and
 * bench__run returns. A second signal closes everything at once. */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "internal.h"
#include "tls.h" /* common/: -S */

#define TICK_MS 250
#define STOP_GRACE_MS 2000

static void run_handles_close(struct bench_run *r);

/* --- setup ------------------------------------------------------------------- */

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *out, char *err,
                   size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (uv_ip4_addr(host, port, v4) == 0)
        return 0;
    if (uv_ip6_addr(host, port, v6) == 0)
        return 0;
    /* A name: emqtt-bench (Erlang's gen_tcp) connects over IPv4 unless told
     * otherwise, so prefer an IPv4 address when the name has both. */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve host '%s': %s", host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    const struct addrinfo *pick = res;
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    }
    memcpy(out, pick->ai_addr, pick->ai_addrlen);
    if (out->ss_family == AF_INET)
        v4->sin_port = htons(port);
    else
        v6->sin6_port = htons(port);
    freeaddrinfo(res);
    return 0;
}

/* Tens of thousands of connections need as many descriptors: take the hard
 * limit, and say up front when even that is too low. */
static void raise_nofile(const struct bench_opts *o, FILE *warn)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)o->count + 16 > (uint64_t)rl.rlim_cur)
        fprintf(warn,
                "starling-bench: warning: %u clients need %u file descriptors, the limit is "
                "%llu (raise it with ulimit -n or LimitNOFILE)\n",
                o->count, o->count + 16, (unsigned long long)rl.rlim_cur);
}

static void make_id_prefix(struct bench_run *r)
{
    const struct bench_opts *o = r->opts;
    const char *mode = bench__mode_name(o->mode);
    if (o->shortids) {
        snprintf(r->client_id_prefix, sizeof(r->client_id_prefix), "%s",
                 o->prefix ? o->prefix : "");
    } else if (o->prefix) {
        snprintf(r->client_id_prefix, sizeof(r->client_id_prefix), "%s_bench_%s_", o->prefix,
                 mode);
    } else {
        char host[256];
        if (gethostname(host, sizeof(host)) != 0)
            strcpy(host, "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(r->client_id_prefix, sizeof(r->client_id_prefix), "%.200s_bench_%s_%u_", host,
                 mode, (unsigned)(bench__rng_next(&r->rng) >> 32));
    }
}

void bench__client_id(const struct bench_run *r, const struct bench_client *c, char *out,
                      size_t cap)
{
    snprintf(out, cap, "%s%llu", r->client_id_prefix,
             (unsigned long long)(r->opts->start_number + c->index + 1));
}

/* emqtt-bench's --ciphers is one comma list; OpenSSL keeps TLS 1.3 suites
 * (TLS_*) apart from the TLS 1.2 cipher list: split it into the two, each
 * ':'-separated. The strings are malloc'd into v12 and v13 (NULL when empty). */
static int split_ciphers(const char *list, char **v12, char **v13)
{
    size_t n = strlen(list) + 1;
    *v12 = calloc(1, n);
    *v13 = calloc(1, n);
    if (!*v12 || !*v13)
        return -ENOMEM;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len) {
            char *to = strncmp(p, "TLS_", 4) == 0 ? *v13 : *v12;
            if (*to)
                strcat(to, ":");
            strncat(to, p, len);
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (!**v12) {
        free(*v12);
        *v12 = NULL;
    }
    if (!**v13) {
        free(*v13);
        *v13 = NULL;
    }
    return 0;
}

/* -S: one client context for every connection. Without --cacertfile the
 * broker is not verified (as emqtt-bench, whose default is verify_none). */
static int tls_setup(struct bench_run *r, char *err, size_t errlen)
{
    const struct bench_opts *o = r->opts;
    if (!o->ssl) {
        if (o->cacertfile || o->certfile || o->ciphers)
            fprintf(stderr, "starling-bench: warning: --cacertfile, --certfile, --keyfile and --ciphers "
                            "apply with -S only (plain TCP now)\n");
        return 0;
    }
    char *v12 = NULL, *v13 = NULL;
    if (o->ciphers && split_ciphers(o->ciphers, &v12, &v13) != 0) {
        free(v12);
        free(v13);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct tls_config cfg = {
        .cafile = o->cacertfile,
        .certfile = o->certfile,
        .keyfile = o->keyfile,
        .ciphers = v12,
        .ciphersuites = v13,
        .tls_version = o->ssl_version,
        .max_version = o->ssl_version,
        .insecure = !o->cacertfile,
    };
    char why[300];
    int rc = tls_ctx_new(&cfg, false, &r->tls_ctx, why, sizeof(why));
    free(v12);
    free(v13);
    if (rc)
        snprintf(err, errlen, "TLS: %s", why);
    return rc;
}

int bench__run_init(struct bench_run *r, uv_loop_t *loop, const struct bench_opts *o,
                    char *err, size_t errlen)
{
    memset(r, 0, offsetof(struct bench_run, rbuf));
    r->loop = loop;
    r->opts = o;
    r->progress = o->json ? stderr : stdout;
    r->rng = (bench__clock_ns(BENCH_CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32)) | 1;
    r->limit_left = o->limit;
    r->publishing_allowed = !o->wait_before_publishing;
    r->connect_timeout_ns = (uint64_t)(o->connect_timeout_s * 1e9);
    bench__hist_init(&r->latency);
    bench__hist_init(&r->connect);

    for (size_t i = 0; i < o->nhosts; i++)
        if (resolve(o->hosts[i], o->port, &r->addrs[i], err, errlen) != 0)
            return -EINVAL;
    for (size_t i = 0; i < o->nifaddrs; i++) {
        if (uv_ip4_addr(o->ifaddrs[i], 0, (struct sockaddr_in *)&r->ifaddrs[i]) != 0 &&
            uv_ip6_addr(o->ifaddrs[i], 0, (struct sockaddr_in6 *)&r->ifaddrs[i]) != 0) {
            snprintf(err, errlen, "'%s' is not an IP address", o->ifaddrs[i]);
            return -EINVAL;
        }
    }
    if (tls_setup(r, err, errlen) != 0)
        return -EINVAL;
    r->ws_seed = bench__rng_next(&r->rng);
    make_id_prefix(r);
    raise_nofile(o, stderr);

    if (o->mode == BENCH_PUB) {
        r->payload_len = o->message ? strlen(o->message) : o->size;
        r->payload = malloc(r->payload_len ? r->payload_len : 1);
        if (!r->payload)
            goto nomem;
        if (o->message) {
            memcpy(r->payload, o->message, r->payload_len);
        } else {
            bench__payload_fill(r->payload, r->payload_len);
            r->stamped = r->payload_len >= BENCH_STAMP_LEN;
            if (!r->stamped)
                fprintf(stderr, "starling-bench: payloads under %d bytes carry no send time: "
                                "latency is not measured\n", BENCH_STAMP_LEN);
        }
    }
    r->clients = calloc(o->count, sizeof(*r->clients));
    if (!r->clients)
        goto nomem;
    for (uint32_t i = 0; i < o->count; i++) {
        r->clients[i].run = r;
        r->clients[i].index = i;
    }
    return 0;
nomem:
    free(r->payload);
    r->payload = NULL;
    tls_ctx_free(r->tls_ctx);
    r->tls_ctx = NULL;
    snprintf(err, errlen, "out of memory for %u clients", o->count);
    return -ENOMEM;
}

void bench__run_close(struct bench_run *r)
{
    tls_ctx_free(r->tls_ctx);
    r->tls_ctx = NULL;
    buf_free(&r->plain);
    buf_free(&r->ws_plain);
    free(r->clients);
    r->clients = NULL;
    free(r->payload);
    r->payload = NULL;
}

/* --- pacing connections ------------------------------------------------------ */

static bool resource_error(int rc)
{
    return rc == UV_EMFILE || rc == UV_ENFILE || rc == UV_EADDRNOTAVAIL || rc == UV_ENOBUFS ||
           rc == UV_ENOMEM;
}

/* Out of descriptors or local ports: keep the connections that exist, give up
 * the ones not started, and say what to change. */
static void exhausted(struct bench_run *r, int rc)
{
    const struct bench_opts *o = r->opts;
    r->resource_exhausted = true;
    uint64_t rest = o->count - r->next_client;
    const char *hint = "";
    if (rc == UV_EMFILE || rc == UV_ENFILE)
        hint = " (raise the open files limit: ulimit -n)";
    else if (rc == UV_EADDRNOTAVAIL)
        hint = " (no free local port: add source addresses with --ifaddr or widen "
               "net.ipv4.ip_local_port_range)";
    fprintf(stderr,
            "starling-bench: stopped opening connections after %llu: %s%s; %llu clients not "
            "started\n",
            (unsigned long long)(r->stats.started - 1), uv_strerror(rc), hint,
            (unsigned long long)rest);
    for (uint64_t i = 0; i < rest; i++) {
        struct bench_client *c = &r->clients[r->next_client++];
        bench__stats_error(&r->stats, rc);
        r->stats.conn_failed++;
        bench__run_settle(r, c);
    }
    uv_timer_stop(&r->pace_timer);
    bench__run_check_done(r);
}

static void pace(struct bench_run *r)
{
    const struct bench_opts *o = r->opts;
    if (r->stopping || r->resource_exhausted)
        return;
    uint64_t interval_ns = o->conn_rate ? UINT64_C(1000000000) / o->conn_rate
                                        : (uint64_t)o->interval_ms * 1000000u;
    uint64_t due = o->count;
    if (interval_ns)
        due = (uv_hrtime() - r->pace_start) / interval_ns + 1;
    while (r->next_client < o->count && r->next_client < due &&
           r->stats.connecting < o->max_connecting && !r->stopping) {
        struct bench_client *c = &r->clients[r->next_client++];
        int rc = bench__client_start(c);
        if (rc && resource_error(rc)) {
            exhausted(r, rc);
            return;
        }
    }
    if (r->next_client == o->count)
        uv_timer_stop(&r->pace_timer);
}

static void on_pace(uv_timer_t *t)
{
    pace(t->data);
}

/* --- progress, phases, stopping --------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    struct bench_run *r = t->data;
    uint64_t now = uv_hrtime();
    uint64_t now_ms = uv_now(r->loop);
    for (uint64_t i = 0; i < r->next_client && !r->stopping; i++)
        bench__client_tick(&r->clients[i], now, now_ms);
    if (r->stopping)
        return;
    if (now - r->last_tick >= 1000000000u - TICK_MS * 500000u) {
        if (!r->opts->quiet)
            bench__report_progress(r->progress, r->opts, &r->stats, &r->prev,
                                   (double)(now - r->stats.t_start) / 1e9,
                                   (double)(now - r->last_tick) / 1e9);
        r->prev = r->stats;
        r->last_tick = now;
    }
}

void bench__run_settle(struct bench_run *r, struct bench_client *c)
{
    const struct bench_opts *o = r->opts;
    if (c->settled)
        return;
    c->settled = true;
    if (++r->settled < o->count)
        return;
    r->phase_done = true;
    const struct bench_stats *s = &r->stats;
    if (!o->quiet) {
        fprintf(r->progress, "starling-bench: connection phase done: %llu connected, %llu failed",
                (unsigned long long)s->connected, (unsigned long long)s->conn_failed);
        if (o->mode == BENCH_SUB)
            fprintf(r->progress, ", %llu subscriptions granted, %llu refused",
                    (unsigned long long)s->subscribed, (unsigned long long)s->sub_failed);
        fputc('\n', r->progress);
        fflush(r->progress);
    }
    if (!r->publishing_allowed && !r->stopping) {
        r->publishing_allowed = true;
        for (uint32_t i = 0; i < o->count; i++)
            bench__client_start_publishing(&r->clients[i]);
    }
}

void bench__run_limit_reached(struct bench_run *r)
{
    for (uint32_t i = 0; i < r->opts->count; i++) {
        struct bench_client *c = &r->clients[i];
        if (!c->pub_done) {
            c->pub_done = true;
            c->publishing = false;
            r->pub_done++;
        }
    }
}

void bench__run_check_done(struct bench_run *r)
{
    const struct bench_opts *o = r->opts;
    if (r->stopping)
        return;
    /* Nobody left: every client failed, or every connection was lost. */
    if (r->phase_done && r->stats.alive == 0 && r->stats.connecting == 0) {
        bench__run_stop(r);
        return;
    }
    /* Publishers that have sent everything the limits allow, and have their acks. */
    if (o->mode == BENCH_PUB && (o->limit || o->limit_per_client) && r->pub_done == o->count &&
        r->inflight == 0 && r->writing == 0)
        bench__run_stop(r);
}

static void on_grace(uv_timer_t *t)
{
    struct bench_run *r = t->data;
    r->forced = true;
    for (uint32_t i = 0; i < r->opts->count; i++)
        bench__client_close(&r->clients[i], 0);
    if (r->open_clients == 0)
        run_handles_close(r);
}

void bench__run_stop(struct bench_run *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    r->stats.t_end = uv_hrtime();
    uv_timer_stop(&r->pace_timer);
    uv_timer_stop(&r->tick_timer);
    for (uint32_t i = 0; i < r->opts->count; i++)
        bench__client_stop(&r->clients[i]);
    if (r->open_clients == 0)
        run_handles_close(r);
    else
        uv_timer_start(&r->stop_timer, on_grace, STOP_GRACE_MS, 0);
}

void bench__run_client_closed(struct bench_run *r, struct bench_client *c)
{
    if (r->stopping && r->open_clients == 0)
        run_handles_close(r);
    else
        bench__run_check_done(r);
}

static void on_duration(uv_timer_t *t)
{
    bench__run_stop(t->data);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct bench_run *r = h->data;
    if (r->signals++ == 0) {
        bench__run_stop(r);
        return;
    }
    on_grace(&r->stop_timer); /* a second signal: close everything now */
}

static void run_handles_close(struct bench_run *r)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&r->pace_timer, (uv_handle_t *)&r->tick_timer,
                         (uv_handle_t *)&r->stop_timer, (uv_handle_t *)&r->sigint,
                         (uv_handle_t *)&r->sigterm};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], NULL);
}

int bench__run(struct bench_run *r)
{
    const struct bench_opts *o = r->opts;
    uv_timer_init(r->loop, &r->pace_timer);
    uv_timer_init(r->loop, &r->tick_timer);
    uv_timer_init(r->loop, &r->stop_timer);
    uv_signal_init(r->loop, &r->sigint);
    uv_signal_init(r->loop, &r->sigterm);
    r->pace_timer.data = r->tick_timer.data = r->stop_timer.data = r;
    r->sigint.data = r->sigterm.data = r;

    uv_update_time(r->loop);
    r->stats.t_start = r->pace_start = r->last_tick = uv_hrtime();
    r->stats.t_first_conn = r->stats.t_start;
    uint64_t interval_ms = o->conn_rate ? 1 : o->interval_ms;
    if (interval_ms < 1)
        interval_ms = 1;
    if (interval_ms > 1000)
        interval_ms = 1000;
    uv_timer_start(&r->pace_timer, on_pace, 0, interval_ms);
    uv_timer_start(&r->tick_timer, on_tick, TICK_MS, TICK_MS);
    if (o->duration_s > 0)
        uv_timer_start(&r->stop_timer, on_duration, (uint64_t)(o->duration_s * 1000 + 0.5), 0);
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);

    int rc = uv_run(r->loop, UV_RUN_DEFAULT);
    if (!r->stats.t_end)
        r->stats.t_end = uv_hrtime();
    return rc;
}
