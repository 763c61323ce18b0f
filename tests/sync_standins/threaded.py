"""A stand-in served from a thread of its own, for tests that drive the CLI (which runs its
own event loop) against it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol


class StandIn(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@contextlib.contextmanager
def serving(standin: StandIn) -> Iterator[Any]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(standin.start(), loop).result(timeout=30)
        yield standin
    finally:
        asyncio.run_coroutine_threadsafe(standin.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
