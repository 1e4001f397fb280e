"""The protocol every provider implements, and the values it returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from imgkit.request import ImageRequest, ReferenceImage, TaskStatus

__all__ = [
    "Balance",
    "BatchProvider",
    "Preview",
    "PreviewHandler",
    "Provider",
    "Submission",
    "TaskSnapshot",
    "batch_task_id",
    "is_batch_task",
    "split_batch_task",
]


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """One reading of a task.

    Attributes:
        task_id: the service's id.
        status: Pending, Processing, Completed or Failed.
        estimated_time: the service's hint of the task's duration, in seconds.
        credits_reserved: credits the service reserved (create response).
        credits_charged: credits the service reports as charged, when it does.
        raw: the parsed JSON, for debugging (never contains the key).
    """

    task_id: str
    status: TaskStatus
    estimated_time: float | None = None
    credits_reserved: float | None = None
    credits_charged: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


Submission = TaskSnapshot


@dataclass(frozen=True, slots=True)
class Preview:
    """One partial image of a streamed request, as it was drawn.

    Attributes:
        index: its place among the request's partial images (0-based, per image).
        image: the encoded image bytes (the request's output format).
        of: how many partial images the request asked for.
    """

    index: int
    image: bytes = field(repr=False)
    of: int


#: What a provider calls with each partial image of a streamed request.
PreviewHandler = Callable[[Preview], None]


@dataclass(frozen=True, slots=True)
class Balance:
    """The credits that can be spent, as the service reports them.

    The gateway reports two figures: the API key's own remaining credits (unless the key is
    unlimited) and the account's. What can be spent is the smaller of the two when the key is
    limited, the account's when it is not; ``binding`` says which limit that is.

    Attributes:
        remaining_credits: the credits that can be spent (``math.inf`` when nothing limits).
        used_credits: the credits used, as reported for the binding limit.
        unlimited: no limit is known at all (an unlimited key, no account figure).
        key_remaining: the key's own remaining credits (None when unlimited or not reported).
        account_remaining: the account's remaining credits (None when not reported).
        binding: ``"key"`` or ``"account"``: whose limit ``remaining_credits`` is (None when
            unlimited).
        key_unlimited: the key has no limit of its own.

    Example:
        >>> str(imgkit.balance())
        '1095.3996 credits (the account's balance binds; the key's own limit is 99416.4429)'
    """

    remaining_credits: float
    used_credits: float | None = None
    unlimited: bool = False
    key_remaining: float | None = None
    account_remaining: float | None = None
    binding: str | None = None
    key_unlimited: bool = False

    @property
    def limit_note(self) -> str:
        """Which limit binds, in words (for banners and descriptions)."""
        if self.unlimited:
            return "no limit reported"
        key = "the key is unlimited" if self.key_unlimited else (
            f"the key's own limit is {self.key_remaining:.10g}" if self.key_remaining is not None else "")
        if self.binding == "key":
            account = (f"; the account holds {self.account_remaining:.10g}"
                       if self.account_remaining is not None else "")
            return f"the key's limit binds{account}"
        return "the account's balance binds" + (f"; {key}" if key else "")

    def __str__(self) -> str:
        if self.unlimited:
            return "unlimited (no limit reported)"
        return f"{self.remaining_credits:.10g} credits ({self.limit_note})"


@runtime_checkable
class Provider(Protocol):
    """What the engine needs from a service. Implementations raise imgkit errors only:
    ``RequestError`` (with ``sent``), ``APIError``, ``DownloadError``."""

    name: str

    async def submit(
        self,
        request: ImageRequest,
        image_urls: Sequence[str],
        *,
        mask_url: str | None = None,
        on_preview: PreviewHandler | None = None,
    ) -> TaskSnapshot:
        """Create a task (``POST /v1/images/generations``).

        Args:
            request: the request.
            image_urls: what :meth:`upload` returned for each reference image.
            mask_url: what :meth:`upload` returned for the request's mask.
            on_preview: called with each partial image of a streamed request (``previews``).

        The engine passes ``mask_url`` and ``on_preview`` only when the request has a mask or
        asks for previews, so a provider of models without them may leave them out."""
        ...

    async def status(self, task_id: str) -> TaskSnapshot:
        """Read a task (``GET /v1/tasks/{id}``)."""
        ...

    async def download(self, url: str, max_bytes: int) -> bytes:
        """Fetch one result, streamed, refusing more than ``max_bytes``."""
        ...

    async def upload(self, image: ReferenceImage) -> str:
        """Upload a local reference image and return a URL the service can fetch."""
        ...

    async def balance(self) -> Balance | None:
        """The credits balance, or None when the service does not report one."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


# --- batches -------------------------------------------------------------------------------
#
# A run sent in a batch is recorded with the task id ``<batch id>/<run id>``: the batch id
# (OpenAI's start with ``batch_``) says where to look, the run id is the line's custom_id.


def batch_task_id(batch_id: str, custom_id: str) -> str:
    """The task id of the run ``custom_id`` inside the batch ``batch_id``."""
    return f"{batch_id}/{custom_id}"


def is_batch_task(task_id: str | None) -> bool:
    """Whether ``task_id`` names a run inside a batch (see :func:`batch_task_id`)."""
    return task_id is not None and task_id.startswith("batch_") and "/" in task_id


def split_batch_task(task_id: str) -> tuple[str, str]:
    """``(batch id, custom id)`` of a batch run's task id."""
    batch_id, _, custom_id = task_id.partition("/")
    return batch_id, custom_id


@runtime_checkable
class BatchProvider(Provider, Protocol):
    """A provider that also runs many requests as one half-price batch (OpenAI's Batch
    API). :meth:`Provider.status` of a batch run's task id reads the batch, and once it is
    over, that run's line of its output or error file."""

    async def submit_batch(self, items: Sequence[tuple[str, ImageRequest]]) -> str:
        """Send ``(custom id, request)`` pairs as one batch; returns the batch id."""
        ...

    def batch_groups(self, items: Sequence[tuple[str, ImageRequest]]) -> list[list[tuple[str, ImageRequest]]]:
        """``items`` cut, in order, into batches that each fit one batch's limits."""
        ...
