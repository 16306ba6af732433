/* libFuzzer target for the store's record decoders (store/kv.c, record.c,
 * users.c):
 * the input is one raw LMDB pair as a corrupted map could hold it (first
 * byte: the table; then u16 key length, the key, and the value), decoded by
 * store__kv_decode and the table's record decoder. Every view a decoder
 * returns must lie inside the bytes it was given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const uint8_t *lo, *hi;

static void inside(struct store_bytes v, const char *what)
{
    if (v.len == 0)
        return;
    if (v.p < lo || v.p > hi || v.len > (size_t)(hi - v.p)) {
        fprintf(stderr, "fuzz_store_record: %s view outside the record\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t table = data[0] % 5; /* sessions, subs, retained, users, acl */
    size_t klen = (size_t)data[1] << 8 | data[2];
    if (klen > size - 3)
        klen = size - 3;
    /* copies, so that ASan sees a read past either end */
    uint8_t *key = malloc(klen ? klen : 1), *val = malloc(size - 3 - klen + 1);
    memcpy(key, data + 3, klen);
    memcpy(val, data + 3 + klen, size - 3 - klen);
    MDB_val k = {.mv_size = klen, .mv_data = key}, v = {.mv_size = size - 3 - klen, .mv_data = val};

    struct store__kv kv;
    if (store__kv_decode(&k, &v, &kv) == 0) {
        lo = val;
        hi = val + v.mv_size;
        inside(kv.body, "body");
        if (kv.key.p != key) /* a hashed key comes from the value */
            inside(kv.key, "key");
        int rc;
        if (table == 0) {
            struct store_session s;
            if ((rc = store__session_decode(&kv, &s)) == 0) {
                inside(s.will_topic, "will topic");
                inside(s.will_payload, "will payload");
                inside(s.will_props, "will props");
            }
        } else if (table == 1) {
            struct store_sub s;
            (void)store__sub_decode(&kv, &s);
        } else if (table == 2) {
            struct store_retained r;
            if ((rc = store__retained_decode(&kv, &r)) == 0) {
                inside(r.payload, "payload");
                inside(r.props, "props");
            }
        } else if (table == 3) {
            struct store_user u;
            if ((rc = store__user_decode(&kv, &u)) == 0) {
                inside(u.hash, "hash");
                inside(u.scram, "scram");
            }
        } else {
            struct store_acl_rule a;
            (void)store__acl_decode(&kv, &a); /* views into the key */
        }
    }
    free(key);
    free(val);
    return 0;
}
