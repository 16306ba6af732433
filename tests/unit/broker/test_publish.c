/* Tests for broker/publish.c: a client's PUBLISH (acknowledgement, routing
 * with its client id as the origin, the inbound QoS 2 flow that keeps the
 * packet id until PUBREL so a resent PUBLISH is not delivered twice, $SYS)
 * and the acknowledgements of outgoing messages (PUBACK frees a window slot
 * and sends the next queued message, PUBREC -> PUBREL -> PUBCOMP, unknown
 * packet ids, a refusing v5 PUBREC). */
#include <string.h>

#include "helpers.h"

TestSuite(publish, .fini = fx_teardown);

static struct fx_pkt pk[FX_MAX_PKTS];

/* One packet of c's output, asserted to be the only one. */
static struct fx_pkt *only(struct conn *c)
{
    int n = fx_read(c, pk, FX_MAX_PKTS);
    cr_assert_eq(n, 1, "%s: %d packets, expected one", c->client_id, n);
    return &pk[0];
}


/* ---- a client's PUBLISH ------------------------------------------------------------------ */

Test(publish, qos1_is_routed_and_acknowledged)
{
    fx_start();
    struct session *ps = fx_session("pub"), *ss = fx_session("sub");
    fx_subscribe(ss, "t/#", (struct fx_sub_opts){.qos = 2});
    struct conn *cp = fx_connect(ps, PROTO_V5), *cs = fx_connect(ss, PROTO_V5);
    uint64_t received = fx_b->stats.msgs_received;
    fx_client_publish(cp, "t/1", "hello", 1, 17, false);
    struct fx_pkt *a = only(cp);
    cr_expect_eq(a->type, PROTO_PUBACK);
    cr_expect_eq(a->packet_id, 17);
    cr_expect_eq(a->reason, PROTO_RC_SUCCESS);
    struct fx_pkt *d = only(cs);
    cr_expect_eq(d->type, PROTO_PUBLISH);
    cr_expect_str_eq(d->topic, "t/1");
    cr_expect_str_eq(d->payload, "hello");
    cr_expect_eq(d->qos, 1, "the message's QoS, below the subscription's");
    cr_expect_eq(fx_b->stats.msgs_received, received + 1);
    fx_finish();
}

Test(publish, no_matching_subscribers_reason_for_v5_only)
{
    fx_start();
    struct session *p5 = fx_session("p5"), *p3 = fx_session("p3");
    struct conn *c5 = fx_connect(p5, PROTO_V5), *c3 = fx_connect(p3, PROTO_V311);
    fx_client_publish(c5, "nobody", "x", 1, 1, false);
    struct fx_pkt *a = only(c5);
    cr_expect_eq(a->type, PROTO_PUBACK);
    cr_expect_eq(a->reason, PROTO_RC_NO_MATCHING_SUBSCRIBERS);
    fx_client_publish(c5, "nobody", "x", 2, 2, false);
    a = only(c5);
    cr_expect_eq(a->type, PROTO_PUBREC);
    cr_expect_eq(a->reason, PROTO_RC_NO_MATCHING_SUBSCRIBERS);
    fx_client_publish(c3, "nobody", "x", 1, 1, false);
    a = only(c3);
    cr_expect_eq(a->type, PROTO_PUBACK);
    cr_expect_eq(a->reason, 0, "v3.1.1 has no reason code");
    fx_finish();
}

Test(publish, qos0_gets_no_acknowledgement)
{
    fx_start();
    struct session *ps = fx_session("pub"), *ss = fx_session("sub");
    fx_subscribe(ss, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *cp = fx_connect(ps, PROTO_V5), *cs = fx_connect(ss, PROTO_V5);
    fx_client_publish(cp, "t", "zero", 0, 0, false);
    FX_EXPECT_SILENT(cp);
    struct fx_pkt *d = only(cs);
    cr_expect_eq(d->qos, 0);
    fx_finish();
}

Test(publish, no_local_uses_the_publishers_client_id)
{
    fx_start();
    struct session *me = fx_session("me"), *you = fx_session("you");
    fx_subscribe(me, "chat", (struct fx_sub_opts){.qos = 1, .no_local = true});
    fx_subscribe(you, "chat", (struct fx_sub_opts){.qos = 1});
    struct conn *cm = fx_connect(me, PROTO_V5), *cy = fx_connect(you, PROTO_V5);
    fx_client_publish(cm, "chat", "mine", 0, 0, false);
    FX_EXPECT_SILENT(cm);
    cr_expect_str_eq(only(cy)->payload, "mine");
    fx_client_publish(cy, "chat", "yours", 0, 0, false);
    cr_expect_str_eq(only(cm)->payload, "yours");
    cr_expect_str_eq(only(cy)->payload, "yours", "without No Local a client gets its own messages");
    fx_finish();
}

Test(publish, sys_topics_are_accepted_but_not_delivered)
{
    fx_start();
    struct session *ps = fx_session("pub"), *ss = fx_session("sub");
    fx_subscribe(ss, "$SYS/#", (struct fx_sub_opts){.qos = 1});
    struct conn *cp = fx_connect(ps, PROTO_V5), *cs = fx_connect(ss, PROTO_V5);
    fx_client_publish(cp, "$SYS/broker/uptime", "forged", 1, 5, false);
    struct fx_pkt *a = only(cp);
    cr_expect_eq(a->type, PROTO_PUBACK);
    cr_expect_eq(a->reason, PROTO_RC_SUCCESS);
    FX_EXPECT_SILENT(cs);
    fx_finish();
}

Test(publish, message_expiry_travels_with_the_message)
{
    fx_start();
    struct session *ps = fx_session("pub"), *ss = fx_session("sub");
    fx_subscribe(ss, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *cp = fx_connect(ps, PROTO_V5), *cs = fx_connect(ss, PROTO_V5);
    struct proto_packet p = {.type = PROTO_PUBLISH};
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 3;
    p.u.publish.topic = proto_cstr("t");
    p.u.publish.payload = proto_cstr("exp");
    p.u.publish.props.has = PROTO_HAS_MESSAGE_EXPIRY;
    p.u.publish.props.message_expiry = 30;
    broker__on_publish(cp, &p);
    cr_expect_eq(only(cp)->type, PROTO_PUBACK);
    struct fx_pkt *d = only(cs);
    cr_expect(d->has_expiry);
    cr_expect_eq(d->expiry, 30);
    fx_finish();
}

/* ---- retained messages ------------------------------------------------------------------ */

static bool has_output(void *c) { return fx_pending(c) > 0; }
static bool resumed(void *c) { return !((struct conn *)c)->paused; }

Test(publish, retained_is_routed_at_once_and_acknowledged_after_commit)
{
    fx_start();
    fx_wait_leader();
    struct session *ps = fx_session("pub"), *ss = fx_session("sub");
    fx_subscribe(ss, "r/#", (struct fx_sub_opts){.qos = 1});
    struct conn *cp = fx_connect(ps, PROTO_V5), *cs = fx_connect(ss, PROTO_V5);
    struct proto_packet p = {.type = PROTO_PUBLISH};
    p.u.publish = (struct proto_publish){.qos = 1, .retain = true, .topic = proto_cstr("r/1"),
                                         .packet_id = 4, .payload = proto_cstr("kept")};
    broker__on_publish(cp, &p);
    struct fx_pkt *d = only(cs);
    cr_expect_str_eq(d->payload, "kept", "routed before the commit");
    cr_expect(!d->retain, "a live message, without Retain As Published");
    cr_expect_eq(fx_pending(cp), 0, "the PUBACK waits for the commit");
    cr_expect(cp->paused, "the publisher's later packets wait too");

    cr_assert(fx_run_until(has_output, cp, 5000), "no PUBACK after the commit");
    struct fx_pkt *a = only(cp);
    cr_expect_eq(a->type, PROTO_PUBACK);
    cr_expect_eq(a->packet_id, 4);
    cr_expect_eq(a->reason, PROTO_RC_SUCCESS);
    cr_expect(!cp->paused);

    /* a new subscription gets it, retain flag set, at the lower QoS */
    struct session *late = fx_session("late");
    struct sub *sub = fx_subscribe(late, "r/+", (struct fx_sub_opts){.qos = 0});
    struct conn *cl = fx_connect(late, PROTO_V5);
    broker__retain_send(fx_b, late, sub);
    d = only(cl);
    cr_expect_str_eq(d->topic, "r/1");
    cr_expect_str_eq(d->payload, "kept");
    cr_expect(d->retain);
    cr_expect_eq(d->qos, 0);

    /* an empty retained PUBLISH deletes it (QoS 0: no acknowledgement) */
    p.u.publish = (struct proto_publish){.qos = 0, .retain = true, .topic = proto_cstr("r/1")};
    broker__on_publish(cp, &p);
    cr_expect_eq(fx_read(cs, pk, FX_MAX_PKTS), 1, "the empty message is routed too");
    cr_expect_eq(fx_read(cl, pk, FX_MAX_PKTS), 1);
    cr_expect(cp->paused);
    cr_assert(fx_run_until(resumed, cp, 5000), "the delete did not commit");
    FX_EXPECT_SILENT(cp);
    broker__retain_send(fx_b, late, sub);
    FX_EXPECT_SILENT(cl);
    fx_finish();
}

/* ---- inbound QoS 2 -------------------------------------------------------------------------- */

Test(publish, inbound_qos2_is_delivered_once_until_pubrel)
{
    fx_start();
    struct session *ps = fx_session("pub"), *ss = fx_session("sub");
    fx_subscribe(ss, "t", (struct fx_sub_opts){.qos = 2});
    struct conn *cp = fx_connect(ps, PROTO_V5), *cs = fx_connect(ss, PROTO_V5);

    fx_client_publish(cp, "t", "once", 2, 9, false);
    struct fx_pkt *a = only(cp);
    cr_expect_eq(a->type, PROTO_PUBREC);
    cr_expect_eq(a->packet_id, 9);
    cr_expect_eq(a->reason, PROTO_RC_SUCCESS);
    cr_expect_str_eq(only(cs)->payload, "once");
    cr_expect(broker__qos2_in_has(ps, 9), "the id is kept until PUBREL");

    /* the client did not see the PUBREC and sends the PUBLISH again */
    fx_client_publish(cp, "t", "once", 2, 9, true);
    a = only(cp);
    cr_expect_eq(a->type, PROTO_PUBREC, "acknowledged again");
    cr_expect_eq(a->packet_id, 9);
    FX_EXPECT_SILENT(cs);

    fx_client_ack(cp, PROTO_PUBREL, 9, 0);
    a = only(cp);
    cr_expect_eq(a->type, PROTO_PUBCOMP);
    cr_expect_eq(a->packet_id, 9);
    cr_expect_eq(a->reason, PROTO_RC_SUCCESS);
    cr_expect(!broker__qos2_in_has(ps, 9));

    /* the id is free again: a new message with it is a new message */
    fx_client_publish(cp, "t", "again", 2, 9, false);
    cr_expect_eq(only(cp)->type, PROTO_PUBREC);
    cr_expect_str_eq(only(cs)->payload, "again");
    fx_finish();
}

Test(publish, inbound_qos2_id_survives_a_reconnect)
{
    fx_start();
    struct session *ps = fx_session("pub"), *ss = fx_session("sub");
    fx_subscribe(ss, "t", (struct fx_sub_opts){.qos = 1});
    struct conn *cp = fx_connect(ps, PROTO_V311), *cs = fx_connect(ss, PROTO_V311);
    fx_client_publish(cp, "t", "m", 2, 300, false);
    cr_expect_eq(only(cp)->type, PROTO_PUBREC);
    cr_expect_eq(fx_read(cs, pk, FX_MAX_PKTS), 1);
    fx_client_ack(cs, PROTO_PUBACK, pk[0].packet_id, 0);

    fx_disconnect(ps);
    cp = fx_connect(ps, PROTO_V311);
    fx_client_publish(cp, "t", "m", 2, 300, true);
    cr_expect_eq(only(cp)->type, PROTO_PUBREC);
    FX_EXPECT_SILENT(cs);
    fx_client_ack(cp, PROTO_PUBREL, 300, 0);
    cr_expect_eq(only(cp)->type, PROTO_PUBCOMP);
    fx_finish();
}

Test(publish, pubrel_for_an_unknown_id_completes_with_not_found)
{
    fx_start();
    struct session *s5 = fx_session("v5"), *s3 = fx_session("v3");
    struct conn *c5 = fx_connect(s5, PROTO_V5), *c3 = fx_connect(s3, PROTO_V311);
    fx_client_ack(c5, PROTO_PUBREL, 44, 0);
    struct fx_pkt *a = only(c5);
    cr_expect_eq(a->type, PROTO_PUBCOMP);
    cr_expect_eq(a->packet_id, 44);
    cr_expect_eq(a->reason, PROTO_RC_PACKET_ID_NOT_FOUND);
    fx_client_ack(c3, PROTO_PUBREL, 45, 0);
    a = only(c3);
    cr_expect_eq(a->type, PROTO_PUBCOMP);
    cr_expect_eq(a->packet_id, 45);
    cr_expect_eq(a->reason, 0);
    fx_finish();
}

Test(publish, each_qos_gets_its_own_acknowledgement_in_order)
{
    fx_start();
    struct session *ps = fx_session("pub");
    struct conn *cp = fx_connect(ps, PROTO_V5);
    fx_client_publish(cp, "a", "1", 1, 1, false);
    fx_client_publish(cp, "b", "2", 2, 2, false);
    fx_client_publish(cp, "c", "3", 1, 3, false);
    cr_assert_eq(fx_read(cp, pk, FX_MAX_PKTS), 3);
    cr_expect_eq(pk[0].type, PROTO_PUBACK);
    cr_expect_eq(pk[0].packet_id, 1);
    cr_expect_eq(pk[1].type, PROTO_PUBREC);
    cr_expect_eq(pk[1].packet_id, 2);
    cr_expect_eq(pk[2].type, PROTO_PUBACK);
    cr_expect_eq(pk[2].packet_id, 3);
    fx_finish();
}

/* ---- acknowledgements of outgoing messages ------------------------------------------------- */

/* A subscriber to "t" at QoS 2 whose window is `window` messages. */
static struct conn *subscriber(struct session **out, uint16_t window, uint8_t version)
{
    fx_b->cfg.max_inflight = window;
    struct session *s = fx_session("sub");
    fx_subscribe(s, "t", (struct fx_sub_opts){.qos = 2});
    *out = s;
    return fx_connect(s, version);
}

static void route_n(int n, uint8_t qos)
{
    for (int k = 1; k <= n; k++) {
        char p[8];
        snprintf(p, sizeof(p), "%d", k);
        fx_route("t", p, qos, false, NULL);
    }
}

Test(publish, puback_frees_a_slot_and_sends_the_next_queued)
{
    fx_start();
    struct session *s;
    struct conn *c = subscriber(&s, 2, PROTO_V5);
    route_n(5, 1);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 2);
    uint16_t id1 = pk[0].packet_id, id2 = pk[1].packet_id;
    cr_expect_str_eq(pk[0].payload, "1");
    cr_expect_str_eq(pk[1].payload, "2");

    fx_client_ack(c, PROTO_PUBACK, id2, 0); /* out of order is allowed */
    struct fx_pkt *d = only(c);
    cr_expect_str_eq(d->payload, "3");
    cr_expect_neq(d->packet_id, id1, "an id still in flight is not reused");
    uint16_t id3 = d->packet_id;

    fx_client_ack(c, PROTO_PUBACK, id2, 0); /* again: unknown now */
    FX_EXPECT_SILENT(c);
    fx_client_ack(c, PROTO_PUBACK, id1, 0);
    cr_expect_str_eq(only(c)->payload, "4");
    fx_client_ack(c, PROTO_PUBACK, id3, 0);
    cr_expect_str_eq(only(c)->payload, "5");
    fx_finish();
}

Test(publish, qos2_outbound_pubrec_pubrel_pubcomp)
{
    fx_start();
    struct session *s;
    struct conn *c = subscriber(&s, 1, PROTO_V5);
    route_n(2, 2);
    struct fx_pkt *d = only(c);
    cr_expect_eq(d->qos, 2);
    cr_expect_str_eq(d->payload, "1");
    uint16_t id = d->packet_id;

    fx_client_ack(c, PROTO_PUBACK, id, 0); /* wrong acknowledgement for QoS 2: ignored */
    FX_EXPECT_SILENT(c);
    fx_client_ack(c, PROTO_PUBCOMP, id, 0); /* too early: ignored */
    FX_EXPECT_SILENT(c);

    fx_client_ack(c, PROTO_PUBREC, id, 0);
    struct fx_pkt *r = only(c);
    cr_expect_eq(r->type, PROTO_PUBREL);
    cr_expect_eq(r->packet_id, id);
    cr_expect_eq(r->reason, 0);

    /* a repeated PUBREC (the client missed our PUBREL) is answered with a
     * PUBREL again: success, the flow is in progress, waiting for PUBCOMP */
    fx_client_ack(c, PROTO_PUBREC, id, 0);
    r = only(c);
    cr_expect_eq(r->type, PROTO_PUBREL);
    cr_expect_eq(r->packet_id, id);
    cr_expect_eq(r->reason, 0, "PUBREL 0x%02X for an id waiting for PUBCOMP", r->reason);

    fx_client_ack(c, PROTO_PUBCOMP, id, 0);
    d = only(c);
    cr_expect_eq(d->type, PROTO_PUBLISH, "the window slot is free only after PUBCOMP");
    cr_expect_str_eq(d->payload, "2");
    fx_finish();
}

Test(publish, pubcomp_wait_holds_the_window_slot)
{
    fx_start();
    struct session *s;
    struct conn *c = subscriber(&s, 1, PROTO_V311);
    route_n(2, 2);
    uint16_t id = only(c)->packet_id;
    fx_client_ack(c, PROTO_PUBREC, id, 0);
    cr_expect_eq(only(c)->type, PROTO_PUBREL);
    FX_EXPECT_SILENT(c);
    fx_client_ack(c, PROTO_PUBCOMP, id, 0);
    cr_expect_str_eq(only(c)->payload, "2");
    fx_finish();
}

Test(publish, unknown_pubrec_is_answered_with_pubrel_not_found)
{
    fx_start();
    struct session *s;
    struct conn *c = subscriber(&s, 4, PROTO_V5);
    route_n(1, 2);
    uint16_t id = only(c)->packet_id;
    fx_client_ack(c, PROTO_PUBREC, (uint16_t)(id + 100), 0);
    struct fx_pkt *r = only(c);
    cr_expect_eq(r->type, PROTO_PUBREL);
    cr_expect_eq(r->packet_id, id + 100);
    cr_expect_eq(r->reason, PROTO_RC_PACKET_ID_NOT_FOUND);
    /* the real flow is untouched */
    fx_client_ack(c, PROTO_PUBREC, id, 0);
    r = only(c);
    cr_expect_eq(r->type, PROTO_PUBREL);
    cr_expect_eq(r->reason, 0);
    fx_finish();
}

Test(publish, unknown_puback_and_pubcomp_are_ignored)
{
    fx_start();
    struct session *s;
    struct conn *c = subscriber(&s, 1, PROTO_V5);
    route_n(2, 1);
    uint16_t id = only(c)->packet_id;
    fx_client_ack(c, PROTO_PUBACK, (uint16_t)(id + 1), 0);
    fx_client_ack(c, PROTO_PUBCOMP, id, 0);
    fx_client_ack(c, PROTO_PUBCOMP, 999, 0);
    FX_EXPECT_SILENT(c);
    fx_client_ack(c, PROTO_PUBACK, id, 0);
    cr_expect_str_eq(only(c)->payload, "2", "the message in flight still held the slot");
    fx_finish();
}

Test(publish, refusing_v5_pubrec_ends_the_flow)
{
    fx_start();
    struct session *s;
    struct conn *c = subscriber(&s, 1, PROTO_V5);
    route_n(2, 2);
    uint16_t id = only(c)->packet_id;
    fx_client_ack(c, PROTO_PUBREC, id, PROTO_RC_UNSPECIFIED);
    struct fx_pkt *d = only(c);
    cr_expect_eq(d->type, PROTO_PUBLISH, "no PUBREL: the next message takes the slot");
    cr_expect_str_eq(d->payload, "2");
    fx_finish();
}

Test(publish, resend_on_resume_uses_dup_and_pubrel)
{
    fx_start();
    struct session *s;
    struct conn *c = subscriber(&s, 3, PROTO_V5);
    route_n(5, 2);
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 3);
    uint16_t id1 = pk[0].packet_id, id2 = pk[1].packet_id, id3 = pk[2].packet_id;
    fx_client_ack(c, PROTO_PUBREC, id2, 0); /* 2 waits for PUBCOMP, 1 and 3 for PUBREC */
    cr_expect_eq(only(c)->type, PROTO_PUBREL);
    fx_disconnect(s);

    route_n(1, 1); /* queued while offline: "1" again, QoS 1 */
    c = fx_connect(s, PROTO_V5);
    fx_resume(s, true);
    int n = fx_read(c, pk, FX_MAX_PKTS);
    cr_assert_eq(n, 3, "the window is still full: only what was in flight");
    cr_expect_eq(pk[0].type, PROTO_PUBLISH);
    cr_expect_eq(pk[0].packet_id, id1);
    cr_expect(pk[0].dup);
    cr_expect_str_eq(pk[0].payload, "1");
    cr_expect_eq(pk[1].type, PROTO_PUBREL, "a released message is resent as PUBREL, not PUBLISH");
    cr_expect_eq(pk[1].packet_id, id2);
    cr_expect_eq(pk[2].type, PROTO_PUBLISH);
    cr_expect_eq(pk[2].packet_id, id3);
    cr_expect(pk[2].dup);
    cr_expect_str_eq(pk[2].payload, "3");

    fx_client_ack(c, PROTO_PUBCOMP, id2, 0);
    struct fx_pkt *d = only(c);
    cr_expect_str_eq(d->payload, "4", "then the queue, in order");
    cr_expect(!d->dup);
    fx_finish();
}

Test(publish, order_is_kept_across_a_reconnect)
{
    fx_start();
    struct session *s;
    struct conn *c = subscriber(&s, 2, PROTO_V311);
    route_n(3, 1); /* 1 and 2 in flight, 3 queued */
    cr_assert_eq(fx_read(c, pk, FX_MAX_PKTS), 2);
    fx_disconnect(s);
    for (int k = 4; k <= 6; k++) {
        char p[4];
        snprintf(p, sizeof(p), "%d", k);
        fx_route("t", p, 1, false, NULL);
    }
    c = fx_connect(s, PROTO_V311);
    fx_resume(s, true);
    /* acknowledge whatever is oldest in flight, one at a time */
    struct fx_pkt fifo[16];
    int head = 0, tail = fx_read(c, fifo, 16);
    char seen[16] = "", dups[16] = "";
    while (head < tail && head < 16) {
        strcat(seen, fifo[head].payload);
        strcat(dups, fifo[head].dup ? "d" : "-");
        fx_client_ack(c, PROTO_PUBACK, fifo[head].packet_id, 0);
        head++;
        tail += fx_read(c, fifo + tail, 16 - tail);
    }
    cr_expect_str_eq(seen, "123456");
    cr_expect_str_eq(dups, "dd----", "only what was in flight is resent with DUP");
    fx_finish();
}

Test(publish, pubrel_for_an_id_of_an_earlier_connection_does_not_free_a_receive_slot)
{
    /* receive_maximum 2: two QoS 2 PUBLISHes on the first connection are
     * waiting for PUBREL; on the next connection their PUBRELs complete
     * them, but they never counted there: a third new PUBLISH beyond the
     * receive maximum is still a violation [MQTT-3.3.4-9] */
    fx_start();
    fx_b->cfg.receive_maximum = 2;
    struct session *ps = fx_session("pub");
    struct conn *cp = fx_connect(ps, PROTO_V5);
    fx_client_publish(cp, "t", "a", 2, 1, false);
    fx_client_publish(cp, "t", "b", 2, 2, false);
    cr_expect_eq(fx_read(cp, pk, FX_MAX_PKTS), 2);
    fx_disconnect(ps);

    cp = fx_connect(ps, PROTO_V5);
    fx_client_publish(cp, "t", "c", 2, 3, false);
    fx_client_publish(cp, "t", "d", 2, 4, false);
    cr_expect_eq(fx_read(cp, pk, FX_MAX_PKTS), 2);
    cr_expect_eq(cp->in_unacked, 2);
    fx_client_ack(cp, PROTO_PUBREL, 1, 0);
    fx_client_ack(cp, PROTO_PUBREL, 2, 0);
    cr_expect_eq(fx_read(cp, pk, FX_MAX_PKTS), 2);
    cr_expect_eq(pk[0].type, PROTO_PUBCOMP);
    cr_expect_eq(pk[0].reason, 0);
    /* (a third PUBLISH now closes with 0x93, which these socketless
     * connections cannot do: the count is what decides it) */
    cr_expect_eq(cp->in_unacked, 2, "PUBRELs of the earlier connection freed %u slot(s)", 2 - cp->in_unacked);
    fx_client_ack(cp, PROTO_PUBREL, 3, 0);
    cr_expect_eq(fx_read(cp, pk, FX_MAX_PKTS), 1);
    cr_expect_eq(cp->in_unacked, 1, "its own PUBREL frees a slot");
    fx_finish();
}

Test(publish, pubrel_of_this_connection_frees_a_receive_slot)
{
    fx_start();
    fx_b->cfg.receive_maximum = 1;
    struct session *ps = fx_session("pub");
    struct conn *cp = fx_connect(ps, PROTO_V5);
    fx_client_publish(cp, "t", "a", 2, 7, false);
    fx_client_ack(cp, PROTO_PUBREL, 7, 0);
    fx_client_publish(cp, "t", "b", 2, 8, false);
    cr_expect_eq(fx_read(cp, pk, FX_MAX_PKTS), 3, "PUBREC, PUBCOMP, PUBREC");
    cr_expect_eq(cp->state, CONN_ACTIVE);
    fx_finish();
}
