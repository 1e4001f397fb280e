"""resume() after the process that submitted was killed with SIGKILL mid-task."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

import imgkit

from .conftest import FAST_POLL, TEST_KEY

CHILD = textwrap.dedent(
    """
    import sys, imgkit
    imgkit.configure(api_key=sys.argv[1], base_url=sys.argv[2], data_dir=sys.argv[3])
    imgkit.generate("survives a crash [[seconds:4]]", quality="high", n=2)
    print("child finished", flush=True)
    """
)


def _task_id_in_ledger(db: Path) -> str | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute("SELECT task_id FROM runs WHERE task_id IS NOT NULL").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def test_resume_after_sigkill(sandbox_url: str, data_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, TEST_KEY, sandbox_url, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    db = data_dir / "ledger.sqlite3"
    deadline = time.monotonic() + 60
    task_id = None
    while task_id is None and time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        task_id = _task_id_in_ledger(db)
        time.sleep(0.05)
    assert task_id, "the child never committed a task id"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    out, _ = child.communicate()
    assert b"child finished" not in out

    imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    df = imgkit.runs()
    assert df.iloc[0]["status"] in ("pending", "processing")
    results = imgkit.resume()
    assert [r.status for r in results] == ["completed"]
    assert results[0].record.task_id == task_id
    assert [im.size for im in results[0].images] == [(1024, 1024)] * 2
    tasks = httpx.get(f"{sandbox_url}/_sandbox/tasks", headers={"Authorization": "Bearer x"}).json()["tasks"]
    assert sum(t["id"] == task_id for t in tasks) == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert imgkit.resume() == []  # nothing left to do


def test_resume_leaves_runs_in_flight_in_this_process_alone(session: imgkit.Session, sandbox_url: str) -> None:
    import asyncio

    async def main() -> tuple[imgkit.results.GenerationResult, list[imgkit.results.GenerationResult]]:
        run = asyncio.ensure_future(imgkit.agenerate("slow one [[seconds:1]]"))
        while not session.ledger.unfinished() or session.ledger.unfinished()[0].task_id is None:  # noqa: ASYNC110 - waits on the ledger, which has no event
            await asyncio.sleep(0.02)
        resumed = await imgkit.aresume()  # the run is busy, not unfinished
        return await run, resumed

    result, resumed = asyncio.run(main())
    assert resumed == []
    assert result.status == "completed"
    tasks = httpx.get(f"{sandbox_url}/_sandbox/tasks", headers={"Authorization": "Bearer x"}).json()["tasks"]
    assert sum(t["id"] == result.record.task_id for t in tasks) == 1
