"""Handlers that find, list and resolve users and show their subscription pages."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from vpnshop.testing.remnawave.issues import _Issues
from vpnshop.testing.remnawave.model import (
    STATUSES,
    EmuUser,
    _Ctx,
)
from vpnshop.testing.remnawave.validation import _Validation
from vpnshop.testing.remnawave.webhooks import _Webhooks


class _UserReads(_Validation, _Webhooks):
    """Lookups by every key, listing, streaming, resolving, subscription pages."""

    async def _h_get(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        key = self._path_key(ctx, m["v"])
        return self._ok(self.render_user(self._user_or_404(ctx, key, "A063")))

    async def _h_by_id(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        value = m["v"]
        if not value.isdigit():
            issues = _Issues(self.v4_issues)
            issues.invalid_type(["id"], "number", "NaN")
            raise self._invalid(issues)
        user = self.users_by_id.get(int(value))
        if user is None:
            raise self._biz(ctx, 404, "A063", "User with specified params not found")
        return self._ok(self.render_user(user))

    async def _h_by_username(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        user = self._by_username(m["v"])
        if user is None:
            raise self._biz(ctx, 404, "A063", "User with specified params not found")
        return self._ok(self.render_user(user))

    async def _h_by_short(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        user = self._by_short(m["v"])
        if user is None:
            raise self._biz(ctx, 404, "A063", "User with specified params not found")
        return self._ok(self.render_user(user))

    async def _h_by_tg(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        value = m["v"]
        if not re.fullmatch(r"-?\d+", value):
            issues = _Issues(self.v4_issues)
            issues.invalid_type(["telegramId"], "number", "NaN")
            raise self._invalid(issues)
        found = self.users_by_id.with_telegram_id(int(value))
        if not found and self.v < (2, 4, 0):
            raise self._biz(ctx, 404, "A062", "Users not found")
        return self._ok([self.render_user(u) for u in found])

    async def _h_list(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        issues = _Issues(self.v4_issues)
        start = self._query_int(ctx, "start", issues)
        size = self._query_int(ctx, "size", issues)
        if start is not None and start < 0:
            issues.small(["start"], "number", 0)
        if size is not None and size < 1:
            issues.small(["size"], "number", 1, "Size (limit) must be greater than 0")
        if size is not None and size > 1000:
            issues.big(["size"], "number", 1000, "Size (limit) must be less than 1000")
        if issues:
            raise self._invalid(issues)
        start = start or 0
        size = size or 25
        users = sorted(self.users_by_id.values(), key=lambda u: u.id, reverse=True)
        page = users[start : start + size]
        return self._ok({"total": len(users), "users": [self.render_user(u) for u in page]})

    async def _h_stream(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        issues = _Issues(self.v4_issues)
        size = self._query_int(ctx, "size", issues)
        cursor = self._query_int(ctx, "cursor", issues)
        telegram_id = self._query_int(ctx, "telegramId", issues)
        status = ctx.query.get("status")
        if status is not None and status not in STATUSES:
            issues.enum(["status"], STATUSES, status)
        if size is not None and size < 1:
            issues.small(["size"], "number", 1)
        if size is not None and size > 1000:
            issues.big(["size"], "number", 1000)
        if issues:
            raise self._invalid(issues)
        users = sorted(self.users_by_id.values(), key=lambda u: u.id)
        if cursor is not None:
            users = [u for u in users if u.id > cursor]
        if "telegramId" in ctx.query:
            users = [u for u in users if u.telegram_id == telegram_id]
        if status is not None:
            users = [u for u in users if u.status == status]
        for name, attr in (("email", "email"), ("tag", "tag"), ("username", "username")):
            if name in ctx.query:
                users = [u for u in users if getattr(u, attr) == ctx.query[name]]
        has_more = size is not None and len(users) > size
        page = users[:size] if size is not None else users
        return self._ok(
            {
                "users": [self.render_user(u) for u in page],
                "nextCursor": str(page[-1].id) if has_more and page else None,
                "hasMore": has_more,
            }
        )

    async def _h_resolve(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        keys = (
            ["id", "shortUuid", "username"]
            if self.line3
            else ["uuid", "id", "shortUuid", "username"]
        )
        given = [k for k in keys if body.get(k) is not None]
        if len(given) != 1:
            issues = _Issues(self.v4_issues)
            issues.custom([], f"Exactly one of {', '.join(keys)} must be provided")
            raise self._invalid(issues)
        field = given[0]
        value = body[field]
        user: EmuUser | None
        if field == "id":
            user = self.users_by_id.get(value) if isinstance(value, int) else None
        elif field == "uuid":
            user = self._by_key(str(value))
        elif field == "shortUuid":
            user = self._by_short(str(value))
        else:
            user = self._by_username(str(value))
        if user is None:
            raise self._biz(ctx, 404, "A063", "User with specified params not found")
        out: dict[str, Any] = {} if self.line3 else {"uuid": user.uuid}
        out.update({"id": user.id, "username": user.username, "shortUuid": user.short_uuid})
        return self._ok(out)

    async def _h_sub_info(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        user = self._by_short(m["v"])
        if user is None:
            raise self._biz(ctx, 404, "A025", "User not found")
        return self._ok(self._subscription_info(user))

    def _h_subscription(
        self, by: str
    ) -> Callable[[_Ctx, re.Match[str]], Awaitable[web.StreamResponse]]:
        async def handler(ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
            value = m["v"]
            if by == "username":
                user = self._by_username(value)
            elif by == "short":
                user = self._by_short(value)
            else:
                user = self._by_key(self._path_key(ctx, value, "id" if self.line3 else "uuid"))
            if user is None:
                raise self._biz(ctx, 404, "A025", "User not found")
            return self._ok(self._subscription_info(user))

        return handler
