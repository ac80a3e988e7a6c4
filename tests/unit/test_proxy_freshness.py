"""The core facade's freshness and failure rules (issues 15, 16) against a fake transport."""

import errno
import threading
import time
from pathlib import Path

import pytest
import requests

from eggproxy import failures
from eggproxy.config import Config
from eggproxy.errors import (
    FileNotListed,
    InsufficientStorage,
    ProjectNotFound,
    RecentFailure,
    UpstreamUnavailable,
)
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with
from .test_proxy import DATA, FILE_URL, INDEX, JSON, PAGE, Clock, P, _page

TTL = 60
WINDOW = 600


@pytest.fixture
def adapter() -> FakeAdapter:
    fake = FakeAdapter()
    fake.answers[PAGE] = (200, JSON, _page())
    fake.answers[FILE_URL] = (200, {"Content-Length": str(len(DATA))}, DATA)
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_proxy(tmp_path: Path, adapter: FakeAdapter, clock: Clock, **options: object) -> Proxy:
    settings: dict[str, object] = {"index_ttl": TTL, "stale_while_revalidate": WINDOW}
    settings.update(options)
    config = Config(cache_dir=tmp_path / "cache", index=INDEX, **settings)  # type: ignore[arg-type]
    proxy = Proxy(config, session=session_with(adapter), clock=clock)
    proxy.prepare()
    return proxy


@pytest.fixture
def proxy(tmp_path: Path, adapter: FakeAdapter, clock: Clock) -> Proxy:
    return make_proxy(tmp_path, adapter, clock)


def settle(proxy: Proxy) -> None:
    """Wait (bounded) until the background revalidations are done."""
    for _ in range(500):
        if proxy.revalidations_pending() == 0:
            return
        time.sleep(0.01)
    raise AssertionError("background revalidation did not finish")


# --- issue 15: stale while revalidate -----------------------------------------------


def test_stale_page_answered_at_once_then_revalidated_once(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += TTL + 5
    gate = threading.Event()

    def slow_not_modified(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        gate.wait(10)
        return 304, {}, b""

    adapter.answers[PAGE] = slow_not_modified
    answers = [proxy.page(P, "json") for _ in range(20)]
    assert {a.outcome for a in answers} == {"stale"}
    assert all(a.age == TTL + 5 and a.warning for a in answers)
    gate.set()
    settle(proxy)
    assert adapter.calls[PAGE] == 2  # the miss, then one revalidation for 20 requests
    assert adapter.requests[-1].headers["If-None-Match"] == '"v1"'
    fresh = proxy.page(P, "json")
    assert fresh.outcome == "hit" and fresh.age is None


def test_past_the_window_the_request_waits(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += TTL + WINDOW + 1
    adapter.answers[PAGE] = (304, {}, b"")
    assert proxy.page(P, "json").outcome == "revalidated"


def test_window_zero_blocks_as_before(tmp_path: Path, adapter: FakeAdapter, clock: Clock) -> None:
    proxy = make_proxy(tmp_path, adapter, clock, stale_while_revalidate=0)
    proxy.page(P, "json")
    clock.now += TTL + 1
    adapter.answers[PAGE] = (304, {}, b"")
    assert proxy.page(P, "json").outcome == "revalidated"
    assert proxy.revalidations_pending() == 0


def test_background_failure_keeps_the_stale_page(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += TTL + 1
    adapter.fail = requests.ConnectionError
    assert proxy.page(P, "json").outcome == "stale"
    settle(proxy)
    assert proxy.page(P, "json").outcome == "stale"


def test_listed_file_of_a_stale_page_needs_no_revalidation(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += TTL + WINDOW + 1  # even past the window
    adapter.answers[PAGE] = (500, {}, b"")
    assert proxy.file(P, "demo_pkg-1.0.tar.gz").read_bytes() == DATA
    assert adapter.calls[PAGE] == 1


# --- issue 16: a file a stale page does not list --------------------------------------


def test_unlisted_file_waits_for_the_revalidation_in_flight(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += TTL + 1
    lock = proxy._page_lock(P)
    got: list[BaseException] = []

    def ask() -> None:
        try:
            proxy.file(P, "demo_pkg-9.9.tar.gz")
        except Exception as exc:
            got.append(exc)

    with proxy.cache.lock(lock):  # another process is revalidating
        waiter = threading.Thread(target=ask)
        waiter.start()
        time.sleep(0.2)
        assert waiter.is_alive()  # it waits instead of answering 502
        # ... and that revalidation succeeds (a 304 touches the page).
        proxy.cache.touch_page(P, clock.now)
    waiter.join(10)
    assert len(got) == 1 and isinstance(got[0], FileNotListed)
    assert adapter.calls[PAGE] == 1  # it used the other one's result


def test_unlisted_file_gets_the_failure_it_waited_for(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += TTL + 1
    lock = proxy._page_lock(P)
    got: list[BaseException] = []

    def ask() -> None:
        try:
            proxy.file(P, "demo_pkg-9.9.tar.gz")
        except Exception as exc:
            got.append(exc)

    with proxy.cache.lock(lock):
        waiter = threading.Thread(target=ask)
        waiter.start()
        time.sleep(0.2)
        failures.record(lock, UpstreamUnavailable("upstream timed out", timeout=True), time.time())
    waiter.join(10)
    assert len(got) == 1 and isinstance(got[0], RecentFailure)
    assert got[0].status == 504 and "timed out" in str(got[0])
    assert adapter.calls[PAGE] == 1


def test_unlisted_file_waits_no_longer_than_the_timeout(
    tmp_path: Path, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy = make_proxy(tmp_path, adapter, clock, timeout=0.3)
    proxy.page(P, "json")
    clock.now += TTL + 1
    with proxy.cache.lock(proxy._page_lock(P)), pytest.raises(UpstreamUnavailable) as info:
        proxy.file(P, "demo_pkg-9.9.tar.gz")
    assert info.value.status == 504


def test_unlisted_file_then_a_fresh_page_is_404(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += TTL + 1
    adapter.answers[PAGE] = (304, {}, b"")
    with pytest.raises(FileNotListed):
        proxy.file(P, "demo_pkg-9.9.tar.gz")
    assert adapter.calls[PAGE] == 2


# --- issue 16: unknown names remembered ------------------------------------------------


def test_unknown_name_is_remembered_for_negative_ttl(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    nope = NormalizedName("nope")
    for _ in range(5):
        with pytest.raises(ProjectNotFound):
            proxy.page(nope, "json")
        with pytest.raises(ProjectNotFound):
            proxy.file(nope, "nope-1.0.tar.gz")
    assert adapter.calls[INDEX + "nope/"] == 1
    assert not (proxy.cache.root / "nope").exists()
    clock.now += 61
    adapter.answers[INDEX + "nope/"] = (200, JSON, _page())
    assert proxy.page(nope, "json").outcome == "miss"


def test_negative_ttl_zero_asks_every_time(
    tmp_path: Path, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy = make_proxy(tmp_path, adapter, clock, negative_ttl=0)
    for _ in range(3):
        with pytest.raises(ProjectNotFound):
            proxy.page(NormalizedName("nope"), "json")
    assert adapter.calls[INDEX + "nope/"] == 3
    assert not (proxy.cache.root / ".negative").exists()


# --- issue 16: a full disk --------------------------------------------------------------


def test_full_disk_is_507_and_leaves_nothing(
    proxy: Proxy, adapter: FakeAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy.page(P, "json")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("eggproxy.download.os.write", full)
    with pytest.raises(InsufficientStorage) as info:
        proxy.file(P, "demo_pkg-1.0.tar.gz")
    assert info.value.status == 507 and "disk full" in str(info.value)
    names = [p.name for p in (proxy.cache.root / "demo-pkg").iterdir()]
    assert not [n for n in names if n.endswith((".part", ".size")) or n.startswith(".tmp")]
    assert "demo_pkg-1.0.tar.gz" not in names


def test_full_disk_while_revalidating_serves_the_stale_page(
    tmp_path: Path, adapter: FakeAdapter, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = make_proxy(tmp_path, adapter, clock, stale_while_revalidate=0)
    proxy.page(P, "json")
    clock.now += TTL + 1

    def full(*args: object, **kwargs: object) -> None:
        raise InsufficientStorage("cache disk full: cannot store index.json")

    monkeypatch.setattr(proxy.cache, "write_page", full)
    adapter.answers[PAGE] = (200, JSON, _page(serial=11))  # new bytes: they must be written
    result = proxy.page(P, "json")
    assert result.outcome == "stale" and "disk full" in (result.warning or "")


def test_disk_free(proxy: Proxy) -> None:
    space = proxy.disk_free()
    assert 0 <= space.free <= space.total


def test_refresh_ahead_revalidates_a_served_page_before_it_goes_stale(
    tmp_path: Path, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy = make_proxy(tmp_path, adapter, clock, refresh_ahead=30)
    proxy.page(P, "json")
    clock.now += TTL - 20  # 20 s of freshness left: within refresh_ahead
    assert proxy.fresh_page(P, "json") is not None  # served: remembered
    adapter.answers[PAGE] = (304, {}, b"")
    assert proxy.refresh_ahead() == 1
    for _ in range(200):  # bounded wait for the background thread
        if not proxy.revalidations_pending():
            break
        time.sleep(0.01)
    assert adapter.calls[PAGE] == 2
    hit = proxy.fresh_page(P, "json")
    assert hit is not None and hit.max_age == TTL  # fresh again, as of now
    assert proxy.refresh_ahead() == 0  # nothing served is about to go stale


def test_refresh_ahead_leaves_pages_nobody_asked_for(
    tmp_path: Path, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy = make_proxy(tmp_path, adapter, clock, refresh_ahead=30)
    proxy.page(P, "json")
    clock.now += TTL - 20
    assert proxy.refresh_ahead() == 0
    assert adapter.calls[PAGE] == 1
