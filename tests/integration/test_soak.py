"""A 12-second mixed soak on every front end (issue 16): hits, misses, probes, faults.

Clients mix page hits in both formats, file hits, Range, HEAD, conditional GETs, unknown
names and unlisted files, while the upstream goes down and gets slow in bursts.  Bounded in
time (``DURATION``) and count (``MAX_REQUESTS``).  Asserted: no 500, no wrong byte, nothing
cached ever fails, probes are 404 (or 502/504 while the upstream is down), the upstream sees
a small fraction of the requests, and no partial file is left behind.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from pathlib import Path
from typing import Protocol

import pytest
import requests
from tests.integration.upstream import Upstream

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("upstream", ["json"], indirect=True),
]

DURATION = 12.0  # seconds of load: two full fault cycles and a start of a third (faults)
MAX_REQUESTS = 40_000
CLIENTS = 8
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
FILES = {"demo-pkg": ["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]}
FILES["dep-pkg"] = ["dep_pkg-1.0-py3-none-any.whl"]
UNKNOWN = [f"no-such-{n}" for n in range(4)]


class FrontEnd(Protocol):
    url: str
    cache_dir: Path


def faults(upstream: Upstream, stop: threading.Event) -> None:
    """Every 5 s: the upstream down for 1.5 s, then slow (pages after 2 s) for 1.5 s."""
    while not stop.wait(2.0):
        upstream.down = True
        stop.wait(1.5)
        upstream.down = False
        upstream.delay_pages = 2.0
        stop.wait(1.5)
        upstream.delay_pages = 0.0


def client(
    base: str,
    files: dict[str, bytes],
    etags: dict[str, str],
    seed: int,
    deadline: float,
    budget: list[int],
    lock: threading.Lock,
    seen: collections.Counter[tuple[str, int]],
    problems: list[str],
) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    names = sorted(files)
    while time.monotonic() < deadline:
        with lock:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        kind = rng.choice(["page", "json", "file", "range", "head", "304", "unknown", "unlisted"])
        name = rng.choice(names)
        project = next(p for p, fs in FILES.items() if name in fs)
        headers: dict[str, str] = {}
        if kind == "page":
            url = f"{base}{project}/"
        elif kind == "json":
            url, headers = f"{base}{project}/", {"Accept": JSON_TYPE}
        elif kind == "unknown":
            url = f"{base}{rng.choice(UNKNOWN)}/"
        elif kind == "unlisted":
            url = f"{base}demo-pkg/demo_pkg-{rng.randint(50, 52)}.0-py3-none-any.whl"
        else:
            url = f"{base}{project}/{name}"
            if kind == "range":
                headers = {"Range": "bytes=10-99"}
            elif kind == "304":
                headers = {"If-None-Match": etags[name]}
        method = "HEAD" if kind == "head" else "GET"
        try:
            response = session.request(method, url, headers=headers, timeout=60)
        except requests.RequestException as exc:
            problems.append(f"{kind} {url}: {exc}")
            continue
        status = response.status_code
        with lock:
            seen[(kind, status)] += 1
        ok = {
            "page": {200},
            "json": {200},
            "file": {200},
            "range": {206},
            "head": {200},
            "304": {304},
            "unknown": {404, 502, 504},
            "unlisted": {404, 502, 504},
        }[kind]
        if status not in ok:
            problems.append(f"{kind} {url}: {status} {response.text[:200]!r}")
        elif kind == "file" and response.content != files[name]:
            problems.append(f"wrong bytes for {name}")
        elif kind == "range" and response.content != files[name][10:100]:
            problems.append(f"wrong range of {name}")


@pytest.mark.proxy_options(index_ttl=2, timeout=5, workers=2)
def test_mixed_soak(proxy: FrontEnd, upstream: Upstream) -> None:
    files: dict[str, bytes] = {}
    etags: dict[str, str] = {}
    for project, names in FILES.items():
        assert requests.get(f"{proxy.url}{project}/", timeout=60).status_code == 200
        for name in names:
            response = requests.get(f"{proxy.url}{project}/{name}", timeout=60)
            assert response.status_code == 200
            assert response.content == upstream.file(name).path.read_bytes()
            hit = requests.get(f"{proxy.url}{project}/{name}", timeout=60)  # a miss has none
            files[name], etags[name] = response.content, hit.headers["ETag"]

    stop, lock = threading.Event(), threading.Lock()
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    problems: list[str] = []
    budget = [MAX_REQUESTS]
    deadline = time.monotonic() + DURATION
    chaos = threading.Thread(target=faults, args=(upstream, stop), daemon=True)
    chaos.start()
    threads = [
        threading.Thread(
            target=client,
            args=(proxy.url, files, etags, n, deadline, budget, lock, seen, problems),
            daemon=True,
        )
        for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DURATION + 120)
    stop.set()
    chaos.join(10)
    upstream.down, upstream.delay_pages = False, 0.0
    assert not any(t.is_alive() for t in threads), "a client hung"

    total = sum(seen.values())
    print(f"{total} requests: {dict(sorted(seen.items()))}")
    assert not problems, problems[:20]
    assert total > 100
    assert not [key for key in seen if key[1] == 500]
    # Nearly everything was answered from the cache.
    assert len(upstream.requests) < total / 10, (len(upstream.requests), total)
    leftovers = [
        p
        for p in proxy.cache_dir.rglob("*")
        if p.name.endswith((".part", ".size")) or p.name.startswith(".tmp-")
    ]
    assert not leftovers
    assert not [p for p in proxy.cache_dir.iterdir() if p.name.startswith("no-such-")]
