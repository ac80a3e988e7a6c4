import pytest

from eggproxy.errors import InvalidName
from eggproxy.names import dist_kind, dist_version, normalize_project, validate_filename


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Zope.Interface", "zope-interface"), ("zope_interface", "zope-interface"), ("a", "a")],
)
def test_normalize(name: str, expected: str) -> None:
    assert normalize_project(name) == expected


@pytest.mark.parametrize("name", ["", "-a", "a-", "a/b", "..", "a\x00", "é", "a" * 201, "a b"])
def test_invalid_project_names(name: str) -> None:
    with pytest.raises(InvalidName):
        normalize_project(name)


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("demo_pkg-1.0-py3-none-any.whl", "wheel"),
        ("demo_pkg-1.0.tar.gz", "sdist"),
        ("demo_pkg-1.0.zip", "sdist"),
        ("egg_only-1.0-py3.11.egg", "egg"),
        ("old-1.0dev-r123.tar.gz", "legacy"),
        ("old-1.0.win32.exe", "legacy"),
        ("index.html", None),
        ("bad.whl", None),
    ],
)
def test_dist_kind(filename: str, kind: str | None) -> None:
    assert dist_kind(filename) == kind


@pytest.mark.parametrize(
    "filename",
    ["../x.whl", "a/b-1.0.tar.gz", ".state.json", "x\x00.whl", "a" * 300 + ".tar.gz", "index.json"],
)
def test_unsafe_filenames(filename: str) -> None:
    with pytest.raises(InvalidName):
        validate_filename(filename)


def test_metadata_filename() -> None:
    assert validate_filename("demo_pkg-1.0-py3-none-any.whl.metadata")


@pytest.mark.parametrize(
    ("filename", "version"),
    [
        ("demo_pkg-1.0-py3-none-any.whl", "1.0"),
        ("demo_pkg-2.0.tar.gz", "2.0"),
        ("egg_only-1.0-py3.11.egg", "1.0"),
        ("old-1.0.win32.exe", None),
    ],
)
def test_dist_version(filename: str, version: str | None) -> None:
    assert dist_version(filename) == version
