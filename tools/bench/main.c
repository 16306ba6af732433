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

int main(int argc, char **argv)
{
    enum bench_mode mode;
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        bench__usage_top(argc < 2 ? stderr : stdout);
        return argc < 2 ? BENCH_EXIT_USAGE : BENCH_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("starling-bench %s\n", STARLING_VERSION);
        return BENCH_EXIT_OK;
    }
    if (mode_of(argv[1], &mode) != 0) {
        fprintf(stderr, "starling-bench: unknown command '%s' (expected conn, pub or sub)\n",
                argv[1]);
        bench__usage_top(stderr);
        return BENCH_EXIT_USAGE;
    }

    int status = BENCH_EXIT_OK;
    char err[512];
    struct bench_opts opts;
    if (bench__opts_parse(&opts, mode, argc - 2, argv + 2, err, sizeof(err)) != 0) {
        fprintf(stderr, "starling-bench %s: %s\n(see starling-bench %s --help)\n",
                bench__mode_name(mode), err, bench__mode_name(mode));
        status = BENCH_EXIT_USAGE;
        goto out_opts;
    }
    if (opts.help) {
        bench__usage(stdout, mode);
        goto out_opts;
    }

    signal(SIGPIPE, SIG_IGN); /* a broker that goes away is an error code, not a signal */
    struct bench_run *run = malloc(sizeof(*run));
    if (!run) {
        fprintf(stderr, "starling-bench: out of memory\n");
        status = BENCH_EXIT_FAIL;
        goto out_opts;
    }
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc) {
        fprintf(stderr, "starling-bench: %s\n", uv_strerror(rc));
        status = BENCH_EXIT_FAIL;
        goto out_run_mem;
    }
    if (bench__run_init(run, &loop, &opts, err, sizeof(err)) != 0) {
        fprintf(stderr, "starling-bench: %s\n", err);
        status = BENCH_EXIT_FAIL;
        goto out_loop;
    }

    bench__run(run);

    const struct bench_stats *s = &run->stats;
    status = exit_status(&opts, s);
    struct bench_report rep = {.opts = &opts, .stats = s, .latency = &run->latency,
                               .connect = &run->connect, .exit_status = status};
    if (opts.json)
        bench__report_json(stdout, &rep);
    else
        bench__report_text(stdout, &rep);
    if (status != BENCH_EXIT_OK) {
        char msg[96];
        int code = main_error(s);
        if (s->conn_failed || s->connected == 0)
            fprintf(stderr, "starling-bench: %llu of %u clients could not connect to %s:%u: %s\n",
                    (unsigned long long)(s->conn_failed ? s->conn_failed : opts.count),
                    opts.count, opts.hosts[0], opts.port,
                    code ? bench__error_message(code, msg, sizeof(msg)) : "stopped");
        if (s->lost)
            fprintf(stderr, "starling-bench: %llu connections lost during the run\n",
                    (unsigned long long)s->lost);
        if (s->sub_failed)
            fprintf(stderr, "starling-bench: %llu subscriptions refused\n",
                    (unsigned long long)s->sub_failed);
    }
    bench__run_close(run);
out_loop:
    uv_loop_close(&loop);
out_run_mem:
    free(run);
out_opts:
    bench__opts_free(&opts);
    return status;
}
