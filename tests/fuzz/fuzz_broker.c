/* libFuzzer target for the broker's connection state machine: the input is
 * the byte stream of one MQTT client (typically CONNECT then a few packets),
 * sent over loopback to a real broker running in this process (harness.c).
 * Everything a client reaches runs: framing and decoding, CONNECT and the
 * session claim, PUBLISH at each QoS with retained messages, SUBSCRIBE,
 * acknowledgements, DISCONNECT, commits of the one-node cluster, writes and
 * the close. A crash, a sanitizer report, or a connection the broker keeps
 * open after the client's end of stream is a finding.
 *
 * The broker is started once per process; sessions and retained messages a
 * former input left stay (as on a live node). To reproduce a finding run the
 * input alone first; if it does not crash alone, run the fuzzer's corpus
 * directory up to it (-runs=N corpus/). */
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_exchange(harness_mqtt_port(), data, size, 10000);
    if (harness_stopped()) {
        fprintf(stderr, "fuzz_broker: a client's bytes stopped the node\n");
        abort();
    }
    return 0;
}
