"""Applying a school payment portal's export to the invoices, each row at most once.

A row's identity is (source "portal:<name>", the portal's transaction id or a hash of the row);
the payment event written with it, under the table's unique (source, event_id), and the
payment's idempotency key "portal:<name>:<reference>" both make a rerun apply nothing twice.
Each row runs in its own transaction, so one bad row never undoes the others. A dry run takes
every row through the same steps in one transaction (a savepoint per row, so later rows see
earlier ones) and rolls it all back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from storage import models as m
from storage.db_errors import DuplicateRow
from storage.payment_events import add_payment_event, payment_event
from storage.uow import SqlUnitOfWork, UnitOfWorkFactory
from workflows.clock import Clock
from workflows.errors import DomainError, DuplicateReference, PermissionDenied
from workflows.i18n import DEFAULT_LANGUAGE, N_, _, staff_reading
from workflows.invoices import balance_of
from workflows.money import format_cents
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor, Permission, require
from workflows.portal_import import (
    RECORDED_OUTCOMES,
    ImportReport,
    Outcome,
    PortalFile,
    PortalRow,
    RowProblem,
    RowResult,
    parse_rows,
    payment_key,
    result_of_problem,
    result_of_row,
    split_payment,
)
from workflows.ports import Context

EVENT_KIND_PAYMENT = "portal_payment"
EVENT_KIND_REVERSAL = "portal_reversal"


class _DryRunDone(Exception):
    """Raised at the end of a dry run so the store rolls everything back."""


@dataclass
class PortalImporter:
    stores: UnitOfWorkFactory
    clock: Clock
    tz: ZoneInfo

    async def run(
        self,
        actor: Actor,
        portal: PortalFile,
        *,
        source: str,
        date_format: str,
        dry_run: bool = False,
    ) -> ImportReport:
        """Every row of `portal`, applied (or, in a dry run, tried and rolled back)."""
        await self._check_permission(actor, source)
        async with self.stores() as store:
            prefix = (await store.settings.get()).invoice_prefix
            await store.commit()
        rows = list(parse_rows(portal, date_format=date_format, invoice_prefix=prefix, tz=self.tz))
        report = ImportReport(source=source, dry_run=dry_run)
        if dry_run:
            report.rows.extend(await self._try_all(actor, source, rows))
        else:
            for row in rows:
                report.rows.append(await self._apply_alone(actor, source, row))
        return report

    async def _check_permission(self, actor: Actor, source: str) -> None:
        try:
            require(actor, Permission.RECORD_PAYMENTS)
        except PermissionDenied as exc:
            async with self.stores() as store:
                await store.activity.log_refusal(
                    actor, f"payments import from {source}", exc.message
                )
                await store.commit()
            raise

    async def _apply_alone(
        self, actor: Actor, source: str, row: PortalRow | RowProblem
    ) -> RowResult:
        if isinstance(row, RowProblem):
            return result_of_problem(row)
        try:
            async with self.stores() as store:
                result = await self._apply(store, actor, source, row)
                await store.commit()
                return result
        except DuplicateReference as exc:  # the same payment, recorded another way first
            return result_of_row(row, Outcome.ALREADY, reason=exc.message)
        except DomainError as exc:
            return result_of_row(row, Outcome.REJECTED, reason=exc.message)
        except DuplicateRow:
            return result_of_row(row, Outcome.ALREADY, reason=_(_RACED))

    async def _try_all(
        self, actor: Actor, source: str, rows: Sequence[PortalRow | RowProblem]
    ) -> list[RowResult]:
        results: list[RowResult] = []
        try:
            async with self.stores() as store:
                for row in rows:
                    if isinstance(row, RowProblem):
                        results.append(result_of_problem(row))
                        continue
                    try:
                        async with store.session.begin_nested():
                            results.append(await self._apply(store, actor, source, row))
                    except DuplicateReference as exc:
                        results.append(result_of_row(row, Outcome.ALREADY, reason=exc.message))
                    except DomainError as exc:
                        results.append(result_of_row(row, Outcome.REJECTED, reason=exc.message))
                    except DuplicateRow:
                        results.append(result_of_row(row, Outcome.ALREADY, reason=_(_RACED)))
                raise _DryRunDone
        except _DryRunDone:
            pass
        return results

    async def _apply(
        self, store: SqlUnitOfWork, actor: Actor, source: str, row: PortalRow
    ) -> RowResult:
        earlier = await _event(store, source, row.reference)
        if earlier is not None:
            return result_of_row(row, Outcome.ALREADY, reason=self._earlier(earlier, row))
        invoice = None
        if row.invoice_number is not None:
            invoice = await store.invoices.by_number(row.invoice_number)
        if row.amount_cents < 0:

            def reversal() -> str:
                return _(
                    "A refund or reversal of {amount} in the portal; it is not applied. "
                    "Check the invoice's payments by hand.",
                    amount=format_cents(-row.amount_cents),
                )

            _add_event(
                store,
                source,
                row,
                kind=EVENT_KIND_REVERSAL,
                outcome=Outcome.REVERSAL,
                invoice_id=None if invoice is None else invoice.id,
                payment_id=None,
                detail=_recorded(reversal),
            )
            await store.flush()
            return result_of_row(row, Outcome.REVERSAL, reason=reversal())
        if row.invoice_number is None:
            return result_of_row(
                row, Outcome.UNMATCHED, reason=_("No invoice number found in the invoice column.")
            )
        if invoice is None:
            return result_of_row(
                row,
                Outcome.UNMATCHED,
                reason=_("There is no invoice {number}.", number=row.invoice_number),
            )
        # Lock it: a payment recorded at the same moment in Slack must not be overtaken.
        locked = await store.invoices.get(invoice.id, lock=True)
        assert locked is not None
        split = split_payment(row.amount_cents, locked.number, locked.status, balance_of(locked))
        payment_id = None
        if split.apply_cents:
            recorded = await record_payment(
                Context(store, self.clock, self.tz),
                actor,
                RecordPayment(
                    invoice_id=locked.id,
                    amount_cents=split.apply_cents,
                    method=PaymentMethod.ONLINE,
                    idempotency_key=payment_key(source, row.reference),
                    reference=None if row.hashed else row.reference,
                    received_on=row.received_on,
                ),
            )
            if not recorded.created:
                return result_of_row(
                    row,
                    Outcome.ALREADY,
                    invoice_number=locked.number,
                    reason=_("A payment with this reference is already recorded."),
                )
            payment_id = recorded.payment.id
        outcome = Outcome.EXCESS if split.excess_cents else Outcome.APPLIED
        applied = format_cents(split.apply_cents)
        excess = format_cents(split.excess_cents)

        def detail() -> str:
            if split.excess_cents and split.apply_cents:
                return _(
                    "{reason} Applied {applied}; {excess} to refund.",
                    reason=split.reason,
                    applied=applied,
                    excess=excess,
                )
            if split.excess_cents:
                return _(
                    "{reason} Nothing applied; {excess} to refund.",
                    reason=split.reason,
                    excess=excess,
                )
            return _("Applied {applied} to {number}.", applied=applied, number=locked.number)

        _add_event(
            store,
            source,
            row,
            kind=EVENT_KIND_PAYMENT,
            outcome=outcome,
            invoice_id=locked.id,
            payment_id=payment_id,
            detail=_recorded(detail),
        )
        await store.flush()
        return result_of_row(
            row,
            outcome,
            applied_cents=split.apply_cents,
            excess_cents=split.excess_cents,
            invoice_number=locked.number,
            reason="" if outcome is Outcome.APPLIED else detail(),
        )

    def _earlier(self, event: m.PaymentEvent, row: PortalRow) -> str:
        when = event.received_at.astimezone(self.tz).date().isoformat()
        detail = event.detail or event.outcome
        if event.amount_cents is not None and event.amount_cents != row.amount_cents:
            return _(
                "Imported on {date}: {detail} The file now says {amount}, not {earlier}; "
                "the first import stands.",
                date=when,
                detail=detail,
                amount=format_cents(row.amount_cents),
                earlier=format_cents(event.amount_cents),
            )
        return _("Imported on {date}: {detail}", date=when, detail=detail)


_RACED = N_("Another import took this row at the same moment; it was applied once, there.")


def _recorded(text: Callable[[], str]) -> str:
    """A row's detail as the payment event keeps it: in English, whoever reads it later."""
    with staff_reading(DEFAULT_LANGUAGE):
        return text()


async def _event(store: SqlUnitOfWork, source: str, reference: str) -> m.PaymentEvent | None:
    return await payment_event(store.session, source, reference)


def _add_event(
    store: SqlUnitOfWork,
    source: str,
    row: PortalRow,
    *,
    kind: str,
    outcome: Outcome,
    invoice_id: int | None,
    payment_id: int | None,
    detail: str,
) -> None:
    add_payment_event(
        store.session,
        source=source,
        event_id=row.reference,
        kind=kind,
        outcome=RECORDED_OUTCOMES[outcome],
        invoice_id=invoice_id,
        payment_id=payment_id,
        amount_cents=row.amount_cents,
        detail=detail,
        received_at=store.clock.now(),
    )
