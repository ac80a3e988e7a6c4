"""eggproxy never proxies itself.

The default upstream is the index pip is configured to use; once a site
points pip at eggproxy, that default is eggproxy itself.  Two guards:

* at start, :func:`self_source` finds a configured upstream whose host and
  port are eggproxy's own bind address (``localhost``, ``127.0.0.1``,
  ``[::1]``, ``0.0.0.0`` and ``::`` being one machine; a bind on every
  address matching any local one), and ``eggproxy serve`` refuses to start;
* at run time, each upstream request carries a ``Via`` header (RFC 9110,
  7.6.3) naming this eggproxy by a pseudonym, after the ``Via`` of the client
  request it serves, and a request arriving with our own pseudonym in its
  ``Via`` is refused with 508 Loop Detected (RFC 5842).  Chaining two
  *different* eggproxies stays possible; a loop through any number of them
  (A → B → A) is cut at the first repeat, because the chain is carried along.

The pseudonym is a hash of the host name and the cache directory: every
worker and every Apache process serving one cache shares it, and it tells
nothing about either.
"""

from __future__ import annotations

import contextvars
import hashlib
import ipaddress
import socket
from typing import Final
from urllib.parse import urlsplit

from eggproxy.config import Config, SourceConfig

PREFIX: Final = "eggproxy-"
PROTOCOL: Final = "1.1"
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
WILDCARDS: Final = frozenset({"", "0.0.0.0", "::"})

# The Via chain of the client request being served, for the upstream requests it causes.
_incoming: contextvars.ContextVar[str] = contextvars.ContextVar("eggproxy_via", default="")


def pseudonym(config: Config) -> str:
    """This eggproxy's name in ``Via`` headers."""
    seed = f"{socket.gethostname()}\0{config.cache_dir}".encode()
    return PREFIX + hashlib.sha256(seed).hexdigest()[:12]


def is_loop(via: str | None, name: str) -> bool:
    """Whether a request's ``Via`` header says it passed through ``name`` already."""
    if not via:
        return False
    for entry in via.split(","):
        parts = entry.split()
        # "1.1 eggproxy-…" : protocol, then received-by (a pseudonym here).
        if len(parts) >= 2 and parts[1] == name:
            return True
    return False


def outgoing_via(name: str) -> str:
    """The ``Via`` for an upstream request made now: the client's chain, then us."""
    own = f"{PROTOCOL} {name}"
    incoming = _incoming.get()
    return f"{incoming}, {own}" if incoming else own


def forward(via: str | None) -> None:
    """From now on in this thread, upstream requests carry ``via`` before ours.

    For a front end that serves each request in a thread and calls this first
    for every request (mod_python), so no value outlives its request.
    """
    _incoming.set(via or "")


def context_for(via: str | None) -> contextvars.Context:
    """A copy of the current context in which upstream requests carry ``via``."""
    context = contextvars.copy_context()
    context.run(_incoming.set, via or "")
    return context


# --- at start ------------------------------------------------------------------------


def _split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]").lower(), int(port)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES or host in WILDCARDS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_local_address(host: str) -> bool:
    """Whether ``host`` names this machine: its name, or an address we could bind to."""
    if _is_loopback(host) or host == socket.gethostname().lower():
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # another name: asking DNS at start is not worth a hang
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    # Binding (never sending) tells whether the address is one of ours.
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
    return True


def points_at(url: str, bind: str) -> bool:
    """Whether a request to ``url`` would reach a server listening on ``bind``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return False
    bind_host, bind_port = _split_bind(bind)
    if port != bind_port:
        return False
    if bind_host in WILDCARDS:
        return _is_local_address(host)
    if _is_loopback(bind_host):
        return _is_loopback(host)
    return host == bind_host


def self_source(config: Config) -> SourceConfig | None:
    """The first remote source that is this eggproxy itself (its own bind address)."""
    for source in config.effective_sources:
        if source.url is not None and points_at(source.url, config.bind):
            return source
    return None


def self_source_message(config: Config, source: SourceConfig) -> str:
    """One line: what is wrong and how to set ``index``."""
    if config.sources:
        where = f'source "{source.name}" url {source.url}'
        fix = f"set url in [source:{source.name}] to the index eggproxy should cache"
    else:
        where = f"index {source.url}"
        fix = (
            "set index = URL of the upstream index in [eggproxy] (or --index URL); "
            "the default is the index pip is configured to use, which may be eggproxy itself"
        )
    return f"{where} is this eggproxy (bind {config.bind}): {fix}"
