"""3. Client overhead against the official SDK, through the sandbox's OpenAI endpoint.

The sandbox answers ``POST /openai/v1/images/generations`` with zero generation latency
(``time_scale=0``), so what remains is HTTP, JSON and base64 on both sides, the sandbox's
rendering, and the client's own work. Both clients make the same generations (gpt-image-1,
low, 1024x1024, n=1, distinct prompts) with the same number in flight:

- imgkit: a session with one ``openai`` provider at the sandbox, ``sweep(...)``. It also
  decodes and verifies each image, writes it and a thumbnail, and records the run in the
  ledger (row per status change, cost from the returned token usage).
- the SDK: ``openai.AsyncOpenAI(...).images.generate(...)`` under a semaphore, and nothing
  else (the base64 stays in the response object).

Both warm up first (imports, connections); the order alternates between repeats. The CPU
rows (``process_time`` of the harness, which is the client, and the sandbox process's
``/proc`` counters) show where the time goes, whatever else the machine is doing.

At zero latency the sandbox's core is the narrow stage, so a client's rate is the
sandbox's speed times the share of the time the client keeps it busy (its CPU seconds
over the wall time). The sandbox's speed drifts with the machine's between two runs a few
seconds apart (its CPU per generation moves by 10-20 %), and the throughput ratio with it;
the busy shares, and their ratio, do not depend on that speed and say how close a client
comes to keeping the service fully fed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
import time
from pathlib import Path

from benchmarks._core import Profile, Row
from benchmarks._sandbox import SandboxProcess

__all__ = ["run"]

SCENARIO = "3 client overhead"
CONCURRENCY = 8
_KEY = "sk-bench-openai"


def run_imgkit(url: str, prompts: list[str], data_dir: Path) -> float:
    import imgkit

    provider = {"name": "openai", "kind": "openai", "api_key": _KEY, "base_url": f"{url}/openai/v1"}
    session = imgkit.Session(providers=[provider], data_dir=data_dir, concurrency=CONCURRENCY)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            start = time.perf_counter()
            out = session.sweep(prompts, quality="low", size="1:1", concurrency=CONCURRENCY, confirm=True,
                                progress=False)
            wall = time.perf_counter() - start
    finally:
        session.close()
    if len(out.completed) != len(prompts):
        raise RuntimeError(f"imgkit completed {len(out.completed)} of {len(prompts)}: {out.failed[:2]}")
    if any(r.record.provider != "openai" for r in out.completed):
        raise RuntimeError("imgkit did not route the runs to the openai provider")
    return wall


async def _sdk(url: str, prompts: list[str]) -> float:
    import openai

    slots = asyncio.Semaphore(CONCURRENCY)
    async with openai.AsyncOpenAI(api_key=_KEY, base_url=f"{url}/openai/v1", max_retries=0) as client:

        async def one(prompt: str) -> int:
            async with slots:
                response = await client.images.generate(
                    model="gpt-image-1", prompt=prompt, quality="low", size="1024x1024", n=1
                )
                return len(response.data or [])

        start = time.perf_counter()
        got = await asyncio.gather(*(one(p) for p in prompts))
        wall = time.perf_counter() - start
    if sum(got) != len(prompts):
        raise RuntimeError(f"the SDK got {sum(got)} images for {len(prompts)} generations")
    return wall


def run_sdk(url: str, prompts: list[str]) -> float:
    return asyncio.run(_sdk(url, prompts))


def run(profile: Profile, repeats: int) -> list[Row]:
    count = profile.openai_generations
    rows = {
        "ratio": Row(SCENARIO, f"imgkit / SDK throughput ({count} generations, {CONCURRENCY} in flight)", unit="x",
                     target=(">=", 1.0)),
        "imgkit": Row(SCENARIO, "imgkit (files, thumbnails, ledger rows)", unit="gen/s"),
        "sdk": Row(SCENARIO, "baseline: openai.AsyncOpenAI images.generate", unit="gen/s"),
        "imgkit_cpu": Row(SCENARIO, "client CPU per generation: imgkit", unit="ms"),
        "sdk_cpu": Row(SCENARIO, "client CPU per generation: SDK", unit="ms"),
        "server_cpu": Row(SCENARIO, "sandbox CPU per generation (render, encode, JSON)", unit="ms"),
        "imgkit_busy": Row(SCENARIO, "sandbox busy share (its CPU time / wall time) while imgkit runs", unit="x"),
        "sdk_busy": Row(SCENARIO, "sandbox busy share while the SDK runs", unit="x"),
        "busy_ratio": Row(SCENARIO, "sandbox busy share: imgkit / SDK (independent of the sandbox's speed)",
                          unit="x"),
    }
    config = {"seed": 3, "time_scale": 0.0, "credits": 1e12}
    with tempfile.TemporaryDirectory(prefix="imgkit-bench-") as tmp, SandboxProcess(**config) as sandbox:
        warm = [f"warm-up {i}" for i in range(2)]
        run_imgkit(sandbox.url, warm, Path(tmp) / "warm")
        run_sdk(sandbox.url, warm)
        for repeat in range(repeats):
            prompts = [f"overhead r{repeat} #{i:04d}: a bowl of ramen" for i in range(count)]
            walls: dict[str, float] = {}
            busy: dict[str, float] = {}
            order = ("imgkit", "sdk") if repeat % 2 == 0 else ("sdk", "imgkit")
            for client in order:
                cpu, served = time.process_time(), sandbox.cpu_seconds()
                if client == "imgkit":
                    walls[client] = run_imgkit(sandbox.url, [f"imgkit {p}" for p in prompts], Path(tmp) / str(repeat))
                else:
                    walls[client] = run_sdk(sandbox.url, [f"sdk {p}" for p in prompts])
                rows[f"{client}_cpu"].values.append(1000 * (time.process_time() - cpu) / count)
                busy[client] = (sandbox.cpu_seconds() - served) / walls[client]
                rows[f"{client}_busy"].values.append(busy[client])
                if client == "sdk":
                    rows["server_cpu"].values.append(1000 * (sandbox.cpu_seconds() - served) / count)
            rows["imgkit"].values.append(count / walls["imgkit"])
            rows["sdk"].values.append(count / walls["sdk"])
            rows["ratio"].values.append(walls["sdk"] / walls["imgkit"])
            rows["busy_ratio"].values.append(busy["imgkit"] / busy["sdk"])
    return list(rows.values())
