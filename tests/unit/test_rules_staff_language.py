"""The rules speak to staff in the staff language: errors at the time they are raised, labels
where they are read; English stays as written, and what families read stays theirs."""

from __future__ import annotations

from datetime import date

import pytest

from workflows.billing_pauses import PauseView
from workflows.errors import InvalidTransition, ValidationError
from workflows.fee_kinds import FeeKind, parse_fee_kind
from workflows.i18n import staff_reading
from workflows.incident_status import IncidentStatus, check_transition, parse_status
from workflows.labels import flag_label, flags_text, invoice_status_label, payment_method_label
from workflows.money import parse_amount
from workflows.online_payments import PayAmountProblem, choose_pay_amount
from workflows.permissions import Actor, Permission


def _admin() -> Actor:
    return Actor(
        staff_id=1,
        name="Ana",
        role="Admin",
        permissions=frozenset(Permission),
        allowed_statuses=frozenset(s.value for s in IncidentStatus),
        is_superadmin=True,
    )


def test_an_error_is_written_in_the_staff_language_when_raised() -> None:
    with pytest.raises(ValidationError) as english:
        parse_amount("12.345")
    assert english.value.message == '"12.345" has more than two decimal places.'
    with staff_reading("es"), pytest.raises(ValidationError) as spanish:
        parse_amount("12.345")
    assert spanish.value.message == '"12.345" tiene más de dos decimales.'
    with staff_reading("vi"), pytest.raises(ValidationError) as vietnamese:
        parse_amount("12.345")
    assert vietnamese.value.message == '"12.345" có nhiều hơn hai chữ số thập phân.'


def test_a_transition_error_names_the_statuses_in_the_staff_language() -> None:
    closed, ready = IncidentStatus.CLOSED, IncidentStatus.READY_FOR_PICKUP
    with pytest.raises(InvalidTransition) as english:
        check_transition(_admin(), closed, ready, frozenset())
    assert english.value.message == "An incident can't go from Closed to Ready for Pickup."
    with staff_reading("es"), pytest.raises(InvalidTransition) as spanish:
        check_transition(_admin(), closed, ready, frozenset())
    assert spanish.value.message == "Un incidente no puede pasar de Cerrado a Listo para recoger."


def test_labels_are_read_in_the_staff_language_and_unknown_ids_humanized() -> None:
    assert flag_label("water") == "Liquid Damage"
    assert flags_text([]) == "No type"
    with staff_reading("es"):
        assert flag_label("water") == "Daño por líquido"
        assert flags_text([]) == "Sin tipo"
        assert invoice_status_label("first") == "1.er aviso"
        assert payment_method_label("cash") == "Efectivo"
        assert IncidentStatus.IN_REPAIR.label == "En reparación"
        assert FeeKind.DAMAGE.label == "Daño"
        assert flag_label("water_bottle") == "Water Bottle"  # a district's own flag


def test_typed_names_are_read_in_english_whatever_the_staff_language() -> None:
    with staff_reading("es"):
        assert parse_status("Ready for Pickup") is IncidentStatus.READY_FOR_PICKUP
        assert parse_fee_kind("Collection") is FeeKind.COLLECTION


def test_a_plural_counts_in_the_staff_language() -> None:
    one = PauseView(3, date(2026, 12, 21), date(2026, 12, 21), "Winter break")
    many = PauseView(4, date(2026, 12, 21), date(2027, 1, 1), "Winter break")
    assert one.describe() == "#3 2026-12-21 to 2026-12-21 (1 day): Winter break"
    assert many.describe() == "#4 2026-12-21 to 2027-01-01 (12 days): Winter break"
    with staff_reading("es"):
        assert many.describe() == "#4 del 2026-12-21 al 2027-01-01 (12 días): Winter break"


def test_a_familys_pay_form_keeps_english_reasons_whatever_the_staff_language() -> None:
    with staff_reading("es"), pytest.raises(PayAmountProblem) as problem:
        choose_pay_amount("12.345", balance_cents=5000, status="unpaid")
    assert problem.value.message == '"12.345" has more than two decimal places.'
