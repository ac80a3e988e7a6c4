"""Page misses in flight in this process: the first asker fetches, the others wait on it.

Other processes wait on the page's ``flock`` (:mod:`eggproxy.cache`).  Threads of
this process wait here instead, on an event the fetching thread sets as soon as
the new pages are in place, before it writes the page's state and lets go of the
lock: N clients on one page miss are answered together, not one after another
through the lock, and none waits for the writes after the pages (issue 13, item 3).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable


class Flights:
    """Fetches in flight, by key (a project, ``None`` for the root page)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, threading.Event] = {}

    def begin(self, key: Hashable) -> threading.Event | None:
        """``None``: the caller leads, and calls :meth:`land` when done (in a ``finally``).

        Otherwise the event the leader sets once its pages are in place (or it failed).
        """
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                self._flights[key] = threading.Event()
            return flight

    def land(self, key: Hashable) -> None:
        """The leader's pages are in place, or it gave up: wake its waiters (idempotent)."""
        with self._lock:
            flight = self._flights.pop(key, None)
        if flight is not None:
            flight.set()
