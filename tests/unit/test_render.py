import json
from pathlib import Path

from eggproxy.model import DistFile, IndexPage, ProjectPage, ProjectStatus
from eggproxy.parse import index_from_html, project_from_html, project_from_json
from eggproxy.render import (
    index_html,
    index_json_bytes,
    project_html,
    project_json,
    project_json_bytes,
    project_json_pair,
)

DATA = Path(__file__).parent.parent / "data"
BASE = "https://upstream.example.test/simple/demo-pkg/"
PROXY = "http://proxy.test/simple/demo-pkg/"


def _page() -> ProjectPage:
    return project_from_json((DATA / "project.json").read_text(), BASE)


def test_json_round_trip_with_relative_links() -> None:
    page = _page()
    again = project_from_json(project_json_bytes(page).decode(), PROXY)
    assert again.files[0].url == PROXY + "demo_pkg-1.0-py3-none-any.whl"
    for before, after in zip(page.files, again.files, strict=True):
        assert (before.hashes, before.requires_python, before.yanked) == (
            after.hashes,
            after.requires_python,
            after.yanked,
        )
        assert (before.core_metadata, before.size, before.upload_time) == (
            after.core_metadata,
            after.size,
            after.upload_time,
        )
    assert again.versions == page.versions
    assert again.alternate_locations == page.alternate_locations


def test_upstream_copy_keeps_absolute_urls() -> None:
    page = _page()
    stored = project_from_json(project_json_bytes(page, relative=False).decode(), "ignored:")
    assert [f.url for f in stored.files] == [f.url for f in page.files]


def test_html_round_trip() -> None:
    page = _page()
    again = project_from_html(project_html(page).decode(), PROXY, "demo-pkg")
    wheel, sdist = again.files
    assert wheel.url == PROXY + "demo_pkg-1.0-py3-none-any.whl"
    assert wheel.hashes == {"sha256": "aaaa"}
    assert wheel.requires_python == ">=3.8"
    assert wheel.core_metadata == {"sha256": "bbbb"}
    assert sdist.yanked == "broken build"
    assert sdist.hashes == {"sha256": "cccc"}
    assert again.alternate_locations == page.alternate_locations


def test_html_escapes_attributes() -> None:
    dist = DistFile("a-1.0.tar.gz", "https://x/a-1.0.tar.gz", requires_python='>=3"<x>')
    html = project_html(ProjectPage("a<b>", (dist,))).decode()
    assert 'data-requires-python="&gt;=3&quot;&lt;x&gt;"' in html
    assert "<b>" not in html


def test_both_metadata_names_and_api_version() -> None:
    data = project_json(_page())
    assert data["meta"]["api-version"] == "1.2"  # sizes known, alternate-locations present
    assert data["files"][0]["core-metadata"] == data["files"][0]["dist-info-metadata"]
    without_size = ProjectPage("a", (DistFile("a-1.0.tar.gz", "https://x/a-1.0.tar.gz"),))
    assert project_json(without_size)["meta"]["api-version"] == "1.0"
    # PEP 700 versions are read from file names when the upstream gave none.
    assert project_json(without_size)["versions"] == ["1.0"]


def test_root_page_links_to_normalised_names() -> None:
    index = IndexPage(("Zope.Interface", "demo-pkg"))
    assert 'href="zope-interface/"' in index_html(index).decode()
    assert index_from_html(index_html(index).decode()).projects == index.projects
    assert json.loads(index_json_bytes(index))["projects"] == [
        {"name": "Zope.Interface"},
        {"name": "demo-pkg"},
    ]


def test_root_page_escapes_hostile_names() -> None:
    html = index_html(IndexPage(('x"><script>alert(1)</script>',))).decode()
    assert "<script>" not in html


def test_json_name_is_normalised() -> None:
    page = ProjectPage("Foo.Bar", (DistFile("foo_bar-1.0.tar.gz", "https://x/foo_bar-1.0.tar.gz"),))
    assert project_json(page)["name"] == "foo-bar"


def test_project_status_round_trips_in_both_formats() -> None:
    # PEP 792: a JSON object and two HTML meta tags; api-version 1.4.
    page = ProjectPage(
        name="old",
        files=(DistFile("old-1.0.tar.gz", "https://f.test/old-1.0.tar.gz", size=3),),
        status=ProjectStatus.ARCHIVED,
        status_reason='no longer "maintained"',
    )
    data = json.loads(project_json_bytes(page))
    assert data["meta"]["api-version"] == "1.4"
    assert data["project-status"] == {"status": "archived", "reason": 'no longer "maintained"'}
    again = project_from_json(project_json_bytes(page).decode(), "https://x.test/old/")
    assert (again.status, again.status_reason) == (page.status, page.status_reason)
    html = project_from_html(project_html(page).decode(), "https://x.test/old/", "old")
    assert (html.status, html.status_reason) == (page.status, page.status_reason)


def test_unknown_project_status_is_no_marker() -> None:
    text = json.dumps(
        {
            "meta": {"api-version": "1.4"},
            "name": "x",
            "files": [],
            "project-status": {"status": "?"},
        }
    )
    assert project_from_json(text, "https://x.test/x/").status is None


def test_root_page_says_api_version_1_1_like_project_pages() -> None:
    index = IndexPage(projects=("Demo",))
    assert json.loads(index_json_bytes(index))["meta"]["api-version"] == "1.1"
    assert b'name="pypi:repository-version" content="1.1"' in index_html(index)


def _marked_page() -> ProjectPage:
    """Every per-file branch of the renderers: marks, provenance, names that need quoting."""
    odd = DistFile(
        "a+b&c<d>-1.0.tar.gz",
        "https://upstream.example.test/a%2Bb.tar.gz",
        {"sha256": "0" * 64},
        requires_python='>=3.8,<"4"',
        yanked="bad & <worse>",
        core_metadata=True,
        gpg_sig=False,
        size=3,
        provenance="https://upstream.example.test/p",
        removed="2024-01-01T00:00:00Z",
        first_seen="2023-01-01T00:00:00Z",
        source="upstream",
    )
    page = _page()
    return ProjectPage(page.name, (*page.files, odd), page.versions, sources=("upstream",))


def test_json_pair_is_the_served_page_and_the_stored_copy() -> None:
    page = _marked_page()
    served, stored = project_json_pair(page, page)
    assert served == project_json_bytes(page)
    assert stored == project_json_bytes(page, relative=False)
    shown = ProjectPage(page.name, page.files[:1])  # something withheld: two renderings
    assert project_json_pair(shown, page) == (
        project_json_bytes(shown),
        project_json_bytes(page, relative=False),
    )


def test_only_the_stored_copy_keeps_eggproxys_marks() -> None:
    page = _marked_page()
    served, stored = (json.loads(b)["files"][-1] for b in project_json_pair(page, page))
    assert served["url"] == "a%2Bb%26c%3Cd%3E-1.0.tar.gz"
    assert served["provenance"] == "a%2Bb%26c%3Cd%3E-1.0.tar.gz.provenance"
    assert "_first-seen" not in served and "_source" not in served
    assert served["_removed"] == stored["_removed"] == "2024-01-01T00:00:00Z"
    assert stored["url"] == "https://upstream.example.test/a%2Bb.tar.gz"
    assert stored["provenance"] == "https://upstream.example.test/p"
    assert (stored["_first-seen"], stored["_source"]) == ("2023-01-01T00:00:00Z", "upstream")


def test_html_escapes_what_needs_it() -> None:
    html = project_html(_marked_page()).decode()
    assert 'href="a%2Bb%26c%3Cd%3E-1.0.tar.gz#sha256=' in html
    assert 'data-requires-python="&gt;=3.8,&lt;&quot;4&quot;"' in html
    assert 'data-yanked="bad &amp; &lt;worse&gt;"' in html
    assert ">a+b&amp;c&lt;d&gt;-1.0.tar.gz</a>" in html
    again = project_from_html(html, PROXY, "demo-pkg").files[-1]
    assert again.filename == "a+b&c<d>-1.0.tar.gz"
    assert (again.requires_python, again.yanked) == ('>=3.8,<"4"', "bad & <worse>")
