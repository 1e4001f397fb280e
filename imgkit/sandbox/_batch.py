"""OpenAI's Files and Batch APIs (addendum D), served under ``/openai/v1`` as far as the
official ``openai`` package needs them to run image batches: upload a JSONL file, create a
batch, retrieve it, list and cancel batches, and download its output and error files.

A batch is worked out when it is due (``SandboxConfig.batch_seconds`` x ``time_scale`` after
creation), on the first look after that: each line of the input file is run like a
synchronous ``/v1/images/generations`` call (same validation, same images, same usage) and
lands in the output file as ``{"id", "custom_id", "response": {"status_code", "request_id",
"body"}, "error": null}`` (addendum D, [D4]); a line the API would refuse lands in the error
file with its error body. Edits in a batch need JSON image references (the 2026-02-09 form),
which the sandbox does not fetch: such lines fail with ``invalid_request_error``.

Written from the spec alone; it imports no imgkit client code.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._openai import (
    _GENERATION_FIELDS,
    _QUALITIES,
    OpenAIError,
    _encode,
    _invalid,
    _unauthorized,
    parse_images_request,
    usage_for,
)
from ._wire import InvalidRequest

if TYPE_CHECKING:
    from ._openai import OpenAIImages

__all__ = ["batch_routes"]

PREFIX = "/openai/v1"
_ENDPOINTS = ("/v1/images/generations", "/v1/images/edits")
_MAX_LINES = 50_000
_MAX_FILE_BYTES = 200 * 1024 * 1024
_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass(slots=True)
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
            "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
            "status_details": None,
        }


@dataclass(slots=True)
class _Batch:
    id: str
    endpoint: str
    input_file_id: str
    created_at: float
    due: float
    metadata: dict[str, str] | None
    status: str = "in_progress"
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed_at: int | None = None
    cancelled_at: int | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})

    def body(self) -> dict[str, Any]:
        created = int(self.created_at)
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "errors": None,
            "input_file_id": self.input_file_id, "completion_window": "24h", "status": self.status,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": created, "in_progress_at": created, "expires_at": created + 86400,
            "finalizing_at": self.completed_at, "completed_at": self.completed_at, "failed_at": None,
            "expired_at": None, "cancelling_at": self.cancelled_at, "cancelled_at": self.cancelled_at,
            "request_counts": dict(self.counts), "metadata": self.metadata,
        }


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _not_found(kind: str, ident: str) -> JSONResponse:
    return _error(404, f"No such {kind}: '{ident}'", code=None)


class Batches:
    """The files and batches of one app."""

    def __init__(self, images: OpenAIImages) -> None:
        self.images = images
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}

    @property
    def config(self) -> Any:
        return self.images.api.config

    def _auth(self, request: Request) -> JSONResponse | None:
        try:
            self.images._check_auth(request)
        except OpenAIError:
            return _unauthorized(given=bool(request.headers.get("authorization", "").strip())).response()
        return None

    # -- files ------------------------------------------------------------------------------

    async def create_file(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            async with request.form(max_files=1, max_fields=8, max_part_size=_MAX_FILE_BYTES) as form:
                upload = form.get("file")
                purpose = form.get("purpose")
                if not isinstance(upload, UploadFile):
                    return _error(400, "Missing required parameter: 'file'.", "file", "missing_required_parameter")
                data = await upload.read()
                name = upload.filename or "file"
        except HTTPException as exc:
            return _error(400, f"Malformed multipart body ({exc.detail}).", "file")
        if purpose not in _PURPOSES:
            return _error(400, f"Invalid value for 'purpose': {purpose!r}.", "purpose", "invalid_value")
        if len(data) > _MAX_FILE_BYTES:
            return _error(400, "File is too large: at most 200 MB for batch files.", "file")
        file = _File(id=f"file-{secrets.token_hex(12)}", filename=name, purpose=str(purpose), data=data,
                     created_at=int(time.time()))
        self.files[file.id] = file
        return JSONResponse(file.body())

    async def get_file(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        file = self.files.get(request.path_params["file_id"])
        return JSONResponse(file.body()) if file else _not_found("file", request.path_params["file_id"])

    async def file_content(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        file = self.files.get(request.path_params["file_id"])
        if file is None:
            return _not_found("file", request.path_params["file_id"])
        return Response(file.data, media_type="application/octet-stream")

    # -- batches ----------------------------------------------------------------------------

    async def create_batch(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", "body", "invalid_json")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "body")
        endpoint = body.get("endpoint")
        if endpoint not in _ENDPOINTS:
            return _error(400, f"Invalid value for 'endpoint': {endpoint!r}; the sandbox batches "
                          f"{', '.join(_ENDPOINTS)}.", "endpoint", "invalid_value")
        if body.get("completion_window") != "24h":
            return _error(400, "Invalid value for 'completion_window': only '24h' is supported.",
                          "completion_window", "invalid_value")
        file = self.files.get(str(body.get("input_file_id")))
        if file is None:
            return _error(400, f"Invalid 'input_file_id': {body.get('input_file_id')!r} does not exist.",
                          "input_file_id", "invalid_value")
        if file.purpose != "batch":
            return _error(400, "The input file must be uploaded with purpose 'batch'.", "input_file_id")
        lines = [line for line in file.data.decode("utf-8", "replace").splitlines() if line.strip()]
        if not lines or len(lines) > _MAX_LINES:
            return _error(400, f"The input file must hold 1 to {_MAX_LINES} requests.", "input_file_id")
        now = self.images.state.clock()
        batch = _Batch(
            id=f"batch_{secrets.token_hex(12)}", endpoint=str(endpoint), input_file_id=file.id, created_at=now,
            due=now + self.config.batch_seconds * self.config.time_scale, metadata=body.get("metadata"),
        )
        batch.counts["total"] = len(lines)
        self.batches[batch.id] = batch
        return JSONResponse(batch.body())

    async def get_batch(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        batch = self.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _not_found("batch", request.path_params["batch_id"])
        await self._advance(batch)
        return JSONResponse(batch.body())

    async def list_batches(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        for batch in self.batches.values():
            await self._advance(batch)
        data = [b.body() for b in sorted(self.batches.values(), key=lambda b: b.created_at, reverse=True)]
        return JSONResponse({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None, "has_more": False})

    async def cancel_batch(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        batch = self.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _not_found("batch", request.path_params["batch_id"])
        if batch.status == "in_progress":
            batch.status = "cancelled"
            batch.cancelled_at = int(self.images.state.clock())
        return JSONResponse(batch.body())

    async def _advance(self, batch: _Batch) -> None:
        """Work the batch out once it is due."""
        if batch.status != "in_progress" or self.images.state.clock() < batch.due:
            return
        batch.status = "finalizing"
        outputs: list[str] = []
        errors: list[str] = []
        for line in self.files[batch.input_file_id].data.decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            custom_id, status, answer = await self._run_line(line, batch.endpoint)
            row = {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
                   "response": {"status_code": status, "request_id": secrets.token_hex(16), "body": answer},
                   "error": None}
            (outputs if status == 200 else errors).append(json.dumps(row, separators=(",", ":")))
        batch.counts["completed"] = len(outputs)
        batch.counts["failed"] = len(errors)
        now = int(self.images.state.clock())
        for kind, rows in (("output", outputs), ("error", errors)):
            if not rows:
                continue
            file = _File(id=f"file-{secrets.token_hex(12)}", filename=f"{batch.id}_{kind}.jsonl",
                         purpose="batch_output", data=("\n".join(rows) + "\n").encode(), created_at=now)
            self.files[file.id] = file
            if kind == "output":
                batch.output_file_id = file.id
            else:
                batch.error_file_id = file.id
        batch.status = "completed"
        batch.completed_at = now

    async def _run_line(self, line: str, endpoint: str) -> tuple[str | None, int, dict[str, Any]]:
        """One request of the input file: (custom_id, status, body)."""
        custom_id = None
        try:
            try:
                item = json.loads(line)
            except ValueError:
                raise _invalid("body", "This line is not valid JSON.", "invalid_json") from None
            if not isinstance(item, dict):
                raise _invalid("body", "Each line must be a JSON object.")
            custom_id = item.get("custom_id")
            if item.get("method") != "POST" or item.get("url") != endpoint:
                raise _invalid("url", f"Each request must be POST {endpoint}, the batch's endpoint.")
            if endpoint != "/v1/images/generations":
                raise _invalid("images", "The sandbox runs generations only in a batch; edits need image "
                               "references it does not fetch.")
            body = item.get("body")
            if not isinstance(body, dict):
                raise _invalid("body", "Missing required parameter: 'body'.", "missing_required_parameter")
            if body.get("stream"):
                raise _invalid("stream", "Streaming is not supported in a batch.")
            try:
                req, _ = parse_images_request(body, allowed=_GENERATION_FIELDS, qualities=_QUALITIES,
                                              served=self.images.served)
            except InvalidRequest as exc:
                raise _invalid(exc.field, str(exc)) from None
            task = self.images.state.create_task(
                model=req.model, prompt=req.prompt, raw_prompt=req.raw_prompt, width=req.width,
                height=req.height, quality=req.quality, n=req.n, image_urls=(), error_code=None,
                seconds=0.0, fault=None, background=req.background,
            )
            if task is None:
                raise OpenAIError(429, "You exceeded your current quota.", type="insufficient_quota",
                                  code="insufficient_quota")
            images = []
            for index in range(task.n):
                png = await self.images.api._render(task, index)
                data = await run_in_threadpool(_encode, png, req)
                images.append({"b64_json": base64.b64encode(data).decode("ascii")})
            answer = {"created": int(task.created), "data": images, "background": req.background,
                      "output_format": req.output_format, "quality": req.quality, "size": req.size,
                      "usage": usage_for(req)}
            return custom_id, 200, answer
        except OpenAIError as exc:
            error = {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
            return custom_id, exc.status, {"error": error}


def batch_routes(images: OpenAIImages) -> list[Route]:
    """The Files and Batch routes, under ``/openai/v1``."""
    batches = Batches(images)
    return [
        Route(f"{PREFIX}/files", batches.create_file, methods=["POST"]),
        Route(f"{PREFIX}/files/{{file_id}}", batches.get_file, methods=["GET"]),
        Route(f"{PREFIX}/files/{{file_id}}/content", batches.file_content, methods=["GET"]),
        Route(f"{PREFIX}/batches", batches.create_batch, methods=["POST"]),
        Route(f"{PREFIX}/batches", batches.list_batches, methods=["GET"]),
        Route(f"{PREFIX}/batches/{{batch_id}}", batches.get_batch, methods=["GET"]),
        Route(f"{PREFIX}/batches/{{batch_id}}/cancel", batches.cancel_batch, methods=["POST"]),
    ]
