"""Cost reports on real SQLite ledgers: totals against hand sums, filters, grouped tables, and
every export read back (CSV, XLSX with openpyxl, HTML, Markdown, PDF), from Python and the
``imgkit report`` command."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from imgkit import cli
from imgkit.errors import ValidationError
from imgkit.ledger import Ledger
from imgkit.reports import CostReport, report
from imgkit.reports import _pdf as pdf_pages

from .test_plots import (
    EXPECTED_CREDITS,
    FORMULA,
    _run,
    expected_cny,
    expected_usd,
    ledger_frame,
    sample_runs,
)

IMGKIT = Path(sys.executable).parent / "imgkit"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return ledger_frame(tmp_path_factory.mktemp("reports") / "ledger.sqlite3", sample_runs())


@pytest.fixture(scope="module")
def rep(runs: pd.DataFrame) -> CostReport:
    return report(runs, group_by=("day", "quality", "size", "tag"))


def _est(run_ids: list[str], column: str) -> float:
    by_id = {r.run_id: r for r in sample_runs()}
    return sum(getattr(by_id[r], column) for r in run_ids)


ALL = [f"r{i}" for i in range(1, 9)]


def _pages(path: Path) -> int:
    if shutil.which("pdfinfo"):
        out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
        return int(re.search(r"^Pages:\s+(\d+)", out, re.MULTILINE)[1])  # type: ignore[index]
    return len(re.findall(rb"/Type\s*/Page\b", path.read_bytes()))


def _seed_home(records: list) -> Path:
    """Write runs into the ledger of $IMGKIT_HOME (set per test by conftest)."""
    home = Path(os.environ["IMGKIT_HOME"])
    ledger = Ledger(home / "ledger.sqlite3")
    ledger.save_many(records)
    ledger.close()
    return home


# --- totals and tables -------------------------------------------------------------------


def test_totals_equal_hand_computed_sums(rep: CostReport) -> None:
    t = rep.totals
    assert (t.runs, t.completed, t.failed, t.unknown, t.in_progress) == (8, 5, 2, 1, 0)
    assert t.images == 2 + 1 + 1 + 1 + 1  # completed runs' files
    assert t.charged_credits == pytest.approx(sum(EXPECTED_CREDITS.values()))
    assert t.charged_usd == pytest.approx(sum(expected_usd(r) for r in EXPECTED_CREDITS))
    assert t.charged_cny == pytest.approx(sum(expected_cny(r) for r in EXPECTED_CREDITS))
    # Estimates become money as charges do: each run's estimated credits through its sheet.
    assert t.est_credits == pytest.approx(_est(ALL, "est_credits"))
    assert t.est_usd == pytest.approx(sum(_convert(r, "est_credits", "usd") for r in ALL))
    assert t.est_cny == pytest.approx(sum(_convert(r, "est_credits", "cny") for r in ALL))
    assert t.may_have_cost_credits == pytest.approx(_est(["r6"], "est_credits"))
    assert t.may_have_cost_usd == pytest.approx(_convert("r6", "est_credits", "usd"))
    assert t.may_have_cost_runs == 1
    # Charged in its three parts: r2 reported; r1, r3, r7 reserved; r8 at its estimate.
    assert (t.reported_runs, t.reserved_runs, t.at_estimate_runs) == (1, 3, 1)
    assert t.reported_credits == pytest.approx(3.5)
    assert t.reserved_credits == pytest.approx(1.25798 + 9.45907 + 1.96)
    assert t.at_estimate_credits == pytest.approx(0.92462)
    frame = t.to_frame().set_index("amount")
    assert frame.loc["charged, total", "credits"] == pytest.approx(t.charged_credits)
    assert frame.loc["may have cost (unknown runs)", "runs"] == 1


def _convert(run_id: str, column: str, unit: str) -> float:
    run = {r.run_id: r for r in sample_runs()}[run_id]
    credits = getattr(run, column)
    if run.price_sheet == FORMULA:
        return credits / 10 / 7.1 if unit == "usd" else credits / 10
    return credits / 72 if unit == "usd" else credits / 72 * 7.1


def test_grouped_tables(rep: CostReport) -> None:
    day = rep.groups["day"].set_index("day")
    assert [d.strftime("%Y-%m-%d") for d in day.index] == [f"2026-11-0{i}" for i in range(1, 6)]
    assert day["runs"].tolist() == [2, 2, 2, 1, 1]
    assert day.loc["2026-11-01", "charged_credits"] == pytest.approx(1.25798 + 3.5)
    assert day.loc["2026-11-03", "charged_usd"] == 0  # r5 failed: released; r6 unknown: not in
    assert day.loc["2026-11-03", "unknown"] == 1 and day.loc["2026-11-02", "failed"] == 1
    quality = rep.groups["quality"].set_index("quality")
    assert quality.index.tolist() == ["low", "medium", "high"]
    assert quality.loc["high", "charged_credits"] == pytest.approx(9.45907)
    assert quality.loc["high", "est_credits"] == pytest.approx(_est(["r3", "r4", "r6"], "est_credits"))
    tag = rep.groups["tag"].set_index("tag")
    assert tag["runs"].to_dict() == {"(untagged)": 4, "alpha": 2, "beta": 2, "gamma": 1}  # r2 counts twice
    assert list(rep.groups["size"].columns) == [
        "size", "runs", "images", "failed", "unknown", "est_credits", "charged_credits", "may_have_cost_credits",
        "est_usd", "charged_usd", "may_have_cost_usd",
    ]


@pytest.mark.parametrize(
    ("group", "keys"),
    [
        ("week", ["2026-10-26", "2026-11-02"]),  # Nov 1 2026 is a Sunday
        ("month", ["2026-11"]),
        ("status", ["completed", "failed", "unknown"]),
        ("price_sheet", [FORMULA, "evolink-table-2026-11"]),
        ("provider", ["sandbox"]),
        ("model", ["gpt-image-1"]),
    ],
)
def test_group_keys(runs: pd.DataFrame, group: str, keys: list[str]) -> None:
    table = report(runs, group_by=[group], currency="CNY").groups[group]
    shown = [k.strftime("%Y-%m" if group == "month" else "%Y-%m-%d") if hasattr(k, "strftime") else k
             for k in table[group]]
    assert shown == keys
    assert table["runs"].sum() == 8
    # Lines are rounded once to the yuan's 4 places: their sum is within half a unit per line.
    exact = sum(expected_cny(r) for r in EXPECTED_CREDITS)
    assert table["charged_cny"].sum() == pytest.approx(exact, abs=0.00005 * len(table) + 1e-12)
    assert all(round(v, 4) == v for v in table["charged_cny"])


def test_failed_and_unknown_runs_are_listed_with_their_basis(rep: CostReport) -> None:
    failed = rep.failed.set_index("run_id")
    assert sorted(failed.index) == ["r4", "r5", "r6"]
    assert failed["cost_basis"].astype(str).to_dict() == {"r4": "no task", "r5": "failed", "r6": "may have cost"}


def test_price_sheets_and_period(rep: CostReport) -> None:
    assert rep.sheets["sheet"].tolist() == [FORMULA, "evolink-table-2026-11"]
    assert rep.sheets.set_index("sheet").loc[FORMULA, "runs"] == 1
    assert rep.period_text == "2026-11-01 – 2026-11-05 (UTC)"
    assert any("no figure from the service" in note for note in rep.notes)  # r8


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2026-11-02", None, ["r3", "r4", "r5", "r6", "r7", "r8"]),
        (None, "2026-11-03", ["r1", "r2", "r3", "r4", "r5", "r6"]),  # a date includes its whole day
        (dt.date(2026, 11, 3), dt.date(2026, 11, 3), ["r5", "r6"]),
        (dt.datetime(2026, 11, 1, 12), dt.datetime(2026, 11, 2, 9), ["r2", "r3"]),  # naive: UTC
        ("2026-11-02T10:00:00+01:00", "2026-11-03T09:00+01:00", ["r3", "r4", "r5"]),  # 09:00Z .. 08:00Z
        (dt.datetime(2026, 11, 5, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5))), None, []),
    ],
)
def test_since_and_until(runs: pd.DataFrame, since: object, until: object, expected: list[str]) -> None:
    got = report(runs, since=since, until=until)
    assert sorted(got.runs["run_id"]) == expected


def test_tags_and_quality_filters(runs: pd.DataFrame) -> None:
    assert sorted(report(runs, tags="beta").runs["run_id"]) == ["r2", "r3"]
    assert sorted(report(runs, tags=["alpha", "gamma"]).runs["run_id"]) == ["r1", "r2", "r7"]
    only_high = report(runs, quality="high")
    assert sorted(only_high.runs["run_id"]) == ["r3", "r4", "r6"]
    assert only_high.totals.charged_credits == pytest.approx(9.45907)
    assert "quality high" in only_high.filters


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"group_by": ["day", "colour"]}, "group_by"),
        ({"currency": "EUR"}, "currency"),
        ({"since": "last tuesday"}, "since"),
        ({"until": 3.5}, "until"),
        ({"tags": [1, 2]}, "tags"),
    ],
)
def test_bad_arguments_name_the_field(runs: pd.DataFrame, kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        report(runs, **kwargs)
    assert info.value.field == field


def test_default_reads_the_ledger_of_imgkit_home() -> None:
    _seed_home(sample_runs())
    got = report(since="2026-11-04")
    assert sorted(got.runs["run_id"]) == ["r7", "r8"]
    assert got.totals.charged_credits == pytest.approx(1.96 + 0.92462)


# --- exports -----------------------------------------------------------------------------


def test_csv_has_every_run_and_its_cost(rep: CostReport, tmp_path: Path) -> None:
    path = tmp_path / "spend.csv"
    assert rep.save(path) == path
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [r["run_id"] for r in rows] == ALL
    assert sum(float(r["charged_credits"] or 0) for r in rows) == pytest.approx(sum(EXPECTED_CREDITS.values()))
    r2 = next(r for r in rows if r["run_id"] == "r2")
    assert r2["tags"] == "alpha, beta" and r2["cost_basis"] == "charged"
    assert r2["created_at"] == "2026-11-01 15:00:00"  # UTC, in the form spreadsheets read as a date


def test_xlsx_sheets_number_formats_and_frozen_headers(rep: CostReport, tmp_path: Path) -> None:
    path = rep.save(tmp_path / "spend.xlsx")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == [
        "Summary", "Line items", "by_day", "by_quality", "by_size", "by_tag", "Failed and unknown", "Runs",
    ]
    runs = book["Runs"]
    header = [c.value for c in runs[1]]
    column = {name: i + 1 for i, name in enumerate(header)}
    assert runs.freeze_panes == "A2" and book["by_day"].freeze_panes == "A2"
    second = runs.cell(2, column["created_at"])
    assert isinstance(second.value, dt.datetime) and second.number_format == "yyyy-mm-dd hh:mm"
    assert runs.cell(2, column["est_credits"]).number_format == "0.00000"
    assert runs.cell(2, column["charged_usd"]).number_format == "$0.0000"
    assert "¥" in runs.cell(2, column["charged_cny"]).number_format
    charged = [runs.cell(r, column["charged_credits"]).value for r in range(2, runs.max_row + 1)]
    assert sum(v or 0 for v in charged) == pytest.approx(sum(EXPECTED_CREDITS.values()))
    assert runs.column_dimensions["A"].width >= 16  # wide enough for a date and time
    day = book["by_day"]
    assert day["A2"].number_format == "yyyy-mm-dd" and isinstance(day["A2"].value, dt.datetime)
    summary = book["Summary"]
    values = [c.value for row in summary.iter_rows() for c in row if c.value is not None]
    assert "imgkit cost report" in values and "charged, total" in values
    charged_row = next(row for row in summary.iter_rows() if row[0].value == "charged, total")
    assert charged_row[2].value == pytest.approx(sum(EXPECTED_CREDITS.values()))
    assert charged_row[3].number_format == "$0.0000"
    assert any("cost nothing" in str(v) for v in values)  # the rules travel with the numbers


def test_html_is_self_contained_with_charts_and_escaped(runs: pd.DataFrame, tmp_path: Path) -> None:
    record = sample_runs()[0].replace(run_id="r9", prompt='<script>alert("x")</script> <img src=http://evil/>')
    df = pd.concat([runs, ledger_frame(tmp_path / "more.sqlite3", [record])], ignore_index=True)
    page = report(df).to_html(tmp_path / "spend.html")
    assert (tmp_path / "spend.html").read_text(encoding="utf-8") == page
    tags = re.findall(r"<[a-zA-Z][^>]*>", page)
    assert tags and not [t for t in tags if re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//)", t, re.I)]
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "How costs are counted" in page and "Failed and unknown runs" in page


def test_markdown_tables(rep: CostReport, tmp_path: Path) -> None:
    text = rep.to_markdown(tmp_path / "spend.md")
    assert (tmp_path / "spend.md").read_text(encoding="utf-8") == text
    lines = text.splitlines()
    assert lines[0] == "# imgkit cost report"
    rule = lines.index("| amount | runs | credits | USD | CNY |") + 1
    assert lines[rule] == "|:---|---:|---:|---:|---:|"
    charged = next(line for line in lines if line.startswith("| charged, total |"))
    assert f"{sum(EXPECTED_CREDITS.values()):,.5f}" in charged and "\\$" in charged  # "$" escaped
    for title in ("## Line items", "## By day", "## By quality", "## By size", "## By tag", "## Failed and unknown runs"):
        after = lines[lines.index(title) + 1 :]
        table = after[next(i for i, line in enumerate(after) if line.startswith("| ")) :]
        assert table[0].startswith("| ") and re.fullmatch(r"\|(:---|---:)(\|(:---|---:))*\|", table[1])


def test_pdf_pages(rep: CostReport, tmp_path: Path) -> None:
    path = rep.save(tmp_path / "spend.pdf")
    assert path.read_bytes().startswith(b"%PDF")
    # title, spend over time, the other charts, line items, one page per grouped table, failed runs
    assert _pages(path) == 4 + 1 + 4 + 1


def test_pdf_splits_long_tables(tmp_path: Path) -> None:
    start = dt.datetime(2026, 9, 1)
    records = [
        _run(f"d{i:03d}", (start + dt.timedelta(days=i, hours=i % 24)).isoformat(), ("low", "medium", "high")[i % 3],
             "1024x1024", 1, "completed", latency=5 + i % 30, tags=(f"猫{i % 2}",))
        for i in range(60)
    ]
    df = ledger_frame(tmp_path / "ledger.sqlite3", records)
    long = report(df, group_by=("day", "tag"))
    path = long.to_pdf(tmp_path / "long.pdf")
    by_day = math.ceil(60 / pdf_pages.ROWS_PER_PAGE)
    assert _pages(path) == 4 + 1 + by_day + 1  # title, notes, charts, line items; no failed runs: no page for them
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "30", "-f", "5", "-l", "5", str(path), str(tmp_path / "p")],
                       check=True)
        assert list(tmp_path.glob("p-*.png"))


def test_empty_report_exports(tmp_path: Path) -> None:
    empty = report(ledger_frame(tmp_path / "ledger.sqlite3", []))
    assert empty.totals.runs == 0 and empty.period_text == "no runs"
    for ext in (".csv", ".xlsx", ".html", ".md", ".pdf"):
        assert empty.save(tmp_path / f"empty{ext}").stat().st_size > 0
    assert "None." in empty.to_markdown()


def test_save_refuses_unknown_extensions(rep: CostReport, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"\.docx"):
        rep.save(tmp_path / "spend.docx")


def test_notebook_display_is_compact(rep: CostReport) -> None:
    html = rep._repr_html_()
    assert html.count("<table") == 1 + 1 + len(rep.groups)  # totals, line items, grouped tables
    assert "data:image" not in html and "<style" not in html  # no global CSS leaking into the notebook
    assert "<span>$</span>" in html  # "$" kept away from MathJax
    assert "8 runs" in repr(rep) and "credits charged" in repr(rep)


# --- the command -------------------------------------------------------------------------


def test_cli_main_writes_each_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seed_home(sample_runs())
    assert cli.main(["report", "--group-by", "day,quality", "--currency", "CNY", "-o", str(tmp_path / "r.xlsx")]) == 0
    assert openpyxl.load_workbook(tmp_path / "r.xlsx").sheetnames == [
        "Summary", "Line items", "by_day", "by_quality", "Failed and unknown", "Runs",
    ]
    assert cli.main(["report", "--tags", "alpha,gamma", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(r["run_id"] for r in rows) == ["r1", "r2", "r7"]
    assert cli.main(["report", "--since", "2026-11-05"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# imgkit cost report") and "1 run (1 completed, 0 failed, 0 unknown)" in out
    assert cli.main(["report", "--format", "pdf"]) == 2
    assert "needs -o" in capsys.readouterr().err
    assert cli.main(["report", "--since", "yesterday-ish"]) == 2
    assert "since" in capsys.readouterr().err


def test_cli_subprocess_pdf(tmp_path: Path) -> None:
    home = _seed_home(sample_runs())
    out = tmp_path / "spend.pdf"
    env = {**os.environ, "IMGKIT_HOME": str(home)}
    done = subprocess.run(
        [str(IMGKIT), "report", "--since", "2026-11-01", "--group-by", "day", "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"%PDF")
    assert _pages(out) == 4 + 1 + 1 + 1  # title, notes, charts, line items, by day, failed runs
    assert "8 runs" in done.stderr
