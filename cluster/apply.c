/* apply: what a committed command does to the store, decided from the store
 * alone so that every node reaches the same result; the replicated state read
 * back as commands (for the broker's in-memory indexes) and as a text dump.
 *
 *   session_claim    the client id is owned by (node, generation); clean start
 *                    drops the old session and its subscriptions first.
 *                    Result 1 when a session was resumed (session present).
 *   session_release  the owner's connection ended: expire_at is recorded, and
 *                    the will is dropped unless it is still pending.
 *   session_expire   ends the session of that generation and its subscriptions.
 *   sub_add/sub_del  only for the session's current generation (else stale);
 *                    result 1 when it replaced / removed one.
 *   retain_set/del   set or clear the retained message of a topic.
 *   user_set/del     create, replace or delete a user (result 1: replaced /
 *                    deleted); acl_add/del the same for a topic rule. A
 *                    malformed one fails alone (ECORRUPT); a new user or rule
 *                    beyond CLUSTER_MAX_USERS / CLUSTER_MAX_RULES fails with
 *                    CLUSTER_ELIMIT. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static struct store_bytes bytes(struct proto_str s) { return (struct store_bytes){s.p, s.len}; }

static struct proto_str pstr(struct store_bytes b) { return (struct proto_str){b.p, (uint32_t)b.len}; }

static int current_session(struct store_txn *txn, const struct cluster_cmd *cmd, struct store_session *rec)
{
    int rc = store_session_get(txn, cmd->client_id.p, cmd->client_id.len, rec);
    if (rc == STORE_ENOTFOUND)
        return CLUSTER_ESTALE;
    if (rc)
        return rc;
    return rec->generation == cmd->generation ? 0 : CLUSTER_ESTALE;
}

/* Whether the claim's identity is the one the session belongs to: a session
 * owned by a user (or by the anonymous) is claimed by that identity only;
 * one without an owner (written before owners were, or by a node that does
 * not authenticate) by anyone. */
static bool claim_permitted(const struct store_session *old, const struct cluster_cmd *cmd)
{
    if (!old->owned)
        return true;
    if (old->has_user != cmd->has_user)
        return false;
    return !old->has_user ||
           (old->user.len == cmd->user.len && (!cmd->user.len || memcmp(old->user.p, cmd->user.p, cmd->user.len) == 0));
}

static int apply_claim(struct store_txn *txn, const struct cluster_cmd *cmd)
{
    struct store_session old;
    int rc = store_session_get(txn, cmd->client_id.p, cmd->client_id.len, &old);
    if (rc && rc != STORE_ENOTFOUND)
        return rc;
    bool existed = rc == 0;
    if (existed && !claim_permitted(&old, cmd))
        return CLUSTER_EPERM; /* decided by the store alone: the same on every node */
    if (existed && cmd->clean_start) {
        rc = store_session_del(txn, cmd->client_id.p, cmd->client_id.len);
        if (rc && rc != STORE_ENOTFOUND)
            return rc;
    }
    struct store_session rec = {
        .client_id = bytes(cmd->client_id),
        .owner = cmd->node,
        .generation = cmd->generation,
        .expiry = cmd->expiry,
        .connected = true,
        .has_will = cmd->has_will,
        .has_user = cmd->has_user,
        .owned = cmd->owned,
        .user = bytes(cmd->user),
    };
    if (cmd->has_will) {
        rec.will_qos = cmd->will.qos;
        rec.will_retain = cmd->will.retain;
        rec.will_delay = cmd->will.delay;
        rec.will_topic = bytes(cmd->will.topic);
        rec.will_payload = bytes(cmd->will.payload);
        rec.will_props = bytes(cmd->will.props);
    }
    rc = store_session_put(txn, &rec);
    if (rc)
        return rc;
    return existed && !cmd->clean_start ? 1 : 0;
}

/* The rule a command names, checked: -EINVAL for a malformed one. */
static int acl_rule(const struct cluster_cmd *cmd, struct store_acl_rule *out)
{
    if (cmd->acl_kind > CLUSTER_ACL_PATTERN || (cmd->acl_kind == CLUSTER_ACL_USER) != cmd->has_user ||
        cmd->topic.len > 65535 || proto_topic_filter_check(cmd->topic.p, cmd->topic.len) != 0)
        return -EINVAL;
    *out = (struct store_acl_rule){
        .kind = cmd->acl_kind,
        .user = cmd->has_user ? bytes(cmd->user) : (struct store_bytes){NULL, 0},
        .topic = bytes(cmd->topic),
        .access = cmd->access,
    };
    return 0;
}

/* Whether a table of n records may take one more (key not there yet). */
static int room(int found, size_t n, size_t max)
{
    if (found == 0)
        return 0;
    return found == STORE_ENOTFOUND ? (n >= max ? CLUSTER_ELIMIT : 0) : found;
}

static int apply_auth(struct store_txn *txn, const struct cluster_cmd *cmd)
{
    struct store_acl_rule rule;
    size_t n;
    int rc;
    switch (cmd->type) {
    case CLUSTER_USER_SET: {
        if (!cmd->has_user || !cmd->topic.len)
            return -EINVAL;
        struct store_user u = {.name = bytes(cmd->user), .hash = bytes(cmd->topic), .scram = bytes(cmd->payload)};
        struct store_user old;
        if ((rc = store_users_count(txn, &n)) != 0 ||
            (rc = room(store_user_get(txn, u.name.p, u.name.len, &old), n, CLUSTER_MAX_USERS)) != 0)
            return rc;
        return store_user_put(txn, &u);
    }
    case CLUSTER_USER_DEL:
        return cmd->has_user ? store_user_del(txn, cmd->user.p, cmd->user.len) : -EINVAL;
    case CLUSTER_ACL_ADD: {
        if ((rc = acl_rule(cmd, &rule)) != 0 || (rc = store_acl_count(txn, &n)) != 0)
            return rc;
        if (n >= CLUSTER_MAX_RULES) {
            /* a full table takes only a change of an existing rule */
            rc = store_acl_del(txn, &rule);
            if (rc <= 0)
                return rc < 0 ? rc : CLUSTER_ELIMIT;
            rc = store_acl_put(txn, &rule);
            return rc < 0 ? rc : 1;
        }
        return store_acl_put(txn, &rule);
    }
    default: /* CLUSTER_ACL_DEL */
        if ((rc = acl_rule(cmd, &rule)) != 0)
            return rc;
        return store_acl_del(txn, &rule);
    }
}

int cluster__state_apply(struct store_txn *txn, const struct cluster_cmd *cmd)
{
    struct store_session rec;
    int rc;
    switch (cmd->type) {
    case CLUSTER_SESSION_CLAIM:
        return apply_claim(txn, cmd);
    case CLUSTER_SESSION_RELEASE:
        if ((rc = current_session(txn, cmd, &rec)) != 0)
            return rc;
        rec.connected = false;
        rec.expire_at_ms = cmd->expire_at_ms;
        if (!cmd->has_will)
            rec.has_will = false; /* published or suppressed when the connection ended */
        return store_session_put(txn, &rec);
    case CLUSTER_SESSION_EXPIRE:
        if ((rc = current_session(txn, cmd, &rec)) != 0)
            return rc;
        rc = store_session_del(txn, cmd->client_id.p, cmd->client_id.len);
        return rc == STORE_ENOTFOUND ? 0 : rc;
    case CLUSTER_SUB_ADD: {
        if ((rc = current_session(txn, cmd, &rec)) != 0)
            return rc;
        struct store_sub sub = {
            .client_id = bytes(cmd->client_id),
            .filter = bytes(cmd->filter),
            .qos = cmd->qos,
            .no_local = cmd->no_local,
            .retain_as_published = cmd->retain_as_published,
            .retain_handling = cmd->retain_handling,
            .sub_id = cmd->sub_id,
        };
        return store_sub_put(txn, &sub);
    }
    case CLUSTER_SUB_DEL:
        if ((rc = current_session(txn, cmd, &rec)) != 0)
            return rc;
        return store_sub_del(txn, cmd->client_id.p, cmd->client_id.len, cmd->filter.p, cmd->filter.len);
    case CLUSTER_RETAIN_SET: {
        struct store_retained r = {
            .topic = bytes(cmd->topic),
            .payload = bytes(cmd->payload),
            .props = bytes(cmd->props),
            .qos = cmd->qos,
            .expire_at_ms = cmd->msg_expire_at_ms,
        };
        return store_retain_put(txn, &r);
    }
    case CLUSTER_RETAIN_DEL:
        rc = store_retain_del(txn, cmd->topic.p, cmd->topic.len);
        return rc < 0 ? rc : 0;
    case CLUSTER_USER_SET:
    case CLUSTER_USER_DEL:
    case CLUSTER_ACL_ADD:
    case CLUSTER_ACL_DEL:
        return apply_auth(txn, cmd);
    case CLUSTER_MSG_PUT:
    case CLUSTER_QUEUE_ACK:
    case CLUSTER_QUEUE_SENT:
    case CLUSTER_QUEUE_PUBREC:
    case CLUSTER_INBOUND_ADD:
    case CLUSTER_INBOUND_DEL:
        return cluster__durable_apply(txn, cmd);
    default: /* node join/leave: membership arrives with a later issue */
        return 0;
    }
}

/* --- the state as commands ------------------------------------------------------------ */

struct load_ctx {
    int (*cb)(void *arg, const struct cluster_cmd *cmd);
    void *arg;
    struct store_txn *txn;
};

static int load_session(void *arg, const struct store_session *s)
{
    struct load_ctx *x = arg;
    struct cluster_cmd cmd = {
        .type = CLUSTER_SESSION_CLAIM,
        .client_id = pstr(s->client_id),
        .node = s->owner,
        .generation = s->generation,
        .expiry = s->expiry,
        .expire_at_ms = s->expire_at_ms,
        .has_will = s->has_will,
        .released = !s->connected,
        .has_user = s->has_user,
        .owned = s->owned,
        .user = pstr(s->user),
    };
    if (s->has_will) {
        cmd.will.topic = pstr(s->will_topic);
        cmd.will.payload = pstr(s->will_payload);
        cmd.will.props = pstr(s->will_props);
        cmd.will.qos = s->will_qos;
        cmd.will.retain = s->will_retain;
        cmd.will.delay = s->will_delay;
    }
    return x->cb(x->arg, &cmd);
}

static int load_sub(void *arg, const struct store_sub *s)
{
    struct load_ctx *x = arg;
    struct store_session owner;
    int rc = store_session_get(x->txn, s->client_id.p, s->client_id.len, &owner);
    if (rc == STORE_ENOTFOUND)
        return 0; /* cannot happen: a session's end deletes its subscriptions */
    if (rc)
        return rc;
    struct cluster_cmd cmd = {
        .type = CLUSTER_SUB_ADD,
        .client_id = pstr(s->client_id),
        .generation = owner.generation,
        .filter = pstr(s->filter),
        .qos = s->qos,
        .no_local = s->no_local,
        .retain_as_published = s->retain_as_published,
        .retain_handling = s->retain_handling,
        .sub_id = s->sub_id,
    };
    return x->cb(x->arg, &cmd);
}

static int load_retained(void *arg, const struct store_retained *r)
{
    struct load_ctx *x = arg;
    struct cluster_cmd cmd = {
        .type = CLUSTER_RETAIN_SET,
        .topic = pstr(r->topic),
        .payload = pstr(r->payload),
        .props = pstr(r->props),
        .qos = r->qos,
        .msg_expire_at_ms = r->expire_at_ms,
    };
    return x->cb(x->arg, &cmd);
}

static int load_user(void *arg, const struct store_user *u)
{
    struct load_ctx *x = arg;
    struct cluster_cmd cmd = {
        .type = CLUSTER_USER_SET,
        .has_user = true,
        .user = pstr(u->name),
        .topic = pstr(u->hash),
        .payload = pstr(u->scram),
    };
    return x->cb(x->arg, &cmd);
}

static int load_rule(void *arg, const struct store_acl_rule *r)
{
    struct load_ctx *x = arg;
    struct cluster_cmd cmd = {
        .type = CLUSTER_ACL_ADD,
        .has_user = r->kind == CLUSTER_ACL_USER,
        .user = pstr(r->user),
        .topic = pstr(r->topic),
        .acl_kind = r->kind,
        .access = r->access,
    };
    return x->cb(x->arg, &cmd);
}

int cluster__state_load(struct store *s, int (*cb)(void *arg, const struct cluster_cmd *cmd), void *arg)
{
    struct store_txn *txn;
    int rc = store_read_begin(s, &txn);
    if (rc)
        return rc;
    struct load_ctx x = {cb, arg, txn};
    rc = store_sessions_foreach(txn, load_session, &x);
    if (!rc)
        rc = store_subs_foreach(txn, load_sub, &x);
    if (!rc)
        rc = store_retained_foreach(txn, load_retained, &x);
    if (!rc)
        rc = store_users_foreach(txn, load_user, &x);
    if (!rc)
        rc = store_acl_foreach(txn, load_rule, &x);
    store_txn_end(txn);
    return rc;
}

/* --- the dump ------------------------------------------------------------------------- */

static void put_quoted(FILE *f, struct store_bytes b)
{
    fputc('"', f);
    for (size_t i = 0; i < b.len; i++) {
        uint8_t ch = b.p[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch >= 0x20 && ch < 0x7F)
            fputc(ch, f);
        else
            fprintf(f, "\\x%02X", ch);
    }
    fputc('"', f);
}

static void put_hex(FILE *f, struct store_bytes b)
{
    for (size_t i = 0; i < b.len; i++)
        fprintf(f, "%02x", b.p[i]);
}

static int dump_session(void *arg, const struct store_session *s)
{
    FILE *f = arg;
    fputs("session ", f);
    put_quoted(f, s->client_id);
    fprintf(f, " owner=%" PRIu32 " generation=%" PRIu64 " expiry=%" PRIu32 " connected=%d expire_at=%" PRIu64,
            s->owner, s->generation, s->expiry, s->connected ? 1 : 0, s->expire_at_ms);
    if (s->has_user) {
        fputs(" user=", f);
        put_quoted(f, s->user);
    }
    if (s->owned)
        fputs(" owned=1", f);
    if (!s->has_will) {
        fputs(" will=none\n", f);
        return 0;
    }
    fputs(" will=", f);
    put_quoted(f, s->will_topic);
    fprintf(f, " will_qos=%u will_retain=%d will_delay=%" PRIu32 " will_payload=", s->will_qos,
            s->will_retain ? 1 : 0, s->will_delay);
    put_hex(f, s->will_payload);
    fputs(" will_props=", f);
    put_hex(f, s->will_props);
    fputc('\n', f);
    return 0;
}

static int dump_sub(void *arg, const struct store_sub *s)
{
    FILE *f = arg;
    fputs("sub ", f);
    put_quoted(f, s->client_id);
    fputc(' ', f);
    put_quoted(f, s->filter);
    fprintf(f, " qos=%u no_local=%d rap=%d rh=%u sub_id=%" PRIu32 "\n", s->qos, s->no_local ? 1 : 0,
            s->retain_as_published ? 1 : 0, s->retain_handling, s->sub_id);
    return 0;
}

static int dump_retained(void *arg, const struct store_retained *r)
{
    FILE *f = arg;
    fputs("retained ", f);
    put_quoted(f, r->topic);
    fprintf(f, " qos=%u expire_at=%" PRIu64 " payload=", r->qos, r->expire_at_ms);
    put_hex(f, r->payload);
    fputs(" props=", f);
    put_hex(f, r->props);
    fputc('\n', f);
    return 0;
}

/* Users show their name and whether they have SCRAM credentials, never a hash. */
static int dump_user(void *arg, const struct store_user *u)
{
    FILE *f = arg;
    fputs("user ", f);
    put_quoted(f, u->name);
    fprintf(f, " scram=%d\n", u->scram.len ? 1 : 0);
    return 0;
}

/* acl "KIND" "USER" "TOPIC" access=N (USER "" for the anonymous section and patterns) */
static int dump_rule(void *arg, const struct store_acl_rule *r)
{
    static const char *const kinds[] = {"anonymous", "user", "pattern"};
    FILE *f = arg;
    fprintf(f, "acl \"%s\" ", r->kind < 3 ? kinds[r->kind] : "?");
    put_quoted(f, r->user);
    fputc(' ', f);
    put_quoted(f, r->topic);
    fprintf(f, " access=%u\n", r->access);
    return 0;
}

static int dump_msg(void *arg, const struct store_msg *m)
{
    FILE *f = arg;
    fprintf(f, "msg \"%" PRIu64 "\" refs=%" PRIu32 " qos=%u retain=%d topic=", m->id, m->refs, m->qos,
            m->retain ? 1 : 0);
    put_quoted(f, m->topic);
    fputs(" payload=", f);
    put_hex(f, m->payload);
    fputc('\n', f);
    return 0;
}

static int dump_qentry(void *arg, const struct store_qentry *e)
{
    FILE *f = arg;
    fputs("queue ", f);
    put_quoted(f, e->client_id);
    fprintf(f, " \"%" PRIu64 "\" qos=%u state=%u pid=%u\n", e->msg_id, e->qos, e->state, e->pid);
    return 0;
}

static int dump_inbound(void *arg, struct store_bytes id, uint16_t pid)
{
    FILE *f = arg;
    fputs("inbound ", f);
    put_quoted(f, id);
    fprintf(f, " \"%u\"\n", pid);
    return 0;
}

int cluster__state_dump(struct store *s, void *file)
{
    FILE *f = file;
    struct store_txn *txn;
    int rc = store_read_begin(s, &txn);
    if (rc)
        return rc;
    fprintf(f, "applied_index %" PRIu64 "\n", store_applied_index(s));
    rc = store_sessions_foreach(txn, dump_session, f);
    if (!rc)
        rc = store_subs_foreach(txn, dump_sub, f);
    if (!rc)
        rc = store_retained_foreach(txn, dump_retained, f);
    if (!rc)
        rc = store_users_foreach(txn, dump_user, f);
    if (!rc)
        rc = store_acl_foreach(txn, dump_rule, f);
    if (!rc)
        rc = store_msgs_foreach(txn, dump_msg, f);
    if (!rc)
        rc = store_queue_foreach(txn, NULL, 0, dump_qentry, f);
    if (!rc)
        rc = store_inbound_foreach(txn, NULL, 0, dump_inbound, f);
    store_txn_end(txn);
    return rc;
}
