"""The standalone app's plain-hit path: same answer as the general path, counted once."""

import asyncio
from pathlib import Path
from typing import Any

from eggproxy.config import Config
from eggproxy.proxy import Proxy
from eggproxy.standalone.app import App

INDEX = "http://127.0.0.1:9/simple/"  # never asked: every answer here comes from the cache


def _get(app: App, path: str, *headers: tuple[bytes, bytes]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "headers": [(b"host", b"test"), *headers],
        "http_version": "1.1",
        "scheme": "http",
        "client": ("127.0.0.1", 1),
        "extensions": {},
    }
    asyncio.run(app(scope, receive, send))
    return sent


def _app(tmp_path: Path, **settings: Any) -> App:
    config = Config(cache_dir=tmp_path / "cache", index=INDEX, **settings)
    proxy = Proxy(config)
    proxy.prepare()
    project = tmp_path / "cache" / "demo-pkg"
    project.mkdir()
    (project / "demo_pkg-1.0.tar.gz").write_bytes(b"sdist" * 10)
    return App(config, proxy=proxy, threads=2)


def test_a_cached_file_is_sent_whole_with_its_headers(tmp_path: Path) -> None:
    app = _app(tmp_path)
    start, body = _get(app, "/simple/demo-pkg/demo_pkg-1.0.tar.gz")
    headers = dict(start["headers"])
    assert start["status"] == 200 and body["body"] == b"sdist" * 10
    assert headers[b"cache-control"] == b"public, max-age=31536000, immutable"
    assert headers[b"content-length"] == b"50"
    again = _get(app, "/simple/demo-pkg/demo_pkg-1.0.tar.gz")
    assert again[0] is start  # the ready message, built once
    app.close()


def test_a_denied_cached_file_is_refused_and_counted_once(tmp_path: Path) -> None:
    app = _app(tmp_path, deny=(("demo-pkg", "1.0"),))
    start, _body = _get(app, "/simple/demo-pkg/demo_pkg-1.0.tar.gz")
    assert start["status"] == 403
    assert app.proxy.policy_counts().get("blocked") == 1
    app.close()


def test_a_conditional_get_takes_the_general_path(tmp_path: Path) -> None:
    app = _app(tmp_path)
    (plain, _body) = _get(app, "/simple/demo-pkg/demo_pkg-1.0.tar.gz")
    etag = dict(plain["headers"])[b"etag"]
    (answer,) = _get(app, "/simple/demo-pkg/demo_pkg-1.0.tar.gz", (b"if-none-match", etag))[:1]
    assert answer["status"] == 304
    app.close()
