"""Fallback routing across the providers a user has: cheapest first, skipping what cannot serve
the request, failing over on outages only, with a circuit breaker per provider.

The gateway promises that "if it's down, we automatically use the next cheapest available".
imgkit does the same on the client side, across providers. The router only decides *where*;
the engine does the sending, and each attempt's :data:`Outcome` (from :func:`failover_reason`
and the rules below) says whether the run may go to the next provider.

**Order.** :meth:`Router.candidates` keeps the providers that support the request (model,
size, ``n``, number of reference images, and every field the request sets: a provider whose
kind cannot carry ``background``, ``mask``, ``output_format``, ... is never sent a request
that uses it, since it would drop the field silently) and orders them by the estimated USD
price of the request on the sheet that prices its model for each provider
(:func:`~imgkit.pricing.sheet_for`), cheapest first (unpriced last, ties in configured
order). A provider whose circuit is open is skipped, unless every candidate's is, in which case
all are tried in order anyway: the breaker saves time, it never leaves a run with nowhere to go.

**When the next provider is tried** (nothing was accepted by the first, or what was accepted is
over and failed because of the provider), and when not:

=========================================================  ===================  ==============
what happened on the provider                              failover reason      run
=========================================================  ===================  ==============
connection refused / connect timeout (after retries)       ``connect_error``    next provider
503 (after retries): no task is created                    ``http_503``         next provider
429 rate limit (after retries)                             ``rate_limited``     next provider
400 "no available channel", 403 ``model_access_denied``,   ``model_not_served`` next provider
404 ``model_not_found``, a 400 about the model field
any 5xx answer of a **synchronous** provider (OpenAI)      ``http_<status>``    next provider
task accepted, then ended ``failed`` with                  the code             next provider
``service_unavailable``, ``resource_exhausted``,
``service_error`` or ``generation_timeout``
reference upload failed with one of the outages above      ``upload_failed``    next provider
500/502 answer of the task **gateway** after sending       -                    ``unknown``
timeout or reset after sending (any provider)              -                    ``unknown``
400 validation, 401, 402/429 ``insufficient_quota``,       -                    ``failed``
content policy, any other task error code
=========================================================  ===================  ==============

Why a 500 differs: the gateway creates a task and then answers, so a 500 (or a reset) after
the request was sent may hide a task that runs and is charged; sending the run elsewhere could
pay twice, so the run is marked ``unknown`` and not resent. A synchronous API's HTTP answer
*is* the outcome of the request: after a 5xx nothing is running and nothing will be delivered
or billed later, so the next provider cannot duplicate it. A timeout or reset leaves even a
synchronous request possibly running, so it stays ``unknown`` everywhere. Task codes chosen
for failover are the spec's server-side failures (§3: "auto-reroutes", capacity, timeouts);
``unknown_error``, ``generation_failed_no_content`` and ``quota_exceeded`` are not, because the
request or the account may be the cause.

**Circuit breaker.** Per provider: *closed* (used), *open* after ``failure_threshold``
consecutive failures (skipped for ``cooldown`` seconds), then *half-open*: one run probes it;
success closes it, failure opens it again. Failures are outages and unknown outcomes; the
user's own errors count as the provider answering. A rolling window of recent outcomes gives
the error rate and the mean latency shown by :meth:`Router.table`.

**One plan per run.** :meth:`Router.plan` turns a request into a :class:`RunPlan` once: the
candidates in order, each with its provider and its estimate on its own price sheet, and the
one the run goes to first. The session checks the budget and shows prices from that plan; the
engine runs the same plan. How a provider did comes back as one :data:`Outcome`
(:class:`Served`, :class:`Failover` or :class:`Unknown`), reported once per attempt with
:meth:`Router.report`; :func:`submit_outcome` and :func:`run_outcome` derive it (pure).

The engine reads two optional attributes of a provider: ``synchronous`` (default False) and
``kind``; the :class:`~imgkit.providers.base.Provider` protocol itself is unchanged.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from imgkit.errors import APIError, ConfigError, RequestError, ValidationError
from imgkit.pricing import Estimate, estimate, sheet_for
from imgkit.providers.base import Provider
from imgkit.request import MODELS, ImageRequest, RunRecord

__all__ = [
    "OUTAGE_TASK_CODES",
    "BreakerPolicy",
    "Candidate",
    "Capabilities",
    "CircuitBreaker",
    "Endpoint",
    "Failover",
    "Outcome",
    "Router",
    "RunPlan",
    "Served",
    "Ticket",
    "Unknown",
    "carriers",
    "failover_reason",
    "is_unknown_outcome",
    "model_not_served",
    "outage_on_read",
    "run_outcome",
    "single",
    "submit_outcome",
]

#: Task error codes that mean the provider failed, not the request [spec §3].
OUTAGE_TASK_CODES = frozenset({"service_unavailable", "resource_exhausted", "service_error", "generation_timeout"})
#: Codes that mean the user's account is out of money or quota: shown, never failed over.
QUOTA_CODES = frozenset({"insufficient_quota", "quota_exceeded"})


def model_not_served(exc: APIError) -> bool:
    """Whether an error answer on create says the provider does not serve the model.

    The gateway documents 403 ``model_access_denied`` and, since March 2026, answers "No
    available channel for the requested model" with a 400 (it was a 503) [spec §1d]; OpenAI
    answers 404 ``model_not_found``. The request's model was already checked against imgkit's
    own list, so a 400 about the model field means the same.
    """
    if exc.code in ("model_access_denied", "model_not_found"):
        return True
    text = exc.message.lower()
    if exc.status == 400 and "no available channel" in text:
        return True
    if exc.status == 400:
        err = exc.body.get("error") if isinstance(exc.body, dict) else None
        param = err.get("param") if isinstance(err, dict) else None
        return param == "model" or text.startswith("model:")
    return False


def is_unknown_outcome(exc: Exception, *, synchronous: bool) -> bool:
    """Whether a failed create may still have been accepted (and so must not be resent)."""
    if isinstance(exc, RequestError):
        return exc.sent
    if isinstance(exc, APIError):
        return not synchronous and exc.status >= 500 and exc.status != 503
    return False


def failover_reason(exc: Exception, *, synchronous: bool) -> str | None:
    """Why the next provider may take a run whose create failed with ``exc`` on this one,
    or None when the failure must be shown (the user's own error) or may hide an accepted
    task (an unknown outcome). Pure; see the module's table."""
    if is_unknown_outcome(exc, synchronous=synchronous):
        return None
    if isinstance(exc, RequestError):
        return "connect_error"
    if not isinstance(exc, APIError):
        return None
    if exc.code in QUOTA_CODES:
        return None
    if exc.status == 429:
        return "rate_limited"
    if exc.status >= 500:
        return f"http_{exc.status}"
    if model_not_served(exc):
        return "model_not_served"
    return None


def outage_on_read(exc: Exception) -> bool:
    """Whether an upload failure is the provider's (network, 429, 5xx), not the file's."""
    if isinstance(exc, RequestError):
        return True
    return isinstance(exc, APIError) and (exc.status == 429 or exc.status >= 500)


# --- how a provider did with one run -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Served:
    """The provider answered: the run completed, or was refused for the user's own reasons
    (a validation error, a content policy, ...). The breaker counts it as a success.

    Attributes:
        latency_s: how long a completed run took, for the provider table.
    """

    latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class Failover:
    """The provider failed and nothing of the run is alive there: the next one may take it.

    Attributes:
        reason: the failover reason of the module's table (``connect_error``, a task code, ...).
    """

    reason: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """The provider failed in a way that may hide an accepted task: the run stays where it is
    and is never resent. The breaker counts it as a failure.

    Attributes:
        reason: why (``unknown_outcome``, or the code the run ended with).
    """

    reason: str


#: How one attempt on a provider went; :meth:`Router.report` hears it.
Outcome = Served | Failover | Unknown


def submit_outcome(exc: Exception, *, synchronous: bool) -> Outcome:
    """The outcome of a create (or reference upload) that failed with ``exc`` (pure)."""
    if is_unknown_outcome(exc, synchronous=synchronous):
        return Unknown("unknown_outcome")
    reason = failover_reason(exc, synchronous=synchronous)
    return Served() if reason is None else Failover(reason)


def run_outcome(record: RunRecord) -> Outcome:
    """The outcome of a run that a provider accepted, from its terminal record (pure)."""
    if record.status == "completed":
        return Served(record.latency_s)
    if record.status == "unknown":
        return Unknown(record.error_code or "unknown_outcome")
    if record.error_code in OUTAGE_TASK_CODES:
        # The task is over and failed because of the provider: it cannot deliver or charge
        # anything more, so the next provider may take the run.
        return Failover(record.error_code)
    return Served()


# --- what a provider can do ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider accepts, beyond imgkit's own validation of the model's limits.

    Attributes:
        models: the models it serves (None: every model imgkit knows).
        sizes: the sizes it accepts, pixel form (None: whatever the model allows).
        max_n: the most images per request.
        max_images: the most reference images per request.
    """

    models: tuple[str, ...] | None = None
    sizes: tuple[str, ...] | None = None
    max_n: int = 10
    max_images: int = 16

    def refusal(self, request: ImageRequest) -> str | None:
        """Why this provider cannot take ``request``, or None when it can."""
        if self.models is not None and request.model not in self.models:
            return f"serves {', '.join(self.models)}, not {request.model}"
        if self.sizes is not None and request.size not in self.sizes:
            return f"takes sizes {', '.join(self.sizes)}, not {request.size}"
        if request.n > self.max_n:
            return f"makes at most {self.max_n} images per request, not {request.n}"
        if len(request.images) > self.max_images:
            return f"takes at most {self.max_images} reference images, not {len(request.images)}"
        return None


GATEWAY_CAPABILITIES = Capabilities()
#: An OpenAI-kind provider serves the models whose profiles OpenAI's API takes (each with its
#: own sizes, checked by the request's rules); a ``models`` list in its settings narrows it (an OpenAI-compatible
#: endpoint with fewer models). gpt-image-1 stays listed: OpenAI retired it on 2026-10-23, and
#: its refusal then names the successor, while compatible endpoints still serve it.
OPENAI_CAPABILITIES = Capabilities(models=tuple(name for name, profile in MODELS.items() if profile.openai))


@dataclass(frozen=True)
class Endpoint:
    """One configured provider.

    Attributes:
        name: its name in the ledger (``provider`` column).
        provider: the client.
        kind: ``gateway`` or ``openai``.
        base_url: where it is (for the provider table).
        sheet: the price sheet its estimates use (None: unpriced).
        capabilities: what it accepts.
        synchronous: its answer is the request's outcome (see the module's table).
    """

    name: str
    provider: Provider
    kind: str = "gateway"
    base_url: str = ""
    sheet: str | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    synchronous: bool = False

    def refusal(self, request: ImageRequest) -> str | None:
        """Why this provider cannot take ``request`` (its capabilities, or a field its kind
        cannot carry), or None when it can."""
        why = self.capabilities.refusal(request)
        if why is not None:
            return why
        fields = request.unsupported_on(self.kind)
        if not fields:
            return None
        return "cannot carry " + ", ".join(_field_text(request, name) for name in fields)

    @classmethod
    def of(cls, provider: Provider, *, sheet: str | None = None, **kwargs: Any) -> Endpoint:
        """An endpoint for ``provider``, reading its optional ``kind``/``synchronous``/``base_url``."""
        kind = str(getattr(provider, "kind", "gateway"))
        values: dict[str, Any] = {
            "kind": kind,
            "base_url": str(getattr(provider, "base_url", "")),
            "synchronous": bool(getattr(provider, "synchronous", False)),
            "capabilities": OPENAI_CAPABILITIES if kind == "openai" else GATEWAY_CAPABILITIES,
        }
        values.update(kwargs)
        return cls(name=provider.name, provider=provider, sheet=sheet, **values)


#: The provider kinds imgkit has (what :meth:`ImageRequest.unsupported_on` knows).
KINDS = ("gateway", "openai")


def _field_text(request: ImageRequest, name: str) -> str:
    value = getattr(request, name, None)
    if name == "mask" and value is not None:
        value = "given"
    return name if value is None else f"{name}={value}"


def carriers(request: ImageRequest, name: str) -> list[str]:
    """The provider kinds that can carry the field ``name`` of ``request`` (pure)."""
    return [kind for kind in KINDS if name not in request.unsupported_on(kind)]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A provider that can take a request, and what it would cost there."""

    endpoint: Endpoint
    estimate: Estimate | None

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def provider(self) -> Provider:
        """The client that sends the run there."""
        return self.endpoint.provider


@dataclass(frozen=True, slots=True)
class RunPlan:
    """Where one run goes, decided once: the session prices and budgets it, the engine runs it.

    Attributes:
        request: the request.
        candidates: the providers that can take it, cheapest first (see the module's order).
        forced: every candidate's circuit was open when planned: all are tried anyway.
        first: the index in ``candidates`` of the one the run goes to first (the first whose
            circuit let runs through when planned).
    """

    request: ImageRequest
    candidates: tuple[Candidate, ...]
    forced: bool = False
    first: int = 0

    @property
    def chosen(self) -> Candidate | None:
        """The candidate the run goes to first, or None when no provider can take it."""
        return self.candidates[self.first] if self.candidates else None

    @property
    def estimate(self) -> Estimate | None:
        """The price the run is recorded at: the first candidate's, on its own sheet."""
        chosen = self.chosen
        return chosen.estimate if chosen is not None else None


# --- the circuit breaker ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a provider is skipped.

    Attributes:
        failure_threshold: consecutive failures that open the circuit.
        cooldown: seconds an open circuit is skipped before one run probes it.
        window: recent outcomes kept for the error rate and latency.
        probe_timeout: seconds after which a probe that never reported is forgotten.
    """

    failure_threshold: int = 3
    cooldown: float = 60.0
    window: int = 20
    probe_timeout: float = 900.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigError("failure_threshold must be at least 1")
        if self.cooldown < 0 or self.window < 1:
            raise ConfigError("cooldown must be >= 0 and window >= 1")


@dataclass(frozen=True, slots=True)
class Ticket:
    """Permission to use a provider for one run; ``probe`` when it tests a half-open circuit."""

    name: str
    probe: bool = False


class CircuitBreaker:
    """Closed, open or half-open, for one provider. Thread-safe (the provider table is read
    from the notebook's thread while runs report from imgkit's loop)."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._state = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_at: float | None = None
        self._window: deque[tuple[bool, float | None]] = deque(maxlen=policy.window)
        self.last_error = ""

    def _current(self, now: float) -> str:
        if self._state == "open" and now - self._opened_at >= self.policy.cooldown:
            return "half_open"
        return self._state

    def _probe_free(self, now: float) -> bool:
        return self._probe_at is None or now - self._probe_at > self.policy.probe_timeout

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        with self._lock:
            return self._current(self._clock())

    def available(self) -> bool:
        """Whether a run could use the provider now (no side effect)."""
        with self._lock:
            now = self._clock()
            state = self._current(now)
            return state == "closed" or (state == "half_open" and self._probe_free(now))

    def acquire(self, *, force: bool = False) -> str | None:
        """``"normal"`` or ``"probe"`` to use the provider for one run, None to skip it.
        ``force`` grants a use whatever the state (a probe when the circuit is not closed)."""
        with self._lock:
            now = self._clock()
            state = self._current(now)
            if state == "closed":
                return "normal"
            if force or (state == "half_open" and self._probe_free(now)):
                self._probe_at = now
                return "probe"
            return None

    def success(self, ticket: Ticket | None = None, latency: float | None = None) -> None:
        with self._lock:
            self._window.append((True, latency))
            self._failures = 0
            if ticket is not None and ticket.probe:
                self._state, self._probe_at = "closed", None

    def failure(self, reason: str, ticket: Ticket | None = None) -> None:
        with self._lock:
            self._window.append((False, None))
            self.last_error = reason
            self._failures += 1
            probe = ticket is not None and ticket.probe
            if probe or (self._state == "closed" and self._failures >= self.policy.failure_threshold):
                self._state, self._opened_at, self._probe_at = "open", self._clock(), None

    def stats(self) -> dict[str, Any]:
        """State, error rate and mean latency over the window, and seconds until a probe."""
        with self._lock:
            now = self._clock()
            state = self._current(now)
            outcomes = list(self._window)
            retry_in = max(0.0, self._opened_at + self.policy.cooldown - now) if state == "open" else 0.0
        latencies = [lat for ok, lat in outcomes if ok and lat is not None]
        return {
            "state": state,
            "error_rate": (sum(not ok for ok, _ in outcomes) / len(outcomes)) if outcomes else math.nan,
            "latency_s": (sum(latencies) / len(latencies)) if latencies else math.nan,
            "outcomes": len(outcomes),
            "retry_in_s": retry_in,
            "last_error": self.last_error,
        }


# --- the router ------------------------------------------------------------------------------

#: The request the provider table prices: one medium square gpt-image-1 image.
REFERENCE = {"quality": "medium", "size": "1024x1024", "n": 1, "model": "gpt-image-1"}


class Router:
    """The configured providers in price order, each with its circuit breaker.

    Args:
        endpoints: the providers, in the user's order (the tie-break between equal prices).
        policy: the breakers' settings.
        clock: monotonic seconds (injected in tests).

    Example:
        >>> router = Router([Endpoint.of(cheap, sheet="evolink-table-2026-11"),
        ...                  Endpoint.of(openai_provider, sheet="openai-tokens-2026-11")])
        >>> [c.name for c in router.candidates(request)]
        ['evolink', 'openai']
    """

    def __init__(
        self,
        endpoints: Iterable[Endpoint],
        *,
        policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints: tuple[Endpoint, ...] = tuple(endpoints)
        if not self.endpoints:
            raise ConfigError("no providers configured")
        names = [e.name for e in self.endpoints]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"provider names must be unique; repeated: {', '.join(duplicates)}")
        self.policy = policy or BreakerPolicy()
        self._by_name = {e.name: e for e in self.endpoints}
        self._breakers = {e.name: CircuitBreaker(self.policy, clock) for e in self.endpoints}

    def __repr__(self) -> str:
        return f"<Router {', '.join(e.name for e in self.endpoints)}>"

    @property
    def primary(self) -> Endpoint:
        """The first configured provider (its balance is the session's balance)."""
        return self.endpoints[0]

    def get(self, name: str) -> Endpoint | None:
        return self._by_name.get(name)

    def breaker(self, name: str) -> CircuitBreaker:
        return self._breakers[name]

    # --- choosing --------------------------------------------------------------------------

    @staticmethod
    def price(
        endpoint: Endpoint, request: ImageRequest, *, images: int | None = None, batch: bool = False
    ) -> Estimate:
        """The estimate of ``request`` on ``endpoint``: on the sheet that prices the request's
        model for the provider's configured sheet, with its resolution tier and reference
        images (``images`` overrides their count, for quotes of requests built without them);
        ``batch``: the Batch price.

        Raises:
            ConfigError: the provider has no sheet, or no sheet of its provider prices the
                model or size.
        """
        if endpoint.sheet is None:
            raise ConfigError(f"provider {endpoint.name!r} has no price sheet")
        return estimate(
            quality=request.quality,
            size=request.size,
            n=request.n,
            model=request.model,
            sheet=sheet_for(request.model, endpoint.sheet),
            resolution=request.resolution,
            images=len(request.images) if images is None else images,
            batch=batch,
        )

    @classmethod
    def _estimate(cls, endpoint: Endpoint, request: ImageRequest) -> Estimate | None:
        if endpoint.sheet is None:
            return None
        try:
            return cls.price(endpoint, request)
        except (ConfigError, ValidationError):
            return None  # no sheet of the provider prices this model or size

    def candidates(self, request: ImageRequest) -> list[Candidate]:
        """The providers that support ``request``, cheapest first (breakers not applied)."""
        found = []
        for index, endpoint in enumerate(self.endpoints):
            if endpoint.refusal(request) is None:
                est = self._estimate(endpoint, request)
                found.append((est is None, est.usd if est else 0.0, index, Candidate(endpoint, est)))
        found.sort(key=lambda item: item[:3])
        return [item[3] for item in found]

    def refusals(self, request: ImageRequest) -> list[str]:
        """Why each provider cannot take ``request`` (empty when one can)."""
        out = []
        for endpoint in self.endpoints:
            why = endpoint.refusal(request)
            if why is not None:
                out.append(f"{endpoint.name} {why}")
        return out

    def plan(self, request: ImageRequest) -> RunPlan:
        """The run's plan: the candidates in order, whether to ignore the breakers (every
        circuit is open), and the one the run goes to first now."""
        cands = tuple(self.candidates(request))
        open_ = [not self._breakers[c.name].available() for c in cands]
        forced = bool(cands) and all(open_)
        first = 0 if forced else next((i for i, closed in enumerate(open_) if not closed), 0)
        return RunPlan(request, cands, forced, first)

    def check(self, request: ImageRequest) -> None:
        """Raise ValidationError when no configured provider can take ``request``; when a
        field the request sets is what no provider can carry, the error names that field and
        the provider kinds that take it."""
        if not self.candidates(request):
            served = [e for e in self.endpoints if e.capabilities.refusal(request) is None]
            for name in dict.fromkeys(f for e in served for f in request.unsupported_on(e.kind)):
                if all(name in request.unsupported_on(e.kind) for e in served):
                    kinds = carriers(request, name)
                    configured = ", ".join(f"{e.name} ({e.kind})" for e in served)
                    raise ValidationError(
                        name,
                        "<mask>" if name == "mask" else getattr(request, name, None),
                        (f"a provider of kind {' or '.join(kinds)} for it" if kinds
                         else f"nothing: no provider kind carries it for {request.model}"),
                        hint=f"{request.model} with {name} is not carried by the configured providers "
                        f"({configured}); nothing was sent",
                    )
            model = MODELS.get(request.model)
            raise ValidationError(
                "request",
                f"{request.model} {request.size} n={request.n} with {len(request.images)} reference images",
                "something a configured provider serves: " + "; ".join(self.refusals(request)),
                hint=model.source if model else "",
            )

    # --- outcomes --------------------------------------------------------------------------

    def acquire(self, name: str, *, force: bool = False) -> Ticket | None:
        """A ticket to send a run to ``name``, or None when its circuit says skip it."""
        granted = self._breakers[name].acquire(force=force)
        return None if granted is None else Ticket(name, probe=granted == "probe")

    def report(self, ticket: Ticket, outcome: Outcome) -> None:
        """Tell the provider's breaker how the run it let through went."""
        if isinstance(outcome, Served):
            self._breakers[ticket.name].success(ticket, outcome.latency_s)
        else:
            self._breakers[ticket.name].failure(outcome.reason, ticket)

    # --- showing ---------------------------------------------------------------------------

    def table(self, reference: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One row per provider: name, kind, base URL, price sheet, the price of a reference
        request (one medium square image), breaker state, error rate, mean latency."""
        request = ImageRequest.build("reference", **(reference or REFERENCE))
        rows = []
        for endpoint in self.endpoints:
            est = self._estimate(endpoint, request)
            stats = self._breakers[endpoint.name].stats()
            rows.append(
                {
                    "name": endpoint.name,
                    "kind": endpoint.kind,
                    "base_url": endpoint.base_url,
                    "price_sheet": endpoint.sheet,
                    "ref_usd": est.usd if est else math.nan,
                    "ref_credits": est.credits if est else math.nan,
                    **stats,
                }
            )
        return rows

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.provider.aclose()


def single(provider: Provider, *, sheet: str | None = None) -> Router:
    """A router over one provider: today's behaviour, with the breaker never skipping it."""
    return Router([Endpoint.of(provider, sheet=sheet)])
