/* enhanced: MQTT 5 enhanced authentication, SCRAM-SHA-256 (scram.h) over
 * CONNECT, AUTH and CONNACK, and re-authentication of a connected client.
 *
 * Happy path: CONNECT carries Authentication Method "SCRAM-SHA-256" and the
 * client-first message; the CONNECT is kept (re-encoded), the connection
 * enters CONN_AUTH and gets AUTH 0x18 with the server-first message. The
 * client answers AUTH 0x18 with client-final; when its proof holds, the kept
 * CONNECT goes on as any other (broker__connect_continue: ACL, client id,
 * session claim) with the SCRAM user as its user name, and the CONNACK 0x00
 * carries the server-final message. Re-authentication: a connected client
 * that authenticated so sends AUTH 0x19 with client-first, gets AUTH 0x18,
 * answers AUTH 0x18, and gets AUTH 0x00 with server-final; meanwhile the
 * connection works as before.
 * Failure modes: another method 0x8C; Authentication Data without a method
 * 0x82; a gs2 header other than "n,," 0x8C; a malformed message, an unknown
 * user, a user without SCRAM credentials or a wrong proof 0x86 (counted and
 * throttled as a wrong password; an unknown user gets a fake salt derived
 * from its name, so the exchange looks the same); any other packet before
 * the CONNACK 0x82; the exchange not done within connect_timeout: closed.
 * During re-authentication the refusals are DISCONNECTs: 0x82 for a wrong
 * method, an AUTH out of turn or a connection that did not use SCRAM, 0x86
 * for a failed proof, another user, or an exchange older than
 * connect_timeout. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "internal.h"
#include "scram.h"
#include "str.h"

#define SNONCE_RAW 18u   /* random bytes of the server nonce: 24 base64 characters */

struct enhanced {
    struct scram_server s;
    struct buf connect;       /* the CONNECT, re-encoded (initial exchange only) */
    struct claim *cl;         /* transferred from connect.c (initial exchange only) */
    uint64_t started_ms;
    bool done;                /* s.out holds the server-final for the CONNACK */
};

static bool is_scram(struct proto_str m)
{
    return m.len == sizeof(SCRAM_MECHANISM) - 1 && memcmp(m.p, SCRAM_MECHANISM, m.len) == 0;
}

uint8_t broker__enhanced_method_refusal(const struct proto_connect *cp)
{
    if (cp->version != PROTO_V5)
        return 0; /* v3 has no properties */
    if (!cp->props.auth_method.p)
        return cp->props.auth_data.p ? PROTO_RC_PROTOCOL_ERROR : 0; /* [MQTT-3.1.2.11.10] */
    return is_scram(cp->props.auth_method) ? 0 : PROTO_RC_BAD_AUTH_METHOD;
}

void broker__enhanced_free(struct conn *c)
{
    struct enhanced *e = c->auth;
    if (!e)
        return;
    c->auth = NULL;
    free(e->cl); /* still ours: the exchange did not reach the claim */
    buf_free(&e->connect);
    OPENSSL_cleanse(&e->s, sizeof(e->s));
    free(e);
}

/* The key fake salts are derived from: the same on every node of a cluster
 * with a cluster_secret (an unknown name gets the same salt wherever it
 * asks), else random per process. */
static const uint8_t *fake_key(struct broker *b)
{
    static const uint8_t zero[32];
    uint8_t *k = b->access.scram_fake_key;
    if (CRYPTO_memcmp(k, zero, sizeof(zero)) != 0)
        return k;
    if (b->cfg.cluster_secret[0]) {
        static const char label[] = "starling scram fake salt";
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned n = 0;
        bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                  EVP_DigestUpdate(ctx, label, sizeof(label)) == 1 &&
                  EVP_DigestUpdate(ctx, b->cfg.cluster_secret, strlen(b->cfg.cluster_secret)) == 1 &&
                  EVP_DigestFinal_ex(ctx, k, &n) == 1;
        EVP_MD_CTX_free(ctx);
        if (ok)
            return k;
    }
    if (RAND_bytes(k, 32) != 1)
        memcpy(k, b->access.tables.cache_key, 32);
    return k;
}

/* Sends AUTH with the method and data (borrowed). */
static void send_auth(struct conn *c, uint8_t reason, const char *data, size_t len)
{
    struct proto_packet r = {.type = PROTO_AUTH};
    r.u.disconnect.reason = reason;
    r.u.disconnect.props.auth_method = proto_cstr(SCRAM_MECHANISM);
    r.u.disconnect.props.auth_data = (struct proto_str){(const uint8_t *)data, len};
    broker__conn_send(c, &r);
}

/* Reads client-first and makes server-first into e->s.out: 0, or a
 * scram_error / -ENOMEM. The user's credentials, or fake ones for a user
 * without (the same steps either way). */
static int exchange_begin(struct conn *c, struct enhanced *e, struct proto_str data)
{
    struct broker *b = c->b;
    int rc = scram_client_first(&e->s, data.p, data.len);
    if (rc)
        return rc;
    /* the fake credentials are derived for every user, known or not: the
     * same work either way */
    struct auth_scram cred, real;
    if ((rc = scram_fake(fake_key(b), e->s.user, e->s.user_len, &cred)) != 0)
        return rc;
    if (auth_scram_find(&b->access.tables, e->s.user, e->s.user_len, &real))
        cred = real;
    OPENSSL_cleanse(&real, sizeof(real));
    uint8_t raw[SNONCE_RAW];
    char nonce[((SNONCE_RAW + 2) / 3) * 4 + 1];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -ENOMEM;
    int nl = EVP_EncodeBlock((unsigned char *)nonce, raw, sizeof(raw));
    rc = scram_server_first(&e->s, &cred, nonce, (size_t)nl);
    OPENSSL_cleanse(&cred, sizeof(cred));
    e->started_ms = broker__now(b);
    return rc;
}

/* What a failed step is answered with, before the CONNACK. */
static uint8_t connect_reason(int err)
{
    return err == SCRAM_EBINDING ? PROTO_RC_BAD_AUTH_METHOD : PROTO_RC_BAD_USERNAME_PASSWORD;
}

void broker__enhanced_start(struct conn *c, struct proto_packet *p, struct claim *cl)
{
    const struct proto_connect *cp = &p->u.connect;
    struct enhanced *e = calloc(1, sizeof(*e));
    if (!e) {
        free(cl);
        broker__conn_close(c, 0xFF);
        return;
    }
    c->auth = e;
    e->cl = cl;
    if (proto_encode(p, 0, &e->connect) != 0) {
        broker__conn_close(c, 0xFF); /* out of memory: e is freed with c */
        return;
    }
    int rc = exchange_begin(c, e, cp->props.auth_data);
    if (rc == -ENOMEM) {
        broker__conn_close(c, 0xFF);
        return;
    }
    if (e->s.step >= 1) {
        /* the name the logs and the failure count go by */
        free(c->username);
        c->username = str_dup_len(e->s.user, e->s.user_len);
        if (!c->username) {
            broker__conn_close(c, 0xFF);
            return;
        }
    }
    if (rc == 0 && cp->has_username &&
        (cp->username.len != e->s.user_len || memcmp(cp->username.p, e->s.user, e->s.user_len) != 0))
        rc = SCRAM_EPROOF; /* the User Name must be the SCRAM user's, if given */
    if (rc) {
        broker__access_failed(c, connect_reason(rc), scram_error_name(rc));
        return;
    }
    c->state = CONN_AUTH;
    send_auth(c, PROTO_RC_CONTINUE_AUTH, e->s.out, e->s.out_len);
}

/* The client-final of the initial exchange. */
static void connect_final(struct conn *c, struct enhanced *e, struct proto_str data)
{
    struct broker *b = c->b;
    int rc = scram_client_final(&e->s, data.p, data.len);
    if (rc == -ENOMEM) {
        broker__conn_close(c, 0xFF);
        return;
    }
    if (rc) {
        broker__access_failed(c, PROTO_RC_BAD_USERNAME_PASSWORD, scram_error_name(rc));
        return;
    }
    e->done = true;
    c->scram = true;
    c->state = CONN_NEW;
    struct proto_packet p;
    if (proto_decode(e->connect.data, e->connect.len, 0, &p) != 0) {
        LOG(b, LOG_ERROR, c, "the kept CONNECT does not decode");
        broker__connect_refuse(c, PROTO_RC_UNSPECIFIED);
        return;
    }
    struct claim *cl = e->cl;
    e->cl = NULL;
    LOG(b, LOG_DEBUG, c, "SCRAM-SHA-256: user %s authenticated", c->username);
    broker__connect_continue(c, cl, &p.u.connect);
    proto_packet_release(&p);
    if (c->auth && c->auth->connect.data) {
        buf_free(&c->auth->connect); /* only the server-final is still needed */
        memset(&c->auth->connect, 0, sizeof(c->auth->connect));
    }
}

/* A failed re-authentication: the connection ends. */
static void reauth_failed(struct conn *c, uint8_t reason, const char *why)
{
    struct broker *b = c->b;
    if (reason == PROTO_RC_BAD_USERNAME_PASSWORD)
        b->stats.auth_failures++;
    LOG(b, LOG_WARN, c, "re-authentication failed: %s (user %s)", why, c->username ? c->username : "none");
    broker__enhanced_free(c);
    broker__conn_close(c, reason);
}

static void reauth(struct conn *c, const struct proto_disconnect *a)
{
    struct broker *b = c->b;
    struct enhanced *e = c->auth;
    if (a->reason == PROTO_RC_REAUTHENTICATE) {
        if (e) {
            reauth_failed(c, PROTO_RC_PROTOCOL_ERROR, "AUTH 0x19 while an exchange is under way");
            return;
        }
        if (!(e = calloc(1, sizeof(*e)))) {
            broker__conn_close(c, 0xFF);
            return;
        }
        c->auth = e;
        int rc = exchange_begin(c, e, a->props.auth_data);
        if (rc == -ENOMEM) {
            broker__conn_close(c, 0xFF);
            return;
        }
        if (rc == 0 && (!c->username || strlen(c->username) != e->s.user_len ||
                        memcmp(c->username, e->s.user, e->s.user_len) != 0))
            rc = SCRAM_EPROOF; /* another user: not on this connection */
        if (rc) {
            reauth_failed(c, PROTO_RC_BAD_USERNAME_PASSWORD, scram_error_name(rc));
            return;
        }
        send_auth(c, PROTO_RC_CONTINUE_AUTH, e->s.out, e->s.out_len);
        return;
    }
    if (a->reason != PROTO_RC_CONTINUE_AUTH || !e) {
        reauth_failed(c, PROTO_RC_PROTOCOL_ERROR, "AUTH out of turn");
        return;
    }
    if (broker__now(b) - e->started_ms > (uint64_t)b->cfg.connect_timeout * 1000) {
        reauth_failed(c, PROTO_RC_BAD_USERNAME_PASSWORD, "exchange older than connect_timeout");
        return;
    }
    int rc = scram_client_final(&e->s, a->props.auth_data.p, a->props.auth_data.len);
    if (rc == -ENOMEM) {
        broker__conn_close(c, 0xFF);
        return;
    }
    if (rc) {
        reauth_failed(c, PROTO_RC_BAD_USERNAME_PASSWORD, scram_error_name(rc));
        return;
    }
    LOG(b, LOG_INFO, c, "re-authenticated (SCRAM-SHA-256, user %s)", c->username);
    send_auth(c, PROTO_RC_SUCCESS, e->s.out, e->s.out_len);
    broker__enhanced_free(c);
}

void broker__on_auth(struct conn *c, struct proto_packet *p)
{
    const struct proto_disconnect *a = &p->u.disconnect;
    /* [MQTT-4.12.0-1] and 3.15.2.2.2: the method of the CONNECT, always */
    bool method_ok = a->props.auth_method.p && is_scram(a->props.auth_method);
    if (c->state == CONN_AUTH) {
        if (!method_ok || a->reason != PROTO_RC_CONTINUE_AUTH || !c->auth) {
            LOG(c->b, LOG_INFO, c, "AUTH 0x%02X%s during the exchange", a->reason, method_ok ? "" : " with another method");
            broker__connect_refuse(c, PROTO_RC_PROTOCOL_ERROR);
            return;
        }
        connect_final(c, c->auth, a->props.auth_data);
        return;
    }
    if (c->state != CONN_ACTIVE)
        return; /* claiming or closing: nothing to answer */
    if (!c->scram || !method_ok) {
        reauth_failed(c, PROTO_RC_PROTOCOL_ERROR,
                      !c->scram ? "AUTH on a connection without enhanced authentication" : "AUTH with another method");
        return;
    }
    reauth(c, a);
}

void broker__enhanced_connack(struct conn *c, struct proto_props *pp)
{
    if (!c->auth || !c->auth->done)
        return;
    pp->auth_method = proto_cstr(SCRAM_MECHANISM);
    pp->auth_data = (struct proto_str){(const uint8_t *)c->auth->s.out, c->auth->s.out_len};
}
