"""The core facade every front end calls: pages and files, cached on demand.

:class:`Proxy` knows nothing of Apache or of HTTP servers.  It answers
"give me the page of project X in format F" and "make file Y of project X
available" with paths into the cache directory, fetching from the upstream
only when the cache cannot answer.  Safe to use from many threads; several
processes coordinate through the cache's file locks.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import requests

from eggproxy.aggregate import Aggregator, Entry
from eggproxy.cache import Cache, Freshness, PageState, freshness
from eggproxy.config import Config
from eggproxy.download import Downloader, Wanted
from eggproxy.errors import (
    FileNotListed,
    MalformedPage,
    ProjectNotFound,
    UpstreamError,
    UpstreamUnavailable,
)
from eggproxy.localdir import LocalSource
from eggproxy.model import DistFile, IndexPage, ProjectPage
from eggproxy.names import METADATA_SUFFIX, NormalizedName
from eggproxy.parse import project_from_json
from eggproxy.render import index_html, index_json_bytes, project_html, project_json_bytes
from eggproxy.upstream import UpstreamIndex, make_session

log = logging.getLogger(__name__)

Outcome = Literal["hit", "miss", "revalidated", "stale"]


@dataclass(frozen=True)
class PageResult:
    """A page ready to serve from disk, and how we got it."""

    path: Path
    outcome: Outcome
    max_age: int  # seconds of freshness left, for Cache-Control
    warning: str | None = None  # set when a stale page is served
    stat: os.stat_result | None = None  # of ``path``, when already taken


@dataclass(frozen=True)
class FileResult:
    """A file to serve: already on disk (``path``) or arriving (``stream``)."""

    path: Path
    outcome: Literal["hit", "miss"]
    size: int
    stream: Iterator[bytes] | None = None  # None: complete on disk at ``path``


class Proxy:
    """An on-demand caching proxy of its configured sources (one upstream by default)."""

    def __init__(
        self,
        config: Config,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.cache = Cache(config.cache_dir)
        # Overwrite the session for testing, or to configure proxies and TLS.
        self.sources = build_sources(config, session or make_session())
        self._local: list[LocalSource] = [
            s for s in self.sources.local_sources() if isinstance(s, LocalSource)
        ]
        self.downloader = Downloader(self.cache)

    def prepare(self) -> None:
        """Create or check the cache directory and clean what a crash left."""
        self.cache.prepare()
        removed = self.cache.clean_partials()
        if removed:
            log.info("removed %d leftover partial files", removed)

    # --- pages ---------------------------------------------------------------

    def fresh_page(self, project: NormalizedName | None, fmt: str) -> PageResult | None:
        """The page if it is cached and fresh: one ``stat``, never blocks on I/O."""
        path = self.cache.page_path(project, fmt)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        ttl, now = self.config.index_ttl, self.clock()
        if freshness(st.st_mtime, ttl, now) is not Freshness.FRESH:
            return None
        # Files dropped into a local folder appear on the next request.
        if self._local and any(s.changed_since(st.st_mtime) for s in self._local):
            return None
        return PageResult(path, "hit", self._max_age(ttl - (now - st.st_mtime)), stat=st)

    def _max_age(self, left: float) -> int:
        """Seconds an HTTP cache in front (mod_cache, nginx) may reuse a page unasked.

        A file dropped into a local folder must appear on the next request, which only
        eggproxy can notice: with a local source, caches in front must ask every time.
        """
        return 0 if self._local else int(left)

    def page(self, project: NormalizedName | None, fmt: str) -> PageResult:
        """Return the cached page of ``project`` (``None``: the root page).

        A fresh page never contacts the upstream.  A stale one is
        revalidated; if the upstream fails, the stale page is served with a
        warning, because the cache is most valuable when the link is bad.
        """
        fresh = self.fresh_page(project, fmt)
        if fresh is not None:
            return fresh
        lock = self._page_lock(project)
        if self.cache.page_mtime(project) is None:
            with self.cache.lock(lock):  # one fetch, however many ask at once
                return self._page_locked(project, fmt)
        with self.cache.try_lock(lock) as held:
            if held:
                return self._page_locked(project, fmt)
        # Another request is revalidating this page right now: rather than queue
        # behind it (for up to the timeout when the link is bad), serve it stale.
        path = self.cache.page_path(project, fmt)
        return PageResult(path, "stale", 0, warning="being revalidated")

    def _page_locked(self, project: NormalizedName | None, fmt: str) -> PageResult:
        # Another thread or process may have refreshed it while we waited.
        fresh = self.fresh_page(project, fmt)
        if fresh is not None:
            return fresh
        path = self.cache.page_path(project, fmt)
        mtime = self.cache.page_mtime(project)
        try:
            changed = self._refresh_locked(project)
        except (ProjectNotFound, FileNotListed):
            raise
        except UpstreamError as exc:
            if mtime is None:
                raise
            log.warning("serving stale page of %s: %s", project or "root", exc)
            return PageResult(path, "stale", 0, warning=str(exc))
        outcome: Outcome = "miss" if mtime is None or changed else "revalidated"
        return PageResult(path, outcome, self._max_age(self.config.index_ttl))

    def refresh(self, project: NormalizedName | None) -> bool:
        """Revalidate a page now, whatever its age; return whether it changed."""
        with self.cache.lock(self._page_lock(project)):
            return self._refresh_locked(project)

    def _page_lock(self, project: NormalizedName | None) -> Path:
        # Page locks live apart, so that asking for a project that does not
        # exist upstream leaves no directory behind.
        return self.cache.root / ".locks" / (project or "_root")

    def _refresh_locked(self, project: NormalizedName | None) -> bool:
        old = self.cache.read_state(project)
        have_page = self.cache.page_mtime(project) is not None and (
            project is None or self.cache.has_upstream(project)
        )
        # Without a complete cached page, a 304 would leave us nothing to serve.
        etag = old.etag if old is not None and have_page else None
        started = self.clock()
        fetched = (
            self.sources.fetch_project(project, etag)
            if project is not None
            else self.sources.fetch_index(etag)
        )
        if fetched.page is None:  # 304 Not Modified
            self.cache.touch_page(project, started)
            return False
        if old is not None and old.serial and fetched.serial and fetched.serial < old.serial:
            # A mirror behind the one we saw last time: keep the newer page.
            raise UpstreamError(
                f"upstream serial went backwards ({fetched.serial} < {old.serial})",
                url=fetched.url,
            )
        state = PageState(url=fetched.url, etag=fetched.etag, serial=fetched.serial)
        page = fetched.page
        if isinstance(page, ProjectPage):
            self.cache.write_page(
                project,
                html=project_html(page),
                json_page=project_json_bytes(page),
                upstream=project_json_bytes(page, relative=False),
                state=state,
                fetched=started,
            )
        else:
            assert isinstance(page, IndexPage)
            self.cache.write_page(
                None,
                html=index_html(page),
                json_page=index_json_bytes(page),
                upstream=None,
                state=state,
                fetched=started,
            )
        log.info("fetched page of %s from %s", project or "root", fetched.url)
        return True

    # --- files ---------------------------------------------------------------

    def file(self, project: NormalizedName, filename: str) -> Path:
        """Make ``filename`` of ``project`` available on disk; return its path.

        Blocks until the file is downloaded and verified (or until another
        process that is downloading it has finished).
        """
        target = self.cache.file_path(project, filename)
        if target.exists():
            return target
        return self.downloader.ensure(self.wanted(project, filename))

    def open_file(self, project: NormalizedName, filename: str) -> FileResult:
        """Like :meth:`file`, but a miss streams bytes as they arrive."""
        target = self.cache.file_path(project, filename)
        if target.exists():
            return FileResult(target, "hit", target.stat().st_size)
        size, stream = self.downloader.stream(self.wanted(project, filename))
        return FileResult(target, "miss", size, stream)

    def wanted(self, project: NormalizedName, filename: str) -> Wanted:
        """What to download for ``filename``: only a URL the project's page listed."""
        base = filename.removesuffix(METADATA_SUFFIX)
        dist = self._listed(project, base)
        target = self.cache.file_path(project, filename)
        opener = self.sources.source(dist.source).open_file
        if filename == base:
            return Wanted(dist.url, target, dist.hashes, dist.size, opener)
        # PEP 658: the metadata file, verified against the page's metadata hash.
        if not dist.core_metadata:
            raise FileNotListed(project, filename)
        hashes = dist.core_metadata if isinstance(dist.core_metadata, Mapping) else {}
        return Wanted(dist.metadata_url, target, hashes, opener=opener)

    def _listed(self, project: NormalizedName, filename: str) -> DistFile:
        page = self._upstream_page(project)
        dist = page.file(filename) if page is not None else None
        if dist is None and (page is None or self.fresh_page(project, "json") is None):
            # Not cached (or its upstream copy lost), or a stale page may predate
            # the file: ask upstream.
            if page is None and self.cache.page_mtime(project) is not None:
                self.refresh(project)
            else:
                result = self.page(project, "json")
                if result.outcome == "stale" and result.warning:
                    # We cannot tell whether the file exists: say why, not 404.
                    raise UpstreamUnavailable(result.warning)
            page = self._upstream_page(project)
            dist = page.file(filename) if page is not None else None
        if dist is None:
            raise FileNotListed(project, filename)
        return dist

    def _upstream_page(self, project: NormalizedName) -> ProjectPage | None:
        data = self.cache.read_upstream(project)
        if data is None:
            return None
        try:
            return project_from_json(data.decode(), "file:///", project)  # URLs are absolute
        except (MalformedPage, UnicodeDecodeError):
            log.warning("broken upstream copy of %s, refetching", project)
            return None


def build_sources(config: Config, session: requests.Session) -> Aggregator:
    """The configured sources, in order, behind one :class:`Aggregator`."""
    entries = []
    for source in config.effective_sources:
        if source.path is not None:
            entries.append(Entry(LocalSource(source.name, source.path), source))
            continue
        assert source.url is not None
        auth = (source.username, source.password or "") if source.username else None
        remote = UpstreamIndex(source.url, session, config.timeout, name=source.name, auth=auth)
        entries.append(Entry(remote, source))
    return Aggregator(entries)
