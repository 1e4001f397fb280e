"""Cost reports over any slice of the ledger, for the people who pay.

:func:`report` filters runs (dates, tags, tiers), counts what they cost with the rules of
:func:`imgkit.plots.with_costs` (stated in every report), and returns a :class:`CostReport`:
totals in credits, USD and CNY (estimated and charged), grouped tables, the failed and unknown
runs, the price sheets used and the period. It displays itself in a notebook and exports to
CSV, XLSX, HTML, Markdown and PDF; ``imgkit report`` does the same from the shell.

Example:
    >>> import imgkit
    >>> rep = imgkit.report(since="2026-11-01", group_by=("day", "quality"), currency="USD")
    >>> rep                       # totals and grouped tables, in a notebook
    >>> rep.save("spend.pdf")     # or .xlsx, .html, .md, .csv
"""

from __future__ import annotations

from imgkit.reports._model import EXTENSIONS, GROUP_BY, ROW_COLUMNS, CostReport, Totals, report

__all__ = ["EXTENSIONS", "GROUP_BY", "ROW_COLUMNS", "CostReport", "Totals", "report"]
