"""Debian's Chromium, driven headless by Playwright, for the browser tests.

Playwright's own browser downloads are never used: the tests launch the system `chromium`
(Debian packages `chromium` and `chromium-driver`). Where it isn't installed, `ensure_installed()`
installs it with apt when running as root, as `.ci/run` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess

APT_PACKAGES = ("chromium", "chromium-driver")
INSTALL_COMMAND = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "--no-install-recommends " + " ".join(APT_PACKAGES)
)
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
    return shutil.which("chromium") or next(
        (p for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium") if os.access(p, os.X_OK)),
        None,
    )


def ensure_installed() -> str:
    """The chromium binary, installing the Debian packages first when root and it's missing."""
    found = chromium_binary()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ChromiumUnavailable(
            f"Chromium isn't installed (and installing needs root and apt-get); run "
            f"`{INSTALL_COMMAND}`"
        )
    result = subprocess.run(
        ["sh", "-c", INSTALL_COMMAND],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=900,
        check=False,
    )
    found = chromium_binary()
    if result.returncode != 0 or not found:
        tail = result.stdout.decode(errors="replace")[-2000:]
        raise ChromiumUnavailable(f"installing Chromium failed ({result.returncode}):\n{tail}")
    return found
