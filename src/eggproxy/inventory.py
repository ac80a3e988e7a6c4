"""What the cache directory holds: files, sizes, projects, page ages (one walk).

Used by the cache limit (:mod:`eggproxy.prune`), ``eggproxy cache stats``,
``eggproxy cache verify``, ``/metrics`` and the status page.  Only the
layout of :mod:`eggproxy.cache` is assumed: project directories at the
root, dot-names for everything that is not a page or a file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from eggproxy.cache import PAGE_FILES
from eggproxy.metrics import CacheUsage
from eggproxy.names import NormalizedName

_PAGES: Final = frozenset(PAGE_FILES.values())


@dataclass(frozen=True)
class CachedFile:
    """A distribution (or PEP 658 metadata) file in the cache."""

    project: NormalizedName
    name: str
    path: Path
    size: int
    mtime: float  # when it was downloaded (the rename keeps the partial file's time)


@dataclass
class ProjectUsage:
    """One project directory: every byte in it, its files, and its page's fetch time."""

    name: NormalizedName
    bytes: int = 0
    files: int = 0
    page_mtime: float | None = None


@dataclass
class Inventory:
    """The whole cache: its projects, and the bytes outside them (root pages, state)."""

    projects: list[ProjectUsage] = field(default_factory=list)
    other_bytes: int = 0

    @property
    def usage(self) -> CacheUsage:
        return CacheUsage(
            bytes=self.other_bytes + sum(p.bytes for p in self.projects),
            files=sum(p.files for p in self.projects),
            projects=sum(1 for p in self.projects if p.page_mtime is not None),
        )


def _project_dirs(root: Path, only: Iterable[str] | None = None) -> Iterator[os.DirEntry[str]]:
    wanted = set(only) if only is not None else None
    with contextlib.suppress(FileNotFoundError), os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            if wanted is None or entry.name in wanted:
                yield entry


def is_cached_file(name: str) -> bool:
    """A distribution or metadata file, not a page, state, lock or partial file."""
    return not name.startswith(".") and name not in _PAGES


def scan(root: Path) -> Inventory:
    """Walk the cache once: every project's bytes, files and page time."""
    inventory = Inventory()
    with contextlib.suppress(FileNotFoundError), os.scandir(root) as entries:
        for entry in entries:
            # Our own bookkeeping (.metrics, .quarantine, .locks, .usage) is not cache.
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):
                inventory.other_bytes += entry.stat().st_size
    for directory in _project_dirs(root):
        project = ProjectUsage(NormalizedName(directory.name))
        with contextlib.suppress(FileNotFoundError), os.scandir(directory.path) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                project.bytes += st.st_size
                if entry.name == PAGE_FILES["json"]:
                    project.page_mtime = st.st_mtime
                elif is_cached_file(entry.name):
                    project.files += 1
        inventory.projects.append(project)
    return inventory


def cached_files(root: Path, projects: Iterable[str] | None = None) -> Iterator[CachedFile]:
    """Every cached distribution and metadata file (of ``projects``, if given)."""
    for directory in _project_dirs(root, projects):
        with contextlib.suppress(FileNotFoundError), os.scandir(directory.path) as entries:
            for entry in entries:
                if not is_cached_file(entry.name) or not entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    yield CachedFile(
                        NormalizedName(directory.name),
                        entry.name,
                        Path(entry.path),
                        st.st_size,
                        st.st_mtime,
                    )
