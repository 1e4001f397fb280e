"""``make soak``: the ledger's storage failing in the middle of a sweep.

- disk full mid-sweep: a tmpfs (root) filled with ballast while a 60-run sweep runs; without
  root, a file size limit (RLIMIT_FSIZE) in a subprocess stands in for it;
- the ledger made read-only mid-sweep: Linux does not take write access away from a file
  descriptor already open (chmod, chattr +i and a read-only remount all leave SQLite's open
  descriptors writable or refuse), so the sweep's process turns on SQLite's own read-only
  switch (``PRAGMA query_only``) on the ledger's writer connection after some runs; every
  later write then fails with the error a read-only ledger gives ("attempt to write a
  readonly database").

Either way: every run of the sweep has an outcome, the ones the ledger could not follow name
the run, the file and what to do, and once the storage is back, ``resume()`` finishes every
run the service accepted, with no task created twice and none lost.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgkit
from imgkit.sandbox import SandboxConfig, running_sandbox

from .conftest import FAST_POLL, TEST_KEY, sandbox_tasks
from .test_storage_errors import file_size_limit_scenario, fill, small_disk

pytestmark = pytest.mark.soak

RUNS = 60


@pytest.fixture(scope="module")
def soak_sandbox() -> Iterator[str]:
    with running_sandbox(SandboxConfig(seed=59, time_scale=0.01, credits=1e9)) as url:
        yield url


def _settle(url: str, db_home: Path, tag: str) -> dict[str, int]:
    """After resume(): one task per run at most, every task's run completed with its files."""
    session = imgkit.get_session()
    # The sandbox lists prompts without their [[directives]].
    rows = {re.sub(r"\s*\[\[[^\]]*\]\]", "", r.prompt).strip(): r for r in session.ledger.records() if tag in r.prompt}
    tasks = [t for t in sandbox_tasks(url) if tag in t["prompt"]]
    per_prompt = Counter(t["prompt"] for t in tasks)
    assert set(per_prompt.values()) <= {1}, "a run was created twice"
    for t in tasks:
        row = rows[t["prompt"]]
        assert row.task_id == t["id"] and row.status == "completed", row
        assert row.files and all((db_home / f).is_file() for f in row.files)
    statuses = Counter(r.status for r in rows.values())
    assert set(statuses) <= {"completed", "failed"}, statuses
    return {"runs": len(rows), "tasks": len(tasks), "completed": statuses["completed"], "failed": statuses["failed"]}


def test_disk_full_mid_sweep(soak_sandbox: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:  # no tmpfs without root: the file size limit stands in for the full disk
        figures = file_size_limit_scenario(soak_sandbox, tmp_path)
        with capsys.disabled():
            print(f"\n[soak disk full, file size limit] {figures}")
        return
    tag = uuid.uuid4().hex[:6]
    with small_disk(tmp_path / "disk", "6m") as disk:
        home = disk / "home"
        imgkit.configure(api_key=TEST_KEY, base_url=soak_sandbox, data_dir=home, poll=FAST_POLL)
        imgkit.generate(f"warm {tag}", quality="low")
        ballast = fill(disk, leave=1536 * 1024)  # room for about a third of the sweep's images
        started = time.monotonic()
        out = imgkit.sweep([f"full soak {tag} {i:03d}" for i in range(RUNS)], quality="low", confirm=True,
                           progress=False)
        swept_s = time.monotonic() - started
        assert len(out.results) == RUNS
        during = Counter(r.status for r in out.results)
        stopped = [r for r in out.results if r.record.error_code == "storage_error"]
        assert stopped and during["completed"] > 0
        for res in stopped:
            text = res.record.error_message or ""
            assert text.startswith(f"run {res.run_id}: writing ") and "the disk is full" in text, text
        ballast.unlink()
        started = time.monotonic()
        imgkit.resume()
        resumed_s = time.monotonic() - started
        figures = _settle(soak_sandbox, home, tag)
        imgkit.get_session().close()
    with capsys.disabled():
        print(f"\n[soak disk full] sweep of {RUNS}: {dict(during)} in {swept_s:.1f} s, stopped by the disk "
              f"{len(stopped)}; after resume ({resumed_s:.1f} s): {figures}")


READ_ONLY_CHILD = textwrap.dedent(
    """
    import json, sys, imgkit
    key, url, home, tag, runs, after = sys.argv[1:7]
    session = imgkit.configure(api_key=key, base_url=url, data_dir=home,
                               poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))
    completed = []

    def on_event(event):
        if event.status == "completed":
            completed.append(event.run_id)
            if len(completed) == int(after):
                # SQLite's read-only switch on the ledger's writer connection: from here on
                # every write fails as on a read-only ledger.
                session.ledger._writer.submit(lambda conn: conn.execute("PRAGMA query_only = ON"))

    out = imgkit.sweep([f"read-only soak {tag} {i:03d} [[seconds:{0.2 + (i % 4) * 0.2:.1f}]]"
                        for i in range(int(runs))], quality="low", confirm=True, progress=False,
                       on_event=on_event, concurrency=6)
    print(json.dumps([[r.run_id, r.status, r.record.error_code, r.record.error_message] for r in out.results]),
          flush=True)
    """
)
RESUME_CHILD = textwrap.dedent(
    """
    import json, sys, imgkit
    key, url, home = sys.argv[1:4]
    imgkit.configure(api_key=key, base_url=url, data_dir=home,
                     poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))
    print(json.dumps([[r.run_id, r.status] for r in imgkit.resume()]), flush=True)
    """
)


def test_ledger_read_only_mid_sweep(soak_sandbox: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tag = uuid.uuid4().hex[:6]
    home = tmp_path / "home"
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-c", READ_ONLY_CHILD, TEST_KEY, soak_sandbox, str(home), tag, str(RUNS), "12"],
        capture_output=True, timeout=600,
    )
    swept_s = time.monotonic() - started
    assert child.returncode == 0, child.stderr.decode()[-3000:]
    assert b"Traceback" not in child.stderr, child.stderr.decode()[-3000:]
    swept = json.loads(child.stdout.decode().strip().splitlines()[-1])
    assert len(swept) == RUNS  # every run has an outcome
    during = Counter(s[1] for s in swept)
    stopped = [s for s in swept if s[2] == "storage_error"]
    assert stopped and during["completed"] >= 12
    for run_id, _, _, message in stopped:
        assert message.startswith(f"run {run_id}: writing {home / 'ledger.sqlite3'} failed: it is read-only")
        assert "writable" in message
    resumer = subprocess.run([sys.executable, "-c", RESUME_CHILD, TEST_KEY, soak_sandbox, str(home)],
                             capture_output=True, timeout=600)
    assert resumer.returncode == 0, resumer.stderr.decode()[-3000:]
    imgkit.configure(api_key=TEST_KEY, base_url=soak_sandbox, data_dir=home, poll=FAST_POLL)
    figures = _settle(soak_sandbox, home, tag)
    # A run stopped before its create was never sent and, the ledger refusing it, never
    # recorded; every run the service accepted is in the ledger, completed.
    assert figures["tasks"] == sum(1 for s in swept if s[1] in ("completed", "unknown"))
    never_sent = sum(1 for s in swept if s[1] == "failed" and s[2] == "storage_error")
    with capsys.disabled():
        print(f"\n[soak read-only ledger] sweep of {RUNS}: {dict(during)} in {swept_s:.1f} s, stopped by the "
              f"read-only ledger {len(stopped)} ({never_sent} before sending); after resume: {figures}")
