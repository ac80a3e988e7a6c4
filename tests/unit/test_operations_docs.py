"""What the README's "Operating it" section shows loads and parses as shown."""

import re
from pathlib import Path

import pytest

from eggproxy.cli import build_parser
from eggproxy.config import load_config

README = Path(__file__).resolve().parents[2] / "README.rst"


def _section() -> str:
    text = README.read_text()
    start = text.index("\nOperating it\n")
    # Up to the next section title (a line underlined with "=").
    following = re.search(r"\n[^\n]+\n=+\n", text[start + len("\nOperating it\n=") :])
    end = start + len("\nOperating it\n=") + following.start() if following else len(text)
    return text[start:end]


def _literal_blocks(text: str) -> list[str]:
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", text)
    return [re.sub(r"^    ", "", block, flags=re.M).strip() + "\n" for block in blocks]


def test_the_operating_example_configuration_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://index.example.test/simple/")
    (example,) = [b for b in _literal_blocks(_section()) if b.startswith("[eggproxy]")]
    path = tmp_path / "eggproxy.conf"
    path.write_text(example)
    config = load_config(path, environ={})
    assert config.max_cache_size == 50 << 30
    assert config.access_log == "json"
    assert config.prune_interval == 300
    assert config.metrics_dir == Path("/var/cache/eggproxy/.metrics")


def test_the_commands_shown_parse() -> None:
    commands = [
        line.split("eggproxy ", 1)[1].split(" >")[0].split()
        for block in _literal_blocks(_section())
        for line in block.splitlines()
        if "bin/eggproxy " in line or " eggproxy metrics" in line
    ]
    assert ["cache", "prune"] in commands and ["metrics"] in commands
    for argv in commands:
        build_parser().parse_args(argv)
    for argv in (["cache", "stats"], ["cache", "verify", "demo", "--jobs", "4"]):
        build_parser().parse_args(argv)


def test_the_shipped_configuration_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://index.example.test/simple/")
    config = load_config(README.parent / "conf" / "eggproxy.conf", environ={})
    assert (config.access_log, config.metrics, config.max_cache_size) == ("clf", True, None)
    assert config.prune_interval == 300


@pytest.mark.parametrize(
    "argv",
    [["stats"], ["prune", "--max-size", "1G"], ["verify", "demo", "--jobs", "2"]],
)
def test_the_short_cache_commands_are_the_cache_commands(argv: list[str]) -> None:
    short, long = build_parser().parse_args(argv), build_parser().parse_args(["cache", *argv])
    assert short.cache_command == long.cache_command == argv[0]
    assert {k: v for k, v in vars(short).items() if k != "command"} == {
        k: v for k, v in vars(long).items() if k != "command"
    }
