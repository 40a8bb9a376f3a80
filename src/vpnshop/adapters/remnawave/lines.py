"""The two API lines: 3.x (users keyed by numeric ``id``) and 2.x (keyed by ``uuid``).

Each line turns an operation into the right route and body and hands back raw panel
objects; the panel adapter maps them to domain objects.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import quote

from vpnshop.adapters.remnawave.client import RemnawaveClient
from vpnshop.ports.panel import PanelNotFoundError

_ID = re.compile(r"^[1-9][0-9]{0,18}$")
_MAX_PAGES = 100


def _seg(value: str) -> str:
    return quote(value, safe="")


class ApiLine:
    """Routes common to both lines; subclasses fill in what differs."""

    name = "?"

    def __init__(self, client: RemnawaveClient) -> None:
        self.client = client

    # -- keys -----------------------------------------------------------------------
    def valid_key(self, key: str) -> bool:
        raise NotImplementedError

    def key_field(self, key: str) -> dict[str, Any]:
        """The body member that identifies a user in PATCH / HWID calls."""
        raise NotImplementedError

    # -- reads ----------------------------------------------------------------------
    async def get(self, key: str) -> dict[str, Any] | None:
        if not self.valid_key(key):
            return None
        try:
            return await self.client.request("GET", f"/users/{_seg(key)}")  # type: ignore[no-any-return]
        except PanelNotFoundError:
            return None

    async def get_by_username(self, username: str) -> dict[str, Any] | None:
        try:
            return await self.client.request("GET", f"/users/by-username/{_seg(username)}")  # type: ignore[no-any-return]
        except PanelNotFoundError:
            return None

    async def find_by_telegram_id(self, telegram_id: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def list_users(self, start: int, size: int) -> tuple[list[dict[str, Any]], int]:
        """``GET /users?start=&size=``, the same on both lines."""
        params = {"start": str(start), "size": str(size)}
        raw = await self.client.request("GET", "/users", params=params)
        return list(raw.get("users") or []), int(raw.get("total") or 0)

    # -- writes ---------------------------------------------------------------------
    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.request("POST", "/users", json_body=body)  # type: ignore[no-any-return]

    async def update(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = {**self.key_field(key), **body}
        return await self.client.request("PATCH", "/users", json_body=payload)  # type: ignore[no-any-return]

    async def action(self, key: str, name: str) -> dict[str, Any]:
        return await self.client.request("POST", f"/users/{_seg(key)}/actions/{name}")  # type: ignore[no-any-return]

    async def delete(self, key: str) -> None:
        await self.client.request("DELETE", f"/users/{_seg(key)}")

    async def devices(self, key: str) -> Any:
        return await self.client.request("GET", f"/hwid/devices/{_seg(key)}")

    async def delete_device(self, key: str, hwid: str) -> Any:
        body = {**self.key_field(key), "hwid": hwid}
        return await self.client.request("POST", "/hwid/devices/delete", json_body=body)


class ApiLine3(ApiLine):
    """3.0+: numeric ids, ``/users/stream?telegramId=``, DELETE answers 204."""

    name = "3"

    def valid_key(self, key: str) -> bool:
        return bool(_ID.match(key))

    def key_field(self, key: str) -> dict[str, Any]:
        return {"id": int(key)}

    async def find_by_telegram_id(self, telegram_id: int) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            # No ``size``: the panel then returns every match in one page (observed on
            # 3.3.2); the cursor loop covers a panel that pages anyway.
            params = {"telegramId": str(telegram_id)}
            if cursor is not None:
                params["cursor"] = cursor
            page = await self.client.request("GET", "/users/stream", params=params)
            users.extend(page.get("users") or [])
            cursor = page.get("nextCursor")
            if not page.get("hasMore") or cursor is None:
                break
        return users

    async def delete_device(self, key: str, hwid: str) -> Any:
        return await self.client.request(
            "POST", "/hwid/devices/delete", json_body={"userId": int(key), "hwid": hwid}
        )


class ApiLine2(ApiLine):
    """2.3-2.8: uuid keys, ``/users/by-telegram-id/`` (404 A062 = none before 2.4)."""

    name = "2"

    def valid_key(self, key: str) -> bool:
        try:
            uuid.UUID(key)
        except ValueError:
            return False
        return True

    def key_field(self, key: str) -> dict[str, Any]:
        return {"uuid": key}

    async def find_by_telegram_id(self, telegram_id: int) -> list[dict[str, Any]]:
        try:
            found = await self.client.request("GET", f"/users/by-telegram-id/{telegram_id}")
        except PanelNotFoundError as exc:
            if exc.vendor_code == "A062":  # 2.0-2.3: "Users not found" means an empty list
                return []
            raise
        return list(found or [])

    async def delete_device(self, key: str, hwid: str) -> Any:
        return await self.client.request(
            "POST", "/hwid/devices/delete", json_body={"userUuid": key, "hwid": hwid}
        )
