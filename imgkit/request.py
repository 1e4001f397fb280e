"""Requests, model profiles, task states and run records: pure values, no I/O beyond
reading a reference image's header (and the shipped pixel table) to judge it.

Everything a user can get wrong is checked here, before any request is sent, and reported
as a :class:`~imgkit.errors.ValidationError` naming the field, the value and what is allowed
for the model asked for. :meth:`ImageRequest.build` is the one validator.

A model's limits are data (:class:`ModelProfile` in :data:`MODELS`). Where the sources
disagree (``shared/spec/provider-apis-addendum.md``, open questions), the reading chosen is
written next to the rule:

- gpt-image-2-beta follows its current docs page (since 2026-07-08): ``auto`` or a ratio at
  1K only, no ``WxH``, no quality, n fixed at 1. The product page still prices 2K, 4K and
  ``WxH``; the price sheet keeps those tiers so such runs still have a price.
- ``resolution`` is accepted with a ratio size only. The docs say it is ignored for ``WxH``
  and ``auto``; refusing it there says so before a user pays for a size they did not mean.
- a mask must be a PNG with an alpha channel and the first reference image's pixel size.
  The gateway regenerates pixels with alpha below 255, OpenAI edits where alpha is 0; the
  check is the same for both, and the sandbox draws the region where alpha is below 255.
- ``background="transparent"`` is allowed on gpt-image-2 (both services now call it a
  preview), ``auto`` only on OpenAI.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import json
import os
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from imgkit.errors import ValidationError

__all__ = [
    "MODELS",
    "QUALITIES",
    "RESOLUTIONS",
    "SIZES",
    "SUCCESSORS",
    "Completed",
    "Failed",
    "ImageRequest",
    "JobEvent",
    "ModelProfile",
    "Pending",
    "Processing",
    "ReferenceImage",
    "RunRecord",
    "RunStatus",
    "Secret",
    "TaskStatus",
    "check_tags",
    "normalize_size",
    "pixel_size",
    "sniff_image_format",
    "successor",
    "tier_for_pixels",
]

Quality = Literal["low", "medium", "high"]
QUALITIES: tuple[str, ...] = ("low", "medium", "high")
RESOLUTIONS: tuple[str, ...] = ("1K", "2K", "4K")

#: The three sizes of gpt-image-1, pixel form, and their ratio aliases.
SIZES: dict[str, str] = {"1:1": "1024x1024", "2:3": "1024x1536", "3:2": "1536x1024"}
SIZE_LABELS: dict[str, str] = {
    "1024x1024": "Square 1:1",
    "1024x1536": "Portrait 2:3",
    "1536x1024": "Landscape 3:2",
}

MB = 1024 * 1024
_FORMATS = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}


def _load_pixel_table() -> dict[str, Any]:
    text = (resources.files("imgkit") / "data" / "sizes" / "gpt-image-2-2026-12.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


_SIZE_DATA = _load_pixel_table()


def _swap(pixels: str) -> str:
    w, _, h = pixels.partition("x")
    return f"{h}x{w}"


def _with_portraits(cells: Mapping[str, str]) -> dict[str, str]:
    out = dict(cells)
    for ratio, pixels in cells.items():
        a, _, b = ratio.partition(":")
        if a != b:
            out[f"{b}:{a}"] = _swap(pixels)
    return out


#: gpt-image-2's ratio x resolution table: tier -> ratio -> ``WxH`` (all 15 ratios).
PIXEL_TABLE: dict[str, dict[str, str]] = {
    tier: _with_portraits(cells) for tier, cells in _SIZE_DATA["tiers"].items()
}
_TIER_MAX_PIXELS: dict[str, int] = dict(_SIZE_DATA["tier_max_pixels"])
#: The size estimates assume for ``size="auto"`` on gpt-image-2 (the gateway's cap).
AUTO_ESTIMATE_SIZE: str = _SIZE_DATA["auto_estimate_size"]


def tier_for_pixels(width: int, height: int) -> str:
    """The resolution tier a ``WxH`` size is billed in (1K up to 1.7 MP, 2K up to 4.4 MP).

    >>> tier_for_pixels(2048, 1152)
    '2K'
    """
    pixels = width * height
    for tier in RESOLUTIONS:
        if pixels <= _TIER_MAX_PIXELS[tier]:
            return tier
    return RESOLUTIONS[-1]


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What one model accepts, as documented by the gateway (spec §1a, §1b, addendum A, B).

    A value a model accepts on only one kind of provider (the ``output_*`` options and
    ``background="auto"`` exist on OpenAI's API, not on the gateway) is accepted here and
    named by :meth:`ImageRequest.unsupported_on`, so a router can send it where it is served.

    Attributes:
        name: the ``model`` value sent on the wire.
        prompt_max_chars: the longest prompt, in characters (Unicode code points).
        sizes: the accepted ``size`` values after normalisation.
        ratio_sizes: ratio aliases and the pixel size each one means (empty: ratios are sent
            as they are and the service picks the pixels).
        free_sizes: whether ``WxH`` sizes outside ``sizes`` are allowed, under the ``wxh_*``
            rules below.
        qualities: accepted ``quality`` values.
        api_default_quality: what the service uses when ``quality`` is left out.
        default_quality: what :meth:`ImageRequest.build` uses when no quality is given.
        gateway_qualities: the qualities the gateway takes (None: all of ``qualities``);
            an empty tuple means the gateway has no ``quality`` field for the model.
        max_n: the largest ``n``.
        max_images: the most reference images per request.
        max_image_bytes: the largest reference image.
        max_image_pixels, max_image_edge: caps on a reference image's W x H and longest edge
            (None: no cap documented).
        image_formats: the reference image formats (judged by content).
        resolutions: the accepted ``resolution`` tiers (empty: no such field).
        pixel_table: tier -> ratio -> ``WxH``, the pixels a ratio size gives.
        wxh_multiple, wxh_min_edge, wxh_max_edge, wxh_min_pixels, wxh_max_pixels,
            wxh_max_aspect: the rules of a free ``WxH`` size.
        backgrounds: accepted ``background`` values (empty: no such field).
        masks: whether a ``mask`` is accepted (edits only).
        max_mask_bytes: the largest mask.
        output_formats: accepted ``output_format`` values (OpenAI).
        moderations: accepted ``moderation`` values (OpenAI generations).
        input_fidelities: accepted ``input_fidelity`` values (OpenAI edits).
        max_previews: the most partial images a stream may send (0: no streaming).
        gateway_fields: the optional fields the gateway carries for this model.
        gateway_n: whether the gateway's body has an ``n`` field for the model.
        auto_tier: the billing tier of ``size="auto"`` (None: the tier of the size estimates
            assume for auto, 2048x2048).
        openai: whether OpenAI's own API serves the model.
        source: where the limits come from.
    """

    name: str
    prompt_max_chars: int
    sizes: tuple[str, ...]
    ratio_sizes: Mapping[str, str]
    qualities: tuple[str, ...]
    api_default_quality: str
    max_n: int
    max_images: int = 16
    max_image_bytes: int = 50 * MB
    image_formats: tuple[str, ...] = ("jpeg", "png", "webp")
    free_sizes: bool = False
    source: str = ""
    default_quality: str = "medium"
    gateway_qualities: tuple[str, ...] | None = None
    max_image_pixels: int | None = None
    max_image_edge: int | None = None
    resolutions: tuple[str, ...] = ()
    pixel_table: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    wxh_multiple: int = 16
    wxh_min_edge: int = 16
    wxh_max_edge: int = 3840
    wxh_min_pixels: int = 655_360
    wxh_max_pixels: int = 8_294_400
    wxh_max_aspect: float = 3.0
    backgrounds: tuple[str, ...] = ()
    masks: bool = False
    max_mask_bytes: int = 4 * MB
    output_formats: tuple[str, ...] = ()
    moderations: tuple[str, ...] = ()
    input_fidelities: tuple[str, ...] = ()
    max_previews: int = 0
    gateway_fields: frozenset[str] = frozenset()
    gateway_n: bool = True
    auto_tier: str | None = None
    openai: bool = False

    @property
    def ratios(self) -> tuple[str, ...]:
        """The ratio sizes the model names (sent as they are, or mapped to pixels)."""
        if self.ratio_sizes:
            return tuple(self.ratio_sizes)
        return tuple(s for s in self.sizes if ":" in s)


_GPT_IMAGE_2_RATIOS = (
    ["1:1", "1:2", "2:1", "1:3", "3:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "9:21", "21:9"]
)
_OPENAI_OPTIONS: dict[str, Any] = {
    # OpenAI Images API options of the GPT image models (spec §9, addendum B.3).
    "output_formats": ("png", "jpeg", "webp"),
    "moderations": ("low", "auto"),
    "input_fidelities": ("high", "low"),
    "max_previews": 3,
    "masks": True,
    "openai": True,
}

#: Model profiles, by name. gpt-image-1 is the default.
MODELS: dict[str, ModelProfile] = {
    "gpt-image-1": ModelProfile(
        name="gpt-image-1",
        prompt_max_chars=2000,
        sizes=tuple(SIZES.values()),
        ratio_sizes=SIZES,
        qualities=QUALITIES,
        api_default_quality="high",
        max_n=10,
        source="docs.evolink.ai gpt-image-1 image generation (spec S1); OpenAI options spec §9",
        backgrounds=("transparent", "opaque", "auto"),
        **_OPENAI_OPTIONS,
    ),
    "gpt-image-1.5": ModelProfile(
        name="gpt-image-1.5",
        prompt_max_chars=2000,
        sizes=tuple(SIZES.values()),
        ratio_sizes=SIZES,
        qualities=QUALITIES,
        api_default_quality="high",
        max_n=1,
        source="docs.evolink.ai gpt-image-1.5 image generation (spec S2); OpenAI options addendum B.3",
        backgrounds=("transparent", "opaque", "auto"),
        **_OPENAI_OPTIONS,
    ),
    "gpt-image-2": ModelProfile(
        name="gpt-image-2",
        prompt_max_chars=32000,
        sizes=("auto", *_GPT_IMAGE_2_RATIOS),
        ratio_sizes={},
        # The gateway's three tiers. OpenAI also takes "auto" (addendum B.3); it is left out
        # because a run needs a known tier to be priced and budgeted before it is sent.
        qualities=QUALITIES,
        api_default_quality="medium",
        max_n=10,
        free_sizes=True,
        max_image_pixels=178_956_970,
        max_image_edge=23170,
        resolutions=RESOLUTIONS,
        pixel_table=PIXEL_TABLE,
        # "auto" exists on OpenAI only; transparent is a preview on both (open question 6).
        backgrounds=("opaque", "transparent", "auto"),
        gateway_fields=frozenset({"resolution", "background", "mask"}),
        source="docs.evolink.ai gpt-image-2 image generation (spec S5, addendum A.1, A.2 [A1]); "
        "OpenAI options addendum B.3 [B2]",
        **_OPENAI_OPTIONS,
    ),
    "gpt-image-2-beta": ModelProfile(
        name="gpt-image-2-beta",
        # maxLength 2000, described as "2000 tokens": characters are checked (spec OQ 2).
        prompt_max_chars=2000,
        sizes=("auto", *_GPT_IMAGE_2_RATIOS),
        ratio_sizes={},
        # No quality field: the service picks. "auto" names that in records.
        qualities=("auto",),
        gateway_qualities=(),
        api_default_quality="auto",
        default_quality="auto",
        max_n=1,
        gateway_n=False,  # "n (fixed 1)": the page has no such field
        auto_tier="1K",  # the product page bills auto as 1K
        # The current page (since 2026-07-08) takes 1K only (open question 1).
        resolutions=("1K",),
        pixel_table={"1K": PIXEL_TABLE["1K"]},
        gateway_fields=frozenset({"resolution"}),
        source="docs.evolink.ai gpt-image-2-beta image generation, page of 2026-07-08 (addendum A.3 [A2])",
    ),
}
DEFAULT_MODEL = "gpt-image-1"

#: Retired or unserved models and the model to use instead, for error messages.
#: gpt-image-1 points to gpt-image-2: OpenAI retired it on 2026-10-23 and its page names
#: "GPT-Image-2.5 Sunburst", which neither the SDK nor the gateway lists; the gateway's
#: quickstart uses gpt-image-2 (addendum E, B.1).
SUCCESSORS: dict[str, str] = {
    "gpt-image-1": "gpt-image-2",
    "gpt-image-1-mini": "gpt-image-2",  # marked deprecated by OpenAI [B6]
    "gpt-image-1.5-beta": "gpt-image-1.5",  # archived by the gateway 2026-05-29 [S3]
    "gpt-image-1.5-lite": "gpt-image-1.5",
    "gpt-4o-image-beta": "gpt-image-2",  # archived by the gateway 2026-05-29 [S4]
    "gpt-4o-image": "gpt-image-2",
    "dall-e-2": "gpt-image-2",
    "dall-e-3": "gpt-image-2",
}


def successor(model: str) -> str | None:
    """The model to use instead of a retired or unserved ``model`` (None when none is known).

    >>> successor("gpt-image-1")
    'gpt-image-2'
    """
    seen = {model}
    found = SUCCESSORS.get(model)
    # Follow the chain, so a successor that is itself retired leads on.
    while found is not None and found in SUCCESSORS and found not in seen:
        seen.add(found)
        found = SUCCESSORS[found]
    return found


def _profile(model: str) -> ModelProfile:
    try:
        return MODELS[model]
    except KeyError:
        hint = f"{model} is retired or not served; use {successor(model)}" if successor(model) else ""
        raise ValidationError("model", model, "one of " + ", ".join(MODELS), hint=hint) from None


_WXH = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def _free_size_problem(profile: ModelProfile, w: int, h: int) -> str | None:
    """Which ``WxH`` rule a size breaks, or None."""
    m = profile.wxh_multiple
    if w % m or h % m:
        return f"both edges must be multiples of {m}"
    if min(w, h) < profile.wxh_min_edge or max(w, h) > profile.wxh_max_edge:
        return f"each edge must be {profile.wxh_min_edge}-{profile.wxh_max_edge} pixels"
    if not profile.wxh_min_pixels <= w * h <= profile.wxh_max_pixels:
        return f"W x H must be {profile.wxh_min_pixels:,}-{profile.wxh_max_pixels:,} pixels (it is {w * h:,})"
    if max(w, h) > profile.wxh_max_aspect * min(w, h):
        return f"the long edge may be at most {profile.wxh_max_aspect:g} times the short one"
    return None


def normalize_size(size: str, model: str = DEFAULT_MODEL) -> str:
    """Return the canonical wire form of ``size`` for ``model``.

    For gpt-image-1 both forms are accepted and the pixel form is returned:

    >>> normalize_size("3:2")
    '1536x1024'
    >>> normalize_size("1024X1536")
    '1024x1536'

    gpt-image-2 keeps ratios and ``auto`` as they are and checks a ``WxH`` against its rules:

    >>> normalize_size("2048X1152", "gpt-image-2")
    '2048x1152'
    """
    profile = _profile(model)
    if not isinstance(size, str):
        raise ValidationError("size", size, _allowed_sizes(profile))
    text = size.strip().lower().replace(" ", "")
    if text in profile.ratio_sizes:
        return profile.ratio_sizes[text]
    match = _WXH.match(text)
    if match:
        text = f"{int(match[1])}x{int(match[2])}"
    if text in profile.sizes:
        return text
    if profile.free_sizes and match:
        problem = _free_size_problem(profile, int(match[1]), int(match[2]))
        if problem is None:
            return text
        raise ValidationError("size", size, _allowed_sizes(profile), hint=problem)
    raise ValidationError("size", size, _allowed_sizes(profile))


def _allowed_sizes(profile: ModelProfile) -> str:
    if profile.free_sizes:
        p = profile
        return (
            f"for {p.name}: auto, a ratio ({', '.join(p.ratios)}) or WxH with "
            f"edges multiple of {p.wxh_multiple}, {p.wxh_min_edge}-{p.wxh_max_edge} each, "
            f"{p.wxh_min_pixels:,}-{p.wxh_max_pixels:,} pixels, aspect at most {p.wxh_max_aspect:g}:1"
        )
    if not profile.ratio_sizes:
        return f"for {profile.name}: auto or a ratio ({', '.join(profile.ratios)}); no WxH"
    pairs = [f"{r} ({p})" for r, p in profile.ratio_sizes.items()]
    return f"for {profile.name}: " + ", ".join(pairs) + "; ratio or pixel form"


def pixel_size(model: str, size: str, resolution: str | None = None) -> str | None:
    """The ``WxH`` a size gives (None for ``auto``): a ratio through the model's pixel table
    at ``resolution`` (1K when None), a pixel size as it is.

    >>> pixel_size("gpt-image-2", "16:9", "2K")
    '2736x1536'
    """
    profile = _profile(model)
    if size == "auto":
        return None
    if ":" in size and not profile.ratio_sizes:
        tier = (resolution or "1K").upper()
        table = profile.pixel_table.get(tier) or PIXEL_TABLE.get(tier, {})
        return table.get(size)
    return profile.ratio_sizes.get(size, size)


def sniff_image_format(head: bytes) -> str | None:
    """Name the image format of some leading bytes (``jpeg``, ``png``, ``webp``, ``gif``)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _image_facts(data: bytes) -> tuple[int, int, bool] | None:
    """Width, height and whether the image has an alpha channel, or None if unreadable."""
    from PIL import Image  # Pillow reads the header only; imported here to keep import cheap

    try:
        with Image.open(io.BytesIO(data)) as img:
            alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
            return img.width, img.height, alpha
    except Exception:  # any decoder failure means "not a readable image"
        return None


@dataclass(frozen=True, slots=True)
class ReferenceImage:
    """One reference image for image-to-image or editing.

    Exactly one of ``url``, ``path`` and ``data`` is set. Local ones (path, bytes, PIL) are
    uploaded through the gateway's file API before the task is created.

    Attributes:
        url: an http(s) URL the service fetches itself.
        path: a local file.
        data: image bytes (PIL images are encoded to PNG).
        name: a file name for uploads and the ledger.
        format: ``jpeg``, ``png`` or ``webp``, judged by content (None for URLs).
        size_bytes: the size of the local image (0 for URLs).
    """

    url: str | None = None
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    name: str = ""
    format: str | None = None
    size_bytes: int = 0

    @property
    def mime(self) -> str:
        return _FORMATS.get(self.format or "", "application/octet-stream")

    @property
    def is_local(self) -> bool:
        return self.url is None

    def read(self) -> bytes:
        """The image's bytes (local images only)."""
        if self.data is not None:
            return self.data
        if self.path is not None:
            return self.path.read_bytes()
        raise ValueError("a URL reference has no local bytes")

    def describe(self) -> str:
        """How the ledger records this reference: the URL, or the local name and hash."""
        if self.url is not None:
            return self.url
        digest = hashlib.sha256(self.read()).hexdigest()[:16]
        return f"{self.name} sha256:{digest}"

    @classmethod
    def coerce(cls, value: Any, index: int, profile: ModelProfile) -> ReferenceImage:
        """Turn a URL, path, bytes or PIL image into a checked reference.

        Args:
            value: what the user passed.
            index: its position, to name the field in errors (``images[3]``).
            profile: the model whose limits apply.
        """
        field_name = f"images[{index}]"
        limit = f"{profile.max_image_bytes // MB} MB"
        formats = "/".join(f.upper() for f in profile.image_formats)
        kinds = "an http(s) URL, a local path, bytes or a PIL image"

        def wrong_format(shown: str, fmt: str | None) -> ValidationError:
            return ValidationError(
                field_name, shown, f"a {formats} image by its content", hint=f"its content is {fmt or 'not an image'}"
            )

        if isinstance(value, ReferenceImage):
            return value
        if isinstance(value, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
            if not value.lower().startswith(("http://", "https://")):
                raise ValidationError(field_name, value, kinds)
            return cls(url=value, name=value.rsplit("/", 1)[-1][:100])
        if isinstance(value, str | os.PathLike):
            path = Path(value).expanduser()
            if not path.is_file():
                raise ValidationError(field_name, str(value), f"an existing image file, or {kinds}")
            size = path.stat().st_size
            if size > profile.max_image_bytes:
                hint = f"it has {size / MB:.1f} MB"
                raise ValidationError(field_name, str(value), f"at most {limit} per image", hint=hint)
            with path.open("rb") as fh:
                fmt = sniff_image_format(fh.read(16))
            if fmt not in profile.image_formats:
                raise wrong_format(str(value), fmt)
            return cls(path=path.resolve(), name=path.name, format=fmt, size_bytes=size)
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
        elif _is_pil_image(value):
            buf = io.BytesIO()
            value.save(buf, format="PNG")
            data = buf.getvalue()
        else:
            raise ValidationError(field_name, value, kinds)
        if len(data) > profile.max_image_bytes:
            hint = f"it has {len(data) / MB:.1f} MB"
            raise ValidationError(field_name, f"<{len(data)} bytes>", f"at most {limit} per image", hint=hint)
        fmt = sniff_image_format(data[:16])
        if fmt not in profile.image_formats:
            raise wrong_format(f"<{len(data)} bytes>", fmt)
        name = f"reference-{index}.{'jpg' if fmt == 'jpeg' else fmt}"
        return cls(data=data, name=name, format=fmt, size_bytes=len(data))


def _is_pil_image(value: object) -> bool:
    # Checked by duck type so that this module does not import Pillow.
    return hasattr(value, "save") and hasattr(value, "mode") and hasattr(value, "size")



_UNSET: Any = object()
_OPTIONS = ("resolution", "background", "mask", "output_format", "output_compression", "moderation",
            "input_fidelity", "previews")


def _choice(name: str, value: Any, allowed: tuple[str, ...], model: str, *, upper: bool = False) -> str | None:
    """A case-insensitive choice among ``allowed`` (None stays None)."""
    if value is None:
        return None
    if not allowed:
        raise ValidationError(name, value, f"nothing: {model} has no {name} option")
    if isinstance(value, str):
        text = value.strip().upper() if upper else value.strip().lower()
        if text in allowed:
            return text
    raise ValidationError(name, value, " | ".join(allowed) + f" for {model}")


#: Tags a run may carry, and the longest tag: the ledger keeps them in every row and the
#: reports filter on them, so they are labels, not documents.
MAX_TAGS = 32
MAX_TAG_CHARS = 64


_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


def _visible(char: str) -> bool:
    """True for a character that shows: not a control, format (zero-width space, BOM),
    surrogate or separator character. Unassigned code points count as visible, since a
    newer emoji is unassigned to an older Python."""
    return unicodedata.category(char) not in _INVISIBLE


def _check_text(name: str, text: str) -> None:
    """Refuse text that cannot be stored or sent as UTF-8 (a lone surrogate), here rather
    than as a UnicodeEncodeError at the ledger write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            name, text, "text that can be encoded as UTF-8",
            hint=f"{text[exc.start]!r} at position {exc.start} is a lone surrogate",
        ) from exc


def check_tags(tags: Any) -> tuple[str, ...]:
    """The run's tags as a tuple, or raise ValidationError.

    A single string is one tag (``tags="draft"`` is ``("draft",)``, not five letters).
    Tags are strings of 1 to :data:`MAX_TAG_CHARS` characters, at most :data:`MAX_TAGS`.

    Example:
        >>> check_tags("draft")
        ('draft',)
        >>> check_tags(["a", "b"])
        ('a', 'b')
    """
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = (tags,)
    elif isinstance(tags, bytes | Mapping) or not isinstance(tags, Iterable):
        raise ValidationError("tags", tags, "a text or a list of texts")
    checked = tuple(tags)
    if len(checked) > MAX_TAGS:
        raise ValidationError("tags", f"<{len(checked)} tags>", f"at most {MAX_TAGS} tags per run")
    for index, tag in enumerate(checked):
        field_name = f"tags[{index}]"
        if not isinstance(tag, str):
            raise ValidationError(field_name, tag, "a text")
        if not tag:
            raise ValidationError(field_name, tag, "a non-empty text")
        if len(tag) > MAX_TAG_CHARS:
            raise ValidationError(field_name, tag, f"at most {MAX_TAG_CHARS} characters",
                                  hint=f"it has {len(tag)}")
        _check_text(field_name, tag)
    return checked


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """A validated generation request.

    Build it with :meth:`build`, which checks every field; the constructor trusts its input.
    Every option after ``images`` is None when not asked for, and is then not sent.

    Attributes:
        prompt: the prompt text.
        model: a name from :data:`MODELS`.
        size: the canonical size (``1024x1024``, ``1024x1536``, ``1536x1024`` for gpt-image-1;
            ``auto``, a ratio such as ``16:9`` or ``WxH`` for gpt-image-2).
        quality: ``low``, ``medium`` or ``high`` (``auto`` where the model has it); sent
            whenever the model has a quality field.
        n: images per request.
        images: reference images (image-to-image or editing when not empty).
        resolution: ``1K``, ``2K`` or ``4K`` with a ratio size (gpt-image-2).
        background: ``opaque``, ``transparent`` or ``auto``.
        mask: a PNG with alpha, the first reference image's size; its transparent pixels are
            the ones edited.
        output_format: ``png``, ``jpeg`` or ``webp`` (OpenAI).
        output_compression: 0-100, jpeg and webp only (OpenAI).
        moderation: ``low`` or ``auto``, generations only (OpenAI).
        input_fidelity: ``high`` or ``low``, edits only (OpenAI).
        previews: 0-3 partial images streamed while drawing (OpenAI).
    """

    prompt: str
    model: str = DEFAULT_MODEL
    size: str = "1024x1024"
    quality: str = "medium"
    n: int = 1
    images: tuple[ReferenceImage, ...] = ()
    resolution: str | None = None
    background: str | None = None
    mask: ReferenceImage | None = None
    output_format: str | None = None
    output_compression: int | None = None
    moderation: str | None = None
    input_fidelity: str | None = None
    previews: int | None = None

    @classmethod
    def build(
        cls,
        prompt: Any,
        *,
        model: Any = DEFAULT_MODEL,
        size: Any = "1:1",
        quality: Any = _UNSET,
        n: Any = 1,
        images: Iterable[Any] | None = None,
        resolution: Any = None,
        background: Any = None,
        mask: Any = None,
        output_format: Any = None,
        output_compression: Any = None,
        moderation: Any = None,
        input_fidelity: Any = None,
        previews: Any = None,
    ) -> ImageRequest:
        """Check every field and return a request, or raise ValidationError.

        Args:
            prompt: the prompt.
            model: a name from :data:`MODELS`.
            size: a ratio, ``WxH`` or ``auto``, as the model allows.
            quality: a tier the model allows; the model's default when left out.
            n: images per request.
            images: reference images: paths, bytes, PIL images or URLs.
            resolution, background, mask, output_format, output_compression, moderation,
                input_fidelity, previews: the options of :class:`ImageRequest`, each checked
                against what the model allows.

        Example:
            >>> ImageRequest.build("A lighthouse", size="3:2", quality="low").size
            '1536x1024'
            >>> ImageRequest.build("A fox", model="gpt-image-2", size="16:9", resolution="2k").pixel_size
            '2736x1536'
        """
        if not isinstance(model, str):
            raise ValidationError("model", model, "one of " + ", ".join(MODELS))
        profile = _profile(model)
        name = profile.name
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValidationError("prompt", prompt, "a non-empty text")
        _check_text("prompt", prompt)
        if not any(_visible(c) for c in prompt):
            raise ValidationError(
                "prompt", prompt, "a text with visible characters",
                hint="it has only control, format or space characters, such as NUL, zero-width spaces or a BOM",
            )
        if len(prompt) > profile.prompt_max_chars:
            raise ValidationError(
                "prompt",
                prompt,
                f"at most {profile.prompt_max_chars} characters for {name}",
                hint=f"it has {len(prompt)}",
            )
        size = normalize_size(size, model)
        if quality is _UNSET:
            quality = profile.default_quality
        if not isinstance(quality, str) or quality.strip().lower() not in profile.qualities:
            raise ValidationError("quality", quality, " | ".join(profile.qualities) + _for(profile))
        quality = quality.strip().lower()
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= profile.max_n:
            allowed = "1" if profile.max_n == 1 else f"an integer from 1 to {profile.max_n}"
            raise ValidationError("n", n, f"{allowed} for {name}")
        if images is None:
            images = ()
        elif isinstance(images, str | bytes | os.PathLike) or _is_pil_image(images):
            images = (images,)
        refs = tuple(images)
        if len(refs) > profile.max_images:
            raise ValidationError(
                "images", f"<{len(refs)} images>", f"at most {profile.max_images} reference images for {name}"
            )
        checked = tuple(ReferenceImage.coerce(v, i, profile) for i, v in enumerate(refs))
        _check_reference_pixels(checked, profile)

        resolution = _choice("resolution", resolution, profile.resolutions, name, upper=True)
        if resolution is not None and ":" not in size:
            raise ValidationError(
                "resolution", resolution, f"a ratio size with it for {name}",
                hint="size auto lets the service choose" if size == "auto" else f"size {size} sets the pixels itself",
            )
        background = _choice("background", background, profile.backgrounds, name)
        output_format = _choice("output_format", output_format, profile.output_formats, name)
        if background == "transparent" and output_format == "jpeg":
            raise ValidationError("background", background, "opaque or auto with jpeg output",
                                  hint="transparency needs output_format png or webp")
        if output_compression is not None:
            if isinstance(output_compression, bool) or not isinstance(output_compression, int) or not (
                0 <= output_compression <= 100
            ):
                raise ValidationError("output_compression", output_compression, f"an integer from 0 to 100 for {name}")
            if not profile.output_formats:
                raise ValidationError("output_compression", output_compression, f"nothing: {name} has no such option")
            if output_format not in ("jpeg", "webp"):
                raise ValidationError(
                    "output_compression", output_compression, "output_format jpeg or webp with it",
                    hint=f"output_format is {output_format or 'png (the default)'}",
                )
        moderation = _choice("moderation", moderation, profile.moderations, name)
        if moderation is not None and checked:
            raise ValidationError("moderation", moderation, "generations only (no reference images)")
        input_fidelity = _choice("input_fidelity", input_fidelity, profile.input_fidelities, name)
        if input_fidelity is not None and not checked:
            raise ValidationError("input_fidelity", input_fidelity, "edits only (give reference images)")
        if previews is not None and (
            isinstance(previews, bool) or not isinstance(previews, int) or not 0 <= previews <= profile.max_previews
        ):
            allowed = f"an integer from 0 to {profile.max_previews}" if profile.max_previews else "0 (no streaming)"
            raise ValidationError("previews", previews, f"{allowed} for {name}")
        checked_mask = _check_mask(mask, checked, profile)
        return cls(
            prompt=prompt, model=model, size=size, quality=quality, n=n, images=checked,
            resolution=resolution, background=background, mask=checked_mask, output_format=output_format,
            output_compression=output_compression, moderation=moderation, input_fidelity=input_fidelity,
            previews=previews,
        )

    @property
    def mode(self) -> str:
        return "image-to-image" if self.images else "text-to-image"

    @property
    def is_square(self) -> bool:
        w, _, h = self.size.partition("x")
        return self.size in ("1:1", "auto") or (w == h and bool(w))

    @property
    def pixel_size(self) -> str | None:
        """The ``WxH`` this request asks for (a ratio through the pixel table at its
        resolution); None for ``auto``."""
        return pixel_size(self.model, self.size, self.resolution)

    @property
    def tier(self) -> str:
        """The resolution tier the request is billed in: the given resolution for a ratio, the
        tier of the pixel count for ``WxH``, 1K for a ratio without resolution (the default),
        and for ``auto`` the profile's ``auto_tier`` or the tier of 2048x2048 (the size
        estimates assume)."""
        if self.resolution is not None:
            return self.resolution
        if self.size == "auto":
            auto_tier = _profile(self.model).auto_tier
            if auto_tier is not None:
                return auto_tier
            w, _, h = AUTO_ESTIMATE_SIZE.partition("x")
            return tier_for_pixels(int(w), int(h))
        pixels = self.pixel_size
        if pixels is None:
            return "1K"
        w, _, h = pixels.partition("x")
        return tier_for_pixels(int(w), int(h))

    def options(self) -> dict[str, Any]:
        """The options that were asked for (not None), by field name."""
        return {name: getattr(self, name) for name in _OPTIONS if getattr(self, name) is not None}

    def unsupported_on(self, kind: str) -> list[str]:
        """The fields this request sets that a provider of ``kind`` (``gateway`` or ``openai``)
        cannot carry for its model; empty when it can take the request as it is.

        Example:
            >>> ImageRequest.build("p", model="gpt-image-2", output_format="webp").unsupported_on("gateway")
            ['output_format']
        """
        profile = _profile(self.model)
        out: list[str] = []
        if kind == "openai":
            if not profile.openai:
                return ["model"]
            if self.size != "auto" and ":" in self.size and self.pixel_size is None:
                out.append("size")
            return out
        if profile.gateway_qualities is not None and profile.gateway_qualities and (
            self.quality not in profile.gateway_qualities
        ):
            out.append("quality")
        gateway_background = ("opaque", "transparent") if "background" in profile.gateway_fields else ()
        for name, value in self.options().items():
            if name == "previews" and value == 0:
                continue
            if name not in profile.gateway_fields or (name == "background" and value not in gateway_background):
                out.append(name)
        return out

    def payload(self, image_urls: Iterable[str] = (), mask_url: str | None = None) -> dict[str, Any]:
        """The JSON body of the gateway's ``POST /v1/images/generations``; quality is always
        explicit where the model has it.

        Args:
            image_urls: the reference images' URLs (uploaded or given).
            mask_url: the uploaded mask's URL, when the request has a mask.
        """
        profile = _profile(self.model)
        body: dict[str, Any] = {"model": self.model, "prompt": self.prompt, "size": self.size}
        if profile.gateway_qualities != ():
            body["quality"] = self.quality
        if profile.gateway_n:
            body["n"] = self.n
        if self.resolution is not None:
            body["resolution"] = self.resolution
        if self.background is not None:
            body["background"] = self.background
        urls = list(image_urls)
        if urls:
            body["image_urls"] = urls
        if mask_url is not None:
            body["mask_url"] = mask_url
        return body

    def openai_fields(self) -> dict[str, Any]:
        """The fields of OpenAI's ``/v1/images/generations`` JSON body, or of the text fields
        of an ``/v1/images/edits`` form (files go separately). A ratio size is sent as its
        pixels, since OpenAI takes ``WxH`` or ``auto``; ``previews`` becomes
        ``stream``/``partial_images``.

        Example:
            >>> ImageRequest.build("p", model="gpt-image-2", size="16:9", quality="high",
            ...     output_format="webp", output_compression=80).openai_fields()["size"]
            '1360x768'
        """
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "n": self.n,
            "size": self.pixel_size or "auto",
            "quality": self.quality,
        }
        for name in ("background", "output_format", "output_compression", "moderation", "input_fidelity"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.previews is not None and self.previews > 0:
            body["stream"] = True
            body["partial_images"] = self.previews
        return body

    def replace(self, **changes: Any) -> ImageRequest:
        """A validated copy with some fields changed."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(changes)
        prompt = fields.pop("prompt")
        return ImageRequest.build(prompt, **fields)


def _for(profile: ModelProfile) -> str:
    return f" for {profile.name}"


def _check_reference_pixels(refs: tuple[ReferenceImage, ...], profile: ModelProfile) -> None:
    """Local reference images within the model's pixel and edge caps (URLs are the
    service's to check)."""
    if profile.max_image_pixels is None and profile.max_image_edge is None:
        return
    for index, ref in enumerate(refs):
        if not ref.is_local:
            continue
        facts = _image_facts(ref.read())
        if facts is None:
            continue
        w, h, _ = facts
        if profile.max_image_pixels is not None and w * h > profile.max_image_pixels:
            raise ValidationError(
                f"images[{index}]", ref.name, f"at most {profile.max_image_pixels:,} pixels for {profile.name}",
                hint=f"it is {w}x{h}",
            )
        if profile.max_image_edge is not None and max(w, h) > profile.max_image_edge:
            raise ValidationError(
                f"images[{index}]", ref.name, f"edges of at most {profile.max_image_edge} pixels for {profile.name}",
                hint=f"it is {w}x{h}",
            )


def _check_mask(mask: Any, refs: tuple[ReferenceImage, ...], profile: ModelProfile) -> ReferenceImage | None:
    """A mask: a PNG with an alpha channel, the first reference image's pixel size, and
    only with reference images (the gateway ignores it otherwise; OpenAI needs an image)."""
    if mask is None:
        return None
    if not profile.masks:
        raise ValidationError("mask", _shown(mask), f"nothing: {profile.name} takes no mask")
    if not refs:
        raise ValidationError("mask", _shown(mask), "a mask only with reference images (an edit)")
    png_only = dataclasses.replace(profile, image_formats=("png",), max_image_bytes=profile.max_mask_bytes)
    try:
        ref = ReferenceImage.coerce(mask, 0, png_only)
    except ValidationError as exc:
        raise ValidationError(
            "mask", exc.value, f"a PNG with an alpha channel, under {profile.max_mask_bytes // MB} MB", hint=exc.hint
        ) from None
    if not ref.is_local:
        return ref  # a URL mask is checked by the service
    facts = _image_facts(ref.read())
    if facts is None:
        raise ValidationError("mask", ref.name, "a readable PNG with an alpha channel")
    w, h, alpha = facts
    if not alpha:
        raise ValidationError("mask", ref.name, "a PNG with an alpha channel", hint="it has no alpha channel")
    first = refs[0]
    if first.is_local:
        ref_facts = _image_facts(first.read())
        if ref_facts is not None and (ref_facts[0], ref_facts[1]) != (w, h):
            raise ValidationError(
                "mask", ref.name, f"the first reference image's size, {ref_facts[0]}x{ref_facts[1]}",
                hint=f"the mask is {w}x{h}",
            )
    return dataclasses.replace(ref, name="mask.png")


def _shown(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return value



class Secret:
    """An API key that does not show itself: its repr and str are masked, so printing a
    session, ``vars()`` of it or a traceback's locals never reveals it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the one header that needs it."""
        return self._value

    @property
    def hint(self) -> str | None:
        """At most the last four characters, and only of a key long enough to spare them."""
        return self._value[-4:] if len(self._value) >= 12 else None

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


# --- task states -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    """Accepted, not started."""

    progress: int = 0
    terminal = False


@dataclass(frozen=True, slots=True)
class Processing:
    """Running; ``progress`` is 0-100."""

    progress: int = 0
    terminal = False


@dataclass(frozen=True, slots=True)
class Completed:
    """Finished; ``results`` are the image URLs (valid 24 h)."""

    results: tuple[str, ...] = ()
    progress: int = 100
    terminal = True


@dataclass(frozen=True, slots=True)
class Failed:
    """Ended with a business error code (``cancelled`` becomes ``request_cancelled``)."""

    code: str = "unknown_error"
    message: str = ""
    progress: int = 0
    terminal = True


TaskStatus = Pending | Processing | Completed | Failed


# --- runs and events ---------------------------------------------------------------------

class RunStatus(enum.StrEnum):
    """Where a run stands, as the ledger stores it (the member's value is the stored text).

    A ``str`` subclass: ``record.status == "completed"`` holds, and the member formats as
    its text. The first five are stages of a run in flight; the last three end it
    (:attr:`terminal`).
    """

    CREATED = "created"
    SUBMITTING = "submitting"
    PENDING = "pending"
    PROCESSING = "processing"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"
    #: The service may have accepted the task (and may bill it); the run's notes say why
    #: imgkit cannot tell.
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        """True for completed, failed and unknown: nothing more happens to the run."""
        return self in TERMINAL_STATUSES

    def __repr__(self) -> str:
        # Shown as the text it stands for, in lists, tuples and records, as before it was an enum.
        return repr(self.value)


#: The statuses that end a run (derived from :class:`RunStatus`).
TERMINAL_STATUSES: frozenset[RunStatus] = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.UNKNOWN})


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run, as the ledger keeps it. Times are Unix seconds (UTC).

    Attributes:
        run_id: imgkit's id for the run (stable across retries and restarts).
        provider: the provider that served it (``sandbox``, ``gateway``, ...).
        task_id: the service's task id, once known.
        status: a :class:`RunStatus` (created, submitting, pending, processing, downloading,
            completed, failed or unknown: the service may have accepted it; the reason says
            why it is unknown). Plain text is accepted and converted; other text is a
            ValueError.
        est_credits, est_usd, est_cny, price_sheet: the estimate made before submitting.
        credits_reserved: what the service said it reserved on create.
        credits_charged: what the service reported as charged, when it reports it.
        estimated_s: the service's ``estimated_time`` hint for the task, seconds.
        files: stored image paths, relative to the data directory.
        thumbs: thumbnail paths, relative to the data directory.
        providers_tried: the other providers considered for the run, in order, and why they
            did not serve it: ``{"provider", "reason", "detail"?, "task_id"?}`` with reasons
            such as ``circuit_open``, ``connect_error``, ``http_503``, ``model_not_served``
            or a task error code (see :mod:`imgkit.providers.router`).
        resolution, background, output_format: the request's gpt-image-2 resolution tier
            (``1K``/``2K``/``4K``), background and file format, when given.
        batch_id: the Batch the run was sent in (half price, done within 24 h), if any.
        tokens_in, tokens_out: the usage the service reported (input and output tokens).
        partial_images: how many live previews (partial images) were streamed for the run.
        user, project: who ran it (``IMGKIT_USER``, else ``JUPYTERHUB_USER``, else the OS
            user) and the project it was run for (``configure(project=...)``,
            ``IMGKIT_PROJECT``).
        host, data_dir: the machine and the data directory the run's files were written to (a
            team ledger's images stay where they were made unless ``IMGKIT_IMAGES`` is shared).
    """

    run_id: str
    provider: str
    model: str
    prompt: str
    size: str
    quality: str
    n: int
    reference_images: tuple[str, ...] = ()
    mode: str = "text-to-image"
    task_id: str | None = None
    status: RunStatus = RunStatus.CREATED
    progress: int = 0
    error_code: str | None = None
    error_message: str | None = None
    est_credits: float | None = None
    est_usd: float | None = None
    est_cny: float | None = None
    price_sheet: str | None = None
    credits_reserved: float | None = None
    credits_charged: float | None = None
    created_at: float = field(default_factory=time.time)
    submitted_at: float | None = None
    completed_at: float | None = None
    estimated_s: float | None = None
    result_urls: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    thumbs: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    attempts: int = 0
    notes: str | None = None
    providers_tried: tuple[dict[str, str], ...] = ()
    resolution: str | None = None
    background: str | None = None
    output_format: str | None = None
    batch_id: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    partial_images: int | None = None
    user: str | None = None
    project: str | None = None
    host: str | None = None
    data_dir: str | None = None

    def __post_init__(self) -> None:
        if type(self.status) is not RunStatus:
            # Records are built from ledger rows and engine updates in plain text.
            object.__setattr__(self, "status", RunStatus(self.status))

    @property
    def latency_s(self) -> float | None:
        if self.completed_at is None or self.submitted_at is None:
            return None
        return self.completed_at - self.submitted_at

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def replace(self, **changes: Any) -> RunRecord:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """Something happened to a run; progress bars and widgets render these.

    Attributes:
        run_id: the run.
        status: the run's status after the event.
        progress: 0-100.
        message: a short human text (a retry, an error's hint).
        record: the run's record after the event.
        preview: a partial image of a streamed run (``previews``), as encoded bytes; None
            for every other event.
    """

    run_id: str
    status: str
    progress: int
    message: str = ""
    record: RunRecord | None = None
    time: float = field(default_factory=time.time)
    preview: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class BalanceSnapshot:
    """The account's balance as the service reported it at one moment, as the ledger keeps it
    (``imgkit.reconcile`` compares the fall between two snapshots with the ledger's spend).

    Attributes:
        taken_at: Unix seconds (UTC).
        provider: the provider whose account it is.
        remaining_credits: the credits that can be spent: the smaller of the key's and the
            account's remaining credits when the key is limited, the account's otherwise.
        key_remaining, account_remaining: the two figures as reported (None when not).
        binding: which limit binds: ``"key"`` or ``"account"``.
        source: why it was taken: ``"balance"`` (``imgkit.balance()``), ``"studio"``,
            ``"sweep-start"``, ``"sweep-end"``, ...
        user: who took it.
    """

    taken_at: float
    provider: str
    remaining_credits: float | None
    key_remaining: float | None = None
    account_remaining: float | None = None
    binding: str | None = None
    source: str | None = None
    user: str | None = None
