/* Tests for cluster/link.c and cluster/frame.c: the data links between three
 * real nodes in one process (node i on 127.0.0.i): cluster_send delivers
 * once and in order and completes after receipt, refusals, a link cut under
 * load (resent, deduplicated by epoch and sequence), a node given up on and
 * back, restarted receivers and senders, cluster_members_get, and malformed
 * frames from an authenticated raw socket. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

#define N 3
#define MAXMSG 10000

static uv_loop_t loop;
static struct node nodes[N];

/* --- what the callbacks saw ------------------------------------------------------------- */

/* Message i of a test has msg_size(i) bytes: byte j is (i + 7 j) mod 256,
 * except that a message of 4 bytes or more starts with i (u32 LE), its tag. */
static size_t msg_size(uint32_t i, bool sized)
{
    if (!sized)
        return 16 + i % 64;
    if (i % 2500 == 1249)
        return 1u << 20;
    if (i % 101 == 7)
        return 0;
    if (i % 101 == 8)
        return 3;
    return (i * 37u) % 1500;
}

static uint8_t msg_byte(uint32_t i, size_t len, size_t j)
{
    if (len >= 4 && j < 4)
        return (uint8_t)(i >> (8 * j));
    return (uint8_t)(i + 7 * j);
}

/* Per receiving node (by node id): what it handed up. */
struct inbox {
    int count;
    uint32_t next[N + 2];     /* per sender: the index of the message expected next */
    int bad;                  /* messages that were not the one expected next */
    char first_bad[160];
    uint32_t *tags;           /* tags of everything handed up, in order (UINT32_MAX: untagged) */
    size_t n_tags, cap_tags;
    void (*hook)(struct node *n, uint32_t from, uint32_t tag);
    int up[N + 2], down[N + 2]; /* node_event calls, per node */
};
static struct inbox inbox[N + 2];

static bool msg_matches(uint32_t i, const uint8_t *data, size_t len, bool sized)
{
    if (len != msg_size(i, sized))
        return false;
    for (size_t j = 0; j < len; j++)
        if (data[j] != msg_byte(i, len, j))
            return false;
    return true;
}

static bool sized_msgs; /* which sizes this test's messages have */
static uint32_t sent_from, sent_to; /* of the messages a test sends */
static int handed[MAXMSG];          /* how often sent_to handed each up (across its restarts) */

static void on_receive(void *ctx, uint32_t from, const uint8_t *data, size_t len)
{
    struct node *n = ctx;
    struct inbox *in = &inbox[n->cfg.node_id];
    cr_assert_leq(from, N + 1, "a message from node %u", from);
    uint32_t want = in->next[from]++;
    bool matches = msg_matches(want, data, len, sized_msgs);
    if (!matches && in->bad++ == 0)
        snprintf(in->first_bad, sizeof(in->first_bad), "message %d from node %u: %zu bytes, want message %u",
                 in->count, from, len, want);
    in->count++;
    uint32_t tag = len >= 4 ? bytes_get_u32le(data) : UINT32_MAX;
    uint32_t which = len >= 4 ? tag : matches ? want : UINT32_MAX;
    if (from == sent_from && n->cfg.node_id == sent_to && which < MAXMSG)
        handed[which]++;
    if (in->n_tags == in->cap_tags) {
        in->cap_tags = in->cap_tags ? 2 * in->cap_tags : 1024;
        in->tags = realloc(in->tags, in->cap_tags * sizeof(*in->tags));
        cr_assert_not_null(in->tags);
    }
    in->tags[in->n_tags++] = tag;
    if (in->hook)
        in->hook(n, from, tag);
}

static void on_node_event(void *ctx, uint32_t node, bool alive)
{
    struct node *n = ctx;
    cr_assert_leq(node, N + 1);
    if (alive)
        inbox[n->cfg.node_id].up[node]++;
    else
        inbox[n->cfg.node_id].down[node]++;
}

/* Forgets what node id handed up (it restarts: a new process). */
static void inbox_reset(uint32_t id)
{
    struct inbox *in = &inbox[id];
    free(in->tags);
    memset(in, 0, sizeof(*in));
}

/* The completions of the messages sent, by index. */
struct sent {
    int calls;
    int status;
    bool inside_send;         /* ran from within cluster_send */
    bool early;               /* status 0 before the receiver handed the message up */
};
static struct sent sent[MAXMSG];
static bool in_send;

static void on_sent(void *arg, int status)
{
    struct sent *s = arg;
    uint32_t i = (uint32_t)(s - sent);
    s->calls++;
    s->status = status;
    s->inside_send |= in_send;
    if (status == 0 && !handed[i])
        s->early = true;
}

static uint8_t big[1u << 20];

/* Sends message i from node index `from` to node id `to`, in one to three
 * iovecs, done completing sent[i]; returns cluster_send's result. */
static int send_with(int from, uint32_t to, uint32_t i, cluster_sent_cb done)
{
    size_t len = msg_size(i, sized_msgs);
    for (size_t j = 0; j < len; j++)
        big[j] = msg_byte(i, len, j);
    struct iovec parts[3] = {{big, len / 3}, {big + len / 3, len / 2 - len / 3}, {big + len / 2, len - len / 2}};
    int nparts = 3;
    if (i % 3 == 0) {
        parts[0].iov_len = len;
        nparts = 1;
    }
    sent_from = nodes[from].cfg.node_id;
    sent_to = to;
    in_send = true;
    int rc = cluster_send(nodes[from].c, to, parts, nparts, done, &sent[i]);
    in_send = false;
    cr_assert_eq(sent[i].calls, 0, "done of message %u ran inside cluster_send", i);
    return rc;
}

static int send_one(int from, uint32_t to, uint32_t i) { return send_with(from, to, i, on_sent); }

/* Sends messages first..first+count-1, asserting each is accepted. */
static void send_range(int from, uint32_t to, uint32_t first, uint32_t count)
{
    for (uint32_t i = first; i < first + count; i++) {
        int rc = send_one(from, to, i);
        cr_assert_eq(rc, 0, "cluster_send of message %u: %d", i, rc);
    }
}

struct range {
    uint32_t first, count;
};

static bool all_completed(void *arg)
{
    struct range *r = arg;
    for (uint32_t i = r->first; i < r->first + r->count; i++)
        if (!sent[i].calls)
            return false;
    return true;
}

static void wait_completed(uint32_t first, uint32_t count, uint64_t ms)
{
    struct range r = {first, count};
    cr_assert(run_until(&loop, all_completed, &r, ms), "messages %u..%u did not all complete in %llu ms", first,
              first + count - 1, (unsigned long long)ms);
}

/* Every message of the range completed exactly once, with status. */
static void assert_completed(uint32_t first, uint32_t count, int status)
{
    for (uint32_t i = first; i < first + count; i++) {
        cr_assert_eq(sent[i].calls, 1, "message %u: done ran %d times", i, sent[i].calls);
        cr_assert_eq(sent[i].status, status, "message %u: status %d, want %d", i, sent[i].status, status);
        cr_assert_not(sent[i].inside_send, "message %u: done ran inside cluster_send", i);
        cr_assert_not(sent[i].early, "message %u: done(0) before the receiver handed it up", i);
    }
}

/* Sends messages first..first+count-1 from node 1 to node 2 and waits
 * until each completed once with 0. */
static void deliver(uint32_t first, uint32_t count)
{
    send_range(0, 2, first, count);
    wait_completed(first, count, 3000);
    assert_completed(first, count, 0);
}

/* The receiver id handed up tags first..first+count-1 at positions
 * at..at+count-1 of its inbox, in order. */
static void assert_tags(uint32_t id, size_t at, uint32_t first, uint32_t count)
{
    struct inbox *in = &inbox[id];
    cr_assert_geq(in->n_tags, at + count, "node %u handed up %zu messages, want %zu or more", id, in->n_tags,
                  at + count);
    for (uint32_t k = 0; k < count; k++)
        cr_assert_eq(in->tags[at + k], first + k, "node %u: message %u handed up is %u, want %u", id, k,
                     in->tags[at + k], first + k);
}

/* After a bounded wait for late duplicates: messages 0..count-1 from node 1
 * completed once with 0 each, and node 2 handed up each once, in order. */
static void assert_all_once(uint32_t count)
{
    run_for(&loop, 300);
    assert_completed(0, count, 0);
    assert_tags(2, 0, 0, count);
    cr_assert_eq(inbox[2].n_tags, count, "node 2 handed up %zu messages, want %u", inbox[2].n_tags, count);
}

/* --- fixture -------------------------------------------------------------------------------- */

static void setup(void)
{
    tmp_setup();
    group_init(&loop, nodes, N, N);
    for (int i = 0; i < N; i++) {
        nodes[i].cfg.receive = on_receive;
        nodes[i].cfg.node_event = on_node_event;
    }
    memset(sent, 0, sizeof(sent));
    memset(handed, 0, sizeof(handed));
    sized_msgs = false;
}

static void finish(void) { group_finish(nodes, N); }

static void teardown(void)
{
    group_teardown(nodes, N);
    for (uint32_t id = 0; id < N + 2; id++)
        inbox_reset(id);
}

TestSuite(link, .init = setup, .fini = teardown, .timeout = 60);

struct alive {
    int from;
    uint32_t to;
};

static bool is_alive(void *arg)
{
    struct alive *a = arg;
    return nodes[a->from].c && cluster_node_alive(nodes[a->from].c, a->to);
}

/* Starts all three and waits until node index from has a link to node id to. */
static void start_linked(int from, uint32_t to)
{
    group_start(nodes, N, 0x7);
    struct alive a = {from, to};
    cr_assert(run_until(&loop, is_alive, &a, 5000), "node %d never had a link to node %u", from + 1, to);
}

/* Starts nodes[i] again on its data dir and waits until it follows the
 * configuration (has its own links). Until then it acknowledges nothing it
 * hands up (see messages_handed_up_before_the_receivers_first_tick_are_
 * acknowledged): the tests send one more message after this, whose
 * acknowledgement covers the earlier ones. */
static void restart_node(int i)
{
    node_start(&nodes[i]);
    for (int j = 0; j < N; j++) {
        struct alive a = {i, (uint32_t)(j + 1)};
        if (j != i)
            cr_assert(run_until(&loop, is_alive, &a, 5000), "node %d has no link to node %d", i + 1, j + 1);
    }
}

/* --- delivery ------------------------------------------------------------------------------------ */

Test(link, ten_thousand_messages_arrive_once_in_order_and_complete_after_receipt)
{
    sized_msgs = true; /* 0 bytes to 1 MiB */
    start_linked(0, 2);
    /* half of them in one loop turn, the rest a hundred per turn */
    send_range(0, 2, 0, MAXMSG / 2);
    for (uint32_t i = MAXMSG / 2; i < MAXMSG; i += 100) {
        send_range(0, 2, i, 100);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    wait_completed(0, MAXMSG, 30000);
    run_for(&loop, 200); /* a late duplicate would show now */
    struct inbox *in = &inbox[2];
    cr_assert_eq(in->bad, 0, "%d message(s) out of order, changed or twice; first: %s", in->bad, in->first_bad);
    cr_assert_eq(in->count, MAXMSG, "node 2 handed up %d messages, want %d", in->count, MAXMSG);
    assert_completed(0, MAXMSG, 0);
    cr_assert_eq(inbox[1].count + inbox[3].count, 0, "a message reached a node it was not sent to");
    finish();
}

Test(link, messages_to_itself_or_to_a_non_member_are_refused_without_a_callback)
{
    start_linked(0, 2);
    cr_assert_lt(send_one(0, 1, 0), 0, "a message to the node itself was accepted");
    cr_assert_eq(send_one(0, 99, 1), CLUSTER_ENOTFOUND);
    cr_assert_lt(send_one(0, 0, 2), 0, "a message to node 0 was accepted");
    cr_assert(cluster_node_alive(nodes[0].c, 1), "a node is alive for itself");
    cr_assert_not(cluster_node_alive(nodes[0].c, 99));
    run_for(&loop, 300); /* nothing must complete, nothing arrive */
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(sent[i].calls, 0, "message %u: done ran for a refused message", i);
    for (uint32_t id = 1; id <= N; id++)
        cr_assert_eq(inbox[id].count, 0, "node %u handed up a refused message", id);
    /* the link itself works */
    deliver(3, 1);
    finish();
}

static void mark_closed(void *arg) { ((struct node *)arg)->closed = true; }

static bool node_closed(void *arg) { return ((struct node *)arg)->closed; }

Test(link, the_largest_message_arrives_and_one_byte_more_is_refused_at_once)
{
    start_linked(0, 2);
    size_t max = FWD_MAX_FRAME - 1 - 8; /* the frame: type, sequence, payload */
    uint8_t *p = malloc(max + 1);
    cr_assert_not_null(p);
    memset(p, 0x5a, max + 1);
    put_le(p, 4242, 4);
    struct iovec too_big = {p, max + 1};
    cr_assert_eq(cluster_send(nodes[0].c, 2, &too_big, 1, on_sent, &sent[0]), -ENOBUFS);
    struct iovec halves[] = {{p, max / 2}, {p + max / 2, max - max / 2}};
    cr_assert_eq(cluster_send(nodes[0].c, 2, halves, 2, on_sent, &sent[1]), 0);
    free(p); /* copied */
    wait_completed(1, 1, 10000);
    cr_assert_eq(sent[1].status, 0);
    cr_assert_eq(sent[0].calls, 0, "done ran for a refused message");
    cr_assert_eq(inbox[2].n_tags, 1);
    cr_assert_eq(inbox[2].tags[0], 4242);
    finish();
}

Test(link, messages_waiting_at_close_complete_with_eshutdown)
{
    start_linked(0, 2);
    node_close(&nodes[1]);
    send_range(0, 2, 0, 5); /* node 2 is away: they wait */
    struct node *n = &nodes[0];
    cluster_close(n->c, mark_closed, n);
    cr_assert_eq(send_one(0, 2, 5), CLUSTER_ESHUTDOWN, "a message was accepted while closing");
    cr_assert(run_until(&loop, node_closed, n, 5000), "node 1 did not close");
    n->c = NULL;
    assert_completed(0, 5, CLUSTER_ESHUTDOWN);
    cr_assert_eq(sent[5].calls, 0);
    finish();
}

/* Node 2 answers each message from within its receive callback; node 1
 * sends the next one from within the done callback of the one before. */
static uint32_t chain_left;

static void echo(struct node *n, uint32_t from, uint32_t tag)
{
    (void)n;
    if (from == 1)
        cr_assert_eq(send_one(1, 1, tag + 1000), 0, "node 2 could not answer from within receive");
}

static void chain_next(void *arg, int status)
{
    on_sent(arg, status);
    uint32_t i = (uint32_t)((struct sent *)arg - sent);
    if (status == 0 && chain_left && chain_left--)
        cr_assert_eq(send_with(0, 2, i + 1, chain_next), 0);
}

Test(link, messages_sent_from_within_receive_and_done_callbacks_arrive_in_order)
{
    start_linked(0, 2);
    struct alive back = {1, 1};
    cr_assert(run_until(&loop, is_alive, &back, 5000));
    inbox[2].hook = echo;
    chain_left = 49;
    cr_assert_eq(send_with(0, 2, 0, chain_next), 0);
    wait_completed(0, 50, 5000);
    wait_completed(1000, 50, 5000);
    for (uint32_t i = 0; i < 50; i++) {
        cr_assert_eq(sent[i].status, 0, "message %u: %d", i, sent[i].status);
        cr_assert_eq(sent[1000 + i].status, 0, "answer %u: %d", i, sent[1000 + i].status);
    }
    assert_tags(2, 0, 0, 50);
    assert_tags(1, 0, 1000, 50);
    cr_assert_eq(inbox[1].n_tags, 50);
    cr_assert_eq(inbox[2].n_tags, 50);
    finish();
}

/* --- broken links -------------------------------------------------------------------------------- */

static int cut_at = -1, cut_sockets;

/* Cuts the connections between nodes 1 and 2 while node 2 hands up message
 * cut_at: its acknowledgement (and those of the read it came in) is lost, so
 * node 1 resends messages node 2 already handed up. */
static void cut_while_receiving(struct node *n, uint32_t from, uint32_t tag)
{
    (void)n;
    if (from == 1 && tag == (uint32_t)cut_at)
        cut_sockets = group_sever(&loop, 0, 1);
}

static bool cut_done(void *arg)
{
    (void)arg;
    return cut_sockets > 0;
}

/* Starts the nodes, sends messages 0..count-1 from node 1 to node 2 fifty a
 * loop turn, and waits until the connections were cut at message `at`. */
static void send_and_cut(uint32_t count, int at)
{
    start_linked(0, 2);
    cut_at = at;
    inbox[2].hook = cut_while_receiving;
    for (uint32_t i = 0; i < count; i += 50) {
        send_range(0, 2, i, 50);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    cr_assert(run_until(&loop, cut_done, NULL, 5000), "the connections were never cut");
}

Test(link, a_cut_link_is_redialled_and_what_it_had_not_acknowledged_arrives_once)
{
    send_and_cut(500, 300);
    /* sent while the link is broken (node 1 may not even know yet) */
    send_range(0, 2, 500, 500);
    wait_completed(0, 1000, 10000);
    assert_all_once(1000);
    cr_assert_eq(inbox[2].bad, 0, "%s", inbox[2].first_bad);
    cr_assert_eq(inbox[1].down[2], 0, "node 2 was given up on during a brief cut");
    finish();
}

/* --- nodes given up on ------------------------------------------------------------------------------- */

static bool given_up(void *arg)
{
    (void)arg;
    return inbox[1].down[2] > 0;
}

static bool came_back(void *arg)
{
    (void)arg;
    return inbox[1].up[2] > 0;
}

static int member_index(const struct cluster_member *m, int n, uint32_t id)
{
    for (int i = 0; i < n; i++)
        if (m[i].id == id)
            return i;
    return -1;
}

Test(link, a_node_away_longer_than_node_timeout_is_given_up_on_and_reported_back)
{
    for (int i = 0; i < N; i++)
        nodes[i].cfg.node_timeout_ms = 1000;
    start_linked(0, 2);
    deliver(0, 1);

    node_close(&nodes[1]);
    uint64_t t0 = uv_hrtime();
    send_range(0, 2, 1, 5); /* waiting while node 2 is away */
    cr_assert(run_until(&loop, given_up, NULL, 5000), "node 2 was never given up on");
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    cr_assert_geq(ms, 900, "given up on after %llu ms, node_timeout_ms is 1000", (unsigned long long)ms);
    cr_assert(all_completed(&(struct range){1, 5}), "the waiting messages did not complete at the give-up");
    assert_completed(1, 5, CLUSTER_EUNAVAILABLE);
    cr_assert_not(cluster_node_alive(nodes[0].c, 2));
    struct cluster_member m[N];
    cr_assert_eq(cluster_members_get(nodes[0].c, m, N), N);
    int k = member_index(m, N, 2);
    cr_assert_geq(k, 0);
    cr_assert_not(m[k].alive, "cluster_members_get: node 2 alive while given up on");
    cr_assert_eq(send_one(0, 2, 6), CLUSTER_EUNAVAILABLE);
    run_for(&loop, 300);
    cr_assert_eq(inbox[1].down[2], 1, "node_event(2, false) ran %d times", inbox[1].down[2]);
    cr_assert_eq(sent[6].calls, 0, "done ran for a refused message");
    cr_assert_eq(inbox[1].down[3], 0, "node 3 was given up on too");

    /* back: reported, and the messages kept for it are resent (documented:
     * kept for LINK_KEEP_MS), then the new one */
    inbox_reset(2);
    restart_node(1);
    cr_assert(run_until(&loop, came_back, NULL, 5000), "node 2's return was never reported");
    cr_assert_eq(inbox[1].up[2], 1);
    cr_assert(cluster_node_alive(nodes[0].c, 2));
    deliver(7, 1);
    assert_tags(2, 0, 1, 5);
    assert_tags(2, 5, 7, 1);
    cr_assert_eq(inbox[2].n_tags, 6, "node 2 handed up %zu messages, want 6", inbox[2].n_tags);
    assert_completed(1, 5, CLUSTER_EUNAVAILABLE); /* not completed a second time */
    finish();
}

/* --- restarts ------------------------------------------------------------------------------------ */

Test(link, a_restarted_receiver_is_handed_again_what_it_had_not_acknowledged_and_loses_nothing)
{
    send_and_cut(400, 200);
    /* node 2 stops before node 1 could redial: what it handed up since its
     * last acknowledgement reached node 1 is unacknowledged */
    node_close(&nodes[1]);
    size_t before = inbox[2].n_tags;
    cr_assert_gt(before, (size_t)cut_at);
    assert_tags(2, 0, 0, (uint32_t)before);
    inbox_reset(2);
    send_range(0, 2, 400, 100); /* while it is away */
    restart_node(1);
    send_range(0, 2, 500, 1);
    wait_completed(0, 501, 10000);
    run_for(&loop, 300);
    assert_completed(0, 501, 0);

    /* the new process (the sender's epoch unchanged, the receiver's memory of
     * it gone) is handed the unacknowledged ones again, then everything
     * after: in order, nothing lost */
    struct inbox *in = &inbox[2];
    cr_assert_gt(in->n_tags, 0);
    uint32_t again_from = in->tags[0];
    cr_assert_leq(again_from, (uint32_t)cut_at, "message %d, unacknowledged before the restart, was not resent",
                  cut_at);
    cr_assert_leq(again_from, (uint32_t)before, "messages %zu..%u were lost across the restart", before,
                  again_from - 1);
    assert_tags(2, 0, again_from, 501 - again_from);
    cr_assert_eq(in->n_tags, 501 - again_from, "node 2 handed up %zu messages after its restart, want %u",
                 in->n_tags, 501 - again_from);
    finish();
}

Test(link, a_restarted_sender_starts_a_new_epoch_and_is_not_taken_for_a_resend)
{
    start_linked(0, 2);
    send_range(0, 2, 0, 10);
    wait_completed(0, 10, 3000);
    node_close(&nodes[0]);
    node_start(&nodes[0]); /* its epoch goes up, its sequences start at 1 again */
    struct alive a = {0, 2};
    cr_assert(run_until(&loop, is_alive, &a, 5000));
    send_range(0, 2, 10, 10);
    wait_completed(10, 10, 3000);
    assert_all_once(20);
    finish();
}

static bool ten_handed_up(void *arg)
{
    (void)arg;
    return inbox[2].count >= 10;
}

Test(link, messages_handed_up_before_the_receivers_first_tick_are_acknowledged)
{
    group_start(nodes, N, 0x5); /* node 2 later */
    struct alive a = {0, 2};
    cr_assert(run_until(&loop, is_alive, &a, 5000), "node 1 has no link for node 2");
    send_range(0, 2, 0, 10);
    /* node 2 listens (cluster_start) but follows no configuration yet (its
     * first tick, 100 ms after cluster_run): node 1's redial gets through and
     * hands it the messages in that window */
    char err[512];
    cr_assert_eq(node_try_start(&nodes[1], err, sizeof(err)), 0, "%s", err);
    cr_assert(run_until(&loop, ten_handed_up, NULL, 5000), "node 2 did not hand the messages up");
    cr_assert_eq(cluster_run(nodes[1].c, err, sizeof(err)), 0, "%s", err);
    wait_completed(0, 10, 3000);
    assert_all_once(10);
    finish();
}

/* Closes node 2 while it hands up message cut_at from node 1. */
static void close_while_receiving(struct node *n, uint32_t from, uint32_t tag)
{
    if (from == 1 && tag == (uint32_t)cut_at)
        cluster_close(n->c, mark_closed, n);
}

Test(link, a_receiver_that_is_closing_does_not_acknowledge_what_it_did_not_hand_up)
{
    start_linked(0, 2);
    send_range(0, 2, 0, 1);
    wait_completed(0, 1, 3000);
    cut_at = 10;
    inbox[2].hook = close_while_receiving;
    send_range(0, 2, 1, 100); /* one write: node 2 reads them at once */
    cr_assert(run_until(&loop, node_closed, &nodes[1], 5000), "node 2 did not close");
    nodes[1].c = NULL;
    int count = inbox[2].count;
    cr_assert_geq(count, cut_at + 1);
    run_for(&loop, 300); /* acknowledgements on their way arrive */
    for (uint32_t i = 1; i <= 100; i++)
        cr_assert(!(sent[i].calls && sent[i].status == 0 && !handed[i]),
                  "message %u completed with 0, but the closing node 2 handed up only messages 0..%d", i,
                  count - 1);

    /* what it did not hand up reaches it when it is back */
    inbox_reset(2);
    restart_node(1);
    send_range(0, 2, 101, 1);
    wait_completed(1, 101, 5000);
    assert_completed(1, 101, 0);
    struct inbox *in = &inbox[2];
    cr_assert_gt(in->n_tags, 0, "the restarted node 2 was handed nothing");
    cr_assert_leq(in->tags[0], (uint32_t)count, "messages %d..%u were lost", count, in->tags[0] - 1);
    assert_tags(2, 0, in->tags[0], 102 - in->tags[0]);
    finish();
}

/* --- liveness and status -------------------------------------------------------------------------- */

Test(link, a_short_node_timeout_does_not_give_up_on_members_that_are_up)
{
    for (int i = 0; i < N; i++)
        nodes[i].cfg.node_timeout_ms = 300;
    start_linked(0, 2);
    run_for(&loop, 2000); /* none of them may be given up on */
    for (uint32_t id = 1; id <= N; id++)
        for (uint32_t other = 1; other <= N; other++)
            cr_assert_eq(inbox[id].down[other], 0,
                         "node %u gave up on node %u (up and idle) %d time(s) with node_timeout_ms 300", id,
                         other, inbox[id].down[other]);
    deliver(0, 1);
    finish();
}

/* Every node's cluster_members_get agrees with what each member reports of
 * itself (status frames every 500 ms), and names the one leader. */
static bool members_converged(void *arg)
{
    (void)arg;
    for (int i = 0; i < N; i++) {
        struct cluster_member m[N];
        if (cluster_members_get(nodes[i].c, m, N) != N)
            return false;
        int leaders = 0;
        for (int k = 0; k < N; k++) {
            struct cluster_status st = node_status(&nodes[m[k].id - 1]);
            if (m[k].state != st.role || m[k].applied_index != st.applied_index || m[k].term != st.term ||
                m[k].commit_index != st.commit_index)
                return false;
            leaders += m[k].state == 2;
        }
        if (leaders != 1)
            return false;
    }
    return true;
}

Test(link, members_get_lists_three_voters_and_their_reported_state)
{
    group_start(nodes, N, 0x7);
    int leader = group_wait_leader(nodes, N, 0x7);
    for (int k = 0; k < 3; k++) {
        char topic[16];
        snprintf(topic, sizeof(topic), "m/%d", k);
        struct cluster_cmd c = cmd_retain(topic, "x");
        struct done d;
        propose_wait(&nodes[leader], &c, &d);
        cr_assert_eq(d.status, 0);
    }
    cr_assert(run_until(&loop, members_converged, NULL, 5000),
              "the members' reported states and applied indexes did not converge");
    uint64_t applied = node_status(&nodes[leader]).applied_index;
    cr_assert_geq(applied, 3);
    for (int i = 0; i < N; i++) {
        struct cluster_member m[N];
        cr_assert_eq(cluster_members_get(nodes[i].c, m, N), N);
        unsigned ids = 0;
        for (int k = 0; k < N; k++) {
            const struct cluster_member *x = &m[k];
            cr_assert(x->id >= 1 && x->id <= N, "member id %u", x->id);
            ids |= 1u << (x->id - 1);
            cr_assert_eq(x->role, 0, "node %d: member %u has role %d, want voter", i + 1, x->id, x->role);
            cr_assert_eq(x->self, x->id == nodes[i].cfg.node_id, "node %d: member %u self %d", i + 1, x->id,
                         x->self);
            cr_assert(x->alive, "node %d: member %u not alive", i + 1, x->id);
            cr_assert_str_eq(x->address, nodes[x->id - 1].bind);
            cr_assert_eq(x->applied_index, applied, "node %d: member %u applied %llu, want %llu", i + 1, x->id,
                         (unsigned long long)x->applied_index, (unsigned long long)applied);
            if (x->self)
                cr_assert_eq(x->last_seen_ms, 0);
            else
                cr_assert_lt(x->last_seen_ms, 1500, "node %d: member %u last seen %llu ms ago", i + 1, x->id,
                             (unsigned long long)x->last_seen_ms);
            cr_assert_eq(x->state == 2, x->id == nodes[leader].cfg.node_id);
        }
        cr_assert_eq(ids, 0x7);
    }
    /* fewer slots than members: the count is still the whole */
    struct cluster_member one[2];
    memset(one, 0xab, sizeof(one));
    cr_assert_eq(cluster_members_get(nodes[0].c, one, 1), N);
    cr_assert_eq(one[1].id, 0xabababab, "cluster_members_get wrote past max");
    finish();
}

/* --- the wire ---------------------------------------------------------------------------------------- */

/* An authenticated data-link connection to nodes[target] as node `as`. */
static int data_dial(int target, uint64_t as)
{
    bool rejected;
    int fd = handshake_as_dialer(&nodes[target], nodes[target].secret, PEER_CH_DATA, as, false, &rejected);
    cr_assert_not(rejected, "the data-link handshake was rejected");
    return fd;
}

static void send_bytes(int fd, const void *p, size_t len)
{
    cr_assert_eq(send(fd, p, len, MSG_NOSIGNAL), (ssize_t)len, "send: %s", strerror(errno));
}

/* One frame: u32 length, u8 type, head (a u64, when has_head), body. */
static void send_frame(int fd, uint8_t type, bool has_head, uint64_t head, const void *body, size_t len)
{
    uint8_t b[64];
    size_t n = 5;
    b[4] = type;
    if (has_head) {
        put_le(b + 5, head, 8);
        n += 8;
    }
    cr_assert_leq(n + len, sizeof(b));
    if (len)
        memcpy(b + n, body, len);
    n += len;
    put_le(b, n - 4, 4);
    send_bytes(fd, b, n);
}

static void send_hello(int fd, uint64_t epoch) { send_frame(fd, LINK_HELLO, true, epoch, NULL, 0); }

/* Reads one ACK frame and returns its sequence. */
static uint64_t read_ack(int fd)
{
    struct sock_read r = {.fd = fd};
    read_exactly(&loop, &r, 13);
    cr_assert_eq(bytes_get_u32le(r.buf), 9, "an ACK frame is 9 bytes long");
    cr_assert_eq(r.buf[4], LINK_ACK, "frame type %u, want ACK", r.buf[4]);
    return bytes_get_u64le(r.buf + 5);
}

static void send_msg(int fd, uint64_t seq, uint32_t tag, bool empty)
{
    uint8_t body[4];
    put_le(body, tag, 4);
    send_frame(fd, LINK_MSG, true, seq, body, empty ? 0 : 4);
}

Test(link, the_data_link_frames_are_the_documented_ones)
{
    /* node 3 never starts: the test speaks for it */
    group_start(nodes, N, 0x3);
    group_wait_leader(nodes, N, 0x3);
    int fd = data_dial(1, 3);

    /* a HELLO split across reads is one frame; until it is whole nothing comes back */
    uint8_t hello[13] = {9, 0, 0, 0, LINK_HELLO};
    put_le(hello + 5, 1, 8);
    send_bytes(fd, hello, 3);
    run_for(&loop, 100);
    struct sock_read r = {.fd = fd, .want = 1};
    cr_assert_not(read_done(&r), "node 2 answered part of a frame");
    send_bytes(fd, hello + 3, 7);
    run_for(&loop, 100);
    cr_assert_not(read_done(&r), "node 2 answered part of a frame");
    send_bytes(fd, hello + 10, 3);
    cr_assert_eq(read_ack(fd), 0, "the ACK after a HELLO tells what was handed up of this epoch: nothing");

    send_msg(fd, 1, 1001, false);
    cr_assert_eq(read_ack(fd), 1);
    send_msg(fd, 1, 1001, false); /* a resend */
    cr_assert_eq(read_ack(fd), 1);
    send_msg(fd, 2, 1002, false);
    send_msg(fd, 3, 0, true); /* an empty payload */
    uint64_t acked = read_ack(fd);
    if (acked < 3)
        acked = read_ack(fd);
    cr_assert_eq(acked, 3);

    /* a STATUS is what cluster_members_get reports for that node */
    uint8_t status[25] = {1};
    put_le(status + 1, 77, 8);
    put_le(status + 9, 55, 8);
    put_le(status + 17, 44, 8);
    send_frame(fd, LINK_STATUS, false, 0, status, sizeof(status));
    send_msg(fd, 4, 1004, false); /* its ACK says the STATUS was read */
    cr_assert_eq(read_ack(fd), 4);
    struct cluster_member m[N];
    cr_assert_eq(cluster_members_get(nodes[1].c, m, N), N);
    int k = member_index(m, N, 3);
    cr_assert_geq(k, 0);
    cr_assert_eq(m[k].state, 1);
    cr_assert_eq(m[k].term, 77);
    cr_assert_eq(m[k].commit_index, 55);
    cr_assert_eq(m[k].applied_index, 44);

    /* node 3 restarted: a new epoch, its sequences from 1 again */
    int fd2 = data_dial(1, 3);
    send_hello(fd2, 2);
    cr_assert_eq(read_ack(fd2), 0);
    send_msg(fd2, 1, 2001, false);
    cr_assert_eq(read_ack(fd2), 1);

    struct inbox *in = &inbox[2];
    uint32_t want[] = {1001, 1002, UINT32_MAX, 1004, 2001};
    cr_assert_eq(in->n_tags, 5, "node 2 handed up %zu messages, want 5", in->n_tags);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(in->tags[i], want[i], "message %d handed up: %u, want %u", i, in->tags[i], want[i]);
    close(fd);
    close(fd2);
    finish();
}

/* Frames that end the connection: after the HELLO (when hello) the bytes. */
static const struct bad_frame {
    const char *what;
    bool hello;
    size_t len;
    uint8_t bytes[24];
} bad_frames[] = {
    {"a length of 0", true, 5, {0, 0, 0, 0, LINK_MSG}},
    {"a length of FWD_MAX_FRAME + 1", true, 5, {0x01, 0x00, 0x00, 0x04, LINK_MSG}},
    {"a length of 2^32 - 1", true, 5, {0xff, 0xff, 0xff, 0xff, LINK_MSG}},
    {"a MSG before the HELLO", false, 13, {9, 0, 0, 0, LINK_MSG, 1}},
    {"a HELLO of 4 bytes", false, 9, {5, 0, 0, 0, LINK_HELLO, 1}},
    {"a second HELLO", true, 13, {9, 0, 0, 0, LINK_HELLO, 1}},
    {"a MSG shorter than its sequence", true, 9, {5, 0, 0, 0, LINK_MSG, 1}},
    {"a STATUS of 10 bytes", true, 15, {11, 0, 0, 0, LINK_STATUS}},
    {"an ACK on an incoming link", true, 13, {9, 0, 0, 0, LINK_ACK}},
    {"an unknown frame type", true, 5, {1, 0, 0, 0, 99}},
    {"a CONTROL of 3 bytes", true, 8, {4, 0, 0, 0, LINK_CONTROL, 1, 0, 0}},
    {"a CONTROL with an unknown op", true, 10, {6, 0, 0, 0, LINK_CONTROL, 77, 1, 0, 0, 0}},
    {"a JOIN whose name runs past the frame", true, 19,
     {15, 0, 0, 0, LINK_CONTROL, 2, 1, 0, 0, 0, 4, 0, 0, 0, 200, 0, 'a', 'b', 'c'}},
};

Test(link, malformed_frames_close_the_data_link_and_the_node_goes_on)
{
    start_linked(0, 2);
    for (size_t i = 0; i < sizeof(bad_frames) / sizeof(bad_frames[0]); i++) {
        const struct bad_frame *b = &bad_frames[i];
        int fd = data_dial(1, 7);
        if (b->hello)
            send_hello(fd, 1);
        send_bytes(fd, b->bytes, b->len);
        cr_assert(run_until(&loop, peer_closed, &fd, 3000), "%s: node 2 kept the data link open", b->what);
        close(fd);
    }

    /* a frame cut short: node 2 waits for the rest, and forgets it at EOF */
    int fd = data_dial(1, 7);
    send_hello(fd, 1);
    uint8_t part[14] = {100, 0, 0, 0, LINK_MSG, 1};
    send_bytes(fd, part, sizeof(part));
    cr_assert_eq(read_ack(fd), 0);
    run_for(&loop, 200);
    cr_assert_not(peer_closed(&fd), "node 2 closed on a frame that is not complete yet");
    close(fd);

    cr_assert_eq(inbox[2].count, 0, "node 2 handed up part of a malformed stream");
    deliver(0, 10);
    assert_tags(2, 0, 0, 10);
    for (int i = 0; i < N; i++)
        cr_assert_eq(nodes[i].fatals, 0, "node %d: %s", i + 1, nodes[i].fatal_msg);
    finish();
}
