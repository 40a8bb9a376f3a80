"""A local Telegram Bot API for tests: the real wire format, real validation, and users
that a test drives.

    async with TelegramEmulator() as tg:
        bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.api_url)))
        alice = tg.user(1001, "Alice", language_code="ru")
        await alice.start("ref_abc")            # /start with a deep-link payload
        answer = await alice.reply()            # the bot's first answer after that
        await alice.press("Buy")                # tap an inline button by its label
        paid = await alice.pay()                # pre-checkout, then successful_payment
        await alice.block()                     # my_chat_member; sends now answer 403

Modules, one idea each: ``wire`` (parameters and answers), ``html`` (parse mode HTML),
``markup`` (keyboards), ``state`` (chats, messages, files, queries), ``updates``
(getUpdates and webhooks), ``methods``/``bot_methods``/``payments`` (the Bot API methods),
``server`` (routing, rate limits, faults) and ``user`` (the test's side).
"""

from vpnshop.testing.telegram.markup import InlineButton
from vpnshop.testing.telegram.server import DEFAULT_TOKEN, Call, RateLimits, TelegramEmulator
from vpnshop.testing.telegram.state import Account, CallbackQuery, Chat, ChatMessage, PreCheckout
from vpnshop.testing.telegram.updates import Delivery
from vpnshop.testing.telegram.user import PaymentResult, TgUser
from vpnshop.testing.telegram.wire import ApiError

__all__ = [
    "DEFAULT_TOKEN",
    "Account",
    "ApiError",
    "Call",
    "CallbackQuery",
    "Chat",
    "ChatMessage",
    "Delivery",
    "InlineButton",
    "PaymentResult",
    "PreCheckout",
    "RateLimits",
    "TelegramEmulator",
    "TgUser",
]
