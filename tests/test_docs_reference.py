"""The generated references list every setting and every command the code defines.

The MkDocs hook (docs/hooks/reference.py) writes them at build time; these tests hold it to
listing everything, so a variable or command added later appears without anyone editing a page.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import typer
from pydantic import BaseModel, Field

from bot.cli import app
from bot.settings import Settings

HOOK = Path(__file__).resolve().parents[1] / "docs" / "hooks" / "reference.py"


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_paths(command: Any, ctx: Any) -> list[str]:
    paths = [ctx.command_path]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                paths += command_paths(sub, sub.context_class(sub, info_name=name, parent=ctx))
    return paths


def test_every_setting_is_in_the_environment_reference() -> None:
    page = load_hook().environment_markdown()
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in page, name


def test_every_setting_is_described() -> None:
    hook = load_hook()
    comments = hook.field_comments(Settings)
    undescribed = [
        name
        for name, field in Settings.model_fields.items()
        if not (field.description or comments.get(name))
    ]
    assert undescribed == []


def test_every_command_is_in_the_cli_reference() -> None:
    page = load_hook().cli_markdown()
    root = typer.main.get_command(app)
    with root.context_class(root, info_name="devicecare") as ctx:
        paths = command_paths(root, ctx)
    assert len(paths) > 30
    for path in paths:
        assert f"# {path}\n" in page, path


def test_a_setting_without_a_description_takes_its_comment() -> None:
    class Example(BaseModel):
        # How many widgets to keep.
        widgets: int = Field(default=3, ge=1, le=9)
        described: str = Field(default="x", description="Said here.")

    hook = load_hook()
    assert hook.field_comments(Example) == {"widgets": "How many widgets to keep."}
    assert hook.value_hint(int, Example.model_fields["widgets"].metadata) == "From 1 to 9."


def test_table_cells_keep_code_and_escape_pipes() -> None:
    cell = load_hook().table_cell("text|json, or `a|b`\n  wrapped")
    assert cell == "text\\|json, or `a|b` wrapped"
