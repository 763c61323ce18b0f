"""Block Kit for `/billing enroll`: the enrollment modal and what it says when done."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.slack.blocks import (
    Block,
    element,
    esc,
    fmt_date,
    input_block,
    modal,
    option,
    plain,
    select_input,
    text_input,
)
from bot.slack.metadata import OpenedFrom
from storage import models as m
from workflows.enrollment import CoverageStarts, Enrolled, EnrollmentStatus, term_of
from workflows.errors import ValidationError
from workflows.i18n import _
from workflows.money import format_cents

OPTION_TEXT = 75  # Slack's limit for an option's text
MAX_POLICIES = 100  # a static select holds at most 100 options


class EnrollmentField(StrEnum):
    """Block ids; each input's action id is the same string."""

    STUDENT = "enrollment.student"
    POLICY = "enrollment.policy"
    WAIVER = "enrollment.waiver_reason"


class EnrollmentView(StrEnum):
    ENROLL = "enrollment.enroll"


class EnrollForm(OpenedFrom):
    """The enroll modal's private_metadata."""


FIELD_BLOCKS: dict[str, str] = {
    "student": EnrollmentField.STUDENT,
    "policy": EnrollmentField.POLICY,
    "waiver_reason": EnrollmentField.WAIVER,
    "reason": EnrollmentField.WAIVER,
}


def _clip(text: str, limit: int = OPTION_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def student_option(student: m.Student) -> dict[str, Any]:
    grade = " \u00b7 " + _("grade {grade}", grade=student.grade) if student.grade else ""
    label = f"{student.full_name}{grade} \u00b7 {student.sis_id}"
    return {"text": plain(_clip(label), OPTION_TEXT), "value": str(student.id)}


def policy_label(policy: m.InsurancePolicy) -> str:
    term = term_of(policy)
    premium = format_cents(policy.premium_cents) if policy.premium_cents else _("no premium")
    term_text = term.label if term else _("no term")
    label = f"{policy.name} \u00b7 {term_text} \u00b7 {premium}"
    return _clip(label)


def build_enroll_modal(policies: Sequence[m.InsurancePolicy], metadata: str) -> Block:
    policy_options = [option(policy_label(p), str(p.id)) for p in policies[:MAX_POLICIES]]
    blocks: list[Block] = [
        input_block(
            EnrollmentField.STUDENT,
            _("Student"),
            {
                "type": "external_select",
                "placeholder": plain(_("Student name or SIS id")),
                "min_query_length": 2,
            },
        ),
        input_block(
            EnrollmentField.POLICY,
            _("Policy"),
            select_input(policy_options, placeholder=_("Pick a policy")),
        ),
        input_block(
            EnrollmentField.WAIVER,
            _("Premium waiver reason"),
            text_input(max_length=200, placeholder=_("Leave empty to bill the premium")),
            optional=True,
            hint=_(
                "Only for eligible families (e.g. free or reduced-price lunch): the premium is "
                "waived and coverage starts at once."
            ),
        ),
    ]
    return modal(
        EnrollmentView.ENROLL,
        _("Enroll in insurance"),
        blocks,
        submit=_("Enroll"),
        private_metadata=metadata,
    )


@dataclass(frozen=True)
class EnrollChoice:
    student_id: int
    policy_id: int
    waiver_reason: str | None


def _picked(values: Mapping[str, Any], field: EnrollmentField) -> str:
    option = element(values, field).get("selected_option") or {}
    return str(option.get("value") or "")


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and 0 < len(value) <= 12


def read_enroll_form(values: Mapping[str, Any]) -> EnrollChoice:
    student, policy = (
        _picked(values, EnrollmentField.STUDENT),
        _picked(values, EnrollmentField.POLICY),
    )
    if not _is_id(student):
        raise ValidationError(_("Pick the student."), field="student")
    if not _is_id(policy):
        raise ValidationError(_("Pick the policy."), field="policy")
    waiver = (values.get(EnrollmentField.WAIVER) or {}).get(EnrollmentField.WAIVER) or {}
    return EnrollChoice(int(student), int(policy), str(waiver.get("value") or "") or None)


def enrolled_text(done: Enrolled, student_name: str) -> str:
    """The ephemeral answer: what happened, and the premium invoice when there is one."""
    policy, enrollment, invoice = done.policy, done.enrollment, done.invoice
    who = esc(student_name)
    what = f"*{esc(policy.name)}* ({esc(enrollment.term_label)})"
    if not done.created:
        head = _(
            ":information_source: {who} was already enrolled in {what}; nothing changed.",
            who=who,
            what=what,
        )
    else:
        head = _(":white_check_mark: {who} is enrolled in {what}.", who=who, what=what)
    lines = [head]
    if invoice is not None:
        amount = format_cents(invoice.subtotal_cents)
        if done.premium_waived:
            lines.append(
                _(
                    "Premium {amount} waived on invoice *{number}* ({reason}).",
                    amount=amount,
                    number=esc(invoice.number),
                    reason=esc(enrollment.premium_waiver_reason),
                )
            )
        else:
            owed = format_cents(invoice.total_cents - invoice.paid_cents - invoice.waived_cents)
            number = esc(invoice.number)
            if invoice.due_date:
                line = _(
                    "Premium invoice *{number}* for {amount} ({owed} still owed, due {due}).",
                    number=number,
                    amount=amount,
                    owed=owed,
                    due=fmt_date(invoice.due_date),
                )
            else:
                line = _(
                    "Premium invoice *{number}* for {amount} ({owed} still owed).",
                    number=number,
                    amount=amount,
                    owed=owed,
                )
            lines.append(line)
    if enrollment.status == EnrollmentStatus.ACTIVE:
        lines.append(_("Coverage is active from {start}.", start=fmt_date(enrollment.term_start)))
    elif enrollment.status == EnrollmentStatus.PENDING_PAYMENT:
        lines.append(_("Coverage starts {when}.", when=CoverageStarts.ON_PAYMENT.label))
    return "\n".join(lines)


def no_policies_text() -> str:
    return _(
        "No insurance policy is open for enrollment. Set one up with "
        "`devicecare insurance policy set NAME --term-start … --term-end … --premium …`."
    )
