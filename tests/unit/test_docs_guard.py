"""The README's supply-chain example loads as written (STYLE: test what the user will paste)."""

from pathlib import Path

from eggproxy.config import load_config

README = Path(__file__).resolve().parents[2] / "README.rst"


def _block_after(heading: str) -> str:
    """The first literal block of the README section called ``heading``."""
    text = README.read_text()
    section = text[text.index(heading + "\n") :]
    lines = section.split("::\n\n", 1)[1].splitlines()
    block = []
    for line in lines:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


def test_the_poisoned_releases_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "eggproxy.conf"
    # A folder source must exist: the example's folder, made under tmp_path.
    (tmp_path / "wheels").mkdir()
    block = _block_after("Keeping poisoned releases out")
    path.write_text(block.replace("path = /srv/wheels", f"path = {tmp_path}/wheels"))
    config = load_config(path, environ={"PIP_INDEX_URL": "https://up.test/simple/"})
    assert config.min_release_age == 7 * 86400
    assert config.min_release_age_exempt == {"our-tool", "our-lib"}
    assert config.blocklist == Path("/var/lib/eggproxy/malicious-packages/osv")
    assert config.deny == (("leftpad-ng", None), ("badlib", "2.3.1"))
    assert [(s.name, s.min_release_age) for s in config.sources] == [
        ("private", 0.0),
        ("public", None),
    ]
