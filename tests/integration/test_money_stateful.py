"""Random money operations raced from several connections at once, the ledger checked after
every step (hypothesis drives it; SQLite and PostgreSQL).

Each step draws a handful of operations (a payment recorded in Slack, a parent's reported
payment confirmed, a portal row, a Stripe checkout settled, a waiver, a refund, a payment plan
and one of its installments paid) and starts them together, each in its own transaction on its
own connection. Operations may be refused (an overpayment, a reference already used, nothing
left to refund); what must never happen is an invoice paid past its total, a lost update, a
stored total that differs from its rows, or an error that isn't a refusal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.web.stripe_webhooks import apply_checkout_event
from services.bulk_fees import BulkFeeBiller
from services.portal_import import PortalImporter
from storage import models as m
from storage.fee_store import SqlFeeStore
from storage.inbox import Inbox
from storage.payment_plans import PlanRows
from storage.portal_file import read_export
from storage.reconcile import discrepancies
from tests.builders import add_staff
from tests.conftest import NOW
from tests.integration.billing_helpers import add_family, add_invoice
from tests.integration.test_money_races import ledger_check
from workflows.clock import FixedClock
from workflows.errors import DomainError
from workflows.fees import FeeDefinition, apply_fee, define_fee
from workflows.ledger import ledger_problems
from workflows.online_payments import CheckoutEvent
from workflows.payment_plans import SetPaymentPlan, set_payment_plan
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.pending_payments import confirm_pending_payment
from workflows.permissions import Actor
from workflows.portal_import import MappingChoices, build_mapping
from workflows.ports import Context
from workflows.refunds import RefundPayment, refund_payment
from workflows.waivers import RequestWaiver, request_waiver

TOTALS = (10_000, 5_000, 7_500)
CHECKS = ("1001", "#1001", "1002", "ck 1003")  # "1001" and "#1001" are one check
KINDS = (
    "record", "confirm", "portal", "stripe", "waive", "refund", "plan", "installment", "fee",
)  # fmt: skip


@dataclass(frozen=True)
class Op:
    kind: str
    invoice: int  # index into the machine's invoices
    cents: int
    ref: int  # picks a check number / portal id / Stripe session, so some collide


# (operation, done/refused) -> how often, printed with -s: the race must do real work.
TALLY: dict[tuple[str, str], int] = {}

ops = st.builds(
    Op,
    kind=st.sampled_from(KINDS),
    invoice=st.integers(0, 7),  # taken modulo the invoices there are (fees add some)
    cents=st.sampled_from((500, 2_500, 4_000, 5_000, 7_500, 10_000)),
    ref=st.integers(0, 5),
)


class World:
    """One database with a few invoices, and the connections the racers use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.clock = FixedClock(NOW)
        self.runtime: Runtime = build_runtime(Settings(database_url=url), self.clock)
        self.run(self._seed())

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def close(self) -> None:
        self.run(self.runtime.close())
        self.loop.close()

    async def _seed(self) -> None:
        stores = self.runtime.stores
        async with stores() as store:
            taken = (await store.session.execute(select(func.count(m.Household.id)))).scalar_one()
            await store.commit()
        [student], _ = await add_family(stores, f"Racer{taken}")
        self.invoices: list[int] = []
        for total in TOTALS:
            invoice_id = await add_invoice(
                stores, student, created=date(2026, 1, 10), due=date(2026, 2, 28), total_cents=total
            )
            self.invoices.append(invoice_id)
        async with stores() as store:
            store.session.add_all(
                m.InvoiceLine(
                    invoice_id=i,
                    position=1,
                    description="Screen",
                    kind="custom",
                    quantity=1,
                    unit_cents=t,
                    amount_cents=t,
                )  # fmt: skip
                for i, t in zip(self.invoices, TOTALS, strict=True)
            )
            await store.commit()
        self.student = student
        self.actor: Actor = await add_staff(stores, "Admin", f"admin{taken}@district.org")
        self.tag = f"w{taken}"  # keeps references apart between examples on one database

    # --- the operations ---------------------------------------------------------------------

    async def apply(self, op: Op, step: int) -> str:
        invoice_id = self.invoices[op.invoice % len(self.invoices)]
        try:
            await getattr(self, f"_{op.kind}")(invoice_id, op, step)
        except DomainError as exc:
            return f"refused: {exc.message}"
        return "done"

    def ctx(self, store: Any) -> Context:
        return Context(store, self.clock, self.runtime.settings.tz)

    async def _record(self, invoice_id: int, op: Op, step: int) -> None:
        async with self.runtime.stores() as store:
            await record_payment(
                self.ctx(store),
                self.actor,
                RecordPayment(
                    invoice_id=invoice_id,
                    amount_cents=op.cents,
                    method=PaymentMethod.CHECK,
                    idempotency_key=f"{self.tag}:slack:{step}:{op.ref}:{op.invoice}",
                    reference=CHECKS[op.ref % len(CHECKS)],
                ),
            )
            await store.commit()

    async def _confirm(self, invoice_id: int, op: Op, step: int) -> None:
        # The parent's reply arrived earlier; staff confirm it now (as a racing Confirm click).
        async with self.runtime.stores() as store:
            pending = m.PendingPayment(
                invoice_id=invoice_id,
                amount_cents=op.cents,
                method="check",
                reference=CHECKS[op.ref % len(CHECKS)],
                status="pending",
                created_at=self.clock.now(),
            )
            store.session.add(pending)
            await store.commit()
        async with self.runtime.stores() as store:
            await confirm_pending_payment(self.ctx(store), Inbox(store), self.actor, pending.id)
            await store.commit()

    async def _portal(self, invoice_id: int, op: Op, step: int) -> None:
        async with self.runtime.stores() as store:
            invoice = await store.invoices.get(invoice_id)
            assert invoice is not None
            number = invoice.number
            await store.commit()
        text = (
            "Order Number,Order Date,Customer Name,Item Description,Amount\n"
            f"{self.tag}-RT-{op.ref},02/03/2026,Parent,Device fee {number},"
            f"{op.cents // 100}.{op.cents % 100:02d}\n"
        )
        mapping = build_mapping(MappingChoices(preset="revtrak"))
        portal = read_export(text.encode(), mapping)
        importer = PortalImporter(self.runtime.stores, self.clock, self.runtime.settings.tz)
        await importer.run(
            self.actor, portal, source="portal:revtrak", date_format=mapping.date_format
        )

    async def _stripe(self, invoice_id: int, op: Op, step: int) -> None:
        session_id = f"cs_{self.tag}_{op.ref}"
        await apply_checkout_event(
            self.runtime,
            CheckoutEvent(
                event_id=f"evt_{self.tag}_{step}_{op.ref}_{op.invoice}",
                kind="checkout.session.completed",
                session_id=session_id,
                payment_status="paid",
                amount_cents=op.cents,
                currency="usd",
                invoice_id=invoice_id,
                guardian_id=None,
                payment_intent=f"pi_{self.tag}_{op.ref}",
                payer=None,
            ),
        )

    async def _fee(self, invoice_id: int, op: Op, step: int) -> None:
        # An annual fee billed in bulk while payments race: new invoices, numbers without gaps.
        async with self.runtime.stores() as store:
            fee, _ = await define_fee(
                self.ctx(store),
                SqlFeeStore.beside(store),
                self.actor,
                FeeDefinition(
                    code=f"{self.tag}-fee-{op.ref}",
                    name="Technology fee",
                    school_year="2025-2026",
                    amount_cents=op.cents,
                    due_date=date(2026, 4, 15),
                ),
            )
            await store.commit()
        biller = BulkFeeBiller(self.runtime.sessions, self.clock, self.runtime.settings.tz)
        await apply_fee(biller, self.actor, fee.id)

    async def refresh(self) -> None:
        """The world's student's invoices, fee invoices included, for the next step's racers."""
        async with self.runtime.stores() as store:
            stmt = select(m.Invoice.id).where(m.Invoice.student_id == self.student)
            self.invoices = sorted((await store.session.execute(stmt)).scalars())
            await store.commit()

    async def _waive(self, invoice_id: int, op: Op, step: int) -> None:
        async with self.runtime.stores() as store:
            await request_waiver(
                self.ctx(store),
                self.actor,
                RequestWaiver(invoice_id=invoice_id, amount_cents=op.cents, reason="Hardship"),
            )
            await store.commit()

    async def _refund(self, invoice_id: int, op: Op, step: int) -> None:
        async with self.runtime.stores() as store:
            payments = await store.payments.for_invoice(invoice_id)
            await store.commit()
        if not payments:
            return
        payment = payments[op.ref % len(payments)]
        async with self.runtime.stores() as store:
            await refund_payment(
                self.ctx(store),
                self.actor,
                RefundPayment(
                    payment_id=payment.id,
                    amount_cents=op.cents,
                    reason="Device found",
                    idempotency_key=f"{self.tag}:refund:{step}:{op.ref}:{op.invoice}",
                ),
            )
            await store.commit()

    async def _plan(self, invoice_id: int, op: Op, step: int) -> None:
        async with self.runtime.stores() as store:
            await set_payment_plan(
                self.ctx(store),
                PlanRows(store.session, self.clock),
                self.actor,
                SetPaymentPlan(
                    invoice_id=invoice_id,
                    count=2 + op.ref % 3,
                    first_due=self.clock.now().date() + timedelta(days=14),
                ),
            )
            await store.commit()

    async def _installment(self, invoice_id: int, op: Op, step: int) -> None:
        # The family pays the next installment (or, without a plan, what the op says).
        async with self.runtime.stores() as store:
            plan = await PlanRows(store.session, self.clock).installments_of(invoice_id)
            await store.commit()
        cents = plan[0].amount_cents if plan else op.cents
        async with self.runtime.stores() as store:
            await record_payment(
                self.ctx(store),
                self.actor,
                RecordPayment(
                    invoice_id=invoice_id,
                    amount_cents=cents,
                    method=PaymentMethod.CASH,
                    idempotency_key=f"{self.tag}:installment:{step}:{op.ref}:{op.invoice}",
                ),
            )
            await store.commit()

    # --- what must hold -----------------------------------------------------------------------

    async def problems(self) -> list[str]:
        async with self.runtime.reads() as store:
            found = [d.describe() for d in await discrepancies(store.session, limit=None)]
            invoices = (await store.session.execute(select(m.Invoice))).scalars().all()
            for invoice in invoices:
                found.extend(f"{invoice.number}: {p}" for p in ledger_problems(invoice))
                if invoice.paid_cents > invoice.total_cents:
                    found.append(f"{invoice.number}: paid past its total")
            # One payment per reference on an invoice, however it was written.
            dupes = (
                await store.session.execute(
                    select(m.Payment.invoice_id, m.Payment.reference_key, func.count())
                    .where(m.Payment.reference_key.is_not(None))
                    .group_by(m.Payment.invoice_id, m.Payment.reference_key)
                    .having(func.count() > 1)
                )
            ).all()
            found.extend(f"invoice #{i}: reference {k} paid {n} times" for i, k, n in dupes)
        return found


def machine_for(url: str) -> type[RuleBasedStateMachine]:
    class MoneyRaces(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.world = World(url)
            self.step = 0

        @rule(batch=st.lists(ops, min_size=2, max_size=4))
        def race(self, batch: list[Op]) -> None:
            self.step += 1
            world = self.world

            async def together() -> list[str]:
                # Every racer finishes (or fails) before the step ends: a racer left suspended
                # would hold its transaction's locks, and the next example would wait on them.
                results = await asyncio.gather(
                    *(world.apply(op, self.step) for op in batch), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
                return [str(result) for result in results]

            # Anything but a refusal (an IntegrityError, a deadlock) fails the test here.
            outcomes = world.run(together())
            world.run(world.refresh())
            for op, outcome in zip(batch, outcomes, strict=True):
                TALLY[(op.kind, outcome.split(":")[0])] = (
                    TALLY.get((op.kind, outcome.split(":")[0]), 0) + 1
                )

        @invariant()
        def ledger_holds(self) -> None:
            assert self.world.run(self.world.problems()) == []

        def teardown(self) -> None:
            self.world.close()

    return MoneyRaces


def test_random_money_operations_racing_keep_the_ledger(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    run_state_machine_as_test(
        machine_for(database_url),
        settings=settings(
            max_examples=6,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
    print(f"money races on {engine.dialect.name}:", sorted(TALLY.items()))
    TALLY.clear()
    # Every example's invoices are still in the database: the command must find them whole.
    code, out = ledger_check(database_url, tmp_path)
    assert code == 0, out
    assert "invoices checked, all consistent" in out
