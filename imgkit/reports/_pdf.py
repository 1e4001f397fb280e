"""A report as PDF pages (matplotlib's PdfPages): a title page with the totals, the charts,
then each table over as many pages as it needs."""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from imgkit.reports import _charts, _text

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from imgkit.reports._model import CostReport

#: A4 landscape, inches: wide tables and charts fit without shrinking the text.
PAGE = (11.69, 8.27)
#: Table rows per page (plus the header row).
ROWS_PER_PAGE = 25
_ROW_HEIGHT = 0.25  # inches
_HEADER_FILL = "#e8e8e8"
_STRIPE_FILL = "#f7f7f7"
_FONT = 8.5
_CHAR_EM = 0.6  # average character width of DejaVu Sans, in ems


def _page() -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PAGE)
    FigureCanvasAgg(fig)
    return fig


def _draw_table(ax: Axes, frame: pd.DataFrame, *, width: int = 40) -> None:
    """``frame`` as a table from ``ax``'s top left, one fixed-height row each, as wide as its
    text needs (the font shrinks when the page is too narrow for it).

    Drawn as plain texts over one collection of row stripes: matplotlib's Table lays out and
    draws a patch per cell, several times slower on pages of many rows.
    """
    from matplotlib.collections import LineCollection, PolyCollection

    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    rows = _text.cells(frame, width=width)
    headers = [_text.label(c) for c in frame.columns]
    numeric = [_text.is_numeric(c) for c in frame.columns]
    # Column widths follow the longest text in each column, so ids and dates never wrap.
    lengths = [max([len(h)] + [len(r[i]) for r in rows]) + 2 for i, h in enumerate(headers)]
    fig = ax.get_figure(root=True)
    assert fig is not None
    box = ax.get_position()
    available = box.width * fig.get_figwidth()
    font = _FONT
    needed = sum(lengths) * _CHAR_EM * font / 72
    if needed > available:
        font = max(5.5, font * available / needed)
        needed = available
    unit = needed / available / sum(lengths)  # one character, in axes fractions
    edges = [0.0]
    for length in lengths:
        edges.append(edges[-1] + length * unit)
    row_h = _ROW_HEIGHT / (box.height * fig.get_figheight())
    tops = [1.0 - r * row_h for r in range(len(rows) + 2)]
    right = edges[-1]
    stripes = [
        [(0.0, tops[r + 1]), (right, tops[r + 1]), (right, tops[r]), (0.0, tops[r])]
        for r in range(len(rows) + 1)
        if r == 0 or r % 2 == 0
    ]
    colors = [_HEADER_FILL] + [_STRIPE_FILL] * (len(stripes) - 1)
    ax.add_collection(PolyCollection(stripes, facecolors=colors, edgecolors="none"))
    ax.add_collection(LineCollection([[(0.0, y), (right, y)] for y in tops], colors="#cccccc", linewidths=0.5))
    pad = unit * 0.8
    for r, values in enumerate([headers, *rows]):
        middle = tops[r] - row_h / 2
        for c, text in enumerate(values):
            if not text:
                continue
            at_right = numeric[c] and r > 0
            ax.text(
                edges[c + 1] - pad if at_right else edges[c] + pad, middle, text,
                ha="right" if at_right else "left", va="center", fontsize=font,
                fontweight="bold" if r == 0 or values[0] in (_text.TOTAL, "charged, total") else "normal",
                parse_math=False,  # "$" is money, not TeX
            )


def _write(fig: Figure, x: float, y: float, text: str, **style: object) -> None:
    fig.text(x, y, text, parse_math=False, **style)  # type: ignore[arg-type]


def _heading(fig: Figure, title: str) -> None:
    _write(fig, 0.04, 0.955, title, fontsize=15, fontweight="bold", va="top")


def _footer(fig: Figure, rep: CostReport, number: int, count: int) -> None:
    _write(fig, 0.04, 0.025, f"{rep.title} · {rep.period_text}", fontsize=8, color="#777777")
    _write(fig, 0.96, 0.025, f"page {number} of {count}", fontsize=8, color="#777777", ha="right")


def _title_page(rep: CostReport) -> Figure:
    fig = _page()
    height = fig.get_figheight()
    y = 0.94

    def down(inches: float) -> float:
        nonlocal y
        y -= inches / height
        return y

    _write(fig, 0.04, y, rep.title, fontsize=22, fontweight="bold", va="top")
    _write(
        fig, 0.04, down(0.5),
        f"Period {rep.period_text} · {rep.filters} · amounts in {rep.currency} · generated "
        f"{rep.generated_at:%Y-%m-%d %H:%M} UTC",
        fontsize=10, color="#444444", va="top",
    )
    headline = textwrap.wrap(_text.headline(rep), 110)
    _write(fig, 0.04, down(0.4), "\n".join(headline), fontsize=11, fontweight="bold", va="top")
    _write(fig, 0.04, down(0.25 + 0.2 * len(headline)), "Totals  ·  " + _text.totals_line(rep), fontsize=10.5, va="top")
    totals = rep.totals.to_frame()
    box = (len(totals) + 1) * _ROW_HEIGHT
    _draw_table(fig.add_axes((0.04, down(0.25 + box), 0.6, box / height)), totals)
    _write(fig, 0.04, down(0.35), f"Exchange rate: {rep.fx}", fontsize=9.5, va="top")
    if len(rep.sheets):
        _write(fig, 0.04, down(0.35), "Price sheets", fontsize=10.5, fontweight="bold", va="top")
        sheets = rep.sheets.loc[:, ["sheet", "runs", "date", "base_credits", "rate"]].head(6)
        box = (len(sheets) + 1) * _ROW_HEIGHT
        _draw_table(fig.add_axes((0.04, down(0.25 + box), 0.92, box / height)), sheets, width=110)
    _write(fig, 0.04, down(0.3), "How costs are counted, the price sheets' sources and remarks: page 2.",
           fontsize=8.5, color="#555555", va="top")
    return fig


def _notes_page(rep: CostReport) -> Figure:
    """How costs are counted, the remarks on these runs, and each price sheet's source."""
    fig = _page()
    _heading(fig, "How costs are counted")
    lines = ["• " + "\n   ".join(textwrap.wrap(note, 150)) for note in rep.notes]
    lines += ["", "Price sheet sources:"]
    lines += ["• " + "\n   ".join(textwrap.wrap(f"{name}: {source}", 150))
              for name, source in zip(rep.sheets["sheet"], rep.sheets["source"], strict=True)]
    _write(fig, 0.04, 0.89, "\n".join(lines), fontsize=8, va="top", linespacing=1.4)
    return fig


def _spend_page(rep: CostReport) -> Figure:
    fig = _page()
    _heading(fig, _charts.TITLES["spend_over_time"])
    grid = fig.add_gridspec(2, 1, left=0.07, right=0.93, top=0.88, bottom=0.12, hspace=0.3)
    top = fig.add_subplot(grid[0])
    bottom = fig.add_subplot(grid[1], sharex=top)
    _charts.spend_over_time(rep, axes=(top, bottom))
    return fig


def _panels_page(rep: CostReport) -> Figure:
    fig = _page()
    _heading(fig, "Tiers, sizes, latency and outcomes")
    grid = fig.add_gridspec(2, 2, left=0.07, right=0.95, top=0.88, bottom=0.12, hspace=0.45, wspace=0.25)
    for index, draw in enumerate(_charts.panels(rep).values()):
        draw(fig.add_subplot(grid[index // 2, index % 2]))
    return fig


def _table_pages(title: str, frame: pd.DataFrame, limit: int, rep: CostReport) -> list[Callable[[], Figure]]:
    shown = frame.head(limit)
    note = _text.caption(title, frame, len(shown))
    chunks = max(1, math.ceil(len(shown) / ROWS_PER_PAGE))

    def build(index: int) -> Figure:
        fig = _page()
        part = f" ({index + 1}/{chunks})" if chunks > 1 else ""
        _heading(fig, title + part)
        if note:
            _write(fig, 0.04, 0.905, note, fontsize=8.5, color="#555555", va="top")
        chunk = shown.iloc[index * ROWS_PER_PAGE : (index + 1) * ROWS_PER_PAGE]
        _draw_table(fig.add_axes((0.04, 0.06, 0.92, 0.82)), chunk)
        return fig

    return [functools.partial(build, i) for i in range(chunks)]


def plan(rep: CostReport) -> list[Callable[[], Figure]]:
    """One builder per page, in order (tables with no rows get no page)."""
    pages: list[Callable[[], Figure]] = [
        lambda: _title_page(rep), lambda: _notes_page(rep), lambda: _spend_page(rep), lambda: _panels_page(rep),
    ]
    for title, frame, most in _text.tables(rep):
        if len(frame):
            pages += _table_pages(title, frame, len(frame) if most is None else most, rep)
    return pages


def write(rep: CostReport, path: Path) -> int:
    """Write the PDF; returns its page count."""
    from matplotlib.backends.backend_pdf import PdfPages

    builders = plan(rep)
    metadata = {"Title": rep.title, "Subject": f"imgkit cost report, {rep.period_text}", "Creator": "imgkit"}
    with _charts.quiet_glyphs(), PdfPages(path, metadata=metadata) as pdf:
        for number, build in enumerate(builders, start=1):
            fig = build()
            _footer(fig, rep, number, len(builders))
            pdf.savefig(fig)
    return len(builders)
