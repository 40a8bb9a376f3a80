"""``my_chat_member``: the customer blocked the bot (unreachable: notifications stop) or
unblocked it (reachable again)."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import ChatMemberUpdated

from vpnshop.domain.customer import Customer
from vpnshop.services.journeys import CustomerJourneys
from vpnshop_bot.menu import MenuRegistry

_GONE = frozenset({"kicked", "left"})


def setup(menu: MenuRegistry) -> Router:
    router = Router(name="membership")

    @router.my_chat_member()
    async def membership(
        event: ChatMemberUpdated, journeys: CustomerJourneys, customer: Customer
    ) -> None:
        if event.chat.type != "private" or customer.id is None:
            return
        status = str(getattr(event.new_chat_member.status, "value", event.new_chat_member.status))
        await journeys.mark_reachable(customer.id, status not in _GONE)

    return router
