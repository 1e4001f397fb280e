"""The report's charts, drawn with :mod:`imgkit.plots`."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from imgkit import plots

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from imgkit.reports._model import CostReport

TITLES = {
    "spend_over_time": "Spend over time, by tier",
    "spend_by_tier_size": "Spend by tier and size",
    "cost_vs_latency": "Cost against latency",
    "estimated_vs_charged": "Estimated against charged credits",
    "runs_by_status": "Runs by status",
}


def freq(rep: CostReport) -> str:
    """Days for up to two months of runs, weeks for up to two years, then months."""
    start, end = rep.period
    if start is None or end is None:
        return "D"
    days = (end - start).days
    return "D" if days <= 62 else "W" if days <= 731 else "M"


@contextmanager
def quiet_glyphs() -> Iterator[None]:
    # Tags and error texts can hold characters DejaVu Sans lacks (CJK, emoji): they show as
    # boxes, which is better than a report that fails under warnings-as-errors.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        yield


def panels(rep: CostReport) -> dict[str, Callable[[Axes | None], Figure]]:
    """The single-axes charts by name, each drawing on the given Axes or a new figure."""
    runs, unit = rep.runs, rep.currency
    return {
        "spend_by_tier_size": lambda ax: plots.spend_by_tier_size(runs, currency=unit, ax=ax),
        "cost_vs_latency": lambda ax: plots.cost_vs_latency(runs, currency=unit, ax=ax),
        # Estimates and service figures are both in credits; a currency would only rescale.
        "estimated_vs_charged": lambda ax: plots.estimated_vs_charged(runs, currency="credits", ax=ax),
        "runs_by_status": lambda ax: plots.runs_by_status(runs, ax=ax),
    }


def spend_over_time(rep: CostReport, axes: tuple[Axes, Axes] | None = None) -> Figure:
    return plots.spend_over_time(rep.runs, currency=rep.currency, freq=freq(rep), ax=axes)


def standalone(rep: CostReport) -> dict[str, Figure]:
    figures = {"spend_over_time": spend_over_time(rep)}
    figures.update({name: draw(None) for name, draw in panels(rep).items()})
    return figures


def png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    with quiet_glyphs():
        fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def pngs(rep: CostReport) -> dict[str, bytes]:
    return {name: png(fig) for name, fig in standalone(rep).items()}
