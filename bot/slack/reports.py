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
from collections.abc import Mapping
from datetime import date
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

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
from bot.signing import signing_keys
from bot.slack.billing_command import BillingCall, add_subcommand
from bot.slack.billing_report_blocks import REPORT_USAGE
from bot.slack.errors import modal_errors, record_refusal, reported, tell_user
from bot.slack.metadata import ForgedPayload, pack, unpack
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
from bot.slack.response_url import reply, where
from storage import models as m
from storage.weekly_digest import DIGEST_KIND, WeeklyDigest
from workflows.errors import DomainError, PermissionDenied, ValidationError
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
BILLING_SUMMARY = (
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
    error = str(exc.response.get("error") or "an error")
    if error in ("not_in_channel", "channel_not_found"):
        return "I'm not in this channel; invite @DeviceCare here, or ask from a channel I'm in."
    return f"Slack answered {error}."


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
            title=f"{result.spec.title} (CSV)",
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
            client, _where(user_id, channel_id), f":warning: Couldn't run the report: {exc.message}"
        )
    except SlackApiError as exc:
        log.warning("report %s for %s not delivered: %s", name, actor.name, exc)
        await tell_user(
            client,
            _where(user_id, channel_id),
            f":warning: Couldn't run the report: {_slack_reason(exc)}",
        )
    except Exception:
        log.exception("report %s for %s failed", name, actor.name)
        await tell_user(
            client,
            _where(user_id, channel_id),
            ":x: Couldn't run the report: something went wrong on our side; it was logged.",
        )


def _refusal(actor: Actor) -> str | None:
    """Why this person may run no report at all, or None."""
    if actor.can(Permission.VIEW_REPORTS):
        return None
    return f"Reports need the {permission_label(Permission.VIEW_REPORTS)} permission."


def register(app: AsyncApp, runtime: Runtime) -> None:
    secret = signing_keys(runtime.settings)

    async def billing_report(call: BillingCall) -> None:
        await answer_billing_report(runtime, call)

    add_subcommand(app, "report", BILLING_SUMMARY, billing_report)

    @app.command(REPORT_COMMAND)
    async def handle_report_command(
        ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        actor: Actor = context["actor"]
        user_id = str(command.get("user_id") or "")
        channel_id = command.get("channel_id")
        refused = _refusal(actor)
        if refused:
            await ack(response_type="ephemeral", text=f":no_entry: {refused}")
            await record_refusal(runtime, actor, WHAT, refused)
            return
        text = str(command.get("text") or "").strip()
        async with runtime.reads() as store:
            year = await school_year(store)
        today = district_today(runtime)
        if not text:
            await ack()
            await open_modal(client, command, actor, today, year.start_month, year.start_day)
            return
        if text.lower() in ("help", "?"):
            await ack(response_type="ephemeral", text=USAGE)
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
            await ack(response_type="ephemeral", text=f":warning: {exc.message}\n{USAGE}")
            return
        spec = CATALOGUE[request.name]
        try:
            require_report(actor, spec)
        except PermissionDenied as exc:
            message = f"{spec.title} is a money report; {exc.message}"
            await ack(response_type="ephemeral", text=f":no_entry: {message}")
            await record_refusal(runtime, actor, WHAT, message)
            return
        await ack(
            response_type="ephemeral",
            text=f":hourglass_flowing_sand: Running {spec.title} ({request.filters.describe()})…",
        )
        if not channel_id:
            return
        await deliver_report(
            runtime,
            client,
            actor,
            request.name,
            request.filters,
            user_id=user_id,
            channel_id=str(channel_id),
        )

    async def open_modal(
        client: AsyncWebClient,
        command: Mapping[str, Any],
        actor: Actor,
        today: date,
        start_month: int,
        start_day: int,
    ) -> None:
        specs = visible_reports(actor, CATALOGUE)
        async with snapshot(runtime) as store:
            buildings = list(
                (
                    await store.session.execute(
                        select(m.Building.name).order_by(m.Building.name).limit(MAX_BUILDINGS)
                    )
                ).scalars()
            )
        date_from, date_to = default_range(today, start_month=start_month, start_day=start_day)
        form = ReportForm(
            user_id=str(command.get("user_id") or ""),
            channel_id=command.get("channel_id") or None,
        )
        view = build_report_modal(specs, buildings, date_from, date_to, pack(form, secret))
        await client.views_open(trigger_id=command["trigger_id"], view=view)

    @app.view(ReportView.RUN.value)
    async def handle_report_submission(
        ack: AsyncAck,
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        values = (view.get("state") or {}).get("values") or {}
        try:
            form = unpack(ReportForm, view.get("private_metadata"), secret)
            name, filters = read_report_form(values, CATALOGUE)
            require_report(actor, CATALOGUE[name])
        except DomainError as exc:
            errors = modal_errors(exc, FIELD_BLOCKS, ReportField.REPORT)
            await ack(response_action="errors", errors=errors)
            if isinstance(exc, PermissionDenied | ForgedPayload):
                await record_refusal(runtime, actor, WHAT, exc.message)
            return
        await ack()
        user_id = str((body.get("user") or {}).get("id") or form.user_id)
        if not form.channel_id:
            await tell_user(client, _where(user_id, None), "Run `/report` from a channel.")
            return
        await deliver_report(
            runtime, client, actor, name, filters, user_id=user_id, channel_id=form.channel_id
        )


async def answer_billing_report(runtime: Runtime, call: BillingCall) -> None:
    """`/billing report <name> …`: acknowledged at once, answered through the response_url."""
    actor = call.actor
    if not actor.can(Permission.VIEW_FINANCIAL_REPORTS):
        label = permission_label(Permission.VIEW_FINANCIAL_REPORTS)
        message = f"Billing reports need the {label} permission."
        await call.ack(response_type="ephemeral", text=f":no_entry: {message}")
        await record_refusal(runtime, actor, BILLING_WHAT, message)
        return
    words = [a.lower() for a in call.args]
    report = BILLING.get(words[0]) if words else None
    try:
        if report is None or report.billing is None:
            raise ValidationError(REPORT_USAGE)
        answer = report.billing
        asked = answer.words(words[1:], district_today(runtime))
    except ValidationError as exc:
        await call.ack(response_type="ephemeral", text=exc.message)
        return
    await call.ack()
    body, tz = call.command, runtime.settings.tz
    async with reported(runtime, call.client, where(body), BILLING_WHAT, actor):
        async with snapshot(runtime) as store:
            found = await answer.compute(store.session, asked, tz)
        text, blocks = answer.render(found, tz)
        await reply(call.client, body, text, blocks)


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
        async with runtime.stores() as store:
            posted = await store.slack_posts.get(DIGEST_POST, key)
            await store.commit()
        if posted is not None:
            await client.chat_update(channel=posted.channel, ts=posted.ts, text=text, blocks=blocks)
            return
        response = await client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        async with runtime.stores() as store:
            await store.slack_posts.save(
                DIGEST_POST, key, str(response.get("channel") or channel), str(response["ts"])
            )
            await store.commit()

    return {DIGEST_KIND: deliver_weekly_digest}
