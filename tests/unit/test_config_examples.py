"""The configuration examples users will paste: ``conf/eggproxy.conf`` and the README's."""

import re
from pathlib import Path

from eggproxy.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_conf_example_loads_with_the_defaults(tmp_path: Path) -> None:
    config = load_config(ROOT / "conf" / "eggproxy.conf", environ={"PIP_INDEX_URL": ""})
    assert config.stale_while_revalidate == 86400
    assert config.negative_ttl == 60
    assert config.index_ttl == 1800


def test_readme_freshness_example_loads(tmp_path: Path) -> None:
    readme = (ROOT / "README.rst").read_text()
    section = readme.split("Freshness, and what a slow or broken link feels like")[1]
    block = re.search(r"::\n\n((?:    .*\n|\n)+)", section)
    assert block is not None
    path = tmp_path / "eggproxy.conf"
    path.write_text("\n".join(line[4:] for line in block.group(1).splitlines()) + "\n")
    config = load_config(path, environ={})
    assert (config.index_ttl, config.stale_while_revalidate, config.negative_ttl) == (
        1800,
        86400,
        60,
    )
