"""``eggproxy prefetch``: resolve a requirements set through the proxy and cache its files.

Everything goes through :class:`~eggproxy.proxy.Proxy`, as a client's request would: pages
with :meth:`~eggproxy.proxy.Proxy.page`, PEP 658 metadata and files with
:meth:`~eggproxy.proxy.Proxy.file`, so what is fetched is verified and cached exactly as if
pip had asked for it, and the metadata files read while resolving stay cached for the pips
that will install offline.
"""

from __future__ import annotations

import logging
import sys
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from packaging.requirements import Requirement
from tqdm import tqdm

from eggproxy.errors import EggproxyError, NotFound, ProjectNotFound
from eggproxy.model import DistFile
from eggproxy.names import METADATA_SUFFIX, NormalizedName
from eggproxy.offline.resolve import Resolution, resolve
from eggproxy.offline.target import Target
from eggproxy.parse import project_from_json
from eggproxy.proxy import Proxy

log = logging.getLogger(__name__)


class MetadataNotFound(EggproxyError):
    """A distribution file without the core metadata it must carry."""


def wheel_metadata(path: Path) -> bytes:
    """A wheel's ``*.dist-info/METADATA`` (PEP 427)."""
    with zipfile.ZipFile(path) as wheel:
        for name in wheel.namelist():
            parts = name.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                return wheel.read(name)
    raise MetadataNotFound(f"{path.name} has no .dist-info/METADATA")


def sdist_metadata(path: Path) -> bytes:
    """An sdist's top-level ``PKG-INFO`` (``.tar.gz`` per PEP 625, or an old ``.zip``)."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.count("/") == 1 and name.endswith("/PKG-INFO"):
                    return archive.read(name)
    else:
        with tarfile.open(path) as archive:
            for member in archive:
                top = member.isfile() and member.name.count("/") == 1
                if top and member.name.endswith("/PKG-INFO"):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        return handle.read()
    raise MetadataNotFound(f"{path.name} has no PKG-INFO")


class ProxyIndex:
    """The resolver's :class:`~eggproxy.offline.resolve.Index`, read through a Proxy."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.downloaded: set[tuple[NormalizedName, str]] = set()  # by this run, to report

    def _file(self, project: NormalizedName, filename: str) -> Path:
        if self.proxy.cached_file(project, filename) is None:
            self.downloaded.add((project, filename))
        return self.proxy.file(project, filename)

    def files(self, project: NormalizedName) -> Sequence[DistFile]:
        try:
            result = self.proxy.page(project, "json")
        except ProjectNotFound:
            return []
        # The served page, with the proxy's policy applied; links are relative.
        base = result.path.parent.as_uri() + "/"
        return project_from_json(result.path.read_text(encoding="utf-8"), base, project).files

    def metadata(self, project: NormalizedName, dist: DistFile) -> bytes:
        if dist.filename.endswith(".whl"):
            if dist.core_metadata:  # PEP 658: the metadata alone, not the whole wheel
                try:
                    return self._file(project, dist.filename + METADATA_SUFFIX).read_bytes()
                except NotFound:
                    log.warning("%s: listed metadata missing, reading the wheel", dist.filename)
            return wheel_metadata(self._file(project, dist.filename))
        try:
            return sdist_metadata(self._file(project, dist.filename))
        except (MetadataNotFound, tarfile.TarError, zipfile.BadZipFile, OSError):
            return b"Metadata-Version: 1.0\n"  # not resolved further, with a warning


@dataclass(frozen=True)
class Fetched:
    """One file the resolution needs, and whether this run downloaded it."""

    project: NormalizedName
    filename: str
    size: int
    downloaded: bool

    def line(self) -> str:
        verb = "fetched" if self.downloaded else "cached "
        return f"{verb} {self.project}/{self.filename} ({_size(self.size)})"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def needed(resolution: Resolution) -> list[tuple[NormalizedName, str]]:
    """Every (project, file) to cache: chosen files and their PEP 658 metadata files."""
    wanted: list[tuple[NormalizedName, str]] = []
    for candidate in resolution.chosen:
        for dist in candidate.files:
            wanted.append((candidate.name, dist.filename))
            if dist.core_metadata:  # pip asks for it before the file
                wanted.append((candidate.name, dist.filename + METADATA_SUFFIX))
    return wanted


def fill(
    proxy: Proxy,
    wanted: Sequence[tuple[NormalizedName, str]],
    out: TextIO = sys.stdout,
    progress: bool | None = None,
    downloaded: set[tuple[NormalizedName, str]] | None = None,
) -> list[Fetched]:
    """Cache every wanted file; one line per file, or a progress bar on a terminal.

    ``downloaded``: files this run already fetched (while resolving), reported as fetched.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    report: Callable[[str], None] = (
        (lambda line: None) if progress else (lambda line: print(line, file=out, flush=True))
    )
    done: list[Fetched] = []
    with tqdm(total=len(wanted), unit="file", disable=not progress, file=sys.stderr) as bar:
        for project, filename in wanted:
            bar.set_postfix_str(filename, refresh=False)
            new = proxy.cached_file(project, filename) is None
            new = new or (project, filename) in (downloaded or set())
            path = proxy.file(project, filename)
            fetched = Fetched(project, filename, path.stat().st_size, new)
            done.append(fetched)
            report(fetched.line())
            bar.update()
    return done


def prefetch(
    proxy: Proxy,
    requirements: Sequence[tuple[Requirement, str]],
    target: Target,
    out: TextIO = sys.stdout,
    progress: bool | None = None,
) -> tuple[Resolution, list[Fetched]]:
    """Resolve ``requirements`` for ``target`` and cache every file the resolution needs."""
    index = ProxyIndex(proxy)
    resolution = resolve(index, target, requirements)
    for warning in resolution.warnings:
        log.warning("%s", warning)
    return resolution, fill(proxy, needed(resolution), out, progress, index.downloaded)


def summary(resolution: Resolution, fetched: Sequence[Fetched]) -> str:
    """The last line: how many projects, files and bytes."""
    downloaded = [f for f in fetched if f.downloaded]
    total = sum(f.size for f in fetched)
    return (
        f"prefetched {len(resolution.chosen)} projects, {len(fetched)} files "
        f"({len(downloaded)} fetched, {len(fetched) - len(downloaded)} already cached), "
        f"{_size(total)}"
    )


__all__ = ["ProxyIndex", "fill", "needed", "prefetch", "sdist_metadata", "summary"]
