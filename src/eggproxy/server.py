"""The standalone server's application: an RSGI app run by granian.

Hits are answered from disk without leaving the event loop: one ``stat``,
then either the bytes of a small file (kept in a bounded memory cache that
the same ``stat`` validates, so it never disagrees with the disk) or a
file response that granian streams from disk in Rust.  Misses and stale
pages run the core in a worker thread; a missed file streams to the client
as it arrives, with a ``Content-Length``, so a download that fails midway
is cut short instead of looking complete.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from granian._granian import RSGIProtocolClosed  # public as granian.rsgi.ProtocolClosed

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
            data = handle.read()
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


class App:
    """The RSGI application (``__rsgi__``) serving one cache directory."""

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
        # Routing and negotiation are pure: remember recent answers.
        self.route = functools.lru_cache(maxsize=4096)(self._route)
        self.negotiate = functools.lru_cache(maxsize=256)(choose_format)

    def _route(self, path: str) -> Route | EggproxyError:
        try:
            return route(path, self.prefix)
        except EggproxyError as exc:
            return exc

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        log.debug("worker %d ready", os.getpid())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.access_log is not None:
            self.access_log.flush()
        # Downloads still running are aborted; their partial files removed.
        self.proxy.downloader.shutdown()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        started = time.perf_counter()
        status, size, outcome = await self.handle(scope, proto)
        if self.access_log is not None:
            self.access_log.add(
                scope.client.rsplit(":", 1)[0],
                scope.method,
                scope.path,
                scope.http_version,
                status,
                size,
                time.perf_counter() - started,
                outcome,
            )

    async def handle(self, scope: Any, proto: Any) -> tuple[int, int, str]:
        """Answer one request; return (status, body bytes, hit/miss/stale/...)."""
        if scope.method not in ("GET", "HEAD"):
            return _text(proto, 405, "method not allowed", [("allow", "GET, HEAD")]), 0, "-"
        target = self.route(scope.path)
        if isinstance(target, EggproxyError):
            return _error(proto, target), 0, "-"
        try:
            if target.kind == "redirect":
                assert target.location is not None
                proto.response_empty(301, [("location", target.location)])
                return 301, 0, "-"
            if target.kind == "file":
                assert target.project is not None and target.filename is not None
                return await self.file(scope, proto, target.project, target.filename)
            return await self.page(scope, proto, target.project)
        except EggproxyError as exc:
            # A 404 is an everyday answer (pip probes names); warn about failures.
            level = logging.INFO if http_status(exc) == 404 else logging.WARNING
            log.log(level, "%s %s: %s", scope.method, scope.path[:200], exc)
            return _error(proto, exc), 0, "error"

    async def page(
        self, scope: Any, proto: Any, project: NormalizedName | None
    ) -> tuple[int, int, str]:
        fmt, content_type = self.negotiate(scope.headers.get("accept"))
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
        status, size = self.send(scope, proto, result.path, st, headers)
        return status, size, result.outcome

    async def file(
        self, scope: Any, proto: Any, project: NormalizedName, filename: str
    ) -> tuple[int, int, str]:
        path = self.proxy.cache.file_path(project, filename)
        headers = [("content-type", file_content_type(filename)), ("cache-control", IMMUTABLE)]
        try:
            st = path.stat()
        except FileNotFoundError:
            return await self.miss(scope, proto, project, filename, headers)
        status, size = self.send(scope, proto, path, st, headers)
        return status, size, "hit"

    async def miss(
        self, scope: Any, proto: Any, project: NormalizedName, filename: str, headers: Headers
    ) -> tuple[int, int, str]:
        loop = asyncio.get_running_loop()
        if scope.method == "HEAD":
            # Tell what a GET would get without downloading anything.
            wanted = await loop.run_in_executor(self.pool, self.proxy.wanted, project, filename)
            if wanted.size is not None:
                headers.append(("content-length", str(wanted.size)))
            proto.response_empty(200, headers)
            return 200, 0, "miss"
        result = await loop.run_in_executor(self.pool, self.proxy.open_file, project, filename)
        if result.stream is None:  # complete already (a fast or concurrent download)
            status, size = self.send(scope, proto, result.path, result.path.stat(), headers)
            return status, size, "miss"
        headers.append(("content-length", str(result.size)))
        transport = proto.response_stream(200, headers)
        sent, complete = await self._pump(loop, result.stream, transport, result.path.name)
        # Granian ends the response once the transport is released; one shorter than
        # its Content-Length is cut (the connection closed), so no client takes it
        # for complete.  (Raising instead would keep the transport alive in the
        # traceback and leave the client waiting until the garbage collector ran.)
        del transport
        return 200, sent, "miss" if complete else "aborted"

    async def _pump(
        self, loop: asyncio.AbstractEventLoop, stream: Iterator[bytes], transport: Any, name: str
    ) -> tuple[int, bool]:
        """Send the stream's bytes; return how many, and whether the stream completed.

        The stream holds back its last bytes until the download is verified
        (:func:`eggproxy.download._follow`), so a file that fails its hash
        check never reaches a client whole.
        """
        sent = 0
        try:
            while True:
                chunk = await loop.run_in_executor(self.pool, _next_chunk, stream)
                if isinstance(chunk, BaseException):
                    log.warning("aborting response for %s after %d bytes: %s", name, sent, chunk)
                    return sent, False
                if chunk is None:
                    return sent, True
                try:
                    await transport.send_bytes(chunk)
                except RSGIProtocolClosed:  # the download goes on for the others
                    log.info("client left %s after %d bytes", name, sent)
                    return sent, False
                sent += len(chunk)
        finally:
            await loop.run_in_executor(self.pool, _close, stream)

    def send(
        self, scope: Any, proto: Any, path: Path, st: os.stat_result, headers: Headers
    ) -> tuple[int, int]:
        """Send a file from disk, honouring HEAD, conditional GET and Range."""
        name = str(path)
        data = b""
        if st.st_size <= SMALL_FILE:
            data, v = self.small.get(name, st)
        else:
            v = Validators.from_stat(st)
        get = scope.headers.get
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
            proto.response_empty(304, headers)
            return 304, 0
        if decision.status == 416:
            headers.append(("content-range", f"bytes */{v.size}"))
            proto.response_empty(416, headers)
            return 416, 0
        start, end = (decision.start, decision.end) if decision is not WHOLE else (0, v.size)
        if decision.status == 206:
            headers.append(("content-range", f"bytes {start}-{end - 1}/{v.size}"))
        # Granian sends a file response chunked unless told its length.
        headers.append(("content-length", str(end - start)))
        if scope.method == "HEAD":
            proto.response_empty(decision.status, headers)
            return decision.status, 0
        if data or v.size == 0:
            proto.response_bytes(
                decision.status, headers, data[start:end] if start or end < v.size else data
            )
        elif decision.status == 206:
            proto.response_file_range(decision.status, headers, name, start, end)
        else:
            proto.response_file(200, headers, name)
        return decision.status, end - start


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


def _text(proto: Any, status: int, message: str, extra: Headers | None = None) -> int:
    headers = [("content-type", "text/plain; charset=utf-8"), *(extra or [])]
    proto.response_bytes(status, headers, f"{status} {message}\n".encode())
    return status


def _error(proto: Any, exc: EggproxyError) -> int:
    return _text(proto, http_status(exc), str(exc))
