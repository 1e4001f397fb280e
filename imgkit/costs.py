"""What a run cost: the cost rules, defined once, in three forms.

Pure: no I/O. The rules below are data (:data:`RULES`); from them this module builds

- :func:`cost_of` for one :class:`~imgkit.request.RunRecord`,
- :func:`cost_frame` for a DataFrame of runs (vectorised, as :func:`imgkit.runs` gives it),
- :func:`sql_basis`, :func:`sql_spent`, :func:`sql_may_have_cost` and :func:`sql_budget`,
  SQL expressions over the ledger's ``runs`` table,
- :data:`RULE_TESTS` and :func:`rule_for`: the conditions the rules test, as SQL, and the
  rule that applies to a group of runs alike in status and in those conditions, so a sum over
  many runs can group by them and apply each rule once per group instead of once per run,
- :data:`RULES_TEXT`, the rules in words, as reports state them,

so the ledger's budget check, :func:`imgkit.plots.with_costs` and the reports cannot
disagree. A rule that changes, changes here.

For each run the figures are: the **estimate** made before submitting (``est_credits``),
what the service **reserved** when it accepted the task (``credits_reserved``), what it
**charged** (``credits_charged``, when it reports one), what counts as **spent**, and what
the run **may have cost** on top of that. The budget counts spent + may have cost.

The first row that matches a run applies (``basis`` names it; all amounts in credits):

==============  ==================================  ==================  ==================
basis           when                                spent               may have cost
==============  ==================================  ==================  ==================
charged         the service reported a charge       credits_charged     0
no task         failed, and no task id              0                   0
not downloaded  failed with ``download_failed`` or  credits_reserved,   0
                ``result_expired``: the service     else est_credits
                made and billed the images, imgkit
                could not keep them
failed          failed (the service bills the       0                   0
                images it makes and releases what
                it reserved)
may have cost   unknown (the task may exist and     0                   est_credits, else
                be billed)                                              credits_reserved
reserved        any other status, the service       credits_reserved    0
                reserved credits
estimate        any other status (completed, or     est_credits         0
                still in flight)                    (0 if none)
==============  ==================================  ==================  ==================

Example:
    >>> from imgkit.costs import cost_of
    >>> cost_of(record).spent, cost_of(record).budget
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgkit.request import RunRecord, RunStatus

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BASES",
    "NOT_DOWNLOADED_CODES",
    "RULES",
    "RULES_TEXT",
    "RULE_TESTS",
    "CostRule",
    "RunCost",
    "cost_frame",
    "cost_of",
    "rule_for",
    "rule_sources",
    "sql_basis",
    "sql_budget",
    "sql_first",
    "sql_may_have_cost",
    "sql_spent",
]


@dataclass(frozen=True, slots=True)
class CostRule:
    """One row of the cost table.

    Attributes:
        basis: the rule's name, shown as a run's ``cost_basis``.
        statuses: the statuses it applies to (None: any).
        codes: the error codes it applies to (None: any).
        present: columns that must hold a value.
        absent: columns that must be empty.
        spent: the columns whose first non-empty value counts as spent (none: 0).
        may_have_cost: likewise, what the run may have cost beyond that.
        says: the rule in a sentence, as reports state it.
    """

    basis: str
    statuses: frozenset[RunStatus] | None = None
    codes: frozenset[str] | None = None
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    spent: tuple[str, ...] = ()
    may_have_cost: tuple[str, ...] = ()
    says: str = ""


#: The error codes of a run whose task completed (the service made and billed its images) but
#: whose results imgkit could not download: such a run is ``failed`` yet costs what was reserved.
NOT_DOWNLOADED_CODES: frozenset[str] = frozenset({"download_failed", "result_expired"})

#: The cost rules in the order they are tried (the table in this module's docstring).
RULES: tuple[CostRule, ...] = (
    CostRule(
        "charged", present=("credits_charged",), spent=("credits_charged",),
        says="Charged: what the service reported as charged for a run, whatever its status.",
    ),
    CostRule(
        "no task", statuses=frozenset({RunStatus.FAILED}), absent=("task_id",),
        says="Runs that failed before reaching the service (no task id) cost nothing.",
    ),
    CostRule(
        "not downloaded", statuses=frozenset({RunStatus.FAILED}), codes=NOT_DOWNLOADED_CODES,
        spent=("credits_reserved", "est_credits"),
        says="Runs whose images the service made and billed but imgkit could not download (failed with "
             "download_failed or result_expired) count what the service reserved, else their estimate.",
    ),
    CostRule(
        "failed", statuses=frozenset({RunStatus.FAILED}),
        says="Runs that failed as a task cost nothing (the service bills the images it produces and "
             "releases what it reserved), unless the service reported a charge for them.",
    ),
    CostRule(
        "may have cost", statuses=frozenset({RunStatus.UNKNOWN}), may_have_cost=("est_credits", "credits_reserved"),
        says="Unknown runs (the create request may have reached the service, or contact was lost) count "
             "nothing as charged and are listed as 'may have cost' at their estimate (else what the "
             "service reserved), in a column of their own; the budget counts them.",
    ),
    CostRule(
        "reserved", present=("credits_reserved",), spent=("credits_reserved",),
        says="Other runs (completed, or still in flight) with no reported charge count what the service "
             "reserved when it accepted the task (usage.credits_reserved).",
    ),
    CostRule(
        "estimate", spent=("est_credits",),
        says="Other runs the service reported no figure for count at their estimate.",
    ),
)

#: The rules in words, in order, followed by what the budget counts.
RULES_TEXT: tuple[str, ...] = (
    *(rule.says for rule in RULES),
    "The budget counts what was charged (as above) plus what unknown runs may have cost.",
)

#: Every ``cost_basis`` a run can have, in rule order.
BASES: tuple[str, ...] = tuple(rule.basis for rule in RULES)

#: The run fields the rules read.
INPUTS: tuple[str, ...] = ("status", "error_code", "task_id", "credits_charged", "credits_reserved", "est_credits")


def _tests() -> dict[tuple[str, Any], str]:
    tests: dict[tuple[str, Any], str] = {}
    for rule in RULES:
        for name in (*rule.present, *rule.absent):
            tests.setdefault(("empty", name), f"{name} IS NULL")
        if rule.codes is not None:
            codes = ", ".join(f"'{c}'" for c in sorted(rule.codes))
            tests.setdefault(("codes", rule.codes), f"error_code IN ({codes})")
    return tests


_TESTS = _tests()
#: What the rules test besides the status, each condition once, as SQL over the ``runs`` table
#: (``credits_charged IS NULL``, ``error_code IN (...)``, ...). Runs alike in status and in
#: these have the same rule (:func:`rule_for`); the ledgers' report index holds them as keys.
RULE_TESTS: tuple[str, ...] = tuple(_TESTS.values())
_STATUSES = {rule.basis: frozenset(s.value for s in rule.statuses) for rule in RULES if rule.statuses is not None}


def rule_for(status: str, tests: Sequence[object]) -> CostRule:
    """The rule for runs of ``status`` whose :data:`RULE_TESTS` came out as ``tests`` (in that
    order; SQL's NULL, as ``None``, is false, as in a ``CASE``)."""
    truth = {key: bool(value) for key, value in zip(_TESTS, tests, strict=True)}
    for rule in RULES:
        if rule.statuses is not None and status not in _STATUSES[rule.basis]:
            continue
        if rule.codes is not None and not truth[("codes", rule.codes)]:
            continue
        if any(truth[("empty", name)] for name in rule.present):
            continue
        if not all(truth[("empty", name)] for name in rule.absent):
            continue
        return rule
    return RULES[-1]


def rule_sources() -> tuple[tuple[str, ...], ...]:
    """Every list of columns a rule takes an amount from (spent or may have cost), each once,
    in rule order: a grouped sum needs one total per list (:func:`sql_first`)."""
    sources: dict[tuple[str, ...], None] = {}
    for rule in RULES:
        for names in (rule.spent, rule.may_have_cost):
            if names:
                sources.setdefault(names, None)
    return tuple(sources)


# --- one run -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunCost:
    """What one run cost, in credits.

    Attributes:
        basis: the rule that applied (see :data:`RULES`).
        estimated: the estimate made before submitting (None when the model had no price).
        reserved: what the service reserved on accepting the task.
        charged: what the service reported as charged.
        spent: what counts as spent.
        may_have_cost: what it may have cost beyond ``spent`` (an unknown run's estimate).
    """

    basis: str
    estimated: float | None
    reserved: float | None
    charged: float | None
    spent: float
    may_have_cost: float

    @property
    def budget(self) -> float:
        """What the budget counts: spent plus may have cost."""
        return self.spent + self.may_have_cost


def _first(record: RunRecord, names: Sequence[str]) -> float:
    for name in names:
        value = getattr(record, name)
        if value is not None:
            return float(value)
    return 0.0


def _matches(rule: CostRule, record: RunRecord) -> bool:
    return (
        (rule.statuses is None or record.status in rule.statuses)
        and (rule.codes is None or record.error_code in rule.codes)
        and all(getattr(record, name) is not None for name in rule.present)
        and all(getattr(record, name) is None for name in rule.absent)
    )


def cost_of(record: RunRecord) -> RunCost:
    """What ``record`` cost, by the first rule of :data:`RULES` that matches it.

    Example:
        >>> cost_of(record).budget
        1.25798
    """
    rule = next(r for r in RULES if _matches(r, record))
    return RunCost(
        basis=rule.basis,
        estimated=record.est_credits,
        reserved=record.credits_reserved,
        charged=record.credits_charged,
        spent=_first(record, rule.spent),
        may_have_cost=_first(record, rule.may_have_cost),
    )


# --- a DataFrame of runs -------------------------------------------------------------------


def cost_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``cost_basis`` (categorical of :data:`BASES`), ``spent_credits`` and
    ``may_have_cost_credits`` of each run in ``df``, on ``df``'s index.

    ``df`` needs the columns the rules read: status, task_id, credits_charged,
    credits_reserved and est_credits (and error_code; a frame without it reads as having
    no error codes).
    """
    import numpy as np
    import pandas as pd

    status = df["status"].astype("string")
    codes = df["error_code"].astype("string") if "error_code" in df.columns else pd.Series(
        pd.NA, index=df.index, dtype="string")
    columns = {name: df[name].astype("float64") for name in INPUTS if name.startswith(("credits", "est"))}
    filled = {name: df[name].notna().to_numpy(dtype=bool) for name in INPUTS if name not in ("status", "error_code")}
    conditions = []
    for rule in RULES:
        keep = np.ones(len(df), dtype=bool)
        if rule.statuses is not None:
            keep &= status.isin([s.value for s in rule.statuses]).fillna(False).to_numpy(dtype=bool)
        if rule.codes is not None:
            keep &= codes.isin(sorted(rule.codes)).fillna(False).to_numpy(dtype=bool)
        for name in rule.present:
            keep &= filled[name]
        for name in rule.absent:
            keep &= ~filled[name]
        conditions.append(keep)

    def first(names: Sequence[str]) -> Any:
        out = np.zeros(len(df))
        for name in reversed(names):
            values = columns[name].to_numpy(dtype="float64", na_value=np.nan)
            out = np.where(np.isnan(values), out, values)
        return out

    # np.select needs a default; the last rule matches everything, so it never applies.
    basis = np.select(conditions, list(BASES), default=BASES[-1])
    spent = np.select(conditions, [first(rule.spent) for rule in RULES], default=0.0)
    maybe = np.select(conditions, [first(rule.may_have_cost) for rule in RULES], default=0.0)
    return pd.DataFrame(
        {
            "cost_basis": pd.Categorical(basis, categories=BASES),
            "spent_credits": spent,
            "may_have_cost_credits": maybe,
        },
        index=df.index,
    )


# --- SQL over the ledger's runs table --------------------------------------------------------


def _sql_when(rule: CostRule) -> str:
    parts = []
    if rule.statuses is not None:
        parts.append("status IN (" + ", ".join(f"'{s.value}'" for s in sorted(rule.statuses)) + ")")
    if rule.codes is not None:
        parts.append("error_code IN (" + ", ".join(f"'{c}'" for c in sorted(rule.codes)) + ")")
    parts += [f"{name} IS NOT NULL" for name in rule.present]
    parts += [f"{name} IS NULL" for name in rule.absent]
    return " AND ".join(parts) or "1"


def sql_first(names: Sequence[str]) -> str:
    """SQL for the first non-empty value of the columns ``names`` (0 when all are empty or
    there are none): how a rule's amount is read."""
    return f"COALESCE({', '.join(names)}, 0)" if names else "0"


def _sql_case(values: Mapping[str, str]) -> str:
    whens = " ".join(f"WHEN {_sql_when(rule)} THEN {values[rule.basis]}" for rule in RULES[:-1])
    return f"(CASE {whens} ELSE {values[RULES[-1].basis]} END)"


def sql_basis() -> str:
    """An SQL expression giving each row's ``cost_basis``."""
    return _sql_case({rule.basis: f"'{rule.basis}'" for rule in RULES})


def sql_spent() -> str:
    """An SQL expression giving what each row counts as spent (credits, never NULL)."""
    return _sql_case({rule.basis: sql_first(rule.spent) for rule in RULES})


def sql_may_have_cost() -> str:
    """An SQL expression giving what each row may have cost beyond that (never NULL)."""
    return _sql_case({rule.basis: sql_first(rule.may_have_cost) for rule in RULES})


def sql_budget() -> str:
    """An SQL expression giving what the budget counts for each row: spent plus may have
    cost."""
    return f"({sql_spent()} + {sql_may_have_cost()})"
