"""Fault soak: many runs through the real client, a TCP proxy that resets and stalls
connections, and the loopback sandbox injecting HTTP faults, failed tasks and bad downloads.

Afterwards every run must be terminal with a true status (completed; failed with a code;
unknown with a reason), every task the sandbox created must be in the ledger exactly once (or
be the one task of a run the ledger marks ``unknown``, which says why), no run may have made
two tasks, every stored file must decode and nothing may be written outside IMGKIT_HOME.
Then, with the faults off, ``resume()`` must bring every run whose task id the ledger knows to
the sandbox's own truth.

The default run soaks a small number of runs at doubled fault rates; ``make soak`` (``pytest
-m soak``) runs the full 1,000 at the rates of issue 8.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

import imgkit
from imgkit.sandbox import SandboxConfig, running_sandbox

from .conftest import FAST_POLL, TEST_KEY, sandbox_tasks
from .faultproxy import FaultProxy

TASK_ERROR_CODES = frozenset(
    {
        "content_policy_violation", "invalid_parameters", "image_processing_error", "image_dimension_mismatch",
        "request_cancelled", "generation_failed_no_content", "service_error", "generation_timeout",
        "resource_exhausted", "quota_exceeded", "service_unavailable", "resource_not_found", "unknown_error",
    }
)
SIZES = {"1:1": (1024, 1024), "3:2": (1536, 1024), "2:3": (1024, 1536)}
SANDBOX_AUTH = {"Authorization": "Bearer x"}
#: Client timeout in the soak; proxy stalls last longer than this.
CLIENT_TIMEOUT = 2.0


def sandbox_faults(scale: float) -> dict[str, float]:
    """The issue's fault mix, as sandbox probabilities (per request)."""
    return {
        # 10 % 5xx on create: a plain 500 (nothing created), 503 (retried) and a 500 after
        # the task was created and charged.
        "create_500": 0.04 * scale,
        "create_503": 0.03 * scale,
        "create_accept_then_500": 0.03 * scale,
        # 5 % 429, with and without Retry-After.
        "create_429": 0.025 * scale,
        "create_429_retry_after": 0.025 * scale,
        # 5 % failed tasks, the code drawn from all documented task error codes.
        "task_fail": 0.05 * scale,
        # 5 % result downloads that fail or return corrupt bytes.
        "download_500": 0.025 * scale,
        "download_corrupt": 0.025 * scale,
        # Not in the list, but polls meet 5xx/429 in life too.
        "poll_500": 0.01 * scale,
        "poll_429": 0.01 * scale,
    }


class _FaultCounter(logging.Handler):
    """Counts the sandbox's own "injected fault <name>" log lines."""

    _RE = re.compile(r"injected fault (\w+)")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        match = self._RE.match(record.getMessage())
        if match:
            self.counts[match[1]] += 1


@dataclass
class SoakReport:
    runs: int = 0
    sandbox_tasks: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    terminal: int = 0
    orphan_tasks_explained: int = 0
    duplicates: int = 0
    lost: int = 0
    leaks: int = 0
    files: int = 0
    after_resume: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        injected = sum(self.faults.values())
        return (
            f"runs={self.runs} sandbox_tasks={self.sandbox_tasks} faults_injected={injected} "
            f"terminal={self.terminal} duplicates={self.duplicates} lost={self.lost} leaks={self.leaks} "
            f"orphan_tasks_explained={self.orphan_tasks_explained} files_ok={self.files} "
            f"statuses={dict(self.statuses)} after_resume={dict(self.after_resume)} faults={dict(self.faults)}"
        )




def _listing(root: Path, skip: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_relative_to(skip)}


def _check_files(data_dir: Path) -> int:
    """Every file under the data directory is the ledger, the task journal, the sandbox's
    account or an image Pillow decodes."""
    count = 0
    for path in sorted(data_dir.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(data_dir)
        if rel.parts[0] in ("images", "thumbs"):
            assert not path.name.startswith(".part-"), f"a temporary file was left behind: {rel}"
            with Image.open(path) as im:
                im.load()
            count += 1
        else:
            assert rel.name.startswith(("ledger.sqlite3", "journal.jsonl", "sandbox-state.json")), (
                f"unexpected file in the data directory: {rel}"
            )
    return count


def _check_integrity(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def run_soak(n_runs: int, data_dir: Path, tmp_path: Path, *, seed: int, scale: float) -> SoakReport:
    """Run ``n_runs`` runs under faults and check every invariant; returns the counts."""
    report = SoakReport()
    outside_before = _listing(tmp_path, data_dir)
    counter = _FaultCounter()
    sandbox_log = logging.getLogger("imgkit.sandbox")
    old_level = sandbox_log.level
    sandbox_log.setLevel(logging.INFO)
    sandbox_log.addHandler(counter)
    # Three sweeps at once: most runs low/square/n=1, some medium landscape, some with n=2.
    n_b = n_c = max(2, n_runs // 10)
    n_a = n_runs - n_b - n_c
    plan = [
        ([f"soak-a-{i:04d}" for i in range(n_a)], "low", "1:1", 1),
        ([f"soak-b-{i:04d}" for i in range(n_b)], "medium", "3:2", 1),
        ([f"soak-c-{i:04d}" for i in range(n_c)], "low", "2:3", 2),
    ]
    expected = {p: (q, s, n) for prompts, q, s, n in plan for p in prompts}
    try:
        with (
            running_sandbox(SandboxConfig(seed=seed, time_scale=0.01, credits=1e9)) as url,
            FaultProxy(url, reset=0.03 * scale, stall=0.03 * scale, stall_seconds=CLIENT_TIMEOUT + 1.0,
                       seed=seed) as proxy,
        ):
            faults = {**sandbox_faults(scale), "hang_seconds": CLIENT_TIMEOUT + 1.0}
            httpx.post(f"{url}/_sandbox/faults", json=faults, headers=SANDBOX_AUTH).raise_for_status()
            session = imgkit.configure(api_key=TEST_KEY, base_url=proxy.url, data_dir=data_dir, poll=FAST_POLL,
                                       timeout=CLIENT_TIMEOUT)

            async def main() -> list[imgkit.results.SweepResult]:
                return await asyncio.gather(
                    *(session.asweep(prompts, quality=q, size=s, n=n, concurrency=8, confirm=True, progress=False)
                      for prompts, q, s, n in plan)
                )

            sweeps = asyncio.run(main())
            results = [r for sw in sweeps for r in sw.results]
            assert sum(len(sw.refused) for sw in sweeps) == 0
            # Every run the user started came back, and is terminal, in the result and the ledger.
            assert len(results) == n_runs
            assert all(r.record.terminal for r in results), Counter(r.status for r in results)
            tasks = sandbox_tasks(url)
            report.faults = counter.counts + Counter({f"proxy_{k}_{kind}": v for (k, kind), v in proxy.stats.items()})
            report.faults["task_fail"] = sum(t["error_code"] is not None for t in tasks)
            _check_soak_ledger(session, tasks, expected, report)
            report.files = _check_files(data_dir)
            _check_integrity(data_dir / "ledger.sqlite3")

            # Faults off: resume() brings every run whose task id is known to the sandbox's truth.
            httpx.post(f"{url}/_sandbox/faults", json={}, headers=SANDBOX_AUTH).raise_for_status()
            proxy.set_faults(reset=0.0, stall=0.0)
            imgkit.resume()
            _check_truth_after_resume(session, sandbox_tasks(url), report)
            _check_files(data_dir)
            ledger_bytes = b"".join(p.read_bytes() for p in data_dir.glob("ledger.sqlite3*"))
            report.leaks = ledger_bytes.count(TEST_KEY.encode()) + session.runs().to_csv().count(TEST_KEY)
    finally:
        sandbox_log.removeHandler(counter)
        sandbox_log.setLevel(old_level)
    assert report.leaks == 0
    assert _listing(tmp_path, data_dir) == outside_before, "something was written outside IMGKIT_HOME"
    return report


def _check_soak_ledger(session: imgkit.Session, tasks: list[dict], expected: dict, report: SoakReport) -> None:
    records = session.ledger.records()
    report.runs = len(records)
    report.sandbox_tasks = len(tasks)
    report.statuses = Counter(r.status for r in records)
    by_prompt = Counter(r.prompt for r in records)
    rows = {r.prompt: r for r in records}
    # One row per logical run: every run started is there once, none is there twice.
    report.duplicates += sum(c - 1 for c in by_prompt.values() if c > 1)
    assert report.duplicates == 0, [p for p, c in by_prompt.items() if c > 1]
    assert set(rows) == set(expected)
    report.lost += len(set(expected) - set(rows))
    for r in records:
        q, s, n = expected[r.prompt]
        assert (r.quality, r.size, r.n) == (q, imgkit.request.ImageRequest.build("x", size=s).size, n)
        assert r.terminal, (r.run_id, r.status)
        if r.status == "completed":
            assert len(r.files) == n and len(r.thumbs) == n, r
            for path in r.files:
                with Image.open(session.data_dir / path) as im:
                    assert im.size == SIZES[s]
        elif r.status == "failed":
            assert r.error_code, r
            assert r.error_message, r
        else:
            assert r.status == "unknown" and r.notes, r
    report.terminal = sum(r.terminal for r in records)

    # The sandbox's tasks against the ledger: no run made two tasks; every task is the task of
    # exactly one row, or the one task of a row that says it is unknown (and why).
    tasks_per_prompt = Counter(t["prompt"] for t in tasks)
    twice = [p for p, c in tasks_per_prompt.items() if c > 1]
    report.duplicates += len(twice)
    assert not twice, f"runs that created two tasks: {twice}"
    ledger_ids = Counter(r.task_id for r in records if r.task_id is not None)
    assert all(c == 1 for c in ledger_ids.values())
    sandbox_ids = {t["id"] for t in tasks}
    unknown_to_sandbox = set(ledger_ids) - sandbox_ids
    report.lost += len(unknown_to_sandbox)
    assert not unknown_to_sandbox, f"ledger rows with task ids the sandbox never made: {unknown_to_sandbox}"
    for t in tasks:
        row = rows.get(t["prompt"])
        if row is None:
            report.lost += 1
            continue
        if row.task_id == t["id"]:
            continue
        assert row.task_id is None and row.status == "unknown" and row.notes, (t, row)
        report.orphan_tasks_explained += 1
    assert report.lost == 0


def _check_truth_after_resume(session: imgkit.Session, tasks: list[dict], report: SoakReport) -> None:
    truth = {t["id"]: t for t in tasks}
    records = session.ledger.records()
    report.after_resume = Counter(r.status for r in records)
    for r in records:
        assert r.terminal, r
        if r.task_id is None:
            # Never created, or created without the client hearing of it: failed or unknown.
            assert r.status in ("failed", "unknown"), r
            continue
        t = truth[r.task_id]
        assert t["status"] in ("completed", "failed"), t
        if t["status"] == "completed":
            assert r.status == "completed", (r.status, r.error_code, r.notes, t)
            assert len(r.files) == r.n
        else:
            assert (r.status, r.error_code) == ("failed", t["error_code"]), (r, t)
            assert r.error_code in TASK_ERROR_CODES


def test_fault_soak_small(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_soak(80, data_dir, tmp_path, seed=11, scale=2.0)
    with capsys.disabled():
        print(f"\n[soak-small] {report.line()}")
    assert report.runs == 80 and report.terminal == 80
    assert sum(report.faults.values()) > 0


@pytest.mark.soak
def test_fault_soak_1000(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_soak(1000, data_dir, tmp_path, seed=2026, scale=1.0)
    with capsys.disabled():
        print(f"\n[soak-1000] {report.line()}")
    assert report.runs == 1000 and report.terminal == 1000


# --- targeted: what "unknown ... imgkit.resume() checks again" promises ------------------


def test_lost_contact_while_polling_is_finished_by_resume(sandbox_url: str, data_dir: Path) -> None:
    with FaultProxy(sandbox_url, reset=1.0, kinds=frozenset({"poll"})) as proxy:
        imgkit.configure(api_key=TEST_KEY, base_url=proxy.url, data_dir=data_dir, poll=FAST_POLL)
        res = imgkit.generate("polls are cut off", quality="low", raise_on_error=False)
        assert res.status == "unknown" and res.record.task_id
        assert "resume() checks again" in (res.record.notes or "")
        assert proxy.stats[("reset_before", "poll")] + proxy.stats[("reset_after", "poll")] >= 4
        proxy.set_faults(reset=0.0)
        resumed = imgkit.resume()
    assert [(r.run_id, r.status) for r in resumed] == [(res.run_id, "completed")]
    assert len(resumed[0].images) == 1
    assert imgkit.resume() == []


def test_run_past_its_poll_deadline_is_finished_by_resume(sandbox_url: str, data_dir: Path) -> None:
    poll = imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.05, deadline=0.3)
    imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=poll)
    res = imgkit.generate("slower than the deadline [[seconds:1.0]]", quality="low", raise_on_error=False)
    assert res.status == "unknown" and "resume() checks again" in (res.record.notes or "")
    for _ in range(200):  # wait until the sandbox says the task is done (no timing asserted)
        if next(t for t in sandbox_tasks(sandbox_url) if t["id"] == res.record.task_id)["status"] == "completed":
            break
        time.sleep(0.05)
    # The task has finished upstream; resume() must look, even though the deadline has passed.
    resumed = imgkit.resume()
    assert [r.status for r in resumed] == ["completed"]
