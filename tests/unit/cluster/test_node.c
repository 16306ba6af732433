/* Tests for the node (cluster/cluster.c, datadir.c, batch.c, fsm.c): a real
 * one-voter node (libraft on libuv, LMDB store) on a private loop:
 * leadership, one entry per loop turn, results handed to the proposers,
 * closing, restarts (state, applied index, nothing applied twice, unique
 * generations), the data directory's identity, snapshots, and a store that
 * is behind its log. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "helpers.h"

static uv_loop_t loop;
static struct node n;

static void setup(void)
{
    tmp_setup();
    cr_assert_eq(uv_loop_init(&loop), 0);
    node_init(&n, &loop, 1, tmp_path("data"));
}

static bool finished;

/* Ends a test: closes the node, asserts that no handle is left on the loop
 * and (sanitized builds) that nothing leaked. Assertions only count in the
 * test body, so every test ends with this. */
static void finish(void)
{
    if (n.c)
        node_close(&n);
    finished = true;
    int open = loop_finish(&loop);
    node_free(&n);
    cr_assert_eq(open, 0, "%d handle(s) left open on the loop", open);
    check_leaks();
}

static void teardown(void)
{
    if (!finished) { /* the test failed part-way: clean up all the same */
        if (n.c)
            node_close(&n);
        loop_finish(&loop);
        node_free(&n);
    }
    finished = false;
    tmp_teardown();
}

TestSuite(node, .init = setup, .fini = teardown, .timeout = 30);

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Starts n and waits until it leads, whatever its node id. */
static void start_leader(void)
{
    node_start(&n);
    cr_assert(run_until(&loop, node_is_leader, &n, 5000), "a one-voter node did not become leader");
    struct cluster_status st = node_status(&n);
    cr_assert_eq(st.node_id, 1);
    cr_assert_eq(st.leader_id, 1);
}

/* Restarts n on its data dir: close, start, run, leader. The apply records
 * are reset first. */
static void restart(void)
{
    node_close(&n);
    n.n_applied = 0;
    start_leader();
}

struct all_done {
    struct done *d;
    int n;
};

static bool all_fired(void *arg)
{
    struct all_done *a = arg;
    for (int i = 0; i < a->n; i++)
        if (!a->d[i].calls)
            return false;
    return true;
}

/* --- one entry per loop turn ------------------------------------------------------ */

Test(node, commands_of_one_loop_turn_land_in_one_entry)
{
    start_leader();
    uint64_t g1 = cluster_generation_next(n.c), g2 = cluster_generation_next(n.c);
    struct cluster_cmd cmds[] = {
        cmd_claim("c1", 1, g1, false),                /* new: 0 */
        cmd_claim("c1", 1, g2, false),                /* resumed: 1 */
        cmd_sub(CLUSTER_SUB_ADD, "c1", g1, "stale/#"), /* g1 is superseded: stale */
        cmd_sub(CLUSTER_SUB_ADD, "c1", g2, "a/b"),    /* 0 */
        cmd_retain("r", "x"),                         /* 0 */
    };
    struct done d[5] = {{0}};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(cluster_propose(n.c, &cmds[i], done_cb, &d[i]), 0);
        cr_assert_eq(d[i].calls, 0, "done ran from inside cluster_propose");
    }
    struct all_done a = {d, 5};
    cr_assert(run_until(&loop, all_fired, &a, 5000), "not every proposal completed");
    run_for(&loop, 300); /* a second call would show now */

    static const int want_result[] = {0, 1, 0, 0, 0};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(d[i].calls, 1, "done of proposal %d ran %d times", i, d[i].calls);
        if (i == 2) {
            cr_assert_eq(d[i].status, CLUSTER_ESTALE, "stale sub_add: status %d", d[i].status);
            continue;
        }
        cr_assert_eq(d[i].status, 0, "proposal %d: status %d", i, d[i].status);
        cr_assert_eq(d[i].result, want_result[i], "proposal %d: result %d, want %d", i, d[i].result,
                     want_result[i]);
    }

    /* the apply callback saw the accepted four, in order, at one index */
    cr_assert_eq(n.n_applied, 4, "apply ran %zu times, want 4", n.n_applied);
    static const uint8_t want_type[] = {CLUSTER_SESSION_CLAIM, CLUSTER_SESSION_CLAIM, CLUSTER_SUB_ADD,
                                        CLUSTER_RETAIN_SET};
    static const int want_apply_result[] = {0, 1, 0, 0};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(n.applied[i].type, want_type[i], "apply %d: type %u", i, n.applied[i].type);
        cr_assert_eq(n.applied[i].result, want_apply_result[i], "apply %d: result %d", i, n.applied[i].result);
        cr_assert_eq(n.applied[i].index, n.applied[0].index, "apply %d at index %llu, the first at %llu", i,
                     (unsigned long long)n.applied[i].index, (unsigned long long)n.applied[0].index);
    }
    struct cluster_status st = node_status(&n);
    cr_assert_eq(st.applied_index, n.applied[0].index);
    cr_assert_geq(st.commit_index, st.applied_index);
    cr_assert_eq(n.fatals, 0, "fatal: %s", n.fatal_msg);
    node_close(&n);
    finish();
}

Test(node, a_turn_beyond_the_batch_size_is_split_into_entries)
{
    /* 8 MiB closes a batch: 12 commands of 1 MiB proposed in one turn make
     * at least two entries, and every one completes */
    start_leader();
    enum { COUNT = 12, SIZE = 1 << 20 };
    char *payload = malloc(SIZE + 1);
    cr_assert_not_null(payload);
    memset(payload, 'p', SIZE);
    payload[SIZE] = '\0';
    struct done d[COUNT] = {{0}};
    for (int i = 0; i < COUNT; i++) {
        char topic[16];
        snprintf(topic, sizeof(topic), "big/%02d", i);
        struct cluster_cmd c = cmd_retain(topic, payload);
        cr_assert_eq(cluster_propose(n.c, &c, done_cb, &d[i]), 0);
        cr_assert_eq(d[i].calls, 0, "done ran from inside cluster_propose");
    }
    free(payload);
    struct all_done a = {d, COUNT};
    cr_assert(run_until(&loop, all_fired, &a, 10000), "not every proposal completed");
    for (int i = 0; i < COUNT; i++)
        cr_assert_eq(d[i].status, 0, "proposal %d: %d", i, d[i].status);
    cr_assert_eq(n.n_applied, COUNT);
    cr_assert_gt(n.applied[COUNT - 1].index, n.applied[0].index, "%d MiB went into one entry", COUNT);
    for (int i = 1; i < COUNT; i++)
        cr_assert_geq(n.applied[i].index, n.applied[i - 1].index, "out of order");
    finish();
}

Test(node, commands_of_separate_turns_land_in_separate_entries)
{
    start_leader();
    struct done d1, d2;
    struct cluster_cmd a = cmd_retain("t/1", "1"), b = cmd_retain("t/2", "2");
    propose_wait(&n, &a, &d1);
    propose_wait(&n, &b, &d2);
    cr_assert_eq(d1.status, 0);
    cr_assert_eq(d2.status, 0);
    cr_assert_eq(n.n_applied, 2);
    cr_assert_gt(n.applied[1].index, n.applied[0].index);
    node_close(&n);
    finish();
}

Test(node, proposals_while_an_append_is_in_flight_share_the_next_entry)
{
    /* group commit: b and c come in two loop turns while a's entry is still
     * being written; they wait in the open batch and go in one entry after
     * it (without it: one entry per turn). The write may be quicker than a
     * turn: tried until a was in flight across both turns. */
    start_leader();
    int shared = 0, tries = 0;
    for (; tries < 50 && !shared; tries++) {
        char t[3][16];
        for (int k = 0; k < 3; k++)
            snprintf(t[k], sizeof(t[k]), "g/%d/%d", tries, k);
        struct cluster_cmd a = cmd_retain(t[0], "a"), b = cmd_retain(t[1], "b"), c = cmd_retain(t[2], "c");
        struct done d[3] = {{0}};
        size_t first = n.n_applied;
        cr_assert_eq(cluster_propose(n.c, &a, done_cb, &d[0]), 0);
        uv_run(&loop, UV_RUN_NOWAIT); /* a's batch is sealed and appended */
        cr_assert_eq(cluster_propose(n.c, &b, done_cb, &d[1]), 0);
        uv_run(&loop, UV_RUN_NOWAIT);
        bool b_turn = !d[0].calls;
        cr_assert_eq(cluster_propose(n.c, &c, done_cb, &d[2]), 0);
        uv_run(&loop, UV_RUN_NOWAIT);
        bool in_flight = b_turn && !d[0].calls;
        struct all_done all = {d, 3};
        cr_assert(run_until(&loop, all_fired, &all, 5000), "not every proposal completed");
        for (int k = 0; k < 3; k++)
            cr_assert_eq(d[k].status, 0, "proposal %d: %d", k, d[k].status);
        cr_assert_eq(n.n_applied, first + 3);
        const struct applied *x = &n.applied[first];
        cr_assert_gt(x[1].index, x[0].index, "b went into a's entry, proposed after it was sealed");
        if (in_flight) {
            cr_assert_eq(x[2].index, x[1].index, "b and c, proposed while a was in flight, in entries %llu and %llu",
                         (unsigned long long)x[1].index, (unsigned long long)x[2].index);
            shared = 1;
        }
    }
    cr_assert(shared, "a's entry never stayed in flight for two loop turns in %d tries", tries);
    cr_assert_eq(n.fatals, 0, "fatal: %s", n.fatal_msg);
    node_close(&n);
    finish();
}

Test(node, a_proposal_with_no_done_callback_is_applied)
{
    start_leader();
    struct cluster_cmd a = cmd_retain("nocb", "1");
    cr_assert_eq(cluster_propose(n.c, &a, NULL, NULL), 0);
    struct done d;
    struct cluster_cmd b = cmd_retain("after", "2");
    propose_wait(&n, &b, &d);
    cr_assert_eq(n.n_applied, 2);
    cr_assert_str_eq(n.applied[0].topic, "nocb");
    node_close(&n);
    finish();
}

Test(node, an_unknown_command_type_is_refused_at_once)
{
    start_leader();
    struct cluster_cmd bad = {.type = 99};
    struct done d = {0};
    int rc = cluster_propose(n.c, &bad, done_cb, &d);
    cr_assert_lt(rc, 0, "an unknown type was queued");
    run_for(&loop, 200);
    cr_assert_eq(d.calls, 0, "done ran for a command that was not queued");
    /* the node still works */
    struct cluster_cmd ok = cmd_retain("t", "1");
    propose_wait(&n, &ok, &d);
    cr_assert_eq(d.status, 0);
    node_close(&n);
    finish();
}

/* --- a command the store refuses ------------------------------------------------------------ */

Test(node, a_command_the_store_refuses_fails_alone)
{
    /* cluster_propose takes a claim with an empty client id (the store's
     * check_id refuses it, deterministically, on every node). Only that
     * command may fail: the other command of the entry applies and the node
     * goes on; a fail-stop here would stop every node of the cluster. */
    start_leader();
    struct cluster_cmd bad = cmd_claim("", 1, cluster_generation_next(n.c), false);
    struct cluster_cmd good = cmd_retain("still/here", "1");
    struct done d[2] = {{0}};
    cr_assert_eq(cluster_propose(n.c, &bad, done_cb, &d[0]), 0);
    cr_assert_eq(cluster_propose(n.c, &good, done_cb, &d[1]), 0);
    struct all_done a = {d, 2};
    bool fired = run_until(&loop, all_fired, &a, 4000);
    cr_assert_eq(n.fatals, 0, "one refused command stopped the node: fatal \"%s\"", n.fatal_msg);
    cr_assert(fired, "the proposals never completed");
    cr_assert_lt(d[0].status, 0, "the empty client id was accepted");
    cr_assert_eq(d[1].status, 0, "the good command of the same entry failed: %d", d[1].status);
    struct done d3;
    struct cluster_cmd later = cmd_retain("later", "1");
    propose_wait(&n, &later, &d3);
    cr_assert_eq(d3.status, 0, "the node stopped committing: %d", d3.status);
    node_close(&n);
    finish();
}

static bool fatal_seen(void *arg) { return ((struct node *)arg)->fatals > 0; }

Test(node, a_node_stopped_by_fatal_still_closes_cleanly)
{
    /* whatever stops the node (here the refused command above), closing it
     * afterwards must complete and free everything */
    /* a store that is full cannot apply a committed entry: the node stops */
    n.cfg.store_map_size = 256 << 10;
    start_leader();
    static char big[64 << 10];
    memset(big, 'x', sizeof(big) - 1);
    struct done d = {0};
    for (int i = 0; i < 8 && !n.fatals; i++) {
        char topic[32];
        snprintf(topic, sizeof(topic), "full/%d", i);
        struct cluster_cmd fill = cmd_retain(topic, big);
        memset(&d, 0, sizeof(d));
        if (cluster_propose(n.c, &fill, done_cb, &d) != 0)
            break;
        run_until(&loop, fatal_seen, &n, 1000);
    }
    cr_assert_gt(n.fatals, 0, "a full store did not stop the node");
    {
        struct done d2 = {0};
        struct cluster_cmd ok = cmd_retain("t", "1");
        cr_assert_eq(cluster_propose(n.c, &ok, done_cb, &d2), CLUSTER_ESHUTDOWN,
                     "a stopped node queued a proposal");
    }
    node_close(&n);
    cr_assert_eq(d.calls, 1, "the proposal's done ran %d times", d.calls);
    cr_assert_neq(d.status, 0);
    finish();
}

/* --- closing -------------------------------------------------------------------------------- */

Test(node, close_fires_its_callback_and_leaves_no_handle)
{
    start_leader();
    struct done d;
    struct cluster_cmd a = cmd_retain("t", "1");
    propose_wait(&n, &a, &d);
    node_close(&n); /* asserts the callback ran; finish() that no handle is left */
    finish();
}

Test(node, close_lets_pending_proposals_commit_first)
{
    /* what was proposed before cluster_close (a broker closing its
     * connections proposes their session releases) still commits */
    start_leader();
    struct cluster_cmd a = cmd_retain("t/1", "1"), b = cmd_retain("t/2", "2");
    struct done d[2] = {{0}};
    cr_assert_eq(cluster_propose(n.c, &a, done_cb, &d[0]), 0);
    cr_assert_eq(cluster_propose(n.c, &b, done_cb, &d[1]), 0);
    node_close(&n);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(d[i].calls, 1, "pending proposal %d: done ran %d times", i, d[i].calls);
        cr_assert_eq(d[i].status, 0, "pending proposal %d: status %d", i, d[i].status);
    }
    char *dump = cluster_dump_text(tmp_path("data"));
    cr_assert(strstr(dump, "retained \"t/1\"") && strstr(dump, "retained \"t/2\""),
              "the proposals made before close are not in the store:\n%s", dump);
    free(dump);
    finish();
}

static void count_close(void *arg) { (*(int *)arg)++; }
static bool flag_set(void *arg) { return *(int *)arg > 0; }

Test(node, propose_while_closing_is_refused)
{
    start_leader();
    int closed = 0;
    cluster_close(n.c, count_close, &closed);
    struct cluster_cmd a = cmd_retain("t", "1");
    struct done d = {0};
    cr_assert_eq(cluster_propose(n.c, &a, done_cb, &d), CLUSTER_ESHUTDOWN);
    cluster_close(n.c, count_close, &closed); /* a second close is ignored */
    cr_assert(run_until(&loop, flag_set, &closed, 5000), "close callback never ran");
    n.c = NULL;
    run_for(&loop, 100);
    cr_assert_eq(closed, 1, "close callback ran %d times", closed);
    cr_assert_eq(d.calls, 0);
    finish();
}

static void close_from_done(void *arg, int status, int result)
{
    struct done *d = arg;
    done_cb(d, status, result);
    cluster_close(n.c, count_close, &n.reloads); /* reloads: an int nothing else touches here */
}

Test(node, close_from_inside_a_done_callback)
{
    start_leader();
    struct done d = {0};
    struct cluster_cmd a = cmd_retain("t", "1");
    cr_assert_eq(cluster_propose(n.c, &a, close_from_done, &d), 0);
    cr_assert(run_until(&loop, flag_set, &n.reloads, 5000), "close callback never ran");
    n.c = NULL;
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.status, 0);
    n.reloads = 0;
    finish();
}

struct chain {
    int left;
    int calls;
    int bad_status;
};

static void chain_done(void *arg, int status, int result)
{
    (void)result;
    struct chain *ch = arg;
    ch->calls++;
    if (status)
        ch->bad_status = status;
    if (--ch->left > 0) {
        char topic[32];
        snprintf(topic, sizeof(topic), "chain/%d", ch->left);
        struct cluster_cmd c = cmd_retain(topic, "x");
        cr_assert_eq(cluster_propose(n.c, &c, chain_done, ch), 0);
    }
}

static bool chain_over(void *arg) { return ((struct chain *)arg)->left <= 0; }

Test(node, propose_from_inside_a_done_callback)
{
    start_leader();
    struct chain ch = {.left = 10};
    struct cluster_cmd c = cmd_retain("chain/start", "x");
    cr_assert_eq(cluster_propose(n.c, &c, chain_done, &ch), 0);
    cr_assert(run_until(&loop, chain_over, &ch, 5000), "the chain stopped after %d", ch.calls);
    cr_assert_eq(ch.calls, 10);
    cr_assert_eq(ch.bad_status, 0);
    cr_assert_eq(n.n_applied, 10);
    finish();
}

Test(node, close_before_run)
{
    char err[256];
    cr_assert_eq(node_try_start(&n, err, sizeof(err)), 0, "%s", err);
    node_close(&n);
    finish();
}

/* --- restarts ------------------------------------------------------------------------------- */

static void make_state(uint64_t *gen)
{
    *gen = cluster_generation_next(n.c);
    struct cluster_cmd cmds[] = {
        cmd_claim("alice", 1, *gen, false),
        cmd_sub(CLUSTER_SUB_ADD, "alice", *gen, "a/+"),
        cmd_retain("r/1", "one"),
        cmd_claim("bob", 1, cluster_generation_next(n.c), false),
    };
    cmds[0].has_will = true;
    cmds[0].will = (struct cluster_will){.topic = S("w"), .payload = S("bye"), .qos = 1, .delay = 3};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        struct done d;
        propose_wait(&n, &cmds[i], &d);
        cr_assert_eq(d.status, 0, "command %zu: %d", i, d.status);
    }
}

Test(node, restart_keeps_state_and_applies_nothing_twice)
{
    start_leader();
    uint64_t gen;
    make_state(&gen);
    size_t applied_first = n.n_applied;
    cr_assert_eq(applied_first, 4);
    char *load1 = cluster_load_text(n.c);
    struct cluster_status st1 = node_status(&n);
    cr_assert_gt(st1.applied_index, 0);
    node_close(&n);
    char *dump1 = cluster_dump_text(n.dir);

    n.n_applied = 0;
    char err[512];
    cr_assert_eq(node_try_start(&n, err, sizeof(err)), 0, "restart: %s", err);
    /* before Raft runs, the store already answers */
    struct cluster_status st2 = node_status(&n);
    cr_assert_eq(st2.applied_index, st1.applied_index, "applied index %llu after restart, was %llu",
                 (unsigned long long)st2.applied_index, (unsigned long long)st1.applied_index);
    cr_assert_eq(st2.role, 3);
    char *load2 = cluster_load_text(n.c);
    cr_assert_str_eq(load2, load1, "cluster_load after restart:\n%s\nbefore:\n%s", load2, load1);
    cr_assert_eq(cluster_run(n.c, err, sizeof(err)), 0, "cluster_run: %s", err);
    cr_assert(run_until(&loop, node_is_leader, &n, 5000));

    /* the old entries replay before a new one applies: only the new one may
     * reach the apply callback */
    struct done d;
    struct cluster_cmd fresh = cmd_retain("after/restart", "1");
    propose_wait(&n, &fresh, &d);
    cr_assert_eq(d.status, 0);
    cr_assert_eq(n.n_applied, 1, "apply ran %zu times after restart (old entries applied again?)", n.n_applied);
    cr_assert_str_eq(n.applied[0].topic, "after/restart");
    cr_assert_gt(n.applied[0].index, st1.applied_index);
    cr_assert_eq(n.reloads, 0);

    /* the old generation is still the session's: a sub_add with it applies */
    struct cluster_cmd sub = cmd_sub(CLUSTER_SUB_ADD, "alice", gen, "b/#");
    propose_wait(&n, &sub, &d);
    cr_assert_eq(d.status, 0, "sub_add with the restored generation: %d", d.status);
    node_close(&n);

    char *dump2 = cluster_dump_text(n.dir);
    cr_assert_neq(strcmp(dump1, dump2), 0);
    cr_assert(strstr(dump2, "retained \"after/restart\""), "%s", dump2);
    cr_assert(strstr(dump2, "sub \"alice\" \"b/#\""), "%s", dump2);
    free(load1);
    free(load2);
    free(dump1);
    free(dump2);
    finish();
}

Test(node, restart_twice_without_new_entries)
{
    start_leader();
    uint64_t gen;
    make_state(&gen);
    char *load1 = cluster_load_text(n.c);
    restart();
    restart();
    char *load2 = cluster_load_text(n.c);
    cr_assert_str_eq(load2, load1);
    run_for(&loop, 300);
    cr_assert_eq(n.n_applied, 0, "apply ran %zu times for old entries", n.n_applied);
    node_close(&n);
    free(load1);
    free(load2);
    finish();
}

/* --- identity of the data directory ------------------------------------------------------------ */

static void assert_refused(const char *why)
{
    char err[512];
    int rc = node_try_start(&n, err, sizeof(err));
    cr_assert_lt(rc, 0, "%s: cluster_start accepted a foreign data dir", why);
    cr_assert(strstr(err, "belongs to"), "%s: message \"%s\"", why, err);
    if (n.c)
        node_close(&n);
}

Test(node, a_data_dir_of_another_cluster_or_node_is_refused)
{
    start_leader();
    struct done d;
    struct cluster_cmd a = cmd_retain("t", "1");
    propose_wait(&n, &a, &d);
    node_close(&n);
    char *dump1 = cluster_dump_text(n.dir);

    snprintf(n.name, sizeof(n.name), "other");
    assert_refused("another cluster_name");
    snprintf(n.name, sizeof(n.name), "t");
    n.cfg.node_id = 2;
    assert_refused("another node_id");

    /* the directory is unharmed: the right identity still starts */
    n.cfg.node_id = 1;
    start_leader();
    char *load = cluster_load_text(n.c);
    cr_assert(strstr(load, "topic=\"t\""), "%s", load);
    node_close(&n);
    char *dump2 = cluster_dump_text(n.dir);
    cr_assert_str_eq(dump2, dump1);
    free(load);
    free(dump1);
    free(dump2);
    finish();
}

Test(node, a_raft_log_without_node_id_is_refused)
{
    start_leader();
    node_close(&n);
    cr_assert_eq(unlink(tmp_path("data/node.id")), 0);
    char err[512];
    int rc = node_try_start(&n, err, sizeof(err));
    cr_assert_lt(rc, 0);
    cr_assert(strstr(err, "belongs to"), "message \"%s\"", err);
    if (n.c)
        node_close(&n);
    finish();
}

Test(node, a_corrupt_node_id_is_refused)
{
    start_leader();
    node_close(&n);
    FILE *f = fopen(tmp_path("data/node.id"), "w");
    cr_assert_not_null(f);
    fputs("cluster_name t\n", f);
    fclose(f);
    char err[512];
    int rc = node_try_start(&n, err, sizeof(err));
    cr_assert_lt(rc, 0);
    cr_assert(strstr(err, "corrupt"), "message \"%s\"", err);
    if (n.c)
        node_close(&n);
    finish();
}

/* --- generations ------------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(node, generations_are_unique_across_restarts)
{
    enum { PER_RUN = 500, RUNS = 3 };
    static uint64_t g[PER_RUN * RUNS];
    int k = 0;
    start_leader();
    for (int run = 0; run < RUNS; run++) {
        if (run)
            restart();
        for (int i = 0; i < PER_RUN; i++)
            g[k++] = cluster_generation_next(n.c);
        /* proposals share the counter: make some in between */
        struct done d;
        struct cluster_cmd a = cmd_retain("t", "1");
        propose_wait(&n, &a, &d);
    }
    node_close(&n);
    qsort(g, (size_t)k, sizeof(g[0]), cmp_u64);
    for (int i = 1; i < k; i++)
        cr_assert_neq(g[i], g[i - 1], "generation %llu handed out twice", (unsigned long long)g[i]);
    for (int i = 0; i < k; i++)
        cr_assert_neq(g[i], 0, "generation 0 handed out");
    finish();
}

Test(node, generations_differ_between_nodes)
{
    /* two nodes on separate dirs with the same boot count and sequence */
    start_leader();
    uint64_t a = cluster_generation_next(n.c);
    node_close(&n);
    struct node m;
    node_init(&m, &loop, 2, tmp_path("data2"));
    node_start(&m);
    uint64_t b = cluster_generation_next(m.c);
    node_close(&m);
    node_free(&m);
    cr_assert_neq(a, b, "nodes 1 and 2 both handed out generation %llu", (unsigned long long)a);
    finish();
}

Test(node, node_ids_beyond_16_bits_are_refused)
{
    /* generations carry the node id in 16 bits: node 65537 would hand out
     * node 1's generations, so it cannot start */
    n.cfg.node_id = 65537;
    char err[512];
    int rc = node_try_start(&n, err, sizeof(err));
    cr_assert_lt(rc, 0, "node 65537 started");
    cr_assert(strstr(err, "out of range"), "message \"%s\"", err);
    if (n.c)
        node_close(&n);
    finish();
}

/* Rewrites the epoch in DIR/node.id (as if the node had started that many
 * times). */
static void set_epoch(unsigned long epoch)
{
    FILE *f = fopen(tmp_path("data/node.id"), "w");
    cr_assert_not_null(f);
    fprintf(f, "# Starling node identity: do not edit\ncluster_name t\nnode_id 1\nepoch %lu\n", epoch);
    fclose(f);
}

static unsigned long read_epoch(void)
{
    FILE *f = fopen(tmp_path("data/node.id"), "r");
    cr_assert_not_null(f);
    char line[256];
    unsigned long e = 0;
    while (fgets(line, sizeof(line), f))
        sscanf(line, "epoch %lu", &e);
    fclose(f);
    return e;
}

Test(node, generations_stay_unique_past_65536_restarts)
{
    /* a crash-looping node restarted by its supervisor every 100 ms passes
     * 65536 starts in under two hours */
    start_leader();
    uint64_t first[8];
    for (int i = 0; i < 8; i++)
        first[i] = cluster_generation_next(n.c);
    node_close(&n);
    set_epoch(65536); /* the next start is epoch 65537 */
    start_leader();
    cr_assert_eq(read_epoch(), 65537);
    for (int i = 0; i < 8; i++) {
        uint64_t g = cluster_generation_next(n.c);
        for (int j = 0; j < 8; j++)
            cr_assert_neq(g, first[j], "epoch 65537 handed out generation 0x%llx of epoch 1 again",
                          (unsigned long long)g);
    }
    node_close(&n);
    finish();
}

Test(node, a_wrapping_generation_sequence_moves_the_epoch_on_durably)
{
    start_leader();
    unsigned long epoch = read_epoch();
    uint64_t first = cluster_generation_next(n.c), g = first;
    for (uint32_t i = 1; i <= 0xFFFFFF; i++) {
        g = cluster_generation_next(n.c);
        cr_assert_neq(g, first, "generation 0x%llx repeated after %u more", (unsigned long long)g, i);
    }
    cr_assert_eq(read_epoch(), epoch + 1, "the epoch was not recorded when the sequence wrapped");
    node_close(&n);
    /* the next start goes on past the epoch the wrap used */
    start_leader();
    cr_assert_eq(read_epoch(), epoch + 2);
    node_close(&n);
    finish();
}

Test(node, a_data_dir_whose_raft_log_was_removed_is_refused)
{
    start_leader();
    struct done d;
    struct cluster_cmd a = cmd_retain("t", "1");
    propose_wait(&n, &a, &d);
    node_close(&n);
    cr_assert_eq(nftw(tmp_path("data/raft"), rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    char err[512];
    int rc = node_try_start(&n, err, sizeof(err));
    cr_assert_lt(rc, 0, "started with a store ahead of an empty raft log");
    cr_assert(strstr(err, "refusing to start"), "message \"%s\"", err);
    if (n.c)
        node_close(&n);
    finish();
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert_not_null(in, "%s", from);
    cr_assert_not_null(out, "%s", to);
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), in)) > 0)
        cr_assert_eq(fwrite(buf, 1, got, out), got);
    fclose(in);
    fclose(out);
    return 0;
}

static uint64_t applied_target;

static bool applied_reached(void *arg) { return node_status(arg).applied_index >= applied_target; }

Test(node, a_store_behind_its_log_replays_the_missing_entries)
{
    /* MDB_NOSYNC: after a crash the store may be behind the Raft log; the
     * node must apply what is missing (and tell the broker), once */
    start_leader();
    uint64_t gen;
    make_state(&gen);
    node_close(&n);
    mkdir(tmp_path("old-state"), 0700);
    copy_file(tmp_path("data/state/data.mdb"), tmp_path("old-state/data.mdb"));

    start_leader();
    struct done d;
    struct cluster_cmd more[] = {cmd_retain("late/1", "1"), cmd_retain("late/2", "2"),
                                 cmd_sub(CLUSTER_SUB_ADD, "alice", gen, "late/#")};
    for (int i = 0; i < 3; i++) {
        propose_wait(&n, &more[i], &d);
        cr_assert_eq(d.status, 0);
    }
    char *want = cluster_load_text(n.c);
    uint64_t want_index = node_status(&n).applied_index;
    node_close(&n);
    copy_file(tmp_path("old-state/data.mdb"), tmp_path("data/state/data.mdb"));

    n.n_applied = 0;
    char err[512];
    cr_assert_eq(node_try_start(&n, err, sizeof(err)), 0, "%s", err);
    cr_assert_lt(node_status(&n).applied_index, want_index);
    cr_assert_eq(cluster_run(n.c, err, sizeof(err)), 0, "%s", err);
    cr_assert(run_until(&loop, node_is_leader, &n, 5000));
    applied_target = want_index;
    cr_assert(run_until(&loop, applied_reached, &n, 5000), "the store stayed at %llu, the log reaches %llu",
              (unsigned long long)node_status(&n).applied_index, (unsigned long long)want_index);
    char *got = cluster_load_text(n.c);
    cr_assert_str_eq(got, want, "state after the replay:\n%s\nwant:\n%s", got, want);
    cr_assert_eq(n.n_applied, 3, "apply ran %zu times, want the 3 missing commands", n.n_applied);
    cr_assert_str_eq(n.applied[0].topic, "late/1");
    cr_assert_str_eq(n.applied[1].topic, "late/2");
    cr_assert_eq(n.applied[2].type, CLUSTER_SUB_ADD);
    struct cluster_cmd marker = cmd_retain("marker", "m");
    propose_wait(&n, &marker, &d);
    cr_assert_eq(d.status, 0);
    cr_assert_eq(n.n_applied, 4, "apply ran %zu times, want the 3 missing commands and the marker", n.n_applied);
    free(want);
    free(got);
    finish();
}

/* --- snapshots ----------------------------------------------------------------------------------- */


static void propose_many(int count)
{
    for (int i = 0; i < count; i++) {
        char id[32], topic[32];
        snprintf(id, sizeof(id), "client-%03d", i % 37);
        snprintf(topic, sizeof(topic), "topic/%03d", i % 41);
        struct cluster_cmd c = (i % 2) ? cmd_claim(id, 1, cluster_generation_next(n.c), i % 5 == 0)
                                       : cmd_retain(topic, id);
        struct done d;
        propose_wait(&n, &c, &d);
        cr_assert_eq(d.status, 0, "proposal %d: %d", i, d.status);
    }
}

Test(node, snapshot_is_taken_and_a_restart_restores_the_state)
{
    n.cfg.snapshot_threshold = 16;
    n.cfg.snapshot_trailing = 4;
    start_leader();
    propose_many(100);
    const char *raftdir = tmp_path("data/raft");
    cr_assert(run_until(&loop, has_snapshot, (void *)raftdir, 5000), "no snapshot-* file in %s", raftdir);
    char *load1 = cluster_load_text(n.c);
    struct cluster_status st1 = node_status(&n);
    node_close(&n);

    n.n_applied = 0;
    start_leader();
    struct cluster_status st2 = node_status(&n);
    cr_assert_eq(st2.applied_index, st1.applied_index);
    char *load2 = cluster_load_text(n.c);
    cr_assert_str_eq(load2, load1, "state after restart:\n%s\nbefore:\n%s", load2, load1);
    struct done d;
    struct cluster_cmd a = cmd_retain("after", "1");
    propose_wait(&n, &a, &d);
    cr_assert_eq(n.n_applied, 1, "apply ran %zu times after restart", n.n_applied);
    cr_assert_eq(n.reloads, 0, "the snapshot replaced a store that was up to date");
    node_close(&n);
    free(load1);
    free(load2);
    finish();
}

/* Overwrites the first bytes of every snapshot data file in dir (libraft
 * checksums the .meta file only, so the data reaches the FSM as it is). */
static int corrupt_snapshots(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "snapshot-", 9) != 0 || (len > 5 && strcmp(e->d_name + len - 5, ".meta") == 0))
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r+");
        cr_assert_not_null(f);
        fputs("NOTASNAPSHOT", f);
        fclose(f);
        count++;
    }
    closedir(d);
    return count;
}

Test(node, a_corrupt_snapshot_fails_cluster_run_cleanly)
{
    n.cfg.snapshot_threshold = 16;
    n.cfg.snapshot_trailing = 4;
    start_leader();
    propose_many(40);
    const char *raftdir = tmp_path("data/raft");
    cr_assert(run_until(&loop, has_snapshot, (void *)raftdir, 5000), "no snapshot-* file in %s", raftdir);
    node_close(&n);
    cr_assert_gt(corrupt_snapshots(raftdir), 0);

    char err[512];
    cr_assert_eq(node_try_start(&n, err, sizeof(err)), 0, "cluster_start: %s", err);
    err[0] = '\0';
    int rc = cluster_run(n.c, err, sizeof(err));
    cr_assert_lt(rc, 0, "cluster_run accepted a corrupt snapshot");
    cr_assert_neq(err[0], '\0', "no message");
    node_close(&n);
    finish();
}

Test(node, a_lost_store_is_rebuilt_from_the_snapshot_and_the_log)
{
    /* the store is written with MDB_NOSYNC: the Raft log is the durable
     * record, so a store that is behind (here: gone) catches up from it */
    n.cfg.snapshot_threshold = 16;
    n.cfg.snapshot_trailing = 4;
    start_leader();
    propose_many(60);
    const char *raftdir = tmp_path("data/raft");
    cr_assert(run_until(&loop, has_snapshot, (void *)raftdir, 5000), "no snapshot-* file in %s", raftdir);
    char *load1 = cluster_load_text(n.c);
    node_close(&n);
    cr_assert_eq(nftw(tmp_path("data/state"), rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);

    n.n_applied = 0;
    start_leader();
    struct done d;
    struct cluster_cmd a = cmd_retain("after", "1");
    propose_wait(&n, &a, &d);
    cr_assert_eq(d.status, 0);
    char *load2 = cluster_load_text(n.c);
    /* the new retained message sorts after every "topic/..." one */
    size_t l1 = strlen(load1);
    cr_assert(strstr(load2, "topic=\"after\""), "%s", load2);
    char *without = strdup(load2);
    char *hit = strstr(without, "type=6 client_id=\"\" node=0 generation=0 clean_start=0 expiry=0 expire_at=0 "
                                "has_will=0 will.topic=\"\" will.payload=\"\" will.props=\"\" will.qos=0 "
                                "will.retain=0 will.delay=0 filter=\"\" qos=1 no_local=0 rap=0 rh=0 sub_id=0 "
                                "topic=\"after\"");
    cr_assert_not_null(hit);
    char *eol = strchr(hit, '\n');
    memmove(hit, eol + 1, strlen(eol + 1) + 1);
    cr_assert_eq(strlen(without), l1);
    cr_assert_str_eq(without, load1, "rebuilt state:\n%s\nbefore:\n%s", without, load1);
    cr_assert_geq(n.reloads, 1, "the snapshot was restored without a reload callback");
    node_close(&n);
    free(without);
    free(load1);
    free(load2);
    finish();
}
