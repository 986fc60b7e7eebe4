"""Pure-ASGI middleware (no buffering, safe with streaming): body-size limit and request metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Metrics


class BodyLimit:
    """413 for bodies over ``max_bytes``: at once from Content-Length, or while reading a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: Sequence[str] = ()) -> None:
        self.app, self.max_bytes, self.exempt = app, max_bytes, tuple(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(send, int(length))
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._message(seen))
            return msg

        await self.app(scope, limited, send)

    def _message(self, n: int) -> str:
        return (f"request body of {n}+ bytes is over the limit of {self.max_bytes} (PROMPT_TAGGER_MAX_BODY_BYTES); "
                "split it into smaller calls or stream it to /v1/ingest")

    async def _too_large(self, send: Send, n: int) -> None:
        body = json.dumps({"detail": self._message(n)}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "other"
            self.metrics.requests.inc(name, str(status))
            self.metrics.latency.observe(time.perf_counter() - t0, name)
