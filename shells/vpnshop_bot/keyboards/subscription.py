"""My subscription: its screen, the revoke confirmation and the device list. Every
button names the subscription by id; the server checks it is the customer's."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.domain.panel import PanelDevice
from vpnshop.i18n import Translator
from vpnshop.services.my_subscription import SubscriptionDetails
from vpnshop_bot.keyboards.common import back_button


class Sub(CallbackData, prefix="sb"):
    """An action on subscription ``s``: ``v`` view, ``qr``, ``dv`` devices, ``rv`` ask
    to revoke, ``rvy`` revoke, ``on``/``off`` auto-renewal."""

    a: str
    s: int


class Dev(CallbackData, prefix="dr"):
    """Remove the device of subscription ``s`` whose HWID hashes to ``h`` (a HWID may be
    far longer than callback data allows, so the server matches the hash)."""

    s: int
    h: str


def hwid_hash(hwid: str) -> str:
    return hashlib.sha256(hwid.encode()).hexdigest()[:12]


def _button(text: str, action: str, sub: int) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=Sub(a=action, s=sub).pack())


def subscription(tr: Translator, details: SubscriptionDetails) -> InlineKeyboardMarkup:
    return _subscription(tr.language, details.id, bool(details.link), details.auto_renew)


# Built once per language, subscription and the two flags it depends on: its pydantic
# models (five buttons, their callback data) cost more than the rest of the screen.
@functools.lru_cache(maxsize=4096)
def _subscription(language: str, s: int, link: bool, auto_renew: bool) -> InlineKeyboardMarkup:
    tr = Translator(language)
    rows: list[list[InlineKeyboardButton]] = []
    if link:
        rows.append([_button(tr("btn.sub.qr"), "qr", s), _button(tr("btn.sub.devices"), "dv", s)])
        rows.append([_button(tr("btn.sub.revoke"), "rv", s)])
    if auto_renew:
        rows.append([_button(tr("btn.sub.auto_off"), "off", s)])
    else:
        rows.append([_button(tr("btn.sub.auto_on"), "on", s)])
    rows.append([back_button(tr)])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def revoke_confirm(tr: Translator, sub: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [_button(tr("btn.sub.revoke_yes"), "rvy", sub)],
            [_button(tr("btn.cancel"), "v", sub)],
        ]
    )


def devices(tr: Translator, sub: int, found: Sequence[PanelDevice]) -> InlineKeyboardMarkup:
    rows = [
        [
            InlineKeyboardButton(
                text=tr("btn.sub.remove_device", name=device_name(d)),
                callback_data=Dev(s=sub, h=hwid_hash(d.hwid)).pack(),
            )
        ]
        for d in found
    ]
    rows.append([_button(tr("btn.back"), "v", sub)])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def device_name(device: PanelDevice) -> str:
    """What a customer recognises a device by: its model or platform, else its HWID."""
    parts = [p for p in (device.device_model, device.platform, device.os_version) if p]
    return " ".join(parts) if parts else device.hwid[:24]


def back_to(tr: Translator, sub: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[_button(tr("btn.back"), "v", sub)]])
