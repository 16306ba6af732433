/* Unit tests for broker/auth.c: password files (lines as mosquitto_passwd
 * 2.0.11 writes them, and $6$ made with Python's hashlib), ACL files, the
 * topic checks (Mosquitto's semantics) and the failed-attempt table. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"

/* mosquitto_passwd -c -b pw alice secret; mosquitto_passwd -b pw bob 'b:o b' */
static const char *const PW_ALICE =
    "alice:$7$101$6ZVZAeVaU8hZ7r13$UuJMmgApXqR6Sn1Sqsaq1W2Q4z3PH7I73V9x0WhHxolx5bWNFKRRLGFD7R56lwdJEy6MK0Xgra4mzTmyvwuP7A==\n";
static const char *const PW_BOB =
    "bob:$7$101$ddLU5MRNRcPu2TQn$F4hAvAcwLeJ9hGdppC/R9GHV0r7WaL6x+XZV1ln9pz+9CyuGGAhKzPpmrrJRGqZkVLaBrhrADd8xXdA7tBGZkw==\n";
/* sha512(b"pw6" + b"0123456789ab") */
static const char *const PW_CAROL =
    "carol:$6$MDEyMzQ1Njc4OWFi$aCkWn4IQyaNfqCi3RptuboSR8yapcsD0CdjAEFrfGodpjoFLOIQEXKIqlTVJwawaSY30aO7pqA9ObW2pLAfSpw==\n";

static int check(struct auth *a, const char *user, const char *pass)
{
    return auth_password_check(a, user, user ? strlen(user) : 0, (const uint8_t *)pass, pass ? strlen(pass) : 0);
}

static void load_users(struct auth *a, const char *text)
{
    struct auth_users u;
    char err[256] = "";
    cr_assert_eq(auth_passwd_parse(text, strlen(text), &u, err, sizeof(err)), 0, "%s", err);
    auth_users_replace(a, AUTH_SOURCE_FILE, &u);
}

static void load_acl(struct auth *a, const char *text)
{
    struct auth_acl acl;
    char err[256] = "";
    cr_assert_eq(auth_acl_parse(text, strlen(text), &acl, err, sizeof(err)), 0, "%s", err);
    auth_acl_replace(a, AUTH_SOURCE_FILE, &acl);
}

Test(auth_passwd, mosquitto_passwd_lines)
{
    struct auth a;
    auth_init(&a);
    char text[1024];
    snprintf(text, sizeof(text), "# made by mosquitto_passwd\n\n%s%s%s", PW_ALICE, PW_BOB, PW_CAROL);
    load_users(&a, text);
    cr_assert(auth_users_on(&a));
    cr_assert_eq(check(&a, "alice", "secret"), 0);
    cr_assert_eq(check(&a, "alice", "Secret"), AUTH_EPASSWORD);
    cr_assert_eq(check(&a, "alice", ""), AUTH_EPASSWORD);
    cr_assert_eq(check(&a, "alice", NULL), AUTH_EPASSWORD);
    cr_assert_eq(check(&a, "bob", "b:o b"), 0);
    cr_assert_eq(check(&a, "carol", "pw6"), 0);
    cr_assert_eq(check(&a, "carol", "pw7"), AUTH_EPASSWORD);
    cr_assert_eq(check(&a, "dave", "secret"), AUTH_EUNKNOWN);
    cr_assert_eq(check(&a, NULL, "secret"), AUTH_EUNKNOWN);
    cr_assert_eq(check(&a, "alic", "secret"), AUTH_EUNKNOWN);
    auth_free(&a);
}

Test(auth_passwd, crlf_and_blanks)
{
    struct auth a;
    auth_init(&a);
    char text[1024];
    snprintf(text, sizeof(text), "  %s", PW_CAROL);
    text[strlen(text) - 1] = '\r';
    strcat(text, "\n\r\n");
    load_users(&a, text);
    cr_assert_eq(check(&a, "carol", "pw6"), 0);
    auth_free(&a);
}

Test(auth_passwd, empty_file_means_no_user_passes)
{
    struct auth a;
    auth_init(&a);
    cr_assert_not(auth_users_on(&a));
    load_users(&a, "");
    cr_assert(auth_users_on(&a));
    cr_assert_eq(check(&a, "alice", "secret"), AUTH_EUNKNOWN);
    auth_free(&a);
}

struct bad_line {
    const char *text;
    const char *want; /* in the message */
};

Test(auth_passwd, refused_lines_name_their_line)
{
    static const struct bad_line cases[] = {
        {"alice:secret\n", "line 1: user alice: not a password hash"},
        {"# c\nalice\n", "line 2: not USER:HASH"},
        {":$6$MDEy$aaaa\n", "line 1: empty user name"},
        {"a:$5$abc$def\n", "unknown hash type"},
        {"a:$6$MDEy\n", "$6$SALT$HASH"},
        {"a:$7$101$MDEy\n", "$7$ITERATIONS$SALT$HASH"},
        {"a:$7$0$MDEy$aaaa\n", "iteration count"},
        {"a:$7$100001$MDEy$aaaa\n", "iteration count"},
        {"a:$7$99999999999999999999999$MDEy$aaaa\n", "iteration count"},
        {"a:$7$1x$MDEy$aaaa\n", "iteration count"},
        {"a:$6$$aaaa\n", "salt"},
        {"a:$6$M!Ey$aaaa\n", "salt"},
        {"a:$6$MDEy$aaaa\n", "SHA-512"},
        {"a:$6$MDEy$=\n", "SHA-512"},
        {"x:y\na:$6$MDEy$aaaa\n", "line 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct auth_users u;
        char err[256] = "";
        cr_assert_eq(auth_passwd_parse(cases[i].text, strlen(cases[i].text), &u, err, sizeof(err)), -EINVAL,
                     "case %zu", i);
        cr_assert(strstr(err, cases[i].want), "case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
        cr_assert_not(u.set);
    }
}

Test(auth_passwd, duplicate_user_and_nul)
{
    char text[1024];
    struct auth_users u;
    char err[256] = "";
    snprintf(text, sizeof(text), "%s%s", PW_CAROL, PW_CAROL);
    cr_assert_eq(auth_passwd_parse(text, strlen(text), &u, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "line 2: user carol given twice"), "%s", err);
    const char nul[] = "a:$6$\0x\n";
    cr_assert_eq(auth_passwd_parse(nul, sizeof(nul) - 1, &u, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "NUL"), "%s", err);
}

Test(auth_passwd, load_names_the_file)
{
    char path[] = "/tmp/test_auth_pwXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "u:plain\n", 8), 8);
    close(fd);
    struct auth_users u;
    char err[512] = "";
    cr_assert_eq(auth_passwd_load(path, &u, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, path) && strstr(err, "line 1"), "%s", err);
    unlink(path);
    cr_assert_eq(auth_passwd_load(path, &u, err, sizeof(err)), -ENOENT);
    cr_assert(strstr(err, path), "%s", err);
}

/* --- ACL --------------------------------------------------------------------------- */

static bool can(struct auth *a, const char *user, const char *id, const char *topic, int access)
{
    struct auth_who w;
    auth_who_set(&w, user, user ? strlen(user) : 0, id, strlen(id));
    bool ok = auth_allowed(a, &w, topic, strlen(topic), access);
    auth_who_free(&w);
    return ok;
}

static bool can_sub(struct auth *a, const char *user, const char *id, const char *filter)
{
    struct auth_who w;
    auth_who_set(&w, user, user ? strlen(user) : 0, id, strlen(id));
    bool ok = auth_subscribe_allowed(a, &w, filter, strlen(filter));
    auth_who_free(&w);
    return ok;
}

Test(auth_acl, no_acl_allows_everything)
{
    struct auth a;
    auth_init(&a);
    cr_assert(can(&a, NULL, "c", "a/b", AUTH_WRITE));
    cr_assert(can_sub(&a, "u", "c", "#"));
    auth_free(&a);
}

static const char *const ACL =
    "# anonymous section\n"
    "topic read public/#\n"
    "topic deny public/secret\n"
    "\n"
    "user alice\n"
    "topic readwrite alice/#\n"
    "topic write   to/bob\n"
    "topic write with spaces/x\n"
    "topic read $SYS/broker/#\n"
    "topic deny alice/private/#\n"
    "user bob\n"
    "topic read to/bob\n"
    "topic read #\n"
    "pattern readwrite clients/%c/#\n"
    "pattern read users/%u/inbox\n"
    "pattern deny clients/%c/locked\n";

Test(auth_acl, mosquitto_semantics)
{
    struct auth a;
    auth_init(&a);
    load_acl(&a, ACL);
    cr_assert(auth_acl_on(&a));
    /* anonymous section */
    cr_assert(can(&a, NULL, "c1", "public/news", AUTH_READ));
    cr_assert_not(can(&a, NULL, "c1", "public/news", AUTH_WRITE));
    cr_assert_not(can(&a, NULL, "c1", "public/secret", AUTH_READ));
    cr_assert_not(can(&a, NULL, "c1", "alice/x", AUTH_READ));
    /* a user's section, not the anonymous one */
    cr_assert(can(&a, "alice", "c2", "alice/x/y", AUTH_WRITE));
    cr_assert(can(&a, "alice", "c2", "alice", AUTH_READ)); /* a/# matches a */
    cr_assert_not(can(&a, "alice", "c2", "public/news", AUTH_READ));
    cr_assert(can(&a, "alice", "c2", "to/bob", AUTH_WRITE));
    cr_assert_not(can(&a, "alice", "c2", "to/bob", AUTH_READ));
    cr_assert(can(&a, "alice", "c2", "with spaces/x", AUTH_WRITE));
    cr_assert_not(can(&a, "alice", "c2", "alice/private/x", AUTH_READ)); /* deny wins, whatever the order */
    cr_assert_not(can(&a, "alice", "c2", "alice/private", AUTH_WRITE));
    cr_assert(can(&a, "alice", "c2", "$SYS/broker/uptime", AUTH_READ));
    /* '#' does not reach $ topics */
    cr_assert(can(&a, "bob", "c3", "anything/at/all", AUTH_READ));
    cr_assert_not(can(&a, "bob", "c3", "$SYS/broker/uptime", AUTH_READ));
    cr_assert_not(can(&a, "bob", "c3", "to/bob", AUTH_WRITE));
    /* an unknown user: patterns only */
    cr_assert_not(can(&a, "eve", "c4", "public/news", AUTH_READ));
    cr_assert(can(&a, "eve", "c4", "clients/c4/x", AUTH_WRITE));
    cr_assert_not(can(&a, "eve", "c4", "clients/c5/x", AUTH_WRITE));
    cr_assert_not(can(&a, "eve", "c4", "clients/c4/locked", AUTH_WRITE)); /* deny pattern */
    cr_assert(can(&a, "eve", "c4", "users/eve/inbox", AUTH_READ));
    cr_assert_not(can(&a, "eve", "c4", "users/eve/inbox", AUTH_WRITE));
    cr_assert_not(can(&a, "eve", "c4", "users/bob/inbox", AUTH_READ));
    /* patterns apply to anonymous clients too, %u ones never */
    cr_assert(can(&a, NULL, "c5", "clients/c5/x", AUTH_READ));
    cr_assert_not(can(&a, NULL, "c5", "users//inbox", AUTH_READ));
    /* a deny pattern beats a user's grant: bob may read '#' */
    cr_assert_not(can(&a, "bob", "c3", "clients/c3/locked", AUTH_READ));
    auth_free(&a);
}

Test(auth_acl, dangerous_ids_with_patterns)
{
    struct auth a;
    auth_init(&a);
    load_acl(&a, ACL);
    cr_assert_not(can(&a, "eve", "c/x", "clients/c/x/y", AUTH_WRITE));
    cr_assert_not(can(&a, "eve", "+", "clients/+/y", AUTH_WRITE));
    cr_assert_not(can(&a, "e#", "c4", "clients/c4/x", AUTH_WRITE));
    cr_assert_not(can(&a, "bob", "#", "anything", AUTH_READ)); /* denied everything */
    auth_free(&a);
    /* without patterns the id does not matter */
    auth_init(&a);
    load_acl(&a, "user bob\ntopic read #\n");
    cr_assert(can(&a, "bob", "#", "anything", AUTH_READ));
    auth_free(&a);
}

Test(auth_acl, subscribe_on_the_filter)
{
    struct auth a;
    auth_init(&a);
    load_acl(&a, ACL);
    cr_assert(can_sub(&a, "alice", "c", "alice/#"));
    cr_assert(can_sub(&a, "alice", "c", "alice/+/x"));
    cr_assert_not(can_sub(&a, "alice", "c", "#"));
    cr_assert_not(can_sub(&a, "alice", "c", "to/bob")); /* write only */
    cr_assert(can_sub(&a, "bob", "c", "#"));
    cr_assert(can_sub(&a, "bob", "c", "$share/g/x/y"));
    cr_assert_not(can_sub(&a, "alice", "c", "$share/g/public/news"));
    cr_assert(can_sub(&a, "alice", "c", "$share/g/alice/x"));
    cr_assert(can_sub(&a, NULL, "c", "public/+"));
    cr_assert_not(can_sub(&a, NULL, "c", "public/secret"));
    cr_assert_not(can_sub(&a, NULL, "c", "+/news"));
    auth_free(&a);
}

Test(auth_acl, who_cache_follows_reload)
{
    struct auth a;
    auth_init(&a);
    load_acl(&a, "user u\ntopic read a\n");
    struct auth_who w;
    auth_who_set(&w, "u", 1, "c", 1);
    cr_assert(auth_allowed(&a, &w, "a", 1, AUTH_READ));
    cr_assert_not(auth_allowed(&a, &w, "b", 1, AUTH_READ));
    load_acl(&a, "user u\ntopic read b\n");
    cr_assert_not(auth_allowed(&a, &w, "a", 1, AUTH_READ));
    cr_assert(auth_allowed(&a, &w, "b", 1, AUTH_READ));
    struct auth_acl none;
    memset(&none, 0, sizeof(none));
    auth_acl_replace(&a, AUTH_SOURCE_FILE, &none);
    cr_assert(auth_allowed(&a, &w, "a", 1, AUTH_READ)); /* no ACL any more */
    auth_who_free(&w);
    auth_free(&a);
}

Test(auth_acl, a_second_source_adds)
{
    struct auth a;
    auth_init(&a);
    load_acl(&a, "user u\ntopic read a\n");
    struct auth_acl more;
    char err[128];
    const char *text = "user u\ntopic read b\ntopic deny a\n";
    cr_assert_eq(auth_acl_parse(text, strlen(text), &more, err, sizeof(err)), 0, "%s", err);
    cr_assert(can(&a, "u", "c", "a", AUTH_READ));
    auth_acl_replace(&a, AUTH_SOURCE_CLUSTER, &more);
    cr_assert(can(&a, "u", "c", "b", AUTH_READ));
    cr_assert_not(can(&a, "u", "c", "a", AUTH_READ)); /* a deny anywhere wins */
    auth_free(&a);
}

Test(auth_acl, refused_lines)
{
    static const struct bad_line cases[] = {
        {"user\n", "line 1: user without a name"},
        {"topic\n", "line 1: missing topic"},
        {"topic write\n", NULL}, /* one word: the topic "write", readwrite */
        {"topic rw a/b\n", "line 1: access \"rw\""},
        {"topic read a/#/b\n", "not a valid topic filter"},
        {"pattern read a/b+\n", "not a valid topic filter"},
        {"\n# x\nallow a\n", "line 3: \"allow\" is not one of"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct auth_acl acl;
        char err[256] = "";
        int rc = auth_acl_parse(cases[i].text, strlen(cases[i].text), &acl, err, sizeof(err));
        if (!cases[i].want) {
            cr_assert_eq(rc, 0, "case %zu: %s", i, err);
            auth_acl_free(&acl);
            continue;
        }
        cr_assert_eq(rc, -EINVAL, "case %zu", i);
        cr_assert(strstr(err, cases[i].want), "case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
    }
}

Test(auth_acl, user_names_with_spaces_and_tabs)
{
    struct auth a;
    auth_init(&a);
    load_acl(&a, "user  john smith \n\ttopic\tread\tj/#\n");
    cr_assert(can(&a, "john smith", "c", "j/x", AUTH_READ));
    cr_assert_not(can(&a, "john", "c", "j/x", AUTH_READ));
    auth_free(&a);
}

/* --- failed attempts ------------------------------------------------------------------ */

Test(auth_throttle, delays_after_five_in_a_minute)
{
    struct auth_throttle t;
    cr_assert_eq(auth_throttle_init(&t), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(auth_throttle_fail(&t, "10.0.0.1", 1000 + i), 0);
    cr_assert_eq(auth_throttle_fail(&t, "10.0.0.1", 2000), AUTH_THROTTLE_DELAY_MS);
    cr_assert_eq(auth_throttle_fail(&t, "10.0.0.2", 2000), 0); /* another address */
    /* the window ends: counting starts again */
    cr_assert_eq(auth_throttle_fail(&t, "10.0.0.1", 1000 + AUTH_THROTTLE_WINDOW_MS + 1), 0);
    auth_throttle_free(&t);
}

Test(auth_throttle, table_stays_bounded)
{
    struct auth_throttle t;
    cr_assert_eq(auth_throttle_init(&t), 0);
    char addr[48];
    /* many more addresses than slots: no growth, no crash, the recent one counted */
    for (unsigned i = 0; i < AUTH_THROTTLE_SLOTS * 4; i++) {
        snprintf(addr, sizeof(addr), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        auth_throttle_fail(&t, addr, i);
    }
    uint32_t d = 0;
    for (int i = 0; i < 6; i++)
        d = auth_throttle_fail(&t, "192.168.1.1", 100000 + i);
    cr_assert_eq(d, AUTH_THROTTLE_DELAY_MS);
    auth_throttle_free(&t);
}

Test(auth_passwd, a_password_that_passed_is_remembered)
{
    struct auth a;
    auth_init(&a);
    load_users(&a, PW_ALICE);
    const struct auth_user *u = map_get(&a.users[AUTH_SOURCE_FILE].by_name, "alice", 5);
    cr_assert_not(u->cached);
    cr_assert_eq(check(&a, "alice", "Secret"), AUTH_EPASSWORD);
    cr_assert_not(u->cached);
    cr_assert_eq(check(&a, "alice", "secret"), 0);
    cr_assert(u->cached);
    cr_assert_eq(check(&a, "alice", "secret"), 0);
    cr_assert_eq(check(&a, "alice", "secre"), AUTH_EPASSWORD);
    cr_assert_eq(check(&a, "alice", ""), AUTH_EPASSWORD);
    cr_assert_eq(check(&a, "alice", "secret"), 0);
    /* a reload forgets it */
    load_users(&a, PW_ALICE);
    u = map_get(&a.users[AUTH_SOURCE_FILE].by_name, "alice", 5);
    cr_assert_not(u->cached);
    auth_free(&a);
}

/* The decisions a struct auth_who remembers: the same answers as the rules,
 * per access, per whole topic, and forgotten when the ACL changes. */
Test(auth_acl, remembered_decisions)
{
    struct auth a;
    auth_init(&a);
    load_acl(&a, "user u\ntopic read a/b\ntopic write w/#\n");
    struct auth_who w;
    auth_who_set(&w, "u", 1, "id", 2);
    for (int round = 0; round < 3; round++) {
        cr_assert(auth_allowed(&a, &w, "a/b", 3, AUTH_READ));
        cr_assert(!auth_allowed(&a, &w, "a/b", 3, AUTH_WRITE));
        cr_assert(!auth_allowed(&a, &w, "a/bc", 4, AUTH_READ));
        cr_assert(!auth_allowed(&a, &w, "a/", 2, AUTH_READ));
        cr_assert(auth_allowed(&a, &w, "w/1", 3, AUTH_WRITE));
        cr_assert(auth_allowed(&a, &w, "w/2", 3, AUTH_WRITE)); /* more topics than entries */
        cr_assert(!auth_allowed(&a, &w, "w/2", 3, AUTH_READ));
    }
    /* a topic longer than an entry holds is checked every time */
    char longt[AUTH_WHO_CACHE_TOPIC + 8];
    memset(longt, 'x', sizeof(longt));
    memcpy(longt, "w/", 2);
    cr_assert(auth_allowed(&a, &w, longt, sizeof(longt), AUTH_WRITE));
    cr_assert(auth_allowed(&a, &w, longt, sizeof(longt), AUTH_WRITE));
    /* a reload: the remembered grant is gone */
    load_acl(&a, "user u\ntopic read a/c\n");
    cr_assert(!auth_allowed(&a, &w, "a/b", 3, AUTH_READ));
    cr_assert(auth_allowed(&a, &w, "a/c", 3, AUTH_READ));
    auth_who_free(&w);
    auth_free(&a);
}
