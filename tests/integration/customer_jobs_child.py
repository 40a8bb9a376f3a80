"""A scheduler stand-in the kill -9 tests run as a child process and kill mid-way:
``python -m tests.integration.customer_jobs_child URL NOW broadcast API_URL TOKEN`` or
``... URL NOW renew``. It prints "ready" once its resources are open."""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack
from datetime import datetime

from vpnshop.adapters.telegram import BotApiClient, BotApiSettings, TelegramNotifier
from vpnshop.bootstrap import open_engine, open_storage
from vpnshop.domain.money import RUB
from vpnshop.services.broadcasts import SendBroadcasts
from vpnshop.services.deps import Deps
from vpnshop.services.renewals import RenewFromBalance
from vpnshop.testing.fakes import FakeClock, SequentialIds


async def main(argv: list[str]) -> None:
    url, now, job = argv[0], datetime.fromisoformat(argv[1]), argv[2]
    async with AsyncExitStack() as stack:
        storage = open_storage(open_engine(url, stack), stack)
        deps = Deps(storage, FakeClock(now), SequentialIds())
        if job == "broadcast":
            client = await stack.enter_async_context(
                BotApiClient(BotApiSettings(argv[4], argv[3], timeout=5))
            )
            run = SendBroadcasts(deps, TelegramNotifier(client), rate=50.0, run_for=None)
            print("ready", flush=True)
            await run()
        else:
            print("ready", flush=True)
            await RenewFromBalance(deps, RUB, days_before=1)()
    print("finished", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
