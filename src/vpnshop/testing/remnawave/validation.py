"""Request validation as the panel does it: keys, fields, bodies and query numbers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vpnshop.testing.remnawave.base import _Base
from vpnshop.testing.remnawave.issues import (
    _Issues,
    _type_name,
)
from vpnshop.testing.remnawave.model import (
    DATETIME_PATTERN,
    DATETIME_RE,
    EMAIL_PATTERN,
    EMAIL_RE,
    STRATEGIES_NEW,
    STRATEGIES_OLD,
    TAG_RE,
    UUID_PATTERN,
    UUID_RE,
    EmuUser,
    _Ctx,
)


class _Validation(_Base):
    """Field checks that report issues the way this version's zod does."""

    def _path_key(self, ctx: _Ctx, value: str, name: str = "userId") -> str:
        """Validate a user key taken from the path like the panel does."""
        issues = _Issues(self.v4_issues)
        if self.line3:
            if not re.fullmatch(r"-?\d+(\.\d+)?", value):
                issues.invalid_type([name], "number", "NaN")
                raise self._invalid(issues)
        elif not UUID_RE.match(value):
            issues.fmt(["uuid"], "uuid", UUID_PATTERN, "Invalid uuid")
            raise self._invalid(issues)
        return value

    def _body_key(
        self, ctx: _Ctx, body: Mapping[str, Any], issues: _Issues
    ) -> EmuUser | str | None:
        """HWID bodies: ``userId`` (2.8+ devices and 3.x) or ``userUuid`` (2.x routes)."""
        if self.line3:
            value = body.get("userId")
            if not isinstance(value, int) or isinstance(value, bool):
                issues.invalid_type(
                    ["userId"], "number", "undefined" if value is None else _type_name(value)
                )
                return "invalid"
            return self.users_by_id.get(value)
        value = body.get("userUuid")
        if not isinstance(value, str) or not UUID_RE.match(value):
            issues.fmt(["userUuid"], "uuid", UUID_PATTERN, "Invalid uuid")
            return "invalid"
        return self._by_key(value)

    def _check_str(
        self,
        issues: _Issues,
        body: Mapping[str, Any],
        name: str,
        *,
        required: bool = False,
        nullable: bool = False,
        min_len: int | None = None,
        max_len: int | None = None,
        min_msg: str | None = None,
        max_msg: str | None = None,
        regex: re.Pattern[str] | None = None,
        regex_msg: str = "Invalid",
    ) -> None:
        if name not in body:
            if required:
                issues.invalid_type([name], "string", "undefined")
            return
        value = body[name]
        if value is None and nullable:
            return
        if not isinstance(value, str):
            issues.invalid_type([name], "string", _type_name(value))
            return
        if min_len is not None and len(value) < min_len:
            issues.small([name], "string", min_len, min_msg)
        if max_len is not None and len(value) > max_len:
            issues.big([name], "string", max_len, max_msg)
        if regex is not None and not regex.match(value):
            issues.fmt([name], "regex", "/" + regex.pattern + "/", regex_msg)

    def _check_num(
        self,
        issues: _Issues,
        body: Mapping[str, Any],
        name: str,
        *,
        nullable: bool = False,
        minimum: int | None = None,
        min_msg: str | None = None,
        integer: bool = False,
    ) -> None:
        if name not in body:
            return
        value = body[name]
        if value is None and nullable:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            issues.invalid_type([name], "number", _type_name(value))
            return
        if integer and not float(value).is_integer():
            issues.invalid_type([name], "int", "number")
            return
        if minimum is not None and value < minimum:
            issues.small([name], "number", minimum, min_msg)

    def _check_enum(
        self, issues: _Issues, body: Mapping[str, Any], name: str, values: tuple[str, ...]
    ) -> None:
        if name in body and body[name] not in values:
            issues.enum([name], values, body[name])

    def _check_dt(
        self, issues: _Issues, body: Mapping[str, Any], name: str, *, required: bool
    ) -> None:
        if name not in body:
            if required:
                issues.invalid_type([name], "string", "undefined")
            return
        value = body[name]
        if not isinstance(value, str):
            issues.invalid_type([name], "string", _type_name(value))
            return
        if not DATETIME_RE.match(value):
            issues.fmt(
                [name],
                "datetime",
                DATETIME_PATTERN,
                "Invalid ISO datetime" if self.v4_issues else "Invalid datetime",
            )

    def _check_email(self, issues: _Issues, body: Mapping[str, Any], name: str) -> None:
        if name not in body or body[name] is None:
            return
        value = body[name]
        if not isinstance(value, str):
            issues.invalid_type([name], "string", _type_name(value))
        elif not EMAIL_RE.match(value):
            issues.fmt(
                [name],
                "email",
                EMAIL_PATTERN,
                "Invalid email address" if self.v4_issues else "Invalid email",
            )

    def _check_uuid(
        self, issues: _Issues, body: Mapping[str, Any], name: str, *, nullable: bool
    ) -> None:
        if name not in body:
            return
        value = body[name]
        if value is None and nullable:
            return
        if not isinstance(value, str) or not UUID_RE.match(value):
            issues.fmt(
                [name], "uuid", UUID_PATTERN, "Invalid UUID" if self.v4_issues else "Invalid uuid"
            )

    def _check_uuid_list(self, issues: _Issues, body: Mapping[str, Any], name: str) -> None:
        if name not in body:
            return
        value = body[name]
        if not isinstance(value, list):
            issues.invalid_type([name], "array", _type_name(value))
            return
        for i, item in enumerate(value):
            if not isinstance(item, str) or not UUID_RE.match(item):
                issues.fmt(
                    [name, i],
                    "uuid",
                    UUID_PATTERN,
                    "Invalid UUID" if self.v4_issues else "Invalid uuid",
                )

    def _strategies(self) -> tuple[str, ...]:
        return STRATEGIES_NEW if self.v >= (2, 7, 0) else STRATEGIES_OLD

    def _validate_user_fields(
        self, issues: _Issues, body: Mapping[str, Any], *, create: bool
    ) -> None:
        self._check_num(
            issues,
            body,
            "trafficLimitBytes",
            minimum=0,
            min_msg="Traffic limit must be greater than 0" if create else None,
        )
        self._check_enum(issues, body, "trafficLimitStrategy", self._strategies())
        self._check_dt(issues, body, "expireAt", required=create)
        self._check_str(issues, body, "description", nullable=not create)
        self._check_str(
            issues,
            body,
            "tag",
            nullable=True,
            max_len=16,
            max_msg="Tag must be less than 16 characters",
            regex=TAG_RE,
            regex_msg="Tag can only contain uppercase letters, numbers, underscores",
        )
        self._check_num(issues, body, "telegramId", nullable=True, integer=not self.line3)
        self._check_email(issues, body, "email")
        self._check_num(
            issues, body, "hwidDeviceLimit", nullable=not create, minimum=0, integer=True
        )
        self._check_uuid_list(issues, body, "activeInternalSquads")
        self._check_uuid(issues, body, "externalSquadUuid", nullable=True)

    def _require_object(self, ctx: _Ctx) -> dict[str, Any]:
        body = ctx.body if ctx.body is not None else {}
        if not isinstance(body, dict):
            issues = _Issues(self.v4_issues)
            issues.invalid_type([], "object", _type_name(body))
            raise self._invalid(issues)
        return body

    def _query_int(self, ctx: _Ctx, name: str, issues: _Issues) -> int | None:
        if name not in ctx.query:
            return None
        text = ctx.query[name]
        if not re.fullmatch(r"-?\d+", text):
            issues.invalid_type([name], "number", "NaN")
            return None
        return int(text)

    def _validate_revoke(self, body: Mapping[str, Any]) -> None:
        issues = _Issues(self.v4_issues)
        if "revokeOnlyPasswords" in body and not isinstance(body["revokeOnlyPasswords"], bool):
            issues.invalid_type(
                ["revokeOnlyPasswords"], "boolean", _type_name(body["revokeOnlyPasswords"])
            )
        lo, hi = (16, 64) if self.line3 else (6, 48)
        self._check_str(issues, body, "shortUuid", min_len=lo, max_len=hi)
        if issues:
            raise self._invalid(issues)
