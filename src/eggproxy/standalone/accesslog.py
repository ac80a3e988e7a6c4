"""The standalone server's access log: one line per request, CLF or JSON.

``access_log = clf`` (the default) writes the Common Log Format plus the
seconds taken and the outcome; ``access_log = json`` writes one JSON object
per line for log shippers, with the same fields plus the source asked and
the seconds spent waiting on it (``null`` when the cache answered).

Lines are collected in memory and written to stderr in batches (at most
``FLUSH_INTERVAL`` seconds late, or once ``FLUSH_BYTES`` are waiting, and
when the worker stops).  A ``logging`` call and a ``write(2)`` per request
cost as much as serving a cached page does; batching keeps the log on by
default without halving hit throughput.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
from typing import Final, Literal

FLUSH_INTERVAL: Final = 0.2  # seconds
FLUSH_BYTES: Final = 64 * 1024


@functools.lru_cache(maxsize=2)
def _clf_time(second: int) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))


@functools.lru_cache(maxsize=2)
def _iso_time(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


_ascii = json.encoder.encode_basestring_ascii  # a JSON string, as json.dumps writes it


def _string(value: str | None) -> str:
    return "null" if value is None else _ascii(value)


class AccessLog:
    """Batches access lines and writes them to a file descriptor (stderr)."""

    def __init__(self, fd: int | None = None, fmt: Literal["clf", "json"] = "clf") -> None:
        self.fd = sys.stderr.fileno() if fd is None else fd
        self.format = fmt
        self._lines: list[str] = []
        self._size = 0
        self._scheduled = False

    def add(
        self,
        client: str,
        method: str,
        path: str,
        version: str,
        status: int,
        size: int,
        seconds: float,
        outcome: str,
        upstream: tuple[str | None, float | None] | None = None,
    ) -> None:
        """Queue the line of one request (CLF, plus seconds taken and hit/miss/stale)."""
        if self.format == "json":
            # The object json.dumps(record, separators=(",", ":")) writes, key by key:
            # a whole-dict dumps per request cost as much as the hit itself.
            source, waited = upstream or (None, None)
            line = (
                f'{{"time":"{_iso_time(int(time.time()))}","client":{_string(client)},'
                f'"method":{_string(method)},"path":{_string(path[:300])},'
                f'"protocol":{_string(f"HTTP/{version}")},"status":{status:d},"size":{size:d},'
                f'"seconds":{round(seconds, 6)!r},"outcome":{_string(outcome)},'
                f'"source":{_string(source)},'
                f'"upstream_seconds":{"null" if waited is None else repr(round(waited, 6))}}}\n'
            )
        else:
            line = (
                f'{client} - - [{_clf_time(int(time.time()))}] "{method} {path[:300]} '
                f'HTTP/{version}" {status} {size} {seconds:.4f} {outcome}\n'
            )
        self._lines.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
            except RuntimeError:  # no event loop: write at once
                self.flush()

    def flush(self) -> None:
        """Write every queued line now."""
        self._scheduled = False
        if not self._lines:
            return
        data = "".join(self._lines).encode("utf-8", "replace")
        self._lines.clear()
        self._size = 0
        while data:
            try:
                written = os.write(self.fd, data)
            except OSError:
                return  # stderr gone: never let the log take the server down
            data = data[written:]
