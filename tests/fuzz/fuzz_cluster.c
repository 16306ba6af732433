/* libFuzzer target for what arrives on the cluster port of a real node in
 * this process (harness.c): the first byte picks how the rest is sent.
 *   0..2  after a valid handshake as node 2, on channel 3 (the data link:
 *         link.c frames, member.c control frames, the broker's messages in
 *         remote.c), 2 (forwarded proposals: forward.c's checks, then the
 *         log entry's header as fsm.c judges it and its commands decoded
 *         and applied to the store, rolled back) or, only with
 *         STARLING_FUZZ_RAFT=1, 1 (libraft's own decoder: it allocates
 *         whatever length a peer sends, so the fuzzer stops at once with
 *         allocation-size-too-big; libraft is not ours to fix, see
 *         docs/testing.md);
 *   else  as they are, with no handshake (peer.c's handshake parser: what
 *         anyone who reaches the port can send).
 * Frames on channels 2 and 3 are u32 little-endian length, u8 type, body.
 * The bytes go, with no socket, into the same handshake parser, frame
 * decoder and handlers as a socket's (cluster__peer_feed), then the peer's
 * end of stream; what the node answers is dropped. Forwarded proposals are
 * checked and applied in a rolled-back transaction (cluster__fsm_dry_run),
 * not appended: no commit is waited for. Thousands of inputs a second
 * instead of about 50. STARLING_FUZZ_SOCKET=1 (and the Raft channel, which
 * libraft reads itself) uses a loopback connection with a real handshake
 * (harness.c) instead, and a forwarded proposal is then appended, committed
 * and applied (harness_settle) with the broker told.
 * A crash or a sanitizer report is a finding, and so is a forwarded proposal
 * that stops the node (the leader must refuse what no node can apply), and,
 * over a socket, a connection the node keeps open after the peer's end of
 * stream. On the data link a peer may legitimately stop the node (it says
 * the node was removed) or take its leadership (it joins and never answers):
 * inputs with such control frames are not sent (changes_membership), and
 * should another one do it, the next input gets a fresh node
 * (harness_reset_if_stopped). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

static int raft_too = -1;

/* Whether data-link bytes hold a control frame that changes the membership
 * on purpose: a removal notice (CTL_REMOVED, cluster/member.c: the node stops
 * as told) or a join request (CTL_JOIN: a second voter that never answers,
 * so the node loses its leadership). Such inputs are not sent, as fuzz_admin
 * sends no join or leave: each would cost the next inputs seconds of a node
 * starting again (tests/cluster covers both). */
static bool changes_membership(const uint8_t *p, size_t n)
{
    enum { LINK_CONTROL = 5, CTL_JOIN = 2, CTL_REMOVED = 5 };
    size_t pos = 0;
    while (n - pos >= 4) {
        uint32_t len = (uint32_t)p[pos] | (uint32_t)p[pos + 1] << 8 | (uint32_t)p[pos + 2] << 16 |
                       (uint32_t)p[pos + 3] << 24;
        pos += 4;
        if (len == 0 || len > n - pos)
            break;
        if (len >= 2 && p[pos] == LINK_CONTROL && (p[pos + 1] == CTL_JOIN || p[pos + 1] == CTL_REMOVED))
            return true;
        pos += len;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const uint8_t channels[] = {3, 2, 1};
    if (raft_too < 0)
        raft_too = getenv("STARLING_FUZZ_RAFT") != NULL;
    if ((data[0] == 2 && !raft_too) || (data[0] == 0 && changes_membership(data + 1, size - 1)))
        return -1; /* not sent: nor kept in the corpus, to be mutated into more of the same */
    bool socket = harness_socket() || data[0] == 2;
    if (data[0] < 3) {
        if (socket)
            harness_exchange_peer(channels[data[0]], 2, data + 1, size - 1, 10000);
        else
            (void)harness_feed_peer(channels[data[0]], 2, data + 1, size - 1);
        if (data[0] == 1) {
            if (socket)
                harness_settle(30); /* committed and applied */
            if (harness_stopped()) {
                fprintf(stderr, "fuzz_cluster: a forwarded proposal stopped the node\n");
                abort();
            }
        }
    } else if (socket) {
        harness_exchange(harness_cluster_port(), data + 1, size - 1, 10000);
    } else {
        (void)harness_feed_peer(0, 0, data + 1, size - 1);
    }
    harness_reset_if_stopped();
    return 0;
}
