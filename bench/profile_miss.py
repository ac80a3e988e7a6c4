#!/usr/bin/env python3
"""Profile cold misses of the core (``Proxy``) with cProfile: where a page miss and a file miss
spend their time.  Not a test.  Run::

    python -m bench.profile_miss [--projects 40] [--files 60] [--top 25]

The upstream is the test double on 127.0.0.1; every project is a cold page miss (JSON format,
as pip and uv ask), then one cold file miss (~200 kB) per project.  It prints the wall time per
miss and cProfile's cumulative top of each phase (docs/decisions/0014-miss-path.md).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

from tests.integration.upstream import Upstream

from eggproxy.config import Config
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

BATCH = 10  # page misses per batch timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=40)
    parser.add_argument("--files", type=int, default=60, help="files listed per project page")
    parser.add_argument("--size", type=int, default=200_000, help="bytes of the file fetched")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative", help="pstats key (cumulative, tottime)")
    parser.add_argument(
        "--no-profile", action="store_true", help="time only (cProfile's overhead left out)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eggproxy-profile-") as tmp:
        root = Path(tmp)
        (root / "up").mkdir()
        with Upstream(root / "up") as upstream:
            names = [NormalizedName(f"prof{i}") for i in range(args.projects)]
            for name in names:
                for v in range(args.files - 1):
                    upstream.add_file(name, f"{name}-{v}.0-py3-none-any.whl", 64)
                upstream.add_file(name, f"{name}-99.0-py3-none-any.whl", args.size)
            config = Config(cache_dir=root / "cache", index=upstream.url)
            proxy = Proxy(config)
            proxy.prepare()
            # CPU of the calling thread, not wall time: waits (the link, a loaded machine) left out.
            pages, files = cProfile.Profile(time.thread_time), cProfile.Profile(time.thread_time)
            page_call = (
                proxy.page if args.no_profile else functools.partial(pages.runcall, proxy.page)
            )
            file_call = _file if args.no_profile else functools.partial(files.runcall, _file)
            started, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
            batches: list[float] = []  # calling thread's CPU per miss, batches of BATCH misses
            for at in range(0, len(names), BATCH):
                mark = time.thread_time()
                for name in names[at : at + BATCH]:
                    page_call(name, "json")
                batches.append((time.thread_time() - mark) / len(names[at : at + BATCH]))
            page_s = (time.perf_counter() - started) / len(names)
            page_cpu = (time.process_time() - cpu) / len(names)
            page_own = (time.thread_time() - own) / len(names)
            started, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
            for name in names:
                file_call(proxy, name)
            file_s = (time.perf_counter() - started) / len(names)
            file_cpu = (time.process_time() - cpu) / len(names)
            file_own = (time.thread_time() - own) / len(names)
            proxy.close()
    # CPU time (this process, upstream double included) is steadier than wall time on a
    # loaded machine; both include cProfile's own overhead.
    # "calling thread": the CPU of the thread that asked, without the upstream double's
    # thread (same process) nor, for files, the download thread.
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"page miss: {page_s * 1000:.2f} ms wall, {page_cpu * 1000:.2f} ms CPU each", end="")
    print(f" ({page_own * 1000:.2f} ms in the calling thread; {args.files} files listed)")
    # The least disturbed batch: the steadiest figure when other work shares the cores.
    print(
        f"page miss, calling thread, best batch of {BATCH}: {min(batches) * 1000:.2f} ms CPU each"
    )
    print(f"file miss: {file_s * 1000:.2f} ms wall, {file_cpu * 1000:.2f} ms CPU each", end="")
    print(f" ({file_own * 1000:.2f} ms in the calling thread; {args.size} bytes)")
    if args.no_profile:
        return
    for title, prof in (("page miss", pages), ("file miss", files)):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(f"\n=== {title} (cProfile, {args.sort}) ===")
        print(out.getvalue())


def _file(proxy: Proxy, name: NormalizedName) -> None:
    result = proxy.open_file(name, f"{name}-99.0-py3-none-any.whl")
    if result.stream is not None:
        for _chunk in result.stream:
            pass


if __name__ == "__main__":
    main()
