#!/usr/bin/env python3
"""Benchmark eggproxy's Apache front end against the same Apache serving the tree statically.

Not a test (pytest never collects ``bench/``).  Run as root (Apache switches to www-data)::

    python -m bench.apache_hits [--duration 3] [--rounds 2] [--connections 16]

One Apache (prefork, the test harness ``tests/integration/apache.py``, which runs the vhost that
``eggproxy deploy apache`` prints) has two virtual hosts, side by side in one run:

* ``eggproxy``: the rendered vhost, on its cache directory;
* ``alias``: a plain ``Alias`` of a copy of that cache directory, no Python, no mod_cache:
  pages fetched at their file names (``index.html``, ``index.json``), the file at its URL.

It prints requests/s for a cached project page (HTML and PEP 691 JSON) and a cached 1 MiB file
through each, and the ratio eggproxy / alias (target: >= 0.90).  Children are warm: as many
as wrk opens connections are started up front, and every target is run once before measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tests.integration.apache import ApacheProxy, install_site, public_dir, unavailable_reason
from tests.integration.upstream import Upstream

from bench.run import (
    FILE_NAME,
    FILE_PROJECT,
    HTML_ACCEPT,
    JSON_ACCEPT,
    PAGE_PROJECT,
    Target,
    build_fixtures,
    ensure_tools,
    free_port,
    get,
    log,
    table,
    wrk,
)

HERE: Final = Path(__file__).resolve().parent
TARGET_RATIO: Final = 0.9


def reference_vhost(port: int, root: Path, logs: Path) -> str:
    """A plain static vhost over ``root``: what Apache costs without eggproxy."""
    log_format = r'"%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\""'
    return f"""\
Listen 127.0.0.1:{port}
<VirtualHost 127.0.0.1:{port}>
    ServerName 127.0.0.1
    Alias /simple "{root}"
    <Directory "{root}">
        Options None
        AllowOverride None
        Require all granted
    </Directory>
    ErrorLog "{logs}/alias-error.log"
    CustomLog "{logs}/alias-access.log" {log_format}
</VirtualHost>
"""


def before_vhost(port: int, server: ApacheProxy) -> str:
    """The vhost before issue 14 (``--before``): a ``<Location>`` fixup, run for every hit."""
    site = next(server.venv.glob("lib/python3.*/site-packages"))
    return f"""\
Listen 127.0.0.1:{port}
<VirtualHost 127.0.0.1:{port}>
    ServerName 127.0.0.1
    Alias /simple "{server.cache_dir}"
    <Location /simple>
        DirectoryIndex disabled
        PythonInterpreter eggproxy
        PythonPath "['{site}'] + sys.path"
        PythonOption eggproxy.config "{server.config_path}"
        PythonFixupHandler eggproxy.modpython::fixup
    </Location>
    ErrorLog "{server.logs}/before-error.log"
    CustomLog "{server.logs}/before-access.log" combined
</VirtualHost>
"""


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    root = Path(tempfile.mkdtemp(prefix="eggproxy-bench-apache-"))
    root.chmod(0o755)
    site = install_site()
    alias_root = public_dir("eggproxy-bench-alias-")
    upstream: Upstream | None = None
    try:
        files = root / "upstream"
        build_fixtures(files, 0, args.page_files)
        upstream = Upstream(files, fmt="json")
        upstream.add_file(FILE_PROJECT, FILE_NAME, args.file_kb * 1024)
        page, path = f"/simple/{PAGE_PROJECT}/", f"/simple/{FILE_PROJECT}/{FILE_NAME}"
        pairs = [  # (label, eggproxy target, alias target)
            ("page HTML", Target("page HTML", page, HTML_ACCEPT), page + "index.html"),
            ("page JSON", Target("page JSON", page, JSON_ACCEPT), page + "index.json"),
            (f"file {args.file_kb} KiB", Target("file", path, "*/*"), path),
        ]
        if args.only:
            pairs = [pair for pair in pairs if pair[0].split()[0] in args.only]
        alias_port = free_port()
        results: dict[str, dict[str, list[float]]] = {label: {} for label, *_ in pairs}
        with ApacheProxy(
            site,
            upstream.url,
            index_ttl=86400,
            start_servers=args.connections,
            log_level="warn",
            start=False,
        ) as server:
            server.extra_apache = reference_vhost(alias_port, alias_root, server.logs)
            before_port = free_port()
            if args.before:
                server.extra_apache += before_vhost(before_port, server)
            server.start()
            for _label, target, _ref in pairs:  # fill eggproxy's cache: misses, then hits
                status, _headers, body = get(server.port, target.path, target.accept, timeout=60)
                if status != 200:
                    raise RuntimeError(f"warming {target.path}: {status} {body[:200]!r}")
            shutil.copytree(server.cache_dir, alias_root, dirs_exist_ok=True)
            for label, target, ref in pairs:
                ours = get(server.port, target.path, target.accept)
                theirs = get(alias_port, ref, target.accept)
                if ours[0] != 200 or theirs[0] != 200 or ours[2] != theirs[2]:
                    raise RuntimeError(f"{label}: the two vhosts disagree ({ours[0]}, {theirs[0]})")
                alias_target = Target(label, ref, target.accept)
                measured = [("eggproxy", server.port, target), ("alias", alias_port, alias_target)]
                if args.before:
                    measured.append(("before", before_port, target))
                for _name, port, t in measured:  # warm the children and mod_cache alike
                    wrk(port, t, args, args.warmup)
                for round_ in range(args.rounds):
                    # Alternate who goes first: a drift in the machine's load favours no one.
                    for name, port, t in measured if round_ % 2 == 0 else measured[::-1]:
                        rps = wrk(port, t, args, args.duration)
                        results[label].setdefault(name, []).append(rps)
                        log(f"{name:9} {label:14} {rps:10.0f} req/s")
            python_lines = [  # of the eggproxy vhost's own access log
                line
                for line in server.log_text("eggproxy-access.log").splitlines()
                if " eggproxy=" in line and " eggproxy=- " not in line
            ]
            log(f"requests that entered Python (fills and checks): {len(python_lines)}")
        return results
    finally:
        if upstream is not None:
            upstream.stop()
        for directory in (root, site, alias_root):
            shutil.rmtree(directory, ignore_errors=True)


def report(args: argparse.Namespace, results: dict[str, dict[str, list[float]]]) -> bool:
    rows, ok = [], True
    for label, by in results.items():
        ours, theirs = statistics.median(by["eggproxy"]), statistics.median(by["alias"])
        # The median of each round's ratio: the two runs of a round are seconds apart, so
        # other load on the machine weighs on both alike.
        ratio = statistics.median(a / b for a, b in zip(by["eggproxy"], by["alias"], strict=True))
        ok = ok and ratio >= TARGET_RATIO
        verdict = "ok" if ratio >= TARGET_RATIO else "BELOW"
        row = [label, f"{ours:.0f}", f"{theirs:.0f}", f"{ratio:.2f}", verdict]
        if args.before:
            before = statistics.median(by["before"])
            ratios = (a / b for a, b in zip(by["before"], by["alias"], strict=True))
            row += [f"{before:.0f}", f"{statistics.median(ratios):.2f}"]
        rows.append(row)
    print()
    print(
        f"Apache prefork, StartServers={args.connections}, wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s, {os.cpu_count()} CPUs, "
        f"load before {args.load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print(
        table(
            f"Requests/s of cached hits, medians of {args.rounds} rounds; ratio: median of the "
            f"rounds' ratios (target >= {TARGET_RATIO})",
            ["target", "eggproxy vhost", "plain Alias", "ratio", "verdict"]
            + (["before", "before ratio"] if args.before else []),
            rows,
        )
    )
    return ok


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target and vhost")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument("--file-kb", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--page-files", type=int, default=100, help="files on the page")
    parser.add_argument(
        "--only", choices=["page", "file"], action="append", help="only these targets"
    )
    parser.add_argument(
        "--before",
        action="store_true",
        help="also measure the vhost before issue 14 (the fixup on every hit)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 60 or not 0 < args.warmup <= 60 or args.rounds < 1:
        parser.error("--duration and --warmup must be in (0, 60], --rounds at least 1")
    if not 1 <= args.threads <= args.connections <= 64:
        parser.error("need 1 <= --threads <= --connections <= 64 (the harness's ServerLimit)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"cannot run Apache here: {reason}", file=sys.stderr)
        return 2
    if ensure_tools(install=False):
        return 2
    args.load_before = os.getloadavg()
    started = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        results = measure(args)
        ok = report(args, results)
        print(f"\ntotal time {time.monotonic() - started:.0f} s")
        return 0 if ok else 1
    return 130


if __name__ == "__main__":
    sys.exit(main())
