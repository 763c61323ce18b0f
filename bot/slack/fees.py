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
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.blocks import Block
from bot.slack.errors import FormErrors, channel_of, user_of
from bot.slack.fee_item_blocks import USAGE as FEE_ITEMS_USAGE
from bot.slack.fee_item_blocks import build_fee_item_list
from bot.slack.fees_blocks import (
    FIELD_BLOCKS,
    USAGE,
    FeeAction,
    FeeBlock,
    FeeDefineModal,
    FeeRef,
    FeeViewId,
    applied_text,
    build_define_modal,
    build_fee_list,
    build_fee_preview,
    defined_text,
    read_define_form,
)
from bot.slack.listeners import (
    Click,
    Command,
    ModalForm,
    Slack,
    Submitted,
    on_click,
    on_subcommand,
    wire,
)
from bot.slack.metadata import pack
from services.bulk_fees import BulkFeeBiller
from storage.fee_item_store import SqlFeeItemStore
from storage.fee_store import SqlFeeStore
from workflows.errors import NotFound, ValidationError
from workflows.fee_items import list_fee_items
from workflows.fee_kinds import parse_fee_kind
from workflows.fees import (
    FeeDefinition,
    apply_fee,
    check_fee_definition,
    clean_school_year,
    current_school_year,
    define_fee,
    find_fee,
    list_fees,
    preview_fee,
)
from workflows.i18n import N_, _
from workflows.permissions import Permission, require

log = logging.getLogger("devicecare.slack")


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


def _biller(runtime: Runtime) -> BulkFeeBiller:
    return BulkFeeBiller(
        runtime.sessions,
        runtime.clock,
        runtime.settings.tz,
        mail_domain=runtime.settings.mail_domain,
    )


async def _show_preview(slack: Slack, fee_id: int) -> None:
    async with slack.runtime.reads() as store:
        fees = SqlFeeStore.beside(store)
        preview = await preview_fee(slack.context(store), fees, slack.actor, fee_id)
        names = await fees.building_names([int(b) for b in preview.fee.building_ids])
    text, blocks = build_fee_preview(preview, names, slack.keys)
    await _post(slack.client, slack.body, text, blocks)


async def _define_modal(slack: Slack) -> Block:
    async with slack.runtime.reads() as store:
        year = current_school_year(await store.settings.get(), slack.context(store).today())
        buildings = [(b.id, b.name) for b in await SqlFeeStore.beside(store).buildings()]
    return build_define_modal(year, buildings, pack(FeeDefineModal(), slack.keys))


# --- /billing fees and /billing fee-items ------------------------------------------------------


def _fees_words(args: tuple[str, ...]) -> tuple[str, str | None, str | None]:
    """`/billing fees …` read: ("new" | "preview" | "list", the fee's code, the year typed).
    A year that isn't one, or words it doesn't follow, raise (answered with the usage)."""
    words = list(args)
    action = words[0].lower() if words else ""
    if action == "new" and len(words) == 1:
        return "new", None, None
    if action == "preview" and len(words) in (2, 3):
        year_text = words[2] if len(words) == 3 else None
        if year_text is not None:
            clean_school_year(year_text)
        return "preview", words[1], year_text
    if len(words) > 1:
        raise ValidationError(_("I didn't follow that."))
    return "list", None, clean_school_year(words[0]) if words else None


@on_subcommand(
    "fees",
    N_(
        "`[YEAR]`, `new` or `preview CODE [YEAR]`: annual fees billed once per student "
        "(e.g. a technology fee), with a preview before anything is billed."
    ),
    what="/billing fees",
    refusal=N_(":no_entry: {} Nothing was changed."),
    needs=Permission.MANAGE_FEES,
    warning=lambda reason: f":warning: {reason}\n\n{_(USAGE)}",
)
async def handle_billing_fees(cmd: Command) -> None:
    action, code, year = _fees_words(cmd.args)
    await cmd.ack()
    if action == "new":
        await cmd.open_view(await _define_modal(cmd))
    elif action == "preview" and code is not None:
        async with cmd.runtime.reads() as store:
            if year is None:
                year = current_school_year(await store.settings.get(), cmd.context(store).today())
            fee = await find_fee(SqlFeeStore.beside(store), code, year)
        await _show_preview(cmd, fee.id)
    else:
        async with cmd.runtime.reads() as store:
            fees = SqlFeeStore.beside(store)
            shown, found = await list_fees(cmd.context(store), fees, cmd.actor, year)
            names = {b.id: b.name for b in await fees.buildings()}
        text, blocks = build_fee_list(shown, found, names, cmd.keys)
        await _post(cmd.client, cmd.body, text, blocks)


@on_subcommand(
    "fee-items",
    N_(
        "`[KIND]`: the fee schedule by kind (damage fees on incident invoices, collection "
        "items at device collection)."
    ),
    what="/billing fee-items",
    needs=Permission.MANAGE_FEES,
    warning=lambda reason: f":warning: {reason}\n\n{_(FEE_ITEMS_USAGE)}",
)
async def handle_billing_fee_items(cmd: Command) -> None:
    """The fee schedule by kind, posted after the ack like `/billing fees`."""
    if len(cmd.args) > 1:
        raise ValidationError(_("I didn't follow that."))
    kind = parse_fee_kind(cmd.args[0]) if cmd.args else None
    await cmd.ack()
    async with cmd.runtime.reads() as store:
        items = await list_fee_items(SqlFeeItemStore.beside(store), cmd.actor, kind)
    text, blocks = build_fee_item_list(items, kind)
    await _post(cmd.client, cmd.body, text, blocks)


# --- the fee list's buttons --------------------------------------------------------------------


@on_click(FeeAction.PREVIEW, what="preview a fee", ref=FeeRef)
async def handle_fee_preview(click: Click[FeeRef]) -> None:
    await _show_preview(click, click.ref.fee_id)


@on_click(FeeAction.APPLY, what="apply a fee", ref=FeeRef)
async def handle_fee_apply(click: Click[FeeRef]) -> None:
    async with click.runtime.reads() as store:
        fee = await SqlFeeStore.beside(store).get_fee(click.ref.fee_id)
    if fee is None:
        raise NotFound(_("That fee no longer exists; nothing was billed."))
    # Permission is checked here, at click time, by the workflow.
    result = await apply_fee(_biller(click.runtime), click.actor, click.ref.fee_id)
    await click.tell(applied_text(fee, result))


@on_click(FeeAction.NEW, what="define a fee")
async def handle_fee_new(click: Click[None]) -> None:
    require(click.actor, Permission.MANAGE_FEES)
    await click.open_view(await _define_modal(click))


# --- the new-fee modal -------------------------------------------------------------------------


define_form: ModalForm[FeeDefineModal, FeeDefinition] = ModalForm(
    FeeViewId.DEFINE.value,
    meta=FeeDefineModal,
    what="define a fee",
    doing=N_("define the fee"),
    fields=FIELD_BLOCKS,
    default_field=FeeBlock.CODE,
    shown_only=False,
)


@define_form.check
async def check_define_form(form: Submitted[FeeDefineModal]) -> FeeDefinition:
    """The form read and checked against the rules without writing: errors by their fields."""
    read = read_define_form(form.values)
    if read.definition is None:
        raise FormErrors(read.errors)
    async with form.runtime.reads() as store:
        await check_fee_definition(
            form.context(store), SqlFeeStore.beside(store), form.actor, read.definition
        )
    return read.definition


@define_form.write
async def define_submitted(form: Submitted[FeeDefineModal], definition: FeeDefinition) -> None:
    async with form.runtime.stores() as store:
        fees = SqlFeeStore.beside(store)
        fee, created = await define_fee(form.context(store), fees, form.actor, definition)
        names = await fees.building_names([int(b) for b in fee.building_ids])
        text = defined_text(fee, created, names)
        await store.commit()
    await form.tell(text)


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(
        app,
        runtime,
        handle_billing_fee_items,
        handle_billing_fees,
        handle_fee_preview,
        handle_fee_apply,
        handle_fee_new,
        define_form,
    )
