"""eggproxy.purge: PURGE to every tier for a changed page; failures logged, never raised."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import requests

from eggproxy.names import NormalizedName
from eggproxy.purge import Purger


class FakeResponse:
    def __init__(self, status: int) -> None:
        self.status_code = status

    def close(self) -> None:
        pass


class FakeSession:
    """Records requests; answers from ``answers`` by URL prefix (an exception is raised)."""

    def __init__(self, answers: dict[str, int | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, float]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
        self.calls.append((method, url, kwargs["timeout"]))
        for prefix, answer in self.answers.items():
            if url.startswith(prefix):
                if isinstance(answer, Exception):
                    raise answer
                return FakeResponse(answer)
        return FakeResponse(200)


def purger(session: FakeSession, *urls: str) -> Purger:
    return Purger(urls, "/simple/", session, timeout=30.0)  # type: ignore[arg-type]


def test_every_tier_is_sent_purge_for_the_page() -> None:
    session = FakeSession({})
    done = purger(session, "http://a:6081/", "http://b:6081").changed(NormalizedName("demo-pkg"))
    assert done == 2
    assert session.calls == [
        ("PURGE", "http://a:6081/simple/demo-pkg/", 5.0),
        ("PURGE", "http://b:6081/simple/demo-pkg/", 5.0),
    ]


def test_the_root_page() -> None:
    session = FakeSession({})
    purger(session, "http://a:6081").changed(None)
    assert session.calls[0][1] == "http://a:6081/simple/"


def test_no_tiers_no_requests() -> None:
    session = FakeSession({})
    assert purger(session).changed(NormalizedName("x")) == 0
    assert session.calls == []


def test_failures_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    session = FakeSession(
        {"http://down": requests.ConnectionError("refused"), "http://refusing": 403}
    )
    with caplog.at_level(logging.WARNING, "eggproxy.purge"):
        done = purger(session, "http://down:1", "http://refusing:2", "http://ok:3").changed(
            NormalizedName("x")
        )
    assert done == 1
    assert "refused" in caplog.text and "-> 403" in caplog.text


def test_not_cached_is_fine() -> None:
    assert purger(FakeSession({"http://a": 404}), "http://a").changed(NormalizedName("x")) == 1


def test_an_unreachable_tier_is_left_alone_for_a_while() -> None:
    session = FakeSession({"http://down": requests.ConnectionError("refused")})
    tiers = purger(session, "http://down:1", "http://ok:2")
    for name in ("a", "b", "c"):
        tiers.changed(NormalizedName(name))
    assert [url for _m, url, _t in session.calls if "down" in url] == ["http://down:1/simple/a/"]
    assert len([c for c in session.calls if "ok" in c[1]]) == 3
