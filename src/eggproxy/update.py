"""``eggproxy_update``: refresh what is cached, for cron.

Every cached page (and the root page, if cached) older than
``update_interval`` is revalidated with a conditional request, a bounded
number at a time.  Files are immutable and never fetched again.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from eggproxy.errors import EggproxyError, ProjectNotFound
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What one update run did."""

    checked: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    gone: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"checked {self.checked}, changed {self.changed}, "
            f"unchanged {self.unchanged}, failed {self.failed}"
        )
        if self.gone:
            text += f"; gone upstream: {', '.join(self.gone)}"
        return text


def update(proxy: Proxy, *, max_age_seconds: float | None = None) -> Summary:
    """Revalidate every due page; never raises for one page's failure."""
    if max_age_seconds is None:
        max_age_seconds = proxy.config.update_interval * 3600
    summary = Summary()
    pages = proxy.due(max_age_seconds)

    def refresh(project: NormalizedName | None) -> tuple[NormalizedName | None, str]:
        try:
            return project, "changed" if proxy.refresh(project) else "unchanged"
        except ProjectNotFound:
            return project, "gone"
        except EggproxyError as exc:
            log.warning("update of %s failed: %s", project or "root page", exc)
            return project, "failed"

    with ThreadPoolExecutor(proxy.config.update_concurrency) as pool:
        for project, outcome in pool.map(refresh, pages):
            summary.checked += 1
            if outcome == "gone":
                log.warning("%s is gone from the upstream; its cache is kept", project)
                summary.gone.append(str(project))
            else:
                setattr(summary, outcome, getattr(summary, outcome) + 1)
    return summary
