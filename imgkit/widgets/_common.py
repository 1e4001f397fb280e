"""What every face in :mod:`imgkit.widgets` shares: HTML escaping, the running loop, and
imgkit's private loop thread. No widget is imported here, so the presenter can use it too."""

from __future__ import annotations

import html

# imgkit's private loop thread: the studio hands its runs to it when no loop is running
# (a plain script), instead of starting a loop of its own (STYLE habit 5).
from imgkit._loop import LOOP, running_loop

__all__ = ["LOOP", "ORANGE", "RED", "esc", "running_loop"]

#: The colour of problems (refusals, validation) and of warnings.
RED = "#c62828"
ORANGE = "#ef6c00"


def esc(text: object) -> str:
    """``text`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(text))
