"""The IP allowlist helper shared by the payment gateways."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpnshop.adapters.payments.netcheck import (
    InvalidAllowlistEntryError,
    IpAllowlist,
    parse_address,
)

YOOKASSA = IpAllowlist(
    [
        "185.71.76.0/27",
        "185.71.77.0/27",
        "77.75.153.0/25",
        "77.75.156.11",
        "77.75.156.35",
        "77.75.154.128/25",
        "2a02:5180::/32",
    ]
)


@pytest.mark.parametrize(
    "ip",
    [
        "185.71.76.0",
        "185.71.76.31",
        "77.75.153.127",
        "77.75.156.11",
        "77.75.154.200",
        "2a02:5180::1",
        "2a02:5180:ffff:1509::7",
        "2A02:5180::ABCD",
    ],
)
def test_addresses_inside_are_allowed(ip: str) -> None:
    """Addresses inside a listed network or equal to a listed address are allowed."""
    assert YOOKASSA.allows(ip)
    assert ip in YOOKASSA


@pytest.mark.parametrize(
    "ip",
    [
        "185.71.76.32",
        "77.75.153.128",
        "77.75.156.12",
        "77.75.154.127",
        "2a02:5181::1",
        "127.0.0.1",
        "::1",
        "10.0.0.1",
    ],
)
def test_addresses_outside_are_refused(ip: str) -> None:
    """Neighbouring addresses just outside the networks are refused."""
    assert not YOOKASSA.allows(ip)


@pytest.mark.parametrize(
    "value", ["", "unknown", "185.71.76", "185.71.76.1:443", "example.com", "1.2.3.4/32"]
)
def test_unparsable_addresses_are_refused(value: str) -> None:
    """Anything that is not one address (ports, names, networks, blanks) is refused."""
    assert not YOOKASSA.allows(value)


def test_none_is_refused() -> None:
    """A missing address is refused."""
    assert not YOOKASSA.allows(None)


def test_ipv4_mapped_ipv6_is_checked_as_ipv4() -> None:
    """A dual-stack socket's ::ffff:a.b.c.d is checked as a.b.c.d."""
    assert YOOKASSA.allows("::ffff:185.71.76.5")
    assert not YOOKASSA.allows("::ffff:127.0.0.1")
    assert parse_address("::ffff:10.1.2.3") == ipaddress.ip_address("10.1.2.3")


def test_bracketed_ipv6_and_whitespace() -> None:
    """[v6] as some proxies write it, and surrounding spaces, are understood."""
    assert YOOKASSA.allows("[2a02:5180::1]")
    assert YOOKASSA.allows(" 77.75.156.35 ")


def test_empty_allowlist_allows_nothing() -> None:
    """An empty list fails closed."""
    assert not IpAllowlist([]).allows("127.0.0.1")


def test_allow_all_must_be_explicit() -> None:
    """0.0.0.0/0 and ::/0 switch the check off, and only for their IP version."""
    assert IpAllowlist(["0.0.0.0/0"]).allows("8.8.8.8")
    assert not IpAllowlist(["0.0.0.0/0"]).allows("2001:db8::1")
    assert IpAllowlist(["0.0.0.0/0", "::/0"]).allows("2001:db8::1")


def test_comma_separated_string() -> None:
    """A comma-separated string (as from the environment) is split into entries."""
    allow = IpAllowlist("127.0.0.1, 10.0.0.0/8,")
    assert allow.allows("10.200.0.1")
    assert allow.allows("127.0.0.1")
    assert len(allow.networks) == 2


@pytest.mark.parametrize("entry", ["", "not-an-ip", "185.71.76.5/27", "10.0.0.0/33", "::/129"])
def test_bad_entries_are_config_errors(entry: str) -> None:
    """Bad entries, including a network with host bits set, are refused at construction."""
    with pytest.raises(InvalidAllowlistEntryError) as info:
        IpAllowlist(["127.0.0.1", entry])
    assert info.value.entry == entry
    assert isinstance(info.value, ValueError)


def test_allows_and_in_answer_alike() -> None:
    """allows() and the ``in`` operator give the same answer; only a string can be inside."""
    single = IpAllowlist(["127.0.0.1"])
    assert single.allows("127.0.0.1") and "127.0.0.1" in single
    assert not single.allows("127.0.0.2") and "127.0.0.2" not in single
    assert YOOKASSA.allows("2a02:5180::1") and "2a02:5180::1" in YOOKASSA
    assert not single.allows(None) and None not in single


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=32))
def test_matches_stdlib_membership_v4(addr: ipaddress.IPv4Address, prefix: int) -> None:
    """For any IPv4 network, membership agrees with ipaddress' own containment."""
    net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    allow = IpAllowlist([str(net)])
    assert allow.allows(str(addr))
    outside = int(net.broadcast_address) + 1
    if outside <= 0xFFFFFFFF:
        assert not allow.allows(str(ipaddress.IPv4Address(outside)))


@given(st.ip_addresses(v=6))
def test_ipv6_in_slash_32(addr: ipaddress.IPv6Address) -> None:
    """An IPv6 address is allowed by the YooKassa /32 exactly when its first 32 bits match."""
    expected = (int(addr) >> 96) == 0x2A025180
    if addr.ipv4_mapped is not None:
        expected = False
    assert YOOKASSA.allows(str(addr)) is expected
