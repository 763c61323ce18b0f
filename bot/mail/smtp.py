"""One SMTP connection, reused for a whole batch of notices and reopened when it dropped.

Security: `starttls` insists on STARTTLS (a server that doesn't offer it is an error, never a
silent plain-text session), `tls` is implicit TLS (port 465), `none` is plain (local relays and
tests). Certificates are verified; `ca_file` adds a private CA.

Retries belong to the outbox, not here: a failed send raises and the row is tried again later
with backoff. The only thing this class retries by itself is finding out that an idle connection
died, which it checks with NOOP before a batch (nothing is sent on a connection in doubt).
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import aiosmtplib

log = logging.getLogger("devicecare.mail.smtp")

Security = Literal["starttls", "tls", "none"]
# A connection idle longer than this is probed with NOOP before it is trusted with a message.
PROBE_AFTER_SECONDS = 5.0


class SmtpUnavailable(ConnectionError):
    """The server could not be reached (or refused us) for this batch."""


class RecipientRefused(Exception):
    """The server refused the recipient for good (5xx): retrying won't help."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    ca_file: Path | None = None
    tls_context: ssl.SSLContext | None = None
    local_hostname: str | None = None


class SmtpTransport:
    """Sends messages over one reusable connection.

    `begin_batch()` before a batch: it probes an idle connection and forgets an earlier batch's
    connect failure. Within a batch, once connecting has failed every further send fails at once
    with the same error, so a dead server costs one timeout per batch, not one per message.
    """

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0
        self._batch_error: Exception | None = None
        self.connections_opened = 0

    def _new_client(self) -> aiosmtplib.SMTP:
        c = self.config
        context = c.tls_context
        if context is None and c.ca_file is not None and c.security != "none":
            context = ssl.create_default_context(cafile=str(c.ca_file))
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username or None,
            password=c.password if c.username else None,
            timeout=c.timeout,
            use_tls=c.security == "tls",
            start_tls=True if c.security == "starttls" else False,
            tls_context=context,
            local_hostname=c.local_hostname,
        )

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def _connect(self) -> aiosmtplib.SMTP:
        await self._drop()
        client = self._new_client()
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SmtpUnavailable(f"SMTP login refused: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SmtpUnavailable(
                f"can't reach SMTP server {self.config.host}:{self.config.port}: {exc}"
            ) from exc
        self._client = client
        self.connections_opened += 1
        self._last_used = time.monotonic()
        return client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    async def begin_batch(self) -> None:
        self._batch_error = None
        client = self._client
        if client is None:
            return
        if not client.is_connected:
            self._client = None
            return
        if time.monotonic() - self._last_used > PROBE_AFTER_SECONDS:
            try:
                await client.noop()
                self._last_used = time.monotonic()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                log.info("SMTP connection went stale; reconnecting")
                client.close()
                self._client = None

    async def end_batch(self) -> None:
        """Keeps the connection for the next batch (`begin_batch` checks it is still alive)."""

    async def send(self, message: EmailMessage | bytes, *, sender: str, recipient: str) -> None:
        """Send one message: bytes as they are (CRLF, 7-bit), or an EmailMessage that
        aiosmtplib flattens (and sends with SMTPUTF8 where an address needs it)."""
        if self._batch_error is not None:
            raise SmtpUnavailable(str(self._batch_error)) from self._batch_error
        client = self._client
        if client is None or not client.is_connected:
            try:
                client = await self._connect()
            except SmtpUnavailable as exc:
                self._batch_error = exc
                raise
        try:
            if isinstance(message, bytes):
                await client.sendmail(sender, [recipient], message)
            else:
                await client.send_message(message, sender=sender, recipients=[recipient])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            self._last_used = time.monotonic()
            refusals = exc.recipients
            if refusals and all(r.code >= 500 for r in refusals):
                first = refusals[0]
                reason = f"mailbox unavailable: {first.code} {first.message}"
                raise RecipientRefused(reason) from exc
            raise
        except aiosmtplib.SMTPResponseException as exc:
            # The transaction was reset by aiosmtplib; the connection itself is still good
            # unless the server said it is closing it (421).
            if exc.code == 421 or not client.is_connected:
                await self._drop()
            else:
                self._last_used = time.monotonic()
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            # A connection that failed mid-message is never reused: the next send reconnects.
            client.close()
            self._client = None
            raise
        self._last_used = time.monotonic()

    async def close(self) -> None:
        await self._drop()

    async def check(self) -> str:
        """Connect, EHLO, STARTTLS and log in as configured, then QUIT; nothing is sent.

        Returns what was done; failures raise as they would for a send (SmtpUnavailable, …).
        """
        client = await self._connect()
        try:
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
        finally:
            await self._drop()
        c = self.config
        done = [f"{c.host}:{c.port}", "EHLO"]
        done += {"tls": ["TLS"], "starttls": ["STARTTLS"], "none": []}[c.security]
        done.append(f"logged in as {c.username}" if c.username else "no login")
        return ", ".join(done)
