"""The insurance and incident reports on a fixed district (tests/report_incident_district.py),
against figures worked out by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import date

import pytest
from sqlalchemy import func, select

from storage import models as m
from storage.reports import CATALOGUE, run_report
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.report_incident_district import TZ, build_report_district
from workflows.clock import FixedClock
from workflows.errors import PermissionDenied
from workflows.reports import Period, ReportFilters, ReportResult, require_report, visible_reports

TODAY = date(2026, 3, 2)
FEB = (date(2026, 2, 1), date(2026, 2, 28))
_ = None  # a blank cell / a period with no value


@pytest.fixture
async def district(stores: UnitOfWorkFactory, clock: FixedClock):  # type: ignore[no-untyped-def]
    return await build_report_district(stores, clock)


async def run(
    stores: UnitOfWorkFactory,
    name: str,
    span: tuple[date, date] = FEB,
    **filters: tuple[str, ...],
) -> ReportResult:
    async with stores() as store:
        result = await run_report(
            store.session,
            name,
            ReportFilters(date_from=span[0], date_to=span[1], **filters),
            tz=TZ,
            today=TODAY,
        )
        await store.commit()
        return result


def blanks(values: tuple[float, ...]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def feb_days(*days: int) -> list[float]:
    return [1.0 if d in days else 0.0 for d in range(1, 29)]


# --- incidents by type ----------------------------------------------------------------------


async def test_incidents_by_type(stores, district) -> None:  # type: ignore[no-untyped-def]
    result = await run(stores, "incidents-by-type")
    assert result.rows == [
        ("screen", 4, 57.1),
        ("physical_damage", 3, 42.9),
        ("lost", 1, 14.3),
        ("water", 1, 14.3),
    ]
    assert result.totals == {"incidents": 7}
    trend = result.trend
    assert trend is not None and trend.period is Period.DAY and len(trend.periods) == 28
    assert list(trend.series["Screen"]) == feb_days(2, 3, 16, 20)
    assert list(trend.series["Physical Damage"]) == feb_days(2, 9, 16)
    assert list(trend.series["Liquid Damage"]) == feb_days(10)
    assert list(trend.series["Lost"]) == feb_days(25)


async def test_incidents_by_type_filtered(stores, district) -> None:  # type: ignore[no-untyped-def]
    tenth = await run(stores, "incidents-by-type", grades=("10",))
    assert tenth.rows == [("lost", 1, 50.0), ("water", 1, 50.0)]
    hp = await run(
        stores, "incidents-by-type", buildings=("lincoln middle",), models=("HP Chromebook 11 G9",)
    )
    assert hp.rows == [("screen", 4, 80.0), ("physical_damage", 3, 60.0)]
    assert hp.totals == {"incidents": 5}
    # January holds only Cara's incident of January 20.
    january = await run(stores, "incidents-by-type", (date(2026, 1, 1), date(2026, 1, 31)))
    assert january.rows == [("physical_damage", 1, 100.0)]


# --- closure time ---------------------------------------------------------------------------


async def test_closure_time_by_week(stores, district) -> None:  # type: ignore[no-untyped-def]
    result = await run(stores, "closure-time", (date(2026, 2, 1), date(2026, 3, 31)))
    weeks = [date(2026, 1, 26), *(date(2026, 2, d) for d in (2, 9, 16, 23))]
    weeks += [date(2026, 3, d) for d in (2, 9, 16, 23, 30)]
    # Closed: #1 24 h (week of Feb 2); #2 6 h and #6 12 h (Feb 9); #3 48 h and #5 2 h (Feb 16).
    assert result.rows == [
        (weeks[0], 0, _),
        (weeks[1], 1, 24.0),
        (weeks[2], 2, 9.0),
        (weeks[3], 2, 25.0),
        *((w, 0, _) for w in weeks[4:]),
    ]
    assert result.totals == {"incidents_closed": 5}
    assert "Average time to closure: 18.4 hours." in result.summary  # 92 h / 5
    trend = result.trend
    assert trend is not None and trend.unit == "hours" and trend.period is Period.WEEK
    assert list(trend.periods) == weeks
    assert list(trend.series) == ["All incidents", "Physical Damage", "Screen", "Liquid Damage"]
    rest = [_] * 6
    assert blanks(trend.series["All incidents"]) == [_, 24.0, 9.0, 25.0, *rest]
    assert blanks(trend.series["Physical Damage"]) == [_, 24.0, 6.0, 48.0, *rest]
    assert blanks(trend.series["Screen"]) == [_, 24.0, _, 25.0, *rest]
    assert blanks(trend.series["Liquid Damage"]) == [_, _, 12.0, _, *rest]


async def test_closure_time_filters_and_district_days(stores, district) -> None:  # type: ignore[no-untyped-def]
    span = (date(2026, 2, 1), date(2026, 3, 31))
    washington = await run(stores, "closure-time", span, buildings=("Washington High",))
    assert [r for r in washington.rows if r[1]] == [(date(2026, 2, 9), 1, 12.0)]
    hp = await run(stores, "closure-time", span, models=("hp chromebook 11 g9",))
    assert hp.totals == {"incidents_closed": 4}
    assert "Average time to closure: 20.0 hours." in hp.summary  # (24 + 6 + 48 + 2) / 4
    # #6 closed at 21:00 on February 10 in Chicago, already the 11th in UTC.
    tenth = await run(stores, "closure-time", (date(2026, 2, 10), date(2026, 2, 10)))
    assert tenth.rows == [(date(2026, 2, 10), 1, 12.0)]
    eleventh = await run(stores, "closure-time", (date(2026, 2, 11), date(2026, 2, 11)))
    assert eleventh.rows == [(date(2026, 2, 11), 0, _)]
    assert eleventh.summary == ["No incidents closed (2026-02-11 to 2026-02-11)."]
    january = await run(stores, "closure-time", (date(2026, 1, 1), date(2026, 1, 31)))
    assert [r for r in january.rows if r[1]] == [(date(2026, 1, 21), 1, 24.0)]


# --- repeat offenders -----------------------------------------------------------------------

BEN_ROW = (
    "Cole, Ben",
    "S-BEN",
    "Lincoln Middle",
    "7",
    "screen",
    1,
    date(2026, 2, 20),
    date(2026, 2, 20),
)
ANA_ROW = (
    "Rivera, Ana",
    "S-ANA",
    "Lincoln Middle",
    "7",
    "physical_damage, screen",
    2,
    date(2026, 2, 16),
    date(2026, 2, 16),
)


async def test_repeat_offenders(stores, district) -> None:  # type: ignore[no-untyped-def]
    result = await run(stores, "repeat-offenders")
    assert result.rows == [BEN_ROW, ANA_ROW]  # the latest incident first
    assert result.totals == {"students": 2, "flags": 3}
    late = await run(stores, "repeat-offenders", (date(2026, 2, 17), date(2026, 2, 28)))
    assert late.rows == [BEN_ROW]
    early = await run(stores, "repeat-offenders", (date(2026, 2, 1), date(2026, 2, 16)))
    assert early.rows == [ANA_ROW]
    assert (await run(stores, "repeat-offenders", buildings=("Washington High",))).rows == []
    assert (await run(stores, "repeat-offenders", models=("Apple iPad (9th gen)",))).rows == []
    assert (await run(stores, "repeat-offenders", grades=("7",))).rows == [BEN_ROW, ANA_ROW]


# --- insurance ------------------------------------------------------------------------------

CARA = ("Diaz, Cara", "S-CARA", "Washington High", "10", "Basic Plan", "2025-2026")
DEV = ("Eng, Dev", "S-DEV", "Washington High", "10", "Basic Plan", "2025-2026")
EVE = ("Fox, Eve", "S-EVE", "Lincoln Middle", "8", "Device Protection Plan", "2025-2026")
BEN = ("Cole, Ben", "S-BEN", "Lincoln Middle", "7", "Device Protection Plan", "2025-2026")
ANA = ("Rivera, Ana", "S-ANA", "Lincoln Middle", "7", "Device Protection Plan", "2025-2026")
PAID_TERM = (date(2026, 1, 5), date(2026, 7, 31))  # coverage began the day it was paid
FULL_TERM = (date(2025, 8, 1), date(2026, 7, 31))


async def test_claims_utilization(stores, district) -> None:  # type: ignore[no-untyped-def]
    result = await run(stores, "claims-utilization")
    assert result.rows == [
        (*CARA, *PAID_TERM, "active", 1, _, _, 19000),
        (*DEV, *PAID_TERM, "cancelled", 0, _, _, 0),
        (*EVE, *FULL_TERM, "awaiting premium", 0, 2, 0.0, 0),
        # Ben's cancelled $80 invoice no longer counts as a claim.
        (*BEN, *PAID_TERM, "active", 1, 2, 50.0, 10000),
        # Ana's third invoice came at the cap and is no claim.
        (*ANA, *PAID_TERM, "active", 2, 2, 100.0, 12000),
    ]
    assert result.totals == {
        "enrollments": 5,
        "device_plans": 0,
        "claims": 4,
        "absorbed": 41000,
        "at_limit": 1,
    }
    assert "insurance absorbed $410.00" in result.summary[1]
    hp = await run(stores, "claims-utilization", models=("HP Chromebook 11 G9",))
    assert [r[0] for r in hp.rows] == ["Cole, Ben", "Rivera, Ana"]
    washington = await run(stores, "claims-utilization", buildings=("Washington High",))
    assert [r[0] for r in washington.rows] == ["Diaz, Cara", "Eng, Dev"]
    after = await run(stores, "claims-utilization", (date(2026, 8, 1), date(2026, 8, 31)))
    assert after.rows == [] and after.totals["absorbed"] == 0


async def test_enrollment_summary(stores, district) -> None:  # type: ignore[no-untyped-def]
    result = await run(stores, "enrollment-summary")
    # policy, term, enrollments, active, awaiting, cancelled, new, expiring,
    # premiums billed, collected, waived, outstanding, claims, absorbed
    assert result.rows == [
        ("Basic Plan", "2025-2026", 2, 1, 0, 1, 0, 0, 4000, 1500, 0, 2500, 1, 19000),
        ("Device Protection Plan", "2025-2026", 3, 2, 1, 0, 1, 0, 7500, 2500, 2500, 2500, 3, 22000),
    ]
    for row in result.rows:
        assert row[8] == row[9] + row[10] + row[11]  # billed = collected + waived + outstanding
    to_july = await run(stores, "enrollment-summary", (date(2026, 2, 1), date(2026, 7, 31)))
    assert [r[7] for r in to_july.rows] == [1, 3]  # Dev's cancelled enrollment isn't expiring
    january = await run(stores, "enrollment-summary", (date(2026, 1, 1), date(2026, 1, 31)))
    assert [r[6] for r in january.rows] == [2, 2]  # Eve enrolled in February
    lincoln = await run(stores, "enrollment-summary", buildings=("Lincoln Middle",))
    assert [r[:3] for r in lincoln.rows] == [("Device Protection Plan", "2025-2026", 3)]
    # Enrollments have no device, so choosing a model leaves nothing.
    assert (await run(stores, "enrollment-summary", models=("HP Chromebook 11 G9",))).rows == []


async def test_absorbed_dollars_agree_with_the_invoices(stores, district) -> None:  # type: ignore[no-untyped-def]
    async with stores() as store:
        covered = (
            await store.session.execute(
                select(func.sum(m.Invoice.insurance_cents)).where(m.Invoice.status != "cancelled")
            )
        ).scalar_one()
        await store.commit()
    utilization = await run(stores, "claims-utilization")
    summary = await run(stores, "enrollment-summary")
    assert covered == utilization.totals["absorbed"] == summary.totals["absorbed"] == 41000


async def test_money_reports_need_view_financial_reports(stores, district) -> None:  # type: ignore[no-untyped-def]
    technician = await add_staff(stores, "Technician", "tech@district.org")
    names = {spec.name for spec in visible_reports(technician, CATALOGUE)}
    assert {"incidents-by-type", "closure-time", "repeat-offenders"} <= names
    assert not names & {"claims-utilization", "enrollment-summary"}
    with pytest.raises(PermissionDenied):
        require_report(technician, CATALOGUE["claims-utilization"])
