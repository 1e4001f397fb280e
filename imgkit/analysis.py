"""Is a tier worth its price? Blind pairwise ratings and objective image statistics.

Pure functions over the DataFrames of :func:`imgkit.runs` and
:meth:`~imgkit.ledger.Ledger.ratings_frame`; the only I/O is reading image files for
:func:`image_stats`. The faces (:func:`imgkit.compare`, :func:`imgkit.rate`) call these:

- :func:`rating_pairs` picks pairs of completed runs with the same prompt, size and model
  but different tiers, in a seeded random order and with a random side for each;
- :func:`record_pick` stores a rater's pick for a pair in the ledger;
- :func:`tier_value` turns the picks into a win rate per tier with a 95 % Wilson interval,
  the mean cost of an image of that tier, and wins per credit;
- :func:`image_stats` adds sharpness, JPEG size and colourfulness per run.

pandas, numpy and Pillow are imported inside the functions that need them.

Example:
    >>> from imgkit import analysis
    >>> analysis.tier_value(imgkit.runs(), imgkit.get_session().ledger.ratings_frame())
    >>> analysis.image_stats(imgkit.runs()).groupby("quality", observed=True)["sharpness"].mean()
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import random
from collections.abc import Hashable
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from imgkit.request import QUALITIES

if TYPE_CHECKING:
    import pandas as pd

    from imgkit.ledger import LedgerBackend

__all__ = [
    "CHOICES",
    "STATS_PX",
    "Pair",
    "image_stats",
    "rating_pairs",
    "record_pick",
    "tier_value",
    "wilson_interval",
]

log = logging.getLogger("imgkit")

#: What a rater can answer about a pair.
CHOICES: tuple[str, ...] = ("left", "right", "same")
#: Images are scaled to this many pixels on their long side before statistics are taken, so
#: runs of different sizes are comparable. Not the 256 px thumbnails: downscaling that far
#: averages away exactly the fine detail that separates the tiers.
STATS_PX = 512
_Z95 = NormalDist().inv_cdf(0.975)


# --- pairs and picks ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pair:
    """Two images of the same prompt and size from runs of different tiers, as shown to a
    rater: which run is on which side was drawn at random.

    Attributes:
        prompt: the prompt both runs drew.
        size: their size (pixel form).
        left_run_id, right_run_id: the runs on each side.
        left_quality, right_quality: their tiers (never shown to the rater).
        left_path, right_path: the image file shown on each side.
        left_image, right_image: the index of that image in its run (0-based).
    """

    prompt: str
    size: str
    left_run_id: str
    right_run_id: str
    left_quality: str
    right_quality: str
    left_path: str
    right_path: str
    left_image: int = 0
    right_image: int = 0

    def winner(self, choice: str) -> str | None:
        """The tier that won with ``choice``; None for ``"same"``."""
        _check_choice(choice)
        return {"left": self.left_quality, "right": self.right_quality}.get(choice)


def _check_choice(choice: str) -> None:
    if choice not in CHOICES:
        from imgkit.errors import ValidationError

        raise ValidationError("choice", choice, '"left", "right" or "same"')


def rating_pairs(
    df: pd.DataFrame,
    ratings: pd.DataFrame | None = None,
    *,
    limit: int | None = None,
    seed: int | None = None,
) -> list[Pair]:
    """Pairs of completed runs to rate blind: same prompt, size and model, different tiers.

    Every such pair of runs is a candidate once; pairs already in ``ratings`` (either way
    round) are left out, so a rating session can be continued later. The candidates are
    shuffled, cut to ``limit``, and each gets a random side per run and a random image of
    each run, all from one ``random.Random(seed)``.

    Args:
        df: runs as returned by :func:`imgkit.runs` (absolute file paths).
        ratings: ratings already made (:meth:`Ledger.ratings_frame`); None for none.
        limit: the most pairs to return (all when None).
        seed: seeds the order, the sides and the images (for tests and reproducible sessions).

    Example:
        >>> pairs = rating_pairs(imgkit.runs(), limit=20, seed=1)
        >>> pairs[0].left_quality != pairs[0].right_quality
        True
    """
    rng = random.Random(seed)
    done: set[frozenset[str]] = set()
    if ratings is not None and len(ratings):
        done = {
            frozenset((str(a), str(b)))
            for a, b in zip(ratings["left_run_id"], ratings["right_run_id"], strict=True)
        }
    groups: dict[tuple[Hashable, ...], list[tuple[str, str, list[str]]]] = {}
    for row in _completed(df).itertuples(index=False):
        key = (str(row.prompt), str(row.size), str(row.model))
        groups.setdefault(key, []).append((str(row.run_id), str(row.quality), list(row.files)))
    candidates = []
    # Sorted first, so the seed alone decides the order whatever order the ledger returned.
    for (prompt, size, _model), runs in sorted(groups.items()):
        runs.sort()
        for i, (a_id, a_q, a_files) in enumerate(runs):
            for b_id, b_q, b_files in runs[i + 1 :]:
                if a_q != b_q and frozenset((a_id, b_id)) not in done:
                    candidates.append((prompt, size, (a_id, a_q, a_files), (b_id, b_q, b_files)))
    rng.shuffle(candidates)
    if limit is not None:
        candidates = candidates[: max(0, int(limit))]
    pairs = []
    for prompt, size, a, b in candidates:
        left, right = (a, b) if rng.random() < 0.5 else (b, a)
        li, ri = rng.randrange(len(left[2])), rng.randrange(len(right[2]))
        pairs.append(
            Pair(
                prompt=str(prompt), size=str(size),
                left_run_id=left[0], right_run_id=right[0],
                left_quality=left[1], right_quality=right[1],
                left_path=left[2][li], right_path=right[2][ri],
                left_image=li, right_image=ri,
            )
        )
    return pairs


def record_pick(ledger: LedgerBackend, pair: Pair, choice: str, *, tag: str | None = None) -> int:
    """Store a rater's pick for ``pair`` in ``ledger``; returns the rating's id.

    Args:
        ledger: where the rating goes (``session.ledger``).
        pair: the pair that was shown.
        choice: ``"left"``, ``"right"`` or ``"same"``.
        tag: a label for the rating session.

    Example:
        >>> record_pick(imgkit.get_session().ledger, pairs[0], "left", tag="alice")
    """
    _check_choice(choice)
    return ledger.add_rating(
        prompt=pair.prompt,
        left_run_id=pair.left_run_id,
        right_run_id=pair.right_run_id,
        left_quality=pair.left_quality,
        right_quality=pair.right_quality,
        left_image=pair.left_image,
        right_image=pair.right_image,
        choice=choice,
        tag=tag,
    )


# --- tier value --------------------------------------------------------------------------


def wilson_interval(successes: float, n: int, *, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and behaves with few trials and
    with proportions of 0 or 1, which is what a short rating session gives.

    Example:
        >>> wilson_interval(7, 10)
        (0.3967781..., 0.8922087...)
    """
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


_VALUE_COLUMNS = (
    "comparisons", "wins", "ties", "losses", "win_rate", "ci_low", "ci_high",
    "mean_credits", "wins_per_credit", "wins_per_credit_low", "wins_per_credit_high",
)


def tier_value(df: pd.DataFrame, ratings: pd.DataFrame) -> pd.DataFrame:
    """Win rate, cost and wins per credit of each tier, from blind pairwise ratings.

    A tier's comparisons are the ratings it took part in; a tie counts as half a win, so
    ``win_rate = (wins + ties / 2) / comparisons``. ``ci_low``/``ci_high`` are its 95 %
    Wilson interval (ties entering as half successes). ``mean_credits`` is what one image of
    the tier cost on average over the completed runs of ``df`` (charged, else reserved,
    else estimated credits, divided by the images asked for). ``wins_per_credit`` is
    ``win_rate / mean_credits`` (with the interval scaled alike): the share of comparisons
    one credit's worth of that tier wins. Compare it across tiers to see whether a dearer
    tier earns its multiplier.

    Only ratings whose two runs are both in ``df`` count, so a slice of the runs (a tag, a
    sweep, a date range) gives the value on that slice.

    Args:
        df: runs, as returned by :func:`imgkit.runs` (or a slice of it).
        ratings: ratings, as returned by :meth:`~imgkit.ledger.Ledger.ratings_frame`.

    Returns:
        One row per tier (index ``quality``, ordered low, medium, high) with
        ``comparisons``, ``wins``, ``ties``, ``losses``, ``win_rate``, ``ci_low``,
        ``ci_high``, ``mean_credits``, ``wins_per_credit``, ``wins_per_credit_low`` and
        ``wins_per_credit_high``.

    Example:
        >>> tier_value(imgkit.runs(), imgkit.get_session().ledger.ratings_frame())
    """
    import pandas as pd

    if "run_id" in df.columns and len(ratings):
        ids = set(df["run_id"].astype("string").dropna())
        keep = ratings["left_run_id"].astype("string").isin(ids) & ratings["right_run_id"].astype("string").isin(ids)
        ratings = ratings[keep.fillna(False).to_numpy(dtype=bool)]
    left = [str(q) for q in ratings["left_quality"]] if len(ratings) else []
    right = [str(q) for q in ratings["right_quality"]] if len(ratings) else []
    choice = [str(c) for c in ratings["choice"]] if len(ratings) else []
    credits = _credits_per_image(df)
    present = set(left) | set(right) | set(credits)
    tiers = [q for q in QUALITIES if q in present] + sorted(present - set(QUALITIES))
    rows = []
    for tier in tiers:
        wins = ties = losses = 0
        for lq, rq, c in zip(left, right, choice, strict=True):
            if tier not in (lq, rq) or lq == rq:
                # A pair of one tier says nothing about that tier against the others.
                continue
            if c == "same":
                ties += 1
            elif (c == "left") == (lq == tier):
                wins += 1
            else:
                losses += 1
        n = wins + ties + losses
        rate = (wins + ties / 2) / n if n else math.nan
        low, high = wilson_interval(wins + ties / 2, n)
        cost = credits.get(tier, math.nan)
        rows.append((n, wins, ties, losses, rate, low, high, cost, *(_per(x, cost) for x in (rate, low, high))))
    out = pd.DataFrame(rows, columns=list(_VALUE_COLUMNS), index=pd.CategoricalIndex(
        tiers, categories=[*QUALITIES, *sorted(set(tiers) - set(QUALITIES))], ordered=True, name="quality"
    ))
    for name in ("comparisons", "wins", "ties", "losses"):
        out[name] = out[name].astype("int64")
    return out


def _per(share: float, cost: float) -> float:
    return share / cost if cost > 0 else math.nan


def _credits_per_image(df: pd.DataFrame) -> dict[str, float]:
    """Mean credits per image of each tier over the completed runs of ``df``."""
    done = _completed(df, need_files=False)
    totals: dict[str, list[float]] = {}
    for row in done.itertuples(index=False):
        cost = next(
            (float(v) for v in (row.credits_charged, row.credits_reserved, row.est_credits) if _number(v)),
            None,
        )
        n = int(row.n) if _number(row.n) and int(row.n) > 0 else 0
        if cost is None or n == 0:
            continue
        spent = totals.setdefault(str(row.quality), [0.0, 0.0])
        spent[0] += cost
        spent[1] += n
    return {tier: spent / images for tier, (spent, images) in totals.items()}


def _number(value: Any) -> bool:
    try:
        return value is not None and not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _completed(df: pd.DataFrame, *, need_files: bool = True) -> pd.DataFrame:
    status = df["status"].astype("string") == "completed"
    mask = status.fillna(False).to_numpy(dtype=bool)
    if need_files:
        mask &= [len(f) > 0 for f in df["files"]]
    return df[mask]


# --- objective image statistics ----------------------------------------------------------


def image_stats(df: pd.DataFrame, *, workers: int | None = None) -> pd.DataFrame:
    """``df`` with simple objective statistics of each run's images (mean over its images).

    Every image is scaled to :data:`STATS_PX` pixels on its long side first, so the numbers
    compare across sizes:

    - ``sharpness``: variance of the 4-neighbour Laplacian of the grayscale image; higher
      means more fine detail and crisper edges (and also more noise).
    - ``jpeg_kb``: size of a JPEG re-encode at quality 85, in KiB; a rough measure of how
      much detail there is to encode.
    - ``colorfulness``: Hasler and Süsstrunk's metric (0: grey; above about 80: very
      colourful).

    Runs without readable images get NaN. Results are cached per file (path, size and
    modification time), so calling it again on a growing ledger only reads the new files.

    Args:
        df: runs as returned by :func:`imgkit.runs` (its ``files`` must be absolute paths).
        workers: threads reading images (Pillow and numpy release the GIL); default up to 8.

    Example:
        >>> stats = imgkit.image_stats(imgkit.runs())
        >>> stats.groupby("quality", observed=True)[["sharpness", "jpeg_kb"]].mean()
    """
    from concurrent.futures import ThreadPoolExecutor

    paths = sorted({str(p) for files in df["files"] for p in files})
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        found = dict(zip(paths, pool.map(_file_stats, paths), strict=True))
    unreadable = sum(v is None for v in found.values())
    if unreadable:
        log.warning("image_stats: %d of %d image files could not be read", unreadable, len(found))
    out = df.copy()
    for index, name in enumerate(("sharpness", "jpeg_kb", "colorfulness")):
        values = []
        for files in df["files"]:
            got = [s[index] for p in files if (s := found.get(str(p))) is not None]
            values.append(sum(got) / len(got) if got else math.nan)
        out[name] = values
        out[name] = out[name].astype("float64")
    return out


def _file_stats(path: str) -> tuple[float, float, float] | None:
    try:
        st = os.stat(path)
        return _stats(path, st.st_size, st.st_mtime_ns)
    except (OSError, ValueError, SyntaxError):  # missing, unreadable or not an image
        return None


@functools.lru_cache(maxsize=4096)
def _stats(path: str, _size: int, _mtime_ns: int) -> tuple[float, float, float]:
    # The size and mtime only key the cache: a rewritten file is read again.
    return _pixel_stats(path)


def _pixel_stats(path: str) -> tuple[float, float, float]:
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        rgb = ImageOps.contain(im.convert("RGB"), (STATS_PX, STATS_PX), Image.Resampling.LANCZOS)
    gray = np.asarray(rgb.convert("L"), dtype=np.float64)
    laplacian = (
        gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4.0 * gray[1:-1, 1:-1]
    )
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=85)
    pixels = np.asarray(rgb, dtype=np.float64)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    rg = red - green
    yb = 0.5 * (red + green) - blue
    colorfulness = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    return (float(laplacian.var()), len(buf.getvalue()) / 1024.0, float(colorfulness))
