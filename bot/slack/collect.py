"""`/collect`: check devices in at a table, one student after another, in a single modal.

Scan (or type) a tag and press Enter → the modal shows the device, who holds it and the
collection fee items → tick what is missing → Check in → back to an empty scan with a line
saying what happened. The workflow checks Collect Devices at every step.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack.blocks import Block, form_values
from bot.slack.collect_blocks import (
    COLLECT_COMMAND,
    CheckInForm,
    CollectField,
    CollectSession,
    CollectView,
    build_check_in_modal,
    build_scan_modal,
    error_block,
    has_fee_input,
    read_code,
    read_fee_ids,
    read_note,
    read_reason,
    result_line,
    tag_block,
)
from bot.slack.listeners import (
    Click,
    Command,
    ModalStep,
    Slack,
    Submitted,
    in_view_metadata,
    on_click,
    on_command,
    redraw,
    refusal_kept,
    wire,
)
from bot.slack.metadata import pack
from storage.collections import Collections
from workflows.collection import (
    CollectDevice,
    CollectionResult,
    collect_device,
    parse_reason,
    preview_collection,
)
from workflows.errors import DomainError
from workflows.permissions import Permission, require

log = logging.getLogger("devicecare.slack")

WHAT = "collect a device"


# --- views ------------------------------------------------------------------------------------


def scan_view(
    slack: Slack, session: CollectSession, *, result: str | None = None, error: str | None = None
) -> Block:
    return build_scan_modal(session, pack(session, slack.keys), result=result, error=error)


async def check_in_view(slack: Slack, session: CollectSession, code: str) -> Block:
    """Look the device up (refusing unknown or already collected ones) and draw the step."""
    async with slack.runtime.reads() as store:
        preview = await preview_collection(
            slack.context(store), Collections(store), slack.actor, code
        )
    form = CheckInForm(session=session, device_id=preview.device.id, nonce=uuid.uuid4().hex)
    return build_check_in_modal(preview, form, pack(form, slack.keys))


async def check_in_or_scan(slack: Slack, session: CollectSession, code: str) -> Block:
    """The check-in step for `code`, or the scan again saying why not (a refusal kept)."""
    try:
        return await check_in_view(slack, session, code)
    except DomainError as exc:
        await refusal_kept(slack.runtime, slack.actor, WHAT, exc)
        return scan_view(slack, session, error=exc.message)


# --- /collect ---------------------------------------------------------------------------------


@on_command(COLLECT_COMMAND, what=WHAT, refusal=":warning: {}")
async def handle_collect_command(cmd: Command) -> None:
    require(cmd.actor, Permission.COLLECT_DEVICES)
    await cmd.ack()
    session = CollectSession()
    code = str(cmd.body.get("text") or "").strip()
    view = scan_view(cmd, session)
    if code:  # `/collect CB-1042` goes straight to that device
        view = await check_in_or_scan(cmd, session, code)
    await cmd.open_view(view)


# --- the scan step ----------------------------------------------------------------------------


@on_click(CollectField.TAG.value, what=WHAT, ref=CollectSession, ref_from=in_view_metadata)
async def handle_tag_entered(click: Click[CollectSession]) -> None:
    """Enter in the tag input (what a scanner sends): look up without a submit click."""
    view = click.body.get("view") or {}
    code = str(click.action.get("value") or read_code(form_values(view)))
    await redraw(click.client, view, await check_in_or_scan(click, click.ref, code), "collect")


scan_step: ModalStep[CollectSession] = ModalStep(
    CollectView.SCAN.value,
    meta=CollectSession,
    what=WHAT,
    refused=lambda _slack, view, _session, exc: {
        "response_action": "errors",
        "errors": {tag_block(view): exc.message},
    },
)


@scan_step.answer
async def look_up_scanned(form: Submitted[CollectSession]) -> Block:
    """The Look up button (or Enter where Slack submits the form): the same look-up."""
    return await check_in_view(form, form.meta, read_code(form.values))


# --- the check-in step ------------------------------------------------------------------------


def _check_in_refused(
    slack: Slack, view: Mapping[str, Any], form: CheckInForm | None, exc: DomainError
) -> dict[str, Any]:
    """Next to the input it is about; else back to the scan (a forged form: a fresh one)."""
    if form is None:
        fresh = scan_view(slack, CollectSession(), error=exc.message)
        return {"response_action": "update", "view": fresh}
    block = error_block(exc.field, form.session.step, fees_shown=has_fee_input(view))
    if block is not None:
        return {"response_action": "errors", "errors": {block: exc.message}}
    return {"response_action": "update", "view": scan_view(slack, form.session, error=exc.message)}


check_in_step: ModalStep[CheckInForm] = ModalStep(
    CollectView.CHECK_IN.value, meta=CheckInForm, what=WHAT, refused=_check_in_refused
)


@check_in_step.answer
async def check_in(form: Submitted[CheckInForm]) -> Block:
    """Checked in before the ack (one short transaction): the answer is the next empty scan,
    with this student's result on top."""
    values = form.values
    cmd = CollectDevice(
        device_id=form.meta.device_id,
        reason=parse_reason(read_reason(values)),
        fee_item_ids=read_fee_ids(values),
        note=read_note(values),
        idempotency_key=f"slack:collect:{form.meta.nonce}",
    )
    async with form.runtime.stores() as store:
        result = await collect_device(form.context(store), Collections(store), form.actor, cmd)
        await store.commit()
    after = next_session(form.meta.session, cmd, result)
    return scan_view(form, after, result=result_line(result))


def next_session(
    session: CollectSession, cmd: CollectDevice, result: CollectionResult
) -> CollectSession:
    billed = 0 if result.invoice is None else result.invoice.total_cents
    counted = 1 if result.created else 0
    return CollectSession(
        step=session.step + 1,
        checked_in=session.checked_in + counted,
        billed_cents=session.billed_cents + billed * counted,
        reason=cmd.reason.value,
    )


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(app, runtime, handle_collect_command, handle_tag_entered, scan_step, check_in_step)
