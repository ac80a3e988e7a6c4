"""Large files held open for granian, so a send never names a file that was removed.

granian's ``http.response.pathsend`` opens its path later, in a task of its
own, after our ``stat``: a file evicted meanwhile (``eggproxy cache prune``
or the size limit, on any node) or a large page replaced by a rename would
be answered with granian's bare ``404 Not found`` (no Cache-Control, so a
tier in front could keep it).  Found by tests/integration/test_nodes.py.

So the front end opens the file itself and hands granian
``/proc/self/fd/N``, which names the open file: it stays readable after an
unlink or a rename (POSIX), and granian's worker is this process.  One
descriptor per file (device, inode), shared by every send of it, closed
:data:`HOLD` seconds after it was last handed out, by which time granian has
long opened it (a descriptor number must not be reused under a pending
send).  A removed file's space is thus freed at most :data:`HOLD` seconds
after its last send, as with nginx's ``open_file_cache``.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

HOLD: Final = 10.0  # seconds a descriptor outlives its last send
LIMIT: Final = 256  # descriptors held per worker; past it, files are sent by name
_PROC_FD: Final = "/proc/self/fd"


class OpenFiles:
    """Descriptors of the large files sent lately, by (device, inode), oldest first."""

    def __init__(
        self,
        *,
        hold: float = HOLD,
        limit: int = LIMIT,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool | None = None,
    ) -> None:
        self.hold = hold
        self.limit = limit
        self.clock = clock
        self.enabled = os.path.isdir(_PROC_FD) if enabled is None else enabled
        self._fds: OrderedDict[tuple[int, int], tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._fds)

    def path(self, name: str, st: os.stat_result) -> tuple[str, os.stat_result]:
        """A path naming the file open at ``name`` until it is sent, and its ``stat``.

        ``st`` is the caller's ``stat`` of ``name``; a file replaced since then
        (a page rewritten) is the new one, described by its own ``stat``.
        Raises ``FileNotFoundError`` if ``name`` is gone: the caller's miss.
        """
        if not self.enabled:
            return name, st
        now = self.clock()
        self._expire(now)
        key = (st.st_dev, st.st_ino)
        held = self._fds.get(key)
        if held is None:
            if len(self._fds) >= self.limit:
                return name, st  # every descriptor is in use: as before, by name
            try:
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise
            except OSError:  # out of descriptors: granian opens it by name, as before
                return name, st
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if key in self._fds:  # replaced since the stat, by one held already
                os.close(fd)
                fd = self._fds[key][0]
        else:
            fd = held[0]
        self._fds[key] = (fd, now)
        self._fds.move_to_end(key)
        return f"{_PROC_FD}/{fd}", st

    def expire(self) -> None:
        """Close the descriptors past their hold (the server calls it while idle too)."""
        self._expire(self.clock())

    def _expire(self, now: float) -> None:
        while self._fds:
            key, (fd, last) = next(iter(self._fds.items()))
            if now - last < self.hold:
                return
            del self._fds[key]
            os.close(fd)

    def close(self) -> None:
        for fd, _last in self._fds.values():
            os.close(fd)
        self._fds.clear()
