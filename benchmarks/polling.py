"""2. Polling cost and promptness, for tasks of a fixed length.

Every task carries a ``[[seconds:d]]`` directive, so it completes exactly ``d`` wall seconds
after the sandbox created it. All tasks of all lengths run at once: an imgkit sweep with
its default :class:`~imgkit.engine.PollPolicy`, and beside it (same sandbox, same moment) the plain
asyncio + httpx client polling every second.

- polls per task: ``GET /v1/tasks/{id}`` requests the sandbox received for the task.
- detection lag: when the client learnt that the task was complete (imgkit: the ledger's
  ``completed_at``; the baseline: the response's arrival) minus when the sandbox completed it
  (``finishes_at`` in ``/_sandbox/tasks``); shown as a share of the task's length.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks._core import Profile, Row
from benchmarks._sandbox import AUTH, SandboxProcess

__all__ = ["run"]

SCENARIO = "2 polling"
TARGET_DURATION = 2.0  # the targets are stated for 2-second tasks
TARGET_POLLS = 5.0
TARGET_LAG_SHARE = 0.10


def _prompt(client: str, duration: float, index: int) -> str:
    return f"{client} {duration:g}s #{index} [[seconds:{duration:g}]]"


def _run_imgkit(url: str, prompts: list[str], data_dir: Path) -> dict[str, float]:
    """task id -> when imgkit saw it complete (unix time)."""
    import imgkit

    session = imgkit.Session(api_key="sk-bench", base_url=url, data_dir=data_dir, concurrency=len(prompts))
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            out = session.sweep(prompts, quality="low", size="1:1", confirm=True, progress=False)
    finally:
        session.close()
    seen = {}
    for result in out.results:
        record = result.record
        if record.task_id is None or record.completed_at is None:
            raise RuntimeError(f"imgkit run {record.run_id} ended {record.status}: {record.error_message}")
        seen[record.task_id] = record.completed_at
    return seen


async def _fixed_interval(url: str, prompts: list[str], every: float) -> dict[str, float]:
    seen: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as client:

        async def one(prompt: str) -> None:
            body = {"model": "gpt-image-1", "prompt": prompt, "quality": "low", "size": "1:1", "n": 1}
            task = (await client.post("/v1/images/generations", json=body)).json()
            while task["status"] not in ("completed", "failed"):
                await asyncio.sleep(every)
                task = (await client.get(f"/v1/tasks/{task['id']}")).json()
            seen[task["id"]] = time.time()

        await asyncio.gather(*(one(p) for p in prompts))
    return seen


def _baseline(url: str, prompts: list[str], every: float, seen: dict[str, dict[str, float]]) -> None:
    seen["fixed"] = asyncio.run(_fixed_interval(url, prompts, every))


def run(profile: Profile, repeats: int) -> list[Row]:
    durations = profile.poll_durations
    each = profile.poll_tasks_each
    every = profile.gather_poll_s
    rows: dict[tuple[str, str, float], Row] = {}
    for client in ("imgkit", "fixed"):
        for d in durations:
            name = "imgkit" if client == "imgkit" else f"baseline, fixed {every:g} s polls"
            is_target = client == "imgkit" and d == TARGET_DURATION
            rows[(client, "polls", d)] = Row(
                SCENARIO, f"{name}: status requests per task, {d:g} s tasks",
                target=("<=", TARGET_POLLS) if is_target else None,
            )
            rows[(client, "lag", d)] = Row(
                SCENARIO, f"{name}: detection lag / task length, {d:g} s tasks", unit="%",
                target=("<=", 100 * TARGET_LAG_SHARE) if is_target else None,
            )
    for _ in range(repeats):
        imgkit_prompts = [_prompt("imgkit", d, i) for d in durations for i in range(each)]
        fixed_prompts = [_prompt("fixed", d, i) for d in durations for i in range(each)]
        with tempfile.TemporaryDirectory(prefix="imgkit-bench-") as tmp, SandboxProcess(seed=11) as sandbox:
            seen: dict[str, dict[str, float]] = {}
            # The two clients run side by side; each is mostly asleep between polls.
            thread = threading.Thread(
                target=_baseline, args=(sandbox.url, fixed_prompts, every, seen), name="bench-fixed-interval"
            )
            thread.start()
            seen["imgkit"] = _run_imgkit(sandbox.url, imgkit_prompts, Path(tmp))
            thread.join()
            polls = sandbox.stats()["polls"]
            tasks = sandbox.tasks()
        for client in ("imgkit", "fixed"):
            for d in durations:
                mine = [t for t in tasks if t["prompt"].startswith(f"{client} {d:g}s #")]
                if len(mine) != each:
                    raise RuntimeError(f"expected {each} {client} tasks of {d:g} s, the sandbox has {len(mine)}")
                rows[(client, "polls", d)].values.append(statistics.mean(polls.get(t["id"], 0) for t in mine))
                lags = [seen[client][t["id"]] - t["finishes_at"] for t in mine]
                rows[(client, "lag", d)].values.append(100 * statistics.mean(lags) / d)
    return list(rows.values())
