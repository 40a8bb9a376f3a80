"""How the panel renders users, devices and subscription pages, by version."""

from __future__ import annotations

from typing import Any

from vpnshop.testing.remnawave.base import _Base
from vpnshop.testing.remnawave.model import (
    PLACEHOLDER_LINKS,
    EmuDevice,
    EmuUser,
    iso,
)


class _Rendering(_Base):
    """Users, devices and subscription pages as this version's API shows them."""

    def subscription_url(self, user: EmuUser) -> str:
        return f"https://{self.sub_public_domain}/{user.short_uuid}"

    def _squad_refs(self, user: EmuUser) -> list[dict[str, str]]:
        by_uuid = {s.uuid: s for s in self.squads}
        return [{"uuid": u, "name": by_uuid[u].name} for u in user.internal_squads if u in by_uuid]

    def render_user(self, user: EmuUser) -> dict[str, Any]:
        """The user object exactly as this version's API and webhooks show it."""
        if self.v < (2, 3, 0):
            return self._render_user_old(user)
        out: dict[str, Any] = {}
        if not self.line3:
            out["uuid"] = user.uuid
        out.update(
            {
                "id": user.id,
                "shortUuid": user.short_uuid,
                "username": user.username,
                "status": user.status,
                "trafficLimitBytes": user.traffic_limit_bytes,
                "trafficLimitStrategy": user.traffic_limit_strategy,
                "expireAt": iso(user.expire_at),
                "telegramId": user.telegram_id,
                "email": user.email,
                "description": user.description,
                "tag": user.tag,
                "hwidDeviceLimit": user.hwid_device_limit,
                "externalSquadUuid": user.external_squad_uuid,
                "trojanPassword": user.trojan_password,
                "vlessUuid": user.vless_uuid,
                "ssPassword": user.ss_password,
                "lastTriggeredThreshold": user.last_triggered_threshold,
                "subRevokedAt": iso(user.sub_revoked_at),
                "lastTrafficResetAt": iso(user.last_traffic_reset_at),
            }
        )
        if self.v < (2, 7, 0):
            out["subLastUserAgent"] = user.sub_last_user_agent
            out["subLastOpenedAt"] = iso(user.sub_last_opened_at)
        out.update(
            {
                "createdAt": iso(user.created_at),
                "updatedAt": iso(user.updated_at),
                "subscriptionUrl": self.subscription_url(user),
                "activeInternalSquads": self._squad_refs(user),
                "userTraffic": {
                    "usedTrafficBytes": user.used_traffic_bytes,
                    "lifetimeUsedTrafficBytes": user.lifetime_used_traffic_bytes,
                    "onlineAt": iso(user.online_at),
                    "lastConnectedNodeUuid": user.last_connected_node_uuid,
                    "firstConnectedAt": iso(user.first_connected_at),
                },
            }
        )
        return out

    def _render_user_old(self, user: EmuUser) -> dict[str, Any]:
        """2.0-2.2: no id, traffic fields at top level, lastConnectedNode and happ."""
        return {
            "uuid": user.uuid,
            "shortUuid": user.short_uuid,
            "username": user.username,
            "status": user.status,
            "usedTrafficBytes": user.used_traffic_bytes,
            "lifetimeUsedTrafficBytes": user.lifetime_used_traffic_bytes,
            "trafficLimitBytes": user.traffic_limit_bytes,
            "trafficLimitStrategy": user.traffic_limit_strategy,
            "subLastUserAgent": user.sub_last_user_agent,
            "subLastOpenedAt": iso(user.sub_last_opened_at),
            "expireAt": iso(user.expire_at),
            "onlineAt": iso(user.online_at),
            "subRevokedAt": iso(user.sub_revoked_at),
            "lastTrafficResetAt": iso(user.last_traffic_reset_at),
            "trojanPassword": user.trojan_password,
            "vlessUuid": user.vless_uuid,
            "ssPassword": user.ss_password,
            "description": user.description,
            "tag": user.tag,
            "telegramId": user.telegram_id,
            "email": user.email,
            "hwidDeviceLimit": user.hwid_device_limit,
            "firstConnectedAt": iso(user.first_connected_at),
            "lastTriggeredThreshold": user.last_triggered_threshold,
            "createdAt": iso(user.created_at),
            "updatedAt": iso(user.updated_at),
            "activeInternalSquads": self._squad_refs(user),
            "subscriptionUrl": self.subscription_url(user),
            "lastConnectedNode": None,
            "happ": {"cryptoLink": f"happ://crypt/{user.short_uuid}"},
        }

    def render_device(self, user: EmuUser, device: EmuDevice) -> dict[str, Any]:
        out: dict[str, Any] = {"hwid": device.hwid}
        if self.v >= (2, 8, 0):
            out["userId"] = user.id
        else:
            out["userUuid"] = user.uuid
        out.update(
            {
                "platform": device.platform,
                "osVersion": device.os_version,
                "deviceModel": device.device_model,
                "userAgent": device.user_agent,
                "requestIp": device.request_ip,
                "createdAt": iso(device.created_at),
                "updatedAt": iso(device.updated_at),
            }
        )
        return out

    def _device_list(self, user: EmuUser) -> dict[str, Any]:
        return {
            "total": len(user.devices),
            "devices": [self.render_device(user, d) for d in user.devices],
        }

    def _subscription_info(self, user: EmuUser) -> dict[str, Any]:
        now = self.now()
        left = max(0, (user.expire_at - now).days) if user.expire_at > now else 0

        def human(n: int) -> str:
            return "0" if n == 0 else f"{n / 2**30:.2f} GiB"

        return {
            "isFound": True,
            "user": {
                "shortUuid": user.short_uuid,
                "daysLeft": left,
                "trafficUsed": human(user.used_traffic_bytes),
                "trafficLimit": human(user.traffic_limit_bytes),
                "lifetimeTrafficUsed": human(user.lifetime_used_traffic_bytes),
                "lifetimeTrafficUsedBytes": str(user.lifetime_used_traffic_bytes),
                "trafficLimitBytes": str(user.traffic_limit_bytes),
                "trafficUsedBytes": str(user.used_traffic_bytes),
                "username": user.username,
                "expiresAt": iso(user.expire_at),
                "isActive": user.status == "ACTIVE",
                "userStatus": user.status,
                "trafficLimitStrategy": user.traffic_limit_strategy,
            },
            "links": list(PLACEHOLDER_LINKS),
            "ssConfLinks": {},
            "subscriptionUrl": self.subscription_url(user),
        }
