import pytest

from eggproxy.errors import BadRequest, InvalidName, NotFound
from eggproxy.routes import Route, choose_format, route

P = "/simple/"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/simple/", Route("root")),
        ("/simple", Route("redirect", location="/simple/")),
        ("/simple/demo-pkg/", Route("project", project="demo-pkg")),
        ("/simple/demo-pkg", Route("redirect", project="demo-pkg", location="/simple/demo-pkg/")),
        (
            "/simple/Zope.Interface/",
            Route("redirect", project="zope-interface", location="/simple/zope-interface/"),
        ),
        (
            "/simple/demo-pkg/demo_pkg-1.0.tar.gz",
            Route("file", project="demo-pkg", filename="demo_pkg-1.0.tar.gz"),
        ),
        (
            "/simple/Demo_Pkg/demo_pkg-1.0.tar.gz",
            Route("redirect", project="demo-pkg", location="/simple/demo-pkg/demo_pkg-1.0.tar.gz"),
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


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, "html"),
        ("*/*", "html"),
        ("text/html", "html"),
        ("application/vnd.pypi.simple.v1+json", "json"),
        ("application/vnd.pypi.simple.latest+json", "json"),
        (
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
            "text/html;q=0.01",
            "json",
        ),
        ("application/vnd.pypi.simple.v1+json;q=0.1, text/html", "html"),
        ("application/vnd.pypi.simple.v1+json;q=0, text/html", "html"),
        ("image/png", "html"),
    ],
)
def test_choose_format(accept: str | None, fmt: str) -> None:
    assert choose_format(accept)[0] == fmt


def test_content_type_follows_the_choice() -> None:
    assert choose_format("application/vnd.pypi.simple.v1+html")[1] == (
        "application/vnd.pypi.simple.v1+html"
    )
    assert choose_format("application/vnd.pypi.simple.v1+json")[1] == (
        "application/vnd.pypi.simple.v1+json"
    )
