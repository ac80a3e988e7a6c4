"""``eggproxy cache stats|prune|verify`` (short: ``eggproxy stats``...) and ``eggproxy metrics``.

Each one builds a :class:`~eggproxy.proxy.Proxy` on the configured cache and
calls its methods; the numbers come from one walk of the cache directory and,
where a server or Apache wrote them, from the metrics directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from packaging.utils import InvalidName as InvalidProjectName
from packaging.utils import canonicalize_name

from eggproxy.config import Config, parse_size
from eggproxy.errors import ConfigError
from eggproxy.metrics import KINDS, OUTCOMES, mark_dead, sample_key, totals
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

TOP = 10  # largest projects and oldest pages listed by ``cache stats``


def add_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``cache`` (with ``stats``, ``prune``, ``verify``) and ``metrics`` to the parser."""
    cache = commands.add_parser(
        "cache",
        help="inspect, limit and verify the cache directory",
        description="Commands on the cache directory (safe while a server runs).",
    )
    actions = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    _add_actions(actions, config_option)
    # The same three at the top level: ``eggproxy prune`` is ``eggproxy cache prune``.
    _add_actions(commands, config_option, short=True)
    metrics = commands.add_parser(
        "metrics",
        help="print the Prometheus metrics that the server or Apache wrote",
        description="Print the text exposition of the counts in the metrics directory "
        "(metrics_dir, else <cache_dir>/.metrics), e.g. for node-exporter's textfile "
        "collector.",
    )
    config_option(metrics)


def _add_actions(
    parsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
    *,
    short: bool = False,
) -> None:
    """``stats``, ``prune`` and ``verify``, under ``cache`` or (``short``) at the top level."""
    stats = parsers.add_parser(
        "stats",
        help="size, files, projects, largest projects, oldest pages, hit ratio",
        description="Print what the cache holds, and the hit ratio if a server counted it.",
    )
    config_option(stats)
    prune = parsers.add_parser(
        "prune",
        help="evict least recently served files down to max_cache_size (for cron)",
        description="If the cache is larger than max_cache_size, evict the least recently "
        "served files until it is under 90%% of it. Pages stay; an evicted file is "
        "fetched again on demand.",
    )
    config_option(prune)
    prune.add_argument("--max-size", metavar="SIZE", help="limit (overrides max_cache_size)")
    verify = parsers.add_parser(
        "verify",
        help="re-hash cached files; quarantine those that do not match",
        description="Hash every cached file (of the PROJECTs given) against the hash its "
        "page declared. A mismatching file is moved to <cache_dir>/.quarantine/ and fetched "
        "again on demand. Exits 1 if any file mismatched.",
    )
    config_option(verify)
    verify.add_argument("projects", nargs="*", metavar="PROJECT")
    verify.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="hash N at once")
    if short:
        for name, parser in (("stats", stats), ("prune", prune), ("verify", verify)):
            parser.set_defaults(cache_command=name)


def run(args: argparse.Namespace, config: Config) -> int:
    """Run ``eggproxy cache ...`` or ``eggproxy metrics``; return the exit code."""
    if args.command == "metrics":
        return _metrics(config)
    if args.cache_command == "prune" and args.max_size:
        config = config.with_overrides(max_cache_size=parse_size("--max-size", args.max_size))
    proxy = Proxy(config)
    proxy.prepare()
    try:
        if args.cache_command == "stats":
            return _stats(proxy, config)
        if args.cache_command == "prune":
            return _prune(proxy, config)
        return _verify(proxy, args)
    finally:
        proxy.close()


def _metrics(config: Config) -> int:
    directory = config.metrics_path
    if not directory.is_dir():
        raise ConfigError(f"no metrics directory at {directory}", key="metrics_dir")
    proxy = Proxy(config)
    try:
        text = proxy.metrics_text(directory)
    finally:
        proxy.close()
    sys.stdout.write((text or b"").decode())
    return 0


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{value} B"
        size /= 1024
    return f"{size:.1f} TiB"


def _stats(proxy: Proxy, config: Config) -> int:
    inventory = proxy.inventory()
    usage = inventory.usage
    limit = config.max_cache_size
    print(f"cache      {config.cache_dir}")
    print(f"size       {_size(usage.bytes)} ({usage.bytes} bytes)", end="")
    print(f" of {_size(limit)} allowed" if limit else "")
    print(f"files      {usage.files}")
    print(f"projects   {usage.projects}")
    largest = sorted(inventory.projects, key=lambda p: -p.bytes)[:TOP]
    if largest:
        print("largest projects:")
        for project in largest:
            print(f"  {_size(project.bytes):>12}  {project.files:>5} files  {project.name}")
    pages = sorted(
        (p for p in inventory.projects if p.page_mtime is not None),
        key=lambda p: p.page_mtime or 0,
    )[:TOP]
    if pages:
        print("oldest pages:")
        now = time.time()
        for project in pages:
            age = (now - (project.page_mtime or now)) / 3600
            print(f"  {age:>10.1f} h  {project.name}")
    ratio = _hit_ratio(config.metrics_path)
    if ratio is not None:
        print(f"hit ratio  {ratio:.1%} (since the server started)")
    return 0


def _hit_ratio(directory: Path) -> float | None:
    if not directory.is_dir() or not any(directory.glob("*.db")):
        return None
    counts = totals(directory)
    by_outcome = {
        o: sum(
            counts.get(sample_key("eggproxy_requests_total", {"kind": k, "outcome": o}), 0)
            for k in KINDS
        )
        for o in OUTCOMES
    }
    answered = sum(by_outcome.values()) - by_outcome["error"]
    return by_outcome["hit"] / answered if answered else None


def _prune(proxy: Proxy, config: Config) -> int:
    if config.max_cache_size is None:
        raise ConfigError("no limit: set max_cache_size or give --max-size", key="max_cache_size")
    report = proxy.prune()
    if report is not None:
        print(report.line())
    if config.metrics_path.is_dir():  # the Apache front end's cron job tidies its gauges too
        mark_dead(config.metrics_path)
    return 0


def _verify(proxy: Proxy, args: argparse.Namespace) -> int:
    projects: list[NormalizedName] | None = None
    if args.projects:
        try:
            projects = [canonicalize_name(p, validate=True) for p in args.projects]
        except InvalidProjectName as exc:
            raise ConfigError(str(exc), key="PROJECT") from None
    if args.jobs < 1:
        raise ConfigError("must be at least 1", key="--jobs")
    from tqdm import tqdm

    total = sum(p.bytes for p in proxy.inventory().projects if not projects or p.name in projects)
    # A progress bar on a terminal only (disable=None); cron gets the report alone.
    with tqdm(
        total=total, unit="B", unit_scale=True, desc="verifying", disable=None, file=sys.stderr
    ) as bar:
        report = proxy.verify(projects, jobs=args.jobs, progress=bar.update)
    for mismatch in report.mismatches:
        print(mismatch.line())
    for name in report.unverifiable:
        print(f"NO HASH {name}: its page records no hash; not checked")
    print(report.line())
    return 1 if report.mismatches else 0
