/* Tests for proto/decode.c: every packet type and version, valid, empty, truncated,
 * boundary and overlong input. */
#include <stdlib.h>
#include <string.h>

#include "../../../proto/proto.h"
#include "helpers.h"

struct dec_case {
    const char *name;
    const uint8_t *buf;
    size_t len;
    uint8_t version;
    int want;
};

static const struct dec_case decode_cases[] = {
    /* framing-level */
    {"empty", (const uint8_t *)"", 0, 4, PROTO_EMALFORMED},
    {"one byte", BYTES(0xC0), 4, PROTO_EMALFORMED},
    {"reserved type 0", BYTES(0x00, 0x00), 4, PROTO_EMALFORMED},
    {"remaining length too long", BYTES(0xC0, 0x01), 4, PROTO_EMALFORMED},
    {"remaining length too short", BYTES(0xC0, 0x00, 0x00), 4, PROTO_EMALFORMED},
    {"five-byte varint", BYTES(0x30, 0x80, 0x80, 0x80, 0x80, 0x01), 4, PROTO_EMALFORMED},
    {"non-minimal varint", BYTES(0xC0, 0x80, 0x00), 4, PROTO_EMALFORMED},
    {"unterminated varint", BYTES(0x30, 0x80, 0x80), 4, PROTO_EMALFORMED},
    {"before CONNECT: PUBLISH", BYTES(0x30, 0x03, 0x00, 0x01, 'a'), 0, PROTO_EPROTOCOL},
    {"before CONNECT: PINGREQ", BYTES(0xC0, 0x00), 0, PROTO_EPROTOCOL},
    {"unknown connection level", BYTES(0xC0, 0x00), 6, PROTO_EPROTOCOL},

    /* CONNECT */
    {"connect 3.1.1 minimal",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 0), 0, 0},
    {"connect 3.1",
     BYTES(0x10, 0x0F, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02, 0, 60, 0, 1, 'a'), 0, 0},
    {"connect 5 minimal",
     BYTES(0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 0), 0, 0},
    {"connect 5 empty id no clean start",
     BYTES(0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x00, 0, 60, 0, 0, 0), 0, 0},
    {"connect second time is decoded",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 0), 4, 0},
    {"connect flags nonzero",
     BYTES(0x11, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 0), 0, PROTO_EMALFORMED},
    {"connect MQTT level 3",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 3, 0x02, 0, 60, 0, 0), 0, PROTO_EVERSION},
    {"connect MQTT level 6",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 6, 0x02, 0, 60, 0, 0), 0, PROTO_EVERSION},
    {"connect MQIsdp level 4",
     BYTES(0x10, 0x0F, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 4, 0x02, 0, 60, 0, 1, 'a'), 0,
     PROTO_EVERSION},
    {"connect bad name",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'X', 4, 0x02, 0, 60, 0, 0), 0, PROTO_EVERSION},
    {"connect name only", BYTES(0x10, 0x06, 0, 4, 'M', 'Q', 'T', 'T'), 0, PROTO_EMALFORMED},
    {"connect name length beyond packet", BYTES(0x10, 0x03, 0, 9, 'M'), 0, PROTO_EMALFORMED},
    {"connect reserved flag",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 60, 0, 0), 0, PROTO_EMALFORMED},
    {"connect will qos without will",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x0A, 0, 60, 0, 0), 0, PROTO_EMALFORMED},
    {"connect will retain without will",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x22, 0, 60, 0, 0), 0, PROTO_EMALFORMED},
    {"connect will qos 3",
     BYTES(0x10, 0x13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x1E, 0, 60, 0, 0, 0, 1, 't', 0, 2, 'h',
           'i'),
     0, PROTO_EMALFORMED},
    {"connect will",
     BYTES(0x10, 0x13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x36, 0, 60, 0, 0, 0, 1, 't', 0, 2, 'h',
           'i'),
     0, 0},
    {"connect will topic wildcard",
     BYTES(0x10, 0x13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0, 60, 0, 0, 0, 1, '#', 0, 2, 'h',
           'i'),
     0, PROTO_ETOPIC},
    {"connect will topic empty",
     BYTES(0x10, 0x12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0, 60, 0, 0, 0, 0, 0, 2, 'h', 'i'), 0,
     PROTO_ETOPIC},
    {"connect will payload missing",
     BYTES(0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0, 60, 0, 0, 0, 1, 't'), 0,
     PROTO_EMALFORMED},
    {"connect 3.1.1 password without username",
     BYTES(0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 60, 0, 0, 0, 1, 'p'), 0,
     PROTO_EMALFORMED},
    {"connect 5 password without username",
     BYTES(0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x42, 0, 60, 0, 0, 0, 0, 1, 'p'), 0, 0},
    {"connect username and password",
     BYTES(0x10, 0x12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60, 0, 0, 0, 1, 'u', 0, 1, 0xFF),
     0, 0},
    {"connect username flag, no username",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x82, 0, 60, 0, 0), 0, PROTO_EMALFORMED},
    {"connect username bad utf-8",
     BYTES(0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x82, 0, 60, 0, 0, 0, 1, 0xC0), 0,
     PROTO_EUTF8},
    {"connect trailing byte",
     BYTES(0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 0, 0), 0, PROTO_EMALFORMED},
    {"connect client id with NUL",
     BYTES(0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 0), 0, PROTO_EUTF8},
    {"connect 3.1.1 empty id without clean session",
     BYTES(0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 60, 0, 0), 0, PROTO_ECLIENTID},
    {"connect 3.1 empty id",
     BYTES(0x10, 0x0E, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02, 0, 60, 0, 0), 0,
     PROTO_ECLIENTID},
    {"connect 5 receive maximum 0",
     BYTES(0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 3, 0x21, 0, 0, 0, 0), 0,
     PROTO_EPROTOCOL},
    {"connect 5 maximum packet size 0",
     BYTES(0x10, 0x12, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 5, 0x27, 0, 0, 0, 0, 0, 0), 0,
     PROTO_EPROTOCOL},
    {"connect 5 request problem info 2",
     BYTES(0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 2, 0x17, 2, 0, 0), 0,
     PROTO_EPROTOCOL},
    {"connect 5 request response info 2",
     BYTES(0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 2, 0x19, 2, 0, 0), 0,
     PROTO_EPROTOCOL},
    {"connect 5 topic alias not allowed",
     BYTES(0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 3, 0x23, 0, 1, 0, 0), 0,
     PROTO_EPROTOCOL},
    {"connect 5 duplicate session expiry",
     BYTES(0x10, 0x17, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 10, 0x11, 0, 0, 0, 1, 0x11, 0,
           0, 0, 2, 0, 0),
     0, PROTO_EPROTOCOL},
    {"connect 5 unknown property",
     BYTES(0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 2, 0x05, 0, 0, 0), 0,
     PROTO_EMALFORMED},
    {"connect 5 property length beyond packet",
     BYTES(0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 9, 0x11, 0, 0, 0), 0,
     PROTO_EMALFORMED},
    {"connect 5 property value truncated",
     BYTES(0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 2, 0x11, 0, 0, 0), 0,
     PROTO_EMALFORMED},
    {"connect 5 property length overlong varint",
     BYTES(0x10, 0x12, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0x80, 0x80, 0x80, 0x80, 0x00,
           0, 0),
     0, PROTO_EMALFORMED},
    {"connect 5 will delay in connect props",
     BYTES(0x10, 0x12, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 5, 0x18, 0, 0, 0, 1, 0, 0), 0,
     PROTO_EPROTOCOL},
    {"connect 5 will with will delay",
     BYTES(0x10, 0x19, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 60, 0, 0, 0, 5, 0x18, 0, 0, 0, 9,
           0, 1, 't', 0, 1, 'x'),
     0, 0},
    {"connect 5 will with session expiry",
     BYTES(0x10, 0x19, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 60, 0, 0, 0, 5, 0x11, 0, 0, 0, 9,
           0, 1, 't', 0, 1, 'x'),
     0, PROTO_EPROTOCOL},
    {"connect 5 user property bad utf-8",
     BYTES(0x10, 0x14, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 7, 0x26, 0, 1, 'k', 0, 1, 0xFF,
           0, 0),
     0, PROTO_EUTF8},

    /* PUBLISH */
    {"publish qos0", BYTES(0x30, 0x05, 0, 3, 'a', '/', 'b'), 4, 0},
    {"publish qos0 payload", BYTES(0x31, 0x07, 0, 3, 'a', '/', 'b', 'h', 'i'), 4, 0},
    {"publish qos1", BYTES(0x32, 0x08, 0, 3, 'a', '/', 'b', 0, 1, 'x'), 4, 0},
    {"publish qos2 dup", BYTES(0x3C, 0x07, 0, 3, 'a', '/', 'b', 0xFF, 0xFF), 4, 0},
    {"publish 3.1", BYTES(0x30, 0x03, 0, 1, 'a'), 3, 0},
    {"publish qos3", BYTES(0x36, 0x07, 0, 3, 'a', '/', 'b', 0, 1), 4, PROTO_EMALFORMED},
    {"publish qos0 dup", BYTES(0x38, 0x05, 0, 3, 'a', '/', 'b'), 4, PROTO_EMALFORMED},
    {"publish qos1 id 0", BYTES(0x32, 0x07, 0, 3, 'a', '/', 'b', 0, 0), 4, PROTO_EMALFORMED},
    {"publish qos1 id missing", BYTES(0x32, 0x06, 0, 3, 'a', '/', 'b', 0), 4, PROTO_EMALFORMED},
    {"publish topic plus", BYTES(0x30, 0x05, 0, 3, 'a', '/', '+'), 4, PROTO_ETOPIC},
    {"publish topic hash", BYTES(0x30, 0x03, 0, 1, '#'), 4, PROTO_ETOPIC},
    {"publish topic bad utf-8", BYTES(0x30, 0x04, 0, 2, 0xC3, 0x28), 4, PROTO_EUTF8},
    {"publish topic NUL", BYTES(0x30, 0x04, 0, 2, 'a', 0), 4, PROTO_EUTF8},
    {"publish topic surrogate", BYTES(0x30, 0x05, 0, 3, 0xED, 0xA0, 0x80), 4, PROTO_EUTF8},
    {"publish topic length beyond packet", BYTES(0x30, 0x04, 0, 5, 'a', 'b'), 4,
     PROTO_EMALFORMED},
    {"publish no topic", BYTES(0x30, 0x01, 0), 4, PROTO_EMALFORMED},
    {"publish empty topic 3.1.1", BYTES(0x30, 0x02, 0, 0), 4, PROTO_ETOPIC},
    {"publish 5 empty topic with alias", BYTES(0x30, 0x06, 0, 0, 3, 0x23, 0, 1), 5, 0},
    {"publish 5 empty topic no alias", BYTES(0x30, 0x03, 0, 0, 0), 5, 0},
    {"publish 5 no property length", BYTES(0x30, 0x03, 0, 1, 'a'), 5, PROTO_EMALFORMED},
    /* decoded: the broker answers 0x94, not a generic protocol error */
    {"publish 5 topic alias 0", BYTES(0x30, 0x07, 0, 1, 'a', 3, 0x23, 0, 0), 5, 0},
    {"publish 5 payload format 1", BYTES(0x30, 0x06, 0, 1, 'a', 2, 0x01, 1), 5, 0},
    {"publish 5 payload format 2", BYTES(0x30, 0x06, 0, 1, 'a', 2, 0x01, 2), 5, PROTO_EPROTOCOL},
    {"publish 5 duplicate payload format", BYTES(0x30, 0x08, 0, 1, 'a', 4, 0x01, 1, 0x01, 1), 5,
     PROTO_EPROTOCOL},
    {"publish 5 session expiry", BYTES(0x30, 0x09, 0, 1, 'a', 5, 0x11, 0, 0, 0, 1), 5,
     PROTO_EPROTOCOL},
    {"publish 5 response topic", BYTES(0x30, 0x09, 0, 1, 'a', 5, 0x08, 0, 2, 'r', '/'), 5, 0},
    {"publish 5 response topic wildcard", BYTES(0x30, 0x09, 0, 1, 'a', 5, 0x08, 0, 2, 'r', '#'),
     5, PROTO_EPROTOCOL},
    {"publish 5 sub id 0", BYTES(0x30, 0x06, 0, 1, 'a', 2, 0x0B, 0), 5, PROTO_EPROTOCOL},
    {"publish 5 sub id max", BYTES(0x30, 0x09, 0, 1, 'a', 5, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F), 5, 0},
    {"publish 5 sub id 5-byte varint",
     BYTES(0x30, 0x0A, 0, 1, 'a', 6, 0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), 5, PROTO_EMALFORMED},
    {"publish 5 two sub ids", BYTES(0x30, 0x08, 0, 1, 'a', 4, 0x0B, 1, 0x0B, 2), 5, 0},
    {"publish 5 content type bad utf-8", BYTES(0x30, 0x08, 0, 1, 'a', 4, 0x03, 0, 1, 0x80), 5,
     PROTO_EUTF8},
    {"publish 5 correlation data binary", BYTES(0x30, 0x08, 0, 1, 'a', 4, 0x09, 0, 1, 0x80), 5,
     0},
    {"publish 5 property id >= 0x80", BYTES(0x30, 0x07, 0, 1, 'a', 3, 0x81, 0x01, 1), 5,
     PROTO_EMALFORMED},

    /* PUBACK / PUBREC / PUBREL / PUBCOMP */
    {"puback", BYTES(0x40, 0x02, 0, 1), 4, 0},
    {"puback id 0", BYTES(0x40, 0x02, 0, 0), 4, PROTO_EMALFORMED},
    {"puback short", BYTES(0x40, 0x01, 0), 4, PROTO_EMALFORMED},
    {"puback 3.1.1 extra byte", BYTES(0x40, 0x03, 0, 1, 0), 4, PROTO_EMALFORMED},
    {"puback flags", BYTES(0x41, 0x02, 0, 1), 4, PROTO_EMALFORMED},
    {"pubrec", BYTES(0x50, 0x02, 0, 1), 4, 0},
    {"pubrel", BYTES(0x62, 0x02, 0, 1), 4, 0},
    {"pubrel 3.1", BYTES(0x62, 0x02, 0, 1), 3, 0},
    {"pubrel flags 0", BYTES(0x60, 0x02, 0, 1), 4, PROTO_EMALFORMED},
    {"pubcomp", BYTES(0x70, 0x02, 0, 1), 4, 0},
    {"puback 5 short", BYTES(0x40, 0x02, 0, 1), 5, 0},
    {"puback 5 reason only", BYTES(0x40, 0x03, 0, 1, 0x10), 5, 0},
    {"puback 5 reason and empty props", BYTES(0x40, 0x04, 0, 1, 0x80, 0), 5, 0},
    {"puback 5 bad reason", BYTES(0x40, 0x03, 0, 1, 0x05), 5, PROTO_EPROTOCOL},
    {"puback 5 reason string", BYTES(0x40, 0x08, 0, 1, 0x97, 4, 0x1F, 0, 1, 'q'), 5, 0},
    {"puback 5 topic alias", BYTES(0x40, 0x07, 0, 1, 0, 3, 0x23, 0, 1), 5, PROTO_EPROTOCOL},
    {"puback 5 trailing", BYTES(0x40, 0x05, 0, 1, 0, 0, 0), 5, PROTO_EMALFORMED},
    {"pubrel 5 0x92", BYTES(0x62, 0x03, 0, 1, 0x92), 5, 0},
    {"pubrel 5 0x10", BYTES(0x62, 0x03, 0, 1, 0x10), 5, PROTO_EPROTOCOL},
    {"pubcomp 5 user property", BYTES(0x70, 0x0B, 0, 1, 0, 7, 0x26, 0, 1, 'k', 0, 1, 'v'), 5, 0},

    /* SUBSCRIBE */
    {"subscribe", BYTES(0x82, 0x08, 0, 1, 0, 3, 'a', '/', 'b', 1), 4, 0},
    {"subscribe 3.1", BYTES(0x82, 0x06, 0, 1, 0, 1, 'a', 2), 3, 0},
    {"subscribe two", BYTES(0x82, 0x0A, 0, 1, 0, 1, 'a', 0, 0, 1, '#', 2), 4, 0},
    {"subscribe flags 0", BYTES(0x80, 0x08, 0, 1, 0, 3, 'a', '/', 'b', 1), 4, PROTO_EMALFORMED},
    {"subscribe no entries", BYTES(0x82, 0x02, 0, 1), 4, PROTO_EPROTOCOL},
    {"subscribe id 0", BYTES(0x82, 0x06, 0, 0, 0, 1, 'a', 0), 4, PROTO_EMALFORMED},
    {"subscribe options missing", BYTES(0x82, 0x05, 0, 1, 0, 1, 'a'), 4, PROTO_EMALFORMED},
    {"subscribe qos 3", BYTES(0x82, 0x06, 0, 1, 0, 1, 'a', 3), 4, PROTO_EMALFORMED},
    {"subscribe 3.1.1 reserved bit", BYTES(0x82, 0x06, 0, 1, 0, 1, 'a', 0x04), 4,
     PROTO_EMALFORMED},
    {"subscribe invalid filter decodes", BYTES(0x82, 0x08, 0, 1, 0, 3, 'a', '#', 'b', 0), 4, 0},
    {"subscribe empty filter decodes", BYTES(0x82, 0x05, 0, 1, 0, 0, 0), 4, 0},
    {"subscribe filter bad utf-8", BYTES(0x82, 0x06, 0, 1, 0, 1, 0xFE, 0), 4, PROTO_EUTF8},
    {"subscribe 5", BYTES(0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x2D), 5, 0},
    {"subscribe 5 no props", BYTES(0x82, 0x06, 0, 1, 0, 1, 'a', 0), 5, PROTO_EMALFORMED},
    {"subscribe 5 reserved bits", BYTES(0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x40), 5,
     PROTO_EMALFORMED},
    {"subscribe 5 retain handling 3", BYTES(0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x30), 5,
     PROTO_EMALFORMED},
    {"subscribe 5 sub id", BYTES(0x82, 0x09, 0, 1, 2, 0x0B, 7, 0, 1, 'a', 0), 5, 0},
    {"subscribe 5 two sub ids", BYTES(0x82, 0x0B, 0, 1, 4, 0x0B, 7, 0x0B, 8, 0, 1, 'a', 0), 5,
     PROTO_EPROTOCOL},
    {"subscribe 5 sub id 0", BYTES(0x82, 0x09, 0, 1, 2, 0x0B, 0, 0, 1, 'a', 0), 5,
     PROTO_EPROTOCOL},
    {"subscribe 5 no local on share decodes",
     BYTES(0x82, 0x10, 0, 1, 0, 0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x04), 5,
     0},

    /* SUBACK */
    {"suback", BYTES(0x90, 0x03, 0, 1, 1), 4, 0},
    {"suback failure", BYTES(0x90, 0x04, 0, 1, 0x80, 2), 4, 0},
    {"suback bad code", BYTES(0x90, 0x03, 0, 1, 3), 4, PROTO_EPROTOCOL},
    {"suback 3.1.1 v5 code", BYTES(0x90, 0x03, 0, 1, 0x8F), 4, PROTO_EPROTOCOL},
    {"suback empty", BYTES(0x90, 0x02, 0, 1), 4, PROTO_EPROTOCOL},
    {"suback flags", BYTES(0x92, 0x03, 0, 1, 1), 4, PROTO_EMALFORMED},
    {"suback 5", BYTES(0x90, 0x05, 0, 1, 0, 0x00, 0x8F), 5, 0},
    {"suback 5 no props", BYTES(0x90, 0x03, 0, 1, 0x01), 5, PROTO_EMALFORMED},

    /* UNSUBSCRIBE */
    {"unsubscribe", BYTES(0xA2, 0x05, 0, 1, 0, 1, 'a'), 4, 0},
    {"unsubscribe two", BYTES(0xA2, 0x08, 0, 1, 0, 1, 'a', 0, 1, '+'), 4, 0},
    {"unsubscribe empty", BYTES(0xA2, 0x02, 0, 1), 4, PROTO_EPROTOCOL},
    {"unsubscribe flags", BYTES(0xA0, 0x05, 0, 1, 0, 1, 'a'), 4, PROTO_EMALFORMED},
    {"unsubscribe id 0", BYTES(0xA2, 0x05, 0, 0, 0, 1, 'a'), 4, PROTO_EMALFORMED},
    {"unsubscribe truncated filter", BYTES(0xA2, 0x05, 0, 1, 0, 2, 'a'), 4, PROTO_EMALFORMED},
    {"unsubscribe bad utf-8", BYTES(0xA2, 0x05, 0, 1, 0, 1, 0x80), 4, PROTO_EUTF8},
    {"unsubscribe 5", BYTES(0xA2, 0x06, 0, 1, 0, 0, 1, 'a'), 5, 0},
    {"unsubscribe 5 sub id", BYTES(0xA2, 0x08, 0, 1, 2, 0x0B, 1, 0, 1, 'a'), 5, PROTO_EPROTOCOL},

    /* UNSUBACK */
    {"unsuback", BYTES(0xB0, 0x02, 0, 1), 4, 0},
    {"unsuback 3.1.1 with codes", BYTES(0xB0, 0x03, 0, 1, 0), 4, PROTO_EMALFORMED},
    {"unsuback 5", BYTES(0xB0, 0x05, 0, 1, 0, 0x00, 0x11), 5, 0},
    {"unsuback 5 empty", BYTES(0xB0, 0x03, 0, 1, 0), 5, PROTO_EPROTOCOL},
    {"unsuback 5 bad code", BYTES(0xB0, 0x04, 0, 1, 0, 0x02), 5, PROTO_EPROTOCOL},

    /* CONNACK */
    {"connack", BYTES(0x20, 0x02, 0, 0), 4, 0},
    {"connack session present", BYTES(0x20, 0x02, 1, 0), 4, 0},
    {"connack refused", BYTES(0x20, 0x02, 0, 5), 4, 0},
    {"connack bad code", BYTES(0x20, 0x02, 0, 6), 4, PROTO_EPROTOCOL},
    {"connack reserved flags", BYTES(0x20, 0x02, 2, 0), 4, PROTO_EMALFORMED},
    {"connack present with error", BYTES(0x20, 0x02, 1, 4), 4, PROTO_EPROTOCOL},
    {"connack 3.1", BYTES(0x20, 0x02, 0, 2), 3, 0},
    {"connack short", BYTES(0x20, 0x01, 0), 4, PROTO_EMALFORMED},
    {"connack long", BYTES(0x20, 0x03, 0, 0, 0), 4, PROTO_EMALFORMED},
    {"connack 5", BYTES(0x20, 0x03, 0, 0, 0), 5, 0},
    {"connack 5 refused", BYTES(0x20, 0x03, 0, 0x87, 0), 5, 0},
    {"connack 5 bad code", BYTES(0x20, 0x03, 0, 0x01, 0), 5, PROTO_EPROTOCOL},
    {"connack 5 props", BYTES(0x20, 0x0C, 1, 0, 9, 0x24, 1, 0x25, 0, 0x21, 0, 10, 0x2A, 1), 5, 0},
    {"connack 5 maximum qos 2", BYTES(0x20, 0x05, 0, 0, 2, 0x24, 2), 5, PROTO_EPROTOCOL},
    {"connack 5 retain available 2", BYTES(0x20, 0x05, 0, 0, 2, 0x25, 2), 5, PROTO_EPROTOCOL},
    {"connack 5 request problem info", BYTES(0x20, 0x05, 0, 0, 2, 0x17, 1), 5, PROTO_EPROTOCOL},

    /* PINGREQ / PINGRESP */
    {"pingreq", BYTES(0xC0, 0x00), 4, 0},
    {"pingreq body", BYTES(0xC0, 0x01, 0), 4, PROTO_EMALFORMED},
    {"pingreq flags", BYTES(0xC1, 0x00), 4, PROTO_EMALFORMED},
    {"pingresp", BYTES(0xD0, 0x00), 5, 0},

    /* DISCONNECT */
    {"disconnect", BYTES(0xE0, 0x00), 4, 0},
    {"disconnect 3.1.1 body", BYTES(0xE0, 0x01, 0), 4, PROTO_EMALFORMED},
    {"disconnect flags", BYTES(0xE2, 0x00), 4, PROTO_EMALFORMED},
    {"disconnect 5 short", BYTES(0xE0, 0x00), 5, 0},
    {"disconnect 5 reason", BYTES(0xE0, 0x01, 0x04), 5, 0},
    {"disconnect 5 props", BYTES(0xE0, 0x07, 0x00, 5, 0x11, 0, 0, 0, 0), 5, 0},
    {"disconnect 5 bad reason", BYTES(0xE0, 0x01, 0x01), 5, PROTO_EPROTOCOL},
    {"disconnect 5 prop not allowed", BYTES(0xE0, 0x04, 0x00, 2, 0x24, 1), 5, PROTO_EPROTOCOL},

    /* AUTH */
    {"auth 5 short", BYTES(0xF0, 0x00), 5, 0},
    {"auth 5", BYTES(0xF0, 0x09, 0x18, 7, 0x15, 0, 4, 'S', 'C', 'R', 'M'), 5, 0},
    {"auth 5 bad reason", BYTES(0xF0, 0x01, 0x80), 5, PROTO_EPROTOCOL},
    {"auth 3.1.1", BYTES(0xF0, 0x00), 4, PROTO_EMALFORMED},
    {"auth flags", BYTES(0xF1, 0x00), 5, PROTO_EMALFORMED},
};

TABLE_PARAMS(decode, table, decode_cases)

/* Decodes from an exact-size heap copy so that AddressSanitizer sees any read past
 * the end. */
static int decode_exact(const uint8_t *buf, size_t len, uint8_t version, struct proto_packet *p)
{
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    if (len)
        memcpy(copy, buf, len);
    int rc = proto_decode(copy, len, version, p);
    free(copy);
    return rc;
}

ParameterizedTest(size_t *i, decode, table)
{
    const struct dec_case *c = &decode_cases[*i];
    struct proto_packet p;
    int rc = decode_exact(c->buf, c->len, c->version, &p);
    cr_assert_eq(rc, c->want, "%s: got %s (%d), want %s", c->name, proto_error_name(rc), rc,
                 proto_error_name(c->want));
    if (rc == 0)
        proto_packet_release(&p);
}

/* Rewrites a packet's remaining length after cutting its body to body_len bytes. */
static size_t truncate_packet(const uint8_t *in, size_t in_len, size_t body_len, uint8_t *out)
{
    uint32_t rl = 0;
    size_t hdr = 1;
    for (int shift = 0; hdr < in_len; hdr++, shift += 7) {
        rl |= (uint32_t)(in[hdr] & 0x7F) << shift;
        if (!(in[hdr] & 0x80)) {
            hdr++;
            break;
        }
    }
    (void)rl;
    size_t n = 0;
    out[n++] = in[0];
    uint32_t v = (uint32_t)body_len;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        out[n++] = (uint8_t)(v ? b | 0x80 : b);
    } while (v);
    memcpy(out + n, in + hdr, body_len);
    return n + body_len;
}

/* Every valid packet whose body is cut short (with a consistent remaining length)
 * must either fail or, for the types where a shorter form is legal, decode; and
 * none may read out of bounds (checked by ASan on the exact-size copy). Types
 * whose every strict prefix is invalid are asserted to fail. */
Test(decode, truncated_bodies)
{
    uint8_t buf[300];
    int checked = 0;
    for (size_t k = 0; k < sizeof decode_cases / sizeof decode_cases[0]; k++) {
        const struct dec_case *c = &decode_cases[k];
        if (c->want != 0 || c->len < 2)
            continue;
        uint8_t type = c->buf[0] >> 4;
        size_t hdr = 2;
        while (hdr < c->len && (c->buf[hdr - 1] & 0x80))
            hdr++;
        size_t body = c->len - hdr;
        for (size_t cut = 0; cut < body; cut++) {
            size_t n = truncate_packet(c->buf, c->len, cut, buf);
            struct proto_packet p;
            int rc = decode_exact(buf, n, c->version, &p);
            /* (UN)SUBSCRIBE and SUBACK with several entries, PUBLISH and the v5
             * short forms have valid prefixes. */
            bool must_fail = type == PROTO_CONNECT ||
                             (c->version < 5 && (type == PROTO_CONNACK || type == PROTO_UNSUBACK ||
                                                 (type >= PROTO_PUBACK && type <= PROTO_PUBCOMP)));
            if (must_fail)
                cr_assert_neq(rc, 0, "%s cut to %zu decoded", c->name, cut);
            if (rc == 0)
                proto_packet_release(&p);
            checked++;
        }
    }
    cr_assert_gt(checked, 100);
}

/* --- field checks ----------------------------------------------------------- */

static bool str_is(struct proto_str s, const char *lit)
{
    return s.p && s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

#define DECODE_OK(version, p, ...)                                                                 \
    do {                                                                                           \
        static const uint8_t pkt_[] = {__VA_ARGS__};                                               \
        int rc_ = proto_decode(pkt_, sizeof pkt_, (version), (p));                                 \
        cr_assert_eq(rc_, 0, "decode: %s", proto_error_name(rc_));                                 \
    } while (0)

Test(decode, connect_v311_fields)
{
    struct proto_packet p;
    DECODE_OK(0, &p, 0x10, 0x1D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xEE, 0x01, 0x2C, 0, 2, 'c', 'i',
              0, 3, 'w', '/', 't', 0, 1, 'X', 0, 1, 'u', 0, 2, 'p', 'w');
    cr_assert_eq(p.type, PROTO_CONNECT);
    struct proto_connect *c = &p.u.connect;
    cr_assert_eq(c->version, 4);
    cr_assert(c->clean_start);
    cr_assert_eq(c->keep_alive, 300);
    cr_assert(str_is(c->client_id, "ci"));
    cr_assert(c->will);
    cr_assert_eq(c->will_qos, 1);
    cr_assert(c->will_retain);
    cr_assert(str_is(c->will_topic, "w/t"));
    cr_assert(str_is(c->will_payload, "X"));
    cr_assert(c->has_username);
    cr_assert(str_is(c->username, "u"));
    cr_assert(c->has_password);
    cr_assert(str_is(c->password, "pw"));
    cr_assert_eq(c->props.has, 0);
    proto_packet_release(&p);
}

Test(decode, connect_v5_props)
{
    struct proto_packet p;
    DECODE_OK(0, &p, 0x10, 0x30, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 10,
              /* props (19) */ 19, 0x11, 0, 0, 0x0E, 0x10, 0x21, 0, 20, 0x27, 0, 1, 0, 0, 0x26, 0,
              1, 'k', 0, 0,
              /* id */ 0, 1, 'c',
              /* will props (7) */ 7, 0x18, 0, 0, 0, 5, 0x01, 1,
              /* will topic, payload */ 0, 1, 't', 0, 2, 'h', 'i');
    struct proto_connect *c = &p.u.connect;
    cr_assert_eq(c->version, 5);
    cr_assert_eq(c->props.has, PROTO_HAS_SESSION_EXPIRY | PROTO_HAS_RECEIVE_MAXIMUM |
                                   PROTO_HAS_MAXIMUM_PACKET_SIZE);
    cr_assert_eq(c->props.session_expiry, 3600);
    cr_assert_eq(c->props.receive_maximum, 20);
    cr_assert_eq(c->props.maximum_packet_size, 65536);
    cr_assert_eq(c->props.user_props.len, 6);
    cr_assert(c->will);
    cr_assert_eq(c->will_props.has, PROTO_HAS_WILL_DELAY | PROTO_HAS_PAYLOAD_FORMAT);
    cr_assert_eq(c->will_props.will_delay, 5);
    cr_assert_eq(c->will_props.payload_format, 1);
    cr_assert(str_is(c->will_topic, "t"));
    cr_assert(str_is(c->will_payload, "hi"));
    proto_packet_release(&p);
}

Test(decode, connect_eversion_reports_level)
{
    static const uint8_t pkt[] = {0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 7, 0x02, 0, 60, 0, 0};
    struct proto_packet p;
    cr_assert_eq(proto_decode(pkt, sizeof pkt, 0, &p), PROTO_EVERSION);
    cr_assert_eq(p.type, PROTO_CONNECT);
    cr_assert_eq(p.u.connect.version, 7);
}

Test(decode, connect_eclientid_reports_level)
{
    static const uint8_t pkt[] = {0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 60, 0, 0};
    struct proto_packet p;
    cr_assert_eq(proto_decode(pkt, sizeof pkt, 0, &p), PROTO_ECLIENTID);
    cr_assert_eq(p.type, PROTO_CONNECT);
    cr_assert_eq(p.u.connect.version, 4);
}

Test(decode, publish_fields)
{
    struct proto_packet p;
    DECODE_OK(4, &p, 0x3B, 0x0A, 0, 3, 'a', '/', 'b', 0x12, 0x34, 'x', 'y', 'z');
    cr_assert_eq(p.type, PROTO_PUBLISH);
    cr_assert_eq(p.flags, 0x0B);
    struct proto_publish *m = &p.u.publish;
    cr_assert_eq(m->qos, 1);
    cr_assert(m->dup);
    cr_assert(m->retain);
    cr_assert(str_is(m->topic, "a/b"));
    cr_assert_eq(m->packet_id, 0x1234);
    cr_assert(str_is(m->payload, "xyz"));
    cr_assert_eq(m->props.has, 0);
    cr_assert_null(m->props.user_props.p);
}

Test(decode, publish_v5_props)
{
    struct proto_packet p;
    DECODE_OK(5, &p, 0x30, 0x23, 0, 1, 'a',
              /* props (29) */ 29, 0x02, 0, 0, 0, 60, 0x03, 0, 2, 't', 'x', 0x08, 0, 1, 'r',
              0x09, 0, 2, 1, 2, 0x23, 0, 7, 0x0B, 0x80, 0x01, 0x0B, 5, 0x01, 0,
              /* payload */ 'P', 'Q');
    struct proto_publish *m = &p.u.publish;
    cr_assert_eq(m->props.message_expiry, 60);
    cr_assert(str_is(m->props.content_type, "tx"));
    cr_assert(str_is(m->props.response_topic, "r"));
    cr_assert_eq(m->props.correlation_data.len, 2);
    cr_assert_eq(m->props.topic_alias, 7);
    cr_assert_eq(m->props.sub_id_count, 2);
    cr_assert_eq(m->props.sub_ids[0], 128);
    cr_assert_eq(m->props.sub_ids[1], 5);
    cr_assert_eq(m->props.payload_format, 0);
    cr_assert(m->props.has & PROTO_HAS_PAYLOAD_FORMAT);
    cr_assert(str_is(m->payload, "PQ"));
}

/* More subscription identifiers than PROTO_MAX_DECODED_SUB_IDS: accepted, the
 * first ones kept. */
Test(decode, publish_many_sub_ids)
{
    uint8_t pkt[64];
    size_t n = 0;
    pkt[n++] = 0x30;
    pkt[n++] = 0; /* set below */
    pkt[n++] = 0;
    pkt[n++] = 1;
    pkt[n++] = 'a';
    pkt[n++] = 20;
    for (int i = 1; i <= 10; i++) {
        pkt[n++] = 0x0B;
        pkt[n++] = (uint8_t)i;
    }
    pkt[1] = (uint8_t)(n - 2);
    struct proto_packet p;
    cr_assert_eq(proto_decode(pkt, n, 5, &p), 0);
    cr_assert_eq(p.u.publish.props.sub_id_count, PROTO_MAX_DECODED_SUB_IDS);
    for (int i = 0; i < PROTO_MAX_DECODED_SUB_IDS; i++)
        cr_assert_eq(p.u.publish.props.sub_ids[i], (uint32_t)i + 1);
}

Test(decode, subscribe_fields)
{
    struct proto_packet p;
    DECODE_OK(5, &p, 0x82, 0x14, 0x01, 0x02, 2, 0x0B, 9, 0, 3, 'a', '/', '#', 0x2E, 0, 1, '+',
              0x01, 0, 2, 'a', '#', 0x00);
    struct proto_subscribe *s = &p.u.subscribe;
    cr_assert_eq(s->packet_id, 0x0102);
    cr_assert_eq(s->props.sub_id_count, 1);
    cr_assert_eq(s->props.sub_ids[0], 9);
    cr_assert_eq(s->count, 3);
    cr_assert(str_is(s->entries[0].filter, "a/#"));
    cr_assert_eq(s->entries[0].qos, 2);
    cr_assert(s->entries[0].no_local);
    cr_assert(s->entries[0].retain_as_published);
    cr_assert_eq(s->entries[0].retain_handling, 2);
    cr_assert(str_is(s->entries[1].filter, "+"));
    cr_assert_eq(s->entries[1].qos, 1);
    cr_assert_not(s->entries[1].no_local);
    cr_assert_eq(s->entries[1].retain_handling, 0);
    /* well-formed UTF-8 but not a valid filter: decoded, left to the broker */
    cr_assert(str_is(s->entries[2].filter, "a#"));
    cr_assert_eq(proto_topic_filter_check(s->entries[2].filter.p, s->entries[2].filter.len),
                 PROTO_ETOPIC);
    proto_packet_release(&p);
    cr_assert_null(p.u.subscribe.entries);
}

Test(decode, unsubscribe_fields)
{
    struct proto_packet p;
    DECODE_OK(4, &p, 0xA2, 0x09, 0, 7, 0, 1, 'a', 0, 2, 'b', '/');
    cr_assert_eq(p.u.unsubscribe.packet_id, 7);
    cr_assert_eq(p.u.unsubscribe.count, 2);
    cr_assert(str_is(p.u.unsubscribe.filters[0], "a"));
    cr_assert(str_is(p.u.unsubscribe.filters[1], "b/"));
    proto_packet_release(&p);
}

Test(decode, suback_fields)
{
    struct proto_packet p;
    DECODE_OK(5, &p, 0x90, 0x09, 0, 3, 4, 0x1F, 0, 1, 'r', 0x02, 0x8F);
    cr_assert_eq(p.u.suback.packet_id, 3);
    cr_assert(str_is(p.u.suback.props.reason_string, "r"));
    cr_assert_eq(p.u.suback.count, 2);
    cr_assert_eq(p.u.suback.reasons[0], 2);
    cr_assert_eq(p.u.suback.reasons[1], 0x8F);
    proto_packet_release(&p);
    DECODE_OK(4, &p, 0xB0, 0x02, 0, 9);
    cr_assert_eq(p.type, PROTO_UNSUBACK);
    cr_assert_eq(p.u.suback.packet_id, 9);
    cr_assert_eq(p.u.suback.count, 0);
    cr_assert_null(p.u.suback.reasons);
    proto_packet_release(&p);
}

Test(decode, connack_fields)
{
    struct proto_packet p;
    DECODE_OK(5, &p, 0x20, 0x0D, 0x01, 0x00, 10, 0x12, 0, 2, 'i', 'd', 0x13, 0, 30, 0x28, 0);
    cr_assert(p.u.connack.session_present);
    cr_assert_eq(p.u.connack.reason, 0);
    cr_assert(str_is(p.u.connack.props.assigned_client_id, "id"));
    cr_assert_eq(p.u.connack.props.server_keep_alive, 30);
    cr_assert(p.u.connack.props.has & PROTO_HAS_WILDCARD_SUB_AVAILABLE);
    cr_assert_eq(p.u.connack.props.wildcard_sub_available, 0);
    DECODE_OK(3, &p, 0x20, 0x02, 0x01, 0x02);
    cr_assert_not(p.u.connack.session_present); /* 3.1 has no session present bit */
    cr_assert_eq(p.u.connack.reason, 2);
}

Test(decode, ack_fields)
{
    struct proto_packet p;
    DECODE_OK(5, &p, 0x50, 0x03, 0xAB, 0xCD, 0x91);
    cr_assert_eq(p.type, PROTO_PUBREC);
    cr_assert_eq(p.u.ack.packet_id, 0xABCD);
    cr_assert_eq(p.u.ack.reason, 0x91);
    DECODE_OK(5, &p, 0x40, 0x02, 0x00, 0x05);
    cr_assert_eq(p.u.ack.reason, 0);
    cr_assert_eq(p.u.ack.props.has, 0);
}

Test(decode, disconnect_fields)
{
    struct proto_packet p;
    DECODE_OK(5, &p, 0xE0, 0x0A, 0x9C, 8, 0x1C, 0, 5, 'h', 'o', 's', 't', '2');
    cr_assert_eq(p.u.disconnect.reason, 0x9C);
    cr_assert(str_is(p.u.disconnect.props.server_reference, "host2"));
    DECODE_OK(5, &p, 0xE0, 0x00);
    cr_assert_eq(p.u.disconnect.reason, 0);
}

/* Remaining length at its boundaries: 127/128 (1 -> 2 varint bytes) and a large
 * payload, and the user properties view across interleaved properties. */
Test(decode, publish_length_boundaries)
{
    size_t sizes[] = {127, 128, 16383, 16384, 2097151, 2097152};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t rl = sizes[k];
        uint8_t *pkt = malloc(rl + 5);
        cr_assert_not_null(pkt);
        size_t n = 0;
        pkt[n++] = 0x30;
        uint32_t v = (uint32_t)rl;
        do {
            uint8_t b = v & 0x7F;
            v >>= 7;
            pkt[n++] = (uint8_t)(v ? b | 0x80 : b);
        } while (v);
        size_t body = n;
        pkt[n++] = 0;
        pkt[n++] = 1;
        pkt[n++] = 't';
        memset(pkt + n, 'x', rl - 3);
        n += rl - 3;
        size_t framed;
        cr_assert_eq(proto_frame(pkt, n, 0, &framed), 0);
        cr_assert_eq(framed, n);
        struct proto_packet p;
        cr_assert_eq(proto_decode(pkt, n, 4, &p), 0, "rl %zu", rl);
        cr_assert_eq(p.u.publish.payload.len, rl - 3);
        cr_assert_eq(p.u.publish.payload.p, pkt + body + 3);
        free(pkt);
    }
}

/* --- the fuzzer's seeds and regressions ---------------------------------------- */

#include <dirent.h>
#include <stdio.h>

/* Replays every file of tests/fuzz/corpus (seeds) and tests/fuzz/regressions
 * (inputs that once crashed the fuzzer) with the fuzzer's own checks: each framed
 * packet decodes at some level, and what decodes re-encodes to bytes that decode
 * and re-encode identically. */
static int replay_dir(const char *dir, bool must_decode)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "%s", path);
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        files++;
        size_t off = 0, plen;
        while (off < n && proto_frame(buf + off, n - off, 0, &plen) == 0) {
            static const uint8_t versions[] = {0, 3, 4, 5};
            int decoded = 0;
            /* exact-size copy that outlives the decoded views */
            uint8_t *pkt = malloc(plen);
            cr_assert_not_null(pkt);
            memcpy(pkt, buf + off, plen);
            for (size_t v = 0; v < sizeof versions; v++) {
                struct proto_packet p, q;
                if (proto_decode(pkt, plen, versions[v], &p) != 0)
                    continue;
                decoded++;
                uint8_t level = p.type == PROTO_CONNECT ? p.u.connect.version : versions[v];
                struct buf w1 = {0}, w2 = {0};
                cr_assert_eq(proto_encode(&p, level, &w1), 0, "%s", path);
                cr_assert_eq(proto_decode(w1.data, w1.len, versions[v], &q), 0, "%s", path);
                cr_assert_eq(proto_encode(&q, level, &w2), 0, "%s", path);
                cr_assert(w1.len == w2.len && memcmp(w1.data, w2.data, w1.len) == 0, "%s", path);
                proto_packet_release(&q);
                proto_packet_release(&p);
                free(w1.data);
                free(w2.data);
            }
            free(pkt);
            if (must_decode)
                cr_assert_gt(decoded, 0, "%s at offset %zu decodes at no level", path, off);
            off += plen;
        }
    }
    closedir(d);
    return files;
}

Test(decode, fuzz_corpus_replay)
{
    cr_assert_geq(replay_dir(PROTO_FUZZ_DIR "/corpus", true), 30);
    replay_dir(PROTO_FUZZ_DIR "/regressions", false);
}
