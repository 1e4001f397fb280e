"""Run cards, the preview panel and the event throttle: they render run records, nothing more.

A :class:`RunCard` is one run in the History panel: thumbnail, prompt, tier, size, cost,
status, a progress bar while it runs, the gateway's error code with a plain-language hint
when it fails, and buttons to show it, re-use its settings or run it again. The
:class:`Preview` shows one run large: its images in a :class:`~imgkit.widgets._gallery.Gallery`
(column-wide, a lightbox, downloads), cost, time and provider. :class:`Throttle` sits between a run's events and
these widgets so that a chatty run cannot flood the kernel's message rate limit. Their words
come from :mod:`imgkit.widgets._present`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import ipywidgets as w

from imgkit.request import JobEvent, RunRecord
from imgkit.widgets._common import esc, running_loop
from imgkit.widgets._gallery import Gallery
from imgkit.widgets._kernel_image import KernelImage
from imgkit.widgets._present import (
    CANCELLED_NOTE,
    HIDDEN_TAG,
    INTERRUPTED_NOTE,
    STARRED_TAG,
    card_details,
    describe_error,
    hide_label,
    is_cancelled,
    preview_details,
    progress_line,
    run_meta,
    star_label,
    status_badge,
    title_html,
    when,
)

__all__ = ["Preview", "RunCard", "Throttle"]

log = logging.getLogger("imgkit")

_BAR_STYLES = {"completed": "success", "failed": "danger", "unknown": "warning"}



class Throttle:
    """Forward run events to their renderers at most ``per_second`` times a second in all.

    One throttle serves every run of a studio, so the kernel's message rate stays bounded
    however many runs are in flight. Events that arrive too soon are held, the newest per
    run winning, and rendered together when the interval has passed (on the running loop).
    A terminal event is rendered at once (with whatever is held). Without a running loop,
    every event is rendered immediately.

    Args:
        render: the default renderer, for events pushed without one.
        per_second: the most render rounds per second (0: no limit).
        clock: a monotonic clock (injected by tests).

    Example:
        >>> throttle = Throttle(per_second=10)
        >>> await session.agenerate(..., on_event=lambda e: throttle(e, card.render))
    """

    def __init__(
        self,
        render: Callable[[JobEvent], object] | None = None,
        *,
        per_second: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._render = render
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._clock = clock
        self._last = -math.inf
        self._held: dict[str, tuple[JobEvent, Callable[[JobEvent], object]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self.received = 0
        self.rendered = 0
        self.rounds = 0

    def __call__(self, event: JobEvent, render: Callable[[JobEvent], object] | None = None) -> None:
        chosen = render or self._render
        if chosen is None:
            raise ValueError("Throttle: no renderer for this event")
        self.received += 1
        self._held[event.run_id] = (event, chosen)
        terminal = event.record.terminal if event.record is not None else False
        wait = self._last + self._interval - self._clock()
        if terminal or wait <= 0:
            self.flush()
            return
        loop = running_loop()
        if loop is None:
            self.flush()
            return
        if self._timer is None or self._timer_loop is not loop:
            self._timer = loop.call_later(wait, self.flush)
            self._timer_loop = loop

    def flush(self) -> None:
        """Render what is held now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_loop = None
        held, self._held = self._held, {}
        if not held:
            return
        self._last = self._clock()
        self.rounds += 1
        for event, render in held.values():
            self.rendered += 1
            try:
                render(event)
            except Exception:  # one broken card must not starve the others
                log.exception("rendering run %s failed", event.run_id)


def _pixels(path: Path) -> tuple[int, int] | None:
    """An image file's width and height (its header only), or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # a missing or broken file is left out of the gallery
        return None


# --- the card ----------------------------------------------------------------------------

RecordAction = Callable[[RunRecord], object]


class RunCard:
    """One run: thumbnail, prompt, tier, size, cost, status, progress, error and actions.

    Args:
        data_dir: the session's data directory (files and thumbnails are relative to it).
        on_show, on_use, on_rerun: called with the card's record by its buttons.
        on_star, on_hide: called with the card's record by the star and hide buttons (they
            toggle the run's ``starred`` and ``hidden`` tags).
        title: what to show before the run has a record (a prompt).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        on_show: RecordAction | None = None,
        on_use: RecordAction | None = None,
        on_rerun: RecordAction | None = None,
        on_star: RecordAction | None = None,
        on_hide: RecordAction | None = None,
        title: str = "",
    ) -> None:
        self.data_dir = data_dir
        self.record: RunRecord | None = None
        self.interrupted = False
        self.title = title
        self._thumb_key: str | None = None
        # Fetched from the kernel when drawn: no thumbnail in the notebook's widget state.
        self.thumb = KernelImage(
            img_class="imgkit-card-thumb", img_style="width:64px;height:64px;object-fit:cover;border-radius:4px",
            layout=w.Layout(width="64px", height="64px"),
        )
        self.placeholder = w.HTML(
            '<div style="width:64px;height:64px;border-radius:4px;background:#eceff1;'
            'display:flex;align-items:center;justify-content:center;color:#90a4ae">…</div>'
        )
        self.thumb_box = w.Box([self.placeholder], layout=w.Layout(flex="0 0 auto"))
        self.text = w.HTML(title_html(title, "starting"))
        self.text.add_class("imgkit-card-text")
        self.progress = w.IntProgress(
            value=0, min=0, max=100, bar_style="info", layout=w.Layout(width="140px", height="14px")
        )
        self.progress.add_class("imgkit-card-progress")
        self.error = w.HTML(layout=w.Layout(display="none"))
        self.error.add_class("imgkit-card-error")
        buttons = []
        self.star: w.Button | None = None
        self.hide: w.Button | None = None
        for attr, label, tip, action, cls in (
            (None, "Show", "show this run in the preview", on_show, "imgkit-card-show"),
            (None, "Use", "put this run's settings in the form", on_use, "imgkit-card-use"),
            (None, "Re-run", "run these settings again", on_rerun, "imgkit-card-rerun"),
            ("star", star_label(False), "star this run (a tag in the ledger: it stays after a restart)", on_star,
             "imgkit-card-star"),
            ("hide", hide_label(False), "hide this run from the list (a tag; 'show hidden' lists it again)", on_hide,
             "imgkit-card-hide"),
        ):
            if action is None:
                continue
            button = w.Button(description=label, tooltip=tip, layout=w.Layout(width="auto", height="26px"))
            button.add_class(cls)
            button.on_click(self._bind(action))
            button.disabled = True
            if attr is not None:
                setattr(self, attr, button)
            buttons.append(button)
        self.buttons = buttons
        # The text keeps at least 240 px: on a narrow page the buttons wrap under it.
        body = w.VBox([self.text, self.progress, self.error], layout=w.Layout(flex="1 1 240px", min_width="0"))
        actions = w.HBox(buttons, layout=w.Layout(flex="0 0 auto", align_items="flex-start", flex_flow="row wrap"))
        self.widget = w.HBox(
            [self.thumb_box, body, actions],
            layout=w.Layout(
                border="1px solid #e0e0e0", padding="4px", margin="2px 0", align_items="flex-start", width="100%",
                flex_flow="row wrap",
            ),
        )
        self.widget.add_class("imgkit-card")

    def _bind(self, action: RecordAction) -> Callable[[w.Button], None]:
        def clicked(_: w.Button) -> None:
            if self.record is not None:
                action(self.record)

        return clicked

    @property
    def run_id(self) -> str | None:
        return self.record.run_id if self.record is not None else None

    def fail_before_sending(self, message: str) -> None:
        """Show that the run was refused before anything was sent."""
        self.text.value = title_html(self.title, status_badge("not sent"))
        self.progress.layout.display = "none"
        self.error.value = esc(message)
        self.error.layout.display = None

    def tell(self, message: str) -> None:
        """Show a passing note under the bar of a running run (a retry); the next status
        change replaces it."""
        self.error.value = esc(message)
        self.error.layout.display = None

    def update(self, record: RunRecord, *, interrupted: bool = False) -> None:
        """Render ``record`` (only what changed is sent to the browser)."""
        if record == self.record and interrupted == self.interrupted:
            return
        self.record = record
        self.interrupted = interrupted
        cancelled = is_cancelled(record)
        interrupted = interrupted or cancelled
        status = "cancelled" if cancelled else "interrupted" if interrupted else record.status
        details = card_details(record) + when(record)
        self.text.value = title_html(record.prompt, status_badge(status, record.progress), details)
        running = not record.terminal and not interrupted
        self.progress.layout.display = None if running else "none"
        if running:
            # submitting/pending show a full pale bar, so "waiting" reads differently from 0 %.
            self.progress.value = record.progress if record.status == "processing" else 0
            self.progress.bar_style = "info"
        else:
            self.progress.value = 100 if record.status == "completed" else record.progress
            self.progress.bar_style = _BAR_STYLES.get(record.status, "")
        if record.status in ("failed", "unknown"):
            self.error.value = describe_error(record)
            self.error.layout.display = None
        elif interrupted:
            self.error.value = CANCELLED_NOTE if cancelled else INTERRUPTED_NOTE
            self.error.layout.display = None
        else:
            self.error.layout.display = "none"
        for button in self.buttons:
            button.disabled = False
        if self.star is not None:
            starred = STARRED_TAG in record.tags
            self.star.description = star_label(starred)
            self.star.button_style = "warning" if starred else ""
        if self.hide is not None:
            self.hide.description = hide_label(HIDDEN_TAG in record.tags)
        self._update_thumb(record)

    def _update_thumb(self, record: RunRecord) -> None:
        key = record.thumbs[0] if record.thumbs else None
        if key == self._thumb_key:
            return
        self._thumb_key = key
        path = self.data_dir / key if key else None
        if key and path is not None and path.is_file():
            self.thumb.show(path, key)
            self.thumb_box.children = (self.thumb,)
        else:
            self.thumb_box.children = (self.placeholder,)

    def set_shown(self, shown: bool) -> None:
        """Mark the card whose run the preview shows."""
        if shown:
            self.widget.add_class("imgkit-card-shown")
            self.widget.layout.border = "2px solid #1976d2"
        else:
            self.widget.remove_class("imgkit-card-shown")
            self.widget.layout.border = "1px solid #e0e0e0"


# --- the preview -------------------------------------------------------------------------


class Preview:
    """The latest run, large: status and progress, then its images in a gallery with cost,
    time and provider.

    Args:
        data_dir: returns the session's data directory (files are relative to it).
    """

    def __init__(self, data_dir: Callable[[], Path]) -> None:
        self._data_dir = data_dir
        self.record: RunRecord | None = None
        self.header = w.HTML()
        self.header.add_class("imgkit-preview-header")
        # The empty preview: a frame in the shape of the chosen size (the controller sets it).
        self.frame = w.HTML('<span style="opacity:.7">Click Generate to see preview</span>')
        self.frame.add_class("imgkit-preview-frame")
        # The latest partial image of a streamed run, fetched from the kernel like the gallery's.
        self.partial = KernelImage(
            img_class="imgkit-preview-partial", img_style="max-width:100%;max-height:512px;border-radius:4px",
            layout=w.Layout(display="none"),
        )
        self.partials = 0
        self.progress = w.IntProgress(
            value=0, min=0, max=100, bar_style="info", layout=w.Layout(width="96%", display="none")
        )
        self.progress.add_class("imgkit-preview-progress")
        self.timing = w.HTML()
        self.timing.add_class("imgkit-preview-timing")
        self.cancel = w.Button(
            description="Cancel", icon="stop", tooltip="stop following this run (the service may still bill it)",
            layout=w.Layout(width="auto", display="none"),
        )
        self.cancel.add_class("imgkit-cancel")
        self.error = w.HTML(layout=w.Layout(display="none"))
        self.error.add_class("imgkit-preview-error")
        self._started: float | None = None
        # The images travel on demand, never in the widget state (see _gallery).
        self.gallery = Gallery(layout=w.Layout(width="100%"))
        self.gallery.add_class("imgkit-preview-gallery")
        running = w.HBox([self.timing, self.cancel], layout=w.Layout(align_items="center", width="100%"))
        self.widget = w.VBox(
            [self.header, self.frame, self.progress, running, self.error, self.partial, self.gallery],
            layout=w.Layout(width="100%"),
        )
        self.widget.add_class("imgkit-preview")
        self._shown_files: tuple[str, ...] | None = None

    def set_frame(self, html: str) -> None:
        """The empty preview's content (an aspect frame); shown until a run is shown."""
        if html != self.frame.value:
            self.frame.value = html

    def show_partial(self, data: bytes, key: str) -> None:
        """A partial image of the shown run, as the provider streamed it."""
        self.partials += 1
        self.partial.show_bytes(data, key)
        self.partial.layout.display = None

    def _hide_partial(self) -> None:
        if self.partial.layout.display != "none":
            self.partial.show_bytes(None, "")
            self.partial.layout.display = "none"
        self.partials = 0

    def starting(self, prompt: str) -> None:
        """A run was asked for and has no record yet."""
        self.record = None
        self.frame.layout.display = "none"
        self._hide_partial()
        self._started = time.time()
        self.header.value = title_html(prompt, status_badge("starting"))
        self.progress.value = 0
        self.progress.layout.display = None
        self.cancel.layout.display = None
        self.cancel.disabled = False
        self.tick()
        self.error.layout.display = "none"
        self._set_images(())

    def tick(self) -> None:
        """Re-render the elapsed time and the estimate of time left."""
        value = progress_line(self.record, time.time(), started=self._started)
        if value != self.timing.value:
            self.timing.value = f'<span style="font-size:90%">{value}</span>' if value else ""

    def refused(self, message: str) -> None:
        self.cancel.layout.display = "none"
        self.timing.value = ""
        self.progress.layout.display = "none"
        self.error.value = esc(message)
        self.error.layout.display = None

    def show(self, record: RunRecord) -> None:
        """Render ``record``: progress while it runs, then its images or its error."""
        if record == self.record:
            return
        if self.record is None or self.record.run_id != record.run_id or record.terminal:
            self._hide_partial()
        self.record = record
        self.frame.layout.display = "none"
        details = preview_details(record)
        status = "cancelled" if is_cancelled(record) else record.status
        self.header.value = title_html(record.prompt, status_badge(status, record.progress), details)
        running = not record.terminal and not is_cancelled(record)
        self.progress.layout.display = None if running else "none"
        self.cancel.layout.display = None if running else "none"
        if is_cancelled(record):
            self.error.value = CANCELLED_NOTE
        done = 100 if record.status == "downloading" else 0
        self.progress.value = record.progress if record.status == "processing" else done
        if record.status in ("failed", "unknown"):
            self.error.value = describe_error(record)
            self.error.layout.display = None
        elif is_cancelled(record):
            self.error.layout.display = None
        else:
            self.error.layout.display = "none"
        self.tick()
        self._set_images(record.files if record.status == "completed" else ())

    def _set_images(self, files: tuple[str, ...]) -> None:
        # Two runs can share files (the store keeps one copy of equal images): key by run too.
        shown = (self.record.run_id if self.record is not None else "", *files)
        if shown == self._shown_files:
            return
        self._shown_files = shown
        record = self.record
        if record is None or not files:
            self.gallery.show("", (), ())
            return
        root = self._data_dir()
        paths, sizes = [], []
        for rel in files:
            size = _pixels(root / rel)
            if size is not None:
                paths.append(root / rel)
                sizes.append(size)
        self.gallery.meta = run_meta(record)
        self.gallery.show(record.run_id, paths, sizes, prompt=record.prompt)
