"""`devicecare config check` against a real database, aiosmtpd and Dovecot."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from bot.cli import app
from bot.cli.config_check import mask_url
from bot.settings import get_settings
from storage.migrate import shipped_head
from tests.conftest import PG_URL, _admin, _pg_unavailable_reason
from tests.mail.dovecot import Dovecot
from tests.mail.smtp_server import SmtpServer, free_port

HEAD = shipped_head()
SMTP_PASSWORD = "smtp-s3cret-pw"
SECRET_KEY = "a-long-secret-key-for-the-config-check-test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def smtp(ca: trustme.CA) -> Iterator[SmtpServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = SmtpServer(starttls=context, logins={"notices": SMTP_PASSWORD}).start()
    yield server
    server.stop()


@pytest.fixture
def env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ca: trustme.CA,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mailbox: str,
) -> Iterator[pytest.MonkeyPatch]:
    """Everything configured and working: SMTP with STARTTLS and a login, IMAP, SQLite."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.chdir(tmp_path)
    values = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'care.db'}",
        "SECRET_KEY": SECRET_KEY,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "SMTP_SECURITY": "starttls",
        "SMTP_USERNAME": "notices",
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "SMTP_CA_FILE": str(ca_file),
        "SMTP_FROM": "Billing <billing@district.example.org>",
        "IMAP_HOST": dovecot.host,
        "IMAP_PORT": str(dovecot.imap_port),
        "IMAP_SECURITY": "none",
        "IMAP_USERNAME": dovecot.user,
        "IMAP_PASSWORD": dovecot.password,
        "IMAP_MAILBOX": mailbox,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def _check() -> tuple[int, str, dict[str, str]]:
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["config", "check"])
    checks = result.stdout.split("Checks:\n", 1)[1]
    parts = {line.split()[0]: line.strip() for line in checks.splitlines() if line.strip()}
    return result.exit_code, result.stdout, parts


def test_everything_configured_and_working(
    env: pytest.MonkeyPatch, smtp: SmtpServer, dovecot: Dovecot, sqlite_template: Path
) -> None:
    shutil.copy(sqlite_template, Path.cwd() / "care.db")
    code, out, parts = _check()
    assert code == 0, out
    assert parts["database"].startswith("database  ok      SQLite")
    assert parts["database"].endswith(f"schema at {HEAD} (current)")
    assert parts["smtp"] == (
        f"smtp      ok      127.0.0.1:{smtp.port}, EHLO, STARTTLS, logged in as notices"
    )
    assert parts["imap"].startswith(
        f"imap      ok      127.0.0.1:{dovecot.imap_port}, no TLS, logged in as parents"
    )
    assert parts["secret"] == "secret    ok      SECRET_KEY is strong enough to go live"
    assert smtp.messages == []  # connected and logged in; nothing sent
    for secret in (SMTP_PASSWORD, SECRET_KEY, dovecot.password):
        assert secret not in out
    assert "  SMTP_PASSWORD " in out and "  SECRET_KEY " in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.startswith("  ")}
    assert lines["SMTP_PASSWORD"].split()[1:] == ["(set,", "hidden)", "environment"]
    assert lines["SMTP_PORT"].split()[1:] == [str(smtp.port), "environment"]
    assert lines["IMAP_POLL_SECONDS"].split()[1:] == ["60", "default"]


def test_failures_are_one_line_each_and_exit_1(env: pytest.MonkeyPatch, dovecot: Dovecot) -> None:
    env.setenv("SMTP_PASSWORD", "wrong")
    env.setenv("IMAP_MAILBOX", "No such folder")
    code, out, parts = _check()
    assert code == 1, out
    assert parts["smtp"].startswith("smtp      failed  SMTP login refused: 535")
    assert parts["imap"].startswith("imap      failed  can't open folder 'No such folder'")
    # SQLite that doesn't exist yet is fine: the first start creates and upgrades it.
    assert parts["database"].startswith("database  ok      SQLite file")
    assert not (Path.cwd() / "care.db").exists()  # and the check didn't create it

    env.setenv("SMTP_PORT", str(free_port()))
    env.setenv("IMAP_PASSWORD", "wrong")  # last: Dovecot slows the next logins down a little
    code, out, parts = _check()
    assert code == 1, out
    assert parts["smtp"].startswith("smtp      failed  can't reach SMTP server 127.0.0.1:")
    assert parts["imap"].startswith(f"imap      failed  IMAP login refused for {dovecot.user}")


def test_parts_that_are_off_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("SMTP_HOST", "IMAP_HOST", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    code, out, parts = _check()
    assert code == 0, out
    assert parts["smtp"] == "smtp      off     set SMTP_HOST and SMTP_FROM to send notices"
    assert parts["imap"].startswith("imap      off     set IMAP_HOST, IMAP_USERNAME")
    assert parts["secret"].startswith("secret    ok      good enough on this machine only")


def test_a_weak_secret_key_fails_the_check(env: pytest.MonkeyPatch) -> None:
    env.setenv("SECRET_KEY", "too-short")
    code, out, parts = _check()
    assert code == 1, out
    assert parts["secret"].startswith("secret    failed  SECRET_KEY is 9 characters long")
    assert "too-short" not in out


@pytest.fixture
def empty_pg() -> Iterator[str]:
    reason = _pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"devicecare_check_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.postgres
def test_postgres_url_with_a_password_is_masked_and_its_schema_checked(
    env: pytest.MonkeyPatch, empty_pg: str
) -> None:
    server = make_url(PG_URL)
    # postgres:// as platforms write it; the test server trusts local users, whatever password.
    url = f"postgres://{server.username}:db-pa55word@{server.host}:{server.port}/{empty_pg}"
    env.setenv("DATABASE_URL", url)
    code, out, parts = _check()
    assert code == 1, out
    assert "db-pa55word" not in out
    assert f"postgresql+asyncpg://{server.username}:***@{server.host}" in out
    assert parts["database"].endswith(
        "The database has no DeviceCare schema yet: run `devicecare db upgrade`."
    )

    assert CliRunner().invoke(app, ["db", "upgrade"]).exit_code == 0
    code, out, parts = _check()
    assert code == 0, out
    assert parts["database"].startswith("database  ok      PostgreSQL ")
    assert parts["database"].endswith(f"/{empty_pg}, schema at {HEAD} (current)")


def test_an_unreachable_database_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/care")
    code, out, parts = _check()
    assert code == 1, out
    assert parts["database"].startswith(
        "database  failed  can't connect to 127.0.0.1:1/care: [Errno 111]"
    )
    assert "hunter2" not in out


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host/x", "https://user:***@host/x"),
        ("https://key@o1.ingest.sentry.io/2", "https://key@o1.ingest.sentry.io/2"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown
