"""7. A team's ledger on PostgreSQL against the SQLite ledger, in the same run.

A PostgreSQL server of the run's own (Debian's binaries, ``initdb`` into a temporary folder,
fsync on, as a team's server keeps it; tests/pg.py starts it) and a SQLite file hold the same
synthetic runs (scenario 4's, 100,000 in ``full``), written outside the clocks. Then, per
repeat:

- ``imgkit.runs()`` over each (the session's ledger chosen by ``ledger=``), and the ratio;
- the grouped cost report over the ledger, ``report(group_by=(day, quality, size))`` with its
  notebook HTML (sums grouped in SQL on either backend), and the ratio;
- concurrent writers: 8 processes on PostgreSQL against 4 on SQLite (the issue's ask; SQLite
  has one writer at a time), each saving runs as the engine does (created, pending with a task
  id, completed: three durable writes a run) into a fresh database or file; runs per second
  over the whole race, and the ratio;
- admission: ``admit()`` under a team budget (every run counts; room to spare, so each run is
  admitted) one run after another over the 100,000-run ledger, the budget's period a month;
  the median latency per admission, and the ratio.

The ratios are PostgreSQL over SQLite (a time ratio above 1: PostgreSQL is slower; a
throughput ratio above 1: faster). The server is on this machine's loopback: a team's
server across a network adds its round trips to every figure but the report.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._core import Profile, Row
from benchmarks.ledger_scale import synthetic_records

__all__ = ["run"]

SCENARIO = "7 ledger on PostgreSQL"

WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    from imgkit.ledger import open_ledger
    from imgkit.request import RunRecord
    target, go, worker, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ledger = open_ledger(target)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    start = time.time()
    for i in range(runs):
        rec = RunRecord(run_id=f"w{worker}-{i:05d}", provider="gateway", model="gpt-image-1",
                        prompt=f"writer {worker} run {i}", size="1024x1024", quality="low", n=1,
                        est_credits=0.62899, user=f"user{worker}")
        ledger.save(rec)
        task = f"task-w{worker}-{i:05d}"
        ledger.save(rec.replace(status="pending", task_id=task, submitted_at=time.time()))
        ledger.save(rec.replace(status="completed", task_id=task, completed_at=time.time(),
                                files=(f"images/00/{task}.png",)))
    end = time.time()
    ledger.close()
    print(json.dumps({"start": start, "end": end}), flush=True)
    """
)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _sizes(profile: Profile) -> tuple[int, int, int]:
    """(runs in the ledgers, runs per writer process, admissions timed)."""
    if profile.name == "full":
        return profile.ledger_rows, 250, 300
    if profile.name == "quick":
        return profile.ledger_rows, 100, 200
    return profile.ledger_rows, 10, 20


def _fill(ledger: Any, count: int, batch: int) -> None:
    piece = 50_000
    for first in range(0, count, piece):
        records = synthetic_records(min(piece, count - first), first=first, total=count)
        for i in range(0, len(records), batch):
            ledger.save_many(records[i : i + batch])


def _race(target: str, processes: int, runs: int, folder: Path) -> float:
    """Runs per second of ``processes`` writers released together on ``target``."""
    go = folder / f"go-{time.monotonic_ns()}"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, target, str(go), str(w), str(runs)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":  # opened (and migrated) outside the clock
                raise RuntimeError(f"a writer did not start: {proc.stderr.read() if proc.stderr else ''}"[-500:])
        go.touch()
        spans = []
        for proc in procs:
            out, err = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"a writer failed: {err[-500:]}")
            spans.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    wall = max(s["end"] for s in spans) - min(s["start"] for s in spans)
    return processes * runs / wall


def _admit_latency(ledger: Any, count: int, since: float) -> float:
    """The median seconds of one ``admit()`` under a team budget with room to spare."""
    from imgkit.request import RunRecord

    times = []
    stamp = time.monotonic_ns()
    for i in range(count):
        rec = RunRecord(run_id=f"admit-{stamp}-{i}", provider="gateway", model="gpt-image-1", prompt="admit",
                        size="1024x1024", quality="low", n=1, est_credits=0.62899)
        started = time.perf_counter()
        if ledger.admit(rec, limit=1e15, since=since) is not None:
            raise RuntimeError("the benchmark budget refused a run")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(profile: Profile, repeats: int) -> list[Row]:
    import matplotlib.figure  # noqa: F401  (imported before the clocks start, as scenario 4 does)
    import pandas as pd  # noqa: F401

    import imgkit
    from imgkit import reports
    from imgkit.ledger import open_ledger
    from tests import pg

    count, per_writer, admissions = _sizes(profile)
    n = f"{count:,}"
    rows = {
        "runs pg": Row(SCENARIO, f"imgkit.runs() over {n} runs, PostgreSQL", unit="s"),
        "runs sqlite": Row(SCENARIO, f"baseline: imgkit.runs() over {n} runs, SQLite", unit="s"),
        "runs ratio": Row(SCENARIO, f"imgkit.runs() PostgreSQL / SQLite, {n} runs", unit="x"),
        "report pg": Row(SCENARIO, f"cost report over the ledger by day, tier, size (+ HTML), {n} runs, PostgreSQL",
                         unit="s"),
        "report sqlite": Row(SCENARIO, f"baseline: the same report, {n} runs, SQLite", unit="s"),
        "report ratio": Row(SCENARIO, f"ledger report PostgreSQL / SQLite, {n} runs", unit="x"),
        "write pg": Row(SCENARIO, f"8 writer processes on PostgreSQL, {per_writer} runs each (3 saves a run)",
                        unit="runs/s"),
        "write sqlite": Row(SCENARIO, f"baseline: 4 writer processes on SQLite, {per_writer} runs each",
                            unit="runs/s"),
        "write ratio": Row(SCENARIO, "throughput 8 writers on PostgreSQL / 4 on SQLite", unit="x"),
        "admit pg": Row(SCENARIO, f"admit() under a team budget over {n} runs, PostgreSQL (median of {admissions})",
                        unit="ms"),
        "admit sqlite": Row(SCENARIO, f"baseline: admit() under a budget over {n} runs, SQLite", unit="ms"),
        "admit ratio": Row(SCENARIO, "admission latency PostgreSQL / SQLite", unit="x"),
    }
    with pg.running(durable=True) as server, tempfile.TemporaryDirectory(prefix="imgkit-bench-pg-") as tmp:
        folder = Path(tmp)
        os.environ["PGPASSWORD"] = pg.PASSWORD
        targets: dict[str, str] = {"pg": server.new_database(), "sqlite": str(folder / "ledger.sqlite3")}
        for target in targets.values():
            ledger = open_ledger(target)
            try:
                _fill(ledger, count, profile.ledger_batch)
            finally:
                ledger.close()
        since = time.time() - 30 * 86400
        for _ in range(repeats):
            for kind, target in targets.items():
                session = imgkit.configure(api_key="sk-bench", base_url="http://127.0.0.1:9",
                                           data_dir=folder / f"home-{kind}", ledger=target)
                try:
                    imgkit.runs().head(1)  # opened (and the pool started) outside the clock
                    rows[f"runs {kind}"].values.append(_timed(imgkit.runs))
                    rows[f"report {kind}"].values.append(
                        _timed(lambda: reports.report(group_by=("day", "quality", "size"))._repr_html_()))
                    rows[f"admit {kind}"].values.append(1000 * _admit_latency(session.ledger, admissions, since))
                finally:
                    session.close()
            writers = {"pg": (server.new_database(), 8),
                       "sqlite": (str(folder / f"writers-{time.monotonic_ns()}.sqlite3"), 4)}
            for kind, (target, processes) in writers.items():
                open_ledger(target).close()  # created and migrated before the race, outside the clock
                rows[f"write {kind}"].values.append(_race(target, processes, per_writer, folder))
            for what in ("runs", "report", "write", "admit"):
                rows[f"{what} ratio"].values.append(rows[f"{what} pg"].values[-1] / rows[f"{what} sqlite"].values[-1])
        del os.environ["PGPASSWORD"]
    return list(rows.values())
