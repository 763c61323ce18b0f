"""`SqlUnitOfWork`: the transaction the use cases run in, over one SQLAlchemy session, with a
repository per aggregate. Nothing is kept unless `commit()` is called: leaving the block
(cleanly or by an exception) rolls back whatever was not committed."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.card_refresh import CLOCK
from storage.repositories.activity import SqlActivityRepository
from storage.repositories.base import locking
from storage.repositories.billing_runs import SqlBillingRunRepository
from storage.repositories.devices import SqlDeviceRepository
from storage.repositories.enrollments import SqlEnrollmentRepository
from storage.repositories.fee_items import SqlFeeItemRepository
from storage.repositories.incidents import SqlIncidentRepository
from storage.repositories.insurance import SqlInsuranceRepository
from storage.repositories.invoices import SqlInvoiceRepository
from storage.repositories.outbox import SqlOutboxRepository
from storage.repositories.pauses import SqlPauseRepository
from storage.repositories.payments import SqlPaymentRepository
from storage.repositories.people import SqlPeopleRepository
from storage.repositories.settings import SqlSettingsRepository
from storage.repositories.slack_posts import SqlSlackPostRepository
from storage.repositories.student_flags import SqlStudentFlagRepository
from workflows.clock import Clock

# Message-IDs need a domain; the runtime passes the district's (from SMTP_FROM).
DEFAULT_MAIL_DOMAIN = "devicecare.invalid"


class SqlUnitOfWork:
    """Implements `workflows.ports.UnitOfWork`; rolls back on exit what wasn't committed."""

    def __init__(
        self, session: AsyncSession, clock: Clock, *, mail_domain: str = DEFAULT_MAIL_DOMAIN
    ) -> None:
        self.session = session
        self.clock = clock
        self.session.info.setdefault(CLOCK, clock)  # storage.card_refresh dates its rows
        self.mail_domain = mail_domain
        self.settings = SqlSettingsRepository(session, clock)
        self.activity = SqlActivityRepository(session, clock)
        self.people = SqlPeopleRepository(session, clock, self.activity)
        self.slack_posts = SqlSlackPostRepository(session, clock)
        self.devices = SqlDeviceRepository(session, clock)
        self.incidents = SqlIncidentRepository(session, clock)
        self.student_flags = SqlStudentFlagRepository(session, clock)
        self.insurance = SqlInsuranceRepository(session, clock)
        self.enrollments = SqlEnrollmentRepository(session, clock)
        self.fee_items = SqlFeeItemRepository(session, clock)
        self.invoices = SqlInvoiceRepository(session, clock)
        self.payments = SqlPaymentRepository(session, clock)
        self.outbox = SqlOutboxRepository(session, clock, mail_domain=mail_domain)
        self.pauses = SqlPauseRepository(session, clock)
        self.billing_runs = SqlBillingRunRepository(session, clock)

    @classmethod
    def factory(cls, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> UnitOfWorkFactory:
        return UnitOfWorkFactory(sessions, clock)

    async def __aenter__(self) -> SqlUnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                await self.session.rollback()
        finally:
            # Ends the transaction: what wasn't committed is rolled back. Rows read stay
            # readable (detached, not expired), as they were after a commit.
            await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        """Drop what was not committed; the unit of work stays open for what comes next."""
        await self.session.rollback()

    async def flush(self) -> None:
        await self.session.flush()

    def in_transaction(self) -> bool:
        """Whether a transaction is open (something read or written since the last commit)."""
        return self.session.in_transaction()

    def locking(self, stmt: Select[Any]) -> Select[Any]:
        """`stmt` as a read that locks its rows (see storage.repositories.base.locking)."""
        return locking(self.session, stmt)


class UnitOfWorkFactory:
    """Opens one `SqlUnitOfWork` (one transaction) per use."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        mail_domain: str = DEFAULT_MAIL_DOMAIN,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.mail_domain = mail_domain

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.sessions(), self.clock, mail_domain=self.mail_domain)
