"""Configuration as pure code: which providers a session routes across, with which keys.

Sources, in order: ``configure(providers=[...])``, a TOML file (``providers=path`` or
``$IMGKIT_HOME/providers.toml``), or the single gateway of ``api_key``/``base_url`` (the
environment's ``$EVOLINK_API_KEY`` when no key is given, the in-process sandbox when there is
none). A listed provider whose key variable is not set is skipped with a warning, unless none
would be left. A ``base_url`` on this machine (a sandbox served with ``imgkit sandbox --port
N``) needs no key: a plain placeholder is sent. Nothing here opens a connection: the session
turns these values into providers.

Example:
    >>> from imgkit.config import ProviderConfig
    >>> ProviderConfig.from_mapping({"name": "openai", "kind": "openai", "api_key_env": "OPENAI_API_KEY"})
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgkit.errors import ConfigError
from imgkit.pricing import get_sheet
from imgkit.request import DEFAULT_MODEL, MODELS, Secret, successor

__all__ = [
    "BUDGET_SCOPES",
    "DEFAULT_KEY_ENVS",
    "KEY_ENV",
    "LIVE_URLS",
    "LOOPBACK_PLACEHOLDER_KEY",
    "MODEL_ENV",
    "OPENAI_KEY_ENV",
    "PROJECT_ENV",
    "PROVIDERS_FILE",
    "SANDBOX_URL",
    "USER_ENVS",
    "Budget",
    "Identity",
    "ProviderConfig",
    "check_project",
    "check_url",
    "current_user",
    "display_url",
    "is_loopback",
    "read_providers_file",
    "resolve_model",
    "resolve_providers",
]

SANDBOX_URL = "http://sandbox"
KEY_ENV = "EVOLINK_API_KEY"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
#: The environment variable that names the default model (``configure(model=...)`` wins).
MODEL_ENV = "IMGKIT_MODEL"
#: The providers file in the data directory (``$IMGKIT_HOME/providers.toml``).
PROVIDERS_FILE = "providers.toml"
LIVE_URLS = {"gateway": "https://api.evolink.ai", "openai": "https://api.openai.com/v1"}
DEFAULT_KEY_ENVS = {"gateway": KEY_ENV, "openai": OPENAI_KEY_ENV}
#: The key sent to a sandbox on this machine when no key is given (it takes any token). It
#: is plainly not a key, so nothing real is ever sent where none was asked for.
LOOPBACK_PLACEHOLDER_KEY = "sk-imgkit-loopback-placeholder-not-a-key"

log = logging.getLogger("imgkit")


class _NoKey(ConfigError):
    """A provider whose API-key variable is not set (skipped when others are usable)."""

    def __init__(self, message: str, env: str) -> None:
        super().__init__(message)
        self.env = env


def check_url(url: object, *, name: str = "base_url") -> str:
    """``url`` without a trailing slash, once it is an http(s) URL with a host and, if it
    names one, a port from 1 to 65535; ConfigError otherwise."""
    text = str(url).strip()
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{name} {display_url(text)!r} is not an http:// or https:// URL with a host, "
            f"e.g. {name}='http://127.0.0.1:8000'"
        )
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{name} {display_url(text)!r} has no valid port: give one from 1 to 65535")
    return text.rstrip("/")


def is_loopback(url: str) -> bool:
    """True for a URL on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def display_url(url: str) -> str:
    """``url`` fit to show: any ``user:password@`` part is replaced by ``***@``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


#: What a budget counts: ``personal`` (the current user's runs on a team ledger, the whole
#: file on a personal SQLite ledger) or ``team`` (everyone's runs in the ledger).
BUDGET_SCOPES = ("personal", "team")


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit, checked against the ledger before every submission.

    Attributes:
        credits: the most credits runs may commit in one period.
        per: ``"day"`` or ``"month"`` (local calendar), or None for all time.
        scope: ``"personal"`` (default) or ``"team"`` (see :data:`BUDGET_SCOPES`).
    """

    credits: float
    per: str | None = None
    scope: str = "personal"

    def __post_init__(self) -> None:
        from imgkit.errors import ValidationError

        if isinstance(self.credits, bool) or not isinstance(self.credits, int | float) or self.credits < 0:
            raise ValidationError("credits", self.credits, "a number of credits >= 0")
        if self.per not in (None, "day", "month"):
            raise ValidationError("per", self.per, '"day", "month" or None')
        if self.scope not in BUDGET_SCOPES:
            raise ValidationError("scope", self.scope, '"personal" (default) or "team"')

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
        text = f"{self.credits:g} credits" + (f" per {self.per}" if self.per else "")
        return text + (" for the team" if self.scope == "team" else "")


#: The environment variables that name the user, in order (then the OS user).
USER_ENVS = ("IMGKIT_USER", "JUPYTERHUB_USER")
#: The environment variable that names the project (``configure(project=...)`` wins).
PROJECT_ENV = "IMGKIT_PROJECT"
_NAME_LIMIT = 64


def current_user(*, getuser: Callable[[], str] = getpass.getuser) -> str:
    """Who is running imgkit: ``$IMGKIT_USER``, else JupyterHub's ``$JUPYTERHUB_USER``, else
    the OS user (``getuser``); never fails (a process whose uid has no name gets ``uid-N``)."""
    for env in USER_ENVS:
        value = os.environ.get(env, "").strip()
        if value:
            return value
    try:
        return getuser()
    except Exception:  # OSError (3.13+) or KeyError: no name for this uid, no LOGNAME/USER
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def check_project(project: object) -> str | None:
    """``project`` stripped, or None for no project; ValidationError unless it is a text of
    1-64 visible characters (or None)."""
    from imgkit.errors import ValidationError

    if project is None:
        return None
    if not isinstance(project, str) or not project.strip() or len(project.strip()) > _NAME_LIMIT \
            or not project.strip().isprintable():
        raise ValidationError("project", project, f"a name of 1-{_NAME_LIMIT} printable characters, or None")
    return project.strip()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who makes a session's runs, for what, and where their files go: what every run
    records in the ledger's ``user``, ``project``, ``host`` and ``data_dir`` columns.

    Attributes:
        user: :func:`current_user`.
        project: ``configure(project=...)``, else ``$IMGKIT_PROJECT``, else None.
        host: this machine's name (``socket.gethostname()``).
        data_dir: the directory the run's image files are written to (the session's image
            store: ``$IMGKIT_IMAGES``, else the data directory).
    """

    user: str
    project: str | None
    host: str
    data_dir: str

    @classmethod
    def current(cls, *, project: str | None, images_dir: Path) -> Identity:
        """The identity of a session made now: ``project`` (checked) or ``$IMGKIT_PROJECT``."""
        chosen = project if project is not None else (os.environ.get(PROJECT_ENV, "").strip() or None)
        try:
            host = socket.gethostname()
        except OSError:  # pragma: no cover - gethostname does not fail on the platforms imgkit runs on
            host = "unknown"
        return cls(user=current_user(), project=check_project(chosen), host=host, data_dir=str(images_dir))

    def fields(self) -> dict[str, str | None]:
        """The run fields it fills: ``record.replace(**identity.fields())``."""
        return {"user": self.user, "project": self.project, "host": self.host, "data_dir": self.data_dir}


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
        models: the models it serves (default: every model for a gateway; gpt-image-1,
            gpt-image-1.5 and gpt-image-2 for openai).
        timeout: seconds per request (default: the session's; at least 300 s for openai,
            whose answer waits for the images).
        sandbox: served by the in-process sandbox (no key needed).
        allow_private_urls: let URL references that imgkit fetches itself point at loopback,
            private or link-local addresses (None: only for a sandbox or a loopback
            ``base_url``; see :class:`imgkit.providers._http.UrlGuard`).
        batch_max_requests, batch_max_bytes: the most lines and bytes of one Batch's input
            file (openai kind; OpenAI's limits, 50,000 and 200 MB, when None); a larger
            ``sweep(..., batch=True)`` is sent as several batches.
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
    allow_private_urls: bool | None = None
    batch_max_requests: int | None = None
    batch_max_bytes: int | None = None

    _KEYS = frozenset(
        {"name", "kind", "api_key", "api_key_env", "base_url", "files_url", "price_sheet", "models", "timeout",
         "sandbox", "allow_private_urls", "batch_max_requests", "batch_max_bytes"}
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
                raise _NoKey(f"{source}: provider {name!r} has no API key: set ${env} (or give api_key_env)", env)
            key = Secret(value)
        if sandbox:
            base_url = SANDBOX_URL + ("/openai/v1" if kind == "openai" else "")
        else:
            base_url = check_url(entry["base_url"]) if entry.get("base_url") else LIVE_URLS[kind]
        sheet = entry.get("price_sheet")
        if kind == "openai" and sheet is None:
            sheet = "openai-tokens-2026-11"
        if sheet is not None:
            sheet = get_sheet(str(sheet)).name  # an unknown sheet fails here, not mid-run
        models = entry.get("models")
        timeout = entry.get("timeout")
        limits: dict[str, int] = {}
        for limit in ("batch_max_requests", "batch_max_bytes"):
            value = entry.get(limit)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{source}: provider {name!r} has {limit}={value!r}; give a whole number, 1 or more")
            limits[limit] = value
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
            allow_private_urls=(
                bool(entry["allow_private_urls"]) if entry.get("allow_private_urls") is not None else None
            ),
            **limits,
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
    return _usable(entries, source=str(path)), dict(routing)


def _usable(entries: Iterable[Mapping[str, Any] | ProviderConfig], *, source: str) -> list[ProviderConfig]:
    """The entries as configs, skipping (with a warning) those whose key variable is not set,
    unless that leaves none."""
    configs: list[ProviderConfig] = []
    missing: list[_NoKey] = []
    for entry in entries:
        try:
            configs.append(ProviderConfig.from_mapping(entry, source=source))
        except _NoKey as exc:
            missing.append(exc)
    if not configs:
        if missing:
            names = ", ".join(f"${m.env}" for m in missing)
            raise ConfigError(f"no provider has an API key ({names}): " + "; ".join(str(m) for m in missing))
        raise ConfigError(f"{source}: give at least one provider")
    for m in missing:
        log.warning("%s; skipping it and routing across %s", m, ", ".join(repr(c.name) for c in configs))
    return configs


def resolve_providers(
    *,
    api_key: str | Secret | None = None,
    base_url: str | None = None,
    files_url: str | None = None,
    sandbox: bool | None = None,
    providers: Iterable[Mapping[str, Any] | ProviderConfig] | str | Path | None = None,
    data_dir: Path,
) -> tuple[tuple[ProviderConfig, ...], dict[str, Any]]:
    """The providers a session routes across and the ``[routing]`` settings, from
    :class:`~imgkit.session.Session`'s arguments, the environment and ``data_dir``'s
    ``providers.toml``."""
    routing: dict[str, Any] = {}
    if providers is not None and (api_key, base_url, files_url, sandbox) != (None, None, None, None):
        raise ConfigError(
            "give either providers=[...] or api_key/base_url/files_url/sandbox (a single gateway), not both"
        )
    if providers is None and api_key is None and base_url is None and sandbox is None:
        found = data_dir / PROVIDERS_FILE
        if found.is_file():
            providers = found
    if isinstance(providers, str | Path):
        configs, routing = read_providers_file(providers)
    elif providers is not None:
        configs = _usable(providers, source="providers")
    else:
        if sandbox and base_url is not None:
            raise ConfigError(
                "sandbox=True is the in-process sandbox, which has no URL, so base_url would be ignored. For a "
                "sandbox served with `imgkit sandbox --port N`, pass only base_url='http://127.0.0.1:N' (no key "
                "needed); for the in-process one, only sandbox=True"
            )
        if base_url is not None:
            base_url = check_url(base_url)
        if files_url is not None:
            files_url = check_url(files_url, name="files_url")
        key = _secret(api_key) or _secret(os.environ.get(KEY_ENV))
        if sandbox is None:
            sandbox = key is None and base_url is None
        if not sandbox and key is None:
            if base_url is not None and is_loopback(base_url):
                key = Secret(LOOPBACK_PLACEHOLDER_KEY)  # a sandbox on this machine takes any token
            elif base_url is not None:
                raise ConfigError(
                    f"no API key for {display_url(base_url)}: pass api_key=... (or set ${KEY_ENV}, or call "
                    "imgkit.login()). A sandbox served on this machine with `imgkit sandbox --port N` needs no "
                    "key: pass base_url='http://127.0.0.1:N' alone"
                )
            else:
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
    return tuple(configs), routing


def resolve_model(model: object = None) -> str:
    """The model runs use when they name none: ``model`` when given (``configure(model=...)``),
    else ``$IMGKIT_MODEL``, else gpt-image-1.

    Raises:
        ValidationError: the model is not one imgkit knows; the message lists those it does,
            and names the successor of a retired one.

    Example:
        >>> resolve_model("gpt-image-2")
        'gpt-image-2'
    """
    from imgkit.errors import ValidationError

    field, value = "model", model
    if model is None:
        field, value = MODEL_ENV, os.environ.get(MODEL_ENV)
        if value is None or not value.strip():
            return DEFAULT_MODEL
    name = value.strip().lower() if isinstance(value, str) else value
    if name in MODELS:
        return str(name)
    later = successor(name) if isinstance(name, str) else None
    hint = f"{name} is retired or not served; use {later}" if later else ""
    raise ValidationError(field, value, "one of " + ", ".join(MODELS), hint=hint)


def _secret(value: str | Secret | None) -> Secret | None:
    """A key as a Secret, or None when there is none (empty counts as none)."""
    if value is None or isinstance(value, Secret):
        return value if value is None or value.reveal() else None
    return Secret(value) if value.strip() else None
