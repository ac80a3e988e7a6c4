import pytest

from eggproxy.errors import BadRequest, InvalidName, NotFound
from eggproxy.names import NormalizedName
from eggproxy.routes import FileRoute, ProjectRoute, Redirect, RootRoute, Route, route

P = "/simple/"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/simple/", RootRoute()),
        ("/simple", Redirect("/simple/")),
        ("/simple/demo-pkg/", ProjectRoute(NormalizedName("demo-pkg"))),
        ("/simple/demo-pkg", Redirect("/simple/demo-pkg/")),
        (
            "/simple/Zope.Interface/",
            Redirect("/simple/zope-interface/"),
        ),
        (
            "/simple/demo-pkg/demo_pkg-1.0.tar.gz",
            FileRoute(NormalizedName("demo-pkg"), "demo_pkg-1.0.tar.gz"),
        ),
        (
            "/simple/Demo_Pkg/demo_pkg-1.0.tar.gz",
            Redirect("/simple/demo-pkg/demo_pkg-1.0.tar.gz"),
        ),
    ],
)
def test_routes(path: str, expected: Route) -> None:
    assert route(path, P) == expected


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/simple/../etc/passwd", BadRequest),
        ("/simple/%2e%2e/%2e%2e/etc/passwd", BadRequest),
        ("/simple/demo-pkg/..%2f..%2fetc%2fpasswd", BadRequest),
        ("/simple/%ff/", BadRequest),
        ("/simple/demo-pkg/%00.whl", BadRequest),
        ("/simple/demo-pkg/.state.json", BadRequest),
        ("/simple/demo-pkg/index.json", InvalidName),
        ("/simple/" + "a" * 300 + "/", InvalidName),
        ("/simple/bad name/", InvalidName),
        ("/simple/a/b/c", NotFound),
        ("/other/", NotFound),
        ("/simple/" + "a" * 2000, BadRequest),
    ],
)
def test_hostile_paths(path: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        route(path, P)
