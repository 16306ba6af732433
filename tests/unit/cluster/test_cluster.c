/* Tests for cluster/cluster.c on a real libuv loop: batching per loop turn,
 * apply order and index, done results, proposals from callbacks, shutdown. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cluster.h"

/* Criterion's workers exit without LeakSanitizer's exit-time check, so a
 * sanitized build asks for the check explicitly at the end of each test. */
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

static void check_leaks(void)
{
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (report on stderr)");
#endif
}

#define MAX_EVENTS 4096
#define WATCHDOG_MS 1000

struct applied {
    uint8_t type;
    uint64_t index;
    uint64_t generation; /* the proposal's tag */
    uint64_t iteration;
    char client_id[32];
};

struct done {
    uint64_t tag;
    int status, result;
    uint64_t iteration;
};

/* Per-test state; Criterion runs each test in its own process. */
static struct fixture {
    uv_loop_t loop;
    struct cluster c;
    uv_timer_t watchdog; /* fails the test if the loop blocks */
    uv_prepare_t counter; /* counts loop iterations */
    uint64_t iteration;
    bool watchdog_fired, closed, in_propose, in_done;
    struct applied applied[MAX_EVENTS];
    size_t napplied;
    struct done done[MAX_EVENTS];
    size_t ndone;
    /* behaviour of the callbacks */
    uint64_t chain_left;    /* done proposes another command while > 0 */
    uint64_t close_on_done; /* tag whose done closes the cluster, 0 = none */
    uint64_t propose_in_apply; /* tag whose apply proposes tag + 1000 */
} fx;

static void on_watchdog(uv_timer_t *t)
{
    fx.watchdog_fired = true;
    uv_stop(t->loop);
}

static void on_prepare(uv_prepare_t *p) { fx.iteration++; }

static void on_cluster_closed(struct cluster *c) { fx.closed = true; }

/* apply returns the command's sub_id read as a signed value, so each proposal
 * chooses its result, negative ones included */
static int apply_cb(void *ctx, const struct cluster_cmd *cmd, uint64_t index);
static void done_cb(void *arg, int status, int result);

static struct cluster_cmd make_cmd(uint64_t tag, int32_t result)
{
    static const uint8_t types[] = {CLUSTER_SESSION_CLAIM, CLUSTER_SUB_ADD, CLUSTER_RETAIN_SET,
                                    CLUSTER_SUB_DEL,       CLUSTER_SESSION_RELEASE};
    struct cluster_cmd cmd = {
        .type = types[tag % sizeof types],
        .generation = tag,
        .sub_id = (uint32_t)result,
        .topic = {(const uint8_t *)"a/b", 3},
    };
    return cmd;
}

static int propose(uint64_t tag, int32_t result)
{
    struct cluster_cmd cmd = make_cmd(tag, result);
    char id[32];
    int n = snprintf(id, sizeof id, "client-%llu", (unsigned long long)tag);
    cmd.client_id = (struct proto_str){(const uint8_t *)id, (uint32_t)n};
    fx.in_propose = true;
    int rc = cluster_propose(&fx.c, &cmd, done_cb, (void *)(uintptr_t)tag);
    fx.in_propose = false;
    memset(id, 'X', sizeof id); /* the command was copied: scribbling is harmless */
    return rc;
}

static int apply_cb(void *ctx, const struct cluster_cmd *cmd, uint64_t index)
{
    cr_assert_eq(ctx, &fx, "apply_ctx not passed through");
    cr_assert(!fx.in_propose, "apply ran inside cluster_propose");
    cr_assert(!fx.in_done, "apply ran inside a done callback");
    cr_assert_lt(fx.napplied, MAX_EVENTS);
    struct applied *a = &fx.applied[fx.napplied++];
    a->type = cmd->type;
    a->index = index;
    a->generation = cmd->generation;
    a->iteration = fx.iteration;
    cr_assert_lt(cmd->client_id.len, sizeof a->client_id);
    memcpy(a->client_id, cmd->client_id.p, cmd->client_id.len);
    a->client_id[cmd->client_id.len] = '\0';
    if (fx.propose_in_apply && cmd->generation == fx.propose_in_apply)
        cr_assert_eq(propose(cmd->generation + 1000, 7), 0);
    return (int32_t)cmd->sub_id;
}

static void done_cb(void *arg, int status, int result)
{
    uint64_t tag = (uintptr_t)arg;
    cr_assert(!fx.in_propose, "done ran inside cluster_propose");
    cr_assert_lt(fx.ndone, MAX_EVENTS);
    fx.done[fx.ndone++] = (struct done){tag, status, result, fx.iteration};
    fx.in_done = true;
    if (fx.chain_left && status == 0) {
        fx.chain_left--;
        cr_assert_eq(propose(tag + 1, (int32_t)(tag + 1)), 0);
        if (!fx.chain_left) /* the chain is over: nothing may keep the loop alive */
            uv_timer_stop(&fx.watchdog);
    }
    if (fx.close_on_done && tag == fx.close_on_done) {
        cr_assert_eq(propose(9999, 1), 0); /* queued, then shut down */
        cluster_close(&fx.c, on_cluster_closed);
    }
    fx.in_done = false;
}

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    cr_assert_eq(uv_loop_init(&fx.loop), 0);
    cr_assert_eq(cluster_init(&fx.c, &fx.loop, 7, apply_cb, &fx), 0);
    cr_assert_eq(uv_timer_init(&fx.loop, &fx.watchdog), 0);
    cr_assert_eq(uv_prepare_init(&fx.loop, &fx.counter), 0);
    cr_assert_eq(uv_prepare_start(&fx.counter, on_prepare), 0);
    uv_unref((uv_handle_t *)&fx.counter);
}

/* Runs the loop until nothing is left to do; the watchdog (unreferenced unless
 * keep_alive) bounds the run. */
static void run(bool keep_alive)
{
    cr_assert_eq(uv_timer_start(&fx.watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
    if (keep_alive)
        uv_ref((uv_handle_t *)&fx.watchdog);
    else
        uv_unref((uv_handle_t *)&fx.watchdog);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    cr_assert(!fx.watchdog_fired, "the loop blocked for %d ms", WATCHDOG_MS);
    uv_timer_stop(&fx.watchdog);
}

static void close_all(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Closes the cluster (unless a test did) and checks the loop ends cleanly. */
static void teardown_checked(void)
{
    if (!fx.c.closing)
        cluster_close(&fx.c, on_cluster_closed);
    uv_walk(&fx.loop, close_all, NULL);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    cr_assert(fx.closed, "close_cb did not run");
    cr_assert_eq(uv_loop_close(&fx.loop), 0, "a handle outlived the cluster");
    /* after close_cb the owner frees the struct: whatever it still points to leaks */
    memset(&fx.c, 0, sizeof fx.c);
    check_leaks();
}

TestSuite(cluster, .init = setup);

Test(cluster, batch_applied_in_order_with_one_index)
{
    enum { N = 200 };
    for (uint64_t i = 1; i <= N; i++)
        cr_assert_eq(propose(i, (int32_t)i * 3), 0);
    cr_assert_eq(fx.napplied, 0, "applied inside cluster_propose");
    cr_assert_eq(fx.ndone, 0, "done ran inside cluster_propose");

    /* the whole batch is one entry, applied at the next iteration */
    uv_run(&fx.loop, UV_RUN_NOWAIT);
    cr_assert_eq(fx.napplied, N);
    cr_assert_eq(fx.ndone, N);
    for (size_t i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "client-%zu", i + 1);
        cr_assert_eq(fx.applied[i].generation, i + 1, "apply out of order at %zu", i);
        cr_assert_eq(fx.applied[i].index, 1, "one batch, one index");
        cr_assert_eq(fx.applied[i].type, make_cmd(i + 1, 0).type);
        cr_assert_str_eq(fx.applied[i].client_id, id);
        cr_assert_eq(fx.done[i].tag, i + 1, "done out of order at %zu", i);
        cr_assert_eq(fx.done[i].status, 0);
        cr_assert_eq(fx.done[i].result, (int)(i + 1) * 3);
    }

    /* the next turn's batch is the next entry */
    for (uint64_t i = N + 1; i <= N + 3; i++)
        cr_assert_eq(propose(i, 0), 0);
    run(false);
    cr_assert_eq(fx.napplied, N + 3);
    for (size_t i = N; i < N + 3; i++) {
        cr_assert_eq(fx.applied[i].index, 2);
        cr_assert_eq(fx.applied[i].generation, i + 1);
    }
    cr_assert_eq(fx.c.last_index, 2);

    /* an idle loop creates no empty entries */
    run(false);
    cr_assert_eq(fx.c.last_index, 2);
    teardown_checked();
}

Test(cluster, done_gets_apply_result_and_negative_becomes_status)
{
    static const int32_t results[] = {0, 1, 42, INT32_MAX, -1, CLUSTER_ESTALE, -EINVAL,
                                      INT32_MIN, 5};
    enum { N = sizeof results / sizeof results[0] };
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(propose(i + 1, results[i]), 0);
    run(false);
    cr_assert_eq(fx.ndone, N);
    /* a failed apply does not stop the rest of the batch */
    cr_assert_eq(fx.napplied, N);
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(fx.done[i].tag, i + 1);
        if (results[i] >= 0) {
            cr_assert_eq(fx.done[i].status, 0, "result %d", results[i]);
            cr_assert_eq(fx.done[i].result, results[i]);
        } else {
            cr_assert_eq(fx.done[i].status, results[i], "result %d", results[i]);
            cr_assert_eq(fx.done[i].result, 0);
        }
    }
    teardown_checked();
}

Test(cluster, null_done_is_allowed)
{
    struct cluster_cmd cmd = make_cmd(1, 0);
    cr_assert_eq(cluster_propose(&fx.c, &cmd, NULL, NULL), 0);
    cr_assert_eq(propose(2, 4), 0);
    run(false);
    cr_assert_eq(fx.napplied, 2);
    cr_assert_eq(fx.ndone, 1);
    cr_assert_eq(fx.done[0].tag, 2);
    cr_assert_eq(fx.done[0].result, 4);
    teardown_checked();
}

Test(cluster, proposals_from_done_apply_on_later_iterations_without_blocking)
{
    /* each done proposes the next command. The watchdog is referenced, so a
     * proposal that failed to wake the loop would leave it blocked in poll until
     * the watchdog fires. */
    enum { CHAIN = 100 };
    fx.chain_left = CHAIN;
    cr_assert_eq(propose(1, 1), 0);
    run(true);
    cr_assert_eq(fx.napplied, CHAIN + 1);
    cr_assert_eq(fx.ndone, CHAIN + 1);
    for (size_t i = 0; i < CHAIN + 1; i++) {
        cr_assert_eq(fx.applied[i].generation, i + 1);
        cr_assert_eq(fx.applied[i].index, i + 1, "one entry per turn");
        cr_assert_eq(fx.done[i].status, 0);
        cr_assert_eq(fx.done[i].result, (int)i + 1);
        if (i > 0)
            cr_assert_eq(fx.applied[i].iteration, fx.applied[i - 1].iteration + 1,
                         "proposal %zu not applied at the next iteration", i + 1);
    }
    teardown_checked();
}

Test(cluster, proposal_from_apply_goes_to_the_next_entry)
{
    fx.propose_in_apply = 2;
    for (uint64_t i = 1; i <= 3; i++)
        cr_assert_eq(propose(i, 0), 0);
    run(false);
    cr_assert_eq(fx.napplied, 4);
    cr_assert_eq(fx.applied[2].generation, 3, "the current entry finishes first");
    cr_assert_eq(fx.applied[3].generation, 1002);
    cr_assert_eq(fx.applied[3].index, 2);
    cr_assert_eq(fx.applied[3].iteration, fx.applied[2].iteration + 1);
    cr_assert_eq(fx.ndone, 4);
    cr_assert_eq(fx.done[3].tag, 1002);
    cr_assert_eq(fx.done[3].result, 7);
    teardown_checked();
}

Test(cluster, close_completes_pending_with_eshutdown)
{
    for (uint64_t i = 1; i <= 5; i++)
        cr_assert_eq(propose(i, 1), 0);
    cluster_close(&fx.c, on_cluster_closed);
    cr_assert_eq(propose(6, 1), CLUSTER_ESHUTDOWN, "proposal accepted after close");
    run(false);
    cr_assert(fx.closed);
    cr_assert_eq(fx.napplied, 0, "a pending proposal was applied after close");
    cr_assert_eq(fx.ndone, 5, "every pending proposal completes once, a refused one never");
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(fx.done[i].tag, i + 1);
        cr_assert_eq(fx.done[i].status, CLUSTER_ESHUTDOWN);
    }
    cr_assert_eq(fx.c.last_index, 0);
    teardown_checked();
}

Test(cluster, close_with_nothing_pending)
{
    cr_assert_eq(propose(1, 0), 0);
    run(false);
    cluster_close(&fx.c, on_cluster_closed);
    run(false);
    cr_assert(fx.closed);
    cr_assert_eq(fx.ndone, 1);
    teardown_checked();
}

Test(cluster, close_from_done_shuts_down_later_proposals)
{
    fx.close_on_done = 1;
    for (uint64_t i = 1; i <= 3; i++)
        cr_assert_eq(propose(i, 0), 0);
    run(false);
    cr_assert(fx.closed);
    /* 9999 was proposed in done(1) just before the close */
    bool seen = false;
    for (size_t i = 0; i < fx.ndone; i++) {
        for (size_t j = i + 1; j < fx.ndone; j++)
            cr_assert_neq(fx.done[i].tag, fx.done[j].tag, "done ran twice");
        if (fx.done[i].tag == 9999) {
            seen = true;
            cr_assert_eq(fx.done[i].status, CLUSTER_ESHUTDOWN);
        } else {
            cr_assert(fx.done[i].status == 0 || fx.done[i].status == CLUSTER_ESHUTDOWN);
        }
    }
    cr_assert(seen);
    cr_assert_eq(fx.ndone, 4);
    for (size_t i = 0; i < fx.napplied; i++)
        cr_assert_neq(fx.applied[i].generation, 9999, "applied after close");
    teardown_checked();
}

Test(cluster, refused_proposals_do_not_disturb_the_batch)
{
    /* an unknown type and an oversized command are refused up front; done is
     * never called for them and the commands around them still apply */
    static const uint8_t small[1];
    cr_assert_eq(propose(1, 11), 0);
    struct cluster_cmd bad = make_cmd(2, 0);
    bad.type = 0;
    cr_assert_lt(cluster_propose(&fx.c, &bad, done_cb, (void *)(uintptr_t)2), 0);
    bad.type = CLUSTER_NODE_LEAVE + 1;
    cr_assert_lt(cluster_propose(&fx.c, &bad, done_cb, (void *)(uintptr_t)2), 0);
    struct cluster_cmd big = make_cmd(3, 0);
    big.payload = (struct proto_str){small, UINT32_MAX};
    cr_assert_eq(cluster_propose(&fx.c, &big, done_cb, (void *)(uintptr_t)3), -E2BIG);
    cr_assert_eq(propose(4, 44), 0);
    run(false);
    cr_assert_eq(fx.ndone, 2);
    cr_assert_eq(fx.done[0].tag, 1);
    cr_assert_eq(fx.done[0].status, 0);
    cr_assert_eq(fx.done[0].result, 11);
    cr_assert_eq(fx.done[1].tag, 4);
    cr_assert_eq(fx.done[1].status, 0);
    cr_assert_eq(fx.done[1].result, 44);
    teardown_checked();
}

Test(cluster, refused_first_proposal_then_close_frees_everything)
{
    /* the waiter array is allocated before the command is refused; closing must
     * still release it (LeakSanitizer checks) */
    static const uint8_t small[1];
    struct cluster_cmd big = make_cmd(1, 0);
    big.payload = (struct proto_str){small, UINT32_MAX};
    cr_assert_eq(cluster_propose(&fx.c, &big, done_cb, NULL), -E2BIG);
    cluster_close(&fx.c, on_cluster_closed);
    cr_assert_null(fx.c.waiters, "close kept the waiter array");
    cr_assert_null(fx.c.batch.data, "close kept the batch buffer");
    run(false);
    cr_assert_eq(fx.ndone, 0);
    teardown_checked();
}

Test(cluster, generations_are_unique_and_carry_the_node)
{
    uint64_t prev = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t g = cluster_generation_next(&fx.c);
        cr_assert_eq(g >> 48, 7);
        cr_assert_gt(g, prev);
        prev = g;
    }
    struct cluster other;
    cr_assert_eq(cluster_init(&other, &fx.loop, 8, apply_cb, &fx), 0);
    cr_assert_neq(cluster_generation_next(&other), cluster_generation_next(&fx.c));
    cluster_close(&other, NULL);
    teardown_checked();
}
