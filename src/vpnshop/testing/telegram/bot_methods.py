"""Bot API methods about the bot itself: identity, commands, updates, chat membership."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from vpnshop.testing.telegram.registry import method
from vpnshop.testing.telegram.wire import Params, bad_request

if TYPE_CHECKING:
    from vpnshop.testing.telegram.server import TelegramEmulator

_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_ADMIN_RIGHTS = (
    "can_be_edited",
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
)


@method("getMe")
async def get_me(emu: TelegramEmulator, p: Params) -> Any:
    return {
        **emu.bot_user,
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


@method("logOut")
async def log_out(emu: TelegramEmulator, p: Params) -> Any:
    return True


@method("close")
async def close(emu: TelegramEmulator, p: Params) -> Any:
    return True


def _scope_key(p: Params) -> str:
    scope = p.json("scope") or {"type": "default"}
    language = p.string("language_code") or ""
    return f"{scope.get('type', 'default')}:{scope.get('chat_id', '')}:{language}"


@method("setMyCommands")
async def set_my_commands(emu: TelegramEmulator, p: Params) -> Any:
    commands = p.json("commands")
    if not isinstance(commands, list) or len(commands) > 100:
        raise bad_request("commands must be an array of at most 100 BotCommand")
    for command in commands:
        name = command.get("command", "") if isinstance(command, dict) else ""
        if not _COMMAND.fullmatch(name):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(command.get("description", "")) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
    emu.commands[_scope_key(p)] = commands
    return True


@method("getMyCommands")
async def get_my_commands(emu: TelegramEmulator, p: Params) -> Any:
    return emu.commands.get(_scope_key(p), [])


@method("deleteMyCommands")
async def delete_my_commands(emu: TelegramEmulator, p: Params) -> Any:
    emu.commands.pop(_scope_key(p), None)
    return True


@method("getUpdates")
async def get_updates(emu: TelegramEmulator, p: Params) -> Any:
    return await emu.feed.get_updates(p)


@method("setWebhook")
async def set_webhook(emu: TelegramEmulator, p: Params) -> Any:
    return await emu.feed.set_webhook(p)


@method("deleteWebhook")
async def delete_webhook(emu: TelegramEmulator, p: Params) -> Any:
    return await emu.feed.delete_webhook(p)


@method("getWebhookInfo")
async def get_webhook_info(emu: TelegramEmulator, p: Params) -> Any:
    return emu.feed.info()


@method("getChatMember")
async def get_chat_member(emu: TelegramEmulator, p: Params) -> Any:
    ref = p.chat_id()
    chats = [
        c
        for c in emu.chats.values()
        if c.type != "private" and (c.id == ref or (c.username and f"@{c.username}" == ref))
    ]
    if not chats:
        raise bad_request("chat not found")
    user_id = p.required_int("user_id")
    account = emu.accounts.get(user_id)
    if account is None:
        raise bad_request("user not found")
    status = chats[0].members.get(user_id, "left")
    member: dict[str, Any] = {"status": status, "user": account.to_json()}
    if status == "kicked":
        member["until_date"] = 0
    elif status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member.update({right: False for right in _ADMIN_RIGHTS})
        member["is_anonymous"] = False
    return member


@method("sendChatAction")
async def send_chat_action(emu: TelegramEmulator, p: Params) -> Any:
    emu.resolve_chat(p.chat_id())
    p.required_str("action")
    return True


@method("getChat")
async def get_chat(emu: TelegramEmulator, p: Params) -> Any:
    chat = emu.resolve_chat(p.chat_id())
    return {**emu.chat_json(chat), "accent_color_id": 0, "max_reaction_count": 11}


@method("setMyDescription")
async def set_my_description(emu: TelegramEmulator, p: Params) -> Any:
    emu.descriptions[f"description:{p.string('language_code') or ''}"] = p.string("description")
    return True


@method("setMyShortDescription")
async def set_my_short_description(emu: TelegramEmulator, p: Params) -> Any:
    key = f"short_description:{p.string('language_code') or ''}"
    emu.descriptions[key] = p.string("short_description")
    return True


@method("setChatMenuButton")
async def set_chat_menu_button(emu: TelegramEmulator, p: Params) -> Any:
    return True
