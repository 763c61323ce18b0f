"""`/billing fee-items`: the fee schedule by kind, each kind with the form that offers it."""

from __future__ import annotations

from collections.abc import Sequence

from bot.slack.blocks import Block, context_block, esc, section
from workflows.fee_kinds import FEE_KINDS, FeeKind, kind_label
from workflows.i18n import N_, _, ngettext
from workflows.money import format_cents
from workflows.ports import FeeItemRecord

USAGE = N_(
    "`/billing fee-items [damage|collection|annual|other]`: the fee schedule by kind. "
    "Add or change items with `devicecare fee-items set`."
)
# A section holds 3,000 characters; a long kind is cut and says how many are left out.
MAX_ITEMS_PER_KIND = 30


def item_line(item: FeeItemRecord) -> str:
    limits = [_("for {model}", model=esc(item.device_model)) if item.device_model else ""]
    limits.append(
        _("on {flag} incidents", flag=esc(item.incident_flag)) if item.incident_flag else ""
    )
    limit = ", ".join(x for x in limits if x)
    return f"• {esc(item.name)} \u2014 {format_cents(item.price_cents)} `{esc(item.code)}`" + (
        f" ({limit})" if limit else ""
    )


def build_fee_item_list(
    items: Sequence[FeeItemRecord], kind: FeeKind | None = None
) -> tuple[str, list[Block]]:
    """One section per kind present (the schedule's order is kept), titled with its form."""
    if not items:
        text = (
            _(
                "There are no fee items of kind {kind}. Add them with `devicecare fee-items set`.",
                kind=kind.value,
            )
            if kind
            else _("There are no fee items. Add them with `devicecare fee-items set`.")
        )
        return text, [section(text)]
    blocks: list[Block] = []
    for value in dict.fromkeys(item.kind for item in items):
        mine = [item for item in items if item.kind == value]
        form = FeeKind(value).offered_on if value in FEE_KINDS else _("no form")
        lines = [item_line(item) for item in mine[:MAX_ITEMS_PER_KIND]]
        if len(mine) > MAX_ITEMS_PER_KIND:
            lines.append(
                _(
                    "…and {count} more (`devicecare fee-items list`)",
                    count=len(mine) - MAX_ITEMS_PER_KIND,
                )
            )
        title = _("*{kind} fees* \u00b7 offered on: {form}", kind=kind_label(value), form=form)
        blocks.append(section(title + "\n" + "\n".join(lines)))
    blocks.append(context_block(_(USAGE)))
    summary = ngettext("Fee schedule: {n} item(s).", "Fee schedule: {n} item(s).", len(items))
    return summary, blocks
