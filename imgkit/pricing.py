"""Price sheets as data, and the estimate of a request's cost. Pure: no I/O but reading the
sheets shipped in ``imgkit/data/prices/`` once.

The gateway's product page states two prices that disagree (a table in USD and a formula in
CNY); both ship as named, dated sheets. Every estimate names the sheet it used::

    total = base x quality multiplier x size multiplier x n

Example:
    >>> est = estimate(quality="medium", size="1:1", sheet="evolink-table-2026-11")
    >>> est.credits, est.usd
    (2.4192, 0.0336)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from imgkit.errors import ConfigError, ValidationError

__all__ = [
    "DEFAULT_SHEET",
    "Estimate",
    "PriceSheet",
    "estimate",
    "get_sheet",
    "price_sheets",
    "register_price_sheet",
]

DEFAULT_SHEET = "evolink-table-2026-11"


@dataclass(frozen=True, slots=True)
class PriceSheet:
    """A named, dated price list for per-image billing.

    Give exactly one of ``credits_per_usd`` and ``credits_per_cny``; the other currency is
    derived through ``cny_per_usd``.

    Attributes:
        name: how estimates and reports refer to the sheet.
        date: when the prices were read (ISO date).
        source: where they come from.
        base_credits: credits for one medium-quality square image.
        quality: multiplier per quality tier.
        size: multipliers for ``square`` and ``non_square`` images.
        models: the models the sheet prices.
    """

    name: str
    date: str
    source: str
    base_credits: float
    credits_per_usd: float | None = None
    credits_per_cny: float | None = None
    cny_per_usd: float = 7.1
    quality: Mapping[str, float] = field(
        default_factory=lambda: {"low": 0.26, "medium": 1.0, "high": 3.91}
    )
    size: Mapping[str, float] = field(
        default_factory=lambda: {"square": 1.0, "non_square": 1.47}
    )
    models: tuple[str, ...] = ("gpt-image-1",)
    fx_note: str = ""
    round_credits: int = 5
    round_usd: int = 4
    round_cny: int = 4

    def __post_init__(self) -> None:
        if (self.credits_per_usd is None) == (self.credits_per_cny is None):
            raise ConfigError(
                f"price sheet {self.name!r}: give exactly one of credits_per_usd, credits_per_cny"
            )
        if self.base_credits <= 0:
            raise ConfigError(f"price sheet {self.name!r}: base_credits must be positive")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceSheet:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"price sheet: unknown keys {sorted(unknown)}")
        values = dict(data)
        if "models" in values:
            values["models"] = tuple(values["models"])
        return cls(**values)

    def to_usd(self, credits: float) -> float:
        if self.credits_per_usd is not None:
            return credits / self.credits_per_usd
        assert self.credits_per_cny is not None
        return credits / self.credits_per_cny / self.cny_per_usd

    def to_cny(self, credits: float) -> float:
        if self.credits_per_cny is not None:
            return credits / self.credits_per_cny
        assert self.credits_per_usd is not None
        return credits / self.credits_per_usd * self.cny_per_usd


@dataclass(frozen=True, slots=True)
class Estimate:
    """The estimated cost of a request.

    Attributes:
        credits: total credits, rounded as the sheet rounds.
        usd: total in US dollars, rounded as the sheet rounds.
        cny: total in yuan, rounded as the sheet rounds.
        sheet: the price sheet's name.
        per_image_credits: credits for one image.
        formula: the computation spelled out.
    """

    credits: float
    usd: float
    cny: float
    sheet: str
    per_image_credits: float
    formula: str

    def __str__(self) -> str:
        return f"{self.credits:g} credits (${self.usd:.4f}, ¥{self.cny:.4f}; {self.sheet})"


def _round(value: Decimal, places: int) -> float:
    return float(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


_REGISTRY: dict[str, PriceSheet] = {}


def _load_shipped() -> None:
    if _REGISTRY:
        return
    folder = resources.files("imgkit") / "data" / "prices"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            sheet = PriceSheet.from_dict(json.loads(entry.read_text("utf-8")))
            _REGISTRY[sheet.name] = sheet


def price_sheets() -> dict[str, PriceSheet]:
    """All known price sheets by name: the shipped ones and any registered."""
    _load_shipped()
    return dict(_REGISTRY)


def register_price_sheet(sheet: PriceSheet | Mapping[str, Any] | str | Path) -> PriceSheet:
    """Add (or replace) a price sheet, e.g. your own contract price.

    Args:
        sheet: a PriceSheet, a mapping of its fields, or a path to a JSON file.

    Example:
        >>> register_price_sheet({"name": "my-contract", "date": "2026-11-01",
        ...     "source": "contract #12", "base_credits": 2.0, "credits_per_usd": 80})
        PriceSheet(name='my-contract', ...)
    """
    _load_shipped()
    if isinstance(sheet, str | Path):
        sheet = json.loads(Path(sheet).read_text("utf-8"))
    if not isinstance(sheet, PriceSheet):
        sheet = PriceSheet.from_dict(sheet)
    _REGISTRY[sheet.name] = sheet
    return sheet


def get_sheet(name: str | PriceSheet | None = None) -> PriceSheet:
    """The sheet called ``name`` (the default sheet when None)."""
    if isinstance(name, PriceSheet):
        return name
    sheets = price_sheets()
    key = name or DEFAULT_SHEET
    try:
        return sheets[key]
    except KeyError:
        raise ConfigError(
            f"unknown price sheet {key!r}; known: {', '.join(sorted(sheets))}"
        ) from None


_SQUARE = {"1:1", "1024x1024", "auto"}


def estimate(
    *,
    quality: str = "medium",
    size: str = "1024x1024",
    n: int = 1,
    model: str = "gpt-image-1",
    sheet: str | PriceSheet | None = None,
) -> Estimate:
    """Estimate the cost of a request with a price sheet.

    Args:
        quality: low, medium or high.
        size: the size in either form; any size other than square costs the non-square rate.
        n: number of images.
        model: the model (the sheet must price it).
        sheet: a sheet or its name; the default sheet when None.

    Example:
        >>> estimate(quality="high", size="3:2", n=2).credits
        27.80967
    """
    chosen = get_sheet(sheet)
    if model not in chosen.models:
        raise ConfigError(
            f"price sheet {chosen.name!r} has no price for model {model!r} "
            f"(it prices {', '.join(chosen.models)}); register a sheet that does"
        )
    if quality not in chosen.quality:
        raise ValidationError("quality", quality, " | ".join(chosen.quality))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError("n", n, "a positive integer")
    square = str(size).replace(" ", "").lower() in _SQUARE
    size_key = "square" if square else "non_square"
    q = Decimal(str(chosen.quality[quality]))
    s = Decimal(str(chosen.size[size_key]))
    per_image = Decimal(str(chosen.base_credits)) * q * s
    total = per_image * n
    if chosen.credits_per_usd is not None:
        usd = total / Decimal(str(chosen.credits_per_usd))
        cny = usd * Decimal(str(chosen.cny_per_usd))
    else:
        assert chosen.credits_per_cny is not None
        cny = total / Decimal(str(chosen.credits_per_cny))
        usd = cny / Decimal(str(chosen.cny_per_usd))
    formula = (
        f"{chosen.base_credits:g} base x {q:g} ({quality}) x {s:g} "
        f"({'square' if square else 'non-square'}) x {n} = "
        f"{_round(total, chosen.round_credits):g} credits"
    )
    return Estimate(
        credits=_round(total, chosen.round_credits),
        usd=_round(usd, chosen.round_usd),
        cny=_round(cny, chosen.round_cny),
        sheet=chosen.name,
        per_image_credits=_round(per_image, chosen.round_credits),
        formula=formula,
    )
