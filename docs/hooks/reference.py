"""MkDocs hook: the environment and command-line references, written from the code at build time.

`docs/reference/environment.md` and `docs/reference/cli.md` hold only a title and a note in
the repository; while the site is built, their text is replaced with tables read from
`bot.settings.Settings` and from the typer app's click command tree. A new setting or command
shows up in the next build, and one that is gone disappears, so the references cannot drift.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from datetime import time
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

ENVIRONMENT_PAGE = "reference/environment.md"
CLI_PAGE = "reference/cli.md"
# Options every command has, or that only concern shell completion: noise in a reference.
SKIPPED_OPTIONS = frozenset({"help", "install_completion", "show_completion"})


def on_config(config: Any) -> Any:
    # Import this checkout's code, not whatever `devicecare` the environment has installed.
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri == ENVIRONMENT_PAGE:
        return environment_markdown()
    if page.file.src_uri == CLI_PAGE:
        return cli_markdown()
    return markdown


# --- Markdown helpers -------------------------------------------------------------------------


def table_cell(text: str) -> str:
    """Text safe in a Markdown table cell: pipes outside code spans escaped, one line."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in parts)


def code(text: str) -> str:
    return f"``{text}``" if "`" in text else f"`{text}`"


# --- Environment variables --------------------------------------------------------------------


def environment_markdown() -> str:
    from bot.settings import Settings

    comments = field_comments(Settings)
    prefix = str(Settings.model_config.get("env_prefix") or "")
    rows = []
    for name, field in Settings.model_fields.items():
        env = env_name(name, field.validation_alias, prefix)
        if field.default_factory is not None:
            default = render_default(field.default_factory())  # type: ignore[call-arg]
        elif field.is_required():
            default = "required"
        else:
            default = render_default(field.default)
        description = field.description or comments.get(name, "")
        hint = value_hint(field.annotation, field.metadata)
        choices = re.findall(r"`[^`]+`", hint)
        if choices and all(choice in description for choice in choices):
            hint = ""  # the description already lists every choice
        text = " ".join(part for part in (description, hint) if part) or "—"
        rows.append(f"| {code(env)} | {table_cell(default)} | {table_cell(text)} |")
    return "\n".join(
        [
            "# Environment variables",
            "",
            "DeviceCare reads its configuration from environment variables, and from a `.env`"
            " file in the working directory when there is one (the environment wins). Names are"
            " not case-sensitive. Unset variables take the default shown; a part whose"
            " variables are unset (Slack, email out, email in, online payments) is off.",
            "",
            "This page is generated from `bot/settings.py` each time the documentation is"
            " built. District settings that can change while the service runs (billing"
            " automation, what families are told) live in the database instead: see the"
            " [admin guide](../admin-guide.md#settings).",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )


def env_name(name: str, alias: object, prefix: str) -> str:
    if isinstance(alias, str):
        return alias.upper()
    choices = getattr(alias, "choices", None)  # AliasChoices: the first is the documented one
    if choices and isinstance(choices[0], str):
        return choices[0].upper()
    return f"{prefix}{name}".upper()


def render_default(value: object) -> str:
    if value is None:
        return "—"
    if hasattr(value, "get_secret_value"):
        return "a public placeholder" if value.get_secret_value() else "—"
    if isinstance(value, bool):
        return code("true" if value else "false")
    if isinstance(value, time):
        return code(value.strftime("%H:%M"))
    if isinstance(value, list | tuple | set | frozenset):
        return code(",".join(str(v) for v in value)) if value else "—"
    if isinstance(value, float) and value.is_integer():
        return code(str(int(value)))
    return code(str(value)) if str(value) else '`""`'


def value_hint(annotation: object, metadata: list[Any]) -> str:
    """What values are taken: a Literal's choices, or a number's bounds."""
    for candidate in (annotation, *get_args(annotation)):
        if get_origin(candidate) is Literal:
            return "One of " + ", ".join(code(str(v)) for v in get_args(candidate)) + "."
    low = bound(metadata, "ge")
    high = bound(metadata, "le")
    if low is not None and high is not None:
        return f"From {low:,} to {high:,}."
    if low is not None:
        return f"At least {low:,}."
    if high is not None:
        return f"At most {high:,}."
    return ""


def bound(metadata: list[Any], name: str) -> Any:
    """A number bound (`ge`, `le`) from a field's annotated-types metadata, or None."""
    return next((getattr(m, name) for m in metadata if getattr(m, name, None) is not None), None)


def field_comments(cls: type) -> dict[str, str]:
    """The `#` comment lines just above each field in the class body: a fallback description."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^    (\w+)\s*:", line)
        if match and pending:
            found.setdefault(match.group(1), " ".join(pending))
        pending = []
    return found


# --- Command line -----------------------------------------------------------------------------


def cli_markdown() -> str:
    import typer

    from bot.cli import app

    # Typer may carry its own copy of click, so the tree is walked by duck typing and each
    # context is made by the command's own context class.
    root = typer.main.get_command(app)
    sections: list[str] = []
    with root.context_class(root, info_name="devicecare") as ctx:
        describe(ctx, depth=0, out=sections)
    return "\n".join(
        [
            "# Command line reference",
            "",
            "Every `devicecare` command and option, generated from the command line's own"
            " definitions each time the documentation is built. `devicecare COMMAND --help`"
            " prints the same. A tour with examples is in the"
            " [command line guide](../guides/command-line.md).",
            "",
            *sections,
        ]
    )


def describe(ctx: Any, depth: int, out: list[str]) -> None:
    command = ctx.command
    path = ctx.command_path
    level = "#" * max(2, min(depth + 1, 5))
    out += [f"{level} {path}" if depth else f"{level} devicecare", ""]
    help_text = clean_help(command.help or command.short_help or "")
    if help_text:
        out += [help_text, ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    out += ["```text", f"{path} {usage}".rstrip(), "```", ""]
    rows = []
    for param in command.get_params(ctx):
        if param.name in SKIPPED_OPTIONS:
            continue
        rows.append(param_row(param, ctx))
    if rows:
        out += ["| argument or option | meaning |", "|---|---|", *rows, ""]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            with sub.context_class(sub, info_name=name, parent=ctx) as sub_ctx:
                describe(sub_ctx, depth + 1, out)


def param_row(param: Any, ctx: Any) -> str:
    """One row, as `--help` shows the parameter: its spelling with metavar, then its help."""
    record = param.get_help_record(ctx)
    if record is None:  # a plain click argument has no help record
        record = (param.human_readable_name, "")
    names, meaning = record
    return f"| {code(names)} | {table_cell(clean_help(meaning)) or '—'} |"


def clean_help(text: str) -> str:
    """Help as click shows it, as Markdown: no `\\b` markers, paragraphs kept."""
    paragraphs = [p for p in inspect.cleandoc(text).replace("\b", "").split("\n\n") if p.strip()]
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)
