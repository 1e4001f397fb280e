"""Resumers claim runs: a lease on each unfinished run, taken in one write transaction, so
concurrent resume() calls split the work; an expired lease can be taken over."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import imgkit
from imgkit.ledger import Ledger
from imgkit.request import RunRecord
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, TEST_KEY


def _run(run_id: str, **fields: Any) -> RunRecord:
    return RunRecord(run_id=run_id, provider="gateway", model="gpt-image-1", prompt=f"lease {run_id}",
                     size="1024x1024", quality="low", n=1, **fields)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "ledger.sqlite3")
    led.save_many([
        _run("a-pending", status="pending", task_id="t-a", created_at=1.0),
        _run("b-submitting", status="submitting", created_at=2.0),
        _run("c-done", status="completed", task_id="t-c", created_at=3.0),
        _run("d-failed", status="failed", error_code="content_policy_violation", task_id="t-d", created_at=4.0),
        _run("e-download", status="failed", error_code="download_failed", task_id="t-e",
             result_urls=("http://x/1.png",), created_at=5.0),
        _run("f-unknown", status="unknown", task_id="t-f", created_at=6.0),
        _run("g-unknown-no-task", status="unknown", created_at=7.0),
    ])
    yield led
    led.close()


def _leases(led: Ledger) -> dict[str, tuple[str | None, float | None]]:
    with sqlite3.connect(led.path) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT run_id, lease_owner, lease_until FROM runs")}


def test_claim_takes_what_resume_finishes_and_nobody_else_gets_it(ledger: Ledger) -> None:
    mine = ledger.claim("host:1:a", ttl_s=60)
    assert [r.run_id for r in mine] == ["a-pending", "b-submitting", "e-download", "f-unknown"]
    assert ledger.claim("host:2:b", ttl_s=60) == []
    # The owner may claim its own again (a resume() that claims twice).
    assert len(ledger.claim("host:1:a", ttl_s=60)) == 4
    leases = _leases(ledger)
    assert {k for k, (owner, _) in leases.items() if owner == "host:1:a"} == {r.run_id for r in mine}
    assert leases["c-done"] == (None, None)


def test_a_save_keeps_the_lease(ledger: Ledger) -> None:
    (run,) = ledger.claim("host:1:a", ttl_s=60, run_ids=["a-pending"])
    ledger.save(run.replace(status="processing", progress=40))
    assert _leases(ledger)["a-pending"][0] == "host:1:a"
    assert ledger.claim("host:2:b", ttl_s=60, run_ids=["a-pending"]) == []


def test_only_the_runs_asked_for_and_only_unfinished_ones(ledger: Ledger) -> None:
    got = ledger.claim("host:1:a", ttl_s=60, run_ids=["b-submitting", "c-done", "nope"])
    assert [r.run_id for r in got] == ["b-submitting"]
    assert [r.run_id for r in ledger.claim("host:2:b", ttl_s=60)] == ["a-pending", "e-download", "f-unknown"]


def test_an_expired_lease_is_taken_over_and_renew_and_release(ledger: Ledger) -> None:
    ledger.claim("host:1:a", ttl_s=0.05, run_ids=["a-pending", "b-submitting"])
    time.sleep(0.2)  # the first resumer died; its leases lapse
    taken = ledger.claim("host:2:b", ttl_s=60, run_ids=["a-pending", "b-submitting"])
    assert [r.run_id for r in taken] == ["a-pending", "b-submitting"]
    # The dead owner's renewal changes nothing now; the new owner's extends its lease.
    before = _leases(ledger)["a-pending"]
    ledger.renew("host:1:a", ["a-pending"], ttl_s=3600)
    assert _leases(ledger)["a-pending"] == before
    ledger.renew("host:2:b", ["a-pending"], ttl_s=3600)
    owner, until = _leases(ledger)["a-pending"]
    assert owner == "host:2:b" and until is not None and before[1] is not None and until > before[1]
    # Release frees only the owner's own leases.
    ledger.release("host:1:a", ["a-pending", "b-submitting"])
    assert _leases(ledger)["a-pending"][0] == "host:2:b"
    ledger.release("host:2:b", ["a-pending", "b-submitting"])
    assert _leases(ledger)["a-pending"] == (None, None)
    assert len(ledger.claim("host:3:c", ttl_s=60, run_ids=["a-pending"])) == 1


class _CountRequests:
    """ASGI middleware counting requests by method and path at the sandbox."""

    def __init__(self, app: Any, counts: Counter[tuple[str, str]]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.counts[(scope["method"], scope["path"])] += 1
        await self.app(scope, receive, send)


RESUMER = textwrap.dedent(
    """
    import json, os, sys, time, imgkit
    key, url, data_dir, go = sys.argv[1:5]
    imgkit.configure(api_key=key, base_url=url, data_dir=data_dir,
                     poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))
    while not os.path.exists(go):
        time.sleep(0.001)
    print(json.dumps([[r.run_id, r.status] for r in imgkit.resume()]), flush=True)
    """
)


def unfinished_runs(url: str, data_dir: Path, count: int) -> list[RunRecord]:
    """``count`` runs whose tasks are done at the sandbox while the ledger says ``pending``:
    what a process killed after its creates leaves."""
    imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
    out = imgkit.sweep([f"leased {i:02d}" for i in range(count)], quality="low", confirm=True, progress=False)
    assert all(r.status == "completed" for r in out.results)
    ledger = imgkit.get_session().ledger
    rows = [r.replace(status="pending", progress=0, files=(), thumbs=(), result_urls=(), completed_at=None)
            for r in ledger.records()]
    ledger.save_many(rows)
    imgkit.get_session().close()
    return rows


def resume_in_processes(url: str, data_dir: Path, processes: int, tmp_path: Path) -> list[list[list[str]]]:
    go = tmp_path / "go"
    children = [
        subprocess.Popen([sys.executable, "-c", RESUMER, TEST_KEY, url, str(data_dir), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(processes)
    ]
    time.sleep(1.0)  # both imported and configured, waiting on the same start line
    go.touch()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err.decode()[-3000:]
        outputs.append(json.loads(out.decode().strip().splitlines()[-1]))
    return outputs


def test_two_processes_resuming_poll_each_run_once(data_dir: Path, tmp_path: Path) -> None:
    counts: Counter[tuple[str, str]] = Counter()
    app = create_app(SandboxConfig(seed=5, time_scale=0.01, credits=1e9))
    app.add_middleware(_CountRequests, counts=counts)
    with running_sandbox(app=app) as url:
        rows = unfinished_runs(url, data_dir, 20)
        creates = counts[("POST", "/v1/images/generations")]
        counts.clear()
        outputs = resume_in_processes(url, data_dir, 2, tmp_path)
    resumed = [run_id for out in outputs for run_id, status in out if status == "completed"]
    # Every run finished exactly once, by one of the two.
    assert sorted(resumed) == sorted(r.run_id for r in rows)
    polls = Counter(path.rsplit("/", 1)[1] for (method, path), n in counts.items()
                    for _ in range(n) if method == "GET" and path.startswith("/v1/tasks/"))
    assert set(polls) == {r.task_id for r in rows}
    assert set(polls.values()) == {1}, polls
    downloads = sum(n for (method, path), n in counts.items() if method == "GET" and path.startswith("/files/"))
    assert downloads == 20
    assert creates == 20 and counts[("POST", "/v1/images/generations")] == 0
    with sqlite3.connect(data_dir / "ledger.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'completed'").fetchone()[0] == 20
        assert conn.execute("SELECT COUNT(*) FROM runs WHERE lease_owner IS NOT NULL").fetchone()[0] == 0
