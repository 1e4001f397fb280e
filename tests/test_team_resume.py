"""Resume across people and machines: a run someone else left unfinished is finished by a
colleague only on a provider the colleague has a key for; the others are left alone, with a
warning naming the run, who started it, where, and the provider. Real sandbox on loopback,
one shared SQLite ledger (two kernels), two providers configured differently."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import imgkit
from imgkit.request import RunRecord
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, SANDBOX_ADMIN, TEST_KEY


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    config = SandboxConfig(seed=11, time_scale=0.01, openai_models=("gpt-image-2",), batch_seconds=30)
    with running_sandbox(app=create_app(config)) as base:
        yield base


def _gateway(url: str) -> dict[str, Any]:
    return {"name": "evolink", "kind": "gateway", "api_key": TEST_KEY, "base_url": url}


def _openai(url: str, **key: str) -> dict[str, Any]:
    return {"name": "openai", "kind": "openai", "base_url": f"{url}/openai/v1", "models": ["gpt-image-2"], **key}


def _tasks(url: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{url}/_sandbox/tasks", headers=SANDBOX_ADMIN, timeout=30).json()["tasks"])


def _batches(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/openai/v1/batches", headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=30)
    return list(r.json()["data"])


def test_a_colleague_finishes_only_the_runs_whose_provider_key_they_have(
    url: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Ana, with keys for both providers: a batch on OpenAI (finished later, by resume) ...
    monkeypatch.setenv("IMGKIT_USER", "ana")
    ana = imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[_gateway(url), _openai(url, api_key=TEST_KEY)])
    batches_before = len(_batches(url))
    out = imgkit.sweep(["a lighthouse", "a red fox"], model="gpt-image-2", quality="low", batch=True, confirm=True,
                       progress=False)
    batch_runs = [r.run_id for r in out.results]
    assert {r.status for r in out.results} == {"pending"}
    # ... and a gateway task her laptop accepted and then lost (the process died before
    # following it): the row as it was left, with the task id the service gave.
    created = httpx.post(f"{url}/v1/images/generations", headers={"Authorization": f"Bearer {TEST_KEY}"},
                         json={"model": "gpt-image-1", "prompt": "a harbour at dawn", "size": "1:1",
                               "quality": "low", "n": 1}, timeout=30).json()
    left = RunRecord(run_id="ana-laptop-run", provider="evolink", model="gpt-image-1", prompt="a harbour at dawn",
                     size="1024x1024", quality="low", n=1, task_id=created["id"], status="pending",
                     est_credits=0.62899, submitted_at=time.time(), user="ana", project="posters",
                     host="ana-laptop", data_dir="/home/ana/.local/share/imgkit")
    ana.ledger.save(left)
    as_left = {run_id: ana.ledger.get(run_id) for run_id in batch_runs}
    imgkit.get_session().close()

    # Bob, on another machine and image directory, has a gateway key but no OpenAI key: the
    # OpenAI provider is skipped (its variable is not set), so he cannot follow Ana's batch.
    monkeypatch.setenv("IMGKIT_USER", "bob")
    monkeypatch.setenv("IMGKIT_IMAGES", str(tmp_path / "bob-images"))
    bob = imgkit.configure(data_dir=data_dir, poll=FAST_POLL,
                           providers=[_gateway(url), _openai(url, api_key_env="BOB_HAS_NO_OPENAI_KEY")])
    assert [c.name for c in bob.provider_configs] == ["evolink"]
    with caplog.at_level(logging.WARNING, logger="imgkit"):
        done = imgkit.resume()
    assert [(r.run_id, r.status) for r in done] == [("ana-laptop-run", "completed")]
    finished = bob.ledger.get("ana-laptop-run")
    assert finished is not None and finished.status == "completed"
    # Still Ana's run, for her project; its files are where Bob wrote them.
    assert (finished.user, finished.project) == ("ana", "posters")
    assert finished.data_dir == str(tmp_path / "bob-images") and finished.host != "ana-laptop"
    (path,) = imgkit.runs(user="ana", project="posters")["files"].iloc[0]
    assert Path(path).is_file() and Path(path).is_relative_to(tmp_path / "bob-images")
    # Ana's batch runs: untouched, each named in a warning with who, where and which provider.
    for run_id in batch_runs:
        assert bob.ledger.get(run_id) == as_left[run_id]
        said = [m for m in caplog.messages if run_id in m]
        assert len(said) == 1
        assert "started by ana on host" in said[0] and "provider 'openai'" in said[0]
        assert "no key for it" in said[0]
    assert sum(t["id"] == created["id"] for t in _tasks(url)) == 1  # followed, never created again
    imgkit.get_session().close()

    # Ana, who has the OpenAI key, collects her batch later; nothing was sent twice.
    monkeypatch.setenv("IMGKIT_USER", "ana")
    monkeypatch.delenv("IMGKIT_IMAGES")
    imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[_gateway(url), _openai(url, api_key=TEST_KEY)])
    time.sleep(0.5)  # the sandbox works a batch out 30 s x 0.01 after it was created
    for _ in range(100):  # a batch being finalized reads as still running: look again
        again = imgkit.resume()
        if not any(r.status in ("pending", "processing") for r in again):
            break
    rows = {r.run_id: r for r in imgkit.get_session().ledger.records()}
    assert {rows[r].status for r in batch_runs} == {"completed"}
    assert len(_batches(url)) == batches_before + 1
