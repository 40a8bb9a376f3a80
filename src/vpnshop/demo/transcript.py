"""The chat as the customer saw it: what they did, and each message of the bot as it
looked then (a message the bot edits in place shows again, marked "edited")."""

from __future__ import annotations

from typing import TextIO

import attrs

from vpnshop.testing.telegram import ChatMessage, TgUser


def render_message(m: ChatMessage, to: str, edited: bool) -> list[str]:
    """A bot message to *to*: its text indented, then its buttons, one row a line."""
    head = f"bot to {to} (edited):" if edited else f"bot to {to}:"
    body = m.text if m.text is not None else (m.caption or "")
    if m.invoice is not None:
        inv = m.invoice
        body = f"[invoice] {inv.get('title')}: {inv.get('total_amount')} {inv.get('currency')}"
    elif m.photo_file_id is not None:
        body = f"[picture] {body}".rstrip()
    lines = [f"  {head}"]
    lines += [f"    {line}" for line in body.splitlines() or [""]]
    for row in m.buttons:
        lines.append("    " + "  ".join(f"[{b.text}]" for b in row))
    return lines


@attrs.define
class Transcript:
    """Records a customer's actions and the bot's messages in the order they happened."""

    lines: list[str] = attrs.field(factory=list)
    _users: dict[int, TgUser] = attrs.field(factory=dict)
    _seen: dict[tuple[int, int], int] = attrs.field(factory=dict)  # (chat, message) -> version

    def catch_up(self, user: TgUser | None = None) -> None:
        """Add the bot's messages sent or changed since the last look, in every chat."""
        if user is not None:
            self._users[user.id] = user
        for u in self._users.values():
            changed = [
                m
                for m in u.chat.messages.values()
                if m.from_bot and self._seen.get((m.chat_id, m.message_id), -1) < m.version
            ]
            for m in sorted(changed, key=lambda m: m.version):
                key = (m.chat_id, m.message_id)
                self.lines += render_message(m, u.account.first_name, edited=key in self._seen)
                self._seen[key] = m.version

    def action(self, user: TgUser, what: str) -> None:
        self.catch_up(user)
        self.lines.append(f"{user.account.first_name}: {what}")

    def note(self, text: str) -> None:
        self.lines.append(f"-- {text} --")

    def print(self, out: TextIO) -> None:
        for line in self.lines:
            print(line, file=out)
