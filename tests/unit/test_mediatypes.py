import pytest

from eggproxy.mediatypes import choose_format, is_json_content_type


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


@pytest.mark.parametrize(
    ("content_type", "is_json"),
    [
        ("application/vnd.pypi.simple.v1+json", True),
        ("Application/Vnd.PyPI.Simple.V1+JSON; charset=utf-8", True),
        ("application/vnd.pypi.simple.v1+html", False),
        ("text/html", False),
    ],
)
def test_is_json_content_type(content_type: str, is_json: bool) -> None:
    assert is_json_content_type(content_type) is is_json
