/* common/buf.h: the growable byte buffer. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "../check_leaks.h"

Test(buf, reserve_grows_and_keeps_contents, .fini = check_leaks)
{
    struct buf b = {0};
    cr_assert_eq(buf_reserve(&b, 0), 0);
    cr_assert_eq(buf_reserve(&b, 3), 0);
    cr_assert_geq(b.cap, 64, "the first allocation is at least 64 bytes");
    buf_put_u8(&b, 1);
    buf_put_u16be(&b, 0x0203);
    size_t cap = b.cap;
    cr_assert_eq(buf_reserve(&b, cap), 0);
    cr_assert_geq(b.cap, 3 + cap);
    cr_assert_eq(b.len, 3);
    cr_assert_eq(memcmp(b.data, "\x01\x02\x03", 3), 0);
    buf_free(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
}

Test(buf, reserve_fails_cleanly_on_overflow, .fini = check_leaks)
{
    struct buf b = {0};
    cr_assert_eq(buf_append(&b, "abc", 3), 0);
    uint8_t *data = b.data;
    size_t cap = b.cap;
    cr_assert_eq(buf_reserve(&b, SIZE_MAX), -ENOMEM);
    cr_assert_eq(buf_reserve(&b, SIZE_MAX / 2), -ENOMEM);
    cr_assert_eq(b.data, data);
    cr_assert_eq(b.cap, cap);
    cr_assert_eq(b.len, 3);
    buf_free(&b);
}

Test(buf, puts_are_little_and_big_endian, .fini = check_leaks)
{
    struct buf b;
    buf_init(&b);
    cr_assert_eq(buf_reserve(&b, 2 + 4 + 8 + 2 + 4 + 8), 0);
    buf_put_u16le(&b, 0x0102);
    buf_put_u32le(&b, 0x01020304);
    buf_put_u64le(&b, 0x0102030405060708ull);
    buf_put_u16be(&b, 0x0102);
    buf_put_u32be(&b, 0x01020304);
    buf_put_u64be(&b, 0x0102030405060708ull);
    const uint8_t want[] = {2, 1, 4, 3, 2, 1, 8, 7, 6, 5, 4, 3, 2, 1,
                            1, 2, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert_eq(b.len, sizeof(want));
    cr_assert_eq(memcmp(b.data, want, sizeof(want)), 0);
    buf_free(&b);
}

Test(buf, append_consume_and_shrink, .fini = check_leaks)
{
    struct buf b = {0};
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(buf_append(&b, "0123456789", 10), 0);
    cr_assert_eq(b.len, 10000);
    buf_consume(&b, 9995);
    cr_assert_eq(b.len, 5);
    cr_assert_eq(memcmp(b.data, "56789", 5), 0);
    buf_shrink(&b, 4096);
    cr_assert_not_null(b.data, "a buffer still in use is not shrunk");
    buf_consume(&b, 100);
    cr_assert_eq(b.len, 0);
    buf_shrink(&b, 1 << 20);
    cr_assert_not_null(b.data, "small enough to keep");
    buf_shrink(&b, 4096);
    cr_assert_null(b.data, "an empty large buffer gives its memory back");
    cr_assert_eq(buf_append(&b, NULL, 0), 0);
    buf_free(&b);
}
