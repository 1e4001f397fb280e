"""A batch sweep larger than one batch's limits (lines per batch, bytes of JSONL) is sent as
several batches instead of being refused; every run records its batch id, imgkit.batches()
lists the batches, and resume() collects them all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import imgkit
from imgkit.providers.openai import OpenAIProvider, batch_lines, split_batch
from imgkit.request import ImageRequest
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, TEST_KEY

PROMPTS = ["a red fox", "a lighthouse", "a bridge"]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    config = SandboxConfig(seed=6, time_scale=0.01, openai_models=("gpt-image-2",), batch_seconds=30)
    with running_sandbox(app=create_app(config)) as base:
        yield base


def _configure(url: str, data_dir: Path, **limits: Any) -> imgkit.Session:
    return imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[
        {"name": "openai", "kind": "openai", "api_key": TEST_KEY, "base_url": f"{url}/openai/v1",
         "models": ["gpt-image-2"], **limits},
    ])


def _batches(url: str) -> dict[str, dict[str, Any]]:
    """The sandbox's batches, by id."""
    r = httpx.get(f"{url}/openai/v1/batches", params={"limit": 100}, headers={"Authorization": f"Bearer {TEST_KEY}"},
                  timeout=30)
    return {b["id"]: b for b in r.json()["data"]}


def _items(count: int, prompt_chars: int = 10) -> list[tuple[str, ImageRequest]]:
    return [(f"run-{i}", ImageRequest.build("x" * prompt_chars + str(i), model="gpt-image-2", quality="low"))
            for i in range(count)]


# --- the pure split --------------------------------------------------------------------------------


def test_split_by_lines_keeps_the_order() -> None:
    items = _items(5)
    groups = split_batch(items, max_requests=2)
    assert [[cid for cid, _ in g] for g in groups] == [["run-0", "run-1"], ["run-2", "run-3"], ["run-4"]]
    assert split_batch(items) == [items]  # OpenAI's limits: one batch
    assert split_batch([]) == []


def test_split_by_bytes_of_jsonl() -> None:
    items = _items(6, prompt_chars=1000)
    line = len(batch_lines(items[:1]))
    groups = split_batch(items, max_bytes=2 * line + line // 2)
    assert [len(g) for g in groups] == [2, 2, 2]
    assert all(len(batch_lines(g)) <= 2 * line + line // 2 for g in groups)
    # A line alone over the limit is a batch of its own (the service says what it thinks of it).
    assert [len(g) for g in split_batch(items[:3], max_bytes=line // 2)] == [1, 1, 1]


def test_submit_batch_refuses_more_than_one_batch_before_sending() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500)

    provider = OpenAIProvider(TEST_KEY, transport=httpx.MockTransport(handler), batch_max_requests=2,
                              batch_max_bytes=10**6)
    items = _items(3)
    with pytest.raises(imgkit.ValidationError, match="at most 2 requests in one batch"):
        asyncio.run(provider.submit_batch(items))
    assert seen == []
    assert [len(g) for g in provider.batch_groups(items)] == [2, 1]


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "10"])
def test_batch_limits_in_provider_settings_are_checked(value: object, data_dir: Path) -> None:
    with pytest.raises(imgkit.ConfigError, match="batch_max_requests"):
        imgkit.configure(data_dir=data_dir, providers=[
            {"name": "openai", "kind": "openai", "api_key": TEST_KEY, "batch_max_requests": value}])


# --- end to end on the sandbox ------------------------------------------------------------------------


def test_a_large_batch_sweep_is_split_and_each_run_keeps_its_batch(url: str, data_dir: Path) -> None:
    session = _configure(url, data_dir, batch_max_requests=4)
    assert imgkit.batches().empty and "charged_credits" in imgkit.batches().columns
    before = set(_batches(url))
    direct = session.plan_sweep(PROMPTS, model="gpt-image-2", quality=["low", "medium"])
    out = imgkit.sweep(PROMPTS, model="gpt-image-2", quality=["low", "medium"], batch=True, confirm=True,
                       progress=False)
    assert len(out.results) == 6 and not out.refused
    assert out.plan.credits == pytest.approx(direct.credits / 2, abs=1e-4)
    sent = [b for i, b in _batches(url).items() if i not in before]
    assert len(sent) == 2 and sorted(b["request_counts"]["total"] for b in sent) == [2, 4]
    records = [r.record for r in out.results]
    ids = [r.batch_id for r in records]
    assert ids[:4] == [ids[0]] * 4 and ids[4:] == [ids[4]] * 2 and ids[0] != ids[4]
    assert {b["id"] for b in sent} == set(ids)
    for r in records:
        assert r.status == "pending" and r.task_id == f"{r.batch_id}/{r.run_id}"
        assert "of 2 batches" in (r.notes or "")

    table = imgkit.batches()
    assert table["batch_id"].tolist() and set(table["batch_id"]) == set(ids)
    by_id = table.set_index("batch_id")
    assert by_id.loc[ids[0], "runs"] == 4 and by_id.loc[ids[4], "runs"] == 2
    assert (table["pending"] == table["runs"]).all() and table["charged_credits"].isna().all()
    assert table["est_credits"].sum() == pytest.approx(out.plan.credits, abs=1e-4)

    time.sleep(0.5)  # the sandbox works a batch out 30 s x 0.01 after it was created
    for _ in range(100):  # a batch being finalized reads as still running: look again
        table = imgkit.batches(refresh=True)
        if not table["pending"].any():
            break
    assert table["completed"].tolist() == table["runs"].tolist()
    df = imgkit.runs()
    assert (df["status"] == "completed").all()
    assert df["batch_id"].astype(str).tolist() == ids
    assert (df["tokens_out"] > 0).all() and (df["tokens_in"] > 0).all()
    assert table["charged_credits"].sum() == pytest.approx(df["credits_charged"].sum())
    assert df["credits_charged"].sum() < 0.55 * direct.credits


def test_a_byte_limit_splits_too(url: str, data_dir: Path) -> None:
    _configure(url, data_dir, batch_max_bytes=400)  # two lines of about 185 bytes each
    before = set(_batches(url))
    out = imgkit.sweep(PROMPTS, model="gpt-image-2", quality="low", batch=True, confirm=True, progress=False)
    ids = {r.record.batch_id for r in out.results}
    assert ids == set(_batches(url)) - before and len(ids) == 2


def test_a_batch_the_service_refuses_ends_only_its_own_runs(tmp_path: Path) -> None:
    from imgkit.engine import Engine
    from imgkit.ledger import Ledger
    from imgkit.providers.router import Candidate, RunPlan
    from imgkit.store import Store

    sandbox = httpx.ASGITransport(app=create_app(SandboxConfig(seed=2, time_scale=0.01,
                                                               openai_models=("gpt-image-2",))))
    creates: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/batches"):
            creates.append(1)
            if len(creates) == 2:  # the second batch: the service's queue is full
                return httpx.Response(400, json={"error": {"message": "Enqueued token limit reached",
                                                           "type": "invalid_request_error",
                                                           "code": "token_limit_exceeded"}})
        return await sandbox.handle_async_request(request)

    provider = OpenAIProvider(TEST_KEY, base_url="http://sandbox/openai/v1", transport=httpx.MockTransport(handler),
                              batch_max_requests=2)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    engine = Engine(provider, ledger, Store(tmp_path))
    requests = [ImageRequest.build(f"a fox {i}", model="gpt-image-2", quality="low") for i in range(5)]
    candidate = Candidate(engine.router.primary, None)
    records = [engine.new_record(RunPlan(q, (candidate,))) for q in requests]

    async def go() -> list[Any]:
        try:
            return await engine.run_batch(candidate, records, requests)
        finally:
            await provider.aclose()

    done = asyncio.run(go())
    ledger.close()
    assert [r.run_id for r in done] == [r.run_id for r in records]
    assert [r.status for r in done] == ["pending", "pending", "failed", "failed", "pending"]
    assert done[0].batch_id == done[1].batch_id != done[4].batch_id
    assert done[2].batch_id is None and done[2].error_code == "token_limit_exceeded"
    assert len(creates) == 3  # the refused batch is not resent; the next one goes on
