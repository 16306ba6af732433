/* listeners: what an MQTT listener's transport needs beyond its socket. A tls
 * (or wss) listener builds its TLS context from its files at start, and a
 * file that cannot be loaded fails the start in one line naming the listener,
 * the file and the reason. Every accepted connection gets its own filter stack
 * on the listener's current context (transport.h). SIGHUP rebuilds every
 * context from the same files: on success the new one serves new connections
 * while open ones keep the context they started with (their SSL objects hold
 * a reference to it); on failure the old one stays and one line says why.
 * The peer links' contexts (cluster_certfile, ...) are reloaded alike. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "tls.h"
#include "transport.h"
#include "transport_ws.h"

static bool uses_tls(const struct listener *l)
{
    return strcmp(l->cfg.transport, "tls") == 0 || strcmp(l->cfg.transport, "wss") == 0;
}

static bool uses_ws(const struct listener *l)
{
    return strcmp(l->cfg.transport, "ws") == 0 || strcmp(l->cfg.transport, "wss") == 0;
}

static bool tls_keys_set(const struct config_listener *c)
{
    return c->certfile[0] || c->keyfile[0] || c->cafile[0] || c->capath[0] || c->crlfile[0] || c->ciphers[0] ||
           c->ciphersuites[0] || c->tls_version[0] || c->require_certificate || c->use_identity_as_username;
}

/* "listener 0.0.0.0:8883 (tls)", the name lines about it start with */
static void listener_name(const struct listener *l, char *out, size_t outlen)
{
    snprintf(out, outlen, strchr(l->cfg.bind, ':') ? "listener [%s]:%u (%s)" : "listener %s:%u (%s)", l->cfg.bind,
             l->cfg.port, l->cfg.transport);
}

static int ctx_build(const struct listener *l, struct tls_ctx **out, char *err, size_t errlen)
{
    const struct config_listener *c = &l->cfg;
    struct tls_config tc = {
        .certfile = c->certfile,
        .keyfile = c->keyfile,
        .cafile = c->cafile,
        .capath = c->capath,
        .crlfile = c->crlfile,
        .ciphers = c->ciphers,
        .ciphersuites = c->ciphersuites,
        .tls_version = c->tls_version,
        .require_certificate = c->require_certificate,
    };
    char why[400];
    int rc = tls_ctx_new(&tc, true, out, why, sizeof(why));
    if (rc) {
        char name[128];
        listener_name(l, name, sizeof(name));
        snprintf(err, errlen, "%s: %s", name, why);
    }
    return rc;
}

int broker__listener_prepare(struct broker *b, struct listener *l, char *err, size_t errlen)
{
    char name[128];
    (void)b;
    listener_name(l, name, sizeof(name));
    const char *t = l->cfg.transport[0] ? l->cfg.transport : "tcp";
    if (strcmp(t, "tcp") != 0 && strcmp(t, "tls") != 0 && !uses_ws(l)) {
        snprintf(err, errlen, "%s: transport \"%s\" is not supported by this build", name, t);
        return -EINVAL;
    }
    if (l->cfg.ws_path[0] && !uses_ws(l)) {
        snprintf(err, errlen, "%s: ws_path given for a listener without WebSocket; use `listener PORT ADDRESS ws`",
                 name);
        return -EINVAL;
    }
    if (uses_ws(l)) {
        /* the path is checked here once, so that a connection's filter cannot fail on it */
        struct filter *probe;
        if (transport_ws_new(l->cfg.ws_path, 0, &probe) != 0) {
            snprintf(err, errlen, "%s: ws_path \"%s\" is not a path of at most %d bytes starting with '/'", name,
                     l->cfg.ws_path, TRANSPORT_WS_MAX_PATH);
            return -EINVAL;
        }
        probe->ops->free(probe);
    }
    if (!uses_tls(l)) {
        if (tls_keys_set(&l->cfg)) {
            snprintf(err, errlen, "%s: TLS settings (certfile, cafile, ...) given for a listener without TLS; "
                     "use `listener PORT ADDRESS tls`", name);
            return -EINVAL;
        }
        return 0;
    }
    if (l->cfg.use_identity_as_username && !l->cfg.require_certificate) {
        snprintf(err, errlen, "%s: use_identity_as_username needs require_certificate true", name);
        return -EINVAL;
    }
    return ctx_build(l, &l->tls, err, errlen);
}

/* tls: [tls]; ws: [ws]; wss: [tls, ws] (transport.h) */
int broker__listener_stack(struct listener *l, struct transport **out)
{
    *out = NULL;
    if (!uses_tls(l) && !uses_ws(l))
        return 0;
    struct transport *t;
    struct filter *f;
    int rc = transport_new(uses_tls(l) ? (uses_ws(l) ? "wss" : "tls") : "ws", &t);
    if (rc)
        return rc;
    if (uses_tls(l)) {
        rc = transport_tls_filter_new(l->tls, &f);
        if (rc)
            goto free_stack;
        transport_push(t, f);
    }
    if (uses_ws(l)) {
        /* a frame may carry a whole packet of max_packet_size and a little more */
        rc = transport_ws_new(l->cfg.ws_path, (uint64_t)l->b->cfg.max_packet_size + TRANSPORT_WS_FRAME_SLACK, &f);
        if (rc)
            goto free_stack;
        transport_push(t, f);
    }
    *out = t;
    return 0;

free_stack:
    transport_free(t);
    return rc;
}

void broker__listeners_reload(struct broker *b)
{
    int reloaded = 0, failed = 0;
    for (int i = 0; i < b->listener_count; i++) {
        struct listener *l = &b->listeners[i];
        if (!l->tls)
            continue;
        char err[600];
        struct tls_ctx *ctx;
        if (ctx_build(l, &ctx, err, sizeof(err)) != 0) {
            LOG(b, LOG_WARN, NULL, "SIGHUP: %s; keeping the certificates loaded before", err);
            failed++;
            continue;
        }
        tls_ctx_free(l->tls); /* open connections hold their own reference */
        l->tls = ctx;
        reloaded++;
    }
    LOG(b, LOG_INFO, NULL, "SIGHUP: TLS certificates reloaded on %d listener(s)%s", reloaded,
        failed ? ", see above for the others" : "");
    char err[600];
    int rc = b->cluster ? cluster_tls_reload(b->cluster, err, sizeof(err)) : 0;
    if (rc < 0)
        LOG(b, LOG_WARN, NULL, "SIGHUP: %s; the peer links keep the certificates loaded before", err);
    else if (rc > 0)
        LOG(b, LOG_INFO, NULL, "SIGHUP: TLS certificates of the peer links reloaded (new links use them)");
}

void broker__listener_free(struct listener *l)
{
    if (l->tls)
        tls_ctx_free(l->tls);
    l->tls = NULL;
}

const char *broker__listener_describe(const struct listener *l)
{
    if (uses_ws(l))
        return uses_tls(l) ? "mqtt/wss" : "mqtt/ws";
    return uses_tls(l) ? "mqtt/tls" : "mqtt/tcp";
}

void broker__transport_going_away(struct transport *t)
{
    for (int i = 0; t && i < t->n; i++)
        if (strcmp(t->f[i]->ops->name, "ws") == 0)
            transport_ws_going_away(t->f[i]);
}
