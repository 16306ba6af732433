/* auth_cluster: the tables of one source changed a user or a rule at a time
 * (the replicated users and rules, AUTH_SOURCE_CLUSTER, follow each applied
 * command this way), the hashes a node makes of a password given to its
 * admin API, and the SCRAM credentials' form in the replicated state. */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "bytes.h"
#include "str.h"

/* --- SCRAM credentials as bytes ---------------------------------------------------- */

size_t auth_scram_encode(const struct auth_scram *s, uint8_t *out)
{
    uint8_t *p = bytes_put_u32le(out, s->iterations);
    p = bytes_put_u8(p, s->salt_len);
    p = bytes_put_mem(p, s->salt, s->salt_len);
    p = bytes_put_mem(p, s->stored_key, AUTH_SCRAM_KEY_LEN);
    p = bytes_put_mem(p, s->server_key, AUTH_SCRAM_KEY_LEN);
    return (size_t)(p - out);
}

int auth_scram_decode(const uint8_t *p, size_t len, struct auth_scram *out)
{
    struct bytes_reader r;
    bytes_reader_init(&r, p, len, -EINVAL);
    struct auth_scram s;
    memset(&s, 0, sizeof(s));
    int rc = bytes_read_u32le(&r, &s.iterations);
    if (rc == 0)
        rc = bytes_read_u8(&r, &s.salt_len);
    if (rc == 0 && (s.salt_len == 0 || s.salt_len > AUTH_MAX_SALT))
        rc = -EINVAL;
    if (rc == 0)
        rc = bytes_read_mem(&r, s.salt, s.salt_len);
    if (rc == 0)
        rc = bytes_read_mem(&r, s.stored_key, AUTH_SCRAM_KEY_LEN);
    if (rc == 0)
        rc = bytes_read_mem(&r, s.server_key, AUTH_SCRAM_KEY_LEN);
    if (rc == 0 && (bytes_left(&r) != 0 || s.iterations == 0 || s.iterations > AUTH_MAX_ITERATIONS))
        rc = -EINVAL;
    if (rc == 0)
        *out = s;
    return rc;
}

/* --- a password's hashes ------------------------------------------------------------ */

int auth_verifier_format(const struct auth_verifier *v, char *out, size_t cap)
{
    /* base64 of at most AUTH_MAX_SALT and AUTH_HASH_LEN bytes, NUL-terminated */
    char salt64[4 * ((AUTH_MAX_SALT + 2) / 3) + 1], hash64[4 * ((AUTH_HASH_LEN + 2) / 3) + 1];
    if (!v->salt_len || v->salt_len > AUTH_MAX_SALT ||
        (v->kind != AUTH_HASH_SHA512 && v->kind != AUTH_HASH_PBKDF2_SHA512))
        return -EINVAL;
    EVP_EncodeBlock((unsigned char *)salt64, v->salt, v->salt_len);
    EVP_EncodeBlock((unsigned char *)hash64, v->hash, AUTH_HASH_LEN);
    int n = v->kind == AUTH_HASH_SHA512 ? snprintf(out, cap, "$6$%s$%s", salt64, hash64)
                                        : snprintf(out, cap, "$7$%u$%s$%s", v->iterations, salt64, hash64);
    OPENSSL_cleanse(hash64, sizeof(hash64));
    return n < 0 || (size_t)n >= cap ? -E2BIG : n;
}

int auth_password_hash(const uint8_t *password, size_t len, uint32_t iterations, char *out, size_t cap)
{
    struct auth_verifier v = {.kind = AUTH_HASH_PBKDF2_SHA512, .salt_len = AUTH_HASH_SALT_LEN,
                              .iterations = iterations};
    if (iterations == 0 || iterations > AUTH_MAX_ITERATIONS || len > INT32_MAX)
        return -EINVAL;
    if (RAND_bytes(v.salt, AUTH_HASH_SALT_LEN) != 1 ||
        PKCS5_PBKDF2_HMAC((const char *)password, (int)len, v.salt, AUTH_HASH_SALT_LEN, (int)iterations,
                          EVP_sha512(), AUTH_HASH_LEN, v.hash) != 1)
        return -ENOMEM;
    int n = auth_verifier_format(&v, out, cap);
    OPENSSL_cleanse(&v, sizeof(v));
    return n;
}

/* --- users ----------------------------------------------------------------------------- */

int auth_user_set(struct auth *a, enum auth_source source, const char *name, size_t len,
                  const struct auth_verifier *v, const struct auth_scram *scram)
{
    struct auth_users *users = &a->users[source];
    struct auth_user *u = map_get(&users->by_name, name, len);
    if (!u) {
        if (!(u = calloc(1, sizeof(*u))) || !(u->name = str_dup_len(name, len))) {
            free(u);
            return -ENOMEM;
        }
        if (map_put(&users->by_name, u->name, len, u) != 0) {
            free(u->name);
            free(u);
            return -ENOMEM;
        }
    }
    u->v = *v;
    u->has_scram = scram != NULL;
    if (scram)
        u->scram = *scram;
    u->cached = false; /* the password may have changed */
    users->set = true;
    a->generation++;
    return 0;
}

int auth_user_del(struct auth *a, enum auth_source source, const char *name, size_t len)
{
    struct auth_users *users = &a->users[source];
    struct auth_user *u = map_del(&users->by_name, name, len);
    if (!u)
        return AUTH_EUNKNOWN;
    free(u->name);
    OPENSSL_cleanse(u, sizeof(*u));
    free(u);
    users->set = users->by_name.count > 0;
    a->generation++;
    return 0;
}

size_t auth_users_count(const struct auth *a, enum auth_source source)
{
    return a->users[source].by_name.count;
}

/* --- rules ------------------------------------------------------------------------------- */

/* The list a rule of kind belongs to; for a user's, created when create. */
static struct auth_rules *rule_list(struct auth_acl *acl, int kind, const char *user, size_t ulen, bool create)
{
    if (kind == AUTH_RULE_ANONYMOUS)
        return &acl->anon;
    if (kind == AUTH_RULE_PATTERN)
        return &acl->patterns;
    struct auth_acl_user *u = map_get(&acl->by_user, user, ulen);
    if (u || !create)
        return u ? &u->rules : NULL;
    if (!(u = calloc(1, sizeof(*u))) || !(u->name = str_dup_len(user, ulen))) {
        free(u);
        return NULL;
    }
    if (map_put(&acl->by_user, u->name, ulen, u) != 0) {
        free(u->name);
        free(u);
        return NULL;
    }
    return &u->rules;
}

/* Takes the rule with this topic out of rs; whether there was one. */
static bool rule_take(struct auth_rules *rs, const char *topic, size_t tlen)
{
    for (uint32_t i = 0; i < rs->count; i++) {
        struct auth_rule *r = &rs->v[i];
        if (r->len == tlen && memcmp(r->topic, topic, tlen) == 0) {
            free(r->topic);
            memmove(r, r + 1, (rs->count - i - 1) * sizeof(*r));
            rs->count--;
            return true;
        }
    }
    return false;
}

/* Recomputes what depends on the whole source: whether it is in force (it
 * has a rule) and whether patterns use %c / %u; drops an empty user entry. */
static void acl_settle(struct auth *a, struct auth_acl *acl, int kind, const char *user, size_t ulen)
{
    if (kind == AUTH_RULE_USER) {
        struct auth_acl_user *u = map_get(&acl->by_user, user, ulen);
        if (u && u->rules.count == 0) {
            map_del(&acl->by_user, user, ulen);
            free(u->rules.v);
            free(u->name);
            free(u);
        }
    }
    acl->patterns_use_c = acl->patterns_use_u = false;
    for (uint32_t i = 0; i < acl->patterns.count; i++) {
        acl->patterns_use_c |= acl->patterns.v[i].uses_c;
        acl->patterns_use_u |= acl->patterns.v[i].uses_u;
    }
    acl->set = acl->anon.count || acl->patterns.count || acl->by_user.count;
    a->generation++;
}

int auth_rule_set(struct auth *a, enum auth_source source, int kind, const char *user, size_t ulen,
                  const char *topic, size_t tlen, int access, char *err, size_t errlen)
{
    static const char *const words[] = {"deny", "read", "write", "readwrite"};
    if (kind < AUTH_RULE_ANONYMOUS || kind > AUTH_RULE_PATTERN || access < 0 || access > 3 || tlen > 65535 ||
        (kind == AUTH_RULE_USER && !ulen)) {
        snprintf(err, errlen, "not a rule");
        return -EINVAL;
    }
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)topic[i] < 0x20) { /* a line break would end the line below */
            snprintf(err, errlen, "a control character in the topic");
            return -EINVAL;
        }
    /* the rule is parsed as the line an acl_file would hold, so that both
     * sources read a topic the same way */
    size_t n = tlen + 32;
    char *line = malloc(n);
    if (!line)
        return -ENOMEM;
    int ll = snprintf(line, n, "%s %s %.*s", kind == AUTH_RULE_PATTERN ? "pattern" : "topic", words[access],
                      (int)tlen, topic);
    struct auth_acl one;
    int rc = auth_acl_parse(line, (size_t)ll, &one, err, errlen);
    free(line);
    if (rc)
        return rc;
    struct auth_rules *from = kind == AUTH_RULE_PATTERN ? &one.patterns : &one.anon;
    struct auth_acl *acl = &a->acl[source];
    struct auth_rules *rs = rule_list(acl, kind, user, ulen, true);
    if (from->count != 1) { /* a line break in the topic */
        auth_acl_free(&one);
        snprintf(err, errlen, "not a single topic");
        return -EINVAL;
    }
    if (!rs) {
        auth_acl_free(&one);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rule_take(rs, topic, tlen);
    if (rs->count == rs->cap) {
        uint32_t cap = rs->cap ? rs->cap * 2 : 4;
        struct auth_rule *v = realloc(rs->v, cap * sizeof(*v));
        if (!v) {
            auth_acl_free(&one);
            acl_settle(a, acl, kind, user, ulen);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        rs->v = v;
        rs->cap = cap;
    }
    /* deny rules stay ahead of every grant (auth_rules) */
    uint32_t at = rs->count;
    if (from->v[0].access == AUTH_DENY)
        for (at = 0; at < rs->count && rs->v[at].access == AUTH_DENY; at++)
            ;
    memmove(&rs->v[at + 1], &rs->v[at], (rs->count - at) * sizeof(*rs->v));
    rs->v[at] = from->v[0];
    rs->count++;
    from->count = 0; /* the topic moved */
    auth_acl_free(&one);
    acl_settle(a, acl, kind, user, ulen);
    return 0;
}

int auth_rule_del(struct auth *a, enum auth_source source, int kind, const char *user, size_t ulen,
                  const char *topic, size_t tlen)
{
    struct auth_acl *acl = &a->acl[source];
    struct auth_rules *rs = kind >= AUTH_RULE_ANONYMOUS && kind <= AUTH_RULE_PATTERN
                                ? rule_list(acl, kind, user, ulen, false)
                                : NULL;
    if (!rs || !rule_take(rs, topic, tlen))
        return AUTH_EUNKNOWN;
    acl_settle(a, acl, kind, user, ulen);
    return 0;
}
