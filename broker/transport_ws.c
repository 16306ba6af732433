/* transport_ws: the WebSocket filter (RFC 6455) under MQTT for the ws and wss
 * listeners: the HTTP upgrade, then wslay's frame codec over our buffers.
 *
 * Happy path: the client's upgrade request is gathered (at most
 * TRANSPORT_WS_MAX_REQUEST bytes) until the empty line that ends its headers,
 * judged by transport_ws_upgrade (http-parser underneath) and answered 101;
 * from then on every masked binary frame's payload goes up as MQTT bytes, as
 * they come: a frame may hold several packets and a packet may span frames
 * (continuation frames), conn.c's MQTT framing does not care. What the broker
 * sends goes down as one unmasked binary frame with FIN per output call. A
 * ping is answered with a pong of the same payload, a pong is ignored.
 *
 * Endings: the client's close frame is echoed (its status code, when it sent
 * one) and input returns TRANSPORT_EOF; our close() sends 1000, or 1001 when
 * the broker shuts down (transport_ws_going_away), once the upgrade is done.
 *
 * Failure modes, each with the reason in why() and the answer put in down
 * before input returns -EPROTO: a request that is not a WebSocket upgrade for
 * our path gets an HTTP error (400, 404, 405, 414, 426 with the version we
 * speak, 431 for one larger than the limit) and Connection: close; after the
 * upgrade an unmasked frame, reserved bits or opcodes, a stray continuation
 * or a malformed close are closed with 1002, a text frame with 1003. A data
 * frame above max_frame ends the input instead (TRANSPORT_EOF) once its
 * first max_frame bytes went up: the MQTT layer, which sees an oversize
 * packet begin, gets to answer 0x95 as it does over tcp, and close() then
 * sends 1009. Memory: the request buffer is bounded and
 * freed at the upgrade; wslay holds at most its fixed input buffer (4 KiB)
 * of a frame; a control frame's payload (at most 125 bytes) is kept here
 * until the frame ends; data frames are never held, whatever their size. */
#include "transport_ws.h"

#include <errno.h>
#include <http_parser.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_MAX_URL 1024   /* request target, path and query */
#define WS_MAX_VALUE 256  /* one header we read (the repeats of a list joined) */
#define WS_MAX_CONTROL 125

enum ws_state {
    WS_UPGRADE = 0, /* reading the upgrade request */
    WS_OPEN,        /* 101 sent: frames */
    WS_ENDING,      /* input is over (an oversize frame): output still goes, close()
                     * says end_code */
    WS_CLOSED,      /* a close frame went down: nothing more goes either way */
    WS_FAILED,      /* refused: the error is in why */
};

struct ws {
    struct filter base;
    int state;                 /* enum ws_state */
    char path[TRANSPORT_WS_MAX_PATH + 1];
    uint64_t max_frame;        /* 0 = no limit */
    bool going_away;
    struct buf req;            /* the upgrade request so far; freed at the upgrade */
    size_t scanned;            /* bytes of req searched for the end of the headers */
    wslay_frame_context_ptr wf;
    /* wslay's callbacks read from and write to these, for one call */
    const uint8_t *in;
    size_t in_len;
    struct buf *sink;
    /* the frame being read */
    bool in_frame;
    uint8_t opcode;
    uint64_t frame_len, frame_got;
    bool fragmented;           /* a binary message whose final frame has not come */
    bool too_big;              /* the frame is above max_frame */
    uint16_t end_code;         /* WS_ENDING: the close frame's status */
    uint8_t control[WS_MAX_CONTROL];
    size_t control_len;
    char why[200];
};

static struct ws *ws_of(struct filter *f) { return (struct ws *)f; }

/* --- the upgrade request --------------------------------------------------------- */

enum ws_header {
    H_OTHER = -1,
    H_UPGRADE = 0,
    H_CONNECTION,
    H_VERSION,
    H_KEY,
    H_PROTOCOL,
    H_COUNT,
};

static const char *const header_names[H_COUNT] = {
    "upgrade", "connection", "sec-websocket-version", "sec-websocket-key", "sec-websocket-protocol",
};

struct ws_request {
    char url[WS_MAX_URL];
    size_t url_len;
    bool url_long;
    char field[32];            /* the header name being read (ours are short) */
    size_t field_len;
    bool in_value;
    int header;                /* enum ws_header of the value being read */
    char value[H_COUNT][WS_MAX_VALUE];
    size_t value_len[H_COUNT];
    int count[H_COUNT];        /* times each header came */
    bool value_long;
    bool complete;             /* the end of the headers was reached */
};

static struct ws_request *request_of(http_parser *p) { return p->data; }

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct ws_request *r = request_of(p);
    if (len > sizeof(r->url) - r->url_len) {
        r->url_long = true;
        return -1;
    }
    memcpy(r->url + r->url_len, at, len);
    r->url_len += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct ws_request *r = request_of(p);
    if (r->in_value) {
        r->in_value = false;
        r->field_len = 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (r->field_len < sizeof(r->field))
            r->field[r->field_len] = at[i];
        r->field_len++; /* counts on: a longer name matches none of ours */
    }
    return 0;
}

/* Appends to the value of r->header; a repeated list header (Connection,
 * Upgrade, Sec-WebSocket-Protocol) is the same as one with the values
 * joined by commas (RFC 9110 5.3). */
static int value_add(struct ws_request *r, const char *at, size_t len)
{
    char *v = r->value[r->header];
    size_t *vl = &r->value_len[r->header];
    if (len > WS_MAX_VALUE - *vl) {
        r->value_long = true;
        return -1;
    }
    memcpy(v + *vl, at, len);
    *vl += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct ws_request *r = request_of(p);
    if (!r->in_value) {
        r->in_value = true;
        r->header = H_OTHER;
        for (int h = 0; h < H_COUNT; h++)
            if (r->field_len == strlen(header_names[h]) && strncasecmp(r->field, header_names[h], r->field_len) == 0)
                r->header = h;
        if (r->header == H_OTHER)
            return 0;
        if (r->count[r->header]++ > 0 && value_add(r, ",", 1))
            return -1;
    }
    return r->header == H_OTHER ? 0 : value_add(r, at, len);
}

static int on_headers_complete(http_parser *p)
{
    request_of(p)->complete = true;
    http_parser_pause(p, 1); /* the body, if one is announced, is not ours to read */
    return 0;
}

static const http_parser_settings request_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

static bool is_space(char c) { return c == ' ' || c == '\t'; }

/* The next element of a comma-separated list (s, n) from *pos, trimmed;
 * empty elements are skipped. False at the end. */
static bool list_next(const char *s, size_t n, size_t *pos, const char **tok, size_t *toklen)
{
    while (*pos < n) {
        size_t start = *pos;
        while (*pos < n && s[*pos] != ',')
            (*pos)++;
        size_t end = *pos;
        if (*pos < n)
            (*pos)++; /* the comma */
        while (start < end && is_space(s[start]))
            start++;
        while (end > start && is_space(s[end - 1]))
            end--;
        if (end > start) {
            *tok = s + start;
            *toklen = end - start;
            return true;
        }
    }
    return false;
}

static bool list_has(const char *s, size_t n, const char *token)
{
    size_t pos = 0, len, want = strlen(token);
    const char *t;
    while (list_next(s, n, &pos, &t, &len))
        if (len == want && strncasecmp(t, token, len) == 0)
            return true;
    return false;
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_space((*s)[*n - 1]))
        (*n)--;
}

/* Client bytes for a log line or an error body: printable ASCII, at most 64. */
static void shown(char *out, size_t outlen, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < outlen && i < 64; i++)
        out[k++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[k] = '\0';
}

static bool base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* 16 bytes in base64: 22 characters of the alphabet and "==". */
static bool key_valid(const char *k, size_t n)
{
    if (n != 24 || k[22] != '=' || k[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!base64_char(k[i]))
            return false;
    return true;
}

int transport_ws_accept_key(const char *key, size_t n, char out[29])
{
    uint8_t in[64 + sizeof(WS_GUID)];
    if (n > 64)
        return -EIO; /* key_valid allows 24 */
    memcpy(in, key, n);
    memcpy(in + n, WS_GUID, sizeof(WS_GUID) - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(in, n + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return -EIO;
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28)
        return -EIO;
    return 0;
}

static int resp_add(struct buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EIO;
    return buf_append(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static const char *status_text(int status)
{
    switch (status) {
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    default: return "Bad Request";
    }
}

/* An HTTP error answer whose body is the reason (already in why). */
static int refuse(struct buf *resp, int status, int *status_out, const char *why)
{
    *status_out = status;
    const char *extra = status == 426   ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                        : status == 405 ? "Allow: GET\r\n"
                                        : "";
    int rc = resp_add(resp,
                      "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                      "Content-Length: %zu\r\n%s\r\n%s\n",
                      status, status_text(status), strlen(why) + 1, extra, why);
    return rc ? rc : -EPROTO;
}

#define REFUSE(status, ...)                                                                        \
    do {                                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                                        \
        rc = refuse(resp, (status), status_out, why);                                              \
        goto out;                                                                                  \
    } while (0)

int transport_ws_upgrade(const uint8_t *req, size_t n, const char *path, struct buf *resp, int *status_out,
                         char *why, size_t whylen)
{
    int rc;
    char text[80];
    struct ws_request *r = calloc(1, sizeof(*r)); /* 2.4 KiB: not on the loop's stack */
    if (!r)
        return -ENOMEM;
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = r;
    http_parser_execute(&p, &request_settings, (const char *)req, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&p);
    if (r->url_long)
        REFUSE(414, "request target longer than %d bytes", WS_MAX_URL);
    if (r->value_long)
        REFUSE(431, "a WebSocket header longer than %d bytes", WS_MAX_VALUE);
    if ((e != HPE_OK && e != HPE_PAUSED) || !r->complete)
        REFUSE(400, "malformed HTTP request (%s)", e != HPE_OK && e != HPE_PAUSED ? http_errno_description(e)
                                                                                 : "incomplete headers");
    if (p.method != HTTP_GET)
        REFUSE(405, "method %s: a WebSocket upgrade is a GET", http_method_str((enum http_method)p.method));
    if (p.http_major < 1 || (p.http_major == 1 && p.http_minor < 1))
        REFUSE(400, "HTTP/%u.%u: a WebSocket upgrade needs HTTP/1.1", p.http_major, p.http_minor);

    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r->url, r->url_len, 0, &u) != 0)
        REFUSE(400, "malformed request target");
    const char *up = "/";
    size_t uplen = 1;
    if (u.field_set & (1 << UF_PATH)) {
        up = r->url + u.field_data[UF_PATH].off;
        uplen = u.field_data[UF_PATH].len;
    }
    if (uplen != strlen(path) || memcmp(up, path, uplen) != 0) {
        shown(text, sizeof(text), up, uplen);
        REFUSE(404, "no WebSocket endpoint at %s (this listener serves %s)", text, path);
    }
    if (!list_has(r->value[H_UPGRADE], r->value_len[H_UPGRADE], "websocket"))
        REFUSE(400, "not a WebSocket upgrade (no Upgrade: websocket)");
    if (!list_has(r->value[H_CONNECTION], r->value_len[H_CONNECTION], "upgrade"))
        REFUSE(400, "not a WebSocket upgrade (no Connection: upgrade)");

    const char *v = r->value[H_VERSION];
    size_t vlen = r->value_len[H_VERSION];
    trim(&v, &vlen);
    if (r->count[H_VERSION] != 1 || vlen != 2 || memcmp(v, "13", 2) != 0) {
        shown(text, sizeof(text), v, vlen);
        REFUSE(426, "Sec-WebSocket-Version %s: this server speaks 13", r->count[H_VERSION] ? text : "missing");
    }

    const char *key = r->value[H_KEY];
    size_t keylen = r->value_len[H_KEY];
    trim(&key, &keylen);
    if (r->count[H_KEY] != 1 || !key_valid(key, keylen))
        REFUSE(400, "Sec-WebSocket-Key missing, repeated or not 16 bytes in base64");

    /* the first subprotocol offered that we speak; none offered is accepted
     * (as Mosquitto does), only others offered is refused: the client wants
     * something this server does not speak */
    const char *proto = NULL;
    size_t protolen = 0;
    if (r->count[H_PROTOCOL]) {
        size_t pos = 0;
        const char *t;
        size_t tl;
        while (!proto && list_next(r->value[H_PROTOCOL], r->value_len[H_PROTOCOL], &pos, &t, &tl))
            if ((tl == 4 && memcmp(t, "mqtt", 4) == 0) || (tl == 8 && memcmp(t, "mqttv3.1", 8) == 0)) {
                proto = t;
                protolen = tl;
            }
        if (!proto) {
            shown(text, sizeof(text), r->value[H_PROTOCOL], r->value_len[H_PROTOCOL]);
            REFUSE(400, "no supported subprotocol among \"%s\" (this server speaks mqtt, mqttv3.1)", text);
        }
    }

    char accept[29];
    if (transport_ws_accept_key(key, keylen, accept)) {
        rc = -EIO;
        goto out;
    }
    *status_out = 101;
    rc = resp_add(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: %s\r\n%s%.*s%s\r\n",
                  accept, proto ? "Sec-WebSocket-Protocol: " : "", (int)protolen, proto ? proto : "",
                  proto ? "\r\n" : "");
    if (rc == 0)
        snprintf(why, whylen, "upgraded%s%.*s", proto ? ", subprotocol " : "", (int)protolen, proto ? proto : "");
out:
    free(r);
    return rc;
}

#undef REFUSE

/* --- frames ------------------------------------------------------------------------ */

static ssize_t ws_recv_cb(uint8_t *buf, size_t len, int flags, void *user)
{
    struct ws *w = user;
    size_t n = len < w->in_len ? len : w->in_len;
    if (n == 0)
        return 0; /* wslay: WSLAY_ERR_WANT_READ */
    memcpy(buf, w->in, n);
    w->in += n;
    w->in_len -= n;
    return (ssize_t)n;
}

static ssize_t ws_send_cb(const uint8_t *data, size_t len, int flags, void *user)
{
    struct ws *w = user;
    return buf_append(w->sink, data, len) ? -1 : (ssize_t)len;
}

static int ws_genmask_cb(uint8_t *buf, size_t len, void *user)
{
    return -1; /* a server never masks */
}

static const struct wslay_frame_callbacks ws_callbacks = {ws_send_cb, ws_recv_cb, ws_genmask_cb};

/* One frame, unmasked, FIN set, appended to down. A failure leaves wslay's
 * output half way through a frame: the filter is failed with it. */
static int ws_send(struct ws *w, uint8_t opcode, const uint8_t *p, size_t n, struct buf *down)
{
    struct wslay_frame_iocb io = {
        .fin = 1, .opcode = opcode, .payload_length = n, .mask = 0, .data = p, .data_length = n,
    };
    w->sink = down;
    for (;;) {
        ssize_t r = wslay_frame_send(w->wf, &io);
        if (r < 0) {
            w->state = WS_FAILED;
            snprintf(w->why, sizeof(w->why), "out of memory for a frame of %zu bytes", n);
            return -ENOMEM;
        }
        io.data += r;
        io.data_length -= (size_t)r;
        if (io.data_length == 0)
            return 0;
    }
}

static int ws_send_close(struct ws *w, uint16_t code, struct buf *down)
{
    uint8_t payload[2];
    bytes_put_u16be(payload, code);
    int rc = ws_send(w, WSLAY_CONNECTION_CLOSE, payload, code ? 2 : 0, down);
    if (w->state == WS_OPEN || w->state == WS_ENDING)
        w->state = WS_CLOSED;
    return rc;
}

/* Closes with code after a protocol fault of the client's. */
static int ws_fail(struct ws *w, uint16_t code, struct buf *down, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(w->why, sizeof(w->why), "close %u: ", code);
    vsnprintf(w->why + n, sizeof(w->why) - (size_t)n, fmt, ap);
    va_end(ap);
    if (w->state == WS_OPEN)
        (void)ws_send_close(w, code, down);
    w->state = WS_FAILED;
    return -EPROTO;
}

static bool close_code_valid(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* The first bytes of a frame came: its header is known. */
static int ws_frame_start(struct ws *w, const struct wslay_frame_iocb *io, struct buf *down)
{
    if (!io->mask)
        return ws_fail(w, WSLAY_CODE_PROTOCOL_ERROR, down, "unmasked frame from the client");
    if (io->rsv)
        return ws_fail(w, WSLAY_CODE_PROTOCOL_ERROR, down, "reserved bits set, no extension was agreed");
    switch (io->opcode) {
    case WSLAY_CONTINUATION_FRAME:
        if (!w->fragmented)
            return ws_fail(w, WSLAY_CODE_PROTOCOL_ERROR, down, "continuation frame outside a message");
        w->fragmented = !io->fin;
        break;
    case WSLAY_BINARY_FRAME:
        if (w->fragmented)
            return ws_fail(w, WSLAY_CODE_PROTOCOL_ERROR, down, "new message inside a fragmented one");
        w->fragmented = !io->fin;
        break;
    case WSLAY_TEXT_FRAME:
        return ws_fail(w, WSLAY_CODE_UNSUPPORTED_DATA, down, "text frame (MQTT travels in binary frames)");
    case WSLAY_CONNECTION_CLOSE:
    case WSLAY_PING:
    case WSLAY_PONG:
        w->control_len = 0; /* wslay refuses control frames above 125 bytes or without FIN */
        break;
    default:
        return ws_fail(w, WSLAY_CODE_PROTOCOL_ERROR, down, "reserved opcode %u", io->opcode);
    }
    /* too big: its first max_frame bytes still go up, so that the MQTT layer
     * sees the packet's length and answers as over tcp (CONNACK or
     * DISCONNECT 0x95) before the close frame says 1009 */
    w->too_big = !wslay_is_ctrl_frame(io->opcode) && w->max_frame && io->payload_length > w->max_frame;
    w->in_frame = true;
    w->opcode = io->opcode;
    w->frame_len = io->payload_length;
    w->frame_got = 0;
    return 0;
}

/* A whole control frame came (its payload in w->control). */
static int ws_control(struct ws *w, struct buf *down)
{
    if (w->opcode == WSLAY_PING)
        return ws_send(w, WSLAY_PONG, w->control, w->control_len, down);
    if (w->opcode == WSLAY_PONG)
        return 0;
    unsigned code = 0;
    if (w->control_len == 1)
        return ws_fail(w, WSLAY_CODE_PROTOCOL_ERROR, down, "close frame of 1 byte");
    if (w->control_len >= 2) {
        code = bytes_get_u16be(w->control);
        if (!close_code_valid(code))
            return ws_fail(w, WSLAY_CODE_PROTOCOL_ERROR, down, "close frame with status %u", code);
    }
    int rc = ws_send_close(w, (uint16_t)code, down); /* the echo: its code, or none */
    snprintf(w->why, sizeof(w->why), code ? "client closed with status %u" : "client closed", code);
    return rc ? rc : TRANSPORT_EOF;
}

static int ws_frames(struct ws *w, const uint8_t *in, size_t n, struct buf *up, struct buf *down)
{
    w->in = in;
    w->in_len = n;
    w->sink = down;
    while (w->state == WS_OPEN) {
        struct wslay_frame_iocb io;
        size_t before = w->in_len;
        ssize_t r = wslay_frame_recv(w->wf, &io);
        if (r == WSLAY_ERR_WANT_READ) {
            if (w->in_len == 0)
                return 0;
            if (w->in_len == before) /* wslay took nothing it was offered */
                return ws_fail(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, down, "frame reader stalled");
            continue;
        }
        if (r < 0)
            return ws_fail(w, WSLAY_CODE_PROTOCOL_ERROR, down, "malformed frame header");
        if (!w->in_frame) {
            int rc = ws_frame_start(w, &io, down);
            if (rc)
                return rc;
        }
        size_t got = (size_t)r;
        w->frame_got += got;
        if (wslay_is_ctrl_frame(w->opcode)) {
            if (got > sizeof(w->control) - w->control_len) /* wslay keeps them to 125 bytes */
                return ws_fail(w, WSLAY_CODE_PROTOCOL_ERROR, down, "control frame above 125 bytes");
            memcpy(w->control + w->control_len, io.data, got);
            w->control_len += got;
        } else {
            size_t take = got;
            if (w->too_big && w->frame_got > w->max_frame)
                take = got - (size_t)(w->frame_got - w->max_frame); /* up to the limit */
            if (take && buf_append(up, io.data, take)) {
                snprintf(w->why, sizeof(w->why), "out of memory for %zu bytes of a frame", take);
                w->state = WS_FAILED;
                return -ENOMEM;
            }
            if (w->too_big && w->frame_got > w->max_frame) {
                w->state = WS_ENDING;
                w->end_code = WSLAY_CODE_MESSAGE_TOO_BIG;
                snprintf(w->why, sizeof(w->why), "close 1009: frame of %llu bytes above the limit of %llu",
                         (unsigned long long)w->frame_len, (unsigned long long)w->max_frame);
                return TRANSPORT_EOF;
            }
        }
        if (w->frame_got == w->frame_len) {
            w->in_frame = false;
            if (wslay_is_ctrl_frame(w->opcode)) {
                int rc = ws_control(w, down);
                if (rc)
                    return rc;
            }
        }
    }
    return w->state == WS_CLOSED || w->state == WS_ENDING ? TRANSPORT_EOF : -EPROTO;
}

/* --- the filter ---------------------------------------------------------------------- */

/* The end of the request's headers in w->req (the offset just past the empty
 * line, CRLF or bare LF as http-parser accepts), or 0 while not there. */
static size_t ws_headers_end(struct ws *w)
{
    const uint8_t *d = w->req.data;
    for (size_t i = w->scanned; i < w->req.len; i++) {
        if (d[i] != '\n' || i == 0)
            continue;
        if (d[i - 1] == '\n' || (i >= 2 && d[i - 1] == '\r' && d[i - 2] == '\n'))
            return i + 1;
    }
    w->scanned = w->req.len;
    return 0;
}

static int ws_upgrade_input(struct ws *w, const uint8_t *in, size_t n, struct buf *up, struct buf *down)
{
    size_t room = TRANSPORT_WS_MAX_REQUEST - w->req.len;
    size_t take = n < room ? n : room;
    if (buf_append(&w->req, in, take)) {
        w->state = WS_FAILED;
        snprintf(w->why, sizeof(w->why), "out of memory for the upgrade request");
        return -ENOMEM;
    }
    size_t end = ws_headers_end(w);
    int status;
    if (end == 0) {
        if (w->req.len < TRANSPORT_WS_MAX_REQUEST)
            return 0;
        w->state = WS_FAILED;
        snprintf(w->why, sizeof(w->why), "upgrade request larger than %u bytes", TRANSPORT_WS_MAX_REQUEST);
        int rc = refuse(down, 431, &status, w->why);
        buf_free(&w->req);
        return rc;
    }
    int rc = transport_ws_upgrade(w->req.data, end, w->path, down, &status, w->why, sizeof(w->why));
    if (rc < 0) {
        w->state = WS_FAILED;
        buf_free(&w->req);
        return rc;
    }
    w->state = WS_OPEN;
    /* bytes past the request (a client that did not wait for the 101): the
     * first frames, part in req, the rest in what was not taken of in */
    struct buf rest = w->req;
    buf_init(&w->req);
    if (rest.len > end)
        rc = ws_frames(w, rest.data + end, rest.len - end, up, down);
    if (rc == 0 && take < n)
        rc = ws_frames(w, in + take, n - take, up, down);
    buf_free(&rest);
    return rc;
}

static int ws_input(struct filter *f, const uint8_t *in, size_t n, struct buf *up, struct buf *down)
{
    struct ws *w = ws_of(f);
    switch (w->state) {
    case WS_UPGRADE:
        return ws_upgrade_input(w, in, n, up, down);
    case WS_OPEN:
        return ws_frames(w, in, n, up, down);
    case WS_ENDING:
    case WS_CLOSED:
        return TRANSPORT_EOF; /* nothing after a close frame (or the end we chose) counts */
    default:
        return -EPROTO;
    }
}

static int ws_output(struct filter *f, const uint8_t *p, size_t n, struct buf *down)
{
    struct ws *w = ws_of(f);
    if (w->state != WS_OPEN && w->state != WS_ENDING)
        return -EPIPE; /* before the 101 or after a close frame nothing may go */
    if (n == 0)
        return 0;
    return ws_send(w, WSLAY_BINARY_FRAME, p, n, down);
}

static void ws_close(struct filter *f, struct buf *down)
{
    struct ws *w = ws_of(f);
    if (w->state == WS_ENDING)
        (void)ws_send_close(w, w->end_code, down);
    else if (w->state == WS_OPEN)
        (void)ws_send_close(w, w->going_away ? WSLAY_CODE_GOING_AWAY : WSLAY_CODE_NORMAL_CLOSURE, down);
}

static const char *ws_why(const struct filter *f)
{
    return ((const struct ws *)f)->why;
}

static int ws_identity(const struct filter *f, char *out, size_t outlen)
{
    return -ENOENT;
}

static void ws_free(struct filter *f)
{
    struct ws *w = ws_of(f);
    if (!w)
        return;
    wslay_frame_context_free(w->wf);
    buf_free(&w->req);
    free(w);
}

static const struct filter_ops ws_ops = {
    .name = "ws",
    .input = ws_input,
    .output = ws_output,
    .close = ws_close,
    .why = ws_why,
    .identity = ws_identity,
    .free = ws_free,
};

int transport_ws_new(const char *path, uint64_t max_frame, struct filter **out)
{
    if (!path || !*path)
        path = TRANSPORT_WS_DEFAULT_PATH;
    if (path[0] != '/' || strlen(path) > TRANSPORT_WS_MAX_PATH)
        return -EINVAL;
    struct ws *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    if (wslay_frame_context_init(&w->wf, &ws_callbacks, w) != 0) {
        free(w);
        return -ENOMEM;
    }
    w->base.ops = &ws_ops;
    snprintf(w->path, sizeof(w->path), "%s", path);
    w->max_frame = max_frame;
    snprintf(w->why, sizeof(w->why), "upgrade request not complete");
    *out = &w->base;
    return 0;
}

void transport_ws_going_away(struct filter *f)
{
    ws_of(f)->going_away = true;
}

int transport_ws_open(const struct filter *f)
{
    return ((const struct ws *)f)->state == WS_OPEN;
}
