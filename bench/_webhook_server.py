"""A webhook server in its own process, for bench_webhooks.py (not a benchmark itself).

    python bench/_webhook_server.py product DATABASE_URL CRYPTOPAY_TOKEN
    python bench/_webhook_server.py noop

Prints ``PORT <n>`` once it listens on 127.0.0.1 (a free port), then serves until its
standard input closes (the parent exiting or closing it stops it).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import AsyncExitStack

from aiohttp import web

from vpnshop_webhooks.app import create_app
from vpnshop_webhooks.server import start_site


async def noop_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/webhooks/cryptopay", handler)
    return app


async def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.ERROR)
    async with AsyncExitStack() as stack:
        if argv[0] == "product":
            from vpnshop.adapters.payments.cryptopay import CryptoPayGateway, CryptoPaySettings
            from vpnshop.bootstrap import bootstrap
            from vpnshop.config import Settings

            url, token = argv[1], argv[2]
            # Webhook parsing never calls the Crypto Pay API; the base URL is unused.
            gateway = CryptoPayGateway(
                CryptoPaySettings(token=token, base_url="http://127.0.0.1:9")
            )
            stack.push_async_callback(gateway.aclose)
            app = await stack.enter_async_context(
                bootstrap(Settings(database_url=url), gateways={"cryptopay": gateway})
            )
            web_app = create_app(app)
        else:
            web_app = await noop_app()
        runner, base = await start_site(web_app, access_log=False)
        stack.push_async_callback(runner.cleanup)
        print(f"PORT {base.rsplit(':', 1)[1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    from vpnshop.cli import run_async  # uvloop where installed, as `vpnshop run` uses

    async def _main() -> int:
        await main(sys.argv[1:])
        return 0

    run_async(_main())
