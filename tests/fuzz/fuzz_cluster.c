/* libFuzzer target for what arrives on the cluster port (harness.c, a real
 * node in this process): the first byte picks how the rest is sent.
 *   0..2  after a valid handshake as node 2 (cluster/peer.c, with the
 *         harness's secret), on channel 3 (the data link: link.c frames,
 *         member.c control frames, the broker's messages in remote.c),
 *         2 (forwarded proposals: forward.c, then the log entry through
 *         fsm.c and cluster/command.c) or, only with STARLING_FUZZ_RAFT=1,
 *         1 (libraft's own decoder: it allocates whatever length a peer
 *         sends, so the fuzzer stops at once with allocation-size-too-big;
 *         libraft is not ours to fix, see docs/testing.md);
 *   else  as they are, with no handshake (peer.c's handshake parser: what
 *         anyone who reaches the port can send).
 * Frames on channels 2 and 3 are u32 little-endian length, u8 type, body.
 * A crash, a sanitizer report or a connection the node keeps open after the
 * peer's end of stream is a finding, and so is a forwarded proposal that
 * stops the node once committed (the leader must refuse what no node can
 * apply). On the data link a peer may legitimately stop the node (it says the
 * node was removed) or take its leadership: the next input then gets a fresh
 * node (harness_reset_if_stopped). */
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

static int raft_too = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const uint8_t channels[] = {3, 2, 1};
    if (raft_too < 0)
        raft_too = getenv("STARLING_FUZZ_RAFT") != NULL;
    if (data[0] == 2 && !raft_too)
        return 0;
    if (data[0] < 3) {
        harness_exchange_peer(channels[data[0]], 2, data + 1, size - 1, 10000);
        if (data[0] == 1) {
            harness_settle(30); /* committed and applied */
            if (harness_stopped()) {
                fprintf(stderr, "fuzz_cluster: a forwarded proposal stopped the node\n");
                abort();
            }
        }
    } else
        harness_exchange(harness_cluster_port(), data + 1, size - 1, 10000);
    harness_reset_if_stopped();
    return 0;
}
