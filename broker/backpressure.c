/* backpressure: a subscriber's write backlog holds the publishers that feed it,
 * for a bounded time.
 *
 * Happy path: a QoS 0 message for a connection with more than
 * cfg.max_write_backlog bytes unwritten is still written, and the client whose
 * PUBLISH it was is no longer read (uv_read_stop; packets already read stay
 * in its rbuf): it is listed in the subscriber's held_pubs (in struct
 * conn_busy, made the first time a connection takes part). Each held
 * publisher so adds at most one message to that backlog, and what waits,
 * waits in the publishers' socket buffers. When a write completes and the
 * backlog is down to half the limit, the held publishers go to
 * broker.resuming and are read again from the flush (prepare) handle, before
 * the loop polls, never from inside the routing of another message.
 *
 * Failure mode: a subscriber that holds publishers for longer than
 * cfg.slow_consumer_timeout_ms is a slow consumer: its publishers are read
 * again, and QoS 0 messages for it are dropped while it is over the limit
 * (messages_dropped), until it drains to half the limit. A stalled client
 * so stalls the others for at most that time per episode. A message routed
 * for nobody's PUBLISH (a will, a forward from another node, $SYS) holds no
 * one and is dropped over the limit; so is everything when the timeout is 0.
 * A publisher is held by one subscriber at a time: if its next message meets
 * another congested subscriber, that one holds it then; the clock of every
 * congested subscriber starts when it first meets a message it could hold
 * for, so several stalled clients cost the others one timeout, not one each. */
#include <inttypes.h>

#include "internal.h"

#define SLOW_LOG_INTERVAL_MS 10000 /* at most one slow consumer line per this */

static uint64_t low_water(const struct broker *b) { return b->cfg.max_write_backlog / 2; }

static void arm(struct broker *b)
{
    struct list *first = list_first(&b->congested);
    if (!first)
        return;
    struct conn_busy *c = list_entry(first, struct conn_busy, congested_link);
    uint64_t due = c->congested_at + b->cfg.slow_consumer_timeout_ms;
    uint64_t now = broker__now(b);
    uv_timer_start(&b->slow_timer, broker__slow_timer_cb, due > now ? due - now : 0, 0);
}

/* Hands c's held publishers to broker.resuming (read again at the next
 * flush) and takes c off the congested list. */
static void release(struct conn *c)
{
    struct broker *b = c->b;
    struct conn_busy *cb = c->busy;
    if (!cb || !cb->congested_at)
        return;
    struct list *it;
    while ((it = list_first(&cb->held_pubs))) {
        struct conn_busy *p = list_entry(it, struct conn_busy, held_link);
        list_remove(it);
        p->holder = NULL;
        list_push_back(&b->resuming, it); /* still held until then */
    }
    list_remove(&cb->congested_link);
    cb->congested_at = 0;
}

/* Holds pub (the client whose PUBLISH is being routed) for sub, whose backlog
 * is over the limit. false when nothing can be held: the message is dropped. */
bool broker__backpressure_hold(struct conn *sub, struct conn *pub)
{
    struct broker *b = sub->b;
    if (!pub || sub->slow || !b->cfg.slow_consumer_timeout_ms || pub->state != CONN_ACTIVE)
        return false;
    struct conn_busy *sb = broker__conn_busy(sub), *pb = broker__conn_busy(pub);
    if (!sb || !pb)
        return false; /* out of memory: the QoS 0 message is dropped, as over the limit */
    if (!pub->held) {
        pub->held = true;
        pb->holder = sub;
        list_push_back(&sb->held_pubs, &pb->held_link);
        uv_read_stop((uv_stream_t *)&pub->tcp);
        b->stats.publishers_held++;
    }
    /* held already (for another subscriber, or on its way back): sub's clock
     * starts all the same, so that congested subscribers time out together
     * rather than one after the other */
    if (!sb->congested_at) {
        uint64_t now = broker__now(b);
        sb->congested_at = now ? now : 1;
        bool first = list_empty(&b->congested);
        list_push_back(&b->congested, &sb->congested_link);
        if (first)
            arm(b);
    }
    return true;
}

void broker__backlog_drained(struct conn *c)
{
    if (broker__conn_backlog(c) > low_water(c->b))
        return;
    release(c);
    if (c->slow) {
        c->slow = false;
        LOG(c->b, LOG_DEBUG, c, "no longer a slow consumer");
    }
}

void broker__backlog_forget(struct conn *c)
{
    if (c->held) {
        list_remove(&c->busy->held_link); /* from its holder's list, or from broker.resuming */
        c->held = false;
        c->busy->holder = NULL;
    }
    release(c);
    c->slow = false;
}

static void slow_found(struct conn *c, uint64_t now)
{
    struct broker *b = c->b;
    uint64_t held_ms = now - c->busy->congested_at;
    release(c);
    c->slow = true;
    b->stats.slow_consumers++;
    if (b->slow_logged_ms && now - b->slow_logged_ms < SLOW_LOG_INTERVAL_MS) {
        b->slow_unlogged++;
        return;
    }
    LOG(b, LOG_WARN, c,
        "slow consumer: %" PRIu64 " bytes unwritten, over max_write_backlog (%u) for %" PRIu64
        " ms: its publishers are read again and QoS 0 messages for it are dropped until it reads"
        " (%u more slow consumers since the last such line)",
        broker__conn_backlog(c), b->cfg.max_write_backlog, held_ms, b->slow_unlogged);
    b->slow_logged_ms = now;
    b->slow_unlogged = 0;
}

void broker__slow_timer_cb(uv_timer_t *t)
{
    struct broker *b = t->data;
    uint64_t now = broker__now(b);
    struct list *first;
    while ((first = list_first(&b->congested))) {
        struct conn_busy *c = list_entry(first, struct conn_busy, congested_link);
        if (c->congested_at + b->cfg.slow_consumer_timeout_ms > now)
            break;
        slow_found(c->conn, now);
    }
    arm(b);
}

/* Reads the publishers released since the last call again (in the order
 * they were held). Returns whether there were any. */
bool broker__backpressure_resume(struct broker *b)
{
    bool any = false;
    struct list *it;
    while ((it = list_first(&b->resuming))) {
        struct conn *p = list_entry(it, struct conn_busy, held_link)->conn;
        list_remove(it);
        p->held = false;
        broker__conn_unhold_read(p);
        any = true;
    }
    return any;
}
