"""What every face in :mod:`imgkit.widgets` shares: HTML escaping, the running loop, and
imgkit's private loop thread. No widget is imported here, so the presenter can use it too."""

from __future__ import annotations

import asyncio
import html

# imgkit's private loop thread: the studio hands its runs to it when no loop is running
# (a plain script), instead of starting a loop of its own (STYLE habit 5).
from imgkit.session import _LOOP as LOOP

__all__ = ["LOOP", "ORANGE", "RED", "esc", "running_loop"]

#: The colour of problems (refusals, validation) and of warnings.
RED = "#c62828"
ORANGE = "#ef6c00"


def esc(text: object) -> str:
    """``text`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(text))


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread (a kernel's, or async code's), or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
