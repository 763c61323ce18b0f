"""`devicecare privacy export | erase` on the demo district, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import JSON, String, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from typer.testing import CliRunner

from bot.cli import app
from bot.runtime import build_runtime
from bot.settings import get_settings
from bot.web.app import create_web_app
from storage import models as m
from storage.db import create_engine, session_factory
from tests.conftest import NOW

FAMILY = "maria.rivera@example.org"
# Everything that named the Rivera family before the erasure.
ORIGINALS = [
    "Maria",
    "Rivera",
    "Ana Rivera",
    "Luis Rivera",
    FAMILY,
    "ana.rivera@students.example.org",
    "DEMO-1001",
    "DEMO-1002",
    "DEMO-G1001",
]


@pytest.fixture
def cli(
    engine: AsyncEngine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BLOB_DIR", str(tmp_path / "blobs"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args))


@asynccontextmanager
async def _connect(url: str) -> AsyncIterator[AsyncConnection]:
    # Its own engine in each event loop: the CLI runs in loops of its own.
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def _texts(url: str) -> list[tuple[str, str]]:
    """Every text and JSON value in the database, with the table it is in."""
    found: list[tuple[str, str]] = []
    async with _connect(url) as conn:
        for table in m.Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | JSON)]
            columns += [c for c in table.columns if isinstance(getattr(c.type, "impl", None), JSON)]
            if not columns:
                continue
            for row in (await conn.execute(select(*columns))).all():
                found += [(table.name, json.dumps(v)) for v in row if v is not None]
    return found


async def _money(url: str) -> tuple[Any, ...]:
    async with _connect(url) as conn:
        invoices = (
            await conn.execute(
                select(
                    func.count(m.Invoice.id),
                    func.sum(m.Invoice.total_cents),
                    func.sum(m.Invoice.paid_cents),
                    func.sum(m.Invoice.waived_cents),
                )
            )
        ).one()
        payments = (await conn.execute(select(func.sum(m.Payment.amount_cents)))).scalar_one()
        numbers = (await conn.execute(select(m.Invoice.number).order_by(m.Invoice.id))).all()
        activity = (await conn.execute(select(func.count(m.ActivityEntry.id)))).scalar_one()
    return (*invoices, payments, tuple(numbers)), activity


async def _page_status(path: str) -> tuple[int, str]:
    runtime = build_runtime(get_settings())
    try:
        transport = httpx.ASGITransport(app=create_web_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://dc.test") as http:
            response = await http.get(path)
            return response.status_code, response.text
    finally:
        await runtime.close()


def test_export_then_erase_a_departed_family(
    cli: CliRunner, database_url: str, tmp_path: Path
) -> None:
    loaded = run(cli, "demo")
    assert loaded.exit_code == 0, loaded.output
    link = loaded.output.split("A Spanish-speaking family's page: ")[1].split()[0]
    path = "/family/" + link.split("/family/")[1]
    assert run(cli, "staff", "add", "admin@demo.example.org", "--role", "Admin").exit_code == 0

    # Export: everything about the family, photos copied out of the blob store.
    exported = run(cli, "privacy", "export", "--guardian", FAMILY.upper(), "--out", "out")
    assert exported.exit_code == 0, exported.output
    [folder] = (tmp_path / "out").iterdir()
    data = json.loads((folder / "family.json").read_text())
    assert [g["email"] for g in data["guardians"]] == [FAMILY]
    assert {s["first_name"] for s in data["students"]} == {"Ana", "Luis"}
    for section in (
        "invoices",
        "payments",
        "waivers_and_refunds",
        "insurance_enrollments",
        "incidents",
        "photos",
        "notices_sent",
        "mail_received",
        "activity_log",
        "device_assignments",
        "devices",
    ):
        assert data[section], section
    photos = list((folder / "photos").iterdir())
    assert len(photos) == len(data["photos"]) >= 3
    assert photos[0].read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
    assert "Hola" in data["mail_received"][0]["body_text"]
    assert "Patel" not in json.dumps(data)  # nothing of another family

    zipped = run(cli, "privacy", "export", "--guardian", FAMILY, "--out", "zipped", "--zip")
    assert zipped.exit_code == 0, zipped.output
    [archive] = (tmp_path / "zipped").iterdir()
    with zipfile.ZipFile(archive) as z:
        assert "family.json" in z.namelist() and any(n.startswith("photos/") for n in z.namelist())
    assert archive.stat().st_mode & 0o077 == 0  # readable by whoever exported it only
    refused = run(
        cli,
        "privacy",
        "export",
        "--guardian",
        FAMILY,
        "--as",
        "tech@demo.example.org",
        "--out",
        "refused",
    )
    assert refused.exit_code == 1 and "Manage Family Data" in refused.output
    assert not (tmp_path / "refused").exists()

    unknown = run(cli, "privacy", "export", "--guardian", "nobody@example.org", "--out", "none")
    assert unknown.exit_code == 1 and "No guardian has the email" in unknown.output
    assert not (tmp_path / "none").exists()

    money_before, activity_before = asyncio.run(_money(database_url))
    assert asyncio.run(_page_status(path))[0] == 200

    # Refused: a role without Manage Family Data, then an open balance without --force.
    denied = run(
        cli, "privacy", "erase", "--guardian", FAMILY, "--as", "tech@demo.example.org", "--yes"
    )
    assert denied.exit_code == 1 and "Manage Family Data" in denied.output
    owing = run(
        cli, "privacy", "erase", "--guardian", FAMILY, "--as", "admin@demo.example.org", "--yes"
    )
    assert owing.exit_code == 1 and "still owes" in owing.output
    assert asyncio.run(_money(database_url))[0] == money_before

    erased = run(
        cli,
        "privacy",
        "erase",
        "--guardian",
        FAMILY,
        "--as",
        "admin@demo.example.org",
        "--yes",
        "--force",
    )
    assert erased.exit_code == 0, erased.output
    assert "ERASED-00001" in erased.output

    # The ledger and audit trail are whole; nothing names the family any more.
    money_after, activity_after = asyncio.run(_money(database_url))
    assert money_after == money_before
    assert activity_after == activity_before + 3  # two refusals and the erasure itself
    check = run(cli, "ledger", "check")
    assert check.exit_code == 0 and "all consistent" in check.output, check.output
    texts = asyncio.run(_texts(database_url))
    left = [(t, v[:120]) for t, v in texts for o in ORIGINALS if o.lower() in v.lower()]
    assert left == []
    assert any("ERASED-00001" in v for t, v in texts if t == "activity_log")

    async def audit() -> list[tuple[str, str, str | None]]:
        async with _connect(database_url) as conn:
            rows = await conn.execute(
                select(m.ActivityEntry.actor_label, m.ActivityEntry.action, m.ActivityEntry.comment)
                .where(m.ActivityEntry.entity_type.in_(["security", "privacy_erasure"]))
                .order_by(m.ActivityEntry.id)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    async def unsent() -> list[str]:
        async with _connect(database_url) as conn:
            rows = await conn.execute(
                select(m.Notice.status).where(m.Notice.to_address.like("%@erased.invalid"))
            )
            return list(rows.scalars())

    statuses = asyncio.run(unsent())
    assert statuses and set(statuses) <= {"sent", "withdrawn"}  # nothing more goes to them

    entries = asyncio.run(audit())
    assert [a for _, a, _ in entries] == ["refused", "refused", "refused", "family_erased"]
    assert "privacy export" in (entries[0][2] or "")
    assert "privacy erase" in (entries[1][2] or "")

    # The family link no longer opens; an export finds nobody; erasing again finds nobody.
    assert asyncio.run(_page_status(path))[0] == 404
    again = run(cli, "privacy", "export", "--guardian", FAMILY, "--out", "after")
    assert again.exit_code == 1 and not (tmp_path / "after").exists()
    twice = run(
        cli, "privacy", "erase", "--guardian", FAMILY, "--as", "admin@demo.example.org", "--yes"
    )
    assert twice.exit_code == 1
    # Received mail is gone from the blob store too.
    assert not any(
        "Hola" in p.read_bytes().decode("latin-1")
        for p in (tmp_path / "blobs").rglob("*")
        if p.is_file()
    )


async def test_activity_log_stays_append_only_outside_an_erasure(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session:
        session.add(m.ActivityEntry(at=NOW, actor_label="x", entity_type="t", action="a"))
        await session.commit()
    async with session_factory(engine)() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(update(m.ActivityEntry).values(comment="changed"))
        await session.rollback()
    async with session_factory(engine)() as session:
        # An erasure row that has finished opens nothing either.
        session.add(
            m.PrivacyErasure(
                pseudonym="ERASED-00009", erased_by_label="x", started_at=NOW, finished_at=NOW
            )
        )
        await session.flush()
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(update(m.ActivityEntry).values(comment="changed"))
        await session.rollback()


def test_upgrade_gives_the_shipped_admin_role_manage_family_data(tmp_path: Path) -> None:
    from sqlalchemy import create_engine as create_sync_engine
    from sqlalchemy import insert

    from storage.migrate import upgrade

    path = tmp_path / "old.db"
    upgrade(f"sqlite+aiosqlite:///{path}", "0012")
    sync = create_sync_engine(f"sqlite:///{path}")
    roles = m.Role.__table__
    with sync.begin() as conn:
        for name, built_in in (("Admin", True), ("Technician", True), ("Custom", False)):
            conn.execute(
                insert(roles).values(
                    name=name,
                    permissions=["view_reports"],
                    allowed_statuses=[],
                    is_superadmin=False,
                    built_in=built_in,
                )
            )
    upgrade(f"sqlite+aiosqlite:///{path}")
    with sync.connect() as conn:
        granted = dict(conn.execute(select(roles.c.name, roles.c.permissions)).all())
    sync.dispose()
    assert granted == {
        "Admin": ["manage_family_data", "view_reports"],
        "Technician": ["view_reports"],
        "Custom": ["view_reports"],
    }
