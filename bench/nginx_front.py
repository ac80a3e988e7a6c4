#!/usr/bin/env python3
"""Benchmark the nginx front end (``eggproxy deploy nginx``) against nginx serving the same tree.

Not a test.  Run from the repository root, with eggproxy installed in the running Python::

    python -m bench.nginx_front [--workers N] [--duration SECONDS] [--rounds N]

Requests/s (``wrk``) of a cached project page (pip's ``Accept``, and HTML) and of a cached
1 MiB file, side by side in one run, through:

* ``nginx static``: ``bench/nginx.conf.in``, nginx serving the cache directory as files (the
  ceiling; it never asks eggproxy anything, so it cannot keep pages fresh);
* ``nginx front end``: the printed file, pages from nginx's page cache, files from disk;
* ``nginx, pages passed``: the same file with the page cache off, so every page hit costs a
  request to ``eggproxy serve`` (what ``X-Accel-Redirect`` would cost at least: a Python
  call per hit);
* ``eggproxy serve`` alone.

See ``bench/README.rst`` and ``docs/decisions/0005-nginx-front-end.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.integration.nginx import main_config
from tests.support import children, stop_process

from bench import run as bench
from eggproxy.config import load_config
from eggproxy.deploy.nginx import render_nginx

PIP_ACCEPT: Final = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)


@dataclass
class NginxFront:
    """nginx with the printed site file in front of a running ``eggproxy serve``."""

    serve: bench.Eggproxy
    base: Path
    workers: int
    cache_pages: bool = True
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return "nginx front end" if self.cache_pages else "nginx, pages passed"

    def start(self) -> NginxFront:
        self.base.mkdir()
        for name in ("run", "logs", "tmp"):
            (self.base / name).mkdir()
        config = self.base / "eggproxy.conf"
        config.write_text(
            f"[eggproxy]\ncache_dir = {self.serve.cache}\nindex = {self.serve.upstream_url}\n"
            f"bind = 127.0.0.1:{self.serve.port}\nindex_ttl = 86400\n"
        )
        self.port = bench.free_port()
        site = render_nginx(
            load_config(config), listen=f"127.0.0.1:{self.port}", page_cache=self.base / "pages"
        )
        if not self.cache_pages:
            site = site.replace("proxy_cache eggproxy_pages;", "proxy_cache off;")
        (self.base / "site.conf").write_text(site)
        conf = self.base / "nginx.conf"
        conf.write_text(
            main_config(self.base, self.base / "site.conf", self.workers, access_log=False)
        )
        with (self.base / "nginx.out").open("ab") as out:
            self.proc = subprocess.Popen(
                ["nginx", "-p", str(self.base), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        if not bench.wait_ready(self.port, self.running):
            self.stop()
            raise RuntimeError((self.base / "nginx.out").read_text(errors="replace")[-3000:])
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, children(self.proc.pid), 15)
            self.proc = None


Server = bench.Eggproxy | bench.Nginx | NginxFront


def measure(
    servers: Sequence[Server], targets: Sequence[bench.Target], args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {t.label: {} for t in targets}
    for target in targets:
        chosen = [
            s
            for s in servers
            if not (isinstance(s, NginxFront) and not s.cache_pages and "file" in target.label)
        ]
        for server in chosen:
            bench.wrk(server.port, target, args, args.warmup)
        for _round in range(args.rounds):
            for server in chosen:
                rps = bench.wrk(server.port, target, args, args.duration)
                results[target.label].setdefault(server.name, []).append(rps)
                bench.log(f"{server.name:22} {target.label:12} {rps:10.0f} req/s")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--duration", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--file-kb", type=int, default=1024)
    parser.add_argument("--page-files", type=int, default=100)
    args = parser.parse_args(argv)
    if bench.ensure_tools(False):
        return 2
    load = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="eggproxy-bench-front-"))
    root.chmod(0o755)  # nginx workers run as www-data
    upstream = None
    try:
        files, cache, run = root / "upstream", root / "cache", root / "run"
        for d in (files, cache, run):
            d.mkdir()
        bench.build_fixtures(files, 1, args.page_files)
        upstream = bench.Upstream(files, fmt="json")
        upstream.add_file(bench.FILE_PROJECT, bench.FILE_NAME, args.file_kb * 1024)
        page = f"{bench.PREFIX}{bench.PAGE_PROJECT}/"
        targets = [
            bench.Target("page JSON", page, PIP_ACCEPT),
            bench.Target("page HTML", page, bench.HTML_ACCEPT),
            bench.Target(
                f"file {args.file_kb} KiB",
                f"{bench.PREFIX}{bench.FILE_PROJECT}/{bench.FILE_NAME}",
                "*/*",
            ),
        ]
        serve = bench.Eggproxy(upstream.url, cache, run, args.workers, access_log=False)
        with contextlib.ExitStack() as stack:
            stack.enter_context(bench.running(serve))
            for target in targets:  # fill eggproxy's cache
                status, _h, _b = bench.get(serve.port, target.path, target.accept, timeout=60)
                assert status == 200, target
            servers: list[Server] = [
                bench.Nginx(cache, run, args.workers, name="nginx static"),
                NginxFront(serve, root / "front", args.workers),
                NginxFront(serve, root / "passed", args.workers, cache_pages=False),
                serve,
            ]
            for server in servers[:3]:
                stack.enter_context(bench.running(server))
            bench.check_same(servers, targets)
            results = measure(servers, targets, args)
    finally:
        if upstream is not None:
            upstream.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nnginx front end: worker_processes={args.workers}, eggproxy --workers {args.workers}, "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, median of {args.rounds}; "
        f"{os.cpu_count()} CPUs; load {load[0]:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    names = ["nginx static", "nginx front end", "nginx, pages passed", serve.name]
    rows = []
    for label, by in results.items():
        static = statistics.median(by["nginx static"])
        cells = [label]
        for name in names:
            if name in by:
                value = statistics.median(by[name])
                cells.append(f"{value:.0f} ({value / static:.2f})")
            else:
                cells.append("-")
        rows.append(cells)
    print(bench.table("req/s (ratio to nginx static)", ["target", *names], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
