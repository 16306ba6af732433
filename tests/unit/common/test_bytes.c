/* common/bytes.h: the bounds-checked reader and the fixed-width codecs. */
#include <criterion/criterion.h>

#include "bytes.h"

#define ESHORT (-77)

Test(bytes, little_and_big_endian_round_trip)
{
    uint8_t b[8];
    cr_assert_eq(bytes_put_u16le(b, 0x1234) - b, 2);
    cr_assert_eq(b[0], 0x34);
    cr_assert_eq(bytes_get_u16le(b), 0x1234);
    bytes_put_u16be(b, 0x1234);
    cr_assert_eq(b[0], 0x12);
    cr_assert_eq(bytes_get_u16be(b), 0x1234);
    cr_assert_eq(bytes_put_u32le(b, 0xA1B2C3D4u) - b, 4);
    cr_assert_eq(b[0], 0xD4);
    cr_assert_eq(bytes_get_u32le(b), 0xA1B2C3D4u);
    bytes_put_u32be(b, 0xA1B2C3D4u);
    cr_assert_eq(b[0], 0xA1);
    cr_assert_eq(bytes_get_u32be(b), 0xA1B2C3D4u);
    cr_assert_eq(bytes_put_u64le(b, 0x0102030405060708ull) - b, 8);
    cr_assert_eq(b[0], 0x08);
    cr_assert_eq(b[7], 0x01);
    cr_assert_eq(bytes_get_u64le(b), 0x0102030405060708ull);
    bytes_put_u64be(b, 0xF102030405060708ull);
    cr_assert_eq(b[0], 0xF1);
    cr_assert_eq(bytes_get_u64be(b), 0xF102030405060708ull);
}

Test(bytes, reads_in_order_and_advances)
{
    const uint8_t in[] = {7, 0x34, 0x12, 0, 0, 0, 1, 'a', 'b', 'c'};
    struct bytes_reader r;
    bytes_reader_init(&r, in, sizeof(in), ESHORT);
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    const uint8_t *view;
    cr_assert_eq(bytes_read_u8(&r, &u8), 0);
    cr_assert_eq(u8, 7);
    cr_assert_eq(bytes_read_u16le(&r, &u16), 0);
    cr_assert_eq(u16, 0x1234);
    cr_assert_eq(bytes_read_u32be(&r, &u32), 0);
    cr_assert_eq(u32, 1);
    cr_assert_eq(bytes_left(&r), 3);
    cr_assert_eq(bytes_cursor(&r), in + 7);
    cr_assert_eq(bytes_read_view(&r, 3, &view), 0);
    cr_assert_eq(view, in + 7);
    cr_assert_eq(bytes_left(&r), 0);
    cr_assert_eq(bytes_read_view(&r, 0, &view), 0, "an empty view at the end is not short");
}

/* Every read, at every length short of what it needs, returns the reader's
 * error and leaves the cursor and the output untouched. */
Test(bytes, short_reads_fail_and_change_nothing)
{
    const uint8_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t len = 0; len < 8; len++) {
        struct bytes_reader r;
        bytes_reader_init(&r, in, len, ESHORT);
        uint16_t u16 = 0xAAAA;
        uint32_t u32 = 0xAAAAAAAA;
        uint64_t u64 = 0xAAAAAAAAAAAAAAAAull;
        const uint8_t *view = NULL;
        uint8_t mem[8] = {0};
        if (len < 2) {
            cr_assert_eq(bytes_read_u16le(&r, &u16), ESHORT);
            cr_assert_eq(bytes_read_u16be(&r, &u16), ESHORT);
            cr_assert_eq(u16, 0xAAAA);
        }
        if (len < 4) {
            cr_assert_eq(bytes_read_u32le(&r, &u32), ESHORT);
            cr_assert_eq(bytes_read_u32be(&r, &u32), ESHORT);
            cr_assert_eq(u32, 0xAAAAAAAA);
        }
        cr_assert_eq(bytes_read_u64le(&r, &u64), ESHORT);
        cr_assert_eq(bytes_read_u64be(&r, &u64), ESHORT);
        cr_assert_eq(u64, 0xAAAAAAAAAAAAAAAAull);
        cr_assert_eq(bytes_read_view(&r, len + 1, &view), ESHORT);
        cr_assert_null(view);
        cr_assert_eq(bytes_read_mem(&r, mem, len + 1), ESHORT);
        cr_assert_eq(mem[0], 0);
        cr_assert_eq(bytes_skip(&r, len + 1), ESHORT);
        cr_assert_eq(bytes_need(&r, len + 1), ESHORT);
        cr_assert_eq(bytes_need(&r, len), 0);
        cr_assert_eq(r.pos, 0, "len %zu: the cursor moved", len);
    }
    struct bytes_reader r;
    bytes_reader_init(&r, in, 0, ESHORT);
    uint8_t u8 = 9;
    cr_assert_eq(bytes_read_u8(&r, &u8), ESHORT);
    cr_assert_eq(u8, 9);
}

/* A length from the wire near SIZE_MAX must not wrap the bounds check. */
Test(bytes, huge_lengths_do_not_overflow)
{
    const uint8_t in[4] = {0};
    struct bytes_reader r;
    bytes_reader_init(&r, in, sizeof(in), ESHORT);
    cr_assert_eq(bytes_skip(&r, 1), 0);
    const uint8_t *view;
    cr_assert_eq(bytes_read_view(&r, SIZE_MAX, &view), ESHORT);
    cr_assert_eq(bytes_skip(&r, SIZE_MAX - 1), ESHORT);
    cr_assert_eq(bytes_left(&r), 3);
}

Test(bytes, put_mem_with_nothing_to_copy)
{
    uint8_t b[1] = {5};
    cr_assert_eq(bytes_put_mem(b, NULL, 0), b);
    cr_assert_eq(b[0], 5);
    cr_assert_eq(bytes_put_mem(b, "x", 1), b + 1);
    cr_assert_eq(b[0], 'x');
}
