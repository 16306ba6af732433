/* scram: the server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), as MQTT 5
 * enhanced authentication carries it in CONNECT and AUTH packets.
 *
 * Pure: messages in, messages or an error out; no I/O, no logging, no
 * randomness (the caller draws the server nonce) and no allocation (a
 * struct scram_server holds everything, bounded by SCRAM_MAX_MESSAGE).
 *
 * Exchange, one struct per attempt:
 *   client-first  "n,,n=USER,r=CNONCE"     -> scram_client_first (user known)
 *   the caller looks the user up (auth_scram_find, else scram_fake)
 *   server-first  "r=CNONCE+SNONCE,s=SALT,i=ITER" <- scram_server_first
 *   client-final  "c=biws,r=NONCE,p=PROOF"   -> scram_client_final
 *   server-final  "v=SIGNATURE"              <- when the proof holds
 * Only the gs2 header "n,," is accepted: no channel binding, no
 * authorization identity. The proof is checked in constant time, and a user
 * without credentials goes through the same steps with fake ones, so that
 * neither the answer nor its timing tells which user names exist. */
#ifndef STARLING_BROKER_SCRAM_H
#define STARLING_BROKER_SCRAM_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"

#define SCRAM_MECHANISM "SCRAM-SHA-256"
#define SCRAM_MAX_MESSAGE 512u   /* bytes of a client message (an exchange holds about 6x this) */
#define SCRAM_MAX_NONCE 128u     /* bytes of the client's nonce, and of the server's */

enum scram_error {
    SCRAM_EMALFORMED = -4100, /* not a SCRAM message as RFC 5802 writes it, or too long */
    SCRAM_EBINDING = -4101,   /* a gs2 header other than "n,,": channel binding or an authzid */
    SCRAM_ENONCE = -4102,     /* the client-final's nonce is not the exchange's */
    SCRAM_EPROOF = -4103,     /* the proof does not hold (wrong password, unknown user) */
    SCRAM_ESTATE = -4104,     /* a step out of order */
};

struct scram_server {
    int step;                 /* 0 new, 1 client-first read, 2 server-first made, 3 done */
    char user[SCRAM_MAX_MESSAGE + 1]; /* decoded saslname, NUL-terminated */
    size_t user_len;
    struct auth_scram cred;   /* copied in scram_server_first */
    /* AuthMessage: client-first-bare "," server-first "," client-final-without-proof */
    char auth_msg[3 * SCRAM_MAX_MESSAGE + 2 * SCRAM_MAX_NONCE + 256];
    size_t bare_len;          /* of client-first-bare at the start of auth_msg */
    size_t am_len;
    size_t cnonce_len;        /* the client nonce: auth_msg + cnonce_at */
    size_t cnonce_at;
    size_t nonce_at, nonce_len; /* the combined nonce, inside server-first */
    /* the last message made for the client (server-first or server-final) */
    char out[SCRAM_MAX_MESSAGE];
    size_t out_len;
};

/* Reads a client-first message (msg, len bytes, borrowed): on success
 * s->user holds the user name. 0, SCRAM_EMALFORMED or SCRAM_EBINDING. */
int scram_client_first(struct scram_server *s, const uint8_t *msg, size_t len);

/* Makes the server-first message into s->out with cred (borrowed, copied)
 * and snonce (snonce_len printable bytes other than ',', drawn at random by
 * the caller). 0, SCRAM_EMALFORMED (a bad nonce), SCRAM_ESTATE. */
int scram_server_first(struct scram_server *s, const struct auth_scram *cred, const char *snonce,
                       size_t snonce_len);

/* Checks a client-final message (borrowed): 0 with the server-final message
 * in s->out, or SCRAM_EMALFORMED, SCRAM_EBINDING, SCRAM_ENONCE, SCRAM_EPROOF,
 * SCRAM_ESTATE. */
int scram_client_final(struct scram_server *s, const uint8_t *msg, size_t len);

/* Credentials for a user that has none (unknown, or known by a password hash
 * only): derived from key (32 bytes, secret, borrowed) and the name, so that
 * the same name always gets the same salt and iteration count. 0 or -ENOMEM. */
int scram_fake(const uint8_t key[32], const char *user, size_t user_len, struct auth_scram *out);

/* A short name of a scram_error, for the logs. */
const char *scram_error_name(int err);

#endif
