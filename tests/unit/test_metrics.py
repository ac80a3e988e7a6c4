"""Metrics: batched request counts, per-source counts and health, several directories, dead pids."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eggproxy.metrics import (
    OWNER_FILE,
    CacheUsage,
    DirectoryInUse,
    Metrics,
    NullMetrics,
    claim_directory,
    exposition,
    mark_dead,
    process_status,
    reset_directory,
    sample_key,
    totals,
)


@pytest.fixture
def metrics(tmp_path: Path):  # type: ignore[no-untyped-def]
    found = Metrics(tmp_path / "m", ["upstream", "private"], clock=lambda: 1000.0)
    yield found
    found.close()


def _requests(directory: Path, kind: str, outcome: str) -> float:
    key = sample_key("eggproxy_requests_total", {"kind": kind, "outcome": outcome})
    return totals(directory).get(key, 0.0)


def test_served_is_counted_in_memory_then_flushed(metrics: Metrics) -> None:
    directory = metrics.directory
    assert directory is not None
    metrics.served("page", "hit", 100)
    metrics.served("page", "hit", 50)
    metrics.served("file", "miss", 7, "demo/demo-1.0.tar.gz")
    assert _requests(directory, "page", "hit") == 0  # not yet written: the hit path is cheap
    metrics.flush()
    assert _requests(directory, "page", "hit") == 2
    assert _requests(directory, "file", "miss") == 1
    assert totals(directory)[sample_key("eggproxy_served_bytes_total", {"kind": "page"})] == 150
    (status,) = process_status(directory)
    assert status["misses"] == [{"time": 1000.0, "kind": "file", "what": "demo/demo-1.0.tar.gz"}]


def test_two_directories_in_one_process_stay_apart(tmp_path: Path) -> None:
    first, second = Metrics(tmp_path / "a", ["s"]), Metrics(tmp_path / "b", ["s"])
    try:
        first.served("page", "hit", 1)
        first.flush()
        second.flush()
        assert _requests(tmp_path / "a", "page", "hit") == 1
        assert _requests(tmp_path / "b", "page", "hit") == 0
    finally:
        first.close()
        second.close()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # other users of the library untouched


def test_upstream_requests_errors_latency_and_health(metrics: Metrics) -> None:
    directory = metrics.directory
    assert directory is not None
    metrics.upstream("upstream", 0.02, what="demo")
    metrics.upstream("upstream", 0.4, error="upstream answered 503", what="demo")
    metrics.upstream("unknown-source", 1.0)  # not configured: ignored
    metrics.upstream_bytes("upstream", 1234)
    metrics.flush()
    found = totals(directory)
    label = {"source": "upstream"}
    assert found[sample_key("eggproxy_upstream_requests_total", label)] == 2
    assert found[sample_key("eggproxy_upstream_errors_total", label)] == 1
    assert found[sample_key("eggproxy_upstream_bytes_total", label)] == 1234
    assert found[sample_key("eggproxy_upstream_request_duration_seconds_count", label)] == 2
    bucket = {"source": "upstream", "le": "0.025"}
    assert found[sample_key("eggproxy_upstream_request_duration_seconds_bucket", bucket)] == 1
    assert found[sample_key("eggproxy_upstream_requests_total", {"source": "private"})] == 0
    assert found[sample_key("eggproxy_upstream_last_success_timestamp_seconds", label)] == 1000
    (status,) = process_status(directory)
    health = status["sources"]["upstream"]
    assert health == {
        "latency": 0.4,
        "last_success": 1000.0,
        "last_error": 1000.0,
        "error": "upstream answered 503",
    }
    assert status["errors"][0]["error"] == "upstream answered 503"


def test_downloads_joins_in_flight_and_evictions(metrics: Metrics) -> None:
    directory = metrics.directory
    assert directory is not None
    with metrics.downloading():
        assert totals(directory)["eggproxy_downloads_in_flight"] == 1
        metrics.joined()
        metrics.joined()
    metrics.evicted(3, 300)
    found = totals(directory)
    assert found["eggproxy_downloads_in_flight"] == 0
    assert found["eggproxy_downloads_total"] == 1
    assert found["eggproxy_download_joins_total"] == 2
    assert (found["eggproxy_evicted_files_total"], found["eggproxy_evicted_bytes_total"]) == (
        3,
        300,
    )


def test_exposition_names_follow_prometheus_conventions(metrics: Metrics) -> None:
    directory = metrics.directory
    assert directory is not None
    metrics.served("metadata", "stale", 10)
    metrics.flush()
    text = exposition(directory, CacheUsage(bytes=5, files=2, projects=1)).decode()
    assert 'eggproxy_requests_total{kind="metadata",outcome="stale"} 1.0' in text
    assert "eggproxy_cache_size_bytes 5.0" in text
    assert "eggproxy_cache_files 2.0" in text
    assert "# TYPE eggproxy_upstream_request_duration_seconds histogram" in text


def test_dead_processes_lose_their_live_gauges_not_their_counts(tmp_path: Path) -> None:
    directory = tmp_path / "m"
    script = (
        "import sys; from pathlib import Path; from eggproxy.metrics import Metrics\n"
        "m = Metrics(Path(sys.argv[1]), ['s'])\n"
        "m.served('page', 'hit', 1)\n"
        "download = m.downloading(); download.__enter__()\n"
        "m.flush()\n"
        "import os; os._exit(0)\n"  # dies with a download in flight
    )
    subprocess.run([sys.executable, "-c", script, str(directory)], check=True, timeout=60)
    assert totals(directory)["eggproxy_downloads_in_flight"] == 1
    dead = mark_dead(directory)
    assert len(dead) == 1
    assert totals(directory).get("eggproxy_downloads_in_flight", 0) == 0
    assert _requests(directory, "page", "hit") == 1


def test_reset_directory_empties_a_previous_run(tmp_path: Path) -> None:
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"x")
    (directory / "status-1.json").write_text(json.dumps({}))
    (directory / "keep.txt").write_text("not ours")
    reset_directory(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]


def test_null_metrics_do_nothing(tmp_path: Path) -> None:
    null = NullMetrics()
    null.served("page", "hit", 1)
    null.upstream("s", 1.0, error="x")
    with null.downloading():
        null.joined()
    null.flush()
    assert null.directory is None and not null.enabled


def test_a_metrics_directory_that_cannot_be_written_turns_counting_off(tmp_path: Path) -> None:
    from eggproxy.config import config_from_mapping
    from eggproxy.proxy import Proxy

    (tmp_path / "a-file").write_text("")
    config = config_from_mapping({"cache_dir": str(tmp_path / "c"), "index": "https://up.test/"})
    proxy = Proxy(config, metrics_dir=tmp_path / "a-file" / "metrics")
    assert not proxy.metrics.enabled
    assert proxy.metrics_text() is None
    proxy.close()


def test_a_metrics_directory_is_held_by_one_server(tmp_path: Path) -> None:
    directory = tmp_path / "metrics" / "node"
    # Another process holds it (as a running eggproxy serve's main process does).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from eggproxy.metrics import claim_directory; "
            "claim_directory(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()",
            str(directory),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(DirectoryInUse) as info:
            claim_directory(directory)
        assert info.value.pid == str(holder.pid)
        said = f"{directory} is in use by another eggproxy serve (pid {holder.pid})"
        assert str(info.value) == said
    finally:
        holder.communicate("", timeout=30)
    # Gone with its process: the next server takes it and says who holds it now.
    fd = claim_directory(directory)
    try:
        assert (directory / OWNER_FILE).read_text() == f"{os.getpid()}\n"
        reset_directory(directory)  # a reset keeps the owner's file
        assert (directory / OWNER_FILE).exists()
    finally:
        os.close(fd)
