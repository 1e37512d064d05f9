"""The README's reference tables agree with the code, so the documentation cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from bot.commands import PARSERS
from core.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def table_after(heading: str) -> list[list[str]]:
    """The body rows of the first Markdown table under `heading`, each as its stripped cells."""
    section = README.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = section.split("\n|", 1)[1].split("\n\n", 1)[0].splitlines()
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))] for line in lines[2:]]


def test_configuration_reference_lists_exactly_the_settings_with_their_defaults() -> None:
    """Every setting is documented under its environment name, with its real default where it is a scalar."""
    rows = table_after("## Configuration reference")
    documented = {row[0].strip("`"): row[1] for row in rows}
    fields = Settings.model_fields
    assert set(documented) == {name.upper() for name in fields}
    for name, field in fields.items():
        default = field.default
        if default is None:
            assert documented[name.upper()] == "unset", name
        elif isinstance(default, int | float | str) or type(default).__name__ in ("Decimal", "PosixPath"):
            assert documented[name.upper()] == f"`{default}`", name


def test_command_table_names_every_subcommand() -> None:
    """The README's command table covers every subcommand the parser knows."""
    commands = " ".join(row[0] for row in table_after("## Commands"))
    assert {name for name in PARSERS} <= set(re.findall(r"/tokens (\w+)", commands))
