"""Price sheets as data, and the estimate of a request's cost. Pure: no I/O but reading the
sheets shipped in ``imgkit/data/prices/`` once.

The gateway's product page states two prices that disagree (a table in USD and a formula in
CNY); both ship as named, dated sheets. Every estimate names the sheet it used::

    total = base x quality multiplier x size multiplier x n

Example:
    >>> est = estimate(quality="medium", size="1:1", sheet="evolink-table-2026-11")
    >>> est.credits, est.usd
    (2.4192, 0.0336)

A second kind of sheet, :class:`TokenPriceSheet` (``"kind": "tokens"`` in its file), prices
per-token billing such as OpenAI's own gpt-image-1 API: the estimate multiplies the documented
output image tokens of the tier and size by the output rate, and :meth:`TokenPriceSheet.cost`
prices the token ``usage`` a response reports::

    total = output tokens per image (quality, size) x USD per output token x n

Example:
    >>> estimate(quality="medium", size="1:1", sheet="openai-tokens-2026-11").usd
    0.0422
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
    "Sheet",
    "TokenCost",
    "TokenPriceSheet",
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


#: Token categories a :class:`TokenPriceSheet` prices, USD per million tokens.
TOKEN_RATES = ("text_input", "cached_text_input", "image_input", "cached_image_input", "image_output")
_RATIO_PIXELS = {"1:1": "1024x1024", "2:3": "1024x1536", "3:2": "1536x1024", "auto": "1024x1024"}


@dataclass(frozen=True, slots=True)
class TokenCost:
    """What a token ``usage`` costs on a :class:`TokenPriceSheet`.

    Attributes:
        usd: the exact total in US dollars (not rounded).
        credits: the same amount in the sheet's credits (``usd x credits_per_usd``).
        input_tokens, output_tokens: the tokens counted.
    """

    usd: float
    credits: float
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class TokenPriceSheet:
    """A named, dated price list for per-token billing (OpenAI's images API).

    Estimates are made before anything is sent, from the documented output image tokens per
    quality tier and size (input tokens, small for a text prompt, are billed on top and show
    in the charged amount). The charged amount comes from the ``usage`` the API returns.
    Credits are a unit of account here, ``usd x credits_per_usd``, so that budgets, reports
    and the router can add and compare runs across providers.

    Attributes:
        name: how estimates and reports refer to the sheet.
        date: when the prices were read (ISO date).
        source: where they come from.
        usd_per_million: USD per million tokens for each of :data:`TOKEN_RATES`.
        output_tokens: output image tokens of one image, by quality and then pixel size.
        credits_per_usd: credits per USD (the default gateway sheet's 72).
        cny_per_usd: for the CNY column.
        models: the models the sheet prices.
    """

    name: str
    date: str
    source: str
    usd_per_million: Mapping[str, float]
    output_tokens: Mapping[str, Mapping[str, int]]
    credits_per_usd: float = 72.0
    cny_per_usd: float = 7.1
    models: tuple[str, ...] = ("gpt-image-1",)
    kind: str = "tokens"
    fx_note: str = ""
    round_credits: int = 5
    round_usd: int = 4
    round_cny: int = 4

    def __post_init__(self) -> None:
        missing = [k for k in TOKEN_RATES if k not in self.usd_per_million]
        if missing:
            raise ConfigError(f"token price sheet {self.name!r}: usd_per_million lacks {missing}")
        if not self.output_tokens or any(not sizes for sizes in self.output_tokens.values()):
            raise ConfigError(f"token price sheet {self.name!r}: output_tokens needs tokens per quality and size")
        if self.credits_per_usd <= 0:
            raise ConfigError(f"token price sheet {self.name!r}: credits_per_usd must be positive")
        if self.kind != "tokens":
            raise ConfigError(f"token price sheet {self.name!r}: kind must be 'tokens'")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenPriceSheet:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"token price sheet: unknown keys {sorted(unknown)}")
        values = dict(data)
        if "models" in values:
            values["models"] = tuple(values["models"])
        return cls(**values)

    # The attributes reports read from per-image sheets, so both kinds can be listed together.
    @property
    def credits_per_cny(self) -> float | None:
        return None

    @property
    def base_credits(self) -> float:
        """Credits for one medium-quality square image, for comparison with per-image sheets."""
        return estimate(quality="medium", size="1024x1024", model=self.models[0], sheet=self).credits

    def to_usd(self, credits: Any) -> Any:
        return credits / self.credits_per_usd

    def to_cny(self, credits: Any) -> Any:
        return credits / self.credits_per_usd * self.cny_per_usd

    def tokens_per_image(self, quality: str, size: str) -> int:
        """Output image tokens of one image; ``size`` in pixel or ratio form."""
        if quality not in self.output_tokens:
            raise ValidationError("quality", quality, " | ".join(self.output_tokens))
        by_size = self.output_tokens[quality]
        key = str(size).replace(" ", "").lower()
        key = _RATIO_PIXELS.get(key, key)
        if key not in by_size:
            raise ValidationError("size", size, f"a size priced by {self.name}: " + ", ".join(by_size))
        return int(by_size[key])

    def cost(self, usage: Mapping[str, Any]) -> TokenCost:
        """Price a response's ``usage`` (spec §9c): text and image input tokens at their
        rates, output tokens at the image output rate.

        Example:
            >>> get_sheet("openai-tokens-2026-11").cost({"input_tokens": 50,
            ...     "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
            ...     "output_tokens": 4160}).usd
            0.16685
        """
        details = usage.get("input_tokens_details")
        details = details if isinstance(details, Mapping) else {}
        total_in = _count(usage.get("input_tokens"))
        image_in = _count(details.get("image_tokens"))
        text_in = _count(details.get("text_tokens")) if "text_tokens" in details else max(0, total_in - image_in)
        cached = _count(details.get("cached_tokens"))
        output = _count(usage.get("output_tokens"))
        rates = {k: Decimal(str(v)) for k, v in self.usd_per_million.items()}
        # Cached tokens are counted inside the text tokens; price them at the cached rate.
        cached_text = min(cached, text_in)
        usd = (
            (text_in - cached_text) * rates["text_input"]
            + cached_text * rates["cached_text_input"]
            + image_in * rates["image_input"]
            + output * rates["image_output"]
        ) / Decimal(1_000_000)
        return TokenCost(
            usd=float(usd),
            credits=float(usd * Decimal(str(self.credits_per_usd))),
            input_tokens=text_in + image_in,
            output_tokens=output,
        )


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))


#: Either kind of price sheet.
Sheet = PriceSheet | TokenPriceSheet


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


_REGISTRY: dict[str, Sheet] = {}


def _from_dict(data: Mapping[str, Any]) -> Sheet:
    if data.get("kind") == "tokens":
        return TokenPriceSheet.from_dict(data)
    return PriceSheet.from_dict(data)


def _load_shipped() -> None:
    if _REGISTRY:
        return
    folder = resources.files("imgkit") / "data" / "prices"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            sheet = _from_dict(json.loads(entry.read_text("utf-8")))
            _REGISTRY[sheet.name] = sheet


def price_sheets() -> dict[str, Sheet]:
    """All known price sheets by name: the shipped ones and any registered."""
    _load_shipped()
    return dict(_REGISTRY)


def register_price_sheet(sheet: Sheet | Mapping[str, Any] | str | Path) -> Sheet:
    """Add (or replace) a price sheet, e.g. your own contract price.

    Args:
        sheet: a PriceSheet or TokenPriceSheet, a mapping of its fields (``"kind": "tokens"``
            for a token sheet), or a path to a JSON file.

    Example:
        >>> register_price_sheet({"name": "my-contract", "date": "2026-11-01",
        ...     "source": "contract #12", "base_credits": 2.0, "credits_per_usd": 80})
        PriceSheet(name='my-contract', ...)
    """
    _load_shipped()
    if isinstance(sheet, str | Path):
        sheet = json.loads(Path(sheet).read_text("utf-8"))
    if not isinstance(sheet, PriceSheet | TokenPriceSheet):
        sheet = _from_dict(sheet)
    _REGISTRY[sheet.name] = sheet
    return sheet


def get_sheet(name: str | Sheet | None = None) -> Sheet:
    """The sheet called ``name`` (the default sheet when None)."""
    if isinstance(name, PriceSheet | TokenPriceSheet):
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
    sheet: str | Sheet | None = None,
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
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError("n", n, "a positive integer")
    if isinstance(chosen, TokenPriceSheet):
        return _estimate_tokens(chosen, quality=quality, size=size, n=n)
    if quality not in chosen.quality:
        raise ValidationError("quality", quality, " | ".join(chosen.quality))
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
        f"{_round(total, chosen.round_credits):.10g} credits"
    )
    return Estimate(
        credits=_round(total, chosen.round_credits),
        usd=_round(usd, chosen.round_usd),
        cny=_round(cny, chosen.round_cny),
        sheet=chosen.name,
        per_image_credits=_round(per_image, chosen.round_credits),
        formula=formula,
    )


def _estimate_tokens(sheet: TokenPriceSheet, *, quality: str, size: str, n: int) -> Estimate:
    tokens = sheet.tokens_per_image(quality, size)
    rate = Decimal(str(sheet.usd_per_million["image_output"]))
    per_image_usd = Decimal(tokens) * rate / Decimal(1_000_000)
    usd = per_image_usd * n
    per_rate = Decimal(str(sheet.credits_per_usd))
    credits = usd * per_rate
    cny = usd * Decimal(str(sheet.cny_per_usd))
    formula = (
        f"{tokens} output tokens ({quality}, {size}) x ${float(rate):g}/1M x {n} = "
        f"${_round(usd, sheet.round_usd):g} = {_round(credits, sheet.round_credits):g} credits"
    )
    return Estimate(
        credits=_round(credits, sheet.round_credits),
        usd=_round(usd, sheet.round_usd),
        cny=_round(cny, sheet.round_cny),
        sheet=sheet.name,
        per_image_credits=_round(per_image_usd * per_rate, sheet.round_credits),
        formula=formula,
    )
