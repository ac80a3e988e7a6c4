"""Unknown project names, remembered for ``negative_ttl`` seconds.

pip and uv probe names (every spelling of a requirement, every extra
index), and each probe of a name no source knows would cost an upstream
round trip.  A name every source answered 404 for is remembered as an
empty file ``<cache>/.negative/<name>`` (its mtime is when we asked), so
every process sharing the cache directory answers 404 at once, and no
project directory is created for a name that does not exist.  The
directory starts with a dot, so no request can reach it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from eggproxy.names import NormalizedName


class NegativeCache:
    """Names no source knows, each for ``ttl`` seconds (``ttl`` 0: off)."""

    def __init__(self, root: Path, ttl: float) -> None:
        self.directory = root / ".negative"
        self.ttl = ttl

    def known_missing(self, project: NormalizedName, now: float) -> bool:
        """Whether every source answered 404 for ``project`` less than ``ttl`` ago."""
        if self.ttl <= 0:
            return False
        try:
            asked = (self.directory / project).stat().st_mtime
        except FileNotFoundError:
            return False
        return 0 <= now - asked < self.ttl

    def remember(self, project: NormalizedName, now: float) -> None:
        if self.ttl <= 0:
            return
        path = self.directory / project
        # Best effort: on a full disk the next probe simply asks again.
        with contextlib.suppress(OSError):
            self.directory.mkdir(exist_ok=True)
            path.touch()
            os.utime(path, (now, now))

    def forget(self, project: NormalizedName) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / project).unlink()
