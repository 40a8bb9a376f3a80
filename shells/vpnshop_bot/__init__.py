"""The Telegram bot (aiogram 3): the only package that imports aiogram.

``build_dispatcher(app, bot_settings)`` (``dispatcher``) is what ``serve`` runs and what
tests feed updates to. One Router per feature (``features/``), keyboards built from data
(``keyboards/``), middlewares in a fixed order (``middlewares/``). See docs/bot.md.
"""
