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
from conftest import private_upstream
from tests.integration.standalone import (
    CLIENT_TIMEOUT,
    Fetch,
    StandaloneServer,
    clean_env,
    fetch,
    leftovers,
    sha256,
    wait_until,
)
from tests.integration.upstream import Upstream

from eggproxy.inventory import scan

pytestmark = pytest.mark.integration

JSON_V1 = "application/vnd.pypi.simple.v1+json"
CLIENTS = 16
PRUNES = 6  # passes of `eggproxy cache prune` while a herd runs


upstream = pytest.fixture(private_upstream, name="upstream")


@pytest.fixture
def nodes(upstream: Upstream, tmp_path: Path) -> Iterator[tuple[StandaloneServer, ...]]:
    """Two nodes on one cache directory, each with its own configuration, log and metrics.

    ``metrics_dir`` is on each node's own disk, as README "Scaling out" says: its
    default, inside the cache directory, would be shared by the nodes.
    """
    shared = tmp_path / "shared-cache"
    servers = []
    for name in ("node-a", "node-b"):
        settings = {"metrics_dir": str(tmp_path / f"{name}.metrics")}
        server = StandaloneServer(upstream.url, shared, index_ttl=300, timeout=20, config=settings)
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


def herd(nodes: tuple[StandaloneServer, ...], path: str) -> list[Fetch]:
    """CLIENTS fetches of ``path`` at once, spread over the nodes."""
    barrier = threading.Barrier(CLIENTS)

    def one(url: str) -> Fetch:
        barrier.wait(CLIENT_TIMEOUT)
        return fetch(url)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, across(nodes, path)))


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
    results = herd(nodes, f"demo-pkg/{name}")
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
    results = herd(nodes, f"demo-pkg/{name}")
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


def test_each_node_counts_its_own_requests(nodes: tuple[StandaloneServer, ...]) -> None:
    for _ in range(3):
        assert requests.get(nodes[0].url + "demo-pkg/", timeout=CLIENT_TIMEOUT).ok
    assert requests.get(nodes[1].url + "dep-pkg/", timeout=CLIENT_TIMEOUT).ok

    def pages_counted(node: StandaloneServer) -> float:
        text = requests.get(f"{node.root}/metrics", timeout=CLIENT_TIMEOUT).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("eggproxy_requests_total{") and 'kind="page"' in line
        )

    # A node's workers add their counts to its metrics files within FLUSH_INTERVAL.
    assert wait_until(lambda: (pages_counted(nodes[0]), pages_counted(nodes[1])) == (3, 1))


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


def cached_bytes(cache_dir: Path) -> int:
    """What the cache limit counts (every byte of the cache directory but the root's state)."""
    return scan(cache_dir).usage.bytes


def test_prune_from_a_third_process_while_both_nodes_serve_a_herd(
    nodes: tuple[StandaloneServer, ...], upstream: Upstream, tmp_path: Path
) -> None:
    # Large files are sent by granian from disk, small ones from the worker's memory:
    # both must survive their file being evicted between the stat and the send.
    dists = [upstream.add_file("bulky", f"bulky-{i}.0.tar.gz", 700_000) for i in range(4)]
    dists += [upstream.add_file("bulky", f"bulky-{i}.1.tar.gz", 60_000) for i in range(4)]
    for dist in dists:
        upstream.slow[dist.path.name] = 0.001  # misses overlap the prunes
    node = nodes[0]
    for each in nodes:
        assert requests.get(each.url + "bulky/", timeout=CLIENT_TIMEOUT).status_code == 200
    for dist in dists:  # all cached: the first prune has something to evict
        assert fetch(f"{node.url}bulky/{dist.path.name}").complete
    limit = 1_500_000  # two large files and a few small ones: most are evicted each time
    assert cached_bytes(node.cache_dir) > limit
    # The second node's configuration, run by a third process (cron on any node).
    prune_cmd = [sys.executable, "-m", "eggproxy", "cache", "prune", "--max-size", str(limit)]
    prune_cmd += ["-c", str(nodes[1].config_path), "--cache-dir", str(node.cache_dir)]
    finals = {node.cache_dir / "bulky" / d.path.name: d.size for d in dists}
    torn: list[tuple[str, int]] = []
    prunes: list[subprocess.CompletedProcess[str]] = []
    stop = threading.Event()

    def watch() -> None:
        for _ in range(40000):  # bounded; stopped once the herd is done
            if stop.wait(0.002):
                return
            for path, size in finals.items():
                with contextlib.suppress(FileNotFoundError):
                    if (seen := path.stat().st_size) != size:
                        torn.append((path.name, seen))

    pruned = threading.Event()

    def prune_repeatedly() -> None:
        try:
            for _ in range(PRUNES):
                prunes.append(
                    subprocess.run(
                        prune_cmd, capture_output=True, text=True, env=clean_env(), timeout=120
                    )
                )
        finally:
            pruned.set()

    def client(i: int) -> list[tuple[str, Fetch]]:
        got = []
        for j in range(400):  # bounded; the herd lasts until the prunes are done
            if pruned.is_set():
                break
            dist = dists[(i + j) % len(dists)]
            url = f"{nodes[(i + j) % len(nodes)].url}bulky/{dist.path.name}"
            got.append((dist.sha256, fetch(url)))
        return got

    threads = [threading.Thread(target=f, daemon=True) for f in (watch, prune_repeatedly)]
    for thread in threads:
        thread.start()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [r for got in pool.map(client, range(CLIENTS)) for r in got]
    assert pruned.wait(PRUNES * 120)
    stop.set()
    for thread in threads:
        thread.join(150)
    assert not any(t.is_alive() for t in threads)

    # Every answer whole and verified against the upstream's hash.
    assert [fetched for _, fetched in results if not fetched.complete] == []
    assert all(fetched.digest == expected for expected, fetched in results)
    # No final name ever held part of a file; nothing partial left behind.
    assert torn == []
    for dist in dists:
        assert leftovers(node.cache_dir, "bulky", dist.path.name) in ([], [dist.path.name])
    assert all(p.returncode == 0 for p in prunes), [p.stderr for p in prunes]
    evicting = [p.stdout for p in prunes if " evicted 0 files" not in p.stdout]
    assert len(evicting) >= 2, [p.stdout for p in prunes]  # again and again, during the herd
    # Evicted files were misses again: fetched from the upstream once more.
    assert sum(upstream.hits[upstream.file_path(d.path.name)] for d in dists) > len(dists)

    # Once the herd is over, one more pass leaves the cache within the limit.
    final = subprocess.run(prune_cmd, capture_output=True, text=True, env=clean_env(), timeout=120)
    assert final.returncode == 0, final.stderr
    assert cached_bytes(node.cache_dir) <= limit
    assert (node.cache_dir / "bulky" / "index.json").exists()  # pages stay
    # The nodes keep serving: an evicted file is a miss, fetched and verified again.
    gone = next(d for d in dists if not (node.cache_dir / "bulky" / d.path.name).exists())
    before = upstream.hits[upstream.file_path(gone.path.name)]
    for each in nodes:
        again = fetch(f"{each.url}bulky/{gone.path.name}")
        assert again.complete and again.digest == gone.sha256
    assert upstream.hits[upstream.file_path(gone.path.name)] == before + 1
    for each in nodes:
        assert " 500 " not in each.log_text() and "Traceback" not in each.log_text()
