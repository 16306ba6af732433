/* admin/users: the endpoints of the users and ACL rules kept in the
 * replicated state (docs/auth.md, "Users and rules in the cluster").
 *
 * A change is proposed as one command per user or rule (an import as many,
 * committed in the same few log entries) and answered once every one of them
 * was applied on this node, so that it holds on every node from then on. The
 * password of an add or passwd is hashed here ($7$ PBKDF2-SHA512 and SCRAM-
 * SHA-256): it never enters the log. Every change is logged at info with the
 * caller's address when asked and with its outcome; a password never is. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "admin.h"
#include "internal.h"

static const char json_type[] = "application/json";
static const char *const kind_names[] = {"anonymous", "user", "pattern"};

/* --- a change: its commands, its answer ----------------------------------------------- */

enum change_kind { CH_USER_ADD, CH_USER_PASSWD, CH_USER_DEL, CH_USER_IMPORT, CH_ACL_ADD, CH_ACL_DEL, CH_ACL_IMPORT };

struct change {
    struct broker *b;
    struct admin_conn *c;       /* held until every command called back */
    enum change_kind kind;
    char peer[64];              /* the caller, for the log */
    char what[160];             /* e.g. `users add "alice"` */
    uint32_t pending;           /* commands not called back yet */
    uint32_t created, replaced;  /* results 0 (new; for a delete: there was none) and 1 */
    int status;                 /* the first commit failure (cluster error), 0 = none */
    int result;                 /* the first command the store refused, 0 = none */
};

static void change_log(const struct change *ch, int http, const char *outcome)
{
    LOG(ch->b, LOG_INFO, NULL, "admin %s: %s: %d %s", ch->peer, ch->what, http, outcome);
}

static void reply_error(struct change *ch, int http, const char *msg)
{
    change_log(ch, http, msg);
    broker__admin_error(ch->c, http, msg, NULL);
}

static void change_finish(struct change *ch)
{
    if (ch->status) {
        reply_error(ch, 503,
                    ch->status == CLUSTER_ESHUTDOWN
                        ? "the node is stopping"
                        : "not committed in time (no leader?): the change may still apply; check with a listing");
    } else if (ch->result == CLUSTER_ELIMIT) {
        reply_error(ch, 409, ch->kind <= CH_USER_IMPORT ? "the cluster holds its maximum of users (100000)"
                                                        : "the cluster holds its maximum of ACL rules (100000)");
    } else if (ch->result) {
        reply_error(ch, 400, "refused by the replicated state (malformed)");
    } else if ((ch->kind == CH_USER_DEL || ch->kind == CH_ACL_DEL) && ch->created) {
        reply_error(ch, 404, ch->kind == CH_USER_DEL ? "no such user in the cluster" : "no such rule in the cluster");
    } else {
        cJSON *obj = cJSON_CreateObject();
        const char *result = ch->kind == CH_USER_DEL || ch->kind == CH_ACL_DEL ? "deleted"
                             : ch->replaced && !ch->created                    ? "replaced"
                                                                               : "created";
        bool import = ch->kind == CH_USER_IMPORT || ch->kind == CH_ACL_IMPORT;
        bool ok = obj && cJSON_AddStringToObject(obj, "result", import ? "imported" : result) &&
                  (!import || (cJSON_AddNumberToObject(obj, "created", ch->created) &&
                               cJSON_AddNumberToObject(obj, "replaced", ch->replaced)));
        char *text = ok ? cJSON_PrintUnformatted(obj) : NULL;
        cJSON_Delete(obj);
        char outcome[64];
        snprintf(outcome, sizeof(outcome), "%s (%u new, %u replaced)", import ? "imported" : result, ch->created,
                 ch->replaced);
        change_log(ch, 200, outcome);
        broker__admin_respond(ch->c, 200, json_type, text, text ? strlen(text) : 0, NULL);
    }
    broker__admin_release(ch->c);
    free(ch);
}

static void on_command_done(void *arg, int status, int result)
{
    struct change *ch = arg;
    if (status && !ch->status)
        ch->status = status;
    else if (!status && result < 0 && !ch->result)
        ch->result = result;
    else if (!status && result == 0)
        ch->created++;
    else if (!status)
        ch->replaced++;
    if (--ch->pending == 0)
        change_finish(ch);
}

/* A change, logged as requested; NULL (and the request answered) when the
 * node cannot take one. */
static struct change *change_new(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                 enum change_kind kind, const char *what)
{
    struct change *ch = calloc(1, sizeof(*ch));
    if (!ch) {
        broker__admin_respond(c, 500, json_type, NULL, 0, NULL);
        return NULL;
    }
    *ch = (struct change){.b = b, .c = c, .kind = kind};
    snprintf(ch->peer, sizeof(ch->peer), "%s", r->peer);
    snprintf(ch->what, sizeof(ch->what), "%s", what);
    LOG(b, LOG_INFO, NULL, "admin %s: %s: requested", ch->peer, ch->what);
    if (!b->cluster || b->stopping) {
        reply_error(ch, 503, "the node is stopping");
        free(ch);
        return NULL;
    }
    ch->pending = 1; /* held by this request until change_commit */
    broker__admin_hold(c);
    return ch;
}

/* Proposes one command of the change (a failure to queue it counts as a
 * commit failure). */
static void change_propose(struct change *ch, const struct cluster_cmd *cmd)
{
    ch->pending++;
    int rc = cluster_propose(ch->b->cluster, cmd, on_command_done, ch);
    if (rc) {
        ch->pending--;
        if (!ch->status)
            ch->status = rc == -ENOMEM ? CLUSTER_EUNAVAILABLE : rc;
    }
}

/* Every command was proposed: the answer comes when the last calls back. */
static void change_commit(struct change *ch)
{
    if (--ch->pending == 0)
        change_finish(ch);
}

/* A refusal before anything was proposed. */
static void refuse(struct broker *b, struct admin_conn *c, const struct admin_request *r, const char *what, int http,
                   const char *why)
{
    LOG(b, LOG_INFO, NULL, "admin %s: %s: %d %s", r->peer, what, http, why);
    broker__admin_error(c, http, why, NULL);
}

static struct proto_str pstr(const char *s, size_t len) { return (struct proto_str){(const uint8_t *)s, (uint32_t)len}; }

/* `NAME` shortened for a log line. */
static void what_of(char *out, size_t cap, const char *verb, const char *name)
{
    snprintf(out, cap, "%s \"%.64s%s\"", verb, name ? name : "", name && strlen(name) > 64 ? "..." : "");
}

/* --- users ------------------------------------------------------------------------------ */

struct user_row {
    const char *name;
    const char *source;
    bool scram;
};

static int by_name(const void *x, const void *y)
{
    const struct user_row *a = x, *b = y;
    int d = strcmp(a->name, b->name);
    return d ? d : strcmp(a->source, b->source);
}

void broker__admin_users_get(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                             const struct admin_query *q)
{
    (void)r;
    static const char *const sources[AUTH_SOURCES] = {"file", "cluster"};
    uint64_t limit;
    if (!broker__admin_limit(c, q, &limit))
        return;
    const struct auth *a = &b->access.tables;
    size_t n = 0;
    for (int s = 0; s < AUTH_SOURCES; s++)
        n += a->users[s].by_name.count;
    struct user_row *rows = n ? malloc(n * sizeof(*rows)) : NULL;
    cJSON *obj = NULL, *list = NULL;
    if (rows || !n) {
        size_t k = 0;
        for (int s = 0; s < AUTH_SOURCES; s++) {
            size_t pos = 0;
            struct map_slot *slot;
            while (k < n && (slot = map_next(&a->users[s].by_name, &pos))) {
                const struct auth_user *u = slot->value;
                rows[k++] = (struct user_row){u->name, sources[s], u->has_scram};
            }
        }
        n = k;
        if (n)
            qsort(rows, n, sizeof(*rows), by_name);
        obj = cJSON_CreateObject();
        if (!cJSON_AddNumberToObject(obj, "count", (double)n) || !(list = cJSON_AddArrayToObject(obj, "users"))) {
            cJSON_Delete(obj);
            obj = NULL;
        }
    }
    for (size_t i = 0; list && i < n && i < limit; i++) {
        cJSON *item = cJSON_CreateObject();
        if (!cJSON_AddStringToObject(item, "name", rows[i].name) ||
            !cJSON_AddStringToObject(item, "source", rows[i].source) ||
            !cJSON_AddBoolToObject(item, "scram", rows[i].scram) || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            cJSON_Delete(obj);
            obj = list = NULL;
        }
    }
    free(rows);
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    broker__admin_respond(c, 200, json_type, text, text ? strlen(text) : 0, NULL);
}

/* add and passwd: the password's hashes, made here, go into the log. */
static void user_set(struct broker *b, struct admin_conn *c, const struct admin_request *r, bool add)
{
    struct admin_user_req u;
    const char *why;
    char what[160];
    int rc = broker__admin_body_user(r->body, r->body_len, true, &u, &why);
    if (rc) {
        refuse(b, c, r, add ? "users add" : "users passwd", rc == -ENOMEM ? 500 : 400, why);
        return;
    }
    what_of(what, sizeof(what), add ? "users add" : "users passwd", u.name);
    bool known = map_get(&b->access.tables.users[AUTH_SOURCE_CLUSTER].by_name, u.name, strlen(u.name)) != NULL;
    if (add && known) {
        refuse(b, c, r, what, 409, "the user exists (starlingctl users passwd changes its password)");
        broker__admin_user_req_free(&u);
        return;
    }
    if (!add && !known) {
        refuse(b, c, r, what, 404, "no such user in the cluster");
        broker__admin_user_req_free(&u);
        return;
    }
    char hash[AUTH_HASH_TEXT_MAX];
    struct auth_scram scram;
    uint8_t scram_bytes[AUTH_SCRAM_ENCODED_MAX];
    size_t scram_len = 0;
    int hl = auth_password_hash((const uint8_t *)u.password, u.password_len, AUTH_CLUSTER_ITERATIONS, hash,
                                sizeof(hash));
    if (hl > 0 && auth_scram_derive((const uint8_t *)u.password, u.password_len, NULL, 0, AUTH_SCRAM_ITERATIONS,
                                    &scram) == 0)
        scram_len = auth_scram_encode(&scram, scram_bytes);
    OPENSSL_cleanse(&scram, sizeof(scram));
    struct change *ch = hl > 0 && scram_len ? change_new(b, c, r, add ? CH_USER_ADD : CH_USER_PASSWD, what) : NULL;
    if (ch) {
        struct cluster_cmd cmd = {.type = CLUSTER_USER_SET, .has_user = true, .user = pstr(u.name, strlen(u.name)),
                                  .topic = pstr(hash, (size_t)hl),
                                  .payload = {scram_bytes, (uint32_t)scram_len}};
        change_propose(ch, &cmd);
        change_commit(ch);
    } else if (hl <= 0 || !scram_len) {
        refuse(b, c, r, what, 500, "the password could not be hashed");
    }
    OPENSSL_cleanse(hash, sizeof(hash));
    OPENSSL_cleanse(scram_bytes, sizeof(scram_bytes));
    broker__admin_user_req_free(&u);
}

void broker__admin_users_add(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                             const struct admin_query *q)
{
    (void)q;
    user_set(b, c, r, true);
}

void broker__admin_users_passwd(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                const struct admin_query *q)
{
    (void)q;
    user_set(b, c, r, false);
}

void broker__admin_users_delete(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                const struct admin_query *q)
{
    (void)q;
    struct admin_user_req u;
    const char *why;
    char what[160];
    int rc = broker__admin_body_user(r->body, r->body_len, false, &u, &why);
    if (rc) {
        refuse(b, c, r, "users delete", rc == -ENOMEM ? 500 : 400, why);
        return;
    }
    what_of(what, sizeof(what), "users delete", u.name);
    struct change *ch = change_new(b, c, r, CH_USER_DEL, what);
    if (ch) {
        struct cluster_cmd cmd = {.type = CLUSTER_USER_DEL, .has_user = true, .user = pstr(u.name, strlen(u.name))};
        change_propose(ch, &cmd);
        change_commit(ch);
    }
    broker__admin_user_req_free(&u);
}

/* ?check=1: the file parsed, nothing imported (starlingctl checks every part
 * of a large file before importing any). */
static bool checked_only(struct admin_conn *c, const struct admin_query *q, size_t n)
{
    if (!broker__admin_query_find(q, "check"))
        return false;
    char text[64];
    int len = snprintf(text, sizeof(text), "{\"result\":\"checked\",\"count\":%zu}", n);
    broker__admin_respond(c, 200, json_type, strdup(text), (size_t)len, NULL);
    return true;
}

void broker__admin_users_import(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                                const struct admin_query *q)
{
    struct auth_users users;
    char err[256], why[300];
    int rc = auth_passwd_parse(r->body, r->body_len, &users, err, sizeof(err));
    if (rc) {
        snprintf(why, sizeof(why), "%s", rc == -ENOMEM ? "out of memory" : err);
        refuse(b, c, r, "users import", rc == -ENOMEM ? 500 : 400, why);
        return;
    }
    if (checked_only(c, q, users.by_name.count)) {
        auth_users_free(&users);
        return;
    }
    char what[64];
    snprintf(what, sizeof(what), "users import (%zu users)", users.by_name.count);
    struct change *ch = change_new(b, c, r, CH_USER_IMPORT, what);
    size_t pos = 0;
    struct map_slot *slot;
    while (ch && (slot = map_next(&users.by_name, &pos))) {
        const struct auth_user *u = slot->value;
        char hash[AUTH_HASH_TEXT_MAX];
        int hl = auth_verifier_format(&u->v, hash, sizeof(hash));
        if (hl <= 0)
            continue; /* cannot happen: the parser read it */
        /* a password file's users keep their hash and have no SCRAM credentials */
        struct cluster_cmd cmd = {.type = CLUSTER_USER_SET, .has_user = true, .user = pstr(u->name, slot->len),
                                  .topic = pstr(hash, (size_t)hl)};
        change_propose(ch, &cmd);
    }
    if (ch)
        change_commit(ch);
    auth_users_free(&users);
}

void broker__admin_users_count(const struct broker *b, uint64_t *users, uint64_t *rules)
{
    const struct auth_acl *acl = &b->access.tables.acl[AUTH_SOURCE_CLUSTER];
    *users = auth_users_count(&b->access.tables, AUTH_SOURCE_CLUSTER);
    *rules = acl->anon.count + acl->patterns.count;
    size_t pos = 0;
    struct map_slot *slot;
    while ((slot = map_next(&acl->by_user, &pos)))
        *rules += ((const struct auth_acl_user *)slot->value)->rules.count;
}

/* --- ACL rules ------------------------------------------------------------------------------ */

struct rule_row {
    int kind;
    const char *user;
    const struct auth_rule *rule;
    const char *source;
};

static int by_rule(const void *x, const void *y)
{
    const struct rule_row *a = x, *b = y;
    if (a->kind != b->kind)
        return a->kind - b->kind;
    int d = strcmp(a->user ? a->user : "", b->user ? b->user : "");
    if (!d)
        d = strcmp(a->rule->topic, b->rule->topic);
    return d ? d : strcmp(a->source, b->source);
}

struct rule_rows {
    struct rule_row *v;
    size_t n, cap;
    bool failed;
};

static void rows_add(struct rule_rows *rs, int kind, const char *user, const struct auth_rules *rules,
                     const char *source)
{
    for (uint32_t i = 0; i < rules->count && !rs->failed; i++) {
        if (rs->n == rs->cap) {
            size_t cap = rs->cap ? rs->cap * 2 : 64;
            struct rule_row *v = realloc(rs->v, cap * sizeof(*v));
            if (!v) {
                rs->failed = true;
                return;
            }
            rs->v = v;
            rs->cap = cap;
        }
        rs->v[rs->n++] = (struct rule_row){kind, user, &rules->v[i], source};
    }
}

void broker__admin_acl_get(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                           const struct admin_query *q)
{
    (void)r;
    static const char *const sources[AUTH_SOURCES] = {"file", "cluster"};
    uint64_t limit;
    if (!broker__admin_limit(c, q, &limit))
        return;
    const struct auth *a = &b->access.tables;
    struct rule_rows rs = {0};
    for (int s = 0; s < AUTH_SOURCES; s++) {
        rows_add(&rs, AUTH_RULE_ANONYMOUS, NULL, &a->acl[s].anon, sources[s]);
        size_t pos = 0;
        struct map_slot *slot;
        while ((slot = map_next(&a->acl[s].by_user, &pos))) {
            const struct auth_acl_user *u = slot->value;
            rows_add(&rs, AUTH_RULE_USER, u->name, &u->rules, sources[s]);
        }
        rows_add(&rs, AUTH_RULE_PATTERN, NULL, &a->acl[s].patterns, sources[s]);
    }
    if (rs.n)
        qsort(rs.v, rs.n, sizeof(*rs.v), by_rule);
    cJSON *obj = rs.failed ? NULL : cJSON_CreateObject(), *list = NULL;
    if (obj && (!cJSON_AddNumberToObject(obj, "count", (double)rs.n) || !(list = cJSON_AddArrayToObject(obj, "rules")))) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    for (size_t i = 0; list && i < rs.n && i < limit; i++) {
        const struct rule_row *row = &rs.v[i];
        cJSON *item = cJSON_CreateObject();
        if (!cJSON_AddStringToObject(item, "kind", kind_names[row->kind]) ||
            (row->user && !cJSON_AddStringToObject(item, "user", row->user)) ||
            !cJSON_AddStringToObject(item, "access", broker__admin_access_name(row->rule->access)) ||
            !cJSON_AddStringToObject(item, "topic", row->rule->topic) ||
            !cJSON_AddStringToObject(item, "source", row->source) || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            cJSON_Delete(obj);
            obj = list = NULL;
        }
    }
    free(rs.v);
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    broker__admin_respond(c, 200, json_type, text, text ? strlen(text) : 0, NULL);
}

static void acl_change(struct broker *b, struct admin_conn *c, const struct admin_request *r, bool add)
{
    struct admin_rule_req rule;
    const char *why;
    const char *verb = add ? "acl add" : "acl delete";
    int rc = broker__admin_body_rule(r->body, r->body_len, add, &rule, &why);
    if (rc) {
        refuse(b, c, r, verb, rc == -ENOMEM ? 500 : 400, why);
        return;
    }
    char what[160];
    snprintf(what, sizeof(what), "%s %s%s%.48s%s %s %.64s", verb, kind_names[rule.kind], rule.user ? " \"" : "",
             rule.user ? rule.user : "", rule.user ? "\"" : "", add ? broker__admin_access_name(rule.access) : "",
             rule.topic);
    struct change *ch = change_new(b, c, r, add ? CH_ACL_ADD : CH_ACL_DEL, what);
    if (ch) {
        struct cluster_cmd cmd = {.type = add ? CLUSTER_ACL_ADD : CLUSTER_ACL_DEL,
                                  .acl_kind = (uint8_t)rule.kind,
                                  .has_user = rule.user != NULL,
                                  .user = pstr(rule.user, rule.user ? strlen(rule.user) : 0),
                                  .topic = pstr(rule.topic, strlen(rule.topic)),
                                  .access = (uint8_t)(add ? rule.access : 0)};
        change_propose(ch, &cmd);
        change_commit(ch);
    }
    broker__admin_rule_req_free(&rule);
}

void broker__admin_acl_add(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                           const struct admin_query *q)
{
    (void)q;
    acl_change(b, c, r, true);
}

void broker__admin_acl_delete(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                              const struct admin_query *q)
{
    (void)q;
    acl_change(b, c, r, false);
}

static void propose_rules(struct change *ch, int kind, const char *user, const struct auth_rules *rules)
{
    for (uint32_t i = 0; i < rules->count; i++) {
        struct cluster_cmd cmd = {.type = CLUSTER_ACL_ADD,
                                  .acl_kind = (uint8_t)kind,
                                  .has_user = user != NULL,
                                  .user = pstr(user, user ? strlen(user) : 0),
                                  .topic = pstr(rules->v[i].topic, rules->v[i].len),
                                  .access = rules->v[i].access};
        change_propose(ch, &cmd);
    }
}

void broker__admin_acl_import(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                              const struct admin_query *q)
{
    struct auth_acl acl;
    char err[256], why[300];
    int rc = auth_acl_parse(r->body, r->body_len, &acl, err, sizeof(err));
    if (rc) {
        snprintf(why, sizeof(why), "%s", rc == -ENOMEM ? "out of memory" : err);
        refuse(b, c, r, "acl import", rc == -ENOMEM ? 500 : 400, why);
        return;
    }
    size_t n = acl.anon.count + acl.patterns.count, pos = 0;
    struct map_slot *slot;
    while ((slot = map_next(&acl.by_user, &pos)))
        n += ((const struct auth_acl_user *)slot->value)->rules.count;
    if (checked_only(c, q, n)) {
        auth_acl_free(&acl);
        return;
    }
    char what[64];
    snprintf(what, sizeof(what), "acl import (%zu rules)", n);
    struct change *ch = change_new(b, c, r, CH_ACL_IMPORT, what);
    if (ch) {
        propose_rules(ch, AUTH_RULE_ANONYMOUS, NULL, &acl.anon);
        pos = 0;
        while ((slot = map_next(&acl.by_user, &pos))) {
            const struct auth_acl_user *u = slot->value;
            propose_rules(ch, AUTH_RULE_USER, u->name, &u->rules);
        }
        propose_rules(ch, AUTH_RULE_PATTERN, NULL, &acl.patterns);
        change_commit(ch);
    }
    auth_acl_free(&acl);
}
