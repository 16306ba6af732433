/* store queue: the durable sessions' tables (message records with reference
 * counts, per-session queue entries and counters, inbound QoS 2 packet ids)
 * and their garbage collection.
 *
 * Bodies (little-endian; the version byte and a hashed key's full key are the
 * long-key layer's, kv.c):
 *   msgs     u32 refs, u8 qos, u8 flags (bit0 retain), u16 pad, u32 origin,
 *            u64 expire_at_ms, u32 topic, props and publisher lengths, the
 *            three strings, then the payload (the rest)
 *   queue    u8 qos, u8 state, u16 pid, u8 flags (bit0 retain), u32 size,
 *            u32 nsub_ids, nsub_ids x u32 sub id; key id, 0x00, u64 BE msg id
 *   qstat    u32 count, u64 bytes
 *   inbound  empty; key id, 0x00, u16 BE pid */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define MSG_FIXED 32u
#define QENTRY_FIXED 13u
#define QSTAT_SIZE 12u
#define MAX_SUB_IDS 4096u

/* A key of client id, 0x00, and a big-endian suffix of n bytes (0 = the
 * prefix alone); on the stack when it is short. */
struct ckey {
    uint8_t small[STORE__KEY_MAX];
    uint8_t *p;
    size_t len;
};

static int ckey_init(struct ckey *k, const uint8_t *id, size_t id_len, uint64_t suffix, size_t n)
{
    if (!id || id_len == 0 || id_len > UINT32_MAX || memchr(id, 0, id_len))
        return -EINVAL;
    k->len = id_len + 1 + n;
    k->p = k->len <= sizeof(k->small) ? k->small : malloc(k->len);
    if (!k->p)
        return -ENOMEM;
    memcpy(k->p, id, id_len);
    k->p[id_len] = 0;
    if (n == 8)
        bytes_put_u64be(k->p + id_len + 1, suffix);
    else if (n == 2)
        bytes_put_u16be(k->p + id_len + 1, (uint16_t)suffix);
    return 0;
}

static void ckey_free(struct ckey *k)
{
    if (k->p != k->small)
        free(k->p);
}

/* Splits a key of id, 0x00, n-byte suffix. */
static int ckey_split(struct store_bytes key, size_t n, struct store_bytes *id, uint64_t *suffix)
{
    if (key.len < n + 2 || key.p[key.len - n - 1] != 0 || memchr(key.p, 0, key.len - n - 1))
        return STORE_ECORRUPT;
    *id = (struct store_bytes){key.p, key.len - n - 1};
    *suffix = n == 8 ? bytes_get_u64be(key.p + key.len - 8) : bytes_get_u16be(key.p + key.len - 2);
    return 0;
}

/* --- messages ---------------------------------------------------------------------- */

static int msg_decode(const struct store__kv *kv, struct store_msg *out)
{
    if (kv->key.len != 8)
        return STORE_ECORRUPT;
    struct bytes_reader r;
    bytes_reader_init(&r, kv->body.p, kv->body.len, STORE_ECORRUPT);
    struct store_msg m = {.id = bytes_get_u64be(kv->key.p)};
    uint8_t flags;
    uint16_t pad;
    uint32_t tl, pl, ul;
    int rc = bytes_read_u32le(&r, &m.refs);
    if (rc == 0)
        rc = bytes_read_u8(&r, &m.qos);
    if (rc == 0)
        rc = bytes_read_u8(&r, &flags);
    if (rc == 0)
        rc = bytes_read_u16le(&r, &pad);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &m.origin);
    if (rc == 0)
        rc = bytes_read_u64le(&r, &m.expire_at_ms);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &tl);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &pl);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &ul);
    if (rc == 0)
        rc = store__read_view(&r, tl, &m.topic);
    if (rc == 0)
        rc = store__read_view(&r, pl, &m.props);
    if (rc == 0)
        rc = store__read_view(&r, ul, &m.publisher);
    if (rc == 0)
        rc = store__read_view(&r, bytes_left(&r), &m.payload);
    if (rc)
        return rc;
    if ((flags & ~1u) || m.qos > 2)
        return STORE_ECORRUPT;
    m.retain = flags & 1;
    *out = m;
    return 0;
}

int store_msg_put(struct store_txn *txn, const struct store_msg *rec)
{
    if (rec->qos > 2 || rec->topic.len > UINT32_MAX || rec->props.len > UINT32_MAX ||
        rec->publisher.len > UINT32_MAX)
        return -EINVAL;
    uint8_t key[8], fixed[MSG_FIXED];
    bytes_put_u64be(key, rec->id);
    uint8_t *p = bytes_put_u32le(fixed, rec->refs);
    p = bytes_put_u8(p, rec->qos);
    p = bytes_put_u8(p, rec->retain ? 1 : 0);
    p = bytes_put_u16le(p, 0);
    p = bytes_put_u32le(p, rec->origin);
    p = bytes_put_u64le(p, rec->expire_at_ms);
    p = bytes_put_u32le(p, (uint32_t)rec->topic.len);
    p = bytes_put_u32le(p, (uint32_t)rec->props.len);
    bytes_put_u32le(p, (uint32_t)rec->publisher.len);
    struct store_bytes parts[] = {{fixed, sizeof(fixed)}, rec->topic, rec->props, rec->publisher, rec->payload};
    int rc = store__kv_put(txn, STORE__MSGS, key, sizeof(key), parts, 5);
    return rc < 0 ? rc : 0;
}

int store_msg_get(struct store_txn *txn, uint64_t id, struct store_msg *out)
{
    uint8_t key[8];
    bytes_put_u64be(key, id);
    struct store__kv kv;
    int rc = store__kv_get(txn, STORE__MSGS, key, sizeof(key), &kv);
    return rc ? rc : msg_decode(&kv, out);
}

/* Adds delta to the message's reference count; deletes it at 0. */
static int msg_ref(struct store_txn *txn, uint64_t id, int delta)
{
    struct store_msg m;
    int rc = store_msg_get(txn, id, &m);
    if (rc)
        return rc == STORE_ENOTFOUND && delta < 0 ? 0 : rc; /* already gone: nothing to release */
    if (delta < 0 && m.refs <= 1) {
        uint8_t key[8];
        bytes_put_u64be(key, id);
        rc = store__kv_del(txn, STORE__MSGS, key, sizeof(key));
        return rc == STORE_ENOTFOUND ? 0 : rc;
    }
    m.refs = delta < 0 ? m.refs - 1 : m.refs + 1;
    return store_msg_put(txn, &m); /* m's views may be passed back (kv.c copies) */
}

int store_msg_gc(struct store_txn *txn, uint64_t id)
{
    struct store_msg m;
    int rc = store_msg_get(txn, id, &m);
    if (rc == STORE_ENOTFOUND || (rc == 0 && m.refs > 0))
        return 0;
    if (rc)
        return rc;
    uint8_t key[8];
    bytes_put_u64be(key, id);
    rc = store__kv_del(txn, STORE__MSGS, key, sizeof(key));
    return rc ? rc : 1;
}

/* --- per-session counters ------------------------------------------------------------ */

int store_queue_stat(struct store_txn *txn, const uint8_t *id, size_t id_len, struct store_qstat *out)
{
    if (!id || id_len == 0 || memchr(id, 0, id_len))
        return -EINVAL;
    struct store__kv kv;
    int rc = store__kv_get(txn, STORE__QSTAT, id, id_len, &kv);
    if (rc == STORE_ENOTFOUND) {
        *out = (struct store_qstat){0, 0};
        return 0;
    }
    if (rc)
        return rc;
    if (kv.body.len != QSTAT_SIZE)
        return STORE_ECORRUPT;
    out->count = bytes_get_u32le(kv.body.p);
    out->bytes = bytes_get_u64le(kv.body.p + 4);
    return 0;
}

static int stat_add(struct store_txn *txn, const uint8_t *id, size_t id_len, int dcount, int64_t dbytes)
{
    struct store_qstat st;
    int rc = store_queue_stat(txn, id, id_len, &st);
    if (rc)
        return rc;
    st.count = dcount < 0 && st.count == 0 ? 0 : (uint32_t)((int64_t)st.count + dcount);
    st.bytes = dbytes < 0 && st.bytes < (uint64_t)-dbytes ? 0 : (uint64_t)((int64_t)st.bytes + dbytes);
    if (st.count == 0) {
        rc = store__kv_del(txn, STORE__QSTAT, id, id_len);
        return rc == STORE_ENOTFOUND ? 0 : rc;
    }
    uint8_t body[QSTAT_SIZE];
    bytes_put_u64le(bytes_put_u32le(body, st.count), st.bytes);
    struct store_bytes part = {body, sizeof(body)};
    rc = store__kv_put(txn, STORE__QSTAT, id, id_len, &part, 1);
    return rc < 0 ? rc : 0;
}

/* --- queue entries ----------------------------------------------------------------- */

static int qentry_decode(const struct store__kv *kv, struct store_qentry *out)
{
    struct store_qentry e;
    memset(&e, 0, sizeof(e));
    int rc = ckey_split(kv->key, 8, &e.client_id, &e.msg_id);
    if (rc)
        return rc;
    struct bytes_reader r;
    bytes_reader_init(&r, kv->body.p, kv->body.len, STORE_ECORRUPT);
    uint8_t flags;
    rc = bytes_read_u8(&r, &e.qos);
    if (rc == 0)
        rc = bytes_read_u8(&r, &e.state);
    if (rc == 0)
        rc = bytes_read_u16le(&r, &e.pid);
    if (rc == 0)
        rc = bytes_read_u8(&r, &flags);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &e.size);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &e.nsub_ids);
    if (rc)
        return rc;
    if (e.nsub_ids > MAX_SUB_IDS || (rc = store__read_view(&r, (size_t)e.nsub_ids * 4, &e.sub_ids)) != 0)
        return rc ? rc : STORE_ECORRUPT;
    if ((flags & ~1u) || e.qos > 2 || e.state > STORE_Q_PUBREC || bytes_left(&r) != 0)
        return STORE_ECORRUPT;
    e.retain = flags & 1;
    *out = e;
    return 0;
}

static int qentry_write(struct store_txn *txn, const struct ckey *k, const struct store_qentry *e)
{
    uint8_t fixed[QENTRY_FIXED];
    uint8_t *p = bytes_put_u8(fixed, e->qos);
    p = bytes_put_u8(p, e->state);
    p = bytes_put_u16le(p, e->pid);
    p = bytes_put_u8(p, e->retain ? 1 : 0);
    p = bytes_put_u32le(p, e->size);
    bytes_put_u32le(p, e->nsub_ids);
    struct store_bytes parts[] = {{fixed, sizeof(fixed)}, {e->sub_ids.p, (size_t)e->nsub_ids * 4}};
    return store__kv_put(txn, STORE__QUEUE, k->p, k->len, parts, 2);
}

int store_queue_add(struct store_txn *txn, const struct store_qentry *e)
{
    if (e->qos > 2 || e->state > STORE_Q_PUBREC || e->nsub_ids > MAX_SUB_IDS ||
        e->sub_ids.len < (size_t)e->nsub_ids * 4)
        return -EINVAL;
    struct ckey k;
    int rc = ckey_init(&k, e->client_id.p, e->client_id.len, e->msg_id, 8);
    if (rc)
        return rc;
    struct store__kv old;
    rc = store__kv_get(txn, STORE__QUEUE, k.p, k.len, &old);
    bool existed = rc == 0;
    if (rc && rc != STORE_ENOTFOUND)
        goto out;
    if (!existed) {
        struct store_msg m;
        if ((rc = store_msg_get(txn, e->msg_id, &m)) != 0)
            goto out;
    }
    if ((rc = qentry_write(txn, &k, e)) < 0)
        goto out;
    rc = 0;
    if (!existed) {
        rc = msg_ref(txn, e->msg_id, 1);
        if (rc == 0)
            rc = stat_add(txn, e->client_id.p, e->client_id.len, 1, e->size);
    }
    if (rc == 0)
        rc = existed ? 1 : 0;
out:
    ckey_free(&k);
    return rc;
}

int store_queue_get(struct store_txn *txn, const uint8_t *id, size_t id_len, uint64_t msg_id,
                    struct store_qentry *out)
{
    struct ckey k;
    int rc = ckey_init(&k, id, id_len, msg_id, 8);
    if (rc)
        return rc;
    struct store__kv kv;
    rc = store__kv_get(txn, STORE__QUEUE, k.p, k.len, &kv);
    ckey_free(&k);
    return rc ? rc : qentry_decode(&kv, out);
}

int store_queue_set_state(struct store_txn *txn, const uint8_t *id, size_t id_len, uint64_t msg_id,
                          uint8_t state, uint16_t pid)
{
    if (state > STORE_Q_PUBREC)
        return -EINVAL;
    struct store_qentry e;
    int rc = store_queue_get(txn, id, id_len, msg_id, &e);
    if (rc == STORE_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    e.state = state;
    e.pid = pid;
    struct ckey k;
    if ((rc = ckey_init(&k, id, id_len, msg_id, 8)) != 0)
        return rc;
    rc = qentry_write(txn, &k, &e);
    ckey_free(&k);
    return rc < 0 ? rc : 1;
}

int store_queue_del(struct store_txn *txn, const uint8_t *id, size_t id_len, uint64_t msg_id)
{
    struct store_qentry e;
    int rc = store_queue_get(txn, id, id_len, msg_id, &e);
    if (rc == STORE_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    uint32_t size = e.size;
    struct ckey k;
    if ((rc = ckey_init(&k, id, id_len, msg_id, 8)) != 0)
        return rc;
    rc = store__kv_del(txn, STORE__QUEUE, k.p, k.len);
    ckey_free(&k);
    if (rc == 0)
        rc = msg_ref(txn, msg_id, -1);
    if (rc == 0)
        rc = stat_add(txn, id, id_len, -1, -(int64_t)size);
    return rc ? rc : 1;
}

/* Message ids of a client's entries (collected first: deleting while
 * iterating the same table is not allowed). */
struct id_list {
    uint64_t *v;
    size_t n, cap;
};

static int collect_id(void *arg, const struct store_qentry *e)
{
    struct id_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        uint64_t *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = e->msg_id;
    return 0;
}

int store_queue_del_all(struct store_txn *txn, const uint8_t *id, size_t id_len)
{
    struct id_list l = {NULL, 0, 0};
    int rc = store_queue_foreach(txn, id, id_len, collect_id, &l);
    size_t i = 0;
    for (; rc == 0 && i < l.n; i++) {
        int r = store_queue_del(txn, id, id_len, l.v[i]);
        if (r < 0)
            rc = r;
    }
    free(l.v);
    if (rc)
        return store__fail(txn, rc);
    return l.n > INT32_MAX ? INT32_MAX : (int)l.n;
}

struct queue_visit {
    int (*cb)(void *arg, const struct store_qentry *);
    void *arg;
};

static int foreach_table(struct store_txn *txn, enum store__table table, const uint8_t *prefix, size_t prefix_len,
                         int (*visit)(void *ctx, const struct store__kv *kv), void *ctx)
{
    struct store__iter it;
    int rc = store__iter_open(txn, table, prefix, prefix_len, &it);
    if (rc)
        return rc;
    struct store__kv kv;
    while ((rc = store__iter_next(&it, &kv)) == 0 && (rc = visit(ctx, &kv)) == 0)
        ;
    store__iter_close(&it);
    return rc == STORE_ENOTFOUND ? 0 : rc;
}

/* The records of one client id (keys id, 0x00, ...), or of all (id NULL). */
static int foreach_client(struct store_txn *txn, enum store__table table, const uint8_t *id, size_t id_len,
                          int (*visit)(void *ctx, const struct store__kv *kv), void *ctx)
{
    if (!id)
        return foreach_table(txn, table, NULL, 0, visit, ctx);
    struct ckey k;
    int rc = ckey_init(&k, id, id_len, 0, 0);
    if (rc)
        return rc;
    rc = foreach_table(txn, table, k.p, k.len, visit, ctx);
    ckey_free(&k);
    return rc;
}

static int visit_qentry(void *ctx, const struct store__kv *kv)
{
    struct queue_visit *v = ctx;
    struct store_qentry e;
    int rc = qentry_decode(kv, &e);
    return rc ? rc : v->cb(v->arg, &e);
}

int store_queue_foreach(struct store_txn *txn, const uint8_t *id, size_t id_len,
                        int (*cb)(void *arg, const struct store_qentry *), void *arg)
{
    struct queue_visit v = {cb, arg};
    return foreach_client(txn, STORE__QUEUE, id, id_len, visit_qentry, &v);
}

struct msg_visit {
    int (*cb)(void *arg, const struct store_msg *);
    void *arg;
};

static int visit_msg(void *ctx, const struct store__kv *kv)
{
    struct msg_visit *v = ctx;
    struct store_msg m;
    int rc = msg_decode(kv, &m);
    return rc ? rc : v->cb(v->arg, &m);
}

int store_msgs_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_msg *), void *arg)
{
    struct msg_visit v = {cb, arg};
    return foreach_table(txn, STORE__MSGS, NULL, 0, visit_msg, &v);
}

/* --- inbound QoS 2 packet ids ------------------------------------------------------- */

int store_inbound_put(struct store_txn *txn, const uint8_t *id, size_t id_len, uint16_t pid)
{
    struct ckey k;
    int rc = ckey_init(&k, id, id_len, pid, 2);
    if (rc)
        return rc;
    rc = store__kv_put(txn, STORE__INBOUND, k.p, k.len, NULL, 0);
    ckey_free(&k);
    return rc;
}

int store_inbound_del(struct store_txn *txn, const uint8_t *id, size_t id_len, uint16_t pid)
{
    struct ckey k;
    int rc = ckey_init(&k, id, id_len, pid, 2);
    if (rc)
        return rc;
    rc = store__kv_del(txn, STORE__INBOUND, k.p, k.len);
    ckey_free(&k);
    if (rc == STORE_ENOTFOUND)
        return 0;
    return rc < 0 ? rc : 1;
}

struct inbound_visit {
    int (*cb)(void *arg, struct store_bytes client_id, uint16_t pid);
    void *arg;
};

static int visit_inbound(void *ctx, const struct store__kv *kv)
{
    struct inbound_visit *v = ctx;
    struct store_bytes id;
    uint64_t pid;
    int rc = ckey_split(kv->key, 2, &id, &pid);
    if (rc == 0 && kv->body.len != 0)
        rc = STORE_ECORRUPT;
    return rc ? rc : v->cb(v->arg, id, (uint16_t)pid);
}

int store_inbound_foreach(struct store_txn *txn, const uint8_t *id, size_t id_len,
                          int (*cb)(void *arg, struct store_bytes client_id, uint16_t pid), void *arg)
{
    struct inbound_visit v = {cb, arg};
    return foreach_client(txn, STORE__INBOUND, id, id_len, visit_inbound, &v);
}

/* --- internal ------------------------------------------------------------------------- */

int store__queue_del_client(struct store_txn *txn, const uint8_t *id, size_t id_len)
{
    int n = store_queue_del_all(txn, id, id_len);
    if (n < 0)
        return n;
    struct ckey k;
    int rc = ckey_init(&k, id, id_len, 0, 0);
    if (rc)
        return rc;
    rc = store__kv_del_prefix(txn, STORE__INBOUND, k.p, k.len);
    ckey_free(&k);
    if (rc < 0)
        return rc;
    rc = store__kv_del(txn, STORE__QSTAT, id, id_len); /* normally gone with the last entry */
    if (rc && rc != STORE_ENOTFOUND)
        return rc;
    return n;
}

int store__queue_check(enum store__table table, const struct store__kv *kv)
{
    union {
        struct store_msg m;
        struct store_qentry e;
    } u;
    struct store_bytes id;
    uint64_t suffix;
    switch (table) {
    case STORE__MSGS:
        return msg_decode(kv, &u.m);
    case STORE__QUEUE:
        return qentry_decode(kv, &u.e);
    case STORE__QSTAT:
        return kv->body.len == QSTAT_SIZE && !memchr(kv->key.p, 0, kv->key.len) ? 0 : STORE_ECORRUPT;
    case STORE__INBOUND:
        return ckey_split(kv->key, 2, &id, &suffix) == 0 && kv->body.len == 0 ? 0 : STORE_ECORRUPT;
    default:
        return STORE_ECORRUPT;
    }
}
