"""Concurrent use of one ledger, as four notebook kernels would: four processes start at the
same instant on a fresh data directory (so they also race to create the file, switch it to
WAL and migrate it), write their runs and read the DataFrame as they go. No process may see
"database is locked", no row may be lost or doubled, and the file must stay sound.

And the budget across processes: runs in several kernels against one budget send exactly
what it allows. The kernels' tests run on both ledger backends (``IMGKIT_LEDGER``: a SQLite
file, a PostgreSQL database); tests/test_pg_ledger.py has PostgreSQL's heavier races.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imgkit.sandbox import SandboxConfig, running_sandbox

from .conftest import TEST_KEY
from .pg import Backend

WORKERS = 4


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[str]:
    """A sandbox of this module's own: the shared one has 1000 credits for the whole session,
    and these runs would spend them."""
    with running_sandbox(SandboxConfig(seed=41, time_scale=0.01, credits=1e9)) as url:
        yield url

# The engine's write pattern, straight on the Ledger: created (one run in ten through the
# budget's admit()), pending with its task id, completed; reads as a notebook does.
LEDGER_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from imgkit.ledger import Ledger
    from imgkit.request import RunRecord
    db, go, worker, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    while not os.path.exists(go):
        time.sleep(0.001)
    ledger = Ledger(db)
    for i in range(runs):
        rec = RunRecord(run_id=f"w{worker}-{i:04d}", provider="sandbox", model="gpt-image-1",
                        prompt=f"worker {worker} run {i}", size="1024x1024", quality="low", n=1,
                        est_credits=0.62899)
        if i % 10 == 0:
            assert ledger.admit(rec, limit=1e12, since=None) is None
        else:
            ledger.save(rec)
        task = f"task-unified-{int(time.time())}-w{worker}{i:04d}"
        ledger.save(rec.replace(status="pending", task_id=task, submitted_at=time.time()))
        ledger.save(rec.replace(status="completed", task_id=task, completed_at=time.time(),
                                files=(f"images/00/{task}.png",)))
        if i % 50 == 0:
            ledger.to_dataframe(); ledger.unfinished(); ledger.spent_credits(); ledger.count()
    ledger.close()
    print("ok", flush=True)
    """
)

# The real thing: the session against the loopback sandbox, sweeps in pieces, runs() between.
SESSION_CHILD = textwrap.dedent(
    """
    import os, sys, time, imgkit
    key, url, data_dir, go, worker, runs = sys.argv[1:7]
    worker, runs = int(worker), int(runs)
    while not os.path.exists(go):
        time.sleep(0.001)
    imgkit.configure(api_key=key, base_url=url, data_dir=data_dir,
                     poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))
    step = max(1, runs // 5)
    for start in range(0, runs, step):
        prompts = [f"kernel {worker} run {i:04d}" for i in range(start, min(runs, start + step))]
        out = imgkit.sweep(prompts, quality="low", concurrency=8, confirm=True, progress=False)
        assert len(out.completed) == len(prompts), out
        imgkit.runs()
    print("ok", len(imgkit.runs()), flush=True)
    """
)

BUDGET_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys, time, imgkit
    key, url, data_dir, go, worker, runs, tag = sys.argv[1:8]
    imgkit.register_price_sheet({"name": "one-credit", "date": "2026-11-24", "source": "test",
                                 "base_credits": 1.0, "credits_per_usd": 100})
    imgkit.configure(api_key=key, base_url=url, data_dir=data_dir, price_sheet="one-credit",
                     concurrency=50, budget=imgkit.config.Budget(10),
                     poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))
    while not os.path.exists(go):
        time.sleep(0.001)

    async def main():
        return await asyncio.gather(*(imgkit.agenerate(f"{tag} {worker}-{i}") for i in range(int(runs))),
                                    return_exceptions=True)

    outcomes = asyncio.run(main())
    print(json.dumps({"sent": sum(isinstance(o, imgkit.results.GenerationResult) for o in outcomes),
                      "refused": sum(isinstance(o, imgkit.BudgetExceeded) for o in outcomes),
                      "other": [repr(o) for o in outcomes
                                if not isinstance(o, imgkit.results.GenerationResult | imgkit.BudgetExceeded)]}),
          flush=True)
    """
)


def _race(script: str, args_for: list[list[str]], go: Path, timeout: float) -> list[subprocess.CompletedProcess[str]]:
    """Start one process per argument list, release them together, wait for all."""
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in args_for
    ]
    time.sleep(0.5)  # let them all reach the barrier (they poll for the file)
    go.touch()
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _check(done: list[subprocess.CompletedProcess[str]]) -> None:
    for proc in done:
        assert "locked" not in proc.stderr.lower(), proc.stderr[-3000:]
        assert proc.returncode == 0, proc.stderr[-3000:]


def _rows(backend: Backend) -> list[tuple]:
    """The runs of the shared ledger (a SQLite file must also be sound, in WAL mode)."""
    if backend.kind == "sqlite":
        return _integrity(Path(backend.target))
    return backend.execute("SELECT run_id, status, task_id, prompt FROM runs")


def _integrity(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        return conn.execute("SELECT run_id, status, task_id, prompt FROM runs").fetchall()


def test_four_processes_write_500_runs_each(tmp_path: Path) -> None:
    db = tmp_path / "shared" / "ledger.sqlite3"
    go = tmp_path / "go"
    done = _race(LEDGER_CHILD, [[str(db), str(go), str(w), "500"] for w in range(WORKERS)], go, timeout=240)
    _check(done)
    rows = _integrity(db)
    assert len(rows) == WORKERS * 500
    assert {r[1] for r in rows} == {"completed"}
    assert len({r[2] for r in rows}) == len(rows) and len({r[3] for r in rows}) == len(rows)


def _kernels(sandbox_url: str, tmp_path: Path, runs: int, backend: Backend) -> None:
    data_dir = tmp_path / "shared-home"
    go = tmp_path / "go"
    args = [[TEST_KEY, sandbox_url, str(data_dir), str(go), str(w), str(runs)] for w in range(WORKERS)]
    done = _race(SESSION_CHILD, args, go, timeout=1800)
    _check(done)
    rows = _rows(backend)  # the kernels inherit IMGKIT_LEDGER: the backend's ledger
    assert len(rows) == WORKERS * runs
    assert {r[1] for r in rows} == {"completed"}
    assert len({r[2] for r in rows}) == len(rows)  # one task per run, none shared
    assert len({r[3] for r in rows}) == len(rows)
    tasks = httpx.get(f"{sandbox_url}/_sandbox/tasks", headers={"Authorization": "Bearer x"}, timeout=30).json()["tasks"]
    mine = {t["id"] for t in tasks if t["prompt"].startswith("kernel ")}
    assert {r[2] for r in rows} <= mine


def test_four_kernels_share_one_ledger(own_sandbox: str, tmp_path: Path, backend: Backend) -> None:
    _kernels(own_sandbox, tmp_path, runs=10, backend=backend)


@pytest.mark.soak
def test_four_kernels_write_500_runs_each(own_sandbox: str, tmp_path: Path, backend: Backend) -> None:
    _kernels(own_sandbox, tmp_path, runs=500, backend=backend)


def test_budget_holds_across_processes(own_sandbox: str, tmp_path: Path, backend: Backend) -> None:
    """Five kernels start 10 runs each at once against one budget of 10 one-credit runs."""
    data_dir = tmp_path / "budget-home"
    go = tmp_path / "go"
    tag = f"budget-{uuid.uuid4().hex[:8]}"
    args = [[TEST_KEY, own_sandbox, str(data_dir), str(go), str(w), "10", tag] for w in range(5)]
    done = _race(BUDGET_CHILD, args, go, timeout=300)
    _check(done)
    counts = [json.loads(p.stdout.strip().splitlines()[-1]) for p in done]
    assert [c["other"] for c in counts] == [[]] * 5
    assert sum(c["sent"] for c in counts) == 10
    assert sum(c["refused"] for c in counts) == 40
    tasks = httpx.get(f"{own_sandbox}/_sandbox/tasks", headers={"Authorization": "Bearer x"}, timeout=30).json()["tasks"]
    assert sum(t["prompt"].startswith(f"{tag} ") for t in tasks) == 10
    rows = _rows(backend)
    assert len(rows) == 10
