/* store users: the users and acl tables of the replicated state.
 *
 * Values (after the version byte kv.c writes):
 *   user      u32 hash length, hash, then the SCRAM credentials (the rest)
 *   acl rule  u8 access; key = u8 kind, user name, 0x00, topic */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define NAME_MAX_LEN 65535u
#define CRED_MAX_LEN 1024u

static bool name_ok(const uint8_t *p, size_t len)
{
    return p && len > 0 && len <= NAME_MAX_LEN && !memchr(p, 0, len);
}

static int count(struct store_txn *txn, enum store__table table, size_t *out)
{
    if (txn->s->absent[table]) {
        *out = 0;
        return 0;
    }
    MDB_stat st;
    int rc = store__lmdb_err(mdb_stat(txn->t, txn->s->dbi[table], &st));
    if (rc == 0)
        *out = st.ms_entries;
    return rc;
}

/* --- users ---------------------------------------------------------------------- */

int store__user_decode(const struct store__kv *kv, struct store_user *out)
{
    struct bytes_reader r;
    bytes_reader_init(&r, kv->body.p, kv->body.len, STORE_ECORRUPT);
    struct store_user u = {.name = kv->key};
    uint32_t hl;
    int rc = bytes_read_u32le(&r, &hl);
    if (rc == 0)
        rc = store__read_view(&r, hl, &u.hash);
    if (rc == 0)
        rc = store__read_view(&r, bytes_left(&r), &u.scram);
    if (rc)
        return rc;
    if (!name_ok(u.name.p, u.name.len) || u.hash.len > CRED_MAX_LEN || u.scram.len > CRED_MAX_LEN)
        return STORE_ECORRUPT;
    *out = u;
    return 0;
}

int store_user_put(struct store_txn *txn, const struct store_user *rec)
{
    if (!name_ok(rec->name.p, rec->name.len) || rec->hash.len > CRED_MAX_LEN || rec->scram.len > CRED_MAX_LEN)
        return -EINVAL;
    uint8_t hl[4];
    bytes_put_u32le(hl, (uint32_t)rec->hash.len);
    struct store_bytes parts[] = {{hl, sizeof(hl)}, rec->hash, rec->scram};
    return store__kv_put(txn, STORE__USERS, rec->name.p, rec->name.len, parts, 3);
}

int store_user_get(struct store_txn *txn, const uint8_t *name, size_t len, struct store_user *out)
{
    if (!name_ok(name, len))
        return -EINVAL;
    if (txn->s->absent[STORE__USERS])
        return STORE_ENOTFOUND;
    struct store__kv kv;
    int rc = store__kv_get(txn, STORE__USERS, name, len, &kv);
    return rc ? rc : store__user_decode(&kv, out);
}

int store_user_del(struct store_txn *txn, const uint8_t *name, size_t len)
{
    if (!name_ok(name, len))
        return -EINVAL;
    int rc = store__kv_del(txn, STORE__USERS, name, len);
    if (rc == STORE_ENOTFOUND)
        return 0;
    return rc < 0 ? rc : 1;
}

int store_users_count(struct store_txn *txn, size_t *out) { return count(txn, STORE__USERS, out); }

struct user_visit {
    int (*cb)(void *arg, const struct store_user *);
    void *arg;
};

static int visit_user(void *ctx, const struct store__kv *kv)
{
    struct user_visit *v = ctx;
    struct store_user rec;
    int rc = store__user_decode(kv, &rec);
    return rc ? rc : v->cb(v->arg, &rec);
}

int store_users_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_user *), void *arg)
{
    struct user_visit v = {cb, arg};
    if (txn->s->absent[STORE__USERS])
        return 0;
    return store__foreach_kv(txn, STORE__USERS, NULL, 0, visit_user, &v);
}

/* --- ACL rules -------------------------------------------------------------------- */

/* The full key kind, user, 0x00, topic. */
struct acl_key {
    uint8_t small[STORE__KEY_MAX];
    uint8_t *p;
    size_t len;
};

static int acl_key_init(struct acl_key *k, const struct store_acl_rule *rec)
{
    bool user_ok = rec->kind == 1 ? name_ok(rec->user.p, rec->user.len) : rec->user.len == 0;
    if (!user_ok || !name_ok(rec->topic.p, rec->topic.len))
        return -EINVAL;
    k->len = 1 + rec->user.len + 1 + rec->topic.len;
    k->p = k->len <= sizeof(k->small) ? k->small : malloc(k->len);
    if (!k->p)
        return -ENOMEM;
    k->p[0] = rec->kind;
    if (rec->user.len)
        memcpy(k->p + 1, rec->user.p, rec->user.len);
    k->p[1 + rec->user.len] = 0;
    memcpy(k->p + 2 + rec->user.len, rec->topic.p, rec->topic.len);
    return 0;
}

static void acl_key_free(struct acl_key *k)
{
    if (k->p != k->small)
        free(k->p);
}

int store__acl_decode(const struct store__kv *kv, struct store_acl_rule *out)
{
    if (kv->key.len < 3)
        return STORE_ECORRUPT;
    const uint8_t *sep = memchr(kv->key.p + 1, 0, kv->key.len - 1);
    if (!sep)
        return STORE_ECORRUPT;
    struct store_acl_rule a = {
        .kind = kv->key.p[0],
        .user = {kv->key.p + 1, (size_t)(sep - kv->key.p - 1)},
        .topic = {sep + 1, kv->key.len - (size_t)(sep - kv->key.p) - 1},
    };
    struct bytes_reader r;
    bytes_reader_init(&r, kv->body.p, kv->body.len, STORE_ECORRUPT);
    int rc = bytes_read_u8(&r, &a.access);
    if (rc)
        return rc;
    bool user_ok = a.kind == 1 ? name_ok(a.user.p, a.user.len) : a.user.len == 0;
    if (!user_ok || !name_ok(a.topic.p, a.topic.len) || bytes_left(&r) != 0)
        return STORE_ECORRUPT;
    *out = a;
    return 0;
}

int store_acl_put(struct store_txn *txn, const struct store_acl_rule *rec)
{
    struct acl_key k;
    int rc = acl_key_init(&k, rec);
    if (rc)
        return rc;
    struct store_bytes part = {&rec->access, 1};
    rc = store__kv_put(txn, STORE__ACL, k.p, k.len, &part, 1);
    acl_key_free(&k);
    return rc;
}

int store_acl_del(struct store_txn *txn, const struct store_acl_rule *rec)
{
    struct acl_key k;
    int rc = acl_key_init(&k, rec);
    if (rc)
        return rc;
    rc = store__kv_del(txn, STORE__ACL, k.p, k.len);
    acl_key_free(&k);
    if (rc == STORE_ENOTFOUND)
        return 0;
    return rc < 0 ? rc : 1;
}

int store_acl_count(struct store_txn *txn, size_t *out) { return count(txn, STORE__ACL, out); }

struct acl_visit {
    int (*cb)(void *arg, const struct store_acl_rule *);
    void *arg;
};

static int visit_acl(void *ctx, const struct store__kv *kv)
{
    struct acl_visit *v = ctx;
    struct store_acl_rule rec;
    int rc = store__acl_decode(kv, &rec);
    return rc ? rc : v->cb(v->arg, &rec);
}

int store_acl_foreach(struct store_txn *txn, int (*cb)(void *arg, const struct store_acl_rule *), void *arg)
{
    struct acl_visit v = {cb, arg};
    if (txn->s->absent[STORE__ACL])
        return 0;
    return store__foreach_kv(txn, STORE__ACL, NULL, 0, visit_acl, &v);
}
