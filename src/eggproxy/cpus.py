"""How many CPUs this process may use: its affinity, and its cgroup's CPU quota.

``eggproxy serve``'s ``workers = auto`` starts one worker per CPU.  The
affinity (``taskset``, a cpuset) says which CPUs the process may run on; a
container's or a systemd unit's CPU quota (``docker --cpus``, a Kubernetes
CPU limit, ``CPUQuota=``) says how much of them it gets, and the affinity
does not show it: a container allowed one CPU on a 64-CPU host sees 64.  So
the quota of the process's cgroup and of its ancestors (cgroup v2
``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) bounds the
count, rounded up.  Read when asked, never at import; ``root`` lets tests
give a tree of their own.  Nothing here raises: what cannot be read is no quota.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath

__all__ = ["affinity_cpus", "available_cpus", "quota_cpus"]


def affinity_cpus() -> int:
    """CPUs this process may run on (all of the machine's where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def available_cpus(root: Path = Path("/")) -> int:
    """CPUs this process may use: its affinity, bounded by its cgroup's CPU quota."""
    cpus = affinity_cpus()
    quota = quota_cpus(root)
    return cpus if quota is None else max(1, min(cpus, quota))


def quota_cpus(root: Path = Path("/")) -> int | None:
    """The tightest CPU quota on this process's cgroup path, in whole CPUs; None: none."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except (OSError, ValueError):  # ValueError: not text
        return None
    limits = []
    for line in lines:
        fields = line.split(":", 2)  # "ID:CONTROLLERS:PATH"
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue
        _, controllers, path = fields
        if controllers == "":  # cgroup v2, the unified hierarchy
            mount = root / "sys/fs/cgroup"
            limits += [_v2(mount / rel) for rel in _ancestors(path)]
        elif "cpu" in controllers.split(","):  # cgroup v1, the cpu controller's hierarchy
            for name in (controllers, "cpu", "cpu,cpuacct"):
                mount = root / "sys/fs/cgroup" / name
                if os.path.isdir(mount):  # False on any error (a confined process: EACCES)
                    limits += [_v1(mount / rel) for rel in _ancestors(path)]
                    break
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _ancestors(path: str) -> list[str]:
    """``/a/b`` -> ``a/b``, ``a``, ``""``: a quota anywhere above binds too."""
    parts = PurePosixPath(path).parts[1:]
    return ["/".join(parts[:n]) for n in range(len(parts), -1, -1)]


def _v2(folder: Path) -> int | None:
    # cpu.max: "QUOTA PERIOD" in microseconds, QUOTA "max" for none.
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return _whole(int(quota), int(period)) if quota != "max" else None
    except (OSError, ValueError):
        return None


def _v1(folder: Path) -> int | None:
    # cpu.cfs_quota_us: -1 for none.
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return _whole(quota, period)


def _whole(quota: int, period: int) -> int | None:
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))
