"""An offline fake of the EvoLink image gateway that speaks its real HTTP protocol, and of
OpenAI's Images API (with streaming, Files and Batch) under ``/openai/v1``.

It implements the wire spec on its own and imports no client code (request validation,
providers, engine), so a bug in the client and a bug in the fake cannot cancel each other
out. Its one imgkit import is :mod:`imgkit.pricing`, for the shipped price sheets: what the
gateway reserves for gpt-image-2 and its beta, and gpt-image-2's output tokens on the OpenAI
side, are read from the same dated price data a user's estimate is.

Use it in-process through httpx's ASGI transport, or on a real loopback port:

    import httpx
    from imgkit.sandbox import SandboxConfig, create_app, running_sandbox
    app = create_app(SandboxConfig(time_scale=0.01))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                               base_url="http://sandbox",
                               headers={"Authorization": "Bearer sk-sandbox"})
    with running_sandbox(SandboxConfig(time_scale=0.01)) as base_url:
        httpx.get(f"{base_url}/_sandbox/health")

Prompt directives (removed before rendering) make outcomes deterministic:

- `[[fail:<task_error_code>]]`: the task ends `failed` with that code.
- `[[http:<status>]]`: create answers that HTTP error (400, 401, 402, 403, 429 with
  Retry-After: 1, 500, 502, 503) and creates nothing.
- `[[accept_then_500]]`: the task is created and charged, then create answers 500.
- `[[accept_then_hang]]`: the task is created and charged, then the response is held for
  `FaultConfig.hang_seconds`.
- `[[seconds:<float>]]`: the task takes exactly that many wall seconds (time_scale ignored).

Endpoints beyond the gateway's: `GET /_sandbox/health`, `GET /_sandbox/tasks` (every task
ever created, with its status now and `completed_at`), `GET|POST /_sandbox/faults` (rates of
`FaultConfig`; `download_403/404/410` refuse result links, `result_fail_first` makes each
link fail its first N requests).

Credits: `GET /v1/credits` reports the key (limited by `SandboxConfig.key_credits`, or
unlimited) and the account. The account falls by what each task reserves and rises again when
a task fails; with `SandboxConfig.state_path` it is kept in a JSON file and survives a restart.

Models: the gateway side takes gpt-image-1, gpt-image-1.5, gpt-image-2 (sizes from the
documented ratio x resolution table, `background=transparent` drawn with real alpha, a
`mask_url` uploaded to the sandbox drawn as a visibly edited region) and gpt-image-2-beta
(its narrower rules). The OpenAI side serves `SandboxConfig.openai_models` (gpt-image-1 alone
by default, an account from before gpt-image-2; `OPENAI_MODELS` lists all it can serve, as
imgkit's in-process sandbox and `imgkit sandbox` do).
"""

from ._app import create_app
from ._server import running_sandbox, serve
from ._state import OPENAI_MODELS, FaultConfig, SandboxConfig

__all__ = ["OPENAI_MODELS", "FaultConfig", "SandboxConfig", "create_app", "running_sandbox", "serve"]
