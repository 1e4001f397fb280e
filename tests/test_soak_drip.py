"""``make soak``: a slow-drip server among healthy ones. A sweep's results come from a sandbox
whose file server drips some results (256 bytes every 0.1 s, far under the minimum transfer
rate) and serves the rest at once. The dripping downloads are cut once the grace period is
over, each run ends (completed, or failed naming the slow download), and the healthy runs
finish as fast as in a sweep without any drip (the time of the last healthy run is compared
with a baseline sweep in the same test)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import imgkit
from imgkit.request import JobEvent
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, TEST_KEY

pytestmark = pytest.mark.soak

RUNS = 40
SLOW_ONE_IN = 5
#: The result paths the drip served.
DRIPPED: set[str] = set()


class _Drip:
    """ASGI middleware: the result files whose path hashes to 0 (mod ``one_in``) are sent in
    ``chunk``-byte pieces ``pause`` seconds apart, every time they are asked for."""

    def __init__(self, app: Any, one_in: int, chunk: int = 256, pause: float = 0.1) -> None:
        self.app = app
        self.one_in = one_in
        self.chunk = chunk
        self.pause = pause

    async def __call__(self, scope: Any, receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/files/") or zlib.crc32(path.encode()) % self.one_in:
            await self.app(scope, receive, send)
            return
        DRIPPED.add(path)

        async def dripping(message: Any) -> None:
            if message["type"] != "http.response.body":
                await send(message)
                return
            body = message.get("body", b"")
            for i in range(0, len(body), self.chunk):
                await send({"type": "http.response.body", "body": body[i:i + self.chunk], "more_body": True})
                await asyncio.sleep(self.pause)
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app(scope, receive, dripping)


def _sweep(url: str, home: Path, tag: str) -> tuple[list[imgkit.results.GenerationResult], dict[str, float], float]:
    """Run the sweep; return its results, when each run ended (seconds from the start), and
    the total time."""
    imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=home, poll=FAST_POLL)
    ended: dict[str, float] = {}
    started = time.monotonic()

    def on_event(event: JobEvent) -> None:
        if event.status in ("completed", "failed", "unknown"):
            ended[event.run_id] = time.monotonic() - started

    out = imgkit.sweep([f"drip {tag} {i:03d}" for i in range(RUNS)], quality="low", confirm=True,
                       progress=False, on_event=on_event)
    total = time.monotonic() - started
    imgkit.get_session().close()
    return out.results, ended, total


def test_a_slow_drip_server_among_healthy_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_sandbox(SandboxConfig(seed=81, time_scale=0.01, credits=1e9)) as url:
        baseline, base_ended, base_total = _sweep(url, tmp_path / "baseline", uuid.uuid4().hex[:6])
    assert all(r.status == "completed" for r in baseline)

    app = create_app(SandboxConfig(seed=81, time_scale=0.01, credits=1e9))
    app.add_middleware(_Drip, one_in=SLOW_ONE_IN)
    DRIPPED.clear()
    with running_sandbox(app=app) as url:
        results, ended, total = _sweep(url, tmp_path / "drip", uuid.uuid4().hex[:6])
    slow = [r for r in results if r.status != "completed"]
    healthy = [r for r in results if r.status == "completed"]
    assert DRIPPED and slow, "no result dripped"
    for res in slow:  # cut, not hung: failed, naming the slow download
        assert res.status == "failed" and res.record.error_code == "download_failed", res.record
        assert "slower than" in (res.record.error_message or ""), res.record.error_message
    assert len(healthy) + len(slow) == RUNS
    healthy_last = max(ended[r.run_id] for r in healthy)
    base_last = max(base_ended.values())
    with capsys.disabled():
        print(f"\n[soak slow drip] {RUNS} runs, {len(DRIPPED)} result URLs dripping, {len(slow)} runs cut "
              f"(failed: download slower than the minimum rate), {len(healthy)} completed; "
              f"healthy runs ended: median {statistics.median(ended[r.run_id] for r in healthy):.2f} s "
              f"(baseline {statistics.median(base_ended.values()):.2f} s), last {healthy_last:.2f} s "
              f"(baseline {base_last:.2f} s, ratio {healthy_last / base_last:.2f}); sweep {total:.1f} s "
              f"(baseline {base_total:.1f} s)")
