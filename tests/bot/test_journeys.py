"""The first customer journeys end to end: updates through the Telegram emulator, the
whole dispatcher, the App on a real database and the Remnawave emulator."""

from __future__ import annotations

import pytest

from tests.bot.harness import BotShop, bot_shop
from vpnshop.domain.promo import PromoCode, PromoKind
from vpnshop.testing.telegram import TgUser

TRIAL = "🎁 Free trial"


async def referral_code(shop: BotShop, telegram_id: int) -> str:
    async with shop.app.deps.uow() as uow:
        customer = await uow.customers.by_telegram_id(telegram_id)
    assert customer is not None
    assert customer.referral_code is not None
    return customer.referral_code


async def subscription_link(shop: BotShop, telegram_id: int) -> str | None:
    cid = await shop.customer_id(telegram_id)
    async with shop.app.deps.uow() as uow:
        subs = await uow.subscriptions.for_customer(cid)
    return subs[0].subscription_url if subs else None


async def started(shop: BotShop, uid: int, name: str = "Alice", **kw: str) -> TgUser:
    user = shop.user(uid, name, **kw)
    await user.start()
    await user.reply()
    return user


async def test_start_with_referral_link_binds_once(shop: BotShop) -> None:
    """ref_<code> binds the referrer and says so; a later /start with another link keeps
    the first referrer; one's own link is refused."""
    bob = await started(shop, 2001, "Bob")
    carol = await started(shop, 2002, "Carol")
    alice = shop.user(1001, "Alice")
    await alice.start(f"ref_{await referral_code(shop, bob.id)}")
    first = await alice.reply()
    assert "Welcome, Alice!" in first.text
    assert "friend's invitation" in first.text
    await alice.start(f"ref_{await referral_code(shop, carol.id)}")
    again = await alice.reply()
    assert "Welcome back, Alice!" in again.text
    async with shop.app.deps.uow() as uow:
        customer = await uow.customers.by_telegram_id(alice.id)
    assert customer is not None
    assert customer.referrer_id == await shop.customer_id(bob.id)
    await bob.start(f"ref_{await referral_code(shop, bob.id)}")
    assert "cannot be used by you" in (await bob.reply()).text


async def test_the_welcome_promises_the_referee_only_the_bonus_the_policy_grants(
    shop: BotShop, database_url: str
) -> None:
    """Bound by a referral link, the newcomer is told of bonus days only when the policy
    grants the referee some, and then how many (in their language)."""
    bob = await started(shop, 2001, "Bob")
    alice = shop.user(1001, "Alice")
    await alice.start(f"ref_{await referral_code(shop, bob.id)}")
    plain = (await alice.reply()).text
    assert "friend's invitation." in plain
    assert "bonus" not in plain
    env = {"VPNSHOP_REFERRAL_BONUS_DAYS_REFEREE": "5"}
    async with bot_shop(database_url, env) as generous:
        carol = await started(generous, 2002, "Carol")
        code = await referral_code(generous, carol.id)
        dan = generous.user(1002, "Dan")
        await dan.start(f"ref_{code}")
        assert "you get 5 bonus days on your first payment" in (await dan.reply()).text
        olena = generous.user(1003, "Olena", language_code="uk")
        await olena.start(f"ref_{code}")
        assert "бонусные дни: 5" in (await olena.reply()).text


async def test_start_with_campaign_and_bad_promo(shop: BotShop) -> None:
    """A campaign token is stored for attribution; an unknown promo_ code is named as not
    valid and the menu still comes."""
    alice = shop.user(1001, "Alice")
    await alice.start("summer_ads")
    assert "Main menu" in (await alice.reply()).text
    async with shop.app.deps.uow() as uow:
        customer = await uow.customers.by_telegram_id(alice.id)
    assert customer is not None
    assert customer.campaign == "summer_ads"
    bob = shop.user(1002, "Bob")
    await bob.start("promo_NOSUCHCODE")
    answer = await bob.reply()
    assert "promo code is not valid" in answer.text
    assert "Main menu" in answer.text


async def test_trial_shows_the_link_once(shop: BotShop) -> None:
    """The trial gives the panel's link at once; the menu then drops the trial button and
    a second (forged) trial press says it was used."""
    alice = await started(shop, 1001)
    assert TRIAL in alice.last.button_labels
    await alice.press(TRIAL)
    ready = await alice.reply()
    link = await subscription_link(shop, alice.id)
    assert link
    assert "free trial is active until" in ready.text
    assert link in ready.text
    assert len(shop.panel.users_by_id) == 1
    await alice.press("« Back")
    menu = await alice.reply()
    assert TRIAL not in menu.button_labels
    assert "Subscription active until" in menu.text
    await alice.press_data("n:trial", menu)
    assert "already used the free trial" in (await alice.reply()).text


async def test_trial_while_panel_down_link_follows(shop: BotShop) -> None:
    """With the panel down the customer is told the link will follow, and the outbox
    sends it once the panel is back."""
    alice = await started(shop, 1001)
    shop.panel.down = True
    await alice.press(TRIAL)
    assert "link will follow" in (await alice.reply()).text
    assert await subscription_link(shop, alice.id) is None
    shop.panel.down = False
    await shop.run_outbox()
    link = await subscription_link(shop, alice.id)
    assert link
    await alice.wait_until(lambda: "Your subscription is ready" in alice.last.text, within=5)
    assert link in alice.last.text
    assert sum("subscription is ready" in t for t in alice.texts()) == 1


async def test_language_switch_is_stored(shop: BotShop) -> None:
    """Switching to Russian answers in Russian from then on, over the client's English."""
    alice = await started(shop, 1001, language_code="en")
    await alice.press("🌐 Language")
    await alice.reply()
    await alice.press("Русский")
    switched = await alice.reply()
    assert "Язык: русский." in switched.text
    assert "Главное меню" in switched.text
    await alice.start()
    assert "С возвращением" in (await alice.reply()).text


async def test_language_switch_applies_to_the_next_button_at_once(shop: BotShop) -> None:
    """After a switch the very next button press is answered in the new language (the
    process's customer cache forgets the old one)."""
    alice = await started(shop, 1001, language_code="en")
    await alice.press("🌐 Language")
    await alice.reply()
    await alice.press("Русский")
    await alice.reply()
    await alice.press("🌐 Язык")
    assert "Выберите язык" in (await alice.reply()).text


async def test_ukrainian_client_gets_russian(shop: BotShop) -> None:
    """A uk client is greeted in Russian, a German one in English."""
    olena = await started(shop, 1001, "Olena", language_code="uk")
    assert "Добро пожаловать" in olena.last.text
    hans = await started(shop, 1002, "Hans", language_code="de")
    assert "Welcome" in hans.last.text


async def test_support_shows_the_configured_contact(database_url: str) -> None:
    """Support names the configured username and links to it."""
    async with bot_shop(database_url, {"VPNSHOP_SUPPORT_USERNAME": "@shop_help"}) as shop:
        alice = await started(shop, 1001)
        await alice.press("💬 Support")
        answer = await alice.reply()
        assert "@shop_help" in answer.text
        button = alice.button("Write to support", answer)
        assert button.url == "https://t.me/shop_help"


@pytest.mark.parametrize("platform", ["iOS", "Android", "Windows", "macOS", "Linux"])
async def test_how_to_connect_per_platform(shop: BotShop, platform: str) -> None:
    """Each platform lists its apps (URL buttons) and the customer's link to import."""
    alice = await started(shop, 1001)
    await alice.press(TRIAL)
    await alice.reply()
    await alice.press("📲 How to connect")
    await alice.reply()
    await alice.press(platform)
    answer = await alice.reply()
    link = await subscription_link(shop, alice.id)
    assert link
    assert link in answer.text
    assert platform in answer.text
    urls = [b.url for row in answer.buttons for b in row if b.url]
    assert len(urls) >= 2


async def test_how_to_connect_without_subscription(shop: BotShop) -> None:
    """Without a subscription the apps are listed and the customer is told to get one."""
    alice = await started(shop, 1001)
    await alice.press("📲 How to connect")
    await alice.reply()
    await alice.press("iOS")
    assert "no active link yet" in (await alice.reply()).text


async def test_start_with_promo_link_applies_it_once(shop: BotShop) -> None:
    """promo_<code> applies a balance code (the menu shows the balance); the same link
    again says the code was used."""
    async with shop.app.deps.uow() as uow:
        await uow.promos.add(
            PromoCode(
                "WELCOME50", PromoKind.BALANCE, 5000, currency="RUB", created_at=shop.clock.now()
            )
        )
        await uow.commit()
    alice = shop.user(1001, "Alice")
    await alice.start("promo_WELCOME50")
    answer = await alice.reply()
    assert "Promo code <b>WELCOME50</b> applied." in answer.source
    assert "Balance: 50.00 RUB" in answer.text
    await alice.start("promo_WELCOME50")
    assert "already been used" in (await alice.reply()).text
