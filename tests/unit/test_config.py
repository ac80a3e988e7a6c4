from pathlib import Path
from typing import Literal

import pytest

from eggproxy.config import (
    SourceMode,
    default_index_url,
    load_config,
    node_name,
    worker_processes,
)
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
        ("[source:x]\n", "[source:x]"),
        ("[source:x]\nurl = https://a/\npath = /tmp\n", "[source:x]"),
        ("[source:x]\nurl = https://a/\nmode = merge\n", "[source:x] mode"),
        ("[source:x]\nurl = https://a/\ncolour = red\n", "[source:x] colour"),
        ("[source:x y]\nurl = https://a/\n", "[source:x y]"),
        ("[source:x]\nurl = packages.example.test/simple\n", "[source:x] url"),
        ("[source:x]\npath = /no/such/eggs\n", "[source:x] path"),
        ("[source:x]\npath = /etc/hostname\n", "[source:x] path"),
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


def test_inline_comments_are_not_values(tmp_path: Path) -> None:
    (tmp_path / "eggs").mkdir()
    path = _write(
        tmp_path,
        f"[eggproxy]\nindex = {INDEX}   ; the mirror\nindex_ttl = 60 # a minute\n"
        "[source:private]\nurl = https://private.example.test/simple/   ; the private one\n"
        "username = ci-reader          ; or ~/.netrc\n"
        "password = p#ss;word          ; no whitespace before: part of the value\n"
        "allow = sphinx                ; projects this source may provide\n"
        "                              ; even when an earlier one has them\n"
        f"[source:local]\npath = {tmp_path}/eggs   # a folder\n",
    )
    config = load_config(path, environ={})
    assert (config.index, config.index_ttl) == (INDEX, 60)
    private, local = config.sources
    assert private.url == "https://private.example.test/simple/"
    assert (private.username, private.password) == ("ci-reader", "p#ss;word")
    assert private.allow == {"sphinx"}
    assert local.path == tmp_path / "eggs"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[egproxy]\nindex_ttl = 5\n", "[egproxy] unknown section"),
        ("index_ttl = 5\n[eggproxy]\n", "line 1: a key before any section header"),
        ("[eggproxy]\nindex_ttl\n", "line 2: not a 'key = value' line"),
        ("[eggproxy]\nindex_ttl = 5\nindex_ttl = 6\n", "line 3: [eggproxy] index_ttl: key given"),
        ("[eggproxy]\n[eggproxy]\n", "line 2: [eggproxy] section given twice"),
        ("[eggproxy]\ncolour = blue\n", "[eggproxy] colour: unknown key"),
        ("[default]\nindex_ttl = soon\n", "[default] index_ttl: not a number: soon"),
        ("[eggproxy]\nindex = packages.example.test\n", "[eggproxy] index: not an absolute"),
        ("[eggproxy]\nbind = :x\n", "[eggproxy] bind: expected HOST:PORT, not :x"),
        # One section naming its cache by both names, differently: which one is meant?
        (
            "[eggproxy]\neggs_directory = /var/eggs\ncache_dir = /var/cache/e\n",
            "[eggproxy] eggs_directory: the 2008 name of cache_dir, which is also given "
            "(/var/cache/e): keep one",
        ),
        ("[eggproxy]\nworkers = 0\n", "[eggproxy] workers: must be at least 1 (or auto), not 0"),
        ("[eggproxy]\nworkers = many\n", "workers: expected a number or auto, got many"),
        ("[eggproxy]\nworkers = 2.5\n", "workers: expected a number or auto, got 2.5"),
        # The README's table says on/off; the parser takes yes/no too: the error says both.
        ("[eggproxy]\nmetrics = maybe\n", "metrics: expected yes or no (on or off), got maybe"),
    ],
)
def test_errors_are_one_plain_line(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"PIP_INDEX_URL": INDEX})
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    # Nothing a person has to decode: no newline, no Python repr quoting.
    assert "\n" not in message and "'\\n" not in message and "\\" not in message


def test_messages_quote_values_plainly(tmp_path: Path) -> None:
    path = _write(tmp_path, "[eggproxy]\nindex_ttl = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"PIP_INDEX_URL": INDEX})
    assert str(info.value).endswith("[eggproxy] index_ttl: must be at least 0, not -1")


@pytest.mark.parametrize(
    ("value", "size"),
    [("50G", 50 << 30), ("500M", 500 << 20), ("1.5k", 1536), ("2GiB", 2 << 30), ("1024", 1024)],
)
def test_max_cache_size_units(tmp_path: Path, value: str, size: int) -> None:
    path = _write(tmp_path, f"[eggproxy]\nindex = {INDEX}\nmax_cache_size = {value}\n")
    assert load_config(path, environ={}).max_cache_size == size


@pytest.mark.parametrize("value", ["off", "0"])
def test_max_cache_size_off(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, f"[eggproxy]\nindex = {INDEX}\nmax_cache_size = {value}\n")
    assert load_config(path, environ={}).max_cache_size is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_cache_size", "lots"),
        ("max_cache_size", "-5G"),
        ("access_log", "xml"),
        ("metrics", "maybe"),
    ],
)
def test_operating_keys_refuse_bad_values(tmp_path: Path, key: str, value: str) -> None:
    path = _write(tmp_path, f"[eggproxy]\nindex = {INDEX}\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=key):
        load_config(path, environ={})


def test_operating_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, f"[eggproxy]\ncache_dir = {tmp_path}/c\nindex = {INDEX}\n")
    config = load_config(path, environ={})
    assert (config.metrics, config.max_cache_size, config.access_log) == (True, None, "clf")
    assert config.metrics_path == tmp_path / "c" / ".metrics" / node_name()
    assert "/" not in node_name() and node_name() not in ("", ".", "..")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "auto"), ("auto", "auto"), (" AUTO ", "auto"), ("3", 3)]
)
def test_workers_setting(tmp_path: Path, value: str | None, expected: object) -> None:
    line = "" if value is None else f"workers = {value}\n"
    config = load_config(_write(tmp_path, f"[eggproxy]\nindex = {INDEX}\n{line}"), environ={})
    assert config.workers == expected
    assert config.with_overrides(workers="2").workers == 2


@pytest.mark.parametrize(
    ("workers", "cpus", "processes"),
    [("auto", 1, 1), ("auto", 2, 2), ("auto", 8, 8), ("auto", 64, 8), ("auto", 0, 1), (3, 64, 3)],
)
def test_worker_processes(workers: int | Literal["auto"], cpus: int, processes: int) -> None:
    # auto: one per CPU the server may run on, at most 8; a number is taken as given.
    assert worker_processes(workers, cpus) == processes


def test_supply_chain_keys(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    path = _write(
        tmp_path,
        f"[eggproxy]\nindex = {INDEX}\nmin_release_age = 7d\n"
        "min_release_age_exempt = Our_Tool, other.lib\n"
        f"blocklist = {tmp_path}/osv\n"
        "deny = evil-pkg Bad_Pkg==1.2.3\n"
        f"[source:private]\npath = {tmp_path}/wheels\nmin_release_age = 0\n",
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


def test_both_cache_names(tmp_path: Path) -> None:
    # The same value twice in one section, or the 2008 section beside the new one: no doubt.
    same = "[eggproxy]\neggs_directory = /var/eggs\ncache_dir = /var/eggs\n"
    assert load_config(_write(tmp_path, same), environ={}).cache_dir == Path("/var/eggs")
    both = "[default]\neggs_directory = /var/eggs\n[eggproxy]\ncache_dir = /var/cache/e\n"
    assert load_config(_write(tmp_path, both), environ={}).cache_dir == Path("/var/cache/e")
