"""Fixtures the payment gateway contract tests share.

``receiver`` needs the test module's own ``emu`` and ``gateway`` fixtures; pytest resolves
those per module, so one fixture serves every gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import pytest

from tests.contract.helpers import Receiver
from vpnshop.ports.payments import PaymentGateway


class _Emulator(Protocol):
    webhook_url: str | None


@pytest.fixture
async def receiver(emu: _Emulator, gateway: PaymentGateway) -> AsyncIterator[Receiver]:
    """A started :class:`Receiver` for *gateway*, set as the emulator's webhook URL."""
    rec = Receiver(gateway)
    await rec.start()
    emu.webhook_url = rec.url
    yield rec
    await rec.close()
