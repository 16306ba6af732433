/* Tests for tools/bench/payload.c: the send-time stamp and the filler. */
#include <criterion/criterion.h>
#include <string.h>

#include "internal.h"

Test(bench_payload, stamp_round_trip)
{
    uint8_t buf[64];
    bench__payload_fill(buf, sizeof(buf));
    bench__stamp_write(buf, BENCH_CLOCK_MONOTONIC, UINT64_C(0x0102030405060708));
    /* Layout: "SB1", clock byte, nanoseconds big-endian, then the filler. */
    static const uint8_t want[] = {'S', 'B', '1', 'M', 1, 2, 3, 4, 5, 6, 7, 8, 'a'};
    cr_assert_arr_eq(buf, want, sizeof(want));
    int clock = 0;
    uint64_t ns = 0;
    cr_assert_eq(bench__stamp_read(buf, sizeof(buf), &clock, &ns), 0);
    cr_assert_eq(clock, BENCH_CLOCK_MONOTONIC);
    cr_assert_eq(ns, UINT64_C(0x0102030405060708));
}

Test(bench_payload, realtime_and_extremes)
{
    uint8_t buf[BENCH_STAMP_LEN];
    uint64_t values[] = {0, 1, UINT64_MAX, UINT64_C(1700000000000000000)};
    for (size_t i = 0; i < 4; i++) {
        bench__stamp_write(buf, BENCH_CLOCK_REALTIME, values[i]);
        int clock;
        uint64_t ns;
        cr_assert_eq(bench__stamp_read(buf, sizeof(buf), &clock, &ns), 0);
        cr_assert_eq(clock, BENCH_CLOCK_REALTIME);
        cr_assert_eq(ns, values[i]);
    }
}

Test(bench_payload, not_a_stamp)
{
    uint8_t buf[32];
    int clock = 99;
    uint64_t ns = 99;
    bench__stamp_write(buf, BENCH_CLOCK_MONOTONIC, 5);
    cr_assert_eq(bench__stamp_read(buf, BENCH_STAMP_LEN - 1, &clock, &ns), -1, "truncated");
    cr_assert_eq(bench__stamp_read(NULL, 0, &clock, &ns), -1, "empty");
    buf[3] = 'X';
    cr_assert_eq(bench__stamp_read(buf, sizeof(buf), &clock, &ns), -1, "unknown clock");
    bench__payload_fill(buf, sizeof(buf));
    cr_assert_eq(bench__stamp_read(buf, sizeof(buf), &clock, &ns), -1, "filler");
    cr_assert_eq(clock, 99, "outputs untouched on failure");
    cr_assert_eq(ns, 99);
}

Test(bench_payload, clocks_move_forward)
{
    uint64_t a = bench__clock_ns(BENCH_CLOCK_MONOTONIC);
    uint64_t b = bench__clock_ns(BENCH_CLOCK_MONOTONIC);
    cr_assert_geq(b, a);
    /* Realtime is Unix time: after 2020 in nanoseconds. */
    cr_assert_gt(bench__clock_ns(BENCH_CLOCK_REALTIME), UINT64_C(1577836800000000000));
}

Test(bench_payload, filler_is_printable)
{
    uint8_t buf[300];
    bench__payload_fill(buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++)
        cr_assert_eq(buf[i], 'a');
}
