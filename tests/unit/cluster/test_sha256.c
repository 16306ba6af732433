/* Tests for cluster/sha256.c: SHA-256 against the FIPS 180-4 examples and
 * padding boundaries, incremental updates split at every offset, HMAC-SHA-256
 * against RFC 4231, and the constant-time MAC comparison. No file system is
 * involved, so these tests need no temporary directory. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#include "../check_leaks.h"

static void hex(const uint8_t d[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void assert_digest(const uint8_t d[32], const char *want, const char *what)
{
    char got[65];
    hex(d, got);
    cr_assert_str_eq(got, want, "%s: got %s, want %s", what, got, want);
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    struct cluster__sha256 h;
    cluster__sha256_init(&h);
    cluster__sha256_update(&h, p, n);
    cluster__sha256_final(&h, out);
}

/* --- SHA-256 ------------------------------------------------------------------------ */

/* Criterion may run a parameterized case in a re-executed process, where
 * pointers from the parent are meaningless: the parameter is an index. */
static const struct {
    const char *msg;
    const char *digest;
} fips[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    /* 448 bits: the padding needs a second block */
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    /* 896 bits */
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnop"
     "qrstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
};

ParameterizedTestParameters(sha256, fips_vectors)
{
    static size_t idx[sizeof(fips) / sizeof(fips[0])];
    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
        idx[i] = i;
    return cr_make_param_array(size_t, idx, sizeof(idx) / sizeof(idx[0]));
}

ParameterizedTest(size_t *i, sha256, fips_vectors)
{
    uint8_t d[32];
    sha256(fips[*i].msg, strlen(fips[*i].msg), d);
    assert_digest(d, fips[*i].digest, fips[*i].msg);
    check_leaks();
}

Test(sha256, million_a_in_many_updates)
{
    /* 1,000,000 'a' as updates of 1, 7, 64, 1000 and 999 bytes in turn, so that
     * block boundaries fall inside and between updates */
    static const size_t sizes[] = {1, 7, 64, 1000, 999};
    char a[1000];
    memset(a, 'a', sizeof(a));
    struct cluster__sha256 h;
    cluster__sha256_init(&h);
    size_t done = 0;
    for (int i = 0; done < 1000000; i++) {
        size_t n = sizes[i % 5];
        if (n > 1000000 - done)
            n = 1000000 - done;
        cluster__sha256_update(&h, a, n);
        done += n;
    }
    uint8_t d[32];
    cluster__sha256_final(&h, d);
    assert_digest(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", "1e6 x 'a'");
    check_leaks();
}

static uint8_t msg_byte(size_t i) { return (uint8_t)((i * 37 + 11) % 256); }

Test(sha256, padding_boundaries)
{
    /* lengths around the 55/56-byte point where the length no longer fits the
     * last block, and around block multiples (values from Python's hashlib) */
    static const struct {
        size_t len;
        const char *digest;
    } v[] = {
        {55, "2900465fcb533e05a158fd2b3be0e5e3b03740d83060aa3580e0d98a96bf2384"},
        {56, "31454ff48ef36af2f08fd511bdc37d9d5855ac23e992e5ff5445cb6b7674a674"},
        {63, "5f6401b96532c36de4e65beec0409b69b1d181864c8009b7a04f43e5d56350d1"},
        {64, "94eb5de4943613fd048dc93393ab06877405faa39c11f53e9386083339833e7e"},
        {65, "fc518669b6eb4b4dd91827ecacef86689c725bd5bab888fd3b26dbb196eec954"},
        {119, "b0dc41b1a384e2f1203f0351b38fbeaafceef577ce1191d5bfc25da39f721eae"},
        {120, "5df24dd802ac26132ce608dcb5f09841eef039ee0f152acf98d26d17fe4e88e6"},
        {127, "0fe729ff19257bd6fec853acc2ea355f6b34b58e6c0f684c3e188fcdfcd9baae"},
        {128, "0aedd4856f8eba0963627336ad5144a9a7dbe12498e6066f0165fc97d8ddee4c"},
        {130, "d35b74124cb85cfac62bfeaf3a9771efab3e0ef88fc43702c35a6efe09467cc1"},
    };
    uint8_t m[130];
    for (size_t i = 0; i < sizeof(m); i++)
        m[i] = msg_byte(i);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t d[32];
        char what[32];
        snprintf(what, sizeof(what), "%zu bytes", v[i].len);
        sha256(m, v[i].len, d);
        assert_digest(d, v[i].digest, what);
    }
    check_leaks();
}

Test(sha256, split_at_every_offset_equals_one_update)
{
    uint8_t m[130];
    for (size_t i = 0; i < sizeof(m); i++)
        m[i] = msg_byte(i);
    uint8_t whole[32];
    sha256(m, sizeof(m), whole);
    assert_digest(whole, "d35b74124cb85cfac62bfeaf3a9771efab3e0ef88fc43702c35a6efe09467cc1", "130 bytes");
    for (size_t k = 0; k <= sizeof(m); k++) {
        struct cluster__sha256 h;
        cluster__sha256_init(&h);
        cluster__sha256_update(&h, m, k);
        cluster__sha256_update(&h, m + k, sizeof(m) - k);
        uint8_t d[32];
        cluster__sha256_final(&h, d);
        cr_assert(memcmp(d, whole, 32) == 0, "split at %zu differs from one update", k);
        /* and in three parts, with a zero-length update in the middle */
        cluster__sha256_init(&h);
        cluster__sha256_update(&h, m, k);
        cluster__sha256_update(&h, m + k, 0);
        cluster__sha256_update(&h, m + k, sizeof(m) - k);
        cluster__sha256_final(&h, d);
        cr_assert(memcmp(d, whole, 32) == 0, "split at %zu with an empty update differs", k);
    }
    check_leaks();
}

Test(sha256, init_resets_a_used_context)
{
    struct cluster__sha256 h;
    cluster__sha256_init(&h);
    cluster__sha256_update(&h, "garbage that must be forgotten", 30);
    uint8_t d[32];
    cluster__sha256_final(&h, d);
    cluster__sha256_init(&h);
    cluster__sha256_update(&h, "abc", 3);
    cluster__sha256_final(&h, d);
    assert_digest(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "abc after reuse");
    check_leaks();
}

/* --- HMAC-SHA-256 (RFC 4231) ------------------------------------------------------------ */

struct hmac_vec {
    int tc;
    uint8_t key[131];
    size_t key_len;
    const char *data;
    size_t data_len;
    const char *mac;
};

static struct hmac_vec rfc4231(int tc)
{
    struct hmac_vec v = {.tc = tc};
    switch (tc) {
    case 1:
        memset(v.key, 0x0b, 20);
        v.key_len = 20;
        v.data = "Hi There";
        v.mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
        break;
    case 2:
        memcpy(v.key, "Jefe", 4);
        v.key_len = 4;
        v.data = "what do ya want for nothing?";
        v.mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        break;
    case 3: {
        static char dd[51];
        memset(dd, 0xdd, 50);
        memset(v.key, 0xaa, 20);
        v.key_len = 20;
        v.data = dd;
        v.mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe";
        break;
    }
    case 4: {
        static char cd[51];
        memset(cd, 0xcd, 50);
        for (int i = 0; i < 25; i++)
            v.key[i] = (uint8_t)(i + 1);
        v.key_len = 25;
        v.data = cd;
        v.mac = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b";
        break;
    }
    case 6:
        memset(v.key, 0xaa, 131);
        v.key_len = 131;
        v.data = "Test Using Larger Than Block-Size Key - Hash Key First";
        v.mac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
        break;
    case 7:
        memset(v.key, 0xaa, 131);
        v.key_len = 131;
        v.data = "This is a test using a larger than block-size key and a larger than block-size data. The key "
                 "needs to be hashed before being used by the HMAC algorithm.";
        v.mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2";
        break;
    default:
        cr_assert_fail("no RFC 4231 test case %d here", tc);
    }
    v.data_len = strlen(v.data);
    return v;
}

ParameterizedTestParameters(hmac, rfc4231)
{
    static int tcs[] = {1, 2, 3, 4, 6, 7};
    return cr_make_param_array(int, tcs, sizeof(tcs) / sizeof(tcs[0]));
}

ParameterizedTest(int *tc, hmac, rfc4231)
{
    struct hmac_vec v = rfc4231(*tc);
    char what[32];
    snprintf(what, sizeof(what), "RFC 4231 case %d", v.tc);
    uint8_t mac[32];
    struct iovec one = {(void *)v.data, v.data_len};
    cluster__hmac_sha256(v.key, v.key_len, &one, 1, mac);
    assert_digest(mac, v.mac, what);

    /* the same data in parts (split at every offset, plus an empty part) */
    for (size_t k = 0; k <= v.data_len; k++) {
        struct iovec parts[3] = {
            {(void *)v.data, k}, {(void *)v.data, 0}, {(void *)(v.data + k), v.data_len - k}};
        uint8_t m2[32];
        cluster__hmac_sha256(v.key, v.key_len, parts, 3, m2);
        cr_assert(memcmp(m2, mac, 32) == 0, "%s: parts split at %zu differ", what, k);
    }
    check_leaks();
}

Test(hmac, key_length_boundaries)
{
    /* a key of exactly the block size is used as is; one byte more is hashed
     * first (values from Python's hmac) */
    uint8_t key[65];
    for (int i = 0; i < 65; i++)
        key[i] = (uint8_t)i;
    struct iovec d = {"boundary", 8};
    uint8_t mac[32];
    cluster__hmac_sha256(key, 64, &d, 1, mac);
    assert_digest(mac, "04660fc313657aa3500078e1f2788cc4e328654092b137f946516e4d7a17adae", "64-byte key");
    cluster__hmac_sha256(key, 65, &d, 1, mac);
    assert_digest(mac, "ea8a9678017bce7c50df43ced20cc4b112ed884969720bb2ec14e24ce582f037", "65-byte key");
    cluster__hmac_sha256("", 0, NULL, 0, mac);
    assert_digest(mac, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad", "empty key and data");
    check_leaks();
}

Test(hmac, different_keys_give_different_macs)
{
    struct iovec d = {"same data", 9};
    uint8_t a[32], b[32];
    cluster__hmac_sha256("secret-a", 8, &d, 1, a);
    cluster__hmac_sha256("secret-b", 8, &d, 1, b);
    cr_assert_not(cluster__mac_equal(a, b));
    check_leaks();
}

/* --- cluster__mac_equal ------------------------------------------------------------------ */

Test(mac_equal, equal_and_every_single_bit_difference)
{
    uint8_t a[32], b[32];
    for (int i = 0; i < 32; i++)
        a[i] = (uint8_t)(i * 29 + 3);
    memcpy(b, a, 32);
    cr_assert(cluster__mac_equal(a, b));
    cr_assert(cluster__mac_equal(a, a));
    for (int i = 0; i < 32; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(b, a, 32);
            b[i] ^= (uint8_t)(1u << bit);
            cr_assert_not(cluster__mac_equal(a, b), "byte %d bit %d differs but compares equal", i, bit);
            cr_assert_not(cluster__mac_equal(b, a), "byte %d bit %d differs but compares equal", i, bit);
        }
    }
    uint8_t zero[32] = {0}, ones[32];
    memset(ones, 0xff, 32);
    cr_assert(cluster__mac_equal(zero, zero));
    cr_assert_not(cluster__mac_equal(zero, ones));
    check_leaks();
}
