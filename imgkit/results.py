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
    """What a run cost: the estimate (with its price sheet) and what the service reserved or
    charged."""

    credits: float | None
    usd: float | None
    cny: float | None
    sheet: str | None
    credits_reserved: float | None
    credits_charged: float | None

    def __str__(self) -> str:
        if self.credits is None:
            return "cost unknown"
        text = f"{self.credits:g} credits (${self.usd:.4f}, ¥{self.cny:.4f}; {self.sheet})"
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
        return Cost(r.est_credits, r.est_usd, r.est_cny, r.price_sheet, r.credits_reserved, r.credits_charged)

    @property
    def latency_s(self) -> float | None:
        return self.record.latency_s

    def __repr__(self) -> str:
        r = self.record
        latency = f"{r.latency_s:.1f}s" if r.latency_s is not None else "-"
        return (
            f"<GenerationResult {r.run_id} {r.status} via {r.provider} {r.quality} {r.size} n={r.n} "
            f"images={len(r.files)} cost={self.cost.credits} credits latency={latency}>"
        )

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
        usd = f" (${r.est_usd:.4f})" if r.est_usd is not None else ""
        status = html.escape(r.status)
        if r.error_code:
            status += f": {html.escape(r.error_code)}"
        fallback = ""
        if r.providers_tried:
            tried = ", ".join(f"{t.get('provider')}: {t.get('reason')}" for t in r.providers_tried)
            fallback = f" (after {html.escape(tried)})"
        caption = (
            f"<b>{html.escape(r.prompt[:200])}</b><br>{html.escape(r.size)} · {html.escape(r.quality)}"
            f" · n={r.n} · {r.est_credits if r.est_credits is not None else '?'} credits{usd}"
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
