"""The Apache vhost ``eggproxy deploy apache`` prints, and the one shipped in ``apache/``."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from eggproxy.config import Config, config_from_mapping, load_config
from eggproxy.deploy.apache import MODULES, RenderError, render_apache, site_packages

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "apache" / "eggproxy.vhost"
MODS_AVAILABLE = Path("/etc/apache2/mods-available")
VENV = Path("/opt/eggproxy")


def documented_config(**values: str) -> Config:
    """The configuration the README's Apache steps write to /etc/eggproxy/eggproxy.conf."""
    raw = {"cache_dir": "/var/cache/eggproxy", "index": "https://index.example/simple/", **values}
    return config_from_mapping(raw, path=Path("/etc/eggproxy/eggproxy.conf"))


def python_version_free(text: str) -> str:
    # The venv's lib/python3.X is the system Python's, whichever runs the test.
    return re.sub(r"python3\.\d+", "python3.X", text)


def test_shipped_vhost_is_the_rendering_of_the_documented_config() -> None:
    rendered = render_apache(documented_config(), venv=Path("/opt/eggproxy"))
    assert python_version_free(rendered) == python_version_free(SHIPPED.read_text())


def test_real_paths_and_prefix() -> None:
    config = documented_config(cache_dir="/srv/egg cache", prefix="/pypi/")
    text = render_apache(
        config, server_name="pkgs.example.internal", listen="10.0.0.5:8080", venv=Path("/srv/v")
    )
    assert "Listen 10.0.0.5:8080\n<VirtualHost 10.0.0.5:8080>" in text
    assert "ServerName pkgs.example.internal" in text
    assert 'Alias /pypi "/srv/egg cache"' in text
    assert "CacheEnable disk /pypi/" in text
    assert '<Directory "/srv/egg cache">' in text
    assert '<DirectoryMatch "^/srv/egg\\ cache/(?:.*/)?\\.">' in text
    assert 'PythonOption eggproxy.config "/etc/eggproxy/eggproxy.conf"' in text
    assert re.search(
        r"PythonPath \"\['/srv/v/lib/python3\.\d+/site-packages'\] \+ sys\.path\"", text
    )


def test_without_listen_the_vhost_is_on_port_80() -> None:
    text = render_apache(documented_config(), venv=Path("/opt/eggproxy"))
    assert "<VirtualHost *:80>" in text
    assert "\nListen " not in text


def test_site_packages_of_an_existing_venv(tmp_path: Path) -> None:
    (tmp_path / "lib" / "python3.13" / "site-packages").mkdir(parents=True)
    assert site_packages(tmp_path) == tmp_path / "lib" / "python3.13" / "site-packages"


def test_every_module_is_named_and_checked() -> None:
    text = render_apache(documented_config(), venv=Path("/opt/eggproxy"))
    assert f"# Modules: a2enmod {' '.join(MODULES)}\n" in text
    for name, identifier in MODULES.items():
        assert f"<IfModule !{identifier}>" in text
        if MODS_AVAILABLE.is_dir():  # Debian: each one can be enabled by that name
            assert (MODS_AVAILABLE / f"{name}.load").is_file(), name


def test_file_types_match_eggproxy_serve() -> None:
    text = render_apache(documented_config(), venv=Path("/opt/eggproxy"))
    zip_types = '<FilesMatch "\\.(?:whl|egg|zip)$">\n            ForceType "application/zip"'
    assert zip_types in text
    metadata = '<FilesMatch "\\.(?:metadata)$">\n            ForceType "text/plain; charset=utf-8"'
    assert metadata in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_name": "bad name"},
        {"server_name": 'x"y'},
        {"listen": "8080"},
        {"listen": "host:port"},
        {"venv": Path('/opt/"quoted"')},
    ],
)
def test_values_that_cannot_be_written_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(RenderError):
        render_apache(documented_config(), **kwargs)  # type: ignore[arg-type]


def test_a_cache_dir_that_cannot_be_quoted_is_refused() -> None:
    with pytest.raises(RenderError):
        render_apache(documented_config(cache_dir='/srv/"eggs"'), venv=Path("/opt/eggproxy"))


def readme_apache_ini() -> str:
    """The ``/etc/eggproxy/eggproxy.conf`` the README's Apache steps write."""
    readme = (ROOT / "README.rst").read_text()
    section = readme[readme.index("Apache + mod_python\n") : readme.index("Which MPM")]
    block = re.search(r"\n( +)\[eggproxy\]\n(?:\1.*\n)+", section)
    assert block is not None, "no [eggproxy] block in the README's Apache section"
    return "\n".join(line.strip() for line in block.group(0).splitlines()) + "\n"


def test_readme_apache_config_loads_and_renders_the_shipped_vhost(tmp_path: Path) -> None:
    path = tmp_path / "eggproxy.conf"
    path.write_text(readme_apache_ini())
    config = load_config(path)
    assert config.cache_dir == Path("/var/cache/eggproxy")
    assert config.index == "https://pypi-mirror.example.internal/simple/"
    assert config.index_ttl == 1800
    # Rendered from /etc/eggproxy/eggproxy.conf (where the README puts it), it is the shipped file.
    shipped = render_apache(replace(config, path=Path("/etc/eggproxy/eggproxy.conf")), venv=VENV)
    assert python_version_free(shipped) == python_version_free(SHIPPED.read_text())


def test_a_config_without_a_file_is_refused() -> None:
    config = config_from_mapping({"cache_dir": "/var/cache/eggproxy", "index": "https://i.test/"})
    with pytest.raises(RenderError, match="no configuration file"):
        render_apache(config, venv=VENV)
