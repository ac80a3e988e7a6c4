#!/usr/bin/env python3
"""Benchmark a herd: many clients on one cold big file, through eggproxy and straight from nginx.

Not a test: pytest never collects it.  Run::

    python -m bench.herd [--clients 32] [--size-mb 100] [--rounds 3] [--workers 2]

The upstream is nginx (``bench/nginx.conf.in``, ``worker_processes`` = ``--workers``, its
access log on) serving a static simple index of one project: one file of ``--size-mb`` MiB
of random bytes, its sha256 and size on the page.  Each round times, one after the other
(eggproxy first in every other round):

* ``direct``: ``--clients`` concurrent curl processes downloading the file from that nginx;
* ``eggproxy``: the same clients, on a fresh ``eggproxy serve --workers N`` over an empty
  cache whose upstream is that nginx.  The project page is fetched once before (untimed), so
  the herd is on the file alone;
* ``hits``: the same clients through the same eggproxy again, the file now cached (the floor
  a cold herd stands on).

A time is from the first client started to the last one done; every client must get the
whole file (size and status checked), the cached file must hash to the page's sha256, and
nginx's access log must show exactly one upstream GET of the file per eggproxy round.  The
report gives medians of ``--rounds``, the ratio eggproxy / direct (target <= 1.0, issue 12)
and the load average before and after.  About a minute with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tests.support import children

from bench.run import Eggproxy, Nginx, download_command, get, log, running

PROJECT: Final = "herdbig"
FILE: Final = "herdbig-1.0.tar.gz"
PATH: Final = f"/simple/{PROJECT}/{FILE}"
HERD_TIMEOUT: Final = 120  # seconds for one herd, all clients together
TARGET: Final = 1.0  # eggproxy's time / nginx's time (issue 12 item 5)


def build_upstream(root: Path, size: int) -> str:
    """``root/herdbig/``: the file and both page formats; return the file's sha256."""
    project = root / PROJECT
    project.mkdir(parents=True)
    digest = hashlib.sha256()
    with open(project / FILE, "wb") as out:
        left = size
        while left > 0:
            chunk = os.urandom(min(1 << 20, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    sha256 = digest.hexdigest()
    (project / "index.html").write_text(
        f'<!DOCTYPE html>\n<html><body><a href="{FILE}#sha256={sha256}">{FILE}</a></body></html>\n'
    )
    page = {
        "meta": {"api-version": "1.1"},
        "name": PROJECT,
        "versions": ["1.0"],
        "files": [{"filename": FILE, "url": FILE, "hashes": {"sha256": sha256}, "size": size}],
    }
    (project / "index.json").write_text(json.dumps(page))
    return sha256


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time the processes have used so far (``/proc/<pid>/stat``)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def herd(port: int, clients: int, size: int, servers: Sequence[int] = ()) -> tuple[float, float]:
    """Start ``clients`` downloads of the file at once.

    Returns the seconds until the last one is done and the CPU seconds the
    ``servers`` processes used meanwhile.
    """
    cpu = cpu_seconds(servers)
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        outputs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(clients)]
        try:
            started = time.perf_counter()
            for out in outputs:
                cmd = download_command(port, PATH, HERD_TIMEOUT)
                procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + HERD_TIMEOUT
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.1, deadline - time.monotonic()))
            seconds = time.perf_counter() - started
            cpu = cpu_seconds(servers) - cpu
        finally:
            for proc in procs:  # only ours, by PID: a client past the deadline
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        for proc, out in zip(procs, outputs, strict=True):
            out.seek(0)
            said = out.read().decode(errors="replace").strip()
            if proc.returncode != 0 or said != str(size):
                raise RuntimeError(
                    f"a client on port {port} exited {proc.returncode}: {said[-300:]}"
                )
    return seconds, cpu


def upstream_gets(access_log: Path) -> int:
    """GETs of the file nginx has logged so far (the combined format's request line)."""
    try:
        lines = access_log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return 0
    return sum(f'"GET {PATH} ' in line for line in lines)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--size-mb", type=int, default=100, help="MiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="eggproxy's and nginx's")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if shutil.which("nginx") is None:
        print("bench.herd needs nginx (apt-get install nginx-light)", file=sys.stderr)
        return 2
    size = args.size_mb * 2**20
    load_before = load()
    times: dict[str, list[float]] = {
        key: [] for key in ("direct", "eggproxy", "hits", "direct cpu", "eggproxy cpu", "hits cpu")
    }
    gets: list[int] = []
    root = Path(tempfile.mkdtemp(prefix="eggproxy-bench-herd-"))
    try:
        upstream, run = root / "upstream", root / "run"
        run.mkdir()
        log(f"writing a {args.size_mb} MiB file for the upstream")
        sha256 = build_upstream(upstream, size)
        access_log = run / "access.log"
        nginx = Nginx(upstream, run, args.workers, access_log=access_log)
        with running(nginx):
            url = f"http://127.0.0.1:{nginx.port}/simple/"
            herd(nginx.port, 1, size)  # the file in the page cache, as for eggproxy's GET
            assert nginx.proc is not None
            nginx_workers = children(nginx.proc.pid)
            for n in range(args.rounds):
                cache = root / f"cache-{n}"
                server = Eggproxy(url, cache, run, args.workers)
                with running(server):
                    status, _headers, _body = get(server.port, f"/simple/{PROJECT}/")
                    if status != 200:
                        raise RuntimeError(f"eggproxy answered {status} for the page")
                    if n % 2:  # every other round eggproxy goes first
                        cold, cold_cpu, got = _cold(server, access_log, args.clients, size)
                    direct, direct_cpu = herd(nginx.port, args.clients, size, nginx_workers)
                    if not n % 2:
                        cold, cold_cpu, got = _cold(server, access_log, args.clients, size)
                    gets.append(got)
                    # The same herd again, now hits: the floor a cold herd stands on.
                    warm, warm_cpu = herd(server.port, args.clients, size, server.worker_pids())
                    cached = cache / PROJECT / FILE
                    if file_sha256(cached) != sha256:
                        raise RuntimeError(f"{cached} does not hash to the page's sha256")
                shutil.rmtree(cache)
                times["direct"].append(direct)
                times["eggproxy"].append(cold)
                times["direct cpu"].append(direct_cpu)
                times["eggproxy cpu"].append(cold_cpu)
                times["hits"].append(warm)
                times["hits cpu"].append(warm_cpu)
                log(
                    f"round {n + 1}: direct {direct:.3f}s eggproxy {cold:.3f}s "
                    f"({cold / direct:.2f}x) hits {warm:.3f}s, server CPU {direct_cpu:.2f}s / "
                    f"{cold_cpu:.2f}s / {warm_cpu:.2f}s, upstream GETs {gets[-1]}, load {load()}"
                )
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(times, gets, args, load_before, load())
    return 0 if all(g == 1 for g in gets) else 1


def _cold(server: Eggproxy, access_log: Path, clients: int, size: int) -> tuple[float, float, int]:
    """The herd through eggproxy: seconds, its workers' CPU seconds, upstream GETs of the file."""
    before = upstream_gets(access_log)
    seconds, cpu = herd(server.port, clients, size, server.worker_pids())
    return seconds, cpu, upstream_gets(access_log) - before


def report(
    times: dict[str, list[float]],
    gets: list[int],
    args: argparse.Namespace,
    load_before: str,
    load_after: str,
) -> None:
    direct = statistics.median(times["direct"])
    cold = statistics.median(times["eggproxy"])
    ratio = cold / direct
    verdict = "ok" if ratio <= TARGET else f"ABOVE {TARGET}"
    print(
        f"\nherd: {args.clients} clients, one cold {args.size_mb} MiB file, "
        f"--workers {args.workers}, median of {args.rounds} (s)"
    )
    print(f"load average before {load_before}, after {load_after}")
    print(f"direct from nginx   {direct:7.3f}   rounds {_seconds(times['direct'])}")
    print(f"through eggproxy    {cold:7.3f}   rounds {_seconds(times['eggproxy'])}")
    print(f"ratio eggproxy / nginx {ratio:.2f}x  {verdict}")
    rounds = [c / d for c, d in zip(times["eggproxy"], times["direct"], strict=True)]
    print(f"ratio per round: {_seconds(rounds)}")
    hits = statistics.median(times["hits"])
    print(
        f"then as hits        {hits:7.3f}   rounds {_seconds(times['hits'])}"
        f"  ({hits / direct:.2f}x)"
    )
    cpu = {key: statistics.median(times[f"{key} cpu"]) for key in ("direct", "eggproxy", "hits")}
    print(
        f"server CPU (s, median): nginx workers {cpu['direct']:.2f}, eggproxy workers "
        f"{cpu['eggproxy']:.2f} cold, {cpu['hits']:.2f} hits "
        "(the upstream nginx's share of the cold herd not counted)"
    )
    print(f"upstream GETs of the file per round: {gets} (must be 1)")


def _seconds(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
