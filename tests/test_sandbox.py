"""The sandbox against the wire spec, over real HTTP with plain httpx (no imgkit client code)."""

from __future__ import annotations

import base64
import io
import math
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import anyio
import httpx
import pytest
from PIL import Image

from imgkit.sandbox import FaultConfig, SandboxConfig, create_app, running_sandbox
from imgkit.sandbox._render import RenderSpec, render_image, render_png

from .conftest import TASK_ERROR_CODES

AUTH = {"Authorization": "Bearer sk-test"}
ID_RE = re.compile(r"^task-unified-\d{10}-[a-z0-9]{8}$")


def _png(size: tuple[int, int] = (8, 8), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except OSError:  # UnidentifiedImageError and "image file is truncated" alike
        return False
    return True


def _body(prompt: str = "a red fox", **extra: object) -> dict[str, object]:
    return {"model": "gpt-image-1", "prompt": prompt, "quality": "low", **extra}


def _wait(client: httpx.Client, task_id: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/tasks/{task_id}").json()
        if body["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.01)


class _HandClock:
    """Unix seconds that move only when the test moves them, so a deadline is crossed at the
    instant the test chooses, however slowly the machine runs."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_sandbox(SandboxConfig(time_scale=0.005, seed=7)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=10) as c:
        yield c


@pytest.fixture
def own() -> Iterator[httpx.Client]:
    """A client on a private sandbox, for tests that change faults or balances."""
    with (
        running_sandbox(SandboxConfig(time_scale=0.005, seed=3)) as url,
        httpx.Client(base_url=url, headers=AUTH, timeout=10) as c,
    ):
        yield c


@pytest.fixture
def hand() -> Iterator[tuple[httpx.Client, _HandClock]]:
    """A client on a private sandbox whose clock moves only when the test moves it."""
    clock = _HandClock()
    app = create_app(SandboxConfig(time_scale=0.005, seed=7), clock=clock)
    with running_sandbox(app=app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as c:
        yield c, clock


# -- create, poll, download ---------------------------------------------------------------


def test_create_response_has_exactly_the_spec_shape(client: httpx.Client) -> None:
    r = client.post("/v1/images/generations", json=_body(quality="high", n=2))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "created", "id", "model", "object", "progress", "status", "task_info", "type", "usage",
    }  # fmt: skip
    assert ID_RE.match(body["id"])
    assert body["id"].split("-")[2] == str(body["created"])
    assert abs(body["created"] - time.time()) < 5
    assert (body["model"], body["object"], body["type"]) == (
        "gpt-image-1", "image.generation.task", "image",
    )  # fmt: skip
    assert (body["status"], body["progress"]) == ("pending", 0)
    assert body["task_info"]["can_cancel"] is True
    assert isinstance(body["task_info"]["estimated_time"], int)
    assert body["task_info"]["estimated_time"] >= 1
    assert body["usage"] == {
        "billing_rule": "per_call",
        "credits_reserved": round(2.4192 * 3.91 * 2, 5),
        "user_group": "default",
    }


@pytest.mark.parametrize(
    ("size", "expected"),
    [("1:1", (1024, 1024)), ("2:3", (1024, 1536)), ("1536x1024", (1536, 1024))],
)
def test_completed_task_results_decode_at_the_right_size(
    client: httpx.Client, size: str, expected: tuple[int, int]
) -> None:
    created = client.post("/v1/images/generations", json=_body(size=size, n=2)).json()
    done = _wait(client, created["id"])
    assert done["status"] == "completed"
    assert done["progress"] == 100
    assert done["task_info"] == {"can_cancel": False}
    assert done["usage"] == created["usage"]
    assert len(done["results"]) == 2
    for url in done["results"]:
        assert url.startswith(str(client.base_url).rstrip("/") + "/files/results/")
        r = httpx.get(url)  # result URLs need no token, like signed CDN links
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(r.content)) as img:
            img.load()
            assert img.size == expected


def test_default_size_is_square_and_default_quality_is_high(client: httpx.Client) -> None:
    body = client.post(
        "/v1/images/generations", json={"model": "gpt-image-1", "prompt": "defaults"}
    ).json()
    assert body["usage"]["credits_reserved"] == round(2.4192 * 3.91, 5)
    row = next(t for t in client.get("/_sandbox/tasks").json()["tasks"] if t["id"] == body["id"])
    assert (row["size"], row["quality"], row["n"]) == ("1024x1024", "high", 1)


def test_status_moves_pending_processing_completed_with_monotonic_progress(
    hand: tuple[httpx.Client, _HandClock],
) -> None:
    client, clock = hand
    task = client.post("/v1/images/generations", json=_body("[[seconds:1]] slow")).json()
    assert task["task_info"]["estimated_time"] == 1
    seen: list[tuple[str, int]] = []
    while not seen or seen[-1][0] != "completed":
        body = client.get(f"/v1/tasks/{task['id']}").json()
        seen.append((body["status"], body["progress"]))
        assert len(seen) < 500
        clock.advance(0.02)  # each poll sees the task 0.02 s older, however long the poll took
    statuses = [s for s, _ in seen]
    order = ["pending", "processing", "completed"]
    assert [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]] == order
    progress = [p for _, p in seen]
    assert progress == sorted(progress)
    assert any(0 < p < 100 for s, p in seen if s == "processing")
    assert all(p <= 99 for s, p in seen if s == "processing")


def test_result_url_before_completion_and_bad_index_are_404(hand: tuple[httpx.Client, _HandClock]) -> None:
    client, _ = hand
    task = client.post("/v1/images/generations", json=_body("[[seconds:5]] later")).json()
    base = str(client.base_url).rstrip("/")
    assert httpx.get(f"{base}/files/results/{task['id']}/0.png").status_code == 404
    done = client.post("/v1/images/generations", json=_body("[[seconds:0]] now")).json()
    assert _wait(client, done["id"])["status"] == "completed"
    assert httpx.get(f"{base}/files/results/{done['id']}/0.png").status_code == 200
    assert httpx.get(f"{base}/files/results/{done['id']}/1.png").status_code == 404


def test_task_query_errors(client: httpx.Client) -> None:
    r = client.get("/v1/tasks/abc123")
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "invalid_task_id",
        "message": "Invalid task ID format, must start with 'task-unified-'",
        "type": "invalid_request_error",
        "param": "task_id",
    }
    r = client.get("/v1/tasks/task-unified-1700000000-zzzzzzzz")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "task_not_found"


def test_image_to_image_is_labelled_and_counted(client: httpx.Client) -> None:
    refs = ["https://example.com/a.png", "https://example.com/b.png"]
    task = client.post("/v1/images/generations", json=_body(image_urls=refs)).json()
    assert _wait(client, task["id"])["status"] == "completed"
    row = next(t for t in client.get("/_sandbox/tasks").json()["tasks"] if t["id"] == task["id"])
    assert row["image_refs"] == 2


# -- prompt directives --------------------------------------------------------------------


@pytest.mark.parametrize("code", ["content_policy_violation", "generation_timeout"])
def test_fail_directive_ends_the_task_failed(client: httpx.Client, code: str) -> None:
    task = client.post("/v1/images/generations", json=_body(f"[[fail:{code}]] a cat")).json()
    done = _wait(client, task["id"])
    assert done["status"] == "failed"
    assert "results" not in done
    assert done["error"]["code"] == code
    assert done["error"]["type"] == "task_error"
    assert "\n" in done["error"]["message"]
    if code == "content_policy_violation":
        assert done["error"]["message"].startswith(
            "Content policy violation.\nYour request was blocked by safety filters"
        )
    row = next(t for t in client.get("/_sandbox/tasks").json()["tasks"] if t["id"] == task["id"])
    assert row["prompt"] == "a cat"
    assert (row["status"], row["error_code"]) == ("failed", code)


@pytest.mark.parametrize(
    ("status", "code", "etype"),
    [
        (400, "invalid_request", "invalid_request_error"),
        (401, "unauthorized", "authentication_error"),
        (402, "insufficient_quota", "insufficient_quota"),
        (403, "model_access_denied", "invalid_request_error"),
        (429, "rate_limit_exceeded", "rate_limit_error"),
        (500, "internal_error", "api_error"),
        (503, "service_unavailable", "api_error"),
    ],
)
def test_http_directive_returns_the_documented_envelope(
    client: httpx.Client, status: int, code: str, etype: str
) -> None:
    before = len(client.get("/_sandbox/tasks").json()["tasks"])
    r = client.post("/v1/images/generations", json=_body(f"x [[http:{status}]]"))
    assert r.status_code == status
    error = r.json()["error"]
    assert (error["code"], error["type"]) == (code, etype)
    assert isinstance(error["message"], str)
    assert error["message"]
    assert (r.headers.get("retry-after") == "1") is (status == 429)
    if status == 503:
        assert error["message"] == "No available channel for the requested model"
    if status == 403:
        assert error["message"] == "Token does not have access to model: gpt-image-1"
    assert len(client.get("/_sandbox/tasks").json()["tasks"]) == before  # nothing created


def test_accept_then_500_creates_and_charges_the_task(client: httpx.Client) -> None:
    used = client.get("/v1/credits").json()["data"]["token"]["used_credits"]
    r = client.post("/v1/images/generations", json=_body("[[accept_then_500]] lost reply"))
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    rows = client.get("/_sandbox/tasks").json()["tasks"]
    row = rows[-1]
    assert (row["fault"], row["prompt"]) == ("accept_then_500", "lost reply")
    assert _wait(client, row["id"])["status"] == "completed"
    after = client.get("/v1/credits").json()["data"]["token"]["used_credits"]
    assert after == pytest.approx(used + row["credits_reserved"])


def test_accept_then_hang_times_the_client_out_and_shutdown_stays_quick() -> None:
    with running_sandbox(SandboxConfig(time_scale=0.005)) as url:
        with httpx.Client(base_url=url, headers=AUTH) as c:
            with pytest.raises(httpx.ReadTimeout):
                c.post(
                    "/v1/images/generations",
                    json=_body("[[accept_then_hang]] slow reply"),
                    timeout=0.3,
                )
            rows = c.get("/_sandbox/tasks").json()["tasks"]
            assert [r["fault"] for r in rows] == ["accept_then_hang"]
        started = time.monotonic()
    assert time.monotonic() - started < 3


def test_hang_answers_normally_after_hang_seconds(own: httpx.Client) -> None:
    own.post("/_sandbox/faults", json={"hang_seconds": 0.2})
    started = time.monotonic()
    r = own.post("/v1/images/generations", json=_body("[[accept_then_hang]]"))
    assert time.monotonic() - started >= 0.2
    assert r.status_code == 200
    assert ID_RE.match(r.json()["id"])


def test_seconds_directive_sets_the_wall_duration(hand: tuple[httpx.Client, _HandClock]) -> None:
    client, _ = hand
    task = client.post("/v1/images/generations", json=_body("[[seconds:2.5]] x")).json()
    assert task["task_info"]["estimated_time"] == 3
    row = next(t for t in client.get("/_sandbox/tasks").json()["tasks"] if t["id"] == task["id"])
    assert row["duration"] == 2.5
    assert row["completed_at"] is None
    assert row["status"] in ("pending", "processing")


@pytest.mark.parametrize(
    "prompt", ["[[fail:bogus]]", "[[http:418]]", "[[seconds:soon]]", "[[accept_then_500:1]]"]
)
def test_malformed_directives_are_400_naming_prompt(client: httpx.Client, prompt: str) -> None:
    r = client.post("/v1/images/generations", json=_body(prompt))
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("prompt:")


# -- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/images/generations"),
        ("GET", "/v1/tasks/task-unified-1700000000-abcdefgh"),
        ("GET", "/v1/credits"),
        ("GET", "/_sandbox/tasks"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "x y"}])
def test_task_api_needs_a_bearer_token(
    base_url: str, method: str, path: str, headers: dict[str, str]
) -> None:
    r = httpx.request(method, base_url + path, headers=headers, json=_body())
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/files/upload/base64",
        "/api/v1/files/upload/url",
        "/api/v1/files/upload/stream",
    ],
)
def test_file_api_needs_a_bearer_token(base_url: str, path: str) -> None:
    r = httpx.post(base_url + path, json={"base64_data": "eA==", "file_url": "http://x/y.png"})
    assert r.status_code == 401
    body = r.json()
    assert (body["success"], body["code"]) == (False, 401)
    assert body["error"]["type"] == "authentication_error"
    assert httpx.get(base_url + "/api/v1/files/quota").status_code == 401


def test_configured_api_key_must_match() -> None:
    with running_sandbox(SandboxConfig(api_key="sk-right", time_scale=0.005)) as url:
        wrong = httpx.get(url + "/v1/credits", headers={"Authorization": "Bearer sk-wrong"})
        right = httpx.get(url + "/v1/credits", headers={"Authorization": "Bearer sk-right"})
        health = httpx.get(url + "/_sandbox/health")
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert health.json()["status"] == "ok"


# -- validation ---------------------------------------------------------------------------


G1 = {"model": "gpt-image-1", "prompt": "x"}
G2 = {"model": "gpt-image-2", "prompt": "x"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x"}, "model"),
        ({"model": "dall-e-3", "prompt": "x"}, "model"),
        ({"model": "gpt-image-1"}, "prompt"),
        ({"model": "gpt-image-1", "prompt": "   "}, "prompt"),
        ({"model": "gpt-image-1", "prompt": "x" * 2001}, "prompt"),
        ({**G1, "size": "512x512"}, "size"),
        ({**G1, "size": "auto"}, "size"),
        ({**G1, "quality": "auto"}, "quality"),
        ({**G1, "n": 0}, "n"),
        ({**G1, "n": 11}, "n"),
        ({**G1, "n": "2"}, "n"),
        ({**G1, "n": True}, "n"),
        ({**G1, "image_urls": []}, "image_urls"),
        ({**G1, "image_urls": ["https://a/b"] * 17}, "image_urls"),
        ({**G1, "image_urls": ["ftp://a/b.png"]}, "image_urls[0]"),
        ({**G1, "callback_url": "http://a.com/cb"}, "callback_url"),
        ({**G1, "callback_url": "https://10.0.0.1/"}, "callback_url"),
        ({"model": "gpt-image-1.5", "prompt": "x", "n": 2}, "n"),
        ({**G2, "size": "1000x1000"}, "size"),
        ({**G2, "size": "3840x640"}, "size"),
        ({**G2, "size": "1024x1024", "resolution": "2K"}, "resolution"),
        ({"model": "gpt-image-2", "prompt": "x" * 32001}, "prompt"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(
    client: httpx.Client, body: dict[str, object], field: str
) -> None:
    r = client.post("/v1/images/generations", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["type"]) == ("invalid_request", "invalid_request_error")
    assert error["message"].startswith(field + ":")


def test_non_json_body_is_400(client: httpx.Client) -> None:
    r = client.post("/v1/images/generations", content=b"{nope", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("body:")


@pytest.mark.parametrize(
    ("extra", "size"),
    [
        ({}, "1024x1024"),
        ({"size": "16:9"}, "1360x768"),  # the pixel table of 2026-04-25 on (addendum A.2)
        ({"size": "16:9", "resolution": "4K"}, "3840x2160"),
        ({"size": "2048x1152"}, "2048x1152"),
    ],
)
def test_gpt_image_2_sizes(client: httpx.Client, extra: dict[str, str], size: str) -> None:
    body = {"model": "gpt-image-2", "prompt": "y" * 5000, "n": 10, "quality": "low", **extra}
    task = client.post("/v1/images/generations", json=body).json()
    row = next(t for t in client.get("/_sandbox/tasks").json()["tasks"] if t["id"] == task["id"])
    assert (row["size"], row["n"], row["model"]) == (size, 10, "gpt-image-2")


def test_legacy_error_style() -> None:
    config = SandboxConfig(error_style="legacy", credits=1.0, time_scale=0.005)
    with running_sandbox(config) as url, httpx.Client(base_url=url, headers=AUTH) as c:
        r = c.post("/v1/images/generations", json=_body(quality="high"))
        assert r.status_code == 402
        error = r.json()["error"]
        assert error["code"] == 402
        assert error["type"] == "insufficient_quota_error"
        assert "fallback_suggestion" in error
        assert "param" in error
        r = c.post("/v1/images/generations", json=_body(n=99))
        assert r.json()["error"]["code"] == 400
        assert r.json()["error"]["param"] == "n"
        r = c.get("/v1/tasks/nope")
        assert r.json()["error"] == {
            "code": 400,
            "message": "Invalid task ID format, must start with 'task-unified-'",
            "type": "invalid_request_error",
            "param": "task_id",
            "fallback_suggestion": "check the task id",
        }
        assert c.get("/v1/tasks/task-unified-1-aaaaaaaa").json()["error"]["type"] == (
            "not_found_error"
        )


# -- credits ------------------------------------------------------------------------------


def test_credits_decrease_and_run_out() -> None:
    config = SandboxConfig(credits=10.0, time_scale=0.005)
    with running_sandbox(config) as url, httpx.Client(base_url=url, headers=AUTH) as c:
        start = c.get("/v1/credits").json()
        assert start == {
            "success": True,
            "message": "",
            "data": {
                "token": {
                    "remaining_credits": 10.0,
                    "unlimited_credits": False,
                    "used_credits": 0.0,
                },
                "user": {"remaining_credits": 10.0, "used_credits": 0.0},
            },
        }
        task = c.post("/v1/images/generations", json=_body(quality="medium", size="2:3")).json()
        reserved = task["usage"]["credits_reserved"]
        assert reserved == round(2.4192 * 1.47, 5)
        token = c.get("/v1/credits").json()["data"]["token"]
        assert token["used_credits"] == pytest.approx(reserved)
        assert token["remaining_credits"] == pytest.approx(10.0 - reserved)
        r = c.post("/v1/images/generations", json=_body(quality="high"))  # 9.459 > 6.44 left
        assert r.status_code == 402
        assert r.json()["error"]["code"] == "insufficient_quota"
        assert len(c.get("/_sandbox/tasks").json()["tasks"]) == 1


# -- files API ----------------------------------------------------------------------------


def _check_upload_envelope(body: dict, base: str, mime: str, size: int) -> dict:
    assert (body["success"], body["code"], body["msg"]) == (
        True, 200, "File uploaded successfully",
    )  # fmt: skip
    data = body["data"]
    assert set(data) == {
        "file_id", "file_name", "original_name", "file_size", "mime_type", "upload_path",
        "file_url", "download_url", "upload_time", "expires_at",
    }  # fmt: skip
    assert re.fullmatch(r"file_[0-9a-f]+", data["file_id"])
    assert (data["mime_type"], data["file_size"]) == (mime, size)
    assert data["file_url"] == f"{base}/files/uploads/{data['file_id']}/{data['file_name']}"
    assert data["download_url"] == f"{base}/api/v1/files/download/{data['file_id']}"
    uploaded = datetime.fromisoformat(data["upload_time"])
    expires = datetime.fromisoformat(data["expires_at"])
    assert data["upload_time"].endswith("+08:00")
    assert expires - uploaded == timedelta(hours=72)
    return data


def test_upload_base64_round_trips(client: httpx.Client) -> None:
    raw = _png()
    base = str(client.base_url).rstrip("/")
    for payload in (
        "data:image/png;base64," + base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode(),
    ):
        r = client.post(
            "/api/v1/files/upload/base64",
            json={"base64_data": payload, "upload_path": "avatars", "file_name": "me.png"},
        )
        data = _check_upload_envelope(r.json(), base, "image/png", len(raw))
        assert (data["file_name"], data["upload_path"]) == ("me.png", "avatars")
        assert httpx.get(data["file_url"]).content == raw
        assert httpx.get(data["download_url"]).content == raw


@pytest.mark.parametrize(
    ("fmt", "mime"), [("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")]
)
@pytest.mark.parametrize("style", ["snake", "camel"])
def test_upload_stream_round_trips(client: httpx.Client, fmt: str, mime: str, style: str) -> None:
    raw = _png(fmt=fmt)
    fields = {"upload_path": "refs", "file_name": "ref.img"}
    if style == "camel":
        fields = {"uploadPath": "refs", "fileName": "ref.img"}
    r = client.post("/api/v1/files/upload/stream", files={"file": ("orig.bin", raw)}, data=fields)
    base = str(client.base_url).rstrip("/")
    data = _check_upload_envelope(r.json(), base, mime, len(raw))
    assert (data["file_name"], data["original_name"], data["upload_path"]) == (
        "ref.img", "orig.bin", "refs",
    )  # fmt: skip
    got = httpx.get(data["file_url"])
    assert got.content == raw
    assert got.headers["content-type"] == mime


def test_upload_url_accepts_only_this_sandboxs_files(client: httpx.Client) -> None:
    raw = _png()
    first = client.post(
        "/api/v1/files/upload/base64", json={"base64_data": base64.b64encode(raw).decode()}
    ).json()["data"]
    assert first["file_name"].endswith(".png")
    r = client.post("/api/v1/files/upload/url", json={"file_url": first["file_url"]})
    again = r.json()["data"]
    assert again["file_id"] != first["file_id"]
    assert httpx.get(again["file_url"]).content == raw

    task = client.post("/v1/images/generations", json=_body("[[seconds:0]]")).json()
    result = _wait(client, task["id"])["results"][0]
    r = client.post("/api/v1/files/upload/url", json={"file_url": result, "file_name": "gen.png"})
    copied = r.json()["data"]
    assert copied["mime_type"] == "image/png"
    assert httpx.get(copied["file_url"]).content == httpx.get(result).content

    for url in ("https://example.com/cat.png", "ftp://x/y.png", first["file_url"] + "x"):
        r = client.post("/api/v1/files/upload/url", json={"file_url": url})
        assert r.status_code == 400
        assert (r.json()["success"], r.json()["code"]) == (False, 400)
        assert r.json()["msg"].startswith("file_url:")


def test_uploads_reject_non_images(client: httpx.Client) -> None:
    junk = b"%PDF-1.7 not an image at all"
    responses = [
        client.post(
            "/api/v1/files/upload/base64",
            json={"base64_data": "data:image/png;base64," + base64.b64encode(junk).decode()},
        ),
        client.post("/api/v1/files/upload/stream", files={"file": ("x.png", junk)}),
        client.post("/api/v1/files/upload/base64", json={"base64_data": "!!not base64!!"}),
        client.post("/api/v1/files/upload/stream", data={"file_name": "x.png"}),
    ]
    for r in responses:
        assert r.status_code == 400
        body = r.json()
        assert (body["success"], body["code"]) == (False, 400)
        assert body["msg"]


def test_quota_counts_uploads(own: httpx.Client) -> None:
    quota = own.get("/api/v1/files/quota").json()
    assert quota == {
        "success": True,
        "code": 200,
        "data": {
            "user_group": "default", "used_files": 0, "max_files": 2000, "remain_files": 2000,
            "is_custom": False, "quota_reason": "",
        },
    }  # fmt: skip
    own.post("/api/v1/files/upload/stream", files={"file": ("a.png", _png())})
    data = own.get("/api/v1/files/quota").json()["data"]
    assert (data["used_files"], data["remain_files"]) == (1, 1999)


def test_missing_sandbox_reference_fails_the_task(client: httpx.Client) -> None:
    base = str(client.base_url).rstrip("/")
    ref = f"{base}/files/uploads/file_0123/gone.png"
    task = client.post("/v1/images/generations", json=_body(image_urls=[ref])).json()
    assert _wait(client, task["id"])["error"]["code"] == "image_processing_error"


# -- result URL expiry --------------------------------------------------------------------


def test_result_urls_expire() -> None:
    clock = _HandClock()
    app = create_app(SandboxConfig(url_ttl=60.0, time_scale=0.005), clock=clock)
    with running_sandbox(app=app) as url, httpx.Client(base_url=url, headers=AUTH) as c:
        task = c.post("/v1/images/generations", json=_body("[[seconds:0]]")).json()
        result = _wait(c, task["id"])["results"][0]
        assert f"expires={int(clock.now + 60.0)}" in result
        clock.advance(60.0)  # the link's last valid instant
        assert httpx.get(result).status_code == 200
        clock.advance(0.5)
        expired = httpx.get(result)
    assert expired.status_code == 403
    assert "expired" in expired.text
    assert expired.headers["content-type"].startswith("application/xml")


# -- faults -------------------------------------------------------------------------------


def test_faults_endpoint_replaces_the_fault_config(own: httpx.Client) -> None:
    assert own.get("/_sandbox/faults").json()["faults"] == FaultConfig().as_dict()
    r = own.post("/_sandbox/faults", json={"create_500": 1.0})
    assert r.json()["faults"]["create_500"] == 1.0
    assert own.post("/v1/images/generations", json=_body()).status_code == 500
    own.post("/_sandbox/faults", json={})
    assert own.post("/v1/images/generations", json=_body()).status_code == 200
    bad = own.post("/_sandbox/faults", json={"create_5000": 1.0})
    assert bad.status_code == 400
    assert "create_5000" in bad.json()["error"]["message"]
    assert own.post("/_sandbox/faults", json={"poll_500": 2}).status_code == 400


@pytest.mark.parametrize(
    ("fault", "status", "code", "retry_after"),
    [
        ("create_500", 500, "internal_error", None),
        ("create_503", 503, "service_unavailable", None),
        ("create_429", 429, "rate_limit_exceeded", None),
        ("create_429_retry_after", 429, "rate_limit_exceeded", "1"),
    ],
)
def test_create_faults_create_nothing(
    own: httpx.Client, fault: str, status: int, code: str, retry_after: str | None
) -> None:
    own.post("/_sandbox/faults", json={fault: 1.0})
    r = own.post("/v1/images/generations", json=_body())
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert r.headers.get("retry-after") == retry_after
    assert own.get("/_sandbox/tasks").json()["tasks"] == []


def test_accept_then_500_fault(own: httpx.Client) -> None:
    own.post("/_sandbox/faults", json={"create_accept_then_500": 1.0})
    assert own.post("/v1/images/generations", json=_body()).status_code == 500
    [row] = own.get("/_sandbox/tasks").json()["tasks"]
    assert row["fault"] == "accept_then_500"


def test_poll_faults(own: httpx.Client) -> None:
    task = own.post("/v1/images/generations", json=_body()).json()
    own.post("/_sandbox/faults", json={"poll_500": 1.0})
    r = own.get(f"/v1/tasks/{task['id']}")
    assert (r.status_code, r.json()["error"]["message"]) == (500, "Failed to retrieve task status")
    own.post("/_sandbox/faults", json={"poll_429": 1.0})
    r = own.get(f"/v1/tasks/{task['id']}")
    assert (r.status_code, r.json()["error"]["type"]) == (429, "evo_api_error")


def test_task_fail_fault_uses_documented_codes(own: httpx.Client) -> None:
    own.post("/_sandbox/faults", json={"task_fail": 1.0})
    ids = [own.post("/v1/images/generations", json=_body()).json()["id"] for _ in range(4)]
    for task_id in ids:
        done = _wait(own, task_id)
        assert done["status"] == "failed"
        assert done["error"]["code"] in TASK_ERROR_CODES


def test_download_faults(own: httpx.Client) -> None:
    task = own.post("/v1/images/generations", json=_body("[[seconds:0]]")).json()
    result = _wait(own, task["id"])["results"][0]
    own.post("/_sandbox/faults", json={"download_500": 1.0})
    assert httpx.get(result).status_code == 500
    own.post("/_sandbox/faults", json={"download_corrupt": 1.0})
    for _ in range(4):
        r = httpx.get(result)
        assert r.status_code == 200
        assert not _decodes(r.content)
    own.post("/_sandbox/faults", json={})
    assert _decodes(httpx.get(result).content)


def test_upload_500_fault(own: httpx.Client) -> None:
    own.post("/_sandbox/faults", json={"upload_500": 1.0})
    r = own.post("/api/v1/files/upload/stream", files={"file": ("a.png", _png())})
    assert (r.status_code, r.json()["success"], r.json()["code"]) == (500, False, 500)
    assert own.get("/api/v1/files/quota").json()["data"]["used_files"] == 0


def test_fault_config_validates() -> None:
    with pytest.raises(ValueError, match="create_500"):
        FaultConfig(create_500=1.5)
    with pytest.raises(ValueError, match="latency"):
        SandboxConfig(latency={"low": (1.0, 0.1)})


# -- introspection, in-process use, determinism ----------------------------------------


def test_sandbox_tasks_lists_every_task_with_timing(own: httpx.Client) -> None:
    ids = [
        own.post("/v1/images/generations", json=_body(f"p{i} [[seconds:0]]")).json()["id"]
        for i in range(3)
    ]
    for task_id in ids:
        _wait(own, task_id)
    listing = own.get("/_sandbox/tasks").json()
    assert [t["id"] for t in listing["tasks"]] == ids
    for row in listing["tasks"]:
        assert row["status"] == "completed"
        assert row["created"] <= row["completed_at"] <= listing["now"]
        assert row["completed_at"] == pytest.approx(row["created"] + row["duration"])
        assert (row["quality"], row["size"], row["n"]) == ("low", "1024x1024", 1)
    assert [t["prompt"] for t in listing["tasks"]] == ["p0", "p1", "p2"]


@pytest.mark.anyio
async def test_in_process_through_asgi_transport() -> None:
    app = create_app(SandboxConfig(time_scale=0.002))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox", headers=AUTH) as c:
        task = (await c.post("/v1/images/generations", json=_body(n=2))).json()
        for _ in range(500):
            body = (await c.get(f"/v1/tasks/{task['id']}")).json()
            if body["status"] == "completed":
                break
            await anyio.sleep(0.002)
        assert body["results"][0].startswith("http://sandbox/files/results/")
        image = await c.get(body["results"][1])
        assert image.status_code == 200
        with Image.open(io.BytesIO(image.content)) as img:
            assert img.size == (1024, 1024)
        upload = await c.post("/api/v1/files/upload/stream", files={"file": ("a.png", _png())})
        assert upload.json()["data"]["file_url"].startswith("http://sandbox/files/uploads/")
    state = app.state.sandbox
    assert [t.id for t in state.tasks()] == [task["id"]]


async def _create_many(seed: int, faults: FaultConfig | None = None) -> list[tuple]:
    config = SandboxConfig(seed=seed, faults=faults or FaultConfig())
    transport = httpx.ASGITransport(app=create_app(config))
    out = []
    async with httpx.AsyncClient(transport=transport, base_url="http://s", headers=AUTH) as c:
        for quality in ("low", "medium", "high", "low", "high"):
            r = await c.post("/v1/images/generations", json=_body(quality=quality))
            body = r.json()
            if r.status_code != 200:
                out.append((r.status_code,))
                continue
            out.append((body["id"].rsplit("-", 1)[1], body["task_info"]["estimated_time"]))
    return out


@pytest.mark.anyio
async def test_same_seed_same_ids_durations_and_faults() -> None:
    first = await _create_many(42)
    assert first == await _create_many(42)
    assert first != await _create_many(43)
    # Rough tier medians survive the lognormal draw (sigma 0.25 keeps them within ~2x).
    assert 1 <= first[0][1] <= 6
    assert 8 <= first[2][1] <= 24
    faults = FaultConfig(create_500=0.5)
    with_faults = await _create_many(42, faults)
    assert with_faults == await _create_many(42, faults)
    assert {len(x) for x in with_faults} == {1, 2}


# -- placeholders -------------------------------------------------------------------------


def test_placeholders_are_exact_size_deterministic_and_tiers_differ() -> None:
    specs = {
        q: RenderSpec("a lighthouse", q, 1536, 1024, index=0, n=2, refs=1)
        for q in ("low", "medium", "high")
    }
    pngs = {q: render_png(s) for q, s in specs.items()}
    assert len(set(pngs.values())) == 3
    assert render_png(specs["low"]) == pngs["low"]
    for data in pngs.values():
        with Image.open(io.BytesIO(data)) as img:
            assert img.size == (1536, 1024)
    low = render_image(specs["low"]).convert("RGB")
    # Blocky: inside the picture area every 8x8 block of the low tier is one colour.
    block = low.crop((800, 480, 808, 488))
    assert len(block.getcolors()) == 1
    high = render_image(specs["high"]).convert("RGB")
    assert len(high.crop((800, 480, 808, 488)).getcolors()) > 1
    other = render_png(RenderSpec("a different prompt", "low", 1536, 1024))
    assert other != pngs["low"]


def test_estimated_time_is_ceil_of_duration(client: httpx.Client) -> None:
    task = client.post("/v1/images/generations", json=_body(quality="high")).json()
    row = next(t for t in client.get("/_sandbox/tasks").json()["tasks"] if t["id"] == task["id"])
    assert task["task_info"]["estimated_time"] == max(1, math.ceil(row["duration"]))
