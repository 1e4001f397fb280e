"""Moving runs between ledgers: bring a personal SQLite ledger into the current one
(``imgkit ledger import``), and take runs out as Parquet or CSV (``imgkit ledger export``).

Import merges by run id and never overwrites: a run the current ledger does not have is
added; one it has with the same fields is skipped as identical; one it has with different
fields is a conflict, left as it is and reported by run id. So importing the same file
twice changes nothing the second time. The source file is opened read-only (it may be a
backup, or a ledger another imgkit still uses). Runs recorded before imgkit kept who ran
them get the importing user (or the one named), so the team's bill can group them, and
where their images went (this machine, the source's folder).

Export writes the runs (optionally those created in a date range) to ``.parquet`` (list
columns stay lists) or ``.csv`` (list columns as JSON text), atomically: a temporary file in
the same folder replaces the target in one step, so a reader never sees half a file.

Both work on whichever ledger the session uses (the personal SQLite file, or a team's
database with ``IMGKIT_LEDGER``), through the ledger's public methods only.

Example:
    >>> from imgkit import teamio
    >>> teamio.ledger_import("~/.local/share/imgkit/ledger.sqlite3")
    ImportResult(imported=120, identical=0, conflicting=())
    >>> teamio.ledger_export("team.parquet", since="2026-12-01")
    ExportResult(path=PosixPath('team.parquet'), runs=120, format='parquet')
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import sqlite3
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from imgkit._files import atomic_path
from imgkit.config import current_user
from imgkit.errors import ConfigError, ValidationError
from imgkit.ledger import APPLICATION_ID, SCHEMA_VERSION
from imgkit.request import RunRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EXPORT_FORMATS", "ExportResult", "ImportResult", "export_ledger", "import_ledger",
           "ledger_export", "ledger_import", "read_runs"]

#: The file kinds :func:`export_ledger` writes, by extension.
EXPORT_FORMATS = {".parquet": "parquet", ".csv": "csv"}
#: Columns that hold lists (of texts; ``providers_tried`` of small mappings).
_LIST_COLUMNS = ("reference_images", "result_urls", "files", "thumbs", "tags", "providers_tried")
_RUN_FIELDS = tuple(f.name for f in fields(RunRecord))
#: Runs written per transaction on import.
_CHUNK = 1000


class _Ledger(Protocol):
    """The part of the ledger contract import and export use (both backends have it)."""

    def get(self, run_id: str) -> RunRecord | None: ...

    def save_many(self, records: Sequence[RunRecord]) -> int: ...

    def to_dataframe(self, *, data_dir: Path | None = None) -> pd.DataFrame: ...


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did.

    Attributes:
        source: the file imported.
        imported: runs added to the current ledger.
        identical: runs it already had, field for field (skipped).
        conflicting: the ids of runs it had with different fields (left as they were).
    """

    source: Path
    imported: int
    identical: int
    conflicting: tuple[str, ...]

    def __str__(self) -> str:
        text = (f"{self.source}: imported {self.imported}, identical {self.identical}, "
                f"conflicting {len(self.conflicting)}")
        if self.conflicting:
            shown = ", ".join(self.conflicting[:20]) + (" ..." if len(self.conflicting) > 20 else "")
            text += f" (kept as they are in the current ledger: {shown})"
        return text

    def __repr__(self) -> str:
        return (f"ImportResult(imported={self.imported}, identical={self.identical}, "
                f"conflicting={self.conflicting!r})")


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote: the file, how many runs, and its format."""

    path: Path
    runs: int
    format: str

    def __str__(self) -> str:
        return f"exported {self.runs} run{'' if self.runs == 1 else 's'} to {self.path} ({self.format})"


# --- import ------------------------------------------------------------------------------


def read_runs(source: str | Path) -> list[RunRecord]:
    """Every run of the imgkit SQLite ledger at ``source``, oldest first, read without writing
    to it (a ledger of an earlier schema reads too; the fields it lacks are empty).

    Raises:
        ConfigError: no such file, not an imgkit ledger, or one from a newer imgkit.
    """
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(f"cannot import {path}: there is no such file (give the path of a ledger.sqlite3)")
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=60.0)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot import {path}: {exc}") from exc
    try:
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot import {path}: it is not an imgkit ledger ({exc})") from exc
        ours = app_id == APPLICATION_ID or (app_id == 0 and version > 0)
        if not ours or not {"run_id", "task_id", "status"} <= set(columns):
            raise ConfigError(f"cannot import {path}: it is not an imgkit ledger (no imgkit runs table); "
                              "nothing was imported")
        if version > SCHEMA_VERSION:
            raise ConfigError(f"cannot import {path}: its ledger schema {version} is newer than this imgkit's "
                              f"({SCHEMA_VERSION}); upgrade imgkit")
        wanted = [name for name in _RUN_FIELDS if name in columns]
        rows = conn.execute(f"SELECT {', '.join(wanted)} FROM runs ORDER BY created_at, run_id").fetchall()
    finally:
        conn.close()
    out = []
    for row in rows:
        values = dict(zip(wanted, row, strict=True))
        for name in _LIST_COLUMNS:
            if name in values:
                try:
                    values[name] = tuple(json.loads(values[name] or "[]"))
                except ValueError:
                    raise ConfigError(f"cannot import {path}: run {values['run_id']} has a damaged {name} "
                                      f"column ({values[name]!r}); nothing was imported") from None
        try:
            out.append(RunRecord(**values))
        except (TypeError, ValueError) as exc:  # a status or field this imgkit does not know
            raise ConfigError(f"cannot import {path}: run {values['run_id']} does not read as a run ({exc}); "
                              "nothing was imported") from None
    return out


def import_ledger(source: str | Path, into: _Ledger, *, user: str | None = None) -> ImportResult:
    """Merge the runs of the SQLite ledger at ``source`` into ``into``, by run id: new runs
    are added, identical ones skipped, different ones reported and left as they are.

    Runs from before imgkit recorded who ran them and where their files went get: ``user``
    (else the current user), this machine's name, and the source's folder as their image
    directory when it holds an ``images/`` folder (a ledger in its data directory). These
    filled-in fields never make a run conflict: only what the source recorded is compared.

    Args:
        source: an imgkit SQLite ledger (``ledger.sqlite3``, or a backup of one).
        into: the ledger to merge into.
        user: who the runs recorded without a user are attributed to (default: the current
            user, :func:`imgkit.config.current_user`).
    """
    if user is not None and (not isinstance(user, str) or not user.strip()):
        raise ValidationError("user", user, "a user name, or None for the current user")
    path = Path(source).expanduser()
    if Path(str(getattr(into, "path", ""))).resolve() == path.resolve():
        raise ConfigError(f"cannot import {path} into itself: it is the current ledger")
    fill = {
        "user": user.strip() if user is not None else current_user(),
        "host": socket.gethostname(),
        "data_dir": str(path.resolve().parent) if (path.parent / "images").is_dir() else None,
    }
    new: list[RunRecord] = []
    identical = 0
    conflicting: list[str] = []
    for record in read_runs(path):
        missing = {name: value for name, value in fill.items() if getattr(record, name) is None}
        have = into.get(record.run_id)
        if have is None:
            new.append(record.replace(**missing))
        elif have.replace(**dict.fromkeys(missing)) == record:
            identical += 1
        else:
            conflicting.append(record.run_id)
    for start in range(0, len(new), _CHUNK):
        into.save_many(new[start : start + _CHUNK])
    return ImportResult(path, len(new), identical, tuple(conflicting))


# --- export ------------------------------------------------------------------------------


def _bound(name: str, value: object) -> tuple[float | None, bool]:
    """A Unix time from a date, datetime or ISO text (naive is UTC), and whether it was a
    date alone (an ``until`` date then takes that whole day)."""
    if value is None:
        return None, False
    allowed = "a date, datetime or ISO 8601 text such as 2026-12-01"
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(name, value, allowed) from None
        date_only = len(text) == 10
    elif isinstance(value, dt.datetime):
        parsed, date_only = value, False
    elif isinstance(value, dt.date):
        parsed, date_only = dt.datetime(value.year, value.month, value.day), True
    else:
        raise ValidationError(name, value, allowed)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp(), date_only


def _runs_between(ledger: _Ledger, since: object, until: object) -> pd.DataFrame:
    start, _ = _bound("since", since)
    end, whole_day = _bound("until", until)
    if start is not None and end is not None and start > end:
        raise ValidationError("until", until, f"a date or time on or after since={since}")
    import numpy as np
    import pandas as pd

    df = ledger.to_dataframe()
    created = df["created_at"]
    keep = np.ones(len(df), dtype=bool)
    if start is not None:
        keep &= (created >= pd.Timestamp(start, unit="s", tz="UTC")).to_numpy(dtype=bool)
    if end is not None:
        stamp = pd.Timestamp(end, unit="s", tz="UTC")
        before = created < stamp + pd.Timedelta(days=1) if whole_day else created <= stamp
        keep &= before.to_numpy(dtype=bool)
    return df.loc[keep].reset_index(drop=True)


def export_ledger(
    path: str | Path, ledger: _Ledger, *, since: object = None, until: object = None
) -> ExportResult:
    """Write the runs of ``ledger`` (created from ``since`` to ``until``) to ``path``.

    The columns are :func:`imgkit.runs`' (file paths relative to each run's ``data_dir``).
    Parquet keeps the list columns as lists and ``providers_tried`` as JSON text; CSV writes
    every list as JSON text and times as ISO 8601 (UTC).

    Args:
        path: ``*.parquet`` or ``*.csv``; an existing file is replaced (atomically).
        ledger: the ledger to read.
        since: keep runs created at or after this date, datetime or ISO text (UTC unless it
            says otherwise).
        until: keep runs created up to this point; a date alone includes that whole day.
    """
    target = Path(path).expanduser()
    kind = EXPORT_FORMATS.get(target.suffix.lower())
    if kind is None:
        raise ValidationError("path", str(path), "a file name ending in .parquet or .csv")
    if not target.parent.is_dir():
        raise ConfigError(f"cannot export to {target}: the folder {target.parent} does not exist")
    df = _runs_between(ledger, since, until)
    with atomic_path(target) as tmp:
        if kind == "parquet":
            _write_parquet(df, tmp)
        else:
            _write_csv(df, tmp)
    return ExportResult(target, len(df), kind)


def _write_parquet(df: pd.DataFrame, tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    lists = {name: pa.array([list(v) for v in df[name]], type=pa.list_(pa.string())) for name in _LIST_COLUMNS[:-1]}
    lists["providers_tried"] = pa.array([json.dumps(list(v)) for v in df["providers_tried"]], type=pa.string())
    table = pa.Table.from_pandas(df.drop(columns=list(lists)), preserve_index=False)
    for name in df.columns:  # back in the frame's order
        if name in lists:
            table = table.add_column(list(df.columns).index(name), name, lists[name])
    pq.write_table(table, tmp)


def _write_csv(df: pd.DataFrame, tmp: Path) -> None:
    out = df.copy()
    for name in _LIST_COLUMNS:
        out[name] = [json.dumps(list(v)) for v in out[name]]
    for name in ("created_at", "submitted_at", "completed_at"):
        out[name] = out[name].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(tmp, index=False)


# --- the default session's ledger ---------------------------------------------------------


def ledger_import(source: str | Path, *, user: str | None = None) -> ImportResult:
    """Merge a SQLite ledger into the default session's ledger (the personal file, or the
    team's database with ``IMGKIT_LEDGER``); :func:`import_ledger`. Running it again with the
    same file changes nothing.

    Example:
        >>> teamio.ledger_import("~/.local/share/imgkit/ledger.sqlite3")
    """
    from imgkit.session import get_session

    return import_ledger(source, get_session().ledger, user=user)


def ledger_export(path: str | Path, *, since: object = None, until: object = None) -> ExportResult:
    """Write the default session's runs to Parquet or CSV; :func:`export_ledger`.

    Example:
        >>> teamio.ledger_export("team.parquet", since="2026-12-01")
    """
    from imgkit.session import get_session

    return export_ledger(path, get_session().ledger, since=since, until=until)

