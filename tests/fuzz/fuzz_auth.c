/* libFuzzer target for broker/auth.c: the input's first byte picks a mode,
 * the rest is the text of a password file or an ACL file, or an ACL file and
 * names to check against it, or (first byte 'S') a SCRAM-SHA-256 exchange:
 * a client-first and a client-final message, split at 0x00. Parsing must succeed or say why (a message, the
 * tables left empty); the checks must run on any topic, filter, client id and
 * username without reading out of bounds, and a $7$ line must never cost more
 * than AUTH_MAX_ITERATIONS rounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "scram.h"

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
    auth_who_free(&w);
    auth_free(&a);
}

/* The server side of an exchange on client-first 0x00 client-final: every
 * step ends in 0 or a scram_error, a success only with a well-formed
 * server-final, and never past SCRAM_MAX_MESSAGE. */
static void scram(const char *text, size_t len)
{
    static struct auth_scram cred;
    static bool derived;
    if (!derived) {
        /* RFC 7677's user: the RFC's own exchange succeeds as a seed */
        static const uint8_t salt[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                                         0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};
        if (auth_scram_derive((const uint8_t *)"pencil", 6, salt, sizeof(salt), 4096, &cred) != 0)
            abort();
        derived = true;
    }
    const char *first, *final;
    size_t first_len, final_len;
    cut(text, len, &first, &first_len, &final, &final_len);
    static struct scram_server s;
    memset(&s, 0, sizeof(s));
    int rc = scram_client_first(&s, (const uint8_t *)first, first_len);
    if (rc != 0) {
        if (rc != SCRAM_EMALFORMED && rc != SCRAM_EBINDING)
            abort();
        return;
    }
    if (s.user_len == 0 || s.user_len > SCRAM_MAX_MESSAGE || strlen(s.user) != s.user_len)
        abort();
    struct auth_scram fake;
    uint8_t key[32] = {0};
    if (scram_fake(key, s.user, s.user_len, &fake) != 0)
        abort();
    static const char snonce[] = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    if (scram_server_first(&s, first_len & 1 ? &fake : &cred, snonce, sizeof(snonce) - 1) != 0)
        abort();
    if (s.out_len == 0 || s.out_len > sizeof(s.out) || memcmp(s.out, "r=", 2) != 0)
        abort();
    rc = scram_client_final(&s, (const uint8_t *)final, final_len);
    if (rc == 0 && (s.out_len != 46 || memcmp(s.out, "v=", 2) != 0))
        abort();
    if (rc != 0 && rc != SCRAM_EMALFORMED && rc != SCRAM_EBINDING && rc != SCRAM_ENONCE && rc != SCRAM_EPROOF)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] == 'S') {
        scram(text, len);
        return 0;
    }
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
