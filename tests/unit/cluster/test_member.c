/* Tests for cluster/member.c: membership changes on three real voters in one
 * process (node i on 127.0.0.i), plus node 4, a one-voter cluster of its own
 * with the same name and secret: leadership transfers, removing followers and
 * the leader (asked on the leader or forwarded by a follower), leaving, the
 * last member, joining (the check, the restart that discards the joiner's
 * state, the catch-up) and the joins that must be refused. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define N 4
#define VOTERS 3
#define ALL 0xf
#define TRIO 0x7

static uv_loop_t loop;
static struct node nodes[N];

/* node_event(node, false / true) calls and messages handed up:
 * [observer id][node id] */
static int gone_events[N + 1][N + 1], back_events[N + 1][N + 1], heard[N + 1][N + 1];

static void on_node_event(void *ctx, uint32_t node, bool alive)
{
    struct node *n = ctx;
    cr_assert(node >= 1 && node <= N, "node_event for node %u", node);
    if (alive)
        back_events[n->cfg.node_id][node]++;
    else
        gone_events[n->cfg.node_id][node]++;
}

static void on_receive(void *ctx, uint32_t from, const uint8_t *data, size_t len)
{
    struct node *n = ctx;
    (void)data;
    (void)len;
    cr_assert(from >= 1 && from <= N, "a message from node %u", from);
    heard[n->cfg.node_id][from]++;
}

static void setup(void)
{
    tmp_setup();
    group_init(&loop, nodes, N, VOTERS);
    for (int i = 0; i < N; i++) {
        nodes[i].cfg.node_event = on_node_event;
        nodes[i].cfg.receive = on_receive;
    }
    memset(gone_events, 0, sizeof(gone_events));
    memset(back_events, 0, sizeof(back_events));
    memset(heard, 0, sizeof(heard));
}

static void finish(void) { group_finish(nodes, N); }
static void teardown(void) { group_teardown(nodes, N); }

TestSuite(member, .init = setup, .fini = teardown, .timeout = 60);

/* --- operations ------------------------------------------------------------------------------- */

struct op {
    int calls;
    int status;
    char msg[300];
};

static void on_op(void *arg, int status, const char *msg)
{
    struct op *o = arg;
    o->calls++;
    o->status = status;
    snprintf(o->msg, sizeof(o->msg), "%s", msg ? msg : "(null)");
}

static bool op_done(void *arg) { return ((struct op *)arg)->calls > 0; }

/* Zeroes o for an operation; returns it as the callback's argument. */
static struct op *op_arm(struct op *o)
{
    memset(o, 0, sizeof(*o));
    return o;
}

/* rc is what the operation's call returned: 0, the callback not yet run;
 * then waits for the callback (the operations time out after 15 s). */
static void op_wait(struct op *o, int rc)
{
    cr_assert_eq(rc, 0, "the operation was refused at once: %d", rc);
    cr_assert_eq(o->calls, 0, "the callback ran inside the call: %d %s", o->status, o->msg);
    cr_assert(run_until(&loop, op_done, o, 20000), "the operation never completed");
    run_for(&loop, 150); /* a second callback would run now */
    cr_assert_eq(o->calls, 1, "the callback ran %d times", o->calls);
}

static void assert_op(const struct op *o, int status, const char *needle)
{
    cr_assert_eq(o->status, status, "status %d, want %d: %s", o->status, status, o->msg);
    cr_assert_not_null(strstr(o->msg, needle), "message \"%s\" does not say \"%s\"", o->msg, needle);
}

static int other_than(unsigned mask, int a, int b)
{
    for (int i = 0; i < N; i++)
        if ((mask & (1u << i)) && i != a && i != b)
            return i;
    cr_assert_fail("no node in 0x%x other than %d and %d", mask, a, b);
    return -1;
}

static uint32_t id_of(int i) { return nodes[i].cfg.node_id; }

/* Proposes a retained message on nodes[i] and waits for it (asserted to
 * succeed, retrying once: a follower may first have to find a new leader). */
static void commit_on(int i, const char *topic)
{
    struct cluster_cmd c = cmd_retain(topic, "x");
    struct done d;
    propose_wait(&nodes[i], &c, &d);
    if (d.status == CLUSTER_EUNAVAILABLE)
        propose_wait(&nodes[i], &c, &d);
    cr_assert_eq(d.status, 0, "node %d could not commit %s: %d", i + 1, topic, d.status);
}

/* Starts the nodes of mask; returns the index of the three voters' leader. */
static int start_group(unsigned mask)
{
    group_start(nodes, N, mask);
    return group_wait_leader(nodes, N, TRIO);
}

/* --- configurations ---------------------------------------------------------------------------- */

struct conf_want {
    unsigned on;      /* the nodes whose view is checked */
    unsigned members; /* the members (voters) they must list */
};

static bool conf_is(void *arg)
{
    struct conf_want *w = arg;
    for (int i = 0; i < N; i++) {
        if (!(w->on & (1u << i)))
            continue;
        struct cluster_member m[N + 1];
        int n = cluster_members_get(nodes[i].c, m, N + 1);
        unsigned got = 0;
        for (int k = 0; k < n && k <= N; k++) {
            if (m[k].role != 0 || m[k].id < 1 || m[k].id > N)
                return false;
            got |= 1u << (m[k].id - 1);
        }
        if (n != __builtin_popcount(w->members) || got != w->members)
            return false;
    }
    return true;
}

static void wait_conf(unsigned on, unsigned members)
{
    struct conf_want w = {on, members};
    cr_assert(run_until(&loop, conf_is, &w, 10000), "nodes 0x%x do not all list the voters 0x%x", on, members);
}

static bool fatal_seen(void *arg) { return ((struct node *)arg)->fatals > 0; }

static bool file_exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* nodes[gone] was removed: the nodes of rest list only each other, it
 * stopped through its fatal callback, its data dir is marked and refuses to
 * start, and the rest still commit. */
static void assert_removed(int gone, unsigned rest)
{
    struct node *g = &nodes[gone];
    wait_conf(rest, rest);
    cr_assert(run_until(&loop, fatal_seen, g, 5000), "node %d was not told it was removed", gone + 1);
    cr_assert_eq(g->fatals, 1, "node %d: %d fatal callbacks", gone + 1, g->fatals);
    cr_assert_not_null(strstr(g->fatal_msg, "was removed from cluster"), "fatal message: %s", g->fatal_msg);
    cr_assert(file_exists(g->dir, "removed"), "%s/removed does not exist", g->dir);
    node_close(g);
    char err[512];
    int rc = node_try_start(g, err, sizeof(err));
    if (g->c)
        node_close(g); /* a failed start is closed all the same */
    cr_assert_neq(rc, 0, "node %d started again on its data dir after it was removed", gone + 1);
    cr_assert_not_null(strstr(err, "removed"), "cluster_start says: %s", err);
    int leader = group_wait_leader(nodes, N, rest);
    commit_on(leader, "after/removal");
}

/* --- leadership transfer ------------------------------------------------------------------------ */

Test(member, a_transfer_makes_the_chosen_voter_leader_asked_on_the_leader_or_a_follower)
{
    int leader = start_group(TRIO);
    int target = other_than(TRIO, leader, -1);
    struct op o;
    op_wait(&o, cluster_transfer(nodes[leader].c, id_of(target), on_op, op_arm(&o)));
    assert_op(&o, 0, "transferred");
    cr_assert_eq(group_wait_leader(nodes, N, TRIO), target, "node %d does not lead after the transfer", target + 1);

    /* asked on a follower: forwarded to the leader */
    int follower = other_than(TRIO, target, -1), next = other_than(TRIO, target, follower);
    op_wait(&o, cluster_transfer(nodes[follower].c, id_of(next), on_op, op_arm(&o)));
    assert_op(&o, 0, "transferred");
    cr_assert_eq(group_wait_leader(nodes, N, TRIO), next, "node %d does not lead after the transfer", next + 1);
    commit_on(follower, "after/transfers");
    finish();
}

Test(member, a_transfer_to_node_0_picks_another_voter)
{
    int leader = start_group(TRIO);
    struct op o;
    op_wait(&o, cluster_transfer(nodes[leader].c, 0, on_op, op_arm(&o)));
    assert_op(&o, 0, "transferred");
    cr_assert_neq(group_wait_leader(nodes, N, TRIO), leader);
    finish();
}

Test(member, a_transfer_to_the_leader_is_already_done_and_to_a_stranger_not_found)
{
    int leader = start_group(TRIO);
    int follower = other_than(TRIO, leader, -1);
    struct op o;
    for (int asker = 0; asker < 2; asker++) {
        struct cluster *c = nodes[asker ? follower : leader].c;
        op_wait(&o, cluster_transfer(c, id_of(leader), on_op, op_arm(&o)));
        assert_op(&o, CLUSTER_EALREADY, "already");
        op_wait(&o, cluster_transfer(c, 99, on_op, op_arm(&o)));
        assert_op(&o, CLUSTER_ENOTFOUND, "not a member");
    }
    cr_assert_eq(group_wait_leader(nodes, N, TRIO), leader);
    finish();
}

/* --- removal ------------------------------------------------------------------------------------- */

enum who { LEADER, FOLLOWER, OTHER_FOLLOWER };
enum how {
    REMOVE,     /* cluster_remove on the asker */
    LEAVE,      /* cluster_leave on the asker (the one removed) */
    WHILE_DOWN, /* cluster_remove while the one removed is closed; it starts again after */
    WHILE_CUT,  /* cluster_remove after the connections between it and the leader were cut */
};

/* Starts the three voters, removes one of them as asked, and checks the
 * outcome (assert_removed); returns the index of the node removed. */
static int removal(enum who asker, enum who gone, enum how how)
{
    int leader = start_group(TRIO);
    int f1 = other_than(TRIO, leader, -1);
    int pick[] = {leader, f1, other_than(TRIO, leader, f1)};
    int a = pick[asker], g = pick[gone];
    unsigned rest = TRIO & ~(1u << g);
    if (how == WHILE_DOWN)
        node_close(&nodes[g]);
    if (how == WHILE_CUT)
        cr_assert_gt(group_sever(&loop, leader, g), 0);
    struct op o;
    op_wait(&o, how == LEAVE ? cluster_leave(nodes[a].c, on_op, op_arm(&o))
                             : cluster_remove(nodes[a].c, id_of(g), on_op, op_arm(&o)));
    assert_op(&o, 0, "removed");
    if (how == WHILE_DOWN) {
        wait_conf(rest, rest);
        node_start(&nodes[g]);
    }
    assert_removed(g, rest);
    return g;
}

#define REMOVAL_TEST(name, asker, gone, how)                                                                    \
    Test(member, name)                                                                                           \
    {                                                                                                            \
        removal(asker, gone, how);                                                                               \
        finish();                                                                                                \
    }

Test(member, the_leader_removes_a_follower)
{
    int gone = removal(LEADER, FOLLOWER, REMOVE);
    /* a second time: no such member */
    int leader = group_wait_leader(nodes, N, TRIO & ~(1u << gone));
    struct op o;
    op_wait(&o, cluster_remove(nodes[leader].c, id_of(gone), on_op, op_arm(&o)));
    assert_op(&o, CLUSTER_ENOTFOUND, "not a member");
    finish();
}

/* A removal notice counts only from a member: node 4 holds the cluster's name
 * and secret but is not one of the trio, so its notice to a follower is
 * ignored; the same notice from the trio's leader stops the follower. */
Test(member, a_removal_notice_from_a_node_that_is_not_a_member_is_ignored)
{
    int leader = start_group(TRIO);
    int follower = (leader + 1) % VOTERS;
    uint8_t body[9] = {5 /* CTL_REMOVED */, 0, 0, 0, 0, 4, 0, 0, 0};
    cluster__member_control(nodes[follower].c, 4, NULL, body, sizeof(body));
    run_for(&loop, 300);
    cr_assert_eq(nodes[follower].fatals, 0, "node %d stopped on a stranger's notice: %s", follower + 1,
                 nodes[follower].fatal_msg);
    cr_assert(!file_exists(nodes[follower].dir, "removed"), "a stranger marked node %d removed", follower + 1);
    commit_on(leader, "after/stranger");
    body[5] = (uint8_t)id_of(leader);
    cluster__member_control(nodes[follower].c, id_of(leader), NULL, body, sizeof(body));
    cr_assert(run_until(&loop, fatal_seen, &nodes[follower], 2000), "the leader's notice was ignored");
    finish();
}

struct gone_seen {
    unsigned by;
    uint32_t node;
};

static bool gone_reported(void *arg)
{
    struct gone_seen *g = arg;
    for (int i = 0; i < N; i++)
        if ((g->by & (1u << i)) && !gone_events[i + 1][g->node])
            return false;
    return true;
}

/* The broker takes the sessions of a node over once node_event said it is
 * gone (broker/remote.c, session.c): a member removed from the cluster is
 * gone for the others as much as one that stopped answering. */
Test(member, the_others_hear_through_node_event_that_a_removed_member_is_gone)
{
    int gone = removal(LEADER, FOLLOWER, REMOVE); /* it is closed by now */
    struct gone_seen g = {TRIO & ~(1u << gone), id_of(gone)};
    cr_assert(run_until(&loop, gone_reported, &g, 5000),
              "node_event(%u, false) did not run on every remaining node after its removal", g.node);
    finish();
}

REMOVAL_TEST(a_follower_removes_another_follower_through_the_leader, FOLLOWER, OTHER_FOLLOWER, REMOVE)

REMOVAL_TEST(the_leader_asked_to_remove_itself_hands_over_first, LEADER, LEADER, REMOVE)

REMOVAL_TEST(a_follower_removes_the_leader, FOLLOWER, LEADER, REMOVE)

REMOVAL_TEST(a_follower_leaves, FOLLOWER, FOLLOWER, LEAVE)

/* The usual reason to remove a node: it is down. When it comes back it must
 * learn it was removed (and stop) rather than wait for a leader forever. */
REMOVAL_TEST(a_node_removed_while_it_was_down_learns_it_when_it_comes_back, LEADER, FOLLOWER, WHILE_DOWN)

/* The same when only its connections to the leader were cut as it was removed. */
REMOVAL_TEST(a_node_removed_while_its_links_were_cut_learns_it, LEADER, FOLLOWER, WHILE_CUT)

Test(member, the_last_member_cannot_be_removed)
{
    group_start(nodes, N, 0x8); /* node 4, a one-voter cluster */
    cr_assert(run_until(&loop, node_is_leader, &nodes[3], 5000));
    struct op o;
    op_wait(&o, cluster_remove(nodes[3].c, 4, on_op, op_arm(&o)));
    assert_op(&o, CLUSTER_EINVAL, "only member");
    op_wait(&o, cluster_leave(nodes[3].c, on_op, op_arm(&o)));
    assert_op(&o, CLUSTER_EINVAL, "only member");
    op_wait(&o, cluster_remove(nodes[3].c, 9, on_op, op_arm(&o)));
    assert_op(&o, CLUSTER_ENOTFOUND, "not a member");
    cr_assert_eq(nodes[3].fatals, 0, "%s", nodes[3].fatal_msg);
    cr_assert_not(file_exists(nodes[3].dir, "removed"));
    commit_on(3, "still/here");
    finish();
}

/* --- joining --------------------------------------------------------------------------------------- */

static const char *address_of(int i) { return nodes[i].bind; }

/* Node 4 joined: every node lists four voters, node 4 knows the leader, has
 * applied what it has, and holds the cluster's state instead of its own. */
struct joined {
    int leader;
    int joiner;
};

static bool caught_up(void *arg)
{
    struct joined *j = arg;
    struct cluster_status me = node_status(&nodes[j->joiner]), l = node_status(&nodes[j->leader]);
    return me.leader_id == id_of(j->leader) && me.applied_index == l.applied_index && l.applied_index > 0;
}

Test(member, a_fresh_node_joins_through_a_follower_restarts_and_catches_up)
{
    int leader = start_group(ALL);
    cr_assert(run_until(&loop, node_is_leader, &nodes[3], 5000));
    commit_on(leader, "cluster/data");
    commit_on(3, "own/data"); /* node 4's own state: discarded by the join */
    int via = other_than(TRIO, leader, -1);

    struct op o;
    op_wait(&o, cluster_join(nodes[3].c, address_of(via), on_op, op_arm(&o)));
    assert_op(&o, 0, "restarts");
    cr_assert(file_exists(nodes[3].dir, "join"), "no join marker in %s", nodes[3].dir);
    /* what the broker does next: a restart on the same data dir */
    node_close(&nodes[3]);
    node_start(&nodes[3]);
    wait_conf(ALL, ALL);
    struct joined j = {leader, 3};
    cr_assert(run_until(&loop, caught_up, &j, 10000), "node 4 did not catch up with leader node %d", leader + 1);
    commit_on(3, "from/node4"); /* forwarded to the leader, applied everywhere */
    cr_assert(run_until(&loop, caught_up, &j, 5000));
    char *mine = cluster_load_text(nodes[3].c), *theirs = cluster_load_text(nodes[leader].c);
    cr_assert_str_eq(mine, theirs, "node 4's state:\n%s\nthe leader's:\n%s", mine, theirs);
    cr_assert_null(strstr(mine, "own/data"), "node 4 kept its own state:\n%s", mine);
    free(mine);
    free(theirs);
    cr_assert_not(file_exists(nodes[3].dir, "join"), "the join marker is still there after the join");
    for (int i = 0; i < N; i++)
        cr_assert_eq(nodes[i].fatals, 0, "node %d: %s", i + 1, nodes[i].fatal_msg);
    finish();
}

Test(member, joining_a_cluster_the_node_is_in_is_already_done)
{
    int leader = start_group(ALL);
    int follower = other_than(TRIO, leader, -1);
    struct op o;
    op_wait(&o, cluster_join(nodes[follower].c, address_of(leader), on_op, op_arm(&o)));
    assert_op(&o, CLUSTER_EALREADY, "already");
    op_wait(&o, cluster_join(nodes[3].c, address_of(3), on_op, op_arm(&o)));
    assert_op(&o, CLUSTER_EALREADY, "own address");
    for (int i = 0; i < N; i++)
        cr_assert_not(file_exists(nodes[i].dir, "join"), "node %d wrote a join marker", i + 1);
    finish();
}

/* Node 4, configured by prepare, asks to join via the leader: refused with
 * status and a message saying needle; nothing changes. */
static void assert_join_refused(void (*prepare)(struct node *n), int status, const char *needle)
{
    prepare(&nodes[3]);
    int leader = start_group(ALL);
    struct op o;
    op_wait(&o, cluster_join(nodes[3].c, address_of(leader), on_op, op_arm(&o)));
    if (status)
        assert_op(&o, status, needle);
    else
        cr_assert(o.status != 0 && strstr(o.msg, needle), "status %d, message \"%s\": want a failure saying \"%s\"",
                  o.status, o.msg, needle);
    cr_assert_not(file_exists(nodes[3].dir, "join"), "node 4 wrote a join marker");
    wait_conf(TRIO, TRIO);
    cr_assert(node_is_leader(&nodes[3]), "node 4 is no longer its own leader");
    finish();
}

static void wrong_secret(struct node *n) { snprintf(n->secret, sizeof(n->secret), "not-the-secret"); }
static void other_name(struct node *n) { snprintf(n->name, sizeof(n->name), "other"); }

Test(member, a_join_with_the_wrong_secret_fails_and_says_so)
{
    assert_join_refused(wrong_secret, 0, "secret");
}

Test(member, a_join_with_another_cluster_name_is_refused)
{
    assert_join_refused(other_name, CLUSTER_EINVAL, "cluster_name");
}

Test(member, a_join_via_an_address_nobody_listens_on_fails)
{
    group_start(nodes, N, 0x8);
    cr_assert(run_until(&loop, node_is_leader, &nodes[3], 5000));
    char nobody[64];
    snprintf(nobody, sizeof(nobody), "127.0.0.9:%d", free_port("127.0.0.9"));
    struct op o;
    op_wait(&o, cluster_join(nodes[3].c, nobody, on_op, op_arm(&o)));
    assert_op(&o, CLUSTER_EUNAVAILABLE, "cannot reach");
    op_wait(&o, cluster_join(nodes[3].c, "no-port-here", on_op, op_arm(&o)));
    assert_op(&o, CLUSTER_EINVAL, "host:port");
    cr_assert_not(file_exists(nodes[3].dir, "join"));
    finish();
}

static void taken_id(struct node *n) { n->cfg.node_id = 2; }

Test(member, a_join_with_a_node_id_that_is_taken_is_refused)
{
    assert_join_refused(taken_id, CLUSTER_EINVAL, "taken");
}

/* --- removed, then joined again ------------------------------------------------------------------ */

static int sends_ok;

static void on_sent(void *arg, int status)
{
    (void)arg;
    cr_assert_eq(status, 0, "a message completed with %d", status);
    sends_ok++;
}

static bool sends_done(void *want) { return sends_ok >= *(int *)want; }

struct pair {
    int from, to;
};

static bool has_link(void *arg)
{
    struct pair *p = arg;
    return cluster_node_alive(nodes[p->from].c, id_of(p->to));
}

/* count messages from nodes[from] to nodes[to] (once it has a link for it),
 * each completed with 0. */
static void send_count(int from, int to, int count)
{
    struct pair p = {from, to};
    cr_assert(run_until(&loop, has_link, &p, 5000), "node %d has no link to node %d", from + 1, to + 1);
    int want = sends_ok + count;
    for (int k = 0; k < count; k++) {
        uint8_t byte = (uint8_t)k;
        struct iovec part = {&byte, 1};
        int rc = cluster_send(nodes[from].c, id_of(to), &part, 1, on_sent, NULL);
        cr_assert_eq(rc, 0, "cluster_send from node %d to node %d: %d", from + 1, to + 1, rc);
    }
    cr_assert(run_until(&loop, sends_done, &want, 5000), "node %d's messages to node %d did not complete",
              from + 1, to + 1);
}

/* The operator's way back for a removed node (its fatal message says so):
 * remove its data dir, start it as a cluster of its own, join, restart. */
static void join_again(int g, int leader)
{
    struct node *n = &nodes[g];
    cr_assert_eq(cluster__remove_tree(n->dir), 0);
    n->cfg.peers = NULL;
    n->cfg.peer_count = 0;
    node_start(n);
    cr_assert(run_until(&loop, node_is_leader, n, 5000));
    struct op o;
    op_wait(&o, cluster_join(n->c, address_of(leader), on_op, op_arm(&o)));
    assert_op(&o, 0, "restarts");
    node_close(n);
    node_start(n);
    wait_conf(TRIO, TRIO);
    struct joined j = {leader, g};
    cr_assert(run_until(&loop, caught_up, &j, 10000), "node %d did not catch up", g + 1);
}

Test(member, a_removed_node_that_joins_again_is_reported_back_through_node_event)
{
    int gone = removal(LEADER, FOLLOWER, REMOVE);
    int leader = group_wait_leader(nodes, N, TRIO & ~(1u << gone));
    join_again(gone, leader);
    for (int i = 0; i < VOTERS; i++)
        if (i != gone)
            cr_assert(gone_events[id_of(i)][id_of(gone)] == 1 && back_events[id_of(i)][id_of(gone)] >= 1,
                      "node %d: node_event(%u, false) %d time(s), (%u, true) %d time(s): the broker still takes "
                      "it for lost",
                      i + 1, id_of(gone), gone_events[id_of(i)][id_of(gone)], id_of(gone),
                      back_events[id_of(i)][id_of(gone)]);
    finish();
}

Test(member, a_removed_node_that_joins_again_with_a_fresh_data_dir_is_heard)
{
    int leader = start_group(TRIO);
    int gone = other_than(TRIO, leader, -1);
    node_close(&nodes[gone]); /* one restart: it sends with epoch 2 */
    node_start(&nodes[gone]);
    leader = group_wait_leader(nodes, N, TRIO);
    send_count(gone, leader, 10);
    cr_assert_eq(heard[id_of(leader)][id_of(gone)], 10);
    /* and the leader's own link to it is up again, for the REMOVED notice
     * (see a_node_removed_while_its_links_were_cut_learns_it) */
    send_count(leader, gone, 1);

    struct op o;
    op_wait(&o, cluster_remove(nodes[leader].c, id_of(gone), on_op, op_arm(&o)));
    assert_op(&o, 0, "removed");
    assert_removed(gone, TRIO & ~(1u << gone));
    join_again(gone, leader); /* a fresh data dir: epochs from 1 again */
    send_count(gone, leader, 3);
    cr_assert_eq(heard[id_of(leader)][id_of(gone)], 13,
                 "the leader handed up %d of node %d's 3 messages after it joined again (all acknowledged)",
                 heard[id_of(leader)][id_of(gone)] - 10, gone + 1);
    finish();
}
