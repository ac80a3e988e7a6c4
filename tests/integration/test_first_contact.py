"""What a new site meets in its first hour, with real ``eggproxy serve`` processes.

An upstream that is eggproxy itself, an address already taken (by another
program or another eggproxy), an address that is not ours, a cache directory
that cannot be written: each is one line and a non-zero exit, never a
traceback or a silently shared port.  Two eggproxies pointed at each other
refuse the loop instead of asking each other forever; ``/`` says where the
index is; a 502 names the source and why.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import FixtureFiles, FrontEnd, page_cache_in_front
from tests.integration.standalone import (
    CLIENT_TIMEOUT,
    StandaloneServer,
    clean_env,
    start_serve,
    wait_until,
)
from tests.integration.upstream import Upstream
from tests.support import free_port

pytestmark = pytest.mark.integration

START_TIMEOUT = 60  # seconds for a serve that must refuse to start


@pytest.fixture
def json_upstream(fixture_files: FixtureFiles) -> Iterator[Upstream]:
    with Upstream(fixture_files.root, fmt="json") as up:
        yield up


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``eggproxy serve`` that is expected to refuse to start (bounded)."""
    conf = tmp_path / "refused.conf"
    if not conf.exists():
        conf.write_text(f"[eggproxy]\ncache_dir = {tmp_path}/refused-cache\n")
    return subprocess.run(
        [sys.executable, "-m", "eggproxy", "serve", "-c", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "serving" not in result.stdout + result.stderr
    return lines[0]


# --- it never proxies itself -------------------------------------------------------


@pytest.mark.parametrize("index_host", ["127.0.0.1", "localhost", "[::1]"])
def test_index_at_its_own_address_is_refused(tmp_path: Path, index_host: str) -> None:
    port = free_port()
    result = _serve(
        tmp_path, "--bind", f"127.0.0.1:{port}", "--index", f"http://{index_host}:{port}/simple/"
    )
    line = _one_line(result)
    assert result.returncode == 2
    assert f"is this eggproxy (bind 127.0.0.1:{port})" in line
    assert "set index = " in line


def test_a_bind_on_every_address_matches_any_local_one(tmp_path: Path) -> None:
    port = free_port()
    result = _serve(
        tmp_path, "--bind", f"0.0.0.0:{port}", "--index", f"http://127.0.0.1:{port}/simple/"
    )
    assert "is this eggproxy" in _one_line(result)


def test_two_eggproxies_pointed_at_each_other_refuse_the_loop(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    a = StandaloneServer(f"http://127.0.0.1:{port_b}/simple/", tmp_path / "a", port=port_a)
    b = StandaloneServer(f"http://127.0.0.1:{port_a}/simple/", tmp_path / "b", port=port_b)
    with a.start(), b.start():
        response = requests.get(f"{a.url}demo-pkg/", timeout=CLIENT_TIMEOUT)
        # A asked B, B asked A with A's own name in Via: A refused, B said so, A said so.
        assert response.status_code == 502
        assert 'upstream "upstream" answered 502' in response.text
        for server in (a, b):
            assert not list(server.cache_dir.glob("demo-pkg/index.*"))
        # Refused at once, not after a chain of timeouts: one 508, logged on one line.
        assert a.log_text().count(" -> 508 loop detected") == 1
        assert b.log_text().count("/simple/demo-pkg/ -> 502") == 1


def test_a_request_through_this_eggproxy_is_508(tmp_path: Path, json_upstream: Upstream) -> None:
    with start_serve(json_upstream.url, tmp_path / "cache") as server:
        requests.get(f"{server.url}demo-pkg/", timeout=CLIENT_TIMEOUT).raise_for_status()
        via = next(h["Via"] for _m, p, h in json_upstream.requests if p == "/simple/demo-pkg/")
        assert via.startswith("1.1 eggproxy-")
        before = len(json_upstream.requests)
        looped = requests.get(f"{server.url}demo-pkg/", headers={"Via": via}, timeout=60)
        assert looped.status_code == 508
        assert "loop detected" in looped.text
        assert len(json_upstream.requests) == before
        # Another eggproxy's Via is a chain, not a loop.
        chained = requests.get(
            f"{server.url}dep-pkg/", headers={"Via": "1.1 eggproxy-000000000000"}, timeout=60
        )
        assert chained.status_code == 200
        via = next(h["Via"] for _m, p, h in json_upstream.requests if p == "/simple/dep-pkg/")
        assert via.startswith("1.1 eggproxy-000000000000, 1.1 eggproxy-")


# --- the address is really ours ------------------------------------------------------


def test_a_port_taken_by_another_eggproxy(tmp_path: Path, json_upstream: Upstream) -> None:
    with start_serve(json_upstream.url, tmp_path / "first") as first:
        second = _serve(
            tmp_path,
            "--bind",
            f"127.0.0.1:{first.port}",
            "--index",
            json_upstream.url,
            "--cache-dir",
            str(tmp_path / "second"),
        )
        line = _one_line(second)
        assert line == f"eggproxy: cannot listen on 127.0.0.1:{first.port}: address already in use"
        # The first one keeps every request: none reaches a second cache.
        for _ in range(20):
            requests.get(f"{first.url}demo-pkg/", timeout=CLIENT_TIMEOUT).raise_for_status()
        assert not (tmp_path / "second" / "demo-pkg").exists()
        assert first.running()


def test_a_second_server_on_the_same_cache_and_machine(
    tmp_path: Path, json_upstream: Upstream
) -> None:
    # Both would count into <cache>/.metrics/<host>: the second would wipe the first's counts.
    # The first one's housekeeping (every prune_interval here) reads that folder meanwhile:
    # its lock outlives those reads.
    chores = {"prune_interval": "0.1"}
    with start_serve(json_upstream.url, tmp_path / "shared", config=chores) as first:
        for _ in range(3):
            requests.get(f"{first.url}demo-pkg/", timeout=CLIENT_TIMEOUT).raise_for_status()
        time.sleep(0.5)  # a few rounds of housekeeping (not a timing assertion)
        page = first.cache_dir / "demo-pkg" / "index.json"
        before = page.read_bytes(), page.stat().st_mtime_ns
        # Its other policy would render every cached page again: refused first, it does not.
        (tmp_path / "refused.conf").write_text("[eggproxy]\ndeny = demo-pkg\n")
        second = _serve(
            tmp_path,
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--index",
            json_upstream.url,
            "--cache-dir",
            str(first.cache_dir),
        )
        line = _one_line(second)
        metrics = first.cache_dir / ".metrics"
        (node,) = metrics.iterdir()
        assert line == (
            f"eggproxy: configuration error: metrics_dir: {node} is in use by another "
            f"eggproxy serve (pid {first.pid}): give each server on one machine its own metrics_dir"
        )
        assert second.returncode == 2
        assert (page.read_bytes(), page.stat().st_mtime_ns) == before

        def counted() -> int:
            status = requests.get(f"{first.root}/+status.json", timeout=CLIENT_TIMEOUT)
            total: int = status.json()["requests"]["total"]
            return total

        # The first one's counts are still there (its workers flush them within a second).
        assert wait_until(lambda: counted() >= 3), counted()
        assert first.running()
    # Once the first has stopped, the cache is free for the next server.
    with start_serve(json_upstream.url, tmp_path / "shared") as after:
        assert after.running()


def test_a_port_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as other:
        # Even a program that allows port sharing does not share it with us.
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        line = _one_line(_serve(tmp_path, "--bind", f"127.0.0.1:{port}"))
    assert line == f"eggproxy: cannot listen on 127.0.0.1:{port}: address already in use"


def test_an_address_that_is_not_ours(tmp_path: Path) -> None:
    # TEST-NET-1 (RFC 5737): never assigned to a host; we only try to bind it.
    line = _one_line(_serve(tmp_path, "--bind", "192.0.2.1:3141"))
    assert line == "eggproxy: cannot listen on 192.0.2.1:3141: cannot assign requested address"


@pytest.mark.parametrize("where", ["file", "proc"])
def test_a_cache_directory_that_cannot_be_written(tmp_path: Path, where: str) -> None:
    if where == "file":
        (tmp_path / "a-file").write_text("")
        cache = tmp_path / "a-file" / "cache"  # its parent cannot hold a directory
    else:
        cache = Path("/proc/eggproxy-test/cache")  # a read-only file system, even for root
    line = _one_line(
        _serve(tmp_path, "--bind", f"127.0.0.1:{free_port()}", "--cache-dir", str(cache))
    )
    assert line.startswith(f"eggproxy: configuration error: cache_dir: cannot write {cache}: ")


def test_serving_is_said_once_the_socket_is_bound(tmp_path: Path, json_upstream: Upstream) -> None:
    with start_serve(json_upstream.url, tmp_path / "cache") as server:
        log = server.log_text()
    assert log.index("Listening at") < log.index("serving http://127.0.0.1:")


# --- friendly edges ---------------------------------------------------------------


def test_root_says_where_the_index_is(tmp_path: Path, json_upstream: Upstream) -> None:
    with start_serve(json_upstream.url, tmp_path / "cache") as server:
        response = requests.get(f"{server.root}/", timeout=CLIENT_TIMEOUT)
        head = requests.head(f"{server.root}/", timeout=CLIENT_TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f'href="{server.url}"' in response.text
    assert f"pip install --index-url {server.url}" in response.text
    assert "[buildout]" in response.text and "uv pip install" in response.text
    assert head.status_code == 200 and head.content == b""
    assert not json_upstream.requests  # answered without the upstream


def test_a_502_names_the_source_and_why(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/simple/"
    with start_serve(dead, tmp_path / "cache", timeout=5) as server:
        response = requests.get(f"{server.url}demo-pkg/", timeout=CLIENT_TIMEOUT)
    assert response.status_code == 502
    assert response.text == '502 upstream "upstream" unreachable: connection refused\n'
    # The access log counts the body it sent (CLF's size), not 0.
    size = len(response.content)
    assert f'"GET /simple/demo-pkg/ HTTP/1.1" 502 {size} ' in server.log_text()


def test_both_front_ends_refuse_a_looped_request(proxy: FrontEnd, upstream: Upstream) -> None:
    requests.get(f"{proxy.url}demo-pkg/", timeout=CLIENT_TIMEOUT).raise_for_status()
    via = next(h["Via"] for _m, p, h in upstream.requests if p == "/simple/demo-pkg/")
    before = len(upstream.requests)
    # A miss and a hit: neither is answered.  (Apache answers a fresh page from mod_cache
    # without eggproxy, forwarding nothing: no loop to cut there.)
    paths = ["dep-pkg/"] if page_cache_in_front(proxy) == "apache" else ["dep-pkg/", "demo-pkg/"]
    for path in paths:
        looped = requests.get(f"{proxy.url}{path}", headers={"Via": via}, timeout=CLIENT_TIMEOUT)
        assert looped.status_code == 508, looped.text
    assert len(upstream.requests) == before
