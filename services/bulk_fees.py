"""Applying an annual fee to thousands of students at once, a batch per transaction.

Each batch is a few set-based statements, whatever its size (`storage.bulk_fee_queries`): the
invoice counter locked so numbers stay gap-free and two applies take turns; the next matching
students not yet billed inserted with a temporary number, then numbered in id order; their
line, activity entry, `invoice_issued` notices and outbox rows, exactly as `issue_invoice` and
`queue_notice` write them one at a time.

A crash loses at most the batch in flight (rolled back whole); a rerun bills only those left.
"""

from __future__ import annotations

import logging

from services.batched import BatchedJob
from storage.bulk_fee_queries import bill_batch, billed_count, fee_to_bill, log_fee_applied
from workflows.fees import BillResult, billing_terms
from workflows.permissions import Actor

log = logging.getLogger("devicecare.fees")


class BulkFeeBiller(BatchedJob):
    """Bills one fee to every matching student not yet billed, a batch per transaction.

    `after_batch` is told how many invoices each batch created.
    """

    async def bill(self, fee_id: int, actor: Actor) -> BillResult:
        async with self.sessions() as session, session.begin():
            fee, settings = await fee_to_bill(session, fee_id)
            terms = billing_terms(fee, settings, self.today())
            prefix = settings.invoice_prefix
            grades, buildings = list(fee.grades), list(fee.building_ids)
        created = notices = batches = 0
        after_student = 0
        while True:
            async with self.sessions() as session, session.begin():
                made, last_student, queued = await bill_batch(
                    session,
                    fee_id=fee_id,
                    grades=grades,
                    buildings=buildings,
                    terms=terms,
                    prefix=prefix,
                    actor=actor,
                    after_student=after_student,
                    now_at=self.clock.now(),
                    limit=self.batch_size,
                    mail_domain=self.mail_domain,
                )
            if not made:
                break
            created += made
            notices += queued
            batches += 1
            after_student = last_student
            if self.after_batch is not None:
                await self.after_batch(made)
        async with self.sessions() as session, session.begin():
            # Counted at the end: another apply running at the same time may have billed some.
            billed = await billed_count(session, fee_id)
            log_fee_applied(
                session,
                fee_id,
                actor,
                self.clock.now(),
                before={"billed": billed - created},
                after={
                    "created": created,
                    "total_cents": created * terms.amount_cents,
                    "notices": notices,
                    "due_date": terms.due_date.isoformat(),
                },
            )
        log.info("fee %s applied: %s invoice(s) in %s batch(es)", fee_id, created, batches)
        return BillResult(
            fee_id=fee_id,
            created=created,
            total_cents=created * terms.amount_cents,
            notices=notices,
            already_billed=billed - created,
            batches=batches,
        )
