"""``eggproxy config``: the configuration in effect, as INI that loads back.

Every key is printed with its resolved value (defaults included), so what
eggproxy will do is read in one place; passwords are masked.  The output is
itself a valid configuration file: saved and loaded again, it gives the same
configuration (bar the masked passwords).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

from eggproxy.config import Config, SourceConfig

MASK: Final = "***"
# The [eggproxy] keys, in the order the README's table lists them.
KEYS: Final = (
    "cache_dir",
    "index",
    "prefix",
    "index_ttl",
    "update_interval",
    "update_concurrency",
    "timeout",
    "bind",
    "workers",
)


def mask_url(url: str) -> str:
    """``url`` with the password of its userinfo, if any, replaced by ``***``."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))


def _source_lines(source: SourceConfig) -> list[str]:
    lines = ["", f"[source:{source.name}]"]
    if source.url is not None:
        lines.append(f"url = {source.url}")
    if source.path is not None:
        lines.append(f"path = {source.path}")
    if source.username:
        lines.append(f"username = {source.username}")
    if source.password:
        lines.append(f"password = {MASK}")
    lines.append(f"mode = {source.mode.value}")
    if source.allow:
        lines.append(f"allow = {' '.join(sorted(source.allow))}")
    return lines


def config_ini(config: Config) -> str:
    """The effective configuration as INI, headed by where it was loaded from."""
    origin = f"loaded from {config.path}" if config.path else "no configuration file: defaults"
    lines = [f"; {origin}", "[eggproxy]"]
    for key in KEYS:
        value = getattr(config, key)
        lines.append(f"{key} = {mask_url(value) if key == 'index' else value}")
    for source in config.sources:
        lines += _source_lines(source)
    return "\n".join(lines) + "\n"
