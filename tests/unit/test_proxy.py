"""The core facade against a fake transport: freshness, failure, verification."""

import hashlib
import json
from pathlib import Path

import pytest
import requests

from eggproxy.config import Config
from eggproxy.errors import (
    FileNotListed,
    IntegrityError,
    MalformedPage,
    ProjectNotFound,
    UpstreamUnavailable,
)
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with

INDEX = "https://up.test/simple/"
PAGE = INDEX + "demo-pkg/"
FILE_URL = "https://files.test/demo_pkg-1.0.tar.gz"
DATA = b"sdist bytes" * 100
META = b"Metadata-Version: 2.1\nName: demo-pkg\n"
P = NormalizedName("demo-pkg")
JSON = {"Content-Type": "application/vnd.pypi.simple.v1+json", "ETag": '"v1"'}


def _page(data: bytes = DATA, serial: int = 10) -> bytes:
    return json.dumps(
        {
            "meta": {"api-version": "1.1", "_last-serial": serial},
            "name": "demo-pkg",
            "files": [
                {
                    "filename": "demo_pkg-1.0.tar.gz",
                    "url": FILE_URL,
                    "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                    "size": len(data),
                    "core-metadata": {"sha256": hashlib.sha256(META).hexdigest()},
                }
            ],
        }
    ).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def adapter() -> FakeAdapter:
    fake = FakeAdapter()
    fake.answers[PAGE] = (200, JSON, _page())
    fake.answers[FILE_URL] = (200, {"Content-Length": str(len(DATA))}, DATA)
    fake.answers[FILE_URL + ".metadata"] = (200, {}, META)
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def proxy(tmp_path: Path, adapter: FakeAdapter, clock: Clock) -> Proxy:
    # Blocking revalidation and no negative cache: their own tests turn them on.
    config = Config(
        cache_dir=tmp_path / "cache",
        index=INDEX,
        index_ttl=60,
        stale_while_revalidate=0,
        negative_ttl=0,
    )
    proxy = Proxy(config, session=session_with(adapter), clock=clock)
    proxy.prepare()
    return proxy


def test_page_miss_then_hit(proxy: Proxy, adapter: FakeAdapter) -> None:
    first = proxy.page(P, "json")
    assert first.outcome == "miss"
    assert json.loads(first.path.read_bytes())["files"][0]["url"] == "demo_pkg-1.0.tar.gz"
    assert proxy.page(P, "html").outcome == "hit"
    assert adapter.calls[PAGE] == 1
    assert "application/vnd.pypi.simple.v1+json" in adapter.requests[0].headers["Accept"]


def test_max_age_is_the_time_left_on_the_ttl(proxy: Proxy, clock: Clock) -> None:
    """What HTTP caches in front (mod_cache, nginx) may reuse a page for, unasked."""
    assert proxy.page(P, "json").max_age == 60
    clock.now += 45
    assert proxy.page(P, "json").max_age == 15
    clock.now += 15
    assert proxy.page(P, "json").max_age == 60  # revalidated: a full TTL again


def test_stale_page_is_revalidated_with_etag(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += 61
    adapter.answers[PAGE] = (304, {}, b"")
    result = proxy.page(P, "json")
    assert result.outcome == "revalidated"
    assert adapter.requests[-1].headers["If-None-Match"] == '"v1"'
    assert proxy.page(P, "json").outcome == "hit"


def test_stale_page_served_when_upstream_down(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += 61
    adapter.fail = requests.ConnectionError
    result = proxy.page(P, "json")
    assert result.outcome == "stale"
    assert result.warning


def test_uncached_page_with_upstream_down(proxy: Proxy, adapter: FakeAdapter) -> None:
    adapter.fail = requests.ConnectTimeout
    with pytest.raises(UpstreamUnavailable) as info:
        proxy.page(P, "json")
    assert info.value.status == 504


def test_serial_going_backwards_keeps_the_newer_page(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += 61
    adapter.answers[PAGE] = (200, {**JSON, "ETag": '"v0"'}, _page(serial=5))
    assert proxy.page(P, "json").outcome == "stale"
    assert proxy.cache.read_state(P).serial == 10  # type: ignore[union-attr]


def test_unknown_and_malformed_projects(proxy: Proxy, adapter: FakeAdapter) -> None:
    with pytest.raises(ProjectNotFound):
        proxy.page(NormalizedName("nope"), "json")
    assert not (proxy.cache.root / "nope").exists()
    adapter.answers[INDEX + "bad/"] = (200, JSON, b"{not json")
    with pytest.raises(MalformedPage):
        proxy.page(NormalizedName("bad"), "html")
    assert not (proxy.cache.root / "bad").exists()


def test_file_is_verified_and_cached_once(proxy: Proxy, adapter: FakeAdapter) -> None:
    path = proxy.file(P, "demo_pkg-1.0.tar.gz")
    assert path.read_bytes() == DATA
    proxy.file(P, "demo_pkg-1.0.tar.gz")
    assert adapter.calls[FILE_URL] == 1
    assert adapter.requests[-1].headers["Accept-Encoding"] == "identity"


def test_metadata_file(proxy: Proxy) -> None:
    assert proxy.file(P, "demo_pkg-1.0.tar.gz.metadata").read_bytes() == META


@pytest.mark.parametrize(
    "answer",
    [
        (200, {}, DATA[:-1] + b"X"),  # same size, wrong hash
        (200, {}, DATA[:100]),  # short
    ],
)
def test_bad_download_leaves_nothing(
    proxy: Proxy, adapter: FakeAdapter, answer: tuple[int, dict[str, str], bytes]
) -> None:
    adapter.answers[FILE_URL] = answer
    with pytest.raises(IntegrityError):
        proxy.file(P, "demo_pkg-1.0.tar.gz")
    leftovers = [p.name for p in (proxy.cache.root / "demo-pkg").iterdir()]
    assert "demo_pkg-1.0.tar.gz" not in leftovers
    assert not [n for n in leftovers if n.endswith(".part") or n.startswith(".tmp")]


def test_only_listed_files_are_fetched(proxy: Proxy, adapter: FakeAdapter) -> None:
    with pytest.raises(FileNotListed):
        proxy.file(P, "demo_pkg-9.9.tar.gz")
    assert all("9.9" not in url for url in adapter.calls)


def test_streaming_a_miss(proxy: Proxy, adapter: FakeAdapter) -> None:
    result = proxy.open_file(P, "demo_pkg-1.0.tar.gz")
    assert (result.outcome, result.size) == ("miss", len(DATA))
    # A fast download may be complete before the first byte is asked for.
    body = b"".join(result.stream) if result.stream else result.path.read_bytes()
    assert body == DATA
    assert proxy.open_file(P, "demo_pkg-1.0.tar.gz").outcome == "hit"


def test_streaming_a_bad_download_raises(proxy: Proxy, adapter: FakeAdapter) -> None:
    adapter.answers[FILE_URL] = (200, {}, DATA[:-1] + b"X")
    with pytest.raises(IntegrityError):  # before the first byte, or while streaming
        result = proxy.open_file(P, "demo_pkg-1.0.tar.gz")
        b"".join(result.stream or [])
    assert not proxy.cache.file_path(P, "demo_pkg-1.0.tar.gz").exists()


def test_concurrent_revalidation_serves_stale_instead_of_queueing(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    proxy.page(P, "json")
    clock.now += 61
    with proxy.cache.lock(proxy._page_lock(P)):  # another request is revalidating
        result = proxy.page(P, "json")
    assert result.outcome == "stale" and result.warning
    assert adapter.calls[PAGE] == 1


def test_lost_upstream_copy_is_fetched_again(proxy: Proxy, adapter: FakeAdapter) -> None:
    proxy.page(P, "json")
    (proxy.cache.root / "demo-pkg" / ".upstream.json").unlink()
    # Conditional requests would get a 304: the refetch must be unconditional.
    adapter.answers[PAGE] = lambda request: (
        (304, {}, b"") if request.headers.get("If-None-Match") else (200, JSON, _page())
    )
    assert proxy.file(P, "demo_pkg-1.0.tar.gz").read_bytes() == DATA
    assert adapter.calls[PAGE] == 2


def test_without_etag_revalidation_uses_last_modified(
    proxy: Proxy, adapter: FakeAdapter, clock: Clock
) -> None:
    date = "Tue, 01 Dec 2026 10:00:00 GMT"
    headers = {"Content-Type": JSON["Content-Type"], "Last-Modified": date}
    adapter.answers[PAGE] = (200, headers, _page())
    proxy.page(P, "json")
    clock.now += 61
    adapter.answers[PAGE] = (304, {}, b"")
    assert proxy.page(P, "json").outcome == "revalidated"
    assert adapter.requests[-1].headers["If-Modified-Since"] == date
    assert "If-None-Match" not in adapter.requests[-1].headers
