"""The resolver provider over an in-memory index: versions, markers, tags, conflicts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from packaging.requirements import Requirement

from eggproxy.model import DistFile
from eggproxy.names import NormalizedName, split_dist_filename
from eggproxy.offline.resolve import ResolutionFailed, dependencies_of, resolve
from eggproxy.offline.target import Target

LINUX = Target.build("3.12", ["manylinux_2_28_x86_64"])
WINDOWS = Target.build("3.12", ["win_amd64"])
MAC = Target.build("3.12", ["macosx_14_0_arm64"])


class MemoryIndex:
    """Projects as lists of files, and the core metadata of each file."""

    def __init__(self) -> None:
        self.projects: dict[str, list[DistFile]] = {}
        self.metadata_of: dict[str, bytes] = {}
        self.asked: list[str] = []  # files whose metadata was read

    def add(
        self,
        filename: str,
        requires: Sequence[str] = (),
        *,
        metadata_version: str = "2.1",
        dynamic: Sequence[str] = (),
        yanked: bool = False,
        requires_python: str | None = None,
    ) -> None:
        split = split_dist_filename(filename)
        assert split is not None
        name, version = split
        lines = [f"Metadata-Version: {metadata_version}", f"Name: {name}", f"Version: {version}"]
        lines += [f"Dynamic: {field}" for field in dynamic]
        lines += [f"Requires-Dist: {r}" for r in requires]
        self.metadata_of[filename] = "\n".join(lines).encode() + b"\n"
        dist = DistFile(
            filename,
            f"https://files.test/{filename}",
            {"sha256": "0" * 64},
            requires_python=requires_python,
            yanked=yanked,
        )
        self.projects.setdefault(name.replace("_", "-").lower(), []).append(dist)

    def files(self, project: NormalizedName) -> Sequence[DistFile]:
        return self.projects.get(project, [])

    def metadata(self, project: NormalizedName, dist: DistFile) -> bytes:
        self.asked.append(dist.filename)
        return self.metadata_of[dist.filename]


def _resolve(index: MemoryIndex, *lines: str, target: Target = LINUX) -> dict[str, list[str]]:
    resolution = resolve(
        index, target, [(Requirement(line), "requirements.txt:1") for line in lines]
    )
    return {c.name: [f.filename for f in c.files] for c in resolution.chosen}


def test_newest_matching_versions_and_their_dependencies() -> None:
    index = MemoryIndex()
    index.add("app-1.0-py3-none-any.whl", ["lib>=1.0"])
    index.add("app-2.0-py3-none-any.whl", ["lib>=2.0"])
    index.add("lib-1.0-py3-none-any.whl")
    index.add("lib-2.0-py3-none-any.whl")
    index.add("lib-3.0rc1-py3-none-any.whl")  # a pre-release is not taken unasked
    assert _resolve(index, "app") == {
        "app": ["app-2.0-py3-none-any.whl"],
        "lib": ["lib-2.0-py3-none-any.whl"],
    }
    assert _resolve(index, "app<2") == {
        "app": ["app-1.0-py3-none-any.whl"],
        "lib": ["lib-2.0-py3-none-any.whl"],
    }
    assert _resolve(index, "lib>=3.0rc1")["lib"] == ["lib-3.0rc1-py3-none-any.whl"]


def test_backtracks_to_an_older_version_that_fits() -> None:
    index = MemoryIndex()
    index.add("app-1.0-py3-none-any.whl")
    index.add("app-2.0-py3-none-any.whl", ["lib==1.0"])
    index.add("lib-1.0-py3-none-any.whl")
    index.add("lib-2.0-py3-none-any.whl")
    assert _resolve(index, "app", "lib==2.0") == {
        "app": ["app-1.0-py3-none-any.whl"],
        "lib": ["lib-2.0-py3-none-any.whl"],
    }


def test_markers_are_evaluated_for_the_target() -> None:
    index = MemoryIndex()
    index.add(
        "app-1.0-py3-none-any.whl",
        ['winlib; sys_platform == "win32"', 'oldlib; python_version < "3.10"'],
    )
    index.add("winlib-1.0-py3-none-any.whl")
    index.add("oldlib-1.0-py3-none-any.whl")
    assert set(_resolve(index, "app", target=LINUX)) == {"app"}
    assert set(_resolve(index, "app", target=WINDOWS)) == {"app", "winlib"}
    old = Target.build("3.9", ["manylinux_2_28_x86_64"])
    assert set(_resolve(index, "app", target=old)) == {"app", "oldlib"}
    # A top-level requirement whose marker excludes the target is skipped.
    assert _resolve(index, 'winlib; sys_platform == "win32"', target=LINUX) == {}


def test_wheels_chosen_by_the_targets_tags_else_the_sdist() -> None:
    index = MemoryIndex()
    for name in (
        "native-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "native-1.0-cp312-cp312-win_amd64.whl",
        "native-1.0-cp311-cp311-win_amd64.whl",
        "native-1.0.tar.gz",
    ):
        index.add(name)
    assert _resolve(index, "native", target=LINUX)["native"] == [
        "native-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    ]
    assert _resolve(index, "native", target=WINDOWS)["native"] == [
        "native-1.0-cp312-cp312-win_amd64.whl"
    ]
    assert _resolve(index, "native", target=MAC)["native"] == ["native-1.0.tar.gz"]
    everywhere = Target.build("3.12", ["manylinux_2_28_x86_64"], all_platforms=True)
    assert len(_resolve(index, "native", target=everywhere)["native"]) == 3


def test_metadata_is_read_from_the_best_wheel_only_for_tried_versions() -> None:
    index = MemoryIndex()
    index.add("lib-1.0-py3-none-any.whl")
    index.add("lib-1.0-cp312-cp312-manylinux_2_17_x86_64.whl")
    index.add("lib-2.0-py3-none-any.whl")
    _resolve(index, "lib<2")
    assert index.asked == ["lib-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"]


def test_yanked_files_only_when_pinned() -> None:
    index = MemoryIndex()
    index.add("lib-1.0-py3-none-any.whl")
    index.add("lib-2.0-py3-none-any.whl", yanked=True)
    assert _resolve(index, "lib")["lib"] == ["lib-1.0-py3-none-any.whl"]
    assert _resolve(index, "lib==2.0")["lib"] == ["lib-2.0-py3-none-any.whl"]


def test_requires_python_hides_files_the_target_cannot_run() -> None:
    index = MemoryIndex()
    index.add("lib-1.0-py3-none-any.whl")
    index.add("lib-2.0-py3-none-any.whl", requires_python=">=3.13")
    assert _resolve(index, "lib")["lib"] == ["lib-1.0-py3-none-any.whl"]


def test_extras_pull_in_their_dependencies() -> None:
    index = MemoryIndex()
    index.add("app-1.0-py3-none-any.whl", ["lib", 'extra-lib; extra == "fast"'])
    index.add("lib-1.0-py3-none-any.whl")
    index.add("extra_lib-1.0-py3-none-any.whl")
    assert set(_resolve(index, "app")) == {"app", "lib"}
    assert set(_resolve(index, "app[fast]")) == {"app", "lib", "extra-lib"}


def test_sdist_metadata_is_followed_only_when_static() -> None:
    index = MemoryIndex()
    index.add("static-1.0.tar.gz", ["lib"], metadata_version="2.2")
    index.add("dynamic-1.0.tar.gz", ["lib"], metadata_version="2.2", dynamic=["Requires-Dist"])
    index.add("old-1.0.tar.gz", ["lib"], metadata_version="2.1")
    index.add("lib-1.0-py3-none-any.whl")
    assert set(_resolve(index, "static")) == {"static", "lib"}
    for name in ("dynamic", "old"):
        resolution = resolve(index, LINUX, [(Requirement(name), "r.txt:1")])
        assert [c.name for c in resolution.chosen] == [name]
        assert resolution.warnings == (
            f"{name} 1.0: not resolved further "
            f"({name}-1.0.tar.gz has no static Requires-Dist, PEP 643)",
        )


def test_a_conflict_names_both_requirements() -> None:
    index = MemoryIndex()
    index.add("app-1.0-py3-none-any.whl", ["lib<2"])
    index.add("lib-1.0-py3-none-any.whl")
    index.add("lib-2.0-py3-none-any.whl")
    with pytest.raises(ResolutionFailed) as info:
        _resolve(index, "app", "lib>=2")
    assert str(info.value) == (
        "conflicting requirements on lib: lib>=2 (requirements.txt:1) "
        "and lib<2 (required by app 1.0)"
    )


def test_unknown_projects_and_unmatched_versions() -> None:
    index = MemoryIndex()
    index.add("lib-1.0-py3-none-any.whl")
    with pytest.raises(ResolutionFailed, match=r"^no project nothere on the index: nothere "):
        _resolve(index, "nothere")
    with pytest.raises(ResolutionFailed, match=r"^no version of lib matches lib>=5 "):
        _resolve(index, "lib>=5")


def test_dependencies_of_core_metadata() -> None:
    meta = b"Metadata-Version: 2.1\nName: a\nVersion: 1\nRequires-Dist: b>1\nRequires-Dist: ?\n"
    assert [str(r) for r in dependencies_of(meta, from_sdist=False) or []] == ["b>1"]
    assert dependencies_of(meta, from_sdist=True) is None
