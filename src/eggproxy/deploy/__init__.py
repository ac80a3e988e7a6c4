"""``eggproxy deploy TARGET``: configuration files for the current configuration.

Each target is a module with one renderer returning the file's text: the web
server or cache tier in front (``apache``, ``nginx``, ``varnish``), the service
(``systemd``) and the refresh job (``cron``).  The files name the real paths of the configuration
in effect (cache directory, configuration file, virtual environment), so
they work as printed.  Templates are Python strings beside their renderer,
not package data: one module per file kind, checked by the type checker and
importable from a source checkout without an install step.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final, Literal, get_args

from eggproxy.config import Config
from eggproxy.errors import ConfigError

Target = Literal["apache", "nginx", "varnish", "systemd", "cron"]
TARGETS: Final[tuple[str, ...]] = get_args(Target)
DEFAULT_USER: Final = "eggproxy"


class DeployError(ConfigError):
    """A deployment file cannot be written for this configuration or these options."""


def render(
    target: str,
    config: Config,
    *,
    listen: str | None = None,
    server_name: str | None = None,
    user: str | None = None,
    venv: str | os.PathLike[str] | None = None,
    nginx_cache: str | os.PathLike[str] | None = None,
) -> str:
    """The text of the ``target`` file for ``config``; raise :class:`DeployError` if it cannot."""
    venv_path = Path(venv).absolute() if venv else default_venv()
    if target == "nginx":
        from eggproxy.deploy.nginx import DEFAULT_PAGE_CACHE, render_nginx

        if not listen:
            raise DeployError("deploy nginx needs --listen HOST:PORT")
        cache = Path(nginx_cache).absolute() if nginx_cache else DEFAULT_PAGE_CACHE
        return render_nginx(config, listen=listen, server_name=server_name, page_cache=cache)
    if target == "varnish":
        from eggproxy.deploy.varnish import render_varnish

        return render_varnish(config, listen=listen)
    if target == "systemd":
        from eggproxy.deploy.systemd import render_systemd

        return render_systemd(config, user=user or DEFAULT_USER, venv=venv_path)
    if target == "cron":
        from eggproxy.deploy.cron import render_cron

        return render_cron(config, user=user or cache_owner(config), venv=venv_path)
    if target == "apache":
        from eggproxy.deploy.apache import DEFAULT_SERVER_NAME, RenderError, render_apache

        try:
            return render_apache(
                config,
                server_name=server_name or DEFAULT_SERVER_NAME,
                listen=listen,
                venv=venv_path,
            )
        except RenderError as exc:
            raise DeployError(f"deploy apache: {exc}") from None
    raise DeployError(f"unknown deploy target {target!r} (one of {', '.join(TARGETS)})")


def default_venv() -> Path:
    """The environment eggproxy runs from: its ``bin/eggproxy`` is what services start."""
    return Path(sys.prefix).absolute()


def cache_owner(config: Config) -> str:
    """The user owning the cache directory (the one that must refresh it), else the default."""
    import pwd

    try:
        return pwd.getpwuid(config.cache_dir.stat().st_uid).pw_name
    except (OSError, KeyError):
        return DEFAULT_USER


def config_file(config: Config, target: str) -> Path:
    """The configuration file a service must read: the one loaded now, made absolute."""
    if config.path is None:
        raise DeployError(
            f"deploy {target} needs a configuration file (-c FILE, e.g. "
            "/etc/eggproxy/eggproxy.conf): the service's user would not see this one's defaults"
        )
    return Path(config.path).absolute()


def check_path(path: Path, what: str) -> str:
    """``path`` as a string safe in a service file: no quotes, escapes, ``$``, ``%`` or spaces."""
    text = str(path)
    bad = set(text) & set("\"'\\$%;{}` \t\n\r")
    if bad or not text.isprintable():
        raise DeployError(f"{what} {text!r} holds characters a service file cannot carry")
    return text
