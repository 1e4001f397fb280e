"""The real client against the sandbox on a real loopback port: generate, n > 1, image to
image through the file API, failures with every task error code, 429/5xx, unknown outcomes,
expired URLs, the DataFrame."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

import imgkit
from imgkit.sandbox import SandboxConfig, running_sandbox

from .conftest import FAST_POLL, TASK_ERROR_CODES, TEST_KEY, sandbox_tasks


def test_text_to_image(session: imgkit.Session, data_dir: Path) -> None:
    res = imgkit.generate("A beautiful colorful sunset over the ocean", size="3:2", quality="low", n=2)
    assert res.status == "completed"
    assert len(res.paths) == 2
    assert all(p.is_file() and p.is_relative_to(data_dir / "images") for p in res.paths)
    assert [im.size for im in res.images] == [(1536, 1024)] * 2
    assert res.cost.credits == imgkit.estimate(quality="low", size="3:2", n=2).credits
    assert res.cost.sheet == "evolink-table-2026-11"
    assert res.cost.credits_reserved == pytest.approx(0.92462 * 2, abs=1e-4)
    assert res.latency_s is not None and res.latency_s > 0
    html = res._repr_html_()
    assert html.count("<img ") == 2 and "data:image/jpeg;base64," in html
    assert "low" in html and "1536x1024" in html and "credits" in html
    df = imgkit.runs()
    assert len(df) == 1 and df.iloc[0]["status"] == "completed"
    assert df.iloc[0]["task_id"].startswith("task-unified-")


def test_agenerate_runs_concurrently_from_a_running_loop(session: imgkit.Session) -> None:
    events: list[imgkit.request.JobEvent] = []

    async def main() -> list[imgkit.results.GenerationResult]:
        loop = asyncio.get_running_loop()

        def on_event(event: imgkit.request.JobEvent) -> None:
            assert asyncio.get_running_loop() is loop  # delivered on the caller's loop
            events.append(event)

        return await asyncio.gather(
            *(imgkit.agenerate(f"prompt {i}", quality=q, on_event=on_event) for i, q in enumerate(["low", "medium", "high"]))
        )

    results = asyncio.run(main())
    assert [r.status for r in results] == ["completed"] * 3
    statuses = {e.status for e in events}
    assert {"submitting", "pending", "downloading", "completed"} <= statuses
    assert len(imgkit.runs()) == 3


def test_image_to_image_uploads_local_files(session: imgkit.Session, tmp_path: Path, sandbox_url: str) -> None:
    local = tmp_path / "sketch.webp"
    Image.new("RGB", (64, 48), (10, 120, 200)).save(local, format="WEBP")
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (250, 250, 0)).save(buf, format="JPEG")
    res = imgkit.generate("make it a watercolor", images=[local, buf.getvalue(), "https://example.com/ref.png"])
    assert res.status == "completed"
    refs = res.record.reference_images
    assert len(refs) == 3
    assert refs[0].startswith(sandbox_url) and "/files/uploads/" in refs[0]
    assert refs[2] == "https://example.com/ref.png"
    # The uploaded file is the same bytes we had.
    assert httpx.get(refs[0]).content == local.read_bytes()
    assert res.record.mode == "image-to-image"


@pytest.mark.parametrize("code", TASK_ERROR_CODES)
def test_failed_tasks_keep_code_and_message(session: imgkit.Session, code: str) -> None:
    with pytest.raises(imgkit.TaskFailed) as info:
        imgkit.generate(f"a cat [[fail:{code}]]")
    assert info.value.code == code
    row = imgkit.runs().iloc[-1]
    assert row["status"] == "failed" and row["error_code"] == code
    assert row["error_message"]
    assert row["task_id"].startswith("task-unified-")


def test_failed_run_can_be_returned_instead_of_raised(session: imgkit.Session) -> None:
    res = imgkit.generate("x [[fail:content_policy_violation]]", raise_on_error=False)
    assert res.status == "failed" and res.paths == []
    assert "content_policy_violation" in res._repr_html_()


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "invalid_request"), (401, "unauthorized"), (402, "insufficient_quota"), (403, "model_access_denied")],
)
def test_client_errors_on_create_are_failed_runs_not_retried(
    session: imgkit.Session, sandbox_url: str, status: int, code: str
) -> None:
    before = len(sandbox_tasks(sandbox_url))
    with pytest.raises(imgkit.TaskFailed) as info:
        imgkit.generate(f"p [[http:{status}]]")
    assert info.value.code == code
    row = imgkit.runs().iloc[-1]
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", code, 1)
    assert len(sandbox_tasks(sandbox_url)) == before


def test_429_and_503_on_create_are_retried_then_reported(session: imgkit.Session) -> None:
    # The directive answers every attempt the same way: imgkit retries (attempts capped at 4 in
    # tests) and then records a failed run; nothing was created, nothing charged.
    for status, code in [(429, "rate_limit_exceeded"), (503, "service_unavailable")]:
        with pytest.raises(imgkit.TaskFailed):
            imgkit.generate(f"p [[http:{status}]]")
        row = imgkit.runs().iloc[-1]
        assert (row["status"], row["error_code"], row["attempts"]) == ("failed", code, 4)


def test_transient_faults_are_retried_to_success(sandbox_url: str, data_dir: Path) -> None:
    faults = {"create_429_retry_after": 0.3, "create_503": 0.2, "poll_500": 0.3, "poll_429": 0.2, "download_500": 0.3, "download_corrupt": 0.2}
    with running_sandbox(SandboxConfig(seed=3, time_scale=0.01)) as url:
        httpx.post(f"{url}/_sandbox/faults", json=faults, headers={"Authorization": "Bearer x"}).raise_for_status()
        imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        results = [imgkit.generate(f"flaky {i}", raise_on_error=False) for i in range(12)]
        created = sandbox_tasks(url)
    completed = [r for r in results if r.status == "completed"]
    assert len(completed) >= 9, [(r.status, r.record.error_code) for r in results]
    for r in completed:
        for im in r.images:
            assert im.size == (1024, 1024)
    df = imgkit.runs()
    # Every task the sandbox created is in the ledger exactly once.
    assert sorted(t["id"] for t in created) == sorted(df["task_id"].dropna())


def test_unknown_outcome_is_not_resent(session: imgkit.Session, sandbox_url: str) -> None:
    before = len(sandbox_tasks(sandbox_url))
    with pytest.raises(imgkit.UnknownOutcome, match="not resent"):
        imgkit.generate("p [[accept_then_500]]")
    row = imgkit.runs().iloc[-1]
    assert row["status"] == "unknown" and row["attempts"] == 1
    assert "paying twice" in row["notes"] or "not resent" in row["notes"]
    assert len(sandbox_tasks(sandbox_url)) == before + 1  # exactly one task, none duplicated


def test_timeout_after_sending_is_unknown_not_resent(sandbox_url: str, data_dir: Path) -> None:
    imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL, timeout=0.5)
    before = len(sandbox_tasks(sandbox_url))
    res = imgkit.generate("p [[accept_then_hang]]", raise_on_error=False)
    assert res.status == "unknown"
    assert res.record.attempts == 1
    assert len(sandbox_tasks(sandbox_url)) == before + 1


def test_connection_refused_is_retried_then_failed(data_dir: Path) -> None:
    imgkit.configure(api_key=TEST_KEY, base_url="http://127.0.0.1:9", data_dir=data_dir, poll=FAST_POLL)
    with pytest.raises(imgkit.TaskFailed, match="connection_error"):
        imgkit.generate("p")
    row = imgkit.runs().iloc[-1]
    assert (row["status"], row["attempts"]) == ("failed", 4)


def test_expired_result_urls(data_dir: Path) -> None:
    with running_sandbox(SandboxConfig(seed=1, time_scale=0.01, url_ttl=0.0)) as url:
        imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        res = imgkit.generate("too late", raise_on_error=False)
    assert res.status == "failed"
    assert res.record.error_code == "result_expired"
    assert res.record.result_urls  # kept, with the task id, for the record


def test_validation_happens_before_any_request(session: imgkit.Session, sandbox_url: str) -> None:
    before = len(sandbox_tasks(sandbox_url))
    for kwargs in ({"quality": "ultra"}, {"size": "4:3"}, {"n": 11}, {"images": [b"not an image"]}):
        with pytest.raises(imgkit.ValidationError):
            imgkit.generate("p", **kwargs)
    with pytest.raises(imgkit.ValidationError):
        imgkit.generate("")
    assert len(sandbox_tasks(sandbox_url)) == before
    assert len(imgkit.runs()) == 0


def test_dataframe_columns_and_dtypes(session: imgkit.Session) -> None:
    imgkit.generate("one", quality="high", size="2:3", tags=["exp-1"])
    imgkit.generate("two [[fail:service_error]]", raise_on_error=False)
    df = imgkit.runs()
    from imgkit.ledger import COLUMNS

    assert tuple(df.columns) == COLUMNS
    assert str(df["created_at"].dtype) == "datetime64[ns, UTC]"
    assert str(df["completed_at"].dtype) == "datetime64[ns, UTC]"
    assert df["quality"].dtype == "category" and list(df["quality"].cat.categories) == ["low", "medium", "high"]
    assert df["quality"].cat.ordered
    assert df["size"].dtype == "category" and df["status"].dtype == "category"
    for money in ("est_credits", "est_usd", "est_cny", "credits_reserved", "latency_s"):
        assert df[money].dtype == "float64", money
    assert str(df["n"].dtype) == "Int64"
    first = df.iloc[0]
    assert first["tags"] == ["exp-1"]
    assert first["est_credits"] == 13.90484
    assert Path(first["files"][0]).is_file() and Path(first["thumbs"][0]).is_file()
    assert first["n_images"] == 1
    assert df.iloc[1]["status"] == "failed"


def test_runs_persist_across_sessions(session: imgkit.Session, sandbox_url: str, data_dir: Path) -> None:
    imgkit.generate("kept")
    imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    assert list(imgkit.runs()["prompt"]) == ["kept"]


def test_in_process_sandbox_is_the_default(data_dir: Path) -> None:
    imgkit.configure(sandbox_config=SandboxConfig(time_scale=0.01), poll=FAST_POLL)
    assert "sandbox" in imgkit.get_session().describe()
    res = imgkit.generate("offline", quality="low")
    assert res.status == "completed" and res.record.provider == "sandbox"
    assert res.images[0].size == (1024, 1024)


def test_balance(session: imgkit.Session) -> None:
    before = session.balance()
    assert before is not None
    imgkit.generate("costs something", quality="high")
    after = session.balance()
    assert after is not None and after.remaining_credits < before.remaining_credits
