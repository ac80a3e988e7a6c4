import json
import os
from pathlib import Path

import pytest

from eggproxy.config import Config
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy
from eggproxy.update import update

from .fakeindex import FakeAdapter, session_with
from .test_proxy import INDEX, JSON, PAGE, Clock, P, _page


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
    summary = update(proxy, sleep=lambda seconds: None)
    assert (summary.checked, summary.changed, summary.unchanged, summary.failed) == (4, 1, 1, 1)
    assert summary.gone == ["gone"]
    assert summary.line() == (
        "checked 4 of 4 cached pages: changed 1, unchanged 1, failed 1; gone upstream: gone"
    )
    # Refreshed pages are not due again; failed and gone ones still are.
    assert update(proxy, sleep=lambda seconds: None).checked == 2
    assert adapter.calls[INDEX + "broken/"] == 1 + 3 * 2  # two retries on a 503, twice


def _root(serials: dict[str, int]) -> bytes:
    projects = [{"name": name, "_last-serial": serial} for name, serial in serials.items()]
    return json.dumps({"meta": {"api-version": "1.1"}, "projects": projects}).encode()


def test_update_uses_the_root_serials(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    clock = Clock()
    names = ("demo-pkg", "other", "third", "unlisted")
    for name in names:
        adapter.answers[INDEX + name + "/"] = (200, JSON, _page(serial=10))
    proxy = Proxy(
        Config(cache_dir=tmp_path, index=INDEX, update_interval=1, update_via_root="yes"),
        session=session_with(adapter),
        clock=clock,
    )
    for name in names:
        proxy.page(NormalizedName(name), "json")
    adapter.answers[INDEX] = (200, JSON, _root({"demo-pkg": 10, "other": 11, "third": 10}))
    adapter.answers[INDEX + "other/"] = (200, JSON, _page(serial=11))
    adapter.calls.clear()
    clock.now += 3601
    summary = update(proxy, sleep=lambda seconds: None)
    # One root request; only the changed project and the one missing from the root fetched.
    assert adapter.calls[INDEX] == 1
    assert {url for url in adapter.calls if url != INDEX} == {INDEX + "other/", INDEX + "unlisted/"}
    assert (summary.checked, summary.changed, summary.unchanged) == (4, 1, 3)
    # The unchanged pages count as revalidated: nothing is due any more.
    assert proxy.due(3600) == []
    assert proxy.page(NormalizedName("demo-pkg"), "json").outcome == "hit"


def test_update_without_serials_checks_each_page(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    clock = Clock()
    adapter.answers[PAGE] = (200, JSON, _page())
    root = {"meta": {"api-version": "1.0"}, "projects": [{"name": "demo-pkg"}]}
    adapter.answers[INDEX] = (200, JSON, json.dumps(root).encode())
    proxy = Proxy(
        Config(cache_dir=tmp_path, index=INDEX, update_interval=1, update_via_root="yes"),
        session=session_with(adapter),
        clock=clock,
    )
    proxy.page(P, "json")
    clock.now += 3601
    adapter.calls.clear()
    assert update(proxy, sleep=lambda seconds: None).checked == 1
    assert adapter.calls[PAGE] == 1


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
