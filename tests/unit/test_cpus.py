from pathlib import Path

import pytest

from eggproxy import cpus
from eggproxy.cpus import available_cpus, quota_cpus


def _tree(root: Path, cgroup: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        path = root / "sys/fs/cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("cgroup", "files", "expected"),
    [
        # cgroup v2: a container sees its own cgroup as the root.
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),
        ("0::/\n", {"cpu.max": "150000 100000\n"}, 2),
        ("0::/\n", {"cpu.max": "50000 100000\n"}, 1),
        # A systemd unit's CPUQuota=, and a tighter one on its slice above it.
        (
            "0::/system.slice/eggproxy.service\n",
            {"system.slice/eggproxy.service/cpu.max": "400000 100000"},
            4,
        ),
        (
            "0::/system.slice/eggproxy.service\n",
            {
                "system.slice/eggproxy.service/cpu.max": "400000 100000",
                "system.slice/cpu.max": "200000 100000",
            },
            2,
        ),
        # cgroup v1: the cpu controller's own hierarchy.
        (
            "4:memory:/x\n2:cpu,cpuacct:/\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "300000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            3,
        ),
        (
            "2:cpu,cpuacct:/\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            None,
        ),
        # Nothing readable or nothing that parses: no quota, never an error.
        ("0::/\n", {}, None),
        ("0::/\n", {"cpu.max": "lots\n"}, None),
        ("garbage\n", {"cpu.max": "100000 100000"}, None),
    ],
)
def test_quota_cpus(
    tmp_path: Path, cgroup: str, files: dict[str, str], expected: int | None
) -> None:
    assert quota_cpus(_tree(tmp_path, cgroup, files)) == expected


def test_no_proc_means_no_quota(tmp_path: Path) -> None:
    assert quota_cpus(tmp_path) is None


def test_available_cpus_is_the_affinity_bounded_by_the_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 64)
    assert available_cpus(_tree(tmp_path / "limited", "0::/\n", {"cpu.max": "100000 100000"})) == 1
    assert available_cpus(_tree(tmp_path / "free", "0::/\n", {"cpu.max": "max 100000"})) == 64
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 2)
    assert available_cpus(_tree(tmp_path / "wide", "0::/\n", {"cpu.max": "800000 100000"})) == 2


def test_affinity_without_sched_getaffinity(monkeypatch: pytest.MonkeyPatch) -> None:
    # macOS and the BSDs have no sched_getaffinity: all of the machine's CPUs.
    monkeypatch.delattr(cpus.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: 6)
    assert cpus.affinity_cpus() == 6
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: None)
    assert cpus.affinity_cpus() == 1


def test_an_unreadable_cgroup_tree_is_no_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A confined process (AppArmor, SELinux) may be refused a look at the mounts.
    quota = {"cpu,cpuacct/cpu.cfs_quota_us": "100000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}
    root = _tree(tmp_path, "2:cpu,cpuacct:/\n", quota)

    def refused(path: object) -> bool:
        raise PermissionError(13, "Permission denied")

    assert quota_cpus(root) == 1
    with monkeypatch.context() as patched:
        patched.setattr(cpus.os, "stat", refused)  # what os.path.isdir looks with
        assert quota_cpus(root) is None
    (root / "proc/self/cgroup").write_bytes(b"\xff\xfe not text")
    assert quota_cpus(root) is None
