/* Tests for broker/admin/response.c: the exact status lines, JSON and
 * Prometheus text the admin API answers with. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "../check_leaks.h"

Test(response, head_lines)
{
    struct buf b = {0};
    cr_assert_eq(broker__admin_head(&b, 405, "application/json", 12, true, "Allow: GET\r\n"), 0);
    cr_expect_str_eq((char *)b.data, "HTTP/1.1 405 Method Not Allowed\r\n"
                             "Content-Type: application/json\r\n"
                             "Content-Length: 12\r\n"
                             "Cache-Control: no-store\r\n"
                             "Connection: keep-alive\r\n"
                             "Allow: GET\r\n"
                             "\r\n");
    buf_free(&b);
    broker__admin_head(&b, 413, "application/json", 0, false, NULL);
    cr_expect_not_null(strstr((char *)b.data, "HTTP/1.1 413 Payload Too Large\r\n"));
    cr_expect_not_null(strstr((char *)b.data, "\r\nConnection: close\r\n\r\n"));
    buf_free(&b);
    check_leaks();
}

Test(response, buf_grows)
{
    struct buf b = {0};
    char big[5000];
    int rc = 0;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 10; i++)
        rc |= broker__admin_printf(&b, "%d:%s;", i, big);
    rc |= broker__admin_printf(&b, "%s", "end");
    cr_assert_not(rc);
    cr_expect_eq(b.len, 10 * (2 + 4999 + 1) + 3);
    cr_expect_eq(strlen((char *)b.data), b.len);
    cr_expect_eq(memcmp(b.data + b.len - 3, "end", 3), 0);
    buf_free(&b);
    cr_expect_null(b.data);
    check_leaks();
}

Test(response, error_json)
{
    char *s = broker__admin_error_json(404, "no \"such\" node");
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "{\"error\":\"no \\\"such\\\" node\",\"status\":404}");
    free(s);
    check_leaks();
}

Test(response, op_reply_maps_each_status)
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
        cr_expect_eq(broker__admin_op_reply(t[i].status, t[i].join, "m", &body), t[i].http, "status %d", t[i].status);
        cr_assert_not_null(body);
        cr_expect_str_eq(body, t[i].body, "status %d", t[i].status);
        free(body);
    }
    char *body = NULL;
    cr_expect_eq(broker__admin_op_reply(0, false, NULL, &body), 200);
    cr_expect_str_eq(body, "{\"result\":\"ok\",\"message\":\"\"}");
    free(body);
    check_leaks();
}

Test(response, names)
{
    cr_expect_str_eq(broker__admin_state_name(0), "follower");
    cr_expect_str_eq(broker__admin_state_name(1), "candidate");
    cr_expect_str_eq(broker__admin_state_name(2), "leader");
    cr_expect_str_eq(broker__admin_state_name(3), "unavailable");
    cr_expect_str_eq(broker__admin_state_name(-1), "unknown");
    cr_expect_str_eq(broker__admin_state_name(4), "unknown");
    cr_expect_str_eq(broker__admin_role_name(0), "voter");
    cr_expect_str_eq(broker__admin_role_name(1), "standby");
    cr_expect_str_eq(broker__admin_role_name(2), "spare");
    cr_expect_str_eq(broker__admin_role_name(3), "unknown");
}

Test(response, base64_rfc4648_vectors)
{
    static const char *const t[][2] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                       {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                                       {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *s = broker__admin_base64((const uint8_t *)t[i][0], strlen(t[i][0]));
        cr_assert_not_null(s);
        cr_expect_str_eq(s, t[i][1], "'%s'", t[i][0]);
        free(s);
    }
    const uint8_t bin[] = {0xff, 0x00, 0xfe, 0x3e};
    char *s = broker__admin_base64(bin, sizeof(bin));
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

Test(response, member_json)
{
    struct cluster_member m = {.id = 2, .role = 1, .alive = false, .last_seen_ms = UINT64_MAX, .state = -1};
    snprintf(m.address, sizeof(m.address), "10.0.0.2:4370");
    char *s = printed(broker__admin_member_json(&m));
    cr_expect_str_eq(s, "{\"id\":2,\"address\":\"10.0.0.2:4370\",\"role\":\"standby\",\"self\":false,\"alive\":false,"
                        "\"last_seen_ms\":null,\"state\":\"unknown\",\"term\":0,\"commit_index\":0,\"applied_index\":0}");
    free(s);
    m = (struct cluster_member){.id = 1, .self = true, .alive = true, .last_seen_ms = 250, .state = 2, .term = 7,
                                .commit_index = 9007199254740991ull, .applied_index = 41};
    s = printed(broker__admin_member_json(&m));
    cr_expect_str_eq(s, "{\"id\":1,\"address\":\"\",\"role\":\"voter\",\"self\":true,\"alive\":true,"
                        "\"last_seen_ms\":250,\"state\":\"leader\",\"term\":7,\"commit_index\":9007199254740991,"
                        "\"applied_index\":41}");
    free(s);
    check_leaks();
}

Test(response, status_json)
{
    struct cluster_status st = {.node_id = 3, .leader_id = 0, .role = 1, .term = 4, .commit_index = 10,
                                .applied_index = 9, .last_index = 11};
    struct cluster_member m[2] = {{.id = 1, .state = 0, .last_seen_ms = 5}, {.id = 3, .self = true, .state = 1}};
    struct admin_counts n = {.connections = 1, .sessions = 2, .subscriptions = 3, .retained = 4};
    cJSON *obj = broker__admin_status_json(&st, "blue", m, 2, &n);
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
    s = printed(broker__admin_status_json(&st, "blue", NULL, 0, &n));
    cr_expect_not_null(strstr(s, "\"leader\":1,"), "%s", s);
    cr_expect_not_null(strstr(s, "\"members\":[]"), "%s", s);
    free(s);
    check_leaks();
}

Test(response, prometheus_lines)
{
    struct buf b = {0};
    int rc = broker__admin_metric(&b, "starling_x_total", "counter", "Things.", NULL, 18446744073709551615ull);
    rc |= broker__admin_metric(&b, "starling_role", "gauge", "Role.", "role=\"leader\"", 1);
    rc |= broker__admin_metric(&b, "starling_role", "gauge", NULL, "role=\"follower\"", 0);
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
