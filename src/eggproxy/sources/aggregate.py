"""Index aggregation: several sources behind one index, safe by default.

For each project, the first source in configured order that has it provides
all of its files and later sources are not consulted (no dependency
confusion: a public project cannot shadow or join a private one).  A source
can name projects it may provide even when an earlier source has them
(``allow``), and a source in ``unsafe-merge`` mode adds its files to an
earlier source's page, first source winning a filename clash, but only where
PEP 708 (``tracks`` or agreeing ``alternate-locations``) says the
repositories serve one namespace; local folders may always merge (PEP 708,
"Recommendations").  An earlier source that cannot be asked is an error, not
a reason to fall through to a later one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import requests
from packaging.utils import canonicalize_name

from eggproxy.config import Config, SourceConfig, SourceMode
from eggproxy.errors import ProjectNotFound, UpstreamError
from eggproxy.metrics import NullMetrics
from eggproxy.model import IndexEntry, ProjectPage
from eggproxy.names import NormalizedName
from eggproxy.sources.base import Fetched, RootListing, Source
from eggproxy.sources.local import LocalSource
from eggproxy.sources.remote import UpstreamIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    source: Source
    config: SourceConfig


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def merge_allowed(found: Sequence[tuple[Entry, Fetched[ProjectPage]]]) -> bool:
    """PEP 708: may these pages of one project, from different sources, be merged?"""
    remote = [(_slash(f.url), f.page) for e, f in found if not e.source.is_local and f.page]
    if len(remote) <= 1:
        return True
    urls = {url for url, _page in remote}
    # "Tracks": one repository owns the name; every other page tracks it.
    for owner in urls:
        if all(owner in {_slash(t) for t in page.tracks} for url, page in remote if url != owner):
            return True
    # "Alternate locations": every location agrees on the full set, each
    # implicitly including the URL it was fetched from.
    sets = [{_slash(a) for a in page.alternate_locations} | {url} for url, page in remote]
    return all(s == sets[0] for s in sets) and urls <= sets[0]


class Aggregator:
    """Sources in configured order, with the first-source policy."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        if not entries:
            raise ValueError("at least one source is needed")
        self.entries = tuple(entries)
        self._by_name = {e.source.name: e.source for e in entries}

    @property
    def single(self) -> bool:
        return len(self.entries) == 1

    def source(self, name: str | None) -> Source:
        """The source called ``name`` (the first one for pages cached without one)."""
        if name is None:
            return self.entries[0].source
        try:
            return self._by_name[name]
        except KeyError:
            raise UpstreamError(f'no configured source named "{name}"') from None

    def local_sources(self) -> list[Source]:
        return [e.source for e in self.entries if e.source.is_local]

    def _order(self, project: NormalizedName) -> list[Entry]:
        preferred = [e for e in self.entries if project in e.config.allow]
        return preferred + [e for e in self.entries if e not in preferred]

    def fetch_project(
        self, project: NormalizedName, etag: str | None, *, since: str | None = None
    ) -> Fetched[ProjectPage]:
        """The project's page from the sources; ``page`` is ``None`` if not modified."""
        if self.single:
            source = self.entries[0].source
            return _label(source.fetch_project(project, etag, since=since), source.name)
        found: list[tuple[Entry, Fetched[ProjectPage]]] = []
        for entry in self._order(project):
            merging = bool(found)
            if merging and entry.config.mode is not SourceMode.UNSAFE_MERGE:
                continue
            try:
                fetched = _label(entry.source.fetch_project(project), entry.source.name)
            except ProjectNotFound:
                continue
            except UpstreamError as exc:
                if not merging:
                    raise  # it may have the project: never fall through past it
                log.warning("source %s not merged into %s: %s", entry.source.name, project, exc)
                continue
            if merging and not merge_allowed([*found, (entry, fetched)]):
                log.warning(
                    "refusing to merge %s from source %s into %s: PEP 708 metadata "
                    "(tracks or alternate-locations) does not link these repositories",
                    project,
                    entry.source.name,
                    "+".join(e.source.name for e, _f in found),
                )
                continue
            found.append((entry, fetched))
        if not found:
            raise ProjectNotFound(project)
        return _combine(found)

    def fetch_index(self, etag: str | None) -> Fetched[RootListing]:
        """The root page: the union of every source's projects, streamed.

        With several sources, the normalised names seen so far are kept to
        list each project once (a set of names, not the pages).
        """
        if self.single:
            return self.entries[0].source.fetch_index(etag)
        listings: list[RootListing] = []
        try:
            for entry in self.entries:
                page = entry.source.fetch_index().page
                if page is not None:
                    listings.append(page)
        except BaseException:
            for listing in listings:
                listing.close()
            raise

        def union() -> Iterator[IndexEntry]:
            seen: set[str] = set()
            for listing in listings:
                for name, _serial in listing:
                    key = canonicalize_name(name)
                    if key not in seen:
                        seen.add(key)
                        # A serial of one source says nothing of the union.
                        yield name, None

        def close() -> None:
            for listing in listings:
                listing.close()

        first = self.entries[0].source
        return Fetched(url=first.url, page=RootListing(union(), close=close))


def _label(fetched: Fetched[ProjectPage], name: str) -> Fetched[ProjectPage]:
    """Mark a page and its files with the source that served them."""
    page = fetched.page
    if page is None:
        return fetched
    if any(f.source != name for f in page.files):
        page = replace(page, files=tuple(f.marked(source=name) for f in page.files))
    return replace(fetched, page=replace(page, sources=(name,)))


def _combine(found: Sequence[tuple[Entry, Fetched[ProjectPage]]]) -> Fetched[ProjectPage]:
    first = found[0][1]
    assert first.page is not None
    if len(found) == 1:
        return replace(first, etag=None)
    files = list(first.page.files)
    seen = {f.filename for f in files}
    for _entry, fetched in found[1:]:
        assert fetched.page is not None
        for dist in fetched.page.files:
            if dist.filename not in seen:  # the first source wins a clash
                files.append(dist)
                seen.add(dist.filename)
    sources = tuple(e.source.name for e, _f in found)
    page = replace(first.page, files=tuple(files), versions=None, sources=sources)
    return replace(first, page=page, etag=None)


def build_sources(
    config: Config,
    session: requests.Session,
    *,
    via: str | None = None,
    metrics: NullMetrics | None = None,
) -> Aggregator:
    """The configured sources, in order, behind one :class:`Aggregator`.

    ``via``: the pseudonym remote sources name us by in their ``Via`` header.
    """
    entries = []
    for source in config.effective_sources:
        if source.path is not None:
            entries.append(Entry(LocalSource(source.name, source.path), source))
            continue
        if source.url is None:  # config guarantees one of path and url
            raise ValueError(f"source {source.name} has neither url nor path")
        auth = (source.username, source.password or "") if source.username else None
        remote = UpstreamIndex(
            source.url,
            session,
            config.timeout,
            name=source.name,
            auth=auth,
            spool_dir=config.cache_dir,
            via=via,
            metrics=metrics,
        )
        entries.append(Entry(remote, source))
    return Aggregator(entries)
