"""``eggproxy deploy varnish``: the VCL for the configuration in effect (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eggproxy.config import load_config
from eggproxy.deploy import DeployError, render
from eggproxy.errors import ConfigError


def config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "eggproxy.conf"
    path.write_text(
        f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = http://127.0.0.1:9/simple/\n"
        "bind = 0.0.0.0:3141\n" + extra
    )
    return path


def test_backend_acl_and_formats(tmp_path: Path) -> None:
    extra = "purge_from = 127.0.0.1, 10.1.0.0/16 ::1\nstale_while_revalidate = 600\n"
    config = load_config(config_file(tmp_path, extra), environ={})
    vcl = render("varnish", config, listen="127.0.0.1:6081")
    assert vcl.splitlines()[7] == "vcl 4.1;"
    assert '.host = "127.0.0.1";' in vcl and '.port = "3141";' in vcl  # a wildcard made loopback
    assert '    "127.0.0.1";\n    "10.1.0.0"/16;\n    "::1";' in vcl
    assert r'req.url ~ "^/simple/([^/?]+/)?(\?.*)?$"' in vcl
    assert 'set req.http.Accept = "application/vnd.pypi.simple.v1+json";' in vcl
    assert 'set req.http.Accept = "text/html";' in vcl
    assert "set beresp.do_stream = true;" in vcl
    assert "set beresp.keep = 86400s;" in vcl  # stale-if-error: at least a day
    assert "-a 127.0.0.1:6081" in vcl


def test_a_local_source_keeps_pages_out_of_varnish(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    extra = (
        f"[source:local]\npath = {tmp_path}/wheels\n[source:up]\nurl = http://127.0.0.1:9/simple/\n"
    )
    vcl = render("varnish", load_config(config_file(tmp_path, extra), environ={}))
    assert "set req.http.Accept" not in vcl
    assert "pages are never kept here" in vcl


def test_no_purge_address_means_nobody(tmp_path: Path) -> None:
    vcl = render("varnish", load_config(config_file(tmp_path, "purge_from =\n"), environ={}))
    assert '"0.0.0.0"/32;' in vcl


def test_bad_listen_and_addresses_are_one_line_errors(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path), environ={})
    with pytest.raises(DeployError, match="--listen"):
        render("varnish", config, listen="no port")
    with pytest.raises(ConfigError, match="not an IP address"):
        load_config(config_file(tmp_path, "purge_from = example\n"), environ={})
    with pytest.raises(ConfigError, match="absolute http"):
        load_config(config_file(tmp_path, "purge_urls = varnish:6081\n"), environ={})


def test_purge_urls_are_kept_without_a_final_slash(tmp_path: Path) -> None:
    extra = "purge_urls = http://10.0.0.1:6081/\n  http://10.0.0.2:6081\n"
    config = load_config(config_file(tmp_path, extra), environ={})
    assert config.purge_urls == ("http://10.0.0.1:6081", "http://10.0.0.2:6081")
    assert config.purge_from == ("127.0.0.1",)
