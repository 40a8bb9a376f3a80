"""``vpnshop demo``: the whole shop working offline, in one process, with one command.

The emulators of every outside system (``vpnshop.testing``: the Telegram Bot API,
Remnawave, YooKassa, Crypto Pay, FreeKassa, Tribute) listen on loopback; the shop runs on
a temporary SQLite file with its three shells (the bot, the webhook server, the
scheduler) started through their entry points on one App, exactly as ``vpnshop run all``
starts them. A scripted customer then walks through the shop (``journey``); every step
is checked, the chat is printed as the customer saw it (``transcript``) and the final
state (ledger, panel user, outbox) after it (``state``).

Modules: ``clock`` (the time the demo travels in), ``world`` (emulators and the running
shop), ``steps`` (named, checked steps), ``journey`` (the scenario), ``transcript`` and
``state`` (what is printed). ``run_demo`` is what the CLI calls and tests call.
"""

from __future__ import annotations

from vpnshop.demo.run import run_demo

__all__ = ["run_demo"]
