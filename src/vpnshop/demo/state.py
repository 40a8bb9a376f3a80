"""The final state the demo prints: the customer's ledger, the panel user, the outbox."""

from __future__ import annotations

from collections import Counter
from typing import TextIO

from vpnshop.bootstrap import App
from vpnshop.services.outbox import OutboxAdmin


async def print_state(app: App, telegram_id: int, out: TextIO) -> None:
    """Ledger entries (oldest first), balances, the subscription and its panel user, and
    the outbox by kind and status (with any parked job's reason)."""
    async with app.deps.uow() as uow:
        customer = await uow.customers.by_telegram_id(telegram_id)
        if customer is None or customer.id is None:
            print(f"no customer with Telegram id {telegram_id}", file=out)
            return
        entries = await uow.ledger.entries(customer.id, limit=1000)
        balances = await uow.ledger.balances(customer.id)
        subs = await uow.subscriptions.for_customer(customer.id)
    print(f"Ledger of customer {customer.id} (Telegram {telegram_id}), oldest first:", file=out)
    for e in reversed(entries):
        print(f"  {e.id:>4}  {e.kind.value:<18} {e.amount!s:>14}  {e.reference or ''}", file=out)
    print("  balance: " + (", ".join(str(b) for b in balances) or "none"), file=out)
    for sub in subs:
        print(
            f"Subscription {sub.id}: plan {sub.plan_code}, until {sub.expires_at:%Y-%m-%d %H:%M} "
            f"UTC, auto-renew {'on' if sub.auto_renew else 'off'}",
            file=out,
        )
        if app.panel is not None and sub.panel_key is not None:
            user = await app.panel.get(sub.panel_key)
            if user is None:
                print(f"  panel user {sub.panel_key}: missing", file=out)
            else:
                print(
                    f"  panel user {user.username}: {user.status.value}, expires "
                    f"{user.expires_at:%Y-%m-%d %H:%M} UTC, traffic limit "
                    f"{user.traffic_limit_bytes // 2**30} GiB, link {user.subscription_url}",
                    file=out,
                )
    jobs = await OutboxAdmin(app.deps).jobs(parked_only=False, limit=10000)
    counts = Counter((j.kind, j.status.value) for j in jobs)
    print(f"Outbox: {len(jobs)} jobs", file=out)
    for (kind, status), n in sorted(counts.items()):
        print(f"  {kind:<24} {status:<8} {n}", file=out)
    for j in jobs:
        if j.status.value == "parked":
            print(
                f"  parked {j.id} {j.kind}: {(j.last_error or '').splitlines()[0][:160]}", file=out
            )
