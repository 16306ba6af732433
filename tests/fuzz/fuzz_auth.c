/* libFuzzer target for broker/auth.c: the input's first byte picks a mode,
 * the rest is the text of a password file or an ACL file, or an ACL file and
 * names to check against it. Parsing must succeed or say why (a message, the
 * tables left empty); the checks must run on any topic, filter, client id and
 * username without reading out of bounds, and a $7$ line must never cost more
 * than AUTH_MAX_ITERATIONS rounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

/* Splits [p, p + n) at the first 0x00: the part before in *a, after in *b. */
static void cut(const char *p, size_t n, const char **a, size_t *al, const char **b, size_t *bl)
{
    const char *z = memchr(p, 0, n);
    *a = p;
    *al = z ? (size_t)(z - p) : n;
    *b = z ? z + 1 : p + n;
    *bl = z ? n - *al - 1 : 0;
}

static void checks(const char *text, size_t len)
{
    /* ACL text, 0x00, client id, 0x00, username, 0x00, topic/filter */
    const char *acl_text, *rest, *id, *user, *topic;
    size_t acl_len, rest_len, id_len, user_len, topic_len;
    cut(text, len, &acl_text, &acl_len, &rest, &rest_len);
    cut(rest, rest_len, &id, &id_len, &rest, &rest_len);
    cut(rest, rest_len, &user, &user_len, &topic, &topic_len);
    struct auth a;
    auth_init(&a);
    struct auth_acl acl;
    char err[256] = "";
    if (auth_acl_parse(acl_text, acl_len, &acl, err, sizeof(err)) != 0) {
        if (!err[0] || acl.set)
            abort();
        auth_free(&a);
        return;
    }
    auth_acl_replace(&a, AUTH_SOURCE_FILE, &acl);
    struct auth_who w;
    auth_who_set(&w, user_len ? user : NULL, user_len, id, id_len);
    bool r = auth_allowed(&a, &w, topic, topic_len, AUTH_READ);
    bool wr = auth_allowed(&a, &w, topic, topic_len, AUTH_WRITE);
    bool s = auth_subscribe_allowed(&a, &w, topic, topic_len);
    /* the cached lookup gives the same answers */
    if (r != auth_allowed(&a, &w, topic, topic_len, AUTH_READ) ||
        wr != auth_allowed(&a, &w, topic, topic_len, AUTH_WRITE))
        abort();
    (void)s;
    auth_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char err[256] = "";
    switch (data[0] % 3) {
    case 0: {
        struct auth_users u;
        int rc = auth_passwd_parse(text, len, &u, err, sizeof(err));
        if (rc != 0) {
            if (!err[0] || u.set)
                abort();
            return 0;
        }
        /* a password check against each user (iterations are bounded) */
        struct auth a;
        auth_init(&a);
        size_t pos = 0;
        struct map_slot *slot;
        while ((slot = map_next(&u.by_name, &pos))) {
            const struct auth_user *user = slot->value;
            if (user->v.kind == AUTH_HASH_PBKDF2_SHA512 && user->v.iterations > AUTH_MAX_ITERATIONS)
                abort();
            if (user->v.iterations <= 1000)
                auth_verifier_check(&user->v, (const uint8_t *)"pw", 2);
        }
        auth_users_replace(&a, AUTH_SOURCE_FILE, &u);
        auth_free(&a);
        return 0;
    }
    case 1: {
        struct auth_acl acl;
        if (auth_acl_parse(text, len, &acl, err, sizeof(err)) != 0) {
            if (!err[0] || acl.set)
                abort();
            return 0;
        }
        auth_acl_free(&acl);
        return 0;
    }
    default:
        checks(text, len);
        return 0;
    }
}
