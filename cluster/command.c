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
#define EXT_HAS_USER 0x01
#define EXT_OWNED 0x02
/* users and rules: bits 2-3 the ACL kind, bits 4-5 the access */
#define EXT_KIND_SHIFT 2
#define EXT_ACCESS_SHIFT 4
#define EXT_KNOWN 0x3F
#define DURABLE_RETAIN 0x01
/* the durable-session extension: u8 flags, u8 queue_policy, u16 pid,
 * u32 max_queued, u64 max_queued_bytes, u64 msg_id */
#define DURABLE_EXT 24u

/* Largest command accepted by the decoder (a retained payload plus headers). */
#define CLUSTER_MAX_CMD (PROTO_MAX_REMAINING_LENGTH + 4096u)

/* The types this version writes and reads. */
static bool known_type(uint8_t type)
{
    return (type >= CLUSTER_SESSION_CLAIM && type <= CLUSTER_NODE_LEAVE) ||
           (type >= CLUSTER_USER_SET && type <= CLUSTER_ACL_DEL) ||
           (type >= CLUSTER_MSG_PUT && type <= CLUSTER_INBOUND_DEL);
}

static void put_str(struct buf *out, struct proto_str s)
{
    buf_put_u32le(out, s.len);
    buf_put_mem(out, s.p, s.len);
}

int cluster_cmd_encode(const struct cluster_cmd *cmd, struct buf *out)
{
    /* the decoder rejects unknown types, so they must never reach the log */
    if (!known_type(cmd->type) || cmd->acl_kind > 3 || cmd->access > 3)
        return -EINVAL;
    const struct proto_str strs[] = {cmd->client_id, cmd->will.topic, cmd->will.payload,
                                     cmd->will.props, cmd->filter, cmd->topic,
                                     cmd->payload, cmd->props};
    size_t size = 8 + 4 + 8 + 4 + 8 + 4 + 4 + 8 + 1 + 4 + DURABLE_EXT + (cmd->has_user ? (size_t)cmd->user.len : 0);
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        size += 4 + (size_t)strs[i].len;
    size_t padded = (size + 7) & ~(size_t)7;
    if (padded > CLUSTER_MAX_CMD)
        return -E2BIG;
    int rc = buf_reserve(out, padded);
    if (rc)
        return rc;
    size_t start = out->len;
    uint8_t flags = (cmd->clean_start ? FLAG_CLEAN_START : 0) | (cmd->has_will ? FLAG_HAS_WILL : 0) |
                    (cmd->will.retain ? FLAG_WILL_RETAIN : 0) | (cmd->no_local ? FLAG_NO_LOCAL : 0) |
                    (cmd->retain_as_published ? FLAG_RAP : 0);
    buf_put_u32le(out, (uint32_t)padded);
    buf_put_u8(out, CLUSTER_CMD_VERSION);
    buf_put_u8(out, cmd->type);
    buf_put_u8(out, flags);
    buf_put_u8(out, (uint8_t)((cmd->qos & 3) | ((cmd->retain_handling & 3) << 2) | ((cmd->will.qos & 3) << 4)));
    put_str(out, cmd->client_id);
    buf_put_u32le(out, cmd->node);
    buf_put_u64le(out, cmd->generation);
    buf_put_u32le(out, cmd->expiry);
    buf_put_u64le(out, cmd->expire_at_ms);
    put_str(out, cmd->will.topic);
    put_str(out, cmd->will.payload);
    put_str(out, cmd->will.props);
    buf_put_u32le(out, cmd->will.delay);
    put_str(out, cmd->filter);
    buf_put_u32le(out, cmd->sub_id);
    put_str(out, cmd->topic);
    put_str(out, cmd->payload);
    put_str(out, cmd->props);
    buf_put_u64le(out, cmd->msg_expire_at_ms);
    /* the extension: u8 flags (bit0 has_user, bit1 owned, bits 2-3 the ACL
     * kind, bits 4-5 the access), u32 user length,
     * the user; commands of older versions hold 0, 0 (no user, not owned) */
    buf_put_u8(out, (uint8_t)((cmd->has_user ? EXT_HAS_USER : 0) | (cmd->owned ? EXT_OWNED : 0) |
                              (cmd->acl_kind << EXT_KIND_SHIFT) | (cmd->access << EXT_ACCESS_SHIFT)));
    put_str(out, cmd->has_user ? cmd->user : (struct proto_str){NULL, 0});
    buf_put_u8(out, cmd->retain ? DURABLE_RETAIN : 0);
    buf_put_u8(out, cmd->queue_policy);
    buf_put_u16le(out, cmd->pid);
    buf_put_u32le(out, cmd->max_queued);
    buf_put_u64le(out, cmd->max_queued_bytes);
    buf_put_u64le(out, cmd->msg_id);
    while (out->len - start < padded)
        buf_put_u8(out, 0);
    return 0;
}

static int get_str(struct bytes_reader *r, struct proto_str *s)
{
    uint32_t n;
    const uint8_t *p;
    int rc = bytes_read_u32le(r, &n);
    if (!rc)
        rc = bytes_read_view(r, n, &p);
    if (rc)
        return rc;
    s->p = p;
    s->len = n;
    return 0;
}

int cluster_cmd_decode(const uint8_t *buf, size_t len, size_t *pos, struct cluster_cmd *out)
{
    if (*pos > len || len - *pos < 8)
        return CLUSTER_ECORRUPT;
    struct bytes_reader hdr;
    bytes_reader_init(&hdr, buf + *pos, len - *pos, CLUSTER_ECORRUPT);
    uint32_t size;
    uint8_t head[4];
    if (bytes_read_u32le(&hdr, &size) || bytes_read_mem(&hdr, head, 4))
        return CLUSTER_ECORRUPT;
    if (size < 8 || size % 8 != 0 || size > len - *pos || head[0] == 0)
        return CLUSTER_ECORRUPT;
    struct bytes_reader r; /* the fields after the 8-byte head */
    bytes_reader_init(&r, buf + *pos + 8, size - 8, CLUSTER_ECORRUPT);
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
    if (get_str(&r, &c.client_id) || bytes_read_u32le(&r, &c.node) || bytes_read_u64le(&r, &c.generation) ||
        bytes_read_u32le(&r, &c.expiry) || bytes_read_u64le(&r, &c.expire_at_ms) || get_str(&r, &c.will.topic) ||
        get_str(&r, &c.will.payload) || get_str(&r, &c.will.props) || bytes_read_u32le(&r, &c.will.delay) ||
        get_str(&r, &c.filter) || bytes_read_u32le(&r, &c.sub_id) || get_str(&r, &c.topic) ||
        get_str(&r, &c.payload) || get_str(&r, &c.props) || bytes_read_u64le(&r, &c.msg_expire_at_ms))
        return CLUSTER_ECORRUPT;
    uint8_t ext = 0;
    if (bytes_left(&r) >= 5 && (bytes_read_u8(&r, &ext) || get_str(&r, &c.user) || (ext & ~EXT_KNOWN)))
        return CLUSTER_ECORRUPT;
    c.has_user = ext & EXT_HAS_USER;
    c.owned = ext & EXT_OWNED;
    c.acl_kind = (ext >> EXT_KIND_SHIFT) & 3;
    c.access = (ext >> EXT_ACCESS_SHIFT) & 3;
    if (!c.has_user && c.user.len)
        return CLUSTER_ECORRUPT;
    uint8_t dflags = 0;
    if (bytes_left(&r) >= DURABLE_EXT &&
        (bytes_read_u8(&r, &dflags) || bytes_read_u8(&r, &c.queue_policy) || bytes_read_u16le(&r, &c.pid) ||
         bytes_read_u32le(&r, &c.max_queued) || bytes_read_u64le(&r, &c.max_queued_bytes) ||
         bytes_read_u64le(&r, &c.msg_id) || (dflags & ~DURABLE_RETAIN) || c.queue_policy > 1))
        return CLUSTER_ECORRUPT;
    c.retain = dflags & DURABLE_RETAIN;
    if (!known_type(c.type))
        return CLUSTER_ECORRUPT;
    *out = c;
    *pos += size;
    return 0;
}
