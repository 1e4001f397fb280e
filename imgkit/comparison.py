"""Quality tiers and models side by side: a grid of prompts x tiers (x models) with each
run's cost and latency.

:func:`compare` reuses completed runs from the ledger where it can (when their files are
still on disk) and generates the rest with :meth:`~imgkit.Session.sweep`, one per model
(run at once; each states its cost, and the total is asked about once, above the session's
threshold).
:func:`tier_value` answers "is high worth 3.91x?" from the blind picks of :func:`imgkit.rate`.

The figure is a plain :class:`matplotlib.figure.Figure` on an Agg canvas (no pyplot state,
nothing shown); matplotlib is imported on first use, so ``import imgkit`` stays light.

Example:
    >>> cmp = imgkit.compare(["a red fox in the snow", "a lighthouse at dusk"])
    >>> cmp                       # in a notebook: the grid
    >>> fig, runs = cmp           # or take it apart
    >>> fig.savefig("tiers.png")
    >>> imgkit.compare(["a red fox"], models=["gpt-image-1", "gpt-image-2"])   # a row per model
"""

from __future__ import annotations

import asyncio
import io
import math
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgkit import analysis
from imgkit._loop import LOOP
from imgkit.config import resolve_model
from imgkit.errors import ValidationError
from imgkit.request import MODELS, check_tags
from imgkit.results import SweepPlan, SweepResult
from imgkit.session import Session, get_session
from imgkit.store import images_elsewhere

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Comparison", "compare", "tier_value"]

#: Figure width in inches: about a notebook's width at its default 100 dpi.
_FIG_WIDTH = 10.0
_MAX_CELL_WIDTH = 3.4
#: Images of one run drawn side by side in a cell; more are counted in the caption.
_MAX_IMAGES = 4


@dataclass(frozen=True, slots=True)
class Comparison:
    """A grid of prompts x tiers (x models) and the runs in it.

    Unpacks as ``figure, runs``. In a notebook it displays as the figure (PNG).

    Attributes:
        figure: the grid; one block per prompt, in it one row per model and one column per
            tier. Save it with ``figure.savefig``.
        runs: one ledger row per cell that has a run, in grid order (prompt by prompt, model
            by model, tiers in the order asked), with a ``reused`` column: True when the run
            came from the ledger rather than being generated for this comparison.
        prompts: the prompts.
        qualities: the columns.
        models: the models compared (one row each).
    """

    figure: Figure
    runs: pd.DataFrame
    prompts: tuple[str, ...]
    qualities: tuple[str, ...]
    models: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.figure, self.runs))

    def __repr__(self) -> str:
        reused = int(self.runs["reused"].sum()) if len(self.runs) else 0
        models = f"{len(self.models)} model(s) x " if len(self.models) > 1 else ""
        return (
            f"<Comparison {len(self.prompts)} prompt(s) x {models}{len(self.qualities)} tier(s): "
            f"{len(self.runs)} runs, {reused} reused from the ledger, {len(self.runs) - reused} new>"
        )

    def _repr_jpeg_(self) -> bytes:
        # JPEG, not PNG: the grid is mostly photographs, which PNG stores at 10x the size,
        # and every byte here is saved into the notebook: at 72 dpi a 3 x 3 grid is about
        # 70 KB, with tiles about as large as the ledger's thumbnails. ``figure.savefig`` at any
        # dpi gives the full detail.
        buf = io.BytesIO()
        options = {"quality": 72, "optimize": True, "progressive": True}
        self.figure.savefig(buf, format="jpeg", dpi=72, pil_kwargs=options)
        return buf.getvalue()


#: A grid cell's run, by prompt, model and tier.
_Key = tuple[str, str, str]


def compare(
    prompts: str | Iterable[str],
    *,
    qualities: str | Iterable[str] = ("low", "medium", "high"),
    size: str = "1:1",
    n: int = 1,
    reuse: bool = True,
    session: Session | None = None,
    tags: str | Iterable[str] = (),
    model: str | None = None,
    models: str | Iterable[str] | None = None,
    confirm: bool | None = None,
    progress: bool = True,
    full: bool = False,
) -> Comparison:
    """Show prompts x quality tiers side by side, with the cost and latency of each run; with
    ``models``, one row per model as well.

    Each cell is the newest completed run in the ledger with the same prompt, tier, size and
    model and at least ``n`` images (text-to-image, default resolution and background, every
    file still on disk), unless ``reuse=False``; what is missing is generated with
    :meth:`Session.sweep`, one per model, run at once; each states its cost, and the total is
    asked about once, above the session's ``sweep_threshold`` (or budget), unless
    ``confirm=True``. A tier a model does not have (gpt-image-2-beta has only ``auto``) is an
    empty cell saying so.

    Args:
        prompts: one prompt or several.
        qualities: the tiers to compare (the columns), in this order.
        size: one size for the whole grid (a ratio such as ``1:1`` or ``3:2``, or a pixel
            form), in each model's own form.
        n: images per run; a cell shows up to four of them.
        reuse: take matching runs from the ledger instead of paying for them again.
        session: the session to use (the default session when None).
        tags: labels for the runs generated now.
        model: the model for every run (the session's default model when None).
        models: several models to compare, one row each (instead of ``model``).
        confirm: True to skip the question about the cost, False to refuse without asking.
        progress: show the sweep's progress bar.
        full: draw the full images rather than the 256 px thumbnails; slower, and worth it
            only for a figure saved at a high dpi, where fine detail can show.

    Returns:
        A :class:`Comparison`: ``.figure`` and ``.runs`` (unpacks as ``fig, runs``).

    Example:
        >>> cmp = imgkit.compare("A beautiful colorful sunset over the ocean", size="3:2")
        >>> cmp.runs[["quality", "est_credits", "latency_s", "reused"]]
        >>> imgkit.compare(["a red fox"], models=["gpt-image-1", "gpt-image-2"])
    """
    s = session or get_session()
    if not isinstance(size, str):
        raise ValidationError("size", size, "one size per comparison (the grid is prompts x tiers)")
    if model is not None and models is not None:
        raise ValidationError("models", models, "either model= (one model) or models= (several), not both")
    prompt_list = list(dict.fromkeys([prompts] if isinstance(prompts, str) else prompts))
    tier_list = list(dict.fromkeys([qualities] if isinstance(qualities, str) else qualities))
    if models is None:
        model_list = [resolve_model(model) if model is not None else s.model]
    else:
        model_list = list(dict.fromkeys(resolve_model(m) for m in ([models] if isinstance(models, str) else models)))
        if not model_list:
            raise ValidationError("models", models, "at least one model")
    # Each model runs the asked tiers it has (one model: all of them, so that the sweep's own
    # error names a wrong one); a tier no model has, or a model with none, is an error.
    plans: dict[str, SweepPlan] = {}
    for m in model_list:
        tiers = [t for t in tier_list if t in MODELS[m].qualities or len(model_list) == 1]
        if not tiers:
            raise ValidationError("quality", tier_list, f"at least one tier {m} has: {', '.join(MODELS[m].qualities)}")
        plans[m] = s.plan_sweep(prompt_list, quality=tiers, size=size, n=n, model=m)
    for tier in tier_list:
        if not any(tier in MODELS[m].qualities for m in model_list):
            offered = sorted({q for m in model_list for q in MODELS[m].qualities})
            raise ValidationError("quality", tier, f"a tier of a compared model: {', '.join(offered)}")
    requests = [r for plan in plans.values() for r in plan.requests]
    keys = {(r.prompt, r.model, r.quality): (r.prompt, r.quality, r.size, r.model) for r in requests}

    chosen: dict[_Key, str] = {}
    if reuse:
        found = _reusable(s.runs(), set(keys.values()), n)
        chosen.update({cell: found[k] for cell, k in keys.items() if k in found})
    reused = set(chosen.values())

    # One sweep per model and set of missing tiers: usually one per model (nothing reused,
    # or everything); their cost is stated and confirmed once, for all of them.
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for m in model_list:
        missing: dict[str, list[str]] = {}
        for r in plans[m].requests:
            if (r.prompt, r.model, r.quality) not in chosen:
                missing.setdefault(r.prompt, []).append(r.quality)
        for prompt, missing_tiers in missing.items():
            groups.setdefault((m, tuple(missing_tiers)), []).append(prompt)
    run_tags = check_tags(tags)  # "abc" is one tag, as for generate and sweep
    if len(groups) > 1:
        todo = [s.plan_sweep(group, quality=list(want), size=size, n=n, model=m)
                for (m, want), group in groups.items()]
        whole = SweepPlan(
            tuple(q for p in todo for q in p.requests),
            tuple(e for p in todo for e in p.estimates),
            ", ".join(sorted({p.sheet for p in todo})),
        )
        s._confirm(whole, confirm)  # one question for the whole grid, not one per sweep
        confirm = True

    async def sweeps() -> list[SweepResult]:
        # The models' sweeps at once, on imgkit's loop: the grid takes as long as its slowest
        # model, not the sum of them (the cost was confirmed above, so nothing asks there).
        return await asyncio.gather(*(
            s.asweep(group, quality=list(want), size=size, n=n, model=m, tags=run_tags, confirm=confirm,
                     progress=progress)
            for (m, want), group in groups.items()
        ))

    if len(groups) > 1:
        outs = LOOP.run(sweeps())
    else:
        outs = [s.sweep(group, quality=list(want), size=size, n=n, model=m, tags=run_tags, confirm=confirm,
                        progress=progress) for (m, want), group in groups.items()]
    for out in outs:
        for result in out.results:
            rec = result.record
            chosen[(rec.prompt, rec.model, rec.quality)] = rec.run_id

    df = s.runs()
    cells = [(p, m, t) for p in prompt_list for m in model_list for t in tier_list]
    order = [chosen[c] for c in cells if c in chosen]
    rows = df.set_index(df["run_id"].astype(str)).loc[order].reset_index(drop=True)
    rows["reused"] = [run_id in reused for run_id in order]
    prompts_t = tuple(dict.fromkeys(r.prompt for r in requests))
    first = requests[0]
    pixels = first.pixel_size or "1024x1024"
    figure = _grid(rows, prompts_t, tuple(model_list), tuple(tier_list), pixels, full)
    return Comparison(figure, rows, prompts_t, tuple(tier_list), tuple(model_list))


def _reusable(df: pd.DataFrame, keys: set[tuple[str, str, str, str]], n: int) -> dict[tuple[str, str, str, str], str]:
    """The newest completed run for each key, among text-to-image runs with >= n images
    whose files are all still on disk (a run whose images were deleted or made on another
    machine is generated again rather than drawn as empty boxes), and which asked for no
    resolution tier and are not transparent (a 4K or transparent run is not the default one)."""
    found: dict[tuple[str, str, str, str], str] = {}
    if not len(df):
        return found
    default_tier = df["resolution"].isna().to_numpy(dtype=bool)
    opaque = (df["background"].astype("string") != "transparent").fillna(True).to_numpy(dtype=bool)
    done = df[
        (df["status"].astype("string") == "completed").fillna(False).to_numpy(dtype=bool)
        & default_tier
        & opaque
        & (df["n_images"].fillna(0) >= n).to_numpy(dtype=bool)
        & [len(refs) == 0 for refs in df["reference_images"]]
        & [bool(len(files)) and all(Path(f).is_file() for f in files) for files in df["files"]]
    ]
    # Oldest first, so newer runs overwrite older ones: the newest wins.
    for row in done.sort_values("created_at", kind="stable").itertuples(index=False):
        key = (str(row.prompt), str(row.quality), str(row.size), str(row.model))
        if key in keys:
            found[key] = str(row.run_id)
    return found


def tier_value(
    df: pd.DataFrame | None = None,
    ratings: pd.DataFrame | None = None,
    *,
    session: Session | None = None,
) -> pd.DataFrame:
    """Per tier: blind-rating win rate with a 95 % interval, mean credits per image and wins
    per credit; :func:`imgkit.analysis.tier_value` over the session's ledger.

    Args:
        df: the runs to judge (a slice of :func:`imgkit.runs`; all runs when None). Only
            ratings whose two runs are in it count.
        ratings: the picks (the session ledger's ratings when None).
        session: the session whose ledger is read (the default session when None).

    Example:
        >>> imgkit.rate()                          # make some blind picks first
        >>> imgkit.tier_value()[["win_rate", "ci_low", "ci_high", "mean_credits", "wins_per_credit"]]
    """
    s = session or get_session()
    return analysis.tier_value(
        s.runs() if df is None else df,
        s.ledger.ratings_frame() if ratings is None else ratings,
    )


# --- drawing -----------------------------------------------------------------------------


def _grid(
    rows: pd.DataFrame, prompts: tuple[str, ...], models: tuple[str, ...], tiers: tuple[str, ...], size: str,
    full: bool,
) -> Figure:
    """One block per prompt; in it one row per model (named at its left when there are
    several) and one column per tier."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    from imgkit.plots import TIER_COLORS, with_costs

    costs = with_costs(rows) if len(rows) else rows
    by_cell = {(str(r.prompt), str(r.model), str(r.quality)): r for r in costs.itertuples(index=False)}
    width_px, height_px = (int(v) for v in size.split("x")) if "x" in size else (1, 1)
    n_images = max([min(_MAX_IMAGES, len(r.files)) for r in by_cell.values()] or [1]) or 1
    columns = _montage_columns(n_images, width_px / height_px)
    aspect = columns * width_px / (math.ceil(n_images / columns) * height_px)
    cell_w = min(_MAX_CELL_WIDTH, _FIG_WIDTH / len(tiers))
    # About 13 characters of 10 pt italics per inch; long prompts wrap onto a second line.
    width_chars = max(20, int(cell_w * len(tiers) * 13))
    headings = {p: textwrap.wrap(p, width_chars, max_lines=2, placeholder=" …") or [""] for p in prompts}
    extra_lines = max(len(lines) for lines in headings.values()) - 1
    # Room per row for the tier title and a two-line caption, and per block for the heading.
    image_row_h = cell_w / aspect + 0.9
    block_h = image_row_h * len(models) + 0.25 + 0.18 * extra_lines
    figure = Figure(figsize=(cell_w * len(tiers), block_h * len(prompts)), layout="constrained")
    FigureCanvasAgg(figure)
    engine = figure.get_layout_engine()
    assert isinstance(engine, ConstrainedLayoutEngine)  # layout="constrained" above
    engine.set(h_pad=0.06, w_pad=0.04, hspace=0.02, wspace=0.02)
    subfigs = figure.subfigures(len(prompts), 1, squeeze=False)[:, 0]
    several = len(models) > 1
    for subfig, prompt in zip(subfigs, prompts, strict=True):
        heading = "\n".join(headings[prompt])
        subfig.suptitle(f"“{heading}”", x=0.01, ha="left", fontsize=10, style="italic")
        grid = subfig.subplots(len(models), len(tiers), squeeze=False)
        for row, model in zip(grid, models, strict=True):
            for column, (ax, tier) in enumerate(zip(row, tiers, strict=True)):
                ax.set_title(tier, fontsize=11, fontweight="bold", color=TIER_COLORS.get(tier, "#333333"))
                if several and column == 0:
                    ax.set_ylabel(model, fontsize=10, fontweight="bold")
                if tier not in MODELS[model].qualities:
                    _blank(ax)
                    _placeholder(ax, aspect, f"{model}\nhas no {tier} tier")
                    continue
                _cell(ax, by_cell.get((prompt, model, tier)), aspect, columns, full)
    return figure


def _montage_columns(count: int, aspect: float) -> int:
    """Columns for ``count`` images of this aspect whose montage is closest to square, so
    each image stays as large as the cell allows (two landscape images stack, two squares
    sit side by side)."""
    def badness(columns: int) -> float:
        return abs(math.log(columns * aspect / math.ceil(count / columns)))

    return min(range(1, count + 1), key=lambda c: (badness(c), -c))


def _blank(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _cell(ax: Axes, run: Any, aspect: float, columns: int, full: bool) -> None:
    """One run: its images (up to four), and cost and latency under them."""
    _blank(ax)
    if run is None:
        _placeholder(ax, aspect, "not run")
        return
    shown = _montage(list(run.files if full else run.thumbs)[:_MAX_IMAGES], columns)
    if str(run.status) != "completed" or shown is None:
        reason = str(run.status) if not isinstance(run.error_code, str) else f"{run.status}: {run.error_code}"
        if str(run.status) == "completed":  # its images are not here: say where they are
            host, where = (v if isinstance(v, str) else None for v in (run.host, run.data_dir))
            reason = images_elsewhere(list(run.files), host=host, data_dir=where) or reason
        _placeholder(ax, aspect, reason)
    else:
        ax.imshow(shown, interpolation="lanczos")
    ax.set_xlabel(_caption(run), fontsize=8.5, linespacing=1.4)


def _caption(run: Any) -> str:
    credits, usd = run.charged_credits, run.charged_usd
    money = "cost unknown" if not _finite(credits) else f"{credits:.4g} credits"
    if _finite(usd):
        money += f" · ${usd:.4f}"
    latency = f"{run.latency_s:.1f} s" if _finite(run.latency_s) else "latency –"
    extra = len(run.files) - _MAX_IMAGES
    more = f" · +{extra} more" if extra > 0 else ""
    images = f" · n={run.n}" if run.n and int(run.n) > 1 else ""
    return f"{money}\n{latency}{images}{more}"


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _montage(paths: list[str], columns: int) -> Any:
    """The images at ``paths`` on one canvas, ``columns`` per row, with a thin white gap
    (None when none can be read)."""
    from PIL import Image

    images = []
    for path in paths:
        try:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        except (OSError, ValueError):
            continue
    if len(images) <= 1:
        return images[0] if images else None
    # A run's images share one size; scale any odd one to the first so the grid is even.
    w, h = images[0].size
    tiles = [im if im.size == (w, h) else im.resize((w, h)) for im in images]
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    gap = max(2, min(w, h) // 64)
    canvas = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), "white")
    for i, tile in enumerate(tiles):
        canvas.paste(tile, ((i % columns) * (w + gap), (i // columns) * (h + gap)))
    return canvas


def _placeholder(ax: Axes, aspect: float, text: str) -> None:
    ax.set_xlim(0, aspect)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_facecolor("#eeeeee")
    ax.text(aspect / 2, 0.5, text, ha="center", va="center", fontsize=9, color="#666666", wrap=True)

