"""Shared failures: the requests that waited on a failed attempt get its failure.

When the holder of a lock (a download, a page fetch) fails, it writes a
small marker beside the lock, ``.<name>.failed``, with the status, the
reason and the time, before it lets go.  A request that was already waiting
on that lock (in this process or another: Apache children, granian workers)
reads the marker once it gets the lock and answers with that failure
instead of starting an attempt of its own, so 16 clients waiting on a file
the upstream keeps cutting short cost one download, not 16.  A request
that arrives after the failure starts a new attempt; a marker older than
:data:`BACKOFF` is ignored and removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Final

from eggproxy.cache import make_parent
from eggproxy.errors import EggproxyError, RecentFailure, http_status

log = logging.getLogger(__name__)

BACKOFF: Final = 2.0  # seconds a failure is shared with the requests that waited for it


def failure_path(lock_target: Path) -> Path:
    """The marker beside the lock of ``lock_target`` (``.<name>.failed``)."""
    return lock_target.with_name(f".{lock_target.name}.failed")


def record(lock_target: Path, error: BaseException, now: float) -> None:
    """Remember that the attempt on ``lock_target`` failed (call it holding the lock)."""
    if not isinstance(error, EggproxyError) or http_status(error) < 500:
        return  # a 404 is not a failure; the negative cache remembers it
    data = json.dumps({"status": http_status(error), "reason": str(error), "time": now})
    # Not write_atomic: the marker is read under the same lock it is written in,
    # and on a full disk it must not fail louder than the error it records.
    marker = failure_path(lock_target)
    with contextlib.suppress(OSError):
        try:
            marker.write_text(data)
        except FileNotFoundError:  # no folder yet: the lock no longer makes it (locks.py)
            make_parent(marker)
            marker.write_text(data)


def clear(lock_target: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        failure_path(lock_target).unlink()


def check(lock_target: Path, waiting_since: float, now: float) -> bool:
    """Raise the failure of an attempt that ended while we waited (since ``waiting_since``).

    Returns whether a marker is left (older than our wait, within :data:`BACKOFF`).
    Called holding the lock, as :func:`record` is: ``False`` stays true until the
    lock is let go, so a holder that succeeds need not :func:`clear` (a failing
    system call saved per miss: issue 13, round 8).
    """
    marker = failure_path(lock_target)
    try:
        raw = json.loads(marker.read_text())
        status, reason, when = int(raw["status"]), str(raw["reason"]), float(raw["time"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        clear(lock_target)
        return False
    if now - when > BACKOFF:
        clear(lock_target)
        return False
    if when >= waiting_since:  # it failed while we waited for it
        raise RecentFailure(status, reason)
    return True
