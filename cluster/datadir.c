/* datadir: the data directory of a node, its layout and its identity.
 *
 *   DIR/lock      flock'd while the node runs, holds its pid (one process per directory)
 *   DIR/node.id   the cluster and node the directory belongs to, and the node's epoch
 *   DIR/removed   written when the node was removed: it does not start again (member.c)
 *   DIR/join      written to join a cluster: its own state is discarded once (member.c)
 *   DIR/state/    the replicated state (LMDB, store/), the Raft log's applied image
 *   DIR/raft/     the Raft log and snapshots (libraft's uv backend)
 *
 * cluster__datadir_open takes them in that order at start; cluster_dump reads
 * DIR/state without the lock. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "internal.h"

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -errno;
}

/* Removes path and everything under it (a missing path is fine). */
int cluster__remove_tree(const char *path)
{
    int rc = nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    if (rc == -1)
        return errno == ENOENT ? 0 : -errno;
    return rc;
}

/* DIR/node.id names the cluster and node the directory belongs to, and the
 * node's epoch: a number raised at every start (and whenever the 24-bit
 * sequence of generations wraps) that keeps generations and batch sequences
 * unique across restarts. Written to a temporary file, synced, renamed. */
static int identity_write(struct cluster *c)
{
    char path[1100], tmp[1100];
    snprintf(path, sizeof(path), "%s/node.id", c->cfg.data_dir);
    snprintf(tmp, sizeof(tmp), "%s/node.id.tmp", c->cfg.data_dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (fd < 0)
        return -errno;
    char text[512];
    int n = snprintf(text, sizeof(text),
                     "# Starling node identity: do not edit\ncluster_name %s\nnode_id %u\nepoch %" PRIu32 "\n",
                     c->cfg.cluster_name, c->cfg.node_id, c->epoch);
    int rc = 0;
    if (write(fd, text, (size_t)n) != n || fsync(fd) != 0)
        rc = errno ? -errno : -EIO;
    close(fd);
    if (!rc && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        return rc;
    int dfd = open(c->cfg.data_dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* One process per data directory: two nodes appending to the same Raft log
 * would corrupt it. The lock (flock on DIR/lock) goes with the process, also
 * when it is killed; --dump reads without it. */
static int lock_data_dir(struct cluster *c, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/lock", c->cfg.data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK) {
            snprintf(err, errlen, "data dir %s is in use by another starlingd%s%s", c->cfg.data_dir,
                     pid[0] ? " (pid " : "", pid[0] ? pid : "");
            if (pid[0])
                strncat(err, ")", errlen - strlen(err) - 1);
            return -EBUSY;
        }
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        /* the lock holds without the pid in it */
    }
    c->lock_fd = fd;
    return 0;
}

static int identity_check(struct cluster *c, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/node.id", c->cfg.data_dir);
    FILE *f = fopen(path, "r");
    uint32_t epoch = 0;
    if (f) {
        char line[512], name[256] = "";
        unsigned long id = 0, e = 0;
        int fields = 0;
        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "cluster_name %255s", name) == 1)
                fields |= 1;
            else if (sscanf(line, "node_id %lu", &id) == 1)
                fields |= 2;
            else if (sscanf(line, "epoch %lu", &e) == 1)
                fields |= 4;
        }
        fclose(f);
        if (fields != 7 || e >= UINT32_MAX) {
            snprintf(err, errlen, "%s is corrupt (expected cluster_name, node_id and epoch lines)", path);
            return -EINVAL;
        }
        if (strcmp(name, c->cfg.cluster_name) != 0 || id != c->cfg.node_id) {
            snprintf(err, errlen,
                     "data dir %s belongs to cluster \"%s\" node %lu, not to cluster \"%s\" node %u "
                     "(use another data_dir, or check node_id and cluster_name)",
                     c->cfg.data_dir, name, id, c->cfg.cluster_name, c->cfg.node_id);
            return -EEXIST;
        }
        epoch = (uint32_t)e;
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    } else {
        /* a fresh directory must not hold a foreign raft log or store */
        char raftdir[1100];
        snprintf(raftdir, sizeof(raftdir), "%s/raft/metadata1", c->cfg.data_dir);
        if (access(raftdir, F_OK) == 0) {
            snprintf(err, errlen, "data dir %s holds a raft log but no node.id: it belongs to another setup",
                     c->cfg.data_dir);
            return -EEXIST;
        }
    }
    c->epoch = epoch + 1;
    int rc = identity_write(c);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

uint64_t cluster_generation_next(struct cluster *c)
{
    /* node id (16 bits), epoch (24 bits), sequence (24 bits): unique across
     * the cluster (node ids are at most 65535) and across restarts; when the
     * sequence wraps the epoch moves on, durably, before it is used */
    if (++c->gen_seq > 0xFFFFFF) {
        c->epoch++;
        if (identity_write(c) != 0)
            CLOG(c, CLUSTER_LOG_ERROR, "cluster: cannot record the new epoch in node.id: %s", strerror(errno));
        c->gen_seq = 1;
    }
    return ((uint64_t)(c->cfg.node_id & 0xFFFF) << 48) | ((uint64_t)(c->epoch & 0xFFFFFF) << 24) | c->gen_seq;
}

/* The replicated state, DIR/state. */
static int store_open_at(struct cluster *c, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/state", c->cfg.data_dir);
    int rc = store_open(&c->store, path, c->cfg.store_map_size);
    if (rc) {
        snprintf(err, errlen, "store %s: %s%s", path, store_strerror(rc),
                 rc == STORE_ECORRUPT || rc == STORE_EFORMAT
                     ? " (the Raft log is the durable record: move this directory away and the node rebuilds "
                       "it from the latest snapshot and the log)"
                     : "");
        return rc;
    }
    return 0;
}

int cluster__datadir_open(struct cluster *c, char *raft_dir, size_t raft_dir_len, char *err, size_t errlen)
{
    const char *dir = c->cfg.data_dir;
    int rc = fs_mkdir_p(dir, 0750);
    if (rc) {
        snprintf(err, errlen, "data dir %s: %s", dir, strerror(-rc));
        return rc;
    }
    if ((rc = lock_data_dir(c, err, errlen)) != 0 || (rc = identity_check(c, err, errlen)) != 0 ||
        (rc = cluster__member_prepare(c, err, errlen)) != 0 || (rc = store_open_at(c, err, errlen)) != 0)
        return rc;
    snprintf(raft_dir, raft_dir_len, "%s/raft", dir);
    rc = fs_mkdir_p(raft_dir, 0750);
    if (rc) {
        snprintf(err, errlen, "%s: %s", raft_dir, strerror(-rc));
        return rc;
    }
    return 0;
}

int cluster_dump(const char *data_dir, void *file, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/state", data_dir);
    struct store *s;
    int rc = store_open_readonly(&s, path);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, rc == -ENOENT ? "no replicated state here" : store_strerror(rc));
        return rc;
    }
    rc = cluster__state_dump(s, file);
    store_close(s);
    if (rc)
        snprintf(err, errlen, "%s: %s", path, store_strerror(rc));
    return rc;
}
