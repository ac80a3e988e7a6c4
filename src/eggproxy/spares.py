"""Empty files and folders made ahead of need, so that a miss does not wait for an inode.

Every file a miss publishes is a new inode: an atomic replacement needs one
(a rename of a complete file over the old name), and so does a partial
download.  On some file systems creating an inode costs far more than
renaming one: on this project's VMs (ext4 on a virtual disk) a create takes
190-420 µs of kernel CPU and a ``mkdir`` 240-415 µs, where opening an
existing empty file and renaming it takes about 30 µs (issue 13, decision
0014 round 7).  A page miss of a new project made a folder and four files,
a file miss one: 1-2 ms of a miss that goes direct in about 1 ms.

So a long-running front end (``eggproxy serve``'s workers, Apache's
children) keeps a few empty files and folders made in a thread of its own,
in ``<cache>/.spare/<host>-<pid>-<token>/``, and a write takes one of them
instead of creating: it opens the spare, writes it and renames it into place
(a rename within one file system, across folders).  Nothing about what is
visible changes: a spare is outside the URL space (a dot folder, refused by
every front end), it is complete before its rename as a temporary file was,
and a spare that is missing or cannot be opened is replaced by a create, as
before.  Each pool is held by its process with a record lock
(:mod:`eggproxy.locks`); a pool whose lock is free belongs to a process that
ended, and is removed by the next pool to start and at ``eggproxy serve``'s
start (:func:`sweep`).  Short commands (update,
prune, export) make no pool: their writes create as before.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Final

from eggproxy.locks import Locks

log = logging.getLogger(__name__)

SPARE_DIR: Final = ".spare"  # in the cache root: a dot name, never a project
FILES: Final = 32  # spare files kept per process (a page miss takes four, a file miss one)
FOLDERS: Final = 8  # spare folders (a page miss of a new project takes one)
REFILL_WAIT: Final = 1.0  # seconds the refill thread sleeps when nobody wakes it
BACK_OFF: Final = 60.0  # seconds without refilling after the file system refused a create
_OPEN_FLAGS: Final = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS: Final = _OPEN_FLAGS | os.O_CREAT | os.O_EXCL
_TAKEN: Final = frozenset({errno.EEXIST, errno.ENOTEMPTY})  # rename(2): a folder is there
_GONE: Final = frozenset({errno.ENOENT, errno.ELOOP})


class Spares:
    """One process's pool of empty files and folders in a cache (made on first use)."""

    def __init__(
        self, root: Path, locks: Locks, *, files: int = FILES, folders: int = FOLDERS
    ) -> None:
        self.base = root / SPARE_DIR
        self._locks = locks
        self._want = (files, folders)
        self._start_lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        # Also in a forked child: the parent's spares, thread and lock are not its own.
        self._pid: int | None = None  # the process this pool was started in
        self._on = False
        self._retry_at = 0.0  # a start that failed is tried again from then (monotonic)
        self._folder = ""  # this process's pool
        self._hold: int | None = None  # the descriptor holding its lock
        self._files: collections.deque[str] = collections.deque()
        self._folders: collections.deque[str] = collections.deque()
        self._count = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- taking --------------------------------------------------------------

    def file(self) -> tuple[int, str] | None:
        """An empty spare file opened for writing (mode 0644) and its path; ``None``: create one."""
        if not self._started():
            return None
        while True:
            try:
                path = self._files.popleft()  # a deque: safe across threads without a lock
            except IndexError:
                self._wake.set()
                return None
            try:
                fd = os.open(path, _OPEN_FLAGS)
            except OSError as exc:
                if exc.errno in _GONE:  # removed under us (a sweep that misjudged): the next one
                    continue
                self._files.appendleft(path)  # out of descriptors, ...: kept for later
                return None
            if len(self._files) < self._want[0] // 2:
                self._wake.set()
            return fd, path

    def folder(self, target: Path) -> bool:
        """Put an empty folder at ``target`` if none is there; whether one is there now.

        ``False``: no spare could be used, the caller makes the folder itself.
        """
        if not self._started():
            return False
        try:
            spare = self._folders.popleft()
        except IndexError:
            self._wake.set()
            return False
        try:
            # rename(2) replaces an empty folder and refuses a full one: either way
            # an empty or a used folder is at ``target`` afterwards.
            os.rename(spare, target)
        except OSError as exc:
            if exc.errno in _TAKEN:  # made by another thread, process or node
                self._folders.appendleft(spare)
                return True
            if os.path.isdir(spare):  # its target's parent is missing, ...: kept for later
                self._folders.appendleft(spare)
            return False  # the caller makes the folder
        if len(self._folders) < self._want[1] // 2:
            self._wake.set()
        return True

    # --- the pool ------------------------------------------------------------

    def _started(self) -> bool:
        pid = os.getpid()
        if self._pid == pid and (self._on or time.monotonic() < self._retry_at):
            return self._on
        with self._start_lock:
            if self._pid != pid:
                if self._pid is not None:  # a forked copy of a started pool
                    if self._hold is not None:
                        # The child's copy of the parent's descriptor: closing it leaves
                        # the parent's lock held (an OFD lock lives while one copy does).
                        os.close(self._hold)
                    self._reset()
                self._pid = pid
            if not self._on and time.monotonic() >= self._retry_at:
                self._on = self._start(pid)
                if not self._on:
                    self._retry_at = time.monotonic() + BACK_OFF
        return self._on

    def _start(self, pid: int) -> bool:
        if not self._locks.record_locks:
            return False  # no way to tell a live pool from a dead one: create as before
        folder = self.base / f"{socket.gethostname()}-{pid}-{os.urandom(4).hex()}"
        # The lock first (a byte range, no file of its own): a sweep never sees this
        # pool's folder without its lock held.
        try:
            hold = self._locks.take(folder, wait=False)
        except OSError as exc:
            log.info("no spare files in %s: %s", self.base, exc.strerror or exc)
            return False
        if hold is None:  # a new random name: only a 62-bit hash collision can do this
            return False
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            os.close(hold)
            log.info("no spare files in %s: %s", self.base, exc.strerror or exc)
            return False
        self._folder, self._hold = str(folder), hold
        self._thread = threading.Thread(target=self._refill, name="eggproxy-spares", daemon=True)
        self._thread.start()
        return True

    def _refill(self) -> None:
        # Pools of processes that ended since the last start (Apache replaces its
        # children at each graceful restart): removed here, off the request path.
        try:
            sweep(self.base.parent, self._locks)
        except OSError as exc:
            log.warning("spare files of ended processes left: %s", exc.strerror or exc)
        while not self._stop.is_set():
            try:
                self._fill()
            except OSError as exc:  # disk full of inodes, folder removed, ...: try later
                log.warning("spare files: %s; creating on each write", exc.strerror or exc)
                if self._stop.wait(BACK_OFF):
                    return
                with contextlib.suppress(OSError):
                    os.makedirs(self._folder, exist_ok=True)
                continue
            self._wake.wait(REFILL_WAIT)
            self._wake.clear()

    def _fill(self) -> None:
        files, folders = self._want
        while len(self._folders) < folders and not self._stop.is_set():
            path = self._next_name()
            os.mkdir(path)
            self._folders.append(path)
        while len(self._files) < files and not self._stop.is_set():
            path = self._next_name()
            fd = os.open(path, _CREATE_FLAGS, 0o644)
            try:
                # The mode every cache file ends with, whatever the umask: made here, a
                # write into the spare needs no chmod (one system call fewer a write).
                os.fchmod(fd, 0o644)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(path)  # not left in the pool's folder, unlisted
                raise
            finally:
                os.close(fd)
            self._files.append(path)

    def _next_name(self) -> str:
        self._count += 1  # the refill thread alone names spares
        return f"{self._folder}/{self._count}"

    def close(self) -> None:
        """Stop refilling and remove this process's pool (nothing of it is in use after)."""
        if self._pid != os.getpid() or not self._on:
            return
        self._on = False  # no spare handed out from now on (a write under way falls back)
        self._retry_at = math.inf  # nor a new pool started
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        _remove_pool(Path(self._folder))
        if self._hold is not None:
            os.close(self._hold)
            self._hold = None


def sweep(root: Path, locks: Locks) -> int:
    """Remove the pools of processes that ended (their locks are free); how many."""
    if not locks.record_locks:
        return 0
    base = root / SPARE_DIR
    try:
        pools = [Path(e.path) for e in os.scandir(base) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return 0
    removed = 0
    for pool in pools:
        fd = locks.take(pool, wait=False)
        if fd is None:  # its process is alive
            continue
        try:
            _remove_pool(pool)
            removed += 1
        finally:
            os.close(fd)
    return removed


def _remove_pool(pool: Path) -> None:
    try:
        entries = list(os.scandir(pool))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                os.rmdir(entry.path)  # an empty spare folder
            else:
                os.unlink(entry.path)
        except OSError as exc:  # not ours to remove (a folder someone filled): left
            log.warning("left %s: %s", entry.path, exc.strerror or exc)
    with contextlib.suppress(OSError):
        os.rmdir(pool)
