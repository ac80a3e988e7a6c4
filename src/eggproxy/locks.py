"""Locks shared by every process and node using one cache directory.

A lock is held on a cache entry (a page, a file): the thread holding it
fetches, writes or removes that entry, and every other thread, process or
node waits or gives up.  Where the platform has them (Linux 3.15 and later),
the locks are open-file-description record locks (``F_OFD_SETLK``): one byte
each, at an offset drawn from the entry's path relative to the cache root,
all in one file, ``<cache>/.locks/eggproxy.lock``.  Such a lock belongs to the
descriptor it was taken on (like ``flock``, unlike the process-wide POSIX
locks), so threads exclude each other (each lock is taken on a descriptor of
its own), and closing the descriptor releases it, also when the process dies.
As with ``flock``, a child forked while a lock is held keeps the descriptor,
and the lock, until it closes it or exits.

Why not one ``flock``-ed file per entry, as before: every first lock of an
entry created a file, and creating a file (an inode) was the largest single
cost of a miss on a slow file system (issue 13: 0.4-0.5 ms of kernel CPU each
on this project's VMs, two or three per miss), and every cached file kept an
empty lock file beside it.  An open of the existing lock file costs a path
lookup.  NFSv4 carries record locks to its lock service like any POSIX lock.

Elsewhere (no ``F_OFD_SETLK``: macOS, the BSDs) each entry keeps its own
``flock``-ed file, ``.<name>.lock`` beside it.

Two entries whose offsets collide (62 bits of a BLAKE2b hash: about one
chance in 10^18 per pair) share a lock: they wait for each other, nothing more.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import struct
from pathlib import Path
from typing import Final

LOCK_FILE: Final = "eggproxy.lock"  # in <cache>/.locks/; no page lock name ends so
# (F_OFD_SETLK, F_OFD_SETLKW): try, wait; None where the platform has no such locks.
_COMMANDS: Final[tuple[int, int] | None] = (
    (fcntl.F_OFD_SETLK, fcntl.F_OFD_SETLKW) if hasattr(fcntl, "F_OFD_SETLKW") else None
)
_BUSY: Final = (errno.EAGAIN, errno.EACCES)  # fcntl(2): a conflicting lock is held
_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


def offset(key: str) -> int:
    """Where the lock of ``key`` lies in the lock file: 62 bits of its hash (< OFF_MAX)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 2


def _flock(kind: int, start: int) -> bytes:
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0, as F_OFD_* requires),
    # padded to the kernel's size; native alignment puts l_start on its 8 bytes.
    return struct.pack("hhqqi", kind, os.SEEK_SET, start, 1, 0).ljust(32, b"\0")


class Locks:
    """The locks of one cache directory."""

    def __init__(self, root: Path, *, record_locks: bool = True) -> None:
        self.root = root
        self.path = root / ".locks" / LOCK_FILE
        self._prefix = str(root)
        # Record locks where the platform has them; ``record_locks=False`` (tests) forces files.
        self._commands = _COMMANDS if record_locks else None

    @property
    def record_locks(self) -> bool:
        return self._commands is not None

    def key(self, target: Path) -> str:
        """``target`` relative to the cache root, so nodes mounting it elsewhere agree."""
        name = str(target)
        return name[len(self._prefix) :] if name.startswith(self._prefix) else name

    def legacy_path(self, target: Path) -> Path:
        """The per-entry lock file (platforms without record locks; older eggproxy)."""
        return target.with_name(f".{target.name}.lock")

    def take(self, target: Path, *, wait: bool) -> int | None:
        """A descriptor holding the lock of ``target`` (close it to release), or ``None``.

        ``None`` only when ``wait`` is false and another holds the lock.
        """
        if self._commands is None:
            return self._take_file(target, wait)
        fd = self._open_shared()
        try:
            fcntl.fcntl(fd, self._commands[wait], _flock(fcntl.F_WRLCK, offset(self.key(target))))
        except BaseException as exc:
            os.close(fd)
            if not wait and isinstance(exc, OSError) and exc.errno in _BUSY:
                return None
            raise
        return fd

    def _take_file(self, target: Path, wait: bool) -> int | None:
        fd = _open(self.legacy_path(target))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def prepare(self) -> None:
        """Create the lock file now (no request pays for it) and take one lock in it.

        Raises ``OSError`` when the file cannot be opened for writing or its file
        system refuses record locks (a kernel before 3.15, some FUSE mounts):
        said at start, not on every miss.
        """
        if not self.record_locks:
            return
        fd = self.take(self.root / ".locks" / "probe", wait=False)
        if fd is not None:
            os.close(fd)

    def _open_shared(self) -> int:
        """Open the lock file (``F_WRLCK`` needs it open for writing), creating it once.

        Mode 0664, whatever the umask: the file holds no data, and a cache
        shared by a group (its folder setgid) is locked by every member.
        Created by root in a cache another user owns (``eggproxy update`` run as
        root), the file and its folder are given to that user: its server must
        open them too.
        """
        try:
            return os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        folder = self.path.parent
        made = not folder.is_dir()
        if made:
            folder.mkdir(parents=True, exist_ok=True)
            # Reachable by the group too, whatever the umask (setgid kept from the cache root).
            with contextlib.suppress(OSError):
                folder.chmod(0o775 | (os.stat(self.root).st_mode & stat.S_ISGID))
        try:
            fd = os.open(self.path, _FLAGS | os.O_EXCL, 0o666)
        except FileExistsError:  # another process created it meanwhile
            return os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):  # some file systems (vfat, CIFS) refuse modes
                os.fchmod(fd, 0o664)
            owner = os.stat(self.root)
            if os.geteuid() == 0 and owner.st_uid != 0:
                os.fchown(fd, owner.st_uid, owner.st_gid)
                if made:
                    os.chown(folder, owner.st_uid, owner.st_gid)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _open(path: Path) -> int:
    """Open (or create) a lock file; its directory is made only when it is missing.

    Not a ``mkdir`` first: it fails on all but the first lock taken in a
    directory (issue 13: one failing system call per lock).
    """
    try:
        return os.open(path, _FLAGS, 0o666)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, _FLAGS, 0o666)
