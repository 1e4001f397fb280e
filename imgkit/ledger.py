"""The run ledger: SQLite in WAL mode, versioned schema, safe for several kernels at once.

One row per run (:class:`~imgkit.request.RunRecord`). A row is written when the run is
created, again as soon as the service has given it a task id (before ``generate`` goes on),
and on every status change, so a crash loses nothing that was acknowledged.
:meth:`Ledger.to_dataframe` reads it back as a typed pandas DataFrame.

Writes go through one writer thread per :class:`Ledger`. It takes every write queued while
it committed the previous group and commits them together, as one durable transaction
(``synchronous=FULL``: a row acknowledged is on disk and survives a power loss), so many runs
finishing at once cost one fsync, not one each, and an event loop never waits on the disk:

- :meth:`Ledger.save` queues a record and returns once its group is committed;
- :meth:`Ledger.save_nowait` queues it and returns a :class:`concurrent.futures.Future` that
  resolves then (or carries the error: a full disk, a read-only file);
- ``await`` :meth:`Ledger.asave` waits for the same from an event loop without blocking it.

The file is marked with ``PRAGMA application_id`` (:data:`APPLICATION_ID`). A non-empty
SQLite file without the mark is refused (:class:`~imgkit.errors.ConfigError`) before
anything is written to it, even before it would be switched to WAL, so pointing imgkit at
another program's database changes nothing; a ledger from before the mark opens and gets it.

A ledger in WAL mode keeps recent commits in ``ledger.sqlite3-wal`` (with
``ledger.sqlite3-shm`` beside it) until a checkpoint. Closing a :class:`Ledger` (also at
interpreter exit) checkpoints and empties the WAL, so afterwards ``ledger.sqlite3`` alone holds
every row. While imgkit runs, copy a ledger with :meth:`Ledger.backup` (``imgkit ledger
backup PATH``), never by copying the files.

A malformed JSON cell (a list column such as ``tags``) reads as empty, with a warning in the
log naming the run and the column; the other rows and columns load as usual.

Reads first wait for the writes this Ledger has queued, so a process always reads its own
writes. Costs (the budget's SQL, :meth:`Ledger.cost_sums` for reports) come from
:mod:`imgkit.costs`. Large ledgers are read into the DataFrame through Arrow, by the ADBC
SQLite driver in a helper process (see "reading through Arrow" below for why not here).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import logging
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from imgkit.costs import RULE_TESTS, RULES, CostRule, rule_for, rule_sources, sql_budget, sql_first
from imgkit.request import QUALITIES, SIZES, TERMINAL_STATUSES, BalanceSnapshot, RunRecord, RunStatus, Secret

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "APPLICATION_ID", "COLUMNS", "LEDGER_ENV", "SCHEMA_VERSION", "STATUSES", "Ledger", "LedgerBackend", "open_ledger",
]

log = logging.getLogger("imgkit")

_TUPLE_FIELDS = ("reference_images", "result_urls", "files", "thumbs", "tags", "providers_tried")
_FIELDS = [f.name for f in fields(RunRecord)]
_COLUMNS_SQL = ", ".join(_FIELDS)
#: The Arrow type each column is read as (the SQLite affinity of its field's type).
_COLUMN_TYPES: dict[str, str] = {
    f.name: "int64" if f.type in ("int", "int | None") else "float64" if "float" in str(f.type) else "string"
    for f in fields(RunRecord)
}

#: A run's UTC day as a day number (days since 1970-01-01); cheaper per row than date().
_DAY = "CAST(created_at / 86400 AS INTEGER)"

#: What the cost rules test, as the v6 report index holds them (the text of
#: :data:`imgkit.costs.RULE_TESTS` when it was made; a test holds the two equal, so rules that
#: test something else come with a migration that rebuilds the index).
REPORT_RULE_TESTS: tuple[str, ...] = (
    "credits_charged IS NULL", "task_id IS NULL", "error_code IN ('download_failed', 'result_expired')",
    "credits_reserved IS NULL",
)

# Each entry migrates the schema from version i to i + 1.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt TEXT NOT NULL,
        size TEXT NOT NULL,
        quality TEXT NOT NULL,
        n INTEGER NOT NULL,
        reference_images TEXT NOT NULL DEFAULT '[]',
        mode TEXT NOT NULL,
        task_id TEXT,
        status TEXT NOT NULL,
        progress INTEGER NOT NULL DEFAULT 0,
        error_code TEXT,
        error_message TEXT,
        est_credits REAL,
        est_usd REAL,
        est_cny REAL,
        price_sheet TEXT,
        credits_reserved REAL,
        credits_charged REAL,
        created_at REAL NOT NULL,
        submitted_at REAL,
        completed_at REAL,
        estimated_s REAL,
        result_urls TEXT NOT NULL DEFAULT '[]',
        files TEXT NOT NULL DEFAULT '[]',
        thumbs TEXT NOT NULL DEFAULT '[]',
        tags TEXT NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0,
        notes TEXT
    );
    CREATE UNIQUE INDEX runs_task_id ON runs(task_id) WHERE task_id IS NOT NULL;
    CREATE INDEX runs_created_at ON runs(created_at);
    CREATE INDEX runs_status ON runs(status);
    """,
    # v2: blind pairwise ratings (imgkit.rate). The winner's tier is stored beside the choice
    # so win rates never depend on which side a run happened to be shown on.
    """
    CREATE TABLE ratings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        prompt TEXT NOT NULL,
        left_run_id TEXT NOT NULL REFERENCES runs(run_id),
        right_run_id TEXT NOT NULL REFERENCES runs(run_id),
        left_image INTEGER NOT NULL DEFAULT 0,
        right_image INTEGER NOT NULL DEFAULT 0,
        left_quality TEXT NOT NULL,
        right_quality TEXT NOT NULL,
        choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'same')),
        winner_quality TEXT,
        tag TEXT
    );
    CREATE INDEX ratings_left ON ratings(left_run_id);
    CREATE INDEX ratings_right ON ratings(right_run_id);
    """,
    # v3: fallback routing. The other providers considered for a run and why they did not
    # serve it, as a JSON list of {"provider", "reason", "detail"?, "task_id"?}.
    """
    ALTER TABLE runs ADD COLUMN providers_tried TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX runs_provider ON runs(provider);
    """,
    # v4: cost reports summed in SQL. The image count is stored (the length of files) and one
    # index holds every column a report's sums read, in the order they are grouped, so a
    # report over a million runs reads the index in order instead of every row and a sort.
    f"""
    ALTER TABLE runs ADD COLUMN n_images INTEGER NOT NULL DEFAULT 0;
    UPDATE runs SET n_images = json_array_length(files) WHERE files <> '[]';
    CREATE INDEX runs_report ON runs({_DAY}, quality, size, status, model, provider, price_sheet,
        created_at, est_credits, est_usd, est_cny, credits_reserved, credits_charged, task_id, n_images);
    """,
    # v5: today's request fields (gpt-image-2's resolution tier, background, file format),
    # the batch a run went in, the usage the service reported, streamed previews; who ran it
    # and for which project (a team's bill); a resumer's lease on an unfinished run (never
    # written by a save, so a save keeps the lease); the account balance over time. The report
    # index gains the columns a report's cost rules and batch discount read (error_code,
    # batch_id), so its sums still read the index alone.
    f"""
    ALTER TABLE runs ADD COLUMN resolution TEXT;
    ALTER TABLE runs ADD COLUMN background TEXT;
    ALTER TABLE runs ADD COLUMN output_format TEXT;
    ALTER TABLE runs ADD COLUMN batch_id TEXT;
    ALTER TABLE runs ADD COLUMN tokens_in INTEGER;
    ALTER TABLE runs ADD COLUMN tokens_out INTEGER;
    ALTER TABLE runs ADD COLUMN partial_images INTEGER;
    ALTER TABLE runs ADD COLUMN user TEXT;
    ALTER TABLE runs ADD COLUMN project TEXT;
    ALTER TABLE runs ADD COLUMN host TEXT;
    ALTER TABLE runs ADD COLUMN data_dir TEXT;
    ALTER TABLE runs ADD COLUMN lease_owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_until REAL;
    CREATE INDEX runs_batch_id ON runs(batch_id) WHERE batch_id IS NOT NULL;
    DROP INDEX runs_report;
    CREATE INDEX runs_report ON runs({_DAY}, quality, size, status, model, provider, price_sheet,
        created_at, est_credits, est_usd, est_cny, credits_reserved, credits_charged, task_id, n_images,
        error_code, batch_id);
    CREATE TABLE balance_snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        taken_at REAL NOT NULL,
        provider TEXT NOT NULL,
        remaining_credits REAL,
        key_remaining REAL,
        account_remaining REAL,
        binding TEXT,
        source TEXT,
        user TEXT
    );
    CREATE INDEX balance_snapshots_taken_at ON balance_snapshots(provider, taken_at);
    """,
    # v6: the report index also orders by what the cost rules test (imgkit.costs.RULE_TESTS),
    # so a report groups runs by their rule in the same pass and applies each rule once per
    # group instead of once per run (a report over a million runs in about half the time).
    f"""
    DROP INDEX runs_report;
    CREATE INDEX runs_report ON runs({_DAY}, quality, size, status, model, provider, price_sheet,
        {", ".join(REPORT_RULE_TESTS)},
        created_at, est_credits, est_usd, est_cny, credits_reserved, credits_charged, task_id, n_images,
        error_code, batch_id);
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)

#: The ``PRAGMA application_id`` that marks a SQLite file as an imgkit ledger: the bytes of
#: ``imgk`` (0x696D676B). A non-empty file without it is someone else's and is never written.
APPLICATION_ID = 0x696D676B
#: The tables a ledger from before :data:`APPLICATION_ID` may hold (such a file still opens
#: and is marked).
_OWN_TABLES = frozenset({"runs", "ratings", "sqlite_sequence", "balance_snapshots"})

#: The DataFrame's columns, in order.
COLUMNS: tuple[str, ...] = (
    "run_id",
    "created_at",
    "submitted_at",
    "completed_at",
    "latency_s",
    "estimated_s",
    "status",
    "provider",
    "providers_tried",
    "model",
    "mode",
    "prompt",
    "size",
    "quality",
    "n",
    "n_images",
    "est_credits",
    "est_usd",
    "est_cny",
    "price_sheet",
    "credits_reserved",
    "credits_charged",
    "task_id",
    "progress",
    "error_code",
    "error_message",
    "reference_images",
    "result_urls",
    "files",
    "thumbs",
    "tags",
    "attempts",
    "notes",
    "resolution",
    "background",
    "output_format",
    "batch_id",
    "tokens_in",
    "tokens_out",
    "partial_images",
    "user",
    "project",
    "host",
    "data_dir",
)
#: Columns of schema v5 and their DataFrame types.
_CATEGORY_EXTRAS = ("resolution", "background", "output_format", "user", "project")
_TEXT_EXTRAS = ("batch_id", "host", "data_dir")
_INT_EXTRAS = ("tokens_in", "tokens_out", "partial_images")

#: The run statuses as stored, in the order of :class:`~imgkit.request.RunStatus` (the
#: DataFrame's ``status`` categories).
STATUSES: tuple[str, ...] = tuple(status.value for status in RunStatus)


def _dump(values: Sequence[str]) -> str:
    return json.dumps(list(values)) if values else "[]"


def _load(text: str | None) -> tuple[Any, ...]:
    if not text or text == "[]":
        return ()
    value = json.loads(text)
    if type(value) is not list:
        raise json.JSONDecodeError("not a JSON list", text, 0)
    return tuple(value)


def _load_cell(text: str | None, run_id: object, column: str) -> tuple[Any, ...]:
    """One JSON list cell; a malformed one reads as empty (missing), with a warning that
    names the run and the column, so one bad cell never hides the other rows."""
    try:
        return _load(text)
    except ValueError as exc:
        log.warning("ledger run %s: column %s is not a JSON list (%s); reading it as empty", run_id, column, exc)
        return ()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a bulk read creates millions of objects.

    Every few thousand new containers (tuples, lists) trigger a collection that walks the
    ever larger heap: a third of :meth:`Ledger.to_dataframe` at 100,000 runs. Nothing made
    here is cyclic garbage; the collector resumes (if it was on) when the block ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_column(
    texts: Sequence[str | None], run_ids: Callable[[], Sequence[object]] | None = None, column: str = ""
) -> list[list[Any]]:
    """Decode a column of JSON lists with a single ``json.loads``.

    A call per cell (600,000 at 100,000 runs) was a large share of
    :meth:`Ledger.to_dataframe` (benchmarks/README.md, scenario 4). If any cell is not a JSON
    list, the joined text does not parse or does not give one list per cell, and every cell
    is decoded on its own. A malformed cell raises :class:`json.JSONDecodeError`, or, when
    ``run_ids`` is given (the cells' runs, asked for only then), reads as empty with a warning
    naming its run and ``column``.
    """
    joined = ",".join(text or "[]" for text in texts)
    try:
        decoded = json.loads(f"[{joined}]")
    except ValueError:
        decoded = None
    if not isinstance(decoded, list) or len(decoded) != len(texts) or not all(type(d) is list for d in decoded):
        if run_ids is None:
            return [list(_load(text)) for text in texts]
        ids = run_ids()
        return [list(_load_cell(text, run_id, column)) for text, run_id in zip(texts, ids, strict=True)]
    return decoded


def _enable_wal(conn: sqlite3.Connection, *, patience: float = 60.0) -> None:
    """Put the file in WAL mode, waiting for other processes doing the same.

    Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
    locked" at once, without its busy handler, when another process holds one: four kernels
    opening a fresh ledger together would otherwise fail. Once the file is in WAL mode (it
    stays so), reading the mode takes no lock.
    """
    deadline = time.monotonic() + patience
    delay = 0.01
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _check_owner(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse ``path`` unless it is empty, an imgkit ledger, or one from before
    :data:`APPLICATION_ID` (imgkit's tables only, a schema this imgkit knows).

    Only reads: it runs before the file is switched to WAL or migrated, so a file that is
    not imgkit's is left exactly as it was.
    """
    from imgkit.errors import ConfigError

    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        objects = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        run_columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    except sqlite3.DatabaseError as exc:
        if "not a database" not in str(exc) and "malformed" not in str(exc):
            raise
        raise ConfigError(
            f"{path} is not an imgkit ledger (it is not a SQLite database, or it is damaged: {exc}); "
            f"point IMGKIT_HOME at another folder, or restore the ledger from a backup"
        ) from exc
    if app_id != APPLICATION_ID:
        empty = objects == 0 and version == 0 and app_id == 0
        earlier = (
            app_id == 0 and "runs" in tables and tables <= _OWN_TABLES
            and {"run_id", "task_id", "status"} <= run_columns and version > 0
        )
        if not (empty or earlier):
            raise ConfigError(
                f"{path} is not an imgkit ledger (a SQLite database of another program: application_id "
                f"{app_id}, tables {', '.join(sorted(tables)) or 'none'}); imgkit left it untouched. "
                f"Point IMGKIT_HOME at another folder"
            )
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has ledger schema {version}, newer than this imgkit ({SCHEMA_VERSION}); upgrade imgkit"
        )


def _connect(path: Path, *, check: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 60000")
    if check:
        try:
            _check_owner(conn, path)
        except BaseException:
            conn.close()
            raise
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # BEGIN IMMEDIATE takes the write lock up front, so two kernels wait for each other
    # (busy_timeout) instead of failing half-way through a transaction.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (disk full) may already have rolled back.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# --- reading through Arrow -------------------------------------------------------------------
#
# Python's sqlite3 builds a Python object per cell: 3 million at 100,000 runs, most of
# imgkit.runs() (benchmarks/README.md, scenario 4). The ADBC SQLite driver reads the same
# rows into Arrow columns in C, but it carries its own copy of SQLite, and two copies must
# never open one file in one process: POSIX locks belong to the process, so each copy takes
# the other's locks for its own; a second copy decides it is the file's first user and
# resets the WAL index under the first one's writer (sqlite.org/howtocorrupt.html, 2.2.1).
# So the driver runs in helper processes of their own, started on the first read and kept
# until this process ends (each exits when its stdin closes), and each sends its share of
# the rows back as an Arrow IPC stream over a pipe, batch by batch as it reads them: this
# process turns each batch's list columns into Python lists while the helpers read on. A
# large ledger is read in two halves of its rowids by two helpers at once, on two cores,
# and the halves are kept only when no commit came between their reads (one snapshot).

_READER_SCRIPT = """
import json, sys, urllib.parse
import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa
out = sys.stdout.buffer
for line in sys.stdin:
    ask = json.loads(line)
    try:
        conn = adbc.connect("file:" + urllib.parse.quote(ask["path"]) + "?mode=ro", autocommit=True)
        cursor = conn.cursor()
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(ask["batch"])})
        cursor.execute(ask["sql"])
        batches = cursor.fetch_record_batch()
    except Exception as exc:
        out.write(b"E" + json.dumps(type(exc).__name__ + ": " + str(exc)).encode() + b"\\n")
        out.flush()
        continue
    try:
        out.write(b"A")
        writer = pa.ipc.new_stream(out, batches.schema)
        for batch in batches:
            writer.write_batch(batch)
            out.flush()
        writer.close()
        out.flush()
    finally:
        cursor.close()
        conn.close()
"""

_READER_LOCK = threading.Lock()
#: The helper processes this process started (Popen objects), and the pid that started them.
_READERS: list[Any] = []
_READERS_PID: list[int] = []

#: From this many runs on, two helpers read a half each (where two CPUs are free to this
#: process); below, one reads them all.
_SPLIT_FROM_ROWS = 40_000


def _readers(count: int) -> list[Any]:
    """``count`` running helper processes (started if need be); fewer, maybe none, when no
    more can start here."""
    import os
    import subprocess
    import sys

    if not _READERS_PID or _READERS_PID[0] != os.getpid():  # none yet, or a forked child's (not ours)
        _READERS.clear()
        _READERS_PID[:] = [os.getpid()]
    if any(proc.poll() is not None for proc in _READERS):
        _stop_reader()  # one ended: start afresh
        _READERS_PID[:] = [os.getpid()]
    while len(_READERS) < count:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _READER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:  # pragma: no cover - no interpreter to start
            log.debug("cannot start the ledger's Arrow reader: %s", exc)
            break
        _READERS.append(proc)
    return _READERS[:count]


def _stop_reader() -> None:
    """Stop every helper (a lost or half-read stream leaves them in an unknown state)."""
    procs = list(_READERS)
    _READERS.clear()
    for proc in procs:
        for pipe in (proc.stdin, proc.stdout):
            with suppress(OSError):
                pipe.close()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except Exception:
            proc.kill()
            proc.wait()


def _stop_reader_at_exit() -> None:
    import os

    if _READERS_PID and _READERS_PID[0] == os.getpid():
        _stop_reader()


atexit.register(_stop_reader_at_exit)


def _free_cpus() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _reader_count(rows: int) -> int:
    """How many helpers read a ledger of ``rows`` runs: two for a large one where two CPUs
    are free (this process makes the lists meanwhile), else one."""
    return 2 if rows >= _SPLIT_FROM_ROWS and _free_cpus() >= 2 else 1


def _rowid_ranges(first: int | None, last: int | None, parts: int) -> list[tuple[int | None, int | None]]:
    """``parts`` ranges of rowids (lowest excluded, highest included; None: unbounded) that
    split ``first``..``last`` evenly and together cover every rowid."""
    if parts <= 1 or first is None or last is None or last - first < parts:
        return [(None, None)]
    cuts = [first - 1 + (last - first + 1) * k // parts for k in range(1, parts)]
    bounds: list[int | None] = [None, *cuts, None]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]


# The driver infers each column's type from its first rows; a first row of the right types
# (dropped after the read) keeps an all-NULL start from being typed as integers.
_TEMPLATE = {"string": "''", "int64": "0", "float64": "0.5"}


#: Rows per batch of the Arrow helper's stream (each batch's lists are made while the helper
#: reads the next).
_ARROW_BATCH_ROWS = 8192
#: The JSON list columns of plain texts, made into Python lists batch by batch as they arrive
#: (``providers_tried``, a list of objects, is decoded batch by batch too).
_LIST_COLUMNS = ("files", "thumbs", "reference_images", "result_urls", "tags")


@dataclass(slots=True)
class _ArrowRuns:
    """Every run as an Arrow table (oldest first), and its list columns already made into
    Python lists (name -> (lists, lengths)) when they were made batch by batch."""

    table: Any
    lists: dict[str, tuple[list[list[Any]], Any]] | None


class _Refused(Exception):
    """The helper could not run the query (its stream is still in step)."""


@dataclass(slots=True)
class _Part:
    """One helper's share of the runs: its batches (the typing row first) and its list
    columns made as they came."""

    batches: list[Any]
    made: dict[str, tuple[list[list[Any]], list[Any]]]


def _read_part(proc: Any, prefixes: dict[str, str | None]) -> _Part:
    """Read one helper's answer to its end, making each batch's lists as it arrives."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = proc.stdout.read(1)
    if kind == b"E":
        raise _Refused(proc.stdout.readline().strip().decode(errors="replace"))
    if kind != b"A":
        raise OSError("the Arrow reader ended")
    part = _Part([], {name: ([], []) for name in (*_LIST_COLUMNS, "providers_tried")})
    for batch in pa.ipc.open_stream(proc.stdout):  # read to its end, used or not
        first = not part.batches
        part.batches.append(batch)
        if first:
            # The typing row comes first (checked again below); its lists are not runs'.
            batch = batch.slice(1)
        if not batch.num_rows:
            continue
        piece = pa.Table.from_batches([batch])
        for name in _LIST_COLUMNS:
            items, lengths = _list_column(pa, pc, piece, name, prefixes[name])
            part.made[name][0].extend(items)
            part.made[name][1].append(lengths)
        part.made["providers_tried"][0].extend(_tried_column(pc, piece))
    return part


def _tried_column(pc: Any, table: Any) -> list[list[Any]]:
    """``providers_tried`` of an Arrow table of runs as Python lists: empty but for runs
    that failed over, so only those cells are decoded."""
    column = table.column("providers_tried")
    if pc.all(pc.equal(pc.fill_null(column, "[]"), "[]")).as_py() is not False:
        return [[] for _ in range(table.num_rows)]
    return _load_column(column.to_pylist(), table.column("run_id").to_pylist, "providers_tried")


def _arrow_read(
    path: Path, data_dir: Path | None = None, *, ranges: Sequence[tuple[int | None, int | None]] = ((None, None),)
) -> _ArrowRuns | None:
    """Every run through the Arrow helpers, one per range of rowids in ``ranges`` (lowest
    excluded, highest included, None unbounded; together they must cover every rowid), or
    None when the reader is not installed, fails, or a column's values do not fit its
    declared type. ``data_dir`` prefixes the file lists, as :meth:`Ledger.to_dataframe`
    gives them. Several ranges are read at once, each in its own read transaction: the
    caller checks that no commit came between them."""
    try:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:  # pragma: no cover - both are dependencies; the sqlite3 path stays correct
        return None
    template = ", ".join(f"{_TEMPLATE[_COLUMN_TYPES[name]]} AS {name}" for name in _FIELDS)
    select = f"SELECT 0 AS imgkit_template, {template} UNION ALL SELECT 1, {', '.join(_FIELDS)} FROM runs"

    def ask(low: int | None, high: int | None) -> bytes:
        where = [f"rowid > {int(low)}"] if low is not None else []
        where += [f"rowid <= {int(high)}"] if high is not None else []
        sql = f"{select} WHERE {' AND '.join(where)}" if where else select
        return (json.dumps({"path": str(path.resolve()), "sql": sql, "batch": _ARROW_BATCH_ROWS}) + "\n").encode()

    root = None if data_dir is None else f"{data_dir}/"
    prefixes = {name: root if name in ("files", "thumbs") else None for name in _LIST_COLUMNS}
    with _READER_LOCK:
        procs = _readers(len(ranges))
        if not procs:
            return None
        if len(procs) < len(ranges):  # no second helper could start: one reads them all
            procs, ranges = procs[:1], [(None, None)]
        try:
            for proc, (low, high) in zip(procs, ranges, strict=True):
                proc.stdin.write(ask(low, high))
                proc.stdin.flush()
            outcomes = _read_parts(procs, prefixes)
        except OSError as exc:
            log.debug("Arrow reader of %s lost (%s); reading row by row", path, exc)
            _stop_reader()
            return None
        except BaseException:
            _stop_reader()  # interrupted mid-stream (Ctrl-C): the helpers are out of step
            raise
        lost = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, _Refused)]
        if lost:
            log.debug("Arrow reader of %s lost (%s); reading row by row", path, lost[0])
            _stop_reader()
            return None
        refused = [o for o in outcomes if isinstance(o, _Refused)]
        if refused:
            log.debug("Arrow read of %s failed (%s); reading row by row", path, refused[0])
            return None
    parts = [o for o in outcomes if isinstance(o, _Part)]
    for part in parts:
        marks = pa.Table.from_batches(part.batches).column("imgkit_template") if part.batches else None
        if marks is None or marks[0].as_py() != 0 or pc.sum(marks).as_py() != len(marks) - 1:
            return None  # the typing row did not come first: let the row-by-row path read it
    tables = [pa.Table.from_batches(part.batches).slice(1) for part in parts]
    try:
        table = pa.concat_tables(tables).drop_columns(["imgkit_template"])
    except pa.ArrowInvalid:
        return None  # the parts typed a column differently: let the row-by-row path read it
    expected = {name: getattr(pa, _COLUMN_TYPES[name])() for name in _FIELDS}
    if any(table.schema.field(name).type != expected[name] for name in _FIELDS):
        return None
    lists = {}
    for name in parts[0].made:
        items = parts[0].made[name][0]
        for part in parts[1:]:
            items.extend(part.made[name][0])
        lengths = [n for part in parts for n in part.made[name][1]]
        lists[name] = (items, np.concatenate([np.zeros(0, dtype="int64"), *lengths]))
    # Oldest first, as the sqlite3 path orders them. Rows are written in that order as a
    # rule, so the (copying) reorder is usually skipped, and with it the lists' remaking.
    order = pc.sort_indices(table, sort_keys=[("created_at", "ascending"), ("run_id", "ascending")])
    if not np.array_equal(order.to_numpy(), np.arange(table.num_rows)):
        return _ArrowRuns(table.take(order), None)
    return _ArrowRuns(table, lists)


def _read_parts(procs: Sequence[Any], prefixes: dict[str, str | None]) -> list[_Part | BaseException]:
    """Each helper's answer, or what went wrong with it; all read to their ends at once (a
    helper whose pipe is not drained would wait)."""
    outcomes: list[_Part | BaseException] = [OSError("not read")] * len(procs)

    def read(k: int) -> None:
        try:
            outcomes[k] = _read_part(procs[k], prefixes)
        except _Refused as exc:
            outcomes[k] = exc
        except Exception as exc:  # the pipe or the stream (pyarrow's errors): this helper is lost
            outcomes[k] = OSError(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=read, args=(k,), name=f"imgkit-arrow-{k}", daemon=True)
               for k in range(1, len(procs))]
    for thread in threads:
        thread.start()
    read(0)
    for thread in threads:
        thread.join()
    return outcomes


def _simple_lists(pa: Any, pc: Any, column: Any) -> Any:
    """A column of JSON lists of plain texts, as ``json.dumps`` writes them (``["a", "b"]``,
    no escapes), split into an Arrow list column without a JSON parser; None when any cell
    is in another form (the caller then parses JSON).

    A cell is ``[]``, or ``["`` + items joined by ``", "`` + ``"]``; when no item holds a
    ``"`` or a backslash (an escape), splitting on the separator gives exactly its items.
    """
    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    text = pc.fill_null(column, "[]")
    empty = pc.equal(text, "[]")
    shaped = pc.and_(
        pc.and_(pc.starts_with(text, '["'), pc.ends_with(text, '"]')),
        pc.greater_equal(pc.binary_length(text), 4),
    )
    if not pc.all(pc.or_(empty, shaped)).as_py():
        return None
    inner = pc.utf8_slice_codeunits(pc.if_else(empty, pa.scalar(None, pa.string()), text), 2, -2)
    parts = pc.split_pattern(inner, '", "')
    values = parts.values
    if len(values):
        # The items' bytes, end to end: a byte search is far quicker than a string kernel.
        _, offset_buffer, data = values.buffers()
        first = values.offset
        bounds = memoryview(offset_buffer).cast("i")  # a string array's int32 offsets
        items = data.to_pybytes()[bounds[first] : bounds[first + len(values)]] if data is not None else b""
        if b'"' in items or b"\\" in items:
            return None
    # Empty cells are null lists here; rebuilt from the offsets alone they are empty lists.
    return pa.ListArray.from_arrays(parts.offsets, values)


def _list_column(pa: Any, pc: Any, table: Any, name: str, prefix: str | None = None) -> tuple[list[list[Any]], Any]:
    """The JSON list column ``name`` of ``table`` as Python lists (``prefix`` prepended to
    each item), and the lists' lengths as a numpy array."""
    import numpy as np

    column = table.column(name)
    split = _simple_lists(pa, pc, column)
    if split is None:
        lists = _load_column(column.to_pylist(), table.column("run_id").to_pylist, name)
        if prefix is not None:
            lists = [[prefix + p for p in items] if items else [] for items in lists]
        return lists, np.fromiter((len(x) for x in lists), dtype="int64", count=len(lists))
    if prefix is not None:
        values = pc.binary_join_element_wise(prefix, split.values, "")
        split = pa.ListArray.from_arrays(split.offsets, values)
    lengths = pc.list_value_length(split).to_numpy(zero_copy_only=False)
    return split.to_pylist(), lengths


def _quality_categories(values: Iterable[Any]) -> list[str]:
    """low < medium < high, then any other tier the runs have (``auto``: gpt-image-2-beta's
    only one), so no run's quality is read as missing."""
    return [*QUALITIES, *sorted({str(v) for v in values if v is not None} - set(QUALITIES))]


def _arrow_frame(
    pd: Any, table: Any, data_dir: Path | None, lists: dict[str, tuple[list[list[Any]], Any]] | None = None
) -> pd.DataFrame:
    """The typed DataFrame of :meth:`Ledger.to_dataframe` from an Arrow table of runs (and
    its list columns as Python lists with their lengths, when made already, ``files`` and
    ``thumbs`` under ``data_dir``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def floats(name: str) -> Any:
        return pd.Series(table.column(name).to_numpy(zero_copy_only=False), dtype="float64")

    def ints(name: str) -> Any:
        column = table.column(name)
        values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype("int64")
        mask = column.is_null().to_numpy(zero_copy_only=False)
        return pd.Series(pd.arrays.IntegerArray(values, mask))

    string = pd.StringDtype()

    def texts(name: str) -> Any:
        column = table.column(name)
        if string.storage == "pyarrow":  # the same array, no Python strings on the way
            return pd.Series(pd.arrays.ArrowStringArray(column.combine_chunks()), dtype=string)
        return pd.Series(column.to_pylist(), dtype=string)

    def categorical(name: str, categories: Sequence[str] | None = None, *, ordered: bool = False) -> Any:
        column = table.column(name)
        if categories is None:
            unique = pc.unique(column).drop_null().to_pylist()
            categories = sorted(unique)
        codes = pc.fill_null(pc.index_in(column, value_set=pa.array(list(categories), pa.string())), -1)
        return pd.Categorical.from_codes(
            codes.to_numpy(zero_copy_only=False).astype("int64"), categories=list(categories), ordered=ordered
        )

    frame: dict[str, Any] = {}
    for name in ("created_at", "submitted_at", "completed_at"):
        frame[name] = pd.to_datetime(floats(name), unit="s", utc=True).dt.floor("s")
    frame["latency_s"] = floats("completed_at") - floats("submitted_at")
    frame["estimated_s"] = floats("estimated_s")
    frame["status"] = categorical("status", STATUSES)
    for name in ("provider", "model", "mode", "price_sheet"):
        frame[name] = pd.Series(categorical(name))
    frame["prompt"] = texts("prompt")
    sizes = pc.unique(table.column("size")).drop_null().to_pylist()
    size_cats = list(SIZES.values()) + sorted(set(sizes) - set(SIZES.values()))
    frame["size"] = categorical("size", size_cats)
    qualities = pc.unique(table.column("quality")).drop_null().to_pylist()
    frame["quality"] = categorical("quality", _quality_categories(qualities), ordered=True)
    frame["n"] = ints("n")
    root = None if data_dir is None else f"{data_dir}/"

    def listed(name: str, prefix: str | None = None) -> tuple[list[list[Any]], Any]:
        return lists[name] if lists is not None else _list_column(pa, pc, table, name, prefix)

    frame["files"], counts = listed("files", root)
    frame["thumbs"], _ = listed("thumbs", root)
    frame["n_images"] = pd.Series(pd.arrays.IntegerArray(counts.astype("int64"), np.zeros(len(counts), dtype=bool)))
    for name in ("est_credits", "est_usd", "est_cny", "credits_reserved", "credits_charged"):
        frame[name] = floats(name)
    for name in ("task_id", "error_code", "error_message", "notes"):
        frame[name] = texts(name)
    frame["progress"] = ints("progress")
    frame["attempts"] = ints("attempts")
    for name in ("reference_images", "result_urls", "tags"):
        frame[name], _ = listed(name)
    frame["providers_tried"] = lists["providers_tried"][0] if lists is not None else _tried_column(pc, table)
    for name in _CATEGORY_EXTRAS:
        frame[name] = pd.Series(categorical(name))
    for name in _TEXT_EXTRAS:
        frame[name] = texts(name)
    for name in _INT_EXTRAS:
        frame[name] = ints(name)
    frame["run_id"] = texts("run_id")
    return pd.DataFrame({name: frame[name] for name in COLUMNS})


def _checkpoint_and_close(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the ledger file and empty it, then close: after a normal close,
    ``ledger.sqlite3`` alone holds every row.

    Another process still reading or writing the file can keep the checkpoint from finishing;
    it is then left to that process (whichever closes last), after a short wait rather than
    the minute a write would wait.
    """
    try:
        conn.execute("PRAGMA busy_timeout = 2000")
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            log.debug("ledger checkpoint left to another connection (the file is in use)")
    except sqlite3.Error as exc:
        log.debug("ledger checkpoint at close failed: %s", exc)
    finally:
        conn.close()


#: A queued write: runs on the writer's connection inside a transaction, returns its result.
_Job = Callable[[sqlite3.Connection], Any]


class _Writer:
    """The one thread that writes a ledger file for a :class:`Ledger`.

    It commits every job queued while it was busy as one transaction, and resolves each job's
    future when that transaction is durable. If the group fails, each of its jobs is retried
    in a transaction of its own, so an error reaches only the caller whose write caused it (a
    full disk reaches them all). The thread starts with the first write and ends on
    :meth:`close`, which drains the queue first.
    """

    #: The most jobs one transaction takes; a long queue is committed in several groups.
    GROUP_LIMIT = 1000

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self._conn = conn
        self._name = name
        self._queue: queue.SimpleQueue[tuple[_Job, Future[Any]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last: Future[Any] | None = None
        self._closed = False

    def submit(self, job: _Job) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError(f"{self._name} is closed")
            # Not started yet, or gone: a forked child has the object but not the thread.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"imgkit-ledger-writer {self._name}",
                                                daemon=True)
                self._thread.start()
            self._queue.put((job, future))
            self._last = future
        return future

    def wait_idle(self) -> None:
        """Wait until every job queued so far is committed (or has failed)."""
        last = self._last
        if last is not None and not last.done():
            # Errors went to the job's own caller; a reader only waits for the queue.
            wait([last])

    def close(self) -> None:
        """Commit what is queued, stop the thread, checkpoint and close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is None:
            _checkpoint_and_close(self._conn)
        elif thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                item = self._queue.get()
                if item is None:
                    break
                group = [item]
                while len(group) < self.GROUP_LIMIT:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    group.append(item)
                self._commit(group)
        finally:
            _checkpoint_and_close(self._conn)

    def _commit(self, group: list[tuple[_Job, Future[Any]]]) -> None:
        live = [(job, future) for job, future in group if future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            with _transaction(self._conn) as conn:
                results = [job(conn) for job, _ in live]
        except Exception as exc:
            if len(live) == 1:
                live[0][1].set_exception(exc)
                return
            log.debug("ledger group of %d writes failed (%s); committing them one by one", len(live), exc)
            for job, future in live:
                try:
                    with _transaction(self._conn) as conn:
                        result = job(conn)
                except Exception as one:
                    future.set_exception(one)
                else:
                    future.set_result(result)
            return
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)


@dataclass(frozen=True, slots=True)
class CostDialect:
    """How one backend's SQL says what :func:`cost_sums_query` needs; the queries are
    otherwise the same on SQLite and PostgreSQL.

    Attributes:
        mark: the parameter placeholder (``?`` or ``%s``).
        day: a run's UTC day number from ``created_at`` (the report index's first key).
        tag_source, tag_value: a run's tags as rows (a table function) and the column of
            one tag in them.
        tag_join: the join that gives each run one row per tag (``tag_each.value``).
        list_param: one parameter holds a whole list (``= ANY(%s)``); else one mark each
            (``IN (?, ?)``).
        typed_sums: sums need a cast and a CASE for flags (PostgreSQL); else SQLite's
            ``TOTAL()`` over its 0/1 comparisons.
    """

    mark: str
    day: str
    tag_source: str
    tag_value: str
    tag_join: str
    list_param: bool
    typed_sums: bool

    def total(self, expr: str) -> str:
        """A float sum of ``expr``, 0.0 over no values (SQLite's ``TOTAL()``)."""
        return f"COALESCE(SUM(({expr})::DOUBLE PRECISION), 0.0)" if self.typed_sums else f"TOTAL({expr})"

    def flag(self, cond: str) -> str:
        """1.0 where ``cond`` holds, else 0.0."""
        return f"CASE WHEN {cond} THEN 1.0 ELSE 0.0 END" if self.typed_sums else cond

    def one_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: the condition and its parameters."""
        if self.list_param:
            return f"{column} = ANY({self.mark})", [list(values)]
        return f"{column} IN ({', '.join(self.mark for _ in values)})", list(values)


#: SQLite's way of saying it (see :class:`CostDialect`).
SQLITE_COSTS = CostDialect(
    mark="?", day=_DAY, tag_source="json_each(runs.tags)", tag_value="value",
    tag_join=" LEFT JOIN json_each(runs.tags) AS tag_each", list_param=False, typed_sums=False,
)


@dataclass(frozen=True, slots=True)
class CostQuery:
    """One query of :meth:`Ledger.cost_sums` (built by :func:`cost_sums_query`) and how its
    rows become the sums.

    The query groups the runs by the report's keys, their status and the conditions the cost
    rules test (:data:`imgkit.costs.RULE_TESTS`), and sums plain columns: no cost rule is
    evaluated per run. One rule applies to each group whole (:func:`imgkit.costs.rule_for`),
    so :meth:`sums` picks each group's amounts by its rule and adds the groups of a key up.

    Attributes:
        sql: the query.
        params: its parameters.
        width: how many key columns lead each row (the report's keys and extra keys).
        status_at: the column of the status.
        amounts: what the sums after the first seven are, in order: ``(kind, columns)`` with
            kind ``total``, ``positive`` (runs with an amount above 0) or ``at estimate``
            (credits, ``usd``, ``cny``) of a rule's columns (:func:`imgkit.costs.rule_sources`);
            the batch sums follow.
    """

    sql: str
    params: list[Any]
    width: int
    status_at: int
    amounts: tuple[tuple[str, tuple[str, ...]], ...]

    #: The bases whose runs count as ``reserved_runs``: rules that count something other than
    #: a reported charge or the estimate (what the service held for the run).
    _HELD: ClassVar[frozenset[str]] = frozenset(
        rule.basis for rule in RULES if rule.spent and rule.basis not in ("charged", "estimate")
    )

    def sums(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """The rows of :meth:`Ledger.cost_sums` from the query's rows: the keys, then
        :attr:`Ledger.COST_SUMS`, one row per key in the order the keys came."""
        tests_from = self.width + (self.status_at == self.width)
        sums_from = tests_from + len(RULE_TESTS)
        out: dict[tuple[Any, ...], list[Any]] = {}
        rules: dict[tuple[Any, ...], CostRule] = {}
        for row in rows:
            key = tuple(row[: self.width])
            status = row[self.status_at]
            tested = (status, *row[tests_from:sums_from])
            rule = rules.get(tested)
            if rule is None:
                rule = rules[tested] = rule_for(status, tested[1:])
            count, images, est_credits, est_usd, est_cny, first, last, *rest = row[sums_from:]
            amount = dict(zip(self.amounts, rest, strict=False))
            batch_runs, batch_images = rest[len(self.amounts):]
            spent = amount.get(("total", rule.spent), 0.0)
            reported, estimate = rule is RULES[0], rule.basis == "estimate"
            add = (
                images, count * (status == "completed"), count * (status == "failed"),
                count * (status == "unknown"), est_credits, est_usd, est_cny, spent,
                amount.get(("total", rule.may_have_cost), 0.0),
                amount.get(("at estimate", rule.may_have_cost), 0.0),
                amount.get(("at estimate usd", rule.may_have_cost), 0.0),
                amount.get(("at estimate cny", rule.may_have_cost), 0.0),
                count * bool(rule.may_have_cost), count * estimate, amount.get(("positive", rule.spent), 0.0),
            )
            tail = (spent * reported, est_credits * estimate, count * reported, count * (rule.basis in self._HELD),
                    batch_runs, batch_images)
            sums = out.get(key)
            if sums is None:
                out[key] = [count, *map(float, add), first, last, *map(float, tail)]
                continue
            sums[0] += count
            for i, value in enumerate(add, start=1):
                sums[i] += value
            sums[16], sums[17] = min(sums[16], first), max(sums[17], last)
            for i, value in enumerate(tail, start=18):
                sums[i] += value
        return [(*key, *sums) for key, sums in out.items()]


def cost_sums_query(
    dialect: CostDialect,
    *,
    by_tag: bool,
    since: float | None,
    until: float | None,
    until_inclusive: bool,
    tags: Sequence[str],
    qualities: Sequence[str],
    extra_keys: Sequence[str],
    models: Sequence[str],
    users: Sequence[str],
    projects: Sequence[str],
    days: tuple[int | None, int | None] = (None, None),
) -> CostQuery:
    """The query of :meth:`Ledger.cost_sums` in ``dialect`` (both backends run it and turn
    its rows into sums with :meth:`CostQuery.sums`); ``days`` bounds the runs' UTC day
    numbers besides (the first included, the second not; None: unbounded), a range of the
    report index's first key."""
    unknown_keys = [k for k in extra_keys if k not in Ledger.COST_EXTRA_KEYS]
    if unknown_keys:
        raise ValueError(f"extra_keys: {unknown_keys[0]!r} is not one of {', '.join(Ledger.COST_EXTRA_KEYS)}")
    mark = dialect.mark
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append(f"{dialect.day} >= {mark} AND created_at >= {mark}")
        params += [int(since // 86400), since]
    if until is not None:
        where.append(f"{dialect.day} <= {mark} AND created_at {'<=' if until_inclusive else '<'} {mark}")
        params += [int(until // 86400), until]
    for bound, compare in zip(days, (">=", "<"), strict=True):
        if bound is not None:
            where.append(f"{dialect.day} {compare} {mark}")
            params.append(int(bound))
    if tags:
        condition, values_params = dialect.one_of(dialect.tag_value, tags)
        where.append(f"EXISTS (SELECT 1 FROM {dialect.tag_source} WHERE {condition})")
        params += values_params
    for column, values in (("quality", qualities), ("model", models), ('runs."user"', users), ("project", projects)):
        if values:
            condition, values_params = dialect.one_of(column, values)
            where.append(condition)
            params += values_params
    keys = ["tag_each.value", "price_sheet"] if by_tag else [dialect.day, *Ledger.COST_KEYS[1:]]
    keys += [f'runs."{key}"' for key in extra_keys]
    # Without extra keys these are the report index's keys, in its order: one pass over the
    # index, no sort.
    status_at = keys.index("status") if "status" in keys else len(keys)
    group = [*keys, *([] if "status" in keys else ["status"]), *RULE_TESTS]
    total, flag = dialect.total, dialect.flag
    sums = [
        "COUNT(*)", total("n_images"), total("est_credits"), total("est_usd"), total("est_cny"),
        "MIN(created_at)", "MAX(created_at)",
    ]
    # Each rule's amounts, for every list of columns a rule reads one from; the at-estimate
    # sums (a may-have-cost amount equal to the stored estimate) only for may-have-cost ones.
    amounts: list[tuple[str, tuple[str, ...]]] = []
    for names in rule_sources():
        value = sql_first(names)
        amounts += [("total", names), ("positive", names)]
        sums += [total(value), total(flag(f"{value} > 0"))]
        if any(rule.may_have_cost == names for rule in RULES):
            at_estimate = f"{value} > 0 AND {value} = est_credits"
            amounts += [("at estimate", names), ("at estimate usd", names), ("at estimate cny", names)]
            sums += [total(f"CASE WHEN {at_estimate} THEN {column} END") for column in (value, "est_usd", "est_cny")]
    sums += [total(flag("batch_id IS NOT NULL")), total("CASE WHEN batch_id IS NOT NULL THEN n_images END")]
    source = f"runs{dialect.tag_join if by_tag else ''}" + (f" WHERE {' AND '.join(where)}" if where else "")
    grouped = ", ".join(group)
    sql = f"SELECT {grouped}, {', '.join(sums)} FROM {source} GROUP BY {grouped}"
    return CostQuery(sql, params, len(keys), status_at, tuple(amounts))


class Ledger:
    """The runs of one data directory.

    Args:
        path: the SQLite file (created with its folder when missing).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        write_conn = _connect(self.path, check=True)
        try:
            self._migrate(write_conn)
            self._conn = _connect(self.path)
        except BaseException:
            write_conn.close()
            raise
        self._writer = _Writer(write_conn, repr(self))
        self._closed = False
        # A Ledger dropped without close() still commits what it queued and stops its thread.
        self._finalizer = weakref.finalize(self, self._writer.close)

    def __repr__(self) -> str:
        return f"<Ledger {self.path}>"

    def close(self) -> None:
        """Commit the queued writes, then close the file. Writing afterwards is an error."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()
        with self._lock:
            self._conn.close()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _transaction(conn):
            # Checked again inside the write lock: another process may have created it since.
            _check_owner(conn, self.path)
            # (It also refuses a schema newer than this imgkit's.)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for index in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[index].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    def backup(self, path: Path | str) -> Path:
        """Copy the ledger, every committed row, into a new single file at ``path``, with
        SQLite's online backup API: safe while this or other processes keep writing (unlike
        copying ``ledger.sqlite3`` and its ``-wal`` file by hand).

        The copy is a plain SQLite file (no ``-wal`` beside it) that :class:`Ledger` opens.

        Args:
            path: the file to create; an existing file is refused, never overwritten.

        Returns:
            ``path``.

        Example:
            >>> ledger.backup("~/ledger-2026-12-02.sqlite3")
        """
        from imgkit.errors import ConfigError

        target = Path(path).expanduser()
        if target.exists():
            raise ConfigError(f"cannot back up the ledger to {target}: the file exists; choose a new path")
        if not target.parent.is_dir():
            raise ConfigError(f"cannot back up the ledger to {target}: the folder {target.parent} does not exist")
        dest = sqlite3.connect(target, isolation_level=None)
        try:
            with self._reading() as conn:
                conn.backup(dest)
            # The pages copied say WAL; a backup is one file, to be moved or mailed alone.
            dest.execute("PRAGMA journal_mode = DELETE")
        except BaseException:
            dest.close()
            with suppress(OSError):
                target.unlink()
            raise
        dest.close()
        log.info("ledger %s backed up to %s", self.path, target)
        return target

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The read connection, once this Ledger's queued writes are committed."""
        self._writer.wait_idle()
        with self._lock:
            yield self._conn

    # --- writing ---------------------------------------------------------------------------

    @staticmethod
    def _row(record: RunRecord) -> tuple[Any, ...]:
        values = []
        for name in _FIELDS:
            value = getattr(record, name)
            values.append(_dump(value) if name in _TUPLE_FIELDS else value)
        values.append(len(record.files))  # n_images, for reports summed in SQL
        return tuple(values)

    _UPSERT = (
        f"INSERT INTO runs ({', '.join(_FIELDS)}, n_images) VALUES ({', '.join('?' for _ in _FIELDS)}, ?) "
        f"ON CONFLICT(run_id) DO UPDATE SET "
        + ", ".join(f"{f} = excluded.{f}" for f in [*_FIELDS, "n_images"] if f != "run_id")
    )

    def save_nowait(self, record: RunRecord) -> Future[None]:
        """Queue one run for the writer (insert or update) and return at once.

        The future resolves to None when the run's group is committed to disk, or carries
        the error that prevented it (``sqlite3.OperationalError`` for a full disk or a
        read-only file, for example).

        Example:
            >>> done = ledger.save_nowait(record)
            >>> done.result()  # on disk from here on
        """
        row = self._row(record)
        upsert = self._UPSERT

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(upsert, row)

        return self._writer.submit(job)

    def save(self, record: RunRecord) -> None:
        """Insert or update one run; returns once it is committed (durably)."""
        self.save_nowait(record).result()

    async def asave(self, record: RunRecord) -> None:
        """Insert or update one run; completes once it is committed, without blocking the
        event loop. Cancelling the caller does not take the write back.

        Example:
            >>> await ledger.asave(record.replace(status="pending", task_id=task_id))
        """
        await asyncio.shield(asyncio.wrap_future(self.save_nowait(record)))

    def save_many(self, records: Iterable[RunRecord]) -> int:
        """Insert or update many runs in one transaction; returns how many, once they are
        committed."""
        rows = [self._row(r) for r in records]
        upsert = self._UPSERT

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(upsert, rows)

        self._writer.submit(job).result()
        return len(rows)

    # --- reading ---------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[RunRecord]:
        with self._reading() as conn:
            cursor = conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        out = []
        for row in rows:
            values = dict(zip(names, row, strict=True))
            for name in _TUPLE_FIELDS:
                values[name] = _load_cell(values[name], values["run_id"], name)
            out.append(RunRecord(**values))
        return out

    def get(self, run_id: str) -> RunRecord | None:
        found = self._query(f"SELECT {_COLUMNS_SQL} FROM runs WHERE run_id = ?", (run_id,))
        return found[0] if found else None

    def by_task(self, task_id: str) -> RunRecord | None:
        found = self._query(f"SELECT {_COLUMNS_SQL} FROM runs WHERE task_id = ?", (task_id,))
        return found[0] if found else None

    def unfinished(self) -> list[RunRecord]:
        """Runs that are not completed, failed or unknown, oldest first."""
        marks = ", ".join("?" for _ in TERMINAL_STATUSES)
        return self._query(
            f"SELECT {_COLUMNS_SQL} FROM runs WHERE status NOT IN ({marks}) ORDER BY created_at",
            sorted(TERMINAL_STATUSES),
        )

    def records(self, *, limit: int | None = None, newest_first: bool = False) -> list[RunRecord]:
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_COLUMNS_SQL} FROM runs ORDER BY created_at {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._query(sql)

    def count(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    # What the budget counts, by the rules of imgkit.costs: spent plus may have cost; of every
    # run, or of one user's runs (a personal budget on a shared ledger).
    _SPENT = f"SELECT COALESCE(SUM({sql_budget()}), 0) FROM runs WHERE created_at >= ?"
    _SPENT_BY_USER = f"{_SPENT} AND user = ?"

    def _spent_query(self, since: float | None, user: str | None) -> tuple[str, tuple[Any, ...]]:
        start = since or 0.0
        return (self._SPENT, (start,)) if user is None else (self._SPENT_BY_USER, (start, user))

    def spent_credits(self, since: float | None = None, *, user: str | None = None) -> float:
        """Credits the budget counts for runs created since ``since``: what each run
        counts as spent plus what it may have cost (see :mod:`imgkit.costs`: charged, else
        reserved, else estimated; failed runs only a reported charge; unknown runs their
        estimate). With ``user``, only that user's runs."""
        sql, params = self._spent_query(since, user)
        with self._reading() as conn:
            return float(conn.execute(sql, params).fetchone()[0])

    def admit(
        self, record: RunRecord, *, limit: float, since: float | None, user: str | None = None
    ) -> float | None:
        """Insert ``record`` only if the credits the budget counts since ``since`` plus its
        estimate stay within ``limit``; check and insert are one write transaction (on the
        writer thread), so concurrent runs (threads or processes) cannot both slip under the
        limit.

        Args:
            user: count only this user's runs (a personal budget on a shared ledger); None
                counts every run in the ledger.

        Returns None when admitted (and committed), else the credits already counted.
        """
        result: float | None = self._admit_nowait(record, limit=limit, since=since, user=user).result()
        return result

    async def aadmit(
        self, record: RunRecord, *, limit: float, since: float | None, user: str | None = None
    ) -> float | None:
        """:meth:`admit` for an event loop: the check and insert run on the writer thread
        while the loop goes on."""
        future = self._admit_nowait(record, limit=limit, since=since, user=user)
        result: float | None = await asyncio.shield(asyncio.wrap_future(future))
        return result

    def _admit_nowait(
        self, record: RunRecord, *, limit: float, since: float | None, user: str | None = None
    ) -> Future[float | None]:
        cost = record.est_credits or 0.0
        row = self._row(record)
        upsert = self._UPSERT
        spent_sql, params = self._spent_query(since, user)

        def job(conn: sqlite3.Connection) -> float | None:
            spent = float(conn.execute(spent_sql, params).fetchone()[0])
            if spent + cost > limit + 1e-9:
                return spent
            conn.execute(upsert, row)
            return None

        return self._writer.submit(job)

    #: The keys :meth:`cost_sums` groups by, in the order of its index (``day`` is a day
    #: number: days since 1970-01-01 UTC).
    COST_KEYS: ClassVar[tuple[str, ...]] = ("day", "quality", "size", "status", "model", "provider", "price_sheet")

    #: The columns of :meth:`cost_sums`' rows after the keys (amounts in credits unless named).
    COST_SUMS: ClassVar[tuple[str, ...]] = (
        "runs", "images", "completed", "failed", "unknown", "est_credits", "est_usd", "est_cny",
        "charged_credits", "may_have_cost_credits", "may_have_cost_at_estimate_credits",
        "may_have_cost_at_estimate_usd", "may_have_cost_at_estimate_cny", "may_have_cost_runs", "estimate_runs",
        "runs_with_credits", "first_created", "last_created", "reported_credits", "at_estimate_credits",
        "reported_runs", "reserved_runs", "batch_runs", "batch_images",
    )

    #: Run columns :meth:`cost_sums` can group by beyond :data:`COST_KEYS` (``extra_keys``);
    #: they are not in the report index, so a sum over them reads the rows.
    COST_EXTRA_KEYS: ClassVar[tuple[str, ...]] = ("resolution", "user", "project")

    def cost_sums(
        self,
        *,
        by_tag: bool = False,
        since: float | None = None,
        until: float | None = None,
        until_inclusive: bool = True,
        tags: Sequence[str] = (),
        qualities: Sequence[str] = (),
        extra_keys: Sequence[str] = (),
        models: Sequence[str] = (),
        users: Sequence[str] = (),
        projects: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """What the runs cost, summed in SQL per combination of :data:`COST_KEYS` (or per tag
        and price sheet with ``by_tag``) and ``extra_keys``; a caller adds up the rows it needs
        and converts credits with each row's price sheet.

        Each row holds the keys, then ``extra_keys``, then :data:`COST_SUMS`. Spent and
        may-have-cost amounts follow :mod:`imgkit.costs`; ``charged_credits`` is what counts as
        spent, of which ``reported_credits`` the service reported as charged and
        ``at_estimate_credits`` counts at the estimate (the rest it reserved);
        ``may_have_cost_at_estimate_*`` sum the stored estimates of the runs that may have
        cost their estimate. With ``by_tag`` a run counts once under each of its tags
        (``None`` for untagged runs). The keys are those of the ``runs_report`` index, in its
        order, so the sums are one pass over the index, without a sort (where two CPUs are
        free, two passes over halves of its days at once, kept only when no other
        connection committed between them).

        Args:
            by_tag: group by tag and price sheet instead.
            since, until: Unix times bounding ``created_at`` (``until`` inclusive unless
                ``until_inclusive`` is False).
            tags: keep runs having any of these tags.
            qualities: keep runs of these tiers.
            extra_keys: more columns to group by, from :data:`COST_EXTRA_KEYS`.
            models, users, projects: keep runs of these models, people, projects.
        """
        query_for = partial(
            cost_sums_query, SQLITE_COSTS, by_tag=by_tag, since=since, until=until, until_inclusive=until_inclusive,
            tags=tags, qualities=qualities, extra_keys=extra_keys, models=models, users=users, projects=projects,
        )
        query = query_for()
        # Two halves of the days at once on two cores, where two are free (by tag, a run
        # counts under each of its tags: one query). A report over 1,000,000 runs: 2.0 s
        # instead of 3.1 s, medians of 4 (benchmarks/README.md, scenario 4).
        split = None if by_tag or _free_cpus() < 2 else self._middle_day(since, until)
        if split is not None:
            version = self._data_version()
            rows = self._rows_at_once([query_for(days=(None, split)), query_for(days=(split, None))])
            if self._data_version() == version:
                return query.sums(rows)
            # Another connection committed between the halves' reads: read them in one piece.
        with self._reading() as conn:
            rows = conn.execute(query.sql, query.params).fetchall()
        return query.sums(rows)

    def _middle_day(self, since: float | None, until: float | None) -> int | None:
        """The UTC day that splits the runs' days (within ``since``..``until``) in two halves
        for :meth:`cost_sums`, or None when they span fewer than two days."""
        with self._reading() as conn:
            # Two subqueries, each one step down the report index (MIN and MAX in one SELECT
            # would scan it).
            first, last = conn.execute(
                f"SELECT (SELECT MIN({_DAY}) FROM runs), (SELECT MAX({_DAY}) FROM runs)"
            ).fetchone()
        if first is None or last is None:
            return None
        if since is not None:
            first = max(first, int(since // 86400))
        if until is not None:
            last = min(last, int(until // 86400))
        return None if last <= first else (first + last + 1) // 2

    def _rows_at_once(self, queries: Sequence[CostQuery]) -> list[Any]:
        """The rows of ``queries`` (each over its own days), run at once, each on its own
        connection (SQLite reads without holding the GIL), in the queries' order."""
        out: list[list[Any] | BaseException] = [[] for _ in queries]

        def run(k: int, conn: sqlite3.Connection) -> None:
            try:
                out[k] = conn.execute(queries[k].sql, queries[k].params).fetchall()
            except BaseException as exc:  # re-raised in the caller's thread
                out[k] = exc

        others = [_connect(self.path) for _ in queries[1:]]
        try:
            threads = [threading.Thread(target=run, args=(k, conn), name="imgkit-report-sums", daemon=True)
                       for k, conn in enumerate(others, start=1)]
            for thread in threads:
                thread.start()
            try:
                with self._reading() as conn:
                    run(0, conn)
            finally:
                for thread in threads:
                    thread.join()
        finally:
            for conn in others:
                conn.close()
        rows: list[Any] = []
        for part in out:
            if isinstance(part, BaseException):
                raise part
            rows += part
        return rows

    #: From this many runs on, :meth:`to_dataframe` reads through the Arrow helper processes;
    #: below, their fixed cost (the pipe, the first start) outweighs what they save
    #: (benchmarks/README.md, scenario 4).
    ARROW_FROM_ROWS: ClassVar[int] = 20_000

    def _data_version(self) -> int:
        """The read connection's data version: it changes when any other connection (this
        Ledger's writer too) commits."""
        with self._reading() as conn:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def _extent(self) -> tuple[int, int, int | None, int | None]:
        """:meth:`_data_version`, the number of runs, and their lowest and highest rowids
        (a commit between the two reads only makes :meth:`to_dataframe` read again)."""
        with self._reading() as conn:
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            count, first, last = conn.execute("SELECT COUNT(*), MIN(rowid), MAX(rowid) FROM runs").fetchone()
        return version, int(count), first, last

    def to_dataframe(self, *, data_dir: Path | None = None) -> pd.DataFrame:
        """All runs as a typed DataFrame, oldest first (through the Arrow helpers from
        :data:`ARROW_FROM_ROWS` runs on, row by row below; the same frame either way).

        A large ledger is read in two halves at once; when another connection commits
        between the halves' reads, the runs are read again in one piece, so the frame is
        always one moment of the ledger.

        Times are timezone-aware (UTC) datetimes to the second, as tables show them
        (``latency_s`` keeps the sub-second duration), money columns floats, ``quality``, ``size``,
        ``status``, ``provider``, ``model``, ``mode`` and ``price_sheet`` categoricals, and
        ``files``/``thumbs`` absolute paths when ``data_dir`` is given.
        """
        import pandas as pd

        with _no_gc():
            version, count, first, last = self._extent()
            runs = None
            if count >= self.ARROW_FROM_ROWS:
                ranges = _rowid_ranges(first, last, _reader_count(count))
                runs = _arrow_read(self.path, data_dir, ranges=ranges)
                if runs is not None and len(ranges) > 1 and self._data_version() != version:
                    runs = _arrow_read(self.path, data_dir)  # a commit came between the halves
            if runs is not None:
                return _arrow_frame(pd, runs.table, data_dir, runs.lists)
            return self._frame(pd, data_dir)

    def _frame(self, pd: Any, data_dir: Path | None) -> pd.DataFrame:
        """The DataFrame through Python's sqlite3 (row by row): when the Arrow reader is not
        installed or cannot type a column."""
        with self._reading() as conn:
            cursor = conn.execute(
                f"SELECT {', '.join(_FIELDS)} FROM runs ORDER BY created_at, run_id"
            )
            rows = cursor.fetchall()
        return self._rows_frame(pd, rows, data_dir)

    @staticmethod
    def _rows_frame(pd: Any, rows: Sequence[Sequence[Any]], data_dir: Path | None) -> pd.DataFrame:
        """The DataFrame from rows of every run field (in :data:`_FIELDS` order), oldest first
        (also for :class:`imgkit.ledger_pg.PostgresLedger`: one frame, whatever the backend)."""
        columns = dict(zip(_FIELDS, zip(*rows, strict=True), strict=True)) if rows else {f: () for f in _FIELDS}
        frame: dict[str, Any] = {}

        def run_ids() -> Sequence[object]:
            return columns["run_id"]

        for name in ("created_at", "submitted_at", "completed_at"):
            frame[name] = pd.to_datetime(
                pd.Series(columns[name], dtype="float64"), unit="s", utc=True
            ).dt.floor("s")
        submitted = pd.Series(columns["submitted_at"], dtype="float64")
        completed = pd.Series(columns["completed_at"], dtype="float64")
        frame["latency_s"] = completed - submitted
        frame["estimated_s"] = pd.Series(columns["estimated_s"], dtype="float64")
        frame["status"] = pd.Categorical(columns["status"], categories=STATUSES)
        for name in ("provider", "model", "mode", "price_sheet"):
            frame[name] = pd.Series(columns[name], dtype="category")
        frame["prompt"] = pd.Series(columns["prompt"], dtype="string")
        size_values = list(columns["size"])
        size_cats = list(SIZES.values()) + sorted(set(size_values) - set(SIZES.values()))
        frame["size"] = pd.Categorical(size_values, categories=size_cats)
        frame["quality"] = pd.Categorical(
            columns["quality"], categories=_quality_categories(columns["quality"]), ordered=True
        )
        frame["n"] = pd.Series(columns["n"], dtype="Int64")
        files = _load_column(columns["files"], run_ids, "files")
        thumbs = _load_column(columns["thumbs"], run_ids, "thumbs")
        frame["n_images"] = pd.Series([len(f) for f in files], dtype="Int64")
        for name in ("est_credits", "est_usd", "est_cny", "credits_reserved", "credits_charged"):
            frame[name] = pd.Series(columns[name], dtype="float64")
        for name in ("task_id", "error_code", "error_message", "notes"):
            frame[name] = pd.Series(columns[name], dtype="string")
        frame["progress"] = pd.Series(columns["progress"], dtype="Int64")
        frame["attempts"] = pd.Series(columns["attempts"], dtype="Int64")
        frame["reference_images"] = _load_column(columns["reference_images"], run_ids, "reference_images")
        frame["result_urls"] = _load_column(columns["result_urls"], run_ids, "result_urls")
        if data_dir is not None:
            root = f"{data_dir}/"
            frame["files"] = [[root + p for p in fs] if fs else [] for fs in files]
            frame["thumbs"] = [[root + p for p in ts] if ts else [] for ts in thumbs]
        else:
            frame["files"] = files
            frame["thumbs"] = thumbs
        frame["tags"] = _load_column(columns["tags"], run_ids, "tags")
        frame["providers_tried"] = _load_column(columns["providers_tried"], run_ids, "providers_tried")
        for name in _CATEGORY_EXTRAS:
            values = columns[name]
            present = sorted({v for v in values if v is not None})
            frame[name] = pd.Series(pd.Categorical(values, categories=pd.Index(present, dtype=object)))
        for name in _TEXT_EXTRAS:
            frame[name] = pd.Series(columns[name], dtype="string")
        for name in _INT_EXTRAS:
            frame[name] = pd.Series(columns[name], dtype="Int64")
        frame["run_id"] = pd.Series(columns["run_id"], dtype="string")
        df = pd.DataFrame({name: frame[name] for name in COLUMNS})
        return df

    # --- ratings -----------------------------------------------------------------------------

    _RATING_FIELDS = (
        "id", "created_at", "prompt", "left_run_id", "right_run_id", "left_image", "right_image",
        "left_quality", "right_quality", "choice", "winner_quality", "tag",
    )

    def add_rating(
        self,
        *,
        prompt: str,
        left_run_id: str,
        right_run_id: str,
        left_quality: str,
        right_quality: str,
        choice: str,
        left_image: int = 0,
        right_image: int = 0,
        tag: str | None = None,
        created_at: float | None = None,
    ) -> int:
        """Keep one blind pairwise pick and return its id.

        The winner's tier is derived here from ``choice`` (``"left"``, ``"right"`` or
        ``"same"``, which has no winner), so it can never disagree with the pick.

        Args:
            prompt: the prompt both runs drew.
            left_run_id, right_run_id: the runs shown on the left and on the right.
            left_quality, right_quality: their tiers (hidden from the rater).
            choice: which side the rater preferred, or ``"same"``.
            left_image, right_image: which image of each run was shown (0-based).
            tag: a label for the rating session (who rated, which notebook).
            created_at: Unix time of the pick (now by default).

        Example:
            >>> ledger.add_rating(prompt="a fox", left_run_id=a, right_run_id=b,
            ...                   left_quality="high", right_quality="low", choice="left")
        """
        if choice not in ("left", "right", "same"):
            from imgkit.errors import ValidationError

            raise ValidationError("choice", choice, '"left", "right" or "same"')
        winner = {"left": left_quality, "right": right_quality}.get(choice)
        values = (
            time.time() if created_at is None else created_at, prompt, left_run_id, right_run_id,
            int(left_image), int(right_image), left_quality, right_quality, choice, winner, tag,
        )

        def job(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO ratings (created_at, prompt, left_run_id, right_run_id, left_image, right_image, "
                "left_quality, right_quality, choice, winner_quality, tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            return int(cursor.lastrowid or 0)

        rating_id: int = self._writer.submit(job).result()
        return rating_id

    def ratings_frame(self) -> pd.DataFrame:
        """Every pairwise rating as a DataFrame, oldest first.

        ``created_at`` is a UTC datetime; the tier columns are ordered categoricals like the
        runs' ``quality``; ``winner_quality`` is empty for ``"same"``.
        """
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(self._RATING_FIELDS)} FROM ratings ORDER BY created_at, id"
            ).fetchall()
        return _ratings_frame(rows, self._RATING_FIELDS)

    # --- resumer leases ------------------------------------------------------------------------
    #
    # Concurrent resume() calls (threads, kernels, hosts) split the unfinished runs instead of
    # each polling and downloading every one: a resumer claims runs, all in one write
    # transaction, leasing them to itself for a while (renewed while it follows them) and
    # releases them when done. A lease that expired (its resumer was killed) can be taken.
    # The lease columns are the ledger's own: a save never writes them.

    _UNFINISHED_SQL: ClassVar[str] = "status NOT IN ({})".format(
        ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))
    )

    def claim(self, owner: str, *, ttl_s: float, run_ids: Sequence[str] | None = None) -> list[RunRecord]:
        """Lease the unfinished runs (not completed, failed or unknown; only ``run_ids`` among
        them when given) whose lease is free, expired or already ``owner``'s, to ``owner`` until
        ``ttl_s`` seconds from now, in one write transaction; return them, oldest first.

        Args:
            owner: who resumes them (``host:pid:random``).
            ttl_s: seconds the lease lasts unless renewed.
            run_ids: only these runs.

        Example:
            >>> mine = ledger.claim("host:4242:1f2e", ttl_s=120)
        """
        where = f"{self._UNFINISHED_SQL} AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)"
        ids = None if run_ids is None else json.dumps(list(run_ids))
        if ids is not None:
            where += " AND run_id IN (SELECT value FROM json_each(?))"
        select = f"SELECT {_COLUMNS_SQL} FROM runs WHERE {where} ORDER BY created_at, run_id"

        def job(conn: sqlite3.Connection) -> tuple[list[str], list[tuple[Any, ...]]]:
            now = time.time()
            params: list[Any] = [now, owner] + ([ids] if ids is not None else [])
            cursor = conn.execute(select, params)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
            if rows:
                taken = json.dumps([row[0] for row in rows])
                conn.execute(
                    "UPDATE runs SET lease_owner = ?, lease_until = ? WHERE run_id IN (SELECT value FROM json_each(?))",
                    (owner, now + ttl_s, taken),
                )
            return names, rows

        names, rows = self._writer.submit(job).result()
        claimed = []
        for row in rows:
            values = dict(zip(names, row, strict=True))
            for name in _TUPLE_FIELDS:
                values[name] = _load_cell(values[name], values["run_id"], name)
            claimed.append(RunRecord(**values))
        return claimed

    def renew(self, owner: str, run_ids: Sequence[str], *, ttl_s: float) -> None:
        """Extend ``owner``'s leases on ``run_ids`` to ``ttl_s`` seconds from now (runs leased
        to someone else meanwhile are left alone)."""
        ids = json.dumps(list(run_ids))

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE runs SET lease_until = ? WHERE lease_owner = ? AND run_id IN (SELECT value FROM json_each(?))",
                (time.time() + ttl_s, owner, ids),
            )

        self._writer.submit(job).result()

    def release(self, owner: str, run_ids: Sequence[str]) -> None:
        """Give up ``owner``'s leases on ``run_ids`` (others' leases are left alone)."""
        ids = json.dumps(list(run_ids))

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE runs SET lease_owner = NULL, lease_until = NULL "
                "WHERE lease_owner = ? AND run_id IN (SELECT value FROM json_each(?))",
                (owner, ids),
            )

        self._writer.submit(job).result()


    # --- balance snapshots -------------------------------------------------------------------

    _SNAPSHOT_FIELDS = (
        "taken_at", "provider", "remaining_credits", "key_remaining", "account_remaining", "binding", "source", "user",
    )

    def add_balance_snapshot(self, snapshot: BalanceSnapshot) -> None:
        """Keep one reading of a provider's balance (``imgkit.reconcile`` holds the fall between
        two readings against what the ledger counts as spent); returns once it is committed.

        Example:
            >>> ledger.add_balance_snapshot(BalanceSnapshot(time.time(), "evolink", 1095.3996))
        """
        values = tuple(getattr(snapshot, name) for name in self._SNAPSHOT_FIELDS)
        sql = (f"INSERT INTO balance_snapshots ({', '.join(self._SNAPSHOT_FIELDS)}) "
               f"VALUES ({', '.join('?' for _ in self._SNAPSHOT_FIELDS)})")

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(sql, values)

        self._writer.submit(job).result()

    def balance_snapshots(
        self, *, provider: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[BalanceSnapshot]:
        """The balance readings kept, oldest first.

        Args:
            provider: only this provider's.
            since, until: Unix times bounding ``taken_at`` (both inclusive).
        """
        where, params = [], []
        for condition, value in (("provider = ?", provider), ("taken_at >= ?", since), ("taken_at <= ?", until)):
            if value is not None:
                where.append(condition)
                params.append(value)
        sql = (f"SELECT {', '.join(self._SNAPSHOT_FIELDS)} FROM balance_snapshots"
               + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY taken_at, id")
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [BalanceSnapshot(*row) for row in rows]


def _ratings_frame(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> pd.DataFrame:
    """The typed ratings frame of :meth:`Ledger.ratings_frame` from rows of ``names``."""
    import pandas as pd

    columns = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {f: () for f in names}
    frame: dict[str, Any] = {
        "id": pd.Series(columns["id"], dtype="Int64"),
        "created_at": pd.to_datetime(pd.Series(columns["created_at"], dtype="float64"), unit="s", utc=True),
    }
    for name in ("prompt", "left_run_id", "right_run_id", "tag"):
        frame[name] = pd.Series(columns[name], dtype="string")
    for name in ("left_image", "right_image"):
        frame[name] = pd.Series(columns[name], dtype="Int64")
    for name in ("left_quality", "right_quality", "winner_quality"):
        frame[name] = pd.Categorical(columns[name], categories=QUALITIES, ordered=True)
    frame["choice"] = pd.Categorical(columns["choice"], categories=("left", "right", "same"))
    return pd.DataFrame({name: frame[name] for name in names})


# --- one contract, two backends --------------------------------------------------------------


class LedgerBackend(Protocol):
    """What the session, the engine, reports and widgets ask of a ledger: :class:`Ledger`
    (SQLite, one person's file) and :class:`imgkit.ledger_pg.PostgresLedger` (a team's
    database) both provide it, with the same results. :func:`open_ledger` picks one.

    Writes go through one writer per ledger and commit in groups; reads wait for the writes
    this ledger has queued. Costs follow :mod:`imgkit.costs` on both.
    """

    #: The keys and sums of :meth:`cost_sums`' rows (see :attr:`Ledger.COST_KEYS`).
    COST_KEYS: ClassVar[tuple[str, ...]]
    COST_SUMS: ClassVar[tuple[str, ...]]

    @property
    def path(self) -> Path | str:
        """Where the runs are: the SQLite file, or the database URL without its password."""
        ...

    def save_nowait(self, record: RunRecord) -> Future[None]: ...
    def save(self, record: RunRecord) -> None: ...
    async def asave(self, record: RunRecord) -> None: ...
    def save_many(self, records: Iterable[RunRecord]) -> int: ...
    def get(self, run_id: str) -> RunRecord | None: ...
    def by_task(self, task_id: str) -> RunRecord | None: ...
    def unfinished(self) -> list[RunRecord]: ...
    def records(self, *, limit: int | None = None, newest_first: bool = False) -> list[RunRecord]: ...
    def count(self) -> int: ...
    def spent_credits(self, since: float | None = None, *, user: str | None = None) -> float: ...

    def admit(
        self, record: RunRecord, *, limit: float, since: float | None, user: str | None = None
    ) -> float | None:
        """Record ``record`` only if the budget (the runs of ``user``, or every run when None)
        leaves room for its estimate, check and insert in one transaction; None when admitted,
        else the credits already counted."""
        ...

    async def aadmit(
        self, record: RunRecord, *, limit: float, since: float | None, user: str | None = None
    ) -> float | None: ...

    def cost_sums(
        self,
        *,
        by_tag: bool = False,
        since: float | None = None,
        until: float | None = None,
        until_inclusive: bool = True,
        tags: Sequence[str] = (),
        qualities: Sequence[str] = (),
        extra_keys: Sequence[str] = (),
        models: Sequence[str] = (),
        users: Sequence[str] = (),
        projects: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]: ...

    def to_dataframe(self, *, data_dir: Path | None = None) -> pd.DataFrame: ...

    def add_rating(
        self,
        *,
        prompt: str,
        left_run_id: str,
        right_run_id: str,
        left_quality: str,
        right_quality: str,
        choice: str,
        left_image: int = 0,
        right_image: int = 0,
        tag: str | None = None,
        created_at: float | None = None,
    ) -> int: ...

    def ratings_frame(self) -> pd.DataFrame: ...

    def claim(self, owner: str, *, ttl_s: float, run_ids: Sequence[str] | None = None) -> list[RunRecord]:
        """Lease to ``owner`` until now + ``ttl_s`` the runs resume() finishes (only ``run_ids``
        among them, when given) whose lease is free, expired or already ``owner``'s, in one
        transaction, and return them, oldest first: two resumers never follow the same run."""
        ...

    def renew(self, owner: str, run_ids: Sequence[str], *, ttl_s: float) -> None: ...
    def release(self, owner: str, run_ids: Sequence[str]) -> None: ...
    def add_balance_snapshot(self, snapshot: BalanceSnapshot) -> None: ...

    def balance_snapshots(
        self, *, provider: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[BalanceSnapshot]: ...

    def backup(self, path: Path | str) -> Path: ...
    def close(self) -> None: ...


#: The environment variable that chooses the ledger: a ``postgresql://`` URL (a team's
#: database) or a SQLite file's path. Unset: ``ledger.sqlite3`` in the data directory.
LEDGER_ENV = "IMGKIT_LEDGER"


def is_database_url(target: str | Path | Secret) -> bool:
    """True when ``target`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    text = target.reveal() if isinstance(target, Secret) else target
    return isinstance(text, str) and text.strip().lower().startswith(("postgresql://", "postgres://"))


def open_ledger(target: str | Path | Secret) -> LedgerBackend:
    """The ledger at ``target``: :class:`imgkit.ledger_pg.PostgresLedger` for a
    ``postgresql://`` (or ``postgres://``) URL, the SQLite :class:`Ledger` for a path.

    The password comes from the URL, ``PGPASSWORD`` or ``~/.pgpass`` (libpq reads them); it
    is never shown back (the ledger's ``path`` is the URL without it). ``target`` may be a
    :class:`~imgkit.request.Secret` holding the URL.

    Example:
        >>> ledger = open_ledger("postgresql://imgkit@db.internal/imgkit")
        >>> ledger.count()
    """
    if isinstance(target, Secret) or is_database_url(target):
        from imgkit.ledger_pg import PostgresLedger

        url = target if isinstance(target, Secret) else Secret(str(target).strip())
        del target  # only the Secret holds it now: a traceback's locals show it masked
        return PostgresLedger(url)
    return Ledger(Path(target).expanduser())
