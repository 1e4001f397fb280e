"""The facade a notebook user calls: generate/agenerate, runs, resume, estimate, configure.

One async core. The sync functions are thin wrappers that hand the coroutine to one private
event-loop thread and wait, so they work from plain scripts and from inside a kernel whose
loop is already running, without patching that loop (and still work where a user applied
nest_asyncio). The async functions run their work on the same private loop too, so all runs
of a process share one HTTP connection pool, one concurrency limit and one ledger writer.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import datetime as dt
import html
import itertools
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from imgkit.engine import Engine, EventHandler, PollPolicy, RetryPolicy, Slot, raise_for_record
from imgkit.errors import BudgetExceeded, ConfigError
from imgkit.ledger import Ledger
from imgkit.pricing import Estimate, get_sheet
from imgkit.pricing import estimate as _estimate
from imgkit.providers.base import Balance, Provider
from imgkit.providers.router import (
    GATEWAY_CAPABILITIES,
    OPENAI_CAPABILITIES,
    BreakerPolicy,
    Capabilities,
    Endpoint,
    Router,
    RunPlan,
)
from imgkit.request import DEFAULT_MODEL, ImageRequest, JobEvent, RunRecord, Secret
from imgkit.store import Store, default_data_dir

if TYPE_CHECKING:
    import pandas as pd
    from PIL.Image import Image

    from imgkit.sandbox import SandboxConfig

__all__ = [
    "Budget",
    "Cost",
    "GenerationResult",
    "ProviderConfig",
    "Session",
    "SweepPlan",
    "SweepResult",
    "agenerate",
    "aresume",
    "asweep",
    "budget",
    "configure",
    "estimate",
    "generate",
    "get_session",
    "login",
    "providers",
    "resume",
    "runs",
    "sweep",
]

log = logging.getLogger("imgkit")
T = TypeVar("T")

SANDBOX_URL = "http://sandbox"
KEY_ENV = "EVOLINK_API_KEY"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
#: The providers file in the data directory (``$IMGKIT_HOME/providers.toml``).
PROVIDERS_FILE = "providers.toml"
LIVE_URLS = {"gateway": "https://api.evolink.ai", "openai": "https://api.openai.com/v1"}
DEFAULT_KEY_ENVS = {"gateway": KEY_ENV, "openai": OPENAI_KEY_ENV}


# --- the private loop --------------------------------------------------------------------


class _LoopThread:
    """One daemon thread running an event loop for all of imgkit's I/O."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    ready.set()
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name="imgkit-loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for it (blocking the caller)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("imgkit's sync functions cannot be called from its own loop; await the a* form")
        future = self.submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            # Ctrl-C / the notebook's stop button: cancel the work, keep what the ledger has.
            future.cancel()
            raise

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the private loop from any other loop."""
        if self.in_loop_thread():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))


_LOOP = _LoopThread()


def _call_on(loop: asyncio.AbstractEventLoop | None, handler: EventHandler | None) -> EventHandler | None:
    """Deliver events to ``handler`` on ``loop`` (the caller's), or directly when None."""
    if handler is None or loop is None:
        return handler

    def deliver(event: JobEvent) -> None:
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(handler, event)

    return deliver


# --- results -----------------------------------------------------------------------------


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
                with PILImage.open(path) as im:
                    im.load()
                    loaded.append(im.copy())
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


# --- budgets -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit, checked against the ledger before every submission.

    Attributes:
        credits: the most credits runs may commit in one period.
        per: ``"day"`` or ``"month"`` (local calendar), or None for all time.
    """

    credits: float
    per: str | None = None

    def __post_init__(self) -> None:
        from imgkit.errors import ValidationError

        if isinstance(self.credits, bool) or not isinstance(self.credits, int | float) or self.credits < 0:
            raise ValidationError("credits", self.credits, "a number of credits >= 0")
        if self.per not in (None, "day", "month"):
            raise ValidationError("per", self.per, '"day", "month" or None')

    def period_start(self, now: float | None = None) -> float | None:
        """Unix time at which the current period began (None: all time)."""
        if self.per is None:
            return None
        local = dt.datetime.fromtimestamp(time.time() if now is None else now).astimezone()
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.per == "month":
            start = start.replace(day=1)
        return start.timestamp()

    def __str__(self) -> str:
        return f"{self.credits:g} credits" + (f" per {self.per}" if self.per else "")


# --- providers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One provider a user has: an entry of ``configure(providers=[...])`` or of
    ``$IMGKIT_HOME/providers.toml``.

    Attributes:
        name: its name in the ledger and the provider table (unique).
        kind: ``gateway`` (the async task API) or ``openai`` (OpenAI's Images API, or any
            OpenAI-compatible base URL).
        api_key: the key (masked).
        base_url: the API root (``.../v1`` for the openai kind).
        files_url: the gateway's file API host, when it differs from ``base_url``.
        price_sheet: the sheet that prices its runs (default: the session's sheet for a
            gateway, ``openai-tokens-2026-11`` for openai).
        models: the models it serves (default: every model for a gateway, gpt-image-1 for
            openai).
        timeout: seconds per request (default: the session's; at least 300 s for openai,
            whose answer waits for the images).
        sandbox: served by the in-process sandbox (no key needed).
    """

    name: str
    kind: str
    api_key: Secret
    base_url: str
    files_url: str | None = None
    price_sheet: str | None = None
    models: tuple[str, ...] | None = None
    timeout: float | None = None
    sandbox: bool = False

    _KEYS = frozenset(
        {"name", "kind", "api_key", "api_key_env", "base_url", "files_url", "price_sheet", "models", "timeout",
         "sandbox"}
    )

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any] | ProviderConfig, *, source: str = "providers") -> ProviderConfig:
        """Check one entry. Keys come from ``api_key``, else the environment variable named
        by ``api_key_env``, else the kind's usual variable (``EVOLINK_API_KEY``,
        ``OPENAI_API_KEY``). A file may only name variables: no secret is written to disk.
        """
        if isinstance(entry, ProviderConfig):
            return entry
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{source}: each provider is a mapping of settings, not {type(entry).__name__}")
        unknown = sorted(set(entry) - cls._KEYS)
        if unknown:
            raise ConfigError(f"{source}: unknown provider settings {unknown}; known: {sorted(cls._KEYS)}")
        kind = str(entry.get("kind", "gateway"))
        sandbox = bool(entry.get("sandbox", False))
        if kind == "sandbox":
            kind, sandbox = "gateway", True
        if kind not in LIVE_URLS:
            raise ConfigError(f"{source}: provider kind {kind!r} is not one of gateway, openai, sandbox")
        name = str(entry.get("name") or ("sandbox" if sandbox and kind == "gateway" else kind))
        from_file = source.endswith(".toml")
        if "api_key" in entry and from_file:
            raise ConfigError(
                f"{source}: provider {name!r} has an api_key; files must not hold keys. "
                f'Name the environment variable instead: api_key_env = "{DEFAULT_KEY_ENVS[kind]}"'
            )
        key: Secret | None = None
        given = entry.get("api_key")
        if isinstance(given, Secret):
            key = given
        elif given:
            key = Secret(str(given))
        elif sandbox:
            key = Secret("sk-sandbox")
        else:
            env = str(entry.get("api_key_env") or DEFAULT_KEY_ENVS[kind])
            value = os.environ.get(env)
            if not value:
                raise ConfigError(f"{source}: provider {name!r} has no API key: set ${env} (or give api_key_env)")
            key = Secret(value)
        if sandbox:
            base_url = SANDBOX_URL + ("/openai/v1" if kind == "openai" else "")
        else:
            base_url = str(entry.get("base_url") or LIVE_URLS[kind]).rstrip("/")
        sheet = entry.get("price_sheet")
        if kind == "openai" and sheet is None:
            sheet = "openai-tokens-2026-11"
        if sheet is not None:
            sheet = get_sheet(str(sheet)).name  # an unknown sheet fails here, not mid-run
        models = entry.get("models")
        timeout = entry.get("timeout")
        return cls(
            name=name,
            kind=kind,
            api_key=key,
            base_url=base_url,
            files_url=entry.get("files_url"),
            price_sheet=sheet,
            models=tuple(models) if models else None,
            timeout=float(timeout) if timeout is not None else None,
            sandbox=sandbox,
        )


def read_providers_file(path: str | Path) -> tuple[list[ProviderConfig], dict[str, Any]]:
    """The providers and the ``[routing]`` settings of a TOML file such as::

        [routing]
        failure_threshold = 3   # consecutive failures that open a provider's circuit
        cooldown = 60           # seconds before it is probed again

        [[providers]]
        name = "evolink"
        kind = "gateway"
        api_key_env = "EVOLINK_API_KEY"

        [[providers]]
        name = "openai"
        kind = "openai"
        api_key_env = "OPENAI_API_KEY"
    """
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    entries = data.get("providers", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: needs at least one [[providers]] table")
    routing = data.get("routing", {})
    if not isinstance(routing, dict) or set(routing) - {"failure_threshold", "cooldown"}:
        raise ConfigError(f"{path}: [routing] takes failure_threshold and cooldown")
    return [ProviderConfig.from_mapping(e, source=str(path)) for e in entries], dict(routing)


# --- the session -------------------------------------------------------------------------


class Session:
    """Settings, provider, ledger and store for a set of runs.

    Most users never build one: the module functions (:func:`generate`, :func:`runs`, ...)
    use a default session made from the environment, and :func:`configure` replaces it.

    Args:
        api_key: the gateway key; when None, ``$EVOLINK_API_KEY``; when neither, the sandbox.
        base_url: the task API host (a loopback sandbox in tests); the live host by default.
        files_url: the file API host; defaults to the live files host, or ``base_url``.
        data_dir: where the ledger and images live (``$IMGKIT_HOME`` by default).
        sandbox: force the in-process sandbox (True) or forbid it (False).
        sandbox_config: the in-process sandbox's settings.
        price_sheet: the price sheet estimates use.
        concurrency: the most tasks in flight at once.
        poll, retry: the engine's policies.
        timeout: seconds per HTTP request.
        budget: a spending limit checked before every submission.
        sweep_threshold: sweeps estimated above this many credits ask before running.
        providers: the providers to route across, cheapest first: a list of
            :class:`ProviderConfig` mappings (``{"name", "kind", "api_key" | "api_key_env",
            "base_url", "price_sheet", "models", "timeout", "sandbox"}``) or the path of a
            TOML file. Without it (and without ``api_key``/``base_url``/``sandbox``),
            ``$IMGKIT_HOME/providers.toml`` is read when it exists; otherwise the single
            gateway (or sandbox) of before.
        failure_threshold: consecutive failures that open a provider's circuit.
        cooldown: seconds an open circuit is skipped before it is probed again.

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
    ) -> None:
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
        routing: dict[str, Any] = {}
        if providers is not None and (api_key, base_url, files_url, sandbox) != (None, None, None, None):
            raise ConfigError(
                "give either providers=[...] or api_key/base_url/files_url/sandbox (a single gateway), not both"
            )
        if providers is None and api_key is None and base_url is None and sandbox is None:
            found = self.data_dir / PROVIDERS_FILE
            if found.is_file():
                providers = found
        if isinstance(providers, str | Path):
            configs, routing = read_providers_file(providers)
        elif providers is not None:
            configs = [ProviderConfig.from_mapping(e) for e in providers]
            if not configs:
                raise ConfigError("providers: give at least one provider")
        else:
            key = _secret(api_key) or _secret(os.environ.get(KEY_ENV))
            if sandbox is None:
                sandbox = key is None and base_url is None
            if not sandbox and key is None:
                raise ConfigError(
                    f"no API key: set ${KEY_ENV}, call imgkit.login(), or imgkit.configure(api_key=...)"
                )
            configs = [
                ProviderConfig(
                    name="sandbox" if sandbox else "gateway",
                    kind="gateway",
                    api_key=key if key is not None and not sandbox else Secret("sk-sandbox"),
                    base_url=SANDBOX_URL if sandbox else (base_url or LIVE_URLS["gateway"]),
                    files_url=files_url,
                    sandbox=bool(sandbox),
                )
            ]
        self._configs = tuple(configs)
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
        self.concurrency = concurrency
        self.poll = poll
        self.retry = retry
        self.timeout = timeout
        self.budget = budget
        self.sweep_threshold = sweep_threshold
        self._ledger: Ledger | None = None
        self._engine: Engine | None = None
        self._router: Router | None = None
        self._sandbox_app: Any = None

    def __repr__(self) -> str:
        if not hasattr(self, "price_sheet"):  # shown in a traceback while __init__ failed
            return "<imgkit.Session (not configured)>"
        return f"<imgkit.Session {self.describe()}>"

    def describe(self) -> str:
        """One line: sandbox or live, where, the price sheet and the data directory."""
        if len(self._configs) > 1:
            listed = ", ".join(
                f"{c.name} ({c.kind}, {'in-process sandbox' if c.sandbox else c.base_url})" for c in self._configs
            )
            where = f"providers {listed}, cheapest first"
        elif self.sandbox:
            where = "sandbox (in-process, no key)"
        else:
            where = f"live {self.base_url} (key ...{self._key.hint or '****'})"
        return f"{where}; price sheet {self.price_sheet}; data {self.data_dir}"

    @property
    def provider_configs(self) -> tuple[ProviderConfig, ...]:
        """The providers this session routes across, in the configured order."""
        return self._configs

    @property
    def key_hint(self) -> str | None:
        """At most the key's last four characters, for banners."""
        return None if self.sandbox else self._key.hint

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.data_dir / "ledger.sqlite3")
        return self._ledger

    @property
    def store(self) -> Store:
        return Store(self.data_dir)

    def _provider(self, config: ProviderConfig) -> Provider:
        transport = None
        if config.sandbox:
            import httpx

            if self._sandbox_app is None:
                from imgkit.sandbox import SandboxConfig, create_app

                self._sandbox_app = create_app(self.sandbox_config or SandboxConfig(time_scale=0.3))
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
                caps = Capabilities(
                    models=config.models, sizes=caps.sizes, max_n=caps.max_n, max_images=caps.max_images
                )
        else:
            caps = Capabilities(models=config.models) if config.models else GATEWAY_CAPABILITIES
        return Endpoint.of(
            self._provider(config),
            sheet=config.price_sheet or self.price_sheet,
            capabilities=caps,
            base_url="in-process sandbox" if config.sandbox else config.base_url,
        )

    @property
    def router(self) -> Router:
        """The providers, in price order per request, with their circuit breakers (created
        on first use)."""
        if self._router is None:
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
            )
        return self._engine

    # --- async API ---------------------------------------------------------------------

    async def agenerate(
        self,
        prompt: str,
        *,
        size: str = "1:1",
        quality: str = "medium",
        n: int = 1,
        images: Iterable[Any] | None = None,
        model: str = DEFAULT_MODEL,
        tags: Iterable[str] = (),
        on_event: EventHandler | None = None,
        raise_on_error: bool = True,
    ) -> GenerationResult:
        """Generate images without blocking; see :func:`generate`."""
        request = ImageRequest.build(prompt, model=model, size=size, quality=quality, n=n, images=images)
        caller = _running_loop()
        return await _LOOP.run_async(
            self._run(request, tuple(tags), _call_on(caller, on_event), raise_on_error)
        )

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
        record = engine.new_record(plan, tags=tags)
        self._admit(record)
        record = await engine.run(plan, record, on_event=on_event, slot=slot)
        if raise_on_error:
            raise_for_record(record)
        return GenerationResult(record, self.data_dir)

    def _admit(self, record: RunRecord) -> None:
        """Record the run if the budget allows it; otherwise refuse it before it is sent."""
        budget = self.budget
        if budget is None:
            return
        if record.est_credits is None:
            log.warning("run %s has no estimate; the budget cannot account for it", record.run_id)
        spent = self.ledger.admit(record, limit=budget.credits, since=budget.period_start())
        if spent is not None:
            raise BudgetExceeded(
                f"this run (~{record.est_credits:.10g} credits) would exceed the budget of {budget}: "
                f"{spent:.10g} credits already committed this period; nothing was sent"
            )

    def set_budget(self, credits: float | None, per: str | None = None) -> Budget | None:
        """Set (or with None, remove) the spending limit; see :func:`budget`."""
        self.budget = None if credits is None else Budget(credits, per)
        return self.budget

    def remaining_budget(self) -> float | None:
        """Credits left under the budget in the current period (None: no budget)."""
        if self.budget is None:
            return None
        spent = self.ledger.spent_credits(self.budget.period_start())
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

    async def _resume(self, on_event: EventHandler | None) -> list[GenerationResult]:
        engine = self.engine
        # Runs this process is still working on are not unfinished, only busy: following them
        # a second time would poll the service twice.
        busy = engine.in_flight
        pending = [r for r in [*self.ledger.unfinished(), *self._retryable_downloads()] if r.run_id not in busy]
        records = await asyncio.gather(*(engine.resume(r, on_event=on_event) for r in pending))
        return [GenerationResult(r, self.data_dir) for r in records]

    def _retryable_downloads(self) -> list[RunRecord]:
        # Also unknown runs whose task id is known (polling lost contact, the deadline passed):
        # their notes promise that resume() checks again.
        return [
            r
            for r in self.ledger.records()
            if (r.status == "failed" and r.error_code == "download_failed" and r.result_urls)
            or (r.status == "unknown" and r.task_id is not None)
        ]

    async def abalance(self) -> Balance | None:
        """The credits balance the service reports."""
        return await _LOOP.run_async(self.engine.provider.balance())


    # --- sweeps ------------------------------------------------------------------------

    def plan_sweep(
        self,
        prompts: str | Iterable[str],
        *,
        quality: str | Iterable[str] = ("low", "medium", "high"),
        size: str | Iterable[str] = ("1:1",),
        n: int = 1,
        model: str = DEFAULT_MODEL,
        images: Iterable[Any] | None = None,
    ) -> SweepPlan:
        """Validate every run of the cross product prompts x quality x size and price it."""
        refs = list(images) if images is not None else None
        requests = tuple(
            ImageRequest.build(p, model=model, size=sz, quality=q, n=n, images=refs)
            for p, q, sz in itertools.product(_as_tuple(prompts), _as_tuple(quality), _as_tuple(size))
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
        raise BudgetExceeded(f"{why}; nothing was sent. Pass confirm=True to run it anyway.")

    async def asweep(
        self,
        prompts: str | Iterable[str],
        *,
        quality: str | Iterable[str] = ("low", "medium", "high"),
        size: str | Iterable[str] = ("1:1",),
        n: int = 1,
        model: str = DEFAULT_MODEL,
        images: Iterable[Any] | None = None,
        tags: Iterable[str] = (),
        concurrency: int | None = None,
        per_minute: float | None = None,
        confirm: bool | None = None,
        progress: bool = True,
        on_event: EventHandler | None = None,
    ) -> SweepResult:
        """Run a sweep without blocking; see :func:`sweep`."""
        plan = self.plan_sweep(prompts, quality=quality, size=size, n=n, model=model, images=images)
        _announce(str(plan))
        self._confirm(plan, confirm)
        caller = _running_loop()
        return await _LOOP.run_async(
            self._sweep(plan, tuple(tags), concurrency, per_minute, progress, _call_on(caller, on_event))
        )

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
        slots = asyncio.Semaphore(concurrency or self.concurrency)
        limiter = None
        if per_minute:
            from aiolimiter import AsyncLimiter

            # Spread submissions evenly: a bucket of one run's images, refilled at the rate,
            # rather than a minute's worth at once (which upstream limits answer with 429s).
            burst = max(r.n for r in plan.requests)
            limiter = AsyncLimiter(burst, burst * 60.0 / per_minute)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=plan.n_runs, desc=sweep_id, unit="run")
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

        try:
            outcomes = await asyncio.gather(*(one(r) for r in plan.requests))
        finally:
            if bar is not None:
                bar.close()
        results = [r for r in outcomes if r is not None]
        return SweepResult(plan, sweep_id, results, refused, self)

    def sweep(self, prompts: str | Iterable[str], **kwargs: Any) -> SweepResult:
        """Run a sweep and wait for it; see :func:`sweep`."""
        confirm = kwargs.pop("confirm", None)
        on_event = kwargs.pop("on_event", None)
        run_kwargs = {k: kwargs.pop(k) for k in ("tags", "concurrency", "per_minute", "progress") if k in kwargs}
        plan = self.plan_sweep(prompts, **kwargs)
        _announce(str(plan))
        self._confirm(plan, confirm)
        return _LOOP.run(
            self._sweep(
                plan,
                tuple(run_kwargs.get("tags", ())),
                run_kwargs.get("concurrency"),
                run_kwargs.get("per_minute"),
                run_kwargs.get("progress", True),
                on_event,
            )
        )

    # --- sync API ----------------------------------------------------------------------

    def generate(self, prompt: str, **kwargs: Any) -> GenerationResult:
        """Generate images and wait for them; see :func:`generate`."""
        request_kwargs = {k: kwargs.pop(k) for k in ("size", "quality", "n", "images", "model") if k in kwargs}
        request = ImageRequest.build(prompt, **request_kwargs)
        return _LOOP.run(
            self._run(request, tuple(kwargs.pop("tags", ())), kwargs.pop("on_event", None),
                      kwargs.pop("raise_on_error", True))
        )

    def resume(self, *, on_event: EventHandler | None = None) -> list[GenerationResult]:
        return _LOOP.run(self._resume(on_event))

    def balance(self) -> Balance | None:
        return _LOOP.run(self.engine.provider.balance())

    def runs(self) -> pd.DataFrame:
        """Every run in this session's ledger as a typed DataFrame."""
        return self.ledger.to_dataframe(data_dir=self.data_dir)

    def estimate(
        self, *, quality: str = "medium", size: str = "1:1", n: int = 1, model: str = DEFAULT_MODEL
    ) -> Estimate:
        """The price a run with these settings would be recorded at: on the price sheet of
        the provider it goes to first (see :meth:`quote`).

        Raises:
            ValidationError: a bad setting, or no configured provider takes the request.
            ConfigError: that provider's price sheet does not price the request.
        """
        request = ImageRequest.build("estimate", model=model, size=size, quality=quality, n=n)
        plan = self._plan(request)
        if plan.estimate is not None:
            return plan.estimate
        chosen = plan.chosen
        assert chosen is not None  # _plan raised otherwise
        if chosen.endpoint.sheet is None:
            raise ConfigError(f"provider {chosen.name!r} has no price sheet")
        # The sheet does not price the request: its own error says why.
        return _estimate(
            quality=request.quality, size=request.size, n=request.n, model=model, sheet=chosen.endpoint.sheet
        )

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
        """Close connections and the ledger."""
        router, self._router, self._engine = self._router, None, None
        if router is not None:
            with contextlib.suppress(RuntimeError):  # called from imgkit's own loop
                _LOOP.run(router.aclose())
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


def _secret(value: str | Secret | None) -> Secret | None:
    """A key as a Secret, or None when there is none (empty counts as none)."""
    if value is None or isinstance(value, Secret):
        return value if value is None or value.reveal() else None
    return Secret(value) if value.strip() else None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None



# --- sweeps ------------------------------------------------------------------------------


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
        return round(sum(getattr(e, attr) for e in self.estimates if e is not None), 5)

    @property
    def credits(self) -> float:
        return self._total("credits")

    @property
    def usd(self) -> float:
        return self._total("usd")

    @property
    def cny(self) -> float:
        return self._total("cny")

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


class SweepResult:
    """The runs of a sweep: completed, failed and those the budget refused (never sent)."""

    def __init__(
        self,
        plan: SweepPlan,
        sweep_id: str,
        results: list[GenerationResult],
        refused: list[tuple[ImageRequest, str]],
        session: Session,
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


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int):
        return (value,)
    return tuple(value)


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


def _announce(text: str) -> None:
    # Shown above any progress bar, on stderr, so it is never mixed into a result.
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)


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
    """Replace the default session; takes :class:`Session`'s arguments.

    Example:
        >>> imgkit.configure(api_key=os.environ["MY_KEY"], price_sheet="evolink-formula-2026-11")
    """
    global _DEFAULT
    session = Session(**settings)
    with _DEFAULT_LOCK:
        old, _DEFAULT = _DEFAULT, session
    if old is not None:
        old.close()
    return session


def login(prompt: str = "EvoLink API key: ", **settings: Any) -> Session:
    """Ask for the API key without echoing it (getpass) and use the live service."""
    import getpass

    # Wrapped at once: no plain local holds the key, so a traceback with locals cannot show it.
    key = Secret(getpass.getpass(prompt).strip())
    if not key.reveal():
        raise ConfigError("no key entered; the session is unchanged")
    return configure(api_key=key, **settings)


def generate(
    prompt: str,
    *,
    size: str = "1:1",
    quality: str = "medium",
    n: int = 1,
    images: Iterable[Any] | None = None,
    model: str = DEFAULT_MODEL,
    tags: Iterable[str] = (),
    on_event: EventHandler | None = None,
    raise_on_error: bool = True,
) -> GenerationResult:
    """Generate images and wait for them.

    Args:
        prompt: what to draw (up to 2000 characters for gpt-image-1).
        size: ``1:1``, ``2:3``, ``3:2`` or ``1024x1024``, ``1024x1536``, ``1536x1024``.
        quality: ``low`` (0.26x), ``medium`` (1x) or ``high`` (3.91x); always sent, since the
            service's own default is high.
        n: images in this run, 1-10.
        images: 1-16 reference images (URLs, local paths, bytes or PIL images) for
            image-to-image or editing; local ones are uploaded through the file API.
        model: ``gpt-image-1`` or a sibling from :data:`imgkit.MODELS`.
        tags: labels kept in the ledger, for reports.
        on_event: called with a :class:`JobEvent` at each status change.
        raise_on_error: raise ``TaskFailed``/``UnknownOutcome`` for a run that did not
            complete (it is in the ledger either way); False returns the result instead.

    Example:
        >>> res = imgkit.generate("A beautiful colorful sunset over the ocean", size="3:2",
        ...                       quality="low", n=2)
        >>> res.paths, res.cost
    """
    return get_session().generate(
        prompt, size=size, quality=quality, n=n, images=images, model=model, tags=tags,
        on_event=on_event, raise_on_error=raise_on_error,
    )


async def agenerate(
    prompt: str,
    *,
    size: str = "1:1",
    quality: str = "medium",
    n: int = 1,
    images: Iterable[Any] | None = None,
    model: str = DEFAULT_MODEL,
    tags: Iterable[str] = (),
    on_event: EventHandler | None = None,
    raise_on_error: bool = True,
) -> GenerationResult:
    """:func:`generate` without blocking: ``res = await imgkit.agenerate(...)``."""
    return await get_session().agenerate(
        prompt, size=size, quality=quality, n=n, images=images, model=model, tags=tags,
        on_event=on_event, raise_on_error=raise_on_error,
    )


def sweep(
    prompts: str | Iterable[str],
    *,
    quality: str | Iterable[str] = ("low", "medium", "high"),
    size: str | Iterable[str] = ("1:1",),
    n: int = 1,
    model: str = DEFAULT_MODEL,
    images: Iterable[Any] | None = None,
    tags: Iterable[str] = (),
    concurrency: int | None = None,
    per_minute: float | None = None,
    confirm: bool | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run every combination of prompts x quality x size, concurrently, and wait.

    Before anything is sent it states the total estimated cost. Above the session's
    ``sweep_threshold`` or the remaining budget it asks (in a notebook or terminal) and
    refuses elsewhere unless ``confirm=True``. Runs the budget refuses are listed in
    ``result.refused`` and never sent.

    Args:
        prompts: one prompt or several.
        quality: tiers to try.
        size: sizes to try, either form.
        n: images per run.
        model: the model for every run.
        images: reference images for every run.
        tags: labels for every run; the sweep's id is added.
        concurrency: the most runs in flight (default: the session's).
        per_minute: the most images submitted per minute (upstream tiers can be as low as 5).
        confirm: True to skip the question; False to refuse without asking.
        progress: show a progress bar (tqdm's notebook bar in Jupyter).

    Example:
        >>> out = imgkit.sweep(["a red fox", "a lighthouse"], quality=["low", "high"],
        ...                    size=["1:1", "3:2"])
        >>> out.runs().groupby("quality")["est_credits"].sum()
    """
    return get_session().sweep(
        prompts, quality=quality, size=size, n=n, model=model, images=images, tags=tags,
        concurrency=concurrency, per_minute=per_minute, confirm=confirm, progress=progress,
    )


async def asweep(prompts: str | Iterable[str], **kwargs: Any) -> SweepResult:
    """:func:`sweep` without blocking: ``out = await imgkit.asweep(...)``."""
    return await get_session().asweep(prompts, **kwargs)


def budget(credits: float | None = None, per: str | None = None) -> Budget | None:
    """Set a spending limit for the default session, checked before every submission.

    Args:
        credits: the limit; None removes it.
        per: ``"day"``, ``"month"`` or None (all time).

    Example:
        >>> imgkit.budget(credits=100, per="day")
    """
    return get_session().set_budget(credits, per)


def runs() -> pd.DataFrame:
    """Every run in the ledger, as a typed pandas DataFrame (one row per run)."""
    return get_session().runs()


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
    """Finish runs left unfinished by a restart or crash: poll their tasks, download results."""
    return get_session().resume(on_event=on_event)


async def aresume(*, on_event: EventHandler | None = None) -> list[GenerationResult]:
    """:func:`resume` without blocking."""
    return await get_session().aresume(on_event=on_event)


def estimate(
    *,
    quality: str = "medium",
    size: str = "1:1",
    n: int = 1,
    model: str = DEFAULT_MODEL,
    sheet: str | None = None,
) -> Estimate:
    """Estimated credits, USD and CNY of a request, naming the price sheet used.

    Example:
        >>> imgkit.estimate(quality="low", size="3:2", n=2)
        Estimate(credits=1.84924, usd=0.0257, cny=0.1824, sheet='evolink-table-2026-11', ...)
    """
    request = ImageRequest.build("estimate", model=model, size=size, quality=quality, n=n)
    chosen = sheet or (_DEFAULT.price_sheet if _DEFAULT is not None else None)
    return _estimate(quality=request.quality, size=request.size, n=request.n, model=model, sheet=chosen)

