/* bench: counting errors, and printing the progress lines and the final summary. */
#include <inttypes.h>
#include <string.h>

#include "internal.h"

void bench__stats_error(struct bench_stats *s, int code)
{
    for (size_t i = 0; i < s->nerrors; i++) {
        if (s->errors[i].code == code) {
            s->errors[i].n++;
            return;
        }
    }
    if (s->nerrors == BENCH_MAX_ERRORS) /* lump the rarest kinds into the last slot */
        s->nerrors--;
    s->errors[s->nerrors].code = code;
    s->errors[s->nerrors].n = 1;
    s->nerrors++;
}

static const char *connack_text(unsigned rc)
{
    switch (rc) {
    case 0x01: return "unacceptable protocol version (v3)";
    case 0x02: return "client identifier rejected (v3)";
    case 0x03: return "server unavailable (v3)";
    case 0x04: return "bad user name or password (v3)";
    case 0x05: return "not authorized (v3)";
    case 0x80: return "unspecified error";
    case 0x81: return "malformed packet";
    case 0x82: return "protocol error";
    case 0x83: return "implementation specific error";
    case 0x84: return "unsupported protocol version";
    case 0x85: return "client identifier not valid";
    case 0x86: return "bad user name or password";
    case 0x87: return "not authorized";
    case 0x88: return "server unavailable";
    case 0x89: return "server busy";
    case 0x8A: return "banned";
    case 0x8C: return "bad authentication method";
    case 0x95: return "packet too large";
    case 0x97: return "quota exceeded";
    case 0x9F: return "connection rate exceeded";
    default: return "refused";
    }
}

const char *bench__error_message(int code, char *buf, size_t len)
{
    if (code < 0)
        snprintf(buf, len, "%s", uv_strerror(code));
    else if (code == BENCH_ERR_PROTOCOL)
        snprintf(buf, len, "protocol error from the broker");
    else if (code == BENCH_ERR_DISCONNECT)
        snprintf(buf, len, "disconnected by the broker");
    else if (code == BENCH_ERR_TLS)
        snprintf(buf, len, "TLS handshake failed");
    else if (code == BENCH_ERR_WS)
        snprintf(buf, len, "WebSocket upgrade refused or bad frame");
    else if (code >= BENCH_ERR_CONNACK)
        snprintf(buf, len, "CONNACK 0x%02X %s", (unsigned)(code - BENCH_ERR_CONNACK),
                 connack_text((unsigned)(code - BENCH_ERR_CONNACK)));
    else
        snprintf(buf, len, "error %d", code);
    return buf;
}

const char *bench__error_name(int code, char *buf, size_t len)
{
    if (code < 0)
        snprintf(buf, len, "%s", uv_err_name(code));
    else if (code == BENCH_ERR_PROTOCOL)
        snprintf(buf, len, "PROTOCOL");
    else if (code == BENCH_ERR_DISCONNECT)
        snprintf(buf, len, "DISCONNECT");
    else if (code == BENCH_ERR_TLS)
        snprintf(buf, len, "TLS");
    else if (code == BENCH_ERR_WS)
        snprintf(buf, len, "WS");
    else if (code >= BENCH_ERR_CONNACK)
        snprintf(buf, len, "CONNACK_0x%02X", (unsigned)(code - BENCH_ERR_CONNACK));
    else
        snprintf(buf, len, "E%d", code);
    return buf;
}

double bench__rate(uint64_t n, uint64_t t0, uint64_t t1)
{
    if (n == 0 || t1 <= t0)
        return 0.0;
    return (double)n * 1e9 / (double)(t1 - t0);
}

static double per_s(uint64_t now, uint64_t prev, double interval_s)
{
    return interval_s > 0 && now >= prev ? (double)(now - prev) / interval_s : 0.0;
}

void bench__report_progress(FILE *f, const struct bench_opts *o, const struct bench_stats *now,
                            const struct bench_stats *prev, double elapsed_s, double interval_s)
{
    fprintf(f, "[%6.1fs] connected %" PRIu64 "/%" PRIu32 " (%.0f/s)", elapsed_s, now->alive,
            o->count, per_s(now->connected, prev->connected, interval_s));
    if (now->conn_failed || now->lost)
        fprintf(f, " failed %" PRIu64 " lost %" PRIu64, now->conn_failed, now->lost);
    if (o->mode == BENCH_SUB && (now->subscribed || now->sub_failed))
        fprintf(f, " | subscribed %" PRIu64, now->subscribed);
    if (o->mode == BENCH_SUB && now->sub_failed)
        fprintf(f, " refused %" PRIu64, now->sub_failed);
    if (o->mode == BENCH_PUB) {
        fprintf(f, " | pub %" PRIu64 " (%.0f/s)", now->sent,
                per_s(now->sent, prev->sent, interval_s));
        if (o->qos > 0)
            fprintf(f, " acked %" PRIu64, now->acked);
    }
    if (o->mode == BENCH_SUB)
        fprintf(f, " | recv %" PRIu64 " (%.0f/s)", now->recv,
                per_s(now->recv, prev->recv, interval_s));
    fputc('\n', f);
    fflush(f);
}

/* "tcp", "tls", "ws" or "wss": what -S and --ws asked for. */
static const char *transport_name(const struct bench_opts *o)
{
    return o->ws ? (o->ssl ? "wss" : "ws") : o->ssl ? "tls" : "tcp";
}

static const char *version_name(uint8_t v)
{
    return v == 3 ? "3.1" : v == 4 ? "3.1.1" : "5.0";
}

static void hist_line(FILE *f, const char *label, const struct bench_hist *h, double div,
                      const char *unit)
{
    if (h->count == 0) {
        fprintf(f, "  %-14s none measured\n", label);
        return;
    }
    fprintf(f,
            "  %-14s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f %s"
            "  (n=%" PRIu64 ")\n",
            label, (double)bench__hist_percentile(h, 50) / div,
            (double)bench__hist_percentile(h, 90) / div,
            (double)bench__hist_percentile(h, 99) / div,
            (double)bench__hist_percentile(h, 99.9) / div, (double)h->max / div,
            bench__hist_mean(h) / div, unit, h->count);
}

void bench__report_text(FILE *f, const struct bench_report *r)
{
    const struct bench_opts *o = r->opts;
    const struct bench_stats *s = r->stats;
    double elapsed = s->t_end > s->t_start ? (double)(s->t_end - s->t_start) / 1e9 : 0;
    fprintf(f, "\nstarling-bench %s: %" PRIu32 " clients, MQTT %s, %s:%u", bench__mode_name(o->mode),
            o->count, version_name(o->version), o->hosts[0], o->port);
    if (o->nhosts > 1)
        fprintf(f, " (+%zu hosts)", o->nhosts - 1);
    if (o->ssl || o->ws)
        fprintf(f, " over %s", transport_name(o));
    if (o->mode != BENCH_CONN)
        fprintf(f, ", QoS %u", o->qos);
    if (o->mode == BENCH_PUB)
        fprintf(f, ", %zu-byte payload",
                o->message ? strlen(o->message) : (size_t)o->size);
    fprintf(f, "\n  %-14s %.2f s\n", "duration", elapsed);
    fprintf(f, "  %-14s %" PRIu64 " of %" PRIu32 " (failed %" PRIu64 ", lost later %" PRIu64
               "), %.1f conn/s\n",
            "connected", s->connected, o->count, s->conn_failed, s->lost,
            bench__rate(s->connected, s->t_first_conn, s->t_last_conn));
    hist_line(f, "connect time", r->connect, 1000.0, "ms");
    if (o->mode == BENCH_SUB)
        fprintf(f, "  %-14s %" PRIu64 " granted, %" PRIu64 " refused\n", "subscriptions",
                s->subscribed, s->sub_failed);
    if (o->mode == BENCH_PUB) {
        fprintf(f, "  %-14s %" PRIu64 " messages, %.1f msg/s", "published", s->sent,
                bench__rate(s->sent, s->t_first_pub, s->t_last_pub));
        if (o->qos > 0)
            fprintf(f, ", %" PRIu64 " acknowledged, %" PRIu64 " refused", s->acked,
                    s->pub_failed);
        fputc('\n', f);
    }
    if (o->mode == BENCH_SUB) {
        fprintf(f, "  %-14s %" PRIu64 " messages, %.1f msg/s over %.2f s", "received", s->recv,
                bench__rate(s->recv, s->t_first_recv, s->t_last_recv),
                s->t_last_recv > s->t_first_recv
                    ? (double)(s->t_last_recv - s->t_first_recv) / 1e9
                    : 0.0);
        if (s->unstamped)
            fprintf(f, ", %" PRIu64 " without a stamp", s->unstamped);
        if (s->bad_stamp)
            fprintf(f, ", %" PRIu64 " stamped in the future", s->bad_stamp);
        fputc('\n', f);
        hist_line(f, "latency", r->latency, 1000.0, "ms");
    }
    char buf[96];
    for (size_t i = 0; i < s->nerrors; i++)
        fprintf(f, "  %-14s %" PRIu64 " x %s\n", i == 0 ? "errors" : "",
                s->errors[i].n, bench__error_message(s->errors[i].code, buf, sizeof(buf)));
    fflush(f);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_hist(FILE *f, const struct bench_hist *h)
{
    fprintf(f,
            "{\"count\": %" PRIu64 ", \"min\": %" PRIu64 ", \"mean\": %.1f, \"p50\": %" PRIu64
            ", \"p90\": %" PRIu64 ", \"p99\": %" PRIu64 ", \"p99_9\": %" PRIu64
            ", \"max\": %" PRIu64 "}",
            h->count, h->count ? h->min : 0, bench__hist_mean(h), bench__hist_percentile(h, 50),
            bench__hist_percentile(h, 90), bench__hist_percentile(h, 99),
            bench__hist_percentile(h, 99.9), h->max);
}

void bench__report_json(FILE *f, const struct bench_report *r)
{
    const struct bench_opts *o = r->opts;
    const struct bench_stats *s = r->stats;
    double elapsed = s->t_end > s->t_start ? (double)(s->t_end - s->t_start) / 1e9 : 0;
    fprintf(f, "{\"mode\": \"%s\", \"host\": ", bench__mode_name(o->mode));
    json_str(f, o->hosts[0]);
    fprintf(f,
            ", \"port\": %u, \"transport\": \"%s\", \"version\": %u, \"clients\": %" PRIu32 ", \"qos\": %u"
            ", \"payload_size\": %zu, \"duration_s\": %.3f,\n",
            o->port, transport_name(o), o->version, o->count, o->qos,
            o->mode != BENCH_PUB ? 0 : o->message ? strlen(o->message) : (size_t)o->size,
            elapsed);
    fprintf(f,
            " \"connect\": {\"started\": %" PRIu64 ", \"connected\": %" PRIu64
            ", \"failed\": %" PRIu64 ", \"lost\": %" PRIu64 ", \"rate_per_s\": %.1f"
            ", \"time_us\": ",
            s->started, s->connected, s->conn_failed, s->lost,
            bench__rate(s->connected, s->t_first_conn, s->t_last_conn));
    json_hist(f, r->connect);
    fprintf(f, "},\n \"subscribe\": {\"granted\": %" PRIu64 ", \"refused\": %" PRIu64 "},\n",
            s->subscribed, s->sub_failed);
    fprintf(f,
            " \"publish\": {\"sent\": %" PRIu64 ", \"acked\": %" PRIu64 ", \"refused\": %" PRIu64
            ", \"overrun\": %" PRIu64 ", \"rate_per_s\": %.1f},\n",
            s->sent, s->acked, s->pub_failed, s->overrun,
            bench__rate(s->sent, s->t_first_pub, s->t_last_pub));
    fprintf(f,
            " \"receive\": {\"count\": %" PRIu64 ", \"unstamped\": %" PRIu64
            ", \"bad_stamp\": %" PRIu64 ", \"rate_per_s\": %.1f, \"window_s\": %.3f},\n",
            s->recv, s->unstamped, s->bad_stamp,
            bench__rate(s->recv, s->t_first_recv, s->t_last_recv),
            s->t_last_recv > s->t_first_recv ? (double)(s->t_last_recv - s->t_first_recv) / 1e9
                                             : 0.0);
    fprintf(f, " \"latency_us\": ");
    json_hist(f, r->latency);
    fprintf(f, ",\n \"errors\": [");
    char name[64], msg[96];
    for (size_t i = 0; i < s->nerrors; i++) {
        fprintf(f, "%s{\"error\": ", i ? ", " : "");
        json_str(f, bench__error_name(s->errors[i].code, name, sizeof(name)));
        fprintf(f, ", \"message\": ");
        json_str(f, bench__error_message(s->errors[i].code, msg, sizeof(msg)));
        fprintf(f, ", \"count\": %" PRIu64 "}", s->errors[i].n);
    }
    fprintf(f, "],\n \"exit_status\": %d}\n", r->exit_status);
    fflush(f);
}
