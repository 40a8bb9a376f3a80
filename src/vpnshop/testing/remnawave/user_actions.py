"""Handlers of the user actions (enable, disable, reset traffic, revoke, extend) and
of deletion."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from vpnshop.testing.remnawave.issues import _Issues
from vpnshop.testing.remnawave.model import (
    EmuUser,
    _Ctx,
)
from vpnshop.testing.remnawave.validation import _Validation
from vpnshop.testing.remnawave.webhooks import _Webhooks


class _UserActions(_Validation, _Webhooks):
    """The ``/users/{key}/actions/*`` handlers and ``DELETE /users/{key}``."""

    def _action(self, name: str) -> Callable[[_Ctx, re.Match[str]], Awaitable[web.StreamResponse]]:
        async def handler(ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
            key = self._path_key(ctx, m["v"])
            body = ctx.body if isinstance(ctx.body, dict) else {}
            if name == "revoke":
                self._validate_revoke(body)
            if name == "extend":
                issues = _Issues(self.v4_issues)
                if "days" not in body:
                    issues.invalid_type(["days"], "number", "undefined")
                else:
                    self._check_num(issues, body, "days", minimum=1)
                if issues:
                    raise self._invalid(issues)
            user = self._user_or_404(ctx, key)
            now = self.now()
            if name == "enable":
                if user.status == "ACTIVE":
                    raise self._biz(ctx, 400, "A030", "User already enabled")
                user.status = "ACTIVE"
                self._emit_user("user.enabled", user)
            elif name == "disable":
                if user.status == "DISABLED":
                    raise self._biz(ctx, 400, "A029", "User already disabled")
                user.status = "DISABLED"
                self._emit_user("user.disabled", user)
            elif name == "reset-traffic":
                user.used_traffic_bytes = 0
                user.last_traffic_reset_at = now
                user.last_triggered_threshold = 0
                if user.status == "LIMITED":
                    user.status = "ACTIVE"
                user.updated_at = now
                self._emit_user("user.traffic_reset", user)
            elif name == "revoke":
                self._revoke(ctx, user, body, now)
                self._emit_user("user.revoked", user)
            elif name == "extend":
                days = timedelta(days=float(body["days"]))
                if user.status == "EXPIRED":
                    user.expire_at = now + days
                    user.status = "ACTIVE"
                else:
                    user.expire_at = user.expire_at + days
                user.updated_at = now
                self._emit_user("user.modified", user)
            return self._ok(self.render_user(user))

        return handler

    def _revoke(self, ctx: _Ctx, user: EmuUser, body: Mapping[str, Any], now: datetime) -> None:
        only_passwords = bool(body.get("revokeOnlyPasswords"))
        if not only_passwords:
            wanted = body.get("shortUuid")
            if wanted is not None:
                other = self._by_short(wanted)
                if other is not None and other is not user:
                    raise self._biz(ctx, 500, "A027", "Revoke user subscription error")
                user.short_uuid = wanted
            else:
                user.short_uuid = self._new_short_uuid()
            self.users_by_id.reindex(user)
        self._regenerate_credentials(user)
        user.sub_revoked_at = now
        user.updated_at = now

    async def _h_delete(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        key = self._path_key(ctx, m["v"])
        user = self._user_or_404(ctx, key)
        self._emit_user("user.deleted", user)
        del self.users_by_id[user.id]
        if self.line3:
            return web.Response(status=204)
        return self._ok({"isDeleted": True})
