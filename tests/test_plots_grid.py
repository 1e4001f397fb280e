"""Every plot draws on an Axes of the caller's own grid (``ax=``), and nothing it labels runs
into a neighbouring panel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from imgkit import plots
from imgkit.ledger import Ledger
from tests.test_plots import sample_runs

PLOTS = {
    "spend_over_time": lambda df, ax: plots.spend_over_time(df, ax=ax),
    "spend_by_tier_size": lambda df, ax: plots.spend_by_tier_size(df, ax=ax),
    "cost_vs_latency": lambda df, ax: plots.cost_vs_latency(df, ax=ax),
    "estimated_vs_charged": lambda df, ax: plots.estimated_vs_charged(df, ax=ax),
    "runs_by_status": lambda df, ax: plots.runs_by_status(df, ax=ax),
}


@pytest.fixture
def one_sheet_runs(tmp_path: Path) -> pd.DataFrame:
    """Runs priced on one sheet, so the currency plots can show credits beside USD."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.save_many([r for r in sample_runs() if r.price_sheet == "evolink-table-2026-11"])
    try:
        return ledger.to_dataframe()
    finally:
        ledger.close()


def _label_boxes(ax, renderer) -> list[Bbox]:  # type: ignore[no-untyped-def]
    """The y labels and texts an Axes shows, its own and those of axes attached to it (a
    secondary "credits" axis)."""
    boxes = []
    for owner in [ax, *ax.child_axes]:
        for text in [owner.yaxis.label, *owner.texts]:
            if text.get_visible() and text.get_text():
                boxes.append(text.get_window_extent(renderer))
    return boxes


@pytest.mark.parametrize("name", list(PLOTS))
def test_every_plot_takes_ax_and_returns_its_figure(name: str, one_sheet_runs: pd.DataFrame) -> None:
    fig = Figure(figsize=(8, 6))
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 2)[0, 0]
    assert PLOTS[name](one_sheet_runs, ax) is fig
    assert ax.has_data() or ax.texts


def test_labels_stay_in_their_own_panel_of_a_grid(one_sheet_runs: pd.DataFrame) -> None:
    fig = Figure(figsize=(12, 7), layout="constrained")  # as plt.subplots(..., layout="constrained")
    canvas = FigureCanvasAgg(fig)
    grid = fig.subplots(2, 3).ravel()
    for ax, draw in zip(grid, PLOTS.values(), strict=False):
        draw(one_sheet_runs, ax)
    canvas.draw()
    renderer = canvas.get_renderer()
    used = grid[: len(PLOTS)]
    for i, ax in enumerate(used):
        for box in _label_boxes(ax, renderer):
            for j, other in enumerate(used):
                if i != j:
                    assert not box.overlaps(other.get_window_extent(renderer)), (
                        f"a y label of panel {i} runs into panel {j}"
                    )


def test_spend_over_time_takes_a_pair_of_axes(one_sheet_runs: pd.DataFrame) -> None:
    fig = Figure()
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1)
    plots.spend_over_time(one_sheet_runs, currency="credits", ax=(top, bottom))
    assert top.get_title(loc="left").startswith("Spend per day")
    assert bottom.get_title(loc="left").startswith("Cumulative spend")


def test_spend_over_time_on_one_axes_states_the_total(one_sheet_runs: pd.DataFrame) -> None:
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    plots.spend_over_time(one_sheet_runs, currency="credits", ax=ax)
    charged = plots.with_costs(one_sheet_runs)["charged_credits"].sum()
    assert f"total {charged:,.2f}" in ax.get_title(loc="left")


def test_the_credits_rate_moves_into_the_label_on_a_callers_axes(one_sheet_runs: pd.DataFrame) -> None:
    own = plots.spend_by_tier_size(one_sheet_runs, currency="USD")
    assert own.axes[0].child_axes, "a figure of its own keeps the right-hand credits axis"
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    plots.spend_by_tier_size(one_sheet_runs, currency="USD", ax=ax)
    assert not ax.child_axes
    assert any(t.get_text().startswith("1 credit = $") for t in ax.texts)


def test_notebook_pngs_use_a_palette(one_sheet_runs: pd.DataFrame) -> None:
    import io

    from PIL import Image

    png = plots.spend_over_time(one_sheet_runs)._repr_png_()
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "P"
