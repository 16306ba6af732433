/* bench: starling-bench's entry point: subcommand, options, one run, the summary. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int mode_of(const char *s, enum bench_mode *mode)
{
    if (!strcmp(s, "conn"))
        *mode = BENCH_CONN;
    else if (!strcmp(s, "pub"))
        *mode = BENCH_PUB;
    else if (!strcmp(s, "sub"))
        *mode = BENCH_SUB;
    else
        return -1;
    return 0;
}

/* The most frequent error, for the one-line failure message. */
static int main_error(const struct bench_stats *s)
{
    int code = 0;
    uint64_t best = 0;
    for (size_t i = 0; i < s->nerrors; i++) {
        if (s->errors[i].n > best) {
            best = s->errors[i].n;
            code = s->errors[i].code;
        }
    }
    return code;
}

static int exit_status(const struct bench_opts *o, const struct bench_stats *s)
{
    if (s->conn_failed || s->lost || s->sub_failed || s->connected == 0)
        return BENCH_EXIT_FAIL;
    return BENCH_EXIT_OK;
}

/* The first argument when it is not a subcommand with options: help, the
 * version, or unknown. 1 with *status when main is done, 0 with *mode. */
static int command(int argc, char **argv, enum bench_mode *mode, int *status)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        bench__usage_top(argc < 2 ? stderr : stdout);
        *status = argc < 2 ? BENCH_EXIT_USAGE : BENCH_EXIT_OK;
        return 1;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("starling-bench %s\n", STARLING_VERSION);
        *status = BENCH_EXIT_OK;
        return 1;
    }
    if (mode_of(argv[1], mode) != 0) {
        fprintf(stderr, "starling-bench: unknown command '%s' (expected conn, pub or sub)\n",
                argv[1]);
        bench__usage_top(stderr);
        *status = BENCH_EXIT_USAGE;
        return 1;
    }
    return 0;
}

/* One line on stderr for each way the run failed. */
static void explain_failure(const struct bench_opts *o, const struct bench_stats *s)
{
    char msg[96];
    int code = main_error(s);
    if (s->conn_failed || s->connected == 0)
        fprintf(stderr, "starling-bench: %llu of %u clients could not connect to %s:%u: %s\n",
                (unsigned long long)(s->conn_failed ? s->conn_failed : o->count), o->count,
                o->hosts[0], o->port,
                code ? bench__error_message(code, msg, sizeof(msg)) : "stopped");
    if (s->lost)
        fprintf(stderr, "starling-bench: %llu connections lost during the run\n",
                (unsigned long long)s->lost);
    if (s->sub_failed)
        fprintf(stderr, "starling-bench: %llu subscriptions refused\n",
                (unsigned long long)s->sub_failed);
}

/* The summary of a finished run; returns the exit status. */
static int report(const struct bench_opts *o, const struct bench_run *run)
{
    const struct bench_stats *s = &run->stats;
    int status = exit_status(o, s);
    struct bench_report rep = {.opts = o, .stats = s, .latency = &run->latency,
                               .connect = &run->connect, .exit_status = status};
    if (o->json)
        bench__report_json(stdout, &rep);
    else
        bench__report_text(stdout, &rep);
    if (status != BENCH_EXIT_OK)
        explain_failure(o, s);
    return status;
}

/* One run on its own loop, then its summary; returns the exit status. */
static int run_and_report(const struct bench_opts *o)
{
    char err[512];
    int status = BENCH_EXIT_FAIL;
    signal(SIGPIPE, SIG_IGN); /* a broker that goes away is an error code, not a signal */
    struct bench_run *run = malloc(sizeof(*run)); /* large: the shared read buffer */
    if (!run) {
        fprintf(stderr, "starling-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc) {
        fprintf(stderr, "starling-bench: %s\n", uv_strerror(rc));
        goto free_run;
    }
    if (bench__run_init(run, &loop, o, err, sizeof(err)) != 0) {
        fprintf(stderr, "starling-bench: %s\n", err);
        goto close_loop;
    }
    bench__run(run);
    status = report(o, run);
    bench__run_close(run);
close_loop:
    uv_loop_close(&loop);
free_run:
    free(run);
    return status;
}

int main(int argc, char **argv)
{
    enum bench_mode mode;
    int status;
    if (command(argc, argv, &mode, &status))
        return status;
    char err[512];
    struct bench_opts opts;
    if (bench__opts_parse(&opts, mode, argc - 2, argv + 2, err, sizeof(err)) != 0) {
        fprintf(stderr, "starling-bench %s: %s\n(see starling-bench %s --help)\n",
                bench__mode_name(mode), err, bench__mode_name(mode));
        status = BENCH_EXIT_USAGE;
    } else if (opts.help) {
        bench__usage(stdout, mode);
        status = BENCH_EXIT_OK;
    } else {
        status = run_and_report(&opts);
    }
    bench__opts_free(&opts);
    return status;
}
