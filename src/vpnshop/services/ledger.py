"""Balance use cases. Every change of a balance is one ledger entry with an idempotency
key and an actor; the store applies entry and balance together, atomically."""

from __future__ import annotations

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import InsufficientFundsError, NotFoundError, ValidationError
from vpnshop.domain.ledger import EntryKind, Hold, HoldStatus, LedgerEntry
from vpnshop.domain.money import Money
from vpnshop.ports.storage import BalanceMismatch, UnitOfWork
from vpnshop.services.deps import Deps, record


async def post_entry(
    uow: UnitOfWork,
    deps: Deps,
    *,
    customer_id: int,
    amount: Money,
    kind: EntryKind,
    key: str,
    actor: Actor,
    reference: str | None = None,
    memo: str | None = None,
) -> bool:
    """Post one entry in the caller's transaction; False when *key* was posted before."""
    return await uow.ledger.post(
        LedgerEntry(
            customer_id=customer_id,
            amount=amount,
            kind=kind,
            idempotency_key=key,
            actor=actor,
            reference=reference,
            memo=memo,
            created_at=deps.now(),
        )
    )


async def _post_audited(
    deps: Deps,
    *,
    customer_id: int,
    amount: Money,
    kind: EntryKind,
    key: str,
    actor: Actor,
    action: str,
    reference: str | None = None,
    memo: str | None = None,
) -> bool:
    """One ledger entry and its audit record in a transaction of their own."""
    async with deps.uow() as uow:
        if await uow.customers.get(customer_id) is None:
            raise NotFoundError(f"customer {customer_id}")
        posted = await post_entry(
            uow,
            deps,
            customer_id=customer_id,
            amount=amount,
            kind=kind,
            key=key,
            actor=actor,
            reference=reference,
            memo=memo,
        )
        if posted:
            await record(
                uow,
                deps.now(),
                actor,
                action,
                f"customer:{customer_id}",
                amount=str(amount),
                key=key,
                memo=memo,
            )
        await uow.commit()
        return posted


@attrs.frozen
class CreditBalance:
    """Add money to a customer's balance (a top-up, a promo, a reward, an admin credit).

    Idempotent on *key*: crediting twice with one key credits once. Returns whether this
    call credited.
    """

    deps: Deps

    async def __call__(
        self,
        customer_id: int,
        amount: Money,
        *,
        kind: EntryKind,
        key: str,
        actor: Actor,
        reference: str | None = None,
        memo: str | None = None,
    ) -> bool:
        if not amount.is_positive:
            raise ValidationError("a credit is a positive amount")
        return await _post_audited(
            self.deps,
            customer_id=customer_id,
            amount=amount,
            kind=kind,
            key=key,
            actor=actor,
            action=f"balance.{kind.value}",
            reference=reference,
            memo=memo,
        )


@attrs.frozen
class AdjustBalance:
    """An admin moves a balance up or down, with a reason. Never below zero."""

    deps: Deps

    async def __call__(
        self, customer_id: int, delta: Money, *, admin: Actor, reason: str, key: str
    ) -> bool:
        if delta.is_zero:
            raise ValidationError("an adjustment moves a non-zero amount")
        if not reason.strip():
            raise ValidationError("an adjustment needs a reason")
        return await _post_audited(
            self.deps,
            customer_id=customer_id,
            amount=delta,
            kind=EntryKind.ADMIN_ADJUSTMENT,
            key=key,
            actor=admin,
            action="balance.adjust",
            memo=reason,
        )


async def hold_funds(
    uow: UnitOfWork,
    deps: Deps,
    *,
    customer_id: int,
    amount: Money,
    order_id: str,
    actor: Actor,
) -> Hold:
    """Take *amount* off the balance into a hold for *order_id* (caller's transaction).

    Raises InsufficientFundsError, leaving the caller to roll back. One hold per order:
    the ledger key is derived from the order, so a retry cannot hold twice.
    """
    hold = Hold(
        id=f"h_{order_id}",
        customer_id=customer_id,
        amount=amount,
        order_id=order_id,
        created_at=deps.now(),
    )
    posted = await post_entry(
        uow,
        deps,
        customer_id=customer_id,
        amount=-amount,
        kind=EntryKind.HOLD,
        key=f"hold:{hold.id}",
        actor=actor,
        reference=order_id,
    )
    if not posted:
        raise InsufficientFundsError(f"order {order_id} already holds funds")
    await uow.holds.add(hold)
    return hold


async def capture_hold(uow: UnitOfWork, hold_id: str) -> bool:
    """The purchase was fulfilled: the held money is spent. No balance change."""
    return await uow.holds.settle(hold_id, HoldStatus.CAPTURED) is not None


async def release_hold(uow: UnitOfWork, deps: Deps, hold_id: str, actor: Actor) -> bool:
    """Fulfilment failed: give the held money back, exactly once."""
    hold = await uow.holds.settle(hold_id, HoldStatus.RELEASED)
    if hold is None:
        return False
    await post_entry(
        uow,
        deps,
        customer_id=hold.customer_id,
        amount=hold.amount,
        kind=EntryKind.RELEASE,
        key=f"release:{hold.id}",
        actor=actor,
        reference=hold.order_id,
    )
    return True


@attrs.frozen
class VerifyLedger:
    """For every customer, the stored balance equals the sum of their ledger entries."""

    deps: Deps

    async def __call__(self) -> list[BalanceMismatch]:
        async with self.deps.uow() as uow:
            return await uow.ledger.mismatches()
