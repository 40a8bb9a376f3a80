"""The referral programme: who brought whom, and what it pays."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import attrs

from vpnshop.domain.errors import ReferralError, ValidationError
from vpnshop.domain.money import Money


@attrs.frozen
class Referral:
    referrer_id: int
    referee_id: int
    created_at: datetime
    bonus_granted_at: datetime | None = None  # the first-payment bonus days, once


@attrs.frozen
class ReferralPolicy:
    """A share of every referee payment to the referrer, and/or days on the first one."""

    percent: int = 0
    referrer_bonus_days: int = 0
    referee_bonus_days: int = 0

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValidationError("referral percent must be between 0 and 100")
        if self.referrer_bonus_days < 0 or self.referee_bonus_days < 0:
            raise ValidationError("referral bonus days cannot be negative")

    def reward(self, paid: Money) -> Money:
        return paid.percent(self.percent)


def check_referral(
    referrer_id: int, referee_id: int, referrer_of: Callable[[int], int | None]
) -> None:
    """Refuse self-referral and cycles (A refers B refers ... refers A).

    *referrer_of* gives a customer's referrer; the chain above the referrer is walked.
    """
    if referrer_id == referee_id:
        raise ReferralError("a customer cannot refer themselves")
    seen = {referee_id}
    current: int | None = referrer_id
    while current is not None:
        if current in seen:
            raise ReferralError("this referral would make a cycle")
        seen.add(current)
        current = referrer_of(current)
