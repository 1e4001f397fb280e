"""Pricing: every row of the seed's table, both sheets, multipliers, n, custom sheets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imgkit
from imgkit.errors import ConfigError
from imgkit.pricing import estimate, get_sheet, price_sheets, register_price_sheet

# The seed's pricing table, verbatim: quality, sizes, USD per image, credits per image.
SEED_TABLE = [
    ("low", ["1024x1024"], 0.0087, 0.62899),
    ("low", ["1024x1536", "1536x1024"], 0.0128, 0.92462),
    ("medium", ["1024x1024"], 0.0336, 2.4192),
    ("medium", ["1024x1536", "1536x1024"], 0.0494, 3.55622),
    ("high", ["1024x1024"], 0.1314, 9.45907),
    ("high", ["1024x1536", "1536x1024"], 0.1931, 13.90484),
]


@pytest.mark.parametrize(("quality", "sizes", "usd", "credits"), SEED_TABLE)
def test_table_sheet_reproduces_every_seed_row(quality: str, sizes: list[str], usd: float, credits: float) -> None:
    for size in sizes:
        est = estimate(quality=quality, size=size, sheet="evolink-table-2026-11")
        assert est.credits == credits
        assert est.usd == usd
        assert est.sheet == "evolink-table-2026-11"


def test_ratio_sizes_cost_the_same_as_pixel_sizes() -> None:
    assert imgkit.estimate(size="2:3").credits == imgkit.estimate(size="1024x1536").credits == 3.55622


def test_formula_sheet() -> None:
    est = estimate(quality="medium", size="1:1", sheet="evolink-formula-2026-11")
    assert (est.credits, est.cny) == (1.96, 0.196)
    high_wide = estimate(quality="high", size="3:2", n=3, sheet="evolink-formula-2026-11")
    assert high_wide.credits == round(1.96 * 3.91 * 1.47 * 3, 5)
    assert high_wide.cny == round(high_wide.credits / 10, 4)
    assert "1.96 base x 3.91 (high) x 1.47 (non-square) x 3" in high_wide.formula


@pytest.mark.parametrize("n", [1, 2, 7, 10])
def test_cost_scales_linearly_with_n(n: int) -> None:
    one = estimate(quality="low", size="3:2")
    many = estimate(quality="low", size="3:2", n=n)
    assert many.credits == pytest.approx(one.credits * n, abs=1e-5 * n)  # per-image rounding
    assert many.per_image_credits == one.credits


def test_quality_multipliers() -> None:
    base = estimate(quality="medium").credits
    assert estimate(quality="low").credits == pytest.approx(base * 0.26, abs=1e-5)
    assert estimate(quality="high").credits == pytest.approx(base * 3.91, abs=1e-5)


def test_both_sheets_ship_with_source_and_date() -> None:
    sheets = price_sheets()
    assert {"evolink-table-2026-11", "evolink-formula-2026-11"} <= set(sheets)
    for sheet in sheets.values():
        assert sheet.date and sheet.source


def test_register_own_sheet_from_mapping_and_file(tmp_path: Path) -> None:
    register_price_sheet({"name": "contract-a", "date": "2026-11-01", "source": "contract", "base_credits": 2.0, "credits_per_usd": 100})
    est = estimate(quality="medium", size="1:1", n=2, sheet="contract-a")
    assert (est.credits, est.usd, est.sheet) == (4.0, 0.04, "contract-a")
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"name": "contract-b", "date": "2026-11-02", "source": "file", "base_credits": 1.0, "credits_per_cny": 5}))
    assert register_price_sheet(path).name == "contract-b"
    assert get_sheet("contract-b").to_cny(10) == 2.0


def test_bad_sheets_are_refused() -> None:
    with pytest.raises(ConfigError, match="exactly one of credits_per_usd, credits_per_cny"):
        register_price_sheet({"name": "x", "date": "d", "source": "s", "base_credits": 1.0})
    with pytest.raises(ConfigError, match="unknown keys"):
        register_price_sheet({"name": "x", "date": "d", "source": "s", "base_credits": 1.0, "credits_per_usd": 1, "typo": 1})
    with pytest.raises(ConfigError, match="unknown price sheet 'nope'"):
        estimate(sheet="nope")
    with pytest.raises(ConfigError, match="no price for model 'gpt-image-2'"):
        estimate(model="gpt-image-2")


def test_module_estimate_validates_first() -> None:
    with pytest.raises(imgkit.ValidationError, match="quality"):
        imgkit.estimate(quality="ultra")
    with pytest.raises(imgkit.ValidationError, match="size"):
        imgkit.estimate(size="5:4")
