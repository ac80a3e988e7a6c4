"""After a power loss: find the pages a crash of the machine may have left torn.

Pages are replaced by rename without ``fsync`` (docs/decisions/0014): a process
crash cannot tear them (the kernel keeps what was written), but a power loss
can leave a page renamed into place before its bytes reached the disk: empty
or cut short.  Only pages written in the last moments before the machine went
down are at risk; the kernel writes dirty data back within about 30 seconds
(``vm.dirty_expire_centisecs``) and ext4 commits every 5.  So once per boot,
at the first start after it, the pages changed within :data:`WINDOW` seconds
before the boot are read back; one that does not parse is removed, and is
fetched again on the next request.  Files are fsynced before their rename
(download.py): they need no such check.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
PROC_STAT: Final = Path("/proc/stat")
MARKER: Final = ".boot-id"  # the boot the cache was last prepared in
WINDOW: Final = 120.0  # seconds before a boot whose page writes may not be on disk
_HTML_TAIL: Final = b"</html>\n"


def current_boot() -> tuple[str, float] | None:
    """This boot's id and start time (``None`` where the kernel does not say: no check)."""
    try:
        boot = BOOT_ID.read_text().strip()
        for line in PROC_STAT.read_text().splitlines():
            if line.startswith("btime "):
                return boot, float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def whole(path: Path) -> bool:
    """Whether a rendered page is complete: JSON that parses, HTML with its end."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return True  # nothing to serve is nothing torn
    if path.suffix == ".json":
        try:
            json.loads(data)
        except ValueError:
            return False
        return True
    return data.endswith(_HTML_TAIL)


def torn_pages(root: Path, since: float) -> list[Path]:
    """Directories (the root or a project's) with a page changed after ``since`` that is torn."""
    torn = []
    for directory in (root, *(p.parent for p in root.glob("*/index.json"))):
        for name in ("index.json", "index.html"):
            page = directory / name
            try:
                changed = page.stat().st_ctime
            except FileNotFoundError:
                continue
            if changed >= since and not whole(page):
                torn.append(directory)
                break
    return torn


def first_start_since_boot(root: Path) -> float | None:
    """The time from which pages may be torn, if this is the first start since a boot.

    Records the boot in the cache, so that later starts check nothing.
    """
    boot = current_boot()
    if boot is None:
        return None
    marker = root / MARKER
    try:
        recorded = marker.read_text().strip()
    except FileNotFoundError:
        recorded = None
    if recorded == boot[0]:
        return None
    from eggproxy.cache import write_atomic

    write_atomic(marker, boot[0].encode() + b"\n")
    return boot[1] - WINDOW
