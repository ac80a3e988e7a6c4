"""Every INI example the docs show loads as it is printed (STYLE 15: test what the user will paste).

Blocks are found, not listed, so an example added later is tested too: in
``*.rst`` every ``.. code-block:: ini`` block and every ``::`` literal block
whose first line is a ``[section]``; in ``docs/**/*.md`` every fenced ``ini``
block; every ``conf/*.conf`` file whole.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eggproxy.config import load_config

ROOT = Path(__file__).resolve().parents[2]
INDEX = "https://index.example.test/simple/"
SECTION = re.compile(r"^\[[^\]]+\]\s*$")


def _rst_blocks(text: str) -> list[tuple[int, str]]:
    lines = text.splitlines()
    blocks: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        stripped = line.rstrip()
        is_ini = stripped.strip() == ".. code-block:: ini"
        if not (is_ini or (stripped.endswith("::") and not stripped.lstrip().startswith(".."))):
            continue
        indent = len(line) - len(line.lstrip())
        body: list[str] = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            if is_ini and not body and following.strip().startswith(":"):
                continue  # a directive option such as :caption:
            body.append(following)
        content = [b for b in body if b.strip()]
        if not content:
            continue
        margin = min(len(b) - len(b.lstrip()) for b in content)
        block = "\n".join(b[margin:] for b in body).strip("\n") + "\n"
        if is_ini or SECTION.match(block.splitlines()[0]):
            blocks.append((number + 1, block))
    return blocks


def _md_blocks(text: str) -> list[tuple[int, str]]:
    found = re.finditer(r"^```ini[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in found]


def _examples() -> list[tuple[str, str]]:
    examples: list[tuple[str, str]] = []
    for rst in sorted(ROOT.glob("*.rst")) + sorted(ROOT.glob("docs/**/*.rst")):
        for line, block in _rst_blocks(rst.read_text()):
            examples.append((f"{rst.relative_to(ROOT)}:{line}", block))
    for md in sorted(ROOT.glob("docs/**/*.md")):
        for line, block in _md_blocks(md.read_text()):
            examples.append((f"{md.relative_to(ROOT)}:{line}", block))
    for conf in sorted(ROOT.glob("conf/*.conf")):
        examples.append((str(conf.relative_to(ROOT)), conf.read_text()))
    return examples


EXAMPLES = _examples()


def test_the_docs_have_examples() -> None:
    # The README's sources example and the shipped configuration, at least.
    assert any(name.startswith("README.rst") for name, _ in EXAMPLES)
    assert any(name.startswith("conf/") for name, _ in EXAMPLES)


@pytest.mark.parametrize(("where", "block"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_loads(
    where: str, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", INDEX)

    # Folder sources must exist: make each one under tmp_path and point there.
    def local(match: re.Match[str]) -> str:
        folder = tmp_path / match.group(2).lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        return f"{match.group(1)}{folder}"

    text = re.sub(r"^(path\s*=\s*)(/\S+)", local, block, flags=re.MULTILINE)
    conf = tmp_path / "example.conf"
    conf.write_text(text)
    config = load_config(conf, environ={})
    values = [config.index, str(config.cache_dir), config.prefix, config.bind]
    for source in config.sources:
        values += [source.url or "", str(source.path or ""), source.username or ""]
        values += list(source.allow)
    # A comment after a value never becomes part of it.
    for value in values:
        assert ";" not in value and "#" not in value and " " not in value, (where, value)
