"""The README stays true: every setting and every CLI command it promises exists, and vice versa."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from entrypoints.cli import app
from payer_scoring.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _env_name(field: str) -> str:
    return "DATABASE_URL" if field == "database_url" else f"PAYER_SCORING_{field.upper()}"


def test_every_setting_is_in_the_configuration_table():
    table = README[README.index("## Configuration") :]
    missing = [_env_name(f) for f in Settings.model_fields if f"`{_env_name(f)}`" not in table]
    assert not missing, f"settings missing from README Configuration: {missing}"


def test_every_documented_setting_exists():
    documented = set(re.findall(r"`(PAYER_SCORING_[A-Z0-9_]+)`", README))
    known = {_env_name(f) for f in Settings.model_fields} | {"PAYER_SCORING_HOME"}
    assert documented <= known, f"README documents unknown settings: {sorted(documented - known)}"


def test_every_cli_command_is_documented():
    root = get_command(app)
    names = []
    for name, cmd in root.commands.items():
        sub = getattr(cmd, "commands", None)
        names += [f"{name} {s}" for s in sub] if sub else [name]
    missing = [n for n in names if f"payer-scoring {n}" not in README]
    assert not missing, f"commands missing from README: {missing}"


def test_env_example_lists_every_setting():
    env_example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    missing = [_env_name(f) for f in Settings.model_fields if f"{_env_name(f)}=" not in env_example]
    assert not missing, f"settings missing from .env.example: {missing}"
