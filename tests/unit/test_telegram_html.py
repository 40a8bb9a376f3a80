"""The emulator's HTML parse mode: what Telegram accepts, how it counts, what it refuses."""

from __future__ import annotations

import pytest

from vpnshop.testing.telegram.html import parse_html
from vpnshop.testing.telegram.wire import ApiError


def test_plain_text_and_entities_with_utf16_offsets() -> None:
    """Entities are measured in UTF-16 code units, so an emoji before a tag counts two."""
    text, entities = parse_html('🚀 <b>Go <a href="https://x.example/?a=1&amp;b=2">here</a></b>')
    assert text == "🚀 Go here"
    assert entities == [
        {"type": "bold", "offset": 3, "length": 7},
        {"type": "text_link", "offset": 6, "length": 4, "url": "https://x.example/?a=1&b=2"},
    ]


def test_entities_are_decoded_and_a_stray_ampersand_stays() -> None:
    """&lt; &gt; &amp; &quot; and numeric entities decode; an unknown one stays literal."""
    assert parse_html("a &lt;b&gt; &quot;c&quot; &#8364; &#x41; &nbsp; R&D")[0] == (
        'a <b> "c" € A &nbsp; R&D'
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("é<x>", 'Unsupported start tag "x" at byte offset 2'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("<b", "Unclosed start tag at byte offset 0"),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_broken_html_is_refused_in_telegrams_words(source: str, reason: str) -> None:
    """Each kind of broken markup answers 400 "can't parse entities" with tdlib's reason."""
    with pytest.raises(ApiError) as caught:
        parse_html(source)
    assert caught.value.error_code == 400
    assert caught.value.description == f"Bad Request: can't parse entities: {reason}"


def test_supported_tags_nest() -> None:
    """Every supported tag is accepted, nested, case-insensitively."""
    text, entities = parse_html(
        '<B>b<i>i<u>u<s>s</s></u></i></B> <code>c</code> <pre language="py">p</pre> '
        '<tg-spoiler>t</tg-spoiler> <span class="tg-spoiler">sp</span> <blockquote>q</blockquote>'
    )
    assert text == "bius c p t sp q"
    assert {e["type"] for e in entities} == {
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "code",
        "pre",
        "spoiler",
        "blockquote",
    }
