"""Static-file HTTP semantics for the standalone server (RFC 9110/9111).

Pure functions over a file's ``stat`` and the request headers: the ETag and
Last-Modified validators, conditional GET (304) and a single byte range
(206/416).  Multiple ranges are answered with the whole file, which RFC 9110
allows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Final, Literal

_MAX_RANGE_HEADER: Final = 200


@dataclass(frozen=True)
class Validators:
    """What identifies one version of a file on disk."""

    size: int
    mtime: float
    etag: str
    last_modified: str

    @classmethod
    def from_stat(cls, st: os.stat_result) -> Validators:
        # Like nginx: mtime and size.  A strong ETag (RFC 9110 8.8.3): a cached
        # file is written once, by an atomic rename, and never changes in place;
        # a page rewritten gets a new mtime.  Every node sharing the cache
        # directory sees the same stat, so the same tag.
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        return cls(st.st_size, st.st_mtime, etag, formatdate(st.st_mtime, usegmt=True))


@dataclass(frozen=True)
class Decision:
    """How to answer: 200 whole, 206 a range, 304 not modified, 416 unsatisfiable."""

    status: Literal[200, 206, 304, 416]
    start: int = 0
    end: int = 0  # exclusive


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    # Weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter here.
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags


def _not_modified(if_none_match: str | None, if_modified_since: str | None, v: Validators) -> bool:
    if if_none_match is not None:
        return _etag_matches(if_none_match, v.etag)
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(v.mtime) <= since
    return False


def _parse_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """One ``bytes=`` range as (start, end-exclusive); ``None`` means serve it all."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec or len(header) > _MAX_RANGE_HEADER:
        return None
    first, dash, last = spec.strip().partition("-")
    digits = "0123456789"
    if not dash or (first.strip(digits) or last.strip(digits)) or not (first or last):
        return None  # not a byte range we understand (RFC 9110: ignore it)
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size
    start = int(first)
    if start >= size:
        return "unsatisfiable"
    end = size if not last else min(int(last) + 1, size)
    if end <= start:
        return None
    return start, end


def decide(
    v: Validators,
    *,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    range_header: str | None = None,
    if_range: str | None = None,
) -> Decision:
    """Answer a GET or HEAD for a file with validators ``v``."""
    if _not_modified(if_none_match, if_modified_since, v):
        return Decision(304)
    if range_header and (if_range is None or if_range.strip() in (v.etag, v.last_modified)):
        parsed = _parse_range(range_header, v.size)
        if parsed == "unsatisfiable":
            return Decision(416)
        if parsed is not None:
            return Decision(206, parsed[0], parsed[1])
    return Decision(200, 0, v.size)
