"""The gettext catalogs: complete in every language, and covering every id the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vpnshop.i18n import LANGUAGES, Markup, catalog, client_language, translate
from vpnshop.i18n.notices import render_notice
from vpnshop.services.notifications import Notice

ROOT = Path(__file__).resolve().parents[2]
# Every string literal in the bot shell shaped like a message id ("menu.title",
# f"connect.platform.{code}"); logger and module names are not ids.
_ID = re.compile(r"""f?["']([a-z_]+(?:\.[a-z_{}]+)+)["']""")
_TEMPLATES = re.compile(
    r"""template="([a-z_]+)"|TEMPLATE = "([a-z_]+)"|\("template", "([a-z_]+)"\)"""
    r"""|\(\s*"([a-z_]+)",\s*\{"""
)


def used_ids() -> set[str]:
    """Every literal message id in the bot shell (f-string ids expand over their data)."""
    ids: set[str] = set()
    for path in (ROOT / "shells" / "vpnshop_bot").rglob("*.py"):
        text = path.read_text()
        ids |= {m for m in _ID.findall(text) if not m.startswith(("vpnshop", "aiogram"))}
    return ids


def expand(msgid: str) -> set[str]:
    """``connect.platform.{code}`` -> the ids in the English catalog it can name."""
    if "{" not in msgid:
        return {msgid}
    pattern = re.compile(re.sub(r"\\\{[a-z_.]+\\\}", "[a-z_]+", re.escape(msgid)) + "$")
    return {k for k in catalog("en") if pattern.match(k)} or {msgid}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_id_has_a_translation_in_every_language(language: str) -> None:
    """Each catalog has exactly the ids of the others, none empty."""
    ids = {lang: set(catalog(lang)) for lang in LANGUAGES}
    for other in LANGUAGES:
        assert ids[language] == ids[other], ids[language] ^ ids[other]
    assert all(text.strip() for text in catalog(language).values())


def test_every_id_used_by_the_bot_is_in_the_catalogs() -> None:
    """A message id in the bot's code that no catalog has fails here, not in a chat."""
    used = set().union(*(expand(i) for i in used_ids()))
    assert len(used) > 30
    missing = {i for i in used if any(i not in catalog(lang) for lang in LANGUAGES)}
    assert missing == set()


def test_every_enqueued_notification_has_a_text() -> None:
    """Every notification template the core enqueues renders in both languages."""
    templates: set[str] = set()
    for path in [
        *(ROOT / "src/vpnshop/services").glob("*.py"),
        ROOT / "src/vpnshop/domain/settlement.py",
    ]:
        for groups in _TEMPLATES.findall(path.read_text()):
            templates |= {g for g in groups if g}
    templates -= {"payment_received", "refund"}  # rendered by variant, below
    templates |= {"paid_plan", "paid_topup", "refund_balance", "refund"}
    admin = {"amount_mismatch", "stray_charge", "unmapped_product"}
    assert {"subscription_ready", "expiring", "device_added"} <= templates
    for language in LANGUAGES:
        for t in templates:
            key = f"admin.{t}" if t in admin else t
            assert f"notice.{key}" in catalog(language), (language, key)


def test_values_are_escaped_unless_markup() -> None:
    """User text formatted into a message is HTML-escaped; Markup goes in as it is."""
    assert translate("en", "start.welcome", name="<b>&") == "Welcome, &lt;b&gt;&amp;!"
    assert translate("en", "start.welcome", name=Markup("<b>x</b>")) == "Welcome, <b>x</b>!"


def test_client_language() -> None:
    """ru, uk and be clients get Russian; everyone else English."""
    assert [client_language(c) for c in ("ru", "uk", "be-BY", "en-US", "de", None)] == [
        "ru",
        "ru",
        "ru",
        "en",
        "en",
        "en",
    ]


def test_notice_dates_and_traffic_are_formatted_per_language() -> None:
    """Dates follow the language; byte counts are shown in GiB."""
    notice = Notice("expiring", "ru", {"expires_at": "2026-12-31T10:00:00+00:00", "hours": 24})
    assert "31.12.2026" in render_notice(notice).text
    used = Notice(
        "traffic_threshold",
        "en",
        {"percent": 80, "used_traffic_bytes": 8 * 2**30, "traffic_limit_bytes": 10 * 2**30},
    )
    assert "8.0 of 10.0 GiB" in render_notice(used).text
