"""The runtime dependencies in pyproject.toml cover what the service imports.

A module the service imports but doesn't declare works in a checkout (the test extras bring it)
and fails in a district's install.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OWN = ("bot", "services", "storage", "workflows")
# Optional dependencies of libraries that the service's own calls need.
NEEDED_BY_OUR_CALLS = {"httpx": "stripe.HTTPXClient (bot/web/stripe_checkout.py)"}


def _imported_modules() -> set[str]:
    modules: set[str] = set()
    for package in OWN:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in OWN}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


def _project() -> dict[str, Any]:
    # The checkout's pyproject.toml, not the installed metadata: that is only as new as the
    # last `pip install -e .`.
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _runtime_requirements() -> set[str]:
    return _names(_project()["dependencies"])


def _optional_extras() -> set[str]:
    """What the service's extras (not the test tools) bring: imported only when configured."""
    extras: dict[str, list[str]] = _project().get("optional-dependencies", {})
    return _names([r for name, reqs in extras.items() if name != "test" for r in reqs])


def test_every_imported_library_is_a_runtime_dependency() -> None:
    declared = _runtime_requirements() | _optional_extras()
    distributions = md.packages_distributions()
    missing = {
        module: distributions.get(module, [module])
        for module in _imported_modules()
        if not {_normalise(d) for d in distributions.get(module, [module])} & declared
    }
    assert missing == {}, f"imported but not in [project] dependencies: {missing}"


def test_what_our_calls_need_from_optional_dependencies_is_declared() -> None:
    declared = _runtime_requirements()
    assert {m: why for m, why in NEEDED_BY_OUR_CALLS.items() if m not in declared} == {}
