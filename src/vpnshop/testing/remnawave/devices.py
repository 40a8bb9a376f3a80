"""Handlers of the HWID devices of a user."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from vpnshop.testing.remnawave.issues import _Issues
from vpnshop.testing.remnawave.model import (
    HWID_RE,
    EmuDevice,
    EmuUser,
    _ApiError,
    _Ctx,
)
from vpnshop.testing.remnawave.validation import _Validation
from vpnshop.testing.remnawave.webhooks import _Webhooks


class _Devices(_Validation, _Webhooks):
    """HWID devices: list, add (with the device limit), delete one or all."""

    async def _h_hwid_list(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        key = self._path_key(ctx, m["v"])
        user = self._user_or_404(ctx, key)
        return self._ok(self._device_list(user))

    def _hwid_user(self, ctx: _Ctx, body: Mapping[str, Any], issues: _Issues) -> EmuUser:
        found = self._body_key(ctx, body, issues)
        if issues or found == "invalid":
            raise self._invalid(issues)
        if found is None or isinstance(found, str):
            raise self._biz(ctx, 404, "A025", "User not found")
        return found

    async def _h_hwid_add(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        self._check_str(
            issues, body, "hwid", required=True, regex=HWID_RE, regex_msg="Invalid HWID"
        )
        for name in ("platform", "osVersion", "deviceModel", "userAgent", "requestIp"):
            self._check_str(issues, body, name, nullable=True)
        user = self._hwid_user(ctx, body, issues)
        device = EmuDevice(
            hwid=body["hwid"],
            platform=body.get("platform"),
            os_version=body.get("osVersion"),
            device_model=body.get("deviceModel"),
            user_agent=body.get("userAgent"),
            request_ip=body.get("requestIp"),
        )
        self._add_device(ctx, user, device)
        return self._ok(self._device_list(user))

    def _add_device(self, ctx: _Ctx | None, user: EmuUser, device: EmuDevice) -> None:
        def fail(code: str, message: str) -> _ApiError | ValueError:
            if ctx is None:
                return ValueError(f"{code}: {message}")
            return self._biz(ctx, 400, code, message)

        if any(d.hwid == device.hwid for d in user.devices):
            raise fail("A098", "User hwid device already exists")
        if user.hwid_device_limit and len(user.devices) >= user.hwid_device_limit:
            raise fail("A099", "User hwid device limit reached")
        now = self.now()
        device.created_at = device.updated_at = now
        user.devices.append(device)
        self._emit_device("user_hwid_devices.added", user, device)

    async def _h_hwid_delete(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        self._check_str(issues, body, "hwid", required=True)
        user = self._hwid_user(ctx, body, issues)
        for device in list(user.devices):
            if device.hwid == body["hwid"]:
                user.devices.remove(device)
                self._emit_device("user_hwid_devices.deleted", user, device)
        return self._ok(self._device_list(user))

    async def _h_hwid_delete_all(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        user = self._hwid_user(ctx, body, issues)
        for device in list(user.devices):
            user.devices.remove(device)
            self._emit_device("user_hwid_devices.deleted", user, device)
        return self._ok(self._device_list(user))
