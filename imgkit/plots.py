"""Spend plots: DataFrame in, matplotlib Figure out, no pyplot global state.

Every function takes the DataFrame of :func:`imgkit.runs` (or any slice of it), draws on a
fresh :class:`~matplotlib.figure.Figure` with an Agg canvas (or on the ``ax`` you pass) and
returns the Figure, which displays itself as a PNG in a notebook. Nothing calls ``show``, so
the plots work the same in a kernel, a script and a report.

The cost columns come from :func:`with_costs`, which applies the rules of
:mod:`imgkit.costs` (the one place that decides what a run cost); the reports use it too.
Tiers keep one colour everywhere (:data:`TIER_COLORS`).

Example:
    >>> import imgkit, imgkit.plots
    >>> fig = imgkit.plots.spend_over_time(imgkit.runs(), currency="USD")
    >>> fig.savefig("spend.png")
"""

from __future__ import annotations

import functools
import io
import logging
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from imgkit.costs import BASES
from imgkit.ledger import COLUMNS, STATUSES

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "COST_BASES",
    "CURRENCIES",
    "TIER_COLORS",
    "cost_column",
    "cost_vs_latency",
    "currency_unit",
    "estimated_vs_charged",
    "runs_by_status",
    "spend_by_tier_size",
    "spend_over_time",
    "time_buckets",
    "with_costs",
]

log = logging.getLogger("imgkit")

#: One colour per quality tier, the same in every plot and report (Okabe-Ito, colour-blind
#: safe). Tiers outside this map are drawn in :data:`_OTHER_COLOR`.
TIER_COLORS: dict[str, str] = {"low": "#56b4e9", "medium": "#009e73", "high": "#d55e00"}
_OTHER_COLOR = "#999999"

#: Accepted units for amounts: credits, or a currency converted with the run's price sheet.
CURRENCIES: tuple[str, ...] = ("credits", "USD", "CNY")

#: How :func:`with_costs` arrived at a run's charged amount (the ``cost_basis`` column), in
#: the order the rules of :mod:`imgkit.costs` are tried.
COST_BASES: tuple[str, ...] = BASES

_FREQS = {"D": "D", "day": "D", "W": "W", "week": "W", "M": "M", "month": "M"}
_FREQ_WORDS = {"D": "day", "W": "week", "M": "month"}
_BAR_DAYS = {"D": 0.8, "W": 5.6, "M": 24.0}
_HEADROOM = 1.22  # y-axis room above the data for a one-row legend


class _Sheet(Protocol):
    def to_usd(self, credits: Any) -> Any: ...
    def to_cny(self, credits: Any) -> Any: ...


# --- cost semantics (shared with imgkit.reports) -----------------------------------------


def with_costs(df: pd.DataFrame, *, sheets: Mapping[str, _Sheet] | None = None) -> pd.DataFrame:
    """A copy of ``df`` with what each run cost, by the rules of :mod:`imgkit.costs`.

    Added columns:

    - ``cost_basis``: the rule that applied (one of :data:`COST_BASES`: ``charged``,
      ``no task``, ``failed``, ``may have cost``, ``reserved``, ``estimate``).
    - ``spent_credits``: what counts as spent (0 for failed and unknown runs).
    - ``may_have_cost_credits``, ``may_have_cost_usd``, ``may_have_cost_cny``: what an
      ``unknown`` run (its task may exist and be billed) may have cost: its estimate (as
      stored with the run, in each currency), else what the service reserved.
    - ``charged_credits``, ``charged_usd``, ``charged_cny``: what the run cost: the
      spent amount, left empty (NaN) for the runs that may have cost something, so that
      reports list them separately.

    In short: a run counts what the service charged, else what it reserved, else its
    estimate; a failed run costs nothing unless the service reported a charge; an unknown
    run counts nothing as charged and its estimate as "may have cost". The budget counts
    spent plus may have cost.

    Credits become USD and CNY with each run's own price sheet. A run whose sheet is not
    registered in this process (or that has none) gets empty USD/CNY and a log warning.

    Args:
        df: runs as returned by :func:`imgkit.runs`.
        sheets: price sheets by name; :func:`imgkit.pricing.price_sheets` when None.

    Example:
        >>> costs = with_costs(imgkit.runs())
        >>> costs.groupby("quality", observed=True)["charged_usd"].sum()
    """
    import numpy as np
    import pandas as pd

    from imgkit.costs import cost_frame

    _require(df, _COST_INPUTS)
    out = df.copy()
    rules = cost_frame(out)
    out["cost_basis"] = rules["cost_basis"]
    out["spent_credits"] = rules["spent_credits"]
    out["may_have_cost_credits"] = rules["may_have_cost_credits"]
    unsure = (rules["cost_basis"] == "may have cost").to_numpy(dtype=bool)
    out["charged_credits"] = rules["spent_credits"].where(~unsure, np.nan)
    usd = pd.Series(np.nan, index=out.index, dtype="float64")
    cny = usd.copy()
    maybe_usd = usd.copy()
    maybe_cny = usd.copy()
    known = _price_sheets() if sheets is None else sheets
    names = out["price_sheet"].astype("string")
    for name in names.dropna().unique():
        rows = (names == name).fillna(False).to_numpy(dtype=bool)
        sheet = known.get(str(name))
        if sheet is None:
            log.warning(
                "price sheet %r is not registered; USD/CNY of %d run(s) left empty "
                "(imgkit.register_price_sheet adds it)", name, int(rows.sum())
            )
            continue
        # The sheet's own conversion, so reports agree with estimates to the last digit.
        amounts = out.loc[rows, "charged_credits"]
        usd[rows] = sheet.to_usd(amounts)
        cny[rows] = sheet.to_cny(amounts)
        maybe = out.loc[rows, "may_have_cost_credits"]
        maybe_usd[rows] = sheet.to_usd(maybe)
        maybe_cny[rows] = sheet.to_cny(maybe)
    # Nothing costs nothing in any currency, with or without a sheet.
    free = out["cost_basis"].isin(["no task", "failed"]).to_numpy(dtype=bool)
    usd[free] = 0.0
    cny[free] = 0.0
    nothing = (out["may_have_cost_credits"] == 0).to_numpy(dtype=bool)
    maybe_usd[nothing] = 0.0
    maybe_cny[nothing] = 0.0
    # A run that may have cost its estimate may have cost the estimate stored with it, in
    # every currency (the reports' estimated columns show the same figures).
    at_estimate = (~nothing) & (out["may_have_cost_credits"] == out["est_credits"]).fillna(False).to_numpy(dtype=bool)
    maybe_usd[at_estimate] = out.loc[at_estimate, "est_usd"]
    maybe_cny[at_estimate] = out.loc[at_estimate, "est_cny"]
    out["charged_usd"] = usd
    out["charged_cny"] = cny
    out["may_have_cost_usd"] = maybe_usd
    out["may_have_cost_cny"] = maybe_cny
    return out


_COST_INPUTS = (
    "status", "task_id", "credits_charged", "credits_reserved", "est_credits", "est_usd", "est_cny", "price_sheet",
)


def _require(df: pd.DataFrame, names: Iterable[str]) -> None:
    missing = [name for name in names if name not in df.columns]
    if missing:
        raise ValueError(
            f"not a runs DataFrame: missing {', '.join(missing)} (imgkit.runs() gives "
            f"{len(COLUMNS)} columns: {', '.join(COLUMNS[:4])}, ...)"
        )


def _price_sheets() -> Mapping[str, _Sheet]:
    # Price sheets are pure data one layer down; imported here only, when costs are computed.
    from imgkit.pricing import price_sheets

    return price_sheets()


def _has_costs(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with cost columns, computing them only when they are missing."""
    needed = ("charged_credits", "charged_usd", "charged_cny", "cost_basis", "may_have_cost_credits")
    return df if all(c in df.columns for c in needed) else with_costs(df)


def currency_unit(currency: str) -> str:
    """The canonical unit name for ``currency`` (``"usd"`` gives ``"USD"``); ValueError when
    it is not one of :data:`CURRENCIES`."""
    for name in CURRENCIES:
        if str(currency).strip().lower() in (name.lower(), name.lower().rstrip("s")):
            return name
    raise ValueError(f"currency={currency!r} is not allowed: one of {', '.join(CURRENCIES)}")


def cost_column(currency: str = "USD", *, estimated: bool = False) -> str:
    """The column holding amounts in ``currency`` (credits, USD or CNY).

    Example:
        >>> cost_column("usd"), cost_column("credits", estimated=True)
        ('charged_usd', 'est_credits')
    """
    unit = currency_unit(currency).lower()
    return f"est_{unit}" if estimated else f"charged_{unit}"


def time_buckets(times: pd.Series, freq: str = "D") -> pd.Series:
    """The start of the UTC day, ISO week (Monday) or month of each time, as naive UTC
    timestamps.

    Args:
        times: timezone-aware (or naive UTC) timestamps, e.g. ``df["created_at"]``.
        freq: ``"D"``/``"day"``, ``"W"``/``"week"`` or ``"M"``/``"month"``.
    """
    code = _freq(freq)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    day = times.dt.floor("D")
    if code == "D":
        return day
    import pandas as pd

    back = day.dt.day_of_week if code == "W" else day.dt.day - 1
    return day - pd.to_timedelta(back, unit="D")


def _freq(freq: str) -> str:
    try:
        return _FREQS[freq]
    except KeyError:
        raise ValueError(f"freq={freq!r} is not allowed: D, W or M (day, week, month)") from None


# --- figures -----------------------------------------------------------------------------


@functools.cache
def _figure_class() -> type[Figure]:
    from matplotlib.figure import Figure

    class SpendFigure(Figure):
        """A Figure that shows itself as a PNG in a notebook, with or without pyplot."""

        def _repr_png_(self) -> bytes:
            return _palette_png(self)

    SpendFigure.__module__ = __name__
    return SpendFigure


def _palette_png(fig: Figure) -> bytes:
    """``fig`` as a PNG with an adaptive 256-colour palette: charts have few colours, so
    this keeps them sharp at about a third of the bytes that a notebook saves."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _figure(
    width: float = 9.0, height: float = 4.5, *, rows: int = 1, sharex: bool = False
) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _figure_class()(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _target(ax: Axes | None, width: float = 9.0, height: float = 4.5) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.get_figure(root=True), ax  # type: ignore[return-value]
    fig, axes = _figure(width, height)
    return fig, axes[0]


def _tier_color(tier: object) -> str:
    return TIER_COLORS.get(str(tier), _OTHER_COLOR)


def _tiers(values: pd.Series) -> list[str]:
    """The tiers present, in tier order (low, medium, high, then any others)."""
    present = {str(v) for v in values.dropna().unique()}
    return [t for t in TIER_COLORS if t in present] + sorted(present - set(TIER_COLORS))


def _style(ax: Axes, *, grid: str = "y") -> None:
    ax.grid(axis=grid, alpha=0.3)  # type: ignore[arg-type]
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _money(value: float, currency: str) -> str:
    """A short amount for bar labels."""
    unit = currency_unit(currency)
    digits = 2 if abs(value) >= 10 else 4 if abs(value) < 1 else 3
    text = f"{value:,.{digits}f}"
    return {"USD": f"${text}", "CNY": f"¥{text}"}.get(unit, text)


def _credits_rate(costs: pd.DataFrame, unit: str) -> float | None:
    """Currency per credit when one rate applies to every paid run (one price sheet)."""
    if unit == "credits":
        return None
    column = cost_column(unit)
    paid = costs[(costs["charged_credits"] > 0) & costs[column].notna()]
    if paid.empty or paid["price_sheet"].astype("string").nunique() != 1:
        return None
    rate = float((paid[column] / paid["charged_credits"]).median())
    return rate if math.isfinite(rate) and rate > 0 else None


def _credits_axis(ax: Axes, costs: pd.DataFrame, currency: str, *, own: bool) -> None:
    """Show the amounts in credits too, when one rate applies to all of them, so readers
    see both units: a right-hand credits axis on a figure of our own (its constrained layout
    makes room for it), or the rate as a note inside the caller's Axes, where a right-hand
    label would run into the next panel of their grid."""
    unit = currency_unit(currency)
    rate = _credits_rate(costs, unit)
    if rate is None:
        return
    if not own:
        ax.text(0.99, 0.98, f"1 credit = {_money(rate, unit)}", transform=ax.transAxes, ha="right", va="top",
                fontsize="x-small", color="#555555")
        return
    import numpy as np

    def to_credits(amount: Any) -> Any:
        return np.asarray(amount, dtype=float) / rate

    def from_credits(credits: Any) -> Any:
        return np.asarray(credits, dtype=float) * rate

    secondary = ax.secondary_yaxis("right", functions=(to_credits, from_credits))
    secondary.set_ylabel("credits", color="#555555")
    secondary.tick_params(colors="#555555")


def _date_axis(ax: Axes) -> None:
    from matplotlib import dates

    locator = dates.AutoDateLocator(minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, show_offset=True))  # type: ignore[no-untyped-call]


def spend_over_time(
    df: pd.DataFrame,
    *,
    currency: str = "USD",
    freq: str = "D",
    ax: Axes | tuple[Axes, Axes] | None = None,
) -> Figure:
    """Charged spend per day (or week, month), stacked by tier, and cumulative spend.

    Args:
        df: runs as returned by :func:`imgkit.runs`.
        currency: ``"USD"``, ``"CNY"`` or ``"credits"``.
        freq: ``"D"``, ``"W"`` or ``"M"`` (UTC days, ISO weeks, months).
        ax: where to draw. None: a new figure with both panels. One Axes: the spend per
            period only, with the total in its title (for a panel of your own grid). A pair
            ``(per_period, cumulative)``: both panels on your Axes.

    Example:
        >>> spend_over_time(imgkit.runs(), currency="CNY", freq="W")
        >>> fig, (left, right) = plt.subplots(1, 2); spend_over_time(df, ax=left)
    """
    import numpy as np
    import pandas as pd

    code = _freq(freq)
    unit = currency_unit(currency)
    own = ax is None
    ax_cum: Axes | None
    if ax is None:
        fig, (ax_bar, ax_cum) = _figure(9.0, 6.5, rows=2, sharex=True)
    elif isinstance(ax, tuple | list):
        ax_bar, ax_cum = ax
        fig = ax_bar.get_figure(root=True)  # type: ignore[assignment]
    else:
        ax_bar, ax_cum = ax, None
        fig = ax_bar.get_figure(root=True)  # type: ignore[assignment]
    panels = [a for a in (ax_bar, ax_cum) if a is not None]
    costs = _has_costs(df)
    column = cost_column(unit)
    data = costs.loc[costs[column].notna(), ["created_at", "quality", column]].copy()
    word = _FREQ_WORDS[code]
    ax_bar.set_title(f"Spend per {word} by tier (charged, {unit})", loc="left")
    if ax_cum is not None:
        ax_cum.set_title(f"Cumulative spend (charged, {unit})", loc="left")
    if data.empty:
        for panel in panels:
            _empty(panel, "No runs with a known cost")
        return fig
    data["bucket"] = time_buckets(data["created_at"], code)
    data["quality"] = data["quality"].astype("string").fillna("(none)")
    table = data.pivot_table(index="bucket", columns="quality", values=column, aggfunc="sum", fill_value=0.0)
    span = {"D": "D", "W": "W-MON", "M": "MS"}[code]
    table = table.reindex(pd.date_range(table.index.min(), table.index.max(), freq=span), fill_value=0.0)
    tiers = [t for t in _tiers(data["quality"]) if t in table.columns]
    x = table.index.to_numpy()
    bottom = np.zeros(len(table))
    for tier in tiers:
        heights = table[tier].to_numpy(dtype=float)
        ax_bar.bar(x, heights, width=_BAR_DAYS[code], bottom=bottom, color=_tier_color(tier), label=tier)
        bottom += heights
    cumulative = table[tiers].cumsum()
    if ax_cum is None:
        ax_bar.set_title(f"Spend per {word} by tier (charged, {unit}; total {_money(float(bottom.sum()), unit)})",
                         loc="left")
    else:
        for tier in tiers:
            ax_cum.plot(x, cumulative[tier].to_numpy(), color=_tier_color(tier), marker="o", markersize=3, label=tier)
        if len(tiers) > 1:
            # A marker too, so that a single period still shows its total.
            ax_cum.plot(x, cumulative.sum(axis=1).to_numpy(), color="#222222", linewidth=2, marker="o",
                        markersize=4, label="total")
        ax_cum.set_ylabel(f"{unit}, cumulative")
        ax_cum.set_xlabel("Date (UTC)")
        ax_cum.set_ylim(0, float(cumulative.sum(axis=1).max()) * _HEADROOM or 1.0)
    pad = pd.Timedelta(days=_BAR_DAYS[code])
    ax_bar.set_xlim(table.index.min() - pad, table.index.max() + pad)
    ax_bar.set_ylabel(f"{unit} per {word}")
    if ax_cum is None:
        ax_bar.set_xlabel("Date (UTC)")
    # Headroom above the tallest bar and the last point keeps the legends off the data.
    ax_bar.set_ylim(0, float(bottom.max()) * _HEADROOM or 1.0)
    for panel in panels:
        _style(panel)
        _credits_axis(panel, costs, unit, own=own)
        panel.legend(loc="upper left", fontsize="small", ncols=len(tiers) + 1, frameon=False)
        _date_axis(panel)
    if ax_cum is not None and ax_bar.get_shared_x_axes().joined(ax_bar, ax_cum):
        # The dates under the lower panel serve both.
        ax_bar.tick_params(axis="x", labelbottom=False)
        ax_bar.xaxis.get_offset_text().set_visible(False)
    return fig


def _size_label(size: str) -> str:
    w, _, h = str(size).partition("x")
    if w.isdigit() and h.isdigit():
        g = math.gcd(int(w), int(h))
        return f"{size}\n({int(w) // g}:{int(h) // g})"
    return str(size)


def spend_by_tier_size(df: pd.DataFrame, *, currency: str = "USD", ax: Axes | None = None) -> Figure:
    """Charged spend for each size, one bar per tier.

    Args:
        df: runs as returned by :func:`imgkit.runs`.
        currency: ``"USD"``, ``"CNY"`` or ``"credits"``.
        ax: the Axes to draw on; a new figure when None.

    Example:
        >>> spend_by_tier_size(imgkit.runs(), currency="credits")
    """
    import numpy as np

    unit = currency_unit(currency)
    own = ax is None
    fig, ax = _target(ax)
    costs = _has_costs(df)
    column = cost_column(unit)
    data = costs.loc[costs[column].notna(), ["size", "quality", column]].copy()
    ax.set_title(f"Spend by tier and size (charged, {unit})", loc="left")
    if data.empty:
        _empty(ax, "No runs with a known cost")
        return fig
    data["quality"] = data["quality"].astype("string").fillna("(none)")
    table = data.pivot_table(
        index="size", columns="quality", values=column, aggfunc="sum", fill_value=0.0, observed=True
    )
    tiers = [t for t in _tiers(data["quality"]) if t in table.columns]
    positions = np.arange(len(table))
    width = 0.8 / max(len(tiers), 1)
    label_bars = len(table) * len(tiers) <= 15
    for i, tier in enumerate(tiers):
        values = table[tier].to_numpy(dtype=float)
        offset = (i - (len(tiers) - 1) / 2) * width
        bars = ax.bar(positions + offset, values, width, color=_tier_color(tier), label=tier)
        if label_bars:
            ax.bar_label(bars, labels=[_money(v, unit) if v else "" for v in values], fontsize="x-small", padding=2,
                         parse_math=False)
    ax.set_xticks(positions, [_size_label(s) for s in table.index])
    ax.set_xlabel("Size (pixels)")
    ax.set_ylabel(f"Spend ({unit})")
    ax.set_ylim(0, float(table.to_numpy().max()) * _HEADROOM or 1.0)
    _style(ax)
    _credits_axis(ax, costs, unit, own=own)
    ax.legend(loc="upper left", fontsize="small", ncols=len(tiers), frameon=False)
    return fig


def cost_vs_latency(df: pd.DataFrame, *, currency: str = "USD", ax: Axes | None = None) -> Figure:
    """Each run's charged cost against its latency (submit to completion), coloured by tier.

    Args:
        df: runs as returned by :func:`imgkit.runs`.
        currency: ``"USD"``, ``"CNY"`` or ``"credits"``.
        ax: the Axes to draw on; a new figure when None.

    Example:
        >>> cost_vs_latency(imgkit.runs())
    """
    unit = currency_unit(currency)
    own = ax is None
    fig, ax = _target(ax)
    costs = _has_costs(df)
    column = cost_column(unit)
    data = costs.loc[costs[column].notna() & costs["latency_s"].notna(), ["latency_s", "quality", column]]
    ax.set_title(f"Cost against latency per tier ({unit})", loc="left")
    if data.empty:
        _empty(ax, "No completed runs with a known cost")
        return fig
    quality = data["quality"].astype("string").fillna("(none)")
    # Many runs overlap exactly (same tier and size, same price): small translucent markers
    # keep the clusters visible.
    alpha = 0.8 if len(data) < 200 else 0.35
    for tier in _tiers(quality):
        rows = data[(quality == tier).to_numpy(dtype=bool)]
        ax.scatter(rows["latency_s"], rows[column], s=18, alpha=alpha, color=_tier_color(tier),
                   edgecolors="none", label=f"{tier} ({len(rows)})")
    ax.set_xlabel("Latency, submit to result (s)")
    ax.set_ylabel(f"Charged per run ({unit})")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    _style(ax, grid="both")
    _credits_axis(ax, costs, unit, own=own)
    ax.legend(title="tier (runs)", loc="upper left", fontsize="small", frameon=False)
    return fig


def estimated_vs_charged(df: pd.DataFrame, *, currency: str = "credits", ax: Axes | None = None) -> Figure:
    """Each run's estimate against what the service charged or reserved; the dashed line is
    where they agree.

    Only runs with a figure from the service are drawn (``cost_basis`` charged or reserved).

    Args:
        df: runs as returned by :func:`imgkit.runs`.
        currency: ``"credits"``, ``"USD"`` or ``"CNY"``.
        ax: the Axes to draw on; a new figure when None.

    Example:
        >>> estimated_vs_charged(imgkit.runs())
    """
    unit = currency_unit(currency)
    fig, ax = _target(ax, 6.5, 5.0)
    costs = _has_costs(df)
    est, charged = cost_column(unit, estimated=True), cost_column(unit)
    reported = costs["cost_basis"].isin(["charged", "reserved"]).to_numpy(dtype=bool)
    data = costs.loc[reported & costs[est].notna().to_numpy() & costs[charged].notna().to_numpy()]
    ax.set_title(f"Estimated against charged ({unit})", loc="left")
    if data.empty:
        _empty(ax, "No runs with a cost reported by the service")
        return fig
    values = data[[est, charged]].to_numpy(dtype=float)
    positive = values[values > 0]
    top = float(values.max()) * 1.08 or 1.0
    # Tiers differ by 15x and n by 10x: on a linear scale the cheap runs pile up in a corner.
    if positive.size and top / float(positive.min()) > 50:
        bottom = float(positive.min()) / 1.5
        ax.set_xscale("log")
        ax.set_yscale("log")
        data = data[(data[est] > 0) & (data[charged] > 0)]
    else:
        bottom = 0.0
    quality = data["quality"].astype("string").fillna("(none)")
    for tier in _tiers(quality):
        rows = data[(quality == tier).to_numpy(dtype=bool)]
        ax.scatter(rows[est], rows[charged], s=22, alpha=0.7, color=_tier_color(tier), edgecolors="none", label=tier)
    ax.plot([bottom, top], [bottom, top], linestyle="--", color="#777777", linewidth=1, label="charged = estimated")
    ax.set_xlim(bottom, top)
    ax.set_ylim(bottom, top)
    if bottom > 0:
        from matplotlib.ticker import FuncFormatter

        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(plain)
    ax.set_xlabel(f"Estimated per run ({unit})")
    ax.set_ylabel(f"Charged or reserved per run ({unit})")
    _style(ax, grid="both")
    ax.legend(title="tier", loc="upper left", fontsize="small", frameon=False)
    return fig


def runs_by_status(df: pd.DataFrame, *, ax: Axes | None = None) -> Figure:
    """How many runs ended in each status, split by tier.

    Args:
        df: runs as returned by :func:`imgkit.runs`.
        ax: the Axes to draw on; a new figure when None.

    Example:
        >>> runs_by_status(imgkit.runs())
    """
    import numpy as np

    fig, ax = _target(ax, 9.0, 3.5)
    ax.set_title("Runs by status and tier", loc="left")
    if df.empty:
        _empty(ax, "No runs")
        return fig
    status = df["status"].astype("string").fillna("(none)")
    quality = df["quality"].astype("string").fillna("(none)")
    counts = (
        status.to_frame("status").assign(quality=quality).value_counts().unstack(fill_value=0)
    )
    order = [s for s in STATUSES if s in counts.index] + sorted(set(counts.index) - set(STATUSES))
    counts = counts.reindex(order[::-1])  # first status on top
    tiers = [t for t in _tiers(quality) if t in counts.columns]
    left = np.zeros(len(counts))
    for tier in tiers:
        values = counts[tier].to_numpy(dtype=float)
        ax.barh(counts.index, values, left=left, color=_tier_color(tier), label=tier, height=0.6)
        left += values
    for y, total in enumerate(left):
        ax.text(total, y, f" {int(total):,}", va="center", fontsize="small")
    ax.set_xlabel("Runs")
    ax.set_xlim(0, float(left.max()) * 1.12 or 1.0)
    _style(ax, grid="x")
    ax.legend(title="tier", loc="lower right", fontsize="small", frameon=False)
    return fig

