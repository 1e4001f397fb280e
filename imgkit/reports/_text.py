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
KINDS: dict[str, str] = {
    **dict.fromkeys(
        ("est_credits", "charged_credits", "may_have_cost_credits", "credits_reserved", "credits_charged", "credits"),
        "credits",
    ),
    **dict.fromkeys(("est_usd", "charged_usd", "may_have_cost_usd", "USD"), "usd"),
    **dict.fromkeys(("est_cny", "charged_cny", "may_have_cost_cny", "CNY"), "cny"),
    **dict.fromkeys(("runs", "images", "failed", "unknown", "n", "n_images", "attempts", "progress"), "int"),
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
}

GROUP_TITLES = {"price_sheet": "price sheet"}


_MISSING = frozenset({"NAType", "NaTType"})


def label(column: str) -> str:
    return LABELS.get(column, column)


def group_title(name: str) -> str:
    return f"By {GROUP_TITLES.get(name, name)}"


def is_numeric(column: str) -> bool:
    return KINDS.get(column, "text") not in ("text", "time", "date", "month")


def cell(column: str, value: Any, *, width: int | None = None) -> str:
    """One value as the documents show it ('' for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ in _MISSING:
        return ""
    kind = KINDS.get(column, "text")
    if kind == "credits":
        return f"{float(value):,.3f}"
    if kind == "usd":
        return f"${float(value):,.4f}"
    if kind == "cny":
        return f"¥{float(value):,.4f}"
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


def headline(rep: CostReport) -> str:
    t = rep.totals
    text = (f"Charged {t.charged_credits:,.3f} credits = ${t.charged_usd:,.4f} = ¥{t.charged_cny:,.4f} "
            f"(estimated {t.est_credits:,.3f} credits)")
    if t.may_have_cost_runs:
        text += (f"; {t.may_have_cost_runs:,} run(s) may have cost {t.may_have_cost_credits:,.3f} credits more "
                 f"(${t.may_have_cost_usd:,.4f})")
    return text


def tables(rep: CostReport) -> list[tuple[str, pd.DataFrame, int | None]]:
    """The document tables after the totals, each with the most rows to show: grouped
    tables (whole: their rows are what the totals add up from), then failed and unknown runs
    (at most ``rep.max_rows``)."""
    out: list[tuple[str, pd.DataFrame, int | None]] = [
        (group_title(name), table, None) for name, table in rep.groups.items()
    ]
    out.append(("Failed and unknown runs", failed_view(rep), rep.max_rows))
    return out


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
        "<tr>" + "".join(f"<td {a}>{_h(v)}</td>" for v, a in zip(row, align, strict=True)) + "</tr>"
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
    for name, table in rep.groups.items():
        parts.append(f"<div><b>{html.escape(group_title(name))}</b></div>")
        parts.append(html_table(table, limit=limit, css=_CELL_CSS))
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
