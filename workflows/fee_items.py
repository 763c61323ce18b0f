"""Use cases for the fee schedule: add an item or change one (its kind among others), list them.

The schedule is what the Slack forms price from: damage fees on an incident's invoice, collection
fees at device collection (workflows.fee_kinds). Changing an item never alters an invoice or a
collection already made: they keep their own copy of the name and price.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from workflows.errors import ValidationError
from workflows.fee_kinds import FeeKind
from workflows.i18n import _
from workflows.invoices import MAX_LINE_CENTS
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, FeeItemRecord
from workflows.text import required_line

ENTITY = "fee_item"
MAX_NAME = 200
MAX_MODEL = 200
MAX_FLAG = 40
_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")


@dataclass(frozen=True)
class FeeItemChange:
    """What to set on the item with this code; None leaves a field as it is. A new item needs a
    name, a price and a kind. An empty `device_model` or `incident_flag` clears it."""

    code: str
    name: str | None = None
    price_cents: int | None = None
    kind: FeeKind | None = None
    device_model: str | None = None
    incident_flag: str | None = None
    active: bool | None = None


class FeeItemStore(Protocol):
    async def find_fee_item(self, code: str, *, lock: bool = False) -> FeeItemRecord | None: ...
    async def add_fee_item(
        self,
        *,
        code: str,
        name: str,
        kind: str,
        price_cents: int,
        device_model: str | None,
        incident_flag: str | None,
        active: bool,
    ) -> FeeItemRecord: ...
    async def all_fee_items(self) -> Sequence[FeeItemRecord]: ...


def clean_code(code: str) -> str:
    text = code.strip().lower()
    if not _CODE_RE.match(text):
        raise ValidationError(
            _("A fee item's code is 1-60 lowercase letters, digits, - or _, e.g. collect-charger."),
            field="code",
        )
    return text


def _clean_name(name: str) -> str:
    too_long = _("A name has at most {max} characters.", max=MAX_NAME)
    return required_line(name, MAX_NAME, "name", _("A fee item needs a name."), too_long)


def _clean_price(cents: int) -> int:
    if not 0 <= cents <= MAX_LINE_CENTS:
        raise ValidationError(_("The price is out of range."), field="amount")
    return cents


def _clean_optional(text: str, limit: int, field: str) -> str | None:
    cleaned = " ".join(text.split())
    if len(cleaned) > limit:
        raise ValidationError(
            _("The {field} has at most {limit} characters.", field=field, limit=limit), field=field
        )
    return cleaned or None


def logged(item: FeeItemRecord) -> dict[str, Any]:
    return {
        "code": item.code,
        "name": item.name,
        "kind": item.kind,
        "price_cents": item.price_cents,
        "device_model": item.device_model,
        "incident_flag": item.incident_flag,
        "active": item.active,
    }


async def set_fee_item(
    ctx: Context, items: FeeItemStore, actor: Actor, change: FeeItemChange
) -> tuple[FeeItemRecord, bool]:
    """Add the item, or change the one with the same code; True when added. Logged either way
    when something changed. Everything is checked before anything is written."""
    require(actor, Permission.MANAGE_FEES)
    code = clean_code(change.code)
    name = None if change.name is None else _clean_name(change.name)
    price = None if change.price_cents is None else _clean_price(change.price_cents)
    model = (
        None
        if change.device_model is None
        else _clean_optional(change.device_model, MAX_MODEL, "device_model")
    )
    flag = (
        None
        if change.incident_flag is None
        else _clean_optional(change.incident_flag, MAX_FLAG, "incident_flag")
    )
    existing = await items.find_fee_item(code, lock=True)
    if existing is None:
        if name is None or price is None or change.kind is None:
            raise ValidationError(
                _(
                    "There is no fee item {code} yet; a new one needs a name, an amount and a "
                    "kind.",
                    code=code,
                ),
                field="code",
            )
        item = await items.add_fee_item(
            code=code,
            name=name,
            kind=change.kind.value,
            price_cents=price,
            device_model=model,
            incident_flag=flag,
            active=True if change.active is None else change.active,
        )
        await ctx.store.activity.log(actor, ENTITY, item.id, "fee_item_added", after=logged(item))
        return item, True
    before = logged(existing)
    if name is not None:
        existing.name = name
    if price is not None:
        existing.price_cents = price
    if change.kind is not None:
        existing.kind = change.kind.value
    if change.device_model is not None:
        existing.device_model = model
    if change.incident_flag is not None:
        existing.incident_flag = flag
    if change.active is not None:
        existing.active = change.active
    after = logged(existing)
    if after != before:
        await ctx.store.activity.log(
            actor, ENTITY, existing.id, "fee_item_changed", before=before, after=after
        )
    return existing, False


async def list_fee_items(
    items: FeeItemStore, actor: Actor, kind: FeeKind | None = None, *, inactive: bool = False
) -> list[FeeItemRecord]:
    """The schedule by kind then name; only one kind when asked, retired items when asked."""
    require(actor, Permission.MANAGE_FEES)
    found = [
        item
        for item in await items.all_fee_items()
        if (kind is None or item.kind == kind) and (inactive or item.active)
    ]
    order = {k.value: n for n, k in enumerate(FeeKind)}
    return sorted(found, key=lambda i: (order.get(i.kind, 99), i.name.casefold(), i.code))
