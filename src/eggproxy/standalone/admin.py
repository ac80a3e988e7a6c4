"""The standalone server's pages for its operator: ``/metrics``, ``/+status``, ``/+status.json``.

They live outside the index prefix (no project is called ``+status``).
Each one walks the cache at most every few seconds and reads every worker's
counts from the metrics directory, so it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from eggproxy.proxy import Proxy
from eggproxy.standalone.request import Request
from eggproxy.status import status_html

METRICS: Final = "/metrics"
STATUS: Final = "/+status"
STATUS_JSON: Final = "/+status.json"
PATHS: Final = frozenset({METRICS, STATUS, STATUS_JSON})
# The text exposition format, as prometheus_client.CONTENT_TYPE_LATEST says.
METRICS_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def _render(proxy: Proxy, path: str) -> tuple[bytes, str] | None:
    if path == METRICS:
        text = proxy.metrics_text()
        return None if text is None else (text, METRICS_TYPE)
    status = proxy.status()
    if path == STATUS_JSON:
        return json.dumps(status, indent=1).encode() + b"\n", "application/json"
    return status_html(status), "text/html; charset=utf-8"


async def answer(proxy: Proxy, pool: ThreadPoolExecutor, request: Request) -> tuple[int, int]:
    """Answer one of :data:`PATHS`; return (status, body bytes)."""
    loop = asyncio.get_running_loop()
    rendered = await loop.run_in_executor(pool, _render, proxy, request.path)
    if rendered is None:
        return await request.text(404, "metrics are off (metrics = off)"), 0
    body, content_type = rendered
    headers = [
        ("content-type", content_type),
        ("cache-control", "no-store"),
        ("content-length", str(len(body))),
    ]
    if request.method == "HEAD":
        await request.respond(200, headers)
        return 200, 0
    await request.respond(200, headers, body)
    return 200, len(body)
