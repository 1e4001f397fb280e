"""The OpenAI Images API (spec §9), served by the sandbox under ``/openai/v1``.

``POST /openai/v1/images/generations`` (JSON) and ``POST /openai/v1/images/edits``
(multipart, ``image`` or ``image[]`` files) answer synchronously, as the real API does: the
response is held for the drawn duration of the request, then carries the images as base64
and the token ``usage`` of spec §9c. Errors use OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}``, so the official ``openai`` package parses
every answer into its own types.

Models: gpt-image-1 by default; ``SandboxConfig.openai_models`` adds gpt-image-1.5 and
gpt-image-2 (a sandbox that plays an account with those models). gpt-image-2 takes ``auto``
or any ``WxH`` within its rules (edges multiples of 16, at most 3840, 655,360-8,294,400
pixels, aspect at most 3:1; addendum B.3).

``stream=true`` answers with server-sent events (addendum C): ``partial_images`` partial
images per image (blurrier the earlier they come), then one ``*.completed`` event per image
carrying that image's share of the usage; ``data: [DONE]`` at the end only when
``SandboxConfig.stream_done`` is set, since no OpenAI source says it is sent (open question
12). Partial images add 100 output tokens each to the usage, a figure often repeated but not
sourced (open question 9). ``/files`` and ``/batches`` (module ``_batch``) serve the Batch API.

Written from the spec alone, like the rest of the sandbox: it imports no imgkit client code.
It shares the app's state (credits, faults, the task list of ``/_sandbox/tasks``) with the
gateway endpoints, so one sandbox can play either kind of provider.

The gateway's prompt directives and faults apply, translated to what a synchronous API can
say (it has no failed-task state, so a task error becomes an HTTP error and nothing is
charged):

==============================  ================================================================
``[[http:400]]``                 400 ``invalid_request_error`` / ``invalid_value``
``[[http:401]]``                 401 ``invalid_api_key``
``[[http:402]]``                 429 ``insufficient_quota`` (OpenAI's billing error)
``[[http:403]]``                 404 ``model_not_found`` (the model is not served to this key)
``[[http:429]]``                 429 ``rate_limit_exceeded`` with ``retry-after: 1``
``[[http:500|502|503]]``         that status, ``server_error``
``[[fail:content_policy_...]]``  400 ``moderation_blocked`` (``image_generation_user_error``)
``[[fail:service_unavailable]]``
``[[fail:resource_exhausted]]``  503 ``server_error``
``[[fail:quota_exceeded]]``      429 ``rate_limit_exceeded``
other ``[[fail:...]]``           400 for the parameter/image codes, else 500 ``server_error``
``create_accept_then_hang``      the request is charged and the response held (a timeout)
``create_accept_then_500``       500 with no charge: a synchronous error carries no result
==============================  ================================================================
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._wire import Directives, InvalidRequest, _parse_directives

if TYPE_CHECKING:
    from ._app import _Api
    from ._state import Task

__all__ = ["OUTPUT_TOKENS", "openai_routes"]

PREFIX = "/openai/v1"
#: Models this fake serves by default. Other gpt-image names answer 404 ``model_not_found``
#: unless ``SandboxConfig.openai_models`` lists them.
SERVED_MODELS = ("gpt-image-1",)
_SIZES = {"1024x1024": (1024, 1024), "1536x1024": (1536, 1024), "1024x1536": (1024, 1536)}
_FREE_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
#: Extra output tokens of one partial image (see the module docstring).
PARTIAL_IMAGE_TOKENS = 100
_QUALITIES = ("low", "medium", "high", "auto")
_EDIT_QUALITIES = (*_QUALITIES, "standard")
#: Output image tokens per quality and size for gpt-image-1 [spec §9d, S21].
OUTPUT_TOKENS: dict[str, dict[str, int]] = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
#: A stand-in for the input image tokens of one reference image (the real count depends on
#: the image and ``input_fidelity``; the spec gives none).
IMAGE_INPUT_TOKENS = 256
_MAX_PROMPT = 32000
_MAX_IMAGES = 16
_MAX_IMAGE_BYTES = 50 * 1024 * 1024
_MAX_MASK_BYTES = 4 * 1024 * 1024
_GENERATION_FIELDS = frozenset(
    {
        "prompt", "model", "n", "size", "quality", "background", "output_format",
        "output_compression", "moderation", "stream", "partial_images", "response_format", "user",
    }
)
_EDIT_FIELDS = frozenset(
    {
        "image", "image[]", "prompt", "mask", "model", "n", "size", "quality", "background",
        "output_format", "output_compression", "input_fidelity", "stream", "partial_images",
        "response_format", "user",
    }
)


class OpenAIError(Exception):
    """An error answer in OpenAI's envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # the wire field's name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _invalid(param: str, message: str, code: str = "invalid_value") -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def _server_error(status: int = 500) -> OpenAIError:
    messages = {
        500: "The server had an error while processing your request. Sorry about that!",
        502: "Bad gateway.",
        503: "The server is overloaded or not ready yet.",
    }
    return OpenAIError(status, messages.get(status, messages[500]), type="server_error")


def _not_served(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def _directive_error(status: int, model: str) -> OpenAIError:
    """What OpenAI answers for the failure a ``[[http:N]]`` directive names."""
    if status == 400:
        return _invalid("prompt", "Invalid request (sandbox directive [[http:400]]).")
    if status == 401:
        return _unauthorized(given=True)
    if status == 402:
        return OpenAIError(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            type="insufficient_quota",
            code="insufficient_quota",
        )
    if status == 403:
        return _not_served(model)
    if status == 429:
        return OpenAIError(
            429,
            f"Rate limit reached for {model} on images per minute. Please try again in 1s.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": "1"},
        )
    return _server_error(status)


def _task_error(code: str) -> OpenAIError:
    """A gateway task error code as the synchronous API's HTTP error."""
    if code == "content_policy_violation":
        return OpenAIError(
            400,
            "Your request was rejected by the safety system. If you believe this is an error, "
            "contact us at help.openai.com.",
            type="image_generation_user_error",
            code="moderation_blocked",
        )
    if code == "invalid_parameters":
        return _invalid("prompt", "Invalid parameters (sandbox directive).")
    if code in ("image_processing_error", "image_dimension_mismatch"):
        return _invalid("image", "The input image could not be processed.", code="invalid_image")
    if code in ("service_unavailable", "resource_exhausted"):
        return _server_error(503)
    if code == "quota_exceeded":
        return _directive_error(429, "gpt-image-1")
    return _server_error(500)


def _unauthorized(*, given: bool) -> OpenAIError:
    if not given:
        return OpenAIError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    # Never echo any part of the key: a client may keep the message.
    return OpenAIError(
        401,
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


@dataclass(frozen=True, slots=True)
class ImagesRequest:
    """A validated generations or edits request."""

    model: str
    prompt: str
    raw_prompt: str
    n: int
    size: str
    quality: str
    background: str
    output_format: str
    output_compression: int | None
    images: tuple[tuple[str, bytes], ...] = ()
    stream: bool = False
    partial_images: int = 0
    mask: bytes | None = None

    @property
    def width(self) -> int:
        return int(self.size.partition("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.partition("x")[2])


def _choice(value: Any, param: str, allowed: Sequence[str], default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        listed = ", ".join(f"'{a}'" for a in allowed)
        raise _invalid(param, f"Invalid value: {value!r}. Supported values are: {listed}.")
    return value


def _integer(value: Any, param: str, low: int, high: int, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, str):  # multipart fields are text
        try:
            value = int(value)
        except ValueError:
            raise _invalid(param, f"Invalid type for '{param}': expected an integer.", "invalid_type") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(param, f"Invalid type for '{param}': expected an integer.", "invalid_type")
    if value < low:
        raise _invalid(
            param,
            f"Invalid '{param}': integer below minimum value. Expected a value >= {low}, but got {value} instead.",
            "integer_below_min_value",
        )
    if value > high:
        raise _invalid(
            param,
            f"Invalid '{param}': integer above maximum value. Expected a value <= {high}, but got {value} instead.",
            "integer_above_max_value",
        )
    return value


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def parse_images_request(
    body: dict[str, Any],
    *,
    allowed: frozenset[str],
    qualities: Sequence[str],
    images: tuple[tuple[str, bytes], ...] = (),
    served: Sequence[str] = SERVED_MODELS,
    mask: bytes | None = None,
) -> tuple[ImagesRequest, Directives]:
    """Validate the fields common to both endpoints the way the API does, and read the
    sandbox directives out of the prompt."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _invalid(unknown[0], f"Unknown parameter: '{unknown[0]}'.", "unknown_parameter")
    raw_prompt = body.get("prompt")
    if raw_prompt is None:
        raise _invalid("prompt", "Missing required parameter: 'prompt'.", "missing_required_parameter")
    if not isinstance(raw_prompt, str):
        raise _invalid("prompt", "Invalid type for 'prompt': expected a string.", "invalid_type")
    if not raw_prompt.strip():
        raise _invalid("prompt", "Invalid 'prompt': empty string.", "empty_string")
    if len(raw_prompt) > _MAX_PROMPT:
        raise _invalid(
            "prompt",
            f"Invalid 'prompt': string too long. Expected a string with maximum length {_MAX_PROMPT}, "
            f"but got a string with length {len(raw_prompt)} instead.",
            "string_above_max_length",
        )
    model = body.get("model")
    if model is None:
        raise _invalid(
            "model",
            f"Send a model: this sandbox serves {', '.join(served)} (the API's default is dall-e-2).",
        )
    if not isinstance(model, str):
        raise _invalid("model", "Invalid type for 'model': expected a string.", "invalid_type")
    if model not in served:
        if model.startswith("gpt-image"):
            raise _not_served(model)
        listed = ", ".join(f"'{m}'" for m in served)
        raise _invalid("model", f"Invalid value: {model!r}. Supported values are: {listed}.")
    if body.get("response_format") is not None:
        raise _invalid("response_format", f"Unknown parameter: 'response_format' is not supported with {model}.",
                       "unknown_parameter")
    stream = _flag(body.get("stream"))
    partial_images = _integer(body.get("partial_images"), "partial_images", 0, 3, 0)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _invalid("user", "Invalid type for 'user': expected a string.", "invalid_type")
    n = _integer(body.get("n"), "n", 1, 10, 1)
    size = _size(body.get("size"), model)
    quality = _choice(body.get("quality"), "quality", qualities, "auto")
    background = _choice(body.get("background"), "background", ("transparent", "opaque", "auto"), "auto")
    output_format = _choice(body.get("output_format"), "output_format", ("png", "jpeg", "webp"), "png")
    compression = _integer(body.get("output_compression"), "output_compression", 0, 100, None)
    if compression is not None and output_format == "png":
        raise _invalid("output_compression", "output_compression is only supported for jpeg and webp output.")
    if background == "transparent" and output_format == "jpeg":
        raise _invalid("background", "Transparent background requires output_format png or webp.")
    moderation = body.get("moderation")
    if moderation is not None:
        _choice(moderation, "moderation", ("low", "auto"), "auto")
    prompt, directives = _parse_directives(raw_prompt)
    assert n is not None and partial_images is not None
    return ImagesRequest(
        model=model,
        prompt=prompt,
        raw_prompt=raw_prompt,
        n=n,
        # `auto` lets the service choose; the sandbox always chooses square and medium.
        size="1024x1024" if size == "auto" else size,
        quality="medium" if quality in ("auto", "standard") else quality,
        background="transparent" if background == "transparent" else "opaque",
        output_format=output_format,
        output_compression=compression,
        images=images,
        stream=stream,
        partial_images=partial_images,
        mask=mask,
    ), directives


def _size(value: Any, model: str) -> str:
    """The size as the API checks it: the three standard ones or ``auto``, and for
    gpt-image-2 any ``WxH`` within its rules."""
    if model != "gpt-image-2" or not isinstance(value, str) or value in ("auto", *_SIZES):
        return _choice(value, "size", ("auto", *_SIZES), "auto")
    match = _FREE_SIZE.match(value)
    if match is None:
        raise _invalid("size", f"Invalid value: {value!r}. Supported values are: 'auto' or WIDTHxHEIGHT.")
    w, h = int(match[1]), int(match[2])
    problem = None
    if w % 16 or h % 16:
        problem = "both edges must be divisible by 16"
    elif max(w, h) > 3840:
        problem = "the longest edge must be at most 3840 pixels"
    elif not 655_360 <= w * h <= 8_294_400:
        problem = "the image must have between 655,360 and 8,294,400 pixels"
    elif max(w, h) > 3 * min(w, h):
        problem = "the aspect ratio must be between 1:3 and 3:1"
    if problem is not None:
        raise _invalid("size", f"Invalid size {value!r}: {problem}.")
    return value


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


async def _edit_fields(form: FormData) -> tuple[dict[str, Any], tuple[tuple[str, bytes], ...], bytes | None]:
    """The text fields and the checked image files of an edits form."""
    fields: dict[str, Any] = {}
    files: list[tuple[str, bytes]] = []
    mask: bytes | None = None
    for key, value in form.multi_items():
        if key in ("image", "image[]"):
            if not isinstance(value, UploadFile):
                raise _invalid("image", "Invalid type for 'image': expected a file.", "invalid_type")
            data = await value.read()
            index = len(files)
            if len(data) > _MAX_IMAGE_BYTES:
                too_big = "Invalid image: each image must be smaller than 50 MB."
                raise _invalid(f"image[{index}]", too_big, "invalid_image")
            if _sniff(data) is None:
                raise _invalid(
                    f"image[{index}]",
                    "Invalid image file or mode. Supported formats are 'image/png', 'image/jpeg' and 'image/webp'.",
                    "invalid_image_format",
                )
            files.append((value.filename or f"image-{index}", data))
        elif key == "mask":
            if not isinstance(value, UploadFile):
                raise _invalid("mask", "Invalid type for 'mask': expected a file.", "invalid_type")
            data = await value.read()
            if len(data) > _MAX_MASK_BYTES or _sniff(data) != "png":
                raise _invalid("mask", "Invalid mask: a PNG smaller than 4 MB is required.", "invalid_image")
            mask = data
        elif isinstance(value, UploadFile):
            raise _invalid(key, f"Invalid type for '{key}': expected a string, got a file.", "invalid_type")
        else:
            fields[key] = value
    if not files:
        raise _invalid("image", "Missing required parameter: 'image'.", "missing_required_parameter")
    if len(files) > _MAX_IMAGES:
        raise _invalid("image", f"Invalid 'image': too many images, at most {_MAX_IMAGES}.", "array_above_max_length")
    fidelity = fields.pop("input_fidelity", None)
    if fidelity is not None:
        _choice(fidelity, "input_fidelity", ("high", "low"), "low")
    if mask is not None:
        _check_mask(mask, files[0][1])
    return fields, tuple(files), mask


def _check_mask(mask: bytes, image: bytes) -> None:
    """A mask needs an alpha channel and the first image's size (addendum B.3)."""
    from PIL import Image

    with Image.open(io.BytesIO(mask)) as m:
        alpha = m.mode in ("RGBA", "LA", "PA") or "transparency" in m.info
        size = m.size
    if not alpha:
        raise _invalid("mask", "Invalid mask image: the mask must have an alpha channel.", "invalid_image")
    try:
        with Image.open(io.BytesIO(image)) as first:
            wanted = first.size
    except Exception:  # the image's own check reports an unreadable image
        return
    if size != wanted:
        raise _invalid(
            "mask", f"Invalid mask image: its size {size[0]}x{size[1]} differs from the image's "
            f"{wanted[0]}x{wanted[1]}.", "invalid_image",
        )


def output_tokens(req: ImagesRequest) -> int:
    """Output image tokens of one image: gpt-image-1's table (spec §9d; gpt-image-1.5 is
    given the same, no count being published for it), gpt-image-2's from its shipped price
    sheet (documented counts, scaled for other sizes)."""
    if req.model == "gpt-image-2":
        from imgkit.pricing import get_sheet

        sheet = get_sheet("openai-gpt-image-2-tokens-2026-12")
        return int(sheet.tokens_per_image(req.quality, req.size))  # type: ignore[union-attr]
    return OUTPUT_TOKENS[req.quality][req.size]


def usage_for(req: ImagesRequest, *, images: int | None = None) -> dict[str, Any]:
    """The token usage of spec §9c for one request (or ``images`` of its images), with the
    partial images of a stream."""
    count = req.n if images is None else images
    text_tokens = max(1, math.ceil(len(req.prompt) / 4))
    image_tokens = IMAGE_INPUT_TOKENS * len(req.images)
    partials = req.partial_images * PARTIAL_IMAGE_TOKENS if req.stream else 0
    output = (output_tokens(req) + partials) * count
    return {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": output,
        "total_tokens": text_tokens + image_tokens + output,
        "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
    }


def _encode(png: bytes, req: ImagesRequest) -> bytes:
    """Re-encode a rendered PNG in the requested format and background."""
    if req.output_format == "png":
        return png  # the render is already opaque or transparent as asked
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        img.load()
        out = img.convert("RGBA" if req.background == "transparent" else "RGB")
    buf = io.BytesIO()
    if req.output_format == "jpeg":
        out.convert("RGB").save(buf, format="JPEG", quality=req.output_compression or 90)
    elif req.output_format == "webp":
        out.save(buf, format="WEBP", quality=req.output_compression or 90)
    else:
        out.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _partial(png: bytes, req: ImagesRequest, index: int) -> bytes:
    """Partial image ``index`` of ``req.partial_images``: the final picture blurred, less
    the later it comes."""
    from PIL import Image, ImageFilter

    with Image.open(io.BytesIO(png)) as img:
        img.load()
        radius = max(1, img.width // 16) >> index
        blurred = img.filter(ImageFilter.GaussianBlur(radius))
    buf = io.BytesIO()
    blurred.save(buf, format="PNG", compress_level=1)
    return _encode(buf.getvalue(), req)


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


_Parsed = tuple[ImagesRequest, Directives]


class OpenAIImages:
    """The two endpoints, over the gateway API's state and helpers."""

    def __init__(self, api: _Api) -> None:
        self.api = api

    @property
    def served(self) -> tuple[str, ...]:
        return tuple(self.api.config.openai_models)

    @property
    def state(self) -> Any:
        return self.api.state

    def _check_auth(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header.strip():
            raise _unauthorized(given=False)
        if not self.api._authorized(request):
            raise _unauthorized(given=True)

    async def generations(self, request: Request) -> Response:
        async def parse() -> tuple[ImagesRequest, Directives]:
            try:
                body = await request.json()
            except ValueError:
                raise _invalid("body", "We could not parse the JSON body of your request.", "invalid_json") from None
            if not isinstance(body, dict):
                raise _invalid("body", "The request body must be a JSON object.", "invalid_type")
            return parse_images_request(body, allowed=_GENERATION_FIELDS, qualities=_QUALITIES, served=self.served)

        return await self._serve(request, parse, kind="image_generation")

    async def edits(self, request: Request) -> Response:
        async def parse() -> tuple[ImagesRequest, Directives]:
            content_type = request.headers.get("content-type", "")
            if not content_type.startswith("multipart/form-data"):
                raise _invalid("body", "The edits endpoint takes multipart/form-data.", "invalid_content_type")
            try:
                async with request.form(max_files=_MAX_IMAGES + 2, max_fields=64) as form:
                    fields, images, mask = await _edit_fields(form)
            except HTTPException as exc:
                raise _invalid("body", f"Malformed multipart body ({exc.detail}).") from None
            return parse_images_request(
                fields, allowed=_EDIT_FIELDS, qualities=_EDIT_QUALITIES, images=images, served=self.served, mask=mask
            )

        return await self._serve(request, parse, kind="image_edit")

    async def _serve(self, request: Request, parse: Callable[[], Awaitable[_Parsed]], *, kind: str) -> Response:
        try:
            self._check_auth(request)
            try:
                req, directives = await parse()
            except InvalidRequest as exc:  # a malformed sandbox directive
                raise _invalid(exc.field, str(exc)) from None
            return await self._generate(request, req, directives, kind=kind)
        except OpenAIError as exc:
            return exc.response()

    async def _generate(
        self, request: Request, req: ImagesRequest, directives: Directives, *, kind: str = "image_generation"
    ) -> Response:
        if directives.http is not None:
            raise _directive_error(directives.http, req.model)
        if directives.fail is not None:
            raise _task_error(directives.fail)
        fault, fault_code = self.state.draw_create_fault()
        if fault in ("create_500", "create_accept_then_500"):
            raise _server_error(500)
        if fault == "create_503":
            raise _server_error(503)
        if fault in ("create_429", "create_429_retry_after"):
            error = _directive_error(429, req.model)
            if fault == "create_429":
                error.headers = None
            raise error
        if fault_code is not None:
            raise _task_error(fault_code)
        hang = directives.accept_then_hang or fault == "create_accept_then_hang"
        task: Task | None = self.state.create_task(
            model=req.model,
            prompt=req.prompt,
            raw_prompt=req.raw_prompt,
            width=req.width,
            height=req.height,
            quality=req.quality,
            n=req.n,
            image_urls=tuple(f"multipart:{name}" for name, _ in req.images),
            error_code=None,
            seconds=directives.seconds,
            fault="accept_then_hang" if hang else None,
            background=req.background,
            mask=req.mask,
        )
        if task is None:
            raise _directive_error(402, req.model)
        if hang:
            # Charged, then held past the client's timeout; answers normally afterwards.
            await self.api._hang(request)
        if req.stream:
            return StreamingResponse(
                self._events(request, req, task, kind), media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        if not await self._wait(request, task.duration):
            return Response(status_code=499)  # the client left; nobody reads this
        images = []
        for index in range(task.n):
            png = await self.api._render(task, index)
            data = await run_in_threadpool(_encode, png, req)
            images.append({"b64_json": base64.b64encode(data).decode("ascii")})
        body = {
            "created": int(task.created),
            "data": images,
            "background": req.background,
            "output_format": req.output_format,
            "quality": req.quality,
            "size": req.size,
            "usage": usage_for(req),
        }
        return JSONResponse(body)

    async def _events(self, request: Request, req: ImagesRequest, task: Task, kind: str) -> AsyncIterator[bytes]:
        """The stream: per image, its partial images spread over the drawing time, then its
        completed event with that image's usage."""
        common = {"size": req.size, "quality": req.quality, "background": req.background,
                  "output_format": req.output_format}
        steps = task.n * (req.partial_images + 1)
        step = task.duration / steps
        for index in range(task.n):
            png = await self.api._render(task, index)
            for k in range(req.partial_images):
                if not await self._wait(request, step):
                    return
                data = await run_in_threadpool(_partial, png, req, k)
                yield _sse({"type": f"{kind}.partial_image", "b64_json": base64.b64encode(data).decode("ascii"),
                            "partial_image_index": k, "created_at": int(time.time()), **common})
            if not await self._wait(request, step):
                return
            final = await run_in_threadpool(_encode, png, req)
            yield _sse({"type": f"{kind}.completed", "b64_json": base64.b64encode(final).decode("ascii"),
                        "created_at": int(time.time()), **common, "usage": _stream_usage(req)})
        if self.api.config.stream_done:
            yield b"data: [DONE]\n\n"

    async def _wait(self, request: Request, seconds: float) -> bool:
        """Hold the response for the request's duration; False if the client left."""
        deadline = time.monotonic() + seconds
        while not self.state.closing.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if await request.is_disconnected():
                return False
            await anyio.sleep(min(0.05, remaining))
        return True


def _stream_usage(req: ImagesRequest) -> dict[str, Any]:
    """One image's usage, in the stream's shape (no ``output_tokens_details``)."""
    usage = usage_for(req, images=1)
    usage.pop("output_tokens_details", None)
    return usage


def openai_routes(api: _Api) -> list[Route]:
    """The OpenAI Images routes, under ``/openai/v1``."""
    from ._batch import batch_routes

    images = OpenAIImages(api)
    return [
        Route(f"{PREFIX}/images/generations", images.generations, methods=["POST"]),
        Route(f"{PREFIX}/images/edits", images.edits, methods=["POST"]),
        *batch_routes(images),
    ]
