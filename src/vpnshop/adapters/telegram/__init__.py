"""Telegram without aiogram: a small Bot API client and the Notifier over it."""

from vpnshop.adapters.telegram.client import (
    BotApiClient,
    BotApiError,
    BotApiSettings,
    BotApiUnavailableError,
    InputFile,
)
from vpnshop.adapters.telegram.notifier import TelegramNotifier

__all__ = [
    "BotApiClient",
    "BotApiError",
    "BotApiSettings",
    "BotApiUnavailableError",
    "InputFile",
    "TelegramNotifier",
]
