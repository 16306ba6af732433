/* Unit tests for tools/bench/ws.c: starling-bench's client side of RFC 6455
 * (the upgrade request and the check of the 101, frames out and in). */
#include <criterion/criterion.h>
#include <string.h>

#include "internal.h"

/* RFC 6455 section 1.3's example key and its answer. */
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static int check(const char *resp, size_t *used, char *err)
{
    return bench__ws_response((const uint8_t *)resp, strlen(resp), RFC_KEY, used, err, 200);
}

Test(bench_ws, key_is_24_base64_chars_and_depends_on_the_seed)
{
    char a[BENCH_WS_KEY_LEN + 1], b[BENCH_WS_KEY_LEN + 1], c[BENCH_WS_KEY_LEN + 1];
    bench__ws_key(1, a);
    bench__ws_key(1, b);
    bench__ws_key(2, c);
    cr_assert_eq(strlen(a), 24);
    cr_assert_eq(a[22], '=');
    cr_assert_eq(a[23], '=');
    cr_assert_str_eq(a, b, "a client recomputes its key from the seed");
    cr_assert_str_neq(a, c);
}

Test(bench_ws, request_names_path_host_key_and_subprotocol)
{
    struct buf out;
    buf_init(&out);
    cr_assert_eq(bench__ws_request(&out, "::1", 8083, "/mqtt", RFC_KEY), 0);
    cr_assert_eq(buf_append(&out, "", 1), 0);
    const char *s = (const char *)out.data;
    cr_assert(strncmp(s, "GET /mqtt HTTP/1.1\r\n", 20) == 0, "%s", s);
    cr_assert_neq(strstr(s, "Host: [::1]:8083\r\n"), NULL, "%s", s);
    cr_assert_neq(strstr(s, "Sec-WebSocket-Key: " RFC_KEY "\r\n"), NULL);
    cr_assert_neq(strstr(s, "Sec-WebSocket-Protocol: mqtt\r\n"), NULL);
    cr_assert_neq(strstr(s, "Sec-WebSocket-Version: 13\r\n"), NULL);
    cr_assert(strstr(s, "\r\n\r\n") == s + out.len - 5);
    buf_free(&out);
}

Test(bench_ws, response_101_with_the_right_accept)
{
    const char *ok = "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept:  " RFC_ACCEPT " \r\nSec-WebSocket-Protocol: mqtt\r\n\r\n\x82\x02";
    size_t used = 0;
    char err[200] = "";
    cr_assert_eq(check(ok, &used, err), 1, "%s", err);
    cr_assert_eq(used, strlen(ok) - 2, "the frame after the head is not part of it");
}

Test(bench_ws, response_refusals_and_incomplete)
{
    static const struct {
        const char *resp;
        int rc;
        const char *msg;
    } cases[] = {
        {"", 0, NULL},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", 0, NULL},
        {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", -1, "refused: HTTP/1.1 404 Not Found"},
        {"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n", -1, "Upgrade"},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", -1, "Accept"},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: "
         "s3pPLMBiTxaQ9kYGzzhZRbK+xOA=\r\n\r\n", -1, "Accept"},
        {"HTTP/1.0 101 x\r\n\r\n", -1, "refused"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t used = 0;
        char err[200] = "";
        int rc = check(cases[i].resp, &used, err);
        cr_assert_eq(rc, cases[i].rc, "case %zu: %d (%s)", i, rc, err);
        if (cases[i].msg)
            cr_assert_neq(strstr(err, cases[i].msg), NULL, "case %zu: %s", i, err);
    }
}

Test(bench_ws, response_head_is_bounded)
{
    static char big[BENCH_WS_MAX_HEAD + 64];
    memset(big, 'a', sizeof(big) - 1);
    memcpy(big, "HTTP/1.1 101 x\r\nX: ", 19);
    size_t used = 0;
    char err[200] = "";
    cr_assert_eq(check(big, &used, err), -1);
    cr_assert_neq(strstr(err, "no end"), NULL, "%s", err);
}

/* Frames out: masked, the three length forms, and back through a decoder
 * that unmasks (what a server does). */
Test(bench_ws, frames_out_round_trip_at_the_length_boundaries)
{
    static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 70000};
    static uint8_t payload[70000];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        struct buf out;
        buf_init(&out);
        cr_assert_eq(bench__ws_frame(&out, BENCH_WS_BINARY, payload, n, 0xA1B2C3D4u), 0);
        const uint8_t *p = out.data;
        cr_assert_eq(p[0], 0x82, "FIN + binary");
        cr_assert(p[1] & 0x80, "a client masks");
        size_t h = n < 126 ? 2 : n <= 65535 ? 4 : 10;
        cr_assert_eq(p[1] & 0x7f, n < 126 ? n : n <= 65535 ? 126 : 127, "length form for %zu", n);
        cr_assert_eq(out.len, h + 4 + n);
        const uint8_t *m = p + h;
        cr_assert_eq(m[0], 0xA1);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq((uint8_t)(p[h + 4 + i] ^ m[i & 3]), payload[i], "byte %zu of %zu", i, n);
        buf_free(&out);
    }
}

Test(bench_ws, frames_in_whole_truncated_and_boundaries)
{
    /* unmasked server frames: 126 and 127 length forms */
    static uint8_t f[10 + 65536];
    struct bench_ws_frame fr;
    f[0] = 0x82;
    f[1] = 126;
    f[2] = 0x01;
    f[3] = 0x00; /* 256 */
    cr_assert_eq(bench__ws_parse(f, 4 + 256, 1 << 20, &fr), 4 + 256);
    cr_assert_eq(fr.len, 256);
    cr_assert_eq(fr.payload, f + 4);
    cr_assert(fr.fin);
    cr_assert_eq(fr.opcode, BENCH_WS_BINARY);
    for (size_t cut = 0; cut < 4 + 256; cut += 37)
        cr_assert_eq(bench__ws_parse(f, cut, 1 << 20, &fr), 0, "truncated at %zu", cut);
    f[1] = 127;
    memset(f + 2, 0, 8);
    f[7] = 0x01; /* 65536 in 8 bytes */
    cr_assert_eq(bench__ws_parse(f, 10 + 65536, 1 << 20, &fr), 10 + 65536);
    cr_assert_eq(bench__ws_parse(f, 9, 1 << 20, &fr), 0);
    cr_assert_eq(bench__ws_parse(f, 10 + 65536, 65535, &fr), -1, "above the maximum: refused before the payload");
    f[2] = 0x80; /* 2^63 + 65536 */
    cr_assert_eq(bench__ws_parse(f, 10, 1 << 20, &fr), -1);
    /* an empty continuation, a ping with a payload */
    uint8_t cont[] = {0x00, 0x00}, ping[] = {0x89, 0x02, 'h', 'i'};
    cr_assert_eq(bench__ws_parse(cont, 2, 100, &fr), 2);
    cr_assert(!fr.fin);
    cr_assert_eq(bench__ws_parse(ping, 4, 100, &fr), 4);
    cr_assert_eq(fr.opcode, BENCH_WS_PING);
    cr_assert_eq(fr.len, 2);
    cr_assert_eq(bench__ws_parse(ping, 1, 100, &fr), 0);
}

Test(bench_ws, frames_in_that_break_rfc6455)
{
    static const uint8_t bad[][4] = {
        {0x82, 0x81, 0, 0}, /* masked by the server */
        {0xC2, 0x00, 0, 0}, /* RSV1 without an extension */
        {0x83, 0x00, 0, 0}, /* reserved opcode 3 */
        {0x8B, 0x00, 0, 0}, /* reserved control opcode 11 */
        {0x89, 126, 0, 126}, /* a control frame over 125 bytes */
        {0x09, 0x00, 0, 0}, /* a fragmented ping */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct bench_ws_frame fr;
        cr_assert_eq(bench__ws_parse(bad[i], 4, 1 << 20, &fr), -1, "case %zu", i);
    }
}
