"""The reports in Slack, from the one catalogue (bot/reports/catalogue.py).

`/report`: any report with a CSV, posted in the channel it was asked from.

`/report` alone opens a form; `/report <name> [range] [filters]` runs one at once. Either way the
request is acknowledged within Slack's 3 seconds, the permission is checked here on the server
(money reports need View Financial Reports), the report is computed in one read snapshot, and the
channel gets a short summary, the CSV with every row and, for a trend, its chart. A failure
reaches the person who asked as an ephemeral message and is logged.

`/billing report <name> …`: the billing office's reports, answered only to the person who
asked (through the request's response_url), and only for View Financial Reports.

Also delivers the weekly digest the scheduler queues (outbox kind `slack.weekly_digest`).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.reports.catalogue import SlackDoor, channel_reports, reached_by
from bot.reports.csv_rows import csv_bytes, file_stem
from bot.reports.delivery import (
    chart_png,
    chart_title,
    compute,
    district_today,
    school_year,
    snapshot,
)
from bot.runtime import Runtime
from bot.slack.billing_report_blocks import REPORT_USAGE
from bot.slack.errors import record_refusal, tell_user
from bot.slack.kept_posts import post_or_update
from bot.slack.listeners import Command, ModalForm, Submitted, on_command, on_subcommand, wire
from bot.slack.metadata import pack
from bot.slack.report_blocks import (
    FIELD_BLOCKS,
    REPORT_COMMAND,
    USAGE,
    ReportField,
    ReportForm,
    ReportView,
    build_digest,
    build_report_modal,
    build_summary,
    read_report_form,
)
from bot.slack.response_url import reply
from storage.reports import building_names
from storage.weekly_digest import DIGEST_KIND, WeeklyDigest
from workflows.errors import DomainError, PermissionDenied, ValidationError
from workflows.i18n import N_, _
from workflows.permissions import Actor, Permission, permission_label
from workflows.reports import (
    ReportFilters,
    default_range,
    parse_request,
    require_report,
    visible_reports,
)

log = logging.getLogger("devicecare.slack")

WHAT = "run a report"
BILLING_WHAT = "billing report"
BILLING_SUMMARY = N_(
    "`automation [on|off]` or `cancelled [from] [to]`: billing reports (View Financial Reports)."
)
CATALOGUE = channel_reports()
BILLING = reached_by(SlackDoor.BILLING)
DIGEST_POST = "weekly_digest"  # slack_posts kind; entity id: the week's Monday as an ordinal
MAX_BUILDINGS = 100


def _where(user_id: str, channel_id: str | None) -> dict[str, Any]:
    """Who and where, in the shape bot.slack.errors reads."""
    return {"user": {"id": user_id}, "channel_id": channel_id}


def _slack_reason(exc: SlackApiError) -> str:
    error = str(exc.response.get("error") or _("an error"))
    if error in ("not_in_channel", "channel_not_found"):
        return _("I'm not in this channel; invite @DeviceCare here, or ask from a channel I'm in.")
    return _("Slack answered {error}.", error=error)


async def deliver_report(
    runtime: Runtime,
    client: AsyncWebClient,
    actor: Actor,
    name: str,
    filters: ReportFilters,
    *,
    user_id: str,
    channel_id: str,
) -> None:
    """Compute the report and post it; a failure is told to the person and logged."""
    try:
        result = await compute(runtime, name, filters)
        text, blocks = build_summary(result, actor.name)
        await client.chat_postMessage(channel=channel_id, text=text, blocks=blocks)
        stem = file_stem(result)
        await client.files_upload_v2(
            channel=channel_id,
            file=csv_bytes(result, runtime.settings.tz),
            filename=f"{stem}.csv",
            title=_("{report} (CSV)", report=_(result.spec.title)),
        )
        png = chart_png(result)
        if png is not None:
            await client.files_upload_v2(
                channel=channel_id,
                file=png,
                filename=f"{stem}.png",
                title=chart_title(result),
            )
    except DomainError as exc:
        if isinstance(exc, PermissionDenied):
            await record_refusal(runtime, actor, WHAT, exc.message)
        await tell_user(
            client,
            _where(user_id, channel_id),
            _(":warning: Couldn't run the report: {reason}", reason=exc.message),
        )
    except SlackApiError as exc:
        log.warning("report %s for %s not delivered: %s", name, actor.name, exc)
        await tell_user(
            client,
            _where(user_id, channel_id),
            _(":warning: Couldn't run the report: {reason}", reason=_slack_reason(exc)),
        )
    except Exception:
        log.exception("report %s for %s failed", name, actor.name)
        await tell_user(
            client,
            _where(user_id, channel_id),
            _(":x: Couldn't run the report: something went wrong on our side; it was logged."),
        )


def require_reports(actor: Actor) -> None:
    """Refused when this person may run no report at all."""
    if not actor.can(Permission.VIEW_REPORTS):
        label = permission_label(Permission.VIEW_REPORTS)
        raise PermissionDenied(_("Reports need the {permission} permission.", permission=label))


@on_command(REPORT_COMMAND, what=WHAT)
async def handle_report_command(cmd: Command) -> None:
    runtime, actor = cmd.runtime, cmd.actor
    require_reports(actor)
    text = str(cmd.body.get("text") or "").strip()
    async with runtime.reads() as store:
        year = await school_year(store)
    today = district_today(runtime)
    if not text:
        await cmd.ack()
        await open_modal(cmd, today, year.start_month, year.start_day)
        return
    if text.lower() in ("help", "?"):
        await cmd.ack(_(USAGE))
        return
    try:
        request = parse_request(
            text,
            CATALOGUE,
            today,
            start_month=year.start_month,
            start_day=year.start_day,
        )
    except ValidationError as exc:
        await cmd.ack(f":warning: {exc.message}\n{_(USAGE)}")
        return
    spec = CATALOGUE[request.name]
    try:
        require_report(actor, spec)
    except PermissionDenied as exc:
        raise PermissionDenied(
            _(
                "{report} is a money report; {reason}",
                report=_(spec.title),
                reason=exc.message,
            )
        ) from None
    await cmd.ack(
        _(
            ":hourglass_flowing_sand: Running {report} ({filters})…",
            report=_(spec.title),
            filters=request.filters.describe(),
        )
    )
    channel_id = cmd.body.get("channel_id")
    if not channel_id:
        return
    await deliver_report(
        runtime,
        cmd.client,
        actor,
        request.name,
        request.filters,
        user_id=str(cmd.body.get("user_id") or ""),
        channel_id=str(channel_id),
    )


async def open_modal(cmd: Command, today: date, start_month: int, start_day: int) -> None:
    specs = visible_reports(cmd.actor, CATALOGUE)
    async with snapshot(cmd.runtime) as store:
        buildings = await building_names(store, limit=MAX_BUILDINGS)
    date_from, date_to = default_range(today, start_month=start_month, start_day=start_day)
    form = ReportForm(
        user_id=str(cmd.body.get("user_id") or ""),
        channel_id=cmd.body.get("channel_id") or None,
    )
    view = build_report_modal(specs, buildings, date_from, date_to, pack(form, cmd.keys))
    await cmd.open_view(view)


# The report is delivered after the ack; a failure there reaches the person (deliver_report).
report_form: ModalForm[ReportForm, tuple[str, ReportFilters]] = ModalForm(
    ReportView.RUN.value,
    meta=ReportForm,
    what=WHAT,
    doing=None,
    fields=FIELD_BLOCKS,
    default_field=ReportField.REPORT,
    shown_only=False,
)


@report_form.check
async def check_report_form(form: Submitted[ReportForm]) -> tuple[str, ReportFilters]:
    name, filters = read_report_form(form.values, CATALOGUE)
    require_report(form.actor, CATALOGUE[name])
    return name, filters


@report_form.write
async def run_submitted_report(
    form: Submitted[ReportForm], asked: tuple[str, ReportFilters]
) -> None:
    name, filters = asked
    user_id = str((form.body.get("user") or {}).get("id") or form.meta.user_id)
    if not form.meta.channel_id:
        await tell_user(form.client, _where(user_id, None), _("Run `/report` from a channel."))
        return
    await deliver_report(
        form.runtime,
        form.client,
        form.actor,
        name,
        filters,
        user_id=user_id,
        channel_id=form.meta.channel_id,
    )


@on_subcommand("report", BILLING_SUMMARY, what=BILLING_WHAT)
async def answer_billing_report(cmd: Command) -> None:
    """`/billing report <name> …`: acknowledged at once, answered through the response_url."""
    if not cmd.actor.can(Permission.VIEW_FINANCIAL_REPORTS):
        label = permission_label(Permission.VIEW_FINANCIAL_REPORTS)
        raise PermissionDenied(
            _("Billing reports need the {permission} permission.", permission=label)
        )
    words = [a.lower() for a in cmd.args]
    report = BILLING.get(words[0]) if words else None
    try:
        if report is None or report.billing is None:
            raise ValidationError(_(REPORT_USAGE))
        answer = report.billing
        asked = answer.words(words[1:], district_today(cmd.runtime))
    except ValidationError as exc:
        await cmd.ack(exc.message)
        return
    await cmd.ack()
    tz = cmd.tz
    async with snapshot(cmd.runtime) as store:
        found = await answer.compute(store, asked, tz)
    text, blocks = answer.render(found, tz)
    await reply(cmd.client, cmd.body, text, blocks)


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(app, runtime, handle_report_command, report_form, answer_billing_report)


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    async def deliver_weekly_digest(payload: dict[str, Any]) -> None:
        """The digest in WEEKLY_DIGEST_CHANNEL; a retry updates the message it posted."""
        digest = WeeklyDigest.from_payload(payload)
        channel = runtime.settings.weekly_digest_channel
        if not channel:
            log.info("weekly digest for %s not posted: no WEEKLY_DIGEST_CHANNEL", digest.week_start)
            return
        text, blocks = build_digest(digest)
        key = digest.week_start.toordinal()
        await post_or_update(
            runtime, client, DIGEST_POST, key, channel=channel, text=text, blocks=blocks
        )

    return {DIGEST_KIND: deliver_weekly_digest}
