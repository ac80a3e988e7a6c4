"""``eggproxy export``: the cached part of the index as a self-contained static tree.

::

    DIR/simple/index.html  index.json        the exported projects
    DIR/simple/<project>/index.html          PEP 503, relative links with hashes
    DIR/simple/<project>/index.json          PEP 691, relative links, plus its fetch time
    DIR/simple/<project>/<file>              cached files only, and their .metadata files

Any static web server serves it, and ``pip install --index-url file:///DIR/simple/`` reads
it as is; ``eggproxy import`` merges it into another cache.  Pages list only the files that
are exported, with the hashes of the cache's page, so every file can be checked again on the
far side of the air gap.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from eggproxy.cache import write_atomic, write_atomic_stream
from eggproxy.model import DistFile, IndexPage, ProjectPage
from eggproxy.names import METADATA_SUFFIX, NormalizedName
from eggproxy.proxy import Proxy
from eggproxy.render import index_html, index_json_bytes, project_html, project_json
from eggproxy.sources.base import CHUNK_SIZE

# PEP 691 reserves keys with a leading underscore for the index's own use.
FETCHED_KEY: Final = "_eggproxy-fetched"


class ExportError(ValueError):
    """An export that cannot be made (a named project that is not cached)."""


@dataclass(frozen=True)
class ExportSummary:
    projects: int
    files: int
    copied: int
    size: int

    def line(self, dest: Path) -> str:
        return (
            f"exported {self.projects} projects, {self.files} files "
            f"({self.copied} copied, {self.size} bytes) to {dest}"
        )


def fetched_stamp(fetched: float) -> str:
    """ISO 8601, UTC: the fetch time as the exported JSON page carries it."""
    moment = datetime.datetime.fromtimestamp(fetched, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _copy(source: Path, dest: Path) -> bool:
    """Copy unless an equal-sized copy is there already (cached files are immutable)."""
    try:
        if dest.stat().st_size == source.stat().st_size:
            return False
    except FileNotFoundError:
        pass

    def chunks() -> Iterator[bytes]:
        with source.open("rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk

    write_atomic_stream(dest, chunks())
    return True


def _project_json(page: ProjectPage, fetched: float) -> bytes:
    data = project_json(page)
    data["meta"][FETCHED_KEY] = fetched_stamp(fetched)
    return json.dumps(data, separators=(",", ":")).encode()


def export(proxy: Proxy, dest: Path, projects: Sequence[NormalizedName] = ()) -> ExportSummary:
    """Write the cached pages of ``projects`` (default: every cached one) under ``dest``."""
    names = list(projects) or proxy.cached_projects()
    pages = {name: proxy.cached_page(name) for name in names}
    missing = sorted(name for name, cached in pages.items() if cached is None)
    if missing:
        raise ExportError(f"not cached: {', '.join(missing)}")
    simple = dest / "simple"
    simple.mkdir(parents=True, exist_ok=True)
    files = copied = size = 0
    shown: list[str] = []
    for name, cached in pages.items():
        assert cached is not None
        page, fetched = cached
        directory = simple / name
        directory.mkdir(exist_ok=True)
        kept: list[DistFile] = []
        for dist in page.files:
            hit = proxy.cached_file(name, dist.filename)
            if hit is None:
                continue
            copied += _copy(hit[0], directory / dist.filename)
            files, size = files + 1, size + hit[1].st_size
            metadata = dist.core_metadata
            meta_hit = proxy.cached_file(name, dist.filename + METADATA_SUFFIX)
            if metadata and meta_hit is not None:
                copied += _copy(meta_hit[0], directory / (dist.filename + METADATA_SUFFIX))
            # PEP 658: promise the metadata file only where it was exported.
            kept.append(replace(dist, core_metadata=metadata if meta_hit else False))
        # PEP 700 versions: those of the exported files, not every upstream one.
        exported = replace(page, files=tuple(kept), versions=None)
        write_atomic(directory / "index.html", project_html(exported))
        write_atomic(directory / "index.json", _project_json(exported, fetched))
        shown.append(page.name)
    root = IndexPage(tuple(sorted(shown, key=str.lower)))
    write_atomic(simple / "index.html", index_html(root))
    write_atomic(simple / "index.json", index_json_bytes(root))
    return ExportSummary(len(pages), files, copied, size)
