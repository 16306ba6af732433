/* Tests for broker/http.c: percent-decoding and query strings (empty,
 * truncated escapes, boundaries, too many parameters), strict numbers,
 * request bodies, bearer tokens, and the exact JSON and Prometheus text the
 * admin API answers with. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "../check_leaks.h"

/* ---- percent-decoding ------------------------------------------------------ */

static const struct {
    const char *in, *out; /* out NULL: -EINVAL */
} pct_table[] = {
    {"", ""},
    {"abc", "abc"},
    {"a%20b", "a b"},
    {"%2F%2f", "//"},
    {"a+b", "a+b"},
    {"%E2%82%ac", "\xe2\x82\xac"},
    {"%25", "%"},
    {"%", NULL},
    {"%2", NULL},
    {"a%", NULL},
    {"%zz", NULL},
    {"%2g", NULL},
    {"%00", NULL},
    {"x%0", NULL},
};

Test(http, pct_decode_table)
{
    for (size_t i = 0; i < sizeof(pct_table) / sizeof(pct_table[0]); i++) {
        const char *in = pct_table[i].in;
        char out[64];
        size_t n = 99;
        int rc = broker__http_pct_decode(in, strlen(in), out, &n);
        if (!pct_table[i].out) {
            cr_expect_eq(rc, -EINVAL, "\"%s\": rc %d", in, rc);
            continue;
        }
        cr_expect_eq(rc, 0, "\"%s\": rc %d", in, rc);
        cr_expect_eq(n, strlen(pct_table[i].out), "\"%s\": length %zu", in, n);
        cr_expect_str_eq(out, pct_table[i].out, "\"%s\"", in);
    }
}

Test(http, pct_decode_refuses_a_raw_nul)
{
    char out[8];
    size_t n;
    cr_expect_eq(broker__http_pct_decode("a\0b", 3, out, &n), -EINVAL);
}

/* ---- query strings ------------------------------------------------------------ */

static int parse(const char *q, struct http_query *out) { return broker__http_query_parse(q, strlen(q), out); }

Test(http, query_parse_finds_decoded_parameters)
{
    struct http_query q;
    cr_assert_eq(parse("client_id=a%2Fb%20c&limit=10&flag&=v&client_id=second", &q), 0);
    cr_expect_eq(q.count, 5);
    cr_expect_str_eq(broker__http_query_find(&q, "client_id"), "a/b c", "the first one counts");
    cr_expect_str_eq(broker__http_query_find(&q, "limit"), "10");
    cr_expect_str_eq(broker__http_query_find(&q, "flag"), "");
    cr_expect_str_eq(broker__http_query_find(&q, ""), "v");
    cr_expect_null(broker__http_query_find(&q, "topic"));
    cr_expect_null(broker__http_query_find(&q, "Limit"), "names are case-sensitive");
    broker__http_query_free(&q);
    check_leaks();
}

Test(http, query_parse_empty_and_empty_segments)
{
    struct http_query q;
    cr_assert_eq(parse("", &q), 0);
    cr_expect_eq(q.count, 0);
    cr_expect_null(broker__http_query_find(&q, "limit"));
    cr_assert_eq(parse("&&a=1&", &q), 0);
    cr_expect_eq(q.count, 1);
    cr_expect_str_eq(broker__http_query_find(&q, "a"), "1");
    broker__http_query_free(&q);
    cr_expect_eq(parse("a=", &q), 0);
    cr_expect_str_eq(broker__http_query_find(&q, "a"), "");
    broker__http_query_free(&q);
    check_leaks();
}

Test(http, query_parse_refuses_bad_escapes_anywhere)
{
    static const char *const bad[] = {"a=%zz", "%zz=1", "limit=1&x=%", "ok=1&%4", "id=%00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct http_query q;
        cr_expect_eq(parse(bad[i], &q), -EINVAL, "%s", bad[i]);
        cr_expect_eq(q.count, 0, "%s: nothing left to free", bad[i]);
    }
    check_leaks();
}

Test(http, query_parse_boundary_of_parameter_count)
{
    char q16[256] = "", q17[256];
    for (int i = 0; i < BROKER_HTTP_MAX_PARAMS; i++)
        snprintf(q16 + strlen(q16), sizeof(q16) - strlen(q16), "%sp%d=%d", i ? "&" : "", i, i);
    snprintf(q17, sizeof(q17), "%s&one=more", q16);
    struct http_query q;
    cr_assert_eq(parse(q16, &q), 0);
    cr_expect_eq(q.count, BROKER_HTTP_MAX_PARAMS);
    cr_expect_str_eq(broker__http_query_find(&q, "p15"), "15");
    broker__http_query_free(&q);
    cr_expect_eq(parse(q17, &q), -E2BIG);
    cr_expect_eq(q.count, 0);
    check_leaks();
}

/* ---- numbers ---------------------------------------------------------------------- */

static const struct {
    const char *in;
    uint64_t max;
    int rc;
    uint64_t out;
} uint_table[] = {
    {"0", 10, 0, 0},
    {"10", 10, 0, 10},
    {"11", 10, -ERANGE, 0},
    {"1000000", 1000000, 0, 1000000},
    {"007", 10, 0, 7},
    {"18446744073709551615", UINT64_MAX, 0, UINT64_MAX},
    {"18446744073709551616", UINT64_MAX, -ERANGE, 0},
    {"99999999999999999999", UINT64_MAX, -ERANGE, 0},
    {"000000000000000000001", UINT64_MAX, -EINVAL, 0},
    {"", 10, -EINVAL, 0},
    {"-1", 10, -EINVAL, 0},
    {"+1", 10, -EINVAL, 0},
    {" 1", 10, -EINVAL, 0},
    {"1 ", 10, -EINVAL, 0},
    {"1e3", 10000, -EINVAL, 0},
    {"0x10", 100, -EINVAL, 0},
    {"ten", 100, -EINVAL, 0},
};

Test(http, uint_parse_table)
{
    for (size_t i = 0; i < sizeof(uint_table) / sizeof(uint_table[0]); i++) {
        uint64_t v = 12345;
        int rc = broker__http_uint_parse(uint_table[i].in, uint_table[i].max, &v);
        cr_expect_eq(rc, uint_table[i].rc, "\"%s\": rc %d", uint_table[i].in, rc);
        cr_expect_eq(v, rc ? 12345 : uint_table[i].out, "\"%s\": value %llu", uint_table[i].in,
                     (unsigned long long)v);
    }
}

/* ---- request bodies ------------------------------------------------------------------ */

static const struct {
    const char *body;
    bool optional;
    int rc;
    uint32_t node;
} node_table[] = {
    {"{\"node\": 2}", false, 0, 2},
    {" {\"node\":65535}\r\n", false, 0, 65535},
    {"{\"node\":1, \"other\": true}", false, 0, 1},
    {"", true, 0, 0},
    {" \n", true, 0, 0},
    {"{}", true, 0, 0},
    {"", false, -EINVAL, 0},
    {"{}", false, -EINVAL, 0},
    {"{\"node\":0}", true, -EINVAL, 0},
    {"{\"node\":65536}", false, -EINVAL, 0},
    {"{\"node\":-1}", false, -EINVAL, 0},
    {"{\"node\":1.5}", false, -EINVAL, 0},
    {"{\"node\":\"2\"}", false, -EINVAL, 0},
    {"{\"node\":null}", true, -EINVAL, 0},
    {"{\"node\":2", false, -EINVAL, 0},
    {"{\"node\":2} x", false, -EINVAL, 0},
    {"[2]", false, -EINVAL, 0},
    {"null", true, -EINVAL, 0},
    {"node=2", false, -EINVAL, 0},
};

Test(http, body_node_table)
{
    for (size_t i = 0; i < sizeof(node_table) / sizeof(node_table[0]); i++) {
        uint32_t node = 777;
        const char *why = NULL;
        const char *body = node_table[i].body;
        int rc = broker__http_body_node(body, strlen(body), node_table[i].optional, &node, &why);
        cr_expect_eq(rc, node_table[i].rc, "'%s': rc %d", body, rc);
        if (rc == 0)
            cr_expect_eq(node, node_table[i].node, "'%s': node %u", body, node);
        else
            cr_expect_not_null(why, "'%s': a reason", body);
    }
    check_leaks();
}

Test(http, body_node_length_is_respected)
{
    /* the bytes after len are not part of the body */
    uint32_t node = 0;
    const char *why;
    cr_expect_eq(broker__http_body_node("{\"node\":3}garbage", 10, false, &node, &why), 0);
    cr_expect_eq(node, 3);
    cr_expect_eq(broker__http_body_node("{\"node\":3}", 9, false, &node, &why), -EINVAL);
}

Test(http, body_peer)
{
    char peer[32];
    const char *why = NULL;
    const char *ok = "{\"peer\":\"10.0.0.1:4370\"}";
    cr_expect_eq(broker__http_body_peer(ok, strlen(ok), peer, sizeof(peer), &why), 0);
    cr_expect_str_eq(peer, "10.0.0.1:4370");
    static const char *const bad[] = {"", "{}", "{\"peer\":4370}", "{\"peer\":\"\"}", "{\"peer\":\"nocolon\"}",
                                      "{\"peer\":\"a-very-long-host-name-beyond-32:4370\"}", "\"10.0.0.1:4370\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        cr_expect_eq(broker__http_body_peer(bad[i], strlen(bad[i]), peer, sizeof(peer), &why), -EINVAL, "'%s'",
                     bad[i]);
        cr_expect_not_null(why, "'%s'", bad[i]);
    }
    check_leaks();
}

/* ---- bearer tokens ----------------------------------------------------------------------- */

Test(http, bearer_token)
{
    static const struct {
        const char *header;
        bool ok;
    } t[] = {
        {"Bearer s3cret", true},   {"bearer s3cret", true},  {"BEARER   s3cret", true}, {"Bearer s3cre", false},
        {"Bearer s3cret2", false}, {"Bearer S3cret", false}, {"Basic s3cret", false},    {"Bearer", false},
        {"Bearer ", false},        {"", false},              {"s3cret", false},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        cr_expect_eq(broker__http_bearer_ok(t[i].header, strlen(t[i].header), "s3cret"), t[i].ok, "'%s'",
                     t[i].header);
    cr_expect_not(broker__http_bearer_ok("Bearer ", 7, ""), "an empty token never matches");
    cr_expect_not(broker__http_bearer_ok("Bearer s3cret", 12, "s3cret"), "the length given counts");
}

/* ---- responses ----------------------------------------------------------------------------- */

Test(http, head_lines)
{
    struct buf b = {0};
    cr_assert_eq(broker__http_head(&b, 405, "application/json", 12, true, "Allow: GET\r\n"), 0);
    cr_expect_str_eq((char *)b.data, "HTTP/1.1 405 Method Not Allowed\r\n"
                             "Content-Type: application/json\r\n"
                             "Content-Length: 12\r\n"
                             "Cache-Control: no-store\r\n"
                             "Connection: keep-alive\r\n"
                             "Allow: GET\r\n"
                             "\r\n");
    buf_free(&b);
    broker__http_head(&b, 413, "application/json", 0, false, NULL);
    cr_expect_not_null(strstr((char *)b.data, "HTTP/1.1 413 Payload Too Large\r\n"));
    cr_expect_not_null(strstr((char *)b.data, "\r\nConnection: close\r\n\r\n"));
    buf_free(&b);
    check_leaks();
}

Test(http, buf_grows)
{
    struct buf b = {0};
    char big[5000];
    int rc = 0;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 10; i++)
        rc |= broker__http_printf(&b, "%d:%s;", i, big);
    rc |= broker__http_printf(&b, "%s", "end");
    cr_assert_not(rc);
    cr_expect_eq(b.len, 10 * (2 + 4999 + 1) + 3);
    cr_expect_eq(strlen((char *)b.data), b.len);
    cr_expect_eq(memcmp(b.data + b.len - 3, "end", 3), 0);
    buf_free(&b);
    cr_expect_null(b.data);
    check_leaks();
}

Test(http, error_json)
{
    char *s = broker__http_error_json(404, "no \"such\" node");
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "{\"error\":\"no \\\"such\\\" node\",\"status\":404}");
    free(s);
    check_leaks();
}

Test(http, op_reply_maps_each_status)
{
    static const struct {
        int status;
        bool join;
        int http;
        const char *body;
    } t[] = {
        {0, false, 200, "{\"result\":\"ok\",\"message\":\"m\"}"},
        {0, true, 202, "{\"result\":\"joining\",\"message\":\"m\"}"},
        {CLUSTER_EALREADY, false, 200, "{\"result\":\"noop\",\"message\":\"m\"}"},
        {CLUSTER_EALREADY, true, 200, "{\"result\":\"noop\",\"message\":\"m\"}"},
        {CLUSTER_ENOTFOUND, false, 404, "{\"error\":\"m\",\"status\":404}"},
        {CLUSTER_EINVAL, true, 409, "{\"error\":\"m\",\"status\":409}"},
        {CLUSTER_EUNAVAILABLE, false, 503, "{\"error\":\"m\",\"status\":503}"},
        {CLUSTER_ESHUTDOWN, false, 503, "{\"error\":\"m\",\"status\":503}"},
        {CLUSTER_ESTALE, false, 500, "{\"error\":\"m\",\"status\":500}"},
        {-ENOMEM, false, 500, "{\"error\":\"m\",\"status\":500}"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *body = NULL;
        cr_expect_eq(broker__http_op_reply(t[i].status, t[i].join, "m", &body), t[i].http, "status %d", t[i].status);
        cr_assert_not_null(body);
        cr_expect_str_eq(body, t[i].body, "status %d", t[i].status);
        free(body);
    }
    char *body = NULL;
    cr_expect_eq(broker__http_op_reply(0, false, NULL, &body), 200);
    cr_expect_str_eq(body, "{\"result\":\"ok\",\"message\":\"\"}");
    free(body);
    check_leaks();
}

Test(http, names)
{
    cr_expect_str_eq(broker__http_state_name(0), "follower");
    cr_expect_str_eq(broker__http_state_name(1), "candidate");
    cr_expect_str_eq(broker__http_state_name(2), "leader");
    cr_expect_str_eq(broker__http_state_name(3), "unavailable");
    cr_expect_str_eq(broker__http_state_name(-1), "unknown");
    cr_expect_str_eq(broker__http_state_name(4), "unknown");
    cr_expect_str_eq(broker__http_role_name(0), "voter");
    cr_expect_str_eq(broker__http_role_name(1), "standby");
    cr_expect_str_eq(broker__http_role_name(2), "spare");
    cr_expect_str_eq(broker__http_role_name(3), "unknown");
}

Test(http, base64_rfc4648_vectors)
{
    static const char *const t[][2] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                       {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                                       {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *s = broker__http_base64((const uint8_t *)t[i][0], strlen(t[i][0]));
        cr_assert_not_null(s);
        cr_expect_str_eq(s, t[i][1], "'%s'", t[i][0]);
        free(s);
    }
    const uint8_t bin[] = {0xff, 0x00, 0xfe, 0x3e};
    char *s = broker__http_base64(bin, sizeof(bin));
    cr_expect_str_eq(s, "/wD+Pg==");
    free(s);
    check_leaks();
}

static char *printed(cJSON *obj)
{
    cr_assert_not_null(obj);
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return s;
}

Test(http, member_json)
{
    struct cluster_member m = {.id = 2, .role = 1, .alive = false, .last_seen_ms = UINT64_MAX, .state = -1};
    snprintf(m.address, sizeof(m.address), "10.0.0.2:4370");
    char *s = printed(broker__http_member_json(&m));
    cr_expect_str_eq(s, "{\"id\":2,\"address\":\"10.0.0.2:4370\",\"role\":\"standby\",\"self\":false,\"alive\":false,"
                        "\"last_seen_ms\":null,\"state\":\"unknown\",\"term\":0,\"commit_index\":0,\"applied_index\":0}");
    free(s);
    m = (struct cluster_member){.id = 1, .self = true, .alive = true, .last_seen_ms = 250, .state = 2, .term = 7,
                                .commit_index = 9007199254740991ull, .applied_index = 41};
    s = printed(broker__http_member_json(&m));
    cr_expect_str_eq(s, "{\"id\":1,\"address\":\"\",\"role\":\"voter\",\"self\":true,\"alive\":true,"
                        "\"last_seen_ms\":250,\"state\":\"leader\",\"term\":7,\"commit_index\":9007199254740991,"
                        "\"applied_index\":41}");
    free(s);
    check_leaks();
}

Test(http, status_json)
{
    struct cluster_status st = {.node_id = 3, .leader_id = 0, .role = 1, .term = 4, .commit_index = 10,
                                .applied_index = 9, .last_index = 11};
    struct cluster_member m[2] = {{.id = 1, .state = 0, .last_seen_ms = 5}, {.id = 3, .self = true, .state = 1}};
    struct http_counts n = {.connections = 1, .sessions = 2, .subscriptions = 3, .retained = 4};
    cJSON *obj = broker__http_status_json(&st, "blue", m, 2, &n);
    cr_assert_not_null(obj);
    cr_expect(cJSON_IsNull(cJSON_GetObjectItem(obj, "leader")), "no leader known: null");
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(obj, "members")), 2);
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(obj, "members"), 1), "id")->valueint, 3);
    char *s = printed(obj);
    const char *head = "{\"node\":3,\"cluster\":\"blue\",\"leader\":null,\"state\":\"candidate\",\"term\":4,"
                       "\"commit_index\":10,\"applied_index\":9,\"last_index\":11,\"members\":[";
    const char *tail = "],\"connections\":1,\"sessions\":2,\"subscriptions\":3,\"retained\":4}";
    cr_expect_eq(strncmp(s, head, strlen(head)), 0, "%s", s);
    cr_expect_str_eq(s + strlen(s) - strlen(tail), tail);
    free(s);
    st.leader_id = 1;
    s = printed(broker__http_status_json(&st, "blue", NULL, 0, &n));
    cr_expect_not_null(strstr(s, "\"leader\":1,"), "%s", s);
    cr_expect_not_null(strstr(s, "\"members\":[]"), "%s", s);
    free(s);
    check_leaks();
}

Test(http, prometheus_lines)
{
    struct buf b = {0};
    int rc = broker__http_metric(&b, "starling_x_total", "counter", "Things.", NULL, 18446744073709551615ull);
    rc |= broker__http_metric(&b, "starling_role", "gauge", "Role.", "role=\"leader\"", 1);
    rc |= broker__http_metric(&b, "starling_role", "gauge", NULL, "role=\"follower\"", 0);
    cr_assert_not(rc);
    cr_expect_str_eq((char *)b.data, "# HELP starling_x_total Things.\n"
                             "# TYPE starling_x_total counter\n"
                             "starling_x_total 18446744073709551615\n"
                             "# HELP starling_role Role.\n"
                             "# TYPE starling_role gauge\n"
                             "starling_role{role=\"leader\"} 1\n"
                             "starling_role{role=\"follower\"} 0\n");
    buf_free(&b);
    check_leaks();
}
