"""The settings that point every payment provider at its emulator.

What an operator writes for the real providers, with the emulators' addresses, keys and
secrets instead: the e2e tests and the demo configure the shop through it, so the shop is
configured the one way it is in production."""

from __future__ import annotations

from vpnshop.testing.cryptopay import CryptoPayEmulator
from vpnshop.testing.freekassa import FreeKassaEmulator
from vpnshop.testing.tribute import TributeEmulator
from vpnshop.testing.yookassa import YooKassaEmulator


def provider_env(
    yk: YooKassaEmulator,
    cp: CryptoPayEmulator,
    fk: FreeKassaEmulator,
    tb: TributeEmulator,
    *,
    tribute_product: str,
    return_url: str = "https://t.me/vpnshop_bot",
) -> dict[str, str]:
    """``VPNSHOP_`` variables enabling YooKassa, CryptoPay, FreeKassa and Tribute against
    the given emulators; Tribute's *tribute_product* is sold as the ``month`` plan."""
    return {
        "VPNSHOP_YOOKASSA_SHOP_ID": yk.shop_id,
        "VPNSHOP_YOOKASSA_SECRET_KEY": yk.secret_key,
        "VPNSHOP_YOOKASSA_API_URL": yk.api_url,
        "VPNSHOP_YOOKASSA_RETURN_URL": return_url,
        "VPNSHOP_YOOKASSA_ALLOWED_IPS": "127.0.0.1",
        "VPNSHOP_CRYPTOPAY_TOKEN": cp.token,
        "VPNSHOP_CRYPTOPAY_API_URL": cp.base_url,
        "VPNSHOP_FREEKASSA_SHOP_ID": str(fk.shop_id),
        "VPNSHOP_FREEKASSA_API_KEY": fk.api_key,
        "VPNSHOP_FREEKASSA_SECRET_WORD_2": fk.secret_word_2,
        "VPNSHOP_FREEKASSA_API_URL": fk.api_url,
        "VPNSHOP_FREEKASSA_ALLOWED_IPS": "127.0.0.1",
        "VPNSHOP_FREEKASSA_CUSTOMER_IP": "203.0.113.10",  # a documentation address (RFC 5737)
        "VPNSHOP_TRIBUTE_API_KEY": tb.api_key,
        "VPNSHOP_TRIBUTE_PRODUCTS": f"month={tb.web_app_link(tribute_product)}",
    }
