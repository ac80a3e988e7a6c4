"""The standalone server's application: an ASGI app run by granian.

Hits are answered from disk: one ``stat``, then either the bytes of a small
file (kept in a bounded memory cache that the same ``stat`` validates, so it
never disagrees with the disk) or the file itself, handed to granian with the
``http.response.pathsend`` extension and sent from disk in Rust.  Misses and
stale pages run the core in a worker thread; a missed file streams to the
client as it arrives, with a ``Content-Length``.

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
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from eggproxy.accesslog import AccessLog
from eggproxy.config import Config
from eggproxy.errors import EggproxyError, http_status
from eggproxy.headers import IMMUTABLE, file_content_type, page_cache_control, stale_warning
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy
from eggproxy.routes import Route, choose_format, route
from eggproxy.static import Decision, Validators, decide

log = logging.getLogger("eggproxy.server")

Headers = list[tuple[str, str]]
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATHSEND: Final = "http.response.pathsend"
READ_CHUNK: Final = 256 * 1024  # bytes read per step when Python streams a file's range
_END: Final[Message] = {"type": "http.response.body", "body": b""}


STREAM_THREADS: Final = 256  # streams followed at once per worker
SMALL_FILE: Final = 512 * 1024  # bytes; larger files are sent by granian from disk
MEMORY_BUDGET: Final = 64 * 1024 * 1024  # bytes of small files kept in memory


# A request with no conditional or Range header gets the whole file.
WHOLE: Final = Decision(200)


class SmallFiles:
    """A bounded LRU of small files' bytes, keyed by path and checked by ``stat``.

    Sending a few kilobytes of bytes costs far less than opening the file
    per request; the ``stat`` taken for every request anyway tells whether
    the bytes held are still those on disk (inode, size, mtime).
    """

    def __init__(self, budget: int = MEMORY_BUDGET) -> None:
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[str, tuple[tuple[int, int, int], bytes, Validators]] = (
            OrderedDict()
        )

    def get(self, path: str, st: os.stat_result) -> tuple[bytes, Validators]:
        """The file's bytes and validators, read again only if the file changed."""
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        item = self._items.get(path)
        if item is not None and item[0] == key:
            self._items.move_to_end(path)
            return item[1], item[2]
        with open(path, "rb") as handle:
            # The file may have been replaced since ``st`` (a page revalidated):
            # describe the version actually read, so headers match the bytes.
            st = os.fstat(handle.fileno())
            data = handle.read()
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if item is not None:
            self.used -= len(item[1])
        # Validators of this version, computed once (formatting a date is not free).
        validators = Validators.from_stat(st)
        self._items[path] = (key, data, validators)
        self.used += len(data)
        while self.used > self.budget and self._items:
            _path, (_key, old, _v) = self._items.popitem(last=False)
            self.used -= len(old)
        return data, validators


class Request:
    """What a response needs of one ASGI request, with its headers decoded once."""

    __slots__ = ("extensions", "headers", "method", "path", "receive", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.method: str = scope["method"]
        # The raw path: ``route`` decodes it (strictly) once itself.
        raw = scope.get("raw_path")
        self.path: str = raw.decode("latin-1") if raw else scope["path"]
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.extensions: dict[str, Any] = scope.get("extensions") or {}
        self.receive = receive
        self.send = send

    async def start(self, status: int, headers: Headers) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers
                ],
            }
        )

    async def respond(self, status: int, headers: Headers, body: bytes = b"") -> None:
        """A whole response; ``headers`` must carry the Content-Length."""
        await self.start(status, headers)
        await self.send({"type": "http.response.body", "body": body})


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
        self.small = SmallFiles()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="eggproxy-miss")
        # Following a download waits on the upstream for as long as it takes: a
        # pool of its own, so that slow streams never starve page fetches.
        self.stream_pool = ThreadPoolExecutor(STREAM_THREADS, thread_name_prefix="eggproxy-stream")
        # Routing and negotiation are pure: remember recent answers.
        self.route = functools.lru_cache(maxsize=4096)(self._route)
        self.negotiate = functools.lru_cache(maxsize=256)(choose_format)

    def _route(self, path: str) -> Route | EggproxyError:
        try:
            return route(path, self.prefix)
        except EggproxyError as exc:
            return exc

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
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()
        # Downloads still running are aborted; their partial files removed.
        self.proxy.downloader.shutdown()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.stream_pool.shutdown(wait=False, cancel_futures=True)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive, send)
        status, size, outcome = await self.handle(request)
        if self.access_log is not None:
            client = scope.get("client")
            self.access_log.add(
                client[0] if client else "-",
                request.method,
                request.path,
                scope["http_version"],
                status,
                size,
                time.perf_counter() - started,
                outcome,
            )

    async def handle(self, request: Request) -> tuple[int, int, str]:
        """Answer one request; return (status, body bytes, hit/miss/stale/...)."""
        if request.method not in ("GET", "HEAD"):
            status = await _text(request, 405, "method not allowed", [("allow", "GET, HEAD")])
            return status, 0, "-"
        target = self.route(request.path)
        if isinstance(target, EggproxyError):
            return await _error(request, target), 0, "-"
        try:
            if target.kind == "redirect":
                assert target.location is not None
                await request.respond(301, [("location", target.location), ("content-length", "0")])
                return 301, 0, "-"
            if target.kind == "file":
                assert target.project is not None and target.filename is not None
                return await self.file(request, target.project, target.filename)
            return await self.page(request, target.project)
        except EggproxyError as exc:
            # A 404 is an everyday answer (pip probes names); warn about failures.
            level = logging.INFO if http_status(exc) == 404 else logging.WARNING
            log.log(level, "%s %s: %s", request.method, request.path[:200], exc)
            return await _error(request, exc), 0, "error"

    async def page(self, request: Request, project: NormalizedName | None) -> tuple[int, int, str]:
        fmt, content_type = self.negotiate(request.headers.get("accept"))
        result = self.proxy.fresh_page(project, fmt)
        if result is None:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self.pool, self.proxy.page, project, fmt)
        headers = [
            ("content-type", content_type),
            # PEP 691: one URL, two formats; shared caches must key on Accept.
            ("vary", "Accept"),
            ("cache-control", page_cache_control(result.max_age)),
        ]
        if result.warning:
            headers.append(("warning", stale_warning(result.warning)))
        st = result.stat or result.path.stat()
        status, size = await self.send(request, result.path, st, headers)
        return status, size, result.outcome

    async def file(
        self, request: Request, project: NormalizedName, filename: str
    ) -> tuple[int, int, str]:
        path = self.proxy.cache.file_path(project, filename)
        headers = [("content-type", file_content_type(filename)), ("cache-control", IMMUTABLE)]
        try:
            st = path.stat()
        except FileNotFoundError:
            return await self.miss(request, project, filename, headers)
        status, size = await self.send(request, path, st, headers)
        return status, size, "hit"

    async def miss(
        self, request: Request, project: NormalizedName, filename: str, headers: Headers
    ) -> tuple[int, int, str]:
        loop = asyncio.get_running_loop()
        if request.method == "HEAD":
            # Tell what a GET would get without downloading anything.
            wanted = await loop.run_in_executor(self.pool, self.proxy.wanted, project, filename)
            if wanted.size is not None:
                headers.append(("content-length", str(wanted.size)))
            await request.respond(200, headers)
            return 200, 0, "miss"
        result = await loop.run_in_executor(self.pool, self.proxy.open_file, project, filename)
        if result.stream is None:  # complete already (a fast or concurrent download)
            status, size = await self.send(request, result.path, result.path.stat(), headers)
            return status, size, "miss"
        headers.append(("content-length", str(result.size)))
        await request.start(200, headers)
        sent, complete = await self._pump(request, result.stream, result.path.name)
        return 200, sent, "miss" if complete else "aborted"

    async def _pump(self, request: Request, stream: Iterator[bytes], name: str) -> tuple[int, bool]:
        """Send the stream's bytes after the response's start; return how many, and if whole.

        Each ``send`` waits while the client is slower than the stream, so at
        most a chunk or two are held here.  Only a stream that ended normally
        gets the final body message; otherwise the response stays short of
        its ``Content-Length`` and granian cuts the connection.  (The stream
        of a miss holds back its last bytes until the download is verified,
        :func:`eggproxy.download._follow`.)
        """
        loop = asyncio.get_running_loop()
        # granian's send does not raise once the client left: watch for it instead.
        left = asyncio.ensure_future(_disconnected(request.receive))
        sent = 0
        try:
            while True:
                chunk = await loop.run_in_executor(self.stream_pool, _next_chunk, stream)
                if chunk is None:
                    await request.send(_END)
                    return sent, True
                if isinstance(chunk, BaseException):
                    log.warning("aborting response for %s after %d bytes: %s", name, sent, chunk)
                    return sent, False
                # (Checked only before more bytes: once all of them went out, granian
                # reports the end of the response as a disconnect too.)
                if left.done():  # the download goes on for the others
                    log.info("client left %s after %d bytes", name, sent)
                    return sent, False
                await request.send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
        finally:
            left.cancel()
            await loop.run_in_executor(self.stream_pool, _close, stream)

    async def send(
        self, request: Request, path: Path, st: os.stat_result, headers: Headers
    ) -> tuple[int, int]:
        """Send a file from disk, honouring HEAD, conditional GET and Range."""
        name = str(path)
        data = b""
        if st.st_size <= SMALL_FILE:
            data, v = self.small.get(name, st)
        else:
            v = Validators.from_stat(st)
        get = request.headers.get
        if_none_match, if_modified_since, range_header = (
            get("if-none-match"),
            get("if-modified-since"),
            get("range"),
        )
        if if_none_match is None and if_modified_since is None and range_header is None:
            decision = WHOLE  # the common case: nothing to decide
        else:
            decision = decide(
                v,
                if_none_match=if_none_match,
                if_modified_since=if_modified_since,
                range_header=range_header,
                if_range=get("if-range"),
            )
        headers += [
            ("etag", v.etag),
            ("last-modified", v.last_modified),
            ("accept-ranges", "bytes"),
        ]
        if decision.status == 304:
            await request.respond(304, headers)
            return 304, 0
        if decision.status == 416:
            headers += [("content-range", f"bytes */{v.size}"), ("content-length", "0")]
            await request.respond(416, headers)
            return 416, 0
        start, end = (decision.start, decision.end) if decision is not WHOLE else (0, v.size)
        if decision.status == 206:
            headers.append(("content-range", f"bytes {start}-{end - 1}/{v.size}"))
        headers.append(("content-length", str(end - start)))
        if request.method == "HEAD":
            await request.respond(decision.status, headers)
            return decision.status, 0
        if data or v.size == 0:
            body = data[start:end] if start or end < v.size else data
            await request.respond(decision.status, headers, body)
            return decision.status, end - start
        await request.start(decision.status, headers)
        if decision.status == 200 and PATHSEND in request.extensions:
            await request.send({"type": PATHSEND, "path": name})
            return 200, end - start
        sent, _complete = await self._pump(request, _read_range(name, start, end), path.name)
        return decision.status, sent


def _next_chunk(stream: Iterator[bytes]) -> bytes | BaseException | None:
    """The stream's next chunk, ``None`` at its end, or the error that ended it.

    The error is returned, not raised into the response's coroutine: a
    traceback through the coroutine would keep its frame, and so the response
    transport, alive; granian ends a response only once its transport is released.
    """
    try:
        return next(stream, None)
    except (EggproxyError, OSError) as exc:
        return exc.with_traceback(None)


def _close(stream: Iterator[bytes]) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (the request body, if any, is skipped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _read_range(path: str, start: int, end: int) -> Iterator[bytes]:
    """The bytes ``start:end`` of the file, in chunks (read in a worker thread)."""
    with open(path, "rb") as handle:
        handle.seek(start)
        left = end - start
        while left > 0:
            chunk = handle.read(min(READ_CHUNK, left))
            if not chunk:
                raise OSError(f"{path} is shorter than expected")
            left -= len(chunk)
            yield chunk


async def _text(request: Request, status: int, message: str, extra: Headers | None = None) -> int:
    body = f"{status} {message}\n".encode()
    headers = [
        ("content-type", "text/plain; charset=utf-8"),
        *(extra or []),
        ("content-length", str(len(body))),
    ]
    await request.respond(status, headers, body)
    return status


async def _error(request: Request, exc: EggproxyError) -> int:
    return await _text(request, http_status(exc), str(exc))
