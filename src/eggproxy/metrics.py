"""Counting what the proxy does, for Prometheus and the status page.

The :class:`~eggproxy.proxy.Proxy` owns one :class:`Metrics` (or a
:class:`NullMetrics` when metrics are off) and is the only caller, so both
front ends count the same things under the same names (docs/decisions/0010).

Values live in ``prometheus-client``'s multiprocess mode: each process
writes its own memory-mapped files in one directory and a scrape adds them
up, so ``eggproxy serve --workers N``, Apache's many processes and the
``eggproxy metrics`` command all read one set of numbers.  A page hit must
stay a ``stat`` and a send: :meth:`Metrics.served` only bumps an in-memory
counter under a lock; a background thread (and every scrape in this process)
writes the sums to the files at most :data:`FLUSH_INTERVAL` seconds later.

Beside the numbers, each process keeps what the status page lists (each
source's last success, last error and latency; the latest misses and
errors) and writes it to ``status-<pid>.json`` in the same directory when
it changed.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from eggproxy.sources.base import FileResponse

Kind = Literal["page", "file", "metadata"]
Served = Literal["hit", "miss", "revalidated", "stale", "error"]
KINDS: Final[tuple[Kind, ...]] = ("page", "file", "metadata")
OUTCOMES: Final[tuple[Served, ...]] = ("hit", "miss", "revalidated", "stale", "error")

ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_INTERVAL: Final = 1.0  # seconds a counted request may wait to reach the files
RECENT: Final = 20  # misses and errors remembered per process
STATUS_PREFIX: Final = "status-"
# Seconds; upstream pages take tens of milliseconds, files up to minutes (to headers).
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_swap_lock = threading.Lock()


@dataclass(frozen=True)
class CacheUsage:
    """What the cache holds, counted by a walk of its directory."""

    bytes: int
    files: int  # distribution and metadata files (pages not counted)
    projects: int


@contextlib.contextmanager
def _multiprocess_values(directory: Path) -> Iterator[Any]:
    """Build metrics whose values live in ``directory`` (multiprocess mode).

    prometheus-client chooses its value class from the environment when it
    is imported; swapping it while our metrics are built lets one process
    (tests, Apache with several configurations) hold metrics in different
    directories, and leaves every other user of the library alone.
    """
    from prometheus_client import values

    with _swap_lock:
        old_class, old_env = values.ValueClass, os.environ.get(ENV)
        os.environ[ENV] = str(directory)
        value_class = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        values.ValueClass = value_class
        try:
            yield value_class
        finally:
            values.ValueClass = old_class
            if old_env is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = old_env


class NullMetrics:
    """Metrics off: every call does nothing."""

    enabled: bool = False
    directory: Path | None = None

    def served(self, kind: Kind, outcome: Served, nbytes: int, what: str = "") -> None:
        pass

    def upstream(
        self, source: str, seconds: float, *, error: str | None = None, what: str = ""
    ) -> None:
        pass

    def upstream_bytes(self, source: str, nbytes: int) -> None:
        pass

    def joined(self) -> None:
        pass

    @contextlib.contextmanager
    def downloading(self) -> Iterator[None]:
        yield

    def evicted(self, files: int, nbytes: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def counting(self, source: str, response: FileResponse) -> FileResponse:
        return response


class Metrics(NullMetrics):
    """Counters, gauges and a histogram in a multiprocess directory."""

    enabled = True

    def __init__(
        self,
        directory: Path,
        sources: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.directory: Path | None = directory
        self._dir = directory
        self.clock = clock
        directory.mkdir(parents=True, exist_ok=True)
        self._closed = False
        with _multiprocess_values(directory) as self._values:
            requests = Counter(
                "eggproxy_requests",
                "Requests answered, by kind and outcome.",
                ["kind", "outcome"],
                registry=None,
            )
            served_bytes = Counter(
                "eggproxy_served_bytes", "Body bytes sent to clients.", ["kind"], registry=None
            )
            up_requests = Counter(
                "eggproxy_upstream_requests",
                "Requests sent to a source.",
                ["source"],
                registry=None,
            )
            up_bytes = Counter(
                "eggproxy_upstream_bytes",
                "Body bytes received from a source.",
                ["source"],
                registry=None,
            )
            up_errors = Counter(
                "eggproxy_upstream_errors",
                "Requests to a source that failed (transport, 5xx, unexpected 4xx).",
                ["source"],
                registry=None,
            )
            latency = Histogram(
                "eggproxy_upstream_request_duration_seconds",
                "Seconds until a source answered (response headers; whole body for pages).",
                ["source"],
                buckets=LATENCY_BUCKETS,
                registry=None,
            )
            last_ok = Gauge(
                "eggproxy_upstream_last_success_timestamp_seconds",
                "When a source last answered.",
                ["source"],
                multiprocess_mode="max",
                registry=None,
            )
            self._joins = Counter(
                "eggproxy_download_joins",
                "Requests for a file that joined a download in flight instead of starting one.",
                registry=None,
            )
            self._downloads = Counter(
                "eggproxy_downloads", "Downloads started from a source.", registry=None
            )
            self._inflight = Gauge(
                "eggproxy_downloads_in_flight",
                "Downloads running now.",
                multiprocess_mode="livesum",
                registry=None,
            )
            self._evicted_files = Counter(
                "eggproxy_evicted_files", "Files evicted by the cache limit.", registry=None
            )
            self._evicted_bytes = Counter(
                "eggproxy_evicted_bytes", "Bytes evicted by the cache limit.", registry=None
            )
            # Every child made now, while the value class points at ``directory``.
            self._requests = {(k, o): requests.labels(k, o) for k in KINDS for o in OUTCOMES}
            self._served_bytes = {k: served_bytes.labels(k) for k in KINDS}
            names = list(dict.fromkeys(sources))
            self._up = {
                name: (
                    up_requests.labels(name),
                    up_bytes.labels(name),
                    up_errors.labels(name),
                    latency.labels(name),
                    last_ok.labels(name),
                )
                for name in names
            }
        self._lock = threading.Lock()
        self._pending: dict[tuple[Kind, Served], list[int]] = {}  # [requests, bytes]
        self._health: dict[str, dict[str, Any]] = {name: {} for name in names}
        self._misses: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._errors: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._dirty = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eggproxy-metrics", daemon=True)
        self._thread.start()
        # What the last second counted is not lost when the process exits.
        atexit.register(self.flush)

    # --- counting ---------------------------------------------------------

    def served(self, kind: Kind, outcome: Served, nbytes: int, what: str = "") -> None:
        """One answered request; the hit path: one dict update under a lock."""
        key = (kind, outcome)
        with self._lock:
            entry = self._pending.get(key)
            if entry is None:
                self._pending[key] = [1, nbytes]
            else:
                entry[0] += 1
                entry[1] += nbytes
            if outcome != "hit" and (outcome == "miss" or outcome == "error"):
                event = {"time": self.clock(), "kind": kind, "what": what}
                (self._misses if outcome == "miss" else self._errors).append(event)
                self._dirty = True

    def upstream(
        self, source: str, seconds: float, *, error: str | None = None, what: str = ""
    ) -> None:
        """One request to ``source`` that took ``seconds``; ``error`` if it failed."""
        children = self._up.get(source)
        if children is None:
            return
        requests, _bytes, errors, latency, last_ok = children
        self._apply(requests.inc)
        self._apply(latency.observe, seconds)
        now = self.clock()
        with self._lock:
            health = self._health[source]
            health["latency"] = seconds
            if error is None:
                health["last_success"] = now
            else:
                health["last_error"] = now
                health["error"] = error
                self._errors.append({"time": now, "kind": "upstream", "what": what, "error": error})
            self._dirty = True
        if error is None:
            self._apply(last_ok.set, now)
        else:
            self._apply(errors.inc)

    def upstream_bytes(self, source: str, nbytes: int) -> None:
        children = self._up.get(source)
        if children is not None and nbytes:
            self._apply(children[1].inc, nbytes)

    def joined(self) -> None:
        self._apply(self._joins.inc)

    @contextlib.contextmanager
    def downloading(self) -> Iterator[None]:
        self._apply(self._downloads.inc)
        self._apply(self._inflight.inc)
        try:
            yield
        finally:
            self._apply(self._inflight.dec)

    def evicted(self, files: int, nbytes: int) -> None:
        self._apply(self._evicted_files.inc, files)
        self._apply(self._evicted_bytes.inc, nbytes)

    def counting(self, source: str, response: FileResponse) -> FileResponse:
        """``response`` whose body bytes are added to the source's count as read."""
        return _CountingResponse(response, lambda n: self.upstream_bytes(source, n))

    # --- writing ----------------------------------------------------------

    def flush(self) -> None:
        """Write the batched request counts, and the status file if it changed."""
        with self._lock:
            pending, self._pending = self._pending, {}
            status = self._status_locked() if self._dirty else None
            self._dirty = False
        for (kind, outcome), (count, size) in pending.items():
            self._apply(self._requests[kind, outcome].inc, count)
            if size:
                self._apply(self._served_bytes[kind].inc, size)
        if status is not None:
            from eggproxy.cache import write_atomic

            with contextlib.suppress(OSError):
                path = self._dir / f"{STATUS_PREFIX}{os.getpid()}.json"
                write_atomic(path, json.dumps(status).encode())

    def _status_locked(self) -> dict[str, Any]:
        return {
            "sources": {name: dict(h) for name, h in self._health.items()},
            "misses": list(self._misses),
            "errors": list(self._errors),
        }

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self.flush()

    def _apply(self, update: Callable[..., None], *args: float) -> None:
        """Write one value, unless closed (a download aborted while the worker stops)."""
        if not self._closed:
            with contextlib.suppress(ValueError):  # its file closed meanwhile
                update(*args)

    def close(self) -> None:
        """Write what is pending and release the value files."""
        self._stop.set()
        self.flush()
        self._closed = True
        atexit.unregister(self.flush)
        self._values.close_all_files()


class _CountingResponse:
    """A file download that reports its body bytes once it is read (or closed)."""

    def __init__(self, response: FileResponse, report: Callable[[int], None]) -> None:
        self._response = response
        self._report = report

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        received = 0
        try:
            for chunk in self._response.iter_content(chunk_size):
                received += len(chunk)
                yield chunk
        finally:
            self._report(received)

    def __enter__(self) -> _CountingResponse:
        self._response.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._response.__exit__(*exc)


# --- reading: scrapes, the status page, the CLI ---------------------------


def exposition(directory: Path, usage: CacheUsage | None) -> bytes:
    """The text exposition of every process's values in ``directory`` (and the cache's size)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    if usage is not None:
        registry.register(_CacheCollector(usage))
    return bytes(generate_latest(registry))


def totals(directory: Path) -> dict[str, float]:
    """Every sample summed over processes, keyed ``name{label="v",...}`` as in the text."""
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry()
    collector = MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    found: dict[str, float] = {}
    for family in collector.collect():  # type: ignore[no-untyped-call]
        for sample in family.samples:
            found[sample_key(sample.name, sample.labels)] = sample.value
    return found


def sample_key(name: str, labels: Mapping[str, str]) -> str:
    """``name{a="1",b="2"}`` with labels sorted: how tests and the status page match samples."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def process_status(directory: Path) -> list[dict[str, Any]]:
    """The status files of every process that wrote one (dead ones included)."""
    found = []
    for path in sorted(directory.glob(f"{STATUS_PREFIX}*.json")):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_bytes()))
    return found


_DB = re.compile(r"_(\d+)\.db$")


def mark_dead(directory: Path) -> list[int]:
    """Drop the live gauges of processes that died (a worker restarted, Apache recycled one).

    Their counters stay: a counter's total includes what dead processes counted.
    """
    from prometheus_client.multiprocess import mark_process_dead

    dead = set()
    for name in glob.glob(str(directory / "gauge_live*_*.db")):
        found = _DB.search(name)
        if found and not _alive(int(found.group(1))):
            dead.add(int(found.group(1)))
    for pid in dead:
        with contextlib.suppress(OSError):  # another user's directory: leave it
            mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return sorted(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process (Apache's) is alive
    return True


OWNER_FILE: Final = "serve.lock"


class DirectoryInUse(Exception):
    """Another live ``eggproxy serve`` counts into this metrics directory."""

    def __init__(self, directory: Path, pid: str) -> None:
        self.directory = directory
        self.pid = pid
        super().__init__(f"{directory} is in use by another eggproxy serve (pid {pid or '?'})")


def claim_directory(directory: Path) -> int:
    """Hold ``directory`` for this server's life; the descriptor to keep open.

    Two servers on one machine and one cache would share ``<cache>/.metrics/<host>``:
    the second's :func:`reset_directory` would delete the first's counts under it.  A
    POSIX record lock on :data:`OWNER_FILE` belongs to the calling process alone
    (forked workers do not inherit it) and goes with it, so a server that died holds
    nothing, even if a worker of it lingers.  Raises :class:`DirectoryInUse`.
    """
    import errno
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / OWNER_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        try:
            pid = (directory / OWNER_FILE).read_text().strip()
        except OSError:
            pid = ""
        raise DirectoryInUse(directory, pid) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def reset_directory(directory: Path) -> None:
    """Empty ``directory`` of a previous run's values (``eggproxy serve`` starting)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.iterdir():
        if path.suffix in (".db", ".json") and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class _CacheCollector:
    """The cache's size, files and projects, as measured for this scrape."""

    def __init__(self, usage: CacheUsage) -> None:
        self.usage = usage

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            "eggproxy_cache_size_bytes", "Bytes in the cache directory.", value=self.usage.bytes
        )
        yield GaugeMetricFamily(
            "eggproxy_cache_files", "Distribution and metadata files cached.", self.usage.files
        )
        yield GaugeMetricFamily(
            "eggproxy_cache_projects", "Projects with a cached page.", self.usage.projects
        )
