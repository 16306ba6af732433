/* Tests for broker/config.c: defaults, every key, ranges, file syntax and
 * error lines, command-line precedence, printing round trip, sample config. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "../check_leaks.h"

#ifndef STARLING_SAMPLE_CONF
#error "STARLING_SAMPLE_CONF must name deploy/starling.conf"
#endif

/* ---- helpers ---------------------------------------------------------------- */

static char *write_tmp(const char *content)
{
    char *path = strdup("/tmp/starling-config-test-XXXXXX");
    cr_assert_not_null(path);
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(content);
    cr_assert_eq(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

static void drop_tmp(char *path)
{
    unlink(path);
    free(path);
}

/* Loads content as a file over c; returns the result, err gets the message. */
static int load_str(struct config *c, const char *content, char *err, size_t errlen, char **path_out)
{
    char *path = write_tmp(content);
    int rc = config_load_file(c, path, err, errlen);
    if (path_out != NULL)
        *path_out = path;
    else
        drop_tmp(path);
    return rc;
}

/* Equal as settings: provenance (path, whether the listener was explicit) aside. */
static bool same_settings(const struct config *a, const struct config *b)
{
    struct config x = *a, y = *b;
    memset(x.path, 0, sizeof(x.path));
    memset(y.path, 0, sizeof(y.path));
    x.listeners_explicit = y.listeners_explicit = false;
    x.max_connections_explicit = y.max_connections_explicit = false;
    return memcmp(&x, &y, sizeof(x)) == 0;
}

static char *print_to_string(const struct config *c)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    cr_assert_not_null(f);
    config_print(c, f);
    fclose(f);
    return out;
}

#define ARGV(...) ((char *[]){"starlingd", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"starlingd", __VA_ARGS__}) / sizeof(char *)))
#define PARSE(c, dump, err, ...) \
    config_parse_args((c), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (dump), (err), sizeof(err))

/* ---- defaults ---------------------------------------------------------------- */

Test(config, defaults_match_the_header)
{
    struct config c;
    memset(&c, 0xAB, sizeof(c));
    config_defaults(&c);
    cr_expect_eq(c.listener_count, 1);
    cr_expect_str_eq(c.listeners[0].bind, "0.0.0.0");
    cr_expect_eq(c.listeners[0].port, 1883);
    cr_expect_str_eq(c.listeners[0].transport, "tcp");
    cr_expect_not(c.listeners_explicit);
    cr_expect_str_eq(c.path, "");
    cr_expect_str_eq(c.data_dir, "./starling-data");
    cr_expect_eq(c.log_level, LOG_INFO);
    cr_expect_eq(c.max_connections, 100000);
    cr_expect_not(c.max_connections_explicit); /* broker__fds_init may lower it to what the descriptors allow */
    cr_expect_eq(c.max_packet_size, 1048576);
    cr_expect_eq(c.max_inflight, 64);
    cr_expect_eq(c.receive_maximum, 1024);
    cr_expect_eq(c.max_queued, 1000);
    cr_expect_eq(c.queue_policy, CONFIG_QUEUE_DROP_NEW);
    cr_expect_eq(c.max_queued_bytes, 16u << 20);
    cr_expect_eq(c.max_queued_bytes_total, 256u << 20);
    cr_expect_eq(c.max_retained, 1000000);
    cr_expect_eq(c.max_retained_bytes, 256u << 20);
    cr_expect_eq(c.max_topic_levels, 128);
    cr_expect_eq(c.max_subscriptions, 0);
    cr_expect_eq(c.max_keepalive, 65535);
    cr_expect_eq(c.topic_alias_maximum, 64);
    cr_expect_eq(c.max_session_expiry, 0xFFFFFFFFu);
    cr_expect(c.retain_available);
    cr_expect(c.allow_zero_length_clientid);
    cr_expect_eq(c.max_qos, 2);
    cr_expect_eq(c.sys_interval, 10);
    cr_expect_eq(c.node_id, 1);
    cr_expect_str_eq(c.cluster_bind, "0.0.0.0:4370");
    cr_expect_str_eq(c.cluster_secret, "");
    cr_expect_eq(c.peer_count, 0);
    cr_expect_eq(c.commit_timeout_ms, 5000);
    check_leaks();
}

/* ---- every key ---------------------------------------------------------------- */

/* Every key with a non-default value, then the expected line in config_print's
 * output (which reads the struct back). */
static const struct {
    const char *key, *value, *printed;
} set_table[] = {
    {"data_dir", "/var/lib/starling", "data_dir /var/lib/starling"},
    {"data_dir", "/path with spaces", "data_dir \"/path with spaces\""},
    {"log_level", "error", "log_level error"},
    {"log_level", "warn", "log_level warn"},
    {"log_level", "warning", "log_level warn"},
    {"log_level", "DEBUG", "log_level debug"},
    {"log_level", "trace", "log_level trace"},
    {"max_connections", "0", "max_connections 0"},
    {"max_connections", "4294967295", "max_connections 4294967295"},
    {"max_packet_size", "16", "max_packet_size 16"},
    {"max_packet_size", "268435455", "max_packet_size 268435455"},
    {"max_packet_size", "64k", "max_packet_size 65536"},
    {"max_packet_size", "2M", "max_packet_size 2097152"},
    {"max_packet_size", "255m", "max_packet_size 267386880"},
    {"max_inflight", "1", "max_inflight 1"},
    {"max_inflight", "65535", "max_inflight 65535"},
    {"receive_maximum", "1", "receive_maximum 1"},
    {"receive_maximum", "65535", "receive_maximum 65535"},
    {"max_queued", "0", "max_queued 0"},
    {"max_queued", "4294967295", "max_queued 4294967295"},
    {"queue_policy", "drop_oldest", "queue_policy drop_oldest"},
    {"queue_policy", "drop_new", "queue_policy drop_new"},
    {"max_queued_bytes", "0", "max_queued_bytes 0"},
    {"max_queued_bytes", "1m", "max_queued_bytes 1048576"},
    {"max_queued_bytes_total", "4294967295", "max_queued_bytes_total 4294967295"},
    {"max_retained", "0", "max_retained 0"},
    {"max_retained_bytes", "64k", "max_retained_bytes 65536"},
    {"max_topic_levels", "1", "max_topic_levels 1"},
    {"max_topic_levels", "65535", "max_topic_levels 65535"},
    {"max_subscriptions", "100", "max_subscriptions 100"},
    {"max_keepalive", "1", "max_keepalive 1"},
    {"max_keepalive", "600", "max_keepalive 600"},
    {"topic_alias_maximum", "0", "topic_alias_maximum 0"},
    {"topic_alias_maximum", "65535", "topic_alias_maximum 65535"},
    {"max_session_expiry", "0", "max_session_expiry 0"},
    {"max_session_expiry", "86400", "max_session_expiry 86400"},
    {"retain_available", "false", "retain_available false"},
    {"retain_available", "no", "retain_available false"},
    {"retain_available", "off", "retain_available false"},
    {"retain_available", "0", "retain_available false"},
    {"retain_available", "FALSE", "retain_available false"},
    {"allow_zero_length_clientid", "no", "allow_zero_length_clientid false"},
    {"max_qos", "0", "max_qos 0"},
    {"max_qos", "1", "max_qos 1"},
    {"sys_interval", "0", "sys_interval 0"},
    {"sys_interval", "86400", "sys_interval 86400"},
    {"node_id", "65535", "node_id 65535"},
    {"cluster_bind", "10.0.0.1:4371", "cluster_bind 10.0.0.1:4371"},
    {"cluster_bind", "[::1]:4370", "cluster_bind [::1]:4370"},
    {"cluster_bind", "starling-1.local:4370", "cluster_bind starling-1.local:4370"},
    {"cluster_secret", "s3cret", "cluster_secret s3cret"},
    {"cluster_secret", "", "cluster_secret \"\""},
    {"cluster_secret", "a #b \"c\" \\d", "cluster_secret \"a #b \\\"c\\\" \\\\d\""},
    {"commit_timeout_ms", "10", "commit_timeout_ms 10"},
    {"commit_timeout_ms", "600000", "commit_timeout_ms 600000"},
    {"listener", "8883", "listener 8883 0.0.0.0 tcp"},
    {"listener", "8883 127.0.0.1", "listener 8883 127.0.0.1 tcp"},
    {"listener", "8084 :: wss", "listener 8084 :: wss"},
    {"listener", "8883\t10.1.2.3   tls", "listener 8883 10.1.2.3 tls"},
    {"listener", "8083 0.0.0.0 WS", "listener 8083 0.0.0.0 ws"},
    {"port", "1884", "listener 1884 0.0.0.0 tcp"},
    {"bind", "127.0.0.1", "listener 1883 127.0.0.1 tcp"},
    {"bind", "::1", "listener 1883 ::1 tcp"},
    {"peer", "2 10.0.0.2:4370", "peer 2 10.0.0.2:4370"},
    {"peer", "3 starling3:4370", "peer 3 starling3:4370"},
    {"peer", "65535 [fe80::1]:1", "peer 65535 [fe80::1]:1"},
    {"admin_listen", "0.0.0.0:8081", "admin_listen 0.0.0.0:8081"},
    {"admin_listen", "[::1]:18083", "admin_listen [::1]:18083"},
    {"admin_listen", "OFF", "admin_listen off"},
    {"admin_token", "t0ken", "admin_token t0ken"},
};

Test(config, every_key_sets_its_field)
{
    for (size_t i = 0; i < sizeof(set_table) / sizeof(set_table[0]); i++) {
        struct config c;
        char err[256] = "";
        config_defaults(&c);
        int rc = config_set(&c, set_table[i].key, set_table[i].value, err, sizeof(err));
        cr_expect_eq(rc, 0, "%s %s: %s", set_table[i].key, set_table[i].value, err);
        char *out = print_to_string(&c);
        char line[256];
        snprintf(line, sizeof(line), "\n%s\n", set_table[i].printed);
        cr_expect_not_null(strstr(out, line), "%s %s: no line \"%s\" in:\n%s", set_table[i].key,
                           set_table[i].value, set_table[i].printed, out);
        free(out);
    }
    check_leaks();
}

Test(config, every_key_from_a_file)
{
    static const char text[] =
        "listener 1884 127.0.0.1 tcp\n"
        "listener 8883 :: tls\n"
        "data_dir /srv/starling\n"
        "log_level debug\n"
        "max_connections 5000\n"
        "max_packet_size 256k\n"
        "max_inflight 32\n"
        "receive_maximum 100\n"
        "max_queued 50\n"
        "queue_policy drop_oldest\n"
        "max_topic_levels 16\n"
        "max_subscriptions 10\n"
        "max_keepalive 300\n"
        "topic_alias_maximum 0\n"
        "max_session_expiry 3600\n"
        "retain_available false\n"
        "allow_zero_length_clientid false\n"
        "max_qos 1\n"
        "sys_interval 0\n"
        "node_id 3\n"
        "cluster_bind 10.0.0.3:4370\n"
        "cluster_secret \"shared secret\"\n"
        "peer 1 10.0.0.1:4370\n"
        "peer 2 10.0.0.2:4370\n"
        "commit_timeout_ms 2000\n";
    struct config c;
    char err[256] = "";
    char *path;

    config_defaults(&c);
    cr_assert_eq(load_str(&c, text, err, sizeof(err), &path), 0, "%s", err);
    cr_expect_str_eq(c.path, path);
    cr_expect_eq(c.listener_count, 2);
    cr_expect_eq(c.listeners[0].port, 1884);
    cr_expect_str_eq(c.listeners[0].bind, "127.0.0.1");
    cr_expect_str_eq(c.listeners[0].transport, "tcp");
    cr_expect_eq(c.listeners[1].port, 8883);
    cr_expect_str_eq(c.listeners[1].bind, "::");
    cr_expect_str_eq(c.listeners[1].transport, "tls");
    cr_expect_str_eq(c.data_dir, "/srv/starling");
    cr_expect_eq(c.log_level, LOG_DEBUG);
    cr_expect_eq(c.max_connections, 5000);
    cr_expect_eq(c.max_packet_size, 262144);
    cr_expect_eq(c.max_inflight, 32);
    cr_expect_eq(c.receive_maximum, 100);
    cr_expect_eq(c.max_queued, 50);
    cr_expect_eq(c.queue_policy, CONFIG_QUEUE_DROP_OLDEST);
    cr_expect_eq(c.max_topic_levels, 16);
    cr_expect_eq(c.max_subscriptions, 10);
    cr_expect_eq(c.max_keepalive, 300);
    cr_expect_eq(c.topic_alias_maximum, 0);
    cr_expect_eq(c.max_session_expiry, 3600);
    cr_expect_not(c.retain_available);
    cr_expect_not(c.allow_zero_length_clientid);
    cr_expect_eq(c.max_qos, 1);
    cr_expect_eq(c.sys_interval, 0);
    cr_expect_eq(c.node_id, 3);
    cr_expect_str_eq(c.cluster_bind, "10.0.0.3:4370");
    cr_expect_str_eq(c.cluster_secret, "shared secret");
    cr_expect_eq(c.peer_count, 2);
    cr_expect_eq(c.peers[0].id, 1);
    cr_expect_str_eq(c.peers[0].address, "10.0.0.1:4370");
    cr_expect_eq(c.peers[1].id, 2);
    cr_expect_str_eq(c.peers[1].address, "10.0.0.2:4370");
    cr_expect_eq(c.commit_timeout_ms, 2000);
    drop_tmp(path);
    check_leaks();
}

/* ---- bad values ----------------------------------------------------------------- */

static const struct {
    const char *key, *value, *message;
    int rc;
} bad_table[] = {
    {"max_inflight", "0", "max_inflight: \"0\" is out of range 1..65535", -ERANGE},
    {"max_inflight", "65536", "max_inflight: \"65536\" is out of range 1..65535", -ERANGE},
    {"max_inflight", "-1", "max_inflight: \"-1\" is out of range 1..65535", -ERANGE},
    {"max_inflight", "abc", "max_inflight: \"abc\" is not a number", -EINVAL},
    {"max_inflight", "12x", "max_inflight: \"12x\" is not a number", -EINVAL},
    {"max_inflight", " 12", "max_inflight: \" 12\" is not a number", -EINVAL},
    {"max_inflight", "", "max_inflight: \"\" is not a number", -EINVAL},
    {"max_inflight", "1k", "max_inflight: \"1k\" is not a number", -EINVAL},
    {"receive_maximum", "0", "receive_maximum: \"0\" is out of range 1..65535", -ERANGE},
    {"max_packet_size", "15", "max_packet_size: \"15\" is out of range 16..268435455", -ERANGE},
    {"max_packet_size", "256m", "max_packet_size: \"256m\" is out of range 16..268435455", -ERANGE},
    {"max_packet_size", "1g", "max_packet_size: \"1g\" is not a number (bytes, or with a k/m suffix)", -EINVAL},
    {"max_packet_size", "99999999999999999999", "max_packet_size: \"99999999999999999999\" is out of range",
     -ERANGE},
    {"max_packet_size", "18014398509481984k", "is out of range", -ERANGE},
    {"max_connections", "4294967296", "max_connections: \"4294967296\" is out of range 0..4294967295", -ERANGE},
    {"max_queued", "-5", "max_queued: \"-5\" is out of range 0..4294967295", -ERANGE},
    {"max_topic_levels", "0", "max_topic_levels: \"0\" is out of range 1..65535", -ERANGE},
    {"max_subscriptions", "4294967296", "out of range 0..4294967295", -ERANGE},
    {"max_keepalive", "0", "max_keepalive: \"0\" is out of range 1..65535", -ERANGE},
    {"topic_alias_maximum", "65536", "topic_alias_maximum: \"65536\" is out of range 0..65535", -ERANGE},
    {"max_session_expiry", "4294967296", "max_session_expiry: \"4294967296\" is out of range 0..4294967295",
     -ERANGE},
    {"max_qos", "3", "max_qos: \"3\" is out of range 0..2", -ERANGE},
    {"sys_interval", "86401", "sys_interval: \"86401\" is out of range 0..86400", -ERANGE},
    {"node_id", "0", "node_id: \"0\" is out of range 1..65535", -ERANGE},
    {"node_id", "65536", "node_id: \"65536\" is out of range 1..65535", -ERANGE},
    {"commit_timeout_ms", "9", "commit_timeout_ms: \"9\" is out of range 10..600000", -ERANGE},
    {"commit_timeout_ms", "600001", "commit_timeout_ms: \"600001\" is out of range 10..600000", -ERANGE},
    {"retain_available", "maybe", "retain_available: \"maybe\" is not a boolean", -EINVAL},
    {"allow_zero_length_clientid", "2", "allow_zero_length_clientid: \"2\" is not a boolean", -EINVAL},
    {"log_level", "loud", "log_level: \"loud\" is not one of error, warn, info, debug, trace", -EINVAL},
    {"queue_policy", "drop_all", "queue_policy: \"drop_all\" is not one of drop_new, drop_oldest", -EINVAL},
    {"data_dir", "", "data_dir: value is empty", -EINVAL},
    {"data_dir", "a\nb", "data_dir: value contains a control character", -EINVAL},
    {"cluster_bind", "localhost", "cluster_bind: \"localhost\" is not HOST:PORT", -EINVAL},
    {"cluster_bind", "h:0", "cluster_bind: \"h:0\" is not HOST:PORT", -EINVAL},
    {"cluster_bind", "h:65536", "is not HOST:PORT", -EINVAL},
    {"cluster_bind", ":4370", "is not HOST:PORT", -EINVAL},
    {"cluster_bind", "::1:4370", "is not HOST:PORT", -EINVAL},
    {"cluster_bind", "[nope]:4370", "is not HOST:PORT", -EINVAL},
    {"cluster_bind", "h o:1", "is not HOST:PORT", -EINVAL},
    {"port", "0", "port: \"0\" is out of range 1..65535", -ERANGE},
    {"port", "65536", "port: \"65536\" is out of range 1..65535", -ERANGE},
    {"bind", "localhost", "bind: \"localhost\" is not an IPv4 or IPv6 address", -EINVAL},
    {"bind", "1.2.3.256", "bind: \"1.2.3.256\" is not an IPv4 or IPv6 address", -EINVAL},
    {"listener", "", "listener: expected PORT [BIND_ADDRESS] [TRANSPORT]", -EINVAL},
    {"listener", "0", "listener: port: \"0\" is out of range 1..65535", -ERANGE},
    {"listener", "http", "listener: port: \"http\" is not a number", -EINVAL},
    {"listener", "1883 999.1.1.1", "listener: \"999.1.1.1\" is not an IPv4 or IPv6 address", -EINVAL},
    {"listener", "1883 0.0.0.0 quic", "listener: transport \"quic\" is not one of tcp, tls, ws, wss", -EINVAL},
    {"listener", "1883 0.0.0.0 tcp extra", "listener: expected PORT [BIND_ADDRESS] [TRANSPORT]", -EINVAL},
    {"peer", "2", "peer: expected ID HOST:PORT", -EINVAL},
    {"peer", "2 h:1 x", "peer: expected ID HOST:PORT", -EINVAL},
    {"peer", "0 h:1", "peer: id: \"0\" is out of range 1..65535", -ERANGE},
    {"peer", "2 nohostport", "peer: \"nohostport\" is not HOST:PORT", -EINVAL},
    {"admin_listen", "admin.example:18083", "admin_listen: \"admin.example:18083\" is not IP:PORT", -EINVAL},
    {"admin_listen", "127.0.0.1", "admin_listen: \"127.0.0.1\" is not IP:PORT ([IPv6]:PORT) or off", -EINVAL},
    {"admin_listen", "127.0.0.1:0", "is not IP:PORT", -EINVAL},
    {"admin_listen", "::1:18083", "is not IP:PORT", -EINVAL},
    {"admin_listen", "", "is not IP:PORT", -EINVAL},
    {"admin_token", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
     "admin_token: value is longer than 127 bytes", -ERANGE},
    {"max_conections", "5", "unknown key \"max_conections\"", -EINVAL},
    {"path", "/x", "unknown key \"path\"", -EINVAL},
    {"listener_count", "2", "unknown key \"listener_count\"", -EINVAL},
};

Test(config, bad_values_are_rejected_and_change_nothing)
{
    for (size_t i = 0; i < sizeof(bad_table) / sizeof(bad_table[0]); i++) {
        struct config c, before;
        char err[256] = "";
        config_defaults(&c);
        before = c;
        int rc = config_set(&c, bad_table[i].key, bad_table[i].value, err, sizeof(err));
        cr_expect_eq(rc, bad_table[i].rc, "%s \"%s\": rc %d", bad_table[i].key, bad_table[i].value, rc);
        cr_expect_not_null(strstr(err, bad_table[i].message), "%s \"%s\": message \"%s\"", bad_table[i].key,
                           bad_table[i].value, err);
        cr_expect_null(strchr(err, '\n'), "one-line message");
        cr_expect_eq(memcmp(&c, &before, sizeof(c)), 0, "%s \"%s\" changed the config", bad_table[i].key,
                     bad_table[i].value);
    }
    check_leaks();
}

Test(config, max_connections_set_by_the_user_is_marked)
{
    struct config c;
    char err[256] = "";
    config_defaults(&c);
    cr_expect_lt(config_set(&c, "max_connections", "x", err, sizeof(err)), 0);
    cr_expect_not(c.max_connections_explicit);
    cr_expect_eq(config_set(&c, "max_connections", "100000", err, sizeof(err)), 0, "%s", err);
    cr_expect(c.max_connections_explicit, "the default's value, but set: kept whatever the descriptors");
    config_defaults(&c);
    cr_expect_eq(config_set(&c, "max_inflight", "10", err, sizeof(err)), 0, "%s", err);
    cr_expect_not(c.max_connections_explicit);
}

Test(config, missing_value_and_small_err_buffers)
{
    struct config c;
    char err[8];
    config_defaults(&c);
    cr_expect_lt(config_set(&c, "max_inflight", NULL, NULL, 0), 0);
    cr_expect_lt(config_set(&c, "max_inflight", "0", err, sizeof(err)), 0);
    cr_expect_eq(strlen(err), sizeof(err) - 1, "truncated, still terminated");
    check_leaks();
}

/* ---- listeners and peers ---------------------------------------------------------- */

Test(config, listener_lines_replace_the_default_then_add)
{
    struct config c;
    char err[256] = "";
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "listener", "1884", err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(c.listener_count, 1, "the first listener replaces the default");
    cr_expect_eq(c.listeners[0].port, 1884);
    cr_assert_eq(config_set(&c, "listener", "1883", err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(c.listener_count, 2, "later listeners add, even on the default port");
    for (int i = 2; i < CONFIG_MAX_LISTENERS; i++)
        cr_assert_eq(config_set(&c, "listener", "2000", err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(config_set(&c, "listener", "2001", err, sizeof(err)), -ERANGE);
    cr_expect_str_eq(err, "listener: more than 8 listeners");
    cr_expect_eq(c.listener_count, CONFIG_MAX_LISTENERS);

    /* port and bind edit the first listener and make it explicit */
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "port", "1885", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&c, "bind", "127.0.0.1", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&c, "listener", "8883 :: tls", err, sizeof(err)), 0);
    cr_expect_eq(c.listener_count, 2);
    cr_expect_eq(c.listeners[0].port, 1885);
    cr_expect_str_eq(c.listeners[0].bind, "127.0.0.1");
    cr_expect_eq(c.listeners[1].port, 8883);

    /* port after listener lines edits the first of them */
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "listener", "8883 10.0.0.1 tls", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&c, "listener", "1883", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&c, "port", "9999", err, sizeof(err)), 0);
    cr_expect_eq(c.listener_count, 2);
    cr_expect_eq(c.listeners[0].port, 9999);
    cr_expect_str_eq(c.listeners[0].transport, "tls");
    cr_expect_eq(c.listeners[1].port, 1883);
    check_leaks();
}

Test(config, peers_repeat_up_to_the_limit)
{
    struct config c;
    char err[256] = "", v[64];
    config_defaults(&c);
    for (int i = 0; i < CONFIG_MAX_PEERS; i++) {
        snprintf(v, sizeof(v), "%d 10.0.0.%d:4370", i + 2, i + 2);
        cr_assert_eq(config_set(&c, "peer", v, err, sizeof(err)), 0, "%s", err);
    }
    cr_expect_eq(c.peer_count, CONFIG_MAX_PEERS);
    cr_expect_eq(config_set(&c, "peer", "99 h:1", err, sizeof(err)), -ERANGE);
    cr_expect_str_eq(err, "peer: more than 16 peers");

    config_defaults(&c);
    cr_assert_eq(config_set(&c, "peer", "2 a:1", err, sizeof(err)), 0);
    cr_expect_eq(config_set(&c, "peer", "2 b:1", err, sizeof(err)), -EINVAL);
    cr_expect_str_eq(err, "peer: id 2 given twice");
    cr_expect_eq(c.peer_count, 1);
    check_leaks();
}

/* ---- file syntax and errors ---------------------------------------------------------- */

Test(config, file_syntax)
{
    static const char text[] =
        "\xEF\xBB\xBF# a comment first, after a byte order mark\n"
        "\n"
        "   \t \n"
        "  max_inflight   32   \n"
        "\tmax_queued\t7\t\n"
        "receive_maximum 9 # trailing comment\n"
        "data_dir \"/dir with # and spaces\"  # comment after quotes\n"
        "cluster_secret \"quote \\\" backslash \\\\ plain \\n\"\n"
        "max_topic_levels 5\r\n"
        "    # indented comment\n"
        "log_level debug";  /* no final newline */
    struct config c;
    char err[256] = "";

    config_defaults(&c);
    cr_assert_eq(load_str(&c, text, err, sizeof(err), NULL), 0, "%s", err);
    cr_expect_eq(c.max_inflight, 32);
    cr_expect_eq(c.max_queued, 7);
    cr_expect_eq(c.receive_maximum, 9);
    cr_expect_str_eq(c.data_dir, "/dir with # and spaces");
    cr_expect_str_eq(c.cluster_secret, "quote \" backslash \\ plain \\n");
    cr_expect_eq(c.max_topic_levels, 5, "CRLF line endings");
    cr_expect_eq(c.log_level, LOG_DEBUG);
    check_leaks();
}

Test(config, file_host_with_hash_is_rejected)
{
    /* '#' inside an unquoted value is kept (only whitespace + '#' starts a comment) */
    struct config c;
    char err[256] = "";
    config_defaults(&c);
    cr_expect_lt(load_str(&c, "cluster_bind host#1:4370\n", err, sizeof(err), NULL), 0);
    cr_expect_not_null(strstr(err, "\"host#1:4370\" is not HOST:PORT"), "%s", err);
    check_leaks();
}

static const struct {
    const char *text;
    int line;
    const char *message;
} file_error_table[] = {
    {"max_inflight 10\n\nmax_conections 5\n", 3, "unknown key \"max_conections\""},
    {"# c\n# c\n\n\n\n\nmax_inflight 0\n", 7, "max_inflight: \"0\" is out of range 1..65535"},
    {"max_inflight\n", 1, "max_inflight: missing value"},
    {"max_inflight    # just a comment\n", 1, "max_inflight: missing value"},
    {"a 1\n", 1, "unknown key \"a\""},
    {"max_inflight 1\nmax_inflight=5\n", 2, "unknown key \"max_inflight=5\""},
    {"data_dir \"/unterminated\n", 1, "data_dir: unterminated quoted value"},
    {"data_dir \"/a\" b\n", 1, "data_dir: unexpected text after the quoted value"},
    {"retain_available maybe\n", 1, "retain_available: \"maybe\" is not a boolean"},
    {"max_inflight 10 20\n", 1, "max_inflight: \"10 20\" is not a number"},
    {"\n\nlistener 1883 0.0.0.0 tcp\npeer 2 x:1\npeer 2 y:1\n", 5, "peer: id 2 given twice"},
};

Test(config, file_errors_name_file_and_line)
{
    for (size_t i = 0; i < sizeof(file_error_table) / sizeof(file_error_table[0]); i++) {
        struct config c, before;
        char err[512] = "", want[512];
        char *path;
        config_defaults(&c);
        cr_assert_eq(config_set(&c, "max_queued", "77", err, sizeof(err)), 0);
        before = c;
        int rc = load_str(&c, file_error_table[i].text, err, sizeof(err), &path);
        cr_expect_lt(rc, 0, "case %zu", i);
        snprintf(want, sizeof(want), "%s:%d: %s", path, file_error_table[i].line, file_error_table[i].message);
        cr_expect_eq(strncmp(err, want, strlen(want)), 0, "case %zu: got \"%s\", want \"%s\"", i, err, want);
        cr_expect_eq(memcmp(&c, &before, sizeof(c)), 0, "case %zu: a failed load changes nothing", i);
        drop_tmp(path);
    }
    check_leaks();
}

Test(config, file_long_line_and_nul_byte)
{
    struct config c;
    char err[512] = "";
    char *text = malloc(6000);
    cr_assert_not_null(text);
    memset(text, 'x', 5999);
    text[5999] = '\0';
    config_defaults(&c);
    cr_expect_lt(load_str(&c, text, err, sizeof(err), NULL), 0);
    cr_expect_not_null(strstr(err, ":1: line is longer than 4096 bytes"), "%s", err);
    free(text);

    char *path = write_tmp("");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fwrite("max_inflight 1\nmax_queued 5\0 6\n", 1, 31, f);
    fclose(f);
    cr_expect_lt(config_load_file(&c, path, err, sizeof(err)), 0);
    cr_expect_not_null(strstr(err, ":2: line contains a NUL byte"), "%s", err);
    drop_tmp(path);
    check_leaks();
}

Test(config, missing_file_reports_strerror)
{
    struct config c;
    char err[512] = "", want[512];
    config_defaults(&c);
    int rc = config_load_file(&c, "/nonexistent/starling.conf", err, sizeof(err));
    cr_expect_eq(rc, -ENOENT);
    snprintf(want, sizeof(want), "/nonexistent/starling.conf: %s", strerror(ENOENT));
    cr_expect_str_eq(err, want);
    cr_expect_str_eq(c.path, "");
    check_leaks();
}

/* ---- command line -------------------------------------------------------------------- */

Test(config, flags_beat_the_file_wherever_they_appear)
{
    static const char text[] =
        "listener 1885 127.0.0.1\n"
        "listener 8883 0.0.0.0 tls\n"
        "max_inflight 10\n"
        "data_dir /from/file\n"
        "log_level warn\n"
        "max_queued 3\n";
    char *path = write_tmp(text);
    char err[512] = "";
    bool dump = true;
    struct config c;

    /* -c last */
    config_defaults(&c);
    cr_assert_eq(PARSE(&c, &dump, err, "-p", "1884", "--set", "max_inflight=20", "--data-dir", "/from/flag", "-v",
                       "-c", path),
                 0, "%s", err);
    cr_expect_not(dump);
    cr_expect_str_eq(c.path, path);
    cr_expect_eq(c.listener_count, 2);
    cr_expect_eq(c.listeners[0].port, 1884);
    cr_expect_str_eq(c.listeners[0].bind, "127.0.0.1");
    cr_expect_eq(c.listeners[1].port, 8883);
    cr_expect_eq(c.max_inflight, 20);
    cr_expect_str_eq(c.data_dir, "/from/flag");
    cr_expect_eq(c.log_level, LOG_INFO, "-v raises the file's warn to info");
    cr_expect_eq(c.max_queued, 3, "file beats the default");

    /* -c first, long forms */
    config_defaults(&c);
    cr_assert_eq(PARSE(&c, &dump, err, "--config", path, "--port", "1884", "--bind", "::1", "--set",
                       "max_inflight=20", "--dump"),
                 0, "%s", err);
    cr_expect(dump);
    cr_expect_eq(c.listeners[0].port, 1884);
    cr_expect_str_eq(c.listeners[0].bind, "::1");
    cr_expect_eq(c.max_inflight, 20);
    cr_expect_str_eq(c.data_dir, "/from/file");

    /* flags among themselves: command-line order */
    config_defaults(&c);
    cr_assert_eq(PARSE(&c, NULL, err, "--set", "max_inflight=5", "--set", "max_inflight=6", "--set",
                       "port=2000", "-p", "2001"),
                 0, "%s", err);
    cr_expect_eq(c.max_inflight, 6);
    cr_expect_eq(c.listeners[0].port, 2001);
    cr_expect_eq(c.listener_count, 1);

    /* --set takes every key, including repeatable ones */
    config_defaults(&c);
    cr_assert_eq(PARSE(&c, NULL, err, "--set", "listener=8883 :: tls", "--set", "peer=2 h:1", "--set",
                       "cluster_secret=a b=c", "--set", "cluster_secret=x=y"),
                 0, "%s", err);
    cr_expect_eq(c.listener_count, 1);
    cr_expect_eq(c.listeners[0].port, 8883);
    cr_expect_eq(c.peer_count, 1);
    cr_expect_str_eq(c.cluster_secret, "x=y");
    drop_tmp(path);
    check_leaks();
}

Test(config, verbosity_flags)
{
    struct config c;
    char err[256] = "";

    config_defaults(&c);
    cr_assert_eq(PARSE(&c, NULL, err, "-v"), 0, "%s", err);
    cr_expect_eq(c.log_level, LOG_DEBUG);
    config_defaults(&c);
    cr_assert_eq(PARSE(&c, NULL, err, "-vv"), 0, "%s", err);
    cr_expect_eq(c.log_level, LOG_TRACE);
    config_defaults(&c);
    cr_assert_eq(PARSE(&c, NULL, err, "-v", "-v", "-v", "--verbose"), 0, "%s", err);
    cr_expect_eq(c.log_level, LOG_TRACE, "capped at trace");
    config_defaults(&c);
    cr_assert_eq(PARSE(&c, NULL, err, "-q"), 0, "%s", err);
    cr_expect_eq(c.log_level, LOG_ERROR);
    config_defaults(&c);
    cr_assert_eq(PARSE(&c, NULL, err, "--set", "log_level=trace", "--quiet"), 0, "%s", err);
    cr_expect_eq(c.log_level, LOG_ERROR);
    check_leaks();
}

static const struct {
    char *argv[6];
    const char *message;
} bad_args_table[] = {
    {{"starlingd", "--bogus"}, "unknown option \"--bogus\""},
    {{"starlingd", "-x"}, "unknown option \"-x\""},
    {{"starlingd", "-vx"}, "unknown option \"-x\""},
    {{"starlingd", "-p"}, "option \"-p\" requires an argument"},
    {{"starlingd", "--port"}, "option \"--port\" requires an argument"},
    {{"starlingd", "--set"}, "option \"--set\" requires an argument"},
    {{"starlingd", "-c"}, "option \"-c\" requires an argument"},
    {{"starlingd", "--help=yes"}, "option \"--help\" does not take an argument"},
    {{"starlingd", "--bogus=1"}, "unknown option \"--bogus=1\""},
    {{"starlingd", "extra"}, "unexpected argument \"extra\""},
    {{"starlingd", "-p", "0"}, "-p/--port: \"0\" is out of range 1..65535"},
    {{"starlingd", "-p", "http"}, "-p/--port: \"http\" is not a number"},
    {{"starlingd", "--bind", "localhost"}, "--bind: \"localhost\" is not an IPv4 or IPv6 address"},
    {{"starlingd", "--data-dir", ""}, "--data-dir: value is empty"},
    {{"starlingd", "--set", "max_inflight"}, "--set: expected KEY=VALUE"},
    {{"starlingd", "--set", "=5"}, "--set: expected KEY=VALUE"},
    {{"starlingd", "--set", "nope=5"}, "--set: unknown key \"nope\""},
    {{"starlingd", "--set", "max_inflight=0"}, "--set: max_inflight: \"0\" is out of range 1..65535"},
    {{"starlingd", "-c", "/nonexistent.conf"}, "/nonexistent.conf: No such file or directory"},
    {{"starlingd", "-c", "a", "-c", "b"}, "-c/--config given more than once"},
};

Test(config, bad_command_lines_fail)
{
    for (size_t i = 0; i < sizeof(bad_args_table) / sizeof(bad_args_table[0]); i++) {
        char *argv[7] = {0};
        int argc = 0;
        while (argc < 6 && bad_args_table[i].argv[argc] != NULL) {
            argv[argc] = bad_args_table[i].argv[argc];
            argc++;
        }
        struct config c;
        char err[256] = "";
        config_defaults(&c);
        int rc = config_parse_args(&c, argc, argv, NULL, err, sizeof(err));
        cr_expect_lt(rc, 0, "case %zu (%s): rc %d", i, argv[1], rc);
        cr_expect_not_null(strstr(err, bad_args_table[i].message), "case %zu: \"%s\"", i, err);
    }
    check_leaks();
}

static char *read_redirected_stdout(void)
{
    fflush(stdout);
    FILE *f = cr_get_redirected_stdout();
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    return buf;
}

Test(config, help_lists_every_flag, .init = cr_redirect_stdout)
{
    struct config c;
    char err[256] = "";
    config_defaults(&c);
    /* --help wins even over a config file that does not exist */
    cr_expect_eq(PARSE(&c, NULL, err, "-c", "/nonexistent.conf", "--help"), 1);
    char *out = read_redirected_stdout();
    static const char *const flags[] = {"-c, --config", "-p, --port", "--bind", "--data-dir", "--set KEY=VALUE",
                                        "-v", "-q", "--dump", "-h, --help", "-V, --version", "starling.conf"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        cr_expect_not_null(strstr(out, flags[i]), "help lacks \"%s\":\n%s", flags[i], out);
    check_leaks();
}

Test(config, short_help_returns_one, .init = cr_redirect_stdout)
{
    struct config c;
    char err[256] = "";
    config_defaults(&c);
    cr_expect_eq(PARSE(&c, NULL, err, "-h"), 1);
    cr_expect_not_null(strstr(read_redirected_stdout(), "Usage: starlingd"));
    check_leaks();
}

Test(config, version_returns_one, .init = cr_redirect_stdout)
{
    struct config c;
    char err[256] = "";
    config_defaults(&c);
    cr_expect_eq(PARSE(&c, NULL, err, "--version"), 1);
    cr_expect_eq(PARSE(&c, NULL, err, "-V"), 1);
    cr_expect_str_eq(read_redirected_stdout(), "starlingd " STARLING_VERSION "\nstarlingd " STARLING_VERSION "\n");
    check_leaks();
}

Test(config, no_flags_keeps_defaults)
{
    struct config c, d;
    char err[64] = "";
    bool dump = true;
    char *argv[] = {"starlingd", NULL};
    config_defaults(&c);
    config_defaults(&d);
    cr_expect_eq(config_parse_args(&c, 1, argv, &dump, err, sizeof(err)), 0);
    cr_expect_not(dump);
    cr_expect_eq(memcmp(&c, &d, sizeof(c)), 0);
    check_leaks();
}

/* ---- printing -------------------------------------------------------------------------- */

static void round_trip(const struct config *c)
{
    char err[512] = "";
    char *text = print_to_string(c);
    struct config back;
    config_defaults(&back);
    int rc = load_str(&back, text, err, sizeof(err), NULL);
    cr_assert_eq(rc, 0, "%s\n%s", err, text);
    cr_expect(same_settings(c, &back), "round trip differs:\n%s", text);
    free(text);
}

Test(config, print_round_trips)
{
    struct config c;
    char err[256] = "";

    config_defaults(&c);
    round_trip(&c);

    static const char *const settings[][2] = {
        {"listener", "1884 127.0.0.1 tcp"},
        {"listener", "8883 :: tls"},
        {"listener", "8083 0.0.0.0 ws"},
        {"data_dir", "/var/lib/star ling #1"},
        {"log_level", "trace"},
        {"max_connections", "0"},
        {"max_packet_size", "16"},
        {"max_inflight", "65535"},
        {"receive_maximum", "1"},
        {"max_queued", "0"},
        {"queue_policy", "drop_oldest"},
        {"max_topic_levels", "65535"},
        {"max_subscriptions", "4294967295"},
        {"max_keepalive", "1"},
        {"topic_alias_maximum", "0"},
        {"max_session_expiry", "0"},
        {"retain_available", "no"},
        {"allow_zero_length_clientid", "off"},
        {"max_qos", "0"},
        {"sys_interval", "86400"},
        {"node_id", "7"},
        {"cluster_bind", "[::]:4370"},
        {"cluster_secret", "\"quoted\" \\ and # hash"},
        {"peer", "1 10.0.0.1:4370"},
        {"peer", "2 starling2:4370"},
        {"commit_timeout_ms", "10"},
    };
    config_defaults(&c);
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        cr_assert_eq(config_set(&c, settings[i][0], settings[i][1], err, sizeof(err)), 0, "%s", err);
    round_trip(&c);

    /* values that look like comments or are only a backslash */
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "cluster_secret", "#notacomment", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&c, "data_dir", "\\", err, sizeof(err)), 0);
    round_trip(&c);
    cr_assert_eq(config_set(&c, "cluster_secret", "\"", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&c, "data_dir", "a\\\"b", err, sizeof(err)), 0);
    round_trip(&c);
    check_leaks();
}

/* ---- the sample config ---------------------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&buf, &cap, '\0', f);
    cr_assert_geq(n, 0);
    fclose(f);
    return buf;
}

Test(config, sample_config_loads_as_the_defaults)
{
    struct config c, d;
    char err[512] = "";
    config_defaults(&c);
    config_defaults(&d);
    cr_assert_eq(config_load_file(&c, STARLING_SAMPLE_CONF, err, sizeof(err)), 0, "%s", err);
    cr_expect(same_settings(&c, &d));
    check_leaks();
}

/* Setting lines in the sample are commented out as "#key value" (prose uses
 * "# "); uncommented, they must all load and still give exactly the defaults. */
Test(config, sample_config_documents_every_default)
{
    static const char *const keys[] = {
        "listener", "port", "bind", "data_dir", "log_level", "max_connections", "max_packet_size",
        "max_inflight", "receive_maximum", "max_queued", "queue_policy", "max_topic_levels",
        "max_subscriptions", "max_keepalive", "topic_alias_maximum", "max_session_expiry", "retain_available",
        "allow_zero_length_clientid", "max_qos", "sys_interval", "node_id", "cluster_bind", "cluster_secret",
        "commit_timeout_ms", "admin_listen", "admin_token"};
    char *text = slurp(STARLING_SAMPLE_CONF);
    char *out = malloc(strlen(text) + 1), *o = out;
    int settings = 0;
    cr_assert_not_null(out);

    for (const char *line = text; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (line[0] == '#' && line[1] >= 'a' && line[1] <= 'z') {
            line++;
            len--;
            settings++;
        }
        memcpy(o, line, len);
        o += len;
        line += len;
    }
    *o = '\0';

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char pat[64];
        snprintf(pat, sizeof(pat), "\n%s ", keys[i]);
        cr_expect_not_null(strstr(out, pat), "sample lacks a commented-out \"%s\" line", keys[i]);
    }
    cr_expect_not_null(strstr(text, "peer "), "sample documents peer");

    struct config c, d;
    char err[512] = "";
    config_defaults(&c);
    config_defaults(&d);
    cr_assert_eq(load_str(&c, out, err, sizeof(err), NULL), 0, "%s", err);
    cr_expect(same_settings(&c, &d), "an uncommented setting differs from the default");
    cr_expect_geq(settings, (int)(sizeof(keys) / sizeof(keys[0])));
    free(out);
    free(text);
    check_leaks();
}

/* ---- per-listener TLS keys ------------------------------------------------------------ */

Test(config, tls_keys_apply_to_the_latest_listener)
{
    static const char text[] =
        "listener 1883 0.0.0.0 tcp\n"
        "listener 8883 0.0.0.0 tls\n"
        "certfile /etc/s/server.crt\n"
        "keyfile /etc/s/server.key\n"
        "cafile \"/etc/s/ca file.crt\"\n"
        "require_certificate yes\n"
        "use_identity_as_username on\n"
        "tls_version TLSv1.3\n"
        "listener 8884 :: wss\n"
        "certfile /etc/w/server.crt\n"
        "keyfile /etc/w/server.key\n"
        "ciphers ECDHE-ECDSA-AES128-GCM-SHA256\n"
        "ciphersuites TLS_AES_128_GCM_SHA256\n"
        "capath /etc/ssl/certs\n"
        "crlfile /etc/w/crl.pem\n";
    struct config c;
    char err[512] = "";
    config_defaults(&c);
    cr_assert_eq(load_str(&c, text, err, sizeof(err), NULL), 0, "%s", err);
    cr_assert_eq(c.listener_count, 3);
    const struct config_listener *tcp = &c.listeners[0], *tls = &c.listeners[1], *wss = &c.listeners[2];
    cr_expect_str_empty(tcp->certfile);
    cr_expect_not(tcp->require_certificate);
    cr_expect_str_eq(tls->certfile, "/etc/s/server.crt");
    cr_expect_str_eq(tls->keyfile, "/etc/s/server.key");
    cr_expect_str_eq(tls->cafile, "/etc/s/ca file.crt");
    cr_expect_str_eq(tls->tls_version, "tlsv1.3");
    cr_expect(tls->require_certificate && tls->use_identity_as_username);
    cr_expect_str_empty(tls->ciphers);
    cr_expect_str_eq(wss->certfile, "/etc/w/server.crt");
    cr_expect_str_eq(wss->ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
    cr_expect_str_eq(wss->ciphersuites, "TLS_AES_128_GCM_SHA256");
    cr_expect_str_eq(wss->capath, "/etc/ssl/certs");
    cr_expect_str_eq(wss->crlfile, "/etc/w/crl.pem");
    cr_expect_str_empty(wss->tls_version);
    cr_expect_not(wss->require_certificate);
    round_trip(&c);

    /* --set: the last listener, the one a --set listener= line added */
    char *argv[] = {"starlingd", "--set", "listener=9883 127.0.0.1 tls", "--set", "certfile=/x.crt", NULL};
    config_defaults(&c);
    cr_assert_eq(config_parse_args(&c, 5, argv, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(c.listener_count, 1);
    cr_expect_eq(c.listeners[0].port, 9883);
    cr_expect_str_eq(c.listeners[0].certfile, "/x.crt");
    check_leaks();
}

Test(config, tls_key_values_are_checked)
{
    struct config c, d;
    char err[256] = "", longpath[300];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    config_defaults(&c);
    d = c;
    cr_expect_neq(config_set(&c, "tls_version", "tlsv1.1", err, sizeof(err)), 0);
    cr_expect_not_null(strstr(err, "tlsv1.2, tlsv1.3"), "%s", err);
    cr_expect_neq(config_set(&c, "require_certificate", "maybe", err, sizeof(err)), 0);
    cr_expect_neq(config_set(&c, "certfile", longpath, err, sizeof(err)), 0);
    cr_expect_not_null(strstr(err, "longer than 255"), "%s", err);
    cr_expect(same_settings(&c, &d), "a refused value changed the config");
    check_leaks();
}

Test(config, ws_path_follows_its_listener_and_is_a_path)
{
    struct config c;
    config_defaults(&c);
    char err[256], *path;
    int rc = load_str(&c,
                      "listener 1883 0.0.0.0 tcp\n"
                      "listener 8083 0.0.0.0 ws\n"
                      "ws_path /ws/mqtt\n"
                      "listener 8084 0.0.0.0 wss\n",
                      err, sizeof(err), &path);
    drop_tmp(path);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect_str_empty(c.listeners[0].ws_path);
    cr_expect_str_eq(c.listeners[1].ws_path, "/ws/mqtt");
    cr_expect_str_empty(c.listeners[2].ws_path, "the default, /mqtt, is left to the listener");
    const char *bad[] = {"mqtt", "/a b", "/a?b", "/a#b", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_expect_lt(config_set(&c, "ws_path", bad[i], err, sizeof(err)), 0, "\"%s\" refused", bad[i]);
        cr_expect(strstr(err, "ws_path") != NULL, "%s", err);
    }
    cr_expect_str_empty(c.listeners[2].ws_path, "a refused value changes nothing");
}
