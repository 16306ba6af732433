/* client: starlingctl's blocking HTTP/1.1 client: the node's URL, one request
 * per connection over a TCP socket with a deadline for the whole exchange,
 * the response parsed with http-parser. HTTPS runs the memory-BIO engine of
 * common/tls.h over the same non-blocking socket and poll() deadlines: the
 * handshake first, then the request encrypted, the response decrypted. */
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h" /* common/: the response body as it arrives */
#include "ctl.h"
#include "tls.h" /* common/: HTTPS */

#define CTL_MAX_RESPONSE (256u << 20)

/* --- the node's address ------------------------------------------------------ */

int ctl_target_set(struct ctl_target *t, const char *host, const char *port, bool https, char *err,
                   size_t errlen)
{
    char *end;
    if (!host)
        host = "127.0.0.1";
    if (!port)
        port = CTL_DEFAULT_PORT;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (!*port || *end || errno || p < 1 || p > 65535) {
        snprintf(err, errlen, "port \"%s\" is not a number 1..65535", port);
        return -EINVAL;
    }
    if (!*host || strlen(host) >= sizeof(t->host)) {
        snprintf(err, errlen, "host \"%s\" is empty or too long", host);
        return -EINVAL;
    }
    snprintf(t->host, sizeof(t->host), "%s", host);
    snprintf(t->port, sizeof(t->port), "%ld", p);
    t->https = https;
    snprintf(t->url, sizeof(t->url), strchr(host, ':') ? "%s://[%s]:%s" : "%s://%s:%s", https ? "https" : "http",
             t->host, t->port);
    return 0;
}

int ctl_tls_setup(struct ctl_target *t, const char *cafile, const char *certfile, const char *keyfile,
                  bool insecure, char *err, size_t errlen)
{
    struct tls_config cfg = {
        .cafile = cafile,
        .certfile = certfile,
        .keyfile = keyfile,
        .insecure = insecure,
    };
    char why[300];
    if (tls_ctx_new(&cfg, false, &t->tls, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s", why);
        return -EINVAL;
    }
    return 0;
}

void ctl_target_free(struct ctl_target *t)
{
    tls_ctx_free(t->tls);
    t->tls = NULL;
}

int ctl_url_parse(const char *url, struct ctl_target *t, char *err, size_t errlen)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    bool https = strncmp(url, "https://", 8) == 0;
    if (!https && strncmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "--url %s: only http://HOST:PORT and https://HOST:PORT are supported", url);
        return -EINVAL;
    }
    if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 || !(u.field_set & (1u << UF_HOST)) ||
        (u.field_set & (1u << UF_USERINFO | 1u << UF_QUERY | 1u << UF_FRAGMENT))) {
        snprintf(err, errlen, "--url %s: not of the form http(s)://HOST:PORT", url);
        return -EINVAL;
    }
    if ((u.field_set & (1u << UF_PATH)) &&
        !(u.field_data[UF_PATH].len == 1 && url[u.field_data[UF_PATH].off] == '/')) {
        snprintf(err, errlen, "--url %s: give the node's address only, without a path", url);
        return -EINVAL;
    }
    char host[256], port[8] = CTL_DEFAULT_PORT;
    size_t hlen = u.field_data[UF_HOST].len;
    if (hlen >= sizeof(host)) {
        snprintf(err, errlen, "--url %s: the host name is too long", url);
        return -EINVAL;
    }
    memcpy(host, url + u.field_data[UF_HOST].off, hlen);
    host[hlen] = '\0';
    if (u.field_set & (1u << UF_PORT))
        snprintf(port, sizeof(port), "%u", u.port);
    return ctl_target_set(t, host, port, https, err, errlen);
}

char *ctl_pct_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_' || ch == '~') {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = '\0';
    return out;
}

/* --- one exchange ---------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until fd is ready for events or the deadline: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)(left * 1000) + 1);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

static int dial(const struct ctl_target *t, double deadline, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *list;
    int rc = getaddrinfo(t->host, t->port, &hints, &list);
    if (rc) {
        snprintf(err, errlen, "cannot reach %s: resolving %s: %s", t->url, t->host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    int fd = -1, last = ECONNREFUSED;
    for (struct addrinfo *ai = list; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        int e = errno == EINPROGRESS ? -wait_fd(fd, POLLOUT, deadline) : errno;
        if (e == 0) {
            socklen_t len = sizeof(e);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
                e = errno;
        }
        if (e != 0) {
            last = e;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    if (fd < 0)
        snprintf(err, errlen, "cannot reach %s: connect: %s", t->url,
                 last == ETIMEDOUT ? "timed out" : strerror(last));
    return fd;
}

struct reader {
    struct ctl_response *out;
    struct buf body; /* the body so far, then handed to out */
    bool complete, too_large;
};

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct reader *r = p->data;
    /* One byte beyond the body for its NUL. */
    if (len > CTL_MAX_RESPONSE - r->body.len || buf_reserve(&r->body, len + 1) != 0) {
        r->too_large = true;
        return -1;
    }
    buf_put_mem(&r->body, at, len);
    r->body.data[r->body.len] = '\0';
    return 0;
}

static int on_complete(http_parser *p)
{
    struct reader *r = p->data;
    r->complete = true;
    r->out->status = (int)p->status_code;
    return 0;
}

static int send_all(int fd, const char *data, size_t len, double deadline)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        int rc = n < 0 && (errno == EAGAIN || errno == EINTR) ? wait_fd(fd, POLLOUT, deadline) : -errno;
        if (rc)
            return rc;
    }
    return 0;
}

/* One connection to the node: a socket, and TLS on it for https. */
struct link {
    int fd;
    bool secure;
    struct tls_conn tls;
    struct buf plain; /* decrypted and not yet handed out */
    size_t plain_pos;
};

/* Sends what the TLS engine has for the wire. */
static int link_flush(struct link *l, double deadline)
{
    struct buf wire;
    buf_init(&wire);
    int rc = tls_conn_output(&l->tls, &wire);
    if (!rc && wire.len)
        rc = send_all(l->fd, (const char *)wire.data, wire.len, deadline);
    buf_free(&wire);
    return rc;
}

static int link_send(struct link *l, const char *data, size_t len, double deadline)
{
    if (!l->secure)
        return send_all(l->fd, data, len, deadline);
    if (tls_conn_write(&l->tls, (const uint8_t *)data, len) != 0)
        return -EPROTO;
    return link_flush(l, deadline);
}

/* Reads ciphertext and decrypts it into l->plain. 0 (maybe nothing new: the
 * handshake), 1 at the end of the stream, or a negative error (-EPROTO for
 * TLS, its reason in l->tls.why). */
static int link_pull(struct link *l, double deadline)
{
    uint8_t raw[16384];
    for (;;) {
        ssize_t n = recv(l->fd, raw, sizeof(raw), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            int rc = wait_fd(l->fd, POLLIN, deadline);
            if (rc)
                return rc;
            continue;
        }
        if (n < 0)
            return -errno;
        if (n == 0)
            return 1;
        int rc = tls_conn_input(&l->tls, raw, (size_t)n, &l->plain);
        int sent = link_flush(l, deadline); /* the handshake's answer, or an alert */
        if (rc)
            return rc == -ENOMEM ? -ENOMEM : -EPROTO;
        if (sent)
            return sent;
        return l->tls.peer_closed && l->plain_pos == l->plain.len ? 1 : 0;
    }
}

static int link_handshake(struct link *l, double deadline)
{
    if (tls_conn_connect(&l->tls) != 0)
        return -EPROTO;
    int rc = link_flush(l, deadline);
    while (!rc && !l->tls.established) {
        rc = link_pull(l, deadline);
        if (rc == 1) {
            snprintf(l->tls.why, sizeof(l->tls.why), "the node closed the connection during the TLS handshake");
            rc = -EPROTO;
        }
    }
    return rc;
}

/* Like recv: up to cap bytes of the response, 0 at its end, or -errno. */
static ssize_t link_recv(struct link *l, char *out, size_t cap, double deadline)
{
    if (!l->secure) {
        for (;;) {
            ssize_t n = recv(l->fd, out, cap, 0);
            if (n >= 0)
                return n;
            if (errno != EAGAIN && errno != EINTR)
                return -errno;
            int rc = wait_fd(l->fd, POLLIN, deadline);
            if (rc)
                return rc;
        }
    }
    while (l->plain_pos == l->plain.len) {
        l->plain.len = l->plain_pos = 0;
        int rc = link_pull(l, deadline);
        if (rc == 1)
            return 0;
        if (rc < 0)
            return rc;
    }
    size_t n = l->plain.len - l->plain_pos;
    if (n > cap)
        n = cap;
    memcpy(out, l->plain.data + l->plain_pos, n);
    l->plain_pos += n;
    return (ssize_t)n;
}

static int read_response(struct link *l, struct reader *r, double deadline)
{
    http_parser p;
    http_parser_settings s;
    http_parser_init(&p, HTTP_RESPONSE);
    http_parser_settings_init(&s);
    s.on_body = on_body;
    s.on_message_complete = on_complete;
    p.data = r;
    char buf[16384];
    while (!r->complete) {
        ssize_t n = link_recv(l, buf, sizeof(buf), deadline);
        if (n < 0)
            return (int)n;
        /* n == 0 tells the parser the stream ended (a body that runs to EOF) */
        size_t used = http_parser_execute(&p, &s, buf, (size_t)n);
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK || used != (size_t)n)
            return r->too_large ? -EFBIG : -EPROTO;
        if (n == 0 && !r->complete)
            return -ECONNRESET;
    }
    return 0;
}

void ctl_response_free(struct ctl_response *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

int ctl_http_request(const struct ctl_target *t, const char *method, const char *target, const char *token,
                     const char *body, double timeout_s, struct ctl_response *out, char *err, size_t errlen)
{
    double deadline = now_s() + timeout_s;
    memset(out, 0, sizeof(*out));
    size_t blen = body ? strlen(body) : 0;
    char head[1024 + 300];
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: starlingctl/" STARLING_VERSION
                      "\r\nAccept: application/json, text/plain\r\nConnection: close\r\n%s%s%s"
                      "%sContent-Length: %zu\r\n\r\n",
                      method, target, strstr(t->url, "://") + 3, token && *token ? "Authorization: Bearer " : "",
                      token && *token ? token : "", token && *token ? "\r\n" : "",
                      body ? "Content-Type: application/json\r\n" : "", blen);
    if (hl < 0 || (size_t)hl >= sizeof(head)) {
        snprintf(err, errlen, "the request for %s%s is too long", t->url, target);
        return CTL_EPROTOCOL;
    }
    int fd = dial(t, deadline, err, errlen);
    if (fd < 0)
        return CTL_EREACH;
    struct reader r = {.out = out};
    struct link l = {.fd = fd, .secure = t->https};
    int rc = 0;
    if (l.secure) {
        rc = t->tls ? tls_conn_init(&l.tls, t->tls, t->host) : -EINVAL;
        if (!rc)
            rc = link_handshake(&l, deadline);
        if (rc == -EPROTO || rc == -EINVAL) {
            snprintf(err, errlen, "%s: TLS handshake failed: %s", t->url,
                     rc == -EINVAL ? "no TLS context" : l.tls.why[0] ? l.tls.why : "protocol error");
            tls_conn_free(&l.tls);
            close(fd);
            return CTL_ETLS;
        }
    }
    if (!rc)
        rc = link_send(&l, head, (size_t)hl, deadline);
    if (!rc && blen)
        rc = link_send(&l, body, blen, deadline);
    if (!rc)
        rc = read_response(&l, &r, deadline);
    tls_conn_free(&l.tls);
    buf_free(&l.plain);
    close(fd);
    if (!rc) {
        out->body = (char *)r.body.data;
        out->len = r.body.len;
        if (!out->body && !(out->body = calloc(1, 1))) {
            snprintf(err, errlen, "out of memory");
            return CTL_EPROTOCOL;
        }
        return 0;
    }
    buf_free(&r.body);
    ctl_response_free(out);
    if (rc == -EPROTO || rc == -EFBIG) {
        snprintf(err, errlen, "%s answered %s", t->url,
                 rc == -EFBIG ? "with more than 256 MiB" : "with something that is not an HTTP response");
        return CTL_EPROTOCOL;
    }
    if (rc == -ETIMEDOUT)
        snprintf(err, errlen, "cannot reach %s: no answer within %g s", t->url, timeout_s);
    else if (rc == -ECONNRESET)
        snprintf(err, errlen, "cannot reach %s: the connection closed before a complete response%s", t->url,
                 t->https ? "" : " (if the node has admin_certfile, give https://)");
    else
        snprintf(err, errlen, "cannot reach %s: %s", t->url, strerror(-rc));
    return CTL_EREACH;
}
