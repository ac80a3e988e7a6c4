#!/usr/bin/env python3
"""Keeping a large cache fresh: ``eggproxy update`` at scale, and the root page's memory.

Not a test.  Run from the repository root::

    python -m bench.freshness                  # both parts, about a minute
    python -m bench.freshness --only update --projects 2000 --delay 0.08
    python -m bench.freshness --only root --root-projects 750000

``update``: a local upstream (the test double) with ``--projects`` cached projects and
``--delay`` seconds added to every page request (a slow link), then ``eggproxy update
--max-age 0`` run as a command when nothing changed, when 1% changed, and when the upstream
offers no serials (and, for reference, when every page changed).  It prints time, upstream
requests and bytes for each, side by side.

``root``: a root page of ``--root-projects`` projects (PEP 691 JSON with ``_last-serial``,
and PEP 503 HTML), fetched, parsed and rendered by eggproxy in a child process; the peak
resident memory of that process against the same process without the fetch.

Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from tests.integration.upstream import Upstream
from tests.support import clean_env

UPDATE: Final = Path(sys.executable).parent / "eggproxy"
TIMEOUT: Final = 600  # seconds for one update run


def _write_projects(root: Path, count: int) -> list[str]:
    names = [f"proj-{i:05d}" for i in range(count)]
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        (folder / f"{name.replace('-', '_')}-1.0.tar.gz").write_bytes(name.encode() * 8)
    return names


def _config(path: Path, cache: Path, upstream: Upstream, extra: str = "") -> Path:
    path.write_text(
        f"[eggproxy]\ncache_dir = {cache}\nindex = {upstream.url}\nupdate_concurrency = 16\n{extra}"
    )
    return path


def _fill(conf: Path, names: Sequence[str]) -> None:
    from eggproxy.config import load_config
    from eggproxy.names import NormalizedName
    from eggproxy.proxy import Proxy

    proxy = Proxy(load_config(conf))
    proxy.prepare()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: proxy.page(NormalizedName(n), "json"), names))


def _run_update(conf: Path, upstream: Upstream) -> tuple[float, int, int, str]:
    requests_before, bytes_before = len(upstream.requests), upstream.bytes_sent
    started = time.monotonic()
    result = subprocess.run(
        [str(UPDATE), "update", "-c", str(conf), "--max-age", "0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(),
    )
    elapsed = time.monotonic() - started
    line = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-200:]
    return (
        elapsed,
        len(upstream.requests) - requests_before,
        upstream.bytes_sent - bytes_before,
        line,
    )


def bench_update(projects: int, delay: float) -> None:
    with tempfile.TemporaryDirectory(prefix="eggproxy-bench-") as tmp:
        base = Path(tmp)
        names = _write_projects(base / "files", projects)
        with Upstream(base / "files") as upstream:
            conf = _config(base / "eggproxy.conf", base / "cache", upstream)
            print(f"filling the cache with {projects} projects ...", file=sys.stderr)
            _fill(conf, names)
            _run_update(conf, upstream)  # last night's run: the root page is cached
            upstream.delay_pages = delay
            rows = []
            rows.append(("serials, nothing changed", *_run_update(conf, upstream)))
            changed = max(1, projects // 100)
            for name in names[:changed]:
                upstream.add_file(name, f"{name.replace('-', '_')}-2.0.tar.gz", b"new")
            rows.append((f"serials, {changed} changed (1%)", *_run_update(conf, upstream)))
            upstream.offer_serials = False
            upstream.delay_pages = 0
            _run_update(conf, upstream)  # pages without serials are new bytes: absorb them
            upstream.delay_pages = delay
            rows.append(("no serials, nothing changed", *_run_update(conf, upstream)))
            upstream.send_etags = False
            rows.append(("no serials, no ETags (full refetch)", *_run_update(conf, upstream)))
    full = rows[-1][3] or 1
    print(f"\neggproxy update, {projects} cached projects, {delay * 1000:.0f} ms added per page")
    print(f"{'case':40} {'seconds':>8} {'requests':>9} {'bytes':>10} {'of full':>8}  summary")
    for label, seconds, count, size, line in rows:
        print(f"{label:40} {seconds:8.2f} {count:9d} {size:10d} {size / full:8.2%}  {line}")


def _root_json(count: int) -> bytes:
    projects = [{"name": f"Project.Name-{i}", "_last-serial": 1000 + i} for i in range(count)]
    return json.dumps(
        {"meta": {"api-version": "1.1", "_last-serial": 9}, "projects": projects}
    ).encode()


def _root_html(count: int) -> bytes:
    links = "".join(
        f'<a href="/simple/project-name-{i}/">Project.Name-{i}</a><br/>\n' for i in range(count)
    )
    return f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()


# VmHWM, not getrusage: ru_maxrss survives exec and counts the parent's pages at fork.
_CHILD = """
import sys
from eggproxy.config import load_config
from eggproxy.proxy import Proxy
proxy = Proxy(load_config(sys.argv[1]))
proxy.prepare()
if sys.argv[2] == "fetch":
    proxy.page(None, "json")
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(line.split()[1])
"""


def _peak_kib(conf: Path, what: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(conf), what],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(),
    )
    if result.returncode != 0:
        raise SystemExit(f"the measured process failed:\n{result.stderr[-2000:]}")
    return int(result.stdout.split()[-1])


def bench_root(count: int) -> None:
    print(
        f"\nroot page of {count} projects: peak RSS of a process that fetches, parses, renders it"
    )
    print(f"{'format':8} {'page MB':>8} {'baseline MiB':>13} {'fetch MiB':>10} {'growth MiB':>11}")
    with tempfile.TemporaryDirectory(prefix="eggproxy-bench-") as tmp:
        base = Path(tmp)
        (base / "files").mkdir()
        with Upstream(base / "files") as upstream:
            for fmt, body, ctype in (
                ("json", _root_json(count), "application/vnd.pypi.simple.v1+json"),
                ("html", _root_html(count), "text/html"),
            ):
                upstream.root_body = (ctype, body)
                cache = base / f"cache-{fmt}"
                conf = _config(base / f"{fmt}.conf", cache, upstream)
                baseline = _peak_kib(conf, "none")
                fetched = _peak_kib(conf, "fetch")
                written = os.path.getsize(cache / "index.json") + os.path.getsize(
                    cache / "index.html"
                )
                print(
                    f"{fmt:8} {len(body) / 1e6:8.1f} {baseline / 1024:13.1f} "
                    f"{fetched / 1024:10.1f} {(fetched - baseline) / 1024:11.1f}"
                    f"   (wrote {written / 1e6:.1f} MB of pages)"
                )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("update", "root"))
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.08, help="seconds added per page")
    parser.add_argument("--root-projects", type=int, default=750_000)
    args = parser.parse_args(argv)
    if args.only in (None, "update"):
        bench_update(args.projects, args.delay)
    if args.only in (None, "root"):
        bench_root(args.root_projects)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
