"""Tell the HTTP cache tiers in front that a page changed: ``PURGE`` it (issue 12).

A tier (Varnish from ``eggproxy deploy varnish``) keeps a page for the
``max-age`` eggproxy sent; when eggproxy rewrites the page earlier (an
``eggproxy update``, a revalidation that found it changed, a hold ending),
each URL of ``purge_urls`` is sent ``PURGE <prefix><project>/``, which drops
both formats (every ``Vary`` variant) at once.  A tier that cannot be
reached is logged and otherwise ignored: it serves the old page until its
``max-age`` ends, as without purging.  It is then left alone for
``RETRY_AFTER`` seconds, so that rendering thousands of pages again (a
policy change at start-up, an update) never waits a timeout per page.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final
from urllib.parse import quote

import requests

from eggproxy.names import NormalizedName

log = logging.getLogger("eggproxy.purge")

PURGE_TIMEOUT: Final = 5.0  # seconds; a tier on the same network answers at once
RETRY_AFTER: Final = 30.0  # seconds a tier that could not be reached is skipped


class Purger:
    """Sends ``PURGE`` for changed pages to every configured tier (none: does nothing)."""

    def __init__(
        self, urls: tuple[str, ...], prefix: str, session: requests.Session, timeout: float
    ) -> None:
        self.urls = tuple(url.rstrip("/") for url in urls)
        self.prefix = prefix
        self.session = session
        self.timeout = min(timeout, PURGE_TIMEOUT)
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def path(self, project: NormalizedName | None) -> str:
        return self.prefix if project is None else f"{self.prefix}{quote(project)}/"

    def changed(self, project: NormalizedName | None) -> int:
        """Purge the page of ``project`` (``None``: the root page); return how many tiers did."""
        done = 0
        path = self.path(project)
        for url in self.urls:
            with self._lock:
                if time.monotonic() < self._down_until.get(url, 0.0):
                    continue
            try:
                response = self.session.request("PURGE", url + path, timeout=self.timeout)
                response.close()
            except requests.RequestException as exc:
                log.warning(
                    "PURGE %s%s failed: %s; not trying it for %gs", url, path, exc, RETRY_AFTER
                )
                with self._lock:
                    self._down_until[url] = time.monotonic() + RETRY_AFTER
                continue
            # Varnish answers 200 when purged, 404 may mean "not cached": both fine.
            if response.status_code >= 400 and response.status_code != 404:
                log.warning("PURGE %s%s -> %d", url, path, response.status_code)
                continue
            log.debug("PURGE %s%s -> %d", url, path, response.status_code)
            done += 1
        return done
