/* Tests for tools/bench/report.c: error counting, rates, progress, text and JSON summaries. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

Test(bench_report, errors_are_counted_per_kind)
{
    struct bench_stats s;
    memset(&s, 0, sizeof(s));
    bench__stats_error(&s, UV_ECONNREFUSED);
    bench__stats_error(&s, UV_ETIMEDOUT);
    bench__stats_error(&s, UV_ECONNREFUSED);
    bench__stats_error(&s, BENCH_ERR_CONNACK + 0x87);
    cr_assert_eq(s.nerrors, 3);
    cr_assert_eq(s.errors[0].code, UV_ECONNREFUSED);
    cr_assert_eq(s.errors[0].n, 2);
    cr_assert_eq(s.errors[1].n, 1);
    cr_assert_eq(s.errors[2].code, BENCH_ERR_CONNACK + 0x87);
}

Test(bench_report, error_table_never_overflows)
{
    struct bench_stats s;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 3 * BENCH_MAX_ERRORS; i++)
        bench__stats_error(&s, BENCH_ERR_CONNACK + i);
    cr_assert_eq(s.nerrors, BENCH_MAX_ERRORS);
    cr_assert_eq(s.errors[BENCH_MAX_ERRORS - 1].code, BENCH_ERR_CONNACK + 3 * BENCH_MAX_ERRORS - 1);
}

Test(bench_report, error_texts)
{
    char buf[128];
    cr_assert_str_eq(bench__error_message(UV_ECONNREFUSED, buf, sizeof(buf)),
                     "connection refused");
    cr_assert_str_eq(bench__error_name(UV_ECONNREFUSED, buf, sizeof(buf)), "ECONNREFUSED");
    cr_assert_str_eq(bench__error_message(UV_ETIMEDOUT, buf, sizeof(buf)),
                     "connection timed out");
    cr_assert_str_eq(bench__error_message(BENCH_ERR_CONNACK + 0x87, buf, sizeof(buf)),
                     "CONNACK 0x87 not authorized");
    cr_assert_str_eq(bench__error_message(BENCH_ERR_CONNACK + 0x05, buf, sizeof(buf)),
                     "CONNACK 0x05 not authorized (v3)");
    cr_assert_str_eq(bench__error_name(BENCH_ERR_CONNACK + 0x86, buf, sizeof(buf)),
                     "CONNACK_0x86");
    cr_assert_str_eq(bench__error_name(BENCH_ERR_PROTOCOL, buf, sizeof(buf)), "PROTOCOL");
    cr_assert_str_eq(bench__error_message(BENCH_ERR_DISCONNECT, buf, sizeof(buf)),
                     "disconnected by the broker");
    cr_assert_str_eq(bench__error_message(BENCH_ERR_TLS, buf, sizeof(buf)), "TLS handshake failed");
    cr_assert_str_eq(bench__error_name(BENCH_ERR_TLS, buf, sizeof(buf)), "TLS");
    cr_assert_str_eq(bench__error_name(BENCH_ERR_WS, buf, sizeof(buf)), "WS");
}

Test(bench_report, rates)
{
    cr_assert_float_eq(bench__rate(1000, 0, 2000000000u), 500.0, 1e-9);
    cr_assert_float_eq(bench__rate(0, 0, 1000), 0.0, 1e-9);
    cr_assert_float_eq(bench__rate(5, 100, 100), 0.0, 1e-9, "empty window");
    cr_assert_float_eq(bench__rate(5, 200, 100), 0.0, 1e-9, "reversed window");
}

struct fixture {
    struct bench_opts o;
    struct bench_stats s;
    struct bench_hist *lat, *conn;
};

static void fixture_init(struct fixture *fx, enum bench_mode mode)
{
    char err[256];
    char *argv[] = {"-t", "bench/%i", "-q", "1", "-c", "4"};
    int argc = mode == BENCH_CONN ? 0 : 6;
    cr_assert_eq(bench__opts_parse(&fx->o, mode, argc, argv, err, sizeof(err)), 0, "%s", err);
    memset(&fx->s, 0, sizeof(fx->s));
    fx->lat = malloc(sizeof(*fx->lat));
    fx->conn = malloc(sizeof(*fx->conn));
    bench__hist_init(fx->lat);
    bench__hist_init(fx->conn);
}

static void fixture_fini(struct fixture *fx)
{
    bench__opts_free(&fx->o);
    free(fx->lat);
    free(fx->conn);
}

Test(bench_report, json_summary_has_every_figure)
{
    struct fixture fx;
    fixture_init(&fx, BENCH_SUB);
    fx.s.t_start = 0;
    fx.s.t_end = 2000000000u;
    fx.s.started = 4;
    fx.s.connected = 3;
    fx.s.conn_failed = 1;
    fx.s.t_first_conn = 0;
    fx.s.t_last_conn = 1000000000u;
    fx.s.recv = 1000;
    fx.s.t_first_recv = 0;
    fx.s.t_last_recv = 500000000u;
    fx.s.subscribed = 3;
    for (uint64_t v = 1; v <= 1000; v++)
        bench__hist_record(fx.lat, v);
    bench__stats_error(&fx.s, UV_ECONNREFUSED);
    struct bench_report r = {.opts = &fx.o, .stats = &fx.s, .latency = fx.lat,
                             .connect = fx.conn, .exit_status = 1};
    char *buf = NULL;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    bench__report_json(f, &r);
    fclose(f);
    const char *want[] = {
        "\"mode\": \"sub\"", "\"transport\": \"tcp\"", "\"clients\": 4", "\"qos\": 1", "\"duration_s\": 2.000",
        "\"connected\": 3", "\"failed\": 1", "\"rate_per_s\": 3.0", "\"granted\": 3",
        "\"count\": 1000", "\"rate_per_s\": 2000.0", "\"window_s\": 0.500", "\"p50\": 503" /* bucket [500, 503] */,
        "\"p99\": 991", "\"max\": 1000", "\"error\": \"ECONNREFUSED\"",
        "\"message\": \"connection refused\"", "\"exit_status\": 1}"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert_neq(strstr(buf, want[i]), NULL, "missing %s in\n%s", want[i], buf);
    int depth = 0;
    for (char *p = buf; *p; p++) {
        depth += (*p == '{' || *p == '[') - (*p == '}' || *p == ']');
        cr_assert_geq(depth, 0);
    }
    cr_assert_eq(depth, 0, "unbalanced JSON:\n%s", buf);
    free(buf);
    fixture_fini(&fx);
}

Test(bench_report, text_summary)
{
    struct fixture fx;
    fixture_init(&fx, BENCH_PUB);
    fx.s.t_end = 1000000000u;
    fx.s.connected = 4;
    fx.s.sent = 200;
    fx.s.acked = 199;
    fx.s.t_last_pub = 100000000u;
    struct bench_report r = {.opts = &fx.o, .stats = &fx.s, .latency = fx.lat,
                             .connect = fx.conn};
    char *buf = NULL;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    bench__report_text(f, &r);
    fclose(f);
    cr_assert_neq(strstr(buf, "starling-bench pub: 4 clients, MQTT 5.0, localhost:1883, QoS 1"),
                  NULL, "%s", buf);
    cr_assert_neq(strstr(buf, "200 messages, 2000.0 msg/s, 199 acknowledged"), NULL, "%s", buf);
    cr_assert_neq(strstr(buf, "connect time   none measured"), NULL, "%s", buf);
    free(buf);
    /* -S --ws */
    fx.o.ssl = fx.o.ws = true;
    f = open_memstream(&buf, &len);
    bench__report_text(f, &r);
    fclose(f);
    cr_assert_neq(strstr(buf, "localhost:1883 over wss, QoS 1"), NULL, "%s", buf);
    free(buf);
    fixture_fini(&fx);
}

Test(bench_report, progress_line_rates)
{
    struct fixture fx;
    fixture_init(&fx, BENCH_SUB);
    struct bench_stats prev = fx.s;
    fx.s.alive = 4;
    fx.s.connected = 4;
    fx.s.subscribed = 4;
    fx.s.recv = 3000;
    prev.recv = 1000;
    char *buf = NULL;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    bench__report_progress(f, &fx.o, &fx.s, &prev, 3.0, 2.0);
    fclose(f);
    cr_assert_str_eq(buf, "[   3.0s] connected 4/4 (2/s) | subscribed 4 | recv 3000 (1000/s)\n");
    free(buf);
    fixture_fini(&fx);
}
