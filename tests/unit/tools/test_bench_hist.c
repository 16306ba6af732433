/* Tests for tools/bench/hist.c: bucket bounds, percentiles, clamping, merging. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "internal.h"

static struct bench_hist *new_hist(void)
{
    struct bench_hist *h = malloc(sizeof(*h));
    cr_assert_not_null(h);
    bench__hist_init(h);
    return h;
}

Test(bench_hist, buckets_cover_every_value_within_one_64th)
{
    unsigned last = 0;
    for (uint64_t v = 0; v < 2000000; v += (v < 5000 ? 1 : 997)) {
        unsigned i = bench__hist_index(v);
        cr_assert_lt(i, BENCH_HIST_BUCKETS);
        cr_assert_geq(i, last, "index must not decrease (v=%lu)", (unsigned long)v);
        last = i;
        uint64_t lo = bench__hist_lowest(i), hi = bench__hist_highest(i);
        cr_assert(lo <= v && v <= hi, "v=%lu not in [%lu, %lu]", (unsigned long)v,
                  (unsigned long)lo, (unsigned long)hi);
        cr_assert_leq((hi - lo + 1) * 64, lo < 64 ? 64 : lo, "bucket too wide at %lu",
                      (unsigned long)v);
    }
}

Test(bench_hist, bucket_edges_at_powers_of_two)
{
    for (unsigned e = 6; e <= BENCH_HIST_MAX_EXP; e++) {
        uint64_t p = UINT64_C(1) << e;
        cr_assert_eq(bench__hist_index(p), bench__hist_index(p - 1) + 1, "e=%u", e);
        cr_assert_eq(bench__hist_lowest(bench__hist_index(p)), p);
        cr_assert_eq(bench__hist_highest(bench__hist_index(p - 1)), p - 1);
    }
    cr_assert_eq(bench__hist_index(BENCH_HIST_MAX_VALUE), BENCH_HIST_BUCKETS - 1);
    cr_assert_eq(bench__hist_highest(BENCH_HIST_BUCKETS - 1), BENCH_HIST_MAX_VALUE);
}

Test(bench_hist, empty_reports_zero)
{
    struct bench_hist *h = new_hist();
    cr_assert_eq(bench__hist_percentile(h, 50), 0);
    cr_assert_eq(bench__hist_percentile(h, 100), 0);
    cr_assert_float_eq(bench__hist_mean(h), 0.0, 1e-9);
    free(h);
}

Test(bench_hist, small_values_are_exact)
{
    struct bench_hist *h = new_hist();
    for (uint64_t v = 0; v < 64; v++)
        bench__hist_record(h, v);
    /* 64 samples: rank ceil(p * 64 / 100). */
    cr_assert_eq(bench__hist_percentile(h, 50), 31);
    cr_assert_eq(bench__hist_percentile(h, 90), 57);
    cr_assert_eq(bench__hist_percentile(h, 99), 63);
    cr_assert_eq(bench__hist_percentile(h, 0), 0);
    cr_assert_eq(bench__hist_percentile(h, 100), 63);
    cr_assert_eq(h->min, 0);
    cr_assert_eq(h->max, 63);
    cr_assert_float_eq(bench__hist_mean(h), 31.5, 1e-9);
    free(h);
}

static void assert_near(uint64_t got, uint64_t want)
{
    /* The reported value is the bucket's highest: want <= got <= want * (1 + 1/64). */
    cr_assert(got >= want && got <= want + want / 64 + 1, "got %lu, want ~%lu",
              (unsigned long)got, (unsigned long)want);
}

Test(bench_hist, uniform_percentiles)
{
    struct bench_hist *h = new_hist();
    for (uint64_t v = 1; v <= 100000; v++)
        bench__hist_record(h, v);
    assert_near(bench__hist_percentile(h, 50), 50000);
    assert_near(bench__hist_percentile(h, 90), 90000);
    assert_near(bench__hist_percentile(h, 99), 99000);
    assert_near(bench__hist_percentile(h, 99.9), 99900);
    cr_assert_eq(bench__hist_percentile(h, 100), 100000);
    cr_assert_eq(h->count, 100000);
    cr_assert_float_eq(bench__hist_mean(h), 50000.5, 1e-6);
    free(h);
}

Test(bench_hist, tail_rank_boundaries)
{
    /* 990 fast samples and 10 slow ones: p99 is the 990th (fast), p99.1 the
     * 991st (slow); the slow bucket's highest value is clamped to the max. */
    struct bench_hist *h = new_hist();
    for (int i = 0; i < 990; i++)
        bench__hist_record(h, 100);
    for (int i = 0; i < 10; i++)
        bench__hist_record(h, 10000);
    assert_near(bench__hist_percentile(h, 50), 100);
    assert_near(bench__hist_percentile(h, 99), 100);
    cr_assert_eq(bench__hist_percentile(h, 99.1), 10000);
    cr_assert_eq(bench__hist_percentile(h, 99.9), 10000);
    cr_assert_eq(h->max, 10000);
    free(h);
}

Test(bench_hist, single_value_everywhere)
{
    struct bench_hist *h = new_hist();
    bench__hist_record(h, 12345);
    cr_assert_eq(bench__hist_percentile(h, 1), 12345);
    cr_assert_eq(bench__hist_percentile(h, 50), 12345);
    cr_assert_eq(bench__hist_percentile(h, 99.9), 12345);
    free(h);
}

Test(bench_hist, huge_values_are_clamped_into_the_last_bucket)
{
    struct bench_hist *h = new_hist();
    bench__hist_record(h, UINT64_MAX);
    bench__hist_record(h, 5);
    cr_assert_eq(h->buckets[BENCH_HIST_BUCKETS - 1], 1);
    cr_assert_eq(h->max, UINT64_MAX);
    cr_assert_eq(bench__hist_percentile(h, 100), UINT64_MAX);
    cr_assert_eq(bench__hist_percentile(h, 50), 5);
    free(h);
}

Test(bench_hist, merge_equals_recording_everything)
{
    struct bench_hist *a = new_hist(), *b = new_hist(), *all = new_hist();
    for (uint64_t v = 1; v <= 5000; v++) {
        bench__hist_record(v % 2 ? a : b, v * 7);
        bench__hist_record(all, v * 7);
    }
    struct bench_hist *empty = new_hist();
    bench__hist_merge(a, empty);
    bench__hist_merge(a, b);
    cr_assert_eq(a->count, all->count);
    cr_assert_eq(a->min, all->min);
    cr_assert_eq(a->max, all->max);
    for (double p = 0; p <= 100; p += 0.5)
        cr_assert_eq(bench__hist_percentile(a, p), bench__hist_percentile(all, p), "p=%g", p);
    bench__hist_merge(empty, all);
    cr_assert_eq(empty->min, all->min);
    free(a);
    free(b);
    free(all);
    free(empty);
}
