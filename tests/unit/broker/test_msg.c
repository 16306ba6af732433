/* Tests for broker/msg.c: a message keeps copies of its topic, payload and
 * origin, and of the message properties only (not the topic alias, the
 * subscription identifiers or the expiry, which are per delivery); references. */
#include <criterion/criterion.h>
#include <string.h>

#include "internal.h"
#include "../check_leaks.h"

static struct proto_str str(const char *s) { return proto_cstr(s); }

Test(msg, keeps_the_message_properties_only)
{
    static const uint8_t user[] = {0x26, 0, 1, 'k', 0, 2, 'v', '1'};
    struct proto_props in = {
        .has = PROTO_HAS_PAYLOAD_FORMAT | PROTO_HAS_MESSAGE_EXPIRY | PROTO_HAS_TOPIC_ALIAS | PROTO_HAS_SUB_ID,
        .payload_format = 1,
        .message_expiry = 10,
        .content_type = str("text/plain"),
        .response_topic = str("reply/here"),
        .correlation_data = str("corr"),
        .topic_alias = 3,
        .sub_id_count = 1,
        .sub_ids = {42},
        .user_props = {user, sizeof(user)},
    };
    struct msg *m = broker__msg_new(str("a/b"), str("payload"), &in, 1, true, 1234, "client");
    cr_assert_not_null(m);
    cr_expect_eq(m->refs, 1);
    cr_expect_eq(m->qos, 1);
    cr_expect(m->retain);
    cr_expect_eq(m->expire_at, 1234);
    cr_expect_eq(m->props.has, PROTO_HAS_PAYLOAD_FORMAT, "expiry, alias and sub ids are per delivery");
    cr_expect_eq(m->props.payload_format, 1);
    cr_expect_eq(m->props.sub_id_count, 0);
    cr_expect_eq(m->props.content_type.len, 10);
    cr_expect(m->props.content_type.p && memcmp(m->props.content_type.p, "text/plain", 10) == 0);
    cr_expect(m->props.response_topic.p && memcmp(m->props.response_topic.p, "reply/here", 10) == 0);
    cr_expect(m->props.correlation_data.p && memcmp(m->props.correlation_data.p, "corr", 4) == 0);
    cr_expect_eq(m->props.user_props.len, sizeof(user));
    cr_expect(m->props.user_props.p && memcmp(m->props.user_props.p, user, sizeof(user)) == 0);
    cr_expect(m->props.content_type.p >= m->props_raw && m->props.content_type.p < m->props_raw + m->props_len,
              "views into the message's own copy");
    broker__msg_unref(m);
    check_leaks();
}

Test(msg, copies_topic_payload_and_origin)
{
    char topic[] = "t/1", payload[] = "data", origin[] = "me";
    struct msg *m = broker__msg_new(str(topic), str(payload), NULL, 0, false, 0, origin);
    cr_assert_not_null(m);
    topic[0] = payload[0] = origin[0] = 'X';
    cr_expect_str_eq(m->topic, "t/1");
    cr_expect_eq(m->topic_len, 3);
    cr_expect_eq(m->payload_len, 4);
    cr_expect(memcmp(m->payload, "data", 4) == 0);
    cr_expect_str_eq(m->origin, "me");
    cr_expect_eq(m->props_len, 0);
    cr_expect_eq(m->props.has, 0);
    broker__msg_unref(m);

    m = broker__msg_new(str("t"), str(""), NULL, 2, false, 0, NULL);
    cr_assert_not_null(m);
    cr_expect_eq(m->payload_len, 0);
    cr_expect_null(m->origin);
    broker__msg_unref(m);
    check_leaks();
}

Test(msg, references)
{
    struct msg *m = broker__msg_new(str("t"), str("x"), NULL, 0, false, 0, NULL);
    cr_assert_not_null(m);
    cr_expect_eq(broker__msg_ref(m), m);
    cr_expect_eq(broker__msg_ref(m), m);
    cr_expect_eq(m->refs, 3);
    broker__msg_unref(m);
    broker__msg_unref(m);
    cr_expect_eq(m->refs, 1);
    broker__msg_unref(m);
    broker__msg_unref(NULL); /* harmless */
    check_leaks();
}
