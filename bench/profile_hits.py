#!/usr/bin/env python3
"""Profile cached hits of ``eggproxy serve`` (one worker) with py-spy under wrk.  Not a test.

    python -m bench.profile_hits [--seconds 5] [--native] [--top 25] [--no-access-log]

For each target (the HTML page, the JSON page, a 1 MiB file) it starts wrk against one
worker and samples that worker with ``py-spy record --format raw``, then prints the
functions with the most samples, self and total (docs/decisions/0015-hit-path.md).
py-spy must be installed (``pip install py-spy``); it needs ptrace rights (root here).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.integration.upstream import Upstream

from bench.run import (
    FILE_NAME,
    FILE_PROJECT,
    HTML_ACCEPT,
    JSON_ACCEPT,
    PAGE_PROJECT,
    PREFIX,
    Eggproxy,
    build_fixtures,
    get,
    running,
)


def collapsed(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Self and total samples per function from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1] for f in stack.split(";")[1:]]
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    return own, total, samples


def _line(name: str, own: collections.Counter[str], total: collections.Counter[str], n: int) -> str:
    return f"{100 * own[name] / n:7.1f} {100 * total[name] / n:7.1f}  {name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists() or not shutil.which("wrk"):
        print("needs py-spy (pip install py-spy) and wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="eggproxy-profile-hits-") as tmp:
        root = Path(tmp)
        files, cache, run = root / "up", root / "cache", root / "run"
        for d in (files, cache, run):
            d.mkdir()
        build_fixtures(files, 1, 100)
        with Upstream(files, fmt="json") as upstream:
            upstream.add_file(FILE_PROJECT, FILE_NAME, 1024 * 1024)
            server = Eggproxy(upstream.url, cache, run, 1, access_log=not args.no_access_log)
            targets = [
                ("page HTML", f"{PREFIX}{PAGE_PROJECT}/", HTML_ACCEPT),
                ("page JSON", f"{PREFIX}{PAGE_PROJECT}/", JSON_ACCEPT),
                ("file 1 MiB", f"{PREFIX}{FILE_PROJECT}/{FILE_NAME}", "*/*"),
            ]
            with running(server):
                assert isinstance(server, Eggproxy)
                pid = server.worker_pids()[0]
                for label, path, accept in targets:
                    status, _h, _b = get(server.port, path, accept, timeout=60)
                    if status != 200:
                        print(f"{label}: {status}", file=sys.stderr)
                        return 1
                    out = run / f"{label.replace(' ', '-')}.txt"
                    url = f"http://127.0.0.1:{server.port}{path}"
                    wrk = [
                        "wrk",
                        "-t1",
                        "-c32",
                        f"-d{args.seconds + 2}s",
                        "-H",
                        f"Accept: {accept}",
                    ]
                    load = subprocess.Popen([*wrk, url], stdout=subprocess.PIPE, text=True)
                    cmd = [spy, "record", "-p", str(pid), "-d", str(args.seconds), "-r", "250"]
                    cmd += ["--format", "raw", "-o", str(out), "--nonblocking"]
                    if args.native:
                        cmd.append("--native")
                    subprocess.run(cmd, capture_output=True, timeout=args.seconds + 60, check=True)
                    rps = (load.communicate(timeout=args.seconds + 60)[0] or "").strip()
                    rps = next((x for x in rps.splitlines() if "Requests/sec" in x), "?")
                    own, total, samples = collapsed(out)
                    print(f"\n=== {label}: {samples} samples; wrk {rps.strip()} (py-spy slows it)")
                    print(f"{'self %':>7} {'total %':>7}  function")
                    for name, _n in own.most_common(args.top):
                        print(_line(name, own, total, samples))
                    print("-- by total --")
                    for name, _n in total.most_common(args.top):
                        print(_line(name, own, total, samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
