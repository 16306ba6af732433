/* Tests for proto/frame.c: framing, Variable Byte Integers, the reader and
 * buffer proto builds on, error mapping and names. */
#include <stdlib.h>
#include <string.h>

#include "../../../proto/internal.h"
#include "helpers.h"

/* --- framing ---------------------------------------------------------------- */

struct frame_case {
    const char *name;
    const uint8_t *buf;
    size_t len;
    uint32_t max;
    int want;
    size_t want_len;
};

static const struct frame_case frame_cases[] = {
    {"empty", (const uint8_t *)"", 0, 0, PROTO_EINCOMPLETE, 0},
    {"type only", BYTES(0xC0), 0, PROTO_EINCOMPLETE, 0},
    {"pingreq", BYTES(0xC0, 0x00), 0, 0, 2},
    {"pingreq and more", BYTES(0xC0, 0x00, 0xD0, 0x00), 0, 0, 2},
    {"body missing", BYTES(0x30, 0x03, 0x00, 0x01), 0, PROTO_EINCOMPLETE, 0},
    {"body complete", BYTES(0x30, 0x03, 0x00, 0x01, 'a'), 0, 0, 5},
    {"varint 2 bytes partial", BYTES(0x30, 0x80), 0, PROTO_EINCOMPLETE, 0},
    {"varint 4 bytes partial", BYTES(0x30, 0xFF, 0xFF, 0xFF), 0, PROTO_EINCOMPLETE, 0},
    {"varint 5 bytes", BYTES(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), 0, PROTO_EMALFORMED, 0},
    {"varint 4 continuation bytes", BYTES(0x30, 0x80, 0x80, 0x80, 0x80), 0, PROTO_EMALFORMED, 0},
    {"varint non-minimal", BYTES(0x30, 0x80, 0x00), 0, PROTO_EMALFORMED, 0},
    {"varint max, body missing", BYTES(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 0, PROTO_EINCOMPLETE, 0},
    {"too large before body", BYTES(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 1024, PROTO_ETOOLARGE, 0},
    {"too large by one", BYTES(0x30, 0x03, 0x00), 4, PROTO_ETOOLARGE, 0},
    {"exactly max, incomplete", BYTES(0x30, 0x03, 0x00), 5, PROTO_EINCOMPLETE, 0},
    {"exactly max", BYTES(0x30, 0x03, 0x00, 0x01, 'a'), 5, 0, 5},
    {"128 announced, 2-byte varint", BYTES(0x30, 0x80, 0x01), 0, PROTO_EINCOMPLETE, 0},
    {"128 announced, too large", BYTES(0x30, 0x80, 0x01), 130, PROTO_ETOOLARGE, 0},
};

TABLE_PARAMS(frame, frame, frame_cases)

ParameterizedTest(size_t *i, frame, frame)
{
    const struct frame_case *c = &frame_cases[*i];
    size_t len = 12345;
    int rc = proto_frame(c->buf, c->len, c->max, &len);
    cr_assert_eq(rc, c->want, "%s: got %s", c->name, proto_error_name(rc));
    if (rc == 0)
        cr_assert_eq(len, c->want_len, "%s", c->name);
    else
        cr_assert_eq(len, 12345, "%s: output touched on failure", c->name);
}

/* Fed one byte at a time, a stream frames only once the whole packet is there. */
Test(frame, frame_bytewise)
{
    static const uint8_t pkt[] = {0x32, 0x82, 0x01, 0, 1, 't', 0, 1};
    uint8_t buf[200] = {0};
    memcpy(buf, pkt, sizeof pkt);
    size_t total = 3 + 130;
    for (size_t n = 0; n < total; n++) {
        size_t len;
        cr_assert_eq(proto_frame(buf, n, 0, &len), PROTO_EINCOMPLETE, "at %zu", n);
    }
    size_t len;
    cr_assert_eq(proto_frame(buf, total, 0, &len), 0);
    cr_assert_eq(len, total);
}

/* --- varints, the reader and buffer, mapping and names ------------------ */

Test(frame, varint_size)
{
    cr_assert_eq(proto_varint_size(0), 1);
    cr_assert_eq(proto_varint_size(127), 1);
    cr_assert_eq(proto_varint_size(128), 2);
    cr_assert_eq(proto_varint_size(16383), 2);
    cr_assert_eq(proto_varint_size(16384), 3);
    cr_assert_eq(proto_varint_size(2097151), 3);
    cr_assert_eq(proto_varint_size(2097152), 4);
    cr_assert_eq(proto_varint_size(PROTO_MAX_VARINT), 4);
    cr_assert_eq(proto_varint_size(PROTO_MAX_VARINT + 1), 0);
    cr_assert_eq(proto_varint_size(UINT32_MAX), 0);
}

Test(frame, varint_parse)
{
    uint32_t v = 7;
    cr_assert_eq(proto__varint_parse((const uint8_t[]){0x00}, 1, &v), 1);
    cr_assert_eq(v, 0);
    cr_assert_eq(proto__varint_parse((const uint8_t[]){0xFF, 0x7F}, 2, &v), 2);
    cr_assert_eq(v, 16383);
    cr_assert_eq(proto__varint_parse((const uint8_t[]){0x80, 0x80, 0x80, 0x01}, 4, &v), 4);
    cr_assert_eq(v, 2097152);
    cr_assert_eq(proto__varint_parse((const uint8_t[]){0xFF, 0xFF, 0xFF, 0x7F}, 4, &v), 4);
    cr_assert_eq(v, PROTO_MAX_VARINT);
    v = 7;
    cr_assert_eq(proto__varint_parse((const uint8_t[]){0x80}, 1, &v), 0);
    cr_assert_eq(proto__varint_parse((const uint8_t[]){0x80}, 0, &v), 0);
    cr_assert_eq(proto__varint_parse((const uint8_t[]){0x80, 0x80, 0x80, 0x80, 0x01}, 5, &v),
                 PROTO_EMALFORMED);
    cr_assert_eq(proto__varint_parse((const uint8_t[]){0xFF, 0x00}, 2, &v), PROTO_EMALFORMED);
    cr_assert_eq(v, 7);
}

Test(frame, reader_bounds)
{
    /* heap copy: ASan checks the bounds, and the compiler cannot see the contents */
    uint8_t *b = malloc(3);
    cr_assert_not_null(b);
    memcpy(b, (const uint8_t[]){0x01, 0x02, 0x03}, 3);
    struct bytes_reader r;
    proto__reader_init(&r, b, 3);
    uint32_t u32 = 9;
    cr_assert_eq(bytes_read_u32be(&r, &u32), PROTO_EMALFORMED);
    cr_assert_eq(u32, 9);
    cr_assert_eq(r.pos, 0);
    uint16_t u16;
    cr_assert_eq(bytes_read_u16be(&r, &u16), 0);
    cr_assert_eq(u16, 0x0102);
    cr_assert_eq(bytes_read_u16be(&r, &u16), PROTO_EMALFORMED);
    cr_assert_eq(u16, 0x0102);
    struct proto_str s = {NULL, 5};
    cr_assert_eq(proto__read_binary(&r, &s), PROTO_EMALFORMED);
    cr_assert_null(s.p);
    cr_assert_eq(proto__read_bytes(&r, 2, &s), PROTO_EMALFORMED);
    cr_assert_eq(proto__read_bytes(&r, SIZE_MAX, &s), PROTO_EMALFORMED);
    uint8_t u8;
    cr_assert_eq(bytes_read_u8(&r, &u8), 0);
    cr_assert_eq(u8, 3);
    cr_assert_eq(bytes_read_u8(&r, &u8), PROTO_EMALFORMED);
    cr_assert_eq(bytes_left(&r), 0);
    free(b);
}

Test(frame, wbuf_growth)
{
    struct buf w = {0};
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(proto_encode_simple(PROTO_PINGRESP, &w), 0);
    cr_assert_eq(w.len, 20000);
    cr_assert_geq(w.cap, w.len);
    cr_assert_eq(w.cap & (w.cap - 1), 0, "capacity doubles from 64");
    for (size_t i = 0; i < w.len; i += 2)
        cr_assert(w.data[i] == 0xD0 && w.data[i + 1] == 0);
    free(w.data);
}

Test(frame, error_reason)
{
    cr_assert_eq(proto_error_reason(PROTO_EMALFORMED), 0x81);
    cr_assert_eq(proto_error_reason(PROTO_EUTF8), 0x81);
    cr_assert_eq(proto_error_reason(PROTO_EPROTOCOL), 0x82);
    cr_assert_eq(proto_error_reason(PROTO_ETOOLARGE), 0x95);
    cr_assert_eq(proto_error_reason(PROTO_ETOPIC), 0x90);
    cr_assert_eq(proto_error_reason(PROTO_EVERSION), 0x84);
    cr_assert_eq(proto_error_reason(PROTO_ECLIENTID), 0x85);
    cr_assert_eq(proto_error_reason(PROTO_ENOMEM), 0x80);
    cr_assert_eq(proto_error_reason(-12), 0x80);
    cr_assert_eq(proto_error_reason(0), 0x00);
}

Test(frame, v3_connack_code)
{
    cr_assert_eq(proto_v3_connack_code(0x00), 0);
    cr_assert_eq(proto_v3_connack_code(0x84), 1);
    cr_assert_eq(proto_v3_connack_code(0x85), 2);
    cr_assert_eq(proto_v3_connack_code(0x88), 3);
    cr_assert_eq(proto_v3_connack_code(0x89), 3);
    cr_assert_eq(proto_v3_connack_code(0x86), 4);
    cr_assert_eq(proto_v3_connack_code(0x87), 5);
    cr_assert_eq(proto_v3_connack_code(0x8C), 5);
    cr_assert_eq(proto_v3_connack_code(0x80), 3);
    cr_assert_eq(proto_v3_connack_code(0x95), 3);
}

Test(frame, names)
{
    cr_assert_str_eq(proto_type_name(PROTO_CONNECT), "CONNECT");
    cr_assert_str_eq(proto_type_name(PROTO_AUTH), "AUTH");
    cr_assert_str_eq(proto_type_name(0), "RESERVED");
    cr_assert_str_eq(proto_type_name(200), "INVALID");
    cr_assert_str_eq(proto_error_name(PROTO_EMALFORMED), "malformed packet");
    cr_assert_str_eq(proto_error_name(PROTO_ECLIENTID), "client identifier rejected");
    cr_assert_str_eq(proto_error_name(-1), "unknown error");
    for (int e = PROTO_ECLIENTID; e <= PROTO_EINCOMPLETE; e++)
        cr_assert_str_neq(proto_error_name(e), "unknown error");
}

Test(frame, cstr_and_release)
{
    struct proto_str s = proto_cstr("abc");
    cr_assert_eq(s.len, 3);
    s = proto_cstr(NULL);
    cr_assert_eq(s.len, 0);
    cr_assert_null(s.p);
    struct proto_packet p;
    memset(&p, 0, sizeof p);
    p.type = PROTO_SUBSCRIBE;
    proto_packet_release(&p); /* nothing allocated: no-op */
    p.u.subscribe.entries = malloc(sizeof *p.u.subscribe.entries);
    p.u.subscribe.count = 1;
    proto_packet_release(&p);
    cr_assert_null(p.u.subscribe.entries);
    cr_assert_eq(p.u.subscribe.count, 0);
    proto_packet_release(&p); /* twice is safe */
}
