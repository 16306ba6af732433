/* Tests for broker/deliver.c: routing (QoS downgrade, No Local, overlapping
 * subscriptions, shared groups, $-topics, Retain As Published) and the
 * outgoing path to one session (offline queue and its limits, message expiry,
 * the inflight window, packet ids, topic aliases, the client's maximum packet
 * size, the write backlog). No socket: connections are decoded from their
 * output buffer (helpers.c). */
#include <string.h>

#include "helpers.h"

TestSuite(deliver, .fini = fx_teardown);

static struct fx_pkt pk[FX_MAX_PKTS];

/* Reads c's output and asserts it is exactly the PUBLISHes with these
 * payloads, in this order (a NULL-terminated list). */
static void expect_payloads(struct conn *c, const char *const *want)
{
    int n = fx_read(c, pk, FX_MAX_PKTS);
    int k = 0;
    while (want[k])
        k++;
    cr_assert_eq(n, k, "%s got %d packets, expected %d", c->client_id, n, k);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(pk[i].type, PROTO_PUBLISH, "packet %d", i);
        cr_expect_str_eq(pk[i].payload, want[i], "packet %d of %s", i, c->client_id);
    }
}

#define PAYLOADS(c, ...) expect_payloads((c), (const char *const[]){__VA_ARGS__, NULL})

static bool has_id(const struct fx_pkt *p, uint32_t id)
{
    for (uint32_t i = 0; i < p->nids; i++)
        if (p->ids[i] == id)
            return true;
    return false;
}

/* ---- routing -------------------------------------------------------------------------- */

Test(deliver, qos_is_the_lower_of_message_and_subscription)
{
    fx_start();
    struct session *s[3];
    struct conn *c[3];
    const char *ids[3] = {"q0", "q1", "q2"};
    for (int i = 0; i < 3; i++) {
        s[i] = fx_session(ids[i]);
        fx_subscribe(s[i], "t", (struct fx_sub_opts){.qos = (uint8_t)i});
        c[i] = fx_connect(s[i], PROTO_V311);
    }
    for (uint8_t mq = 0; mq <= 2; mq++) {
        cr_expect_eq(fx_route("t", "m", mq, false, NULL), 3);
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(fx_read(c[i], pk, FX_MAX_PKTS), 1);
            uint8_t want = mq < i ? mq : (uint8_t)i;
            cr_expect_eq(pk[0].qos, want, "message QoS %u, subscription QoS %d: got %u", mq, i, pk[0].qos);
            cr_expect_eq(pk[0].packet_id != 0, want > 0, "a packet id exactly when QoS > 0");
        }
    }
    fx_finish();
}

Test(deliver, no_local_skips_the_publisher_only)
{
    fx_start();
    struct session *pub = fx_session("pub"), *other = fx_session("other"), *echo = fx_session("echo");
    fx_subscribe(pub, "t/+", (struct fx_sub_opts){.qos = 1, .no_local = true});
    fx_subscribe(other, "t/+", (struct fx_sub_opts){.qos = 1, .no_local = true});
    fx_subscribe(echo, "t/#", (struct fx_sub_opts){.qos = 1});
    struct conn *cp = fx_connect(pub, PROTO_V5), *co = fx_connect(other, PROTO_V5), *ce = fx_connect(echo, PROTO_V5);

    cr_expect_eq(fx_route("t/x", "from pub", 1, false, "pub"), 2);
    FX_EXPECT_SILENT(cp);
    PAYLOADS(co, "from pub");
    PAYLOADS(ce, "from pub");

    cr_expect_eq(fx_route("t/x", "from echo", 1, false, "echo"), 3, "No Local is off for echo's own subscription");
    PAYLOADS(cp, "from echo");
    PAYLOADS(co, "from echo");
    PAYLOADS(ce, "from echo");
    fx_finish();
}

Test(deliver, no_local_on_one_of_two_overlapping_subscriptions)
{
    fx_start();
    struct session *s = fx_session("self");
    fx_subscribe(s, "a/b", (struct fx_sub_opts){.qos = 2, .no_local = true, .sub_id = 1});
    fx_subscribe(s, "a/+", (struct fx_sub_opts){.qos = 1, .sub_id = 2});
    struct conn *c = fx_connect(s, PROTO_V5);
    cr_expect_eq(fx_route("a/b", "own", 2, false, "self"), 1);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_eq(pk[0].qos, 1, "only the subscription without No Local counts");
    cr_expect_eq(pk[0].nids, 1);
    cr_expect(has_id(&pk[0], 2));
    fx_finish();
}

Test(deliver, overlapping_subscriptions_give_one_copy_at_the_highest_qos_with_every_id)
{
    fx_start();
    struct session *s = fx_session("ov");
    fx_subscribe(s, "a/+", (struct fx_sub_opts){.qos = 1, .sub_id = 3});
    fx_subscribe(s, "a/#", (struct fx_sub_opts){.qos = 2, .sub_id = 7});
    fx_subscribe(s, "a/b", (struct fx_sub_opts){.qos = 0});
    fx_subscribe(s, "+/b", (struct fx_sub_opts){.qos = 0, .sub_id = 9});
    struct conn *c = fx_connect(s, PROTO_V5);

    cr_expect_eq(fx_route("a/b", "x", 2, false, NULL), 1, "one session matched");
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1, "one copy");
    cr_expect_eq(pk[0].qos, 2);
    cr_expect_eq(pk[0].nids, 3);
    cr_expect(has_id(&pk[0], 3) && has_id(&pk[0], 7) && has_id(&pk[0], 9));

    /* the next message starts a fresh set of identifiers */
    cr_expect_eq(fx_route("a/c", "y", 1, false, NULL), 1);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_eq(pk[0].qos, 1);
    cr_expect_eq(pk[0].nids, 2);
    cr_expect(has_id(&pk[0], 3) && has_id(&pk[0], 7));
    cr_expect(!has_id(&pk[0], 9));
    fx_finish();
}

Test(deliver, highest_qos_wins_whatever_the_match_order)
{
    fx_start();
    /* four sessions with the same four matching filters; in session i only
     * filter i grants QoS 2, so the highest is not the first match for most */
    static const char *filters[4] = {"a/b", "a/+", "a/#", "#"};
    struct conn *c[4];
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof(id), "s%d", i);
        struct session *s = fx_session(id);
        for (int f = 0; f < 4; f++)
            fx_subscribe(s, filters[f], (struct fx_sub_opts){.qos = f == i ? 2 : 0, .rap = f == i});
        c[i] = fx_connect(s, PROTO_V5);
    }
    cr_expect_eq(fx_route("a/b", "x", 2, true, NULL), 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(fx_read(c[i], pk, FX_MAX_PKTS), 1, "one copy for session %d", i);
        cr_expect_eq(pk[0].qos, 2, "session %d: QoS %u", i, pk[0].qos);
        cr_expect(pk[0].retain, "session %d: Retain As Published of any matching subscription", i);
    }
    fx_finish();
}

Test(deliver, v311_gets_no_subscription_identifiers)
{
    fx_start();
    struct session *s = fx_session("v3");
    fx_subscribe(s, "a/#", (struct fx_sub_opts){.qos = 1, .sub_id = 5});
    struct conn *c = fx_connect(s, PROTO_V311);
    fx_route("a/b", "x", 1, false, NULL);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_eq(pk[0].nids, 0);
    fx_finish();
}

Test(deliver, shared_group_round_robin_one_copy_per_message)
{
    fx_start();
    const char *ids[3] = {"m1", "m2", "m3"};
    struct conn *c[3];
    for (int i = 0; i < 3; i++) {
        struct session *s = fx_session(ids[i]);
        fx_subscribe(s, "$share/g/job/+", (struct fx_sub_opts){.qos = 1, .sub_id = 40 + (uint32_t)i});
        c[i] = fx_connect(s, PROTO_V5);
    }
    struct session *plain = fx_session("plain");
    fx_subscribe(plain, "job/#", (struct fx_sub_opts){.qos = 0});
    struct conn *cpl = fx_connect(plain, PROTO_V5);

    int got[3] = {0};
    int order[9];
    for (int k = 0; k < 9; k++) {
        char payload[8];
        snprintf(payload, sizeof(payload), "%d", k);
        cr_expect_eq(fx_route("job/x", payload, 1, false, NULL), 2, "one group member and the plain subscriber");
        order[k] = -1;
        for (int i = 0; i < 3; i++) {
            int n = fx_read(c[i], pk, FX_MAX_PKTS);
            if (!n)
                continue;
            cr_assert_eq(n, 1);
            cr_expect_eq(order[k], -1, "message %d went to two members", k);
            order[k] = i;
            got[i]++;
            cr_expect_str_eq(pk[0].payload, payload);
            cr_expect_eq(pk[0].nids, 1);
            cr_expect(has_id(&pk[0], 40 + (uint32_t)i), "the member's own subscription identifier");
        }
        cr_assert_neq(order[k], -1, "message %d went to no member", k);
    }
    for (int i = 0; i < 3; i++)
        cr_expect_eq(got[i], 3, "member %d got %d of 9", i, got[i]);
    for (int k = 3; k < 9; k++)
        cr_expect_eq(order[k], order[k - 3], "round robin: message %d", k);
    cr_expect_eq(fx_read(cpl, pk, FX_MAX_PKTS), 9, "a non-shared subscriber gets every message");
    fx_finish();
}

Test(deliver, shared_group_prefers_connected_members)
{
    fx_start();
    struct session *off = fx_session("off"), *on = fx_session("on");
    fx_subscribe(off, "$share/g/t", (struct fx_sub_opts){.qos = 1});
    fx_subscribe(on, "$share/g/t", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(on, PROTO_V5);
    for (int k = 0; k < 4; k++)
        cr_expect_eq(fx_route("t", "x", 1, false, NULL), 1);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 4, "the connected member takes every message");
    for (int k = 0; k < 4; k++)
        fx_client_ack(c, PROTO_PUBACK, pk[k].packet_id, 0);
    struct conn *co = fx_connect(off, PROTO_V5);
    fx_resume(off, true);
    FX_EXPECT_SILENT(co);

    /* nobody connected: the messages are queued with the members in turn */
    fx_disconnect(off);
    fx_disconnect(on);
    for (int k = 0; k < 4; k++)
        cr_expect_eq(fx_route("t", "q", 1, false, NULL), 1);
    co = fx_connect(off, PROTO_V5);
    fx_resume(off, true);
    c = fx_connect(on, PROTO_V5);
    fx_resume(on, true);
    cr_expect_eq(fx_read(co, pk, FX_MAX_PKTS), 2);
    cr_expect_eq(fx_read(c, pk, FX_MAX_PKTS), 2);
    fx_finish();
}

Test(deliver, shared_group_qos_downgrade_and_leaving_member)
{
    fx_start();
    struct session *a = fx_session("a"), *b = fx_session("b");
    fx_subscribe(a, "$share/g/t", (struct fx_sub_opts){.qos = 0});
    fx_subscribe(b, "$share/g/t", (struct fx_sub_opts){.qos = 2});
    struct conn *ca = fx_connect(a, PROTO_V5), *cb = fx_connect(b, PROTO_V5);
    fx_route("t", "1", 2, false, NULL);
    fx_route("t", "2", 2, false, NULL);
    cr_assert_eq(fx_read(ca, pk, FX_MAX_PKTS), 1);
    cr_expect_eq(pk[0].qos, 0);
    cr_assert_eq(fx_read(cb, pk, FX_MAX_PKTS), 1);
    cr_expect_eq(pk[0].qos, 2);

    fx_unsubscribe(a, "$share/g/t");
    for (int k = 0; k < 3; k++)
        cr_expect_eq(fx_route("t", "x", 1, false, NULL), 1);
    FX_EXPECT_SILENT(ca);
    cr_expect_eq(fx_read(cb, pk, FX_MAX_PKTS), 3, "the remaining member gets them all");
    fx_unsubscribe(b, "$share/g/t");
    cr_expect_eq(fx_route("t", "x", 1, false, NULL), 0, "the group is gone");
    fx_finish();
}

Test(deliver, dollar_topics_do_not_match_leading_wildcards)
{
    fx_start();
    struct session *all = fx_session("all"), *plus = fx_session("plus"), *sys = fx_session("sys"),
                   *dol = fx_session("dol");
    fx_subscribe(all, "#", (struct fx_sub_opts){.qos = 0});
    fx_subscribe(plus, "+/info", (struct fx_sub_opts){.qos = 0});
    fx_subscribe(sys, "$SYS/#", (struct fx_sub_opts){.qos = 0});
    fx_subscribe(dol, "$app/+", (struct fx_sub_opts){.qos = 0});
    struct conn *ca = fx_connect(all, PROTO_V311), *cp = fx_connect(plus, PROTO_V311),
                *cs = fx_connect(sys, PROTO_V311), *cd = fx_connect(dol, PROTO_V311);

    cr_expect_eq(fx_route("$SYS/info", "s", 0, false, NULL), 1);
    PAYLOADS(cs, "s");
    FX_EXPECT_SILENT(ca);
    FX_EXPECT_SILENT(cp);
    cr_expect_eq(fx_route("$app/info", "d", 0, false, NULL), 1);
    PAYLOADS(cd, "d");
    FX_EXPECT_SILENT(ca);
    FX_EXPECT_SILENT(cp);
    cr_expect_eq(fx_route("app/info", "n", 0, false, NULL), 2);
    PAYLOADS(ca, "n");
    PAYLOADS(cp, "n");
    FX_EXPECT_SILENT(cs);
    FX_EXPECT_SILENT(cd);
    cr_expect_eq(fx_route("nothing", "z", 0, false, NULL), 1, "only # matches");
    cr_expect_eq(fx_route("$nothing", "z", 0, false, NULL), 0);
    fx_finish();
}

Test(deliver, retain_flag_kept_only_with_retain_as_published)
{
    fx_start();
    struct session *keep = fx_session("keep"), *clear = fx_session("clear");
    fx_subscribe(keep, "t", (struct fx_sub_opts){.qos = 1, .rap = true});
    fx_subscribe(clear, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *ck = fx_connect(keep, PROTO_V5), *cc = fx_connect(clear, PROTO_V5);
    fx_route("t", "r", 1, true, NULL);
    fx_route("t", "n", 1, false, NULL);
    cr_assert_eq(fx_read(ck, pk, FX_MAX_PKTS), 2);
    cr_expect(pk[0].retain);
    cr_expect(!pk[1].retain);
    cr_assert_eq(fx_read(cc, pk, FX_MAX_PKTS), 2);
    cr_expect(!pk[0].retain, "a live message loses its retain flag without Retain As Published");
    cr_expect(!pk[1].retain);
    fx_finish();
}

Test(deliver, unsubscribe_stops_routing)
{
    fx_start();
    struct session *s = fx_session("u");
    fx_subscribe(s, "a/+", (struct fx_sub_opts){.qos = 1});
    fx_subscribe(s, "a/b", (struct fx_sub_opts){.qos = 2});
    struct conn *c = fx_connect(s, PROTO_V5);
    fx_unsubscribe(s, "a/b");
    cr_expect_eq(fx_route("a/b", "x", 2, false, NULL), 1);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_eq(pk[0].qos, 1, "the QoS of the subscription left");
    fx_unsubscribe(s, "a/+");
    cr_expect_eq(fx_route("a/b", "x", 2, false, NULL), 0);
    FX_EXPECT_SILENT(c);
    fx_finish();
}

/* ---- queueing for an offline session ---------------------------------------------------- */

Test(deliver, offline_session_queues_qos1_and_qos2_not_qos0)
{
    fx_start();
    struct session *s = fx_session("off");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 2});
    cr_expect_eq(fx_route("t", "q0", 0, false, NULL), 1);
    cr_expect_eq(fx_route("t", "q1", 1, false, NULL), 1);
    cr_expect_eq(fx_route("t", "q2", 2, false, NULL), 1);
    cr_expect_eq(fx_route("t", "q0b", 0, false, NULL), 1);
    struct conn *c = fx_connect(s, PROTO_V5);
    FX_EXPECT_SILENT(c);
    fx_resume(s, true);
    PAYLOADS(c, "q1", "q2");
    cr_expect_eq(pk[0].qos, 1);
    cr_expect_eq(pk[1].qos, 2);
    cr_expect(!pk[0].dup && !pk[1].dup, "never sent before: no DUP");
    cr_expect_neq(pk[0].packet_id, pk[1].packet_id);
    fx_finish();
}

static void queue_limit(int policy, const char *const *want)
{
    fx_start();
    fx_b->cfg.max_queued = 3;
    fx_b->cfg.queue_policy = policy;
    struct session *s = fx_session("full");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    uint64_t dropped = fx_b->stats.publish_dropped;
    for (int k = 1; k <= 5; k++) {
        char p[4];
        snprintf(p, sizeof(p), "%d", k);
        fx_route("t", p, 1, false, NULL);
    }
    cr_expect_eq(fx_b->stats.publish_dropped - dropped, 2, "two messages counted as dropped");
    struct conn *c = fx_connect(s, PROTO_V311);
    fx_resume(s, true);
    expect_payloads(c, want);
    fx_finish();
}

Test(deliver, full_queue_drops_the_newest_by_default)
{
    queue_limit(CONFIG_QUEUE_DROP_NEW, (const char *const[]){"1", "2", "3", NULL});
}

Test(deliver, full_queue_drops_the_oldest_when_configured)
{
    queue_limit(CONFIG_QUEUE_DROP_OLDEST, (const char *const[]){"3", "4", "5", NULL});
}

Test(deliver, queue_limit_zero_is_unlimited)
{
    fx_start();
    fx_b->cfg.max_queued = 0;
    struct session *s = fx_session("many");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    for (int k = 0; k < 50; k++)
        fx_route("t", "x", 1, false, NULL);
    struct conn *c = fx_connect(s, PROTO_V311);
    fx_resume(s, true);
    cr_expect_eq(fx_read(c, pk, FX_MAX_PKTS), 50);
    fx_finish();
}

Test(deliver, queue_bytes_limit_counts_topic_and_payload)
{
    fx_start();
    fx_b->cfg.max_queued = 0;
    fx_b->cfg.max_queued_bytes = 9; /* three of "t" + "pN" */
    struct session *s = fx_session("bytes");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    uint64_t dropped = fx_b->stats.publish_dropped;
    for (int k = 1; k <= 5; k++) {
        char p[4];
        snprintf(p, sizeof(p), "p%d", k);
        fx_route("t", p, 1, false, NULL);
    }
    cr_expect_eq(fx_b->stats.publish_dropped - dropped, 2);
    cr_expect_eq(s->queue.bytes, 9);
    cr_expect_eq(fx_b->queued_bytes, 9);
    struct conn *c = fx_connect(s, PROTO_V311);
    fx_resume(s, true);
    PAYLOADS(c, "p1", "p2", "p3");
    cr_expect_eq(s->queue.bytes, 0, "in flight is not queued");
    cr_expect_eq(fx_b->queued_bytes, 0);
    fx_finish();
}

Test(deliver, node_queue_bytes_limit_is_shared_by_every_session)
{
    fx_start();
    fx_b->cfg.max_queued = 0;
    fx_b->cfg.max_queued_bytes = 0;
    fx_b->cfg.max_queued_bytes_total = 9;
    struct session *a = fx_session("na"), *b = fx_session("nb");
    fx_subscribe(a, "t", (struct fx_sub_opts){.qos = 1});
    fx_subscribe(b, "t", (struct fx_sub_opts){.qos = 1});
    uint64_t dropped = fx_b->stats.publish_dropped;
    for (int k = 0; k < 3; k++)
        fx_route("t", "pp", 1, false, NULL);
    /* one message shared by both queues counts in each */
    cr_expect_eq(a->queue.count + b->queue.count, 3);
    cr_expect_eq(fx_b->queued_bytes, 9);
    cr_expect_eq(fx_b->stats.publish_dropped - dropped, 3);
    broker__outlist_clear(&a->queue);
    cr_expect_eq(fx_b->queued_bytes, b->queue.bytes, "a cleared queue gives its bytes back");
    fx_finish();
}

Test(deliver, retained_messages_stream_as_the_window_frees)
{
    fx_start();
    fx_b->cfg.max_inflight = 2;
    fx_b->cfg.max_queued = 1; /* the stream does not go through the queue */
    for (int k = 0; k < 5; k++) {
        char t[8];
        snprintf(t, sizeof(t), "r/%d", k);
        struct msg *m = fx_msg(t, "v", 1, true, NULL, 0);
        cr_assert_eq(broker__retain_put(fx_b, m, false), 0);
        broker__msg_unref(m);
    }
    struct session *s = fx_session("stream");
    struct conn *c = fx_connect(s, PROTO_V311);
    fx_resume(s, false);
    struct sub *sub = fx_subscribe(s, "r/#", (struct fx_sub_opts){.qos = 1});
    broker__retain_send(fx_b, s, sub);
    int got = 0;
    for (int round = 0; round < 4; round++) {
        int n = fx_read(c, pk, FX_MAX_PKTS);
        cr_expect_leq(n, 2, "never more than the window");
        for (int i = 0; i < n; i++) {
            cr_expect(pk[i].retain && pk[i].qos == 1);
            fx_client_ack(c, PROTO_PUBACK, pk[i].packet_id, 0);
        }
        got += n;
    }
    cr_expect_eq(got, 5);
    cr_expect_eq(fx_b->stats.publish_dropped, 0);
    cr_expect(list_empty(&s->retain_streams), "the stream ended");
    fx_finish();
}

Test(deliver, queued_messages_expire)
{
    fx_start();
    struct session *s = fx_session("exp");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    struct msg *soon = fx_msg("t", "soon", 1, false, NULL, 30);
    struct msg *later = fx_msg("t", "later", 1, false, NULL, 60000);
    struct msg *never = fx_msg("t", "never", 1, false, NULL, 0);
    broker__route(fx_b, soon, NULL);
    broker__route(fx_b, later, NULL);
    broker__route(fx_b, never, NULL);
    broker__msg_unref(soon);
    broker__msg_unref(later);
    broker__msg_unref(never);
    fx_sleep(40);
    struct conn *c = fx_connect(s, PROTO_V5);
    fx_resume(s, true);
    PAYLOADS(c, "later", "never");
    cr_expect(pk[0].has_expiry);
    cr_expect(pk[0].expiry >= 59 && pk[0].expiry <= 60, "the expiry left, rounded up: %u", pk[0].expiry);
    cr_expect(!pk[1].has_expiry);
    fx_finish();
}

Test(deliver, expired_qos0_is_not_sent)
{
    fx_start();
    struct session *s = fx_session("e0");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 0});
    struct conn *c = fx_connect(s, PROTO_V5);
    struct msg *m = fx_msg("t", "late", 0, false, NULL, 5);
    fx_sleep(10);
    uint64_t dropped = fx_b->stats.publish_dropped;
    broker__route(fx_b, m, NULL);
    broker__msg_unref(m);
    FX_EXPECT_SILENT(c);
    cr_expect_eq(fx_b->stats.publish_dropped, dropped + 1);
    fx_finish();
}

Test(deliver, message_is_shared_not_copied)
{
    fx_start();
    struct session *a = fx_session("a"), *b = fx_session("b");
    fx_subscribe(a, "t", (struct fx_sub_opts){.qos = 1});
    fx_subscribe(b, "t", (struct fx_sub_opts){.qos = 2});
    struct msg *m = fx_msg("t", "shared", 2, false, NULL, 0);
    broker__route(fx_b, m, NULL);
    cr_expect_eq(m->refs, 3, "one reference per queued copy, plus ours");
    struct conn *ca = fx_connect(a, PROTO_V5);
    fx_resume(a, true);
    PAYLOADS(ca, "shared");
    fx_client_ack(ca, PROTO_PUBACK, pk[0].packet_id, 0);
    cr_expect_eq(m->refs, 2, "acknowledged: a's reference released");
    broker__msg_unref(m);
    fx_finish(); /* b's copy is freed with the broker (leak check) */
}

/* ---- the inflight window -------------------------------------------------------------------- */

Test(deliver, window_is_the_lower_of_max_inflight_and_receive_maximum)
{
    fx_start();
    fx_b->cfg.max_inflight = 3;
    struct session *small = fx_session("small"), *big = fx_session("big");
    fx_subscribe(small, "t", (struct fx_sub_opts){.qos = 1});
    fx_subscribe(big, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *cs = fx_connect(small, PROTO_V5), *cb = fx_connect(big, PROTO_V5);
    cs->peer_receive_max = 2; /* the client's Receive Maximum (CONNECT) */
    for (int k = 1; k <= 6; k++) {
        char p[4];
        snprintf(p, sizeof(p), "%d", k);
        fx_route("t", p, 1, false, NULL);
    }
    PAYLOADS(cs, "1", "2");
    PAYLOADS(cb, "1", "2", "3");
    fx_finish();
}

Test(deliver, qos0_bypasses_the_window)
{
    fx_start();
    fx_b->cfg.max_inflight = 1;
    struct session *s = fx_session("s");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 2});
    struct conn *c = fx_connect(s, PROTO_V311);
    fx_route("t", "a", 1, false, NULL);
    fx_route("t", "b", 1, false, NULL);
    fx_route("t", "c", 0, false, NULL);
    PAYLOADS(c, "a", "c");
    fx_finish();
}

Test(deliver, packet_ids_wrap_and_skip_ids_in_flight)
{
    fx_start();
    struct session *s = fx_session("ids");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(s, PROTO_V311);
    fx_route("t", "a", 1, false, NULL); /* id 1, left unacknowledged */
    s->next_packet_id = 65535;
    fx_route("t", "b", 1, false, NULL);
    fx_route("t", "c", 1, false, NULL);
    PAYLOADS(c, "a", "b", "c");
    cr_expect_eq(pk[0].packet_id, 1);
    cr_expect_eq(pk[1].packet_id, 65535);
    cr_expect_eq(pk[2].packet_id, 2, "0 is never used and 1 is in flight: got %u", pk[2].packet_id);
    fx_finish();
}

/* ---- what the connection allows ------------------------------------------------------------ */

Test(deliver, topic_alias_replaces_a_repeated_topic)
{
    fx_start();
    struct session *s = fx_session("al");
    fx_subscribe(s, "#", (struct fx_sub_opts){.qos = 0});
    struct conn *c = fx_connect(s, PROTO_V5);
    c->peer_alias_max = 1; /* the client's Topic Alias Maximum (CONNECT) */
    fx_route("a/long/topic", "1", 0, false, NULL);
    fx_route("a/long/topic", "2", 0, false, NULL);
    fx_route("other", "3", 0, false, NULL);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 3);
    cr_expect_str_eq(pk[0].topic, "a/long/topic");
    cr_expect_eq(pk[0].alias, 1, "the first use sets alias 1");
    cr_expect_str_eq(pk[1].topic, "", "then the alias alone");
    cr_expect_eq(pk[1].alias, 1);
    cr_expect_str_eq(pk[2].topic, "other", "no alias left for a second topic");
    cr_expect_eq(pk[2].alias, 0);
    fx_finish();
}

Test(deliver, too_large_for_the_client_is_discarded_and_frees_its_slot)
{
    fx_start();
    fx_b->cfg.max_inflight = 1;
    struct session *s = fx_session("mps");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(s, PROTO_V5);
    c->peer_max_packet = 64; /* the client's Maximum Packet Size */
    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    uint64_t dropped = fx_b->stats.publish_dropped;
    fx_route("t", big, 1, false, NULL);
    fx_route("t", "small", 1, false, NULL);
    PAYLOADS(c, "small");
    cr_expect_eq(fx_b->stats.publish_dropped, dropped + 1);
    fx_finish();
}

Test(deliver, write_backlog_drops_qos0_but_keeps_qos1)
{
    fx_start();
    struct session *s = fx_session("slow");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(s, PROTO_V5);
    c->writing = fx_b->cfg.max_write_backlog + 1; /* bytes handed to the socket, not yet written */
    uint64_t dropped = fx_b->stats.publish_dropped;
    fx_route("t", "zero", 0, false, NULL);
    fx_route("t", "one", 1, false, NULL);
    c->writing = 0;
    PAYLOADS(c, "one");
    cr_expect_eq(fx_b->stats.publish_dropped, dropped + 1);
    fx_finish();
}

/* ---- resuming a session ---------------------------------------------------------------------- */

Test(deliver, resend_after_reconnect_respects_a_smaller_receive_maximum)
{
    /* five unacknowledged on the first connection; the next announces
     * Receive Maximum 2: two are resent, each acknowledgement lets the next
     * one go, in order, with its packet id and DUP [MQTT-3.3.4-9, 4.6.0-1] */
    fx_start();
    struct session *s = fx_session("rm");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 2});
    struct conn *c = fx_connect(s, PROTO_V5);
    fx_route("t", "1", 1, false, NULL);
    fx_route("t", "2", 2, false, NULL);
    fx_route("t", "3", 1, false, NULL);
    fx_route("t", "4", 2, false, NULL);
    fx_route("t", "5", 1, false, NULL);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 5);
    uint16_t ids[5];
    for (int k = 0; k < 5; k++)
        ids[k] = pk[k].packet_id;
    fx_disconnect(s);

    c = fx_connect(s, PROTO_V5);
    c->peer_receive_max = 2;
    fx_resume(s, true);
    PAYLOADS(c, "1", "2");
    cr_expect(pk[0].dup && pk[1].dup);
    cr_expect_eq(pk[0].packet_id, ids[0]);
    fx_client_ack(c, PROTO_PUBACK, ids[0], 0);
    PAYLOADS(c, "3");
    cr_expect(pk[0].dup);
    cr_expect_eq(pk[0].packet_id, ids[2]);
    /* a PUBREC: the QoS 2 message stays unacknowledged until PUBCOMP */
    fx_client_ack(c, PROTO_PUBREC, ids[1], 0);
    cr_expect_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_eq(pk[0].type, PROTO_PUBREL);
    fx_client_ack(c, PROTO_PUBCOMP, ids[1], 0);
    PAYLOADS(c, "4");
    cr_expect_eq(pk[0].packet_id, ids[3]);
    fx_client_ack(c, PROTO_PUBACK, ids[2], 0);
    PAYLOADS(c, "5");
    /* nothing is left to resend: new messages flow through the window */
    fx_client_ack(c, PROTO_PUBACK, ids[4], 0);
    fx_route("t", "6", 1, false, NULL);
    PAYLOADS(c, "6");
    cr_expect(!pk[0].dup);
    fx_finish();
}

Test(deliver, resend_sends_every_pubrel_and_counts_them_in_the_window)
{
    /* released messages (waiting for PUBCOMP) get their PUBREL at once and
     * hold their window slot: with Receive Maximum 2 and two of them, the
     * unreleased PUBLISH waits for a PUBCOMP */
    fx_start();
    struct session *s = fx_session("rel");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 2});
    struct conn *c = fx_connect(s, PROTO_V5);
    fx_route("t", "1", 2, false, NULL);
    fx_route("t", "2", 2, false, NULL);
    fx_route("t", "3", 2, false, NULL);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 3);
    uint16_t ids[3] = {pk[0].packet_id, pk[1].packet_id, pk[2].packet_id};
    fx_client_ack(c, PROTO_PUBREC, ids[1], 0);
    fx_client_ack(c, PROTO_PUBREC, ids[2], 0);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 2);
    fx_disconnect(s);

    c = fx_connect(s, PROTO_V5);
    c->peer_receive_max = 2;
    fx_resume(s, true);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 2);
    cr_expect_eq(pk[0].type, PROTO_PUBREL);
    cr_expect_eq(pk[1].type, PROTO_PUBREL);
    fx_client_ack(c, PROTO_PUBCOMP, ids[1], 0);
    PAYLOADS(c, "1");
    cr_expect(pk[0].dup);
    fx_finish();
}

Test(deliver, message_expired_in_flight_is_resent_with_expiry_1_not_0)
{
    /* [MQTT-3.3.2-5]: delivery had started, so the flow completes; the
     * interval sent is what is left, and 0 is never sent */
    fx_start();
    struct session *s = fx_session("inexp");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(s, PROTO_V5);
    struct msg *m = fx_msg("t", "short", 1, false, NULL, 30);
    broker__route(fx_b, m, NULL);
    broker__msg_unref(m);
    PAYLOADS(c, "short");
    cr_expect(pk[0].has_expiry && pk[0].expiry == 1);
    fx_disconnect(s);
    fx_sleep(40);
    c = fx_connect(s, PROTO_V5);
    fx_resume(s, true);
    PAYLOADS(c, "short");
    cr_expect(pk[0].dup);
    cr_expect(pk[0].has_expiry);
    cr_expect_eq(pk[0].expiry, 1, "Message Expiry Interval %u", pk[0].expiry);
    fx_finish();
}

Test(deliver, expired_queued_messages_count_as_dropped)
{
    fx_start();
    struct session *s = fx_session("qexp");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    struct msg *m = fx_msg("t", "gone", 1, false, NULL, 5);
    broker__route(fx_b, m, NULL);
    broker__msg_unref(m);
    fx_route("t", "kept", 1, false, NULL);
    fx_sleep(10);
    uint64_t dropped = fx_b->stats.publish_dropped;
    struct conn *c = fx_connect(s, PROTO_V5);
    fx_resume(s, true);
    PAYLOADS(c, "kept");
    cr_expect_eq(fx_b->stats.publish_dropped, dropped + 1);
    fx_finish();
}

Test(deliver, one_identifier_shared_by_two_subscriptions_is_given_once)
{
    fx_start();
    struct session *s = fx_session("ids");
    fx_subscribe(s, "a/#", (struct fx_sub_opts){.qos = 1, .sub_id = 5});
    fx_subscribe(s, "a/+", (struct fx_sub_opts){.qos = 1, .sub_id = 5});
    fx_subscribe(s, "a/b", (struct fx_sub_opts){.qos = 1, .sub_id = 6});
    struct conn *c = fx_connect(s, PROTO_V5);
    fx_route("a/b", "x", 1, false, NULL);
    PAYLOADS(c, "x");
    cr_expect_eq(pk[0].nids, 2, "%u identifiers", pk[0].nids);
    cr_expect(has_id(&pk[0], 5) && has_id(&pk[0], 6));
    fx_finish();
}
