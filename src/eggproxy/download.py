"""Downloads: fetch a file once, verify it, and make it visible atomically.

One holder of the file's lock downloads into ``.<file>.part``; any other
thread or process that wants the same file waits for the lock (blocking
callers) or follows the partial file as it grows (streaming callers).  The
file is renamed into place only after its size and declared hash match, so
a static server never sees a file that was not verified.

A streaming caller can first wait up to :data:`WHOLE_WAIT` for the whole
file (:meth:`Follower.whole`): when it is verified and in place by then, the
front end sends it from disk without Python in the loop (issue 12: a herd on
a fast link at the clients' speed), and a failure in that time is a proper
error status rather than a cut response.  Its last byte comes no later that
way, as a stream holds back its last bytes until the file is in place
anyway; only its first byte may come up to that long later.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

import requests

from eggproxy import failures
from eggproxy.cache import Cache, disk_full, write_all, write_atomic
from eggproxy.errors import EggproxyError, IntegrityError, UpstreamError, UpstreamUnavailable
from eggproxy.metrics import NullMetrics
from eggproxy.reasons import reason
from eggproxy.sources.base import FileResponse

log = logging.getLogger(__name__)

# Strongest first: the first algorithm the upstream declared is checked.
_PREFERRED: Final = ("sha512", "sha384", "sha256", "sha224", "blake2b", "sha1", "md5")
_POLL: Final = 0.005  # seconds between looks at a growing partial file
# Seconds a streaming caller waits for the whole verified file before its first
# byte (well below clients' read timeouts: pip 15 s, uv 30 s).
WHOLE_WAIT: Final = 2.0
# Bytes per step of a download and of a follower's reads: fewer Python steps (and
# GIL hand-offs) per file than CHUNK_SIZE, small enough that a follower of a slow
# link is not held up by a step.
DOWNLOAD_CHUNK: Final = 256 * 1024
FOLLOW_CHUNK: Final = 256 * 1024
# Files up to this size (declared by the page) are downloaded in the thread that asked,
# hashed there, and sent whole (issue 13: each thread hand-off of a miss costs about as
# much as the upstream's round trip on a fast link).  Their client gets no byte until the
# file is verified: on a slow link (30 kB/s) 256 KiB take 8-9 s, within the read timeouts
# of pip (15 s) and uv (30 s).  A larger file streams as it arrives (WHOLE_WAIT).
INLINE_MAX: Final = 256 * 1024


@dataclass(frozen=True)
class Wanted:
    """A file to fetch: where from, where to, and what it must hash to."""

    url: str
    target: Path
    hashes: Mapping[str, str]
    # Opens ``url`` at the source that listed it (remote index or local folder).
    opener: Callable[[str], FileResponse] = field(compare=False)
    size: int | None = None
    source: str = ""  # the name of the source that listed it (for logs and metrics)
    # Small by nature though its size is not declared (PEP 658 metadata, PEP 740 provenance).
    small: bool = False

    @property
    def inline(self) -> bool:
        """Fetched in the asking thread and sent whole, not streamed (:data:`INLINE_MAX`)."""
        return self.small or (self.size is not None and self.size <= INLINE_MAX)


def choose_hash(hashes: Mapping[str, str]) -> tuple[str, str] | None:
    for name in _PREFERRED:
        if name in hashes:
            return name, hashes[name].lower()
    for name, digest in hashes.items():
        if name in hashlib.algorithms_available:
            return name, digest.lower()
    return None


class Downloader:
    """Fetches files into a :class:`Cache`, at most once at a time per file."""

    def __init__(
        self, cache: Cache, max_parallel: int = 16, metrics: NullMetrics | None = None
    ) -> None:
        self.cache = cache
        # Counts downloads started, in flight, and requests that joined one (the herd saved).
        self.metrics = metrics or NullMetrics()
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="eggproxy-download")
        # Small files fetched in the asking thread count against the same bound: when
        # max_parallel of them are in flight, the next goes to the pool (and waits there).
        self._inline_slots = threading.BoundedSemaphore(max_parallel)
        # Hashes a download's chunk while its next one is read and written.
        self._hashing = ThreadPoolExecutor(max_parallel, thread_name_prefix="eggproxy-hash")
        self._inflight: dict[Path, Future[Path]] = {}
        self._inflight_lock = threading.Lock()
        self._stopping = threading.Event()
        # Wakes followers in this process as soon as a download announces its size, writes
        # a chunk or ends (issue 13: no 5 ms naps per miss); other processes still poll.
        self._progress = threading.Condition()
        self._waiting = 0  # threads in _wait: nobody to wake, no futex call per chunk

    def _notify(self) -> None:
        if not self._waiting:  # read without the lock: a missed wake-up costs one poll
            return
        with self._progress:
            self._progress.notify_all()

    def _wait(self) -> None:
        """Until a download here makes progress, or one poll interval (another process's)."""
        with self._progress:
            self._waiting += 1
            try:
                self._progress.wait(_POLL)
            finally:
                self._waiting -= 1

    def ensure(self, wanted: Wanted, *, announce: bool = True) -> Path:
        """Make sure ``wanted.target`` is in the cache, downloading it if needed.

        Blocks while another thread or process downloads the same file; then
        uses its result instead of downloading again.
        """
        target = wanted.target
        if target.exists():  # completed since the caller looked
            self.metrics.joined()
            return target
        waiting_since = time.time()
        with self.cache.lock(target):
            if target.exists():  # another holder finished while we waited
                self.metrics.joined()
                return target
            # Issue 16: the attempt we waited on failed: share its failure.
            marked = failures.check(target, waiting_since, time.time())
            try:
                with self.metrics.downloading():
                    self._download(wanted, announce=announce)
            except BaseException as exc:
                if not self._stopping.is_set():  # a worker stopping is no upstream failure
                    failures.record(target, exc, time.time())
                raise
            if marked:
                failures.clear(target)
        return target

    def stream(self, wanted: Wanted) -> tuple[int, Follower | None]:
        """Start (or join) the download; return its size and the bytes as they arrive.

        Blocks until the size is known (the upstream's headers arrived), so
        that a front end can answer with a ``Content-Length`` and a failure
        before the first byte becomes a proper error status.  The download
        runs in a background thread (one per file per process, whoever asks),
        so a client that goes away does not cancel it for the others.  The
        iterator ends normally only once the file is verified and in the
        cache; on any failure it raises, so the front end can abort the
        response instead of completing it with bad bytes.  ``None`` instead
        of an iterator means the file is complete on disk already.
        """
        future, ours = self._start(wanted)
        target, sidecar = wanted.target, self.cache.size_path(wanted.target)
        if ours:  # a small file, fetched right here: no hand-off to the pool and back
            try:
                future.set_result(self.ensure(wanted, announce=False))
            except Exception as exc:
                future.set_exception(exc)
                _raise_failure(future)  # the status its followers get (a 502, never a 500)
            except BaseException as exc:
                future.set_exception(exc)
                raise
            finally:
                self._inline_slots.release()
            return target.stat().st_size, None
        while True:
            if target.exists():
                return target.stat().st_size, None
            try:
                size = int(sidecar.read_text())
                break
            except (FileNotFoundError, ValueError):
                pass
            if future.done():
                _raise_failure(future)  # the download's error, as its followers get it
                return target.stat().st_size, None
            self._wait()
        return size, Follower(target, self.cache.part_path(target), future, self._wait)

    def shutdown(self) -> None:
        """Abort downloads in progress (their partial files are removed)."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._hashing.shutdown(wait=False, cancel_futures=True)

    def _start(self, wanted: Wanted) -> tuple[Future[Path], bool]:
        """The download of ``wanted`` in flight here, and whether the caller is to run it.

        A small file (:attr:`Wanted.inline`) that nobody here fetches yet is the
        caller's to fetch, while fewer than ``max_parallel`` such are in flight; any
        other is fetched in the pool.  Either way it is the one
        future that other threads of this process join.
        """
        ours = False
        with self._inflight_lock:
            future = self._inflight.get(wanted.target)
            if future is not None and not future.done():
                self.metrics.joined()
                return future, False
            if (
                wanted.inline
                and not self._stopping.is_set()
                and self._inline_slots.acquire(blocking=False)
            ):
                future = Future()
                future.set_running_or_notify_cancel()
                ours = True
            else:
                future = self._pool.submit(self.ensure, wanted)
            self._inflight[wanted.target] = future
        # Outside the lock: a future already done runs the callback right here.
        future.add_done_callback(lambda done: self._forget(wanted.target, done))
        future.add_done_callback(lambda _done: self._notify())
        return future, ours

    def _forget(self, target: Path, future: Future[Path]) -> None:
        with self._inflight_lock:
            if self._inflight.get(target) is future:
                del self._inflight[target]

    def _download(self, wanted: Wanted, *, announce: bool = True) -> None:
        """Download into the partial file, verify, rename.  Caller holds the lock.

        ``announce``: write the size beside the partial file for followers in other
        processes to stream it.  A small file fetched inline is not announced: its
        followers wait for the whole file (as they would, :data:`WHOLE_WAIT`).
        """
        part = self.cache.part_path(wanted.target)
        sidecar = self.cache.size_path(wanted.target)
        for leftover in (part, sidecar):  # left by a holder that died; we hold the lock
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        expected = choose_hash(wanted.hashes)
        if expected is None:
            log.warning("no usable hash declared for %s; checking size only", wanted.url)
        # A small file is hashed here: a hand-off to the hashing pool costs more than its hash.
        hashing = self._hashing if announce else None
        digest = _Digest(hashlib.new(expected[0]), hashing) if expected else None
        size = 0
        started = time.monotonic()
        response = wanted.opener(wanted.url)
        fd = -1
        try:
            with response:
                declared = response.headers.get("Content-Length")
                length = wanted.size if wanted.size is not None else declared
                if length is not None and announce:
                    # Followers need the size before the first byte (Content-Length).
                    write_atomic(sidecar, str(length).encode())
                    self._notify()
                fd = self.cache.create_part(part)  # its folder too, if never made
                try:
                    for chunk in response.iter_content(DOWNLOAD_CHUNK):
                        if self._stopping.is_set():
                            raise UpstreamError(f"download of {wanted.target.name} cancelled")
                        _write(fd, chunk, wanted.target.name)
                        self._notify()
                        size += len(chunk)
                        if digest is not None:
                            digest.update(chunk)
                except requests.RequestException as exc:
                    raise UpstreamUnavailable(
                        f"download of {wanted.target.name} failed: {reason(exc)}",
                        url=wanted.url,
                    ) from None
            _verify(wanted, size, declared, expected, digest)
            try:
                os.fsync(fd)
                os.replace(part, wanted.target)
            except OSError as exc:
                raise disk_full(exc, wanted.target.name) or exc from None
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            raise
        finally:
            if fd >= 0:
                os.close(fd)
            if announce:
                with contextlib.suppress(FileNotFoundError):
                    sidecar.unlink()
        log.info(
            "cached %s (%d bytes, %.2fs)", wanted.target.name, size, time.monotonic() - started
        )


class _Digest:
    """A hash updated in a pool thread, one chunk at a time, in order.

    hashlib releases the GIL while it hashes more than a few kB, so hashing
    chunk n overlaps reading and writing chunk n+1: a fast download is not
    bound by the hash (sha256: about 0.25 s per 100 MB here) on top of the rest.
    """

    def __init__(self, digest: hashlib._Hash, pool: ThreadPoolExecutor | None) -> None:
        self._digest = digest
        self._pool = pool
        self._pending: Future[None] | None = None

    def update(self, chunk: bytes) -> None:
        if self._pool is None:  # hashed in the caller's thread
            self._digest.update(chunk)
            return
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._digest.update, chunk)

    def hexdigest(self) -> str:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        return self._digest.hexdigest()


def _write(fd: int, chunk: bytes, name: str) -> None:
    """Write all of ``chunk``; a full disk is an answer (507), not an accident."""
    try:
        write_all(fd, chunk)
    except OSError as exc:
        raise disk_full(exc, name) or exc from None


def _verify(
    wanted: Wanted,
    size: int,
    declared: str | None,
    expected: tuple[str, str] | None,
    digest: _Digest | None,
) -> None:
    name = wanted.target.name
    for what, length in (("declared size", wanted.size), ("Content-Length", declared)):
        if length is not None and int(length) != size:
            raise IntegrityError(name, f"{what} {length}", f"{size} bytes", url=wanted.url)
    if expected is not None and digest is not None and digest.hexdigest() != expected[1]:
        raise IntegrityError(
            name,
            f"{expected[0]}={expected[1]}",
            f"{expected[0]}={digest.hexdigest()}",
            url=wanted.url,
        )


class Follower:
    """The bytes of a download as they arrive; or, if it ends soon, the whole file.

    An iterator of the bytes (:func:`_follow`), with one more question a
    front end asks before the first of them: :meth:`whole`.
    """

    def __init__(
        self, target: Path, part: Path, future: Future[Path], wait: Callable[[], None]
    ) -> None:
        self._target = target
        self._future = future
        self._chunks = _follow(target, part, future, wait)

    def __iter__(self) -> Follower:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()

    def whole(self) -> bool:
        """Wait up to :data:`WHOLE_WAIT` for the download to end; is the file in place?

        Raises the download's error if it failed meanwhile.  True: the verified
        file is complete at its target, to be sent from disk instead of these
        bytes.  Woken by the end of the download in this process or, through the
        file's lock that the download thread here waits on, in another one.
        """
        wait([self._future], timeout=WHOLE_WAIT)
        _raise_failure(self._future)
        return self._future.done() and self._target.exists()


def _follow(
    target: Path, part: Path, future: Future[Path], wait: Callable[[], None]
) -> Generator[bytes]:
    """Yield the bytes of ``part`` as the holder writes them, until it is ``target``.

    The last chunk read is held back until the download is verified, so a
    consumer never has the whole file before its hash was checked: a front
    end that promised a ``Content-Length`` ends short on any failure.
    """
    handle = None
    pending = b""
    try:
        while handle is None:
            if target.exists():  # verified and complete
                handle = open(target, "rb")  # noqa: SIM115 - closed in finally
                break
            try:
                handle = open(part, "rb")  # noqa: SIM115 - closed in finally
            except FileNotFoundError:
                if future.done() and not target.exists():
                    _raise_failure(future)
                    raise UpstreamError(f"download of {target.name} did not complete") from None
                wait()
        while True:
            chunk = handle.read(FOLLOW_CHUNK)
            if chunk:
                if pending:
                    yield pending
                pending = chunk
                continue
            if not future.done():
                wait()
                continue
            _raise_failure(future)
            # Done: our bytes are verified only if what we read became the target.
            if not _same_file(handle, target):
                raise UpstreamError(f"download of {target.name} was replaced; retry")
            rest = pending + handle.read()
            if rest:
                yield rest
            return
    finally:
        if handle is not None:
            handle.close()


def _raise_failure(future: Future[Path]) -> None:
    if future.done():
        if future.cancelled():  # never started: the worker is stopping
            raise UpstreamUnavailable("download cancelled: the server is stopping")
        exc = future.exception()
        if exc is not None and not isinstance(exc, (EggproxyError, OSError)):
            # A pool shut down under the download (CancelledError, RuntimeError): a
            # clean 502 for the clients waiting on it, not a 500.
            raise UpstreamError(f"download interrupted: {exc!r}") from None
        if exc is not None:
            # Each follower raises its own copy: one exception object re-raised
            # in many threads would pile their tracebacks onto it.  (Built without
            # calling __init__, whose signature differs between error classes.)
            clone = type(exc).__new__(type(exc))
            clone.__dict__.update(exc.__dict__)
            clone.args = exc.args
            raise clone from None


def _same_file(handle: BinaryIO, target: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(target).st_ino
    except FileNotFoundError:
        return False
