from pathlib import Path

import pytest

from eggproxy.config import SourceMode, default_index_url, load_config
from eggproxy.errors import ConfigError

INDEX = "https://index.example.test/simple/"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eggproxy.conf"
    path.write_text(text)
    return path


def test_defaults_and_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, f"[eggproxy]\ncache_dir = {tmp_path}/c\nindex = {INDEX}\n")
    config = load_config(path, environ={})
    assert config.cache_dir == tmp_path / "c"
    assert config.index == INDEX
    assert (config.update_interval, config.index_ttl, config.prefix) == (24.0, 1800, "/simple/")
    assert config.path == path


def test_2008_section_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, f"[default]\neggs_directory = /var/eggs\nindex = {INDEX[:-1]}\n")
    config = load_config(path, environ={})
    assert config.cache_dir == Path("/var/eggs")
    assert config.index == INDEX  # a trailing slash is added


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = _write(tmp_path, f"[eggproxy]\nindex = {INDEX}\nindex_ttl = 5\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_config(environ={"EGGPROXY_CONFIG": str(env_file)}).index_ttl == 5
    explicit = tmp_path / "other.conf"
    explicit.write_text(f"[eggproxy]\nindex = {INDEX}\nindex_ttl = 7\n")
    config = load_config(explicit, environ={"EGGPROXY_CONFIG": str(env_file)})
    assert config.index_ttl == 7


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("index_ttl = soon", "index_ttl"),
        ("timeout = 0", "timeout"),
        ("index = ftp://x/", "index"),
        ("bind = nowhere", "bind"),
        ("colour = blue", "colour"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, f"[eggproxy]\nindex = {INDEX}\n{text}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert key in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "nope.conf", environ={})


def test_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, f"[eggproxy]\nindex = {INDEX}\n")
    config = load_config(path, environ={}).with_overrides(
        cache_dir=str(tmp_path / "x"), index=None, bind="127.0.0.1:9"
    )
    assert config.cache_dir == tmp_path / "x"
    assert config.bind == "127.0.0.1:9"
    assert config.index == INDEX


def test_default_index_follows_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example.test/simple")
    assert default_index_url() == "https://mirror.example.test/simple"
    monkeypatch.delenv("PIP_INDEX_URL")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    assert default_index_url().startswith("https://")


def test_sources_in_order(tmp_path: Path) -> None:
    (tmp_path / "eggs").mkdir()
    path = _write(
        tmp_path,
        f"[eggproxy]\nindex = {INDEX}\n"
        "[source:private]\nurl = https://bob:s3cret@private.example.test/simple\n"
        f"[source:local]\npath = {tmp_path}/eggs\n"
        "[source:public]\nurl = https://public.example.test/simple/\n"
        "mode = unsafe-merge\nallow = Zope.Interface, requests\n",
    )
    config = load_config(path, environ={})
    private, local, public = config.effective_sources
    assert private.url == "https://private.example.test/simple/"  # credentials moved out
    assert (private.username, private.password) == ("bob", "s3cret")
    assert local.is_local and local.path == tmp_path / "eggs"
    assert public.mode is SourceMode.UNSAFE_MERGE
    assert public.allow == {"zope-interface", "requests"}
    assert "s3cret" not in repr(config)


def test_no_sources_means_the_index(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, f"[eggproxy]\nindex = {INDEX}\n"), environ={})
    (only,) = config.effective_sources
    assert only.url == INDEX


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("[source:x]\n", "source:x"),
        ("[source:x]\nurl = https://a/\npath = /tmp\n", "source:x"),
        ("[source:x]\nurl = https://a/\nmode = merge\n", "source:x.mode"),
        ("[source:x]\nurl = https://a/\ncolour = red\n", "source:x.colour"),
        ("[source:x y]\nurl = https://a/\n", "source:x y"),
    ],
)
def test_bad_sources(tmp_path: Path, section: str, key: str) -> None:
    path = _write(tmp_path, f"[eggproxy]\nindex = {INDEX}\n{section}")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert key in str(info.value)


def test_credentials_in_the_index_url_are_kept_out_of_urls(tmp_path: Path) -> None:
    path = _write(tmp_path, "[eggproxy]\nindex = https://tok:s3cret@mirror.example.test/simple/\n")
    (only,) = load_config(path, environ={}).effective_sources
    assert only.url == "https://mirror.example.test/simple/"
    assert (only.username, only.password) == ("tok", "s3cret")


def test_bad_url_message_hides_credentials(tmp_path: Path) -> None:
    path = _write(tmp_path, "[eggproxy]\nindex = ftp://u:s3cret@host/\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "s3cret" not in str(info.value)


def test_supply_chain_keys(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"[eggproxy]\nindex = {INDEX}\nmin_release_age = 7d\n"
        "min_release_age_exempt = Our_Tool, other.lib\n"
        f"blocklist = {tmp_path}/osv\n"
        "deny = evil-pkg Bad_Pkg==1.2.3\n"
        "[source:private]\npath = /srv/wheels\nmin_release_age = 0\n",
    )
    config = load_config(path, environ={})
    assert config.min_release_age == 7 * 86400
    assert config.min_release_age_exempt == {"our-tool", "other-lib"}
    assert config.blocklist == tmp_path / "osv"
    assert config.deny == (("evil-pkg", None), ("bad-pkg", "1.2.3"))
    assert config.sources[0].min_release_age == 0.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("min_release_age = a week", "min_release_age"),
        ("deny = evil>=1", "deny"),
        ("deny = evil==", "deny"),
    ],
)
def test_bad_supply_chain_values(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, f"[eggproxy]\nindex = {INDEX}\n{text}\n")
    with pytest.raises(ConfigError, match=key):
        load_config(path, environ={})
