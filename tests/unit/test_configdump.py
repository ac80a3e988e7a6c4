from dataclasses import replace
from pathlib import Path

import pytest

from eggproxy.cli import main
from eggproxy.config import load_config
from eggproxy.configdump import config_ini

INDEX = "https://index.example.test/simple/"


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eggproxy.conf"
    path.write_text(text)
    return path


def test_printed_configuration_loads_back_to_the_same(tmp_path: Path) -> None:
    (tmp_path / "eggs").mkdir()
    path = _conf(
        tmp_path,
        f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = {INDEX}\nindex_ttl = 60\n"
        "update_interval = 1.5\nbind = 127.0.0.1:9999\n"
        f"[source:local]\npath = {tmp_path}/eggs\n"
        "[source:public]\nurl = https://public.example.test/simple/\n"
        "mode = unsafe-merge\nallow = Sphinx zope.interface\n",
    )
    config = load_config(path, environ={})
    text = config_ini(config)
    assert text.startswith(f"; loaded from {path}\n[eggproxy]\n")
    again = load_config(_conf(tmp_path / "eggs", text), environ={})
    assert replace(again, path=None) == replace(config, path=None)


def test_passwords_are_masked(tmp_path: Path) -> None:
    path = _conf(
        tmp_path,
        "[eggproxy]\nindex = https://tok:s3cret@mirror.example.test/simple/\n"
        "[source:private]\nurl = https://private.example.test/simple/\n"
        "username = bob\npassword = hunter2\n",
    )
    config = load_config(path, environ={})
    text = config_ini(config)
    assert "s3cret" not in text and "hunter2" not in text
    assert "index = https://tok:***@mirror.example.test/simple/" in text
    assert "username = bob\npassword = ***\n" in text
    # Loads back the same, but for the masked passwords.
    again = load_config(_reload(tmp_path, text), environ={})
    (private,) = again.sources
    assert (private.username, private.password) == ("bob", "***")
    expected = replace(config.sources[0], password="***")
    assert private == expected


def _reload(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "again"
    folder.mkdir()
    return _conf(folder, text)


def test_cli_prints_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _conf(tmp_path, f"[eggproxy]\nindex = {INDEX}\ncache_dir = {tmp_path}/c\n")
    assert main(["config", "-c", str(path), "--cache-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"; loaded from {path}\n")
    assert f"cache_dir = {tmp_path / 'd'}\n" in out  # flags override the file


def test_without_a_file_it_says_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("EGGPROXY_CONFIG", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", INDEX)
    if Path("/etc/eggproxy/eggproxy.conf").exists():
        pytest.skip("this machine has a system-wide configuration")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("; no configuration file: defaults\n[eggproxy]\n")
    assert f"index = {INDEX}\n" in out


def test_the_readme_shows_what_it_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from .test_doc_examples import ROOT, _rst_blocks

    monkeypatch.setenv("PIP_INDEX_URL", INDEX)
    (shown,) = [
        block
        for _line, block in _rst_blocks((ROOT / "README.rst").read_text())
        if block.startswith("; loaded from ")
    ]
    printed = iter(config_ini(load_config(_conf(tmp_path, shown), environ={})).splitlines()[1:])
    # Each line shown is printed, in that order (keys added later may come between).
    for line in shown.splitlines()[1:]:
        assert line in printed, line
