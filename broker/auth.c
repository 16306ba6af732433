/* auth: the password and ACL file parsers, the password check (OpenSSL,
 * constant-time comparison), the topic checks and the table of failed
 * attempts. See auth.h for the semantics. */
#include "auth.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "buf.h"
#include "proto.h"
#include "str.h"

/* --- helpers ------------------------------------------------------------------ */

static void msg(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f'; }

/* One line of a text buffer: [p, p + len) without its newline, trailing
 * blanks and leading blanks taken off. */
struct line {
    const char *p;
    size_t len;
    unsigned no;
    bool has_nul;
};

/* The next line from *pos; false at the end. */
static bool line_next(const char *text, size_t len, size_t *pos, struct line *l)
{
    if (*pos >= len)
        return false;
    const char *start = text + *pos;
    const char *nl = memchr(start, '\n', len - *pos);
    size_t n = nl ? (size_t)(nl - start) : len - *pos;
    *pos += n + (nl ? 1 : 0);
    l->no++;
    l->has_nul = memchr(start, '\0', n) != NULL;
    while (n && is_blank(start[n - 1]))
        n--;
    while (n && is_blank(*start)) {
        start++;
        n--;
    }
    l->p = start;
    l->len = n;
    return true;
}

static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Standard base64 (padding optional) into out (at most cap bytes). Returns
 * the decoded length, or -EINVAL (bad character, bad length, too long). */
int auth__b64_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
    while (len && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -EINVAL;
    size_t n = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(s[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return -EINVAL;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return (int)n;
}

/* Reads a whole file of at most AUTH_MAX_FILE bytes (malloc'd into *out). */
static int file_read(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int rc = -errno;
        msg(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    struct buf b = {0};
    int rc = 0;
    for (;;) {
        if (buf_reserve(&b, 4096) != 0) {
            rc = -ENOMEM;
            msg(err, errlen, "%s: out of memory", path);
            goto free_buf;
        }
        size_t n = fread(buf_tail(&b), 1, buf_room(&b), f);
        b.len += n;
        if (b.len > AUTH_MAX_FILE) {
            rc = -EFBIG;
            msg(err, errlen, "%s: larger than %u bytes", path, AUTH_MAX_FILE);
            goto free_buf;
        }
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        rc = -EIO;
        msg(err, errlen, "%s: read error", path);
        goto free_buf;
    }
    *out = (char *)b.data;
    *len = b.len;
    fclose(f);
    return 0;
free_buf:
    buf_free(&b);
    fclose(f);
    return rc;
}

/* Reads path and parses it; a parse error is prefixed with the path. */
static int file_load(const char *path, int (*parse)(const char *, size_t, void *, char *, size_t), void *out,
                     char *err, size_t errlen)
{
    char *text = NULL, why[256];
    size_t len = 0;
    int rc = file_read(path, &text, &len, err, errlen);
    if (rc)
        return rc;
    rc = parse(text, len, out, why, sizeof(why));
    if (rc)
        msg(err, errlen, "%s: %s", path, why);
    free(text);
    return rc;
}

/* --- the whole ------------------------------------------------------------------- */

void auth_init(struct auth *a)
{
    memset(a, 0, sizeof(*a));
    for (int s = 0; s < AUTH_SOURCES; s++) {
        map_init(&a->users[s].by_name);
        map_init(&a->acl[s].by_user);
    }
    a->generation = 1;
    if (RAND_bytes(a->cache_key, sizeof(a->cache_key)) != 1)
        memset(a->cache_key, 0, sizeof(a->cache_key)); /* the cache is then never trusted: see cache_digest */
}

void auth_free(struct auth *a)
{
    for (int s = 0; s < AUTH_SOURCES; s++) {
        auth_users_free(&a->users[s]);
        auth_acl_free(&a->acl[s]);
    }
}

void auth_users_replace(struct auth *a, enum auth_source source, struct auth_users *users)
{
    auth_users_free(&a->users[source]);
    a->users[source] = *users;
    memset(users, 0, sizeof(*users));
    map_init(&users->by_name);
    a->generation++;
}

void auth_acl_replace(struct auth *a, enum auth_source source, struct auth_acl *acl)
{
    auth_acl_free(&a->acl[source]);
    a->acl[source] = *acl;
    memset(acl, 0, sizeof(*acl));
    map_init(&acl->by_user);
    a->generation++;
}

bool auth_users_on(const struct auth *a)
{
    for (int s = 0; s < AUTH_SOURCES; s++)
        if (a->users[s].set)
            return true;
    return false;
}

bool auth_acl_on(const struct auth *a)
{
    for (int s = 0; s < AUTH_SOURCES; s++)
        if (a->acl[s].set)
            return true;
    return false;
}

/* --- passwords ------------------------------------------------------------------ */

void auth_users_free(struct auth_users *u)
{
    size_t pos = 0;
    struct map_slot *slot;
    while ((slot = map_next(&u->by_name, &pos))) {
        struct auth_user *user = slot->value;
        OPENSSL_cleanse(&user->v, sizeof(user->v));
        OPENSSL_cleanse(&user->scram, sizeof(user->scram));
        OPENSSL_cleanse(user->cache, sizeof(user->cache));
        free(user->name);
        free(user);
    }
    map_free(&u->by_name);
    u->set = false;
}

/* Splits s at '$' into at most max fields (views); returns the count or
 * max + 1 when there are more. */
static size_t split_dollar(const char *s, size_t len, const char **f, size_t *fl, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '$')
            continue;
        if (n == max)
            return max + 1;
        f[n] = s + start;
        fl[n] = i - start;
        n++;
        start = i + 1;
    }
    return n;
}

int auth_verifier_parse(const char *s, size_t len, struct auth_verifier *v, char *err, size_t errlen)
{
    struct auth_verifier out = {0};
    const char *f[5];
    size_t fl[5];
    if (!len || s[0] != '$') {
        msg(err, errlen, "not a password hash (a plain-text password? hash the file with mosquitto_passwd -U)");
        return -EINVAL;
    }
    size_t n = split_dollar(s + 1, len - 1, f, fl, 4);
    const char *salt, *hash;
    size_t salt_len, hash_len;
    if (n >= 1 && fl[0] == 1 && f[0][0] == '6') {
        if (n != 3) {
            msg(err, errlen, "a $6$ hash is $6$SALT$HASH");
            return -EINVAL;
        }
        out.kind = AUTH_HASH_SHA512;
        salt = f[1], salt_len = fl[1], hash = f[2], hash_len = fl[2];
    } else if (n >= 1 && fl[0] == 1 && f[0][0] == '7') {
        if (n != 4) {
            msg(err, errlen, "a $7$ hash is $7$ITERATIONS$SALT$HASH");
            return -EINVAL;
        }
        uint64_t it = 0;
        for (size_t i = 0; i < fl[1]; i++) {
            if (f[1][i] < '0' || f[1][i] > '9' || it > AUTH_MAX_ITERATIONS) {
                it = UINT64_MAX;
                break;
            }
            it = it * 10 + (uint64_t)(f[1][i] - '0');
        }
        if (fl[1] == 0 || it < 1 || it > AUTH_MAX_ITERATIONS) {
            msg(err, errlen, "iteration count \"%.*s\" is not in 1..%u", (int)(fl[1] > 20 ? 20 : fl[1]), f[1],
                AUTH_MAX_ITERATIONS);
            return -EINVAL;
        }
        out.kind = AUTH_HASH_PBKDF2_SHA512;
        out.iterations = (uint32_t)it;
        salt = f[2], salt_len = fl[2], hash = f[3], hash_len = fl[3];
    } else {
        msg(err, errlen, "unknown hash type (only $6$ and $7$, as mosquitto_passwd writes)");
        return -EINVAL;
    }
    int sl = auth__b64_decode(salt, salt_len, out.salt, sizeof(out.salt));
    if (sl < 1) {
        msg(err, errlen, "the salt is not base64 of 1..%u bytes", AUTH_MAX_SALT);
        return -EINVAL;
    }
    out.salt_len = (uint8_t)sl;
    if (auth__b64_decode(hash, hash_len, out.hash, sizeof(out.hash)) != (int)AUTH_HASH_LEN) {
        msg(err, errlen, "the hash is not base64 of %u bytes (SHA-512)", AUTH_HASH_LEN);
        return -EINVAL;
    }
    *v = out;
    return 0;
}

int auth_passwd_parse(const char *text, size_t len, struct auth_users *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    map_init(&out->by_name);
    struct line l = {0};
    size_t pos = 0;
    char why[160];
    int rc = 0;
    while (line_next(text, len, &pos, &l)) {
        if (l.has_nul) {
            msg(err, errlen, "line %u: contains a NUL byte", l.no);
            rc = -EINVAL;
            goto fail;
        }
        if (!l.len || l.p[0] == '#')
            continue;
        const char *colon = memchr(l.p, ':', l.len);
        if (!colon) {
            msg(err, errlen, "line %u: not USER:HASH", l.no);
            rc = -EINVAL;
            goto fail;
        }
        size_t ul = (size_t)(colon - l.p);
        while (ul && is_blank(l.p[ul - 1]))
            ul--;
        if (!ul) {
            msg(err, errlen, "line %u: empty user name", l.no);
            rc = -EINVAL;
            goto fail;
        }
        const char *h = colon + 1;
        size_t hl = l.len - (size_t)(h - l.p);
        while (hl && is_blank(*h))
            h++, hl--;
        struct auth_verifier v;
        struct auth_scram sc;
        bool is_scram = hl >= sizeof(SCRAM_PREFIX) - 1 && memcmp(h, SCRAM_PREFIX, sizeof(SCRAM_PREFIX) - 1) == 0;
        if (is_scram && auth_scram_parse(h, hl, &sc, why, sizeof(why)) != 0) {
            msg(err, errlen, "line %u: user %.*s: %s", l.no, (int)(ul > 64 ? 64 : ul), l.p, why);
            rc = -EINVAL;
            goto fail;
        }
        if (is_scram) {
            /* a plain password is checked against the SCRAM keys (scram_verifier_check) */
            memset(&v, 0, sizeof(v));
            v.kind = AUTH_HASH_SCRAM_SHA256;
        } else if (auth_verifier_parse(h, hl, &v, why, sizeof(why)) != 0) {
            msg(err, errlen, "line %u: user %.*s: %s", l.no, (int)(ul > 64 ? 64 : ul), l.p, why);
            rc = -EINVAL;
            goto fail;
        }
        if (map_get(&out->by_name, l.p, ul)) {
            msg(err, errlen, "line %u: user %.*s given twice", l.no, (int)(ul > 64 ? 64 : ul), l.p);
            rc = -EINVAL;
            goto fail;
        }
        struct auth_user *u = calloc(1, sizeof(*u));
        if (!u || !(u->name = str_dup_len(l.p, ul))) {
            free(u);
            rc = -ENOMEM;
            msg(err, errlen, "out of memory");
            goto fail;
        }
        u->v = v;
        if (is_scram) {
            u->has_scram = true;
            u->scram = sc;
        }
        if (map_put(&out->by_name, u->name, ul, u) != 0) {
            free(u->name);
            free(u);
            rc = -ENOMEM;
            msg(err, errlen, "out of memory");
            goto fail;
        }
    }
    out->set = true;
    return 0;
fail:
    auth_users_free(out);
    return rc;
}

static int passwd_parse(const char *text, size_t len, void *out, char *err, size_t errlen)
{
    return auth_passwd_parse(text, len, out, err, errlen);
}

int auth_passwd_load(const char *path, struct auth_users *out, char *err, size_t errlen)
{
    return file_load(path, passwd_parse, out, err, errlen);
}

int auth_scram_parse(const char *s, size_t len, struct auth_scram *out, char *err, size_t errlen)
{
    const char *f[6];
    size_t fl[6];
    struct auth_scram sc = {0};
    size_t n = len && s[0] == '$' ? split_dollar(s + 1, len - 1, f, fl, 5) : 0;
    if (n != 5 || fl[0] != sizeof(SCRAM_PREFIX) - 3 || memcmp(f[0], SCRAM_PREFIX + 1, fl[0]) != 0) {
        msg(err, errlen, "a SCRAM line is $scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY");
        return -EINVAL;
    }
    uint64_t it = 0;
    for (size_t i = 0; i < fl[1] && it <= AUTH_MAX_ITERATIONS; i++)
        it = f[1][i] >= '0' && f[1][i] <= '9' ? it * 10 + (uint64_t)(f[1][i] - '0') : UINT64_MAX;
    if (fl[1] == 0 || it < 1 || it > AUTH_MAX_ITERATIONS) {
        msg(err, errlen, "iteration count \"%.*s\" is not in 1..%u", (int)(fl[1] > 20 ? 20 : fl[1]), f[1],
            AUTH_MAX_ITERATIONS);
        return -EINVAL;
    }
    sc.iterations = (uint32_t)it;
    int sl = auth__b64_decode(f[2], fl[2], sc.salt, sizeof(sc.salt));
    if (sl < 1) {
        msg(err, errlen, "the salt is not base64 of 1..%u bytes", AUTH_MAX_SALT);
        return -EINVAL;
    }
    sc.salt_len = (uint8_t)sl;
    if (auth__b64_decode(f[3], fl[3], sc.stored_key, sizeof(sc.stored_key)) != (int)AUTH_SCRAM_KEY_LEN ||
        auth__b64_decode(f[4], fl[4], sc.server_key, sizeof(sc.server_key)) != (int)AUTH_SCRAM_KEY_LEN) {
        msg(err, errlen, "StoredKey and ServerKey are base64 of %u bytes (SHA-256)", AUTH_SCRAM_KEY_LEN);
        return -EINVAL;
    }
    *out = sc;
    return 0;
}

/* A plain password against SCRAM credentials: the StoredKey it derives. */
static int scram_verifier_check(const struct auth_scram *sc, const uint8_t *pass, size_t pass_len)
{
    struct auth_scram d;
    int rc = auth_scram_derive(pass, pass_len, sc->salt, sc->salt_len, sc->iterations, &d);
    if (rc == -EINVAL)
        return AUTH_EPASSWORD;
    if (rc)
        return rc;
    int same = CRYPTO_memcmp(d.stored_key, sc->stored_key, sizeof(d.stored_key)) == 0;
    OPENSSL_cleanse(&d, sizeof(d));
    return same ? 0 : AUTH_EPASSWORD;
}

int auth_verifier_check(const struct auth_verifier *v, const uint8_t *pass, size_t pass_len)
{
    uint8_t out[AUTH_HASH_LEN];
    static const uint8_t none[1] = {0};
    if (!pass)
        pass = none;
    if (pass_len > INT32_MAX || v->kind == AUTH_HASH_SCRAM_SHA256)
        return AUTH_EPASSWORD; /* a SCRAM user's verifier holds no hash: auth_password_check checks his keys */
    if (v->kind == AUTH_HASH_PBKDF2_SHA512) {
        if (PKCS5_PBKDF2_HMAC((const char *)pass, (int)pass_len, v->salt, v->salt_len, (int)v->iterations,
                              EVP_sha512(), (int)sizeof(out), out) != 1)
            return -ENOMEM;
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned n = 0;
        int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
                 EVP_DigestUpdate(ctx, pass, pass_len) == 1 && EVP_DigestUpdate(ctx, v->salt, v->salt_len) == 1 &&
                 EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == sizeof(out);
        EVP_MD_CTX_free(ctx);
        if (!ok)
            return -ENOMEM;
    }
    int same = CRYPTO_memcmp(out, v->hash, sizeof(out)) == 0;
    OPENSSL_cleanse(out, sizeof(out));
    return same ? 0 : AUTH_EPASSWORD;
}

/* HMAC-SHA256(cache_key, pass) into out; false when it cannot be computed
 * or the key is not random (then nothing is cached). */
static bool cache_digest(const struct auth *a, const uint8_t *pass, size_t pass_len, uint8_t out[32])
{
    static const uint8_t zero[32];
    unsigned n = 0;
    if (CRYPTO_memcmp(a->cache_key, zero, sizeof(zero)) == 0)
        return false;
    return HMAC(EVP_sha256(), a->cache_key, (int)sizeof(a->cache_key), pass, pass_len, out, &n) && n == 32;
}

int auth_password_check(struct auth *a, const char *user, size_t user_len, const uint8_t *pass,
                        size_t pass_len)
{
    struct auth_user *u = NULL;
    for (int s = 0; s < AUTH_SOURCES && !u; s++)
        if (a->users[s].set && user)
            u = map_get(&a->users[s].by_name, user, user_len);
    if (!u) {
        /* the same work as a known user's (mosquitto_passwd's default), so
         * that the time taken does not tell which names exist */
        static const struct auth_verifier dummy = {.kind = AUTH_HASH_PBKDF2_SHA512, .iterations = 101,
                                                   .salt_len = 12};
        int rc = auth_verifier_check(&dummy, pass, pass_len);
        return rc == -ENOMEM ? rc : AUTH_EUNKNOWN;
    }
    if (!pass)
        return AUTH_EPASSWORD;
    uint8_t d[32];
    bool have = cache_digest(a, pass, pass_len, d);
    if (have && u->cached && CRYPTO_memcmp(d, u->cache, sizeof(d)) == 0)
        return 0;
    int rc = u->v.kind == AUTH_HASH_SCRAM_SHA256 ? scram_verifier_check(&u->scram, pass, pass_len)
                                                 : auth_verifier_check(&u->v, pass, pass_len);
    if (rc == 0 && have) {
        memcpy(u->cache, d, sizeof(d));
        u->cached = true;
    }
    OPENSSL_cleanse(d, sizeof(d));
    return rc;
}

/* --- SCRAM-SHA-256 credentials --------------------------------------------------- */

int auth_scram_derive(const uint8_t *password, size_t len, const uint8_t *salt, size_t salt_len,
                      uint32_t iterations, struct auth_scram *out)
{
    if (iterations == 0 || iterations > AUTH_MAX_ITERATIONS || salt_len > AUTH_MAX_SALT || len > INT32_MAX
        || (salt && salt_len == 0))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->iterations = iterations;
    if (salt) {
        memcpy(out->salt, salt, salt_len);
        out->salt_len = (uint8_t)salt_len;
    } else {
        if (RAND_bytes(out->salt, AUTH_SCRAM_SALT_LEN) != 1)
            return -ENOMEM;
        out->salt_len = AUTH_SCRAM_SALT_LEN;
    }
    uint8_t salted[AUTH_SCRAM_KEY_LEN], client_key[AUTH_SCRAM_KEY_LEN];
    unsigned n1 = 0, n2 = 0;
    static const char ck[] = "Client Key", sk[] = "Server Key";
    bool ok = PKCS5_PBKDF2_HMAC((const char *)password, (int)len, out->salt, out->salt_len, (int)iterations,
                                EVP_sha256(), (int)sizeof(salted), salted)
              == 1
              && HMAC(EVP_sha256(), salted, (int)sizeof(salted), (const uint8_t *)ck, sizeof(ck) - 1, client_key,
                      &n1)
              && HMAC(EVP_sha256(), salted, (int)sizeof(salted), (const uint8_t *)sk, sizeof(sk) - 1,
                      out->server_key, &n2)
              && EVP_Digest(client_key, sizeof(client_key), out->stored_key, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    return ok ? 0 : -ENOMEM;
}

bool auth_scram_find(const struct auth *a, const char *user, size_t user_len, struct auth_scram *out)
{
    for (int s = 0; s < AUTH_SOURCES && user; s++) {
        const struct auth_user *u = a->users[s].set ? map_get(&a->users[s].by_name, user, user_len) : NULL;
        if (u) {
            if (!u->has_scram)
                return false;
            *out = u->scram;
            return true;
        }
    }
    return false;
}

/* --- topic rules ------------------------------------------------------------------ */

static void rules_free(struct auth_rules *r)
{
    for (uint32_t i = 0; i < r->count; i++)
        free(r->v[i].topic);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

void auth_acl_free(struct auth_acl *acl)
{
    size_t pos = 0;
    struct map_slot *slot;
    while ((slot = map_next(&acl->by_user, &pos))) {
        struct auth_acl_user *u = slot->value;
        rules_free(&u->rules);
        free(u->name);
        free(u);
    }
    map_free(&acl->by_user);
    rules_free(&acl->anon);
    rules_free(&acl->patterns);
    acl->set = false;
    acl->patterns_use_c = acl->patterns_use_u = false;
}

/* Whether the topic has a whole level equal to the two bytes "%x". */
static bool has_level(const char *t, size_t len, char x)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (t[i] == '%' && t[i + 1] == x && (i == 0 || t[i - 1] == '/') && (i + 2 == len || t[i + 2] == '/'))
            return true;
    return false;
}

/* Adds a rule; deny rules go after the deny rules already there (before
 * every grant), grants at the end. r->topic is transferred. */
static int rules_add(struct auth_rules *rs, const struct auth_rule *r)
{
    if (rs->count == rs->cap) {
        uint32_t cap = rs->cap ? rs->cap * 2 : 4;
        struct auth_rule *v = realloc(rs->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        rs->v = v;
        rs->cap = cap;
    }
    uint32_t at = rs->count;
    if (r->access == AUTH_DENY) {
        at = 0;
        while (at < rs->count && rs->v[at].access == AUTH_DENY)
            at++;
        memmove(&rs->v[at + 1], &rs->v[at], (rs->count - at) * sizeof(*r));
    }
    rs->v[at] = *r;
    rs->count++;
    return 0;
}

/* The `topic` or `pattern` line's rest (after the keyword): [ACCESS] TOPIC. */
static int parse_rule(const char *p, size_t len, bool pattern, struct auth_rule *r, char *err, size_t errlen)
{
    while (len && is_blank(*p))
        p++, len--;
    if (!len) {
        msg(err, errlen, "missing topic");
        return -EINVAL;
    }
    size_t w = 0;
    while (w < len && !is_blank(p[w]))
        w++;
    const char *topic = p;
    size_t tl = len;
    int access = AUTH_READ | AUTH_WRITE;
    if (w < len) {
        /* two words or more: the first is the access, the rest the topic
         * (which may hold spaces) */
        static const struct {
            const char *word;
            int access;
        } words[] = {{"read", AUTH_READ}, {"write", AUTH_WRITE}, {"readwrite", AUTH_READ | AUTH_WRITE},
                     {"deny", AUTH_DENY}};
        access = -1;
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
            if (strlen(words[i].word) == w && memcmp(words[i].word, p, w) == 0)
                access = words[i].access;
        if (access < 0) {
            msg(err, errlen, "access \"%.*s\" is not one of read, write, readwrite, deny", (int)(w > 32 ? 32 : w), p);
            return -EINVAL;
        }
        topic = p + w;
        tl = len - w;
        while (tl && is_blank(*topic))
            topic++, tl--;
    }
    if (tl > 65535 || proto_topic_filter_check((const uint8_t *)topic, tl) != 0) {
        msg(err, errlen, "\"%.*s\" is not a valid topic filter", (int)(tl > 64 ? 64 : tl), topic);
        return -EINVAL;
    }
    memset(r, 0, sizeof(*r));
    if (!(r->topic = str_dup_len(topic, tl))) {
        msg(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->len = (uint32_t)tl;
    r->access = (uint8_t)access;
    r->pattern = pattern;
    r->uses_c = pattern && has_level(topic, tl, 'c');
    r->uses_u = pattern && has_level(topic, tl, 'u');
    return 0;
}

/* The rule list of user name (created when new). */
static struct auth_rules *user_rules(struct auth_acl *acl, const char *name, size_t len)
{
    struct auth_acl_user *u = map_get(&acl->by_user, name, len);
    if (u)
        return &u->rules;
    if (!(u = calloc(1, sizeof(*u))) || !(u->name = str_dup_len(name, len))) {
        free(u);
        return NULL;
    }
    if (map_put(&acl->by_user, u->name, len, u) != 0) {
        free(u->name);
        free(u);
        return NULL;
    }
    return &u->rules;
}

int auth_acl_parse(const char *text, size_t len, struct auth_acl *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    map_init(&out->by_user);
    struct line l = {0};
    size_t pos = 0;
    char why[160];
    int rc = 0;
    struct auth_rules *current = &out->anon; /* topic lines before any user line */
    while (line_next(text, len, &pos, &l)) {
        if (l.has_nul) {
            msg(err, errlen, "line %u: contains a NUL byte", l.no);
            rc = -EINVAL;
            goto fail;
        }
        if (!l.len || l.p[0] == '#')
            continue;
        size_t w = 0;
        while (w < l.len && !is_blank(l.p[w]))
            w++;
        const char *rest = l.p + w;
        size_t rl = l.len - w;
        while (rl && is_blank(*rest))
            rest++, rl--;
        bool topic = w == 5 && memcmp(l.p, "topic", 5) == 0;
        bool pattern = w == 7 && memcmp(l.p, "pattern", 7) == 0;
        if (w == 4 && memcmp(l.p, "user", 4) == 0) {
            if (!rl) {
                msg(err, errlen, "line %u: user without a name", l.no);
                rc = -EINVAL;
                goto fail;
            }
            if (!(current = user_rules(out, rest, rl))) {
                msg(err, errlen, "out of memory");
                rc = -ENOMEM;
                goto fail;
            }
        } else if (topic || pattern) {
            struct auth_rule r;
            rc = parse_rule(rest, rl, pattern, &r, why, sizeof(why));
            if (rc) {
                msg(err, errlen, "line %u: %s", l.no, why);
                goto fail;
            }
            struct auth_rules *to = pattern ? &out->patterns : current;
            if (rules_add(to, &r) != 0) {
                free(r.topic);
                msg(err, errlen, "out of memory");
                rc = -ENOMEM;
                goto fail;
            }
            out->patterns_use_c |= r.uses_c;
            out->patterns_use_u |= r.uses_u;
        } else {
            msg(err, errlen, "line %u: \"%.*s\" is not one of user, topic, pattern", l.no, (int)(w > 32 ? 32 : w),
                l.p);
            rc = -EINVAL;
            goto fail;
        }
    }
    out->set = true;
    return 0;
fail:
    auth_acl_free(out);
    return rc;
}

static int acl_parse(const char *text, size_t len, void *out, char *err, size_t errlen)
{
    return auth_acl_parse(text, len, out, err, errlen);
}

int auth_acl_load(const char *path, struct auth_acl *out, char *err, size_t errlen)
{
    return file_load(path, acl_parse, out, err, errlen);
}

void auth_who_set(struct auth_who *who, const char *user, size_t user_len, const char *client_id, size_t id_len)
{
    memset(who, 0, sizeof(*who));
    who->user = user;
    who->user_len = user ? user_len : 0;
    who->client_id = client_id ? client_id : "";
    who->id_len = client_id ? id_len : 0;
}

void auth_who_free(struct auth_who *who)
{
    free(who->decisions);
    who->decisions = NULL;
    who->decided = 0;
}

static bool dangerous(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] == '+' || s[i] == '#' || s[i] == '/')
            return true;
    return false;
}

static void who_bind(const struct auth *a, struct auth_who *who)
{
    if (who->generation == a->generation)
        return;
    for (int s = 0; s < AUTH_SOURCES; s++) {
        const struct auth_acl *acl = &a->acl[s];
        if (!who->user) {
            who->own[s] = &acl->anon;
        } else {
            const struct auth_acl_user *u = map_get(&acl->by_user, who->user, who->user_len);
            who->own[s] = u ? &u->rules : NULL;
        }
    }
    who->bad_id = dangerous(who->client_id, who->id_len);
    who->bad_user = who->user && dangerous(who->user, who->user_len);
    who->generation = a->generation;
    who->decided = 0;
    who->next = 0;
}

/* Whether rule r matches topic t (tl bytes) for who: level by level, '+' any
 * one level, '#' the rest and the parent level ("a/#" matches "a"), a
 * pattern's whole-level %c / %u the client id / username. */
static bool rule_match(const struct auth_rule *r, const char *t, size_t tl, const struct auth_who *who)
{
    const char *rt = r->topic;
    size_t rl = r->len, i = 0, j = 0;
    if (tl && t[0] == '$' && (!rl || rt[0] != '$'))
        return false;
    bool topic_done = false;
    for (;;) {
        size_t ie = i;
        while (ie < rl && rt[ie] != '/')
            ie++;
        if (ie - i == 1 && rt[i] == '#')
            return true;
        if (topic_done)
            return false;
        size_t je = j;
        while (je < tl && t[je] != '/')
            je++;
        if (!(ie - i == 1 && rt[i] == '+')) {
            const char *want = rt + i;
            size_t wl = ie - i;
            if (r->pattern && wl == 2 && want[0] == '%' && want[1] == 'c') {
                want = who->client_id;
                wl = who->id_len;
            } else if (r->pattern && wl == 2 && want[0] == '%' && want[1] == 'u') {
                want = who->user;
                wl = who->user_len;
            }
            if (wl != je - j || (wl && memcmp(want, t + j, wl) != 0))
                return false;
        }
        if (ie == rl)
            return je == tl;
        i = ie + 1;
        if (je == tl)
            topic_done = true;
        else
            j = je + 1;
    }
}

static bool rule_applies(const struct auth_rule *r, const struct auth_who *who)
{
    return !(r->uses_u && !who->user);
}

/* Some rule of rs with access `deny` (denies true) or granting access
 * (denies false) matches. */
static bool rules_hit(const struct auth_rules *rs, const struct auth_who *who, const char *t, size_t tl, int access,
                      bool denies)
{
    if (!rs)
        return false;
    for (uint32_t i = 0; i < rs->count; i++) {
        const struct auth_rule *r = &rs->v[i];
        if (denies && r->access != AUTH_DENY)
            break; /* every deny rule comes first (rules_add) */
        if ((r->access == AUTH_DENY) != denies)
            continue;
        if (!denies && !(r->access & access))
            continue;
        if (rule_applies(r, who) && rule_match(r, t, tl, who))
            return true;
    }
    return false;
}

/* The rules' answer, without the remembered decisions. */
static bool allowed_by_rules(const struct auth *a, const struct auth_who *who, const char *topic, size_t len,
                             int access)
{
    for (int s = 0; s < AUTH_SOURCES; s++) {
        const struct auth_acl *acl = &a->acl[s];
        if (!acl->set)
            continue;
        if ((acl->patterns_use_c && who->bad_id) || (acl->patterns_use_u && who->bad_user))
            return false;
        if (rules_hit(who->own[s], who, topic, len, access, true) ||
            rules_hit(&acl->patterns, who, topic, len, access, true))
            return false;
    }
    for (int s = 0; s < AUTH_SOURCES; s++) {
        const struct auth_acl *acl = &a->acl[s];
        if (acl->set && (rules_hit(who->own[s], who, topic, len, access, false) ||
                         rules_hit(&acl->patterns, who, topic, len, access, false)))
            return true;
    }
    return false;
}

bool auth_allowed(const struct auth *a, struct auth_who *who, const char *topic, size_t len, int access)
{
    if (!auth_acl_on(a))
        return true;
    who_bind(a, who);
    /* out of memory: no decision is remembered, each check walks the rules */
    bool small = len <= AUTH_WHO_CACHE_TOPIC &&
                 (who->decisions || (who->decisions = calloc(AUTH_WHO_CACHE, sizeof(*who->decisions))));
    for (uint8_t i = 0; small && i < who->decided; i++) {
        const struct auth_who_decision *d = &who->decisions[i];
        if (d->len == len && d->access == access && memcmp(d->topic, topic, len) == 0)
            return d->allowed;
    }
    bool allowed = allowed_by_rules(a, who, topic, len, access);
    if (small) {
        struct auth_who_decision *d = &who->decisions[who->next];
        d->len = (uint8_t)len;
        d->access = (uint8_t)access;
        d->allowed = allowed;
        memcpy(d->topic, topic, len);
        who->next = (uint8_t)((who->next + 1) % AUTH_WHO_CACHE);
        if (who->decided < AUTH_WHO_CACHE)
            who->decided++;
    }
    return allowed;
}

bool auth_subscribe_allowed(const struct auth *a, struct auth_who *who, const char *filter, size_t len)
{
    struct proto_str group, f = {(const uint8_t *)filter, (uint32_t)len};
    if (len <= UINT32_MAX && proto_shared_split(f, &group, &f) == 1) {
        filter = (const char *)f.p;
        len = f.len;
    }
    return auth_allowed(a, who, filter, len, AUTH_READ);
}

/* --- failed attempts ---------------------------------------------------------------- */

#define THROTTLE_PROBE 8u

int auth_throttle_init(struct auth_throttle *t)
{
    t->slots = calloc(AUTH_THROTTLE_SLOTS, sizeof(*t->slots));
    return t->slots ? 0 : -ENOMEM;
}

void auth_throttle_free(struct auth_throttle *t)
{
    free(t->slots);
    t->slots = NULL;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

uint32_t auth_throttle_fail(struct auth_throttle *t, const char *addr, uint64_t now)
{
    if (!t->slots)
        return 0;
    char key[sizeof(t->slots[0].addr)];
    snprintf(key, sizeof(key), "%s", addr);
    uint64_t h = fnv1a(key);
    struct auth_throttle_slot *hit = NULL, *victim = NULL;
    for (uint32_t k = 0; k < THROTTLE_PROBE && !hit; k++) {
        struct auth_throttle_slot *s = &t->slots[(h + k) % AUTH_THROTTLE_SLOTS];
        if (s->hash == h && strcmp(s->addr, key) == 0)
            hit = s;
        else if (!victim || !s->hash || (victim->hash && s->last_ms < victim->last_ms))
            victim = s; /* a free slot, else the least recently failed */
    }
    if (!hit) {
        hit = victim;
        memset(hit, 0, sizeof(*hit));
        hit->hash = h;
        hit->first_ms = now;
        memcpy(hit->addr, key, sizeof(key));
    }
    if (now - hit->first_ms >= AUTH_THROTTLE_WINDOW_MS) {
        hit->first_ms = now;
        hit->count = 0;
    }
    hit->count++;
    hit->last_ms = now;
    return hit->count > AUTH_THROTTLE_FREE ? AUTH_THROTTLE_DELAY_MS : 0;
}
