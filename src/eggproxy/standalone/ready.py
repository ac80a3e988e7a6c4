"""Ready responses for plain hits: ASGI messages built once per version of a file.

A plain hit (a GET without conditional or Range headers) of a fresh page or
a cached file gets the same answer until the file changes or, for a page,
until its ``max-age`` counts down by a second.  So its ``http.response.start``
message (headers encoded to bytes) and, for small files, its body message
are kept, and rebuilt only then: the :class:`~eggproxy.standalone.files.SmallFiles`
copy (validated by the request's one ``stat``) or, for a large file, the
``stat`` itself (inode, size, mtime) tells whether the version changed.

The messages are handed to granian as they are on every hit; granian only
reads them.  Bounded: the entries follow the small-file copies, and large
files' entries are dropped wholesale past :data:`MAX_LARGE`.
"""

from __future__ import annotations

import os
from typing import Final

from eggproxy.standalone.files import SMALL_FILE, SmallFiles
from eggproxy.standalone.request import Headers, Message
from eggproxy.standalone.static import Validators

MAX_LARGE: Final = 4096  # large files whose start message is kept

# (start message, body message or None for a large file, body size)
Ready = tuple[Message, Message | None, int]


def _start(headers: Headers, v: Validators) -> Message:
    # Same headers, same order, as FileSender.send answers a whole GET.
    full = [
        *headers,
        ("etag", v.etag),
        ("last-modified", v.last_modified),
        ("accept-ranges", "bytes"),
        ("content-length", str(v.size)),
    ]
    encoded = [(k.encode("latin-1"), val.encode("latin-1", "replace")) for k, val in full]
    return {"type": "http.response.start", "status": 200, "headers": encoded}


class ReadyResponses:
    """Start (and small bodies') messages of whole 200 answers, per file version."""

    def __init__(self, small: SmallFiles) -> None:
        self.small = small
        # path -> (validators of the bytes, variant, ready); variant = what else the
        # headers depend on (a page's max-age, its Content-Type).
        self._small: dict[str, tuple[Validators, object, Ready]] = {}
        self._large: dict[str, tuple[tuple[int, int, int], object, Ready]] = {}

    def get(self, path: str, st: os.stat_result, headers: Headers, variant: object) -> Ready:
        """The whole 200 answer to a plain GET of ``path`` (``st``: its ``stat``).

        ``headers`` are the headers that come before the validators; they
        must be the same whenever ``variant`` is.  Raises ``OSError`` (the
        file was removed since ``st``) before anything is sent.
        """
        if st.st_size <= SMALL_FILE:
            data, v = self.small.get(path, st)
            item = self._small.get(path)
            if item is not None and item[0] is v and item[1] == variant:
                return item[2]
            ready: Ready = (
                _start(headers, v),
                {"type": "http.response.body", "body": data},
                v.size,
            )
            if len(self._small) > len(self.small) + 16:  # drop entries of evicted copies
                self._small = {p: i for p, i in self._small.items() if self.small.holds(p)}
            self._small[path] = (v, variant, ready)
            return ready
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        large = self._large.get(path)
        if large is not None and large[0] == key and large[1] == variant:
            return large[2]
        if len(self._large) >= MAX_LARGE:
            self._large.clear()
        ready = (_start(headers, Validators.from_stat(st)), None, st.st_size)
        self._large[path] = (key, variant, ready)
        return ready
