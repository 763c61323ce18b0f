"""A stop waits for the outbox step in flight, and says where that step is."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.jobs.worker import _run_to_end


async def test_a_stop_finishes_the_step_in_flight_and_logs_where_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    finished: list[str] = []

    async def deliver_a_notice() -> str:
        await release.wait()  # e.g. an SMTP answer on its way
        finished.append("sent")
        return "sent"

    outer = asyncio.ensure_future(_run_to_end(deliver_a_notice()))
    await asyncio.sleep(0)  # the step starts
    with caplog.at_level(logging.INFO, logger="devicecare.worker"):
        outer.cancel()  # SIGTERM
        await asyncio.sleep(0)
        assert not outer.done()  # the message isn't cut off half-sent
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await outer
    assert finished == ["sent"]
    [line] = [r.getMessage() for r in caplog.records if "step in flight" in r.getMessage()]
    assert "deliver_a_notice (test_worker_stop.py:" in line and line.index("wait") < line.index(
        "deliver_a_notice"
    )
