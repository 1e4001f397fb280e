"""The studio: the seed's playground form as ipywidgets, over a :class:`~imgkit.Session`.

The form only collects values and renders what the core says about them:

- validation is :meth:`ImageRequest.build` (the Generate button is disabled while it
  refuses, and its message is shown); reference images are checked one by one with
  :meth:`ReferenceImage.coerce` as they are added, so a 17th file, a wrong format (by content)
  or an oversized file is named at once;
- the price is :meth:`Session.estimate`, with the price sheet's formula; budget warnings use
  ``Session.remaining_budget()`` when the session has one;
- a click schedules :meth:`Session.agenerate` on the kernel's running loop and returns at
  once; the run's :class:`JobEvent` objects (delivered on that loop) are throttled and
  rendered into its card, the preview and the History panel, which reads the ledger.

Two Jupyter traps shape the reference-image area. A browser upload reaches the kernel as one
websocket message, and a Jupyter server drops messages over 10 MiB by default, silently
(Tornado's ``websocket_max_message_size``): ``make lab`` raises it, the form says so, and
the URL field also takes local file paths. Widget updates count against the kernel's
message rate limit, so each run renders at most ``updates_per_second`` times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import io
import logging
import time
import warnings
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ipywidgets as w

from imgkit.errors import ImgkitError, ValidationError
from imgkit.pricing import Estimate, get_sheet
from imgkit.providers.base import Balance
from imgkit.request import (
    DEFAULT_MODEL,
    MB,
    MODELS,
    ImageRequest,
    JobEvent,
    ModelProfile,
    ReferenceImage,
    RunRecord,
    normalize_size,
)
from imgkit.session import GenerationResult, Session, get_session
from imgkit.widgets import Studio
from imgkit.widgets._cards import Preview, RunCard, Throttle, fmt_credits, size_label

__all__ = ["SAMPLE_PROMPT", "StudioApp"]

log = logging.getLogger("imgkit")

#: The seed's sample prompt.
SAMPLE_PROMPT = "A beautiful colorful sunset over the ocean"
#: Jupyter's default limit on one websocket message (Tornado), which uploads must fit in.
DEFAULT_WEBSOCKET_LIMIT = 10 * MB

# Run ids a studio of this process is following right now, across studios: a run that is
# unfinished in the ledger but followed by nobody here was left behind by an earlier kernel.
_FOLLOWING: set[str] = set()
_PROCESS_MARK = time.time()

# Widgets' HTML boxes use the inline-control line height (28 px), which spreads multi-line
# text; tighten it inside the studio only. (An HTML widget's <style> applies page-wide, so
# every rule is scoped to .imgkit-studio.)
_CSS = """<style>
.imgkit-studio .widget-html-content { line-height: 1.45; }
.imgkit-studio .imgkit-quality .widget-toggle-button { width: auto; min-width: 88px; padding: 0 10px; }
.imgkit-studio .imgkit-ref-remove { padding: 0; min-width: 0; }
.imgkit-studio .imgkit-viewer code { word-break: break-all; }
</style>"""

_RED = "#c62828"
_ORANGE = "#ef6c00"


def _esc(text: object) -> str:
    return html.escape(str(text))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _size_options(profile: ModelProfile) -> list[tuple[str, str]]:
    if profile.ratio_sizes:
        return [(size_label(pixels), pixels) for pixels in profile.ratio_sizes.values()]
    options = []
    for size in profile.sizes:
        a, _, b = size.partition(":")
        if a.isdigit() and b.isdigit():
            shape = "Square" if a == b else ("Portrait" if int(a) < int(b) else "Landscape")
            options.append((f"{shape} {size}", size))
        else:
            options.append((size, size))
    return options


def _quality_options(profile: ModelProfile, sheet: object) -> list[tuple[str, str]]:
    """Tier names with their multiplier on a per-image sheet; plain names on a per-token one."""
    multipliers = getattr(sheet, "quality", None)
    if not isinstance(multipliers, Mapping):
        return [(q, q) for q in profile.qualities]
    return [(f"{q} ×{multipliers[q]:g}" if q in multipliers else q, q) for q in profile.qualities]


def _human_size(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB else f"{max(size / 1024, 0.1):.1f} KB"


def _thumbnail(ref: ReferenceImage) -> bytes | None:
    """A small JPEG of a local reference image, for its chip (None when it cannot be read)."""
    if ref.url is not None:
        return None
    from PIL import Image

    source: Any = io.BytesIO(ref.data) if ref.data is not None else ref.path
    try:
        with warnings.catch_warnings():
            # Only a 96 px preview is made; the service judges large images itself.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                im.draft("RGB", (192, 192))
                im.thumbnail((96, 96))
                out = io.BytesIO()
                im.convert("RGB").save(out, "JPEG", quality=80)
                return out.getvalue()
    except Exception:  # an undecodable preview must not stop the form
        return None


class StudioApp(Studio):
    """The studio's implementation; build it with :func:`imgkit.studio` or :class:`imgkit.Studio`.

    Its widgets are public attributes (``prompt``, ``model``, ``size``, ``quality``, ``n``,
    ``upload``, ``reference_field``, ``generate_button``, ``price``, ``message``,
    ``counter``, ...) so a test or a user can set values and click, and every action is a
    method: :meth:`generate`, :meth:`wait`, :meth:`add_references`, :meth:`use`,
    :meth:`rerun`, :meth:`resume`.
    """

    def __init__(
        self,
        session: Session | None = None,
        *,
        prompt: str = SAMPLE_PROMPT,
        model: str = DEFAULT_MODEL,
        size: str = "1:1",
        quality: str = "medium",
        n: int = 1,
        images: Iterable[Any] = (),
        warn_credits: float = 20.0,
        history: int = 20,
        updates_per_second: float = 10.0,
    ) -> None:
        # Bad arguments fail here, with the core's message, not as a half-drawn form.
        checked = ImageRequest.build(prompt or "-", model=model, size=size, quality=quality, n=n)
        self._session = session
        self.warn_credits = warn_credits
        self.history_limit = history
        self.updates_per_second = updates_per_second
        self.results: list[GenerationResult] = []
        self._refs: list[ReferenceImage] = []
        self._runs: set[asyncio.Task[GenerationResult | None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._cards: dict[str, RunCard] = {}
        self._starting: list[RunCard] = []
        self._latest: RunCard | None = None
        self._balance: Balance | None = None
        self._balance_note = ""
        self._holding = False
        # One throttle for every run of this form: the kernel's message rate limit counts
        # widget updates, so the form renders at most updates_per_second rounds a second.
        self._throttle = Throttle(per_second=updates_per_second)
        profile = MODELS[checked.model]
        sheet = get_sheet(self.session.price_sheet)

        # --- widgets ---------------------------------------------------------------------
        self.log = w.Output(layout=w.Layout(max_height="160px", overflow="auto"))
        self.log.add_class("imgkit-log")
        self.banner = w.HTML()
        self.banner.add_class("imgkit-banner")

        self.prompt = w.Textarea(
            value=prompt,
            placeholder=SAMPLE_PROMPT,
            rows=4,
            layout=w.Layout(width="100%"),
        )
        self.prompt.add_class("imgkit-prompt")
        self.prompt_count = w.HTML()
        self.prompt_count.add_class("imgkit-prompt-count")

        narrow = {"description_width": "64px"}
        self.model = w.Dropdown(
            options=list(MODELS), value=checked.model, description="Model", style=narrow,
            layout=w.Layout(width="280px"),
        )
        self.model.add_class("imgkit-model")
        self.size = w.Dropdown(
            options=_size_options(profile), value=checked.size, description="Size", style=narrow,
            layout=w.Layout(width="320px"),
        )
        self.size.add_class("imgkit-size")
        self.quality = w.ToggleButtons(
            options=_quality_options(profile, sheet),
            value=checked.quality,
            tooltips=["fastest, cheapest", "imgkit's default", "slowest, best (the API's own default)"],
            style={"button_width": "auto"},
            layout=w.Layout(width="auto"),
        )
        self.quality.add_class("imgkit-quality")
        self.n = w.IntSlider(
            value=checked.n, min=1, max=max(profile.max_n, 1), description="n", style=narrow,
            layout=w.Layout(width="320px"),
        )
        self.n.add_class("imgkit-n")

        self.upload = w.FileUpload(
            accept=",".join([".jpeg", ".jpg", ".png", ".webp", "image/jpeg", "image/png", "image/webp"]),
            multiple=True,
            description="Add images",
            icon="upload",
            layout=w.Layout(width="auto"),
        )
        self.upload.add_class("imgkit-upload")
        self.reference_field = w.Text(
            placeholder="https://example.com/image1.png  or  /path/to/local.png  (Enter to add)",
            continuous_update=False,
            layout=w.Layout(flex="1 1 auto", width="auto"),
        )
        self.reference_field.add_class("imgkit-ref-field")
        self.reference_add = w.Button(
            description="Add", tooltip="add this URL or local path", layout=w.Layout(width="auto")
        )
        self.reference_add.add_class("imgkit-ref-add")
        self.reference_clear = w.Button(description="Remove all", layout=w.Layout(width="auto", display="none"))
        self.reference_clear.add_class("imgkit-ref-clear")
        self.references = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.references.add_class("imgkit-refs")
        self.reference_message = w.HTML()
        self.reference_message.add_class("imgkit-ref-message")
        self.reference_note = w.HTML()
        self.reference_note.add_class("imgkit-ref-note")
        self.mode = w.HTML()
        self.mode.add_class("imgkit-mode")

        self.price = w.HTML()
        self.price.add_class("imgkit-price")
        self.price_warning = w.HTML()
        self.price_warning.add_class("imgkit-price-warning")
        self.generate_button = w.Button(
            description="Generate", button_style="primary", icon="paint-brush",
            tooltip="start a run; the kernel stays free while it runs",
            layout=w.Layout(width="160px", height="36px"),
        )
        self.generate_button.add_class("imgkit-generate")
        self.message = w.HTML()
        self.message.add_class("imgkit-message")

        self.preview = Preview(lambda: self.session.data_dir)
        self.counter = w.HTML()
        self.counter.add_class("imgkit-counter")
        self.refresh_button = w.Button(icon="refresh", tooltip="read the ledger again", layout=w.Layout(width="36px"))
        self.refresh_button.add_class("imgkit-refresh")
        self.resume_button = w.Button(
            description="Resume", icon="play", button_style="warning",
            tooltip="finish runs an earlier kernel left unfinished (polls; never resubmits)",
            layout=w.Layout(width="auto", display="none"),
        )
        self.resume_button.add_class("imgkit-resume")
        self.history = w.VBox(layout=w.Layout(width="100%"))
        self.history.add_class("imgkit-history")

        def section(title: str) -> w.HTML:
            return w.HTML(f'<div style="font-weight:600;margin-top:6px">{_esc(title)}</div>')

        form = w.VBox(
            [
                section("Prompt"),
                self.prompt,
                self.prompt_count,
                self.model,
                self.size,
                # A label of its own: ToggleButtons wraps its buttons under a description.
                w.HBox(
                    [
                        w.HTML(
                            '<div style="text-align:right;padding-right:8px">Quality</div>',
                            layout=w.Layout(width="72px", flex="0 0 auto"),
                        ),
                        self.quality,
                    ],
                    layout=w.Layout(align_items="center"),
                ),
                self.n,
                section("Reference images (optional)"),
                w.HBox([self.upload, self.reference_clear]),
                w.HBox([self.reference_field, self.reference_add], layout=w.Layout(width="100%")),
                self.reference_note,
                self.references,
                self.reference_message,
                self.mode,
                section("Price"),
                self.price,
                self.price_warning,
                w.HBox([self.generate_button], layout=w.Layout(margin="6px 0")),
                self.message,
            ],
            layout=w.Layout(flex="1 1 380px", min_width="340px", padding="0 12px 0 0"),
        )
        form.add_class("imgkit-form")
        right = w.VBox(
            [section("Preview"), self.preview.widget],
            layout=w.Layout(flex="1 1 320px", min_width="300px"),
        )
        history_head = w.HBox(
            [
                w.HTML(
                    f'<span style="font-weight:600">History</span> '
                    f'<span style="opacity:.7">(last {self.history_limit}; older runs stay in '
                    "the ledger: <code>imgkit.runs()</code>)</span>"
                ),
                self.counter,
                self.refresh_button,
                self.resume_button,
            ],
            layout=w.Layout(align_items="center", justify_content="space-between", width="100%", margin="8px 0 2px"),
        )
        self.widget = w.VBox(
            [
                w.HTML(_CSS, layout=w.Layout(height="0px", overflow="hidden", margin="0")),
                self.banner,
                w.HBox([form, right], layout=w.Layout(flex_flow="row wrap", width="100%")),
                history_head,
                self.history,
                self.log,
            ],
            layout=w.Layout(width="100%", padding="4px"),
        )
        self.widget.add_class("imgkit-studio")

        # --- events (by name; errors land in the log widget) -----------------------------
        capture = self.log.capture()
        self.prompt.observe(capture(self._on_field), names="value")
        self.size.observe(capture(self._on_field), names="value")
        self.quality.observe(capture(self._on_field), names="value")
        self.n.observe(capture(self._on_field), names="value")
        self.model.observe(capture(self._on_model), names="value")
        self.upload.observe(capture(self._on_upload), names="value")
        self.reference_field.observe(capture(self._on_reference_field), names="value")
        self.reference_add.on_click(capture(lambda _: self._add_from_field()))
        self.reference_clear.on_click(capture(lambda _: self.clear_references()))
        self.generate_button.on_click(capture(lambda _: self.generate()))
        self.refresh_button.on_click(capture(lambda _: self.refresh_history()))
        self.resume_button.on_click(capture(lambda _: self.resume()))

        self._render_reference_note()
        if images:
            self.add_references(*images)
        self._refresh()
        self.refresh_history()
        self.refresh_balance()

    # --- display -------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return (
            f"<imgkit.Studio {self.model.value} {self.size.value} {self.quality.value} n={self.n.value};"
            f" {len(self._runs)} running>"
        )

    @property
    def session(self) -> Session:
        """The session runs go to (the default session at each use, unless one was given)."""
        return self._session if self._session is not None else get_session()

    # --- the form's values ---------------------------------------------------------------

    @property
    def profile(self) -> ModelProfile:
        return MODELS[self.model.value]

    @property
    def reference_images(self) -> tuple[ReferenceImage, ...]:
        return tuple(self._refs)

    def params(self) -> dict[str, Any]:
        """The form as :meth:`Session.agenerate` keyword arguments (plus ``prompt``)."""
        return {
            "prompt": self.prompt.value,
            "model": self.model.value,
            "size": self.size.value,
            "quality": self.quality.value,
            "n": self.n.value,
            "images": tuple(self._refs),
        }

    def request(self) -> ImageRequest:
        """The form as a validated request; raises :class:`imgkit.ValidationError`."""
        p = self.params()
        return ImageRequest.build(p.pop("prompt"), **p)

    def estimate(self) -> Estimate:
        """The price of the form's settings (raises when the sheet does not price the model)."""
        p = self.params()
        return self.session.estimate(quality=p["quality"], size=p["size"], n=p["n"], model=p["model"])

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        """Change several fields with one re-render at the end."""
        outer = self._holding
        self._holding = True
        try:
            yield
        finally:
            self._holding = outer
        if not outer:
            self._refresh()

    # --- reactions -----------------------------------------------------------------------

    def _on_field(self, change: dict[str, Any]) -> None:
        self._refresh()

    def _on_model(self, change: dict[str, Any]) -> None:
        old = MODELS.get(change["old"]) if change.get("old") else None
        profile = self.profile
        with self._hold():
            current = self.size.value
            if old is not None:
                # Keep the shape when the new model names sizes differently (1024x1024 <-> 1:1).
                ratio_of = {pixels: ratio for ratio, pixels in old.ratio_sizes.items()}
                current = ratio_of.get(current, current)
            options = _size_options(profile)
            wanted = None
            for candidate in (current, self.size.value):
                try:
                    wanted = normalize_size(candidate, profile.name)
                except ValidationError:
                    continue
                break
            self.size.options = options
            values = [v for _, v in options]
            self.size.value = wanted if wanted in values else values[0]
            self.n.max = max(profile.max_n, 1)
            self.n.disabled = profile.max_n <= 1
            if len(self._refs) > profile.max_images:
                self.reference_message.value = self._problem(
                    f"{profile.name} takes at most {profile.max_images} reference images; remove "
                    f"{len(self._refs) - profile.max_images}"
                )
            self._render_reference_note()

    def _refresh(self) -> None:
        """Re-render what depends on the fields: counter, mode, validation, price, banner."""
        if self._holding:
            return
        profile = self.profile
        length = len(self.prompt.value)
        over = length > profile.prompt_max_chars
        color = _RED if over else "inherit"
        note = f" · {length - profile.prompt_max_chars} over the limit" if over else ""
        self.prompt_count.value = (
            f'<span style="color:{color};font-size:90%">{length} / {profile.prompt_max_chars} characters'
            f"{note}</span>"
        )
        count = len(self._refs)
        mode = ImageRequest(prompt="", images=tuple(self._refs)).mode
        self.mode.value = (
            f'Mode: <b class="imgkit-mode-name">{mode}</b>'
            + (f" ({count} reference image{'s' if count != 1 else ''})" if count else "")
        )
        self.reference_clear.layout.display = None if count else "none"
        try:
            self.request()
        except ValidationError as exc:
            self.generate_button.disabled = True
            self.message.value = self._problem(f"Cannot generate yet: {exc}")
        else:
            self.generate_button.disabled = False
            if self.message.value.startswith('<span class="imgkit-problem"'):
                self.message.value = ""
        self._render_price()
        self._render_banner()

    @staticmethod
    def _problem(text: str) -> str:
        return f'<span class="imgkit-problem" style="color:{_RED}">{_esc(text)}</span>'

    def _render_price(self) -> None:
        try:
            est = self.estimate()
        except ValidationError:
            self.price.value = '<span style="opacity:.7">— (fix the form to see the price)</span>'
            self.price_warning.value = ""
            return
        except ImgkitError as exc:  # the sheet does not price this model
            self.price.value = f'<span style="color:{_ORANGE}">no estimate: {_esc(exc)}</span>'
            self.price_warning.value = ""
            return
        # The sheet's formula, with the total as exact as the estimate's (its text rounds more).
        factors = est.formula.rpartition(" = ")[0] or est.formula
        formula = f"{factors.replace(' x ', ' × ')} = {fmt_credits(est.credits)} credits"
        per_image = isinstance(getattr(get_sheet(est.sheet), "quality", None), Mapping)
        terms = "base × quality × size × n = " if per_image else ""
        self.price.value = (
            f'<span class="imgkit-price-total" style="font-size:120%"><b>{fmt_credits(est.credits)} credits</b>'
            f" · ${est.usd:.4f} · ¥{est.cny:.4f}</span><br>"
            f'<span style="font-size:90%;opacity:.85">{terms}'
            f"{_esc(formula)}<br>price sheet <code>{_esc(est.sheet)}</code></span>"
        )
        warnings_ = []
        if self.warn_credits is not None and est.credits > self.warn_credits:
            warnings_.append(f"above the per-run threshold of {fmt_credits(self.warn_credits)} credits")
        remaining = self._remaining_budget()
        if remaining is not None and est.credits > remaining:
            warnings_.append(f"more than the remaining budget ({fmt_credits(remaining)} credits left)")
        balance = self._balance
        if balance is not None and not balance.unlimited and est.credits > balance.remaining_credits:
            left = fmt_credits(balance.remaining_credits)
            warnings_.append(f"more than the balance the service reports ({left} credits)")
        self.price_warning.value = (
            f'<span class="imgkit-warning" style="color:{_ORANGE}">⚠ This run costs '
            f"{fmt_credits(est.credits)} credits: "
            f"{_esc('; '.join(warnings_))}</span>"
            if warnings_
            else ""
        )

    def _remaining_budget(self) -> float | None:
        remaining = getattr(self.session, "remaining_budget", None)
        if remaining is None:
            return None
        try:
            value = remaining()
        except ImgkitError as exc:
            log.warning("remaining budget unavailable: %s", exc)
            return None
        return None if value is None else float(value)

    def _render_banner(self) -> None:
        s = self.session
        sheet = get_sheet(s.price_sheet)
        if s.sandbox:
            badge = f'<b style="background:{_ORANGE};color:white;padding:1px 6px;border-radius:3px">SANDBOX</b>'
            where = "placeholder images, no key, nothing is charged"
        else:
            badge = '<b style="background:#2e7d32;color:white;padding:1px 6px;border-radius:3px">LIVE</b>'
            where = _esc(s.base_url) + (f" · key …{_esc(s.key_hint)}" if s.key_hint else "")
        parts = [
            f"{badge} {where}",
            f"model <b>{_esc(self.model.value)}</b>",
            f'price sheet <code title="{_esc(sheet.source)}">{_esc(sheet.name)}</code> ({_esc(sheet.date)})',
        ]
        balance = self._balance
        if balance is not None:
            parts.append(
                "balance <b>unlimited</b>"
                if balance.unlimited
                else f'balance <b class="imgkit-balance">{fmt_credits(balance.remaining_credits)} credits</b>'
            )
        elif self._balance_note:
            parts.append(f'<span style="opacity:.7">{_esc(self._balance_note)}</span>')
        remaining = self._remaining_budget()
        if remaining is not None:
            parts.append(f"budget <b>{fmt_credits(remaining)} credits</b> left")
        value = (
            '<div style="padding:4px 8px;background:#f5f5f5;border-radius:4px">'
            + " · ".join(parts)
            + "</div>"
        )
        if value != self.banner.value:
            self.banner.value = value

    # --- the credits balance -------------------------------------------------------------

    def refresh_balance(self) -> asyncio.Task[None] | None:
        """Ask the service for the credits balance (in the background when a loop runs)."""
        loop = _running_loop()
        if loop is None:
            try:
                self._set_balance(self.session.balance(), "")
            except ImgkitError as exc:
                self._set_balance(None, f"balance unavailable ({type(exc).__name__})")
            return None
        task = loop.create_task(self._fetch_balance())
        self._keep(task, self._background)
        return task

    async def _fetch_balance(self) -> None:
        try:
            balance = await self.session.abalance()
        except ImgkitError as exc:
            self._set_balance(None, f"balance unavailable ({type(exc).__name__})")
        else:
            self._set_balance(balance, "")

    def _set_balance(self, balance: Balance | None, note: str) -> None:
        self._balance = balance
        self._balance_note = note
        self._render_banner()
        self._render_price()

    # --- reference images ----------------------------------------------------------------

    def _render_reference_note(self) -> None:
        profile = self.profile
        formats = ", ".join("JPEG, JPG" if f == "jpeg" else f.upper() for f in profile.image_formats)
        self.reference_note.value = (
            '<div style="font-size:88%;opacity:.85;line-height:1.35">'
            f"Up to {profile.max_images} images, {profile.max_image_bytes // MB} MB each; {formats} "
            "(judged by content). With references the run is <b>image-to-image</b>.<br>"
            "A browser upload reaches the kernel as <b>one</b> message, and a Jupyter server with "
            f"default settings drops messages over {DEFAULT_WEBSOCKET_LIMIT // MB} MiB without a word "
            "(Tornado's <code>websocket_max_message_size</code>). <code>make lab</code> and the "
            "Binder launch raise it; elsewhere, if a large upload never shows up here, type the "
            "file's local path in the field above instead.</div>"
        )

    def add_references(self, *images: Any, names: Iterable[str | None] = ()) -> list[str]:
        """Add reference images (URLs, local paths, bytes or PIL images).

        Each one is checked as it is added; one that is refused is named in the form's
        reference message and left out.

        Args:
            images: what ``imgkit.generate(images=...)`` takes.
            names: display names for the images (upload file names).

        Returns:
            The messages for the images that were refused (empty when all were added).
        """
        labels = list(names)
        refused: list[str] = []
        profile = self.profile
        for index, value in enumerate(images):
            name = labels[index] if index < len(labels) else None
            label = name or (value if isinstance(value, str | Path) else f"image {index + 1}")
            size = len(value) if isinstance(value, bytes | bytearray | memoryview) else None
            shown = f"'{label}'" + (f" ({size / MB:.1f} MB)" if size is not None else "")
            if len(self._refs) >= profile.max_images:
                refused.append(
                    f"{shown} was not added: at most {profile.max_images} reference images per run "
                    f"({profile.name}); remove one first"
                )
                continue
            try:
                ref = ReferenceImage.coerce(value, len(self._refs), profile)
            except ValidationError as exc:
                detail = str(exc).partition(" is not allowed: ")[2] or str(exc)
                refused.append(f"{shown} was not added: it must be {detail}")
                continue
            if name:
                ref = dataclasses.replace(ref, name=name)
            self._refs.append(ref)
        self._render_references()
        self.reference_message.value = (
            '<div class="imgkit-refused">' + "<br>".join(self._problem(m) for m in refused) + "</div>"
            if refused
            else ""
        )
        self._refresh()
        return refused

    def remove_reference(self, index: int) -> None:
        """Remove the reference image at ``index``."""
        del self._refs[index]
        self.reference_message.value = ""
        self._render_references()
        self._refresh()

    def clear_references(self) -> None:
        self._refs.clear()
        self.reference_message.value = ""
        self._render_references()
        self._refresh()

    def _render_references(self) -> None:
        chips = []
        for index, ref in enumerate(self._refs):
            thumb = _thumbnail(ref)
            if thumb is not None:
                square = w.Layout(width="72px", height="72px", object_fit="cover")
                picture: w.Widget = w.Image(value=thumb, format="jpeg", layout=square)
            else:
                picture = w.HTML(
                    '<div style="width:72px;height:72px;display:flex;align-items:center;justify-content:center;'
                    'background:#eceff1;border-radius:4px;font-size:85%">URL</div>'
                )
            label = ref.name or ref.url or "image"
            detail = _human_size(ref.size_bytes) if ref.size_bytes else "URL"
            caption = w.HTML(
                f'<div title="{_esc(ref.url or ref.path or label)}" style="width:100px;font-size:80%;'
                f'line-height:1.3"><div style="overflow:hidden;text-overflow:ellipsis;white-space:nowrap">'
                f"{_esc(label)}</div><div style=\"opacity:.7\">{detail}</div></div>"
            )
            remove = w.Button(description="×", tooltip=f"remove {label}", layout=w.Layout(width="24px", height="24px"))
            remove.add_class("imgkit-ref-remove")
            remove.on_click(self.log.capture()(lambda _, i=index: self.remove_reference(i)))
            chip = w.VBox(
                [w.HBox([picture, remove], layout=w.Layout(align_items="flex-start")), caption],
                layout=w.Layout(margin="2px 6px 2px 0", border="1px solid #e0e0e0", padding="2px"),
            )
            chip.add_class("imgkit-ref-chip")
            chips.append(chip)
        self.references.children = chips

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        self.add_references(*(f["content"] for f in files), names=[f["name"] for f in files])
        # Forget the upload: frees the bytes, and the same file can be added again.
        self.upload.value = ()

    def _on_reference_field(self, change: dict[str, Any]) -> None:
        if change["new"].strip():
            self._add_from_field()

    def _add_from_field(self) -> None:
        text = self.reference_field.value.strip()
        if not text:
            return
        self.reference_field.value = ""
        self.add_references(*[line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()])

    # --- runs ----------------------------------------------------------------------------

    def generate(self) -> asyncio.Task[GenerationResult | None] | None:
        """Start a run with the form's settings; what the Generate button does.

        With a running event loop (a kernel, or ``async`` code) the run is scheduled on it
        and its task returned at once; several runs may be in flight. Without one (a plain
        script) the run completes before this returns, and None is returned. The result is
        appended to :attr:`results` either way. An invalid form starts nothing and returns
        None, with the reason in :attr:`message`.
        """
        try:
            self.request()
        except ValidationError as exc:
            self.message.value = self._problem(f"Cannot generate yet: {exc}")
            self.generate_button.disabled = True
            return None
        params = self.params()
        card = self._new_card(title=params["prompt"])
        self._starting.append(card)
        self._latest = card
        self.preview.starting(params["prompt"])
        self.refresh_history()
        coro = self._run(params, card)
        loop = _running_loop()
        if loop is None:
            asyncio.run(self._settled(coro))
            return None
        task = loop.create_task(coro)
        self._keep(task, self._runs)
        return task

    def use(self, record: RunRecord | str) -> list[str]:
        """Put a run's settings (prompt, model, size, quality, n, URL references) in the form.

        Args:
            record: a run record or a run id from the ledger.

        Returns:
            Notes on references that could not be re-used (local files already uploaded
            under a file-API URL are re-used by that URL).
        """
        if isinstance(record, str):
            found = self.session.ledger.get(record)
            if found is None:
                raise ValueError(f"no run {record!r} in the ledger")
            record = found
        notes: list[str] = []
        with self._hold():
            if record.model in MODELS:
                self.model.value = record.model
            values = [v for _, v in self.size.options]
            if record.size not in values:
                self.size.options = [*self.size.options, (size_label(record.size), record.size)]
            self.size.value = record.size
            if record.quality in self.profile.qualities:
                self.quality.value = record.quality
            self.n.value = min(record.n, self.n.max)
            self.prompt.value = record.prompt
            self._refs.clear()
            urls = [r for r in record.reference_images if r.lower().startswith(("http://", "https://"))]
            notes = [
                f"{r!r} was a local image that was never uploaded; add it again"
                for r in record.reference_images
                if r not in urls
            ]
            refused = self.add_references(*urls)
            if notes or refused:
                self.reference_message.value = "<br>".join(self._problem(m) for m in notes + refused)
        return notes

    def rerun(self, record: RunRecord | str) -> asyncio.Task[GenerationResult | None] | None:
        """Run a ledger entry's settings again (they are put in the form first)."""
        self.use(record)
        return self.generate()

    async def wait(self) -> list[GenerationResult]:
        """Wait for every run in flight (including ones started meanwhile); return their
        results. Raises what a run raised unexpectedly."""
        results: list[GenerationResult] = []
        while self._runs or self._background:
            runs, background = list(self._runs), list(self._background)
            done = await asyncio.gather(*runs)
            await asyncio.gather(*background)
            results.extend(r for r in done if r is not None)
        return results

    async def _settled(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` and the background work it started (the sync path's whole life)."""
        await coro
        await self.wait()

    @property
    def running(self) -> int:
        """Runs this studio started that have not finished."""
        return len(self._runs)

    def _keep(self, task: asyncio.Task[Any], into: set[asyncio.Task[Any]]) -> None:
        # Keep a reference, or the loop may drop the task (asyncio holds only weak ones).
        into.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            into.discard(t)
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                log.error("imgkit studio: %s", exc, exc_info=exc)
                self.log.append_stderr(f"imgkit studio error: {type(exc).__name__}: {exc}\n")

        task.add_done_callback(done)

    def _new_card(self, title: str = "") -> RunCard:
        capture = self.log.capture()
        return RunCard(
            self.session.data_dir,
            on_show=capture(self._show),
            on_use=capture(self.use),
            on_rerun=capture(self.rerun),
            title=title,
        )

    def _show(self, record: RunRecord) -> None:
        self._latest = self._cards.get(record.run_id)
        self.preview.show(record)

    async def _run(self, params: dict[str, Any], card: RunCard) -> GenerationResult | None:
        throttle = self._throttle

        def on_event(event: JobEvent) -> None:
            throttle(event, lambda e: self._on_event(card, e))

        prompt = params.pop("prompt")
        try:
            result = await self.session.agenerate(prompt, on_event=on_event, raise_on_error=False, **params)
        except ImgkitError as exc:
            # Refused before anything was sent (validation, budget): nothing was recorded.
            throttle.flush()
            self._refused(card, exc)
            return None
        except BaseException:
            # Cancelled, or a bug: stop counting the run as followed here; the ledger keeps
            # its last state (resume() can finish it).
            throttle.flush()
            if card in self._starting:
                self._starting.remove(card)
            if card.run_id is not None:
                _FOLLOWING.discard(card.run_id)
            with contextlib.suppress(Exception):
                self.refresh_history()
            raise
        throttle.flush()
        self._finished(card, result.record)
        self.results.append(result)
        return result

    def _on_event(self, card: RunCard, event: JobEvent) -> None:
        record = event.record
        if record is None:
            return
        fresh = card.run_id is None
        if fresh:
            self._cards[record.run_id] = card
            _FOLLOWING.add(record.run_id)
            if card in self._starting:
                self._starting.remove(card)
        card.update(record)
        if card is self._latest:
            self.preview.show(record)
        if fresh or record.terminal:
            if record.terminal:
                _FOLLOWING.discard(record.run_id)
            self.refresh_history()
            # A budget counts a run from its admission: what is left changed.
            self._render_banner()
            self._render_price()

    def _finished(self, card: RunCard, record: RunRecord) -> None:
        _FOLLOWING.discard(record.run_id)
        if card.run_id is None:
            self._on_event(card, JobEvent(record.run_id, record.status, record.progress, "", record))
        card.update(record)
        if card is self._latest:
            self.preview.show(record)
        self.refresh_history()
        self.refresh_balance()

    def _refused(self, card: RunCard, exc: ImgkitError) -> None:
        if card in self._starting:
            self._starting.remove(card)
        text = f"Nothing was sent: {exc}"
        self.message.value = self._problem(text)
        if card is self._latest:
            self.preview.refused(text)
        self.refresh_history()

    # --- history -------------------------------------------------------------------------

    def _interrupted(self, record: RunRecord) -> bool:
        return not record.terminal and record.run_id not in _FOLLOWING and record.created_at < _PROCESS_MARK

    def history_records(self) -> list[RunRecord]:
        """The runs the History panel shows: the ledger's newest, at most ``history``."""
        room = max(0, self.history_limit - len(self._starting))
        return self.session.ledger.records(limit=room, newest_first=True) if room else []

    def counts(self) -> dict[str, int]:
        """Counts of the History panel's entries by state (running, completed, failed, ...)."""
        return self._tally(self.history_records())

    def _tally(self, records: list[RunRecord]) -> dict[str, int]:
        counts = {"running": len(self._starting), "completed": 0, "failed": 0, "unknown": 0, "interrupted": 0}
        for record in records:
            if self._interrupted(record):
                counts["interrupted"] += 1
            elif not record.terminal:
                counts["running"] += 1
            else:
                counts[record.status] = counts.get(record.status, 0) + 1
        return counts

    def refresh_history(self) -> None:
        """Re-read the last runs from the ledger and re-render History and its counters."""
        records = self.history_records()
        cards: list[RunCard] = []
        for record in records:
            card = self._cards.get(record.run_id)
            if card is None:
                card = self._cards[record.run_id] = self._new_card(title=record.prompt)
            if record.run_id not in _FOLLOWING:
                card.update(record, interrupted=self._interrupted(record))
            cards.append(card)
        shown = {r.run_id for r in records}
        for run_id in list(self._cards):
            if run_id not in shown and run_id not in _FOLLOWING:
                del self._cards[run_id]
        children = tuple(c.widget for c in [*reversed(self._starting), *cards])
        if children != self.history.children:
            self.history.children = children
        counts = self._tally(records)
        text = f"{counts['running']} running · {counts['completed']} completed"
        for extra in ("failed", "unknown", "interrupted"):
            if counts[extra]:
                text += f" · {counts[extra]} {extra}"
        self.counter.value = f'<span class="imgkit-counts" style="font-weight:600">{text}</span>'
        following_here = any(not t.done() for t in self._runs)
        self.resume_button.description = f"Resume {counts['interrupted']}"
        self.resume_button.layout.display = None if counts["interrupted"] else "none"
        # aresume() follows every unfinished run; not while ours are in flight (no double polling).
        self.resume_button.disabled = following_here

    def resume(self) -> asyncio.Task[list[GenerationResult]] | None:
        """Finish the runs an earlier kernel left unfinished (``imgkit.resume()`` with cards).

        Scheduled on the running loop when there is one (its task is returned); otherwise it
        completes before returning.
        """
        coro = self._resume()
        loop = _running_loop()
        if loop is None:
            asyncio.run(self._settled(coro))
            return None
        task = loop.create_task(coro)
        self._keep(task, self._background)
        return task

    async def _resume(self) -> list[GenerationResult]:
        self.resume_button.disabled = True
        try:
            results = await self.session.aresume(on_event=lambda e: self._throttle(e, self._render_resumed))
        finally:
            self._throttle.flush()
            self.refresh_history()
        self.results.extend(results)
        return results

    def _render_resumed(self, event: JobEvent) -> None:
        record = event.record
        if record is None:
            return
        if record.terminal:
            _FOLLOWING.discard(record.run_id)
        else:
            _FOLLOWING.add(record.run_id)
        card = self._cards.get(record.run_id)
        if card is not None:
            card.update(record)
        if record.terminal:
            self.refresh_history()
