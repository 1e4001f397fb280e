"""Providers: the services that turn a request into images, behind one small protocol."""

from imgkit.providers.base import Balance, Provider, Submission, TaskSnapshot
from imgkit.providers.gateway import GatewayProvider, parse_task

__all__ = ["Balance", "GatewayProvider", "Provider", "Submission", "TaskSnapshot", "parse_task"]
