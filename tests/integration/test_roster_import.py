"""Roster import from OneRoster CSVs and a Chromebook inventory, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from bot.cli.roster import import_command
from bot.settings import get_settings
from services.roster import (
    ASSIGNMENT_REASON,
    CsvFileError,
    ImportResult,
    RosterFileError,
    import_roster,
)
from storage import models as m
from storage.db import create_engine, session_factory
from storage.uow import UnitOfWorkFactory
from tests.builders import T0, add_district
from workflows.clock import FixedClock

FIXTURES = Path(__file__).parent.parent / "fixtures" / "roster"
DISTRICT = FIXTURES / "district"
NEXT_DAY = FIXTURES / "next_day"
BAD = FIXTURES / "bad"
JOINS = FIXTURES / "joins_household"

TABLES = (
    m.Building,
    m.Household,
    m.Student,
    m.Guardian,
    m.Guardianship,
    m.Device,
    m.DeviceAssignment,
)


async def run_import(
    stores: UnitOfWorkFactory, folder: Path, *, devices: bool = True, strict: bool = False
) -> ImportResult:
    return await import_roster(
        stores.sessions,
        folder,
        folder / "devices.csv" if devices else None,
        strict=strict,
        clock=stores.clock,
    )


async def row_counts(stores: UnitOfWorkFactory) -> dict[str, int]:
    async with stores.sessions() as session:
        return {
            model.__tablename__: (
                await session.execute(select(func.count()).select_from(model))
            ).scalar_one()
            for model in TABLES
        }


async def by_sis(stores: UnitOfWorkFactory, model: type[m.Student] | type[m.Guardian]) -> dict:
    async with stores.sessions() as session:
        return {row.sis_id: row for row in (await session.execute(select(model))).scalars()}


async def devices_by_serial(stores: UnitOfWorkFactory) -> dict[str, m.Device]:
    async with stores.sessions() as session:
        return {d.serial: d for d in (await session.execute(select(m.Device))).scalars()}


async def assignments(stores: UnitOfWorkFactory) -> list[m.DeviceAssignment]:
    async with stores.sessions() as session:
        stmt = select(m.DeviceAssignment).order_by(m.DeviceAssignment.id)
        return list((await session.execute(stmt)).scalars())


def totals(result: ImportResult, field: str) -> int:
    return sum(getattr(counts, field) for counts in result.counts().values())


# --- happy path -----------------------------------------------------------------------------


async def test_imports_a_district(stores: UnitOfWorkFactory) -> None:
    result = await run_import(stores, DISTRICT)

    assert result.problems == []
    assert result.written
    assert (result.buildings.created, result.buildings.skipped) == (2, 1)  # the district org
    assert result.students.created == 5
    assert result.guardians.created == 4
    assert result.other_users.skipped == 1  # the teacher
    assert result.households.created == 3
    assert result.guardianships.created == 5
    assert result.devices.created == 5
    assert result.assignments.created == 4

    async with stores.sessions() as session:
        buildings = {b.sis_id: b for b in (await session.execute(select(m.Building))).scalars()}
        households = {h.id: h.name for h in (await session.execute(select(m.Household))).scalars()}
        links = {
            (g.guardian_id, g.student_id): g.relationship_kind
            for g in (await session.execute(select(m.Guardianship))).scalars()
        }
    assert {sis: b.name for sis, b in buildings.items()} == {
        "org-hms": "Hillcrest Middle School",
        "org-res": "Riverside Elementary",
    }
    hms, res = buildings["org-hms"].id, buildings["org-res"].id

    students = await by_sis(stores, m.Student)
    ana, zoe = students["stu-1"], students["stu-5"]
    assert (ana.first_name, ana.last_name, ana.grade, ana.building_id) == (
        "Ana",
        "Rivera",
        "7",
        hms,
    )
    assert ana.email == "ana.rivera@students.example.org"
    assert students["stu-4"].grade == "KG"
    # The first school among the orgs (the district comes first), the first of the grades.
    assert (zoe.building_id, zoe.grade, zoe.household_id) == (hms, "8", None)
    assert all(s.active for s in students.values())

    guardians = await by_sis(stores, m.Guardian)
    assert guardians["par-1"].phone == "555-0101"
    assert guardians["par-3"].phone == "555-0103"  # from sms when phone is blank
    assert guardians["par-3"].email is None

    # Links from both sides, the pair named twice (stu-1 <-> par-1) stored once.
    pairs = {
        (g, s): links[(guardians[g].id, students[s].id)]
        for g, s in [
            ("par-1", "stu-1"),
            ("par-1", "stu-2"),
            ("par-2", "stu-3"),
            ("par-3", "stu-3"),
            ("par-4", "stu-4"),
        ]
    }
    assert pairs == {
        ("par-1", "stu-1"): "parent",
        ("par-1", "stu-2"): "parent",
        ("par-2", "stu-3"): "guardian",
        ("par-3", "stu-3"): "relative",
        ("par-4", "stu-4"): "parent",
    }

    # Siblings share their guardian's household; each family got exactly one.
    rivera = students["stu-1"].household_id
    assert rivera is not None and households[rivera] == "Rivera family"
    assert students["stu-2"].household_id == guardians["par-1"].household_id == rivera
    chen = students["stu-3"].household_id
    assert households[chen] == "Chen family"
    assert guardians["par-2"].household_id == guardians["par-3"].household_id == chen
    assert households[students["stu-4"].household_id] == "Patel family"

    devices = await devices_by_serial(stores)
    assert {s: (d.kind, d.status, d.building_id) for s, d in devices.items()} == {
        "5CD0001": ("chromebook", "in_service", hms),  # location by building name
        "DMPX0002": ("ipad", "in_service", res),  # location by sis id
        "PF0003": ("chromebook", "in_service", hms),  # "CB" in the model name
        "CN0004": ("laptop", "retired", None),  # DEPROVISIONED
        "5CD0005": ("chromebook", "in_service", res),  # name, any case
    }
    assert devices["5CD0001"].asset_tag == "HMS-0001"
    assert devices["CN0004"].asset_tag is None
    assert devices["5CD0001"].created_at == stores.clock.now()

    held = {a.device_id: a.student_id for a in await assignments(stores) if a.returned_at is None}
    assert held == {
        devices["5CD0001"].id: students["stu-1"].id,  # by email
        devices["DMPX0002"].id: students["stu-2"].id,  # by username
        devices["PF0003"].id: students["stu-3"].id,  # by sourcedId
        devices["5CD0005"].id: students["stu-4"].id,
    }


async def test_rerun_with_the_same_files_changes_nothing(stores: UnitOfWorkFactory) -> None:
    first = await run_import(stores, DISTRICT)
    before = await row_counts(stores)
    first_run_at = stores.clock.now()
    stores.clock.advance(days=1)  # type: ignore[attr-defined]

    second = await run_import(stores, DISTRICT)

    assert totals(second, "created") == 0
    assert totals(second, "updated") == 0
    assert totals(second, "unchanged") == totals(first, "created") - first.households.created
    assert second.problems == []
    assert await row_counts(stores) == before
    assert all(a.assigned_at == first_run_at for a in await assignments(stores))


async def test_students_without_a_device_file(stores: UnitOfWorkFactory) -> None:
    result = await run_import(stores, DISTRICT, devices=False)

    assert result.students.created == 5
    assert result.devices.created == 0
    assert (await row_counts(stores))["devices"] == 0


# --- problems -------------------------------------------------------------------------------

EXPECTED_PROBLEMS = [
    ("orgs.csv", 4, "missing sourcedId"),
    ("orgs.csv", 5, "unknown org type 'galaxy'"),
    ("users.csv", 3, "missing sourcedId"),
    ("users.csv", 4, "unknown role 'janitor'"),
    ("users.csv", 5, "unknown org 'org-nowhere'"),
    ("users.csv", 6, "bad grade '14x'"),
    ("users.csv", 7, "agentSourcedId 'par-ghost' names nobody"),
    ("users.csv", 8, "agentSourcedId 'stu-ghost' names nobody"),
    ("users.csv", 9, "duplicate sourcedId stu-10 (first on line 2)"),
    ("devices.csv", 3, "empty serialNumber"),
    ("devices.csv", 4, "duplicate serial JH0001 (first on line 2)"),
    ("devices.csv", 5, "annotatedUser 'nobody@example.org' names no student"),
    ("devices.csv", 6, "annotatedLocation 'Atlantis Academy' names no single building"),
    ("devices.csv", 7, "duplicate asset tag JHS-0001 (first on line 2)"),
]


async def test_bad_rows_are_reported_and_good_rows_import(stores: UnitOfWorkFactory) -> None:
    result = await run_import(stores, BAD)

    assert [(p.file, p.line, p.reason) for p in result.problems] == EXPECTED_PROBLEMS
    assert str(result.problems[0]) == "orgs.csv:4: missing sourcedId"
    assert result.written
    assert result.students.created == 2  # stu-10, and stu-13 despite its unknown agent
    assert result.students.skipped == 5  # no id, unknown org, bad grade, repeat, tobedeleted
    assert result.other_users.skipped == 2  # the janitor (unknown role) and the teacher
    assert result.devices.created == 2  # JH0001, and JH0003 without its unknown user
    assert result.devices.skipped == 4

    students = await by_sis(stores, m.Student)
    assert set(students) == {"stu-10", "stu-13"}
    guardians = await by_sis(stores, m.Guardian)
    assert set(guardians) == {"par-10"}
    assert students["stu-10"].household_id == guardians["par-10"].household_id is not None
    devices = await devices_by_serial(stores)
    assert set(devices) == {"JH0001", "JH0003"}
    held = [(a.device_id, a.student_id) for a in await assignments(stores)]
    assert held == [(devices["JH0001"].id, students["stu-10"].id)]


async def test_strict_mode_writes_nothing(stores: UnitOfWorkFactory) -> None:
    before = await row_counts(stores)

    result = await run_import(stores, BAD, strict=True)

    assert not result.written
    assert result.strict
    assert [(p.file, p.line, p.reason) for p in result.problems] == EXPECTED_PROBLEMS
    assert await row_counts(stores) == before


async def test_strict_mode_writes_a_clean_roster(stores: UnitOfWorkFactory) -> None:
    result = await run_import(stores, DISTRICT, strict=True)

    assert result.written and result.ok
    assert (await row_counts(stores))["students"] == 5


async def test_missing_roster_file_is_an_error(stores: UnitOfWorkFactory, tmp_path: Path) -> None:
    (tmp_path / "orgs.csv").write_text("sourcedId,name,type\n")
    with pytest.raises(RosterFileError, match="users.csv"):
        await import_roster(stores.sessions, tmp_path)


async def test_missing_column_refuses_the_import(stores: UnitOfWorkFactory, tmp_path: Path) -> None:
    (tmp_path / "orgs.csv").write_text("sourcedId,name\norg-1,Somewhere\n")
    (tmp_path / "users.csv").write_text((DISTRICT / "users.csv").read_text())
    before = await row_counts(stores)

    with pytest.raises(CsvFileError, match="orgs.csv has no column type"):
        await import_roster(stores.sessions, tmp_path, clock=stores.clock)

    assert await row_counts(stores) == before


async def test_unreadable_file_rolls_everything_back(
    stores: UnitOfWorkFactory, tmp_path: Path
) -> None:
    (tmp_path / "orgs.csv").write_text((DISTRICT / "orgs.csv").read_text())
    users = (DISTRICT / "users.csv").read_text().replace("Rivera", "Ni\u00f1o")
    (tmp_path / "users.csv").write_bytes(users.encode("latin-1"))  # not UTF-8
    before = await row_counts(stores)

    with pytest.raises(CsvFileError, match="users.csv line 2 is not UTF-8 text"):
        await import_roster(stores.sessions, tmp_path, clock=stores.clock)

    assert await row_counts(stores) == before  # the buildings saved first are gone too


# --- changes over time ----------------------------------------------------------------------


async def test_reassigned_device_closes_the_old_assignment(stores: UnitOfWorkFactory) -> None:
    await run_import(stores, DISTRICT)
    clock: FixedClock = stores.clock  # type: ignore[assignment]
    later = clock.advance(days=14)

    result = await run_import(stores, NEXT_DAY)

    assert (result.assignments.created, result.assignments.updated) == (1, 1)
    assert result.assignments.unchanged == 3
    students = await by_sis(stores, m.Student)
    device = (await devices_by_serial(stores))["5CD0001"]
    history = [a for a in await assignments(stores) if a.device_id == device.id]
    assert [(a.student_id, a.returned_at) for a in history] == [
        (students["stu-1"].id, later),
        (students["stu-5"].id, None),
    ]
    assert history[0].reason == history[1].reason == ASSIGNMENT_REASON
    assert history[1].assigned_at == later
    assert later.tzinfo is not None and history[0].returned_at.tzinfo is not None


async def test_tobedeleted_student_becomes_inactive(stores: UnitOfWorkFactory) -> None:
    await run_import(stores, DISTRICT)
    before = await row_counts(stores)

    result = await run_import(stores, NEXT_DAY, devices=False)

    assert (result.students.updated, result.students.unchanged) == (1, 4)
    students = await by_sis(stores, m.Student)
    assert students["stu-2"].active is False
    assert all(s.active for sis, s in students.items() if sis != "stu-2")
    assert await row_counts(stores) == before  # kept, with its guardianship and household


async def test_joins_existing_household_and_keeps_devicecare_state(
    stores: UnitOfWorkFactory,
) -> None:
    district = await add_district(stores)  # B1, S1 and G1 in the "Rivera family" household
    async with stores() as store:
        store.session.add(
            m.Device(serial="LOST0001", model="HP Chromebook 11 G9", status="lost", created_at=T0)
        )
        await store.commit()

    result = await run_import(stores, JOINS)

    assert result.problems == []
    assert result.buildings.unchanged == 1
    assert result.households.created == 0
    students = await by_sis(stores, m.Student)
    assert students["S2"].household_id == district.household_id  # G1's, by a link to the store
    async with stores.sessions() as session:
        kinds = (await session.execute(select(m.Guardianship.relationship_kind))).scalars()
        assert sorted(kinds) == ["guardian", "guardian"]
    devices = await devices_by_serial(stores)
    assert devices["LOST0001"].status == "lost"  # an export's ACTIVE doesn't undo "lost"
    assert devices["LOST0001"].asset_tag == "LMS-0099"
    existing = devices["5CD1234XYZ"]
    # Blank cells keep what is stored; a blank user leaves the assignment alone.
    assert (existing.model, existing.asset_tag) == ("HP Chromebook 11 G9", "LMS-0001")
    held = [(a.device_id, a.student_id, a.returned_at) for a in await assignments(stores)]
    assert held == [(district.device_id, district.student_id, None)]


async def test_asset_tag_of_another_device_is_refused(
    stores: UnitOfWorkFactory, tmp_path: Path
) -> None:
    await add_district(stores)  # 5CD1234XYZ carries LMS-0001
    inventory = tmp_path / "inventory.csv"
    inventory.write_text("SERIALNUMBER,AnnotatedAssetId,Model\nNEW0001,LMS-0001,iPad Air\n")

    result = await import_roster(stores.sessions, JOINS, inventory, clock=stores.clock)

    assert [str(p) for p in result.problems] == [
        "inventory.csv:2: asset tag LMS-0001 belongs to device 5CD1234XYZ"
    ]
    assert "NEW0001" not in await devices_by_serial(stores)


# --- command line ---------------------------------------------------------------------------


def cli() -> typer.Typer:
    """The command mounted as `import` on an app with a callback, as bot/cli/main.py does it."""
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("import")(import_command)
    return app


@pytest.fixture
def settings_url(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def test_cli_prints_the_summary(engine: AsyncEngine, database_url: str) -> None:
    args = ["import", str(DISTRICT), "--devices", str(DISTRICT / "devices.csv")]
    result = CliRunner().invoke(cli(), [*args, "--database-url", database_url])

    assert result.exit_code == 0, result.output
    assert "Roster import" in result.output
    assert "No problems." in result.output
    # created, updated, unchanged, skipped
    assert table_row(result.output, "students") == ["5", "0", "0", "0"]
    assert table_row(result.output, "devices") == ["5", "0", "0", "0"]
    assert table_row(result.output, "other users") == ["0", "0", "0", "1"]
    assert asyncio.run(_student_count(database_url)) == 5


def table_row(output: str, name: str) -> list[str]:
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if cells[0] == name:
            return cells[1:]
    raise AssertionError(f"no {name!r} row in:\n{output}")


def test_cli_strict_with_problems_exits_1(engine: AsyncEngine, settings_url: str) -> None:
    result = CliRunner().invoke(cli(), ["import", str(BAD), "--strict"])

    assert result.exit_code == 1, result.output
    assert "strict mode: nothing was written" in result.output
    assert "users.csv:4: unknown role 'janitor'" in result.output
    assert "Problems (9 in total)" in result.output  # no --devices: users and orgs only
    assert asyncio.run(_student_count(settings_url)) == 0


def test_cli_reports_a_missing_roster_file(tmp_path: Path, database_url: str) -> None:
    result = CliRunner().invoke(cli(), ["import", str(tmp_path), "--database-url", database_url])

    assert result.exit_code == 2
    assert "orgs.csv is missing" in result.output


async def _student_count(url: str) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            stmt = select(func.count()).select_from(m.Student)
            return (await session.execute(stmt)).scalar_one()
    finally:
        await engine.dispose()


def test_large_problem_lists_are_cut_at_50(tmp_path: Path) -> None:
    (tmp_path / "orgs.csv").write_text((DISTRICT / "orgs.csv").read_text())
    header = (DISTRICT / "users.csv").read_text().splitlines()[0]
    rows = [f"u-{i},active,,true,org-hms,janitor,,,A,B,,,,,,,," for i in range(60)]
    (tmp_path / "users.csv").write_text("\n".join([header, *rows]) + "\n")
    url = f"sqlite+aiosqlite:///{tmp_path / 'cut.db'}"

    result = CliRunner().invoke(cli(), ["import", str(tmp_path), "--database-url", url])

    assert result.exit_code == 0, result.output
    assert "Problems (60 in total)" in result.output
    assert "users.csv:51:" in result.output and "users.csv:52:" not in result.output
    assert "… and 10 more" in result.output
