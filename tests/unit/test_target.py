"""Targets: wheel tags and marker values of the machine that will install."""

import pytest

from eggproxy.offline.target import Target, TargetError, expand_platform


def test_manylinux_accepts_older_glibc_and_legacy_aliases() -> None:
    expanded = expand_platform("manylinux_2_28_x86_64")
    assert expanded[0] == "manylinux_2_28_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(expanded)
    assert "manylinux_2_34_x86_64" not in expanded
    assert expand_platform("manylinux2014_aarch64")[0] == "manylinux_2_17_aarch64"
    assert "macosx_10_9_x86_64" in expand_platform("macosx_11_0_x86_64")
    assert expand_platform("win_amd64") == ["win_amd64"]


@pytest.mark.parametrize(
    ("platform", "sys_platform", "machine"),
    [
        ("win_amd64", "win32", "AMD64"),
        ("macosx_14_0_arm64", "darwin", "arm64"),
        ("manylinux_2_28_aarch64", "linux", "aarch64"),
        ("musllinux_1_2_x86_64", "linux", "x86_64"),
        ("linux_x86_64", "linux", "x86_64"),
    ],
)
def test_markers_follow_the_platform(platform: str, sys_platform: str, machine: str) -> None:
    env = Target.build("3.11", [platform]).environment
    assert (env["sys_platform"], env["platform_machine"]) == (sys_platform, machine)
    assert (env["python_version"], env["python_full_version"][:4]) == ("3.11", "3.11")


def test_wheel_rank_prefers_specific_tags() -> None:
    target = Target.build("3.12", ["win_amd64"])
    native = target.wheel_rank("a-1-cp312-cp312-win_amd64.whl")
    abi3 = target.wheel_rank("a-1-cp38-abi3-win_amd64.whl")
    pure = target.wheel_rank("a-1-py3-none-any.whl")
    assert native is not None and abi3 is not None and pure is not None
    assert native < abi3 < pure
    assert target.wheel_rank("a-1-cp312-cp312-manylinux_2_17_x86_64.whl") is None
    assert target.wheel_rank("a-1-cp311-cp311-win_amd64.whl") is None
    assert target.accepts_python(">=3.8") and not target.accepts_python("<3.12")


def test_this_machine_by_default() -> None:
    assert Target.build().wheel_rank("a-1-py3-none-any.whl") is not None


@pytest.mark.parametrize(("version", "platforms"), [("3", []), ("three", []), (None, ["amiga"])])
def test_bad_targets_are_refused(version: str | None, platforms: list[str]) -> None:
    with pytest.raises(TargetError):
        Target.build(version, platforms)
