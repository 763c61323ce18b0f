"""Debian's Chromium, driven headless by Playwright, for the browser tests.

Playwright's own browser downloads are never used: the tests launch the system `chromium`
(Debian packages `chromium` and `chromium-driver`). Where it isn't installed, `ensure_installed()`
installs it with apt when running as root, as `.ci/run` does.
"""

from __future__ import annotations

from tests.debian_packages import ensure_program, find_program

APT_PACKAGES = ("chromium", "chromium-driver")
# Headless, no first-run work, and nothing that reaches out to the network on its own.
LAUNCH_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class ChromiumUnavailable(RuntimeError):
    """Chromium isn't installed and couldn't be; the message says why."""


def chromium_binary() -> str | None:
    return find_program("chromium", "/usr/bin/chromium", "/usr/lib/chromium/chromium")


def ensure_installed() -> str:
    """The chromium binary, installing the Debian packages first when root and it's missing."""
    return ensure_program(
        chromium_binary, APT_PACKAGES, what="Chromium", unavailable=ChromiumUnavailable
    )
