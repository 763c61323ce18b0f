"""Programs the tests drive (Dovecot, Chromium), installed from Debian's packages when missing.

A fresh CI machine has neither; `.ci/run` installs both first, and a test run as root on a
Debian machine installs what it needs itself. Anywhere else the caller is told the command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence


def apt_install_command(packages: Sequence[str]) -> str:
    return (
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
        "--no-install-recommends " + " ".join(packages)
    )


def find_program(name: str, *candidates: str) -> str | None:
    """`name` on the PATH, else the first of `candidates` that can be run."""
    return shutil.which(name) or next((p for p in candidates if os.access(p, os.X_OK)), None)


def ensure_program(
    find: Callable[[], str | None],
    packages: Sequence[str],
    *,
    what: str,
    unavailable: type[Exception],
    timeout: float = 900,
) -> str:
    """The program `find` locates, installing `packages` with apt first when root and missing;
    `unavailable` (with the reason) when that can't be done."""
    found = find()
    if found:
        return found
    command = apt_install_command(packages)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise unavailable(
            f"{what} isn't installed (and installing needs root and apt-get); run `{command}`"
        )
    result = subprocess.run(
        ["sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    found = find()
    if result.returncode != 0 or not found:
        tail = result.stdout.decode(errors="replace")[-2000:]
        raise unavailable(f"installing {what} failed ({result.returncode}):\n{tail}")
    return found
