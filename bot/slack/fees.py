"""`/billing fees` for roles with Manage Fees: the year's fees, a new-fee modal, a fee's preview
(how many students, the total) and its Apply button, checked again on the server at click time.

Applying runs after the ack; a second click or a redelivery bills nobody twice (the store's
unique fee-and-student key), and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.billing_command import BillingCall, add_subcommand
from bot.slack.blocks import Block
from bot.slack.errors import (
    channel_of,
    modal_errors,
    record_refusal,
    reported,
    tell_user,
    user_of,
)
from bot.slack.fee_item_blocks import USAGE as FEE_ITEMS_USAGE
from bot.slack.fee_item_blocks import build_fee_item_list
from bot.slack.fees_blocks import (
    FIELD_BLOCKS,
    USAGE,
    FeeAction,
    FeeBlock,
    FeeRef,
    FeeViewId,
    applied_text,
    build_define_modal,
    build_fee_list,
    build_fee_preview,
    defined_text,
    read_define_form,
)
from bot.slack.listeners import Click, on_click, wire
from services.bulk_fees import BulkFeeBiller
from storage.fee_item_store import SqlFeeItemStore
from storage.fee_store import SqlFeeStore
from workflows.errors import DomainError, NotFound, PermissionDenied, ValidationError
from workflows.fee_items import list_fee_items
from workflows.fee_kinds import parse_fee_kind
from workflows.fees import (
    apply_fee,
    clean_school_year,
    current_school_year,
    define_fee,
    find_fee,
    list_fees,
    preview_fee,
)
from workflows.permissions import Actor, Permission, permission_label, require
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")


def _where(call: BillingCall) -> dict[str, Any]:
    return {"user": {"id": call.command["user_id"]}, "channel_id": call.command.get("channel_id")}


async def _post(
    client: AsyncWebClient, body: Mapping[str, Any], text: str, blocks: list[Block]
) -> None:
    """An ephemeral message with blocks where the person is, or a DM without a channel."""
    user = user_of(body) or ""
    channel = channel_of(body)
    if channel:
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
            return
        except Exception:  # noqa: BLE001 - e.g. not_in_channel; the DM below still reaches them
            log.info("ephemeral fee message failed; sending a DM")
    await client.chat_postMessage(channel=user, text=text, blocks=blocks)


def _context(runtime: Runtime, store: Any) -> Context:
    return Context(store, runtime.clock, runtime.settings.tz)


def _biller(runtime: Runtime) -> BulkFeeBiller:
    return BulkFeeBiller(
        runtime.sessions,
        runtime.clock,
        runtime.settings.tz,
        mail_domain=runtime.settings.mail_domain,
    )


async def _show_preview(
    runtime: Runtime, client: AsyncWebClient, body: Mapping[str, Any], actor: Actor, fee_id: int
) -> None:
    async with runtime.reads() as store:
        fees = SqlFeeStore.beside(store)
        preview = await preview_fee(_context(runtime, store), fees, actor, fee_id)
        names = await fees.building_names([int(b) for b in preview.fee.building_ids])
    text, blocks = build_fee_preview(preview, names, signing_keys(runtime.settings))
    await _post(client, body, text, blocks)


async def _define_modal(runtime: Runtime) -> Block:
    async with runtime.reads() as store:
        year = current_school_year(await store.settings.get(), _context(runtime, store).today())
        buildings = [(b.id, b.name) for b in await SqlFeeStore.beside(store).buildings()]
    return build_define_modal(year, buildings)


# --- /billing fees and /billing fee-items ------------------------------------------------------


async def handle_billing_fees(call: BillingCall) -> None:
    runtime = call.runtime
    if not call.actor.can(Permission.MANAGE_FEES):
        reason = f"`/billing fees` needs the {permission_label(Permission.MANAGE_FEES)} permission."
        await call.ack(response_type="ephemeral", text=f":no_entry: {reason} Nothing was changed.")
        await record_refusal(runtime, call.actor, "/billing fees", reason)
        return
    words = list(call.args)
    action = words[0].lower() if words else ""
    try:
        if action == "new" and len(words) == 1:
            await call.ack()
            async with reported(runtime, call.client, _where(call), "/billing fees", call.actor):
                await call.client.views_open(
                    trigger_id=call.command["trigger_id"], view=await _define_modal(runtime)
                )
            return
        if action == "preview" and len(words) in (2, 3):
            code, year_text = words[1], (words[2] if len(words) == 3 else None)
            if year_text is not None:
                clean_school_year(year_text)
            await call.ack()
            async with reported(runtime, call.client, _where(call), "/billing fees", call.actor):
                async with runtime.reads() as store:
                    year = year_text or current_school_year(
                        await store.settings.get(), _context(runtime, store).today()
                    )
                    fee = await find_fee(SqlFeeStore.beside(store), code, year)
                await _show_preview(runtime, call.client, _where(call), call.actor, fee.id)
            return
        if len(words) > 1:
            raise ValidationError("I didn't follow that.")
        year_arg = clean_school_year(words[0]) if words else None
    except ValidationError as exc:
        await call.ack(response_type="ephemeral", text=f":warning: {exc.message}\n\n{USAGE}")
        return
    await call.ack()
    async with reported(runtime, call.client, _where(call), "/billing fees", call.actor):
        async with runtime.reads() as store:
            fees = SqlFeeStore.beside(store)
            year, found = await list_fees(_context(runtime, store), fees, call.actor, year_arg)
            names = {b.id: b.name for b in await fees.buildings()}
        text, blocks = build_fee_list(year, found, names, signing_keys(runtime.settings))
        await _post(call.client, _where(call), text, blocks)


async def handle_billing_fee_items(call: BillingCall) -> None:
    """The fee schedule by kind, posted after the ack like `/billing fees`."""
    runtime = call.runtime
    if not call.actor.can(Permission.MANAGE_FEES):
        reason = (
            f"`/billing fee-items` needs the {permission_label(Permission.MANAGE_FEES)} permission."
        )
        await call.ack(response_type="ephemeral", text=f":no_entry: {reason}")
        await record_refusal(runtime, call.actor, "/billing fee-items", reason)
        return
    try:
        if len(call.args) > 1:
            raise ValidationError("I didn't follow that.")
        kind = parse_fee_kind(call.args[0]) if call.args else None
    except ValidationError as exc:
        await call.ack(
            response_type="ephemeral", text=f":warning: {exc.message}\n\n{FEE_ITEMS_USAGE}"
        )
        return
    await call.ack()
    async with reported(runtime, call.client, _where(call), "/billing fee-items", call.actor):
        async with runtime.reads() as store:
            items = await list_fee_items(SqlFeeItemStore.beside(store), call.actor, kind)
        text, blocks = build_fee_item_list(items, kind)
        await _post(call.client, _where(call), text, blocks)


# --- the fee list's buttons --------------------------------------------------------------------


@on_click(FeeAction.PREVIEW, what="preview a fee", ref=FeeRef)
async def handle_fee_preview(click: Click[FeeRef]) -> None:
    await _show_preview(click.runtime, click.client, click.body, click.actor, click.ref.fee_id)


@on_click(FeeAction.APPLY, what="apply a fee", ref=FeeRef)
async def handle_fee_apply(click: Click[FeeRef]) -> None:
    async with click.runtime.reads() as store:
        fee = await SqlFeeStore.beside(store).get_fee(click.ref.fee_id)
    if fee is None:
        raise NotFound("That fee no longer exists; nothing was billed.")
    # Permission is checked here, at click time, by the workflow.
    result = await apply_fee(_biller(click.runtime), click.actor, click.ref.fee_id)
    await click.tell(applied_text(fee, result))


@on_click(FeeAction.NEW, what="define a fee")
async def handle_fee_new(click: Click[None]) -> None:
    require(click.actor, Permission.MANAGE_FEES)
    await click.open_view(await _define_modal(click.runtime))


async def define_submitted_fee(
    runtime: Runtime, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, actor: Actor
) -> None:
    """A new fee is written before the ack (a single insert): its errors show in the form."""
    form = read_define_form(body["view"]["state"]["values"])
    if form.definition is None:
        await ack(response_action="errors", errors=form.errors)
        return
    try:
        async with runtime.stores() as store:
            fees = SqlFeeStore.beside(store)
            fee, created = await define_fee(_context(runtime, store), fees, actor, form.definition)
            names = await fees.building_names([int(b) for b in fee.building_ids])
            text = defined_text(fee, created, names)
            await store.commit()
    except DomainError as exc:
        await ack(response_action="errors", errors=modal_errors(exc, FIELD_BLOCKS, FeeBlock.CODE))
        if isinstance(exc, PermissionDenied):
            await record_refusal(runtime, actor, "define a fee", exc.message)
        return
    await ack()
    await tell_user(client, body, text)


def register(app: AsyncApp, runtime: Runtime) -> None:
    add_subcommand(
        app,
        "fee-items",
        "`[KIND]`: the fee schedule by kind (damage fees on incident invoices, collection items "
        "at device collection).",
        handle_billing_fee_items,
    )
    add_subcommand(
        app,
        "fees",
        "`[YEAR]`, `new` or `preview CODE [YEAR]`: annual fees billed once per student "
        "(e.g. a technology fee), with a preview before anything is billed.",
        handle_billing_fees,
    )
    wire(app, runtime, handle_fee_preview, handle_fee_apply, handle_fee_new)

    @app.view(FeeViewId.DEFINE.value)
    async def handle_define_submission(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        await define_submitted_fee(runtime, ack, body, client, context["actor"])
