"""What a confirmed payment produces, and under which idempotency keys: the settlement
rules, written once.

Every store renders this one description: the general path
(``vpnshop.services.settlement.settle_stepwise``, used by the in-memory store and by
SQLite and PostgreSQL outside the fast path) applies the :class:`Effects` that
:func:`settlement_effects` returns; the SQLite settler renders the same rules with the
values it reads in its transaction; the PostgreSQL settler renders them into its one
batch statement, where a :class:`Ref` becomes the column that holds its value. The keys
make every effect idempotent: a ledger entry, a job or a subscription extension keyed
by the payment happens once however often the payment is confirmed.

A confirmed payment produces:

* a top-up: a ledger credit of the order's amount to the buyer (``topup:{payment}``);
* a plan purchase: the buyer's subscription extended by the order's days with the plan's
  limits, and its panel update (``apply:{subscription}:payment:{payment}``);
* with a referrer and a referral percent: the referrer's reward credited
  (``referral:{payment}``) and the referrer told (``notify:referral:{payment}``);
* with referral bonus days: bonus days for both, once per referral, on the referee's
  first settled payment (``referral-bonus:{payment}``);
* with a promo code: the redemption of the code by the buyer;
* always: the buyer told (``notify:paid:{payment}``) and an audit record
  (``payment.succeeded`` on ``payment:{payment}``).
"""

from __future__ import annotations

import enum
import string
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.audit import AuditEntry
from vpnshop.domain.ledger import EntryKind, LedgerEntry
from vpnshop.domain.money import Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobKind, OutboxJob
from vpnshop.domain.payment import Payment
from vpnshop.domain.plan import Plan
from vpnshop.domain.promo import PromoRedemption
from vpnshop.domain.referral import ReferralPolicy


class Ref(enum.StrEnum):
    """A value of the settlement that only the store knows when it settles."""

    PAYMENT = "payment"  # the payment's id
    CUSTOMER = "customer"  # the buyer's id
    REFERRER = "referrer"  # the buyer's referrer's id
    SUBSCRIPTION = "subscription"  # the id of the subscription extended
    REASON = "reason"  # why it was extended (a KeyFormat below, or a gift's reason)
    REWARD = "reward"  # the referrer's reward, as text ("12.34 RUB")


@attrs.frozen
class KeyFormat:
    """An idempotency key (or a subject) built from :class:`Ref` values, e.g.
    ``KeyFormat("topup:{payment}")``."""

    template: str

    def __call__(self, **values: object) -> str:
        return self.template.format(**values)

    def parts(self) -> tuple[str | Ref, ...]:
        """The literal text and the references, in order: what a renderer that builds
        the key inside the database (``'topup:' || p.id``) concatenates."""
        out: list[str | Ref] = []
        for literal, field, _, _ in string.Formatter().parse(self.template):
            if literal:
                out.append(literal)
            if field is not None:
                out.append(Ref(field))
        return tuple(out)


@attrs.frozen
class JobRule:
    """An outbox job the settlement enqueues: its kind, its key and its payload, whose
    values are literals or references."""

    kind: JobKind
    key: KeyFormat
    payload: tuple[tuple[str, str | Ref], ...]

    def job(self, values: Mapping[Ref, Any], now: datetime) -> OutboxJob:
        """The job with *values* filled in, due *now*."""
        payload = {field: values[v] if isinstance(v, Ref) else v for field, v in self.payload}
        return OutboxJob(
            kind=self.kind,
            payload=payload,
            dedupe_key=self.key(**{str(r): v for r, v in values.items()}),
            due_at=now,
            created_at=now,
        )


@attrs.frozen
class CreditRule:
    """A ledger credit the settlement posts."""

    kind: EntryKind
    key: KeyFormat


# -- the rules ------------------------------------------------------------------------

TOPUP_CREDIT = CreditRule(EntryKind.TOPUP, KeyFormat("topup:{payment}"))
REFERRAL_CREDIT = CreditRule(EntryKind.REFERRAL_REWARD, KeyFormat("referral:{payment}"))
REFERRAL_ACTOR = Actor.system("referral")  # who credits a referral reward

PAID_NOTICE = JobRule(
    JobKind.NOTIFY_CUSTOMER,
    KeyFormat("notify:paid:{payment}"),
    (("customer_id", Ref.CUSTOMER), ("template", "payment_received"), ("payment_id", Ref.PAYMENT)),
)
REFERRAL_NOTICE = JobRule(
    JobKind.NOTIFY_CUSTOMER,
    KeyFormat("notify:referral:{payment}"),
    (("customer_id", Ref.REFERRER), ("template", "referral_reward"), ("amount", Ref.REWARD)),
)

# Why a subscription was extended: the reason ends the key of its panel update.
PURCHASE_REASON = KeyFormat("payment:{payment}")
REFERRAL_BONUS_REASON = KeyFormat("referral-bonus:{payment}")
APPLY = JobRule(
    JobKind.APPLY_SUBSCRIPTION,
    KeyFormat("apply:{subscription}:{reason}"),
    (("subscription_id", Ref.SUBSCRIPTION),),
)

SUCCEEDED_ACTION = "payment.succeeded"
AUDIT_SUBJECT = KeyFormat("payment:{payment}")


def audit_details(amount: Money, external_id: str | None) -> dict[str, str | None]:
    """What the ``payment.succeeded`` audit record of a provider's confirmation holds."""
    return {"amount": str(amount), "external_id": external_id}


# -- the description --------------------------------------------------------------------


@attrs.frozen
class Extension:
    """Extend (or start) one customer's subscription by *days* from max(now, expiry),
    taking *plan*'s limits when given (``domain.subscription.extend_or_start``), and
    enqueue the panel update (:data:`APPLY`, keyed by the subscription and *reason*)."""

    customer_id: int
    days: int
    plan: Plan | None
    reason: str


@attrs.frozen
class ReferralBonus:
    """Bonus days for the referrer and the referee, granted once per referral: on the
    referee's first settled payment (``ReferralRepository.claim_bonus`` decides which)."""

    referee_id: int
    referrer_days: int
    referee_days: int
    reason: str


@attrs.frozen
class Effects:
    """Everything a settled payment changes besides its own row."""

    ledger: tuple[LedgerEntry, ...] = ()
    extensions: tuple[Extension, ...] = ()
    referral_bonus: ReferralBonus | None = None
    jobs: tuple[OutboxJob, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    promo: PromoRedemption | None = None
    promo_once_per_customer: bool = True


def settlement_effects(
    payment: Payment,
    order: Order,
    plan: Plan | None,
    referrer_id: int | None,
    *,
    now: datetime,
    actor: Actor,
    policy: ReferralPolicy,
    promo_once_per_customer: bool = True,
    details: Mapping[str, object] | None = None,
) -> Effects:
    """What succeeding *payment* (of *order*, buying *plan* if any, by a customer whose
    referrer is *referrer_id*) delivers: the rules above, with every value filled in."""
    pid, buyer = payment.id, order.customer_id
    ledger: list[LedgerEntry] = []
    extensions: list[Extension] = []
    bonus: ReferralBonus | None = None
    jobs = [PAID_NOTICE.job({Ref.CUSTOMER: buyer, Ref.PAYMENT: pid}, now)]
    if order.kind is OrderKind.TOPUP:
        ledger.append(
            LedgerEntry(
                customer_id=buyer,
                amount=order.amount,
                kind=TOPUP_CREDIT.kind,
                idempotency_key=TOPUP_CREDIT.key(payment=pid),
                actor=actor,
                reference=pid,
                created_at=now,
            )
        )
    else:
        extensions.append(Extension(buyer, order.days, plan, PURCHASE_REASON(payment=pid)))
    if referrer_id is not None:
        reward = policy.reward(payment.amount)
        if reward.is_positive:
            ledger.append(
                LedgerEntry(
                    customer_id=referrer_id,
                    amount=reward,
                    kind=REFERRAL_CREDIT.kind,
                    idempotency_key=REFERRAL_CREDIT.key(payment=pid),
                    actor=REFERRAL_ACTOR,
                    reference=pid,
                    created_at=now,
                )
            )
            jobs.append(
                REFERRAL_NOTICE.job(
                    {Ref.REFERRER: referrer_id, Ref.REWARD: str(reward), Ref.PAYMENT: pid}, now
                )
            )
        if policy.referrer_bonus_days or policy.referee_bonus_days:
            bonus = ReferralBonus(
                buyer,
                policy.referrer_bonus_days,
                policy.referee_bonus_days,
                REFERRAL_BONUS_REASON(payment=pid),
            )
    promo = PromoRedemption(order.promo_code, buyer, now, order.id) if order.promo_code else None
    audit = AuditEntry(
        actor=actor,
        action=SUCCEEDED_ACTION,
        subject=AUDIT_SUBJECT(payment=pid),
        at=now,
        details={"amount": str(payment.amount), **(details or {})},
    )
    return Effects(
        ledger=tuple(ledger),
        extensions=tuple(extensions),
        referral_bonus=bonus,
        jobs=tuple(jobs),
        audit=(audit,),
        promo=promo,
        promo_once_per_customer=promo_once_per_customer,
    )
