"""Parsing the /start payload of a deep link."""

from __future__ import annotations

import pytest

from vpnshop.domain.deeplink import LinkKind, StartLink, parse_start_payload


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("ref_AbC-9_x", StartLink(LinkKind.REFERRAL, "AbC-9_x")),
        ("promo_SPRING", StartLink(LinkKind.PROMO, "SPRING")),
        ("vk_ads-2026", StartLink(LinkKind.CAMPAIGN, "vk_ads-2026")),
        ("x" * 64, StartLink(LinkKind.CAMPAIGN, "x" * 64)),
        (None, None),
        ("", None),
        ("ref_", None),
        ("promo_", None),
        ("x" * 65, None),
        ("spring sale", None),
        ("<b>tag</b>", None),
        ("тег", None),
    ],
)
def test_start_payload(payload: str | None, expected: StartLink | None) -> None:
    """A payload is a referral, a promo or a campaign tag; one Telegram would never send
    (too long, outside A-Z a-z 0-9 _ -) or a prefix without a code is ignored."""
    assert parse_start_payload(payload) == expected
