"""The ledger touches only its own files, stands alone after close, backs up online, and reads
past a malformed cell (issue 14, items 2 to 4)."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from imgkit.cli import main as cli_main
from imgkit.errors import ConfigError
from imgkit.ledger import _MIGRATIONS, APPLICATION_ID, SCHEMA_VERSION, Ledger
from imgkit.request import RunRecord, RunStatus


def _record(i: int, **changes: object) -> RunRecord:
    base = RunRecord(run_id=f"r{i}", provider="sandbox", model="gpt-image-1", prompt=f"p{i}", size="1024x1024",
                     quality="low", n=1, status=RunStatus.COMPLETED, files=(f"images/{i}.png",), tags=("a", "b"),
                     created_at=float(i))
    return base.replace(**changes) if changes else base


def _rows(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT run_id FROM runs")}
    finally:
        conn.close()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- only imgkit's own files are touched ---------------------------------------------------


def _foreign_notes(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('keep me');")
    conn.close()


def _foreign_runs(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO runs (name) VALUES ('x');")
    conn.close()


def _foreign_runs_versioned(path: Path) -> None:
    # imgkit-looking version, but another program's table.
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE runs (run_id TEXT, other TEXT); PRAGMA user_version = 2;")
    conn.close()


def _other_application(path: Path) -> None:
    # imgkit's very tables, but marked as another program's file.
    conn = sqlite3.connect(path)
    conn.executescript(_MIGRATIONS[0] + "; PRAGMA user_version = 1; PRAGMA application_id = 1234;")
    conn.close()


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"just some text, not a database\n" * 200)


@pytest.mark.parametrize(
    "make", [_foreign_notes, _foreign_runs, _foreign_runs_versioned, _other_application, _not_sqlite]
)
def test_a_foreign_file_is_refused_and_left_byte_for_byte(tmp_path: Path, make: Callable[[Path], None]) -> None:
    folder = tmp_path / "home"
    folder.mkdir()
    path = folder / "ledger.sqlite3"
    make(path)
    before = _snapshot(folder)
    with pytest.raises(ConfigError, match="not an imgkit ledger") as caught:
        Ledger(path)
    assert str(path) in str(caught.value)
    assert _snapshot(folder) == before  # the same bytes, and no -wal/-shm left beside it


def test_a_new_ledger_is_marked(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()
    Ledger(path).close()  # and opens again


def test_an_empty_file_becomes_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.touch()
    ledger = Ledger(path)
    ledger.save(_record(1))
    assert ledger.count() == 1
    ledger.close()


@pytest.mark.parametrize("version", [1, SCHEMA_VERSION])
def test_a_ledger_from_before_the_mark_opens_and_gets_it(tmp_path: Path, version: int) -> None:
    path = tmp_path / "ledger.sqlite3"
    conn = sqlite3.connect(path)
    for statement in "".join(_MIGRATIONS[:version]).split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO runs (run_id, provider, model, prompt, size, quality, n, mode, status, created_at) "
                 "VALUES ('old', 'sandbox', 'gpt-image-1', 'p', '1024x1024', 'low', 1, 'generate', 'completed', 1)")
    conn.commit()
    assert conn.execute("PRAGMA application_id").fetchone()[0] == 0
    conn.close()
    ledger = Ledger(path)
    old = ledger.get("old")
    assert old is not None and old.prompt == "p"
    ledger.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_newer_schema_is_refused_before_wal(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError, match="newer than this imgkit"):
        Ledger(path)
    assert _snapshot(tmp_path) == before


# --- the ledger file stands alone --------------------------------------------------------------


def test_after_close_the_file_alone_holds_every_row(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    # Another kernel keeps the file open: SQLite's own checkpoint at the last close never runs.
    other = Ledger(path)
    ledger = Ledger(path)
    ledger.save_many([_record(i) for i in range(50)])
    ledger.close()
    alone = tmp_path / "copy"
    alone.mkdir()
    shutil.copy(path, alone / "ledger.sqlite3")
    assert _rows(alone / "ledger.sqlite3") == {f"r{i}" for i in range(50)}
    other.close()


def test_a_backup_opens_and_holds_every_row(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.save_many([_record(i) for i in range(30)])
    (tmp_path / "backup").mkdir()
    target = ledger.backup(tmp_path / "backup" / "copy.sqlite3")
    ledger.save(_record(99))  # the source goes on; the backup does not change
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.sqlite3"]  # one file, no -wal
    assert _rows(target) == {f"r{i}" for i in range(30)}
    copy = Ledger(target)
    assert copy.records() == ledger.records()[:30]
    copy.close()
    ledger.close()


def test_a_backup_never_overwrites(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    existing = tmp_path / "exists.sqlite3"
    existing.write_bytes(b"mine")
    with pytest.raises(ConfigError, match="exists"):
        ledger.backup(existing)
    with pytest.raises(ConfigError, match="does not exist"):
        ledger.backup(tmp_path / "missing" / "x.sqlite3")
    ledger.close()
    assert existing.read_bytes() == b"mine"


def test_the_backup_command(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "backup.sqlite3"
    assert cli_main(["ledger", "backup", str(out)]) == 1  # no ledger yet, and none is created
    assert not (data_dir / "ledger.sqlite3").exists()
    assert "no ledger" in capsys.readouterr().err
    ledger = Ledger(data_dir / "ledger.sqlite3")
    ledger.save_many([_record(i) for i in range(5)])
    assert cli_main(["ledger", "backup", str(out)]) == 0
    assert _rows(out) == {f"r{i}" for i in range(5)}
    assert "5 runs" in capsys.readouterr().err
    assert cli_main(["ledger", "backup", str(out)]) == 2  # refused: it exists
    ledger.close()


# --- tolerant reads ----------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["tags", "files", "result_urls", "providers_tried", "reference_images"])
@pytest.mark.parametrize("bad", ['["unterminated', '{"a": 1}', "42"])
@pytest.mark.parametrize("arrow", [False, True])
def test_one_malformed_cell_reads_as_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, column: str, bad: str, arrow: bool
) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    if arrow:
        ledger.ARROW_FROM_ROWS = 0  # type: ignore[misc]
    ledger.save_many([_record(i) for i in range(3)])
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    conn.execute(f"UPDATE runs SET {column} = ? WHERE run_id = 'r1'", (bad,))
    conn.commit()
    conn.close()

    with caplog.at_level(logging.WARNING, logger="imgkit"):
        records = ledger.records()
    assert [r.run_id for r in records] == ["r0", "r1", "r2"]
    assert getattr(records[1], column) == ()
    assert records[0] == _record(0) and records[2] == _record(2)
    assert any("r1" in m and column in m for m in caplog.messages)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imgkit"):
        df = ledger.to_dataframe()
    assert df["run_id"].tolist() == ["r0", "r1", "r2"]
    assert df[column].tolist()[1] == []
    assert df["tags"].tolist()[0] == ["a", "b"] and df["files"].tolist()[2] == ["images/2.png"]
    assert any("r1" in m and column in m for m in caplog.messages)
    ledger.close()


def test_at_interpreter_exit_the_file_alone_holds_every_row(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    other = Ledger(path)  # kept open here, so the exiting process is not the file's last user
    script = (
        "import sys\n"
        "from imgkit.ledger import Ledger\n"
        "from imgkit.request import RunRecord\n"
        "ledger = Ledger(sys.argv[1])\n"
        "ledger.save_many([RunRecord(run_id=f'x{i}', provider='sandbox', model='gpt-image-1', prompt='p',\n"
        "                            size='1024x1024', quality='low', n=1, created_at=float(i)) for i in range(20)])\n"
        "ledger.records()\n"  # the read connection is open too; nobody calls close()
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120)
    alone = tmp_path / "copy"
    alone.mkdir()
    shutil.copy(path, alone / "ledger.sqlite3")
    assert _rows(alone / "ledger.sqlite3") == {f"x{i}" for i in range(20)}
    other.close()
