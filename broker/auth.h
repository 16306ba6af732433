/* auth: who may connect (users and their password verifiers, read from a
 * Mosquitto password file) and what they may do (topic rules, read from a
 * Mosquitto ACL file), and the checks made on CONNECT, PUBLISH, SUBSCRIBE and
 * every delivery.
 *
 * Pure: the parsers take bytes and the checks take names; nothing here logs
 * or does I/O, apart from auth_*_load reading their file. The broker owns one
 * struct auth and replaces a source's tables whole (SIGHUP).
 *
 * Sources: the tables are kept per source (AUTH_SOURCE_FILE; the replicated
 * users and rules of the cluster, AUTH_SOURCE_CLUSTER, beside it), and a
 * check looks at every source: a user is known when any source knows it
 * (the first source that does holds the verifier), and an ACL grants what
 * any source grants, unless any source denies it.
 *
 * ACL semantics (Mosquitto's acl_file): `topic` lines before any `user` line
 * apply to anonymous clients, those after `user NAME` to that user; `pattern`
 * lines apply to every client wherever they stand, with a whole level `%c`
 * standing for the client id and `%u` for the username (a %u pattern never
 * applies to an anonymous client). A rule with access `deny` wins over every
 * grant; with an ACL loaded anything not granted is denied; without any ACL
 * everything is allowed. A client id or username holding '+', '#' or '/' is
 * denied everything while pattern rules substitute it (it could otherwise
 * reach other clients' levels). A topic starting with '$' is matched only by
 * rules starting with '$'. */
#ifndef STARLING_BROKER_AUTH_H
#define STARLING_BROKER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "map.h"

/* PBKDF2 iteration counts accepted in a $7$ line: a file must not be able to
 * make each CONNECT cost seconds of the loop (Mosquitto writes 101; 100000
 * costs about 50 ms here). */
#define AUTH_MAX_ITERATIONS 100000u
#define AUTH_MAX_SALT 64u
#define AUTH_HASH_LEN 64u       /* SHA-512 */
#define AUTH_MAX_FILE (64u << 20) /* bytes of a password or ACL file */

/* failed CONNECTs from one address: after AUTH_THROTTLE_FREE within
 * AUTH_THROTTLE_WINDOW_MS each further refusal waits AUTH_THROTTLE_DELAY_MS */
#define AUTH_THROTTLE_SLOTS 4096u
#define AUTH_THROTTLE_WINDOW_MS 60000u
#define AUTH_THROTTLE_FREE 5u
#define AUTH_THROTTLE_DELAY_MS 1000u

enum auth_source {
    AUTH_SOURCE_FILE = 0,     /* password_file, acl_file */
    AUTH_SOURCE_CLUSTER = 1,  /* users and rules of the replicated state (auth_cluster.c) */
    AUTH_SOURCES = 2,
};

/* Access bits of a rule and of a check. A rule with none of them denies. */
enum auth_access {
    AUTH_DENY = 0,
    AUTH_READ = 1,            /* subscribe (on the filter), receive (on each message's topic) */
    AUTH_WRITE = 2,           /* publish (a will too) */
};

/* Results of auth_password_check (negative, apart from errno values). */
enum auth_error {
    AUTH_EUNKNOWN = -4000,    /* no such user */
    AUTH_EPASSWORD = -4001,   /* wrong or missing password */
};

enum auth_hash_kind {
    AUTH_HASH_SHA512 = 6,         /* $6$SALT$HASH: sha512(password || salt) */
    AUTH_HASH_PBKDF2_SHA512 = 7,  /* $7$ITER$SALT$HASH: PBKDF2-HMAC-SHA512 */
    AUTH_HASH_SCRAM_SHA256 = 32,  /* a $scram-sha-256$ line: the user's auth_scram is the verifier */
};

/* Starling's own password-file line (not Mosquitto's):
 * user:$scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY, base64 fields. */
#define SCRAM_PREFIX "$scram-sha-256$"

struct auth_verifier {
    uint8_t kind;             /* enum auth_hash_kind */
    uint8_t salt_len;
    uint32_t iterations;      /* $7$ only */
    uint8_t salt[AUTH_MAX_SALT];
    uint8_t hash[AUTH_HASH_LEN];
};

/* SCRAM-SHA-256 credentials (RFC 5802, RFC 7677) of a user: what the server
 * keeps instead of the password. SaltedPassword = PBKDF2-HMAC-SHA256(password,
 * salt, iterations); StoredKey = SHA256(HMAC(SaltedPassword, "Client Key"));
 * ServerKey = HMAC(SaltedPassword, "Server Key"). A password file holds only
 * PBKDF2-SHA512 or SHA-512 hashes, from which these cannot be derived: its
 * users have none (has_scram false) and can use passwords only. */
#define AUTH_SCRAM_KEY_LEN 32u
#define AUTH_SCRAM_SALT_LEN 16u         /* of a salt auth_scram_derive draws */
#define AUTH_SCRAM_ITERATIONS 4096u     /* RFC 7677's minimum */
struct auth_scram {
    uint32_t iterations;
    uint8_t salt_len;
    uint8_t salt[AUTH_MAX_SALT];
    uint8_t stored_key[AUTH_SCRAM_KEY_LEN];
    uint8_t server_key[AUTH_SCRAM_KEY_LEN];
};

struct auth_user {
    char *name;               /* NUL-terminated; the key in auth_users.by_name */
    struct auth_verifier v;
    bool has_scram;           /* scram holds SCRAM-SHA-256 credentials */
    struct auth_scram scram;
    /* the last password that passed the verifier, as HMAC-SHA256 under
     * auth.cache_key: the next CONNECT with it costs one HMAC instead of the
     * PBKDF2 rounds (a wrong password always pays the full check) */
    bool cached;
    uint8_t cache[32];
};

/* One source's users. set: the source is configured (a password file given,
 * even an empty one): CONNECTs are then checked against the users. */
struct auth_users {
    bool set;
    struct map by_name;       /* name -> struct auth_user */
};

struct auth_rule {
    char *topic;              /* as written; '%c' / '%u' levels substituted in patterns */
    uint32_t len;
    uint8_t access;           /* enum auth_access bits, AUTH_DENY = 0 */
    bool pattern;
    bool uses_c, uses_u;      /* a whole level "%c" / "%u" (patterns only) */
};

/* Rules in the order they are checked: every deny rule first. */
struct auth_rules {
    struct auth_rule *v;
    uint32_t count, cap;
};

struct auth_acl_user {
    char *name;               /* the key in auth_acl.by_user */
    struct auth_rules rules;
};

/* One source's ACL. set: loaded (anything not granted is then denied). */
struct auth_acl {
    bool set;
    struct auth_rules anon;   /* topic lines before any user line */
    struct map by_user;       /* name -> struct auth_acl_user */
    struct auth_rules patterns;
    bool patterns_use_c, patterns_use_u;
};

struct auth {
    struct auth_users users[AUTH_SOURCES];
    struct auth_acl acl[AUTH_SOURCES];
    uint64_t generation;      /* raised by every change: struct auth_who caches compare it */
    uint8_t cache_key[32];    /* random, this process only (auth_init) */
};

/* A decision auth_allowed remembers for an identity: the topic (at most
 * AUTH_WHO_CACHE_TOPIC bytes, compared whole), the access asked, the answer.
 * Allocated at the first check made while an ACL is in force, so that a node
 * without one spends no memory on them. */
#define AUTH_WHO_CACHE 4u
#define AUTH_WHO_CACHE_TOPIC 48u
struct auth_who_decision {
    uint8_t len;
    uint8_t access;
    bool allowed;
    char topic[AUTH_WHO_CACHE_TOPIC];
};

/* The identity a check is made for, with what auth_allowed looked up for it
 * (refreshed when auth.generation moved) and its last few decisions (a
 * publisher repeats its topics, a subscription receives the same ones: each
 * check of 1,000 rules then costs one comparison). user NULL: anonymous. The
 * strings are borrowed: they must outlive the struct (a session keeps its own). */
struct auth_who {
    const char *user;
    size_t user_len;
    const char *client_id;
    size_t id_len;
    uint64_t generation;      /* of the lookups below; 0 = not looked up */
    const struct auth_rules *own[AUTH_SOURCES]; /* the user's (or the anonymous) rules, or NULL */
    bool bad_id, bad_user;    /* hold '+', '#' or '/' */
    uint8_t decided, next;    /* entries of decisions in use (of this generation), the next to replace */
    struct auth_who_decision *decisions; /* AUTH_WHO_CACHE of them, owned; NULL until needed */
};

struct auth_throttle_slot {
    uint64_t hash;            /* of addr; 0 = free */
    uint64_t first_ms, last_ms;
    uint32_t count;           /* failures since first_ms */
    char addr[48];
};

/* Failed CONNECTs per address: a fixed table (AUTH_THROTTLE_SLOTS, LRU
 * replacement among a few probed slots), never a list that grows. */
struct auth_throttle {
    struct auth_throttle_slot *slots; /* AUTH_THROTTLE_SLOTS, calloc'd by auth_throttle_init */
};

/* --- the whole ------------------------------------------------------------- */

void auth_init(struct auth *a);
void auth_free(struct auth *a);

/* Replaces source's users (or ACL) with *users (*acl), which is moved into a
 * (zeroed afterwards); the old tables are freed. */
void auth_users_replace(struct auth *a, enum auth_source source, struct auth_users *users);
void auth_acl_replace(struct auth *a, enum auth_source source, struct auth_acl *acl);

/* Whether CONNECTs are checked against users (some source is set). */
bool auth_users_on(const struct auth *a);
/* Whether an ACL is in force (some source is set). */
bool auth_acl_on(const struct auth *a);

/* --- passwords -------------------------------------------------------------- */

/* Parses a password file (text, len bytes, borrowed) into *out (initialised
 * here; free with auth_users_free). Lines are `user:$7$ITER$SALT$HASH` or
 * `user:$6$SALT$HASH` (base64 salt and hash, as mosquitto_passwd writes), or
 * Starling's `user:$scram-sha-256$ITER$SALT$STOREDKEY$SERVERKEY` (SCRAM
 * credentials, which check a plain password too); blank lines and lines starting with '#' are skipped. Anything else (a
 * plain-text password above all) is refused: returns -EINVAL with
 * "line N: reason" in err, *out left empty. -ENOMEM when memory ran out. */
int auth_passwd_parse(const char *text, size_t len, struct auth_users *out, char *err, size_t errlen);
/* Reads path (at most AUTH_MAX_FILE bytes) and parses it; err gets
 * "PATH:N: reason" or "PATH: reason". */
int auth_passwd_load(const char *path, struct auth_users *out, char *err, size_t errlen);
void auth_users_free(struct auth_users *u);

/* Parses a password hash as written after the user's colon ("$7$...") into
 * *v. 0 or -EINVAL with the reason in err. */
int auth_verifier_parse(const char *s, size_t len, struct auth_verifier *v, char *err, size_t errlen);

/* Checks a CONNECT's user name and password (borrowed, any bytes) against
 * every source, in constant time over the hash; a password that passed is
 * remembered (auth_user.cache) so that reconnecting costs one HMAC. 0,
 * AUTH_EUNKNOWN (a password
 * hash is computed anyway, so an unknown name takes as long as a known one),
 * AUTH_EPASSWORD (also when pass is NULL), or -ENOMEM. */
int auth_password_check(struct auth *a, const char *user, size_t user_len, const uint8_t *pass,
                        size_t pass_len);
/* Derives SCRAM-SHA-256 credentials for password (len bytes) into *out:
 * with salt (salt_len <= AUTH_MAX_SALT bytes), or a fresh random salt of
 * AUTH_SCRAM_SALT_LEN bytes when salt is NULL; iterations 1..AUTH_MAX_ITERATIONS.
 * 0, -EINVAL or -ENOMEM. */
int auth_scram_derive(const uint8_t *password, size_t len, const uint8_t *salt, size_t salt_len,
                      uint32_t iterations, struct auth_scram *out);
/* The SCRAM credentials of user (user_len bytes) from the first source that
 * knows the user: true and *out filled, or false (unknown, or a user without
 * SCRAM credentials). */
bool auth_scram_find(const struct auth *a, const char *user, size_t user_len, struct auth_scram *out);

/* Parses the hash part of a $scram-sha-256$ line into *out. 0 or -EINVAL
 * with the reason in err. */
int auth_scram_parse(const char *s, size_t len, struct auth_scram *out, char *err, size_t errlen);

/* Standard base64 (padding optional) into out (at most cap bytes): the
 * decoded length or -EINVAL. For scram.c. */
int auth__b64_decode(const char *s, size_t len, uint8_t *out, size_t cap);

/* 0 when pass matches v, AUTH_EPASSWORD when not, -ENOMEM. */
int auth_verifier_check(const struct auth_verifier *v, const uint8_t *pass, size_t pass_len);

/* --- topic rules ------------------------------------------------------------ */

/* Parses an ACL file (text, len bytes, borrowed) into *out (initialised here;
 * free with auth_acl_free). -EINVAL with "line N: reason" in err for an
 * unknown keyword, a missing user name or topic, an unknown access word, or a
 * topic that is not a valid filter; -ENOMEM. */
int auth_acl_parse(const char *text, size_t len, struct auth_acl *out, char *err, size_t errlen);
int auth_acl_load(const char *path, struct auth_acl *out, char *err, size_t errlen);
void auth_acl_free(struct auth_acl *acl);

/* Sets who's identity (strings borrowed) and forgets its lookups; who is
 * overwritten whole (not read): auth_who_free a struct that was used before. */
void auth_who_set(struct auth_who *who, const char *user, size_t user_len, const char *client_id, size_t id_len);
/* Frees what auth_allowed allocated for who (its remembered decisions). */
void auth_who_free(struct auth_who *who);

/* Whether who may have access (AUTH_READ or AUTH_WRITE) to topic (len bytes,
 * a topic name). Always true while no ACL is in force. who's lookups are
 * refreshed when a has changed since; nothing is allocated. */
bool auth_allowed(const struct auth *a, struct auth_who *who, const char *topic, size_t len, int access);

/* Whether who may subscribe to filter (len bytes; a $share/GROUP/ prefix is
 * taken off first): read access to the filter taken literally, as Mosquitto
 * checks it, so a wildcard in it passes where a rule's own wildcard covers
 * that level ("a/#" allows "a/+/b"; "a/+" allows "a/#", '+' matching any one
 * level; "a/b" does not allow "a/+"). Each message is checked again on
 * delivery (auth_allowed, AUTH_READ), so a broad filter never reads more
 * than the rules grant. */
bool auth_subscribe_allowed(const struct auth *a, struct auth_who *who, const char *filter, size_t len);

/* --- failed attempts --------------------------------------------------------- */

/* 0 or -ENOMEM. */
int auth_throttle_init(struct auth_throttle *t);
void auth_throttle_free(struct auth_throttle *t);
/* Records a failed CONNECT from addr (a host, NUL-terminated, at most 47
 * bytes kept) at now (monotonic ms). Returns how long its refusal should
 * wait (ms): 0 for the first AUTH_THROTTLE_FREE failures within the window. */
uint32_t auth_throttle_fail(struct auth_throttle *t, const char *addr, uint64_t now);

/* --- one user or rule at a time (auth_cluster.c) ----------------------------------
 *
 * The replicated users and rules (AUTH_SOURCE_CLUSTER) change one command at
 * a time: these change one source's tables in place and raise generation. A
 * source changed this way is set (in force) while it holds a user (a rule):
 * a cluster without replicated rules does not restrict anyone by itself. */

/* PBKDF2 iterations of the $7$ hash a node makes of a password given to its
 * admin API (mosquitto_passwd writes 101); the salt is 12 random bytes, as
 * mosquitto_passwd's. */
#define AUTH_CLUSTER_ITERATIONS 1000u
#define AUTH_HASH_SALT_LEN 12u
/* the longest "$7$..." or "$6$..." text of a verifier, with its NUL */
#define AUTH_HASH_TEXT_MAX 200u

enum auth_rule_kind {
    AUTH_RULE_ANONYMOUS = 0,  /* the anonymous section (topic lines before any user line) */
    AUTH_RULE_USER = 1,       /* a user's topic lines */
    AUTH_RULE_PATTERN = 2,    /* pattern lines */
};

/* Writes the $7$ line of password (len bytes, borrowed) with a random salt
 * into out (cap bytes, AUTH_HASH_TEXT_MAX is enough). Its length, -EINVAL,
 * -E2BIG or -ENOMEM. */
int auth_password_hash(const uint8_t *password, size_t len, uint32_t iterations, char *out, size_t cap);
/* Writes *v as a password file holds it ($6$ or $7$, what auth_verifier_parse
 * reads back) into out (cap bytes; AUTH_HASH_TEXT_MAX is enough). Its length,
 * -EINVAL or -E2BIG. */
int auth_verifier_format(const struct auth_verifier *v, char *out, size_t cap);

/* SCRAM credentials as the replicated state holds them: u32 iterations, u8
 * salt length, the salt, StoredKey, ServerKey. encode writes at most
 * AUTH_SCRAM_ENCODED_MAX bytes and returns how many; decode is pure and
 * bounds-checked: 0 or -EINVAL (out untouched). */
#define AUTH_SCRAM_ENCODED_MAX (5u + AUTH_MAX_SALT + 2u * AUTH_SCRAM_KEY_LEN)
size_t auth_scram_encode(const struct auth_scram *s, uint8_t *out);
int auth_scram_decode(const uint8_t *p, size_t len, struct auth_scram *out);

/* Creates or replaces user name (len bytes, copied) in source, with the
 * verifier *v and SCRAM credentials *scram (NULL: none), both copied. 0 or
 * -ENOMEM. del: 0 or AUTH_EUNKNOWN. */
int auth_user_set(struct auth *a, enum auth_source source, const char *name, size_t len,
                  const struct auth_verifier *v, const struct auth_scram *scram);
int auth_user_del(struct auth *a, enum auth_source source, const char *name, size_t len);
size_t auth_users_count(const struct auth *a, enum auth_source source);

/* Adds the rule (kind, user for AUTH_RULE_USER, topic: borrowed) with access
 * (enum auth_access bits) to source, replacing a rule of the same kind, user
 * and topic. The topic is read as an acl_file line's: -EINVAL with the reason
 * in err for one that is not a valid filter; -ENOMEM. del: 0 or
 * AUTH_EUNKNOWN. */
int auth_rule_set(struct auth *a, enum auth_source source, int kind, const char *user, size_t ulen,
                  const char *topic, size_t tlen, int access, char *err, size_t errlen);
int auth_rule_del(struct auth *a, enum auth_source source, int kind, const char *user, size_t ulen,
                  const char *topic, size_t tlen);

#endif
