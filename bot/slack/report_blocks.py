"""Block Kit for `/report`: the report modal, the summary posted with a report's files, and the
weekly digest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from enum import StrEnum
from typing import Any

from bot.slack.blocks import (
    Block,
    context_block,
    date_input,
    esc,
    fmt_date,
    header,
    input_block,
    modal,
    plain,
    section,
    select_input,
    text_input,
)
from bot.slack.metadata import OpenedFrom
from storage.weekly_digest import WeeklyDigest
from workflows.errors import ValidationError
from workflows.grades import parse_grades
from workflows.i18n import N_, _, ngettext
from workflows.labels import flags_text
from workflows.money import format_cents
from workflows.reports import MAX_FILTER_VALUES, ReportFilters, ReportResult, ReportSpec

REPORT_COMMAND = "/report"
MAX_OPTIONS = 100  # Slack's limit for a select's options
SUMMARY_SENTENCES = 6

USAGE = N_(
    "Usage: `/report` opens a form; `/report <name> [range] [filters]` runs one, e.g. "
    "`/report incidents-by-type last-month grade:7` or `/report overdue 2026-01-01..2026-03-31 "
    'building:"Lincoln Middle"`. Ranges: two dates, `this-year` (the school year so far, the '
    "default), `last-year`, `this-month`, `last-month`, `this-week`, `last-week`, "
    "`last-30-days`, `ytd`. Filters: `building:`, `grade:`, `model:` (comma-separated)."
)


class ReportField(StrEnum):
    """Block ids of the modal's inputs; each input's action id is the same string."""

    REPORT = "report.name"
    FROM = "report.from"
    TO = "report.to"
    BUILDINGS = "report.buildings"
    GRADES = "report.grades"
    MODELS = "report.models"


class ReportView(StrEnum):
    RUN = "report.run"


class ReportForm(OpenedFrom):
    """The report modal's private_metadata: the report goes to the channel."""


# Which input a ValidationError's field belongs next to.
FIELD_BLOCKS: dict[str, str] = {
    "name": ReportField.REPORT,
    "range": ReportField.FROM,
    "building": ReportField.BUILDINGS,
    "grade": ReportField.GRADES,
    "model": ReportField.MODELS,
}


def _option(text: str, value: str, description: str | None = None) -> Block:
    option: Block = {"text": plain(text, 75), "value": value[:150]}
    if description:
        option["description"] = plain(description, 75)
    return option


def build_report_modal(
    specs: Sequence[ReportSpec],
    buildings: Sequence[str],
    date_from: date,
    date_to: date,
    metadata: str,
) -> Block:
    """Pick a report (only those the person may run), a range (the school year so far by
    default) and optional filters."""
    blocks: list[Block] = [
        input_block(
            ReportField.REPORT,
            _("Report"),
            select_input(
                [_option(_(s.title), s.name, _(s.description)) for s in specs[:MAX_OPTIONS]],
                placeholder=_("Pick a report"),
            ),
        ),
        input_block(ReportField.FROM, _("From"), date_input(date_from)),
        input_block(ReportField.TO, _("To (included)"), date_input(date_to)),
    ]
    if buildings:
        options = [_option(b, b) for b in buildings[:MAX_OPTIONS]]
        blocks.append(
            input_block(
                ReportField.BUILDINGS,
                _("Buildings"),
                select_input(options, placeholder=_("All buildings"), multi=True),
                optional=True,
                hint=_("Leave empty for every building."),
            )
        )
    blocks += [
        _text_input(ReportField.GRADES, _("Grades"), _("e.g. 7, 8 (empty for every grade)")),
        _text_input(
            ReportField.MODELS, _("Device models"), _("e.g. HP Chromebook 11 G9 (empty for all)")
        ),
        context_block(
            _("The summary is posted in this channel with the CSV (and a chart for trends).")
        ),
    ]
    return modal(
        ReportView.RUN, _("Run a report"), blocks, submit=_("Run"), private_metadata=metadata
    )


def _text_input(block_id: str, label: str, placeholder: str) -> Block:
    element = text_input(max_length=500, placeholder=placeholder)
    return input_block(block_id, label, element, optional=True)


# --- reading the modal ----------------------------------------------------------------------


def _element(values: Mapping[str, Any], field: ReportField) -> Mapping[str, Any]:
    return (values.get(field) or {}).get(field) or {}


def _day(values: Mapping[str, Any], field: ReportField, missing: str) -> date:
    """The date picked in `field`; `missing` is the error when none was."""
    picked = _element(values, field).get("selected_date")
    if not picked:
        raise ValidationError(missing, field="range")
    return date.fromisoformat(str(picked))


def _list(text: str | None) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


def read_report_form(
    values: Mapping[str, Any], catalogue: Mapping[str, ReportSpec]
) -> tuple[str, ReportFilters]:
    """The report and filters a submitted modal asks for; ValidationError names the field."""
    name = str((_element(values, ReportField.REPORT).get("selected_option") or {}).get("value"))
    if name not in catalogue:
        raise ValidationError(_("Pick a report."), field="name")
    buildings = [
        str(o.get("value"))
        for o in _element(values, ReportField.BUILDINGS).get("selected_options") or []
    ]
    grades = parse_grades(_element(values, ReportField.GRADES).get("value"), field="grade")
    models = _list(_element(values, ReportField.MODELS).get("value"))
    for key, items in (("building", buildings), ("grade", grades), ("model", models)):
        if len(items) > MAX_FILTER_VALUES:
            raise ValidationError(_("At most {count} at once.", count=MAX_FILTER_VALUES), field=key)
    filters = ReportFilters(
        date_from=_day(values, ReportField.FROM, _("Pick the first date.")),
        date_to=_day(values, ReportField.TO, _("Pick the last date.")),
        buildings=tuple(buildings),
        grades=grades,
        models=tuple(models),
    )
    return name, filters


# --- what is posted -------------------------------------------------------------------------


def build_summary(result: ReportResult, requested_by: str) -> tuple[str, list[Block]]:
    """The short message in the channel; the CSV (every row) and the chart follow as files."""
    spec, f = result.spec, result.filters
    rows = len(result.rows)
    scope = f"{fmt_date(f.date_from)} \u2013 {fmt_date(f.date_to)} ({spec.range_means})"
    filters = [
        _(label, values=", ".join(esc(v) for v in values))
        for label, values in (
            (N_("building {values}"), f.buildings),
            (N_("grade {values}"), f.grades),
            (N_("model {values}"), f.models),
        )
        if values
    ]
    sentences = "\n".join(esc(s) for s in result.summary[:SUMMARY_SENTENCES]) or _("No figures.")
    files = ngettext("CSV: {n} row", "CSV: {n} rows", rows)
    if result.trend:
        files += " \u00b7 " + _("chart")
    blocks: list[Block] = [
        header(_(spec.title)),
        context_block(" \u00b7 ".join([scope, *filters])),
        section(sentences),
        context_block(_("{files} \u00b7 requested by {who}", files=files, who=esc(requested_by))),
    ]
    text = _(
        "{title}, {start} to {end}: {summary}",
        title=_(spec.title),
        start=f.date_from.isoformat(),
        end=f.date_to.isoformat(),
        summary=result.summary[0] if result.summary else ngettext("{n} rows", "{n} rows", rows),
    )
    return text[:3000], blocks


def build_digest(digest: WeeklyDigest) -> tuple[str, list[Block]]:
    week = f"{fmt_date(digest.week_start)} \u2013 {fmt_date(digest.week_end)}"
    recovered = format_cents(digest.recovered_cents)
    lines = [
        _(
            "*Incidents:* {opened} opened, {closed} closed",
            opened=digest.incidents_opened,
            closed=digest.incidents_closed,
        ),
        _(
            "*Money recovered:* {recovered} (payments {payments}, refunds {refunds})",
            recovered=recovered,
            payments=format_cents(digest.payments_cents),
            refunds=format_cents(digest.refunds_cents),
        ),
        ngettext(
            "*Overdue now:* {n} invoice, {owed} owed (as of {day})",
            "*Overdue now:* {n} invoices, {owed} owed (as of {day})",
            digest.overdue_count,
            owed=format_cents(digest.overdue_cents),
            day=fmt_date(digest.as_of),
        ),
    ]
    if digest.offender_count:
        named = ", ".join(
            f"{esc(o.student)} ({esc(flags_text(o.flags))})" for o in digest.offenders
        )
        more = digest.offender_count - len(digest.offenders)
        if more > 0:
            offenders = _(
                "*New repeat offenders:* {count} \u2014 {named} and {more} more",
                count=digest.offender_count,
                named=named,
                more=more,
            )
        else:
            offenders = _(
                "*New repeat offenders:* {count} \u2014 {named}",
                count=digest.offender_count,
                named=named,
            )
        lines.append(offenders)
    else:
        lines.append(_("*New repeat offenders:* none"))
    blocks: list[Block] = [
        header(_("Weekly digest: {week}", week=week)),
        section("\n".join(lines)),
        context_block(
            _(
                "`/report` for the details, e.g. `/report overdue` or "
                "`/report repeat-offenders last-week`."
            )
        ),
    ]
    text = _(
        "Weekly digest {week}: {opened} incidents opened, {closed} closed, {recovered} "
        "recovered, {overdue} overdue ({owed}), {offenders} new repeat offenders.",
        week=week,
        opened=digest.incidents_opened,
        closed=digest.incidents_closed,
        recovered=recovered,
        overdue=digest.overdue_count,
        owed=format_cents(digest.overdue_cents),
        offenders=digest.offender_count,
    )
    return text, blocks
