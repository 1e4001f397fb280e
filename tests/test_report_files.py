"""Reports as files a finance team can use: saves that never leave a broken file, a command
that says what it read and what went wrong in one line, and a workbook that prints."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from imgkit import cli
from imgkit.errors import ValidationError
from imgkit.reports import CostReport, _pdf, _xlsx, report

from .test_plots import sample_runs
from .test_reports import _seed_home, ledger_frame

FORMATS = ["csv", "xlsx", "html", "md", "pdf"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return ledger_frame(tmp_path_factory.mktemp("files") / "ledger.sqlite3", sample_runs())


@pytest.fixture(scope="module")
def rep(runs: pd.DataFrame) -> CostReport:
    return report(runs, group_by=("day", "quality", "tag"))


# --- atomic saves ------------------------------------------------------------------------


def _interrupt(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Make the writer of ``kind`` write part of its file, then fail as a full disk does."""

    def half_then_fail(path: Path, *_: object, **__: object) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    if kind == "xlsx":
        monkeypatch.setattr(_xlsx, "write", lambda rep, path: half_then_fail(path))
    elif kind == "pdf":
        monkeypatch.setattr(_pdf, "write", lambda rep, path: half_then_fail(path))
    else:
        real = Path.write_text

        def write_text(self: Path, data: str, *args: object, **kwargs: object) -> int:
            real(self, data[: len(data) // 2], encoding="utf-8")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize("kind", FORMATS)
def test_a_saved_report_is_an_ordinary_file_to_share(kind: str, rep: CostReport, tmp_path: Path) -> None:
    # Written through a private temporary file (mode 0600), then made readable as any file
    # a user saves, the way exports and stored images are.
    path = rep.save(tmp_path / f"spend.{kind}")
    assert path.stat().st_mode & 0o777 == 0o644
    folder = rep.to_csv_tables(tmp_path / "bill")
    assert {p.stat().st_mode & 0o777 for p in folder.values()} == {0o644}


@pytest.mark.parametrize("kind", FORMATS)
def test_a_save_interrupted_mid_write_leaves_the_old_file(
    kind: str, rep: CostReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"spend.{kind}"
    rep.save(path)
    before = path.read_bytes()
    with monkeypatch.context() as patch:
        _interrupt(patch, kind)
        with pytest.raises(OSError, match="No space"):
            rep.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind


def test_format_must_agree_with_the_extension(rep: CostReport, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"format='xlsx'.*pdf"):
        rep.save(tmp_path / "x.pdf", format="xlsx")
    assert not (tmp_path / "x.pdf").exists()
    assert rep.save(tmp_path / "x.pdf", format="PDF").read_bytes().startswith(b"%PDF")


# --- arguments ---------------------------------------------------------------------------


def test_since_after_until_is_refused(runs: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match=r"until='2026-11-01'.*on or after since=2026-12-01"):
        report(runs, since="2026-12-01", until="2026-11-01")


@pytest.mark.parametrize("bad", [-1, 2.5, "10", True])
def test_max_rows_is_checked(runs: pd.DataFrame, bad: object) -> None:
    with pytest.raises(ValidationError, match="max_rows"):
        report(runs, max_rows=bad)  # type: ignore[arg-type]


def test_max_rows_never_cuts_a_grouped_table(runs: pd.DataFrame) -> None:
    rep = report(runs, group_by=("day",), max_rows=1)
    days = len(rep.groups["day"])
    assert days > 1
    md = rep.to_markdown()
    section = md.split("## By day", 1)[1].split("\n## ", 1)[0]
    assert sum(line.startswith("| 2026-") for line in section.splitlines()) == days
    assert "The first" not in section


def test_an_empty_report_says_which_ledger_it_read(tmp_path: Path) -> None:
    rep = report(since="2030-01-01")  # the default session's ledger: empty here
    assert rep.totals.runs == 0
    assert rep.empty_reason is not None and "ledger.sqlite3 holds none" in rep.empty_reason
    assert rep.empty_reason in rep.to_markdown()


# --- CSV -----------------------------------------------------------------------------------


def test_csv_times_are_what_spreadsheets_read_as_dates(rep: CostReport) -> None:
    rows = list(csv.DictReader(io.StringIO(rep.to_csv())))
    for row in rows:
        for name in ("created_at", "submitted_at", "completed_at"):
            if row[name]:
                assert pd.Timestamp(row[name]).strftime("%Y-%m-%d %H:%M:%S") == row[name]


# --- the command -------------------------------------------------------------------------


def test_cli_names_the_ledger_and_fails_on_an_empty_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report"]) == 1
    err = capsys.readouterr().err
    assert "ledger.sqlite3" in err and "holds none" in err and "IMGKIT_HOME" in err
    _seed_home(sample_runs())
    assert cli.main(["report", "--since", "2030-01-01"]) == 1
    assert "8 runs, none of them in this slice" in capsys.readouterr().err
    assert cli.main(["report"]) == 0
    assert "read the ledger" in capsys.readouterr().err


def test_cli_file_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seed_home(sample_runs())
    assert cli.main(["report", "-o", str(tmp_path / "missing" / "spend.pdf")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("imgkit report: cannot write") and "missing" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_cli_format_and_extension_must_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seed_home(sample_runs())
    assert cli.main(["report", "--format", "xlsx", "-o", str(tmp_path / "x.pdf")]) == 2
    assert "does not match" in capsys.readouterr().err
    assert not (tmp_path / "x.pdf").exists()


@pytest.mark.parametrize("currency", ["usd", "Cny", "CREDITS"])
def test_cli_currency_in_any_case(currency: str, capsys: pytest.CaptureFixture[str]) -> None:
    _seed_home(sample_runs())
    assert cli.main(["report", "--currency", currency, "--format", "md"]) == 0
    assert f"amounts in {currency.upper() if currency.lower() != 'credits' else 'credits'}" in capsys.readouterr().out


# --- the workbook ----------------------------------------------------------------------------


def test_xlsx_prints_landscape_one_page_wide(rep: CostReport, tmp_path: Path) -> None:
    book = openpyxl.load_workbook(rep.save(tmp_path / "spend.xlsx"))
    for ws in book.worksheets:
        assert ws.page_setup.orientation == "landscape", ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth == 1, ws.title
        assert ws.page_setup.fitToHeight == 0, ws.title
        if ws.title != "Summary":
            assert ws.print_title_rows == "$1:$1", ws.title


def test_xlsx_grouped_sheets_end_with_a_totals_row(rep: CostReport, tmp_path: Path) -> None:
    book = openpyxl.load_workbook(rep.save(tmp_path / "spend.xlsx"))
    ws = book["by_quality"]
    header = [c.value for c in ws[1]]
    last = ws.max_row
    assert ws.cell(last, 1).value == "Total"
    credits = header.index("charged_credits") + 1
    letter = openpyxl.utils.get_column_letter(credits)
    assert ws.cell(last, credits).value == f"=SUM({letter}2:{letter}{last - 1})"
    failed = book["Failed and unknown"]
    assert failed.cell(failed.max_row, 1).value == "Total"
    ids = [c.value for c in failed["B"][1:-1]]
    assert sorted(ids) == sorted(rep.failed["run_id"])


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (libreoffice-calc-nogui) is not installed")
def test_libreoffice_computes_the_totals_and_prints_landscape(rep: CostReport, tmp_path: Path) -> None:
    src = rep.save(tmp_path / "spend.xlsx")
    profile = tmp_path / "lo-profile"
    convert = ["soffice", f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to"]
    env = {**os.environ, "HOME": str(tmp_path)}
    out = tmp_path / "lo"
    done = subprocess.run([*convert, "xlsx", "--outdir", str(out), str(src)], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    book = openpyxl.load_workbook(out / "spend.xlsx", data_only=True)
    ws = book["by_quality"]
    header = [c.value for c in ws[1]]
    col = header.index("charged_credits") + 1
    values = [ws.cell(r, col).value or 0 for r in range(2, ws.max_row)]
    assert ws.cell(ws.max_row, col).value == pytest.approx(sum(values))
    done = subprocess.run([*convert, "pdf", "--outdir", str(out), str(src)], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    info = subprocess.run(["pdfinfo", str(out / "spend.pdf")], capture_output=True, text=True, check=True).stdout
    width, height = map(float, info.split("Page size:")[1].split("pts")[0].split(" x "))
    assert width > height  # landscape
    pages = int(info.split("Pages:")[1].split()[0])
    assert pages <= 2 + 1 + len(rep.groups) + 2, info  # a page or two a sheet, not dozens of strips
