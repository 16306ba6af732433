/* config_args: starlingd's command line: two getopt passes, the first for
 * --config, --help and --version and to check every flag, the second to apply
 * the flags over the config file in command-line order. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

#ifndef STARLING_VERSION
#define STARLING_VERSION "unknown"
#endif

enum {
    OPT_BIND = 256,
    OPT_DATA_DIR,
    OPT_SET,
    OPT_DUMP,
};

static const struct option long_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"port", required_argument, NULL, 'p'},
    {"bind", required_argument, NULL, OPT_BIND},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"set", required_argument, NULL, OPT_SET},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"dump", no_argument, NULL, OPT_DUMP},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static const char short_options[] = ":c:p:vqhV";

static void print_usage(FILE *out)
{
    fputs("Usage: starlingd [OPTIONS]\n"
          "Runs one Starling MQTT broker node.\n"
          "\n"
          "  -c, --config FILE    read settings from FILE; the flags below override it\n"
          "                       wherever they appear on the command line\n"
          "  -p, --port N         port of the first MQTT listener (1..65535, default 1883)\n"
          "      --bind ADDR      address of the first MQTT listener (default 0.0.0.0)\n"
          "      --data-dir DIR   directory for the Raft log and the state store\n"
          "                       (default ./starling-data)\n"
          "      --set KEY=VALUE  any config file setting, e.g. --set max_inflight=128\n"
          "  -v, --verbose        more log output; repeat for more (info, debug, trace)\n"
          "  -q, --quiet          log errors only\n"
          "      --dump           print the node's state and exit\n"
          "  -h, --help           print this help and exit\n"
          "  -V, --version        print the version and exit\n"
          "\n"
          "Every config key, its range and its default are documented in the sample\n"
          "config deploy/starling.conf; --set accepts the same keys.\n",
          out);
}

static void option_error(char **argv, int ch, char *err, size_t errlen)
{
    /* getopt sets optopt to the option's value even for long options, so the
     * argument itself tells long from short */
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    bool is_long = strncmp(arg, "--", 2) == 0;
    size_t namelen = is_long ? strcspn(arg, "=") : 0;

    if (ch == ':' && is_long)
        config__msg(err, errlen, "option \"%s\" requires an argument (see --help)", arg);
    else if (ch == ':')
        config__msg(err, errlen, "option \"-%c\" requires an argument (see --help)", optopt);
    else if (is_long && optopt != 0 && arg[namelen] == '=')
        config__msg(err, errlen, "option \"%.*s\" does not take an argument (see --help)", (int)namelen, arg);
    else if (is_long)
        config__msg(err, errlen, "unknown option \"%s\" (see --help)", arg);
    else
        config__msg(err, errlen, "unknown option \"-%c\" (see --help)", optopt);
}

/* The flags of the second pass, applied in command-line order. */
static int apply_flag(struct config *c, int ch, const char *arg, bool *dump, char *err, size_t errlen)
{
    char m[512], key[64];
    int rc;

    switch (ch) {
    case 'p':
        return config__set_flag(c, "port", "-p/--port", arg, err, errlen);
    case OPT_BIND:
        return config__set_flag(c, "bind", "--bind", arg, err, errlen);
    case OPT_DATA_DIR:
        return config__set_flag(c, "data_dir", "--data-dir", arg, err, errlen);
    case 'v':
        if (c->log_level < LOG_TRACE)
            c->log_level++;
        return 0;
    case 'q':
        c->log_level = LOG_ERROR;
        return 0;
    case OPT_DUMP:
        if (dump != NULL)
            *dump = true;
        return 0;
    case OPT_SET: {
        const char *eq = strchr(arg, '=');
        if (eq == NULL || eq == arg || (size_t)(eq - arg) >= sizeof(key)) {
            config__msg(err, errlen, "--set: expected KEY=VALUE, got \"%s\"", arg);
            return -EINVAL;
        }
        memcpy(key, arg, (size_t)(eq - arg));
        key[eq - arg] = '\0';
        if ((rc = config_set(c, key, eq + 1, m, sizeof(m))) != 0)
            config__msg(err, errlen, "--set: %s", m);
        return rc;
    }
    default: /* -c, -h, -V: handled in the first pass */
        return 0;
    }
}

int config_parse_args(struct config *c, int argc, char **argv, bool *dump, char *err, size_t errlen)
{
    const char *config_path = NULL;
    bool help = false, version = false;
    int saved_opterr = opterr;
    int ch, rc = 0;

    if (dump != NULL)
        *dump = false;
    opterr = 0; /* messages go to err, not stderr */

    /* First pass: validate the flags and find --config, --help and --version. */
    optind = 0;
    while ((ch = getopt_long(argc, argv, short_options, long_options, NULL)) != -1) {
        if (ch == '?' || ch == ':') {
            option_error(argv, ch, err, errlen);
            rc = -EINVAL;
            goto restore_getopt;
        }
        if (ch == 'c') {
            if (config_path != NULL) {
                config__msg(err, errlen, "-c/--config given more than once");
                rc = -EINVAL;
                goto restore_getopt;
            }
            config_path = optarg;
        }
        help |= ch == 'h';
        version |= ch == 'V';
    }
    if (optind < argc) {
        config__msg(err, errlen, "unexpected argument \"%s\" (see --help)", argv[optind]);
        rc = -EINVAL;
        goto restore_getopt;
    }
    if (help) {
        print_usage(stdout);
        rc = 1;
        goto restore_getopt;
    }
    if (version) {
        fputs("starlingd " STARLING_VERSION "\n", stdout);
        rc = 1;
        goto restore_getopt;
    }

    if (config_path != NULL && (rc = config_load_file(c, config_path, err, errlen)) != 0)
        goto restore_getopt;

    /* Second pass: everything else, over the file. */
    optind = 0;
    while ((ch = getopt_long(argc, argv, short_options, long_options, NULL)) != -1)
        if ((rc = apply_flag(c, ch, optarg, dump, err, errlen)) != 0)
            goto restore_getopt;

restore_getopt:
    opterr = saved_opterr;
    optind = 0;
    return rc;
}
