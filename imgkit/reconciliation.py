"""Reconciliation: the fall in an account's balance held against what the ledger counts as
spent over the same interval.

The balance is read from the service at known moments and kept in the ledger as balance
snapshots (:meth:`imgkit.ledger.Ledger.balance_snapshots`). For each provider,
:func:`reconcile` takes the snapshots bounding the interval asked for and compares

- **observed**: what the account lost between them (the account's remaining credits at the
  start minus at the end; the spendable figure when the account's is not reported), with
- **expected**: what the ledger counts as spent (:mod:`imgkit.costs`) by the provider's runs
  sent between the two snapshots.

``drift = observed - expected``. Zero when every credit the service took is in the ledger.
The runs that may explain a drift are listed with it:

====================  ======================================================================
why                   runs
====================  ======================================================================
unknown run           the create may have reached the service (counted as "may have cost",
                      not spent): a positive drift up to their estimates
not downloaded        images made and billed but not kept (counted at what was reserved):
                      a drift if the service charged them otherwise
other use of the key  what no run explains: another tool, person or machine on the same
                      key or account, or a run missing from this ledger
====================  ======================================================================

Amounts are credits, rounded to the price sheets' 5 places.

Example:
    >>> rec = reconcile(ledger)
    >>> rec.table[["provider", "observed", "expected", "drift"]]
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgkit.costs import cost_of
from imgkit.errors import ValidationError
from imgkit.ledger import LedgerBackend
from imgkit.request import BalanceSnapshot, RunRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RUN_COLUMNS", "TABLE_COLUMNS", "Reconciliation", "reconcile"]

#: Places credits are rounded to (the price sheets' precision).
PLACES = 5
#: The columns of :attr:`Reconciliation.table`, one row per provider.
TABLE_COLUMNS: tuple[str, ...] = (
    "provider", "start", "end", "start_credits", "end_credits", "observed", "expected", "drift",
    "may_have_cost", "unexplained", "runs", "note",
)
#: The columns of :attr:`Reconciliation.runs`, the runs that may explain a drift.
RUN_COLUMNS: tuple[str, ...] = (
    "provider", "why", "run_id", "task_id", "created_at", "status", "error_code", "credits",
)


def _credits(value: float) -> float:
    rounded = round(value, PLACES)
    return 0.0 if rounded == 0 else rounded  # never -0.0


@dataclass(frozen=True)
class Reconciliation:
    """What :func:`reconcile` found.

    Attributes:
        table: one row per provider (:data:`TABLE_COLUMNS`): the bounding snapshots' times
            and balances, ``observed``, ``expected``, ``drift``, what unknown runs
            ``may_have_cost``, the drift nothing in the ledger explains (``unexplained``),
            the number of runs counted and a note when the provider could not be reconciled.
        runs: the runs (and "other use of the key") that may explain a drift
            (:data:`RUN_COLUMNS`); empty when nothing drifted.
    """

    table: pd.DataFrame
    runs: pd.DataFrame

    @property
    def drift(self) -> float:
        """The drift of every provider together, in credits."""
        values = self.table["drift"].dropna()
        return _credits(float(values.sum())) if len(values) else math.nan

    def __str__(self) -> str:
        lines = []
        for row in self.table.itertuples(index=False):
            if isinstance(row.note, str) and row.note:
                lines.append(f"{row.provider}: {row.note}")
                continue
            lines.append(
                f"{row.provider}: the balance fell by {row.observed:.{PLACES}f} credits, the ledger counts "
                f"{row.expected:.{PLACES}f} spent over {row.runs} runs: drift {row.drift:+.{PLACES}f}"
                + (f" (unknown runs may have cost {row.may_have_cost:.{PLACES}f})" if row.may_have_cost else "")
            )
        for run in self.runs.itertuples(index=False):
            who = f"run {run.run_id}" if isinstance(run.run_id, str) else "no run"
            lines.append(f"  {run.provider}: {run.why}: {who}, {run.credits:.{PLACES}f} credits")
        return "\n".join(lines) or "no provider has balance snapshots"

    def __repr__(self) -> str:
        return f"<Reconciliation drift={self.drift:.{PLACES}f}>\n{self}"

    def _repr_html_(self) -> str:
        html: str = self.table.to_html(index=False, na_rep="")
        if len(self.runs):
            html += "<p>May explain the drift:</p>" + self.runs.to_html(index=False, na_rep="")
        return html

    def to_markdown(self) -> str:
        """The table and the runs as Markdown, for a report's appendix."""
        lines = ["| provider | start | end | observed | expected | drift | may have cost |",
                 "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
        for row in self.table.itertuples(index=False):
            cells = [row.provider, _when(row.start), _when(row.end)] + [
                "" if math.isnan(v) else f"{v:.{PLACES}f}"
                for v in (row.observed, row.expected, row.drift, row.may_have_cost)
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if len(self.runs):
            lines += ["", "| provider | why | run | credits |", "| --- | --- | --- | ---: |"]
            for run in self.runs.itertuples(index=False):
                rid = run.run_id if isinstance(run.run_id, str) else ""
                lines.append(f"| {run.provider} | {run.why} | {rid} | {run.credits:.{PLACES}f} |")
        return "\n".join(lines) + "\n"


def _when(value: Any) -> str:
    return "" if value is None or value != value else str(value)


def _unix(value: Any, name: str) -> float | None:
    """``value`` (date, datetime, ISO text, Unix seconds, None) as Unix seconds (UTC when no
    timezone is given)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValidationError(name, value, "a date, datetime, ISO text or Unix time")
    if isinstance(value, int | float):
        return float(value)
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ValidationError(name, value, "a date, datetime, ISO text or Unix time") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime) and name == "until":
        stamp += pd.Timedelta(days=1)  # a date includes its whole day
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return float(stamp.timestamp())


def _bounds(
    snapshots: Sequence[BalanceSnapshot], since: float | None, until: float | None
) -> tuple[BalanceSnapshot, BalanceSnapshot] | None:
    """The snapshots bounding ``[since, until]``: the last at or before ``since`` (else the
    first after it) and the first at or after ``until`` (else the last before it)."""
    usable = [s for s in snapshots if _figure(s) is not None]
    if len(usable) < 2:
        return None
    if since is None:
        start = usable[0]
    else:
        before = [s for s in usable if s.taken_at <= since]
        start = before[-1] if before else usable[0]
    if until is None:
        end = usable[-1]
    else:
        after = [s for s in usable if s.taken_at >= until]
        end = after[0] if after else usable[-1]
    return (start, end) if end.taken_at > start.taken_at else None


def _figure(snapshot: BalanceSnapshot) -> float | None:
    """The account's remaining credits, else the spendable figure."""
    return snapshot.account_remaining if snapshot.account_remaining is not None else snapshot.remaining_credits


def reconcile(ledger: LedgerBackend, *, since: Any = None, until: Any = None) -> Reconciliation:
    """Hold the fall of each provider's balance between the snapshots bounding ``[since,
    until]`` against what ``ledger`` counts as spent by the runs sent in between.

    Args:
        ledger: the ledger holding the runs and the balance snapshots.
        since, until: a date, datetime, ISO text or Unix time (UTC when no timezone is
            given; a date ``until`` includes its whole day); None for the first and the last
            snapshot.

    Raises:
        ValidationError: a bound that is not a time, or ``since`` after ``until``.
    """
    import pandas as pd

    start_at, end_at = _unix(since, "since"), _unix(until, "until")
    if start_at is not None and end_at is not None and start_at > end_at:
        raise ValidationError("since", since, f"a time before until ({until})")
    snapshots = ledger.balance_snapshots()
    providers = sorted({s.provider for s in snapshots})
    # Exact times (the DataFrame's are to the second): a sweep's first run is sent within
    # the second of the snapshot before it.
    records = ledger.records() if providers else []
    rows: list[dict[str, Any]] = []
    explaining: list[dict[str, Any]] = []
    for provider in providers:
        bounds = _bounds([s for s in snapshots if s.provider == provider], start_at, end_at)
        if bounds is None:
            rows.append({"provider": provider, "note": "fewer than two balance snapshots in or around the interval"})
            continue
        first, last = bounds
        row, why = _one(provider, first, last, records)
        rows.append(row)
        explaining += why
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    for name in ("start", "end"):
        table[name] = pd.to_datetime(table[name].astype("float64"), unit="s", utc=True)
    for name in ("start_credits", "end_credits", "observed", "expected", "drift", "may_have_cost", "unexplained"):
        table[name] = table[name].astype("float64")
    table["runs"] = table["runs"].astype("Int64")
    table["note"] = table["note"].astype("string")
    found = pd.DataFrame(explaining, columns=list(RUN_COLUMNS))
    found["created_at"] = pd.to_datetime(found["created_at"].astype("float64"), unit="s", utc=True)
    found["credits"] = found["credits"].astype("float64")
    return Reconciliation(table, found)


def _one(
    provider: str, first: BalanceSnapshot, last: BalanceSnapshot, records: Sequence[RunRecord]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One provider's row and the runs that may explain its drift."""
    start_credits, end_credits = _figure(first), _figure(last)
    assert start_credits is not None and end_credits is not None  # _bounds kept only such snapshots
    observed = _credits(start_credits - end_credits)
    mine = [(r, cost_of(r)) for r in records if r.provider == provider
            and first.taken_at < (r.submitted_at or r.created_at) <= last.taken_at]
    expected = _credits(math.fsum(c.spent for _, c in mine))
    maybe = _credits(math.fsum(c.may_have_cost for _, c in mine))
    drift = _credits(observed - expected)
    unexplained = _credits(drift - maybe) if drift > 0 else drift
    row = {
        "provider": provider, "start": first.taken_at, "end": last.taken_at, "start_credits": start_credits,
        "end_credits": end_credits, "observed": observed, "expected": expected, "drift": drift,
        "may_have_cost": maybe, "unexplained": unexplained, "runs": len(mine), "note": None,
    }
    why: list[dict[str, Any]] = []
    if drift == 0:
        return row, why
    for record, cost in mine:
        if cost.basis == "may have cost":
            why.append(_run(provider, "unknown run (may have cost)", record, cost.may_have_cost))
        elif cost.basis == "not downloaded":
            why.append(_run(provider, "images made but not downloaded", record, cost.spent))
    if unexplained != 0:
        why.append(_other(provider, unexplained))
    return row, why


def _run(provider: str, reason: str, record: RunRecord, credits: float) -> dict[str, Any]:
    return {"provider": provider, "why": reason, "run_id": record.run_id, "task_id": record.task_id,
            "created_at": record.created_at, "status": str(record.status), "error_code": record.error_code,
            "credits": _credits(credits)}


def _other(provider: str, credits: float) -> dict[str, Any]:
    reason = ("other use of the key (another tool, person or machine, or a run missing from this ledger)"
              if credits > 0 else "the ledger counts more than the account lost (a refund, or a charge below "
              "what was reserved)")
    return {"provider": provider, "why": reason, "run_id": None, "task_id": None, "created_at": None,
            "status": None, "error_code": None, "credits": credits}
