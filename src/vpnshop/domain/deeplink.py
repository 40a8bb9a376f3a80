"""The payload of a ``/start`` deep link: a referral, a promo code, or a campaign tag."""

from __future__ import annotations

import enum
import re

import attrs

# Telegram allows 1-64 of these in a start parameter; anything else never came from a link.
_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class LinkKind(enum.StrEnum):
    REFERRAL = "ref"
    PROMO = "promo"
    CAMPAIGN = "campaign"


@attrs.frozen
class StartLink:
    kind: LinkKind
    value: str


def parse_start_payload(payload: str | None) -> StartLink | None:
    """``ref_<code>``, ``promo_<code>``, or any other valid token as a campaign tag.

    None for no payload and for one that breaks Telegram's rule (1-64 of A-Z, a-z, 0-9,
    ``_`` and ``-``) or names a referral or promo without a code: such a link is ignored,
    never an error, so that the user still gets in.
    """
    if not payload or not _PAYLOAD.match(payload):
        return None
    for kind in (LinkKind.REFERRAL, LinkKind.PROMO):
        prefix = f"{kind.value}_"
        if payload.startswith(prefix):
            value = payload[len(prefix) :]
            return StartLink(kind, value) if value else None
    return StartLink(LinkKind.CAMPAIGN, payload)
