"""``eggproxy import``: merge an exported tree (see :mod:`~eggproxy.offline.export`) into a cache.

Every file is checked against the hash its exported page declares before it becomes
visible, and a file already cached is never overwritten (it is checked too: a cached file
whose bytes differ from the page's hash is reported, not replaced).  Files that do not
match are refused and reported; the page written lists only files that are in the cache.

Which page wins, per project: the imported one when the cache has none, or when it is
newer (a higher ``_last-serial`` when both pages carry one, else a later fetch time).  The
files that only the losing page lists stay listed if they are in the cache, so an import
never hides a cached file.  The page is written stale (see :meth:`Proxy.import_page`).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from eggproxy.errors import IntegrityError, InvalidName, MalformedPage
from eggproxy.model import DistFile, ProjectPage
from eggproxy.names import METADATA_SUFFIX, NormalizedName, normalize_project, validate_filename
from eggproxy.offline.export import FETCHED_KEY
from eggproxy.parse import project_from_json
from eggproxy.proxy import CachedPage, Proxy

log = logging.getLogger(__name__)


class NotAnExport(ValueError):
    """A directory without the ``simple/`` tree that ``eggproxy export`` writes."""


@dataclass
class ImportSummary:
    projects: int = 0
    pages: int = 0  # pages written
    imported: int = 0  # files (and PEP 658 metadata files) copied into the cache
    present: int = 0  # those the cache already had (and that matched)
    refused: list[str] = field(default_factory=list)  # one line per refused file or page

    def line(self) -> str:
        return (
            f"imported {self.imported} files ({self.present} already cached) of "
            f"{self.projects} projects, {self.pages} pages written, {len(self.refused)} refused"
        )


def newer(candidate: CachedPage, than: CachedPage) -> bool:
    """Whether ``candidate`` is a later view of the project than ``than``."""
    (page, fetched), (other, other_fetched) = candidate, than
    if page.last_serial is not None and other.last_serial is not None:
        return page.last_serial > other.last_serial
    return fetched > other_fetched


def merge_pages(
    cached: CachedPage | None, imported: CachedPage, in_cache: Callable[[str], bool]
) -> CachedPage | None:
    """The page to write, or ``None`` when the cached page already says it all."""
    if cached is None:
        return imported
    imported_wins = newer(imported, cached)
    (winner, fetched), (loser, _) = (imported, cached) if imported_wins else (cached, imported)
    listed = {dist.filename for dist in winner.files}
    kept = tuple(d for d in loser.files if d.filename not in listed and in_cache(d.filename))
    if not imported_wins and not kept:
        return None
    versions = None if kept else winner.versions  # PEP 700: derived from the files then
    return replace(winner, files=winner.files + kept, versions=versions), fetched


def _read_page(directory: Path, project: NormalizedName) -> CachedPage:
    path = directory / "index.json"
    try:
        text = path.read_text(encoding="utf-8")
        page = project_from_json(text, directory.as_uri() + "/", project)
        stamp = json.loads(text)["meta"].get(FETCHED_KEY)
        fetched = (
            datetime.datetime.fromisoformat(stamp).timestamp()
            if isinstance(stamp, str)
            else path.stat().st_mtime
        )
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, MalformedPage) as exc:
        raise MalformedPage(f"{path}: {exc}") from None
    return page, fetched


def _import_files(
    proxy: Proxy,
    project: NormalizedName,
    directory: Path,
    page: ProjectPage,
    summary: ImportSummary,
) -> list[DistFile]:
    verified: list[DistFile] = []
    for dist in page.files:
        try:
            validate_filename(dist.filename)  # names from the page become paths
        except InvalidName:
            summary.refused.append(f"{project}/{dist.filename}: not a distribution file name")
            continue
        source = directory / dist.filename
        if not source.is_file():
            summary.refused.append(f"{project}/{dist.filename}: listed but missing")
            continue
        try:
            added = proxy.import_file(project, dist.filename, source, dist.hashes)
        except IntegrityError as exc:
            summary.refused.append(f"{project}/{exc}")
            continue
        summary.imported += added
        summary.present += not added
        metadata = dist.core_metadata
        meta_source = directory / (dist.filename + METADATA_SUFFIX)
        if metadata and isinstance(metadata, Mapping) and meta_source.is_file():
            try:
                added = proxy.import_file(project, meta_source.name, meta_source, metadata)
            except IntegrityError as exc:
                summary.refused.append(f"{project}/{exc}")
            else:
                summary.imported += added
                summary.present += not added
        if proxy.cached_file(project, dist.filename + METADATA_SUFFIX) is None:
            metadata = False  # PEP 658: never promise a metadata file we cannot serve
        verified.append(replace(dist, url=source.as_uri(), core_metadata=metadata, source=None))
    return verified


def _merger(
    proxy: Proxy, project: NormalizedName, imported: CachedPage
) -> Callable[[CachedPage | None], CachedPage | None]:
    def in_cache(filename: str) -> bool:
        return proxy.cached_file(project, filename) is not None

    def merge(cached: CachedPage | None) -> CachedPage | None:
        return merge_pages(cached, imported, in_cache)

    return merge


def import_tree(proxy: Proxy, root: Path) -> ImportSummary:
    """Merge the export under ``root`` into the proxy's cache."""
    simple = root / "simple"
    if not simple.is_dir():
        raise NotAnExport(f"{root} is not an eggproxy export (no simple/ directory)")
    summary = ImportSummary()
    for directory in sorted(p for p in simple.iterdir() if p.is_dir()):
        try:
            project = normalize_project(directory.name)
        except InvalidName:
            project = None
        if project != directory.name:
            summary.refused.append(f"{directory.name}: not a normalised project name")
            continue
        try:
            page, fetched = _read_page(directory, project)
        except MalformedPage as exc:
            summary.refused.append(f"{project}: {exc}")
            continue
        summary.projects += 1
        verified = _import_files(proxy, project, directory, page, summary)
        imported = (replace(page, files=tuple(verified)), fetched)

        origin = (directory / "index.json").as_uri()
        summary.pages += proxy.import_page(project, _merger(proxy, project, imported), origin)
    return summary
