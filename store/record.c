/* store records: the session, subscription and retained-message tables, their
 * value codecs, and iteration.
 *
 * Values (little-endian; the first byte, the version, is written by the
 * long-key layer in kv.c, which also inserts the full key after it for a
 * hashed key; the decoders here see the rest, the body):
 *   session   u8 flags (bit0 connected, bit1 has_will, bit2 will_retain),
 *             u8 will_qos, u8 pad, u32 owner, u64 generation, u32 expiry,
 *             u32 will_delay, u64 expire_at_ms, u32 topic, payload and props
 *             lengths, then the three strings; with flag bit3 (has_user) a
 *             u32 length and the user follow; bit4: owned by that identity
 *             (records without either came before them)
 *   sub       u8 qos, u8 flags (bit0 no_local, bit1 retain_as_published),
 *             u8 retain_handling, u32 sub_id; key = client id, 0x00, filter
 *   retained  u8 qos, u16 pad, u32 props length, u64 expire_at_ms, props,
 *             payload (the rest) */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define SESSION_FIXED 43u
#define SUB_FIXED 7u
#define RETAINED_FIXED 15u

/* MQTT forbids U+0000 in a client id, which is what lets 0x00 separate the
 * id from the filter in a subscription key. */
static int check_id(const uint8_t *id, size_t len)
{
    if (len == 0 || len > UINT32_MAX || memchr(id, 0, len))
        return -EINVAL;
    return 0;
}

/* --- sessions --------------------------------------------------------------- */

int store__session_decode(const struct store__kv *kv, struct store_session *out)
{
    struct bytes_reader r;
    bytes_reader_init(&r, kv->body.p, kv->body.len, STORE_ECORRUPT);
    struct store_session s = {.client_id = kv->key};
    uint8_t flags, pad;
    uint32_t tl, pl, prl;
    int rc = bytes_read_u8(&r, &flags);
    if (rc == 0)
        rc = bytes_read_u8(&r, &s.will_qos);
    if (rc == 0)
        rc = bytes_read_u8(&r, &pad);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &s.owner);
    if (rc == 0)
        rc = bytes_read_u64le(&r, &s.generation);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &s.expiry);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &s.will_delay);
    if (rc == 0)
        rc = bytes_read_u64le(&r, &s.expire_at_ms);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &tl);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &pl);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &prl);
    if (rc == 0)
        rc = store__read_view(&r, tl, &s.will_topic);
    if (rc == 0)
        rc = store__read_view(&r, pl, &s.will_payload);
    if (rc == 0)
        rc = store__read_view(&r, prl, &s.will_props);
    uint32_t ul;
    if (rc == 0 && (flags & 8u) && (rc = bytes_read_u32le(&r, &ul)) == 0)
        rc = store__read_view(&r, ul, &s.user);
    if (rc)
        return rc;
    if ((flags & ~31u) || bytes_left(&r) != 0)
        return STORE_ECORRUPT;
    s.has_user = flags & 8u;
    s.owned = flags & 16u;
    s.connected = flags & 1;
    s.has_will = flags & 2;
    s.will_retain = flags & 4;
    *out = s;
    return 0;
}

int store_session_get(struct store_txn *txn, const uint8_t *id, size_t id_len,
                      struct store_session *out)
{
    int rc = check_id(id, id_len);
    struct store__kv kv;
    if (rc == 0)
        rc = store__kv_get(txn, STORE__SESSIONS, id, id_len, &kv);
    return rc ? rc : store__session_decode(&kv, out);
}

int store_session_put(struct store_txn *txn, const struct store_session *rec)
{
    int rc = check_id(rec->client_id.p, rec->client_id.len);
    if (rc)
        return rc;
    if (rec->will_topic.len > UINT32_MAX || rec->will_payload.len > UINT32_MAX ||
        rec->will_props.len > UINT32_MAX || (rec->has_user && rec->user.len > UINT32_MAX))
        return -EINVAL;
    uint8_t fixed[SESSION_FIXED];
    uint8_t *p = bytes_put_u8(fixed, (uint8_t)((rec->connected ? 1 : 0) | (rec->has_will ? 2 : 0) |
                                               (rec->will_retain ? 4 : 0) | (rec->has_user ? 8 : 0) |
                                               (rec->owned ? 16 : 0)));
    p = bytes_put_u8(p, rec->will_qos);
    p = bytes_put_u8(p, 0);
    p = bytes_put_u32le(p, rec->owner);
    p = bytes_put_u64le(p, rec->generation);
    p = bytes_put_u32le(p, rec->expiry);
    p = bytes_put_u32le(p, rec->will_delay);
    p = bytes_put_u64le(p, rec->expire_at_ms);
    p = bytes_put_u32le(p, (uint32_t)rec->will_topic.len);
    p = bytes_put_u32le(p, (uint32_t)rec->will_payload.len);
    bytes_put_u32le(p, (uint32_t)rec->will_props.len);
    uint8_t ulen[4];
    bytes_put_u32le(ulen, rec->has_user ? (uint32_t)rec->user.len : 0);
    struct store_bytes parts[] = {{fixed, sizeof(fixed)}, rec->will_topic, rec->will_payload,
                                  rec->will_props, {ulen, sizeof(ulen)}, rec->user};
    rc = store__kv_put(txn, STORE__SESSIONS, rec->client_id.p, rec->client_id.len, parts, rec->has_user ? 6 : 4);
    return rc < 0 ? rc : 0;
}

int store_session_del(struct store_txn *txn, const uint8_t *id, size_t id_len)
{
    int rc = check_id(id, id_len);
    if (rc)
        return rc;
    rc = store__kv_del(txn, STORE__SESSIONS, id, id_len);
    if (rc != 0 && rc != STORE_ENOTFOUND)
        return rc;
    /* Subscriptions and queued messages left behind without their session
     * go too. */
    int n = store_sub_del_all(txn, id, id_len);
    if (n >= 0)
        n = store__queue_del_client(txn, id, id_len);
    return n < 0 ? n : rc;
}

/* --- subscriptions ------------------------------------------------------------ */

/* The full key id, 0x00, filter; on the stack when it is short. */
struct sub_key {
    uint8_t small[STORE__KEY_MAX];
    uint8_t *p;
    size_t len;
};

static int sub_key_init(struct sub_key *k, const uint8_t *id, size_t id_len,
                        const uint8_t *filter, size_t filter_len)
{
    int rc = check_id(id, id_len);
    if (rc)
        return rc;
    if (filter_len > UINT32_MAX)
        return -EINVAL;
    k->len = id_len + 1 + filter_len;
    k->p = k->len <= sizeof(k->small) ? k->small : malloc(k->len);
    if (!k->p)
        return -ENOMEM;
    memcpy(k->p, id, id_len);
    k->p[id_len] = 0;
    if (filter_len)
        memcpy(k->p + id_len + 1, filter, filter_len);
    return 0;
}

static void sub_key_free(struct sub_key *k)
{
    if (k->p != k->small)
        free(k->p);
}

int store__sub_decode(const struct store__kv *kv, struct store_sub *out)
{
    const uint8_t *sep = memchr(kv->key.p, 0, kv->key.len);
    if (!sep || sep == kv->key.p)
        return STORE_ECORRUPT;
    struct bytes_reader r;
    bytes_reader_init(&r, kv->body.p, kv->body.len, STORE_ECORRUPT);
    struct store_sub s = {
        .client_id = {kv->key.p, (size_t)(sep - kv->key.p)},
        .filter = {sep + 1, kv->key.len - (size_t)(sep - kv->key.p) - 1},
    };
    uint8_t flags;
    int rc = bytes_read_u8(&r, &s.qos);
    if (rc == 0)
        rc = bytes_read_u8(&r, &flags);
    if (rc == 0)
        rc = bytes_read_u8(&r, &s.retain_handling);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &s.sub_id);
    if (rc)
        return rc;
    if ((flags & ~3u) || bytes_left(&r) != 0)
        return STORE_ECORRUPT;
    s.no_local = flags & 1;
    s.retain_as_published = flags & 2;
    *out = s;
    return 0;
}

int store_sub_put(struct store_txn *txn, const struct store_sub *rec)
{
    struct sub_key k;
    int rc = sub_key_init(&k, rec->client_id.p, rec->client_id.len, rec->filter.p, rec->filter.len);
    if (rc)
        return rc;
    uint8_t fixed[SUB_FIXED];
    uint8_t *p = bytes_put_u8(fixed, rec->qos);
    p = bytes_put_u8(p, (uint8_t)((rec->no_local ? 1 : 0) | (rec->retain_as_published ? 2 : 0)));
    p = bytes_put_u8(p, rec->retain_handling);
    bytes_put_u32le(p, rec->sub_id);
    struct store_bytes part = {fixed, sizeof(fixed)};
    rc = store__kv_put(txn, STORE__SUBS, k.p, k.len, &part, 1);
    sub_key_free(&k);
    return rc;
}

int store_sub_get(struct store_txn *txn, const uint8_t *id, size_t id_len, const uint8_t *filter,
                  size_t filter_len, struct store_sub *out)
{
    struct sub_key k;
    int rc = sub_key_init(&k, id, id_len, filter, filter_len);
    if (rc)
        return rc;
    struct store__kv kv;
    rc = store__kv_get(txn, STORE__SUBS, k.p, k.len, &kv);
    sub_key_free(&k);
    return rc ? rc : store__sub_decode(&kv, out);
}

int store_sub_del(struct store_txn *txn, const uint8_t *id, size_t id_len, const uint8_t *filter,
                  size_t filter_len)
{
    struct sub_key k;
    int rc = sub_key_init(&k, id, id_len, filter, filter_len);
    if (rc)
        return rc;
    rc = store__kv_del(txn, STORE__SUBS, k.p, k.len);
    sub_key_free(&k);
    if (rc == STORE_ENOTFOUND)
        return 0;
    return rc < 0 ? rc : 1;
}

int store_sub_del_all(struct store_txn *txn, const uint8_t *id, size_t id_len)
{
    struct sub_key k;
    int rc = sub_key_init(&k, id, id_len, NULL, 0);
    if (rc)
        return rc;
    /* The prefix includes the 0x00, so "ab" does not take "abc"'s. */
    rc = store__kv_del_prefix(txn, STORE__SUBS, k.p, k.len);
    sub_key_free(&k);
    return rc;
}

/* --- retained messages ---------------------------------------------------------- */

static int check_topic(const uint8_t *topic, size_t len)
{
    return len == 0 || len > UINT32_MAX || !topic ? -EINVAL : 0;
}

int store__retained_decode(const struct store__kv *kv, struct store_retained *out)
{
    struct bytes_reader r;
    bytes_reader_init(&r, kv->body.p, kv->body.len, STORE_ECORRUPT);
    struct store_retained m = {.topic = kv->key};
    uint16_t pad;
    uint32_t prl;
    int rc = bytes_read_u8(&r, &m.qos);
    if (rc == 0)
        rc = bytes_read_u16le(&r, &pad);
    if (rc == 0)
        rc = bytes_read_u32le(&r, &prl);
    if (rc == 0)
        rc = bytes_read_u64le(&r, &m.expire_at_ms);
    if (rc == 0)
        rc = store__read_view(&r, prl, &m.props);
    if (rc == 0)
        rc = store__read_view(&r, bytes_left(&r), &m.payload);
    if (rc)
        return rc;
    *out = m;
    return 0;
}

int store_retain_put(struct store_txn *txn, const struct store_retained *rec)
{
    int rc = check_topic(rec->topic.p, rec->topic.len);
    if (rc)
        return rc;
    if (rec->props.len > UINT32_MAX)
        return -EINVAL;
    uint8_t fixed[RETAINED_FIXED];
    uint8_t *p = bytes_put_u8(fixed, rec->qos);
    p = bytes_put_u16le(p, 0);
    p = bytes_put_u32le(p, (uint32_t)rec->props.len);
    bytes_put_u64le(p, rec->expire_at_ms);
    struct store_bytes parts[] = {{fixed, sizeof(fixed)}, rec->props, rec->payload};
    rc = store__kv_put(txn, STORE__RETAINED, rec->topic.p, rec->topic.len, parts, 3);
    return rc < 0 ? rc : 0;
}

int store_retain_get(struct store_txn *txn, const uint8_t *topic, size_t topic_len,
                     struct store_retained *out)
{
    int rc = check_topic(topic, topic_len);
    struct store__kv kv;
    if (rc == 0)
        rc = store__kv_get(txn, STORE__RETAINED, topic, topic_len, &kv);
    return rc ? rc : store__retained_decode(&kv, out);
}

int store_retain_del(struct store_txn *txn, const uint8_t *topic, size_t topic_len)
{
    int rc = check_topic(topic, topic_len);
    if (rc == 0)
        rc = store__kv_del(txn, STORE__RETAINED, topic, topic_len);
    if (rc == STORE_ENOTFOUND)
        return 0;
    return rc < 0 ? rc : 1;
}

/* --- iteration ------------------------------------------------------------------ */

int store__foreach_kv(struct store_txn *txn, enum store__table table, const uint8_t *prefix,
                      size_t prefix_len, int (*visit)(void *ctx, const struct store__kv *kv),
                      void *ctx)
{
    struct store__iter it;
    int rc = store__iter_open(txn, table, prefix, prefix_len, &it);
    if (rc)
        return rc;
    struct store__kv kv;
    while ((rc = store__iter_next(&it, &kv)) == 0) {
        rc = visit(ctx, &kv);
        if (rc)
            break;
    }
    store__iter_close(&it);
    return rc == STORE_ENOTFOUND ? 0 : rc;
}

struct session_visit {
    int (*cb)(void *arg, const struct store_session *);
    void *arg;
};

static int visit_session(void *ctx, const struct store__kv *kv)
{
    struct session_visit *sv = ctx;
    struct store_session rec;
    int rc = store__session_decode(kv, &rec);
    return rc ? rc : sv->cb(sv->arg, &rec);
}

int store_sessions_foreach(struct store_txn *txn,
                           int (*cb)(void *arg, const struct store_session *), void *arg)
{
    struct session_visit sv = {cb, arg};
    return store__foreach_kv(txn, STORE__SESSIONS, NULL, 0, visit_session, &sv);
}

struct sub_visit {
    int (*cb)(void *arg, const struct store_sub *);
    void *arg;
};

static int visit_sub(void *ctx, const struct store__kv *kv)
{
    struct sub_visit *sv = ctx;
    struct store_sub rec;
    int rc = store__sub_decode(kv, &rec);
    return rc ? rc : sv->cb(sv->arg, &rec);
}

int store_subs_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_sub *),
                       void *arg)
{
    struct sub_visit sv = {cb, arg};
    return store__foreach_kv(txn, STORE__SUBS, NULL, 0, visit_sub, &sv);
}

int store_client_subs_foreach(struct store_txn *txn, const uint8_t *id, size_t id_len,
                              int (*cb)(void *arg, const struct store_sub *), void *arg)
{
    struct sub_key k;
    int rc = sub_key_init(&k, id, id_len, NULL, 0);
    if (rc)
        return rc;
    struct sub_visit sv = {cb, arg};
    rc = store__foreach_kv(txn, STORE__SUBS, k.p, k.len, visit_sub, &sv);
    sub_key_free(&k);
    return rc;
}

struct retained_visit {
    int (*cb)(void *arg, const struct store_retained *);
    void *arg;
};

static int visit_retained(void *ctx, const struct store__kv *kv)
{
    struct retained_visit *rv = ctx;
    struct store_retained rec;
    int rc = store__retained_decode(kv, &rec);
    return rc ? rc : rv->cb(rv->arg, &rec);
}

int store_retained_foreach(struct store_txn *txn,
                           int (*cb)(void *arg, const struct store_retained *), void *arg)
{
    struct retained_visit rv = {cb, arg};
    return store__foreach_kv(txn, STORE__RETAINED, NULL, 0, visit_retained, &rv);
}
