"""Plans files (TOML): what an operator sells, in a file they can review and version.

```toml
[[plan]]
code = "month"
duration_days = 30
traffic_limit_gb = 0          # 0 = unlimited (or traffic_limit_bytes)
traffic_reset = "MONTH"       # NO_RESET | DAY | WEEK | MONTH | MONTH_ROLLING
device_limit = 3
squads = ["<internal squad uuid>"]
sort_order = 10
names = { ru = "1 месяц", en = "1 month" }
prices = { RUB = "199.00", XTR = 150, USD = "2.49" }
```
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vpnshop.domain.errors import DomainError, ValidationError
from vpnshop.domain.money import Money
from vpnshop.domain.plan import GIB, Plan, TrafficReset

EXAMPLE = Path(__file__).with_name("plans.example.toml")

_KNOWN = {
    "code",
    "duration_days",
    "traffic_limit_gb",
    "traffic_limit_bytes",
    "traffic_reset",
    "device_limit",
    "squads",
    "sort_order",
    "names",
    "prices",
    "active",
}


class PlansFileError(ValidationError):
    """A plans file that cannot be loaded; the message names the plan and field."""


def load_plans_file(path: str | Path) -> list[Plan]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise PlansFileError(f"{path}: cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise PlansFileError(f"{path}: not valid TOML: {e}") from e
    return parse_plans(data, source=str(path))


def parse_plans(data: Mapping[str, Any], source: str = "plans") -> list[Plan]:
    raw = data.get("plan")
    if not isinstance(raw, list) or not raw:
        raise PlansFileError(f"{source}: expected one or more [[plan]] tables")
    return [_plan(item, f"{source}: plan #{i + 1}") for i, item in enumerate(raw)]


def _int(
    item: Mapping[str, Any], name: str, default: int | None = None, *, lo: int | None = 0
) -> int:
    value = item.get(name, default)
    if value is None:
        raise PlansFileError(f"missing field {name}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlansFileError(f"{name}: expected a whole number, got {value!r}")
    if lo is not None and value < lo:
        raise PlansFileError(f"{name}: must be at least {lo}, got {value}")
    return value


def _traffic_reset(item: Mapping[str, Any]) -> TrafficReset:
    value = item.get("traffic_reset", "NO_RESET")
    valid = ", ".join(r.value for r in TrafficReset)
    if not isinstance(value, str) or value.upper() not in TrafficReset.__members__:
        raise PlansFileError(f"traffic_reset: expected one of {valid}, got {value!r}")
    return TrafficReset(value.upper())


def _squads(item: Mapping[str, Any]) -> tuple[str, ...]:
    value = item.get("squads", [])
    if not isinstance(value, list):
        raise PlansFileError(f"squads: expected a list of squad uuids, got {value!r}")
    squads = []
    for squad in value:
        try:
            squads.append(str(uuid.UUID(str(squad))))
        except ValueError:
            raise PlansFileError(
                f"squads: {squad!r} is not a squad uuid (`vpnshop panel check` lists them)"
            ) from None
    return tuple(squads)


def _table(item: Mapping[str, Any], name: str) -> dict[str, Any]:
    if name not in item:
        raise PlansFileError(f"missing field {name}")
    value = item[name]
    if not isinstance(value, dict) or not value:
        raise PlansFileError(f"{name}: expected a table such as {name} = {{ ... }}")
    return value


def _plan(item: Any, where: str) -> Plan:
    if not isinstance(item, dict):
        raise PlansFileError(f"{where}: not a table")
    where = f"{where} ({item.get('code', '?')})"
    unknown = sorted(set(item) - _KNOWN)
    if unknown:
        raise PlansFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    try:
        return _fields(item)
    except PlansFileError as e:
        raise PlansFileError(f"{where}: {e}") from None
    except DomainError as e:
        raise PlansFileError(f"{where}: {e}") from None


def _fields(item: Mapping[str, Any]) -> Plan:
    """The plan, each field checked with a message that names it."""
    if "code" not in item or not isinstance(item["code"], str):
        raise PlansFileError('code: expected a string such as code = "month"')
    names = _table(item, "names")
    prices = _table(item, "prices")
    if "traffic_limit_bytes" in item and "traffic_limit_gb" in item:
        raise PlansFileError("give traffic_limit_gb or traffic_limit_bytes, not both")
    if "traffic_limit_bytes" in item:
        traffic = _int(item, "traffic_limit_bytes")
    else:
        traffic = _int(item, "traffic_limit_gb", 0) * GIB
    parsed_prices: dict[str, Money] = {}
    for code, value in prices.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise PlansFileError(f"prices: {code} must be a string or integer, got {value!r}")
        try:
            money = Money.parse(str(value), code)
        except DomainError as e:
            raise PlansFileError(f"prices: {e}") from None
        parsed_prices[money.currency.code] = money
    active = item.get("active", True)
    if not isinstance(active, bool):
        raise PlansFileError(f"active: expected true or false, got {active!r}")
    return Plan(
        code=item["code"],
        names={str(k): str(v) for k, v in names.items()},
        duration_days=_int(item, "duration_days"),
        prices=parsed_prices,
        traffic_limit_bytes=traffic,
        traffic_reset=_traffic_reset(item),
        device_limit=None if item.get("device_limit") is None else _int(item, "device_limit"),
        squads=_squads(item),
        active=active,
        sort_order=_int(item, "sort_order", 0, lo=None),
    )
