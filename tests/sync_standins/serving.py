"""Serving a stand-in's aiohttp app on a local port (the port 0 asks for a free one)."""

from __future__ import annotations

from aiohttp import web


async def listen(runner: web.AppRunner, port: int) -> int:
    """Set the runner up on 127.0.0.1:`port`; returns the port it listens on."""
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
