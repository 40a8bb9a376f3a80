"""Handlers of the squads list and the system endpoints (stats, health, metadata)."""

from __future__ import annotations

import re
from datetime import timedelta

from aiohttp import web

from vpnshop.testing.remnawave.base import _Base
from vpnshop.testing.remnawave.model import (
    STATUSES,
    _Ctx,
    iso,
)


class _System(_Base):
    """The internal squads list and the system endpoints."""

    async def _h_squads(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        items = []
        for squad in self.squads:
            members = sum(1 for u in self.users_by_id.values() if squad.uuid in u.internal_squads)
            items.append(
                {
                    "uuid": squad.uuid,
                    "viewPosition": squad.view_position,
                    "name": squad.name,
                    "info": {"membersCount": members, "inboundsCount": 1},
                    "inbounds": [
                        {
                            "uuid": squad.inbound_uuid,
                            "profileUuid": "00000000-0000-0000-0000-000000000000",
                            "tag": "Shadowsocks",
                            "type": "shadowsocks",
                            "network": None,
                            "security": None,
                            "port": 1234,
                            "rawInbound": {
                                "tag": "Shadowsocks",
                                "port": 1234,
                                "protocol": "shadowsocks",
                                "settings": {
                                    "method": "chacha20-ietf-poly1305",
                                    "clients": [],
                                    "network": "tcp,udp",
                                },
                                "sniffing": {
                                    "enabled": True,
                                    "destOverride": ["http", "tls", "quic"],
                                },
                            },
                        }
                    ],
                    "createdAt": iso(squad.created_at),
                    "updatedAt": iso(squad.created_at),
                }
            )
        return self._ok({"total": len(items), "internalSquads": items})

    async def _h_stats(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        now = self.now()
        users = list(self.users_by_id.values())
        counts = {s: sum(1 for u in users if u.status == s) for s in STATUSES}

        def online_since(delta: timedelta) -> int:
            return sum(1 for u in users if u.online_at is not None and u.online_at >= now - delta)

        memory = {"total": 25276514304, "free": 23503437824, "used": 1773076480}
        if self.v < (2, 7, 0):
            memory.update({"active": 1773076480, "available": 23503437824})
        return self._ok(
            {
                "cpu": {"cores": 2},
                "memory": memory,
                "uptime": round((now - self._started_at).total_seconds(), 2),
                "timestamp": int(now.timestamp() * 1000),
                "users": {"statusCounts": counts, "totalUsers": len(users)},
                "onlineStats": {
                    "onlineNow": online_since(timedelta(minutes=1)),
                    "lastDay": online_since(timedelta(days=1)),
                    "lastWeek": online_since(timedelta(days=7)),
                    "neverOnline": sum(1 for u in users if u.online_at is None),
                },
                "nodes": {"totalOnline": 0, "totalBytesLifetime": "0"},
            }
        )

    async def _h_health(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        now_ms = int(self.now().timestamp() * 1000)
        if self.v < (2, 7, 0):
            return self._ok(
                {"pm2Stats": [{"name": "remnawave-api", "memory": "300 MiB", "cpu": "1"}]}
            )
        metrics = [
            {
                "rss": 809623552,
                "heapUsed": 253803424,
                "heapTotal": 372191232,
                "external": 8537250,
                "arrayBuffers": 2466474,
                "eventLoopDelayMs": 0.22,
                "eventLoopP99Ms": 1.05,
                "activeHandles": 27,
                "uptime": 43.4,
                "pid": 16972 + i,
                "timestamp": now_ms,
                "instanceId": "0",
                "instanceType": kind,
            }
            for i, kind in enumerate(("api", "scheduler", "processor"))
        ]
        return self._ok({"runtimeMetrics": metrics})

    async def _h_metadata(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        sha = "0f344f388807f5323b49024a563b3f8146d66857"
        return self._ok(
            {
                "version": self.version,
                "build": {"time": "2011-11-11T11:11:11Z", "number": "0"},
                "git": {
                    "backend": {
                        "commitSha": sha,
                        "branch": "dev",
                        "commitUrl": f"https://github.com/remnawave/backend/commit/{sha}",
                    },
                    "frontend": {
                        "commitSha": sha,
                        "commitUrl": f"https://github.com/remnawave/frontend/commit/{sha}",
                    },
                },
            }
        )
