"""Ready responses: built once per file version and variant, rebuilt when either changes."""

import os
from pathlib import Path

import pytest

from eggproxy.standalone.files import SMALL_FILE, SmallFiles
from eggproxy.standalone.ready import ReadyResponses

HEADERS = [("content-type", "text/html"), ("cache-control", "public, max-age=10")]


def _ready() -> ReadyResponses:
    return ReadyResponses(SmallFiles())


def _headers(start: dict[str, object]) -> dict[bytes, bytes]:
    return dict(start["headers"])  # type: ignore[call-overload]


def test_a_small_file_gets_its_bytes_and_every_header(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_bytes(b"<html>one</html>")
    start, body, size = _ready().get(str(page), page.stat(), HEADERS, ("text/html", 10))
    assert start["status"] == 200 and size == 16
    assert body == {"type": "http.response.body", "body": b"<html>one</html>"}
    headers = _headers(start)
    assert headers[b"content-length"] == b"16"
    assert headers[b"cache-control"] == b"public, max-age=10"
    assert headers[b"etag"].startswith(b'"') and b"last-modified" in headers
    assert [k for k, _v in start["headers"]][:2] == [b"content-type", b"cache-control"]


def test_the_same_version_and_variant_reuse_the_messages(tmp_path: Path) -> None:
    ready, page = _ready(), tmp_path / "index.html"
    page.write_bytes(b"one")
    first = ready.get(str(page), page.stat(), HEADERS, 10)
    assert ready.get(str(page), page.stat(), HEADERS, 10) is first


def test_another_variant_rebuilds_the_headers(tmp_path: Path) -> None:
    ready, page = _ready(), tmp_path / "index.html"
    page.write_bytes(b"one")
    ready.get(str(page), page.stat(), HEADERS, 10)
    later = [("content-type", "text/html"), ("cache-control", "public, max-age=9")]
    start, _body, _size = ready.get(str(page), page.stat(), later, 9)
    assert _headers(start)[b"cache-control"] == b"public, max-age=9"


def test_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    ready, page = _ready(), tmp_path / "index.html"
    page.write_bytes(b"one")
    old = ready.get(str(page), page.stat(), HEADERS, 10)
    new = tmp_path / "new"
    new.write_bytes(b"second")
    os.replace(new, page)  # as the cache writes: a new inode
    start, body, size = ready.get(str(page), page.stat(), HEADERS, 10)
    assert body is not None and body["body"] == b"second" and size == 6
    assert _headers(start)[b"etag"] != _headers(old[0])[b"etag"]


def test_a_large_file_gets_headers_only_until_it_changes(tmp_path: Path) -> None:
    ready, big = _ready(), tmp_path / "big.tar.gz"
    big.write_bytes(b"x" * (SMALL_FILE + 1))
    start, body, size = ready.get(str(big), big.stat(), HEADERS, None)
    assert body is None and size == SMALL_FILE + 1
    assert _headers(start)[b"content-length"] == str(SMALL_FILE + 1).encode()
    assert ready.get(str(big), big.stat(), HEADERS, None)[0] is start
    big.write_bytes(b"y" * (SMALL_FILE + 2))
    assert ready.get(str(big), big.stat(), HEADERS, None)[2] == SMALL_FILE + 2


def test_a_file_removed_since_its_stat_raises_before_anything_is_sent(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_bytes(b"one")
    st = page.stat()
    page.unlink()
    with pytest.raises(FileNotFoundError):
        _ready().get(str(page), st, HEADERS, 10)


@pytest.mark.parametrize("size", [0, 1, 70_000, SMALL_FILE])
def test_small_files_are_read_whole_with_the_stat_of_the_version_read(
    tmp_path: Path, size: int
) -> None:
    path = tmp_path / "f.whl"
    data = os.urandom(size)
    path.write_bytes(data)
    before = path.stat()
    # Replaced by rename since the caller's stat (as a revalidated page is): the bytes
    # and validators describe the new version, never the old stat.
    new = tmp_path / "new"
    new.write_bytes(data[::-1] + b"x")
    os.replace(new, path)
    got, validators = SmallFiles().get(str(path), before)
    assert got == data[::-1] + b"x"
    now = path.stat()
    assert validators == SmallFiles().get(str(path), now)[1]
