"""The first-source policy, the allow-list, unsafe merging and PEP 708."""

from dataclasses import dataclass, field

import pytest

from eggproxy.config import SourceConfig, SourceMode
from eggproxy.errors import ProjectNotFound, UpstreamUnavailable
from eggproxy.model import DistFile, ProjectPage
from eggproxy.names import NormalizedName
from eggproxy.sources.aggregate import Aggregator, Entry, merge_allowed
from eggproxy.sources.base import Fetched, FileResponse, RootListing

P = NormalizedName("shared")


@dataclass
class FakeSource:
    name: str
    url: str
    pages: dict[str, ProjectPage] = field(default_factory=dict)
    is_local: bool = False
    down: bool = False
    asked: list[str] = field(default_factory=list)

    def fetch_project(
        self, project: NormalizedName, etag: str | None = None, *, since: str | None = None
    ) -> Fetched[ProjectPage]:
        self.asked.append(project)
        if self.down:
            raise UpstreamUnavailable("down")
        if project not in self.pages:
            raise ProjectNotFound(project)
        return Fetched(url=f"{self.url}{project}/", page=self.pages[project], etag='"e"')

    def fetch_index(self, etag: str | None = None) -> Fetched[RootListing]:
        entries = [(p.name, 7) for p in self.pages.values()]
        return Fetched(url=self.url, page=RootListing(entries))

    def open_file(self, url: str) -> FileResponse:
        raise NotImplementedError


def _page(*filenames: str, **extra: tuple[str, ...]) -> ProjectPage:
    files = tuple(DistFile(f, f"https://x/{f}") for f in filenames)
    return ProjectPage("shared", files, **extra)  # type: ignore[arg-type]


def _agg(*sources: tuple[FakeSource, SourceConfig]) -> Aggregator:
    return Aggregator([Entry(s, c) for s, c in sources])


def test_first_source_wins_and_later_ones_are_not_asked() -> None:
    private = FakeSource("private", "https://private/simple/", {P: _page("shared-1.0.tar.gz")})
    public = FakeSource("public", "https://public/simple/", {P: _page("shared-9.0.tar.gz")})
    agg = _agg((private, SourceConfig("private")), (public, SourceConfig("public")))
    page = agg.fetch_project(P, None).page
    assert page is not None
    assert [f.filename for f in page.files] == ["shared-1.0.tar.gz"]
    assert page.sources == ("private",) and page.files[0].source == "private"
    assert public.asked == []


def test_falls_through_only_on_not_found() -> None:
    private = FakeSource("private", "https://private/simple/")
    public = FakeSource("public", "https://public/simple/", {P: _page("shared-9.0.tar.gz")})
    agg = _agg((private, SourceConfig("private")), (public, SourceConfig("public")))
    assert agg.fetch_project(P, None).page.sources == ("public",)  # type: ignore[union-attr]
    private.down = True  # it might have the project: never fall through past it
    with pytest.raises(UpstreamUnavailable):
        agg.fetch_project(P, None)
    public.pages.clear()
    private.down = False
    with pytest.raises(ProjectNotFound):
        agg.fetch_project(P, None)


def test_allow_list_lets_a_later_source_provide_a_project() -> None:
    private = FakeSource("private", "https://private/simple/", {P: _page("shared-1.0.tar.gz")})
    public = FakeSource("public", "https://public/simple/", {P: _page("shared-9.0.tar.gz")})
    agg = _agg(
        (private, SourceConfig("private")),
        (public, SourceConfig("public", allow=frozenset({P}))),
    )
    assert agg.fetch_project(P, None).page.sources == ("public",)  # type: ignore[union-attr]


def test_unsafe_merge_needs_pep_708_between_remote_sources() -> None:
    private = FakeSource("private", "https://private/simple/", {P: _page("shared-1.0.tar.gz")})
    public = FakeSource(
        "public", "https://public/simple/", {P: _page("shared-1.0.tar.gz", "shared-9.0.tar.gz")}
    )
    agg = _agg(
        (private, SourceConfig("private")),
        (public, SourceConfig("public", mode=SourceMode.UNSAFE_MERGE)),
    )
    page = agg.fetch_project(P, None).page
    assert page is not None and page.sources == ("private",)  # refused: nothing links them
    private.pages[P] = _page("shared-1.0.tar.gz", tracks=("https://public/simple/shared/",))
    page = agg.fetch_project(P, None).page
    assert page is not None and page.sources == ("private", "public")
    assert [(f.filename, f.source) for f in page.files] == [
        ("shared-1.0.tar.gz", "private"),  # the first source wins a clash
        ("shared-9.0.tar.gz", "public"),
    ]


def test_local_folders_may_always_merge() -> None:
    local = FakeSource("local", "file:///srv/eggs/", {P: _page("shared-1.1.tar.gz")}, is_local=True)
    public = FakeSource("public", "https://public/simple/", {P: _page("shared-9.0.tar.gz")})
    agg = _agg(
        (local, SourceConfig("local")),
        (public, SourceConfig("public", mode=SourceMode.UNSAFE_MERGE)),
    )
    assert agg.fetch_project(P, None).page.sources == ("local", "public")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("a_alt", "b_alt", "allowed"),
    [
        (("https://b/simple/shared/",), ("https://a/simple/shared/",), True),
        (("https://b/simple/shared/",), (), False),
        ((), (), False),
    ],
)
def test_alternate_locations_must_agree(
    a_alt: tuple[str, ...], b_alt: tuple[str, ...], allowed: bool
) -> None:
    a = FakeSource("a", "https://a/simple/")
    b = FakeSource("b", "https://b/simple/")
    found = [
        (
            Entry(a, SourceConfig("a")),
            Fetched("https://a/simple/shared/", _page(alternate_locations=a_alt)),
        ),
        (
            Entry(b, SourceConfig("b")),
            Fetched("https://b/simple/shared/", _page(alternate_locations=b_alt)),
        ),
    ]
    assert merge_allowed(found) is allowed


def test_root_page_is_the_union() -> None:
    a = FakeSource("a", "https://a/simple/", {P: _page(), "x": ProjectPage("X")})
    b = FakeSource("b", "https://b/simple/", {P: _page(), "y": ProjectPage("Y")})
    index = _agg((a, SourceConfig("a")), (b, SourceConfig("b"))).fetch_index(None).page
    assert index is not None
    # Listed once each; a serial of one source says nothing of the union.
    assert sorted(index) == [("X", None), ("Y", None), ("shared", None)]
