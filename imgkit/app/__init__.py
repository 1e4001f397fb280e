"""The studio as a web page of its own: ``imgkit app`` serves it through Voilà.

Voilà runs :data:`NOTEBOOK` (one cell that builds :func:`page`) in a kernel per browser
session and shows its output only, without code cells. :func:`voila_command` is the
command line ``imgkit app`` and ``make app`` run:

- on ``127.0.0.1`` with a token by default (``--host`` to share on a team server);
- with Tornado's ``websocket_max_message_size`` raised, so uploads of 16 x 50 MB arrive;
- with tracebacks hidden and sources stripped from the page;
- with a per-page budget when the operator sets one (``--budget-credits N`` or the
  environment variable :data:`BUDGET_ENV`): each page (one kernel per browser session) may
  start runs estimated at up to N credits in all, and refuses the next one on the page.

The page is safe to share: references come only by upload or http(s) URL (a typed path on
the server is refused), and the API key stays in the kernel's environment: it is never in
the widget state, the page or a downloaded file (``tests/test_browser_app.py`` searches
them). The same :func:`page` works in a notebook cell.

Example:
    $ imgkit app                  # prints the URL with its token
    $ imgkit app --budget-credits 20   # each page may spend up to 20 credits
    >>> imgkit.app.page()         # the same page in a notebook
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgkit.session import Session
    from imgkit.widgets._studio import StudioApp

__all__ = ["BUDGET_ENV", "NOTEBOOK", "WEBSOCKET_LIMIT", "page", "page_budget", "voila_command"]

#: The notebook Voilà serves.
NOTEBOOK = Path(__file__).with_name("studio.ipynb")
#: One websocket message must hold an upload of 16 images of 50 MB (Jupyter's default: 10 MiB).
WEBSOCKET_LIMIT = 943718400
#: The environment variable that caps what one page may spend, in credits.
BUDGET_ENV = "IMGKIT_APP_BUDGET"


def page_budget(value: str | float | None = None) -> float | None:
    """The per-page budget in credits: ``value``, else :data:`BUDGET_ENV`, else None (no cap).

    Raises:
        ValidationError: the value is not a number of credits >= 0.
    """
    from imgkit.errors import ValidationError

    raw = os.environ.get(BUDGET_ENV) if value is None else value
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        credits = float(raw)
    except (TypeError, ValueError):
        credits = -1.0
    if not credits >= 0 or credits == float("inf"):
        name = BUDGET_ENV if value is None else "budget_credits"
        raise ValidationError(name, raw, "a number of credits >= 0")
    return credits


def page(session: Session | None = None, **options: Any) -> StudioApp:
    """The studio for a shared page: uploads and http(s) URLs only, no server-side paths,
    and the operator's per-page budget (:func:`page_budget`) unless ``page_budget`` is given.

    Takes :class:`imgkit.Studio`'s arguments (``local_paths`` is always False).
    """
    from imgkit.widgets._studio import StudioApp

    options["local_paths"] = False
    options.setdefault("page_budget", page_budget())
    return StudioApp(session, **options)


def voila_command(
    *, host: str = "127.0.0.1", port: int = 8866, token: str | None = None, notebook: Path = NOTEBOOK,
    open_browser: bool = False,
) -> tuple[list[str], str]:
    """The Voilà command line that serves the studio page, and its token.

    Args:
        host: the interface to listen on (loopback by default).
        port: the port.
        token: the token a browser must bring (a random one when None; "" for none).
        notebook: the notebook to serve (:data:`NOTEBOOK`).
        open_browser: open the page in a browser.
    """
    token = secrets.token_urlsafe(24) if token is None else token
    command = [
        sys.executable, "-m", "voila", str(notebook),
        f"--Voila.ip={host}",
        f"--port={port}",
        "--Voila.port_retries=0",
        f"--token={token}",
        # A dict literal: in key=value form traitlets passes the number on as a string.
        f"--Voila.tornado_settings={{'websocket_max_message_size': {WEBSOCKET_LIMIT}}}",
        "--VoilaConfiguration.show_tracebacks=False",
        "--strip_sources=True",
        f"--Voila.open_browser={open_browser}",
    ]
    return command, token
