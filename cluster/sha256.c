/* sha256: SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104) for the peer-link
 * handshake. Written here rather than taken from OpenSSL so that only the
 * listener code links TLS (docs/architecture.md). */
#include <string.h>

#include "internal.h"

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void compress(struct cluster__sha256 *h, const uint8_t *block)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = bytes_get_u32be(block + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h->state[0], b = h->state[1], c = h->state[2], d = h->state[3];
    uint32_t e = h->state[4], f = h->state[5], g = h->state[6], k = h->state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h->state[0] += a;
    h->state[1] += b;
    h->state[2] += c;
    h->state[3] += d;
    h->state[4] += e;
    h->state[5] += f;
    h->state[6] += g;
    h->state[7] += k;
}

void cluster__sha256_init(struct cluster__sha256 *h)
{
    static const uint32_t init[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(h->state, init, sizeof(init));
    h->total = 0;
    h->fill = 0;
}

void cluster__sha256_update(struct cluster__sha256 *h, const void *data, size_t len)
{
    const uint8_t *p = data;
    h->total += len;
    while (len) {
        size_t n = 64 - h->fill < len ? 64 - h->fill : len;
        memcpy(h->buf + h->fill, p, n);
        h->fill += n;
        p += n;
        len -= n;
        if (h->fill == 64) {
            compress(h, h->buf);
            h->fill = 0;
        }
    }
}

void cluster__sha256_final(struct cluster__sha256 *h, uint8_t out[32])
{
    uint64_t bits = h->total * 8;
    uint8_t pad = 0x80;
    cluster__sha256_update(h, &pad, 1);
    pad = 0;
    while (h->fill != 56)
        cluster__sha256_update(h, &pad, 1);
    uint8_t len[8];
    bytes_put_u64be(len, bits);
    cluster__sha256_update(h, len, 8);
    uint8_t *p = out;
    for (int i = 0; i < 8; i++)
        p = bytes_put_u32be(p, h->state[i]);
}

void cluster__hmac_sha256(const void *key, size_t key_len, const struct iovec *parts, size_t nparts,
                          uint8_t out[32])
{
    uint8_t k[64] = {0}, pad[64], inner[32];
    struct cluster__sha256 h;
    if (key_len > 64) {
        cluster__sha256_init(&h);
        cluster__sha256_update(&h, key, key_len);
        cluster__sha256_final(&h, k);
    } else if (key_len) {
        memcpy(k, key, key_len);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    cluster__sha256_init(&h);
    cluster__sha256_update(&h, pad, 64);
    for (size_t i = 0; i < nparts; i++)
        cluster__sha256_update(&h, parts[i].iov_base, parts[i].iov_len);
    cluster__sha256_final(&h, inner);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    cluster__sha256_init(&h);
    cluster__sha256_update(&h, pad, 64);
    cluster__sha256_update(&h, inner, 32);
    cluster__sha256_final(&h, out);
}

bool cluster__mac_equal(const uint8_t a[32], const uint8_t b[32])
{
    uint8_t diff = 0;
    for (int i = 0; i < 32; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}
