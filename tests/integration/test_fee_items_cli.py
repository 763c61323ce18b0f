"""`devicecare fee-items …` against a real SQLite database: set and show each item's kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from storage import models as m


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    assert invoke("db", "upgrade").exit_code == 0
    yield db
    get_settings.cache_clear()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    return " ".join(result.output.split())


def _items(db: Path) -> dict[str, tuple[str, int, bool]]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(
            select(m.FeeItem.code, m.FeeItem.kind, m.FeeItem.price_cents, m.FeeItem.active)
        ).all()
    engine.dispose()
    return {code: (kind, cents, active) for code, kind, cents, active in rows}


def test_set_and_list_items_with_their_kinds(cli_env: Path) -> None:
    added = invoke(
        "fee-items", "set", "screen", "--name", "Screen replacement", "--amount", "125.00",
        "--kind", "damage",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "Added fee item screen: Screen replacement, damage, $125.00" in said(added)
    assert "offered on: incident invoice" in said(added)
    added = invoke(
        "fee-items", "set", "collect-screen", "--name", "Cracked screen", "--amount", "95",
        "--kind", "Collection",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "offered on: device collection" in said(added)

    moved = invoke("fee-items", "set", "screen", "--kind", "annual")
    assert moved.exit_code == 0, moved.output
    assert "Saved fee item screen: Screen replacement, annual, $125.00" in said(moved)
    assert "offered on: no form" in said(moved)
    assert _items(cli_env) == {
        "screen": ("annual", 12500, True),
        "collect-screen": ("collection", 9500, True),
    }

    listed = invoke("fee-items", "list", "--kind", "collection")
    assert listed.exit_code == 0, listed.output
    assert "Collection fees: offered on device collection" in said(listed)
    assert "collect-screen" in listed.output
    assert "Screen replacement" not in listed.output
    everything = invoke("fee-items", "list")
    assert "collect-screen" in everything.output and "screen" in everything.output

    retired = invoke("fee-items", "set", "screen", "--retired")
    assert retired.exit_code == 0, retired.output
    assert "Screen replacement" not in invoke("fee-items", "list").output
    assert "(retired)" in invoke("fee-items", "list", "--all").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--kind", "part"), "Unknown fee kind 'part'; use one of: damage, collection"),
        (("--amount", "12.345"), "more than two decimal places"),
        (("--name", "Thing"), "a new one needs a name, an amount and a kind"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    cli_env: Path, args: tuple[str, ...], message: str
) -> None:
    result = invoke("fee-items", "set", "thing", *args)
    assert result.exit_code == 1
    assert message in said(result)
    assert "Nothing was changed." in said(result)
    assert _items(cli_env) == {}


def test_list_refuses_an_unknown_kind(cli_env: Path) -> None:
    result = invoke("fee-items", "list", "--kind", "parts")
    assert result.exit_code == 1
    assert "Unknown fee kind" in said(result)
