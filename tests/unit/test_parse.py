import json
from pathlib import Path

import pytest

from eggproxy.errors import MalformedPage
from eggproxy.parse import (
    index_from_html,
    index_from_json,
    iter_index_html,
    iter_index_json,
    project_from_html,
    project_from_json,
)

DATA = Path(__file__).parent.parent / "data"
BASE = "https://upstream.example.test/simple/demo-pkg/"


def test_json_project_page_keeps_every_attribute() -> None:
    page = project_from_json((DATA / "project.json").read_text(), BASE)
    assert page.name == "Demo.Pkg"
    assert page.last_serial == 4242
    assert page.versions == ("0.9", "1.0")
    assert page.alternate_locations == ("https://other.example.test/simple/demo-pkg/",)
    wheel, sdist = page.files
    assert wheel.url == "https://upstream.example.test/packages/ab/demo_pkg-1.0-py3-none-any.whl"
    assert wheel.hashes == {"sha256": "aaaa"}
    assert wheel.requires_python == ">=3.8"
    assert wheel.core_metadata == {"sha256": "bbbb"}
    assert wheel.size == 1234
    assert wheel.upload_time == "2024-01-01T00:00:00.000000Z"
    assert wheel.yanked is False
    assert sdist.yanked == "broken build"
    # PEP 714: the old key alone still means metadata is available.
    assert sdist.core_metadata is True


def test_html_project_page_keeps_every_attribute() -> None:
    page = project_from_html((DATA / "project.html").read_text(), BASE, "demo-pkg")
    assert page.tracks == ("https://upstream.example.test/simple/demo-pkg/",)
    wheel, sdist, old = page.files
    assert wheel.filename == "demo_pkg-1.0-py3-none-any.whl"
    assert wheel.url == "https://upstream.example.test/packages/ab/demo_pkg-1.0-py3-none-any.whl"
    assert wheel.requires_python == ">=3.8"
    assert wheel.core_metadata == {"sha256": "bbbb"}
    assert sdist.hashes == {"md5": "dddd"}
    assert sdist.yanked == "broken build"
    assert sdist.core_metadata is True
    assert sdist.gpg_sig is False
    assert old.yanked is True
    assert old.url == BASE + "demo_pkg-0.8.zip"


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"meta": {"api-version": "2.0"}, "files": []}',
        '{"meta": {"api-version": "1.0"}, "files": [{"url": "x"}]}',
        '{"meta": {"api-version": "1.0"}, "files": '
        '[{"filename": "a.whl", "url": "a", "size": -1}]}',
    ],
)
def test_malformed_json_is_refused(text: str) -> None:
    with pytest.raises(MalformedPage):
        project_from_json(text, BASE)


@pytest.mark.parametrize(
    "text",
    ["plain text, no tags", '<html><meta name="pypi:repository-version" content="2.0"></html>'],
)
def test_malformed_html_is_refused(text: str) -> None:
    with pytest.raises(MalformedPage):
        project_from_html(text, BASE, "demo-pkg")


def test_root_pages() -> None:
    html = '<html><body><a href="/simple/a/">A</a><a href="/simple/b-c/">b.c</a></body></html>'
    assert index_from_html(html).projects == ("A", "b.c")
    data = '{"meta": {"api-version": "1.0", "_last-serial": 7}, "projects": [{"name": "A"}]}'
    index = index_from_json(data)
    assert index.projects == ("A",)
    assert index.last_serial == 7


def test_an_empty_yanked_reason_still_means_yanked() -> None:
    text = (
        '{"meta": {"api-version": "1.0"}, "files": '
        '[{"filename": "a-1.0.tar.gz", "url": "a-1.0.tar.gz", "hashes": {}, "yanked": ""}]}'
    )
    assert project_from_json(text, BASE).files[0].yanked is True


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 65536])
def test_root_json_streams_names_and_serials(size: int) -> None:
    page = (
        b'{"projects": [{"name": "Zope.Interface", "_last-serial": 12}, {"name": "demo"}],'
        b' "meta": {"api-version": "1.1", "_last-serial": 99}}'
    )
    meta: dict[str, object] = {}
    assert list(iter_index_json(_chunks(page, size), meta)) == [
        ("Zope.Interface", 12),
        ("demo", None),
    ]
    assert meta["_last-serial"] == 99


@pytest.mark.parametrize(
    "page",
    [
        b'{"projects": [{"name": "a"}',  # cut short
        b'{"projects": [{"name": 3}], "meta": {"api-version": "1.0"}}',
        b'{"projects": [], "meta": {"api-version": "2.0"}}',
    ],
)
def test_malformed_root_json(page: bytes) -> None:
    with pytest.raises(MalformedPage):
        list(iter_index_json([page], {}))


@pytest.mark.parametrize("size", [1, 5, 65536])
def test_root_html_streams_names(size: int) -> None:
    page = (
        '<html><head><meta name="pypi:repository-version" content="1.0"></head><body>'
        '<a href="a/">Caf\u00e9</a><br><a href="b/">B&amp;B</a></body></html>'
    ).encode()
    assert list(iter_index_html(_chunks(page, size))) == [("Caf\u00e9", None), ("B&B", None)]


def test_root_html_of_another_major_version_is_refused() -> None:
    page = b'<meta name="pypi:repository-version" content="2.0"><a href="a/">a</a>'
    with pytest.raises(MalformedPage):
        list(iter_index_html([page]))


def test_absolute_urls_as_urljoin_gives_them() -> None:
    from urllib.parse import urldefrag, urljoin

    from eggproxy.parse import _absolute

    base = "https://up.test/simple/demo/"
    for url in (
        "https://files.test/packages/ab/demo-1.0.tar.gz",
        "http://files.test/p/demo-1.0.tar.gz?x=1",
        "https://files.test/a/../demo-1.0.tar.gz",
        "https://files.test/demo-1.0.tar.gz#sha256=ab",
        "../../packages/demo-1.0.tar.gz",
        "demo-1.0.tar.gz",
    ):
        assert _absolute(base, url) == urldefrag(urljoin(base, url))[0]


def test_files_are_marked_with_the_source_that_served_them() -> None:
    page = json.dumps(
        {
            "meta": {"api-version": "1.1"},
            "name": "demo",
            "files": [
                {"filename": "demo-1.0.tar.gz", "url": "demo-1.0.tar.gz", "hashes": {}},
                {"filename": "demo-2.0.tar.gz", "url": "x", "hashes": {}, "_source": "other"},
            ],
        }
    )
    files = project_from_json(page, "https://upstream.example.test/", source="first").files
    assert [f.source for f in files] == ["first", "other"]  # a stored copy's mark is kept
    html = '<a href="demo-1.0.tar.gz">demo-1.0.tar.gz</a>'
    html_files = project_from_html(html, "https://upstream.example.test/", "demo", source="first")
    assert [f.source for f in html_files.files] == ["first"]
    assert project_from_json(page, "https://upstream.example.test/").files[0].source is None
