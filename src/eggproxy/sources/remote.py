"""A remote simple index: fetch pages (JSON first, HTML fallback) and files.

The HTTP session is injected (``requests.Session``, which pools connections
through urllib3), so tests and callers decide how it is configured.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_netrc_auth, requote_uri
from urllib3.util.retry import Retry

from eggproxy import __version__
from eggproxy.errors import MalformedPage, ProjectNotFound, UpstreamError, UpstreamUnavailable
from eggproxy.loops import outgoing_via
from eggproxy.mediatypes import UPSTREAM_ACCEPT, is_json_content_type
from eggproxy.metrics import NullMetrics
from eggproxy.model import ProjectPage
from eggproxy.names import NormalizedName
from eggproxy.parse import iter_index_html, iter_index_json, project_from_html, project_from_json
from eggproxy.reasons import reason
from eggproxy.sources.base import CHUNK_SIZE, Fetched, FileResponse, RootListing

if TYPE_CHECKING:
    from requests.sessions import _Settings

log = logging.getLogger(__name__)

USER_AGENT: Final = f"eggproxy/{__version__}"

# A URL that requests' preparation (IDNA, requoting, validation) would leave as it is:
# http(s), an ASCII host name or IPv6 literal, and only characters RFC 3986 allows
# unquoted, or %XX escapes (plain_get also checks requoting and dot segments).
_PLAIN_URL: Final = re.compile(
    r"https?://(?:[A-Za-z0-9\-._~!$&'()*+,;=:]*@)?"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
    r"(?:[/?#](?:%[0-9A-Fa-f]{2}|[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]])*)?"
)


# What UpstreamIndex.get passes: a GET with these alone takes the plain path.
_PLAIN_GET_ARGUMENTS: Final = frozenset({"headers", "timeout", "stream", "allow_redirects", "auth"})
# Seconds a netrc answer is kept per origin: credentials changed in the file are used after it.
NETRC_TTL: Final = 5.0


class _Session(requests.Session):
    """A ``requests.Session`` that reads the proxy environment once per upstream host.

    requests walks the whole process environment twice per request to find
    proxies and ``no_proxy`` (``urllib.request.getproxies``): on a fast link a
    good part of a miss's CPU (issue 13).  The environment of a running server
    does not change, so the answer for a host (scheme and port) is kept; a
    request with its own ``proxies`` is left to requests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._settings: dict[tuple[Any, ...], _Settings] = {}
        self._settings_lock = threading.Lock()
        self._clock = clock
        self._netrc: dict[str, tuple[float, tuple[str, str] | None]] = {}  # netloc: (until, auth)

    def netrc_auth(self, url: str) -> tuple[str, str] | None:
        """requests' ``get_netrc_auth(url)``, kept per origin for :data:`NETRC_TTL` seconds.

        requests finds, reads and parses the netrc file again for every request:
        with a netrc of 20 machines, 150-170 µs a GET here, 5-8 % of a miss's
        CPU (issue 13).  ``url`` is a plain one (:data:`_PLAIN_URL`).
        """
        netloc = url.split("/", 3)[2]
        now = self._clock()
        kept = self._netrc.get(netloc)
        if kept is not None and now < kept[0]:
            return kept[1]
        auth = get_netrc_auth(url)
        if len(self._netrc) > 1024:  # origins are few: a bound, not an eviction policy
            self._netrc.clear()
        self._netrc[netloc] = (now + NETRC_TTL, auth)
        return auth

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        if proxies or not self.trust_env or not isinstance(url, str):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert, self.verify, self.cert)
        with self._settings_lock:
            settings = self._settings.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, stream, verify, cert)
            with self._settings_lock:
                if len(self._settings) > 1024:
                    self._settings.clear()
                self._settings[key] = settings
        copy = settings.copy()
        copy["proxies"] = dict(settings["proxies"])  # requests may add to it
        return copy

    def get(self, url: Any, params: Any = None, **kwargs: Any) -> requests.Response:
        """``Session.get``; a plain one (the upstream index's) through :meth:`plain_get`."""
        if (
            params is None
            and isinstance(url, str)
            and kwargs.keys() <= _PLAIN_GET_ARGUMENTS
            and kwargs.get("allow_redirects", True)
        ):
            return self.plain_get(
                url,
                headers=kwargs.get("headers") or {},
                timeout=kwargs.get("timeout"),
                stream=bool(kwargs.get("stream")),
                auth=kwargs.get("auth"),
            )
        return super().get(url, params=params, **kwargs)

    def plain_get(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: float | None,
        stream: bool,
        auth: tuple[str, str] | None,
    ) -> requests.Response:
        """``get(url, ...)`` (redirects followed), without requests' per-call preparation.

        ``Session.request`` builds a ``Request``, then prepares it: the URL parsed,
        IDNA-encoded and requoted, headers validated, session and request settings
        merged one by one, and the netrc looked up.  On a fast link that is about a
        third of a page miss's CPU (issue 13).  For a plain GET of a URL that
        preparation would not change, and a session with no cookies, hooks, params
        or auth of its own, this builds the same prepared request directly; then
        ``send`` as usual (cookies kept, redirects followed, auth stripped across
        hosts).  Anything else takes ``get``.
        """
        if (
            self.cookies
            or self.params
            or self.auth is not None
            or any(self.hooks.values())
            or not _PLAIN_URL.fullmatch(url)
            or ("%" in url and requote_uri(url) != url)  # %41 would become A
            or "/." in url  # dot segments: urllib3's parsing removes them
        ):
            return super().get(url, headers=headers, timeout=timeout, stream=stream, auth=auth)
        prepared = requests.PreparedRequest()
        prepared.method = "GET"
        prepared.url = url
        merged: CaseInsensitiveDict[str] = CaseInsensitiveDict(
            cast(Mapping[str, str], self.headers)
        )
        merged.update(headers)
        prepared.headers = merged
        prepared.prepare_cookies(RequestsCookieJar())  # a redirect copies and extends it
        if auth is None and self.trust_env:
            auth = self.netrc_auth(url)
        prepared.prepare_auth(auth, url)  # None: credentials in the URL, if any
        settings = self.merge_environment_settings(url, {}, stream, None, None)
        return self.send(prepared, timeout=timeout, allow_redirects=True, **settings)


def make_session(pool_size: int = 32) -> requests.Session:
    """A pooled session for one upstream host set, shared by all threads."""
    session = _Session()
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
        spool_dir: Path | None = None,
        via: str | None = None,
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
        self.spool_dir = spool_dir  # where a root page waits to be parsed
        # Our pseudonym for the Via header that lets an eggproxy see a loop (eggproxy.loops).
        self.via = via
        # How messages name it: a 502 says which source failed (plain, no repr).
        self._label = f'upstream "{name}"'

    def project_url(self, project: NormalizedName) -> str:
        return f"{self.url}{project}/"

    def fetch_project(
        self, project: NormalizedName, etag: str | None = None, *, since: str | None = None
    ) -> Fetched[ProjectPage]:
        """Fetch a project page; raise :class:`ProjectNotFound` on 404."""

        def parse(text: str, url: str, is_json: bool) -> ProjectPage:
            # Files marked with their source as they are parsed (aggregate's _label copies none).
            if is_json:
                return project_from_json(text, url, project, source=self.name)
            return project_from_html(text, url, project, source=self.name)

        return self._fetch(self.project_url(project), etag, since, parse, project)

    def fetch_index(self, etag: str | None = None) -> Fetched[RootListing]:
        """Start fetching the root page; its projects stream as the caller reads them.

        The caller iterates and closes the listing; a transfer that breaks off
        or a page that does not parse raises from the iteration.
        """
        url = self.url
        headers = {"Accept": UPSTREAM_ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        response = self.get(url, headers=headers, stream=True)
        if response.status_code == 304:
            response.close()
            return Fetched(url=url, page=None, etag=etag)
        try:
            _raise_for_status(response, url, self._label)
        except UpstreamError:
            response.close()
            raise
        # Spooled to disk first, then parsed: the link is released at its own
        # speed, however slowly a page of 750,000 projects parses, and memory
        # holds one chunk.
        spool_dir = self.spool_dir if self.spool_dir and self.spool_dir.is_dir() else None
        spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - closed by the listing
        try:
            size = 0
            with response:
                for chunk in response.iter_content(CHUNK_SIZE):
                    spool.write(chunk)
                    size += len(chunk)
            self.metrics.upstream_bytes(self.name, size)
        except requests.RequestException as exc:  # the body broke off
            spool.close()
            raise UpstreamUnavailable(
                f"{self._label} cut the page short: {reason(exc)}", url=url
            ) from None
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        chunks = iter(lambda: spool.read(CHUNK_SIZE), b"")
        meta: dict[str, object] = {}
        if is_json_content_type(response.headers.get("Content-Type", "")):
            entries = iter_index_json(chunks, meta)
        else:
            entries = iter_index_html(chunks, response.encoding or "utf-8")

        def serial() -> int | None:
            value = meta.get("_last-serial")
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        listing = RootListing(entries, close=spool.close, serial=serial)
        return Fetched(
            url=url,
            page=listing,
            etag=response.headers.get("ETag"),
            serial=_header_serial(response),
        )

    def _fetch(
        self,
        url: str,
        etag: str | None,
        since: str | None,
        parse: Callable[[str, str, bool], ProjectPage],
        project: NormalizedName,
    ) -> Fetched[ProjectPage]:
        headers = {"Accept": UPSTREAM_ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        elif since:  # no ETag from this upstream: its Last-Modified date
            headers["If-Modified-Since"] = since
        response = self.get(url, headers=headers)
        with response:
            if response.status_code == 304:
                return Fetched(url=url, page=None, etag=etag, last_modified=since)
            if response.status_code in (404, 410):
                raise ProjectNotFound(project)
            _raise_for_status(response, url, self._label)
            final_url = response.url or url
            try:
                text = response.content.decode(response.encoding or "utf-8")
            except (UnicodeDecodeError, LookupError):
                raise MalformedPage(
                    f"{self._label} sent a page that is not text", url=url
                ) from None
            except requests.RequestException as exc:  # the body broke off
                raise UpstreamUnavailable(
                    f"{self._label} cut the page short: {reason(exc)}", url=url
                ) from None
            self.metrics.upstream_bytes(self.name, len(response.content))
            is_json = is_json_content_type(response.headers.get("Content-Type", ""))
            try:
                page = parse(text, final_url, is_json)
            except MalformedPage as exc:
                raise MalformedPage(f"{self._label} sent a bad page: {exc}", url=url) from None
            serial = _header_serial(response) or page.last_serial
            return Fetched(
                url=url,
                page=page,
                etag=response.headers.get("ETag"),
                serial=serial,
                last_modified=response.headers.get("Last-Modified"),
            )

    def get(self, url: str, *, headers: dict[str, str], stream: bool = False) -> requests.Response:
        """GET ``url``, mapping transport failures to :class:`UpstreamUnavailable`."""
        if self.via:
            headers = {**headers, "Via": outgoing_via(self.via)}
        # Credentials go to the source's own origin only, never to a
        # file host its pages link to (as pip's MultiDomainBasicAuth).
        auth = self.auth if _origin(url) == self._origin else None
        started = time.perf_counter()
        try:
            response = self.session.get(
                url,
                headers=headers,
                timeout=self.timeout,
                stream=stream,
                allow_redirects=True,
                auth=auth,
            )
        except requests.Timeout:
            error = f"{self._label} timed out after {self.timeout:g}s"
            self._count(url, started, error)
            raise UpstreamUnavailable(error, url=url, timeout=True) from None
        except requests.RequestException as exc:
            error = f"{self._label} unreachable: {reason(exc)}"
            self._count(url, started, error)
            raise UpstreamUnavailable(error, url=url) from None
        status = response.status_code
        # 404/410 are answers (no such project); other 4xx and 5xx are the source failing.
        failed = status >= 400 and status not in (404, 410)
        self._count(url, started, f"{self._label} answered {status}" if failed else None)
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
            _raise_for_status(response, url, self._label)
            raise UpstreamError(f"{self._label} answered {response.status_code}", url=url)
        return self.metrics.counting(self.name, response)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _raise_for_status(response: requests.Response, url: str, label: str) -> None:
    status = response.status_code
    if status >= 500:
        raise UpstreamUnavailable(f"{label} answered {status}", url=url)
    if status >= 400:
        raise UpstreamError(f"{label} answered {status}", url=url)


def _header_serial(response: requests.Response) -> int | None:
    value = response.headers.get("X-PyPI-Last-Serial", "")
    return int(value) if value.isdigit() else None
