"""A bill a finance team accepts: every table foots in every format (text, Markdown, HTML,
CSV, XLSX, PDF), estimates and charges become money the same way, credits show the sheet's 5
places, the headline separates what the service reported from what it only reserved, the
exchange rate is data with a date and a source, and line items price each model, tier, size
and resolution. Real SQLite ledgers; reports over the ledger (sums in SQL) and over a frame."""

from __future__ import annotations

import csv
import html.parser
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

import imgkit
from imgkit.errors import ValidationError
from imgkit.ledger import Ledger
from imgkit.pricing import estimate, fx_rate, get_sheet, register_price_sheet, set_fx
from imgkit.reports import CostReport, _pdf, _text, report
from imgkit.request import RunRecord

from .pg import Backend
from .test_plots import FORMULA, TABLE, _run, ledger_frame, sample_runs

GPT2 = "evolink-gpt-image-2-tokens-2026-12"


@pytest.fixture(autouse=True)
def _shipped_fx() -> Iterator[None]:
    set_fx(None)
    yield
    set_fx(None)


def _bill_runs() -> list[RunRecord]:
    """48 runs over four days: both gateway sheets, three people (one run with nobody
    recorded), two projects, gpt-image-2 at two resolutions, and every outcome; amounts whose
    USD and CNY need many places (so rounding lines appear)."""
    out: list[RunRecord] = []
    qualities, sizes = ("low", "medium", "high"), ("1024x1024", "1536x1024", "1024x1536")
    for i in range(40):
        status = "completed" if i % 7 else ("failed" if i % 2 else "unknown")
        run = _run(f"b{i:02d}", f"2026-11-{1 + i % 4:02d}T{(i * 5) % 24:02d}:17:00", qualities[i % 3],
                   sizes[i % 3 if i % 5 else 0], 1 + i % 3, status, sheet=FORMULA if i % 4 == 0 else TABLE,
                   charged=round(1.1 + i * 0.37111, 5) if i % 6 == 1 else None,
                   reserved=None if i % 11 == 5 else "estimate", latency=10 + i,
                   task=not (status == "unknown" and i % 3 == 0))
        out.append(run.replace(user=None if i == 3 else ("ana", "bo", "chen")[i % 3],
                               project=None if i % 5 == 0 else ("poster", "app")[i % 2]))
    for j, resolution in enumerate(("1K", "2K") * 4):
        est = estimate(model="gpt-image-2", quality="medium", size="16:9", resolution=resolution, sheet=GPT2)
        out.append(_run(f"g{j}", f"2026-11-03T1{j}:05:00", "medium", "16:9", 1, "completed",
                        latency=30).replace(model="gpt-image-2", resolution=resolution, price_sheet=GPT2,
                                            est_credits=est.credits,
                                            est_usd=est.usd, est_cny=est.cny, credits_reserved=est.credits,
                                            user="ana", project="app"))
    return out


@pytest.fixture
def bill(data_dir: Path, backend: Backend) -> CostReport:
    """The report over the ledger of 48 runs: a SQLite file, or a team's PostgreSQL database."""
    ledger = backend.open()
    try:
        ledger.save_many(_bill_runs())
    finally:
        ledger.close()
    return report(group_by=("day", "quality", ("user", "project", "model")), currency="USD")


def _runs_of(backend: Backend) -> pd.DataFrame:
    ledger = backend.open()
    try:
        return ledger.to_dataframe()  # type: ignore[attr-defined, no-any-return]
    finally:
        ledger.close()  # type: ignore[attr-defined]


# --- reading numbers back ------------------------------------------------------------------


def _number(text: str) -> Decimal | None:
    cleaned = text.replace("$", "").replace("¥", "").replace(",", "").replace("\\", "").strip()
    if not cleaned:
        return None
    try:
        return Decimal(cleaned)
    except ArithmeticError:
        return None


HEADLINE = {"est. credits": "est_credits", "charged credits": "charged_credits",
            "may have cost, credits": "may_have_cost_credits", "est. USD": "est_usd", "charged USD": "charged_usd",
            "may have cost, USD": "may_have_cost_usd"}


def _shown_totals(rep: CostReport) -> dict[str, Decimal]:
    """The report's totals as its documents show them (5 places for credits, 4 for money)."""
    t = rep.totals
    return {label: Decimal(_text.cell(field, getattr(t, field)).replace("$", "").replace(",", ""))
            for label, field in HEADLINE.items()}


def _check_foots(title: str, header: list[str], rows: list[list[str]], rep: CostReport) -> int:
    """Every numeric column of a table with a Total row adds up to it exactly, and the
    columns the report totals add up to the report's totals as shown. Returns 1 when the
    table has a rounding line."""
    assert rows and rows[-1][0] == "Total", f"{title}: no Total row"
    lines, total = rows[:-1], rows[-1]
    shown = _shown_totals(rep)
    for i, name in enumerate(header):
        if i == 0 or name.startswith("unit price"):
            continue
        values = [_number(r[i]) for r in lines]
        if all(v is None for v in values) and _number(total[i]) is None:
            continue
        assert _number(total[i]) is not None, (title, name)
        assert sum((v for v in values if v is not None), Decimal(0)) == _number(total[i]), (title, name)
        if name in shown and not title.startswith("Failed"):
            assert _number(total[i]) == shown[name], (title, name)
    return int(any(r[0] == "rounding" for r in lines))


def _check_totals_table(header: list[str], rows: list[list[str]]) -> None:
    """The charged parts (and rounding) add up to the charged total in each unit."""
    by = {r[0]: r for r in rows}
    parts = [r for r in rows if r[0].startswith(("reported by", "reserved", "at estimate", "rounding"))]
    for i in range(2, len(header)):
        assert sum((_number(r[i]) or Decimal(0) for r in parts), Decimal(0)) == _number(by["charged, total"][i])


def _markdown_tables(text: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    title = ""
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("## "):
            title = line[3:]
        if line.startswith("|"):
            block.append(line)
        elif block:
            cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in block]
            out[title] = (cells[0], cells[2:])
            block = []
    return out


class _Tables(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.heads: list[str] = []
        self._cell: list[str] | None = None
        self._head = ""
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "table":
            self.tables.append([])
            self.heads.append(self._head)
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "h2":
            self._in_h2, self._head = True, ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._in_h2:
            self._head += data


# --- footing, every format -------------------------------------------------------------------


def test_every_table_foots_in_every_format(bill: CostReport, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    footed_titles = {"Line items", "By day", "By quality", "By user, project, model", "Failed and unknown runs"}
    rounding = 0

    # Markdown (the text of the notebook and the CLI)
    tables = _markdown_tables(bill.to_markdown())
    assert footed_titles <= set(tables)
    for title in footed_titles:
        rounding += _check_foots(title, *tables[title], bill)
    _check_totals_table(*tables["Totals"])
    assert rounding, "the data should need at least one rounding line"

    # HTML page
    parser = _Tables()
    parser.feed(bill.to_html())
    found = dict(zip(parser.heads, parser.tables, strict=True))
    for title in footed_titles:
        _check_foots(title, found[title][0], found[title][1:], bill)
    _check_totals_table(found["Totals"][0], found["Totals"][1:])

    # Notebook view: the same tables
    parser = _Tables()
    parser.feed(bill._repr_html_())
    assert [t[-1][0] for t in parser.tables[1:]] == ["Total"] * 4

    # CSV, one file per table
    paths = bill.to_csv_tables(tmp_path / "csv")
    assert set(paths) == {"totals", "line_items", "by_day", "by_quality", "by_user+project+model",
                          "failed_and_unknown", "price_sheets", "runs"}
    for key, title in [("line_items", "Line items"), ("by_day", "By day"), ("by_quality", "By quality"),
                       ("by_user+project+model", "By user"), ("failed_and_unknown", "Failed and unknown")]:
        rows = list(csv.reader(io.StringIO(paths[key].read_text(encoding="utf-8"))))
        _check_foots(title, rows[0], rows[1:], bill)
    rows = list(csv.reader(io.StringIO(paths["totals"].read_text(encoding="utf-8"))))
    _check_totals_table(rows[0], rows[1:])
    day = list(csv.DictReader(io.StringIO(paths["by_day"].read_text(encoding="utf-8"))))
    assert day[0]["day"] == "2026-11-01"  # ISO 8601: a date to a spreadsheet

    # XLSX: the lines (with rounding) under a SUM formula over exactly those lines
    book = openpyxl.load_workbook(bill.save(tmp_path / "bill.xlsx"))
    for sheet in ("Line items", "by_day", "by_quality", "by_user+project+model", "Failed and unknown"):
        ws = book[sheet]
        header = [c.value for c in ws[1]]
        last = ws.max_row
        assert ws.cell(last, 1).value == "Total", sheet
        for col, name in enumerate(header, start=1):
            if name in HEADLINE.values():
                letter = openpyxl.utils.get_column_letter(col)
                assert ws.cell(last, col).value == f"=SUM({letter}2:{letter}{last - 1})", (sheet, name)
                cells = [ws.cell(r, col).value for r in range(2, last)]
                total = sum((Decimal(repr(float(v))) for v in cells if v is not None), Decimal(0))
                label = next(k for k, v in HEADLINE.items() if v == name)
                if sheet != "Failed and unknown":
                    assert total == _shown_totals(bill)[label], (sheet, name)
                places = 5 if name.endswith("credits") else 4
                assert ws.cell(2, col).number_format.endswith("0" * places), (sheet, name)

    # PDF: the tables as drawn (each page's cells), and the pages exist
    drawn: list[pd.DataFrame] = []
    real = _pdf._draw_table

    def record(ax: object, frame: pd.DataFrame, **kwargs: object) -> None:
        drawn.append(frame)
        real(ax, frame, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_pdf, "_draw_table", record)
    bill.to_pdf(tmp_path / "bill.pdf")
    pdf_tables = [([_text.label(c) for c in f.columns], _text.cells(f)) for f in drawn]
    _check_totals_table(*pdf_tables[0])
    ended: list[tuple[list[str], list[list[str]]]] = []
    pending: list[list[str]] = []
    for header, rows in pdf_tables[1:]:  # a long table goes over pages: its Total is on the last
        pending += rows
        if rows and rows[-1][0] == "Total":
            ended.append((header, pending))
        if not rows or rows[-1][0] == "Total" or len(rows) < _pdf.ROWS_PER_PAGE:
            pending = []
    assert len(ended) == len(footed_titles)
    for header, rows in ended:
        _check_foots("Failed" if header[0] == "created (UTC)" else header[0], header, rows, bill)


def test_estimated_and_charged_become_money_the_same_way(data_dir: Path) -> None:
    """Runs charged exactly their estimate show the same USD estimated and charged, on every
    line and in the totals (the estimate is not rounded per run while the charge is not)."""
    runs = [_run(f"s{i}", f"2026-11-0{1 + i % 3}T10:00:00", ("low", "medium", "high")[i % 3], "1536x1024",
                 1 + i % 2, "completed", latency=5) for i in range(25)]
    runs = [r.replace(credits_charged=r.est_credits) for r in runs]
    rep = report(ledger_frame(data_dir / "same.sqlite3", runs), group_by=("day", "quality"))
    for table in rep.groups.values():
        assert table["charged_usd"].tolist() == table["est_usd"].tolist()
    assert _text.cell("USD", rep.totals.est_usd) == _text.cell("USD", rep.totals.charged_usd)
    assert rep.totals.est_usd == pytest.approx(rep.totals.charged_usd, rel=1e-12)


def test_credits_show_five_places_everywhere(bill: CostReport, tmp_path: Path) -> None:
    t = bill.totals
    five = f"{t.charged_credits:,.5f}"
    assert five in repr(bill) and five in _text.headline(bill)
    assert five in bill.to_markdown() and five in bill.to_html()
    rows = list(csv.reader(io.StringIO(bill.to_csv_tables(tmp_path)["line_items"].read_text(encoding="utf-8"))))
    column = rows[0].index("charged credits")
    assert all(len(r[column].split(".")[1]) == 5 for r in rows[1:] if r[column])


def test_headline_separates_reported_reserved_estimate_and_may_have_cost() -> None:
    frame = ledger_frame(Path(imgkit.get_session().data_dir) / "h.sqlite3", sample_runs())
    rep = report(frame)
    text = _text.headline(rep)
    # r2 reported 3.5; r1, r3, r7 reserved; r8 at its estimate; r6 unknown.
    assert "3.50000 reported by the service (1 run)" in text
    assert f"{1.25798 + 9.45907 + 1.96:.5f} reserved at acceptance, not yet confirmed (3 runs)" in text
    assert "0.92462 at estimate (1 run)" in text
    assert "May have cost 13.90484 credits" in text and "(1 run, unknown)" in text
    frame_rows = rep.totals.to_frame().set_index("amount")
    assert frame_rows.loc["reserved (not yet confirmed)", "runs"] == 3


# --- exchange rates ---------------------------------------------------------------------------


def test_the_exchange_rate_is_a_dated_data_file_with_its_source() -> None:
    data = json.loads((resources.files("imgkit") / "data" / "fx.json").read_text("utf-8"))
    assert data["cny_per_usd"] == 7.1 and data["date"] == "2026-11-24" and data["source"]
    rate = fx_rate()
    assert (rate.cny_per_usd, rate.date, rate.approximate, rate.user_set) == (7.1, "2026-11-24", True, False)
    # no shipped sheet carries a rate of its own any more: they all read the file
    for name in (TABLE, FORMULA, GPT2, "openai-tokens-2026-11"):
        assert get_sheet(name).cny_per_usd is None


def test_every_report_states_the_rate_its_date_and_whose_it_is(bill: CostReport) -> None:
    note = next(n for n in bill.notes if n.startswith("Exchange rate"))
    assert "7.1 CNY per USD (approximate; imgkit/data/fx.json, dated 2026-11-24)" in note
    rates = dict(zip(bill.sheets["sheet"], bill.sheets["rate"], strict=True))
    assert rates[FORMULA].startswith("10 credits per CNY (the sheet's own); USD at 7.1 CNY per USD (approximate")
    assert rates[TABLE].startswith("72 credits per USD (the sheet's own); CNY at 7.1 CNY per USD (approximate")
    assert rates[TABLE].endswith("(approximate, shipped rate of 2026-11-24)")
    assert "dated 2026-11-24" in bill.to_markdown() and "the sheet's own" in bill.to_markdown()
    assert "dated 2026-11-24" in bill.to_html() and "the sheet&#x27;s own" in bill.to_html()


def test_the_two_gateway_sheets_disagreement_is_labelled(bill: CostReport) -> None:
    note = next(n for n in bill.notes if "disagree" in n)
    assert "$0.0336" in note and "¥0.1960 ≈ $0.0276" in note and "18% less" in note
    counts = dict(zip(bill.sheets["sheet"], bill.sheets["runs"], strict=True))
    assert f"{counts[TABLE]:,} on the table, {counts[FORMULA]:,} on the formula" in note
    # each line item names the sheet its runs used
    assert set(bill.line_items["price_sheet"]) == {TABLE, FORMULA, GPT2}


def test_configure_fx_changes_every_conversion_and_is_stated(data_dir: Path) -> None:
    frame = ledger_frame(data_dir / "fx.sqlite3", sample_runs())
    before = report(frame)
    imgkit.configure(fx={"CNY": 7.25, "date": "2026-12-01", "source": "the bank's rate of the day"})
    assert fx_rate().cny_per_usd == 7.25
    after = report(frame)
    # r1 on the table sheet: USD is the sheet's own (unchanged), CNY follows the new rate;
    # r7 on the formula sheet: CNY is its own, USD follows the new rate.
    was, now = before.runs.set_index("run_id"), after.runs.set_index("run_id")
    assert now.loc["r1", "charged_usd"] == was.loc["r1", "charged_usd"] == pytest.approx(1.25798 / 72)
    assert now.loc["r1", "charged_cny"] == pytest.approx(1.25798 / 72 * 7.25)
    assert now.loc["r7", "charged_cny"] == was.loc["r7", "charged_cny"] == pytest.approx(0.196)
    assert now.loc["r7", "charged_usd"] == pytest.approx(0.196 / 7.25)
    assert after.totals.charged_cny > before.totals.charged_cny
    note = next(n for n in after.notes if n.startswith("Exchange rate"))
    assert "7.25 CNY per USD (as given; set with imgkit.configure(fx=...), dated 2026-12-01)" in note
    assert "the bank's rate of the day" in note
    rates = dict(zip(after.sheets["sheet"], after.sheets["rate"], strict=True))
    assert rates[TABLE].endswith("CNY at 7.25 CNY per USD (as given, set rate of 2026-12-01)")
    # estimates follow the same rate
    assert estimate(quality="medium", size="1:1").cny == pytest.approx(round(0.0336 * 7.25, 4))


def test_a_sheet_with_its_own_rate_keeps_it() -> None:
    register_price_sheet({"name": "contract-cny", "date": "2026-11-30", "source": "contract #7", "base_credits": 2.0,
                          "credits_per_usd": 80, "cny_per_usd": 7.0})
    set_fx({"CNY": 7.3})
    sheet = get_sheet("contract-cny")
    assert sheet.to_cny(80) == pytest.approx(7.0)
    assert "7 CNY per USD (the sheet's own)" in imgkit.pricing.fx_text(sheet)


@pytest.mark.parametrize(
    ("fx", "field"),
    [({"CNY": 0}, "fx['CNY']"), ({"CNY": "7.1"}, "fx['CNY']"), ({"CNY": True}, "fx['CNY']"), ({"EUR": 0.9}, "fx"),
     ({"CNY": 7.1, "rate_date": "x"}, "fx"), ({"CNY": 7.1, "date": "1 Dec"}, "fx['date']"), ([7.1], "fx")],
)
def test_a_bad_rate_is_refused_naming_the_field(fx: object, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        imgkit.configure(fx=fx)
    assert caught.value.field == field
    assert "CNY" in str(caught.value) or "ISO date" in str(caught.value)
    assert fx_rate().cny_per_usd == 7.1 and not fx_rate().user_set  # nothing changed


# --- line items ----------------------------------------------------------------------------------


def test_line_items_price_each_model_tier_size_and_resolution(bill: CostReport) -> None:
    items = bill.line_items
    assert list(items.columns[:5]) == ["model", "quality", "size", "resolution", "price_sheet"]
    assert {"runs", "images", "unit_usd", "subtotal_usd", "charged_usd", "currency"} <= set(items.columns)
    gpt2 = items[items["model"] == "gpt-image-2"].set_index("resolution")
    assert sorted(gpt2.index) == ["1K", "2K"]
    for resolution in ("1K", "2K"):
        one = estimate(model="gpt-image-2", quality="medium", size="16:9", resolution=resolution, sheet=GPT2)
        assert gpt2.loc[resolution, "unit_usd"] == pytest.approx(round(one.per_image_credits / 68, 6))
        assert gpt2.loc[resolution, "images"] == 4
    assert gpt2.loc["2K", "unit_usd"] > gpt2.loc["1K", "unit_usd"]
    for row in items.itertuples():
        exact = Decimal(repr(row.unit_usd)) * row.images  # images x unit price, rounded once
        assert Decimal(repr(row.subtotal_usd)) == exact.quantize(Decimal("0.0001"), rounding="ROUND_HALF_UP")
        assert row.currency == "USD"
    assert items["runs"].sum() == bill.totals.runs and items["images"].sum() == bill.totals.images
    assert (items["model"] == "gpt-image-1").sum() >= 6
    one = items[(items["quality"] == "medium") & (items["size"] == "1024x1024") & (items["price_sheet"] == TABLE)]
    assert one["unit_usd"].tolist() == [0.0336]


def test_line_items_in_credits_and_every_format(bill: CostReport, tmp_path: Path) -> None:
    in_credits = report(bill.runs, currency="credits").line_items
    assert {"unit_credits", "subtotal_credits"} <= set(in_credits.columns)
    assert set(in_credits["currency"]) == {"credits"}
    assert "## Line items" in bill.to_markdown() and "<h2>Line items</h2>" in bill.to_html()
    assert "Line items" in openpyxl.load_workbook(bill.save(tmp_path / "b.xlsx")).sheetnames
    rows = list(csv.DictReader(io.StringIO(bill.to_csv_tables(tmp_path)["line_items"].read_text("utf-8"))))
    assert rows[0]["unit price, USD"] and rows[-1]["model"] == "Total"


# --- team reports ----------------------------------------------------------------------------------


def test_a_team_bill_by_user_project_and_model(bill: CostReport, backend: Backend) -> None:
    table = bill.groups["user+project+model"]
    assert list(table.columns[:3]) == ["user", "project", "model"]
    keys = set(zip(table["user"], table["project"], table["model"], strict=True))
    assert ("ana", "app", "gpt-image-2") in keys and ("(none)", "app", "gpt-image-1") in keys
    assert any(p == "(none)" for _, p, _ in keys)
    assert table["runs"].sum() == bill.totals.runs
    # the same over the loaded runs (sums in pandas) as over the ledger (sums in SQL)
    df = _runs_of(backend)
    by_frame = report(df, group_by=("user", "project", ("user", "project", "model")))
    by_sql = report(group_by=("user", "project", ("user", "project", "model")))
    for name in ("user", "project", "user+project+model"):
        pd.testing.assert_frame_equal(by_sql.groups[name], by_frame.groups[name], check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(by_sql.line_items, by_frame.line_items, check_exact=False, rtol=1e-12)
    for field in ("charged_credits", "reported_credits", "reserved_credits", "at_estimate_credits", "charged_usd",
                  "est_usd", "may_have_cost_usd"):
        assert getattr(by_sql.totals, field) == pytest.approx(getattr(by_frame.totals, field)), field
    assert (by_sql.totals.reported_runs, by_sql.totals.reserved_runs) == (
        by_frame.totals.reported_runs, by_frame.totals.reserved_runs)
    # the flat form and the "+" form name the same tables
    assert tuple(report(df, group_by="user+project").groups) == ("user+project",)
    with pytest.raises(ValidationError, match="user\\+project"):
        report(df, group_by=[("user", "projects")])


def test_parquet_saves_every_run_atomically(bill: CostReport, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = bill.save(tmp_path / "team.parquet")
    table = pq.read_table(path).to_pandas()
    assert len(table) == bill.totals.runs and list(table.columns) == list(bill.rows().columns)
    assert set(table["user"].dropna()) == {"ana", "bo", "chen"}
    good = path.read_bytes()

    def broken(table: object, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="No space"):
        bill.save(path)
    assert path.read_bytes() == good and list(tmp_path.glob(".team.parquet.*")) == []


def test_a_report_for_one_person_or_project(bill: CostReport, backend: Backend) -> None:
    df = _runs_of(backend)
    mine = df[(df["user"] == "ana") & (df["project"] == "app")]
    by_sql = report(user="ana", project="app", group_by=("day", "tag"))
    by_frame = report(df, user="ana", project="app", group_by=("day", "tag"))
    assert by_sql.totals.runs == by_frame.totals.runs == len(mine) > 0
    assert sorted(by_sql.runs["run_id"]) == sorted(mine["run_id"])
    assert by_sql.totals.charged_credits == pytest.approx(by_frame.totals.charged_credits)
    pd.testing.assert_frame_equal(by_sql.groups["tag"], by_frame.groups["tag"], check_exact=False, rtol=1e-12)
    assert "user ana; project app" in by_sql.filters
    both = report(user=["ana", "bo"])
    assert both.totals.runs == int(df["user"].isin(["ana", "bo"]).sum())
    with pytest.raises(ValidationError, match="user"):
        report(user=[3])


def test_the_ledger_sums_the_parts_by_the_cost_rules(bill: CostReport, backend: Backend) -> None:
    """The sums grouped in SQL (no cost rule evaluated per run) hold what the rules give run
    by run: reported charges by the first rule, held amounts by the rules that count what the
    service reserved, estimates by the last."""
    from imgkit.costs import cost_of

    costs = [cost_of(r) for r in _bill_runs()]
    ledger = backend.open()
    try:
        rows = ledger.cost_sums()  # type: ignore[attr-defined]
    finally:
        ledger.close()  # type: ignore[attr-defined]
    width = len(Ledger.COST_KEYS)
    sums = {name: sum(row[width + i] for row in rows) for i, name in enumerate(Ledger.COST_SUMS)}
    assert sums["runs"] == len(costs) > 0
    assert sums["charged_credits"] == pytest.approx(sum(c.spent for c in costs))
    assert sums["may_have_cost_credits"] == pytest.approx(sum(c.may_have_cost for c in costs))
    assert sums["reported_runs"] == sum(c.basis == "charged" for c in costs) > 0
    assert sums["reported_credits"] == pytest.approx(sum(c.spent for c in costs if c.basis == "charged"))
    assert sums["reserved_runs"] == sum(c.basis in ("reserved", "not downloaded") for c in costs)
    assert sums["estimate_runs"] == sum(c.basis == "estimate" for c in costs)
    assert sums["may_have_cost_runs"] == sum(c.basis == "may have cost" for c in costs)
    assert sums["runs_with_credits"] == sum(c.spent > 0 for c in costs)


def test_the_command_saves_parquet_and_groups_by_combined_keys(bill: CostReport, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from imgkit import cli

    out = tmp_path / "team.parquet"
    assert cli.main(["report", "--group-by", "user+project+model,day", "-o", str(out)]) == 0
    assert len(pq.read_table(out)) == bill.totals.runs
    assert cli.main(["report", "--format", "parquet"]) == 2  # binary: needs -o
    assert "needs -o" in capsys.readouterr().err
    assert cli.main(["report", "--group-by", "user+project", "--format", "md"]) == 0
    assert "## By user, project" in capsys.readouterr().out
