"""Configuration: an INI file read into a frozen :class:`Config`.

Nothing is read at import time: :func:`load_config` is called by each entry
point, and the value it returns is passed down.  The file is looked up in
this order: an explicit path (``--config``/``-c``), ``$EGGPROXY_CONFIG``,
``~/.config/eggproxy/eggproxy.conf``, ``/etc/eggproxy/eggproxy.conf``; with
none of them, the defaults apply.  Keys live in ``[eggproxy]``; the 2008
module's ``[default]`` section and its ``eggs_directory`` key are accepted.

A file cannot be misread: ``;`` or ``#`` after whitespace starts a comment
(the examples put comments after values), a section or key eggproxy does not
know is an error, and every error is one line naming the file, the section
and the key.
"""

from __future__ import annotations

import configparser
import enum
import ipaddress
import os
import socket
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


def node_name() -> str:
    """This machine's host name, as a single path segment (for per-node folders)."""
    name = socket.gethostname().replace(os.sep, "_").strip(".")
    return name or "localhost"


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
    # RFC 5861: seconds past index_ttl a page is still answered at once while it
    # is revalidated in the background (0: the request waits for the upstream).
    stale_while_revalidate: int = 86400
    negative_ttl: int = 60  # seconds a name no source knows is answered 404 at once (0: off)
    # eggproxy serve: a page served within its TTL is revalidated in the background
    # once it has less than this many seconds of freshness left (0: off).
    refresh_ahead: float = 0.0
    timeout: float = 30.0  # seconds for upstream connect and read
    prefix: str = DEFAULT_PREFIX
    update_concurrency: int = 8
    bind: str = DEFAULT_BIND
    # eggproxy serve: worker processes; "auto" is one per CPU it may use, at most 8.
    workers: int | Literal["auto"] = "auto"
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
    # Operating it (docs/decisions/0010): metrics, cache limit, access log format.
    metrics: bool = True  # count requests (eggproxy serve's /metrics and /+status)
    metrics_dir: Path | None = None  # prometheus multiprocess directory; serve's default below
    max_cache_size: int | None = None  # bytes; None: no limit
    prune_interval: float = 300.0  # seconds between eviction passes of eggproxy serve
    access_log: Literal["clf", "json"] = "clf"
    # Cache tiers in front (issue 12): base URLs sent ``PURGE <prefix><project>/``
    # when a page changes, and the addresses ``deploy varnish`` accepts purges from.
    purge_urls: tuple[str, ...] = ()
    purge_from: tuple[str, ...] = ("127.0.0.1",)

    @property
    def metrics_path(self) -> Path:
        """Where ``eggproxy serve`` keeps its metrics: ``metrics_dir``, else in the cache.

        The default has a folder per host: nodes sharing one cache directory
        (issue 12) must not empty or sum each other's counts.
        """
        return self.metrics_dir or self.cache_dir / ".metrics" / node_name()

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


def read_ini(path: Path) -> configparser.ConfigParser:
    """Parse ``path`` as eggproxy reads INI: inline comments stripped, errors in one line."""
    parser = configparser.ConfigParser(
        interpolation=None,
        default_section="__none__",
        # "key = value  ; why" is how the examples comment a value: never part of it.
        inline_comment_prefixes=(";", "#"),
    )
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", path=str(path)) from None
    except configparser.Error as exc:
        raise _syntax_error(exc, path) from None
    for section in parser.sections():
        if section not in SECTIONS and not section.startswith(SOURCE_PREFIX):
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            raise ConfigError(
                f"unknown section (known: {known}, [{SOURCE_PREFIX}NAME])",
                path=str(path),
                section=section,
            )
    return parser


def _syntax_error(exc: configparser.Error, path: Path) -> ConfigError:
    """configparser's multi-line, repr-laden messages as one plain line."""
    where = str(path)
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return ConfigError(
            "a key before any section header (start with [eggproxy])", path=where, line=exc.lineno
        )
    if isinstance(exc, configparser.DuplicateOptionError):
        return ConfigError(
            "key given twice", path=where, line=exc.lineno, section=exc.section, key=exc.option
        )
    if isinstance(exc, configparser.DuplicateSectionError):
        return ConfigError("section given twice", path=where, line=exc.lineno, section=exc.section)
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno, _text = exc.errors[0]
        return ConfigError("not a 'key = value' line", path=where, line=lineno)
    return ConfigError("not an INI file", path=where)


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """Find, read and validate the configuration; raise :class:`ConfigError` if wrong."""
    path = find_config_file(explicit, environ)
    values: dict[str, str] = {}
    origin: dict[str, str] = {}  # key -> the section it was read from, for messages
    if path is not None:
        parser = read_ini(path)
        # Later sections in SECTIONS are the older spelling; [eggproxy] wins.
        for section in reversed(SECTIONS):
            if parser.has_section(section):
                for key, value in parser.items(section):
                    values[key], origin[key] = value, section
    try:
        if path is not None and "eggs_directory" in origin:
            _one_cache_dir(parser, origin["eggs_directory"])
            origin.setdefault("cache_dir", origin["eggs_directory"])
        config = config_from_mapping(values, path=path, environ=environ)
        if path is not None:
            sources = tuple(
                parse_source(section[len(SOURCE_PREFIX) :], dict(parser.items(section)))
                for section in parser.sections()
                if section.startswith(SOURCE_PREFIX)
            )
            names = [source.name for source in sources]
            if len(set(names)) != len(names):
                raise ConfigError("a source name is used twice")
            config = replace(config, sources=sources)
        return config
    except ConfigError as exc:
        exc.path = str(path) if path else None
        if exc.section is None and exc.key in origin:
            exc.section = origin[exc.key]
        raise


_SOURCE_KEYS: Final = ("url", "path", "username", "password", "mode", "allow", "min_release_age")


def parse_source(name: str, values: Mapping[str, str]) -> SourceConfig:
    """Validate one ``[source:NAME]`` section."""
    section = f"{SOURCE_PREFIX}{name}"
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(
            "a source needs a name of letters, digits, '-', '_', '.'", section=section
        )
    unknown = sorted(set(values) - set(_SOURCE_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key (known: {', '.join(_SOURCE_KEYS)})", section=section, key=unknown[0]
        )
    url, path = values.get("url", "").strip(), values.get("path", "").strip()
    if bool(url) == bool(path):
        raise ConfigError("needs exactly one of url or path", section=section)
    username, password = values.get("username") or None, values.get("password") or None
    try:
        if url:
            parts = urlsplit(_parse_url("url", url))
            url, url_user, url_password = split_credentials(urlunsplit(parts))
            username, password = username or url_user, password or url_password
        folder = _parse_folder("path", path) if path else None
    except ConfigError as exc:
        exc.section = section
        raise
    try:
        mode = SourceMode(values.get("mode", SourceMode.FIRST.value).strip())
    except ValueError:
        modes = ", ".join(m.value for m in SourceMode)
        raise ConfigError(
            f"must be one of {modes}, not {values['mode'].strip()}", section=section, key="mode"
        ) from None
    allow = frozenset(
        canonicalize_name(item) for item in values.get("allow", "").replace(",", " ").split()
    )
    age = values.get("min_release_age")
    try:
        min_age = None if age is None else parse_duration("min_release_age", age)
    except ConfigError as exc:
        exc.section = section
        raise
    return SourceConfig(
        min_release_age=min_age,
        name=name,
        url=url or None,
        path=folder,
        username=username,
        password=password,
        mode=mode,
        allow=allow,
    )


def _one_cache_dir(parser: configparser.ConfigParser, section: str) -> None:
    """Refuse a section naming its cache twice, once by its 2008 name, differently.

    Across sections the newer one wins, as for any key ([eggproxy] over [default]).
    """
    if not parser.has_option(section, "cache_dir"):
        return
    old, new = parser.get(section, "eggs_directory"), parser.get(section, "cache_dir")
    if old.strip() != new.strip():
        raise ConfigError(
            f"the 2008 name of cache_dir, which is also given ({new.strip()}): keep one",
            key="eggs_directory",
            section=section,
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


def _parse_folder(key: str, value: str) -> Path:
    """A folder that must exist now: a typo would otherwise serve an empty source."""
    folder = _parse_path(key, value)
    if not folder.exists():
        raise ConfigError(f"no such directory: {folder}", key=key)
    if not folder.is_dir():
        raise ConfigError(f"not a directory: {folder}", key=key)
    return folder


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
    # Whitespace inside is a comment or a typo taken for part of the URL.
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value.split()) > 1:
        raise ConfigError(f"not an absolute http(s) URL: {redact(value) or '(empty)'}", key=key)
    return value if value.endswith("/") else value + "/"


def _number(kind: Callable[[str], Any], minimum: float) -> Callable[[str, str], Any]:
    def parse(key: str, value: str) -> Any:
        try:
            number = kind(value.strip())
        except ValueError:
            raise ConfigError(f"not a number: {value.strip()}", key=key) from None
        if number < minimum:
            raise ConfigError(f"must be at least {minimum:g}, not {value.strip()}", key=key)
        return number

    return parse


def _parse_prefix(key: str, value: str) -> str:
    value = "/" + value.strip().strip("/") + "/"
    if "//" in value or ".." in value:
        raise ConfigError(f"not a URL path: {value}", key=key)
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
    raise ConfigError(f"expected yes or no (on or off), got {value.strip()}", key=key)


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


def _parse_urls(key: str, value: str) -> tuple[str, ...]:
    """Absolute http(s) URLs separated by spaces, commas or lines (kept without a final /)."""
    return tuple(_parse_url(key, item).rstrip("/") for item in value.replace(",", " ").split())


def _parse_addresses(key: str, value: str) -> tuple[str, ...]:
    """IP addresses or networks (``10.0.0.0/8``), separated by spaces, commas or lines."""
    items = []
    for item in value.replace(",", " ").split():
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"not an IP address or network: {item!r}", key=key) from None
        items.append(item)
    return tuple(items)


def _parse_bind(key: str, value: str) -> str:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"expected HOST:PORT, not {value.strip()}", key=key)
    return f"{host}:{port}"


_SIZE_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(key: str, value: str) -> int | None:
    """``50G``, ``500M``, ``1024`` (bytes; binary units); ``off`` or ``0``: no limit."""
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    if text in ("OFF", "NONE", "", "0"):
        return None
    unit = text[-1] if text[-1:] in _SIZE_UNITS else ""
    number = text[: len(text) - len(unit)].strip()
    try:
        size = float(number)
    except ValueError:
        raise ConfigError(f"not a size like 50G or 500M: {value.strip()}", key=key) from None
    if size <= 0 or size != size:
        raise ConfigError(f"must be positive: {value.strip()}", key=key)
    return int(size * _SIZE_UNITS[unit])


def parse_workers(key: str, value: str) -> int | Literal["auto"]:
    word = value.strip()
    if word.lower() == "auto":
        return "auto"
    try:
        number = int(word)
    except ValueError:
        raise ConfigError(f"expected a number or auto, got {word}", key=key) from None
    if number < 1:
        raise ConfigError(f"must be at least 1 (or auto), not {word}", key=key)
    return number


AUTO_WORKERS_MAX: Final = 8


def worker_processes(workers: int | Literal["auto"], cpus: int) -> int:
    """How many processes ``eggproxy serve`` starts for the ``workers`` setting.

    ``auto``: one per CPU (``cpus``: :func:`eggproxy.cpus.available_cpus`), as nginx's
    ``worker_processes auto``, so concurrent misses are not queued behind one
    interpreter's lock; at most AUTO_WORKERS_MAX, since each worker keeps its own
    upstream connections, threads and spare files and a proxy waits mostly on I/O.
    """
    if workers == "auto":
        return max(1, min(cpus, AUTO_WORKERS_MAX))
    return workers


def _parse_access_log(key: str, value: str) -> str:
    text = value.strip().lower()
    if text not in ("clf", "json"):
        raise ConfigError(f"expected clf or json, got {value.strip()}", key=key)
    return text


_PARSERS: Final[dict[str, Callable[[str, str], Any]]] = {
    "cache_dir": _parse_path,
    "index": _parse_url,
    "update_interval": _number(float, 0),
    "index_ttl": _number(int, 0),
    "stale_while_revalidate": _number(int, 0),
    "negative_ttl": _number(int, 0),
    "refresh_ahead": parse_duration,
    "timeout": _number(float, 0.1),
    "prefix": _parse_prefix,
    "update_concurrency": _number(int, 1),
    "bind": _parse_bind,
    "workers": parse_workers,
    "serve_removed": _parse_bool,
    "update_via_root": lambda key, value: _parse_choice(key, value, ("auto", "yes", "no")),
    "update_retries": _number(int, 0),
    "gone_grace": parse_duration,
    "metrics": _parse_bool,
    "metrics_dir": _parse_path,
    "max_cache_size": parse_size,
    "prune_interval": _number(float, 0.1),
    "access_log": _parse_access_log,
    "min_release_age": parse_duration,
    "min_release_age_exempt": _parse_names,
    "blocklist": _parse_path,
    "deny": _parse_deny,
    "purge_urls": _parse_urls,
    "purge_from": _parse_addresses,
}
