"""``eggproxy config``: the configuration in effect, as INI that loads back.

Every key is printed with its resolved value (defaults included), so what
eggproxy will do is read in one place; passwords are masked.  The output is
itself a valid configuration file: saved and loaded again, it gives the same
configuration (bar the masked passwords).
"""

from __future__ import annotations

import enum
from dataclasses import fields
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from eggproxy.config import Config, SourceConfig

MASK: Final = "***"
# Fields of Config that are not [eggproxy] keys; every other field is one, so a
# key added later is printed without a change here.
NOT_KEYS: Final = frozenset({"path", "sources"})


def mask_url(url: str) -> str:
    """``url`` with the password of its userinfo, if any, replaced by ``***``."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))


def format_value(value: object) -> str:
    """A value as the configuration file spells it (and its parser reads it back)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, frozenset):  # names: space-separated
        return " ".join(sorted(value))
    if isinstance(value, tuple) and all(isinstance(item, str) for item in value):
        return " ".join(value)  # purge_urls, purge_from: space-separated
    if isinstance(value, tuple):  # deny: NAME or NAME==VERSION
        return " ".join(f"{n}=={v}" if v else str(n) for n, v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
    for item in fields(config):
        if item.name in NOT_KEYS:
            continue
        raw = getattr(config, item.name)
        if raw is None:  # unset, and so left to its default: nothing to load back
            lines.append(f"; {item.name} is not set")
            continue
        value = format_value(raw)
        if item.name == "index":
            value = mask_url(value)
        elif item.name == "purge_urls":
            value = " ".join(mask_url(url) for url in raw)
        lines.append(f"{item.name} = {value}")
    for source in config.sources:
        lines += _source_lines(source)
    return "\n".join(lines) + "\n"
