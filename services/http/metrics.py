"""ASGI middleware: every HTTP request's latency, by route template and status code (services/core/metrics.py)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core import metrics


class RequestMetrics:
    """Records ``cascade.http.duration`` once the response has ended (a stream: its last event)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500  # no response started: the server answers 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The route's template, not the path: /v1/models/{name:path} stays one series whatever is asked.
            route = scope.get("route")
            labels = {"path": getattr(route, "path", "unmatched"), "status": str(status)}
            metrics.HTTP_DURATION.record(time.perf_counter() - started, labels)
