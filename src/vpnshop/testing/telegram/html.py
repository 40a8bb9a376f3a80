"""Telegram's HTML parse mode, checked the way the Bot API checks it.

Follows tdlib's ``parse_html``: every ``<`` opens a tag (so a bare ``a < b`` is an error),
only the supported tags are allowed, tags must nest properly, and ``&lt; &gt; &amp;
&quot;`` plus numeric entities are decoded while any other ``&`` stays as it is. Errors
carry the Bot API's own words, with byte offsets into the UTF-8 text.
"""

from __future__ import annotations

import html
import re
from typing import Any

from vpnshop.testing.telegram.wire import ApiError, bad_request

ENTITY_OF_TAG = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);")
_ATTR = re.compile(r"""\s*([a-zA-Z-]+)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _parse_error(reason: str) -> ApiError:
    return bad_request(f"can't parse entities: {reason}")


def _decode(chunk: str) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("#"):
            try:
                code = int(name[2:], 16) if name[1:2] in ("x", "X") else int(name[1:])
                return chr(code)
            except (ValueError, OverflowError):
                return m.group(0)
        return _NAMED.get(name, m.group(0))

    return _ENTITY.sub(one, chunk)


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """The plain text and the entities of *source*; raises :class:`ApiError` like the API."""
    out: list[str] = []
    length = 0  # UTF-16 code units written so far
    entities: list[dict[str, Any]] = []
    open_tags: list[tuple[str, int, dict[str, str]]] = []
    i = 0
    n = len(source)

    def offset(pos: int) -> int:
        return len(source[:pos].encode("utf-8"))

    while i < n:
        lt = source.find("<", i)
        if lt != i:
            chunk = _decode(source[i : n if lt < 0 else lt])
            out.append(chunk)
            length += utf16_len(chunk)
            i = n if lt < 0 else lt
            continue
        if source.startswith("</", i):
            if not open_tags:
                raise _parse_error(f"Unexpected end tag at byte offset {offset(i)}")
            gt = source.find(">", i)
            if gt < 0:
                raise _parse_error(f"Unclosed end tag at byte offset {offset(i)}")
            name = source[i + 2 : gt].strip().lower()
            tag, start, attrs_ = open_tags.pop()
            if name and name != tag:
                raise _parse_error(
                    f'Unmatched end tag at byte offset {offset(i)}, expected "</{tag}>", '
                    f'found "</{name}>"'
                )
            if length > start:
                entities.append(_entity(tag, start, length - start, attrs_))
            i = gt + 1
            continue
        j = i + 1
        while j < n and not source[j].isspace() and source[j] != ">":
            j += 1
        if j >= n:
            raise _parse_error(f"Unclosed start tag at byte offset {offset(i)}")
        tag = source[i + 1 : j].lower()
        if tag not in ENTITY_OF_TAG:
            raise _parse_error(f'Unsupported start tag "{tag}" at byte offset {offset(i)}')
        gt = source.find(">", j)
        if gt < 0:
            raise _parse_error(f'Unclosed start tag "{tag}" at byte offset {offset(i)}')
        attrs_ = {k.lower(): html.unescape(v.strip("\"'")) for k, v in _ATTR.findall(source[j:gt])}
        if tag == "span" and attrs_.get("class") != "tg-spoiler":
            raise _parse_error(
                f'Tag "span" must have class "tg-spoiler" at byte offset {offset(i)}'
            )
        open_tags.append((tag, length, attrs_))
        i = gt + 1
    if open_tags:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{open_tags[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _entity(tag: str, offset: int, length: int, attrs_: dict[str, str]) -> dict[str, Any]:
    entity: dict[str, Any] = {"type": ENTITY_OF_TAG[tag], "offset": offset, "length": length}
    if tag == "a":
        entity["url"] = attrs_.get("href", "")
    elif tag == "pre" and "language" in attrs_:
        entity["language"] = attrs_["language"]
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs_.get("emoji-id", "")
    return entity
