"""A report as an Excel workbook (openpyxl through pandas' ExcelWriter): a Summary sheet, the
line items and one ``by_<group>`` sheet per grouped table, each with its rounding line where one
is needed and a totals row (SUM formulas), a sheet of the failed and unknown runs, and a Runs
sheet, with real number formats (credits to 5 places, money to 4). Every sheet prints landscape,
one page wide, with its header row repeated on each page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgkit.reports import _text

if TYPE_CHECKING:
    import pandas as pd
    from openpyxl.worksheet.worksheet import Worksheet

    from imgkit.reports._model import CostReport

#: Excel number formats by the kinds of :data:`imgkit.reports._text.KINDS`.
FORMATS: dict[str, str] = {
    "credits": "0.00000",
    "usd": "$0.0000",
    "cny": '"¥"0.0000',
    "usd_unit": "$0.000000",
    "cny_unit": '"¥"0.000000',
    "int": "0",
    "seconds": "0.0",
    "time": "yyyy-mm-dd hh:mm",
    "date": "yyyy-mm-dd",
    "month": "yyyy-mm",
    "number": "0.0000",
}
_WIDTHS = {"time": 17, "date": 11, "month": 9, "credits": 13, "usd": 12, "cny": 12}
_MAX_WIDTH = 60


def _require_openpyxl() -> None:
    try:
        import openpyxl  # noqa: F401
    except ImportError as exc:  # pragma: no cover - openpyxl is a dependency
        raise ImportError("XLSX reports need openpyxl: pip install openpyxl") from exc


def _for_excel(frame: pd.DataFrame) -> pd.DataFrame:
    """Excel has no time zones and rejects control characters: naive UTC times, clean text."""
    import pandas as pd
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    def plain(value: Any) -> Any:
        # A column of a table with a rounding or Total row: dates and texts side by side.
        if isinstance(value, pd.Timestamp):
            return value.tz_convert("UTC").tz_localize(None) if value.tzinfo is not None else value
        if isinstance(value, str):
            return ILLEGAL_CHARACTERS_RE.sub("", value)
        return value

    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            out[name] = column.dt.tz_convert("UTC").dt.tz_localize(None)
        elif isinstance(column.dtype, pd.CategoricalDtype):
            out[name] = column.astype("string")
        if column.dtype == object:
            out[name] = column.map(plain)
        elif pd.api.types.is_string_dtype(out[name].dtype) and not _text.is_numeric(str(name)):
            out[name] = out[name].astype("string").str.replace(ILLEGAL_CHARACTERS_RE, "", regex=True)
    return out


def _format_columns(ws: Worksheet, frame: pd.DataFrame, *, header_row: int = 1) -> None:
    """Number formats and widths by column kind, for a table written at ``header_row``."""
    from openpyxl.utils import get_column_letter

    last = header_row + len(frame)
    for index, name in enumerate(frame.columns, start=1):
        kind = _text.KINDS.get(str(name), "text")
        letter = get_column_letter(index)
        if kind in FORMATS:
            for (cell,) in ws.iter_rows(min_row=header_row + 1, max_row=last, min_col=index, max_col=index):
                cell.number_format = FORMATS[kind]
        if kind in _WIDTHS:
            width = max(_WIDTHS[kind], len(str(name)) + 2)
        else:
            sample = frame[name].head(500).astype("string").fillna("")
            width = max([len(str(name))] + [len(v) for v in sample]) + 2
        ws.column_dimensions[letter].width = min(width, _MAX_WIDTH)


def _print_setup(ws: Worksheet, *, title_rows: str | None = "1:1") -> None:
    """Landscape, as wide as one page (as many pages down as it takes), header repeated."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.gridLines = False
    if title_rows:
        ws.print_title_rows = title_rows


def _totals_row(ws: Worksheet, frame: pd.DataFrame) -> None:
    """A bold "Total" row under the table: SUM formulas over its numeric columns, so the
    sheet still adds up after a reader edits or filters it."""
    from openpyxl.styles import Border, Font, Side
    from openpyxl.utils import get_column_letter

    last = 1 + len(frame)
    row = last + 1
    bold = Font(bold=True)
    rule = Border(top=Side(style="thin"))
    for index, name in enumerate(frame.columns, start=1):
        kind = _text.KINDS.get(str(name), "text")
        cell = ws.cell(row, index)
        cell.font, cell.border = bold, rule
        if index == 1:
            cell.value = _text.TOTAL
        elif str(name).startswith("unit_"):
            continue  # a price per image has no total
        elif _text.is_numeric(str(name)) and kind in ("credits", "usd", "cny", "int"):
            letter = get_column_letter(index)
            cell.value = f"=SUM({letter}2:{letter}{last})"
            cell.number_format = FORMATS[kind]


def _table_sheet(writer: Any, name: str, frame: pd.DataFrame, *, totals: bool = False) -> None:
    clean = _for_excel(frame)
    clean.to_excel(writer, sheet_name=name, index=False)
    ws = writer.sheets[name]
    _format_columns(ws, clean)
    ws.freeze_panes = "A2"
    if len(clean):
        ws.auto_filter.ref = ws.dimensions
        if totals:
            _totals_row(ws, clean)
    _print_setup(ws)


def _plain(value: Any) -> Any:
    import pandas as pd

    return None if pd.isna(value) else value


def _summary(ws: Worksheet, rep: CostReport) -> None:
    from openpyxl.styles import Alignment, Font, PatternFill

    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="E8E8E8")
    ws["A1"] = rep.title
    ws["A1"].font = Font(bold=True, size=14)
    start, end = rep.period
    meta = [
        ("Period (UTC)", rep.period_text),
        ("From", start.tz_convert("UTC").tz_localize(None) if start is not None else None),
        ("To", end.tz_convert("UTC").tz_localize(None) if end is not None else None),
        ("Filters", rep.filters),
        ("Currency of grouped tables", rep.currency),
        ("Generated (UTC)", rep.generated_at.tz_localize(None)),
        ("Runs", _text.totals_line(rep)),
    ]
    row = 3
    for key, value in meta:
        ws.cell(row, 1, key).font = bold
        cell = ws.cell(row, 2, value)
        if key in ("From", "To", "Generated (UTC)"):
            cell.number_format = FORMATS["time"]
            cell.alignment = Alignment(horizontal="left")
        row += 1

    row += 1
    totals = rep.totals.to_frame()
    ws.cell(row, 1, "Totals").font = Font(bold=True, size=12)
    row += 1
    for col, name in enumerate(totals.columns, start=1):
        cell = ws.cell(row, col, _text.label(str(name)))
        cell.font, cell.fill = bold, fill
    for values in totals.itertuples(index=False):
        row += 1
        for col, (name, value) in enumerate(zip(totals.columns, values, strict=True), start=1):
            cell = ws.cell(row, col, _plain(value))
            kind = _text.KINDS.get(str(name))
            if kind in FORMATS:
                cell.number_format = FORMATS[kind]
            if values[0] == "charged, total":
                cell.font = bold

    row += 2
    ws.cell(row, 1, "How costs are counted").font = Font(bold=True, size=12)
    for note in rep.notes:
        row += 1
        # Wrapped across the table's width, so the page is not scaled down to fit one long line.
        ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=6)
        ws.cell(row, 1, note).alignment = Alignment(wrap_text=True, vertical="top")
        ws.row_dimensions[row].height = 15 * (1 + len(note) // 130)

    row += 2
    ws.cell(row, 1, "Price sheets").font = Font(bold=True, size=12)
    row += 1
    sheets = _for_excel(rep.sheets)
    for col, name in enumerate(sheets.columns, start=1):
        cell = ws.cell(row, col, _text.label(str(name)))
        cell.font, cell.fill = bold, fill
    for values in sheets.itertuples(index=False):
        row += 1
        for col, value in enumerate(values, start=1):
            ws.cell(row, col, _plain(value)).alignment = Alignment(wrap_text=True, vertical="top")
        widths = (26, 16, 16, 16, 44, 60)
        lines = max(1 + len(str(_plain(v) or "")) // (w - 2) for v, w in zip(values, widths, strict=False))
        ws.row_dimensions[row].height = 15 * lines

    ws.column_dimensions["A"].width = 26
    for letter in "BCD":
        ws.column_dimensions[letter].width = 16
    ws.column_dimensions["E"].width = 44  # the CNY totals, and how each price sheet converts
    ws.column_dimensions["F"].width = 60


def write(rep: CostReport, path: Path) -> None:
    """Write the workbook to ``path``."""
    _require_openpyxl()
    import pandas as pd

    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        # An empty frame first, so that Summary is the first sheet; filled in below.
        pd.DataFrame().to_excel(writer, sheet_name="Summary", index=False)
        # The line items and grouped tables with their rounding lines; the totals rows are
        # formulas, so the sheet adds up what it shows.
        listed = _text.grouped_tables(rep, total=False)
        _table_sheet(writer, "Line items", listed[0][1], totals=True)
        for name, (_, table) in zip(rep.groups, listed[1:], strict=True):
            _table_sheet(writer, f"by_{name}"[:31], table, totals="tag" not in name.split("+"))
        _table_sheet(writer, "Failed and unknown", _text.failed_view(rep), totals=True)
        _table_sheet(writer, "Runs", rep.rows())
        _summary(writer.sheets["Summary"], rep)
        _print_setup(writer.sheets["Summary"], title_rows=None)
