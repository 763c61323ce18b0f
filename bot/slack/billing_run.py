"""The daily billing run in Slack: its digest and failures in the billing channel, and
`/billing pause …` and `/billing preview [day]` for roles with Manage Settings."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.scheduler import RUN_FAILED_KIND, billing_runner
from bot.runtime import Runtime
from bot.slack.blocks import Block, context_block, fmt_date, plain, section
from bot.slack.errors import tell_user
from bot.slack.incident_blocks import escape_mrkdwn
from bot.slack.kept_posts import post_or_update
from bot.slack.listeners import Command, on_subcommand, wire
from services.billing_run import SLACK_RUN_KIND, PlannedStep, RunResult, totals_from_payload
from workflows.billing import PauseWindow, RunTotals, step_label, validate_pause
from workflows.billing_pauses import PauseView, add_pause, list_pauses, remove_pause
from workflows.errors import ValidationError
from workflows.i18n import N_, _, ngettext
from workflows.labels import invoice_status_label
from workflows.permissions import Actor, Permission
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

DIGEST_POST = "billing_run_digest"  # slack_posts kind; entity id: the day's ordinal
PREVIEW_STEPS_SHOWN = 20
_DAY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_ID_RE = re.compile(r"^#?([0-9]{1,12})$")

PAUSE_USAGE = N_(
    "Billing pauses: no reminders go out on a paused day and overdue clocks stand still.\n"
    "• `/billing pause add 2026-12-21 2027-01-01 Winter break` pauses those days "
    "(both included)\n"
    "• `/billing pause list` shows current and coming pauses (`list all` shows past ones too)\n"
    "• `/billing pause remove 3` removes pause #3"
)
PREVIEW_USAGE = N_("Usage: `/billing preview` for today, or `/billing preview 2026-04-01`.")


# --- words -----------------------------------------------------------------------------------


def long_day(day: date) -> str:
    return f"{day:%A}, {fmt_date(day)}"


def status_label(value: str) -> str:
    return invoice_status_label(value)


def covered_line(totals: RunTotals, *, planned: bool = False) -> str | None:
    """Said when a run stands in for days missed while DeviceCare was down (`planned`: would)."""
    first = totals.covered_since + timedelta(days=1)
    if first >= totals.day:
        return None
    missed = ngettext("{n} missed day", "{n} missed days", (totals.day - first).days)
    if planned:
        return _(
            ":hourglass: Caught up after downtime: it would cover {first} to {last} ({missed}).",
            first=fmt_date(first),
            last=fmt_date(totals.day),
            missed=missed,
        )
    return _(
        ":hourglass: Caught up after downtime: this run covered {first} to {last} ({missed}).",
        first=fmt_date(first),
        last=fmt_date(totals.day),
        missed=missed,
    )


def _summary_sections(totals: RunTotals, *, planned: bool) -> list[str]:
    """The run's figures as mrkdwn paragraphs, in the past tense or (planned) the conditional."""
    out: list[str] = []
    if totals.reminders_by_step:
        lines = [f"• {step_label(name)}: {n}" for name, n in totals.reminders_by_step]
        title = (
            _("Reminders and notices it would send") if planned else _("Reminders and notices sent")
        )
        out.append(f"*{title}*\n" + "\n".join(lines))
    if totals.advanced:
        lines = [
            _("• to {status}: {count}", status=status_label(status), count=n)
            for status, n in totals.advanced
        ]
        title = _("Statuses it would move on") if planned else _("Statuses advanced")
        out.append(f"*{title}*\n" + "\n".join(lines))
    if totals.auto_cancelled:
        title = _("Would auto-cancel") if planned else _("Auto-cancelled")
        invoices = ngettext("{n} invoice", "{n} invoices", totals.auto_cancelled)
        out.append(f"*{title}:* {invoices}")
    if totals.emails_queued:
        digests = ""
        if totals.digests:
            digests = _(
                ", {digests} among them (one email for a family with several notices)",
                digests=ngettext("{n} digest", "{n} digests", totals.digests),
            )
        title = _("Emails it would queue") if planned else _("Emails queued")
        out.append(f"*{title}:* {totals.emails_queued}{digests}")
    attention = list(totals.failures)
    if planned and totals.not_emailed:
        attention.append(
            ngettext(
                "{n} invoice would have no guardian email address that works",
                "{n} invoices would have no guardian email address that works",
                totals.not_emailed,
            )
        )
    if attention:
        out.append(
            _(":warning: *Needs attention*")
            + "\n"
            + "\n".join(f"• {escape_mrkdwn(f)}" for f in attention)
        )
    return out


def _nothing_happened(totals: RunTotals) -> bool:
    return not (totals.reminders_by_step or totals.advanced or totals.auto_cancelled)


# --- messages ----------------------------------------------------------------------------------


def build_run_digest(totals: RunTotals) -> tuple[str, list[Block]]:
    """The billing channel's message after a run."""
    day = long_day(totals.day)
    blocks: list[Block] = [{"type": "header", "text": plain(_("Billing run · {day}", day=day))}]
    covered = covered_line(totals)
    if covered:
        blocks.append(context_block(covered))
    if totals.paused:
        text = _("Billing run for {day}: paused, nothing was sent.", day=day)
        blocks.append(section(_("Billing is paused today: nothing was sent or changed.")))
        return text, blocks
    if _nothing_happened(totals):
        blocks.append(section(_("Nothing was due: no reminders, no status changes.")))
    blocks += [section(part) for part in _summary_sections(totals, planned=False)]
    advanced = sum(n for _s, n in totals.advanced)
    text = _(
        "Billing run for {day}: {sent}, {changes}, {cancelled} auto-cancelled, {emails} queued.",
        day=day,
        sent=ngettext("{n} reminder or notice", "{n} reminders and notices", totals.reminders),
        changes=ngettext("{n} status change", "{n} status changes", advanced),
        cancelled=totals.auto_cancelled,
        emails=ngettext("{n} email", "{n} emails", totals.emails_queued),
    )
    return text, blocks


def build_run_failed(payload: dict[str, Any]) -> tuple[str, list[Block]]:
    """The billing channel's message when a run failed."""
    day = long_day(date.fromisoformat(str(payload["day"])))
    attempt = int(payload.get("attempt", 1))
    error = escape_mrkdwn(str(payload.get("error") or _("unknown error"))).replace("`", "'")
    if payload.get("retrying"):
        minutes = int(payload.get("retry_minutes", 15))
        then = _("DeviceCare tries again within {minutes} minutes.", minutes=minutes)
    else:
        then = _(
            "No more automatic tries today. The next day's run covers today too; or run "
            "`devicecare billing run` once the cause is fixed."
        )
    text = _("The billing run for {day} failed (attempt {attempt}).", day=day, attempt=attempt)
    blocks: list[Block] = [
        section(
            _(
                ":x: *The billing run for {day} failed* (attempt {attempt}).\n`{error}`\n"
                "What it finished is kept: each batch commits whole, and the next run picks up "
                "where this one stopped. {then}",
                day=day,
                attempt=attempt,
                error=error,
                then=then,
            )
        ),
        context_block(_("The full error is in the scheduler's log.")),
    ]
    return text, blocks


def _planned_line(step: PlannedStep) -> str:
    line = f"• `{escape_mrkdwn(step.number)}` {step_label(step.step)}"
    if step.to_status is not None:
        line += f": {status_label(step.from_status)} → {status_label(step.to_status)}"
    if step.days_overdue is not None and step.days_overdue > 0:
        line += _(" ({days} days overdue)", days=step.days_overdue)
    if step.to_status is None or step.step in ("first", "second", "final"):
        line += ", " + ngettext("{n} recipient", "{n} recipients", step.recipients)
    return line


def build_preview(result: RunResult) -> tuple[str, list[Block]]:
    """The dry run, for the person who asked: counts by step and the first planned steps."""
    day = long_day(result.day)
    title = _("*Billing run preview for {day}*: nothing has been sent or changed.", day=day)
    totals = result.totals
    if totals is None:
        text = _("Billing run preview for {day}: {message}", day=day, message=result.message)
        return text, [section(f"{title}\n{escape_mrkdwn(result.message)}")]
    blocks: list[Block] = [section(title)]
    covered = covered_line(totals, planned=True)
    if covered:
        blocks.append(context_block(covered))
    if _nothing_happened(totals):
        blocks.append(section(_("Nothing would be due: no reminders, no status changes.")))
    blocks += [section(part) for part in _summary_sections(totals, planned=True)]
    if result.planned:
        shown = result.planned[:PREVIEW_STEPS_SHOWN]
        lines = [_planned_line(step) for step in shown]
        more = len(result.planned) - len(shown)
        if more:
            lines.append(_("…and {more} more.", more=more))
        heading = _("*Planned steps* ({count})", count=len(result.planned))
        blocks.append(section(heading + "\n" + "\n".join(lines)))
    text = _(
        "Billing run preview for {day}: {steps}.",
        day=day,
        steps=ngettext("{n} planned step", "{n} planned steps", len(result.planned)),
    )
    return text, blocks


def pause_list_text(pauses: Sequence[PauseView], today: date, *, include_past: bool) -> str:
    if not pauses:
        if include_past:
            return _(
                "There are no billing pauses. Add one with "
                "`/billing pause add 2026-12-21 2027-01-01 Winter break`."
            )
        return _(
            "There are no current or coming billing pauses. Add one with "
            "`/billing pause add 2026-12-21 2027-01-01 Winter break`."
        )
    lines = []
    for pause in pauses:
        now = _(" (in effect today)") if pause.covers(today) else ""
        lines.append(f"• {escape_mrkdwn(pause.describe())}{now}")
    title = _("Billing pauses") if include_past else _("Current and coming billing pauses")
    return f"*{title}*\n" + "\n".join(lines)


# --- parsing ---------------------------------------------------------------------------------


def parse_day(text: str, field: str) -> date:
    """YYYY-MM-DD, or a ValidationError that says so."""
    if _DAY_RE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ValidationError(
        _(
            "“{text}” isn't a date; write days as YYYY-MM-DD, e.g. 2026-12-21.",
            text=escape_mrkdwn(text),
        ),
        field=field,
    )


@dataclass(frozen=True)
class PauseCommand:
    """`/billing pause …`, read and checked before anything is stored."""

    action: str  # add, remove or list
    window: PauseWindow | None = None
    pause_id: int | None = None
    include_past: bool = False


def parse_pause_command(args: Sequence[str]) -> PauseCommand | None:
    """The words after `/billing pause`; None when there is no action (show the usage)."""
    action = args[0].lower() if args else ""
    rest = args[1:]
    if action == "add":
        if len(rest) < 2:
            raise ValidationError(_("Give the first and the last paused day, then why."))
        starts_on = parse_day(rest[0], "starts_on")
        ends_on = parse_day(rest[1], "ends_on")
        return PauseCommand("add", window=validate_pause(starts_on, ends_on, " ".join(rest[2:])))
    if action == "remove":
        if len(rest) != 1:
            raise ValidationError(_("Give the number of the pause to remove."))
        return PauseCommand("remove", pause_id=parse_pause_id(rest[0]))
    if action == "list":
        if [w.lower() for w in rest] not in ([], ["all"]):
            raise ValidationError(_("`/billing pause list` takes nothing, or `all`."))
        return PauseCommand("list", include_past=bool(rest))
    return None


def parse_pause_id(text: str) -> int:
    match = _ID_RE.match(text)
    if match is None:
        raise ValidationError(
            _(
                "“{text}” isn't a pause number; `/billing pause list` shows them.",
                text=escape_mrkdwn(text),
            ),
            field="pause_id",
        )
    return int(match[1])


# --- listeners -------------------------------------------------------------------------------

# Manage Settings only: anyone else is told so at once and the refusal is recorded.
REFUSAL = N_(":no_entry: {} Nothing was changed.")
NEEDS = Permission.MANAGE_SETTINGS


async def _answer(cmd: Command, text: str, blocks: list[Block] | None = None) -> None:
    """An ephemeral answer where the command was typed, or a DM if the app can't post there."""
    await tell_user(cmd.client, cmd.body, text, blocks=blocks or None)


async def _do_pause(ctx: Context, actor: Actor, command: PauseCommand) -> str:
    """Carry out a checked pause command; the answer for the person who typed it."""
    if command.window is not None:
        w = command.window
        added = await add_pause(ctx, actor, w.starts_on, w.ends_on, w.reason)
        return _(
            ":white_check_mark: Billing paused: {pause}. No reminders go out on those days and "
            "overdue clocks stand still. `/billing pause remove {id}` undoes it.",
            pause=escape_mrkdwn(added.describe()),
            id=added.id,
        )
    if command.pause_id is not None:
        removed = await remove_pause(ctx, actor, command.pause_id)
        return _(
            ":wastebasket: Removed billing pause {pause}. Those days count again from the next "
            "run on.",
            pause=escape_mrkdwn(removed.describe()),
        )
    found = await list_pauses(ctx, actor, include_past=command.include_past)
    return pause_list_text(found, ctx.today(), include_past=command.include_past)


@on_subcommand(
    "pause",
    N_(
        "`add YYYY-MM-DD YYYY-MM-DD reason`, `list` or `remove ID`: days the billing run "
        "sends nothing (winter break, summer)."
    ),
    what="/billing pause",
    refusal=REFUSAL,
    needs=NEEDS,
)
async def handle_billing_pause(cmd: Command) -> None:
    try:
        command = parse_pause_command(cmd.args)
    except ValidationError as exc:
        warning = _(":warning: {error} Nothing was changed.", error=exc.message)
        usage = _(PAUSE_USAGE)
        await cmd.ack(f"{warning}\n\n{usage}")
        return
    if command is None:
        await cmd.ack(_(PAUSE_USAGE))
        return
    await cmd.ack()
    async with cmd.runtime.stores() as store:
        text = await _do_pause(cmd.context(store), cmd.actor, command)
        await store.commit()
    await _answer(cmd, text)


@on_subcommand(
    "preview",
    N_("`[YYYY-MM-DD]`: what the daily billing run would send and change, without doing it."),
    what="/billing preview",
    refusal=REFUSAL,
    needs=NEEDS,
)
async def handle_billing_preview(cmd: Command) -> None:
    try:
        if len(cmd.args) > 1:
            raise ValidationError(_("Give at most one day."))
        runner = billing_runner(cmd.runtime)
        day = parse_day(cmd.args[0], "day") if cmd.args else runner.today()
    except ValidationError as exc:
        usage = _(PREVIEW_USAGE)
        await cmd.ack(f":warning: {exc.message} {usage}")
        return
    await cmd.ack(_("Working out what the billing run for {day} would do…", day=long_day(day)))
    result = await runner.run(day, dry_run=True)
    text, blocks = build_preview(result)
    await _answer(cmd, text, blocks)


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(app, runtime, handle_billing_pause, handle_billing_preview)


# --- outbox ----------------------------------------------------------------------------------


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    def billing_channel(what: str, payload: dict[str, Any]) -> str | None:
        channel = runtime.settings.slack_billing_channel
        if not channel:
            log.info("%s for %s not posted: no SLACK_BILLING_CHANNEL", what, payload["day"])
        return channel

    async def deliver_digest(payload: dict[str, Any]) -> None:
        """The run's digest in the billing channel; a retry updates the message it posted."""
        channel = billing_channel("billing run digest", payload)
        if not channel:
            return
        totals = totals_from_payload(payload)
        text, blocks = build_run_digest(totals)
        key = totals.day.toordinal()
        await post_or_update(
            runtime, client, DIGEST_POST, key, channel=channel, text=text, blocks=blocks
        )

    async def deliver_failure(payload: dict[str, Any]) -> None:
        channel = billing_channel("billing run failure", payload)
        if not channel:
            return
        text, blocks = build_run_failed(payload)
        await client.chat_postMessage(channel=channel, text=text, blocks=blocks)

    return {SLACK_RUN_KIND: deliver_digest, RUN_FAILED_KIND: deliver_failure}
