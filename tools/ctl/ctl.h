/* ctl: starlingctl's parts: the node's address, a blocking HTTP/1.1 client
 * (HTTPS through common/tls.h when the node's admin API has a certificate)
 * for its admin API, and the exit codes the commands end with. */
#ifndef STARLING_TOOLS_CTL_H
#define STARLING_TOOLS_CTL_H

#include <stdbool.h>
#include <stddef.h>

enum ctl_exit {
    CTL_EXIT_OK = 0,          /* done, or nothing to do */
    CTL_EXIT_FAILED = 1,      /* the node refused, or the operation failed */
    CTL_EXIT_USAGE = 2,       /* bad command line */
    CTL_EXIT_UNREACHABLE = 3, /* the node did not answer */
};

#define CTL_DEFAULT_URL "http://127.0.0.1:18083"
#define CTL_DEFAULT_PORT "18083"

struct tls_ctx;

/* Where the admin API is. */
struct ctl_target {
    char host[256];  /* a name or an address literal, without brackets */
    char port[8];
    char url[300];   /* http(s)://HOST:PORT, for messages */
    bool https;
    struct tls_ctx *tls; /* set by ctl_tls_setup when https; owned */
};

/* Parses http://HOST[:PORT][/] or https://... (HOST a name, an IPv4 literal
 * or a bracketed IPv6 literal; PORT 1..65535, CTL_DEFAULT_PORT when absent)
 * into t. Returns 0, or -EINVAL with a message in err. */
int ctl_url_parse(const char *url, struct ctl_target *t, char *err, size_t errlen);

/* The same from a host and a port given apart (NULL: the defaults). */
int ctl_target_set(struct ctl_target *t, const char *host, const char *port, bool https, char *err,
                   size_t errlen);

/* HTTPS: the TLS client context for t (t->https must be set). cafile: the CAs
 * the node's certificate must chain to (NULL: the system's); certfile and
 * keyfile: a client certificate for a node with admin_cafile (NULL: none);
 * insecure: do not verify the node at all. Paths are read now. 0, or -EINVAL
 * with a message naming the file in err. */
int ctl_tls_setup(struct ctl_target *t, const char *cafile, const char *certfile, const char *keyfile,
                  bool insecure, char *err, size_t errlen);

/* Releases what ctl_tls_setup made. */
void ctl_target_free(struct ctl_target *t);

struct ctl_response {
    int status;      /* HTTP status */
    char *body;      /* NUL-terminated, malloc'd; free with ctl_response_free */
    size_t len;
};

void ctl_response_free(struct ctl_response *r);

enum {
    CTL_EREACH = -1,    /* no connection, or it broke / timed out before a whole response */
    CTL_EPROTOCOL = -2, /* what came back is not an HTTP response */
    CTL_ETLS = -3,      /* the TLS handshake failed (the node's certificate did not verify, ...) */
};

/* One request (Connection: close) to t: method, target (path and query,
 * already percent-encoded), an optional bearer token and JSON body (NULL:
 * none). timeout_s bounds the whole exchange. Returns 0 with the response in
 * out, or CTL_EREACH / CTL_EPROTOCOL / CTL_ETLS with a message in err. */
int ctl_http_request(const struct ctl_target *t, const char *method, const char *target, const char *token,
                     const char *body, double timeout_s, struct ctl_response *out, char *err, size_t errlen);

/* users.c: the users and acl commands (argv[0] is "users" or "acl"). Returns
 * the exit code. */
struct ctl_call {
    const struct ctl_target *target;
    const char *token;
    bool json;
    double timeout;
    const char *password;     /* --password, or NULL */
    const char *acl_user;     /* --user, or NULL */
    bool acl_pattern, acl_anonymous;
    long limit;               /* --limit for the listings; -1: the node's default */
};
int ctl_users_cmd(const struct ctl_call *o, int argc, char **argv);
int ctl_acl_cmd(const struct ctl_call *o, int argc, char **argv);

/* s percent-encoded for a query string (everything but A-Z a-z 0-9 - . _ ~);
 * malloc'd, NULL when out of memory. */
char *ctl_pct_encode(const char *s);

#endif
