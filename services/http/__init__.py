"""The OpenAI-compatible HTTP front door: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``.

A separate service in front of the gRPC gateway, which it reaches through the public
``cascade.v1.Cascade`` API only. Run it with ``python -m services.http [--config FILE]``.
"""

from services.http.server import HttpService

__all__ = ["HttpService"]
