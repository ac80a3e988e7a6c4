from pathlib import Path

import pytest

from eggproxy import failures
from eggproxy.errors import IntegrityError, ProjectNotFound, RecentFailure, UpstreamUnavailable


def test_a_waiter_gets_the_failure_it_waited_for(tmp_path: Path) -> None:
    target = tmp_path / "demo.whl"
    failures.record(target, UpstreamUnavailable("timed out", timeout=True), now=100.0)
    assert failures.failure_path(target).name == ".demo.whl.failed"
    with pytest.raises(RecentFailure) as info:
        failures.check(target, waiting_since=99.0, now=100.5)
    assert info.value.status == 504 and str(info.value) == "timed out"


def test_a_request_after_the_failure_tries_again(tmp_path: Path) -> None:
    target = tmp_path / "demo.whl"
    failures.record(target, IntegrityError("demo.whl", "a", "b"), now=100.0)
    # Arrived after: no raise, and the marker is left (the holder clears it on success).
    assert failures.check(target, waiting_since=100.1, now=100.2) is True
    assert failures.failure_path(target).exists()


def test_an_old_marker_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "demo.whl"
    failures.record(target, UpstreamUnavailable("down"), now=100.0)
    assert failures.check(target, waiting_since=50.0, now=100.0 + failures.BACKOFF + 1) is False
    assert not failures.failure_path(target).exists()


def test_not_found_is_no_failure(tmp_path: Path) -> None:
    target = tmp_path / "demo.whl"
    failures.record(target, ProjectNotFound("demo"), now=100.0)
    assert not failures.failure_path(target).exists()


def test_a_broken_marker_is_ignored(tmp_path: Path) -> None:
    target = tmp_path / "demo.whl"
    failures.failure_path(target).write_text("{not json")
    assert failures.check(target, waiting_since=0.0, now=1.0) is False
    assert not failures.failure_path(target).exists()


def test_no_marker_is_reported_as_none(tmp_path: Path) -> None:
    # Markers are written under the lock the checker holds: none can appear until it lets go,
    # so a holder that succeeds after this answer has nothing to clear.
    assert failures.check(tmp_path / "demo.whl", waiting_since=0.0, now=1.0) is False
