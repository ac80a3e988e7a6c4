"""The supply-chain guard through the core: holds end, settings change, records arrive."""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from eggproxy.config import Config
from eggproxy.errors import FileBlocked, FileHeld
from eggproxy.names import NormalizedName
from eggproxy.policy import iso
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with

INDEX = "https://up.test/simple/"
PAGE = INDEX + "demo-pkg/"
P = NormalizedName("demo-pkg")
JSON = {"Content-Type": "application/vnd.pypi.simple.v1+json"}
HTML = {"Content-Type": "text/html"}
OLD, NEW = "demo_pkg-1.0.tar.gz", "demo_pkg-2.0.tar.gz"
DATA = {OLD: b"old sdist" * 50, NEW: b"new sdist" * 50}
START = 1_800_000_000.0
DAY = 86400.0
TTL = 60


class Clock:
    now = START

    def __call__(self) -> float:
        return self.now


def _sha(name: str) -> str:
    return hashlib.sha256(DATA[name]).hexdigest()


def _page(uploads: dict[str, float], provenance: bool = False) -> bytes:
    files = []
    for name, uploaded in uploads.items():
        item: dict[str, Any] = {
            "filename": name,
            "url": f"https://files.test/{name}",
            "hashes": {"sha256": _sha(name)},
            "size": len(DATA[name]),
            "upload-time": iso(uploaded),
        }
        if provenance:
            item["provenance"] = f"https://up.test/integrity/demo-pkg/{name}/provenance"
        files.append(item)
    data = {"meta": {"api-version": "1.1"}, "name": "demo-pkg", "files": files}
    return json.dumps(data).encode()


def _html_page(*names: str) -> bytes:
    links = "".join(f'<a href="https://files.test/{n}#sha256={_sha(n)}">{n}</a>\n' for n in names)
    return f"<!DOCTYPE html><html><body>{links}</body></html>".encode()


@pytest.fixture
def adapter() -> FakeAdapter:
    fake = FakeAdapter()
    # 2.0 was uploaded 7 days ago less 30 seconds: its hold ends within the TTL.
    fake.answers[PAGE] = (200, JSON, _page({OLD: START - 400 * DAY, NEW: START - 7 * DAY + 30}))
    for name, data in DATA.items():
        fake.answers[f"https://files.test/{name}"] = (200, {}, data)
    return fake


def _proxy(tmp_path: Path, adapter: FakeAdapter, clock: Clock, **settings: Any) -> Proxy:
    # Revalidation in the request's own thread, so that its result is seen at once.
    settings.setdefault("stale_while_revalidate", 0)
    config = Config(cache_dir=tmp_path / "cache", index=INDEX, index_ttl=TTL, **settings)
    proxy = Proxy(config, session=session_with(adapter), clock=clock)
    proxy.prepare()
    return proxy


def _listed(proxy: Proxy, fmt: str = "json") -> list[str]:
    page = json.loads(proxy.page(P, "json").path.read_bytes())
    return [f["filename"] for f in page["files"]]


def test_a_held_file_appears_when_its_hold_ends_without_asking_upstream(
    tmp_path: Path, adapter: FakeAdapter
) -> None:
    clock = Clock()
    proxy = _proxy(tmp_path, adapter, clock, min_release_age=7 * DAY)
    assert _listed(proxy) == [OLD]
    with pytest.raises(FileHeld, match=r"held back until .* \(min_release_age\)"):
        proxy.wanted(P, NEW)
    # The page is fresh only until the hold ends (Cache-Control follows).
    assert proxy.fresh_page(P, "json") is not None
    assert proxy.page(P, "json").max_age <= 30
    clock.now += 31
    assert proxy.fresh_page(P, "json") is None
    result = proxy.page(P, "json")
    assert result.outcome == "rendered"
    assert _listed(proxy) == [OLD, NEW]
    assert adapter.calls[PAGE] == 1  # rendered again from the stored copy
    assert proxy.file(P, NEW).read_bytes() == DATA[NEW]
    assert proxy.policy_counts() == {"held": 1}


def test_a_changed_setting_applies_to_cached_pages_at_start(
    tmp_path: Path, adapter: FakeAdapter
) -> None:
    clock = Clock()
    proxy = _proxy(tmp_path, adapter, clock)
    assert _listed(proxy) == [OLD, NEW]
    path = proxy.file(P, NEW)
    held = _proxy(tmp_path, adapter, clock, min_release_age=30 * DAY)
    assert held.fresh_page(P, "json") is not None  # still one stat, already re-rendered
    assert _listed(held) == [OLD]
    assert not path.exists()  # out of the URL space
    exempt = _proxy(
        tmp_path, adapter, clock, min_release_age=30 * DAY, min_release_age_exempt={"demo-pkg"}
    )
    assert _listed(exempt) == [OLD, NEW] and path.exists()
    assert adapter.calls[PAGE] == 1


def test_an_html_upstreams_files_are_held_from_first_sight(
    tmp_path: Path, adapter: FakeAdapter
) -> None:
    clock = Clock()
    adapter.answers[PAGE] = (200, HTML, _html_page(OLD))
    proxy = _proxy(tmp_path, adapter, clock, min_release_age=DAY)
    assert _listed(proxy) == []
    clock.now += DAY / 2
    adapter.answers[PAGE] = (200, HTML, _html_page(OLD, NEW))
    assert _listed(proxy) == []  # refetched: first sight kept, still held
    clock.now += DAY / 2
    assert _listed(proxy) == [OLD]
    with pytest.raises(FileHeld):
        proxy.wanted(P, NEW)


def _record(folder: Path, version: str) -> None:
    data = {
        "id": "MAL-2026-42",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "demo-pkg"}, "versions": [version]}],
    }
    (folder / "MAL-2026-42.json").write_text(json.dumps(data))


def test_a_new_record_blocks_a_cached_file(tmp_path: Path, adapter: FakeAdapter) -> None:
    clock = Clock()
    osv = tmp_path / "osv"
    osv.mkdir()
    proxy = _proxy(tmp_path, adapter, clock, blocklist=osv)
    assert proxy.policy.blocklist is not None
    proxy.policy.blocklist.clock = clock
    path = proxy.file(P, OLD)
    assert proxy.cached_file(P, OLD) is not None
    _record(osv, "1.0")
    clock.now += 10
    assert proxy.check_policy() == 1
    assert not path.exists()
    assert _listed(proxy) == [NEW]
    with pytest.raises(FileBlocked, match="MAL-2026-42") as blocked:
        proxy.cached_file(P, OLD)
    assert blocked.value.status == 403
    with pytest.raises(FileBlocked):
        proxy.wanted(P, OLD + ".metadata")
    assert proxy.policy_counts() == {"blocked": 2}
    assert proxy.audit() == [(P, OLD, "MAL-2026-42")]
    assert proxy.audit(purge=True) == [(P, OLD, "MAL-2026-42")]
    assert proxy.audit() == []
    assert adapter.calls[f"https://files.test/{OLD}"] == 1


def test_deny(tmp_path: Path, adapter: FakeAdapter) -> None:
    proxy = _proxy(tmp_path, adapter, Clock(), deny=(("demo-pkg", "2.0"),))
    assert _listed(proxy) == [OLD]
    with pytest.raises(FileBlocked, match=r"denied by the configuration \(deny\)"):
        proxy.wanted(P, NEW)


def test_provenance_is_served_beside_the_file_and_cached(
    tmp_path: Path, adapter: FakeAdapter
) -> None:
    url = f"https://up.test/integrity/demo-pkg/{OLD}/provenance"
    adapter.answers[PAGE] = (200, JSON, _page({OLD: START - DAY}, provenance=True))
    adapter.answers[url] = (200, {}, b'{"version": 1}')
    proxy = _proxy(tmp_path, adapter, Clock())
    page = json.loads(proxy.page(P, "json").path.read_bytes())
    assert page["files"][0]["provenance"] == OLD + ".provenance"
    html = proxy.page(P, "html").path.read_text()
    assert f'data-provenance="{OLD}.provenance"' in html
    path = proxy.file(P, OLD + ".provenance")
    assert path.read_bytes() == b'{"version": 1}'
    assert proxy.file(P, OLD + ".provenance") == path
    assert adapter.calls[url] == 1


def test_a_page_stale_for_its_age_is_revalidated_not_just_rendered(
    tmp_path: Path, adapter: FakeAdapter
) -> None:
    clock = Clock()
    proxy = _proxy(tmp_path, adapter, clock, min_release_age=7 * DAY)
    proxy.page(P, "json")
    for name in ("index.json", "index.html"):  # as if fetched two TTLs ago
        os.utime(tmp_path / "cache" / "demo-pkg" / name, (START - 2 * TTL, START - 2 * TTL))
    assert proxy.page(P, "json").outcome in ("miss", "revalidated")
    assert adapter.calls[PAGE] == 2
