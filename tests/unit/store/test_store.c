/* Tests for store/store.c: opening, reopening and closing the environment,
 * transactions and the applied index, a full map, read-only access from
 * another process, format mismatches and foreign files, error strings. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(store, .init = store_test_setup, .fini = store_test_teardown);

/* --- lifecycle --------------------------------------------------------------------- */

Test(store, open_creates_directory_and_starts_empty)
{
    struct store *s = open_at(env_dir);
    struct stat st;
    cr_assert_eq(stat(env_dir, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0700);
    cr_assert_eq(store_applied_index(s), 0);
    struct store_txn *t = rbegin(s);
    int n = 0;
    cr_assert_eq(store_sessions_foreach(t, count_session, &n), 0);
    cr_assert_eq(store_subs_foreach(t, count_sub, &n), 0);
    cr_assert_eq(store_retained_foreach(t, count_retained, &n), 0);
    cr_assert_eq(n, 0);
    store_txn_end(t);
    store_close(s);
    check_leaks();
}

Test(store, open_on_a_file_fails)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/file", tmp_root);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    struct store *s;
    cr_assert_eq(store_open(&s, path, 0), -ENOTDIR);
    check_leaks();
}

Test(store, reopen_keeps_data_and_applied_index)
{
    struct store *s = open_at(env_dir);
    populate(s);
    cr_assert_eq(store_applied_index(s), 5);
    struct buf before = dump(s);
    store_close(s);

    s = open_at(env_dir);
    cr_assert_eq(store_applied_index(s), 5);
    struct buf after = dump(s);
    assert_same_dump(&before, &after);
    struct store_txn *t = rbegin(s);
    struct store_session got, want = session_rec(U("alice"), 1);
    cr_assert_eq(store_session_get(t, U("alice"), &got), 0);
    assert_session_eq(&got, &want);
    store_txn_end(t);
    store_close(s);
    buf_free(&before);
    buf_free(&after);
    check_leaks();
}

Test(store, abort_discards_everything)
{
    struct store *s = open_at(env_dir);
    populate(s);
    struct buf before = dump(s);
    struct store_txn *t = wbegin(s);
    struct store_session x = session_rec(U("x"), 9);
    cr_assert_eq(store_session_put(t, &x), 0);
    cr_assert_eq(store_session_del(t, U("alice")), 0);
    cr_assert_eq(store_retain_del(t, U("c")), 1);
    store_txn_end(t);
    cr_assert_eq(store_applied_index(s), 5);
    struct buf after = dump(s);
    assert_same_dump(&before, &after);
    store_close(s);
    buf_free(&before);
    buf_free(&after);
    check_leaks();
}

Test(store, one_write_transaction_at_a_time)
{
    struct store *s = open_at(env_dir);
    struct store_txn *t = wbegin(s), *t2 = NULL;
    cr_assert_eq(store_write_begin(s, &t2), -EBUSY);
    /* A read transaction alongside is fine and sees the committed state. */
    struct store_txn *r = rbegin(s);
    struct store_session x = session_rec(U("x"), 9), got;
    cr_assert_eq(store_session_put(t, &x), 0);
    cr_assert_eq(store_session_get(r, U("x"), &got), STORE_ENOTFOUND);
    cr_assert_eq(store_session_put(r, &x), -EACCES);
    store_txn_end(r);
    commit(t, 1);
    t = wbegin(s);
    store_txn_end(t);
    store_close(s);
    check_leaks();
}

Test(store, commit_stores_the_given_index_each_time)
{
    struct store *s = open_at(env_dir);
    for (uint64_t i = 1; i <= 3; i++) {
        struct store_txn *t = wbegin(s);
        commit(t, i * 10);
        cr_assert_eq(store_applied_index(s), i * 10);
    }
    store_close(s);
    s = open_at(env_dir);
    cr_assert_eq(store_applied_index(s), 30);
    store_close(s);
    check_leaks();
}

Test(store, map_full_fails_the_put_and_the_commit)
{
    struct store *s;
    cr_assert_eq(store_open(&s, env_dir, 1 << 20), 0);
    size_t n = 2 << 20;
    uint8_t *big = pattern(n, 1);
    struct store_txn *t = wbegin(s);
    struct store_retained r = {.topic = B("big"), .payload = {big, n}};
    cr_assert_eq(store_retain_put(t, &r), STORE_EFULL);
    cr_assert_eq(store_write_commit(t, 9), STORE_EFULL);
    cr_assert_eq(store_applied_index(s), 0);
    /* The environment is still usable. */
    t = wbegin(s);
    struct store_retained small = {.topic = B("small"), .payload = B("p")};
    cr_assert_eq(store_retain_put(t, &small), 0);
    commit(t, 10);
    t = rbegin(s);
    struct store_retained got;
    cr_assert_eq(store_retain_get(t, U("big"), &got), STORE_ENOTFOUND);
    cr_assert_eq(store_retain_get(t, U("small"), &got), 0);
    store_txn_end(t);
    store_close(s);
    free(big);
    check_leaks();
}

/* --- read-only access --------------------------------------------------------------- */

Test(store, readonly_missing_environment)
{
    struct store *s;
    cr_assert_eq(store_open_readonly(&s, env_dir), -ENOENT);
    cr_assert_eq(mkdir(env_dir2, 0700), 0);
    cr_assert_eq(store_open_readonly(&s, env_dir2), -ENOENT);
    check_leaks();
}

/* The child's checks; returns a non-zero step number on failure. */
static int readonly_child(int go_fd, int done_fd)
{
    struct store *s;
    if (store_open_readonly(&s, env_dir) != 0)
        return 1;
    if (store_applied_index(s) != 5)
        return 2;
    struct store_txn *t;
    if (store_write_begin(s, &t) != -EACCES)
        return 3;
    if (store_read_begin(s, &t) != 0)
        return 4;
    struct store_session got;
    if (store_session_get(t, U("alice"), &got) != 0 || got.owner != 1)
        return 5;
    if (store_session_get(t, U("late"), &got) != STORE_ENOTFOUND)
        return 6;
    store_txn_end(t);
    struct store_snap *snap;
    const struct iovec *iov;
    size_t n;
    uint64_t idx;
    if (store_snapshot_open(s, &snap, &iov, &n, &idx) != 0 || idx != 5 || n != 1 + 3 * 7)
        return 7;
    store_snapshot_close(snap);

    /* Tell the parent, and wait for its next commit. */
    char c = 1;
    if (write(done_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1)
        return 8;
    if (store_read_begin(s, &t) != 0)
        return 9;
    if (store_session_get(t, U("late"), &got) != 0 || got.owner != 42)
        return 10;
    if (store_applied_index(s) != 6)
        return 11;
    store_txn_end(t);
    store_close(s);
    return 0;
}

Test(store, readonly_open_while_a_writer_has_it_open)
{
    struct store *s = open_at(env_dir);
    populate(s);
    int go[2], done[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(done), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0)
        _exit(readonly_child(go[0], done[1]));
    /* Only the child holds these ends, so its early exit ends our read. */
    close(go[0]);
    close(done[1]);

    char c;
    cr_assert_eq(read(done[0], &c, 1), 1, "child failed before its first report");
    struct store_txn *t = wbegin(s);
    struct store_session late = session_rec(U("late"), 42);
    cr_assert_eq(store_session_put(t, &late), 0);
    commit(t, 6);
    cr_assert_eq(write(go[1], &c, 1), 1);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "child failed at step %d", WEXITSTATUS(status));
    close(go[1]);
    close(done[0]);
    store_close(s);
    check_leaks();
}

Test(store, readonly_in_process_after_close)
{
    struct store *s = open_at(env_dir);
    populate(s);
    store_close(s);
    cr_assert_eq(store_open_readonly(&s, env_dir), 0);
    cr_assert_eq(store_applied_index(s), 5);
    struct store_txn *t;
    cr_assert_eq(store_write_begin(s, &t), -EACCES);
    cr_assert_eq(store_snapshot_restore(s, "", 0), STORE_ECORRUPT);
    size_t len;
    uint64_t idx;
    uint8_t *snap = take_snapshot(s, &len, &idx);
    cr_assert_eq(idx, 5);
    cr_assert_eq(store_snapshot_restore(s, snap, len), -EACCES);
    free(snap);
    store_close(s);
    check_leaks();
}

/* --- on-disk format and corruption -------------------------------------------------- */

/* Writes key -> value into a named database of a closed environment. */
Test(store, format_mismatch_is_refused)
{
    struct store *s = open_at(env_dir);
    store_close(s);
    raw_put(env_dir, "meta", "format", 6, "\x02\x00\x00\x00", 4);
    cr_assert_eq(store_open(&s, env_dir, 0), STORE_EFORMAT);
    cr_assert_eq(store_open_readonly(&s, env_dir), STORE_EFORMAT);
    raw_put(env_dir, "meta", "format", 6, "\x01\x00", 2);
    cr_assert_eq(store_open(&s, env_dir, 0), STORE_ECORRUPT);
    raw_put(env_dir, "meta", "format", 6, "\x01\x00\x00\x00", 4);
    s = open_at(env_dir);
    store_close(s);
    check_leaks();
}

Test(store, foreign_or_garbage_files_are_refused)
{
    /* An LMDB environment without our tables. */
    MDB_env *env;
    cr_assert_eq(mkdir(env_dir2, 0700), 0);
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_open(env, env_dir2, 0, 0600), 0);
    mdb_env_close(env);
    struct store *s;
    cr_assert_eq(store_open_readonly(&s, env_dir2), STORE_EFORMAT);

    /* A data.mdb that is not LMDB at all. */
    char path[160];
    snprintf(path, sizeof(path), "%s/junk", tmp_root);
    cr_assert_eq(mkdir(path, 0700), 0);
    char file[200];
    snprintf(file, sizeof(file), "%s/data.mdb", path);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    uint8_t *junk = pattern(16384, 4);
    cr_assert_eq(fwrite(junk, 1, 16384, f), 16384);
    fclose(f);
    free(junk);
    cr_assert_eq(store_open(&s, path, 0), STORE_ECORRUPT);
    cr_assert_eq(store_open_readonly(&s, path), STORE_ECORRUPT);
    check_leaks();
}

/* Every truncation (and one trailing byte) of a stored value of each table
 * must read as STORE_ECORRUPT from get, foreach and snapshot_open, except a
 * retained payload's end, which is implied by the value length. */
Test(store, strerror_describes_every_error)
{
    const int errs[] = {STORE_ENOTFOUND, STORE_ECORRUPT, STORE_EFULL, STORE_EIO, STORE_EFORMAT};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_not_null(store_strerror(errs[i]));
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(store_strerror(errs[i]), store_strerror(errs[j]));
    }
    cr_assert_str_eq(store_strerror(-ENOENT), strerror(ENOENT));
    cr_assert_str_eq(store_strerror(-ENOMEM), strerror(ENOMEM));
    check_leaks();
}
