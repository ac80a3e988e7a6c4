"""Requirements files: what ``eggproxy prefetch -r`` reads and what it refuses."""

from pathlib import Path

import pytest

from eggproxy.offline.requirements import RequirementsFileError, read_requirements


def _names(path: Path) -> list[str]:
    return [str(line.requirement) for line in read_requirements(path)]


def test_comments_blank_lines_markers_and_continuations(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# a comment\n\ndemo-pkg>=1.0  # trailing comment\n"
        "dep-pkg[extra] ; python_version >= '3.8'\n"
        "long-name \\\n  ==2.0\n"
    )
    assert _names(req) == [
        "demo-pkg>=1.0",
        'dep-pkg[extra]; python_version >= "3.8"',
        "long-name==2.0",
    ]


def test_includes_are_followed_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.txt").write_text("dep-pkg\n-r ../main.txt\n")
    main = tmp_path / "main.txt"
    main.write_text("demo-pkg\n-r sub/base.txt\n--requirement=sub/other.txt\n")
    (tmp_path / "sub" / "other.txt").write_text("other\n")
    lines = read_requirements(main)
    # The cycle back to main.txt is followed once, as pip does.
    assert [str(line.requirement) for line in lines] == ["demo-pkg", "dep-pkg", "other"]
    assert lines[1].origin == f"{tmp_path / 'sub' / 'base.txt'}:1"


def test_hash_options_are_left_to_the_installing_pip(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text("demo-pkg==1.0 \\\n    --hash=sha256:abcd \\\n    --hash=sha256:ef01\n")
    assert _names(req) == ["demo-pkg==1.0"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--index-url https://example.invalid/simple/", "option --index-url is not supported"),
        ("-e .", "option -e is not supported"),
        ("-c constraints.txt", "option -c is not supported"),
        ("demo-pkg >= = 1", "invalid requirement"),
        ("demo-pkg @ https://example.invalid/demo.whl", "URL requirement"),
    ],
)
def test_refused_lines_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    req = tmp_path / "r.txt"
    req.write_text(f"dep-pkg\n{line}\n")
    with pytest.raises(RequirementsFileError) as info:
        read_requirements(req)
    assert str(info.value).startswith(f"{req}:2: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RequirementsFileError, match="cannot read"):
        read_requirements(tmp_path / "absent.txt")
