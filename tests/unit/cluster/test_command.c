/* Tests for cluster/command.c: round trips of every command type and field,
 * framing and padding, truncated, malformed and oversized input. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

#include "../check_leaks.h"

#define S(lit) ((struct proto_str){(const uint8_t *)(lit), sizeof(lit) - 1})

static const uint8_t all_types[] = {
    CLUSTER_SESSION_CLAIM, CLUSTER_SESSION_RELEASE, CLUSTER_SESSION_EXPIRE,
    CLUSTER_SUB_ADD,       CLUSTER_SUB_DEL,         CLUSTER_RETAIN_SET,
    CLUSTER_RETAIN_DEL,    CLUSTER_NODE_JOIN,       CLUSTER_NODE_LEAVE,
    CLUSTER_USER_SET,      CLUSTER_USER_DEL,        CLUSTER_ACL_ADD,
    CLUSTER_ACL_DEL,
    CLUSTER_MSG_PUT,       CLUSTER_QUEUE_ACK,       CLUSTER_QUEUE_SENT,
    CLUSTER_QUEUE_PUBREC,  CLUSTER_INBOUND_ADD,     CLUSTER_INBOUND_DEL,
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* A command with every field set to a distinct, non-default value. */
static struct cluster_cmd full_cmd(uint8_t type)
{
    struct cluster_cmd c = {
        .type = type,
        .client_id = S("client-\0id"),
        .node = 0x01020304u,
        .generation = 0x1122334455667788ull,
        .clean_start = true,
        .expiry = 3600,
        .expire_at_ms = 1700000000123ull,
        .has_will = true,
        .will = {.topic = S("will/topic"), .payload = S("bye\0bye"), .props = S("\x03\x00\x01x"),
                 .qos = 2, .retain = true, .delay = 30},
        .filter = S("$share/g/a/+/#"),
        .qos = 1,
        .no_local = true,
        .retain_as_published = true,
        .retain_handling = 2,
        .sub_id = 268435455u,
        .topic = S("a/b/c"),
        .payload = S("payload bytes"),
        .props = S("\x01\x01"),
        .msg_expire_at_ms = 1800000000456ull,
        .has_user = true,
        .owned = true,
        .user = S("us\0er"),
        .acl_kind = CLUSTER_ACL_PATTERN,
        .access = 3,
    };
    return c;
}

static void assert_str_eq(struct proto_str got, struct proto_str want, const char *what)
{
    cr_assert_eq(got.len, want.len, "%s: length %u, want %u", what, got.len, want.len);
    if (want.len)
        cr_assert(memcmp(got.p, want.p, want.len) == 0, "%s: bytes differ", what);
}

static void assert_cmd_eq(const struct cluster_cmd *got, const struct cluster_cmd *want)
{
    cr_assert_eq(got->type, want->type);
    assert_str_eq(got->client_id, want->client_id, "client_id");
    cr_assert_eq(got->node, want->node);
    cr_assert_eq(got->generation, want->generation);
    cr_assert_eq(got->clean_start, want->clean_start);
    cr_assert_eq(got->expiry, want->expiry);
    cr_assert_eq(got->expire_at_ms, want->expire_at_ms);
    cr_assert_eq(got->has_will, want->has_will);
    assert_str_eq(got->will.topic, want->will.topic, "will.topic");
    assert_str_eq(got->will.payload, want->will.payload, "will.payload");
    assert_str_eq(got->will.props, want->will.props, "will.props");
    cr_assert_eq(got->will.qos, want->will.qos);
    cr_assert_eq(got->will.retain, want->will.retain);
    cr_assert_eq(got->will.delay, want->will.delay);
    assert_str_eq(got->filter, want->filter, "filter");
    cr_assert_eq(got->qos, want->qos);
    cr_assert_eq(got->no_local, want->no_local);
    cr_assert_eq(got->retain_as_published, want->retain_as_published);
    cr_assert_eq(got->retain_handling, want->retain_handling);
    cr_assert_eq(got->sub_id, want->sub_id);
    assert_str_eq(got->topic, want->topic, "topic");
    assert_str_eq(got->payload, want->payload, "payload");
    assert_str_eq(got->props, want->props, "props");
    cr_assert_eq(got->msg_expire_at_ms, want->msg_expire_at_ms);
    cr_assert_eq(got->has_user, want->has_user);
    cr_assert_eq(got->owned, want->owned);
    assert_str_eq(got->user, want->has_user ? want->user : (struct proto_str){NULL, 0}, "user");
    cr_assert_eq(got->acl_kind, want->acl_kind);
    cr_assert_eq(got->access, want->access);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Encodes cmd alone and checks the frame: size field, padding, alignment. */
static struct buf encode_one(const struct cluster_cmd *cmd)
{
    struct buf w = {0};
    cr_assert_eq(cluster_cmd_encode(cmd, &w), 0);
    cr_assert_geq(w.len, 8);
    cr_assert_eq(w.len % 8, 0, "encoded length %zu is not a multiple of 8", w.len);
    cr_assert_eq(rd32(w.data), w.len, "size field %u, encoded %zu", rd32(w.data), w.len);
    cr_assert_eq(w.data[4], CLUSTER_CMD_VERSION);
    cr_assert_eq(w.data[5], cmd->type);
    return w;
}

/* Decodes the single command in buf, which must fill it exactly. Views in the
 * result must point inside buf. */
static struct cluster_cmd decode_one(const uint8_t *buf, size_t len)
{
    struct cluster_cmd got;
    size_t pos = 0;
    cr_assert_eq(cluster_cmd_decode(buf, len, &pos, &got), 0);
    cr_assert_eq(pos, len);
    const struct proto_str *views[] = {&got.client_id, &got.will.topic, &got.will.payload,
                                       &got.will.props, &got.filter,    &got.topic,
                                       &got.payload,    &got.props};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        if (views[i]->len)
            cr_assert(views[i]->p >= buf && views[i]->p + views[i]->len <= buf + len,
                      "view %zu points outside the entry", i);
    return got;
}

static void round_trip(const struct cluster_cmd *cmd)
{
    struct buf w = encode_one(cmd);
    struct cluster_cmd got = decode_one(w.data, w.len);
    assert_cmd_eq(&got, cmd);
    free(w.data);
}

TestSuite(cluster_command);

Test(cluster_command, round_trip_every_type_all_fields)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        struct cluster_cmd c = full_cmd(all_types[i]);
        round_trip(&c);
    }
    check_leaks();
}

Test(cluster_command, round_trip_empty_strings)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        struct cluster_cmd c = full_cmd(all_types[i]);
        struct proto_str empty_null = {NULL, 0}, empty = {(const uint8_t *)"x", 0};
        c.client_id = c.will.topic = c.filter = c.payload = empty_null;
        c.will.payload = c.will.props = c.topic = c.props = empty;
        round_trip(&c);
    }
    check_leaks();
}

Test(cluster_command, round_trip_all_zero)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        struct cluster_cmd c = {.type = all_types[i]};
        struct buf w = encode_one(&c);
        /* the smallest command: header, fixed fields, 8 empty strings, the
         * user extension, the durable-session extension */
        cr_assert_eq(w.len, 112);
        struct cluster_cmd got = decode_one(w.data, w.len);
        assert_cmd_eq(&got, &c);
        free(w.data);
    }
    check_leaks();
}

Test(cluster_command, round_trip_max_integers)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        struct cluster_cmd c = full_cmd(all_types[i]);
        c.node = c.expiry = c.will.delay = c.sub_id = UINT32_MAX;
        c.generation = c.expire_at_ms = c.msg_expire_at_ms = UINT64_MAX;
        c.qos = c.will.qos = c.retain_handling = 3;
        round_trip(&c);
    }
    check_leaks();
}

Test(cluster_command, round_trip_large_strings)
{
    /* one string of each field large, with a pattern that catches shifted copies */
    const uint32_t big = 1u << 20;
    uint8_t *blob = malloc((size_t)big + 7);
    cr_assert_not_null(blob);
    for (uint32_t i = 0; i < big + 7; i++)
        blob[i] = (uint8_t)(i * 131u + (i >> 8));
    for (int field = 0; field < 8; field++) {
        struct cluster_cmd c = full_cmd(CLUSTER_RETAIN_SET);
        struct proto_str s = {blob + field, big - (uint32_t)field};
        struct proto_str *f[] = {&c.client_id, &c.will.topic, &c.will.payload, &c.will.props,
                                 &c.filter,    &c.topic,      &c.payload,      &c.props};
        *f[field] = s;
        round_trip(&c);
    }
    /* all large at once */
    struct cluster_cmd c = full_cmd(CLUSTER_SESSION_CLAIM);
    c.client_id = c.will.topic = c.will.payload = c.will.props = c.filter = c.topic = c.payload =
        c.props = (struct proto_str){blob, big / 8 + 3};
    round_trip(&c);
    free(blob);
    check_leaks();
}

Test(cluster_command, round_trip_all_flag_and_qos_combinations)
{
    for (unsigned flags = 0; flags < 32; flags++) {
        for (unsigned q = 0; q < 64; q++) {
            struct cluster_cmd c = full_cmd(CLUSTER_SUB_ADD);
            c.clean_start = flags & 1;
            c.has_will = flags & 2;
            c.will.retain = flags & 4;
            c.no_local = flags & 8;
            c.retain_as_published = flags & 16;
            c.qos = q & 3;
            c.retain_handling = (q >> 2) & 3;
            c.will.qos = (q >> 4) & 3;
            round_trip(&c);
        }
    }
    check_leaks();
}

Test(cluster_command, padding_and_alignment)
{
    /* every residue of the string lengths modulo 8, appended to one buffer: each
     * command starts at a multiple of 8 and its padding is zero */
    static const uint8_t text[64] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.";
    struct buf w = {0};
    size_t starts[64];
    struct cluster_cmd cmds[64];
    for (int i = 0; i < 64; i++) {
        cmds[i] = full_cmd(all_types[i % N_TYPES]);
        cmds[i].client_id = (struct proto_str){text, (uint32_t)i % 17};
        cmds[i].payload = (struct proto_str){text, (uint32_t)(i * 7) % 23};
        cmds[i].has_user = cmds[i].owned = false; /* the extension then is 5 zero bytes */
        cmds[i].acl_kind = cmds[i].access = 0;
        starts[i] = w.len;
        cr_assert_eq(starts[i] % 8, 0, "command %d starts at %zu", i, starts[i]);
        cr_assert_eq(cluster_cmd_encode(&cmds[i], &w), 0);
        size_t size = w.len - starts[i];
        cr_assert_eq(size % 8, 0);
        cr_assert_eq(rd32(w.data + starts[i]), size);
        /* the content ends at most 7 bytes before the frame; past it only zeros */
        size_t content = 77 + 8 * 4 + cmds[i].client_id.len + cmds[i].payload.len +
                         cmds[i].will.topic.len + cmds[i].will.payload.len +
                         cmds[i].will.props.len + cmds[i].filter.len + cmds[i].topic.len +
                         cmds[i].props.len;
        cr_assert_eq(size, (content + 7) & ~(size_t)7);
        for (size_t b = content - 5; b < size; b++)
            cr_assert_eq(w.data[starts[i] + b], 0, "command %d byte %zu not zero", i, b);
    }
    free(w.data);
    check_leaks();
}

Test(cluster_command, several_commands_in_one_buffer_decode_in_order)
{
    struct buf w = {0};
    struct cluster_cmd cmds[3 * N_TYPES];
    char ids[3 * N_TYPES][16];
    for (size_t i = 0; i < 3 * N_TYPES; i++) {
        cmds[i] = full_cmd(all_types[(i * 4) % N_TYPES]);
        int n = snprintf(ids[i], sizeof ids[i], "client-%zu", i);
        cmds[i].client_id = (struct proto_str){(const uint8_t *)ids[i], (uint32_t)n};
        cmds[i].generation = i;
        cmds[i].payload.len = (uint32_t)(i % 13);
        cr_assert_eq(cluster_cmd_encode(&cmds[i], &w), 0);
    }
    size_t pos = 0;
    for (size_t i = 0; i < 3 * N_TYPES; i++) {
        struct cluster_cmd got;
        size_t before = pos;
        cr_assert_eq(cluster_cmd_decode(w.data, w.len, &pos, &got), 0, "command %zu", i);
        cr_assert_gt(pos, before);
        cr_assert_eq(pos % 8, 0);
        assert_cmd_eq(&got, &cmds[i]);
    }
    cr_assert_eq(pos, w.len);
    /* nothing left: the end of the entry is not a command */
    struct cluster_cmd got;
    cr_assert_eq(cluster_cmd_decode(w.data, w.len, &pos, &got), CLUSTER_ECORRUPT);
    cr_assert_eq(pos, w.len);
    free(w.data);
    check_leaks();
}

Test(cluster_command, encode_appends_without_touching_earlier_bytes)
{
    struct buf w = {0};
    struct cluster_cmd a = full_cmd(CLUSTER_SUB_ADD), b = full_cmd(CLUSTER_SUB_DEL);
    cr_assert_eq(cluster_cmd_encode(&a, &w), 0);
    size_t first = w.len;
    uint8_t *copy = malloc(first);
    memcpy(copy, w.data, first);
    cr_assert_eq(cluster_cmd_encode(&b, &w), 0);
    cr_assert(memcmp(copy, w.data, first) == 0);
    free(copy);
    free(w.data);
    check_leaks();
}

Test(cluster_command, encode_refuses_oversized_command)
{
    /* the size check comes before any byte is read, so a short buffer is safe */
    static const uint8_t small[1];
    struct buf w = {0};
    struct cluster_cmd c = full_cmd(CLUSTER_RETAIN_SET);
    c.payload = (struct proto_str){small, UINT32_MAX};
    cr_assert_eq(cluster_cmd_encode(&c, &w), -E2BIG);
    cr_assert_eq(w.len, 0);
    /* 8 strings of 2^31 each: the size sum must not wrap */
    c.client_id = c.will.topic = c.will.payload = c.will.props = c.filter = c.topic = c.payload =
        c.props = (struct proto_str){small, 1u << 31};
    cr_assert_eq(cluster_cmd_encode(&c, &w), -E2BIG);
    cr_assert_eq(w.len, 0);
    free(w.data);
    check_leaks();
}

Test(cluster_command, encode_refuses_unknown_type)
{
    /* a command the decoder would reject must never reach the log */
    static const uint8_t bad[] = {0, CLUSTER_NODE_LEAVE + 1, 0x7F, 0xFF};
    for (size_t i = 0; i < sizeof bad; i++) {
        struct buf w = {0};
        struct cluster_cmd c = full_cmd(bad[i]);
        cr_assert_eq(cluster_cmd_encode(&c, &w), -EINVAL, "type %u", bad[i]);
        cr_assert_eq(w.len, 0);
        free(w.data);
    }
    check_leaks();
}

/* A sentinel pattern that a failed decode must leave in place. */
static void fill_sentinel(struct cluster_cmd *c) { memset(c, 0xA5, sizeof(*c)); }

static void assert_sentinel(const struct cluster_cmd *c)
{
    struct cluster_cmd s;
    fill_sentinel(&s);
    cr_assert(memcmp(c, &s, sizeof s) == 0, "a failed decode wrote to its output");
}

static void assert_corrupt(const uint8_t *buf, size_t len, size_t start)
{
    struct cluster_cmd got;
    fill_sentinel(&got);
    size_t pos = start;
    cr_assert_eq(cluster_cmd_decode(buf, len, &pos, &got), CLUSTER_ECORRUPT);
    cr_assert_eq(pos, start, "a failed decode moved pos");
    assert_sentinel(&got);
}

Test(cluster_command, truncated_at_every_offset)
{
    /* each prefix is copied into a heap block of exactly its size, so a read past
     * the end is caught by AddressSanitizer */
    struct cluster_cmd variants[] = {full_cmd(CLUSTER_SESSION_CLAIM), {.type = CLUSTER_NODE_JOIN},
                                     full_cmd(CLUSTER_RETAIN_SET)};
    variants[2].payload = (struct proto_str){(const uint8_t *)"0123456789", 10};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        struct buf w = encode_one(&variants[v]);
        for (size_t k = 0; k < w.len; k++) {
            uint8_t *cut = malloc(k ? k : 1);
            cr_assert_not_null(cut);
            memcpy(cut, w.data, k);
            assert_corrupt(cut, k, 0);
            free(cut);
        }
        free(w.data);
    }
    check_leaks();
}

Test(cluster_command, truncated_second_command_after_a_good_one)
{
    struct buf w = {0};
    struct cluster_cmd a = full_cmd(CLUSTER_SUB_ADD), b = full_cmd(CLUSTER_SUB_DEL);
    cr_assert_eq(cluster_cmd_encode(&a, &w), 0);
    size_t first = w.len;
    cr_assert_eq(cluster_cmd_encode(&b, &w), 0);
    for (size_t k = first; k < w.len; k++) {
        uint8_t *cut = malloc(k);
        memcpy(cut, w.data, k);
        struct cluster_cmd got;
        size_t pos = 0;
        cr_assert_eq(cluster_cmd_decode(cut, k, &pos, &got), 0);
        cr_assert_eq(pos, first);
        assert_corrupt(cut, k, first);
        free(cut);
    }
    free(w.data);
    check_leaks();
}

Test(cluster_command, pos_at_or_past_end)
{
    struct cluster_cmd c = full_cmd(CLUSTER_SUB_ADD);
    struct buf w = encode_one(&c);
    assert_corrupt(w.data, w.len, w.len);
    assert_corrupt(w.data, w.len, w.len + 1);
    assert_corrupt(w.data, w.len, SIZE_MAX);
    assert_corrupt(NULL, 0, 0);
    free(w.data);
    check_leaks();
}

/* Header mutations of a valid, 8-byte padded command (whose length is L). */
enum size_rel { ABS, REL_LEN };
struct hdr_case {
    const char *name;
    enum size_rel rel; /* size field = value, or L + value */
    int64_t size;
    int version;       /* -1 keeps it */
    int type;          /* -1 keeps it */
    int want;
};

static const struct hdr_case hdr_cases[] = {
    {"valid", REL_LEN, 0, -1, -1, 0},
    {"size 0", ABS, 0, -1, -1, CLUSTER_ECORRUPT},
    {"size 4", ABS, 4, -1, -1, CLUSTER_ECORRUPT},
    {"size 7", ABS, 7, -1, -1, CLUSTER_ECORRUPT},
    {"size 8: header only", ABS, 8, -1, -1, CLUSTER_ECORRUPT},
    {"size 16", ABS, 16, -1, -1, CLUSTER_ECORRUPT},
    {"size L-1", REL_LEN, -1, -1, -1, CLUSTER_ECORRUPT},
    {"size L-4", REL_LEN, -4, -1, -1, CLUSTER_ECORRUPT},
    {"size L-32: fields overrun the frame", REL_LEN, -32, -1, -1, CLUSTER_ECORRUPT},
    {"size L+1", REL_LEN, 1, -1, -1, CLUSTER_ECORRUPT},
    {"size L+4", REL_LEN, 4, -1, -1, CLUSTER_ECORRUPT},
    {"size L+8: beyond the buffer", REL_LEN, 8, -1, -1, CLUSTER_ECORRUPT},
    {"size 0xFFFFFFF8", ABS, 0xFFFFFFF8, -1, -1, CLUSTER_ECORRUPT},
    {"size 0xFFFFFFFF", ABS, 0xFFFFFFFF, -1, -1, CLUSTER_ECORRUPT},
    {"version 0", REL_LEN, 0, 0, -1, CLUSTER_ECORRUPT},
    {"type 0", REL_LEN, 0, -1, 0, CLUSTER_ECORRUPT},
    {"type 10", REL_LEN, 0, -1, CLUSTER_NODE_LEAVE + 1, CLUSTER_ECORRUPT},
    {"type 255", REL_LEN, 0, -1, 255, CLUSTER_ECORRUPT},
    {"type 1", REL_LEN, 0, -1, CLUSTER_SESSION_CLAIM, 0},
    {"type 9", REL_LEN, 0, -1, CLUSTER_NODE_LEAVE, 0},
    {"type 19", REL_LEN, 0, -1, CLUSTER_USER_SET - 1, CLUSTER_ECORRUPT},
    {"type 20", REL_LEN, 0, -1, CLUSTER_USER_SET, 0},
    {"type 23", REL_LEN, 0, -1, CLUSTER_ACL_DEL, 0},
    {"type 24", REL_LEN, 0, -1, CLUSTER_ACL_DEL + 1, CLUSTER_ECORRUPT},
};

ParameterizedTestParameters(cluster_command, header)
{
    static size_t idx[sizeof hdr_cases / sizeof hdr_cases[0]];
    for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++)
        idx[i] = i;
    return cr_make_param_array(size_t, idx, sizeof idx / sizeof idx[0]);
}

ParameterizedTest(size_t *i, cluster_command, header)
{
    const struct hdr_case *tc = &hdr_cases[*i];
    struct cluster_cmd c = full_cmd(CLUSTER_SUB_ADD);
    struct buf w = encode_one(&c);
    uint32_t size = tc->rel == ABS ? (uint32_t)tc->size : (uint32_t)((int64_t)w.len + tc->size);
    wr32(w.data, size);
    if (tc->version >= 0)
        w.data[4] = (uint8_t)tc->version;
    if (tc->type >= 0)
        w.data[5] = (uint8_t)tc->type;
    /* exact-size copy: no slack for an overread to hide in */
    uint8_t *buf = malloc(w.len);
    memcpy(buf, w.data, w.len);
    struct cluster_cmd got;
    fill_sentinel(&got);
    size_t pos = 0;
    int rc = cluster_cmd_decode(buf, w.len, &pos, &got);
    cr_assert_eq(rc, tc->want, "%s: got %d, want %d", tc->name, rc, tc->want);
    if (tc->want == 0) {
        cr_assert_eq(pos, w.len, "%s", tc->name);
        cr_assert_eq(got.type, tc->type >= 0 ? tc->type : c.type, "%s", tc->name);
    } else {
        cr_assert_eq(pos, 0, "%s", tc->name);
        assert_sentinel(&got);
    }
    free(buf);
    free(w.data);
    check_leaks();
}

Test(cluster_command, newer_version_with_trailing_fields_is_skipped)
{
    /* the frame comment promises that an older decoder skips fields added later */
    struct cluster_cmd a = full_cmd(CLUSTER_RETAIN_SET), b = full_cmd(CLUSTER_RETAIN_DEL);
    struct buf w = encode_one(&a);
    size_t first = w.len + 16;
    uint8_t *buf = calloc(1, first);
    memcpy(buf, w.data, w.len);
    wr32(buf, (uint32_t)first);
    buf[4] = CLUSTER_CMD_VERSION + 1;
    memset(buf + w.len, 0xEE, 16);
    struct buf rest = encode_one(&b);
    buf = realloc(buf, first + rest.len);
    memcpy(buf + first, rest.data, rest.len);

    struct cluster_cmd got;
    size_t pos = 0;
    cr_assert_eq(cluster_cmd_decode(buf, first + rest.len, &pos, &got), 0);
    cr_assert_eq(pos, first);
    assert_cmd_eq(&got, &a);
    cr_assert_eq(cluster_cmd_decode(buf, first + rest.len, &pos, &got), 0);
    assert_cmd_eq(&got, &b);
    cr_assert_eq(pos, first + rest.len);
    free(buf);
    free(rest.data);
    free(w.data);
    check_leaks();
}

Test(cluster_command, string_length_past_the_frame)
{
    /* a string length that runs past the frame but not past the buffer: the
     * frame bounds the reader, not the buffer */
    struct cluster_cmd a = {.type = CLUSTER_SUB_ADD}, b = full_cmd(CLUSTER_SUB_ADD);
    struct buf w = {0};
    cr_assert_eq(cluster_cmd_encode(&a, &w), 0);
    size_t first = w.len;
    cr_assert_eq(cluster_cmd_encode(&b, &w), 0);
    /* client_id length lives right after the header */
    for (uint32_t n = (uint32_t)(first - 12 + 1); n < first + 40; n++) {
        wr32(w.data + 8, n);
        assert_corrupt(w.data, w.len, 0);
    }
    wr32(w.data + 8, UINT32_MAX);
    assert_corrupt(w.data, w.len, 0);
    free(w.data);
    check_leaks();
}

Test(cluster_command, every_string_length_corrupted)
{
    /* each length prefix set to one byte more than remains in the frame */
    struct cluster_cmd c = {.type = CLUSTER_RETAIN_SET};
    struct buf w = encode_one(&c);
    /* offsets of the 8 string lengths in an all-empty command */
    static const size_t offs[] = {8, 36, 40, 44, 52, 60, 64, 68};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        uint8_t *buf = malloc(w.len);
        memcpy(buf, w.data, w.len);
        cr_assert_eq(rd32(buf + offs[i]), 0, "offset %zu is not a string length", offs[i]);
        wr32(buf + offs[i], (uint32_t)(w.len - offs[i] - 4 + 1));
        assert_corrupt(buf, w.len, 0);
        wr32(buf + offs[i], 0x80000000u);
        assert_corrupt(buf, w.len, 0);
        free(buf);
    }
    free(w.data);
    check_leaks();
}

Test(cluster_command, random_corruption_never_reads_out_of_bounds)
{
    /* deterministic xorshift: flip bytes of a valid two-command entry and decode
     * until the end; success must yield views inside the buffer */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    struct buf w = {0};
    struct cluster_cmd a = full_cmd(CLUSTER_SESSION_CLAIM), b = full_cmd(CLUSTER_SUB_ADD);
    cr_assert_eq(cluster_cmd_encode(&a, &w), 0);
    cr_assert_eq(cluster_cmd_encode(&b, &w), 0);
    uint8_t *buf = malloc(w.len);
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, w.data, w.len);
        for (int flips = 0; flips < 1 + round % 4; flips++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t at = (size_t)(x % w.len);
            /* bias toward the framing and length fields */
            if (x & 0x100)
                at = (size_t)((x >> 20) % 12) + ((x & 0x200) ? 0 : 8);
            buf[at] ^= (uint8_t)(x >> 40) | 1;
        }
        size_t pos = 0;
        struct cluster_cmd got;
        while (cluster_cmd_decode(buf, w.len, &pos, &got) == 0) {
            cr_assert_leq(pos, w.len);
            cr_assert_geq(got.type, CLUSTER_SESSION_CLAIM);
            cr_assert(got.type <= CLUSTER_NODE_LEAVE || (got.type >= CLUSTER_USER_SET && got.type <= CLUSTER_ACL_DEL) ||
                      (got.type >= CLUSTER_MSG_PUT && got.type <= CLUSTER_INBOUND_DEL));
            const struct proto_str *views[] = {&got.client_id, &got.will.topic,
                                               &got.will.payload, &got.will.props,
                                               &got.filter, &got.topic, &got.payload, &got.props};
            for (size_t i = 0; i < 8; i++)
                cr_assert(views[i]->len == 0 ||
                          (views[i]->p >= buf && views[i]->p + views[i]->len <= buf + pos));
        }
    }
    free(buf);
    free(w.data);
    check_leaks();
}

/* The session claim's user: absent in commands written before it (u8 0, u32
 * 0 in the reserved bytes), read as no user, not owned; each flag alone. */
Test(cluster_command, claim_user_and_owner)
{
    struct cluster_cmd c = full_cmd(CLUSTER_SESSION_CLAIM);
    c.acl_kind = c.access = 0;
    c.has_user = false;
    c.owned = true; /* anonymous, owned */
    round_trip(&c);
    c.has_user = true;
    c.owned = false;
    round_trip(&c);
    c.user = (struct proto_str){(const uint8_t *)"", 0};
    round_trip(&c);

    /* an old command: the extension bytes are zero */
    struct cluster_cmd old = full_cmd(CLUSTER_SESSION_CLAIM);
    old.has_user = old.owned = false;
    old.acl_kind = old.access = 0;
    struct buf w = encode_one(&old);
    struct cluster_cmd got = decode_one(w.data, w.len);
    cr_assert_not(got.has_user);
    cr_assert_not(got.owned);
    cr_assert_eq(got.user.len, 0);
    free(w.data);

    /* unknown extension flags, or a user without has_user: corrupt */
    c.user = (struct proto_str){(const uint8_t *)"Z", 1};
    c.has_user = true;
    w = encode_one(&c);
    size_t z = w.len;
    while (w.data[z - 1] != 'Z')
        z--;
    size_t flags_at = z - 1 - 5; /* u8 flags, u32 length, the user */
    cr_assert_eq(w.data[flags_at], 0x01);
    size_t pos = 0;
    struct cluster_cmd out;
    w.data[flags_at] = 0x40;
    cr_assert_eq(cluster_cmd_decode(w.data, w.len, &pos, &out), CLUSTER_ECORRUPT);
    w.data[flags_at] = 0x02; /* owned, a user present but has_user not set */
    cr_assert_eq(cluster_cmd_decode(w.data, w.len, &pos, &out), CLUSTER_ECORRUPT);
    free(w.data);
}

/* Users and rules: the ACL kind and the access ride in the extension's flags
 * (bits 2-3, 4-5); values beyond them are refused by the encoder. */
Test(cluster_command, user_and_rule_fields)
{
    for (uint8_t kind = 0; kind <= CLUSTER_ACL_PATTERN; kind++)
        for (uint8_t access = 0; access <= 3; access++) {
            struct cluster_cmd c = {.type = CLUSTER_ACL_ADD, .acl_kind = kind, .access = access,
                                    .has_user = kind == CLUSTER_ACL_USER, .topic = S("a/#")};
            if (c.has_user)
                c.user = S("alice");
            round_trip(&c);
        }
    struct cluster_cmd u = {.type = CLUSTER_USER_SET, .has_user = true, .user = S("bob"),
                            .topic = S("$7$1000$c2FsdA==$aGFzaA=="), .payload = S("\x00\x10\x00\x00")};
    round_trip(&u);
    struct buf w = {0};
    struct cluster_cmd bad = {.type = CLUSTER_ACL_ADD, .access = 4, .topic = S("a")};
    cr_assert_eq(cluster_cmd_encode(&bad, &w), -EINVAL);
    bad.access = 0;
    bad.acl_kind = 4;
    cr_assert_eq(cluster_cmd_encode(&bad, &w), -EINVAL);
    cr_assert_eq(w.len, 0);
    free(w.data);
    check_leaks();
}
