"""Bot API methods on messages: send, edit, delete, photos, files and callback answers."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

from vpnshop.testing.telegram.html import parse_html, utf16_len
from vpnshop.testing.telegram.markup import validate_markup
from vpnshop.testing.telegram.registry import method
from vpnshop.testing.telegram.state import Chat, ChatMessage, StoredFile, now_ts, png_size
from vpnshop.testing.telegram.wire import Params, Upload, bad_request

if TYPE_CHECKING:
    from vpnshop.testing.telegram.server import TelegramEmulator

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_ANSWER = 200
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"RIFF")


def formatted(
    p: Params, field: str, limit: int, *, required: bool
) -> tuple[str | None, list[dict[str, Any]], str | None]:
    """The plain text, entities and source of *field* under ``parse_mode``."""
    source = p.string(field)
    if source is None or source == "":
        if required:
            raise bad_request("message text is empty")
        return None, [], None
    mode = (p.string("parse_mode") or "").lower()
    if mode == "html":
        text, entities = parse_html(source)
    else:
        # MarkdownV2 is not checked here; the shop sends HTML.
        entities_field = "entities" if field == "text" else "caption_entities"
        text, entities = source, list(p.json(entities_field) or [])
    if required and not text.strip():
        raise bad_request("message text is empty")
    if utf16_len(text) > limit:
        raise bad_request(
            "message is too long" if field == "text" else "message caption is too long"
        )
    return text, entities, source


def bot_message(emu: TelegramEmulator, chat: Chat, **fields: Any) -> dict[str, Any]:
    message = ChatMessage(
        message_id=chat.new_message_id(),
        chat_id=chat.id,
        from_bot=True,
        date=now_ts(),
        sender=emu.bot_user,
        **fields,
    )
    markup = message.reply_markup or {}
    if "keyboard" in markup:
        chat.reply_keyboard = markup
    elif "remove_keyboard" in markup:
        chat.reply_keyboard = None
    chat.add(message)
    return emu.message_json(chat, message.message_id)


@method("sendMessage", sending=True)
async def send_message(emu: TelegramEmulator, p: Params) -> Any:
    chat = emu.resolve_chat(p.chat_id())
    text, entities, source = formatted(p, "text", MAX_TEXT, required=True)
    markup = validate_markup(p.json("reply_markup"))
    return bot_message(emu, chat, text=text, source=source, entities=entities, reply_markup=markup)


def _editable(emu: TelegramEmulator, p: Params, what: str = "edit") -> tuple[Chat, ChatMessage]:
    if p.has("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")
    chat = emu.resolve_chat(p.chat_id())
    message = chat.messages.get(p.required_int("message_id"))
    if message is None or message.deleted:
        raise bad_request(f"message to {what} not found")
    if what == "edit" and not message.from_bot:
        raise bad_request("message can't be edited")
    return chat, message


def _edited(emu: TelegramEmulator, chat: Chat, message: ChatMessage) -> dict[str, Any]:
    message.edit_date = now_ts()
    chat.touch(message)
    return emu.message_json(chat, message.message_id)


@method("editMessageText", sending=True)
async def edit_message_text(emu: TelegramEmulator, p: Params) -> Any:
    chat, message = _editable(emu, p)
    if message.text is None:
        raise bad_request("there is no text in the message to edit")
    text, entities, source = formatted(p, "text", MAX_TEXT, required=True)
    # As on Telegram, an edit without reply_markup removes the inline keyboard.
    markup = validate_markup(p.json("reply_markup"))
    if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
        raise bad_request(NOT_MODIFIED)
    assert text is not None
    message.previous_texts.append(message.text)
    message.text, message.entities, message.source = text, entities, source
    message.reply_markup = markup
    return _edited(emu, chat, message)


@method("editMessageCaption", sending=True)
async def edit_message_caption(emu: TelegramEmulator, p: Params) -> Any:
    chat, message = _editable(emu, p)
    if message.photo_file_id is None:
        raise bad_request("there is no caption in the message to edit")
    caption, entities, source = formatted(p, "caption", MAX_CAPTION, required=False)
    markup = validate_markup(p.json("reply_markup"))
    if (caption, entities, markup) == (message.caption, message.entities, message.reply_markup):
        raise bad_request(NOT_MODIFIED)
    message.previous_texts.append(message.caption or "")
    message.caption, message.entities, message.source = caption, entities, source
    message.reply_markup = markup
    return _edited(emu, chat, message)


@method("editMessageReplyMarkup", sending=True)
async def edit_message_reply_markup(emu: TelegramEmulator, p: Params) -> Any:
    chat, message = _editable(emu, p)
    markup = validate_markup(p.json("reply_markup"))
    if markup == message.reply_markup:
        raise bad_request(NOT_MODIFIED)
    message.reply_markup = markup
    return _edited(emu, chat, message)


@method("deleteMessage")
async def delete_message(emu: TelegramEmulator, p: Params) -> Any:
    chat, message = _editable(emu, p, "delete")
    message.deleted = True
    chat.touch(message)
    return True


def store_upload(emu: TelegramEmulator, upload: Upload) -> StoredFile:
    if not upload.data:
        raise bad_request("file must be non-empty")
    if not upload.data.startswith(_IMAGE_MAGIC):
        raise bad_request("IMAGE_PROCESS_FAILED")
    digest = hashlib.sha256(upload.data).hexdigest()[:16]
    width, height = png_size(upload.data)
    stored = StoredFile(
        file_id=f"AgAC{emu.new_id('photo')}_{digest}",
        file_unique_id=f"AQAD{digest}",
        data=upload.data,
        width=width,
        height=height,
    )
    emu.files[stored.file_id] = stored
    return stored


@method("sendPhoto", sending=True)
async def send_photo(emu: TelegramEmulator, p: Params) -> Any:
    chat = emu.resolve_chat(p.chat_id())
    photo = p.file("photo")
    caption, entities, source = formatted(p, "caption", MAX_CAPTION, required=False)
    markup = validate_markup(p.json("reply_markup"))
    if photo is None:
        raise bad_request("there is no photo in the request")
    if isinstance(photo, Upload):
        stored = store_upload(emu, photo)
    elif photo in emu.files:
        stored = emu.files[photo]
    elif photo.startswith(("http://", "https://")):
        stored = StoredFile(f"AgAC{emu.new_id('url')}", emu.new_id("AQAD"), None, url=photo)
        emu.files[stored.file_id] = stored
    else:
        raise bad_request("wrong file identifier/HTTP URL specified")
    return bot_message(
        emu,
        chat,
        caption=caption,
        source=source,
        entities=entities,
        reply_markup=markup,
        photo_file_id=stored.file_id,
    )


@method("getFile")
async def get_file(emu: TelegramEmulator, p: Params) -> Any:
    stored = emu.files.get(p.required_str("file_id"))
    if stored is None or stored.data is None:
        raise bad_request("invalid file_id")
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": len(stored.data),
        "file_path": f"photos/{stored.file_id}",
    }


@method("answerCallbackQuery")
async def answer_callback_query(emu: TelegramEmulator, p: Params) -> Any:
    query = emu.callback_queries.get(p.required_str("callback_query_id"))
    now = asyncio.get_running_loop().time()
    if query is None or query.answered or now - query.created > emu.callback_answer_timeout:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = p.string("text")
    if text is not None and len(text) > MAX_CALLBACK_ANSWER:
        raise bad_request("MESSAGE_TOO_LONG")
    query.answered = True
    query.text = text
    query.show_alert = p.flag("show_alert")
    query.url = p.string("url")
    query.done.set()
    return True
