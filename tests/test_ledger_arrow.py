"""The Arrow read of the ledger gives the very DataFrame the row-by-row sqlite3 read gives:
same columns, dtypes, order and values, whatever the lists hold and whatever the rows'
order on disk."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from imgkit import ledger as ledger_module
from imgkit.ledger import Ledger
from imgkit.request import RunRecord

from .committer import committing


def _records() -> list[RunRecord]:
    base = RunRecord(run_id="a", provider="sandbox", model="gpt-image-1", prompt="p", size="1024x1024",
                     quality="low", n=1)
    odd_lists = [
        ("images/ab/x.png", "images/cd/y.png"),
        ('say "hi"',),  # a quote inside an item: escaped in JSON
        ("back\\slash", "naïve ünïcode"),  # escapes of both kinds
        ("", "a, b", '", "'),  # an empty item, a comma, the separator itself
        (),
    ]
    records = []
    for i in range(40):
        files = odd_lists[i % len(odd_lists)] if i % 3 else ()
        records.append(
            base.replace(
                run_id=f"r{i:03d}",
                # Not in insertion order, with ties broken by run_id.
                created_at=1_790_000_000.0 + (i * 7) % 13,
                status=("completed", "failed", "unknown", "pending")[i % 4],
                prompt=f"prompt {i}\nwith a 'quote', a \"double\" and ünïcode",
                size=("1024x1024", "1536x1024", "4096x4096")[i % 3],
                quality=("low", "medium", "high")[i % 3],
                n=1 + i % 4,
                task_id=f"task-{i}" if i % 5 else None,
                est_credits=None if i % 6 == 0 else 0.125 * i,
                est_usd=None if i % 6 == 0 else 0.001 * i,
                credits_reserved=1.5 if i % 2 else None,
                credits_charged=2.0 if i % 7 == 0 else None,
                price_sheet=None if i % 9 == 0 else "evolink-table-2026-11",
                submitted_at=None if i % 4 == 3 else 1_790_000_001.0 + i,
                completed_at=1_790_000_010.5 + i if i % 4 == 0 else None,
                files=files,
                thumbs=tuple(f.replace("images", "thumbs") for f in files),
                result_urls=tuple(f"https://x/{f}" for f in files),
                tags=("alpha", "beta") if i % 2 else (),
                reference_images=("ref.png",) if i % 8 == 0 else (),
                providers_tried=({"provider": "openai", "reason": "http_503"},) if i % 10 == 0 else (),
                error_code="generation_timeout" if i % 4 == 1 else None,
                notes=None if i % 2 else "note",
                mode="image-to-image" if i % 8 == 0 else "text-to-image",
                attempts=i % 3,
                progress=(i * 10) % 101,
            )
        )
    return records


def _ledger(path: Path) -> Ledger:
    """A ledger that reads through Arrow at any size (small ones read row by row)."""
    ledger = Ledger(path)
    ledger.ARROW_FROM_ROWS = 0  # type: ignore[misc]
    return ledger


def _both(ledger: Ledger, data_dir: Path | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    arrow = ledger.to_dataframe(data_dir=data_dir)
    with ledger_module._no_gc():
        rows = ledger._frame(pd, data_dir)
    return arrow, rows


@pytest.mark.parametrize("data_dir", [None, Path("/data/imgkit")])
def test_the_arrow_read_equals_the_row_by_row_read(tmp_path: Path, data_dir: Path | None) -> None:
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(_records())
        assert ledger_module._arrow_read(ledger.path) is not None  # the fast path is taken
        arrow, rows = _both(ledger, data_dir)
    finally:
        ledger.close()
    pd.testing.assert_frame_equal(arrow, rows, check_exact=True)
    assert arrow["run_id"].tolist()[:3] == ["r000", "r013", "r026"]  # oldest first, then by run_id
    assert all(type(v) is list for column in ("files", "tags", "providers_tried") for v in arrow[column])


@pytest.mark.parametrize("data_dir", [None, Path("/data/imgkit")])
def test_lists_made_batch_by_batch_equal_the_row_by_row_read(
    tmp_path: Path, data_dir: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs written oldest first (the rule) have their list columns made as the helper's
    batches arrive, the typing row's left out; the frame is the same."""
    monkeypatch.setattr(ledger_module, "_ARROW_BATCH_ROWS", 7)
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(sorted(_records(), key=lambda r: (r.created_at, r.run_id)))
        runs = ledger_module._arrow_read(ledger.path, data_dir)
        assert runs is not None and runs.lists is not None and runs.table.num_rows == 40
        assert len(runs.table.to_batches()) > 5  # several batches came
        arrow, rows = _both(ledger, data_dir)
    finally:
        ledger.close()
    pd.testing.assert_frame_equal(arrow, rows, check_exact=True)
    assert any(files and files[0].startswith(f"{data_dir}/images") for files in arrow["files"]) == bool(data_dir)


def test_an_empty_ledger_reads_the_same(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        arrow, rows = _both(ledger, None)
    finally:
        ledger.close()
    pd.testing.assert_frame_equal(arrow, rows, check_exact=True)


def test_lists_in_other_json_forms_are_parsed(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(_records()[:6])
        # Another writer (an older imgkit, a script) may store compact or escaped JSON.
        conn = sqlite3.connect(ledger.path)
        conn.execute("UPDATE runs SET tags = ? WHERE run_id = 'r001'", (json.dumps(["x", "y"], separators=(",", ":")),))
        conn.execute("UPDATE runs SET files = ? WHERE run_id = 'r002'", ('[ "a" ]',))
        conn.commit()
        conn.close()
        arrow, rows = _both(ledger, None)
    finally:
        ledger.close()
    pd.testing.assert_frame_equal(arrow, rows, check_exact=True)
    by_id = arrow.set_index("run_id")
    assert by_id.loc["r001", "tags"] == ["x", "y"] and by_id.loc["r002", "files"] == ["a"]


def test_a_value_of_another_type_falls_back_to_the_row_by_row_read(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(_records()[:4])
        conn = sqlite3.connect(ledger.path)
        conn.execute("UPDATE runs SET n = 2.5 WHERE run_id = 'r003'")  # INTEGER affinity keeps a REAL
        conn.commit()
        conn.close()
        assert ledger_module._arrow_read(ledger.path) is None
        with pytest.raises(TypeError):
            ledger.to_dataframe()  # the row-by-row read refuses 2.5 as Int64, as before
    finally:
        ledger.close()


def test_several_ledgers_on_one_file_read_fresh_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first, second = _ledger(path), _ledger(path)
    first.save(_records()[0])
    assert len(second.to_dataframe()) == 1 and len(first.to_dataframe()) == 1
    first.close()
    first.close()  # a second close changes nothing
    second.save(_records()[1])
    assert len(second.to_dataframe()) == 2
    second.close()


def test_the_driver_never_runs_in_this_process(tmp_path: Path) -> None:
    """Its own copy of SQLite would take this process's locks for its own (and reset the WAL
    index under the writer): it reads in a helper process."""
    import sys

    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save(_records()[0])
        assert len(ledger.to_dataframe()) == 1
    finally:
        ledger.close()
    assert "adbc_driver_sqlite" not in sys.modules
    assert ledger_module._READERS and ledger_module._READERS[0].poll() is None


def test_a_lost_reader_is_replaced(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save(_records()[0])
        ledger.to_dataframe()
        ledger_module._READERS[0].kill()
        ledger_module._READERS[0].wait()
        assert len(ledger.to_dataframe()) == 1  # the row-by-row read, then a new helper
        assert ledger_module._arrow_read(ledger.path) is not None
    finally:
        ledger.close()


def test_small_ledgers_read_row_by_row(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save(_records()[0])
        ledger_module._stop_reader()
        assert len(ledger.to_dataframe()) == 1
        assert not ledger_module._READERS  # no helper started for one run
    finally:
        ledger.close()


def _split_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read any ledger in two halves, by two helpers, as a large one on two CPUs is read."""
    monkeypatch.setattr(ledger_module, "_SPLIT_FROM_ROWS", 0)
    monkeypatch.setattr(ledger_module, "_free_cpus", lambda: 2)


@pytest.mark.parametrize("data_dir", [None, Path("/data/imgkit")])
def test_two_halves_read_at_once_equal_the_row_by_row_read(
    tmp_path: Path, data_dir: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _split_reads(monkeypatch)
    monkeypatch.setattr(ledger_module, "_ARROW_BATCH_ROWS", 7)
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(sorted(_records(), key=lambda r: (r.created_at, r.run_id)))
        arrow, rows = _both(ledger, data_dir)
        assert len(ledger_module._READERS) >= 2  # both halves had a helper of their own
        # Out of order on disk too (the reorder after the halves are joined).
        ledger.save_many(_records())
        unordered, rows_unordered = _both(ledger, data_dir)
    finally:
        ledger.close()
    pd.testing.assert_frame_equal(arrow, rows, check_exact=True)
    pd.testing.assert_frame_equal(unordered, rows_unordered, check_exact=True)


@pytest.mark.parametrize(("first", "last", "parts"), [(1, 100, 2), (1, 101, 2), (5, 9, 2), (1, 1000, 3), (1, 2, 2),
                                                      (None, None, 2), (1, 50, 1)])
def test_rowid_ranges_cover_every_rowid_once(first: int | None, last: int | None, parts: int) -> None:
    ranges = ledger_module._rowid_ranges(first, last, parts)
    assert ranges[0][0] is None and ranges[-1][1] is None  # rows added later still fall in one
    probe = range(-5, 1100)
    for rowid in probe:
        holders = [r for r in ranges if (r[0] is None or rowid > r[0]) and (r[1] is None or rowid <= r[1])]
        assert len(holders) == 1
    if first is not None and last is not None and last - first >= parts:
        assert len(ranges) == parts
        inside = [sum(1 for rowid in range(first, last + 1)
                      if (r[0] is None or rowid > r[0]) and (r[1] is None or rowid <= r[1])) for r in ranges]
        assert max(inside) - min(inside) <= 1  # even halves


def test_a_commit_between_the_halves_reads_is_never_seen_half_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each half is read in its own transaction; while another connection keeps committing
    changes to the first and the last run together, every frame shows both or neither."""
    _split_reads(monkeypatch)
    monkeypatch.setattr(ledger_module, "_ARROW_BATCH_ROWS", 16)  # slower reads: more commits land between
    base = _records()[0].replace(status="completed")
    records = [base.replace(run_id=f"r{i:05d}", created_at=1_790_000_000.0 + i, notes="0") for i in range(3000)]
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(records)
        with committing(ledger.path, "UPDATE runs SET notes = ? WHERE run_id IN ('r00000', 'r02999')",
                        lambda k: (str(k),)) as commits:
            frames = [ledger.to_dataframe() for _ in range(8)]
    finally:
        ledger.close()
    assert commits[0] > 8  # the writer kept committing while the frames were read
    for frame in frames:
        assert len(frame) == 3000
        assert frame["notes"].iloc[0] == frame["notes"].iloc[-1]


def test_one_helper_reads_both_halves_when_a_second_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _split_reads(monkeypatch)
    ledger_module._stop_reader()
    started = ledger_module._readers
    monkeypatch.setattr(ledger_module, "_readers", lambda count: started(1))  # as if a second start failed
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(_records())
        with ledger_module._no_gc():
            rows = ledger._frame(pd, None)

        def row_by_row(*args: object) -> pd.DataFrame:
            raise AssertionError("read row by row, not through the one helper")

        monkeypatch.setattr(Ledger, "_frame", row_by_row)
        arrow = ledger.to_dataframe()
        assert len(ledger_module._READERS) == 1
    finally:
        ledger.close()
    pd.testing.assert_frame_equal(arrow, rows, check_exact=True)


def test_an_interrupted_read_leaves_no_helper_out_of_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while a helper's stream is half read: the helpers are stopped, and the next
    read starts new ones and gives the whole frame."""
    import threading
    from typing import Any

    _split_reads(monkeypatch)
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(_records())
        real = ledger_module._read_part

        def interrupted(proc: Any, prefixes: dict[str, str | None]) -> object:
            if threading.current_thread() is not threading.main_thread():
                return real(proc, prefixes)  # Ctrl-C reaches the main thread only
            proc.stdout.read(200)  # part of the stream, then Ctrl-C
            raise KeyboardInterrupt

        monkeypatch.setattr(ledger_module, "_read_part", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ledger.to_dataframe()
        assert not ledger_module._READERS
        monkeypatch.setattr(ledger_module, "_read_part", real)
        arrow, rows = _both(ledger, None)
    finally:
        ledger.close()
    pd.testing.assert_frame_equal(arrow, rows, check_exact=True)
