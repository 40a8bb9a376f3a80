"""Texts in the customer's language, from gettext catalogs (no aiogram: the webhook
server and the scheduler render notifications too).

The catalogs are ``locales/<lang>/LC_MESSAGES/messages.po`` in this package, read with
Babel at first use (no compile step: a clean checkout and the wheel work alike). Message
ids are symbolic (``menu.title``); every id has a translation in every language, which
``tests/unit/test_i18n.py`` enforces. Texts are HTML (parse mode HTML): every value
formatted into one is escaped unless it is :class:`Markup`.

    tr = translator("ru")
    tr("trial.ready", link=sub.subscription_url)
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

from babel.messages.pofile import read_po

LANGUAGES: Final = ("ru", "en")
_RU_FAMILY: Final = frozenset({"ru", "uk", "be"})
LOCALES: Final = Path(__file__).parent / "locales"


class Markup(str):
    """A value that is already HTML (a link tag we built): formatted in as it is."""

    __slots__ = ()


def client_language(language_code: str | None) -> str:
    """The shop's language for a Telegram client's ``language_code``: Russian for
    ru/uk/be, English for everyone else."""
    base = (language_code or "").split("-")[0].lower()
    return "ru" if base in _RU_FAMILY else "en"


@cache
def catalog(language: str) -> Mapping[str, str]:
    """Message id -> translation of *language* (empty translations left out)."""
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        po = read_po(f, locale=language)
    return {str(m.id): str(m.string) for m in po if m.id and m.string}


def _escape(value: Any) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value), quote=False)


def translate(language: str, msgid: str, /, **values: Any) -> str:
    """The text *msgid* in *language* (English when the language is unknown), with
    *values* escaped and formatted in. A missing id is a KeyError: a bug, caught by the
    catalog test before it ships."""
    texts = catalog(language if language in LANGUAGES else "en")
    text = texts[msgid]
    return text.format(**{k: _escape(v) for k, v in values.items()}) if values else text


class Translator:
    """:func:`translate` bound to one language; handlers get one per update."""

    __slots__ = ("language",)

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else "en"

    def __call__(self, msgid: str, /, **values: Any) -> str:
        return translate(self.language, msgid, **values)


def translator(language: str) -> Translator:
    return Translator(language)


__all__ = [
    "LANGUAGES",
    "Markup",
    "Translator",
    "catalog",
    "client_language",
    "translate",
    "translator",
]
