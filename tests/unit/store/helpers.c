/* Helpers shared by the store test suites: a temporary directory per test,
 * record builders and comparisons, whole-store dumps, snapshots as one buffer,
 * and raw LMDB access for planting corrupt data. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "helpers.h"

/* --- fixture ----------------------------------------------------------------------- */

char tmp_root[64];
char env_dir[128];  /* tmp_root/env/a: created by store_open */
char env_dir2[128]; /* tmp_root/env2 */

void store_test_setup(void)
{
    strcpy(tmp_root, "/tmp/store-test-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_root));
    snprintf(env_dir, sizeof(env_dir), "%s/env/a", tmp_root);
    snprintf(env_dir2, sizeof(env_dir2), "%s/env2", tmp_root);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

void store_test_teardown(void)
{
    nftw(tmp_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* --- helpers ----------------------------------------------------------------------- */

struct store *open_at(const char *dir)
{
    struct store *s = NULL;
    int rc = store_open(&s, dir, 0);
    cr_assert_eq(rc, 0, "store_open(%s): %s", dir, store_strerror(rc));
    return s;
}

struct store_txn *wbegin(struct store *s)
{
    struct store_txn *t = NULL;
    int rc = store_write_begin(s, &t);
    cr_assert_eq(rc, 0, "write_begin: %s", store_strerror(rc));
    return t;
}

struct store_txn *rbegin(struct store *s)
{
    struct store_txn *t = NULL;
    int rc = store_read_begin(s, &t);
    cr_assert_eq(rc, 0, "read_begin: %s", store_strerror(rc));
    return t;
}

void commit(struct store_txn *t, uint64_t idx)
{
    int rc = store_write_commit(t, idx);
    cr_assert_eq(rc, 0, "commit: %s", store_strerror(rc));
}

/* A buffer of n bytes, each a non-zero function of its position and seed. */
uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(1 + (i * 7 + seed * 13 + i / 251) % 250);
    return p;
}

struct store_session session_rec(const uint8_t *id, size_t len, uint32_t owner)
{
    return (struct store_session){
        .client_id = {id, len},
        .owner = owner,
        .generation = 0x1122334455667788ull + owner,
        .expiry = 0xFFFFFFFFu,
        .expire_at_ms = 1700000000123ull,
        .connected = true,
        .has_will = true,
        .will_qos = 2,
        .will_retain = true,
        .will_delay = 30,
        .will_topic = B("will/topic"),
        .will_payload = B("bye\0bye"),
        .will_props = B("\x03\x00\x01x"),
    };
}

struct store_sub sub_rec(const uint8_t *id, size_t id_len, const uint8_t *f, size_t f_len,
                                uint8_t qos)
{
    return (struct store_sub){
        .client_id = {id, id_len},
        .filter = {f, f_len},
        .qos = qos,
        .no_local = true,
        .retain_as_published = false,
        .retain_handling = 2,
        .sub_id = 77,
    };
}

bool bytes_eq(struct store_bytes a, struct store_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

void assert_session_eq(const struct store_session *a, const struct store_session *b)
{
    cr_assert(bytes_eq(a->client_id, b->client_id));
    cr_assert_eq(a->owner, b->owner);
    cr_assert_eq(a->generation, b->generation);
    cr_assert_eq(a->expiry, b->expiry);
    cr_assert_eq(a->expire_at_ms, b->expire_at_ms);
    cr_assert_eq(a->connected, b->connected);
    cr_assert_eq(a->has_will, b->has_will);
    cr_assert_eq(a->will_qos, b->will_qos);
    cr_assert_eq(a->will_retain, b->will_retain);
    cr_assert_eq(a->will_delay, b->will_delay);
    cr_assert(bytes_eq(a->will_topic, b->will_topic));
    cr_assert(bytes_eq(a->will_payload, b->will_payload));
    cr_assert(bytes_eq(a->will_props, b->will_props));
}

void assert_sub_eq(const struct store_sub *a, const struct store_sub *b)
{
    cr_assert(bytes_eq(a->client_id, b->client_id));
    cr_assert(bytes_eq(a->filter, b->filter));
    cr_assert_eq(a->qos, b->qos);
    cr_assert_eq(a->no_local, b->no_local);
    cr_assert_eq(a->retain_as_published, b->retain_as_published);
    cr_assert_eq(a->retain_handling, b->retain_handling);
    cr_assert_eq(a->sub_id, b->sub_id);
}

void assert_retained_eq(const struct store_retained *a, const struct store_retained *b)
{
    cr_assert(bytes_eq(a->topic, b->topic));
    cr_assert(bytes_eq(a->payload, b->payload));
    cr_assert(bytes_eq(a->props, b->props));
    cr_assert_eq(a->qos, b->qos);
    cr_assert_eq(a->expire_at_ms, b->expire_at_ms);
}

static void dump_put(struct buf *b, const void *src, size_t n)
{
    cr_assert_eq(buf_append(b, src, n), 0);
}

static void dump_bytes(struct buf *b, struct store_bytes x)
{
    uint64_t n = x.len;
    dump_put(b, &n, sizeof(n));
    dump_put(b, x.p, x.len);
}

#define DUMP_NUM(b, v)                                                                             \
    do {                                                                                           \
        uint64_t v_ = (v);                                                                         \
        dump_put((b), &v_, sizeof(v_));                                                            \
    } while (0)

static int dump_session(void *arg, const struct store_session *r)
{
    struct buf *b = arg;
    DUMP_NUM(b, 1);
    dump_bytes(b, r->client_id);
    DUMP_NUM(b, r->owner);
    DUMP_NUM(b, r->generation);
    DUMP_NUM(b, r->expiry);
    DUMP_NUM(b, r->expire_at_ms);
    DUMP_NUM(b, r->connected | r->has_will << 1 | r->will_retain << 2);
    DUMP_NUM(b, r->will_qos);
    DUMP_NUM(b, r->will_delay);
    dump_bytes(b, r->will_topic);
    dump_bytes(b, r->will_payload);
    dump_bytes(b, r->will_props);
    return 0;
}

static int dump_sub(void *arg, const struct store_sub *r)
{
    struct buf *b = arg;
    DUMP_NUM(b, 2);
    dump_bytes(b, r->client_id);
    dump_bytes(b, r->filter);
    DUMP_NUM(b, r->qos);
    DUMP_NUM(b, r->no_local | r->retain_as_published << 1);
    DUMP_NUM(b, r->retain_handling);
    DUMP_NUM(b, r->sub_id);
    return 0;
}

static int dump_retained(void *arg, const struct store_retained *r)
{
    struct buf *b = arg;
    DUMP_NUM(b, 3);
    dump_bytes(b, r->topic);
    dump_bytes(b, r->payload);
    dump_bytes(b, r->props);
    DUMP_NUM(b, r->qos);
    DUMP_NUM(b, r->expire_at_ms);
    return 0;
}

/* Every record of s, field by field, plus the applied index. */
struct buf dump(struct store *s)
{
    struct buf b = {0};
    struct store_txn *t = rbegin(s);
    cr_assert_eq(store_sessions_foreach(t, dump_session, &b), 0);
    cr_assert_eq(store_subs_foreach(t, dump_sub, &b), 0);
    cr_assert_eq(store_retained_foreach(t, dump_retained, &b), 0);
    store_txn_end(t);
    DUMP_NUM(&b, store_applied_index(s));
    return b;
}

void assert_same_dump(struct buf *a, struct buf *b)
{
    cr_assert_eq(a->len, b->len, "dumps differ in length: %zu vs %zu", a->len, b->len);
    cr_assert(memcmp(a->data, b->data, a->len) == 0, "dumps differ");
}

/* A snapshot as one contiguous buffer. */
uint8_t *concat(const struct iovec *iov, size_t n, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += iov[i].iov_len;
    uint8_t *p = malloc(total ? total : 1), *q = p;
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        memcpy(q, iov[i].iov_base, iov[i].iov_len);
        q += iov[i].iov_len;
    }
    *len = total;
    return p;
}

uint8_t *take_snapshot(struct store *s, size_t *len, uint64_t *idx)
{
    struct store_snap *snap;
    const struct iovec *iov;
    size_t n;
    int rc = store_snapshot_open(s, &snap, &iov, &n, idx);
    cr_assert_eq(rc, 0, "snapshot_open: %s", store_strerror(rc));
    uint8_t *p = concat(iov, n, len);
    store_snapshot_close(snap);
    return p;
}

int count_session(void *arg, const struct store_session *r)
{
    (*(int *)arg)++;
    return 0;
}

int count_sub(void *arg, const struct store_sub *r)
{
    (*(int *)arg)++;
    return 0;
}

int count_retained(void *arg, const struct store_retained *r)
{
    (*(int *)arg)++;
    return 0;
}

int client_sub_count(struct store_txn *t, const uint8_t *id, size_t len)
{
    int n = 0;
    int rc = store_client_subs_foreach(t, id, len, count_sub, &n);
    cr_assert_eq(rc, 0, "client_subs_foreach: %s", store_strerror(rc));
    return n;
}

/* A small populated store: 2 sessions, 3 subs, 2 retained, applied index 5. */
void populate(struct store *s)
{
    struct store_txn *t = wbegin(s);
    struct store_session a = session_rec(U("alice"), 1), b = session_rec(U("bob"), 2);
    b.has_will = false;
    b.will_topic = b.will_payload = b.will_props = (struct store_bytes){NULL, 0};
    cr_assert_eq(store_session_put(t, &a), 0);
    cr_assert_eq(store_session_put(t, &b), 0);
    struct store_sub s1 = sub_rec(U("alice"), U("a/+"), 1), s2 = sub_rec(U("alice"), U("b/#"), 0),
                     s3 = sub_rec(U("bob"), U("$share/g/x"), 2);
    cr_assert_eq(store_sub_put(t, &s1), 0);
    cr_assert_eq(store_sub_put(t, &s2), 0);
    cr_assert_eq(store_sub_put(t, &s3), 0);
    struct store_retained r1 = {.topic = B("a/b"), .payload = B("hello"), .props = B("\x01\x01"),
                                .qos = 1, .expire_at_ms = 99},
                          r2 = {.topic = B("c"), .payload = B("x"), .qos = 0};
    cr_assert_eq(store_retain_put(t, &r1), 0);
    cr_assert_eq(store_retain_put(t, &r2), 0);
    commit(t, 5);
}

/* populate() plus long keys, so hashed records travel too. */
void populate_long(struct store *s)
{
    populate(s);
    uint8_t *id = pattern(65535, 9), *topic = pattern(1000, 10);
    struct store_txn *t = wbegin(s);
    struct store_session se = session_rec(id, 65535, 7);
    struct store_sub sub = sub_rec(id, 65535, topic, 1000, 1);
    struct store_retained r = {.topic = {topic, 1000}, .payload = {id, 4000}, .qos = 2};
    cr_assert_eq(store_session_put(t, &se), 0);
    cr_assert_eq(store_sub_put(t, &sub), 0);
    cr_assert_eq(store_retain_put(t, &r), 0);
    commit(t, 11);
    free(id);
    free(topic);
}

/* A write transaction on the named database db of a closed environment. */
static MDB_txn *raw_write(const char *dir, const char *db, MDB_env **env, MDB_dbi *dbi)
{
    MDB_txn *txn;
    cr_assert_eq(mdb_env_create(env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(*env, 8), 0);
    cr_assert_eq(mdb_env_open(*env, dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(*env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, db, 0, dbi), 0);
    return txn;
}

void raw_put(const char *dir, const char *db, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn = raw_write(dir, db, &env, &dbi);
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

void raw_drop(const char *dir, const char *db)
{
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn = raw_write(dir, db, &env, &dbi);
    cr_assert_eq(mdb_drop(txn, dbi, 1), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Reads the raw value of key in a named database of a closed environment. */
uint8_t *raw_get(const char *dir, const char *db, const void *key, size_t klen, size_t *vlen)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
    cr_assert_eq(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
    MDB_val k = {klen, (void *)key}, v;
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t *out = malloc(v.mv_size);
    cr_assert_not_null(out);
    memcpy(out, v.mv_data, v.mv_size);
    *vlen = v.mv_size;
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return out;
}
