"""The downloader's streaming side: the whole file when it is done in time, else a stream."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from eggproxy import download
from eggproxy.cache import Cache
from eggproxy.download import Downloader, Wanted, _Digest
from eggproxy.errors import IntegrityError, UpstreamError, UpstreamUnavailable

CONTENT = bytes(range(256)) * 4096  # 1 MiB


class Response:
    """A file response whose body can be held back after its first two chunks.

    (A follower holds the last chunk it read back until more comes: two let one out.)
    """

    def __init__(self, body: bytes, release: threading.Event | None = None) -> None:
        self.body = body
        self.release = release
        self.headers = {"Content-Length": str(len(body))}

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for n, start in enumerate(range(0, len(self.body), chunk_size)):
            yield self.body[start : start + chunk_size]
            if n == 1 and self.release is not None:
                assert self.release.wait(30), "the test never released the download"

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def wanted(tmp_path: Path, response: Response, sha256: str | None = None) -> Wanted:
    digest = sha256 or hashlib.sha256(CONTENT).hexdigest()
    target = tmp_path / "demo" / "demo-1.0.tar.gz"
    return Wanted("http://upstream/demo-1.0.tar.gz", target, {"sha256": digest}, lambda _: response)


@pytest.fixture
def downloader(tmp_path: Path) -> Iterator[Downloader]:
    loader = Downloader(Cache(tmp_path))
    yield loader
    loader.shutdown()


def test_a_download_done_within_the_wait_is_handed_over_whole(
    downloader: Downloader, tmp_path: Path
) -> None:
    want = wanted(tmp_path, Response(CONTENT))
    size, stream = downloader.stream(want)
    assert size == len(CONTENT)
    # The verified file is in place, for the front end to send from disk.
    assert stream is None or stream.whole()
    assert want.target.read_bytes() == CONTENT


def test_a_download_still_running_after_the_wait_is_streamed(
    downloader: Downloader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "WHOLE_WAIT", 0.01)
    release = threading.Event()
    want = wanted(tmp_path, Response(CONTENT, release))
    size, stream = downloader.stream(want)
    assert size == len(CONTENT) and stream is not None
    assert not stream.whole()
    first = next(stream)  # bytes before the download has ended
    assert first and not want.target.exists()
    release.set()
    assert first + b"".join(stream) == CONTENT
    assert want.target.read_bytes() == CONTENT


def test_a_failure_within_the_wait_is_raised_before_any_byte(
    downloader: Downloader, tmp_path: Path
) -> None:
    want = wanted(tmp_path, Response(CONTENT), sha256="0" * 64)
    with pytest.raises(IntegrityError):
        _size, stream = downloader.stream(want)
        assert stream is not None and stream.whole()
    assert not want.target.exists()
    assert not list(want.target.parent.glob(".*.part"))


def test_the_digest_hashed_beside_the_download_is_the_file_s() -> None:
    chunks = [CONTENT[i : i + 4099] for i in range(0, len(CONTENT), 4099)]
    with ThreadPoolExecutor(2) as pool:
        digest = _Digest(hashlib.sha256(), pool)
        for chunk in chunks:
            digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(CONTENT).hexdigest()


def test_a_download_cut_by_a_stopping_worker_is_a_clean_upstream_error() -> None:
    cancelled: Future[Path] = Future()
    cancelled.cancel()
    with pytest.raises(UpstreamUnavailable, match="stopping"):
        download._raise_failure(cancelled)
    interrupted: Future[Path] = Future()
    interrupted.set_exception(RuntimeError("cannot schedule new futures after shutdown"))
    with pytest.raises(UpstreamError, match="interrupted"):  # a 502, not a 500
        download._raise_failure(interrupted)
    failed: Future[Path] = Future()
    failed.set_exception(IntegrityError("demo.whl", "a", "b"))
    with pytest.raises(IntegrityError):  # eggproxy's own errors pass as they are
        download._raise_failure(failed)


class Recording(Response):
    """A response that notes the thread its bytes were read in."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.threads: list[str] = []

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        self.threads.append(threading.current_thread().name)
        yield from super().iter_content(chunk_size)


def small(tmp_path: Path, response: Response, body: bytes, sha256: str | None = None) -> Wanted:
    digest = sha256 or hashlib.sha256(body).hexdigest()
    target = tmp_path / "demo" / "demo-1.0-py3-none-any.whl"
    return Wanted(
        "http://upstream/demo-1.0-py3-none-any.whl",
        target,
        {"sha256": digest},
        lambda _: response,
        size=len(body),
    )


def test_a_small_file_is_fetched_in_the_asking_thread_and_handed_over_whole(
    downloader: Downloader, tmp_path: Path
) -> None:
    body = CONTENT[:4096]
    response = Recording(body)
    want = small(tmp_path, response, body)
    assert want.inline
    # A larger one streams as it arrives; metadata (no size declared) is small by nature.
    assert not dataclasses.replace(want, size=download.INLINE_MAX + 1).inline
    assert dataclasses.replace(want, size=None, small=True).inline
    assert downloader.stream(want) == (len(body), None)
    assert response.threads == [threading.current_thread().name]  # no hand-off to the pool
    assert want.target.read_bytes() == body
    # Not announced (no size file beside it), and no partial file left.
    left = {p.name for p in want.target.parent.iterdir()} - {f".{want.target.name}.lock"}
    assert left == {want.target.name}


def test_a_thread_asking_for_a_small_file_being_fetched_joins_it(
    downloader: Downloader, tmp_path: Path
) -> None:
    body = CONTENT[:4096]
    release = threading.Event()
    response = Response(body * 2, release)  # held after its second chunk
    want = small(tmp_path, response, body * 2)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(downloader.stream, want)
        assert not first.done()
        joined = pool.submit(downloader.stream, want)
        release.set()
        assert first.result(30) == joined.result(30) == (len(body) * 2, None)
    assert want.target.read_bytes() == body * 2


def test_a_small_file_that_fails_raises_in_the_asking_thread(
    downloader: Downloader, tmp_path: Path
) -> None:
    body = CONTENT[:4096]
    want = small(tmp_path, Response(body), body, sha256="0" * 64)
    with pytest.raises(IntegrityError):
        downloader.stream(want)
    assert not want.target.exists()
    assert not list(want.target.parent.glob("*.part")) and not list(
        want.target.parent.glob("*.size")
    )
    assert downloader._inflight == {}  # nothing left for the next request to join


def test_a_small_file_s_unexpected_failure_is_an_upstream_error_for_its_asker_too(
    downloader: Downloader, tmp_path: Path
) -> None:
    body = CONTENT[:4096]
    response = Response(body)
    response.headers = {"Content-Length": "4096, 4096"}  # not a number: ValueError inside
    with pytest.raises(UpstreamError, match="interrupted"):  # a 502, as its followers get
        downloader.stream(small(tmp_path, response, body))
    assert downloader._inflight == {}


def test_small_files_beyond_the_parallel_bound_go_to_the_pool(tmp_path: Path) -> None:
    loader = Downloader(Cache(tmp_path), max_parallel=1)
    try:
        body = CONTENT[:4096]
        release = threading.Event()
        held = small(tmp_path, Response(body * 2, release), body * 2)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(loader.stream, held)  # takes the one inline slot
            other = tmp_path / "other" / "other-1.0-py3-none-any.whl"
            response = Recording(body)
            wanted = dataclasses.replace(
                small(tmp_path, response, body), target=other, opener=lambda _: response
            )
            for _ in range(200):  # until the first holds its slot (bounded)
                if loader._inflight:
                    break
                threading.Event().wait(0.01)
            _size, stream = loader.stream(wanted)
            assert stream is None or stream.whole()
            assert response.threads and response.threads[0].startswith("eggproxy-download")
            release.set()
            assert first.result(30) == (len(body) * 2, None)
    finally:
        loader.shutdown()
