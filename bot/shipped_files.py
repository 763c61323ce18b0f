"""Where the files shipped with the code are: the notice and page templates, and the family
page's CSS beside them.

A checkout keeps them in the top-level `templates/` folder. The wheel carries the same folder
inside our own package, as `bot/templates/` (pyproject's `force-include`): a top-level
`templates` folder in site-packages would be anyone's. An editable install runs from the
checkout, so both places are looked up from this package's own location.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _templates_dir() -> Path:
    package = Path(str(files("bot")))
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


TEMPLATES_DIR = _templates_dir()
