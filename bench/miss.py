#!/usr/bin/env python3
"""Benchmark the miss path: a cold ``pip download`` and a cold ``uv pip install`` through
``eggproxy serve`` against the same set straight from the static reference (issue 13).

Not a test: pytest never collects it.  Run::

    python -m bench.miss [--packages 32] [--repeat 3] [--page-delay 0.03] [--file-delay 0.03]

The reference server is the upstream double itself (``tests/integration/upstream.py``): the
same server eggproxy fetches from, so the ratio is eggproxy's own cost on top of one link.
Each round starts a fresh ``eggproxy serve`` on an empty cache (cold), then runs the client
again through it (warm).  Fast link: loopback.  Slow link: the double sleeps
``--page-delay`` before each page and ``--file-delay`` before each file chunk, for the direct
client and for eggproxy alike.  Rounds alternate direct and eggproxy; the medians of
``--repeat`` rounds are reported as ratios to direct.  Targets: fast cold <= 1.2, fast warm
<= 1.05, slow cold <= 1.05.  The default run takes about 2-3 minutes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

from tests.integration.upstream import Upstream

from bench.run import (
    INSTALL_TIMEOUT,
    Eggproxy,
    build_fixtures,
    clean_env,
    find_uv,
    installer_env,
    log,
    make_venv,
)
from eggproxy.config import parse_workers, worker_processes
from eggproxy.cpus import available_cpus
from eggproxy.errors import ConfigError

TARGETS: Final = {"fast cold": 1.2, "fast warm": 1.05, "slow cold": 1.05}


def command(client: str, uv: str | None, python: Path, url: str, dest: Path) -> list[str]:
    if client == "uv":
        assert uv is not None
        return [uv, "pip", "install", "--no-cache", "-q", "--python", str(python), "-i", url]
    return [
        str(python),
        "-m",
        "pip",
        "download",
        "--no-cache-dir",
        "-q",
        "-d",
        str(dest),
        "-i",
        url,
    ]


def timed(
    client: str, uv: str | None, template: Path, work: Path, url: str, names: Sequence[str]
) -> float:
    dest = Path(tempfile.mkdtemp(dir=work))
    try:
        python = make_venv(template, dest / "venv") if client == "uv" else template / "bin/python"
        cmd = [*command(client, uv, python, url, dest / "wheels"), *names]
        started = time.perf_counter()
        done = subprocess.run(
            cmd, env=installer_env(), capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{client} failed:\n{done.stdout}\n{done.stderr}")
        return seconds
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        help="eggproxy serve --workers: a number or auto (default: auto, its default)",
    )
    parser.add_argument("--page-delay", type=float, default=0.03, help="slow link, per page")
    parser.add_argument("--file-delay", type=float, default=0.03, help="slow link, per chunk")
    parser.add_argument("--clients", default="pip,uv", help="pip,uv (default: both)")
    parser.add_argument("--links", default="fast,slow", help="fast,slow (default: both)")
    parser.add_argument(
        "--reference-src",
        type=Path,
        help="also run eggproxy from this source tree (e.g. a git archive of an earlier "
        "commit's src/), cold, in each round: before and after side by side",
    )
    args = parser.parse_args()
    # As eggproxy serve resolves it, so the bench knows how many workers to wait for.
    args.workers = worker_processes(args.workers, available_cpus())
    uv = find_uv()
    clients = [c for c in args.clients.split(",") if c != "uv" or uv]
    with tempfile.TemporaryDirectory(prefix="eggproxy-bench-miss-") as tmp:
        root = Path(tmp)
        files, work, names, template = workspace(root, args.packages)
        times: dict[str, list[float]] = {}
        with Upstream(files) as upstream:
            for link in args.links.split(","):
                set_link(upstream, files, link, args.page_delay, args.file_delay)
                for client in clients:
                    for n in range(args.repeat + 1):  # the first round warms the OS: untimed
                        direct = timed(client, uv, template, work, upstream.url, names)
                        cache = root / f"cache-{link}-{client}-{n}"
                        with serving(upstream.url, cache, root, args.workers) as url:
                            cold = timed(client, uv, template, work, url, names)
                            warm = timed(client, uv, template, work, url, names)
                        shutil.rmtree(cache, ignore_errors=True)
                        took = f"direct {direct:.3f}s cold {cold:.3f}s warm {warm:.3f}s"
                        rounds = [("direct", direct), ("cold", cold), ("warm", warm)]
                        if args.reference_src is not None:
                            with serving(
                                upstream.url, cache, root, args.workers, args.reference_src
                            ) as url:
                                reference = timed(client, uv, template, work, url, names)
                            shutil.rmtree(cache, ignore_errors=True)
                            took += f" reference cold {reference:.3f}s"
                            rounds.append(("reference", reference))
                        log(f"{link} {client:3} {took}")
                        if n == 0:
                            continue
                        for what, seconds in rounds:
                            times.setdefault(f"{link} {client} {what}", []).append(seconds)
    report(times, clients, args)
    return 0


def _workers(text: str) -> int | Literal["auto"]:
    try:
        return parse_workers("--workers", text)  # as eggproxy serve reads it
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.args[0]) from None  # the message, not the key


def workspace(root: Path, packages: int) -> tuple[Path, Path, list[str], Path]:
    """Under ``root``: the fixture wheels, a work folder, their names, a venv to copy."""
    files, work = root / "files", root / "work"
    files.mkdir()
    work.mkdir()
    names = build_fixtures(files, packages, 0)
    template = work / "template"
    subprocess.run(
        [sys.executable, "-m", "venv", str(template)], env=clean_env(), check=True, timeout=300
    )
    return files, work, names, template


def set_link(
    upstream: Upstream, files: Path, link: str, page_delay: float, file_delay: float
) -> None:
    """Make the double a fast link (loopback as it is) or a slow one (it sleeps first)."""
    slow = link == "slow"
    upstream.delay_pages = page_delay if slow else 0.0
    upstream.slow.clear()
    if slow:
        upstream.slow.update({p.name: file_delay for p in files.glob("*/*.whl")})


class serving:
    """A fresh ``eggproxy serve`` (no access log) for a ``with`` block: its index URL."""

    def __init__(
        self, upstream_url: str, cache: Path, run: Path, workers: int, source: Path | None = None
    ) -> None:
        self.server = Eggproxy(upstream_url, cache, run, workers, access_log=False, source=source)

    def __enter__(self) -> str:
        self.server.start()
        return f"http://127.0.0.1:{self.server.port}/simple/"

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def report(times: dict[str, list[float]], clients: list[str], args: argparse.Namespace) -> None:
    print(f"\nmiss path, {args.packages} packages, median of {args.repeat} (s; ratio to direct)")
    print(f"eggproxy serve: {args.workers} worker(s)")
    print(f"slow link: {args.page_delay:g}s per page, {args.file_delay:g}s per file chunk")
    for link in args.links.split(","):
        for client in clients:
            key = f"{link} {client}"
            direct = statistics.median(times[f"{key} direct"])
            line = f"{key:9} direct {direct:6.3f}"
            for what in ("cold", "warm"):
                median = statistics.median(times[f"{key} {what}"])
                ratio = median / direct
                target = TARGETS.get(f"{link} {what}")
                verdict = "" if target is None else ("ok" if ratio <= target else f"ABOVE {target}")
                line += f"  {what} {median:6.3f} {ratio:5.2f}x {verdict:10}"
            if f"{key} reference" in times:
                median = statistics.median(times[f"{key} reference"])
                line += f"  reference cold {median:6.3f} {median / direct:5.2f}x"
            print(line)


if __name__ == "__main__":
    sys.exit(main())
