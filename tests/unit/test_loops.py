from pathlib import Path

import pytest

from eggproxy import loops
from eggproxy.config import Config, SourceConfig
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with
from .test_proxy import INDEX, JSON, PAGE, _page


@pytest.mark.parametrize(
    ("url", "bind", "expected"),
    [
        ("http://127.0.0.1:3141/simple/", "127.0.0.1:3141", True),
        ("http://localhost:3141/simple/", "127.0.0.1:3141", True),
        ("http://[::1]:3141/simple/", "127.0.0.1:3141", True),
        ("http://0.0.0.0:3141/simple/", "localhost:3141", True),
        ("http://127.0.1.1:3141/simple/", "[::1]:3141", True),
        ("http://LOCALHOST:3141/simple/", "0.0.0.0:3141", True),
        ("http://127.0.0.1:3141/simple/", "[::]:3141", True),
        ("http://localhost:80/simple/", "0.0.0.0:80", True),
        ("http://localhost/simple/", "0.0.0.0:80", True),  # the scheme's default port
        ("https://localhost/simple/", "0.0.0.0:443", True),
        ("http://127.0.0.1:3142/simple/", "127.0.0.1:3141", False),  # another port
        ("https://index.example.test/simple/", "0.0.0.0:443", False),  # another host
        ("http://localhost:3141/simple/", "192.0.2.7:3141", False),  # bound elsewhere
        ("http://192.0.2.7:3141/simple/", "192.0.2.7:3141", True),
        ("http://192.0.2.7:3141/simple/", "0.0.0.0:3141", False),  # not one of ours
    ],
)
def test_points_at(url: str, bind: str, expected: bool) -> None:
    assert loops.points_at(url, bind) is expected


def test_self_source_names_the_source_and_says_how_to_set_index(tmp_path: Path) -> None:
    config = Config(cache_dir=tmp_path, index="http://localhost:3141/simple/")
    itself = loops.self_source(config)
    assert itself is not None
    message = loops.self_source_message(config, itself)
    assert "\n" not in message
    assert "index http://localhost:3141/simple/ is this eggproxy (bind 127.0.0.1:3141)" in message
    assert "set index = " in message
    other = Config(cache_dir=tmp_path, index="https://index.example.test/simple/")
    assert loops.self_source(other) is None


def test_any_source_counts(tmp_path: Path) -> None:
    sources = (
        SourceConfig("public", url="https://index.example.test/simple/"),
        SourceConfig("mine", url="http://127.0.0.1:3141/simple/"),
    )
    config = Config(cache_dir=tmp_path, index=INDEX, sources=sources)
    itself = loops.self_source(config)
    assert itself is not None and itself.name == "mine"
    assert "[source:mine]" in loops.self_source_message(config, itself)


def test_via_chain_and_loops() -> None:
    me = "eggproxy-aaaaaaaaaaaa"
    assert loops.outgoing_via(me) == f"1.1 {me}"
    chain = loops.context_for("1.1 eggproxy-bbbbbbbbbbbb").run(loops.outgoing_via, me)
    assert chain == f"1.1 eggproxy-bbbbbbbbbbbb, 1.1 {me}"
    assert loops.is_loop(chain, me)
    assert loops.is_loop(f"1.0 squid, 1.1 {me} (eggproxy)", me)
    assert not loops.is_loop("1.1 eggproxy-bbbbbbbbbbbb, 1.1 varnish", me)
    assert not loops.is_loop(None, me)


def test_pseudonym_is_per_cache(tmp_path: Path) -> None:
    one = loops.pseudonym(Config(cache_dir=tmp_path / "a", index=INDEX))
    assert one == loops.pseudonym(Config(cache_dir=tmp_path / "a", index=INDEX, workers=4))
    assert one != loops.pseudonym(Config(cache_dir=tmp_path / "b", index=INDEX))
    assert str(tmp_path) not in one


def test_upstream_requests_carry_via(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    adapter.answers[PAGE] = (200, JSON, _page())
    proxy = Proxy(Config(cache_dir=tmp_path, index=INDEX), session_with(adapter))
    proxy.page(NormalizedName("demo-pkg"), "json")
    assert adapter.requests[-1].headers["Via"] == f"1.1 {proxy.name}"
    assert proxy.is_loop(f"1.1 {proxy.name}")
    assert not proxy.is_loop("1.1 eggproxy-000000000000")
