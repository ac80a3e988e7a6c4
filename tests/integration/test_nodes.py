"""Several nodes, one cache: two ``eggproxy serve`` sharing a cache directory (issue 12).

The two servers stand for two machines mounting one shared filesystem: every
guarantee rests on ``flock(2)`` locks and atomic ``rename(2)`` in that
directory, which both processes see as they would on NFSv4 (README "Scaling
out" says which filesystems are fit).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from tests.integration.fixtures import build_projects
from tests.integration.standalone import (
    CLIENT_TIMEOUT,
    Fetch,
    StandaloneServer,
    clean_env,
    fetch,
    leftovers,
    sha256,
)
from tests.integration.upstream import Upstream

pytestmark = pytest.mark.integration

JSON_V1 = "application/vnd.pypi.simple.v1+json"
CLIENTS = 16


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    files = tmp_path / "files"
    build_projects(files)
    with Upstream(files) as up:
        yield up


@pytest.fixture
def nodes(upstream: Upstream, tmp_path: Path) -> Iterator[tuple[StandaloneServer, ...]]:
    """Two nodes on one cache directory, each with its own configuration and log file."""
    shared = tmp_path / "shared-cache"
    servers = []
    for name in ("node-a", "node-b"):
        server = StandaloneServer(upstream.url, shared, index_ttl=300, timeout=20)
        server.config_path = tmp_path / f"{name}.conf"
        server.log_path = tmp_path / f"{name}.log"
        servers.append(server.start())
    yield tuple(servers)
    for server in servers:
        server.stop()
        print(f"--- {server.log_path.name} ---\n{server.log_text()[-6000:]}")


def across(nodes: tuple[StandaloneServer, ...], path: str) -> list[str]:
    """``CLIENTS`` URLs for ``path``, alternating between the nodes."""
    return [nodes[i % len(nodes)].url + path for i in range(CLIENTS)]


def test_a_herd_across_nodes_downloads_a_file_once(
    nodes: tuple[StandaloneServer, ...], upstream: Upstream
) -> None:
    name = "demo_pkg-3.0-py3-none-any.whl"
    upstream.add_file("demo-pkg", name, 6 << 20)
    upstream.slow[name] = 0.002  # the herd arrives while the download runs
    for node in nodes:
        assert requests.get(node.url + "demo-pkg/", timeout=CLIENT_TIMEOUT).status_code == 200
    final = nodes[0].cache_dir / "demo-pkg" / name
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        for _ in range(20000):  # bounded; stopped once the herd is done
            if stop.wait(0.005):
                return
            with contextlib.suppress(FileNotFoundError):
                seen.add(final.stat().st_size)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    barrier = threading.Barrier(CLIENTS)

    def one(url: str) -> Fetch:
        barrier.wait(CLIENT_TIMEOUT)
        return fetch(url)

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(one, across(nodes, f"demo-pkg/{name}")))
    stop.set()
    watcher.join(5)
    assert all(r.complete for r in results), results
    assert {r.digest for r in results} == {sha256(final.read_bytes())}
    assert upstream.hits[upstream.file_path(name)] == 1
    # The final name only ever held the whole file; nothing partial is left.
    assert seen <= {6 << 20}
    assert leftovers(nodes[0].cache_dir, "demo-pkg", name) == [name]


@pytest.mark.parametrize("fault", ["truncate", "corrupt"])
def test_a_herd_across_nodes_on_a_quick_failed_download_gets_502s(
    nodes: tuple[StandaloneServer, ...], upstream: Upstream, fault: str
) -> None:
    # Ends (badly) well within the time followers wait for a whole file: every
    # client of either node gets an error status, none a 200 cut short.
    name = "demo_pkg-3.1-py3-none-any.whl"
    upstream.add_file("demo-pkg", name, 1 << 20)
    getattr(upstream, fault).add(name)
    upstream.slow[name] = 0.01  # the herd arrives while the download runs
    for node in nodes:
        assert requests.get(node.url + "demo-pkg/", timeout=CLIENT_TIMEOUT).status_code == 200
    barrier = threading.Barrier(CLIENTS)

    def one(url: str) -> Fetch:
        barrier.wait(CLIENT_TIMEOUT)
        return fetch(url)

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(one, across(nodes, f"demo-pkg/{name}")))
    assert {r.status for r in results} == {502}, results
    assert upstream.hits[upstream.file_path(name)] == 1
    assert leftovers(nodes[0].cache_dir, "demo-pkg", name) == []


def test_concurrent_page_misses_across_nodes_ask_once(
    nodes: tuple[StandaloneServer, ...], upstream: Upstream
) -> None:
    upstream.delay_pages = 0.5  # every request arrives while the first fetch waits
    barrier = threading.Barrier(CLIENTS)

    def one(url: str) -> tuple[int, bytes, str]:
        barrier.wait(CLIENT_TIMEOUT)
        accept = JSON_V1 if url.endswith("/") and hash(url) % 2 else "text/html"
        response = requests.get(url, headers={"Accept": accept}, timeout=CLIENT_TIMEOUT)
        return response.status_code, response.content, response.headers["content-type"]

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(one, across(nodes, "dep-pkg/")))
    assert {status for status, _, _ in answers} == {200}
    bodies = {(kind, body) for _, body, kind in answers}
    assert len(bodies) <= 2  # one page per format: none torn, none different
    for kind, body in bodies:
        if kind == JSON_V1:
            assert b'"name": "dep-pkg"' in body or b'"name":"dep-pkg"' in body
        else:
            assert body.rstrip().endswith(b"</html>")
    assert upstream.hits["/simple/dep-pkg/"] == 1


def test_update_from_a_third_process_while_both_nodes_serve(
    nodes: tuple[StandaloneServer, ...], upstream: Upstream
) -> None:
    for node in nodes:
        requests.get(node.url + "demo-pkg/", timeout=CLIENT_TIMEOUT)
    upstream.add_file("demo-pkg", "demo_pkg-4.0-py3-none-any.whl", b"newer")
    node = nodes[0]
    cmd = [sys.executable, "-m", "eggproxy", "update", "-c", str(node.config_path), "-q"]
    cmd += ["--cache-dir", str(node.cache_dir), "--index", upstream.url, "--max-age", "0"]
    updater = subprocess.Popen(cmd, env=clean_env(), stderr=subprocess.PIPE, text=True)
    pages = []
    for _ in range(40):  # bounded: pages read from both nodes while the update runs
        for each in nodes:
            response = requests.get(
                each.url + "demo-pkg/", headers={"Accept": JSON_V1}, timeout=CLIENT_TIMEOUT
            )
            pages.append(response.json())  # never torn: always whole JSON
        if updater.poll() is not None:
            break
    _, errors = updater.communicate(timeout=120)
    assert updater.returncode == 0, errors
    assert all(page["name"] == "demo-pkg" for page in pages)
    for each in nodes:
        page = requests.get(
            each.url + "demo-pkg/", headers={"Accept": JSON_V1}, timeout=CLIENT_TIMEOUT
        ).json()
        assert "demo_pkg-4.0-py3-none-any.whl" in {f["filename"] for f in page["files"]}
