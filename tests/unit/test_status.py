"""The status page: plain data, one HTML page without scripts, hostile strings escaped."""

import json
from pathlib import Path

from eggproxy.config import Config, config_from_mapping
from eggproxy.diskspace import DiskSpace
from eggproxy.metrics import CacheUsage, Metrics
from eggproxy.status import build_status, status_html


def test_status_from_the_metrics_directory(tmp_path: Path) -> None:
    config = config_from_mapping(
        {"cache_dir": str(tmp_path), "index": "https://up.test/simple/", "max_cache_size": "2G"}
    )
    metrics = Metrics(tmp_path / "m", ["upstream"], clock=lambda: 500.0)
    for outcome in ("hit", "hit", "hit", "miss", "error"):
        metrics.served("page", outcome, 10, "demo")  # type: ignore[arg-type]
    metrics.upstream("upstream", 0.25, error="upstream answered 503 <b>", what="demo")
    metrics.close()
    status = build_status(
        config,
        version="9.9",
        started=100.0,
        now=400.0,
        usage=CacheUsage(bytes=2048, files=3, projects=1),
        directory=tmp_path / "m",
        urls={"upstream": "https://up.test/simple/"},
    )
    assert status["uptime_seconds"] == 300.0
    assert status["requests"]["total"] == 5
    assert status["requests"]["hit_ratio"] == 0.75  # errors are not answers
    assert status["cache"]["max_cache_size"] == 2 << 30
    (source,) = status["sources"]
    assert (source["requests"], source["errors"]) == (1, 1)
    assert source["mean_latency_seconds"] == 0.25
    assert source["error"] == "upstream answered 503 <b>"
    assert [e["what"] for e in status["recent_misses"]] == ["demo"]
    json.dumps(status)  # all of it JSON-ready

    html = status_html(status).decode()
    assert "<script" not in html
    assert '<td id="requests-total">5</td>' in html
    assert 'id="hit-ratio" data-value="0.750000">75.0%<' in html
    assert 'id="cache-bytes" data-value="2048">2.0 KiB<' in html
    assert "503 &lt;b&gt;" in html and "503 <b>" not in html


def test_status_without_metrics(tmp_path: Path) -> None:
    config = config_from_mapping({"cache_dir": str(tmp_path), "index": "https://up.test/simple/"})
    status = build_status(
        config,
        version="9.9",
        started=100.0,
        now=100.0,
        usage=CacheUsage(0, 0, 0),
        directory=None,
        urls={"upstream": "https://up.test/simple/"},
    )
    assert status["requests"]["hit_ratio"] is None and not status["metrics"]
    html = status_html(status).decode()
    assert "Metrics are off" in html
    # No limit set: the page says off, as the configuration spells it, not a Python None.
    assert status["settings"]["max_cache_size"] is None
    assert '<td id="setting-max_cache_size">off</td>' in html and "None" not in html


def test_status_warns_of_a_nearly_full_disk(tmp_path: Path) -> None:
    # Issue 16: the status page says so before the disk answers 507.
    config = Config(cache_dir=tmp_path, index="https://up.test/simple/")
    status = build_status(
        config,
        version="9.9",
        started=100.0,
        now=100.0,
        usage=CacheUsage(0, 0, 0),
        directory=None,
        urls={"upstream": "https://up.test/simple/"},
        disk=DiskSpace(free=10 << 20, total=100 << 30),
    )
    assert status["cache"]["disk_low"] is True
    assert status["cache"]["disk_free_bytes"] == 10 << 20
    assert b"disk free (LOW: near full)" in status_html(status)
