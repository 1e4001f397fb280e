"""Spend plots and the cost rules they share with reports, on real SQLite ledgers."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.dates import ConciseDateFormatter
from matplotlib.figure import Figure

from imgkit import plots
from imgkit.ledger import Ledger
from imgkit.pricing import estimate
from imgkit.request import RunRecord

TABLE = "evolink-table-2026-11"
FORMULA = "evolink-formula-2026-11"


def _at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def _run(
    run_id: str,
    created: str,
    quality: str,
    size: str,
    n: int,
    status: str,
    *,
    task: bool = True,
    reserved: float | str | None = "estimate",
    charged: float | None = None,
    latency: float | None = None,
    sheet: str = TABLE,
    tags: tuple[str, ...] = (),
    error: str | None = None,
    prompt: str = "A beautiful colorful sunset over the ocean",
) -> RunRecord:
    est = estimate(quality=quality, size=size, n=n, sheet=sheet)
    t = _at(created)
    done = status == "completed"
    return RunRecord(
        run_id=run_id,
        provider="sandbox",
        model="gpt-image-1",
        prompt=prompt,
        size=size,
        quality=quality,
        n=n,
        task_id=f"task-{run_id}" if task else None,
        status=status,
        error_code=error,
        est_credits=est.credits,
        est_usd=est.usd,
        est_cny=est.cny,
        price_sheet=sheet,
        credits_reserved=est.credits if reserved == "estimate" and task else (None if reserved == "estimate" else reserved),
        credits_charged=charged,
        created_at=t,
        submitted_at=t + 1 if task else None,
        completed_at=t + 1 + latency if latency is not None else None,
        files=tuple(f"images/ab/{run_id}-{i}.png" for i in range(n)) if done else (),
        tags=tags,
        attempts=1,
    )


def sample_runs() -> list[RunRecord]:
    """Eight runs over five days, every tier, three sizes, both shipped sheets, and each way a
    run can end: charged, reserved, failed before and after the service, unknown, and a
    completed run the service reported nothing for."""
    return [
        _run("r1", "2026-11-01T10:00:00", "low", "1024x1024", 2, "completed", latency=10, tags=("alpha",)),
        _run("r2", "2026-11-01T15:00:00", "medium", "1536x1024", 1, "completed", charged=3.5, latency=20,
             tags=("alpha", "beta")),
        _run("r3", "2026-11-02T09:00:00", "high", "1024x1024", 1, "completed", latency=50, tags=("beta",)),
        _run("r4", "2026-11-02T12:00:00", "high", "1024x1536", 2, "failed", task=False, error="connection_error"),
        _run("r5", "2026-11-03T08:00:00", "medium", "1024x1024", 1, "failed", error="content_policy_violation"),
        _run("r6", "2026-11-03T20:00:00", "high", "1536x1024", 1, "unknown", task=False, error="unknown_outcome"),
        _run("r7", "2026-11-04T11:00:00", "medium", "1024x1024", 1, "completed", sheet=FORMULA, latency=25,
             tags=("gamma",)),
        _run("r8", "2026-11-05T23:30:00", "low", "1024x1536", 1, "completed", reserved=None, latency=8),
    ]


#: Hand-computed: what each sample run cost in credits (r6 unknown: not counted).
EXPECTED_CREDITS = {
    "r1": 1.25798, "r2": 3.5, "r3": 9.45907, "r4": 0.0, "r5": 0.0, "r7": 1.96, "r8": 0.92462,
}
EXPECTED_BASIS = {
    "r1": "reserved", "r2": "charged", "r3": "reserved", "r4": "no task", "r5": "failed",
    "r6": "may have cost", "r7": "reserved", "r8": "estimate",
}


def expected_usd(run_id: str) -> float:
    credits = EXPECTED_CREDITS[run_id]
    return credits / 10 / 7.1 if run_id == "r7" else credits / 72


def expected_cny(run_id: str) -> float:
    credits = EXPECTED_CREDITS[run_id]
    return credits / 10 if run_id == "r7" else credits / 72 * 7.1


def ledger_frame(path: Path, records: list[RunRecord]) -> pd.DataFrame:
    ledger = Ledger(path)
    try:
        ledger.save_many(records)
        return ledger.to_dataframe()
    finally:
        ledger.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return ledger_frame(tmp_path_factory.mktemp("plots") / "ledger.sqlite3", sample_runs())


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return ledger_frame(tmp_path_factory.mktemp("empty") / "ledger.sqlite3", [])


# --- the cost rules ----------------------------------------------------------------------


def test_with_costs_applies_the_rules_and_each_runs_sheet(runs: pd.DataFrame) -> None:
    costs = plots.with_costs(runs).set_index("run_id")
    assert {r: costs.loc[r, "cost_basis"] for r in EXPECTED_BASIS} == EXPECTED_BASIS
    for run_id, credits in EXPECTED_CREDITS.items():
        assert costs.loc[run_id, "charged_credits"] == pytest.approx(credits, abs=1e-9)
        assert costs.loc[run_id, "charged_usd"] == pytest.approx(expected_usd(run_id), abs=1e-12)
        assert costs.loc[run_id, "charged_cny"] == pytest.approx(expected_cny(run_id), abs=1e-12)
    assert costs.loc[["r6"], ["charged_credits", "charged_usd", "charged_cny"]].isna().all(axis=None)
    assert "charged_credits" not in runs.columns  # the input is left alone


def test_unregistered_sheet_leaves_currency_empty_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = sample_runs()[0].replace(price_sheet="my-old-contract")
    df = ledger_frame(tmp_path / "ledger.sqlite3", [record])
    with caplog.at_level(logging.WARNING, logger="imgkit"):
        costs = plots.with_costs(df)
    assert costs.loc[0, "charged_credits"] == pytest.approx(1.25798)
    assert pd.isna(costs.loc[0, "charged_usd"]) and pd.isna(costs.loc[0, "charged_cny"])
    assert "my-old-contract" in caplog.text


def test_with_costs_rejects_other_frames() -> None:
    with pytest.raises(ValueError, match=r"not a runs DataFrame: missing .*task_id"):
        plots.with_costs(pd.DataFrame({"status": ["completed"]}))


@pytest.mark.parametrize(("given", "column"), [("USD", "charged_usd"), ("cny", "charged_cny"), ("Credits", "charged_credits")])
def test_cost_column(given: str, column: str) -> None:
    assert plots.cost_column(given) == column


def test_unknown_currency_is_refused(runs: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="EUR"):
        plots.spend_by_tier_size(runs, currency="EUR")


def test_time_buckets_are_utc_days_monday_weeks_and_months() -> None:
    times = pd.Series(pd.to_datetime(["2026-11-05T23:30:00+00:00", "2026-11-06T00:30:00+02:00"], utc=True))
    assert plots.time_buckets(times, "D").dt.strftime("%Y-%m-%d").tolist() == ["2026-11-05", "2026-11-05"]
    assert plots.time_buckets(times, "week").dt.strftime("%Y-%m-%d").tolist() == ["2026-11-02", "2026-11-02"]
    assert plots.time_buckets(times, "M").dt.strftime("%Y-%m-%d").tolist() == ["2026-11-01", "2026-11-01"]


# --- the figures -------------------------------------------------------------------------


def _all_figures(df: pd.DataFrame) -> dict[str, Figure]:
    return {
        "spend_over_time": plots.spend_over_time(df),
        "spend_by_tier_size": plots.spend_by_tier_size(df),
        "cost_vs_latency": plots.cost_vs_latency(df),
        "estimated_vs_charged": plots.estimated_vs_charged(df),
        "runs_by_status": plots.runs_by_status(df),
    }


def _colours_of(fig: Figure, label: str) -> set[str]:
    """The colours of everything labelled ``label`` (bars, markers, lines) in ``fig``."""
    found = set()
    for ax in fig.axes:
        for bars in ax.containers:
            if bars.get_label() == label:
                found |= {to_hex(patch.get_facecolor()) for patch in bars}
        for points in ax.collections:
            if points.get_label().split(" (")[0] == label:  # "high (12)": tier and count
                found.add(to_hex(points.get_facecolor()[0]))
        for line in ax.lines:
            if line.get_label() == label:
                found.add(to_hex(line.get_color()))
    return found


LABELS = {
    "spend_over_time": {("", "USD per day"), ("Date (UTC)", "USD, cumulative")},
    "spend_by_tier_size": {("Size (pixels)", "Spend (USD)")},
    "cost_vs_latency": {("Latency, submit to result (s)", "Charged per run (USD)")},
    "estimated_vs_charged": {("Estimated per run (credits)", "Charged or reserved per run (credits)")},
    "runs_by_status": {("Runs", "")},
}


def test_every_plot_is_a_figure_with_labelled_axes_and_units(runs: pd.DataFrame) -> None:
    for name, fig in _all_figures(runs).items():
        assert isinstance(fig, Figure), name
        assert isinstance(fig.canvas, FigureCanvasAgg), name
        assert {(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes} == LABELS[name]
        assert all(ax.get_title(loc="left") for ax in fig.axes), name
    fig = plots.spend_over_time(runs)
    assert isinstance(fig.axes[1].xaxis.get_major_formatter(), ConciseDateFormatter)
    fig.canvas.draw()
    days = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert "Nov" in days and "03" in days, days  # short, unambiguous date ticks


def test_high_has_the_same_colour_in_every_plot(runs: pd.DataFrame) -> None:
    high = plots.TIER_COLORS["high"]
    for name, fig in _all_figures(runs).items():
        assert _colours_of(fig, "high") == {high}, name
        assert high != plots.TIER_COLORS["low"] != plots.TIER_COLORS["medium"]


def test_spend_over_time_adds_up_to_the_charged_total(runs: pd.DataFrame) -> None:
    fig = plots.spend_over_time(runs, currency="credits")
    bars, cumulative = fig.axes[0], fig.axes[1]
    per_day = sum(patch.get_height() for patch in bars.patches)
    assert per_day == pytest.approx(sum(EXPECTED_CREDITS.values()))
    total = next(line for line in cumulative.lines if line.get_label() == "total")
    assert total.get_ydata()[-1] == pytest.approx(sum(EXPECTED_CREDITS.values()))
    assert len(total.get_xdata()) == 5  # Nov 1 to Nov 5, one point a day
    weekly = plots.spend_over_time(runs, currency="CNY", freq="W")
    assert sum(p.get_height() for p in weekly.axes[0].patches) == pytest.approx(
        sum(expected_cny(r) for r in EXPECTED_CREDITS)
    )


def test_spend_by_tier_size_sums_each_pair(runs: pd.DataFrame) -> None:
    fig = plots.spend_by_tier_size(runs, currency="credits")
    ax = fig.axes[0]
    heights = {c.get_label(): [p.get_height() for p in c] for c in ax.containers}
    ticks = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
    assert ticks == ["1024x1024", "1024x1536", "1536x1024"]
    assert heights["high"] == pytest.approx([9.45907, 0.0, 0.0])  # r4 cost nothing, r6 unknown
    assert heights["medium"] == pytest.approx([1.96, 0.0, 3.5])  # r5 failed: released
    assert heights["low"] == pytest.approx([1.25798, 0.92462, 0.0])


def test_credits_axis_is_added_when_one_sheet_prices_everything(tmp_path: Path, runs: pd.DataFrame) -> None:
    one_sheet = ledger_frame(tmp_path / "ledger.sqlite3", [r for r in sample_runs() if r.price_sheet == TABLE])
    fig = plots.spend_by_tier_size(one_sheet, currency="USD")
    secondary = [ax for ax in fig.axes[0].child_axes]
    assert len(secondary) == 1 and secondary[0].get_ylabel() == "credits"
    # two sheets, two rates: no single credits scale exists
    assert not plots.spend_by_tier_size(runs, currency="USD").axes[0].child_axes


def test_estimated_vs_charged_draws_only_service_figures(runs: pd.DataFrame) -> None:
    ax = plots.estimated_vs_charged(runs).axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == 4  # r1, r2, r3, r7 (reserved/charged), not r4, r5 (failed), r6, r8
    assert ax.get_xlabel() == "Estimated per run (credits)"


def test_runs_by_status_counts(runs: pd.DataFrame) -> None:
    ax = plots.runs_by_status(runs).axes[0]
    totals = {t.get_text().strip() for t in ax.texts}
    assert {"5", "2", "1"} <= totals
    assert [t.get_text() for t in ax.get_yticklabels()] == ["unknown", "failed", "completed"]


def test_plots_draw_on_given_axes(runs: pd.DataFrame) -> None:
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    assert plots.cost_vs_latency(runs, ax=left) is fig
    assert plots.runs_by_status(runs, ax=right) is fig
    assert isinstance(left, Axes) and left.collections and right.patches


def test_empty_ledger_gives_figures_that_say_so(empty: pd.DataFrame) -> None:
    for name, fig in _all_figures(empty).items():
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert any(t.startswith("No ") for t in texts), name
        assert fig._repr_png_().startswith(b"\x89PNG"), name


def test_figures_show_as_png_and_need_no_pyplot() -> None:
    code = (
        "import sys, imgkit.plots; assert 'matplotlib' not in sys.modules and 'pandas' not in sys.modules\n"
        "from tests.test_plots import sample_runs, ledger_frame\n"
        "import tempfile, pathlib\n"
        "df = ledger_frame(pathlib.Path(tempfile.mkdtemp()) / 'l.sqlite3', sample_runs())\n"
        "png = imgkit.plots.spend_over_time(df)._repr_png_()\n"
        "assert png.startswith(b'\\x89PNG') and 'matplotlib.pyplot' not in sys.modules\n"
        "print('ok')\n"
    )
    root = Path(__file__).parents[1]
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, cwd=root)
    assert out.stdout.strip() == "ok", out.stderr
