/* access: the broker's use of auth.c: the password and ACL files loaded at
 * start and again on SIGHUP, whether anonymous clients are let in, the
 * CONNECT check (logged with the peer, counted, its refusal delayed for an
 * address that keeps failing), and the topic checks of a connection and of a
 * session.
 *
 * The anonymous rule (docs/auth.md): allow_anonymous true or false decides;
 * not set, anonymous clients are let in only while no password_file is given
 * and every MQTT listener is on loopback, so that a node reachable from the
 * network never starts open by default. Users of the replicated state count
 * as a password file does: while there is one, the unset default refuses
 * anonymous clients. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "internal.h"
#include "transport.h"

static bool on_loopback(const char *bind)
{
    return strncmp(bind, "127.", 4) == 0 || strcmp(bind, "::1") == 0;
}

/* Empty tables of one source, ready to fill or to swap in. */
static void tables_empty(struct auth_users *users, struct auth_acl *acl)
{
    memset(users, 0, sizeof(*users));
    memset(acl, 0, sizeof(*acl));
    map_init(&users->by_name);
    map_init(&acl->by_user);
}

/* Loads the files the configuration names into fresh tables, then swaps
 * them in: a file that does not load leaves the old tables. */
static int access_load(struct broker *b, char *err, size_t errlen)
{
    const struct config *cfg = &b->cfg;
    struct auth_users users;
    struct auth_acl acl;
    tables_empty(&users, &acl);
    int rc = 0;
    if (cfg->password_file[0] && (rc = auth_passwd_load(cfg->password_file, &users, err, errlen)) != 0)
        return rc;
    if (cfg->acl_file[0] && (rc = auth_acl_load(cfg->acl_file, &acl, err, errlen)) != 0) {
        auth_users_free(&users);
        return rc;
    }
    auth_users_replace(&b->access.tables, AUTH_SOURCE_FILE, &users);
    auth_acl_replace(&b->access.tables, AUTH_SOURCE_FILE, &acl);
    return 0;
}

static void on_sighup(uv_signal_t *h, int signum)
{
    struct broker *b = h->data;
    (void)signum;
    char err[512];
    if (!b->cfg.password_file[0] && !b->cfg.acl_file[0])
        return;
    if (access_load(b, err, sizeof(err)) != 0) {
        LOG(b, LOG_ERROR, NULL, "SIGHUP: %s: the previous users and ACL stay in force", err);
        return;
    }
    LOG(b, LOG_INFO, NULL, "SIGHUP: reloaded%s%s%s%s", b->cfg.password_file[0] ? " password_file " : "",
        b->cfg.password_file, b->cfg.acl_file[0] ? " acl_file " : "", b->cfg.acl_file);
}

int broker__access_start(struct broker *b, char *err, size_t errlen)
{
    const struct config *cfg = &b->cfg;
    int rc = access_load(b, err, errlen);
    if (rc)
        return rc;
    if (auth_throttle_init(&b->access.throttle) != 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    const char *open_at = NULL;
    for (int i = 0; i < cfg->listener_count && !open_at; i++)
        if (!on_loopback(cfg->listeners[i].bind))
            open_at = cfg->listeners[i].bind;
    if (cfg->allow_anonymous >= 0)
        b->access.anonymous = cfg->allow_anonymous == 1;
    else
        b->access.anonymous = !cfg->password_file[0] && !open_at;
    if (b->access.anonymous && open_at)
        LOG(b, LOG_WARN, NULL,
            "WARNING: allow_anonymous is true and a listener is bound to %s: anyone who can reach it connects "
            "without a password%s", open_at, cfg->acl_file[0] ? " (the acl_file's anonymous rules apply)" : " and may "
            "read and write every topic");
    else if (!b->access.anonymous && cfg->allow_anonymous < 0 && !cfg->password_file[0])
        LOG(b, LOG_WARN, NULL,
            "anonymous clients are refused (0x87 / 0x05): a listener is bound to %s and no password_file is set; "
            "bind to 127.0.0.1, set a password_file, or allow_anonymous true (see docs/auth.md)", open_at);
    uv_signal_init(b->loop, &b->access.sighup);
    b->access.sighup.data = b;
    uv_signal_start(&b->access.sighup, on_sighup, SIGHUP);
    return 0;
}

void broker__access_stop(struct broker *b)
{
    uv_handle_t *h = (uv_handle_t *)&b->access.sighup;
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

void broker__access_free(struct broker *b)
{
    auth_free(&b->access.tables);
    auth_throttle_free(&b->access.throttle);
}

/* --- CONNECT ------------------------------------------------------------------ */

static void on_refusal_due(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state != CONN_CLAIMING)
        return;
    c->state = CONN_NEW;
    broker__connect_refuse(c, c->refusal);
}

/* A failed attempt: logged with the peer, counted, refused at once or, for
 * an address that keeps failing, after a delay (the connection reads nothing
 * meanwhile, and its socket counts as any other). */
void broker__access_failed(struct conn *c, uint8_t reason, const char *why)
{
    struct broker *b = c->b;
    b->stats.auth_failures++;
    char host[BROKER_PEER_LEN];
    broker__conn_peer(c, host);
    char *colon = strrchr(host, ':'); /* address:port */
    if (colon)
        *colon = '\0';
    uint32_t delay = auth_throttle_fail(&b->access.throttle, host, broker__now(b));
    LOG(b, LOG_WARN, c, "authentication failed: %s (user %s%s%s)%s", why, c->username ? "\"" : "",
        c->username ? c->username : "none", c->username ? "\"" : "", delay ? ": refusal delayed" : "");
    if (!delay) {
        broker__connect_refuse(c, reason);
        return;
    }
    c->refusal = reason;
    c->state = CONN_CLAIMING; /* reads nothing more, and the connect timeout is off */
    uv_timer_t *t = broker__conn_timer(c);
    if (!t) {
        c->state = CONN_NEW;
        broker__connect_refuse(c, reason);
        return;
    }
    uv_timer_start(t, on_refusal_due, delay, 0);
}

int broker__access_connect(struct conn *c, const struct proto_connect *cp, bool *owned)
{
    struct broker *b = c->b;
    struct auth *a = &b->access.tables;
    *owned = false;
    /* a listener with use_identity_as_username: the verified certificate is
     * the credential (as in Mosquitto, no password is asked for) and its name
     * the user, whatever the CONNECT says */
    bool from_cert = c->listener && c->listener->cfg.use_identity_as_username;
    if (c->scram) {
        /* authenticated by the AUTH exchange (enhanced.c): c->username is set */
        *owned = true;
    } else if (from_cert) {
        char id[256];
        if (!c->tr || transport_identity(c->tr, id, sizeof(id)) != 0) {
            broker__access_failed(c, PROTO_RC_NOT_AUTHORIZED, "use_identity_as_username: the client certificate has no usable name");
            return -EACCES;
        }
        if (!(c->username = strdup(id)))
            return -ENOMEM;
        *owned = true;
    } else if (cp->has_username && !(c->username = str_dup_len((const char *)cp->username.p, cp->username.len)))
        return -ENOMEM;
    if (!c->scram && !from_cert && cp->has_username && strlen(c->username) != cp->username.len) {
        broker__access_failed(c, PROTO_RC_BAD_USERNAME_PASSWORD, "a NUL in the user name");
        return -EACCES;
    }
    if (!c->username) {
        bool anonymous = b->access.anonymous &&
                         (b->cfg.allow_anonymous >= 0 || auth_users_count(a, AUTH_SOURCE_CLUSTER) == 0);
        if (!anonymous) {
            broker__access_failed(c, PROTO_RC_NOT_AUTHORIZED, "anonymous clients are not allowed");
            return -EACCES;
        }
    } else if (!c->scram && !from_cert && auth_users_on(a)) {
        int rc = auth_password_check(a, c->username, cp->username.len, cp->has_password ? cp->password.p : NULL,
                                     cp->has_password ? cp->password.len : 0);
        if (rc == -ENOMEM)
            return rc;
        if (rc) {
            broker__access_failed(c, PROTO_RC_BAD_USERNAME_PASSWORD,
                           rc == AUTH_EUNKNOWN ? "unknown user" : cp->has_password ? "wrong password" : "no password");
            return -EACCES;
        }
        *owned = true;
    }
    /* anonymous clients own their sessions too when users are checked: a
     * user's session is not for them, nor theirs for a user */
    if (!c->username && auth_users_on(a))
        *owned = true;
    auth_who_free(&c->who);
    auth_who_set(&c->who, c->username, c->username ? strlen(c->username) : 0, c->client_id, strlen(c->client_id));
    if (cp->will && !auth_allowed(a, &c->who, (const char *)cp->will_topic.p, cp->will_topic.len, AUTH_WRITE)) {
        LOG(b, LOG_INFO, c, "CONNECT refused: the ACL does not allow the will topic");
        broker__connect_refuse(c, PROTO_RC_NOT_AUTHORIZED);
        return -EACCES;
    }
    return 0;
}

bool broker__access_clientid_refused(const struct conn *c)
{
    if (!c->b->cfg.require_clientid_username || !c->username)
        return false;
    /* the name itself, or NAME:anything: a name from a password file never
     * holds ':', so no user's ids are another user's */
    size_t ul = strlen(c->username), il = strlen(c->client_id);
    if (il < ul || memcmp(c->client_id, c->username, ul) != 0)
        return true;
    return !(il == ul || c->client_id[ul] == ':');
}

/* --- topics ------------------------------------------------------------------ */

bool broker__access_publish(struct conn *c, const char *topic, size_t len)
{
    return auth_allowed(&c->b->access.tables, &c->who, topic, len, AUTH_WRITE);
}

bool broker__access_subscribe(struct conn *c, const char *filter, size_t len)
{
    return auth_subscribe_allowed(&c->b->access.tables, &c->who, filter, len);
}

bool broker__access_receive(struct session *s, const struct msg *m)
{
    const struct auth *a = &s->b->access.tables;
    if (!auth_acl_on(a))
        return true;
    return auth_allowed(a, &s->who, m->topic, m->topic_len, AUTH_READ);
}

int broker__access_session_user(struct session *s, bool has_user, struct proto_str user)
{
    bool same = s->has_user == has_user && (!has_user || (s->user_len == user.len &&
                                                          (!user.len || memcmp(s->user, user.p, user.len) == 0)));
    if (!same) {
        char *copy = has_user ? str_dup_len((const char *)user.p, user.len) : NULL;
        if (has_user && !copy)
            return -ENOMEM;
        free(s->user);
        s->user = copy;
        s->user_len = has_user ? user.len : 0;
        s->has_user = has_user;
    }
    auth_who_free(&s->who);
    auth_who_set(&s->who, s->has_user ? s->user : NULL, s->user_len, s->client_id, s->id_len);
    return 0;
}

/* --- the replicated users and rules ------------------------------------------------ */

int broker__access_apply(struct broker *b, const struct cluster_cmd *cmd)
{
    struct auth *a = &b->access.tables;
    const char *name = (const char *)cmd->user.p;
    size_t nl = cmd->has_user ? cmd->user.len : 0;
    switch (cmd->type) {
    case CLUSTER_USER_SET: {
        struct auth_verifier v;
        struct auth_scram scram;
        char why[160];
        if (auth_verifier_parse((const char *)cmd->topic.p, cmd->topic.len, &v, why, sizeof(why)) != 0) {
            LOG(b, LOG_ERROR, NULL, "replicated user \"%.*s\" ignored: its hash: %s", (int)(nl > 64 ? 64 : nl),
                name, why);
            return 0;
        }
        bool has_scram = cmd->payload.len && auth_scram_decode(cmd->payload.p, cmd->payload.len, &scram) == 0;
        return auth_user_set(a, AUTH_SOURCE_CLUSTER, name, nl, &v, has_scram ? &scram : NULL);
    }
    case CLUSTER_USER_DEL:
        auth_user_del(a, AUTH_SOURCE_CLUSTER, name, nl);
        return 0;
    case CLUSTER_ACL_ADD: {
        char why[160];
        int rc = auth_rule_set(a, AUTH_SOURCE_CLUSTER, cmd->acl_kind, name, nl, (const char *)cmd->topic.p,
                               cmd->topic.len, cmd->access, why, sizeof(why));
        if (rc == -EINVAL) {
            LOG(b, LOG_ERROR, NULL, "replicated ACL rule ignored: %s", why);
            return 0;
        }
        return rc;
    }
    case CLUSTER_ACL_DEL:
        auth_rule_del(a, AUTH_SOURCE_CLUSTER, cmd->acl_kind, name, nl, (const char *)cmd->topic.p, cmd->topic.len);
        return 0;
    }
    return 0;
}

void broker__access_cluster_clear(struct broker *b)
{
    struct auth_users users;
    struct auth_acl acl;
    tables_empty(&users, &acl);
    auth_users_replace(&b->access.tables, AUTH_SOURCE_CLUSTER, &users);
    auth_acl_replace(&b->access.tables, AUTH_SOURCE_CLUSTER, &acl);
}
