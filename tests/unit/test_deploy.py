"""``eggproxy deploy``: what each target prints, and the options it refuses."""

from __future__ import annotations

import configparser
from dataclasses import replace
from pathlib import Path

import pytest

from eggproxy import cli
from eggproxy.config import config_from_mapping, load_config
from eggproxy.deploy import DeployError, render
from eggproxy.deploy.nginx import DEFAULT_PAGE_CACHE, nginx_types, render_nginx, upstream_address
from eggproxy.headers import file_content_type

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_NGINX = ROOT / "nginx" / "eggproxy.conf"
SAMPLE_FILES = (
    "demo-1.0-py3-none-any.whl",
    "demo-1.0.tar.gz",
    "demo-1.0.zip",
    "demo-1.0-py2.7.egg",
    "demo-1.0.tar.bz2",
    "demo-1.0.tar.xz",
    "demo-1.0.tgz",
    "demo-1.0.tbz",
    "demo-1.0.tar",
    "demo-1.0.win32.exe",
    "demo-1.0.win32.msi",
    "demo-1.0-1.noarch.rpm",
    "demo-1.0.dmg",
    "demo_1.0_all.deb",
    "demo-1.0-py3-none-any.whl.metadata",
)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "eggproxy.conf"
    path.write_text(
        f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = http://127.0.0.1:9/simple/\n"
        "bind = 127.0.0.1:3141\n" + extra
    )
    return path


def shipped_nginx() -> str:
    """What deploy prints for conf/eggproxy.conf installed as /etc/eggproxy/eggproxy.conf."""
    config = load_config(ROOT / "conf" / "eggproxy.conf").with_overrides(
        index="https://packages.example.internal/simple/"
    )
    config = replace(config, path=Path("/etc/eggproxy/eggproxy.conf"))
    # The shipped example names a made-up pseudonym: deploy prints the machine's own.
    return render_nginx(
        config,
        listen="*:80",
        server_name="eggproxy.example.internal",
        via="eggproxy-0123456789ab",
    )


def test_shipped_nginx_file_is_what_deploy_prints() -> None:
    """nginx/eggproxy.conf is regenerated with ``python tests/unit/test_deploy.py``."""
    text = shipped_nginx()
    assert SHIPPED_NGINX.read_text() == text
    assert f"proxy_cache_path {DEFAULT_PAGE_CACHE} " in text


def test_nginx_types_are_those_eggproxy_serve_sends() -> None:
    """nginx types files by their last extension: each must get serve's Content-Type."""
    by_extension = {ext: t for t, exts in nginx_types().items() for ext in exts}
    for name in SAMPLE_FILES:
        expected = file_content_type(name)
        sent = by_extension[name.rsplit(".", 1)[1]]
        if sent == "text/plain":  # the location's charset directive adds the parameter
            sent += "; charset=utf-8"
        assert sent == expected, name


def test_nginx_file_names_the_real_paths(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    text = render_nginx(config, listen="127.0.0.1:8080", page_cache=tmp_path / "pages")
    assert f"root {tmp_path}/cache;" in text
    assert "server 127.0.0.1:3141;" in text
    assert "listen 127.0.0.1:8080;" in text
    assert f"proxy_cache_path {tmp_path}/pages " in text
    assert "proxy_no_cache $eggproxy_uncached;" in text
    assert "    json 0;" in text


def test_nginx_serves_the_configured_prefix(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "prefix = /pypi/\n"))
    text = render_nginx(config, listen="127.0.0.1:8080")
    assert 'location ~ "^/pypi/(' in text and "/simple/" not in text


def test_nginx_caches_no_page_with_a_local_folder_source(tmp_path: Path) -> None:
    """A file dropped into a folder shows on the next request: nginx must not keep pages."""
    (tmp_path / "eggs").mkdir()
    config = load_config(write_config(tmp_path, f"[source:eggs]\npath = {tmp_path}/eggs\n"))
    text = render_nginx(config, listen="127.0.0.1:8080")
    assert "    json 1;" in text and "    html 1;" in text
    assert "local folder source" in text


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        ("127.0.0.1:3141", "127.0.0.1:3141"),
        ("0.0.0.0:3141", "127.0.0.1:3141"),
        ("[::]:3141", "[::1]:3141"),
        ("10.1.2.3:80", "10.1.2.3:80"),
    ],
)
def test_nginx_reaches_serve_at_its_bind(bind: str, address: str) -> None:
    assert upstream_address(bind) == address


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs --listen"),
        ({"listen": "8080"}, "expected HOST:PORT"),
        ({"listen": "127.0.0.1:99999"}, "expected HOST:PORT"),
        ({"listen": "a;b:80"}, "not a host"),
        ({"listen": "127.0.0.1:80", "server_name": "x; include /etc/passwd"}, "not a host name"),
    ],
)
def test_nginx_refuses_bad_options(tmp_path: Path, options: dict[str, str], message: str) -> None:
    config = load_config(write_config(tmp_path))
    with pytest.raises(DeployError, match=message):
        render("nginx", config, **options)


def test_nginx_refuses_a_cache_dir_it_cannot_quote(tmp_path: Path) -> None:
    config = config_from_mapping(
        {"cache_dir": "/srv/my cache;", "index": "http://127.0.0.1:9/simple/"}
    )
    with pytest.raises(DeployError, match="cache_dir"):
        render("nginx", config, listen="127.0.0.1:80")


def test_systemd_unit_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    text = render("systemd", load_config(path), venv=tmp_path / "venv")
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(text)
    service = unit["Service"]
    assert service["ExecStart"] == f"{tmp_path}/venv/bin/eggproxy serve -c {path}"
    assert service["User"] == service["Group"] == "eggproxy"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == f"{tmp_path}/cache"
    assert service["NoNewPrivileges"] == service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_keeps_homes_readable_when_a_path_lives_there() -> None:
    config = replace(
        config_from_mapping({"cache_dir": "/home/ci/cache", "index": "http://127.0.0.1:9/s/"}),
        path=Path("/etc/eggproxy/eggproxy.conf"),
    )
    text = render("systemd", config, venv="/opt/eggproxy", user="ci")
    assert "ProtectHome=read-only" in text and "User=ci" in text


@pytest.mark.parametrize("target", ["systemd", "cron"])
def test_services_need_a_configuration_file(target: str) -> None:
    config = config_from_mapping({"cache_dir": "/var/cache/e", "index": "http://127.0.0.1:9/s/"})
    with pytest.raises(DeployError, match="needs a configuration file"):
        render(target, config)


@pytest.mark.parametrize("user", ["a b", "x;rm", "-r", "é"])
def test_services_refuse_bad_user_names(tmp_path: Path, user: str) -> None:
    with pytest.raises(DeployError, match="--user"):
        render("systemd", load_config(write_config(tmp_path)), user=user)


def test_cron_line(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    text = render("cron", load_config(path), user="eggproxy", venv="/opt/eggproxy")
    entries = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    variables = dict(ln.split("=", 1) for ln in entries if "=" in ln.split()[0])
    assert variables["MAILTO"] == "root" and variables["SHELL"] == "/bin/sh"
    (job,) = [ln for ln in entries if "=" not in ln.split()[0]]
    minute, hour, day, month, weekday, user, *command = job.split()
    assert 0 <= int(minute) < 60 and (hour, day, month, weekday) == ("*", "*", "*", "*")
    assert user == "eggproxy"
    assert command == ["/opt/eggproxy/bin/eggproxy", "update", "-q", "-c", str(path)]


def test_cron_runs_as_the_cache_owner_by_default(tmp_path: Path) -> None:
    import pwd

    config = load_config(write_config(tmp_path))
    config.cache_dir.mkdir()
    owner = pwd.getpwuid(config.cache_dir.stat().st_uid).pw_name
    assert f" {owner} " in render("cron", config)


def test_cli_prints_the_apache_vhost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eggproxy.deploy.apache import render_apache

    path = write_config(tmp_path)
    args = ["deploy", "apache", "-c", str(path), "--server-name", "pypi.example.internal"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    expected = render_apache(load_config(path), server_name="pypi.example.internal")
    assert printed.strip() == expected.strip()
    assert "PythonFixupHandler eggproxy.modpython::fixup" in printed


def test_cli_prints_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    assert cli.main(["deploy", "cron", "-c", str(path), "--user", "www-data"]) == 0
    assert f"www-data {cli.sys.prefix}/bin/eggproxy update -q -c {path}" in capsys.readouterr().out


def test_cli_bad_option_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    assert cli.main(["deploy", "nginx", "-c", str(path), "--listen", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected HOST:PORT" in err


if __name__ == "__main__":
    SHIPPED_NGINX.write_text(shipped_nginx())
