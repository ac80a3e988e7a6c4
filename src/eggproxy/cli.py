"""Command line: ``eggproxy serve|update|audit|config|deploy|prefetch|export|import``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from eggproxy import __version__, cachecli, logs
from eggproxy.config import Config, load_config
from eggproxy.configdump import config_ini
from eggproxy.errors import CannotListen, ConfigError
from eggproxy.offline import commands as offline
from eggproxy.proxy import Proxy
from eggproxy.update import update

log = logging.getLogger("eggproxy")


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="configuration file (default: $EGGPROXY_CONFIG, "
        "~/.config/eggproxy/eggproxy.conf, /etc/eggproxy/eggproxy.conf)",
    )
    parser.add_argument("--cache-dir", metavar="DIR", help="cache directory (overrides cache_dir)")
    parser.add_argument("--index", metavar="URL", help="upstream simple index (overrides index)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eggproxy",
        description="On-demand caching proxy for Python package indexes (PEP 503/691).",
    )
    parser.add_argument("--version", action="version", version=f"eggproxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    update_parser = commands.add_parser(
        "update",
        help="refresh cached pages older than update_interval (for cron)",
        description="Revalidate every cached project page (and the root page) older than "
        "update_interval with conditional requests. Shows a progress bar on a terminal; "
        "prints one summary line; exits 1 if any page failed.",
    )
    _config_option(update_parser)
    update_parser.add_argument(
        "--max-age",
        type=float,
        metavar="HOURS",
        help="refresh pages older than this (default: update_interval)",
    )
    update_parser.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing unless a page failed (for cron)"
    )

    serve_parser = commands.add_parser(
        "serve",
        help="run the standalone server (the embedded default)",
        description="Serve the index on a production HTTP server (granian). Hits are answered "
        "from the cache directory; misses are fetched from the upstream and streamed.",
    )
    _config_option(serve_parser)
    serve_parser.add_argument(
        "--bind", metavar="HOST:PORT", help="address to listen on (default: 127.0.0.1:3141)"
    )
    serve_parser.add_argument(
        "--workers",
        metavar="N",
        help="worker processes sharing the cache, or auto: one per CPU, at most 8 (default: auto)",
    )
    serve_parser.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )

    audit_parser = commands.add_parser(
        "audit",
        help="list cached files that the blocklist or deny now names (for cron)",
        description="Read the blocklist folder afresh and list the cached files (offered or "
        "withheld) that an OSV record or a deny entry names, one 'PROJECT FILE RECORD' line "
        "each. Exits 1 if any is found and not purged.",
    )
    _config_option(audit_parser)
    audit_parser.add_argument(
        "--purge", action="store_true", help="delete those files from the cache"
    )

    config_parser = commands.add_parser(
        "config",
        help="print the configuration in effect",
        description="Print the resolved configuration (file, defaults and overrides) as INI "
        "that loads back, passwords masked, with the file it was loaded from.",
    )
    _config_option(config_parser)
    offline.add_parsers(commands, _config_option)
    _deploy_parser(commands)
    cachecli.add_commands(commands, _config_option)
    return parser


def _deploy_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from eggproxy.deploy import TARGETS

    deploy = commands.add_parser(
        "deploy",
        help="print a deployment file (apache, nginx, varnish, systemd, cron) for this config",
        description="Print a working deployment file for the configuration in effect: the "
        "web server or cache tier in front (apache, nginx, varnish), the systemd unit of "
        "eggproxy serve, or the "
        "/etc/cron.d file of eggproxy update.",
    )
    deploy.add_argument("target", choices=TARGETS)
    _config_option(deploy)
    deploy.add_argument("--listen", metavar="HOST:PORT", help="where the web server listens")
    deploy.add_argument("--server-name", metavar="NAME", help="the web server's host name")
    deploy.add_argument(
        "--user", metavar="USER", help="systemd/cron: the user owning the cache (default: eggproxy)"
    )
    deploy.add_argument(
        "--venv", metavar="DIR", help="the environment eggproxy is installed in (default: this one)"
    )
    deploy.add_argument(
        "--nginx-cache",
        metavar="DIR",
        help="nginx: where nginx keeps its copies of pages (default: /var/lib/nginx/eggproxy)",
    )


def _deploy(args: argparse.Namespace, config: Config) -> int:
    from eggproxy.deploy import DeployError, render

    try:
        text = render(
            args.target,
            config,
            listen=args.listen,
            server_name=args.server_name,
            user=args.user,
            venv=args.venv,
            nginx_cache=args.nginx_cache,
        )
    except DeployError as exc:
        print(f"eggproxy: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    """The configuration keys given as flags (they override the file)."""
    flags = {
        "cache_dir": args.cache_dir,
        "index": args.index,
        "bind": getattr(args, "bind", None),
        "workers": getattr(args, "workers", None),
    }
    return {key: str(value) for key, value in flags.items() if value is not None}


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config).with_overrides(**_overrides(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eggproxy``."""
    args = build_parser().parse_args(argv)
    # update logs only what went wrong: its summary line says the rest.
    level = logging.WARNING if args.command == "update" else logging.INFO
    logging.basicConfig(level=level, format=logs.FORMAT)
    # urllib3 warns on each retried connection; our own line says what failed.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        if args.command == "update" and args.max_age is not None and args.max_age < 0:
            raise ConfigError(f"must not be negative, not {args.max_age:g}", key="--max-age")
        config = _load(args)
        if args.command == "serve":
            from eggproxy.standalone.run import serve

            return serve(config, overrides=_overrides(args), access_log=not args.no_access_log)
        if args.command == "deploy":
            return _deploy(args, config)
        if args.command in ("cache", "metrics", "stats", "prune", "verify"):
            return cachecli.run(args, config)
        if args.command == "config":
            print(config_ini(config), end="")
            return 0
        if args.command in offline.COMMANDS:
            return offline.run(args, config)
        if args.command == "audit":
            proxy = Proxy(config)
            proxy.prepare()
            return _audit(proxy, purge=args.purge)
        return _update(config, args)
    except ConfigError as exc:
        print(f"eggproxy: configuration error: {exc}", file=sys.stderr)
        return 2
    except CannotListen as exc:
        print(f"eggproxy: {exc}", file=sys.stderr)
        return 2


def _update(config: Config, args: argparse.Namespace) -> int:
    proxy = Proxy(config)
    proxy.prepare()
    max_age = None if args.max_age is None else args.max_age * 3600
    try:
        # A progress bar for a person at a terminal; cron and logs get the summary alone.
        if sys.stderr.isatty() and not args.quiet:
            from eggproxy.progress import progress_bar

            with progress_bar(sys.stderr) as bar:
                summary = update(proxy, max_age_seconds=max_age, progress=bar)
        else:
            summary = update(proxy, max_age_seconds=max_age)
    finally:
        proxy.close()
    if summary.failed or not args.quiet:
        print(summary.line())
    return 1 if summary.failed else 0


def _audit(proxy: Proxy, *, purge: bool) -> int:
    if proxy.policy.blocklist is None and not proxy.config.deny:
        print("eggproxy: audit needs blocklist or deny in the configuration", file=sys.stderr)
        return 2
    found = proxy.audit(purge=purge)
    for project, filename, record in found:
        print(f"{project} {filename} {record}")
    done = "purged" if purge else "affected"
    print(f"audit: {len(found)} cached file(s) {done}")
    return 1 if found and not purge else 0


def update_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eggproxy_update``, the 2008 name, for cron."""
    return main(["update", *(sys.argv[1:] if argv is None else argv)])
