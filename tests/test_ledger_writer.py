"""The ledger's writer thread: what it acknowledged is committed and readable, writes queued
together are committed together, an error reaches the caller whose write failed, an event
loop keeps running while its write waits, and a process killed right after an
acknowledgement keeps every acknowledged row. Every test runs on both backends of the ledger
contract: a SQLite file and a PostgreSQL database (tests/pg.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from imgkit.ledger import LedgerBackend
from imgkit.request import RunRecord

from .pg import Backend


def _record(i: int, **changes: object) -> RunRecord:
    record = RunRecord(
        run_id=f"run-{i:05d}", provider="sandbox", model="gpt-image-1", prompt=f"prompt {i}",
        size="1024x1024", quality="low", n=1, est_credits=0.625, created_at=1_790_000_000.0 + i,
    )
    return record.replace(**changes) if changes else record


@pytest.fixture
def ledger(backend: Backend) -> Iterator[LedgerBackend]:
    ledger = backend.open()
    yield ledger
    ledger.close()


def test_an_acknowledged_row_is_committed_and_read_back(ledger: LedgerBackend, backend: Backend) -> None:
    future = ledger.save_nowait(_record(1))
    assert isinstance(future, Future)
    assert future.result() is None
    assert backend.committed() == {"run-00001"}  # committed, for any other connection
    assert [r.run_id for r in ledger.records()] == ["run-00001"]
    assert ledger.to_dataframe()["run_id"].tolist() == ["run-00001"]


def test_reads_wait_for_the_writes_this_ledger_queued(ledger: LedgerBackend) -> None:
    futures = [ledger.save_nowait(_record(i)) for i in range(50)]
    futures.append(ledger.save_nowait(_record(0, status="completed")))
    # No wait on the futures: a read sees every write queued before it.
    df = ledger.to_dataframe()
    assert len(df) == 50 and ledger.count() == 50
    assert ledger.get("run-00000").status == "completed"  # type: ignore[union-attr]
    assert all(f.done() for f in futures)


def test_writes_queued_together_commit_together(ledger: LedgerBackend, backend: Backend) -> None:
    ledger.save(_record(0))
    with backend.write_locked():
        futures = [ledger.save_nowait(_record(i)) for i in range(1, 200)]
        assert not any(f.done() for f in futures)  # nothing is acknowledged before its commit
    for f in futures:
        f.result()
    assert ledger.count() == 200
    if backend.kind == "sqlite":
        # WAL frames count commits: one transaction for 199 rows writes a handful of pages,
        # one per row would write hundreds.
        assert backend.transactions() < 60
    else:
        # Rows written by one transaction share its id (xmin): the first row's, and the
        # group's (the group's first write may have gone alone before the rest were queued).
        assert backend.transactions() <= 3


def test_an_error_reaches_only_the_caller_whose_write_failed(ledger: LedgerBackend, backend: Backend) -> None:
    ledger.save(_record(0, task_id="task-taken"))
    with backend.write_locked():
        good = [ledger.save_nowait(_record(i)) for i in range(1, 5)]
        clash = ledger.save_nowait(_record(9, task_id="task-taken"))  # the task id is unique
        more = [ledger.save_nowait(_record(i)) for i in range(5, 8)]
    with pytest.raises(backend.integrity_error, match="task_id"):
        clash.result()
    for f in [*good, *more]:
        assert f.result() is None
    assert ledger.count() == 8
    with pytest.raises(backend.integrity_error):
        ledger.save(_record(10, task_id="task-taken"))


def test_a_failing_disk_is_reported_not_swallowed(ledger: LedgerBackend, backend: Backend) -> None:
    # A trigger stands in for a disk that refuses the write (the same error path: the
    # statement or the COMMIT fails inside the writer).
    backend.refuse_prompt("no room", "database or disk is full")
    with pytest.raises(backend.integrity_error, match="disk is full"):
        ledger.save(_record(1, prompt="no room"))
    with pytest.raises(backend.integrity_error, match="disk is full"):
        ledger.save_many([_record(2), _record(3, prompt="no room")])
    with pytest.raises(backend.integrity_error, match="disk is full"):
        asyncio.run(ledger.asave(_record(4, prompt="no room")))
    assert ledger.count() == 0  # save_many is one transaction: all or nothing
    ledger.save(_record(5))
    assert ledger.count() == 1


def test_asave_leaves_the_event_loop_running(ledger: LedgerBackend, backend: Backend) -> None:
    async def main() -> list[str]:
        seen: list[str] = []
        with backend.write_locked():
            write = asyncio.create_task(ledger.asave(_record(1)))
            # The write cannot commit while the lock is held; the loop still runs other work.
            for _ in range(5):
                await asyncio.sleep(0)
            seen.append("loop ran")
            assert not write.done()
        await write
        seen.append("written")
        return seen

    assert asyncio.run(main()) == ["loop ran", "written"]
    assert backend.committed() == {"run-00001"}


def test_close_drains_the_queue_and_refuses_later_writes(backend: Backend) -> None:
    ledger = backend.open()
    futures = [ledger.save_nowait(_record(i)) for i in range(300)]
    ledger.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(backend.committed()) == 300
    with pytest.raises(backend.closed_error, match="closed"):
        ledger.save(_record(301))


def test_admit_and_ratings_go_through_the_writer(ledger: LedgerBackend, backend: Backend) -> None:
    assert ledger.admit(_record(1), limit=1.0, since=None) is None
    assert ledger.admit(_record(2), limit=1.0, since=None) == pytest.approx(0.625)
    assert backend.committed() == {"run-00001"}
    assert asyncio.run(ledger.aadmit(_record(3), limit=1.0, since=None)) == pytest.approx(0.625)
    assert asyncio.run(ledger.aadmit(_record(4), limit=2.0, since=None)) is None
    assert backend.committed() == {"run-00001", "run-00004"}
    rating = ledger.add_rating(prompt="p", left_run_id="run-00001", right_run_id="run-00001",
                               left_quality="low", right_quality="low", choice="same")
    assert rating == 1 and len(ledger.ratings_frame()) == 1


def test_admit_counts_one_users_runs_when_scoped(ledger: LedgerBackend) -> None:
    ledger.save(_record(1, user="ana", credits_charged=3.0))
    ledger.save(_record(2, user="ben", credits_charged=1.0))
    # The whole ledger: 4 counted, no room under 4.5 for 0.625 more.
    assert ledger.admit(_record(3, user="ben"), limit=4.5, since=None) == pytest.approx(4.0)
    # Ben's runs only: 1 counted, room for it.
    assert ledger.admit(_record(3, user="ben"), limit=4.5, since=None, user="ben") is None
    assert ledger.spent_credits(user="ben") == pytest.approx(1.625)
    assert asyncio.run(ledger.aadmit(_record(4, user="ana"), limit=3.5, since=None, user="ana")) == pytest.approx(3.0)
    assert ledger.count() == 3


# --- a process killed between an acknowledgement and its next group --------------------------

WRITER_CHILD = textwrap.dedent(
    """
    import sys
    from imgkit.ledger import open_ledger
    from imgkit.request import RunRecord
    ledger = open_ledger(sys.argv[1])
    i = 0
    while True:
        # A burst of queued writes, then report each one as it is acknowledged.
        futures = []
        for _ in range(1 + i % 7):
            rec = RunRecord(run_id=f"run-{i:06d}", provider="sandbox", model="gpt-image-1",
                            prompt=f"crash {i}", size="1024x1024", quality="low", n=1,
                            task_id=f"task-{i:06d}", status="pending")
            futures.append((rec.run_id, ledger.save_nowait(rec)))
            i += 1
        for run_id, future in futures:
            future.result()
            sys.stdout.write(run_id + "\\n")
            sys.stdout.flush()
    """
)


@pytest.mark.parametrize("acks_before_kill", [1, 37, 400])
def test_sigkill_after_an_acknowledgement_keeps_every_acknowledged_row(
    backend: Backend, acks_before_kill: int
) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    acknowledged: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", WRITER_CHILD, str(backend.target)], stdout=subprocess.PIPE, text=True, env=env
    ) as child:
        try:
            assert child.stdout is not None
            for line in child.stdout:
                acknowledged.append(line.strip())
                if len(acknowledged) >= acks_before_kill:
                    # The child is already queueing and committing its next group.
                    child.send_signal(signal.SIGKILL)
                    break
        finally:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) >= acks_before_kill
    rows = backend.committed()
    assert set(acknowledged) <= rows
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.target)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    # The rows after the last acknowledged one were either committed whole or not at all.
    assert rows == {f"run-{i:06d}" for i in range(len(rows))}
