"""4. The ledger and the faces over it at 100,000 runs.

A synthetic ledger of ``rows`` runs over 180 days (fewer for the small profiles; mixed tiers,
sizes and statuses, one or more files each, tags) is written with :meth:`Ledger.save_many` in batches, then read back:

- insert: all batches, each one transaction (the ledger's durability settings unchanged).
- ``imgkit.runs()``: the typed DataFrame, against ``pandas.read_sql("SELECT * FROM runs")``
  on the same file (untyped: JSON lists stay text, times stay floats).
- grouped cost report: ``imgkit.reports.report(df, group_by=(day, quality, size))`` and its
  notebook HTML.
- spend plot: ``imgkit.plots.spend_over_time(df)`` rendered to PNG, as a notebook shows it.

pandas, matplotlib and imgkit's report modules are imported before the clocks start: a
notebook pays for those imports once, whatever the ledger's size.
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
_TIERS = (("low", 0.26), ("medium", 1.0), ("high", 3.91))
_SIZES = (("1024x1024", 1.0), ("1024x1536", 1.47), ("1536x1024", 1.47))
_STATUSES = ("completed",) * 17 + ("failed", "unknown", "failed")


def synthetic_records(count: int, *, seed: int = 3) -> list[Any]:
    """``count`` plausible finished runs, oldest first."""
    from imgkit.request import RunRecord

    rng = random.Random(seed)
    now = time.time()
    days = min(180, max(7, count // 500))  # 100,000 runs: 180 days, about 550 a day
    start = now - days * 86400
    records = []
    for i in range(count):
        created = start + (now - start) * i / count
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


def run(profile: Profile, repeats: int) -> list[Row]:
    import matplotlib.figure  # noqa: F401  (imported before the clocks start; see the docstring)
    import pandas as pd

    import imgkit
    from imgkit.ledger import Ledger

    count, batch = profile.ledger_rows, profile.ledger_batch
    records = synthetic_records(count)
    rows = {
        "insert": Row(SCENARIO, f"insert {count:,} runs, save_many in batches of {batch:,}", unit="s",
                      target=("<=", 5.0)),
        "runs": Row(SCENARIO, f"imgkit.runs() over {count:,} runs", unit="s", target=("<=", 1.0)),
        "read_sql": Row(SCENARIO, "baseline: pandas.read_sql(SELECT * FROM runs), same file", unit="s"),
        "runs_ratio": Row(SCENARIO, "imgkit.runs() / pandas.read_sql", unit="x"),
        "report": Row(SCENARIO, "cost report grouped by day, tier, size (+ its notebook HTML)", unit="s",
                      target=("<=", 2.0)),
        "plot": Row(SCENARIO, "spend plot (spend_over_time, rendered to PNG)", unit="s", target=("<=", 2.0)),
    }
    report_fn, plot_fn, missing = _faces()
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="imgkit-bench-") as tmp:
            path = Path(tmp) / "ledger.sqlite3"
            ledger = Ledger(path)

            def insert(ledger: Ledger = ledger) -> None:
                for i in range(0, count, batch):
                    ledger.save_many(records[i : i + batch])

            rows["insert"].values.append(_timed(insert))
            ledger.close()
            session = imgkit.configure(api_key="sk-bench", base_url="http://127.0.0.1:9", data_dir=tmp)
            try:
                started = time.perf_counter()
                df = imgkit.runs()
                runs_s = time.perf_counter() - started
                conn = sqlite3.connect(path)
                try:
                    started = time.perf_counter()
                    pd.read_sql("SELECT * FROM runs", conn)
                    sql_s = time.perf_counter() - started
                finally:
                    conn.close()
                rows["runs"].values.append(runs_s)
                rows["read_sql"].values.append(sql_s)
                rows["runs_ratio"].values.append(runs_s / sql_s)
                if len(df) != count:
                    raise RuntimeError(f"imgkit.runs() returned {len(df)} rows, expected {count}")
                if report_fn is not None:
                    report_fn(df.head(50))  # warm: lazy imports inside the faces
                    rows["report"].values.append(_timed(lambda df=df: report_fn(df)))
                if plot_fn is not None:
                    plot_fn(df.head(50))
                    rows["plot"].values.append(_timed(lambda df=df: plot_fn(df)))
            finally:
                session.close()
    for key, why in missing.items():
        rows[key].note = why
    return list(rows.values())


def _faces() -> tuple[Callable[[Any], object] | None, Callable[[Any], object] | None, dict[str, str]]:
    """The report and plot calls, or why they are unavailable (they are built elsewhere)."""
    missing: dict[str, str] = {}
    report_fn = plot_fn = None
    try:
        from imgkit import reports

        def report_fn(df: Any) -> object:
            rep = reports.report(df, group_by=("day", "quality", "size"))
            return rep._repr_html_()

    except Exception as exc:  # an optional face still being built must not stop the run
        missing["report"] = f"imgkit.reports unavailable: {type(exc).__name__}: {exc}"[:120]
    try:
        from imgkit import plots

        def plot_fn(df: Any) -> object:
            fig = plots.spend_over_time(df)
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            return buf.getvalue()

    except Exception as exc:
        missing["plot"] = f"imgkit.plots unavailable: {type(exc).__name__}: {exc}"[:120]
    return report_fn, plot_fn, missing
