"""What every source offers, and the values it answers with.

Remote indexes (:mod:`eggproxy.sources.remote`), local folders
(:mod:`eggproxy.sources.local`) and the downloader share these types, so
none of them depends on another's module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from eggproxy.model import IndexPage, ProjectPage
from eggproxy.names import NormalizedName

CHUNK_SIZE: Final = 64 * 1024  # bytes read from an upstream or a file per step

P = TypeVar("P", ProjectPage, IndexPage)


class FileResponse(Protocol):
    """A streaming file download, as ``requests.Response`` offers it."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    def iter_content(self, chunk_size: int) -> Iterator[bytes]: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...


@dataclass(frozen=True)
class Fetched(Generic[P]):
    """A source's answer to a page request; ``page`` is ``None`` on 304."""

    url: str
    page: P | None
    etag: str | None = None
    serial: int | None = None


class Source(Protocol):
    """What a source offers: pages and files (remote index or local folder)."""

    name: str
    url: str
    is_local: bool

    def fetch_project(
        self, project: NormalizedName, etag: str | None = None
    ) -> Fetched[ProjectPage]: ...

    def fetch_index(self, etag: str | None = None) -> Fetched[IndexPage]: ...

    def open_file(self, url: str) -> FileResponse: ...
