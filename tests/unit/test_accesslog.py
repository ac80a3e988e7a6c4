"""The access log: Common Log Format by default, one JSON object per line on request."""

import json
import os

from eggproxy.standalone.accesslog import AccessLog


def _lines(fmt: str, upstream: tuple[str | None, float | None] | None) -> list[str]:
    read, write = os.pipe()
    log = AccessLog(write, fmt)  # type: ignore[arg-type]
    log.add("127.0.0.1", "GET", "/simple/demo/", "1.1", 200, 1387, 0.0004, "miss", upstream)
    log.flush()
    os.close(write)
    with os.fdopen(read) as handle:
        return handle.read().splitlines()


def test_clf_is_the_default_line() -> None:
    (line,) = _lines("clf", ("upstream", 0.2))
    assert line.startswith("127.0.0.1 - - [")
    assert line.endswith('"GET /simple/demo/ HTTP/1.1" 200 1387 0.0004 miss')


def test_json_line_has_the_same_fields_plus_source_and_upstream_time() -> None:
    (line,) = _lines("json", ("upstream", 0.123456789))
    record = json.loads(line)
    assert record["time"].endswith("Z")
    del record["time"]
    assert record == {
        "client": "127.0.0.1",
        "method": "GET",
        "path": "/simple/demo/",
        "protocol": "HTTP/1.1",
        "status": 200,
        "size": 1387,
        "seconds": 0.0004,
        "outcome": "miss",
        "source": "upstream",
        "upstream_seconds": 0.123457,
    }
    (hit,) = _lines("json", None)
    assert json.loads(hit)["source"] is None and json.loads(hit)["upstream_seconds"] is None
