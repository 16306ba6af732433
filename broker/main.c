/* starlingd: parses the configuration, starts the broker on the default loop
 * and runs it until a signal stops it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "broker.h"
#include "cluster.h"
#include "config.h"
#include "fs.h"

static int make_data_dir(const char *dir, char *err, size_t errlen)
{
    int rc = fs_mkdir_p(dir, 0750);
    if (rc)
        snprintf(err, errlen, "data dir %s: %s", dir, strerror(-rc));
    return rc;
}

/* Every client is a descriptor: the soft limit (often 1024) goes up to the
 * hard one. What that allows is checked against max_connections once the
 * node runs (broker/listen.c). */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        fprintf(stderr, "starlingd: raising the descriptor limit from %llu to %llu: %s\n", (unsigned long long)was,
                (unsigned long long)rl.rlim_max, strerror(errno));
}

int main(int argc, char **argv)
{
    struct config cfg;
    char err[1024] = "";
    bool dump = false;
    config_defaults(&cfg);
    int rc = config_parse_args(&cfg, argc, argv, &dump, err, sizeof(err));
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "starlingd: %s\n", err);
        return 2;
    }
    if (dump) {
        /* read-only: works while the node runs */
        if (cluster_dump(cfg.data_dir, stdout, err, sizeof(err)) != 0) {
            fprintf(stderr, "starlingd: --dump: %s\n", err);
            return 1;
        }
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (make_data_dir(cfg.data_dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "starlingd: %s\n", err);
        return 1;
    }
    raise_nofile();
    uv_loop_t *loop = uv_default_loop();
    struct broker *b = NULL;
    rc = broker_start(loop, &cfg, &b, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "starlingd: %s\n", err);
        if (b)
            broker_stop(b);
        uv_run(loop, UV_RUN_DEFAULT);
        broker_free(b);
        uv_loop_close(loop);
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    int code = broker_exit_code(b);
    broker_free(b);
    uv_loop_close(loop);
    if (code == BROKER_EXIT_RESTART) {
        /* every descriptor of ours is close-on-exec (the data dir lock too) */
        fflush(NULL);
        execv("/proc/self/exe", argv);
        fprintf(stderr, "starlingd: restarting: execv /proc/self/exe: %s\n", strerror(errno));
        return 1;
    }
    return code;
}
