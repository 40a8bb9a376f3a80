"""Typed reading of ``VPNSHOP_`` variables that collects every problem instead of
stopping at the first, so one run of ``vpnshop check`` lists everything to fix."""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeVar
from urllib.parse import urlsplit

import attrs

from vpnshop.adapters.payments.netcheck import InvalidAllowlistEntryError, parse_network

T = TypeVar("T")
PREFIX: Final = "VPNSHOP_"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists (variable, what is wrong)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {name}: {why}" for name, why in problems)
        super().__init__(f"invalid configuration:\n{lines}")


class SettingUnusableError(Exception):
    """A valid setting that the machine cannot honour (a busy port, say); the message
    names the variable so the operator knows what to change."""

    def __init__(self, variable: str, why: str) -> None:
        self.variable = variable
        self.why = why
        super().__init__(f"{variable}: {why}")


@attrs.frozen(repr=False)
class Secret:
    """A secret string that does not print itself."""

    _value: str = attrs.field(repr=False)

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


class Reader:
    """Reads typed values, collects every problem, and remembers every name it was
    asked for: those are the known settings (see :meth:`unknown`)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[tuple[str, str]] = []
        self.asked: set[str] = set()

    def raw(self, name: str) -> str | None:
        self.asked.add(PREFIX + name)
        value = self.env.get(PREFIX + name)
        return value.strip() if value is not None and value.strip() != "" else None

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except (ValueError, TypeError) as e:
            self.problems.append((PREFIX + name, str(e) or "invalid value"))
            return default

    def secret(self, name: str) -> Secret | None:
        value = self.raw(name)
        return Secret(value) if value is not None else None

    def problem(self, name: str, why: str) -> None:
        self.problems.append((PREFIX + name, why))

    def unknown(self) -> list[tuple[str, str | None]]:
        """``VPNSHOP_`` variables nobody asked for, each with the closest known name."""
        known = sorted(self.asked)
        found = []
        for name in sorted(self.env):
            if name.startswith(PREFIX) and name not in self.asked:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
                found.append((name, close[0] if close else None))
        return found


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if lo is not None and number < lo:
            raise ValueError(f"must be at least {lo}, got {number}")
        if hi is not None and number > hi:
            raise ValueError(f"must be at most {hi}, got {number}")
        return number

    return parse


def seconds(lo: float, hi: float) -> Callable[[str], float]:
    """A duration in seconds within *lo*..*hi* (fractions allowed; nan and inf refused)."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {value!r}") from None
        if not lo <= number <= hi:  # also refuses nan
            raise ValueError(f"must be between {lo:g} and {hi:g} seconds, got {value}")
        return number

    return parse


def boolean(value: str) -> bool:
    low = value.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def words(value: str) -> tuple[str, ...]:
    """Comma- or space-separated items."""
    return tuple(v for v in re.split(r"[,\s]+", value) if v)


def int_list(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in words(value))
    except ValueError:
        raise ValueError(f"expected comma-separated whole numbers, got {value!r}") from None


def networks(value: str) -> tuple[str, ...]:
    """Addresses and CIDR networks (the allowlist rule of ``netcheck``), normalised."""
    try:
        return tuple(str(parse_network(v)) for v in words(value))
    except InvalidAllowlistEntryError as e:
        raise ValueError(str(e)) from None


def uuids(value: str) -> tuple[str, ...]:
    """Comma-separated uuids (the panel's squads)."""
    found = []
    for item in words(value):
        try:
            found.append(str(uuid.UUID(item)))
        except ValueError:
            raise ValueError(
                f"{item!r} is not a squad uuid (`vpnshop panel check` lists them)"
            ) from None
    return tuple(found)


def choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return value.lower()

    return parse


def url(schemes: Iterable[str] = ("https", "http")) -> Callable[[str], str]:
    allowed = tuple(schemes)

    def parse(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() not in allowed or not parts.netloc:
            raise ValueError(f"expected a URL starting with {' or '.join(allowed)}://")
        return value.rstrip("/")

    return parse
