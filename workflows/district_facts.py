"""The district's own facts that families are told: its name, where to mail a check, and how
to reach the business office; and which ways to pay a family is offered. One fact is for staff:
the IT contact, whom a Slack user DeviceCare doesn't know is told to ask.

Every fact may be left unset (an empty string). Emails and the family page then leave out the
sentence that needs it, rather than show a placeholder. `clean_district_facts` is the one
check used by `/billing settings` in Slack and by `devicecare settings set`; storing a change,
with its audit entry, is `workflows.administration.change_district_facts`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from workflows.errors import ValidationError
from workflows.i18n import N_, _

MAX_NAME = 200
MAX_PAYABLE_TO = 200
MAX_ADDRESS_LINES = 5
MAX_ADDRESS_LINE = 100
MAX_ADDRESS = 400
MAX_PHONE = 40
MAX_HOURS = 120
MAX_EMAIL = 254
MAX_CONTACT_NAME = 100

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_PHONE_RE = re.compile(
    r"\+?\(?[0-9][0-9 ().\-]*[0-9)]"  # digits with the usual separators
    r"(?:\s*(?:,|;)?\s*(?:x|ext\.?|extension)\s*[0-9]{1,6})?",  # an extension
    re.IGNORECASE,
)
_EXTENSION_RE = re.compile(r"(?:x|ext\.?|extension)\s*[0-9]{1,6}\s*$", re.IGNORECASE)
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# A Slack channel: "#it-help" (a channel's name) or its id ("C0123ABCD"; "G…" for older private
# channels), as the form and the command line take them.
_CHANNEL_NAME_RE = re.compile(r"#[a-z0-9][a-z0-9._-]{0,79}")
_CHANNEL_ID_RE = re.compile(r"[CG][A-Z0-9]{8,}")
_CHANNEL_LINK_RE = re.compile(r"<#([CG][A-Z0-9]{8,})(?:\|[^>]*)?>")
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 15


@dataclass(frozen=True)
class DistrictFacts:
    """What families are told about the district; "" means not set."""

    name: str = ""
    check_payable_to: str = ""  # who checks are made out to (the name when not set)
    check_address: str = ""  # where checks are mailed: lines separated by "\n"
    office_phone: str = ""
    office_hours: str = ""
    office_email: str = ""
    it_contact_name: str = ""  # whom staff not yet in DeviceCare ask (not shown to families)
    it_contact: str = ""  # their email address or Slack channel ("#it-help" or a channel id)

    @property
    def payable_to(self) -> str:
        return self.check_payable_to or self.name

    @property
    def address_lines(self) -> tuple[str, ...]:
        return tuple(line for line in self.check_address.split("\n") if line)


FACT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DistrictFacts))
# The district settings column each fact is kept in.
COLUMNS: dict[str, str] = {
    "name": "district_name",
    "check_payable_to": "check_payable_to",
    "check_address": "check_mailing_address",
    "office_phone": "office_phone",
    "office_hours": "office_hours",
    "office_email": "office_email",
    "it_contact_name": "it_contact_name",
    "it_contact": "it_contact",
}
LABELS: dict[str, str] = {
    "name": N_("District name"),
    "check_payable_to": N_("Checks payable to"),
    "check_address": N_("Mailing address for checks"),
    "office_phone": N_("Business office phone"),
    "office_hours": N_("Business office hours"),
    "office_email": N_("Business office email"),
    "it_contact_name": N_("IT contact"),
    "it_contact": N_("IT contact email or Slack channel"),
}
# The field named in a ValidationError is the settings column (as the Slack form knows it).
ERROR_FIELDS = COLUMNS


def _one_line(value: object, fact: str, limit: int) -> str:
    label = _(LABELS[fact])
    if not isinstance(value, str):
        raise ValidationError(_("{label} must be text.", label=label), field=COLUMNS[fact])
    if _CONTROL_RE.search(value.strip()):
        raise ValidationError(_("{label} must be on one line.", label=label), field=COLUMNS[fact])
    text = " ".join(value.split())
    if len(text) > limit:
        raise ValidationError(
            _(
                "{label} must be at most {limit} characters (it has {count}).",
                label=label,
                limit=limit,
                count=len(text),
            ),
            field=COLUMNS[fact],
        )
    return text


def clean_address(value: object) -> str:
    """Up to five lines, each at most 100 characters; "" when blank. A line break or a " / "
    separates lines (the command line takes either)."""
    field = COLUMNS["check_address"]
    if not isinstance(value, str):
        raise ValidationError(_("The mailing address must be text."), field=field)
    raw = value.replace("\r\n", "\n").replace("\r", "\n").replace(" / ", "\n")
    if _CONTROL_RE.search(raw.replace("\n", "")):
        raise ValidationError(
            _("The mailing address may only contain printable characters."), field=field
        )
    lines = [" ".join(line.split()) for line in raw.split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    if len(lines) > MAX_ADDRESS_LINES:
        raise ValidationError(
            _("The mailing address must be at most {max} lines.", max=MAX_ADDRESS_LINES),
            field=field,
        )
    if any(len(line) > MAX_ADDRESS_LINE for line in lines):
        raise ValidationError(
            _(
                "Each line of the mailing address must be at most {max} characters.",
                max=MAX_ADDRESS_LINE,
            ),
            field=field,
        )
    text = "\n".join(lines)
    if len(text) > MAX_ADDRESS:
        raise ValidationError(
            _("The mailing address must be at most {max} characters.", max=MAX_ADDRESS), field=field
        )
    if not any(ch.isdigit() for ch in text):
        raise ValidationError(
            _(
                "The mailing address needs a street number, box number or ZIP code, "
                "e.g. 100 Main St, Springfield, IL 62701."
            ),
            field=field,
        )
    return text


def _checked_line(
    value: object, fact: str, limit: int, ok: Callable[[str], object], problem: str
) -> str:
    """One line (see _one_line) that `ok` accepts, or "" when blank."""
    text = _one_line(value, fact, limit)
    if text and not ok(text):
        raise ValidationError(_(problem), field=COLUMNS[fact])
    return text


def _looks_like_phone(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in _EXTENSION_RE.sub("", text))
    return bool(_PHONE_RE.fullmatch(text)) and MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS


_PHONE_PROBLEM = N_(
    "The office phone must look like a phone number, e.g. (555) 010-2030 or 555-010-2030 ext. 12."
)
_EMAIL_PROBLEM = N_("The office email must be an email address, e.g. billing@district.org.")


def clean_phone(value: object) -> str:
    return _checked_line(value, "office_phone", MAX_PHONE, _looks_like_phone, _PHONE_PROBLEM)


def clean_email(value: object) -> str:
    return _checked_line(value, "office_email", MAX_EMAIL, _EMAIL_RE.fullmatch, _EMAIL_PROBLEM)


def clean_it_contact(value: object) -> str:
    """An email address, a Slack channel name ("#it-help", lower-cased) or a channel id."""
    field = COLUMNS["it_contact"]
    text = _one_line(value, "it_contact", MAX_EMAIL)
    if not text:
        return ""
    link = _CHANNEL_LINK_RE.fullmatch(text)
    if link:
        return link.group(1)
    if _EMAIL_RE.fullmatch(text) or _CHANNEL_ID_RE.fullmatch(text):
        return text
    if _CHANNEL_NAME_RE.fullmatch(text.lower()):
        return text.lower()
    raise ValidationError(
        _(
            "The IT contact must be an email address or a Slack channel, e.g. "
            "helpdesk@district.org or #it-help."
        ),
        field=field,
    )


def clean_district_facts(facts: DistrictFacts) -> DistrictFacts:
    """The facts tidied (spaces collapsed, blank lines dropped), or a ValidationError naming
    the settings field at fault. Every fact may be "" (not set)."""
    return DistrictFacts(
        name=_one_line(facts.name, "name", MAX_NAME),
        check_payable_to=_one_line(facts.check_payable_to, "check_payable_to", MAX_PAYABLE_TO),
        check_address=clean_address(facts.check_address),
        office_phone=clean_phone(facts.office_phone),
        office_hours=_one_line(facts.office_hours, "office_hours", MAX_HOURS),
        office_email=clean_email(facts.office_email),
        it_contact_name=_one_line(facts.it_contact_name, "it_contact_name", MAX_CONTACT_NAME),
        it_contact=clean_it_contact(facts.it_contact),
    )


def merge_facts(current: DistrictFacts, changes: dict[str, str | None]) -> DistrictFacts:
    """`current` with the given facts replaced (None leaves one as it is; "" clears it)."""
    unknown = set(changes) - set(FACT_FIELDS)
    if unknown:
        raise ValidationError(
            _("Unknown district fact: {names}.", names=", ".join(sorted(unknown)))
        )
    return replace(current, **{k: v for k, v in changes.items() if v is not None})


def facts_from(record: Any) -> DistrictFacts:
    """The facts held in the district settings row (a row from before they existed has none)."""
    return DistrictFacts(
        **{fact: str(getattr(record, column, "") or "") for fact, column in COLUMNS.items()}
    )


def stored_values(facts: DistrictFacts) -> dict[str, str]:
    """The facts by settings column."""
    return {column: getattr(facts, fact) for fact, column in COLUMNS.items()}


# --- ways to pay ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaysToPay:
    """Which ways to pay a family is offered; each only when the district can take it.

    - online: Stripe is configured (its secret key and webhook secret are set);
    - portal: the school payment portal's address is set (`PAYMENT_PORTAL_URL_TEMPLATE`);
    - check by mail: the mailing address for checks is set;
    - in person (cash or check at the business office): the office hours are set. The mailing
      address alone isn't enough, since it may be a post office box; with hours, the address
      (when set) says where the office is.
    """

    online: bool = False
    portal: bool = False
    check_by_mail: bool = False
    in_person: bool = False

    @property
    def any(self) -> bool:
        return self.online or self.portal or self.check_by_mail or self.in_person

    def as_dict(self) -> dict[str, bool]:
        return {
            "online": self.online,
            "portal": self.portal,
            "check_by_mail": self.check_by_mail,
            "in_person": self.in_person,
            "any": self.any,
        }


def ways_to_pay(facts: DistrictFacts, *, stripe: bool, portal: bool) -> WaysToPay:
    return WaysToPay(
        online=stripe,
        portal=portal,
        check_by_mail=bool(facts.check_address),
        in_person=bool(facts.office_hours),
    )


def facts_context(facts: DistrictFacts) -> dict[str, Any]:
    """The facts as templates see them (`district`)."""
    return {
        "name": facts.name,
        "payable_to": facts.payable_to,
        "check_address": facts.check_address,
        "address_lines": list(facts.address_lines),
        "address_one_line": ", ".join(facts.address_lines),
        "office_phone": facts.office_phone,
        "office_hours": facts.office_hours,
        "office_email": facts.office_email,
        "has_contact": bool(facts.office_phone or facts.office_email),
    }
