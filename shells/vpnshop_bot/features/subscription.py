"""My subscription: status, expiry, traffic, devices (list and remove), the link as text
and as a QR image, revoking the link (after a confirmation) and auto-renewal. Each
button names the subscription; every use case checks it is the customer's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiogram import F, Router
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup

from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import SubscriptionNotFoundError, SubscriptionNotReadyError
from vpnshop.i18n import Translator
from vpnshop.i18n.formats import date, gib
from vpnshop.ports.panel import PanelError
from vpnshop.services.journeys import CustomerJourneys
from vpnshop.services.my_subscription import PanelState, SubscriptionDetails
from vpnshop_bot.callbacks import Nav
from vpnshop_bot.keyboards import subscription as kb
from vpnshop_bot.keyboards.common import back_only
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.qr import qr_png
from vpnshop_bot.screens import show

_PANEL_NOTE = {PanelState.PENDING: "sub.note.pending", PanelState.UNAVAILABLE: "sub.note.panel"}


def details_text(tr: Translator, d: SubscriptionDetails) -> str:
    status = d.status.value
    lines = [tr("sub.title"), tr(f"sub.status.{status}")]
    if d.is_trial:
        lines.append(tr("sub.trial"))
    lines.append(tr("sub.until", until=date(tr.language, d.expires_at), days=d.days_left))
    if d.usage is not None:
        used = gib(d.usage.used_traffic_bytes)
        limit = d.usage.traffic_limit_bytes
        if limit:
            lines.append(tr("sub.traffic", used=used, limit=gib(limit)))
        else:
            lines.append(tr("sub.traffic_unlimited", used=used))
    # Counting the devices takes a second panel call: the summary names the limit, and
    # the Devices screen lists the devices against it.
    if d.device_limit:
        lines.append(tr("sub.device_limit", limit=d.device_limit))
    else:
        lines.append(tr("sub.device_limit.none"))
    lines.append(tr("sub.auto_on" if d.auto_renew else "sub.auto_off"))
    if d.link:
        lines.append(tr("sub.link", link=d.link))
    if d.panel in _PANEL_NOTE:
        lines.append(tr(_PANEL_NOTE[d.panel]))
    return "\n".join(lines)


def devices_text(tr: Translator, d: SubscriptionDetails) -> str:
    if d.devices is None:
        return tr("sub.devices.unknown")
    limit = str(d.device_limit) if d.device_limit else "∞"
    header = tr("sub.devices.header", count=len(d.devices), limit=limit)
    if not d.devices:
        return f"{header}\n{tr('sub.devices.none')}"
    names = "\n".join(f"• {kb.device_name(x)}" for x in d.devices)
    return f"{header}\n{names}"


def setup(menu: MenuRegistry) -> Router:
    menu.add(
        MenuEntry(
            "sub",
            "btn.my_subscription",
            Nav(to="sub").pack(),
            order=10,
            visible=lambda home: home.subscription is not None,
        )
    )
    router = Router(name="subscription")

    async def view(
        query: CallbackQuery, journeys: CustomerJourneys, cid: int, sid: int, tr: Translator
    ) -> None:
        d = await journeys.subscription_details(cid, sid, devices=False)
        await show(query, details_text(tr, d), kb.subscription(tr, d))

    async def guarded(
        query: CallbackQuery, tr: Translator, sid: int, action: Awaitable[None]
    ) -> None:
        """Run *action* (a coroutine); a foreign or unknown subscription, one without a
        panel user yet, or a panel that does not answer each get their message."""
        try:
            await action
        except SubscriptionNotFoundError:
            await show(query, tr("sub.not_found"), back_only(tr))
        except SubscriptionNotReadyError:
            await show(query, tr("sub.note.pending"), kb.back_to(tr, sid))
        except PanelError:
            await show(query, tr("sub.panel_down"), kb.back_to(tr, sid))

    @router.callback_query(Nav.filter(F.to == "sub"))
    async def newest(
        query: CallbackQuery, journeys: CustomerJourneys, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        try:  # the newest one, found in the same read as its details
            d = await journeys.subscription_details(customer.id, None, devices=False)
        except SubscriptionNotFoundError:
            await show(query, tr("sub.none"), back_only(tr))
            return
        await show(query, details_text(tr, d), kb.subscription(tr, d))

    @router.callback_query(kb.Sub.filter(F.a.in_({"v", "on", "off"})))
    async def open_or_toggle(
        query: CallbackQuery,
        callback_data: kb.Sub,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer()
        cid, sid = customer.id, callback_data.s
        assert cid is not None

        async def act() -> None:
            if callback_data.a != "v":
                await journeys.set_auto_renew(cid, sid, callback_data.a == "on")
            await view(query, journeys, cid, sid, tr)

        await guarded(query, tr, sid, act())

    @router.callback_query(kb.Sub.filter(F.a == "qr"))
    async def qr(
        query: CallbackQuery,
        callback_data: kb.Sub,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer()
        cid, sid = customer.id, callback_data.s
        assert cid is not None
        assert query.bot is not None

        async def act() -> None:
            d = await journeys.subscription_details(cid, sid, devices=False)
            if not d.link:
                raise SubscriptionNotReadyError(f"subscription {sid} has no link yet")
            png = await asyncio.to_thread(qr_png, d.link)
            assert query.bot is not None
            await query.bot.send_photo(
                query.from_user.id,
                BufferedInputFile(png, filename="vpn-link.png"),
                caption=tr("sub.qr_caption", link=d.link),
                reply_markup=kb.back_to(tr, sid),
            )

        await guarded(query, tr, sid, act())

    @router.callback_query(kb.Sub.filter(F.a == "rv"))
    async def ask_revoke(query: CallbackQuery, callback_data: kb.Sub, tr: Translator) -> None:
        await query.answer()
        await show(query, tr("sub.revoke.ask"), kb.revoke_confirm(tr, callback_data.s))

    @router.callback_query(kb.Sub.filter(F.a == "rvy"))
    async def revoke(
        query: CallbackQuery,
        callback_data: kb.Sub,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer()
        cid, sid = customer.id, callback_data.s
        assert cid is not None

        async def act() -> None:
            link = await journeys.revoke_link(cid, sid)
            await show(query, tr("sub.revoke.done", link=link), kb.back_to(tr, sid))

        await guarded(query, tr, sid, act())

    @router.callback_query(kb.Sub.filter(F.a == "dv"))
    async def devices(
        query: CallbackQuery,
        callback_data: kb.Sub,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer()
        cid, sid = customer.id, callback_data.s
        assert cid is not None
        await guarded(query, tr, sid, device_screen(query, journeys, cid, sid, tr))

    async def device_screen(
        query: CallbackQuery,
        journeys: CustomerJourneys,
        cid: int,
        sid: int,
        tr: Translator,
        note: str | None = None,
    ) -> None:
        d = await journeys.subscription_details(cid, sid, devices=True)
        if d.panel is PanelState.UNAVAILABLE:
            raise PanelError("the panel did not say which devices there are")
        text = devices_text(tr, d)
        markup: InlineKeyboardMarkup = kb.devices(tr, sid, d.devices or ())
        await show(query, f"{note}\n\n{text}" if note else text, markup)

    @router.callback_query(kb.Dev.filter())
    async def remove(
        query: CallbackQuery,
        callback_data: kb.Dev,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer()
        cid, sid = customer.id, callback_data.s
        assert cid is not None

        async def act() -> None:
            d = await journeys.subscription_details(cid, sid, devices=True)
            hwid = next(
                (x.hwid for x in d.devices or () if kb.hwid_hash(x.hwid) == callback_data.h),
                None,
            )
            note = tr("sub.device.gone")
            if hwid is not None:
                await journeys.remove_device(cid, sid, hwid)
                note = tr("sub.device.removed")
            await device_screen(query, journeys, cid, sid, tr, note)

        await guarded(query, tr, sid, act())

    return router
