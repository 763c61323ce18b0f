"""Migrations are a release step: only `devicecare db upgrade` changes a PostgreSQL schema, and
every other command checks the schema first and stops with one line when it doesn't fit."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import get_settings
from storage.db import create_engine
from storage.migrate import SCHEMA_LOCK_KEY, alembic_config, upgrade
from tests.conftest import PG_URL, _admin, _pg_unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
_SCRIPTS = ScriptDirectory.from_config(alembic_config("sqlite://"))
HEAD = str(_SCRIPTS.get_current_head())  # the newest migration this code ships
BEHIND = str(_SCRIPTS.get_revision(HEAD).down_revision)  # the one before it
NO_SCHEMA = "The database has no DeviceCare schema yet: run `devicecare db upgrade`."


@pytest.fixture
def empty_pg() -> Iterator[str]:
    """A new, empty PostgreSQL database of its own (an asyncpg URL, as a district writes it)."""
    reason = _pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"devicecare_release_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no .env
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _env(database_url: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SMTP_", "IMAP_"))}
    return keep | {"DATABASE_URL": database_url, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}


def _devicecare(cwd: Path, database_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env=_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> str:
    """Read the process's log lines until one holds `needle`.

    A thread reads, not select(): select() sees only the pipe, and lines that arrived together
    wait in the reader's buffer where select() can't see them.
    """
    assert proc.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stderr, lines), daemon=True).start()
    seen = ""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; output so far:\n{seen}")


def _pump(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
    lines.put("")  # the end of the stream


def _upgrade_when_told(go: Any, results: Any) -> None:
    """One `devicecare db upgrade` in a process of its own (forked: no second import)."""
    get_settings.cache_clear()
    go.wait(30)
    result = CliRunner().invoke(app, ["db", "upgrade"])
    results.put((result.exit_code, result.stdout, result.stderr))


@pytest.mark.postgres
def test_six_upgrades_started_together_apply_once(
    empty_pg: str, tmp_path: Path, cli_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = empty_pg.replace("postgresql+asyncpg://", "postgres://")  # as platforms hand it out

    early = _devicecare(tmp_path, url, "worker")
    out, err = early.communicate(timeout=60)
    assert early.returncode == 2, out + err
    assert err.strip().splitlines() == [NO_SCHEMA]

    monkeypatch.setenv("DATABASE_URL", url)
    forks = multiprocessing.get_context("fork")
    go, results = forks.Event(), forks.Queue()
    runs = [forks.Process(target=_upgrade_when_told, args=(go, results)) for _ in range(6)]
    for run in runs:
        run.start()
    go.set()  # all six at once
    outputs = [results.get(timeout=120) for _ in runs]
    for run in runs:
        run.join(30)
        assert run.exitcode == 0
    for code, out, err in outputs:
        assert code == 0, out + err
        assert "Traceback" not in err, err
    applied = [out for _, out, _ in outputs if "Applied 0001: initial schema" in out]
    assert len(applied) == 1
    assert f"Applied {HEAD}:" in applied[0] and f"is up to date (at {HEAD})" in applied[0]
    others = [out for _, out, _ in outputs if out not in applied]
    assert all(f"is already up to date (at {HEAD})" in out for out in others), others
    assert not any("Applied" in out for out in others)

    later = _devicecare(tmp_path, url, "worker")
    try:
        _wait_for_line(later, "outbox worker")
    finally:
        later.send_signal(signal.SIGTERM)
        later.wait(timeout=20)  # the reading thread drains stderr to the end
    assert later.returncode == 0


@pytest.mark.postgres
def test_a_schema_behind_stops_every_command_until_it_is_upgraded(
    empty_pg: str, cli_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(empty_pg, BEHIND)
    monkeypatch.setenv("DATABASE_URL", empty_pg)
    runner = CliRunner()
    for command in (["staff", "list"], ["report", "automation"], ["ledger", "check"]):
        stopped = runner.invoke(app, command)
        assert stopped.exit_code == 2, stopped.output
        assert stopped.stderr.strip().splitlines() == [
            f"The database schema is at {BEHIND} but this version needs {HEAD}: "
            "run `devicecare db upgrade`."
        ]
    assert _revision(empty_pg) == BEHIND  # nothing migrated by itself

    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"Applied {HEAD}: " in upgraded.stdout
    assert f"Applied {BEHIND}" not in upgraded.stdout
    assert runner.invoke(app, ["staff", "list"]).exit_code == 0
    current = runner.invoke(app, ["db", "current"])
    assert current.exit_code == 0 and f"schema at {HEAD} (current)" in current.stdout


@pytest.mark.postgres
def test_a_database_ahead_of_the_code_is_one_line_and_left_alone(
    empty_pg: str, cli_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(empty_pg)
    _set_revision(empty_pg, "0099")  # what a newer DeviceCare would have left
    monkeypatch.setenv("DATABASE_URL", empty_pg)
    runner = CliRunner()
    for command in (["staff", "list"], ["db", "upgrade"]):
        stopped = runner.invoke(app, command)
        assert stopped.exit_code == 2, stopped.output
        [line] = stopped.stderr.strip().splitlines()
        assert line.startswith("The database schema is at 0099, newer than this version")
    assert _revision(empty_pg) == "0099"


@pytest.mark.postgres
async def test_an_upgrade_waits_while_another_holds_the_lock(empty_pg: str) -> None:
    waiting = threading.Event()
    engine = create_engine(empty_pg)
    try:
        async with engine.connect() as other:  # plays an upgrade that is running
            await other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            queued = asyncio.create_task(asyncio.to_thread(upgrade, empty_pg, on_wait=waiting.set))
            assert await asyncio.to_thread(waiting.wait, 30)
            await asyncio.sleep(0.2)
            assert not queued.done()  # still waiting, nothing applied
            await other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
        applied = await asyncio.wait_for(queued, 60)
    finally:
        await engine.dispose()
    assert [step.revision for step in applied][:2] == ["0001", "0002"]
    assert applied[-1].revision == HEAD
    assert await asyncio.to_thread(upgrade, empty_pg) == []  # and the lock was let go


def test_sqlite_commands_upgrade_by_themselves_but_never_past_the_code(
    sqlite_template: Path, tmp_path: Path, cli_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("DATABASE_URL", fresh)
    assert CliRunner().invoke(app, ["staff", "list"]).exit_code == 0
    assert _revision(fresh) == HEAD

    ahead = tmp_path / "ahead.db"
    shutil.copy(sqlite_template, ahead)
    _set_revision(f"sqlite+aiosqlite:///{ahead}", "0099")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{ahead}")
    get_settings.cache_clear()
    stopped = CliRunner().invoke(app, ["staff", "list"])
    assert stopped.exit_code == 2
    assert "newer than this version of DeviceCare" in stopped.stderr


def test_an_unreachable_database_is_one_line(cli_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/care")
    for command in (["staff", "list"], ["db", "upgrade"]):
        stopped = CliRunner().invoke(app, command)
        assert stopped.exit_code == 2
        [line] = stopped.stderr.strip().splitlines()
        assert line.startswith("Can't reach the database at 127.0.0.1:1/care: ")
        assert "hunter2" not in stopped.output


def _revision(url: str) -> str:
    async def read() -> str:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                value = await conn.scalar(text("SELECT version_num FROM alembic_version"))
                return str(value)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _set_revision(url: str, revision: str) -> None:
    async def write() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
                )
        finally:
            await engine.dispose()

    asyncio.run(write())
