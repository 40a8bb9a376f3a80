"""Payment providers' settings: each provider's variables parsed and checked when the
settings load, into one typed settings class per provider.

A provider is on when any of its required variables is set; then every required one
must be set, and every value must be valid. ``vpnshop.gateways`` only turns these
already valid settings into adapters. Adding a provider: a settings class, a
``_parse_<name>`` function and one line in :data:`PARSERS`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import attrs

from vpnshop.config.reader import (
    PREFIX,
    Reader,
    Secret,
    boolean,
    choice,
    integer,
    networks,
    url,
    words,
)

# The fiat currencies the shop can price in (Telegram Stars are not a Crypto Pay fiat).
CRYPTOPAY_FIATS: Final = ("rub", "usd", "eur")
NONE: Final[tuple[str, ...]] = ()


@attrs.frozen
class YooKassaSettings:
    shop_id: str
    secret_key: Secret
    return_url: str | None = None
    api_url: str | None = None  # None: YooKassa's own
    allowed_ips: tuple[str, ...] = ()  # empty: the addresses YooKassa documents
    vat_code: int = 1
    send_receipt: bool = False


@attrs.frozen
class CryptoPaySettings:
    token: Secret
    network: str = "mainnet"
    api_url: str | None = None
    fiat: str = "RUB"
    assets: tuple[str, ...] = ()  # empty: every asset the app accepts


@attrs.frozen
class FreeKassaSettings:
    shop_id: str
    api_key: Secret
    secret_word_2: Secret
    # FreeKassa's order API wants the payer's IP; a Telegram bot never sees it, so the
    # shop's own public address is configured instead.
    customer_ip: str
    api_url: str | None = None
    payment_system: int = 44
    allowed_ips: tuple[str, ...] = ()  # empty: the addresses FreeKassa documents


@attrs.frozen
class TributeProductSettings:
    plan: str
    link: str
    code: str  # the link's ``startapp`` code: what Tribute's webhooks name


@attrs.frozen
class TributeSettings:
    api_key: Secret
    products: tuple[TributeProductSettings, ...]


NO_PRODUCTS: Final[tuple[TributeProductSettings, ...]] = ()
ProviderSettings = YooKassaSettings | CryptoPaySettings | FreeKassaSettings | TributeSettings


class _Provider:
    """One provider's variables, read through the shared reader."""

    def __init__(self, r: Reader, name: str, required: tuple[str, ...]) -> None:
        self.r = r
        self.name = name
        self.prefix = name.upper() + "_"
        self.required = required

    def configured(self) -> bool:
        return any(self.r.raw(self.prefix + key) for key in self.required)

    def need(self, key: str) -> str:
        value = self.r.raw(self.prefix + key)
        if value is None:
            self.r.problem(self.prefix + key, f"is required to enable {self.name}")
            return ""
        return value

    def secret(self, key: str) -> Secret:
        return Secret(self.need(key))

    def problem(self, key: str, why: str) -> None:
        self.r.problem(self.prefix + key, why)


def _parse_yookassa(p: _Provider, default_currency: str) -> YooKassaSettings:
    return YooKassaSettings(
        shop_id=p.need("SHOP_ID"),
        secret_key=p.secret("SECRET_KEY"),
        return_url=p.r.get("YOOKASSA_RETURN_URL", url(), None),
        api_url=p.r.get("YOOKASSA_API_URL", url(), None),
        allowed_ips=p.r.get("YOOKASSA_ALLOWED_IPS", networks, ()),
        vat_code=p.r.get("YOOKASSA_VAT_CODE", integer(1, 12), 1),
        send_receipt=p.r.get("YOOKASSA_SEND_RECEIPT", boolean, False),
    )


def _parse_cryptopay(p: _Provider, default_currency: str) -> CryptoPaySettings:
    return CryptoPaySettings(
        token=p.secret("TOKEN"),
        network=p.r.get("CRYPTOPAY_NETWORK", choice("mainnet", "testnet"), "mainnet"),
        api_url=p.r.get("CRYPTOPAY_API_URL", url(), None),
        fiat=p.r.get("CRYPTOPAY_FIAT", choice(*CRYPTOPAY_FIATS), default_currency).upper(),
        assets=tuple(a.upper() for a in p.r.get("CRYPTOPAY_ASSETS", words, NONE)),
    )


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"expected an IP address, got {value!r}") from None


def _parse_freekassa(p: _Provider, default_currency: str) -> FreeKassaSettings:
    shop_id = p.need("SHOP_ID")
    if shop_id and not shop_id.isdigit():
        p.problem("SHOP_ID", f"expected a numeric shop id, got {shop_id!r}")
    customer_ip = p.r.raw("FREEKASSA_CUSTOMER_IP")
    if customer_ip is None:
        p.problem(
            "CUSTOMER_IP",
            "is required to enable freekassa: the server's public IPv4 address, "
            "sent as the payer's `ip` (FreeKassa refuses 127.0.0.1)",
        )
    return FreeKassaSettings(
        shop_id=shop_id,
        api_key=p.secret("API_KEY"),
        secret_word_2=p.secret("SECRET_WORD_2"),
        customer_ip=p.r.get("FREEKASSA_CUSTOMER_IP", _ip, ""),
        api_url=p.r.get("FREEKASSA_API_URL", url(), None),
        payment_system=p.r.get("FREEKASSA_PAYMENT_SYSTEM", integer(1, 10_000), 44),
        allowed_ips=p.r.get("FREEKASSA_ALLOWED_IPS", networks, ()),
    )


def tribute_products(value: str) -> tuple[TributeProductSettings, ...]:
    """``VPNSHOP_TRIBUTE_PRODUCTS``: ``plan=link`` pairs separated by commas or spaces,
    e.g. ``month=https://t.me/tribute/app?startapp=sNMT``. Each link's ``startapp`` code
    is what identifies the product in Tribute's webhooks."""
    products: list[TributeProductSettings] = []
    for item in words(value):
        plan, sep, link = item.partition("=")
        if not sep or not plan or not link:
            raise ValueError(
                f"expected plan=link pairs such as "
                f"month=https://t.me/tribute/app?startapp=sNMT, got {item!r}"
            )
        code = dict(parse_qsl(urlsplit(link).query)).get("startapp")
        if not code:
            raise ValueError(f"the link for plan {plan!r} has no startapp=<code>")
        if any(p.plan == plan or p.code == code for p in products):
            raise ValueError(f"plan {plan!r} or code {code!r} is listed twice")
        products.append(TributeProductSettings(plan=plan, link=link, code=code))
    return tuple(products)


def _parse_tribute(p: _Provider, default_currency: str) -> TributeSettings:
    api_key = p.secret("API_KEY")
    raw = p.need("PRODUCTS")
    if raw and not words(raw):
        p.problem("PRODUCTS", "needs at least one plan=link pair")
    products = p.r.get("TRIBUTE_PRODUCTS", tribute_products, NO_PRODUCTS)
    return TributeSettings(api_key=api_key, products=products)


Parser = Callable[[_Provider, str], ProviderSettings]
PROVIDERS: Final[Mapping[str, tuple[tuple[str, ...], Parser]]] = {
    # provider: (required variables after VPNSHOP_<NAME>_, parser)
    "yookassa": (("SHOP_ID", "SECRET_KEY"), _parse_yookassa),
    "cryptopay": (("TOKEN",), _parse_cryptopay),
    "freekassa": (("SHOP_ID", "API_KEY", "SECRET_WORD_2", "CUSTOMER_IP"), _parse_freekassa),
    "tribute": (("API_KEY", "PRODUCTS"), _parse_tribute),
}
# Optional variables, listed so that setting one for a provider that is off is not
# reported as an unknown variable.
OPTIONAL: Final[Mapping[str, tuple[str, ...]]] = {
    "yookassa": ("RETURN_URL", "API_URL", "VAT_CODE", "SEND_RECEIPT", "ALLOWED_IPS"),
    "cryptopay": ("NETWORK", "API_URL", "ASSETS", "FIAT"),
    "freekassa": ("API_URL", "PAYMENT_SYSTEM", "ALLOWED_IPS"),
    "tribute": (),
}


def parse_providers(
    r: Reader, default_currency: str, disabled: dict[str, str]
) -> dict[str, ProviderSettings]:
    """Every configured provider's settings; the others land in *disabled* with why."""
    providers: dict[str, ProviderSettings] = {}
    for name, (required, parse) in PROVIDERS.items():
        p = _Provider(r, name, required)
        for key in OPTIONAL[name]:
            r.raw(p.prefix + key)  # known even when the provider is off
        if not p.configured():
            disabled[name] = "not configured"
            continue
        before = len(r.problems)
        settings = parse(p, default_currency)
        if len(r.problems) == before:
            providers[name] = settings
    return providers


def provider_variables() -> list[str]:
    """Every provider variable's full name (for documentation checks)."""
    return [
        f"{PREFIX}{name.upper()}_{key}"
        for name, (required, _) in PROVIDERS.items()
        for key in (*required, *OPTIONAL[name])
    ]
