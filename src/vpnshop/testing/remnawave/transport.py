"""The HTTP entry: recording, the proxy check, fault knobs, authorization, routing."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

from vpnshop.testing.remnawave.model import (
    _MISSING,
    RecordedRequest,
    _ApiError,
    _Ctx,
    _Fault,
    _Route,
)
from vpnshop.testing.remnawave.webhooks import _Webhooks


class _Transport(_Webhooks):
    """The HTTP entry: every request recorded, then the proxy check, the fault knobs,
    routing and authorization, in the panel's order."""

    @property
    def hang(self) -> bool:
        return self._hang

    @hang.setter
    def hang(self, value: bool) -> None:
        self._hang = value
        if value:
            self._released.clear()
        else:
            self._released.set()

    def fail(
        self,
        path: str,
        status: int = 500,
        *,
        method: str | None = None,
        times: int | None = 1,
        error_code: str | None = None,
        message: str | None = None,
        body: Any = _MISSING,
        retry_after: float | None = None,
        drop: bool = False,
        hang: bool = False,
    ) -> None:
        """Answer requests whose path (relative to ``/api``, no query) fully matches the
        regex *path* with *status* (``times`` times; None = until :meth:`clear_faults`).
        ``drop`` closes the connection with no answer, ``hang`` never answers."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        self._faults.append(
            _Fault(
                method=method.upper() if method else None,
                pattern=re.compile(path),
                status=status,
                remaining=times,
                body=body,
                headers=headers,
                drop=drop,
                hang=hang,
            )
        )
        if error_code is not None or message is not None:
            fault = self._faults[-1]
            fault.body = {
                "errorCode": error_code or "A001",
                "message": message or "Internal server error",
            }

    def clear_faults(self) -> None:
        self._faults.clear()

    def add_token(self, token: str, scopes: list[str] | None = None) -> None:
        self.tokens[token] = list(scopes or ["*"])

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=raw,
            )
        )
        if self.drop_connections:
            return self._drop(request)
        if self.down:
            return web.Response(status=503, text="Service Unavailable", content_type="text/plain")
        if self.require_forwarded_headers and (
            not request.headers.get("X-Forwarded-For")
            or request.headers.get("X-Forwarded-Proto") != "https"
        ):
            return self._drop(request)  # proxyCheckMiddleware destroys the socket
        if self._hang:
            await self._released.wait()
        if self.latency:
            await asyncio.sleep(self.latency)

        path = request.path
        rel = path[4:] if path.startswith("/api/") or path == "/api" else None
        fault = self._match_fault(request.method, rel if rel is not None else path)
        if fault is not None:
            if fault.hang:
                await asyncio.Event().wait()  # until the client gives up / server closes
            if fault.drop:
                return self._drop(request)
            return self._fault_response(fault, request)
        if self.error_rate and self._rng.random() < self.error_rate:
            return self._json(500, self._biz_body(request, "A001", "Internal server error"))

        self._run_scheduler()
        if rel is None:
            return self._not_found(request)
        route, match = self._route(request.method, rel)
        if route is None or match is None:
            return self._not_found(request)

        body: Any = None
        if request.method in ("POST", "PATCH", "PUT") and raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                return self._json(
                    400,
                    {
                        "message": self._json_error_message(raw, exc),
                        "error": "Bad Request",
                        "statusCode": 400,
                    },
                )
        if not route.public:
            denied = self._authorize(request, route)
            if denied is not None:
                return denied
        ctx = _Ctx(request=request, path=rel, query=request.query, body=body, raw_body=raw)
        try:
            return await route.handler(ctx, match)
        except _ApiError as exc:
            return self._json(exc.status, exc.body)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.close()
        raise asyncio.CancelledError  # aiohttp stops handling; the client sees no answer

    def _match_fault(self, method: str, rel: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method not in (None, method):
                continue
            if not fault.pattern.fullmatch(rel):
                continue
            if fault.remaining is not None:
                if fault.remaining <= 0:
                    continue
                fault.remaining -= 1
            return fault
        return None

    def _fault_response(self, fault: _Fault, request: web.Request) -> web.StreamResponse:
        body = fault.body
        if body is _MISSING:
            if fault.status == 429:
                body = {"message": "ThrottlerException: Too Many Requests", "statusCode": 429}
            elif fault.status >= 500:
                body = self._biz_body(request, "A001", "Internal server error")
            else:
                body = self._biz_body(request, "E000", "Injected error")
        elif isinstance(body, dict) and set(body) == {"errorCode", "message"}:
            body = self._biz_body(request, body["errorCode"], body["message"])
        if isinstance(body, bytes | str):
            return web.Response(status=fault.status, body=body, headers=fault.headers)
        resp = self._json(fault.status, body)
        resp.headers.update(fault.headers)
        return resp

    def _authorize(self, request: web.Request, route: _Route) -> web.StreamResponse | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        scopes = self.tokens.get(token) if token else None
        if scopes is None:
            return self._json(401, {"message": "Unauthorized", "statusCode": 401})
        if self.has((2, 8, 0)) and "*" not in scopes:
            resource, _, _name = route.scope.partition(":")
            kind = "read" if route.method == "GET" else "write"
            allowed = {f"{resource}:*", f"{resource}:{kind}", route.scope}
            if not allowed & set(scopes):
                return self._json(
                    403, {"message": "Forbidden resource", "error": "Forbidden", "statusCode": 403}
                )
        return None

    @staticmethod
    def _json_error_message(raw: bytes, exc: Exception) -> str:
        pos = getattr(exc, "pos", 0)
        text = raw.decode("utf-8", "replace")
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        if "property name" in str(exc):
            return (
                f"Expected property name or '}}' in JSON at position {pos} "
                f"(line {line} column {col})"
            )
        return f"Unexpected token in JSON at position {pos} (line {line} column {col})"

    def _route(self, method: str, rel: str) -> tuple[_Route | None, re.Match[str] | None]:
        for route in self._routes:
            if route.method != method:
                continue
            match = route.pattern.fullmatch(rel)
            if match is not None:
                return route, match
        return None, None
