"""Headers a cache tier can trust, through ``eggproxy serve`` (issue 12, item 1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import private_upstream
from tests.integration.standalone import CLIENT_TIMEOUT, StandaloneServer, start_serve
from tests.integration.upstream import Upstream

pytestmark = pytest.mark.integration

JSON_V1 = "application/vnd.pypi.simple.v1+json"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"


upstream = pytest.fixture(private_upstream, name="upstream")


@pytest.fixture
def served(upstream: Upstream, tmp_path: Path) -> Iterator[StandaloneServer]:
    config = {"stale_while_revalidate": "600", "negative_ttl": "45"}
    server = start_serve(upstream.url, tmp_path / "cache", index_ttl=300, timeout=5, config=config)
    yield server
    server.stop()
    print(server.log_text()[-5000:])


def get(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers=headers, timeout=CLIENT_TIMEOUT)


def test_files_are_immutable_with_a_strong_etag(served: StandaloneServer) -> None:
    url = f"{served.url}demo-pkg/{WHEEL}"
    get(served.url + "demo-pkg/")
    miss, hit = get(url), get(url)
    assert miss.status_code == hit.status_code == 200
    for response in (miss, hit):
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    etag = hit.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert get(url).headers["etag"] == etag  # stable
    again = get(url, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag


@pytest.mark.parametrize("accept", [JSON_V1, "text/html"])
def test_pages_say_freshness_left_and_the_stale_window(
    served: StandaloneServer, accept: str
) -> None:
    url = served.url + "demo-pkg/"
    page = get(url, Accept=accept)
    assert page.status_code == 200
    assert page.headers["vary"] == "Accept"
    directives = [d.strip() for d in page.headers["cache-control"].split(",")]
    assert directives[0] == "public"
    max_age = int(directives[1].removeprefix("max-age="))
    assert 0 < max_age <= 300
    assert directives[2:] == ["stale-while-revalidate=600", "stale-if-error=86400"]
    etag, modified = page.headers["etag"], page.headers["last-modified"]
    assert get(url, Accept=accept, **{"If-None-Match": etag}).status_code == 304
    assert get(url, Accept=accept, **{"If-Modified-Since": modified}).status_code == 304


def test_an_unknown_project_is_cacheable_for_negative_ttl(served: StandaloneServer) -> None:
    missing = get(served.url + "no-such-project/")
    assert missing.status_code == 404
    assert missing.headers["cache-control"] == "public, max-age=45"


def test_errors_are_not_stored(served: StandaloneServer, upstream: Upstream) -> None:
    refused = requests.post(served.url + "demo-pkg/", timeout=CLIENT_TIMEOUT)
    assert refused.status_code == 405
    assert refused.headers["cache-control"] == "no-store"
    get(served.url + "demo-pkg/")
    upstream.down = True
    failed = get(f"{served.url}demo-pkg/{WHEEL}")
    assert failed.status_code in (502, 504)
    assert failed.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("what", ["page JSON", "page HTML", "small file", "large file"])
def test_a_plain_hit_sends_what_the_general_path_sends(
    served: StandaloneServer, upstream: Upstream, what: str
) -> None:
    # A plain GET is answered from a ready response (standalone/ready.py); one with a
    # conditional header that does not match takes the general path: same answer.
    upstream.add_file("big-pkg", "big_pkg-1.0.tar.gz", 600 * 1024)  # past SMALL_FILE
    paths = {
        "page JSON": ("demo-pkg/", JSON_V1),
        "page HTML": ("demo-pkg/", "text/html"),
        "small file": (f"demo-pkg/{WHEEL}", "*/*"),
        "large file": ("big-pkg/big_pkg-1.0.tar.gz", "*/*"),
    }
    path, accept = paths[what]
    get(served.url + path.split("/")[0] + "/")
    assert get(served.url + path, Accept=accept).status_code == 200  # a miss for files
    plain = get(served.url + path, Accept=accept)
    general = get(served.url + path, Accept=accept, **{"If-None-Match": '"not-it"'})
    assert plain.status_code == general.status_code == 200
    assert plain.content == general.content
    drop = {"date"}  # the second may tick, and max-age with it
    if what.startswith("page"):
        drop.add("cache-control")
        assert (
            plain.headers["cache-control"].split(",")[2:]
            == (general.headers["cache-control"].split(",")[2:])
        )
    assert [(k, v) for k, v in plain.headers.items() if k.lower() not in drop] == [
        (k, v) for k, v in general.headers.items() if k.lower() not in drop
    ]
