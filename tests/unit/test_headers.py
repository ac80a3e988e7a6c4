"""Cache-Control that an HTTP cache tier in front of eggproxy can trust (issue 12)."""

from __future__ import annotations

from eggproxy.errors import FileBlocked, FileHeld, FileWithheld, ProjectNotFound, UpstreamError
from eggproxy.headers import (
    IMMUTABLE,
    NO_STORE,
    error_cache_control,
    page_cache_control,
)


def test_files_are_immutable_for_a_year() -> None:
    assert IMMUTABLE == "public, max-age=31536000, immutable"


def test_page_without_a_window_is_max_age_only() -> None:
    assert page_cache_control(120) == "public, max-age=120"
    assert page_cache_control(-5) == "public, max-age=0"


def test_page_names_eggproxys_own_stale_window() -> None:
    # RFC 5861: the same window eggproxy answers stale in; stale-if-error at least a day.
    assert page_cache_control(30, 600) == (
        "public, max-age=30, stale-while-revalidate=600, stale-if-error=86400"
    )
    assert page_cache_control(0, 200000) == (
        "public, max-age=0, stale-while-revalidate=200000, stale-if-error=200000"
    )


def test_unknown_project_404_is_cacheable_for_negative_ttl() -> None:
    assert error_cache_control(404, 60, ProjectNotFound("nope")) == "public, max-age=60"
    assert error_cache_control(404, 60) == "public, max-age=60"
    assert error_cache_control(404, 0, ProjectNotFound("nope")) == NO_STORE


def test_held_withheld_blocked_and_failures_are_no_store() -> None:
    held = FileHeld("p", "p-1.whl", "too new", until=0.0)
    withheld = FileWithheld("p", "p-1.whl", "yanked")
    blocked = FileBlocked("p", "p-1.whl", "malware", "OSV-1")
    assert error_cache_control(404, 60, held) == NO_STORE
    assert error_cache_control(404, 60, withheld) == NO_STORE
    assert error_cache_control(403, 60, blocked) == NO_STORE
    assert error_cache_control(502, 60, UpstreamError("down")) == NO_STORE
    assert error_cache_control(405, 60) == NO_STORE
