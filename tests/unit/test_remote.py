import pytest
import requests

from eggproxy.sources.remote import make_session

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
