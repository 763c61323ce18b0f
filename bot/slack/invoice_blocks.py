"""Block Kit for invoices: the create-invoice modal with its live insurance preview, the
confirmation view and the thread message. Builders only; no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from bot.signing import Keys
from bot.slack.blocks import (
    MINUS,
    Block,
    button,
    checkbox,
    context_block,
    date_input,
    element,
    esc,
    fmt_date,
    has_input,
    input_block,
    modal,
    option,
    plain,
    section,
    select_input,
    text_input,
)
from bot.slack.ids import IncidentAction, IncidentRef
from bot.slack.metadata import Payload, pack
from workflows.errors import ValidationError
from workflows.i18n import _
from workflows.insurance import claim_pays_nothing
from workflows.invoice_audit import InvoiceAudit, Style
from workflows.invoices import CreateInvoice, CustomLine, InvoicePreview
from workflows.labels import flags_text
from workflows.money import format_cents, parse_amount
from workflows.ports import FeeItemRecord, InvoiceRecord

MAX_CUSTOM_LINES = 3
MAX_FEE_OPTIONS = 100  # Slack's limit for a select's options
MAX_DESCRIPTION = 300  # what an invoice line keeps


# --- ids ------------------------------------------------------------------------------------


class InvoiceView(StrEnum):
    CREATE = "invoice.create"
    CREATED = "invoice.created"


class InvoiceBlock(StrEnum):
    """Block ids; each input's action id is the same string, so state is read by one name."""

    SUMMARY = "invoice.summary"
    FEES = "invoice.fees"
    DESCRIPTION_1 = "invoice.custom_description_1"
    AMOUNT_1 = "invoice.custom_amount_1"
    DESCRIPTION_2 = "invoice.custom_description_2"
    AMOUNT_2 = "invoice.custom_amount_2"
    DESCRIPTION_3 = "invoice.custom_description_3"
    AMOUNT_3 = "invoice.custom_amount_3"
    DUE_DATE = "invoice.due_date"
    AUTOMATION = "invoice.automation"
    OVERRIDE = "invoice.apply_override"
    ZERO_CLAIM = "invoice.zero_claim_ok"
    PREVIEW = "invoice.preview"
    PREVIEW_ACTIONS = "invoice.preview_actions"


class InvoiceAction(StrEnum):
    REFRESH_PREVIEW = "invoice.refresh_preview"


CUSTOM_LINE_BLOCKS: tuple[tuple[InvoiceBlock, InvoiceBlock], ...] = (
    (InvoiceBlock.DESCRIPTION_1, InvoiceBlock.AMOUNT_1),
    (InvoiceBlock.DESCRIPTION_2, InvoiceBlock.AMOUNT_2),
    (InvoiceBlock.DESCRIPTION_3, InvoiceBlock.AMOUNT_3),
)

# Inputs whose change re-renders the preview (dispatch_action → block_actions → views.update).
PREVIEW_TRIGGERS: tuple[str, ...] = (
    InvoiceBlock.FEES,
    InvoiceBlock.AMOUNT_1,
    InvoiceBlock.AMOUNT_2,
    InvoiceBlock.AMOUNT_3,
    InvoiceBlock.OVERRIDE,
    InvoiceAction.REFRESH_PREVIEW,
)

# Workflow error fields → the block the message belongs next to.
FIELD_BLOCKS: dict[str, str] = {
    "fee_items": InvoiceBlock.FEES,
    "custom_lines": InvoiceBlock.DESCRIPTION_1,
    "due_date": InvoiceBlock.DUE_DATE,
    "automation": InvoiceBlock.AUTOMATION,
    "apply_override": InvoiceBlock.OVERRIDE,
}

AUTOMATION_ON = "on"
NO_FEE = "none"
OVERRIDE_ON = "apply"
ZERO_CLAIM_OK = "use_claim"


class InvoiceModal(Payload):
    """The create-invoice modal's private_metadata."""

    incident_id: int


# --- small shared helpers -------------------------------------------------------------------


def request_override_button(incident_id: int, secret: Keys) -> Block:
    return button(
        _("Request override"),
        IncidentAction.REQUEST_OVERRIDE,
        pack(IncidentRef(incident_id=incident_id), secret),
    )


# --- the form -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomLineInput:
    description: str
    amount_text: str


@dataclass(frozen=True)
class InvoiceForm:
    """What the modal holds right now, read from view state; `errors` by block id."""

    fee_item_ids: tuple[int, ...] = ()
    custom_lines: tuple[CustomLineInput, ...] = (
        CustomLineInput("", ""),
        CustomLineInput("", ""),
        CustomLineInput("", ""),
    )
    parsed_custom: tuple[CustomLine, ...] = ()
    preview_custom: tuple[CustomLine, ...] = ()
    due_date: date | None = None
    automation_enabled: bool | None = None  # None: the modal had no automation checkbox
    apply_override: bool = False
    # The technician has read that insurance pays $0.00 yet a claim is used, and goes on.
    zero_claim_ok: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    def command(self, incident_id: int, idempotency_key: str | None = None) -> CreateInvoice:
        return CreateInvoice(
            incident_id=incident_id,
            fee_item_ids=self.fee_item_ids,
            custom_lines=self.parsed_custom,
            due_date=self.due_date,
            automation_enabled=self.automation_enabled,
            apply_override=self.apply_override,
            idempotency_key=idempotency_key,
        )

    def preview_command(self, incident_id: int) -> CreateInvoice:
        """What the preview prices: lines still missing a description count too."""
        return CreateInvoice(
            incident_id=incident_id,
            fee_item_ids=self.fee_item_ids,
            custom_lines=self.preview_custom,
            due_date=self.due_date,
            apply_override=self.apply_override,
        )

    @property
    def preview_problems(self) -> list[str]:
        """Errors worth showing while the form is being filled (not the missing-text ones)."""
        amount_blocks = {amount for _desc, amount in CUSTOM_LINE_BLOCKS}
        return [
            message
            for block, message in self.errors.items()
            if block in amount_blocks or block in (InvoiceBlock.FEES, InvoiceBlock.DUE_DATE)
        ]


def _selected(picked: Mapping[str, Any]) -> list[str]:
    return [str(o.get("value", "")) for o in picked.get("selected_options") or []]


def read_invoice_form(values: Mapping[str, Any]) -> InvoiceForm:
    """Parse the modal's state into typed values; bad input becomes a field error."""
    errors: dict[str, str] = {}
    fee_ids: list[int] = []
    for raw in _selected(element(values, InvoiceBlock.FEES)):
        if raw == NO_FEE:
            continue
        try:
            fee_ids.append(int(raw))
        except ValueError:
            errors[InvoiceBlock.FEES] = _("One of the chosen fees isn't valid.")

    raw_lines: list[CustomLineInput] = []
    parsed: list[CustomLine] = []
    preview: list[CustomLine] = []
    for number, (desc_block, amount_block) in enumerate(CUSTOM_LINE_BLOCKS, start=1):
        desc = str(element(values, desc_block).get("value") or "").strip()
        amount_text = str(element(values, amount_block).get("value") or "").strip()
        raw_lines.append(CustomLineInput(desc, amount_text))
        if not desc and not amount_text:
            continue
        if not desc:
            errors[desc_block] = _("Describe this line, or clear its amount.")
        if not amount_text:
            errors[amount_block] = _("Enter an amount for this line, for example 25.00.")
            continue
        try:
            cents = parse_amount(amount_text, field=amount_block)
        except ValidationError as exc:
            errors[amount_block] = exc.message
            continue
        # Undescribed lines still count in the preview, so the total moves as people type.
        untitled = _("Custom line {number}", number=number)
        preview.append(CustomLine(desc[:MAX_DESCRIPTION] or untitled, cents))
        if desc:
            parsed.append(CustomLine(description=desc[:MAX_DESCRIPTION], amount_cents=cents))

    due: date | None = None
    picked = element(values, InvoiceBlock.DUE_DATE).get("selected_date")
    if picked:
        try:
            due = date.fromisoformat(str(picked))
        except ValueError:
            errors[InvoiceBlock.DUE_DATE] = _("Pick a due date from the calendar.")

    automation = (
        AUTOMATION_ON in _selected(element(values, InvoiceBlock.AUTOMATION))
        if has_input(values, InvoiceBlock.AUTOMATION)
        else None
    )
    override = OVERRIDE_ON in _selected(element(values, InvoiceBlock.OVERRIDE))
    zero_claim_ok = ZERO_CLAIM_OK in _selected(element(values, InvoiceBlock.ZERO_CLAIM))
    return InvoiceForm(
        fee_item_ids=tuple(fee_ids),
        custom_lines=tuple(raw_lines),
        parsed_custom=tuple(parsed),
        preview_custom=tuple(preview),
        due_date=due,
        automation_enabled=automation,
        apply_override=override,
        zero_claim_ok=zero_claim_ok,
        errors=errors,
    )


# --- the modal ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentSummary:
    """The incident facts at the top of the modal."""

    incident_id: int
    student_name: str
    device_label: str
    occurred_on: date
    flags: tuple[str, ...]
    existing_invoices: tuple[str, ...] = ()


def fee_label(item: FeeItemRecord) -> str:
    return f"{item.name} \u2014 {format_cents(item.price_cents)}"


def _summary_blocks(summary: IncidentSummary) -> list[Block]:
    flags = esc(flags_text(summary.flags))
    blocks = [
        section(
            _(
                "*Incident #{number}* \u00b7 {student}\n{device} \u00b7 {date} \u00b7 {flags}",
                number=summary.incident_id,
                student=esc(summary.student_name),
                device=esc(summary.device_label),
                date=fmt_date(summary.occurred_on),
                flags=flags,
            ),
            block_id=InvoiceBlock.SUMMARY,
        )
    ]
    if summary.existing_invoices:
        blocks.append(
            context_block(
                _(
                    ":page_facing_up: Already invoiced: {invoices}",
                    invoices="; ".join(summary.existing_invoices),
                )
            )
        )
    return blocks


def _fees_block(fees: Sequence[FeeItemRecord], form: InvoiceForm) -> Block:
    offered = list(fees)[:MAX_FEE_OPTIONS]
    options = [option(fee_label(f), str(f.id)) for f in offered]
    chosen = [o for o in options if int(o["value"]) in set(form.fee_item_ids)]
    # A select needs an option; with no fee, one stands for "nothing" and is ignored.
    element = select_input(
        options or [option(_("No damage fee applies to this device"), NO_FEE)],
        placeholder=_("Parts and fines from the damage fee schedule"),
        multi=True,
        initial_options=chosen,
    )
    return input_block(
        InvoiceBlock.FEES,
        _("Damage fees"),
        element,
        optional=True,
        dispatch_action=True,
        hint=_("Pick parts and fines; the preview below updates."),
    )


def _text_input(
    block_id: str,
    label: str,
    value: str,
    *,
    placeholder: str,
    max_length: int,
    dispatch: bool = False,
) -> Block:
    element = text_input(
        placeholder=placeholder, max_length=max_length, initial=value, on_enter=dispatch
    )
    return input_block(block_id, label, element, optional=True, dispatch_action=dispatch)


def _custom_line_blocks(form: InvoiceForm) -> list[Block]:
    blocks: list[Block] = []
    for number, ((desc_block, amount_block), line) in enumerate(
        zip(CUSTOM_LINE_BLOCKS, form.custom_lines, strict=False), start=1
    ):
        blocks.append(
            _text_input(
                desc_block,
                _("Custom line {number}", number=number),
                line.description,
                placeholder=_("What it is for, e.g. Replacement stylus"),
                max_length=MAX_DESCRIPTION,
            )
        )
        blocks.append(
            _text_input(
                amount_block,
                _("Amount for line {number} ($)", number=number),
                line.amount_text,
                placeholder=_("e.g. 25.00"),
                max_length=20,
                dispatch=True,
            )
        )
    return blocks


def _due_block(due: date) -> Block:
    return input_block(InvoiceBlock.DUE_DATE, _("Due date"), date_input(due))


def _automation_block(enabled: bool) -> Block:
    choice = option(_("Send notices and reminders automatically"), AUTOMATION_ON)
    element = checkbox(choice, checked=enabled)
    return input_block(InvoiceBlock.AUTOMATION, _("Automation"), element, optional=True)


def _override_block(checked: bool) -> Block:
    choice = {
        "text": plain(_("Apply the policy anyway (claim-cap override)")),
        "description": plain(_("Recorded with your name on the invoice.")),
        "value": OVERRIDE_ON,
    }
    return input_block(
        InvoiceBlock.OVERRIDE,
        _("Claim cap reached"),
        checkbox(choice, checked=checked),
        optional=True,
        dispatch_action=True,
    )


def zero_claim_warning(preview: InvoicePreview) -> str | None:
    """Why to stop and think when insurance would pay nothing yet use a claim; None otherwise."""
    decision, coverage = preview.decision, preview.coverage
    if not preview.lines or coverage is None or not claim_pays_nothing(decision):
        return None
    claim = claim_line(decision.claim_number or preview.claims_used + 1, coverage.max_claims)
    return _(
        "Insurance would pay $0.00 on this invoice, but it would still use a claim "
        "({claim}, {coverage}).",
        claim=claim.lower(),
        coverage=coverage.label,
    )


def _zero_claim_block(warning: str, checked: bool) -> Block:
    choice = {
        "text": plain(_("Use the claim anyway")),
        "description": plain(_("Leave it unticked and change the fees to keep the claim.")),
        "value": ZERO_CLAIM_OK,
    }
    element = checkbox(choice, checked=checked)
    return input_block(InvoiceBlock.ZERO_CLAIM, warning[:2000], element, optional=True)


def claim_line(number: int, max_claims: int | None) -> str:
    if max_claims is None:
        return _("Claim {number} this term", number=number)
    return _("Claim {number} of {max_claims} this term", number=number, max_claims=max_claims)


def _coverage_lines(preview: InvoicePreview) -> list[str]:
    decision = preview.decision
    coverage = preview.coverage
    if coverage is None:
        return [_(":grey_question: *No active coverage* on the incident date \u2014 full price.")]
    if decision.coverage_applied:
        number = decision.claim_number or preview.claims_used + 1
        claim = claim_line(number, coverage.max_claims)
        if decision.override_applied:
            who = preview.approved_override_by
            if who:
                claim = _(
                    "{claim} \u00b7 :large_orange_circle: Claim-cap override applied "
                    "(approved by {who})",
                    claim=claim,
                    who=esc(who),
                )
            else:
                claim = _(
                    "{claim} \u00b7 :large_orange_circle: Claim-cap override applied", claim=claim
                )
        return [claim]
    # The cap is reached and no override applies.
    lines = [
        _(
            ":no_entry: *Claim cap reached* ({used} of {max_claims} this term, {coverage}) "
            "\u2014 billed at full price.",
            used=preview.claims_used,
            max_claims=coverage.max_claims,
            coverage=esc(coverage.label),
        )
    ]
    if preview.override_pending:
        lines.append(
            _(
                ":hourglass_flowing_sand: An override request for this incident is waiting: its "
                "decision will price this invoice, and the family's email waits for it."
            )
        )
    if preview.override_offered:
        lines.append(_("Tick *Apply the policy anyway* above to use the override."))
    elif coverage.allow_override and not preview.override_pending:
        lines.append(_("After creating the invoice you can *Request override* from an approver."))
    else:
        lines.append(
            _("{policy} doesn't allow claim-cap overrides.", policy=esc(coverage.policy_name))
        )
    return lines


def preview_text(preview: InvoicePreview | None, problems: Sequence[str] = ()) -> str:
    """The insurance math in words: subtotal, insurance as a deduction, what the family owes,
    then where the claim stands this term."""
    out = [_("*Preview*")]
    if preview is None:
        out.append(_("_The preview isn't available right now._"))
        return "\n".join(out)
    decision = preview.decision
    coverage = preview.coverage
    if preview.lines:
        out.append(_("Original subtotal: *{amount}*", amount=format_cents(preview.subtotal_cents)))
        if coverage is not None and decision.coverage_applied:
            out.append(
                _(
                    "Insurance applied ({policy} {term}): *{amount}*",
                    policy=esc(coverage.policy_name),
                    term=esc(coverage.term_label),
                    amount=MINUS + format_cents(decision.split.policy_cents),
                )
            )
        out.append(
            _("*{amount} owed* by the family", amount=format_cents(decision.split.client_cents))
        )
    else:
        out.append(_("_Pick fees or add a custom line to see the amounts._"))
    out.extend(_coverage_lines(preview))
    out.append(_("Due {date}", date=fmt_date(preview.due_date)))
    out.extend(f":warning: {esc(p)}" for p in problems)
    return "\n".join(out)


def build_invoice_modal(
    *,
    summary: IncidentSummary,
    fees: Sequence[FeeItemRecord],
    preview: InvoicePreview | None,
    form: InvoiceForm,
    secret: Keys,
    problems: Sequence[str] = (),
) -> Block:
    blocks = _summary_blocks(summary)
    blocks.append(_fees_block(fees, form))
    blocks.extend(_custom_line_blocks(form))
    if preview is not None:
        blocks.append(_due_block(form.due_date or preview.due_date))
        if preview.can_set_automation:
            automation = form.automation_enabled
            blocks.append(
                _automation_block(preview.automation_default if automation is None else automation)
            )
        if preview.override_offered:
            blocks.append(_override_block(form.apply_override))
        warning = zero_claim_warning(preview)
        if warning is not None:
            blocks.append(_zero_claim_block(warning, form.zero_claim_ok))
    blocks.append({"type": "divider"})
    blocks.append(section(preview_text(preview, problems), block_id=InvoiceBlock.PREVIEW))
    blocks.append(
        {
            "type": "actions",
            "block_id": InvoiceBlock.PREVIEW_ACTIONS,
            "elements": [button(_("Update preview"), InvoiceAction.REFRESH_PREVIEW, "refresh")],
        }
    )
    return modal(
        InvoiceView.CREATE,
        _("Create invoice"),
        blocks,
        submit=_("Create invoice"),
        private_metadata=pack(InvoiceModal(incident_id=summary.incident_id), secret),
    )


# --- after creation -------------------------------------------------------------------------


def override_can_be_requested(invoice: InvoiceRecord) -> bool:
    """A full-price invoice past the cap, on a policy that allows overrides."""
    snapshot = invoice.insurance_snapshot or {}
    return (
        invoice.cap_reached
        and not invoice.override_applied
        and invoice.status != "cancelled"
        and bool(snapshot.get("allow_override"))
    )


def invoice_created_text(invoice: InvoiceRecord) -> str:
    """ "Invoice INV-000001 created: $29.00 owed (insurance $96.00)"."""
    return _(
        "Invoice {number} created: {amount} owed (insurance {insurance})",
        number=invoice.number,
        amount=format_cents(invoice.total_cents),
        insurance=format_cents(invoice.insurance_cents),
    )


def invoice_facts(invoice: InvoiceRecord) -> list[str]:
    """What the audit lines don't say: no coverage at all, and the due date."""
    facts: list[str] = []
    if invoice.insurance_snapshot is None and invoice.incident_id is not None:
        facts.append(_("No active coverage on the incident date"))
    if invoice.due_date is not None:
        facts.append(_("Due {date}", date=fmt_date(invoice.due_date)))
    return facts


def audit_text(audit: InvoiceAudit) -> str:
    """The invoice's insurance audit as mrkdwn, one line each (`workflows.invoice_audit`: the
    lines the emails and the family page show too)."""
    rows: list[str] = []
    for line in audit.lines:
        label = esc(line.label)
        if line.style is Style.TOTAL:
            rows.append(f"*{label}: {line.amount_text}*")
        elif line.amount_cents is None:
            rows.append(f"_{label}_")
        else:
            rows.append(f"{label}: {line.amount_text}")
    if audit.badge is not None:
        rows.append(f":large_orange_circle: *{esc(audit.badge.text)}*")
    return "\n".join(rows)


def _facts_blocks(invoice: InvoiceRecord, audit: InvoiceAudit) -> list[Block]:
    blocks: list[Block] = [section(audit_text(audit))]
    facts = invoice_facts(invoice)
    if facts:
        blocks.append(context_block(*facts))
    return blocks


def build_invoice_creating_modal() -> Block:
    """The form's answer, at once; the invoice then replaces it (`build_invoice_created_modal`)."""
    text = _(
        ":hourglass_flowing_sand: Creating the invoice. It will show here and in the "
        "incident's thread; DeviceCare will message you if anything stops it."
    )
    return modal(InvoiceView.CREATED, _("Invoice"), [section(text)], close=_("Done"))


def build_invoice_created_modal(
    invoice: InvoiceRecord,
    *,
    student_name: str,
    secret: Keys,
    audit: InvoiceAudit,
    created: bool = True,
) -> Block:
    lines = [f":white_check_mark: *{esc(invoice_created_text(invoice))}*"]
    if not created:
        lines.append(_("_This form was already submitted; no second invoice was made._"))
    lines.append(_("For {student}.", student=esc(student_name)))
    blocks: list[Block] = [section("\n".join(lines)), *_facts_blocks(invoice, audit)]
    if invoice.status == "paid" and invoice.total_cents == 0:
        blocks.append(
            context_block(_("Insurance covered everything: the invoice is settled, no notice."))
        )
    elif invoice.notice_hold is not None:
        blocks.append(
            context_block(
                _(
                    ":hourglass_flowing_sand: The invoice email to the family is held until the "
                    "claim-cap override is decided; it will show the amount that stands then."
                )
            )
        )
    else:
        blocks.append(context_block(_(":email: The invoice notice to the family is on its way.")))
    if override_can_be_requested(invoice) and invoice.incident_id is not None:
        blocks.append(
            {
                "type": "actions",
                "elements": [request_override_button(invoice.incident_id, secret)],
            }
        )
    return modal(InvoiceView.CREATED, _("Invoice created"), blocks, close=_("Done"))


def build_invoice_thread_message(
    invoice: InvoiceRecord, *, created_by: str, secret: Keys, audit: InvoiceAudit
) -> tuple[str, list[Block]]:
    text = invoice_created_text(invoice)
    blocks: list[Block] = [
        section(
            _(
                ":page_facing_up: *{invoice}* \u2014 by {who}",
                invoice=esc(text),
                who=esc(created_by),
            )
        ),
        *_facts_blocks(invoice, audit),
    ]
    if override_can_be_requested(invoice) and invoice.incident_id is not None:
        blocks.append(
            {
                "type": "actions",
                "elements": [request_override_button(invoice.incident_id, secret)],
            }
        )
    return text, blocks
