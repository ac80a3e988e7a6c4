"""Page misses shared by the threads of one process (issue 13, item 3)."""

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from eggproxy import cache as cache_module
from eggproxy.config import Config
from eggproxy.errors import EggproxyError
from eggproxy.flights import Flights
from eggproxy.proxy import PageResult, Proxy

from .fakeindex import FakeAdapter, session_with
from .test_proxy import INDEX, JSON, PAGE, P, _page


@pytest.fixture
def adapter() -> FakeAdapter:
    return FakeAdapter()


WAITERS = 6
BOUND = 20  # seconds: only reached when the code under test is broken


def test_the_first_asker_leads_and_the_others_get_its_event() -> None:
    flights = Flights()
    assert flights.begin(P) is None
    waiting = flights.begin(P)
    assert waiting is not None and not waiting.is_set()
    assert flights.begin(None) is None  # another page: its own flight
    flights.land(P)
    assert waiting.is_set()
    flights.land(P)  # landing twice is harmless
    assert flights.begin(P) is None  # the next miss leads again


def _proxy(tmp_path: Path, adapter: FakeAdapter) -> Proxy:
    config = Config(cache_dir=tmp_path / "cache", index=INDEX, index_ttl=300)
    proxy = Proxy(config, session=session_with(adapter))
    proxy.prepare()
    return proxy


def _gated(adapter: FakeAdapter, status: int = 200) -> threading.Event:
    """The upstream answers the page only once the returned event is set."""
    release = threading.Event()

    def answer(_request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        release.wait(BOUND)
        return (status, JSON, _page()) if status == 200 else (status, {}, b"down")

    adapter.answers[PAGE] = answer
    return release


def _counting(proxy: Proxy) -> list[int]:
    """How many threads have asked ``proxy``'s flights so far (one list item each)."""
    asked: list[int] = []
    begin = proxy._flights.begin

    def counted(key: object) -> threading.Event | None:
        asked.append(1)
        return begin(key)

    proxy._flights.begin = counted  # type: ignore[method-assign]
    return asked


def _until(condition: Callable[[], bool]) -> None:
    for _ in range(BOUND * 100):  # bounded wait for other threads
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("not reached")


def _ask(proxy: Proxy, results: list[PageResult | Exception]) -> None:
    try:
        results.append(proxy.page(P, "json"))
    except EggproxyError as exc:
        results.append(exc)


def test_waiters_are_answered_once_the_pages_are_in_place_before_the_state(
    tmp_path: Path, adapter: FakeAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = _proxy(tmp_path, adapter)
    release = _gated(adapter)
    waiters: list[PageResult | Exception] = []
    answered = threading.Event()
    state_written_after: list[int] = []
    real = cache_module.write_atomic

    def hold_state(
        path: Path, data: bytes, *, mtime: float | None = None, spares: object = None
    ) -> None:
        if path.name == cache_module.STATE:  # the leader's last write: held until all answered
            answered.wait(BOUND)
            state_written_after.append(len(waiters))
        real(path, data, mtime=mtime)

    monkeypatch.setattr(cache_module, "write_atomic", hold_state)
    leader_result: list[PageResult | Exception] = []
    asked = _counting(proxy)
    leader = threading.Thread(target=_ask, args=(proxy, leader_result))
    leader.start()
    _until(lambda: adapter.calls[PAGE] == 1)  # the leader's request reached the upstream
    threads = [threading.Thread(target=_ask, args=(proxy, waiters)) for _ in range(WAITERS)]
    for thread in threads:
        thread.start()
    _until(lambda: len(asked) == 1 + WAITERS)  # every waiter joined the flight
    release.set()
    for thread in threads:
        thread.join(BOUND)
    answered.set()
    leader.join(BOUND)
    assert adapter.calls[PAGE] == 1  # one upstream request for all of them
    assert state_written_after == [WAITERS]  # every waiter answered before the state write
    assert all(isinstance(r, PageResult) and r.path.exists() for r in waiters + leader_result)
    assert proxy.cache.read_state(P) is not None


def test_waiters_share_the_leaders_failure(tmp_path: Path, adapter: FakeAdapter) -> None:
    proxy = _proxy(tmp_path, adapter)
    release = _gated(adapter, status=503)
    results: list[PageResult | Exception] = []
    asked = _counting(proxy)
    threads = [threading.Thread(target=_ask, args=(proxy, results)) for _ in range(WAITERS)]
    for thread in threads:
        thread.start()
    _until(lambda: len(asked) == WAITERS and adapter.calls[PAGE] == 1)
    release.set()
    for thread in threads:
        thread.join(BOUND)
    assert len(results) == WAITERS
    assert all(isinstance(r, EggproxyError) for r in results)
    assert adapter.calls[PAGE] == 1  # the waiters did not ask again
