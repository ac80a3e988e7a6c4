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
import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn

import requests
from packaging.utils import canonicalize_name

from eggproxy import __version__, failures, loops
from eggproxy.background import Background
from eggproxy.blocklist import Blocklist
from eggproxy.cache import UPSTREAM, Cache, Freshness, PageState, Snapshot, freshness
from eggproxy.config import Config
from eggproxy.diskspace import DiskSpace, disk_space
from eggproxy.download import Downloader, Follower, Wanted
from eggproxy.errors import (
    EggproxyError,
    FileBlocked,
    FileHeld,
    FileNotListed,
    FileWithheld,
    InsufficientStorage,
    MalformedPage,
    ProjectNotFound,
    UpstreamError,
    UpstreamUnavailable,
)
from eggproxy.flights import Flights
from eggproxy.inventory import Inventory, scan
from eggproxy.mediatypes import Format
from eggproxy.metrics import OUTCOMES, CacheUsage, Kind, Metrics, NullMetrics, Served
from eggproxy.model import DistFile, ProjectPage
from eggproxy.names import METADATA_SUFFIX, PROVENANCE_SUFFIX, NormalizedName
from eggproxy.negative import NegativeCache
from eggproxy.parse import iter_index_json, project_from_json
from eggproxy.parsedpages import ParsedPages, identity
from eggproxy.policy import Policy, View, Withheld, iso, offered
from eggproxy.powerloss import first_start_since_boot, torn_pages
from eggproxy.prune import PruneReport, prune
from eggproxy.purge import Purger
from eggproxy.render import (
    index_pages,
    page_versions,
    project_html,
    project_json_bytes,
    project_json_pair,
)
from eggproxy.routes import FileRoute, Redirect, Route
from eggproxy.sources.aggregate import build_sources
from eggproxy.sources.base import CHUNK_SIZE, Fetched
from eggproxy.sources.local import LocalSource
from eggproxy.sources.remote import make_session
from eggproxy.usage import ServedLog
from eggproxy.verified import store_verified
from eggproxy.verify import VerifyReport, verify

USAGE_MAX_AGE = 10.0  # seconds a measured cache size is reused by scrapes and the status page
FLIGHT_WAIT = 60.0  # seconds at least a thread waits for another's page miss, then the lock

log = logging.getLogger(__name__)

# "rendered": fresh, but rendered again from the stored copy (a hold ended, the policy changed).
Outcome = Literal["hit", "miss", "revalidated", "stale", "rendered"]
# A cached page and its fetch time, as ``eggproxy export`` and ``import`` see it.
CachedPage = tuple[ProjectPage, float]


@dataclass(frozen=True)
class PageResult:
    """A page ready to serve from disk, and how we got it."""

    path: Path
    outcome: Outcome
    max_age: int  # seconds of freshness left, for Cache-Control
    warning: str | None = None  # set when a stale page is served
    stat: os.stat_result | None = None  # of ``path``, when already taken
    source: str | None = None  # the source asked for it, if one was
    upstream_seconds: float | None = None  # how long asking it took
    age: int | None = None  # seconds since it was fetched, when served stale (RFC 9111 Age)


@dataclass
class SerialPlan:
    """What the root page's serials say of the cached projects."""

    check: list[NormalizedName] = field(default_factory=list)  # fetch these again
    unchanged: list[NormalizedName] = field(default_factory=list)  # marked revalidated


@dataclass(frozen=True)
class FileResult:
    """A file to serve: already on disk (``path``) or arriving (``stream``)."""

    path: Path
    outcome: Literal["hit", "miss"]
    size: int
    stream: Follower | None = None  # None: complete on disk at ``path``
    source: str | None = None  # the source it comes from, on a miss
    upstream_seconds: float | None = None  # until the download's size was known


class Proxy:
    """An on-demand caching proxy of its configured sources (one upstream by default)."""

    def __init__(
        self,
        config: Config,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        metrics_dir: Path | None = None,
        *,
        spares: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock
        self.started = clock()
        # Spare inodes (eggproxy.spares) for a front end that runs for long, not a command.
        self.cache = Cache(config.cache_dir, spares=spares)
        # Our name in the Via header of upstream requests: how a loop is seen.
        self.name = loops.pseudonym(config)
        # Counting is on where a front end gives it a directory (serve, Apache's metrics_dir).
        names = [source.name for source in config.effective_sources]
        self.metrics: NullMetrics = NullMetrics()
        if metrics_dir is not None and config.metrics:
            try:
                self.metrics = Metrics(metrics_dir, names, clock)
            except OSError as exc:  # e.g. not writable by Apache's user: serve, uncounted
                log.warning("metrics off: cannot write %s: %s", metrics_dir, exc)
        # Overwrite the session for testing, or to configure proxies and TLS.
        session = session or make_session()
        self.sources = build_sources(config, session, via=self.name, metrics=self.metrics)
        # Tiers in front told of changed pages (issue 12); none configured: no requests.
        self._purger = Purger(config.purge_urls, config.prefix, session, config.timeout)
        self._local: list[LocalSource] = [
            s for s in self.sources.local_sources() if isinstance(s, LocalSource)
        ]
        self.downloader = Downloader(self.cache, metrics=self.metrics)
        # Last service of each file, for the cache limit (only kept when there is one).
        self.usage = ServedLog(config.cache_dir, clock=clock)
        self._track = config.max_cache_size is not None
        self._measured: tuple[float, Inventory] | None = None
        self._negative = NegativeCache(self.cache.root, config.negative_ttl)
        self._ahead = config.refresh_ahead > 0
        self._served_pages: dict[NormalizedName, int] = {}  # served lately (refresh_ahead)
        self._background = Background()
        blocklist = Blocklist(config.blocklist) if config.blocklist is not None else None
        self.policy = Policy(config, blocklist, clock)
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._parsed = ParsedPages()  # stored upstream copies, parsed once
        self._flights = Flights()  # page misses being fetched by a thread of this process

    def prepare(self) -> None:
        """Create or check the cache directory and clean what a crash left.

        Also renders every cached page again (from its stored copy, without
        asking upstream) when the policy changed since they were rendered.
        """
        self.cache.prepare()
        self._drop_torn_pages()
        removed = self.cache.clean_partials()
        if removed:
            log.info("removed %d leftover partial files", removed)
        if self.policy.blocklist is not None:
            self.policy.blocklist.load()
        fingerprint = self.policy.fingerprint()
        recorded = self.cache.read_policy()
        if recorded is None and not self.policy.timed:
            # Pages rendered before fingerprints were kept, with the rules of then.
            self.cache.write_policy(fingerprint)
        elif recorded != fingerprint:
            projects = self.cache.cached_projects()
            for project in projects:
                self._rerender_now(project)
            self.cache.write_policy(fingerprint)
            if projects:
                log.info("policy changed: rendered %d cached page(s) again", len(projects))

    def _drop_torn_pages(self) -> None:
        """At the first start after a boot: remove pages a power loss tore (powerloss.py)."""
        since = first_start_since_boot(self.cache.root)
        if since is None:
            return
        for directory in torn_pages(self.cache.root, since):
            if directory == self.cache.root:
                for fmt in ("html", "json"):
                    self.cache.page_path(None, fmt).unlink(missing_ok=True)
            else:
                self.cache.remove_page(NormalizedName(directory.name))
            log.warning("removed the torn pages of %s (power loss?): fetched again", directory.name)

    def is_loop(self, via: str | None) -> bool:
        """Whether a request with this ``Via`` header came through this eggproxy already.

        Answered 508 by the front ends: serving it would ask ourselves again.
        """
        return loops.is_loop(via, self.name)

    def close(self) -> None:
        """Abort downloads still running (their partial files are removed); write counts."""
        self._background.close()
        self.downloader.shutdown()
        self.metrics.close()
        self.usage.close()
        self.cache.close()

    # --- operating it (docs/decisions/0010) ------------------------------------

    def served(self, target: Route, outcome: str, nbytes: int) -> None:
        """A front end answered ``target``: count it, and note when a file was served.

        ``outcome`` is the access log's word (hit, miss, revalidated, stale,
        error; anything else, e.g. a response cut short, counts as an error).
        Cheap enough for every hit: a dict update, and a dict lookup for files.
        """
        kind: Kind
        if isinstance(target, FileRoute):
            kind = "metadata" if target.filename.endswith(METADATA_SUFFIX) else "file"
            if self._track and (outcome == "hit" or outcome == "miss"):
                self.usage.touch(target.project, target.filename)
        elif isinstance(target, Redirect):
            return
        else:
            kind = "page"
        if outcome == "hit":  # the common case: nothing more to say
            self.metrics.served(kind, "hit", nbytes)
            return
        counted: Served = outcome if outcome in OUTCOMES else "error"
        if outcome == "miss":
            self._measured = None  # the cache grew
        if isinstance(target, FileRoute):
            what = f"{target.project}/{target.filename}"
        else:
            what = getattr(target, "project", None) or "/"
        self.metrics.served(kind, counted, nbytes, what)

    def inventory(self, max_age: float = 0.0) -> Inventory:
        """What the cache holds (one walk; reused for ``max_age`` seconds)."""
        now = time.monotonic()
        measured = self._measured
        if measured is not None and now - measured[0] < max_age:
            return measured[1]
        inventory = scan(self.cache.root)
        self._measured = (now, inventory)
        return inventory

    def cache_usage(self, max_age: float = USAGE_MAX_AGE) -> CacheUsage:
        return self.inventory(max_age).usage

    def metrics_text(self, directory: Path | None = None) -> bytes | None:
        """The Prometheus text exposition of every process's counts; ``None``: metrics off.

        ``directory``: read another metrics directory (``eggproxy metrics`` reading
        what Apache's or the server's processes wrote) instead of our own.
        """
        from eggproxy.metrics import exposition, mark_dead

        if directory is None:
            directory = self.metrics.directory
            self.metrics.flush()
        else:
            mark_dead(directory)
        if directory is None:
            return None
        return exposition(directory, self.cache_usage())

    def status(self) -> dict[str, Any]:
        """What the status page shows (``/+status``), as plain data."""
        from eggproxy.status import build_status

        self.metrics.flush()
        return build_status(
            self.config,
            version=__version__,
            started=self.started,
            now=self.clock(),
            usage=self.cache_usage(),
            directory=self.metrics.directory,
            urls={s.name: s.url or str(s.path) for s in self.config.effective_sources},
            disk=self._disk_or_none(),
        )

    def _disk_or_none(self) -> DiskSpace | None:
        try:
            return self.disk_free()
        except OSError:
            return None

    def prune(self) -> PruneReport | None:
        """Evict least recently served files if the cache is over ``max_cache_size``."""
        limit = self.config.max_cache_size
        if limit is None:
            return None
        self.usage.flush()
        report = prune(self.cache, self.usage, limit)
        if report.evicted:
            self.metrics.evicted(report.evicted, report.evicted_bytes)
            self._measured = None
        return report

    def verify(
        self,
        projects: list[NormalizedName] | None = None,
        *,
        jobs: int = 1,
        progress: Callable[[int], object] | None = None,
    ) -> VerifyReport:
        """Hash cached files again; quarantine those that do not match their page."""
        return verify(self.cache, projects, jobs=jobs, progress=progress)

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

    def cached_pages(self) -> int:
        """How many pages (the root page and projects) the cache holds."""
        root = self.cache.page_mtime(None) is not None
        return len(self.cache.cached_projects()) + root

    # --- pages ---------------------------------------------------------------

    def fresh_page(self, project: NormalizedName | None, fmt: Format) -> PageResult | None:
        """The page if it is cached and fresh: one ``stat``, never blocks on I/O."""
        result = self._lookup(project, fmt)[0]
        if result is not None and self._ahead and project is not None:
            self._served_pages[project] = result.max_age  # refresh_ahead: one dict store
        return result

    def refresh_ahead(self) -> int:
        """Revalidate in the background the pages served lately that are about to go stale.

        ``refresh_ahead`` seconds before a page served since the last call
        goes stale, it is revalidated (once, conditionally), so that the next
        client finds it fresh instead of stale.  Returns how many were queued.
        """
        served, self._served_pages = self._served_pages, {}
        queued = 0
        for project in served:
            mtime = self.cache.page_mtime(project)
            if mtime is None:
                continue
            left = self.config.index_ttl - (self.clock() - mtime)
            if 0 < left <= self.config.refresh_ahead:
                job = functools.partial(self._revalidate_ahead, project)
                queued += self._background.submit(project, job)
            elif left > self.config.refresh_ahead:
                self._served_pages.setdefault(project, int(left))  # look again later
        return queued

    def _revalidate_ahead(self, project: NormalizedName) -> None:
        """A revalidation of a page still fresh (refresh_ahead), under its lock."""
        with self.cache.try_lock(self._page_lock(project)) as held:
            if not held:
                return
            try:
                self._refresh_locked(project, self.cache.snapshot(project))
            except EggproxyError as exc:  # the page stays as it is, and goes stale as usual
                log.warning("refreshing %s ahead failed: %s", project, exc)

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
        return PageResult(
            path, "hit", self._max_age(ttl - (now - st.st_mtime)), stat=st
        ), st.st_mtime

    def _max_age(self, left: float) -> int:
        """Seconds an HTTP cache in front (mod_cache, nginx) may reuse a page unasked.

        A file dropped into a local folder must appear on the next request, which only
        eggproxy can notice: with a local source, caches in front must ask every time.
        """
        return 0 if self._local else max(0, round(left))

    def page(self, project: NormalizedName | None, fmt: Format) -> PageResult:
        """Return the cached page of ``project`` (``None``: the root page).

        A fresh page never contacts the upstream.  A stale one within
        ``stale_while_revalidate`` seconds past its TTL is answered at once
        and revalidated in the background (RFC 5861); an older one is
        revalidated while the caller waits.  If the upstream fails, the
        stale page is served with a warning, because the cache is most
        valuable when the link is bad.
        """
        self.check_policy()
        fresh, mtime = self._lookup(project, fmt)
        if fresh is not None:
            return fresh
        if mtime is None:
            return self._fetch_page(project, fmt)
        if project is not None and self._only_policy_stale(self.cache.snapshot(project)):
            # A hold ended before the TTL did: rendering it again asks no upstream.
            with self.cache.try_lock(self._page_lock(project)) as held:
                if held:
                    return self._page_locked(project, fmt)
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
        flight = self._flights.begin(project)
        if flight is None:  # we fetch; threads asking meanwhile wait for our pages
            try:
                with self.cache.lock(self._page_lock(project)):
                    return self._page_locked(project, fmt, waiting_since)
            finally:
                self._flights.land(project)
        # Another thread of this process fetches it: answered once its pages are in place.
        flight.wait(max(FLIGHT_WAIT, 4 * self.config.timeout))
        fresh = self._lookup(project, fmt)[0]
        if fresh is not None:
            return fresh
        # It failed (or found nothing): the lock's path shares its answer (failures, negative).
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
        if project is not None and self._only_policy_stale(snapshot):
            # A hold ended before the TTL did: render again, without asking upstream.
            max_age = self._rerender(project, snapshot.state)
            if max_age is not None:
                return PageResult(self.cache.page_path(project, fmt), "rendered", max_age)
        started = time.perf_counter()
        source = self._page_source()
        marked = True  # a failure marker may be there (unless checked, under this lock)
        if not snapshot.cached and waiting_since is not None:
            # The fetch we waited on found nothing, or failed: share its answer.
            if project is not None and self._negative.known_missing(project, self.clock()):
                raise ProjectNotFound(project)
            marked = failures.check(lock, waiting_since, time.time())
        try:
            changed = self._refresh_locked(project, snapshot)
        except ProjectNotFound:
            if project is not None and not snapshot.cached:
                self._negative.remember(project, self.clock())
            if project is None or self.cache.page_mtime(project) is None:
                raise
            # Within gone_grace: a 404 may be a hiccup or a takedown under review.
            warning = "project not found upstream; served from the cache"
            path = self.cache.page_path(project, fmt)
            return PageResult(path, "stale", 0, warning, age=self._age(snapshot))
        except (UpstreamError, InsufficientStorage) as exc:
            failures.record(lock, exc, time.time())
            if not snapshot.cached:
                raise
            log.warning("serving stale page of %s: %s", project or "root", exc)
            path = self.cache.page_path(project, fmt)
            seconds = time.perf_counter() - started
            return PageResult(
                path, "stale", 0, str(exc), None, source, seconds, age=self._age(snapshot)
            )
        if marked:
            failures.clear(lock)
        outcome: Outcome = "revalidated" if snapshot.cached and not changed else "miss"
        seconds = time.perf_counter() - started
        # Less than the TTL when a held file is due sooner (see _stamp).
        mtime = self.cache.page_mtime(project)
        left = self.config.index_ttl - (self.clock() - mtime) if mtime else self.config.index_ttl
        path = self.cache.page_path(project, fmt)
        return PageResult(path, outcome, self._max_age(left), None, None, source, seconds)

    def _page_source(self) -> str:
        """The source a page is asked of (the first; several when aggregating)."""
        if self.sources.single:
            return self.sources.entries[0].source.name
        return "+".join(e.source.name for e in self.sources.entries)

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
            if project is not None and self._only_policy_stale(snapshot):
                self._rerender(project, snapshot.state)  # a hold ended: no upstream needed
                return
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
        since = old.state.last_modified if old.state is not None and old.complete else None
        started = self.clock()
        if project is None:
            return self._refresh_root(old, etag, started)
        try:
            fetched = self.sources.fetch_project(project, etag, since=since)
        except ProjectNotFound:
            if old.cached:
                self._gone(project, old, started)
            raise
        if fetched.page is None:  # 304 Not Modified
            self._revalidated(project, started)
            return False
        _check_serial(old, fetched.serial, fetched.url)
        previous = self._upstream_page(project) if old.has_upstream else None
        page = self._keep_removed(project, fetched.page, previous)
        page = _first_seen(page, previous, old.mtime if previous is not None else None, started)
        view = self._view(project, page)
        html = project_html(view.page)
        json_page, upstream = project_json_pair(view.page, page)  # one pass when all is offered
        stamp = self._stamp(started, view)
        # What the next file miss would parse from the copy just written: the stored copy has
        # the normalised name and PEP 700 versions (tests/unit/test_parsedpages.py: round trip).
        stored = replace(
            page, name=canonicalize_name(page.name), versions=tuple(page_versions(page))
        )
        copy = self.cache.project_dir(project) / UPSTREAM

        def published() -> None:  # the pages are in place: remember the copy, answer waiters
            self._parsed.put(project, identity(copy), stored)
            self._flights.land(project)

        changed = self._write(
            project, html, json_page, upstream, fetched, old, started, stamp, published
        )
        if not changed:  # not rewritten: the copy on disk has the same bytes
            self._parsed.put(project, identity(copy), stored)
        return changed

    def _view(self, project: NormalizedName, page: ProjectPage) -> View:
        """What the policy offers of ``page`` now; files not offered leave the URL space."""
        view = self.policy.view(page)
        # Before the page stops listing them (a static server in front sees the disk).
        self._place_files(project, page, view.page)
        return view

    def _stamp(self, fetched: float, view: View) -> float:
        """The pages' mtime: fresh until the TTL ends or the next held file is due.

        A page hit stays one ``stat``: a page whose next hold ends within its
        TTL gets an earlier mtime, so it turns stale exactly when the hold
        ends, and is then rendered again from the stored copy.
        """
        if view.next_release is None:
            return fetched
        return min(fetched, view.next_release - self.config.index_ttl)

    def _only_policy_stale(self, snapshot: Snapshot) -> bool:
        """Stale only because a hold ended: the last fetch is still within the TTL."""
        state = snapshot.state
        if not snapshot.complete or state is None or state.fetched is None:
            return False
        if state.held_until is None or snapshot.mtime is None:
            return False
        if abs(snapshot.mtime - (state.held_until - self.config.index_ttl)) > 1:
            return False  # the pages' time was changed since (revalidated, aged)
        if self.clock() - state.fetched >= self.config.index_ttl:
            return False
        return not any(s.changed_since(state.fetched) for s in self._local)

    def _revalidated(self, project: NormalizedName, at: float) -> None:
        """The upstream says the page did not change (304, or the root's serial)."""
        state = self.cache.read_state(project)
        if state is not None:
            self.cache.write_state(project, replace(state, fetched=at))
        if not self.policy.timed or self._rerender(project, state, at) is None:
            self.cache.touch_page(project, at)

    def _rerender(
        self, project: NormalizedName, state: PageState | None, fetched: float | None = None
    ) -> int | None:
        """Render the pages again from the stored copy (no upstream request).

        Returns the seconds of freshness left, or ``None`` without a stored copy.
        The caller holds the page lock.
        """
        page = self._upstream_page(project)
        if page is None:
            return None
        now = self.clock()
        if fetched is None:  # pages cached before the fetch time was kept: their mtime
            fetched = state.fetched if state is not None and state.fetched else None
            fetched = fetched or self.cache.page_mtime(project) or now
        view = self._view(project, page)
        stamp = self._stamp(fetched, view)
        held_until = _held_until(fetched, stamp, self.config.index_ttl)
        self.cache.write_page(
            project,
            html=project_html(view.page),
            json_page=project_json_bytes(view.page),
            upstream=None,
            state=replace(state or PageState(url=""), fetched=fetched, held_until=held_until),
            fetched=stamp,
        )
        self._purger.changed(project)  # a hold ended or the blocklist changed
        return max(0, int(self.config.index_ttl - (now - stamp)))

    def _rerender_now(self, project: NormalizedName) -> None:
        with self.cache.lock(self._page_lock(project)):
            state = self.cache.read_state(project)
            if self.cache.page_mtime(project) is not None:
                self._rerender(project, state)

    def check_policy(self) -> int:
        """Reload the blocklist if its folder changed; withhold what it now blocks.

        Cheap when nothing changed (at most one look at the folder every few
        seconds).  Returns how many cached pages were rendered again.  Called
        by the standalone server in the background, and on requests that
        reach Python (Apache), so that a new record blocks a cached file on
        the next request, without a restart.
        """
        blocklist = self.policy.blocklist
        if blocklist is None:
            return 0
        changed = blocklist.reload_if_changed()
        if not changed:
            return 0
        cached = set(self.cache.cached_projects())
        affected = sorted(p for p in changed if p in cached)
        for project in affected:
            self._rerender_now(project)
        self.cache.write_policy(self.policy.fingerprint())
        if affected:
            log.warning("blocklist changed: rendered %d cached page(s) again", len(affected))
        return len(affected)

    def policy_check_due(self) -> bool:
        """Whether :meth:`check_policy` would look at the blocklist folder now (no I/O)."""
        blocklist = self.policy.blocklist
        return blocklist is not None and blocklist.due()

    def audit(self, purge: bool = False) -> list[tuple[NormalizedName, str, str]]:
        """Cached files a deny entry or blocklist record names: (project, file, record).

        Reads the blocklist afresh; ``purge`` deletes those files (offered or
        withheld) and renders their pages again.
        """
        if self.policy.blocklist is not None:
            self.policy.blocklist.load()
        found: list[tuple[NormalizedName, str, str]] = []
        for project in self.cache.cached_projects():
            if not self.policy.names(project):
                continue
            directory = self.cache.project_dir(project)
            names = {p.name for p in directory.iterdir() if not p.name.startswith(".")}
            names |= set(self.cache.withheld_files(project))
            for filename in sorted(names):
                if filename.endswith((METADATA_SUFFIX, PROVENANCE_SUFFIX)) or filename in (
                    "index.html",
                    "index.json",
                ):
                    continue
                why = self.policy.blocked(project, filename)
                if why is None or why.record is None:
                    continue
                found.append((project, filename, why.record))
                if purge:
                    self.cache.remove_file(project, filename)
                    log.warning("purged %s of %s (%s)", filename, project, why.record)
            self._rerender_now(project)
        self.cache.write_policy(self.policy.fingerprint())
        return found

    def policy_counts(self) -> dict[str, int]:
        """Requests answered held or blocked so far by this process (for metrics, status)."""
        with self._counts_lock:
            return dict(self._counts)

    def _count(self, mark: str) -> None:
        with self._counts_lock:
            self._counts[mark] += 1

    def _write(
        self,
        project: NormalizedName,
        html: bytes,
        json_page: bytes,
        upstream: bytes,
        fetched: Fetched[ProjectPage],
        old: Snapshot,
        started: float,
        stamp: float,
        published: Callable[[], None],
    ) -> bool:
        """Store a fetched page; ``False`` when its bytes are those cached (not rewritten).

        ``published`` is called once the new pages are in place, before the state.
        """
        # Both stored JSON copies: a file moved to another host changes only the upstream copy.
        digest = hashlib.sha256(json_page + b"\0" + upstream).hexdigest()
        state = PageState(
            url=fetched.url,
            etag=fetched.etag,
            serial=fetched.serial,
            last_modified=fetched.last_modified,
            digest=digest,
            fetched=started,
            held_until=_held_until(started, stamp, self.config.index_ttl),
        )
        if old.complete and old.state is not None and old.state.digest == digest:
            # The same bytes again (an upstream without ETags): unchanged, as on a 304.
            if state != old.state:
                self.cache.write_state(project, state)
            self.cache.touch_page(project, stamp)
            return False
        self.cache.write_page(
            project,
            html=html,
            json_page=json_page,
            upstream=upstream,
            state=state,
            fetched=stamp,
            published=published,
        )
        log.info("fetched page of %s from %s", project, fetched.url)
        self._purger.changed(project)
        return True

    def _refresh_root(self, old: Snapshot, etag: str | None, started: float) -> bool:
        """Stream the root page from its source to disk: never held whole in memory."""
        fetched = self.sources.fetch_index(etag)
        if fetched.page is None:  # 304 Not Modified
            self.cache.touch_page(None, started)
            return False
        with fetched.page as listing:
            _check_serial(old, fetched.serial, fetched.url)
            state = PageState(url=fetched.url, etag=fetched.etag, serial=fetched.serial)
            self.cache.write_root(
                index_pages(listing, lambda: listing.last_serial), state=state, fetched=started
            )
        log.info("fetched the root page from %s", fetched.url)
        self._purger.changed(None)
        return True

    def _keep_removed(
        self, project: NormalizedName, page: ProjectPage, previous: ProjectPage | None
    ) -> ProjectPage:
        """Add the cached files the upstream stopped listing, marked ``removed``."""
        if previous is None:
            return page
        listed = {f.filename for f in page.files}
        now = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kept = [
            f if f.removed else f.marked(removed=now)
            for f in previous.files
            if f.filename not in listed
            and (
                self.cache.file_path(project, f.filename).exists()
                or self.cache.is_withheld(project, f.filename)
            )
        ]
        for dist in kept:
            if dist.removed == now:
                log.warning("%s of %s was removed from the upstream index", dist.filename, project)
        return replace(page, files=(*page.files, *kept)) if kept else page

    def _place_files(self, project: NormalizedName, page: ProjectPage, view: ProjectPage) -> None:
        """Withhold cached files the view no longer offers; restore those it offers again."""
        shown = {f.filename for f in view.files}
        hidden = [f.filename for f in page.files if f.filename not in shown]
        moved = self.cache.withhold(project, hidden)
        if moved:
            log.warning(
                "withheld %d cached file(s) of %s: %s", len(moved), project, ", ".join(moved)
            )
        self.cache.restore(project, sorted(shown))

    def _gone(self, project: NormalizedName, old: Snapshot, now: float) -> None:
        """The upstream answered 404 for a cached project: remember since when; expire it."""
        state = old.state or PageState(url="")
        since = state.gone_since if state.gone_since is not None else now
        if now - since < self.config.gone_grace:
            if state.gone_since is None:
                self.cache.write_state(project, replace(state, gone_since=since))
            return
        page = self._upstream_page(project)
        if page is not None:
            self.cache.withhold(project, [f.filename for f in page.files])
        self.cache.remove_page(project)
        log.warning("removed the pages of %s: not found upstream since %s", project, since)

    def serial_plan(self, projects: list[NormalizedName]) -> SerialPlan | None:
        """Which cached projects changed, by the PEP 691 root page's ``_last-serial``.

        Reads the cached root page (fetched first if it is not cached; the
        caller refreshes it when due).  One root request (conditional) instead
        of one request per project:
        a project whose serial on the root equals the one cached has not
        changed, and its pages are marked revalidated as of the root's fetch.
        ``None`` when the source offers no serials (or there are several
        sources, whose serials say nothing of the union): revalidate each page.
        """
        if not self.sources.single or self.sources.entries[0].source.is_local:
            return None
        started = self.clock()
        if self.cache.page_mtime(None) is None:  # not cached yet: fetch it once
            try:
                self.refresh(None)
            except EggproxyError as exc:
                log.warning("root page not refreshed (%s): checking each page", exc)
                return None
        fetched_at = self.cache.page_mtime(None) or started
        wanted = set(projects)
        serials: dict[NormalizedName, int | None] = {}
        offered_any = False
        try:
            with open(self.cache.page_path(None, "json"), "rb") as handle:
                for name, serial in iter_index_json(iter(lambda: handle.read(CHUNK_SIZE), b""), {}):
                    offered_any = offered_any or serial is not None
                    key = canonicalize_name(name)
                    if key in wanted:
                        serials[key] = serial
        except (OSError, MalformedPage) as exc:
            log.warning("cached root page unreadable (%s): checking each page", exc)
            return None
        if not offered_any:
            return None
        plan = SerialPlan()
        for project in projects:
            state = self.cache.read_state(project)
            root_serial, cached = serials.get(project), state.serial if state else None
            if root_serial is None or cached is None or root_serial > cached:
                plan.check.append(project)  # changed, missing from the root, or unknown
            else:
                with self.cache.lock(self._page_lock(project)):
                    self._revalidated(project, fetched_at)
                plan.unchanged.append(project)
        return plan

    # --- files ---------------------------------------------------------------

    def file(self, project: NormalizedName, filename: str) -> Path:
        """Make ``filename`` of ``project`` available on disk; return its path.

        Blocks until the file is downloaded and verified (or until another
        process that is downloading it has finished).
        """
        self.check_policy()
        self._check_blocked(project, filename)
        target = self.cache.file_path(project, filename)
        if target.exists():
            return target
        return self.downloader.ensure(self.wanted(project, filename))

    def cached_file(
        self, project: NormalizedName, filename: str
    ) -> tuple[Path, os.stat_result] | None:
        """The cached file and its ``stat`` (one call), or ``None`` on a miss.

        Never reloads anything (the standalone server calls it on its event
        loop); a file that a deny entry or a record names raises FileBlocked
        even before it has left the URL space.
        """
        self._check_blocked(project, filename)
        path = self.cache.file_path(project, filename)
        try:
            return path, path.stat()
        except FileNotFoundError:
            return None

    def open_file(self, project: NormalizedName, filename: str) -> FileResult:
        """Like :meth:`file`, but a miss streams bytes as they arrive."""
        self.check_policy()
        self._check_blocked(project, filename)
        target = self.cache.file_path(project, filename)
        if target.exists():
            return FileResult(target, "hit", target.stat().st_size)
        wanted = self.wanted(project, filename)
        started = time.perf_counter()
        size, stream = self.downloader.stream(wanted)
        seconds = time.perf_counter() - started
        return FileResult(target, "miss", size, stream, wanted.source, seconds)

    def wanted(self, project: NormalizedName, filename: str) -> Wanted:
        """What to download for ``filename``: only a URL the project's page listed."""
        base = filename.removesuffix(METADATA_SUFFIX).removesuffix(PROVENANCE_SUFFIX)
        dist = self._listed(project, base)
        target = self.cache.file_path(project, filename)
        source = self.sources.source(dist.source)
        if filename == base:
            return Wanted(dist.url, target, dist.hashes, source.open_file, dist.size, source.name)
        if filename.endswith(PROVENANCE_SUFFIX):
            # PEP 740 declares no hash of the provenance object: nothing to verify it by.
            if not dist.provenance:
                raise FileNotListed(project, filename)
            return Wanted(
                dist.provenance, target, {}, source.open_file, None, source.name, small=True
            )
        # PEP 658: the metadata file, verified against the page's metadata hash.
        if not dist.core_metadata:
            raise FileNotListed(project, filename)
        hashes = dist.core_metadata if isinstance(dist.core_metadata, Mapping) else {}
        return Wanted(
            dist.metadata_url, target, hashes, source.open_file, None, source.name, small=True
        )

    def _listed(self, project: NormalizedName, filename: str) -> DistFile:
        """The entry of a file the project's page offers, asking upstream if need be."""
        page = self._upstream_page(project)
        dist = self._offered(page, filename)
        if dist is not None:
            return dist  # listed on the cached page, stale or not: no revalidation first
        if page is not None and self.fresh_page(project, "json") is not None:
            self._not_offered(project, filename, page)  # a fresh page knows
        # Not cached, or a stale page may predate the file: ask upstream.
        self._revalidate_for_file(project)
        page = self._upstream_page(project)
        dist = self._offered(page, filename)
        if dist is None:
            self._not_offered(project, filename, page)
        return dist

    def _offered(self, page: ProjectPage | None, filename: str) -> DistFile | None:
        if page is None:
            return None
        dist = page.file(filename)
        if dist is None or self.policy.why(page, dist, self.clock()) is not None:
            return None
        return dist

    def _not_offered(
        self, project: NormalizedName, filename: str, page: ProjectPage | None
    ) -> NoReturn:
        dist = page.file(filename) if page is not None else None
        why = self.policy.why(page, dist, self.clock()) if page and dist else None
        if why is None and page is not None and dist is None:
            why = self.policy.blocked(project, filename)
        if why is not None:
            self._raise_withheld(project, filename, why)
        raise FileNotListed(project, filename)

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
            marked = failures.check(lock, waiting_since, time.time())
            try:
                self._refresh_locked(project, snapshot)
            except ProjectNotFound:
                if not snapshot.cached:
                    self._negative.remember(project, self.clock())
                raise
            except (UpstreamError, InsufficientStorage) as exc:
                failures.record(lock, exc, time.time())
                raise
            if marked:
                failures.clear(lock)

    def _raise_withheld(self, project: NormalizedName, filename: str, why: Withheld) -> NoReturn:
        if why.blocked:
            self._count("blocked")
            raise FileBlocked(project, filename, why.reason, why.record or why.rule)
        if why.until is not None:
            self._count("held")
            raise FileHeld(project, filename, why.reason, why.until)
        raise FileWithheld(project, filename, why.reason)

    def _check_blocked(self, project: NormalizedName, filename: str) -> None:
        """A deny entry or a record names the file: refuse it, cached or not (403)."""
        if self.policy.names(project):  # one dict lookup unless a list names the project
            base = filename.removesuffix(METADATA_SUFFIX).removesuffix(PROVENANCE_SUFFIX)
            why = self.policy.blocked(project, base)
            if why is not None:
                self._raise_withheld(project, filename, why)

    def _upstream_page(self, project: NormalizedName) -> ProjectPage | None:
        path = self.cache.project_dir(project) / UPSTREAM
        page = self._parsed.get(project, path)
        if page is not None:
            return page  # the copy just written or read: not parsed again (issue 13)
        key = identity(path)  # before reading: a copy replaced meanwhile is not remembered
        data = self.cache.read_upstream(project)
        if data is None:
            return None
        try:
            page = project_from_json(data.decode(), "file:///", project)  # URLs are absolute
        except (MalformedPage, UnicodeDecodeError):
            log.warning("broken upstream copy of %s, refetching", project)
            return None
        self._parsed.put(project, key, page)
        return page

    # --- offline sites: eggproxy export / import -------------------------------

    def cached_projects(self) -> list[NormalizedName]:
        """Every project with a cached page."""
        return self.cache.cached_projects()

    def cached_page(self, project: NormalizedName) -> CachedPage | None:
        """The cached page and its fetch time, without asking any source."""
        mtime = self.cache.page_mtime(project)
        if mtime is None:
            return None
        page = self._upstream_page(project)
        if page is None:
            path = self.cache.page_path(project, "json")
            try:
                page = project_from_json(
                    path.read_text(encoding="utf-8"), path.parent.as_uri() + "/", project
                )
            except (OSError, MalformedPage, UnicodeDecodeError):
                return None
        return page, mtime

    def import_file(
        self, project: NormalizedName, filename: str, source: Path, hashes: Mapping[str, str]
    ) -> bool:
        """Copy ``source`` into the cache if it matches ``hashes``; ``False``: already there.

        Raises :class:`~eggproxy.errors.IntegrityError` on a mismatch (nothing is written).
        """
        return store_verified(self.cache, self.cache.file_path(project, filename), source, hashes)

    def import_page(
        self,
        project: NormalizedName,
        merge: Callable[[CachedPage | None], CachedPage | None],
        origin: str,
    ) -> bool:
        """Write ``merge(cached page)`` as the project's page, unless it returns ``None``.

        The page is written stale, whatever its fetch time: an online proxy revalidates it
        on the next request, an offline one serves it stale.  Its state claims no ETag and
        no serial (serials are per index: another index's would look like one going back).
        """
        with self.cache.lock(self._page_lock(project)):
            merged = merge(self.cached_page(project))
            if merged is None:
                return False
            page, fetched = merged
            fetched = min(fetched, self.clock() - self.config.index_ttl)
            view = offered(page, self.config)
            self._place_files(project, page, view)
            self.cache.write_page(
                project,
                html=project_html(view),
                json_page=project_json_bytes(view),
                upstream=project_json_bytes(page, relative=False),
                state=PageState(url=origin),
                fetched=fetched,
            )
        log.info("imported page of %s from %s", project, origin)
        return True


def _held_until(fetched: float, stamp: float, ttl: float) -> float | None:
    """When the pages turn stale for a hold, if that is before the TTL ends."""
    return stamp + ttl if stamp < fetched else None


def _first_seen(
    page: ProjectPage, previous: ProjectPage | None, previous_at: float | None, now: float
) -> ProjectPage:
    """Record when eggproxy first saw each file (its release time if the source gives none).

    A file of the previous copy without the mark (cached before eggproxy kept
    it) was seen at least when that copy was fetched.
    """
    before = iso(previous_at) if previous_at is not None else None
    seen = {f.filename: f.first_seen or before for f in previous.files} if previous else {}
    stamp = iso(now)
    files = tuple(
        f if f.first_seen == (mark := seen.get(f.filename) or stamp) else f.marked(first_seen=mark)
        for f in page.files
    )
    return replace(page, files=files)


def _check_serial(old: Snapshot, serial: int | None, url: str) -> None:
    previous = old.state.serial if old.state is not None else None
    if previous and serial and serial < previous:
        # A mirror behind the one we saw last time: keep the newer page.
        raise UpstreamError(f"upstream serial went backwards ({serial} < {previous})", url=url)
