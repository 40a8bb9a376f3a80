"""Smoke: /start shows the main menu."""

from __future__ import annotations

from tests.bot.harness import BotShop


async def test_start_shows_menu(shop: BotShop) -> None:
    """A new user's /start answers with a welcome and the main menu."""
    alice = shop.user(1001, "Alice")
    await alice.start()
    menu = await alice.reply()
    assert "Welcome, Alice" in menu.text
    assert "🎁 Free trial" in menu.button_labels
