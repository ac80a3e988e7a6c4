"""Make sure ``eggproxy serve``'s address is really ours before granian takes it.

granian binds with ``SO_REUSEPORT``, so a second server on a port already in
use (another eggproxy with another cache, or any program that set it too)
would bind as well and the kernel would share the connections between them,
silently.  A probe socket bound *without* ``SO_REUSEPORT`` fails with
``EADDRINUSE`` whenever anything listens there, whatever options it set.
``SO_REUSEADDR`` is kept, so connections of a previous run still in
``TIME_WAIT`` do not stop a restart.  Nothing is ever sent.
"""

from __future__ import annotations

import os
import socket

from eggproxy.errors import CannotListen


def check_address(bind: str) -> None:
    """Raise :class:`CannotListen` unless ``bind`` (``HOST:PORT``) is free and assignable."""
    host, _, port = bind.rpartition(":")
    try:
        infos = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise CannotListen(bind, "host name not found") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise CannotListen(bind, reason.lower()) from None
