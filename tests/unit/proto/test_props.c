/* Tests for proto/props.c: the MQTT 5 property block (placement, values,
 * duplicates, ranges), its encoding, and walking user properties. */
#include <stdlib.h>
#include <string.h>

#include "../../../proto/internal.h"
#include "helpers.h"

/* --- property block --------------------------------------------------------- */

struct props_case {
    const char *name;
    const uint8_t *buf;
    size_t len;
    uint8_t type;
    int want;
};

static const struct props_case props_cases[] = {
    {"empty", (const uint8_t *)"", 0, PROTO_PUBLISH, 0},
    {"empty will", (const uint8_t *)"", 0, 0, 0},
    {"truncated id only", BYTES(0x02), PROTO_PUBLISH, PROTO_EMALFORMED},
    {"truncated u32", BYTES(0x02, 0, 0, 0), PROTO_PUBLISH, PROTO_EMALFORMED},
    {"truncated u16", BYTES(0x23, 0), PROTO_PUBLISH, PROTO_EMALFORMED},
    {"truncated string length", BYTES(0x03, 0), PROTO_PUBLISH, PROTO_EMALFORMED},
    {"truncated string", BYTES(0x03, 0, 2, 'a'), PROTO_PUBLISH, PROTO_EMALFORMED},
    {"truncated user value", BYTES(0x26, 0, 1, 'k'), PROTO_PUBLISH, PROTO_EMALFORMED},
    {"truncated varint", BYTES(0x0B, 0x80), PROTO_PUBLISH, PROTO_EMALFORMED},
    {"unknown id 0", BYTES(0x00, 0), PROTO_PUBLISH, PROTO_EMALFORMED},
    {"unknown id 0x2B", BYTES(0x2B, 0), PROTO_CONNACK, PROTO_EMALFORMED},
    {"unknown id 0x14", BYTES(0x14, 0), PROTO_CONNACK, PROTO_EMALFORMED},
    {"will delay in will", BYTES(0x18, 0, 0, 0, 1), 0, 0},
    {"will delay in publish", BYTES(0x18, 0, 0, 0, 1), PROTO_PUBLISH, PROTO_EPROTOCOL},
    {"topic alias in will", BYTES(0x23, 0, 1), 0, PROTO_EPROTOCOL},
    {"topic alias 0 (broker answers 0x94)", BYTES(0x23, 0, 0), PROTO_PUBLISH, 0},
    {"sub id in will", BYTES(0x0B, 1), 0, PROTO_EPROTOCOL},
    {"assigned id in connect", BYTES(0x12, 0, 0), PROTO_CONNECT, PROTO_EPROTOCOL},
    {"reason string in publish", BYTES(0x1F, 0, 0), PROTO_PUBLISH, PROTO_EPROTOCOL},
    {"reason string in connect", BYTES(0x1F, 0, 0), PROTO_CONNECT, PROTO_EPROTOCOL},
    {"reason string in suback", BYTES(0x1F, 0, 0), PROTO_SUBACK, 0},
    {"user property in pingreq table", BYTES(0x26, 0, 0, 0, 0), PROTO_AUTH, 0},
    {"server reference in disconnect", BYTES(0x1C, 0, 1, 'x'), PROTO_DISCONNECT, 0},
    {"session expiry in connack", BYTES(0x11, 0, 0, 0, 0), PROTO_CONNACK, 0},
    {"receive max 0", BYTES(0x21, 0, 0), PROTO_CONNACK, PROTO_EPROTOCOL},
    {"receive max 1", BYTES(0x21, 0, 1), PROTO_CONNACK, 0},
    {"max packet 0", BYTES(0x27, 0, 0, 0, 0), PROTO_CONNACK, PROTO_EPROTOCOL},
    {"max qos 0", BYTES(0x24, 0), PROTO_CONNACK, 0},
    {"max qos 1", BYTES(0x24, 1), PROTO_CONNACK, 0},
    {"max qos 2", BYTES(0x24, 2), PROTO_CONNACK, PROTO_EPROTOCOL},
    {"wildcard available 2", BYTES(0x28, 2), PROTO_CONNACK, PROTO_EPROTOCOL},
    {"sub id available 2", BYTES(0x29, 2), PROTO_CONNACK, PROTO_EPROTOCOL},
    {"shared available 2", BYTES(0x2A, 2), PROTO_CONNACK, PROTO_EPROTOCOL},
    {"payload format 1", BYTES(0x01, 1), 0, 0},
    {"payload format 2", BYTES(0x01, 2), 0, PROTO_EPROTOCOL},
    {"topic alias max 0", BYTES(0x22, 0, 0), PROTO_CONNECT, 0},
    {"duplicate string", BYTES(0x03, 0, 0, 0x03, 0, 0), PROTO_PUBLISH, PROTO_EPROTOCOL},
    {"duplicate binary", BYTES(0x16, 0, 0, 0x16, 0, 0), PROTO_AUTH, PROTO_EPROTOCOL},
    {"duplicate u16", BYTES(0x21, 0, 1, 0x21, 0, 1), PROTO_CONNECT, PROTO_EPROTOCOL},
    {"duplicate u32", BYTES(0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1), PROTO_PUBLISH, PROTO_EPROTOCOL},
    {"duplicate byte", BYTES(0x17, 0, 0x17, 0), PROTO_CONNECT, PROTO_EPROTOCOL},
    {"user properties repeat", BYTES(0x26, 0, 0, 0, 0, 0x26, 0, 0, 0, 0), PROTO_CONNECT, 0},
    {"sub ids repeat in publish", BYTES(0x0B, 1, 0x0B, 1), PROTO_PUBLISH, 0},
    {"sub ids repeat in subscribe", BYTES(0x0B, 1, 0x0B, 2), PROTO_SUBSCRIBE, PROTO_EPROTOCOL},
    {"sub id 0", BYTES(0x0B, 0), PROTO_SUBSCRIBE, PROTO_EPROTOCOL},
    {"sub id max", BYTES(0x0B, 0xFF, 0xFF, 0xFF, 0x7F), PROTO_SUBSCRIBE, 0},
    {"sub id non-minimal", BYTES(0x0B, 0x81, 0x00), PROTO_SUBSCRIBE, PROTO_EMALFORMED},
    {"auth method bad utf-8", BYTES(0x15, 0, 1, 0xC0), PROTO_CONNECT, PROTO_EUTF8},
    {"reason string NUL", BYTES(0x1F, 0, 1, 0), PROTO_PUBACK, PROTO_EUTF8},
    {"auth data binary", BYTES(0x16, 0, 2, 0, 0xFF), PROTO_CONNECT, 0},
    {"response topic empty", BYTES(0x08, 0, 0), PROTO_PUBLISH, PROTO_EPROTOCOL},
    {"bad packet type", BYTES(0x26, 0, 0, 0, 0), 16, PROTO_EPROTOCOL},
};

TABLE_PARAMS(props, props, props_cases)

ParameterizedTest(size_t *i, props, props)
{
    const struct props_case *c = &props_cases[*i];
    uint8_t *copy = malloc(c->len ? c->len : 1);
    cr_assert_not_null(copy);
    if (c->len)
        memcpy(copy, c->buf, c->len);
    struct proto_props out;
    int rc = proto_props_decode(copy, c->len, c->type, &out);
    free(copy);
    cr_assert_eq(rc, c->want, "%s: got %s", c->name, proto_error_name(rc));
}

/* Every property id against every packet type (0 = the will): the decoder agrees
 * with MQTT 5 table 2-4, written out here independently. */
#define W_ (1u << 0)
#define T_(t) (1u << (t))
Test(props, props_placement_matrix)
{
    static const struct {
        uint8_t id;
        uint8_t value[5];
        uint8_t vlen;
        uint32_t allowed;
    } rows[] = {
        {0x01, {1}, 1, T_(3) | W_},
        {0x02, {0, 0, 0, 1}, 4, T_(3) | W_},
        {0x03, {0, 1, 'a'}, 3, T_(3) | W_},
        {0x08, {0, 1, 'a'}, 3, T_(3) | W_},
        {0x09, {0, 1, 'a'}, 3, T_(3) | W_},
        {0x0B, {1}, 1, T_(3) | T_(8)},
        {0x11, {0, 0, 0, 1}, 4, T_(1) | T_(2) | T_(14)},
        {0x12, {0, 1, 'a'}, 3, T_(2)},
        {0x13, {0, 1}, 2, T_(2)},
        {0x15, {0, 1, 'a'}, 3, T_(1) | T_(2) | T_(15)},
        {0x16, {0, 1, 'a'}, 3, T_(1) | T_(2) | T_(15)},
        {0x17, {1}, 1, T_(1)},
        {0x18, {0, 0, 0, 1}, 4, W_},
        {0x19, {1}, 1, T_(1)},
        {0x1A, {0, 1, 'a'}, 3, T_(2)},
        {0x1C, {0, 1, 'a'}, 3, T_(2) | T_(14)},
        {0x1F, {0, 1, 'a'}, 3,
         T_(2) | T_(4) | T_(5) | T_(6) | T_(7) | T_(9) | T_(11) | T_(14) | T_(15)},
        {0x21, {0, 1}, 2, T_(1) | T_(2)},
        {0x22, {0, 1}, 2, T_(1) | T_(2)},
        {0x23, {0, 1}, 2, T_(3)},
        {0x24, {1}, 1, T_(2)},
        {0x25, {1}, 1, T_(2)},
        {0x26, {0, 0, 0, 0}, 4, 0xFFFF},
        {0x27, {0, 0, 1, 0}, 4, T_(1) | T_(2)},
        {0x28, {1}, 1, T_(2)},
        {0x29, {1}, 1, T_(2)},
        {0x2A, {1}, 1, T_(2)},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        uint8_t buf[8];
        buf[0] = rows[r].id;
        memcpy(buf + 1, rows[r].value, rows[r].vlen);
        for (uint8_t type = 0; type <= PROTO_AUTH; type++) {
            struct proto_props out;
            int rc = proto_props_decode(buf, 1u + rows[r].vlen, type, &out);
            int want = (rows[r].allowed & T_(type)) ? 0 : PROTO_EPROTOCOL;
            cr_assert_eq(rc, want, "prop 0x%02X in %s: got %s", rows[r].id,
                         type ? proto_type_name(type) : "will", proto_error_name(rc));
        }
    }
}

Test(props, props_decode_values)
{
    static const uint8_t block[] = {
        0x01, 1,                      /* payload format */
        0x02, 0, 0, 1, 0,             /* message expiry 256 */
        0x26, 0, 1, 'a', 0, 1, 'b',   /* user */
        0x03, 0, 1, 'c',              /* content type, interleaved */
        0x26, 0, 1, 'x', 0, 0,        /* user */
        0x0B, 0x7F,                   /* sub id */
    };
    struct proto_props p;
    cr_assert_eq(proto_props_decode(block, sizeof block, PROTO_PUBLISH, &p), 0);
    cr_assert_eq(p.has, PROTO_HAS_PAYLOAD_FORMAT | PROTO_HAS_MESSAGE_EXPIRY | PROTO_HAS_SUB_ID);
    cr_assert_eq(p.message_expiry, 256);
    cr_assert_eq(p.content_type.len, 1);
    cr_assert_eq(p.content_type.p, block + 17);
    cr_assert_eq(p.sub_id_count, 1);
    cr_assert_eq(p.sub_ids[0], 127);
    /* the view spans from the first user property to the end of the last */
    cr_assert_eq(p.user_props.p, block + 7);
    cr_assert_eq(p.user_props.len, 17);

    size_t pos = 0;
    struct proto_str n, v;
    cr_assert_eq(proto_user_prop_next(p.user_props, &pos, &n, &v), 1);
    cr_assert(n.len == 1 && n.p[0] == 'a' && v.len == 1 && v.p[0] == 'b');
    cr_assert_eq(proto_user_prop_next(p.user_props, &pos, &n, &v), 1);
    cr_assert(n.len == 1 && n.p[0] == 'x' && v.len == 0);
    cr_assert_eq(proto_user_prop_next(p.user_props, &pos, &n, &v), 0);
    cr_assert_eq(proto_user_prop_next(p.user_props, &pos, &n, &v), 0);

    /* Re-encoding: the interleaved content type is written once (from its field),
     * the user properties once each, in order. */
    struct buf w = {0};
    cr_assert_eq(proto_props_encode(&p, &w), 0);
    static const uint8_t want[] = {
        0x01, 1, 0x02, 0, 0, 1, 0, 0x03, 0, 1, 'c', 0x0B, 0x7F,
        0x26, 0, 1, 'a', 0, 1, 'b', 0x26, 0, 1, 'x', 0, 0,
    };
    cr_assert_eq(w.len, sizeof want);
    cr_assert_eq(memcmp(w.data, want, sizeof want), 0);
    struct proto_props again;
    cr_assert_eq(proto_props_decode(w.data, w.len, PROTO_PUBLISH, &again), 0);
    cr_assert_eq(again.user_props.len, 13);
    free(w.data);
}

Test(props, props_encode_every_property)
{
    struct proto_props p;
    memset(&p, 0, sizeof p);
    p.has = 0x1FFFF; /* every PROTO_HAS_* bit */
    p.payload_format = 1;
    p.message_expiry = 1;
    p.session_expiry = 2;
    p.server_keep_alive = 3;
    p.request_problem_info = 1;
    p.will_delay = 4;
    p.request_response_info = 1;
    p.receive_maximum = 5;
    p.topic_alias_maximum = 6;
    p.topic_alias = 7;
    p.maximum_qos = 1;
    p.retain_available = 1;
    p.maximum_packet_size = 8;
    p.wildcard_sub_available = 1;
    p.sub_id_available = 1;
    p.shared_sub_available = 1;
    p.content_type = proto_cstr("a");
    p.response_topic = proto_cstr("b");
    p.correlation_data = proto_cstr("c");
    p.assigned_client_id = proto_cstr("d");
    p.auth_method = proto_cstr("e");
    p.auth_data = proto_cstr("f");
    p.response_info = proto_cstr("g");
    p.server_reference = proto_cstr("h");
    p.reason_string = proto_cstr("i");
    uint32_t ext[] = {1, 2, 300};
    p.sub_ids_ext = ext;
    p.sub_id_count = 3;
    struct buf w = {0};
    cr_assert_eq(proto_props_encode(&p, &w), 0);
    /* 17 fixed: 2+5+5+3+2+5+2+3+3+3+2+2+5+2+2+2 = 48, 9 strings of 4, sub ids 2+2+3 */
    cr_assert_eq(w.len, 48 + 9 * 4 + 7);
    /* walkable as a property block, and decodes back for a CONNACK-ish mix */
    size_t pos = 0;
    struct proto_str n, v;
    cr_assert_eq(proto_user_prop_next((struct proto_str){w.data, (uint32_t)w.len}, &pos, &n, &v),
                 0);
    cr_assert_eq(pos, w.len);
    free(w.data);

    /* too many inline sub ids */
    p.sub_ids_ext = NULL;
    p.sub_id_count = PROTO_MAX_DECODED_SUB_IDS + 1;
    struct buf w2 = {0};
    cr_assert_eq(proto_props_encode(&p, &w2), PROTO_ETOOLARGE);
    cr_assert_eq(w2.len, 0);
    free(w2.data);
}

Test(props, user_prop_next_errors)
{
    struct proto_str n = {0}, v = {0};
    size_t pos = 0;
    static const uint8_t trunc[] = {0x26, 0, 3, 'a'};
    cr_assert_eq(proto_user_prop_next((struct proto_str){trunc, sizeof trunc}, &pos, &n, &v),
                 PROTO_EMALFORMED);
    static const uint8_t unknown[] = {0x05, 0};
    pos = 0;
    cr_assert_eq(proto_user_prop_next((struct proto_str){unknown, sizeof unknown}, &pos, &n, &v),
                 PROTO_EMALFORMED);
    pos = 99;
    cr_assert_eq(proto_user_prop_next((struct proto_str){unknown, sizeof unknown}, &pos, &n, &v),
                 PROTO_EMALFORMED);
    pos = 0;
    cr_assert_eq(proto_user_prop_next((struct proto_str){NULL, 0}, &pos, &n, &v), 0);
    cr_assert_null(n.p);
}
