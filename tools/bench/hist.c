/* bench: the log-linear latency histogram (64 linear sub-buckets per power of two). */
#include <math.h>
#include <string.h>

#include "internal.h"

void bench__hist_init(struct bench_hist *h)
{
    memset(h, 0, sizeof(*h));
}

unsigned bench__hist_index(uint64_t v)
{
    if (v > BENCH_HIST_MAX_VALUE)
        v = BENCH_HIST_MAX_VALUE;
    if (v < BENCH_HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 2^e <= v < 2^(e+1), e >= 6 */
    unsigned k = e - BENCH_HIST_SUB_BITS;            /* sub-bucket width is 2^k */
    unsigned sub = (unsigned)(v >> k) - BENCH_HIST_SUB;
    return BENCH_HIST_SUB + k * BENCH_HIST_SUB + sub;
}

uint64_t bench__hist_lowest(unsigned index)
{
    if (index < BENCH_HIST_SUB)
        return index;
    unsigned k = (index - BENCH_HIST_SUB) / BENCH_HIST_SUB;
    unsigned sub = (index - BENCH_HIST_SUB) % BENCH_HIST_SUB;
    return (uint64_t)(BENCH_HIST_SUB + sub) << k;
}

uint64_t bench__hist_highest(unsigned index)
{
    if (index < BENCH_HIST_SUB)
        return index;
    unsigned k = (index - BENCH_HIST_SUB) / BENCH_HIST_SUB;
    return bench__hist_lowest(index) + (UINT64_C(1) << k) - 1;
}

void bench__hist_record(struct bench_hist *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += (double)v;
    h->buckets[bench__hist_index(v)]++;
}

void bench__hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

uint64_t bench__hist_percentile(const struct bench_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (!(p > 0)) /* also NaN */
        return h->min;
    if (p >= 100)
        return h->max;
    /* Rank of the sample wanted, 1-based. The small epsilon keeps p = 50 of 1000
     * samples at rank 500 despite 50.0 / 100 * 1000 not being exact. */
    double want = ceil(p / 100.0 * (double)h->count - 1e-9);
    uint64_t rank = want < 1 ? 1 : (uint64_t)want;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = bench__hist_highest(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max; /* not reached: the buckets add up to count */
}

double bench__hist_mean(const struct bench_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
