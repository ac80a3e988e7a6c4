"""A pass-through relay as an ASGI app: the floor a Python proxy sets (issue 13).  Not a product.

``bench.miss_floor`` runs it under granian, as ``eggproxy serve`` runs: every GET is sent on
to ``RELAY_UPSTREAM`` (the upstream double's root) through one pooled urllib3 client in a
thread pool, and its status, content type and body (read whole) come back, no other header
(no ``Location``: the benchmark's clients ask canonical names and are never redirected);
page bodies have the upstream's root replaced by the relay's own, so a client fetches the
files through it too.  Nothing is parsed, verified, stored or logged: what is left is one
more HTTP exchange in Python on the same server and event loop as eggproxy, with one hand-off
to a thread a request (eggproxy: one, and a stream pool for a file that takes long).  It is
about the least a Python proxy on granian pays per miss.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import urllib3

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UPSTREAM: Final = os.environ.get("RELAY_UPSTREAM", "http://127.0.0.1:1").rstrip("/")
_pool = urllib3.PoolManager(maxsize=32)
_threads = ThreadPoolExecutor(64, thread_name_prefix="relay")


def _fetch(path: str, accept: str | None) -> tuple[int, str, bytes]:
    headers = {"Accept": accept} if accept else {}
    response = _pool.request("GET", UPSTREAM + path, headers=headers, retries=False)
    return response.status, response.headers.get("Content-Type", ""), response.data


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = dict(scope["headers"])
    accept = headers.get(b"accept")
    loop = asyncio.get_running_loop()
    status, content_type, body = await loop.run_in_executor(
        _threads, _fetch, scope["raw_path"].decode("latin-1"), accept and accept.decode()
    )
    if not content_type.startswith("application/octet"):  # a page: links through the relay
        host = headers.get(b"host", b"").decode("latin-1")
        body = body.replace(UPSTREAM.encode(), f"http://{host}".encode())
    start = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})
