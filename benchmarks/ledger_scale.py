"""4. The ledger and the faces over it at 10,000, 100,000 and 1,000,000 runs.

A synthetic ledger (over 180 days, fewer for the small sizes; mixed tiers, sizes and
statuses, one or more files each, tags) is written with :meth:`Ledger.save_many` in batches,
then read back:

- insert: the profile's size (100,000 in ``full``), all batches, each one transaction (the
  ledger's durability settings unchanged), into a fresh file each repeat.
- ``imgkit.runs()`` at each size (``full``: 10k, 100k and 1M runs; the files of the other
  sizes are built once, outside the clocks), against ``pandas.read_sql("SELECT * FROM runs")``
  on the same file (untyped: JSON lists stay text, times stay floats).
- grouped cost report over the ledger at each size: ``imgkit.reports.report(group_by=(day,
  quality, size))`` with no DataFrame, so the sums are grouped in SQL, and its notebook HTML.
- at the profile's size also the report over the loaded DataFrame (``report(df, ...)``,
  sums in pandas) and a spend plot: ``imgkit.plots.spend_over_time(df)`` rendered to PNG.

pandas, matplotlib and imgkit's report modules are imported before the clocks start: a
notebook pays for those imports once, whatever the ledger's size.

This scenario has no service, so it runs on every CPU (:data:`ALL_CPUS`), as a notebook
would: ``imgkit.runs()`` reads through helper processes (from 40,000 runs two, a half of the
rows each) that read the next batch of rows while the notebook's process converts the last,
and the report sums two halves of the days at once; ``pandas.read_sql`` uses one core
either way.
"""

from __future__ import annotations

import io
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._core import Profile, Row

__all__ = ["run"]

SCENARIO = "4 ledger at scale"
#: Run on every CPU, not only the clients' half (see the docstring).
ALL_CPUS = True
_TIERS = (("low", 0.26), ("medium", 1.0), ("high", 3.91))
_SIZES = (("1024x1024", 1.0), ("1024x1536", 1.47), ("1536x1024", 1.47))
_STATUSES = ("completed",) * 17 + ("failed", "unknown", "failed")
_NOW = time.time()


def synthetic_records(count: int, *, seed: int = 3, first: int = 0, total: int | None = None) -> list[Any]:
    """``count`` plausible finished runs, oldest first: runs ``first`` to ``first + count``
    of a ledger of ``total`` (``count`` by default), so a large ledger can be written in
    pieces."""
    from imgkit.request import RunRecord

    total = count if total is None else total
    rng = random.Random(seed + first)
    now = _NOW
    days = min(180, max(7, total // 500))  # 100,000 runs: 180 days, about 550 a day
    start = now - days * 86400
    records = []
    for i in range(first, first + count):
        created = start + (now - start) * i / total
        tier, tier_mult = rng.choice(_TIERS)
        size, size_mult = rng.choice(_SIZES)
        n = rng.choice((1, 1, 1, 2, 4))
        credits = round(2.4192 * tier_mult * size_mult * n, 5)
        status = rng.choice(_STATUSES)
        done = status == "completed"
        digest = f"{rng.getrandbits(256):064x}"
        files = tuple(f"images/{digest[:2]}/{digest}-{k}.png" for k in range(n)) if done else ()
        records.append(
            RunRecord(
                run_id=f"run-bench-{i:07d}",
                provider="gateway",
                model="gpt-image-1",
                prompt=f"benchmark prompt {i % 997}: a lighthouse at dusk, oil on canvas, wide shot",
                size=size,
                quality=tier,
                n=n,
                task_id=f"task-unified-{int(created)}-{i:08d}",
                status=status,
                progress=100 if done else 40,
                error_code=None if done else "generation_timeout",
                error_message=None if done else "Generation timeout.",
                est_credits=credits,
                est_usd=round(credits / 72, 5),
                est_cny=round(credits / 7.2, 5),
                price_sheet="evolink-table-2026-11",
                credits_reserved=credits,
                created_at=created,
                submitted_at=created + 0.2,
                completed_at=created + 0.2 + rng.uniform(3, 30),
                estimated_s=10.0,
                result_urls=tuple(f"https://files.example/{digest}/{k}.png" for k in range(n)),
                files=files,
                thumbs=tuple(p.replace("images/", "thumbs/").replace(".png", ".jpg") for p in files),
                tags=(f"sweep-{i // 200:05d}", rng.choice(("project-a", "project-b", "campaign"))),
                attempts=1,
            )
        )
    return records


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _sizes(profile: Profile) -> tuple[int, ...]:
    base = profile.ledger_rows
    if profile.name == "full":
        return (base // 10, base, base * 10)
    return (base // 10, base) if profile.name == "quick" else (base,)


def _build(path: Path, count: int, batch: int) -> None:
    """A ledger of ``count`` synthetic runs, written in pieces (a million records at once
    would hold gigabytes)."""
    from imgkit.ledger import Ledger

    ledger = Ledger(path)
    try:
        piece = 50_000
        for first in range(0, count, piece):
            records = synthetic_records(min(piece, count - first), first=first, total=count)
            for i in range(0, len(records), batch):
                ledger.save_many(records[i : i + batch])
    finally:
        ledger.close()


def _n(count: int) -> str:
    return f"{count:,}"


def run(profile: Profile, repeats: int) -> list[Row]:
    import matplotlib.figure  # noqa: F401  (imported before the clocks start; see the docstring)
    import pandas as pd

    import imgkit
    from imgkit.ledger import Ledger

    count, batch = profile.ledger_rows, profile.ledger_batch
    sizes = _sizes(profile)
    records = synthetic_records(count)
    rows: dict[str, Row] = {
        "insert": Row(SCENARIO, f"insert {count:,} runs, save_many in batches of {batch:,}", unit="s",
                      target=("<=", 5.0)),
    }
    for size in sizes:
        rows[f"runs {size}"] = Row(SCENARIO, f"imgkit.runs() over {_n(size)} runs", unit="s")
        rows[f"read_sql {size}"] = Row(SCENARIO, f"baseline: pandas.read_sql(SELECT * FROM runs), {_n(size)} runs",
                                       unit="s")
        rows[f"ratio {size}"] = Row(SCENARIO, f"imgkit.runs() / pandas.read_sql, {_n(size)} runs", unit="x",
                                    target=("<=", 0.5) if size == count else None)
        rows[f"ledger report {size}"] = Row(
            SCENARIO, f"cost report over the ledger by day, tier, size, summed in SQL (+ notebook HTML), "
            f"{_n(size)} runs", unit="s", target=("<=", 3.0) if size == max(sizes) else None,
        )
    rows["report"] = Row(SCENARIO, f"cost report over the loaded DataFrame, by day, tier, size (+ notebook HTML), "
                         f"{_n(count)} runs", unit="s", target=("<=", 2.0))
    rows["plot"] = Row(SCENARIO, "spend plot (spend_over_time, rendered to PNG)", unit="s", target=("<=", 2.0))
    report_fn, ledger_report_fn, plot_fn, missing = _faces()
    with tempfile.TemporaryDirectory(prefix="imgkit-bench-") as tmp:
        homes = {}
        for size in sizes:
            homes[size] = Path(tmp) / f"ledger-{size}"
            _build(homes[size] / "ledger.sqlite3", size, batch)
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="imgkit-bench-") as fresh:
                ledger = Ledger(Path(fresh) / "ledger.sqlite3")

                def insert(ledger: Ledger = ledger) -> None:
                    for i in range(0, count, batch):
                        ledger.save_many(records[i : i + batch])

                rows["insert"].values.append(_timed(insert))
                ledger.close()
            for size in sizes:
                _measure(size, homes[size], count, rows, imgkit, pd, report_fn, ledger_report_fn, plot_fn)
    for key, why in missing.items():
        for name, row in rows.items():
            if name.startswith(key):
                row.note = why
    return list(rows.values())


def _measure(
    size: int, home: Path, count: int, rows: dict[str, Row], imgkit: Any, pd: Any,
    report_fn: Callable[[Any], object] | None, ledger_report_fn: Callable[[], object] | None,
    plot_fn: Callable[[Any], object] | None,
) -> None:
    """One repeat at one size: runs() and its baseline, the reports, the plot."""
    session = imgkit.configure(api_key="sk-bench", base_url="http://127.0.0.1:9", data_dir=home)
    try:
        started = time.perf_counter()
        df = imgkit.runs()
        runs_s = time.perf_counter() - started
        conn = sqlite3.connect(home / "ledger.sqlite3")
        try:
            started = time.perf_counter()
            pd.read_sql("SELECT * FROM runs", conn)
            sql_s = time.perf_counter() - started
        finally:
            conn.close()
        rows[f"runs {size}"].values.append(runs_s)
        rows[f"read_sql {size}"].values.append(sql_s)
        rows[f"ratio {size}"].values.append(runs_s / sql_s)
        if len(df) != size:
            raise RuntimeError(f"imgkit.runs() returned {len(df)} rows, expected {size}")
        if ledger_report_fn is not None:
            rows[f"ledger report {size}"].values.append(_timed(ledger_report_fn))
        if size == count:
            if report_fn is not None:
                report_fn(df.head(50))  # warm: lazy imports inside the faces
                rows["report"].values.append(_timed(lambda df=df: report_fn(df)))
            if plot_fn is not None:
                plot_fn(df.head(50))
                rows["plot"].values.append(_timed(lambda df=df: plot_fn(df)))
        del df
    finally:
        session.close()


def _faces() -> tuple[
    Callable[[Any], object] | None, Callable[[], object] | None, Callable[[Any], object] | None, dict[str, str]
]:
    """The report and plot calls, or why they are unavailable (they are built elsewhere)."""
    missing: dict[str, str] = {}
    report_fn = ledger_report_fn = plot_fn = None
    try:
        from imgkit import reports

        def report_fn(df: Any) -> object:
            rep = reports.report(df, group_by=("day", "quality", "size"))
            return rep._repr_html_()

        def ledger_report_fn() -> object:
            rep = reports.report(group_by=("day", "quality", "size"))
            return rep._repr_html_()

    except Exception as exc:  # an optional face still being built must not stop the run
        why = f"imgkit.reports unavailable: {type(exc).__name__}: {exc}"[:120]
        missing["report"] = missing["ledger report"] = why
    try:
        from imgkit import plots

        def plot_fn(df: Any) -> object:
            fig = plots.spend_over_time(df)
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            return buf.getvalue()

    except Exception as exc:
        missing["plot"] = f"imgkit.plots unavailable: {type(exc).__name__}: {exc}"[:120]
    return report_fn, ledger_report_fn, plot_fn, missing
