"""Requests, model profiles, task states and run records: pure values, no I/O beyond
reading a reference image's header from disk to judge its format.

Everything a user can get wrong is checked here, before any request is sent, and reported
as a :class:`~imgkit.errors.ValidationError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from imgkit.errors import ValidationError

__all__ = [
    "MODELS",
    "QUALITIES",
    "SIZES",
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
    "normalize_size",
    "sniff_image_format",
]

Quality = Literal["low", "medium", "high"]
QUALITIES: tuple[str, ...] = ("low", "medium", "high")

#: The three sizes of gpt-image-1, pixel form, and their ratio aliases.
SIZES: dict[str, str] = {"1:1": "1024x1024", "2:3": "1024x1536", "3:2": "1536x1024"}
SIZE_LABELS: dict[str, str] = {
    "1024x1024": "Square 1:1",
    "1024x1536": "Portrait 2:3",
    "1536x1024": "Landscape 3:2",
}

MB = 1024 * 1024
_FORMATS = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What one model accepts, as documented by the gateway (spec §1a, §1b).

    Attributes:
        name: the ``model`` value sent on the wire.
        prompt_max_chars: the longest prompt, in characters.
        sizes: the accepted ``size`` values after normalisation.
        ratio_sizes: ratio aliases and the pixel size each one means (empty: ratios are sent
            as they are and the service picks the pixels).
        free_sizes: whether ``WxH`` sizes outside ``sizes`` are allowed (gpt-image-2 rules).
        qualities: accepted ``quality`` values.
        api_default_quality: what the service uses when ``quality`` is left out.
        max_n: the largest ``n``.
        max_images: the most reference images per request.
        max_image_bytes: the largest reference image.
        image_formats: the reference image formats (judged by content).
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


_GPT_IMAGE_2_RATIOS = (
    ["1:1", "1:2", "2:1", "1:3", "3:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "9:21", "21:9"]
)

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
        source="docs.evolink.ai gpt-image-1 image generation (spec S1)",
    ),
    "gpt-image-1.5": ModelProfile(
        name="gpt-image-1.5",
        prompt_max_chars=2000,
        sizes=tuple(SIZES.values()),
        ratio_sizes=SIZES,
        qualities=QUALITIES,
        api_default_quality="high",
        max_n=1,
        source="docs.evolink.ai gpt-image-1.5 image generation (spec S2)",
    ),
    "gpt-image-2": ModelProfile(
        name="gpt-image-2",
        prompt_max_chars=32000,
        sizes=("auto", *_GPT_IMAGE_2_RATIOS),
        ratio_sizes={},
        qualities=QUALITIES,
        api_default_quality="medium",
        max_n=10,
        free_sizes=True,
        source="docs.evolink.ai gpt-image-2 image generation (spec S5)",
    ),
}
DEFAULT_MODEL = "gpt-image-1"


def _profile(model: str) -> ModelProfile:
    try:
        return MODELS[model]
    except KeyError:
        raise ValidationError("model", model, "one of " + ", ".join(MODELS)) from None


_WXH = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def normalize_size(size: str, model: str = DEFAULT_MODEL) -> str:
    """Return the canonical wire form of ``size`` for ``model``.

    For gpt-image-1 both forms are accepted and the pixel form is returned:

    >>> normalize_size("3:2")
    '1536x1024'
    >>> normalize_size("1024X1536")
    '1024x1536'
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
        w, h = int(match[1]), int(match[2])
        pixels = w * h
        ok = (
            w % 16 == 0
            and h % 16 == 0
            and min(w, h) >= 16
            and max(w, h) <= 3840
            and 655_360 <= pixels <= 8_294_400
            and max(w, h) <= 3 * min(w, h)
        )
        if ok:
            return text
    raise ValidationError("size", size, _allowed_sizes(profile))


def _allowed_sizes(profile: ModelProfile) -> str:
    if profile.free_sizes:
        return (
            f"for {profile.name}: auto, a ratio ({', '.join(profile.sizes[1:])}) or WxH with "
            "edges multiple of 16, at most 3840, 655,360-8,294,400 pixels, aspect at most 3:1"
        )
    pairs = [f"{r} ({p})" for r, p in profile.ratio_sizes.items()]
    return f"for {profile.name}: " + ", ".join(pairs) + "; ratio or pixel form"


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


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """A validated generation request.

    Build it with :meth:`build`, which checks every field; the constructor trusts its input.

    Attributes:
        prompt: the prompt text.
        model: a name from :data:`MODELS`.
        size: the canonical size (``1024x1024``, ``1024x1536``, ``1536x1024`` for gpt-image-1).
        quality: ``low``, ``medium`` or ``high``; always sent (the service's default is high).
        n: images per request.
        images: reference images (image-to-image or editing when not empty).
    """

    prompt: str
    model: str = DEFAULT_MODEL
    size: str = "1024x1024"
    quality: str = "medium"
    n: int = 1
    images: tuple[ReferenceImage, ...] = ()

    @classmethod
    def build(
        cls,
        prompt: Any,
        *,
        model: Any = DEFAULT_MODEL,
        size: Any = "1:1",
        quality: Any = "medium",
        n: Any = 1,
        images: Iterable[Any] | None = None,
    ) -> ImageRequest:
        """Check every field and return a request, or raise ValidationError.

        Example:
            >>> ImageRequest.build("A lighthouse", size="3:2", quality="low").size
            '1536x1024'
        """
        if not isinstance(model, str):
            raise ValidationError("model", model, "one of " + ", ".join(MODELS))
        profile = _profile(model)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValidationError("prompt", prompt, "a non-empty text")
        if len(prompt) > profile.prompt_max_chars:
            raise ValidationError(
                "prompt",
                prompt,
                f"at most {profile.prompt_max_chars} characters for {profile.name}",
                hint=f"it has {len(prompt)}",
            )
        size = normalize_size(size, model)
        if not isinstance(quality, str) or quality.strip().lower() not in profile.qualities:
            raise ValidationError("quality", quality, " | ".join(profile.qualities))
        quality = quality.strip().lower()
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= profile.max_n:
            allowed = "1" if profile.max_n == 1 else f"an integer from 1 to {profile.max_n}"
            raise ValidationError("n", n, f"{allowed} for {profile.name}")
        if images is None:
            images = ()
        elif isinstance(images, str | bytes | os.PathLike) or _is_pil_image(images):
            images = (images,)
        refs = tuple(images)
        if len(refs) > profile.max_images:
            raise ValidationError(
                "images", f"<{len(refs)} images>", f"at most {profile.max_images} reference images"
            )
        checked = tuple(ReferenceImage.coerce(v, i, profile) for i, v in enumerate(refs))
        return cls(prompt=prompt, model=model, size=size, quality=quality, n=n, images=checked)

    @property
    def mode(self) -> str:
        return "image-to-image" if self.images else "text-to-image"

    @property
    def is_square(self) -> bool:
        w, _, h = self.size.partition("x")
        return self.size in ("1:1", "auto") or (w == h and bool(w))

    def payload(self, image_urls: Iterable[str] = ()) -> dict[str, Any]:
        """The JSON body of ``POST /v1/images/generations``; quality is always explicit."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "size": self.size,
            "quality": self.quality,
            "n": self.n,
        }
        urls = list(image_urls)
        if urls:
            body["image_urls"] = urls
        return body

    def replace(self, **changes: Any) -> ImageRequest:
        """A validated copy with some fields changed."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(changes)
        prompt = fields.pop("prompt")
        return ImageRequest.build(prompt, **fields)


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
    """

    run_id: str
    status: str
    progress: int
    message: str = ""
    record: RunRecord | None = None
    time: float = field(default_factory=time.time)
