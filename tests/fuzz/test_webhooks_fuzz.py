"""Property-based fuzzing of every webhook route (issue 9).

Each example starts from a valid delivery of one route (Crypto Pay, Tribute, FreeKassa and
panel deliveries signed as the providers sign them, a YooKassa notification from an
allowlisted address), mutates it (headers, encodings, bytes, JSON values, numbers,
strings, nesting), optionally signs the result again, and sends it to the real server.
Properties: never a 5xx; the database unchanged unless the delivery is authentic (an
oracle computed here, independently of the gateways); ``/healthz`` still answers.

CI runs :data:`EXAMPLES` examples per backend; a long run is one command:
``VPNSHOP_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/fuzz -x -q``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.hostile import (
    CRYPTOPAY_TOKEN,
    FREEKASSA_SHOP,
    PANEL_SECRET,
    ROUTES,
    TRIBUTE_KEY,
    HostileShop,
    cryptopay_doc,
    freekassa_fields,
    freekassa_sign,
    hostile_shop,
    remnawave_docs,
    restamp,
    sign_json,
    tribute_doc,
    yookassa_doc,
)

EXAMPLES = int(os.environ.get("VPNSHOP_FUZZ_EXAMPLES", "40"))

SIGNATURE_HEADERS = {
    "cryptopay": ("crypto-pay-api-signature", hashlib.sha256(CRYPTOPAY_TOKEN.encode()).digest()),
    "tribute": ("trbt-signature", TRIBUTE_KEY.encode()),
    "remnawave": ("X-Remnawave-Signature", PANEL_SECRET.encode()),
}

# -- strategies -----------------------------------------------------------------------------

hostile_ints = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, -5, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 10**30]),
)
hostile_strings = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "\ud800",
            "\udfff",
            "٣١٣٣٧",
            " 31337",
            "NaN",
            "1e400",
            "-0",
            "0x10",
            "199.001",
            "1" * 400,
            "x" * 5000,
            "paid",
            "fiat",
            "RUB",
            "XTR",
            "2027-01-01T00:00:00Z",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    hostile_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_strings,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)

mutations = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10_000), values),
    st.tuples(st.just("delete"), st.integers(0, 10_000)),
    st.tuples(st.just("nest"), st.integers(0, 10_000), st.sampled_from([33, 200, 990, 5000])),
    st.tuples(
        st.just("bytes"),
        st.sampled_from(["flip", "truncate", "append", "insert"]),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=8),
    ),
    st.tuples(
        st.just("header"),
        st.sampled_from(
            [
                "Content-Encoding",
                "Content-Type",
                "signature",
                "X-Forwarded-For",
                "X-Remnawave-Timestamp",
            ]
        ),
        st.sampled_from(
            [
                "gzip",
                "deflate",
                "br",
                "identity",
                " ",
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "",
                "deadbeef",
                "A" * 64,
                "\u00e9",
                "2000-01-01T00:00:00.000Z",
                "1.2.3.4, 127.0.0.1",
            ]
        ),
    ),
)
cases = st.tuples(st.sampled_from(ROUTES), st.lists(mutations, max_size=3), st.booleans())


# -- applying a case ------------------------------------------------------------------------


def _paths(doc: Any) -> list[tuple[Any, ...]]:
    """Paths to every node of *doc* down to a depth of 40 (deeper is one nesting anyway)."""
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack:
        node, path = stack.pop()
        found.append(path)
        if len(path) >= 40:
            continue
        if isinstance(node, dict):
            stack.extend((value, (*path, key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*path, i)) for i, value in enumerate(node))
    return found


def _replace(doc: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> Any:
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()  # ASCII: surrogates survive


def _mutate_bytes(body: bytes, op: str, at: int, data: bytes) -> bytes:
    at = at % (len(body) + 1)
    if op == "flip" and body:
        at = at % len(body)
        return body[:at] + bytes([body[at] ^ data[0] or 1]) + body[at + 1 :]
    if op == "truncate":
        return body[:at]
    if op == "append":
        return body + data
    return body[:at] + data + body[at:]


def build(
    route: str, base: Any, steps: list[tuple[Any, ...]], resign: bool
) -> tuple[bytes, dict[str, str]]:
    """The request a case describes: *base* mutated step by step, then signed (again)
    when *resign*, then the header mutations."""
    doc = json.loads(json.dumps(base))
    form = route == "freekassa"
    raw: bytes | None = None
    for step in steps:
        kind = step[0]
        if kind in ("set", "delete", "nest") and raw is None:
            if form:
                names = sorted(doc)
                name = names[step[1] % len(names)]
                if kind == "delete":
                    doc.pop(name)
                else:
                    value = step[2] if kind == "set" else "[" * step[2]
                    doc[name] = value if isinstance(value, str) else json.dumps(value)
                continue
            paths = _paths(doc)
            path = paths[step[1] % len(paths)]
            if kind == "delete" and path:
                doc = _replace(doc, path, None, delete=True)
            elif kind == "set":
                doc = _replace(doc, path, step[2])
            elif kind == "nest":
                inner = doc
                for _ in range(step[2]):
                    inner = [inner]
                doc = _replace(doc, path, inner) if path else inner
        elif kind == "bytes":
            raw = _mutate_bytes(raw if raw is not None else _encode(route, doc), *step[1:])
    body = raw if raw is not None else _encode(route, doc)
    # Signed again over what is sent, or still carrying the original's signature.
    headers = _sign(route, body) if resign else _sign(route, _encode(route, base))
    for step in steps:
        if step[0] == "header":
            name = step[1]
            if name == "signature":
                name = SIGNATURE_HEADERS.get(route, ("SIGN-header", b""))[0]
            headers[name] = step[2]
    return body, headers


def _encode(route: str, doc: Any) -> bytes:
    if route == "freekassa":
        return urlencode(doc, encoding="utf-8", errors="surrogatepass").encode()
    try:
        return _dumps(doc)
    except (RecursionError, ValueError):
        return b"[" * 5000


def _sign(route: str, body: bytes) -> dict[str, str]:
    if route == "freekassa":
        return {"Content-Type": "application/x-www-form-urlencoded"}  # SIGN is in the body
    return sign_json(route, body)


def authentic(route: str, body: bytes, headers: dict[str, str]) -> bool:
    """Whether the provider's own scheme accepts this request (computed independently of
    the gateways): only such a request may change the database."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if route in SIGNATURE_HEADERS:
        name, key = SIGNATURE_HEADERS[route]
        given = lowered.get(name.lower(), "").strip().lower()
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        return given == expected
    if route == "freekassa":
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except ValueError:
            return False
        fields = {k: v[0] for k, v in form.items() if len(v) == 1}
        wanted = ("MERCHANT_ID", "AMOUNT", "MERCHANT_ORDER_ID", "SIGN")
        if any(k not in fields for k in wanted) or fields["MERCHANT_ID"] != FREEKASSA_SHOP:
            return False
        return fields["SIGN"].strip().lower() == freekassa_sign(fields)
    return False  # YooKassa: the notification names a payment YooKassa does not know


# -- the property ---------------------------------------------------------------------------


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[HostileShop]:
    async with hostile_shop(database_url) as s:
        yield s


async def test_no_request_shape_gets_a_5xx_or_changes_state_unless_authentic(
    shop: HostileShop,
) -> None:
    """Mutated deliveries on every webhook route never get a 5xx, change nothing unless
    authentic, and leave the server answering."""
    loop = asyncio.get_running_loop()
    cp_ref, cp_invoice = await shop.pending("cryptopay", 920_000_001)
    fk_ref, _ = await shop.pending("freekassa", 920_000_002)
    fk_fields = freekassa_fields(fk_ref)
    bases: dict[str, Any] = {
        "cryptopay": cryptopay_doc(cp_ref, invoice_id=int(cp_invoice)),
        "tribute": tribute_doc(920_000_003),
        "freekassa": {**fk_fields, "SIGN": freekassa_sign(fk_fields)},
        "yookassa": yookassa_doc(),
        "remnawave": remnawave_docs(),
    }
    async with aiohttp.ClientSession() as session:

        async def run(route: str, steps: list[tuple[Any, ...]], resign: bool) -> None:
            base = bases[route]
            if route == "remnawave":
                base = restamp(base[len(steps) % len(base)])
            if route == "freekassa" and resign:
                # Re-signing a form: mutate the fields, then compute SIGN over them.
                unsigned = {k: v for k, v in base.items() if k != "SIGN"}
                body, headers = build(route, unsigned, steps, resign=True)
                form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                fields = {k: v[0] for k, v in form.items()}
                body += b"&SIGN=" + freekassa_sign(fields).encode()
            else:
                body, headers = build(route, base, steps, resign)
            before = await shop.state()
            async with session.post(shop.route(route), data=body, headers=headers) as resp:
                status = resp.status
                await resp.read()
            assert status < 500, (route, status, steps, resign)
            if not authentic(route, body, headers):
                assert await shop.state() == before, (route, status, steps)
            async with session.get(f"{shop.url}/healthz") as health:
                assert health.status == 200

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(case=cases)
        def property_holds(case: tuple[str, list[tuple[Any, ...]], bool]) -> None:
            route, steps, resign = case
            asyncio.run_coroutine_threadsafe(run(route, steps, resign), loop).result(60)

        await asyncio.to_thread(property_holds)
