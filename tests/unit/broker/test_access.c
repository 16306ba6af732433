/* Tests for the replicated users and rules in the broker (broker/access.c,
 * indexes.c): committed user and rule commands change AUTH_SOURCE_CLUSTER
 * (on apply, and when the state is loaded from the store at start or after a
 * snapshot), a hash that does not parse is ignored with a log line, and a
 * cluster user counts as a user for the anonymous default. Commands go
 * through the real one-node cluster (cluster_propose) and the store. */
#include <string.h>

#include "helpers.h"

TestSuite(access, .fini = fx_teardown);

/* mosquitto_passwd 2.0.11: alice / secret */
static const char ALICE[] =
    "$7$101$6ZVZAeVaU8hZ7r13$UuJMmgApXqR6Sn1Sqsaq1W2Q4z3PH7I73V9x0WhHxolx5bWNFKRRLGFD7R56lwdJEy6MK0Xgra4mzTmyvwuP7A==";

struct done {
    bool called;
    int status, result;
};

static void on_done(void *arg, int status, int result)
{
    struct done *d = arg;
    d->called = true;
    d->status = status;
    d->result = result;
}

static bool is_done(void *arg) { return ((struct done *)arg)->called; }

/* Proposes cmd and runs the loop until it was applied here; its result. */
static int commit(const struct cluster_cmd *cmd)
{
    struct done d = {0};
    cr_assert_eq(cluster_propose(fx_b->cluster, cmd, on_done, &d), 0);
    cr_assert(fx_run_until(is_done, &d, 5000), "command type %u not applied within 5 s", cmd->type);
    cr_assert_eq(d.status, 0);
    return d.result;
}

static int check(const char *user, const char *pass)
{
    return auth_password_check(&fx_b->access.tables, user, strlen(user), (const uint8_t *)pass, strlen(pass));
}

static bool allowed(const char *user, const char *topic, int access)
{
    struct auth_who who = {0};
    auth_who_set(&who, user, strlen(user), "c1", 2);
    bool ok = auth_allowed(&fx_b->access.tables, &who, topic, strlen(topic), access);
    auth_who_free(&who); /* its decision cache */
    return ok;
}

Test(access, committed_users_and_rules_apply_and_reload)
{
    fx_start();
    fx_wait_leader();
    struct auth *a = &fx_b->access.tables;
    cr_assert_not(auth_users_on(a));
    struct cluster_cmd u = {.type = CLUSTER_USER_SET, .has_user = true, .user = proto_cstr("alice"),
                            .topic = proto_cstr(ALICE)};
    cr_assert_eq(commit(&u), 0);
    cr_assert(auth_users_on(a));
    cr_assert_eq(check("alice", "secret"), 0);
    cr_assert_eq(check("alice", "other"), AUTH_EPASSWORD);

    /* a hash the broker cannot read: stored, but no such user here */
    struct cluster_cmd bad = {.type = CLUSTER_USER_SET, .has_user = true, .user = proto_cstr("bob"),
                              .topic = proto_cstr("plaintext")};
    cr_assert_eq(commit(&bad), 0);
    cr_assert_eq(check("bob", "plaintext"), AUTH_EUNKNOWN);

    struct cluster_cmd r = {.type = CLUSTER_ACL_ADD, .acl_kind = CLUSTER_ACL_USER, .has_user = true,
                            .user = proto_cstr("alice"), .topic = proto_cstr("a/#"), .access = AUTH_READ};
    cr_assert_eq(commit(&r), 0);
    cr_assert(allowed("alice", "a/b", AUTH_READ));
    cr_assert_not(allowed("alice", "b", AUTH_READ));

    /* what a restart or a snapshot does: the tables are rebuilt from the store */
    auth_user_del(a, AUTH_SOURCE_CLUSTER, "alice", 5);
    cr_assert_eq(check("alice", "secret"), AUTH_EUNKNOWN);
    cr_assert_eq(broker__state_load(fx_b), 0);
    cr_assert_eq(check("alice", "secret"), 0);
    cr_assert_not(allowed("alice", "b", AUTH_READ));
    cr_assert_eq(auth_users_count(a, AUTH_SOURCE_CLUSTER), 1);

    struct cluster_cmd d = {.type = CLUSTER_USER_DEL, .has_user = true, .user = proto_cstr("alice")};
    cr_assert_eq(commit(&d), 1);
    cr_assert_eq(commit(&d), 0);
    cr_assert_eq(check("alice", "secret"), AUTH_EUNKNOWN);
    struct cluster_cmd rd = r;
    rd.type = CLUSTER_ACL_DEL;
    cr_assert_eq(commit(&rd), 1);
    cr_assert_not(auth_acl_on(a));
    cr_assert_eq(broker__state_load(fx_b), 0);
    cr_assert_not(auth_users_on(a));
    fx_finish();
}
