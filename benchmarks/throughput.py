"""1. Sweep throughput: imgkit's sweep against the ideal makespan and two hand-written clients.

The sandbox draws each task's generation time from its per-tier latency model (fixed seed),
scaled so that the ideal makespan is about a minute. The ideal is the makespan of the
generation times the sandbox actually drew in that run, placed in submission order on
``concurrency`` slots, each task starting the moment a slot frees (list scheduling, no
network, no polling, no downloads): what the service itself imposes.

Clients, each against a fresh sandbox with the same seed:

- imgkit: ``Session(...).sweep(prompts, quality=3 tiers, size=3 sizes, concurrency=32)``.
- gather: plain asyncio + httpx, a semaphore of 32, fixed 1 s polling, download, write file.
- sequential: the loop a user writes from the service's docs (submit, sleep 3 s and poll until
  done, download, write file). It would take ~30 minutes for the whole sweep, so it runs on a
  sample of tasks and is extrapolated: each planned task costs ``3 s x ceil(d / 3 s)`` plus
  the sample's measured time outside ``sleep`` (requests, download, file write).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._core import Profile, Row, list_schedule
from benchmarks._sandbox import AUTH, SandboxProcess

__all__ = ["run"]

SCENARIO = "1 sweep throughput"
QUALITIES = ("low", "medium", "high")
SIZES = ("1:1", "2:3", "3:2")
PIXELS = {"1:1": "1024x1024", "2:3": "1024x1536", "3:2": "1536x1024"}
SEED = 7
_SUBJECTS = ("a lighthouse at dusk", "a red fox in snow", "a bowl of ramen", "a city tram at night")


def _jobs(n_prompts: int) -> list[tuple[str, str, str]]:
    """(prompt, quality, size) in the order a sweep submits them (its cross product)."""
    prompts = [f"bench {i:03d}: {_SUBJECTS[i % len(_SUBJECTS)]}" for i in range(n_prompts)]
    return [(p, q, s) for p in prompts for q in QUALITIES for s in SIZES]


def _planned_durations(jobs: list[tuple[str, str, str]], time_scale: float) -> list[float]:
    """The durations a fresh sandbox with SEED draws for ``jobs`` created in this order."""
    from imgkit.sandbox import SandboxConfig
    from imgkit.sandbox._state import SandboxState

    state = SandboxState(SandboxConfig(seed=SEED, time_scale=time_scale, credits=1e12))
    out = []
    for prompt, quality, size in jobs:
        width, height = (int(v) for v in PIXELS[size].split("x"))
        task = state.create_task(
            model="gpt-image-1", prompt=prompt, raw_prompt=prompt, width=width, height=height,
            quality=quality, n=1, image_urls=(), error_code=None, seconds=None, fault=None,
        )
        assert task is not None
        out.append(task.duration)
    return out


def _ideal(sandbox: SandboxProcess, jobs: list[tuple[str, str, str]], slots: int) -> float:
    drawn = {(t["prompt"], t["quality"], t["size"]): t["duration"] for t in sandbox.tasks()}
    return list_schedule([drawn[(p, q, PIXELS[s])] for p, q, s in jobs], slots)


def _polls_per_task(sandbox: SandboxProcess) -> float:
    polls = sandbox.stats()["polls"]
    tasks = sandbox.tasks()
    return sum(polls.get(t["id"], 0) for t in tasks) / max(1, len(tasks))


# --- the clients ---------------------------------------------------------------------------


def run_imgkit(url: str, jobs: list[tuple[str, str, str]], concurrency: int, data_dir: Path) -> float:
    import imgkit

    prompts = list(dict.fromkeys(p for p, _, _ in jobs))
    session = imgkit.Session(api_key="sk-bench", base_url=url, data_dir=data_dir, concurrency=concurrency)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the sweep's cost announcement
            start = time.perf_counter()
            out = session.sweep(
                prompts, quality=QUALITIES, size=SIZES, concurrency=concurrency, confirm=True, progress=False
            )
            wall = time.perf_counter() - start
    finally:
        session.close()
    if len(out.completed) != len(jobs):
        raise RuntimeError(f"imgkit completed {len(out.completed)} of {len(jobs)} runs: {out.failed[:3]}")
    return wall


def _payload(prompt: str, quality: str, size: str) -> dict[str, Any]:
    return {"model": "gpt-image-1", "prompt": prompt, "quality": quality, "size": size, "n": 1}


async def _gather(url: str, jobs: list[tuple[str, str, str]], concurrency: int, out: Path, every: float) -> float:
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60, limits=limits) as client:

        async def one(prompt: str, quality: str, size: str) -> None:
            async with slots:
                task = (await client.post("/v1/images/generations", json=_payload(prompt, quality, size))).json()
                while task["status"] not in ("completed", "failed"):
                    await asyncio.sleep(every)
                    task = (await client.get(f"/v1/tasks/{task['id']}")).json()
                for index, result in enumerate(task.get("results") or []):
                    data = (await client.get(result)).content
                    (out / f"{task['id']}-{index}.png").write_bytes(data)

        start = time.perf_counter()
        await asyncio.gather(*(one(*job) for job in jobs))
        return time.perf_counter() - start


def run_gather(url: str, jobs: list[tuple[str, str, str]], concurrency: int, out: Path, every: float) -> float:
    return asyncio.run(_gather(url, jobs, concurrency, out, every))


def run_sequential(url: str, jobs: list[tuple[str, str, str]], out: Path, every: float) -> list[float]:
    """The docs' loop; returns each task's time outside ``sleep`` (requests, download, write)."""
    busy = []
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        for prompt, quality, size in jobs:
            start = time.perf_counter()
            slept = 0.0
            task = client.post("/v1/images/generations", json=_payload(prompt, quality, size)).json()
            while task["status"] not in ("completed", "failed"):
                time.sleep(every)
                slept += every
                task = client.get(f"/v1/tasks/{task['id']}").json()
            for index, result in enumerate(task.get("results") or []):
                (out / f"{task['id']}-{index}.png").write_bytes(client.get(result).content)
            busy.append(time.perf_counter() - start - slept)
    return busy


# --- the scenario --------------------------------------------------------------------------


def run(profile: Profile, repeats: int) -> list[Row]:
    jobs = _jobs(profile.sweep_prompts)
    slots = profile.sweep_concurrency
    scale = profile.sweep_ideal_s / list_schedule(_planned_durations(jobs, 1.0), slots)
    planned = _planned_durations(jobs, scale)
    planned_ideal = list_schedule(planned, slots)
    sample = sorted(random.Random(SEED).sample(range(len(jobs)), profile.sequential_sample))
    config = {"seed": SEED, "time_scale": scale, "credits": 1e12}

    rows = {
        "imgkit": Row(SCENARIO, f"imgkit sweep wall / ideal ({len(jobs)} tasks, {slots} slots)", unit="x",
                      target=("<=", 1.10)),
        "gather": Row(SCENARIO, f"baseline: asyncio + httpx gather, fixed {profile.gather_poll_s:g} s polls / ideal",
                      unit="x"),
        "sequential": Row(SCENARIO, f"baseline: sequential docs loop, {profile.docs_poll_s:g} s polls / ideal",
                          unit="x", note=f"extrapolated from {len(sample)} of {len(jobs)} tasks"),
        "ideal": Row(SCENARIO, "ideal makespan (list scheduling in submission order)", unit="s"),
        "wall": Row(SCENARIO, "imgkit sweep wall time", unit="s"),
        "polls": Row(SCENARIO, "imgkit status requests per task", unit=""),
        "gather_polls": Row(SCENARIO, "baseline gather: status requests per task", unit=""),
    }
    clients = ["imgkit", "gather", "sequential"]
    for repeat in range(repeats):
        order = clients[repeat % 3 :] + clients[: repeat % 3]  # rotate: no client always goes first
        for client in order:
            with tempfile.TemporaryDirectory(prefix="imgkit-bench-") as tmp, SandboxProcess(**config) as sandbox:
                if client == "imgkit":
                    wall = run_imgkit(sandbox.url, jobs, slots, Path(tmp))
                    ideal = _ideal(sandbox, jobs, slots)
                    rows["imgkit"].values.append(wall / ideal)
                    rows["ideal"].values.append(ideal)
                    rows["wall"].values.append(wall)
                    rows["polls"].values.append(_polls_per_task(sandbox))
                elif client == "gather":
                    wall = run_gather(sandbox.url, jobs, slots, Path(tmp), profile.gather_poll_s)
                    rows["gather"].values.append(wall / _ideal(sandbox, jobs, slots))
                    rows["gather_polls"].values.append(_polls_per_task(sandbox))
                else:
                    every = profile.docs_poll_s
                    busy = statistics.mean(run_sequential(sandbox.url, [jobs[i] for i in sample], Path(tmp), every))
                    total = sum(every * math.ceil(d / every) + busy for d in planned)
                    rows["sequential"].values.append(total / planned_ideal)
    return list(rows.values())
