"""Building a report: filter the runs, count their costs, group them."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgkit import _files
from imgkit.costs import RULES, RULES_TEXT
from imgkit.errors import ConfigError, ValidationError
from imgkit.plots import CURRENCIES, cost_column, currency_unit, time_buckets, with_costs
from imgkit.pricing import fx_rate
from imgkit.request import QUALITIES

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["EXTENSIONS", "GROUP_BY", "LINE_ITEM_KEYS", "ROW_COLUMNS", "CostReport", "Totals", "report"]

log = logging.getLogger("imgkit")

#: What a report can group by. day/week/month are UTC calendar periods (weeks start on
#: Monday); a run with several tags counts once under each of them; user and project are who
#: ran a run and for what ("(none)" for runs that did not record it). A ``group_by`` item may
#: also combine several of these into one table: ``("user", "project")`` or ``"user+project"``.
GROUP_BY: tuple[str, ...] = (
    "day", "week", "month", "quality", "size", "model", "status", "provider", "tag", "price_sheet",
    "resolution", "user", "project",
)
#: The keys of a report's line items: one line per model, quality, size, resolution and the
#: price sheet that priced it.
LINE_ITEM_KEYS: tuple[str, ...] = ("model", "quality", "size", "resolution", "price_sheet")
#: Decimal places a report shows (and rounds each line to): credits as the price sheets
#: state them, money to the hundredth of a cent.
PLACES: dict[str, int] = {"credits": 5, "USD": 4, "CNY": 4}
#: Decimal places of a price of one image in USD or CNY (a line's images x that price,
#: rounded to :data:`PLACES`, is then the amount a sheet charges for them).
UNIT_PLACES = 6
_TIME_GROUPS = {"day": "D", "week": "W", "month": "M"}
_NONE = "(none)"
_UNTAGGED = "(untagged)"

#: The cost rules, stated in every report: those of :mod:`imgkit.costs`, then how amounts
#: are converted.
SEMANTICS: tuple[str, ...] = (
    *RULES_TEXT,
    "Estimated: the estimate made before submitting each run (est_credits), over all runs in the "
    "period, including those that failed.",
    "Charged is what counts as spent, in three parts: reported (the charge the service reported), "
    "reserved (what it held when it accepted the task, not yet confirmed as charged) and at estimate "
    "(runs it reported no figure for).",
    "Every amount in credits (estimated, charged and may have cost alike) becomes USD and CNY the same "
    "way: with each run's own price sheet and the exchange rate stated under Price sheets. All times "
    "are UTC.",
    "Each line is rounded once as shown (credits to 5 places, USD and CNY to 4); totals are the exact "
    "sums rounded once, and a table whose shown lines do not add up to its total to the last digit "
    "has a rounding line.",
)

#: The columns of a report's rows (CSV, XLSX "Runs", HTML), in order.
ROW_COLUMNS: tuple[str, ...] = (
    "created_at", "run_id", "status", "cost_basis", "quality", "size", "resolution", "n", "n_images",
    "est_credits", "est_usd", "est_cny", "charged_credits", "charged_usd", "charged_cny",
    "credits_reserved", "credits_charged", "price_sheet", "latency_s", "provider", "model", "mode",
    "user", "project", "task_id", "error_code", "error_message", "tags", "prompt", "submitted_at", "completed_at",
    "attempts", "notes",
)
#: The columns listing failed and unknown runs in documents.
FAILED_COLUMNS: tuple[str, ...] = (
    "created_at", "run_id", "status", "cost_basis", "quality", "size", "n", "est_credits",
    "charged_credits", "may_have_cost_credits", "error_code", "task_id",
)
#: The parts of what counts as spent (see :class:`Totals`).
_PARTS = ("reported", "reserved", "at_estimate")
#: The cost bases counted at what the service held (reserved) for the run: the rules of
#: :mod:`imgkit.costs` that count something, other than a reported charge or the estimate.
_HELD = tuple(rule.basis for rule in RULES if rule.spent and rule.basis not in ("charged", "estimate"))


@dataclass(frozen=True, slots=True)
class Totals:
    """A report's totals: exact sums (documents show them rounded once, see :data:`PLACES`).
    Amounts are floats; counts ints.

    Attributes:
        runs: runs in the report.
        images: images delivered (files kept).
        completed, failed, unknown, in_progress: runs by outcome.
        est_credits, est_usd, est_cny: estimates of all the runs.
        charged_credits, charged_usd, charged_cny: what counts as spent (see the report's
            notes): reported + reserved + at estimate.
        may_have_cost_credits, may_have_cost_usd, may_have_cost_cny: estimates of the runs
            whose cost is unknown (not in the charged amounts).
        may_have_cost_runs: how many runs those are.
        reported_credits, reported_usd, reported_cny: the part of charged the service
            reported as charged.
        reserved_credits, reserved_usd, reserved_cny: the part counted at what it reserved on
            accepting the tasks and has not confirmed as charged (runs whose images could not
            be downloaded among them).
        at_estimate_credits, at_estimate_usd, at_estimate_cny: the part counted at the
            estimate (runs the service reported no figure for).
        reported_runs, reserved_runs, at_estimate_runs: the runs of each part.
        batch_runs, batch_images: the runs sent in OpenAI Batches, and their images.
        batch_discount_credits, batch_discount_usd, batch_discount_cny: what the batch
            price took off those images' direct price, as a negative amount (the line items'
            batch images at their unit price times the share taken off): already off every
            other amount, which counts batch runs at the batch price.
    """

    runs: int
    images: int
    completed: int
    failed: int
    unknown: int
    in_progress: int
    est_credits: float
    est_usd: float
    est_cny: float
    charged_credits: float
    charged_usd: float
    charged_cny: float
    may_have_cost_credits: float
    may_have_cost_usd: float
    may_have_cost_cny: float
    may_have_cost_runs: int
    reported_credits: float = 0.0
    reported_usd: float = 0.0
    reported_cny: float = 0.0
    reserved_credits: float = 0.0
    reserved_usd: float = 0.0
    reserved_cny: float = 0.0
    at_estimate_credits: float = 0.0
    at_estimate_usd: float = 0.0
    at_estimate_cny: float = 0.0
    reported_runs: int = 0
    reserved_runs: int = 0
    at_estimate_runs: int = 0
    batch_runs: int = 0
    batch_images: int = 0
    batch_discount_credits: float = 0.0
    batch_discount_usd: float = 0.0
    batch_discount_cny: float = 0.0

    def to_frame(self) -> pd.DataFrame:
        """The amounts as rows, each rounded once (:data:`PLACES`): the three parts of what
        counts as charged, a rounding line when the shown parts do not add up to the shown
        total, the charged total, what unknown runs may have cost, the estimate, and (when
        any run went in a Batch) the batch discount; runs, credits, USD and CNY as columns."""
        import pandas as pd

        units = ("credits", "usd", "cny")
        places = [PLACES["credits"], PLACES["USD"], PLACES["CNY"]]
        parts = [
            ("reported by the service", self.reported_runs, "reported"),
            ("reserved (not yet confirmed)", self.reserved_runs, "reserved"),
            ("at estimate (no figure)", self.at_estimate_runs, "at_estimate"),
        ]
        rows: list[tuple[Any, ...]] = [
            (label, runs, *(rounded(getattr(self, f"{part}_{u}"), n) for u, n in zip(units, places, strict=True)))
            for label, runs, part in parts
        ]
        total = [rounded(getattr(self, f"charged_{u}"), n) for u, n in zip(units, places, strict=True)]
        gap = [difference(t, [row[2 + i] for row in rows]) for i, t in enumerate(total)]
        if any(gap):
            rows.append(("rounding", None, *gap))
        rows.append(("charged, total", self.reported_runs + self.reserved_runs + self.at_estimate_runs, *total))
        rows.append(("may have cost (unknown runs)", self.may_have_cost_runs,
                     *(rounded(getattr(self, f"may_have_cost_{u}"), n) for u, n in zip(units, places, strict=True))))
        rows.append(("estimated (all runs)", self.runs,
                     *(rounded(getattr(self, f"est_{u}"), n) for u, n in zip(units, places, strict=True))))
        if self.batch_runs:
            discount = (rounded(getattr(self, f"batch_discount_{u}"), n) for u, n in zip(units, places, strict=True))
            rows.append(("batch discount (already off the amounts above)", self.batch_runs, *discount))
        frame = pd.DataFrame(rows, columns=["amount", "runs", "credits", "USD", "CNY"])
        frame["runs"] = frame["runs"].astype("Int64")
        return frame


def rounded(value: float, places: int) -> float:
    """``value`` rounded half up to ``places`` decimals (NaN stays NaN), as every line of a
    report is, once."""
    if value is None or value != value:
        return float("nan")
    return float(Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def difference(total: float, lines: Iterable[float]) -> float:
    """``total`` minus the sum of ``lines``, exactly in decimal (lines already rounded; NaN
    lines count 0): the rounding line that makes shown lines add up to a shown total."""
    if total != total:
        return 0.0
    shown = sum((Decimal(repr(float(v))) for v in lines if v == v), Decimal(0))
    return float(Decimal(repr(float(total))) - shown)


def report(
    df: pd.DataFrame | None = None,
    *,
    since: str | dt.date | dt.datetime | None = None,
    until: str | dt.date | dt.datetime | None = None,
    tags: str | Iterable[str] | None = None,
    quality: str | Iterable[str] | None = None,
    user: str | Iterable[str] | None = None,
    project: str | Iterable[str] | None = None,
    group_by: str | Sequence[str | Sequence[str]] = ("day", "quality", "size"),
    currency: str = "USD",
    title: str = "imgkit cost report",
    max_rows: int = 200,
) -> CostReport:
    """Build a cost report over a slice of the runs.

    Args:
        df: runs as returned by :func:`imgkit.runs` (the default session's ledger when None).
        since: keep runs created at or after this date, datetime or ISO text (UTC when no
            timezone is given).
        until: keep runs created up to this point: a date (``"2026-11-30"``) includes that
            whole day, a datetime is an inclusive upper bound.
        tags: keep runs having any of these tags.
        quality: keep runs of these tiers (low, medium, high).
        user: keep runs of these people (as recorded in the run's ``user``).
        project: keep runs of these projects.
        group_by: one grouped table per item, from :data:`GROUP_BY`; an item that is a
            tuple (or names joined by "+") makes one table keyed by all of them, e.g.
            ``group_by=[("user", "project", "model")]`` for a team's bill by person, project
            and model. Runs that did not record a user or project show as "(none)". Every
            report also has its line items (:attr:`CostReport.line_items`).
        currency: the money column of grouped tables and charts: ``"USD"``, ``"CNY"`` or
            ``"credits"`` (totals always give all three).
        title: the report's heading.
        max_rows: the most runs listed in the documents (HTML, Markdown, PDF); CSV and XLSX
            always have every row, and grouped tables are never cut.

    Example:
        >>> rep = imgkit.report(since="2026-11-01", until="2026-11-30", tags=["campaign"],
        ...                     group_by=("week", "quality"), currency="CNY")
        >>> rep.totals.charged_cny
        >>> rep.save("november.xlsx")
    """
    unit = _currency(currency)
    groups = _group_by(group_by)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
        raise ValidationError("max_rows", max_rows, "a whole number of runs, 0 or more")
    start, end = _bound("since", since), _bound("until", until)
    whole_day = until is not None and _is_date_only(until)
    if start is not None and end is not None and start > end:
        raise ValidationError("until", until, f"a date or time on or after since={since}",
                              hint="swap the two, or leave one out")
    wanted_tags = _names("tags", tags)
    wanted_tiers = _names("quality", quality)
    unknown = [t for t in wanted_tiers if t not in QUALITIES]
    if unknown:
        raise ValidationError("quality", ", ".join(unknown), " | ".join(QUALITIES))
    people = {"user": _names("user", user), "project": _names("project", project)}
    filters = _describe_filters(since, until, wanted_tags, wanted_tiers, people)
    if df is None:
        # Over the whole ledger: the sums come from SQL; the runs load only when asked for.
        from imgkit.session import get_session

        session = get_session()
        ledger, data_dir = session.ledger, session.data_dir

        def load() -> pd.DataFrame:
            rows = _select(ledger.to_dataframe(data_dir=data_dir), start, end, whole_day, wanted_tags, wanted_tiers,
                           people)
            return with_costs(rows)

        summary = _ledger_summary(ledger, groups, start, end, whole_day, wanted_tags, wanted_tiers, people)
        return CostReport(
            runs=load, summary=summary, since=start, until=end, filters=filters, group_by=groups, currency=unit,
            title=title, max_rows=max_rows, source=f"the ledger {ledger.path}", available=ledger.count(),
        )
    rows = _select(df, start, end, whole_day, wanted_tags, wanted_tiers, people)
    costs = with_costs(rows)
    return CostReport(
        runs=costs, summary=_frame_summary(costs, groups), since=start, until=end, filters=filters,
        group_by=groups, currency=unit, title=title, max_rows=max_rows, source="the runs given", available=len(df),
    )


class CostReport:
    """Totals, grouped tables, failed and unknown runs, price sheets and period of some runs.

    Build it with :func:`report`. In a notebook it shows its totals and grouped tables; the
    ``to_*`` methods and :meth:`save` export it.

    Totals and grouped tables are sums: over the DataFrame given to :func:`report`, or
    computed by SQL in the ledger (with the rules of :mod:`imgkit.costs`) when it was given
    none, so a report over a million runs does not load them; :attr:`runs` and
    :attr:`failed` then read them on first use (exports of every row, charts).

    Attributes:
        runs: the runs in the report with their cost columns (see :func:`imgkit.plots.with_costs`).
        totals: a :class:`Totals`.
        groups: one table per ``group_by`` item, by name (``"user+project"`` for a table of
            several keys); each amount rounded once as shown.
        line_items: one line per model, quality, size, resolution and price sheet: runs,
            images (the quantity), the sheet's ``unit_price`` of one image, ``subtotal`` (the
            images at that price), what was charged and may have been, and the currency;
            when any run went in an OpenAI Batch, also ``batch_images`` and
            ``batch_discount`` (negative: what the batch price took off the subtotal).
        fx: the exchange rate conversions used (:class:`imgkit.pricing.FxRate`).
        failed: the failed and unknown runs, and any other run whose cost is unknown.
        sheets: the price sheets the runs used, with how each converts credits (``fx``).
        period: the first and last day covered (UTC), from the filters or the runs.
        notes: how costs are counted, and anything unusual about these runs.
        source: what the runs were read from (the ledger's path, for a report built from it).
        empty_reason: None when there are runs; else why the report is empty, naming the
            source, in words.
    """

    def __init__(
        self,
        *,
        runs: pd.DataFrame | Callable[[], pd.DataFrame],
        summary: _Summary,
        since: pd.Timestamp | None,
        until: pd.Timestamp | None,
        filters: str,
        group_by: tuple[str, ...],
        currency: str,
        title: str,
        max_rows: int,
        source: str = "the runs given",
        available: int | None = None,
    ) -> None:
        import pandas as pd

        self._runs = runs
        self._failed: pd.DataFrame | None = None
        self.source = source
        self.currency = currency
        self.title = title
        self.filters = filters
        self.group_by = group_by
        self.max_rows = max_rows
        self.generated_at = pd.Timestamp.now(tz="UTC").floor("s")
        self.period: tuple[pd.Timestamp | None, pd.Timestamp | None] = (
            since if since is not None else summary.first,
            until if until is not None else summary.last,
        )
        self.totals = _totals(summary.fine)
        self.available = self.totals.runs if available is None else available
        self.groups = {
            name: _group_table(summary.tags if "tag" in name.split("+") else summary.fine, name, currency)
            for name in group_by
        }
        self.line_items, discount = _line_items(summary.fine, currency)
        self.totals = replace(self.totals, batch_discount_credits=discount["batch_discount_credits"],
                              batch_discount_usd=discount["batch_discount_usd"],
                              batch_discount_cny=discount["batch_discount_cny"])
        self.sheets = _sheets(summary.fine)
        self.fx = fx_rate()
        self.notes = [*SEMANTICS, f"Exchange rate: {self.fx}. {self.fx.source}", *_remarks(summary.fine),
                      *_batch_remarks(self.totals), *_sheet_remarks(self.sheets)]
        if self.empty_reason:
            self.notes.insert(0, self.empty_reason)

    @property
    def empty_reason(self) -> str | None:
        if self.totals.runs:
            return None
        if not self.available:
            return f"No runs: {self.source} holds none (is IMGKIT_HOME the data directory you meant?)."
        return (f"No runs match ({self.filters}): {self.source} holds {self.available:,} runs, none of them "
                "in this slice.")

    @property
    def runs(self) -> pd.DataFrame:
        """The runs in the report with their cost columns (see :func:`imgkit.plots.with_costs`);
        a report over the ledger reads them on first use."""
        if callable(self._runs):
            self._runs = self._runs()
        return self._runs

    @property
    def failed(self) -> pd.DataFrame:
        """The failed and unknown runs, and any other run whose cost is unknown."""
        if self._failed is None:
            self._failed = _failed(self.runs)
        return self._failed

    # --- text -------------------------------------------------------------------------

    @property
    def period_text(self) -> str:
        start, end = self.period
        if start is None or end is None:
            return "no runs"
        a, b = start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")
        return f"{a} (UTC)" if a == b else f"{a} – {b} (UTC)"

    def __repr__(self) -> str:
        t = self.totals
        return (
            f"<CostReport {self.period_text}: {t.runs} runs, {t.charged_credits:,.5f} credits charged "
            f"(${t.charged_usd:,.4f}, ¥{t.charged_cny:,.4f})>"
        )

    def _repr_html_(self) -> str:
        from imgkit.reports import _text

        return _text.notebook_html(self)

    # --- charts -----------------------------------------------------------------------

    def charts(self) -> dict[str, Figure]:
        """New figures for the report's charts, by name (spend over time, by tier and size,
        cost against latency, estimated against charged, runs by status)."""
        from imgkit.reports import _charts

        return _charts.standalone(self)

    # --- exports ----------------------------------------------------------------------

    def rows(self) -> pd.DataFrame:
        """The runs as exported: :data:`ROW_COLUMNS`, tags joined with commas."""
        out = self.runs.loc[:, list(ROW_COLUMNS)].copy()
        out["tags"] = [", ".join(t) for t in self.runs["tags"]]
        return out.reset_index(drop=True)

    def to_csv(self, path: str | Path | None = None) -> str:
        """The rows (one per run, :data:`ROW_COLUMNS`) as CSV; written to ``path`` when given,
        and returned."""
        rows = self.rows()
        for name in ("created_at", "submitted_at", "completed_at"):
            # ISO 8601 in UTC with a space, which spreadsheets read as a date and time.
            rows[name] = rows[name].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S")
        text: str = rows.to_csv(index=False)
        if path is not None:
            _files.write_text(Path(path), text)
        return text

    def to_csv_tables(self, folder: str | Path) -> dict[str, Path]:
        """Every table of the report as its own CSV in ``folder`` (created when missing), as
        the documents show them (each amount rounded once, a rounding line where one is
        needed, a Total row): ``totals.csv``, ``line_items.csv``, ``by_<group>.csv`` per
        grouped table, ``failed_and_unknown.csv``, ``price_sheets.csv``, and ``runs.csv``
        (:meth:`to_csv`). Each file is written atomically; returns their paths by table.

        Example:
            >>> imgkit.report(group_by=[("user", "project")]).to_csv_tables("bill")
            {'totals': PosixPath('bill/totals.csv'), 'line_items': ..., 'by_user+project': ...}
        """
        from imgkit.reports import _text

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for key, table in _text.csv_tables(self).items():
            path = out / f"{key}.csv"
            _files.write_text(path, _text.csv_text(table))
            paths[key] = path
        paths["runs"] = out / "runs.csv"
        self.to_csv(paths["runs"])
        return paths

    def to_parquet(self, path: str | Path) -> Path:
        """The rows (one per run, :data:`ROW_COLUMNS`) as a Parquet file (pyarrow), written
        atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        table = pa.Table.from_pandas(self.rows(), preserve_index=False)
        with _files.atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path

    def to_xlsx(self, path: str | Path) -> Path:
        """Write an Excel workbook: Summary, one ``by_<group>`` sheet per group and Runs."""
        from imgkit.reports import _xlsx

        path = Path(path)
        with _files.atomic_path(path) as tmp:
            _xlsx.write(self, tmp)
        return path

    def to_html(self, path: str | Path | None = None) -> str:
        """One self-contained HTML page (charts embedded as PNG); written to ``path`` when
        given, and returned."""
        from imgkit.reports import _text

        page = _text.html_page(self)
        if path is not None:
            _files.write_text(Path(path), page)
        return page

    def to_markdown(self, path: str | Path | None = None) -> str:
        """The report as Markdown (tables, no charts); written to ``path`` when given, and
        returned."""
        from imgkit.reports import _text

        text = _text.markdown(self)
        if path is not None:
            _files.write_text(Path(path), text)
        return text

    def to_pdf(self, path: str | Path) -> Path:
        """A PDF: a title page with the totals, the charts, then the tables over as many
        pages as they need."""
        from imgkit.reports import _pdf

        path = Path(path)
        with _files.atomic_path(path) as tmp:
            _pdf.write(self, tmp)
        return path

    def save(self, path: str | Path, *, format: str | None = None) -> Path:
        """Export by the file's extension: .csv, .xlsx, .html, .md, .pdf or .parquet. The file is
        written beside its final name and moved into place when complete, so an error
        (a full disk, say) leaves any earlier report at ``path`` as it was.

        Args:
            path: the file to write.
            format: ``"csv"``, ``"xlsx"``, ``"html"``, ``"md"``, ``"pdf"`` or ``"parquet"``; it must agree with
                the extension (default: from the extension).

        Example:
            >>> imgkit.report(since="2026-11-01").save("spend.pdf")
        """
        path = Path(path)
        kind = EXTENSIONS.get(path.suffix.lower())
        if kind is None:
            raise ValidationError("path", str(path), "a file ending in " + ", ".join(sorted(EXTENSIONS)))
        if format is not None and format.lower() != kind:
            raise ValidationError("format", format, f"{kind}, as the extension of {path.name} says",
                                  hint="name the file after its format, e.g. spend." + format.lower())
        writers: dict[str, Callable[[Path], object]] = {
            "csv": self.to_csv, "xlsx": self.to_xlsx, "html": self.to_html, "md": self.to_markdown, "pdf": self.to_pdf,
            "parquet": self.to_parquet,
        }
        writers[kind](path)
        return path


#: File extensions :meth:`CostReport.save` understands, and the format of each.
EXTENSIONS = {".csv": "csv", ".xlsx": "xlsx", ".html": "html", ".htm": "html", ".md": "md",
              ".markdown": "md", ".pdf": "pdf", ".parquet": "parquet"}


# --- arguments ---------------------------------------------------------------------------


def _currency(currency: str) -> str:
    try:
        return currency_unit(currency)
    except ValueError:
        raise ValidationError("currency", currency, " | ".join(CURRENCIES)) from None


def _group_by(group_by: str | Sequence[str | Sequence[str]]) -> tuple[str, ...]:
    """The tables' names: one key each, or keys joined by "+" for a table of several keys
    (given as a tuple in the list, or as "user+project")."""
    items: list[Any] = [group_by] if isinstance(group_by, str) else list(group_by)
    out: list[str] = []
    allowed = " | ".join(GROUP_BY) + ", or several of them together, such as ('user', 'project') or 'user+project'"
    for item in items:
        parts = item.split("+") if isinstance(item, str) else list(item) if isinstance(item, list | tuple) else [item]
        keys: list[str] = []
        for part in parts:
            key = str(part).strip().lower().replace("-", "_")
            if key not in GROUP_BY:
                raise ValidationError("group_by", item, allowed)
            if key not in keys:
                keys.append(key)
        if not keys:
            raise ValidationError("group_by", item, allowed)
        name = "+".join(keys)
        if name not in out:
            out.append(name)
    return tuple(out)


def _names(field: str, value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) for v in items):
        raise ValidationError(field, value, "a text or a list of texts")
    return tuple(v.strip() for v in items if v.strip())


_DATE_ONLY = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")


def _is_date_only(value: object) -> bool:
    if isinstance(value, str):
        return bool(_DATE_ONLY.match(value))
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)


def _bound(field: str, value: object) -> pd.Timestamp | None:
    """A UTC timestamp from a date, datetime or ISO text (naive values are UTC)."""
    if value is None:
        return None
    import pandas as pd

    parsed: dt.datetime
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError(field, value, "a date, datetime or ISO 8601 text such as 2026-11-01") from None
    elif isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    else:
        raise ValidationError(field, value, "a date, datetime or ISO 8601 text such as 2026-11-01")
    stamp = pd.Timestamp(parsed)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _describe_filters(
    since: object, until: object, tags: tuple[str, ...], tiers: tuple[str, ...],
    people: dict[str, tuple[str, ...]] | None = None,
) -> str:
    parts = []
    if since is not None:
        parts.append(f"since {since}")
    if until is not None:
        parts.append(f"until {until}")
    if tags:
        parts.append("tags " + ", ".join(tags))
    if tiers:
        parts.append("quality " + ", ".join(tiers))
    for key, names in (people or {}).items():
        if names:
            parts.append(f"{key} " + ", ".join(names))
    return "; ".join(parts) if parts else "all runs"


# --- building ----------------------------------------------------------------------------


def _select(
    df: pd.DataFrame,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    whole_day: bool,
    tags: tuple[str, ...],
    tiers: tuple[str, ...],
    people: dict[str, tuple[str, ...]] | None = None,
) -> pd.DataFrame:
    """The runs created from ``start`` to ``end`` (through the end of that day when
    ``whole_day``), having any of ``tags``, one of ``tiers``, and (``people``) one of the
    users and projects named."""
    import numpy as np
    import pandas as pd

    keep = np.ones(len(df), dtype=bool)
    created = df["created_at"]
    if created.dt.tz is None:
        created = created.dt.tz_localize("UTC")
    if start is not None:
        keep &= (created >= start).to_numpy(dtype=bool)
    if end is not None:
        before = created < end + pd.Timedelta(days=1) if whole_day else created <= end
        keep &= before.to_numpy(dtype=bool)
    if tags:
        wanted = set(tags)
        keep &= np.fromiter((bool(wanted.intersection(t)) for t in df["tags"]), dtype=bool, count=len(df))
    if tiers:
        keep &= df["quality"].astype("string").isin(tiers).fillna(False).to_numpy(dtype=bool)
    for key, names in (people or {}).items():
        if names:
            keep &= df[key].astype("string").isin(names).fillna(False).to_numpy(dtype=bool)
    return df.loc[keep]


#: The summed columns of a report's summary frames, beside the group keys.
_COUNTS = ("runs", "images", "completed", "failed", "unknown", "may_have_cost_runs", "estimate_runs",
           "runs_with_credits", "batch_runs", "batch_images")
#: Amounts in credits a summary frame holds; each is also converted to USD and CNY.
_CREDITS = ("est", "charged", "reported", "reserved", "at_estimate", "may_have_cost")
_AMOUNTS = tuple(f"{kind}_{unit}" for kind in _CREDITS for unit in ("credits", "usd", "cny"))
_KEYS = ("created_at", "quality", "size", "model", "status", "provider", "price_sheet", "resolution", "user",
         "project")
#: Keys that are not columns of the ledger's report index: summed in SQL only when asked for.
_EXTRA_KEYS = ("resolution", "user", "project")


@dataclass(frozen=True, slots=True)
class _Summary:
    """Sums of the runs in a report by group keys and price sheet.

    ``fine`` has a row per run (a report over a DataFrame) or per combination of the keys
    and price sheet (over the ledger, summed in SQL); ``tags`` the same by tag (the runs'
    ``tags`` lists, or a ``tag`` column). Both have :data:`_COUNTS` and :data:`_AMOUNTS`.
    """

    fine: pd.DataFrame
    tags: pd.DataFrame
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def _frame_summary(costs: pd.DataFrame, groups: tuple[str, ...]) -> _Summary:
    """The summary of a DataFrame of runs with their cost columns: a row per run."""
    import pandas as pd

    status = costs["status"].astype("string")
    basis = costs["cost_basis"]
    spent = costs["spent_credits"].astype("float64")
    batched = (costs["batch_id"].notna() if "batch_id" in costs.columns
               else pd.Series(False, index=costs.index)).astype(bool)
    fine = pd.DataFrame(
        {
            **{key: costs[key] if key in costs.columns else pd.Series(None, index=costs.index, dtype="object")
               for key in _KEYS},
            "tags": costs["tags"],
            "runs": 1,
            "images": costs["n_images"].astype("float64").fillna(0).astype("int64"),
            "completed": (status == "completed").fillna(False).astype("int64"),
            "failed": (status == "failed").fillna(False).astype("int64"),
            "unknown": (status == "unknown").fillna(False).astype("int64"),
            "may_have_cost_runs": (basis == "may have cost").astype("int64"),
            "estimate_runs": (basis == "estimate").astype("int64"),
            "runs_with_credits": costs["charged_credits"].gt(0).astype("int64"),
            "batch_runs": batched.astype("int64"),
            "batch_images": costs["n_images"].astype("float64").fillna(0).astype("int64").where(batched, 0),
            "est_credits": costs["est_credits"].astype("float64"),
            "charged_credits": costs["charged_credits"].astype("float64"),
            "reported_credits": spent.where(basis == "charged", 0.0),
            "reserved_credits": spent.where(basis.isin(_HELD), 0.0),
            "at_estimate_credits": spent.where(basis == "estimate", 0.0),
            "may_have_cost_credits": costs["may_have_cost_credits"].astype("float64"),
            "reported_runs": (basis == "charged").astype("int64"),
            "reserved_runs": basis.isin(_HELD).astype("int64"),
        },
        index=costs.index,
    )
    fallback = {f"est_{u}": costs[f"est_{u}"].astype("float64") for u in ("usd", "cny")}
    fallback.update({f"may_have_cost_{u}": costs[f"may_have_cost_{u}"].astype("float64") for u in ("usd", "cny")})
    _convert(fine, fallback)
    first = costs["created_at"].min() if len(costs) else None
    last = costs["created_at"].max() if len(costs) else None
    return _Summary(fine=fine, tags=fine, first=first, last=last)


def _convert(fine: pd.DataFrame, fallback: dict[str, pd.Series]) -> None:
    """Add the USD and CNY columns of every credits amount of ``fine``, each row with its own
    price sheet (one conversion for all: estimated and charged alike). Rows whose sheet is
    not registered keep the stored figures of ``fallback`` (estimates), else NaN; an amount
    of 0 is 0 in any currency."""
    import numpy as np

    from imgkit.plots import _price_sheets

    known = _price_sheets()
    sheets = fine["price_sheet"].astype("object")
    for kind in _CREDITS:
        credits = fine[f"{kind}_credits"].to_numpy(dtype="float64", na_value=np.nan)
        for unit in ("usd", "cny"):
            out = np.full(len(fine), np.nan)
            for name in sheets.dropna().unique():
                sheet = known.get(str(name))
                if sheet is None:
                    continue
                rows = (sheets == name).to_numpy(dtype=bool)
                convert = sheet.to_usd if unit == "usd" else sheet.to_cny
                out[rows] = convert(credits[rows])
            column = f"{kind}_{unit}"
            if column in fallback:
                stored = fallback[column].to_numpy(dtype="float64", na_value=np.nan)
                out = np.where(np.isnan(out), stored, out)
            out = np.where(credits == 0, 0.0, out)
            fine[column] = out


def _ledger_summary(
    ledger: Any,
    groups: tuple[str, ...],
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    whole_day: bool,
    tags: tuple[str, ...],
    tiers: tuple[str, ...],
    people: dict[str, tuple[str, ...]] | None = None,
) -> _Summary:
    """The summary of the ledger's runs, grouped and summed in SQL (:meth:`Ledger.cost_sums`).

    The line items need the resolution, and a grouping by user or project those columns:
    none is in the report index, so grouping by them reads the rows. A grouping by user or
    project does; the resolution is read only for the models that have one (a second, smaller
    sum that replaces those models' rows of the first).
    """
    import pandas as pd

    from imgkit.request import MODELS

    bounds: dict[str, Any] = {
        "since": None if start is None else start.timestamp(),
        "until": None if end is None else (end + pd.Timedelta(days=1) if whole_day else end).timestamp(),
        "until_inclusive": not whole_day,
        "tags": tags,
        "qualities": tiers,
    }
    if people and any(people.values()):
        bounds["users"] = (people or {}).get("user", ())
        bounds["projects"] = (people or {}).get("project", ())
    used = {key for name in groups for key in name.split("+")}
    extra = [key for key in _EXTRA_KEYS if key != "resolution" and key in used]
    keys = [*ledger.COST_KEYS, *extra]
    rows = ledger.cost_sums(extra_keys=extra, **bounds)
    tiered = sorted(name for name, profile in MODELS.items() if profile.resolutions)
    if "resolution" in used or any(row[keys.index("model")] in tiered for row in rows):
        model = keys.index("model")
        rows = [(*row[: len(keys)], None, *row[len(keys):]) for row in rows if row[model] not in tiered]
        rows += ledger.cost_sums(extra_keys=[*extra, "resolution"], models=tiered, **bounds)
    else:
        rows = [(*row[: len(keys)], None, *row[len(keys):]) for row in rows]
    fine = _typed_sums(rows, [*keys, "resolution"], ledger.COST_SUMS)
    tag_sums = (
        _typed_sums(ledger.cost_sums(by_tag=True, **bounds), ["tag", "price_sheet"], ledger.COST_SUMS)
        if any("tag" in name.split("+") for name in groups) else fine
    )
    first = pd.to_datetime(fine["first_created"].min(), unit="s", utc=True) if len(fine) else None
    last = pd.to_datetime(fine["last_created"].max(), unit="s", utc=True) if len(fine) else None
    return _Summary(fine=fine, tags=tag_sums, first=first, last=last)


def _typed_sums(rows: list[tuple[Any, ...]], keys: list[str], sums: Sequence[str]) -> pd.DataFrame:
    """SQL sums as a frame shaped like :func:`_frame_summary`'s: keys typed as the runs
    DataFrame types them, counts as ints, credits converted with each row's price sheet."""
    import pandas as pd

    from imgkit.ledger import STATUSES
    from imgkit.request import SIZES

    raw = pd.DataFrame.from_records(rows, columns=[*keys, *sums]) if rows else pd.DataFrame(
        {name: pd.Series(dtype="object") for name in [*keys, *sums]}
    )
    out = pd.DataFrame(index=raw.index)
    for key in keys:
        values = raw[key]
        if key == "day":
            out["created_at"] = pd.to_datetime(values.astype("float64") * 86400, unit="s", utc=True)
        elif key == "quality":
            out[key] = pd.Categorical(values, categories=QUALITIES, ordered=True)
        elif key == "status":
            out[key] = pd.Categorical(values, categories=STATUSES)
        elif key == "size":
            extra = sorted(set(values.dropna()) - set(SIZES.values()))
            out[key] = pd.Categorical(values, categories=[*SIZES.values(), *extra])
        elif key == "tag":
            out[key] = values.astype("object")
        else:
            out[key] = values.astype("object").astype("category") if key != "price_sheet" else values
    for key in _KEYS:
        if key not in out.columns:
            out[key] = pd.Series(None, index=raw.index, dtype="object")
    for name in (*_COUNTS, "reported_runs", "reserved_runs"):
        out[name] = raw[name].astype("float64").fillna(0).astype("int64")
    charged = raw["charged_credits"].astype("float64")
    reported = raw["reported_credits"].astype("float64")
    at_estimate = raw["at_estimate_credits"].astype("float64")
    out["est_credits"] = raw["est_credits"].astype("float64")
    out["charged_credits"] = charged
    out["reported_credits"] = reported
    out["at_estimate_credits"] = at_estimate
    out["reserved_credits"] = charged - reported - at_estimate
    out["may_have_cost_credits"] = raw["may_have_cost_credits"].astype("float64")
    fallback = {f"est_{u}": raw[f"est_{u}"].astype("float64") for u in ("usd", "cny")}
    fallback.update({f"may_have_cost_{u}": raw[f"may_have_cost_at_estimate_{u}"].astype("float64")
                     for u in ("usd", "cny")})
    _convert(out, fallback)
    out["first_created"] = raw["first_created"].astype("float64")
    out["last_created"] = raw["last_created"].astype("float64")
    return out


def _totals(fine: pd.DataFrame) -> Totals:
    def total(column: str) -> float:
        return float(fine[column].sum())

    def count(column: str) -> int:
        return int(fine[column].sum())

    runs = count("runs")
    settled = count("completed") + count("failed") + count("unknown")
    return Totals(
        runs=runs,
        images=count("images"),
        completed=count("completed"),
        failed=count("failed"),
        unknown=count("unknown"),
        in_progress=runs - settled,
        est_credits=total("est_credits"),
        est_usd=total("est_usd"),
        est_cny=total("est_cny"),
        charged_credits=total("charged_credits"),
        charged_usd=total("charged_usd"),
        charged_cny=total("charged_cny"),
        may_have_cost_credits=total("may_have_cost_credits"),
        may_have_cost_usd=total("may_have_cost_usd"),
        may_have_cost_cny=total("may_have_cost_cny"),
        may_have_cost_runs=count("may_have_cost_runs"),
        **{f"{part}_{unit}": total(f"{part}_{unit}") for part in _PARTS for unit in ("credits", "usd", "cny")},
        reported_runs=count("reported_runs"),
        reserved_runs=count("reserved_runs"),
        at_estimate_runs=count("estimate_runs"),
        batch_runs=count("batch_runs"),
        batch_images=count("batch_images"),
    )


def _group_keys(fine: pd.DataFrame, name: str) -> pd.Series:
    import pandas as pd

    if name in _TIME_GROUPS:
        return time_buckets(fine["created_at"], _TIME_GROUPS[name])
    if name == "tag":
        if "tag" in fine.columns:  # summed by tag in SQL: None for untagged runs
            return fine["tag"].astype("object").where(fine["tag"].notna(), _UNTAGGED)
        return pd.Series([list(t) or [_UNTAGGED] for t in fine["tags"]], index=fine.index, dtype=object)
    column = fine[name]
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype("object").astype("category")
    if column.isna().any():
        column = column.cat.add_categories([_NONE]).fillna(_NONE)
    return column.cat.remove_unused_categories()


def money_columns(currency: str) -> list[str]:
    """The amount columns of a grouped table in ``currency``: credits, then the currency."""
    money = ["est_credits", "charged_credits", "may_have_cost_credits"]
    if currency != "credits":
        unit = currency.lower()
        money += [cost_column(currency, estimated=True), cost_column(currency), f"may_have_cost_{unit}"]
    return money


def places_of(column: str) -> int | None:
    """The decimals a money column is shown with (None: not money)."""
    if column.endswith("_credits") or column == "credits":
        return PLACES["credits"]
    if column.startswith("unit_"):
        return UNIT_PLACES
    if column.endswith(("_usd", "_cny")) or column in ("USD", "CNY"):
        return PLACES["USD"]
    return None


def _round_lines(table: pd.DataFrame) -> pd.DataFrame:
    """Each money cell rounded once, as it is shown (:data:`PLACES`)."""
    for column in table.columns:
        places = places_of(str(column))
        if places is not None:
            table[column] = [rounded(v, places) for v in table[column].astype("float64")]
    return table


def _group_table(fine: pd.DataFrame, name: str, currency: str) -> pd.DataFrame:
    """Runs, images, failures and amounts (estimated, charged, may have cost) per value of
    ``name`` (or of each key of a combined name such as ``user+project``), each amount
    rounded once as shown."""
    import pandas as pd

    keys = name.split("+")
    money = money_columns(currency)
    frame = pd.DataFrame(
        {
            **{key: _group_keys(fine, key) for key in keys},
            **{column: fine[column] for column in ("runs", "images", "failed", "unknown")},
            **{column: fine[column] for column in money},
        }
    )
    if "tag" in keys and "tag" not in fine.columns:
        frame = frame.explode("tag")
    table = frame.groupby(keys, observed=True, sort=True).sum(min_count=0)
    return _round_lines(table.reset_index())


def _line_items(fine: pd.DataFrame, currency: str) -> tuple[pd.DataFrame, dict[str, float]]:
    """One line per model, quality, size, resolution and price sheet: runs, images, the
    sheet's price of one image (``unit_<currency>``), the images at that price
    (``subtotal_<currency>``), and what was charged and may have been, in credits and
    ``currency``; rounded once as shown. A line the sheet cannot price has no unit price.

    When any run went in an OpenAI Batch, each line also has its ``batch_images`` and
    ``batch_discount_<currency>``: those images at the unit price times the share the batch
    price takes off (50 %), negative, rounded once. Returns the table and the exact batch
    discount of all lines in credits, USD and CNY (the :class:`Totals` fields)."""
    import pandas as pd

    from imgkit.pricing import estimate, price_sheets

    unit = currency.lower()
    money = ["charged_credits", "may_have_cost_credits"]
    if currency != "credits":
        money += [f"charged_{unit}", f"may_have_cost_{unit}"]
    frame = pd.DataFrame(
        {
            **{key: fine[key].astype("object").where(fine[key].notna(), _NONE) for key in LINE_ITEM_KEYS},
            **{column: fine[column] for column in ("runs", "images", "batch_images")},
            **{column: fine[column] for column in money},
        }
    )
    table = frame.groupby(list(LINE_ITEM_KEYS), sort=False).sum(min_count=0).reset_index()
    # Tiers in their order (low, medium, high), then the rest alphabetically.
    tier = {name: i for i, name in enumerate(QUALITIES)}
    table = table.sort_values(
        ["model", "quality", "size", "resolution", "price_sheet"],
        key=lambda c: c.map(lambda v: (tier.get(v, len(tier)), str(v))) if c.name == "quality" else c.astype(str),
    ).reset_index(drop=True)
    sheets = price_sheets()
    prices: list[float] = []
    off: list[Decimal | None] = []  # the share of the price a batch takes off, per line
    discount = {"batch_discount_credits": 0.0, "batch_discount_usd": 0.0, "batch_discount_cny": 0.0}
    for model, quality, size, resolution, name, batch_images in table[
        [*LINE_ITEM_KEYS, "batch_images"]
    ].itertuples(index=False):
        sheet = sheets.get(str(name))
        price = float("nan")
        share: Decimal | None = None
        if sheet is not None:
            try:
                one = estimate(quality=str(quality), size=str(size), model=str(model), sheet=str(name),
                               resolution=None if resolution == _NONE else str(resolution))
            except (ValidationError, ConfigError):  # a line the sheet cannot price has no unit price
                one = None
            if one is not None:
                credits = one.per_image_credits
                price = credits if currency == "credits" else float(
                    sheet.to_usd(credits) if currency == "USD" else sheet.to_cny(credits))
                if batch_images and sheet.batch_discount is not None:
                    share = 1 - Decimal(str(sheet.batch_discount))
                    saved = float(Decimal(repr(credits)) * int(batch_images) * share)
                    discount["batch_discount_credits"] -= saved
                    discount["batch_discount_usd"] -= float(sheet.to_usd(saved))
                    discount["batch_discount_cny"] -= float(sheet.to_cny(saved))
        prices.append(rounded(price, PLACES[currency] if currency == "credits" else UNIT_PLACES))
        off.append(share)
    table.insert(len(LINE_ITEM_KEYS) + 2, f"unit_{unit}", prices)
    subtotal = [rounded(float(Decimal(repr(p)) * int(q)), PLACES[currency]) if p == p else float("nan")
                for p, q in zip(prices, table["images"], strict=True)]
    table.insert(len(LINE_ITEM_KEYS) + 3, f"subtotal_{unit}", subtotal)
    batch_images = table.pop("batch_images")
    if batch_images.sum():
        table.insert(len(LINE_ITEM_KEYS) + 4, "batch_images", batch_images.astype("int64"))
        table.insert(len(LINE_ITEM_KEYS) + 5, f"batch_discount_{unit}", [
            0.0 if not q else float("nan") if share is None or p != p
            else -rounded(float(Decimal(repr(p)) * int(q) * share), PLACES[currency])
            for p, q, share in zip(prices, batch_images, off, strict=True)
        ])
    table["currency"] = currency
    return _round_lines(table), discount


def _batch_remarks(totals: Totals) -> list[str]:
    """What runs sent in OpenAI Batches saved, when there are any."""
    if not totals.batch_runs:
        return []
    return [
        f"{totals.batch_runs} run(s) ({totals.batch_images} images) went in OpenAI Batches, priced at the batch price "
        "(half the direct price on OpenAI's sheets): their estimates and charges above are at that price. The line "
        "items show their images at the direct unit price and the batch discount taken off: "
        f"{-totals.batch_discount_credits:,.5f} credits (${-totals.batch_discount_usd:,.4f}, "
        f"¥{-totals.batch_discount_cny:,.4f}) in all."
    ]


def _failed(runs: pd.DataFrame) -> pd.DataFrame:
    status = runs["status"].astype("string")
    rows = (status.isin(["failed", "unknown"]).fillna(False) | (runs["cost_basis"] == "may have cost"))
    return runs.loc[rows.to_numpy(dtype=bool)].reset_index(drop=True)


def _sheets(fine: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    from imgkit.pricing import fx_text, price_sheets

    known = price_sheets()
    named = fine[fine["price_sheet"].notna()]
    counts = named.groupby(named["price_sheet"].astype("string"), observed=True)["runs"].sum()
    records = []
    for name, count in sorted(counts.items()):
        if not count:
            continue
        sheet = known.get(str(name))
        if sheet is None:
            records.append({"sheet": name, "runs": int(count), "date": "", "base_credits": None,
                            "rate": "not registered in this process", "source": ""})
            continue
        records.append({"sheet": name, "runs": int(count), "date": sheet.date, "base_credits": sheet.base_credits,
                        "rate": fx_text(sheet), "source": sheet.source})
    return pd.DataFrame(records, columns=["sheet", "runs", "date", "base_credits", "rate", "source"])


#: The gateway's two published prices for gpt-image-1, shipped as two sheets.
EVOLINK_SHEETS = ("evolink-table-2026-11", "evolink-formula-2026-11")


def _sheet_remarks(sheets: pd.DataFrame) -> list[str]:
    """The disagreement of the gateway's two shipped sheets, with how many runs used each,
    when any run used one of them."""
    from imgkit.pricing import estimate, price_sheets

    known = price_sheets()
    used = dict(zip(sheets["sheet"].astype(str), sheets["runs"], strict=True))
    if not any(name in used for name in EVOLINK_SHEETS) or not all(name in known for name in EVOLINK_SHEETS):
        return []
    table, formula = (estimate(quality="medium", size="1:1", sheet=name) for name in EVOLINK_SHEETS)
    gap = (table.usd - formula.usd) / table.usd
    return [
        f"The gateway publishes two prices for gpt-image-1 that disagree: {EVOLINK_SHEETS[0]} (its table) "
        f"prices one medium square image at {table.credits:g} credits = ${table.usd:.4f}, {EVOLINK_SHEETS[1]} "
        f"(its formula) at {formula.credits:g} credits = ¥{formula.cny:.4f} ≈ ${formula.usd:.4f}, {gap:.0%} less. "
        f"Runs here: {used.get(EVOLINK_SHEETS[0], 0):,} on the table, {used.get(EVOLINK_SHEETS[1], 0):,} on the "
        "formula (the price sheet column of the line items and of each run says which). The gateway's own "
        "statement shows which one the account is billed at; choose it with imgkit.configure(price_sheet=...)."
    ]


def _remarks(fine: pd.DataFrame) -> list[str]:
    notes = []
    with_credits = fine["runs_with_credits"]
    no_sheet = int(with_credits[fine["price_sheet"].isna()].sum())
    if no_sheet:
        notes.append(f"{no_sheet} run(s) with credits have no price sheet: their charged USD/CNY "
                     "are not in the totals.")
    unconverted = int(with_credits[fine["price_sheet"].notna() & fine["charged_usd"].isna()].sum())
    if unconverted:
        notes.append(f"{unconverted} run(s) use a price sheet not registered in this process: "
                     "their charged USD/CNY are not in the totals.")
    estimated = int(fine["estimate_runs"].sum())
    if estimated:
        notes.append(f"{estimated} run(s) had no figure from the service and count at "
                     "their estimate.")
    return notes
