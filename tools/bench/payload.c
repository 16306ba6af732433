/* bench: the send-time stamp at the start of each payload, and the filler after it. */
#include <string.h>
#include <time.h>

#include "internal.h"

uint64_t bench__clock_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock == BENCH_CLOCK_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void bench__stamp_write(uint8_t *p, int clock, uint64_t ns)
{
    p[0] = 'S';
    p[1] = 'B';
    p[2] = '1';
    p[3] = (uint8_t)clock;
    for (int i = 0; i < 8; i++)
        p[4 + i] = (uint8_t)(ns >> (56 - 8 * i));
}

int bench__stamp_read(const uint8_t *p, size_t len, int *clock, uint64_t *ns)
{
    if (len < BENCH_STAMP_LEN || p[0] != 'S' || p[1] != 'B' || p[2] != '1')
        return -1;
    if (p[3] != BENCH_CLOCK_MONOTONIC && p[3] != BENCH_CLOCK_REALTIME)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[4 + i];
    *clock = p[3];
    *ns = v;
    return 0;
}

void bench__payload_fill(uint8_t *p, size_t len)
{
    memset(p, 'a', len);
}
