"""Rendering notices: the context a template sees, and the subject, text and HTML it makes.

Templates live in `<TEMPLATES_DIR>/email/` as `<name>.subject.j2`, `<name>.txt.j2` and
`<name>.html.j2`, written in English with their sentences marked for translation
(`{% trans %}`, `_()`); every other language is a catalogue (`workflows.i18n`), and each
language has its own Jinja environment with that catalogue installed, so a render looks up no
language at all. A district's own folder is searched first, then the shipped one, so a district
may override only the templates it wants to change: its plain templates are its English text,
and a language of its own is a copy with the language before the part
(`invoice_issued.es.txt.j2`), else that language comes from the shipped templates.

HTML is autoescaped, text is not (it is never interpreted), and every template runs with
`StrictUndefined`: a variable the context lacks is an error at render time, never a blank.
Amounts are int cents in the context and become "$1,234.56" through the `money` filter; dates are
`date` objects and become "March 5, 2026" through `long_date`, both written by Babel in the
notice's language.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    Undefined,
)

from bot.family_links import family_url, link_expiry, make_family_token
from bot.settings import Settings
from bot.shipped_files import TEMPLATES_DIR
from bot.signing import Keys, signing_keys
from bot.templating import TranslatedEnvironment
from storage.notice_queries import CLOSED_INVOICE_STATUSES, NoticeData, is_digest
from workflows.district_facts import facts_context, ways_to_pay
from workflows.errors import ValidationError
from workflows.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    format_money,
    language_candidates,
    translations,
)
from workflows.i18n import format_long_date as _babel_long_date
from workflows.invoices import NoticeTemplate
from workflows.portal import portal_url

log = logging.getLogger("devicecare.mail.render")

DEFAULT_TEMPLATES_DIR = TEMPLATES_DIR
PARTS = ("subject", "txt", "html")
TEXT_WIDTH = 76

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,59}$")


class TemplateMissing(LookupError):
    """No subject/text/HTML set exists for the template name."""


@dataclass(frozen=True)
class RenderedNotice:
    subject: str
    text: str
    html: str
    language: str


# --- filters --------------------------------------------------------------------------------


def _require_defined(value: Any) -> None:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError, naming the missing variable


def money(cents: int, language: str = DEFAULT_LANGUAGE) -> str:
    """int cents -> "$1,234.56"; anything else is a template bug, so it fails loudly."""
    _require_defined(cents)
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"money expects int cents, got {type(cents).__name__}")
    return format_money(cents, language)


def format_long_date(value: date, language: str = DEFAULT_LANGUAGE) -> str:
    """March 5, 2026 (en) / 5 de marzo de 2026 (es)."""
    _require_defined(value)
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"long_date expects a date, got {type(value).__name__}")
    return _babel_long_date(value, language)


def iso_long_date(value: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A date stored as ISO text in a notice's context ("2026-06-30"), written like long_date."""
    _require_defined(value)
    return format_long_date(date.fromisoformat(str(value)), language)


def method_label(method: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A payment method as a family reads it ("check", "cheque"); an unknown one as it is."""
    _require_defined(method)
    return _method_words(language).get(method, method)


@functools.cache
def _method_words(language: str) -> dict[str, str]:
    t = translations(language)
    return {
        "check": str(t.pgettext("payment method", "check")),
        "cash": str(t.pgettext("payment method", "cash")),
        "card": str(t.pgettext("payment method", "card")),
        "online": str(t.pgettext("payment method", "online payment")),
    }


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith(".html.j2")


def language_filters(language: str) -> dict[str, Callable[..., str]]:
    """The filters that write money, dates and payment methods, bound to one language."""
    return {
        "money": functools.partial(money, language=language),
        "long_date": functools.partial(format_long_date, language=language),
        "iso_long_date": functools.partial(iso_long_date, language=language),
        "method_label": functools.partial(method_label, language=language),
    }


def compiled_environment(
    language: str,
    loader: BaseLoader,
    autoescape: bool | Callable[[str | None], bool],
    **options: Any,
) -> TranslatedEnvironment:
    """Templates in one language, compiled once and never reloaded, where a missing value is an
    error; the language's catalogue and filters are the environment's own."""
    env = TranslatedEnvironment(
        language,
        loader=loader,
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
        **options,
    )
    env.filters.update(language_filters(language))
    return env


@functools.lru_cache(maxsize=32)
def _environment(folders: tuple[str, ...], language: str) -> Environment:
    """The environment for these template folders in one language, shared by every renderer of
    the process: templates are compiled once per process and language (never reloaded), and
    the language's catalogue and filters are the environment's own, so a render passes none."""
    loader = FileSystemLoader([str(Path(folder) / "email") for folder in folders])
    return compiled_environment(language, loader, _autoescape, keep_trailing_newline=True)


class NoticeRenderer:
    """Renders notices with templates compiled once per process."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        folders = [] if templates_dir is None else [Path(templates_dir)]
        if DEFAULT_TEMPLATES_DIR not in folders:
            folders.append(DEFAULT_TEMPLATES_DIR)
        self._folders = tuple(str(folder) for folder in folders)
        self._shipped = (str(DEFAULT_TEMPLATES_DIR),)
        self.env = _environment(self._folders, DEFAULT_LANGUAGE)
        self._sets: dict[tuple[str, str], tuple[str, Template, Template, Template]] = {}

    def _set(
        self, folders: tuple[str, ...], language: str, name: str
    ) -> tuple[str, Template, Template, Template] | None:
        """The three parts in one language, or None: a language must have all three."""
        env = _environment(folders, language)
        try:
            subject, text, html = (env.get_template(f"{name}.{part}.j2") for part in PARTS)
        except TemplateNotFound:
            return None
        return (language, subject, text, html)

    def _templates(self, name: str, language: str) -> tuple[str, Template, Template, Template]:
        key = (name, language)
        cached = self._sets.get(key)
        if cached is not None:
            return cached
        if not _NAME_RE.match(name):
            raise TemplateMissing(f"{name!r} is not a template name")
        for lang in language_candidates(language):
            if lang == DEFAULT_LANGUAGE:
                found = self._set(self._folders, lang, name)
            else:
                # A district's own copy in that language, else the shipped templates with the
                # language's catalogue (a district's plain templates are its English text).
                found = self._set(self._folders, lang, f"{name}.{lang}")
                if found is None and lang in LANGUAGES:
                    found = self._set(self._shipped, lang, name)
            if found is not None:
                self._sets[key] = found
                return found
        raise TemplateMissing(f"no templates named {name!r} (subject, txt and html)")

    def render(
        self, name: str, context: Mapping[str, Any], language: str | None = None
    ) -> RenderedNotice:
        steps = self.render_steps(name, context, language)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                rendered: RenderedNotice = done.value
                return rendered

    def render_steps(
        self, name: str, context: Mapping[str, Any], language: str | None = None
    ) -> Generator[None, None, RenderedNotice]:
        """`render` in two steps (a generator that returns the result), so a caller can do
        other work between them."""
        lang, subject, text, html = self._templates(name, language or DEFAULT_LANGUAGE)
        values = {**context, "language": lang}
        subject_line = " ".join(subject.render(values).split())  # one line: no header injection
        text_part = wrap_text(text.render(values))
        yield
        return RenderedNotice(subject_line, text_part, html.render(values), lang)


def _wrap_line(line: str, width: int, indent: str) -> list[str]:
    """Greedy wrap at spaces; a word longer than the width gets a line of its own."""
    lines: list[str] = []
    current = ""
    for word in line.split(" "):
        if not word:
            continue
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= width:
            current = f"{current} {word}"
        else:
            lines.append(current)
            current = indent + word
    if current:
        lines.append(current)
    return lines


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap long prose lines of the plain-text part; indented lines (tables) stay as they are.

    A line starting "- " is a list item: its continuation lines are indented under its text.
    """
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width or line[:1].isspace():
            out.append(line)
        else:
            out.extend(_wrap_line(line, width, "  " if line.startswith("- ") else ""))
    return "\n".join(out)


# --- the context ----------------------------------------------------------------------------


def _person(person: Any) -> dict[str, str]:
    if person is None:
        return {"first_name": "", "last_name": "", "full_name": ""}
    first, last = " ".join(person.first_name.split()), " ".join(person.last_name.split())
    return {"first_name": first, "last_name": last, "full_name": f"{first} {last}".strip()}


def _local_date(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


def _iso_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def insurance_context(invoice: Any) -> dict[str, Any] | None:
    """The insurance audit facts from the invoice's snapshot (None when no policy was involved)."""
    snap = invoice.insurance_snapshot
    if not snap:
        return None
    policy = str(snap.get("policy_name") or "Insurance")
    term = str(snap.get("term_label") or "")
    return {
        "policy_name": policy,
        "term_label": term,
        "label": f"{policy} ({term})" if term else policy,
        "applied": bool(snap.get("coverage_applied")),
        "absorbed_cents": invoice.insurance_cents,
        "cap_reached": bool(snap.get("cap_reached")),
        "override_applied": bool(invoice.override_applied or snap.get("override_applied")),
        "claim_number": snap.get("claim_number"),
        "max_claims": snap.get("max_claims"),
    }


def invoice_context(invoice: Any, device: Any, tz: tzinfo) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "number": invoice.number,
        "status": invoice.status,
        "issued_on": _local_date(invoice.created_at, tz),
        "due_date": invoice.due_date,
        "lines": [
            {
                "description": line.description,
                "quantity": line.quantity,
                "unit_cents": line.unit_cents,
                "amount_cents": line.amount_cents,
            }
            for line in invoice.lines
        ],
        "subtotal_cents": invoice.subtotal_cents,
        "insurance_cents": invoice.insurance_cents,
        "insurance": insurance_context(invoice),
        "override_applied": bool(invoice.override_applied),
        "total_cents": invoice.total_cents,
        "paid_cents": invoice.paid_cents,
        "waived_cents": invoice.waived_cents,
        "refunded_cents": invoice.refunded_cents,
        "balance_cents": invoice.balance_cents,
        "kind": invoice.kind,
        "device": None
        if device is None
        else {"model": device.model, "asset_tag": device.asset_tag, "serial": device.serial},
    }


def _payment_context(data: NoticeData) -> dict[str, Any] | None:
    p = data.payment
    if p is None:
        return None
    return {
        "amount_cents": p.amount_cents,
        "method": p.method,
        "reference": p.reference,
        "received_on": p.received_on,
    }


def _pending_context(data: NoticeData) -> dict[str, Any] | None:
    """From the pending payment row, else from amount/method/reference/paid_on in the context."""
    p = data.pending
    if p is not None:
        return {
            "amount_cents": p.amount_cents,
            "method": p.method,
            "reference": p.reference,
            "paid_on": p.paid_on,
        }
    ctx = data.notice.context or {}
    amount = ctx.get("amount_cents")
    if isinstance(amount, bool) or not isinstance(amount, int):
        return None
    return {
        "amount_cents": amount,
        "method": str(ctx.get("method") or ""),
        "reference": ctx.get("reference") or None,
        "paid_on": _iso_date(ctx.get("paid_on")),
    }


def _plan_context(data: NoticeData) -> dict[str, Any] | None:
    raw = (data.notice.context or {}).get("installments")
    if not isinstance(raw, list) or not raw:
        return None
    installments = []
    for item in raw:
        due = _iso_date(item.get("due_on")) if isinstance(item, dict) else None
        amount = item.get("amount_cents") if isinstance(item, dict) else None
        if due is None or isinstance(amount, bool) or not isinstance(amount, int):
            raise ValueError(f"payment plan installment {item!r} needs due_on and amount_cents")
        installments.append({"due_on": due, "amount_cents": amount})
    note = (data.notice.context or {}).get("note")
    return {
        "installments": installments,
        "total_cents": sum(i["amount_cents"] for i in installments),
        "note": str(note) if note else None,
    }


def _installment_context(data: NoticeData, today: date) -> dict[str, Any] | None:
    """The installment a plan notice is about (a missed one, or the one a reminder is for)."""
    raw = (data.notice.context or {}).get("installment")
    if not isinstance(raw, dict):
        return None
    due = _iso_date(raw.get("due_on"))
    values = [raw.get(k) for k in ("position", "count", "amount_cents", "due_cents")]
    numbers = [n for n in values if isinstance(n, int) and not isinstance(n, bool)]
    if due is None or len(numbers) != len(values):
        raise ValueError(f"installment {raw!r} needs due_on, position, count and amounts")
    position, count, amount, owed = numbers
    return {
        "position": position,
        "count": count,
        "due_on": due,
        "amount_cents": amount,
        "due_cents": owed,  # what brings the plan up to date through this installment
        "days_until_due": (due - today).days,
        "days_overdue": max((today - due).days, 0),
    }


# What each billing-run template says, as a digest item's `kind`.
DIGEST_KINDS = {
    "due_reminder": "reminder",
    "overdue_first": "first",
    "overdue_second": "second",
    "overdue_final": "final",
}


def _due_days(due: date | None, today: date) -> dict[str, int | None]:
    return {
        "days_until_due": None if due is None else (due - today).days,
        "days_overdue": None if due is None else max((today - due).days, 0),
    }


def _digest_context(data: NoticeData, today: date, tz: tzinfo) -> dict[str, Any] | None:
    """The invoices a billing digest covers, each with what its own notice would have said."""
    if not data.digest_items:
        return None
    entries: list[dict[str, Any]] = []
    for item in data.digest_items:
        template = item.notice.template
        entries.append(
            {
                "kind": DIGEST_KINDS.get(template, template),
                "template": template,
                "invoice": invoice_context(item.invoice, item.device, tz),
                "student": _person(item.student),
                **_due_days(item.invoice.due_date, today),
            }
        )
    return {
        "entries": entries,
        "count": len(entries),
        "balance_cents": sum(item.invoice.balance_cents for item in data.digest_items),
        "numbers": [item.invoice.number for item in data.digest_items],
        "has_final": any(e["kind"] == "final" for e in entries),
    }


# Notices that make sense without an invoice; every other template needs one.
WITHOUT_INVOICE = frozenset({NoticeTemplate.FAMILY_LINK.value})


@dataclass(frozen=True)
class FamilyLinks:
    """What a guardian's notice needs to link to the family page and the payment portal."""

    base_url: str
    secret: Keys
    days: int  # how long an emailed link works
    pay_online: bool = False  # the page takes payments (Stripe, or the district's portal)
    portal_template: str | None = None
    portal_name: str = "the school payment portal"
    stripe: bool = False  # Stripe is configured: the family page takes card payments

    @classmethod
    def from_settings(cls, settings: Settings) -> FamilyLinks:
        portal = settings.payment_portal_url_template or None
        return cls(
            base_url=settings.public_base_url,
            secret=signing_keys(settings),
            days=settings.family_link_days,
            pay_online=settings.stripe_enabled or portal is not None,
            portal_template=portal,
            portal_name=settings.payment_portal_name,
            stripe=settings.stripe_enabled,
        )


def _page_link(data: NoticeData, today: date, links: FamilyLinks | None) -> dict[str, Any]:
    """The signed family-page link for the guardian the notice goes to (none without one).

    The token names the notice, so opening the page marks this email viewed."""
    guardian = data.guardian
    if links is None or guardian is None:
        return {"page_url": None, "page_expires_on": None}
    expires = link_expiry(today, links.days)
    token = make_family_token(guardian.id, data.notice.id, expires, links.secret)
    return {"page_url": family_url(links.base_url, token), "page_expires_on": expires}


def _portal_link(data: NoticeData, links: FamilyLinks | None) -> dict[str, str] | None:
    """ "Pay at <portal>" for a notice about one invoice that is still owed."""
    invoice, student = data.invoice, data.student
    if links is None or links.portal_template is None or data.guardian is None:
        return None
    if invoice is None or student is None or is_digest(data.notice):
        return None
    balance = invoice.balance_cents
    if balance <= 0 or invoice.status in CLOSED_INVOICE_STATUSES:
        return None
    try:
        url = portal_url(
            links.portal_template,
            invoice_number=invoice.number,
            amount_cents=balance,
            student_id=student.sis_id or "",
            student_name=_person(student)["full_name"],
        )
    except ValidationError as exc:
        # A broken portal setting must not stop the notice: it goes out without that link.
        log.warning("payment portal link left out of notice #%s: %s", data.notice.id, exc)
        return None
    return {"name": links.portal_name, "url": url}


def build_context(
    data: NoticeData, *, today: date, tz: tzinfo, links: FamilyLinks | None = None
) -> dict[str, Any]:
    """Every variable a notice template may use (README, "Notices", lists them).

    `links` adds the family page link (`page_url`, `page_expires_on`) for the guardian the
    notice goes to, and `portal` for a notice about one invoice still owed."""
    invoice = data.invoice
    if invoice is None and data.notice.template not in WITHOUT_INVOICE:
        raise ValueError(f"notice #{data.notice.id} has no invoice")
    page = _page_link(data, today, links)
    if page["page_url"] is None and data.notice.template == NoticeTemplate.FAMILY_LINK:
        raise ValueError(f"notice #{data.notice.id} is a family link with no link to send")
    facts = data.facts
    ways = ways_to_pay(
        facts,
        stripe=links is not None and links.stripe,
        portal=links is not None and links.portal_template is not None,
    )
    return {
        "district_name": facts.name,
        # The district's facts ("" when not set) and the ways to pay it can take (README).
        "district": facts_context(facts),
        "ways_to_pay": ways.as_dict(),
        "guardian": _person(data.guardian),
        "student": _person(data.student),
        "invoice": None if invoice is None else invoice_context(invoice, data.device, tz),
        "today": today,
        **_due_days(None if invoice is None else invoice.due_date, today),
        **page,
        "pay_online": links is not None and links.pay_online,
        "portal": _portal_link(data, links),
        "payment": _payment_context(data),
        "pending": _pending_context(data),
        "plan": _plan_context(data),
        "installment": _installment_context(data, today),
        "digest": _digest_context(data, today, tz),
        # What the code that queued the notice stored with it (e.g. an enrollment's policy and
        # term, a refund's amount and reason), for templates made for those notices.
        "extra": dict(data.notice.context or {}),
    }
