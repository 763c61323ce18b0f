"""The family invoice page: `/family/<token>`, reached by the signed link in every email.

- GET /family/{token}: the guardian's students and their open and paid invoices, in the
  guardian's language; opening the link an email carried marks that email viewed.
- GET /family/{token}/photos/{photo_id}: a photo of the damage on one of those invoices, when
  the district shows photos to families.
- POST /family/link-request (form field `email`): queues a fresh link for a guardian we bill at
  that address, and answers the same whatever the address.

Every lookup is scoped by the guardian id inside the verified token. Pages are never cached,
indexed or sent as a referrer, and a client making too many requests is asked to wait.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot.family_links import FamilyLink, LinkProblem, read_family_token
from bot.mail.render import compiled_environment, insurance_context
from bot.runtime import Runtime
from bot.settings import Settings
from bot.shipped_files import TEMPLATES_DIR as SHIPPED_TEMPLATES_DIR
from bot.signing import signing_keys
from bot.web.http_edge import BodyTooLarge, MalformedBody, read_body
from bot.web.rate_limit import SlidingWindowLimiter
from storage.family_page import (
    FamilyPage,
    InvoiceBill,
    StudentRow,
    family_photo,
    guardians_billed_at,
    load_family_page,
    record_notice_viewed,
)
from storage.lookups import get_guardian
from storage.notices import queue_guardian_notice
from workflows.clock import local_date
from workflows.district_facts import facts_context, ways_to_pay
from workflows.errors import ValidationError
from workflows.i18n import DEFAULT_LANGUAGE, LANGUAGES, supported_language, translations
from workflows.invoice_audit import invoice_audit
from workflows.invoices import NoticeTemplate
from workflows.money import to_decimal
from workflows.online_payments import translated_pay_problem
from workflows.payment_plans import PlannedInstallment, plan_paid_cents, plan_progress
from workflows.portal import portal_url

log = logging.getLogger("devicecare.family_page")

TEMPLATES_DIR = SHIPPED_TEMPLATES_DIR / "web"
SITE_NAME = "DeviceCare"
# Photos load with the page, so they get their own, larger allowance.
PHOTO_RATE_FACTOR = 10
MAX_FORM_BYTES = 4096
MAX_EMAIL_LENGTH = 320


# --- templates, loaded once per process -------------------------------------------------------


@functools.cache
def environment(language: str) -> Environment:
    """The pages in one language: that language's catalogue and filters are the environment's
    own, and its templates are compiled once per process."""
    return compiled_environment(language, FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True)


CSS = (TEMPLATES_DIR / "family.css").read_text(encoding="utf-8")
# The page's only style is this inline sheet; the policy names its hash instead of allowing
# any inline style.
CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()


def page_language(preferred: str | None) -> str:
    """The guardian's language when we have it ("es-MX" -> "es"), else English."""
    return supported_language(preferred)


def browser_language(request: Request) -> str:
    """The best of our languages for the browser's Accept-Language (pages with no guardian)."""
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for item in request.headers.get("accept-language", "").split(",")[:20]:
        tag, _, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


# --- responses --------------------------------------------------------------------------------


def content_security_policy(settings: Settings) -> str:
    """Nothing but our own images and this page's style; forms post only to us, and from the
    pay form on to Stripe Checkout (the POST answers with a redirect there)."""
    form_targets = ["'self'"]
    if settings.stripe_enabled:
        form_targets.append("https://checkout.stripe.com")
        if settings.stripe_api_base:
            parts = urlsplit(settings.stripe_api_base)
            if parts.scheme and parts.netloc:
                form_targets.append(f"{parts.scheme}://{parts.netloc}")
    return (
        "default-src 'none'; "
        f"style-src 'sha256-{CSS_HASH}'; "
        "img-src 'self'; "
        f"form-action {' '.join(form_targets)}; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def private_headers(settings: Settings) -> dict[str, str]:
    """Headers for every family-page response: private, unindexed, never framed."""
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex, nofollow",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": content_security_policy(settings),
    }


def render_html(page: str, language: str, context: dict[str, Any]) -> str:
    """One of the family pages in one language; `context` fills and overrides the defaults."""
    env = environment(language if language in LANGUAGES else DEFAULT_LANGUAGE)
    return env.get_template(f"{page}.html.j2").render(
        {
            "language": language,
            "css": Markup(CSS),  # our own file, shipped with the code
            "site_name": SITE_NAME,
            "district_name": "",
            **context,
        }
    )


def render_page(
    runtime: Runtime,
    page: str,
    language: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    extra_headers: dict[str, str] | None = None,
) -> HTMLResponse:
    html = render_html(page, language, {"link_days": runtime.settings.family_link_days, **context})
    headers = private_headers(runtime.settings) | (extra_headers or {})
    return HTMLResponse(html, status_code=status_code, headers=headers)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _today(runtime: Runtime) -> date:
    return local_date(runtime.clock.now(), runtime.settings.tz)


def read_link(runtime: Runtime, token: str) -> FamilyLink:
    """The verified link (LinkProblem when altered, invented or expired)."""
    return read_family_token(token, signing_keys(runtime.settings), _today(runtime))


async def link_problem_page(
    runtime: Runtime, request: Request, problem: LinkProblem
) -> HTMLResponse:
    """404 for a link that was never ours, 410 for one that has expired; both offer a new one."""
    language = browser_language(request)
    if problem.kind == "expired" and problem.link is not None:
        # The signature was good, so this is the guardian's own language to use.
        async with runtime.reads() as store:
            guardian = await get_guardian(store, problem.link.guardian_id)
            if guardian is not None:
                language = page_language(guardian.preferred_language)
    status = 410 if problem.kind == "expired" else 404
    kind = "expired" if problem.kind == "expired" else "invalid"
    return render_page(
        runtime,
        "link_problem",
        language,
        {"problem": kind, "email_value": "", "form_error": None},
        status_code=status,
    )


# --- the page ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PayError:
    """Shown next to one invoice's pay form when a payment could not be started."""

    invoice_id: int
    message: str
    amount: str = ""  # what the family typed, to show it back
    code: str = ""  # the problem's code, for the page's language (workflows.online_payments)
    amounts: dict[str, int] = field(default_factory=dict)

    def in_language(self, language: str) -> PayError:
        if language == DEFAULT_LANGUAGE or not self.code:
            return self
        message = translated_pay_problem(self.code, self.amounts, self.message, language)
        return replace(self, message=message)


def _installments(bill: InvoiceBill, today: date) -> list[dict[str, Any]]:
    rows = bill.installments
    if not rows:
        return []
    schedule = [PlannedInstallment(r.due_on, r.amount_cents) for r in rows]
    plan_total = sum(r.amount_cents for r in rows)
    # Money covers the installments in order; what was paid before the plan doesn't count.
    paid = plan_paid_cents(plan_total, bill.total_cents, bill.paid_cents + bill.waived_cents)
    shown = []
    for row, state in zip(rows, plan_progress(schedule, paid), strict=True):
        if state.settled:
            label = "paid"
        elif row.missed_on is not None or state.due_on < today:
            label = "missed"
        else:
            label = "upcoming"
        shown.append(
            {
                "due_on": state.due_on,
                "amount_cents": state.amount_cents,
                "covered_cents": state.paid_cents,
                "state": label,
            }
        )
    return shown


def _portal_link(
    runtime: Runtime, bill: InvoiceBill, student: StudentRow, balance: int
) -> str | None:
    template = runtime.settings.payment_portal_url_template
    if not template:
        return None
    try:
        return portal_url(
            template,
            invoice_number=bill.number,
            amount_cents=balance,
            student_id=student.sis_id or "",
            student_name=student.full_name,
        )
    except ValidationError as exc:
        # A broken portal setting must not take the page down: the invoice shows without it.
        log.warning("payment portal link left out for %s: %s", bill.number, exc)
        return None


def _invoice_view(
    runtime: Runtime,
    token: str,
    bill: InvoiceBill,
    student: StudentRow,
    today: date,
    pay_error: PayError | None,
    language: str = DEFAULT_LANGUAGE,
) -> dict[str, Any]:
    tz = runtime.settings.tz
    balance = bill.balance_cents
    payable = bill.status != "paid" and balance > 0
    return {
        "id": bill.id,
        "number": bill.number,
        "status": bill.status,
        "issued_on": bill.created_at.astimezone(tz).date(),
        "due_date": bill.due_date,
        "paid_on": None
        if bill.status != "paid" or bill.paid_at is None
        else bill.paid_at.astimezone(tz).date(),
        "device": None
        if bill.device_model is None
        else {"model": bill.device_model, "asset_tag": bill.device_asset_tag},
        "lines": [
            {
                "description": line.description,
                "quantity": line.quantity,
                "amount_cents": line.amount_cents,
            }
            for line in bill.lines
        ],
        "subtotal_cents": bill.subtotal_cents,
        # The audit rows every view of an invoice shows (workflows.invoice_audit).
        "audit": invoice_audit(bill, tz=tz, language=language),
        "insurance": insurance_context(bill),
        "override_applied": bool(bill.override_applied),
        "total_cents": bill.total_cents,
        "paid_cents": bill.paid_cents,
        "waived_cents": bill.waived_cents,
        "refunded_cents": bill.refunded_cents,
        "balance_cents": balance,
        "payments": [
            {
                "received_on": p.received_on,
                "method": p.method,
                "reference": p.reference,
                "amount_cents": p.amount_cents,
            }
            for p in bill.payments
        ],
        "installments": _installments(bill, today),
        "photos": [
            {
                "url": f"/family/{token}/photos/{photo.id}",
                "width": photo.width,
                "height": photo.height,
            }
            for photo in bill.photos
        ],
        "payable": payable,
        "amount_hint": f"{to_decimal(balance):.2f}",
        "portal_url": _portal_link(runtime, bill, student, balance) if payable else None,
        "pay_error": pay_error if pay_error and pay_error.invoice_id == bill.id else None,
    }


def page_context(
    runtime: Runtime,
    token: str,
    family: FamilyPage,
    today: date,
    *,
    paid_number: str | None = None,
    cancelled: bool = False,
    pay_error: PayError | None = None,
) -> dict[str, Any]:
    students = []
    open_count = 0
    balance = 0
    numbers = set()
    language = page_language(family.guardian.preferred_language)
    for entry in family.students:
        invoices = []
        for bill in entry.invoices:
            view = _invoice_view(runtime, token, bill, entry.student, today, pay_error, language)
            invoices.append(view)
            numbers.add(bill.number)
            if view["payable"]:
                open_count += 1
                balance += view["balance_cents"]
        students.append(
            {
                "full_name": entry.student.full_name,
                "first_name": entry.student.first_name,
                "invoices": invoices,
            }
        )
    # Thanks only for one of this family's invoices; the number comes from the address bar.
    banner, banner_number = None, None
    if paid_number and paid_number in numbers:
        banner, banner_number = "paid", paid_number
    elif cancelled:
        banner = "cancelled"
    guardian = family.guardian
    facts = family.district
    ways = ways_to_pay(
        facts,
        stripe=runtime.settings.stripe_enabled,
        portal=bool(runtime.settings.payment_portal_url_template),
    )
    return {
        "district_name": facts.name,
        "district": facts_context(facts),
        "ways_to_pay": ways.as_dict(),
        "guardian": {"full_name": guardian.full_name, "first_name": guardian.first_name},
        "students": students,
        "open_count": open_count,
        "balance_cents": balance,
        "banner": banner,
        "banner_number": banner_number,
        "pay": {
            "stripe": runtime.settings.stripe_enabled,
            "action": f"/family/{token}/pay",
            "portal_name": runtime.settings.payment_portal_name,
        },
    }


async def family_page_response(
    runtime: Runtime,
    token: str,
    link: FamilyLink,
    *,
    paid_number: str | None = None,
    cancelled: bool = False,
    pay_error: PayError | None = None,
    status_code: int = 200,
    record_view: bool = True,
) -> Response:
    """The page for a verified link; the link's email is marked viewed once the page is made
    (unless `record_view` is off)."""
    today = _today(runtime)
    async with runtime.reads() as store:
        family = await load_family_page(store, link.guardian_id, link.notice_id)
    if family is None:
        # A guardian removed since the link was sent: the link leads nowhere now.
        return render_page(
            runtime,
            "link_problem",
            DEFAULT_LANGUAGE,
            {"problem": "invalid", "email_value": "", "form_error": None},
            status_code=404,
        )
    language = page_language(family.guardian.preferred_language)
    context = page_context(
        runtime,
        token,
        family,
        today,
        paid_number=paid_number,
        cancelled=cancelled,
        pay_error=None if pay_error is None else pay_error.in_language(language),
    )
    response = render_page(runtime, "family", language, context, status_code=status_code)
    if record_view and family.notice_unviewed and link.notice_id is not None:
        async with runtime.stores() as store:
            await record_notice_viewed(store, link.guardian_id, link.notice_id, runtime.clock.now())
            await store.commit()
    return response


# --- routes -----------------------------------------------------------------------------------


def _valid_email(address: str) -> bool:
    if not 3 <= len(address) <= MAX_EMAIL_LENGTH or any(ch.isspace() for ch in address):
        return False
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain and "@" not in domain and "." in domain.strip("."))


async def read_form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form's first value per field; None when it is too large."""
    try:
        body = await read_body(request, MAX_FORM_BYTES)
    except (BodyTooLarge, MalformedBody):
        return None
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:  # more fields than any of our forms has
        return None
    return {name: values[0] for name, values in fields.items() if values}


def routes(runtime: Runtime) -> list[BaseRoute]:
    settings = runtime.settings
    pages = SlidingWindowLimiter(settings.family_page_rate_per_minute)
    photos = SlidingWindowLimiter(settings.family_page_rate_per_minute * PHOTO_RATE_FACTOR)

    def too_many(request: Request, retry_after: int) -> Response:
        return render_page(
            runtime,
            "rate_limited",
            browser_language(request),
            {"retry_after": retry_after},
            status_code=429,
            extra_headers={"Retry-After": str(retry_after)},
        )

    async def family_page(request: Request) -> Response:
        verdict = pages.check(_client(request))
        if not verdict.allowed:
            return too_many(request, verdict.retry_after_seconds)
        token = request.path_params["token"]
        try:
            link = read_link(runtime, token)
        except LinkProblem as problem:
            return await link_problem_page(runtime, request, problem)
        paid = request.query_params.get("paid", "").strip()[:40] or None
        cancelled = request.query_params.get("cancelled") == "1"
        # A HEAD is a link checker or preview, not the family reading the page.
        return await family_page_response(
            runtime,
            token,
            link,
            paid_number=paid,
            cancelled=cancelled,
            record_view=request.method == "GET",
        )

    async def family_photo_file(request: Request) -> Response:
        headers = private_headers(settings)
        verdict = photos.check(_client(request))
        if not verdict.allowed:
            retry = str(verdict.retry_after_seconds)
            return PlainTextResponse(
                "Too many requests", 429, headers=headers | {"Retry-After": retry}
            )
        try:
            link = read_link(runtime, request.path_params["token"])
        except LinkProblem as problem:
            if problem.kind == "expired":
                return PlainTextResponse("This link has expired", 410, headers=headers)
            return PlainTextResponse("Not found", 404, headers=headers)
        async with runtime.reads() as store:
            photo = await family_photo(store, link.guardian_id, request.path_params["photo_id"])
        if photo is None or not photo.content_type.startswith("image/"):
            return PlainTextResponse("Not found", 404, headers=headers)
        try:
            data = await runtime.blobs.get(photo.blob_key)
        except (FileNotFoundError, ValueError):
            log.warning("photo #%s has no readable blob", photo.id)
            return PlainTextResponse("Not found", 404, headers=headers)
        return Response(data, media_type=photo.content_type, headers=headers)

    async def link_request(request: Request) -> Response:
        verdict = pages.check(_client(request))
        if not verdict.allowed:
            return too_many(request, verdict.retry_after_seconds)
        form = await read_form(request)
        language = browser_language(request)
        if form is not None and form.get("lang") in LANGUAGES:
            language = form["lang"]
        address = (form or {}).get("email", "").strip()
        if form is None or not _valid_email(address):
            message = translations(language).gettext(
                "Enter your email address, for example maria@example.org."
            )
            return render_page(
                runtime,
                "link_problem",
                language,
                {
                    "problem": "bad_email",
                    "email_value": address[:MAX_EMAIL_LENGTH],
                    "form_error": message,
                },
                status_code=400,
            )
        today = _today(runtime)
        # The same write transaction whether or not the address is known, so the answer and
        # its timing say nothing about it.
        async with runtime.stores() as store:
            for guardian in await guardians_billed_at(store, address):
                await queue_guardian_notice(
                    store,
                    runtime.clock.now(),
                    guardian=guardian,
                    template=NoticeTemplate.FAMILY_LINK.value,
                    # One a day per guardian, however often the form is sent.
                    dedupe_key=f"family_link:requested:{today.isoformat()}",
                    context={"reason": "requested"},
                    mail_domain=store.mail_domain,
                )
            await store.commit()
        return render_page(runtime, "link_sent", language, {})

    return [
        Route("/family/link-request", link_request, methods=["POST"]),
        Route("/family/{token}", family_page, methods=["GET"]),
        Route("/family/{token}/photos/{photo_id:int}", family_photo_file, methods=["GET"]),
    ]
