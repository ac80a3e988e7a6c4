"""A local folder of distributions as a source: private packages without a server.

The folder is flat: any mix of wheels, sdists, eggs and legacy formats.  Its
listing is kept in memory and read again only when the folder's mtime
changes (adding, removing or renaming a file changes it), so dropping a file
in makes it appear on the next request without a rescan per request.
Hashes and wheel metadata are computed once per file version (name, size,
mtime) and remembered.  A file whose name cannot be parsed is logged once
and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name

from eggproxy.errors import ProjectNotFound, UpstreamError
from eggproxy.model import DistFile, ProjectPage
from eggproxy.names import METADATA_SUFFIX, NormalizedName, split_dist_filename
from eggproxy.sources.base import CHUNK_SIZE, Fetched, RootListing

log = logging.getLogger(__name__)

_METADATA_PATH: Final = re.compile(r"[^/]+\.dist-info/METADATA")


@dataclass(frozen=True)
class _LocalFile:
    path: Path
    project: NormalizedName
    display: str
    sha256: str
    size: int
    mtime: float
    metadata: bytes | None  # a wheel's METADATA, for PEP 658
    metadata_sha256: str | None


def _project_of(filename: str) -> tuple[NormalizedName, str] | None:
    """The (normalised, displayed) project name a distribution file belongs to."""
    split = split_dist_filename(filename)
    return (canonicalize_name(split[0]), split[0]) if split else None


def _wheel_metadata(path: Path) -> bytes | None:
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if _METADATA_PATH.fullmatch(name):
                    return archive.read(name)
    except (zipfile.BadZipFile, OSError):
        log.warning("cannot read the metadata of %s", path.name)
    return None


class LocalResponse:
    """A local file shaped like a streaming HTTP response, for the downloader."""

    def __init__(self, data: bytes | None = None, path: Path | None = None) -> None:
        self._data = data
        self._path = path
        size = len(data) if data is not None else path.stat().st_size if path else 0
        self.headers = {"Content-Length": str(size)}

    def iter_content(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        if self._data is not None:
            yield self._data
            return
        assert self._path is not None
        with open(self._path, "rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def __enter__(self) -> LocalResponse:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class LocalSource:
    """A folder of distribution files, served as a simple index."""

    is_local = True

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder
        self.url = folder.as_uri() + "/"
        self._lock = threading.Lock()
        self._listing_mtime: int | None = None
        self._projects: dict[NormalizedName, list[_LocalFile]] = {}
        self._known: dict[tuple[str, int, int], _LocalFile] = {}
        self._skipped: set[str] = set()

    def changed_since(self, when: float) -> bool:
        """Whether files were added, removed or renamed after ``when``."""
        try:
            return self.folder.stat().st_mtime > when
        except FileNotFoundError:
            return False

    def _scan(self) -> dict[NormalizedName, list[_LocalFile]]:
        with self._lock:
            try:
                mtime = self.folder.stat().st_mtime_ns
            except FileNotFoundError:
                log.warning("source %s: folder %s is missing", self.name, self.folder)
                return {}
            if mtime == self._listing_mtime:
                return self._projects
            projects: dict[NormalizedName, list[_LocalFile]] = {}
            known: dict[tuple[str, int, int], _LocalFile] = {}
            for path in sorted(self.folder.iterdir()):
                if path.name.startswith(".") or not path.is_file():
                    continue
                found = _project_of(path.name)
                if found is None:
                    if path.name not in self._skipped:
                        log.warning(
                            "source %s: skipping %s (not a distribution name)", self.name, path.name
                        )
                        self._skipped.add(path.name)
                    continue
                st = path.stat()
                key = (path.name, st.st_size, st.st_mtime_ns)
                item = self._known.get(key) or self._describe(path, found, st.st_size, st.st_mtime)
                known[key] = item
                projects.setdefault(found[0], []).append(item)
            self._projects, self._known, self._listing_mtime = projects, known, mtime
            return projects

    def _describe(
        self, path: Path, found: tuple[NormalizedName, str], size: int, mtime: float
    ) -> _LocalFile:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                digest.update(chunk)
        metadata = _wheel_metadata(path) if path.name.endswith(".whl") else None
        metadata_sha256 = hashlib.sha256(metadata).hexdigest() if metadata else None
        return _LocalFile(
            path, found[0], found[1], digest.hexdigest(), size, mtime, metadata, metadata_sha256
        )

    def fetch_project(
        self, project: NormalizedName, etag: str | None = None, *, since: str | None = None
    ) -> Fetched[ProjectPage]:
        files = self._scan().get(project)
        if not files:
            raise ProjectNotFound(project)
        dists = tuple(
            DistFile(
                filename=f.path.name,
                url=f.path.as_uri(),
                hashes={"sha256": f.sha256},
                core_metadata={"sha256": f.metadata_sha256} if f.metadata_sha256 else False,
                size=f.size,
                upload_time=datetime.fromtimestamp(f.mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                source=self.name,
            )
            for f in files
        )
        page = ProjectPage(name=files[0].display, files=dists, sources=(self.name,))
        return Fetched(url=self.url + project + "/", page=page)

    def fetch_index(self, etag: str | None = None) -> Fetched[RootListing]:
        names = tuple(files[0].display for files in self._scan().values())
        return Fetched(url=self.url, page=RootListing([(name, None) for name in names]))

    def open_file(self, url: str) -> LocalResponse:
        """Open a file of this folder (or a wheel's PEP 658 metadata) by its URL."""
        parts = urlsplit(url)
        wanted = Path(unquote(parts.path))
        is_metadata = wanted.name.endswith(METADATA_SUFFIX)
        name = wanted.name.removesuffix(METADATA_SUFFIX)
        # Only a file this folder lists, never a path taken from elsewhere.
        for files in self._scan().values():
            for item in files:
                if item.path.name != name or wanted.parent != self.folder:
                    continue
                if not is_metadata:
                    return LocalResponse(path=item.path)
                if item.metadata is None:
                    break
                return LocalResponse(data=item.metadata)
        raise UpstreamError(f"source {self.name}: {wanted.name} is not in the folder", url=url)
