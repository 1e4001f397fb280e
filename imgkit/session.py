"""The facade a notebook user calls: generate/agenerate, sweep/asweep, runs, resume,
estimate, configure; and the Session they run on.

One async core. Each verb is written once, as an async method whose options are declared
once (``GenerateOptions``, ``SweepOptions``); the sync functions are thin wrappers that drive
it with :meth:`imgkit._loop.LOOP.drive <imgkit._loop._LoopThread.drive>`: the caller's steps
(validating, planning, asking) on the caller's thread, the I/O on one private event-loop
thread. So they work from plain scripts and from inside a kernel whose loop is already
running, without patching that loop (and still work where a user applied nest_asyncio). The
async functions run their work on the same private loop too, so all runs of a process share
one HTTP connection pool, one concurrency limit and one ledger writer.

The rest lives by concept: configuration (providers, keys, ``providers.toml``) in
:mod:`imgkit.config`, the loop bridge in :mod:`imgkit._loop`, what runs return in
:mod:`imgkit.results`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from imgkit._loop import LOOP as _LOOP
from imgkit._loop import call_on as _call_on
from imgkit._loop import running_loop as _running_loop
from imgkit.config import (
    KEY_ENV,
    LOOPBACK_PLACEHOLDER_KEY,
    Budget,
    Identity,
    ProviderConfig,
    display_url,
    resolve_model,
    resolve_providers,
)
from imgkit.engine import Engine, EventHandler, PollPolicy, RetryPolicy, Slot, raise_for_record
from imgkit.errors import (
    BudgetExceeded,
    ConfigError,
    ConfirmationRequired,
    ImgkitError,
    StorageError,
    ValidationError,
    storage_error,
)
from imgkit.journal import JOURNAL_NAME, Journal
from imgkit.ledger import LEDGER_ENV, Ledger, LedgerBackend, is_database_url, open_ledger
from imgkit.pricing import Estimate, fx_rate, get_sheet, set_fx, sheet_for
from imgkit.pricing import estimate as _estimate
from imgkit.providers.base import Balance, Provider
from imgkit.providers.router import (
    GATEWAY_CAPABILITIES,
    OPENAI_CAPABILITIES,
    BreakerPolicy,
    Candidate,
    Capabilities,
    Endpoint,
    Router,
    RunPlan,
)
from imgkit.request import BalanceSnapshot, ImageRequest, JobEvent, RunRecord, Secret, check_tags
from imgkit.results import Description, GenerationResult, SweepPlan, SweepResult
from imgkit.store import Store, default_data_dir, images_dir

if TYPE_CHECKING:
    import pandas as pd

    from imgkit.reconciliation import Reconciliation
    from imgkit.sandbox import SandboxConfig

__all__ = [
    "SWEEP_QUALITIES",
    "SWEEP_SIZES",
    "EstimateOptions",
    "GenerateOptions",
    "RequestOptions",
    "Session",
    "SweepGrid",
    "SweepOptions",
    "agenerate",
    "aresume",
    "asweep",
    "backup",
    "balance",
    "batches",
    "budget",
    "configure",
    "estimate",
    "generate",
    "get_session",
    "login",
    "providers",
    "reconcile",
    "resume",
    "runs",
    "sweep",
]

log = logging.getLogger("imgkit")

# --- the options of each verb, declared once ---------------------------------------------
#
# The sync and async forms of a verb, on Session and as module functions, all take these
# dictionaries' keys as keyword arguments (``**options: Unpack[...]``), so no parameter list
# is written twice. A new request field goes into ImageRequest.build, RequestOptions and the
# wire code; generate and sweep then both accept it.


class RequestOptions(TypedDict, total=False):
    """The fields of every run of a verb, besides its prompt, size and quality; the defaults
    are :meth:`~imgkit.request.ImageRequest.build`'s."""

    model: str
    n: int
    images: Iterable[Any] | None
    resolution: str | None
    background: str | None
    mask: Any
    output_format: str | None
    output_compression: int | None
    moderation: str | None
    input_fidelity: str | None
    previews: int | None


class GenerateOptions(RequestOptions, total=False):
    """The options of :func:`generate` and :func:`agenerate` (documented there)."""

    size: str
    quality: str
    tags: str | Iterable[str]
    on_event: EventHandler | None
    raise_on_error: bool


class SweepGrid(RequestOptions, total=False):
    """The runs of a sweep: every quality x size (x prompt), each with the same fields."""

    quality: str | Iterable[str]
    size: str | Iterable[str]


class SweepOptions(SweepGrid, total=False):
    """The options of :func:`sweep` and :func:`asweep` (documented there)."""

    tags: str | Iterable[str]
    concurrency: int | None
    per_minute: float | None
    confirm: bool | None
    progress: bool
    on_event: EventHandler | None
    batch: bool


class EstimateOptions(TypedDict, total=False):
    """The settings :func:`estimate` and :meth:`Session.estimate` price (documented there)."""

    quality: str | None
    size: str
    n: int
    model: str
    resolution: str | None
    background: str | None
    images: int
    batch: bool


#: The tiers and sizes a sweep tries when none are given.
SWEEP_QUALITIES = ("low", "medium", "high")
SWEEP_SIZES = ("1:1",)
_FIELDS = RequestOptions.__optional_keys__


def _keys(declared: Any) -> frozenset[str]:
    """Every key of an options TypedDict, its bases' included."""
    return frozenset(declared.__required_keys__ | declared.__optional_keys__)


def _check_options(given: Mapping[str, Any], declared: Any) -> None:
    """Refuse keyword arguments a verb does not declare, as Python does for named ones."""
    unknown = sorted(set(given) - _keys(declared))
    if unknown:
        import difflib

        known = sorted(_keys(declared))
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}{hint}; the options are: {', '.join(known)}")


def _positive(name: str, value: Any, allowed: str) -> Any:
    """``value`` when it is None (the default) or a finite number above 0; concurrency must
    also be whole. A limit of 0 or less would stall a sweep or silently mean "no limit"."""
    if value is None:
        return None
    whole = name == "concurrency"
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value <= 0:
        raise ValidationError(name, value, allowed)
    return value


def _shown_url(url: str | Path) -> str:
    from imgkit.ledger_pg import safe_url

    return safe_url(str(url).strip())


# --- the session -------------------------------------------------------------------------


class Session:
    """Settings, provider, ledger and store for a set of runs.

    Most users never build one: the module functions (:func:`generate`, :func:`runs`, ...)
    use a default session made from the environment, and :func:`configure` replaces it.

    Args:
        api_key: the gateway key; when None, ``$EVOLINK_API_KEY``; when neither, the sandbox.
        base_url: the task API host; the live host by default. On this machine (``localhost``,
            ``127.0.0.1``: a sandbox served with ``imgkit sandbox --port N``) no key is
            needed. Checked when given: http or https, a port from 1 to 65535.
        files_url: the file API host; defaults to the live files host, or ``base_url``.
        data_dir: where the ledger and images live (``$IMGKIT_HOME`` by default).
        sandbox: force the in-process sandbox (True; not with ``base_url``) or forbid it
            (False).
        sandbox_config: the in-process sandbox's settings.
        price_sheet: the price sheet estimates use.
        concurrency: the most tasks in flight at once (1 or more).
        poll, retry: the engine's policies.
        timeout: seconds per HTTP request.
        budget: a spending limit checked before every submission.
        sweep_threshold: sweeps estimated above this many credits ask before running (and
            raise :class:`~imgkit.errors.ConfirmationRequired` where nobody can answer).
        providers: the providers to route across, cheapest first: a list of
            :class:`ProviderConfig` mappings (``{"name", "kind", "api_key" | "api_key_env",
            "base_url", "price_sheet", "models", "timeout", "sandbox"}``) or the path of a
            TOML file; one whose key variable is not set is skipped with a warning, unless
            none is left. Without it (and without ``api_key``/``base_url``/``sandbox``),
            ``$IMGKIT_HOME/providers.toml`` is read when it exists; otherwise the single
            gateway (or sandbox) of before.
        failure_threshold: consecutive failures that open a provider's circuit.
        cooldown: seconds an open circuit is skipped before it is probed again.
        model: the model of runs that name none (``generate``, ``sweep``, ``estimate``,
            ``compare``, the studio's first choice); ``$IMGKIT_MODEL`` when None, else
            gpt-image-1. An unknown name is a ValidationError listing the models.
        project: the project every run is recorded for (``$IMGKIT_PROJECT`` by default; a
            name of 1-64 characters). Runs also record who ran them (``$IMGKIT_USER``, else
            ``$JUPYTERHUB_USER``, else the OS user), the machine and the image directory
            (``$IMGKIT_IMAGES``, else ``data_dir``): :attr:`identity`.
        ledger: where runs are kept: a ``postgresql://user@host/database`` URL (a team's
            ledger; the password from ``PGPASSWORD`` or ``~/.pgpass``, never shown back) or a
            SQLite file; ``$IMGKIT_LEDGER`` by default, else ``ledger.sqlite3`` in the data
            directory.
        fx: the CNY per USD rate for estimates and reports, ``{"CNY": 7.12}`` with optional
            ``"date"`` and ``"source"`` (see :func:`imgkit.pricing.set_fx`; process-wide); the
            shipped, dated ``imgkit/data/fx.json`` rate when never set.

    Example:
        >>> imgkit.configure(providers=[
        ...     {"name": "evolink", "kind": "gateway", "api_key_env": "EVOLINK_API_KEY"},
        ...     {"name": "openai", "kind": "openai", "api_key_env": "OPENAI_API_KEY"},
        ... ])
        >>> imgkit.providers()   # name, price of one medium square image, circuit state, ...
    """

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        files_url: str | None = None,
        data_dir: str | Path | None = None,
        sandbox: bool | None = None,
        sandbox_config: SandboxConfig | None = None,
        price_sheet: str | None = None,
        concurrency: int = 8,
        poll: PollPolicy | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        budget: Budget | None = None,
        sweep_threshold: float = 50.0,
        providers: Iterable[Mapping[str, Any] | ProviderConfig] | str | Path | None = None,
        failure_threshold: int | None = None,
        cooldown: float | None = None,
        model: str | None = None,
        project: str | None = None,
        ledger: str | Path | None = None,
        fx: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency={concurrency!r} is not allowed: a whole number of tasks, 1 or more")
        #: The model of runs that name none.
        self.model = resolve_model(model)
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
        #: Where this session's image files go (``$IMGKIT_IMAGES``, else ``data_dir``).
        self.images_dir = images_dir(self.data_dir)
        #: Who runs, for which project, where: recorded with every run.
        self.identity = Identity.current(project=project, images_dir=self.images_dir)
        self._configs, routing = resolve_providers(
            api_key=api_key, base_url=base_url, files_url=files_url, sandbox=sandbox, providers=providers,
            data_dir=self.data_dir,
        )
        primary = self._configs[0]
        self.sandbox = all(c.sandbox for c in self._configs)
        self._key = primary.api_key
        self.base_url = primary.base_url
        self.files_url = primary.files_url
        self.policy = BreakerPolicy(
            failure_threshold=int(failure_threshold or routing.get("failure_threshold", 3)),
            cooldown=float(cooldown if cooldown is not None else routing.get("cooldown", 60.0)),
        )
        self.sandbox_config = sandbox_config
        self.price_sheet = get_sheet(price_sheet).name
        self.fx = set_fx(fx) if fx is not None else fx_rate()
        self.concurrency = concurrency
        self.poll = poll
        self.retry = retry
        self.timeout = timeout
        self.budget = budget
        self.sweep_threshold = sweep_threshold
        target = ledger or os.environ.get(LEDGER_ENV) or self.data_dir / "ledger.sqlite3"
        ledger = None
        # A database URL is held like a key (it may carry a password); ledger_target shows it without.
        self._ledger_url = Secret(str(target).strip()) if is_database_url(target) else None
        self.ledger_target: str | Path = Path(target).expanduser() if self._ledger_url is None else _shown_url(target)
        del target
        self._ledger: LedgerBackend | None = None
        self._engine: Engine | None = None
        self._router: Router | None = None
        self._sandbox_app: Any = None
        self._unmask: Callable[[], None] = _nothing

    def __repr__(self) -> str:
        if not hasattr(self, "price_sheet"):  # shown in a traceback while __init__ failed
            return "<imgkit.Session (not configured)>"
        return f"<imgkit.Session {self.describe()}>"

    def describe(self) -> Description:
        """Sandbox or live, where, the price sheet and the data directory: one line as text,
        a small table in a notebook. It never shows a key (at most its last four characters)
        or a URL's ``user:password@``.

        Example:
            >>> imgkit.get_session().describe()
            sandbox (in-process, no key); price sheet evolink-table-2026-11; data /home/me/.imgkit
        """
        if len(self._configs) > 1:
            listed = ", ".join(
                f"{c.name} ({c.kind}, {'in-process sandbox' if c.sandbox else display_url(c.base_url)})"
                for c in self._configs
            )
            where = f"providers {listed}, cheapest first"
        elif self.sandbox:
            where = "sandbox (in-process, no key)"
        elif self._key.reveal() == LOOPBACK_PLACEHOLDER_KEY:
            where = f"sandbox at {display_url(self.base_url)} (no key)"
        else:
            where = f"live {display_url(self.base_url)} (key ...{self._key.hint or '****'})"
        data = str(self.data_dir)
        if self._ledger_url is not None:
            data += f" (ledger {self.ledger_target})"
        return Description(where + self._last_balance(), self.price_sheet, data, self.model)

    def _last_balance(self) -> str:
        """``; balance ... credits (which limit binds, when)`` from the first provider's latest
        balance snapshot, '' when none was taken (a description never opens the ledger or
        asks the service)."""
        if self._ledger is None:
            return ""
        taken = self._ledger.balance_snapshots(provider=self._configs[0].name)
        if not taken or taken[-1].remaining_credits is None:
            return ""
        last = taken[-1]
        binds = {"key": "the key's limit binds", "account": "the account's balance binds"}.get(last.binding or "", "")
        when = time.strftime("%H:%M UTC", time.gmtime(last.taken_at))
        return f"; balance {last.remaining_credits:.10g} credits ({binds + ', ' if binds else ''}at {when})"

    @property
    def provider_configs(self) -> tuple[ProviderConfig, ...]:
        """The providers this session routes across, in the configured order."""
        return self._configs

    @property
    def key_hint(self) -> str | None:
        """At most the key's last four characters, for banners."""
        return None if self.sandbox else self._key.hint

    @property
    def ledger(self) -> LedgerBackend:
        """The ledger (opened on first use): :func:`imgkit.ledger.open_ledger` of
        ``ledger_target``."""
        if self._ledger is None:
            self._ledger = open_ledger(self._ledger_url or self.ledger_target)
        return self._ledger

    @property
    def store(self) -> Store:
        return Store(self.images_dir)

    def _provider(self, config: ProviderConfig) -> Provider:
        transport = None
        if config.sandbox:
            import httpx

            if self._sandbox_app is None:
                from imgkit.sandbox import OPENAI_MODELS, SandboxConfig, create_app

                # Its account balance lives beside the ledger, so it survives a restart as the
                # ledger's runs do (and imgkit.reconcile() holds one against the other). Its
                # OpenAI side plays an account of today, serving every model it can.
                self._sandbox_app = create_app(self.sandbox_config or SandboxConfig(
                    time_scale=0.3, state_path=str(self.data_dir / "sandbox-state.json"), openai_models=OPENAI_MODELS
                ))
            transport = httpx.ASGITransport(app=self._sandbox_app)
        if config.kind == "openai":
            from imgkit.providers.openai import OpenAIProvider

            return OpenAIProvider(
                config.api_key,
                base_url=config.base_url,
                transport=transport,
                timeout=config.timeout or max(self.timeout, 300.0),
                name=config.name,
                price_sheet=config.price_sheet,
                allow_private_urls=config.allow_private_urls,
                **{k: v for k in ("batch_max_requests", "batch_max_bytes") if (v := getattr(config, k)) is not None},
            )
        from imgkit.providers.gateway import GatewayProvider

        return GatewayProvider(
            config.api_key,
            base_url=config.base_url,
            files_url=config.files_url,
            transport=transport,
            timeout=config.timeout or self.timeout,
            name=config.name,
        )

    def _endpoint(self, config: ProviderConfig) -> Endpoint:
        if config.kind == "openai":
            caps = OPENAI_CAPABILITIES
            if config.models:
                # The listed models, each with its own sizes (gpt-image-2 takes ratios and WxH);
                # what OpenAI cannot carry is refused by the request's own rules.
                caps = Capabilities(models=config.models, max_n=caps.max_n, max_images=caps.max_images)
        else:
            caps = Capabilities(models=config.models) if config.models else GATEWAY_CAPABILITIES
        return Endpoint.of(
            self._provider(config),
            sheet=config.price_sheet or self.price_sheet,
            capabilities=caps,
            base_url="in-process sandbox" if config.sandbox else display_url(config.base_url),
        )

    @property
    def router(self) -> Router:
        """The providers, in price order per request, with their circuit breakers (created
        on first use)."""
        if self._router is None:
            from imgkit.providers._http import mask_secrets  # it imports httpx: not at `import imgkit`

            # While the session's clients exist, its keys are masked in httpx/httpcore logs.
            self._unmask = mask_secrets(c.api_key.reveal() for c in self._configs)
            self._router = Router([self._endpoint(c) for c in self._configs], policy=self.policy)
        return self._router

    @property
    def engine(self) -> Engine:
        """The engine (created on first use; it belongs to imgkit's private loop)."""
        if self._engine is None:
            self._engine = Engine(
                self.router,
                self.ledger,
                self.store,
                concurrency=self.concurrency,
                poll=self.poll,
                retry=self.retry,
                journal=Journal(self.data_dir / JOURNAL_NAME),
            )
        return self._engine

    # --- async API ---------------------------------------------------------------------

    async def agenerate(self, prompt: str, **options: Unpack[GenerateOptions]) -> GenerationResult:
        """Generate images without blocking; see :func:`generate` for the options."""
        _check_options(options, GenerateOptions)
        fields: dict[str, Any] = {k: v for k, v in options.items() if k in _FIELDS or k in ("size", "quality")}
        if fields.get("model") is None:
            fields["model"] = self.model
        request = ImageRequest.build(prompt, **fields)
        tags = check_tags(options.get("tags"))
        on_event = _call_on(_running_loop(), options.get("on_event"))
        return await _LOOP.run_async(self._run(request, tags, on_event, options.get("raise_on_error", True)))

    def generate(self, prompt: str, **options: Unpack[GenerateOptions]) -> GenerationResult:
        """Generate images and wait for them; see :func:`generate`."""
        return _LOOP.drive(self.agenerate(prompt, **options))

    async def _run(
        self,
        request: ImageRequest,
        tags: tuple[str, ...],
        on_event: EventHandler | None,
        raise_on_error: bool,
        slot: Slot | None = None,
    ) -> GenerationResult:
        plan = self._plan(request, running=True)
        engine = self.engine
        record = self._new_record(plan, tags=tags)
        try:
            await self._admit(record)
        except StorageError as exc:
            if raise_on_error:
                raise
            # Not recorded and not sent: the run's outcome is this error.
            failed = record.replace(status="failed", error_code="storage_error", error_message=str(exc))
            return GenerationResult(failed, self.images_dir)
        record = await engine.run(plan, record, on_event=on_event, slot=slot)
        if raise_on_error:
            raise_for_record(record)
        return GenerationResult(record, self.images_dir)

    def _new_record(self, plan: RunPlan, *, tags: tuple[str, ...]) -> RunRecord:
        """A new run of ``plan``, recorded with this session's :attr:`identity` (who, which
        project, which machine and image directory)."""
        return self.engine.new_record(plan, tags=tags).replace(**self.identity.fields())

    @property
    def team_ledger(self) -> bool:
        """True when the ledger is shared (a server database), False for the personal SQLite
        file: it decides what :meth:`runs` shows by default and what a personal budget counts."""
        return not isinstance(self.ledger, Ledger)

    def _budget_user(self, budget: Budget) -> str | None:
        """Whose runs ``budget`` counts: None for everyone's (a team budget, or any budget on
        a personal SQLite ledger, which is one person's), else the current user."""
        return self.identity.user if budget.scope == "personal" and self.team_ledger else None

    def _budget_scope(self, budget: Budget) -> str:
        """What ``budget`` counts, in words, for its messages."""
        if budget.scope == "team":
            return "team budget: everyone's runs in the ledger count"
        if self._budget_user(budget) is not None:
            return f"personal budget: {self.identity.user}'s runs in the team ledger count"
        return "personal budget: every run in this ledger counts"

    async def _admit(self, record: RunRecord) -> None:
        """Record the run if the budget allows it; otherwise refuse it before it is sent. The
        check and the insert are one write transaction on the ledger's writer thread, so the
        event loop goes on meanwhile and concurrent runs cannot overspend together."""
        budget = self.budget
        if budget is None:
            return
        if record.est_credits is None:
            # A run the budget cannot count could overspend it without limit: refused, never sent.
            raise BudgetExceeded(
                f"no price for {record.model} {record.size} on provider {record.provider!r} "
                f"(price sheet {self._sheet_of(record.provider) or 'none'}), so the budget of {budget} "
                "cannot account for this run; nothing was sent. Register a price sheet that prices it "
                "(imgkit.pricing.register_price_sheet({...}) and the provider's price_sheet), or remove "
                "the budget with imgkit.budget(None)"
            )
        try:
            spent = await self.ledger.aadmit(
                record, limit=budget.credits, since=budget.period_start(), user=self._budget_user(budget)
            )
        except (sqlite3.Error, OSError, ImgkitError) as exc:
            if isinstance(exc, BudgetExceeded | StorageError):
                raise
            raise storage_error(exc, path=str(self.ledger.path), run_id=record.run_id) from exc
        if spent is not None:
            raise BudgetExceeded(
                f"this run (~{record.est_credits:.10g} credits) would exceed the budget of {budget}: "
                f"{spent:.10g} credits already committed this period ({self._budget_scope(budget)}; "
                "what the service charged or reserved, "
                "and the estimates of runs whose outcome is unknown, which may have cost); nothing was sent"
            )

    def _sheet_of(self, provider: str) -> str | None:
        endpoint = self.router.get(provider)
        return endpoint.sheet if endpoint is not None else None

    def set_budget(self, credits: float | None, per: str | None = None, scope: str = "personal") -> Budget | None:
        """Set (or with None, remove) the spending limit; see :func:`budget`."""
        self.budget = None if credits is None else Budget(credits, per, scope)
        return self.budget

    def remaining_budget(self) -> float | None:
        """Credits left under the budget in the current period (None: no budget); under a
        team budget, what the whole team has left."""
        if self.budget is None:
            return None
        user = self._budget_user(self.budget)
        since = self.budget.period_start()
        spent = self.ledger.spent_credits(since) if user is None else self.ledger.spent_credits(since, user=user)
        return max(0.0, self.budget.credits - spent)

    def _plan(self, request: ImageRequest, *, running: bool = False) -> RunPlan:
        """The router's plan for ``request``: where the run goes first, and its estimate there;
        ValidationError when no configured provider can take the request (nothing is sent or
        recorded). ``running``: the plan is for runs about to be sent (an unpriced one is
        logged, since the budget cannot count it)."""
        router = self.router
        plan = router.plan(request)
        chosen = plan.chosen
        if chosen is None:
            router.check(request)
            raise ConfigError("no provider can take this request")  # pragma: no cover - check() raised
        if running and chosen.estimate is None:
            log.warning(
                "no estimate for this run: price sheet %r of provider %r has no price for %s %s",
                chosen.endpoint.sheet, chosen.name, request.model, request.size,
            )
        return plan

    def _estimate_or_none(self, request: ImageRequest) -> Estimate | None:
        return self._plan(request, running=True).estimate

    def providers(self) -> pd.DataFrame:
        """The providers as a small table: name, kind, base URL, price sheet, the price of a
        reference request (one medium square gpt-image-1 image) in USD and credits, circuit
        state, error rate and mean latency over recent runs, seconds until an open circuit
        is probed, and the last failure."""
        import pandas as pd

        columns = ["name", "kind", "base_url", "price_sheet", "ref_usd", "ref_credits", "state", "error_rate",
                   "latency_s", "outcomes", "retry_in_s", "last_error"]
        df = pd.DataFrame(self.router.table(), columns=columns)
        df["state"] = pd.Categorical(df["state"], categories=["closed", "half_open", "open"])
        for name in ("ref_usd", "ref_credits", "error_rate", "latency_s", "retry_in_s"):
            df[name] = df[name].astype("float64")
        df["outcomes"] = df["outcomes"].astype("Int64")
        return df

    async def aresume(self, *, on_event: EventHandler | None = None) -> list[GenerationResult]:
        """Finish every run an earlier process left unfinished; see :func:`resume`."""
        caller = _running_loop()
        return await _LOOP.run_async(self._resume(_call_on(caller, on_event)))

    def resume(self, *, on_event: EventHandler | None = None) -> list[GenerationResult]:
        """Finish every run an earlier process left unfinished, and wait; see :func:`resume`."""
        return _LOOP.drive(self.aresume(on_event=on_event))

    #: Seconds a resumer's lease on a run lasts; renewed every third of it while the run is
    #: followed, so a killed resumer's runs can be taken over that long after it died.
    LEASE_TTL: float = 120.0

    async def _resume(self, on_event: EventHandler | None) -> list[GenerationResult]:
        """Restore task ids from the journal, claim the unfinished runs no other resumer holds,
        follow them and release them; also look again at failed downloads with result URLs and
        unknown runs with a task id (their notes promise that resume() checks again), which
        are not leased (the ledger leases unfinished runs only)."""
        engine, ledger = self.engine, self.ledger
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        ttl = self.LEASE_TTL
        try:
            await asyncio.to_thread(engine.restore_journal)
            claimed = await asyncio.to_thread(ledger.claim, owner, ttl_s=ttl)
        except (sqlite3.Error, OSError, ImgkitError) as exc:
            if isinstance(exc, StorageError):
                raise
            raise storage_error(exc, path=str(ledger.path), doing="claiming runs to resume in") from exc
        # Runs this process is still working on are not unfinished, only busy: following them
        # a second time would poll the service twice.
        busy = engine.in_flight
        mine = [r for r in claimed if r.run_id not in busy]
        # Runs on a provider this session has no key for stay for a colleague who has it.
        mine = self._resumable(mine)
        again = self._resumable([r for r in self._retryable_downloads() if r.run_id not in busy])
        ids = [r.run_id for r in mine]
        kept = set(ids)
        if len(mine) < len(claimed):
            await asyncio.to_thread(ledger.release, owner, [r.run_id for r in claimed if r.run_id not in kept])
        renewer = asyncio.create_task(self._renew_leases(owner, ids, ttl))
        try:
            records = await asyncio.gather(*(engine.resume(r, on_event=on_event) for r in [*mine, *again]))
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            try:
                await asyncio.to_thread(ledger.release, owner, ids)
            except (sqlite3.Error, OSError, ImgkitError) as exc:  # the leases expire on their own
                log.warning("could not release the resumed runs' leases in %s (%s); they expire in %.0f s",
                            ledger.path, exc, ttl)
        return [GenerationResult(r, self.images_dir) for r in records]

    def _resumable(self, records: list[RunRecord]) -> list[RunRecord]:
        """The runs this session can finish: those whose provider it has (with a key). A run
        started elsewhere on a provider configured differently here is left alone, with a
        warning naming who started it, where, and the provider whose key it needs. A run
        whose images are still to be fetched is written to this machine's image directory."""
        mine: list[RunRecord] = []
        others: list[RunRecord] = []
        for record in records:
            (mine if self.router.get(record.provider) is not None else others).append(record)
        for record in others:
            who = f" by {record.user}" if record.user else ""
            where = f" on host {record.host}" if record.host else ""
            log.warning(
                "run %s (task %s) was started%s%s on provider %r, which is not configured here (no key for it); "
                "left as it is for someone who has that provider's key (or configure it and resume again)",
                record.run_id, record.task_id, who, where, record.provider,
            )
        here = self.identity
        return [r if r.files else r.replace(host=here.host, data_dir=here.data_dir) for r in mine]

    def _retryable_downloads(self) -> list[RunRecord]:
        # Unknown runs whose task id is known (polling lost contact, the deadline passed) and
        # failed downloads with result URLs: their notes promise that resume() checks again.
        return [
            r
            for r in self.ledger.records()
            if (r.status == "failed" and r.error_code == "download_failed" and r.result_urls)
            or (r.status == "unknown" and r.task_id is not None)
        ]

    async def _renew_leases(self, owner: str, run_ids: list[str], ttl: float) -> None:
        """Keep ``owner``'s leases alive while its runs are followed (long runs outlast one)."""
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await asyncio.to_thread(self.ledger.renew, owner, run_ids, ttl_s=ttl)
            except (sqlite3.Error, OSError, ImgkitError) as exc:
                log.warning("could not renew the leases of the runs being resumed (%s); retrying", exc)

    async def abalance(self, *, source: str = "balance") -> Balance | None:
        """The credits the first provider's key can spend, as its service reports them (see
        :func:`balance`), kept as a balance snapshot in the ledger.

        Args:
            source: why it was read, kept with the snapshot (``"studio"``, ...).
        """
        endpoint = self.router.primary
        return await _LOOP.run_async(self._read_balance(endpoint.name, endpoint.provider, source, quiet=False))

    def balance(self, *, source: str = "balance") -> Balance | None:
        """The credits the key can spend (waits for the answer); see :func:`balance`."""
        return _LOOP.drive(self.abalance(source=source))

    async def _read_balance(self, name: str, provider: Provider, source: str, *, quiet: bool) -> Balance | None:
        """Ask ``provider`` for its balance and keep a snapshot of it. ``quiet``: a failure is
        logged, not raised (a sweep goes on without its snapshot)."""
        try:
            balance = await provider.balance()
        except ImgkitError as exc:
            if not quiet:
                raise
            log.warning("the balance of provider %r could not be read (%s); no %s snapshot", name, exc, source)
            return None
        if balance is not None:
            snapshot = BalanceSnapshot(
                taken_at=time.time(),
                provider=name,
                remaining_credits=None if balance.unlimited else balance.remaining_credits,
                key_remaining=balance.key_remaining,
                account_remaining=balance.account_remaining,
                binding=balance.binding,
                source=source,
            )
            try:
                await asyncio.to_thread(self.ledger.add_balance_snapshot, snapshot)
            except (sqlite3.Error, OSError, StorageError) as exc:
                # A balance reading is worth keeping but never worth a run: a full disk or a
                # read-only ledger skips the snapshot (imgkit.reconcile() then has one fewer).
                error = exc if isinstance(exc, StorageError) else storage_error(
                    exc, path=str(self.ledger.path), doing="keeping a balance snapshot in")
                if not quiet:
                    raise error from exc
                log.warning("%s; no %s snapshot", error, source)
        return balance

    async def _snapshot_balances(self, source: str) -> None:
        """A balance snapshot of every provider that reports a balance (before and after a
        sweep); a failure only skips that snapshot."""
        await asyncio.gather(*(self._read_balance(e.name, e.provider, source, quiet=True)
                               for e in self.router.endpoints))

    def reconcile(self, since: Any = None, until: Any = None) -> Reconciliation:
        """Hold the fall of each provider's balance against what the ledger counts as spent;
        see :func:`reconcile`."""
        from imgkit.reconciliation import reconcile as _reconcile

        return _reconcile(self.ledger, since=since, until=until)


    # --- sweeps ------------------------------------------------------------------------

    def plan_sweep(self, prompts: str | Iterable[str], **grid: Unpack[SweepGrid]) -> SweepPlan:
        """Validate every run of the cross product prompts x quality x size and price it;
        see :func:`sweep` for the options."""
        _check_options(grid, SweepGrid)
        fixed: dict[str, Any] = {k: v for k, v in grid.items() if k in _FIELDS}
        if fixed.get("model") is None:
            fixed["model"] = self.model
        if fixed.get("images") is not None:
            fixed["images"] = list(fixed["images"])  # one iterable, read once for every run
        qualities = _as_tuple(grid.get("quality", SWEEP_QUALITIES))
        sizes = _as_tuple(grid.get("size", SWEEP_SIZES))
        requests = tuple(
            ImageRequest.build(p, size=sz, quality=q, **fixed)
            for p, q, sz in itertools.product(_as_tuple(prompts), qualities, sizes)
        )
        if not requests:
            from imgkit.errors import ValidationError

            raise ValidationError("prompts", prompts, "at least one prompt, quality and size")
        estimates = tuple(self._estimate_or_none(r) for r in requests)
        sheets = sorted({e.sheet for e in estimates if e is not None})
        return SweepPlan(requests, estimates, ", ".join(sheets) or self.price_sheet)

    def _confirm(self, plan: SweepPlan, confirm: bool | None) -> None:
        remaining = self.remaining_budget()
        reasons = []
        if plan.credits > self.sweep_threshold:
            reasons.append(f"above the sweep threshold of {self.sweep_threshold:g} credits")
        if remaining is not None and plan.credits > remaining:
            reasons.append(f"above the {remaining:g} credits left in the budget ({self.budget})")
        if not reasons or confirm is True:
            return
        why = f"{plan} is " + " and ".join(reasons)
        if confirm is None and _ask(f"{why}. Run it?"):
            return
        if remaining is not None and plan.credits > remaining:
            # A real overrun: with confirm=True the budget still refuses each run it does not allow.
            raise BudgetExceeded(f"{why}; nothing was sent. Pass confirm=True to run it anyway.")
        raise ConfirmationRequired(
            f"{why}; nothing was sent. Pass confirm=True to run it, or raise the threshold, e.g. "
            f"imgkit.get_session().sweep_threshold = {math.ceil(plan.credits):d} "
            f"(or Session(sweep_threshold=...) / imgkit.configure(sweep_threshold=...))",
            credits=plan.credits,
            threshold=self.sweep_threshold,
        )

    async def asweep(self, prompts: str | Iterable[str], **options: Unpack[SweepOptions]) -> SweepResult:
        """Run a sweep without blocking; see :func:`sweep` for the options."""
        _check_options(options, SweepOptions)
        tags = check_tags(options.get("tags"))
        concurrency = _positive("concurrency", options.get("concurrency"), "a whole number of runs, 1 or more")
        per_minute = _positive("per_minute", options.get("per_minute"), "a number of images per minute above 0")
        grid: dict[str, Any] = {k: v for k, v in options.items() if k in _keys(SweepGrid)}
        if options.get("batch"):
            plan, candidate = self._plan_batch(prompts, grid)
        else:
            plan, candidate = self.plan_sweep(prompts, **grid), None
        _announce(plan)
        self._confirm(plan, options.get("confirm"))
        on_event = _call_on(_running_loop(), options.get("on_event"))
        if candidate is not None:
            return await _LOOP.run_async(self._batch_sweep(plan, candidate, tags, on_event))
        return await _LOOP.run_async(
            self._sweep(plan, tags, concurrency, per_minute, options.get("progress", True), on_event)
        )

    def _plan_batch(self, prompts: str | Iterable[str], grid: dict[str, Any]) -> tuple[SweepPlan, Candidate]:
        """The runs of a batch sweep, priced at the batch rate on the cheapest provider that
        can run them all as one batch (an OpenAI-kind provider). Nothing is sent or recorded
        when none can."""
        from imgkit.errors import ValidationError

        plan = self.plan_sweep(prompts, **grid)
        for request in plan.requests:
            if request.images:
                raise ValidationError("batch", True, "text-to-image runs only (no reference images)",
                                      hint="a batch line cannot carry image files")
            if request.previews:
                raise ValidationError("previews", request.previews, "0 with batch=True (a batch does not stream)")
        router = self.router
        usable = [
            e for e in router.endpoints
            if e.kind == "openai" and callable(getattr(e.provider, "submit_batch", None))
            and all(e.refusal(r) is None for r in plan.requests)
        ]
        if not usable:
            kinds = ", ".join(f"{e.name} ({e.kind})" for e in router.endpoints)
            raise ValidationError("batch", True, "an OpenAI-kind provider that serves every run of the sweep",
                                  hint=f"configured: {kinds}")
        priced: list[tuple[float, int, Candidate, tuple[Estimate | None, ...]]] = []
        for index, endpoint in enumerate(usable):
            estimates: list[Estimate | None] = []
            for request in plan.requests:
                try:
                    estimates.append(Router.price(endpoint, request, batch=True))
                except (ConfigError, ValidationError):
                    estimates.append(None)
            usd = sum(e.usd for e in estimates if e is not None)
            priced.append((usd if all(estimates) else math.inf, index, Candidate(endpoint, None), tuple(estimates)))
        _, _, candidate, estimates_ = min(priced, key=lambda item: item[:2])
        sheets = sorted({e.sheet for e in estimates_ if e is not None})
        batch_plan = SweepPlan(plan.requests, estimates_, ", ".join(sheets) or self.price_sheet)
        return batch_plan, candidate

    async def _batch_sweep(
        self, plan: SweepPlan, candidate: Candidate, tags: tuple[str, ...], on_event: EventHandler | None
    ) -> SweepResult:
        sweep_id = f"sweep-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        engine = self.engine
        refused: list[tuple[ImageRequest, str]] = []
        records: list[RunRecord] = []
        requests: list[ImageRequest] = []
        for request, est in zip(plan.requests, plan.estimates, strict=True):
            run_plan = RunPlan(request, (Candidate(candidate.endpoint, est),))
            record = self._new_record(run_plan, tags=(*tags, sweep_id, "batch"))
            try:
                await self._admit(record)
            except BudgetExceeded as exc:
                refused.append((request, str(exc)))
                continue
            records.append(record)
            requests.append(request)
        sent = await engine.run_batch(candidate, records, requests, on_event=on_event) if records else []
        return SweepResult(plan, sweep_id, [GenerationResult(r, self.images_dir) for r in sent], refused, self)

    def sweep(self, prompts: str | Iterable[str], **options: Unpack[SweepOptions]) -> SweepResult:
        """Run a sweep and wait for it; see :func:`sweep`."""
        return _LOOP.drive(self.asweep(prompts, **options))

    async def _sweep(
        self,
        plan: SweepPlan,
        tags: tuple[str, ...],
        concurrency: int | None,
        per_minute: float | None,
        progress: bool,
        on_event: EventHandler | None,
    ) -> SweepResult:
        sweep_id = f"sweep-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        slots = asyncio.Semaphore(self.concurrency if concurrency is None else int(concurrency))
        limiter = None
        if per_minute is not None:
            from aiolimiter import AsyncLimiter

            # Spread submissions evenly: a bucket of one run's images, refilled at the rate,
            # rather than a minute's worth at once (which upstream limits answer with 429s).
            burst = max(r.n for r in plan.requests)
            limiter = AsyncLimiter(burst, burst * 60.0 / per_minute)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=plan.n_runs, desc=sweep_id, unit="run", file=sys.stdout)  # information, not an error
            on_event = _with_bar(bar, on_event)
        refused: list[tuple[ImageRequest, str]] = []

        async def one(request: ImageRequest) -> GenerationResult | None:
            if limiter is not None:
                # Upstream limits count images: a run of n images takes n slots of the minute.
                await limiter.acquire(request.n)
            try:
                # The sweep's own limit replaces the engine's; the run gives the slot back once
                # the service is done with it (before its downloads).
                async with Slot(slots) as slot:
                    return await self._run(request, (*tags, sweep_id), on_event, False, slot=slot)
            except BudgetExceeded as exc:
                refused.append((request, str(exc)))
                return None
            finally:
                if bar is not None:
                    bar.update(1)

        # The balance before and after, so imgkit.reconcile() can hold its fall against the sweep.
        await self._snapshot_balances("sweep-start")
        try:
            outcomes = await asyncio.gather(*(one(r) for r in plan.requests))
        finally:
            if bar is not None:
                bar.close()
            await self._snapshot_balances("sweep-end")
        results = [r for r in outcomes if r is not None]
        return SweepResult(plan, sweep_id, results, refused, self)

    # --- the ledger, prices and closing ------------------------------------------------

    def runs(self, *, user: str | None = None, project: str | None = None) -> pd.DataFrame:
        """The runs in this session's ledger as a typed DataFrame; see :func:`runs`."""
        df = self.ledger.to_dataframe(data_dir=self.images_dir)
        if user is None:
            user = "me" if self.team_ledger else "all"
        if not isinstance(user, str) or not user.strip():
            raise ValidationError("user", user, '"all", "me" or a user name')
        if user != "all":
            name = self.identity.user if user == "me" else user.strip()
            df = df[(df["user"].astype("string") == name).fillna(False).to_numpy(dtype=bool)]
        if project is not None:
            if not isinstance(project, str):
                raise ValidationError("project", project, "a project name")
            df = df[(df["project"].astype("string") == project.strip()).fillna(False).to_numpy(dtype=bool)]
        return _files_where_written(df, self.images_dir).reset_index(drop=True)

    def backup(self, path: str | Path) -> Path:
        """Copy this session's ledger to ``path`` while it is in use; see :func:`backup`."""
        return self.ledger.backup(path)

    def batches(self, *, refresh: bool = False) -> pd.DataFrame:
        """The batches of this session's ledger, one row each; see :func:`batches`."""
        if refresh:

            async def collect() -> None:
                engine = self.engine
                busy = engine.in_flight
                todo = [r for r in self.ledger.unfinished() if r.batch_id and r.run_id not in busy]
                await asyncio.gather(*(engine.resume(r) for r in todo))

            _LOOP.run(collect())
        return _batch_table(self.runs())

    def estimate(self, **options: Unpack[EstimateOptions]) -> Estimate:
        """The price a run with these settings would be recorded at: on the sheet that prices
        the model for the provider it goes to first (see :meth:`quote`).

        Args:
            quality: a tier the model allows (its default when None).
            size, n, model, resolution, background: as for :func:`generate`.
            images: how many reference images the run would send (their input tokens).
            batch: the Batch price (``sweep(..., batch=True)``) on that provider's sheet.

        Raises:
            ValidationError: a bad setting, or no configured provider takes the request.
            ConfigError: that provider's price sheet does not price the request.
        """
        _check_options(options, EstimateOptions)
        request = _priced_request(options, self.model)
        images, batch = options.get("images", 0), options.get("batch", False)
        plan = self._plan(request)
        chosen = plan.chosen
        assert chosen is not None  # _plan raised otherwise
        if plan.estimate is not None and not images and not batch:
            return plan.estimate
        # Reference images counted, the batch price, or no price: the router's own pricing
        # says which (its error says why a sheet does not price the request).
        return Router.price(chosen.endpoint, request, images=images, batch=batch)

    def quote(self, request: ImageRequest) -> Estimate | None:
        """The estimate ``request`` would be recorded at if run now: the router's plan's first
        candidate, on its own price sheet (None when that sheet does not price it).

        Raises:
            ValidationError: no configured provider can take the request.

        Example:
            >>> session.quote(ImageRequest.build("a fox", quality="low"))
            Estimate(credits=1.59..., usd=..., sheet='evolink-table-2026-11', ...)
        """
        return self._plan(request).estimate

    def close(self) -> None:
        """Close connections and the ledger (dropping the journal's entries it holds)."""
        engine = self._engine
        if engine is not None:
            try:
                engine.compact_journal()
            except (sqlite3.Error, OSError, ImgkitError) as exc:  # the journal keeps them; resume() tries again
                log.debug("task journal not compacted at close: %s", exc)
        router, self._router, self._engine = self._router, None, None
        if router is not None:
            with contextlib.suppress(RuntimeError):  # called from imgkit's own loop
                _LOOP.run(router.aclose())
        self._unmask, unmask = _nothing, self._unmask
        unmask()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


def _nothing() -> None:
    return None


def _files_where_written(df: pd.DataFrame, local: Path) -> pd.DataFrame:
    """``df`` with the ``files``/``thumbs`` of runs written to another image directory
    (another machine's, or another ``$IMGKIT_IMAGES``) under that directory rather than
    ``local``. Only those rows are touched; a personal ledger has none."""
    if not len(df):
        return df
    dirs = df["data_dir"].astype("string")
    other = (dirs.notna() & (dirs != str(local))).fillna(False).to_numpy(dtype=bool)
    if not other.any():
        return df
    df = df.copy()
    cut = len(f"{local}/")
    for column in ("files", "thumbs"):
        values = list(df[column])
        for i in other.nonzero()[0]:
            root = Path(str(dirs.iloc[i]))
            values[i] = [str(root / p[cut:]) if p.startswith(f"{local}/") else p for p in values[i]]
        df[column] = values
    return df


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int):
        return (value,)
    return tuple(value)


def _with_bar(bar: Any, on_event: EventHandler | None) -> EventHandler:
    """``on_event``, and the bar shows the latest event's message (a retry: "rate limited;
    retrying in 1.3 s (2 of 5)") after its count."""

    def seen(event: JobEvent) -> None:
        if event.message:
            bar.set_postfix_str(event.message[:80], refresh=True)
        if on_event is not None:
            on_event(event)

    return seen


def _ask(question: str) -> bool:
    """Ask yes/no where a person can answer (a kernel with stdin, a terminal); else False."""
    interactive = "ipykernel" in sys.modules or (sys.stdin is not None and sys.stdin.isatty())
    if not interactive:
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except Exception:  # StdinNotImplementedError in kernels without stdin, EOFError, ...
        return False
    return answer.strip().lower() in ("y", "yes")


def _announce(message: SweepPlan) -> None:
    """Show ``message`` where a user reads information, never on stderr (which notebooks
    show in a pink box, like an error): in IPython as display output (its HTML in a
    notebook), elsewhere on stdout above any progress bar."""
    shell = _ipython()
    if shell is not None:
        shell.display_pub.publish(data={"text/plain": str(message), "text/html": message._repr_html_()})
        return
    from tqdm import tqdm

    tqdm.write(str(message), file=sys.stdout)


def _ipython() -> Any:
    """The running IPython shell (a kernel or a terminal), or None. Never imports IPython:
    if it is not loaded, nothing is running it."""
    module = sys.modules.get("IPython")
    get_ipython = getattr(module, "get_ipython", None)
    return get_ipython() if get_ipython is not None else None


# --- the default session and module functions --------------------------------------------

_DEFAULT: Session | None = None
_DEFAULT_LOCK = threading.Lock()


def get_session() -> Session:
    """The default session, made from the environment on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Session()
        return _DEFAULT


def configure(**settings: Any) -> Session:
    """Replace the default session; takes :class:`Session`'s arguments (any other keyword is
    a ConfigError that lists them).

    Example:
        >>> imgkit.configure(api_key=os.environ["MY_KEY"], price_sheet="evolink-formula-2026-11")
        >>> imgkit.configure(model="gpt-image-2")   # the model of runs that name none
    """
    global _DEFAULT
    _check_settings(settings)
    session = Session(**settings)
    with _DEFAULT_LOCK:
        old, _DEFAULT = _DEFAULT, session
    if old is not None:
        old.close()
    return session


def _check_settings(settings: Mapping[str, Any]) -> None:
    """Refuse a keyword :class:`Session` does not take, naming the ones it does (rather than
    Python's TypeError about ``Session.__init__``)."""
    import inspect

    known = sorted(p for p in inspect.signature(Session.__init__).parameters if p != "self")
    unknown = sorted(set(settings) - set(known))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown setting {unknown[0]!r}{hint}; the settings are: {', '.join(known)}")


def login(prompt: str = "EvoLink API key: ", **settings: Any) -> Session:
    """Ask for the API key without echoing it (getpass) and use the live service.

    Where no one can type (no terminal, a kernel without stdin), it raises ConfigError and
    says to set ``$EVOLINK_API_KEY`` instead.
    """
    import getpass
    import warnings

    _check_settings(settings)
    try:
        with warnings.catch_warnings():
            # Without a terminal getpass warns and reads stdin in the clear: refuse instead.
            warnings.simplefilter("error", getpass.GetPassWarning)
            # Wrapped at once: no plain local holds the key, so a traceback with locals cannot show it.
            key = Secret(getpass.getpass(prompt).strip())
    except (EOFError, OSError, NotImplementedError, getpass.GetPassWarning) as exc:
        # NotImplementedError: IPython's StdinNotImplementedError, a kernel without stdin.
        raise ConfigError(
            f"login() needs a terminal or a notebook to type the key in, and there is none here "
            f"({type(exc).__name__}); set ${KEY_ENV} instead, or call imgkit.configure(api_key=...)"
        ) from exc
    if not key.reveal():
        raise ConfigError("no key entered; the session is unchanged")
    return configure(api_key=key, **settings)


def generate(prompt: str, **options: Unpack[GenerateOptions]) -> GenerationResult:
    """Generate images and wait for them.

    Args:
        prompt: what to draw (up to 2000 characters for gpt-image-1), with at least one
            visible character, as text UTF-8 can encode.
        size: ``1:1`` (default), ``2:3``, ``3:2`` or ``1024x1024``, ``1024x1536``, ``1536x1024``.
        quality: ``low`` (0.26x), ``medium`` (1x, default) or ``high`` (3.91x); always sent,
            since the service's own default is high.
        n: images in this run, 1-10 (default 1).
        images: 1-16 reference images (URLs, local paths, bytes or PIL images) for
            image-to-image or editing; local ones are uploaded through the file API.
        model: a name from :data:`imgkit.request.MODELS`; the session's default when left
            out (``configure(model=...)`` or ``$IMGKIT_MODEL``, else ``gpt-image-1``).
        resolution: ``1K``, ``2K`` or ``4K`` with a ratio size (gpt-image-2).
        background: ``opaque``, ``transparent`` (the stored file keeps its alpha) or ``auto``.
        mask: a PNG with alpha, the first reference image's size (an edit): uploaded as
            ``mask_url`` to the gateway, sent as the multipart ``mask`` to OpenAI.
        output_format, output_compression, moderation, input_fidelity: OpenAI's options;
            the run goes only to a provider that can carry every field it sets (a
            ValidationError names the field and the provider kinds that take it).
        previews: 1-3 partial images streamed while drawing (OpenAI-kind providers); each
            reaches ``on_event`` as a ``processing`` event whose ``preview`` holds the image.
        tags: labels kept in the ledger, for reports: one text (one tag) or a list of up
            to 32 texts of at most 64 characters each.
        on_event: called with a :class:`~imgkit.request.JobEvent` at each status change.
        raise_on_error: raise ``TaskFailed``/``UnknownOutcome`` for a run that did not
            complete (it is in the ledger either way); False returns the result instead
            (default True).

    Example:
        >>> res = imgkit.generate("A beautiful colorful sunset over the ocean", size="3:2",
        ...                       quality="low", n=2)
        >>> res.paths, res.cost
    """
    return _LOOP.drive(get_session().agenerate(prompt, **options))


async def agenerate(prompt: str, **options: Unpack[GenerateOptions]) -> GenerationResult:
    """:func:`generate` without blocking, with the same options.

    Example:
        >>> res = await imgkit.agenerate("a red fox", quality="low")
    """
    return await get_session().agenerate(prompt, **options)


def sweep(prompts: str | Iterable[str], **options: Unpack[SweepOptions]) -> SweepResult:
    """Run every combination of prompts x quality x size, concurrently, and wait.

    Before anything is sent it states the total estimated cost. Above the session's
    ``sweep_threshold`` it asks (in a notebook or terminal) and elsewhere raises
    :class:`~imgkit.errors.ConfirmationRequired` unless ``confirm=True``; above the remaining
    budget it raises :class:`~imgkit.errors.BudgetExceeded`. Runs the budget refuses are
    listed in ``result.refused`` and never sent.

    Args:
        prompts: one prompt or several.
        quality: tiers to try (default ``("low", "medium", "high")``).
        size: sizes to try, either form (default ``("1:1",)``).
        n: images per run.
        model: the model for every run (the session's default when left out).
        images: reference images for every run.
        tags: labels for every run (one text, or up to 32 texts of at most 64 characters);
            the sweep's id is added.
        concurrency: the most runs in flight, 1 or more (default: the session's).
        per_minute: the most images submitted per minute, above 0 (upstream tiers can be
            as low as 5).
        confirm: True to skip the question; False to refuse without asking.
        progress: show a progress bar (tqdm's notebook bar in Jupyter; default True).
        on_event: called with a :class:`~imgkit.request.JobEvent` at each status change of
            any run.
        batch: send every run as one OpenAI Batch (half price, done within 24 h) on an
            OpenAI-kind provider, or as several when the runs exceed one batch's limits
            (lines, bytes: the provider's ``batch_max_requests``/``batch_max_bytes``);
            text-to-image runs only. Each run is recorded ``pending`` with its ``batch_id``
            (and the task id ``<batch id>/<run id>``); :func:`resume` (in any later kernel)
            collects the finished batches, :func:`batches` lists them. ``concurrency``,
            ``per_minute`` and ``progress`` do not apply.

    Example:
        >>> out = imgkit.sweep(["a red fox", "a lighthouse"], quality=["low", "high"],
        ...                    size=["1:1", "3:2"])
        >>> out.runs().groupby("quality")["est_credits"].sum()
    """
    return _LOOP.drive(get_session().asweep(prompts, **options))


async def asweep(prompts: str | Iterable[str], **options: Unpack[SweepOptions]) -> SweepResult:
    """:func:`sweep` without blocking, with the same options.

    Example:
        >>> out = await imgkit.asweep("a red fox", quality=["low", "high"], confirm=True)
    """
    return await get_session().asweep(prompts, **options)


def budget(credits: float | None = None, per: str | None = None, scope: str = "personal") -> Budget | None:
    """Set a spending limit for the default session, checked before every submission.

    Args:
        credits: the limit; None removes it.
        per: ``"day"``, ``"month"`` or None (all time).
        scope: ``"personal"`` (default): on a team ledger, the current user's runs count;
            on the personal SQLite ledger, every run in it. ``"team"``: everyone's runs in
            the ledger count (checked and recorded in one transaction, so a team's kernels
            cannot overspend together).

    Example:
        >>> imgkit.budget(credits=100, per="day")
        >>> imgkit.budget(credits=5000, per="month", scope="team")
    """
    return get_session().set_budget(credits, per, scope)


def runs(*, user: str | None = None, project: str | None = None) -> pd.DataFrame:
    """The runs in the ledger, as a typed pandas DataFrame (one row per run), with who ran
    each (``user``), for which ``project``, on which ``host`` and where its files are.

    Args:
        user: ``"all"`` (everyone's runs), ``"me"`` (the current user's: ``$IMGKIT_USER``,
            else ``$JUPYTERHUB_USER``, else the OS user) or a user's name. By default every
            run of a personal SQLite ledger, and the current user's runs on a team ledger
            (``IMGKIT_LEDGER=postgresql://...``).
        project: only runs recorded for this project (``configure(project=...)``).

    Example:
        >>> imgkit.runs(user="all").groupby(["user", "project"], observed=True)["est_credits"].sum()
    """
    return get_session().runs(user=user, project=project)


def backup(path: str | Path) -> Path:
    """Copy the ledger to ``path`` (a new file) with SQLite's online backup: one file that
    holds every committed run, safe to take while runs are being written (copying
    ``ledger.sqlite3`` by hand can miss rows still in ``ledger.sqlite3-wal``).

    Example:
        >>> imgkit.backup("ledger-2026-12-02.sqlite3")
    """
    return get_session().backup(path)


def batches(*, refresh: bool = False) -> pd.DataFrame:
    """The OpenAI Batches that ``sweep(..., batch=True)`` sent, from the ledger: one row per
    batch with its provider, when it was sent, its runs by state (``pending`` counts those
    not yet collected), its estimate at the batch price (``est_credits``) and what the
    collected runs were charged (``charged_credits``), newest first.

    Args:
        refresh: first look at the service and collect the batches that have finished, as
            :func:`resume` does (for batch runs only).

    Example:
        >>> out = imgkit.sweep(["a red fox", "a lighthouse"], quality=["low", "high"], batch=True)
        >>> imgkit.batches(refresh=True)[["batch_id", "runs", "pending", "completed", "charged_credits"]]
    """
    return get_session().batches(refresh=refresh)


def _batch_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per batch id of ``df`` (imgkit.runs()), newest first (pure)."""
    import pandas as pd

    runs = df[df["batch_id"].notna().to_numpy(dtype=bool)]
    state = runs["status"].astype(str)
    table = pd.DataFrame({
        "batch_id": runs["batch_id"].astype(str),
        "provider": runs["provider"].astype(str),
        "submitted_at": runs["submitted_at"],
        "pending": (~state.isin(["completed", "failed", "unknown"])).astype("int64"),
        "completed": (state == "completed").astype("int64"),
        "failed": (state == "failed").astype("int64"),
        "unknown": (state == "unknown").astype("int64"),
        "images": runs["n_images"].fillna(0).astype("int64"),
        "est_credits": runs["est_credits"].astype("float64"),
        "charged_credits": runs["credits_charged"].astype("float64"),
    })
    out = table.groupby("batch_id", sort=False).agg(
        provider=("provider", "first"), submitted_at=("submitted_at", "min"), runs=("pending", "size"),
        pending=("pending", "sum"), completed=("completed", "sum"), failed=("failed", "sum"),
        unknown=("unknown", "sum"), images=("images", "sum"), est_credits=("est_credits", "sum"),
        charged_credits=("charged_credits", lambda c: c.sum(min_count=1)),
    )
    return out.reset_index().sort_values("submitted_at", ascending=False, kind="stable").reset_index(drop=True)


def providers() -> pd.DataFrame:
    """The configured providers as a table: name, kind, base URL, price sheet, the price of one
    medium square image on each (``ref_usd``, ``ref_credits``), circuit state (``closed``,
    ``open``, ``half_open``), recent error rate and mean latency.

    Example:
        >>> imgkit.configure(providers=[{"name": "evolink", "kind": "gateway"},
        ...                             {"name": "openai", "kind": "openai"}])
        >>> imgkit.providers()[["name", "ref_usd", "state", "error_rate"]]
    """
    return get_session().providers()


def resume(*, on_event: EventHandler | None = None) -> list[GenerationResult]:
    """Finish runs left unfinished by a restart or crash: poll their tasks, download results.

    Task ids the ledger missed (its write failed after the create: a full disk, a read-only
    ledger, a database away) are put back from the task journal first, so those runs finish
    with no second create. Runs are leased to this call while it follows them: several
    ``resume()`` calls at once, in any processes, never take the same run, and the runs of a
    resumer that died are taken over once its lease expires (:attr:`Session.LEASE_TTL`).

    Args:
        on_event: called with a :class:`~imgkit.request.JobEvent` at each status change.

    Example:
        >>> done = imgkit.resume()
    """
    return _LOOP.drive(get_session().aresume(on_event=on_event))


async def aresume(*, on_event: EventHandler | None = None) -> list[GenerationResult]:
    """:func:`resume` without blocking, with the same options."""
    return await get_session().aresume(on_event=on_event)


def balance(*, source: str = "balance") -> Balance | None:
    """The credits the key can spend now, as the service reports them; kept in the ledger as
    a balance snapshot (:func:`reconcile` compares snapshots with the ledger's spend).

    The gateway reports the key's own remaining credits and the account's: a limited key can
    spend the smaller of the two, an unlimited key the account's. The result says which limit
    binds (``binding``) and keeps both figures. None when the service reports no balance (an
    OpenAI-kind first provider).

    Args:
        source: why it was read, kept with the snapshot.

    Example:
        >>> print(imgkit.balance())
        1095.3996 credits (the account's balance binds; the key's own limit is 99416.4429)
    """
    return get_session().balance(source=source)


def reconcile(since: Any = None, until: Any = None) -> Reconciliation:
    """Hold the fall in each provider's account balance against what the ledger counts as
    spent over the same interval.

    The interval runs from the last balance snapshot at or before ``since`` to the first at
    or after ``until`` (snapshots are taken by :func:`balance`, when the studio opens, and
    before and after every sweep). For each provider the result's table gives the balance at
    both ends, what the account lost (``observed``), what the ledger counts as spent by runs
    sent in between (``expected``), the ``drift`` (observed - expected) and what unknown runs
    may have cost; its ``runs`` list what may explain a drift: unknown runs, images made but
    not downloaded, and "other use of the key" for what nothing in the ledger explains.

    Args:
        since, until: a date, datetime, ISO text or Unix time (UTC when no timezone is
            given); None for the first and the last snapshot.

    Example:
        >>> imgkit.balance(); out = imgkit.sweep(["a fox"], quality="low", confirm=True)
        >>> imgkit.reconcile().drift
        0.0
    """
    return get_session().reconcile(since=since, until=until)


def estimate(*, sheet: str | None = None, **options: Unpack[EstimateOptions]) -> Estimate:
    """Estimated credits, USD and CNY of a request, naming the price sheet used.

    Without ``sheet``, the default session's price and model (:meth:`Session.estimate`), or
    the default sheet's and ``$IMGKIT_MODEL``'s when no session exists yet; with it, the sheet that prices the model for
    that sheet's provider (:func:`~imgkit.pricing.sheet_for`). Either way the model's
    resolution tier and the reference images count.

    Args:
        quality: a tier the model allows (its default when None).
        size, n, model, resolution, background: as for :func:`generate`.
        images: how many reference images the run would send.
        batch: the Batch price (half, on OpenAI's sheets).
        sheet: a price sheet's name.

    Example:
        >>> imgkit.estimate(quality="low", size="3:2", n=2)
        Estimate(credits=1.84924, usd=0.0257, cny=0.1824, sheet='evolink-table-2026-11', ...)
        >>> imgkit.estimate(model="gpt-image-2", size="16:9", resolution="4K", quality="high").sheet
        'evolink-gpt-image-2-tokens-2026-12'
    """
    if sheet is None and _DEFAULT is not None:  # one price per session
        return _DEFAULT.estimate(**options)
    _check_options(options, EstimateOptions)
    request = _priced_request(options, resolve_model())
    return _estimate(quality=request.quality, size=request.size, n=request.n, model=request.model,
                     sheet=sheet_for(request.model, sheet), resolution=request.resolution,
                     images=options.get("images", 0), batch=options.get("batch", False))


def _priced_request(options: EstimateOptions, model: str) -> ImageRequest:
    """The request an estimate prices, validated as a run would be (a square image unless a
    size is given; ``model`` unless one is given; the model's own default tier when
    ``quality`` is None)."""
    fields: dict[str, Any] = {k: v for k, v in options.items() if k not in ("images", "batch") and v is not None}
    fields.setdefault("size", "1:1")
    fields.setdefault("model", model)
    return ImageRequest.build("estimate", **fields)
