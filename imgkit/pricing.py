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

For gpt-image-2 the token sheets estimate the output tokens of any size from the documented
ones (an estimate, and labelled so): the documented count of the same shape and quality,
scaled by the square root of the pixel ratio (``pixel_exponent`` 0.5 in the sheet). That rule
reproduces OpenAI's calculator reading for 3584x2048 high (12,329 tokens, within 4 %) and the
secondary 2K per-image prices (within 2 %); linear scaling would overshoot both by half.
Input tokens (the prompt, reference images) are not in an estimate: no source gives a way to
count them before sending, so the estimate's ``note`` says so; the charged amount prices the
``usage`` the service reports.

A third kind, :class:`TablePriceSheet` (``"kind": "table"``), lists a price per image by
quality and size, or by resolution tier (gpt-image-2-beta's per-call billing, gpt-image-1.5)::

    total = price of (quality, size or tier) x factor x n

Exchange rates are data too: a sheet prices in its own currency (USD through
``credits_per_usd``, or CNY through ``credits_per_cny`` on the gateway's formula sheet), and the
other currency comes from the dated rate in ``imgkit/data/fx.json`` (an approximation, and
labelled so), or the rate set with ``imgkit.configure(fx={"CNY": 7.12})`` (:func:`set_fx`), or a
``cny_per_usd`` the sheet itself states (a contract's rate). :func:`fx_text` says which, for
reports.

Each shipped sheet names its ``provider`` (``evolink``, ``openai``); :func:`sheet_for` finds,
for a provider's sheet, the sheet of the same provider that prices another model.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Self

from imgkit.errors import ConfigError, ValidationError

__all__ = [
    "DEFAULT_SHEET",
    "Estimate",
    "FxRate",
    "PriceSheet",
    "Sheet",
    "TablePriceSheet",
    "TokenCost",
    "TokenPriceSheet",
    "cny_per_usd",
    "estimate",
    "fx_rate",
    "fx_text",
    "get_sheet",
    "price_sheets",
    "register_price_sheet",
    "set_fx",
    "sheet_currency",
    "sheet_for",
]

DEFAULT_SHEET = "evolink-table-2026-11"


@dataclass(frozen=True, slots=True)
class PriceSheet:
    """A named, dated price list for per-image billing.

    Give exactly one of ``credits_per_usd`` and ``credits_per_cny``; the other currency is
    derived through ``cny_per_usd`` (the sheet's own rate when it states one, else
    :func:`fx_rate`'s).

    Attributes:
        name: how estimates and reports refer to the sheet.
        date: when the prices were read (ISO date).
        source: where they come from.
        base_credits: credits for one medium-quality square image.
        quality: multiplier per quality tier.
        size: multipliers for ``square`` and ``non_square`` images.
        models: the models the sheet prices.
        provider: the provider kind whose prices these are (``evolink``, ``openai``; empty
            for a sheet of your own).
        batch_discount: the share of the price a Batch run pays (None: no batch price).
    """

    name: str
    date: str
    source: str
    base_credits: float
    credits_per_usd: float | None = None
    credits_per_cny: float | None = None
    cny_per_usd: float | None = None
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
    provider: str = ""
    batch_discount: float | None = None

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
        return credits / self.credits_per_cny / cny_per_usd(self)

    def to_cny(self, credits: float) -> float:
        if self.credits_per_cny is not None:
            return credits / self.credits_per_cny
        assert self.credits_per_usd is not None
        return credits / self.credits_per_usd * cny_per_usd(self)


#: Token categories a :class:`TokenPriceSheet` prices, USD per million tokens.
TOKEN_RATES = ("text_input", "cached_text_input", "image_input", "cached_image_input", "image_output")
_RATIO_PIXELS = {"1:1": "1024x1024", "2:3": "1024x1536", "3:2": "1536x1024", "auto": "1024x1024"}
_WXH = re.compile(r"^(\d+)x(\d+)$")
_SIZE_TABLES: dict[str, dict[str, Any]] = {}


def _size_table(name: str) -> dict[str, Any]:
    """A shipped pixel table (``imgkit/data/sizes/<name>.json``), read once. The request
    module reads the same file: the table is a fact kept in one place."""
    if name not in _SIZE_TABLES:
        entry = resources.files("imgkit") / "data" / "sizes" / f"{name}.json"
        try:
            _SIZE_TABLES[name] = json.loads(entry.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"unknown pixel table {name!r}") from None
    return _SIZE_TABLES[name]


def _ratio_pixels(table: Mapping[str, Any], ratio: str, resolution: str | None) -> str | None:
    tier = (resolution or "1K").strip().upper()
    cells = table["tiers"].get(tier, {})
    if ratio in cells:
        return str(cells[ratio])
    a, _, b = ratio.partition(":")
    landscape = cells.get(f"{b}:{a}")
    if landscape is None:
        return None
    w, _, h = str(landscape).partition("x")
    return f"{h}x{w}"


def _tier_of(table: Mapping[str, Any], pixels: str) -> str:
    w, _, h = pixels.partition("x")
    count = int(w) * int(h)
    limits: Mapping[str, int] = table["tier_max_pixels"]
    for tier, most in limits.items():
        if count <= most:
            return str(tier)
    return str(list(limits)[-1])


def _key(size: Any) -> str:
    return str(size).replace(" ", "").lower().replace("×", "x")


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


class _UsdSheet:
    """What the sheets priced in USD share (token-billed and per-call tables): reading one
    from a dict, and converting credits at the sheet's own rates. Reports list them beside
    per-image sheets, so they answer the same questions (``credits_per_cny`` is None)."""

    __slots__ = ()
    _LABEL = "price sheet"
    credits_per_usd: float
    cny_per_usd: float | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{cls._LABEL}: unknown keys {sorted(unknown)}")
        values = dict(data)
        if "models" in values:
            values["models"] = tuple(values["models"])
        return cls(**values)

    @property
    def credits_per_cny(self) -> float | None:
        return None

    def to_usd(self, credits: Any) -> Any:
        return credits / self.credits_per_usd

    def to_cny(self, credits: Any) -> Any:
        return credits / self.credits_per_usd * cny_per_usd(self)


@dataclass(frozen=True, slots=True)
class TokenPriceSheet(_UsdSheet):
    """A named, dated price list for per-token billing (OpenAI's images API, the gateway's
    gpt-image-2).

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
        cny_per_usd: the sheet's own CNY per USD rate (None: :func:`fx_rate`'s).
        models: the models the sheet prices.
        provider: the provider kind whose prices these are.
        pixel_table: the shipped pixel table ratio sizes go through (None: gpt-image-1's
            three ratios).
        pixel_exponent: how tokens grow with pixels for a size not in ``output_tokens``
            (tokens of the same shape x (pixels ratio) ** exponent); None: such sizes have
            no price.
        shape_sizes: the documented size of each shape (``square``, ``landscape``,
            ``portrait``) that other sizes scale from.
        auto_size: the size ``size="auto"`` is estimated as.
        auto_quality: the quality ``quality="auto"`` is estimated as.
        batch_discount: the share of the price a Batch run pays (None: no batch price).
        estimate_note: what every estimate of this sheet should say about itself.
    """

    _LABEL = "token price sheet"

    name: str
    date: str
    source: str
    usd_per_million: Mapping[str, float]
    output_tokens: Mapping[str, Mapping[str, int]]
    credits_per_usd: float = 72.0
    cny_per_usd: float | None = None
    models: tuple[str, ...] = ("gpt-image-1",)
    kind: str = "tokens"
    fx_note: str = ""
    round_credits: int = 5
    round_usd: int = 4
    round_cny: int = 4
    provider: str = ""
    pixel_table: str | None = None
    pixel_exponent: float | None = None
    shape_sizes: Mapping[str, str] = field(default_factory=dict)
    auto_size: str | None = None
    auto_quality: str | None = None
    batch_discount: float | None = None
    estimate_note: str = ""

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
        if self.pixel_exponent is not None and not self.shape_sizes:
            raise ConfigError(f"token price sheet {self.name!r}: pixel_exponent needs shape_sizes")

    @property
    def base_credits(self) -> float:
        """Credits for one medium-quality square image, for comparison with per-image sheets."""
        return estimate(quality="medium", size="1024x1024", model=self.models[0], sheet=self).credits

    def pixels(self, size: str, resolution: str | None = None) -> str:
        """The ``WxH`` a size means on this sheet: a ratio through its pixel table at
        ``resolution``, ``auto`` as :attr:`auto_size`."""
        key = _key(size)
        if key == "auto" and self.auto_size:
            return self.auto_size
        if self.pixel_table is not None and ":" in key:
            found = _ratio_pixels(_size_table(self.pixel_table), key, resolution)
            if found is None:
                raise ValidationError("size", size, f"a ratio of the pixel table {self.pixel_table}")
            return found
        return _RATIO_PIXELS.get(key, key)

    def tokens_per_image(self, quality: str, size: str, resolution: str | None = None) -> int:
        """Output image tokens of one image; ``size`` in pixel or ratio form (with its
        ``resolution`` on a sheet with a pixel table).

        A size the sheet does not list is scaled from the documented size of the same shape
        (see the module docstring); that count is an estimate.
        """
        if quality == "auto" and self.auto_quality:
            quality = self.auto_quality
        if quality not in self.output_tokens:
            raise ValidationError("quality", quality, " | ".join(self.output_tokens))
        by_size = self.output_tokens[quality]
        key = self.pixels(size, resolution)
        if key in by_size:
            return int(by_size[key])
        match = _WXH.match(key)
        if self.pixel_exponent is None or match is None:
            raise ValidationError("size", size, f"a size priced by {self.name}: " + ", ".join(by_size))
        w, h = int(match[1]), int(match[2])
        shape = "square" if w == h else ("landscape" if w > h else "portrait")
        ref = self.shape_sizes[shape]
        rw, _, rh = ref.partition("x")
        scale = (Decimal(w * h) / Decimal(int(rw) * int(rh))) ** Decimal(str(self.pixel_exponent))
        return int((Decimal(int(by_size[ref])) * scale).to_integral_value(rounding=ROUND_HALF_UP))

    def cost(self, usage: Mapping[str, Any], *, batch: bool = False) -> TokenCost:
        """Price a response's ``usage`` (spec §9c): text and image input tokens at their
        rates, output tokens at the image output rate; a Batch run at the batch share.

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
        if batch:
            usd *= _batch_share(self)
        return TokenCost(
            usd=float(usd),
            credits=float(usd * Decimal(str(self.credits_per_usd))),
            input_tokens=text_in + image_in,
            output_tokens=output,
        )


def _batch_share(sheet: Sheet) -> Decimal:
    if sheet.batch_discount is None:
        raise ConfigError(f"price sheet {sheet.name!r} has no batch price")
    return Decimal(str(sheet.batch_discount))


@dataclass(frozen=True, slots=True)
class TablePriceSheet(_UsdSheet):
    """A named, dated list of prices per image: by quality and size (``by="size"``), or by
    resolution tier (``by="tier"``, the gateway's per-call gpt-image-2-beta billing).

    A tier comes from ``resolution`` for a ratio size (1K when not given), from the pixel
    count for ``WxH`` (the pixel table's tier limits), and is 1K for ``auto``.

    Attributes:
        name: how estimates and reports refer to the sheet.
        date: when the prices were read (ISO date).
        source: where they come from.
        prices: quality (``*`` for any) -> size or tier -> price of one image.
        unit: what the prices are in, ``usd`` or ``credits``.
        by: ``size`` or ``tier``.
        factor: applied to every listed price (a derived sheet, e.g. 0.9 for a reseller's
            discount); the source says why.
        credits_per_usd: credits per USD.
        cny_per_usd: the sheet's own CNY per USD rate (None: :func:`fx_rate`'s).
        models: the models the sheet prices.
        provider: the provider kind whose prices these are.
        pixel_table: the shipped pixel table that gives tier limits and ratio pixels.
        batch_discount: the share of the price a Batch run pays (None: no batch price).
        estimate_note: what every estimate of this sheet should say about itself.
    """

    _LABEL = "table price sheet"

    name: str
    date: str
    source: str
    prices: Mapping[str, Mapping[str, float]]
    unit: str = "usd"
    by: str = "size"
    factor: float = 1.0
    credits_per_usd: float = 72.0
    cny_per_usd: float | None = None
    models: tuple[str, ...] = ()
    kind: str = "table"
    provider: str = ""
    pixel_table: str | None = None
    batch_discount: float | None = None
    estimate_note: str = ""
    fx_note: str = ""
    round_credits: int = 5
    round_usd: int = 4
    round_cny: int = 4

    def __post_init__(self) -> None:
        if self.kind != "table":
            raise ConfigError(f"table price sheet {self.name!r}: kind must be 'table'")
        if self.unit not in ("usd", "credits"):
            raise ConfigError(f"table price sheet {self.name!r}: unit must be usd or credits")
        if self.by not in ("size", "tier"):
            raise ConfigError(f"table price sheet {self.name!r}: by must be size or tier")
        if self.by == "tier" and self.pixel_table is None:
            raise ConfigError(f"table price sheet {self.name!r}: by tier needs a pixel_table")
        if not self.prices or any(not row for row in self.prices.values()):
            raise ConfigError(f"table price sheet {self.name!r}: prices needs a price per quality and size")
        if self.credits_per_usd <= 0:
            raise ConfigError(f"table price sheet {self.name!r}: credits_per_usd must be positive")

    @property
    def base_credits(self) -> float:
        """Credits for one medium-quality square image, for comparison with other sheets."""
        return estimate(quality="medium", size="1:1", model=self.models[0], sheet=self).credits

    def key(self, size: str, resolution: str | None = None) -> str:
        """The size or tier a request is priced by."""
        text = _key(size)
        if self.by == "size":
            return _RATIO_PIXELS.get(text, text)
        assert self.pixel_table is not None
        table = _size_table(self.pixel_table)
        if resolution is not None:
            return resolution.strip().upper()
        if text == "auto" or ":" in text:
            return "1K"
        if _WXH.match(text) is None:
            raise ValidationError("size", size, f"auto, a ratio or WxH for {self.name}")
        return _tier_of(table, text)

    def price(self, quality: str, size: str, resolution: str | None = None) -> Decimal:
        """The listed price of one image (in :attr:`unit`), with :attr:`factor` applied."""
        row = self.prices.get(quality, self.prices.get("*"))
        if row is None:
            raise ValidationError("quality", quality, " | ".join(self.prices))
        key = self.key(size, resolution)
        if key not in row:
            raise ValidationError("size", size, f"a {self.by} priced by {self.name}: " + ", ".join(row))
        return Decimal(str(row[key])) * Decimal(str(self.factor))


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))


#: Any kind of price sheet.
Sheet = PriceSheet | TokenPriceSheet | TablePriceSheet


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
        output_tokens: the estimated output image tokens of all images (token sheets).
        note: what the estimate leaves out or assumes (input tokens, ``auto`` sizes).
        batch: whether it is the Batch price.
    """

    credits: float
    usd: float
    cny: float
    sheet: str
    per_image_credits: float
    formula: str
    output_tokens: int | None = None
    note: str = ""
    batch: bool = False

    def __str__(self) -> str:
        text = f"{self.credits:g} credits (${self.usd:.4f}, ¥{self.cny:.4f}; {self.sheet})"
        return f"{text}; {self.note}" if self.note else text


def _round(value: Decimal, places: int) -> float:
    return float(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


_REGISTRY: dict[str, Sheet] = {}
_SHIPPED: list[str] = []


def _from_dict(data: Mapping[str, Any]) -> Sheet:
    if data.get("kind") == "tokens":
        return TokenPriceSheet.from_dict(data)
    if data.get("kind") == "table":
        return TablePriceSheet.from_dict(data)
    return PriceSheet.from_dict(data)


def _load_shipped() -> None:
    if _REGISTRY:
        return
    folder = resources.files("imgkit") / "data" / "prices"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            sheet = _from_dict(json.loads(entry.read_text("utf-8")))
            _REGISTRY[sheet.name] = sheet
            _SHIPPED.append(sheet.name)


def price_sheets() -> dict[str, Sheet]:
    """All known price sheets by name: the shipped ones and any registered."""
    _load_shipped()
    return dict(_REGISTRY)


def _check_fields(data: object) -> Mapping[str, Any]:
    """``data`` when it is a mapping with every field its kind of sheet requires; a
    ConfigError listing the required fields otherwise (not a TypeError about ``__init__``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            "price sheet: give a PriceSheet, TokenPriceSheet or TablePriceSheet, a mapping of "
            f"its fields or a path to a JSON file, not {type(data).__name__}"
        )
    kinds: dict[object, type[Sheet]] = {"tokens": TokenPriceSheet, "table": TablePriceSheet}
    cls = kinds.get(data.get("kind"), PriceSheet)
    required = [
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        either = " and one of credits_per_usd, credits_per_cny" if cls is PriceSheet else ""
        label = getattr(cls, "_LABEL", "price sheet")
        named = f" {data['name']!r}" if isinstance(data.get("name"), str) else ""
        raise ConfigError(
            f"{label}{named} is missing {', '.join(missing)}; "
            f"required fields: {', '.join(required)}{either}"
        )
    return data


def register_price_sheet(sheet: Sheet | Mapping[str, Any] | str | Path) -> Sheet:
    """Add (or replace) a price sheet, e.g. your own contract price.

    Args:
        sheet: a PriceSheet, TokenPriceSheet or TablePriceSheet, a mapping of its fields
            (``"kind": "tokens"`` or ``"table"`` for those), or a path to a JSON file.

    Example:
        >>> register_price_sheet({"name": "my-contract", "date": "2026-11-01",
        ...     "source": "contract #12", "base_credits": 2.0, "credits_per_usd": 80})
        PriceSheet(name='my-contract', ...)
    """
    _load_shipped()
    if isinstance(sheet, str | Path):
        sheet = _from_dict(_check_fields(json.loads(Path(sheet).read_text("utf-8"))))
    elif not isinstance(sheet, PriceSheet | TokenPriceSheet | TablePriceSheet):
        sheet = _from_dict(_check_fields(sheet))
    _REGISTRY[sheet.name] = sheet
    return sheet


def get_sheet(name: str | Sheet | None = None) -> Sheet:
    """The sheet called ``name`` (the default sheet when None)."""
    if isinstance(name, PriceSheet | TokenPriceSheet | TablePriceSheet):
        return name
    sheets = price_sheets()
    key = name or DEFAULT_SHEET
    try:
        return sheets[key]
    except KeyError:
        raise ConfigError(
            f"unknown price sheet {key!r}; known: {', '.join(sorted(sheets))}"
        ) from None


def _no_price(chosen: Sheet, model: str) -> ConfigError:
    return ConfigError(
        f"price sheet {chosen.name!r} has no price for model {model!r} "
        f"(it prices {', '.join(chosen.models)}); register a sheet that does"
    )


def sheet_for(model: str, sheet: str | Sheet | None = None) -> Sheet:
    """The sheet that prices ``model`` on the provider of ``sheet``: ``sheet`` itself when
    it lists the model, else the newest shipped sheet of the same provider that does.

    A provider is configured with one sheet (``evolink-table-2026-11`` for the gateway,
    ``openai-tokens-2026-11`` for OpenAI); this is how its other models get their price.

    Example:
        >>> sheet_for("gpt-image-2", "evolink-table-2026-11").name
        'evolink-gpt-image-2-tokens-2026-12'
    """
    chosen = get_sheet(sheet)
    if model in chosen.models:
        return chosen
    if chosen.provider:
        sheets = price_sheets()
        found = [
            sheets[name] for name in _SHIPPED
            if name in sheets and sheets[name].provider == chosen.provider and model in sheets[name].models
        ]
        if found:
            return max(found, key=lambda s: s.date)
    raise _no_price(chosen, model)


_SQUARE = {"1:1", "1024x1024", "auto"}


def estimate(
    *,
    quality: str = "medium",
    size: str = "1024x1024",
    n: int = 1,
    model: str = "gpt-image-1",
    sheet: str | Sheet | None = None,
    resolution: str | None = None,
    images: int = 0,
    batch: bool = False,
) -> Estimate:
    """Estimate the cost of a request with a price sheet.

    Args:
        quality: low, medium or high (``auto`` on sheets that say what it costs).
        size: the size in either form; on a per-image sheet any size other than square
            costs the non-square rate.
        n: number of images.
        model: the model (the sheet must price it; see :func:`sheet_for`).
        sheet: a sheet or its name; the default sheet when None.
        resolution: ``1K``, ``2K`` or ``4K`` for a ratio size on gpt-image-2.
        images: the number of reference images (their input tokens are named in the note).
        batch: the Batch price (OpenAI: 50 %).

    Example:
        >>> estimate(quality="high", size="3:2", n=2).credits
        27.80967
        >>> estimate(model="gpt-image-2", size="16:9", resolution="2K", quality="high",
        ...          sheet="evolink-gpt-image-2-tokens-2026-12").usd
        0.2422
    """
    chosen = get_sheet(sheet)
    if model not in chosen.models:
        raise _no_price(chosen, model)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError("n", n, "a positive integer")
    if isinstance(images, bool) or not isinstance(images, int) or images < 0:
        raise ValidationError("images", images, "a count of reference images, 0 or more")
    share = _batch_share(chosen) if batch else Decimal(1)
    if isinstance(chosen, TokenPriceSheet):
        return _estimate_tokens(
            chosen, quality=quality, size=size, n=n, resolution=resolution, images=images, share=share
        )
    if isinstance(chosen, TablePriceSheet):
        return _estimate_table(chosen, quality=quality, size=size, n=n, resolution=resolution, share=share)
    if quality not in chosen.quality:
        raise ValidationError("quality", quality, " | ".join(chosen.quality))
    square = _key(size) in _SQUARE
    size_key = "square" if square else "non_square"
    q = Decimal(str(chosen.quality[quality]))
    s = Decimal(str(chosen.size[size_key]))
    per_image = Decimal(str(chosen.base_credits)) * q * s * share
    total = per_image * n
    if chosen.credits_per_usd is not None:
        usd = total / Decimal(str(chosen.credits_per_usd))
        cny = usd * Decimal(str(cny_per_usd(chosen)))
    else:
        assert chosen.credits_per_cny is not None
        cny = total / Decimal(str(chosen.credits_per_cny))
        usd = cny / Decimal(str(cny_per_usd(chosen)))
    formula = (
        f"{chosen.base_credits:g} base x {q:g} ({quality}) x {s:g} "
        f"({'square' if square else 'non-square'}){_share_text(share)} x {n} = "
        f"{_round(total, chosen.round_credits):.10g} credits"
    )
    return Estimate(
        credits=_round(total, chosen.round_credits),
        usd=_round(usd, chosen.round_usd),
        cny=_round(cny, chosen.round_cny),
        sheet=chosen.name,
        per_image_credits=_round(per_image, chosen.round_credits),
        formula=formula,
        batch=batch,
    )


def _share_text(share: Decimal) -> str:
    return "" if share == 1 else f" x {share:g} (batch)"


def _estimate_tokens(
    sheet: TokenPriceSheet, *, quality: str, size: str, n: int, resolution: str | None, images: int, share: Decimal
) -> Estimate:
    tokens = sheet.tokens_per_image(quality, size, resolution)
    rate = Decimal(str(sheet.usd_per_million["image_output"]))
    per_image_usd = Decimal(tokens) * rate / Decimal(1_000_000) * share
    usd = per_image_usd * n
    per_rate = Decimal(str(sheet.credits_per_usd))
    credits = usd * per_rate
    cny = usd * Decimal(str(cny_per_usd(sheet)))
    pixels = sheet.pixels(size, resolution)
    shown = size if pixels == _key(size) else f"{size} = {pixels}"
    formula = (
        f"{tokens} output tokens ({quality}, {shown}) x ${float(rate):g}/1M{_share_text(share)} x {n} = "
        f"${_round(usd, sheet.round_usd):g} = {_round(credits, sheet.round_credits):g} credits"
    )
    notes = [sheet.estimate_note] if sheet.estimate_note else []
    if images:
        notes.append(f"excludes the input tokens of {images} reference image(s): no source says how to count them")
    return Estimate(
        credits=_round(credits, sheet.round_credits),
        usd=_round(usd, sheet.round_usd),
        cny=_round(cny, sheet.round_cny),
        sheet=sheet.name,
        per_image_credits=_round(per_image_usd * per_rate, sheet.round_credits),
        formula=formula,
        output_tokens=tokens * n,
        note="; ".join(notes),
        batch=share != 1,
    )


def _estimate_table(
    sheet: TablePriceSheet, *, quality: str, size: str, n: int, resolution: str | None, share: Decimal
) -> Estimate:
    listed = sheet.price(quality, size, resolution)
    per_rate = Decimal(str(sheet.credits_per_usd))
    per_image_credits = listed * share if sheet.unit == "credits" else listed * per_rate * share
    credits = per_image_credits * n
    usd = credits / per_rate
    cny = usd * Decimal(str(cny_per_usd(sheet)))
    key = sheet.key(size, resolution)
    factor = "" if sheet.factor == 1 else f" x {sheet.factor:g}"
    formula = (
        f"{listed / Decimal(str(sheet.factor)):g} {sheet.unit} ({quality}, {key}){factor}{_share_text(share)} x {n} = "
        f"{_round(credits, sheet.round_credits):g} credits"
    )
    return Estimate(
        credits=_round(credits, sheet.round_credits),
        usd=_round(usd, sheet.round_usd),
        cny=_round(cny, sheet.round_cny),
        sheet=sheet.name,
        per_image_credits=_round(per_image_credits, sheet.round_credits),
        formula=formula,
        note=sheet.estimate_note,
        batch=share != 1,
    )


# --- exchange rates -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FxRate:
    """The CNY per USD rate that converts between a sheet's own currency and the other one.

    Attributes:
        cny_per_usd: yuan per US dollar.
        date: the day the rate is for (ISO date).
        source: where it comes from.
        approximate: True for the shipped rate (a round figure, not a quote).
        user_set: True when set with :func:`set_fx` (``imgkit.configure(fx=...)``).
    """

    cny_per_usd: float
    date: str
    source: str
    approximate: bool = True
    user_set: bool = False

    def __str__(self) -> str:
        origin = "set with imgkit.configure(fx=...)" if self.user_set else "imgkit/data/fx.json"
        kind = "approximate" if self.approximate else "as given"
        return f"{self.cny_per_usd:g} CNY per USD ({kind}; {origin}, dated {self.date})"


_FX: dict[str, FxRate] = {}


def _shipped_fx() -> FxRate:
    if "shipped" not in _FX:
        data = json.loads((resources.files("imgkit") / "data" / "fx.json").read_text("utf-8"))
        _FX["shipped"] = FxRate(
            cny_per_usd=float(data["cny_per_usd"]), date=str(data["date"]), source=str(data["source"]),
            approximate=bool(data.get("approximate", True)),
        )
    return _FX["shipped"]


def fx_rate() -> FxRate:
    """The CNY per USD rate in use: the one set with :func:`set_fx`, else the shipped one.

    Example:
        >>> str(fx_rate())
        '7.1 CNY per USD (approximate; imgkit/data/fx.json, dated 2026-11-24)'
    """
    return _FX.get("user") or _shipped_fx()


_FX_ALLOWED = "a mapping like {'CNY': 7.12} (CNY per USD, a number above 0), with optional 'date' (ISO) and 'source'"


def set_fx(fx: Mapping[str, Any] | FxRate | None) -> FxRate:
    """Set the CNY per USD rate estimates and reports use (process-wide, like a registered
    price sheet); None goes back to the shipped rate. ``imgkit.configure(fx=...)`` calls it.

    Args:
        fx: ``{"CNY": 7.12}``, optionally with ``"date"`` (the day of the rate, ISO; today
            when left out) and ``"source"`` (where it comes from); or an :class:`FxRate`.

    Example:
        >>> set_fx({"CNY": 7.12, "date": "2026-12-01", "source": "our bank's rate"}).cny_per_usd
        7.12
    """
    import datetime as dt
    import math

    if fx is None:
        _FX.pop("user", None)
        return fx_rate()
    if isinstance(fx, FxRate):
        rate = dataclasses.replace(fx, user_set=True)
    else:
        if not isinstance(fx, Mapping) or "CNY" not in fx:
            raise ValidationError("fx", fx, _FX_ALLOWED)
        unknown = sorted(set(fx) - {"CNY", "date", "source"})
        if unknown:
            raise ValidationError("fx", fx, _FX_ALLOWED, hint=f"unknown key {unknown[0]!r}")
        value = fx["CNY"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ValidationError("fx['CNY']", value, "CNY per USD, a number above 0, such as 7.12")
        date = fx.get("date") or dt.datetime.now(dt.UTC).date().isoformat()
        try:
            dt.date.fromisoformat(str(date))
        except ValueError:
            raise ValidationError("fx['date']", date, "an ISO date such as 2026-12-01") from None
        rate = FxRate(
            cny_per_usd=float(value), date=str(date), source=str(fx.get("source") or "set by the user"),
            approximate=False, user_set=True,
        )
    _FX["user"] = rate
    return rate


def cny_per_usd(sheet: Sheet | _UsdSheet) -> float:
    """The CNY per USD rate ``sheet``'s conversions use: its own when it states one, else
    :func:`fx_rate`'s."""
    own = sheet.cny_per_usd
    return float(own) if own is not None else fx_rate().cny_per_usd


def sheet_currency(sheet: Sheet) -> str:
    """The currency ``sheet`` prices in (``"USD"`` or ``"CNY"``); the other is converted."""
    return "CNY" if sheet.credits_per_cny is not None else "USD"


def fx_text(sheet: Sheet) -> str:
    """How ``sheet``'s credits become USD and CNY, in words, for reports: its own rate, and
    the exchange rate for the other currency with its date and whether it is approximate.

    Example:
        >>> fx_text(get_sheet("evolink-formula-2026-11"))
        "10 credits per CNY (the sheet's own); USD at 7.1 CNY per USD (approximate, shipped rate of 2026-11-24)"
    """
    own = sheet_currency(sheet)
    per = sheet.credits_per_cny if own == "CNY" else sheet.credits_per_usd
    other = "USD" if own == "CNY" else "CNY"
    own_rate = sheet.cny_per_usd
    if own_rate is None:
        rate = fx_rate()
        whose = "approximate" if rate.approximate else "as given"
        origin = "set" if rate.user_set else "shipped"
        cross = f"{rate.cny_per_usd:g} CNY per USD ({whose}, {origin} rate of {rate.date})"
    else:
        cross = f"{own_rate:g} CNY per USD (the sheet's own)"
    return f"{per:g} credits per {own} (the sheet's own); {other} at {cross}"
