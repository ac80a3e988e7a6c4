"""The core purges the tiers in front only when it rewrites a page (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

from eggproxy.config import Config
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with

INDEX = "https://up.test/simple/"
TIER = "http://tier.test:6081"
PAGE = INDEX + "demo-pkg/"
P = NormalizedName("demo-pkg")
JSON = {"Content-Type": "application/vnd.pypi.simple.v1+json"}


def _page(*files: str) -> bytes:
    entries = [{"filename": f, "url": f"https://files.test/{f}", "hashes": {}} for f in files]
    return json.dumps(
        {"meta": {"api-version": "1.1"}, "name": "demo-pkg", "files": entries}
    ).encode()


def purges(adapter: FakeAdapter) -> list[str]:
    return [str(r.url) for r in adapter.requests if r.method == "PURGE"]


def test_a_changed_page_is_purged_an_unchanged_one_not(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    adapter.answers[PAGE] = (200, JSON, _page("demo_pkg-1.0.tar.gz"))
    adapter.answers[TIER + "/simple/demo-pkg/"] = (200, {}, b"purged")
    config = Config(cache_dir=tmp_path / "cache", index=INDEX, purge_urls=(TIER,))
    proxy = Proxy(config, session=session_with(adapter))
    proxy.prepare()
    proxy.page(P, "json")
    assert purges(adapter) == [TIER + "/simple/demo-pkg/"]
    assert proxy.refresh(P) is False  # the same bytes again: nothing to purge
    assert len(purges(adapter)) == 1
    adapter.answers[PAGE] = (200, JSON, _page("demo_pkg-1.0.tar.gz", "demo_pkg-2.0.tar.gz"))
    assert proxy.refresh(P) is True
    assert len(purges(adapter)) == 2


def test_a_tier_that_fails_does_not_fail_the_page(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    adapter.answers[PAGE] = (200, JSON, _page("demo_pkg-1.0.tar.gz"))
    adapter.answers[TIER + "/simple/demo-pkg/"] = (503, {}, b"down")
    config = Config(cache_dir=tmp_path / "cache", index=INDEX, purge_urls=(TIER,))
    proxy = Proxy(config, session=session_with(adapter))
    proxy.prepare()
    assert proxy.page(P, "json").outcome == "miss"
    assert len(purges(adapter)) == 1
