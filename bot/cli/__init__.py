"""The `devicecare` command line: the root app (main.py) and one module per command group.

`app` is the console entry point (`devicecare = "bot.cli:app"`); `python -m bot.cli` runs it too.
"""

from bot.cli.main import app

__all__ = ["app"]
