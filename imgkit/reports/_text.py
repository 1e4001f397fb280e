"""A report as text: cell formatting shared by every format, HTML (page and notebook) and
Markdown."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from imgkit.reports._model import CostReport

#: How each column's values read: credits, usd, cny, int, seconds, time, date, month, number.
_PARTS = ("est", "charged", "may_have_cost", "reported", "reserved", "at_estimate", "subtotal", "batch_discount")
KINDS: dict[str, str] = {
    **dict.fromkeys((*(f"{p}_credits" for p in _PARTS), "credits_reserved", "credits_charged", "credits"), "credits"),
    **dict.fromkeys((*(f"{p}_usd" for p in _PARTS), "USD"), "usd"),
    **dict.fromkeys((*(f"{p}_cny" for p in _PARTS), "CNY"), "cny"),
    # A price of one image: to the millionth, so that images x price rounds to the amount charged.
    "unit_credits": "credits",
    "unit_usd": "usd_unit",
    "unit_cny": "cny_unit",
    **dict.fromkeys(("runs", "images", "failed", "unknown", "n", "n_images", "attempts", "progress", "batch_images"),
                    "int"),
    **dict.fromkeys(("created_at", "submitted_at", "completed_at"), "time"),
    **dict.fromkeys(("day", "week"), "date"),
    "month": "month",
    "latency_s": "seconds",
    "estimated_s": "seconds",
    "base_credits": "number",
}

LABELS: dict[str, str] = {
    "est_credits": "est. credits",
    "charged_credits": "charged credits",
    "est_usd": "est. USD",
    "charged_usd": "charged USD",
    "est_cny": "est. CNY",
    "charged_cny": "charged CNY",
    "may_have_cost_credits": "may have cost, credits",
    "may_have_cost_usd": "may have cost, USD",
    "may_have_cost_cny": "may have cost, CNY",
    "credits_reserved": "reserved",
    "credits_charged": "reported charge",
    "cost_basis": "cost basis",
    "created_at": "created (UTC)",
    "n_images": "images",
    "price_sheet": "price sheet",
    "error_code": "error",
    "task_id": "task id",
    "run_id": "run id",
    "base_credits": "base credits",
    "latency_s": "latency (s)",
    "week": "week (from Monday)",
    "unit_credits": "unit price, credits",
    "unit_usd": "unit price, USD",
    "unit_cny": "unit price, CNY",
    "subtotal_credits": "images x unit price, credits",
    "subtotal_usd": "images x unit price, USD",
    "subtotal_cny": "images x unit price, CNY",
    "batch_images": "of which in batches",
    "batch_discount_credits": "batch discount, credits",
    "batch_discount_usd": "batch discount, USD",
    "batch_discount_cny": "batch discount, CNY",
}

GROUP_TITLES = {"price_sheet": "price sheet"}
#: The title of the line items table.
LINE_ITEMS = "Line items"
#: The first key cell of the rows :func:`footed` adds.
ROUNDING, TOTAL = "rounding", "Total"


_MISSING = frozenset({"NAType", "NaTType"})


def label(column: str) -> str:
    return LABELS.get(column, column)


def group_title(name: str) -> str:
    return "By " + ", ".join(GROUP_TITLES.get(key, key) for key in name.split("+"))


def is_numeric(column: str) -> bool:
    return KINDS.get(column, "text") not in ("text", "time", "date", "month")


def cell(column: str, value: Any, *, width: int | None = None) -> str:
    """One value as the documents show it ('' for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ in _MISSING:
        return ""
    kind = KINDS.get(column, "text")
    if kind == "credits":
        return f"{float(value):,.5f}"
    if kind == "usd":
        return f"${float(value):,.4f}"
    if kind == "cny":
        return f"¥{float(value):,.4f}"
    if kind == "usd_unit":
        return f"${float(value):,.6f}"
    if kind == "cny_unit":
        return f"¥{float(value):,.6f}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "seconds":
        return f"{float(value):.1f}"
    if kind == "number":
        return f"{float(value):g}"
    if kind in ("time", "date", "month") and hasattr(value, "strftime"):
        return str(value.strftime({"time": "%Y-%m-%d %H:%M", "date": "%Y-%m-%d", "month": "%Y-%m"}[kind]))
    text = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    text = " ".join(text.split())
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def cells(frame: pd.DataFrame, *, width: int | None = None) -> list[list[str]]:
    """Every value of ``frame`` formatted, row by row."""
    columns = [frame[c].tolist() for c in frame.columns]
    formatted = [
        [cell(name, v, width=width) for v in values] for name, values in zip(frame.columns, columns, strict=True)
    ]
    return [list(row) for row in zip(*formatted, strict=True)] if formatted else []


def failed_view(rep: CostReport) -> pd.DataFrame:
    from imgkit.reports._model import FAILED_COLUMNS

    columns = list(FAILED_COLUMNS)
    if rep.currency != "credits":
        columns.insert(columns.index("charged_credits") + 1, f"est_{rep.currency.lower()}")
    return rep.failed.loc[:, columns]


def totals_line(rep: CostReport) -> str:
    t = rep.totals
    outcomes = f"{t.completed:,} completed, {t.failed:,} failed, {t.unknown:,} unknown"
    if t.in_progress:
        outcomes += f", {t.in_progress:,} in progress"
    return f"{t.runs:,} run{'' if t.runs == 1 else 's'} ({outcomes}), {t.images:,} images"


def _runs(count: int) -> str:
    return f"{count:,} run{'' if count == 1 else 's'}"


def _amount(rep: CostReport, part: str) -> str:
    """One of the totals as the headline shows it: credits, USD and CNY, each rounded once."""
    t = rep.totals
    return (f"{cell('credits', getattr(t, f'{part}_credits'))} credits = {cell('USD', getattr(t, f'{part}_usd'))} "
            f"= {cell('CNY', getattr(t, f'{part}_cny'))}")


def headline(rep: CostReport) -> str:
    """Charged, and its parts: reported by the service, reserved (not yet confirmed), at
    estimate; what unknown runs may have cost; the estimate."""
    t = rep.totals
    parts = [f"{cell('credits', t.reported_credits)} reported by the service ({_runs(t.reported_runs)})",
             f"{cell('credits', t.reserved_credits)} reserved at acceptance, not yet confirmed "
             f"({_runs(t.reserved_runs)})"]
    if t.at_estimate_runs:
        parts.append(f"{cell('credits', t.at_estimate_credits)} at estimate ({_runs(t.at_estimate_runs)})")
    text = f"Charged {_amount(rep, 'charged')}: " + ", ".join(parts)
    if t.may_have_cost_runs:
        text += f". May have cost {_amount(rep, 'may_have_cost')} more ({_runs(t.may_have_cost_runs)}, unknown)"
    return text + f". Estimated before sending: {_amount(rep, 'est')}."


#: The totals a column of a grouped table or the line items adds up to.
_GRAND = {f"{p}_{u}": f"{p}_{u}" for p in ("est", "charged", "may_have_cost", "batch_discount")
          for u in ("credits", "usd", "cny")}


def _sum(values: Iterable[Any]) -> float:
    from decimal import Decimal

    return float(sum((Decimal(repr(float(v))) for v in values if v is not None and v == v), Decimal(0)))


def footed(rep: CostReport, table: pd.DataFrame, *, grand: bool = True, total: bool = True) -> pd.DataFrame:
    """``table`` as documents show it: its lines, then (``grand``) a rounding line when the
    shown lines of a money column do not add up to the report's shown total, then
    (``total``) a Total row: counts and amounts summed (the report's totals, for the columns
    that have one, which the lines plus rounding add up to exactly). Unit prices have no
    total."""
    import pandas as pd

    from imgkit.reports._model import PLACES, difference, rounded

    if table.empty:
        return table
    out = table.astype(object)
    first = table.columns[0]
    columns = list(table.columns)
    grand_total: dict[str, float] = {}
    if grand:
        for column in columns:
            field = _GRAND.get(str(column))
            if field is not None:
                unit = {"credits": "credits", "usd": "USD", "cny": "CNY"}[field.rsplit("_", 1)[1]]
                grand_total[str(column)] = rounded(getattr(rep.totals, field), PLACES[unit])
        gaps = {c: difference(t, table[c]) for c, t in grand_total.items()}
        if any(gaps.values()):
            row: dict[str, Any] = dict.fromkeys(columns)
            row[first] = ROUNDING
            row.update({c: gap for c, gap in gaps.items() if gap})
            out = pd.concat([out, pd.DataFrame([row], columns=columns).astype(object)], ignore_index=True)
    if total:
        row = dict.fromkeys(columns)
        row[first] = TOTAL
        for column in columns:
            kind = KINDS.get(str(column))
            if str(column).startswith("unit_"):
                continue
            if str(column) in grand_total:
                row[column] = grand_total[str(column)]
            elif kind in ("credits", "usd", "cny"):
                row[column] = _sum(out[column])
            elif kind == "int":
                row[column] = int(_sum(out[column]))
        out = pd.concat([out, pd.DataFrame([row], columns=columns).astype(object)], ignore_index=True)
    return out


def grouped_tables(rep: CostReport, *, total: bool = True) -> list[tuple[str, pd.DataFrame]]:
    """The line items and grouped tables, whole (their rows are what the totals add up
    from), each with a rounding line where needed and, with ``total``, a Total row. A table
    by tag has neither: a run with several tags is in several of its lines."""
    out = [(LINE_ITEMS, footed(rep, rep.line_items, total=total))]
    for name, table in rep.groups.items():
        by_tag = "tag" in name.split("+")
        out.append((group_title(name), table if by_tag else footed(rep, table, total=total)))
    return out


def tables(rep: CostReport, *, total: bool = True) -> list[tuple[str, pd.DataFrame, int | None]]:
    """The document tables after the totals, each with the most rows to show: the
    :func:`grouped_tables`, then failed and unknown runs (at most ``rep.max_rows``; with a
    Total row when all are shown)."""
    out: list[tuple[str, pd.DataFrame, int | None]] = [
        (title, table, None) for title, table in grouped_tables(rep, total=total)
    ]
    failed = failed_view(rep)
    if len(failed) > rep.max_rows:  # cut: its total would not be of the rows shown
        out.append(("Failed and unknown runs", failed, rep.max_rows))
    else:
        out.append(("Failed and unknown runs", footed(rep, failed, grand=False, total=total), None))
    return out


def csv_tables(rep: CostReport) -> dict[str, pd.DataFrame]:
    """The tables of :meth:`CostReport.to_csv_tables`, by file name (without ``.csv``)."""
    out = {"totals": rep.totals.to_frame(), "line_items": footed(rep, rep.line_items)}
    for name, table in rep.groups.items():
        out[f"by_{name}"] = table if "tag" in name.split("+") else footed(rep, table)
    failed = failed_view(rep)
    out["failed_and_unknown"] = footed(rep, failed, grand=False) if len(failed) else failed
    out["price_sheets"] = rep.sheets
    return out


def csv_text(frame: pd.DataFrame) -> str:
    """A table as CSV: amounts as plain numbers at their shown places, times ISO 8601 in UTC
    with a space (which spreadsheets read as dates), labels as the documents show them."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([label(str(c)) for c in frame.columns])
    for values in frame.itertuples(index=False):
        row = []
        for column, value in zip(frame.columns, values, strict=True):
            kind = KINDS.get(str(column), "text")
            if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ in _MISSING:
                row.append("")
            elif kind in ("credits", "usd", "cny", "usd_unit", "cny_unit"):
                row.append(f"{float(value):.{ {'credits': 5, 'usd': 4, 'cny': 4}.get(kind, 6)}f}")
            elif kind == "int":
                row.append(str(int(value)))
            elif kind in ("time", "date", "month") and hasattr(value, "strftime"):
                fmt = {"time": "%Y-%m-%d %H:%M:%S", "date": "%Y-%m-%d", "month": "%Y-%m-01"}[kind]
                row.append(value.strftime(fmt))
            else:
                row.append(cell(str(column), value))
        writer.writerow(row)
    return buffer.getvalue()


def caption(title: str, frame: pd.DataFrame, shown: int) -> str:
    if title.startswith("By tag"):
        return "A run with several tags counts under each of them."
    if shown < len(frame):
        return f"The first {shown:,} of {len(frame):,} rows; every run is in the CSV and XLSX exports."
    return ""


# --- HTML --------------------------------------------------------------------------------


def _h(text: str) -> str:
    """Escaped HTML text in which "$" amounts stay money: each "$" in its own element, so
    notebook MathJax never pairs two of them into TeX."""
    return html.escape(text).replace("$", "<span>$</span>")


def html_table(frame: pd.DataFrame, *, limit: int | None = None, css: str = "") -> str:
    shown = frame if limit is None else frame.head(limit)
    numeric = [is_numeric(c) for c in frame.columns]
    # Inline styles: a notebook's or mail client's CSS may not reach these tables.
    align = [f'style="text-align:{"right" if n else "left"};padding:2px 8px"' for n in numeric]
    head = "".join(f"<th {a}>{html.escape(label(c))}</th>" for c, a in zip(frame.columns, align, strict=True))
    body = "\n".join(
        ('<tr style="font-weight:bold">' if row and row[0] in (TOTAL, "charged, total") else "<tr>")
        + "".join(f"<td {a}>{_h(v)}</td>" for v, a in zip(row, align, strict=True)) + "</tr>"
        for row in cells(shown, width=120)
    )
    more = ""
    if len(shown) < len(frame):
        more = f'<tr><td colspan="{len(frame.columns)}">… {len(frame) - len(shown):,} more</td></tr>'
    return f'<table {css}><thead><tr>{head}</tr></thead><tbody>\n{body}{more}\n</tbody></table>'


def _totals_frame(rep: CostReport) -> pd.DataFrame:
    return rep.totals.to_frame()


def _notes_html(notes: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{_h(n)}</li>" for n in notes) + "</ul>"


_CELL_CSS = 'style="border-collapse:collapse;font-size:90%;margin:4px 0 10px 0"'


def notebook_html(rep: CostReport, *, limit: int = 15) -> str:
    """Compact: heading, totals and grouped tables; the rest behind a fold."""
    parts = [
        '<div class="imgkit-report">',
        f"<h3 style=\"margin:4px 0\">{html.escape(rep.title)}</h3>",
        f"<div>{html.escape(rep.period_text)} · {html.escape(rep.filters)} · "
        f"{html.escape(totals_line(rep))}</div>",
        f"<div><b>{_h(headline(rep))}</b></div>",
        html_table(_totals_frame(rep), css=_CELL_CSS),
    ]
    for title, table in grouped_tables(rep):
        parts.append(f"<div><b>{html.escape(title)}</b></div>")
        parts.append(html_table(table, limit=None if len(table) <= limit + 2 else limit, css=_CELL_CSS))
    sheets = ", ".join(rep.sheets["sheet"].astype(str)) or "none"
    parts.append(
        # From the totals: the list itself would read every run of a report over the ledger.
        f"<div>{rep.totals.failed + rep.totals.unknown:,} failed or unknown run(s) (<code>.failed</code>); "
        f"price sheets: {html.escape(sheets)}</div>"
    )
    parts.append(f"<details><summary>How costs are counted</summary>{_notes_html(rep.notes)}</details>")
    parts.append("</div>")
    return "\n".join(parts)


_PAGE_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; } .headline { font-size: 115%; margin: 0.8em 0; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; font-size: 90%; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e4e4; }
th { background: #f3f3f3; } tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
.caption, figcaption { color: #555; font-size: 90%; }
"""


def html_page(rep: CostReport) -> str:
    """One self-contained page: styles inline, charts as base64 PNG, no external reference."""
    from imgkit.reports import _charts

    limit = rep.max_rows
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(rep.title)}</title>",
        f"<style>{_PAGE_CSS}</style></head><body>",
        f"<h1>{html.escape(rep.title)}</h1>",
        f'<p class="meta">Period {html.escape(rep.period_text)} · {html.escape(rep.filters)} · amounts in '
        f"{html.escape(rep.currency)} · generated {rep.generated_at:%Y-%m-%d %H:%M} UTC</p>",
        f'<p class="headline"><b>{_h(headline(rep))}</b></p>',
        "<h2>Totals</h2>",
        f"<p>{html.escape(totals_line(rep))}</p>",
        html_table(_totals_frame(rep)),
        "<h2>How costs are counted</h2>",
        _notes_html(rep.notes),
        "<h2>Charts</h2>",
    ]
    for name, png in _charts.pngs(rep).items():
        data = base64.b64encode(png).decode("ascii")
        title = _charts.TITLES[name]
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(title)}">'
            f"<figcaption>{html.escape(title)}</figcaption></figure>"
        )
    for title, table, most in tables(rep):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if table.empty:
            parts.append("<p>None.</p>")
            continue
        shown = len(table) if most is None else min(len(table), most)
        note = caption(title, table, shown)
        if note:
            parts.append(f'<p class="caption">{html.escape(note)}</p>')
        parts.append(html_table(table, limit=most))
    parts.append("<h2>Price sheets</h2>")
    parts.append(html_table(rep.sheets) if len(rep.sheets) else "<p>None.</p>")
    rows = rep.rows()
    parts.append("<h2>Runs</h2>")
    shown = min(len(rows), limit)
    parts.append(f"<details><summary>{shown:,} of {len(rows):,} runs</summary>")
    parts.append(html_table(rows, limit=limit) if len(rows) else "<p>None.</p>")
    parts.append("</details></body></html>")
    return "\n".join(parts) + "\n"


# --- Markdown ----------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    # "$" pairs would become TeX in Jupyter and on GitHub.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("$", "\\$")


def markdown_table(frame: pd.DataFrame, *, limit: int | None = None) -> str:
    shown = frame if limit is None else frame.head(limit)
    header = "| " + " | ".join(_md_escape(label(c)) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if is_numeric(c) else ":---" for c in frame.columns) + "|"
    body = ["| " + " | ".join(_md_escape(v) for v in row) + " |" for row in cells(shown, width=80)]
    return "\n".join([header, rule, *body])


def markdown(rep: CostReport) -> str:
    lines = [
        f"# {rep.title}",
        "",
        f"Period {rep.period_text} · {rep.filters} · amounts in {rep.currency} · "
        f"generated {rep.generated_at:%Y-%m-%d %H:%M} UTC",
        "",
        f"**{_md_escape(headline(rep))}**",
        "",
        "## Totals",
        "",
        totals_line(rep),
        "",
        markdown_table(_totals_frame(rep)),
        "",
        "## How costs are counted",
        "",
        *(f"- {note}" for note in rep.notes),
    ]
    for title, table, most in tables(rep):
        lines += ["", f"## {title}", ""]
        if table.empty:
            lines.append("None.")
            continue
        shown = len(table) if most is None else min(len(table), most)
        note = caption(title, table, shown)
        if note:
            lines += [f"_{note}_", ""]
        lines.append(markdown_table(table, limit=most))
    lines += ["", "## Price sheets", ""]
    lines.append(markdown_table(rep.sheets) if len(rep.sheets) else "None.")
    return "\n".join(lines) + "\n"
