"""Where the CLI's tables go: a terminal at its own width; a file or a pipe (a log, ``nohup``, CI) wide
enough that a table's cells are not cut short ("ra…"), as rich's 80 columns cut them.

>>> import io
>>> console(file=io.StringIO()).width
200
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

LOG_WIDTH = 200
"""The width of a table written to a file or a pipe when ``COLUMNS`` does not say one."""


def console(**kwargs: Any) -> Console:
    """A rich :class:`~rich.console.Console` (``kwargs`` as its own), :data:`LOG_WIDTH` wide when it writes
    to no terminal and ``COLUMNS`` is not set."""
    out = Console(**kwargs)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out.width = LOG_WIDTH
    return out
