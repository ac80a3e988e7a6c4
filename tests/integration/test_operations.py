"""Operating it for months: metrics, the status page, the cache limit, verify, the JSON log.

Real ``eggproxy serve`` processes (and a real Apache) against the upstream double; the
numbers read back through ``/metrics`` and ``eggproxy metrics`` as Prometheus would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import private_upstream
from prometheus_client.parser import text_string_to_metric_families
from tests.integration import apache
from tests.integration.standalone import (
    StandaloneServer,
    fetch_concurrently,
    start_serve,
    wait_until,
)
from tests.integration.upstream import Upstream
from tests.support import clean_env

from eggproxy.metrics import FLUSH_INTERVAL, sample_key

pytestmark = pytest.mark.integration

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
SDIST = "demo_pkg-1.0.tar.gz"
CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 60


up = pytest.fixture(private_upstream, name="up")


def metrics_of(text: str) -> dict[str, float]:
    """Every sample of a text exposition, keyed like ``eggproxy.metrics.sample_key``."""
    return {
        sample_key(sample.name, sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(server: StandaloneServer) -> dict[str, float]:
    response = requests.get(f"{server.root}/metrics", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return metrics_of(response.text)


def requests_total(found: dict[str, float], kind: str, outcome: str) -> float:
    return found.get(sample_key("eggproxy_requests_total", {"kind": kind, "outcome": outcome}), 0)


def all_requests(found: dict[str, float]) -> float:
    return sum(v for k, v in found.items() if k.startswith("eggproxy_requests_total{"))


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=TIMEOUT)


def cache_bytes(cache: Path) -> int:
    """Bytes the limit counts: files at the root and in project directories, not ours (dot)."""
    total = 0
    for entry in cache.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            total += entry.stat().st_size
        elif entry.is_dir():
            total += sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
    return total


def eggproxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eggproxy", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(),
    )


# --- metrics ---------------------------------------------------------------------------


def test_metrics_count_a_scripted_sequence_across_workers(up: Upstream, tmp_path: Path) -> None:
    with start_serve(up.url, tmp_path / "cache", workers=2) as server:
        page = f"{server.url}demo-pkg/"
        wheel = up.file(WHEEL)
        assert get(page).status_code == 200  # miss
        for _ in range(3):
            assert get(page).status_code == 200  # hits, in either worker
        assert get(page + WHEEL).content == wheel.path.read_bytes()  # miss
        for _ in range(2):
            assert get(page + WHEEL).status_code == 200  # hits
        up.down = True
        assert get(f"{server.url}dep-pkg/").status_code in (502, 504)  # an upstream failure

        # Every worker's counts reach the files within a second: wait for all eight.
        assert wait_until(lambda: all_requests(scrape(server)) == 8), scrape(server)
        found = scrape(server)
        assert requests_total(found, "page", "miss") == 1
        assert requests_total(found, "page", "hit") == 3
        assert requests_total(found, "file", "miss") == 1
        assert requests_total(found, "file", "hit") == 2
        assert requests_total(found, "page", "error") == 1
        source = {"source": "upstream"}
        assert found[sample_key("eggproxy_upstream_requests_total", source)] == 3
        assert found[sample_key("eggproxy_upstream_errors_total", source)] == 1
        assert found[sample_key("eggproxy_upstream_request_duration_seconds_count", source)] == 3
        assert found[sample_key("eggproxy_upstream_bytes_total", source)] >= wheel.size
        assert found[sample_key("eggproxy_served_bytes_total", {"kind": "file"})] == 3 * wheel.size
        assert found["eggproxy_downloads_total"] == 1
        assert found["eggproxy_download_joins_total"] == 0
        assert found["eggproxy_downloads_in_flight"] == 0
        assert found["eggproxy_cache_files"] == 1
        assert found["eggproxy_cache_projects"] == 1
        assert found["eggproxy_cache_size_bytes"] == cache_bytes(server.cache_dir)

        status = get(f"{server.root}/+status.json").json()
        assert status["requests"]["total"] == 8
        assert status["requests"]["by_outcome"]["error"] == 1
        assert status["sources"][0]["errors"] == 1
        assert status["sources"][0]["error"] == 'upstream "upstream" answered 503'
        assert [e["what"] for e in status["recent_misses"]] == [f"demo-pkg/{WHEEL}", "demo-pkg"]
    # The counts outlive the server, for the textfile collector or a last look.
    printed = eggproxy(
        "metrics", "-c", str(server.config_path), "--cache-dir", str(server.cache_dir)
    )
    assert printed.returncode == 0, printed.stderr
    assert all_requests(metrics_of(printed.stdout)) == 8


def test_a_herd_of_misses_downloads_once_and_counts_the_joins(up: Upstream, tmp_path: Path) -> None:
    clients = 8
    big = up.add_file("herd", "herd-1.0.tar.gz", 2 << 20)
    up.slow[big.path.name] = 0.02  # 32 chunks: every client arrives while it downloads
    with start_serve(up.url, tmp_path / "cache", workers=2) as server:
        assert get(f"{server.url}herd/").status_code == 200
        results = fetch_concurrently(f"{server.url}herd/{big.path.name}", clients)
        assert all(r.complete and r.digest == big.sha256 for r in results), results
        assert up.hits[up.file_path(big.path.name)] == 1

        def counted() -> bool:
            found = scrape(server)
            return requests_total(found, "file", "miss") == clients

        assert wait_until(counted), scrape(server)
        found = scrape(server)
        assert found["eggproxy_downloads_total"] == 1
        assert found["eggproxy_download_joins_total"] == clients - 1
        assert found["eggproxy_downloads_in_flight"] == 0


# --- the cache limit -------------------------------------------------------------------


def _recorded(cache: Path, key: str) -> bool:
    database = cache / ".usage.sqlite"
    if not database.exists():
        return False
    with contextlib.closing(sqlite3.connect(database)) as db:
        try:
            row = db.execute("SELECT 1 FROM served WHERE path = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # created, its table not yet
            return False
        return row is not None


def test_eviction_keeps_the_cache_under_a_tiny_limit(up: Upstream, tmp_path: Path) -> None:
    size, count = 100_000, 7
    files = [up.add_file("bulky", f"bulky-{i}.0.tar.gz", size) for i in range(count)]
    limit = 350 * 1024  # three files and the pages
    config = {"max_cache_size": "350K", "prune_interval": "0.2"}
    with start_serve(up.url, tmp_path / "cache", config=config) as server:
        cache = server.cache_dir
        base = f"{server.url}bulky/"
        for dist in files:
            assert get(base + dist.path.name).content == dist.path.read_bytes()
            # Each download is recorded as a service (for the order, see tests/unit/test_prune).
            key = f"bulky/{dist.path.name}"
            assert wait_until(lambda key=key: _recorded(cache, key))
            assert wait_until(lambda: cache_bytes(cache) <= limit), cache_bytes(cache)
            assert cache_bytes(cache) <= limit + size
        assert (cache / "bulky" / "index.json").exists(), "pages stay"
        assert not (cache / "bulky" / files[1].path.name).exists(), "the oldest went first"
        assert (cache / "bulky" / files[-1].path.name).exists()

        # An evicted file asked for again is a normal miss: fetched and verified again.
        again = get(base + files[1].path.name)
        assert hashlib.sha256(again.content).hexdigest() == files[1].sha256
        assert up.hits[up.file_path(files[1].path.name)] == 2
        found = scrape(server)
        assert found["eggproxy_evicted_files_total"] >= count - 3
        assert found["eggproxy_evicted_bytes_total"] == size * found["eggproxy_evicted_files_total"]


# --- verify, prune and stats from the command line -------------------------------------


def test_cache_commands_verify_prune_stats(up: Upstream, tmp_path: Path) -> None:
    with start_serve(up.url, tmp_path / "cache") as server:
        for name in (WHEEL, SDIST):
            assert get(f"{server.url}demo-pkg/{name}").status_code == 200
        cache, conf = server.cache_dir, str(server.config_path)
        target = cache / "demo-pkg" / WHEEL
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF  # bit rot: same size, other bytes
        target.write_bytes(bytes(data))

        result = eggproxy("cache", "verify", "--jobs", "2", "-c", conf, "--cache-dir", str(cache))
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"MISMATCH demo-pkg/{WHEEL}" in result.stdout
        assert (result.stdout + result.stderr).count("MISMATCH") == 1  # one line, said once
        assert "verified 2 files" in result.stdout
        assert not target.exists()
        assert (cache / ".quarantine" / "demo-pkg" / WHEEL).read_bytes() == bytes(data)
        # Fetched again on demand, verified again.
        again = get(f"{server.url}demo-pkg/{WHEEL}")
        assert again.content == up.file(WHEEL).path.read_bytes()
        clean = eggproxy("cache", "verify", "demo-pkg", "-c", conf, "--cache-dir", str(cache))
        assert clean.returncode == 0, clean.stdout + clean.stderr

        # The server adds its counts to the metrics files within FLUSH_INTERVAL: the hit
        # ratio shows once they are there (bounded: 50 tries).
        for _ in range(50):
            stats = eggproxy("cache", "stats", "-c", conf, "--cache-dir", str(cache))
            if stats.returncode != 0 or "hit ratio" in stats.stdout:
                break
            time.sleep(FLUSH_INTERVAL / 5)
        assert stats.returncode == 0, stats.stderr
        assert re.search(r"^files\s+2$", stats.stdout, re.M), stats.stdout
        assert re.search(r"^projects\s+1$", stats.stdout, re.M)
        assert "demo-pkg" in stats.stdout and "hit ratio" in stats.stdout

        pruned = eggproxy(
            "cache", "prune", "--max-size", "1K", "-c", conf, "--cache-dir", str(cache)
        )
        assert pruned.returncode == 0, pruned.stderr
        assert "evicted 2 files" in pruned.stdout
        assert not (cache / "demo-pkg" / SDIST).exists()
        assert (cache / "demo-pkg" / "index.html").exists()
        assert get(f"{server.url}demo-pkg/{SDIST}").content == up.file(SDIST).path.read_bytes()

    bad = eggproxy("cache", "prune", "-c", conf, "--cache-dir", str(cache))
    assert bad.returncode == 2 and "max_cache_size" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


# --- the JSON access log ---------------------------------------------------------------


def test_json_access_log(up: Upstream, tmp_path: Path) -> None:
    with start_serve(up.url, tmp_path / "cache", config={"access_log": "json"}) as server:
        page = f"{server.url}demo-pkg/"
        get(page)
        get(page)

        def lines() -> list[dict[str, object]]:
            return [
                json.loads(line)
                for line in server.log_text().splitlines()
                if line.startswith("{") and '"/simple/demo-pkg/"' in line
            ]

        assert wait_until(lambda: len(lines()) == 2), server.log_text()
        # Two workers may answer them, each writing its own lines: in either order.
        by_outcome = {str(line["outcome"]): line for line in lines()}
        miss, hit = by_outcome["miss"], by_outcome["hit"]
    assert miss["outcome"] == "miss" and miss["source"] == "upstream"
    assert isinstance(miss["upstream_seconds"], float)
    assert hit["outcome"] == "hit" and hit["source"] is None and hit["upstream_seconds"] is None
    assert set(hit) >= {"time", "client", "method", "path", "protocol", "status", "size", "seconds"}
    assert hit["status"] == 200 and hit["method"] == "GET"


# --- the status page in a browser ------------------------------------------------------


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=clean_env())


def _shown(dom: str, ident: str) -> str:
    found = re.search(rf'id="{ident}"[^>]*>([^<]*)<', dom)
    assert found, f"no #{ident} in the page"
    return found.group(1)


def _value(dom: str, ident: str) -> str:
    found = re.search(rf'id="{ident}" data-value="([^"]*)"', dom)
    assert found, f"no #{ident} with a data-value"
    return found.group(1)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed (.ci/run installs it)")
def test_status_page_in_chromium_matches_the_metrics(up: Upstream, tmp_path: Path) -> None:
    with start_serve(up.url, tmp_path / "cache", index_ttl=300) as server:
        page = f"{server.url}demo-pkg/"
        for url in (page, page, page + WHEEL, page + WHEEL, page + SDIST):
            assert get(url).status_code == 200
        assert wait_until(lambda: all_requests(scrape(server)) == 5)
        dom = _chromium(tmp_path, "--dump-dom", f"{server.root}/+status")
        assert dom.returncode == 0, dom.stderr[-2000:]
        found = scrape(server)
        html = dom.stdout
        assert "<script" not in html
        assert int(_shown(html, "requests-total")) == all_requests(found) == 5
        for outcome in ("hit", "miss", "error"):
            shown = int(_shown(html, f"requests-{outcome}"))
            assert shown == sum(requests_total(found, k, outcome) for k in ("page", "file"))
        assert int(_value(html, "cache-bytes")) == found["eggproxy_cache_size_bytes"]
        assert int(_shown(html, "cache-files")) == found["eggproxy_cache_files"] == 2
        assert int(_shown(html, "cache-projects")) == found["eggproxy_cache_projects"]
        assert float(_value(html, "hit-ratio")) == pytest.approx(2 / 5)
        assert _shown(html, "hit-ratio") == "40.0%"
        assert _shown(html, "setting-index_ttl") == "300"
        assert re.search(r'id="source-upstream".*?class="requests">3<', html, re.S)

        shot = tmp_path / "status.png"
        result = _chromium(tmp_path, f"--screenshot={shot}", f"{server.root}/+status")
        assert result.returncode == 0 and shot.stat().st_size > 1000, result.stderr[-2000:]
        artifacts = os.environ.get("EGGPROXY_ARTIFACTS")
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(artifacts) / "status-page.png")


# --- Apache writes the same metrics ----------------------------------------------------


def test_apache_writes_the_same_metrics(up: Upstream, request: pytest.FixtureRequest) -> None:
    apache.require_apache()
    site: Path = request.getfixturevalue("apache_site")
    server = apache.ApacheProxy(site, up.url, start=False)
    try:
        metrics_dir = server.cache_dir / ".metrics"
        server.extra_config = f"metrics_dir = {metrics_dir}\n"
        server.start()
        page = f"{server.url}demo-pkg/"
        for url in (page, page, page + WHEEL, page + WHEEL):
            assert get(url).status_code == 200

        def printed() -> dict[str, float]:
            result = eggproxy("metrics", "-c", str(server.config_path))
            assert result.returncode == 0, result.stderr
            return metrics_of(result.stdout)

        # Each Apache process writes its counts within a second.  Hits are answered by
        # Apache alone (no Python, issue 14): only what reached eggproxy is counted.
        assert wait_until(lambda: all_requests(printed()) == 2), printed()
        found = printed()
        assert requests_total(found, "page", "miss") == 1
        assert requests_total(found, "page", "hit") == 0
        assert requests_total(found, "file", "miss") == 1
        assert requests_total(found, "file", "hit") == 0
        assert found[sample_key("eggproxy_upstream_requests_total", {"source": "upstream"})] == 2
        assert found["eggproxy_downloads_total"] == 1
        assert found["eggproxy_cache_files"] == 1
    finally:
        server.cleanup()
