/* bench: the send-time stamp at the start of each payload, and the filler after it. */
#include <string.h>
#include <time.h>

#include "bytes.h" /* common/: the big-endian time */
#include "internal.h"

uint64_t bench__clock_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock == BENCH_CLOCK_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void bench__stamp_write(uint8_t *p, int clock, uint64_t ns)
{
    p = bytes_put_mem(p, "SB1", 3);
    p = bytes_put_u8(p, (uint8_t)clock);
    bytes_put_u64be(p, ns);
}

int bench__stamp_read(const uint8_t *p, size_t len, int *clock, uint64_t *ns)
{
    if (len < BENCH_STAMP_LEN || p[0] != 'S' || p[1] != 'B' || p[2] != '1')
        return -1;
    if (p[3] != BENCH_CLOCK_MONOTONIC && p[3] != BENCH_CLOCK_REALTIME)
        return -1;
    *clock = p[3];
    *ns = bytes_get_u64be(p + 4);
    return 0;
}

void bench__payload_fill(uint8_t *p, size_t len)
{
    memset(p, 'a', len);
}
