"""imgkit: GPT Image 1 in Jupyter, with every run's cost in a ledger.

Example:
    >>> import imgkit
    >>> res = imgkit.generate("A beautiful colorful sunset over the ocean", size="3:2",
    ...                       quality="low", n=2)
    >>> df = imgkit.runs()

Without ``EVOLINK_API_KEY`` everything runs against the built-in sandbox. Heavy libraries
(pandas, matplotlib, ipywidgets) load on first use, not on import.
"""

from imgkit.analysis import image_stats
from imgkit.comparison import compare, tier_value
from imgkit.errors import (
    APIError,
    BudgetExceeded,
    ConfigError,
    ConfirmationRequired,
    DownloadError,
    ImgkitError,
    RequestError,
    TaskFailed,
    UnknownOutcome,
    ValidationError,
)
from imgkit.pricing import register_price_sheet
from imgkit.reports import report
from imgkit.session import (
    Session,
    agenerate,
    aresume,
    asweep,
    budget,
    configure,
    estimate,
    generate,
    get_session,
    login,
    providers,
    resume,
    runs,
    sweep,
)
from imgkit.widgets import Studio, studio
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
    "Studio",
    "TaskFailed",
    "UnknownOutcome",
    "ValidationError",
    "agenerate",
    "aresume",
    "asweep",
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
    "register_price_sheet",
    "report",
    "resume",
    "runs",
    "studio",
    "sweep",
    "tier_value",
]

# Tracebacks and help() then show the names a user types: imgkit.ValidationError, not
# imgkit.errors.ValidationError.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        _obj.__module__ = "imgkit"
del _name, _obj
