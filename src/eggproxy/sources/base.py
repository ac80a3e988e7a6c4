"""What every source offers, and the values it answers with.

Remote indexes (:mod:`eggproxy.sources.remote`), local folders
(:mod:`eggproxy.sources.local`) and the downloader share these types, so
none of them depends on another's module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, Protocol, TypeVar

from eggproxy.model import IndexEntry, ProjectPage
from eggproxy.names import NormalizedName

CHUNK_SIZE: Final = 64 * 1024  # bytes read from an upstream or a file per step


class RootListing:
    """A root page arriving project by project: iterate it once, then close it.

    The real index lists about 750,000 projects: its root page is streamed
    from the response to the cache and never held whole.
    """

    def __init__(
        self,
        entries: Iterable[IndexEntry],
        *,
        close: Callable[[], None] = lambda: None,
        serial: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._entries = entries
        self._close = close
        self._serial = serial

    def __iter__(self) -> Iterator[IndexEntry]:
        return iter(self._entries)

    @property
    def last_serial(self) -> int | None:
        """The page's own ``_last-serial``, known once it has been read."""
        return self._serial()

    def close(self) -> None:
        self._close()

    def __enter__(self) -> RootListing:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


P = TypeVar("P", ProjectPage, RootListing)


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
    last_modified: str | None = None  # the upstream's Last-Modified, for If-Modified-Since


class Source(Protocol):
    """What a source offers: pages and files (remote index or local folder)."""

    name: str
    url: str
    is_local: bool

    def fetch_project(
        self, project: NormalizedName, etag: str | None = None, *, since: str | None = None
    ) -> Fetched[ProjectPage]: ...

    def fetch_index(self, etag: str | None = None) -> Fetched[RootListing]: ...

    def open_file(self, url: str) -> FileResponse: ...
