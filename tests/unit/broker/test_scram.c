/* Unit tests for broker/scram.c: the exchange of RFC 7677 section 3 byte for
 * byte, wrong proofs, fake credentials, and malformed, truncated, overlong
 * and out-of-order messages; and the $scram-sha-256$ password-file line. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "scram.h"

/* RFC 7677, section 3 */
#define RFC_CFIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SFIRST "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CFINAL                                                                                       \
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static const uint8_t RFC_SALT[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                                     0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};

static struct auth_scram rfc_cred(void)
{
    struct auth_scram c;
    cr_assert_eq(auth_scram_derive((const uint8_t *)"pencil", 6, RFC_SALT, sizeof(RFC_SALT), 4096, &c), 0);
    return c;
}

static int first(struct scram_server *s, const char *m) { return scram_client_first(s, (const uint8_t *)m, strlen(m)); }
static int final(struct scram_server *s, const char *m) { return scram_client_final(s, (const uint8_t *)m, strlen(m)); }

/* A server that has read RFC_CFIRST and made its server-first. */
static void started(struct scram_server *s)
{
    memset(s, 0, sizeof(*s));
    cr_assert_eq(first(s, RFC_CFIRST), 0);
    struct auth_scram c = rfc_cred();
    cr_assert_eq(scram_server_first(s, &c, RFC_SNONCE, strlen(RFC_SNONCE)), 0);
}

Test(scram, rfc7677_example)
{
    static struct scram_server s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(first(&s, RFC_CFIRST), 0);
    cr_assert_str_eq(s.user, "user");
    struct auth_scram c = rfc_cred();
    cr_assert_eq(scram_server_first(&s, &c, RFC_SNONCE, strlen(RFC_SNONCE)), 0);
    cr_assert_eq(s.out_len, strlen(RFC_SFIRST));
    cr_assert(memcmp(s.out, RFC_SFIRST, s.out_len) == 0, "%.*s", (int)s.out_len, s.out);
    cr_assert_eq(final(&s, RFC_CFINAL), 0);
    cr_assert_eq(s.out_len, strlen(RFC_SFINAL));
    cr_assert(memcmp(s.out, RFC_SFINAL, s.out_len) == 0, "%.*s", (int)s.out_len, s.out);
    /* one exchange per struct */
    cr_assert_eq(final(&s, RFC_CFINAL), SCRAM_ESTATE);
}

Test(scram, wrong_proof_and_wrong_password)
{
    static struct scram_server s;
    started(&s);
    /* one bit of the proof changed */
    char m[] = RFC_CFINAL;
    char *p = strstr(m, ",p=") + 3;
    p[0] = p[0] == 'd' ? 'e' : 'd';
    cr_assert_eq(final(&s, m), SCRAM_EPROOF);

    /* credentials of another password: the RFC's proof does not hold */
    memset(&s, 0, sizeof(s));
    cr_assert_eq(first(&s, RFC_CFIRST), 0);
    struct auth_scram c;
    cr_assert_eq(auth_scram_derive((const uint8_t *)"pencil2", 7, RFC_SALT, sizeof(RFC_SALT), 4096, &c), 0);
    cr_assert_eq(scram_server_first(&s, &c, RFC_SNONCE, strlen(RFC_SNONCE)), 0);
    cr_assert_eq(final(&s, RFC_CFINAL), SCRAM_EPROOF);
}

Test(scram, nonce_must_be_the_exchanges)
{
    static struct scram_server s;
    started(&s);
    cr_assert_eq(final(&s, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,"
                           "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
                 SCRAM_ENONCE);
    started(&s);
    cr_assert_eq(final(&s, "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
                 SCRAM_ENONCE);
}

Test(scram, gs2_header_only_n)
{
    static const char *const bad[] = {
        "y,,n=user,r=abc",           /* client supports binding */
        "p=tls-unique,,n=user,r=abc", /* client asks for binding */
        "n,a=admin,n=user,r=abc",    /* authzid */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct scram_server s = {0};
        cr_assert_eq(first(&s, bad[i]), SCRAM_EBINDING, "%s", bad[i]);
    }
    static struct scram_server s;
    started(&s);
    cr_assert_eq(final(&s, "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                           "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
                 SCRAM_EBINDING);
}

Test(scram, malformed_client_first)
{
    static const char *const bad[] = {
        "",
        "n",
        "n,",
        "n,,",
        "x,,n=user,r=abc",
        "n,,r=abc,n=user",          /* order */
        "n,,n=user",                 /* no nonce */
        "n,,n=user,r=",              /* empty nonce */
        "n,,n=,r=abc",               /* empty user */
        "n,,n=us=er,r=abc",          /* bad escape */
        "n,,n=user=2,r=abc",         /* truncated escape */
        "n,,m=ext,n=user,r=abc",     /* mandatory extension */
        "n,,n=user,r=a b",           /* space in nonce */
        "n,,n=user,r=abc,",          /* empty extension */
        "n,,n=user,r=abc,junk",
        "n,,n=\xff\xfe,r=abc",       /* not UTF-8 */
        "nn,,n=user,r=abc",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct scram_server s;
        memset(&s, 0, sizeof(s));
        cr_assert_eq(first(&s, bad[i]), SCRAM_EMALFORMED, "%s", bad[i]);
    }
    /* a NUL inside, and NULL */
    struct scram_server s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(scram_client_first(&s, (const uint8_t *)"n,,n=u\0x,r=abc", 14), SCRAM_EMALFORMED);
    cr_assert_eq(scram_client_first(&s, NULL, 0), SCRAM_EMALFORMED);
    /* escapes decode; extensions after the nonce are ignored */
    cr_assert_eq(first(&s, "n,,n=a=2Cb=3Dc,r=abc,x=1"), 0);
    cr_assert_str_eq(s.user, "a,b=c");
}

Test(scram, overlong_and_boundary)
{
    static char m[SCRAM_MAX_MESSAGE + 2];
    /* a nonce of SCRAM_MAX_NONCE is taken, one more is not */
    int n = snprintf(m, sizeof(m), "n,,n=user,r=%0*d", (int)SCRAM_MAX_NONCE, 7);
    struct scram_server s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(scram_client_first(&s, (const uint8_t *)m, (size_t)n), 0);
    n = snprintf(m, sizeof(m), "n,,n=user,r=%0*d", (int)SCRAM_MAX_NONCE + 1, 7);
    memset(&s, 0, sizeof(s));
    cr_assert_eq(scram_client_first(&s, (const uint8_t *)m, (size_t)n), SCRAM_EMALFORMED);
    /* a message over SCRAM_MAX_MESSAGE, whatever it holds */
    memset(m, 'a', sizeof(m));
    memcpy(m, "n,,n=", 5);
    memcpy(m + SCRAM_MAX_MESSAGE - 6, ",r=abc", 6);
    memset(&s, 0, sizeof(s));
    cr_assert_eq(scram_client_first(&s, (const uint8_t *)m, SCRAM_MAX_MESSAGE + 1), SCRAM_EMALFORMED);
    cr_assert_eq(scram_client_first(&s, (const uint8_t *)m, SCRAM_MAX_MESSAGE), 0);
    cr_assert_eq(s.user_len, SCRAM_MAX_MESSAGE - 11);
    /* the longest user and nonces still make a server-first and a final */
    struct auth_scram c = rfc_cred();
    char sn[SCRAM_MAX_NONCE];
    memset(sn, 'z', sizeof(sn));
    cr_assert_eq(scram_server_first(&s, &c, sn, sizeof(sn)), 0);
    cr_assert_eq(final(&s, "c=biws,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="), SCRAM_ENONCE);
}

Test(scram, malformed_client_final)
{
    static const char *const bad[] = {
        "",
        "c=biws",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",           /* no proof */
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!HzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dGVzdA==",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        static struct scram_server s;
        started(&s);
        cr_assert_eq(final(&s, bad[i]), SCRAM_EMALFORMED, "%s", bad[i]);
    }
    /* out of order: a final before a first */
    struct scram_server s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(final(&s, RFC_CFINAL), SCRAM_ESTATE);
    cr_assert_eq(scram_server_first(&s, &(struct auth_scram){0}, "x", 1), SCRAM_ESTATE);
}

Test(scram, fake_credentials_are_stable_per_name)
{
    uint8_t key[32] = {1, 2, 3};
    struct auth_scram a, b, c;
    cr_assert_eq(scram_fake(key, "nobody", 6, &a), 0);
    cr_assert_eq(scram_fake(key, "nobody", 6, &b), 0);
    cr_assert_eq(scram_fake(key, "nobody2", 7, &c), 0);
    cr_assert(memcmp(&a, &b, sizeof(a)) == 0);
    cr_assert(memcmp(a.salt, c.salt, AUTH_SCRAM_SALT_LEN) != 0);
    cr_assert_eq(a.iterations, AUTH_SCRAM_ITERATIONS);
    cr_assert_eq(a.salt_len, AUTH_SCRAM_SALT_LEN);
    /* the RFC's client against fake keys: refused like a wrong password */
    static struct scram_server s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(first(&s, RFC_CFIRST), 0);
    cr_assert_eq(scram_server_first(&s, &a, RFC_SNONCE, strlen(RFC_SNONCE)), 0);
    cr_assert_eq(final(&s, RFC_CFINAL), SCRAM_EPROOF);
}

static int parse_users(const char *text, struct auth_users *u, char *err, size_t errlen)
{
    return auth_passwd_parse(text, strlen(text), u, err, errlen);
}

/* a's users from a password file's text, which must parse */
static void load_users(struct auth *a, const char *text)
{
    struct auth_users u;
    char err[256] = "";
    cr_assert_eq(parse_users(text, &u, err, sizeof(err)), 0, "%s", err);
    auth_init(a);
    auth_users_replace(a, AUTH_SOURCE_FILE, &u);
}

Test(scram, password_file_line)
{
    /* the RFC's user as a $scram-sha-256$ line */
    const char *text = "user:$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$"
                       "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\n";
    struct auth a;
    load_users(&a, text);
    struct auth_scram got, want = rfc_cred();
    cr_assert(auth_scram_find(&a, "user", 4, &got));
    cr_assert(memcmp(got.stored_key, want.stored_key, AUTH_SCRAM_KEY_LEN) == 0);
    cr_assert(memcmp(got.server_key, want.server_key, AUTH_SCRAM_KEY_LEN) == 0);
    cr_assert_eq(got.iterations, 4096);
    /* the plain password checks against the same line */
    cr_assert_eq(auth_password_check(&a, "user", 4, (const uint8_t *)"pencil", 6), 0);
    cr_assert_eq(auth_password_check(&a, "user", 4, (const uint8_t *)"pencil", 6), 0); /* cached */
    cr_assert_eq(auth_password_check(&a, "user", 4, (const uint8_t *)"pencik", 6), AUTH_EPASSWORD);
    cr_assert_eq(auth_password_check(&a, "user", 4, NULL, 0), AUTH_EPASSWORD);
    auth_free(&a);

    struct auth_users u;
    char err[256] = "";
    static const char *const bad[] = {
        "u:$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=\n",
        "u:$scram-sha-256$0$W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\n",
        "u:$scram-sha-256$100001$W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\n",
        "u:$scram-sha-256$4096$$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\n",
        "u:$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$dGVzdA==$wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\n",
        "u:$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=$x\n",
        "u:$scram-sha-1$4096$W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(parse_users(bad[i], &u, err, sizeof(err)), -EINVAL, "%s", bad[i]);
        cr_assert(err[0] && strstr(err, "line 1"), "%s", err);
        cr_assert(!u.set);
    }
}

Test(scram, mosquitto_users_have_no_scram)
{
    const char *text =
        "alice:$7$101$6ZVZAeVaU8hZ7r13$UuJMmgApXqR6Sn1Sqsaq1W2Q4z3PH7I73V9x0WhHxolx5bWNFKRRLGFD7R56lwdJEy6MK0Xgra4mzTmyvwuP7A==\n";
    struct auth a;
    load_users(&a, text);
    struct auth_scram got;
    cr_assert(!auth_scram_find(&a, "alice", 5, &got));
    cr_assert(!auth_scram_find(&a, "bob", 3, &got));
    cr_assert_eq(auth_password_check(&a, "alice", 5, (const uint8_t *)"secret", 6), 0);
    auth_free(&a);
}
