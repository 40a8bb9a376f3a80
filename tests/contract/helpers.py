"""Pieces the payment gateway contract tests share: a webhook receiver and request builders."""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

from vpnshop.domain.money import RUB, Money
from vpnshop.ports.payments import (
    CheckoutRequest,
    PaymentEvent,
    PaymentGateway,
    ProviderUnavailableError,
    WebhookAuthError,
    WebhookMalformedError,
    WebhookRequest,
)
from vpnshop.testing._emulator import LoopbackServer


class Receiver(LoopbackServer):
    """Our webhook endpoint in miniature: parse with the gateway, answer like the shell
    (401 forged, 400 malformed, 503 when the provider cannot be asked, else the gateway's
    reply), at ``/webhooks/<gateway name>`` as the shell serves it."""

    def __init__(self, gateway: PaymentGateway) -> None:
        super().__init__()
        self.gateway = gateway
        self.path = f"/webhooks/{gateway.name}"
        self.events: list[PaymentEvent] = []
        self.errors: list[Exception] = []
        self.fail_next = 0  # answer 500 this many times, as if the database were down
        self.url = ""

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        return app

    async def start(self) -> None:
        await super().start()
        self.url = self.base_url + self.path

    async def _handle(self, request: web.Request) -> web.Response:
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500)
        wr = WebhookRequest(
            body=await request.read(),
            headers=dict(request.headers),
            remote_ip=request.remote or "",
            content_type=request.content_type,
        )
        try:
            event = await self.gateway.parse_webhook(wr)
        except WebhookAuthError as exc:
            self.errors.append(exc)
            return web.Response(status=401)
        except WebhookMalformedError as exc:
            self.errors.append(exc)
            return web.Response(status=400)
        except ProviderUnavailableError as exc:
            self.errors.append(exc)
            return web.Response(status=503)
        self.events.append(event)
        reply = self.gateway.webhook_reply
        return web.Response(status=reply.status, text=reply.body)


def checkout(n: int = 1, amount: str = "100.00", **overrides: Any) -> CheckoutRequest:
    """The *n*-th customer's checkout of *amount* RUB, with distinct ids and key."""
    base = CheckoutRequest(
        payment_id=f"pay-{n}",
        order_id=f"order-{n}",
        amount=Money.parse(amount, RUB),
        description="VPN 1 month",
        idempotency_key=f"checkout-{n}",
        customer_telegram_id=42,
    )
    return attrs.evolve(base, **overrides)


def json_webhook(body: bytes, headers: dict[str, str]) -> WebhookRequest:
    """A JSON delivery from loopback with exactly *headers*."""
    return WebhookRequest(
        body=body, headers=headers, remote_ip="127.0.0.1", content_type="application/json"
    )
