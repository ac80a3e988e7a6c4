"""The core's one door: every front end, the CLI and background jobs call :class:`Proxy`.

:class:`Proxy` knows nothing of Apache or of HTTP servers.  It answers
"give me the page of project X in format F" and "make file Y of project X
available" with paths into the cache directory, fetching from the sources
only when the cache cannot answer.  Nothing outside the core reaches the
cache, the downloader or the clock: what a front end needs is a method
here, so that metrics, limits and policy see every answer in one place.
Safe to use from many threads; several processes coordinate through the
cache's file locks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import requests

from eggproxy import loops
from eggproxy.cache import Cache, Freshness, PageState, Snapshot, freshness
from eggproxy.config import Config
from eggproxy.download import Downloader, Wanted
from eggproxy.errors import FileNotListed, MalformedPage, UpstreamError, UpstreamUnavailable
from eggproxy.mediatypes import Format
from eggproxy.model import DistFile, ProjectPage
from eggproxy.names import METADATA_SUFFIX, NormalizedName
from eggproxy.parse import project_from_json
from eggproxy.render import index_html, index_json_bytes, project_html, project_json_bytes
from eggproxy.sources.aggregate import build_sources
from eggproxy.sources.local import LocalSource
from eggproxy.sources.remote import make_session

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
        # Our name in the Via header of upstream requests: how a loop is seen.
        self.name = loops.pseudonym(config)
        # Overwrite the session for testing, or to configure proxies and TLS.
        self.sources = build_sources(config, session or make_session(), via=self.name)
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

    def is_loop(self, via: str | None) -> bool:
        """Whether a request with this ``Via`` header came through this eggproxy already.

        Answered 508 by the front ends: serving it would ask ourselves again.
        """
        return loops.is_loop(via, self.name)

    def close(self) -> None:
        """Abort downloads still running (their partial files are removed)."""
        self.downloader.shutdown()

    def due(self, max_age_seconds: float) -> list[NormalizedName | None]:
        """Cached pages older than ``max_age_seconds`` (``None`` is the root page).

        The same freshness rule as serving, with ``max_age_seconds`` as the TTL.
        """
        now = self.clock()
        pages: list[NormalizedName | None] = [None, *self.cache.cached_projects()]
        return [
            project
            for project in pages
            if freshness(self.cache.page_mtime(project), max_age_seconds, now) is Freshness.STALE
        ]

    def cached_pages(self) -> int:
        """How many pages (the root page and projects) the cache holds."""
        root = self.cache.page_mtime(None) is not None
        return len(self.cache.cached_projects()) + root

    # --- pages ---------------------------------------------------------------

    def fresh_page(self, project: NormalizedName | None, fmt: Format) -> PageResult | None:
        """The page if it is cached and fresh: one ``stat``, never blocks on I/O."""
        return self._lookup(project, fmt)[0]

    def _lookup(
        self, project: NormalizedName | None, fmt: Format
    ) -> tuple[PageResult | None, float | None]:
        """The fresh page, else ``None`` and the mtime of the stale one (``None``: missing)."""
        path = self.cache.page_path(project, fmt)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None, None
        ttl, now = self.config.index_ttl, self.clock()
        if freshness(st.st_mtime, ttl, now) is not Freshness.FRESH:
            return None, st.st_mtime
        # Files dropped into a local folder appear on the next request.
        if self._local and any(s.changed_since(st.st_mtime) for s in self._local):
            return None, st.st_mtime
        return PageResult(path, "hit", int(ttl - (now - st.st_mtime)), stat=st), st.st_mtime

    def page(self, project: NormalizedName | None, fmt: Format) -> PageResult:
        """Return the cached page of ``project`` (``None``: the root page).

        A fresh page never contacts the upstream.  A stale one is
        revalidated; if the upstream fails, the stale page is served with a
        warning, because the cache is most valuable when the link is bad.
        """
        fresh, mtime = self._lookup(project, fmt)
        if fresh is not None:
            return fresh
        lock = self._page_lock(project)
        if mtime is None:
            with self.cache.lock(lock):  # one fetch, however many ask at once
                return self._page_locked(project, fmt)
        with self.cache.try_lock(lock) as held:
            if held:
                return self._page_locked(project, fmt)
        # Another request is revalidating this page right now: rather than queue
        # behind it (for up to the timeout when the link is bad), serve it stale.
        path = self.cache.page_path(project, fmt)
        return PageResult(path, "stale", 0, warning="being revalidated")

    def _page_locked(self, project: NormalizedName | None, fmt: Format) -> PageResult:
        # Another thread or process may have refreshed it while we waited.
        fresh, _mtime = self._lookup(project, fmt)
        if fresh is not None:
            return fresh
        snapshot = self.cache.snapshot(project)
        try:
            changed = self._refresh_locked(project, snapshot)
        except UpstreamError as exc:
            if not snapshot.cached:
                raise
            log.warning("serving stale page of %s: %s", project or "root", exc)
            return PageResult(self.cache.page_path(project, fmt), "stale", 0, warning=str(exc))
        outcome: Outcome = "revalidated" if snapshot.cached and not changed else "miss"
        return PageResult(self.cache.page_path(project, fmt), outcome, self.config.index_ttl)

    def refresh(self, project: NormalizedName | None) -> bool:
        """Revalidate a page now, whatever its age; return whether it changed."""
        with self.cache.lock(self._page_lock(project)):
            return self._refresh_locked(project, self.cache.snapshot(project))

    def _page_lock(self, project: NormalizedName | None) -> Path:
        # Page locks live apart, so that asking for a project that does not
        # exist upstream leaves no directory behind.
        return self.cache.root / ".locks" / (project or "_root")

    def _refresh_locked(self, project: NormalizedName | None, old: Snapshot) -> bool:
        # Without a complete cached page, a 304 would leave us nothing to serve.
        etag = old.state.etag if old.state is not None and old.complete else None
        started = self.clock()
        fetched = (
            self.sources.fetch_project(project, etag)
            if project is not None
            else self.sources.fetch_index(etag)
        )
        if fetched.page is None:  # 304 Not Modified
            self.cache.touch_page(project, started)
            return False
        previous = old.state.serial if old.state is not None else None
        if previous and fetched.serial and fetched.serial < previous:
            # A mirror behind the one we saw last time: keep the newer page.
            raise UpstreamError(
                f"upstream serial went backwards ({fetched.serial} < {previous})",
                url=fetched.url,
            )
        page = fetched.page
        if isinstance(page, ProjectPage):
            html, json_page = project_html(page), project_json_bytes(page)
            upstream: bytes | None = project_json_bytes(page, relative=False)
        else:
            html, json_page, upstream = index_html(page), index_json_bytes(page), None
        # Both stored JSON copies: a file moved to another host changes only the upstream copy.
        digest = hashlib.sha256(json_page + b"\0" + (upstream or b"")).hexdigest()
        state = PageState(url=fetched.url, etag=fetched.etag, serial=fetched.serial, digest=digest)
        if old.complete and old.state is not None and old.state.digest == digest:
            # The same bytes again (an upstream without ETags): unchanged, as on a 304.
            if state != old.state:
                self.cache.write_state(project, state)
            self.cache.touch_page(project, started)
            return False
        self.cache.write_page(
            project, html=html, json_page=json_page, upstream=upstream, state=state, fetched=started
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

    def cached_file(
        self, project: NormalizedName, filename: str
    ) -> tuple[Path, os.stat_result] | None:
        """The cached file and its ``stat`` (one call), or ``None`` on a miss."""
        path = self.cache.file_path(project, filename)
        try:
            return path, path.stat()
        except FileNotFoundError:
            return None

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
            return Wanted(dist.url, target, dist.hashes, opener, dist.size)
        # PEP 658: the metadata file, verified against the page's metadata hash.
        if not dist.core_metadata:
            raise FileNotListed(project, filename)
        hashes = dist.core_metadata if isinstance(dist.core_metadata, Mapping) else {}
        return Wanted(dist.metadata_url, target, hashes, opener)

    def _listed(self, project: NormalizedName, filename: str) -> DistFile:
        page = self._upstream_page(project)
        dist = page.file(filename) if page is not None else None
        if dist is not None:
            return dist
        if page is not None and self.fresh_page(project, "json") is not None:
            raise FileNotListed(project, filename)  # a fresh page knows
        # Not cached, or a stale page may predate the file: ask upstream.
        if page is None and self.cache.page_mtime(project) is not None:
            self.refresh(project)  # pages cached but their upstream copy lost
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
