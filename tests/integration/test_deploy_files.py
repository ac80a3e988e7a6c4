"""The files ``eggproxy deploy`` prints, checked by the tools that will read them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.integration.apache import public_dir
from tests.integration.nginx import NGINX, main_config, require_nginx

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def deploy(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "eggproxy", "deploy", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def nginx_t(site: str) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` with ``site`` included in a Debian-like ``http {}``, in a scratch prefix."""
    base = public_dir("eggproxy-nginx-t-")
    try:
        for name in ("run", "logs", "tmp"):
            (base / name).mkdir()
        (base / "site.conf").write_text(site)
        (base / "nginx.conf").write_text(main_config(base, base / "site.conf"))
        return subprocess.run(
            [str(NGINX), "-t", "-p", str(base), "-c", str(base / "nginx.conf")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_shipped_nginx_file_passes_nginx_t(tmp_path: Path) -> None:
    require_nginx()
    text = (ROOT / "nginx" / "eggproxy.conf").read_text()
    # Its page cache in a scratch directory: nginx -t creates the path it names.
    text = text.replace("/var/lib/nginx/eggproxy", str(tmp_path / "pages"))
    done = nginx_t(text)
    assert done.returncode == 0, done.stderr


def test_printed_nginx_file_passes_nginx_t(tmp_path: Path) -> None:
    require_nginx()
    config = tmp_path / "eggproxy.conf"
    config.write_text(f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = http://127.0.0.1:9/s/\n")
    site = deploy(
        "nginx",
        "-c",
        str(config),
        "--listen",
        "127.0.0.1:8080",
        "--nginx-cache",
        str(tmp_path / "pages"),
        "--server-name",
        "pkgs.example",
    )
    done = nginx_t(site)
    assert done.returncode == 0, done.stderr


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the unit's keys are checked in unit tests)")
    config = tmp_path / "eggproxy.conf"
    config.write_text(f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = http://127.0.0.1:9/s/\n")
    unit = tmp_path / "eggproxy.service"
    # --venv: this environment, whose bin/eggproxy systemd-analyze checks is executable.
    unit.write_text(deploy("systemd", "-c", str(config), "--venv", sys.prefix))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    # The check can fail: a unit naming a missing program does not pass.
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace(f"{sys.prefix}/bin/eggproxy", "/nonexistent/egg"))
    failed = subprocess.run(
        [analyze, "verify", str(broken)], capture_output=True, text=True, timeout=120
    )
    assert failed.returncode != 0 or "nonexistent" in failed.stderr
