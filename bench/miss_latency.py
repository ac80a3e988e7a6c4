#!/usr/bin/env python3
"""Per-request latency and CPU of cold misses through ``eggproxy serve``, one client (issue 13).

Not a test: pytest never collects it.  Run::

    python -m bench.miss_latency [--packages 100] [--repeat 3] [--workers 1]

One keep-alive ``requests`` session (as pip's) walks the fixture set of ``bench.run``: for each
project its PEP 691 page, its wheel's PEP 658 metadata, then the wheel; first straight from the
upstream double (direct), then through a fresh ``eggproxy serve`` on an empty cache (cold),
then again (warm).  It prints the median milliseconds per request of each kind and, for the
cold and warm walks, the eggproxy worker's CPU per request by thread (from ``/proc``; with
``--workers 1`` only, the default; read in clock ticks, so use 100 projects or more), so a
miss's cost over a hit can be read apart from the client's and the upstream's, and what one
file create costs in the temporary directory's file system (a miss creates files).  With
``--reference-src DIR`` an eggproxy from that source tree walks cold too, in the same round.
Numbers: ``docs/decisions/0014-miss-path.md`` (round 4).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urljoin

import requests
from tests.integration.upstream import Upstream

from bench.run import JSON_ACCEPT, Eggproxy, build_fixtures, log, stat_cpu_seconds

KINDS: Final = ("page", "metadata", "file")


def walk(base: str, names: Sequence[str]) -> dict[str, list[float]]:
    """Seconds per request of each kind, one session, in the order pip asks."""
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with requests.Session() as session:
        for name in names:
            started = time.perf_counter()
            page = session.get(f"{base}{name}/", headers={"Accept": JSON_ACCEPT}, timeout=30)
            page.raise_for_status()
            times["page"].append(time.perf_counter() - started)
            wheel = next(f for f in page.json()["files"] if f["filename"].endswith(".whl"))
            url = urljoin(f"{base}{name}/", wheel["url"])
            for kind, target in (("metadata", url + ".metadata"), ("file", url)):
                started = time.perf_counter()
                session.get(target, timeout=30).raise_for_status()
                times[kind].append(time.perf_counter() - started)
    return times


def create_cost(folder: Path, count: int = 200) -> float:
    """Median seconds to create one empty file in a new folder under ``folder``.

    A miss creates a few files (a page four, a file one), and what a create
    costs moves with the file system and the minute (0.01-1 ms seen here):
    printed beside the walks, so that a round's numbers can be read against it.
    """
    where = Path(tempfile.mkdtemp(prefix="creates-", dir=folder))
    seconds = []
    for n in range(count):
        started = time.perf_counter()
        os.close(os.open(where / f"f{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid``, by thread id."""
    return {
        int(tid): stat_cpu_seconds(Path(f"/proc/{pid}/task/{tid}/stat"))
        for tid in os.listdir(f"/proc/{pid}/task")
    }


def cpu_split(before: dict[int, float], after: dict[int, float], pid: int) -> dict[str, float]:
    """CPU used between two readings: main thread, the busiest other thread, the rest."""
    used = {tid: seconds - before.get(tid, 0.0) for tid, seconds in after.items()}
    main = used.pop(pid, 0.0)  # the main thread's id is the process's
    busiest = max(used.values(), default=0.0)
    return {"main": main, "busiest other": busiest, "rest": sum(used.values()) - busiest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="eggproxy serve --workers")
    parser.add_argument("--reference-src", type=Path, help="also an eggproxy from this tree")
    args = parser.parse_args()
    latency: dict[str, list[float]] = collections.defaultdict(list)
    cpu: dict[str, list[float]] = collections.defaultdict(list)
    creates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="eggproxy-bench-latency-") as tmp:
        root = Path(tmp)
        files = root / "files"
        files.mkdir()
        names = build_fixtures(files, args.packages, 0)
        requests_per_walk = len(names) * len(KINDS)
        with Upstream(files) as upstream:
            builds: list[tuple[str, Path | None]] = [("cold", None)]
            if args.reference_src is not None:
                builds.append(("reference cold", args.reference_src))
            for n in range(args.repeat):
                creates.append(create_cost(root))
                for kind, seconds in walk(upstream.url, names).items():
                    latency[f"direct {kind}"].append(statistics.median(seconds))
                for b, (label, source) in enumerate(builds):
                    cache = root / f"cache-{n}-{b}"
                    server = Eggproxy(
                        upstream.url, cache, root, args.workers, access_log=False, source=source
                    )
                    server.start()
                    try:
                        base = f"http://127.0.0.1:{server.port}/simple/"
                        pid = server.worker_pids()[0]
                        walks = [label] if source is not None else [label, "warm"]
                        for what in walks:
                            before = thread_cpu(pid)
                            measured = walk(base, names)
                            after = thread_cpu(pid)
                            for kind, seconds in measured.items():
                                latency[f"{what} {kind}"].append(statistics.median(seconds))
                            if args.workers == 1:
                                for part, used in cpu_split(before, after, pid).items():
                                    cpu[f"{what} {part}"].append(used / requests_per_walk)
                    finally:
                        server.stop()
                log(f"round {n + 1} of {args.repeat} done")
    print(f"\nmiss latency, {len(names)} projects, one client, median of {args.repeat} (ms)")
    print(f"one file create in the cache's file system: {statistics.median(creates) * 1e6:.0f} µs")
    for what in ("direct", *(label for label, _ in builds), "warm"):
        cells = "  ".join(
            f"{kind} {statistics.median(latency[f'{what} {kind}']) * 1000:5.2f}" for kind in KINDS
        )
        print(f"{what:15} per request: {cells}")
    if cpu:
        print("eggproxy worker CPU per request (ms): main thread, busiest other thread, the rest")
        for what in (*(label for label, _ in builds), "warm"):
            parts = ("main", "busiest other", "rest")
            cells = "  ".join(f"{statistics.median(cpu[f'{what} {p}']) * 1000:5.2f}" for p in parts)
            print(f"{what:15} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
