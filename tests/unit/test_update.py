import os
from pathlib import Path

import pytest

from eggproxy.config import Config
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy
from eggproxy.update import update

from .fakeindex import FakeAdapter, session_with
from .test_proxy import INDEX, JSON, PAGE, Clock, _page


def test_update_refreshes_due_pages(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    clock = Clock()
    adapter.answers[PAGE] = (200, JSON, _page())
    adapter.answers[INDEX + "other/"] = (200, JSON, _page())
    adapter.answers[INDEX + "gone/"] = (200, JSON, _page())
    adapter.answers[INDEX + "broken/"] = (200, JSON, _page())
    proxy = Proxy(
        Config(cache_dir=tmp_path, index=INDEX, update_interval=1),
        session=session_with(adapter),
        clock=clock,
    )
    for name in ("demo-pkg", "other", "gone", "broken"):
        proxy.page(NormalizedName(name), "json")
    clock.now += 3601
    adapter.answers[PAGE] = (304, {}, b"")
    adapter.answers[INDEX + "other/"] = (200, JSON, _page(serial=11))
    adapter.answers[INDEX + "gone/"] = (404, {}, b"")
    adapter.answers[INDEX + "broken/"] = (503, {}, b"")
    summary = update(proxy)
    assert (summary.checked, summary.changed, summary.unchanged, summary.failed) == (4, 1, 1, 1)
    assert summary.gone == ["gone"]
    assert summary.line() == (
        "checked 4 of 4 cached pages: changed 1, unchanged 1, failed 1; gone upstream: gone"
    )
    # Refreshed pages are not due again; failed and gone ones still are.
    assert update(proxy).checked == 2


class Recorder:
    def __init__(self) -> None:
        self.total: int | None = None
        self.pages: list[tuple[str, str]] = []

    def start(self, total: int) -> None:
        self.total = total

    def done(self, page: str, outcome: str) -> None:
        self.pages.append((page, outcome))


def test_same_bytes_without_etag_are_unchanged_and_not_rewritten(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    clock = Clock()
    no_etag = {"Content-Type": JSON["Content-Type"]}
    adapter.answers[PAGE] = (200, no_etag, _page())
    proxy = Proxy(Config(cache_dir=tmp_path, index=INDEX), session_with(adapter), clock=clock)
    proxy.page(NormalizedName("demo-pkg"), "json")
    page = tmp_path / "demo-pkg" / "index.json"
    inode = page.stat().st_ino
    clock.now += 7200
    recorder = Recorder()
    summary = update(proxy, max_age_seconds=0, progress=recorder)
    assert (summary.changed, summary.unchanged, summary.cached) == (0, 1, 1)
    assert recorder.total == 1 and recorder.pages == [("demo-pkg", "unchanged")]
    # Not rewritten (same file), but marked fresh as a 304 would.
    assert page.stat().st_ino == inode
    assert page.stat().st_mtime == pytest.approx(clock.now)
    # New bytes are a change.
    adapter.answers[PAGE] = (200, no_etag, _page(serial=11))
    assert update(proxy, max_age_seconds=0).changed == 1
    assert page.stat().st_ino != inode


def test_negative_max_age_is_refused(tmp_path: Path) -> None:
    proxy = Proxy(Config(cache_dir=tmp_path, index=INDEX), session_with(FakeAdapter()))
    with pytest.raises(ValueError):
        update(proxy, max_age_seconds=-1)
    assert not os.listdir(tmp_path)
