/* Unit tests for broker/auth_cluster.c: a source changed one user or rule at
 * a time (the replicated users and rules), the hashes made of a password
 * given to the admin API, the verifier written back as text, and the SCRAM
 * credentials' byte form (empty, truncated, overlong, boundary). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"

#define CL AUTH_SOURCE_CLUSTER

/* mosquitto_passwd 2.0.11: alice / secret */
static const char ALICE_HASH[] =
    "$7$101$6ZVZAeVaU8hZ7r13$UuJMmgApXqR6Sn1Sqsaq1W2Q4z3PH7I73V9x0WhHxolx5bWNFKRRLGFD7R56lwdJEy6MK0Xgra4mzTmyvwuP7A==";

static int check(struct auth *a, const char *user, const char *pass)
{
    return auth_password_check(a, user, strlen(user), (const uint8_t *)pass, strlen(pass));
}

static struct auth_verifier verifier(const char *text)
{
    struct auth_verifier v;
    char err[160];
    cr_assert_eq(auth_verifier_parse(text, strlen(text), &v, err, sizeof(err)), 0, "%s", err);
    return v;
}

Test(auth_cluster, users_set_replace_del)
{
    struct auth a;
    auth_init(&a);
    cr_assert_not(auth_users_on(&a));
    struct auth_verifier v = verifier(ALICE_HASH);
    uint64_t g = a.generation;
    cr_assert_eq(auth_user_set(&a, CL, "alice", 5, &v, NULL), 0);
    cr_assert_gt(a.generation, g);
    cr_assert(auth_users_on(&a));
    cr_assert_eq(auth_users_count(&a, CL), 1);
    cr_assert_eq(check(&a, "alice", "secret"), 0);
    cr_assert_eq(check(&a, "alice", "wrong"), AUTH_EPASSWORD);
    cr_assert_eq(check(&a, "bob", "secret"), AUTH_EUNKNOWN);
    struct auth_scram s;
    cr_assert_not(auth_scram_find(&a, "alice", 5, &s)); /* an imported hash: no SCRAM */

    /* a new password replaces the old one (and its cached success) */
    char hash[AUTH_HASH_TEXT_MAX];
    int n = auth_password_hash((const uint8_t *)"n3w", 3, AUTH_CLUSTER_ITERATIONS, hash, sizeof(hash));
    cr_assert_gt(n, 0);
    cr_assert_eq(strncmp(hash, "$7$1000$", 8), 0, "%s", hash);
    struct auth_scram sc;
    cr_assert_eq(auth_scram_derive((const uint8_t *)"n3w", 3, NULL, 0, AUTH_SCRAM_ITERATIONS, &sc), 0);
    struct auth_verifier v2 = verifier(hash);
    cr_assert_eq(auth_user_set(&a, CL, "alice", 5, &v2, &sc), 0);
    cr_assert_eq(auth_users_count(&a, CL), 1);
    cr_assert_eq(check(&a, "alice", "secret"), AUTH_EPASSWORD);
    cr_assert_eq(check(&a, "alice", "n3w"), 0);
    cr_assert(auth_scram_find(&a, "alice", 5, &s));
    cr_assert_eq(memcmp(s.stored_key, sc.stored_key, AUTH_SCRAM_KEY_LEN), 0);

    cr_assert_eq(auth_user_del(&a, CL, "alice", 5), 0);
    cr_assert_eq(auth_user_del(&a, CL, "alice", 5), AUTH_EUNKNOWN);
    cr_assert_not(auth_users_on(&a)); /* no replicated user: the source is off again */
    auth_free(&a);
}

Test(auth_cluster, verifier_format_reads_back)
{
    static const char *const lines[] = {
        ALICE_HASH,
        "$6$MDEyMzQ1Njc4OWFi$aCkWn4IQyaNfqCi3RptuboSR8yapcsD0CdjAEFrfGodpjoFLOIQEXKIqlTVJwawaSY30aO7pqA9ObW2pLAfSpw==",
    };
    for (size_t i = 0; i < 2; i++) {
        struct auth_verifier v = verifier(lines[i]), back;
        char text[AUTH_HASH_TEXT_MAX];
        int n = auth_verifier_format(&v, text, sizeof(text));
        cr_assert_gt(n, 0);
        cr_assert_str_eq(text, lines[i]);
        back = verifier(text);
        cr_assert_eq(memcmp(&back, &v, sizeof(v)), 0);
        cr_assert_eq(auth_verifier_format(&v, text, 20), -E2BIG);
    }
    struct auth_verifier bad = {.kind = 5, .salt_len = 1};
    char text[AUTH_HASH_TEXT_MAX];
    cr_assert_eq(auth_verifier_format(&bad, text, sizeof(text)), -EINVAL);
    cr_assert_eq(auth_password_hash((const uint8_t *)"x", 1, 0, text, sizeof(text)), -EINVAL);
    cr_assert_eq(auth_password_hash((const uint8_t *)"x", 1, AUTH_MAX_ITERATIONS + 1, text, sizeof(text)), -EINVAL);
}

Test(auth_cluster, scram_bytes_round_trip_and_refuse_bad_input)
{
    struct auth_scram s, got;
    cr_assert_eq(auth_scram_derive((const uint8_t *)"pw", 2, NULL, 0, AUTH_SCRAM_ITERATIONS, &s), 0);
    uint8_t buf[AUTH_SCRAM_ENCODED_MAX + 1];
    size_t n = auth_scram_encode(&s, buf);
    cr_assert_eq(n, 5 + AUTH_SCRAM_SALT_LEN + 2 * AUTH_SCRAM_KEY_LEN);
    memset(&got, 0, sizeof(got));
    cr_assert_eq(auth_scram_decode(buf, n, &got), 0);
    cr_assert_eq(got.iterations, s.iterations);
    cr_assert_eq(got.salt_len, s.salt_len);
    cr_assert_eq(memcmp(got.salt, s.salt, s.salt_len), 0);
    cr_assert_eq(memcmp(got.server_key, s.server_key, AUTH_SCRAM_KEY_LEN), 0);
    /* every truncation, and one byte too many */
    for (size_t k = 0; k < n; k++)
        cr_assert_eq(auth_scram_decode(buf, k, &got), -EINVAL, "%zu bytes", k);
    buf[n] = 0;
    cr_assert_eq(auth_scram_decode(buf, n + 1, &got), -EINVAL);
    /* salt length 0 and above AUTH_MAX_SALT; iterations 0 and too many */
    uint8_t c[AUTH_SCRAM_ENCODED_MAX + 1];
    memcpy(c, buf, n);
    c[4] = 0;
    cr_assert_eq(auth_scram_decode(c, n - AUTH_SCRAM_SALT_LEN, &got), -EINVAL);
    c[4] = AUTH_MAX_SALT + 1;
    cr_assert_eq(auth_scram_decode(c, sizeof(c), &got), -EINVAL);
    memcpy(c, buf, n);
    memset(c, 0, 4);
    cr_assert_eq(auth_scram_decode(c, n, &got), -EINVAL);
    c[0] = 0xFF, c[1] = 0xFF, c[2] = 0xFF, c[3] = 0xFF;
    cr_assert_eq(auth_scram_decode(c, n, &got), -EINVAL);
    /* the largest salt is fine */
    s.salt_len = AUTH_MAX_SALT;
    n = auth_scram_encode(&s, buf);
    cr_assert_eq(n, AUTH_SCRAM_ENCODED_MAX);
    cr_assert_eq(auth_scram_decode(buf, n, &got), 0);
    cr_assert_eq(auth_scram_decode(NULL, 0, &got), -EINVAL);
}

static bool allowed(struct auth *a, const char *user, const char *id, const char *topic, int access)
{
    struct auth_who who;
    auth_who_set(&who, user, user ? strlen(user) : 0, id, strlen(id));
    return auth_allowed(a, &who, topic, strlen(topic), access);
}

static int rule(struct auth *a, int kind, const char *user, const char *topic, int access)
{
    char err[160] = "";
    return auth_rule_set(a, CL, kind, user, user ? strlen(user) : 0, topic, strlen(topic), access, err, sizeof(err));
}

Test(auth_cluster, rules_set_replace_del)
{
    struct auth a;
    auth_init(&a);
    cr_assert(allowed(&a, "alice", "c1", "x", AUTH_WRITE)); /* no ACL: everything */
    cr_assert_eq(rule(&a, AUTH_RULE_USER, "alice", "a/#", AUTH_READ), 0);
    cr_assert(auth_acl_on(&a));
    cr_assert(allowed(&a, "alice", "c1", "a/b", AUTH_READ));
    cr_assert_not(allowed(&a, "alice", "c1", "a/b", AUTH_WRITE));
    cr_assert_not(allowed(&a, "bob", "c2", "a/b", AUTH_READ));
    cr_assert_not(allowed(&a, NULL, "c3", "a/b", AUTH_READ));
    /* the same rule again with another access replaces it */
    cr_assert_eq(rule(&a, AUTH_RULE_USER, "alice", "a/#", AUTH_READ | AUTH_WRITE), 0);
    cr_assert(allowed(&a, "alice", "c1", "a/b", AUTH_WRITE));
    cr_assert_eq(a.acl[CL].by_user.count, 1);
    /* a deny added after the grant still wins */
    cr_assert_eq(rule(&a, AUTH_RULE_USER, "alice", "a/secret", AUTH_DENY), 0);
    cr_assert_not(allowed(&a, "alice", "c1", "a/secret", AUTH_READ));
    cr_assert(allowed(&a, "alice", "c1", "a/open", AUTH_READ));
    /* anonymous and pattern rules */
    cr_assert_eq(rule(&a, AUTH_RULE_ANONYMOUS, NULL, "pub/+", AUTH_WRITE), 0);
    cr_assert(allowed(&a, NULL, "c3", "pub/x", AUTH_WRITE));
    cr_assert_not(allowed(&a, "bob", "c2", "pub/x", AUTH_WRITE));
    cr_assert_eq(rule(&a, AUTH_RULE_PATTERN, NULL, "dev/%c/#", AUTH_READ), 0);
    cr_assert(allowed(&a, "bob", "c2", "dev/c2/t", AUTH_READ));
    cr_assert_not(allowed(&a, "bob", "c2", "dev/c9/t", AUTH_READ));
    cr_assert(a.acl[CL].patterns_use_c);
    /* malformed */
    cr_assert_eq(rule(&a, AUTH_RULE_ANONYMOUS, NULL, "a/#/b", AUTH_READ), -EINVAL);
    cr_assert_eq(rule(&a, AUTH_RULE_ANONYMOUS, NULL, "a\nuser x", AUTH_READ), -EINVAL);
    cr_assert_eq(rule(&a, 3, NULL, "a", AUTH_READ), -EINVAL);
    cr_assert_eq(rule(&a, AUTH_RULE_USER, NULL, "a", AUTH_READ), -EINVAL);

    /* deleting: the user entry goes with its last rule; no rule left, no ACL */
    cr_assert_eq(auth_rule_del(&a, CL, AUTH_RULE_PATTERN, NULL, 0, "dev/%c/#", 8), 0);
    cr_assert_not(a.acl[CL].patterns_use_c);
    cr_assert_eq(auth_rule_del(&a, CL, AUTH_RULE_PATTERN, NULL, 0, "dev/%c/#", 8), AUTH_EUNKNOWN);
    cr_assert_eq(auth_rule_del(&a, CL, AUTH_RULE_USER, "alice", 5, "a/#", 3), 0);
    cr_assert_eq(auth_rule_del(&a, CL, AUTH_RULE_USER, "alice", 5, "a/secret", 8), 0);
    cr_assert_eq(a.acl[CL].by_user.count, 0);
    cr_assert_eq(auth_rule_del(&a, CL, AUTH_RULE_USER, "alice", 5, "a/#", 3), AUTH_EUNKNOWN);
    cr_assert(auth_acl_on(&a));
    cr_assert_eq(auth_rule_del(&a, CL, AUTH_RULE_ANONYMOUS, NULL, 0, "pub/+", 5), 0);
    cr_assert_not(auth_acl_on(&a));
    cr_assert(allowed(&a, "bob", "c2", "anything", AUTH_WRITE));
    auth_free(&a);
}

Test(auth_cluster, a_deny_in_either_source_wins)
{
    struct auth a;
    auth_init(&a);
    struct auth_acl acl;
    char err[160];
    const char *text = "user alice\ntopic readwrite a/#\n";
    cr_assert_eq(auth_acl_parse(text, strlen(text), &acl, err, sizeof(err)), 0);
    auth_acl_replace(&a, AUTH_SOURCE_FILE, &acl);
    cr_assert(allowed(&a, "alice", "c1", "a/x", AUTH_READ));
    cr_assert_eq(rule(&a, AUTH_RULE_USER, "alice", "a/x", AUTH_DENY), 0);
    cr_assert_not(allowed(&a, "alice", "c1", "a/x", AUTH_READ));
    cr_assert(allowed(&a, "alice", "c1", "a/y", AUTH_READ));
    auth_free(&a);
}
