"""How full the cache's file system is, and when to warn about it.

A full disk turns every miss into a 507 (issue 16): the admin should hear
of it before, from ``eggproxy serve``'s log (at start and every
:data:`CHECK_INTERVAL` while it stays low) and later from a status page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

LOW_FRACTION: Final = 0.05  # warn below 5 % free ...
LOW_BYTES: Final = 1 << 30  # ... or below 1 GiB free
CHECK_INTERVAL: Final = 300.0  # seconds between checks of ``eggproxy serve``


@dataclass(frozen=True)
class DiskSpace:
    """Free and total bytes of the file system holding the cache."""

    free: int
    total: int

    @property
    def low(self) -> bool:
        return self.free < LOW_BYTES or self.free < self.total * LOW_FRACTION

    def line(self) -> str:
        percent = 100 * self.free / self.total if self.total else 0.0
        return f"{_size(self.free)} free of {_size(self.total)} ({percent:.1f}%)"


def disk_space(path: Path) -> DiskSpace:
    st = os.statvfs(path)
    # f_bavail: what an unprivileged writer (Apache's user) may still use.
    return DiskSpace(free=st.f_bavail * st.f_frsize, total=st.f_blocks * st.f_frsize)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
