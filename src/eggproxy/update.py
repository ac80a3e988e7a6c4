"""``eggproxy_update``: refresh what is cached, for cron.

Every cached page (and the root page, if cached) older than
``update_interval`` is revalidated with a conditional request, a bounded
number at a time.  Files are immutable and never fetched again.  What a
person watches (a progress bar) is handed in as a :class:`Progress`; the
run itself logs only what went wrong and returns a :class:`Summary`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from eggproxy.errors import EggproxyError, ProjectNotFound
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

log = logging.getLogger(__name__)

ROOT_PAGE = "root page"


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

    def line(self) -> str:
        text = (
            f"checked {self.checked} of {self.cached} cached pages: changed {self.changed}, "
            f"unchanged {self.unchanged}, failed {self.failed}"
        )
        if self.gone:
            text += f"; gone upstream: {', '.join(self.gone)}"
        return text


def update(
    proxy: Proxy, *, max_age_seconds: float | None = None, progress: Progress | None = None
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

    def refresh(project: NormalizedName | None) -> tuple[NormalizedName | None, str]:
        try:
            return project, "changed" if proxy.refresh(project) else "unchanged"
        except ProjectNotFound:
            return project, "gone"
        except EggproxyError as exc:
            log.warning("update of %s failed: %s", project or ROOT_PAGE, exc)
            return project, "failed"

    with ThreadPoolExecutor(proxy.config.update_concurrency) as pool:
        for project, outcome in pool.map(refresh, pages):
            summary.checked += 1
            if outcome == "gone":
                # Said in the summary line; not a failure cron should mail about.
                log.info("%s is gone from the upstream; its cache is kept", project)
                summary.gone.append(str(project))
            else:
                setattr(summary, outcome, getattr(summary, outcome) + 1)
            if progress is not None:
                progress.done(project or ROOT_PAGE, outcome)
    return summary
