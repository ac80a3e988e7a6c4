"""Issue 13 on ``eggproxy serve``: clients waiting on one page miss share one upstream request.

Counts at the upstream double; nothing here times anything.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from tests.integration.standalone import start_serve
from tests.integration.upstream import Upstream

pytestmark = pytest.mark.integration

JSON = "application/vnd.pypi.simple.v1+json"
CLIENTS = 12


@pytest.mark.parametrize("workers", [1, 2])
def test_clients_on_one_page_miss_cause_one_request(tmp_path: Path, workers: int) -> None:
    (tmp_path / "up").mkdir()
    with Upstream(tmp_path / "up") as upstream:
        for v in range(30):
            upstream.add_file("herd", f"herd-{v}.0-py3-none-any.whl", 16)
        upstream.delay_pages = 0.5  # every client arrives while the one fetch is under way
        server = start_serve(upstream.url, tmp_path / "cache", workers=workers)
        barrier = threading.Barrier(CLIENTS)

        def one(accept: str) -> requests.Response:
            barrier.wait(30)
            return requests.get(f"{server.url}herd/", headers={"Accept": accept}, timeout=60)

        try:
            accepts = [JSON if i % 2 else "text/html" for i in range(CLIENTS)]
            with ThreadPoolExecutor(CLIENTS) as pool:
                replies = list(pool.map(one, accepts))
        finally:
            server.stop()
        assert [r.status_code for r in replies] == [200] * CLIENTS
        assert upstream.hits["/simple/herd/"] == 1
        for reply, accept in zip(replies, accepts, strict=True):
            if accept == JSON:
                assert len(json.loads(reply.content)["files"]) == 30
            else:
                assert reply.text.count("<a ") == 30
