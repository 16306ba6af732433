"""A Raft log whose writes never complete, for the integration and cluster
tests: the data dir on a tmpfs (no O_DIRECT there, so libraft writes its log
from libuv's thread pool) and those worker threads stopped under ptrace while
the event loop runs on, as on a disk that hangs. Root only (mount, ptrace of
another process's threads); the tests skip with the reason otherwise."""

import ctypes
import os
import signal
import subprocess

import pytest

PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000  # waitpid's __WALL: the tracee is a thread


def tmpfs_mount(path, size="64m"):
    """Mounts a tmpfs of size at path (created); skips the test when that is
    not possible. Undo with tmpfs_unmount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % res.stderr.decode(errors="replace").strip())


def tmpfs_unmount(path):
    # lazy: a node that outlived its test must not keep the mount busy
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


class ThreadsStopped:
    """Stops every thread of pid but its main one (ptrace seize + interrupt:
    SIGSTOP would stop the whole process), until release() or kill(). On a
    tmpfs libraft writes its log from libuv's thread pool: with those threads
    stopped a write never completes while the event loop runs on."""

    def __init__(self, pid):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.pid = pid
        self.tids = []
        for t in sorted(int(t) for t in os.listdir("/proc/%d/task" % pid)):
            if t == pid:
                continue
            if self.libc.ptrace(PTRACE_SEIZE, t, None, None) != 0:
                err = ctypes.get_errno()
                self.release()
                pytest.skip("cannot ptrace the broker's threads: %s" % os.strerror(err))
            self.tids.append(t)
            self.libc.ptrace(PTRACE_INTERRUPT, t, None, None)
            os.waitpid(t, WALL)

    def states(self):
        """The scheduler state letter of each stopped thread ('t': traced)."""
        return [open("/proc/%d/task/%d/stat" % (self.pid, t)).read().rsplit(")", 1)[1].split()[0]
                for t in self.tids]

    def release(self):
        """Lets the threads run on; a thread that cannot be detached is
        exiting (the process ended meanwhile, e.g. a node that stopped itself
        with _exit) and is reaped here: a traced thread's exit waits for its
        tracer, and the process's parent would never hear of the exit."""
        for t in self.tids:
            if self.libc.ptrace(PTRACE_DETACH, t, None, None) != 0:
                self._reap(t)
        self.tids = []

    @staticmethod
    def _reap(t):
        while True:
            try:
                _, status = os.waitpid(t, WALL)
            except ChildProcessError:
                return
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                return

    def kill(self):
        """SIGKILL to the process with its threads still stopped (what they
        were to write never runs: a fatal signal is handled before a tracee
        returns to user space), then reaps them: a traced thread that exits
        waits for its tracer, and the process's parent hears of its exit
        only once every thread is gone."""
        os.kill(self.pid, signal.SIGKILL)
        for t in self.tids:
            self._reap(t)
        self.tids = []
