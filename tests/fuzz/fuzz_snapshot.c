/* libFuzzer target for snapshot install (store/snapshot.c): the input is a
 * snapshot as a leader would send it. store_snapshot_peek and
 * store_snapshot_restore run on it against one store opened per process (in
 * a temporary directory, on tmpfs when there is one); a snapshot that
 * restores is then read back through every table (the record decoders), and
 * one that does not must leave the state as it was. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

static struct store *st;
static char dir[64];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    if (st)
        store_close(st);
    if (dir[0])
        nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof(dir), "%s/fuzz-snapshot-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir) || store_open(&st, dir, 64u << 20) != 0) {
        fprintf(stderr, "fuzz_snapshot: cannot open a store in %s\n", dir);
        exit(1);
    }
    atexit(cleanup);
    return 0;
}

static int count_session(void *arg, const struct store_session *s)
{
    (void)s;
    (*(size_t *)arg)++;
    return 0;
}
static int count_sub(void *arg, const struct store_sub *s)
{
    (void)s;
    (*(size_t *)arg)++;
    return 0;
}
static int count_retained(void *arg, const struct store_retained *r)
{
    (void)r;
    (*(size_t *)arg)++;
    return 0;
}
static int count_user(void *arg, const struct store_user *u)
{
    (void)u;
    (*(size_t *)arg)++;
    return 0;
}
static int count_rule(void *arg, const struct store_acl_rule *r)
{
    (void)r;
    (*(size_t *)arg)++;
    return 0;
}

/* Reads every record; returns how many there are. */
static size_t read_back(void)
{
    struct store_txn *txn;
    size_t n = 0;
    if (store_read_begin(st, &txn) != 0)
        abort();
    int rc = store_sessions_foreach(txn, count_session, &n);
    if (rc == 0)
        rc = store_subs_foreach(txn, count_sub, &n);
    if (rc == 0)
        rc = store_retained_foreach(txn, count_retained, &n);
    if (rc == 0)
        rc = store_users_foreach(txn, count_user, &n);
    if (rc == 0)
        rc = store_acl_foreach(txn, count_rule, &n);
    store_txn_end(txn);
    if (rc) {
        fprintf(stderr, "fuzz_snapshot: a restored snapshot does not read back (%s)\n", store_strerror(rc));
        abort();
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t peeked = 0;
    int prc = store_snapshot_peek(data, size, &peeked);
    uint64_t before = store_applied_index(st);
    size_t records = read_back();
    int rc = store_snapshot_restore(st, data, size);
    if (rc == 0) {
        if (prc != 0 || store_applied_index(st) != peeked) {
            fprintf(stderr, "fuzz_snapshot: restore and peek disagree\n");
            abort();
        }
        (void)read_back();
    } else if (store_applied_index(st) != before || read_back() != records) {
        fprintf(stderr, "fuzz_snapshot: a refused snapshot changed the state (%s)\n", store_strerror(rc));
        abort();
    }
    return 0;
}
