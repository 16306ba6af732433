/* scram: the server side of SCRAM-SHA-256 (see scram.h), on OpenSSL's HMAC
 * and SHA-256. Every read of a client message is bounds-checked against its
 * length; nothing is allocated. */
#include "scram.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "proto.h"

/* One "k=value" attribute of a message: [p, p + len) is the value. */
struct attr {
    char key;
    const char *p;
    size_t len;
};

/* The next comma-separated field of [msg, msg + len) from *pos: false at the end. */
static bool field_next(const char *msg, size_t len, size_t *pos, const char **f, size_t *fl)
{
    if (*pos > len)
        return false;
    const char *start = msg + *pos;
    const char *comma = memchr(start, ',', len - *pos);
    *f = start;
    *fl = comma ? (size_t)(comma - start) : len - *pos;
    *pos += *fl + 1;
    return true;
}

/* A field as an attribute: one letter, '=', the value. */
static bool attr_of(const char *f, size_t fl, struct attr *a)
{
    if (fl < 2 || f[1] != '=' || !((f[0] >= 'a' && f[0] <= 'z') || (f[0] >= 'A' && f[0] <= 'Z')))
        return false;
    a->key = f[0];
    a->p = f + 2;
    a->len = fl - 2;
    return true;
}

/* printable = %x21-2B / %x2D-7E (RFC 5802, section 7) */
static bool nonce_ok(const char *p, size_t len)
{
    if (len == 0 || len > SCRAM_MAX_NONCE)
        return false;
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x21 || p[i] > 0x7E || p[i] == ',')
            return false;
    return true;
}

/* saslname: "=2C" for ',', "=3D" for '=', any other '=' refused; UTF-8. */
static int saslname_decode(const char *p, size_t len, char *out, size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '=') {
            out[n++] = p[i];
            continue;
        }
        if (len - i < 3)
            return SCRAM_EMALFORMED;
        if (p[i + 1] == '2' && p[i + 2] == 'C')
            out[n++] = ',';
        else if (p[i + 1] == '3' && p[i + 2] == 'D')
            out[n++] = '=';
        else
            return SCRAM_EMALFORMED;
        i += 2;
    }
    out[n] = '\0';
    if (n == 0 || proto_utf8_check((const uint8_t *)out, n) != 0)
        return SCRAM_EMALFORMED;
    *out_len = n;
    return 0;
}

/* A client message may be taken at this step: 0 or the error. */
static int message_check(const struct scram_server *s, int step, const char *msg, size_t len)
{
    if (s->step != step)
        return SCRAM_ESTATE;
    if (!msg || len == 0 || len > SCRAM_MAX_MESSAGE || memchr(msg, '\0', len))
        return SCRAM_EMALFORMED;
    return 0;
}

int scram_client_first(struct scram_server *s, const uint8_t *msg_in, size_t len)
{
    const char *msg = (const char *)msg_in;
    int rc = message_check(s, 0, msg, len);
    if (rc)
        return rc;
    /* gs2-header: cbind flag "," [authzid] "," */
    size_t pos = 0;
    const char *f;
    size_t fl;
    if (!field_next(msg, len, &pos, &f, &fl) || fl == 0)
        return SCRAM_EMALFORMED;
    bool flag_ok = (fl == 1 && (f[0] == 'n' || f[0] == 'y')) || (fl > 2 && f[0] == 'p' && f[1] == '=');
    if (!flag_ok)
        return SCRAM_EMALFORMED;
    bool binding = !(fl == 1 && f[0] == 'n');
    if (!field_next(msg, len, &pos, &f, &fl) || pos > len)
        return SCRAM_EMALFORMED;
    if (fl != 0 && !(fl > 2 && f[0] == 'a' && f[1] == '='))
        return SCRAM_EMALFORMED;
    if (binding || fl != 0)
        return SCRAM_EBINDING;
    size_t bare_at = pos;
    /* client-first-bare: n=USER,r=NONCE[,extensions]; "m=" is refused */
    struct attr a;
    if (!field_next(msg, len, &pos, &f, &fl) || !attr_of(f, fl, &a) || a.key != 'n')
        return SCRAM_EMALFORMED;
    rc = saslname_decode(a.p, a.len, s->user, &s->user_len);
    if (rc)
        return rc;
    struct attr r;
    if (!field_next(msg, len, &pos, &f, &fl) || !attr_of(f, fl, &r) || r.key != 'r' || !nonce_ok(r.p, r.len))
        return SCRAM_EMALFORMED;
    while (field_next(msg, len, &pos, &f, &fl))
        if (!attr_of(f, fl, &a))
            return SCRAM_EMALFORMED;
    s->bare_len = len - bare_at;
    memcpy(s->auth_msg, msg + bare_at, s->bare_len);
    s->cnonce_at = (size_t)(r.p - (msg + bare_at));
    s->cnonce_len = r.len;
    s->am_len = s->bare_len;
    s->step = 1;
    return 0;
}

/* Appends [p, p + n) to the AuthMessage; false when it would not fit. */
static bool am_put(struct scram_server *s, const void *p, size_t n)
{
    if (n > sizeof(s->auth_msg) - s->am_len)
        return false;
    memcpy(s->auth_msg + s->am_len, p, n);
    s->am_len += n;
    return true;
}

int scram_server_first(struct scram_server *s, const struct auth_scram *cred, const char *snonce,
                       size_t snonce_len)
{
    if (s->step != 1)
        return SCRAM_ESTATE;
    if (!nonce_ok(snonce, snonce_len) || cred->salt_len == 0 || cred->salt_len > AUTH_MAX_SALT)
        return SCRAM_EMALFORMED;
    s->cred = *cred;
    char salt[((AUTH_MAX_SALT + 2) / 3) * 4 + 1];
    EVP_EncodeBlock((unsigned char *)salt, cred->salt, cred->salt_len);
    char it[16];
    int il = snprintf(it, sizeof(it), "%u", cred->iterations);
    size_t start = s->am_len;
    const char *cnonce = s->auth_msg + s->cnonce_at;
    bool ok = am_put(s, ",r=", 3) && am_put(s, cnonce, s->cnonce_len) && am_put(s, snonce, snonce_len) &&
              am_put(s, ",s=", 3) && am_put(s, salt, strlen(salt)) && am_put(s, ",i=", 3) &&
              am_put(s, it, (size_t)il);
    if (!ok || s->am_len - start - 1 > sizeof(s->out))
        return SCRAM_EMALFORMED; /* cannot happen within the bounds above */
    s->out_len = s->am_len - start - 1;
    memcpy(s->out, s->auth_msg + start + 1, s->out_len);
    s->nonce_at = start + 3;
    s->nonce_len = s->cnonce_len + snonce_len;
    s->step = 2;
    return 0;
}

int scram_client_final(struct scram_server *s, const uint8_t *msg_in, size_t len)
{
    const char *msg = (const char *)msg_in;
    int rc = message_check(s, 2, msg, len);
    if (rc)
        return rc;
    size_t pos = 0;
    const char *f;
    size_t fl;
    struct attr c, r, p;
    /* c=biws: base64 of the gs2 header "n,," */
    if (!field_next(msg, len, &pos, &f, &fl) || !attr_of(f, fl, &c) || c.key != 'c')
        return SCRAM_EMALFORMED;
    if (c.len != 4 || memcmp(c.p, "biws", 4) != 0)
        return SCRAM_EBINDING;
    if (!field_next(msg, len, &pos, &f, &fl) || !attr_of(f, fl, &r) || r.key != 'r')
        return SCRAM_EMALFORMED;
    /* extensions, then the proof, last */
    size_t proof_at = 0;
    bool have_proof = false;
    while (field_next(msg, len, &pos, &f, &fl)) {
        if (have_proof || !attr_of(f, fl, &p))
            return SCRAM_EMALFORMED;
        if (p.key == 'p') {
            have_proof = true;
            proof_at = (size_t)(f - msg);
        }
    }
    if (!have_proof)
        return SCRAM_EMALFORMED;
    uint8_t proof[AUTH_SCRAM_KEY_LEN + 3];
    if (p.len != 44 || auth__b64_decode(p.p, p.len, proof, sizeof(proof)) != (int)AUTH_SCRAM_KEY_LEN)
        return SCRAM_EMALFORMED;
    if (r.len != s->nonce_len || memcmp(r.p, s->auth_msg + s->nonce_at, r.len) != 0)
        return SCRAM_ENONCE;
    if (!am_put(s, ",", 1) || !am_put(s, msg, proof_at - 1))
        return SCRAM_EMALFORMED;

    uint8_t sig[AUTH_SCRAM_KEY_LEN], key[AUTH_SCRAM_KEY_LEN], stored[AUTH_SCRAM_KEY_LEN];
    unsigned n1 = 0, n2 = 0;
    bool ok = HMAC(EVP_sha256(), s->cred.stored_key, (int)AUTH_SCRAM_KEY_LEN, (const uint8_t *)s->auth_msg,
                   s->am_len, sig, &n1) &&
              n1 == AUTH_SCRAM_KEY_LEN;
    for (size_t i = 0; i < AUTH_SCRAM_KEY_LEN; i++)
        key[i] = proof[i] ^ sig[i];
    ok = ok && EVP_Digest(key, sizeof(key), stored, NULL, EVP_sha256(), NULL) == 1;
    int same = CRYPTO_memcmp(stored, s->cred.stored_key, sizeof(stored)) == 0;
    /* the server signature is computed whatever the outcome: the same work either way */
    ok = ok && HMAC(EVP_sha256(), s->cred.server_key, (int)AUTH_SCRAM_KEY_LEN, (const uint8_t *)s->auth_msg,
                    s->am_len, sig, &n2) &&
         n2 == AUTH_SCRAM_KEY_LEN;
    OPENSSL_cleanse(key, sizeof(key));
    s->step = 3;
    if (!ok)
        return -ENOMEM;
    if (!same)
        return SCRAM_EPROOF;
    memcpy(s->out, "v=", 2);
    s->out_len = 2 + (size_t)EVP_EncodeBlock((unsigned char *)s->out + 2, sig, sizeof(sig));
    return 0;
}

int scram_fake(const uint8_t key[32], const char *user, size_t user_len, struct auth_scram *out)
{
    /* HMAC(key, label || user) for each part: stable for a name, unrelated
     * between names, and nothing an observer can tell from a real salt */
    static const char *const labels[3] = {"scram salt", "scram stored", "scram server"};
    uint8_t *dst[3];
    uint8_t salt[32];
    dst[0] = salt;
    dst[1] = out->stored_key;
    dst[2] = out->server_key;
    if (user_len > SCRAM_MAX_MESSAGE)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    uint8_t in[16 + SCRAM_MAX_MESSAGE];
    for (int i = 0; i < 3; i++) {
        size_t ll = strlen(labels[i]) + 1;
        memcpy(in, labels[i], ll);
        memcpy(in + ll, user, user_len);
        unsigned n = 0;
        if (!HMAC(EVP_sha256(), key, 32, in, ll + user_len, dst[i], &n) || n != 32)
            return -ENOMEM;
    }
    out->iterations = AUTH_SCRAM_ITERATIONS;
    out->salt_len = AUTH_SCRAM_SALT_LEN;
    memcpy(out->salt, salt, AUTH_SCRAM_SALT_LEN);
    return 0;
}

const char *scram_error_name(int err)
{
    switch (err) {
    case SCRAM_EMALFORMED:
        return "malformed SCRAM message";
    case SCRAM_EBINDING:
        return "channel binding or authzid asked for (only \"n,,\")";
    case SCRAM_ENONCE:
        return "nonce mismatch";
    case SCRAM_EPROOF:
        return "wrong proof";
    case SCRAM_ESTATE:
        return "SCRAM step out of order";
    case -ENOMEM:
        return "out of memory";
    default:
        return "SCRAM error";
    }
}
