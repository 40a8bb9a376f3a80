"""Handlers that create and update users."""

from __future__ import annotations

import re
import uuid as uuidlib

from aiohttp import web

from vpnshop.testing.remnawave.issues import _Issues
from vpnshop.testing.remnawave.model import (
    DATETIME_RE,
    STATUSES,
    USERNAME_RE,
    EmuUser,
    _Ctx,
    _parse_dt,
)
from vpnshop.testing.remnawave.validation import _Validation
from vpnshop.testing.remnawave.webhooks import _Webhooks


class _UserWrites(_Validation, _Webhooks):
    """``POST /users`` and ``PATCH /users`` with the panel's validation and failures."""

    async def _h_create(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        self._check_str(
            issues,
            body,
            "username",
            required=True,
            min_len=3,
            max_len=36,
            min_msg="Username must be at least 3 characters",
            max_msg="Username must be less than 36 characters",
            regex=USERNAME_RE,
            regex_msg="Username can only contain letters, numbers, underscores and dashes",
        )
        self._check_enum(issues, body, "status", STATUSES)
        self._check_str(issues, body, "shortUuid")
        self._check_str(issues, body, "trojanPassword", min_len=8, max_len=32)
        self._check_uuid(issues, body, "vlessUuid", nullable=False)
        self._check_str(issues, body, "ssPassword", min_len=8, max_len=32)
        self._check_dt(issues, body, "createdAt", required=False)
        self._check_dt(issues, body, "lastTrafficResetAt", required=False)
        self._validate_user_fields(issues, body, create=True)
        if not self.line3:
            self._check_uuid(issues, body, "uuid", nullable=False)
        if issues:
            raise self._invalid(issues)

        # Past validation, the insert uses up a BIGSERIAL id whether or not it succeeds.
        new_id = self._allocate_id()
        failed = self._biz(ctx, 500, "A018", "Failed to create user")
        if self._by_username(body["username"]) is not None:
            if self.duplicate_username_code == "A019":
                raise self._biz(ctx, 400, "A019", "User username already exists")
            raise failed
        short = body.get("shortUuid")
        if short is not None and self._by_short(short) is not None:
            raise self._biz(ctx, 400, "A020", "User short UUID already exists")
        limit = body.get("trafficLimitBytes", 0)
        if not float(limit).is_integer():
            raise failed  # a BIGINT column refuses 1.5
        squads = list(body.get("activeInternalSquads") or [])
        if not self._squads_exist(squads):
            raise failed
        ext = body.get("externalSquadUuid")
        if ext is not None and ext not in self.external_squads:
            raise failed
        user_uuid = (
            str(body["uuid"]) if not self.line3 and body.get("uuid") else str(uuidlib.uuid4())
        )
        now = self.now()
        user = EmuUser(
            id=new_id,
            uuid=user_uuid,
            short_uuid=short or self._new_short_uuid(),
            username=body["username"],
            expire_at=_parse_dt(body["expireAt"]),
            created_at=_parse_dt(body["createdAt"]) if body.get("createdAt") else now,
            updated_at=now,
            status=body.get("status", "ACTIVE"),
            traffic_limit_bytes=int(limit),
            traffic_limit_strategy=body.get("trafficLimitStrategy", "NO_RESET"),
            telegram_id=body.get("telegramId"),
            email=body.get("email"),
            description=body.get("description"),
            tag=body.get("tag"),
            hwid_device_limit=body.get("hwidDeviceLimit"),
            external_squad_uuid=ext,
            internal_squads=squads,
            last_traffic_reset_at=(
                _parse_dt(body["lastTrafficResetAt"]) if body.get("lastTrafficResetAt") else None
            ),
        )
        for name, attr in (
            ("trojanPassword", "trojan_password"),
            ("ssPassword", "ss_password"),
            ("vlessUuid", "vless_uuid"),
        ):
            if body.get(name):
                setattr(user, attr, body[name])
        self.users_by_id[user.id] = user
        self._emit_user("user.created", user)
        return self._ok(self.render_user(user), status=201)

    async def _h_update(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        key_name = "id" if self.line3 else "uuid"
        if self.line3:
            self._check_num(issues, body, "id", integer=True)
        else:
            self._check_uuid(issues, body, "uuid", nullable=False)
        self._check_str(issues, body, "username")
        self._check_enum(issues, body, "status", ("ACTIVE", "DISABLED"))
        self._validate_user_fields(issues, body, create=False)
        expire = body.get("expireAt")
        if (
            isinstance(expire, str)
            and DATETIME_RE.match(expire)
            and _parse_dt(expire) <= self.now()
        ):
            issues.custom(["expireAt"], "Expiration date cannot be in the past")
        if body.get(key_name) is None and body.get("username") is None:
            issues.custom([], f"At least one of username, {key_name} must be provided")
        if issues:
            raise self._invalid(issues)

        if body.get(key_name) is not None:
            user = self._by_key(str(body[key_name]))
        else:
            user = self._by_username(body["username"])
        if user is None:
            raise self._biz(ctx, 404, "A025", "User not found")
        failed = self._biz(ctx, 500, "A039", "Update user error")
        if "activeInternalSquads" in body and not self._squads_exist(
            list(body["activeInternalSquads"])
        ):
            raise failed
        ext = body.get("externalSquadUuid")
        if ext is not None and ext not in self.external_squads:
            raise failed
        if "trafficLimitBytes" in body and not float(body["trafficLimitBytes"]).is_integer():
            raise failed

        now = self.now()
        new_status = body.get("status")
        if "expireAt" in body:
            user.expire_at = _parse_dt(body["expireAt"])
            if new_status is None and user.status == "EXPIRED" and user.expire_at > now:
                new_status = "ACTIVE"  # a future expiry reactivates an EXPIRED user
        if "trafficLimitBytes" in body:
            user.traffic_limit_bytes = int(body["trafficLimitBytes"])
            if (
                new_status is None
                and user.status == "LIMITED"
                and (
                    user.traffic_limit_bytes == 0
                    or user.traffic_limit_bytes > user.used_traffic_bytes
                )
            ):
                new_status = "ACTIVE"
        if new_status is not None:
            user.status = new_status
        simple = {
            "trafficLimitStrategy": "traffic_limit_strategy",
            "description": "description",
            "tag": "tag",
            "telegramId": "telegram_id",
            "email": "email",
            "hwidDeviceLimit": "hwid_device_limit",
            "externalSquadUuid": "external_squad_uuid",
        }
        for field, attr in simple.items():
            if field in body:
                setattr(user, attr, body[field])
        self.users_by_id.reindex(user)  # the telegram id may have changed
        if "activeInternalSquads" in body:
            user.internal_squads = list(dict.fromkeys(body["activeInternalSquads"]))
        user.updated_at = now
        self._emit_user("user.modified", user)
        return self._ok(self.render_user(user))
