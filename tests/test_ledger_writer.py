"""The ledger's writer thread: what it acknowledged is committed and readable, writes queued
together are committed together, an error reaches the caller whose write failed, an event
loop keeps running while its write waits, and a process killed right after an
acknowledgement keeps every acknowledged row."""

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
from contextlib import contextmanager
from pathlib import Path

import pytest

from imgkit.ledger import Ledger
from imgkit.request import RunRecord


def _record(i: int, **changes: object) -> RunRecord:
    record = RunRecord(
        run_id=f"run-{i:05d}", provider="sandbox", model="gpt-image-1", prompt=f"prompt {i}",
        size="1024x1024", quality="low", n=1, est_credits=0.625, created_at=1_790_000_000.0 + i,
    )
    return record.replace(**changes) if changes else record


def _committed(path: Path) -> set[str]:
    """The run ids committed to the file, read by a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT run_id FROM runs")}
    finally:
        conn.close()


@contextmanager
def _write_locked(path: Path) -> Iterator[None]:
    """Hold the file's write lock from another connection (as another kernel would), so the
    writer's next transaction waits and the writes queued meanwhile pile up."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("COMMIT")
        conn.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    yield ledger
    ledger.close()


def test_an_acknowledged_row_is_committed_and_read_back(ledger: Ledger) -> None:
    future = ledger.save_nowait(_record(1))
    assert isinstance(future, Future)
    assert future.result() is None
    assert _committed(ledger.path) == {"run-00001"}  # on disk, for any other connection
    assert [r.run_id for r in ledger.records()] == ["run-00001"]
    assert ledger.to_dataframe()["run_id"].tolist() == ["run-00001"]


def test_reads_wait_for_the_writes_this_ledger_queued(ledger: Ledger) -> None:
    futures = [ledger.save_nowait(_record(i)) for i in range(50)]
    futures.append(ledger.save_nowait(_record(0, status="completed")))
    # No wait on the futures: a read sees every write queued before it.
    df = ledger.to_dataframe()
    assert len(df) == 50 and ledger.count() == 50
    assert ledger.get("run-00000").status == "completed"  # type: ignore[union-attr]
    assert all(f.done() for f in futures)


def test_writes_queued_together_commit_together(ledger: Ledger) -> None:
    ledger.save(_record(0))
    with _write_locked(ledger.path):
        futures = [ledger.save_nowait(_record(i)) for i in range(1, 200)]
        assert not any(f.done() for f in futures)  # nothing is acknowledged before its commit
    for f in futures:
        f.result()
    conn = sqlite3.connect(ledger.path)
    try:
        # WAL frames count commits: one transaction for 199 rows writes a handful of pages,
        # one per row would write hundreds.
        pages = conn.execute("PRAGMA wal_checkpoint").fetchone()[1]
    finally:
        conn.close()
    assert ledger.count() == 200
    assert pages < 60


def test_an_error_reaches_only_the_caller_whose_write_failed(ledger: Ledger) -> None:
    ledger.save(_record(0, task_id="task-taken"))
    with _write_locked(ledger.path):
        good = [ledger.save_nowait(_record(i)) for i in range(1, 5)]
        clash = ledger.save_nowait(_record(9, task_id="task-taken"))  # the task id is unique
        more = [ledger.save_nowait(_record(i)) for i in range(5, 8)]
    with pytest.raises(sqlite3.IntegrityError, match="task_id"):
        clash.result()
    for f in [*good, *more]:
        assert f.result() is None
    assert ledger.count() == 8
    with pytest.raises(sqlite3.IntegrityError):
        ledger.save(_record(10, task_id="task-taken"))


def test_a_failing_disk_is_reported_not_swallowed(ledger: Ledger) -> None:
    # A trigger stands in for a disk that refuses the write (the same error path: the
    # statement or the COMMIT fails inside the writer).
    conn = sqlite3.connect(ledger.path)
    conn.execute(
        "CREATE TRIGGER full_disk BEFORE INSERT ON runs WHEN NEW.prompt = 'no room' "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.IntegrityError, match="disk is full"):
        ledger.save(_record(1, prompt="no room"))
    with pytest.raises(sqlite3.IntegrityError, match="disk is full"):
        ledger.save_many([_record(2), _record(3, prompt="no room")])
    with pytest.raises(sqlite3.IntegrityError, match="disk is full"):
        asyncio.run(ledger.asave(_record(4, prompt="no room")))
    assert ledger.count() == 0  # save_many is one transaction: all or nothing
    ledger.save(_record(5))
    assert ledger.count() == 1


def test_asave_leaves_the_event_loop_running(ledger: Ledger) -> None:
    async def main() -> list[str]:
        seen: list[str] = []
        with _write_locked(ledger.path):
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
    assert _committed(ledger.path) == {"run-00001"}


def test_close_drains_the_queue_and_refuses_later_writes(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    futures = [ledger.save_nowait(_record(i)) for i in range(300)]
    ledger.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(_committed(ledger.path)) == 300
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        ledger.save(_record(301))


def test_admit_and_ratings_go_through_the_writer(ledger: Ledger) -> None:
    assert ledger.admit(_record(1), limit=1.0, since=None) is None
    assert ledger.admit(_record(2), limit=1.0, since=None) == pytest.approx(0.625)
    assert _committed(ledger.path) == {"run-00001"}
    assert asyncio.run(ledger.aadmit(_record(3), limit=1.0, since=None)) == pytest.approx(0.625)
    assert asyncio.run(ledger.aadmit(_record(4), limit=2.0, since=None)) is None
    assert _committed(ledger.path) == {"run-00001", "run-00004"}
    rating = ledger.add_rating(prompt="p", left_run_id="run-00001", right_run_id="run-00001",
                               left_quality="low", right_quality="low", choice="same")
    assert rating == 1 and len(ledger.ratings_frame()) == 1


# --- a process killed between an acknowledgement and its next group --------------------------

WRITER_CHILD = textwrap.dedent(
    """
    import sys
    from imgkit.ledger import Ledger
    from imgkit.request import RunRecord
    ledger = Ledger(sys.argv[1])
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
    tmp_path: Path, acks_before_kill: int
) -> None:
    db = tmp_path / "ledger.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    acknowledged: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", WRITER_CHILD, str(db)], stdout=subprocess.PIPE, text=True, env=env
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
    rows = _committed(db)
    assert set(acknowledged) <= rows
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    # The rows after the last acknowledged one were either committed whole or not at all.
    assert rows == {f"run-{i:06d}" for i in range(len(rows))}
