"""Customers: Telegram users of the shop."""

from __future__ import annotations

from datetime import datetime

import attrs

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"


def normalise_language(code: str | None) -> str:
    """Telegram's ``language_code`` ("en-US", "ru", None) to one the shop speaks."""
    base = (code or "").split("-")[0].lower()
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


@attrs.frozen
class Customer:
    """A bot user. ``id`` is ours; ``telegram_id`` is Telegram's and unique.

    ``referral_code`` is the customer's own code in ``ref_<code>`` links (assigned once);
    ``unreachable`` means Telegram refuses messages to them (they blocked the bot);
    ``discount_code`` is a discount promo they typed in, kept for their next purchase.
    These three move only through their own repository methods, never ``update``.
    """

    id: int | None
    telegram_id: int
    language: str = DEFAULT_LANGUAGE
    username: str | None = None
    referrer_id: int | None = None
    campaign: str | None = None
    banned: bool = False
    referral_code: str | None = None
    unreachable: bool = False
    discount_code: str | None = None
    deleted_at: datetime | None = None
    created_at: datetime | None = None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def banned_as(self, banned: bool) -> Customer:
        return attrs.evolve(self, banned=banned)

    def soft_deleted(self, now: datetime) -> Customer:
        return attrs.evolve(self, deleted_at=now)

    def restored(self) -> Customer:
        return attrs.evolve(self, deleted_at=None)
