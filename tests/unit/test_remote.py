from pathlib import Path
from typing import Any

import pytest
import requests

from eggproxy.sources import remote
from eggproxy.sources.remote import USER_AGENT, _Session, make_session

from .fakeindex import FakeAdapter

Sent = list[tuple[str | None, str | None, dict[str, str]]]

URL = "http://upstream.example.test/simple/demo/"


def test_the_proxy_environment_is_what_requests_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "files.example.test")
    session, plain = make_session(), requests.Session()
    for url in (URL, URL + "again", "http://files.example.test/demo-1.0.tar.gz"):
        for stream in (False, True):
            ours = session.merge_environment_settings(url, {}, stream, None, None)
            assert ours == plain.merge_environment_settings(url, {}, stream, None, None)
    own = {"http": "http://other.example.test:8080"}  # a request's own: left to requests
    ours = session.merge_environment_settings(URL, dict(own), None, None, None)
    assert ours == plain.merge_environment_settings(URL, dict(own), None, None, None)
    assert ours["proxies"]["http"] == own["http"]


def test_the_proxy_environment_is_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    session = make_session()
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.test:3128")
    first = session.merge_environment_settings(URL, {}, False, None, None)
    first["proxies"]["http"] = "changed by requests"  # a copy each time
    monkeypatch.setenv("HTTP_PROXY", "http://later.example.test:3128")
    again = session.merge_environment_settings(URL + "x", {}, False, None, None)
    assert again["proxies"] == {"http": "http://proxy.example.test:3128"}


def _sent(session: requests.Session, adapter: FakeAdapter, url: str, **kwargs: Any) -> Sent:
    """What the adapter was asked: URL, method, headers (Cookie and Authorization included)."""
    adapter.requests.clear()
    if isinstance(session, _Session):
        response = session.plain_get(url, **kwargs)
    else:
        response = session.get(url, allow_redirects=True, **kwargs)
    response.close()
    return [(r.method, r.url, dict(r.headers)) for r in adapter.requests]


@pytest.mark.parametrize(
    "url",
    [
        URL,
        "http://user:secret@upstream.example.test/simple/demo/",  # credentials in the URL
        "http://upstream.example.test:8080/simple/demo/?x=1&y=%41#top",
        "http://[::1]:3141/simple/demo/",
        "http://upstream.example.test/simple/d%zzemo/",  # a bad escape: requests requotes it
        "http://upstream.example.test/simple/démo/",  # not ASCII: requests quotes it
        "http://upstream.example.test/simple/de mo/",
        "http://xn--bcher-kva.example.test/simple/demo/",
        "http://upstream.example.test/simple/a/../demo/./",  # dot segments: removed
    ],
)
@pytest.mark.parametrize("auth", [None, ("reader", "pw")])
def test_the_lean_get_sends_what_requests_sends(
    url: str, auth: tuple[str, str] | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine upstream.example.test login fromnetrc password pw2\n")
    monkeypatch.setenv("NETRC", str(netrc))
    ours, theirs = make_session(), requests.Session()  # requests' own preparation
    theirs.headers["User-Agent"] = USER_AGENT
    adapter, other = FakeAdapter(), FakeAdapter()
    for session, mounted in ((ours, adapter), (theirs, other)):
        session.mount("http://", mounted)
    kwargs: dict[str, Any] = {
        "headers": {"Accept": "application/vnd.pypi.simple.v1+json"},
        "timeout": 5.0,
        "stream": True,
        "auth": auth,
    }
    assert _sent(ours, adapter, url, **kwargs) == _sent(theirs, other, url, **kwargs)
    assert _sent(ours, adapter, url, **kwargs)[0][2]["User-Agent"].startswith("eggproxy/")


def test_the_lean_get_follows_redirects_and_keeps_credentials_at_home() -> None:
    session, adapter = make_session(), FakeAdapter()
    session.mount("http://", adapter)
    adapter.answers[URL] = (301, {"Location": "http://files.example.test/demo/"}, b"")
    adapter.answers["http://files.example.test/demo/"] = (200, {}, b"{}")
    response = session.plain_get(URL, headers={}, timeout=5.0, stream=False, auth=("reader", "pw"))
    assert response.status_code == 200 and response.url == "http://files.example.test/demo/"
    assert [r.status_code for r in response.history] == [301]
    first, second = adapter.requests
    assert "Authorization" in first.headers and "Authorization" not in second.headers


def test_the_lean_get_keeps_cookies_then_leaves_them_to_requests() -> None:
    session, adapter = make_session(), FakeAdapter()
    session.mount("http://", adapter)
    adapter.answers[URL] = (200, {"Set-Cookie": "lb=node2; Path=/"}, b"{}")
    # (The double's responses carry no cookie jar of their own: set it as a server would.)
    session.cookies.set("lb", "node2", domain="upstream.example.test", path="/")
    session.plain_get(URL, headers={}, timeout=5.0, stream=False, auth=None)
    assert adapter.requests[-1].headers.get("Cookie") == "lb=node2"


def test_the_netrc_is_read_once_per_origin_until_its_answer_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine upstream.example.test login fromnetrc password pw2\n")
    monkeypatch.setenv("NETRC", str(netrc))
    now = [100.0]
    session, adapter = _Session(clock=lambda: now[0]), FakeAdapter()
    session.mount("http://", adapter)
    reads: list[str] = []
    real = remote.get_netrc_auth

    def counted(url: str) -> tuple[str, str] | None:
        reads.append(url)
        return real(url)

    monkeypatch.setattr(remote, "get_netrc_auth", counted)
    get = {"headers": {}, "timeout": 5.0, "stream": False, "auth": None}
    for path in ("demo/", "other/", "demo/"):
        session.plain_get(URL.removesuffix("demo/") + path, **get).close()
    assert len(reads) == 1  # one origin, one read
    assert adapter.requests[-1].headers["Authorization"].startswith("Basic ")
    netrc.write_text("machine upstream.example.test login rotated password pw3\n")
    now[0] += remote.NETRC_TTL
    session.plain_get(URL, **get).close()
    assert len(reads) == 2  # the answer expired: the file is read again
    assert adapter.requests[-1].headers["Authorization"] == requests.auth._basic_auth_str(
        "rotated", "pw3"
    )
