/* Tests for broker/transport_ws.c: the accept key, the upgrade request (one
 * good request and each refusal, table-driven), and the frames through the
 * filter (several packets per frame, a packet over frames, fragments with a
 * ping between them, ping/pong, close, unmasked, text, oversize, reserved
 * bits and opcodes, a byte-at-a-time feed, our output frames, close()).
 * Client frames are built here by hand (masked, as RFC 6455 5.2 lays them
 * out) and the filter's frames are read back by hand, so the test does not
 * share a codec with the code under test. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport_ws.h"

#include "../check_leaks.h"

#define MAXF 1000 /* the filters' frame limit in these tests */

static const char *const good_req =
    "GET /mqtt HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: mqtt\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

/* --- client side frames, by hand ------------------------------------------------ */

static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* b0 = FIN/RSV/opcode byte as sent */
static void frame_raw(struct buf *b, uint8_t b0, const void *payload, size_t n, bool masked)
{
    const uint8_t *p = payload;
    cr_assert_eq(buf_reserve(b, n + 14), 0);
    buf_put_u8(b, b0);
    uint8_t m = masked ? 0x80 : 0;
    if (n < 126) {
        buf_put_u8(b, m | (uint8_t)n);
    } else if (n < 65536) {
        buf_put_u8(b, m | 126);
        buf_put_u16be(b, (uint16_t)n);
    } else {
        buf_put_u8(b, m | 127);
        buf_put_u64be(b, n);
    }
    if (masked)
        buf_put_mem(b, mask_key, 4);
    for (size_t i = 0; i < n; i++)
        buf_put_u8(b, masked ? p[i] ^ mask_key[i % 4] : p[i]);
}

static void frame(struct buf *b, bool fin, uint8_t opcode, const void *payload, size_t n)
{
    frame_raw(b, (uint8_t)((fin ? 0x80 : 0) | opcode), payload, n, true);
}

/* One server frame from *pos of b: checks FIN, no mask, no RSV. */
struct sframe {
    uint8_t opcode;
    const uint8_t *payload;
    size_t len;
};

static bool next_frame(const struct buf *b, size_t *pos, struct sframe *f)
{
    if (*pos >= b->len)
        return false;
    cr_assert_geq(b->len - *pos, 2, "truncated frame header");
    const uint8_t *d = b->data + *pos;
    cr_assert_eq(d[0] & 0xf0, 0x80, "FIN set, no RSV (got 0x%02x)", d[0]);
    cr_assert_eq(d[1] & 0x80, 0, "server frames are not masked");
    size_t h = 2, n = d[1] & 0x7f;
    if (n == 126) {
        n = bytes_get_u16be(d + 2);
        h = 4;
    } else if (n == 127) {
        n = (size_t)bytes_get_u64be(d + 2);
        h = 10;
    }
    cr_assert_geq(b->len - *pos, h + n, "truncated frame");
    f->opcode = d[0] & 0x0f;
    f->payload = d + h;
    f->len = n;
    *pos += h + n;
    return true;
}

/* --- the filter ------------------------------------------------------------------- */

struct pipe {
    struct filter *f;
    struct buf up, down;
    size_t down_pos; /* frames of down read so far (after the 101) */
};

static void pipe_new(struct pipe *p)
{
    memset(p, 0, sizeof(*p));
    cr_assert_eq(transport_ws_new(NULL, MAXF, &p->f), 0);
}

static void pipe_free(struct pipe *p)
{
    p->f->ops->free(p->f);
    buf_free(&p->up);
    buf_free(&p->down);
}

static int feed(struct pipe *p, const void *in, size_t n)
{
    return p->f->ops->input(p->f, in, n, &p->up, &p->down);
}

/* The filter after a good upgrade; down holds the 101, skipped. */
static void pipe_open(struct pipe *p)
{
    pipe_new(p);
    cr_assert_eq(feed(p, good_req, strlen(good_req)), 0);
    cr_assert(transport_ws_open(p->f));
    const char *end = memmem(p->down.data, p->down.len, "\r\n\r\n", 4);
    cr_assert_not_null(end);
    p->down_pos = (size_t)(end + 4 - (const char *)p->down.data);
}

/* The next frame the filter sent; fails when there is none. */
static struct sframe sent(struct pipe *p)
{
    struct sframe f;
    cr_assert(next_frame(&p->down, &p->down_pos, &f), "expected a frame from the filter");
    return f;
}

static void assert_no_more(struct pipe *p)
{
    cr_assert_eq(p->down_pos, p->down.len, "unexpected bytes from the filter");
}

static void assert_close(struct pipe *p, unsigned code)
{
    struct sframe f = sent(p);
    cr_assert_eq(f.opcode, 0x8, "close frame (got opcode %u)", f.opcode);
    cr_assert_geq(f.len, 2);
    cr_assert_eq(bytes_get_u16be(f.payload), code, "close %u (got %u); why: %s", code,
                 bytes_get_u16be(f.payload), p->f->ops->why(p->f));
    assert_no_more(p);
}

static void assert_up(struct pipe *p, const void *want, size_t n)
{
    cr_assert_eq(p->up.len, n, "%zu bytes up (want %zu)", p->up.len, n);
    cr_assert(memcmp(p->up.data, want, n) == 0);
}

/* --- the accept key and the upgrade, pure --------------------------------------- */

Test(ws_accept, rfc6455_example)
{
    char out[29];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    cr_assert_eq(transport_ws_accept_key(key, strlen(key), out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* What transport_ws_upgrade answers to req: its status and reply. */
static int judge(const char *req, const char *path, struct buf *resp, char *why, size_t whylen)
{
    int status = 0;
    int rc = transport_ws_upgrade((const uint8_t *)req, strlen(req), path, resp, &status, why, whylen);
    cr_assert(rc == 0 || rc == -EPROTO, "rc %d", rc);
    cr_assert_eq(rc == 0, status == 101);
    cr_assert_geq(resp->len, 12);
    char line[13];
    snprintf(line, sizeof(line), "HTTP/1.1 %d", status);
    cr_assert(memcmp(resp->data, line, 12) == 0, "status line for %d", status);
    return status;
}

static bool resp_has(const struct buf *resp, const char *s)
{
    return memmem(resp->data, resp->len, s, strlen(s)) != NULL;
}

Test(ws_upgrade, good_request)
{
    struct buf resp = {0};
    char why[200];
    cr_assert_eq(judge(good_req, "/mqtt", &resp, why, sizeof(why)), 101, "%s", why);
    cr_assert(resp_has(&resp, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    cr_assert(resp_has(&resp, "\r\nUpgrade: websocket\r\n"));
    cr_assert(resp_has(&resp, "\r\nConnection: Upgrade\r\n"));
    cr_assert(resp_has(&resp, "\r\nSec-WebSocket-Protocol: mqtt\r\n"));
    cr_assert(memcmp(resp.data + resp.len - 4, "\r\n\r\n", 4) == 0);
    buf_free(&resp);
    check_leaks();
}

#define REQ(line, headers)                                                                         \
    line "\r\nHost: h\r\n" headers "\r\n"
#define STD_UPGRADE "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define STD_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define STD_VER "Sec-WebSocket-Version: 13\r\n"
#define STD STD_UPGRADE STD_KEY STD_VER

struct upgrade_case {
    const char *name;
    const char *req;
    int status;
    const char *in_resp; /* a line the answer must hold, or NULL */
    const char *no_resp; /* one it must not hold, or NULL */
};

static const struct upgrade_case upgrade_cases[] = {
    {"accepted, no subprotocol offered", REQ("GET /mqtt HTTP/1.1", STD), 101, NULL, "Sec-WebSocket-Protocol"},
    {"first supported subprotocol", REQ("GET /mqtt HTTP/1.1", STD "Sec-WebSocket-Protocol: foo, mqttv3.1, mqtt\r\n"),
     101, "\r\nSec-WebSocket-Protocol: mqttv3.1\r\n", NULL},
    {"subprotocols over repeated headers",
     REQ("GET /mqtt HTTP/1.1", STD "Sec-WebSocket-Protocol: foo\r\nSec-WebSocket-Protocol: mqtt\r\n"), 101,
     "\r\nSec-WebSocket-Protocol: mqtt\r\n", NULL},
    {"names and tokens in any case", REQ("GET /mqtt HTTP/1.1",
                                         "UPGRADE: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n"
                                         "sec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ==  \r\nSEC-WEBSOCKET-VERSION: 13\r\n"),
     101, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", NULL},
    {"query string", REQ("GET /mqtt?token=x&y=1 HTTP/1.1", STD), 101, NULL, NULL},
    {"bare LF line ends", "GET /mqtt HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: Upgrade\n" STD_KEY STD_VER "\n",
     101, NULL, NULL},
    {"wrong path", REQ("GET /other HTTP/1.1", STD), 404, "Connection: close", NULL},
    {"path prefix", REQ("GET /mqttx HTTP/1.1", STD), 404, NULL, NULL},
    {"root path", REQ("GET / HTTP/1.1", STD), 404, NULL, NULL},
    {"POST", REQ("POST /mqtt HTTP/1.1", STD), 405, "Allow: GET", NULL},
    {"HTTP/1.0", REQ("GET /mqtt HTTP/1.0", STD), 400, NULL, NULL},
    {"no Upgrade header", REQ("GET /mqtt HTTP/1.1", "Connection: Upgrade\r\n" STD_KEY STD_VER), 400, NULL, NULL},
    {"Upgrade: h2c", REQ("GET /mqtt HTTP/1.1", "Upgrade: h2c\r\nConnection: Upgrade\r\n" STD_KEY STD_VER), 400, NULL,
     NULL},
    {"no Connection: upgrade", REQ("GET /mqtt HTTP/1.1", "Upgrade: websocket\r\nConnection: keep-alive\r\n" STD_KEY STD_VER),
     400, NULL, NULL},
    {"plain GET", REQ("GET /mqtt HTTP/1.1", ""), 400, NULL, NULL},
    {"version 8", REQ("GET /mqtt HTTP/1.1", STD_UPGRADE STD_KEY "Sec-WebSocket-Version: 8\r\n"), 426,
     "\r\nSec-WebSocket-Version: 13\r\n", NULL},
    {"no version", REQ("GET /mqtt HTTP/1.1", STD_UPGRADE STD_KEY), 426, "\r\nSec-WebSocket-Version: 13\r\n", NULL},
    {"version 13 twice", REQ("GET /mqtt HTTP/1.1", STD STD_VER), 426, NULL, NULL},
    {"no key", REQ("GET /mqtt HTTP/1.1", STD_UPGRADE STD_VER), 400, NULL, NULL},
    {"key of 15 bytes", REQ("GET /mqtt HTTP/1.1", STD_UPGRADE STD_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n"), 400,
     NULL, NULL},
    {"key not base64", REQ("GET /mqtt HTTP/1.1", STD_UPGRADE STD_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub2*jZQ==\r\n"),
     400, NULL, NULL},
    {"key twice", REQ("GET /mqtt HTTP/1.1", STD STD_KEY), 400, NULL, NULL},
    {"only unknown subprotocols", REQ("GET /mqtt HTTP/1.1", STD "Sec-WebSocket-Protocol: chat, MQTT5\r\n"), 400, NULL, NULL},
    {"not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, NULL, NULL},
    {"header value too long", REQ("GET /mqtt HTTP/1.1", STD "Sec-WebSocket-Protocol: "
                                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"),
     431, NULL, NULL},
};

Test(ws_upgrade, table)
{
    for (size_t i = 0; i < sizeof(upgrade_cases) / sizeof(upgrade_cases[0]); i++) {
        const struct upgrade_case *c = &upgrade_cases[i];
        struct buf resp = {0};
        char why[200] = "";
        int status = judge(c->req, "/mqtt", &resp, why, sizeof(why));
        cr_expect_eq(status, c->status, "%s: status %d, want %d (%s)", c->name, status, c->status, why);
        if (c->in_resp)
            cr_expect(resp_has(&resp, c->in_resp), "%s: answer lacks %s", c->name, c->in_resp);
        if (c->no_resp)
            cr_expect(!resp_has(&resp, c->no_resp), "%s: answer holds %s", c->name, c->no_resp);
        if (status != 101) {
            cr_expect(resp_has(&resp, "\r\nConnection: close\r\n"), "%s", c->name);
            cr_expect(resp_has(&resp, why), "%s: the reason is the body", c->name);
        }
        buf_free(&resp);
    }
    check_leaks();
}

Test(ws_upgrade, long_url)
{
    char req[4096];
    char path[2000];
    memset(path, 'a', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    snprintf(req, sizeof(req), REQ("GET /mqtt?%s HTTP/1.1", STD), path);
    struct buf resp = {0};
    char why[200];
    cr_assert_eq(judge(req, "/mqtt", &resp, why, sizeof(why)), 414, "%s", why);
    buf_free(&resp);
}

Test(ws_upgrade, configured_path)
{
    struct buf resp = {0};
    char why[200];
    cr_assert_eq(judge(REQ("GET /ws/mqtt HTTP/1.1", STD), "/ws/mqtt", &resp, why, sizeof(why)), 101, "%s", why);
    resp.len = 0;
    cr_assert_eq(judge(REQ("GET /mqtt HTTP/1.1", STD), "/ws/mqtt", &resp, why, sizeof(why)), 404);
    buf_free(&resp);
}

Test(ws_filter, bad_path_refused)
{
    struct filter *f = NULL;
    cr_assert_eq(transport_ws_new("mqtt", 0, &f), -EINVAL);
    char longp[300];
    memset(longp, 'a', sizeof(longp));
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    cr_assert_eq(transport_ws_new(longp, 0, &f), -EINVAL);
    cr_assert_eq(transport_ws_new("/x", 0, &f), 0);
    f->ops->free(f);
}

/* --- the upgrade through the filter ---------------------------------------------- */

Test(ws_filter, upgrade_then_frames)
{
    struct pipe p;
    pipe_open(&p);
    cr_assert(memcmp(p.down.data, "HTTP/1.1 101 ", 13) == 0);
    assert_no_more(&p);
    cr_assert_eq(p.up.len, 0);
    pipe_free(&p);
    check_leaks();
}

Test(ws_filter, request_over_the_limit)
{
    struct pipe p;
    pipe_new(&p);
    char chunk[1000];
    memset(chunk, 'a', sizeof(chunk));
    memcpy(chunk, "GET /mqtt HTTP/1.1\r\nX-Pad: ", 27);
    int rc = feed(&p, chunk, sizeof(chunk));
    memcpy(chunk, "aaaaaa", 6);
    for (int i = 0; i < 7 && rc == 0; i++)
        rc = feed(&p, chunk, sizeof(chunk));
    cr_assert_eq(rc, 0, "8000 bytes are within the limit");
    rc = feed(&p, chunk, sizeof(chunk));
    cr_assert_eq(rc, -EPROTO);
    cr_assert(memcmp(p.down.data, "HTTP/1.1 431 ", 13) == 0);
    cr_assert(strstr(p.f->ops->why(p.f), "larger than 8192"), "%s", p.f->ops->why(p.f));
    /* refused: nothing more, and no close frame (never upgraded) */
    size_t n = p.down.len;
    p.f->ops->close(p.f, &p.down);
    cr_assert_eq(p.down.len, n);
    cr_assert_eq(feed(&p, "x", 1), -EPROTO);
    pipe_free(&p);
    check_leaks();
}

Test(ws_filter, refusal_through_the_filter)
{
    struct pipe p;
    pipe_new(&p);
    const char *req = REQ("GET /nope HTTP/1.1", STD);
    cr_assert_eq(feed(&p, req, strlen(req)), -EPROTO);
    cr_assert(memcmp(p.down.data, "HTTP/1.1 404 ", 13) == 0);
    cr_assert(strstr(p.f->ops->why(p.f), "/nope"));
    cr_assert(!transport_ws_open(p.f));
    cr_assert_eq(p.f->ops->output(p.f, (const uint8_t *)"x", 1, &p.down), -EPIPE);
    pipe_free(&p);
}

Test(ws_filter, output_before_upgrade)
{
    struct pipe p;
    pipe_new(&p);
    cr_assert_eq(p.f->ops->output(p.f, (const uint8_t *)"x", 1, &p.down), -EPIPE);
    p.f->ops->close(p.f, &p.down);
    cr_assert_eq(p.down.len, 0, "no close frame before the upgrade");
    pipe_free(&p);
}

/* The request and the first frames in one read (a client that did not wait). */
Test(ws_filter, frames_right_after_request)
{
    struct pipe p;
    pipe_new(&p);
    struct buf in = {0};
    cr_assert_eq(buf_append(&in, good_req, strlen(good_req)), 0);
    frame(&in, true, 0x2, "\x10\x02\x00\x04", 4);
    frame(&in, true, 0x9, "hi", 2);
    cr_assert_eq(feed(&p, in.data, in.len), 0);
    assert_up(&p, "\x10\x02\x00\x04", 4);
    const char *end = memmem(p.down.data, p.down.len, "\r\n\r\n", 4);
    p.down_pos = (size_t)(end + 4 - (const char *)p.down.data);
    struct sframe f = sent(&p);
    cr_assert_eq(f.opcode, 0xA);
    cr_assert_eq(f.len, 2);
    buf_free(&in);
    pipe_free(&p);
    check_leaks();
}

/* --- frames --------------------------------------------------------------------- */

/* A PINGREQ, a PUBLISH "a/b" "hello" and a DISCONNECT, as MQTT 3.1.1 bytes. */
static const uint8_t pingreq[] = {0xc0, 0x00};
static const uint8_t disconnect[] = {0xe0, 0x00};
static const uint8_t publish[] = {0x30, 0x0a, 0x00, 0x03, 'a', '/', 'b', 'h', 'e', 'l', 'l', 'o'};

static void three_packets(struct buf *b)
{
    cr_assert_eq(buf_append(b, pingreq, sizeof(pingreq)), 0);
    cr_assert_eq(buf_append(b, publish, sizeof(publish)), 0);
    cr_assert_eq(buf_append(b, disconnect, sizeof(disconnect)), 0);
}

Test(ws_frames, several_packets_per_frame)
{
    struct pipe p;
    pipe_open(&p);
    struct buf mqtt = {0}, in = {0};
    three_packets(&mqtt);
    frame(&in, true, 0x2, mqtt.data, mqtt.len);
    cr_assert_eq(feed(&p, in.data, in.len), 0);
    assert_up(&p, mqtt.data, mqtt.len);
    assert_no_more(&p);
    buf_free(&mqtt);
    buf_free(&in);
    pipe_free(&p);
    check_leaks();
}

Test(ws_frames, packet_across_frames)
{
    struct pipe p;
    pipe_open(&p);
    struct buf in = {0};
    /* three messages: the PUBLISH split 1 + 5 + 6 bytes, each its own message */
    frame(&in, true, 0x2, publish, 1);
    frame(&in, true, 0x2, publish + 1, 5);
    frame(&in, true, 0x2, publish + 6, 6);
    cr_assert_eq(feed(&p, in.data, in.len), 0);
    assert_up(&p, publish, sizeof(publish));
    buf_free(&in);
    pipe_free(&p);
}

Test(ws_frames, fragmented_message_with_ping_between)
{
    struct pipe p;
    pipe_open(&p);
    struct buf in = {0};
    frame(&in, false, 0x2, publish, 4);
    frame(&in, true, 0x9, "abc", 3); /* control frames may come between fragments */
    frame(&in, false, 0x0, publish + 4, 0);
    frame(&in, false, 0x0, publish + 4, 3);
    frame(&in, true, 0x0, publish + 7, 5);
    frame(&in, true, 0x2, pingreq, 2); /* a new message after the final fragment */
    cr_assert_eq(feed(&p, in.data, in.len), 0);
    uint8_t want[sizeof(publish) + 2];
    memcpy(want, publish, sizeof(publish));
    memcpy(want + sizeof(publish), pingreq, 2);
    assert_up(&p, want, sizeof(want));
    struct sframe f = sent(&p);
    cr_assert_eq(f.opcode, 0xA);
    cr_assert_eq(f.len, 3);
    cr_assert(memcmp(f.payload, "abc", 3) == 0);
    assert_no_more(&p);
    buf_free(&in);
    pipe_free(&p);
}

Test(ws_frames, ping_pong)
{
    struct pipe p;
    pipe_open(&p);
    struct buf in = {0};
    uint8_t big[125];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)i;
    frame(&in, true, 0x9, NULL, 0);
    frame(&in, true, 0x9, big, sizeof(big));
    frame(&in, true, 0xA, "unsolicited", 11); /* a pong nobody asked for is ignored */
    cr_assert_eq(feed(&p, in.data, in.len), 0);
    struct sframe f = sent(&p);
    cr_assert_eq(f.opcode, 0xA);
    cr_assert_eq(f.len, 0);
    f = sent(&p);
    cr_assert_eq(f.opcode, 0xA);
    cr_assert_eq(f.len, sizeof(big));
    cr_assert(memcmp(f.payload, big, sizeof(big)) == 0);
    assert_no_more(&p);
    cr_assert_eq(p.up.len, 0);
    buf_free(&in);
    pipe_free(&p);
}

Test(ws_frames, close_is_echoed)
{
    struct pipe p;
    pipe_open(&p);
    struct buf in = {0};
    frame(&in, true, 0x2, pingreq, 2);
    frame(&in, true, 0x8, "\x03\xe9" "bye", 5); /* 1001 */
    frame(&in, true, 0x2, disconnect, 2);       /* after the close: not read */
    cr_assert_eq(feed(&p, in.data, in.len), TRANSPORT_EOF);
    assert_up(&p, pingreq, 2);
    assert_close(&p, 1001);
    cr_assert(strstr(p.f->ops->why(p.f), "1001"));
    /* closed: no output, close() adds nothing, input stays at the end */
    cr_assert_eq(p.f->ops->output(p.f, pingreq, 2, &p.down), -EPIPE);
    p.f->ops->close(p.f, &p.down);
    assert_no_more(&p);
    cr_assert_eq(feed(&p, "x", 1), TRANSPORT_EOF);
    buf_free(&in);
    pipe_free(&p);
    check_leaks();
}

Test(ws_frames, close_without_status)
{
    struct pipe p;
    pipe_open(&p);
    struct buf in = {0};
    frame(&in, true, 0x8, NULL, 0);
    cr_assert_eq(feed(&p, in.data, in.len), TRANSPORT_EOF);
    struct sframe f = sent(&p);
    cr_assert_eq(f.opcode, 0x8);
    cr_assert_eq(f.len, 0, "an empty close is echoed empty");
    buf_free(&in);
    pipe_free(&p);
}

/* Frames the filter refuses, each with the close code it sends. */
struct bad_frame {
    const char *name;
    uint8_t b0;
    const char *payload;
    size_t len;
    bool masked;
    unsigned code;
};

static const struct bad_frame bad_frames[] = {
    {"unmasked binary", 0x82, "\xc0\x00", 2, false, 1002},
    {"unmasked empty", 0x82, "", 0, false, 1002},
    {"text", 0x81, "hello", 5, true, 1003},
    {"reserved bit 1", 0xc2, "\xc0\x00", 2, true, 1002},
    {"reserved bit 3", 0x92, "\xc0\x00", 2, true, 1002},
    {"reserved opcode 3", 0x83, "x", 1, true, 1002},
    {"reserved opcode 0xb", 0x8b, "x", 1, true, 1002},
    {"continuation without a message", 0x80, "\xc0\x00", 2, true, 1002},
    {"ping without FIN", 0x09, "x", 1, true, 1002},
    {"close of 1 byte", 0x88, "\x03", 1, true, 1002},
    {"close status 1005", 0x88, "\x03\xed", 2, true, 1002},
    {"close status 999", 0x88, "\x03\xe7", 2, true, 1002},
    {"close status 5000", 0x88, "\x13\x88", 2, true, 1002},
};

Test(ws_frames, refused_frames)
{
    for (size_t i = 0; i < sizeof(bad_frames) / sizeof(bad_frames[0]); i++) {
        const struct bad_frame *c = &bad_frames[i];
        struct pipe p;
        pipe_open(&p);
        struct buf in = {0};
        frame_raw(&in, c->b0, c->payload, c->len, c->masked);
        cr_expect_eq(feed(&p, in.data, in.len), -EPROTO, "%s", c->name);
        struct sframe f;
        cr_assert(next_frame(&p.down, &p.down_pos, &f), "%s: a close frame", c->name);
        cr_expect_eq(f.opcode, 0x8, "%s", c->name);
        cr_expect_eq(f.len >= 2 ? bytes_get_u16be(f.payload) : 0, c->code, "%s: close %u (why: %s)", c->name,
                     c->code, p.f->ops->why(p.f));
        cr_expect_eq(p.down_pos, p.down.len, "%s: one close frame", c->name);
        cr_expect_eq(p.up.len, 0, "%s: nothing up", c->name);
        /* failed: close() does not send a second close frame */
        p.f->ops->close(p.f, &p.down);
        cr_expect_eq(p.down_pos, p.down.len, "%s", c->name);
        cr_expect_eq(feed(&p, "x", 1), -EPROTO, "%s", c->name);
        buf_free(&in);
        pipe_free(&p);
    }
    check_leaks();
}

Test(ws_frames, control_frame_above_125_bytes)
{
    struct pipe p;
    pipe_open(&p);
    struct buf in = {0};
    uint8_t big[126] = {0};
    frame(&in, true, 0x9, big, sizeof(big));
    cr_assert_eq(feed(&p, in.data, in.len), -EPROTO);
    assert_close(&p, 1002);
    buf_free(&in);
    pipe_free(&p);
}

Test(ws_frames, oversize_frame)
{
    struct pipe p;
    pipe_open(&p);
    struct buf in = {0};
    uint8_t *big = calloc(1, MAXF + 1);
    frame(&in, true, 0x2, big, MAXF); /* at the limit: taken */
    cr_assert_eq(feed(&p, in.data, in.len), 0);
    cr_assert_eq(p.up.len, MAXF);
    in.len = 0;
    big[0] = 0x30; /* a PUBLISH announcing more than the limit, as a client would send */
    frame(&in, true, 0x2, big, MAXF + 1);
    cr_assert_eq(feed(&p, in.data, in.len), TRANSPORT_EOF);
    cr_assert_eq(p.up.len, 2 * MAXF, "the first MAXF bytes of the oversize frame went up");
    cr_assert_eq(p.up.data[MAXF], 0x30);
    assert_no_more(&p);
    /* the MQTT layer's answer still goes, then the close frame says 1009 */
    cr_assert_eq(p.f->ops->output(p.f, disconnect, 2, &p.down), 0);
    struct sframe f = sent(&p);
    cr_assert_eq(f.opcode, 0x2);
    p.f->ops->close(p.f, &p.down);
    assert_close(&p, 1009);
    cr_assert(strstr(p.f->ops->why(p.f), "1009"), "%s", p.f->ops->why(p.f));
    cr_assert_eq(feed(&p, "x", 1), TRANSPORT_EOF);
    cr_assert_eq(p.f->ops->output(p.f, disconnect, 2, &p.down), -EPIPE);
    free(big);
    buf_free(&in);
    pipe_free(&p);
    check_leaks();
}

/* A frame announcing 2^62 bytes: its bytes go up to the limit, then the end;
 * nothing is held. */
Test(ws_frames, huge_length)
{
    struct pipe p;
    pipe_open(&p);
    uint8_t in[] = {0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0xaa};
    cr_assert_eq(feed(&p, in, sizeof(in)), 0);
    cr_assert_eq(p.up.len, 1);
    uint8_t more[700] = {0};
    cr_assert_eq(feed(&p, more, sizeof(more)), 0);
    cr_assert_eq(feed(&p, more, sizeof(more)), TRANSPORT_EOF);
    cr_assert_eq(p.up.len, MAXF);
    p.f->ops->close(p.f, &p.down);
    assert_close(&p, 1009);
    pipe_free(&p);
}

Test(ws_frames, large_frame_in_pieces)
{
    /* 64-bit length form; payload arrives in odd pieces */
    struct pipe p;
    memset(&p, 0, sizeof(p));
    cr_assert_eq(transport_ws_new("/mqtt", 200000, &p.f), 0);
    cr_assert_eq(feed(&p, good_req, strlen(good_req)), 0);
    struct buf in = {0};
    size_t n = 70000;
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 7);
    frame(&in, true, 0x2, data, n);
    size_t pos = 0, step = 1;
    while (pos < in.len) {
        size_t k = in.len - pos < step ? in.len - pos : step;
        cr_assert_eq(feed(&p, in.data + pos, k), 0);
        pos += k;
        step = step * 3 + 1;
    }
    assert_up(&p, data, n);
    free(data);
    buf_free(&in);
    pipe_free(&p);
    check_leaks();
}

Test(ws_frames, byte_at_a_time)
{
    struct pipe p;
    pipe_new(&p);
    struct buf in = {0}, mqtt = {0};
    cr_assert_eq(buf_append(&in, good_req, strlen(good_req)), 0);
    three_packets(&mqtt);
    frame(&in, false, 0x2, mqtt.data, 3);
    frame(&in, true, 0x9, "p", 1);
    frame(&in, true, 0x0, mqtt.data + 3, mqtt.len - 3);
    frame(&in, true, 0x2, publish, sizeof(publish));
    frame(&in, true, 0x8, "\x03\xe8", 2);
    int rc = 0;
    size_t i;
    for (i = 0; i < in.len && rc == 0; i++)
        rc = feed(&p, in.data + i, 1);
    cr_assert_eq(rc, TRANSPORT_EOF);
    cr_assert_eq(i, in.len, "the close frame's last byte ends it");
    cr_assert_eq(buf_append(&mqtt, publish, sizeof(publish)), 0);
    assert_up(&p, mqtt.data, mqtt.len);
    const char *end = memmem(p.down.data, p.down.len, "\r\n\r\n", 4);
    cr_assert_not_null(end);
    p.down_pos = (size_t)(end + 4 - (const char *)p.down.data);
    struct sframe f = sent(&p);
    cr_assert_eq(f.opcode, 0xA);
    assert_close(&p, 1000);
    buf_free(&in);
    buf_free(&mqtt);
    pipe_free(&p);
    check_leaks();
}

/* --- what the broker sends --------------------------------------------------------- */

Test(ws_output, binary_frames)
{
    struct pipe p;
    pipe_open(&p);
    size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 100000};
    uint8_t *data = malloc(100000);
    for (size_t i = 0; i < 100000; i++)
        data[i] = (uint8_t)(i ^ (i >> 8));
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        cr_assert_eq(p.f->ops->output(p.f, data, sizes[k], &p.down), 0);
        if (sizes[k] == 0) {
            assert_no_more(&p); /* nothing to say, no frame */
            continue;
        }
        struct sframe f = sent(&p);
        cr_assert_eq(f.opcode, 0x2);
        cr_assert_eq(f.len, sizes[k]);
        cr_assert(memcmp(f.payload, data, sizes[k]) == 0);
        assert_no_more(&p);
    }
    free(data);
    pipe_free(&p);
    check_leaks();
}

Test(ws_output, close_normal_and_going_away)
{
    struct pipe p;
    pipe_open(&p);
    p.f->ops->close(p.f, &p.down);
    assert_close(&p, 1000);
    p.f->ops->close(p.f, &p.down); /* once only */
    assert_no_more(&p);
    cr_assert_eq(p.f->ops->output(p.f, pingreq, 2, &p.down), -EPIPE);
    pipe_free(&p);

    pipe_open(&p);
    transport_ws_going_away(p.f);
    p.f->ops->close(p.f, &p.down);
    assert_close(&p, 1001);
    cr_assert_eq(p.f->ops->identity(p.f, NULL, 0), -ENOENT);
    cr_assert_str_eq(p.f->ops->name, "ws");
    pipe_free(&p);
}
