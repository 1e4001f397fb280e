"""The run ledger on PostgreSQL: one team's runs, budget and bill in one database.

:class:`PostgresLedger` keeps the contract of :class:`~imgkit.ledger.LedgerBackend`, the same
as the SQLite :class:`~imgkit.ledger.Ledger`, on a server several people and machines share.
:func:`imgkit.ledger.open_ledger` opens it for a ``postgresql://`` URL (``IMGKIT_LEDGER``).

- **Schema**: the tables of SQLite schema v5 (``runs``, ``ratings``, ``balance_snapshots``),
  created by versioned migrations recorded in ``imgkit_schema_version``; they run once per
  database under ``pg_advisory_lock``, so processes starting together wait for one another.
- **Writes** go through one writer thread per ledger with a connection of its own, which
  commits every write queued meanwhile as one transaction (as the SQLite writer does);
  ``await`` :meth:`PostgresLedger.asave` waits for it without blocking the event loop. Reads
  (from a small :class:`psycopg_pool.ConnectionPool`) first wait for this ledger's queued
  writes.
- **Budgets**: :meth:`PostgresLedger.admit` checks and records a run in one transaction under
  ``pg_advisory_xact_lock`` on a key derived from the budget's scope (every run, or one
  user's): N kernels on several machines can never overspend together. A personal
  admission also holds the team key in shared mode, so a team admission never interleaves
  with it.
- **Leases**: :meth:`PostgresLedger.claim` leases unfinished runs to one resumer, by the
  database's clock (the same for every machine).
- **The server going away**: a write waits for the database to come back (reconnecting, for
  up to ``patience`` seconds) and then commits; past that it fails with
  :class:`LedgerUnavailable`, which names the database (never its password) and
  what failed (a :class:`~imgkit.errors.StorageError`: the run ends ``unknown``, its task id
  in the task journal, and ``resume()`` finishes it). A read fails with the same error once
  ``connect_timeout`` passes without a connection. A closing ledger waits at most
  ``CLOSING_PATIENCE`` seconds.
- **Secrets**: the password (from the URL, ``PGPASSWORD`` or ``~/.pgpass``; libpq reads the
  last two) is kept out of :attr:`PostgresLedger.path`, reprs, logs and errors.

Costs come from :mod:`imgkit.costs` (its SQL reads the same in PostgreSQL), and
:meth:`PostgresLedger.to_dataframe` builds the very frame the SQLite ledger gives, from an
Arrow table of the same column types.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import queue
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from imgkit.costs import sql_budget
from imgkit.errors import ConfigError, StorageError, ValidationError
from imgkit.ledger import (
    _COLUMN_TYPES,
    _FIELDS,
    _TUPLE_FIELDS,
    REPORT_RULE_TESTS,
    SCHEMA_VERSION,
    CostDialect,
    Ledger,
    _arrow_frame,
    _dump,
    _load_cell,
    cost_sums_query,
)
from imgkit.request import TERMINAL_STATUSES, BalanceSnapshot, RunRecord, Secret

if TYPE_CHECKING:
    import pandas as pd
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["LedgerUnavailable", "PostgresLedger", "safe_url"]

log = logging.getLogger("imgkit")

INSTALL_HINT = "pip install 'imgkit[postgres]'"


class LedgerUnavailable(StorageError):
    """The ledger's database cannot be reached or went away (a
    :class:`~imgkit.errors.StorageError` with ``reason`` ``"unreachable"``). The message names
    the database (its URL without the password) and what failed; writes wait ``patience``
    seconds for the server before they raise it. A run cut off this way ends ``unknown`` with
    its task id in the task journal, and :func:`imgkit.resume` finishes it once the server is
    back."""


def _q(name: str) -> str:
    """A quoted identifier: ``user`` is a reserved word in PostgreSQL."""
    return f'"{name}"'


_COLS = ", ".join(_q(f) for f in _FIELDS)
#: A run's UTC day as a day number, as the SQLite ledger's ``_DAY`` (PostgreSQL's cast rounds;
#: FLOOR keeps it the day the run was made in).
_DAY = "CAST(FLOOR(created_at / 86400) AS BIGINT)"
#: PostgreSQL's way of saying the cost sums (see :class:`imgkit.ledger.CostDialect`).
POSTGRES_COSTS = CostDialect(
    mark="%s", day=_DAY, tag_source="jsonb_array_elements_text(runs.tags::jsonb) AS t(value)", tag_value="t.value",
    tag_join=" LEFT JOIN LATERAL jsonb_array_elements_text(runs.tags::jsonb) AS tag_each(value) ON TRUE",
    list_param=True, typed_sums=True,
)
_TERMINAL = sorted(str(s) for s in TERMINAL_STATUSES)

# Each entry migrates the schema from version i to i + 1, as imgkit.ledger._MIGRATIONS does
# for SQLite: the same tables, columns and indexes, in PostgreSQL's types.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt TEXT NOT NULL,
        size TEXT NOT NULL,
        quality TEXT NOT NULL,
        n BIGINT NOT NULL,
        reference_images TEXT NOT NULL DEFAULT '[]',
        mode TEXT NOT NULL,
        task_id TEXT,
        status TEXT NOT NULL,
        progress BIGINT NOT NULL DEFAULT 0,
        error_code TEXT,
        error_message TEXT,
        est_credits DOUBLE PRECISION,
        est_usd DOUBLE PRECISION,
        est_cny DOUBLE PRECISION,
        price_sheet TEXT,
        credits_reserved DOUBLE PRECISION,
        credits_charged DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        submitted_at DOUBLE PRECISION,
        completed_at DOUBLE PRECISION,
        estimated_s DOUBLE PRECISION,
        result_urls TEXT NOT NULL DEFAULT '[]',
        files TEXT NOT NULL DEFAULT '[]',
        thumbs TEXT NOT NULL DEFAULT '[]',
        tags TEXT NOT NULL DEFAULT '[]',
        attempts BIGINT NOT NULL DEFAULT 0,
        notes TEXT
    );
    CREATE UNIQUE INDEX runs_task_id ON runs(task_id) WHERE task_id IS NOT NULL;
    CREATE INDEX runs_created_at ON runs(created_at);
    CREATE INDEX runs_status ON runs(status);
    """,
    """
    CREATE TABLE ratings (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        prompt TEXT NOT NULL,
        left_run_id TEXT NOT NULL REFERENCES runs(run_id),
        right_run_id TEXT NOT NULL REFERENCES runs(run_id),
        left_image BIGINT NOT NULL DEFAULT 0,
        right_image BIGINT NOT NULL DEFAULT 0,
        left_quality TEXT NOT NULL,
        right_quality TEXT NOT NULL,
        choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'same')),
        winner_quality TEXT,
        tag TEXT
    );
    CREATE INDEX ratings_left ON ratings(left_run_id);
    CREATE INDEX ratings_right ON ratings(right_run_id);
    """,
    """
    ALTER TABLE runs ADD COLUMN providers_tried TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX runs_provider ON runs(provider);
    """,
    f"""
    ALTER TABLE runs ADD COLUMN n_images BIGINT NOT NULL DEFAULT 0;
    UPDATE runs SET n_images = json_array_length(files::json) WHERE files <> '[]';
    CREATE INDEX runs_report ON runs(({_DAY}), quality, size, status, model, provider, price_sheet,
        created_at, est_credits, est_usd, est_cny, credits_reserved, credits_charged, task_id, n_images);
    """,
    f"""
    ALTER TABLE runs ADD COLUMN resolution TEXT;
    ALTER TABLE runs ADD COLUMN background TEXT;
    ALTER TABLE runs ADD COLUMN output_format TEXT;
    ALTER TABLE runs ADD COLUMN batch_id TEXT;
    ALTER TABLE runs ADD COLUMN tokens_in BIGINT;
    ALTER TABLE runs ADD COLUMN tokens_out BIGINT;
    ALTER TABLE runs ADD COLUMN partial_images BIGINT;
    ALTER TABLE runs ADD COLUMN "user" TEXT;
    ALTER TABLE runs ADD COLUMN project TEXT;
    ALTER TABLE runs ADD COLUMN host TEXT;
    ALTER TABLE runs ADD COLUMN data_dir TEXT;
    ALTER TABLE runs ADD COLUMN lease_owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_until DOUBLE PRECISION;
    CREATE INDEX runs_batch_id ON runs(batch_id) WHERE batch_id IS NOT NULL;
    DROP INDEX runs_report;
    CREATE INDEX runs_report ON runs(({_DAY}), quality, size, status, model, provider, price_sheet,
        created_at, est_credits, est_usd, est_cny, credits_reserved, credits_charged, task_id, n_images,
        error_code, batch_id);
    CREATE TABLE balance_snapshots (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        taken_at DOUBLE PRECISION NOT NULL,
        provider TEXT NOT NULL,
        remaining_credits DOUBLE PRECISION,
        key_remaining DOUBLE PRECISION,
        account_remaining DOUBLE PRECISION,
        binding TEXT,
        source TEXT,
        "user" TEXT
    );
    CREATE INDEX balance_snapshots_taken_at ON balance_snapshots(provider, taken_at);
    """,
    f"""
    DROP INDEX runs_report;
    CREATE INDEX runs_report ON runs(({_DAY}), quality, size, status, model, provider, price_sheet,
        {", ".join(f"({test})" for test in REPORT_RULE_TESTS)},
        created_at, est_credits, est_usd, est_cny, credits_reserved, credits_charged, task_id, n_images,
        error_code, batch_id);
    """,
]
assert len(_MIGRATIONS) == SCHEMA_VERSION, "the PostgreSQL schema follows the SQLite one, version by version"

_VERSION_TABLE = "imgkit_schema_version"


def _lock_key(*parts: str) -> int:
    """A 64-bit advisory lock key for ``parts`` (the same in every process and machine)."""
    digest = hashlib.blake2b("\x1f".join(("imgkit", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_MIGRATION_KEY = _lock_key("migrate")
_TEAM_KEY = _lock_key("budget", "all")


def safe_url(url: str) -> str:
    """``url`` fit to show: the password (in the user part or a ``password=`` parameter) is
    removed; the user, host, port and database stay.

    Example:
        >>> safe_url("postgresql://imgkit:s3cret@db.internal:5432/imgkit")
        'postgresql://imgkit@db.internal:5432/imgkit'
    """
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            netloc = f"{userinfo.split(':', 1)[0]}@{host}"
        query = urllib.parse.urlencode(
            [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
        )
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<a PostgreSQL URL that does not parse>"


def _import_psycopg() -> None:
    try:
        import psycopg  # noqa: F401 - checked here, imported where used
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"a ledger on PostgreSQL needs psycopg and psycopg-pool: {INSTALL_HINT}") from exc


#: A queued write: runs on the writer's connection inside a transaction, returns its result.
_Job = Callable[["psycopg.Connection[Any]"], Any]


class _Writer:
    """The one thread that writes the database for a :class:`PostgresLedger`.

    Every job queued while it committed the last group goes into the next transaction; each
    job's future resolves when that transaction is committed. A group that fails on its data
    (a duplicate task id) is retried job by job, so the error reaches only its caller. A
    group that fails because the connection is lost waits for the server, reconnects and is
    committed again (each job is an upsert, or checks whether it already ran), for up to
    ``patience`` seconds; then its futures carry :class:`LedgerUnavailable`.
    """

    GROUP_LIMIT = 1000

    def __init__(self, ledger: PostgresLedger) -> None:
        self._connect = ledger._connect
        self._unavailable = ledger._unavailable
        self._patience = ledger.patience
        self._name = repr(ledger)
        self._conn: psycopg.Connection[Any] | None = None
        self._queue: queue.SimpleQueue[tuple[_Job, Future[Any], str] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last: Future[Any] | None = None
        self._closed = False

    def submit(self, job: _Job, what: str) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise ConfigError(f"{self._name} is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"imgkit-ledger-writer {self._name}",
                                                daemon=True)
                self._thread.start()
            self._queue.put((job, future, what))
            self._last = future
        return future

    def wait_idle(self) -> None:
        last = self._last
        if last is not None and not last.done():
            wait([last])

    #: The most seconds a write still waits for the server once the ledger is closing (at
    #: interpreter exit, say): a process must not hang for ``patience`` on its way out.
    CLOSING_PATIENCE = 10.0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._patience = min(self._patience, self.CLOSING_PATIENCE)
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # pragma: no cover - closing a broken connection
                log.debug("closing the ledger's writer connection: %s", exc)

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
                self._commit([(j, f, w) for j, f, w in group if f.set_running_or_notify_cancel()])
        finally:
            self._drop()

    def _commit(self, live: list[tuple[_Job, Future[Any], str]]) -> None:
        import psycopg

        if not live:
            return
        started = time.monotonic()
        delay = 0.05
        while True:
            try:
                results = self._transaction(live)
            except psycopg.OperationalError as exc:
                if not self._lost(exc):
                    self._one_by_one(live, exc)
                    return
                self._drop()
                if time.monotonic() >= started + self._patience:  # (shortened by close())
                    what = live[0][2] if len(live) == 1 else f"{len(live)} writes ({live[0][2]}, ...)"
                    error = self._unavailable(f"{what} could not be written", exc)
                    for _, future, _ in live:
                        future.set_exception(error)
                    return
                log.warning("%s", self._unavailable(f"waiting to write {len(live)} row(s)", exc))
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception as exc:
                self._one_by_one(live, exc)
                return
            for (_, future, _), result in zip(live, results, strict=True):
                future.set_result(result)
            return

    def _lost(self, exc: Exception) -> bool:
        """True when ``exc`` is the connection's failure (the server went away), not the data's."""
        conn = self._conn
        return conn is None or conn.closed or conn.broken or _connection_lost(exc)

    def _transaction(self, jobs: list[tuple[_Job, Future[Any], str]]) -> list[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect(autocommit=False)
        conn = self._conn
        try:
            with conn.transaction():
                return [job(conn) for job, _, _ in jobs]
        except BaseException:
            if conn.broken or conn.closed:
                self._conn = None
            raise

    def _one_by_one(self, live: list[tuple[_Job, Future[Any], str]], first: Exception) -> None:
        if len(live) == 1:
            live[0][1].set_exception(first)
            return
        log.debug("ledger group of %d writes failed (%s); committing them one by one", len(live), first)
        for item in live:
            self._commit([item])


class PostgresLedger:
    """The runs of a team, in a PostgreSQL database.

    Args:
        url: ``postgresql://user@host[:port]/database`` (``postgres://`` too); a password in
            it is used and never shown back; else libpq reads ``PGPASSWORD`` or ``~/.pgpass``.
        patience: seconds a write waits for a database that went away before it fails.
        pool_size: the most read connections this process keeps.
        connect_timeout: seconds to wait for the server when connecting.

    Raises:
        ConfigError: psycopg is not installed, or the database's schema is newer than this
            imgkit's.
        LedgerUnavailable: the server cannot be reached, or refuses the login.

    Example:
        >>> ledger = PostgresLedger("postgresql://imgkit@db.internal/imgkit")
        >>> ledger.count()
    """

    #: See :attr:`imgkit.ledger.Ledger.COST_KEYS` and :attr:`~imgkit.ledger.Ledger.COST_SUMS`.
    COST_KEYS: ClassVar[tuple[str, ...]] = Ledger.COST_KEYS
    COST_SUMS: ClassVar[tuple[str, ...]] = Ledger.COST_SUMS
    #: From this many runs on, :meth:`to_dataframe` builds the frame from an Arrow table, as
    #: :attr:`imgkit.ledger.Ledger.ARROW_FROM_ROWS` (the same frame either way).
    ARROW_FROM_ROWS: ClassVar[int] = Ledger.ARROW_FROM_ROWS

    def __init__(
        self, url: str | Secret, *, patience: float = 300.0, pool_size: int = 4, connect_timeout: float = 10.0
    ) -> None:
        _import_psycopg()
        from psycopg_pool import ConnectionPool

        secret = url if isinstance(url, Secret) else Secret(url)
        del url  # from here on only the Secret holds it: a traceback's locals show it masked
        #: The database's URL without its password (what reprs, errors and reports show).
        self.path: str = safe_url(secret.reveal())
        self.patience = patience
        # The password goes beside the connection string, never inside it, so nothing that
        # shows a connection string (psycopg's, the pool's) can show it.
        self._conninfo, self._password = _split_password(secret, self.path, connect_timeout)
        self._closed = False
        self._lock = threading.Lock()
        self._migrate()
        self._pool: ConnectionPool[Any] = ConnectionPool(
            self._conninfo, kwargs=self._pool_kwargs, min_size=1, max_size=max(1, pool_size),
            open=False, name="imgkit-ledger", check=ConnectionPool.check_connection, timeout=connect_timeout,
            reconnect_timeout=0,
        )
        self._pool.open(wait=False)
        self._writer = _Writer(self)
        self._finalizer = weakref.finalize(self, _close, self._writer, self._pool)

    def __repr__(self) -> str:
        return f"<PostgresLedger {self.path}>"

    # --- connections and errors --------------------------------------------------------------

    def _login(self) -> dict[str, Any]:
        return {"password": self._password.reveal()} if self._password is not None else {}

    def _pool_kwargs(self) -> dict[str, Any]:
        # Asked for at each connection, so the pool keeps no copy of the password.
        return {**self._login(), "autocommit": True}

    def _scrub(self, text: str) -> str:
        """``text`` with the password (the URL's or ``PGPASSWORD``) masked, should a message
        ever quote it."""
        for secret in (self._password.reveal() if self._password else None, os.environ.get("PGPASSWORD")):
            if secret:
                text = text.replace(secret, "****")
        return text

    def _unavailable(self, what: str, exc: BaseException) -> LedgerUnavailable:
        """The error for a database that cannot be reached: it names the database (no
        password) and what failed."""
        reason = self._scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return LedgerUnavailable(
            f"the ledger database {self.path}: {what}: {reason}; once the server is back, imgkit.resume() "
            "finishes the runs",
            path=self.path, reason="unreachable",
        )

    def _connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(self._conninfo, autocommit=autocommit, **self._login())

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A read connection, once this ledger's queued writes are committed."""
        import psycopg

        self._writer.wait_idle()
        if self._closed:
            raise ConfigError(f"{self!r} is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            if not _connection_lost(exc):
                raise
            raise self._unavailable("a read failed", exc) from None

    def _migrate(self) -> None:
        """Bring the database to :data:`~imgkit.ledger.SCHEMA_VERSION`, once: every process
        takes the same advisory lock first, so the first one migrates and the others find it
        done."""
        import psycopg

        try:
            connection = self._connect(autocommit=True)
        except psycopg.OperationalError as exc:
            raise self._unavailable("cannot connect", exc) from None
        with connection as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_KEY,))
            try:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {_VERSION_TABLE} (version INTEGER NOT NULL, "
                             "applied_at DOUBLE PRECISION NOT NULL)")
                row = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {_VERSION_TABLE}").fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"the ledger database {self.path} has schema {version}, newer than this imgkit "
                        f"({SCHEMA_VERSION}); upgrade imgkit"
                    )
                for index in range(version, SCHEMA_VERSION):
                    with conn.transaction():
                        for statement in _MIGRATIONS[index].split(";"):
                            if statement.strip():
                                conn.execute(statement)
                        conn.execute(f"INSERT INTO {_VERSION_TABLE} (version, applied_at) VALUES (%s, %s)",
                                     (index + 1, time.time()))
                    log.info("ledger database %s migrated to schema %d", self.path, index + 1)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_KEY,))

    def close(self) -> None:
        """Commit the queued writes, then close the connections. Writing afterwards is an
        error."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def backup(self, path: Path | str) -> Path:
        """Not here: a database on a server is copied with the server's own tools.

        Raises:
            ConfigError: always, naming them: ``pg_dump`` (the whole database) or ``imgkit
                ledger export`` (the runs, as CSV or Parquet).
        """
        raise ConfigError(
            f"the ledger is the PostgreSQL database {self.path}, which imgkit does not copy to {path}: "
            f"back it up with pg_dump (pg_dump -Fc -f ledger.dump '{self.path}'), or write its runs to a "
            "file with `imgkit ledger export`"
        )

    # --- writing -----------------------------------------------------------------------------

    @staticmethod
    def _row(record: RunRecord) -> tuple[Any, ...]:
        values: list[Any] = []
        for name in _FIELDS:
            value = getattr(record, name)
            values.append(_dump(value) if name in _TUPLE_FIELDS else str(value) if name == "status" else value)
        values.append(len(record.files))
        return tuple(values)

    _UPSERT = (
        f"INSERT INTO runs ({_COLS}, n_images) VALUES ({', '.join('%s' for _ in _FIELDS)}, %s) "
        "ON CONFLICT (run_id) DO UPDATE SET "
        + ", ".join(f"{_q(f)} = excluded.{_q(f)}" for f in [*_FIELDS, "n_images"] if f != "run_id")
    )

    def _submit(self, job: _Job, what: str) -> Future[Any]:
        if self._closed:
            raise ConfigError(f"{self!r} is closed")
        return self._writer.submit(job, what)

    def save_nowait(self, record: RunRecord) -> Future[None]:
        """Queue one run for the writer (insert or update) and return at once; the future
        resolves when its group is committed, or carries the error."""
        row, upsert = self._row(record), self._UPSERT

        def job(conn: psycopg.Connection[Any]) -> None:
            conn.execute(upsert, row)

        return self._submit(job, f"saving run {record.run_id}")

    def save(self, record: RunRecord) -> None:
        """Insert or update one run; returns once it is committed."""
        self.save_nowait(record).result()

    async def asave(self, record: RunRecord) -> None:
        """Insert or update one run; completes once it is committed, without blocking the
        event loop. Cancelling the caller does not take the write back."""
        await asyncio.shield(asyncio.wrap_future(self.save_nowait(record)))

    def save_many(self, records: Iterable[RunRecord]) -> int:
        """Insert or update many runs in one transaction; returns how many, once committed."""
        rows = [self._row(r) for r in records]
        upsert = self._UPSERT

        def job(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(upsert, rows)

        self._submit(job, f"saving {len(rows)} runs").result()
        return len(rows)

    # --- reading -----------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[RunRecord]:
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_record(row) for row in rows]

    def get(self, run_id: str) -> RunRecord | None:
        found = self._query(f"SELECT {_COLS} FROM runs WHERE run_id = %s", (run_id,))
        return found[0] if found else None

    def by_task(self, task_id: str) -> RunRecord | None:
        found = self._query(f"SELECT {_COLS} FROM runs WHERE task_id = %s", (task_id,))
        return found[0] if found else None

    def unfinished(self) -> list[RunRecord]:
        """Runs that are not completed, failed or unknown, oldest first."""
        return self._query(
            f"SELECT {_COLS} FROM runs WHERE status <> ALL(%s) ORDER BY created_at, run_id", (_TERMINAL,)
        )

    def records(self, *, limit: int | None = None, newest_first: bool = False) -> list[RunRecord]:
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_COLS} FROM runs ORDER BY created_at {order}, run_id COLLATE \"C\" {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._query(sql)

    def count(self) -> int:
        with self._reading() as conn:
            row = conn.execute("SELECT COUNT(*) FROM runs").fetchone()
        return int(row[0]) if row else 0

    _SPENT = f"SELECT COALESCE(SUM({sql_budget()}), 0) FROM runs WHERE created_at >= %s"
    _SPENT_BY = _SPENT + ' AND "user" = %s'

    def spent_credits(self, since: float | None = None, *, user: str | None = None) -> float:
        """Credits the budget counts for runs created since ``since`` (by ``user`` only, when
        given), by the rules of :mod:`imgkit.costs`."""
        sql, params = (self._SPENT, (since or 0.0,)) if user is None else (self._SPENT_BY, (since or 0.0, user))
        with self._reading() as conn:
            row = conn.execute(sql, params).fetchone()
        return float(row[0]) if row else 0.0

    # --- admission under a budget ------------------------------------------------------------

    def admit(
        self, record: RunRecord, *, limit: float, since: float | None, user: str | None = None
    ) -> float | None:
        """Insert ``record`` only if the credits the budget counts since ``since`` (the runs of
        ``user``, or every run in the database when None) plus its estimate stay within
        ``limit``. Check and insert are one transaction holding an advisory lock on the
        budget's scope, so kernels on any number of machines cannot overspend together.

        Returns None when admitted (and committed), else the credits already counted.
        """
        result: float | None = self._admit_nowait(record, limit=limit, since=since, user=user).result()
        return result

    async def aadmit(
        self, record: RunRecord, *, limit: float, since: float | None, user: str | None = None
    ) -> float | None:
        """:meth:`admit` for an event loop."""
        future = self._admit_nowait(record, limit=limit, since=since, user=user)
        result: float | None = await asyncio.shield(asyncio.wrap_future(future))
        return result

    def _admit_nowait(
        self, record: RunRecord, *, limit: float, since: float | None, user: str | None
    ) -> Future[float | None]:
        cost = record.est_credits or 0.0
        row, upsert = self._row(record), self._UPSERT
        spent_sql, params = (
            (self._SPENT, (since or 0.0,)) if user is None else (self._SPENT_BY, (since or 0.0, user))
        )
        run_id = record.run_id

        def job(conn: psycopg.Connection[Any]) -> float | None:
            # Team first, then the person: every admission takes the keys in that order.
            if user is None:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_TEAM_KEY,))
            else:
                conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (_TEAM_KEY,))
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("budget", "user", user),))
            # Already there: this is a retry of an admission whose commit was acknowledged
            # late (the connection dropped); it was admitted then.
            if conn.execute("SELECT 1 FROM runs WHERE run_id = %s", (run_id,)).fetchone():
                return None
            found = conn.execute(spent_sql, params).fetchone()
            spent = float(found[0]) if found else 0.0
            if spent + cost > limit + 1e-9:
                return spent
            conn.execute(upsert, row)
            return None

        return self._submit(job, f"admitting run {run_id}")

    # --- leases ------------------------------------------------------------------------------

    _NOW = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"

    def claim(self, owner: str, *, ttl_s: float, run_ids: Sequence[str] | None = None) -> list[RunRecord]:
        """Lease to ``owner``, until now + ``ttl_s`` (the database's clock, one for every
        machine), the runs :func:`imgkit.resume` finishes
        (not completed, failed or unknown; only ``run_ids`` among them, when given)
        whose lease is free, expired or already ``owner``'s, in one transaction, and return
        them, oldest first. Two resumers claiming together never get the same run."""
        _check_ttl(ttl_s)
        only = "" if run_ids is None else " AND run_id = ANY(%(ids)s)"
        sql = (
            f"UPDATE runs SET lease_owner = %(owner)s, lease_until = {self._NOW} + %(ttl)s "
            f"WHERE run_id IN (SELECT run_id FROM runs WHERE {Ledger._UNFINISHED_SQL}{only} "
            f"AND (lease_until IS NULL OR lease_until < {self._NOW} OR lease_owner = %(owner)s) "
            "FOR UPDATE SKIP LOCKED) "
            f"RETURNING {_COLS}"
        )
        params = {"owner": owner, "ttl": float(ttl_s), "ids": list(run_ids or [])}

        def job(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        rows: list[tuple[Any, ...]] = self._submit(job, f"claiming runs for {owner}").result()
        return sorted((_record(row) for row in rows), key=lambda r: (r.created_at, r.run_id))

    def renew(self, owner: str, run_ids: Sequence[str], *, ttl_s: float) -> None:
        """Extend ``owner``'s lease on ``run_ids`` to now + ``ttl_s`` (runs it does not hold
        are left alone)."""
        _check_ttl(ttl_s)
        sql = (f"UPDATE runs SET lease_until = {self._NOW} + %s WHERE lease_owner = %s AND run_id = ANY(%s)")
        params = (float(ttl_s), owner, list(run_ids))

        def job(conn: psycopg.Connection[Any]) -> None:
            conn.execute(sql, params)

        self._submit(job, f"renewing {owner}'s leases").result()

    def release(self, owner: str, run_ids: Sequence[str]) -> None:
        """Give up ``owner``'s lease on ``run_ids`` (runs it does not hold are left alone)."""
        sql = "UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = %s AND run_id = ANY(%s)"
        params = (owner, list(run_ids))

        def job(conn: psycopg.Connection[Any]) -> None:
            conn.execute(sql, params)

        self._submit(job, f"releasing {owner}'s leases").result()

    # --- balance snapshots -------------------------------------------------------------------

    _SNAPSHOT_FIELDS = tuple(f.name for f in fields(BalanceSnapshot))

    def add_balance_snapshot(self, snapshot: BalanceSnapshot) -> None:
        """Keep one balance reading."""
        names = self._SNAPSHOT_FIELDS
        sql = (f"INSERT INTO balance_snapshots ({', '.join(_q(n) for n in names)}) "
               f"VALUES ({', '.join('%s' for _ in names)})")
        values = tuple(getattr(snapshot, n) for n in names)

        def job(conn: psycopg.Connection[Any]) -> None:
            conn.execute(sql, values)

        self._submit(job, f"saving a balance snapshot of {snapshot.provider}").result()

    def balance_snapshots(
        self, *, provider: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[BalanceSnapshot]:
        """The balance readings (of ``provider``, taken between ``since`` and ``until``,
        inclusive), oldest first."""
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        if provider is not None:
            where.append("provider = %s")
            params.append(provider)
        if since is not None:
            where.append("taken_at >= %s")
            params.append(since)
        if until is not None:
            where.append("taken_at <= %s")
            params.append(until)
        names = self._SNAPSHOT_FIELDS
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(_q(n) for n in names)} FROM balance_snapshots WHERE {' AND '.join(where)} "
                "ORDER BY taken_at, id",
                params,
            ).fetchall()
        return [BalanceSnapshot(**dict(zip(names, row, strict=True))) for row in rows]

    # --- cost sums ---------------------------------------------------------------------------

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
        and price sheet with ``by_tag``) and ``extra_keys``: the rows of
        :meth:`imgkit.ledger.Ledger.cost_sums`, with its arguments."""
        query = cost_sums_query(
            POSTGRES_COSTS, by_tag=by_tag, since=since, until=until, until_inclusive=until_inclusive, tags=tags,
            qualities=qualities, extra_keys=extra_keys, models=models, users=users, projects=projects,
        )
        with self._reading() as conn:
            rows = conn.execute(query.sql, query.params).fetchall()
        return query.sums(rows)

    # --- the DataFrame -----------------------------------------------------------------------

    def to_dataframe(self, *, data_dir: Path | None = None) -> pd.DataFrame:
        """All runs as a typed DataFrame, oldest first: the frame
        :meth:`imgkit.ledger.Ledger.to_dataframe` gives for the same runs (built by the same
        code: row by row below :attr:`~imgkit.ledger.Ledger.ARROW_FROM_ROWS` runs, from an Arrow
        table of the same column types from there on)."""
        import pandas as pd

        from imgkit.ledger import _no_gc

        with _no_gc():
            with self._reading() as conn:
                rows = conn.execute(f'SELECT {_COLS} FROM runs ORDER BY created_at, run_id COLLATE "C"').fetchall()
            if len(rows) < self.ARROW_FROM_ROWS:
                return Ledger._rows_frame(pd, rows, data_dir)
            import pyarrow as pa

            columns = list(zip(*rows, strict=True))
            del rows
            table = pa.table({
                name: pa.array(values, type=getattr(pa, _COLUMN_TYPES[name])())
                for name, values in zip(_FIELDS, columns, strict=True)
            })
            return _arrow_frame(pd, table, data_dir)

    # --- ratings -----------------------------------------------------------------------------

    _RATING_FIELDS = Ledger._RATING_FIELDS

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
        """Keep one blind pairwise pick and return its id (see
        :meth:`imgkit.ledger.Ledger.add_rating`)."""
        if choice not in ("left", "right", "same"):
            raise ValidationError("choice", choice, '"left", "right" or "same"')
        winner = {"left": left_quality, "right": right_quality}.get(choice)
        values = (
            time.time() if created_at is None else created_at, prompt, left_run_id, right_run_id,
            int(left_image), int(right_image), left_quality, right_quality, choice, winner, tag,
        )

        def job(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                "INSERT INTO ratings (created_at, prompt, left_run_id, right_run_id, left_image, right_image, "
                "left_quality, right_quality, choice, winner_quality, tag) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                values,
            ).fetchone()
            return int(row[0]) if row else 0

        rating_id: int = self._submit(job, "saving a rating").result()
        return rating_id

    def ratings_frame(self) -> pd.DataFrame:
        """Every pairwise rating as a DataFrame, oldest first (see
        :meth:`imgkit.ledger.Ledger.ratings_frame`)."""
        from imgkit.ledger import _ratings_frame

        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(self._RATING_FIELDS)} FROM ratings ORDER BY created_at, id"
            ).fetchall()
        return _ratings_frame(rows, self._RATING_FIELDS)


def _split_password(url: Secret, shown: str, connect_timeout: float) -> tuple[str, Secret | None]:
    """The connection string of ``url`` without its password, and the password (if any)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(url.reveal())
    except psycopg.ProgrammingError:
        raise ConfigError(
            f"IMGKIT_LEDGER {shown!r} is not a PostgreSQL URL libpq reads (postgresql://user@host[:port]/database)"
        ) from None
    password = params.pop("password", None)
    params.setdefault("connect_timeout", max(1, round(connect_timeout)))
    params.setdefault("application_name", "imgkit")
    return make_conninfo("", **params), Secret(str(password)) if password is not None else None


def _connection_lost(exc: BaseException) -> bool:
    """True for psycopg's errors of a connection that failed or could not be made (no SQL
    state: the client's own; class 08, connection exception; 57P, the server shutting down),
    as against an error in the data or the statement."""
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout):
        return True
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))


def _check_ttl(ttl_s: float) -> None:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not ttl_s > 0:
        raise ValidationError("ttl_s", ttl_s, "a number of seconds above 0")


def _record(row: Sequence[Any]) -> RunRecord:
    values = dict(zip(_FIELDS, row, strict=True))
    for name in _TUPLE_FIELDS:
        values[name] = _load_cell(values[name], values["run_id"], name)
    return RunRecord(**values)


def _close(writer: _Writer, pool: ConnectionPool[Any]) -> None:
    writer.close()
    pool.close()
