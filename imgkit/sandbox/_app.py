"""The sandbox as one Starlette app playing all of the gateway's hosts.

Paths are the spec's: the task API (`/v1/...`, api.evolink.ai), the file API
(`/api/v1/files/...`, files-api.evolink.ai), the file bytes themselves (`/files/...`, the
CDN), OpenAI's Images, Files and Batch APIs (`/openai/v1/...`), plus `/_sandbox/...` for
introspection and run-time fault control.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._openai import openai_routes
from ._render import RenderSpec, render_png
from ._state import (
    UPLOAD_TTL,
    FaultConfig,
    SandboxConfig,
    SandboxState,
    Task,
    Upload,
)
from ._wire import DIRECTIVE_KIND, InvalidRequest, error_body, parse_generation, task_body

__all__ = ["create_app"]

_log = logging.getLogger("imgkit.sandbox")

# The service's own examples carry a +08:00 offset [spec §4].
_FILES_TZ = timezone(timedelta(hours=8))
_MIME_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
_UPLOAD_RE = re.compile(r"/files/uploads/(?P<file_id>file_[0-9a-f]+)/(?P<name>[^/]+)")
#: The download faults that refuse a result link, as the CDN answers them.
_GONE: dict[str, tuple[int, str, str]] = {
    "download_403": (403, "AccessDenied", "Access Denied"),
    "download_404": (404, "NoSuchKey", "The specified key does not exist."),
    "download_410": (410, "Gone", "The requested object is no longer available."),
}
_RESULT_RE = re.compile(r"/files/results/(?P<task_id>task-unified-[^/]+)/(?P<index>\d+)\.png")


def _sniff_mime(data: bytes) -> str | None:
    """The image type by magic number: the file API judges bytes, not names."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _png_facts(data: bytes) -> tuple[int, int, bool] | None:
    """Width, height and whether a mask has an alpha channel (a PNG only), else None."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height, img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    except Exception:  # a broken file is as good as none
        return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=_FILES_TZ).isoformat(timespec="seconds")


def _http_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cdn_error(status: int, code: str, message: str, **extra: str) -> Response:
    """An object-storage style XML error, as a signed-URL CDN answers."""
    fields = "".join(
        f"<{k}>{v}</{k}>" for k, v in {"Code": code, "Message": message, **extra}.items()
    )
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{fields}</Error>\n'
    return Response(body, status_code=status, media_type="application/xml")


def _file_error(status: int, msg: str) -> JSONResponse:
    """The file API's failure envelope (inferred from the vendor's client, spec §4)."""
    return JSONResponse({"success": False, "code": status, "msg": msg}, status_code=status)


def _clean_name(value: object, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    # Keep only the last path component so a name can never climb out of its folder.
    name = value.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255] or None


def _clean_path(value: object, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    parts = [p for p in value.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(parts)[:255] or None


class _Api:
    """Request handlers over one SandboxState."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    @property
    def config(self) -> SandboxConfig:
        return self.state.config

    # -- helpers --------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        key = self.config.api_key
        return key is None or hmac.compare_digest(token.encode(), key.encode())

    def _error(
        self,
        kind: str,
        *,
        message: str | None = None,
        param: str | None = None,
        model: str = "gpt-image-1",
        retry_after: bool = False,
    ) -> JSONResponse:
        status, body = error_body(
            self.config.error_style, kind, message=message, param=param, model=model
        )
        headers = {"Retry-After": "1"} if retry_after else None
        return JSONResponse(body, status_code=status, headers=headers)

    def _file_unauthorized(self) -> JSONResponse:
        # The file API's clients read `code`/`msg`; the task API's read `error`. Give both.
        _, envelope = error_body(self.config.error_style, "unauthorized")
        body = {"success": False, "code": 401, "msg": "Invalid or expired token", **envelope}
        return JSONResponse(body, status_code=401)

    @staticmethod
    def _base_url(request: Request) -> str:
        # From the request, so links work on loopback and in-process (http://sandbox) alike.
        return str(request.base_url).rstrip("/")

    @staticmethod
    async def _json(request: Request) -> Any:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidRequest("body", "must be valid JSON") from exc

    def _own_path(self, url: str, request: Request) -> str | None:
        """The /files/... path of url if it is served by this sandbox, else None."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        base = urlsplit(self._base_url(request))
        if (
            parts.scheme.lower() not in ("http", "https")
            or parts.netloc.lower() != base.netloc.lower()
        ):
            return None
        root = base.path.rstrip("/")
        if not parts.path.startswith(root + "/files/"):
            return None
        return parts.path[len(root) :]

    def _lookup_own(self, path: str, now: float) -> Upload | tuple[Task, int] | None:
        """What an own /files/ path serves right now, or None (missing, pending, expired)."""
        if m := _UPLOAD_RE.fullmatch(path):
            upload = self.state.get_upload(m["file_id"])
            if upload is not None and unquote(m["name"]) == upload.file_name:
                return upload
            return None
        if m := _RESULT_RE.fullmatch(path):
            task, index = self.state.get_task(m["task_id"]), int(m["index"])
            if (
                task is not None
                and index < task.n
                and task.snapshot(now).status == "completed"
                and now <= task.finishes_at + self.config.url_ttl
            ):
                return task, index
        return None

    async def _render(self, task: Task, index: int) -> bytes:
        key = (task.id, index)
        data = self.state.cached_render(key)
        if data is None:
            spec = RenderSpec(
                prompt=task.prompt,
                quality=task.quality,
                width=task.width,
                height=task.height,
                index=index,
                n=task.n,
                refs=len(task.image_urls),
                model=task.model,
                background=task.background,
                mask=task.mask,
            )
            # Rendering takes tens of milliseconds: keep it off the event loop.
            data = await run_in_threadpool(render_png, spec)
            self.state.store_render(key, data)
        return data

    async def _mask(self, mask_url: str | None, image_urls: tuple[str, ...], request: Request) -> bytes | None:
        """The mask's bytes when it is a file of this sandbox, checked with the page's
        documented failure texts (a PNG with alpha, the reference image's exact size).
        A mask elsewhere cannot be fetched offline; the image is then drawn unmasked."""
        if mask_url is None:
            return None
        now = self.state.clock()
        path = self._own_path(mask_url, request)
        found = self._lookup_own(path, now) if path is not None else None
        if not isinstance(found, Upload):
            return None
        facts = await run_in_threadpool(_png_facts, found.data)
        if facts is None or not facts[2]:
            raise InvalidRequest("mask_url", "Invalid mask image format - mask image missing alpha channel")
        ref_path = self._own_path(image_urls[0], request)
        ref = self._lookup_own(ref_path, now) if ref_path is not None else None
        if isinstance(ref, Upload):
            ref_facts = await run_in_threadpool(_png_facts, ref.data)
            if ref_facts is not None and ref_facts[:2] != facts[:2]:
                raise InvalidRequest("mask_url", "Invalid mask image format - mask size does not match image size")
        return found.data

    async def _hang(self, request: Request) -> None:
        """Hold a response until hang_seconds pass, the client leaves or the server stops."""
        deadline = time.monotonic() + self.state.faults.hang_seconds
        while not self.state.closing.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if await request.is_disconnected():
                _log.debug("client left during accept_then_hang")
                return
            await anyio.sleep(min(0.05, remaining))

    # -- task API -------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error("unauthorized")
        try:
            req = parse_generation(await self._json(request))
        except InvalidRequest as exc:
            return self._error("invalid_request", message=str(exc), param=exc.field)
        d = req.directives
        if d.http is not None:
            return self._error(DIRECTIVE_KIND[d.http], model=req.model, retry_after=d.http == 429)

        fault, fault_code = self.state.draw_create_fault()
        if fault in ("create_500", "create_503", "create_429", "create_429_retry_after"):
            _log.info("injected fault %s on create", fault)
            kind = {
                "create_500": "internal_error",
                "create_503": "service_unavailable",
            }.get(fault, "rate_limit_exceeded")
            return self._error(kind, retry_after=fault == "create_429_retry_after")

        accept_fault = None
        if d.accept_then_500 or fault == "create_accept_then_500":
            accept_fault = "accept_then_500"
        elif d.accept_then_hang or fault == "create_accept_then_hang":
            accept_fault = "accept_then_hang"

        error_code = d.fail or fault_code
        if error_code is None:
            # A reference into this sandbox that serves nothing fails like an unreachable URL.
            now = self.state.clock()
            for url in req.image_urls:
                path = self._own_path(url, request)
                if path is not None and self._lookup_own(path, now) is None:
                    error_code = "image_processing_error"
                    break

        try:
            mask = await self._mask(req.mask_url, req.image_urls, request)
        except InvalidRequest as exc:
            return self._error("invalid_request", message=str(exc), param=exc.field)
        task = self.state.create_task(
            model=req.model,
            prompt=req.prompt,
            raw_prompt=req.raw_prompt,
            width=req.width,
            height=req.height,
            quality=req.quality,
            n=req.n,
            image_urls=req.image_urls,
            error_code=error_code,
            seconds=d.seconds,
            fault=accept_fault,
            background=req.background,
            mask=mask,
        )
        if task is None:
            return self._error("insufficient_quota")
        _log.debug(
            "created %s (%s, %s, n=%d, %.3fs)",
            task.id,
            task.quality,
            task.size,
            task.n,
            task.duration,
        )
        if accept_fault == "accept_then_500":
            _log.info("injected fault accept_then_500 on %s", task.id)
            return self._error("internal_error")
        body = task_body(
            task,
            task.snapshot(task.created),
            base_url=self._base_url(request),
            url_ttl=self.config.url_ttl,
            now=task.created,
            created_response=True,
        )
        if accept_fault == "accept_then_hang":
            _log.info("injected fault accept_then_hang on %s", task.id)
            await self._hang(request)
        return JSONResponse(body)

    async def get_task(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error("unauthorized", message="Authentication required")
        fault = self.state.draw_poll_fault()
        if fault is not None:
            _log.info("injected fault %s", fault)
            return self._error(
                "poll_internal_error" if fault == "poll_500" else "poll_rate_limit_exceeded"
            )
        task_id = request.path_params["task_id"]
        if not task_id.startswith("task-unified-"):
            return self._error("invalid_task_id", param="task_id")
        task = self.state.get_task(task_id)
        if task is None:
            return self._error("task_not_found")
        now = self.state.clock()
        body = task_body(
            task,
            task.snapshot(now),
            base_url=self._base_url(request),
            url_ttl=self.config.url_ttl,
            now=now,
        )
        return JSONResponse(body)

    async def credits(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error("unauthorized")
        return JSONResponse({"success": True, "message": "", "data": self.state.balance()})

    # -- result files (the CDN; no auth, like signed URLs) -----------------------------------

    async def result_file(self, request: Request) -> Response:
        task = self.state.get_task(request.path_params["task_id"])
        index = request.path_params["index"]
        now = self.state.clock()
        if task is None or index >= task.n or task.snapshot(now).status != "completed":
            return _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        expires = task.finishes_at + self.config.url_ttl
        if now > expires:
            return _cdn_error(
                403,
                "AccessDenied",
                "Request has expired",
                Expires=_http_date(expires),
                ServerTime=_http_date(now),
            )
        if self.state.result_not_there_yet(task.id, index):
            _log.info("injected fault result_fail_first on %s/%d", task.id, index)
            return _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        fault, rng = self.state.draw_download_fault()
        if fault in _GONE:
            _log.info("injected fault %s on %s/%d", fault, task.id, index)
            return _cdn_error(*_GONE[fault])
        if fault == "download_500":
            _log.info("injected fault download_500 on %s/%d", task.id, index)
            return _cdn_error(500, "InternalError", "We encountered an internal error.")
        data = await self._render(task, index)
        if fault == "download_corrupt":
            _log.info("injected fault download_corrupt on %s/%d", task.id, index)
            # Either a cut-off transfer or bytes that were never an image.
            data = data[: len(data) // 3] if rng.random() < 0.5 else rng.randbytes(4096)
        remaining = max(0, int(expires - now))
        return Response(
            data,
            media_type="image/png",
            headers={"Cache-Control": f"private, max-age={min(remaining, 86400)}"},
        )

    async def upload_file(self, request: Request) -> Response:
        upload = self.state.get_upload(request.path_params["file_id"])
        name = request.path_params.get("file_name")
        if upload is None or (name is not None and name != upload.file_name):
            return _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(upload.data, media_type=upload.mime_type)

    # -- file API -------------------------------------------------------------------------

    def _upload_body(self, request: Request, upload: Upload) -> dict[str, Any]:
        base = self._base_url(request)
        name = quote(upload.file_name, safe="")
        return {
            "success": True,
            "code": 200,
            "msg": "File uploaded successfully",
            "data": {
                "file_id": upload.file_id,
                "file_name": upload.file_name,
                "original_name": upload.original_name,
                "file_size": len(upload.data),
                "mime_type": upload.mime_type,
                "upload_path": upload.upload_path,
                "file_url": f"{base}/files/uploads/{upload.file_id}/{name}",
                "download_url": f"{base}/api/v1/files/download/{upload.file_id}",
                "upload_time": _iso(upload.uploaded),
                "expires_at": _iso(upload.expires),
            },
        }

    async def _store(
        self,
        request: Request,
        data: bytes,
        *,
        file_name: str | None,
        upload_path: str | None,
        original_name: str | None,
    ) -> Response:
        if self.state.draw_upload_fault() is not None:
            _log.info("injected fault upload_500")
            return _file_error(500, "Internal server error")
        if not data:
            return _file_error(400, "file: is empty")
        if len(data) > self.config.max_upload_bytes:
            return _file_error(413, f"file: larger than {self.config.max_upload_bytes} bytes")
        mime = _sniff_mime(data)
        if mime is None:
            return _file_error(
                400,
                "file: unsupported file type; accepted: image/jpeg, image/png, image/gif, "
                "image/webp (judged by content)",
            )
        file_id = self.state.new_file_id()
        name = file_name or original_name or f"{file_id}.{_MIME_EXT[mime]}"
        now = self.state.clock()
        upload = Upload(
            file_id=file_id,
            file_name=name,
            original_name=original_name or name,
            data=data,
            mime_type=mime,
            # Without a path the service files uploads by type.
            upload_path=upload_path or "images",
            uploaded=now,
            expires=now + UPLOAD_TTL,
        )
        if not self.state.add_upload(upload):
            return _file_error(403, f"File quota exceeded ({self.config.max_files} files)")
        return JSONResponse(self._upload_body(request, upload))

    async def upload_base64(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._file_unauthorized()
        try:
            body = await self._json(request)
            if not isinstance(body, dict):
                raise InvalidRequest("body", "must be a JSON object")
            raw = body.get("base64_data")
            if not isinstance(raw, str) or not raw.strip():
                raise InvalidRequest("base64_data", "is required")
            payload = raw.strip()
            if payload.startswith("data:"):
                header, _, payload = payload.partition(",")
                if not header.endswith(";base64"):
                    raise InvalidRequest("base64_data", "data URL must be base64-encoded")
            try:
                data = base64.b64decode(re.sub(r"\s+", "", payload), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidRequest("base64_data", "is not valid base64") from exc
            file_name = _clean_name(body.get("file_name"), "file_name")
            upload_path = _clean_path(body.get("upload_path"), "upload_path")
        except InvalidRequest as exc:
            return _file_error(400, str(exc))
        return await self._store(
            request, data, file_name=file_name, upload_path=upload_path, original_name=None
        )

    async def upload_stream(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._file_unauthorized()
        try:
            async with request.form(max_files=1, max_fields=20) as form:
                part = form.get("file")
                if not isinstance(part, UploadFile):
                    raise InvalidRequest("file", "is required (multipart form field 'file')")
                data = await part.read()
                original = _clean_name(part.filename, "file")
                file_name = _clean_name(form.get("file_name") or form.get("fileName"), "file_name")
                upload_path = _clean_path(
                    form.get("upload_path") or form.get("uploadPath"), "upload_path"
                )
        except InvalidRequest as exc:
            return _file_error(400, str(exc))
        except HTTPException as exc:
            return _file_error(400, f"file: malformed multipart body ({exc.detail})")
        except AssertionError:
            # Starlette asserts when python-multipart is missing; say so instead of a bare 500.
            _log.exception("multipart upload needs the python-multipart package")
            return _file_error(500, "multipart parsing unavailable: install python-multipart")
        return await self._store(
            request, data, file_name=file_name, upload_path=upload_path, original_name=original
        )

    async def upload_url(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._file_unauthorized()
        try:
            body = await self._json(request)
            if not isinstance(body, dict):
                raise InvalidRequest("body", "must be a JSON object")
            file_url = body.get("file_url")
            if not isinstance(file_url, str) or not file_url:
                raise InvalidRequest("file_url", "is required")
            file_name = _clean_name(body.get("file_name"), "file_name")
            upload_path = _clean_path(body.get("upload_path"), "upload_path")
        except InvalidRequest as exc:
            return _file_error(400, str(exc))
        # The sandbox never touches the network: only its own /files/ links can be "fetched".
        path = self._own_path(file_url, request)
        if path is None:
            return _file_error(
                400,
                "file_url: the sandbox does not download from the network; only URLs this "
                "sandbox serves under /files/ are accepted",
            )
        found = self._lookup_own(path, self.state.clock())
        if found is None:
            return _file_error(400, "file_url: could not download the file (404)")
        data = found.data if isinstance(found, Upload) else await self._render(*found)
        original = _clean_name(path.rsplit("/", 1)[-1], "file_url")
        return await self._store(
            request, data, file_name=file_name, upload_path=upload_path, original_name=original
        )

    async def quota(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._file_unauthorized()
        used = self.state.used_files()
        limit = self.config.max_files
        return JSONResponse(
            {
                "success": True,
                "code": 200,
                "data": {
                    "user_group": "default",
                    "used_files": used,
                    "max_files": limit,
                    "remain_files": max(0, limit - used),
                    "is_custom": False,
                    "quota_reason": "",
                },
            }
        )

    async def list_files(self, request: Request) -> Response:
        """Undocumented, used by the vendor's MCP client [spec §4]."""
        if not self._authorized(request):
            return self._file_unauthorized()
        try:
            page = max(1, int(request.query_params.get("page", "1")))
            size = min(100, max(1, int(request.query_params.get("pageSize", "20"))))
        except ValueError:
            return _file_error(400, "page and pageSize must be integers")
        uploads = sorted(self.state.uploads(), key=lambda u: u.uploaded, reverse=True)
        chunk = uploads[(page - 1) * size : page * size]
        files = [
            {
                "file_id": u.file_id,
                "file_name": u.file_name,
                "file_size": len(u.data),
                "upload_time": _iso(u.uploaded),
            }
            for u in chunk
        ]
        return JSONResponse(
            {"success": True, "code": 200, "data": {"total": len(uploads), "files": files}}
        )

    async def delete_file(self, request: Request) -> Response:
        """Undocumented, used by the vendor's MCP client [spec §4]."""
        if not self._authorized(request):
            return self._file_unauthorized()
        if not self.state.delete_upload(request.path_params["file_id"]):
            return _file_error(404, "File not found")
        return JSONResponse({"success": True, "code": 200, "msg": "File deleted successfully"})

    # -- sandbox-only introspection -------------------------------------------------------

    async def health(self, request: Request) -> Response:
        # Open without a token so scripts can wait for start-up before they know the key.
        return JSONResponse({"status": "ok", "sandbox": True, "time": self.state.clock()})

    async def list_tasks(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error("unauthorized")
        now = self.state.clock()
        rows = []
        for task in self.state.tasks():
            snap = task.snapshot(now)
            rows.append(
                {
                    "id": task.id,
                    "created": task.created,
                    "model": task.model,
                    "status": snap.status,
                    "progress": snap.progress,
                    "quality": task.quality,
                    "size": task.size,
                    "n": task.n,
                    "prompt": task.prompt,
                    "image_refs": len(task.image_urls),
                    "duration": task.duration,
                    "estimated_time": task.estimated_time,
                    "finishes_at": task.finishes_at,
                    # When the task reached its terminal status (completed or failed).
                    "completed_at": task.finishes_at if snap.terminal else None,
                    "error_code": task.error_code if snap.status == "failed" else None,
                    "credits_reserved": task.credits_reserved,
                    "fault": task.fault,
                }
            )
        return JSONResponse({"now": now, "tasks": rows})

    async def faults(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error("unauthorized")
        if request.method == "POST":
            try:
                body = await self._json(request)
                if not isinstance(body, dict):
                    raise InvalidRequest("body", "must be a JSON object")
                self.state.faults = FaultConfig.from_mapping(body)
            except InvalidRequest as exc:
                return self._error("invalid_request", message=str(exc), param=exc.field)
            except ValueError as exc:
                return self._error("invalid_request", message=f"faults: {exc}", param="faults")
            _log.info("faults replaced: %s", {k: v for k, v in body.items() if v})
        return JSONResponse({"faults": self.state.faults.as_dict()})

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        kind = {404: "not_found", 405: "method_not_allowed"}.get(status, "internal_error")
        return self._error(kind)


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """Build a sandbox app. Its state is `app.state.sandbox` (a SandboxState).

    Args:
        config: behaviour; defaults to `SandboxConfig()`.

    Example:
        import httpx
        app = create_app(SandboxConfig(time_scale=0.01))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sandbox",
            headers={"Authorization": "Bearer sk-sandbox"})
    """
    state = SandboxState(config or SandboxConfig())
    api = _Api(state)
    routes = [
        Route("/v1/images/generations", api.create, methods=["POST"]),
        Route("/v1/tasks/{task_id}", api.get_task, methods=["GET"]),
        Route("/v1/credits", api.credits, methods=["GET"]),
        Route("/files/results/{task_id}/{index:int}.png", api.result_file, methods=["GET"]),
        Route("/files/uploads/{file_id}/{file_name}", api.upload_file, methods=["GET"]),
        Route("/api/v1/files/download/{file_id}", api.upload_file, methods=["GET"]),
        Route("/api/v1/files/upload/base64", api.upload_base64, methods=["POST"]),
        Route("/api/v1/files/upload/stream", api.upload_stream, methods=["POST"]),
        Route("/api/v1/files/upload/url", api.upload_url, methods=["POST"]),
        Route("/api/v1/files/quota", api.quota, methods=["GET"]),
        Route("/api/v1/files/list", api.list_files, methods=["GET"]),
        Route("/api/v1/files/{file_id}", api.delete_file, methods=["DELETE"]),
        *openai_routes(api),  # the OpenAI Images API under /openai/v1 (spec §9)
        Route("/_sandbox/health", api.health, methods=["GET"]),
        Route("/_sandbox/tasks", api.list_tasks, methods=["GET"]),
        Route("/_sandbox/faults", api.faults, methods=["GET", "POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: api.http_error, 405: api.http_error},
    )
    app.state.sandbox = state
    return app
