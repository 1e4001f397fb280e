"""Cost reports over any slice of the ledger, for the people who pay.

:func:`report` filters runs (dates, tags, tiers), counts what they cost with the rules of
:func:`imgkit.plots.with_costs` (stated in every report), and returns a :class:`CostReport`:
totals in credits, USD and CNY (estimated and charged), grouped tables, the failed and unknown
runs, the line items (model x quality x size x resolution x price sheet, with unit price,
images, subtotal and currency), the price sheets used with the exchange rate, and the period.
Charged is split into what the service reported, what it reserved (not yet confirmed) and
what counts at the estimate. Each line is rounded once as shown; every table has a Total row
its lines add up to, with a rounding line where they would miss it. It displays itself in a
notebook and exports to CSV, XLSX, HTML, Markdown, PDF and Parquet (each table as its own CSV
with :meth:`CostReport.to_csv_tables`); ``imgkit report`` does the same from the shell.

Example:
    >>> import imgkit
    >>> rep = imgkit.report(since="2026-11-01", group_by=("day", ("user", "project")), currency="USD")
    >>> rep                       # totals, line items and grouped tables, in a notebook
    >>> rep.save("spend.pdf")     # or .xlsx, .html, .md, .csv, .parquet
    >>> rep.to_csv_tables("bill") # totals.csv, line_items.csv, by_day.csv, ...
"""

from __future__ import annotations

from imgkit.reports._model import EXTENSIONS, GROUP_BY, LINE_ITEM_KEYS, ROW_COLUMNS, CostReport, Totals, report

__all__ = ["EXTENSIONS", "GROUP_BY", "LINE_ITEM_KEYS", "ROW_COLUMNS", "CostReport", "Totals", "report"]
