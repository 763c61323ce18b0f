"""A school year of activity for the demo district, made through the real use cases.

Each step runs at its own moment on an injected clock, spread from the start of the school
year to yesterday, so reports, the weekly digest and the family page look like a district a
few months in: incidents in every status with photos, invoices paid, partly paid (with a
payment plan), overdue, in collections and cancelled, a waiver, a pending claim-cap override,
and parents' replies read by the same mail pipeline as real ones.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import NamedTuple, TypeVar

from PIL import Image, ImageDraw

from bot.family_links import family_url, link_expiry, make_family_token
from bot.mail.ingest import Ingestor
from bot.runtime import Runtime
from storage import models as m
from storage.demo import demo_fee_item_id, guardian_id_by_email
from storage.images import check_photo_async
from storage.payment_plans import PlanRows
from storage.staff import add_staff
from storage.uow import SqlUnitOfWork, UnitOfWorkFactory
from storage.weekly_digest import previous_week
from workflows.administration import change_district_facts
from workflows.clock import FixedClock, local_date
from workflows.district_facts import facts_from, stored_values
from workflows.errors import ConflictError, NotFound
from workflows.i18n import N_, _
from workflows.incident_status import IncidentStatus
from workflows.incidents import (
    OpenIncident,
    StoredPhoto,
    add_incident_note,
    attach_photo,
    change_incident_status,
    open_incident,
)
from workflows.invoices import (
    CreateInvoice,
    cancel_invoice,
    change_invoice_status,
    create_invoice_for_incident,
)
from workflows.overrides import request_cap_override
from workflows.payment_plans import SetPaymentPlan, set_payment_plan
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context
from workflows.school_year import school_year_of
from workflows.waivers import RequestWaiver, request_waiver

MARKER = "demo-year:"  # idempotency keys of everything made here start with it
TECH = ("tech@demo.example.org", "Technician", "Dana Okafor (demo technician)")
CLERK = ("billing@demo.example.org", "Billing Clerk", "Lee Morgan (demo billing clerk)")
# Families whose pages are worth opening: a payment plan in English; several invoices in Spanish.
FAMILIES_TO_OPEN = {
    N_("Open a family's page"): "anil.patel@example.org",
    N_("A Spanish-speaking family's page"): "maria.rivera@example.org",
}
# Parents who write back about an invoice: (email, name).
MARIA = ("maria.rivera@example.org", "Maria Rivera")
SAM = ("sam.lee@example.org", "Sam Lee")
T = TypeVar("T")


@dataclass(frozen=True)
class YearResult:
    created: bool
    incidents: int = 0
    invoices: int = 0
    replies: int = 0


class _Year:
    """The moving clock and the handful of helpers every step uses."""

    def __init__(self, runtime: Runtime, start: date, end: date) -> None:
        self.runtime = runtime
        self.tz = runtime.settings.tz
        self.start, self.end = start, end
        self.clock = FixedClock(runtime.clock.now())
        self.stores = UnitOfWorkFactory(
            runtime.sessions, self.clock, mail_domain=runtime.settings.mail_domain
        )
        self.actors: dict[str, Actor] = {}
        self.incidents = 0
        self.invoices = 0
        self.replies = 0

    def at(self, fraction: float, hour: int = 10) -> date:
        """Move the clock to that point of the year so far (0 = start, 1 = yesterday)."""
        span = max((self.end - self.start).days, 0)
        day = self.start + timedelta(days=round(span * fraction))
        self.clock.set(datetime.combine(day, time(hour), tzinfo=self.tz))
        return day

    def last_week(self, weekday: int, hour: int = 11) -> date:
        """Move the clock into last week (Monday = 0), so the weekly digest has content."""
        day = min(
            max(previous_week(self.end + timedelta(days=1)) + timedelta(days=weekday), self.start),
            self.end,
        )
        self.clock.set(datetime.combine(day, time(hour), tzinfo=self.tz))
        return day

    async def run(self, step: Callable[[Context], Awaitable[T]]) -> T:
        async with self.stores() as store:
            result = await step(Context(store, self.clock, self.tz))
            await store.commit()
            return result

    async def device(self, store: SqlUnitOfWork, sis: str) -> m.Device:
        device = await store.devices.by_serial(f"DEMO-SN{sis}")
        if device is None:
            raise NotFound(_("The demo device {serial} is missing.", serial=f"DEMO-SN{sis}"))
        return device

    async def fee(self, store: SqlUnitOfWork, code: str) -> int:
        return await demo_fee_item_id(store, code)

    async def incident(self, key: str) -> int:
        """Opens the incident REPORTS holds under that key."""
        sis, flags, description, photo = REPORTS[key]
        self.incidents += 1

        async def step(ctx: Context) -> int:
            assert isinstance(ctx.store, SqlUnitOfWork)
            device = await self.device(ctx.store, sis)
            opened = await open_incident(
                ctx,
                self.actors["tech"],
                OpenIncident(
                    device_id=device.id,
                    occurred_on=ctx.today(),
                    flags=flags,
                    description=description,
                    idempotency_key=f"{MARKER}{key}",
                ),
            )
            if photo is not None:
                await attach_photo(
                    ctx, self.actors["tech"], opened.incident.id, await self.photo(key, photo)
                )
            return opened.incident.id

        return await self.run(step)

    async def photo(self, key: str, colour: tuple[int, int, int]) -> StoredPhoto:
        """A small real JPEG: a device outline with a crack across it."""
        image = Image.new("RGB", (320, 240), (236, 236, 232))
        draw = ImageDraw.Draw(image)
        draw.rounded_rectangle((30, 30, 290, 210), radius=14, fill=colour, outline=(40, 40, 40))
        draw.rectangle((50, 48, 270, 192), fill=(25, 28, 34))
        draw.line([(70, 60), (140, 120), (120, 150), (230, 185)], fill=(245, 245, 245), width=3)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        checked = await check_photo_async(buffer.getvalue(), filename=f"{key}.jpg")
        blob_key = await self.runtime.blobs.put(checked.data, checked.content_type)
        return StoredPhoto(
            blob_key=blob_key,
            content_type=checked.content_type,
            size_bytes=len(checked.data),
            sha256=checked.sha256,
            width=checked.width,
            height=checked.height,
            original_filename=f"{key}.jpg",
            source="demo",
        )

    async def status(self, incident_id: int, *targets: IncidentStatus, actor: str = "tech") -> None:
        for target in targets:

            async def step(ctx: Context, target: IncidentStatus = target) -> None:
                await change_incident_status(ctx, self.actors[actor], incident_id, target)

            await self.run(step)

    async def invoice(
        self, key: str, incident_id: int, fees: tuple[str, ...], due_days: int
    ) -> int:
        self.invoices += 1

        async def step(ctx: Context) -> int:
            assert isinstance(ctx.store, SqlUnitOfWork)
            ids = tuple([await self.fee(ctx.store, code) for code in fees])
            created = await create_invoice_for_incident(
                ctx,
                self.actors["clerk"],
                CreateInvoice(
                    incident_id=incident_id,
                    fee_item_ids=ids,
                    due_date=ctx.today() + timedelta(days=due_days),
                    idempotency_key=f"{MARKER}{key}",
                ),
            )
            return created.invoice.id

        return await self.run(step)

    async def pay(
        self, key: str, invoice_id: int, cents: int, method: PaymentMethod, ref: str | None = None
    ) -> None:
        await self.run(
            lambda ctx: record_payment(
                ctx,
                self.actors["clerk"],
                RecordPayment(
                    invoice_id=invoice_id,
                    amount_cents=cents,
                    method=method,
                    idempotency_key=f"{MARKER}{key}",
                    reference=ref,
                    received_on=ctx.today(),
                ),
            )
        )

    async def number(self, invoice_id: int) -> str:
        async with self.stores() as store:
            invoice = await store.invoices.get(invoice_id)
            assert invoice is not None
            await store.commit()
            return invoice.number

    async def invoice_status(self, invoice_id: int, status: str, reason: str) -> None:
        await self.run(
            lambda ctx: change_invoice_status(
                ctx, self.actors["clerk"], invoice_id, status, reason=reason
            )
        )

    async def reply(self, parent: tuple[str, str], invoice_id: int, body: str) -> None:
        """A parent's email, read by the same pipeline as mail from the mailbox."""
        sender, name = parent
        self.replies += 1
        number = await self.number(invoice_id)
        message = EmailMessage()
        message["From"] = f"{name} <{sender}>"
        message["To"] = f"billing@{self.runtime.settings.mail_domain}"
        message["Subject"] = f"Re: Invoice {number}"
        message["Date"] = format_datetime(self.clock.now())
        message["Message-ID"] = make_msgid("demo", "families.example.org")
        message.set_content(body)
        ingestor = Ingestor(
            self.stores,
            self.runtime.blobs,
            clock=self.clock,
            tz=self.tz,
            secret_key=self.runtime.settings.secret_key.get_secret_value(),
        )
        await ingestor.ingest(message.as_bytes())


FIRST_STEP, LAST_STEP = f"{MARKER}ana-screen", f"{MARKER}emma-screen"


class PartlyLoaded(ConflictError):
    """An earlier run stopped half way; its steps are made once, so they can't be redone."""


async def already_loaded(runtime: Runtime) -> bool:
    async with runtime.reads() as store:
        started = await store.incidents.by_key(FIRST_STEP) is not None
        finished = await store.incidents.by_key(LAST_STEP) is not None
    if started and not finished:
        raise PartlyLoaded(
            "An earlier `devicecare demo` stopped before the school year was loaded. "
            "Load the demo into a new, empty database."
        )
    return finished


async def load_school_year(runtime: Runtime) -> YearResult:
    """The year's activity; a second run finds it and changes nothing."""
    if await already_loaded(runtime):
        return YearResult(created=False)
    today = local_date(runtime.clock.now(), runtime.settings.tz)
    year = school_year_of(today)
    # Two weeks after devices go out, to yesterday (squeezed early in a school year).
    end = max(today - timedelta(days=1), year.start)
    start = min(year.start + timedelta(days=14), end)
    year_ = _Year(runtime, start, end)
    await _staff(year_)
    await _facts(year_)
    await _events(year_)
    return YearResult(True, year_.incidents, year_.invoices, year_.replies)


async def _staff(y: _Year) -> None:
    y.at(0, hour=8)
    async with y.stores() as store:
        for email, role, label in (TECH, CLERK):
            await add_staff(
                store, y.clock, Actor.system("Demo"), email=email, role=role, name=label
            )
        await store.commit()
    async with y.stores() as store:
        for name, (email, _, _) in {"tech": TECH, "clerk": CLERK}.items():
            actor = await store.people.actor_by_email(email)
            assert actor is not None
            y.actors[name] = actor
        await store.commit()


class _Report(NamedTuple):
    """What the technician writes down when a student brings a device in."""

    sis: str
    flags: tuple[str, ...]
    description: str
    photo: tuple[int, int, int] | None = None  # the device's colour in the photo, if one


BLUE, SILVER, GREY, DARK = (70, 110, 160), (200, 200, 205), (90, 90, 95), (60, 60, 66)
# Every incident of the year, by its step key (the key of its idempotency key).
REPORTS: dict[str, _Report] = {
    "ana-screen": _Report(
        "1001", ("screen", "physical_damage"), "Dropped in the hallway; cracked corner.", BLUE
    ),
    "ana-keyboard": _Report(
        "1001",
        ("keyboard", "physical_damage"),
        "Several keys missing after a fall from the desk.",
        BLUE,
    ),
    "ana-screen-2": _Report(
        "1001",
        ("screen", "physical_damage"),
        "Screen cracked again; third claim this term.",
        BLUE,
    ),
    "luis-charger": _Report("1002", ("charger",), "Charger left on the bus."),
    "jordan-screen": _Report("1003", ("screen",), "Screen shattered in a backpack.", SILVER),
    "priya-keyboard": _Report(
        "1004", ("keyboard",), "Keyboard stopped working after a spill on it.", GREY
    ),
    "noah-lost": _Report("1005", ("lost",), "Device not returned after a trip."),
    "ava-battery": _Report("1006", ("battery",), "Battery swells; sent to the vendor.", SILVER),
    "mateo-case": _Report("1007", ("physical_damage",), "Case torn at the hinge."),
    "mateo-wireless": _Report("1007", ("wireless",), "Wi-Fi drops every few minutes.", DARK),
    "emma-screen": _Report("1008", ("screen",), "Lines across the screen.", (110, 60, 60)),
}


# What families are told about the demo district, set only where the district hasn't said.
DEMO_FACTS: dict[str, str | None] = {
    "name": "Riverside Unified School District",
    "check_payable_to": "Riverside USD",
    "check_address": "Business Office, 100 Main Street, Riverside, IL 60000",
    "office_phone": "(555) 010-4000",
    "office_hours": "Mon-Fri 8:00-4:00, district office front desk",
    "office_email": "business.office@demo.example.org",
}


async def _facts(y: _Year) -> None:
    async def step(ctx: Context) -> None:
        current = facts_from(await ctx.store.settings.get())
        if any(stored_values(current).values()):
            return  # a district that has set its facts keeps them
        await change_district_facts(ctx, Actor.system("Demo"), DEMO_FACTS)

    await y.run(step)


async def _events(y: _Year) -> None:
    P, S = PaymentMethod, IncidentStatus
    # Ana Rivera: two screen claims on the district plan, paid; the third passes the cap.
    y.at(0.05)
    ana1 = await y.incident("ana-screen")
    await y.status(ana1, S.IN_REPAIR)
    inv = await y.invoice("ana-screen", ana1, ("screen",), 30)
    y.at(0.09)
    await y.pay("ana-screen-cash", inv, 2500, P.CASH)
    await y.status(ana1, S.READY_FOR_PICKUP, S.CLOSED)
    y.at(0.35)
    ana2 = await y.incident("ana-keyboard")
    inv = await y.invoice("ana-keyboard", ana2, ("keyboard",), 30)
    y.at(0.4)
    await y.pay("ana-keyboard-check", inv, 2500, P.CHECK, "2231")
    await y.status(ana2, S.IN_REPAIR, S.CLOSED)
    y.at(0.9)
    ana3 = await y.incident("ana-screen-2")
    await y.invoice("ana-screen-2", ana3, ("screen",), 30)
    await y.run(
        lambda ctx: request_cap_override(
            ctx, y.actors["clerk"], ana3, reason="Family on free lunch; asking to cover once more."
        )
    )
    await y.status(ana3, S.INSURANCE_CLAIM, actor="clerk")

    # Luis Rivera: a lost charger (a fine), part waived, part paid; his mother writes back.
    y.at(0.2)
    luis = await y.incident("luis-charger")
    inv_luis = await y.invoice("luis-charger", luis, ("charger",), 30)
    await y.status(luis, S.CLOSED)
    y.at(0.25)
    await y.run(
        lambda ctx: request_waiver(
            ctx,
            y.actors["clerk"],
            RequestWaiver(
                invoice_id=inv_luis,
                amount_cents=1000,
                reason="Hardship: family of six, one income.",
                idempotency_key=f"{MARKER}luis-waiver",
            ),
        )
    )
    await y.pay("luis-charger-cash", inv_luis, 1000, P.CASH)
    y.at(0.3)
    await y.reply(
        MARIA, inv_luis, "Hola, ¿puedo pagar el resto en la oficina el viernes? Gracias, Maria"
    )

    # Jordan Lee: an iPad screen under AppleCare+, now overdue; the parent says a check is
    # in the mail (a reported payment for staff to confirm).
    y.at(0.15)
    jordan = await y.incident("jordan-screen")
    inv_jordan = await y.invoice("jordan-screen", jordan, ("ipad-screen",), 21)
    await y.status(jordan, S.VENDOR_REPAIR, S.IN_REPAIR, S.AWAITING_PARTS)
    y.at(0.6)
    await y.invoice_status(inv_jordan, "second", "No answer to the first notice.")
    y.at(0.95)
    check_sent = "Hi, I mailed check #1043 for $29.00 yesterday. Sorry for the delay. Sam Lee"
    await y.reply(SAM, inv_jordan, check_sent)

    # Priya Patel: no coverage; part paid at the front desk, the rest on a payment plan.
    y.at(0.5)
    priya = await y.incident("priya-keyboard")
    inv_priya = await y.invoice("priya-keyboard", priya, ("keyboard",), 30)
    await y.status(priya, S.IN_REPAIR, S.READY_FOR_PICKUP)
    y.at(0.55)
    await y.pay("priya-keyboard-card", inv_priya, 2500, P.CARD)
    await y.run(lambda ctx: _plan(ctx, y, inv_priya))

    # Noah Johnson: a lost device, never paid; sent to collections.
    y.at(0.1)
    noah = await y.incident("noah-lost")
    inv_noah = await y.invoice("noah-lost", noah, ("device-loss",), 21)
    y.at(0.7)
    await y.invoice_status(inv_noah, "collections", "Three notices, no answer.")
    y.last_week(2)
    await y.status(noah, S.CLOSED)
    await y.pay("noah-lost-cash", inv_noah, 2000, P.CASH)

    # Ava Nguyen: an iPad away for repair at the vendor.
    y.last_week(0)
    ava = await y.incident("ava-battery")
    await y.status(ava, S.VENDOR_REPAIR)
    await y.run(
        lambda ctx: add_incident_note(
            ctx, y.actors["tech"], ava, "Vendor RMA 55-1821; expected back in two weeks."
        )
    )

    # Mateo Garcia: a case billed by mistake and cancelled; a new incident in repair.
    y.at(0.3)
    mateo = await y.incident("mateo-case")
    inv_mateo = await y.invoice("mateo-case", mateo, ("case",), 30)
    await y.status(mateo, S.CLOSED)
    y.at(0.32)
    await y.run(
        lambda ctx: cancel_invoice(
            ctx, y.actors["clerk"], inv_mateo, reason="The case was already damaged when issued."
        )
    )
    y.at(0.85)
    mateo2 = await y.incident("mateo-wireless")
    await y.status(mateo2, S.IN_REPAIR)

    # Emma Brown: reported last week, still open. Keep this step last: it is LAST_STEP, which
    # tells a later run that the whole year is in.
    y.last_week(3)
    await y.incident("emma-screen")


async def _plan(ctx: Context, y: _Year, invoice_id: int) -> None:
    assert isinstance(ctx.store, SqlUnitOfWork)
    plan = SetPaymentPlan(
        invoice_id=invoice_id,
        count=2,
        first_due=ctx.today() + timedelta(days=30),
        note="Two monthly payments agreed by phone.",
    )
    await set_payment_plan(ctx, PlanRows(ctx.store, y.clock), y.actors["clerk"], plan)


def family_link(runtime: Runtime, guardian_id: int) -> str:
    """A family-page link, as emails carry them, with the configured base URL."""
    today = local_date(runtime.clock.now(), runtime.settings.tz)
    token = make_family_token(
        guardian_id,
        None,
        link_expiry(today, runtime.settings.family_link_days),
        runtime.settings.secret_key.get_secret_value(),
    )
    return family_url(runtime.settings.public_base_url, token)


async def links_to_open(runtime: Runtime) -> list[str]:
    """Lines like "Open a family's page: https://…/family/…" for the demo's families."""
    lines = []
    async with runtime.reads() as store:
        for label, email in FAMILIES_TO_OPEN.items():
            guardian_id = await guardian_id_by_email(store, email)
            if guardian_id is not None:
                lines.append(f"{_(label)}: {family_link(runtime, guardian_id)}")
    return lines
