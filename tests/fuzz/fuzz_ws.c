/* libFuzzer target for the WebSocket filter (broker/transport_ws.c), pure
 * bytes in and out, no broker: the upgrade request judged alone
 * (transport_ws_upgrade), then a filter fed the input in pieces.
 *
 * Byte 0 of the input: bit 0 set puts a good upgrade request before the rest
 * (so that the fuzzer spends its time on frames); bits 2..7 + 1 are the
 * size of the pieces the rest is fed in (1..64 bytes), so that every split
 * of a request or frame is reached. Checked: the judge's answer is an HTTP
 * status line, 101 exactly when it accepts; the filter returns 0,
 * TRANSPORT_EOF or a negative error, never passes up more bytes than it was
 * given, answers nothing once failed or closed (after an oversize frame: our
 * last output, then close 1009), and once open frames our output as one
 * binary frame and close() as one close frame. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport_ws.h"

#define MAX_FRAME 4096 /* small, so that 1009 is reached */

static const char good_req[] = "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n"
                               "Sec-WebSocket-Version: 13\r\n\r\n";

static void judge(const uint8_t *data, size_t size)
{
    struct buf resp = {0};
    char why[200];
    int status = 0;
    int rc = transport_ws_upgrade(data, size, "/mqtt", &resp, &status, why, sizeof(why));
    if (rc == -ENOMEM)
        goto out;
    if ((rc != 0 && rc != -EPROTO) || (rc == 0) != (status == 101) || resp.len < 12 ||
        memcmp(resp.data, "HTTP/1.1 ", 9) != 0) {
        fprintf(stderr, "fuzz_ws: judge rc %d status %d\n", rc, status);
        abort();
    }
out:
    buf_free(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    judge(data, size);

    struct filter *f;
    if (transport_ws_new("/mqtt", MAX_FRAME, &f) != 0)
        abort();
    struct buf up = {0}, down = {0};
    size_t fed = 0;
    int rc = 0;
    if (mode & 1) {
        rc = f->ops->input(f, (const uint8_t *)good_req, sizeof(good_req) - 1, &up, &down);
        if (rc != 0 || !transport_ws_open(f))
            abort();
    }
    size_t piece = (size_t)(mode >> 2) + 1;
    for (size_t pos = 0; pos < size && rc == 0; pos += piece) {
        size_t n = size - pos < piece ? size - pos : piece;
        rc = f->ops->input(f, data + pos, n, &up, &down);
        fed += n;
        if (up.len > fed) {
            fprintf(stderr, "fuzz_ws: %zu bytes up from %zu in\n", up.len, fed);
            abort();
        }
    }
    if (rc != 0 && rc != TRANSPORT_EOF && rc != -EPROTO && rc != -ENOMEM) {
        fprintf(stderr, "fuzz_ws: input returned %d\n", rc);
        abort();
    }
    if (rc == TRANSPORT_EOF && f->ops->output(f, (const uint8_t *)"abc", 3, &down) == 0) {
        /* ended by an oversize frame: the last words go, then close 1009 */
        size_t n = down.len;
        f->ops->close(f, &down);
        if (down.len != n + 4 || memcmp(down.data + n, "\x88\x02\x03\xf1", 4) != 0)
            abort();
    }
    if (rc != 0) {
        /* failed or closed: nothing more goes down */
        size_t n = down.len;
        if (f->ops->output(f, (const uint8_t *)"abc", 3, &down) != -EPIPE)
            abort();
        f->ops->close(f, &down);
        if (down.len != n || f->ops->input(f, (const uint8_t *)"x", 1, &up, &down) == 0)
            abort();
    } else if (transport_ws_open(f)) {
        size_t n = down.len;
        if (f->ops->output(f, (const uint8_t *)"abc", 3, &down) != 0 || down.len != n + 5 ||
            memcmp(down.data + n, "\x82\x03" "abc", 5) != 0)
            abort();
        f->ops->close(f, &down);
        if (down.len != n + 9 || memcmp(down.data + n + 5, "\x88\x02\x03\xe8", 4) != 0)
            abort();
    }
    if (f->ops->why(f)[0] == '\0')
        abort();
    f->ops->free(f);
    buf_free(&up);
    buf_free(&down);
    return 0;
}
