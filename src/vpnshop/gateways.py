"""Payment gateways from configuration: each configured provider becomes its adapter.

``config.py`` only says which providers are configured and keeps their raw values
(``settings.providers[name].values``, secrets as :class:`~vpnshop.config.Secret`). Here
each provider's values are turned into its adapter's settings and the adapter is built.
Every problem is reported as a :class:`~vpnshop.config.ConfigError` that names the
``VPNSHOP_`` variable to fix; a provider that is not configured is logged as disabled.

Adding a provider: one ``_build_<name>`` function and one line in :data:`BUILDERS` (plus
its variables in ``config.PROVIDER_FIELDS``); see ``docs/writing-a-provider.md``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from vpnshop.config import PREFIX, ConfigError, Secret, Settings
from vpnshop.ports.payments import PaymentGateway

log = logging.getLogger(__name__)


class _Values:
    """One provider's raw values, read with the variable's full name in every error."""

    def __init__(self, provider: str, values: Mapping[str, Any]) -> None:
        self.provider = provider
        self.values = values

    def var(self, key: str) -> str:
        return f"{PREFIX}{self.provider.upper()}_{key.upper()}"

    def text(self, key: str, default: str | None = None) -> str | None:
        raw = self.values.get(key)
        if raw is None:
            return default
        return raw.get() if isinstance(raw, Secret) else str(raw).strip()

    def required(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise ConfigError([(self.var(key), f"is required to enable {self.provider}")])
        return value

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        raw = self.text(key)
        if raw is None:
            return default
        try:
            number = int(raw)
        except ValueError:
            raise ConfigError([(self.var(key), f"expected a whole number, got {raw!r}")]) from None
        if not lo <= number <= hi:
            raise ConfigError([(self.var(key), f"must be within {lo}..{hi}, got {number}")])
        return number

    def boolean(self, key: str, default: bool) -> bool:
        raw = self.text(key)
        if raw is None:
            return default
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError([(self.var(key), f"expected true or false, got {raw!r}")])

    def url(self, key: str) -> str | None:
        raw = self.text(key)
        if raw is None:
            return None
        if urlsplit(raw).scheme not in ("http", "https") or not urlsplit(raw).netloc:
            raise ConfigError([(self.var(key), "expected a URL starting with https://")])
        return raw.rstrip("/")

    def words(self, key: str) -> tuple[str, ...]:
        raw = self.text(key) or ""
        return tuple(w for w in raw.replace(",", " ").split() if w)

    def adapter_error(
        self, exc: Exception, renames: Mapping[str, str] | None = None
    ) -> ConfigError:
        """An adapter's own config error (``.setting`` names its field) as a ConfigError."""
        setting = getattr(exc, "setting", None)
        key = (renames or {}).get(setting, setting) if isinstance(setting, str) else None
        where = self.var(key) if key else f"{PREFIX}{self.provider.upper()}_*"
        return ConfigError([(where, str(exc))])


def _build_yookassa(v: _Values, settings: Settings) -> PaymentGateway:
    from vpnshop.adapters.payments.yookassa import (
        YOOKASSA_API_URL,
        YOOKASSA_NOTIFICATION_IPS,
        YooKassaConfigError,
        YooKassaGateway,
        YooKassaSettings,
    )

    allowed = v.words("allowed_ips") or YOOKASSA_NOTIFICATION_IPS
    try:
        return YooKassaGateway(
            YooKassaSettings(
                shop_id=v.required("shop_id"),
                secret_key=v.required("secret_key"),
                return_url=v.url("return_url"),
                api_url=v.url("api_url") or YOOKASSA_API_URL,
                allowed_ips=allowed,
                vat_code=v.integer("vat_code", 1, 1, 12),
                send_receipt=v.boolean("send_receipt", False),
            )
        )
    except YooKassaConfigError as exc:
        raise v.adapter_error(exc) from None


def _build_cryptopay(v: _Values, settings: Settings) -> PaymentGateway:
    from vpnshop.adapters.payments.cryptopay import (
        CryptoPayConfigError,
        CryptoPayGateway,
        CryptoPayNetwork,
        CryptoPaySettings,
    )

    raw_network = (v.text("network") or "mainnet").lower()
    try:
        network = CryptoPayNetwork(raw_network)
    except ValueError:
        raise ConfigError(
            [(v.var("network"), f"expected mainnet or testnet, got {raw_network!r}")]
        ) from None
    try:
        return CryptoPayGateway(
            CryptoPaySettings(
                token=v.required("token"),
                network=network,
                base_url=v.url("api_url"),
                fiat=(v.text("fiat") or settings.default_currency).upper(),
                accepted_assets=tuple(a.upper() for a in v.words("assets")),
            )
        )
    except CryptoPayConfigError as exc:
        raise v.adapter_error(
            exc, {"base_url": "api_url", "accepted_assets": "assets", "fiat": "fiat"}
        ) from None


def _build_freekassa(v: _Values, settings: Settings) -> PaymentGateway:
    from vpnshop.adapters.payments.freekassa import (
        FREEKASSA_API_URL,
        FREEKASSA_NOTIFICATION_IPS,
        FreeKassaConfigError,
        FreeKassaGateway,
        FreeKassaSettings,
    )

    allowed = v.words("allowed_ips") or FREEKASSA_NOTIFICATION_IPS
    shop_id = v.required("shop_id")
    if not shop_id.isdigit():
        raise ConfigError([(v.var("shop_id"), f"expected a numeric shop id, got {shop_id!r}")])
    customer_ip = v.text("customer_ip")
    if customer_ip:
        try:
            ipaddress.ip_address(customer_ip)
        except ValueError:
            raise ConfigError(
                [(v.var("customer_ip"), f"expected an IP address, got {customer_ip!r}")]
            ) from None
    else:
        # FreeKassa's API requires a payer address, and a Telegram bot never sees one.
        raise ConfigError(
            [
                (
                    v.var("customer_ip"),
                    "is required to enable freekassa: the server's public IPv4 address, "
                    "sent as the payer's `ip` (FreeKassa refuses 127.0.0.1)",
                )
            ]
        )
    try:
        return FreeKassaGateway(
            FreeKassaSettings(
                shop_id=shop_id,
                api_key=v.required("api_key"),
                secret_word_2=v.required("secret_word_2"),
                customer_ip=customer_ip,
                api_url=v.url("api_url") or FREEKASSA_API_URL,
                payment_system_id=v.integer("payment_system", 44, 1, 10_000),
                allowed_ips=allowed,
            )
        )
    except FreeKassaConfigError as exc:
        raise v.adapter_error(exc, {"payment_system_id": "payment_system"}) from None


def parse_tribute_products(v: _Values) -> tuple[Any, ...]:
    """``VPNSHOP_TRIBUTE_PRODUCTS``: ``plan=link`` pairs separated by commas or spaces,
    e.g. ``month=https://t.me/tribute/app?startapp=sNMT``. Each link's ``startapp`` code
    is what identifies the product in Tribute's webhooks."""
    from vpnshop.adapters.payments.tribute import TributeProduct

    products = []
    for item in v.words("products"):
        plan, sep, link = item.partition("=")
        if not sep or not plan or not link:
            raise ConfigError([(v.var("products"), f"expected plan=link pairs, got {item!r}")])
        code = dict(parse_qsl(urlsplit(link).query)).get("startapp")
        if not code:
            raise ConfigError(
                [(v.var("products"), f"the link for plan {plan!r} has no startapp=<code>")]
            )
        products.append(TributeProduct(key=code, plan_code=plan, link=link))
    return tuple(products)


def _build_tribute(v: _Values, settings: Settings) -> PaymentGateway:
    from vpnshop.adapters.payments.tribute import (
        ProductMatch,
        TributeConfigError,
        TributeGateway,
        TributeSettings,
    )

    try:
        return TributeGateway(
            TributeSettings(
                api_key=v.required("api_key"),
                products=parse_tribute_products(v),
                match_by=ProductMatch.WEB_APP_LINK,
                currency=settings.default_currency,
            )
        )
    except TributeConfigError as exc:
        raise v.adapter_error(exc, {"currency": "default_currency"}) from None


Builder = Callable[[_Values, Settings], PaymentGateway]
BUILDERS: Final[Mapping[str, Builder]] = {
    "yookassa": _build_yookassa,
    "cryptopay": _build_cryptopay,
    "freekassa": _build_freekassa,
    "tribute": _build_tribute,
}


def build_gateways(settings: Settings, stack: AsyncExitStack) -> dict[str, PaymentGateway]:
    """Every configured provider's gateway, closed when *stack* closes.

    Raises ConfigError naming each bad ``VPNSHOP_`` variable (all providers are checked
    before anything is raised). Providers that are not configured are logged as disabled.
    """
    gateways: dict[str, PaymentGateway] = {}
    problems: list[tuple[str, str]] = []
    for name, build in BUILDERS.items():
        provider = settings.providers.get(name)
        if provider is None:
            why = settings.disabled.get(name, "not configured")
            log.info("payment provider %s disabled: %s", name, why)
            continue
        try:
            gateway = build(_Values(name, provider.values), settings)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        gateways[name] = gateway
    for name in settings.providers:
        if name not in BUILDERS:
            problems.append((f"{PREFIX}{name.upper()}_*", "no gateway is known by this name"))
    if problems:
        raise ConfigError(problems)
    for gateway in gateways.values():
        close: Callable[[], Any] | None = getattr(gateway, "aclose", None)
        if close is not None:
            stack.push_async_callback(close)
        log.info("payment provider %s enabled", gateway.name)
    return gateways
