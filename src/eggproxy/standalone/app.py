"""The standalone server's application: an ASGI app run by granian.

Hits are answered from disk: one ``stat``, then either the bytes of a small
file (kept in a bounded memory cache that the same ``stat`` validates, so it
never disagrees with the disk) or the file itself, handed to granian with the
``http.response.pathsend`` extension and sent from disk in Rust.  A plain GET
(no conditional, Range or Via header) of a fresh page or a cached file is
answered from messages built once per file version (:mod:`.ready`); the
rest takes the general path, :meth:`App.handle`.  Misses and
stale pages run the core in a worker thread; a missed file downloaded within
a moment is then sent from disk as a hit is, a longer download streams to the
client as it arrives, with a ``Content-Length`` (docs/decisions/0016).

ASGI, not granian's faster-looking RSGI: ``await send(...)`` waits while the
client is slower than we produce (granian applies backpressure to ASGI and
WSGI streams, not to RSGI's), so a miss streamed to a slow client keeps the
worker's memory flat; measured, page hits are as fast (docs/decisions/0002).

A response that cannot complete (a download that fails midway, a client
that leaves) ends without its final body message: its ``Content-Length``
was declared, so granian cuts the connection and no client takes it for
complete.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from eggproxy.config import Config
from eggproxy.errors import EggproxyError, EvictedMeanwhile, LoopDetected
from eggproxy.headers import (
    IMMUTABLE,
    error_cache_control,
    file_content_type,
    page_cache_control,
    stale_warning,
)
from eggproxy.landing import landing_page
from eggproxy.loops import context_for
from eggproxy.mediatypes import choose_format
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy
from eggproxy.replies import ALLOWED_METHODS, METHOD_NOT_ALLOWED, ErrorReply, error_reply
from eggproxy.routes import FileRoute, ProjectRoute, Redirect, RootRoute, Route, route
from eggproxy.standalone import admin
from eggproxy.standalone.accesslog import AccessLog
from eggproxy.standalone.files import PATHSEND, SMALL_FILE, FileSender
from eggproxy.standalone.openfiles import HOLD
from eggproxy.standalone.ready import ReadyResponses
from eggproxy.standalone.request import Headers, Receive, Request, Scope, Send

log = logging.getLogger("eggproxy.server")

T = TypeVar("T")
POLICY_CHECK: Final = 2.0  # seconds between two looks at the blocklist (it rate-limits too)
# Request headers that a plain hit has none of: the general path decides on them.
NOT_PLAIN: Final = frozenset({b"if-none-match", b"if-modified-since", b"range", b"via"})
PlainRoute = RootRoute | ProjectRoute | FileRoute


class App:
    """The ASGI application serving one cache directory."""

    def __init__(
        self,
        config: Config,
        proxy: Proxy | None = None,
        threads: int = 64,
        access_log: AccessLog | None = None,
    ) -> None:
        self.config = config
        self.proxy = proxy or Proxy(config)
        self.prefix = config.prefix
        self.access_log = access_log
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="eggproxy-miss")
        self.files = FileSender()
        self.ready = ReadyResponses(self.files.small)
        # Routing, negotiation and the headers they lead to are pure: remember recent answers.
        self.route = functools.lru_cache(maxsize=4096)(self._route)
        self.plain_route = functools.lru_cache(maxsize=4096)(self._plain_route)
        self.negotiate = functools.lru_cache(maxsize=256)(choose_format)
        self.file_headers = functools.lru_cache(maxsize=4096)(_file_headers)
        self.page_headers = functools.lru_cache(maxsize=1024)(self._page_headers)
        self._watch: asyncio.Task[None] | None = None
        self._ahead: asyncio.Task[None] | None = None
        self._tidy: asyncio.Task[None] | None = None

    def _route(self, path: str) -> Route | EggproxyError:
        try:
            return route(path, self.prefix)
        except EggproxyError as exc:
            return exc

    def _plain_route(self, raw_path: bytes) -> tuple[str, PlainRoute] | None:
        """The path and route of a page or file, else ``None`` (the general path answers)."""
        path = raw_path.decode("latin-1")
        if path in admin.PATHS or (path == "/" and self.prefix != "/"):
            return None
        target = self.route(path)
        if isinstance(target, RootRoute | ProjectRoute | FileRoute):
            return path, target
        return None

    def _page_headers(self, content_type: str, max_age: int) -> Headers:
        return [
            ("content-type", content_type),
            # PEP 691: one URL, two formats; shared caches must key on Accept.
            ("vary", "Accept"),
            ("cache-control", page_cache_control(max_age, self.config.stale_while_revalidate)),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                log.debug("worker %d ready", os.getpid())
                if self.proxy.policy.blocklist is not None:
                    self._watch = asyncio.create_task(self.watch_policy())
                if self.config.refresh_ahead > 0:
                    self._ahead = asyncio.create_task(self.refresh_ahead())
                self._tidy = asyncio.create_task(self.release_files())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in (self._watch, self._ahead, self._tidy):
                    if task is not None:
                        task.cancel()
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def watch_policy(self) -> None:
        """Reload the blocklist when its folder changes, off the event loop.

        Hits never reach the core's reloading, so this is what withholds a
        cached file that a new record names within seconds, without a restart.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(POLICY_CHECK)
            try:
                await loop.run_in_executor(self.pool, self.proxy.check_policy)
            except Exception:
                log.exception("blocklist check failed")

    async def refresh_ahead(self) -> None:
        """Every few seconds, revalidate the pages served lately that are about to go stale."""
        loop = asyncio.get_running_loop()
        interval = max(1.0, min(60.0, self.config.refresh_ahead / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(self.pool, self.proxy.refresh_ahead)
            except Exception:
                log.exception("refresh ahead failed")

    async def release_files(self) -> None:
        """Close held descriptors of large files even when no more are sent.

        An evicted file's space comes back once its descriptor closes; without
        this, a worker that stops sending large files would keep them all.
        """
        while True:
            await asyncio.sleep(HOLD / 2)
            self.files.opened.expire()

    def close(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()
        # Downloads still running are aborted; their partial files removed.
        self.proxy.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.files.close()

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        if scope["method"] == "GET":
            hit = await self.plain_hit(scope, send)
            if hit is not None:
                path, plain, size = hit
                self.proxy.served(plain, "hit", size)
                if self.access_log is not None:
                    client = scope.get("client")
                    self.access_log.add(
                        client[0] if client else "-",
                        "GET",
                        path,
                        scope["http_version"],
                        200,
                        size,
                        time.perf_counter() - started,
                        "hit",
                    )
                return
        request = Request(scope, receive, send)
        status, size, outcome = await self.handle(request)
        if outcome != "-":  # an index answer: counted by the core
            target = self.route(request.path)
            if not isinstance(target, EggproxyError):
                self.proxy.served(target, outcome, size)
        if self.access_log is not None:
            client = scope.get("client")
            self.access_log.add(
                client[0] if client else "-",
                request.method,
                request.path,
                scope["http_version"],
                status,
                size or request.text_bytes,  # an error's body counts as sent (CLF's size)
                time.perf_counter() - started,
                outcome,
                request.upstream,
            )

    async def plain_hit(self, scope: Scope, send: Send) -> tuple[str, PlainRoute, int] | None:
        """Answer a plain GET of a fresh page or a cached file from a ready response.

        Plain: no conditional, Range or Via header, no header sent twice.  Anything
        else (a miss, a stale page, a blocked file, a policy check due) returns
        ``None`` before a byte is sent, and :meth:`handle` answers it.  The same
        headers as :meth:`handle` sends, with one ``stat`` and two ``send`` calls.
        """
        raw_headers = scope["headers"]
        headers = dict(raw_headers)
        raw_path = scope.get("raw_path")
        if len(headers) != len(raw_headers) or not NOT_PLAIN.isdisjoint(headers) or not raw_path:
            return None
        plain = self.plain_route(raw_path)
        if plain is None or self.proxy.policy_check_due():
            return None
        path, target = plain
        try:
            if isinstance(target, FileRoute):
                if self.proxy.policy.names(target.project):
                    return None  # a deny entry or record may refuse it: counted once, there
                cached = self.proxy.cached_file(target.project, target.filename)
                if cached is None:
                    return None
                name, st = str(cached[0]), cached[1]
                source = None
                if st.st_size > SMALL_FILE:
                    if PATHSEND not in (scope.get("extensions") or ()):
                        return None
                    # By descriptor, as the general path sends it (a file evicted since
                    # the stat is a miss there, never granian's bare 404); the headers
                    # describe the file opened.
                    source, st = self.files.opened.path(name, st)
                start, body, size = self.ready.get(
                    name, st, self.file_headers(target.filename), None
                )
                if body is None:
                    if source is None:
                        return None
                    body = {"type": PATHSEND, "path": source}
            else:
                accept = headers.get(b"accept")
                fmt, content_type = self.negotiate(
                    None if accept is None else accept.decode("latin-1")
                )
                project = None if isinstance(target, RootRoute) else target.project
                result = self.proxy.fresh_page(project, fmt)
                if result is None or result.stat is None or result.warning is not None:
                    return None
                variant = (content_type, result.max_age)
                headers_before = self.page_headers(*variant)
                start, body, size = self.ready.get(
                    str(result.path), result.stat, headers_before, variant
                )
                if body is None:  # a page past SMALL_FILE: the general path sends it
                    return None
        except (EggproxyError, OSError):  # blocked, or removed since the stat: answered there
            return None
        await send(start)
        await send(body)
        return path, target, size

    async def handle(self, request: Request) -> tuple[int, int, str]:
        """Answer one request; return (status, body bytes, hit/miss/stale/...)."""
        if request.method not in ("GET", "HEAD"):
            status = await self.error(request, METHOD_NOT_ALLOWED, [("allow", ALLOWED_METHODS)])
            return status, 0, "-"
        via = request.headers.get("via")
        if via is not None and self.proxy.is_loop(via):
            return await self.error(request, error_reply(LoopDetected())), 0, "loop"
        if self.proxy.policy_check_due():
            # At most every few seconds one request takes the executor hop, so the
            # next request after a new record, hit or miss, is answered by it.
            await asyncio.get_running_loop().run_in_executor(self.pool, self.proxy.check_policy)
        if request.path == "/" and self.prefix != "/":
            return await self.landing(request)
        if request.path in admin.PATHS:  # /metrics, /+status: outside the index prefix
            status, size = await admin.answer(self.proxy, self.pool, request)
            return status, size, "-"
        target = self.route(request.path)
        if isinstance(target, EggproxyError):
            return await self.error(request, error_reply(target), cause=target), 0, "-"
        try:
            if isinstance(target, Redirect):
                await request.respond(301, [("location", target.location), ("content-length", "0")])
                return 301, 0, "-"
            if isinstance(target, FileRoute):
                return await self.file(request, target.project, target.filename)
            project = None if isinstance(target, RootRoute) else target.project
            return await self.page(request, project)
        except EggproxyError as exc:
            # The access log marks what the policy refused: held, blocked (else error).
            return await self.error(request, error_reply(exc), cause=exc), 0, exc.mark

    async def core(self, request: Request, call: Callable[..., T], *args: object) -> T:
        """Run a core call in a worker thread; its upstream requests carry the request's Via."""
        context = context_for(request.headers.get("via"))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, context.run, call, *args)

    async def landing(self, request: Request) -> tuple[int, int, str]:
        """``/`` outside the index: a page saying where the index is and how to use it."""
        host = request.headers.get("host") or self.config.bind
        body = landing_page(f"{request.scheme}://{host}{self.prefix}")
        headers = [
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "no-cache"),  # it names the Host it was asked under
            ("content-length", str(len(body))),
        ]
        await request.respond(200, headers, b"" if request.method == "HEAD" else body)
        return 200, len(body), "-"

    async def error(
        self,
        request: Request,
        reply: ErrorReply,
        extra: Headers | None = None,
        cause: BaseException | None = None,
    ) -> int:
        reply.log(log, request.method, request.path)
        # A tier in front must not keep an error (a 404 briefly, as negative_ttl).
        cache_control = error_cache_control(reply.status, self.config.negative_ttl, cause)
        headers = [*(extra or []), ("cache-control", cache_control)]
        return await request.text(reply.status, reply.message, headers)

    async def page(self, request: Request, project: NormalizedName | None) -> tuple[int, int, str]:
        fmt, content_type = self.negotiate(request.headers.get("accept"))
        result = self.proxy.fresh_page(project, fmt)
        if result is None:
            result = await self.core(request, self.proxy.page, project, fmt)
        headers = [
            ("content-type", content_type),
            # PEP 691: one URL, two formats; shared caches must key on Accept.
            ("vary", "Accept"),
            (
                "cache-control",
                page_cache_control(result.max_age, self.config.stale_while_revalidate),
            ),
        ]
        if result.warning:
            headers.append(("warning", stale_warning(result.warning)))
        if result.source is not None:
            request.upstream = (result.source, result.upstream_seconds)
        if result.age is not None:
            headers.append(("age", str(result.age)))
        st = result.stat or result.path.stat()
        status, size = await self.files.send(request, result.path, st, headers)
        return status, size, result.outcome

    async def file(
        self, request: Request, project: NormalizedName, filename: str
    ) -> tuple[int, int, str]:
        headers = [("content-type", file_content_type(filename)), ("cache-control", IMMUTABLE)]
        cached = self.proxy.cached_file(project, filename)
        if cached is None:
            return await self.miss(request, project, filename, headers)
        try:
            status, size = await self.files.send(request, *cached, list(headers))
        except FileNotFoundError:  # evicted by the cache limit between stat and open
            return await self.miss(request, project, filename, headers)
        return status, size, "hit"

    async def miss(
        self,
        request: Request,
        project: NormalizedName,
        filename: str,
        headers: Headers,
        again: bool = True,
    ) -> tuple[int, int, str]:
        if request.method == "HEAD":
            # Tell what a GET would get without downloading anything.
            wanted = await self.core(request, self.proxy.wanted, project, filename)
            if wanted.size is not None:
                headers.append(("content-length", str(wanted.size)))
            await request.respond(200, headers)
            return 200, 0, "miss"
        result = await self.core(request, self.proxy.open_file, project, filename)
        if result.source is not None:
            request.upstream = (result.source, result.upstream_seconds)
        # A download that ends within a moment is sent whole from disk by granian,
        # not pumped through Python (issue 12: a herd at the clients' speed).
        whole = True if result.stream is None else await self.files.whole(result.stream)
        if isinstance(whole, BaseException):
            return await self.error(request, error_reply(whole), cause=whole), 0, "error"
        if whole or result.stream is None:  # complete (a fast or concurrent download)
            return await self.completed(request, result.path, project, filename, headers, again)
        # A failure before the first byte is its own status (502/504/507), never a
        # 200 cut short: granian answers 500 to a response without a body yet.
        first = await self.files.first(result.stream)
        if isinstance(first, BaseException):
            return await self.error(request, error_reply(first), cause=first), 0, "error"
        if first is None:  # empty, and verified
            return await self.completed(request, result.path, project, filename, headers, again)
        headers.append(("content-length", str(result.size)))
        await request.start(200, headers)
        sent, complete = await self.files.pump(request, result.stream, result.path.name, first)
        return 200, sent, "miss" if complete else "aborted"

    async def completed(
        self,
        request: Request,
        path: Path,
        project: NormalizedName,
        filename: str,
        headers: Headers,
        again: bool,
    ) -> tuple[int, int, str]:
        """Send a file the miss just completed; evicted the moment after, fetch it once more."""
        try:
            status, size = await self.files.send(request, path, path.stat(), headers)
        except FileNotFoundError:
            if not again:  # evicted twice in a row: say so rather than loop
                busy = EvictedMeanwhile(f"{filename} was evicted while being sent; try again")
                return await self.error(request, error_reply(busy), cause=busy), 0, "error"
            return await self.miss(request, project, filename, headers, again=False)
        return status, size, "miss"


def _file_headers(filename: str) -> Headers:
    return [("content-type", file_content_type(filename)), ("cache-control", IMMUTABLE)]
