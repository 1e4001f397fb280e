"""imgkit: GPT Image models (gpt-image-2 and its siblings) in Jupyter, with every run's cost in a ledger.

Example:
    >>> import imgkit
    >>> res = imgkit.generate("A beautiful colorful sunset over the ocean", size="3:2",
    ...                       quality="low", n=2)
    >>> df = imgkit.runs()

Without ``EVOLINK_API_KEY`` everything runs against the built-in sandbox. Heavy libraries
(pandas, matplotlib, ipywidgets) load on first use, not on import, and so do the analysis
verbs (``compare``, ``tier_value``, ``image_stats``, ``rate``, ``report``).
"""

import importlib as _importlib
import typing as _typing

from imgkit.errors import (
    APIError,
    BudgetExceeded,
    ConfigError,
    ConfirmationRequired,
    DownloadError,
    ImgkitError,
    RequestError,
    StorageError,
    TaskFailed,
    UnknownOutcome,
    ValidationError,
)
from imgkit.pricing import register_price_sheet
from imgkit.session import (
    Session,
    agenerate,
    aresume,
    asweep,
    backup,
    balance,
    batches,
    budget,
    configure,
    estimate,
    generate,
    get_session,
    login,
    providers,
    reconcile,
    resume,
    runs,
    sweep,
)
from imgkit.widgets import Studio, studio

if _typing.TYPE_CHECKING:  # loaded on first use, see __getattr__ below
    from imgkit.analysis import image_stats
    from imgkit.comparison import compare, tier_value
    from imgkit.reports import report
    from imgkit.widgets.rating import rate

__version__ = "0.1.0"

# What a notebook user types: the verbs, Session, the studio and the exception tree. Value
# types stay in their modules: imgkit.results (GenerationResult, Cost, SweepPlan,
# SweepResult), imgkit.config (ProviderConfig, Budget), imgkit.request (ImageRequest,
# JobEvent, RunRecord, MODELS), imgkit.pricing (Estimate, price sheets), imgkit.engine
# (PollPolicy, RetryPolicy).
__all__ = [
    "APIError",
    "BudgetExceeded",
    "ConfigError",
    "ConfirmationRequired",
    "DownloadError",
    "ImgkitError",
    "RequestError",
    "Session",
    "StorageError",
    "Studio",
    "TaskFailed",
    "UnknownOutcome",
    "ValidationError",
    "agenerate",
    "aresume",
    "asweep",
    "backup",
    "balance",
    "batches",
    "budget",
    "compare",
    "configure",
    "estimate",
    "generate",
    "get_session",
    "image_stats",
    "login",
    "providers",
    "rate",
    "reconcile",
    "register_price_sheet",
    "report",
    "resume",
    "runs",
    "studio",
    "sweep",
    "tier_value",
]

# Verbs whose modules (and their imports) load on first use: import imgkit stays light.
_LAZY = {
    "compare": "imgkit.comparison",
    "image_stats": "imgkit.analysis",
    "rate": "imgkit.widgets.rating",
    "report": "imgkit.reports",
    "tier_value": "imgkit.comparison",
}


def _as_ours(obj: _typing.Any) -> _typing.Any:
    # Tracebacks and help() then show the names a user types: imgkit.ValidationError, not
    # imgkit.errors.ValidationError.
    if isinstance(obj, type) or callable(obj):
        obj.__module__ = "imgkit"
    return obj


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        value = _as_ours(getattr(_importlib.import_module(_LAZY[name]), name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imgkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


for _name in __all__:
    if _name not in _LAZY:
        _as_ours(globals()[_name])
del _name
