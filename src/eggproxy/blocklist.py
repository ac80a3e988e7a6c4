"""The malware blocklist: a folder of OSV records, reloaded when it changes.

``blocklist = PATH`` names a folder of OSV JSON files, typically the
``osv/`` tree of a checkout of the OpenSSF malicious-packages repository,
kept current by ``git pull`` from cron.  Telling whether it changed must be
cheap (it is asked every few seconds by every process): the stamp is the
``stat`` of the folder itself and of the ``index`` of the git checkout it
lives in (``git pull`` rewrites it whenever files change); after changing
records by other means, touch the folder.  A change reloads every record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

from eggproxy.names import NormalizedName
from eggproxy.osv import Affected, InvalidRecord, record_from_json

log = logging.getLogger(__name__)

CHECK_INTERVAL: Final = 5.0  # seconds between two looks at the folder's stamp
_GIT_LEVELS: Final = 6  # how far up to look for the git checkout holding the folder

Records = Mapping[NormalizedName, tuple[Affected, ...]]
Stamp = tuple[tuple[int, int], ...]


def load_records(folder: Path) -> tuple[dict[NormalizedName, tuple[Affected, ...]], int]:
    """Every PyPI record under ``folder``: by project, and how many files were unreadable."""
    found: dict[NormalizedName, list[Affected]] = {}
    broken = 0
    for directory, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # not .git
        for name in files:
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(directory, name), "rb") as handle:
                    entries = record_from_json(handle.read())
            except (OSError, InvalidRecord):
                broken += 1
                continue
            for project, affected in entries:
                found.setdefault(project, []).append(affected)
    # Sorted: the same folder gives the same answer (and fingerprint) in every process.
    return {k: tuple(sorted(v, key=lambda a: a.record)) for k, v in found.items()}, broken


def _git_index(folder: Path) -> Path | None:
    for parent in [folder, *folder.parents][:_GIT_LEVELS]:
        if (parent / ".git").is_dir():
            return parent / ".git" / "index"
    return None


class Blocklist:
    """The records of one folder, in memory, and whether the folder changed since."""

    def __init__(self, folder: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.clock = clock
        self.records: Records = {}
        self.fingerprint = ""
        self._git_index = _git_index(folder)
        self._stamp: Stamp | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def stamp(self) -> Stamp:
        """Cheap: two ``stat`` calls."""
        stamp = []
        for path in (self.folder, self._git_index):
            try:
                st = os.stat(path) if path is not None else None
            except OSError:
                st = None
            stamp.append((st.st_mtime_ns, st.st_size) if st is not None else (0, 0))
        return tuple(stamp)

    def load(self) -> set[NormalizedName]:
        """Read every record now; return the projects whose records changed."""
        stamp = self.stamp()
        if not self.folder.is_dir():
            log.warning("blocklist folder %s not found: nothing is blocked", self.folder)
            records: dict[NormalizedName, tuple[Affected, ...]] = {}
            broken = 0
        else:
            records, broken = load_records(self.folder)
        if broken:
            log.warning("blocklist %s: %d unreadable record file(s) skipped", self.folder, broken)
        old = self.records
        changed = {n for n in set(old) | set(records) if old.get(n) != records.get(n)}
        self.records, self._stamp, self._checked = records, stamp, self.clock()
        self.fingerprint = _fingerprint(records)
        log.info(
            "blocklist %s: %d record(s) on %d project(s)",
            self.folder,
            sum(len(v) for v in records.values()),
            len(records),
        )
        return changed

    def due(self) -> bool:
        """Whether the folder should be looked at again (a clock read, no I/O)."""
        return self.clock() - self._checked >= CHECK_INTERVAL

    def reload_if_changed(self) -> set[NormalizedName] | None:
        """Reload if the folder changed (looked at every ``CHECK_INTERVAL`` at most).

        Returns the projects whose records changed, or ``None`` if nothing was
        reloaded.  Another thread already reloading: ``None`` too.
        """
        now = self.clock()
        if now - self._checked < CHECK_INTERVAL and self._stamp is not None:
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self._checked = now
            if self._stamp is not None and self.stamp() == self._stamp:
                return None
            return self.load()
        finally:
            self._lock.release()

    def affecting(self, project: NormalizedName, version: str | None) -> Affected | None:
        """The first record that affects ``version`` of ``project``."""
        for affected in self.records.get(project, ()):
            if affected.affects(version):
                return affected
        return None


def _fingerprint(records: Records) -> str:
    digest = hashlib.sha256()
    for name in sorted(records):
        for affected in records[name]:
            versions = ",".join(sorted(affected.versions))
            ranges = "|".join(str(r) for r in affected.ranges)
            line = f"{name} {affected.record} {affected.every_version} {versions} {ranges}\n"
            digest.update(line.encode())
    return digest.hexdigest()[:16]


def deny_names(deny: Iterable[tuple[str, str | None]]) -> dict[str, frozenset[str | None]]:
    """``deny`` entries by project: the denied versions (``None``: every version)."""
    found: dict[str, set[str | None]] = {}
    for name, version in deny:
        found.setdefault(name, set()).add(version)
    return {k: frozenset(v) for k, v in found.items()}
