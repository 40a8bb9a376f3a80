"""The Telegram Bot API emulator in its own process, for the benchmarks (not a benchmark).

In production Telegram's servers are not on the shop's cores, so a benchmark runs the
emulator apart from the load generator and the shop: its CPU is measured on its own and
its event loop does not compete with theirs (a thread would share the GIL with the load
generator). It knows customers ``--first-id`` .. ``--first-id + --count - 1`` as users
who started the bot, times its own answers, and records when the first message reached
each of those chats.

Protocol on stdin/stdout: it prints ``ready <api_url> <token>`` once it listens; to a
line ``count`` it answers ``count N`` (the chats reached so far); when stdin reaches a
line ``dump`` (or its end) it prints one JSON line
``{"chat": {telegram id: time}, "answers": [seconds, ...]}`` and exits. Times are
``time.perf_counter()``, CLOCK_MONOTONIC on Linux, so the parent can compare them with
its own. Bounded: it exits on its own after ``--lifetime`` seconds.

    python bench/_telegram_process.py --first-id 700000000 --count 6000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

from vpnshop.testing.telegram import TelegramEmulator

SENDING = frozenset({"sendmessage", "sendphoto"})
# as the shop's configuration wants a token to look (the emulator's default is shorter)
TOKEN = "123456:bench-telegram-emulator-token-0123456789"


class TimedTelegram(TelegramEmulator):
    """The emulator, timing its own answers and the first message in each chat."""

    def __init__(self) -> None:
        super().__init__(TOKEN)
        self.arrived: dict[int, float] = {}
        self.answers: list[float] = []

    async def call(self, method: str, params: Any) -> Any:
        result = await super().call(method, params)  # raises on an error: not delivered
        if method.lower() in SENDING:
            chat_id = params.string("chat_id")
            if chat_id is not None and chat_id.lstrip("-").isdigit():
                self.arrived.setdefault(int(chat_id), time.perf_counter())
        return result

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        response = await super()._handle(request)
        self.answers.append(time.perf_counter() - started)
        return response


async def serve(first_id: int, count: int, lifetime: float) -> None:
    async with TimedTelegram() as tg:
        for telegram_id in range(first_id, first_id + count):
            # a chat that started the bot (without queueing a /start update nobody reads)
            tg.add_account(telegram_id, f"Customer {telegram_id}").started = True
        print(f"ready {tg.api_url} {tg.token}", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            async with asyncio.timeout(lifetime):
                while line := await reader.readline():
                    if line.strip() == b"dump":
                        break
                    if line.strip() == b"count":
                        print(f"count {len(tg.arrived)}", flush=True)
        except TimeoutError:
            pass
        json.dump({"chat": tg.arrived, "answers": tg.answers}, sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first-id", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--lifetime", type=float, default=900.0, help="seconds, at most")
    args = parser.parse_args()
    asyncio.run(serve(args.first_id, args.count, args.lifetime))


if __name__ == "__main__":
    main()
