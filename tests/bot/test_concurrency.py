"""Fifty new users at once: /start, then the trial, all through the bot."""

from __future__ import annotations

import asyncio

import pytest

from tests.bot.harness import BotShop, bot_shop
from vpnshop.testing.telegram import TgUser

USERS = 50


async def start_then_trial(user: TgUser) -> str:
    await user.start()
    await user.reply(within=30)
    await user.press("🎁 Free trial")
    answer = await user.reply(within=30)
    return answer.text


@pytest.mark.slow
async def test_fifty_new_users_start_then_trial_at_once(database_url: str) -> None:
    """Every one of 50 simultaneous new users is registered once and gets one trial with
    its link (or the promise of it, kept by the outbox)."""
    async with bot_shop(database_url, link_wait=10.0) as shop:
        users = [shop.user(5000 + i, f"User{i}") for i in range(USERS)]
        texts = await asyncio.gather(*(start_then_trial(u) for u in users))
        assert all("free trial is active until" in t for t in texts), texts
        await shop.run_outbox()
        await check_one_each(shop, users)


async def check_one_each(shop: BotShop, users: list[TgUser]) -> None:
    links = set()
    for user in users:
        cid = await shop.customer_id(user.id)
        async with shop.app.deps.uow() as uow:
            subs = await uow.subscriptions.for_customer(cid)
            assert await uow.trials.used(cid)
        assert len(subs) == 1
        assert subs[0].subscription_url
        links.add(subs[0].subscription_url)
        if any("will follow" in t for t in user.texts()):
            await user.wait_until(lambda u=user: "subscription is ready" in u.last.text)  # type: ignore[misc]
    assert len(links) == USERS
    assert len(shop.panel.users_by_id) == USERS
