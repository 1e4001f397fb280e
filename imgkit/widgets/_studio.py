"""The studio: the seed's playground form as ipywidgets, over a :class:`~imgkit.Session`.

Three parts, one concept each:

- :mod:`imgkit.widgets._layout` builds the widgets and arranges them, nothing more;
- :mod:`imgkit.widgets._present` says what to show, as pure functions of session values
  (price text, tallies, size and quality choices, card text, banner, messages);
- :class:`StudioApp`, here, is the controller: it observes the widgets, keeps the tasks it
  starts, calls the session and puts the presenter's words in the widgets.

The form only collects values and renders what the core says about them:

- validation is :meth:`ImageRequest.build` (the Generate button is disabled while it
  refuses, and its message is shown); reference images are checked one by one with
  :meth:`ReferenceImage.coerce` as they are added, so a 17th file, a wrong format (by content)
  or an oversized file is named at once;
- the price is :meth:`Session.quote`: the estimate the run will be recorded at, on the price
  sheet of the provider it goes to first; budget warnings use ``Session.remaining_budget()``
  when the session has one;
- which runs are in flight is the engine's :attr:`~imgkit.engine.Engine.in_flight`: an
  unfinished run that nobody here follows was left by an earlier kernel (Resume finishes it);
- a click schedules :meth:`Session.agenerate` on the kernel's running loop and returns at
  once (without a running loop, the run is handed to imgkit's private loop thread and
  finishes before the call returns); the run's :class:`JobEvent` objects are throttled and
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
import hashlib
import io
import logging
import math
import time
import warnings
from collections.abc import Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from imgkit.errors import ConfigError, ImgkitError, ValidationError
from imgkit.pricing import Estimate, Sheet, get_sheet
from imgkit.providers.base import Balance
from imgkit.request import (
    MB,
    MODELS,
    ImageRequest,
    JobEvent,
    ModelProfile,
    ReferenceImage,
    RunRecord,
    check_tags,
    normalize_size,
)
from imgkit.results import GenerationResult
from imgkit.session import Session, get_session
from imgkit.widgets import Studio
from imgkit.widgets import _present as present
from imgkit.widgets._cards import RunCard, Throttle
from imgkit.widgets._common import LOOP, running_loop
from imgkit.widgets._layout import StudioLayout, reference_chip

__all__ = ["SAMPLE_PROMPT", "StudioApp"]

log = logging.getLogger("imgkit")

T = TypeVar("T")

#: The seed's sample prompt.
SAMPLE_PROMPT = "A beautiful colorful sunset over the ocean"
#: Jupyter's default limit on one websocket message (Tornado), which uploads must fit in.
DEFAULT_WEBSOCKET_LIMIT = 10 * MB


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
    ``counter``, ...; all of them are also on :attr:`ui`, the layout) so a test or a user can
    set values and click, and every action is a method: :meth:`generate`, :meth:`wait`,
    :meth:`add_references`, :meth:`use`, :meth:`rerun`, :meth:`resume`.
    """

    def __init__(
        self,
        session: Session | None = None,
        *,
        prompt: str = SAMPLE_PROMPT,
        model: str | None = None,
        size: str = "1:1",
        quality: str | None = None,
        n: int = 1,
        images: Iterable[Any] = (),
        warn_credits: float = 20.0,
        history: int = 20,
        updates_per_second: float = 10.0,
        confirm_within: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
        local_paths: bool = True,
        resolution: str | None = None,
        background: str | None = None,
        previews: int = 0,
        page_budget: float | None = None,
    ) -> None:
        # Bad arguments fail here, with the core's message, not as a half-drawn form.
        # The session's default model (configure(model=...), $IMGKIT_MODEL) and its default tier.
        model = model if model is not None else (session or get_session()).model
        tier = {} if quality is None else {"quality": quality}
        checked = ImageRequest.build(
            prompt or "-", model=model, size=size, n=n, resolution=resolution,
            background=background, previews=previews or None, **tier,
        )
        if page_budget is not None and (
            isinstance(page_budget, bool) or not isinstance(page_budget, int | float) or page_budget < 0
        ):
            raise ValidationError("page_budget", page_budget, "a number of credits >= 0, or None for no cap")
        self._session = session
        # What this form (one page, one kernel) may spend, counted at each run's estimate.
        self.page_budget = None if page_budget is None else float(page_budget)
        self._page_spent = 0.0
        self._mask: ReferenceImage | None = None
        self._kind = "gateway"
        self.filter = present.HistoryFilter()
        self._window = (0, 0)
        #: Partial images shown in the preview so far (streamed runs, ``previews``).
        self.previews_received = 0
        self.warn_credits = warn_credits
        self.history_limit = history
        self.updates_per_second = updates_per_second
        # The double-click guard: a click this soon after a run started asks first.
        self.confirm_within = confirm_within
        # A shared page (imgkit app) reads no typed server-side path: URLs and uploads only.
        self.local_paths = local_paths
        self._clock = clock
        self._last_start = -math.inf
        self._confirm_until = -math.inf
        self.results: list[GenerationResult] = []
        self._refs: list[ReferenceImage] = []
        self._runs: set[asyncio.Task[GenerationResult | None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._cards: dict[str, RunCard] = {}
        self._starting: list[RunCard] = []
        self._live: set[RunCard] = set()
        self._latest: RunCard | None = None
        self._balance: Balance | None = None
        self._balance_note = ""
        self._holding = False
        self._quoted: Estimate | ImgkitError | None = None
        self._task_of: dict[RunCard, asyncio.Task[GenerationResult | None]] = {}
        self._cancelling: set[RunCard] = set()
        self._ticker: asyncio.Task[None] | None = None
        # One throttle for every run of this form: the kernel's message rate limit counts
        # widget updates, so the form renders at most updates_per_second rounds a second.
        self._throttle = Throttle(per_second=updates_per_second)
        profile = MODELS[checked.model]
        quote = self._quote(checked)

        self.ui = ui = StudioLayout(
            prompt=prompt,
            placeholder=SAMPLE_PROMPT,
            models=list(MODELS),
            model=checked.model,
            size_options=present.size_options(profile),
            size=checked.size,
            quality_options=present.quality_options(profile, self._sheet(quote)),
            quality_tooltips=present.quality_tooltips(profile, self._sheet(quote)),
            quality=checked.quality,
            n=checked.n,
            max_n=profile.max_n,
            history_title=present.history_title(history),
            data_dir=lambda: self.session.images_dir,
            reference_placeholder=present.reference_placeholder(local_paths),
        )
        # The widgets a user or a test drives, by their names on the form.
        self.widget = ui.widget
        self.log = ui.log
        self.banner = ui.banner
        self.prompt, self.prompt_count = ui.prompt, ui.prompt_count
        self.model, self.size, self.quality, self.n = ui.model, ui.size, ui.quality, ui.n
        self.n_note, self.custom_size = ui.n_note, ui.custom_size
        self.resolution, self.background, self.previews = ui.resolution, ui.background, ui.previews
        self.mask_upload, self.mask_message = ui.mask_upload, ui.mask_message
        self.filter_text, self.starred_only, self.show_hidden = ui.filter_text, ui.starred_only, ui.show_hidden
        self.upload, self.reference_field = ui.upload, ui.reference_field
        self.reference_add, self.reference_clear = ui.reference_add, ui.reference_clear
        self.references, self.reference_message = ui.references, ui.reference_message
        self.reference_note, self.mode = ui.reference_note, ui.mode
        self.price, self.price_warning = ui.price, ui.price_warning
        self.generate_button, self.message = ui.generate_button, ui.message
        self.preview = ui.preview
        self.counter, self.history = ui.counter, ui.history
        self.refresh_button, self.resume_button = ui.refresh_button, ui.resume_button

        # "Use as reference" on a result: the store's file, by its path in the kernel.
        self.preview.gallery.on_use = self.log.capture()(lambda path: self.add_references(path))
        self._render_model_controls(profile)
        if ":" in checked.size and checked.resolution is not None:
            self.resolution.value = checked.resolution
        if checked.background is not None and checked.background in [v for _, v in self.background.options]:
            self.background.value = checked.background
        if checked.previews and checked.previews in [v for _, v in self.previews.options]:
            self.previews.value = checked.previews
        self._wire()
        self._render_reference_note()
        if images:
            self.add_references(*images)
        self._refresh()
        self.refresh_history()
        self._show_latest()
        self.refresh_balance()

    def _show_latest(self) -> None:
        """A new form (after a kernel restart, say) shows the ledger's latest run."""
        records = self.session.ledger.records(limit=1, newest_first=True)
        if records and self._latest is None:
            self._show(records[0])

    def _wire(self) -> None:
        """Observe the widgets by name; errors in a handler land in the log widget."""
        capture = self.log.capture()
        self.prompt.observe(capture(self._on_prompt), names="value")
        self.size.observe(capture(self._on_field), names="value")
        self.quality.observe(capture(self._on_field), names="value")
        self.n.observe(capture(self._on_field), names="value")
        self.custom_size.observe(capture(self._on_field), names="value")
        self.resolution.observe(capture(self._on_field), names="value")
        self.background.observe(capture(self._on_field), names="value")
        self.previews.observe(capture(self._on_field), names="value")
        self.mask_upload.observe(capture(self._on_mask_upload), names="value")
        self.filter_text.observe(capture(lambda _: self.refresh_history()), names="value")
        self.starred_only.observe(capture(lambda _: self.refresh_history()), names="value")
        self.show_hidden.observe(capture(lambda _: self.refresh_history()), names="value")
        self.model.observe(capture(self._on_model), names="value")
        self.upload.observe(capture(self._on_upload), names="value")
        self.reference_field.observe(capture(self._on_reference_field), names="value")
        self.reference_add.on_click(capture(lambda _: self._add_from_field()))
        self.reference_clear.on_click(capture(lambda _: self.clear_references()))
        self.generate_button.on_click(capture(lambda _: self.click_generate()))
        self.ui.shortcuts.on_generate = capture(self.click_generate)
        self.refresh_button.on_click(capture(lambda _: self.refresh_history()))
        self.resume_button.on_click(capture(lambda _: self.resume()))
        self.preview.cancel.on_click(capture(lambda _: self.cancel()))

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

    @property
    def size_value(self) -> str:
        """The size the form asks for: the chosen button, or the custom ``WxH`` typed."""
        if self.size.value == present.CUSTOM_SIZE:
            return str(self.custom_size.value).strip().lower().replace("×", "x").replace(" ", "")
        return str(self.size.value)

    def options(self) -> dict[str, Any]:
        """The model's further fields the form sets (``resolution`` for a ratio size,
        ``background``, ``previews``), only those the form shows and sets."""
        out: dict[str, Any] = {}
        if self.ui.resolution_row.layout.display != "none" and ":" in self.size_value and self.resolution.value:
            out["resolution"] = self.resolution.value
        if self.ui.background_row.layout.display != "none" and self.background.value:
            out["background"] = self.background.value
        if self.ui.previews_row.layout.display != "none" and self.previews.value:
            out["previews"] = self.previews.value
        return out

    @property
    def mask(self) -> ReferenceImage | None:
        """The mask the form sends (only with references, where the model takes one)."""
        return self._mask if self._refs and self.ui.mask_row.layout.display != "none" else None

    def params(self) -> dict[str, Any]:
        """The form as :meth:`Session.agenerate` keyword arguments (plus ``prompt``)."""
        params: dict[str, Any] = {
            "prompt": self.prompt.value,
            "model": self.model.value,
            "size": self.size_value,
            "quality": self.quality.value,
            "n": self.n.value,
            "images": tuple(self._refs),
            **self.options(),
        }
        if self.mask is not None:
            params["mask"] = self.mask
        return params

    def code(self) -> str:
        """The ``imgkit.generate(...)`` call equal to the form (what **Show code** shows)."""
        p = self.params()
        return present.generate_code(
            p["prompt"], model=p["model"], size=p["size"], quality=p["quality"], n=p["n"], references=p["images"],
            options=self.options(), mask=p.get("mask"),
        )

    def request(self) -> ImageRequest:
        """The form as a validated request; raises :class:`imgkit.ValidationError`."""
        p = self.params()
        return ImageRequest.build(p.pop("prompt"), **p)

    def estimate(self) -> Estimate:
        """The price of the form's settings: the estimate a run of them is recorded at (on the
        sheet of the provider it goes to first, :meth:`Session.quote`).

        The prompt's text does not change the price, so a form whose only fault is its
        prompt still has one. Raises :class:`imgkit.ValidationError` for other invalid
        settings, and :class:`imgkit.ConfigError` when that sheet has no price for them.
        """
        quote = self._quote(self._priced_request())
        if isinstance(quote, ImgkitError):
            raise quote
        return quote

    def _priced_request(self) -> ImageRequest:
        try:
            return self.request()
        except ValidationError:
            p = self.params()
            del p["prompt"]
            if p.get("mask") is not None:
                try:  # a mask that does not fit does not change the price either
                    return ImageRequest.build("-", **p)
                except ValidationError:
                    del p["mask"]
            return ImageRequest.build("-", **p)

    def _quote(self, request: ImageRequest) -> Estimate | ImgkitError:
        """The session's quote for ``request``, or why there is none."""
        try:
            quote = self.session.quote(request)
        except ImgkitError as exc:  # no configured provider takes it
            return exc
        if quote is None:
            return ConfigError(
                f"the price sheet of the provider that takes {request.model} {request.size} has no price for it"
            )
        return quote

    def _sheet(self, quote: object) -> Sheet:
        """The price sheet of ``quote`` (the session's own when it is not an estimate)."""
        name = quote.sheet if isinstance(quote, Estimate) else self.session.price_sheet
        try:
            return get_sheet(name)
        except ConfigError:  # a provider's sheet that is not registered by name
            return get_sheet(self.session.price_sheet)

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

    def _on_prompt(self, change: dict[str, Any]) -> None:
        # The prompt's text does not change the price: no new quote for every keystroke.
        self._refresh(quote=False)

    def _on_model(self, change: dict[str, Any]) -> None:
        old = MODELS.get(change["old"]) if change.get("old") else None
        profile = self.profile
        with self._hold():
            current = self.size.value
            if old is not None:
                # Keep the shape when the new model names sizes differently (1024x1024 <-> 1:1).
                ratio_of = {pixels: ratio for ratio, pixels in old.ratio_sizes.items()}
                current = ratio_of.get(current, current)
            options = present.size_options(profile)
            wanted = None
            for candidate in (current, self.size.value):
                try:
                    wanted = normalize_size(candidate, profile.name)
                except ValidationError:
                    continue
                break
            self.size.options = options
            values = [v for _, v in options]
            if wanted not in values and wanted is not None and "x" in wanted and present.CUSTOM_SIZE in values:
                self.custom_size.value, wanted = wanted, present.CUSTOM_SIZE
            self.size.value = wanted if wanted in values else values[0]
            self.ui.max_n = max(profile.max_n, 1)
            if profile.max_n <= 1:
                self.n.value = 1
            self.n.disabled = profile.max_n <= 1
            self._render_model_controls(profile)
            if len(self._refs) > profile.max_images:
                self.reference_message.value = present.problem(present.over_model_limit(profile, len(self._refs)))
            self._render_reference_note()

    def provider_kind(self) -> str:
        """The kind of provider (``gateway`` or ``openai``) a plain run of the form's model
        goes to first: what decides the background values, previews and masks offered."""
        try:
            request = ImageRequest.build("-", model=self.model.value, size=self._plain_size())
            chosen = self.session.router.plan(request).chosen
        except ImgkitError:
            return "gateway"
        return str(chosen.endpoint.kind) if chosen is not None else "gateway"

    def _plain_size(self) -> str:
        sizes = self.profile.sizes
        return "1:1" if "1:1" in sizes else sizes[0]

    def _render_model_controls(self, profile: ModelProfile) -> None:
        """Show the controls the model (on the first provider) has, with their choices."""
        kind = self._kind = self.provider_kind()
        ui = self.ui
        if profile.ratio_sizes:
            self.size.remove_class("imgkit-ratios")
        else:
            self.size.add_class("imgkit-ratios")
        tiers = present.resolution_options(profile)
        self._set_choices(self.resolution, ui.resolution_row, tiers, present.resolution_tooltips(profile))
        self._set_choices(self.background, ui.background_row, present.background_options(profile, kind))
        self._set_choices(self.previews, ui.previews_row, present.preview_options(profile, kind))
        ui.mask_row.layout.display = None if present.masks_allowed(profile, kind) and self._refs else "none"
        self._render_size_extras()

    @staticmethod
    def _set_choices(
        toggles: Any, row: Any, options: list[tuple[str, Any]], tooltips: list[str] | None = None
    ) -> None:
        """New choices for a row of buttons, keeping the value where it still exists; the row
        is hidden when there is nothing to choose."""
        current = toggles.value
        if list(toggles.options) != options:
            values = [v for _, v in options]
            toggles.options = options
            if options:
                toggles.value = current if current in values else values[0]
        if tooltips is not None:
            toggles.tooltips = tooltips
        row.layout.display = None if options else "none"

    def _render_size_extras(self) -> None:
        """The custom size field, the tier buttons (ratio sizes only) and the size tooltips."""
        custom = self.size.value == present.CUSTOM_SIZE
        self.ui.custom_size_row.layout.display = None if custom else "none"
        ratio = ":" in self.size_value
        self.resolution.disabled = not ratio
        tier = self.resolution.value if ratio and self.resolution.options else None
        tips = present.size_tooltips(self.profile, tier)
        if list(self.size.tooltips) != tips:
            self.size.tooltips = tips

    def _refresh(self, *, quote: bool = True) -> None:
        """Re-render what depends on the fields: counter, mode, validation, and (with
        ``quote``) the price and the banner."""
        if self._holding:
            return
        self.prompt_count.value = present.prompt_count(len(self.prompt.value), self.profile.prompt_max_chars)
        count = len(self._refs)
        self.mode.value = present.mode_text(ImageRequest(prompt="", images=tuple(self._refs)).mode, count)
        self.reference_clear.layout.display = None if count else "none"
        self._render_size_extras()
        masks = present.masks_allowed(self.profile, self._kind) and bool(count)
        self.ui.mask_row.layout.display = None if masks else "none"
        self.n_note.value = present.images_problem(self.n.value, self.ui.max_n)
        self.preview.set_frame(
            present.aspect_frame(
                self.size_value, present.frame_size(self.profile, self.size_value, self.options().get("resolution"))
            )
        )
        self.ui.code.value = present.code_block(self.code())
        try:
            self.request()
        except ValidationError as exc:
            self.generate_button.disabled = True
            self.message.value = present.problem(present.cannot_generate(exc))
        else:
            self.generate_button.disabled = False
            if self.message.value.startswith('<span class="imgkit-problem"'):
                self.message.value = ""
        if quote:
            self._render_money()

    def _render_money(self) -> None:
        """Re-render the price, its warning and the banner, from one quote."""
        try:
            quote: Estimate | ImgkitError | None = self._quote(self._priced_request())
        except ValidationError:
            quote = None
        remaining = self._remaining_budget()
        self._quoted = quote
        if self._clock() >= self._confirm_until:
            self.generate_button.description = present.generate_label(self._credits())
        if quote is None:
            self.price.value = present.PRICE_UNAVAILABLE
            self.price_warning.value = ""
        elif isinstance(quote, ImgkitError):
            self.price.value = present.no_estimate(quote)
            self.price_warning.value = ""
        else:
            self.price.value = present.price(quote, self._sheet(quote))
            self.price_warning.value = present.price_warning(
                quote.credits, warn_credits=self.warn_credits, remaining=remaining, balance=self._balance
            )
        s = self.session
        sheet = self._sheet(quote)
        value = present.banner(
            sandbox=s.sandbox,
            base_url=s.base_url,
            key_hint=s.key_hint,
            model=self.model.value,
            sheet_name=sheet.name,
            sheet_date=sheet.date,
            sheet_source=sheet.source,
            balance=self._balance,
            balance_note=self._balance_note,
            remaining=remaining,
            team_budget=getattr(s.budget, "scope", None) == "team",
        )
        if value != self.banner.value:
            self.banner.value = value

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

    # --- the credits balance -------------------------------------------------------------

    def refresh_balance(self) -> asyncio.Task[None] | None:
        """Ask the service for the credits balance (in the background when a loop runs)."""
        loop = running_loop()
        if loop is None:
            try:
                self._set_balance(self.session.balance(source="studio"), "")
            except ImgkitError as exc:
                self._set_balance(None, f"balance unavailable ({type(exc).__name__})")
            return None
        task = loop.create_task(self._fetch_balance())
        self._keep(task, self._background)
        return task

    async def _fetch_balance(self) -> None:
        try:
            balance = await self.session.abalance(source="studio")
        except ImgkitError as exc:
            self._set_balance(None, f"balance unavailable ({type(exc).__name__})")
        else:
            self._set_balance(balance, "")

    def _set_balance(self, balance: Balance | None, note: str) -> None:
        self._balance = balance
        self._balance_note = note
        self._render_money()

    # --- reference images ----------------------------------------------------------------

    def _render_reference_note(self) -> None:
        self.reference_note.value = present.reference_note(self.profile, DEFAULT_WEBSOCKET_LIMIT)
        self.upload.lost_note = present.lost_upload_note(DEFAULT_WEBSOCKET_LIMIT)
        self.upload.picker_tooltip = present.upload_tooltip(self.profile, len(self._refs))

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
            if len(self._refs) >= profile.max_images:
                refused.append(present.refusal(label, size, present.too_many_references(profile)))
                continue
            try:
                ref = ReferenceImage.coerce(value, len(self._refs), profile)
            except ValidationError as exc:
                refused.append(present.reference_problem(label, size, exc))
                continue
            if name:
                ref = dataclasses.replace(ref, name=name)
            self._refs.append(ref)
        self._render_references()
        self.reference_message.value = present.refused_references(refused)
        self._refresh()
        return refused

    def remove_reference(self, index: int) -> None:
        """Remove the reference image at ``index``."""
        del self._refs[index]
        self.reference_message.value = ""
        self._render_references()
        self._refresh()

    def clear_references(self) -> None:
        """Remove every reference image."""
        self._refs.clear()
        self.reference_message.value = ""
        self._render_references()
        self._refresh()

    # --- the mask ----------------------------------------------------------------------

    def set_mask(self, value: Any, name: str | None = None) -> str:
        """Use ``value`` (a path, URL, bytes or PIL image) as the edit's mask.

        It is checked as the run will be (a PNG with an alpha channel, the first reference
        image's pixel size; only with references), and refused in :attr:`mask_message`.

        Returns:
            Why it was refused ('' when it is set).
        """
        if isinstance(value, bytearray | memoryview):
            value = bytes(value)
        try:
            checked = ImageRequest.build(
                "-", model=self.model.value, size=self._plain_size(), images=tuple(self._refs), mask=value
            ).mask
        except ValidationError as exc:
            text = present.cannot_generate(exc)
            self.mask_message.value = present.problem(text)
            return text
        assert checked is not None
        mask = dataclasses.replace(checked, name=name) if name else checked
        self._mask = mask
        self.mask_message.value = ""
        self._render_mask()
        self._refresh()
        return ""

    def clear_mask(self) -> None:
        """Send no mask."""
        self._mask = None
        self.mask_message.value = ""
        self._render_mask()
        self._refresh()

    def _render_mask(self) -> None:
        mask = self._mask
        if mask is None:
            self.ui.mask_chip.children = ()
            self.mask_upload.label = "Add mask"
            return
        chip, remove = reference_chip(
            _thumbnail(mask), present.mask_caption(mask.name or "mask", mask.size_bytes or 0), "remove the mask"
        )
        remove.on_click(self.log.capture()(lambda _: self.clear_mask()))
        self.ui.mask_chip.children = (chip,)
        self.mask_upload.label = "Replace mask"

    def _on_mask_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        first = files[0]
        self.set_mask(first["content"], name=first["name"])
        self.mask_upload.value = ()

    def _render_references(self) -> None:
        chips = []
        for index, ref in enumerate(self._refs):
            label = ref.name or ref.url or "image"
            thumbnail = _thumbnail(ref) if ref.url is None else self._url_thumbnail(ref.url)
            chip, remove = reference_chip(thumbnail, present.reference_caption(ref), f"remove {label}", ref.url)
            remove.on_click(self.log.capture()(lambda _, i=index: self.remove_reference(i)))
            chips.append(chip)
        self.references.children = chips
        count = len(self._refs)
        self.upload.label = present.upload_label(count)
        self.upload.picker_tooltip = present.upload_tooltip(self.profile, count)

    # An uploaded reference is re-used by the URL the service gave it; its picture is kept
    # beside the images (a small JPEG per URL) so a re-used run shows it, after a restart too.

    def _url_thumbnail_path(self, url: str) -> Path:
        return self.session.data_dir / "reference-thumbs" / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".jpg")

    def _url_thumbnail(self, url: str) -> bytes | None:
        try:
            return self._url_thumbnail_path(url).read_bytes()
        except OSError:
            return None

    def _remember_reference_thumbnails(self, sent: tuple[ReferenceImage, ...], record: RunRecord) -> None:
        """Keep the pictures of the local references a run uploaded, under their new URLs."""
        if len(sent) != len(record.reference_images):
            return
        for ref, url in zip(sent, record.reference_images, strict=True):
            if ref.url is not None or not url.lower().startswith(("http://", "https://")):
                continue
            thumbnail = _thumbnail(ref)
            if thumbnail is None:
                continue
            target = self._url_thumbnail_path(url)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(thumbnail)
            except OSError as exc:  # a missing picture must not fail the run
                log.warning("could not keep a reference thumbnail: %s", exc)

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
        items = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
        if self.local_paths:
            self.add_references(*items)
            return
        urls = [item for item in items if item.lower().startswith(("http://", "https://"))]
        refused = [present.refusal(item, None, present.NO_SERVER_PATHS) for item in items if item not in urls]
        refused += self.add_references(*urls) if urls else []
        self.reference_message.value = present.refused_references(refused)

    # --- runs ----------------------------------------------------------------------------

    def click_generate(self) -> asyncio.Task[GenerationResult | None] | None:
        """What the Generate button and Ctrl/Cmd+Enter do: :meth:`generate`, except that a
        click within ``confirm_within`` seconds of the last run's start asks first (the
        button turns into a confirmation; a click on it within that time generates)."""
        now = self._clock()
        if now < self._confirm_until:
            self._confirm_until = -math.inf
            return self._start_clicked(now)
        if now - self._last_start < self.confirm_within:
            self._confirm_until = now + self.confirm_within
            credits = self._credits()
            self.message.value = present.confirm_again(now - self._last_start, credits, self.confirm_within)
            self.generate_button.description = present.confirm_label(credits)
            self.generate_button.button_style = "warning"
            loop = running_loop()
            if loop is not None:  # the button calms down by itself
                loop.call_later(self.confirm_within, self._calm)
            return None
        return self._start_clicked(now)

    def _start_clicked(self, now: float) -> asyncio.Task[GenerationResult | None] | None:
        self._calm()
        task = self.generate()
        if self.message.value.startswith('<span class="imgkit-confirm"'):
            self.message.value = ""
        self._last_start = now
        return task

    def _calm(self) -> None:
        """End a confirmation: the button shows the price again."""
        if self._clock() < self._confirm_until:
            return
        self.generate_button.button_style = "primary"
        self.generate_button.description = present.generate_label(self._credits())
        if self.message.value.startswith('<span class="imgkit-confirm"'):
            self.message.value = ""

    def _credits(self) -> float | None:
        quote = self._quoted
        return quote.credits if isinstance(quote, Estimate) else None

    def generate(self) -> asyncio.Task[GenerationResult | None] | None:
        """Start a run with the form's settings; what the Generate button does.

        With a running event loop (a kernel, or ``async`` code) the run is scheduled on it
        and its task returned at once; several runs may be in flight. Without one (a plain
        script) the run is handed to imgkit's private loop thread and completes before this
        returns, and None is returned. The result is appended to :attr:`results` either way.
        An invalid form starts nothing and returns None, with the reason in :attr:`message`.
        """
        try:
            self.request()
        except ValidationError as exc:
            self.message.value = present.problem(present.cannot_generate(exc))
            self.generate_button.disabled = True
            return None
        params = self.params()
        card = self._new_card(title=params["prompt"])
        self._starting.append(card)
        self._live.add(card)
        self._latest = card
        self.preview.starting(params["prompt"])
        self.refresh_history()
        task = self._schedule(self._run(params, card), self._runs)
        if task is not None:
            self._task_of[card] = task
            task.add_done_callback(lambda _: self._task_of.pop(card, None))
            self._start_ticker()
        return task

    def _start_ticker(self) -> None:
        """Re-render the preview's elapsed time once a second while runs are in flight."""
        if self._ticker is not None and not self._ticker.done():
            return

        async def tick() -> None:
            while self._live:
                await asyncio.sleep(1.0)
                self.preview.tick()

        loop = running_loop()
        if loop is not None:
            self._ticker = loop.create_task(tick())

    def cancel(self, run_id: str | None = None) -> bool:
        """Stop following a run (the one in the preview by default); what Cancel does.

        No cancel endpoint is documented, so the service may still finish the run and bill
        it: the ledger keeps it, tagged ``cancelled-by-user``, and :meth:`resume` (or
        ``imgkit.resume()``) can finish it later without paying again.

        Returns:
            True when a run was being followed here and is now cancelled.
        """
        card = self._latest if run_id is None else self._cards.get(run_id)
        task = self._task_of.get(card) if card is not None else None
        if card is None or task is None or task.done():
            return False
        self._cancelling.add(card)
        self.preview.cancel.disabled = True
        task.cancel()
        return True

    async def _record_cancel(self, card: RunCard) -> None:
        """Tag a cancelled run in the ledger, once the engine has stopped following it."""
        self._cancelling.discard(card)
        run_id = card.run_id
        record = None
        if run_id is not None:
            for _ in range(100):  # the engine stops on its own loop, soon after
                if run_id not in self.session.engine.in_flight:
                    break
                await asyncio.sleep(0.02)
            found = self.session.ledger.get(run_id)
            if found is not None and not found.terminal:
                record = found.replace(
                    tags=tuple(dict.fromkeys((*found.tags, present.CANCELLED_TAG))),
                    notes="cancelled by the user; the service may still finish and bill it",
                )
                self.session.ledger.save(record)
                card.update(record)
                if card is self._latest:
                    self.preview.show(record)
        if card is self._latest and record is None:
            self.preview.refused("Cancelled before the service accepted the run.")
        self.message.value = present.cancel_done(record)

    def _schedule(
        self, coro: Coroutine[Any, Any, T], into: set[asyncio.Task[T]]
    ) -> asyncio.Task[T] | None:
        """Start ``coro`` on the running loop and keep its task; without a running loop, run
        it (and the background work it starts) on imgkit's private loop thread and wait."""
        loop = running_loop()
        if loop is None:
            LOOP.run(self._settled(coro))
            return None
        task = loop.create_task(coro)
        self._keep(task, into)
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
            if record.size in values:
                self.size.value = record.size
            elif "x" in record.size and present.CUSTOM_SIZE in values:
                self.custom_size.value = record.size
                self.size.value = present.CUSTOM_SIZE
            else:
                self.size.options = [*self.size.options, (present.size_label(record.size), record.size)]
                self.size.value = record.size
            if record.quality in self.profile.qualities:
                self.quality.value = record.quality
            self.n.value = min(record.n, self.ui.max_n)
            for toggles, value in ((self.resolution, record.resolution), (self.background, record.background or "")):
                if value in [v for _, v in toggles.options]:
                    toggles.value = value
            self.clear_mask()
            self.prompt.value = record.prompt
            self._refs.clear()
            urls = [r for r in record.reference_images if r.lower().startswith(("http://", "https://"))]
            notes = [present.never_uploaded(r) for r in record.reference_images if r not in urls]
            refused = self.add_references(*urls)
            if notes or refused:
                self.reference_message.value = "<br>".join(present.problem(m) for m in notes + refused)
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
            self.session.images_dir,
            on_show=capture(self._show),
            on_use=capture(self.use),
            on_rerun=capture(self.rerun),
            on_star=capture(lambda record: self.star(record.run_id)),
            on_hide=capture(lambda record: self.hide(record.run_id)),
            title=title,
        )

    def _show(self, record: RunRecord) -> None:
        previous, self._latest = self._latest, self._cards.get(record.run_id)
        if previous is not None:
            previous.set_shown(False)
        if self._latest is not None:
            self._latest.set_shown(True)
        self.preview.show(record)

    async def _run(self, params: dict[str, Any], card: RunCard) -> GenerationResult | None:
        throttle = self._throttle

        def on_event(event: JobEvent) -> None:
            if event.preview is not None:
                # At most a few per image: each partial image is shown as it comes.
                self.log.capture()(self._on_partial)(card, event)
            throttle(event, lambda e: self._on_event(card, e))

        prompt = params.pop("prompt")
        sent = params["images"]
        try:
            result = await self.session.agenerate(prompt, on_event=on_event, raise_on_error=False, **params)
        except ImgkitError as exc:
            # Refused before anything was sent (validation, budget): nothing was recorded.
            throttle.flush()
            self._live.discard(card)
            self._refused(card, exc)
            return None
        except BaseException as exc:
            # Cancelled, or a bug: the ledger keeps the run's last state (resume() can
            # finish it once the engine no longer follows it).
            throttle.flush()
            self._live.discard(card)
            if card in self._starting:
                self._starting.remove(card)
            if isinstance(exc, asyncio.CancelledError) and card in self._cancelling:
                with contextlib.suppress(Exception):
                    await self._record_cancel(card)
            with contextlib.suppress(Exception):
                self.refresh_history()
            raise
        throttle.flush()
        self._live.discard(card)
        self._remember_reference_thumbnails(sent, result.record)
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
            if card in self._starting:
                self._starting.remove(card)
        card.update(record)
        if card is self._latest:
            self.preview.show(record)
        if fresh or record.terminal:
            self.refresh_history()
            # A budget counts a run from its admission: what is left changed.
            self._render_money()

    def _on_partial(self, card: RunCard, event: JobEvent) -> None:
        """A streamed run's partial image: into the preview while it shows that run."""
        if card is not self._latest or event.preview is None:
            return
        if event.record is not None and card.run_id is None:
            self._on_event(card, event)
        self.previews_received += 1
        self.preview.show_partial(event.preview, f"{event.run_id}-partial-{self.previews_received}")

    def _finished(self, card: RunCard, record: RunRecord) -> None:
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
        text = present.not_sent(exc)
        self.message.value = present.problem(text)
        if card is self._latest:
            self.preview.refused(text)
        self.refresh_history()

    # --- history -------------------------------------------------------------------------

    def _in_flight(self) -> frozenset[str]:
        """The runs this process follows now: the engine's, and this form's own runs (whose
        first event can arrive before the engine, on its own thread, lists them)."""
        own = {card.run_id for card in self._live if card.run_id is not None}
        return self.session.engine.in_flight | own

    def history_records(self) -> list[RunRecord]:
        """The runs the History panel shows: the ledger's newest that pass the filter (text
        over the prompt, starred only, hidden ones left out unless shown), at most ``history``.
        The filter looks ten panels' worth back (at least 200 runs); the ledger keeps them all."""
        room = max(0, self.history_limit - len(self._starting))
        flt = self._current_filter()
        window = self.session.ledger.records(limit=max(self.history_limit * 10, 200), newest_first=True)
        hidden = sum(present.HIDDEN_TAG in r.tags for r in window)
        self._window = (len(window) - (0 if flt.show_hidden else hidden), hidden)
        return [r for r in window if flt.keep(r)][:room] if room else []

    def _current_filter(self) -> present.HistoryFilter:
        self.filter = present.HistoryFilter(
            text=self.filter_text.value, starred_only=self.starred_only.value, show_hidden=self.show_hidden.value
        )
        return self.filter

    def _tag(self, run_id: str, tag: str, on: bool | None) -> RunRecord:
        """Add or remove (``on``; None toggles) a tag on a finished run, in the ledger."""
        record = self.session.ledger.get(run_id)
        if record is None:
            raise ValueError(f"no run {run_id!r} in the ledger")
        if run_id in self._in_flight():
            # The engine writes this run's record as it goes, and would drop the tag.
            self.message.value = present.problem("Wait until the run finishes to star or hide it")
            return record
        wanted = (tag not in record.tags) if on is None else on
        tags = check_tags(present.toggled_tags(record.tags, tag, wanted))
        if tags != record.tags:
            record = record.replace(tags=tags)
            self.session.ledger.save(record)
        self.refresh_history()
        return record

    def star(self, run_id: str, on: bool | None = None) -> RunRecord:
        """Star a run (``on=False`` un-stars; None toggles): the tag ``starred`` in the
        ledger, so it survives a restart and ``imgkit.runs()`` sees it."""
        return self._tag(run_id, present.STARRED_TAG, on)

    def hide(self, run_id: str, on: bool | None = None) -> RunRecord:
        """Hide a run from the History panel (``on=False`` shows it again; None toggles):
        the tag ``hidden`` in the ledger. The run stays in the ledger and its reports."""
        return self._tag(run_id, present.HIDDEN_TAG, on)

    def counts(self) -> dict[str, int]:
        """Counts of the History panel's entries by state (running, completed, failed, ...)."""
        return self._tally(self.history_records(), self._in_flight()).as_dict()

    def _tally(self, records: list[RunRecord], in_flight: frozenset[str]) -> present.Tally:
        return present.Tally.of(records, starting=len(self._starting), in_flight=in_flight)

    def refresh_history(self) -> None:
        """Re-read the last runs from the ledger and re-render History and its counters."""
        records = self.history_records()
        in_flight = self._in_flight()
        cards: list[RunCard] = []
        for record in records:
            card = self._cards.get(record.run_id)
            if card is None:
                card = self._cards[record.run_id] = self._new_card(title=record.prompt)
            if record.run_id not in in_flight:  # followed runs render their own events
                card.update(record, interrupted=present.is_interrupted(record, in_flight))
            cards.append(card)
        shown = {r.run_id for r in records}
        for run_id in list(self._cards):
            if run_id not in shown and run_id not in in_flight:
                del self._cards[run_id]
        listed = [*reversed(self._starting), *cards]
        children = tuple(c.widget for c in listed)
        if children != self.history.children:
            self.history.children = children
        for each in listed:
            each.set_shown(each is self._latest)
        tally = self._tally(records, in_flight)
        self.counter.value = present.counter(tally)
        self._render_filter_summary(len(records))
        following_here = any(not t.done() for t in self._runs)
        self.resume_button.description = f"Resume {tally.interrupted}"
        self.resume_button.layout.display = None if tally.interrupted else "none"
        # aresume() follows every unfinished run; not while ours are in flight (no double polling).
        self.resume_button.disabled = following_here

    def _render_filter_summary(self, shown: int) -> None:
        total, hidden = self._window
        value = present.filter_summary(shown, total, self.filter, hidden)
        if value != self.ui.filter_summary.value:
            self.ui.filter_summary.value = value

    def resume(self) -> asyncio.Task[list[GenerationResult]] | None:
        """Finish the runs an earlier kernel left unfinished (``imgkit.resume()`` with cards).

        Scheduled on the running loop when there is one (its task is returned); otherwise it
        is handed to imgkit's private loop thread and completes before returning.
        """
        return self._schedule(self._resume(), self._background)

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
        card = self._cards.get(record.run_id)
        if card is not None:
            card.update(record)
        if record.terminal:
            self.refresh_history()
