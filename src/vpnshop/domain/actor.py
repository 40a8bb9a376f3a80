"""Who made a change: every ledger entry and audit record names one."""

from __future__ import annotations

import enum

import attrs


class ActorKind(enum.StrEnum):
    CUSTOMER = "customer"
    PROVIDER = "provider"
    ADMIN = "admin"
    SYSTEM = "system"


@attrs.frozen
class Actor:
    """A customer (by Telegram id), a payment provider (by name), an admin, or the system."""

    kind: ActorKind
    ref: str

    @classmethod
    def customer(cls, telegram_id: int) -> Actor:
        return cls(ActorKind.CUSTOMER, str(telegram_id))

    @classmethod
    def provider(cls, name: str) -> Actor:
        return cls(ActorKind.PROVIDER, name)

    @classmethod
    def admin(cls, telegram_id: int) -> Actor:
        return cls(ActorKind.ADMIN, str(telegram_id))

    @classmethod
    def system(cls, job: str = "system") -> Actor:
        return cls(ActorKind.SYSTEM, job)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.ref}"

    @classmethod
    def parse(cls, text: str) -> Actor:
        kind, _, ref = text.partition(":")
        return cls(ActorKind(kind), ref)
