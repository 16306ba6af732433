/* Tests for broker/session.c: creating, finding and freeing sessions (their
 * subscriptions, queued and inflight messages go with them), the set of
 * inbound QoS 2 packet ids, clean and resumed claims, wills (at once, delayed,
 * at expiry) and the expiry of offline sessions. Claims and expiries are
 * applied as committed commands (broker__apply), as on every node. */
#include <string.h>

#include "helpers.h"

TestSuite(session, .fini = fx_teardown);

static struct fx_pkt pk[FX_MAX_PKTS];
static uint64_t log_index = 1000;


/* A committed session_claim of this node for which no CONNECT waits (as one
 * replayed after a restart): the session exists, offline. */
static struct session *claim(const char *id, uint64_t generation, bool clean, uint32_t expiry,
                             const struct cluster_will *will)
{
    struct cluster_cmd cmd = {
        .type = CLUSTER_SESSION_CLAIM,
        .client_id = proto_cstr(id),
        .node = fx_b->cfg.node_id,
        .generation = generation,
        .clean_start = clean,
        .expiry = expiry,
        .has_will = will != NULL,
    };
    if (will)
        cmd.will = *will;
    broker__apply(fx_b, &cmd, 0, log_index++);
    return broker__session_find(fx_b, id, strlen(id));
}

static void expire(const char *id, uint64_t generation)
{
    struct cluster_cmd cmd = {
        .type = CLUSTER_SESSION_EXPIRE,
        .client_id = proto_cstr(id),
        .node = fx_b->cfg.node_id,
        .generation = generation,
    };
    broker__apply(fx_b, &cmd, 0, log_index++);
}

static struct cluster_will will(const char *topic, const char *payload, uint8_t qos, uint32_t delay)
{
    return (struct cluster_will){.topic = proto_cstr(topic), .payload = proto_cstr(payload), .qos = qos,
                                 .delay = delay};
}

/* ---- lifetime --------------------------------------------------------------------------- */

Test(session, create_find_and_list)
{
    fx_start();
    struct session *a = fx_session("alpha"), *b = fx_session("beta");
    cr_expect_eq(broker__session_find(fx_b, "alpha", 5), a);
    cr_expect_eq(broker__session_find(fx_b, "beta", 4), b);
    cr_expect_null(broker__session_find(fx_b, "alph", 4));
    cr_expect_null(broker__session_find(fx_b, "gamma", 5));
    cr_expect_str_eq(a->client_id, "alpha");
    size_t n = 0;
    struct session **all = broker__sessions_all(fx_b, &n);
    cr_assert_not_null(all);
    cr_expect_eq(n, 2);
    cr_expect((all[0] == a && all[1] == b) || (all[0] == b && all[1] == a));
    free(all);
    fx_finish();
}

Test(session, free_takes_its_subscriptions_and_messages)
{
    fx_start();
    struct session *s = fx_session("gone"), *peer = fx_session("peer");
    fx_subscribe(s, "a/#", (struct fx_sub_opts){.qos = 2});
    fx_subscribe(s, "$share/g/a/b", (struct fx_sub_opts){.qos = 1});
    fx_subscribe(peer, "x", (struct fx_sub_opts){.qos = 0});
    cr_expect_eq(fx_b->sub_count, 3);
    struct conn *c = fx_connect(s, PROTO_V5);
    fx_b->cfg.max_inflight = 1;
    struct msg *m = fx_msg("a/b", "m", 2, false, NULL, 0);
    broker__route(fx_b, m, NULL); /* inflight (plain) and queued (shared) */
    broker__route(fx_b, m, NULL); /* queued twice */
    cr_expect_eq(m->refs, 5);
    cr_expect_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    fx_disconnect(s);

    broker__session_free(fx_b, s);
    cr_expect_null(broker__session_find(fx_b, "gone", 4));
    cr_expect_eq(fx_b->sub_count, 1);
    cr_expect_eq(m->refs, 1, "every copy released");
    cr_expect_eq(broker__route(fx_b, m, NULL), 0, "nothing routes to it any more");
    broker__msg_unref(m);
    fx_finish();
}

Test(session, clear_subs_leaves_the_shared_group_to_the_others)
{
    fx_start();
    struct session *s = fx_session("s"), *o = fx_session("o");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    fx_subscribe(s, "$share/g/t", (struct fx_sub_opts){.qos = 1});
    fx_subscribe(o, "$share/g/t", (struct fx_sub_opts){.qos = 1});
    struct conn *cs = fx_connect(s, PROTO_V5), *co = fx_connect(o, PROTO_V5);
    broker__session_clear_subs(fx_b, s);
    cr_expect_eq(s->sub_count, 0);
    cr_expect_null(broker__sub_find(s, "t", 1));
    cr_expect_eq(fx_b->sub_count, 1);
    for (int k = 0; k < 3; k++)
        cr_expect_eq(fx_route("t", "x", 1, false, NULL), 1);
    FX_EXPECT_SILENT(cs);
    cr_expect_eq(fx_read(co, pk, FX_MAX_PKTS), 3);
    fx_finish();
}

Test(session, resubscribe_replaces_the_options)
{
    fx_start();
    struct session *s = fx_session("s");
    struct sub *first = fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 2, .sub_id = 1});
    struct sub *again = fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 0, .sub_id = 2});
    cr_expect_eq(first, again, "one subscription per filter");
    cr_expect_eq(s->sub_count, 1);
    struct conn *c = fx_connect(s, PROTO_V5);
    cr_expect_eq(fx_route("t", "x", 2, false, NULL), 1);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_eq(pk[0].qos, 0);
    cr_expect_eq(pk[0].nids, 1);
    cr_expect_eq(pk[0].ids[0], 2);
    fx_finish();
}

/* ---- inbound QoS 2 packet ids ------------------------------------------------------------------ */

Test(session, qos2_in_ids_grow_and_delete)
{
    fx_start();
    struct session *s = fx_session("ids");
    for (uint16_t id = 1; id <= 100; id++)
        cr_assert_eq(broker__qos2_in_add(s, id), 0);
    for (uint16_t id = 2; id <= 100; id += 2)
        broker__qos2_in_del(s, id);
    broker__qos2_in_del(s, 500); /* not there: nothing happens */
    for (uint16_t id = 1; id <= 100; id++)
        cr_expect_eq(broker__qos2_in_has(s, id), id % 2 == 1, "id %u", id);
    cr_expect(!broker__qos2_in_has(s, 0));
    cr_expect(!broker__qos2_in_has(s, 101));
    fx_finish();
}

/* ---- claims ------------------------------------------------------------------------------------ */

Test(session, resumed_claim_keeps_subscriptions_queue_and_qos2_ids)
{
    fx_start();
    struct session *s = claim("keep", 1, true, UINT32_MAX, NULL);
    cr_assert_not_null(s);
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    fx_route("t", "queued", 1, false, NULL);
    cr_assert_eq(broker__qos2_in_add(s, 77), 0);

    cr_expect_eq(claim("keep", 2, false, UINT32_MAX, NULL), s, "the same session");
    cr_expect_eq(s->generation, 2);
    cr_expect(broker__qos2_in_has(s, 77));
    cr_expect_eq(fx_route("t", "later", 1, false, NULL), 1);
    struct conn *c = fx_connect(s, PROTO_V5);
    fx_resume(s, true);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 2);
    cr_expect_str_eq(pk[0].payload, "queued");
    cr_expect_str_eq(pk[1].payload, "later");
    fx_finish();
}

Test(session, clean_claim_discards_subscriptions_queue_and_qos2_ids)
{
    fx_start();
    struct session *s = claim("clean", 1, true, UINT32_MAX, NULL);
    cr_assert_not_null(s);
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    fx_route("t", "old", 1, false, NULL);
    fx_route("t", "old2", 1, false, NULL);
    cr_assert_eq(broker__qos2_in_add(s, 77), 0);

    cr_expect_eq(claim("clean", 2, true, UINT32_MAX, NULL), s);
    cr_expect(!broker__qos2_in_has(s, 77));
    cr_expect_eq(s->sub_count, 0);
    cr_expect_eq(fx_route("t", "new", 1, false, NULL), 0);
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(s, PROTO_V5);
    fx_resume(s, false);
    FX_EXPECT_SILENT(c);
    fx_route("t", "fresh", 1, false, NULL);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_str_eq(pk[0].payload, "fresh");
    cr_expect_eq(pk[0].packet_id, 1, "packet ids start again");
    fx_finish();
}

/* ---- wills and expiry ---------------------------------------------------------------------------- */

Test(session, will_without_delay_is_published_when_offline)
{
    fx_start();
    struct session *w = fx_session("watcher");
    fx_subscribe(w, "status/+", (struct fx_sub_opts){.qos = 2});
    struct conn *c = fx_connect(w, PROTO_V5);
    struct cluster_will wl = will("status/dev", "offline", 1, 0);
    struct session *s = claim("dev", 1, false, UINT32_MAX, &wl);
    cr_assert_not_null(s);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_str_eq(pk[0].topic, "status/dev");
    cr_expect_str_eq(pk[0].payload, "offline");
    cr_expect_eq(pk[0].qos, 1, "the will's QoS");
    cr_expect_null(s->will, "published once");
    fx_finish();
}

Test(session, delayed_will_waits_for_its_time)
{
    fx_start();
    struct session *w = fx_session("watcher");
    fx_subscribe(w, "status/#", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(w, PROTO_V5);
    struct cluster_will wl = will("status/dev", "late", 1, 60);
    struct session *s = claim("dev", 1, false, 3600, &wl);
    cr_assert_not_null(s);
    FX_EXPECT_SILENT(c);
    broker__session_tick(fx_b);
    FX_EXPECT_SILENT(c);
    cr_expect_not_null(s->will);
    cr_expect_gt(s->will_at, broker__now(fx_b), "due later");

    s->will_at = broker__now(fx_b); /* its delay has passed */
    broker__session_tick(fx_b);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_str_eq(pk[0].payload, "late");
    cr_expect_null(s->will);
    broker__session_tick(fx_b);
    FX_EXPECT_SILENT(c);
    fx_finish();
}

static bool will_gone(void *arg) { return ((struct session *)arg)->will == NULL; }

Test(session, delayed_will_goes_out_when_due_not_at_the_next_tick)
{
    /* a timer runs to the earliest will: the one-second tick alone would
     * publish it up to a second late */
    fx_start();
    struct session *w = fx_session("watcher");
    fx_subscribe(w, "status/#", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(w, PROTO_V5);
    fx_sleep(300); /* out of step with the tick, which started with the broker */
    struct cluster_will wl = will("status/dev", "on time", 1, 1);
    struct session *s = claim("dev", 1, false, 3600, &wl);
    cr_assert_not_null(s);
    uint64_t due = s->will_at;
    cr_assert_gt(due, 0);
    cr_assert(fx_run_until(will_gone, s, 3000), "the will never went out");
    uint64_t late = broker__now(fx_b) - due;
    cr_expect_leq(late, 100, "published %llu ms after it was due", (unsigned long long)late);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    cr_expect_str_eq(pk[0].payload, "on time");
    fx_finish();
}

Test(session, expiry_zero_ends_the_session_with_its_will)
{
    fx_start();
    struct session *w = fx_session("watcher");
    fx_subscribe(w, "status/#", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(w, PROTO_V5);
    struct cluster_will wl = will("status/dev", "gone", 1, 30);
    struct session *s = claim("dev", 1, false, 0, &wl);
    cr_assert_not_null(s);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1, "a session that ends at once does not wait for the will delay");
    cr_expect_str_eq(pk[0].payload, "gone");
    cr_expect(s->expiring, "its end is proposed");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 1});
    expire("dev", 1); /* ... and committed */
    cr_expect_null(broker__session_find(fx_b, "dev", 3));
    cr_expect_eq(fx_route("t", "x", 1, false, NULL), 0);
    fx_finish();
}

Test(session, expiry_publishes_a_pending_delayed_will)
{
    fx_start();
    struct session *w = fx_session("watcher");
    fx_subscribe(w, "status/#", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(w, PROTO_V5);
    struct cluster_will wl = will("status/dev", "ended", 1, 600);
    struct session *s = claim("dev", 1, false, 60, &wl);
    cr_assert_not_null(s);
    FX_EXPECT_SILENT(c);
    cr_expect_gt(s->expire_at, broker__now(fx_b));
    cr_expect(!s->expiring);

    s->expire_at = broker__now(fx_b); /* its expiry interval has passed */
    broker__session_tick(fx_b);
    cr_expect(s->expiring, "the end is proposed once due");
    FX_EXPECT_SILENT(c);
    expire("dev", 1);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 1, "the will goes when the session ends before its delay");
    cr_expect_str_eq(pk[0].payload, "ended");
    cr_expect_null(broker__session_find(fx_b, "dev", 3));
    fx_finish();
}

Test(session, will_is_not_sent_back_to_a_no_local_subscription_of_its_session)
{
    fx_start();
    struct session *s = claim("dev", 1, true, UINT32_MAX, NULL);
    cr_assert_not_null(s);
    fx_subscribe(s, "status/#", (struct fx_sub_opts){.qos = 1, .no_local = true});
    struct session *w = fx_session("watcher");
    fx_subscribe(w, "status/#", (struct fx_sub_opts){.qos = 1});
    struct conn *c = fx_connect(w, PROTO_V5);
    struct cluster_will wl = will("status/dev", "bye", 1, 0);
    claim("dev", 2, false, UINT32_MAX, &wl);
    cr_expect_eq(fx_read(c, pk, FX_MAX_PKTS), 1);
    struct conn *own = fx_connect(s, PROTO_V5);
    fx_resume(s, true);
    FX_EXPECT_SILENT(own);
    fx_finish();
}
