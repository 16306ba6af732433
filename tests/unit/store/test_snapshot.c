/* Tests for store/snapshot.c: round trips into another store, restore
 * replacing previous contents, the stable view while later commits land,
 * truncated and corrupted snapshots. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(snapshot, .init = store_test_setup, .fini = store_test_teardown);

/* --- snapshots --------------------------------------------------------------------- */

Test(snapshot, snapshot_round_trip_replaces_previous_contents)
{
    struct store *a = open_at(env_dir), *b = open_at(env_dir2);
    populate_long(a);
    /* b holds other data, which the restore must remove. */
    struct store_txn *t = wbegin(b);
    struct store_session other = session_rec(U("zed"), 3);
    struct store_sub osub = sub_rec(U("zed"), U("q"), 0);
    struct store_retained oret = {.topic = B("old"), .payload = B("x")};
    cr_assert_eq(store_session_put(t, &other), 0);
    cr_assert_eq(store_sub_put(t, &osub), 0);
    cr_assert_eq(store_retain_put(t, &oret), 0);
    commit(t, 99);

    size_t len;
    uint64_t idx, peeked;
    uint8_t *snap = take_snapshot(a, &len, &idx);
    cr_assert_eq(idx, 11);
    cr_assert_eq(store_snapshot_peek(snap, len, &peeked), 0);
    cr_assert_eq(peeked, 11);
    cr_assert_eq(memcmp(snap, "STARSNAP", 8), 0);
    cr_assert_eq(store_snapshot_restore(b, snap, len), 0);
    cr_assert_eq(store_applied_index(b), 11);

    struct buf da = dump(a), db = dump(b);
    assert_same_dump(&da, &db);
    store_close(b);
    b = open_at(env_dir2);
    struct buf db2 = dump(b);
    assert_same_dump(&da, &db2);

    /* A snapshot of b is byte for byte the snapshot of a. */
    size_t len2;
    uint8_t *snap2 = take_snapshot(b, &len2, &idx);
    cr_assert_eq(len2, len);
    cr_assert_eq(memcmp(snap, snap2, len), 0);

    /* An empty store's snapshot empties b. */
    struct store *e;
    char edir[160];
    snprintf(edir, sizeof(edir), "%s/empty", tmp_root);
    e = open_at(edir);
    size_t elen;
    uint8_t *esnap = take_snapshot(e, &elen, &idx);
    cr_assert_eq(elen, 32);
    cr_assert_eq(store_snapshot_restore(b, esnap, elen), 0);
    cr_assert_eq(store_applied_index(b), 0);
    struct buf de = dump(e), db3 = dump(b);
    assert_same_dump(&de, &db3);

    store_close(e);
    store_close(a);
    store_close(b);
    free(snap);
    free(snap2);
    free(esnap);
    buf_free(&da);
    buf_free(&db);
    buf_free(&db2);
    buf_free(&de);
    buf_free(&db3);
    check_leaks();
}

static void assert_restore_refused(struct store *s, const uint8_t *buf, size_t len,
                                   const struct buf *before, const char *what)
{
    int rc = store_snapshot_restore(s, buf, len);
    cr_assert_eq(rc, STORE_ECORRUPT, "%s: %s", what, store_strerror(rc));
    cr_assert_eq(store_applied_index(s), 99);
    struct buf now = dump(s);
    cr_assert(now.len == before->len && memcmp(now.data, before->data, now.len) == 0,
              "%s changed the state", what);
    buf_free(&now);
}

Test(snapshot, corrupt_snapshots_are_refused_and_change_nothing)
{
    struct store *a = open_at(env_dir), *b = open_at(env_dir2);
    populate(a);
    struct store_txn *t = wbegin(b);
    struct store_session other = session_rec(U("zed"), 3);
    cr_assert_eq(store_session_put(t, &other), 0);
    commit(t, 99);
    struct buf before = dump(b);

    size_t len;
    uint64_t idx;
    uint8_t *snap = take_snapshot(a, &len, &idx);
    uint8_t *copy = malloc(len + 1);
    cr_assert_not_null(copy);

    /* Every truncation. */
    for (size_t n = 0; n < len; n++) {
        char what[48];
        snprintf(what, sizeof(what), "truncated to %zu", n);
        memcpy(copy, snap, n);
        assert_restore_refused(b, copy, n, &before, what);
        uint64_t p;
        cr_assert_eq(store_snapshot_peek(copy, n, &p), n < 32 ? STORE_ECORRUPT : 0);
    }
    /* A trailing byte. */
    memcpy(copy, snap, len);
    copy[len] = 0;
    assert_restore_refused(b, copy, len + 1, &before, "trailing byte");

    /* Each length field of each record, flipped. */
    size_t pos = 32;
    int records = 0;
    while (pos < len) {
        uint32_t klen, vlen;
        memcpy(&klen, snap + pos + 4, 4);
        memcpy(&vlen, snap + pos + 8, 4);
        for (int field = 1; field <= 2; field++) {
            for (int byte = 0; byte < 4; byte++) {
                memcpy(copy, snap, len);
                copy[pos + 4 * field + byte] ^= 0xFF;
                char what[64];
                snprintf(what, sizeof(what), "record %d field %d byte %d", records, field, byte);
                assert_restore_refused(b, copy, len, &before, what);
            }
        }
        /* And a table id out of range. */
        memcpy(copy, snap, len);
        copy[pos] = 6; /* STORE__NTABLES */
        assert_restore_refused(b, copy, len, &before, "table 6");
        copy[pos] = 0;
        assert_restore_refused(b, copy, len, &before, "table 0");
        /* A value that does not decode as its table's record (its version byte). */
        memcpy(copy, snap, len);
        copy[pos + 12 + klen] = 2;
        assert_restore_refused(b, copy, len, &before, "record version");
        pos += 12 + klen + vlen;
        records++;
    }
    cr_assert_eq(records, 7);

    /* Header fields. */
    const struct {
        size_t off;
        uint8_t val;
        const char *what;
    } header_cases[] = {
        {0, 'X', "magic"}, {8, 2, "format"}, {12, 1, "flags"}, {24, 6, "count 6"},
        {24, 8, "count 8"}, {31, 1, "count 2^56 + 7"},
    };
    for (size_t i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++) {
        memcpy(copy, snap, len);
        copy[header_cases[i].off] = header_cases[i].val;
        assert_restore_refused(b, copy, len, &before, header_cases[i].what);
    }
    /* Records out of order (swap sessions alice and bob). */
    {
        memcpy(copy, snap, len);
        uint32_t k1, v1;
        memcpy(&k1, snap + 32 + 4, 4);
        memcpy(&v1, snap + 32 + 8, 4);
        size_t r1 = 12 + k1 + v1, r2;
        uint32_t k2, v2;
        memcpy(&k2, snap + 32 + r1 + 4, 4);
        memcpy(&v2, snap + 32 + r1 + 8, 4);
        r2 = 12 + k2 + v2;
        memcpy(copy + 32, snap + 32 + r1, r2);
        memcpy(copy + 32 + r2, snap + 32, r1);
        assert_restore_refused(b, copy, len, &before, "out of order");
    }
    /* The intact snapshot still restores. */
    cr_assert_eq(store_snapshot_restore(b, snap, len), 0);
    cr_assert_eq(store_applied_index(b), 5);

    free(snap);
    free(copy);
    buf_free(&before);
    store_close(a);
    store_close(b);
    check_leaks();
}

struct snap_reader {
    const struct iovec *iov;
    size_t n;
    uint8_t *out;
    size_t len;
};

static void *read_snapshot_thread(void *arg)
{
    struct snap_reader *r = arg;
    size_t total = 0;
    for (size_t i = 0; i < r->n; i++)
        total += r->iov[i].iov_len;
    r->out = malloc(total);
    if (!r->out)
        return NULL;
    for (size_t i = 0; i < r->n; i++) {
        memcpy(r->out + r->len, r->iov[i].iov_base, r->iov[i].iov_len);
        r->len += r->iov[i].iov_len;
    }
    return NULL;
}

Test(snapshot, snapshot_view_survives_later_commits)
{
    struct store *a = open_at(env_dir), *b = open_at(env_dir2);
    populate_long(a);
    struct buf before = dump(a);

    struct store_snap *snap;
    const struct iovec *iov;
    size_t n;
    uint64_t idx;
    cr_assert_eq(store_snapshot_open(a, &snap, &iov, &n, &idx), 0);
    cr_assert_eq(idx, 11);
    cr_assert_eq(n, 1 + 3 * 10);

    /* Change every table, a lot, and commit while the snapshot is open. */
    struct store_txn *t = wbegin(a);
    cr_assert_eq(store_session_del(t, U("alice")), 0);
    struct store_sub sub = sub_rec(U("bob"), U("$share/g/x"), 0);
    cr_assert_eq(store_sub_put(t, &sub), 1);
    cr_assert_eq(store_retain_del(t, U("a/b")), 1);
    uint8_t *filler = pattern(4096, 3);
    for (int i = 0; i < 200; i++) {
        char topic[32];
        snprintf(topic, sizeof(topic), "filler/%d", i);
        struct store_retained r = {.topic = {(const uint8_t *)topic, strlen(topic)},
                                   .payload = {filler, 4096}};
        cr_assert_eq(store_retain_put(t, &r), 0);
    }
    commit(t, 12);
    t = wbegin(a);
    for (int i = 0; i < 200; i++) {
        char topic[32];
        snprintf(topic, sizeof(topic), "filler/%d", i);
        cr_assert_eq(store_retain_del(t, (const uint8_t *)topic, strlen(topic)), 1);
    }
    commit(t, 13);

    /* The buffers, read from another thread, still hold the old state. */
    struct snap_reader r = {iov, n, NULL, 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, read_snapshot_thread, &r), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_not_null(r.out);
    store_snapshot_close(snap);

    cr_assert_eq(store_snapshot_restore(b, r.out, r.len), 0);
    struct buf after = dump(b);
    assert_same_dump(&before, &after);
    cr_assert_eq(store_applied_index(a), 13);

    free(r.out);
    free(filler);
    buf_free(&before);
    buf_free(&after);
    store_close(a);
    store_close(b);
    check_leaks();
}

Test(snapshot, snapshot_restore_waits_for_no_writer)
{
    struct store *a = open_at(env_dir);
    populate(a);
    size_t len;
    uint64_t idx;
    uint8_t *snap = take_snapshot(a, &len, &idx);
    struct store_txn *t = wbegin(a);
    cr_assert_eq(store_snapshot_restore(a, snap, len), -EBUSY);
    store_txn_end(t);
    cr_assert_eq(store_snapshot_restore(a, snap, len), 0);
    free(snap);
    store_close(a);
    check_leaks();
}
