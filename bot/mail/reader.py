"""The IMAP reader: parents' replies from the mailbox into the ingest pipeline, each exactly once.

- **Position.** `MailboxState` keeps the folder's UIDVALIDITY and the last UID processed. New
  messages are found with `UID SEARCH UID <last+1>:*` and fetched by UID with `BODY.PEEK[]`, so
  nothing is marked read early. A changed UIDVALIDITY (the folder was rebuilt) starts the folder
  over, reading only what doesn't carry our `$DeviceCare` keyword; Message-IDs being unique in
  the store means a message seen before is never processed twice.
- **Storing.** Each fetched batch is stored in one transaction (a commit for the batch, not
  for each message). If that fails — a message that can't be stored, the database away — the
  batch is stored again one message per transaction, which stores everything up to the message
  at fault and applies the retry and give-up rules to that message alone.
- **Marking.** Only after ingest committed a batch is it flagged on the server (`\\Seen`, plus
  `$DeviceCare` where the server takes keywords), and then `last_uid` moves forward. A crash in
  between leaves the batch to be fetched again: its Message-IDs are found stored, nothing twice.
- **Waiting.** With IDLE, the reader wakes as soon as the server pushes EXISTS; it also re-checks
  every `poll_seconds` (a safety net that re-issues IDLE well under the 29-minute limit). Without
  IDLE it polls every `poll_seconds`.
- **Failures.** A closed socket, BYE, a timeout or a refused login ends the session; the reader
  reconnects with exponential backoff (with jitter), reset once a session has caught up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast

from aioimaplib import aioimaplib

from bot.heartbeat import note_error, note_success
from storage.db_errors import DatabaseError
from storage.inbox import Inbox
from storage.uow import UnitOfWorkFactory

if TYPE_CHECKING:
    from bot.mail.ingest import Ingested
    from bot.settings import Settings

log = logging.getLogger("devicecare.mail")

KEYWORD = "$DeviceCare"
IDLE_REFRESH_SECONDS = 25 * 60  # servers may drop an IDLE after 30 minutes (RFC 2177)
FETCH_BATCH = 100  # messages per UID FETCH (aioimaplib parses a response line by line)
BATCH_BYTES = 16 * 1024 * 1024  # and at most this much (two batches are held: one being stored)
POISON_ATTEMPTS = 3  # a message that fails this often (not for a database outage) is skipped
PREPARE_AHEAD = 4  # messages of a batch parsed and written to the blob store at once

Security = Literal["tls", "starttls", "none"]
T = TypeVar("T")


class Pipeline(Protocol):
    """What the reader hands messages to (bot.mail.ingest.Ingestor)."""

    async def prepare(self, raw: bytes) -> Any: ...

    async def store(
        self, prepared: Any, *, uidvalidity: int | None, uid: int | None
    ) -> Ingested: ...

    async def store_batch(
        self, items: Sequence[tuple[Any, int | None]], *, uidvalidity: int | None
    ) -> list[Ingested]: ...


_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS")
_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_ATOM = re.compile(r"^[A-Za-z0-9_./-]+$")


class ImapError(Exception):
    """The session can't go on (refused login, missing folder, dropped connection…)."""


class ConnectionDropped(ImapError):
    """The server closed the connection (BYE, socket closed) or stopped answering."""


@dataclass(frozen=True)
class ReaderConfig:
    host: str
    port: int
    username: str
    password: str
    security: Security = "tls"
    mailbox: str = "INBOX"
    poll_seconds: float = 60.0
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    fetch_batch: int = FETCH_BATCH
    batch_bytes: int = BATCH_BYTES
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    use_idle: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ReaderConfig:
        assert settings.imap_enabled, "IMAP_HOST, IMAP_USERNAME and IMAP_PASSWORD are needed"
        assert settings.imap_host and settings.imap_username and settings.imap_password
        values: dict[str, Any] = {
            "host": settings.imap_host,
            "port": settings.imap_port,
            "username": settings.imap_username,
            "password": settings.imap_password.get_secret_value(),
            "security": settings.imap_security,
            "mailbox": settings.imap_mailbox,
            "poll_seconds": float(settings.imap_poll_seconds),
            "timeout": float(settings.imap_timeout_seconds),
        }
        values.update(overrides)
        return cls(**values)

    @property
    def state_key(self) -> str:
        """The MailboxState row: one per account and folder."""
        key = f"{self.username}@{self.host}/{self.mailbox}"
        return key if len(key) <= 200 else key[:200]

    @property
    def idle_refresh(self) -> float:
        return max(1.0, min(self.poll_seconds, IDLE_REFRESH_SECONDS))


@dataclass
class ReaderStats:
    sessions: int = 0  # successful logins
    drops: int = 0  # sessions that ended in an error
    fetched: int = 0
    ingested: int = 0
    duplicates: int = 0
    skipped: int = 0  # poison messages given up on
    wakeups: int = 0  # IDLE pushes that announced new mail
    last_error: str | None = None


@dataclass(frozen=True)
class Selected:
    uidvalidity: int
    exists: int
    uidnext: int | None
    keywords: bool  # the server keeps keywords (PERMANENTFLAGS has \*)
    read_only: bool


@dataclass(frozen=True)
class _Batch:
    """Fetched messages by UID, in UID order: each future gives the prepared message, or what
    went wrong preparing it."""

    prepared: dict[int, asyncio.Future[Any]]

    def release(self) -> None:
        """Stop what is still being prepared; what failed is retrieved (no warning for it)."""
        for future in self.prepared.values():
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: prepared again next time
            else:
                future.cancel()


@dataclass
class _Fetched:
    uid: int
    size: int | None = None
    body: bytes | None = None
    text: list[bytes] = field(default_factory=list)


def uid_set(uids: Iterable[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> "1:3,7,9:10"."""
    ordered = sorted(set(uids))
    ranges: list[str] = []
    start = prev = None
    for uid in ordered:
        if start is None:
            start = prev = uid
        elif prev is not None and uid == prev + 1:
            prev = uid
        else:
            ranges.append(f"{start}" if start == prev else f"{start}:{prev}")
            start = prev = uid
    if start is not None:
        ranges.append(f"{start}" if start == prev else f"{start}:{prev}")
    return ",".join(ranges)


def parse_fetch(lines: Sequence[Any]) -> list[_Fetched]:
    """aioimaplib's FETCH lines -> one item per message (UID, RFC822.SIZE, the literal body).

    The last line is the tagged completion text. Untagged FETCHes without a UID (flag changes
    from other sessions) are dropped."""
    items: list[_Fetched] = []
    current: _Fetched | None = None
    for line in list(lines)[:-1]:
        if isinstance(line, bytearray | memoryview):
            if current is not None and current.body is None:
                current.body = bytes(line)
            continue
        if not isinstance(line, bytes):
            continue
        if _FETCH_START.match(line):
            current = _Fetched(uid=0)
            items.append(current)
        if current is not None:
            current.text.append(line)
    found: list[_Fetched] = []
    for item in items:
        text = b" ".join(item.text)
        uid = _FETCH_UID.search(text)
        if uid is None:
            continue
        item.uid = int(uid.group(1))
        size = _FETCH_SIZE.search(text)
        item.size = int(size.group(1)) if size else None
        found.append(item)
    return found


def parse_search(lines: Sequence[Any]) -> list[int]:
    uids: list[int] = []
    for line in list(lines)[:-1]:
        if isinstance(line, bytes):
            uids.extend(int(t) for t in line.split() if t.isdigit())
    return uids


def parse_select(lines: Sequence[Any]) -> Selected:
    uidvalidity = exists = 0
    uidnext = None
    keywords = read_only = False
    for line in lines:
        if not isinstance(line, bytes):
            continue
        if m := _UIDVALIDITY.search(line):
            uidvalidity = int(m.group(1))
        if m := _UIDNEXT.search(line):
            uidnext = int(m.group(1))
        if m := _EXISTS.match(line):
            exists = int(m.group(1))
        if b"PERMANENTFLAGS" in line and b"\\*" in line:
            keywords = True
        if b"[READ-ONLY]" in line:
            read_only = True
    if not uidvalidity:
        raise ImapError("the server sent no UIDVALIDITY for the folder")
    return Selected(uidvalidity, exists, uidnext, keywords, read_only)


def mailbox_arg(name: str) -> str:
    return name if _ATOM.match(name) else aioimaplib.quoted(name)


def _is_outage(exc: BaseException) -> bool:
    """Errors that say nothing about the message: the database or the disk is away."""
    return isinstance(exc, DatabaseError | OSError | ConnectionError | TimeoutError)


class ImapReader:
    """Reads one folder; `run()` until stopped, or `run_once()` to catch up and return."""

    def __init__(self, config: ReaderConfig, pipeline: Pipeline, stores: UnitOfWorkFactory) -> None:
        self.config = config
        self.pipeline = pipeline
        self.stores = stores
        self.stats = ReaderStats()
        self.client: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()
        self._failures: dict[tuple[int, int], int] = {}
        self._caught_up = False

    # --- running ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read until `stop` is set, reconnecting with backoff after any failure."""
        delay = self.config.reconnect_initial
        while not stop.is_set():
            self._caught_up = False
            try:
                await self._session(stop)
            except asyncio.CancelledError:
                await self._close(polite=False)
                raise
            except Exception as exc:  # noqa: BLE001 - every failure means: reconnect later
                self.stats.drops += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("IMAP session ended (%s); reconnecting", self.stats.last_error)
                note_error("mail", self.stats.last_error, self.stores.clock.now())
                await self._close(polite=False)
            else:
                await self._close(polite=True)
            if stop.is_set():
                break
            if self._caught_up:
                delay = self.config.reconnect_initial  # the last session worked: retry soon
            wait = delay * (1 + random.uniform(0, 0.25))
            log.info("reconnecting to IMAP in %.1fs", wait)
            await _wait_or_stop(stop, wait)
            delay = min(delay * 2, self.config.reconnect_max)

    async def run_once(self) -> int:
        """Connect, process everything new, disconnect; returns how many were ingested."""
        before = self.stats.ingested
        try:
            await self._connect()
            selected = await self._select()
            await self.catch_up(selected)
        finally:
            await self._close(polite=True)
        return self.stats.ingested - before

    async def _session(self, stop: asyncio.Event) -> None:
        await self._connect()
        selected = await self._select()
        client = self.client
        assert client is not None
        idle = self.config.use_idle and client.has_capability("IDLE")
        log.info(
            "reading %s on %s (%s)",
            self.config.mailbox,
            self.config.host,
            "IDLE" if idle else f"polling every {self.config.poll_seconds:.0f}s",
        )
        while not stop.is_set():
            await self.catch_up(selected)
            self._caught_up = True
            note_success("mail", self.stores.clock.now())  # the last good poll, for /metrics
            if idle:
                await self._idle(stop)
            else:
                await _wait_or_stop(stop, self.config.poll_seconds)
                if not stop.is_set():
                    await self._call(client.noop())

    # --- connection ---------------------------------------------------------------------

    async def _connect(self) -> None:
        cfg = self.config
        self._lost = asyncio.Event()
        lost = self._lost

        def on_lost(_exc: Exception | None) -> None:
            lost.set()

        context = None
        if cfg.security in ("tls", "starttls"):
            context = cfg.ssl_context or ssl.create_default_context()
        client = aioimaplib.IMAP4(
            host=cfg.host,
            port=cfg.port,
            timeout=cfg.timeout,
            conn_lost_cb=on_lost,
            ssl_context=context if cfg.security == "tls" else None,
        )
        self.client = client
        await self._call(client.wait_hello_from_server())
        if cfg.security == "starttls":
            assert context is not None
            await self._starttls(client, context)
        response = await self._call(client.login(cfg.username, cfg.password))
        if response.result != "OK":
            raise ImapError(f"IMAP login refused for {cfg.username}: {_text(response.lines)}")
        self.stats.sessions += 1

    async def _starttls(self, client: aioimaplib.IMAP4, context: ssl.SSLContext) -> None:
        """aioimaplib has no STARTTLS: send it, then upgrade the transport in place."""
        protocol = client.protocol
        if not client.has_capability("STARTTLS"):
            raise ImapError("the server doesn't offer STARTTLS (set IMAP_SECURITY=tls?)")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._call(protocol.execute(command))
        if response.result != "OK":
            raise ImapError(f"STARTTLS refused: {_text(response.lines)}")
        loop = asyncio.get_running_loop()
        transport = await self._call(
            loop.start_tls(protocol.transport, protocol, context, server_hostname=self.config.host)
        )
        protocol.transport = transport
        await self._call(protocol.capability())  # capabilities may change after TLS

    async def _close(self, *, polite: bool) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        if polite and not self._lost.is_set():
            try:
                await asyncio.wait_for(client.logout(), 5)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()
        for task in list(client.tasks) + list(client.protocol.tasks):
            task.cancel()

    async def _call(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Await an IMAP step, failing fast when the connection drops or the server is mute."""
        step = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        limit = self.config.timeout * 4 if timeout is None else timeout
        try:
            done, _ = await asyncio.wait(
                {step, lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            step.cancel()
            raise
        finally:
            lost.cancel()
        if step in done:
            return step.result()
        step.cancel()
        if lost in done:
            raise ConnectionDropped("the IMAP server closed the connection")
        raise ConnectionDropped(f"no answer from the IMAP server in {limit:.0f}s")

    # --- the folder ---------------------------------------------------------------------

    async def _select(self) -> Selected:
        client = self.client
        assert client is not None
        response = await self._call(client.select(mailbox_arg(self.config.mailbox)))
        if response.result != "OK":
            raise ImapError(f"can't open folder {self.config.mailbox!r}: {_text(response.lines)}")
        return parse_select(response.lines)

    async def _position(self, selected: Selected) -> tuple[int, bool]:
        """(last processed UID, whether this folder is being read from the start)."""
        async with self.stores() as store:
            inbox = Inbox(store)
            state = await inbox.mailbox_state(self.config.state_key)
            if state is not None and state.uidvalidity == selected.uidvalidity:
                await store.commit()
                return state.last_uid, False
            if state is not None:
                log.warning(
                    "UIDVALIDITY of %s changed (%s -> %s): reading the folder again; "
                    "messages already stored are recognised by Message-ID",
                    self.config.mailbox,
                    state.uidvalidity,
                    selected.uidvalidity,
                )
            await inbox.reset_mailbox_state(self.config.state_key, uidvalidity=selected.uidvalidity)
            await store.commit()
            return 0, True

    async def catch_up(self, selected: Selected) -> int:
        """Ingest every message after the last processed UID; returns how many were new."""
        client = self.client
        assert client is not None
        last_uid, fresh = await self._position(selected)
        criteria = ["UID", f"{last_uid + 1}:*"]
        if fresh and selected.keywords:
            criteria += ["UNKEYWORD", KEYWORD]  # what an earlier folder's reading marked, skip
        response = await self._call(client.uid_search(*criteria, charset=None))
        if response.result != "OK":
            raise ImapError(f"UID SEARCH failed: {_text(response.lines)}")
        # "n:*" always includes the highest UID, even when it is below n.
        uids = sorted(u for u in set(parse_search(response.lines)) if u > last_uid)
        before = self.stats.ingested
        fetched: list[_Batch] = []  # fetched and being prepared, not stored yet
        try:
            async for uids_of_batch in self._split(uids):
                # Each batch is parsed and written to the blob store while the one before it
                # is stored: the disk's waits and the database's overlap.
                fetched.append(await self._fetch(uids_of_batch))
                if len(fetched) > 1:
                    await self._process(selected, fetched.pop(0))
            while fetched:
                await self._process(selected, fetched.pop(0))
        finally:
            for batch in fetched:
                batch.release()
        return self.stats.ingested - before

    async def _split(self, uids: list[int]) -> AsyncIterator[list[int]]:
        for start in range(0, len(uids), self.config.fetch_batch):
            for batch in await self._batches(uids[start : start + self.config.fetch_batch]):
                yield batch

    async def _batches(self, uids: list[int]) -> list[list[int]]:
        """Split by size, so a few huge messages never sit in memory together."""
        client = self.client
        assert client is not None
        response = await self._call(client.uid("fetch", uid_set(uids), "(UID RFC822.SIZE)"))
        sizes = {item.uid: item.size or 0 for item in parse_fetch(response.lines)}
        batches: list[list[int]] = []
        current: list[int] = []
        total = 0
        for uid in uids:
            if uid not in sizes:
                continue  # expunged meanwhile
            if current and total + sizes[uid] > self.config.batch_bytes:
                batches.append(current)
                current, total = [], 0
            current.append(uid)
            total += sizes[uid]
        if current:
            batches.append(current)
        return batches

    async def _fetch(self, uids: list[int]) -> _Batch:
        """The batch's messages, their preparing (parse, blob store) started, a few at once."""
        client = self.client
        assert client is not None
        response = await self._call(client.uid("fetch", uid_set(uids), "(UID BODY.PEEK[])"))
        if response.result != "OK":
            raise ImapError(f"UID FETCH failed: {_text(response.lines)}")
        bodies = {item.uid: item.body for item in parse_fetch(response.lines) if item.body}
        self.stats.fetched += len(bodies)
        limit = asyncio.Semaphore(PREPARE_AHEAD)

        async def prepare(raw: bytes) -> Any:
            async with limit:
                return await self.pipeline.prepare(raw)

        order = [uid for uid in uids if uid in bodies]  # others were expunged meanwhile
        return _Batch({uid: asyncio.ensure_future(prepare(bodies[uid])) for uid in order})

    async def _process(self, selected: Selected, batch: _Batch) -> None:
        """Store the batch (together, or one by one if that fails), then mark it."""
        order = list(batch.prepared)
        try:
            if order:
                await asyncio.wait(batch.prepared.values())
        except asyncio.CancelledError:
            batch.release()
            raise
        stored: list[int] = []
        last_uid = 0
        try:
            if await self._store_together(selected, order, batch.prepared):
                stored, last_uid = order, order[-1]
            else:
                for uid in order:
                    if await self._ingest_one(selected, uid, batch.prepared[uid]):
                        stored.append(uid)
                    last_uid = uid
        finally:
            batch.release()
            await self._mark(selected, stored, last_uid)

    async def _store_together(
        self, selected: Selected, order: list[int], prepared: dict[int, asyncio.Future[Any]]
    ) -> bool:
        """The batch in one transaction. False when it is to be stored one by one instead: a
        message failed to prepare, or the batch failed to store."""
        if not order or any(prepared[uid].exception() is not None for uid in order):
            return False
        items = [(prepared[uid].result(), uid) for uid in order]
        try:
            results = await self.pipeline.store_batch(items, uidvalidity=selected.uidvalidity)
        except Exception:  # noqa: BLE001 - one by one, the message at fault is found
            log.warning(
                "couldn't store %s messages from %s together; storing them one by one",
                len(order),
                self.config.mailbox,
                exc_info=True,
            )
            return False
        for uid, result in zip(order, results, strict=True):
            self._failures.pop((selected.uidvalidity, uid), None)
            self._count(result)
        return True

    def _count(self, result: Ingested) -> None:
        if result.duplicate:
            self.stats.duplicates += 1
        else:
            self.stats.ingested += 1

    async def _ingest_one(
        self, selected: Selected, uid: int, prepared: asyncio.Future[Any]
    ) -> bool:
        """True when the message is stored (or was before); False when it is given up on.
        Anything else raises, and the session starts over from the last stored UID."""
        key = (selected.uidvalidity, uid)
        try:
            result = await self.pipeline.store(
                await prepared, uidvalidity=selected.uidvalidity, uid=uid
            )
        except Exception as exc:
            if _is_outage(exc):
                raise
            attempts = self._failures.get(key, 0) + 1
            self._failures[key] = attempts
            if attempts < POISON_ATTEMPTS:
                raise
            log.exception(
                "giving up on UID %s in %s after %s failures; it stays unmarked on the server",
                uid,
                self.config.mailbox,
                attempts,
            )
            self.stats.skipped += 1
            return False
        self._failures.pop(key, None)
        self._count(result)
        return True

    async def _mark(self, selected: Selected, uids: list[int], last_uid: int) -> None:
        """After the batch committed: flag what was stored on the server, then move last_uid
        forward (past messages given up on too: they stay unflagged, for a person to read)."""
        if not last_uid:
            return
        client = self.client
        if uids and client is not None and not selected.read_only and not self._lost.is_set():
            flags = "(\\Seen $DeviceCare)" if selected.keywords else "(\\Seen)"
            try:
                await self._call(client.uid("store", uid_set(uids), "+FLAGS.SILENT", flags))
            except ImapError:
                log.warning("couldn't flag %s processed messages on the server", len(uids))
        async with self.stores() as store:
            await Inbox(store).save_mailbox_state(
                self.config.state_key, uidvalidity=selected.uidvalidity, last_uid=last_uid
            )
            await store.commit()

    # --- waiting ------------------------------------------------------------------------

    async def _idle(self, stop: asyncio.Event) -> None:
        """IDLE until the server announces mail, `poll_seconds` pass, or `stop` is set."""
        client = self.client
        assert client is not None
        refresh = self.config.idle_refresh
        idle = await self._call(client.idle_start(timeout=refresh))
        stopping = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            while True:
                push = asyncio.ensure_future(client.wait_server_push(timeout=refresh + 30))
                done, _ = await asyncio.wait(
                    {push, stopping, lost}, return_when=asyncio.FIRST_COMPLETED
                )
                if push not in done:
                    push.cancel()
                    if lost in done:
                        raise ConnectionDropped("the IMAP server closed the connection")
                    break  # stopping
                try:
                    lines = push.result()
                except TimeoutError:
                    break
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break  # time to re-check and IDLE again
                if any(isinstance(x, bytes) and x.startswith(b"BYE") for x in lines):
                    raise ConnectionDropped(f"the server said {_text(lines)}")
                if any(isinstance(x, bytes) and _EXISTS.match(x) for x in lines):
                    self.stats.wakeups += 1
                    break
        finally:
            stopping.cancel()
            lost.cancel()
        if client.has_pending_idle() and not self._lost.is_set():
            client.idle_done()
            await self._call(idle, timeout=self.config.timeout)


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0))
    except TimeoutError:
        pass


def _text(lines: Iterable[Any]) -> str:
    parts = [x.decode(errors="replace") for x in lines if isinstance(x, bytes)]
    return " ".join(parts)[:300]


async def check_mailbox(config: ReaderConfig) -> Selected:
    """Log in and open the folder, then log out: nothing is read or marked."""
    # Neither the pipeline nor the stores are used by connecting and selecting.
    reader = ImapReader(config, cast(Pipeline, None), cast(UnitOfWorkFactory, None))
    try:
        await reader._connect()
        return await reader._select()
    finally:
        await reader._close(polite=True)


def build_reader(runtime: Any, **overrides: Any) -> ImapReader:
    """The reader for the runtime's settings, feeding the runtime's ingest pipeline."""
    from bot.mail.ingest import Ingestor

    return ImapReader(
        ReaderConfig.from_settings(runtime.settings, **overrides),
        Ingestor.from_runtime(runtime),
        runtime.stores,
    )
