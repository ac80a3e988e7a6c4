"""The status page (``/+status``, ``/+status.json``): how the proxy is doing, at a glance.

:func:`build_status` gathers plain data (the counts every process wrote to
the metrics directory, their status files, the cache's size, the settings);
:func:`status_html` renders it as one server-side HTML page without
scripts.  Each number a script or a test may want carries an ``id``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any, Final

from eggproxy.config import Config
from eggproxy.diskspace import DiskSpace
from eggproxy.metrics import KINDS, OUTCOMES, CacheUsage, process_status, sample_key, totals

STARTED: Final = "started"  # file in the metrics directory: when eggproxy serve started
SHOWN: Final = 20  # recent misses and errors shown


def _when(directory: Path | None, started: float) -> float:
    if directory is not None:
        try:
            return float((directory / STARTED).read_text())
        except (OSError, ValueError):
            pass
    return started


def build_status(
    config: Config,
    *,
    version: str,
    started: float,
    now: float,
    usage: CacheUsage,
    directory: Path | None,
    urls: Mapping[str, str],
    disk: DiskSpace | None = None,
) -> dict[str, Any]:
    """The status as JSON-ready data."""
    counts = totals(directory) if directory is not None else {}
    requests = {
        outcome: int(
            sum(
                counts.get(
                    sample_key("eggproxy_requests_total", {"kind": k, "outcome": outcome}), 0
                )
                for k in KINDS
            )
        )
        for outcome in OUTCOMES
    }
    answered = sum(requests.values()) - requests["error"]
    processes = process_status(directory) if directory is not None else []
    sources = []
    for name, url in urls.items():
        health: dict[str, Any] = {}
        for process in processes:
            seen = process.get("sources", {}).get(name, {})
            if seen.get("last_success", 0) > health.get("last_success", 0):
                health["last_success"] = seen["last_success"]
            if seen.get("last_error", 0) > health.get("last_error", 0):
                health["last_error"], health["error"] = seen["last_error"], seen.get("error")
            if seen.get("latency") is not None and seen.get("last_success", 0) >= health.get(
                "latest", 0
            ):
                health["latency"], health["latest"] = seen["latency"], seen.get("last_success", 0)
        label = {"source": name}
        count = counts.get(sample_key("eggproxy_upstream_request_duration_seconds_count", label), 0)
        total = counts.get(sample_key("eggproxy_upstream_request_duration_seconds_sum", label), 0)
        sources.append(
            {
                "name": name,
                "url": url,
                "requests": int(
                    counts.get(sample_key("eggproxy_upstream_requests_total", label), 0)
                ),
                "errors": int(counts.get(sample_key("eggproxy_upstream_errors_total", label), 0)),
                "bytes": int(counts.get(sample_key("eggproxy_upstream_bytes_total", label), 0)),
                "last_success": health.get("last_success"),
                "last_error": health.get("last_error"),
                "error": health.get("error"),
                "latency_seconds": health.get("latency"),
                "mean_latency_seconds": total / count if count else None,
            }
        )
    recent: dict[str, list[dict[str, Any]]] = {"misses": [], "errors": []}
    for which in recent:
        events = [event for process in processes for event in process.get(which, [])]
        recent[which] = sorted(events, key=lambda e: -float(e.get("time", 0)))[:SHOWN]
    since = _when(directory, started)
    return {
        "version": version,
        "started": since,
        "uptime_seconds": max(0.0, now - since),
        "metrics": directory is not None,
        "cache": {
            "bytes": usage.bytes,
            "files": usage.files,
            "projects": usage.projects,
            "max_cache_size": config.max_cache_size,
            # Issue 16: a nearly full file system is said before it answers 507.
            "disk_free_bytes": disk.free if disk else None,
            "disk_total_bytes": disk.total if disk else None,
            "disk_low": disk.low if disk else None,
        },
        "requests": {
            "total": sum(requests.values()),
            "by_outcome": requests,
            "hit_ratio": requests["hit"] / answered if answered else None,
        },
        "downloads": {
            "started": int(counts.get("eggproxy_downloads_total", 0)),
            "joined": int(counts.get("eggproxy_download_joins_total", 0)),
            "in_flight": int(counts.get("eggproxy_downloads_in_flight", 0)),
        },
        "sources": sources,
        "recent_misses": recent["misses"],
        "recent_errors": recent["errors"],
        "settings": {
            "index_ttl": config.index_ttl,
            "update_interval_hours": config.update_interval,
            "timeout": config.timeout,
            "max_cache_size": config.max_cache_size,
            "prune_interval": config.prune_interval,
            "workers": config.workers,
            "update_concurrency": config.update_concurrency,
            "prefix": config.prefix,
        },
    }


def _time(value: float | None) -> str:
    if value is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))


def _size(value: int | None) -> str:
    if value is None:
        return "off"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{value} B"
        size /= 1024
    return f"{value} B"


def _row(label: str, value: object, ident: str | None = None, data: object = None) -> str:
    attrs = f' id="{ident}"' if ident else ""
    if data is not None:
        attrs += f' data-value="{escape(str(data))}"'
    return f"<tr><th>{escape(label)}</th><td{attrs}>{escape(str(value))}</td></tr>"


def _events(events: list[dict[str, Any]], ident: str) -> str:
    if not events:
        return f'<p id="{ident}">none</p>'
    rows = "".join(
        f"<tr><td>{escape(_time(e.get('time')))}</td><td>{escape(str(e.get('kind', '')))}</td>"
        f"<td>{escape(str(e.get('what', '')))}</td>"
        f"<td>{escape(str(e.get('error') or ''))}</td></tr>"
        for e in events
    )
    return (
        f'<table id="{ident}"><tr><th>when</th><th>kind</th><th>what</th><th>error</th></tr>'
        f"{rows}</table>"
    )


_STYLE: Final = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f3f3f3}.bad{color:#a00}"
)


def status_html(status: Mapping[str, Any]) -> bytes:
    """The status page: plain HTML, rendered here, no scripts."""
    cache, requests, downloads = status["cache"], status["requests"], status["downloads"]
    ratio = requests["hit_ratio"]
    summary = [
        _row("version", status["version"], "version"),
        _row("up since", _time(status["started"]), "started"),
        _row(
            "uptime", f"{status['uptime_seconds']:.0f} s", "uptime", round(status["uptime_seconds"])
        ),
        _row("cache size", _size(cache["bytes"]), "cache-bytes", cache["bytes"]),
        _row("cache limit", _size(cache["max_cache_size"]), "cache-limit", cache["max_cache_size"]),
        _row(
            "disk free" + (" (LOW: near full)" if cache.get("disk_low") else ""),
            f"{_size(cache.get('disk_free_bytes'))} of {_size(cache.get('disk_total_bytes'))}",
            "disk-free",
            cache.get("disk_free_bytes"),
        ),
        _row("cached files", cache["files"], "cache-files"),
        _row("cached projects", cache["projects"], "cache-projects"),
        _row("requests", requests["total"], "requests-total"),
        *(
            _row(f"  {outcome}", count, f"requests-{outcome}")
            for outcome, count in requests["by_outcome"].items()
        ),
        _row(
            "hit ratio",
            "n/a" if ratio is None else f"{ratio:.1%}",
            "hit-ratio",
            "" if ratio is None else f"{ratio:.6f}",
        ),
        _row("downloads started", downloads["started"], "downloads-started"),
        _row("downloads joined", downloads["joined"], "downloads-joined"),
        _row("downloads in flight", downloads["in_flight"], "downloads-in-flight"),
    ]
    source_rows = "".join(
        f'<tr id="source-{escape(s["name"])}"><td>{escape(s["name"])}</td><td>{escape(s["url"])}'
        f'</td><td class="requests">{s["requests"]}</td><td class="errors">{s["errors"]}</td>'
        f"<td>{escape(_time(s['last_success']))}</td>"
        f'<td class="{"bad" if s["error"] else ""}">{escape(_time(s["last_error"]))}'
        f"{escape(': ' + s['error'] if s['error'] else '')}</td>"
        f"<td>{_ms(s['latency_seconds'])}</td><td>{_ms(s['mean_latency_seconds'])}</td></tr>"
        for s in status["sources"]
    )
    # A setting that is not set (max_cache_size) reads as the configuration spells it: off.
    settings = "".join(
        _row(k, "off" if v is None else v, f"setting-{k}") for k, v in status["settings"].items()
    )
    note = "" if status["metrics"] else "<p>Metrics are off (metrics = off): no counts.</p>"
    body = (
        f"<h1>eggproxy status</h1>{note}<table>{''.join(summary)}</table>"
        "<h2>Sources</h2><table><tr><th>source</th><th>URL</th><th>requests</th><th>errors</th>"
        "<th>last success</th><th>last error</th><th>latency</th><th>mean latency</th></tr>"
        f"{source_rows}</table>"
        f"<h2>Recent misses</h2>{_events(status['recent_misses'], 'recent-misses')}"
        f"<h2>Recent errors</h2>{_events(status['recent_errors'], 'recent-errors')}"
        f"<h2>Settings</h2><table>{settings}</table>"
        '<p><a href="/+status.json">as JSON</a> · <a href="/metrics">metrics</a></p>'
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>eggproxy status</title><style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )
    return page.encode()


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"
