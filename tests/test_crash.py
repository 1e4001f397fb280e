"""Crash and resume: a process running a sweep is killed with SIGKILL at a random moment; a
fresh process calls ``imgkit.resume()``.

Afterwards every run whose task id had been committed is completed with its files, every task
the sandbox created is in the ledger (or is the one task of a run the ledger marks unknown
because the process died between the service's answer and the commit), the SQLite file passes
``PRAGMA integrity_check`` and no row is duplicated. Two trials run by default; ten more with
``-m soak``. One more trial kills the process at the moment that makes such an unknown run:
the service has created a task and not yet answered.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

from imgkit.costs import sql_may_have_cost
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox
from imgkit.sandbox._state import SandboxState, Task

from .conftest import TEST_KEY

SWEEP_CHILD = textwrap.dedent(
    """
    import sys, imgkit
    key, url, data_dir, tag, runs, n, hung = sys.argv[1:8]
    imgkit.configure(api_key=key, base_url=url, data_dir=data_dir,
                     poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.1))
    prompts = [f"{tag} run {i:02d} [[seconds:{0.2 + (i % 5) * 0.2:.1f}]]" for i in range(int(runs))]
    if int(hung) >= 0:
        prompts[int(hung)] += " [[accept_then_hang]]"
    imgkit.sweep(prompts, quality="low", n=int(n), concurrency=4, confirm=True, progress=False)
    print("sweep finished", flush=True)
    """
)
RESUME_CHILD = textwrap.dedent(
    """
    import json, sys, imgkit
    key, url, data_dir = sys.argv[1:4]
    imgkit.configure(api_key=key, base_url=url, data_dir=data_dir,
                     poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.1))
    print(json.dumps([[r.run_id, r.status] for r in imgkit.resume()]), flush=True)
    """
)
RUNS_PER_TRIAL = 10


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[tuple[str, SandboxState]]:
    """A sandbox of this module's own, with its state: the shared one has 1000 credits for the
    whole session, and these runs would spend them."""
    app = create_app(SandboxConfig(seed=31, time_scale=0.01, credits=1e9))
    with running_sandbox(app=app) as url:
        yield url, app.state.sandbox


def _rows(db: Path) -> list[dict]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM runs")]
    except sqlite3.OperationalError:  # not created yet, or mid-migration
        return []


def _sandbox_tasks(state: SandboxState, tag: str) -> list[Task]:
    """The trial's tasks, as the sandbox keeps them: ``raw_prompt`` is the prompt as sent, the
    way the ledger keeps it (``prompt`` lacks the ``[[...]]`` directives)."""
    return [t for t in state.tasks() if t.raw_prompt.startswith(f"{tag} ")]


def crash_and_resume(
    trial: int, sandbox: tuple[str, SandboxState], data_dir: Path, *, hung: int | None = None
) -> dict[str, int]:
    """Kill a sweep, resume it in a fresh process, check the ledger against the sandbox.

    Args:
        hung: the index of a run whose create the sandbox accepts and then leaves unanswered
            (``[[accept_then_hang]]``). The process is killed once that task exists, so that
            run's task is made but its id never reached the ledger. None: killed at a random
            moment.
    """
    sandbox_url, state = sandbox
    rng = random.Random(1000 + trial)
    # The module's tests share one sandbox: a tag of this call's own picks its tasks out.
    tag = f"crash-{trial}-{'random' if hung is None else 'hung'}-{os.getpid()}"
    n = 1 + trial % 2  # odd trials: two images a run, so a kill can fall between them
    db = data_dir / "ledger.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", SWEEP_CHILD, TEST_KEY, sandbox_url, str(data_dir), tag, str(RUNS_PER_TRIAL), str(n),
         str(-1 if hung is None else hung)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        if hung is None:
            # Wait for the sweep to be under way, then kill it at a random moment of its life.
            while not _rows(db) and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 2.0))
        else:
            # Wait for the task whose create answer the sandbox holds back, then kill.
            while (
                not any(t.fault == "accept_then_hang" for t in _sandbox_tasks(state, tag))
                and child.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
        killed = child.poll() is None
        if killed:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    _, err = child.communicate()
    if killed:
        assert child.returncode == -signal.SIGKILL
    else:
        assert child.returncode == 0, err.decode()[-2000:]
    committed = {r["task_id"] for r in _rows(db) if r["task_id"]}
    part_files = [p for p in data_dir.rglob(".part-*")]

    resumer = subprocess.run(
        [sys.executable, "-c", RESUME_CHILD, TEST_KEY, sandbox_url, str(data_dir)],
        capture_output=True,
        timeout=120,
    )
    assert resumer.returncode == 0, resumer.stderr.decode()[-3000:]
    resumed = json.loads(resumer.stdout.decode().strip().splitlines()[-1])

    # The file is sound and holds one row per run, one run per task.
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = _rows(db)
    prompts = Counter(r["prompt"] for r in rows)
    assert all(c == 1 for c in prompts.values()), prompts
    task_ids = Counter(r["task_id"] for r in rows if r["task_id"])
    assert all(c == 1 for c in task_ids.values()), task_ids
    assert all(r["status"] in ("completed", "failed", "unknown") for r in rows), [r["status"] for r in rows]
    by_task = {r["task_id"]: r for r in rows if r["task_id"]}
    by_prompt = {r["prompt"]: r for r in rows}
    tasks = _sandbox_tasks(state, tag)

    # Every run whose task id was committed before the kill is now completed, with its files.
    for task_id in committed:
        row = by_task[task_id]
        assert row["status"] == "completed", row
    # Every task the sandbox made is a row's task, or the one task of a run marked unknown.
    orphans = 0
    for t in tasks:
        row = by_task.get(t.id)
        if row is None:
            row = by_prompt.get(t.raw_prompt)
            assert row is not None and row["status"] == "unknown" and row["task_id"] is None, (t, row)
            assert "stopped before the service returned a task id" in row["notes"]
            # What the service reserved for the task is counted: as what the run may have cost.
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                sql = f"SELECT {sql_may_have_cost()} FROM runs WHERE run_id = ?"
                may_have_cost = conn.execute(sql, (row["run_id"],)).fetchone()[0]
            assert may_have_cost == pytest.approx(t.credits_reserved), (may_have_cost, t)
            orphans += 1
            continue
        assert row["status"] == "completed", row
        files = json.loads(row["files"])
        assert len(files) == n
        for rel in files:
            with Image.open(data_dir / rel) as im:
                im.load()
    assert not set(task_ids) - {t.id for t in tasks}, "a row names a task the sandbox never made"
    assert sum(Counter(t.raw_prompt for t in tasks).values()) == len({t.raw_prompt for t in tasks})
    # Every kept file decodes; a temporary file of an interrupted write is all that may remain.
    for path in data_dir.rglob("*"):
        if path.is_file() and path.parts[-3] in ("images", "thumbs") and not path.name.startswith(".part-"):
            with Image.open(path) as im:
                im.load()
    # resume() again has nothing left to do.
    again = subprocess.run([sys.executable, "-c", RESUME_CHILD, TEST_KEY, sandbox_url, str(data_dir)],
                           capture_output=True, timeout=120)
    assert json.loads(again.stdout.decode().strip().splitlines()[-1]) == []
    return {
        "killed": int(killed),
        "rows": len(rows),
        "committed_before_kill": len(committed),
        "sandbox_tasks": len(tasks),
        "resumed": len(resumed),
        "completed": sum(r["status"] == "completed" for r in rows),
        "orphans_explained": orphans,
        "part_files_left": len(part_files),
    }


@pytest.mark.parametrize("trial", range(2))
def test_crash_and_resume(
    trial: int, own_sandbox: tuple[str, SandboxState], data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = crash_and_resume(trial, own_sandbox, data_dir)
    with capsys.disabled():
        print(f"\n[crash trial {trial}] {counts}")


@pytest.mark.soak
@pytest.mark.parametrize("trial", range(2, 12))
def test_crash_and_resume_soak(
    trial: int, own_sandbox: tuple[str, SandboxState], data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = crash_and_resume(trial, own_sandbox, data_dir)
    with capsys.disabled():
        print(f"\n[crash trial {trial}] {counts}")


@pytest.mark.parametrize("trial", range(2))
def test_killed_while_the_service_holds_its_answer(
    trial: int, own_sandbox: tuple[str, SandboxState], data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The kill lands after the service created a task and before its answer arrived: the run
    is unknown, with no task id, and the sandbox's task is that run's (matched by prompt)."""
    counts = crash_and_resume(trial, own_sandbox, data_dir, hung=0)
    with capsys.disabled():
        print(f"\n[hung trial {trial}] {counts}")
    assert counts["killed"] == 1
    assert counts["orphans_explained"] >= 1
