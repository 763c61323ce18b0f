"""The lock files agree with pyproject.toml: every dependency pinned, within its range, with
hashes, and the test lock pinning the runtime lock's versions. A failure here means: run
`make lock` and commit requirements/*.txt."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)((?:\s*\\\n\s*--hash=sha256:[0-9a-f]{64})*)", re.M)


def _pins(name: str) -> dict[str, tuple[Version, int]]:
    """Package -> (pinned version, number of hashes)."""
    text = (REPO / "requirements" / name).read_text()
    return {
        canonicalize_name(m.group(1)): (Version(m.group(2)), m.group(3).count("--hash="))
        for m in PIN.finditer(text)
    }


def _project() -> dict[str, list[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


@pytest.mark.parametrize(
    ("lock", "groups"), [("runtime.txt", ["", "sentry"]), ("test.txt", ["", "sentry", "test"])]
)
def test_the_lock_pins_every_dependency_within_its_range(lock: str, groups: list[str]) -> None:
    pins = _pins(lock)
    project = _project()
    for group in groups:
        for line in project[group]:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in pins, f"requirements/{lock} lacks {name}: run make lock"
            version, _ = pins[name]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"requirements/{lock} pins {name}=={version}, outside {requirement.specifier}"
            )


@pytest.mark.parametrize("lock", ["runtime.txt", "test.txt"])
def test_every_pin_has_hashes(lock: str) -> None:
    pins = _pins(lock)
    assert pins
    assert not [name for name, (_, hashes) in pins.items() if hashes == 0]


def test_the_test_lock_installs_what_the_runtime_lock_pins() -> None:
    runtime, test = _pins("runtime.txt"), _pins("test.txt")
    differ = sorted(n for n, (v, _) in runtime.items() if n not in test or test[n][0] != v)
    assert not differ, f"requirements/test.txt pins these differently or not at all: {differ}"
