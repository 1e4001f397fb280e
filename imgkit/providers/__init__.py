"""Providers: the services that turn a request into images, behind one small protocol."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from imgkit.providers.base import Balance, Provider, Submission, TaskSnapshot

if TYPE_CHECKING:
    from imgkit.providers.gateway import GatewayProvider, parse_task

__all__ = ["Balance", "GatewayProvider", "Provider", "Submission", "TaskSnapshot", "parse_task"]

# The concrete providers import httpx, and httpx imports its CLI's rich and click: about half
# of `import imgkit` (benchmarks/import_time.py). They load on first use instead.
_LAZY = {"GatewayProvider": "imgkit.providers.gateway", "parse_task": "imgkit.providers.gateway"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
