"""Hostile or broken responses, through the real client and a real loopback server.

The server is the sandbox wrapped in a small ASGI layer that misbehaves for prompts carrying
``{{evil:<case>}}``: it forwards the create to the sandbox (so a task really exists and is
charged) and then corrupts the answer, or rewrites the task's polls, or points the task's
results at hostile URLs it serves itself. Each case must end that run with a clear status and
message, write nothing outside the data directory, and leave the session working.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import struct
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import imgkit
from imgkit.errors import APIError, DownloadError
from imgkit.providers.gateway import GatewayProvider, parse_task
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox
from imgkit.store import Store

from .conftest import FAST_POLL, TEST_KEY, sandbox_tasks

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_MARK = re.compile(rb"\{\{evil:([a-z_]+)\}\}")


# --- hostile payloads --------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height`` grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


_BOMB: bytes | None = None


def real_bomb() -> bytes:
    """A real, valid 8000 x 8000 PNG (64 M pixels) of zeros: about 60 KB on the wire."""
    global _BOMB
    if _BOMB is None:
        rows = b"\x00" * (8001 * 8000)  # a filter byte + 8000 grey pixels, 8000 times
        _BOMB = png_claiming(8000, 8000, zlib.compress(rows, 9))
    return _BOMB


def small_png(color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="PNG")
    return buf.getvalue()


def small_gif() -> bytes:
    buf = io.BytesIO()
    Image.new("P", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


# --- the hostile gateway -----------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = list(headers or [(b"content-type", b"application/json")])
    if not any(k.lower() == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HostileGateway:
    """The sandbox, except for prompts that carry ``{{evil:<case>}}``."""

    def __init__(self, config: SandboxConfig) -> None:
        self.inner = create_app(config)
        self.state = self.inner.state  # running_sandbox() reads app.state.sandbox
        self.cases: dict[str, str] = {}  # task id -> case
        self.polls: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()  # requests to /evil/<case>/...
        self.base = ""

    async def _inner(self, scope: Scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        out: dict[str, Any] = {"body": []}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"], out["headers"] = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                out["body"].append(message.get("body", b""))

        await self.inner(scope, receive, send)
        headers = [(k, v) for k, v in out["headers"] if k.lower() != b"content-length"]
        return out["status"], headers, b"".join(out["body"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode()
        self.base = f"http://{host}"
        path, method = scope["path"], scope["method"]
        if "pwned-" in path:
            # A path-trick result URL, wherever the client's URL normalisation took it.
            self.hits["result_path_tricks"] += 1
            await _respond(send, 200, small_png(), [(b"content-type", b"image/png")])
            return
        if path.startswith("/evil/"):
            await self._evil_file(path, scope, receive, send)
            return
        body = await _read_body(receive)
        if method == "POST" and path == "/v1/images/generations":
            match = _MARK.search(body)
            status, headers, content = await self._inner(scope, body)
            if match and status == 200:
                case = match[1].decode()
                self.cases[json.loads(content)["id"]] = case
                replaced = self._create_answer(case, content)
                if replaced is not None:
                    await _respond(send, *replaced)
                    return
            await _respond(send, status, content, headers)
            return
        if method == "GET" and path.startswith("/v1/tasks/"):
            case = self.cases.get(path.rsplit("/", 1)[-1])
            status, headers, content = await self._inner(scope, body)
            if case is not None and status == 200:
                self.polls[case] += 1
                replaced = self._poll_answer(case, json.loads(content), self.polls[case])
                if replaced is not None:
                    await _respond(send, *replaced)
                    return
            await _respond(send, status, content, headers)
            return
        status, headers, content = await self._inner(scope, body)
        await _respond(send, status, content, headers)

    # -- create ----------------------------------------------------------------------------

    @staticmethod
    def _create_answer(case: str, content: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        if case == "create_nonjson":
            return 200, b"<html><body>502 Bad Gateway</body></html>", [(b"content-type", b"text/html")]
        if case == "create_truncated":
            return 200, content[: len(content) // 2], None
        if case == "create_not_a_task":
            return 200, b'{"ok": true, "data": {"id": 7}}', None
        if case == "create_gzip_garbage":
            return 200, b"this is not gzip at all", [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
        if case == "create_weird_numbers":
            text = content.decode()
            text = re.sub(r'"progress": ?\d+', '"progress": NaN', text)
            text = re.sub(r'"estimated_time": ?\d+', '"estimated_time": ' + "9" * 400, text)
            text = re.sub(r'"credits_reserved": ?[\d.]+', '"credits_reserved": Infinity', text)
            return 200, text.encode(), None
        return None

    # -- polls -----------------------------------------------------------------------------

    def _evil_urls(self, case: str, n: int = 1) -> list[str]:
        token = uuid.uuid4().hex[:8]
        base = f"{self.base}/evil/{case}"
        if case == "result_path_tricks":
            return [
                f"{base}/../../../../../../tmp/pwned-{token}.png",
                f"{base}/%2e%2e%2f%2e%2e%2f%2e%2e%2fpwned-{token}.png",
                f"{base}/..%5c..%5c..%5cpwned-{token}.png?name=../../pwned-{token}.png",
            ]
        if case == "result_invalid_url":
            return ["http://[::1/broken.png"]
        if case == "result_non_http":
            return ["file:///etc/passwd"]
        return [f"{base}/{token}.png" for _ in range(n)]

    def _poll_answer(self, case: str, task: dict[str, Any], count: int) -> tuple[int, bytes, Any] | None:
        completed = task.get("status") == "completed"
        if case == "poll_unknown_fields":
            task.update({"object": "image.generation.task.v9", "type": "hologram", "x_new": {"a": [1, {"b": None}]}})
            task.setdefault("usage", {})["billing_rule"] = "per_vibe"
            task["task_info"] = {"can_cancel": "maybe", "estimated_time": "soon", "queue": 3}
            if not completed:
                task["status"] = "queued" if count % 2 else "thinking"
            return 200, json.dumps(task).encode(), None
        if case == "poll_weird_numbers":
            text = json.dumps(task)
            text = re.sub(r'"progress": ?\d+', '"progress": ' + ("Infinity" if count % 2 else "-" + "9" * 400), text)
            text = text.replace('"estimated_time": ', '"estimated_time": NaN, "x": ')
            return 200, text.encode(), None
        if case == "poll_nonjson":
            return 200, b"<html>maintenance</html>", [(b"content-type", b"text/html")]
        if case == "poll_truncated":
            body = json.dumps(task).encode()
            return 200, body[: len(body) // 2], None
        if case == "poll_gzip_garbage":
            return 200, b"\x1f\x8b not really gzip", [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
        if case == "poll_failed_new_code":
            task.update({"status": "failed", "error": {"code": 4711, "message": "A brand-new failure.\nNo advice."}})
            task.pop("results", None)
            return 200, json.dumps(task).encode(), None
        if case.startswith("result_") and completed:
            if case == "result_string_not_list":
                task["results"] = self._evil_urls("result_ok")[0]
            else:
                task["results"] = self._evil_urls(case, len(task.get("results") or [1]))
            return 200, json.dumps(task).encode(), None
        return None

    # -- hostile result files ---------------------------------------------------------------

    async def _evil_file(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        case = path.split("/")[2]
        self.hits[case] += 1
        if case in ("result_ok", "result_path_tricks", "result_string_not_list"):
            await _respond(send, 200, small_png(), [(b"content-type", b"image/png")])
        elif case == "result_not_image":
            await _respond(send, 200, b"<html>Access denied</html>" * 40, [(b"content-type", b"image/png")])
        elif case == "result_gif":
            await _respond(send, 200, small_gif(), [(b"content-type", b"image/gif")])
        elif case == "result_bomb_header":
            await _respond(send, 200, png_claiming(100_000, 100_000, zlib.compress(b"\x00" * 1000)))
        elif case == "result_bomb":
            await _respond(send, 200, real_bomb(), [(b"content-type", b"image/png")])
        elif case == "result_oversize_declared":
            await self._stream(send, receive, declared=10 * 1024**3)
        elif case == "result_oversize_stream":
            await self._stream(send, receive, declared=None)
        elif case in ("result_redirect_file", "result_redirect_ftp", "result_redirect_loop", "result_redirect_ok"):
            target = {
                "result_redirect_file": b"file:///etc/passwd",
                "result_redirect_ftp": b"ftp://127.0.0.1/pwned.png",
                "result_redirect_loop": path.encode(),
                "result_redirect_ok": f"/evil/result_ok/{uuid.uuid4().hex[:6]}.png".encode(),
            }[case]
            await _respond(send, 302, b"", [(b"location", target)])
        else:
            await _respond(send, 404, b"no such case")

    @staticmethod
    async def _stream(send: Send, receive: Receive, *, declared: int | None) -> None:
        """Stream PNG-looking bytes until the client goes away (at most 256 MiB)."""
        headers = [(b"content-type", b"image/png")]
        if declared is not None:
            headers.append((b"content-length", str(declared).encode()))
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            chunk = small_png() + b"\x00" * (1024 * 1024)
            sent = 0
            while not gone.is_set() and sent < 256 * 1024 * 1024:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
                await asyncio.sleep(0)
            if declared is None and not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass
        finally:
            watcher.cancel()


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[HostileGateway, str]]:
    app = HostileGateway(SandboxConfig(seed=99, time_scale=0.01))
    with running_sandbox(app=app) as url:  # type: ignore[arg-type]
        yield app, url




def _listing(root: Path, skip: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_relative_to(skip)}


@dataclass(frozen=True)
class Case:
    status: str
    text: str  # must appear in the run's error message or notes (case-insensitive)
    single_fetch: bool = False  # refused at once, not retried


CASES: dict[str, Case] = {
    # A 2xx the client cannot read: a task may exist and be charged, so the run is unknown
    # (and not resent), never "failed" (which the budget would count as free).
    "create_nonjson": Case("unknown", "not json"),
    "create_truncated": Case("unknown", "not json"),
    "create_not_a_task": Case("unknown", "not a task"),
    "create_gzip_garbage": Case("unknown", "decod"),
    # Odd numbers in a task object are tolerated, not fatal.
    "create_weird_numbers": Case("completed", ""),
    "poll_unknown_fields": Case("completed", ""),
    "poll_weird_numbers": Case("completed", ""),
    # Polls that cannot be read leave the run unknown, with the reason; resume() checks again.
    "poll_nonjson": Case("unknown", "not json"),
    "poll_truncated": Case("unknown", "not json"),
    "poll_gzip_garbage": Case("unknown", "decod"),
    "poll_failed_new_code": Case("failed", "brand-new failure"),
    # Results that are not what they claim.
    "result_not_image": Case("failed", "not a usable image"),
    "result_gif": Case("failed", "gif", single_fetch=True),
    "result_bomb_header": Case("failed", "decompressionbomb", single_fetch=True),
    "result_bomb": Case("failed", "pixels", single_fetch=True),
    "result_oversize_declared": Case("failed", "cap", single_fetch=True),
    "result_oversize_stream": Case("failed", "cap", single_fetch=True),
    "result_redirect_file": Case("failed", "non-http", single_fetch=True),
    "result_redirect_ftp": Case("failed", "non-http", single_fetch=True),
    "result_redirect_loop": Case("failed", "redirect", single_fetch=True),
    "result_redirect_ok": Case("completed", ""),
    "result_path_tricks": Case("completed", ""),
    "result_invalid_url": Case("failed", "invalid"),
    "result_non_http": Case("failed", "non-http"),
    "result_string_not_list": Case("completed", ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_response(case: str, hostile: tuple[HostileGateway, str], data_dir: Path, tmp_path: Path) -> None:
    app, url = hostile
    expect = CASES[case]
    outside = _listing(tmp_path, data_dir)
    tmp_root = {p.name for p in Path("/tmp").iterdir()}
    session = imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL, timeout=10)
    if case == "result_oversize_stream":
        session.engine.max_download_bytes = 2 * 1024 * 1024
    prompt = f"hostile {uuid.uuid4().hex[:6]} {{{{evil:{case}}}}}"

    res = imgkit.generate(prompt, quality="low", raise_on_error=False)

    record = res.record
    why = f"{record.error_code}: {record.error_message} / {record.notes}"
    assert record.terminal and record.status == expect.status, why
    assert expect.text.lower() in why.lower(), why
    if expect.status == "failed":
        assert record.error_code
    if expect.status == "unknown":
        assert record.notes
    if case.startswith("create_") and expect.status == "unknown":
        # The task was created upstream; it was not created twice.
        assert record.attempts == 1
        assert sum(t["prompt"] == prompt for t in sandbox_tasks(url)) == 1
    if expect.single_fetch or case == "result_path_tricks":
        assert app.hits[case] >= 1
    if expect.status == "completed":
        assert res.paths and all(p.is_relative_to(data_dir / "images") for p in res.paths)
        for im in res.images:
            assert im.size[0] > 0
    # The ledger agrees with what generate() returned, and a raising call says the same.
    row = session.ledger.get(record.run_id)
    assert row is not None and row.status == record.status
    # Nothing escaped the data directory; the session keeps working.
    assert _listing(tmp_path, data_dir) == outside
    assert not {p.name for p in Path("/tmp").iterdir() if "pwned" in p.name} - tmp_root
    assert not list(Path.cwd().glob("pwned*"))
    ok = imgkit.generate("a normal run after a hostile one", quality="low")
    assert ok.status == "completed"
    for path in data_dir.rglob("*"):
        if path.is_file() and path.parts[-3] in ("images", "thumbs"):
            with Image.open(path) as im:
                im.load()


def test_single_fetch_cases_are_not_retried(hostile: tuple[HostileGateway, str], data_dir: Path) -> None:
    """A result refused for what it is (a bomb, over the cap, a bad scheme) is fetched once."""
    app, url = hostile
    imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
    for case in ("result_bomb_header", "result_oversize_declared", "result_gif"):
        before = app.hits[case]
        res = imgkit.generate(f"once {{{{evil:{case}}}}}", quality="low", raise_on_error=False)
        assert res.status == "failed"
        assert app.hits[case] - before == 1, case


# --- the key goes only to the service's own origin ---------------------------------------


def test_key_is_not_sent_to_a_host_that_only_shares_a_prefix(data_dir: Path) -> None:
    """``https://api.evolink.ai.evil.com`` starts with ``https://api.evolink.ai``; a result there
    must not get the key. Here: a collector on port Q and a base URL on port Q // 10."""
    seen: list[str | None] = []
    collector = create_app(SandboxConfig(seed=1))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(b"authorization", b"").decode() or None)
            await _respond(send, 200, small_png(), [(b"content-type", b"image/png")])

    app.state = collector.state  # type: ignore[attr-defined]
    with running_sandbox(app=app) as url:  # type: ignore[arg-type]
        port = int(url.rsplit(":", 1)[1])
        prefix = f"http://127.0.0.1:{port // 10}"
        assert url.startswith(prefix)
        provider = GatewayProvider(TEST_KEY, base_url=prefix, timeout=5)

        async def fetch() -> bytes:
            try:
                return await provider.download(f"{url}/result.png", 10_000_000)
            finally:
                await provider.aclose()

        data = asyncio.run(fetch())
    assert data.startswith(b"\x89PNG")
    assert seen == [None]


@pytest.mark.parametrize(
    "result_url",
    [
        "https://api.evolink.ai.evil.example/x.png",
        "https://api.evolink.ai@evil.example/x.png",
        "https://evil.example/https://api.evolink.ai/x.png",
        "http://api.evolink.ai/x.png",  # another scheme is another origin
    ],
)
def test_key_origin_rules(result_url: str) -> None:
    """Unit check of the origin rule with httpx's MockTransport (the real client, an
    injected transport)."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, content=small_png())

    async def fetch() -> None:
        provider = GatewayProvider(TEST_KEY, transport=httpx.MockTransport(handler))
        try:
            await provider.download(result_url, 10_000_000)
            await provider.download("https://api.evolink.ai/files/own.png", 10_000_000)
        finally:
            await provider.aclose()

    asyncio.run(fetch())
    assert TEST_KEY not in (seen[0] or "")
    assert seen[1] == f"Bearer {TEST_KEY}"


def test_task_id_cannot_steer_the_poll_to_another_endpoint() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"error": {"code": "task_not_found", "message": "no"}})

    async def poll() -> None:
        provider = GatewayProvider(TEST_KEY, transport=httpx.MockTransport(handler))
        try:
            for task_id in ("task-unified-1/../../credits", "../credits", "x?y=1#z"):
                with pytest.raises(APIError):
                    await provider.status(task_id)
        finally:
            await provider.aclose()

    asyncio.run(poll())
    # Each id stays one path segment under /v1/tasks/ (no dot-segments, no query).
    assert all(p.startswith("/v1/tasks/") and p.count("/") == 3 and "?" not in p for p in paths), paths


# --- the parser and the store, fuzzed ----------------------------------------------------

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400), st.text(max_size=20),
    st.floats(allow_nan=True, allow_infinity=True),
)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_status = st.sampled_from(["pending", "processing", "completed", "failed", "cancelled", "queued"]) | _json
_tasks_json = st.fixed_dictionaries(
    {"id": st.text(max_size=12)},
    optional={
        "status": _status,
        "progress": _json,
        "results": _json | st.lists(st.text(max_size=12), max_size=3),
        "error": _json | st.fixed_dictionaries({}, optional={"code": _json, "message": _json}),
        "task_info": _json | st.fixed_dictionaries({}, optional={"estimated_time": _json, "can_cancel": _json}),
        "usage": _json | st.fixed_dictionaries({}, optional={"credits_reserved": _json, "credits_charged": _json}),
    },
)


@settings(max_examples=250, deadline=None)
@given(body=_tasks_json | _json)
def test_parse_task_raises_only_imgkit_errors(body: Any) -> None:
    """Whatever the service sends, parsing gives a task state or an APIError, never a crash."""
    try:
        snapshot = parse_task(body)
    except APIError:
        return
    assert snapshot.task_id == body["id"]
    assert 0 <= snapshot.status.progress <= 100
    for value in (snapshot.estimated_time, snapshot.credits_reserved, snapshot.credits_charged):
        assert value is None or isinstance(value, float)
    if hasattr(snapshot.status, "results"):
        assert all(isinstance(u, str) for u in snapshot.status.results)


_SEEDS = [small_png(), small_gif()]
for _fmt in ("JPEG", "WEBP"):
    _buf = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(_buf, format=_fmt)
    _SEEDS.append(_buf.getvalue())


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if op == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos:]
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_images() | st.binary(max_size=64))
def test_store_keeps_only_images_that_decode(data: bytes, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    try:
        kept = store.save(data)
    except DownloadError:
        return
    for rel in (kept.path, kept.thumb):
        path = store.abspath(rel)
        assert path.is_relative_to(tmp_path / "store")
        with Image.open(path) as im:
            im.load()
