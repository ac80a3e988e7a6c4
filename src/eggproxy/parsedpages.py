"""Parsed upstream copies kept in memory, so a miss does not parse what it just wrote.

Every file miss needs the project's stored upstream copy (``.upstream.json``) to
find the file's URL and hashes; parsing it costs about as much as the upstream
round trip on a fast link (docs/decisions/0014).  A parsed copy is reused while
the file on disk is the one it came from: same inode, size and mtime.  Every
write replaces the file by rename (a new inode), in this process or another,
so a stale entry is never used.  Bounded: the least recently used go first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final

from eggproxy.model import ProjectPage
from eggproxy.names import NormalizedName

MAX_PAGES: Final = 256

_Key = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


def identity(path: Path) -> _Key | None:
    """What tells one version of ``path`` from another (``None``: no such file)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ParsedPages:
    """A bounded map of project -> (identity of its upstream copy, parsed page)."""

    def __init__(self, limit: int = MAX_PAGES) -> None:
        self._limit = limit
        self._pages: OrderedDict[NormalizedName, tuple[_Key, ProjectPage]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, project: NormalizedName, path: Path) -> ProjectPage | None:
        """The parsed page if ``path`` is still the file it was parsed from (one ``stat``)."""
        with self._lock:
            entry = self._pages.get(project)
        if entry is None:
            return None
        if identity(path) != entry[0]:
            return None
        with self._lock:
            if project in self._pages:
                self._pages.move_to_end(project)
        return entry[1]

    def put(self, project: NormalizedName, key: _Key | None, page: ProjectPage) -> None:
        """Remember ``page`` as the parse of the file version ``key`` (from :func:`identity`)."""
        with self._lock:
            if key is None:
                self._pages.pop(project, None)
                return
            self._pages[project] = (key, page)
            self._pages.move_to_end(project)
            while len(self._pages) > self._limit:
                self._pages.popitem(last=False)
