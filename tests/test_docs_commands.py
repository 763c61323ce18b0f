"""Every `devicecare …` command the README and the docs name exists in the command line.

The words after `devicecare` are followed down the command tree (`devicecare billing pause add`)
for as long as they name subcommands; a word that should name a subcommand and doesn't fails the
test, with the file and line. Options and arguments after the command aren't checked: the
generated CLI reference lists those.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from bot.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# `devicecare` then the words of a command: lowercase words, as typed in a shell.
MENTION = re.compile(r"(?<![\w./-])devicecare((?: [a-z][a-z-]*)+)")
OPTION_VALUE = re.compile(r"--[\w-]+\s+$")


def command_tree() -> Any:
    return typer.main.get_command(app)


def unknown_command(words: list[str], root: Any) -> str | None:
    """What is wrong with `devicecare <words…>`, or None when it names a real command."""
    command, path = root, ["devicecare"]
    with root.context_class(root, info_name="devicecare") as ctx:
        for word in words:
            if not hasattr(command, "list_commands"):
                return None  # a command: the rest are its arguments
            sub = command.get_command(ctx, word)
            if sub is None:
                known = ", ".join(command.list_commands(ctx))
                return f"`{' '.join(path)}` has no command {word!r} (it has: {known})"
            command, path = sub, [*path, word]
            ctx = sub.context_class(sub, info_name=word, parent=ctx)
    return None


def mentions() -> list[tuple[str, int, list[str]]]:
    found = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for match in MENTION.finditer(line):
                if OPTION_VALUE.search(line[: match.start()]):
                    continue  # `--owner devicecare`: a value (a database or user name)
                found.append((str(page.relative_to(ROOT)), number, match.group(1).split()))
    return found


def test_the_docs_name_commands() -> None:
    # The pattern finds what it should: without mentions, the test below would prove nothing.
    assert len(mentions()) > 50


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["billing", "pause", "add"], None),
        (["staff", "add", "you"], None),
        (["report"], None),
        (["ledger", "balance"], "has no command 'balance'"),
        (["frobnicate"], "has no command 'frobnicate'"),
    ],
)
def test_a_command_is_checked_word_by_word(words: list[str], expected: str | None) -> None:
    problem = unknown_command(words, command_tree())
    assert problem == expected if expected is None else expected in (problem or "")


def test_every_command_the_docs_name_exists() -> None:
    root = command_tree()
    problems = []
    for page, number, words in mentions():
        problem = unknown_command(words, root)
        if problem is not None:
            problems.append(f"{page}:{number}: devicecare {' '.join(words)}: {problem}")
    assert not problems, "\n".join(problems)
