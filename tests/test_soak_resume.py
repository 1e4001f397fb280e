"""``make soak``: two resumers after a SIGKILL. A sweep is killed mid-way; two processes call
``imgkit.resume()`` at the same moment. The leases split the runs: no run is resumed by both,
no result is downloaded twice, every run ends completed (or, for the one whose create was in
flight at the kill, unknown with the reason), and no task is created twice."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import TEST_KEY
from .test_crash import SWEEP_CHILD
from .test_leases import _CountRequests, resume_in_processes

pytestmark = pytest.mark.soak

TRIALS = 4
RUNS = 24


def _rows(db: Path) -> list[sqlite3.Row]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            conn.row_factory = sqlite3.Row
            return list(conn.execute("SELECT * FROM runs"))
    except sqlite3.OperationalError:
        return []


@pytest.mark.parametrize("trial", range(TRIALS))
def test_two_resumers_after_sigkill(trial: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(7000 + trial)
    counts: Counter[tuple[str, str]] = Counter()
    app = create_app(SandboxConfig(seed=70 + trial, time_scale=0.01, credits=1e9))
    app.add_middleware(_CountRequests, counts=counts)
    home = tmp_path / "home"
    db = home / "ledger.sqlite3"
    tag = f"two-{trial}-{uuid.uuid4().hex[:6]}"
    with running_sandbox(app=app) as url:
        child = subprocess.Popen([sys.executable, "-c", SWEEP_CHILD, TEST_KEY, url, str(home), tag, str(RUNS), "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not [r for r in _rows(db) if r["task_id"]] and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.2, 1.5))
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
        left = [r for r in _rows(db) if r["status"] not in ("completed", "failed", "unknown")]
        before = Counter(k for k in counts.elements())
        counts.clear()
        started = time.monotonic()
        outputs = resume_in_processes(url, home, 2, tmp_path)
        resumed_s = time.monotonic() - started
        after = Counter(counts)
        tasks_at_service = before[("POST", "/v1/images/generations")]
    first, second = ({run_id for run_id, _ in out} for out in outputs)
    assert not first & second, "a run was resumed by both processes"
    assert first | second == {r["run_id"] for r in left}
    downloads = Counter(path for (method, path), n in after.items() if method == "GET" and path.startswith("/files/")
                        for _ in range(n))
    assert set(downloads.values()) <= {1}, "a result was downloaded twice"
    assert after[("POST", "/v1/images/generations")] == 0  # resume() never creates
    rows = _rows(db)
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) <= {"completed", "unknown", "failed"}
    for r in rows:
        if r["status"] != "completed":
            assert r["task_id"] is None, dict(r)  # only a run whose create was in flight at the kill
    assert len({r["task_id"] for r in rows if r["task_id"]}) == sum(1 for r in rows if r["task_id"])
    with capsys.disabled():
        print(f"\n[soak two resumers, trial {trial}] rows {len(rows)}, unfinished at the kill {len(left)}, "
              f"split {len(first)}/{len(second)} in {resumed_s:.1f} s, downloads after the kill "
              f"{sum(downloads.values())}, creates {tasks_at_service}, statuses {dict(statuses)}")
