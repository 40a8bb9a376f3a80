"""My subscription, balance, referral and promo codes end to end on SQLite: updates
through the Telegram emulator, the whole dispatcher, the App and the Remnawave emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.bot.harness import BotShop, bot_shop
from tests.bot.qrdecode import decode_qr
from tests.conftest import make_database_url
from vpnshop.domain.actor import Actor
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.promo import PromoCode, PromoKind
from vpnshop.testing.telegram import TgUser

TRIAL = "🎁 Free trial"
MINE = "🔑 My subscription"


@pytest.fixture
async def shop(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BotShop]:
    """The shop and its bot on SQLite."""
    async with bot_shop(make_database_url(request, "sqlite", tmp_path)) as s:
        yield s


async def on_trial(shop: BotShop, uid: int = 1001, name: str = "Alice") -> TgUser:
    user = shop.user(uid, name)
    await user.start()
    await user.reply()
    await user.press(TRIAL)
    assert "free trial is active" in (await user.reply()).text
    await user.press("« Back")
    await user.reply()
    return user


async def subscription(shop: BotShop, telegram_id: int) -> tuple[int, str, str]:
    """(id, panel key, link) of the customer's subscription."""
    cid = await shop.customer_id(telegram_id)
    async with shop.app.deps.uow() as uow:
        (sub,) = await uow.subscriptions.for_customer(cid)
    assert sub.id is not None
    assert sub.panel_key is not None
    assert sub.subscription_url is not None
    return sub.id, sub.panel_key, sub.subscription_url


async def add_promo(shop: BotShop, promo: PromoCode) -> None:
    async with shop.app.deps.uow() as uow:
        await uow.promos.add(promo)
        await uow.commit()


async def test_my_subscription_shows_status_traffic_devices_and_link(shop: BotShop) -> None:
    """The screen names status, expiry, days left, traffic of the limit as the panel
    reports it, the device limit and the link, asking the panel once; the Devices screen
    counts the devices against the limit."""
    alice = await on_trial(shop)
    sid, key, link = await subscription(shop, alice.id)
    shop.panel.set_traffic_used(key, 3 * 2**30)
    shop.panel.add_hwid_device(key, "hwid-alice-phone-01", platform="iOS", device_model="iPhone")
    assert "My subscription" not in alice.last.text
    before = len(shop.panel.requests)
    await alice.press(MINE)
    screen = await alice.reply()
    assert [r.path for r in shop.panel.requests[before:]] == [f"/api/users/{key}"]
    assert "Status: active" in screen.text
    assert "days left" in screen.text
    assert "Traffic: 3.0 of" in screen.text
    assert "Devices: up to 1" in screen.text
    assert "Auto-renewal: off" in screen.text
    assert link in screen.text
    assert all(f":{sid}" in b.callback_data for b in screen.buttons[0] if b.callback_data)
    await alice.press("Devices")
    listing = await alice.reply()
    assert "Devices: 1 of 1" in listing.text and "iPhone iOS" in listing.text


async def test_qr_image_decodes_to_the_link(shop: BotShop, tmp_path: Path) -> None:
    """The QR button sends a PNG whose decoded text is exactly the subscription link."""
    alice = await on_trial(shop)
    _, _, link = await subscription(shop, alice.id)
    await alice.press(MINE)
    await alice.reply()
    await alice.press("QR code")
    await alice.wait_until(lambda: alice.last.photo_file_id is not None, what="the QR photo")
    png = alice.photo_bytes()
    assert png.startswith(b"\x89PNG")
    assert await decode_qr(png, tmp_path) == link
    assert link in (alice.last.caption or "")


async def test_revoke_asks_first_then_shows_the_new_link(shop: BotShop) -> None:
    """Revoking needs a confirmation; cancelling keeps the link, confirming gives a new one
    that the store and the panel agree on."""
    alice = await on_trial(shop)
    _, key, old = await subscription(shop, alice.id)
    await alice.press(MINE)
    await alice.reply()
    await alice.press("Revoke the link")
    assert "stops working" in (await alice.reply()).text
    await alice.press("Cancel")
    assert old in (await alice.reply()).text
    await alice.press("Revoke the link")
    await alice.reply()
    await alice.press("Yes, revoke it")
    done = await alice.reply()
    _, _, new = await subscription(shop, alice.id)
    assert new != old
    assert new in done.text
    assert shop.panel.render_user(shop.panel.record(key))["subscriptionUrl"] == new


async def test_device_list_and_remove(shop: BotShop) -> None:
    """Devices are listed by model; removing one takes it off the panel, and a stale
    remove button for it changes nothing more."""
    alice = await on_trial(shop)
    _, key, _ = await subscription(shop, alice.id)
    shop.panel.record(key).hwid_device_limit = 3  # the trial allows one
    shop.panel.add_hwid_device(key, "hwid-alice-phone-01", platform="iOS", device_model="iPhone")
    shop.panel.add_hwid_device(key, "hwid-alice-laptop-2", platform="Linux", device_model="PC")
    await alice.press(MINE)
    await alice.reply()
    await alice.press("Devices")
    listing = await alice.reply()
    assert "iPhone iOS" in listing.text
    assert "PC Linux" in listing.text
    stale = alice.button("Remove iPhone iOS").callback_data
    assert stale is not None
    await alice.press("Remove iPhone iOS")
    after = await alice.reply()
    assert "device was removed" in after.text
    assert [d.hwid for d in shop.panel.record(key).devices] == ["hwid-alice-laptop-2"]
    await alice.press_data(stale, listing)
    assert "no longer in the list" in (await alice.reply()).text
    assert len(shop.panel.record(key).devices) == 1


async def test_panel_down_shows_the_store_view(shop: BotShop) -> None:
    """With the panel down the screen still shows the store's expiry and link, with a
    polite note; revoking says to try later and changes nothing."""
    alice = await on_trial(shop)
    _, _, link = await subscription(shop, alice.id)
    shop.panel.down = True
    await alice.press(MINE)
    screen = await alice.reply()
    assert "Status: active" in screen.text
    assert link in screen.text
    assert "last knew" in screen.text
    await alice.press("Revoke the link")
    await alice.reply()
    await alice.press("Yes, revoke it")
    assert "not answering" in (await alice.reply()).text
    assert (await subscription(shop, alice.id))[2] == link


async def test_foreign_subscription_callbacks_change_nothing(shop: BotShop) -> None:
    """Another customer's subscription id in any action is refused and changes nothing."""
    alice = await on_trial(shop)
    bob = await on_trial(shop, 1002, "Bob")
    sid, _, link = await subscription(shop, alice.id)
    for data in (f"sb:v:{sid}", f"sb:rvy:{sid}", f"sb:on:{sid}", f"sb:qr:{sid}", "sb:v:999999"):
        await bob.press_data(data, bob.last)
        answer = await bob.reply()
        assert "not found" in answer.text
        assert link not in answer.text
        await bob.press("« Back")
        await bob.reply()
    assert (await subscription(shop, alice.id))[2] == link
    async with shop.app.deps.uow() as uow:
        sub = await uow.subscriptions.get(sid)
    assert sub is not None
    assert not sub.auto_renew


async def test_auto_renew_toggles_and_is_stored(shop: BotShop) -> None:
    """Auto-renewal turns on and off from the screen, and the store keeps it."""
    alice = await on_trial(shop)
    sid, _, _ = await subscription(shop, alice.id)
    await alice.press(MINE)
    await alice.reply()
    await alice.press("Turn auto-renewal on")
    assert "Auto-renewal: on" in (await alice.reply()).text
    async with shop.app.deps.uow() as uow:
        sub = await uow.subscriptions.get(sid)
    assert sub is not None
    assert sub.auto_renew
    await alice.press("Turn auto-renewal off")
    assert "Auto-renewal: off" in (await alice.reply()).text


async def test_balance_and_paged_history(shop: BotShop) -> None:
    """The balance shows each currency; its history pages newest first, 10 a page; its
    top-up button opens the top-up form."""
    alice = shop.user(1001)
    await alice.start()
    await alice.reply()
    cid = await shop.customer_id(alice.id)
    for i in range(12):
        await shop.app.credit_balance(
            cid,
            Money(100 * (i + 1), RUB),
            kind=EntryKind.TOPUP,
            key=f"t{i}",
            actor=Actor.system("t"),
        )
        shop.clock.advance(timedelta(minutes=1))
    await alice.press("💰 Balance")
    screen = await alice.reply()
    assert "78.00 RUB" in screen.text
    await alice.press("History")
    first = await alice.reply()
    assert "page 1" in first.text
    assert first.text.count("top-up") == 10
    assert first.text.index("+12.00 RUB") < first.text.index("+11.00 RUB")
    assert "« Newer" not in first.button_labels
    await alice.press("Older »")
    second = await alice.reply()
    assert second.text.count("top-up") == 2
    assert "+1.00 RUB" in second.text
    assert "Older »" not in second.button_labels
    await alice.press_data("bh:-3", second)
    assert "page 1" in (await alice.reply()).text
    await alice.press("« Back")
    assert "78.00 RUB" in (await alice.reply()).text
    await alice.press("💳 Top up balance")  # the balance screen leads to the top-up form
    assert "Another amount" in (await alice.reply()).button_labels


async def test_referral_screen(shop: BotShop) -> None:
    """The referral screen gives the personal t.me link with ref_<code>, and counts a
    friend who came by it."""
    bob = shop.user(2001, "Bob")
    await bob.start()
    await bob.reply()
    await bob.press("👥 Invite friends")
    screen = await bob.reply()
    me = await shop.bot.me()
    assert f"https://t.me/{me.username}?start=ref_" in screen.text
    assert "Friends invited: 0" in screen.text
    code = screen.text.split("?start=ref_")[1].split()[0]
    alice = shop.user(1001)
    await alice.start(f"ref_{code}")
    await alice.reply()
    await bob.press("« Back")
    await bob.reply()
    await bob.press("👥 Invite friends")
    assert "Friends invited: 1" in (await bob.reply()).text


async def test_promo_codes_each_kind_and_each_refusal(shop: BotShop) -> None:
    """Each promo kind shows its effect; unknown, expired, used, exhausted and
    not-applicable codes each get their own message, and the customer may retry."""
    now = shop.clock.now()
    for promo in (
        PromoCode("DAYS7", PromoKind.BONUS_DAYS, 7, created_at=now),
        PromoCode("CASH", PromoKind.BALANCE, 5000, currency="RUB", created_at=now),
        PromoCode("OFF20", PromoKind.DISCOUNT, 20, created_at=now),
        PromoCode("TRIAL3", PromoKind.TRIAL_DAYS, 3, created_at=now),
        PromoCode(
            "OLD", PromoKind.BONUS_DAYS, 1, valid_until=now - timedelta(days=1), created_at=now
        ),
        PromoCode("ONE", PromoKind.BONUS_DAYS, 1, max_uses=1, uses=1, created_at=now),
    ):
        await add_promo(shop, promo)
    alice = shop.user(1001)
    await alice.start()
    await alice.reply()

    async def typed(code: str, user: TgUser = alice) -> str:
        await user.send(code)
        return (await user.reply()).text

    async def open_promo(user: TgUser = alice) -> None:
        await user.press("« Back")
        await user.reply()
        await user.press("🎟 Promo code")
        assert "Type your promo code" in (await user.reply()).text

    await alice.press("🎟 Promo code")
    assert "Type your promo code" in (await alice.reply()).text
    assert "not valid" in await typed("NOPE")
    assert "not valid" in await typed("x" * 65)
    assert "expired" in await typed("old")
    assert "used up" in await typed("ONE")
    assert "activate the trial first" in await typed("TRIAL3")
    assert "50.00 RUB added to your balance" in await typed("CASH")
    await open_promo()
    assert "already used" in await typed("CASH")
    assert "20% off" in await typed("OFF20")
    await open_promo()
    assert "bonus days added, your subscription is active until" in await typed("DAYS7")
    await alice.press("« Back")
    menu = await alice.reply()
    assert "Balance: 50.00 RUB" in menu.text
    assert "Subscription active until" in menu.text
    assert "Promo code" not in await typed("DAYS7")  # the state ended with the success
    bob = await on_trial(shop, 1002, "Bob")
    await bob.press("🎟 Promo code")
    await bob.reply()
    assert "free trial is extended until" in await typed("TRIAL3", bob)
