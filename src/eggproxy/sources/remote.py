"""A remote simple index: fetch pages (JSON first, HTML fallback) and files.

The HTTP session is injected (``requests.Session``, which pools connections
through urllib3), so tests and callers decide how it is configured.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from eggproxy import __version__
from eggproxy.errors import MalformedPage, ProjectNotFound, UpstreamError, UpstreamUnavailable
from eggproxy.mediatypes import UPSTREAM_ACCEPT, is_json_content_type
from eggproxy.metrics import NullMetrics
from eggproxy.model import IndexPage, ProjectPage
from eggproxy.names import NormalizedName
from eggproxy.parse import index_from_html, index_from_json, project_from_html, project_from_json
from eggproxy.sources.base import Fetched, FileResponse, P

log = logging.getLogger(__name__)

USER_AGENT: Final = f"eggproxy/{__version__}"


def make_session(pool_size: int = 32) -> requests.Session:
    """A pooled session for one upstream host set, shared by all threads."""
    session = requests.Session()
    # One retry of a failed connection, never a sleep on Retry-After: a client
    # waiting on us is better served by the stale page than by a long wait.
    retry = Retry(total=1, read=False, status=0, respect_retry_after_header=False)
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


class UpstreamIndex:
    """One remote simple index."""

    is_local = False

    def __init__(
        self,
        url: str,
        session: requests.Session,
        timeout: float,
        *,
        name: str = "upstream",
        auth: tuple[str, str] | None = None,
        metrics: NullMetrics | None = None,
    ) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.metrics = metrics or NullMetrics()
        self.session = session
        self.timeout = timeout
        self.name = name
        # Sent as a header, never part of a URL, so it never reaches a log line.
        self.auth = auth
        self._origin = _origin(self.url)

    def project_url(self, project: NormalizedName) -> str:
        return f"{self.url}{project}/"

    def fetch_project(
        self, project: NormalizedName, etag: str | None = None
    ) -> Fetched[ProjectPage]:
        """Fetch a project page; raise :class:`ProjectNotFound` on 404."""

        def parse(text: str, url: str, is_json: bool) -> ProjectPage:
            if is_json:
                return project_from_json(text, url, project)
            return project_from_html(text, url, project)

        return self._fetch(self.project_url(project), etag, parse, project)

    def fetch_index(self, etag: str | None = None) -> Fetched[IndexPage]:
        """Fetch the root page listing every project."""

        def parse(text: str, url: str, is_json: bool) -> IndexPage:
            return index_from_json(text) if is_json else index_from_html(text)

        return self._fetch(self.url, etag, parse, None)

    def _fetch(
        self,
        url: str,
        etag: str | None,
        parse: Callable[[str, str, bool], P],
        project: NormalizedName | None,
    ) -> Fetched[P]:
        headers = {"Accept": UPSTREAM_ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        response = self.get(url, headers=headers)
        with response:
            if response.status_code == 304:
                return Fetched(url=url, page=None, etag=etag)
            if response.status_code in (404, 410) and project is not None:
                raise ProjectNotFound(project)
            _raise_for_status(response, url)
            final_url = response.url or url
            try:
                text = response.content.decode(response.encoding or "utf-8")
            except (UnicodeDecodeError, LookupError):
                raise MalformedPage("page is not valid text", url=url) from None
            except requests.RequestException as exc:  # the body broke off
                raise UpstreamUnavailable(f"page cut short: {_short(exc)}", url=url) from None
            self.metrics.upstream_bytes(self.name, len(response.content))
            is_json = is_json_content_type(response.headers.get("Content-Type", ""))
            try:
                page = parse(text, final_url, is_json)
            except MalformedPage as exc:
                exc.url = url
                raise
            serial = _header_serial(response) or page.last_serial
            return Fetched(url=url, page=page, etag=response.headers.get("ETag"), serial=serial)

    def get(self, url: str, *, headers: dict[str, str], stream: bool = False) -> requests.Response:
        """GET ``url``, mapping transport failures to :class:`UpstreamUnavailable`."""
        started = time.perf_counter()
        try:
            response = self.session.get(
                url,
                headers=headers,
                timeout=self.timeout,
                stream=stream,
                allow_redirects=True,
                # Credentials go to the source's own origin only, never to a
                # file host its pages link to (as pip's MultiDomainBasicAuth).
                auth=self.auth if _origin(url) == self._origin else None,
            )
        except requests.Timeout:
            error = f"upstream timed out after {self.timeout:g}s"
            self._count(url, started, error)
            raise UpstreamUnavailable(error, url=url, timeout=True) from None
        except requests.RequestException as exc:
            error = f"upstream unreachable: {_short(exc)}"
            self._count(url, started, error)
            raise UpstreamUnavailable(error, url=url) from None
        status = response.status_code
        # 404/410 are answers (no such project); other 4xx and 5xx are the source failing.
        failed = status >= 400 and status not in (404, 410)
        self._count(url, started, f"upstream answered {status}" if failed else None)
        return response

    def _count(self, url: str, started: float, error: str | None) -> None:
        what = urlsplit(url).path.rstrip("/").rpartition("/")[2]
        self.metrics.upstream(self.name, time.perf_counter() - started, error=error, what=what)

    def open_file(self, url: str) -> FileResponse:
        """Start a streaming download of ``url`` (the caller closes it)."""
        # Identity: hashes are over the file's bytes, not a re-encoding of them.
        response = self.get(url, headers={"Accept-Encoding": "identity"}, stream=True)
        if response.status_code != 200:
            response.close()
            _raise_for_status(response, url)
            raise UpstreamError(f"upstream answered {response.status_code}", url=url)
        return self.metrics.counting(self.name, response)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _raise_for_status(response: requests.Response, url: str) -> None:
    status = response.status_code
    if status >= 500:
        raise UpstreamUnavailable(f"upstream answered {status}", url=url)
    if status >= 400:
        raise UpstreamError(f"upstream answered {status}", url=url)


def _header_serial(response: requests.Response) -> int | None:
    value = response.headers.get("X-PyPI-Last-Serial", "")
    return int(value) if value.isdigit() else None


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def _short(exc: BaseException) -> str:
    """One short line: requests nests the interesting part deep in its message."""
    text = str(exc)
    found = _ERRNO.search(text)
    if found:
        return found.group(0).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]
