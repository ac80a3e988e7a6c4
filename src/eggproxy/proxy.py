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

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import requests

from eggproxy import failures
from eggproxy.background import Background
from eggproxy.cache import Cache, Freshness, PageState, Snapshot, freshness
from eggproxy.config import Config
from eggproxy.diskspace import DiskSpace, disk_space
from eggproxy.download import Downloader, Wanted
from eggproxy.errors import (
    FileNotListed,
    InsufficientStorage,
    MalformedPage,
    ProjectNotFound,
    UpstreamError,
    UpstreamUnavailable,
)
from eggproxy.mediatypes import Format
from eggproxy.model import DistFile, ProjectPage
from eggproxy.names import METADATA_SUFFIX, NormalizedName
from eggproxy.negative import NegativeCache
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
    age: int | None = None  # seconds since it was fetched, when served stale (RFC 9111 Age)


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
        self._negative = NegativeCache(self.cache.root, config.negative_ttl)
        self._background = Background()

    def prepare(self) -> None:
        """Create or check the cache directory and clean what a crash left."""
        self.cache.prepare()
        removed = self.cache.clean_partials()
        if removed:
            log.info("removed %d leftover partial files", removed)

    def close(self) -> None:
        """Abort downloads still running (their partial files are removed)."""
        self._background.close()
        self.downloader.shutdown()

    def disk_free(self) -> DiskSpace:
        """Free and total bytes of the cache's file system (a full disk answers 507)."""
        return disk_space(self.cache.root)

    def revalidations_pending(self) -> int:
        """Background revalidations queued or running in this process."""
        return self._background.pending()

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

        A fresh page never contacts the upstream.  A stale one within
        ``stale_while_revalidate`` seconds past its TTL is answered at once
        and revalidated in the background (RFC 5861); an older one is
        revalidated while the caller waits.  If the upstream fails, the
        stale page is served with a warning, because the cache is most
        valuable when the link is bad.
        """
        fresh, mtime = self._lookup(project, fmt)
        if fresh is not None:
            return fresh
        if mtime is None:
            return self._fetch_page(project, fmt)
        path = self.cache.page_path(project, fmt)
        age = self.clock() - mtime
        ttl, window = self.config.index_ttl, self.config.stale_while_revalidate
        # (A page within its TTL but behind a local folder's change waits: the
        # files dropped there appear on the next request.)
        if window and ttl <= age < ttl + window:
            self._background.submit(project, functools.partial(self._revalidate, project))
            return PageResult(path, "stale", 0, "revalidating in the background", age=int(age))
        with self.cache.try_lock(self._page_lock(project)) as held:
            if held:
                return self._page_locked(project, fmt)
        # Another request is revalidating this page right now: rather than queue
        # behind it (for up to the timeout when the link is bad), serve it stale.
        return PageResult(path, "stale", 0, warning="being revalidated", age=int(age))

    def _fetch_page(self, project: NormalizedName | None, fmt: Format) -> PageResult:
        """A page not cached: fetch it, once however many ask at once."""
        if project is not None and self._negative.known_missing(project, self.clock()):
            raise ProjectNotFound(project)  # no source knew it a moment ago
        waiting_since = time.time()
        with self.cache.lock(self._page_lock(project)):
            return self._page_locked(project, fmt, waiting_since)

    def _page_locked(
        self, project: NormalizedName | None, fmt: Format, waiting_since: float | None = None
    ) -> PageResult:
        # Another thread or process may have refreshed it while we waited.
        fresh, _mtime = self._lookup(project, fmt)
        if fresh is not None:
            return fresh
        lock = self._page_lock(project)
        snapshot = self.cache.snapshot(project)
        if not snapshot.cached and waiting_since is not None:
            # The fetch we waited on found nothing, or failed: share its answer.
            if project is not None and self._negative.known_missing(project, self.clock()):
                raise ProjectNotFound(project)
            failures.check(lock, waiting_since, time.time())
        try:
            changed = self._refresh_locked(project, snapshot)
        except ProjectNotFound:
            if project is not None and not snapshot.cached:
                self._negative.remember(project, self.clock())
            raise
        except (UpstreamError, InsufficientStorage) as exc:
            failures.record(lock, exc, time.time())
            if not snapshot.cached:
                raise
            log.warning("serving stale page of %s: %s", project or "root", exc)
            return PageResult(
                self.cache.page_path(project, fmt), "stale", 0, str(exc), age=self._age(snapshot)
            )
        failures.clear(lock)
        outcome: Outcome = "revalidated" if snapshot.cached and not changed else "miss"
        return PageResult(self.cache.page_path(project, fmt), outcome, self.config.index_ttl)

    def _age(self, snapshot: Snapshot) -> int | None:
        return None if snapshot.mtime is None else max(0, int(self.clock() - snapshot.mtime))

    def _revalidate(self, project: NormalizedName | None) -> None:
        """A background revalidation (RFC 5861): once, whichever process gets there first."""
        lock = self._page_lock(project)
        with self.cache.try_lock(lock) as held:
            if not held:
                return  # another request or process is revalidating it
            snapshot = self.cache.snapshot(project)
            if freshness(snapshot.mtime, self.config.index_ttl, self.clock()) is Freshness.FRESH:
                return  # revalidated meanwhile by another process
            name = project or "root page"
            try:
                changed = self._refresh_locked(project, snapshot)
            except ProjectNotFound:
                log.warning("%s is gone from the upstream; its cached page is kept", name)
            except (UpstreamError, InsufficientStorage) as exc:
                failures.record(lock, exc, time.time())
                log.warning("background revalidation of %s failed: %s", name, exc)
            else:
                failures.clear(lock)
                outcome = "changed" if changed else "not modified"
                log.info("revalidated %s in the background: %s", name, outcome)

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
        state = PageState(url=fetched.url, etag=fetched.etag, serial=fetched.serial)
        page = fetched.page
        if isinstance(page, ProjectPage):
            html, json_page = project_html(page), project_json_bytes(page)
            upstream: bytes | None = project_json_bytes(page, relative=False)
        else:
            html, json_page, upstream = index_html(page), index_json_bytes(page), None
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
            return dist  # listed on the cached page, stale or not: no revalidation first
        if page is not None and self.fresh_page(project, "json") is not None:
            raise FileNotListed(project, filename)  # a fresh page knows
        # Not cached, or a stale page may predate the file: ask upstream.
        self._revalidate_for_file(project)
        page = self._upstream_page(project)
        dist = page.file(filename) if page is not None else None
        if dist is None:
            raise FileNotListed(project, filename)
        return dist

    def _revalidate_for_file(self, project: NormalizedName) -> None:
        """Bring the page up to date for a file it may list: wait for the revalidation
        in flight (bounded by ``timeout``) and use its result, or do one now.

        Its result decides: a 404 when the fresh page does not list the file, a
        502/504 only when the upstream really failed.
        """
        before = self.cache.page_mtime(project)
        if before is None and self._negative.known_missing(project, self.clock()):
            raise ProjectNotFound(project)
        waiting_since = time.time()
        lock = self._page_lock(project)
        timeout = self.config.timeout
        with self.cache.lock_within(lock, timeout) as held:
            if not held:
                raise UpstreamUnavailable(
                    f"page of {project} still being revalidated after {timeout:g}s", timeout=True
                )
            snapshot = self.cache.snapshot(project)
            if snapshot.complete and snapshot.mtime != before:
                return  # revalidated while we waited: its result answers
            if not snapshot.cached and self._negative.known_missing(project, self.clock()):
                raise ProjectNotFound(project)
            failures.check(lock, waiting_since, time.time())
            try:
                self._refresh_locked(project, snapshot)
            except ProjectNotFound:
                if not snapshot.cached:
                    self._negative.remember(project, self.clock())
                raise
            except (UpstreamError, InsufficientStorage) as exc:
                failures.record(lock, exc, time.time())
                raise
            failures.clear(lock)

    def _upstream_page(self, project: NormalizedName) -> ProjectPage | None:
        data = self.cache.read_upstream(project)
        if data is None:
            return None
        try:
            return project_from_json(data.decode(), "file:///", project)  # URLs are absolute
        except (MalformedPage, UnicodeDecodeError):
            log.warning("broken upstream copy of %s, refetching", project)
            return None
