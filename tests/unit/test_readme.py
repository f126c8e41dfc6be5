"""The README's configuration table and the settings code say the same thing."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lb_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]


def _table(heading: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_every_setting_is_in_the_readme_and_nothing_else_is() -> None:
    table = _table("Configuration")
    documented = set(re.findall(r"`(LBOP_[A-Z_]+)`", table))
    settings = {f"LBOP_{name.upper()}" for name in OperatorSettings.model_fields}
    assert settings - documented == set(), "settings missing from the README's table"
    assert documented - settings == set(), "the README documents settings that do not exist"


def test_every_chart_value_the_readme_names_exists() -> None:
    values = yaml.safe_load((ROOT / "charts" / "lb-operator" / "values.yaml").read_text())
    named = re.findall(r"\| `LBOP_[A-Z_]+`(?: / `LBOP_[A-Z_]+`)? \| `([a-zA-Z.]+)`", _table("Configuration"))
    assert len(named) >= 10, f"the table names only {named}"
    for path in named:
        node = values
        for key in path.split("."):
            assert isinstance(node, dict), f"chart value {path} does not exist"
            assert key in node, f"chart value {path} does not exist"
            node = node[key]
