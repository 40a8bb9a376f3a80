"""The scripted journey: one customer through the whole shop, each step checked.

Alice comes by Bob's referral link, takes the free trial, buys the month plan with each
provider (YooKassa, Crypto Pay, FreeKassa, Tribute's provider-run subscription) and with
Telegram Stars, tops up her balance and pays from it, redeems a promo code, switches
auto-renewal on, travels in time to get the expiry reminder and the auto-renewal, and an
admin refunds one of her payments (``RefundPayment``; the admin bot comes later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from vpnshop.demo.customer import WAIT, Customer
from vpnshop.demo.steps import Steps, check
from vpnshop.demo.transcript import Transcript
from vpnshop.demo.world import TRIBUTE_PRODUCT, World
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop.domain.promo import PromoCode, PromoKind
from vpnshop.domain.subscription import Subscription

TRIAL = "🎁 Free trial"
BUY = "🛒 Buy or extend"
MONTH = "1 month"
TOPUP = "💳 Top up balance"
MINE = "🔑 My subscription"
PROMO = "🎟 Promo code"
INVITE = "👥 Invite friends"
PROMO_CODE = "WELCOME7"
ADMIN = Actor.admin(1)
ALICE, BOB = 1001, 2002  # Telegram ids

Step = tuple[str, Callable[[], Awaitable[str]]]


def journey(world: World, transcript: Transcript) -> list[Step]:
    """The steps, in order; each returns a one-line summary or raises StepFailed."""
    tg, app = world.tg, world.app
    alice = Customer(tg.user(ALICE, "Alice"), app, transcript)
    bob = Customer(tg.user(BOB, "Bob"), app, transcript)
    paid: dict[str, str] = {}  # provider -> payment id

    async def referral() -> str:
        await bob.start()
        screen = await bob.press(INVITE)
        check("?start=ref_" in (screen.text or ""), "the invite screen shows a ref_ link")
        code = (screen.text or "").split("?start=ref_")[1].split()[0]
        await alice.start(f"ref_{code}")
        await bob.press("« Back")
        again = await bob.press(INVITE)
        check("Friends invited: 1" in (again.text or ""), "Bob's screen counts Alice")
        return f"Alice opened the bot by Bob's link ref_{code}; Bob has 1 friend invited"

    async def trial() -> str:
        await alice.menu()
        answer = await alice.press(TRIAL)
        check("free trial is active" in (answer.text or ""), "the trial is active")
        sub = await _linked(alice)
        # Not told "3 days left" as a 3-day trial starts: the reminder comes a day before.
        world.clock.travel_to(sub.expires_at - timedelta(days=1) + timedelta(minutes=1))
        transcript.note("time travel: 1 day before the trial ends")
        await alice.sees("Your free trial ends on", "the trial-ending reminder")
        return f"trial until {sub.expires_at:%Y-%m-%d %H:%M}, panel user {sub.panel_username}"

    async def buy_with(provider: str, label: str) -> str:
        before = await alice.subscription()
        await alice.menu()
        await alice.press(BUY)
        await alice.press(MONTH)
        checkout = await alice.press(label)
        check(bool(checkout.buttons and checkout.buttons[0][0].url), "a payment page button")
        payment = await alice.latest_payment()
        check(payment.provider == provider, f"the payment is at {provider}")
        check(payment.external_id is not None, "the provider knows the payment")
        assert payment.external_id is not None
        alice.external()
        transcript.note(f"Alice pays {payment.amount} on the {provider} page")
        if provider == "yookassa":
            await world.yookassa.pay(payment.external_id)
        elif provider == "cryptopay":
            await world.cryptopay.pay(payment.external_id)
        else:
            await world.freekassa.pay(payment.external_id)
        await alice.sees("Payment of 199.00 RUB received", "the paid notice with the link")
        done = await alice.payment(payment.id)
        check(done.status is PaymentStatus.SUCCEEDED, f"the payment succeeded ({done.status})")
        after = await _linked(alice)
        check(after.expires_at >= before.expires_at + timedelta(days=30), "30 days added")
        paid[provider] = payment.id
        return f"{payment.amount} via {provider}; active until {after.expires_at:%Y-%m-%d}"

    async def tribute() -> str:
        before = await alice.subscription()
        await alice.menu()
        await alice.press(BUY)
        await alice.press(MONTH)
        checkout = await alice.press("💳 Tribute: 199.00 RUB")
        url = checkout.buttons[0][0].url if checkout.buttons else None
        check(url == world.tribute.web_app_link(TRIBUTE_PRODUCT), "the Tribute product link")
        alice.external()
        transcript.note("Alice subscribes on Tribute's page (Tribute runs the subscription)")
        # open_link would fetch the t.me link first; the demo stays offline.
        delivery = await world.tribute.subscribe(alice.user.id, TRIBUTE_PRODUCT)
        check(
            delivery.status == 200,
            f"the webhook server took Tribute's notification ({delivery.status})",
        )
        after = await _linked(alice)
        check(after.expires_at >= before.expires_at + timedelta(days=30), "30 days added")
        return f"Tribute new_subscription: active until {after.expires_at:%Y-%m-%d}"

    async def stars() -> str:
        before = await alice.subscription()
        await alice.menu()
        await alice.press(BUY)
        await alice.press(MONTH)
        invoice = await alice.press("⭐ Telegram Stars: 130 XTR")
        check(invoice.invoice is not None, "a Stars invoice")
        assert invoice.invoice is not None
        check(invoice.invoice["currency"] == "XTR", "the invoice is in XTR")
        alice.transcript.action(alice.user, "pays the invoice with 130 Stars")
        result = await alice.user.pay(invoice)
        check(result.ok, f"Telegram accepted the payment ({result.error_message})")
        await alice.sees("Payment of 130 XTR received", "the paid notice")
        after = await _linked(alice)
        check(after.expires_at >= before.expires_at + timedelta(days=30), "30 days added")
        return f"130 XTR, charge {result.charge_id}; active until {after.expires_at:%Y-%m-%d}"

    async def topup() -> str:
        await alice.menu()
        await alice.press(TOPUP)
        await alice.press("Another amount")
        methods = await alice.send("500")
        check("Top-up of 500.00 RUB" in (methods.text or ""), "the top-up quote")
        await alice.press("💳 Card (YooKassa): 500.00 RUB")
        payment = await alice.latest_payment()
        assert payment.external_id is not None
        alice.external()
        transcript.note("Alice pays 500.00 RUB on the YooKassa page")
        await world.yookassa.pay(payment.external_id)
        await alice.sees("your balance is topped up", "the top-up notice")
        balance = await _balance(alice)
        check(balance == Money(50000, RUB), f"the balance is 500.00 RUB ({balance})")
        return f"balance {balance}"

    async def from_balance() -> str:
        before = await alice.subscription()
        await alice.menu()
        await alice.press(BUY)
        await alice.press(MONTH)
        await alice.press("👛 From balance: 199.00 RUB")
        answer = await alice.press("✅ Pay")
        check("Paid 199.00 RUB" in (answer.text or ""), "paid from the balance")
        balance = await _balance(alice)
        check(balance == Money(30100, RUB), f"the balance is 301.00 RUB ({balance})")
        after = await alice.subscription()
        check(after.expires_at >= before.expires_at + timedelta(days=30), "30 days added")
        return f"199.00 RUB from the balance; balance {balance}"

    async def promo() -> str:
        before = await alice.subscription()
        async with app.deps.uow() as uow:  # what the admin screen will do
            await uow.promos.add(
                PromoCode(PROMO_CODE, PromoKind.BONUS_DAYS, 7, created_at=world.clock.now())
            )
            await uow.commit()
        await alice.menu()
        await alice.press(PROMO)
        answer = await alice.send(PROMO_CODE)
        check("bonus days added" in (answer.text or ""), "the promo code is applied")
        after = await alice.subscription()
        check(after.expires_at == before.expires_at + timedelta(days=7), "7 days added")
        return f"{PROMO_CODE}: 7 days, active until {after.expires_at:%Y-%m-%d}"

    async def auto_renew_on() -> str:
        await alice.menu()
        await alice.press(MINE)
        answer = await alice.press("Turn auto-renewal on")
        check("Auto-renewal: on" in (answer.text or ""), "auto-renewal is on")
        return "auto-renewal switched on from My subscription"

    async def reminder() -> str:
        sub = await alice.subscription()
        alice.external()
        moved = world.clock.travel_to(sub.expires_at - timedelta(days=3) + timedelta(minutes=1))
        transcript.note(f"time travel: {moved.days} days later, 3 days before expiry")
        message = await alice.sees("Your subscription ends on", "the expiry reminder")
        return f"travelled {moved.days} days; reminder: {message.text!r}"

    async def auto_renewal() -> str:
        before = await alice.subscription()
        balance = await _balance(alice)
        alice.external()
        world.clock.travel_to(before.expires_at - timedelta(days=1) + timedelta(minutes=1))
        transcript.note("time travel: 1 day before expiry, when auto-renewal is due")
        await alice.sees("renewed automatically", "the auto-renewal notice")
        after = await alice.subscription()
        check(after.expires_at == before.expires_at + timedelta(days=30), "renewed for 30 days")
        left = await _balance(alice)
        check(left == balance - Money(19900, RUB), f"199.00 RUB spent from the balance ({left})")
        return f"renewed from the balance to {after.expires_at:%Y-%m-%d}; balance {left}"

    async def refund() -> str:
        payment_id = paid["yookassa"]
        alice.external()
        transcript.note("an admin refunds Alice's YooKassa payment")
        result = await app.refund_payment(payment_id, admin=ADMIN, reason="demo: customer asked")
        check(result.amount == Money(19900, RUB), f"199.00 RUB refunded ({result.amount})")
        await alice.sees("A refund of 199.00 RUB", "the refund notice")
        done = await alice.payment(payment_id)
        check(done.status is PaymentStatus.REFUNDED, f"the payment is refunded ({done.status})")
        where = "to her balance" if result.to_balance else "through YooKassa"
        return f"{result.amount} {where}; {result.days_removed} days removed"

    async def ledger() -> str:
        problems = await app.verify_ledger()
        check(problems == [], f"every balance equals its ledger ({problems})")
        return "every balance equals the sum of its ledger entries"

    return [
        ("referral link", referral),
        ("free trial", trial),
        ("buy with YooKassa", lambda: buy_with("yookassa", "💳 Card (YooKassa): 199.00 RUB")),
        ("buy with CryptoPay", lambda: buy_with("cryptopay", "🪙 Crypto (CryptoBot): 199.00 RUB")),
        ("buy with FreeKassa", lambda: buy_with("freekassa", "💳 FreeKassa: 199.00 RUB")),
        ("Tribute subscription", tribute),
        ("buy with Telegram Stars", stars),
        ("top up the balance", topup),
        ("pay from the balance", from_balance),
        ("promo code", promo),
        ("auto-renewal on", auto_renew_on),
        ("expiry reminder", reminder),
        ("auto-renewal", auto_renewal),
        ("admin refund", refund),
        ("ledger verify", ledger),
    ]


async def _linked(customer: Customer) -> Subscription:
    """The customer's subscription once the panel user has its expiry (the outbox ran)."""
    panel = customer.app.panel
    assert panel is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        sub = await customer.subscription()
        if sub.panel_key is not None and sub.subscription_url:
            user = await panel.get(sub.panel_key)
            # the panel keeps milliseconds
            if user is not None and abs(user.expires_at - sub.expires_at) < timedelta(seconds=1):
                return sub
        check(loop.time() < deadline, f"the panel user has the new expiry within {WAIT:.0f} s")
        await asyncio.sleep(0.05)


async def _balance(customer: Customer) -> Money:
    cid = await customer.customer_id()
    async with customer.app.deps.uow() as uow:
        return await uow.ledger.balance(cid, RUB)


async def run_journey(world: World, steps: Steps, transcript: Transcript) -> None:
    for name, step in journey(world, transcript):
        if not await steps.run(name, step):
            break
