"""Sending files from disk: small ones from memory, large ones by granian, ranges by us.

A hit costs one ``stat`` in the front end.  Files up to :data:`SMALL_FILE`
are sent from a bounded in-memory copy that the same ``stat`` validates
(inode, size, mtime), so it never disagrees with the disk; larger ones are
handed to granian with the ``http.response.pathsend`` extension and sent
from disk in Rust.  A stream (a miss following its download, or a range of
a large file) is pumped from a thread pool of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Final

from eggproxy.download import Follower
from eggproxy.errors import EggproxyError
from eggproxy.standalone.openfiles import OpenFiles
from eggproxy.standalone.request import END, Headers, Receive, Request
from eggproxy.standalone.static import Decision, Validators, decide

log = logging.getLogger("eggproxy.server")

PATHSEND: Final = "http.response.pathsend"
READ_CHUNK: Final = 256 * 1024  # bytes read per step when Python streams a file's range
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

    def __len__(self) -> int:
        return len(self._items)

    def holds(self, path: str) -> bool:
        return path in self._items

    def get(self, path: str, st: os.stat_result) -> tuple[bytes, Validators]:
        """The file's bytes and validators, read again only if the file changed."""
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        item = self._items.get(path)
        if item is not None and item[0] == key:
            self._items.move_to_end(path)
            return item[1], item[2]
        data, st = _read_whole(path)
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


class FileSender:
    """Sends files and streams for one worker: the small-file memory and the stream pool."""

    def __init__(self) -> None:
        self.small = SmallFiles()
        self.opened = OpenFiles()  # large files, sent by descriptor (openfiles.py)
        # Following a download waits on the upstream for as long as it takes: a
        # pool of its own, so that slow streams never starve page fetches.
        self.stream_pool = ThreadPoolExecutor(STREAM_THREADS, thread_name_prefix="eggproxy-stream")

    def close(self) -> None:
        self.stream_pool.shutdown(wait=False, cancel_futures=True)
        self.opened.close()

    async def whole(self, stream: Follower) -> bool | BaseException:
        """Whether the download ends (verified, in place) within its short wait, or its error.

        Waited for in the stream pool, whose threads are there for long waits: a
        herd on one file never holds the core's threads that page misses need.
        (The stream is closed unless it is still to be followed.)
        """
        loop = asyncio.get_running_loop()
        whole = await loop.run_in_executor(self.stream_pool, _whole, stream)
        if whole is not False:
            await loop.run_in_executor(self.stream_pool, _close, stream)
        return whole

    async def first(self, stream: Iterator[bytes]) -> bytes | BaseException | None:
        """The stream's first chunk, ``None`` if it is empty, or the error that ended it.

        Taken before the response starts, so that a failure before the first
        byte is answered with its own status.  (The stream is closed on error.)
        """
        loop = asyncio.get_running_loop()
        chunk = await loop.run_in_executor(self.stream_pool, _next_chunk, stream)
        if chunk is None or isinstance(chunk, BaseException):
            await loop.run_in_executor(self.stream_pool, _close, stream)
        return chunk

    async def pump(
        self, request: Request, stream: Iterator[bytes], name: str, first: bytes = b""
    ) -> tuple[int, bool]:
        """Send ``first``, then the stream's bytes, after the response's start.

        Returns how many bytes were sent, and whether the stream was whole.

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
            if first:
                await request.send({"type": "http.response.body", "body": first, "more_body": True})
                sent = len(first)
            while True:
                chunk = await loop.run_in_executor(self.stream_pool, _next_chunk, stream)
                if chunk is None:
                    await request.send(END)
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
            source = name  # not used: sent from memory
        else:
            # Held open before anything is sent (a file gone since the stat is the
            # caller's miss), and described as opened: a page replaced since the
            # stat is sent whole, with its own length.
            source, st = self.opened.path(name, st)
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
        if decision.status == 200 and PATHSEND in request.extensions:
            await request.start(decision.status, headers)
            await request.send({"type": PATHSEND, "path": source})
            return 200, end - start
        # Opened before the headers go: ``source`` may name a descriptor held only for a
        # while, and the reads run later, in the stream pool.
        handle = open(source, "rb")  # noqa: SIM115 -- closed by _read_range
        await request.start(decision.status, headers)
        sent, _complete = await self.pump(request, _read_range(handle, start, end), path.name)
        return decision.status, sent


def _read_whole(path: str) -> tuple[bytes, os.stat_result]:
    """A file's bytes and the ``stat`` of the version read, in four system calls.

    The file may have been replaced since the caller's ``stat`` (a page
    revalidated): the ``fstat`` describes the version actually read, so headers
    match the bytes.  Cache files are replaced by rename, never rewritten in
    place, so the descriptor's file keeps that size.  Not ``open()``: a buffered
    file costs six more calls (``ioctl``, two ``lseek``, two more ``fstat``, a
    last ``read``), each a release of the GIL that a busy worker pays a thread
    switch for (issue 13, round 8).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        chunks: list[bytes] = []
        left = st.st_size
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:  # cut short in place (not a cache file): what is there, as read()
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks), st


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


def _whole(stream: Follower) -> bool | BaseException:
    """:meth:`Follower.whole`, its error returned rather than raised (as :func:`_next_chunk`)."""
    try:
        return stream.whole()
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


def _read_range(handle: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """The bytes ``start:end`` of the open file, in chunks (read in a worker thread)."""
    path = handle.name
    with handle:
        handle.seek(start)
        left = end - start
        while left > 0:
            chunk = handle.read(min(READ_CHUNK, left))
            if not chunk:
                raise OSError(f"{path} is shorter than expected")
            left -= len(chunk)
            yield chunk
