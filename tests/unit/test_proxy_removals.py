"""Files removed upstream, PEP 792 quarantine and projects gone upstream (issue 10)."""

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from eggproxy.config import Config
from eggproxy.errors import FileNotListed, FileWithheld, ProjectNotFound
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with

INDEX = "https://up.test/simple/"
PAGE = INDEX + "demo-pkg/"
P = NormalizedName("demo-pkg")
JSON = {"Content-Type": "application/vnd.pypi.simple.v1+json"}
OLD, NEW = "demo_pkg-1.0.tar.gz", "demo_pkg-2.0.tar.gz"
DATA = {OLD: b"old sdist" * 50, NEW: b"new sdist" * 50}


def _page(*names: str, status: dict[str, str] | None = None) -> bytes:
    data: dict[str, Any] = {
        "meta": {"api-version": "1.4"},
        "name": "demo-pkg",
        "files": [
            {
                "filename": name,
                "url": f"https://files.test/{name}",
                "hashes": {"sha256": hashlib.sha256(DATA[name]).hexdigest()},
                "size": len(DATA[name]),
            }
            for name in names
        ],
    }
    if status is not None:
        data["project-status"] = status
    return json.dumps(data).encode()


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _proxy(tmp_path: Path, adapter: FakeAdapter, clock: Clock, **settings: Any) -> Proxy:
    # Revalidation in the request's own thread: what it changes is seen at once.
    settings.setdefault("stale_while_revalidate", 0)
    config = Config(cache_dir=tmp_path / "cache", index=INDEX, index_ttl=60, **settings)
    proxy = Proxy(config, session=session_with(adapter), clock=clock)
    proxy.prepare()
    return proxy


@pytest.fixture
def adapter() -> FakeAdapter:
    fake = FakeAdapter()
    fake.answers[PAGE] = (200, JSON, _page(OLD, NEW))
    for name, data in DATA.items():
        fake.answers[f"https://files.test/{name}"] = (200, {}, data)
    return fake


def _listed(proxy: Proxy) -> list[str]:
    page = json.loads(proxy.page(P, "json").path.read_bytes())
    return [f["filename"] for f in page["files"]]


def test_a_file_removed_upstream_is_withheld(tmp_path: Path, adapter: FakeAdapter) -> None:
    clock = Clock()
    proxy = _proxy(tmp_path, adapter, clock)
    old = proxy.file(P, OLD)
    adapter.answers[PAGE] = (200, JSON, _page(NEW))
    clock.now += 61
    assert _listed(proxy) == [NEW]
    assert not old.exists()  # out of the URL space: no static server serves it
    assert proxy.cached_file(P, OLD) is None
    with pytest.raises(FileWithheld, match="removed from the upstream index"):
        proxy.wanted(P, OLD)
    assert adapter.calls[f"https://files.test/{OLD}"] == 1  # never fetched again
    # The stored copy remembers it while it is cached, through later refreshes.
    clock.now += 61
    assert _listed(proxy) == [NEW]
    with pytest.raises(FileWithheld):
        proxy.wanted(P, OLD)


def test_serve_removed_keeps_old_pins(tmp_path: Path, adapter: FakeAdapter) -> None:
    clock = Clock()
    proxy = _proxy(tmp_path, adapter, clock, serve_removed=True)
    old = proxy.file(P, OLD)
    adapter.answers[PAGE] = (200, JSON, _page(NEW))
    clock.now += 61
    assert _listed(proxy) == [NEW, OLD]
    assert old.exists()
    assert proxy.file(P, OLD) == old


def test_an_uncached_removed_file_is_simply_not_listed(
    tmp_path: Path, adapter: FakeAdapter
) -> None:
    clock = Clock()
    proxy = _proxy(tmp_path, adapter, clock)
    proxy.page(P, "json")
    adapter.answers[PAGE] = (200, JSON, _page(NEW))
    clock.now += 61
    assert _listed(proxy) == [NEW]
    with pytest.raises(FileNotListed):
        proxy.wanted(P, OLD)


def test_quarantine_withholds_every_file_and_lifting_it_restores_them(
    tmp_path: Path, adapter: FakeAdapter
) -> None:
    clock = Clock()
    proxy = _proxy(tmp_path, adapter, clock)
    path = proxy.file(P, OLD)
    status = {"status": "quarantined", "reason": "malware"}
    adapter.answers[PAGE] = (200, JSON, _page(status=status))
    clock.now += 61
    page = json.loads(proxy.page(P, "json").path.read_bytes())
    assert page["files"] == [] and page["project-status"] == status
    html = proxy.page(P, "html").path.read_text()
    assert '<meta name="pypi:project-status" content="quarantined">' in html
    assert not path.exists()
    with pytest.raises(FileWithheld, match=r"quarantined upstream .*: malware"):
        proxy.wanted(P, OLD)
    adapter.answers[PAGE] = (200, JSON, _page(OLD, NEW, status={"status": "archived"}))
    clock.now += 61
    assert _listed(proxy) == [OLD, NEW]
    assert path.exists()  # offered again, verified bytes kept


def test_a_project_gone_upstream_is_served_then_removed_after_the_grace(
    tmp_path: Path, adapter: FakeAdapter
) -> None:
    clock = Clock()
    proxy = _proxy(tmp_path, adapter, clock, gone_grace=3600)
    proxy.file(P, OLD)
    adapter.answers[PAGE] = (404, {}, b"")
    clock.now += 61
    result = proxy.page(P, "json")
    assert result.outcome == "stale" and "not found upstream" in (result.warning or "")
    with pytest.raises(ProjectNotFound):
        proxy.refresh(P)  # eggproxy update reports it
    clock.now += 3600
    with pytest.raises(ProjectNotFound):
        proxy.page(P, "json")
    assert proxy.due(0) == []  # no longer a cached project
    assert proxy.cached_file(P, OLD) is None
