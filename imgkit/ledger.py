"""The run ledger: SQLite in WAL mode, versioned schema, safe for several kernels at once.

One row per run (:class:`~imgkit.request.RunRecord`). A row is written when the run is
created, again as soon as the service has given it a task id (before ``generate`` goes on),
and on every status change, so a crash loses nothing that was acknowledged.
:meth:`Ledger.to_dataframe` reads it back as a typed pandas DataFrame.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgkit.request import QUALITIES, SIZES, TERMINAL_STATUSES, RunRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "SCHEMA_VERSION", "Ledger"]

_TUPLE_FIELDS = ("reference_images", "result_urls", "files", "thumbs", "tags", "providers_tried")
_FIELDS = [f.name for f in fields(RunRecord)]

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
]
SCHEMA_VERSION = len(_MIGRATIONS)

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
)
STATUSES = ("created", "submitting", "pending", "processing", "downloading", "completed", "failed", "unknown")


def _dump(values: Sequence[str]) -> str:
    return json.dumps(list(values)) if values else "[]"


def _load(text: str | None) -> tuple[str, ...]:
    if not text or text == "[]":
        return ()
    return tuple(json.loads(text))


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


def _load_column(texts: Sequence[str | None]) -> list[list[Any]]:
    """Decode a column of JSON lists with a single ``json.loads``.

    A call per cell (600,000 at 100,000 runs) was a large share of
    :meth:`Ledger.to_dataframe` (benchmarks/README.md, scenario 4). If any cell is not a JSON
    list, the joined text does not parse or does not give one list per cell, and every cell
    is decoded on its own.
    """
    joined = ",".join(text or "[]" for text in texts)
    try:
        decoded = json.loads(f"[{joined}]")
    except ValueError:
        decoded = None
    if not isinstance(decoded, list) or len(decoded) != len(texts) or not all(type(d) is list for d in decoded):
        return [list(_load(text)) for text in texts]
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


class Ledger:
    """The runs of one data directory.

    Args:
        path: the SQLite file (created with its folder when missing).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 60000")
        _enable_wal(self._conn)
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def __repr__(self) -> str:
        return f"<Ledger {self.path}>"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so two kernels wait for each other
        # (busy_timeout) instead of failing half-way through a transaction.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                from imgkit.errors import ConfigError

                raise ConfigError(
                    f"{self.path} has ledger schema {version}, newer than this imgkit "
                    f"({SCHEMA_VERSION}); upgrade imgkit"
                )
            for index in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[index].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- writing ---------------------------------------------------------------------------

    @staticmethod
    def _row(record: RunRecord) -> tuple[Any, ...]:
        values = []
        for name in _FIELDS:
            value = getattr(record, name)
            values.append(_dump(value) if name in _TUPLE_FIELDS else value)
        return tuple(values)

    _UPSERT = (
        f"INSERT INTO runs ({', '.join(_FIELDS)}) VALUES ({', '.join('?' for _ in _FIELDS)}) "
        f"ON CONFLICT(run_id) DO UPDATE SET "
        + ", ".join(f"{f} = excluded.{f}" for f in _FIELDS if f != "run_id")
    )

    def save(self, record: RunRecord) -> None:
        """Insert or update one run; returns once it is committed."""
        with self._write() as conn:
            conn.execute(self._UPSERT, self._row(record))

    def save_many(self, records: Iterable[RunRecord]) -> int:
        """Insert or update many runs in one transaction; returns how many."""
        rows = [self._row(r) for r in records]
        with self._write() as conn:
            conn.executemany(self._UPSERT, rows)
        return len(rows)

    # --- reading ---------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[RunRecord]:
        with self._lock:
            cursor = self._conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        out = []
        for row in rows:
            values = dict(zip(names, row, strict=True))
            for name in _TUPLE_FIELDS:
                values[name] = _load(values[name])
            out.append(RunRecord(**values))
        return out

    def get(self, run_id: str) -> RunRecord | None:
        found = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return found[0] if found else None

    def by_task(self, task_id: str) -> RunRecord | None:
        found = self._query("SELECT * FROM runs WHERE task_id = ?", (task_id,))
        return found[0] if found else None

    def unfinished(self) -> list[RunRecord]:
        """Runs that are not completed, failed or unknown, oldest first."""
        marks = ", ".join("?" for _ in TERMINAL_STATUSES)
        return self._query(
            f"SELECT * FROM runs WHERE status NOT IN ({marks}) ORDER BY created_at",
            sorted(TERMINAL_STATUSES),
        )

    def records(self, *, limit: int | None = None, newest_first: bool = False) -> list[RunRecord]:
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT * FROM runs ORDER BY created_at {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._query(sql)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    # A failed run costs what the service says it charged, else nothing (it bills produced
    # images and releases its reservation); any other run counts what was charged, else
    # reserved, else estimated, so runs in flight are counted before the service answers.
    _SPENT = (
        "SELECT COALESCE(SUM(CASE WHEN status = 'failed' THEN COALESCE(credits_charged, 0) "
        "ELSE COALESCE(credits_charged, credits_reserved, est_credits) END), 0) "
        "FROM runs WHERE created_at >= ?"
    )

    def spent_credits(self, since: float | None = None) -> float:
        """Credits committed by runs created since ``since``: charged, else reserved, else
        estimated; failed runs count only a reported charge."""
        with self._lock:
            return float(self._conn.execute(self._SPENT, (since or 0.0,)).fetchone()[0])

    def admit(self, record: RunRecord, *, limit: float, since: float | None) -> float | None:
        """Insert ``record`` only if the credits committed since ``since`` plus its estimate
        stay within ``limit``; check and insert are one write transaction, so concurrent
        runs (threads or processes) cannot both slip under the limit.

        Returns None when admitted, else the credits already committed.
        """
        cost = record.est_credits or 0.0
        with self._write() as conn:
            spent = float(conn.execute(self._SPENT, (since or 0.0,)).fetchone()[0])
            if spent + cost > limit + 1e-9:
                return spent
            conn.execute(self._UPSERT, self._row(record))
        return None

    def to_dataframe(self, *, data_dir: Path | None = None) -> pd.DataFrame:
        """All runs as a typed DataFrame, oldest first.

        Times are timezone-aware (UTC) datetimes, money columns floats, ``quality``, ``size``,
        ``status``, ``provider``, ``model``, ``mode`` and ``price_sheet`` categoricals, and
        ``files``/``thumbs`` absolute paths when ``data_dir`` is given.
        """
        import pandas as pd

        with _no_gc():
            return self._frame(pd, data_dir)

    def _frame(self, pd: Any, data_dir: Path | None) -> pd.DataFrame:
        with self._lock:
            cursor = self._conn.execute(
                f"SELECT {', '.join(_FIELDS)} FROM runs ORDER BY created_at, run_id"
            )
            rows = cursor.fetchall()
        columns = dict(zip(_FIELDS, zip(*rows, strict=True), strict=True)) if rows else {f: () for f in _FIELDS}
        frame: dict[str, Any] = {}
        for name in ("created_at", "submitted_at", "completed_at"):
            frame[name] = pd.to_datetime(
                pd.Series(columns[name], dtype="float64"), unit="s", utc=True
            )
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
        frame["quality"] = pd.Categorical(columns["quality"], categories=QUALITIES, ordered=True)
        frame["n"] = pd.Series(columns["n"], dtype="Int64")
        files = _load_column(columns["files"])
        thumbs = _load_column(columns["thumbs"])
        frame["n_images"] = pd.Series([len(f) for f in files], dtype="Int64")
        for name in ("est_credits", "est_usd", "est_cny", "credits_reserved", "credits_charged"):
            frame[name] = pd.Series(columns[name], dtype="float64")
        for name in ("task_id", "error_code", "error_message", "notes"):
            frame[name] = pd.Series(columns[name], dtype="string")
        frame["progress"] = pd.Series(columns["progress"], dtype="Int64")
        frame["attempts"] = pd.Series(columns["attempts"], dtype="Int64")
        frame["reference_images"] = _load_column(columns["reference_images"])
        frame["result_urls"] = _load_column(columns["result_urls"])
        if data_dir is not None:
            root = f"{data_dir}/"
            frame["files"] = [[root + p for p in fs] if fs else [] for fs in files]
            frame["thumbs"] = [[root + p for p in ts] if ts else [] for ts in thumbs]
        else:
            frame["files"] = files
            frame["thumbs"] = thumbs
        frame["tags"] = _load_column(columns["tags"])
        frame["providers_tried"] = _load_column(columns["providers_tried"])
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
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO ratings (created_at, prompt, left_run_id, right_run_id, left_image, right_image, "
                "left_quality, right_quality, choice, winner_quality, tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time() if created_at is None else created_at, prompt, left_run_id, right_run_id,
                    int(left_image), int(right_image), left_quality, right_quality, choice, winner, tag,
                ),
            )
            return int(cursor.lastrowid or 0)

    def ratings_frame(self) -> pd.DataFrame:
        """Every pairwise rating as a DataFrame, oldest first.

        ``created_at`` is a UTC datetime; the tier columns are ordered categoricals like the
        runs' ``quality``; ``winner_quality`` is empty for ``"same"``.
        """
        import pandas as pd

        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(self._RATING_FIELDS)} FROM ratings ORDER BY created_at, id"
            ).fetchall()
        columns = dict(zip(self._RATING_FIELDS, zip(*rows, strict=True), strict=True)) if rows else {
            f: () for f in self._RATING_FIELDS
        }
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
        return pd.DataFrame({name: frame[name] for name in self._RATING_FIELDS})
