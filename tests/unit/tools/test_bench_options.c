/* Tests for tools/bench/options.c: emqtt-bench's options, defaults and every error. */
#include <criterion/criterion.h>
#include <string.h>

#include "internal.h"

#define MAXARGS 64

/* Splits a command line on spaces (no quoting needed in these cases). */
static int parse(struct bench_opts *o, enum bench_mode mode, const char *line, char *err,
                 size_t errlen)
{
    static char buf[1024];
    char *argv[MAXARGS];
    int argc = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *tok = strtok(buf, " "); tok && argc < MAXARGS; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    return bench__opts_parse(o, mode, argc, argv, err, errlen);
}

static void parse_ok(struct bench_opts *o, enum bench_mode mode, const char *line)
{
    char err[512];
    int rc = parse(o, mode, line, err, sizeof(err));
    cr_assert_eq(rc, 0, "'%s' failed: %s", line, err);
}

Test(bench_options, defaults_match_emqtt_bench)
{
    struct bench_opts o;
    parse_ok(&o, BENCH_PUB, "-t t");
    cr_assert_str_eq(o.hosts[0], "localhost");
    cr_assert_eq(o.nhosts, 1);
    cr_assert_eq(o.port, 1883);
    cr_assert_eq(o.version, 5);
    cr_assert_eq(o.count, 200);
    cr_assert_eq(o.start_number, 0);
    cr_assert_eq(o.interval_ms, 10);
    cr_assert_eq(o.pub_interval_ms, 1000);
    cr_assert_eq(o.size, 256);
    cr_assert_eq(o.qos, 0);
    cr_assert_eq(o.keepalive, 300);
    cr_assert(o.clean);
    cr_assert_eq(o.limit, 0);
    cr_assert_eq(o.inflight, 1);
    cr_assert(!o.retain);
    cr_assert(!o.json);
    cr_assert_float_eq(o.duration_s, 0.0, 1e-9);
    cr_assert_eq(o.clock, BENCH_CLOCK_MONOTONIC);
    bench__opts_free(&o);
}

Test(bench_options, pub_options)
{
    struct bench_opts o;
    parse_ok(&o, BENCH_PUB,
             "-h 127.0.0.1,localhost -p 1884 -V 4 -c 50 -n 100 -i 0 -I 5 -t bench/%i -q 2 "
             "-s 1024 -k 60 -u alice -P secret -C false -L 5000 --limit-per-client 7 -F 8 "
             "-r -x 30 -d 2.5 --json --prefix pre -w --clock realtime --connect-timeout 3");
    cr_assert_eq(o.nhosts, 2);
    cr_assert_str_eq(o.hosts[0], "127.0.0.1");
    cr_assert_str_eq(o.hosts[1], "localhost");
    cr_assert_eq(o.port, 1884);
    cr_assert_eq(o.version, 4);
    cr_assert_eq(o.count, 50);
    cr_assert_eq(o.start_number, 100);
    cr_assert_eq(o.interval_ms, 0);
    cr_assert_eq(o.pub_interval_ms, 5);
    cr_assert_eq(o.ntopics, 1);
    cr_assert_str_eq(o.topics[0].src, "bench/%i");
    cr_assert_eq(o.qos, 2);
    cr_assert_eq(o.size, 1024);
    cr_assert_eq(o.keepalive, 60);
    cr_assert_str_eq(o.username, "alice");
    cr_assert_str_eq(o.password, "secret");
    cr_assert(!o.clean);
    cr_assert_eq(o.limit, 5000);
    cr_assert_eq(o.limit_per_client, 7);
    cr_assert_eq(o.inflight, 8);
    cr_assert(o.retain);
    cr_assert_eq(o.session_expiry, 30);
    cr_assert_float_eq(o.duration_s, 2.5, 1e-9);
    cr_assert(o.json);
    cr_assert_str_eq(o.prefix, "pre");
    cr_assert(o.wait_before_publishing);
    cr_assert_eq(o.clock, BENCH_CLOCK_REALTIME);
    cr_assert_float_eq(o.connect_timeout_s, 3.0, 1e-9);
    bench__opts_free(&o);
}

Test(bench_options, long_forms_and_inline_values)
{
    struct bench_opts o;
    parse_ok(&o, BENCH_PUB,
             "--host=::1 --port 2000 --version=3 --count=9 --startnumber 4 --interval 3 "
             "--interval_of_msg 20 --topic=a/b --qos=1 --size=12 --keepalive=0 --clean=false "
             "--limit=3 --inflight=0 --username u --password p --retain=true "
             "--session-expiry 9 --duration=1 --quiet --log_to console --connrate 500 "
             "--max-connecting 7 --num-retry-connect 2 --shortids --ifaddr 127.0.0.1,::1");
    cr_assert_str_eq(o.hosts[0], "::1");
    cr_assert_eq(o.port, 2000);
    cr_assert_eq(o.version, 3);
    cr_assert_eq(o.count, 9);
    cr_assert_eq(o.start_number, 4);
    cr_assert_eq(o.interval_ms, 3);
    cr_assert_eq(o.pub_interval_ms, 20);
    cr_assert_eq(o.qos, 1);
    cr_assert_eq(o.size, 12);
    cr_assert_eq(o.keepalive, 0);
    cr_assert(!o.clean);
    cr_assert_eq(o.limit, 3);
    cr_assert_eq(o.inflight, 0);
    cr_assert(o.retain);
    cr_assert(o.quiet);
    cr_assert_eq(o.conn_rate, 500);
    cr_assert_eq(o.max_connecting, 7);
    cr_assert_eq(o.num_retry_connect, 2);
    cr_assert(o.shortids);
    cr_assert_eq(o.nifaddrs, 2);
    cr_assert_str_eq(o.ifaddrs[1], "::1");
    bench__opts_free(&o);

    parse_ok(&o, BENCH_PUB, "-c10 -q1 -t x --interval-of-msg 0 -h [::1]");
    cr_assert_eq(o.count, 10);
    cr_assert_eq(o.qos, 1);
    cr_assert_eq(o.pub_interval_ms, 0);
    cr_assert_str_eq(o.hosts[0], "::1");
    bench__opts_free(&o);
}

Test(bench_options, booleans)
{
    struct bench_opts o;
    parse_ok(&o, BENCH_CONN, "-C false");
    cr_assert(!o.clean);
    bench__opts_free(&o);
    parse_ok(&o, BENCH_CONN, "-C false -C");
    cr_assert(o.clean, "-C alone means true");
    bench__opts_free(&o);
    parse_ok(&o, BENCH_CONN, "-C 0 -c 3");
    cr_assert(!o.clean);
    cr_assert_eq(o.count, 3);
    bench__opts_free(&o);
    parse_ok(&o, BENCH_PUB, "-r -c 3 -t x");
    cr_assert(o.retain);
    cr_assert_eq(o.count, 3, "the next option is not eaten as the boolean's value");
    bench__opts_free(&o);
    parse_ok(&o, BENCH_CONN, "-S false --ssl=false --lowmem -l --ws false");
    cr_assert(!o.ssl);
    bench__opts_free(&o);
}

Test(bench_options, tls_options_are_emqtt_benchs)
{
    struct bench_opts o;
    parse_ok(&o, BENCH_PUB, "-t x -S -c 2");
    cr_assert(o.ssl);
    cr_assert_eq(o.count, 2, "-S takes no value unless it is a boolean");
    cr_assert_null(o.cacertfile, "no CA: the broker is not verified, as in emqtt-bench");
    bench__opts_free(&o);
    parse_ok(&o, BENCH_SUB, "-t x --ssl=true --cacertfile ca.crt --certfile c.crt --keyfile c.key "
                            "--ciphers TLS_AES_128_GCM_SHA256,ECDHE-ECDSA-AES128-GCM-SHA256");
    cr_assert(o.ssl);
    cr_assert_str_eq(o.cacertfile, "ca.crt");
    cr_assert_str_eq(o.certfile, "c.crt");
    cr_assert_str_eq(o.keyfile, "c.key");
    cr_assert_str_eq(o.ciphers, "TLS_AES_128_GCM_SHA256,ECDHE-ECDSA-AES128-GCM-SHA256");
    bench__opts_free(&o);
    /* --ssl-version implies -S, as in emqtt-bench */
    parse_ok(&o, BENCH_CONN, "--ssl-version tlsv1.2");
    cr_assert(o.ssl);
    cr_assert_str_eq(o.ssl_version, "tlsv1.2");
    bench__opts_free(&o);
    parse_ok(&o, BENCH_CONN, "--ssl-version=tlsv1.3_nocompat");
    cr_assert_str_eq(o.ssl_version, "tlsv1.3");
    bench__opts_free(&o);
    parse_ok(&o, BENCH_CONN, "--ws -S -c 1");
    cr_assert(o.ws && o.ssl);
    bench__opts_free(&o);
}

Test(bench_options, sub_takes_several_topics)
{
    struct bench_opts o;
    parse_ok(&o, BENCH_SUB, "-t a/# -t b/+/c -t $share/g/d/%i -q 1 -L 10");
    cr_assert_eq(o.ntopics, 3);
    cr_assert_str_eq(o.topics[2].src, "$share/g/d/%i");
    cr_assert_eq(o.limit, 10);
    bench__opts_free(&o);
}

Test(bench_options, help)
{
    struct bench_opts o;
    parse_ok(&o, BENCH_SUB, "--help");
    cr_assert(o.help);
    bench__opts_free(&o);
    parse_ok(&o, BENCH_PUB, "-c 5 --help -q 9");
    cr_assert(o.help, "--help wins over what follows");
    bench__opts_free(&o);
}

struct ecase {
    enum bench_mode mode;
    const char *line;
    const char *msg; /* substring of the error */
};

Test(bench_options, errors)
{
    static const struct ecase cases[] = {
        {BENCH_CONN, "--bogus", "unknown option '--bogus'"},
        {BENCH_CONN, "-Z", "unknown option '-Z'"},
        {BENCH_CONN, "extra", "unexpected argument 'extra'"},
        {BENCH_CONN, "-c", "needs a value"},
        {BENCH_CONN, "-c abc", "'abc' is not a number"},
        {BENCH_CONN, "-c 0", "out of range"},
        {BENCH_CONN, "-c -5", "is not a number"},
        {BENCH_CONN, "-c 99999999999999999999999", "out of range"},
        {BENCH_CONN, "-p 0", "out of range"},
        {BENCH_CONN, "-p 65536", "out of range"},
        {BENCH_CONN, "-V 6", "out of range (3..5)"},
        {BENCH_CONN, "-V 2", "out of range"},
        {BENCH_CONN, "-k 70000", "out of range"},
        {BENCH_PUB, "-t x -q 3", "out of range (0..2)"},
        {BENCH_PUB, "-t x -s 99999999", "out of range"},
        {BENCH_PUB, "-q 1", "pub needs a topic"},
        {BENCH_SUB, "-q 1", "sub needs a topic"},
        {BENCH_PUB, "-t a -t b", "pub takes one topic"},
        {BENCH_PUB, "-t a/+/b", "not a valid topic name"},
        {BENCH_PUB, "-t a/#", "not a valid topic name"},
        {BENCH_SUB, "-t a/#/b", "not a valid topic filter"},
        {BENCH_SUB, "-t a/b+", "not a valid topic filter"},
        {BENCH_PUB, "-t x/%rand_0", "%rand_N"},
        {BENCH_PUB, "-t", "needs a value"},
        {BENCH_CONN, "-S --certfile c.pem", "--certfile and --keyfile go together"},
        {BENCH_CONN, "-S --keyfile c.key", "--certfile and --keyfile go together"},
        {BENCH_CONN, "--ssl-version tlsv1.1", "not tlsv1.2 or tlsv1.3"},
        {BENCH_CONN, "--ssl-version", "needs a value"},
        {BENCH_CONN, "--cacertfile", "needs a value"},
        {BENCH_CONN, "--quic true", "QUIC"},
        {BENCH_SUB, "-t x -I 10", "-I/--interval_of_msg does not apply to sub"},
        {BENCH_CONN, "-s 10", "-s/--size does not apply to conn"},
        {BENCH_CONN, "-t x", "does not apply to conn"},
        {BENCH_CONN, "-h bad!host", "not a valid host name"},
        {BENCH_CONN, "-h a,,b", "empty host"},
        {BENCH_CONN, "-h ''", "not a valid host name"},
        {BENCH_CONN, "--ifaddr 1.2.3", "not an IP address"},
        {BENCH_CONN, "-d 0", "not a positive number of seconds"},
        {BENCH_CONN, "-d soon", "not a positive number of seconds"},
        {BENCH_CONN, "--connect-timeout -1", "not a positive number"},
        {BENCH_CONN, "--clean=maybe", "not true or false"},
        {BENCH_CONN, "--json=yes", "takes no value"},
        {BENCH_PUB, "-t x --clock wall", "not monotonic or realtime"},
        {BENCH_CONN, "--log_to file", "not console or null"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bench_opts o;
        char err[512] = "";
        int rc = parse(&o, cases[i].mode, cases[i].line, err, sizeof(err));
        cr_assert_neq(rc, 0, "'%s' should fail", cases[i].line);
        cr_assert_neq(strstr(err, cases[i].msg), NULL, "'%s': got '%s', want '%s'",
                      cases[i].line, err, cases[i].msg);
        bench__opts_free(&o);
    }
}

Test(bench_options, usage_lists_the_mode_options)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bench__usage(f, BENCH_PUB);
    fclose(f);
    cr_assert_neq(strstr(buf, "Usage: starling-bench pub"), NULL);
    cr_assert_neq(strstr(buf, "-I, --interval_of_msg"), NULL);
    cr_assert_neq(strstr(buf, "-L, --limit"), NULL);
    cr_assert_neq(strstr(buf, "Differences from emqtt-bench"), NULL);
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    bench__usage(f, BENCH_CONN);
    fclose(f);
    cr_assert_eq(strstr(buf, "--interval_of_msg"), NULL, "pub-only option listed for conn");
    cr_assert_eq(strstr(buf, "    --quic"), NULL, "hidden option listed");
    cr_assert_neq(strstr(buf, "-S, --ssl"), NULL, "the TLS options are listed");
    cr_assert_neq(strstr(buf, "--cacertfile FILE"), NULL);
    free(buf);
}
