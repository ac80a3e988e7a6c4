"""When each cached file was last served, for evicting the least recently served.

``atime`` cannot tell (``relatime`` and ``noatime`` mounts), so we keep it
ourselves, cheaply: a hit only looks its file up in an in-memory dict and
queues the time if this process has not recorded it for
:data:`TOUCH_INTERVAL` seconds; a background thread writes the queue to a
small SQLite database at the cache root (``.usage.sqlite``, WAL mode, safe
for many processes).  An hour's precision is plenty to choose what to evict
from a cache that holds months of downloads.  A file never recorded counts
as served when it was downloaded (its mtime).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

DATABASE: Final = ".usage.sqlite"
TOUCH_INTERVAL: Final = 3600.0  # seconds between two records of one file by one process
FLUSH_INTERVAL: Final = 2.0  # seconds a record waits before it is written
_REMEMBERED: Final = 200_000  # files whose last record this process keeps in memory


class ServedLog:
    """Last-served times of the files in one cache directory."""

    def __init__(
        self,
        root: Path,
        *,
        interval: float = TOUCH_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = root / DATABASE
        self.interval = interval
        self.clock = clock
        self._seen: dict[tuple[str, str], float] = {}
        self._pending: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def touch(self, project: str, filename: str) -> None:
        """``filename`` of ``project`` was served now.  The hit path: a dict lookup."""
        now = self.clock()
        key = (project, filename)
        last = self._seen.get(key)
        if last is not None and now - last < self.interval:
            return
        with self._lock:
            if len(self._seen) > _REMEMBERED:
                self._seen.clear()
            self._seen[key] = now
            self._pending[key] = now
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="eggproxy-usage", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(FLUSH_INTERVAL)
            self.flush()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self.flush()

    def flush(self) -> None:
        """Write the queued records (the largest time wins, whoever wrote it)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with contextlib.closing(self._connect()) as db, db:
                db.executemany(
                    "INSERT INTO served(path, at) VALUES (?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET at = max(at, excluded.at)",
                    ((f"{project}/{name}", at) for (project, name), at in pending.items()),
                )
        except sqlite3.Error as exc:
            log.warning("cannot record served files in %s: %s", self.path, exc)

    def last_served(self) -> dict[str, float]:
        """Every recorded ``project/filename`` and when it was last served."""
        self.flush()
        if not self.path.exists():
            return {}
        try:
            with contextlib.closing(self._connect()) as db:
                return dict(db.execute("SELECT path, at FROM served"))
        except sqlite3.Error as exc:
            log.warning("cannot read %s: %s", self.path, exc)
            return {}

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the records of evicted files (a new download starts a new record)."""
        keys = list(keys)
        with self._lock:
            for key in keys:
                project, _, name = key.partition("/")
                self._seen.pop((project, name), None)
        if not keys or not self.path.exists():
            return
        with contextlib.suppress(sqlite3.Error), contextlib.closing(self._connect()) as db, db:
            db.executemany("DELETE FROM served WHERE path = ?", ((k,) for k in keys))

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS served (path TEXT PRIMARY KEY, at REAL NOT NULL)")
        return db
