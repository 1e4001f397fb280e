"""Notebook faces of imgkit: the studio form, run cards and the history panel.

Widgets hold no business logic: validation is :meth:`imgkit.request.ImageRequest.build`, prices are
:meth:`imgkit.Session.quote` (the estimate a run is recorded at), runs are
:meth:`imgkit.Session.agenerate`, the runs in flight are the engine's, and the widgets only
render the :class:`imgkit.request.JobEvent` objects a run emits. Everything a form does is reachable
from Python with the same calls.

The studio comes in three parts: ``_layout`` builds the widgets, ``_present`` turns session
values into the text they show (pure, no ipywidgets), and ``_studio`` is the controller
(observers, tasks, calls to the session). ``_cards`` holds the run cards, the preview and
the event throttle; ``_common`` the helpers every part shares.

This package is imported by ``import imgkit``, so it stays light: ipywidgets and IPython are
imported by :mod:`imgkit.widgets._studio` the first time a studio is built.

Example:
    >>> import imgkit
    >>> imgkit.studio()                      # the form, in a notebook cell
    >>> a, b = imgkit.Studio(), imgkit.Studio(quality="low")   # independent forms
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgkit.session import Session
    from imgkit.widgets._studio import StudioApp

__all__ = ["Studio", "studio"]


class Studio:
    """The GPT Image 1 playground as a notebook form.

    A banner (sandbox or live, model, price sheet, balance), the prompt with a character
    counter (Ctrl/Cmd+Enter generates), model, size, quality and the number of images (out
    of range refused out loud), the controls the model adds (for gpt-image-2: resolution
    tier, ratio or custom ``WxH`` size, background, a mask for edits; previews where the
    first provider streams),
    reference images (picker, drop, paste, URLs or local paths), a live price with its
    formula, a Generate button with the price on it that never blocks the kernel and asks
    before a second charge within ``confirm_within`` seconds, one card with a progress bar
    per run, a preview of the latest run (elapsed time, time left, Cancel; then a gallery
    with a lightbox and downloads), the last 20 runs of the ledger (star, hide, a filter)
    and the ``imgkit.generate(...)`` call equal to the form. A saved notebook keeps a static
    snapshot beside the form (last images, a table of runs) for where the form cannot load.
    Build as many as you like: each form is independent, all share the ledger.

    ``Studio(...)`` loads ipywidgets and returns an instance of the implementation class
    (a subclass of this one), so ``import imgkit`` stays light.

    Args:
        session: the session runs go to; the default session (:func:`imgkit.get_session`)
            at each use when None.
        prompt: the initial prompt (the seed's sample by default).
        model: a name from :data:`imgkit.request.MODELS`.
        size: ``1:1``, ``2:3``, ``3:2`` or a pixel form; for gpt-image-2 also ``auto``, its
            other ratios or a custom ``WxH``.
        quality: ``low``, ``medium`` or ``high``.
        n: images per run.
        resolution: the tier of a ratio size (``1K``, ``2K``, ``4K``; gpt-image-2).
        background: ``opaque``, ``transparent`` (or ``auto`` on OpenAI), where the model has one.
        previews: partial images to stream (0-3) where the first provider streams.
        images: initial reference images (URLs, paths, bytes or PIL images).
        warn_credits: a run estimated above this many credits shows a warning.
        history: how many runs the History panel shows (the ledger keeps them all).
        updates_per_second: the most widget updates per run and second (progress events
            beyond that are coalesced; the kernel's message rate limit counts them).
        confirm_within: a click on Generate this many seconds after a run started asks
            before starting another (0: never asks).
        clock: a monotonic clock for that guard (injected by tests).
        local_paths: read typed local paths as references; False on a shared page
            (:func:`imgkit.app.page`), which takes uploads and http(s) URLs only.
        page_budget: the most credits this form may start runs for, counted at their
            estimates (None: no cap); ``imgkit app --budget-credits`` sets it per page.

    Example:
        >>> s = imgkit.Studio(quality="low", size="3:2")
        >>> s                                  # in a notebook: the form
        >>> task = s.generate()                # what the Generate button does
        >>> await s.wait()                     # the runs in flight, as GenerationResults
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Studio:
        if cls is Studio:
            from imgkit.widgets._studio import StudioApp

            cls = StudioApp
        return super().__new__(cls)


def studio(session: Session | None = None, **options: Any) -> StudioApp:
    """Show the studio form; takes :class:`Studio`'s arguments.

    Example:
        >>> import imgkit
        >>> imgkit.studio()
    """
    from imgkit.widgets._studio import StudioApp

    return StudioApp(session, **options)
