/* Tests for cluster/tunnel.c and the TLS side of cluster/peer.c: real nodes in
 * one process with certificates from deploy/make-certs.sh (made per test in
 * its directory). Three TLS nodes without a secret elect a leader and apply a
 * proposal forwarded by a follower; a message of several MiB crosses a TLS
 * data link intact and in order with small ones (the pump's backpressure
 * engages: its bound is 1 MiB); a node with a certificate of another CA and a
 * plaintext node are kept out; bad certificate files fail cluster_start with
 * one line naming the key and the file. Every test ends with no handle left
 * on the loop (the tunnels close with their streams). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "helpers.h"

#define N 3

static uv_loop_t loop;
static struct node nodes[N];
static char certs[256];
static char files[N][3][320];

static void make_certs(const char *dir, int count)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "STARLING_CERT_NODES=%d bash '%s' '%s' >/dev/null 2>&1", count, MAKE_CERTS, dir);
    cr_assert_eq(system(cmd), 0, "deploy/make-certs.sh failed: %s", cmd);
}

/* Node i uses nodeI.crt/.key and ca.crt of dir. */
static void use_tls(int i, const char *dir)
{
    snprintf(files[i][0], sizeof(files[i][0]), "%s/node%d.crt", dir, i + 1);
    snprintf(files[i][1], sizeof(files[i][1]), "%s/node%d.key", dir, i + 1);
    snprintf(files[i][2], sizeof(files[i][2]), "%s/ca.crt", dir);
    nodes[i].cfg.certfile = files[i][0];
    nodes[i].cfg.keyfile = files[i][1];
    nodes[i].cfg.cafile = files[i][2];
}

static void setup(void)
{
    tmp_setup();
    group_init(&loop, nodes, N, N);
    snprintf(certs, sizeof(certs), "%s", tmp_path("certs"));
    make_certs(certs, N);
    for (int i = 0; i < N; i++) {
        use_tls(i, certs);
        nodes[i].secret[0] = '\0'; /* TLS alone authenticates */
    }
}

static void finish(void) { group_finish(nodes, N); }
static void teardown(void) { group_teardown(nodes, N); }

TestSuite(tunnel, .init = setup, .fini = teardown, .timeout = 90);

static const struct applied *find_applied(const struct node *n, const char *key)
{
    for (size_t i = 0; i < n->n_applied; i++)
        if (strcmp(n->applied[i].topic, key) == 0)
            return &n->applied[i];
    return NULL;
}

struct seen {
    unsigned mask;
    const char *key;
};

static bool seen_by(void *arg)
{
    struct seen *s = arg;
    for (int i = 0; i < N; i++)
        if ((s->mask & (1u << i)) && !find_applied(&nodes[i], s->key))
            return false;
    return true;
}

Test(tunnel, tls_nodes_without_a_secret_elect_a_leader_and_apply_a_forwarded_proposal)
{
    group_start(nodes, N, 0x7);
    int leader = group_wait_leader(nodes, N, 0x7);
    int follower = (leader + 1) % N;
    struct cluster_cmd c = cmd_retain("over/tls", "x");
    struct done d;
    propose_wait(&nodes[follower], &c, &d);
    cr_assert_eq(d.status, 0, "a proposal on a follower failed: %d", d.status);
    struct seen s = {0x7, "over/tls"};
    cr_assert(run_until(&loop, seen_by, &s, 5000), "not applied on every node");
    for (int i = 0; i < N; i++)
        cr_assert_eq(nodes[i].rejected_logs, 0, "node %d rejected a peer", i + 1);
    finish();
}

/* --- the data link: a large message and small ones, in order -------------------------------- */

#define BIG (6u << 20)
#define SMALL 200

static int received, bad;
static size_t big_len;

static uint8_t pattern(size_t i, uint32_t tag) { return (uint8_t)(i * 131u + tag * 7u + (i >> 12)); }

static void on_receive(void *ctx, uint32_t from, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)from;
    uint32_t want = (uint32_t)received++;
    if (len < 4 || bytes_get_u32le(data) != want) {
        bad++;
        return;
    }
    for (size_t i = 4; i < len; i++)
        if (data[i] != pattern(i, want)) {
            bad++;
            return;
        }
    if (len == BIG)
        big_len = len;
}

static int sent_ok;
static void on_sent(void *arg, int status)
{
    (void)arg;
    if (status == 0)
        sent_ok++;
}

static bool all_sent(void *arg)
{
    (void)arg;
    return sent_ok == SMALL + 1;
}

static bool link_up(void *arg)
{
    (void)arg;
    return cluster_node_alive(nodes[0].c, 2) && cluster__link_find(nodes[0].c, 2) &&
           cluster_backlog(nodes[0].c, 2) == 0;
}

Test(tunnel, a_message_of_several_mib_crosses_a_tls_data_link_intact_and_in_order)
{
    for (int i = 0; i < N; i++)
        nodes[i].cfg.receive = on_receive;
    group_start(nodes, N, 0x7);
    group_wait_leader(nodes, N, 0x7);
    cr_assert(run_until(&loop, link_up, NULL, 5000));
    uint8_t *big = malloc(BIG);
    cr_assert_not_null(big);
    for (uint32_t k = 0; k <= SMALL; k++) {
        size_t len = k == SMALL / 2 ? BIG : 64 + k;
        bytes_put_u32le(big, k);
        for (size_t i = 4; i < len; i++)
            big[i] = pattern(i, k);
        struct iovec part = {big, len};
        cr_assert_eq(cluster_send(nodes[0].c, 2, &part, 1, on_sent, NULL), 0, "cluster_send of message %u", k);
    }
    free(big);
    cr_assert(run_until(&loop, all_sent, NULL, 30000), "%d of %d messages acknowledged", sent_ok, SMALL + 1);
    cr_assert_eq(received, SMALL + 1, "node 2 got %d messages", received);
    cr_assert_eq(bad, 0, "%d messages arrived damaged or out of order", bad);
    cr_assert_eq(big_len, BIG, "the large message did not arrive whole");
    finish();
}

/* --- peers that are kept out -------------------------------------------------------------------- */

static bool rejected_by_1_and_2(void *arg)
{
    (void)arg;
    return nodes[0].rejected_logs > 0 && nodes[1].rejected_logs > 0;
}

static void assert_node3_kept_out(void)
{
    group_start(nodes, N, 0x7);
    int leader = group_wait_leader(nodes, N, 0x3);
    cr_assert(run_until(&loop, rejected_by_1_and_2, NULL, 10000), "nodes 1 and 2 logged no \"peer rejected\"");
    struct cluster_cmd c = cmd_retain("kept/out", "x");
    struct done d;
    propose_wait(&nodes[leader], &c, &d);
    cr_assert_eq(d.status, 0);
    struct seen s = {0x3, "kept/out"};
    cr_assert(run_until(&loop, seen_by, &s, 5000));
    run_for(&loop, 600);
    cr_assert_null(find_applied(&nodes[2], "kept/out"), "node 3 applied an entry of the cluster");
    cr_assert_neq(node_status(&nodes[2]).role, 2, "node 3 became leader");
    cr_assert_gt(nodes[2].rejected_logs, 0, "node 3 logged no \"peer rejected\"");
    finish();
}

Test(tunnel, a_node_with_a_certificate_of_another_ca_is_kept_out)
{
    const char *other = tmp_path("other");
    make_certs(other, N);
    use_tls(2, other);
    assert_node3_kept_out();
}

Test(tunnel, a_plaintext_node_is_kept_out_of_a_tls_cluster)
{
    nodes[2].cfg.certfile = nodes[2].cfg.keyfile = nodes[2].cfg.cafile = NULL;
    snprintf(nodes[2].secret, sizeof(nodes[2].secret), "test-secret");
    assert_node3_kept_out();
}

/* --- configuration ---------------------------------------------------------------------------- */

static void assert_refused(struct node *n, const char *want1, const char *want2)
{
    char err[512];
    int rc = node_try_start(n, err, sizeof(err));
    cr_assert_neq(rc, 0, "cluster_start accepted it");
    cr_assert(strstr(err, want1) && strstr(err, want2), "\"%s\" lacks \"%s\" / \"%s\"", err, want1, want2);
    cr_assert_null(strchr(err, '\n'), "more than one line: %s", err);
    if (n->c)
        node_close(n);
}

Test(tunnel, bad_certificate_files_fail_the_start_with_one_line)
{
    struct node *n = &nodes[0];
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/missing.crt", certs);
    n->cfg.certfile = missing;
    assert_refused(n, "cluster_certfile", missing);
    use_tls(0, certs);
    n->cfg.keyfile = files[1][1]; /* node 2's key */
    assert_refused(n, "cluster_keyfile", files[1][1]);
    use_tls(0, certs);
    n->cfg.cafile = missing;
    assert_refused(n, "cluster_cafile", missing);
    use_tls(0, certs);
    n->cfg.cafile = NULL;
    assert_refused(n, "cluster_cafile", "missing");
    finish();
}
