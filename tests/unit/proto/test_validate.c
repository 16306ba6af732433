/* Tests for proto/validate.c: MQTT UTF-8, topic names and filters, $share. */
#include <string.h>

#include "../../../proto/internal.h"
#include "helpers.h"

struct str_case {
    const char *name;
    const uint8_t *s;
    size_t len;
    int want;
};

/* --- UTF-8 ---------------------------------------------------------------- */

static struct str_case utf8_cases[] = {
    {"empty", (const uint8_t *)"", 0, 0},
    {"ascii", TEXT("hello/world"), 0},
    {"ascii long (fast path)", TEXT("abcdefghijklmnopqrstuvwxyz0123456789"), 0},
    {"control U+0001", BYTES(0x01), 0},
    {"U+007F", BYTES(0x7F), 0},
    {"U+0080", BYTES(0xC2, 0x80), 0},
    {"U+009F allowed", BYTES(0xC2, 0x9F), 0},
    {"U+07FF", BYTES(0xDF, 0xBF), 0},
    {"U+0800", BYTES(0xE0, 0xA0, 0x80), 0},
    {"U+D7FF", BYTES(0xED, 0x9F, 0xBF), 0},
    {"U+E000", BYTES(0xEE, 0x80, 0x80), 0},
    {"U+FFFF", BYTES(0xEF, 0xBF, 0xBF), 0},
    {"U+10000", BYTES(0xF0, 0x90, 0x80, 0x80), 0},
    {"U+10FFFF", BYTES(0xF4, 0x8F, 0xBF, 0xBF), 0},
    {"mixed after fast path", TEXT("abcdefgh\xc3\xa9tude/\xe2\x82\xac"), 0},
    {"NUL", BYTES(0x00), PROTO_EUTF8},
    {"NUL inside", BYTES('a', 0x00, 'b'), PROTO_EUTF8},
    {"NUL in 8-byte block", BYTES('a', 'b', 'c', 0, 'e', 'f', 'g', 'h', 'i'), PROTO_EUTF8},
    {"NUL after 8 ascii", BYTES('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 0), PROTO_EUTF8},
    {"lone continuation", BYTES(0x80), PROTO_EUTF8},
    {"overlong C0 80", BYTES(0xC0, 0x80), PROTO_EUTF8},
    {"overlong C1 BF", BYTES(0xC1, 0xBF), PROTO_EUTF8},
    {"overlong E0 80 80", BYTES(0xE0, 0x80, 0x80), PROTO_EUTF8},
    {"overlong E0 9F BF", BYTES(0xE0, 0x9F, 0xBF), PROTO_EUTF8},
    {"overlong F0 80 80 80", BYTES(0xF0, 0x80, 0x80, 0x80), PROTO_EUTF8},
    {"overlong F0 8F BF BF", BYTES(0xF0, 0x8F, 0xBF, 0xBF), PROTO_EUTF8},
    {"surrogate D800", BYTES(0xED, 0xA0, 0x80), PROTO_EUTF8},
    {"surrogate DFFF", BYTES(0xED, 0xBF, 0xBF), PROTO_EUTF8},
    {"above U+10FFFF", BYTES(0xF4, 0x90, 0x80, 0x80), PROTO_EUTF8},
    {"F5 lead", BYTES(0xF5, 0x80, 0x80, 0x80), PROTO_EUTF8},
    {"FF byte", BYTES(0xFF), PROTO_EUTF8},
    {"truncated 2-byte", BYTES(0xC3), PROTO_EUTF8},
    {"truncated 3-byte", BYTES(0xE2, 0x82), PROTO_EUTF8},
    {"truncated 4-byte", BYTES(0xF0, 0x90, 0x80), PROTO_EUTF8},
    {"bad continuation", BYTES(0xC3, 0x41), PROTO_EUTF8},
    {"bad 3rd byte", BYTES(0xE2, 0x82, 0x41), PROTO_EUTF8},
    {"bad 4th byte", BYTES(0xF0, 0x90, 0x80, 0x41), PROTO_EUTF8},
    {"high byte after 8 ascii", BYTES('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 0x80),
     PROTO_EUTF8},
};

TABLE_PARAMS(validate, utf8, utf8_cases)

ParameterizedTest(size_t *i, validate, utf8)
{
    const struct str_case *c = &utf8_cases[*i];
    cr_assert_eq(proto_utf8_check(c->s, c->len), c->want, "%s", c->name);
}

/* Every single byte value, alone: only 0x01..0x7F are valid. */
Test(validate, utf8_single_bytes)
{
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        int want = (b >= 1 && b <= 0x7F) ? 0 : PROTO_EUTF8;
        cr_assert_eq(proto_utf8_check(&c, 1), want, "byte 0x%02X", b);
    }
}

/* Every code point encoded by the textbook algorithm must agree with the checker. */
Test(validate, utf8_all_code_points)
{
    uint8_t b[4];
    for (uint32_t cp = 1; cp <= 0x10FFFF; cp++) {
        size_t n;
        if (cp < 0x80) {
            b[0] = (uint8_t)cp;
            n = 1;
        } else if (cp < 0x800) {
            b[0] = (uint8_t)(0xC0 | (cp >> 6));
            b[1] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (uint8_t)(0xE0 | (cp >> 12));
            b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            b[2] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            b[0] = (uint8_t)(0xF0 | (cp >> 18));
            b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            b[3] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 4;
        }
        int want = (cp >= 0xD800 && cp <= 0xDFFF) ? PROTO_EUTF8 : 0;
        int got = proto_utf8_check(b, n);
        if (got != want)
            cr_assert_fail("code point U+%04X: got %d want %d", cp, got, want);
    }
}

/* --- topic names ----------------------------------------------------------- */

static struct str_case topic_name_cases[] = {
    {"simple", TEXT("a/b/c"), 0},
    {"single char", TEXT("a"), 0},
    {"slash only", TEXT("/"), 0},
    {"empty levels", TEXT("//"), 0},
    {"dollar", TEXT("$SYS/broker"), 0},
    {"space", TEXT("a b"), 0},
    {"empty", (const uint8_t *)"", 0, PROTO_ETOPIC},
    {"plus", TEXT("a/+/c"), PROTO_ETOPIC},
    {"hash", TEXT("a/#"), PROTO_ETOPIC},
    {"plus inside level", TEXT("a+b"), PROTO_ETOPIC},
    {"hash inside level", TEXT("a#"), PROTO_ETOPIC},
};

TABLE_PARAMS(validate, topic_name, topic_name_cases)

ParameterizedTest(size_t *i, validate, topic_name)
{
    const struct str_case *c = &topic_name_cases[*i];
    cr_assert_eq(proto_topic_name_check(c->s, c->len), c->want, "%s", c->name);
}

/* --- topic filters --------------------------------------------------------- */

static struct str_case topic_filter_cases[] = {
    {"plain", TEXT("a/b"), 0},
    {"hash alone", TEXT("#"), 0},
    {"plus alone", TEXT("+"), 0},
    {"hash last", TEXT("a/b/#"), 0},
    {"plus middle", TEXT("a/+/c"), 0},
    {"plus first", TEXT("+/b"), 0},
    {"plus last", TEXT("a/+"), 0},
    {"plus plus", TEXT("+/+"), 0},
    {"plus then hash", TEXT("+/#"), 0},
    {"leading slash hash", TEXT("/#"), 0},
    {"empty levels", TEXT("a//b"), 0},
    {"dollar", TEXT("$SYS/#"), 0},
    {"share", TEXT("$share/g/a/b"), 0},
    {"share wildcard filter", TEXT("$share/g/#"), 0},
    {"share plus filter", TEXT("$share/g/+/x"), 0},
    {"share word alone", TEXT("$share"), 0},
    {"share-like prefix", TEXT("$sharex/g/a"), 0},
    {"empty", (const uint8_t *)"", 0, PROTO_ETOPIC},
    {"hash not last", TEXT("a/#/b"), PROTO_ETOPIC},
    {"hash in level", TEXT("a/b#"), PROTO_ETOPIC},
    {"hash before", TEXT("#a"), PROTO_ETOPIC},
    {"hash hash", TEXT("##"), PROTO_ETOPIC},
    {"plus in level", TEXT("a/b+"), PROTO_ETOPIC},
    {"plus before", TEXT("+a"), PROTO_ETOPIC},
    {"plus plus same level", TEXT("++"), PROTO_ETOPIC},
    {"share no group", TEXT("$share//a"), PROTO_ETOPIC},
    {"share no filter", TEXT("$share/g/"), PROTO_ETOPIC},
    {"share no slash", TEXT("$share/g"), PROTO_ETOPIC},
    {"share prefix only", TEXT("$share/"), PROTO_ETOPIC},
    {"share plus group", TEXT("$share/g+/a"), PROTO_ETOPIC},
    {"share hash group", TEXT("$share/#/a"), PROTO_ETOPIC},
    {"share bad filter", TEXT("$share/g/a#"), PROTO_ETOPIC},
};

TABLE_PARAMS(validate, topic_filter, topic_filter_cases)

ParameterizedTest(size_t *i, validate, topic_filter)
{
    const struct str_case *c = &topic_filter_cases[*i];
    cr_assert_eq(proto_topic_filter_check(c->s, c->len), c->want, "%s", c->name);
}

/* --- $share split ----------------------------------------------------------- */

static bool str_is(struct proto_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

Test(validate, shared_split)
{
    struct proto_str g, f;
    cr_assert_eq(proto_shared_split(proto_cstr("$share/grp/a/+/c"), &g, &f), 1);
    cr_assert(str_is(g, "grp"));
    cr_assert(str_is(f, "a/+/c"));
    cr_assert_eq(proto_shared_split(proto_cstr("$share/x/#"), &g, &f), 1);
    cr_assert(str_is(g, "x"));
    cr_assert(str_is(f, "#"));
    cr_assert_eq(proto_shared_split(proto_cstr("a/b"), &g, &f), 0);
    cr_assert_eq(proto_shared_split(proto_cstr("$share"), &g, &f), 0);
    cr_assert_eq(proto_shared_split(proto_cstr("$SHARE/g/a"), &g, &f), 0);
    cr_assert_eq(proto_shared_split(proto_cstr("$share/g"), &g, &f), 0);
}

/* --- reason codes ------------------------------------------------------------ */

struct reason_case {
    uint8_t type, version, reason;
    int want;
};

static struct reason_case reason_cases[] = {
    {PROTO_CONNACK, 4, 0, 0},
    {PROTO_CONNACK, 4, 5, 0},
    {PROTO_CONNACK, 4, 6, PROTO_EPROTOCOL},
    {PROTO_CONNACK, 4, 0x80, PROTO_EPROTOCOL},
    {PROTO_CONNACK, 5, 0x84, 0},
    {PROTO_CONNACK, 5, 0x9F, 0},
    {PROTO_CONNACK, 5, 0x01, PROTO_EPROTOCOL},
    {PROTO_CONNACK, 5, 0x8B, PROTO_EPROTOCOL},
    {PROTO_PUBACK, 5, 0x10, 0},
    {PROTO_PUBACK, 5, 0x99, 0},
    {PROTO_PUBACK, 5, 0x92, PROTO_EPROTOCOL},
    {PROTO_PUBREC, 5, 0x91, 0},
    {PROTO_PUBREL, 5, 0x92, 0},
    {PROTO_PUBREL, 5, 0x10, PROTO_EPROTOCOL},
    {PROTO_PUBCOMP, 5, 0x00, 0},
    {PROTO_SUBACK, 4, 0x80, 0},
    {PROTO_SUBACK, 4, 0x8F, PROTO_EPROTOCOL},
    {PROTO_SUBACK, 5, 0x8F, 0},
    {PROTO_SUBACK, 5, 0xA2, 0},
    {PROTO_SUBACK, 5, 0x03, PROTO_EPROTOCOL},
    {PROTO_UNSUBACK, 5, 0x11, 0},
    {PROTO_UNSUBACK, 5, 0x01, PROTO_EPROTOCOL},
    {PROTO_DISCONNECT, 5, 0x04, 0},
    {PROTO_DISCONNECT, 5, 0x8E, 0},
    {PROTO_DISCONNECT, 5, 0x84, PROTO_EPROTOCOL},
    {PROTO_AUTH, 5, 0x18, 0},
    {PROTO_AUTH, 5, 0x80, PROTO_EPROTOCOL},
    {PROTO_PUBLISH, 5, 0x00, PROTO_EPROTOCOL},
};

TABLE_PARAMS(validate, reason, reason_cases)

ParameterizedTest(size_t *i, validate, reason)
{
    const struct reason_case *c = &reason_cases[*i];
    cr_assert_eq(proto__reason_check(c->type, c->version, c->reason), c->want,
                 "type %u v%u reason 0x%02X", c->type, c->version, c->reason);
}
