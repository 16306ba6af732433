/* Tests for cluster/apply.c: what each command does to a real LMDB store
 * (results, stale generations, clean start, release, expire, retained), the
 * state read back as commands (cluster__state_load) and the text dump
 * (cluster__state_dump, cluster_dump), byte-exact. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

static struct store *st;
static uint64_t next_index;

static struct store *open_store(const char *dir)
{
    struct store *s = NULL;
    int rc = store_open(&s, dir, 0);
    cr_assert_eq(rc, 0, "store_open(%s): %s", dir, store_strerror(rc));
    return s;
}

static void setup(void)
{
    tmp_setup();
    st = open_store(tmp_path("state"));
    next_index = 1;
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    tmp_teardown();
}

TestSuite(apply, .init = setup, .fini = teardown);

/* Applies cmd in its own transaction committed at the next index, as
 * fsm_apply does (it commits stale commands' transactions too). */
static int apply_to(struct store *s, const struct cluster_cmd *cmd)
{
    struct store_txn *t;
    int rc = store_write_begin(s, &t);
    cr_assert_eq(rc, 0, "write_begin: %s", store_strerror(rc));
    int r = cluster__state_apply(t, cmd);
    rc = store_write_commit(t, next_index++);
    cr_assert_eq(rc, 0, "commit: %s", store_strerror(rc));
    return r;
}

static int apply(const struct cluster_cmd *cmd) { return apply_to(st, cmd); }

static void apply_ok(const struct cluster_cmd *cmd, int want)
{
    int r = apply(cmd);
    cr_assert_eq(r, want, "command type %u: result %d, want %d", cmd->type, r, want);
}

/* The dump without its applied_index line (which every commit changes). */
static char *records(struct store *s)
{
    char *t = state_dump_text(s);
    char *nl = strchr(t, '\n');
    cr_assert_not_null(nl);
    memmove(t, nl + 1, strlen(nl + 1) + 1);
    return t;
}

/* Applies cmd, expecting want, and asserts the records did not change. */
static void apply_changes_nothing(const struct cluster_cmd *cmd, int want)
{
    char *before = records(st);
    int r = apply(cmd);
    cr_assert_eq(r, want, "command type %u: result %d, want %d", cmd->type, r, want);
    char *after = records(st);
    cr_assert_str_eq(after, before, "the records changed:\nbefore:\n%s\nafter:\n%s", before, after);
    free(before);
    free(after);
}

static bool get_session(const char *id, struct store_session *out)
{
    struct store_txn *t;
    cr_assert_eq(store_read_begin(st, &t), 0);
    int rc = store_session_get(t, (const uint8_t *)id, strlen(id), out);
    store_txn_end(t); /* views are not used after this: only the scalars */
    cr_assert(rc == 0 || rc == STORE_ENOTFOUND, "session_get: %s", store_strerror(rc));
    return rc == 0;
}

static int count_cb(void *arg, const struct store_sub *s)
{
    (void)s;
    (*(int *)arg)++;
    return 0;
}

static int sub_count(const char *id)
{
    struct store_txn *t;
    cr_assert_eq(store_read_begin(st, &t), 0);
    int n = 0;
    int rc = store_client_subs_foreach(t, (const uint8_t *)id, strlen(id), count_cb, &n);
    store_txn_end(t);
    cr_assert_eq(rc, 0);
    return n;
}

static bool has_sub(const char *id, const char *filter, struct store_sub *copy)
{
    struct store_txn *t;
    cr_assert_eq(store_read_begin(st, &t), 0);
    struct store_sub s;
    int rc = store_sub_get(t, (const uint8_t *)id, strlen(id), (const uint8_t *)filter, strlen(filter), &s);
    if (rc == 0 && copy) {
        *copy = s;
        copy->client_id = copy->filter = (struct store_bytes){NULL, 0};
    }
    store_txn_end(t);
    cr_assert(rc == 0 || rc == STORE_ENOTFOUND, "sub_get: %s", store_strerror(rc));
    return rc == 0;
}

/* --- session claim --------------------------------------------------------------------- */

Test(apply, claim_new_then_resume)
{
    struct cluster_cmd c = cmd_claim("c1", 1, 10, false);
    apply_ok(&c, 0);
    struct store_session s;
    cr_assert(get_session("c1", &s));
    cr_assert_eq(s.owner, 1);
    cr_assert_eq(s.generation, 10);
    cr_assert_eq(s.expiry, 3600);
    cr_assert(s.connected);
    cr_assert_not(s.has_will);

    /* another node takes the session over without clean start: resumed */
    c = cmd_claim("c1", 2, 11, false);
    apply_ok(&c, 1);
    cr_assert(get_session("c1", &s));
    cr_assert_eq(s.owner, 2);
    cr_assert_eq(s.generation, 11);
    check_leaks();
}

/* A session owned by a user is claimed by that user only (anonymous counts
 * as an identity of its own); an unowned one by anyone. */
Test(apply, claim_of_an_owned_session_by_another_user_is_refused)
{
    struct cluster_cmd c = cmd_claim("own", 1, 10, false);
    c.has_user = true;
    c.owned = true;
    c.user = (struct proto_str){(const uint8_t *)"alice", 5};
    apply_ok(&c, 0);
    struct cluster_cmd b = cmd_claim("own", 2, 11, true);
    b.has_user = true;
    b.owned = true;
    b.user = (struct proto_str){(const uint8_t *)"bob", 3};
    apply_changes_nothing(&b, CLUSTER_EPERM);
    b.user = (struct proto_str){(const uint8_t *)"alic", 4};
    apply_changes_nothing(&b, CLUSTER_EPERM);
    b.has_user = false;
    b.user = (struct proto_str){NULL, 0};
    apply_changes_nothing(&b, CLUSTER_EPERM);
    b.owned = false; /* a node that does not authenticate: still not hers */
    apply_changes_nothing(&b, CLUSTER_EPERM);
    /* alice herself, on another node */
    c = cmd_claim("own", 2, 12, false);
    c.has_user = true;
    c.owned = true;
    c.user = (struct proto_str){(const uint8_t *)"alice", 5};
    apply_ok(&c, 1);
    struct store_session s;
    cr_assert(get_session("own", &s));
    cr_assert(s.owned);
    cr_assert_eq(s.generation, 12);

    /* an unowned session (an old record): anyone */
    struct cluster_cmd u = cmd_claim("free", 1, 20, false);
    apply_ok(&u, 0);
    u = cmd_claim("free", 1, 21, false);
    u.has_user = true;
    u.owned = true;
    u.user = (struct proto_str){(const uint8_t *)"bob", 3};
    apply_ok(&u, 1);
    /* once the session is gone, the client id is free again */
    struct cluster_cmd e = {.type = CLUSTER_SESSION_EXPIRE, .client_id = S("own"), .generation = 12};
    apply_ok(&e, 0);
    b.has_user = true;
    b.owned = true;
    b.user = (struct proto_str){(const uint8_t *)"bob", 3};
    apply_ok(&b, 0);
    check_leaks();
}

Test(apply, claim_with_clean_start_drops_the_old_subs)
{
    struct cluster_cmd c = cmd_claim("c1", 1, 10, false);
    apply_ok(&c, 0);
    struct cluster_cmd s1 = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "a/b"), s2 = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "c/#");
    apply_ok(&s1, 0);
    apply_ok(&s2, 0);
    cr_assert_eq(sub_count("c1"), 2);

    c = cmd_claim("c1", 1, 11, true);
    apply_ok(&c, 0); /* clean start: no session present */
    cr_assert_eq(sub_count("c1"), 0, "clean start kept the old subscriptions");
    struct store_session s;
    cr_assert(get_session("c1", &s));
    cr_assert_eq(s.generation, 11);
    check_leaks();
}

Test(apply, claim_without_clean_start_keeps_subs_and_makes_old_generation_stale)
{
    struct cluster_cmd c = cmd_claim("c1", 1, 10, false);
    apply_ok(&c, 0);
    struct cluster_cmd s1 = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "a/b");
    apply_ok(&s1, 0);
    c = cmd_claim("c1", 2, 11, false);
    apply_ok(&c, 1);
    cr_assert_eq(sub_count("c1"), 1);
    /* the old connection (generation 10) can no longer change the session */
    struct cluster_cmd late = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "x/y");
    apply_changes_nothing(&late, CLUSTER_ESTALE);
    check_leaks();
}

Test(apply, clean_start_on_a_fresh_client_is_new)
{
    struct cluster_cmd c = cmd_claim("fresh", 4, 1, true);
    apply_ok(&c, 0);
    struct store_session s;
    cr_assert(get_session("fresh", &s));
    check_leaks();
}

/* --- subscriptions --------------------------------------------------------------------- */

Test(apply, sub_add_current_generation_then_replace)
{
    struct cluster_cmd c = cmd_claim("c1", 1, 10, false);
    apply_ok(&c, 0);
    struct cluster_cmd s = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "$share/g/a/+");
    apply_ok(&s, 0);
    struct store_sub got;
    cr_assert(has_sub("c1", "$share/g/a/+", &got));
    cr_assert_eq(got.qos, 1);

    s.qos = 2;
    s.no_local = true;
    s.retain_as_published = true;
    s.retain_handling = 2;
    s.sub_id = 268435455u;
    apply_ok(&s, 1); /* replaced */
    cr_assert(has_sub("c1", "$share/g/a/+", &got));
    cr_assert_eq(got.qos, 2);
    cr_assert(got.no_local);
    cr_assert(got.retain_as_published);
    cr_assert_eq(got.retain_handling, 2);
    cr_assert_eq(got.sub_id, 268435455u);
    cr_assert_eq(sub_count("c1"), 1);
    check_leaks();
}

Test(apply, sub_add_stale_generation_writes_nothing)
{
    struct cluster_cmd c = cmd_claim("c1", 1, 10, false);
    apply_ok(&c, 0);
    struct cluster_cmd s = cmd_sub(CLUSTER_SUB_ADD, "c1", 9, "a/b");
    apply_changes_nothing(&s, CLUSTER_ESTALE);
    cr_assert_not(has_sub("c1", "a/b", NULL));
    s.generation = 11; /* a future generation is not current either */
    apply_changes_nothing(&s, CLUSTER_ESTALE);
    /* no session at all */
    struct cluster_cmd none = cmd_sub(CLUSTER_SUB_ADD, "nobody", 10, "a/b");
    apply_changes_nothing(&none, CLUSTER_ESTALE);
    cr_assert_eq(sub_count("nobody"), 0);
    check_leaks();
}

Test(apply, sub_del)
{
    struct cluster_cmd c = cmd_claim("c1", 1, 10, false);
    apply_ok(&c, 0);
    struct cluster_cmd a = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "a/b"), b = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "b/#");
    apply_ok(&a, 0);
    apply_ok(&b, 0);

    struct cluster_cmd d = cmd_sub(CLUSTER_SUB_DEL, "c1", 9, "a/b");
    apply_changes_nothing(&d, CLUSTER_ESTALE);
    cr_assert(has_sub("c1", "a/b", NULL));

    d.generation = 10;
    apply_ok(&d, 1);
    cr_assert_not(has_sub("c1", "a/b", NULL));
    cr_assert(has_sub("c1", "b/#", NULL));
    apply_ok(&d, 0); /* nothing left to delete */

    struct cluster_cmd none = cmd_sub(CLUSTER_SUB_DEL, "nobody", 10, "a/b");
    apply_changes_nothing(&none, CLUSTER_ESTALE);
    check_leaks();
}

/* --- release and expire ------------------------------------------------------------------- */

static struct cluster_cmd with_will(struct cluster_cmd c)
{
    c.has_will = true;
    c.will = (struct cluster_will){.topic = S("will/t"), .payload = S("bye\0bye\xff"), .props = S("\x02\x00\x00\x00\x0a"),
                                   .qos = 2, .retain = true, .delay = 30};
    return c;
}

Test(apply, release_records_expire_at_and_disconnects)
{
    struct cluster_cmd c = with_will(cmd_claim("c1", 3, 10, false));
    apply_ok(&c, 0);
    struct cluster_cmd s = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "a/b");
    apply_ok(&s, 0);

    /* has_will: the will is still pending (a Will Delay Interval runs) */
    struct cluster_cmd r = {.type = CLUSTER_SESSION_RELEASE, .client_id = S("c1"), .node = 3, .generation = 9,
                            .expire_at_ms = 1700000000123ull, .has_will = true};
    apply_changes_nothing(&r, CLUSTER_ESTALE);

    r.generation = 10;
    apply_ok(&r, 0);
    struct store_txn *t;
    cr_assert_eq(store_read_begin(st, &t), 0);
    struct store_session got;
    cr_assert_eq(store_session_get(t, (const uint8_t *)"c1", 2, &got), 0);
    cr_assert_not(got.connected);
    cr_assert_eq(got.expire_at_ms, 1700000000123ull);
    /* everything else is kept, the pending will included */
    cr_assert_eq(got.owner, 3);
    cr_assert_eq(got.generation, 10);
    cr_assert_eq(got.expiry, 3600);
    cr_assert(got.has_will, "a pending will was dropped");
    cr_assert_eq(got.will_topic.len, 6);
    cr_assert(memcmp(got.will_topic.p, "will/t", 6) == 0);
    cr_assert_eq(got.will_payload.len, 8);
    cr_assert(memcmp(got.will_payload.p, "bye\0bye\xff", 8) == 0);
    cr_assert_eq(got.will_qos, 2);
    cr_assert_eq(got.will_delay, 30);
    store_txn_end(t);
    cr_assert_eq(sub_count("c1"), 1, "release dropped the subscriptions");

    struct cluster_cmd none = r;
    none.client_id = S("nobody");
    apply_changes_nothing(&none, CLUSTER_ESTALE);
    check_leaks();
}

Test(apply, release_without_a_pending_will_drops_it)
{
    /* the will was published (or suppressed) when the connection ended */
    struct cluster_cmd c = with_will(cmd_claim("c1", 3, 10, false));
    apply_ok(&c, 0);
    struct cluster_cmd r = {.type = CLUSTER_SESSION_RELEASE, .client_id = S("c1"), .generation = 10,
                            .expire_at_ms = 5};
    apply_ok(&r, 0);
    struct store_txn *t;
    cr_assert_eq(store_read_begin(st, &t), 0);
    struct store_session got;
    cr_assert_eq(store_session_get(t, (const uint8_t *)"c1", 2, &got), 0);
    cr_assert_not(got.connected);
    cr_assert_eq(got.expire_at_ms, 5);
    cr_assert_not(got.has_will, "a will that was already handled is still recorded");
    store_txn_end(t);
    char *dump = records(st);
    cr_assert(strstr(dump, "connected=0 expire_at=5 will=none\n"), "%s", dump);
    free(dump);
    check_leaks();
}

Test(apply, expire_stale_then_current)
{
    struct cluster_cmd c = cmd_claim("c1", 1, 10, false);
    apply_ok(&c, 0);
    struct cluster_cmd a = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "a/b"), b = cmd_sub(CLUSTER_SUB_ADD, "c1", 10, "b/#");
    apply_ok(&a, 0);
    apply_ok(&b, 0);
    struct cluster_cmd other = cmd_claim("c2", 1, 20, false);
    apply_ok(&other, 0);
    struct cluster_cmd os = cmd_sub(CLUSTER_SUB_ADD, "c2", 20, "a/b");
    apply_ok(&os, 0);

    struct cluster_cmd e = {.type = CLUSTER_SESSION_EXPIRE, .client_id = S("c1"), .generation = 9};
    apply_changes_nothing(&e, CLUSTER_ESTALE);
    struct store_session s;
    cr_assert(get_session("c1", &s));
    cr_assert_eq(sub_count("c1"), 2);

    e.generation = 10;
    apply_ok(&e, 0);
    cr_assert_not(get_session("c1", &s), "the session survived its expiry");
    cr_assert_eq(sub_count("c1"), 0, "the subscriptions survived the session's expiry");
    /* the other client is untouched */
    cr_assert(get_session("c2", &s));
    cr_assert_eq(sub_count("c2"), 1);

    apply_changes_nothing(&e, CLUSTER_ESTALE); /* already gone */
    check_leaks();
}

/* --- retained --------------------------------------------------------------------------------- */

Test(apply, retain_set_replace_and_del)
{
    struct cluster_cmd r = cmd_retain("a/b", "hello");
    r.props = S("\x01\x01");
    r.msg_expire_at_ms = 1800000000456ull;
    apply_ok(&r, 0);
    struct store_txn *t;
    struct store_retained got;
    cr_assert_eq(store_read_begin(st, &t), 0);
    cr_assert_eq(store_retain_get(t, (const uint8_t *)"a/b", 3, &got), 0);
    cr_assert_eq(got.payload.len, 5);
    cr_assert(memcmp(got.payload.p, "hello", 5) == 0);
    cr_assert_eq(got.props.len, 2);
    cr_assert_eq(got.qos, 1);
    cr_assert_eq(got.expire_at_ms, 1800000000456ull);
    store_txn_end(t);

    r = cmd_retain("a/b", "bye");
    r.qos = 0;
    apply_ok(&r, 0);
    cr_assert_eq(store_read_begin(st, &t), 0);
    cr_assert_eq(store_retain_get(t, (const uint8_t *)"a/b", 3, &got), 0);
    cr_assert_eq(got.payload.len, 3);
    cr_assert_eq(got.qos, 0);
    cr_assert_eq(got.props.len, 0);
    cr_assert_eq(got.expire_at_ms, 0);
    store_txn_end(t);

    struct cluster_cmd d = {.type = CLUSTER_RETAIN_DEL, .topic = S("a/b")};
    apply_ok(&d, 0);
    cr_assert_eq(store_read_begin(st, &t), 0);
    cr_assert_eq(store_retain_get(t, (const uint8_t *)"a/b", 3, &got), STORE_ENOTFOUND);
    store_txn_end(t);
    apply_changes_nothing(&d, 0); /* deleting nothing is not an error */
    check_leaks();
}

Test(apply, membership_commands_change_nothing)
{
    struct cluster_cmd c = cmd_claim("c1", 1, 10, false);
    apply_ok(&c, 0);
    struct cluster_cmd j = {.type = CLUSTER_NODE_JOIN, .node = 5}, l = {.type = CLUSTER_NODE_LEAVE, .node = 5};
    apply_changes_nothing(&j, 0);
    apply_changes_nothing(&l, 0);
    check_leaks();
}

Test(apply, invalid_client_id_is_refused_without_writing)
{
    /* the store refuses an empty client id or one with 0x00: the result is
     * negative (and, being a function of the command alone, the same on
     * every node) */
    struct cluster_cmd c = cmd_claim("", 1, 10, false);
    char *before = records(st);
    int r = apply(&c);
    cr_assert_lt(r, 0, "an empty client id was accepted");
    cr_assert_neq(r, CLUSTER_ESTALE);
    c.client_id = S("a\0b");
    r = apply(&c);
    cr_assert_lt(r, 0, "a client id with 0x00 was accepted");
    char *after = records(st);
    cr_assert_str_eq(after, before);
    free(before);
    free(after);
    check_leaks();
}

/* --- the will --------------------------------------------------------------------------------- */

Test(apply, will_round_trips)
{
    struct cluster_cmd c = with_will(cmd_claim("c1", 1, 10, false));
    apply_ok(&c, 0);
    struct store_txn *t;
    struct store_session got;
    cr_assert_eq(store_read_begin(st, &t), 0);
    cr_assert_eq(store_session_get(t, (const uint8_t *)"c1", 2, &got), 0);
    cr_assert(got.has_will);
    cr_assert_eq(got.will_qos, 2);
    cr_assert(got.will_retain);
    cr_assert_eq(got.will_delay, 30);
    cr_assert_eq(got.will_topic.len, c.will.topic.len);
    cr_assert(memcmp(got.will_topic.p, c.will.topic.p, c.will.topic.len) == 0);
    cr_assert_eq(got.will_payload.len, c.will.payload.len);
    cr_assert(memcmp(got.will_payload.p, c.will.payload.p, c.will.payload.len) == 0);
    cr_assert_eq(got.will_props.len, c.will.props.len);
    cr_assert(memcmp(got.will_props.p, c.will.props.p, c.will.props.len) == 0);
    store_txn_end(t);

    /* and back out as a command */
    char *text = state_load_text(st);
    char want[1024];
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    struct cluster_cmd expect = c;
    expect.clean_start = false;
    cmd_print(f, &expect);
    fclose(f);
    snprintf(want, sizeof(want), "%s", p);
    free(p);
    cr_assert_str_eq(text, want);
    free(text);

    /* a later claim without a will drops it */
    c = cmd_claim("c1", 1, 11, false);
    apply_ok(&c, 1);
    cr_assert_eq(store_read_begin(st, &t), 0);
    cr_assert_eq(store_session_get(t, (const uint8_t *)"c1", 2, &got), 0);
    cr_assert_not(got.has_will);
    cr_assert_eq(got.will_topic.len, 0);
    store_txn_end(t);
    check_leaks();
}

/* --- the state as commands ---------------------------------------------------------------------- */

/* Two connected sessions (one with a will), three subs, two retained. */
static void populate(void)
{
    struct cluster_cmd cmds[] = {
        with_will(cmd_claim("alice", 1, 100, false)),
        cmd_claim("bob", 2, 200, false),
        cmd_sub(CLUSTER_SUB_ADD, "alice", 100, "a/+"),
        cmd_sub(CLUSTER_SUB_ADD, "bob", 200, "$share/g/x"),
        cmd_sub(CLUSTER_SUB_ADD, "alice", 100, "b/#"),
        cmd_retain("r/1", "one"),
        cmd_retain("r/0", "zero"),
    };
    cmds[3].no_local = true;
    cmds[3].retain_handling = 2;
    cmds[3].sub_id = 7;
    cmds[5].props = S("\x23\x00\x05");
    cmds[5].msg_expire_at_ms = 99;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        apply_ok(&cmds[i], 0);
}

struct replay {
    struct store *to;
    uint8_t types[32];
    int n;
    int results[32];
};

static int replay_cb(void *arg, const struct cluster_cmd *cmd)
{
    struct replay *r = arg;
    cr_assert_lt(r->n, 32);
    r->types[r->n] = cmd->type;
    r->results[r->n] = r->to ? apply_to(r->to, cmd) : 0;
    r->n++;
    return 0;
}

Test(apply, load_yields_sessions_then_subs_then_retained)
{
    populate();
    struct replay r = {0};
    cr_assert_eq(cluster__state_load(st, replay_cb, &r), 0);
    static const uint8_t want[] = {CLUSTER_SESSION_CLAIM, CLUSTER_SESSION_CLAIM, CLUSTER_SUB_ADD, CLUSTER_SUB_ADD,
                                   CLUSTER_SUB_ADD,       CLUSTER_RETAIN_SET,    CLUSTER_RETAIN_SET};
    cr_assert_eq(r.n, 7, "%d commands, want 7", r.n);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(r.types[i], want[i], "command %d is type %u, want %u", i, r.types[i], want[i]);

    /* field by field, in key order (the subs' generation is checked below) */
    char *text = state_load_text(st);
    const char *lines[] = {
        "type=1 client_id=\"alice\" node=1 generation=100 clean_start=0 expiry=3600 expire_at=0 has_will=1 "
        "will.topic=\"will/t\" will.payload=\"bye\\x00bye\\xff\" will.props=\"\\x02\\x00\\x00\\x00\\x0a\" "
        "will.qos=2 will.retain=1 will.delay=30",
        "type=1 client_id=\"bob\" node=2 generation=200 clean_start=0 expiry=3600 expire_at=0 has_will=0 "
        "will.topic=\"\" will.payload=\"\" will.props=\"\" will.qos=0 will.retain=0 will.delay=0",
        "filter=\"a/+\" qos=1 no_local=0 rap=0 rh=0 sub_id=0",
        "filter=\"b/#\" qos=1 no_local=0 rap=0 rh=0 sub_id=0",
        "filter=\"$share/g/x\" qos=1 no_local=1 rap=0 rh=2 sub_id=7",
        "topic=\"r/0\" payload=\"zero\" props=\"\" msg_expire_at=0 released=0",
        "topic=\"r/1\" payload=\"one\" props=\"#\\x00\\x05\" msg_expire_at=99",
    };
    const char *at = text;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        const char *hit = strstr(at, lines[i]);
        cr_assert_not_null(hit, "load output lacks (in order) \"%s\":\n%s", lines[i], text);
        at = hit + strlen(lines[i]);
    }
    free(text);
    check_leaks();
}

struct gen_check {
    uint64_t alice, bob;
    int subs;
    char bad[256];
};

static int gen_cb(void *arg, const struct cluster_cmd *cmd)
{
    struct gen_check *g = arg;
    if (cmd->type != CLUSTER_SUB_ADD)
        return 0;
    g->subs++;
    uint64_t want = cmd->client_id.len == 5 ? g->alice : g->bob;
    if (cmd->generation != want && !g->bad[0])
        snprintf(g->bad, sizeof(g->bad), "SUB_ADD of %.*s carries generation %llu, the session's is %llu",
                 (int)cmd->client_id.len, (const char *)cmd->client_id.p, (unsigned long long)cmd->generation,
                 (unsigned long long)want);
    return 0;
}

Test(apply, load_sub_commands_carry_the_session_generation)
{
    /* a SUB_ADD is applied only for the session's current generation, so the
     * SUB_ADD that recreates a subscription must carry it */
    populate();
    struct gen_check g = {.alice = 100, .bob = 200};
    cr_assert_eq(cluster__state_load(st, gen_cb, &g), 0);
    cr_assert_eq(g.subs, 3);
    cr_assert_str_empty(g.bad, "%s", g.bad);
    check_leaks();
}

/* Applies what cluster__state_load yields to a fresh store and compares.
 * Everything is released before the first assertion can end the test. */
static void assert_replay_recreates(void)
{
    static char want[8192], got[8192];
    struct store *copy = open_store(tmp_path("copy"));
    struct replay r = {.to = copy};
    int rc = cluster__state_load(st, replay_cb, &r);
    char *a = records(st), *b = records(copy);
    store_close(copy);
    snprintf(want, sizeof(want), "%s", a);
    snprintf(got, sizeof(got), "%s", b);
    free(a);
    free(b);
    cr_assert_eq(rc, 0);
    for (int i = 0; i < r.n; i++)
        cr_assert_geq(r.results[i], 0, "replaying loaded command %d (type %u) failed: %d", i, r.types[i],
                      r.results[i]);
    cr_assert_str_eq(got, want, "replaying cluster__state_load did not recreate the state:\nstate:\n%s\nreplayed:\n%s",
                     want, got);
}

Test(apply, load_replayed_recreates_the_state)
{
    populate();
    assert_replay_recreates();
    check_leaks();
}

Test(apply, load_marks_a_released_session)
{
    /* a SESSION_CLAIM cannot say that the connection ended: cluster_load
     * carries it in `released` (with expire_at and a will still pending) */
    struct cluster_cmd c = with_will(cmd_claim("gone", 1, 10, false));
    apply_ok(&c, 0);
    struct cluster_cmd here = cmd_claim("here", 1, 11, false);
    apply_ok(&here, 0);
    struct cluster_cmd r = {.type = CLUSTER_SESSION_RELEASE, .client_id = S("gone"), .generation = 10,
                            .expire_at_ms = 1700000000123ull, .has_will = true};
    apply_ok(&r, 0);
    char *text = state_load_text(st);
    const char *gone = strstr(text, "client_id=\"gone\""), *still = strstr(text, "client_id=\"here\"");
    cr_assert(gone && still, "%s", text);
    const char *gone_end = strchr(gone, '\n'), *still_end = strchr(still, '\n');
    char line[2048];
    snprintf(line, sizeof(line), "%.*s", (int)(gone_end - gone), gone);
    cr_assert(strstr(line, " expire_at=1700000000123 has_will=1 will.topic=\"will/t\""), "%s", line);
    cr_assert(strstr(line, " released=1"), "a released session loads as connected: %s", line);
    snprintf(line, sizeof(line), "%.*s", (int)(still_end - still), still);
    cr_assert(strstr(line, " expire_at=0 ") && strstr(line, " released=0"), "%s", line);
    free(text);
    check_leaks();
}

static int stop_after_two(void *arg, const struct cluster_cmd *cmd)
{
    (void)cmd;
    return ++*(int *)arg == 2 ? 42 : 0;
}

Test(apply, load_stops_when_the_callback_says_so)
{
    populate();
    int n = 0;
    int rc = cluster__state_load(st, stop_after_two, &n);
    cr_assert_eq(rc, 42);
    cr_assert_eq(n, 2);
    check_leaks();
}

/* --- the dump ------------------------------------------------------------------------------------- */

/* Records whose strings need every escape of the dump format. */
static void populate_for_dump(void)
{
    struct cluster_cmd a = cmd_claim("c\x01\"\\\xff", 3, 42, false);
    a.expiry = 60;
    a.has_will = true;
    a.will = (struct cluster_will){.topic = S("w/\"t"), .payload = S("\x00\xff"), .props = S("\x01\x02"), .qos = 1,
                                   .retain = true, .delay = 5};
    apply_ok(&a, 0);
    struct cluster_cmd p = cmd_claim("plain", 1, 7, false);
    p.expiry = 0;
    apply_ok(&p, 0);
    struct cluster_cmd rel = {.type = CLUSTER_SESSION_RELEASE, .client_id = S("plain"), .generation = 7,
                              .expire_at_ms = 1234};
    apply_ok(&rel, 0);
    struct cluster_cmd s1 = cmd_sub(CLUSTER_SUB_ADD, "plain", 7, "a/\x7f/#");
    s1.qos = 2;
    s1.no_local = true;
    s1.retain_as_published = true;
    s1.retain_handling = 1;
    s1.sub_id = 9;
    apply_ok(&s1, 0);
    struct cluster_cmd s2 = cmd_sub(CLUSTER_SUB_ADD, "c\x01\"\\\xff", 42, "$share/g/x");
    s2.qos = 0;
    apply_ok(&s2, 0);
    struct cluster_cmd r1 = cmd_retain("r/\n", "hi");
    r1.msg_expire_at_ms = 99;
    apply_ok(&r1, 0);
    struct cluster_cmd r2 = cmd_retain("z", "");
    r2.qos = 0;
    r2.props = S("\xab");
    apply_ok(&r2, 0);
}

static const char dump_want[] =
    "applied_index 7\n"
    "session \"c\\x01\\\"\\\\\\xFF\" owner=3 generation=42 expiry=60 connected=1 expire_at=0 will=\"w/\\\"t\" "
    "will_qos=1 will_retain=1 will_delay=5 will_payload=00ff will_props=0102\n"
    "session \"plain\" owner=1 generation=7 expiry=0 connected=0 expire_at=1234 will=none\n"
    "sub \"c\\x01\\\"\\\\\\xFF\" \"$share/g/x\" qos=0 no_local=0 rap=0 rh=0 sub_id=0\n"
    "sub \"plain\" \"a/\\x7F/#\" qos=2 no_local=1 rap=1 rh=1 sub_id=9\n"
    "retained \"r/\\x0A\" qos=1 expire_at=99 payload=6869 props=\n"
    "retained \"z\" qos=0 expire_at=0 payload= props=ab\n";

Test(apply, dump_format_is_exact)
{
    populate_for_dump();
    char *got = state_dump_text(st);
    cr_assert_str_eq(got, dump_want, "dump:\n%s\nwant:\n%s", got, dump_want);
    free(got);
    check_leaks();
}

Test(apply, cluster_dump_reads_the_data_dir)
{
    populate_for_dump();
    store_close(st); /* one LMDB environment per process at a time */
    st = NULL;
    char *got = cluster_dump_text(tmp_root);
    cr_assert_str_eq(got, dump_want, "dump:\n%s\nwant:\n%s", got, dump_want);
    free(got);
    st = open_store(tmp_path("state"));
    check_leaks();
}

Test(apply, cluster_dump_of_an_empty_dir_fails_with_a_message)
{
    char err[256] = "";
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    int rc = cluster_dump(tmp_path("nothing-here"), f, err, sizeof(err));
    fclose(f);
    cr_assert_lt(rc, 0);
    cr_assert(strstr(err, "no replicated state here"), "message: %s", err);
    cr_assert_eq(n, 0, "printed something: %s", p);
    free(p);
    check_leaks();
}

Test(apply, dump_of_an_empty_store)
{
    char *got = state_dump_text(st);
    cr_assert_str_eq(got, "applied_index 0\n");
    free(got);
    check_leaks();
}

/* --- users and ACL rules ------------------------------------------------------------------------ */

static struct cluster_cmd cmd_user(const char *name, const char *hash, struct proto_str scram)
{
    return (struct cluster_cmd){.type = CLUSTER_USER_SET, .has_user = true,
                                .user = {(const uint8_t *)name, (uint32_t)strlen(name)},
                                .topic = {(const uint8_t *)hash, (uint32_t)strlen(hash)}, .payload = scram};
}

static struct cluster_cmd cmd_rule(uint8_t type, uint8_t kind, const char *user, const char *topic, uint8_t access)
{
    return (struct cluster_cmd){.type = type, .acl_kind = kind, .has_user = user != NULL,
                                .user = {(const uint8_t *)user, user ? (uint32_t)strlen(user) : 0},
                                .topic = {(const uint8_t *)topic, (uint32_t)strlen(topic)}, .access = access};
}

Test(apply, users_set_replace_del_and_dump)
{
    struct cluster_cmd a = cmd_user("alice", "$7$101$c2FsdA==$aGFzaA==", S("\x01\x02"));
    apply_ok(&a, 0);
    a.payload = (struct proto_str){NULL, 0};
    apply_ok(&a, 1); /* replaced */
    struct cluster_cmd b = cmd_user("b\"ob", "$6$x$y", S("k"));
    apply_ok(&b, 0);
    char *got = records(st);
    cr_assert_str_eq(got, "user \"alice\" scram=0\nuser \"b\\\"ob\" scram=1\n", "%s", got);
    free(got);
    struct cluster_cmd d = {.type = CLUSTER_USER_DEL, .has_user = true, .user = S("alice")};
    apply_ok(&d, 1);
    apply_changes_nothing(&d, 0);
    check_leaks();
}

Test(apply, malformed_users_and_rules_change_nothing)
{
    struct cluster_cmd no_name = cmd_user("x", "$7$", S(""));
    no_name.has_user = false;
    no_name.user.len = 0;
    apply_changes_nothing(&no_name, -EINVAL);
    struct cluster_cmd nul = cmd_user("x", "$7$", S(""));
    nul.user = S("a\0b");
    apply_changes_nothing(&nul, -EINVAL);
    struct cluster_cmd no_hash = cmd_user("x", "", S(""));
    apply_changes_nothing(&no_hash, -EINVAL);
    struct cluster_cmd bad_filter = cmd_rule(CLUSTER_ACL_ADD, CLUSTER_ACL_ANONYMOUS, NULL, "a/#/b", 1);
    apply_changes_nothing(&bad_filter, -EINVAL);
    struct cluster_cmd user_without_name = cmd_rule(CLUSTER_ACL_ADD, CLUSTER_ACL_USER, NULL, "a", 1);
    apply_changes_nothing(&user_without_name, -EINVAL);
    struct cluster_cmd pattern_with_name = cmd_rule(CLUSTER_ACL_ADD, CLUSTER_ACL_PATTERN, "u", "a", 1);
    apply_changes_nothing(&pattern_with_name, -EINVAL);
    struct cluster_cmd kind3 = cmd_rule(CLUSTER_ACL_ADD, 3, NULL, "a", 1);
    apply_changes_nothing(&kind3, -EINVAL);
    check_leaks();
}

Test(apply, rules_add_replace_del_load_and_dump)
{
    struct cluster_cmd r1 = cmd_rule(CLUSTER_ACL_ADD, CLUSTER_ACL_USER, "alice", "a/#", 1);
    apply_ok(&r1, 0);
    r1.access = 3;
    apply_ok(&r1, 1); /* the same rule, another access */
    struct cluster_cmd r2 = cmd_rule(CLUSTER_ACL_ADD, CLUSTER_ACL_ANONYMOUS, NULL, "pub/+", 2);
    apply_ok(&r2, 0);
    struct cluster_cmd r3 = cmd_rule(CLUSTER_ACL_ADD, CLUSTER_ACL_PATTERN, NULL, "c/%c/#", 0);
    apply_ok(&r3, 0);
    char *got = records(st);
    cr_assert_str_eq(got,
                     "acl \"anonymous\" \"\" \"pub/+\" access=2\nacl \"user\" \"alice\" \"a/#\" access=3\n"
                     "acl \"pattern\" \"\" \"c/%c/#\" access=0\n",
                     "%s", got);
    free(got);

    struct replay r = {0};
    cr_assert_eq(cluster__state_load(st, replay_cb, &r), 0);
    cr_assert_eq(r.n, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r.types[i], CLUSTER_ACL_ADD);
    /* the loaded commands recreate the same records */
    struct store *other = open_store(tmp_path("other"));
    struct replay again = {.to = other};
    cr_assert_eq(cluster__state_load(st, replay_cb, &again), 0);
    char *a = records(st), *b = records(other);
    cr_assert_str_eq(b, a);
    free(a);
    free(b);
    store_close(other);

    struct cluster_cmd d = cmd_rule(CLUSTER_ACL_DEL, CLUSTER_ACL_USER, "alice", "a/#", 0);
    apply_ok(&d, 1);
    apply_changes_nothing(&d, 0);
    check_leaks();
}

/* CLUSTER_MAX_USERS / CLUSTER_MAX_RULES: a new user or rule beyond them is
 * refused by the store's count, a change of an existing one is not. */
Test(apply, users_and_rules_are_bounded)
{
    struct store_txn *t;
    cr_assert_eq(store_write_begin(st, &t), 0);
    char name[32];
    for (uint32_t i = 0; i < CLUSTER_MAX_USERS; i++) {
        int n = snprintf(name, sizeof(name), "u%u", i);
        struct store_user u = {{(const uint8_t *)name, (size_t)n}, {(const uint8_t *)"$7$", 3}, {NULL, 0}};
        cr_assert_eq(store_user_put(t, &u), 0);
        struct store_acl_rule r = {CLUSTER_ACL_ANONYMOUS, {NULL, 0}, {(const uint8_t *)name, (size_t)n}, 1};
        cr_assert_eq(store_acl_put(t, &r), 0);
    }
    cr_assert_eq(store_write_commit(t, next_index++), 0);
    struct cluster_cmd more = cmd_user("one-more", "$7$x", S(""));
    apply_changes_nothing(&more, CLUSTER_ELIMIT);
    struct cluster_cmd again = cmd_user("u7", "$7$y", S(""));
    apply_ok(&again, 1);
    struct cluster_cmd rule = cmd_rule(CLUSTER_ACL_ADD, CLUSTER_ACL_ANONYMOUS, NULL, "one/more", 1);
    apply_changes_nothing(&rule, CLUSTER_ELIMIT);
    struct cluster_cmd same = cmd_rule(CLUSTER_ACL_ADD, CLUSTER_ACL_ANONYMOUS, NULL, "u7", 3);
    apply_ok(&same, 1);
    struct cluster_cmd del = cmd_rule(CLUSTER_ACL_DEL, CLUSTER_ACL_ANONYMOUS, NULL, "u8", 0);
    apply_ok(&del, 1);
    apply_ok(&rule, 0); /* room again */
    check_leaks();
}
