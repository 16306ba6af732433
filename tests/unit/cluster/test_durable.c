/* Tests for cluster/durable.c: msg_put matched against the stored
 * subscriptions of persistent sessions (clean sessions, QoS 0, shared groups
 * and No Local left out; overlapping subscriptions giving one entry), queue
 * limits under both policies, acks releasing messages, QoS 2 states, inbound
 * ids, session end, the command codec's durable fields, and topic matching. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

static struct store *st;
static uint64_t next_index;

static void setup(void)
{
    tmp_setup();
    cr_assert_eq(store_open(&st, tmp_path("state"), 0), 0);
    next_index = 1;
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    tmp_teardown();
}

TestSuite(durable, .init = setup, .fini = teardown);

/* Applies cmd at the next index, as fsm.c does (msg_put gets its id). */
static int apply(struct cluster_cmd *cmd)
{
    struct store_txn *t;
    cr_assert_eq(store_write_begin(st, &t), 0);
    if (cmd->type == CLUSTER_MSG_PUT)
        cmd->msg_id = next_index << 16;
    int r = cluster__state_apply(t, cmd);
    cr_assert_eq(store_write_commit(t, next_index++), 0);
    return r;
}

static void session(const char *id, uint32_t expiry)
{
    struct cluster_cmd c = cmd_claim(id, 1, 10, true);
    c.expiry = expiry;
    cr_assert_geq(apply(&c), 0);
}

static void sub(const char *id, const char *filter, uint8_t qos, uint32_t sub_id)
{
    struct cluster_cmd c = cmd_sub(CLUSTER_SUB_ADD, id, 10, filter);
    c.qos = qos;
    c.sub_id = sub_id;
    cr_assert_geq(apply(&c), 0);
}

static struct cluster_cmd put(const char *topic, uint8_t qos, const char *payload)
{
    return (struct cluster_cmd){.type = CLUSTER_MSG_PUT, .topic = {(const uint8_t *)topic, (uint32_t)strlen(topic)},
                                .payload = {(const uint8_t *)payload, (uint32_t)strlen(payload)},
                                .client_id = {(const uint8_t *)"pub", 3}, .node = 1, .qos = qos};
}

struct seen {
    int n;
    uint64_t ids[64];
    uint8_t qos[64];
    uint32_t nsub[64];
    char payload[64][16];
};

static int seen_cb(void *arg, const struct cluster_qmsg *m)
{
    struct seen *s = arg;
    s->ids[s->n] = m->msg_id;
    s->qos[s->n] = m->qos;
    s->nsub[s->n] = m->nsub_ids;
    snprintf(s->payload[s->n], 16, "%.*s", (int)m->payload.len, (const char *)m->payload.p);
    s->n++;
    return 0;
}

static struct seen queue_of(const char *id)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(cluster__queue_read(st, (const uint8_t *)id, strlen(id), 0, seen_cb, &s), 0);
    return s;
}

static int count_msgs_cb(void *arg, const struct store_msg *m)
{
    (void)m;
    (*(int *)arg)++;
    return 0;
}

static int msg_count(void)
{
    struct store_txn *t;
    cr_assert_eq(store_read_begin(st, &t), 0);
    int n = 0;
    cr_assert_eq(store_msgs_foreach(t, count_msgs_cb, &n), 0);
    store_txn_end(t);
    return n;
}

Test(durable, put_matches_persistent_sessions_only)
{
    session("durable", 3600);
    session("forever", UINT32_MAX);
    session("clean", 0);
    session("qos0", 3600);
    session("other", 3600);
    sub("durable", "a/+", 1, 0);
    sub("durable", "a/#", 2, 7); /* overlapping: one entry, QoS 2 (capped by the message), id 7 */
    sub("forever", "a/b", 2, 0);
    sub("clean", "a/b", 1, 0);
    sub("qos0", "a/b", 0, 0);
    sub("other", "x/y", 1, 0);
    sub("other", "$share/g/a/b", 1, 0);
    struct cluster_cmd m = put("a/b", 1, "one");
    cr_assert_eq(apply(&m), 2, "durable and forever");
    struct seen d = queue_of("durable");
    cr_assert_eq(d.n, 1);
    cr_assert_eq(d.qos[0], 1);
    cr_assert_eq(d.nsub[0], 1);
    cr_assert_str_eq(d.payload[0], "one");
    cr_assert_eq(queue_of("forever").n, 1);
    cr_assert_eq(queue_of("clean").n, 0);
    cr_assert_eq(queue_of("qos0").n, 0);
    cr_assert_eq(queue_of("other").n, 0);
    cr_assert_eq(msg_count(), 1, "one message record however many sessions");

    struct cluster_cmd none = put("z", 2, "nobody");
    cr_assert_eq(apply(&none), 0);
    cr_assert_eq(msg_count(), 1, "a message nobody took is not kept");
}

Test(durable, no_local_and_dollar_topics)
{
    session("pub", 3600);
    sub("pub", "t", 1, 0);
    struct cluster_cmd c = cmd_sub(CLUSTER_SUB_ADD, "pub", 10, "#");
    c.qos = 1;
    c.no_local = true;
    cr_assert_geq(apply(&c), 0);
    struct cluster_cmd m = put("t", 1, "x");
    cr_assert_eq(apply(&m), 1, "the other subscription still matches");
    struct cluster_cmd d = put("$SYS/x", 1, "x");
    cr_assert_eq(apply(&d), 0, "# does not match $ topics");
}

Test(durable, acks_release_and_collect)
{
    session("a", 60);
    session("b", 60);
    sub("a", "t", 1, 0);
    sub("b", "t", 1, 0);
    struct cluster_cmd m1 = put("t", 1, "m1"), m2 = put("t", 1, "m2");
    cr_assert_eq(apply(&m1), 2);
    cr_assert_eq(apply(&m2), 2);
    struct seen a = queue_of("a");
    cr_assert_eq(a.n, 2);
    cr_assert_str_eq(a.payload[0], "m1", "log order");
    struct cluster_cmd ack = {.type = CLUSTER_QUEUE_ACK, .client_id = {(const uint8_t *)"a", 1}, .msg_id = a.ids[0]};
    cr_assert_eq(apply(&ack), 1);
    cr_assert_eq(apply(&ack), 0, "a repeated ack changes nothing");
    cr_assert_eq(msg_count(), 2);
    ack.client_id = (struct proto_str){(const uint8_t *)"b", 1};
    cr_assert_eq(apply(&ack), 1);
    cr_assert_eq(msg_count(), 1, "acknowledged by every session: gone");
    /* the session's end takes its entries */
    struct cluster_cmd exp = cmd_claim("a", 2, 11, true);
    cr_assert_geq(apply(&exp), 0);
    cr_assert_eq(queue_of("a").n, 0);
    cr_assert_eq(msg_count(), 1, "b still holds m2");
}

Test(durable, limits_drop_newest_or_oldest)
{
    session("s", 60);
    sub("s", "t", 1, 0);
    const char *payloads[] = {"p1", "p2", "p3", "p4"};
    for (int i = 0; i < 4; i++) {
        struct cluster_cmd m = put("t", 1, payloads[i]);
        m.max_queued = 2;
        int r = apply(&m);
        cr_assert_eq(CLUSTER_PUT_QUEUED(r), i < 2 ? 1 : 0);
        cr_assert_eq(CLUSTER_PUT_DROPPED(r), i < 2 ? 0 : 1, "a refused entry is counted");
    }
    struct seen s = queue_of("s");
    cr_assert_eq(s.n, 2);
    cr_assert_str_eq(s.payload[1], "p2");
    for (int i = 0; i < 2; i++) {
        struct cluster_cmd m = put("t", 1, payloads[2 + i]);
        m.max_queued = 2;
        m.queue_policy = 1;
        int r = apply(&m);
        cr_assert_eq(CLUSTER_PUT_QUEUED(r), 1);
        cr_assert_eq(CLUSTER_PUT_DROPPED(r), 1, "the dropped oldest entry is counted");
    }
    s = queue_of("s");
    cr_assert_eq(s.n, 2);
    cr_assert_str_eq(s.payload[0], "p3");
    cr_assert_str_eq(s.payload[1], "p4");
    cr_assert_eq(msg_count(), 2, "dropped messages are collected");
    /* bytes: topic + payload = 3 each, a limit of 7 holds two */
    struct cluster_cmd b = put("t", 1, "p5");
    b.max_queued_bytes = 7;
    b.queue_policy = 1;
    int r = apply(&b);
    cr_assert_eq(CLUSTER_PUT_QUEUED(r), 1);
    cr_assert_eq(CLUSTER_PUT_DROPPED(r), 1);
    cr_assert_eq(queue_of("s").n, 2);
}

Test(durable, qos2_states_and_inbound)
{
    session("s", 60);
    sub("s", "t", 2, 0);
    struct cluster_cmd m = put("t", 2, "x");
    cr_assert_eq(apply(&m), 1);
    struct seen s = queue_of("s");
    struct cluster_cmd sent = {.type = CLUSTER_QUEUE_SENT, .client_id = {(const uint8_t *)"s", 1}, .msg_id = s.ids[0],
                               .pid = 42};
    cr_assert_eq(apply(&sent), 1);
    sent.type = CLUSTER_QUEUE_PUBREC;
    cr_assert_eq(apply(&sent), 1);
    struct store_txn *t;
    cr_assert_eq(store_read_begin(st, &t), 0);
    struct store_qentry e;
    cr_assert_eq(store_queue_get(t, (const uint8_t *)"s", 1, s.ids[0], &e), 0);
    cr_assert_eq(e.state, STORE_Q_PUBREC);
    cr_assert_eq(e.pid, 42);
    store_txn_end(t);
    struct cluster_cmd in = {.type = CLUSTER_INBOUND_ADD, .client_id = {(const uint8_t *)"s", 1}, .pid = 9};
    cr_assert_eq(apply(&in), 0);
    in.type = CLUSTER_INBOUND_DEL;
    cr_assert_eq(apply(&in), 1);
    cr_assert_eq(apply(&in), 0);
}

Test(durable, codec_roundtrip)
{
    struct cluster_cmd m = put("a/b", 2, "payload");
    m.retain = true;
    m.queue_policy = 1;
    m.pid = 513;
    m.max_queued = 1000;
    m.max_queued_bytes = 1ull << 33;
    m.msg_id = 77;
    struct buf b = {0};
    cr_assert_eq(cluster_cmd_encode(&m, &b), 0);
    struct cluster_cmd d;
    size_t pos = 0;
    cr_assert_eq(cluster_cmd_decode(b.data, b.len, &pos, &d), 0);
    cr_assert_eq(pos, b.len);
    cr_assert_eq(d.type, CLUSTER_MSG_PUT);
    cr_assert(d.retain);
    cr_assert_eq(d.queue_policy, 1);
    cr_assert_eq(d.pid, 513);
    cr_assert_eq(d.max_queued, 1000);
    cr_assert_eq(d.max_queued_bytes, 1ull << 33);
    cr_assert_eq(d.msg_id, 77);
    cr_assert_eq(d.qos, 2);
    buf_free(&b);
    /* an unknown queue policy does not decode */
    m.queue_policy = 5;
    cr_assert_eq(cluster_cmd_encode(&m, &b), 0);
    pos = 0;
    cr_assert_eq(cluster_cmd_decode(b.data, b.len, &pos, &d), CLUSTER_ECORRUPT);
    buf_free(&b);
    m.type = 36;
    struct buf c = {0};
    cr_assert_eq(cluster_cmd_encode(&m, &c), -EINVAL);
    buf_free(&c);
}

Test(durable, topic_match)
{
    struct {
        const char *f, *t;
        bool want;
    } cases[] = {
        {"a/b", "a/b", true},   {"a/b", "a/bc", false}, {"a/+", "a/b", true},  {"a/+", "a", false},
        {"a/#", "a", true},     {"a/#", "a/b/c", true}, {"#", "a/b", true},    {"+/+", "/b", true},
        {"a/+/b", "a//b", true}, {"+", "$SYS", false},  {"#", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true},
        {"a", "a/b", false},    {"a/b/c", "a/b", false}, {"+/b", "a/b", true},  {"a/+/#", "a/x", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = cluster__topic_match((const uint8_t *)cases[i].f, strlen(cases[i].f), (const uint8_t *)cases[i].t,
                                        strlen(cases[i].t));
        cr_assert_eq(got, cases[i].want, "%s vs %s", cases[i].f, cases[i].t);
    }
}
