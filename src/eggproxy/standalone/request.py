"""One ASGI request, as the standalone server's responses need it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

Headers = list[tuple[str, str]]
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

END: Final[Message] = {"type": "http.response.body", "body": b""}


class Request:
    """What a response needs of one ASGI request, with its headers decoded once."""

    __slots__ = (
        "extensions",
        "headers",
        "method",
        "path",
        "receive",
        "scheme",
        "send",
        "text_bytes",
        "upstream",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.method: str = scope["method"]
        # The raw path: ``route`` decodes it (strictly) once itself.
        raw = scope.get("raw_path")
        self.path: str = raw.decode("latin-1") if raw else scope["path"]
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if len(self.headers) < len(scope["headers"]):
            # A header sent twice (Via, Accept) is one list (RFC 9110, 5.3).
            self.headers = {}
            for k, v in scope["headers"]:
                name, value = k.decode("latin-1"), v.decode("latin-1")
                known = self.headers.get(name)
                self.headers[name] = f"{known}, {value}" if known else value
        self.scheme: str = scope.get("scheme", "http")
        self.extensions: dict[str, Any] = scope.get("extensions") or {}
        self.receive = receive
        self.send = send
        # (source, seconds) when answering asked a source, for the JSON access log.
        self.upstream: tuple[str | None, float | None] | None = None
        self.text_bytes = 0  # the body of a text answer (an error): the access log's size

    async def start(self, status: int, headers: Headers) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers
                ],
            }
        )

    async def respond(self, status: int, headers: Headers, body: bytes = b"") -> None:
        """A whole response; ``headers`` must carry the Content-Length."""
        await self.start(status, headers)
        await self.send({"type": "http.response.body", "body": body})

    async def text(self, status: int, message: str, extra: Headers | None = None) -> int:
        """A short plain-text answer (errors, 405); return its status."""
        body = f"{status} {message}\n".encode()
        headers = [
            ("content-type", "text/plain; charset=utf-8"),
            *(extra or []),
            ("content-length", str(len(body))),
        ]
        await self.respond(status, headers, body)
        self.text_bytes = len(body)
        return status
