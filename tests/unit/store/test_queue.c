/* Tests for store/queue.c: durable messages and queue entries (put, reference
 * counts, garbage collection), per-session counters, state updates, a
 * session's end taking its entries, inbound QoS 2 ids, order, snapshots. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(queue, .init = store_test_setup, .fini = store_test_teardown);

static struct store_msg msg_rec(uint64_t id, const char *payload)
{
    return (struct store_msg){.id = id, .qos = 1, .origin = 2, .topic = B("a/b"), .props = B("\x01\x01"),
                              .publisher = B("pub"),
                              .payload = {(const uint8_t *)payload, strlen(payload)}};
}

static struct store_qentry entry(const char *id, uint64_t msg_id, uint32_t size)
{
    static const uint8_t subids[8] = {7, 0, 0, 0, 9, 0, 0, 0};
    return (struct store_qentry){.client_id = {(const uint8_t *)id, strlen(id)}, .msg_id = msg_id, .qos = 1,
                                 .size = size, .nsub_ids = 2, .sub_ids = {subids, 8}};
}

static uint32_t refs(struct store_txn *t, uint64_t id)
{
    struct store_msg m;
    cr_assert_eq(store_msg_get(t, id, &m), 0, "message %lu missing", (unsigned long)id);
    return m.refs;
}

static int collect(void *arg, const struct store_qentry *e)
{
    uint64_t *ids = arg;
    ids[++ids[0]] = e->msg_id;
    return 0;
}

Test(queue, put_get_roundtrip)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_msg m = msg_rec(5u << 16, "hello"), got;
    m.retain = true;
    m.expire_at_ms = 1234;
    cr_assert_eq(store_msg_put(t, &m), 0);
    cr_assert_eq(store_msg_get(t, m.id, &got), 0);
    cr_assert_eq(got.id, m.id);
    cr_assert_eq(got.refs, 0);
    cr_assert(got.retain);
    cr_assert_eq(got.expire_at_ms, 1234);
    cr_assert_eq(got.origin, 2);
    cr_assert(bytes_eq(got.topic, m.topic) && bytes_eq(got.props, m.props) && bytes_eq(got.publisher, m.publisher) &&
              bytes_eq(got.payload, m.payload));
    struct store_qentry e = entry("c1", m.id, 10), ge;
    cr_assert_eq(store_queue_add(t, &e), 0);
    cr_assert_eq(store_queue_get(t, U("c1"), m.id, &ge), 0);
    cr_assert_eq(ge.qos, 1);
    cr_assert_eq(ge.nsub_ids, 2);
    cr_assert_eq(bytes_get_u32le(ge.sub_ids.p + 4), 9);
    cr_assert(bytes_eq(ge.client_id, B("c1")));
    commit(t, 5);
    store_close(s);
    check_leaks();
}

Test(queue, refcount_and_gc)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_msg m = msg_rec(1, "x");
    cr_assert_eq(store_msg_put(t, &m), 0);
    struct store_qentry a = entry("alice", 1, 4), b = entry("bob", 1, 4);
    cr_assert_eq(store_queue_add(t, &a), 0);
    cr_assert_eq(store_queue_add(t, &b), 0);
    cr_assert_eq(store_queue_add(t, &b), 1, "the same entry again replaces, not counted twice");
    cr_assert_eq(refs(t, 1), 2);
    struct store_qentry nomsg = entry("alice", 99, 4);
    cr_assert_eq(store_queue_add(t, &nomsg), STORE_ENOTFOUND);
    cr_assert_eq(store_queue_del(t, U("alice"), 1), 1);
    cr_assert_eq(store_queue_del(t, U("alice"), 1), 0);
    cr_assert_eq(refs(t, 1), 1);
    cr_assert_eq(store_queue_del(t, U("bob"), 1), 1);
    struct store_msg got;
    cr_assert_eq(store_msg_get(t, 1, &got), STORE_ENOTFOUND, "the last ack deletes the message");
    /* a message nobody took is collected */
    cr_assert_eq(store_msg_put(t, &m), 0);
    cr_assert_eq(store_msg_gc(t, 1), 1);
    cr_assert_eq(store_msg_gc(t, 1), 0);
    commit(t, 2);
    store_close(s);
    check_leaks();
}

Test(queue, stat_counts_and_bytes)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_qstat st;
    cr_assert_eq(store_queue_stat(t, U("c"), &st), 0);
    cr_assert_eq(st.count, 0);
    for (uint64_t i = 1; i <= 3; i++) {
        struct store_msg m = msg_rec(i, "abc");
        cr_assert_eq(store_msg_put(t, &m), 0);
        struct store_qentry e = entry("c", i, 100);
        cr_assert_eq(store_queue_add(t, &e), 0);
    }
    cr_assert_eq(store_queue_stat(t, U("c"), &st), 0);
    cr_assert_eq(st.count, 3);
    cr_assert_eq(st.bytes, 300);
    cr_assert_eq(store_queue_del(t, U("c"), 2), 1);
    cr_assert_eq(store_queue_stat(t, U("c"), &st), 0);
    cr_assert_eq(st.count, 2);
    cr_assert_eq(st.bytes, 200);
    commit(t, 1);
    store_close(s);
    check_leaks();
}

Test(queue, state_updates)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_msg m = msg_rec(3, "x");
    cr_assert_eq(store_msg_put(t, &m), 0);
    struct store_qentry e = entry("c", 3, 1), got;
    e.qos = 2;
    cr_assert_eq(store_queue_add(t, &e), 0);
    cr_assert_eq(store_queue_set_state(t, U("c"), 3, STORE_Q_SENT, 17), 1);
    cr_assert_eq(store_queue_get(t, U("c"), 3, &got), 0);
    cr_assert_eq(got.state, STORE_Q_SENT);
    cr_assert_eq(got.pid, 17);
    cr_assert_eq(got.nsub_ids, 2, "the update keeps the rest");
    cr_assert_eq(store_queue_set_state(t, U("c"), 4, STORE_Q_SENT, 1), 0);
    cr_assert_eq(store_queue_set_state(t, U("c"), 3, 9, 1), -EINVAL);
    cr_assert_eq(refs(t, 3), 1, "a state change does not count a reference");
    commit(t, 1);
    store_close(s);
    check_leaks();
}

Test(queue, order_and_prefix)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    uint64_t ids[] = {70000, 3, 256, 1ull << 40, 2};
    for (size_t i = 0; i < 5; i++) {
        struct store_msg m = msg_rec(ids[i], "x");
        cr_assert_eq(store_msg_put(t, &m), 0);
        struct store_qentry e = entry("ab", ids[i], 1);
        cr_assert_eq(store_queue_add(t, &e), 0);
        struct store_qentry other = entry("abc", ids[i], 1);
        cr_assert_eq(store_queue_add(t, &other), 0);
    }
    uint64_t got[16] = {0};
    cr_assert_eq(store_queue_foreach(t, U("ab"), collect, got), 0);
    cr_assert_eq(got[0], 5, "\"ab\" does not take \"abc\"'s entries");
    uint64_t want[] = {2, 3, 256, 70000, 1ull << 40};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(got[i + 1], want[i]);
    memset(got, 0, sizeof(got));
    cr_assert_eq(store_queue_foreach(t, NULL, 0, collect, got), 0);
    cr_assert_eq(got[0], 10);
    commit(t, 1);
    store_close(s);
    check_leaks();
}

Test(queue, session_end_takes_entries_counters_and_inbound)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_session a = session_rec(U("alice"), 1), b = session_rec(U("bob"), 1);
    cr_assert_eq(store_session_put(t, &a), 0);
    cr_assert_eq(store_session_put(t, &b), 0);
    for (uint64_t i = 1; i <= 4; i++) {
        struct store_msg m = msg_rec(i, "payload");
        cr_assert_eq(store_msg_put(t, &m), 0);
        struct store_qentry ea = entry("alice", i, 7);
        cr_assert_eq(store_queue_add(t, &ea), 0);
        if (i % 2) {
            struct store_qentry eb = entry("bob", i, 7);
            cr_assert_eq(store_queue_add(t, &eb), 0);
        }
    }
    cr_assert_eq(store_inbound_put(t, U("alice"), 5), 0);
    cr_assert_eq(store_inbound_put(t, U("alice"), 5), 1);
    cr_assert_eq(store_inbound_put(t, U("bob"), 6), 0);
    cr_assert_eq(store_session_del(t, U("alice")), 0);
    struct store_qstat st;
    cr_assert_eq(store_queue_stat(t, U("alice"), &st), 0);
    cr_assert_eq(st.count, 0);
    uint64_t got[16] = {0};
    cr_assert_eq(store_queue_foreach(t, U("alice"), collect, got), 0);
    cr_assert_eq(got[0], 0);
    struct store_msg m;
    cr_assert_eq(store_msg_get(t, 2, &m), STORE_ENOTFOUND, "alice's alone are collected");
    cr_assert_eq(store_msg_get(t, 4, &m), STORE_ENOTFOUND);
    cr_assert_eq(refs(t, 1), 1, "bob's stay");
    cr_assert_eq(refs(t, 3), 1);
    cr_assert_eq(store_inbound_del(t, U("alice"), 5), 0, "alice's inbound ids went with her");
    cr_assert_eq(store_inbound_del(t, U("bob"), 6), 1);
    commit(t, 1);
    store_close(s);
    check_leaks();
}

static int count_inbound(void *arg, struct store_bytes id, uint16_t pid)
{
    (void)id;
    (void)pid;
    (*(int *)arg)++;
    return 0;
}

Test(queue, snapshot_carries_the_tables)
{
    struct store *s = open_at(env_dir);
    populate(s);
    struct store_txn *t = wbegin(s);
    for (uint64_t i = 1; i <= 3; i++) {
        struct store_msg m = msg_rec(i, "payload");
        cr_assert_eq(store_msg_put(t, &m), 0);
        struct store_qentry e = entry("alice", i, 7);
        cr_assert_eq(store_queue_add(t, &e), 0);
    }
    cr_assert_eq(store_inbound_put(t, U("alice"), 300), 0);
    commit(t, 6);
    size_t len;
    uint64_t idx;
    uint8_t *snap = take_snapshot(s, &len, &idx);
    cr_assert_eq(idx, 6);
    struct store *s2 = open_at(env_dir2);
    cr_assert_eq(store_snapshot_restore(s2, snap, len), 0);
    t = rbegin(s2);
    uint64_t got[16] = {0};
    cr_assert_eq(store_queue_foreach(t, U("alice"), collect, got), 0);
    cr_assert_eq(got[0], 3);
    cr_assert_eq(refs(t, 2), 1);
    struct store_qstat st;
    cr_assert_eq(store_queue_stat(t, U("alice"), &st), 0);
    cr_assert_eq(st.count, 3);
    int n = 0;
    cr_assert_eq(store_inbound_foreach(t, NULL, 0, count_inbound, &n), 0);
    cr_assert_eq(n, 1);
    store_txn_end(t);
    /* a damaged queue record is refused as a whole */
    snap[len - 1] ^= 0xFF;
    cr_assert_eq(store_snapshot_restore(s2, snap, len), STORE_ECORRUPT);
    free(snap);
    store_close(s2);
    store_close(s);
    check_leaks();
}

Test(queue, refused_input)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s);
    struct store_msg m = msg_rec(1, "x");
    m.qos = 3;
    cr_assert_eq(store_msg_put(t, &m), -EINVAL);
    struct store_qentry e = entry("a\0b", 1, 1);
    e.client_id.len = 3;
    cr_assert_eq(store_queue_add(t, &e), -EINVAL);
    struct store_qentry many = entry("a", 1, 1);
    many.nsub_ids = 3; /* more than sub_ids holds */
    cr_assert_eq(store_queue_add(t, &many), -EINVAL);
    cr_assert_eq(store_inbound_put(t, NULL, 0, 1), -EINVAL);
    store_txn_end(t);
    store_close(s);
    check_leaks();
}
