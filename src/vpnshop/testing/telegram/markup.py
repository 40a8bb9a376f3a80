"""Reply markup: validated as the Bot API validates it, and read back for tests."""

from __future__ import annotations

from typing import Any

import attrs

from vpnshop.testing.telegram.wire import bad_request

MAX_CALLBACK_DATA = 64  # bytes
_INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


@attrs.frozen
class InlineButton:
    """A button of an inline keyboard as a user sees it."""

    text: str
    callback_data: str | None = None
    url: str | None = None
    pay: bool = False


def validate_markup(markup: Any) -> dict[str, Any] | None:
    """*markup* (decoded JSON) if the Bot API would accept it; raises ApiError otherwise."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array'
            )
        for row in rows:
            for button in row:
                _validate_inline_button(button)
    elif "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request('field "keyboard" of the ReplyKeyboardMarkup must be an Array')
        for row in rows:
            for button in row:
                text = button if isinstance(button, str) else button.get("text")
                if not text:
                    raise bad_request("can't parse keyboard button: Text must be non-empty")
    elif not ("remove_keyboard" in markup or "force_reply" in markup):
        raise bad_request("can't parse reply keyboard markup JSON object")
    return markup


def _validate_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise bad_request(
            'can\'t parse inline keyboard button: Field "text" must be of type String'
        )
    actions = [a for a in _INLINE_ACTIONS if a in button]
    if not actions:
        raise bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button:
        url = button["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "tg://")):
            raise bad_request("BUTTON_URL_INVALID")


def inline_buttons(markup: dict[str, Any] | None) -> list[list[InlineButton]]:
    """The rows of inline buttons of *markup* (none for other kinds of markup)."""
    if not markup or "inline_keyboard" not in markup:
        return []
    return [
        [
            InlineButton(
                text=b["text"],
                callback_data=b.get("callback_data"),
                url=b.get("url"),
                pay=bool(b.get("pay")),
            )
            for b in row
        ]
        for row in markup["inline_keyboard"]
    ]


def reply_keyboard_labels(markup: dict[str, Any] | None) -> list[str]:
    """The labels of a reply keyboard, in reading order."""
    if not markup or "keyboard" not in markup:
        return []
    return [b if isinstance(b, str) else b["text"] for row in markup["keyboard"] for b in row]
