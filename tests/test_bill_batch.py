"""Reports show the batch discount: runs sent in an OpenAI Batch count at the batch price, and
the line items show their images at the direct unit price with the discount taken off, in
every format, summed in SQL as over a DataFrame."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import imgkit
from imgkit.reports import CostReport, report
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, TEST_KEY
from .pg import Backend


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    config = SandboxConfig(seed=12, time_scale=0.01, openai_models=("gpt-image-2",), batch_seconds=20)
    with running_sandbox(app=create_app(config)) as base:
        yield base


def _providers(url: str) -> list[dict[str, Any]]:
    return [{"name": "openai", "kind": "openai", "api_key": TEST_KEY, "base_url": f"{url}/openai/v1",
             "models": ["gpt-image-2"]}]


@pytest.fixture
def bill(url: str, data_dir: Path, backend: Backend) -> CostReport:
    """Two prompts at low and high sent in one Batch, and the same high runs sent directly,
    on a SQLite ledger or a team's PostgreSQL one."""
    imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=_providers(url))
    imgkit.sweep(["a red fox", "a lighthouse"], model="gpt-image-2", quality=["low", "high"], size="1024x1024",
                 batch=True, confirm=True, progress=False)
    for prompt in ("a red fox", "a lighthouse"):
        imgkit.generate(prompt, model="gpt-image-2", quality="high", size="1024x1024")
    for _ in range(200):
        if all(r.status == "completed" for r in imgkit.resume()):
            break
        time.sleep(0.05)
    df = imgkit.runs()
    assert list(df["status"]) == ["completed"] * 6 and df["batch_id"].notna().sum() == 4
    return report(currency="USD")


def test_the_totals_and_line_items_show_the_discount(bill: CostReport) -> None:
    t = bill.totals
    assert (t.batch_runs, t.batch_images) == (4, 4)
    items = bill.line_items.set_index("quality")
    assert list(bill.line_items.columns[5:11]) == ["runs", "images", "unit_usd", "subtotal_usd", "batch_images",
                                                   "batch_discount_usd"]
    assert (items.loc["high", "images"], items.loc["high", "batch_images"]) == (4, 2)
    assert (items.loc["low", "images"], items.loc["low", "batch_images"]) == (2, 2)
    for quality in ("low", "high"):
        row = items.loc[quality]
        half = Decimal(repr(float(row["unit_usd"]))) * int(row["batch_images"]) / 2
        assert Decimal(repr(float(row["batch_discount_usd"]))) == -half.quantize(Decimal("0.0001"), rounding="ROUND_HALF_UP")
        # What was charged is about the subtotal less the discount (the usage adds a few
        # input tokens to each image's output tokens).
        assert row["charged_usd"] == pytest.approx(row["subtotal_usd"] + row["batch_discount_usd"], rel=0.02)
    assert t.batch_discount_usd == pytest.approx(items["batch_discount_usd"].sum(), abs=1e-4)
    assert t.batch_discount_credits < 0 and t.batch_discount_cny < 0
    # The whole bill: direct runs at the full price, batch runs at half of it.
    assert t.charged_usd == pytest.approx(items["subtotal_usd"].sum() + t.batch_discount_usd, rel=0.02)
    frame = t.to_frame().set_index("amount")
    row = frame.loc["batch discount (already off the amounts above)"]
    assert row["runs"] == 4 and row["USD"] == pytest.approx(t.batch_discount_usd, abs=1e-4)
    note = next(n for n in bill.notes if "OpenAI Batches" in n)
    assert note.startswith("4 run(s) (4 images) went in OpenAI Batches")
    assert f"{-t.batch_discount_credits:,.5f} credits" in note


def test_the_discount_is_in_every_format(bill: CostReport, tmp_path: Path) -> None:
    import openpyxl

    assert "batch discount, USD" in bill.to_markdown() and "batch discount, USD" in bill.to_html()
    line_items = bill.to_csv_tables(tmp_path)["line_items"].read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(line_items)))
    total = rows[-1]
    assert total["model"] == "Total" and total["of which in batches"] == "4"
    assert Decimal(total["batch discount, USD"]) == Decimal(repr(round(bill.totals.batch_discount_usd, 4)))
    book = openpyxl.load_workbook(bill.save(tmp_path / "bill.xlsx"))
    sheet = book["Line items"]
    header = [c.value for c in sheet[1]]
    assert {"batch_images", "batch_discount_usd"} <= set(header)
    column = header.index("batch_discount_usd")
    assert str(sheet.cell(sheet.max_row, column + 1).value).startswith("=SUM(")  # its Total row adds it up


def test_sums_in_sql_match_sums_over_the_runs(bill: CostReport) -> None:
    by_frame = report(imgkit.runs(), currency="USD")
    pd.testing.assert_frame_equal(bill.line_items, by_frame.line_items, check_exact=False, rtol=1e-12)
    for field in ("batch_runs", "batch_images", "batch_discount_credits", "batch_discount_usd", "charged_usd"):
        assert getattr(bill.totals, field) == pytest.approx(getattr(by_frame.totals, field)), field


def test_a_bill_without_batches_has_no_batch_columns(data_dir: Path, url: str) -> None:
    imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=_providers(url))
    imgkit.generate("a red fox", model="gpt-image-2", quality="low", size="1024x1024")
    rep = report()
    assert "batch_images" not in rep.line_items.columns and rep.totals.batch_runs == 0
    assert not any("Batches" in n for n in rep.notes)
    assert "batch discount" not in " ".join(rep.totals.to_frame()["amount"])
