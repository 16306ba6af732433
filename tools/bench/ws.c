/* bench: the client side of WebSocket (RFC 6455) for --ws: the upgrade
 * request, the check of the server's 101 answer, masked binary frames out and
 * unmasked frames in. Pure: bytes in, bytes or a verdict out; client.c does
 * the I/O. Frames are bounded by the caller's maximum before any payload is
 * kept, control frames by RFC 6455's 125 bytes. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "internal.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void bench__ws_key(uint64_t seed, char out[BENCH_WS_KEY_LEN + 1])
{
    uint8_t raw[16];
    uint64_t s = seed;
    for (int i = 0; i < 2; i++) {
        /* splitmix64: spreads a sequence number over the nonce's bytes */
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        memcpy(raw + 8 * i, &z, 8);
    }
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
    out[BENCH_WS_KEY_LEN] = '\0';
}

int bench__ws_request(struct buf *out, const char *host, uint16_t port, const char *path, const char *key)
{
    bool v6 = strchr(host, ':') != NULL;
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
                     path, v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port, key);
    if (n < 0 || (size_t)n >= sizeof(req))
        return -1;
    return buf_append(out, req, (size_t)n);
}

/* The value of header name in the head [p, end) (case-insensitive name,
 * surrounding blanks trimmed) into out; false when absent or too long. */
static bool header_value(const char *p, const char *end, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *line = p; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if ((size_t)(ve - v) >= cap)
                return false;
            memcpy(out, v, (size_t)(ve - v));
            out[ve - v] = '\0';
            return true;
        }
        line = eol + 1;
    }
    return false;
}

int bench__ws_response(const uint8_t *p, size_t len, const char *key, size_t *used, char *err, size_t errlen)
{
    const char *s = (const char *)p;
    const char *end = NULL;
    for (size_t i = 0; i + 3 < len; i++) {
        if (memcmp(s + i, "\r\n\r\n", 4) == 0) {
            end = s + i + 4;
            break;
        }
    }
    if (!end) {
        if (len > BENCH_WS_MAX_HEAD) {
            snprintf(err, errlen, "WebSocket upgrade: no end of the answer's head in %u bytes", BENCH_WS_MAX_HEAD);
            return -1;
        }
        return 0;
    }
    if ((size_t)(end - s) < 12 || strncmp(s, "HTTP/1.1 101", 12) != 0) {
        size_t l = strcspn(s, "\r\n");
        snprintf(err, errlen, "WebSocket upgrade refused: %.*s", (int)(l > 80 ? 80 : l), s);
        for (char *q = err; *q; q++)
            if (!isprint((unsigned char)*q))
                *q = '?';
        return -1;
    }
    char accept[64], want[64], upgrade[32];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    char src[BENCH_WS_KEY_LEN + sizeof(WS_GUID)];
    snprintf(src, sizeof(src), "%s%s", key, WS_GUID);
    if (!EVP_Digest(src, strlen(src), digest, &dlen, EVP_sha1(), NULL)) {
        snprintf(err, errlen, "WebSocket upgrade: SHA-1 unavailable");
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)want, digest, (int)dlen);
    if (!header_value(s, end, "Upgrade", upgrade, sizeof(upgrade)) || strcasecmp(upgrade, "websocket") != 0) {
        snprintf(err, errlen, "WebSocket upgrade: the answer has no Upgrade: websocket");
        return -1;
    }
    if (!header_value(s, end, "Sec-WebSocket-Accept", accept, sizeof(accept)) || strcmp(accept, want) != 0) {
        snprintf(err, errlen, "WebSocket upgrade: Sec-WebSocket-Accept missing or wrong");
        return -1;
    }
    *used = (size_t)(end - s);
    return 1;
}

int bench__ws_frame(struct buf *out, uint8_t opcode, const uint8_t *p, size_t n, uint32_t mask)
{
    uint8_t head[14];
    size_t h = 0;
    head[h++] = (uint8_t)(0x80 | (opcode & 0x0f)); /* FIN: one frame per message */
    if (n < 126) {
        head[h++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xffff) {
        head[h++] = 0x80 | 126;
        head[h++] = (uint8_t)(n >> 8);
        head[h++] = (uint8_t)n;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            head[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint8_t m[4] = {(uint8_t)(mask >> 24), (uint8_t)(mask >> 16), (uint8_t)(mask >> 8), (uint8_t)mask};
    memcpy(head + h, m, 4);
    h += 4;
    if (buf_reserve(out, h + n) != 0)
        return -1;
    buf_put_mem(out, head, h);
    uint8_t *dst = buf_tail(out);
    for (size_t i = 0; i < n; i++)
        dst[i] = p[i] ^ m[i & 3];
    out->len += n;
    return 0;
}

long bench__ws_parse(const uint8_t *p, size_t len, size_t max, struct bench_ws_frame *f)
{
    if (len < 2)
        return 0;
    uint8_t b0 = p[0], b1 = p[1];
    if (b0 & 0x70)
        return -1; /* RSV bits: no extension was negotiated */
    if (b1 & 0x80)
        return -1; /* a server never masks */
    uint8_t op = b0 & 0x0f;
    bool control = op & 0x08;
    if ((op > 2 && op < 8) || op > 10)
        return -1;
    size_t h = 2;
    uint64_t n = b1 & 0x7f;
    if (n == 126) {
        if (len < 4)
            return 0;
        n = (uint64_t)p[2] << 8 | p[3];
        h = 4;
    } else if (n == 127) {
        if (len < 10)
            return 0;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | p[2 + i];
        h = 10;
    }
    if (control && (n > 125 || !(b0 & 0x80)))
        return -1;
    if (n > max)
        return -1;
    if (len - h < n)
        return 0;
    f->fin = b0 & 0x80;
    f->opcode = op;
    f->payload = p + h;
    f->len = (size_t)n;
    return (long)(h + n);
}
