/* libFuzzer target for the decoders of what crosses the cluster
 * (cluster/command.c): the input is the body of a log entry, a sequence of
 * commands as cluster_cmd_decode reads them. Every command that decodes is
 * encoded again and must decode to the same bytes (the codec agrees with
 * itself); a decoder that does not advance, or runs past the end, aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cluster.h"

static void fail(const char *what, int rc)
{
    fprintf(stderr, "fuzz_cluster_cmd: %s (%d)\n", what, rc);
    abort();
}

static void roundtrip(const struct cluster_cmd *cmd)
{
    struct buf a = {0}, b = {0};
    int rc = cluster_cmd_encode(cmd, &a);
    if (rc == -ENOMEM)
        return;
    if (rc)
        return; /* decodable but not encodable (e.g. a field the encoder bounds): fine */
    size_t pos = 0;
    struct cluster_cmd back;
    rc = cluster_cmd_decode(a.data, a.len, &pos, &back);
    if (rc || pos != a.len)
        fail("a re-encoded command does not decode", rc);
    if (cluster_cmd_encode(&back, &b) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len))
        fail("command encoding is not stable", 0);
    buf_free(&a);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    size_t pos = 0;
    while (pos < size) {
        struct cluster_cmd cmd;
        size_t before = pos;
        if (cluster_cmd_decode(copy, size, &pos, &cmd) != 0)
            break;
        if (pos <= before || pos > size)
            fail("decoder did not advance within the entry", 0);
        roundtrip(&cmd);
    }
    free(copy);
    return 0;
}
