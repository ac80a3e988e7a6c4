"""Background revalidations: a few daemon threads, one job per page at a time.

RFC 5861 stale-while-revalidate: a page a little past its TTL is answered
from disk at once and revalidated here, after the answer.  Bounded: at most
``threads`` run at once and ``queued`` wait; a job for a page already queued
or running is dropped, and so is one that finds the queue full (the next
request for that page asks again).  The threads are daemons, started on
first use: an Apache child or a granian worker that exits never waits for a
slow upstream (the page's lock is released with the process; the page simply
stays stale until the next request).  Coordination across processes is the
page's lock, taken with ``try_lock`` by the job itself.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Hashable
from typing import Final

log = logging.getLogger(__name__)

THREADS: Final = 4  # revalidations running at once, per process
QUEUED: Final = 256  # revalidations waiting, per process


class Background:
    """Runs deduplicated jobs on a few daemon threads."""

    def __init__(self, threads: int = THREADS, queued: int = QUEUED) -> None:
        self._threads = threads
        self._queue: queue.Queue[tuple[Hashable, Callable[[], None]] | None] = queue.Queue(queued)
        self._keys: set[Hashable] = set()
        self._lock = threading.Lock()
        self._started: list[threading.Thread] = []
        self._closed = False

    def submit(self, key: Hashable, job: Callable[[], None]) -> bool:
        """Queue ``job`` unless one for ``key`` is queued or running; return if queued."""
        with self._lock:
            if self._closed or key in self._keys:
                return False
            try:
                self._queue.put_nowait((key, job))
            except queue.Full:
                return False
            self._keys.add(key)
            if len(self._started) < self._threads:
                thread = threading.Thread(target=self._run, name="eggproxy-revalidate", daemon=True)
                self._started.append(thread)
                thread.start()
        return True

    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return len(self._keys)

    def close(self) -> None:
        """Take no more jobs; the threads stop after their current one."""
        with self._lock:
            self._closed = True
            threads = len(self._started)
        for _ in range(threads):
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            key, job = item
            try:
                job()
            except Exception:  # a job logs its own failures; this is a bug
                log.exception("background revalidation of %s failed", key)
            finally:
                with self._lock:
                    self._keys.discard(key)
