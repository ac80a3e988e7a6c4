from pathlib import Path

import pytest

from eggproxy.errors import MalformedPage
from eggproxy.parse import index_from_html, index_from_json, project_from_html, project_from_json

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
