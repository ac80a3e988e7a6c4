"""Configuration: an INI file read into a frozen :class:`Config`.

Nothing is read at import time: :func:`load_config` is called by each entry
point, and the value it returns is passed down.  The file is looked up in
this order: an explicit path (``--config``/``-c``), ``$EGGPROXY_CONFIG``,
``~/.config/eggproxy/eggproxy.conf``, ``/etc/eggproxy/eggproxy.conf``; with
none of them, the defaults apply.  Keys live in ``[eggproxy]``; the 2008
module's ``[default]`` section and its ``eggs_directory`` key are accepted.
"""

from __future__ import annotations

import configparser
import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from packaging.utils import canonicalize_name

from eggproxy.errors import ConfigError

SECTIONS: Final = ("eggproxy", "default")
DEFAULT_PREFIX: Final = "/simple/"
DEFAULT_BIND: Final = "127.0.0.1:3141"


SOURCE_PREFIX: Final = "source:"


class SourceMode(enum.Enum):
    """How a source's projects combine with earlier sources' (STYLE: unsafe says so)."""

    # Used only when no earlier source has the project: the safe default.
    FIRST = "first"
    # Its files are added to an earlier source's page, where PEP 708 permits.
    UNSAFE_MERGE = "unsafe-merge"


@dataclass(frozen=True)
class SourceConfig:
    """One ``[source:NAME]`` section: a remote index (``url``) or a folder (``path``)."""

    name: str
    url: str | None = None
    path: Path | None = None
    username: str | None = None
    # Never shown: not in repr, not in logs, not in pages.
    password: str | None = field(default=None, repr=False)
    mode: SourceMode = SourceMode.FIRST
    # Projects this source provides even when an earlier source has them.
    allow: frozenset[str] = frozenset()
    # Seconds a new file of this source is held back (None: the [eggproxy] value).
    min_release_age: float | None = None

    @property
    def is_local(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class Config:
    """Everything eggproxy needs to know, resolved and validated."""

    cache_dir: Path
    index: str
    update_interval: float = 24.0  # hours, as in 2008
    index_ttl: int = 1800  # seconds a project page is served without asking upstream
    timeout: float = 30.0  # seconds for upstream connect and read
    prefix: str = DEFAULT_PREFIX
    update_concurrency: int = 8
    bind: str = DEFAULT_BIND
    workers: int = 1
    # Keep offering cached files that the upstream no longer lists (old pins).
    serve_removed: bool = False
    # Seconds a cached project whose upstream answers 404 is still served
    # (stale, with a warning) before its pages are removed.
    gone_grace: float = 7 * 86400.0
    # eggproxy update: "auto" uses the root page's serials with many due pages.
    update_via_root: Literal["auto", "yes", "no"] = "auto"
    update_retries: int = 2  # retries of a page on 5xx or a timeout, with backoff
    path: Path | None = None  # the file it was read from, if any
    sources: tuple[SourceConfig, ...] = ()  # [source:*] sections, in file order
    # Supply-chain guard (eggproxy.policy): applied when answering, never when storing.
    min_release_age: float = 0.0  # seconds a new file is held back (0: off)
    min_release_age_exempt: frozenset[str] = frozenset()  # normalised project names
    blocklist: Path | None = None  # a folder of OSV records (malicious packages)
    deny: tuple[tuple[str, str | None], ...] = ()  # (normalised name, version or None)

    @property
    def effective_sources(self) -> tuple[SourceConfig, ...]:
        """The configured sources, or the one ``index`` when there are none."""
        if self.sources:
            return self.sources
        url, username, password = split_credentials(self.index)
        return (SourceConfig("upstream", url=url, username=username, password=password),)

    def with_overrides(self, **values: Any) -> Config:
        """Return a copy with command-line values applied (``None`` means unset)."""
        given = {k: v for k, v in values.items() if v is not None}
        raw = {k: str(v) for k, v in given.items()}
        parsed = {k: _PARSERS[k](k, raw[k]) for k in raw}
        return replace(self, **parsed)


def default_index_url() -> str:
    """The index pip on this machine is configured to use, else pip's own default.

    ``PIP_INDEX_URL`` wins, then pip's configuration files; both are read
    through pip itself so that every place pip looks is honoured.
    """
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        return env.split()[0]
    try:
        from pip._internal.configuration import Configuration
        from pip._internal.exceptions import ConfigurationError
        from pip._internal.models.index import PyPI
    except ImportError:
        raise ConfigError(
            "no upstream configured and pip is not installed to tell its default", key="index"
        ) from None
    configuration = Configuration(isolated=False)
    try:
        configuration.load()
    except ConfigurationError:
        return str(PyPI.simple_url)
    for key in (":env:.index-url", "global.index-url", "install.index-url"):
        try:
            return str(configuration.get_value(key)).split()[0]
        except ConfigurationError:
            continue
    return str(PyPI.simple_url)


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The per-user cache directory (XDG), used when none is configured."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "eggproxy"


def find_config_file(
    explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ
) -> Path | None:
    """Return the configuration file to read, in the documented lookup order."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("configuration file not found", path=str(path))
        return path
    if environ.get("EGGPROXY_CONFIG"):
        path = Path(environ["EGGPROXY_CONFIG"])
        if not path.is_file():
            raise ConfigError("configuration file not found ($EGGPROXY_CONFIG)", path=str(path))
        return path
    for candidate in (
        Path.home() / ".config" / "eggproxy" / "eggproxy.conf",
        Path("/etc/eggproxy/eggproxy.conf"),
    ):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """Find, read and validate the configuration; raise :class:`ConfigError` if wrong."""
    path = find_config_file(explicit, environ)
    values: dict[str, str] = {}
    if path is not None:
        parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except (OSError, configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}", path=str(path)) from None
        # Later sections in SECTIONS are the older spelling; [eggproxy] wins.
        for section in reversed(SECTIONS):
            if parser.has_section(section):
                values.update(parser.items(section))
    try:
        config = config_from_mapping(values, path=path, environ=environ)
        if path is not None:
            sources = tuple(
                parse_source(section[len(SOURCE_PREFIX) :], dict(parser.items(section)))
                for section in parser.sections()
                if section.startswith(SOURCE_PREFIX)
            )
            names = [source.name for source in sources]
            if len(set(names)) != len(names):
                raise ConfigError("a source name is used twice", key="source")
            config = replace(config, sources=sources)
        return config
    except ConfigError as exc:
        exc.path = str(path) if path else None
        raise


_SOURCE_KEYS: Final = ("url", "path", "username", "password", "mode", "allow", "min_release_age")


def parse_source(name: str, values: Mapping[str, str]) -> SourceConfig:
    """Validate one ``[source:NAME]`` section."""
    key = f"source:{name}"
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError("a source needs a name of letters, digits, '-', '_', '.'", key=key)
    unknown = sorted(set(values) - set(_SOURCE_KEYS))
    if unknown:
        raise ConfigError("unknown key", key=f"{key}.{unknown[0]}")
    url, path = values.get("url", "").strip(), values.get("path", "").strip()
    if bool(url) == bool(path):
        raise ConfigError("needs exactly one of url or path", key=key)
    username, password = values.get("username") or None, values.get("password") or None
    if url:
        parts = urlsplit(_parse_url(f"{key}.url", url))
        url, url_user, url_password = split_credentials(urlunsplit(parts))
        username, password = username or url_user, password or url_password
    try:
        mode = SourceMode(values.get("mode", SourceMode.FIRST.value).strip())
    except ValueError:
        modes = ", ".join(m.value for m in SourceMode)
        raise ConfigError(f"mode must be one of {modes}", key=f"{key}.mode") from None
    allow = frozenset(
        canonicalize_name(item) for item in values.get("allow", "").replace(",", " ").split()
    )
    age = values.get("min_release_age")
    return SourceConfig(
        min_release_age=None if age is None else parse_duration(f"{key}.min_release_age", age),
        name=name,
        url=url or None,
        path=_parse_path(f"{key}.path", path) if path else None,
        username=username,
        password=password,
        mode=mode,
        allow=allow,
    )


def config_from_mapping(
    values: Mapping[str, str], *, path: Path | None = None, environ: Mapping[str, str] = os.environ
) -> Config:
    """Build a :class:`Config` from raw string values (file keys or overrides)."""
    values = dict(values)
    if "eggs_directory" in values:  # the 2008 name of cache_dir
        values.setdefault("cache_dir", values.pop("eggs_directory"))
    unknown = sorted(set(values) - set(_PARSERS))
    if unknown:
        raise ConfigError("unknown key", key=unknown[0])
    parsed: dict[str, Any] = {k: _PARSERS[k](k, v) for k, v in values.items()}
    parsed.setdefault("cache_dir", default_cache_dir(environ))
    if "index" not in parsed:
        parsed["index"] = _parse_url("index", default_index_url())
    return Config(path=path, **parsed)


def _parse_path(key: str, value: str) -> Path:
    if not value.strip():
        raise ConfigError("must not be empty", key=key)
    return Path(os.path.expanduser(value.strip())).absolute()


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without userinfo, username, password)``: URLs get logged, credentials must not."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, _, password = userinfo.partition(":")
    bare = urlunsplit(parts._replace(netloc=hostport))
    return bare, unquote(user) or None, unquote(password) or None


def redact(url: str) -> str:
    """``url`` without its credentials, for messages."""
    return split_credentials(url)[0]


def _parse_url(key: str, value: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"not an http(s) URL: {redact(value)!r}", key=key)
    return value if value.endswith("/") else value + "/"


def _number(kind: Callable[[str], Any], minimum: float) -> Callable[[str, str], Any]:
    def parse(key: str, value: str) -> Any:
        try:
            number = kind(value.strip())
        except ValueError:
            raise ConfigError(f"not a number: {value!r}", key=key) from None
        if number < minimum:
            raise ConfigError(f"must be at least {minimum}: {value!r}", key=key)
        return number

    return parse


def _parse_prefix(key: str, value: str) -> str:
    value = "/" + value.strip().strip("/") + "/"
    if "//" in value or ".." in value:
        raise ConfigError(f"not a URL path: {value!r}", key=key)
    return value


def _parse_choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    word = value.strip().lower()
    if word not in choices:
        raise ConfigError(f"expected one of {', '.join(choices)}, got {value.strip()}", key=key)
    return word


_TRUE: Final = ("1", "yes", "true", "on")
_FALSE: Final = ("0", "no", "false", "off")


def _parse_bool(key: str, value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ConfigError(f"expected yes or no, got {value.strip()}", key=key)


_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(key: str, value: str) -> float:
    """Seconds from ``3600``, ``90s``, ``30m``, ``36h``, ``7d`` or ``2w``."""
    text = value.strip().lower()
    unit = _UNITS.get(text[-1:], 0) if text else 0
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ConfigError(
            f"expected a duration like 3600, 36h or 7d, got {value.strip()}", key=key
        ) from None
    if seconds < 0:
        raise ConfigError(f"must not be negative: {value.strip()}", key=key)
    return seconds


def _parse_names(key: str, value: str) -> frozenset[str]:
    return frozenset(canonicalize_name(item) for item in value.replace(",", " ").split())


def _parse_deny(key: str, value: str) -> tuple[tuple[str, str | None], ...]:
    """``NAME`` or ``NAME==VERSION`` items, separated by spaces, commas or lines."""
    items = []
    for item in value.replace(",", " ").split():
        name, sep, version = item.partition("==")
        if not name or (sep and not version) or any(c in name for c in "<>=!~;"):
            raise ConfigError(f"expected NAME or NAME==VERSION, got {item!r}", key=key)
        items.append((canonicalize_name(name), version or None))
    return tuple(items)


def _parse_bind(key: str, value: str) -> str:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"expected HOST:PORT, got {value!r}", key=key)
    return f"{host}:{port}"


_PARSERS: Final[dict[str, Callable[[str, str], Any]]] = {
    "cache_dir": _parse_path,
    "index": _parse_url,
    "update_interval": _number(float, 0),
    "index_ttl": _number(int, 0),
    "timeout": _number(float, 0.1),
    "prefix": _parse_prefix,
    "update_concurrency": _number(int, 1),
    "bind": _parse_bind,
    "workers": _number(int, 1),
    "serve_removed": _parse_bool,
    "update_via_root": lambda key, value: _parse_choice(key, value, ("auto", "yes", "no")),
    "update_retries": _number(int, 0),
    "gone_grace": parse_duration,
    "min_release_age": parse_duration,
    "min_release_age_exempt": _parse_names,
    "blocklist": _parse_path,
    "deny": _parse_deny,
}
