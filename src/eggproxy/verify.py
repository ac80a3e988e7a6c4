"""``eggproxy cache verify``: is what is on disk still what was verified?

Every cached file is hashed again and compared with the hash its project's
page declared (the stored upstream copy, ``.upstream.json``, keeps it; PEP
658 metadata files against the page's metadata hash).  A file that does not
match is moved aside into ``<cache>/.quarantine/<project>/`` (never served,
kept for a look), so the next request for it is a normal miss and fetches it
again.  Hashing runs in threads: ``hashlib`` releases the GIL on large
buffers, so ``--jobs N`` uses N cores.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from eggproxy.cache import Cache
from eggproxy.download import choose_hash
from eggproxy.errors import MalformedPage
from eggproxy.inventory import CachedFile, cached_files
from eggproxy.model import ProjectPage
from eggproxy.names import METADATA_SUFFIX, NormalizedName
from eggproxy.parse import project_from_json

log = logging.getLogger(__name__)

QUARANTINE: Final = ".quarantine"


@dataclass(frozen=True)
class Mismatch:
    """A cached file whose bytes no longer hash to what its page declared."""

    project: NormalizedName
    filename: str
    expected: str  # algo=hex
    actual: str
    moved_to: Path

    def line(self) -> str:
        return (
            f"MISMATCH {self.project}/{self.filename}: expected {self.expected}, "
            f"got {self.actual}; moved to {self.moved_to}"
        )


@dataclass
class VerifyReport:
    """What a verification found."""

    checked: int = 0
    checked_bytes: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)  # no hash recorded for them

    def line(self) -> str:
        return (
            f"verified {self.checked} files ({self.checked_bytes} bytes): "
            f"{len(self.mismatches)} mismatched, {len(self.unverifiable)} without a hash"
        )


def _expected(page: ProjectPage | None, filename: str) -> Mapping[str, str]:
    if page is None:
        return {}
    base = filename.removesuffix(METADATA_SUFFIX)
    dist = page.file(base)
    if dist is None:
        return {}
    if filename == base:
        return dist.hashes
    return dist.core_metadata if isinstance(dist.core_metadata, Mapping) else {}


def _pages(cache: Cache, projects: Iterable[NormalizedName]) -> dict[str, ProjectPage | None]:
    pages: dict[str, ProjectPage | None] = {}
    for project in projects:
        data = cache.read_upstream(project)
        try:
            pages[project] = project_from_json(data.decode(), "file:///", project) if data else None
        except (MalformedPage, UnicodeDecodeError):
            log.warning("broken upstream copy of %s: its files cannot be verified", project)
            pages[project] = None
    return pages


def _hash(path: Path, algorithm: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def quarantine(cache: Cache, found: CachedFile) -> Path:
    """Move ``found`` aside so it is never served again; return where it went."""
    folder = cache.root / QUARANTINE / found.project
    folder.mkdir(parents=True, exist_ok=True)
    destination = folder / found.name
    if destination.exists():
        destination = folder / f"{found.name}.{int(time.time())}"
    os.replace(found.path, destination)
    return destination


def verify(
    cache: Cache,
    projects: Iterable[NormalizedName] | None = None,
    *,
    jobs: int = 1,
    progress: Callable[[int], object] | None = None,
    files: list[CachedFile] | None = None,
) -> VerifyReport:
    """Hash every cached file (of ``projects``) against its page; quarantine mismatches.

    ``progress`` is called with the bytes of each file hashed.
    """
    found = files if files is not None else list(cached_files(cache.root, projects))
    pages = _pages(cache, sorted({f.project for f in found}))
    report = VerifyReport()

    def check(item: CachedFile) -> tuple[CachedFile, str | None, str | None]:
        """``(item, expected, actual)``; ``expected`` is None without a hash, ``actual`` if gone."""
        try:
            chosen = choose_hash(_expected(pages[item.project], item.name))
            if chosen is None:
                return item, None, None
            algorithm, expected = chosen
            try:
                return item, f"{algorithm}={expected}", f"{algorithm}={_hash(item.path, algorithm)}"
            except FileNotFoundError:  # evicted meanwhile
                return item, f"{algorithm}={expected}", None
        finally:
            if progress is not None:
                progress(item.size)

    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="eggproxy-verify") as pool:
        results = list(pool.map(check, found))
    for item, expected, actual in results:
        if expected is None:
            report.unverifiable.append(f"{item.project}/{item.name}")
            continue
        if actual is None:
            continue
        report.checked += 1
        report.checked_bytes += item.size
        if actual == expected:
            continue
        with cache.try_lock(item.path) as held:
            if not held:
                continue  # a download of it is running: it replaces the file anyway
            moved = quarantine(cache, item)
        # Reported by the caller (one line each on stdout for the command), not logged too.
        report.mismatches.append(Mismatch(item.project, item.name, expected, actual, moved))
    report.unverifiable.sort()
    return report
