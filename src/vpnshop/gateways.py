"""Payment gateways from configuration: each configured provider becomes its adapter.

The settings arrive already parsed and checked (``vpnshop.config.providers``: every bad
value is reported when the settings load, by variable name), so building an adapter
here cannot fail on an operator's value.

Adding a provider: its settings in ``config/providers.py``, one ``_build_<name>``
function and one line in :data:`BUILDERS`; see ``docs/writing-a-provider.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Final

from vpnshop.config import (
    CryptoPaySettings,
    FreeKassaSettings,
    ProviderSettings,
    Settings,
    TributeSettings,
    YooKassaSettings,
)
from vpnshop.ports.payments import PaymentGateway

log = logging.getLogger(__name__)


def _build_yookassa(s: YooKassaSettings, settings: Settings) -> PaymentGateway:
    from vpnshop.adapters.payments import yookassa

    return yookassa.YooKassaGateway(
        yookassa.YooKassaSettings(
            shop_id=s.shop_id,
            secret_key=s.secret_key.get(),
            return_url=s.return_url,
            api_url=s.api_url or yookassa.YOOKASSA_API_URL,
            allowed_ips=s.allowed_ips or yookassa.YOOKASSA_NOTIFICATION_IPS,
            vat_code=s.vat_code,
            send_receipt=s.send_receipt,
        )
    )


def _build_cryptopay(s: CryptoPaySettings, settings: Settings) -> PaymentGateway:
    from vpnshop.adapters.payments import cryptopay

    return cryptopay.CryptoPayGateway(
        cryptopay.CryptoPaySettings(
            token=s.token.get(),
            network=cryptopay.CryptoPayNetwork(s.network),
            base_url=s.api_url,
            fiat=s.fiat,
            accepted_assets=s.assets,
        )
    )


def _build_freekassa(s: FreeKassaSettings, settings: Settings) -> PaymentGateway:
    from vpnshop.adapters.payments import freekassa

    return freekassa.FreeKassaGateway(
        freekassa.FreeKassaSettings(
            shop_id=s.shop_id,
            api_key=s.api_key.get(),
            secret_word_2=s.secret_word_2.get(),
            customer_ip=s.customer_ip,
            api_url=s.api_url or freekassa.FREEKASSA_API_URL,
            payment_system_id=s.payment_system,
            allowed_ips=s.allowed_ips or freekassa.FREEKASSA_NOTIFICATION_IPS,
        )
    )


def _build_tribute(s: TributeSettings, settings: Settings) -> PaymentGateway:
    from vpnshop.adapters.payments import tribute

    return tribute.TributeGateway(
        tribute.TributeSettings(
            api_key=s.api_key.get(),
            products=tuple(
                tribute.TributeProduct(key=p.code, plan_code=p.plan, link=p.link)
                for p in s.products
            ),
            match_by=tribute.ProductMatch.WEB_APP_LINK,
            currency=settings.default_currency,
        )
    )


Builder = Callable[[Any, Settings], PaymentGateway]
BUILDERS: Final[Mapping[type[ProviderSettings], Builder]] = {
    YooKassaSettings: _build_yookassa,
    CryptoPaySettings: _build_cryptopay,
    FreeKassaSettings: _build_freekassa,
    TributeSettings: _build_tribute,
}


def build_gateways(settings: Settings, stack: AsyncExitStack) -> dict[str, PaymentGateway]:
    """Every configured provider's gateway, closed when *stack* closes."""
    gateways: dict[str, PaymentGateway] = {}
    for name, provider in settings.providers.items():
        gateway = BUILDERS[type(provider)](provider, settings)
        close: Callable[[], Any] | None = getattr(gateway, "aclose", None)
        if close is not None:
            stack.push_async_callback(close)
        gateways[name] = gateway
        log.debug("payment provider %s enabled", gateway.name)
    return gateways
