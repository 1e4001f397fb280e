"""sweep(..., batch=True): one JSONL file, one OpenAI Batch at half price, every run
recorded with the batch id, and resume() in a later process collecting the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import imgkit
from imgkit.providers.base import is_batch_task, split_batch_task
from imgkit.providers.openai import batch_lines, parse_batch, parse_batch_file
from imgkit.request import Completed, Failed, ImageRequest, Processing
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, TEST_KEY

PROMPTS = ["a red fox", "a lighthouse"]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    config = SandboxConfig(seed=4, time_scale=0.01, openai_models=("gpt-image-2",), batch_seconds=30)
    with running_sandbox(app=create_app(config)) as base:
        yield base


def _providers(url: str) -> list[dict[str, Any]]:
    return [{"name": "openai", "kind": "openai", "api_key": TEST_KEY, "base_url": f"{url}/openai/v1",
             "models": ["gpt-image-2"]}]


def _batches(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/openai/v1/batches", headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=30)
    return list(r.json()["data"])


def test_batch_lines_are_the_sync_bodies() -> None:
    request = ImageRequest.build("a fox", model="gpt-image-2", size="16:9", quality="low", output_format="webp")
    (line,) = batch_lines([("run-1", request)]).decode().splitlines()
    assert json.loads(line) == {"custom_id": "run-1", "method": "POST", "url": "/v1/images/generations",
                                "body": request.openai_fields()}
    with pytest.raises(imgkit.ValidationError, match="previews"):
        batch_lines([("r", ImageRequest.build("a fox", model="gpt-image-2", previews=1, quality="low"))])


def test_parse_batch_reads_status_progress_and_files() -> None:
    running = {"id": "batch_1", "status": "in_progress", "input_file_id": "file-in",
               "request_counts": {"total": 4, "completed": 1, "failed": 1}}
    assert parse_batch(running) == (Processing(50), "file-in", None, None)
    done = {**running, "status": "completed", "output_file_id": "file-out", "error_file_id": None}
    assert parse_batch(done) == (Completed(), "file-in", "file-out", None)
    failed = {**running, "status": "failed", "errors": {"data": [{"message": "bad jsonl"}]}}
    assert parse_batch(failed)[0] == Failed("batch_failed", "bad jsonl")
    rows = parse_batch_file(b'{"custom_id": "a", "response": {"status_code": 200}}\n\nnot json\n')
    assert list(rows) == ["a"]
    assert is_batch_task("batch_1/run-2") and split_batch_task("batch_1/run-2") == ("batch_1", "run-2")
    assert not is_batch_task("openai-1-abc") and not is_batch_task(None)


def test_a_batch_sweep_is_one_batch_at_half_price_resumed_in_a_new_process(url: str, data_dir: Path) -> None:
    session = imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=_providers(url))
    before = len(_batches(url))
    direct = session.plan_sweep(PROMPTS, model="gpt-image-2", quality=["low", "high"])
    out = imgkit.sweep(PROMPTS, model="gpt-image-2", quality=["low", "high"], batch=True, confirm=True,
                       progress=False)
    assert len(out.results) == 4 and not out.refused
    assert out.plan.credits == pytest.approx(direct.credits / 2, abs=1e-4)
    one = imgkit.estimate(model="gpt-image-2", quality="high", batch=True)
    assert one.batch and one.credits == pytest.approx(imgkit.estimate(model="gpt-image-2", quality="high").credits / 2,
                                                      abs=1e-4)
    batch_ids = {split_batch_task(r.record.task_id)[0] for r in out.results}  # type: ignore[arg-type]
    assert len(batch_ids) == 1 and len(_batches(url)) == before + 1
    (batch_id,) = batch_ids
    df = imgkit.runs()
    assert set(df["status"]) == {"pending"} and df["task_id"].str.startswith(f"{batch_id}/").all()
    assert all(e is not None and e.batch for e in out.plan.estimates)
    time.sleep(0.5)  # the sandbox works a batch out 30 s x 0.01 after it was created
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    script = (
        "import json, sys, imgkit\n"
        f"imgkit.configure(data_dir={str(data_dir)!r}, providers={_providers(url)!r})\n"
        "for _ in range(100):\n"  # a batch being finalized reads as still running: look again
        "    done = imgkit.resume()\n"
        "    if not any(r.status in ('pending', 'processing') for r in done):\n"
        "        break\n"
        "print(json.dumps([r.status for r in imgkit.get_session().ledger.records()]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["completed"] * 4
    session.close()
    rows = imgkit.configure(data_dir=data_dir, providers=_providers(url)).ledger.records()
    assert [r.status for r in rows] == ["completed"] * 4
    for row in rows:
        assert row.task_id is not None and row.task_id.startswith(f"{batch_id}/")
        (path,) = row.files
        with Image.open(data_dir / path) as img:
            assert img.size == (1024, 1024)
        # Charged from the usage in the output file, at the batch price: about the estimate
        # (a few input tokens on top), half of what the same run costs sent directly.
        assert row.credits_charged == pytest.approx(row.est_credits, rel=0.02)
    assert sum(r.credits_charged or 0 for r in rows) < 0.55 * direct.credits


def test_batch_sweeps_need_an_openai_provider_and_text_to_image(url: str, data_dir: Path) -> None:
    imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
    with pytest.raises(imgkit.ValidationError, match="OpenAI-kind provider"):
        imgkit.sweep(PROMPTS, model="gpt-image-2", quality="low", batch=True, confirm=True, progress=False)
    imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=_providers(url))
    with pytest.raises(imgkit.ValidationError, match="text-to-image"):
        imgkit.sweep(PROMPTS, model="gpt-image-2", quality="low", images=["https://example.com/a.png"],
                     batch=True, confirm=True, progress=False)
    assert imgkit.runs().empty


def test_the_budget_refuses_batch_runs_it_cannot_afford(url: str, data_dir: Path) -> None:
    session = imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=_providers(url))
    one = session.plan_sweep("a fox", model="gpt-image-2", quality="high").credits / 2
    session.set_budget(one * 1.5)
    out = imgkit.sweep(["a fox", "a cat"], model="gpt-image-2", quality="high", batch=True, confirm=True,
                       progress=False)
    assert len(out.results) == 1 and len(out.refused) == 1
    assert out.results[0].record.status == "pending"
