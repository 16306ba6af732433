/* Tests for cluster/peer.c and cluster/forward.c: three real nodes in one
 * process on one loop, on free loopback ports: election, a proposal made on a
 * follower (forwarded to the leader) applied everywhere at one index, a node
 * with the wrong secret kept out, garbage on the cluster port rejected, no
 * quorum, and a leader that goes away. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

#define N 3

static uv_loop_t loop;
static struct node nodes[N];

static void setup(void)
{
    tmp_setup();
    group_init(&loop, nodes, N, N);
}

static void finish(void) { group_finish(nodes, N); }
static void teardown(void) { group_teardown(nodes, N); }

TestSuite(peer, .init = setup, .fini = teardown, .timeout = 60);

static void start_all(void) { group_start(nodes, N, 0x7); }
static int wait_leader(unsigned mask) { return group_wait_leader(nodes, N, mask); }

/* The command with client id / topic key has been applied on every node of mask. */
struct seen {
    unsigned mask;
    const char *key;
};

static const struct applied *find_applied(const struct node *n, const char *key)
{
    for (size_t i = 0; i < n->n_applied; i++)
        if (strcmp(n->applied[i].client_id, key) == 0 || strcmp(n->applied[i].topic, key) == 0)
            return &n->applied[i];
    return NULL;
}

static bool seen_by_all(void *arg)
{
    struct seen *s = arg;
    for (int i = 0; i < N; i++)
        if ((s->mask & (1u << i)) && !find_applied(&nodes[i], s->key))
            return false;
    return true;
}

static void assert_applied_everywhere(unsigned mask, const char *key)
{
    struct seen s = {mask, key};
    cr_assert(run_until(&loop, seen_by_all, &s, 5000), "\"%s\" was not applied on every node of 0x%x", key, mask);
    uint64_t index = 0;
    for (int i = 0; i < N; i++) {
        if (!(mask & (1u << i)))
            continue;
        const struct applied *a = find_applied(&nodes[i], key);
        if (!index)
            index = a->index;
        cr_assert_eq(a->index, index, "node %d applied \"%s\" at %llu, another at %llu", i + 1, key,
                     (unsigned long long)a->index, (unsigned long long)index);
    }
}

/* --- election and replication ------------------------------------------------------------ */

Test(peer, a_leader_is_elected)
{
    start_all();
    int leader = wait_leader(0x7);
    struct cluster_status st = node_status(&nodes[leader]);
    cr_assert_gt(st.term, 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(nodes[i].fatals, 0, "node %d: %s", i + 1, nodes[i].fatal_msg);
    finish();
}

Test(peer, a_proposal_on_a_follower_is_applied_everywhere_at_one_index)
{
    start_all();
    int leader = wait_leader(0x7);
    int follower = (leader + 1) % N;
    struct node *f = &nodes[follower];
    uint64_t gen = cluster_generation_next(f->c);
    struct cluster_cmd c = cmd_claim("via-follower", f->cfg.node_id, gen, false);
    struct done d;
    propose_wait(f, &c, &d);
    cr_assert_eq(d.status, 0, "proposal on follower node %u: status %d", f->cfg.node_id, d.status);
    cr_assert_eq(d.result, 0);
    assert_applied_everywhere(0x7, "via-follower");

    /* a second one resumes the session (result 1, decided on the leader's
     * log, reported on the follower), several in one turn share an entry */
    struct cluster_cmd c2 = cmd_claim("via-follower", f->cfg.node_id, cluster_generation_next(f->c), false);
    struct cluster_cmd r = cmd_retain("same/entry", "x");
    struct done d2 = {0}, d3 = {0};
    cr_assert_eq(cluster_propose(f->c, &c2, done_cb, &d2), 0);
    cr_assert_eq(cluster_propose(f->c, &r, done_cb, &d3), 0);
    cr_assert(run_until(&loop, done_fired, &d3, 5000));
    cr_assert(run_until(&loop, done_fired, &d2, 1000));
    cr_assert_eq(d2.status, 0);
    cr_assert_eq(d2.result, 1, "session present was not reported to the follower");
    cr_assert_eq(d3.status, 0);
    assert_applied_everywhere(0x7, "same/entry");
    const struct applied *a = find_applied(f, "same/entry");
    cr_assert_eq(a[-1].index, a->index, "commands of one turn on a follower went into two entries");

    /* and one on the leader */
    struct cluster_cmd l = cmd_retain("via-leader", "y");
    propose_wait(&nodes[leader], &l, &d);
    cr_assert_eq(d.status, 0);
    assert_applied_everywhere(0x7, "via-leader");
    for (int i = 0; i < N; i++)
        cr_assert_eq(nodes[i].fatals, 0, "node %d: %s", i + 1, nodes[i].fatal_msg);
    finish();
}

Test(peer, a_node_with_the_wrong_secret_sees_no_entry)
{
    snprintf(nodes[2].secret, sizeof(nodes[2].secret), "not-the-secret");
    start_all();
    int leader = wait_leader(0x3);
    cr_assert_neq(leader, 2);
    struct done d;
    for (int k = 0; k < 3; k++) {
        char topic[16];
        snprintf(topic, sizeof(topic), "t/%d", k);
        struct cluster_cmd c = cmd_retain(topic, "x");
        propose_wait(&nodes[leader], &c, &d);
        cr_assert_eq(d.status, 0);
        assert_applied_everywhere(0x3, topic);
    }
    run_for(&loop, 1000); /* time enough for heartbeats to carry them */
    cr_assert_eq(nodes[2].n_applied, 0, "the node with the wrong secret applied %zu command(s)",
                 nodes[2].n_applied);
    struct cluster_status st = node_status(&nodes[2]);
    cr_assert_eq(st.applied_index, 0);
    cr_assert_neq(st.role, 2, "the node with the wrong secret became leader");
    cr_assert_gt(nodes[0].rejected_logs + nodes[1].rejected_logs + nodes[2].rejected_logs, 0,
                 "no \"peer rejected\" was logged");

    /* its proposals cannot commit either */
    struct cluster_cmd c = cmd_retain("from/outsider", "x");
    propose_wait(&nodes[2], &c, &d);
    cr_assert_eq(d.status, CLUSTER_EUNAVAILABLE, "outsider's proposal: status %d", d.status);
    run_for(&loop, 300);
    cr_assert_null(find_applied(&nodes[0], "from/outsider"));
    finish();
}

/* --- garbage on the cluster port --------------------------------------------------------- */

Test(peer, garbage_on_the_cluster_port_is_rejected_and_the_node_goes_on)
{
    start_all();
    int leader = wait_leader(0x7);
    struct node *target = &nodes[leader];

    /* 1. random bytes; 2. a well-formed dialer hello with a wrong MAC;
     * 3. an address length beyond the maximum; 4. another version;
     * 5. a node id of 0. Each reason is logged once per 5 s (peer.c). */
    for (int variant = 1; variant <= 5; variant++) {
        uint8_t msg[512];
        size_t len = 0;
        if (variant == 1) {
            for (size_t i = 0; i < 300; i++)
                msg[i] = (uint8_t)(i * 131 + 7);
            len = 300;
        } else {
            const char *addr = "127.0.0.1:1";
            size_t alen = strlen(addr);
            memset(msg, 0, sizeof(msg));
            memcpy(msg, "STRL", 4);
            msg[4] = variant == 4 ? 2 : 1;
            msg[5] = 1; /* the raft channel */
            put_le(msg + 6, variant == 3 ? 4000 : alen, 2);
            put_le(msg + 8, variant == 5 ? 0 : 2, 8);
            for (int i = 0; i < 16; i++)
                msg[16 + i] = (uint8_t)i;            /* nonce */
            memset(msg + 32, 0x5a, 32);              /* not the MAC */
            memcpy(msg + 64, addr, alen);
            len = 64 + alen;
        }
        int before = target->rejected_logs;
        int fd = tcp_dial(target);
        cr_assert_eq(send(fd, msg, len, MSG_NOSIGNAL), (ssize_t)len);
        cr_assert(run_until(&loop, peer_closed, &fd, 3000), "variant %d: the node kept the connection open",
                  variant);
        close(fd);
        if (variant >= 4) /* the reasons of variants 1 and 3 again, within 5 s: not logged again */
            cr_assert_eq(target->rejected_logs, before, "variant %d: the same reason was logged twice in 5 s",
                         variant);
        else
            cr_assert_gt(target->rejected_logs, before, "variant %d: no \"peer rejected\" logged", variant);
    }

    /* the node still leads and commits */
    struct done d;
    struct cluster_cmd c = cmd_retain("after/garbage", "x");
    propose_wait(target, &c, &d);
    cr_assert_eq(d.status, 0);
    assert_applied_everywhere(0x7, "after/garbage");
    cr_assert_eq(target->fatals, 0);
    finish();
}

Test(peer, the_handshake_is_the_documented_one)
{
    start_all();
    int leader = wait_leader(0x7);
    bool rejected;
    int fd = handshake_as_dialer(&nodes[leader], nodes[leader].secret, 2, 2, false, &rejected);
    cr_assert_not(rejected, "a dialer with the secret was rejected");
    close(fd);

    int before = nodes[leader].rejected_logs;
    fd = handshake_as_dialer(&nodes[leader], nodes[leader].secret, 2, 2, true, &rejected);
    cr_assert(rejected, "a hello whose MAC covers another channel was accepted");
    cr_assert_gt(nodes[leader].rejected_logs, before);
    fd = handshake_as_dialer(&nodes[leader], "a guess", 2, 2, false, &rejected);
    cr_assert(rejected, "a dialer without the secret was accepted");

    struct done d;
    struct cluster_cmd c = cmd_retain("after/handshakes", "x");
    propose_wait(&nodes[leader], &c, &d);
    cr_assert_eq(d.status, 0);
    assert_applied_everywhere(0x7, "after/handshakes");
    finish();
}

static bool accepted(void *arg)
{
    int *fds = arg;
    if (fds[1] >= 0)
        return true;
    fds[1] = accept(fds[0], NULL, NULL);
    return fds[1] >= 0;
}

Test(peer, a_fake_acceptor_without_the_secret_is_rejected_by_the_dialer)
{
    /* node 1's peer 2 is a listener of this test that answers the hello
     * without knowing the secret: node 1 must not hand that stream to Raft
     * or its data link (they would then write on it) */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    cr_assert_geq(lfd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = 0};
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t slen = sizeof(sa);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &slen), 0);
    cr_assert_eq(listen(lfd, 8), 0);
    snprintf(nodes[0].peer_addr[1], sizeof(nodes[0].peer_addr[1]), "127.0.0.1:%d", ntohs(sa.sin_port));
    node_start(&nodes[0]);

    int fds[2] = {lfd, -1};
    cr_assert(run_until(&loop, accepted, fds, 5000), "node 1 never dialed its peer 2");
    struct sock_read r = {.fd = fds[1]};
    uint8_t hello[24] = {'S', 'T', 'R', 'L', 1};
    cr_assert_eq(send(r.fd, hello, sizeof(hello), MSG_NOSIGNAL), 24);
    read_exactly(&loop, &r, 64);
    size_t alen = (size_t)r.buf[6] | (size_t)r.buf[7] << 8;
    /* the first dial is for Raft or for the data link: the same handshake */
    cr_assert(r.buf[5] == 1 || r.buf[5] == 3, "dialed for channel %u, want raft (1) or data (3)", r.buf[5]);
    cr_assert_leq(alen, 255);
    read_exactly(&loop, &r, alen);
    int before = nodes[0].rejected_logs;
    uint8_t bogus[32];
    memset(bogus, 0x33, sizeof(bogus));
    cr_assert_eq(send(r.fd, bogus, sizeof(bogus), MSG_NOSIGNAL), 32);
    /* the dialer must close; anything it sends instead went past the check */
    r.have = 0;
    r.want = 1;
    cr_assert(run_until(&loop, read_done, &r, 3000), "node 1 neither closed nor sent anything");
    cr_assert(r.eof, "node 1 accepted a fake OK and sent %zu byte(s) on the stream", r.have);
    cr_assert_gt(nodes[0].rejected_logs, before, "no \"peer rejected\" logged");
    close(r.fd);
    close(lfd);
    finish();
}

Test(peer, a_connection_closed_during_the_handshake_is_forgotten)
{
    start_all();
    int leader = wait_leader(0x7);
    struct node *target = &nodes[leader];
    for (int i = 0; i < 20; i++) {
        int fd = tcp_dial(target);
        if (i % 2)
            send(fd, "STRL", 4, MSG_NOSIGNAL); /* a partial hello */
        close(fd);
    }
    run_for(&loop, 300);
    struct done d;
    struct cluster_cmd c = cmd_retain("after/drops", "x");
    propose_wait(target, &c, &d);
    cr_assert_eq(d.status, 0);
    assert_applied_everywhere(0x7, "after/drops");
    /* the teardown closes all three: a leaked handshake would keep a handle */
    finish();
}

/* --- catching up ----------------------------------------------------------------------------- */


/* Reproductions of libraft bugs run only on request: they fail (or crash)
 * whatever cluster/ does. */
static void skip_libraft_bug(void)
{
    if (!getenv("CLUSTER_TEST_LIBRAFT_BUGS")) {
        finish();
        tmp_teardown(); /* a skipped test does not reach the teardown */
        cr_skip_test("a libraft 0.22.1 bug; set CLUSTER_TEST_LIBRAFT_BUGS=1 to reproduce it");
    }
}

static bool reloaded(void *arg) { return ((struct node *)arg)->reloads > 0; }

/* Nodes 1 and 2 run alone and snapshot every 16 entries (keeping 4), then
 * node 3 starts empty; its own snapshot threshold is late_threshold. */
static void catch_up(uint32_t late_threshold, uint32_t heartbeat_ms)
{
    for (int i = 0; i < N; i++) {
        nodes[i].cfg.snapshot_threshold = 16;
        nodes[i].cfg.snapshot_trailing = 4;
    }
    nodes[2].cfg.snapshot_threshold = late_threshold;
    for (int i = 0; i < N; i++) {
        nodes[i].cfg.heartbeat_ms = heartbeat_ms;
        nodes[i].cfg.election_timeout_ms = 3 * heartbeat_ms;
    }
    node_start(&nodes[0]);
    node_start(&nodes[1]);
    int leader = wait_leader(0x3);
    for (int k = 0; k < 60; k++) {
        char id[16], topic[16];
        snprintf(id, sizeof(id), "c%02d", k % 13);
        snprintf(topic, sizeof(topic), "t/%02d", k % 17);
        struct cluster_cmd c = k % 2 ? cmd_claim(id, 1, cluster_generation_next(nodes[leader].c), false)
                                     : cmd_retain(topic, id);
        struct done d;
        propose_wait(&nodes[leader], &c, &d);
        cr_assert_eq(d.status, 0, "proposal %d: %d", k, d.status);
    }
    char raftdir[300];
    snprintf(raftdir, sizeof(raftdir), "%s/raft", nodes[leader].dir);
    cr_assert(run_until(&loop, has_snapshot, raftdir, 5000), "the leader took no snapshot");
    char *before = cluster_load_text(nodes[leader].c);

    /* the leader's log no longer reaches back to node 3's first entries, so
     * it must send the snapshot */
    node_start(&nodes[2]);
    cr_assert(run_until(&loop, reloaded, &nodes[2], 10000), "node 3 never installed a snapshot (no reload)");
    struct cluster_cmd last = cmd_retain("last", "x");
    struct done d;
    propose_wait(&nodes[leader], &last, &d);
    cr_assert_eq(d.status, 0);
    assert_applied_everywhere(0x7, "last");
    char *got = cluster_load_text(nodes[2].c);
    char *now = cluster_load_text(nodes[leader].c);
    cr_assert_str_eq(got, now, "node 3 after catching up:\n%s\nleader:\n%s", got, now);
    cr_assert_neq(strcmp(now, before), 0);
    cr_assert_eq(nodes[2].fatals, 0, "%s", nodes[2].fatal_msg);
    free(before);
    free(got);
    free(now);
}

Test(peer, a_node_that_was_down_catches_up_through_a_snapshot)
{
    /* node 3 keeps libraft's default threshold, and heartbeats are slower
     * than node 3 takes to install the snapshot: see the two tests below */
    catch_up(0, 400);
    finish();
}

/* libraft 0.22.1 leaks every InstallSnapshot that arrives while the node is
 * still installing an earlier one (its configuration and data, 1514 bytes
 * here: the 1394-byte snapshot and three servers): replicationInstallSnapshot
 * sets *async and returns 0 when r->snapshot.installing, and
 * recvInstallSnapshot then returns before freeing args->conf and
 * args->data. A leader with a 50 ms heartbeat resends the snapshot several
 * times during node 3's install, so LeakSanitizer reports 3 to 5 of them.
 * Skipped unless CLUSTER_TEST_LIBRAFT_BUGS is set (in a sanitized build). */
Test(peer, libraft_leaks_install_snapshot_received_during_an_install)
{
    skip_libraft_bug();
    catch_up(0, 50);
    finish();
}

/* libraft 0.22.1 crashes (NULL dereference at offset 0x48) when an
 * InstallSnapshot arrives while the node is writing a snapshot of its own:
 * src/legacy.c takeSnapshotCb sets r->legacy.snapshot_pending = NULL and
 * then reads it back into `persist` for legacyPersistSnapshotStart. Here
 * node 3 snapshots after its first 16 entries, just as the leader's snapshot
 * arrives. Skipped unless CLUSTER_TEST_LIBRAFT_BUGS is set. */
Test(peer, libraft_crash_when_a_snapshot_arrives_while_one_is_taken)
{
    skip_libraft_bug();
    catch_up(16, 50);
    finish();
}

/* --- no quorum, lost leader --------------------------------------------------------------------- */

Test(peer, without_a_quorum_a_proposal_fails_after_commit_timeout)
{
    nodes[0].cfg.commit_timeout_ms = 800;
    node_start(&nodes[0]); /* the other two never start */
    struct cluster_cmd c = cmd_retain("alone", "x");
    uint64_t t0 = uv_hrtime();
    struct done d;
    propose_wait(&nodes[0], &c, &d);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    cr_assert_eq(d.status, CLUSTER_EUNAVAILABLE, "status %d", d.status);
    cr_assert_geq(ms, 700, "failed after %llu ms, before the commit timeout", (unsigned long long)ms);
    cr_assert_eq(nodes[0].n_applied, 0);
    finish();
}

Test(peer, after_the_leader_closes_the_others_elect_one_and_commit)
{
    start_all();
    int leader = wait_leader(0x7);
    struct done d;
    struct cluster_cmd c = cmd_retain("before", "x");
    propose_wait(&nodes[(leader + 1) % N], &c, &d);
    cr_assert_eq(d.status, 0);
    assert_applied_everywhere(0x7, "before");

    node_close(&nodes[leader]);
    unsigned rest = 0x7 & ~(1u << leader);
    int next = wait_leader(rest);
    cr_assert_neq(next, leader);
    int follower = -1;
    for (int i = 0; i < N; i++)
        if ((rest & (1u << i)) && i != next)
            follower = i;
    struct cluster_cmd c2 = cmd_retain("after", "y");
    /* the follower may first need to find the new leader: retry an
     * indeterminate failure once */
    propose_wait(&nodes[follower], &c2, &d);
    if (d.status == CLUSTER_EUNAVAILABLE)
        propose_wait(&nodes[follower], &c2, &d);
    cr_assert_eq(d.status, 0, "proposal on the remaining follower: %d", d.status);
    assert_applied_everywhere(rest, "after");
    finish();
}
