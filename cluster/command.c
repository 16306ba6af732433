/* cluster command codec: the binary, versioned form of a command in a log entry.
 *
 * One command on the wire (little-endian):
 *   u32 size (whole command including this field and the padding, a multiple of 8)
 *   u8 version, u8 type, u8 flags, u8 qos/retain-handling (2+2+... bits, below)
 *   then the fields of struct cluster_cmd in a fixed order (strings as u32 length
 *   + bytes), then zero padding to the next multiple of 8.
 * Every field is written for every type: a decoder of a newer version can add
 * fields after these, and an older one skips them thanks to `size`. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

#define FLAG_CLEAN_START 0x01
#define FLAG_HAS_WILL 0x02
#define FLAG_WILL_RETAIN 0x04
#define FLAG_NO_LOCAL 0x08
#define FLAG_RAP 0x10

/* Largest command accepted by the decoder (a retained payload plus headers). */
#define CLUSTER_MAX_CMD (PROTO_MAX_REMAINING_LENGTH + 4096u)

static int reserve(struct buf *out, size_t n)
{
    if (out->cap - out->len >= n)
        return 0;
    size_t cap = out->cap ? out->cap : 256;
    while (cap - out->len < n)
        cap *= 2;
    uint8_t *p = realloc(out->data, cap);
    if (!p)
        return -ENOMEM;
    out->data = p;
    out->cap = cap;
    return 0;
}

static void put(struct buf *out, const void *p, size_t n)
{
    if (n)
        memcpy(out->data + out->len, p, n);
    out->len += n;
}

static void put_u8(struct buf *out, uint8_t v) { put(out, &v, 1); }

static void put_u32(struct buf *out, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(out, b, 4);
}

static void put_u64(struct buf *out, uint64_t v)
{
    put_u32(out, (uint32_t)v);
    put_u32(out, (uint32_t)(v >> 32));
}

static void put_str(struct buf *out, struct proto_str s)
{
    put_u32(out, s.len);
    put(out, s.p, s.len);
}

int cluster_cmd_encode(const struct cluster_cmd *cmd, struct buf *out)
{
    /* the decoder rejects unknown types, so they must never reach the log */
    if (cmd->type < CLUSTER_SESSION_CLAIM || cmd->type > CLUSTER_NODE_LEAVE)
        return -EINVAL;
    const struct proto_str strs[] = {cmd->client_id, cmd->will.topic, cmd->will.payload,
                                     cmd->will.props, cmd->filter, cmd->topic,
                                     cmd->payload, cmd->props};
    size_t size = 8 + 4 + 8 + 4 + 8 + 4 + 4 + 8 + 1 + 4;
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        size += 4 + (size_t)strs[i].len;
    size_t padded = (size + 7) & ~(size_t)7;
    if (padded > CLUSTER_MAX_CMD)
        return -E2BIG;
    int rc = reserve(out, padded);
    if (rc)
        return rc;
    size_t start = out->len;
    uint8_t flags = (cmd->clean_start ? FLAG_CLEAN_START : 0) | (cmd->has_will ? FLAG_HAS_WILL : 0) |
                    (cmd->will.retain ? FLAG_WILL_RETAIN : 0) | (cmd->no_local ? FLAG_NO_LOCAL : 0) |
                    (cmd->retain_as_published ? FLAG_RAP : 0);
    put_u32(out, (uint32_t)padded);
    put_u8(out, CLUSTER_CMD_VERSION);
    put_u8(out, cmd->type);
    put_u8(out, flags);
    put_u8(out, (uint8_t)((cmd->qos & 3) | ((cmd->retain_handling & 3) << 2) | ((cmd->will.qos & 3) << 4)));
    put_str(out, cmd->client_id);
    put_u32(out, cmd->node);
    put_u64(out, cmd->generation);
    put_u32(out, cmd->expiry);
    put_u64(out, cmd->expire_at_ms);
    put_str(out, cmd->will.topic);
    put_str(out, cmd->will.payload);
    put_str(out, cmd->will.props);
    put_u32(out, cmd->will.delay);
    put_str(out, cmd->filter);
    put_u32(out, cmd->sub_id);
    put_str(out, cmd->topic);
    put_str(out, cmd->payload);
    put_str(out, cmd->props);
    put_u64(out, cmd->msg_expire_at_ms);
    put_u8(out, 0); /* reserved for later fields */
    put_u32(out, 0);
    while (out->len - start < padded)
        put_u8(out, 0);
    return 0;
}

struct reader {
    const uint8_t *buf;
    size_t len, pos;
};

static int get(struct reader *r, void *dst, size_t n)
{
    if (n > r->len - r->pos)
        return CLUSTER_ECORRUPT;
    memcpy(dst, r->buf + r->pos, n);
    r->pos += n;
    return 0;
}

static int get_u32(struct reader *r, uint32_t *v)
{
    uint8_t b[4];
    if (get(r, b, 4))
        return CLUSTER_ECORRUPT;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static int get_u64(struct reader *r, uint64_t *v)
{
    uint32_t lo, hi;
    if (get_u32(r, &lo) || get_u32(r, &hi))
        return CLUSTER_ECORRUPT;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

static int get_str(struct reader *r, struct proto_str *s)
{
    uint32_t n;
    if (get_u32(r, &n) || n > r->len - r->pos)
        return CLUSTER_ECORRUPT;
    s->p = r->buf + r->pos;
    s->len = n;
    r->pos += n;
    return 0;
}

int cluster_cmd_decode(const uint8_t *buf, size_t len, size_t *pos, struct cluster_cmd *out)
{
    if (*pos > len || len - *pos < 8)
        return CLUSTER_ECORRUPT;
    struct reader hdr = {buf + *pos, len - *pos, 0};
    uint32_t size;
    uint8_t head[4];
    if (get_u32(&hdr, &size) || get(&hdr, head, 4))
        return CLUSTER_ECORRUPT;
    if (size < 8 || size % 8 != 0 || size > len - *pos || head[0] == 0)
        return CLUSTER_ECORRUPT;
    struct reader r = {buf + *pos, size, 8};
    struct cluster_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = head[1];
    c.clean_start = head[2] & FLAG_CLEAN_START;
    c.has_will = head[2] & FLAG_HAS_WILL;
    c.will.retain = head[2] & FLAG_WILL_RETAIN;
    c.no_local = head[2] & FLAG_NO_LOCAL;
    c.retain_as_published = head[2] & FLAG_RAP;
    c.qos = head[3] & 3;
    c.retain_handling = (head[3] >> 2) & 3;
    c.will.qos = (head[3] >> 4) & 3;
    if (get_str(&r, &c.client_id) || get_u32(&r, &c.node) || get_u64(&r, &c.generation) ||
        get_u32(&r, &c.expiry) || get_u64(&r, &c.expire_at_ms) || get_str(&r, &c.will.topic) ||
        get_str(&r, &c.will.payload) || get_str(&r, &c.will.props) || get_u32(&r, &c.will.delay) ||
        get_str(&r, &c.filter) || get_u32(&r, &c.sub_id) || get_str(&r, &c.topic) ||
        get_str(&r, &c.payload) || get_str(&r, &c.props) || get_u64(&r, &c.msg_expire_at_ms))
        return CLUSTER_ECORRUPT;
    if (c.type < CLUSTER_SESSION_CLAIM || c.type > CLUSTER_NODE_LEAVE)
        return CLUSTER_ECORRUPT;
    *out = c;
    *pos += size;
    return 0;
}
