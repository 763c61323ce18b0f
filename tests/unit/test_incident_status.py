import pytest

from workflows.errors import InvalidTransition, PermissionDenied, ValidationError
from workflows.incident_status import (
    DEFAULT_RESTRICTED,
    TRANSITIONS,
    IncidentStatus,
    check_filter,
    check_transition,
    may_use,
    next_statuses,
    parse_status,
    visible_statuses,
)
from workflows.permissions import DEFAULT_ROLES, Actor

S = IncidentStatus
RESTRICTED: frozenset[str] = frozenset(DEFAULT_RESTRICTED)


def actor(role: str) -> Actor:
    return DEFAULT_ROLES[role].actor(staff_id=1, name="Pat")


def test_labels() -> None:
    assert S.AWAITING_PARTS.label == "Awaiting Parts"
    assert S.READY_FOR_PICKUP.label == "Ready for Pickup"
    assert S.OPEN.label == "Open"
    assert all(s.label for s in S)


def test_default_restricted() -> None:
    assert DEFAULT_RESTRICTED == {S.AWAITING_PARTS, S.VENDOR_REPAIR, S.INSURANCE_CLAIM}


def test_every_status_has_transitions_and_none_to_itself() -> None:
    assert set(TRANSITIONS) == set(S)
    for status, targets in TRANSITIONS.items():
        assert status not in targets
        assert targets


def test_open_goes_anywhere_else_and_closed_only_reopens() -> None:
    assert TRANSITIONS[S.OPEN] == set(S) - {S.OPEN}
    assert TRANSITIONS[S.CLOSED] == {S.OPEN}


def test_every_status_can_reach_closed() -> None:
    for status in S:
        seen = {status}
        frontier = [status]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert S.CLOSED in seen


def test_unrestricted_statuses_are_open_to_everyone() -> None:
    desk = actor("Front Desk")
    for status in set(S) - DEFAULT_RESTRICTED:
        assert may_use(desk, status, RESTRICTED)


def test_role_off_the_allow_list_cannot_see_restricted_status() -> None:
    desk = actor("Front Desk")
    visible = visible_statuses(desk, RESTRICTED)
    assert visible == [S.OPEN, S.IN_REPAIR, S.READY_FOR_PICKUP, S.CLOSED]


def test_technician_sees_its_own_restricted_statuses_only() -> None:
    tech = actor("Technician")
    visible = visible_statuses(tech, RESTRICTED)
    assert S.AWAITING_PARTS in visible
    assert S.VENDOR_REPAIR in visible
    assert S.INSURANCE_CLAIM not in visible
    assert visible == [s for s in S if s is not S.INSURANCE_CLAIM]  # enum order kept


def test_superadmin_bypasses_restrictions() -> None:
    boss = Actor(
        staff_id=1, name="Sam", role="SuperAdmin", permissions=frozenset(), is_superadmin=True
    )
    assert visible_statuses(boss, RESTRICTED) == list(S)
    check_transition(boss, S.OPEN, S.INSURANCE_CLAIM, RESTRICTED)
    check_filter(boss, S.VENDOR_REPAIR, RESTRICTED)


def test_district_can_restrict_other_statuses() -> None:
    tech = actor("Technician")
    restricted = frozenset({"ready_for_pickup"})
    assert S.READY_FOR_PICKUP not in visible_statuses(tech, restricted)
    assert S.INSURANCE_CLAIM in visible_statuses(tech, restricted)


def test_nothing_restricted_everyone_sees_everything() -> None:
    assert visible_statuses(actor("Front Desk"), frozenset()) == list(S)


def test_next_statuses_filters_by_workflow_and_role() -> None:
    assert next_statuses(actor("Front Desk"), S.IN_REPAIR, RESTRICTED) == [
        S.READY_FOR_PICKUP,
        S.CLOSED,
    ]
    assert next_statuses(actor("Technician"), S.IN_REPAIR, RESTRICTED) == [
        S.AWAITING_PARTS,
        S.VENDOR_REPAIR,
        S.READY_FOR_PICKUP,
        S.CLOSED,
    ]
    assert next_statuses(actor("Admin"), S.CLOSED, RESTRICTED) == [S.OPEN]


def test_role_off_the_allow_list_cannot_move_into_restricted_status() -> None:
    with pytest.raises(PermissionDenied) as info:
        check_transition(actor("Front Desk"), S.IN_REPAIR, S.AWAITING_PARTS, RESTRICTED)
    # The message must not name the hidden status.
    assert info.value.message == "You can't move incidents to that status."
    assert "Awaiting" not in info.value.message


def test_permission_is_checked_before_the_workflow() -> None:
    # Even an impossible move reports only the permission problem, revealing nothing.
    with pytest.raises(PermissionDenied):
        check_transition(actor("Front Desk"), S.CLOSED, S.AWAITING_PARTS, RESTRICTED)


def test_role_on_the_allow_list_can_move_into_restricted_status() -> None:
    check_transition(actor("Technician"), S.IN_REPAIR, S.AWAITING_PARTS, RESTRICTED)
    check_transition(actor("Billing Clerk"), S.OPEN, S.INSURANCE_CLAIM, RESTRICTED)


def test_leaving_a_restricted_status_is_allowed() -> None:
    check_transition(actor("Front Desk"), S.AWAITING_PARTS, S.CLOSED, RESTRICTED)


def test_invalid_transition_names_both_statuses() -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition(actor("Admin"), S.CLOSED, S.AWAITING_PARTS, RESTRICTED)
    assert info.value.message == "An incident can't go from Closed to Awaiting Parts."


def test_same_status_is_not_a_transition() -> None:
    with pytest.raises(InvalidTransition):
        check_transition(actor("Admin"), S.IN_REPAIR, S.IN_REPAIR, RESTRICTED)


@pytest.mark.parametrize(("current", "target"), [(s, t) for s in S for t in sorted(TRANSITIONS[s])])
def test_all_listed_transitions_pass_for_superadmin(
    current: IncidentStatus, target: IncidentStatus
) -> None:
    check_transition(Actor.system(), current, target, RESTRICTED)


def test_role_off_the_allow_list_cannot_filter_by_restricted_status() -> None:
    with pytest.raises(PermissionDenied) as info:
        check_filter(actor("Front Desk"), S.INSURANCE_CLAIM, RESTRICTED)
    assert "Insurance" not in info.value.message
    check_filter(actor("Front Desk"), S.CLOSED, RESTRICTED)
    check_filter(actor("Billing Clerk"), S.INSURANCE_CLAIM, RESTRICTED)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("awaiting_parts", S.AWAITING_PARTS),
        ("Awaiting Parts", S.AWAITING_PARTS),
        ("  AWAITING-PARTS ", S.AWAITING_PARTS),
        ("ready for pickup", S.READY_FOR_PICKUP),
        ("closed", S.CLOSED),
    ],
)
def test_parse_status(text: str, status: IncidentStatus) -> None:
    assert parse_status(text) is status


@pytest.mark.parametrize("text", ["", "done", "awaiting"])
def test_parse_status_rejects_unknown(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_status(text)
    assert info.value.field == "status"
