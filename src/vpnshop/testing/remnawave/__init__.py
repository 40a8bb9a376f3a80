"""A Remnawave panel emulator for tests: an aiohttp server that behaves like the real panel
for everything the shop uses, on either API line.

Calibrated on the recordings of a real 3.3.2 panel (see the contract tests that replay
them) and on the panel's published contract for older versions:

* ``version`` decides routes, shapes and metadata: 3.x keys users by numeric ``id`` and
  answers ``DELETE`` with 204; 2.3-2.8 key them by ``uuid``; ``/system/metadata`` and
  ``/users/stream`` exist from 2.8, ``/users/resolve`` and ``MONTH_ROLLING`` from 2.7,
  ``/users/by-id`` on 2.3-2.8, ``/users/by-telegram-id`` before 3.0 (404 A062 when empty
  before 2.4); 2.x validation errors use zod v3 issues, 3.x zod v4 issues.
* the proxy check: without ``X-Forwarded-For`` and ``X-Forwarded-Proto: https`` the
  connection is closed with no response (``require_forwarded_headers``, on by default);
* 401 without a valid token, optional token scopes (2.8+);
* signed webhooks (``X-Remnawave-Signature`` = hex HMAC-SHA256 of the exact raw body) for
  every change, to ``webhook_url``;
* the expiry scheduler: on a 30 s tick (at :00 and :30) ACTIVE users whose expiry passed
  become EXPIRED (evaluated lazily, so a manual clock works);
* fault knobs: ``error_rate``, ``latency``, ``hang``, ``down``, ``drop_connections`` and
  :meth:`RemnawaveEmulator.fail` for a given status on a given route.

Test helpers (:meth:`add_user`, :meth:`set_traffic_used`, :meth:`add_hwid_device`,
:meth:`set_expire_at`, :meth:`notify_expiration`, ...) change state directly.

The package is one module per idea, assembled by mixins over ``base._Base`` (the state):
``model`` (records, constants), ``issues`` (zod issues), ``index`` (the user table, indexed
by every lookup key), ``rendering``, ``webhooks`` (and the expiry job), ``validation``,
``transport`` (the HTTP entry, faults, authorization, routing), the handlers
(``users_write``, ``users_read``, ``user_actions``, ``devices``, ``system``) and
``emulator`` (life cycle, routes by version, test helpers).
"""

from vpnshop.testing.remnawave.emulator import RemnawaveEmulator
from vpnshop.testing.remnawave.model import (
    EmuDevice,
    EmuSquad,
    EmuUser,
    ManualClock,
    RecordedRequest,
    SentWebhook,
    iso,
)

__all__ = [
    "EmuDevice",
    "EmuSquad",
    "EmuUser",
    "ManualClock",
    "RecordedRequest",
    "RemnawaveEmulator",
    "SentWebhook",
    "iso",
]
