"""Source-address allowlists for provider notifications (stdlib :mod:`ipaddress` only).

Some providers do not sign their notifications (YooKassa) or sign them with a weak scheme
(FreeKassa's MD5), so the address the notification came from is one of the checks. The
address is whatever the webhook shell resolved through its trusted proxies; this module
only answers "is this address inside one of these networks?".

Rules, chosen to fail closed:

* Entries are single addresses (``"77.75.156.11"``) or CIDR networks (``"185.71.76.0/27"``,
  ``"2a02:5180::/32"``). An entry with host bits set (``"185.71.76.5/27"``) is refused at
  construction: it is almost always a typo, and guessing which network was meant could
  open the door wider than intended.
* An empty allowlist allows nothing. To switch the check off on purpose, list
  ``"0.0.0.0/0"`` and ``"::/0"``: that is explicit and shows up in a config review.
* An IPv4-mapped IPv6 address (``"::ffff:185.71.76.1"``, what a dual-stack socket reports
  for an IPv4 peer) is checked as the IPv4 address it carries.
* Anything that does not parse as an address (empty, ``"unknown"``, a host name) is not
  allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidAllowlistEntryError(ValueError):
    """An allowlist entry is neither an IP address nor a CIDR network (a config error)."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"invalid IP allowlist entry {entry!r}: {reason}")
        self.entry = entry


def parse_network(entry: str) -> IPNetwork:
    """One allowlist entry as a network; a bare address becomes a /32 or /128."""
    text = entry.strip()
    if not text:
        raise InvalidAllowlistEntryError(entry, "empty")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidAllowlistEntryError(entry, str(exc)) from None


def parse_address(value: str) -> IPAddress | None:
    """*value* as an address (IPv4-mapped IPv6 unwrapped to IPv4), or None if it is not one."""
    text = value.strip()
    # "[2a02:5180::1]" is how some proxies write an IPv6 peer.
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _to_networks(entries: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    if isinstance(entries, str):
        # A single comma-separated string from the environment ("1.2.3.4, 10.0.0.0/8").
        entries = [e for e in entries.split(",") if e.strip()]
    return tuple(e if not isinstance(e, str) else parse_network(e) for e in entries)


@attrs.frozen
class IpAllowlist:
    """A fixed set of networks that notifications may come from.

    ``IpAllowlist(["185.71.76.0/27", "77.75.156.11"])``; a comma-separated string works
    too. Raises :class:`InvalidAllowlistEntryError` for a bad entry.
    """

    networks: tuple[IPNetwork, ...] = attrs.field(converter=_to_networks)

    def allows(self, remote_ip: str | None) -> bool:
        """True when *remote_ip* parses and lies inside one of the networks."""
        if not remote_ip:
            return False
        addr = parse_address(remote_ip)
        if addr is None:
            return False
        # ``in`` is False across IP versions, so no version check is needed here.
        return any(addr in net for net in self.networks)

    def __contains__(self, remote_ip: object) -> bool:
        return isinstance(remote_ip, str) and self.allows(remote_ip)

    def __str__(self) -> str:
        return ", ".join(str(n) for n in self.networks)
