"""The webhook server under hostile input (issue 9): one regression test per class of
what was seen, on SQLite and PostgreSQL, against the real server over TCP."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator
from itertools import count

import aiohttp
import pytest

from tests.integration.hostile import (
    FORM,
    ROUTES,
    TIMEOUTS,
    HostileShop,
    cryptopay_doc,
    cryptopay_headers,
    dumps,
    freekassa_body,
    freekassa_fields,
    hostile_shop,
    remnawave_docs,
    remnawave_headers,
    restamp,
    sign_json,
    tribute_doc,
    tribute_headers,
    yookassa_doc,
)

_ids = count(910_000_001)


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[HostileShop]:
    async with hostile_shop(database_url) as s:
        yield s


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.exc_text]


def valid_delivery(route: str, ref: str = "01HOSTILE") -> tuple[bytes, dict[str, str]]:
    if route == "freekassa":
        return freekassa_body(freekassa_fields(ref)), dict(FORM)
    doc = {
        "cryptopay": lambda: cryptopay_doc(ref),
        "tribute": lambda: tribute_doc(next(_ids)),
        "yookassa": yookassa_doc,
        "remnawave": lambda: restamp(remnawave_docs()[0]),
    }[route]()
    body = dumps(doc)
    return body, sign_json(route, body)


# -- 1. Content-Encoding ------------------------------------------------------------------


async def test_content_encoding_is_refused_before_the_body_is_read(
    shop: HostileShop, caplog: pytest.LogCaptureFixture
) -> None:
    """Any Content-Encoding but identity gets 415 on every route, for a body that is not
    compressed and for one that is; nothing changes and nothing is logged as a traceback."""
    caplog.set_level(logging.INFO)
    before = await shop.state()
    for route in ROUTES:
        body, headers = valid_delivery(route)
        for encoding, payload in (
            ("gzip", body),
            ("deflate", body),
            ("br", body),
            ("gzip", gzip.compress(body)),
            ("deflate", zlib.compress(body)),
        ):
            status, _ = await post(
                shop.route(route), payload, {**headers, "Content-Encoding": encoding}
            )
            assert status == 415, (route, encoding)
    assert await shop.state() == before
    assert tracebacks(caplog) == []


async def test_identity_encoding_still_confirms(shop: HostileShop) -> None:
    """``Content-Encoding: identity`` is the body as sent: a signed delivery is confirmed."""
    ref, invoice = await shop.pending("cryptopay", next(_ids))
    body = dumps(cryptopay_doc(ref, invoice_id=int(invoice)))
    headers = {**cryptopay_headers(body), "Content-Encoding": "identity"}
    assert (await post(shop.route("cryptopay"), body, headers))[0] == 200
    assert ("succeeded", 1) in (await shop.state())["payments_by_status"]


# -- 2. nesting -----------------------------------------------------------------------------


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [990, 30_000])  # 30,000: under the 64 KiB limit
async def test_deeply_nested_json_is_a_400(
    shop: HostileShop, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    """A signed (or, for YooKassa, allowlisted) body nested *depth* levels deep gets 400
    on every JSON route, changes nothing and logs no traceback."""
    before = await shop.state()
    nested = deep(depth)
    bodies = {
        "cryptopay": f'{{"update_id":1,"update_type":"invoice_paid","payload":{nested}}}',
        "tribute": f'{{"name":"new_subscription","payload":{nested}}}',
        "yookassa": f'{{"type":"notification","event":"payment.succeeded","object":{nested}}}',
        "remnawave": json.dumps(restamp(remnawave_docs()[0]))[:-1] + f',"meta":{nested}}}',
    }
    for route, text in bodies.items():
        body = text.encode()
        status, _ = await post(shop.route(route), body, sign_json(route, body))
        assert status == 400, route
    assert await shop.state() == before
    assert tracebacks(caplog) == []


# -- 3. text the database refuses -----------------------------------------------------------


async def test_nul_in_signed_values_is_a_400(shop: HostileShop) -> None:
    """A NUL in a signed Crypto Pay ``payload`` or FreeKassa ``MERCHANT_ORDER_ID`` (and an
    unpaired surrogate) is refused with 400 before the database sees it."""
    ref, invoice = await shop.pending("cryptopay", next(_ids))
    before = await shop.state()
    for bad in (ref + "\x00", "\x00", ref + "\ud800"):
        doc = cryptopay_doc(bad, invoice_id=int(invoice))
        body = json.dumps(doc).encode()  # ASCII escapes: valid JSON text
        assert (await post(shop.route("cryptopay"), body, cryptopay_headers(body)))[0] == 400
    fk_ref, _ = await shop.pending("freekassa", next(_ids))
    before = await shop.state()
    body = freekassa_body(freekassa_fields(fk_ref + "\x00"))
    assert (await post(shop.route("freekassa"), body, FORM))[0] == 400
    assert await shop.state() == before


# -- 4. integers out of range ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", 10**30), ("telegram_user_id", 10**30), ("amount", 2**63), ("amount", -1)],
)
async def test_out_of_range_integers_are_a_400(shop: HostileShop, field: str, value: int) -> None:
    """A signed Tribute ``new_subscription`` whose amount or Telegram id does not fit its
    column gets 400 and changes nothing."""
    before = await shop.state()
    doc = tribute_doc(next(_ids))
    doc["payload"][field] = value
    body = dumps(doc)
    assert (await post(shop.route("tribute"), body, tribute_headers(body)))[0] == 400
    assert await shop.state() == before


# -- 5. concurrent first deliveries ---------------------------------------------------------


async def test_concurrent_first_tribute_deliveries_all_get_success(shop: HostileShop) -> None:
    """Twenty copies of the first Tribute delivery for an unknown Telegram user, sent at
    once, all get 200; one customer and one succeeded payment result."""
    telegram_id = next(_ids)
    body = dumps(tribute_doc(telegram_id))
    headers = tribute_headers(body)
    before = await shop.state()
    statuses = await asyncio.gather(
        *(post(shop.route("tribute"), body, headers) for _ in range(20))
    )
    assert [s for s, _ in statuses] == [200] * 20
    after = await shop.state()
    assert after["customers"] == before["customers"] + 1
    assert after["payments"] == before["payments"] + 1
    assert ("succeeded", 1) in after["payments_by_status"]


# -- 6. time bounds -------------------------------------------------------------------------


async def connect(shop: HostileShop) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = shop.url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sent until it closed the connection (fails after *seconds*)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_half_sent_headers_are_cut_off(shop: HostileShop) -> None:
    """A request whose headers stop halfway is closed after the header deadline."""
    reader, writer = await connect(shop)
    writer.write(b"POST /webhooks/cryptopay HTTP/1.1\r\nHost: x\r\nContent-Ty")
    await writer.drain()
    started = time.monotonic()
    await closed_within(reader, TIMEOUTS["header"] + 2.0)
    assert time.monotonic() - started < TIMEOUTS["header"] + 1.0
    writer.close()


async def test_dribbled_headers_do_not_extend_the_deadline(shop: HostileShop) -> None:
    """Sending a header byte now and then does not keep a request's head open."""
    reader, writer = await connect(shop)
    started = time.monotonic()
    writer.write(b"POST /webhooks/cryptopay HTTP/1.1\r\n")
    while not reader.at_eof() and time.monotonic() - started < TIMEOUTS["header"] * 4:
        await asyncio.sleep(TIMEOUTS["header"] / 5)
        try:
            writer.write(b"X")
            await writer.drain()
            await asyncio.wait_for(reader.read(), 0.01)
        except (ConnectionError, TimeoutError):
            pass
    assert reader.at_eof()
    assert time.monotonic() - started < TIMEOUTS["header"] * 3
    writer.close()


async def test_half_sent_body_gets_408(shop: HostileShop) -> None:
    """A body that stops halfway gets 408 after the body deadline and the connection closes."""
    reader, writer = await connect(shop)
    writer.write(
        b"POST /webhooks/cryptopay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"update_id":'
    )
    await writer.drain()
    answer = await closed_within(reader, TIMEOUTS["body"] + 3.0)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:40]
    writer.close()


async def test_idle_keepalive_connection_closes(shop: HostileShop) -> None:
    """A keep-alive connection that stays idle after its request is closed."""
    reader, writer = await connect(shop)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await closed_within(reader, TIMEOUTS["keepalive"] + 3.0)
    assert answer.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_shutdown_is_not_held_up_by_half_sent_requests(database_url: str) -> None:
    """Stopping the server with half-sent heads and bodies open takes well under the
    shutdown timeout (5 s here)."""
    async with hostile_shop(database_url) as shop:
        writers = []
        for n in range(20):
            _, writer = await connect(shop)
            if n % 2:
                writer.write(b"POST /webhooks/tribute HTTP/1.1\r\nHost: x\r\n")
            else:
                writer.write(
                    b"POST /webhooks/tribute HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
                )
            await writer.drain()
            writers.append(writer)
        await asyncio.sleep(0.1)
        started = time.monotonic()
    assert time.monotonic() - started < 2.5
    for writer in writers:
        writer.close()


# -- 7. logs --------------------------------------------------------------------------------


async def test_client_gone_mid_body_is_one_line_without_traceback(
    shop: HostileShop, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that drops the connection mid-body is logged at INFO or WARNING in one
    line, never with a traceback."""
    caplog.set_level(logging.INFO)
    for _ in range(5):
        _, writer = await connect(shop)
        writer.write(
            b"POST /webhooks/tribute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"name":'
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()
    await asyncio.sleep(0.3)
    assert tracebacks(caplog) == []
    assert all(r.levelno < logging.ERROR for r in caplog.records)


async def test_malformed_http_is_one_line_without_traceback(
    shop: HostileShop, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed HTTP gets 400 from the server and one WARNING line, never a traceback."""
    caplog.set_level(logging.INFO)
    for raw in (
        b"POST /webhooks/tribute HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /webhooks/tribute HTTP/1.1\r\nHost x\r\n\r\n",
        b"POST /webhooks/tribute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n",
    ):
        reader, writer = await connect(shop)
        writer.write(raw)
        await writer.drain()
        answer = await closed_within(reader, 3.0)
        assert answer[:12] in (b"HTTP/1.0 400", b"HTTP/1.1 400"), (raw[:40], answer[:40])
        writer.close()
    assert tracebacks(caplog) == []
    assert all(r.levelno < logging.ERROR for r in caplog.records)


# -- 8. exact identities --------------------------------------------------------------------


async def test_freekassa_merchant_id_is_compared_exactly(shop: HostileShop) -> None:
    """A signed FreeKassa notification for merchant ``" 31337"`` is not ours: 401."""
    ref, _ = await shop.pending("freekassa", next(_ids))
    before = await shop.state()
    for merchant in (" 31337", "31337 ", "031337", "٣١٣٣٧"):
        fields = {**freekassa_fields(ref), "MERCHANT_ID": merchant}
        status, _ = await post(shop.route("freekassa"), freekassa_body(fields), FORM)
        assert status == 401, merchant
    assert await shop.state() == before
    body = freekassa_body(freekassa_fields(ref))
    assert (await post(shop.route("freekassa"), body, FORM))[0] == 200


@pytest.mark.parametrize("telegram_id", [-5, 0, "-5", " 5", "5.0", True])
async def test_tribute_telegram_id_must_be_positive(shop: HostileShop, telegram_id: object) -> None:
    """A signed Tribute event with a Telegram id that is not a positive integer gets 400
    and creates no customer."""
    before = await shop.state()
    body = dumps(tribute_doc(telegram_id))
    assert (await post(shop.route("tribute"), body, tribute_headers(body)))[0] == 400
    assert await shop.state() == before


async def test_panel_delivery_still_accepted(shop: HostileShop) -> None:
    """The captured panel deliveries, freshly stamped and signed, are still accepted."""
    for doc in remnawave_docs():
        body = dumps(restamp(doc))
        status, text = await post(shop.route("remnawave"), body, remnawave_headers(body))
        assert status == 200, text
