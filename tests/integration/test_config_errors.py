"""Every configuration problem is one line on stderr naming the environment variable, exit 2."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import get_settings


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working folder (no .env) with a SQLite database in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'care.db'}")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _refused(*command: str) -> list[str]:
    result = CliRunner().invoke(app, list(command))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return result.stderr.strip().splitlines()


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "PORT",
            "eighty",
            "Configuration error: PORT: input should be a valid integer, unable to parse "
            "string as an integer (got 'eighty')",
        ),
        (
            "DISTRICT_TIMEZONE",
            "Mars/Olympus",
            "Configuration error: DISTRICT_TIMEZONE: unknown time zone 'Mars/Olympus' "
            "(use an IANA name)",
        ),
        (
            "SMTP_SECURITY",
            "ssl",
            "Configuration error: SMTP_SECURITY: input should be 'starttls', 'tls' or 'none' "
            "(got 'ssl')",
        ),
        (
            "IMAP_POLL_SECONDS",
            "0",
            "Configuration error: IMAP_POLL_SECONDS: input should be greater than or equal "
            "to 1 (got '0')",
        ),
        (
            "DATABASE_URL",
            "mysql://app:hunter2@db/care",
            "Configuration error: DATABASE_URL: not a PostgreSQL or SQLite URL; write "
            "postgresql://user:password@host:5432/name or sqlite:///path/to/devicecare.db",
        ),
        (
            "DATABASE_URL",
            "db.internal:5432",
            "Configuration error: DATABASE_URL: not a PostgreSQL or SQLite URL; write "
            "postgresql://user:password@host:5432/name or sqlite:///path/to/devicecare.db",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    folder: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, line: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert _refused("staff", "list") == [line]


def test_every_process_and_command_refuses_the_same_way(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEEKLY_DIGEST_TIME", "25:00")
    monkeypatch.setenv("FAMILY_LINK_DAYS", "forever")
    for command in (["web"], ["worker"], ["db", "upgrade"], ["config", "check"], ["demo"]):
        get_settings.cache_clear()
        lines = _refused(*command)
        assert [line.split(":")[1].strip() for line in lines] == [
            "WEEKLY_DIGEST_TIME",
            "FAMILY_LINK_DAYS",
        ]
    assert not (folder / "care.db").exists()  # refused before touching the database


def test_a_secret_is_never_repeated_back(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db:notaport/care")
    [line] = _refused("staff", "list")
    assert line.startswith("Configuration error: DATABASE_URL: ")
    assert "hunter2" not in line


def test_a_dotenv_that_is_not_utf8_is_one_line(folder: Path) -> None:
    (folder / ".env").write_bytes(b"SMTP_HOST=mail.example.org\nSMTP_FROM=Caf\xe9 <b@x.org>\n")
    assert _refused("staff", "list") == [
        f"Configuration error: {folder / '.env'} is not UTF-8 text (byte 0xe9 on line 2); "
        "save it as UTF-8"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_dotenv_is_one_line(folder: Path) -> None:
    dotenv = folder / ".env"
    dotenv.write_text("PORT=3000\n")
    dotenv.chmod(0)
    assert _refused("staff", "list") == [
        f"Configuration error: can't read {dotenv}: Permission denied"
    ]


def test_dotenv_values_are_read_and_checked_like_the_environment(folder: Path) -> None:
    (folder / ".env").write_text("PORT=3000\nSMTP_PORT=twenty-five\n", encoding="utf-8")
    assert _refused("staff", "list") == [
        "Configuration error: SMTP_PORT: input should be a valid integer, unable to parse "
        "string as an integer (got 'twenty-five')"
    ]


@pytest.mark.parametrize(
    "given", ["postgres://app:pw@db.internal:5432/care", "postgresql://app:pw@db.internal/care"]
)
def test_platform_database_urls_are_accepted(
    folder: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    assert get_settings().database_url.startswith("postgresql+asyncpg://app:pw@db.internal")
