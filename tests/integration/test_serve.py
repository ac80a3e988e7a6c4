"""``eggproxy serve`` end to end: a real granian server in front of the fake upstream index."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import private_upstream
from tests.integration.standalone import (
    CLIENT_TIMEOUT,
    Fetch,
    StandaloneServer,
    fetch,
    fetch_concurrently,
    file_url,
    leftovers,
    raw_request,
    sha256,
    start_serve,
    wait_until,
)
from tests.integration.upstream import Upstream
from tests.support import proc_status

from eggproxy.config import worker_processes
from eggproxy.cpus import available_cpus
from eggproxy.download import WHOLE_WAIT

pytestmark = pytest.mark.integration

JSON_V1 = "application/vnd.pypi.simple.v1+json"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
Factory = Callable[..., StandaloneServer]


serve_upstream = pytest.fixture(private_upstream, name="serve_upstream")


@pytest.fixture
def serve_factory(serve_upstream: Upstream, tmp_path: Path) -> Iterator[Factory]:
    """Start ``eggproxy serve`` instances (fresh cache each, unless ``cache_dir`` is given)."""
    started: list[StandaloneServer] = []

    def start(**options: Any) -> StandaloneServer:
        cache_dir = options.pop("cache_dir", tmp_path / f"cache{len(started)}")
        server = start_serve(serve_upstream.url, cache_dir, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        print(f"--- {server.log_path} ---\n{server.log_text()[-20000:]}")


@pytest.fixture
def served(serve_factory: Factory) -> StandaloneServer:
    return serve_factory(index_ttl=300, timeout=10)


# --- helpers -----------------------------------------------------------------------


def age_page(cache_dir: Path, project: str, seconds: float) -> None:
    """Make a cached page look fetched ``seconds`` ago (both formats)."""
    when = time.time() - seconds
    for name in ("index.html", "index.json"):
        os.utime(cache_dir / project / name, (when, when))


def add_big_file(up: Upstream, name: str, size: int, slow: float = 0.0) -> str:
    """Add ``name`` of ``size`` random bytes to project big-pkg; return its sha256."""
    dist = up.add_file("big-pkg", name, size)
    if slow:
        up.slow[name] = slow
    return dist.sha256


# --- hits from disk ----------------------------------------------------------------


@pytest.mark.parametrize("size", [None, 2 << 20], ids=["small", "large"])
def test_file_hit_from_disk(
    served: StandaloneServer, serve_upstream: Upstream, size: int | None
) -> None:
    if size is None:
        project, name = "demo-pkg", WHEEL
    else:
        project, name = "big-pkg", "big_pkg-1.0.tar.gz"
        add_big_file(serve_upstream, name, size)
    data = serve_upstream.file(name).path.read_bytes()
    url = file_url(served, project, name)

    miss = requests.get(url, timeout=CLIENT_TIMEOUT)
    assert miss.status_code == 200 and miss.content == data
    hit = requests.get(url, timeout=CLIENT_TIMEOUT)
    assert hit.status_code == 200 and hit.content == data
    assert serve_upstream.hits[serve_upstream.file_path(name)] == 1
    h = hit.headers
    assert h["ETag"] and h["Last-Modified"] and h["Accept-Ranges"] == "bytes"
    assert int(h["Content-Length"]) == len(data)
    assert "immutable" in h["Cache-Control"]

    for conditional in ({"If-None-Match": h["ETag"]}, {"If-Modified-Since": h["Last-Modified"]}):
        r = requests.get(url, headers=conditional, timeout=CLIENT_TIMEOUT)
        assert r.status_code == 304 and r.content == b"", conditional
    r = requests.get(url, headers={"If-None-Match": '"other"'}, timeout=CLIENT_TIMEOUT)
    assert r.status_code == 200 and r.content == data

    r = requests.get(url, headers={"Range": "bytes=0-9"}, timeout=CLIENT_TIMEOUT)
    assert r.status_code == 206 and r.content == data[:10]
    assert r.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    half = len(data) // 2
    r = requests.get(url, headers={"Range": f"bytes={half}-"}, timeout=CLIENT_TIMEOUT)
    assert r.status_code == 206 and r.content == data[half:]  # read from the held file
    r = requests.get(url, headers={"Range": "bytes=999999999-"}, timeout=CLIENT_TIMEOUT)
    assert r.status_code == 416

    r = requests.head(url, timeout=CLIENT_TIMEOUT)
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) == len(data) and r.headers["ETag"] == h["ETag"]
    assert serve_upstream.hits[serve_upstream.file_path(name)] == 1


def test_pages_negotiated_and_cacheable(served: StandaloneServer, serve_upstream: Upstream) -> None:
    url = served.url + "demo-pkg/"
    for _ in range(2):  # a miss, then a hit from disk
        r = requests.get(url, headers={"Accept": JSON_V1}, timeout=CLIENT_TIMEOUT)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(JSON_V1)
        assert WHEEL in {f["filename"] for f in r.json()["files"]}
        for accept in ("text/html", None):
            headers = {"Accept": accept} if accept else {}
            page = requests.get(url, headers=headers, timeout=CLIENT_TIMEOUT)
            assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
            assert f'href="{WHEEL}#sha256=' in page.text
        for response in (r, page):
            assert "accept" in response.headers["Vary"].lower()
            directive, _, rest = response.headers["Cache-Control"].partition(", max-age=")
            age = rest.split(",")[0]  # then the stale window (RFC 5861)
            assert directive == "public" and 0 <= int(age) <= 300
    assert serve_upstream.hits["/simple/demo-pkg/"] == 1


def test_cache_layout_is_the_static_tree(
    served: StandaloneServer, serve_upstream: Upstream
) -> None:
    """What this server writes is what the Apache front end serves statically."""
    page = requests.get(served.url + "demo-pkg/", timeout=CLIENT_TIMEOUT)
    data = requests.get(file_url(served, "demo-pkg", WHEEL), timeout=CLIENT_TIMEOUT).content
    meta = requests.get(file_url(served, "demo-pkg", WHEEL + ".metadata"), timeout=CLIENT_TIMEOUT)
    assert meta.status_code == 200
    project_dir = served.cache_dir / "demo-pkg"
    assert (served.cache_dir / ".eggproxy-layout").is_file()
    assert (project_dir / "index.html").read_text() == page.text
    assert f'href="{WHEEL}#sha256=' in (project_dir / "index.html").read_text()
    assert f'"url":"{WHEEL}"' in (project_dir / "index.json").read_text().replace(" ", "")
    assert data == serve_upstream.file(WHEEL).path.read_bytes()
    assert (project_dir / WHEEL).read_bytes() == data
    assert (project_dir / (WHEEL + ".metadata")).read_bytes() == meta.content


# --- misses: one download, streamed ---------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_miss_downloads_once(
    serve_factory: Factory, serve_upstream: Upstream, workers: int
) -> None:
    name = "big_pkg-2.0.tar.gz"
    expected = add_big_file(serve_upstream, name, 20 << 20, slow=0.005)
    server = serve_factory(workers=workers, index_ttl=300, timeout=10)
    requests.get(server.url + "big-pkg/", timeout=CLIENT_TIMEOUT).raise_for_status()
    results = fetch_concurrently(file_url(server, "big-pkg", name), 6)
    for result in results:
        assert result.complete, result
        assert result.digest == expected
    assert serve_upstream.hits[serve_upstream.file_path(name)] == 1
    assert leftovers(server.cache_dir, "big-pkg", name) == [name]


def test_miss_streams_before_download_finishes(
    served: StandaloneServer, serve_upstream: Upstream
) -> None:
    name = "big_pkg-3.0.tar.gz"
    # 320 chunks of 64 KiB: the download ends well after followers stop waiting for it.
    expected = add_big_file(serve_upstream, name, 20 << 20, slow=(WHOLE_WAIT + 3) / 320)
    target = served.cache_dir / "big-pkg" / name
    with requests.get(file_url(served, "big-pkg", name), stream=True, timeout=CLIENT_TIMEOUT) as r:
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == 20 << 20
        chunks = r.iter_content(64 * 1024)
        first = next(chunks)
        assert first
        # Bytes arrived while the download is still going: not in place, partial file there.
        assert not target.exists()
        assert (target.parent / f".{name}.part").exists()
        rest = b"".join(chunks)
    assert sha256(first + rest) == expected
    assert target.exists() and sha256(target.read_bytes()) == expected


def test_client_leaving_does_not_cancel_the_download(
    served: StandaloneServer, serve_upstream: Upstream
) -> None:
    name = "big_pkg-7.0.tar.gz"
    # Still downloading once followers stop waiting for the whole file: the client
    # leaves a stream.
    expected = add_big_file(serve_upstream, name, 8 << 20, slow=(WHOLE_WAIT + 1) / 128)
    target = served.cache_dir / "big-pkg" / name
    with requests.get(file_url(served, "big-pkg", name), stream=True, timeout=CLIENT_TIMEOUT) as r:
        assert next(r.iter_content(64 * 1024))
    assert wait_until(target.exists, limit=CLIENT_TIMEOUT)
    assert sha256(target.read_bytes()) == expected
    assert serve_upstream.hits[serve_upstream.file_path(name)] == 1
    assert "Traceback" not in served.log_text()


@pytest.mark.parametrize("fault", ["truncate", "corrupt"])
def test_failed_download_is_cut_and_not_cached(
    served: StandaloneServer, serve_upstream: Upstream, fault: str
) -> None:
    name = "big_pkg-4.0.tar.gz"
    expected = add_big_file(serve_upstream, name, 2 << 20, slow=0.005)
    getattr(serve_upstream, fault).add(name)
    url = file_url(served, "big-pkg", name)
    for result in fetch_concurrently(url, 3):
        assert not result.complete, result
        if result.status == 200:  # failed after the first byte: the body is cut short
            assert result.error is not None or result.received < (result.length or 0), result
            # ... by closing the connection, not by leaving the client waiting for more.
            assert "timed out" not in (result.error or ""), result
        else:  # failed before it: an error status
            assert result.status == 502, result
    assert wait_until(lambda: leftovers(served.cache_dir, "big-pkg", name) == []), leftovers(
        served.cache_dir, "big-pkg", name
    )
    # Still serving; and once the upstream is healthy, the file is fetched and verified.
    assert requests.get(served.url + "dep-pkg/", timeout=CLIENT_TIMEOUT).status_code == 200
    getattr(serve_upstream, fault).discard(name)
    retry = fetch(url)
    assert retry.complete and retry.digest == expected


# --- a bad upstream ----------------------------------------------------------------


def test_upstream_down(serve_factory: Factory, serve_upstream: Upstream) -> None:
    server = serve_factory(index_ttl=300, timeout=5)
    for project in ("demo-pkg", "dep-pkg"):
        requests.get(server.url + f"{project}/", timeout=CLIENT_TIMEOUT).raise_for_status()
    wheel = requests.get(file_url(server, "demo-pkg", WHEEL), timeout=CLIENT_TIMEOUT).content
    age_page(server.cache_dir, "dep-pkg", 600)
    serve_upstream.down = True

    fresh = requests.get(server.url + "demo-pkg/", timeout=CLIENT_TIMEOUT)
    assert fresh.status_code == 200 and "Warning" not in fresh.headers
    cached = requests.get(file_url(server, "demo-pkg", WHEEL), timeout=CLIENT_TIMEOUT)
    assert cached.status_code == 200 and cached.content == wheel
    stale = requests.get(server.url + "dep-pkg/", timeout=CLIENT_TIMEOUT)
    assert stale.status_code == 200 and stale.headers["Warning"].startswith("110 ")
    assert "dep_pkg-1.0-py3-none-any.whl" in stale.text
    assert stale.headers["Cache-Control"].startswith("public, max-age=0,")
    missing = requests.get(server.url + "sdist-only/", timeout=CLIENT_TIMEOUT)
    assert missing.status_code == 502
    assert missing.text.strip() and "\n" not in missing.text.strip()
    uncached_file = requests.get(
        file_url(server, "demo-pkg", "demo_pkg-2.0-py3-none-any.whl"), timeout=CLIENT_TIMEOUT
    )
    assert uncached_file.status_code == 502


def test_upstream_slower_than_timeout(serve_factory: Factory, serve_upstream: Upstream) -> None:
    server = serve_factory(index_ttl=300, timeout=1)
    requests.get(server.url + "dep-pkg/", timeout=CLIENT_TIMEOUT).raise_for_status()
    age_page(server.cache_dir, "dep-pkg", 600)
    serve_upstream.delay_pages = 4.0

    stale = requests.get(server.url + "dep-pkg/", timeout=CLIENT_TIMEOUT)
    assert stale.status_code == 200 and stale.headers["Warning"].startswith("110 ")
    assert "dep_pkg-1.0-py3-none-any.whl" in stale.text
    missing = requests.get(server.url + "sdist-only/", timeout=CLIENT_TIMEOUT)
    assert missing.status_code == 504
    assert missing.text.strip() and "\n" not in missing.text.strip()


@pytest.mark.parametrize("workers", [None, "auto"], ids=["default", "auto"])
def test_workers_default_to_one_per_cpu(serve_factory: Factory, workers: str | None) -> None:
    expected = worker_processes("auto", available_cpus())
    server = serve_factory(workers=workers)
    assert f"on {expected} worker(s)" in server.log_text()
    # Granian starts its workers one after another: all of them within a few seconds.
    for _ in range(50):
        if len(server.worker_pids()) == expected:
            break
        time.sleep(0.1)
    assert len(server.worker_pids()) == expected
    assert fetch(file_url(server, "demo-pkg", WHEEL)).complete


# --- resources and lifecycle ---------------------------------------------------------


@pytest.mark.parametrize("slow_client", [False, True], ids=["client-keeps-up", "slow-client"])
def test_streaming_a_big_file_keeps_memory_flat(
    serve_factory: Factory, serve_upstream: Upstream, slow_client: bool
) -> None:
    name = "big_pkg-5.0.tar.gz"
    # A paced upstream that any client keeps up with, or a client slower than the upstream.
    size, slow, pause = (100 << 20, 0.0, 0.02) if slow_client else (300 << 20, 0.001, 0.0)
    expected = add_big_file(serve_upstream, name, size, slow=slow)
    server = serve_factory(workers=1, index_ttl=300, timeout=10)
    (worker,) = server.worker_pids()
    warm = fetch(file_url(server, "demo-pkg", WHEEL))  # load the code paths first
    assert warm.complete
    before = proc_status(worker, "VmHWM")
    for _ in ("miss", "hit"):
        result = fetch(file_url(server, "big-pkg", name), pause=pause)
        assert result.complete and result.digest == expected
    after = proc_status(worker, "VmHWM")
    assert serve_upstream.hits[serve_upstream.file_path(name)] == 1
    assert after - before < 50 << 20, f"worker peak RSS grew by {(after - before) >> 20} MiB"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stop_while_streaming_then_restart_cleans_partials(
    serve_factory: Factory, serve_upstream: Upstream, sig: signal.Signals
) -> None:
    name = "big_pkg-6.0.tar.gz"
    expected = add_big_file(serve_upstream, name, 20 << 20, slow=0.01)
    server = serve_factory(index_ttl=300, timeout=10)
    cache_dir = server.cache_dir
    target = cache_dir / "big-pkg" / name
    requests.get(server.url + "demo-pkg/", timeout=CLIENT_TIMEOUT).raise_for_status()
    result = Fetch(first_chunk=threading.Event())
    client = threading.Thread(
        target=fetch, args=(file_url(server, "big-pkg", name), result), daemon=True
    )
    client.start()
    assert result.first_chunk is not None and result.first_chunk.wait(CLIENT_TIMEOUT)
    assert result.received > 0 and result.status == 200, result
    code = server.stop(sig, timeout=40)
    if sig == signal.SIGTERM:  # a graceful stop, bounded: no SIGKILL was needed
        assert code == 0, f"exit {code}"
    client.join(CLIENT_TIMEOUT)
    assert not client.is_alive()
    if target.exists():  # the stop let the download finish: then it is complete and verified
        assert sig == signal.SIGTERM
        assert sha256(target.read_bytes()) == expected
        assert result.complete and result.digest == expected
    else:  # the client must not have taken a cut response for a whole one
        assert not result.complete, result
    if sig == signal.SIGKILL:  # a crash mid-download leaves its partial file behind
        assert not target.exists() and (target.parent / f".{name}.part").exists()

    fake = cache_dir / "demo-pkg" / ".demo_pkg-9.9.tar.gz.part"
    fake.write_bytes(b"left by a crash")
    restarted = serve_factory(cache_dir=cache_dir, index_ttl=300, timeout=10)
    assert not fake.exists()
    assert not list(cache_dir.glob("*/.*.part")) and not list(cache_dir.glob("*/.*.size"))
    again = fetch(file_url(restarted, "big-pkg", name))
    assert again.complete and again.digest == expected


# --- requests no index answers ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/simple/../etc/passwd", {400, 404}),
        ("/simple/%2e%2e/x", {400, 404}),
        ("/simple/%2E%2E/%2E%2E/etc/passwd", {400, 404}),
        ("/simple/demo-pkg/.state.json", {400, 404}),
        ("/simple/demo-pkg/.upstream.json", {400, 404}),
        ("/simple/demo-pkg/..%2f..%2fetc%2fpasswd", {400, 404}),
        ("/simple/demo-pkg/%00.whl", {400, 404}),
        ("/simple/demo-pkg/not-listed-1.0.tar.gz", {404}),
        ("/etc/passwd", {404}),
    ],
)
def test_hostile_paths(
    served: StandaloneServer, serve_upstream: Upstream, path: str, statuses: set[int]
) -> None:
    status, body = raw_request(served, "GET", path)
    assert status in statuses, (status, body)
    assert b"root:" not in body
    assert not any(p.name in ("passwd", "x") for p in served.cache_dir.rglob("*"))


def test_only_get_and_head(served: StandaloneServer) -> None:
    for method in ("POST", "PUT", "DELETE"):
        status, _body = raw_request(served, method, "/simple/demo-pkg/")
        assert status == 405, method
