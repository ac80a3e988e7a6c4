"""``eggproxy_update``: refresh what is cached, for cron.

Every cached page (and the root page, if cached) older than
``update_interval`` is revalidated, a bounded number at a time.  Where the
source's PEP 691 root page gives each project's ``_last-serial``, one
(conditional) request for it tells which cached projects changed, and only
those are fetched again; otherwise each page is revalidated with a
conditional request.  Failures on 5xx and timeouts are retried with
exponential backoff and jitter.  Files are immutable and never fetched again.
What a person watches (a progress bar) is handed in as a :class:`Progress`;
the run itself logs only what went wrong and returns a :class:`Summary`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final, Protocol

from eggproxy.errors import EggproxyError, ProjectNotFound, UpstreamUnavailable
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

log = logging.getLogger(__name__)

ROOT_PAGE: Final = "root page"
BACKOFF: Final = 0.5  # seconds before the first retry; doubled each time, with jitter
# With this many due projects, one root page costs less than a request each.
ROOT_THRESHOLD: Final = 200


class Progress(Protocol):
    """Told how far a run is: the total once, then each page as it is done."""

    def start(self, total: int) -> None: ...

    def done(self, page: str, outcome: str) -> None: ...


@dataclass
class Summary:
    """What one update run did."""

    checked: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    cached: int = 0  # pages in the cache in all, due or not
    gone: list[str] = field(default_factory=list)

    def add(self, result: tuple[NormalizedName | None, str]) -> None:
        """Count one page's outcome: changed, unchanged, failed or gone."""
        project, outcome = result
        self.checked += 1
        if outcome == "gone":
            # Said in the summary line; not a failure cron should mail about.
            log.info("%s is gone from the upstream; its cache is kept", project)
            self.gone.append(str(project))
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def line(self) -> str:
        text = (
            f"checked {self.checked} of {self.cached} cached pages: changed {self.changed}, "
            f"unchanged {self.unchanged}, failed {self.failed}"
        )
        if self.gone:
            text += f"; gone upstream: {', '.join(self.gone)}"
        return text


def update(
    proxy: Proxy,
    *,
    max_age_seconds: float | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Summary:
    """Revalidate every due page; never raises for one page's failure."""
    if max_age_seconds is None:
        max_age_seconds = proxy.config.update_interval * 3600
    if max_age_seconds < 0:
        raise ValueError("max_age_seconds must not be negative")
    summary = Summary(cached=proxy.cached_pages())
    pages = proxy.due(max_age_seconds)
    if progress is not None:
        progress.start(len(pages))
    refresh = _refresher(proxy, sleep)

    def count(result: tuple[NormalizedName | None, str]) -> None:
        summary.add(result)
        if progress is not None:
            progress.done(result[0] or ROOT_PAGE, result[1])

    projects = [p for p in pages if p is not None]
    use_root = proxy.config.update_via_root
    if use_root == "yes" or (use_root == "auto" and len(projects) >= ROOT_THRESHOLD):
        if None in pages:  # the root page first, counted as any page
            count(refresh(None))
            pages = list(projects)
        plan = proxy.serial_plan(projects)
        if plan is not None:
            for project in plan.unchanged:
                count((project, "unchanged"))
            pages = list(plan.check)

    with ThreadPoolExecutor(proxy.config.update_concurrency) as pool:
        for result in pool.map(refresh, pages):
            count(result)
    return summary


def _refresher(
    proxy: Proxy, sleep: Callable[[float], None]
) -> Callable[[NormalizedName | None], tuple[NormalizedName | None, str]]:
    def refresh(project: NormalizedName | None) -> tuple[NormalizedName | None, str]:
        for attempt in range(proxy.config.update_retries + 1):
            try:
                return project, "changed" if proxy.refresh(project) else "unchanged"
            except ProjectNotFound:
                return project, "gone"
            except UpstreamUnavailable as exc:
                if attempt == proxy.config.update_retries:
                    log.warning("update of %s failed: %s", project or ROOT_PAGE, exc)
                    break
                # A busy or flaky upstream: back off, jittered so that threads spread out.
                sleep(BACKOFF * 2**attempt * random.uniform(0.5, 1.5))
            except EggproxyError as exc:
                log.warning("update of %s failed: %s", project or ROOT_PAGE, exc)
                break
        return project, "failed"

    return refresh
