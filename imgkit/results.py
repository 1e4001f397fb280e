"""What runs return: a run's result and cost, a sweep's plan and its results.

Values only: they hold records from the ledger and render them (``__repr__`` for scripts,
``_repr_html_`` for notebooks); nothing here sends a request.

Example:
    >>> res = imgkit.generate("a red fox", quality="low")
    >>> res.paths, res.cost, res.record.status
"""

from __future__ import annotations

import base64
import errno
import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from imgkit.pricing import Estimate
from imgkit.request import ImageRequest, RunRecord

if TYPE_CHECKING:
    import pandas as pd
    from PIL.Image import Image

__all__ = ["Cost", "Description", "GenerationResult", "SweepPlan", "SweepResult"]


@dataclass(frozen=True, slots=True)
class Cost:
    """What a run cost: the estimate (with its price sheet), what the service reserved or
    charged, and what counts (the rules of :mod:`imgkit.costs`, as the budget and reports
    count it).

    Attributes:
        credits, usd, cny: the estimate made before submitting (None: the model had no price).
        sheet: the price sheet of the estimate and of the conversions.
        credits_reserved: what the service reserved on accepting the task.
        credits_charged: what the service reported as charged.
        basis: the cost rule that applied: ``charged``, ``reserved``, ``estimate``,
            ``not downloaded``, ``may have cost``, ``failed`` or ``no task``.
        spent: credits that count as spent.
        may_have_cost: credits the run may have cost beyond ``spent`` (an unknown run).

    ``str(cost)`` leads with what counts, labelled, then the estimate:
    ``0.86508 credits charged ($0.0120, ¥0.0853; openai-...), estimated 0.432``.
    """

    credits: float | None
    usd: float | None
    cny: float | None
    sheet: str | None
    credits_reserved: float | None
    credits_charged: float | None
    basis: str = "estimate"
    spent: float = 0.0
    may_have_cost: float = 0.0

    @classmethod
    def of(cls, record: RunRecord) -> Cost:
        """The cost of ``record``."""
        from imgkit.costs import cost_of

        counted = cost_of(record)
        return cls(record.est_credits, record.est_usd, record.est_cny, record.price_sheet, record.credits_reserved,
                   record.credits_charged, counted.basis, counted.spent, counted.may_have_cost)

    def _money(self, credits: float) -> str:
        """`` (USD, CNY; sheet)`` for ``credits``, with a leading space ("" when there is
        nothing to say): converted with the run's sheet (the estimate's own figures when the
        sheet is not registered here)."""
        from imgkit.errors import ConfigError
        from imgkit.pricing import get_sheet

        usd = cny = None
        if credits == self.credits:
            usd, cny = self.usd, self.cny
        elif self.sheet is not None:
            try:
                sheet = get_sheet(self.sheet)
                usd, cny = float(sheet.to_usd(credits)), float(sheet.to_cny(credits))
            except (ConfigError, KeyError):
                pass
        money = f"${usd:.4f}, ¥{cny:.4f}; " if usd is not None and cny is not None else ""
        return f" ({money}{self.sheet})" if self.sheet else f" ({money.removesuffix('; ')})" if money else ""

    def __str__(self) -> str:
        estimated = "no estimate" if self.credits is None else f"estimated {self.credits:g}"
        if self.basis == "charged":
            return f"{self.spent:g} credits charged{self._money(self.spent)}, {estimated}"
        if self.basis in ("reserved", "not downloaded"):
            what = "reserved by the service" + (" for images not downloaded" if self.basis == "not downloaded" else "")
            return f"{self.spent:g} credits {what}{self._money(self.spent)}, {estimated}"
        if self.basis == "may have cost":
            return (f"may have cost {self.may_have_cost:g} credits{self._money(self.may_have_cost)} "
                    "(the service did not say whether it ran the task)")
        if self.basis in ("failed", "no task"):
            return f"0 credits (failed, nothing charged), {estimated}"
        if self.credits is None:
            return "cost unknown (no estimate, nothing reported yet)"
        text = f"{self.credits:g} credits estimated{self._money(self.credits)}"
        if self.credits_reserved is not None:
            text += f", service reserved {self.credits_reserved:g}"
        return text


class GenerationResult:
    """The outcome of one run: its images, files, cost and ledger record.

    In a notebook it displays as a gallery of thumbnails with the prompt, size, tier, cost
    and latency.
    """

    def __init__(self, record: RunRecord, data_dir: Path) -> None:
        self.record = record
        self._data_dir = data_dir
        self._images: list[Image] | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def paths(self) -> list[Path]:
        """The image files on disk."""
        return [self._data_dir / p for p in self.record.files]

    @property
    def thumbnails(self) -> list[Path]:
        return [self._data_dir / p for p in self.record.thumbs]

    @property
    def images(self) -> list[Image]:
        """The images as PIL images (loaded on first use)."""
        if self._images is None:
            from PIL import Image as PILImage

            loaded = []
            for path in self.paths:
                try:
                    with PILImage.open(path) as im:
                        im.load()
                        loaded.append(im.copy())
                except FileNotFoundError:
                    raise FileNotFoundError(
                        errno.ENOENT,
                        f"run {self.run_id}: an image of this run is no longer on disk (deleted, or made on "
                        "another machine or under another IMGKIT_HOME); the ledger still has the run",
                        str(path),
                    ) from None
            self._images = loaded
        return self._images

    @property
    def cost(self) -> Cost:
        r = self.record
        return Cost.of(r)

    @property
    def latency_s(self) -> float | None:
        return self.record.latency_s

    def __repr__(self) -> str:
        r = self.record
        latency = f"{r.latency_s:.1f}s" if r.latency_s is not None else "-"
        return (
            f"<GenerationResult {r.run_id} {r.status} via {r.provider} {r.quality} {r.size} n={r.n} "
            f"images={len(r.files)} cost={self._cost_words()} latency={latency}>"
        )

    def _cost_words(self) -> str:
        """What counts, in a few words: ``0.86508 credits charged``, ``0.432 credits
        estimated``, ``may have cost 0.432 credits``."""
        cost = self.cost
        if cost.basis == "may have cost":
            return f"may have cost {cost.may_have_cost:g} credits"
        if cost.basis in ("failed", "no task"):
            return "0 credits (nothing charged)"
        if cost.basis == "estimate":
            return "? credits" if cost.credits is None else f"{cost.credits:g} credits estimated"
        label = {"charged": "charged", "reserved": "reserved", "not downloaded": "reserved, not downloaded"}
        return f"{cost.spent:g} credits {label.get(cost.basis, cost.basis)}"

    def _repr_html_(self) -> str:
        r = self.record
        cells = []
        for thumb in self.thumbnails:
            try:
                data = base64.b64encode(thumb.read_bytes()).decode()
            except OSError:
                continue
            cells.append(
                f'<img src="data:image/jpeg;base64,{data}" alt="{html.escape(r.prompt[:80])}" '
                'style="max-width:200px;max-height:200px;margin:2px;border-radius:4px">'
            )
        latency = f"{r.latency_s:.1f} s" if r.latency_s is not None else "-"
        status = html.escape(r.status)
        if r.error_code:
            status += f": {html.escape(r.error_code)}"
        fallback = ""
        if r.providers_tried:
            tried = ", ".join(f"{t.get('provider')}: {t.get('reason')}" for t in r.providers_tried)
            fallback = f" (after {html.escape(tried)})"
        caption = (
            f"<b>{html.escape(r.prompt[:200])}</b><br>{html.escape(r.size)} · {html.escape(r.quality)}"
            f" · n={r.n} · {html.escape(str(self.cost))}"
            f" · {latency} · {status} · via {html.escape(r.provider)}{fallback}"
            f" · <code>{html.escape(r.run_id)}</code>"
        )
        return f'<div class="imgkit-result"><div>{"".join(cells)}</div><div style="font-size:90%">{caption}</div></div>'


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """The runs a sweep will make and what they are estimated to cost, before anything is
    sent."""

    requests: tuple[ImageRequest, ...]
    estimates: tuple[Estimate | None, ...]
    sheet: str

    @property
    def n_runs(self) -> int:
        return len(self.requests)

    @property
    def n_images(self) -> int:
        return sum(r.n for r in self.requests)

    def _total(self, attr: str) -> float:
        return round(float(sum(getattr(e, attr) for e in self.estimates if e is not None)), 5)

    @property
    def credits(self) -> float:
        return self._total("credits")

    @property
    def usd(self) -> float:
        return self._total("usd")

    @property
    def cny(self) -> float:
        return self._total("cny")

    def __repr__(self) -> str:
        # The requests themselves would fill a screen (and a saved notebook).
        return f"<SweepPlan {str(self).removeprefix('sweep: ')}>"

    def __str__(self) -> str:
        unpriced = sum(e is None for e in self.estimates)
        text = (
            f"sweep: {self.n_runs} runs, {self.n_images} images, estimated {self.credits:.10g} credits "
            f"(${self.usd:.4f}, ¥{self.cny:.4f}; price sheet {self.sheet})"
        )
        if unpriced:
            text += f"; {unpriced} runs have no price on this sheet"
        return text

    def _repr_html_(self) -> str:
        return f"<p><b>{html.escape(str(self))}</b></p>"


class _HasRuns(Protocol):
    """Whatever holds the ledger a sweep wrote to (a Session)."""

    def runs(self) -> pd.DataFrame: ...


class SweepResult:
    """The runs of a sweep: completed, failed and those the budget refused (never sent)."""

    def __init__(
        self,
        plan: SweepPlan,
        sweep_id: str,
        results: list[GenerationResult],
        refused: list[tuple[ImageRequest, str]],
        session: _HasRuns,
    ) -> None:
        self.plan = plan
        self.sweep_id = sweep_id
        self.results = results
        self.refused = refused
        self._session = session

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.results]

    @property
    def completed(self) -> list[GenerationResult]:
        return [r for r in self.results if r.status == "completed"]

    @property
    def failed(self) -> list[GenerationResult]:
        return [r for r in self.results if r.status != "completed"]

    def runs(self) -> pd.DataFrame:
        """This sweep's rows of the ledger."""
        df = self._session.runs()
        return df[df["run_id"].isin(self.run_ids)].reset_index(drop=True)

    def __repr__(self) -> str:
        return (
            f"<SweepResult {self.sweep_id}: {len(self.completed)} completed, {len(self.failed)} failed "
            f"or unknown, {len(self.refused)} refused by the budget>"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(r.record.prompt[:60])}</td><td>{r.record.quality}</td><td>{r.record.size}</td>"
            f"<td>{html.escape(r.record.provider)}</td>"
            f"<td>{r.status}</td><td>{r.record.est_credits if r.record.est_credits is not None else '-'}</td>"
            f"<td>{'-' if r.latency_s is None else f'{r.latency_s:.1f}'}</td></tr>"
            for r in self.results
        )
        head = (
            "<tr><th>prompt</th><th>quality</th><th>size</th><th>provider</th><th>status</th><th>est. credits</th>"
            "<th>latency s</th></tr>"
        )
        return f"<p>{html.escape(repr(self))}</p><table>{head}{rows}</table>"


class Description(str):
    """What a session is connected to, as :meth:`Session.describe` returns it: a plain string
    (one line, ``where; price sheet ...; data ...``) that prints without quotes in a script or
    a notebook and renders as a small table in a notebook."""

    where: str
    price_sheet: str
    data_dir: str
    model: str | None

    def __new__(cls, where: str, price_sheet: str, data_dir: str, model: str | None = None) -> Description:
        # The model is named only when it is not gpt-image-1, the default of runs naming none.
        shown = f"; model {model}" if model not in (None, "gpt-image-1") else ""
        self = super().__new__(cls, f"{where}{shown}; price sheet {price_sheet}; data {data_dir}")
        self.where, self.price_sheet, self.data_dir, self.model = where, price_sheet, data_dir, model
        return self

    def __getnewargs__(self) -> tuple[str, str, str, str | None]:  # type: ignore[override]
        return self.where, self.price_sheet, self.data_dir, self.model

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        # IPython prints str subclasses quoted unless told otherwise.
        printer.text(str(self))  # type: ignore[attr-defined]

    def _repr_html_(self) -> str:
        rows = (("connected to", self.where), ("model", self.model or "gpt-image-1"),
                ("price sheet", self.price_sheet), ("data", self.data_dir))
        cells = "".join(
            f'<tr><th style="text-align:left">{name}</th><td style="text-align:left">{html.escape(value)}</td></tr>'
            for name, value in rows
        )
        return f'<table class="imgkit-describe">{cells}</table>'
