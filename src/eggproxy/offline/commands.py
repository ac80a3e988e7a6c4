"""The command line of ``eggproxy prefetch``, ``export`` and ``import``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from eggproxy.config import Config
from eggproxy.errors import EggproxyError, InvalidName
from eggproxy.names import normalize_project
from eggproxy.offline.export import ExportError, export
from eggproxy.offline.merge import NotAnExport, import_tree
from eggproxy.offline.prefetch import prefetch, summary
from eggproxy.offline.requirements import RequirementsFileError, read_requirements
from eggproxy.offline.resolve import ResolutionFailed
from eggproxy.offline.target import Target, TargetError
from eggproxy.proxy import Proxy

COMMANDS: Final = ("prefetch", "export", "import")


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the three subcommands to ``eggproxy``'s parser."""
    prefetch_parser = commands.add_parser(
        "prefetch",
        help="resolve a requirements file and cache every file it needs",
        description="Resolve the requirements through eggproxy's own sources (PEP 658 "
        "metadata, markers and wheel tags of the target) and fill the cache with the chosen "
        "versions' compatible wheels, else their sdist, and their metadata files. Exits 2 "
        "with one line if the set cannot be resolved.",
    )
    config_option(prefetch_parser)
    prefetch_parser.add_argument(
        "-r",
        "--requirement",
        action="append",
        required=True,
        type=Path,
        metavar="FILE",
        help="requirements file (repeatable; -r includes in it are followed)",
    )
    prefetch_parser.add_argument(
        "--python-version", metavar="X.Y", help="target Python (default: this one)"
    )
    prefetch_parser.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="TAG",
        help="target platform tag, e.g. manylinux_2_28_x86_64 or win_amd64 (repeatable; "
        "default: this machine)",
    )
    prefetch_parser.add_argument(
        "--all-platforms", action="store_true", help="cache every wheel of the chosen versions"
    )
    export_parser = commands.add_parser(
        "export",
        help="write the cached index as a static tree (for an air-gapped site)",
        description="Write DIR/simple/: pages with relative links listing the cached files, "
        "the files and their metadata. Servable by any static web server, usable as "
        "pip install --index-url file:///DIR/simple/, and by eggproxy import.",
    )
    config_option(export_parser)
    export_parser.add_argument("dir", type=Path, metavar="DIR")
    export_parser.add_argument("projects", nargs="*", metavar="PROJECT")
    import_parser = commands.add_parser(
        "import",
        help="merge an exported tree into the cache, verifying every file",
        description="Merge DIR/simple/ (written by eggproxy export) into the cache. Every file "
        "is verified against its page's hash before it becomes visible; files that do not "
        "match are refused and reported (exit 1).",
    )
    config_option(import_parser)
    import_parser.add_argument("dir", type=Path, metavar="DIR")
    for parser in (prefetch_parser, export_parser, import_parser):
        parser.add_argument("-v", "--verbose", action="store_true", help="log every fetch")


def _fail(message: str, status: int) -> int:
    print(f"eggproxy: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace, config: Config) -> int:
    """Run one of :data:`COMMANDS`; returns the exit status."""
    if not args.verbose:  # the lines we print say what was done; keep the core's log quiet
        logging.getLogger("eggproxy").setLevel(logging.WARNING)
    proxy = Proxy(config)
    try:
        proxy.prepare()
        if args.command == "prefetch":
            return _prefetch(proxy, args)
        if args.command == "export":
            projects = [normalize_project(name) for name in args.projects]
            result = export(proxy, args.dir, projects)
            print(result.line(args.dir))
            return 0
        merged = import_tree(proxy, args.dir)
        for line in merged.refused:
            print(f"refused {line}", file=sys.stderr)
        print(merged.line())
        return 1 if merged.refused else 0
    except (RequirementsFileError, TargetError, ExportError, NotAnExport, InvalidName) as exc:
        return _fail(str(exc), 2)
    except ResolutionFailed as exc:
        return _fail(f"cannot resolve: {exc}", 2)
    except EggproxyError as exc:
        return _fail(str(exc), 1)
    finally:
        proxy.close()


def _prefetch(proxy: Proxy, args: argparse.Namespace) -> int:
    target = Target.build(args.python_version, args.platform, args.all_platforms)
    lines = [line for path in args.requirement for line in read_requirements(path)]
    requirements = [(line.requirement, line.origin) for line in lines]
    resolution, fetched = prefetch(proxy, requirements, target)
    print(summary(resolution, fetched))
    return 0
