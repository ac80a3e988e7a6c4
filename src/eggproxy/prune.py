"""The cache size limit: evict the least recently served files.

When the cache holds more than ``max_cache_size`` bytes, files are removed,
least recently served first (:mod:`eggproxy.usage`), until it holds at most
:data:`LOW_WATER` of the limit, so that a pass is not needed again after the
next download.  Pages stay: an evicted file is still listed, and asking for
it again is a normal miss (downloaded and verified again).  A file whose lock
is held (a download or a verification running) is skipped.  A file being
sent stays readable to its reader after the unlink (POSIX), and a front end
that finds its file gone between ``stat`` and ``open`` answers with a miss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from eggproxy.cache import Cache
from eggproxy.inventory import cached_files, scan
from eggproxy.usage import ServedLog

log = logging.getLogger(__name__)

LOW_WATER: Final = 0.9  # fraction of the limit a pass evicts down to


@dataclass(frozen=True)
class PruneReport:
    """What one pass did."""

    limit: int
    before: int  # bytes in the cache before the pass
    after: int
    evicted: int  # files removed
    evicted_bytes: int
    skipped: int  # files in use, left alone

    def line(self) -> str:
        return (
            f"cache {self.before} -> {self.after} bytes (limit {self.limit}); "
            f"evicted {self.evicted} files, {self.evicted_bytes} bytes; skipped {self.skipped}"
        )


def prune(cache: Cache, served: ServedLog, limit: int, low_water: float = LOW_WATER) -> PruneReport:
    """Evict least recently served files until the cache is under ``low_water * limit``."""
    before = total = scan(cache.root).usage.bytes
    if total <= limit:
        return PruneReport(limit, before, total, 0, 0, 0)
    target = int(limit * low_water)
    last = served.last_served()
    candidates = sorted(
        cached_files(cache.root), key=lambda f: last.get(f"{f.project}/{f.name}", f.mtime)
    )
    evicted: list[str] = []
    evicted_bytes = skipped = 0
    for found in candidates:
        if total <= target:
            break
        with cache.try_lock(found.path) as held:
            if not held:
                skipped += 1
                continue
            try:
                found.path.unlink()
            except FileNotFoundError:
                continue
        total -= found.size
        evicted_bytes += found.size
        evicted.append(f"{found.project}/{found.name}")
    served.forget(evicted)
    report = PruneReport(limit, before, total, len(evicted), evicted_bytes, skipped)
    log.info("%s", report.line())
    return report
