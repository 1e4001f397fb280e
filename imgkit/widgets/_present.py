"""What the studio says: pure functions and frozen values from session values to text.

Everything the studio shows as words is decided here, from plain values (a record, an
estimate, a balance, a model's limits), with no widget in sight: the price with its formula
and warnings, the banner, the history's tally ("1 running · 4 completed"), the size and
quality choices of a model, the text of a run card, and the messages for refused forms and
references. The layout (:mod:`imgkit.widgets._layout`) builds the widgets and the controller
(:mod:`imgkit.widgets._studio`) puts these strings in them; ``tests/test_studio_presenter.py``
checks them with plain asserts.

Strings that end up in an HTML widget are HTML, with every value from outside escaped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imgkit.errors import TASK_ERROR_HINTS, ValidationError
from imgkit.pricing import Estimate
from imgkit.providers.base import Balance
from imgkit.request import MB, SIZE_LABELS, ImageRequest, ModelProfile, ReferenceImage, RunRecord, pixel_size
from imgkit.widgets._common import ORANGE, RED, esc

__all__ = [
    "CANCELLED_NOTE",
    "CANCELLED_TAG",
    "CUSTOM_SIZE",
    "DROP_HINT",
    "HIDDEN_TAG",
    "INTERRUPTED_NOTE",
    "NO_SERVER_PATHS",
    "PRICE_UNAVAILABLE",
    "QUALITY_NAMES",
    "QUALITY_TOOLTIPS",
    "STARRED_TAG",
    "HistoryFilter",
    "Tally",
    "aspect_frame",
    "background_options",
    "banner",
    "cancel_done",
    "cannot_generate",
    "card_details",
    "clock_time",
    "code_block",
    "confirm_again",
    "confirm_label",
    "cost_text",
    "counter",
    "describe_error",
    "filter_summary",
    "fmt_credits",
    "frame_size",
    "generate_code",
    "generate_label",
    "hide_label",
    "history_title",
    "human_size",
    "images_problem",
    "invalid_reference",
    "is_cancelled",
    "is_interrupted",
    "lost_upload_note",
    "mask_caption",
    "masks_allowed",
    "mode_text",
    "never_uploaded",
    "no_estimate",
    "not_sent",
    "over_model_limit",
    "per_image",
    "preview_details",
    "preview_options",
    "price",
    "price_warning",
    "problem",
    "progress_line",
    "prompt_count",
    "provider_text",
    "quality_options",
    "quality_tooltips",
    "reference_caption",
    "reference_note",
    "reference_placeholder",
    "reference_problem",
    "refusal",
    "refused_references",
    "resolution_options",
    "resolution_tooltips",
    "run_meta",
    "short_id",
    "size_label",
    "size_options",
    "size_tooltips",
    "snapshot_html",
    "star_label",
    "status_badge",
    "time_left",
    "title_html",
    "toggled_tags",
    "too_many_references",
    "upload_label",
    "upload_tooltip",
    "when",
]

_STATUS_COLORS = {
    "completed": "#2e7d32",
    "failed": RED,
    "unknown": ORANGE,
    "interrupted": ORANGE,
}
_RUNNING_COLOR = "#1565c0"

#: Codes imgkit itself puts in a record (not the gateway's), with their hints.
_LOCAL_HINTS = {
    "upload_failed": "a reference image could not be uploaded; check it and retry",
    "connection_error": "the service could not be reached; check the network and retry",
    "unknown_outcome": "the service may have accepted it; imgkit.resume() checks again",
    "download_failed": "the service made and billed the images, but they could not be fetched; "
                       "imgkit.resume() tries again",
    "result_expired": "the service made and billed the images; result links expire after 24 h, "
                      "and these expired before they were fetched",
}

#: The quality buttons' tooltips, in the order of a model's qualities (low, medium, high).
QUALITY_TOOLTIPS = ("fastest, cheapest", "imgkit's default", "slowest, best (the API's own default)")

#: The price line while the form does not validate.
PRICE_UNAVAILABLE = '<span style="opacity:.7">— (fix the form to see the price)</span>'

#: What a card says about a run its kernel stopped following.
INTERRUPTED_NOTE = (
    "stopped following when its kernel ended; <b>Resume</b> (or "
    "<code>imgkit.resume()</code>) finishes it without paying again"
)


# --- numbers and names -------------------------------------------------------------------


def fmt_credits(value: float) -> str:
    """Credits as the price sheets state them (``13.90484``; ``:g`` would say 13.9048)."""
    return f"{value:.10g}"


def size_label(size: str) -> str:
    """``Landscape 3:2 · 1536x1024`` (with a multiplication sign) for a pixel size."""
    label = SIZE_LABELS.get(size)
    return f"{label} · {size.replace('x', '×')}" if label else size.replace("x", "×")


def human_size(size: int) -> str:
    """A file size for a reference chip: ``2.4 MB``, ``0.3 KB``."""
    return f"{size / MB:.1f} MB" if size >= MB else f"{max(size / 1024, 0.1):.1f} KB"


# --- the form's choices ------------------------------------------------------------------


#: The size choice that opens the custom ``WxH`` field (models with free sizes).
CUSTOM_SIZE = "custom"


def _shape(ratio: str) -> str:
    a, _, b = ratio.partition(":")
    if not (a.isdigit() and b.isdigit()):
        return ratio
    return "Square" if a == b else ("Portrait" if int(a) < int(b) else "Landscape")


def size_options(profile: ModelProfile) -> list[tuple[str, str]]:
    """The size buttons' (label, value) pairs for a model: its pixel sizes by shape
    (``Square 1:1 · 1024x1024``); for a model that names sizes by ratio, the ratios as they
    are (``16:9``; the shape and pixels are the tooltip, :func:`size_tooltips`), and
    ``Custom WxH`` when it takes free sizes."""
    if profile.ratio_sizes:
        return [(size_label(pixels), pixels) for pixels in profile.ratio_sizes.values()]
    options = [(size, size) for size in profile.sizes]
    if profile.free_sizes:
        options.append(("Custom W×H", CUSTOM_SIZE))
    return options


def size_tooltips(profile: ModelProfile, resolution: str | None = None) -> list[str]:
    """The size buttons' tooltips, in :func:`size_options`' order: the shape and the pixels
    each choice gives at ``resolution`` (``Landscape · 2048x1152 at 2K``)."""
    tips = []
    for _, value in size_options(profile):
        if value == "auto":
            tips.append("the service picks the size for the prompt")
        elif value == CUSTOM_SIZE:
            tips.append(
                f"your own width × height: multiples of {profile.wxh_multiple}, edges up to "
                f"{profile.wxh_max_edge} px, at most {profile.wxh_max_aspect:g}:1"
            )
        elif ":" in value and not profile.ratio_sizes:
            tier = (resolution or (profile.resolutions[0] if profile.resolutions else "1K")).upper()
            pixels = pixel_size(profile.name, value, tier)
            shown = f" · {pixels.replace('x', '×')} at {tier}" if pixels else f" at {tier}"
            tips.append(f"{_shape(value)}{shown}")
        else:
            tips.append(size_label(value))
    return tips


#: A tier's rough picture size, for its tooltip.
_TIER_WORDS = {"1K": "about 1 megapixel", "2K": "about 4 megapixels", "4K": "about 8 megapixels"}


def resolution_options(profile: ModelProfile) -> list[tuple[str, str]]:
    """The resolution tier buttons' (label, value) pairs (empty: the model has no tiers)."""
    return [(tier, tier) for tier in profile.resolutions]


def resolution_tooltips(profile: ModelProfile) -> list[str]:
    """The tier buttons' tooltips: how large a picture each tier draws."""
    return [f"{_TIER_WORDS.get(tier, tier)}; applies to ratio sizes" for tier in profile.resolutions]


def _carried(profile: ModelProfile, kind: str, **option: Any) -> bool:
    """Whether a provider of ``kind`` carries ``option`` for the model (the core's rule)."""
    size = "1:1" if "1:1" in profile.sizes else profile.sizes[0]
    try:
        request = ImageRequest.build("-", model=profile.name, size=size, **option)
    except ValidationError:
        return False
    return not request.unsupported_on(kind)


def background_options(profile: ModelProfile, kind: str) -> list[tuple[str, str]]:
    """The background buttons' (label, value) pairs where the model and the first provider
    allow a background: ``default`` (not sent, value ``""``) and each value it carries;
    empty when there is none to choose."""
    carried = [b for b in profile.backgrounds if _carried(profile, kind, background=b)]
    if not carried:
        return []
    order = {"opaque": 0, "transparent": 1, "auto": 2}
    return [("default", ""), *((b, b) for b in sorted(carried, key=lambda b: order.get(b, 9)))]


def preview_options(profile: ModelProfile, kind: str) -> list[tuple[str, int]]:
    """The live-preview buttons' (label, value) pairs, when the first provider streams the
    model's images (OpenAI-kind): ``off``, ``1``, ... up to the model's most; else empty."""
    if profile.max_previews <= 0 or not _carried(profile, kind, previews=1):
        return []
    return [("off", 0), *((str(count), count) for count in range(1, profile.max_previews + 1))]


def masks_allowed(profile: ModelProfile, kind: str) -> bool:
    """Whether a mask can be sent for the model to a provider of ``kind``."""
    if not profile.masks:
        return False
    if kind == "openai":
        return profile.openai
    return "mask" in profile.gateway_fields


def mask_caption(name: str, size: int) -> str:
    """The mask chip's caption: its name and size, and what a mask does."""
    return (
        f'<div style="font-size:85%;line-height:1.3"><b>{esc(name)}</b> · {human_size(size)}<br>'
        '<span style="opacity:.75">transparent pixels are redrawn; the rest is kept</span></div>'
    )


def images_problem(n: object, max_n: int) -> str:
    """What the images field says about its number ('' when it is allowed): ``1 to 10 images``."""
    if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= max_n:
        return ""
    allowed = "1 image only for this model" if max_n <= 1 else f"1 to {max_n} images"
    return problem(allowed)


def frame_size(profile: ModelProfile, size: str, resolution: str | None = None) -> tuple[int, int] | None:
    """The pixel width and height a size gives (None for ``auto`` or a size not understood)."""
    if size == "auto":
        return None
    pixels = pixel_size(profile.name, size, resolution) if ":" in size else size
    if pixels is None:
        return None
    w, _, h = pixels.lower().partition("x")
    return (int(w), int(h)) if w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0 else None


def aspect_frame(size: str, pixels: tuple[int, int] | None) -> str:
    """The empty preview: a dashed frame in the shape of the chosen size (HTML)."""
    if pixels is None:
        ratio, text = "1 / 1", "auto · the service picks the size"
    else:
        w, h = pixels
        ratio = f"{w} / {h}"
        text = f"{esc(size) + ' · ' if ':' in size else ''}{w}×{h}"
    # Wide frames fill the column; tall ones are capped so the frame stays in view.
    return (
        f'<div class="imgkit-aspect-frame" data-ratio="{ratio}" style="aspect-ratio:{ratio};'
        "width:100%;max-width:min(100%, calc(420px * " + ratio.replace(" / ", "/") + "));"
        'border:2px dashed #b0bec5;border-radius:6px;display:flex;align-items:center;'
        'justify-content:center;color:#78909c;box-sizing:border-box;margin:6px 0">'
        f'<span style="font-size:90%">{text}<br>Click Generate to see the preview</span></div>'
    )


#: Each quality in words for people; the price multiplier is the detail (the tooltip).
QUALITY_NAMES = {"low": "low · fastest", "medium": "medium", "high": "high · best"}


def quality_options(profile: ModelProfile, sheet: object) -> list[tuple[str, str]]:
    """The quality buttons' (label, value) pairs: ``low · fastest``, ``medium``, ``high · best``."""
    del sheet  # the multiplier is the tooltip's detail (quality_tooltips)
    return [(QUALITY_NAMES.get(q, q), q) for q in profile.qualities]


def quality_tooltips(profile: ModelProfile, sheet: object) -> list[str]:
    """The quality buttons' tooltips: the words, with the multiplier on a per-image sheet."""
    multipliers = getattr(sheet, "quality", None)
    tips = []
    for index, q in enumerate(profile.qualities):
        words = QUALITY_TOOLTIPS[index] if index < len(QUALITY_TOOLTIPS) else q
        if isinstance(multipliers, Mapping) and q in multipliers:
            words = f"×{multipliers[q]:g} the base price; {words}"
        tips.append(words)
    return tips


# --- the form's messages -----------------------------------------------------------------


def problem(text: str) -> str:
    """A refusal or validation message, in red (the controller recognises it by its class)."""
    return f'<span class="imgkit-problem" style="color:{RED}">{esc(text)}</span>'


def prompt_count(length: int, limit: int) -> str:
    """``12 / 2000 characters``, red with the excess past the model's limit."""
    over = length > limit
    color = RED if over else "inherit"
    note = f" · {length - limit} over the limit" if over else ""
    return f'<span style="color:{color};font-size:90%">{length} / {limit} characters{note}</span>'


def mode_text(mode: str, references: int) -> str:
    """``Mode: image-to-image (2 reference images)``."""
    count = f" ({references} reference image{'s' if references != 1 else ''})" if references else ""
    return f'Mode: <b class="imgkit-mode-name">{esc(mode)}</b>{count}'


def reference_note(profile: ModelProfile, websocket_limit: int) -> str:
    """What references a model takes, and the Jupyter server's silent upload limit, folded
    under a toggle (the drop zone says it out loud only when an upload is lost)."""
    formats = ", ".join("JPEG, JPG" if f == "jpeg" else f.upper() for f in profile.image_formats)
    return (
        '<details style="font-size:88%;opacity:.85;line-height:1.35"><summary style="cursor:pointer">'
        f"Up to {profile.max_images} images, {profile.max_image_bytes // MB} MB each; {formats}</summary>"
        "Images are judged by content. With references the run is <b>image-to-image</b>.<br>"
        "A browser upload reaches the kernel as <b>one</b> message, and a Jupyter server with "
        f"default settings drops messages over {websocket_limit // MB} MiB without a word "
        "(Tornado's <code>websocket_max_message_size</code>). <code>make lab</code> and the "
        "Binder launch raise it; elsewhere, if a large upload never shows up here, type the "
        "file's local path in the field above instead.</details>"
    )


def reference_caption(ref: ReferenceImage) -> str:
    """A reference chip's caption: its name over its size (or ``URL``), the full source on hover."""
    label = ref.name or ref.url or "image"
    detail = human_size(ref.size_bytes) if ref.size_bytes else "URL"
    return (
        f'<div title="{esc(ref.url or ref.path or label)}" style="width:100px;font-size:80%;'
        f'line-height:1.3"><div style="overflow:hidden;text-overflow:ellipsis;white-space:nowrap">'
        f'{esc(label)}</div><div style="opacity:.7">{detail}</div></div>'
    )


def refusal(label: object, size: int | None, reason: str) -> str:
    """``'a.png' (34.0 KB) was not added: <reason>`` (plain text; :func:`problem` makes it HTML)."""
    shown = f"'{label}'" + (f" ({human_size(size)})" if size is not None else "")
    return f"{shown} was not added: {reason}"


#: Why a typed path is refused on a shared page.
NO_SERVER_PATHS = "this page takes uploads and http(s) URLs only; it does not read files on the server"


def reference_placeholder(local_paths: bool) -> str:
    """The URL field's placeholder: URLs, and local paths where they are read."""
    if local_paths:
        return "https://example.com/image1.png  or  /path/to/local.png  (Enter to add)"
    return "https://example.com/image1.png  (Enter to add)"


def upload_label(count: int) -> str:
    """The picker button's text: ``Add images``, then ``Add images (2)`` with references."""
    return f"Add images ({count})" if count else "Add images"


def upload_tooltip(profile: ModelProfile, count: int) -> str:
    """The picker button's tooltip: what is in the form and what more it takes."""
    room = max(profile.max_images - count, 0)
    have = f"{count} reference image{'s' if count != 1 else ''} added; " if count else ""
    return f"{have}room for {room} more (up to {profile.max_images}, {profile.max_image_bytes // MB} MB each)"


#: The drop zone's words beside the picker.
DROP_HINT = "or drop images here, or click here and paste (Ctrl/Cmd+V)"


def lost_upload_note(websocket_limit: int) -> str:
    """What the drop zone says when a file never reached the kernel: the server dropped it.

    The element with class ``imgkit-lost-name`` receives the file's name in the browser.
    """
    return (
        '<b class="imgkit-lost-name"></b> did not reach the kernel. A Jupyter server with default '
        f"settings drops an upload over {websocket_limit // MB} MiB without a word (Tornado's "
        "<code>websocket_max_message_size</code>); <code>make lab</code>, <code>imgkit app</code> and "
        "the Binder launch raise it. Or type the file's path or URL in the field below."
    )


def reference_problem(label: object, size: int | None, error: ValidationError) -> str:
    """Why a reference was not added, in plain words: ``File not found: sketch.png``, or
    :func:`refusal` with what the image must be."""
    if error.allowed.startswith("an existing image file"):
        text = str(label)
        name = text if text.startswith("data:") else text.replace("\\", "/").rpartition("/")[2] or text
        name = name if len(name) <= 60 else name[:57] + "…"
        return (
            f"File not found: {name}, so it was not added (give an existing image file, an http(s) URL, "
            "or drop the image above)"
        )
    return refusal(label, size, invalid_reference(error))


def too_many_references(profile: ModelProfile) -> str:
    """Why a reference past the model's limit was not added."""
    return f"at most {profile.max_images} reference images per run ({profile.name}); remove one first"


def invalid_reference(error: object) -> str:
    """Why a reference was not added, from the core's validation message (what it must be)."""
    text = str(error)
    return f"it must be {text.partition(' is not allowed: ')[2] or text}"


def over_model_limit(profile: ModelProfile, count: int) -> str:
    """The form holds more references than a newly chosen model takes."""
    return (
        f"{profile.name} takes at most {profile.max_images} reference images; remove "
        f"{count - profile.max_images}"
    )


def never_uploaded(reference: str) -> str:
    """A re-used run's local reference that has no URL to re-use it by."""
    return f"{reference!r} was a local image that was never uploaded; add it again"


def cannot_generate(error: object) -> str:
    """The form does not validate: the core's reason, in plain words for a field's error
    (``Write a prompt first``, ``The prompt must be at most 2000 characters``)."""
    if isinstance(error, ValidationError):
        if error.field == "prompt" and not str(error.value).strip():
            return "Write a prompt first (it must be non-empty text)"
        field = {"n": "number of images"}.get(error.field, error.field.replace("_", " "))
        hint = f" ({error.hint})" if error.hint else ""
        return f"The {field} must be {error.allowed}{hint}"
    return f"Cannot generate yet: {error}"


def not_sent(error: object) -> str:
    """The session refused a run before sending it (budget, no provider)."""
    return f"Nothing was sent: {error}"


def refused_references(messages: Iterable[str]) -> str:
    """The reference area's message for the images that were refused ('' when none were)."""
    messages = list(messages)
    if not messages:
        return ""
    return '<div class="imgkit-refused">' + "<br>".join(problem(m) for m in messages) + "</div>"


# --- the price ---------------------------------------------------------------------------


def no_estimate(reason: object) -> str:
    """The price line when no sheet prices the request."""
    return f'<span style="color:{ORANGE}">no estimate: {esc(reason)}</span>'


def price(est: Estimate, sheet: object) -> str:
    """The estimate in credits, dollars and yuan, with the sheet's formula and name.

    ``sheet`` is the price sheet ``est`` came from (None when it is not a registered one);
    a per-image sheet names the formula's terms.
    """
    # The sheet's formula, with the total as exact as the estimate's (its text rounds more).
    factors = est.formula.rpartition(" = ")[0] or est.formula
    formula = f"{factors.replace(' x ', ' × ')} = {fmt_credits(est.credits)} credits"
    per_image_sheet = isinstance(getattr(sheet, "quality", None), Mapping)
    terms = "base × quality × size × n = " if per_image_sheet else ""
    each = f'<span class="imgkit-per-image">{per_image(est)}</span><br>'
    return (
        f'<span class="imgkit-price-total" style="font-size:120%"><b>{fmt_credits(est.credits)} credits</b>'
        f" · ${est.usd:.4f} · ¥{est.cny:.4f}</span><br>"
        f'<span style="font-size:90%;opacity:.85">{each}{terms}'
        f"{esc(formula)}<br>price sheet <code>{esc(est.sheet)}</code></span>"
    )


def price_warning(
    credits: float,
    *,
    warn_credits: float | None,
    remaining: float | None = None,
    balance: Balance | None = None,
) -> str:
    """A warning when a run's estimate passes the form's threshold, the budget left or the
    service's balance ('' when it passes none)."""
    reasons = []
    if warn_credits is not None and credits > warn_credits:
        reasons.append(f"above the per-run threshold of {fmt_credits(warn_credits)} credits")
    if remaining is not None and credits > remaining:
        reasons.append(f"more than the remaining budget ({fmt_credits(remaining)} credits left)")
    if balance is not None and not balance.unlimited and credits > balance.remaining_credits:
        left = fmt_credits(balance.remaining_credits)
        reasons.append(f"more than the balance the service reports ({left} credits)")
    if not reasons:
        return ""
    return (
        f'<span class="imgkit-warning" style="color:{ORANGE}">⚠ This run costs '
        f"{fmt_credits(credits)} credits: {esc('; '.join(reasons))}</span>"
    )


def per_image(est: Estimate) -> str:
    """``2.4192 credits per image``: the sheet's price of one image of these settings."""
    return f"{fmt_credits(est.per_image_credits)} credits per image"


# --- the Generate button -----------------------------------------------------------------


def generate_label(credits: float | None) -> str:
    """The button's text with the run's price on it: ``Generate · 1.85 credits``."""
    return f"Generate · {fmt_credits(credits)} credits" if credits is not None else "Generate"


def confirm_label(credits: float | None) -> str:
    """The button's text while it asks before spending again."""
    return f"Yes, generate again · {fmt_credits(credits)} credits" if credits is not None else "Yes, generate again"


def confirm_again(seconds: float, credits: float | None, window: float) -> str:
    """Why a second click did not start a run: it asks first (HTML)."""
    cost = f" for another {fmt_credits(credits)} credits" if credits is not None else ""
    return (
        f'<span class="imgkit-confirm" style="color:{ORANGE}">You started a run {seconds:.1f} s ago. '
        f"Click the button again within {window:g} s to start one more{cost}.</span>"
    )


# --- show code --------------------------------------------------------------------------


def generate_code(
    prompt: str,
    *,
    model: str,
    size: str,
    quality: str,
    n: int,
    references: Iterable[ReferenceImage] = (),
    options: Mapping[str, Any] | None = None,
    mask: ReferenceImage | None = None,
) -> str:
    """The ``imgkit.generate(...)`` call equal to the form, ready to paste into a cell.

    A reference is written as its URL or local path; an uploaded one (bytes only in this
    kernel) is named in a comment, since its bytes cannot be pasted. ``options`` are the
    model's further fields the form sets (``resolution``, ``background``, ``previews``), and
    ``mask`` the mask, written the same way as a reference.
    """
    sources: list[str] = []
    uploaded: list[str] = []
    for ref in references:
        if ref.url is not None:
            sources.append(ref.url)
        elif ref.path is not None:
            sources.append(str(ref.path))
        else:
            uploaded.append(ref.name or "image")
    lines = ["import imgkit", "", "result = imgkit.generate(", f"    {prompt!r},", f"    model={model!r},"]
    lines += [f"    size={size!r},", f"    quality={quality!r},", f"    n={n!r},"]
    for name, value in (options or {}).items():
        if value is not None:
            lines.append(f"    {name}={value!r},")
    if sources:
        lines.append("    images=[" + ", ".join(repr(src) for src in sources) + "],")
    if mask is not None:
        if mask.url is not None or mask.path is not None:
            lines.append(f"    mask={(mask.url or str(mask.path))!r},")
        else:
            uploaded.append(f"{mask.name or 'mask'} (the mask)")
    if uploaded:
        names = ", ".join(uploaded)
        lines.append(f"    # uploaded in the studio, not in this call (save them and add their paths): {names}")
    lines += [")", "result"]
    return "\n".join(lines)


def code_block(code: str) -> str:
    """The code under a **Show code** toggle (HTML)."""
    return (
        '<details class="imgkit-code"><summary style="cursor:pointer">Show code</summary>'
        f'<pre class="imgkit-code-text" style="user-select:all;white-space:pre-wrap;font-size:85%;'
        f'background:#f5f5f5;padding:6px;border-radius:4px">{esc(code)}</pre></details>'
    )


# --- the banner --------------------------------------------------------------------------


def banner(
    *,
    sandbox: bool,
    base_url: str,
    key_hint: str | None,
    model: str,
    sheet_name: str,
    sheet_date: str,
    sheet_source: str,
    balance: Balance | None = None,
    balance_note: str = "",
    remaining: float | None = None,
    team_budget: bool = False,
) -> str:
    """Sandbox or live (with the key's last characters only), model, price sheet, the
    service's balance and the budget left (the whole team's, for a team budget)."""
    if sandbox:
        badge = f'<b style="background:{ORANGE};color:white;padding:1px 6px;border-radius:3px">SANDBOX</b>'
        where = "placeholder images, no key, nothing is charged"
    else:
        badge = '<b style="background:#2e7d32;color:white;padding:1px 6px;border-radius:3px">LIVE</b>'
        where = esc(base_url) + (f" · key …{esc(key_hint)}" if key_hint else "")
    parts = [
        f"{badge} {where}",
        f"model <b>{esc(model)}</b>",
        f'price sheet <code title="{esc(sheet_source)}">{esc(sheet_name)}</code> ({esc(sheet_date)})',
    ]
    if balance is not None:
        parts.append(
            "balance <b>unlimited</b>"
            if balance.unlimited
            else f'balance <b class="imgkit-balance">{fmt_credits(balance.remaining_credits)} credits</b>'
            f' <span style="opacity:.7">({esc(balance.limit_note)})</span>'
        )
    elif balance_note:
        parts.append(f'<span style="opacity:.7">{esc(balance_note)}</span>')
    if remaining is not None:
        parts.append(f"{'team budget' if team_budget else 'budget'} <b>{fmt_credits(remaining)} credits</b> left")
    return '<div style="padding:4px 8px;background:#f5f5f5;border-radius:4px">' + " · ".join(parts) + "</div>"


# --- the history -------------------------------------------------------------------------


def is_interrupted(record: RunRecord, in_flight: Collection[str]) -> bool:
    """An unfinished run that this process is not following (the engine's ``in_flight``):
    an earlier kernel left it, and ``resume()`` can finish it."""
    return not record.terminal and record.run_id not in in_flight


@dataclass(frozen=True, slots=True)
class Tally:
    """How many of the History panel's runs are in each state.

    Attributes:
        running: runs in flight, including ones asked for that have no record yet.
        completed, failed, unknown: finished runs by outcome.
        interrupted: unfinished runs that nobody in this process follows.
    """

    running: int = 0
    completed: int = 0
    failed: int = 0
    unknown: int = 0
    interrupted: int = 0

    @classmethod
    def of(cls, records: Iterable[RunRecord], *, starting: int = 0, in_flight: Collection[str] = ()) -> Tally:
        """Count ``records``, plus ``starting`` runs that have no record yet."""
        counts = {"running": starting, "completed": 0, "failed": 0, "unknown": 0, "interrupted": 0}
        for record in records:
            if is_interrupted(record, in_flight):
                counts["interrupted"] += 1
            elif not record.terminal:
                counts["running"] += 1
            else:
                counts[record.status] += 1
        return cls(**counts)

    def as_dict(self) -> dict[str, int]:
        return {
            "running": self.running,
            "completed": self.completed,
            "failed": self.failed,
            "unknown": self.unknown,
            "interrupted": self.interrupted,
        }

    @property
    def text(self) -> str:
        """``1 running · 4 completed · 1 failed`` (the last three only when not zero)."""
        text = f"{self.running} running · {self.completed} completed"
        for name in ("failed", "unknown", "interrupted"):
            count = getattr(self, name)
            if count:
                text += f" · {count} {name}"
        return text


def counter(tally: Tally) -> str:
    """The History panel's tally, as HTML."""
    return f'<span class="imgkit-counts" style="font-weight:600">{tally.text}</span>'


#: The tags the History panel's star and hide buttons set (kept in the ledger with the run).
STARRED_TAG = "starred"
HIDDEN_TAG = "hidden"


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Which runs the History panel lists.

    Attributes:
        text: words that must all appear in the prompt (case-insensitive; '' lists all).
        starred_only: only runs tagged :data:`STARRED_TAG`.
        show_hidden: also runs tagged :data:`HIDDEN_TAG` (left out by default).
    """

    text: str = ""
    starred_only: bool = False
    show_hidden: bool = False

    @property
    def active(self) -> bool:
        """Whether it leaves anything out besides hidden runs."""
        return bool(self.text.strip()) or self.starred_only

    def keep(self, record: RunRecord) -> bool:
        """Whether ``record`` is listed."""
        if HIDDEN_TAG in record.tags and not self.show_hidden:
            return False
        if self.starred_only and STARRED_TAG not in record.tags:
            return False
        prompt = record.prompt.casefold()
        return all(word in prompt for word in self.text.casefold().split())


def toggled_tags(tags: Iterable[str], tag: str, on: bool) -> tuple[str, ...]:
    """``tags`` with ``tag`` added (``on``) or removed, keeping their order."""
    kept = tuple(t for t in tags if t != tag)
    return (*kept, tag) if on else kept


def star_label(starred: bool) -> str:
    """The star button's text: a filled star on a starred run."""
    return "★" if starred else "☆"


def hide_label(hidden: bool) -> str:
    return "Unhide" if hidden else "Hide"


def filter_summary(shown: int, total: int, flt: HistoryFilter, hidden: int) -> str:
    """``3 of 12 runs match`` under an active filter; what hiding left out otherwise ('' when nothing)."""
    parts = []
    if flt.active:
        parts.append(f"{shown} of {total} run{'s' if total != 1 else ''} match")
    if hidden and not flt.show_hidden:
        parts.append(f"{hidden} hidden")
    return f'<span class="imgkit-filter-summary" style="opacity:.75">{" · ".join(parts)}</span>' if parts else ""


def history_title(limit: int) -> str:
    return (
        f'<span style="font-weight:600">History</span> '
        f'<span style="opacity:.7">(last {limit}; older runs stay in '
        "the ledger: <code>imgkit.runs()</code>)</span>"
    )


# --- progress and cancelling ------------------------------------------------------------

#: The tag a run gets when the user stops following it.
CANCELLED_TAG = "cancelled-by-user"

#: What a card says about a run the user cancelled (there is no cancel endpoint).
CANCELLED_NOTE = (
    "You stopped following this run. The service may still finish it and bill it; "
    "<b>Resume</b> (or <code>imgkit.resume()</code>) checks and fetches it without paying again."
)


def is_cancelled(record: RunRecord) -> bool:
    """The user stopped following this unfinished run."""
    return CANCELLED_TAG in record.tags and not record.terminal


def _seconds(value: float) -> str:
    value = max(value, 0.0)
    if value < 60:
        return f"{value:.0f} s"
    return f"{int(value // 60)} min {int(value % 60):02d} s"


def time_left(record: RunRecord, now: float) -> float | None:
    """Seconds a running run probably still needs, or None when nothing says.

    From the service's progress once it reports some (the time so far, scaled), else from
    the task's ``estimated_time``; never below zero.
    """
    if record.terminal or record.submitted_at is None:
        return None
    elapsed = now - record.submitted_at
    if record.status == "processing" and 5 <= record.progress < 100:
        return max(elapsed * (100 - record.progress) / record.progress, 0.0)
    if record.estimated_s is not None:
        return max(record.estimated_s - elapsed, 0.0)
    return None


def progress_line(record: RunRecord | None, now: float, *, started: float | None = None) -> str:
    """``processing 40% · 12 s elapsed · about 18 s left`` for a run in flight ('' when done).

    Args:
        record: the run, or None while it has no record yet.
        now: the wall-clock time (``time.time()``), injected by tests.
        started: when the click happened, for a run without a record.
    """
    if record is None:
        return f"starting · {_seconds(now - started)} elapsed" if started is not None else "starting"
    if record.terminal or is_cancelled(record):
        return ""
    state = record.status + (f" {record.progress}%" if record.status == "processing" and record.progress else "")
    parts = [state, f"{_seconds(now - record.created_at)} elapsed"]
    left = time_left(record, now)
    if left is not None and left > 0:
        parts.append(f"about {_seconds(left)} left")
    elif left is not None and record.estimated_s is not None and record.submitted_at is not None:
        parts.append(f"longer than the service's estimate of {_seconds(record.estimated_s)}")
    return " · ".join(parts)


def cancel_done(record: RunRecord | None) -> str:
    """The message after Cancel (HTML)."""
    which = f" {esc(short_id(record.run_id))}" if record is not None else ""
    return f'<span class="imgkit-cancelled" style="color:{ORANGE}">Cancelled run{which}. {CANCELLED_NOTE}</span>'


# --- run cards and the preview -----------------------------------------------------------


def provider_text(record: RunRecord) -> str:
    """``via cheap (after pricey: http_503)``: who served the run and who was passed over."""
    text = f"via {esc(record.provider)}"
    tried = [t for t in record.providers_tried if t.get("provider") != record.provider]
    if tried:
        passed = ", ".join(f"{esc(t.get('provider', '?'))}: {esc(t.get('reason', '?'))}" for t in tried)
        text += f" (after {passed})"
    return text


def status_badge(status: str, progress: int | None = None) -> str:
    """``● processing 40%`` in the status's colour."""
    color = _STATUS_COLORS.get(status, _RUNNING_COLOR)
    text = status
    if progress and status == "processing":
        text += f" {progress}%"
    return (
        f'<span class="imgkit-status imgkit-status-{esc(status)}" style="color:{color};'
        f'font-weight:600">● {esc(text)}</span>'
    )


def cost_text(record: RunRecord) -> str:
    """``2.4192 credits ($0.0336 · ¥0.2385) · charged 2.4192`` (plain text)."""
    if record.est_credits is None:
        text = "no estimate"
    else:
        text = f"{fmt_credits(record.est_credits)} credits"
        if record.est_usd is not None and record.est_cny is not None:
            text += f" (${record.est_usd:.4f} · ¥{record.est_cny:.4f})"
    if record.credits_charged is not None:
        text += f" · charged {fmt_credits(record.credits_charged)}"
    elif record.credits_reserved is not None:
        text += f" · reserved {fmt_credits(record.credits_reserved)}"
    return text


def latency_text(record: RunRecord) -> str:
    return f"{record.latency_s:.1f} s" if record.latency_s is not None else ""


def describe_error(record: RunRecord) -> str:
    """The gateway's code, a plain-language hint and the service's own words, as HTML."""
    if record.status == "unknown":
        reason = record.notes or record.error_message or "the outcome could not be known"
        return (
            f'<b>unknown outcome</b>: {esc(reason)}<br><span style="opacity:.8">Not resent, '
            "so it cannot be paid twice; <code>imgkit.resume()</code> checks again.</span>"
        )
    code = record.error_code or "unknown_error"
    hint = TASK_ERROR_HINTS.get(code) or _LOCAL_HINTS.get(code, "")
    said = (record.error_message or "").strip().splitlines()
    text = f"<code>{esc(code)}</code>"
    if hint:
        text += f": {esc(hint)}"
    if said:
        text += f'<br><span style="opacity:.8">The service said: {esc(said[0][:300])}</span>'
    return text


def title_html(prompt: str, status_html: str, details: str = "") -> str:
    """A card's or the preview's head: the prompt (shortened, whole on hover), then details
    and status."""
    short = prompt if len(prompt) <= 140 else prompt[:137] + "…"
    return (
        f'<div style="line-height:1.35"><b title="{esc(prompt)}">{esc(short)}</b><br>'
        f'<span style="font-size:90%">{details}{status_html}</span></div>'
    )


def card_details(record: RunRecord) -> str:
    """A history card's line: tier, size, n, mode, cost, provider and latency."""
    details = (
        f"{esc(record.quality)} · {esc(size_label(record.size))} · n={record.n}"
        f"{' · image-to-image' if record.mode == 'image-to-image' else ''}"
        f" · {esc(cost_text(record))} · {provider_text(record)}"
    )
    latency = latency_text(record)
    if latency:
        details += f" · {latency}"
    return details + "<br>"


def clock_time(timestamp: float, *, tz: dt.tzinfo | None = None) -> str:
    """``14:03:27``: when a run was asked for, in local time (``tz`` for tests)."""
    return dt.datetime.fromtimestamp(timestamp, tz).strftime("%H:%M:%S")


def short_id(run_id: str) -> str:
    """The last 8 characters of a run id: enough to tell runs apart on a card."""
    return run_id[-8:]


def run_meta(record: RunRecord, *, tz: dt.tzinfo | None = None) -> str:
    """The gallery's line: cost, how long it took, who served it, when and which run (HTML)."""
    parts = [esc(cost_text(record))]
    latency = latency_text(record)
    if latency:
        parts.append(f"took {latency}")
    parts.append(provider_text(record))
    parts.append(f'{clock_time(record.created_at, tz=tz)} · run <code>{esc(short_id(record.run_id))}</code>')
    return " · ".join(parts)


def when(record: RunRecord, *, tz: dt.tzinfo | None = None) -> str:
    """A card's line ``14:03:27 · run 89abcdef``: when a run was asked for, and which one."""
    return (
        f'<span class="imgkit-card-when" style="opacity:.75">{clock_time(record.created_at, tz=tz)} · run '
        f"<code>{esc(short_id(record.run_id))}</code></span><br>"
    )


def preview_details(record: RunRecord) -> str:
    """The preview's line: tier, size, n, cost, provider and latency."""
    details = (
        f"{esc(record.quality)} · {esc(size_label(record.size))} · n={record.n} · {esc(cost_text(record))}"
        f" · {provider_text(record)}"
    )
    latency = latency_text(record)
    if latency:
        details += f" · latency {latency}"
    return details + "<br>"


# --- the static snapshot -----------------------------------------------------------------


def snapshot_html(
    records: Sequence[RunRecord], images: Sequence[tuple[str, str]], *, tz: dt.tzinfo | None = None
) -> str:
    """What a saved notebook shows where the live studio cannot load (no kernel, a static
    viewer): the last images and a table of the last runs (HTML, no script).

    Args:
        records: the runs for the table, newest first.
        images: (``data:`` URI of a small JPEG, caption) of the last images, newest first.
        tz: the time zone of the table's times (local when None; tests inject one).
    """
    tiles = "".join(
        f'<figure style="margin:0 8px 8px 0;display:inline-block;vertical-align:top">'
        f'<img class="imgkit-snapshot-image" src="{esc(uri)}" alt="{esc(caption)}" '
        'style="max-width:160px;max-height:160px;border-radius:4px;display:block">'
        f'<figcaption style="font-size:80%;opacity:.75;max-width:160px;overflow:hidden;'
        f'text-overflow:ellipsis;white-space:nowrap">{esc(caption)}</figcaption></figure>'
        for uri, caption in images
    )
    cell = 'style="padding:2px 8px;text-align:left;border-bottom:1px solid #e0e0e0"'
    head = "".join(f"<th {cell}>{name}</th>" for name in ("time", "run", "prompt", "settings", "status", "cost"))
    rows = []
    for record in records:
        prompt = record.prompt if len(record.prompt) <= 80 else record.prompt[:77] + "…"
        star = "★ " if STARRED_TAG in record.tags else ""
        settings = f"{record.model} · {record.quality} · {size_label(record.size)} · n={record.n}"
        values = (
            clock_time(record.created_at, tz=tz), f"<code>{esc(short_id(record.run_id))}</code>",
            star + esc(prompt), esc(settings), esc(record.status), esc(cost_text(record)),
        )
        rows.append("<tr>" + "".join(f"<td {cell}>{v}</td>" for v in values) + "</tr>")
    table = (
        f'<table class="imgkit-snapshot-history" style="border-collapse:collapse;font-size:85%">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p style="opacity:.7">No runs yet.</p>'
    )
    return (
        '<div class="imgkit-snapshot" style="border:1px solid #e0e0e0;border-radius:6px;padding:8px">'
        "<b>imgkit studio</b> · static snapshot: the live form needs a running kernel "
        "(run this cell again to use it)."
        f'<div style="margin-top:6px">{tiles}</div>{table}</div>'
    )
