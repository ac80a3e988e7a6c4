#!/usr/bin/env python3
"""Benchmark a cache tier: Varnish in front of ``eggproxy serve``, against nginx on the same cache.

Not a test.  Run from the repository root, as root (varnishd drops to its own
user), with eggproxy installed in the running Python::

    python -m bench.tier [--workers 2] [--duration 3] [--rounds 2] [--herd-mb 16]

Side by side in one run, on 127.0.0.1:

* ``varnish``: Debian's ``varnishd`` with the VCL ``eggproxy deploy varnish``
  prints, in front of ``eggproxy serve --workers N``
  (``tests/integration/varnish.py`` starts both, by PID, with a private
  ``-n`` directory);
* ``nginx``: ``bench/nginx.conf.in`` serving the same cache directory as
  static files, ``worker_processes N`` (the ceiling of a hit);
* ``eggproxy``: the same ``eggproxy serve``, asked directly.

It prints requests/s (``wrk``) of a cached page (HTML and PEP 691 JSON) and
of a cached 1 MiB file, and how long 16 concurrent clients take on one cold
file through Varnish (and through eggproxy alone) against the same clients on
nginx once the file is cached, with the upstream GETs counted (1 each), the
ratios, and the load average.  See ``bench/README.rst``; numbers in
``docs/decisions/0013-tiers.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tests.integration.apache import public_dir
from tests.integration.upstream import DistFile, Upstream
from tests.integration.varnish import VARNISHD, VarnishProxy

from bench import nginx_front
from bench import run as bench

HERD_PROJECT: Final = "benchherd"
HERD_TIMEOUT: Final = 120  # seconds for one client of a herd (curl --max-time)


@dataclass(frozen=True)
class Endpoint:
    """A server to measure: what the report calls it and where it listens."""

    name: str
    port: int


def backend_requests(tier: VarnishProxy) -> int:
    """Requests Varnish sent to eggproxy since it started (``MAIN.backend_req``)."""
    done = subprocess.run(
        ["varnishstat", "-n", str(tier.base / "varnish"), "-1", "-f", "MAIN.backend_req"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(done.stdout.split()[1])


@dataclass(frozen=True)
class Herd:
    """One cold herd, and the same clients on nginx right after, once the file is cached."""

    label: str
    seconds: float  # until the slowest client of the cold herd was done
    nginx_seconds: float  # the same clients, the same file, from nginx
    upstream_gets: int  # GETs of the file the upstream counted
    backend: int | None = None  # requests Varnish sent to eggproxy for it

    @property
    def ratio(self) -> float:
        return self.seconds / self.nginx_seconds


def timed_herd(url: str, dist: DistFile, clients: int) -> float:
    """Seconds until ``clients`` concurrent downloads of ``url`` all ended, each verified.

    Each client is ``curl | sha256sum``: C on both ends, so that 16 clients in
    Python threads, sharing one interpreter, do not become what is measured.
    """
    started = time.perf_counter()
    pairs = []
    for _ in range(clients):
        curl = subprocess.Popen(
            ["curl", "-sS", "--fail", "--max-time", str(HERD_TIMEOUT), "-o", "-", url],
            stdout=subprocess.PIPE,
        )
        digest = subprocess.Popen(
            ["sha256sum"], stdin=curl.stdout, stdout=subprocess.PIPE, text=True
        )
        assert curl.stdout is not None
        curl.stdout.close()  # sha256sum holds the pipe now
        pairs.append((curl, digest))
    digests = [digest.communicate(timeout=HERD_TIMEOUT + 10)[0].split()[0] for _, digest in pairs]
    codes = [curl.wait(timeout=HERD_TIMEOUT + 10) for curl, _ in pairs]
    seconds = time.perf_counter() - started
    broken = sum(1 for d, c in zip(digests, codes, strict=True) if c != 0 or d != dist.sha256)
    if broken:
        raise RuntimeError(f"{url}: {broken} of {clients} downloads failed or were wrong")
    return seconds


def herds(
    tier: VarnishProxy,
    nginx: bench.Nginx,
    upstream: Upstream,
    cold: Sequence[DistFile],
    args: argparse.Namespace,
) -> list[Herd]:
    """One round: a cold file through Varnish, another through eggproxy alone, both on nginx."""
    varnish_dist, alone_dist = cold
    out = []
    for label, port, dist in (
        ("varnish", tier.port, varnish_dist),
        ("eggproxy", tier.serve.port, alone_dist),
    ):
        path = f"{bench.PREFIX}{HERD_PROJECT}/{dist.path.name}"
        backend = backend_requests(tier)
        seconds = timed_herd(f"http://127.0.0.1:{port}{path}", dist, args.clients)
        gets = upstream.hits[upstream.file_path(dist.path.name)]
        sent = backend_requests(tier) - backend if label == "varnish" else None
        static = timed_herd(f"http://127.0.0.1:{nginx.port}{path}", dist, args.clients)
        out.append(Herd(f"{label} (cold)", seconds, static, gets, sent))
        bench.log(
            f"{label:8} cold herd {seconds:6.2f} s, nginx {static:6.2f} s, "
            f"upstream GETs {gets}, to eggproxy {sent}"
        )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="eggproxy and nginx (2)")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (3)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of wrk first (1)")
    parser.add_argument("--rounds", type=int, default=2, help="wrk runs per server (2)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--file-kb", type=int, default=1024)
    parser.add_argument("--page-files", type=int, default=100)
    parser.add_argument("--clients", type=int, default=16, help="clients of a cold herd (16)")
    parser.add_argument("--herd-mb", type=int, default=16, help="size of the herd's file (16)")
    parser.add_argument("--herd-rounds", type=int, default=3, help="cold herds of each (3)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if bench.ensure_tools(False):
        return 2
    if not VARNISHD.is_file():
        print(f"missing: {VARNISHD}; install it with `sudo apt-get install -y varnish`")
        return 2
    load = os.getloadavg()
    root = public_dir("eggproxy-bench-tier-")
    upstream = None
    try:
        files, run = root / "upstream", root / "run"
        for d in (files, run):
            d.mkdir()
        bench.build_fixtures(files, 1, args.page_files)
        upstream = Upstream(files, fmt="json")
        upstream.add_file(bench.FILE_PROJECT, bench.FILE_NAME, args.file_kb * 1024)
        # Listed before the page is cached: each herd asks for a file the page knows.
        cold = [
            upstream.add_file(HERD_PROJECT, f"{HERD_PROJECT}-{n}.tar.gz", args.herd_mb << 20)
            for n in range(2 * args.herd_rounds)
        ]
        page = f"{bench.PREFIX}{bench.PAGE_PROJECT}/"
        targets = [
            bench.Target("page HTML", page, bench.HTML_ACCEPT),
            bench.Target("page JSON", page, bench.JSON_ACCEPT),
            bench.Target(
                f"file {args.file_kb} KiB",
                f"{bench.PREFIX}{bench.FILE_PROJECT}/{bench.FILE_NAME}",
                "*/*",
            ),
        ]
        # Varnish keeps every herd file and the targets in memory.
        storage = f"malloc,{2 * args.herd_rounds * args.herd_mb + 64}m"
        with contextlib.ExitStack() as stack:
            tier = stack.enter_context(
                VarnishProxy(
                    upstream.url,
                    index_ttl=86400,  # no page goes stale during the run
                    timeout=60,
                    purge=False,
                    workers=args.workers,
                    storage=storage,
                )
            )
            nginx = bench.Nginx(tier.cache_dir, run, args.workers)
            stack.enter_context(bench.running(nginx))
            for target in [
                *targets,
                bench.Target("herd page", f"{bench.PREFIX}{HERD_PROJECT}/", ""),
            ]:
                status, _h, _b = bench.get(tier.port, target.path, target.accept, timeout=60)
                if status != 200:
                    raise RuntimeError(f"warming {target.path} through Varnish: {status}")
            servers = [
                Endpoint("nginx", nginx.port),
                Endpoint("varnish", tier.port),
                Endpoint("eggproxy", tier.serve.port),
            ]
            bench.check_same(servers, targets)  # type: ignore[arg-type]
            for target in targets:
                _s, headers, _b = bench.get(tier.port, target.path, target.accept)
                if headers.get("x-cache") != "HIT":
                    raise RuntimeError(f"Varnish does not keep {target.label}: {headers}")
            before = backend_requests(tier)
            rps = nginx_front.measure(servers, targets, args)  # type: ignore[arg-type]
            reached = backend_requests(tier) - before
            herd_results = []
            for n in range(args.herd_rounds):
                herd_results += herds(tier, nginx, upstream, cold[2 * n : 2 * n + 2], args)
    finally:
        if upstream is not None:
            upstream.stop()
        shutil.rmtree(root, ignore_errors=True)
    report(args, load, rps, reached, herd_results)
    return 0


def report(
    args: argparse.Namespace,
    load: tuple[float, float, float],
    rps: dict[str, dict[str, list[float]]],
    reached: int,
    herd_results: list[Herd],
) -> None:
    after = os.getloadavg()
    print(
        f"\ncache tier: varnishd ({VARNISHD}) in front of eggproxy serve --workers "
        f"{args.workers}; nginx worker_processes={args.workers}; wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s, median of {args.rounds}; "
        f"{os.cpu_count()} CPUs; load average {load[0]:.2f} {load[1]:.2f} -> "
        f"{after[0]:.2f} {after[1]:.2f} (other load makes the numbers noisy)"
    )
    names = ["nginx", "varnish", "eggproxy"]
    rows = []
    for label, by in rps.items():
        static = statistics.median(by["nginx"])
        cells = [label]
        for name in names:
            value = statistics.median(by[name])
            cells.append(f"{value:.0f} ({value / static:.2f})")
        rows.append(cells)
    print(bench.table("hits, req/s (ratio to nginx)", ["target", *names], rows))
    print(f"requests Varnish sent to eggproxy while measured: {reached}")
    rows = []
    by_label: dict[str, list[Herd]] = {}
    for herd in herd_results:
        by_label.setdefault(herd.label, []).append(herd)
    for label, group in by_label.items():
        rows.append(
            [
                label,
                f"{statistics.median(h.seconds for h in group):.2f}",
                f"{statistics.median(h.nginx_seconds for h in group):.2f}",
                f"{statistics.median(h.ratio for h in group):.2f}",
                "/".join(str(h.upstream_gets) for h in group),
                "/".join("-" if h.backend is None else str(h.backend) for h in group),
            ]
        )
    print(
        bench.table(
            f"{args.clients} clients on one cold {args.herd_mb} MiB file, then on nginx once "
            f"it is cached; medians of {args.herd_rounds} round(s), ratio per round",
            ["served by", "seconds", "nginx s", "ratio", "upstream GETs", "to eggproxy"],
            rows,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
